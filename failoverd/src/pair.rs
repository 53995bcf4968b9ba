//! A pair's failoverd as a driver of the runtime: the failover core, what it makes of the
//! peer's datagrams, of the administrator's commands and of finished hooks, its notices and
//! its status fields. Sockets, signals, hooks, mail, addresses and announcements are the
//! runtime's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover::failover::{
    AcquireStep, Action, Command, Config, Event, Failover, Notice, OutReport, Reason, ReleaseStep,
    ReleasedTo, State,
};
use ipfailover::receive::{Counters, Incoming, Receiver, Rejected};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{
    AddressHolder, ConflictStatus, LinkState, LinkStatus, PauseStatus, ThirdHostStatus,
    TransitionStatus,
};
use ipfailover::wire::{self, Datagram, DropReason, Key, Kind, Signer};
use ipfailover_os::addrs::{self, ResolvedPair};
use ipfailover_os::control::Request;
use ipfailover_os::daemon;
use ipfailover_os::event;
use ipfailover_os::hooks::{HookEnv, PhaseReport};
use ipfailover_os::interfaces;
use ipfailover_os::journal::{self, Fields};
use ipfailover_runtime::{mac_text, millis, Driver, Missing, RoundId, Runtime, StartError};
use log::Level;

use crate::notices::{self, Context, Timeline};

/// The file that keeps a pause across restarts, in the state directory.
const PAUSE_FILE: &str = "failoverd.pause";

/// A clock difference above this is reported (log, status, one mail per episode): it changes
/// nothing for failover, but logs and mail from the two hosts no longer line up.
const CLOCK_OFFSET_WARN_MS: u64 = 60_000;

/// What a pair's failoverd is on top of the runtime. The addresses it takes over are the
/// runtime's ([`ipfailover_runtime::Addresses`]), in the order of `FAILOVER_PEER_IP_PAIRS`.
#[derive(Debug)]
pub(crate) struct Pair {
    config_path: PathBuf,
    settings: Settings,
    core: Failover,
    receiver: Receiver,
    /// A reload's settings and pairs, in force once the core says so (after the old peer's
    /// addresses went back, with its hooks).
    pending: Option<(Settings, Vec<ResolvedPair>)>,
    /// A version-2 peer was told of (once per start).
    old_version_told: bool,
    /// Where the peer's heartbeats come from on each link: where `released` goes.
    link_sources: BTreeMap<IpAddr, SocketAddr>,
    key: Option<Key>,
    /// What datagrams to the primary are signed with (the key the primary uses, during a
    /// rotation).
    signer: Signer,
    boot_id: u64,
    seq: u64,
    hostname: String,
    /// When the current state was entered.
    state_since: Instant,
    /// The local interface facing each link, looked up once per link (and again on SIGHUP).
    link_ifaces: HashMap<IpAddr, Option<String>>,
    /// When the running hook phase started.
    hook_phase_start: Instant,
    /// The takeover or release under way, for its notice.
    timeline: Option<Timeline>,
    /// Hook failures during the takeover or release under way, for its notice.
    episode_failures: String,
    /// The local interface index each link arrives on, looked up once per link.
    link_via: HashMap<IpAddr, Option<u32>>,
    /// Held addresses found gone from their interfaces, not told to the core yet (it was not
    /// `acquired`).
    missing: Vec<IpAddr>,
    /// The peers' clock difference has been reported (until it is back under the limit).
    clock_reported: bool,
    /// The pause in force, in wall-clock ms (since, until), for the status and the file.
    pause_wall: Option<(u64, Option<u64>)>,
}

