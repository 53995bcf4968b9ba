#!/usr/bin/env bash
# test.sh: tests of the sample hooks. Self-contained: no root, no network, no service
# manager. Each hook runs as failoverd runs it (clean environment, cwd = a temporary copy
# of the hook directory, stdin /dev/null, `./NAME EVENT`) with fake systemctl, launchctl,
# ping, ip, route, mount, umount, logger (and uname, to take the macOS paths) first in PATH.
# The fakes keep their state in files and behave as the real tools do where the hooks care:
# systemctl is-active exits 0 or 3; launchctl bootstrap of a loaded job and bootout of an
# absent one fail, so a hook that is not idempotent fails its second run.
#
# Usage: hooks-template/test.sh   (last line: "N passed, M failed"; exit 1 on any failure)
set -u

here=$(cd "$(dirname "$0")" && pwd -P)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipfo-hooks-test.XXXXXX") || exit 1
netns=()                # network namespaces made by this run (deleted at exit)
cleanup() {
    local ns
    for ns in ${netns[@]+"${netns[@]}"}; do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fakebin=$tmp/bin        # fakes of the tools the hooks call
darwinbin=$tmp/darwin   # a uname that says Darwin: put first in PATH to test the macOS paths
state=$tmp/state        # the fakes' state, and calls (every call to a fake, one a line)
mkdir -p "$fakebin" "$darwinbin" "$state"

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   - $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL - $1"
    shift
    local line
    for line in "$@"; do
        printf '       %s\n' "$line"
    done
}
# check DESCRIPTION COMMAND...: passes if COMMAND succeeds; on failure shows the last hook run.
check() {
    local desc=$1
    shift
    if "$@"; then
        pass "$desc"
    else
        fail "$desc" "check: $*" "last run: $last_run (exit $rc)" "stderr: ${err//$'\n'/ | }" \
            "calls: $(tr '\n' '|' 2>/dev/null <"$state/calls")"
    fi
}

# The hooks: every file of the template whose name starts with an event prefix.
hooks=()
for f in "$here"/*; do
    name=${f##*/}
    case $name in
        Test* | Fence* | PreAcq* | PostAcq* | PreRel* | PostRel*) hooks+=("$name") ;;
    esac
done

# ---------------------------------------------------------------------------------------
# Fakes. The state directory is written into each, since hooks run with a clean environment.

fake() { # NAME BODY: writes an executable fake that logs its call, then runs BODY
    {
        echo '#!/bin/sh'
        echo "state='$state'"
        echo "echo \"${1##*/} \$*\" >>\"\$state/calls\""
        cat
    } >"$1"
    chmod 755 "$1"
}

fake "$fakebin/systemctl" <<'EOF'
cmd=$1; shift
quiet=
if [ "${1:-}" = --quiet ]; then quiet=1; shift; fi
unit=${1%.service}
f=$state/unit.$unit
cur=$(cat "$f" 2>/dev/null || echo inactive)
case $cmd in
    is-active)
        [ -n "$quiet" ] || echo "$cur"
        [ "$cur" = active ] && exit 0
        exit 3 ;;
    start)
        case $unit in
            *broken*)
                echo "Job for $unit.service failed because the control process exited with error code." >&2
                echo "See \"systemctl status $unit.service\" and \"journalctl -xeu $unit.service\" for details." >&2
                echo failed >"$f"; exit 1 ;;
        esac
        echo active >"$f" ;;
    stop) echo inactive >"$f" ;;
    *) echo "fake systemctl: unexpected: $cmd $*" >&2; exit 1 ;;
esac
EOF

fake "$fakebin/launchctl" <<'EOF'
cmd=$1; shift
job() { cat "$state/job.$1" 2>/dev/null || echo absent; }
case $cmd in
    print)
        label=${1#system/}
        case $(job "$label") in
            absent) echo "Could not find service \"$label\" in domain for system" >&2; exit 113 ;;
            running) printf 'system/%s = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n}\n' "$label" ;;
            loaded) printf 'system/%s = {\n\tactive count = 0\n\tstate = not running\n}\n' "$label" ;;
        esac ;;
    bootstrap)
        [ "$1" = system ] || { echo "fake launchctl: domain $1" >&2; exit 64; }
        [ -f "$2" ] || { echo "Bootstrap failed: 2: No such file or directory" >&2; exit 2; }
        label=$(basename "$2" .plist)
        [ "$(job "$label")" = absent ] || { echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; }
        echo loaded >"$state/job.$label" ;;
    kickstart)
        label=${1#system/}
        [ "$(job "$label")" != absent ] || { echo "Could not find service \"$label\" in domain for system" >&2; exit 113; }
        echo running >"$state/job.$label" ;;
    bootout)
        label=${1#system/}
        [ "$(job "$label")" != absent ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }
        rm -f "$state/job.$label" ;;
    *) echo "fake launchctl: unexpected: $cmd $*" >&2; exit 1 ;;
