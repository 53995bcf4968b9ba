//! failoverd as a member of a group (docs/groups.md), a driver of the runtime around
//! [`ipfailover::group::Group`]: etcd's answers arrive through a channel and a [`Waker`] (the
//! `ipfailover-etcd` worker threads), drained every turn; the core's actions are carried out in
//! order through the runtime's services (hooks, addresses, announcements, conflict probes,
//! mail, status).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipfailover::failover::HookPhase;
use ipfailover::group::{
    AddrState, Group, GroupAction, GroupCommand, GroupConfig, GroupEvent, GroupNotice, GroupReason,
    Lease, MemberMode, View,
};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{
    DaemonState, GroupAddressState, GroupAddressStatus, GroupStatus, MemberStatus, TransitionStatus,
};
use ipfailover_etcd::{Client, Reply, Request};
use ipfailover_os::addrs::{self, ResolvedPair};
use ipfailover_os::control::Request as ControlRequest;
use ipfailover_os::daemon;
use ipfailover_os::event;
use ipfailover_os::hooks::{HookEnv, PhaseReport};
use ipfailover_os::journal::{self, Fields};
use ipfailover_runtime::{
    mac_text, millis, Driver, Missing, RoundId, Runtime, StartError, DRIVER_TOKEN,
};
use log::Level;
use mio::Waker;

use crate::notices;

/// How long the release's last requests to etcd (the deletes, the revoke) may take at exit.
const ETCD_GRACE: Duration = Duration::from_secs(2);

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
        ttl: settings.lease_ttl,
        ca_file: settings.etcd_ca_file.clone(),
        client_cert: settings
            .etcd_cert_file
            .clone()
            .zip(settings.etcd_key_file.clone()),
        user,
        clock: ipfailover_etcd::Clock(ipfailover_os::clock::now),
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

/// What a group member is on top of the runtime. Its addresses are the runtime's
/// ([`ipfailover_runtime::Addresses`]), in address order; those it holds in etcd the runtime
/// keeps on their interfaces (a failed add retried, an address removed by hand added again).
#[derive(Debug)]
pub(crate) struct GroupMember {
    config_path: PathBuf,
    settings: Settings,
    member: String,
    hostname: String,
    etcd: Option<Client>,
    core: Group,
    /// Since when (wall ms) each address has had the holder the latest view shows.
    since: BTreeMap<IpAddr, (Option<String>, u64)>,
    /// Each member's lease time left, as etcd last said.
    lease_times: BTreeMap<String, i64>,
    /// The endpoint in use and its latest error.
    etcd_state: Option<(String, Option<String>)>,
    /// The latest renewal and grant failures, logged once per change.
    last_lease_error: Option<String>,
    /// This member's key seen under another lease (another failoverd with this name?).
    name_clash: NameClash,
    /// Where the lease in use is recorded, so that the next failoverd revokes it (and only
    /// it) as its previous life's.
    lease_file: PathBuf,
}

