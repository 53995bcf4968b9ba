//! heartbeatd as a driver of the runtime: the sender's core, the datagrams it sends and the
//! answers it reads, its identity, the announcements of its own addresses, the service
//! addresses it adds and removes by agreement with failoverd (docs/handover.md), and its
//! status.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover::receive::{Counters, Incoming, Receiver};
use ipfailover::sender::{Sender, SenderAction, SenderConfig, SenderEvent, SenderNotice};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::{DaemonState, SendStatus, ServiceAddressStatus, ServiceState};
use ipfailover::wire::{self, Datagram, Entry, Key, Kind, Role as WireRole, Signer};
use ipfailover_os::addrs::{self, ResolvedPair};
use ipfailover_os::daemon;
use ipfailover_os::event;
use ipfailover_os::interfaces::{self, LocalAddr};
use ipfailover_os::journal::{self, Fields};
use ipfailover_os::udp;
use ipfailover_runtime::{mac_text, Driver, Missing, RoundId, Runtime, StartError};
use log::Level;

/// IPv6 link-local (fe80::/10): never moved, never announced.
fn is_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// How often the identity (this host's addresses on the heartbeat subnets) is looked up again
/// (and at once on SIGHUP): addresses rarely change, and each look-up is a netlink dump.
const IDENTITY_REFRESH: Duration = Duration::from_secs(30);

/// How often the links' state is looked up (and with it whether heartbeats say that this
/// host answers for an address): every interval, but not more often than this.
const LINK_CHECK_MIN: Duration = Duration::from_millis(100);

/// A send error on a destination is logged again only after this long (a link that is down
/// would otherwise fill the log at every interval).
const SEND_ERROR_LOG_GAP: Duration = Duration::from_secs(60);

/// What heartbeatd is on top of the runtime.
#[derive(Debug)]
pub(crate) struct Heartbeatd {
    config_path: PathBuf,
    settings: Settings,
    sender: Sender,
    receiver: Receiver,
    key: Option<Key>,
    /// What heartbeats are signed with: during a rotation, the key failoverd was last heard
    /// using (docs/configuration.md).
    signer: Signer,
    hostname: String,
    /// This host's addresses that identify it in heartbeats, with their interfaces.
    identity: Vec<LocalAddr>,
    /// Identity addresses that vanished (deleted by hand, a NIC gone): still named, without
    /// saying we answer for them, so that failoverd still knows who we are and sees that we
    /// cannot serve them.
    past_identity: Vec<IpAddr>,
    identity_checked: Instant,
    /// What every datagram carries; kind, interval, sequence (counting every datagram sent)
    /// and time are set at each send.
    template: Datagram,
    /// One reusable datagram per destination, by socket family.
    out4: Vec<udp::Outgoing>,
    out6: Vec<udp::Outgoing>,
    /// Addresses the secondary said it released, to announce with the rest.
    released: Vec<IpAddr>,
    /// The service addresses (`FAILOVER_IP_PAIRS`), resolved.
    aliases: Vec<ResolvedPair>,
    /// Each interface's link: up (carrier) or not, every address on each, and its MAC, as
    /// last looked up.
    links: HashMap<String, bool>,
    present: Vec<(String, IpAddr)>,
    macs: HashMap<String, [u8; 6]>,
    links_checked: Instant,
    /// Service addresses whose interface link was down at the last look.
    aliases_down: Vec<IpAddr>,
    /// What the heartbeats say of the addresses changed: the template is rebuilt.
    entries_dirty: bool,
    /// When a send error on a destination was last logged.
    send_errors: HashMap<SocketAddr, Instant>,
    /// Per destination: datagrams sent, failed, and the latest failure.
    sends: HashMap<SocketAddr, SendStatus>,
}