esac
EOF

# Addresses listed in $state/answers answer; others do not.
fake "$fakebin/ping" <<'EOF'
for target; do :; done
if grep -qxF -e "$target" "$state/answers" 2>/dev/null; then
    echo "64 bytes from $target: icmp_seq=1 ttl=64 time=0.1 ms"
    echo "2 packets transmitted, 2 received, 0% packet loss, time 1001ms"
    exit 0
fi
echo "2 packets transmitted, 0 received, 100% packet loss, time 1001ms"
exit 1
EOF
cp "$fakebin/ping" "$fakebin/ping6"
sed -i.bak 's/^echo "ping /echo "ping6 /' "$fakebin/ping6" && rm -f "$fakebin/ping6.bak"

# `ip [-4|-6] route show default` prints $state/route4 or $state/route6 (empty: no route).
fake "$fakebin/ip" <<'EOF'
case "$*" in
    "route show default" | "-4 route show default") cat "$state/route4" 2>/dev/null ;;
    "-6 route show default") cat "$state/route6" 2>/dev/null ;;
    *) echo "fake ip: unexpected: $*" >&2; exit 1 ;;
esac
exit 0
EOF

# macOS `route -n get [-inet6] default`, gateway from $state/gw4 or $state/gw6.
fake "$fakebin/route" <<'EOF'
case "$*" in
    "-n get default") f=$state/gw4 ;;
    "-n get -inet6 default") f=$state/gw6 ;;
    *) echo "fake route: unexpected: $*" >&2; exit 64 ;;
esac
if [ -s "$f" ]; then
    printf '   route to: default\ndestination: default\n       mask: default\n    gateway: %s\n  interface: en0\n      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>\n' "$(cat "$f")"
    exit 0
fi
echo "route: writing to routing socket: not in table" >&2
exit 1
EOF

