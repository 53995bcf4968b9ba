# lib/common.sh: shared code for the sample ipfailover hooks. POSIX sh; sourced, not run.
#
# It lives in lib/, a subdirectory, because failoverd runs every executable regular file
# of the hook directory whose name starts with an event prefix; files in subdirectories
# are never run. It is not executable (mode 644) and is not named like an event.
# failoverd vets the hooks it runs, not the files they source: each hook checks this file
# before sourcing it, and hook_load_conf checks hooks.conf the same way.
#
# Before sourcing, the hook sets hook_dir (its own directory, absolute).
#
# Lists in hooks.conf (FAILOVER_SERVICES, FAILOVER_MOUNTS, FAILOVER_TEST_TARGET) are split
# on blanks. Globbing is off (set -f) so that a `*` in them stays literal; a hook of your
# own that needs globs can `set +f`.
set -f

: "${hook_dir:?must be set by the hook before it sources lib/common.sh}"
hook_name=${0##*/}
hook_os=$(uname -s 2>/dev/null || echo unknown)

# Exit status of a hook refused its configuration (IRIS FailSafe called it
# INCORRECT_CONF_FILE); failoverd treats every non-zero status as a failure.
HOOK_EXIT_CONF=2

# hook_say LEVEL MESSAGE...: one line to stderr (failoverd logs it, and mails the tail of a
# failing hook's output), and to syslog with tag ipfailover-hook unless FAILOVER_HOOK_SYSLOG=no.
hook_say() {
    _say_level=$1
    shift
    _say_msg=$(printf '%s' "$*" | tr '\n\t' '  ')
    printf '%s: %s\n' "$hook_name" "$_say_msg" >&2
    if [ "${FAILOVER_HOOK_SYSLOG:-yes}" != no ] && command -v logger >/dev/null 2>&1; then
        logger -t ipfailover-hook -p "daemon.$_say_level" -- "$hook_name: $_say_msg" \
            >/dev/null 2>&1 || true
    fi
}
hook_log() { hook_say info "$@"; }
hook_warn() { hook_say warning "warning: $*"; }
hook_err() { hook_say err "error: $*"; }

# hook_vet PATH...: true if every PATH is owned by the user running the hook and writable
# by neither group nor others: failoverd's own rule for hooks, applied to what they source.
hook_vet() {
    _vet_uid=$(id -u)
    _vet_bad=$(find "$@" -prune \( ! -user "$_vet_uid" -o -perm -020 -o -perm -002 \) -print 2>&1) ||
        return 1
    [ -z "$_vet_bad" ]
}

# hook_load_conf: sources $hook_dir/hooks.conf if it exists; exits HOOK_EXIT_CONF if it is
# unsafe to source or does not parse.
hook_load_conf() {
    _conf=$hook_dir/hooks.conf
    [ -e "$_conf" ] || return 0
    if ! hook_vet "$_conf"; then
        hook_err "refusing $_conf: not owned by uid $(id -u), or writable by group or others (chmod 644, chown root)"
        exit "$HOOK_EXIT_CONF"
    fi
    # A syntax error in a sourced file ends a POSIX shell at once; check it first so that
    # the hook can say what went wrong.
    if ! _conf_err=$(sh -n "$_conf" 2>&1); then
        hook_err "$_conf does not parse: $_conf_err"
        exit "$HOOK_EXIT_CONF"
    fi
    # shellcheck disable=SC1090
    . "$_conf"
}

# hook_reverse WORDS...: prints the words in reverse order (release undoes acquisition
# backwards).
hook_reverse() {
    _rev=
    for _w in "$@"; do
        _rev="$_w${_rev:+ $_rev}"
    done
    printf '%s\n' "$_rev"
}

# hook_peer_addrs: the peer's addresses, one a line: FAILOVER_PEER_IP and the address part
# of every iface:address[/prefix] entry of FAILOVER_PEER_IP_PAIRS.
hook_peer_addrs() {
    [ -z "${FAILOVER_PEER_IP:-}" ] || printf '%s\n' "$FAILOVER_PEER_IP"
    for _pair in ${FAILOVER_PEER_IP_PAIRS:-}; do
        _addr=${_pair#*:}
        printf '%s\n' "${_addr%%/*}"
    done
}

# ---------------------------------------------------------------------------------------
# Services: systemd on Linux, launchd on macOS. Starting a running service or stopping a
# stopped one succeeds and changes nothing; every call says what changed.

# svc_start NAME: 0 if NAME runs afterwards.
svc_start() {
    case $hook_os in
        Darwin) launchd_start "$1" ;;
        *) systemd_start "$1" ;;
    esac
}

