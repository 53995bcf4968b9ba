//! failoverd's event loop: turns sockets, signals and time into core events, and the core's
//! actions into netlink calls, announcements and datagrams.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover::announce::AnnounceRound;
use ipfailover::failover::{
    AcquireStep, Action, Command, Config, Event, Failover, Notice, Reason, ReleaseStep, State,
};
use ipfailover::receive::{Incoming, Receiver, Rejected};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{
    self, AddressStatus, ConflictStatus, LinkStatus, PauseStatus, Status, TransitionStatus,
};
use ipfailover::wire::{self, Datagram, DropReason, Key, Kind};
use ipfailover_os::addrs::{self, AddressBackend, ResolvedPair};
use ipfailover_os::announce::Announcers;
use ipfailover_os::conflict::ConflictWatch;
use ipfailover_os::control::{ControlSocket, Request};
use ipfailover_os::daemon::{self, exit};
use ipfailover_os::hooks::{HookEnv, HookRunner, HookStatus, PhaseReport};
use ipfailover_os::mail::{self, Mailer};

use crate::notices::{self, Context, Timeline};
use ipfailover_os::status_file::StatusFile;
use ipfailover_os::{interfaces, udp};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const SOCKET4: Token = Token(0);
const SOCKET6: Token = Token(1);
const SIGNALS: Token = Token(2);
const HOOK_OUTPUT: Token = Token(3);
const CONFLICT: Token = Token(4);
const ADDRESS_EVENTS: Token = Token(5);
const CONTROL: Token = Token(6);

/// The file that keeps a pause across restarts, in the state directory.
const PAUSE_FILE: &str = "failoverd.pause";

/// A clock difference above this is reported (log, status, one mail per episode): it changes
/// nothing for failover, but logs and mail from the two hosts no longer line up.
const CLOCK_OFFSET_WARN_MS: u64 = 60_000;

/// Datagrams read per socket per loop turn: under a flood, deadlines are still honoured.
const READ_BUDGET: usize = 256;

/// At exit, how long pending mail may take.
const MAIL_GRACE: Duration = Duration::from_secs(5);

/// Why failoverd could not start, and with which exit code.
#[derive(Debug)]
pub(crate) struct StartError {
    /// The process exit code (78 for configuration problems).
    pub code: i32,
    /// What went wrong, for the log.
    pub message: String,
}

impl StartError {
    pub(crate) fn config(message: String) -> StartError {
        StartError {
            code: exit::CONFIG,
            message,
        }
    }

    pub(crate) fn other(context: &str, e: io::Error) -> StartError {
        StartError {
            code: exit::FAILURE,
            message: format!("{context}: {e}"),
        }
    }
}

/// The running daemon. (No Debug: the signal handle has none.)
pub(crate) struct Shell {
    config_path: PathBuf,
    settings: Settings,
    poll: Poll,
    socket4: UdpSocket,
    socket6: Option<UdpSocket>,
    signals: Signals,
    core: Failover,
    receiver: Receiver,
    pairs: Vec<ResolvedPair>,
    /// New pairs from a reload, applied once nothing is held.
    pending_pairs: Option<Vec<ResolvedPair>>,
    backend: Box<dyn AddressBackend>,
    announcers: Announcers,
    /// The announcements of the held addresses still to repeat.
    announcing: AnnounceRound,
    /// Announcements on behalf of the host the addresses were given up to, still to repeat.
    handing_back: Option<([u8; 6], AnnounceRound)>,
    /// Where the peer's heartbeats come from on each link: where `released` goes.
    link_sources: BTreeMap<IpAddr, SocketAddr>,
    key: Option<Key>,
    boot_id: u64,
    seq: u64,
    hostname: String,
    /// Sockets that may still hold datagrams (mio is edge-triggered).
    unread: [bool; 2],
    stop_signals: u32,
    exit: bool,
    status: Status,
    status_file: StatusFile,
    status_written: Instant,
    status_dirty: bool,
    /// When the current state was entered.
    state_since: Instant,
    /// Which of the pairs are on the interfaces, as far as our own operations tell.
    held: Vec<bool>,
    /// The local interface facing each link, looked up once per link (and again on SIGHUP).
    link_ifaces: HashMap<IpAddr, Option<String>>,
    hooks: HookRunner,
    /// The hook output pipe registered with the poll, by the runner's hook number.
    hook_source: Option<(u64, i32)>,
    /// When the running hook phase started.
    hook_phase_start: Instant,
    /// The takeover or release under way, for its notice.
    timeline: Option<Timeline>,
    /// Hook failures during the takeover or release under way, for its notice.
    episode_failures: String,
    /// The mail worker, when FAILOVER_EMAIL_RECIPIENT is set.
    mailer: Option<Mailer>,
    /// Probes out, and answers in: who else claims our addresses.
    conflict_watch: ConflictWatch,
    /// The kernel's address notifications, to notice an address removed behind our back.
    #[cfg(target_os = "linux")]
    address_events: Option<ipfailover_os::AddressEvents>,
    /// The local interface index each link arrives on, looked up once per link.
    link_via: HashMap<IpAddr, Option<u32>>,
    /// The last error adding or removing each pair, for the status.
    pair_errors: Vec<Option<String>>,
    /// The peers' clock difference has been reported (until it is back under the limit).
    clock_reported: bool,
    /// The administrator's channel (SPEC §11), if it could be opened.
    control: Option<ControlSocket>,
    /// The pause in force, in wall-clock ms (since, until), for the status and the file.
    pause_wall: Option<(u64, Option<u64>)>,
}