impl GroupMember {
    /// Checks the settings against this host and starts the etcd client.
    pub fn start(
        settings: Settings,
        config_path: PathBuf,
    ) -> Result<(GroupMember, Runtime), StartError> {
        let mut rt = Runtime::start("failoverd", &settings.state_dir)?;
        let mut pairs = BTreeMap::new();
        for p in &settings.group_ip_pairs {
            let r = addrs::resolve_as(p, "FAILOVER_GROUP_IP_PAIRS").map_err(StartError::config)?;
            pairs.insert(r.addr, r);
        }
        let member = member_name(&settings);
        let etcd_config = etcd_config(&settings, &member).map_err(StartError::config)?;
        rt.addresses.open()?;
        // An address left on an interface by a member that was killed is no claim: its lease
        // is gone or going, and another member may hold the address by now. It goes before
        // anything else; if this member wins it again, it is added again.
        for p in pairs.values() {
            match rt.addresses.remove_unlogged(p) {
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
        rt.addresses.set(pairs.values().cloned().collect());
        let waker = Arc::new(
            Waker::new(rt.registry(), DRIVER_TOKEN)
                .map_err(|e| StartError::other("poll waker", e))?,
        );
        let watched: Vec<(String, IpAddr)> =
            pairs.values().map(|p| (p.iface.clone(), p.addr)).collect();
        for e in rt.conflicts.watch(&watched) {
            log::warn!("{e}: an acquisition there cannot check whether the address still answers");
        }
        rt.addresses
            .follow("a held address removed by hand is not noticed")?;
        let hostname = rt.hostname().to_string();
        rt.mail.start(&settings)?;
        let etcd = Client::start(etcd_config, waker)
            .map_err(|e| StartError::config(format!("etcd: {e}")))?;
        let now = ipfailover_os::clock::now();
        let mut core = Group::new(
            now,
            GroupConfig {
                name: member.clone(),
                priority: settings.priority,
                lease_ttl: settings.lease_ttl,
                preempt: settings.preempt,
                addrs: settings.group_ip_pairs.iter().map(|p| p.addr).collect(),
                announce_refresh: settings.announce_refresh,
            },
        );
        if let Err(e) = rt.control.open(&settings.state_dir, daemon::euid()) {
            log::error!(
                "no control socket in {} ({e}): failoverctl pause, resume and drain cannot \
                 reach this failoverd",
                settings.state_dir.display()
            );
        }
        // A pause or a drain survives a restart: the administrator said so.
        if let Some((mode, until)) = kept_mode(&settings.state_dir, now) {
            log::warn!(
                "member {member} is {} (kept across the restart): it acquires nothing until \
                 failoverctl resume",
                mode.as_str()
            );
            core.restore_mode(mode, until);
        }
        let lease_file = settings.state_dir.join("failoverd.lease");
        if let Some(previous) = previous_lease(&lease_file, &settings.group, &member) {
            log::info!("the previous failoverd had lease {previous:x}: revoked once seen");
            core.previous_life(previous);
        }
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
        rt.hooks.start(
            hook_dir,
            settings.script_timeout,
            HookEnv::default(),
            settings.state_dir.join("failoverd.hooks"),
        );
        let member = GroupMember {
            config_path,
            member,
            hostname,
            etcd: Some(etcd),
            core,
            since: BTreeMap::new(),
            lease_times: BTreeMap::new(),
            etcd_state: None,
            last_lease_error: None,
            name_clash: NameClash::default(),
            lease_file,
            settings,
        };
        Ok((member, rt))
    }

    fn read_etcd(&mut self, rt: &mut Runtime, now: Instant) {
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
                    let record = format!("{} {} {id}\n", self.settings.group, self.member);
                    if let Err(e) = ipfailover_os::safe_fs::write_atomic(
                        &self.lease_file,
                        record.as_bytes(),
                        0o600,
                    ) {
                        log::warn!(
                            "{}: {e}: a restarted failoverd will wait for this lease to expire",
                            self.lease_file.display()
                        );
                    }
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
                    self.note_holders(rt, &view);
                    self.check_name(rt, now, &view);
                    Some(GroupEvent::View(view))
                }
                Reply::Restored { highest, view } => {
                    // Logged by the client; the core takes the restored keys as the truth.
                    log::debug!(
                        "etcd history went back from revision {highest} to {}",
                        view.revision
                    );
                    self.note_holders(rt, &view);
                    self.check_name(rt, now, &view);
                    Some(GroupEvent::Restored(view))
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
                    rt.status.mark_dirty();
                    None
                }
            };
            if let Some(e) = event {
                self.feed(rt, now, e);
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
    fn check_name(&mut self, rt: &Runtime, now: Instant, view: &View) {
        let Lease::Held { id, .. } = self.core.lease() else {
            return;
        };
        let clash = view
            .members
            .iter()
            .any(|m| m.name == self.member && m.lease != id && m.lease != 0);
        if self.name_clash.observe(now, clash, self.settings.lease_ttl) {
            let subject = format!(
                "{}: another failoverd uses the member name {} in group {}: not joining until it leaves (set FAILOVER_MEMBER_NAME)",
                self.hostname, self.member, self.settings.group
            );
            let body = format!(
                "The key of member {} in etcd is attached to a lease that is not this \
                 failoverd's: another failoverd (a host with the same host name, a cloned \
                 VM?) is a member under this name. This failoverd does not join the group, \
                 and acquires nothing, while that key lives; it never touches the other's \
                 keys. Set FAILOVER_MEMBER_NAME to a name of its own on each host.\n",
                self.member
            );
            log::error!("{subject}");
            rt.mail.send(subject, body);
        }
    }

    /// Remembers since when each address has had its holder, for the status.
    fn note_holders(&mut self, rt: &Runtime, view: &View) {
        let wall = daemon::wall_ms();
        for addr in addrs_of(rt) {
            let holder = view.holders.get(&addr).map(|h| h.member.clone());
            let changed = self.since.get(&addr).is_none_or(|(h, _)| *h != holder);
            if changed {
                self.since.insert(addr, (holder, wall));
                rt.status.mark_dirty();
            }
        }
    }

    /// SIGHUP: the mail settings, the hooks' timeout and the announcement refresh apply at
    /// once; what makes the member (etcd, the group, its addresses, the priority, the lease)
    /// takes a restart.
    /// The member key's value: the priority in force and the mode.
    fn key_value(&self) -> String {
        self.core.mode().key_value(self.core.config().priority)
    }

    fn reload(&mut self, rt: &mut Runtime) {
        // Not daemon::reload: a group member has no heartbeat secret to read or warn about.
        let settings =
            match ipfailover_os::config::load_settings(&self.config_path, Role::Failoverd) {
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
        rt.mail.reload(&settings);
        if let Some(dir) = rt.hooks.dir().map(Path::to_path_buf) {
            rt.hooks
                .reconfigure(dir, settings.script_timeout, HookEnv::default());
        }
        if settings.priority != self.settings.priority {
            log::warn!(
                "SIGHUP: FAILOVER_PRIORITY {} -> {}: published to the group at once",
                self.settings.priority,
                settings.priority
            );
            self.settings.priority = settings.priority;
            let now = ipfailover_os::clock::now();
            self.feed(rt, now, GroupEvent::PriorityChanged(settings.priority));
        }
        self.settings.script_timeout = settings.script_timeout;
        self.settings.announce_refresh = settings.announce_refresh;
        self.core.set_announce_refresh(settings.announce_refresh);
        self.settings.email_recipients = settings.email_recipients;
        self.settings.email_transport = settings.email_transport;
        self.settings.email_from = settings.email_from;
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
    }

    /// A finished phase (logged and counted by the runtime): the notice of a failure; the
    /// event to feed the core.
    fn hooks_done(&mut self, rt: &Runtime, report: PhaseReport) -> Option<GroupEvent> {
        // Each address's phases run in a lane of their own: its place in the list.
        let addr = usize::try_from(report.lane)
            .ok()
            .and_then(|i| self.core.config().addrs.get(i).copied())?;
        let phase = report.phase.as_str();
        if !report.ok() && report.phase != HookPhase::Test {
            let subject = format!(
                "{}: {phase} hook failed (group {})",
                self.hostname, self.settings.group
            );
            let body = format!(
                "{}\nThe transition went on: a failing {phase} hook does not stop it.\n",
                notices::hook_failures(&report)
            );
            rt.mail.send(subject, body);
        }
        Some(GroupEvent::HooksDone {
            addr,
            phase: report.phase,
            ok: report.ok(),
        })
    }

    /// Feeds one event and everything its actions lead to.
    fn feed(&mut self, rt: &mut Runtime, now: Instant, event: GroupEvent) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            for action in self.core.handle(now, ev) {
                self.execute(rt, now, action, &mut queue);
            }
        }
    }

    fn execute(
        &mut self,
        rt: &mut Runtime,
        now: Instant,
        action: GroupAction,
        queue: &mut VecDeque<GroupEvent>,
    ) {
        match action {
            GroupAction::GrantLease => self.ask(Request::Grant),
            GroupAction::Renew { lease } => self.ask(Request::Renew { lease }),
            GroupAction::Register { lease } => self.ask(Request::Register {
                lease,
                value: self.key_value(),
            }),
            GroupAction::Publish { lease } => self.ask(Request::Publish {
                lease,
                value: self.key_value(),
            }),
            GroupAction::Unregister { lease } => self.ask(Request::Unregister { lease }),
            GroupAction::Revoke { lease } => self.ask(Request::Revoke { lease }),
            GroupAction::TryAcquire { addr, lease } => {
                self.ask(Request::TryAcquire { addr, lease })
            }
            GroupAction::ClearStale { addr, epoch } => {
                log::warn!(
                    "{addr}: its key in etcd is no claim (attached to no lease, or naming \
                     another member than its lease's; put by hand?): deleting it to acquire it"
                );
                self.ask(Request::ClearStale { addr, epoch })
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
                rt.conflicts.probe();
            }
            GroupAction::RunHooks {
                phase,
                addr,
                epoch,
                reason,
            } => {
                if phase == HookPhase::Fence {
                    let a = addr.to_string();
                    event!(
                        Level::Warn,
                        journal::Event::Fence,
                        Fields {
                            address: Some(&a),
                            peer: Some(&self.member),
                            reason: Some(reason.as_str()),
                            ..Fields::default()
                        },
                        "running the Fence hooks: {addr} still answers from another host"
                    );
                }
                let lane = self
                    .core
                    .config()
                    .addrs
                    .iter()
                    .position(|a| *a == addr)
                    .unwrap_or(0) as u64;
                let env = self.hook_env(rt, addr, epoch);
                if let Some(report) = rt.hooks.begin_lane(
                    lane,
                    env,
                    ipfailover_os::clock::now(),
                    phase,
                    reason.as_str(),
                ) {
                    queue.extend(self.hooks_done(rt, report));
                }
            }
            // Kept on its interface while this member holds it: a failed add is retried,
            // an address removed by hand is added again (the runtime's one policy).
            GroupAction::Add { addr } => {
                rt.addresses.hold(now, addr);
            }
            GroupAction::Announce { addr } => {
                if let Some(e) = rt.addresses.get(addr).filter(|e| e.held()) {
                    let target = vec![(e.pair().iface.clone(), addr)];
                    rt.announcements
                        .start(RoundId::Address(addr), now, target, None);
                }
            }
            GroupAction::Remove { addr } => {
                rt.announcements.stop(RoundId::Address(addr));
                rt.addresses.remove(addr);
            }
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
                rt.status.push_transition(TransitionStatus {
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
                    rt.status.get_mut().counters.takeovers += 1;
                }
                if matches!(from, AddrState::Releasing { .. }) && to == AddrState::Free {
                    rt.status.get_mut().counters.releases += 1;
                }
                if matches!(to, AddrState::Releasing { .. }) {
                    // Being given up: not added again if it vanishes or an add failed.
                    rt.addresses.keep(addr, false);
                }
            }
            GroupAction::Notify(notice) => self.notify(rt, &notice),
            GroupAction::Answer(result) => {
                match &result {
                    Ok(m) => log::info!("control: {m}"),
                    Err(m) => log::warn!("control: {m}"),
                }
                rt.control.answer(now, &result);
                rt.status.mark_dirty();
            }
            GroupAction::ModeChanged(mode) => {
                keep_mode(&self.settings.state_dir, mode, self.core.pause_until(), now);
                if let Lease::Held { id, .. } = self.core.lease() {
                    self.ask(Request::Publish {
                        lease: id,
                        value: self.key_value(),
                    });
                }
                let (kind, what) = match mode {
                    MemberMode::Active => (journal::Event::Resumed, "it acquires again"),
                    MemberMode::Paused => (
                        journal::Event::Paused,
                        "it keeps what it holds and acquires nothing",
                    ),
                    MemberMode::Drained => (
                        journal::Event::Drained,
                        "it hands on what it holds and acquires nothing",
                    ),
                };
                let subject = format!(
                    "{} (member {}): {} (group {})",
                    self.hostname,
                    self.member,
                    mode.as_str(),
                    self.settings.group
                );
                let fields = Fields {
                    peer: Some(&self.member),
                    reason: Some(mode.as_str()),
                    ..Fields::default()
                };
                event!(Level::Warn, kind, fields, "{subject}: {what}");
                rt.mail.send(
                    subject,
                    format!(
                        "Member {} of group {} is {} now: {what}{}.\n",
                        self.member,
                        self.settings.group,
                        mode.as_str(),
                        if mode == MemberMode::Active {
                            ""
                        } else {
                            " until failoverctl resume"
                        }
                    ),
                );
                rt.status.mark_dirty();
            }
            GroupAction::Exit => rt.exit(),
        }
    }

    fn ask(&self, request: Request) {
        if let Some(etcd) = &self.etcd {
            etcd.send(request);
        }
    }

    fn hook_env(&self, rt: &Runtime, addr: IpAddr, epoch: i64) -> HookEnv {
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
                    rt.addresses
                        .get(addr)
                        .map(|e| e.pair().iface.clone())
                        .unwrap_or_default(),
                ),
                ("FAILOVER_EPOCH".into(), epoch.to_string()),
            ],
        }
    }

    /// An address this member holds in etcd (its key under our live lease, the deadline not
    /// passed) that is gone from its interface was removed by hand or by a network manager.
    /// Nobody else may answer for it while our key lives, so the runtime adds it again at once
    /// (and announces it); the administrator is told here.
    fn addresses_missing(&mut self, rt: &mut Runtime, missing: Vec<Missing>) {
        for Missing { addr, iface } in missing {
            if !rt.addresses.get(addr).is_some_and(|e| e.kept()) {
                continue;
            }
            let epoch = self
                .core
                .addrs()
                .get(&addr)
                .and_then(|st| st.epoch())
                .unwrap_or(0);
            log::warn!(
                "{addr} was removed from {iface} behind failoverd's back; this member holds it \
                 in etcd (epoch {epoch}): adding it again"
            );
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
            rt.mail.send(subject, body);
        }
    }

    fn notify(&mut self, rt: &mut Runtime, notice: &GroupNotice) {
        let group = self.settings.group.clone();
        let who = format!("{} (member {})", self.hostname, self.member);
        let (subject, body) = match notice {
            GroupNotice::TookOver { addr, epoch } => (
                format!("{who} took over {addr} (group {group})"),
                format!(
                    "{who} won {addr} in etcd (epoch {epoch}), found that no other host answers \
                     for it, ran its acquire hooks and added it.\n\n{}",
                    self.view_text(rt)
                ),
            ),
            GroupNotice::Released { addr, reason } => (
                format!("{who} released {addr} (group {group}, {reason})"),
                format!(
                    "{who} gave up {addr}: {}.\n\n{}",
                    reason_text(*reason),
                    self.view_text(rt)
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
                    self.view_text(rt)
                ),
            ),
            GroupNotice::LinksDown { addrs } => {
                let list = addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    format!("{who}: the link of {list} is down (group {group})"),
                    format!(
                        "The link of the interface of {list} is down on {who}: it cannot serve \
                         them, so it gave up any it held (another member acquires them) and \
                         acquires none of them until the link is up again.\n\n{}",
                        self.view_text(rt)
                    ),
                )
            }
            GroupNotice::LinksUp => (
                format!("{who}: every link is up again (group {group})"),
                format!(
                    "The links of the group's addresses are all up again on {who}: it may \
                     acquire them again.\n\n{}",
                    self.view_text(rt)
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
        let (kind, address, reason, mac) = match notice {
            GroupNotice::TookOver { addr, .. } => {
                (journal::Event::Takeover, addr.to_string(), None, None)
            }
            GroupNotice::Released { addr, reason } => (
                journal::Event::Release,
                addr.to_string(),
                Some(reason.as_str()),
                None,
            ),
            GroupNotice::Fenced { addrs, .. } => (
                journal::Event::Fenced,
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(GroupReason::Fenced.as_str()),
                None,
            ),
            GroupNotice::Conflict { addr, mac } => (
                journal::Event::Conflict,
                addr.to_string(),
                None,
                Some(mac_text(mac)),
            ),
            GroupNotice::LinksDown { addrs } => (
                journal::Event::LinkLost,
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(GroupReason::LinkDown.as_str()),
                None,
            ),
            GroupNotice::LinksUp => (journal::Event::LinkBack, String::new(), None, None),
        };
        let fields = Fields {
            address: Some(&address),
            peer: Some(&self.member),
            reason,
            mac: mac.as_deref(),
            ..Fields::default()
        };
        if matches!(notice, GroupNotice::Fenced { .. }) {
            event!(Level::Warn, kind, fields, "{subject}: {body}");
        } else {
            event!(Level::Warn, kind, fields, "{subject}");
        }
        rt.status.mark_dirty();
        rt.mail.send(subject, body);
    }

    /// The group as this member sees it, for a notice.
    fn view_text(&self, rt: &Runtime) -> String {
        let view = self.core.view();
        let mut out = format!(
            "The group {} at etcd revision {}:\n",
            self.settings.group, view.revision
        );
        for m in &view.members {
            out.push_str(&format!("  member {} priority {}\n", m.name, m.priority));
        }
        for addr in addrs_of(rt) {
            match view.holders.get(&addr) {
                Some(h) => out.push_str(&format!(
                    "  {addr} held by {} (epoch {})\n",
                    h.member, h.epoch
                )),
                None => out.push_str(&format!("  {addr} unheld\n")),
            }
        }
        out
    }
}

impl Driver for GroupMember {
    fn next_deadline(&self) -> Option<Instant> {
        self.core.next_deadline()
    }

    fn handle_probe_answer(&mut self, rt: &mut Runtime, now: Instant, addr: IpAddr, mac: [u8; 6]) {
        self.feed(rt, now, GroupEvent::ProbeAnswer { addr, mac });
    }

    fn handle_links_down(&mut self, rt: &mut Runtime, now: Instant, down: Vec<IpAddr>) {
        self.feed(rt, now, GroupEvent::LinksDown { addrs: down });
    }

    fn handle_addresses_missing(&mut self, rt: &mut Runtime, _now: Instant, missing: Vec<Missing>) {
        self.addresses_missing(rt, missing);
    }

    /// The waker's readiness may be coalesced with others: etcd's channel is drained every
    /// turn.
    fn handle_sources(&mut self, rt: &mut Runtime, now: Instant) {
        self.read_etcd(rt, now);
    }

    fn handle_reload(&mut self, rt: &mut Runtime, _now: Instant) {
        self.reload(rt);
    }

    /// The administrator's commands: pause, resume and drain; a pair's release and takeover
    /// are refused with what to use instead.
    fn handle_command(&mut self, rt: &mut Runtime, now: Instant, request: ControlRequest) {
        let command = match request {
            ControlRequest::Pause { for_ms } => GroupCommand::Pause {
                until: for_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms))),
            },
            ControlRequest::Resume => GroupCommand::Resume,
            ControlRequest::Drain => GroupCommand::Drain,
            ControlRequest::Release { .. } | ControlRequest::Takeover { .. } => {
                rt.control.answer(
                    now,
                    &Err(
                        "release and takeover are a pair's commands: on a group member, \
                          failoverctl drain hands its addresses on, pause keeps them, resume \
                          ends either"
                            .to_string(),
                    ),
                );
                return;
            }
        };
        self.feed(rt, now, GroupEvent::Command(command));
    }

    fn handle_stop(&mut self, rt: &mut Runtime, now: Instant, signal: i32, count: u32) {
        if count == 1 {
            log::info!(
                "signal {signal}: leaving the group: releasing what is held, then revoking the \
                 lease"
            );
            self.feed(rt, now, GroupEvent::Shutdown);
        } else {
            // Even at once, nothing stays on an interface: another member takes the addresses
            // when the lease expires, and must find them gone.
            log::warn!("second stop signal: removing the addresses and exiting at once");
            rt.addresses.remove_held();
            rt.exit();
        }
    }

    fn handle_hooks_done(&mut self, rt: &mut Runtime, now: Instant, report: PhaseReport) {
        if let Some(done) = self.hooks_done(rt, report) {
            self.feed(rt, now, done);
        }
    }

    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant) {
        self.feed(rt, now, GroupEvent::Tick);
    }

    /// The member's fields of the status.
    fn fill_status(&mut self, rt: &mut Runtime, now: Instant) {
        let exiting = rt.exiting();
        let addresses: Vec<(ResolvedPair, bool, Option<String>)> = rt
            .addresses
            .entries()
            .iter()
            .map(|e| {
                (
                    e.pair().clone(),
                    e.held(),
                    e.error().map(ToString::to_string),
                )
            })
            .collect();
        let links_down = rt.addresses.links_down().to_vec();
        let s = rt.status.get_mut();
        s.state = if exiting {
            DaemonState::Stopped
        } else {
            match self.core.lease() {
                Lease::None => DaemonState::NoLease,
                Lease::Granting => DaemonState::Joining,
                Lease::Held { .. } => DaemonState::Member,
            }
        };
        let view = self.core.view();
        let mut members: Vec<MemberStatus> = view
            .members
            .iter()
            .map(|m| MemberStatus {
                name: m.name.clone(),
                priority: m.priority,
                lease_left_s: self.lease_times.get(&m.name).copied(),
                this: m.name == self.member,
                mode: (m.mode != MemberMode::Active).then(|| m.mode.as_str().to_string()),
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
            addresses: addresses
                .into_iter()
                .map(|(p, held, error)| {
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
                            .map_or(GroupAddressState::Free, |st| (*st).into()),
                        held,
                        link_down: links_down.contains(&p.addr),
                        error,
                    }
                })
                .collect(),
        });
    }

    fn finish(&mut self, _rt: &mut Runtime) {
        if let Some(etcd) = self.etcd.take() {
            etcd.finish(ETCD_GRACE);
        }
    }
}