# svc_stop NAME: 0 if NAME does not run afterwards.
svc_stop() {
    case $hook_os in
        Darwin) launchd_stop "$1" ;;
        *) systemd_stop "$1" ;;
    esac
}

systemd_start() {
    # `systemctl start` of an active unit is a no-op, but asking first lets the log say
    # whether this run changed anything.
    if systemctl is-active --quiet "$1" 2>/dev/null; then
        hook_log "$1 is already active: nothing to do"
        return 0
    fi
    _was=$(systemctl is-active "$1" 2>/dev/null) || true
    if _out=$(systemctl start "$1" 2>&1); then
        hook_log "started $1 (was ${_was:-unknown})"
        return 0
    fi
    hook_err "could not start $1: $_out"
    return 1
}

systemd_stop() {
    _was=$(systemctl is-active "$1" 2>/dev/null) || true
    case $_was in
        inactive | failed)
            hook_log "$1 is already stopped ($_was): nothing to do"
            return 0
            ;;
    esac
    # Anything else (active, activating, deactivating, reloading) is stopped; `systemctl
    # stop` waits for the unit to be down.
    if _out=$(systemctl stop "$1" 2>&1); then
        hook_log "stopped $1 (was ${_was:-unknown})"
        return 0
    fi
    hook_err "could not stop $1: $_out"
    return 1
}

# launchd_state LABEL: prints running, loaded (known to launchd, no process) or absent.
launchd_state() {
    if ! _lst=$(launchctl print "system/$1" 2>/dev/null); then
        echo absent
        return 0
    fi
    case $_lst in
        *"state = running"*) echo running ;;
        *) echo loaded ;;
    esac
}

launchd_start() {
    _was=$(launchd_state "$1")
    if [ "$_was" = running ]; then
        hook_log "$1 is already running: nothing to do"
        return 0
    fi
    if [ "$_was" = absent ]; then
        _plist=${FAILOVER_LAUNCHD_DIR:-/Library/LaunchDaemons}/$1.plist
        if [ ! -f "$_plist" ]; then
            hook_err "could not start $1: launchd does not know it and there is no $_plist"
            return 1
        fi
        if ! _out=$(launchctl bootstrap system "$_plist" 2>&1); then
            hook_err "could not load $_plist: $_out"
            return 1
        fi
    fi
    # Without -k, kickstart leaves a running instance alone (RunAtLoad may have started it).
    if ! _out=$(launchctl kickstart "system/$1" 2>&1); then
        hook_err "could not start $1: $_out"
        return 1
    fi
    hook_log "started $1 (was $_was)"
}

launchd_stop() {
    _was=$(launchd_state "$1")
    if [ "$_was" = absent ]; then
        hook_log "$1 is already stopped (not loaded): nothing to do"
        return 0
    fi
    # bootout, not kill: launchd would restart a KeepAlive job that was only killed.
    if ! _out=$(launchctl bootout "system/$1" 2>&1); then
        hook_err "could not stop $1: $_out"
        return 1
    fi
    hook_log "stopped $1 (was $_was)"
}

# ---------------------------------------------------------------------------------------
# Mounts: by mount point, each with an fstab entry (so `mount /srv/shared` knows the rest).

