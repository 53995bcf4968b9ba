//! heartbeatd's event loop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover::announce::AnnounceRound;
use ipfailover::receive::{Incoming, Receiver};
use ipfailover::sender::{Sender, SenderAction, SenderEvent};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{self, SendStatus, Status};
use ipfailover::wire::{self, Datagram, Key, Kind};
use ipfailover_os::announce::Announcers;
use ipfailover_os::daemon::{self, exit};
use ipfailover_os::interfaces::{self, LocalAddr};
use ipfailover_os::status_file::StatusFile;
use ipfailover_os::udp;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

const SOCKET4: Token = Token(0);
const SOCKET6: Token = Token(1);
const SIGNALS: Token = Token(2);

/// IPv6 link-local (fe80::/10): never moved, never announced.
fn is_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// How often the identity (this host's addresses on the heartbeat subnets) is looked up again
/// (and at once on SIGHUP): addresses rarely change, and each look-up is a netlink dump.
const IDENTITY_REFRESH: Duration = Duration::from_secs(30);

/// A send error on a destination is logged again only after this long (a link that is down
/// would otherwise fill the log at every interval).
const SEND_ERROR_LOG_GAP: Duration = Duration::from_secs(60);

/// The running daemon. (No Debug: the signal handle has none.)
pub(crate) struct Shell {
    config_path: PathBuf,
    settings: Settings,
    poll: Poll,
    socket4: UdpSocket,
    socket6: Option<UdpSocket>,
    signals: Signals,
    sender: Sender,
    receiver: Receiver,
    key: Option<Key>,
    hostname: String,
    /// This host's addresses that identify it in heartbeats, with their interfaces.
    identity: Vec<LocalAddr>,
    identity_checked: Instant,
    /// What every datagram carries; kind, interval, sequence (counting every datagram sent)
    /// and time are set at each send.
    template: Datagram,
    /// One reusable datagram per destination, by socket family.
    out4: Vec<udp::Outgoing>,
    out6: Vec<udp::Outgoing>,
    announcers: Announcers,
    /// The announcements of our own addresses still to repeat.
    announcing: AnnounceRound,
    /// What the current round announces: every address on the heartbeat interfaces, and
    /// those a `released` named.
    announce_list: Vec<LocalAddr>,
    /// Addresses the secondary said it released, to announce with the rest.
    released: Vec<IpAddr>,
    /// When a send error on a destination was last logged.
    send_errors: HashMap<SocketAddr, Instant>,
    /// Per destination: datagrams sent, failed, and the latest failure.
    sends: HashMap<SocketAddr, SendStatus>,
    exit: bool,
    status: Status,
    status_file: StatusFile,
    status_written: Instant,
}