/// The addresses of the group, in address order.
fn addrs_of(rt: &Runtime) -> Vec<IpAddr> {
    rt.addresses
        .entries()
        .iter()
        .map(|e| e.pair().addr)
        .collect()
}

/// The file that keeps a member's pause or drain across restarts, in the state directory.
const MODE_FILE: &str = "failoverd.mode";

/// Keeps `mode` in the state directory (removes the file when active): a pause (with its
/// end, on the wall clock) or a drain survives a restart.
fn keep_mode(dir: &Path, mode: MemberMode, until: Option<Instant>, now: Instant) {
    let path = dir.join(MODE_FILE);
    if mode == MemberMode::Active {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::error!("cannot remove {}: {e}", path.display());
            }
        }
        return;
    }
    let until_ms =
        until.map(|u| daemon::wall_ms().saturating_add(millis(u.saturating_duration_since(now))));
    let text = serde_json::json!({ "mode": mode.as_str(), "until_ms": until_ms }).to_string();
    if let Err(e) = ipfailover_os::safe_fs::write_atomic(&path, text.as_bytes(), 0o600) {
        log::error!(
            "cannot keep the member's mode in {}: {e} (a restart would end it)",
            path.display()
        );
    }
}

/// The mode a previous failoverd kept, if any and still in force: the mode, and when a pause
/// ends on this process's clock.
fn kept_mode(dir: &Path, now: Instant) -> Option<(MemberMode, Option<Instant>)> {
    let path = dir.join(MODE_FILE);
    let text = match ipfailover_os::safe_fs::read_own(&path, daemon::euid()) {
        Ok(t) => t?,
        Err(e) => {
            log::warn!("{e}: not used");
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mode = match v["mode"].as_str() {
        Some("paused") => MemberMode::Paused,
        Some("drained") => MemberMode::Drained,
        _ => {
            log::warn!(
                "{}: not a mode this failoverd wrote: not used",
                path.display()
            );
            return None;
        }
    };
    let until = match v["until_ms"].as_u64() {
        None => None,
        Some(u) => {
            let wall = daemon::wall_ms();
            if u <= wall {
                log::info!("the pause kept in {} has run its time", path.display());
                keep_mode(dir, MemberMode::Active, None, now);
                return None;
            }
            now.checked_add(Duration::from_millis(u - wall))
        }
    };
    Some((mode, until))
}

/// The lease the previous failoverd recorded in `path` for this group and member name, if
/// the record is there, the daemon's own (see [`ipfailover_os::safe_fs::read_own`]), and
/// for the same group and name.
fn previous_lease(path: &Path, group: &str, member: &str) -> Option<i64> {
    let text = match ipfailover_os::safe_fs::read_own(path, daemon::euid()) {
        Ok(t) => t?,
        Err(e) => {
            log::warn!("{e}: not used");
            return None;
        }
    };
    parse_lease_record(&text, group, member)
}

/// `group member id` as [`GroupMember`] writes it.
fn parse_lease_record(text: &str, group: &str, member: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    let (g, m, id) = (words.next()?, words.next()?, words.next()?);
    let id: i64 = id.parse().ok()?;
    (g == group && m == member && id > 0 && words.next().is_none()).then_some(id)
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
        GroupReason::LinkDown => "the link of its interface is down here",
        GroupReason::Drained => "failoverctl drain: handed to the next member",
        GroupReason::Shutdown => "failoverd is stopping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_clash_is_told_once_it_has_lasted_a_ttl_by_the_turns_time_and_once_per_episode() {
        let t0 = ipfailover_os::clock::now();
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
