//! The pair: heartbeatd's core ([`Sender`](ipfailover::sender::Sender)) on the primary and
//! failoverd's core ([`Failover`](ipfailover::failover::Failover)) on the secondary, each
//! behind a few lines that do what its driver does (`heartbeatd/src/driver.rs`,
//! `failoverd/src/pair.rs`), two links that lose, delay, duplicate and reorder datagrams, a
//! LAN that answers probes for whichever host has the address on an up link, and the faults
//! and commands of [`Fault`]. Time passes only by [`PairEvent::Advance`]: to the next instant
//! at which anything is due.
//!
//! What is abstracted, and why, is in docs/hardening.md ("The model checker").

mod props;
mod world;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipfailover::wire::Key;

use crate::check::Model;
pub use props::Bounds;
pub use world::World;

/// The primary's own address: `FAILOVER_PEER_IP`, its source on the public link.
pub const PUB: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
/// The primary's address on the private link.
pub const PRIV: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
/// The secondary's addresses, its sources.
pub const S_PUB: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
/// The secondary's address on the private link.
pub const S_PRIV: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20));
/// The service address heartbeatd manages (`FAILOVER_IP_PAIRS`).
pub const ALIAS: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100));
/// The primary's MAC on the public link.
pub const P_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
/// The secondary's.
pub const S_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];

/// Which of the primary's addresses the secondary takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addrs {
    /// Its own address only (`FAILOVER_PEER_IP_PAIRS` names `FAILOVER_PEER_IP`).
    Own,
    /// A service address heartbeatd manages.
    Alias,
    /// Both.
    Both,
}

impl Addrs {
    /// The addresses, in `FAILOVER_PEER_IP_PAIRS` order.
    pub fn list(self) -> Vec<IpAddr> {
        match self {
            Addrs::Own => vec![PUB],
            Addrs::Alias => vec![ALIAS],
            Addrs::Both => vec![PUB, ALIAS],
        }
    }

    /// Whether heartbeatd manages the service address.
    pub fn alias(self) -> bool {
        matches!(self, Addrs::Alias | Addrs::Both)
    }
}

/// A bug planted on purpose, to show that the checker finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// None: the cores as they are.
    None,
    /// failoverd's shell removes released addresses only after the `PostRel` hooks, while the
    /// core has already told the primary (`released`) that they are gone: the rule "the side
    /// that gives an address up removes it first" dropped.
    RemoveAfterReport,
}

/// The kinds of fault the search may inject (each counts against [`PairConfig::faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Faults {
    /// Lose, delay or duplicate one datagram or ARP answer in flight.
    pub network: bool,
    /// Drop the primary's UDP at the secondary, on both links (a firewall), or stop doing so.
    pub firewall: bool,
    /// A host crashes (its kernel stops answering), or boots (its daemon starts with it).
    pub hosts: bool,
    /// A daemon is killed, started, or stopped with SIGTERM (heartbeatd's goodbye says that
    /// the host stays up, or that it goes down).
    pub daemons: bool,
    /// A daemon is stopped (SIGSTOP) or continued.
    pub stalls: bool,
    /// A link goes down or up: the primary's public or private one, the secondary's public one.
    pub links: bool,
    /// `failoverctl pause`, `resume`, `release [--force]`, `takeover [--force]`.
    pub commands: bool,
    /// The next `Test` hook refuses.
    pub hooks: bool,
}

impl Faults {
    /// Every kind.
    pub const ALL: Faults = Faults {
        network: true,
        firewall: true,
        hosts: true,
        daemons: true,
        stalls: true,
        links: true,
        commands: true,
        hooks: true,
    };
    /// None.
    pub const NONE: Faults = Faults {
        network: false,
        firewall: false,
        hosts: false,
        daemons: false,
        stalls: false,
        links: false,
        commands: false,
        hooks: false,
    };
}

/// Where the search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Start {
    /// Both hosts boot at the same instant.
    Cold,
    /// The pair has run for a second: the primary holds, the secondary watches.
    Settled,
    /// The primary's host crashed and the secondary has taken over.
    TakenOver,
}