impl Shell {
    /// Opens the sockets and works out this host's identity.
    pub fn start(settings: Settings, config_path: PathBuf) -> Result<Shell, (i32, String)> {
        ipfailover_os::safe_fs::own_dir(&settings.state_dir, daemon::euid())
            .map_err(|e| (exit::CONFIG, format!("FAILOVER_STATE_DIR: {e}")))?;
        let key = daemon::load_key(&settings)
            .map_err(|e| (exit::CONFIG, format!("FAILOVER_SECRET_FILE: {e}")))?;
        let io_err = |what: &str, e: io::Error| (exit::FAILURE, format!("{what}: {e}"));
        let poll = Poll::new().map_err(|e| io_err("poll", e))?;
        let mut socket4 = udp::bind_sender(false).map_err(|e| io_err("UDP socket", e))?;
        poll.registry()
            .register(&mut socket4, SOCKET4, Interest::READABLE)
            .map_err(|e| io_err("poll", e))?;
        let wants_v6 = settings.bcast_ips.iter().any(IpAddr::is_ipv6);
        let socket6 = if wants_v6 {
            let mut s = udp::bind_sender(true).map_err(|e| io_err("UDP socket (IPv6)", e))?;
            poll.registry()
                .register(&mut s, SOCKET6, Interest::READABLE)
                .map_err(|e| io_err("poll", e))?;
            Some(s)
        } else {
            None
        };
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| io_err("signals", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| io_err("poll", e))?;
        let now = Instant::now();
        let hostname = daemon::hostname();
        let mut shell = Shell {
            status: Status::new(
                "heartbeatd",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                &hostname,
                daemon::wall_ms(),
            ),
            status_file: StatusFile::new(&settings.state_dir, "heartbeatd"),
            status_written: now,
            receiver: Receiver::new(key.clone(), None),
            sender: Sender::new(now, settings.interval),
            config_path,
            settings,
            poll,
            socket4,
            socket6,
            signals,
            key,
            hostname,
            identity: Vec::new(),
            identity_checked: now,
            template: Datagram {
                kind: Kind::Heartbeat,
                interval_ms: 0,
                boot_id: daemon::random_boot_id(),
                seq: 0,
                time_ms: 0,
                nonce: 0,
                hostname: String::new(),
                addrs: Vec::new(),
            },
            out4: Vec::new(),
            out6: Vec::new(),
            announcers: Announcers::new(),
            announcing: AnnounceRound::new(),
            announce_list: Vec::new(),
            released: Vec::new(),
            send_errors: HashMap::new(),
            sends: HashMap::new(),
            exit: false,
        };
        shell.refresh_identity(now);
        log::info!(
            "heartbeatd {} sending every {} to {} (UDP {}) as {} [{}]; {}",
            env!("CARGO_PKG_VERSION"),
            ipfailover::settings::format_duration(shell.settings.interval),
            shell
                .settings
                .bcast_ips
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            shell.settings.port,
            shell.hostname,
            shell
                .identity_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            if shell.key.is_some() {
                "authenticated"
            } else {
                "NOT authenticated"
            }
        );
        Ok(shell)
    }

