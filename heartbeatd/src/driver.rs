//! heartbeatd as a driver of the runtime: the sender's core, the datagrams it sends and the
//! answers it reads, its identity, the announcements of its own addresses, and its status.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover::receive::{Counters, Incoming, Receiver};
use ipfailover::sender::{Sender, SenderAction, SenderEvent};
use ipfailover::settings::{Role, Settings};
use ipfailover::status::SendStatus;
use ipfailover::wire::{self, Datagram, Key, Kind};
use ipfailover_os::daemon;
use ipfailover_os::interfaces::{self, LocalAddr};
use ipfailover_os::udp;
use ipfailover_runtime::{Driver, RoundId, Runtime, StartError};

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

/// What heartbeatd is on top of the runtime.
#[derive(Debug)]
pub(crate) struct Heartbeatd {
    config_path: PathBuf,
    settings: Settings,
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
    /// Addresses the secondary said it released, to announce with the rest.
    released: Vec<IpAddr>,
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
        let now = Instant::now();
        let hostname = rt.hostname().to_string();
        let mut hb = Heartbeatd {
            receiver: Receiver::new(key.clone(), None),
            sender: Sender::new(now, settings.interval),
            config_path,
            settings,
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
            released: Vec::new(),
            send_errors: HashMap::new(),
            sends: HashMap::new(),
        };
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
                SenderAction::Exit => rt.exit(),
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
        self.template.addrs = self
            .identity_addrs()
            .into_iter()
            .take(wire::MAX_ADDRS)
            .collect();
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
        self.receiver.set_key(key.clone());
        self.key = key;
        let interval = settings.interval;
        self.settings = settings;
        self.refresh_identity(rt, now);
        log::info!(
            "SIGHUP: configuration reloaded from {}",
            self.config_path.display()
        );
        self.feed(rt, now, SenderEvent::Reconfigure { interval });
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
                self.feed(rt, now, SenderEvent::Released);
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

    fn handle_stop(&mut self, rt: &mut Runtime, now: Instant, signal: i32, _count: u32) {
        log::info!("signal {signal}: saying goodbye");
        self.feed(rt, now, SenderEvent::Shutdown);
    }

    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant) {
        if now >= self.identity_checked + IDENTITY_REFRESH {
            self.refresh_identity(rt, now);
        }
        self.feed(rt, now, SenderEvent::Tick);
    }

    fn fill_status(&mut self, rt: &mut Runtime, _now: Instant) {
        let s = rt.status.get_mut();
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
    }
}
