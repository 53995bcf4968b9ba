//! failoverd as a member of a group (SPEC §9): the thin shell around
//! [`ipfailover::group::Group`]. One mio loop: etcd's answers arrive through a channel and a
//! [`Waker`] (the `ipfailover-etcd` worker threads), hooks as child processes, conflict
//! answers on packet sockets, signals; the time is taken once per turn, the deadline is
//! checked first, and the core's actions are carried out in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipfailover::announce::AnnounceRound;
use ipfailover::failover::{HookPhase, ADD_RETRY_FIRST, ADD_RETRY_MAX};
use ipfailover::group::{
    AddrState, Group, GroupAction, GroupConfig, GroupEvent, GroupNotice, GroupReason, Lease, View,
};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{
    self, AddressStatus, GroupAddressStatus, GroupStatus, MemberStatus, Status, TransitionStatus,
};
use ipfailover_etcd::{Client, Reply, Request};
use ipfailover_os::addrs::{self, AddressBackend, ResolvedPair};
use ipfailover_os::announce::Announcers;
use ipfailover_os::conflict::ConflictWatch;
use ipfailover_os::daemon;
use ipfailover_os::hooks::{HookEnv, HookRunner, HookStatus, PhaseReport};
use ipfailover_os::mail::{self, Mailer};
use ipfailover_os::status_file::StatusFile;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::notices;
use ipfailover_runtime::StartError;

const SIGNALS: Token = Token(0);
const HOOK_OUTPUT: Token = Token(1);
const CONFLICT: Token = Token(2);
const ETCD: Token = Token(3);
const ADDRESS_EVENTS: Token = Token(4);

/// Packets read per conflict socket per turn.
const READ_BUDGET: usize = 256;
/// How long the release's last requests to etcd (the deletes, the revoke) may take at exit.
const ETCD_GRACE: Duration = Duration::from_secs(2);
/// How long queued mail may take at exit.
const MAIL_GRACE: Duration = Duration::from_secs(5);

/// The etcd client's settings from failoverd's: the endpoints, TLS, and the password read
/// from its file (which must not be readable by others).
pub(crate) fn etcd_config(
    settings: &Settings,
    member: &str,
) -> Result<ipfailover_etcd::Config, String> {
    let user = match (&settings.etcd_user, &settings.etcd_password_file) {
        (Some(user), Some(file)) => Some((user.clone(), read_password(file)?)),
        _ => None,
    };
    Ok(ipfailover_etcd::Config {
        endpoints: settings.etcd_endpoints.clone(),
        group: settings.group.clone(),
        member: member.to_string(),
        priority: settings.priority,
        ttl: settings.lease_ttl,
        ca_file: settings.etcd_ca_file.clone(),
        client_cert: settings
            .etcd_cert_file
            .clone()
            .zip(settings.etcd_key_file.clone()),
        user,
    })
}

/// The password in `path`: its first line. Like the heartbeat secret, the file must be a
/// regular file of root or ours that nobody else can read.
fn read_password(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let shown = format!("FAILOVER_ETCD_PASSWORD_FILE {}", path.display());
    // Non-blocking: a FIFO put there does not hang the daemon.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let uid = daemon::euid();
    if meta.uid() != 0 && meta.uid() != uid {
        return Err(format!(
            "{shown}: owned by uid {}, not by root or the daemon's uid {uid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {:04o}): run chmod 600 {}",
            meta.mode() & 0o777,
            path.display()
        ));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(format!("{shown}: empty"));
    }
    Ok(password)
}

/// This member's name: `FAILOVER_MEMBER_NAME`, or the host name.
pub(crate) fn member_name(settings: &Settings) -> String {
    settings
        .member_name
        .clone()
        .unwrap_or_else(daemon::hostname)
}

/// The running member. (No Debug: the signal handle has none.)
pub(crate) struct GroupShell {
    config_path: PathBuf,
    settings: Settings,
    member: String,
    hostname: String,
    poll: Poll,
    signals: Signals,
    etcd: Option<Client>,
    core: Group,
    pairs: BTreeMap<IpAddr, ResolvedPair>,
    backend: Box<dyn AddressBackend>,
    announcers: Announcers,
    announcing: BTreeMap<IpAddr, AnnounceRound>,
    /// The addresses on our interfaces, as far as our own operations tell.
    held: BTreeSet<IpAddr>,
    /// The last error adding or removing each address.
    errors: BTreeMap<IpAddr, String>,
    hooks: HookRunner,
    hook_source: Option<(u64, i32)>,
    conflict_watch: ConflictWatch,
    /// The kernel's address notifications, to notice a held address removed by hand.
    #[cfg(target_os = "linux")]
    address_events: Option<ipfailover_os::AddressEvents>,
    mailer: Option<Mailer>,
    status: Status,
    status_file: StatusFile,
    status_written: Instant,
    status_dirty: bool,
    /// Since when (wall ms) each address has had the holder the latest view shows.
    since: BTreeMap<IpAddr, (Option<String>, u64)>,
    /// Each member's lease time left, as etcd last said.
    lease_times: BTreeMap<String, i64>,
    /// The endpoint in use and its latest error.
    etcd_state: Option<(String, Option<String>)>,
    /// The latest renewal and grant failures, logged once per change.
    last_lease_error: Option<String>,
    /// When each address that could not be added is tried again, and the wait before that
    /// try: [`ADD_RETRY_FIRST`], twice as long each time up to [`ADD_RETRY_MAX`], as a pair's.
    add_retry: BTreeMap<IpAddr, (Instant, Duration)>,
    /// This member's key seen under another lease (another failoverd with this name?).
    name_clash: NameClash,
    stop_signals: u32,
    exit: bool,
}