impl Pair {
    /// Checks the settings against this host and opens everything the loop needs.
    pub fn start(settings: Settings, config_path: PathBuf) -> Result<(Pair, Runtime), StartError> {
        let mut rt = Runtime::start("failoverd", &settings.state_dir)?;
        let key = daemon::load_key(&settings)
            .map_err(|e| StartError::config(format!("FAILOVER_SECRET_FILE: {e}")))?;
        let pairs = resolve_pairs(&settings).map_err(StartError::config)?;
        rt.addresses.open()?;
        rt.addresses.set(pairs.clone());
        let mut held = Vec::new();
        for p in &pairs {
            match rt.addresses.holds_now(p) {
                Ok(true) => held.push(p.addr),
                Ok(false) => {}
                Err(e) => return Err(StartError::other(&format!("reading {}", p.iface), e)),
            }
        }
        for addr in &held {
            rt.addresses.mark_held(*addr, true);
        }
        rt.udp.listen(settings.port)?;
        for e in rt.conflicts.watch(&watched(&pairs)) {
            log::warn!("{e}: a takeover there cannot check whether the address still answers");
        }
        rt.addresses
            .follow("an address removed by hand while held is not noticed")?;
        let now = ipfailover_os::clock::now();
        let mut core = Failover::new(
            now,
            core_config(&settings, &pairs, false),
            &held,
            daemon::random_u64(),
        );
        if let Err(e) = rt.control.open(&settings.state_dir, daemon::euid()) {
            log::error!(
                "no control socket in {} ({e}): failoverctl pause, resume, release and \
                 takeover cannot reach this failoverd",
                settings.state_dir.display()
            );
        }
        // A pause survives a restart: the administrator said so, not the old process.
        let pause_wall = restore_pause(&settings.state_dir, &mut core, now);
        log::info!(
            "failoverd {} watching {} on UDP {}; takes over {}; timeout {}; release after {} \
             heartbeats; {}",
            env!("CARGO_PKG_VERSION"),
            settings.peer_ip.map_or("?".to_string(), |p| p.to_string()),
            settings.port,
            pairs
                .iter()
                .map(|p| format!("{}/{} on {}", p.addr, p.prefix, p.iface))
                .collect::<Vec<_>>()
                .join(", "),
            settings.timeout.map_or_else(
                || "3.25 x the peer's interval (3 missed heartbeats)".to_string(),
                ipfailover::settings::format_duration
            ),
            settings.release_after,
            if key.is_some() {
                "heartbeats authenticated"
            } else {
                "heartbeats NOT authenticated"
            }
        );
        if !held.is_empty() {
            log::info!(
                "holding {} at start: keeping them if the peer stays silent for the boot grace, \
                 giving them back as soon as it claims them",
                held.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let hostname = rt.hostname().to_string();
        // The same settings `-t` checks: what it accepts, the daemon starts with.
        rt.mail.start(&settings)?;
        let (hook_dir, hook_env) = hook_settings(&settings, &pairs);
        if settings.peer_ip.is_some() {
            log::info!(
                "hooks from {} (each at most {})",
                hook_dir.display(),
                ipfailover::settings::format_duration(settings.script_timeout)
            );
        }
        rt.hooks.start(
            hook_dir,
            settings.script_timeout,
            hook_env,
            settings.state_dir.join("failoverd.hooks"),
        );
        let pair = Pair {
            hook_phase_start: now,
            timeline: None,
            episode_failures: String::new(),
            state_since: now,
            missing: Vec::new(),
            link_via: HashMap::new(),
            clock_reported: false,
            link_ifaces: HashMap::new(),
            pause_wall,
            receiver: Receiver::new(key.clone(), settings.peer_ip),
            config_path,
            settings,
            core,
            pending: None,
            old_version_told: false,
            link_sources: BTreeMap::new(),
            signer: Signer::new(key.clone()),
            key,
            boot_id: daemon::random_boot_id(),
            seq: 0,
            hostname,
        };
        Ok((pair, rt))
    }

    /// Each link as the status file and notices show it.
    fn link_statuses(&mut self, now: Instant) -> Vec<LinkStatus> {
        let timeout = self.core.timeout();
        if self
            .core
            .links()
            .keys()
            .any(|a| !self.link_ifaces.contains_key(a))
        {
            let locals = interfaces::local_addrs().unwrap_or_default();
            for addr in self.core.links().keys() {
                self.link_ifaces.entry(*addr).or_insert_with(|| {
                    locals
                        .iter()
                        .find(|l| l.contains(*addr))
                        .map(|l| l.iface.clone())
                });
            }
        }
        self.core
            .links()
            .iter()
            .map(|(addr, link)| {
                let state = if now < link.last + timeout {
                    LinkState::Up
                } else if link.anomaly {
                    LinkState::Lost
                } else {
                    LinkState::Silent
                };
                LinkStatus {
                    peer_address: addr.to_string(),
                    interface: self.link_ifaces.get(addr).cloned().flatten(),
                    last_heartbeat_age_ms: millis(now.saturating_duration_since(link.last)),
                    heartbeats: link.heartbeats,
                    state,
                }
            })
            .collect()
    }

    /// The links as lines of text, for notices.
    fn links_text(&mut self, now: Instant) -> String {
        let links = self.link_statuses(now);
        if links.is_empty() {
            return "  (no heartbeat received since failoverd started)\n".to_string();
        }
        links
            .iter()
            .map(|l| {
                format!(
                    "  {}{}: {}, last heartbeat {} ms ago, {} heartbeats\n",
                    l.peer_address,
                    l.interface
                        .as_ref()
                        .map_or(String::new(), |i| format!(" ({i})")),
                    l.state,
                    l.last_heartbeat_age_ms,
                    l.heartbeats
                )
            })
            .collect()
    }

    fn context(&self, rt: &Runtime) -> Context {
        Context {
            host: self.hostname.clone(),
            peer: self.peer_name(),
            addrs: addr_list(rt),
        }
    }

    /// The context of a notice about some of the addresses.
    fn context_of(&self, addrs: &[IpAddr]) -> Context {
        Context {
            host: self.hostname.clone(),
            peer: self.peer_name(),
            addrs: list(addrs),
        }
    }

    fn datagram(&mut self, rt: &mut Runtime, now: Instant, data: &[u8], src: SocketAddr) {
        let src_ip = canonical(src.ip());
        let received = self.receiver.receive(data, src_ip, now, daemon::wall_ms());
        if matches!(
            received,
            Ok(Incoming::Heartbeat { .. } | Incoming::Goodbye { .. })
                | Err(Rejected::Invalid(DropReason::Unverified))
        ) {
            // The peer's key: what this host answers with during a rotation.
            self.signer.heard(data);
        }
        match received {
            Ok(Incoming::Heartbeat {
                interval,
                boot,
                report,
            }) => {
                self.link_sources.insert(src_ip, src);
                self.check_clock(rt, now);
                let via = self.link_via(src_ip);
                // A link that starts carrying heartbeats (new, or after a silence) is news
                // for the status file; ordinary heartbeats wait for the periodic write.
                let timeout = self.core.timeout();
                if self
                    .core
                    .links()
                    .get(&src_ip)
                    .is_none_or(|l| now >= l.last + timeout)
                {
                    rt.status.mark_dirty();
                }
                self.feed(
                    rt,
                    now,
                    Event::Heartbeat {
                        link: src_ip,
                        interval,
                        via,
                        boot,
                        report,
                    },
                );
            }
            Ok(Incoming::Goodbye {
                boot,
                stays_up,
                report,
            }) => {
                log::info!(
                    "goodbye from the peer via {src_ip}: {}",
                    if stays_up {
                        "only its heartbeatd stops; its host stays up with its own addresses"
                    } else {
                        "its host is going down"
                    }
                );
                self.feed(
                    rt,
                    now,
                    Event::Goodbye {
                        link: src_ip,
                        boot,
                        stays_up,
                        report,
                    },
                );
            }
            Ok(Incoming::Released { .. } | Incoming::Challenge { .. }) => {
                log::debug!("ignoring a datagram from {src}: failoverd sends these");
            }
            Err(Rejected::NotPeer) => {
                log::trace!("datagram from {src}: not from the peer we watch");
            }
            Err(Rejected::Invalid(DropReason::Unverified)) => {
                // The peer (a new boot of it, or one we have not verified since our start):
                // ask it to prove it is alive now, on every link it uses.
                self.link_sources.insert(src_ip, src);
                let lifetime = self.core.timeout().max(Duration::from_secs(1));
                if let Some(c) = self.receiver.challenge(now, lifetime, daemon::random_u64) {
                    log::debug!(
                        "a boot of the peer not verified yet, via {src_ip}: challenging it"
                    );
                    // Every link: the sources heard from, and each address the peer names at
                    // the port it sends from (a link may carry its datagrams one way only).
                    for a in c.to {
                        let a = canonical(a);
                        self.link_sources
                            .entry(a)
                            .or_insert_with(|| SocketAddr::new(a, src.port()));
                    }
                    self.send_challenge(rt, c.nonce);
                }
            }
            Err(Rejected::Invalid(DropReason::OldVersion)) => {
                if !self.old_version_told {
                    self.old_version_told = true;
                    log::error!("dropped a datagram from {src}: {}", DropReason::OldVersion);
                }
            }
            Err(Rejected::Invalid(reason @ (DropReason::BadTag | DropReason::MissingTag)))
                if self.settings.peer_ip == Some(src_ip)
                    || self.link_sources.contains_key(&src_ip) =>
            {
                log::debug!("dropped a datagram from {src}: {reason}");
                self.feed(rt, now, Event::ForeignKey);
            }
            Err(Rejected::Invalid(reason)) => {
                log::debug!("dropped a datagram from {src}: {reason}");
            }
        }
    }

    /// Sends a challenge to every address the peer's datagrams come from, and to the
    /// broadcast address of each of those links at the peer's port: a link that carries
    /// frames one way only (a failed fibre) lets no unicast through, since ARP needs both
    /// ways, but a broadcast still reaches the peer.
    fn send_challenge(&mut self, rt: &Runtime, nonce: u64) {
        let d = Datagram {
            boot_id: self.boot_id,
            time_ms: daemon::wall_ms(),
            nonce,
            hostname: self.hostname.clone(),
            ..Datagram::new(Kind::Challenge)
        };
        let targets = self.link_targets();
        self.send_to(rt, targets, d, "a challenge");
    }

    /// Where a datagram for heartbeatd goes: every address the peer's datagrams come from,
    /// and the broadcast address of each of those links at the peer's port. The broadcast
    /// needs no ARP: a unicast to a peer whose neighbour entry went stale waits for ARP to
    /// resolve, which on a lossy link takes seconds (and a link that carries frames one way
    /// only resolves nothing). A unicast to an address this host holds itself (the primary's,
    /// taken over) would only come back here, so it is left to the broadcast.
    fn link_targets(&self) -> Vec<SocketAddr> {
        let locals = interfaces::local_addrs().unwrap_or_default();
        let mut targets: Vec<SocketAddr> = self
            .link_sources
            .values()
            .filter(|to| !locals.iter().any(|l| l.addr == to.ip()))
            .copied()
            .collect();
        for to in self.link_sources.values() {
            if let Some(b) = locals
                .iter()
                .find(|l| l.contains(to.ip()) && !l.addr.is_loopback())
                .and_then(|l| l.broadcast())
            {
                let b = SocketAddr::new(IpAddr::V4(b), to.port());
                if !targets.contains(&b) {
                    targets.push(b);
                }
            }
        }
        targets
    }

    /// Sends `d` to the peer on every link it is heard on; returns on how many links.
    fn send_to_links(&mut self, rt: &Runtime, d: Datagram, what: &str) -> usize {
        let targets = self.link_targets();
        let sent = self.send_to(rt, targets, d, what);
        if sent == 0 {
            0
        } else {
            self.link_sources.len()
        }
    }

    /// Sends `d` (its sequence number set here, one per datagram) to each target.
    fn send_to(
        &mut self,
        rt: &Runtime,
        targets: Vec<SocketAddr>,
        mut d: Datagram,
        what: &str,
    ) -> usize {
        let mut sent = 0;
        for to in targets {
            self.seq += 1;
            d.seq = self.seq;
            let bytes = wire::encode(&d, self.signer.key());
            match rt.udp.send_to(to, &bytes) {
                Ok(()) => sent += 1,
                Err(e) => log::warn!("sending {what} to {to}: {e}"),
            }
        }
        sent
    }

    /// The local interface (by index) whose subnet holds a link's source, looked up once.
    fn link_via(&mut self, link: IpAddr) -> Option<u32> {
        if let Some(v) = self.link_via.get(&link) {
            return *v;
        }
        let via = interfaces::local_addrs()
            .ok()
            .and_then(|locals| {
                locals
                    .into_iter()
                    .find(|l| l.contains(link) && !l.addr.is_loopback())
            })
            .and_then(|l| interfaces::iface_index(&l.iface).ok());
        self.link_via.insert(link, via);
        via
    }

    /// Reports the hosts' clock difference once it passes the limit (once per episode).
    fn check_clock(&mut self, rt: &mut Runtime, _now: Instant) {
        let Some(offset) = self.receiver.peer_clock_offset_ms() else {
            return;
        };
        let far = offset.unsigned_abs() > CLOCK_OFFSET_WARN_MS;
        if far && !self.clock_reported {
            self.clock_reported = true;
            rt.status.mark_dirty();
            let text = offset_text(offset);
            log::warn!(
                "the peer's clock is {text} this host's: this changes nothing for failover \
                 (freshness is proved by challenge, never by the clocks), but check NTP on both"
            );
            let subject = self.context(rt).clock_offset(&text);
            let body = format!(
                "The wall clock in the heartbeats of {} is {text} the clock of {}.\n\n\
                 ipfailover does not trust either clock: heartbeats count because the peer \
                 answered a challenge, and timeouts run on the monotonic clock, so failover \
                 works as before. But the two hosts' logs and mails no longer line up, and \
                 other software on them may care: check NTP (or chrony) on both.\n",
                self.peer_name(),
                self.hostname
            );
            rt.mail.send(subject, body);
        } else if !far && self.clock_reported && offset.unsigned_abs() < CLOCK_OFFSET_WARN_MS / 2 {
            self.clock_reported = false;
            rt.status.mark_dirty();
            log::info!("the peer's clock is {} ours again", offset_text(offset));
        }
    }

    /// Tells the core of the addresses found missing, once no takeover or release runs;
    /// until then they wait, and a release forgets them.
    fn feed_missing(&mut self, rt: &mut Runtime, now: Instant) {
        if matches!(self.core.state(), State::Acquiring(_) | State::Releasing(_)) {
            return;
        }
        for addr in std::mem::take(&mut self.missing) {
            self.feed(rt, now, Event::AddressMissing { addr });
        }
    }

    /// A finished phase (logged and counted by the runtime): its place in the timeline, the
    /// notice of a failure; the event to feed the core.
    fn hooks_done(&mut self, rt: &Runtime, report: PhaseReport) -> Event {
        let phase = report.phase.as_str();
        if let Some(t) = self.timeline.as_mut() {
            t.hooks(self.hook_phase_start, &report);
        }
        if !report.ok() {
            let failures = notices::hook_failures(&report);
            self.episode_failures.push_str(&failures);
            // A refused Test is told in the refusal notice; other failures on their own.
            if report.phase != ipfailover::failover::HookPhase::Test {
                let subject = self.context(rt).hook_failed(&report);
                let consequence = if report.phase == ipfailover::failover::HookPhase::Fence {
                    "The takeover stays blocked while the address answers; failoverd goes on \
                     probing and takes over when it stops answering."
                        .to_string()
                } else {
                    format!("The transition went on: a failing {phase} hook does not stop it.")
                };
                let body = format!("{failures}\n{consequence}\n");
                rt.mail.send(subject, body);
            }
        }
        Event::HooksDone {
            phase: report.phase,
            ok: report.ok(),
        }
    }

    fn reload(&mut self, rt: &mut Runtime, now: Instant) {
        let Some((settings, key)) = daemon::reload(&self.config_path, Role::Failoverd) else {
            return;
        };
        let pairs = match resolve_pairs(&settings) {
            Ok(p) => p,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the old configuration");
                return;
            }
        };
        if settings.port != self.settings.port {
            log::warn!(
                "SIGHUP: FAILOVER_PORT changed to {}; it takes effect at the next start",
                settings.port
            );
        }
        // Every SIGHUP re-reads the key: a secret file rewritten in place is a new key. The
        // peer then proves itself again (one round trip); meanwhile no Fence.
        let key_changed = format!("{:?}", settings.secret_file)
            != format!("{:?}", self.settings.secret_file)
            || key_fingerprint(&key) != key_fingerprint(&self.key);
        self.receiver.set_key(key.clone());
        self.signer = Signer::new(key.clone());
        self.key = key;
        rt.mail.reload(&settings);
        self.link_ifaces.clear();
        if settings.peer_ip != self.settings.peer_ip && self.core.holds_addresses() {
            log::info!(
                "SIGHUP: a new peer ({}); the addresses held for {} are given back first, with \
                 its hooks",
                settings
                    .peer_ip
                    .map_or("none".to_string(), |p| p.to_string()),
                self.peer_name()
            );
        } else if pairs != current_pairs(rt) && self.core.holds_addresses() {
            log::info!(
                "SIGHUP: new FAILOVER_PEER_IP_PAIRS apply once the held addresses that leave it \
                 are released"
            );
        }
        let config = core_config(&settings, &pairs, key_changed);
        self.pending = Some((settings, pairs));
        self.feed(rt, now, Event::Reconfigure(config));
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
    }

    /// The core put a reload in force: the new peer, its links and hooks, the new pairs.
    fn apply_pending(&mut self, rt: &mut Runtime) {
        let Some((settings, pairs)) = self.pending.take() else {
            return;
        };
        self.receiver.set_peer(settings.peer_ip);
        if settings.peer_ip != self.settings.peer_ip {
            // The old peer's links and where they came from mean nothing for the new one.
            self.link_sources.clear();
            self.link_via.clear();
            self.clock_reported = false;
        }
        self.settings = settings;
        if pairs != current_pairs(rt) {
            self.set_pairs(rt, pairs);
        } else {
            let (hook_dir, hook_env) = hook_settings(&self.settings, &pairs);
            rt.hooks
                .reconfigure(hook_dir, self.settings.script_timeout, hook_env);
        }
    }

    /// Feeds one event and everything its actions lead to.
    fn feed(&mut self, rt: &mut Runtime, now: Instant, event: Event) {
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
        action: Action,
        queue: &mut VecDeque<Event>,
    ) {
        match action {
            Action::Transition { from, to, reason } => {
                log::info!("{from} -> {to} ({reason})");
                if from.as_str() != to.as_str() {
                    rt.status.push_transition(TransitionStatus {
                        at_ms: daemon::wall_ms(),
                        from: from.as_str().to_string(),
                        to: to.as_str().to_string(),
                        reason: reason.as_str().to_string(),
                        duration_ms: millis(now.saturating_duration_since(self.state_since)),
                    });
                    self.state_since = now;
                }
                self.timeline_transition(now, from, to, reason);
                if to == State::Acquired && matches!(from, State::Acquiring(_)) {
                    rt.status.get_mut().counters.takeovers += 1;
                }
                if !matches!(to, State::Acquiring(_) | State::Releasing(_))
                    && matches!(from, State::Releasing(_))
                {
                    rt.status.get_mut().counters.releases += 1;
                }
                rt.status.mark_dirty();
                if matches!(to, State::Acquiring(_) | State::Releasing(_)) {
                    if from.as_str() != to.as_str() {
                        // A takeover or release begins: what vanished meanwhile is its business.
                        self.missing.clear();
                    }
                } else {
                    queue.extend(
                        std::mem::take(&mut self.missing)
                            .into_iter()
                            .map(|addr| Event::AddressMissing { addr }),
                    );
                }
            }
            Action::RunHooks {
                phase,
                reason,
                addrs,
            } => {
                if phase == ipfailover::failover::HookPhase::Fence {
                    let peer = self.peer_field();
                    event!(
                        Level::Warn,
                        journal::Event::Fence,
                        Fields {
                            address: Some(&list(&addrs)),
                            peer: peer.as_deref(),
                            reason: Some(reason.as_str()),
                            ..Fields::default()
                        },
                        "running the Fence hooks: {} still answers for {}",
                        self.peer_name(),
                        list(&addrs)
                    );
                }
                // The hooks are told the addresses acted on, not every one configured.
                let (_, env) = hook_settings(&self.settings, &pairs_of(rt, &addrs));
                rt.hooks.set_env(env);
                // Real time, not the turn's: the timeline orders hooks and address steps
                // taken within one turn.
                self.hook_phase_start = ipfailover_os::clock::now();
                if let Some(report) = rt
                    .hooks
                    .begin(self.hook_phase_start, phase, reason.as_str())
                {
                    let done = self.hooks_done(rt, report);
                    queue.push_back(done);
                }
            }
            Action::AddAddresses(addrs) => {
                let failed = self.add_addresses(rt, &addrs);
                queue.push_back(Event::AddressesAdded { failed });
            }
            Action::Announce(addrs) => {
                // Ours again: no more announcing it in another host's name.
                rt.announcements.stop(RoundId::HandBack);
                for (iface, addr) in targets_of(rt, &addrs) {
                    rt.announce(RoundId::Address(addr), now, vec![(iface, addr)], None);
                }
                if let Some(t) = self.timeline.as_mut() {
                    t.at(
                        ipfailover_os::clock::now(),
                        format!(
                            "announced {} (gratuitous ARP / unsolicited NA), repeated after 50 \
                             ms, 250 ms, 1 s, 3 s and 10 s",
                            list(&addrs)
                        ),
                    );
                }
            }
            Action::StopAnnouncing(addrs) => {
                for addr in addrs {
                    rt.announcements.stop(RoundId::Address(addr));
                }
            }
            Action::Probe(_) => rt.conflicts.probe(),
            Action::Defend(addrs) => {
                log::info!("defending {}: announcing it once", list(&addrs));
                for (iface, addr) in targets_of(rt, &addrs) {
                    if rt.addresses.get(addr).is_some_and(|e| e.held()) {
                        rt.announcements.announce_once(&iface, addr);
                    }
                }
            }
            Action::RemoveAddresses(addrs) => {
                let failed = self.remove_addresses(rt, &addrs);
                queue.push_back(Event::AddressesRemoved { failed });
            }
            Action::SendReport(r) => self.send_report(rt, &r),
            Action::HandBack { mac, addrs } => {
                log::info!(
                    "announcing {} for {}, which answers for it",
                    list(&addrs),
                    mac_text(&mac)
                );
                rt.announce(RoundId::HandBack, now, targets_of(rt, &addrs), Some(mac));
            }
            Action::Reconfigured => self.apply_pending(rt),
            Action::Notify(notice) => {
                rt.status.mark_dirty();
                self.notify(rt, now, &notice)
            }
            Action::Answer(result) => {
                match &result {
                    Ok(m) => log::info!("control: {m}"),
                    Err(m) => log::warn!("control: {m}"),
                }
                rt.control.answer(now, &result);
                rt.status.mark_dirty();
            }
            Action::Exit => rt.exit(),
        }
    }

    /// Starts a timeline when a takeover or release begins, and notes each step.
    fn timeline_transition(&mut self, now: Instant, from: State, to: State, reason: Reason) {
        match to {
            State::Acquiring(AcquireStep::Test) | State::Releasing(ReleaseStep::PreRel) => {
                let mut t = Timeline::new(now);
                for (addr, link) in self.core.links() {
                    t.at(link.last, format!("last heartbeat via {addr}"));
                }
                let what = match reason {
                    Reason::Timeout => format!(
                        "detected: no heartbeat on any link for {}",
                        ipfailover::settings::format_duration(self.core.timeout())
                    ),
                    Reason::Goodbye => "detected: the peer said goodbye".to_string(),
                    Reason::PeerReturned => "detected: the peer is back and claims its \
                                             addresses"
                        .to_string(),
                    other => format!("started: {}", notices::reason_text(other)),
                };
                t.at(now, what);
                self.timeline = Some(t);
                self.episode_failures.clear();
            }
            _ => {
                if let Some(t) = self.timeline.as_mut() {
                    if from.as_str() != to.as_str() {
                        t.at(
                            ipfailover_os::clock::now(),
                            format!("{} ({})", to.as_str(), reason.as_str()),
                        );
                    }
                }
            }
        }
    }

    /// The notice of a completed takeover or release, with its timeline.
    fn episode_notice(&mut self, rt: &Runtime, now: Instant, subject: String, what: String) {
        let timeline = self.timeline.take().map(|t| t.render()).unwrap_or_default();
        let mut body = format!(
            "{what}\n\nTimeline (ms from the detection):\n{timeline}\nLinks now:\n{}",
            self.links_text(now)
        );
        if !self.episode_failures.is_empty() {
            body.push_str("\nHooks that failed:\n");
            body.push_str(&self.episode_failures);
        }
        body.push_str(&format!(
            "\n-- failoverd on {}; status in {}\n",
            self.hostname,
            rt.status.path().display()
        ));
        self.episode_failures.clear();
        rt.mail.send(subject, body);
    }

    /// Adds these addresses (the runtime logs each outcome); the timeline notes them. What
    /// could not be added.
    fn add_addresses(&mut self, rt: &mut Runtime, addrs: &[IpAddr]) -> Vec<IpAddr> {
        let mut failed = Vec::new();
        for addr in addrs {
            let Some(o) = rt.addresses.add(*addr) else {
                continue;
            };
            let p = &o.pair;
            match &o.result {
                Ok(true) => {
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            ipfailover_os::clock::now(),
                            format!("added {}/{} to {}", p.addr, p.prefix, p.iface),
                        );
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    failed.push(*addr);
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            ipfailover_os::clock::now(),
                            format!("FAILED to add {}/{} to {}: {e}", p.addr, p.prefix, p.iface),
                        );
                    }
                }
            }
        }
        failed
    }

    /// Removes these addresses (the runtime logs each outcome); the timeline notes them. What
    /// could not be removed.
    fn remove_addresses(&mut self, rt: &mut Runtime, addrs: &[IpAddr]) -> Vec<IpAddr> {
        let mut failed = Vec::new();
        for addr in addrs {
            let Some(o) = rt.addresses.remove(*addr) else {
                continue;
            };
            match &o.result {
                Ok(true) => {
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            ipfailover_os::clock::now(),
                            format!("removed {} from {}", o.pair.addr, o.pair.iface),
                        );
                    }
                }
                Ok(false) => {}
                Err(_) => failed.push(*addr),
            }
        }
        failed
    }

    /// Sends our report (`released`) to the primary on every link it is heard on: which of its
    /// addresses we hold, which we gave up (it announces them, and adds a service address it
    /// waits for), which we ask back.
    fn send_report(&mut self, rt: &Runtime, r: &OutReport) {
        let d = Datagram {
            boot_id: self.boot_id,
            time_ms: daemon::wall_ms(),
            nonce: r.id,
            token: r.token,
            hostname: self.hostname.clone(),
            entries: r.entries.clone(),
            ..Datagram::new(Kind::Released)
        };
        let sent = self.send_to_links(rt, d, "`released`");
        let free: Vec<IpAddr> = r
            .entries
            .iter()
            .filter(|e| e.role == wire::Role::NONE)
            .map(|e| e.addr)
            .collect();
        if r.id != 0 && sent > 0 {
            log::info!(
                "told the primary on {sent} link(s) that {} are released (repeated until it \
                 acknowledges)",
                list(&free)
            );
            if let Some(t) = self.timeline.as_mut() {
                t.at(
                    ipfailover_os::clock::now(),
                    format!("told the primary (released) on {sent} link(s)"),
                );
            }
        } else if sent == 0 && r.id != 0 {
            log::warn!(
                "could not tell the primary that {} are released: no link to it",
                list(&free)
            );
        }
    }

    fn notify(&mut self, rt: &mut Runtime, now: Instant, notice: &Notice) {
        let ctx = self.context(rt);
        let grace = ipfailover::settings::format_duration(self.core.config().conflict_grace);
        let timeout = ipfailover::settings::format_duration(self.core.timeout());
        match notice {
            Notice::TookOver { reason, addrs } => {
                // What is really held: an address whose add failed is named as such, in the
                // subject and the body, never counted as taken over.
                let held: Vec<IpAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| rt.addresses.get(*a).is_some_and(|e| e.held()))
                    .collect();
                let failed: Vec<String> = addrs
                    .iter()
                    .filter_map(|a| rt.addresses.get(*a))
                    .filter(|e| !e.held())
                    .map(|e| {
                        format!(
                            "{} on {}: {}",
                            e.pair().addr,
                            e.pair().iface,
                            e.error().unwrap_or("not added")
                        )
                    })
                    .collect();
                let c = self.context_of(&held);
                let what_held = c.addresses_of_peer();
                let peer = self.peer_field();
                event!(
                    Level::Warn,
                    journal::Event::Takeover,
                    Fields {
                        address: Some(&list(&held)),
                        peer: peer.as_deref(),
                        reason: Some(reason.as_str()),
                        ..Fields::default()
                    },
                    "took over {what_held} ({})",
                    notices::reason_text(*reason)
                );
                let mut what = format!(
                    "{} took over {what_held}, because of: {}.",
                    ctx.host,
                    notices::reason_text(*reason)
                );
                let mut subject = c.took_over(*reason);
                if !failed.is_empty() {
                    what.push_str(&format!(
                        "\n\nCOULD NOT ADD (retried while the others are held):\n  {}",
                        failed.join("\n  ")
                    ));
                    subject += &format!(", {} FAILED", failed.len());
                }
                self.episode_notice(rt, now, subject, what);
            }
            Notice::Released { reason, addrs, to } => {
                let c = self.context_of(addrs);
                let to_whom = match to {
                    ReleasedTo::Peer => format!("released {} to {}", c.addrs, c.peer),
                    ReleasedTo::Host(mac) => format!(
                        "released {} to the host at {}, which kept answering for it",
                        c.addrs,
                        mac_text(mac)
                    ),
                    ReleasedTo::Nobody => format!("released {}", c.addrs),
                };
                let (peer, mac) = (self.peer_field(), released_mac(to));
                event!(
                    Level::Warn,
                    journal::Event::Release,
                    Fields {
                        address: Some(&c.addrs),
                        peer: peer.as_deref(),
                        reason: Some(reason.as_str()),
                        mac: mac.as_deref(),
                        ..Fields::default()
                    },
                    "{to_whom} ({})",
                    notices::reason_text(*reason)
                );
                let what = format!(
                    "{} {to_whom} because of: {}.",
                    ctx.host,
                    notices::reason_text(*reason)
                );
                self.episode_notice(rt, now, c.released(*reason, *to), what);
            }
            Notice::TakeoverRefused => {
                let peer = self.peer_field();
                event!(
                    Level::Warn,
                    journal::Event::TakeoverRefused,
                    Fields {
                        address: Some(&ctx.addrs),
                        peer: peer.as_deref(),
                        reason: Some(Reason::TestRefused.as_str()),
                        ..Fields::default()
                    },
                    "the Test hook refused to take over {} from {}; retrying while it stays silent",
                    ctx.addrs,
                    ctx.peer
                );
                let what = format!(
                    "{} heard nothing from {} for {timeout}, but its Test hook refused the \
                     takeover. It tries again every {timeout} while the peer stays silent; you \
                     get this mail once per outage.",
                    ctx.host, ctx.peer,
                );
                self.episode_notice(rt, now, ctx.refused(), what);
            }
            Notice::LinkLost(link) => {
                // A link that flaps under loss: a few lines a minute, then a summary.
                let what = format!("no heartbeats via {link} (redundancy lost)");
                if !rt.repeats.allow(now, &format!("link {link}"), &what) {
                    return;
                }
                let (peer, link_text) = (self.peer_field(), link.to_string());
                event!(
                    Level::Warn,
                    journal::Event::LinkLost,
                    Fields {
                        peer: peer.as_deref(),
                        link: Some(&link_text),
                        ..Fields::default()
                    },
                    "network anomaly: no heartbeat from {link} for {timeout} while another link \
                     carries them; redundancy is gone"
                );
                let body = format!(
                    "No heartbeat from {} has arrived via {link} for {timeout}, while another \
                     link still carries them. This is not a takeover: the peer is alive. But one \
                     more failure and the two hosts can no longer tell a dead peer from a cut \
                     network. Meanwhile failoverd probes the peer's addresses, and takes over one \
                     that nobody answers for.\n\nLinks now:\n{}",
                    ctx.peer,
                    self.links_text(now)
                );
                rt.mail.send_routine(ctx.link_lost(&link.to_string()), body);
            }
            Notice::Conflict(c) => {
                let mac = mac_text(&c.mac);
                let addr = c.addr.to_string();
                let peer = self.peer_field();
                let fields = Fields {
                    address: Some(&addr),
                    peer: peer.as_deref(),
                    mac: Some(&mac),
                    ..Fields::default()
                };
                if c.holding {
                    event!(
                        Level::Warn,
                        journal::Event::Conflict,
                        fields,
                        "conflict: {addr}, which we hold, also answers from {mac}; defending it, \
                         and giving it up if that host still answers after {grace}"
                    );
                    let body = format!(
                        "{} holds {addr}, and another host answers for it too, from {mac}: the \
                         LAN's clients are split between two hosts.\n\n\
                         This happens while a host that said goodbye is still shutting down (its \
                         kernel answers until its links go down), when the peer came back with \
                         its address while its heartbeats are blocked (a firewall), when the \
                         peer answers for an address an administrator took over by hand, or when \
                         a third host claims the address.\n\nfailoverd defends the address \
                         (at most once per 10 s) and, if {mac} still answers after {grace} \
                         (FAILOVER_CONFLICT_GRACE), releases it with the release hooks: one \
                         host answering is better than two.\n\nLinks now:\n{}",
                        ctx.host,
                        self.links_text(now)
                    );
                    rt.mail.send(ctx.conflict_holding(&addr, &mac), body);
                } else {
                    event!(
                        Level::Warn,
                        journal::Event::Conflict,
                        fields,
                        "heartbeats lost on every link but {addr} still answers from {mac}: \
                         not taking over (probing until it stops answering)"
                    );
                    let fence = ipfailover::settings::format_duration(self.core.fence_after());
                    let (links, port) = (self.links_text(now), self.settings.port);
                    let body = format!(
                        "No heartbeat from {} has arrived on any link for {timeout}, but {addr} \
                         still answers on the LAN, from {mac}. Taking it over now would make two \
                         hosts answer for it, which is worse than no failover, so {} does not.\n\n\
                         Usual causes: a firewall that drops UDP {port} on the peer, heartbeatd \
                         hung while the host runs, a host that is slow but alive.\n\n\
                         failoverd keeps probing and takes over as soon as the address stops \
                         answering. If this lasts {fence} (FAILOVER_FENCE_AFTER), the Fence hooks \
                         run to power the peer off. Status: state `conflict`.\n\nLinks now:\n{links}",
                        ctx.peer, ctx.host,
                    );
                    rt.mail.send(ctx.conflict(&addr, &mac), body);
                }
            }
            Notice::ConflictOver { holding } => {
                event!(
                    Level::Info,
                    journal::Event::ConflictOver,
                    Fields {
                        address: Some(&ctx.addrs),
                        ..Fields::default()
                    },
                    "conflict over: {} no longer answers from another host{}",
                    ctx.addrs,
                    if *holding {
                        ""
                    } else {
                        " (or the peer was heard)"
                    }
                );
                let body = format!(
                    "{} no longer answers from another host, or the peer was heard again.\n\n\
                     Links now:\n{}",
                    ctx.addrs,
                    self.links_text(now)
                );
                rt.mail.send(ctx.conflict_over(), body);
            }
            Notice::ThirdHost(t) => {
                let (addr, mac, peer_mac) =
                    (t.addr.to_string(), mac_text(&t.mac), mac_text(&t.peer_mac));
                event!(
                    Level::Warn,
                    journal::Event::ThirdHost,
                    Fields {
                        address: Some(&addr),
                        mac: Some(&mac),
                        ..Fields::default()
                    },
                    "a third host answers for {addr} from {mac}, while {} answers for it from \
                     {peer_mac}",
                    ctx.peer
                );
                let body = format!(
                    "{} answers for {addr} (from {peer_mac}), and so does another host, from \
                     {mac}: the LAN's clients are split between them. It is neither {} nor {}: \
                     look for a host configured with {addr} by mistake (a cloned VM, a DHCP \
                     lease, a typo).\n\nfailoverd takes nothing over meanwhile; status: state \
                     `third-host`, with the MAC.\n\nLinks now:\n{}",
                    ctx.peer,
                    ctx.peer,
                    ctx.host,
                    self.links_text(now)
                );
                rt.mail.send(ctx.third_host(&addr, &mac), body);
            }
            Notice::ThirdHostOver(addr) => {
                let a = addr.to_string();
                event!(
                    Level::Info,
                    journal::Event::ThirdHostOver,
                    Fields {
                        address: Some(&a),
                        ..Fields::default()
                    },
                    "{addr} no longer answers from a third host"
                );
                let body = format!(
                    "{addr} no longer answers from a third host.\n\nLinks now:\n{}",
                    self.links_text(now)
                );
                rt.mail.send(ctx.third_host_over(&addr.to_string()), body);
            }
            Notice::AddressLost(addr) => {
                let a = addr.to_string();
                event!(
                    Level::Warn,
                    journal::Event::AddressLost,
                    Fields {
                        address: Some(&a),
                        ..Fields::default()
                    },
                    "{addr} vanished from its interface while held: adding it again"
                );
                let body = format!(
                    "{addr} was removed from its interface on {} (by hand, or by a network \
                     manager) while failoverd held it for {}. failoverd added it again and \
                     announced it.\n",
                    ctx.host, ctx.peer
                );
                rt.mail.send(ctx.address_lost(&addr.to_string()), body);
            }
            Notice::PeerDaemonStopped { kept } => {
                let kept = list(kept);
                let peer = self.peer_field();
                event!(
                    Level::Warn,
                    journal::Event::PeerStopped,
                    Fields {
                        address: Some(&kept),
                        peer: peer.as_deref(),
                        ..Fields::default()
                    },
                    "heartbeatd on {} stopped, its host stays up and answers for {kept}: not \
                     taking that over while it answers",
                    ctx.peer
                );
                let body = format!(
                    "heartbeatd on {} said goodbye, saying that only the daemon stops: its host \
                     stays up and answers for {kept}, so {} does not take that over (two \
                     hosts would answer). Service addresses heartbeatd removed before its \
                     goodbye are taken over at once.\n\nUntil heartbeatd runs again, failoverd \
                     probes {kept} and takes it over as soon as nobody answers for it (the host \
                     went down after all). Start heartbeatd again to restore the protection; to \
                     move the primary's own address, shut the primary down.\n\nLinks now:\n{}",
                    ctx.peer,
                    ctx.host,
                    self.links_text(now)
                );
                rt.mail.send(ctx.peer_daemon_stopped(), body);
            }
            Notice::HandoverFailed(addrs) => {
                let c = self.context_of(addrs);
                let ifaces: Vec<String> = addrs
                    .iter()
                    .filter_map(|a| rt.addresses.get(*a))
                    .map(|e| format!("{} on {}", e.pair().addr, e.pair().iface))
                    .collect();
                let peer = self.peer_field();
                event!(
                    Level::Warn,
                    journal::Event::HandoverFailed,
                    Fields {
                        address: Some(&c.addrs),
                        peer: peer.as_deref(),
                        reason: Some(Reason::HandoverFailed.as_str()),
                        ..Fields::default()
                    },
                    "the primary cannot serve {}: nobody answered for it after it was given \
                     back; taking it back",
                    ifaces.join(", ")
                );
                let body = format!(
                    "{} gave {} back to {}, which said it would answer for it, but nobody \
                     answered for it within {timeout}: the primary cannot serve {} (its public \
                     link is down, or its switch port does not forward yet). {} took it back \
                     (reason handover-failed; no conflict, no Fence) and gives it back once the \
                     primary answers for it.\n\nLinks now:\n{}",
                    ctx.host,
                    c.addrs,
                    ctx.peer,
                    ifaces.join(", "),
                    ctx.host,
                    self.links_text(now)
                );
                rt.mail.send(c.handover_failed(), body);
            }
            Notice::HeldByHand(addrs) => {
                let c = self.context_of(addrs);
                log::warn!(
                    "{} is back and wants {}, which an administrator took over: it waits for \
                     failoverctl release",
                    ctx.peer,
                    c.addrs
                );
                let body = format!(
                    "{} is back and waits for {}, which an administrator took over by hand on \
                     {}. failoverd keeps it, and tells the primary so in every report: it does \
                     not add the address meanwhile, so only one host answers. \
                     `failoverctl release` on {} gives it back.\n",
                    ctx.peer, c.addrs, ctx.host, ctx.host
                );
                rt.mail.send(c.held_by_hand(), body);
            }
            Notice::FenceWithheld(why) => {
                log::warn!(
                    "the conflict has lasted FAILOVER_FENCE_AFTER, but Fence is not run: {why}"
                );
            }
            Notice::Paused(pause) => {
                let wall = daemon::wall_ms();
                let since = self.pause_wall.map_or(wall, |(s, _)| s);
                let until = pause
                    .until
                    .map(|u| wall.saturating_add(millis(u.saturating_duration_since(now))));
                self.pause_wall = Some((since, until));
                save_pause(&self.settings.state_dir, since, until);
                let how_long = match until {
                    Some(u) => format!("until {} UTC", ipfailover::timefmt::date_time(u)),
                    None => "until failoverctl resume".to_string(),
                };
                event!(
                    Level::Warn,
                    journal::Event::Paused,
                    Fields {
                        address: Some(&ctx.addrs),
                        reason: Some(Reason::Manual.as_str()),
                        ..Fields::default()
                    },
                    "paused by an administrator {how_long}: no takeover meanwhile"
                );
                let body = format!(
                    "An administrator paused failoverd on {} {how_long}. While paused it watches \
                     {} and reports, but takes nothing over, however long {} is silent. \
                     failoverctl resume ends the pause. Status: pause, exit 1 (degraded).\n",
                    ctx.host, ctx.peer, ctx.peer
                );
                rt.mail.send(ctx.paused(), body);
            }
            Notice::Resumed { auto } => {
                self.pause_wall = None;
                remove_pause(&self.settings.state_dir);
                let how = if *auto {
                    "the pause ran its time"
                } else {
                    "an administrator resumed it"
                };
                event!(
                    Level::Warn,
                    journal::Event::Resumed,
                    Fields {
                        address: Some(&ctx.addrs),
                        ..Fields::default()
                    },
                    "resumed ({how}): a silent peer is taken over again"
                );
                let body = format!(
                    "failoverd on {} takes over {} again when it is silent: {how}.\n\nLinks now:\n{}",
                    ctx.host,
                    ctx.peer,
                    self.links_text(now)
                );
                rt.mail.send(ctx.resumed(), body);
            }
            Notice::LinkBack(link) => {
                let what = format!("heartbeats via {link} back");
                if !rt.repeats.allow(now, &format!("link {link}"), &what) {
                    return;
                }
                let (peer, link_text) = (self.peer_field(), link.to_string());
                event!(
                    Level::Info,
                    journal::Event::LinkBack,
                    Fields {
                        peer: peer.as_deref(),
                        link: Some(&link_text),
                        ..Fields::default()
                    },
                    "heartbeats from {link} are back"
                );
                let body = format!(
                    "Heartbeats from {} arrive via {link} again.\n\nLinks now:\n{}",
                    ctx.peer,
                    self.links_text(now)
                );
                rt.mail.send_routine(ctx.link_back(&link.to_string()), body);
            }
        }
    }

    /// Takes new pairs (nothing of the old ones is held): the conflict watch and the hooks'
    /// FAILOVER_PEER_IP_PAIRS follow.
    fn set_pairs(&mut self, rt: &mut Runtime, pairs: Vec<ResolvedPair>) {
        for e in rt.conflicts.watch(&watched(&pairs)) {
            log::warn!("{e}");
        }
        let (hook_dir, hook_env) = hook_settings(&self.settings, &pairs);
        rt.addresses.set(pairs);
        rt.hooks
            .reconfigure(hook_dir, self.settings.script_timeout, hook_env);
    }

    /// The peer's address, the journal's `IPFAILOVER_PEER`.
    fn peer_field(&self) -> Option<String> {
        self.settings.peer_ip.map(|p| p.to_string())
    }

    /// The primary as the administrator knows it: its host name and address.
    fn peer_name(&self) -> String {
        notices::peer_name(self.receiver.peer_hostname(), self.settings.peer_ip)
    }
}