impl Shell {
    /// Checks the settings against this host and opens everything the loop needs.
    pub fn start(settings: Settings, config_path: PathBuf) -> Result<Shell, StartError> {
        // The state directory holds the hooks record, which a root daemon acts on at start:
        // nobody else may be able to write there.
        ipfailover_os::safe_fs::own_dir(&settings.state_dir, daemon::euid())
            .map_err(|e| StartError::config(format!("FAILOVER_STATE_DIR: {e}")))?;
        let key = daemon::load_key(&settings)
            .map_err(|e| StartError::config(format!("FAILOVER_SECRET_FILE: {e}")))?;
        let pairs = resolve_pairs(&settings).map_err(StartError::config)?;
        let mut backend =
            addrs::default_backend().map_err(|e| StartError::other("address back end", e))?;
        let mut held = Vec::new();
        for p in &pairs {
            match backend.holds(p) {
                Ok(true) => held.push(p.addr),
                Ok(false) => {}
                Err(e) => return Err(StartError::other(&format!("reading {}", p.iface), e)),
            }
        }
        let poll = Poll::new().map_err(|e| StartError::other("poll", e))?;
        let mut socket4 = udp::bind_listener(false, settings.port)
            .map_err(|e| StartError::other(&format!("binding UDP port {}", settings.port), e))?;
        poll.registry()
            .register(&mut socket4, SOCKET4, Interest::READABLE)
            .map_err(|e| StartError::other("poll", e))?;
        let socket6 = match udp::bind_listener(true, settings.port) {
            Ok(mut s) => {
                poll.registry()
                    .register(&mut s, SOCKET6, Interest::READABLE)
                    .map_err(|e| StartError::other("poll", e))?;
                Some(s)
            }
            Err(e) => {
                log::debug!("no IPv6 listener: {e}");
                None
            }
        };
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
            .map_err(|e| StartError::other("signals", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| StartError::other("poll", e))?;

        let mut conflict_watch = ConflictWatch::new();
        for e in conflict_watch.watch(poll.registry(), CONFLICT, &watched(&pairs)) {
            log::warn!("{e}: a takeover there cannot check whether the address still answers");
        }
        #[cfg(target_os = "linux")]
        let address_events = follow_addresses(
            &poll,
            ADDRESS_EVENTS,
            "an address removed by hand while held is noticed only at the next status write",
        )?;
        let now = Instant::now();
        let mut core = Failover::new(now, core_config(&settings, &pairs), !held.is_empty());
        let control = match ControlSocket::bind(&settings.state_dir, daemon::euid()) {
            Ok(c) => {
                let fd = c.fd();
                poll.registry()
                    .register(&mut mio::unix::SourceFd(&fd), CONTROL, Interest::READABLE)
                    .map_err(|e| StartError::other("poll", e))?;
                Some(c)
            }
            Err(e) => {
                log::error!(
                    "no control socket in {} ({e}): failoverctl pause, resume, release and \
                     takeover cannot reach this failoverd",
                    settings.state_dir.display()
                );
                None
            }
        };
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
                 releasing them if it is alive",
                held.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let hostname = daemon::hostname();
        // The same settings `-t` checks: what it accepts, the daemon starts with.
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
        let status = Status::new(
            "failoverd",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            &hostname,
            daemon::wall_ms(),
        );
        let held_flags = pairs.iter().map(|p| held.contains(&p.addr)).collect();
        let (hook_dir, hook_env) = hook_settings(&settings, &pairs);
        if settings.peer_ip.is_some() {
            log::info!(
                "hooks from {} (each at most {})",
                hook_dir.display(),
                ipfailover::settings::format_duration(settings.script_timeout)
            );
        }
        Ok(Shell {
            hooks: HookRunner::new(hook_dir, settings.script_timeout, hook_env)
                .with_record(settings.state_dir.join("failoverd.hooks")),
            hook_source: None,
            hook_phase_start: now,
            timeline: None,
            episode_failures: String::new(),
            mailer,
            status,
            status_file: StatusFile::new(&settings.state_dir, "failoverd"),
            status_written: now,
            status_dirty: true,
            state_since: now,
            held: held_flags,
            pair_errors: vec![None; pairs.len()],
            conflict_watch,
            #[cfg(target_os = "linux")]
            address_events,
            link_via: HashMap::new(),
            clock_reported: false,
            link_ifaces: HashMap::new(),
            control,
            pause_wall,
            receiver: Receiver::new(key.clone(), settings.peer_ip),
            config_path,
            settings,
            poll,
            socket4,
            socket6,
            signals,
            core,
            pairs,
            pending_pairs: None,
            backend,
            announcers: Announcers::new(),
            announcing: AnnounceRound::new(),
            handing_back: None,
            link_sources: BTreeMap::new(),
            key,
            boot_id: daemon::random_boot_id(),
            seq: 0,
            hostname,
            unread: [false; 2],
            stop_signals: 0,
            exit: false,
        })
    }

    /// Runs until the core says exit.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let before = Instant::now();
            let timeout = if self.unread.iter().any(|u| *u) {
                Some(Duration::ZERO)
            } else {
                self.next_wake()
                    .map(|t| t.saturating_duration_since(before))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            let mut signalled = false;
            let mut hook_event = self.hooks.next_deadline().is_some_and(|d| now >= d);
            for ev in events.iter() {
                match ev.token() {
                    SOCKET4 => self.unread[0] = true,
                    SOCKET6 => self.unread[1] = true,
                    SIGNALS => signalled = true,
                    HOOK_OUTPUT => hook_event = true,
                    CONFLICT => self.read_conflicts(now),
                    ADDRESS_EVENTS => self.check_addresses(now),
                    CONTROL => self.read_control(now),
                    _ => {}
                }
            }
            self.read_sockets(now);
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
            self.feed(now, Event::Tick);
            self.run_announcements(now);
            // The peer's next heartbeat is a wake to come while it is heard.
            let next = self
                .core
                .peer_alive(now)
                .then(|| self.core.announced_interval())
                .flatten();
            if self.status_dirty || self.exit || status::refresh_due(now, self.status_written, next)
            {
                self.write_status(now);
            }
            if self.exit {
                self.hooks.shutdown(Duration::from_secs(2));
                if let Some(m) = self.mailer.take() {
                    // The release notice is still on its way: give it a few seconds.
                    m.shutdown(MAIL_GRACE);
                }
                log::info!("failoverd stopped");
                return Ok(());
            }
        }
    }