impl Heartbeatd {
    /// Opens the sockets and works out this host's identity.
    pub fn start(
        settings: Settings,
        config_path: PathBuf,
    ) -> Result<(Heartbeatd, Runtime), StartError> {
        let mut rt = Runtime::start("heartbeatd", &settings.state_dir)?;
        let key = daemon::load_key(&settings)
            .map_err(|e| StartError::config(format!("FAILOVER_SECRET_FILE: {e}")))?;
        rt.udp
            .open_sender(settings.bcast_ips.iter().any(IpAddr::is_ipv6))?;
        let aliases = resolve_aliases(&settings).map_err(StartError::config)?;
        let mut held = Vec::new();
        if !aliases.is_empty() {
            rt.addresses.open()?;
            rt.addresses.set(aliases.clone());
            // One left on its interface by a previous run (killed, or its host cut off) may be
            // failoverd's by now: removed, and waited for like the others.
            for p in &aliases {
                match rt.addresses.holds_now(p) {
                    Ok(true) => {
                        if let Err(e) = rt.addresses.remove_unlogged(p) {
                            return Err(StartError::other(&format!("removing {}", p.addr), e));
                        }
                        held.push(p.addr);
                    }
                    Ok(false) => {}
                    Err(e) => return Err(StartError::other(&format!("reading {}", p.iface), e)),
                }
            }
            for e in rt.conflicts.watch(&watched(&aliases)) {
                log::warn!("{e}: heartbeatd cannot check whether another host answers for it");
            }
            rt.addresses
                .follow("a service address removed by hand is not added again")?;
        }
        let now = ipfailover_os::clock::now();
        let hostname = rt.hostname().to_string();
        let config = sender_config(&settings, &aliases);
        let mut hb = Heartbeatd {
            receiver: Receiver::new(key.clone(), None),
            sender: Sender::new(now, config, daemon::random_u64()),
            config_path,
            settings,
            signer: Signer::new(key.clone()),
            key,
            hostname,
            identity: Vec::new(),
            past_identity: Vec::new(),
            identity_checked: now,
            template: Datagram {
                boot_id: daemon::random_boot_id(),
                ..Datagram::new(Kind::Heartbeat)
            },
            out4: Vec::new(),
            out6: Vec::new(),
            released: Vec::new(),
            aliases,
            links: HashMap::new(),
            present: Vec::new(),
            macs: HashMap::new(),
            links_checked: now,
            aliases_down: Vec::new(),
            entries_dirty: true,
            send_errors: HashMap::new(),
            sends: HashMap::new(),
        };
        if !held.is_empty() {
            log::warn!(
                "{} was on its interface at start, left by a previous run: removed until \
                 failoverd says it holds none of it",
                list(&held)
            );
        }
        if !hb.sender.waiting_aliases().is_empty() {
            log::info!(
                "waiting for failoverd to say it holds none of {} before adding them",
                list(&hb.sender.waiting_aliases())
            );
        }
        hb.refresh_identity(&rt, now);
        log::info!(
            "heartbeatd {} sending every {} to {} (UDP {}) as {} [{}]; {}",
            env!("CARGO_PKG_VERSION"),
            ipfailover::settings::format_duration(hb.settings.interval),
            hb.settings
                .bcast_ips
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            hb.settings.port,
            hb.hostname,
            hb.identity_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            if hb.key.is_some() {
                "authenticated"
            } else {
                "NOT authenticated"
            }
        );
        Ok((hb, rt))
    }