impl Driver for Pair {
    fn next_deadline(&self) -> Option<Instant> {
        self.core.next_deadline()
    }

    fn expected_wake(&self, now: Instant) -> Option<Duration> {
        // The peer's next heartbeat is a wake to come while it is heard.
        self.core
            .peer_alive(now)
            .then(|| self.core.announced_interval())
            .flatten()
    }

    fn received(&self) -> Option<&Counters> {
        Some(self.receiver.counters())
    }

    fn address_holder(&self, addr: IpAddr, now: Instant) -> Option<AddressHolder> {
        Some(self.core.holder(addr, now).into())
    }

    fn handle_datagram(&mut self, rt: &mut Runtime, now: Instant, data: &[u8], from: SocketAddr) {
        self.datagram(rt, now, data, from);
    }

    fn handle_probe_answer(&mut self, rt: &mut Runtime, now: Instant, addr: IpAddr, mac: [u8; 6]) {
        self.feed(rt, now, Event::ProbeAnswer { addr, mac });
    }

    /// Held, the core adds them again at once; while the takeover completes (its PostAcq
    /// hooks run), as soon as it has.
    fn handle_addresses_missing(&mut self, rt: &mut Runtime, now: Instant, missing: Vec<Missing>) {
        self.missing.extend(missing.into_iter().map(|m| m.addr));
        self.feed_missing(rt, now);
    }