/// The model's settings: the daemons', the network's, and the search's.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// What is taken over.
    pub addrs: Addrs,
    /// `FAILOVER_INTERVAL` of heartbeatd.
    pub interval: Duration,
    /// `FAILOVER_TIMEOUT` of failoverd.
    pub timeout: Duration,
    /// `FAILOVER_CONFLICT_GRACE`.
    pub conflict_grace: Duration,
    /// `FAILOVER_FENCE_AFTER`.
    pub fence_after: Duration,
    /// How long each hook phase takes (0: no hooks, the phase is done in the same turn).
    pub hook_time: Duration,
    /// One way through a link, and an ARP answer's round trip.
    pub one_way: Duration,
    /// How much later a delayed datagram arrives (a fault).
    pub delay: Duration,
    /// How long a host takes to shut down after its heartbeatd said goodbye.
    pub shutdown_time: Duration,
    /// `Fence` powers the primary off (exit 0); otherwise it fails.
    pub fence_kills: bool,
    /// How far past the start the search looks.
    pub horizon: Duration,
    /// How many faults a run may have after the start.
    pub faults: u8,
    /// Which kinds.
    pub kinds: Faults,
    /// Where the search starts.
    pub starts: Vec<Start>,
    /// A bug planted on purpose.
    pub mutation: Mutation,
}

impl PairConfig {
    /// A pair with a 100 ms interval and the timeout of three missed heartbeats (325 ms), a
    /// conflict grace of 600 ms, hooks of 5 ms, links of 1 ms; two faults of every kind in a
    /// horizon of 1.5 s after the pair has settled.
    pub fn new(addrs: Addrs) -> PairConfig {
        let interval = Duration::from_millis(100);
        PairConfig {
            addrs,
            interval,
            timeout: interval * 13 / 4,
            conflict_grace: Duration::from_millis(600),
            fence_after: Duration::from_millis(900),
            hook_time: Duration::from_millis(5),
            one_way: Duration::from_millis(1),
            delay: Duration::from_millis(150),
            shutdown_time: Duration::from_millis(200),
            fence_kills: true,
            horizon: Duration::from_millis(1500),
            faults: 2,
            kinds: Faults::ALL,
            starts: vec![Start::Settled],
            mutation: Mutation::None,
        }
    }
}

/// An administrator's command on the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// `failoverctl pause`.
    Pause,
    /// `failoverctl resume`.
    Resume,
    /// `failoverctl release [--force]`.
    Release {
        /// `--force`.
        force: bool,
    },
    /// `failoverctl takeover [--force]`.
    Takeover {
        /// `--force`.
        force: bool,
    },
}

/// One of the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The primary: heartbeatd.
    P,
    /// The secondary: failoverd.
    S,
}

/// A network interface whose link can go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nic {
    /// The primary's on the public link (its own address, and the service address).
    PPub,
    /// The primary's on the private link.
    PPriv,
    /// The secondary's on the public link.
    SPub,
}

/// What the search injects: each counts against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// This datagram or ARP answer is lost.
    Lose(u32),
    /// It arrives [`PairConfig::delay`] later (and after those sent behind it).
    Delay(u32),
    /// It arrives twice.
    Dup(u32),
    /// The secondary's firewall drops the primary's UDP on both links (on), or stops (off).
    Firewall(bool),
    /// A host crashes (false) or boots (true), its daemon with it.
    Host(Side, bool),
    /// The daemon is killed (SIGKILL).
    Kill(Side),
    /// The daemon is started.
    Start(Side),
    /// SIGTERM; for heartbeatd, whether its goodbye says that the host stays up.
    Stop(Side, bool),
    /// SIGSTOP.
    Stall(Side),
    /// SIGCONT.
    Cont(Side),
    /// A link goes up (true) or down.
    Link(Nic, bool),
    /// A command on the secondary.
    Command(Cmd),
    /// The next `Test` hook refuses.
    RefuseTest,
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairEvent {
    /// Time passes to the next instant something is due, and everything due then happens.
    Advance,
    /// A fault or a command, at the current instant.
    Fault(Fault),
    /// The end of a start's prefix: from here, this many faults within this horizon.
    Begin {
        /// Faults allowed.
        faults: u8,
        /// The horizon, in ms from now.
        horizon_ms: u64,
    },
}