    /// Runs until stopped by a signal.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // The first heartbeat (and the start-up announcement) go out at once.
        let start = Instant::now();
        self.feed(start, SenderEvent::Tick);
        self.write_status(start);
        loop {
            let before = Instant::now();
            let wake = [self.sender.next_deadline(), self.announcing.next_deadline()]
                .into_iter()
                .flatten()
                .fold(self.status_written + status::REFRESH, Instant::min);
            let timeout = Some(wake.saturating_duration_since(before));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            let mut signalled = false;
            let mut readable = [false; 2];
            for ev in events.iter() {
                match ev.token() {
                    SOCKET4 => readable[0] = true,
                    SOCKET6 => readable[1] = true,
                    SIGNALS => signalled = true,
                    _ => {}
                }
            }
            if signalled {
                self.handle_signals(now);
            }
            if readable[0] || readable[1] {
                self.read_replies(now);
            }
            if now >= self.identity_checked + IDENTITY_REFRESH {
                self.refresh_identity(now);
            }
            self.feed(now, SenderEvent::Tick);
            for _ in 0..self.announcing.due(now) {
                self.announce();
            }
            let next = (!self.sender.stopped()).then(|| self.sender.interval());
            if self.exit || status::refresh_due(now, self.status_written, next) {
                self.write_status(now);
            }
            if self.exit {
                log::info!("heartbeatd stopped");
                return Ok(());
            }
        }
    }

    fn write_status(&mut self, now: Instant) {
        self.status_written = now;
        let s = &mut self.status;
        s.stamp(daemon::wall_ms(), self.receiver.counters());
        s.state = if self.sender.stopped() {
            "stopped"
        } else {
            "sending"
        }
        .to_string();
        s.interval_ms = u64::try_from(self.sender.interval().as_millis()).ok();
        s.destinations = self
            .settings
            .bcast_ips
            .iter()
            .map(|d| SocketAddr::new(*d, self.settings.port).to_string())
            .collect();
        s.counters.sent = self.sender.heartbeats_sent();
        s.sends = s
            .destinations
            .iter()
            .filter_map(|d| d.parse::<SocketAddr>().ok())
            .filter_map(|d| self.sends.get(&d).cloned())
            .collect();
        self.status_file.write(&self.status);
    }

    fn feed(&mut self, now: Instant, event: SenderEvent) {
        for action in self.sender.handle(now, event) {
            match action {
                SenderAction::SendHeartbeat => self.send_all(now, Kind::Heartbeat),
                SenderAction::SendGoodbye => self.send_all(now, Kind::Goodbye),
                SenderAction::Announce => {
                    self.announce_list = self.addresses_to_announce();
                    self.announcing.start(now);
                    for _ in 0..self.announcing.due(now) {
                        self.announce();
                    }
                }
                SenderAction::Exit => self.exit = true,
            }
        }
    }

    fn identity_addrs(&self) -> Vec<IpAddr> {
        if self.settings.node_ips.is_empty() {
            self.identity.iter().map(|l| l.addr).collect()
        } else {
            self.settings.node_ips.clone()
        }
    }

    /// Every address on the interfaces heartbeats leave by (not only the identity: a service
    /// alias on the same interface moved too), and each address a `released` named that is on
    /// any of our interfaces. IPv6 link-local addresses never move and are left out.
    fn addresses_to_announce(&self) -> Vec<LocalAddr> {
        let all = match interfaces::local_addrs() {
            Ok(all) => all,
            Err(e) => {
                log::warn!("reading this host's addresses to announce them: {e}");
                return self.identity.clone();
            }
        };
        let ifaces: Vec<&str> = self.identity.iter().map(|l| l.iface.as_str()).collect();
        all.into_iter()
            .filter(|l| !l.addr.is_loopback() && !is_link_local(l.addr))
            .filter(|l| ifaces.contains(&l.iface.as_str()) || self.released.contains(&l.addr))
            .collect()
    }

    fn refresh_identity(&mut self, now: Instant) {
        self.identity_checked = now;
        let found = if self.settings.node_ips.is_empty() {
            interfaces::addrs_for_destinations(&self.settings.bcast_ips)
        } else {
            // The configured identity; the interfaces are still needed for announcements.
            interfaces::local_addrs().map(|all| {
                all.into_iter()
                    .filter(|l| self.settings.node_ips.contains(&l.addr))
                    .collect()
            })
        };
        match found {
            Ok(list) => {
                if list.is_empty() && self.settings.node_ips.is_empty() && self.identity.is_empty()
                {
                    log::warn!(
                        "no local address lies in the subnet of any FAILOVER_BCAST_IPS destination: \
                         heartbeats name no address until one appears (or set FAILOVER_NODE_IP)"
                    );
                }
                if list != self.identity {
                    if !self.identity.is_empty() || !list.is_empty() {
                        log::info!(
                            "identity: {}",
                            if list.is_empty() {
                                "none".to_string()
                            } else {
                                list.iter()
                                    .map(|l| format!("{} on {}", l.addr, l.iface))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        );
                    }
                    self.identity = list;
                }
            }
            Err(e) => log::warn!("reading this host's addresses: {e}"),
        }
        self.prepare_outgoing();
    }

    /// Fills in what every datagram carries (hostname, identity) and makes one reusable
    /// datagram per destination, on the socket of its family. Runs at start, at each identity
    /// look-up and on reload: the only times these change.
    fn prepare_outgoing(&mut self) {
        self.template.hostname.clone_from(&self.hostname);
        self.template.addrs = self
            .identity_addrs()
            .into_iter()
            .take(wire::MAX_ADDRS)
            .collect();
        let port = self.settings.port;
        // Without an IPv6 socket (see reload), IPv6 destinations go to the IPv4 one, which
        // fails and says so in the log.
        let has6 = self.socket6.is_some();
        (self.out4, self.out6) = self
            .settings
            .bcast_ips
            .iter()
            .map(|d| udp::Outgoing::new(SocketAddr::new(*d, port)))
            .partition(|out| !(has6 && out.to.is_ipv6()));
    }

    fn send_all(&mut self, now: Instant, kind: Kind) {
        // Nothing is allocated here: at a 10 ms interval this runs a hundred times a second.
        let d = &mut self.template;
        d.kind = kind;
        d.interval_ms = u32::try_from(self.sender.interval().as_millis()).unwrap_or(u32::MAX);
        d.time_ms = daemon::wall_ms();
        d.nonce = self.sender.echo(now);
        // One datagram per destination, each with its own sequence number, grouped by
        // socket so each family goes out in one system call.
        for out in self.out4.iter_mut().chain(self.out6.iter_mut()) {
            d.seq += 1;
            wire::encode_into(d, self.key.as_ref(), &mut out.buf);
        }
        udp::send_batch(&self.socket4, &mut self.out4);
        if let Some(s6) = &self.socket6 {
            udp::send_batch(s6, &mut self.out6);
        }
        let mut delivered = 0;
        for out in self.out4.iter_mut().chain(self.out6.iter_mut()) {
            let to = out.to;
            let stats = self.sends.entry(to).or_insert_with(|| SendStatus {
                to: to.to_string(),
                sent: 0,
                failed: 0,
                failing: false,
                last_error: None,
            });
            match out.error.take() {
                None => {
                    delivered += 1;
                    stats.sent = stats.sent.saturating_add(1);
                    stats.failing = false;
                    if !self.send_errors.is_empty() && self.send_errors.remove(&to).is_some() {
                        log::info!("sending to {to} works again");
                    }
                }
                Some(e) => {
                    stats.failed = stats.failed.saturating_add(1);
                    stats.failing = true;
                    stats.last_error = Some(e.to_string());
                    let due = self
                        .send_errors
                        .get(&to)
                        .is_none_or(|t| now >= *t + SEND_ERROR_LOG_GAP);
                    if due {
                        log::warn!("sending {} to {to}: {e}", kind.as_str());
                        self.send_errors.insert(to, now);
                    }
                }
            }
        }
        if kind == Kind::Goodbye {
            log::info!(
                "goodbye sent to {delivered} of {} destinations",
                self.settings.bcast_ips.len()
            );
        }
    }

    fn announce(&mut self) {
        for local in &self.announce_list {
            match self.announcers.announce(&local.iface, local.addr) {
                Ok(()) => log::debug!("announced {} on {}", local.addr, local.iface),
                // The announcer's error names the address and the interface.
                Err(e) => log::warn!("{e}"),
            }
        }
    }

    fn read_replies(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        for v6 in [false, true] {
            // Bounded: a flood of junk cannot hold up the next heartbeat.
            for _ in 0..256 {
                let socket = if v6 {
                    match &self.socket6 {
                        Some(s) => s,
                        None => break,
                    }
                } else {
                    &self.socket4
                };
                match socket.recv_from(&mut buf) {
                    Ok((n, src)) => {
                        let data = buf.get(..n).unwrap_or(&[]);
                        match self
                            .receiver
                            .receive(data, src.ip(), now, daemon::wall_ms())
                        {
                            Ok(Incoming::Released { addrs }) => {
                                log::info!(
                                    "{src} released {}: announcing our addresses",
                                    addrs
                                        .iter()
                                        .map(|a| a.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                );
                                self.released = addrs;
                                self.feed(now, SenderEvent::Released);
                            }
                            Ok(Incoming::Challenge { nonce }) => {
                                log::debug!("challenged by {src}: answering");
                                self.feed(now, SenderEvent::Challenged { nonce });
                            }
                            Ok(_) => {}
                            Err(e) => log::debug!("dropped a datagram from {src}: {e:?}"),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("receiving: {e}");
                        break;
                    }
                }
            }
        }
    }

    fn handle_signals(&mut self, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            match sig {
                SIGHUP => self.reload(now),
                SIGTERM | SIGINT => {
                    log::info!("signal {sig}: saying goodbye");
                    self.feed(now, SenderEvent::Shutdown);
                }
                _ => {}
            }
        }
    }

    fn reload(&mut self, now: Instant) {
        let Some((settings, key)) = daemon::reload(&self.config_path, Role::Heartbeatd) else {
            return;
        };
        if settings.bcast_ips.iter().any(IpAddr::is_ipv6) && self.socket6.is_none() {
            log::warn!("SIGHUP: IPv6 destinations need a restart of heartbeatd");
        }
        self.receiver.set_key(key.clone());
        self.key = key;
        let interval = settings.interval;
        self.settings = settings;
        self.refresh_identity(now);
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
        self.feed(now, SenderEvent::Reconfigure { interval });
    }
}
