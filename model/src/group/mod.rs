//! A group: three members, each the real group core
//! ([`Group`](ipfailover::group::Group)) behind a few lines that do what failoverd's group
//! driver does (`failoverd/src/group.rs`), an etcd that grants, renews, expires and revokes
//! leases and runs the members' transactions (its quorum lost and back, a leader change that
//! extends every lease, a restore from a snapshot), and the LAN that answers probes for
//! whichever member has the address on its interface. Time passes only by
//! [`GroupEvent::Advance`], to the next instant at which anything is due.
//!
//! The world keeps each part apart ([`world::Etcd`], each member's host and process, the
//! LAN), so that a member's heartbeats, a failsafe or a link rule, when the group core gets
//! them, are a field and an event more, not a rewrite.

mod props;
mod world;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::check::Model;
pub use props::GroupBounds;
pub use world::GroupWorld;

/// The group's addresses.
pub const ADDRS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 101)),
];

/// A bug planted on purpose, to show that the checker finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupMutation {
    /// None: the core as it is.
    None,
    /// The shell carries out no `Remove` of a fence: a member cut off from etcd keeps its
    /// addresses on its interface after its lease is gone.
    FenceKeepsAddresses,
}

/// The kinds of fault the search may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupFaults {
    /// A member's host crashes, or boots (failoverd starts with it).
    pub hosts: bool,
    /// failoverd is killed (systemd starts it again a second later), started, or stopped
    /// with SIGTERM.
    pub daemons: bool,
    /// failoverd is stopped (SIGSTOP: its kernel still answers) or continued; or the whole
    /// VM is paused (nothing answers) or resumed.
    pub stalls: bool,
    /// A member is cut off from etcd, or reaches it again.
    pub cuts: bool,
    /// etcd loses its quorum or gets it back; its leader changes (every lease extended); it
    /// is restored from the snapshot taken at the start.
    pub etcd: bool,
}

impl GroupFaults {
    /// Every kind.
    pub const ALL: GroupFaults = GroupFaults {
        hosts: true,
        daemons: true,
        stalls: true,
        cuts: true,
        etcd: true,
    };
}

/// The model's settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The members' priorities, highest first (`m1`, `m2`, ...).
    pub priorities: Vec<u8>,
    /// How many of [`ADDRS`] the group shares.
    pub addrs: usize,
    /// `FAILOVER_LEASE_TTL`.
    pub ttl: Duration,
    /// `FAILOVER_PREEMPT`.
    pub preempt: bool,
    /// A request's round trip to etcd, and a view's trip from it.
    pub rtt: Duration,
    /// An ARP answer's round trip.
    pub one_way: Duration,
    /// How long each hook phase takes.
    pub hook_time: Duration,
    /// systemd starts a killed failoverd again this long after (`RestartSec`).
    pub restart_after: Duration,
    /// A restore of etcd raises its revision above the old one (`--bump-revision`).
    pub restore_bumps: bool,
    /// How far past the start the search looks.
    pub horizon: Duration,
    /// Faults after the start.
    pub faults: u8,
    /// Which kinds.
    pub kinds: GroupFaults,
    /// Start from the group settled (else from three members booting together).
    pub settled: bool,
    /// A bug planted on purpose.
    pub mutation: GroupMutation,
}

impl GroupConfig {
    /// Three members (priorities 200, 150, 100) sharing one address, a lease TTL of 1 s,
    /// etcd 2 ms away, hooks of 5 ms; two faults within 2.5 s of a settled group.
    pub fn new() -> GroupConfig {
        GroupConfig {
            priorities: vec![200, 150, 100],
            addrs: 1,
            ttl: Duration::from_secs(1),
            preempt: false,
            rtt: Duration::from_millis(2),
            one_way: Duration::from_millis(1),
            hook_time: Duration::from_millis(5),
            restart_after: Duration::from_secs(1),
            restore_bumps: true,
            horizon: Duration::from_millis(2500),
            faults: 2,
            kinds: GroupFaults::ALL,
            settled: true,
            mutation: GroupMutation::None,
        }
    }

    /// The addresses shared.
    pub fn addrs(&self) -> Vec<IpAddr> {
        ADDRS.iter().copied().take(self.addrs).collect()
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig::new()
    }
}

/// What the search injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupFault {
    /// Member `i`'s host crashes (false) or boots (true).
    Host(usize, bool),
    /// Its failoverd is killed.
    Kill(usize),
    /// Its failoverd is started.
    Start(usize),
    /// SIGTERM.
    Stop(usize),
    /// SIGSTOP: the process stops, its kernel answers.
    Stall(usize),
    /// SIGCONT.
    Cont(usize),
    /// The VM is paused (nothing answers, nothing runs), or resumed.
    Freeze(usize, bool),
    /// Member `i` reaches etcd (true) or not.
    Reach(usize, bool),
    /// etcd has a quorum (true) or not.
    Quorum(bool),
    /// A new etcd leader: every lease starts its TTL again.
    Leader,
    /// etcd is restored from the snapshot taken at the start.
    Restore,
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupEvent {
    /// Time passes to the next instant something is due.
    Advance,
    /// A fault.
    Fault(GroupFault),
    /// The end of the start's prefix: etcd's snapshot is taken; from here, this many faults
    /// within this horizon.
    Begin {
        /// Faults allowed.
        faults: u8,
        /// The horizon, in ms from now.
        horizon_ms: u64,
    },
}