impl fmt::Display for PairEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairEvent::Advance => f.write_str("advance"),
            PairEvent::Begin { faults, horizon_ms } => {
                write!(f, "begin: {faults} faults within {horizon_ms} ms")
            }
            PairEvent::Fault(x) => match x {
                Fault::Lose(id) => write!(f, "lose #{id}"),
                Fault::Delay(id) => write!(f, "delay #{id}"),
                Fault::Dup(id) => write!(f, "duplicate #{id}"),
                Fault::Firewall(on) => write!(
                    f,
                    "firewall {}",
                    if *on {
                        "drops the primary's UDP"
                    } else {
                        "off"
                    }
                ),
                Fault::Host(side, up) => write!(
                    f,
                    "host {} {}",
                    name(*side),
                    if *up { "boots" } else { "crashes" }
                ),
                Fault::Kill(side) => write!(f, "SIGKILL {}", daemon(*side)),
                Fault::Start(side) => write!(f, "start {}", daemon(*side)),
                Fault::Stop(side, stays_up) => write!(
                    f,
                    "SIGTERM {}{}",
                    daemon(*side),
                    match (side, stays_up) {
                        (Side::P, true) => " (the host stays up)",
                        (Side::P, false) => " (the host goes down)",
                        _ => "",
                    }
                ),
                Fault::Stall(side) => write!(f, "SIGSTOP {}", daemon(*side)),
                Fault::Cont(side) => write!(f, "SIGCONT {}", daemon(*side)),
                Fault::Link(nic, up) => write!(
                    f,
                    "link {} {}",
                    match nic {
                        Nic::PPub => "primary public",
                        Nic::PPriv => "primary private",
                        Nic::SPub => "secondary public",
                    },
                    if *up { "up" } else { "down" }
                ),
                Fault::Command(c) => write!(
                    f,
                    "failoverctl {}",
                    match c {
                        Cmd::Pause => "pause",
                        Cmd::Resume => "resume",
                        Cmd::Release { force: false } => "release",
                        Cmd::Release { force: true } => "release --force",
                        Cmd::Takeover { force: false } => "takeover",
                        Cmd::Takeover { force: true } => "takeover --force",
                    }
                ),
                Fault::RefuseTest => f.write_str("the next Test hook refuses"),
            },
        }
    }
}

fn name(side: Side) -> &'static str {
    match side {
        Side::P => "primary",
        Side::S => "secondary",
    }
}

fn daemon(side: Side) -> &'static str {
    match side {
        Side::P => "heartbeatd",
        Side::S => "failoverd",
    }
}

/// A step of a scripted run ([`PairModel::script`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let this much virtual time pass.
    Wait(Duration),
    /// Inject this fault now.
    Do(Fault),
}

/// The pair as a [`Model`].
#[derive(Debug, Clone)]
pub struct PairModel {
    /// The settings.
    pub config: PairConfig,
    key: Key,
    base: Instant,
}

impl PairModel {
    /// A model of `config`.
    pub fn new(config: PairConfig) -> PairModel {
        PairModel {
            config,
            key: Key::new(b"the pair's model secret, 32 byte".to_vec()),
            // Far from the process's own start: no instant of a run goes below it.
            base: Instant::now() + Duration::from_secs(3600),
        }
    }

    /// The bounds its properties check, as the docs state them.
    pub fn bounds(&self) -> Bounds {
        Bounds::of(&self.config)
    }