# mnt_norm PATH: PATH without trailing slashes ("/" stays "/").
mnt_norm() {
    _p=$1
    while [ "${#_p}" -gt 1 ] && [ "${_p%/}" != "$_p" ]; do
        _p=${_p%/}
    done
    printf '%s\n' "$_p"
}

# mnt_is_mounted PATH: something is mounted on PATH. `mount` prints "DEV on PATH type T (...)"
# on Linux and "DEV on PATH (T, ...)" on macOS.
mnt_is_mounted() {
    mount | grep -F -q -e " on $1 "
}

# mnt_with: how mounts are done. "systemd": through PID 1 (`systemctl start` of the .mount
# unit systemd makes from the /etc/fstab entry), which is the only way under failoverd's
# systemd unit: a hook there has no CAP_SYS_ADMIN, no new privileges, and a mount namespace
# of its own, so a mount(8) of its own would fail, and one that worked would be seen by no
# service. "mount": mount(8) and umount(8) (macOS, Linux without systemd, or failoverd run by
# hand as root). FAILOVER_MOUNT_WITH in hooks.conf chooses; else systemd when it runs.
mnt_with() {
    case ${FAILOVER_MOUNT_WITH:-} in
        systemd | mount) echo "$FAILOVER_MOUNT_WITH" ;;
        "")
            if [ "$hook_os" = Linux ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
                echo systemd
            else
                echo mount
            fi
            ;;
        *)
            hook_err "FAILOVER_MOUNT_WITH must be systemd or mount, not $FAILOVER_MOUNT_WITH"
            echo mount
            ;;
    esac
}

# mnt_unit PATH: the name of the systemd mount unit of PATH (/srv/a: srv-a.mount).
mnt_unit() {
    systemd-escape --path --suffix=mount "$1"
}

# mnt_mount PATH: 0 if PATH is mounted afterwards.
mnt_mount() {
    if [ "$(mnt_with)" = systemd ]; then
        _unit=$(mnt_unit "$1") || { hook_err "no mount unit name for $1"; return 1; }
        if systemctl is-active --quiet "$_unit" 2>/dev/null; then
            hook_log "$1 is already mounted ($_unit): nothing to do"
            return 0
        fi
        if _out=$(systemctl start "$_unit" 2>&1); then
            hook_log "mounted $1 ($_unit)"
            return 0
        fi
        hook_err "could not mount $1: systemctl start $_unit: $_out (is there an /etc/fstab entry for it? run systemctl daemon-reload after editing fstab)"
        return 1
    fi
    if mnt_is_mounted "$1"; then
        hook_log "$1 is already mounted: nothing to do"
        return 0
    fi
    if _out=$(mount "$1" 2>&1); then
        hook_log "mounted $1"
        return 0
    fi
    hook_err "could not mount $1: $_out"
    return 1
}

# mnt_umount PATH: 0 if PATH is not mounted afterwards.
mnt_umount() {
    if [ "$(mnt_with)" = systemd ]; then
        _unit=$(mnt_unit "$1") || { hook_err "no mount unit name for $1"; return 1; }
        if ! systemctl is-active --quiet "$_unit" 2>/dev/null; then
            hook_log "$1 is not mounted ($_unit): nothing to do"
            return 0
        fi
        if _out=$(systemctl stop "$_unit" 2>&1); then
            hook_log "unmounted $1 ($_unit)"
            return 0
        fi
        hook_err "could not unmount $1: systemctl stop $_unit: $_out (still in use? see fuser -vm $1)"
        return 1
    fi
    if ! mnt_is_mounted "$1"; then
        hook_log "$1 is not mounted: nothing to do"
        return 0
    fi
    if _out=$(umount "$1" 2>&1); then
        hook_log "unmounted $1"
        return 0
    fi
    hook_err "could not unmount $1 (still in use? see fuser -vm $1 or lsof $1): $_out"
    return 1
}