    fn feed(&mut self, rt: &mut Runtime, now: Instant, event: SenderEvent) {
        if event != SenderEvent::Tick {
            self.entries_dirty = true;
        }
        let mut queue = std::collections::VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            for action in self.sender.handle(now, event) {
                match action {
                    SenderAction::SendHeartbeat => self.send_all(rt, now, Kind::Heartbeat),
                    SenderAction::SendGoodbye => self.send_all(rt, now, Kind::Goodbye),
                    SenderAction::Announce => {
                        let targets = self
                            .addresses_to_announce()
                            .into_iter()
                            .map(|l| (l.iface, l.addr))
                            .collect();
                        rt.announce(RoundId::Own, now, targets, None);
                    }
                    SenderAction::AnnounceAddrs(addrs) => {
                        for p in self.aliases.iter().filter(|p| addrs.contains(&p.addr)) {
                            rt.announce(
                                RoundId::Address(p.addr),
                                now,
                                vec![(p.iface.clone(), p.addr)],
                                None,
                            );
                        }
                    }
                    SenderAction::AddAliases(addrs) => {
                        self.entries_dirty = true;
                        let mut failed = Vec::new();
                        for addr in addrs {
                            if let Some(o) = rt.addresses.add(addr) {
                                if o.result.is_err() {
                                    failed.push(addr);
                                }
                            }
                        }
                        queue.push_back(SenderEvent::AliasesAdded { failed });
                    }
                    SenderAction::RemoveAliases(addrs) => {
                        self.entries_dirty = true;
                        for addr in &addrs {
                            rt.announcements.stop(RoundId::Address(*addr));
                            rt.addresses.remove(*addr);
                        }
                        queue.push_back(SenderEvent::AliasesRemoved);
                    }
                    SenderAction::Probe(_) => rt.conflicts.probe(),
                    SenderAction::Notify(n) => self.notify(&n),
                    SenderAction::Exit => rt.exit(),
                }
            }
        }
    }

    /// What heartbeatd tells the administrator: its log.
    fn notify(&self, notice: &SenderNotice) {
        match notice {
            SenderNotice::Waiting(addrs) => log::info!(
                "waiting for failoverd to say it holds none of {} before adding them",
                list(addrs)
            ),
            SenderNotice::Confirmed(addrs) => {
                log::info!("failoverd holds none of {}: adding them", list(addrs))
            }
            SenderNotice::Unanswered(addrs) => log::warn!(
                "failoverd said nothing for {} and nobody answers for {}: adding them",
                ipfailover::settings::format_duration(self.sender.silence()),
                list(addrs)
            ),
            SenderNotice::StillAnswers(addr, mac) => log::warn!(
                "failoverd said nothing, but {addr} answers from {}: not adding it while it does \
                 (is failoverd on the secondary stopped while its host holds it?)",
                mac_text(mac)
            ),
            SenderNotice::Yielding(addrs, manual) => event!(
                Level::Warn,
                journal::Event::Drained,
                Fields {
                    address: Some(&list(addrs)),
                    reason: Some(if *manual { "manual" } else { "handover-failed" }),
                    ..Fields::default()
                },
                "giving {} up: failoverd {}",
                list(addrs),
                if *manual {
                    "holds it by an administrator's command (failoverctl release on the \
                     secondary gives it back)"
                } else {
                    "found that nobody could reach it here, and takes it back"
                }
            ),
            SenderNotice::Missing(addr) => event!(
                Level::Warn,
                journal::Event::AddressLost,
                Fields {
                    address: Some(&addr.to_string()),
                    ..Fields::default()
                },
                "{addr} vanished from its interface while held: adding it again"
            ),
        }
    }

    /// Looks at the links (carrier) and the addresses of this host: what the heartbeats say
    /// this host answers for follows them (an address deleted by hand, a link gone down).
    /// Returns the service addresses whose link is down when that set changed: they cannot be
    /// served here, so heartbeatd gives them up (failoverd takes them).
    fn check_links(&mut self, now: Instant) -> Option<Vec<IpAddr>> {
        let every = self.sender.interval().max(LINK_CHECK_MIN);
        if now < self.links_checked + every && !self.links.is_empty() {
            return None;
        }
        self.links_checked = now;
        match interfaces::links_and_addrs() {
            Ok((links, mut present)) => {
                for (iface, up) in &links {
                    if self.links.get(iface) != Some(up) {
                        self.entries_dirty = true;
                        if self.links.contains_key(iface) {
                            log::info!(
                                "link {iface} is {}",
                                if *up {
                                    "up"
                                } else {
                                    "down: its addresses do not answer"
                                }
                            );
                        }
                    }
                }
                present.sort();
                if present != self.present {
                    self.entries_dirty = true;
                    self.present = present;
                }
                self.links = links;
                let down: Vec<IpAddr> = self
                    .aliases
                    .iter()
                    .filter(|p| self.links.get(&p.iface) == Some(&false))
                    .map(|p| p.addr)
                    .collect();
                if down != self.aliases_down {
                    for p in self.aliases.iter().filter(|p| down.contains(&p.addr)) {
                        if !self.aliases_down.contains(&p.addr) {
                            log::warn!(
                                "{} cannot be served here: link {} is down; giving it up",
                                p.addr,
                                p.iface
                            );
                        }
                    }
                    self.aliases_down = down.clone();
                    return Some(down);
                }
            }
            Err(e) => log::debug!("reading the links' state: {e}"),
        }
        None
    }

    /// What every heartbeat says of this host's addresses: its identity (held while it is on
    /// an interface whose link is up), the service addresses (held, wanted), and the other
    /// addresses on the heartbeat interfaces; at most [`wire::MAX_ADDRS`] go out, the rest is
    /// flagged as cut.
    fn entries(&mut self) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        // On an interface whose link is up, as last looked up (held, by default, until the
        // first look).
        let answers = |this: &Self, addr: IpAddr| -> Option<String> {
            if this.present.is_empty() {
                return this
                    .identity
                    .iter()
                    .find(|l| l.addr == addr)
                    .map(|l| l.iface.clone())
                    .or_else(|| {
                        this.aliases
                            .iter()
                            .find(|p| p.addr == addr)
                            .map(|p| p.iface.clone())
                    });
            }
            this.present
                .iter()
                .find(|(iface, a)| *a == addr && this.links.get(iface).copied().unwrap_or(true))
                .map(|(iface, _)| iface.clone())
        };
        for addr in self.identity_addrs() {
            let (role, mac) = match answers(self, addr) {
                Some(iface) => (WireRole::IDENTITY.with(WireRole::HOLDS), self.mac(&iface)),
                None => (WireRole::IDENTITY, [0; 6]),
            };
            out.push(Entry { addr, role, mac });
        }
        for (addr, role) in self.sender.alias_entries() {
            let mut role = role.with(WireRole::MANAGED);
            let mut mac = [0; 6];
            if role.has(WireRole::HOLDS) {
                match answers(self, addr) {
                    Some(iface) => mac = self.mac(&iface),
                    // Ours, but on a link that is down: it does not answer.
                    None => role = WireRole::MANAGED,
                }
            }
            out.push(Entry { addr, role, mac });
        }
        // Other addresses on the heartbeat interfaces (a service alias added by hand): held
        // while their link is up.
        let ifaces: Vec<String> = self.identity.iter().map(|l| l.iface.clone()).collect();
        for (iface, addr) in self.present.clone() {
            if addr.is_loopback()
                || is_link_local(addr)
                || !ifaces.contains(&iface)
                || out.iter().any(|e| e.addr == addr)
            {
                continue;
            }
            let (role, mac) = if self.links.get(&iface).copied().unwrap_or(true) {
                (WireRole::HOLDS, self.mac(&iface))
            } else {
                (WireRole::NONE, [0; 6])
            };
            out.push(Entry { addr, role, mac });
        }
        out
    }

    fn mac(&mut self, iface: &str) -> [u8; 6] {
        if let Some(m) = self.macs.get(iface) {
            return *m;
        }
        let m = interfaces::mac_address(iface).unwrap_or([0; 6]);
        self.macs.insert(iface.to_string(), m);
        m
    }

    fn identity_addrs(&self) -> Vec<IpAddr> {
        if self.settings.node_ips.is_empty() {
            let mut all: Vec<IpAddr> = self.identity.iter().map(|l| l.addr).collect();
            for a in &self.past_identity {
                if !all.contains(a) {
                    all.push(*a);
                }
            }
            all
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

    fn refresh_identity(&mut self, rt: &Runtime, now: Instant) {
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
                    for old in &self.identity {
                        if !list.iter().any(|l| l.addr == old.addr)
                            && !self.past_identity.contains(&old.addr)
                            && self.past_identity.len() < 4
                        {
                            self.past_identity.push(old.addr);
                        }
                    }
                    self.past_identity
                        .retain(|a| !list.iter().any(|l| l.addr == *a));
                    self.identity = list;
                }
            }
            Err(e) => log::warn!("reading this host's addresses: {e}"),
        }
        self.prepare_outgoing(rt);
    }

    /// Fills in what every datagram carries (hostname, identity) and makes one reusable
    /// datagram per destination, on the socket of its family. Runs at start, at each identity
    /// look-up and on reload: the only times these change.
    fn prepare_outgoing(&mut self, rt: &Runtime) {
        self.template.hostname.clone_from(&self.hostname);
        self.macs.clear();
        self.entries_dirty = true;
        let port = self.settings.port;
        // Without an IPv6 socket (see reload), IPv6 destinations go to the IPv4 one, which
        // fails and says so in the log.
        let has6 = rt.udp.has_v6();
        (self.out4, self.out6) = self
            .settings
            .bcast_ips
            .iter()
            .map(|d| udp::Outgoing::new(SocketAddr::new(*d, port)))
            .partition(|out| !(has6 && out.to.is_ipv6()));
    }

    fn send_all(&mut self, rt: &Runtime, now: Instant, kind: Kind) {
        // What the heartbeats say of the addresses is rebuilt only when it changed; otherwise
        // nothing is allocated here: at a 10 ms interval this runs a hundred times a second.
        if self.entries_dirty {
            self.entries_dirty = false;
            self.template.entries = self.entries();
        }
        let d = &mut self.template;
        d.kind = kind;
        d.token = self.sender.token();
        d.ack = self.sender.ack();
        d.state = if kind == Kind::Goodbye && self.sender.stays_up() {
            wire::STATE_STAYS_UP
        } else {
            0
        };
        d.interval_ms = u32::try_from(self.sender.interval().as_millis()).unwrap_or(u32::MAX);
        d.time_ms = daemon::wall_ms();
        d.nonce = self.sender.echo(now);
        // One datagram per destination, each with its own sequence number, grouped by
        // socket so each family goes out in one system call.
        for out in self.out4.iter_mut().chain(self.out6.iter_mut()) {
            d.seq += 1;
            wire::encode_into(d, self.signer.key(), &mut out.buf);
        }
        rt.udp.send_batch(&mut self.out4, &mut self.out6);
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

    fn reload(&mut self, rt: &mut Runtime, now: Instant) {
        let Some((settings, key)) = daemon::reload(&self.config_path, Role::Heartbeatd) else {
            return;
        };
        if settings.bcast_ips.iter().any(IpAddr::is_ipv6) && !rt.udp.has_v6() {
            log::warn!("SIGHUP: IPv6 destinations need a restart of heartbeatd");
        }
        let aliases = match resolve_aliases(&settings) {
            Ok(a) => a,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the old configuration");
                return;
            }
        };
        self.receiver.set_key(key.clone());
        self.signer = Signer::new(key.clone());
        self.key = key;
        if aliases != self.aliases {
            if !aliases.is_empty() {
                if let Err(e) = rt.addresses.open() {
                    log::error!("SIGHUP: {}; service addresses are not managed", e.message);
                }
            }
            // What stays keeps its state; new ones start not held; dropped ones are removed
            // by the sender first, so the runtime keeps them until then.
            let mut all = aliases.clone();
            for old in &self.aliases {
                if !all.iter().any(|p| p.addr == old.addr) {
                    all.push(old.clone());
                }
            }
            let held: Vec<IpAddr> = self.sender.held_aliases();
            rt.addresses.set(all.clone());
            for a in held {
                rt.addresses.mark_held(a, true);
            }
            for e in rt.conflicts.watch(&watched(&all)) {
                log::warn!("{e}");
            }
            self.aliases = all;
        }
        let config = sender_config(&settings, &aliases);
        self.settings = settings;
        self.past_identity.clear();
        self.refresh_identity(rt, now);
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
        self.feed(rt, now, SenderEvent::Reconfigure(config));
    }
}