    /// The prefix of a start.
    pub fn prefix(&self, start: Start) -> Vec<PairEvent> {
        let c = &self.config;
        let begin = PairEvent::Begin {
            faults: c.faults,
            horizon_ms: u64::try_from(c.horizon.as_millis()).unwrap_or(u64::MAX),
        };
        let mut events = Vec::new();
        let mut w = self.root();
        let advance_to = |w: &mut World, events: &mut Vec<PairEvent>, t: Duration| {
            while w.elapsed(self.base) < t {
                match w.step(self, &PairEvent::Advance) {
                    Ok(()) => events.push(PairEvent::Advance),
                    Err(_) => break,
                }
            }
        };
        match start {
            Start::Cold => {}
            Start::Settled => advance_to(&mut w, &mut events, Duration::from_secs(1)),
            Start::TakenOver => {
                advance_to(&mut w, &mut events, Duration::from_secs(1));
                let crash = PairEvent::Fault(Fault::Host(Side::P, false));
                if w.step(self, &crash).is_ok() {
                    events.push(crash);
                }
                let until = w.elapsed(self.base) + c.timeout * 2 + c.hook_time * 4;
                advance_to(&mut w, &mut events, until);
            }
        }
        events.push(begin);
        events
    }

    /// The events of a scripted run from `start`: each [`Step::Wait`] advances until that
    /// much virtual time has passed (to the first instant something is due at or after it),
    /// each [`Step::Do`] injects a fault there. For regression tests: the run replays with
    /// [`crate::check::replay`].
    pub fn script(&self, start: Start, steps: &[Step]) -> Vec<PairEvent> {
        let mut events = self.prefix(start);
        let mut w = self.root();
        for e in &events {
            if w.step(self, e).is_err() {
                return events;
            }
        }
        for s in steps {
            match s {
                Step::Wait(d) => {
                    let until = w.now + *d;
                    while w.now < until && w.now < w.end {
                        events.push(PairEvent::Advance);
                        if w.step(self, &PairEvent::Advance).is_err() {
                            return events;
                        }
                    }
                }
                Step::Do(f) => {
                    let e = PairEvent::Fault(*f);
                    events.push(e);
                    if w.step(self, &e).is_err() {
                        return events;
                    }
                }
            }
        }
        events
    }

    /// Replays `events` from the root and renders the run as a timeline: each event at its
    /// virtual time, and what it made the daemons do.
    pub fn timeline(&self, events: &[PairEvent]) -> String {
        let mut w = self.root();
        w.log_on();
        let mut out = String::new();
        let verbose = std::env::var_os("IPFO_MODEL_VERBOSE").is_some();
        for (i, e) in events.iter().enumerate() {
            let before = w.elapsed(self.base);
            let result = w.step(self, e);
            let lines = w.take_log();
            // The quiet part of a run (heartbeats going and coming) is summed up.
            let quiet =
                !verbose && *e == PairEvent::Advance && lines.iter().all(|l| l.starts_with("  ."));
            if !quiet || result.is_err() {
                out.push_str(&format!(
                    "{:>9} {:>4}. {e}\n",
                    ms(if *e == PairEvent::Advance {
                        w.elapsed(self.base)
                    } else {
                        before
                    }),
                    i
                ));
                for l in lines.iter().filter(|l| verbose || !l.starts_with("  .")) {
                    out.push_str(&format!("               {l}\n"));
                }
            }
            if let Err(v) = result {
                out.push_str(&format!("               VIOLATION: {v}\n"));
                break;
            }
        }
        out
    }
}

/// A duration as milliseconds with one decimal.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl Model for PairModel {
    type State = World;
    type Event = PairEvent;

    fn root(&self) -> World {
        World::new(self)
    }

    fn starts(&self) -> Vec<Vec<PairEvent>> {
        self.config.starts.iter().map(|s| self.prefix(*s)).collect()
    }

    fn events(&self, w: &World, out: &mut Vec<PairEvent>) {
        w.events(self, out);
    }

    fn step(&self, w: &World, e: &PairEvent) -> Result<World, String> {
        let mut next = w.clone();
        next.step(self, e)?;
        Ok(next)
    }
}