    /// The administrator's commands: each becomes a core event; the core answers.
    fn handle_command(&mut self, rt: &mut Runtime, now: Instant, request: Request) {
        let command = match request {
            Request::Pause { for_ms } => Command::Pause {
                until: for_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms))),
            },
            Request::Resume => Command::Resume,
            Request::Release { force } => Command::Release { force },
            Request::Takeover { force } => Command::Takeover { force },
            Request::Drain => {
                rt.control.answer(
                    now,
                    &Err(
                        "drain is a group member's command; on a pair's secondary use \
                          failoverctl pause, or release"
                            .to_string(),
                    ),
                );
                return;
            }
        };
        self.feed(rt, now, Event::Command(command));
    }

    fn handle_reload(&mut self, rt: &mut Runtime, now: Instant) {
        self.reload(rt, now);
    }

    fn handle_stop(&mut self, rt: &mut Runtime, now: Instant, signal: i32, count: u32) {
        if count == 1 {
            log::info!("signal {signal}: releasing what is held, then stopping");
            self.feed(rt, now, Event::Shutdown);
        } else {
            log::warn!("second stop signal: exiting at once");
            rt.exit();
        }
    }

    fn handle_hooks_done(&mut self, rt: &mut Runtime, now: Instant, report: PhaseReport) {
        let done = self.hooks_done(rt, report);
        self.feed(rt, now, done);
    }

    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant) {
        self.feed(rt, now, Event::Tick);
    }

    /// The pair's fields of the status.
    fn fill_status(&mut self, rt: &mut Runtime, now: Instant) {
        let timeout = self.core.timeout();
        let links = self.link_statuses(now);
        let s = rt.status.get_mut();
        s.state = self.core.state().into();
        s.peer = self.settings.peer_ip.map(|p| p.to_string());
        s.timeout_ms = Some(millis(timeout));
        s.interval_ms = self.core.announced_interval().map(millis);
        s.links = links;
        let wall = daemon::wall_ms();
        s.conflict = self.core.conflict().map(|c| ConflictStatus {
            address: c.addr.to_string(),
            mac: mac_text(&c.mac),
            since_ms: wall.saturating_sub(millis(now.saturating_duration_since(c.since))),
            holding: c.holding,
        });
        s.peer_clock_offset_ms = self.receiver.peer_clock_offset_ms();
        s.pause = self
            .pause_wall
            .map(|(since_ms, until_ms)| PauseStatus { since_ms, until_ms });
        s.held_by_hand = self.core.manual_hold();
        s.peer_verified = self.key.as_ref().map(|_| self.receiver.peer_verified());
        s.peer_state = Some(self.core.peer_state(now).into());
        s.third_host = self.core.third_host().map(|t| ThirdHostStatus {
            address: t.addr.to_string(),
            mac: mac_text(&t.mac),
            peer_mac: mac_text(&t.peer_mac),
            since_ms: wall.saturating_sub(millis(now.saturating_duration_since(t.since))),
        });
    }
}