impl Driver for Heartbeatd {
    fn next_deadline(&self) -> Option<Instant> {
        self.sender.next_deadline()
    }

    fn expected_wake(&self, _now: Instant) -> Option<Duration> {
        (!self.sender.stopped()).then(|| self.sender.interval())
    }

    fn received(&self) -> Option<&Counters> {
        Some(self.receiver.counters())
    }

    fn handle_datagram(&mut self, rt: &mut Runtime, now: Instant, data: &[u8], src: SocketAddr) {
        let received = self
            .receiver
            .receive(data, src.ip(), now, daemon::wall_ms());
        if received.is_ok() {
            // failoverd's key: what heartbeats are signed with during a rotation.
            self.signer.heard(data);
        }
        match received {
            Ok(Incoming::Released { id, token, entries }) => {
                let free: Vec<IpAddr> = entries
                    .iter()
                    .filter(|e| e.role == WireRole::NONE)
                    .map(|e| e.addr)
                    .collect();
                if id != 0 && id != self.sender.ack() {
                    log::info!("{src} released {}: announcing our addresses", list(&free));
                } else {
                    log::debug!("report from {src}: holds none of {}", list(&free));
                }
                self.released = free;
                self.feed(rt, now, SenderEvent::Report { id, token, entries });
            }
            Ok(Incoming::Challenge { nonce }) => {
                log::debug!("challenged by {src}: answering");
                self.feed(rt, now, SenderEvent::Challenged { nonce });
            }
            Ok(_) => {}
            Err(e) => log::debug!("dropped a datagram from {src}: {e:?}"),
        }
    }