impl GroupShell {
    /// Checks the settings against this host and starts the etcd client.
    pub fn start(settings: Settings, config_path: PathBuf) -> Result<GroupShell, StartError> {
        ipfailover_os::safe_fs::own_dir(&settings.state_dir, daemon::euid())
            .map_err(|e| StartError::config(format!("FAILOVER_STATE_DIR: {e}")))?;
        let mut pairs = BTreeMap::new();
        for p in &settings.group_ip_pairs {
            let r = addrs::resolve_as(p, "FAILOVER_GROUP_IP_PAIRS").map_err(StartError::config)?;
            pairs.insert(r.addr, r);
        }
        let member = member_name(&settings);
        let etcd_config = etcd_config(&settings, &member).map_err(StartError::config)?;
        let mut backend =
            addrs::default_backend().map_err(|e| StartError::other("address back end", e))?;
        // An address left on an interface by a member that was killed is no claim: its lease
        // is gone or going, and another member may hold the address by now. It goes before
        // anything else; if this member wins it again, it is added again.
        for p in pairs.values() {
            match backend.remove(p) {
                Ok(true) => log::warn!(
                    "removed {} from {}: left there by a failoverd that did not stop cleanly; \
                     it comes back only by winning it in etcd",
                    p.addr,
                    p.iface
                ),
                Ok(false) => {}
                Err(e) => return Err(StartError::other(&format!("removing {}", p.addr), e)),
            }
        }
        let poll = Poll::new().map_err(|e| StartError::other("poll", e))?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
            .map_err(|e| StartError::other("signals", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| StartError::other("poll", e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), ETCD).map_err(|e| StartError::other("poll waker", e))?,
        );
        let mut conflict_watch = ConflictWatch::new();
        let watched: Vec<(String, IpAddr)> =
            pairs.values().map(|p| (p.iface.clone(), p.addr)).collect();
        for e in conflict_watch.watch(poll.registry(), CONFLICT, &watched) {
            log::warn!("{e}: an acquisition there cannot check whether the address still answers");
        }
        #[cfg(target_os = "linux")]
        let address_events = follow_addresses(
            &poll,
            ADDRESS_EVENTS,
            "a held address removed by hand is not noticed",
        )?;
        let hostname = daemon::hostname();
        let mailer = match mail::settings_for(&settings, &hostname).map_err(|e| {
            StartError::config(format!(
                "{}: mail (FAILOVER_EMAIL_*): {e}",
                settings.source.display()
            ))
        })? {
            Some((ms, warning)) => {
                if let Some(w) = warning {
                    log::warn!("{w}");
                }
                Some(
                    Mailer::start(ms)
                        .map_err(|e| StartError::config(format!("mail (FAILOVER_EMAIL_*): {e}")))?,
                )
            }
            None => None,
        };
        let etcd = Client::start(etcd_config, waker)
            .map_err(|e| StartError::config(format!("etcd: {e}")))?;
        let now = Instant::now();
        let core = Group::new(
            now,
            GroupConfig {
                name: member.clone(),
                priority: settings.priority,
                lease_ttl: settings.lease_ttl,
                preempt: settings.preempt,
                addrs: settings.group_ip_pairs.iter().map(|p| p.addr).collect(),
            },
        );
        let hook_dir = settings.script_dir.join(&settings.group);
        log::info!(
            "failoverd {} member {member} (priority {}) of group {} on etcd {}; moves {}; lease \
             {}; preemption {}; hooks from {}",
            env!("CARGO_PKG_VERSION"),
            settings.priority,
            settings.group,
            settings.etcd_endpoints.join(" "),
            pairs
                .values()
                .map(|p| format!("{}/{} on {}", p.addr, p.prefix, p.iface))
                .collect::<Vec<_>>()
                .join(", "),
            ipfailover::settings::format_duration(settings.lease_ttl),
            if settings.preempt { "on" } else { "off" },
            hook_dir.display()
        );
        let status = Status::new(
            "failoverd",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            &hostname,
            daemon::wall_ms(),
        );
        Ok(GroupShell {
            hooks: HookRunner::new(hook_dir, settings.script_timeout, HookEnv::default())
                .with_record(settings.state_dir.join("failoverd.hooks")),
            hook_source: None,
            status_file: StatusFile::new(&settings.state_dir, "failoverd"),
            status,
            status_written: now,
            status_dirty: true,
            config_path,
            member,
            hostname,
            poll,
            signals,
            etcd: Some(etcd),
            core,
            pairs,
            backend,
            announcers: Announcers::new(),
            announcing: BTreeMap::new(),
            held: BTreeSet::new(),
            errors: BTreeMap::new(),
            conflict_watch,
            #[cfg(target_os = "linux")]
            address_events,
            mailer,
            since: BTreeMap::new(),
            lease_times: BTreeMap::new(),
            etcd_state: None,
            last_lease_error: None,
            add_retry: BTreeMap::new(),
            name_clash: NameClash::default(),
            stop_signals: 0,
            exit: false,
            settings,
        })
    }