# mount/umount: the mount table is $state/mounts, in the format of Linux's `mount`.
fake "$fakebin/mount" <<'EOF'
if [ $# -eq 0 ]; then
    echo "proc on /proc type proc (rw,nosuid,nodev,noexec,relatime)"
    cat "$state/mounts" 2>/dev/null
    exit 0
fi
if grep -qF -e " on $1 " "$state/mounts" 2>/dev/null; then
    echo "mount: $1: /dev/fake already mounted on $1." >&2; exit 32
fi
echo "/dev/fake on $1 type ext4 (rw,relatime)" >>"$state/mounts"
EOF
fake "$fakebin/umount" <<'EOF'
if ! grep -qF -e " on $1 " "$state/mounts" 2>/dev/null; then
    echo "umount: $1: not mounted." >&2; exit 32
fi
grep -vF -e " on $1 " "$state/mounts" >"$state/mounts.new"
mv "$state/mounts.new" "$state/mounts"
EOF

fake "$fakebin/logger" </dev/null
logbin=$tmp/logbin      # only the fake logger: for runs with the real tools
mkdir -p "$logbin"
cp "$fakebin/logger" "$logbin/logger"
fake "$darwinbin/uname" <<'EOF'
echo Darwin
EOF

reset_state() {
    rm -rf "$state"
    mkdir -p "$state"
    : >"$state/calls"
}

# calls PATTERN: the calls to fakes that match an extended regex, one a line.
calls() { grep -E -e "$1" "$state/calls" || true; }
# ncalls PATTERN: how many.
ncalls() { calls "$1" | grep -c . || true; }

# mkhooks NAME [hooks.conf line...]: a hook directory as installed (hooks 755, lib 755,
# lib/common.sh 644, hooks.conf 644 if lines are given); prints its path.
mkhooks() {
    local d=$tmp/$1 h
    shift
    mkdir -p "$d/lib"
    for h in "${hooks[@]}"; do
        cp "$here/$h" "$d/$h"
        chmod 755 "$d/$h"
    done
    cp "$here/lib/common.sh" "$d/lib/common.sh"
    chmod 755 "$d" "$d/lib"
    chmod 644 "$d/lib/common.sh"
    if [ $# -gt 0 ]; then
        printf '%s\n' "$@" >"$d/hooks.conf"
        chmod 644 "$d/hooks.conf"
    fi
    printf '%s\n' "$d"
}

# run DIR HOOK [VAR=value...]: runs HOOK as failoverd does, its event from its name. Sets
# rc, out, err. DARWIN=1 takes the macOS paths; HOOK_SHELL runs it with that shell instead
# of its #! line; RUN_ABSOLUTE=1 runs it by absolute path from / without FAILOVER_HOOK_DIR;
# NETNS=name runs it in that network namespace with the real tools (only logger is fake).
last_run='' rc='' out='' err=''
run() {
    local dir=$1 hook=$2 event path cwd hookenv cmd
    shift 2
    event=$hook
    case $hook in Test* | Fence* | PreAcq* | PostAcq* | PreRel* | PostRel*) event=${hook%%-*} ;; esac
    path="$fakebin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ -z "${DARWIN:-}" ] || path="$darwinbin:$path"
    local -a prefix=()
    if [ -n "${NETNS:-}" ]; then
        path="$logbin:/usr/sbin:/usr/bin:/sbin:/bin"
        prefix=(ip netns exec "$NETNS")
    fi
    # What failoverd's systemd unit leaves a hook: CAP_NET_ADMIN and CAP_NET_RAW only, and no
    # new privileges (systemd/failoverd.service).
    if [ -n "${UNIT_LIMITS:-}" ]; then
        local caps=-all,+net_admin,+net_raw
        prefix=(setpriv --no-new-privs "--bounding-set=$caps" --inh-caps=-all)
    fi
    cwd=$dir cmd=./$hook hookenv=(FAILOVER_HOOK_DIR="$dir")
    if [ -n "${RUN_ABSOLUTE:-}" ]; then
        cwd=/ cmd=$dir/$hook hookenv=()
    fi
    last_run="${NETNS:+[netns $NETNS] }${DARWIN:+[darwin] }${HOOK_SHELL:+[$HOOK_SHELL] }$hook $event"
    # shellcheck disable=SC2086 # HOOK_SHELL may be "bash --posix"
    (cd "$cwd" && exec ${prefix[@]+"${prefix[@]}"} env -i PATH="$path" FAILOVER_EVENT="$event" \
        FAILOVER_PEER_IP=198.51.100.10 FAILOVER_PEER_IP_PAIRS=eth0:198.51.100.10 \
        FAILOVER_REASON=timeout "${hookenv[@]}" "$@" ${HOOK_SHELL:-} "$cmd" "$event") \
        </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

# Small predicates for check.
rc_is() { [ "$rc" = "$1" ]; }
err_has() { grep -qF -e "$1" <<<"$err"; }
err_lines() { [ "$(grep -c . <<<"$err")" = "$1" ]; }
# Every line of stderr starts with the hook's name.
err_prefixed() { ! grep -v -e "^$1: " <<<"$err" | grep -q .; }
eq() { [ "$1" = "$2" ] || { echo "       expected: $(tr '\n' '|' <<<"$2")" && echo "       got:      $(tr '\n' '|' <<<"$1")" && false; }; }
unit_is() { [ "$(cat "$state/unit.$1" 2>/dev/null || echo inactive)" = "$2" ]; }
job_is() { [ "$(cat "$state/job.$1" 2>/dev/null || echo absent)" = "$2" ]; }

# ---------------------------------------------------------------------------------------
echo "# the files"

for h in Test Fence PreAcq-10-mounts PostAcq-10-services PreRel-10-services PostRel-10-mounts; do
    check "$h is in the template" test -f "$here/$h"
done
for h in "${hooks[@]}"; do
    check "$h is executable and writable only by its owner" \
        sh -c '[ -x "$1" ] && [ -z "$(find "$1" -prune \( -perm -020 -o -perm -002 \))" ]' - "$here/$h"
    check "$h starts with #!/bin/sh" test "$(head -n 1 "$here/$h")" = "#!/bin/sh"
done
for f in lib/common.sh hooks.conf.sample README.md; do
    check "$f exists and is not executable (never mistaken for a hook)" \
        sh -c '[ -f "$1" ] && [ ! -x "$1" ]' - "$here/$f"
done
check "test.sh is executable" test -x "$here/test.sh"

echo "# syntax"
for f in "${hooks[@]}" lib/common.sh hooks.conf.sample; do
    check "sh -n $f" sh -n "$here/$f"
    check "bash --posix -n $f (macOS /bin/sh is bash in POSIX mode)" bash --posix -n "$here/$f"
done
check "bash -n test.sh" bash -n "$here/test.sh"
if command -v shellcheck >/dev/null 2>&1; then
    # From the template directory, so that `# shellcheck source=lib/common.sh` resolves.
    for f in "${hooks[@]}" lib/common.sh; do
        check "shellcheck $f" sh -c 'cd "$1" && shellcheck -x -s sh -S warning "$2"' - "$here" "$f"
    done
    check "shellcheck test.sh" shellcheck -S warning "$here/test.sh"
else
    echo "# shellcheck is not installed: skipping the lint (sh -n and bash --posix -n ran)"
fi

# ---------------------------------------------------------------------------------------
for shell in "" "bash --posix"; do
    HOOK_SHELL=$shell
    tag=${shell:+ [$shell]}
    echo "# services on Linux (systemd)$tag: started once, stopped once, in order"
    reset_state
    d=$(mkhooks "svc${shell:+-bash}" 'FAILOVER_SERVICES="svc-a svc-b"')
    run "$d" PostAcq-10-services
    check "PostAcq-10-services starts them: exit 0$tag" rc_is 0
    check "each started, in order$tag" eq "$(calls '^systemctl (start|stop) ')" \
        $'systemctl start svc-a\nsystemctl start svc-b'
    check "both active$tag" sh -c "[ \"\$(cat '$state/unit.svc-a' '$state/unit.svc-b')\" = \"\$(printf 'active\nactive')\" ]"
    check "says what changed$tag" err_has "started svc-a (was inactive)"
    check "every stderr line is prefixed with the hook's name$tag" err_prefixed PostAcq-10-services
    check "logs to syslog with tag ipfailover-hook$tag" \
        grep -qF -e "logger -t ipfailover-hook -p daemon.info -- PostAcq-10-services: started svc-a" "$state/calls"
    run "$d" PostAcq-10-services
    check "PostAcq-10-services again: exit 0$tag" rc_is 0
    check "no second start$tag" test "$(ncalls '^systemctl start ')" = 2
    check "says nothing changed$tag" err_has "svc-b is already active: nothing to do"

    run "$d" PreRel-10-services
    check "PreRel-10-services stops them: exit 0$tag" rc_is 0
    check "each stopped, in reverse order$tag" eq "$(calls '^systemctl stop ')" \
        $'systemctl stop svc-b\nsystemctl stop svc-a'
    check "both inactive$tag" sh -c "unit() { cat \"$state/unit.\$1\"; }; [ \"\$(unit svc-a)\$(unit svc-b)\" = inactiveinactive ]"
    run "$d" PreRel-10-services
    check "PreRel-10-services again: exit 0$tag" rc_is 0
    check "no second stop$tag" test "$(ncalls '^systemctl stop ')" = 2
    check "says nothing changed$tag" err_has "svc-a is already stopped (inactive): nothing to do"
done
HOOK_SHELL=

echo "# services: edge cases"
reset_state
d=$(mkhooks none)
run "$d" PostAcq-10-services
check "no hooks.conf: PostAcq-10-services exits 0" rc_is 0
check "...and says what it would do" err_has "FAILOVER_SERVICES is empty"
run "$d" PreRel-10-services
check "no hooks.conf: PreRel-10-services exits 0" rc_is 0
check "...and touches no service" test "$(ncalls '^systemctl ')" = 0

reset_state
d=$(mkhooks broken 'FAILOVER_SERVICES="svc-a svc-broken svc-b"')
run "$d" PostAcq-10-services
check "a service that fails to start: exit 1" rc_is 1
check "...with systemd's message on one line" \
    err_has "error: could not start svc-broken: Job for svc-broken.service failed because"
check "...and the others still start" sh -c "grep -qx active '$state/unit.svc-a' && grep -qx active '$state/unit.svc-b'"
run "$d" PreRel-10-services
check "a failed unit counts as stopped: exit 0" rc_is 0
check "...and is not stopped again" test "$(ncalls '^systemctl stop svc-broken')" = 0

reset_state
d=$(mkhooks activating 'FAILOVER_SERVICES="svc-a"')
echo activating >"$state/unit.svc-a"
run "$d" PreRel-10-services
check "a unit still activating is stopped" sh -c "grep -qx 'systemctl stop svc-a' '$state/calls'"
check "...exit 0" rc_is 0

reset_state
d=$(mkhooks nosyslog 'FAILOVER_SERVICES="svc-a"' 'FAILOVER_HOOK_SYSLOG=no')
run "$d" PostAcq-10-services
check "FAILOVER_HOOK_SYSLOG=no: no logger call" test "$(ncalls '^logger ')" = 0
check "...stderr still says it" err_has "started svc-a"

reset_state
d=$(mkhooks absolute 'FAILOVER_SERVICES="svc-a"')
RUN_ABSOLUTE=1 run "$d" PostAcq-10-services
check "run by absolute path from /, without FAILOVER_HOOK_DIR: exit 0" rc_is 0
check "...finds its hooks.conf and starts svc-a" unit_is svc-a active

echo "# services on macOS (launchd)"
reset_state
plists=$tmp/plists
mkdir -p "$plists"
touch "$plists/org.example.a.plist" "$plists/org.example.b.plist"
d=$(mkhooks launchd 'FAILOVER_SERVICES="org.example.a org.example.b"' "FAILOVER_LAUNCHD_DIR='$plists'")
export DARWIN=1
run "$d" PostAcq-10-services
check "PostAcq-10-services: exit 0" rc_is 0
check "bootstraps and kickstarts each, in order" eq "$(calls '^launchctl (bootstrap|kickstart|bootout) ')" \
    "launchctl bootstrap system $plists/org.example.a.plist
launchctl kickstart system/org.example.a
launchctl bootstrap system $plists/org.example.b.plist
launchctl kickstart system/org.example.b"
check "both running" sh -c "[ \"\$(cat '$state/job.org.example.a' '$state/job.org.example.b' | tr -d '\n')\" = runningrunning ]"
run "$d" PostAcq-10-services
check "PostAcq-10-services again: exit 0 (a second bootstrap would fail)" rc_is 0
check "no second bootstrap or kickstart" test "$(ncalls '^launchctl (bootstrap|kickstart) ')" = 4
run "$d" PreRel-10-services
check "PreRel-10-services: exit 0" rc_is 0
check "boots each out, in reverse order" eq "$(calls '^launchctl bootout ')" \
    $'launchctl bootout system/org.example.b\nlaunchctl bootout system/org.example.a'
run "$d" PreRel-10-services
check "PreRel-10-services again: exit 0 (a second bootout would fail)" rc_is 0
check "no second bootout" test "$(ncalls '^launchctl bootout ')" = 2
echo loaded >"$state/job.org.example.a"
run "$d" PostAcq-10-services
check "a loaded job that is not running is kickstarted, not bootstrapped" \
    sh -c "[ \$(grep -c 'bootstrap system $plists/org.example.a.plist' '$state/calls') = 1 ] && [ \$(grep -c 'kickstart system/org.example.a' '$state/calls') = 2 ]"
check "...and 'state = not running' is not taken for running" job_is org.example.a running
rm "$plists/org.example.b.plist"
run "$d" PreRel-10-services
run "$d" PostAcq-10-services
check "a job with no plist: exit 1" rc_is 1
check "...saying where the plist was looked for" err_has "no $plists/org.example.b.plist"
unset DARWIN

# ---------------------------------------------------------------------------------------
echo "# mounts"
reset_state
echo "/dev/other on /srv/a-old type ext4 (rw)" >"$state/mounts"
d=$(mkhooks mounts 'FAILOVER_MOUNTS="/srv/a /srv/b/"')
run "$d" PreAcq-10-mounts
check "PreAcq-10-mounts: exit 0" rc_is 0
check "mounts each, in order (trailing slash dropped; /srv/a-old is not /srv/a)" \
    eq "$(calls '^(mount|umount) /')" $'mount /srv/a\nmount /srv/b'
run "$d" PreAcq-10-mounts
check "PreAcq-10-mounts again: exit 0 (a second mount would fail)" rc_is 0
check "no second mount" test "$(ncalls '^mount /')" = 2
run "$d" PostRel-10-mounts
check "PostRel-10-mounts: exit 0" rc_is 0
check "unmounts each, in reverse order" eq "$(calls '^umount ')" $'umount /srv/b\numount /srv/a'
run "$d" PostRel-10-mounts
check "PostRel-10-mounts again: exit 0 (a second umount would fail)" rc_is 0
check "no second umount" test "$(ncalls '^umount ')" = 2
check "the other mount is untouched" grep -qF "/srv/a-old" "$state/mounts"

reset_state
d=$(mkhooks nomounts)
run "$d" PreAcq-10-mounts
check "no FAILOVER_MOUNTS: PreAcq-10-mounts exits 0 and says what it would do" \
    sh -c "[ $rc = 0 ] && grep -q 'FAILOVER_MOUNTS is empty' '$tmp/err'"
run "$d" PostRel-10-mounts
check "no FAILOVER_MOUNTS: PostRel-10-mounts exits 0" rc_is 0
check "...and mounts nothing" test "$(ncalls '^u?mount ')" = 0

# ---------------------------------------------------------------------------------------
echo "# mounts through systemd, under the limits of failoverd's unit"
if [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    # Under the unit's limits mount(8) itself cannot work: no CAP_SYS_ADMIN.
    mkdir -p "$tmp/limits-mnt"
    check "under the unit's limits, mount(8) is refused" \
        sh -c "! setpriv --no-new-privs --bounding-set=-all,+net_admin,+net_raw --inh-caps=-all \
            mount -t tmpfs none '$tmp/limits-mnt' 2>/dev/null"
    umount "$tmp/limits-mnt" 2>/dev/null || true
    reset_state
    d=$(mkhooks mountsd 'FAILOVER_MOUNTS="/srv/a /srv/b/"' 'FAILOVER_MOUNT_WITH=systemd')
    UNIT_LIMITS=1 run "$d" PreAcq-10-mounts
    check "PreAcq-10-mounts through systemd, under the unit's limits: exit 0" rc_is 0
    check "starts each mount unit, in order" \
        eq "$(calls '^systemctl start ')" $'systemctl start srv-a.mount\nsystemctl start srv-b.mount'
    check "...and calls no mount(8)" test "$(ncalls '^mount ')" = 0
    UNIT_LIMITS=1 run "$d" PreAcq-10-mounts
    check "again: exit 0, no second start" sh -c "[ $rc = 0 ] && [ $(ncalls '^systemctl start ') = 2 ]"
    UNIT_LIMITS=1 run "$d" PostRel-10-mounts
    check "PostRel-10-mounts through systemd: exit 0" rc_is 0
    check "stops each mount unit, in reverse order" \
        eq "$(calls '^systemctl stop ')" $'systemctl stop srv-b.mount\nsystemctl stop srv-a.mount'
else
    echo "# (needs Linux, root and setpriv: skipped here)"
fi

# ---------------------------------------------------------------------------------------
echo "# Fence"
reset_state
d=$(mkhooks nofence)
run "$d" Fence
check "unconfigured: Fence exits 0 and says what it would do" \
    sh -c "[ $rc = 0 ] && grep -q 'nothing to do' '$tmp/err'"
d=$(mkhooks fencecmd "FAILOVER_FENCE_COMMAND=\"touch $state/fenced\"")
run "$d" Fence
check "FAILOVER_FENCE_COMMAND: Fence exits 0" rc_is 0
check "...and ran the command" test -e "$state/fenced"
run "$d" Fence
check "...and again (the command must be idempotent itself): exit 0" rc_is 0
d=$(mkhooks fencefail 'FAILOVER_FENCE_COMMAND="exit 3"')
run "$d" Fence
check "a failing FAILOVER_FENCE_COMMAND: Fence exits 1" rc_is 1
d=$(mkhooks fenceboth 'FAILOVER_FENCE_COMMAND="true"' 'FAILOVER_FENCE_IPMI_HOST="192.0.2.1"')
run "$d" Fence
check "both ways configured: Fence refuses (exit 2)" rc_is 2

# ---------------------------------------------------------------------------------------
echo "# Test on Linux"
reset_state
d=$(mkhooks test)
echo "default via 198.51.100.1 dev eth0 proto static" >"$state/route4"
echo 198.51.100.1 >"$state/answers"
run "$d" Test
check "the default gateway answers: exit 0" rc_is 0
check "...pinged with -c 2 -W 1" grep -qxF "ping -c 2 -W 1 198.51.100.1" "$state/calls"
check "...and says so on one line" sh -c "[ \"\$(cat '$tmp/err')\" = 'Test: fit: 198.51.100.1 (default gateway) answers' ]"

: >"$state/answers"
run "$d" Test
check "the default gateway is silent: exit 1" rc_is 1
check "...with a one-line reason on stderr" err_lines 1
check "...that says why" err_has "Test: error: not fit: 198.51.100.1 (default gateway) did not answer"

reset_state
run "$d" Test
check "no default route, no target: exit 0" rc_is 0
check "...saying there is nothing to check" err_has "nothing to check"
check "...and pings nothing" test "$(ncalls '^ping')" = 0

reset_state
echo "default via fe80::1 dev eth0 proto ra metric 1024 expires 1798sec pref medium" >"$state/route6"
echo "fe80::1%eth0" >"$state/answers"
run "$d" Test
check "only an IPv6 link-local gateway: pinged as fe80::1%eth0, exit 0" \
    sh -c "[ $rc = 0 ] && grep -qxF 'ping -c 2 -W 1 fe80::1%eth0' '$state/calls'"

reset_state
printf 'default proto static metric 100\n\tnexthop via 198.51.100.2 dev eth0 weight 1\n\tnexthop via 198.51.100.3 dev eth1 weight 1\n' >"$state/route4"
echo 198.51.100.2 >"$state/answers"
run "$d" Test
check "a multipath default route: its first nexthop is pinged" \
    sh -c "[ $rc = 0 ] && grep -qxF 'ping -c 2 -W 1 198.51.100.2' '$state/calls'"

reset_state
echo "default via 198.51.100.10 dev eth0" >"$state/route4"
run "$d" Test
check "the gateway is the peer itself: not a reference, exit 0" rc_is 0
check "...with a warning" err_has "198.51.100.10 (default gateway) is an address of the peer"
check "...and no ping" test "$(ncalls '^ping')" = 0

reset_state
d=$(mkhooks target 'FAILOVER_TEST_TARGET="198.51.100.2 198.51.100.3"')
echo "default via 198.51.100.1 dev eth0" >"$state/route4"
echo 198.51.100.3 >"$state/answers"
run "$d" Test
check "FAILOVER_TEST_TARGET: one of two answers: exit 0" rc_is 0
check "...the targets are pinged in order, not the gateway" eq "$(calls '^ping')" \
    $'ping -c 2 -W 1 198.51.100.2\nping -c 2 -W 1 198.51.100.3'
: >"$state/answers"
run "$d" Test
check "FAILOVER_TEST_TARGET: none answers: exit 1" rc_is 1
check "...with a one-line reason naming them" \
    sh -c "[ \$(grep -c . '$tmp/err') = 1 ] && grep -qF '198.51.100.2 198.51.100.3 (FAILOVER_TEST_TARGET) did not answer' '$tmp/err'"

echo "# Test on macOS"
export DARWIN=1
reset_state
d=$(mkhooks test-darwin)
echo 198.51.100.1 >"$state/gw4"
echo 198.51.100.1 >"$state/answers"
run "$d" Test
check "the default gateway answers: exit 0" rc_is 0
check "...found with route -n get default, pinged with -c 2 -t 2" \
    eq "$(calls '^(route|ping)')" $'route -n get default\nping -c 2 -t 2 198.51.100.1'
: >"$state/answers"
run "$d" Test
check "the default gateway is silent: exit 1" rc_is 1
reset_state
run "$d" Test
check "no default route, no target: exit 0" rc_is 0
echo "link#4" >"$state/gw4"
run "$d" Test
check "an interface route (gateway link#4) is not an address: exit 0, nothing pinged" \
    sh -c "[ $rc = 0 ] && ! grep -q '^ping' '$state/calls'"
reset_state
d=$(mkhooks target6-darwin 'FAILOVER_TEST_TARGET="2001:db8::1"')
echo 2001:db8::1 >"$state/answers"
run "$d" Test
check "an IPv6 target is pinged with ping6: exit 0" \
    sh -c "[ $rc = 0 ] && grep -qxF 'ping6 -c 2 -i 1 2001:db8::1' '$state/calls'"
unset DARWIN

# ---------------------------------------------------------------------------------------
# The real ip and ping, in two namespaces of this run: a host and its gateway on a veth,
# addresses from 198.51.100.0/24 (documentation). Nothing runs in the root namespace.
echo "# Test with the real ip and ping, in network namespaces of its own"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || ! command -v ping >/dev/null 2>&1 ||
    ! ip netns add "ipfoh-$$-h" 2>/dev/null; then
    why="needs root, ip (iproute2), ping (iputils-ping) and network namespaces"
    if [ "${IPFO_HOOKS_NETNS:-auto}" = require ]; then
        fail "namespaces for the real-tools test of Test: $why (IPFO_HOOKS_NETNS=require)"
    else
        echo "# skipped: $why (IPFO_HOOKS_NETNS=require makes this a failure)"
    fi
else
    ns_h=ipfoh-$$-h ns_g=ipfoh-$$-g
    netns+=("$ns_h")
    setup_ok=1
    { ip netns add "$ns_g" && netns+=("$ns_g") &&
        ip -n "$ns_h" link add vh type veth peer name vg netns "$ns_g" &&
        ip -n "$ns_h" addr add 198.51.100.20/24 dev vh &&
        ip -n "$ns_g" addr add 198.51.100.1/24 dev vg &&
        ip -n "$ns_h" link set vh up && ip -n "$ns_g" link set vg up &&
        ip -n "$ns_h" route add default via 198.51.100.1; } || setup_ok=
    # Wait (at most 10 s) until the gateway answers, so that the cases below do not race
    # the link coming up.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -n "$setup_ok" ] || break
        ip netns exec "$ns_h" ping -c 1 -W 1 198.51.100.1 >/dev/null 2>&1 && break
        sleep 1
    done
    check "namespaces $ns_h and $ns_g are set up, the gateway answers" \
        sh -c "[ -n '$setup_ok' ] && ip netns exec '$ns_h' ping -c 1 -W 1 198.51.100.1 >/dev/null"
    reset_state
    d=$(mkhooks netns)
    NETNS=$ns_h run "$d" Test
    check "real tools: the default gateway answers: exit 0" rc_is 0
    check "...found by the real ip route show default" err_has "fit: 198.51.100.1 (default gateway) answers"
    ip -n "$ns_g" link set vg down
    start=$SECONDS
    NETNS=$ns_h run "$d" Test
    check "real tools: the gateway's link is down: exit 1" rc_is 1
    check "...with a one-line reason" err_lines 1
    check "...within 5 s (ping -c 2 -W 1)" test $((SECONDS - start)) -le 5
    ip -n "$ns_g" link set vg up
    ip -n "$ns_h" route del default via 198.51.100.1
    NETNS=$ns_h run "$d" Test
    check "real tools: no default route, no target: exit 0, nothing to check" \
        sh -c "[ $rc = 0 ] && grep -q 'nothing to check' '$tmp/err'"
    d=$(mkhooks netns-target 'FAILOVER_TEST_TARGET=198.51.100.1')
    for _ in 1 2 3 4 5; do
        ip netns exec "$ns_h" ping -c 1 -W 1 198.51.100.1 >/dev/null 2>&1 && break
    done
    NETNS=$ns_h run "$d" Test
    check "real tools: FAILOVER_TEST_TARGET on the link answers: exit 0" rc_is 0
fi

# ---------------------------------------------------------------------------------------
echo "# what the hooks refuse to source"
reset_state
d=$(mkhooks unsafe-conf 'FAILOVER_SERVICES="svc-a"')
chmod 664 "$d/hooks.conf"
run "$d" PostAcq-10-services
check "a group-writable hooks.conf: exit 2" rc_is 2
check "...refused, saying why" err_has "refusing $d/hooks.conf"
check "...and nothing started" test "$(ncalls '^systemctl start')" = 0
chmod 646 "$d/hooks.conf"
run "$d" Test
check "a world-writable hooks.conf: Test exits 2" rc_is 2

if [ "$(id -u)" = 0 ]; then
    chmod 644 "$d/hooks.conf"
    chown 65534 "$d/hooks.conf"
    run "$d" PostAcq-10-services
    check "a hooks.conf owned by another user: exit 2" rc_is 2
fi

d=$(mkhooks unsafe-lib 'FAILOVER_SERVICES="svc-a"')
chmod 666 "$d/lib/common.sh"
run "$d" PreRel-10-services
check "a writable lib/common.sh: exit 2, refused" sh -c "[ $rc = 2 ] && grep -q 'refusing $d/lib/common.sh' '$tmp/err'"
chmod 644 "$d/lib/common.sh"
chmod 775 "$d/lib"
run "$d" PreRel-10-services
check "a group-writable lib/: exit 2" rc_is 2

d=$(mkhooks nolib)
rm -r "${d:?}/lib"
run "$d" PostRel-10-mounts
check "no lib/common.sh: exit 2, saying so" sh -c "[ $rc = 2 ] && grep -q 'missing' '$tmp/err'"

d=$(mkhooks badconf 'FAILOVER_SERVICES="svc-a' 'if then')
run "$d" PostAcq-10-services
check "a hooks.conf that does not parse: exit 2" rc_is 2
check "...saying so" err_has "does not parse"
check "...and nothing started" test "$(ncalls '^systemctl start')" = 0

# ---------------------------------------------------------------------------------------
echo "# every hook in the clean environment, with no configuration"
reset_state
d=$(mkhooks clean)
for h in "${hooks[@]}"; do
    run "$d" "$h"
    check "$h: exit 0 with no hooks.conf and nothing to do" rc_is 0
    check "$h: writes nothing to stdout" test -z "$out"
    check "$h: every stderr line is prefixed with its name" err_prefixed "$h"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