    fn handle_reload(&mut self, rt: &mut Runtime, now: Instant) {
        self.reload(rt, now);
    }

    fn handle_probe_answer(&mut self, rt: &mut Runtime, now: Instant, addr: IpAddr, mac: [u8; 6]) {
        self.feed(rt, now, SenderEvent::ProbeAnswer { addr, mac });
    }

    fn handle_addresses_missing(&mut self, rt: &mut Runtime, now: Instant, missing: Vec<Missing>) {
        for m in missing {
            self.feed(rt, now, SenderEvent::AliasMissing { addr: m.addr });
        }
    }

    fn handle_stop(&mut self, rt: &mut Runtime, now: Instant, signal: i32, count: u32) {
        if count > 1 {
            log::warn!("second stop signal: removing the service addresses and exiting at once");
            for p in self.sender.held_aliases() {
                rt.addresses.remove(p);
            }
            rt.exit();
            return;
        }
        let stays_up = !daemon::host_going_down();
        if self.aliases.is_empty() {
            log::info!("signal {signal}: saying goodbye");
        } else {
            log::info!("signal {signal}: removing the service addresses, then saying goodbye");
        }
        log::info!(
            "{}",
            if stays_up {
                "the goodbye says only heartbeatd stops: the host's own addresses stay here"
            } else {
                "the goodbye says the host is going down"
            }
        );
        self.feed(rt, now, SenderEvent::Shutdown { stays_up });
    }

    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant) {
        if now >= self.identity_checked + IDENTITY_REFRESH {
            self.refresh_identity(rt, now);
        }
        if let Some(addrs) = self.check_links(now) {
            self.feed(rt, now, SenderEvent::LinksDown { addrs });
        }
        self.feed(rt, now, SenderEvent::Tick);
    }

    fn fill_status(&mut self, rt: &mut Runtime, _now: Instant) {
        let s = rt.status.get_mut();
        s.state = if self.sender.stopped() {
            DaemonState::Stopped
        } else {
            DaemonState::Sending
        };
        s.interval_ms = u64::try_from(self.sender.interval().as_millis()).ok();
        s.destinations = self
            .settings
            .bcast_ips
            .iter()
            .map(|d| SocketAddr::new(*d, self.settings.port).to_string())
            .collect();
        s.counters.sent = self.sender.heartbeats_sent();
        let held = self.sender.held_aliases();
        let waiting = self.sender.waiting_aliases();
        s.service_addresses = self
            .aliases
            .iter()
            .filter(|p| self.settings.ip_pairs.iter().any(|a| a.addr == p.addr))
            .map(|p| ServiceAddressStatus {
                interface: p.iface.clone(),
                address: p.addr.to_string(),
                prefix: p.prefix,
                state: if held.contains(&p.addr) {
                    ServiceState::Held
                } else if waiting.contains(&p.addr) {
                    ServiceState::Waiting
                } else {
                    ServiceState::Changing
                },
                error: rt
                    .addresses
                    .get(p.addr)
                    .and_then(|e| e.error())
                    .map(str::to_string),
            })
            .collect();
        s.sends = s
            .destinations
            .iter()
            .filter_map(|d| d.parse::<SocketAddr>().ok())
            .filter_map(|d| self.sends.get(&d).cloned())
            .collect();
    }
}

/// The service addresses of `FAILOVER_IP_PAIRS`, their interfaces checked.
fn resolve_aliases(settings: &Settings) -> Result<Vec<ResolvedPair>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in &settings.ip_pairs {
        match addrs::resolve_as(p, "FAILOVER_IP_PAIRS") {
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

fn sender_config(settings: &Settings, aliases: &[ResolvedPair]) -> SenderConfig {
    SenderConfig {
        interval: settings.interval,
        aliases: aliases.iter().map(|p| p.addr).collect(),
        announce_refresh: settings.announce_refresh,
    }
}

/// What the conflict watch watches: each service address on its interface.
fn watched(pairs: &[ResolvedPair]) -> Vec<(String, IpAddr)> {
    pairs.iter().map(|p| (p.iface.clone(), p.addr)).collect()
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