    fn write_status(&mut self, now: Instant) {
        self.status_written = now;
        self.status_dirty = false;
        let timeout = self.core.timeout();
        let links = self.link_statuses(now);
        let s = &mut self.status;
        s.stamp(daemon::wall_ms(), self.receiver.counters());
        s.state = self.core.state().as_str().to_string();
        s.peer = self.settings.peer_ip.map(|p| p.to_string());
        s.timeout_ms = Some(millis(timeout));
        s.interval_ms = self.core.announced_interval().map(millis);
        s.links = links;
        s.addresses = self
            .pairs
            .iter()
            .zip(&self.held)
            .zip(&self.pair_errors)
            .map(|((p, held), error)| AddressStatus {
                interface: p.iface.clone(),
                address: p.addr.to_string(),
                prefix: p.prefix,
                held: *held,
                error: error.clone(),
            })
            .collect();
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
        if let Some(m) = &self.mailer {
            let ms = m.stats();
            s.counters.mails_sent = ms.sent;
            s.counters.mails_failed = ms.failed_attempts;
            s.counters.mails_dropped = ms.dropped;
        }
        self.status_file.write(&self.status);
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
                    "up"
                } else if link.anomaly {
                    "lost"
                } else {
                    "silent"
                };
                LinkStatus {
                    peer_address: addr.to_string(),
                    interface: self.link_ifaces.get(addr).cloned().flatten(),
                    last_heartbeat_age_ms: millis(now.saturating_duration_since(link.last)),
                    heartbeats: link.heartbeats,
                    state: state.to_string(),
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

    fn context(&self) -> Context {
        Context {
            host: self.hostname.clone(),
            peer: self.peer_name(),
            addrs: self.addr_list(),
        }
    }

    /// Sends a notice to the administrator (logged always; mailed when mail is configured).
    fn send_notice(&mut self, subject: String, body: String) {
        log::info!("notice: {subject}");
        log::debug!("notice body:\n{body}");
        if let Some(m) = &self.mailer {
            m.send(mail::Notice { subject, body });
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let announce = [
            self.announcing.next_deadline(),
            self.handing_back
                .as_ref()
                .and_then(|(_, r)| r.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        let status = self.status_written + status::REFRESH;
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

    fn read_sockets(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        for i in 0..2 {
            if !self.unread[i] {
                continue;
            }
            let mut budget = READ_BUDGET;
            loop {
                if budget == 0 {
                    break; // still unread: the next turn polls with a zero timeout
                }
                budget -= 1;
                let socket = if i == 0 {
                    &self.socket4
                } else {
                    match &self.socket6 {
                        Some(s) => s,
                        None => {
                            self.unread[i] = false;
                            break;
                        }
                    }
                };
                match socket.recv_from(&mut buf) {
                    Ok((n, src)) => {
                        let data = buf.get(..n).unwrap_or(&[]);
                        self.handle_datagram(now, data, src);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.unread[i] = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("receiving: {e}");
                        self.unread[i] = false;
                        break;
                    }
                }
            }
        }
    }

    fn handle_datagram(&mut self, now: Instant, data: &[u8], src: SocketAddr) {
        let src_ip = canonical(src.ip());
        match self.receiver.receive(data, src_ip, now, daemon::wall_ms()) {
            Ok(Incoming::Heartbeat { interval }) => {
                self.link_sources.insert(src_ip, src);
                self.check_clock(now);
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
                    self.status_dirty = true;
                }
                self.feed(
                    now,
                    Event::Heartbeat {
                        link: src_ip,
                        interval,
                        via,
                    },
                );
            }
            Ok(Incoming::Goodbye) => {
                log::info!("goodbye from the peer via {src_ip}");
                self.feed(now, Event::Goodbye { link: src_ip });
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
                    self.send_challenge(c.nonce);
                }
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
    fn send_challenge(&mut self, nonce: u64) {
        let locals = interfaces::local_addrs().unwrap_or_default();
        let mut targets: Vec<SocketAddr> = self.link_sources.values().copied().collect();
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
        let d = Datagram {
            kind: Kind::Challenge,
            interval_ms: 0,
            boot_id: self.boot_id,
            seq: 0,
            time_ms: daemon::wall_ms(),
            nonce,
            hostname: self.hostname.clone(),
            addrs: Vec::new(),
        };
        self.send_to(targets, d, "a challenge");
    }

    /// Sends `d` to the peer on every link it is heard on.
    fn send_to_links(&mut self, d: Datagram, what: &str) -> usize {
        let targets = self.link_sources.values().copied().collect();
        self.send_to(targets, d, what)
    }

    /// Sends `d` (its sequence number set here, one per datagram) to each target.
    fn send_to(&mut self, targets: Vec<SocketAddr>, mut d: Datagram, what: &str) -> usize {
        let mut sent = 0;
        for to in targets {
            self.seq += 1;
            d.seq = self.seq;
            let bytes = wire::encode(&d, self.key.as_ref());
            let socket = match (to, &self.socket6) {
                (SocketAddr::V6(_), Some(s6)) => s6,
                _ => &self.socket4,
            };
            match udp::send_to(socket, &bytes, to) {
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
    fn check_clock(&mut self, _now: Instant) {
        let Some(offset) = self.receiver.peer_clock_offset_ms() else {
            return;
        };
        let far = offset.unsigned_abs() > CLOCK_OFFSET_WARN_MS;
        if far && !self.clock_reported {
            self.clock_reported = true;
            self.status_dirty = true;
            let text = offset_text(offset);
            log::warn!(
                "the peer's clock is {text} this host's: this changes nothing for failover \
                 (freshness is proved by challenge, never by the clocks), but check NTP on both"
            );
            let subject = self.context().clock_offset(&text);
            let body = format!(
                "The wall clock in the heartbeats of {} is {text} the clock of {}.\n\n\
                 ipfailover does not trust either clock: heartbeats count because the peer \
                 answered a challenge, and timeouts run on the monotonic clock, so failover \
                 works as before. But the two hosts' logs and mails no longer line up, and \
                 other software on them may care: check NTP (or chrony) on both.\n",
                self.peer_name(),
                self.hostname
            );
            self.send_notice(subject, body);
        } else if !far && self.clock_reported && offset.unsigned_abs() < CLOCK_OFFSET_WARN_MS / 2 {
            self.clock_reported = false;
            self.status_dirty = true;
            log::info!("the peer's clock is {} ours again", offset_text(offset));
        }
    }

    /// Reads what the LAN said about our addresses and tells the core.
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
                Event::ProbeAnswer {
                    addr: a.addr,
                    mac: a.mac,
                },
            );
        }
    }

    /// The administrator's commands: each becomes a core event; the core answers.
    fn read_control(&mut self, now: Instant) {
        let requests = match self.control.as_mut() {
            Some(c) => c.accept(),
            None => return,
        };
        for (request, pid) in requests {
            log::info!("control: {request:?} from pid {pid}");
            let command = match request {
                Request::Pause { for_ms } => Command::Pause {
                    until: for_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms))),
                },
                Request::Resume => Command::Resume,
                Request::Release { force } => Command::Release { force },
                Request::Takeover { force } => Command::Takeover { force },
            };
            self.feed(now, Event::Command(command));
        }
    }

    /// After an address change in the kernel: whether what we hold is still there.
    fn check_addresses(&mut self, now: Instant) {
        if !addresses_changed(
            #[cfg(target_os = "linux")]
            &mut self.address_events,
        ) {
            return;
        }
        if self.core.state() != State::Acquired {
            return;
        }
        let mut missing = Vec::new();
        for (i, p) in self.pairs.iter().enumerate() {
            if self.held.get(i) == Some(&true) && matches!(self.backend.holds(p), Ok(false)) {
                missing.push((i, p.addr));
            }
        }
        for (i, addr) in missing {
            if let Some(h) = self.held.get_mut(i) {
                *h = false;
            }
            self.status_dirty = true;
            self.feed(now, Event::AddressMissing { addr });
        }
    }

    /// Handles pending signals; true if a child exited (a hook may be done).
    fn handle_signals(&mut self, now: Instant) -> bool {
        let signals: Vec<i32> = self.signals.pending().collect();
        let mut child = false;
        for sig in signals {
            match sig {
                SIGCHLD => child = true,
                SIGHUP => self.reload(now),
                SIGTERM | SIGINT => {
                    self.stop_signals += 1;
                    if self.stop_signals == 1 {
                        log::info!("signal {sig}: releasing what is held, then stopping");
                        self.feed(now, Event::Shutdown);
                    } else {
                        log::warn!("second stop signal: exiting at once");
                        self.exit = true;
                    }
                }
                _ => {}
            }
        }
        child
    }

    /// Keeps the poll watching the running hook's output pipe.
    fn watch_hook_output(&mut self) {
        let now = self.hooks.output_source();
        if now == self.hook_source {
            return;
        }
        if let Some((_, fd)) = self.hook_source.take() {
            // The old pipe may be closed already (the kernel then forgot it): ignore errors.
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

    /// Logs and counts a finished phase; the event to feed the core.
    fn hooks_done(&mut self, report: PhaseReport) -> Event {
        let phase = report.phase.as_str();
        if let Some(t) = self.timeline.as_mut() {
            t.hooks(self.hook_phase_start, &report);
        }
        if !report.ok() {
            let failures = notices::hook_failures(&report);
            self.episode_failures.push_str(&failures);
            // A refused Test is told in the refusal notice; other failures on their own.
            if report.phase != ipfailover::failover::HookPhase::Test {
                let subject = self.context().hook_failed(&report);
                let consequence = if report.phase == ipfailover::failover::HookPhase::Fence {
                    "The takeover stays blocked while the address answers; failoverd goes on \
                     probing and takes over when it stops answering."
                        .to_string()
                } else {
                    format!("The transition went on: a failing {phase} hook does not stop it.")
                };
                let body = format!("{failures}\n{consequence}\n");
                self.send_notice(subject, body);
            }
        }
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
        self.status_dirty = true;
        Event::HooksDone {
            phase: report.phase,
            ok: report.ok(),
        }
    }

    fn reload(&mut self, now: Instant) {
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
        self.receiver.set_peer(settings.peer_ip);
        if settings.peer_ip != self.settings.peer_ip {
            // The old peer's links and where they came from mean nothing for the new one.
            self.link_sources.clear();
            self.link_via.clear();
            self.clock_reported = false;
        }
        // Every SIGHUP re-reads the key: a secret file rewritten in place is a new key. The
        // peer then proves itself again (one round trip).
        self.receiver.set_key(key.clone());
        self.key = key;
        if pairs != self.pairs {
            if self.core.holds_addresses() || matches!(self.core.state(), State::Acquiring(_)) {
                log::info!(
                    "SIGHUP: new FAILOVER_PEER_IP_PAIRS apply once the held addresses are released"
                );
                self.pending_pairs = Some(pairs);
            } else {
                self.set_pairs(pairs);
            }
        }
        let wanted = match mail::settings_for(&settings, &self.hostname) {
            Ok(Some((ms, warning))) => {
                if let Some(w) = warning {
                    log::warn!("SIGHUP: {w}");
                }
                Some(ms)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!("SIGHUP: mail (FAILOVER_EMAIL_*): {e}; no mail is sent");
                None
            }
        };
        match (wanted, &self.mailer) {
            (Some(ms), Some(m)) => m.reconfigure(ms),
            (Some(ms), None) => match Mailer::start(ms) {
                Ok(m) => self.mailer = Some(m),
                Err(e) => log::error!("SIGHUP: mail settings: {e}; no mail is sent"),
            },
            (None, Some(_)) => {
                if let Some(m) = self.mailer.take() {
                    m.shutdown(MAIL_GRACE);
                }
            }
            (None, None) => {}
        }
        self.link_ifaces.clear();
        let config = core_config(&settings, &self.pairs);
        let (hook_dir, hook_env) = hook_settings(&settings, &self.pairs);
        self.hooks
            .reconfigure(hook_dir, settings.script_timeout, hook_env);
        self.settings = settings;
        self.feed(now, Event::Reconfigure(config));
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
    }

    /// Feeds one event and everything its actions lead to.
    fn feed(&mut self, now: Instant, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            for action in self.core.handle(now, ev) {
                self.execute(now, action, &mut queue);
            }
        }
    }

    fn execute(&mut self, now: Instant, action: Action, queue: &mut VecDeque<Event>) {
        match action {
            Action::Transition { from, to, reason } => {
                log::info!("{from} -> {to} ({reason})");
                if from.as_str() != to.as_str() {
                    self.status.push_transition(TransitionStatus {
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
                    self.status.counters.takeovers += 1;
                }
                if to == State::Monitoring && matches!(from, State::Releasing(_)) {
                    self.status.counters.releases += 1;
                }
                self.status_dirty = true;
                if to == State::Monitoring {
                    if let Some(p) = self.pending_pairs.take() {
                        self.set_pairs(p);
                        let config = core_config(&self.settings, &self.pairs);
                        queue.push_back(Event::Reconfigure(config));
                    }
                }
            }
            Action::RunHooks { phase, reason } => {
                // Real time, not the turn's: the timeline orders hooks and address steps
                // taken within one turn.
                self.hook_phase_start = Instant::now();
                if let Some(report) =
                    self.hooks
                        .begin(self.hook_phase_start, phase, reason.as_str())
                {
                    let done = self.hooks_done(report);
                    queue.push_back(done);
                }
                self.watch_hook_output();
            }
            Action::AddAddresses => {
                let ok = self.add_addresses();
                queue.push_back(Event::AddressesAdded { ok });
            }
            Action::Announce => {
                // Ours again: no more announcing it in another host's name.
                self.handing_back = None;
                self.announcing.start(now);
                self.run_announcements(now);
                if let Some(t) = self.timeline.as_mut() {
                    t.at(
                        Instant::now(),
                        "announced (gratuitous ARP / unsolicited NA), repeated after 50 ms, \
                         250 ms, 1 s, 3 s and 10 s",
                    );
                }
            }
            Action::StopAnnouncing => {
                self.announcing.stop();
            }
            Action::Probe => {
                for e in self.conflict_watch.probe(self.poll.registry(), CONFLICT) {
                    log::warn!("{e}");
                }
            }
            Action::Defend => {
                log::info!("defending {}: announcing it once", self.addr_list());
                for (p, held) in self.pairs.clone().iter().zip(self.held.clone()) {
                    if held {
                        self.announce(p);
                    }
                }
            }
            Action::RemoveAddresses => {
                let ok = self.remove_addresses();
                queue.push_back(Event::AddressesRemoved { ok });
            }
            Action::SendReleased => self.send_released(),
            Action::HandBack { mac } => {
                log::info!(
                    "announcing {} for {}, which answers for it",
                    self.addr_list(),
                    mac_text(&mac)
                );
                let mut round = AnnounceRound::new();
                round.start(now);
                self.handing_back = Some((mac, round));
                self.run_announcements(now);
            }
            Action::Notify(notice) => {
                self.status_dirty = true;
                self.notify(now, &notice)
            }
            Action::Answer(result) => {
                match &result {
                    Ok(m) => log::info!("control: {m}"),
                    Err(m) => log::warn!("control: {m}"),
                }
                if let Some(c) = self.control.as_mut() {
                    c.answer(&result);
                }
                self.status_dirty = true;
            }
            Action::Exit => self.exit = true,
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
                    Reason::PeerReturned => format!(
                        "detected: {} consecutive heartbeats on one link",
                        self.core.config().release_after
                    ),
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
                            Instant::now(),
                            format!("{} ({})", to.as_str(), reason.as_str()),
                        );
                    }
                }
            }
        }
    }

    /// The notice of a completed takeover or release, with its timeline.
    fn episode_notice(&mut self, now: Instant, subject: String, what: String) {
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
            self.status_file.path().display()
        ));
        self.episode_failures.clear();
        self.send_notice(subject, body);
    }