    /// Runs until the core says exit.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let before = Instant::now();
            let timeout = self
                .next_wake()
                .map(|t| t.saturating_duration_since(before));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            let mut signalled = false;
            let mut hook_event = self.hooks.next_deadline().is_some_and(|d| now >= d);
            let (mut conflicts, mut addresses) = (false, false);
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => signalled = true,
                    HOOK_OUTPUT => hook_event = true,
                    CONFLICT => conflicts = true,
                    ADDRESS_EVENTS => addresses = true,
                    _ => {}
                }
            }
            // One order for every turn, a pair's (docs/failoverd.md "The loop"): the inputs
            // first, then time. After a stall (SIGSTOP, a paused VM) the deadline still comes
            // before anything the member might act on: the core checks it first on every
            // event, the first input of this turn included.
            if conflicts {
                self.read_conflicts(now);
            }
            if addresses {
                self.check_addresses(now);
            }
            // The waker's token may be coalesced with others: drain the channel every turn.
            self.read_etcd(now);
            if signalled && self.handle_signals(now) {
                hook_event = true;
            }
            if hook_event {
                if let Some(report) = self.hooks.poll(now) {
                    let done = self.hooks_done(report);
                    self.feed(now, done);
                }
                self.watch_hook_output();
            }
            self.feed(now, GroupEvent::Tick);
            self.retry_adds(now);
            self.run_announcements(now);
            if self.status_dirty || self.exit || status::refresh_due(now, self.status_written, None)
            {
                self.write_status(now);
            }
            if self.exit {
                self.hooks.shutdown(Duration::from_secs(2));
                if let Some(etcd) = self.etcd.take() {
                    etcd.finish(ETCD_GRACE);
                }
                if let Some(m) = self.mailer.take() {
                    m.shutdown(MAIL_GRACE);
                }
                log::info!("failoverd stopped");
                return Ok(());
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut status = self.status_written + status::REFRESH;
        if let Some(at) = self.add_retry.values().map(|(at, _)| *at).min() {
            status = status.min(at);
        }
        let announce = self
            .announcing
            .values()
            .filter_map(AnnounceRound::next_deadline)
            .min();
        [
            self.core.next_deadline(),
            announce,
            self.hooks.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(status, Instant::min)
        .into()
    }

    fn read_etcd(&mut self, now: Instant) {
        // Bounded: a flood of views cannot starve the loop.
        for _ in 0..1024 {
            let Some(reply) = self.etcd.as_ref().and_then(Client::try_recv) else {
                return;
            };
            let event = match reply {
                Reply::Granted { id, ttl, sent_at } => {
                    log::info!("lease {id:x} granted");
                    let wanted = i64::try_from(self.settings.lease_ttl.as_secs()).unwrap_or(0);
                    if ttl > wanted {
                        // Safe (this member fences by its own, shorter, TTL), but the others
                        // wait longer for a dead member's addresses than configured.
                        log::warn!(
                            "etcd granted a lease of {ttl}s, longer than FAILOVER_LEASE_TTL \
                             ({wanted}s): etcd's shortest lease is 1.5 x its election timeout; \
                             a dead member's addresses are free only after {ttl}s"
                        );
                    }
                    self.last_lease_error = None;
                    Some(GroupEvent::LeaseGranted { id, sent_at })
                }
                Reply::GrantFailed(why) => {
                    self.lease_error(format!("no lease: {why}"));
                    Some(GroupEvent::GrantFailed)
                }
                Reply::Renewed { sent_at } => {
                    if self.last_lease_error.take().is_some() {
                        log::info!("lease renewed again");
                    }
                    Some(GroupEvent::RenewalAcked { sent_at })
                }
                Reply::RenewFailed(why) => {
                    self.lease_error(format!("renewal failed: {why}"));
                    Some(GroupEvent::RenewalFailed)
                }
                Reply::LeaseLost => {
                    log::warn!("etcd no longer has this member's lease");
                    Some(GroupEvent::LeaseLost)
                }
                Reply::View(view) => {
                    self.note_holders(&view);
                    self.check_name(now, &view);
                    Some(GroupEvent::View(view))
                }
                Reply::Acquired { addr, epoch } => Some(GroupEvent::Acquired { addr, epoch }),
                Reply::AcquireFailed { addr, why } => {
                    log::warn!("acquiring {addr}: no answer from etcd ({why})");
                    Some(GroupEvent::AcquireFailed { addr })
                }
                Reply::Failed { what, why } => {
                    log::warn!("etcd: {what}: {why}");
                    None
                }
                Reply::LeaseTimes(times) => {
                    self.lease_times = times;
                    None
                }
                Reply::Reachable { endpoint, error } => {
                    match &error {
                        None => log::info!("etcd answers at {endpoint}"),
                        Some(e) => log::warn!("etcd at {endpoint} does not answer: {e}"),
                    }
                    self.etcd_state = Some((endpoint, error));
                    self.status_dirty = true;
                    None
                }
            };
            if let Some(e) = event {
                self.feed(now, e);
            }
        }
    }

    fn lease_error(&mut self, message: String) {
        if self.last_lease_error.as_ref() != Some(&message) {
            log::warn!("{message}");
        }
        self.last_lease_error = Some(message);
    }

    /// Says once if this member's key is attached to a lease that is not this member's for
    /// longer than a renewal: another failoverd uses the same FAILOVER_MEMBER_NAME (two hosts
    /// with one host name?). Its leases are then never revoked as a previous life's.
    fn check_name(&mut self, now: Instant, view: &View) {
        let Lease::Held { id, .. } = self.core.lease() else {
            return;
        };
        let clash = view
            .members
            .iter()
            .any(|m| m.name == self.member && m.lease != id && m.lease != 0);
        if self.name_clash.observe(now, clash, self.settings.lease_ttl) {
            let subject = format!(
                "{}: another failoverd uses the member name {} in group {}",
                self.hostname, self.member, self.settings.group
            );
            let body = format!(
                "The key of member {} in etcd is attached to a lease that is not this \
                 failoverd's. Two members with one name (two hosts with the same host name?) \
                 confuse the group: set FAILOVER_MEMBER_NAME to a name of its own on each.\n",
                self.member
            );
            log::error!("{subject}");
            self.send_notice(subject, body);
        }
    }

    /// Remembers since when each address has had its holder, for the status.
    fn note_holders(&mut self, view: &View) {
        let wall = daemon::wall_ms();
        for addr in self.pairs.keys() {
            let holder = view.holders.get(addr).map(|h| h.member.clone());
            let changed = self.since.get(addr).is_none_or(|(h, _)| *h != holder);
            if changed {
                self.since.insert(*addr, (holder, wall));
                self.status_dirty = true;
            }
        }
    }

    fn read_conflicts(&mut self, now: Instant) {
        let mut seen: Vec<(IpAddr, [u8; 6])> = Vec::new();
        for a in self.conflict_watch.read(READ_BUDGET) {
            if seen.contains(&(a.addr, a.mac)) {
                continue;
            }
            seen.push((a.addr, a.mac));
            log::debug!(
                "{} answers from {} on {}",
                a.addr,
                mac_text(&a.mac),
                a.iface
            );
            self.feed(
                now,
                GroupEvent::ProbeAnswer {
                    addr: a.addr,
                    mac: a.mac,
                },
            );
        }
    }

    /// Handles pending signals; true if a child exited (a hook may be done).
    fn handle_signals(&mut self, now: Instant) -> bool {
        let signals: Vec<i32> = self.signals.pending().collect();
        let mut child = false;
        for sig in signals {
            match sig {
                SIGCHLD => child = true,
                SIGHUP => self.reload(),
                SIGTERM | SIGINT => {
                    self.stop_signals += 1;
                    if self.stop_signals == 1 {
                        log::info!(
                            "signal {sig}: leaving the group: releasing what is held, then \
                             revoking the lease"
                        );
                        self.feed(now, GroupEvent::Shutdown);
                    } else {
                        // Even at once, nothing stays on an interface: another member takes
                        // the addresses when the lease expires, and must find them gone.
                        log::warn!(
                            "second stop signal: removing the addresses and exiting at once"
                        );
                        for addr in self.held.clone() {
                            self.remove(addr);
                        }
                        self.exit = true;
                    }
                }
                _ => {}
            }
        }
        child
    }

    /// SIGHUP: the mail settings and the hooks' timeout apply at once; what makes the member
    /// (etcd, the group, its addresses, the priority, the lease) takes a restart.
    fn reload(&mut self) {
        // Not daemon::reload: a group member has no heartbeat secret to read or warn about.
        let settings = match Settings::load(&self.config_path, Role::Failoverd) {
            Ok(s) => s,
            Err(errors) => {
                log::error!(
                    "SIGHUP: the new configuration is not valid; keeping the old one:\n{errors}"
                );
                return;
            }
        };
        for w in &settings.warnings {
            log::warn!("{w}");
        }
        if !settings.group_mode() {
            log::warn!(
                "SIGHUP: FAILOVER_ETCD_ENDPOINTS is no longer set; this member stays in the \
                 group until failoverd is restarted"
            );
            return;
        }
        let s = &self.settings;
        let restart_keys = [
            (
                "FAILOVER_ETCD_ENDPOINTS",
                settings.etcd_endpoints != s.etcd_endpoints,
            ),
            ("FAILOVER_GROUP", settings.group != s.group),
            (
                "FAILOVER_GROUP_IP_PAIRS",
                settings.group_ip_pairs != s.group_ip_pairs,
            ),
            ("FAILOVER_PRIORITY", settings.priority != s.priority),
            ("FAILOVER_LEASE_TTL", settings.lease_ttl != s.lease_ttl),
            ("FAILOVER_PREEMPT", settings.preempt != s.preempt),
            (
                "FAILOVER_MEMBER_NAME",
                settings.member_name != s.member_name,
            ),
            ("FAILOVER_SCRIPT_DIR", settings.script_dir != s.script_dir),
            ("FAILOVER_STATE_DIR", settings.state_dir != s.state_dir),
            (
                "FAILOVER_ETCD_* (TLS, user)",
                settings.etcd_ca_file != s.etcd_ca_file
                    || settings.etcd_cert_file != s.etcd_cert_file
                    || settings.etcd_key_file != s.etcd_key_file
                    || settings.etcd_user != s.etcd_user
                    || settings.etcd_password_file != s.etcd_password_file,
            ),
        ];
        for (key, changed) in restart_keys {
            if changed {
                log::warn!("SIGHUP: {key} changed; it takes effect when failoverd is restarted");
            }
        }
        match mail::settings_for(&settings, &self.hostname) {
            Ok(Some((ms, _))) => match &self.mailer {
                Some(m) => m.reconfigure(ms),
                None => match Mailer::start(ms) {
                    Ok(m) => self.mailer = Some(m),
                    Err(e) => log::error!("SIGHUP: mail settings: {e}; no mail is sent"),
                },
            },
            Ok(None) => {
                if let Some(m) = self.mailer.take() {
                    m.shutdown(MAIL_GRACE);
                }
            }
            Err(e) => log::error!(
                "SIGHUP: mail (FAILOVER_EMAIL_*): {e}; {}",
                if self.mailer.is_some() {
                    "the old mail settings are kept"
                } else {
                    "no mail is sent"
                }
            ),
        }
        let dir = self.hooks.dir().to_path_buf();
        self.hooks
            .reconfigure(dir, settings.script_timeout, HookEnv::default());
        self.settings.script_timeout = settings.script_timeout;
        self.settings.email_recipients = settings.email_recipients;
        self.settings.email_transport = settings.email_transport;
        self.settings.email_from = settings.email_from;
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
    }

    fn watch_hook_output(&mut self) {
        let now = self.hooks.output_source();
        if now == self.hook_source {
            return;
        }
        if let Some((_, fd)) = self.hook_source.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&fd));
        }
        if let Some((n, fd)) = now {
            match self.poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                HOOK_OUTPUT,
                Interest::READABLE,
            ) {
                Ok(()) => self.hook_source = Some((n, fd)),
                Err(e) => log::warn!("cannot watch the hook's output: {e}"),
            }
        }
    }

    fn hooks_done(&mut self, report: PhaseReport) -> GroupEvent {
        let phase = report.phase.as_str();
        if let Some(why) = &report.dir_refused {
            log::error!("{phase} hooks not run: {why}");
            self.status.counters.hooks_failed += 1;
        }
        for (name, why) in &report.skipped {
            log::warn!("hook {name} skipped: {why}");
        }
        for r in &report.results {
            if !matches!(r.status, HookStatus::Refused(_)) {
                self.status.counters.hooks_run += 1;
            }
            if r.status.ok() {
                log::info!("hook {} ok in {} ms", r.name, r.duration.as_millis());
            } else {
                self.status.counters.hooks_failed += 1;
                let output = r.output.trim_end();
                log::warn!(
                    "hook {} failed ({}) after {} ms{}{}",
                    r.name,
                    r.status,
                    r.duration.as_millis(),
                    if output.is_empty() {
                        ""
                    } else {
                        "; its output ends:\n"
                    },
                    output
                );
            }
        }
        if !report.ok() && report.phase != HookPhase::Test {
            let subject = format!(
                "{}: {phase} hook failed (group {})",
                self.hostname, self.settings.group
            );
            let body = format!(
                "{}\nThe transition went on: a failing {phase} hook does not stop it.\n",
                notices::hook_failures(&report)
            );
            self.send_notice(subject, body);
        }
        self.status_dirty = true;
        GroupEvent::HooksDone {
            phase: report.phase,
            ok: report.ok(),
        }
    }

    /// Feeds one event and everything its actions lead to.
    fn feed(&mut self, now: Instant, event: GroupEvent) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            for action in self.core.handle(now, ev) {
                self.execute(now, action, &mut queue);
            }
        }
    }

    fn execute(&mut self, now: Instant, action: GroupAction, queue: &mut VecDeque<GroupEvent>) {
        match action {
            GroupAction::GrantLease => self.ask(Request::Grant),
            GroupAction::Renew { lease } => self.ask(Request::Renew { lease }),
            GroupAction::Register { lease } => self.ask(Request::Register { lease }),
            GroupAction::Unregister { lease } => self.ask(Request::Unregister { lease }),
            GroupAction::Revoke { lease } => self.ask(Request::Revoke { lease }),
            GroupAction::TryAcquire { addr, lease } => {
                self.ask(Request::TryAcquire { addr, lease })
            }
            GroupAction::GiveUp { addr, lease } => self.ask(Request::GiveUp { addr, lease }),
            GroupAction::Probe { addrs } => {
                log::debug!(
                    "probing {}",
                    addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                for e in self.conflict_watch.probe(self.poll.registry(), CONFLICT) {
                    log::warn!("{e}");
                }
            }
            GroupAction::RunHooks {
                phase,
                addr,
                epoch,
                reason,
            } => {
                self.hooks.set_env(self.hook_env(addr, epoch));
                if let Some(report) = self.hooks.begin(Instant::now(), phase, reason.as_str()) {
                    let done = self.hooks_done(report);
                    queue.push_back(done);
                }
                self.watch_hook_output();
            }
            GroupAction::Add { addr } => {
                self.add(addr);
                if self.held.contains(&addr) {
                    self.add_retry.remove(&addr);
                } else {
                    self.add_retry
                        .insert(addr, (now + ADD_RETRY_FIRST, ADD_RETRY_FIRST));
                }
            }
            GroupAction::Announce { addr } => {
                if self.held.contains(&addr) {
                    self.announcing.entry(addr).or_default().start(now);
                }
            }
            GroupAction::Remove { addr } => self.remove(addr),
            GroupAction::Transition { addr, from, to } => {
                let reason = match to {
                    AddrState::Releasing { reason, .. } => reason.as_str(),
                    _ => "",
                };
                log::info!(
                    "{addr}: {} -> {}{}{}",
                    state_text(from),
                    state_text(to),
                    if reason.is_empty() { "" } else { ", " },
                    reason
                );
                self.status.push_transition(TransitionStatus {
                    at_ms: daemon::wall_ms(),
                    from: state_text(from),
                    to: state_text(to),
                    reason: if reason.is_empty() {
                        addr.to_string()
                    } else {
                        format!("{addr}: {reason}")
                    },
                    duration_ms: 0,
                });
                if matches!(to, AddrState::Held { .. }) {
                    self.status.counters.takeovers += 1;
                }
                if matches!(from, AddrState::Releasing { .. }) && to == AddrState::Free {
                    self.status.counters.releases += 1;
                }
                self.status_dirty = true;
            }
            GroupAction::Notify(notice) => self.notify(&notice),
            GroupAction::Exit => self.exit = true,
        }
    }

    fn ask(&self, request: Request) {
        if let Some(etcd) = &self.etcd {
            etcd.send(request);
        }
    }

    fn hook_env(&self, addr: IpAddr, epoch: i64) -> HookEnv {
        let pairs = self
            .settings
            .group_ip_pairs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        HookEnv {
            peer_ip: String::new(),
            pairs: String::new(),
            extra: vec![
                ("FAILOVER_GROUP".into(), self.settings.group.clone()),
                ("FAILOVER_GROUP_IP_PAIRS".into(), pairs),
                ("FAILOVER_MEMBER".into(), self.member.clone()),
                ("FAILOVER_ADDRESS".into(), addr.to_string()),
                (
                    "FAILOVER_INTERFACE".into(),
                    self.pairs
                        .get(&addr)
                        .map(|p| p.iface.clone())
                        .unwrap_or_default(),
                ),
                ("FAILOVER_EPOCH".into(), epoch.to_string()),
            ],
        }
    }

    fn add(&mut self, addr: IpAddr) {
        let Some(p) = self.pairs.get(&addr) else {
            return;
        };
        match self.backend.add(p) {
            Ok(added) => {
                self.held.insert(addr);
                self.errors.remove(&addr);
                if added {
                    log::info!("added {}/{} to {}", p.addr, p.prefix, p.iface);
                }
            }
            Err(e) => {
                // Logged once per change of outcome, not at every retry.
                let e = e.to_string();
                if self.errors.get(&addr) != Some(&e) {
                    log::error!(
                        "adding {}/{} to {}: {e} (retried while the addresses are held)",
                        p.addr,
                        p.prefix,
                        p.iface
                    );
                }
                self.errors.insert(addr, e);
            }
        }
        self.status_dirty = true;
    }

    fn remove(&mut self, addr: IpAddr) {
        self.announcing.remove(&addr);
        self.add_retry.remove(&addr);
        let Some(p) = self.pairs.get(&addr) else {
            return;
        };
        match self.backend.remove(p) {
            Ok(removed) => {
                self.held.remove(&addr);
                self.errors.remove(&addr);
                if removed {
                    log::info!("removed {} from {}", p.addr, p.iface);
                }
            }
            Err(e) => {
                log::error!("removing {} from {}: {e}", p.addr, p.iface);
                self.errors.insert(addr, e.to_string());
            }
        }
        self.status_dirty = true;
    }

    /// After an address change in the kernel: an address this member holds in etcd (its key
    /// under our live lease, the deadline not passed) that is gone from its interface was
    /// removed by hand or by a network manager. Nobody else may answer for it while our key
    /// lives, so it is added again at once (and announced), and the administrator is told.
    fn check_addresses(&mut self, now: Instant) {
        if !addresses_changed(
            #[cfg(target_os = "linux")]
            &mut self.address_events,
        ) {
            return;
        }
        // One look at every address of the host, not one per address: a group may hold
        // hundreds, and each of their adds is an event.
        let present: BTreeSet<(String, IpAddr)> = match ipfailover_os::local_addrs() {
            Ok(locals) => locals.into_iter().map(|l| (l.iface, l.addr)).collect(),
            Err(e) => {
                log::warn!("reading this host's addresses: {e}");
                return;
            }
        };
        let gone: Vec<(IpAddr, i64)> = self
            .core
            .addrs()
            .iter()
            .filter(|(a, st)| {
                st.may_hold() && !matches!(st, AddrState::Releasing { .. }) && self.held.contains(a)
            })
            .filter(|(a, _)| {
                self.pairs
                    .get(a)
                    .is_some_and(|p| !present.contains(&(p.iface.clone(), p.addr)))
            })
            .map(|(a, st)| (*a, st.epoch().unwrap_or(0)))
            .collect();
        for (addr, epoch) in gone {
            let iface = self
                .pairs
                .get(&addr)
                .map_or("?", |p| p.iface.as_str())
                .to_string();
            log::warn!(
                "{addr} was removed from {iface} behind failoverd's back; this member holds it \
                 in etcd (epoch {epoch}): adding it again"
            );
            self.held.remove(&addr);
            self.errors.insert(
                addr,
                format!("removed from {iface} behind failoverd's back"),
            );
            self.add_retry.insert(addr, (now, Duration::ZERO));
            let subject = format!(
                "{}: {addr} was removed from {iface} by hand; added again",
                self.settings.group
            );
            let body = format!(
                "Member {} of group {} holds {addr} in etcd (epoch {epoch}), but the address \
                 was removed from {iface} by something other than failoverd (ip addr del, a \
                 network manager). Nobody else may take it while this member's lease lives, so \
                 failoverd added it again. To move it away on purpose, stop failoverd on this \
                 member (systemctl stop failoverd): it releases the address and the next \
                 member takes it.\n",
                self.member, self.settings.group
            );
            self.send_notice(subject, body);
        }
        self.retry_adds(now);
    }

    /// An address this member holds in etcd that could not be added (the interface was down,
    /// say) is tried again, 1 s later, then twice as long each time up to 30 s, as a pair's:
    /// nobody else may answer for it meanwhile, and the back-off spares the log and the
    /// kernel a failure every second while the cause lasts.
    fn retry_adds(&mut self, now: Instant) {
        let due: Vec<IpAddr> = self
            .core
            .addrs()
            .iter()
            .filter(|(a, st)| {
                st.may_hold()
                    && !self.held.contains(a)
                    && self.errors.contains_key(a)
                    && self.add_retry.get(a).is_some_and(|(at, _)| now >= *at)
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            self.add(addr);
            if self.held.contains(&addr) {
                log::info!("{addr} added on a retry");
                self.add_retry.remove(&addr);
                self.announcing.entry(addr).or_default().start(now);
            } else if let Some((at, wait)) = self.add_retry.get_mut(&addr) {
                *wait = if wait.is_zero() {
                    ADD_RETRY_FIRST
                } else {
                    (*wait * 2).min(ADD_RETRY_MAX)
                };
                *at = now + *wait;
            }
        }
        // What the core no longer holds is not tried again.
        let core = self.core.addrs();
        self.add_retry
            .retain(|a, _| core.get(a).is_some_and(|st| st.may_hold()));
    }

    fn run_announcements(&mut self, now: Instant) {
        let mut finished = Vec::new();
        let mut due = Vec::new();
        for (addr, round) in &mut self.announcing {
            for _ in 0..round.due(now) {
                due.push(*addr);
            }
            if round.next_deadline().is_none() {
                finished.push(*addr);
            }
        }
        for addr in due {
            if let Some(p) = self.pairs.get(&addr) {
                if let Err(e) = self.announcers.announce(&p.iface, p.addr) {
                    log::warn!("{e}");
                }
            }
        }
        for addr in finished {
            self.announcing.remove(&addr);
        }
    }

    fn send_notice(&mut self, subject: String, body: String) {
        log::info!("notice: {subject}");
        if let Some(m) = &self.mailer {
            m.send(mail::Notice { subject, body });
        }
    }

    fn notify(&mut self, notice: &GroupNotice) {
        let group = self.settings.group.clone();
        let who = format!("{} (member {})", self.hostname, self.member);
        let (subject, body) = match notice {
            GroupNotice::TookOver { addr, epoch } => (
                format!("{who} took over {addr} (group {group})"),
                format!(
                    "{who} won {addr} in etcd (epoch {epoch}), found that no other host answers \
                     for it, ran its acquire hooks and added it.\n\n{}",
                    self.view_text()
                ),
            ),
            GroupNotice::Released { addr, reason } => (
                format!("{who} released {addr} (group {group}, {reason})"),
                format!(
                    "{who} gave up {addr}: {}.\n\n{}",
                    reason_text(*reason),
                    self.view_text()
                ),
            ),
            GroupNotice::Fenced { addrs, why } => (
                format!("{who} fenced itself (group {group})"),
                format!(
                    "{who} could not confirm its etcd lease in time ({why}). So that no two \
                     hosts answer for an address, it removed {} before the lease could \
                     expire; another member acquires them. It rejoins when etcd answers \
                     again.\n\n{}",
                    if addrs.is_empty() {
                        "nothing (it held nothing)".to_string()
                    } else {
                        addrs
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    self.view_text()
                ),
            ),
            GroupNotice::Conflict { addr, mac } => (
                format!(
                    "{who}: {addr} still answers from {} (group {group})",
                    mac_text(mac)
                ),
                format!(
                    "{who} won {addr} in etcd, but another host ({}) still answers for it on the \
                     LAN. It is not added while that host answers; failoverd probes again \
                     and adds it once the answers stop (the Fence hook, if any, ran once).\n",
                    mac_text(mac)
                ),
            ),
        };
        if matches!(notice, GroupNotice::Fenced { .. }) {
            log::warn!("{subject}: {body}");
        }
        self.status_dirty = true;
        self.send_notice(subject, body);
    }

    /// The group as this member sees it, for a notice.
    fn view_text(&self) -> String {
        let view = self.core.view();
        let mut out = format!(
            "The group {} at etcd revision {}:\n",
            self.settings.group, view.revision
        );
        for m in &view.members {
            out.push_str(&format!("  member {} priority {}\n", m.name, m.priority));
        }
        for addr in self.pairs.keys() {
            match view.holders.get(addr) {
                Some(h) => out.push_str(&format!(
                    "  {addr} held by {} (epoch {})\n",
                    h.member, h.epoch
                )),
                None => out.push_str(&format!("  {addr} unheld\n")),
            }
        }
        out
    }

    fn write_status(&mut self, now: Instant) {
        self.status_written = now;
        self.status_dirty = false;
        let received = ipfailover::receive::Counters::default();
        let s = &mut self.status;
        s.stamp(daemon::wall_ms(), &received);
        s.state = if self.exit {
            "stopped"
        } else {
            match self.core.lease() {
                Lease::None => "no-lease",
                Lease::Granting => "joining",
                Lease::Held { .. } => "member",
            }
        }
        .to_string();
        s.addresses = self
            .pairs
            .values()
            .map(|p| AddressStatus {
                interface: p.iface.clone(),
                address: p.addr.to_string(),
                prefix: p.prefix,
                held: self.held.contains(&p.addr),
                error: self.errors.get(&p.addr).cloned(),
            })
            .collect();
        let view = self.core.view();
        let mut members: Vec<MemberStatus> = view
            .members
            .iter()
            .map(|m| MemberStatus {
                name: m.name.clone(),
                priority: m.priority,
                lease_left_s: self.lease_times.get(&m.name).copied(),
                this: m.name == self.member,
            })
            .collect();
        members.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        let (lease, fence_in_ms) = match self.core.lease() {
            Lease::Held { id, deadline, .. } => (
                Some(format!("{id:x}")),
                Some(millis(deadline.saturating_duration_since(now))),
            ),
            _ => (None, None),
        };
        let states = self.core.addrs();
        s.group = Some(GroupStatus {
            name: self.settings.group.clone(),
            member: self.member.clone(),
            priority: self.settings.priority,
            preempt: self.settings.preempt,
            lease_ttl_ms: millis(self.settings.lease_ttl),
            lease,
            fence_in_ms,
            endpoint: self.etcd_state.as_ref().map(|(e, _)| e.clone()),
            etcd_reachable: self.etcd_state.as_ref().is_some_and(|(_, e)| e.is_none()),
            etcd_error: self.etcd_state.as_ref().and_then(|(_, e)| e.clone()),
            revision: view.revision,
            members,
            addresses: self
                .pairs
                .values()
                .map(|p| {
                    let h = view.holders.get(&p.addr);
                    GroupAddressStatus {
                        address: p.addr.to_string(),
                        interface: p.iface.clone(),
                        prefix: p.prefix,
                        holder: h.map(|h| h.member.clone()),
                        epoch: h.map(|h| h.epoch),
                        since_ms: self.since.get(&p.addr).map(|(_, t)| *t),
                        state: states
                            .get(&p.addr)
                            .map_or("free", |st| st.as_str())
                            .to_string(),
                        held: self.held.contains(&p.addr),
                        error: self.errors.get(&p.addr).cloned(),
                    }
                })
                .collect(),
        });
        if let Some(m) = &self.mailer {
            let ms = m.stats();
            s.counters.mails_sent = ms.sent;
            s.counters.mails_failed = ms.failed_attempts;
            s.counters.mails_dropped = ms.dropped;
        }
        self.status_file.write(&self.status);
    }
}

/// Whether this member's key has stayed under another lease long enough to say so: right
/// after a restart the key still carries the previous life's lease until this member's put
/// lands, so only a clash that lasts a TTL counts; it is told once per episode. Its time is the
/// loop turn's, like every other deadline's.
#[derive(Debug, Default)]
struct NameClash {
    since: Option<Instant>,
    told: bool,
}

impl NameClash {
    /// Whether the clash (or its absence) seen at `now` is to be told now.
    fn observe(&mut self, now: Instant, clash: bool, ttl: Duration) -> bool {
        if !clash {
            *self = NameClash::default();
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now >= since + ttl && !self.told {
            self.told = true;
            return true;
        }
        false
    }
}

/// The kernel's address notifications, registered with `poll` under `token`; `None` (with a
/// warning naming what is lost: `without`) when the kernel will not give them.
#[cfg(target_os = "linux")]
fn follow_addresses(
    poll: &Poll,
    token: Token,
    without: &str,
) -> Result<Option<ipfailover_os::AddressEvents>, StartError> {
    match ipfailover_os::AddressEvents::new() {
        Ok(events) => {
            let fd = events.fd();
            poll.registry()
                .register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
                .map_err(|e| StartError::other("poll", e))?;
            Ok(Some(events))
        }
        Err(e) => {
            log::warn!("cannot follow the kernel's address changes ({e}): {without}");
            Ok(None)
        }
    }
}

/// Whether the kernel said an address changed since the last call (always true where
/// failoverd cannot follow the changes: then every caller's check runs).
fn addresses_changed(
    #[cfg(target_os = "linux")] events: &mut Option<ipfailover_os::AddressEvents>,
) -> bool {
    #[cfg(target_os = "linux")]
    {
        events.as_mut().is_some_and(|events| events.drain())
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// A state with its hook phase: `acquiring (PreAcq)`.
fn state_text(state: AddrState) -> String {
    match state {
        AddrState::Acquiring { phase, .. } | AddrState::Releasing { phase, .. } => {
            format!("{} ({})", state.as_str(), phase.as_str())
        }
        other => other.as_str().to_string(),
    }
}

fn reason_text(reason: GroupReason) -> &'static str {
    match reason {
        GroupReason::Unheld => "nobody held it",
        GroupReason::Preempted => "a member of higher priority is back (preemption is on)",
        GroupReason::Fenced => "this member could not renew its lease in time",
        GroupReason::LostClaim => "etcd no longer shows it as this member's",
        GroupReason::TestRefused => "the Test hook refused the takeover",
        GroupReason::Shutdown => "failoverd is stopping",
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_clash_is_told_once_it_has_lasted_a_ttl_by_the_turns_time_and_once_per_episode() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(2);
        let ms = Duration::from_millis;
        let mut c = NameClash::default();
        assert!(!c.observe(t0, true, ttl));
        assert!(!c.observe(t0 + ms(1999), true, ttl));
        assert!(c.observe(t0 + ms(2000), true, ttl));
        assert!(!c.observe(t0 + ms(5000), true, ttl), "told twice");
        // Over, then again: a new episode, timed from its own start.
        assert!(!c.observe(t0 + ms(6000), false, ttl));
        assert!(!c.observe(t0 + ms(7000), true, ttl));
        assert!(!c.observe(t0 + ms(8999), true, ttl));
        assert!(c.observe(t0 + ms(9000), true, ttl));
        // A view that arrives late (a stall) is judged at the turn's time, not the wall's:
        // the same instants give the same answers however slowly they are fed.
        let mut d = NameClash::default();
        assert!(!d.observe(t0, true, ttl));
        std::thread::sleep(ms(30));
        assert!(!d.observe(t0 + ms(1999), true, ttl));
    }
}