impl fmt::Display for GroupEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |i: &usize| format!("m{}", i + 1);
        match self {
            GroupEvent::Advance => f.write_str("advance"),
            GroupEvent::Begin { faults, horizon_ms } => write!(
                f,
                "begin: etcd's snapshot taken; {faults} faults within {horizon_ms} ms"
            ),
            GroupEvent::Fault(x) => match x {
                GroupFault::Host(i, up) => {
                    write!(f, "host {} {}", m(i), if *up { "boots" } else { "crashes" })
                }
                GroupFault::Kill(i) => write!(f, "SIGKILL failoverd on {}", m(i)),
                GroupFault::Start(i) => write!(f, "start failoverd on {}", m(i)),
                GroupFault::Stop(i) => write!(f, "SIGTERM failoverd on {}", m(i)),
                GroupFault::Stall(i) => write!(f, "SIGSTOP failoverd on {}", m(i)),
                GroupFault::Cont(i) => write!(f, "SIGCONT failoverd on {}", m(i)),
                GroupFault::Freeze(i, true) => write!(f, "the VM of {} pauses", m(i)),
                GroupFault::Freeze(i, false) => write!(f, "the VM of {} resumes", m(i)),
                GroupFault::Reach(i, r) => write!(
                    f,
                    "{} {} etcd",
                    m(i),
                    if *r { "reaches" } else { "is cut off from" }
                ),
                GroupFault::Quorum(q) => {
                    write!(
                        f,
                        "etcd {} its quorum",
                        if *q { "regains" } else { "loses" }
                    )
                }
                GroupFault::Leader => f.write_str("etcd elects a new leader"),
                GroupFault::Restore => f.write_str("etcd is restored from the snapshot"),
            },
        }
    }
}

/// A step of a scripted run ([`GroupModel::script`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStep {
    /// Let this much virtual time pass.
    Wait(Duration),
    /// Inject this fault now.
    Do(GroupFault),
}

/// The group as a [`Model`].
#[derive(Debug, Clone)]
pub struct GroupModel {
    /// The settings.
    pub config: GroupConfig,
    base: Instant,
}

impl GroupModel {
    /// A model of `config`.
    pub fn new(config: GroupConfig) -> GroupModel {
        GroupModel {
            config,
            base: Instant::now() + Duration::from_secs(3600),
        }
    }

    /// The bounds its properties check.
    pub fn bounds(&self) -> GroupBounds {
        GroupBounds::of(&self.config)
    }

    /// The prefix of the start: the group settles for 1.5 s (or not at all).
    pub fn prefix(&self) -> Vec<GroupEvent> {
        let c = &self.config;
        let mut events = Vec::new();
        if c.settled {
            let mut w = self.root();
            while w.elapsed(self.base) < Duration::from_millis(1500) {
                if w.step(self, &GroupEvent::Advance).is_err() {
                    break;
                }
                events.push(GroupEvent::Advance);
            }
        }
        events.push(GroupEvent::Begin {
            faults: c.faults,
            horizon_ms: u64::try_from(c.horizon.as_millis()).unwrap_or(u64::MAX),
        });
        events
    }

    /// The events of a scripted run from the start (see [`crate::pair::PairModel::script`]).
    pub fn script(&self, steps: &[GroupStep]) -> Vec<GroupEvent> {
        let mut events = self.prefix();
        let mut w = self.root();
        for e in &events {
            if w.step(self, e).is_err() {
                return events;
            }
        }
        for s in steps {
            match s {
                GroupStep::Wait(d) => {
                    let until = w.now + *d;
                    while w.now < until && w.now < w.end() {
                        events.push(GroupEvent::Advance);
                        if w.step(self, &GroupEvent::Advance).is_err() {
                            return events;
                        }
                    }
                }
                GroupStep::Do(f) => {
                    let e = GroupEvent::Fault(*f);
                    events.push(e);
                    if w.step(self, &e).is_err() {
                        return events;
                    }
                }
            }
        }
        events
    }

    /// Replays `events` and renders the run as a timeline.
    pub fn timeline(&self, events: &[GroupEvent]) -> String {
        let mut w = self.root();
        w.log_on();
        let mut out = String::new();
        let verbose = std::env::var_os("IPFO_MODEL_VERBOSE").is_some();
        for (i, e) in events.iter().enumerate() {
            let before = w.elapsed(self.base);
            let result = w.step(self, e);
            let lines = w.take_log();
            let quiet =
                !verbose && *e == GroupEvent::Advance && lines.iter().all(|l| l.starts_with("  ."));
            if !quiet || result.is_err() {
                let at = if *e == GroupEvent::Advance {
                    w.elapsed(self.base)
                } else {
                    before
                };
                out.push_str(&format!("{:>9} {:>4}. {e}\n", crate::pair::ms(at), i));
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

impl Model for GroupModel {
    type State = GroupWorld;
    type Event = GroupEvent;

    fn root(&self) -> GroupWorld {
        GroupWorld::new(self)
    }

    fn starts(&self) -> Vec<Vec<GroupEvent>> {
        vec![self.prefix()]
    }

    fn events(&self, w: &GroupWorld, out: &mut Vec<GroupEvent>) {
        w.events(self, out);
    }

    fn step(&self, w: &GroupWorld, e: &GroupEvent) -> Result<GroupWorld, String> {
        let mut next = w.clone();
        next.step(self, e)?;
        Ok(next)
    }
}