    fn add_addresses(&mut self) -> bool {
        let mut ok = true;
        for ((p, held), error) in self
            .pairs
            .iter()
            .zip(self.held.iter_mut())
            .zip(self.pair_errors.iter_mut())
        {
            let result = self.backend.add(p);
            let failed = result.as_ref().err().map(|e| e.to_string());
            // Logged once per change of outcome, not at every retry.
            let repeated = failed.is_some() && failed == *error;
            *error = failed;
            match result {
                Ok(true) => {
                    *held = true;
                    log::info!("added {}/{} to {}", p.addr, p.prefix, p.iface);
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            Instant::now(),
                            format!("added {}/{} to {}", p.addr, p.prefix, p.iface),
                        );
                    }
                }
                Ok(false) => {
                    *held = true;
                    log::info!("{} was already on {}", p.addr, p.iface)
                }
                Err(e) => {
                    ok = false;
                    *held = false;
                    if !repeated {
                        log::error!(
                            "adding {}/{} to {}: {e} (retried while the addresses are held)",
                            p.addr,
                            p.prefix,
                            p.iface
                        );
                    }
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            Instant::now(),
                            format!("FAILED to add {}/{} to {}: {e}", p.addr, p.prefix, p.iface),
                        );
                    }
                }
            }
        }
        self.status_dirty = true;
        ok
    }

    fn remove_addresses(&mut self) -> bool {
        let mut ok = true;
        for ((p, held), error) in self
            .pairs
            .iter()
            .zip(self.held.iter_mut())
            .zip(self.pair_errors.iter_mut())
        {
            let result = self.backend.remove(p);
            *error = result.as_ref().err().map(|e| e.to_string());
            match result {
                Ok(true) => {
                    *held = false;
                    log::info!("removed {} from {}", p.addr, p.iface);
                    if let Some(t) = self.timeline.as_mut() {
                        t.at(
                            Instant::now(),
                            format!("removed {} from {}", p.addr, p.iface),
                        );
                    }
                }
                Ok(false) => {
                    *held = false;
                    log::info!("{} was not on {}", p.addr, p.iface)
                }
                Err(e) => {
                    ok = false;
                    log::error!("removing {} from {}: {e}", p.addr, p.iface);
                }
            }
        }
        ok
    }

    /// Sends the announcement steps that are due.
    fn run_announcements(&mut self, now: Instant) {
        if let Some((mac, round)) = self.handing_back.as_mut() {
            let (mac, due) = (*mac, round.due(now));
            for _ in 0..due {
                for p in self.pairs.clone() {
                    if let Err(e) = self.announcers.announce_as(&p.iface, p.addr, Some(mac)) {
                        log::debug!("{e}");
                    }
                }
            }
            if self
                .handing_back
                .as_ref()
                .is_some_and(|(_, r)| r.next_deadline().is_none())
            {
                self.handing_back = None;
            }
        }
        for _ in 0..self.announcing.due(now) {
            // Only what is on the interfaces: announcing an address that could not be added
            // would send the LAN to a host that does not answer for it.
            for (p, held) in self.pairs.clone().iter().zip(self.held.clone()) {
                if held {
                    self.announce(p);
                }
            }
        }
    }

    fn announce(&mut self, pair: &ResolvedPair) {
        // The announcer's error names the address and the interface.
        if let Err(e) = self.announcers.announce(&pair.iface, pair.addr) {
            log::warn!("{e}");
        }
    }

    /// Tells the primary, on every link, which of its addresses we no longer hold, so that it
    /// announces each of them (a service alias too, not only its own address).
    fn send_released(&mut self) {
        let released: Vec<IpAddr> = self
            .pairs
            .iter()
            .zip(&self.held)
            .filter(|(_, held)| !**held)
            .map(|(p, _)| p.addr)
            .take(wire::MAX_ADDRS)
            .collect();
        let d = Datagram {
            kind: Kind::Released,
            interval_ms: 0,
            boot_id: self.boot_id,
            seq: 0,
            time_ms: daemon::wall_ms(),
            nonce: 0,
            hostname: self.hostname.clone(),
            addrs: released,
        };
        let sent = self.send_to_links(d, "`released`");
        if sent > 0 {
            log::info!(
                "told the primary on {sent} link(s) that {} are released",
                self.addr_list()
            );
            if let Some(t) = self.timeline.as_mut() {
                t.at(
                    Instant::now(),
                    format!("told the primary (released) on {sent} link(s)"),
                );
            }
        }
    }

    fn notify(&mut self, now: Instant, notice: &Notice) {
        let ctx = self.context();
        match notice {
            Notice::TookOver(reason) => {
                // What is really held: an address whose add failed is named as such, in the
                // subject and the body, never counted as taken over.
                let held = self.held_list(true);
                let failed: Vec<String> = self
                    .pairs
                    .iter()
                    .zip(&self.held)
                    .zip(&self.pair_errors)
                    .filter(|((_, h), _)| !**h)
                    .map(|((p, _), e)| {
                        format!(
                            "{} on {}: {}",
                            p.addr,
                            p.iface,
                            e.as_deref().unwrap_or("not added")
                        )
                    })
                    .collect();
                log::warn!("took over {held} from {} ({reason})", ctx.peer);
                let mut what = format!(
                    "{} took over {held} from {} because of: {}.",
                    ctx.host,
                    ctx.peer,
                    notices::reason_text(*reason)
                );
                let mut subject = ctx.took_over(*reason);
                if !failed.is_empty() {
                    what.push_str(&format!(
                        "\n\nCOULD NOT ADD (retried while the others are held):\n  {}",
                        failed.join("\n  ")
                    ));
                    subject = Context {
                        addrs: held.clone(),
                        ..ctx.clone()
                    }
                    .took_over(*reason)
                        + &format!(", {} FAILED", failed.len());
                }
                self.episode_notice(now, subject, what);
            }
            Notice::Released(reason) => {
                log::warn!("released {} to {} ({reason})", ctx.addrs, ctx.peer);
                let what = format!(
                    "{} gave {} back to {} because of: {}.",
                    ctx.host,
                    ctx.addrs,
                    ctx.peer,
                    notices::reason_text(*reason)
                );
                self.episode_notice(now, ctx.released(*reason), what);
            }
            Notice::TakeoverRefused => {
                log::warn!(
                    "the Test hook refused to take over {} from {}; retrying while it stays silent",
                    ctx.addrs,
                    ctx.peer
                );
                let what = format!(
                    "{} heard nothing from {} for {}, but its Test hook refused the takeover. \
                     It tries again every {} while the peer stays silent; you get this mail once \
                     per outage.",
                    ctx.host,
                    ctx.peer,
                    ipfailover::settings::format_duration(self.core.timeout()),
                    ipfailover::settings::format_duration(self.core.timeout())
                );
                self.episode_notice(now, ctx.refused(), what);
            }
            Notice::LinkLost(link) => {
                log::warn!(
                    "network anomaly: no heartbeat from {link} for {} while another link carries \
                     them; redundancy is gone",
                    ipfailover::settings::format_duration(self.core.timeout())
                );
                let body = format!(
                    "No heartbeat from {} has arrived via {link} for {}, while another link still \
                     carries them. This is not a takeover: the peer is alive. But one more failure \
                     and the two hosts can no longer tell a dead peer from a cut network.\n\n\
                     Links now:\n{}",
                    ctx.peer,
                    ipfailover::settings::format_duration(self.core.timeout()),
                    self.links_text(now)
                );
                self.send_notice(ctx.link_lost(&link.to_string()), body);
            }
            Notice::Conflict(c) => {
                let mac = mac_text(&c.mac);
                let addr = c.addr.to_string();
                let grace =
                    ipfailover::settings::format_duration(self.core.config().conflict_grace);
                if c.holding {
                    log::warn!(
                        "conflict: {addr}, which we hold, also answers from {mac} while {} is \
                         silent; defending it, and giving it up if that host still answers \
                         after {grace}",
                        ctx.peer
                    );
                    let body = format!(
                        "{} holds {addr}, and another host answers for it too, from {mac}: the \
                         LAN's clients are split between two hosts. {} sends no heartbeats.\n\n\
                         This happens while a host that said goodbye is still shutting down (its \
                         kernel answers until its links go down), or when the peer came back \
                         with its address while its heartbeats are blocked (a firewall), or when \
                         a third host claims the address.\n\nfailoverd defends the address \
                         (at most once per 10 s) and, if {mac} still answers after {grace} \
                         (FAILOVER_CONFLICT_GRACE), releases it with the release hooks: one \
                         host answering is better than two.\n\nLinks now:\n{}",
                        ctx.host,
                        ctx.peer,
                        self.links_text(now)
                    );
                    self.send_notice(ctx.conflict_holding(&addr, &mac), body);
                } else {
                    log::warn!(
                        "heartbeats lost on every link but {addr} still answers from {mac}: \
                         not taking over (probing until it stops answering)"
                    );
                    let (links, port) = (self.links_text(now), self.settings.port);
                    let body = format!(
                        "No heartbeat from {} has arrived on any link for {}, but {addr} still \
                         answers on the LAN, from {mac}. Taking it over now would make two \
                         hosts answer for it, which is worse than no failover, so {} does not.\n\n\
                         Usual causes: a firewall that drops UDP {} on the peer, heartbeatd \
                         stopped or hung while the host runs, a host that is slow but alive.\n\n\
                         failoverd keeps probing and takes over as soon as the address stops \
                         answering; the Fence hooks (if any) ran to power the peer off. Status: \
                         state `conflict`.\n\nLinks now:\n{}",
                        ctx.peer,
                        ipfailover::settings::format_duration(self.core.timeout()),
                        ctx.host,
                        port,
                        links
                    );
                    self.send_notice(ctx.conflict(&addr, &mac), body);
                }
            }
            Notice::ConflictOver { holding } => {
                log::info!(
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
                self.send_notice(ctx.conflict_over(), body);
            }
            Notice::AddressLost(addr) => {
                log::warn!("{addr} vanished from its interface while held: adding it again");
                let body = format!(
                    "{addr} was removed from its interface on {} (by hand, or by a network \
                     manager) while failoverd held it for {}. failoverd added it again and \
                     announced it.\n",
                    ctx.host, ctx.peer
                );
                self.send_notice(ctx.address_lost(&addr.to_string()), body);
            }
            Notice::Paused(pause) => {
                let wall = daemon::wall_ms();
                let since = self.pause_wall.map_or(wall, |(s, _)| s);
                let until = pause
                    .until
                    .map(|u| wall + millis(u.saturating_duration_since(now)));
                self.pause_wall = Some((since, until));
                save_pause(&self.settings.state_dir, since, until);
                let how_long = match until {
                    Some(u) => format!("until {} UTC", ipfailover::timefmt::date_time(u)),
                    None => "until failoverctl resume".to_string(),
                };
                log::warn!("paused by an administrator {how_long}: no takeover meanwhile");
                let body = format!(
                    "An administrator paused failoverd on {} {how_long}. While paused it watches \
                     {} and reports, but takes nothing over, however long {} is silent. \
                     failoverctl resume ends the pause. Status: pause, exit 1 (degraded).\n",
                    ctx.host, ctx.peer, ctx.peer
                );
                self.send_notice(ctx.paused(), body);
            }
            Notice::Resumed { auto } => {
                self.pause_wall = None;
                remove_pause(&self.settings.state_dir);
                let how = if *auto {
                    "the pause ran its time"
                } else {
                    "an administrator resumed it"
                };
                log::warn!("resumed ({how}): a silent peer is taken over again");
                let body = format!(
                    "failoverd on {} takes over {} again when it is silent: {how}.\n\nLinks now:\n{}",
                    ctx.host,
                    ctx.peer,
                    self.links_text(now)
                );
                self.send_notice(ctx.resumed(), body);
            }
            Notice::LinkBack(link) => {
                log::info!("heartbeats from {link} are back");
                let body = format!(
                    "Heartbeats from {} arrive via {link} again.\n\nLinks now:\n{}",
                    ctx.peer,
                    self.links_text(now)
                );
                self.send_notice(ctx.link_back(&link.to_string()), body);
            }
        }
    }

    /// Takes new pairs (nothing of the old ones is held): the conflict watch and the hooks'
    /// FAILOVER_PEER_IP_PAIRS follow.
    fn set_pairs(&mut self, pairs: Vec<ResolvedPair>) {
        self.held = vec![false; pairs.len()];
        self.pair_errors = vec![None; pairs.len()];
        for e in self
            .conflict_watch
            .watch(self.poll.registry(), CONFLICT, &watched(&pairs))
        {
            log::warn!("{e}");
        }
        self.pairs = pairs;
        let (hook_dir, hook_env) = hook_settings(&self.settings, &self.pairs);
        self.hooks
            .reconfigure(hook_dir, self.settings.script_timeout, hook_env);
    }

    /// The addresses held now (or, with `held` false, not held), comma-separated; "none".
    fn held_list(&self, held: bool) -> String {
        let list: Vec<String> = self
            .pairs
            .iter()
            .zip(&self.held)
            .filter(|(_, h)| **h == held)
            .map(|(p, _)| p.addr.to_string())
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    }

    fn addr_list(&self) -> String {
        self.pairs
            .iter()
            .map(|p| p.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn peer_name(&self) -> String {
        self.settings
            .peer_ip
            .map_or_else(|| "the peer".to_string(), |p| p.to_string())
    }
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

fn core_config(settings: &Settings, pairs: &[ResolvedPair]) -> Config {
    Config {
        peer: settings.peer_ip,
        timeout: settings.timeout,
        release_after: settings.release_after,
        taken_over: pairs.iter().map(|p| p.addr).collect(),
        conflict_grace: settings.conflict_grace,
    }
}

/// The kernel's address notifications, registered with `poll` under `token`; `None` (with a
/// warning naming what is lost: `without`) when the kernel will not give them.
#[cfg(target_os = "linux")]
pub(crate) fn follow_addresses(
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
pub(crate) fn addresses_changed(
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

/// What the conflict watch watches: each pair's address on its interface.
fn watched(pairs: &[ResolvedPair]) -> Vec<(String, IpAddr)> {
    pairs.iter().map(|p| (p.iface.clone(), p.addr)).collect()
}

/// `aa:bb:cc:dd:ee:ff`.
fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