/// The pairs in force (the runtime's addresses), in the order of `FAILOVER_PEER_IP_PAIRS`.
fn current_pairs(rt: &Runtime) -> Vec<ResolvedPair> {
    rt.addresses
        .entries()
        .iter()
        .map(|e| e.pair().clone())
        .collect()
}

/// The addresses, comma-separated.
fn addr_list(rt: &Runtime) -> String {
    rt.addresses
        .entries()
        .iter()
        .map(|e| e.pair().addr.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pause kept in the state directory, if any, handed to the core (without a notice: it
/// is the same pause); its wall-clock times for the status.
fn restore_pause(
    dir: &std::path::Path,
    core: &mut Failover,
    now: Instant,
) -> Option<(u64, Option<u64>)> {
    let path = dir.join(PAUSE_FILE);
    let text = match ipfailover_os::safe_fs::read_own(&path, daemon::euid()) {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("{e}");
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let since = v["since_ms"].as_u64()?;
    let until = v["until_ms"].as_u64();
    let wall = daemon::wall_ms();
    if until.is_some_and(|u| u <= wall) {
        log::info!("the pause kept in {} has run its time", path.display());
        remove_pause(dir);
        return None;
    }
    let until_at = until.map(|u| now + Duration::from_millis(u - wall));
    // Its answer and notice go nowhere: nobody asked, and nothing changed.
    let _ = core.handle(now, Event::Command(Command::Pause { until: until_at }));
    log::warn!(
        "paused (kept across the restart, since {} UTC{}): no takeover until failoverctl resume",
        ipfailover::timefmt::date_time(since),
        until.map_or(String::new(), |u| format!(
            ", until {} UTC",
            ipfailover::timefmt::date_time(u)
        ))
    );
    Some((since, until))
}

fn save_pause(dir: &std::path::Path, since: u64, until: Option<u64>) {
    let text = serde_json::json!({ "since_ms": since, "until_ms": until }).to_string();
    if let Err(e) =
        ipfailover_os::safe_fs::write_atomic(&dir.join(PAUSE_FILE), text.as_bytes(), 0o600)
    {
        log::error!(
            "cannot keep the pause in {}: {e} (a restart would end it)",
            dir.display()
        );
    }
}

fn remove_pause(dir: &std::path::Path) {
    match std::fs::remove_file(dir.join(PAUSE_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log::error!("cannot remove {}: {e}", dir.join(PAUSE_FILE).display())
        }
        _ => {}
    }
}

fn resolve_pairs(settings: &Settings) -> Result<Vec<ResolvedPair>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in &settings.peer_ip_pairs {
        match addrs::resolve(p) {
            Ok(r) => out.push(r),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "{}: {}",
            settings.source.display(),
            errors.join("; ")
        ))
    }
}

/// The peer's hook directory and what hooks are told: the pairs being acted on, which after
/// a SIGHUP stay the old ones until those are released.
fn hook_settings(settings: &Settings, pairs: &[ResolvedPair]) -> (PathBuf, HookEnv) {
    let peer = settings.peer_ip.map(|p| p.to_string()).unwrap_or_default();
    let pairs = pairs
        .iter()
        .map(|p| format!("{}:{}", p.iface, p.addr))
        .collect::<Vec<_>>()
        .join(" ");
    (
        settings.script_dir.join(&peer),
        HookEnv {
            peer_ip: peer,
            pairs,
            extra: Vec::new(),
        },
    )
}

fn core_config(settings: &Settings, pairs: &[ResolvedPair], key_changed: bool) -> Config {
    Config {
        peer: settings.peer_ip,
        timeout: settings.timeout,
        release_after: settings.release_after,
        taken_over: pairs.iter().map(|p| p.addr).collect(),
        conflict_grace: settings.conflict_grace,
        fence_after: settings.fence_after,
        key_changed,
        announce_refresh: settings.announce_refresh,
    }
}

/// Tells two keys apart without keeping their bytes: the tag each makes of a fixed text.
fn key_fingerprint(key: &Option<Key>) -> Option<Vec<u8>> {
    key.as_ref().map(|k| {
        let probe = Datagram::new(Kind::Challenge);
        wire::encode(&probe, Some(k))
    })
}

/// The pairs of these addresses, in the order of `FAILOVER_PEER_IP_PAIRS`.
fn pairs_of(rt: &Runtime, addrs: &[IpAddr]) -> Vec<ResolvedPair> {
    rt.addresses
        .entries()
        .iter()
        .filter(|e| addrs.contains(&e.pair().addr))
        .map(|e| e.pair().clone())
        .collect()
}

/// (interface, address) of these addresses, what announcements name.
fn targets_of(rt: &Runtime, addrs: &[IpAddr]) -> Vec<(String, IpAddr)> {
    pairs_of(rt, addrs)
        .into_iter()
        .map(|p| (p.iface, p.addr))
        .collect()
}

/// The MAC of the host an address was released to, if it was one.
fn released_mac(to: &ReleasedTo) -> Option<String> {
    match to {
        ReleasedTo::Host(mac) => Some(mac_text(mac)),
        _ => None,
    }
}

/// Addresses, comma-separated; "none".
fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the conflict watch watches: each pair's address on its interface.
fn watched(pairs: &[ResolvedPair]) -> Vec<(String, IpAddr)> {
    pairs.iter().map(|p| (p.iface.clone(), p.addr)).collect()
}

/// A clock difference in words, to the second: "10m ahead of", "3s behind".
fn offset_text(offset_ms: i64) -> String {
    // To the second: what matters is the size of the difference, not its milliseconds.
    let d = Duration::from_secs(offset_ms.unsigned_abs().saturating_add(500) / 1000);
    let side = if offset_ms >= 0 { "ahead of" } else { "behind" };
    format!("{} {side}", ipfailover::settings::format_duration(d))
}

/// IPv4-mapped IPv6 sources compare as the IPv4 addresses they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}
