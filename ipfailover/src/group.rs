//! A group member's decisions (docs/groups.md): which of the group's addresses it holds, arbitrated
//! by etcd. Pure, like [`crate::failover`]: what etcd says comes in as [`GroupEvent`]s (a lease
//! granted, a renewal acknowledged, the group's keys as they are now, a transaction's outcome),
//! what the member asks of etcd and of the host goes out as [`GroupAction`]s, and the time is
//! handed in.
//!
//! The rules, in one place:
//! - The holder of an address is the member whose lease the address's key is attached to; the
//!   key's create revision is the *epoch*, the fencing token hooks get as `FAILOVER_EPOCH`.
//! - One lease per member, for all its keys; renewed every third of its TTL. The member's
//!   *deadline* is the time it sent its last acknowledged renewal, plus the TTL, minus a margin
//!   (a fifth of the TTL): the lease cannot expire in etcd before then, since etcd counts from
//!   when the renewal arrived. Past the deadline without a newer acknowledgement (etcd
//!   unreachable, the member cut off, the process stalled) the member **fences itself**: it
//!   removes every address at once (they must be gone before anyone can acquire them: the
//!   release hooks run after, with the reason `fenced`) and acquires nothing until a new lease
//!   is granted. After a stall the deadline is checked before anything else.
//! - An address nobody holds goes to the highest live priority (ties: the lower name). A member
//!   ranked k (k live members before it) waits k steps, then tries if the address is still
//!   free: so the best one wins, without a thundering herd. A member that has just joined
//!   waits a third of a TTL before its first try, so that it knows who else is there. It acquires only by winning a
//!   create-if-absent transaction; then it probes the address on the LAN (docs/handover.md), runs
//!   `Test`, `PreAcq`, adds, announces, `PostAcq`. An address that answers is a conflict: not
//!   added while it answers (probed in rounds; `Fence` once). `Test` refusing gives the claim
//!   up, and the member waits a TTL before trying that address again.
//! - Without an etcd quorum no transaction wins: nobody acquires.
//! - An address this member thinks it holds that etcd shows unheld, or held by another, is
//!   removed at once: the claim is gone.
//! - With `FAILOVER_PREEMPT`, a holder gives an address back (release hooks, then the key) when
//!   a live member that outranks it appears; without it, a holder keeps what it holds.
//! - A lease this member had before (it fenced itself, or failoverd was restarted and the
//!   driver says which lease the previous process recorded, [`Group::previous_life`]) is
//!   revoked as soon as a view shows keys attached to it: the addresses are not on its
//!   interfaces. A key in this member's name under any other lease is another failoverd's
//!   (two hosts with one name): it is never revoked, and this member does not join while that
//!   key lives (its own key is put only if absent).
//! - An address key that is not a claim (no lease: put by hand; or attached to a live
//!   member's lease but naming another member) is treated as free: the member whose turn it
//!   is deletes it (only if it is still that key) and acquires as usual.
//! - What is held is announced again after a stall (a turn more than [`STALL`] after the
//!   previous one: the LAN may have moved on), and every `FAILOVER_ANNOUNCE_REFRESH` when set,
//!   as a pair's secondary does; while it holds anything, the member wants a turn at least
//!   every second, so that a longer gap is a stall.
//! - Shutdown first deletes this member's key (the others stop waiting for it), then releases
//!   what is held (`PreRel`, remove, delete the address's key, `PostRel`), revokes the lease,
//!   exits. An address's key is deleted once the address is off the interface, never before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::failover::{HookPhase, Mac, STALL};

/// The share of the TTL kept in hand: the deadline is this much before the lease could expire.
pub const FENCE_MARGIN_DIVISOR: u32 = 5;

/// Renewals per TTL.
pub const RENEWALS_PER_TTL: u32 = 3;

/// How long the probe round after winning an address lasts (three probes).
pub const GROUP_PROBE_WINDOW: Duration = Duration::from_millis(150);

/// A conflict's probe rounds last this long.
pub const GROUP_CONFLICT_ROUND: Duration = Duration::from_millis(300);

/// Probes per round.
pub const PROBES: u32 = 3;

/// Hook phases that run at once, each for its own address: 100 addresses with hooks move in
/// about the time of one, without starting a hundred processes at a time.
pub const MAX_PARALLEL_HOOKS: usize = 32;

/// After a transaction etcd did not answer, the address is tried again after TTL / this.
pub const ACQUIRE_BACKOFF_DIVISOR: u32 = 6;

/// One priority step: the wait per member ranked before this one.
pub fn priority_step(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
}

/// The member's settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupConfig {
    /// This member's name (its key under `members/`).
    pub name: String,
    /// `FAILOVER_PRIORITY`, 1 to 255.
    pub priority: u8,
    /// `FAILOVER_LEASE_TTL`.
    pub lease_ttl: Duration,
    /// `FAILOVER_PREEMPT`.
    pub preempt: bool,
    /// The group's addresses, in the order of `FAILOVER_GROUP_IP_PAIRS`.
    pub addrs: Vec<IpAddr>,
    /// `FAILOVER_ANNOUNCE_REFRESH`: announce what is held this often (`None`: when it is
    /// added, and after a stall).
    pub announce_refresh: Option<Duration>,
}

/// A live member, as etcd lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its priority.
    pub priority: u8,
    /// The lease its key is attached to.
    pub lease: i64,
    /// Whether it takes addresses (`failoverctl pause` and `drain` say no).
    pub mode: MemberMode,
}

/// Whether a member takes addresses, as its member key says (docs/groups.md, "Commands").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberMode {
    /// It acquires and releases as the rules say.
    #[default]
    Active,
    /// `failoverctl pause`: it keeps what it holds and takes nothing new.
    Paused,
    /// `failoverctl drain`: it gives everything up and takes nothing.
    Drained,
}

impl MemberMode {
    /// The word, as in the member key's value and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberMode::Active => "live",
            MemberMode::Paused => "paused",
            MemberMode::Drained => "drained",
        }
    }

    /// The member key's value: the priority, then the mode unless active (`200`,
    /// `200 drained`).
    pub fn key_value(self, priority: u8) -> String {
        match self {
            MemberMode::Active => priority.to_string(),
            other => format!("{priority} {}", other.as_str()),
        }
    }

    /// Reads a member key's value: `None` if it is not one (the member is not listed).
    pub fn parse_key_value(value: &str) -> Option<(u8, MemberMode)> {
        let mut words = value.split_whitespace();
        let priority: u8 = words.next()?.parse().ok()?;
        let mode = match words.next() {
            None => MemberMode::Active,
            Some("paused") => MemberMode::Paused,
            Some("drained") => MemberMode::Drained,
            Some(_) => return None,
        };
        words.next().is_none().then_some((priority, mode))
    }
}

/// Who holds an address in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The member's name.
    pub member: String,
    /// The key's create revision: the epoch.
    pub epoch: i64,
    /// The lease the key is attached to.
    pub lease: i64,
}

/// The group's keys as etcd has them at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct View {
    /// The revision the view was read or watched at.
    pub revision: i64,
    /// The live members (their keys exist).
    pub members: Vec<Member>,
    /// The held addresses.
    pub holders: BTreeMap<IpAddr, Holder>,
}

/// Why an address changed hands here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupReason {
    /// Nobody held it.
    Unheld,
    /// A member that outranks this one is back (preemption).
    Preempted,
    /// This member lost its lease, or could not renew it in time.
    Fenced,
    /// etcd shows the key gone or another's.
    LostClaim,
    /// `Test` refused.
    TestRefused,
    /// The link of its interface went down here: another member can serve it.
    LinkDown,
    /// `failoverctl drain`: handed to the next member.
    Drained,
    /// failoverd is stopping.
    Shutdown,
}

impl GroupReason {
    /// The `FAILOVER_REASON` of hooks, and the status file's word.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupReason::Unheld => "unheld",
            GroupReason::Preempted => "preempted",
            GroupReason::Fenced => "fenced",
            GroupReason::LostClaim => "lost-claim",
            GroupReason::TestRefused => "test-refused",
            GroupReason::LinkDown => "link-down",
            GroupReason::Drained => "drained",
            GroupReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for GroupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one address is, here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrState {
    /// Not ours, and not being acquired.
    Free,
    /// Unheld: waiting this member's priority steps until `at` before trying.
    Waiting {
        /// When to try.
        at: Instant,
    },
    /// The create-if-absent transaction is in flight.
    Trying,
    /// Won (the epoch); probing the LAN before adding.
    Probing {
        /// The epoch.
        epoch: i64,
    },
    /// Won, but another host answers for it: not added while it does.
    Conflict {
        /// The epoch.
        epoch: i64,
        /// Who answers.
        mac: Mac,
    },
    /// Won; its hooks and the add are under way, at this phase.
    Acquiring {
        /// The epoch.
        epoch: i64,
        /// The hook phase running or waiting (`PreAcq` also covers the add).
        phase: HookPhase,
    },
    /// On our interface, and ours in etcd.
    Held {
        /// The epoch.
        epoch: i64,
    },
    /// Being given back.
    Releasing {
        /// The epoch it was held at.
        epoch: i64,
        /// The hook phase running or waiting.
        phase: HookPhase,
        /// Why.
        reason: GroupReason,
    },
}

impl AddrState {
    /// The status file's word.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrState::Free => "free",
            AddrState::Waiting { .. } => "waiting",
            AddrState::Trying => "trying",
            AddrState::Probing { .. } => "probing",
            AddrState::Conflict { .. } => "conflict",
            AddrState::Acquiring { .. } => "acquiring",
            AddrState::Held { .. } => "held",
            AddrState::Releasing { .. } => "releasing",
        }
    }

    /// The epoch this member has for it, if any.
    pub fn epoch(self) -> Option<i64> {
        match self {
            AddrState::Probing { epoch }
            | AddrState::Conflict { epoch, .. }
            | AddrState::Acquiring { epoch, .. }
            | AddrState::Held { epoch }
            | AddrState::Releasing { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// Whether the address may be on our interface.
    pub fn may_hold(self) -> bool {
        matches!(
            self,
            AddrState::Acquiring {
                phase: HookPhase::PostAcq,
                ..
            } | AddrState::Held { .. }
                | AddrState::Releasing {
                    phase: HookPhase::PreRel,
                    ..
                }
        )
    }
}

/// The member's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lease {
    /// None, and none asked for.
    None,
    /// Asked for.
    Granting,
    /// Granted.
    Held {
        /// Its id.
        id: i64,
        /// Past this instant without a newer acknowledgement, the member fences itself.
        deadline: Instant,
        /// When the next renewal is due.
        renew_at: Instant,
        /// A renewal is in flight.
        renewing: bool,
    },
}

/// Something the administrator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupNotice {
    /// This member now holds the address.
    TookOver {
        /// The address.
        addr: IpAddr,
        /// Its epoch.
        epoch: i64,
    },
    /// It gave the address back (or lost it).
    Released {
        /// The address.
        addr: IpAddr,
        /// Why.
        reason: GroupReason,
    },
    /// It fenced itself: its addresses are removed.
    Fenced {
        /// The addresses removed.
        addrs: Vec<IpAddr>,
        /// Why, in words.
        why: String,
    },
    /// The link of these addresses' interfaces is down here: given up, not acquired until it
    /// is back.
    LinksDown {
        /// The addresses, all of them on down links now.
        addrs: Vec<IpAddr>,
    },
    /// Every link of the group's addresses is up again here.
    LinksUp,
    /// It won an address that another host still answers for.
    Conflict {
        /// The address.
        addr: IpAddr,
        /// Who answers.
        mac: Mac,
    },
}

/// An input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupEvent {
    /// Time passed.
    Tick,
    /// etcd granted the lease asked for.
    LeaseGranted {
        /// Its id.
        id: i64,
        /// When the grant was sent.
        sent_at: Instant,
    },
    /// The grant failed (etcd unreachable, no quorum).
    GrantFailed,
    /// etcd acknowledged a renewal sent at `sent_at`.
    RenewalAcked {
        /// When that renewal was sent.
        sent_at: Instant,
    },
    /// A renewal went unanswered or failed (etcd unreachable); the deadline still rules.
    RenewalFailed,
    /// etcd says the lease no longer exists (it expired).
    LeaseLost,
    /// The group's keys as they are now.
    View(View),
    /// etcd's history went back (its revision is lower than one already seen, or it is
    /// another cluster: a restore from a snapshot): this view, read afresh, is the new truth.
    Restored(View),
    /// The outcome of a create-if-absent transaction.
    Acquired {
        /// The address.
        addr: IpAddr,
        /// The epoch, if it was won.
        epoch: Option<i64>,
    },
    /// A transaction went unanswered (no quorum): the address stays free.
    AcquireFailed {
        /// The address.
        addr: IpAddr,
    },
    /// Another host answered for an address on the LAN.
    ProbeAnswer {
        /// The address.
        addr: IpAddr,
        /// Who.
        mac: Mac,
    },
    /// A running hook phase finished.
    HooksDone {
        /// For which address.
        addr: IpAddr,
        /// Which.
        phase: HookPhase,
        /// Whether every hook succeeded.
        ok: bool,
    },
    /// The addresses whose interface's link is down here (the whole set, each time it
    /// changes; empty once every link is up).
    LinksDown {
        /// The addresses.
        addrs: Vec<IpAddr>,
    },
    /// An administrator's command; answered with one [`GroupAction::Answer`].
    Command(GroupCommand),
    /// `FAILOVER_PRIORITY` changed (SIGHUP): in force at once, and published.
    PriorityChanged(u8),
    /// Stop: release everything, revoke the lease, exit.
    Shutdown,
}

/// What an administrator can ask of a member (`failoverctl` on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupCommand {
    /// Keep what is held, acquire nothing new, until `resume` or `until`.
    Pause {
        /// When the pause ends by itself.
        until: Option<Instant>,
    },
    /// Hand every address to the next members and take none, until `resume`.
    Drain,
    /// End a pause or a drain.
    Resume,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAction {
    /// Ask etcd for a lease of the member's TTL; report [`GroupEvent::LeaseGranted`].
    GrantLease,
    /// Renew the lease; report [`GroupEvent::RenewalAcked`] with when it was sent.
    Renew {
        /// The lease.
        lease: i64,
    },
    /// Put this member's key, attached to the lease.
    Register {
        /// The lease.
        lease: i64,
    },
    /// Delete this member's key (it is leaving: nobody should wait for it).
    Unregister {
        /// The lease.
        lease: i64,
    },
    /// Revoke the lease (deleting every key attached to it).
    Revoke {
        /// The lease.
        lease: i64,
    },
    /// Create the address's key with the lease if it does not exist; report
    /// [`GroupEvent::Acquired`].
    TryAcquire {
        /// The address.
        addr: IpAddr,
        /// The lease.
        lease: i64,
    },
    /// Delete the address's key if it is still the stale one of this create revision (a key
    /// that is no claim, see [`Group`]); a [`GroupAction::TryAcquire`] follows.
    ClearStale {
        /// The address.
        addr: IpAddr,
        /// The stale key's create revision.
        epoch: i64,
    },
    /// Delete the address's key, if it is still ours (attached to `lease`).
    GiveUp {
        /// The address.
        addr: IpAddr,
        /// The lease the key must be attached to.
        lease: i64,
    },
    /// Send one probe for each address.
    Probe {
        /// The addresses.
        addrs: Vec<IpAddr>,
    },
    /// Run a hook phase for one address.
    RunHooks {
        /// The phase.
        phase: HookPhase,
        /// The address (`FAILOVER_ADDRESS`).
        addr: IpAddr,
        /// Its epoch (`FAILOVER_EPOCH`).
        epoch: i64,
        /// Why (`FAILOVER_REASON`).
        reason: GroupReason,
    },
    /// Add the address to its interface.
    Add {
        /// The address.
        addr: IpAddr,
    },
    /// Announce it (gratuitous ARP / NA), repeated.
    Announce {
        /// The address.
        addr: IpAddr,
    },
    /// Remove it from its interface.
    Remove {
        /// The address.
        addr: IpAddr,
    },
    /// An address changed state here (for logs and status).
    Transition {
        /// The address.
        addr: IpAddr,
        /// From.
        from: AddrState,
        /// To.
        to: AddrState,
    },
    /// Tell the administrator.
    Notify(GroupNotice),
    /// The answer to a [`GroupEvent::Command`].
    Answer(Result<String, String>),
    /// The member's mode changed (a command, or a pause that ran out): publish it in the
    /// member key (when it has a lease) and keep it across a restart.
    ModeChanged(MemberMode),
    /// Rewrite the member key's value (priority and mode), if it is still attached to the
    /// lease.
    Publish {
        /// The lease.
        lease: i64,
    },
    /// Exit.
    Exit,
}

/// An address being probed: how many probes it has had since it joined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pending {
    addr: IpAddr,
    joined: Instant,
    probes: u32,
    last_probe: Instant,
}

/// Probing under way: one probe every `gap` for the addresses that have had fewer than
/// [`PROBES`]; each is decided a gap after its last probe, by whether anything answered since
/// it joined. Addresses join at any time (a hundred won one after another share the probes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Round {
    gap: Duration,
    next_probe: Instant,
    pending: Vec<Pending>,
}

impl Round {
    fn new(gap: Duration, now: Instant) -> Round {
        Round {
            gap,
            next_probe: now,
            pending: Vec::new(),
        }
    }

    fn join(&mut self, addr: IpAddr, now: Instant) {
        if self.pending.iter().any(|p| p.addr == addr) {
            return;
        }
        if self.pending.is_empty() {
            self.next_probe = now;
        }
        self.pending.push(Pending {
            addr,
            joined: now,
            probes: 0,
            last_probe: now,
        });
    }

    fn next_deadline(&self) -> Option<Instant> {
        let probe = self
            .pending
            .iter()
            .any(|p| p.probes < PROBES)
            .then_some(self.next_probe);
        let decide = self
            .pending
            .iter()
            .filter(|p| p.probes >= PROBES)
            .map(|p| p.last_probe + self.gap)
            .min();
        [probe, decide].into_iter().flatten().min()
    }
}

/// A group member's decisions.
#[derive(Debug, Clone, Hash)]
pub struct Group {
    config: GroupConfig,
    lease: Lease,
    view: View,
    /// Whether a view was ever received: before it, nothing is acquired.
    viewed: bool,
    addrs: BTreeMap<IpAddr, AddrState>,
    /// An address whose `Test` refused is not tried again before this instant.
    retry_after: BTreeMap<IpAddr, Instant>,
    /// Hook phases waiting for the runner, in order.
    hook_queue: VecDeque<(IpAddr, HookPhase)>,
    /// The phases running, by address: at most [`MAX_PARALLEL_HOOKS`].
    hook_running: BTreeMap<IpAddr, HookPhase>,
    /// Probing of addresses just won.
    probing: Option<Round>,
    /// Probing of addresses won that another host answered for.
    conflicts: Option<Round>,
    /// The latest answer for each address.
    answers: BTreeMap<IpAddr, (Instant, Mac)>,
    /// The `Fence` hook ran for this conflict.
    fenced_conflict: BTreeMap<IpAddr, bool>,
    /// A failed grant is asked again at this instant, not at once.
    grant_after: Option<Instant>,
    /// When this member's key first appeared in a view: it acquires a third of a TTL later.
    joined: Option<Instant>,
    /// When this member's key was last put: put again if a view lacks it a while later.
    registered_at: Option<Instant>,
    /// Leases this member had before the current one (a fence, a previous process): revoked
    /// once a view shows keys attached to them.
    own_leases: BTreeSet<i64>,
    /// Leases of this member's previous life already revoked.
    revoked: BTreeSet<i64>,
    /// Since when a live member has outranked this one (for preemption).
    outranked_since: Option<Instant>,
    /// Addresses whose link is down here: given up, and not acquired while it is.
    links_down: BTreeSet<IpAddr>,
    /// When what is held was last announced by the refresh (`None` while nothing is held).
    refreshed: Option<Instant>,
    /// Added to an address key's create revision to make the epoch hooks get: 0 until etcd's
    /// history goes back (a restore), then past every epoch this member has seen, so that
    /// `FAILOVER_EPOCH` never goes back here.
    epoch_offset: i64,
    /// The epoch hooks get for each claim under way or held, fixed when it was won.
    hook_epochs: BTreeMap<IpAddr, i64>,
    /// The view was just restored: the next reconcile allows no claim "not visible yet".
    history_cut: bool,
    /// Paused or drained by the administrator.
    mode: MemberMode,
    /// When a `pause --for` ends.
    pause_until: Option<Instant>,
    stopping: bool,
    now: Instant,
}

/// Why an address key is no claim, or `""` when it is one. A claim is a key attached to a
/// lease; when that lease is a live member's, the key names that member. A key put by hand
/// (`etcdctl put`, no lease) would never go away by itself and a key naming another member
/// than its lease's is nobody's claim: both are treated as free. A key under a lease no
/// live member lists is left alone: it is a member's that is leaving (its key goes first), or
/// it goes with that lease.
pub fn stale_why(h: &Holder, view: &View) -> &'static str {
    if h.lease == 0 {
        return "attached to no lease";
    }
    match view.members.iter().find(|m| m.lease == h.lease) {
        Some(m) if m.name != h.member => "names another member than its lease's",
        _ => "",
    }
}

impl Group {
    /// A member with no lease yet: it asks for one at the first tick.
    pub fn new(now: Instant, config: GroupConfig) -> Group {
        let addrs = config.addrs.iter().map(|a| (*a, AddrState::Free)).collect();
        Group {
            config,
            lease: Lease::None,
            view: View::default(),
            viewed: false,
            addrs,
            retry_after: BTreeMap::new(),
            hook_queue: VecDeque::new(),
            hook_running: BTreeMap::new(),
            probing: None,
            conflicts: None,
            answers: BTreeMap::new(),
            fenced_conflict: BTreeMap::new(),
            grant_after: None,
            joined: None,
            registered_at: None,
            own_leases: BTreeSet::new(),
            revoked: BTreeSet::new(),
            outranked_since: None,
            links_down: BTreeSet::new(),
            refreshed: None,
            epoch_offset: 0,
            hook_epochs: BTreeMap::new(),
            history_cut: false,
            mode: MemberMode::Active,
            pause_until: None,
            stopping: false,
            now,
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The administrator's mode: paused, drained or neither.
    pub fn mode(&self) -> MemberMode {
        self.mode
    }

    /// When a `pause --for` ends.
    pub fn pause_until(&self) -> Option<Instant> {
        self.pause_until
    }

    /// The mode a previous process kept (a pause or a drain survives a restart): in force
    /// from the start, before anything is acquired.
    pub fn restore_mode(&mut self, mode: MemberMode, until: Option<Instant>) {
        self.mode = mode;
        self.pause_until = if mode == MemberMode::Paused {
            until
        } else {
            None
        };
    }

    /// The lease a previous process of this member recorded (in its state directory): its
    /// keys are revoked once seen, as a fenced lease's are. Only this member's own record
    /// counts: a key in its name under a lease it never had is another failoverd's.
    pub fn previous_life(&mut self, lease: i64) {
        if lease > 0 && Some(lease) != self.lease_id() {
            self.own_leases.insert(lease);
        }
    }

    /// A new `FAILOVER_ANNOUNCE_REFRESH` (SIGHUP), counted from the last refresh.
    pub fn set_announce_refresh(&mut self, every: Option<Duration>) {
        self.config.announce_refresh = every;
    }

    /// The addresses held here (on the interface, ours in etcd).
    fn held(&self) -> Vec<IpAddr> {
        self.addrs
            .iter()
            .filter(|(_, s)| matches!(s, AddrState::Held { .. }))
            .map(|(a, _)| *a)
            .collect()
    }

    /// The lease.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// The latest view of the group.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Each address's state here.
    pub fn addrs(&self) -> &BTreeMap<IpAddr, AddrState> {
        &self.addrs
    }

    /// How many live members come before this one (higher priority, or equal and a lower
    /// name), by the latest view; this member counts as live.
    pub fn rank(&self) -> usize {
        self.view
            .members
            .iter()
            .filter(|m| {
                m.name != self.config.name && m.mode == MemberMode::Active && self.outranks(m)
            })
            .count()
    }

    /// Since when a live member has outranked this one (preemption waits from then).
    fn update_outranked(&mut self, now: Instant) {
        if self.rank() == 0 {
            self.outranked_since = None;
        } else if self.outranked_since.is_none() {
            self.outranked_since = Some(now);
        }
    }

    /// How often a member key that is not in the view is put again.
    fn register_period(&self) -> Duration {
        self.config.lease_ttl / RENEWALS_PER_TTL
    }

    /// Whether this member's key is in the view under its current lease.
    fn registered(&self) -> bool {
        self.view
            .members
            .iter()
            .any(|m| m.name == self.config.name && Some(m.lease) == self.lease_id())
    }

    /// Whether the view shows a claim on `addr`: a key that is not stale (see [`stale_why`]).
    fn claimed(&self, addr: IpAddr) -> bool {
        self.view
            .holders
            .get(&addr)
            .is_some_and(|h| stale_why(h, &self.view).is_empty())
    }

    fn outranks(&self, m: &Member) -> bool {
        (m.priority, std::cmp::Reverse(&m.name))
            > (self.config.priority, std::cmp::Reverse(&self.config.name))
    }

    fn lease_id(&self) -> Option<i64> {
        match self.lease {
            Lease::Held { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The next instant at which the member wants a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Lease::Held {
            deadline,
            renew_at,
            renewing,
            ..
        } = self.lease
        {
            consider(deadline);
            if !renewing {
                consider(renew_at);
            }
        }
        for state in self.addrs.values() {
            if let AddrState::Waiting { at } = state {
                consider(*at);
            }
        }
        for at in self.retry_after.values() {
            if *at > self.now {
                consider(*at);
            }
        }
        if let Some(at) = self.pause_until {
            consider(at);
        }
        if let (Some(_), true, false, Some(at)) = (
            self.lease_id(),
            self.viewed,
            self.stopping,
            self.registered_at,
        ) {
            if !self.registered() {
                consider(at + self.register_period());
            }
        }
        for r in [&self.probing, &self.conflicts].into_iter().flatten() {
            if let Some(t) = r.next_deadline() {
                consider(t);
            }
        }
        if let (Lease::None, Some(at)) = (self.lease, self.grant_after) {
            consider(at);
        }
        if let Some(t) = self.joined {
            let at = t + self.config.lease_ttl / RENEWALS_PER_TTL;
            if at > self.now {
                consider(at);
            }
        }
        if let (true, Some(t)) = (self.config.preempt, self.outranked_since) {
            let at = t + self.preempt_delay();
            let holds = self
                .addrs
                .values()
                .any(|s| matches!(s, AddrState::Held { .. }));
            if at > self.now && holds {
                consider(at);
            }
        }
        if self
            .addrs
            .values()
            .any(|s| matches!(s, AddrState::Held { .. }))
        {
            // At least one turn a second while holding: a longer gap is a stall.
            consider(self.now + STALL / 2);
            if let (Some(every), Some(t)) = (self.config.announce_refresh, self.refreshed) {
                consider(t + every);
            }
        }
        next
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: GroupEvent) -> Vec<GroupAction> {
        let mut out = Vec::new();
        let stalled = now > self.now + STALL;
        self.now = self.now.max(now);
        // After a stall, the deadline comes before anything the member might act on.
        self.check_deadline(now, &mut out);
        // Not judged for far longer than its deadlines allow (a stopped process, a suspended
        // VM), yet still within its lease: the LAN may have moved on, so what is held is
        // announced again.
        if stalled {
            for addr in self.held() {
                out.push(GroupAction::Announce { addr });
            }
        }
        match event {
            GroupEvent::Tick => {}
            GroupEvent::LeaseGranted { id, sent_at } => {
                let ttl = self.config.lease_ttl;
                self.lease = Lease::Held {
                    id,
                    deadline: sent_at + ttl - ttl / FENCE_MARGIN_DIVISOR,
                    renew_at: sent_at + ttl / RENEWALS_PER_TTL,
                    renewing: false,
                };
                self.registered_at = Some(now);
                out.push(GroupAction::Register { lease: id });
            }
            GroupEvent::GrantFailed => {
                self.lease = Lease::None;
                self.grant_after = Some(now + self.config.lease_ttl / 6);
            }
            GroupEvent::RenewalAcked { sent_at } => {
                let ttl = self.config.lease_ttl;
                if let Lease::Held {
                    deadline,
                    renew_at,
                    renewing,
                    ..
                } = &mut self.lease
                {
                    *deadline = (*deadline).max(sent_at + ttl - ttl / FENCE_MARGIN_DIVISOR);
                    *renew_at = sent_at + ttl / RENEWALS_PER_TTL;
                    *renewing = false;
                }
            }
            GroupEvent::RenewalFailed => {
                if let Lease::Held {
                    renew_at, renewing, ..
                } = &mut self.lease
                {
                    *renewing = false;
                    // Try again soon: the deadline, not this failure, decides.
                    *renew_at = now + self.config.lease_ttl / 10;
                }
            }
            GroupEvent::LeaseLost => {
                if matches!(self.lease, Lease::Held { .. }) {
                    self.fence(now, "etcd says the lease has expired".to_string(), &mut out);
                }
            }
            // Views come from a watch and from re-reads: an older one than ours says nothing
            // new, and would hide keys this member already knows of. (A history that went
            // back comes as `Restored`.)
            GroupEvent::View(view) if view.revision < self.view.revision => {}
            GroupEvent::Restored(view) => {
                self.restored(view);
                self.view_changed(now, &mut out);
            }
            GroupEvent::View(view) => {
                self.view = view;
                self.view_changed(now, &mut out);
            }
            GroupEvent::Acquired { addr, epoch } => self.acquired(now, addr, epoch, &mut out),
            GroupEvent::AcquireFailed { addr } => {
                if self.addrs.get(&addr) == Some(&AddrState::Trying) {
                    // etcd did not answer: try again in a while, not in a loop.
                    self.retry_after
                        .insert(addr, now + self.config.lease_ttl / ACQUIRE_BACKOFF_DIVISOR);
                    self.set(addr, AddrState::Free, &mut out);
                }
            }
            GroupEvent::ProbeAnswer { addr, mac } => {
                self.answers.insert(addr, (now, mac));
            }
            GroupEvent::HooksDone { addr, phase, ok } => {
                self.hooks_done(now, addr, phase, ok, &mut out)
            }
            GroupEvent::LinksDown { addrs } => self.links_changed(addrs, &mut out),
            GroupEvent::Command(c) => self.command(now, c, &mut out),
            GroupEvent::PriorityChanged(p) => {
                self.config.priority = p;
                if let Some(lease) = self.lease_id() {
                    out.push(GroupAction::Publish { lease });
                }
                self.update_outranked(now);
                self.reconcile(now, &mut out);
            }
            GroupEvent::Shutdown => self.shutdown(&mut out),
        }
        if self.pause_until.is_some_and(|u| now >= u) {
            self.pause_until = None;
            if self.mode == MemberMode::Paused {
                self.mode = MemberMode::Active;
                out.push(GroupAction::ModeChanged(MemberMode::Active));
                self.reconcile(now, &mut out);
            }
        }
        if self.mode == MemberMode::Drained && !self.stopping {
            self.drain(&mut out);
        }
        self.check_timers(now, &mut out);
        self.start_hooks(&mut out);
        if self.stopping && self.idle() {
            if let Some(lease) = self.lease_id() {
                out.push(GroupAction::Revoke { lease });
            }
            self.lease = Lease::None;
            out.push(GroupAction::Exit);
            self.stopping = false;
        }
        out
    }

    /// A new view was taken: joins, the rank, then what is held.
    fn view_changed(&mut self, now: Instant, out: &mut Vec<GroupAction>) {
        self.viewed = true;
        // Listed means this member's key under its current lease: a key in its name
        // under another lease is a previous life's, or another failoverd's.
        let listed = self.registered();
        if self.joined.is_none() && listed {
            self.joined = Some(now);
        }
        self.update_outranked(now);
        self.reconcile(now, out);
    }

    /// etcd's history went back: `view` is the new truth. The mark of the highest revision
    /// seen goes with the old history (else no view would be taken until new writes passed
    /// it), and the epochs hooks get from now on start past every epoch seen so far.
    fn restored(&mut self, view: View) {
        let highest = self
            .view
            .holders
            .values()
            .map(|h| h.epoch)
            .chain(self.addrs.values().filter_map(|s| s.epoch()))
            .fold(self.view.revision, i64::max);
        self.epoch_offset = self.epoch_offset.saturating_add(highest.max(0));
        self.view = view;
        // A claim this member won that the restored keys do not show is gone with the old
        // history: no allowance for one "not visible yet" (see reconcile).
        self.history_cut = true;
    }

    /// The administrator's commands.
    fn command(&mut self, now: Instant, c: GroupCommand, out: &mut Vec<GroupAction>) {
        let held = self.held().len();
        let before = self.mode;
        let answer = match c {
            GroupCommand::Pause { until } => {
                if self.mode == MemberMode::Drained {
                    Err("drained: nothing to pause (failoverctl resume first)".to_string())
                } else {
                    self.mode = MemberMode::Paused;
                    self.pause_until = until;
                    // Addresses waiting for their turn wait no more.
                    let waiting: Vec<IpAddr> = self
                        .addrs
                        .iter()
                        .filter(|(_, s)| matches!(s, AddrState::Waiting { .. }))
                        .map(|(a, _)| *a)
                        .collect();
                    for a in waiting {
                        self.set(a, AddrState::Free, out);
                    }
                    Ok(format!(
                        "paused: this member keeps the {held} address(es) it holds and acquires \
                         nothing {}",
                        if until.is_some() {
                            "until the pause ends"
                        } else {
                            "until failoverctl resume"
                        }
                    ))
                }
            }
            GroupCommand::Drain => {
                self.mode = MemberMode::Drained;
                self.pause_until = None;
                Ok(format!(
                    "draining: {held} address(es) handed to the next members; nothing is \
                     acquired here until failoverctl resume"
                ))
            }
            GroupCommand::Resume => {
                self.pause_until = None;
                if self.mode == MemberMode::Active {
                    Ok("not paused or drained: nothing to resume".to_string())
                } else {
                    let was = self.mode.as_str();
                    self.mode = MemberMode::Active;
                    Ok(format!(
                        "resumed ({was} before): this member acquires again"
                    ))
                }
            }
        };
        if self.mode != before || matches!(c, GroupCommand::Pause { .. }) && answer.is_ok() {
            out.push(GroupAction::ModeChanged(self.mode));
        }
        out.push(GroupAction::Answer(answer));
        self.reconcile(now, out);
    }

    /// Drained: every address held is handed on (release hooks, removed, key deleted); one
    /// still being won is dropped if nothing was done yet.
    fn drain(&mut self, out: &mut Vec<GroupAction>) {
        let addrs: Vec<(IpAddr, AddrState)> = self.addrs.iter().map(|(a, s)| (*a, *s)).collect();
        for (addr, state) in addrs {
            match state {
                AddrState::Held { epoch } => {
                    self.start_release(addr, epoch, GroupReason::Drained, out)
                }
                AddrState::Waiting { .. } => self.set(addr, AddrState::Free, out),
                _ => {}
            }
        }
    }

    /// Nothing held, and no hook running or waiting.
    fn idle(&self) -> bool {
        self.hook_running.is_empty()
            && self.hook_queue.is_empty()
            && self
                .addrs
                .values()
                .all(|s| matches!(s, AddrState::Free | AddrState::Waiting { .. }))
    }

    fn set(&mut self, addr: IpAddr, to: AddrState, out: &mut Vec<GroupAction>) {
        let Some(state) = self.addrs.get_mut(&addr) else {
            return;
        };
        let from = *state;
        if from == to {
            return;
        }
        *state = to;
        if to.epoch().is_none() {
            self.hook_epochs.remove(&addr);
        }
        out.push(GroupAction::Transition { addr, from, to });
    }

    /// The epoch hooks get for the claim on `addr` (etcd's create revision `epoch`, past
    /// every epoch seen before a restore of etcd).
    fn hook_epoch(&self, addr: IpAddr, epoch: i64) -> i64 {
        self.hook_epochs.get(&addr).copied().unwrap_or(epoch)
    }

    fn check_deadline(&mut self, now: Instant, out: &mut Vec<GroupAction>) {
        if let Lease::Held { deadline, .. } = self.lease {
            if now >= deadline {
                self.fence(
                    now,
                    "no renewal of the lease was acknowledged in time (etcd unreachable, this \
                     member cut off, or the process stalled)"
                        .to_string(),
                    out,
                );
            }
        }
    }

    /// Removes every address at once, drops every claim, forgets the lease.
    fn fence(&mut self, _now: Instant, why: String, out: &mut Vec<GroupAction>) {
        let mut removed = Vec::new();
        let addrs: Vec<(IpAddr, AddrState)> = self.addrs.iter().map(|(a, s)| (*a, *s)).collect();
        for (addr, state) in addrs {
            match state {
                AddrState::Free | AddrState::Waiting { .. } | AddrState::Trying => {
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Probing { .. } | AddrState::Conflict { .. } => {
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Acquiring {
                    phase: HookPhase::Test,
                    ..
                } => {
                    self.hook_queue.retain(|(a, _)| *a != addr);
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Acquiring { epoch, phase } => {
                    // PreAcq may have started services: PostRel undoes them.
                    if phase == HookPhase::PostAcq {
                        out.push(GroupAction::Remove { addr });
                        removed.push(addr);
                    }
                    self.enter_release_after_removal(addr, epoch, GroupReason::Fenced, out);
                }
                AddrState::Held { epoch }
                | AddrState::Releasing {
                    epoch,
                    phase: HookPhase::PreRel,
                    ..
                } => {
                    // The address goes now; the release hooks run after (there is no time to
                    // run PreRel first: the lease may be about to expire).
                    out.push(GroupAction::Remove { addr });
                    removed.push(addr);
                    self.enter_release_after_removal(addr, epoch, GroupReason::Fenced, out);
                }
                // Already removed; its PostRel runs as it is.
                AddrState::Releasing { .. } => {}
            }
        }
        self.probing = None;
        self.conflicts = None;
        if let Some(old) = self.lease_id() {
            self.own_leases.insert(old);
        }
        self.lease = Lease::None;
        out.push(GroupAction::Notify(GroupNotice::Fenced {
            addrs: removed,
            why,
        }));
    }

    /// After an address was removed without PreRel (a fence, a lost claim): only PostRel.
    fn enter_release_after_removal(
        &mut self,
        addr: IpAddr,
        epoch: i64,
        reason: GroupReason,
        out: &mut Vec<GroupAction>,
    ) {
        self.set(
            addr,
            AddrState::Releasing {
                epoch,
                phase: HookPhase::PostRel,
                reason,
            },
            out,
        );
        self.queue_hook(addr, HookPhase::PostRel);
    }

    fn queue_hook(&mut self, addr: IpAddr, phase: HookPhase) {
        // A running phase of this address is let finish; a waiting one is replaced.
        self.hook_queue.retain(|(a, _)| *a != addr);
        self.hook_queue.push_back((addr, phase));
    }

    /// Starts queued phases while fewer than [`MAX_PARALLEL_HOOKS`] run; an address's next
    /// phase waits for its running one. The phases an add or a removal follows go first,
    /// then the other continuations, then new `Test`s: an address under way is finished
    /// before another is begun, so the first addresses are back soonest.
    fn start_hooks(&mut self, out: &mut Vec<GroupAction>) {
        fn urgency(phase: HookPhase) -> u8 {
            match phase {
                HookPhase::PreAcq | HookPhase::PreRel => 0,
                HookPhase::PostAcq | HookPhase::PostRel | HookPhase::Fence => 1,
                HookPhase::Test => 2,
            }
        }
        while self.hook_running.len() < MAX_PARALLEL_HOOKS {
            let Some(i) = self
                .hook_queue
                .iter()
                .enumerate()
                .filter(|(_, (a, _))| !self.hook_running.contains_key(a))
                .min_by_key(|(i, (_, phase))| (urgency(*phase), *i))
                .map(|(i, _)| i)
            else {
                return;
            };
            let Some((addr, phase)) = self.hook_queue.remove(i) else {
                return;
            };
            let Some(state) = self.addrs.get(&addr).copied() else {
                continue;
            };
            let (epoch, reason) = match state {
                AddrState::Acquiring { epoch, phase: p } if p == phase => {
                    (epoch, GroupReason::Unheld)
                }
                AddrState::Releasing {
                    epoch,
                    phase: p,
                    reason,
                } if p == phase => (epoch, reason),
                AddrState::Conflict { epoch, .. } if phase == HookPhase::Fence => {
                    (epoch, GroupReason::Unheld)
                }
                // Stale: the address moved on meanwhile.
                _ => continue,
            };
            self.hook_running.insert(addr, phase);
            out.push(GroupAction::RunHooks {
                phase,
                addr,
                epoch: self.hook_epoch(addr, epoch),
                reason,
            });
        }
    }

    /// Compares what etcd says with what this member believes.
    fn reconcile(&mut self, now: Instant, out: &mut Vec<GroupAction>) {
        // Keys under a lease this member had before (it fenced itself, or failoverd was
        // restarted): it holds none of those addresses (a fence removes them, a start removes
        // what it finds), so the old lease is revoked at once rather than left to expire, and
        // the others need not wait out its TTL; and this member's own key, put only if absent,
        // can be put. Only leases it knows were its own: a key in its name under any other
        // lease may be another failoverd's that uses the same name.
        if !self.stopping {
            let seen: BTreeSet<i64> = self
                .view
                .holders
                .values()
                .map(|h| h.lease)
                .chain(self.view.members.iter().map(|m| m.lease))
                .filter(|l| self.own_leases.contains(l) && !self.revoked.contains(l))
                .filter(|l| Some(*l) != self.lease_id())
                .collect();
            for lease in seen {
                self.revoked.insert(lease);
                out.push(GroupAction::Revoke { lease });
            }
        }
        let addrs: Vec<(IpAddr, AddrState)> = self.addrs.iter().map(|(a, s)| (*a, *s)).collect();
        let history_cut = std::mem::take(&mut self.history_cut);
        let rank = self.rank();
        let _ = now;
        let lease = self.lease_id();
        for (addr, state) in addrs {
            let holder = self.view.holders.get(&addr).cloned();
            // A claim won at a revision this view does not reach yet is not visible in it;
            // but right after a restore, a claim the restored keys do not show is gone (an
            // answer to a transaction comes long before etcd can be stopped, restored and
            // started again, so no claim of the new history is pending then). A key of ours
            // rewritten (by hand) without our lease is no claim of ours any more: the others
            // treat it as free.
            let ours = holder.as_ref().is_some_and(|h| {
                h.member == self.config.name
                    && Some(h.epoch) == state.epoch()
                    && Some(h.lease) == lease
            }) || (!history_cut
                && state.epoch().is_some_and(|e| e > self.view.revision));
            match state {
                // A key of our lease that this member does not use (a give-up that did not get
                // through): delete it, or nobody else can have the address.
                AddrState::Free
                    if lease.is_some_and(|l| holder.as_ref().is_some_and(|h| h.lease == l)) =>
                {
                    if let Some(lease) = lease {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                }
                // Free addresses are scheduled by check_timers.
                AddrState::Free => {}
                AddrState::Waiting { .. } if self.claimed(addr) => {
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Trying => {}
                AddrState::Probing { .. } | AddrState::Conflict { .. } if !ours => {
                    // Not ours after all: nothing was added.
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Acquiring {
                    phase: HookPhase::Test,
                    ..
                } if !ours => {
                    // Nothing was done yet.
                    self.hook_queue.retain(|(a, _)| *a != addr);
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Acquiring { epoch, phase } if !ours => {
                    if phase == HookPhase::PostAcq {
                        out.push(GroupAction::Remove { addr });
                    }
                    self.enter_release_after_removal(addr, epoch, GroupReason::LostClaim, out);
                }
                AddrState::Held { epoch } if !ours => {
                    // The claim is gone (the lease expired, the key was deleted): the address
                    // must go now, before the new holder adds it.
                    out.push(GroupAction::Remove { addr });
                    self.enter_release_after_removal(addr, epoch, GroupReason::LostClaim, out);
                }
                // Preemption: a live member that outranks us takes it back, once it can
                // acquire (a member acquires a third of a TTL after it joins): given back
                // sooner, a member ranked between us could take it first, and give it back
                // again.
                AddrState::Held { epoch }
                    if self.config.preempt
                        && self.mode == MemberMode::Active
                        && rank > 0
                        && self
                            .outranked_since
                            .is_some_and(|t| now >= t + self.preempt_delay()) =>
                {
                    self.start_release(addr, epoch, GroupReason::Preempted, out);
                }
                _ => {}
            }
        }
    }

    /// How long a holder waits, after a member that outranks it appears, before it gives
    /// its addresses back (preemption): the newcomer's join wait and a step.
    fn preempt_delay(&self) -> Duration {
        self.config.lease_ttl / RENEWALS_PER_TTL + priority_step(self.config.lease_ttl)
    }

    fn can_acquire(&self) -> bool {
        self.mode == MemberMode::Active
            && self.viewed
            && self.lease_id().is_some()
            && self
                .joined
                .is_some_and(|t| self.now >= t + self.config.lease_ttl / RENEWALS_PER_TTL)
    }

    fn acquired(
        &mut self,
        now: Instant,
        addr: IpAddr,
        epoch: Option<i64>,
        out: &mut Vec<GroupAction>,
    ) {
        if self.addrs.get(&addr) != Some(&AddrState::Trying) {
            // A late answer to a try this member no longer makes (it fenced): give the key
            // up if it was won.
            if let (Some(_), Some(lease)) = (epoch, self.lease_id()) {
                out.push(GroupAction::GiveUp { addr, lease });
            }
            return;
        }
        match epoch {
            None => self.set(addr, AddrState::Free, out),
            Some(_) if self.stopping || self.links_down.contains(&addr) => {
                if let Some(lease) = self.lease_id() {
                    out.push(GroupAction::GiveUp { addr, lease });
                }
                self.set(addr, AddrState::Free, out);
            }
            Some(epoch) => {
                self.hook_epochs
                    .insert(addr, epoch.saturating_add(self.epoch_offset));
                self.set(addr, AddrState::Probing { epoch }, out);
                self.probing
                    .get_or_insert_with(|| Round::new(GROUP_PROBE_WINDOW / PROBES, now))
                    .join(addr, now);
            }
        }
    }

    fn hooks_done(
        &mut self,
        now: Instant,
        addr: IpAddr,
        phase: HookPhase,
        ok: bool,
        out: &mut Vec<GroupAction>,
    ) {
        if self.hook_running.get(&addr) != Some(&phase) {
            return;
        }
        self.hook_running.remove(&addr);
        let Some(state) = self.addrs.get(&addr).copied() else {
            return;
        };
        match (state, phase) {
            (AddrState::Conflict { .. }, HookPhase::Fence) => {
                // Probe again at once.
                self.start_conflict_round(now, addr);
            }
            (
                AddrState::Acquiring {
                    epoch,
                    phase: HookPhase::Test,
                },
                HookPhase::Test,
            ) => {
                if !ok {
                    self.retry_after.insert(addr, now + self.config.lease_ttl);
                    if let Some(lease) = self.lease_id() {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                    self.set(addr, AddrState::Free, out);
                    out.push(GroupAction::Notify(GroupNotice::Released {
                        addr,
                        reason: GroupReason::TestRefused,
                    }));
                } else {
                    self.set(
                        addr,
                        AddrState::Acquiring {
                            epoch,
                            phase: HookPhase::PreAcq,
                        },
                        out,
                    );
                    self.queue_hook(addr, HookPhase::PreAcq);
                }
            }
            (
                AddrState::Acquiring {
                    epoch,
                    phase: HookPhase::PreAcq,
                },
                HookPhase::PreAcq,
            ) => {
                out.push(GroupAction::Add { addr });
                out.push(GroupAction::Announce { addr });
                self.set(
                    addr,
                    AddrState::Acquiring {
                        epoch,
                        phase: HookPhase::PostAcq,
                    },
                    out,
                );
                self.queue_hook(addr, HookPhase::PostAcq);
            }
            (
                AddrState::Acquiring {
                    epoch,
                    phase: HookPhase::PostAcq,
                },
                HookPhase::PostAcq,
            ) => {
                self.set(addr, AddrState::Held { epoch }, out);
                out.push(GroupAction::Notify(GroupNotice::TookOver {
                    addr,
                    epoch: self.hook_epoch(addr, epoch),
                }));
                if self.stopping {
                    self.start_release(addr, epoch, GroupReason::Shutdown, out);
                }
            }
            (
                AddrState::Releasing {
                    epoch,
                    reason,
                    phase: HookPhase::PreRel,
                },
                HookPhase::PreRel,
            ) => {
                out.push(GroupAction::Remove { addr });
                // Off the interface: the key may go now, so the next member need not wait for
                // PostRel.
                if let Some(lease) = self.lease_id() {
                    out.push(GroupAction::GiveUp { addr, lease });
                }
                self.set(
                    addr,
                    AddrState::Releasing {
                        epoch,
                        phase: HookPhase::PostRel,
                        reason,
                    },
                    out,
                );
                self.queue_hook(addr, HookPhase::PostRel);
            }
            (
                AddrState::Releasing {
                    reason,
                    phase: HookPhase::PostRel,
                    ..
                },
                HookPhase::PostRel,
            ) => {
                if reason == GroupReason::Preempted {
                    // Give the better member time to take it, not the step of our rank.
                    self.retry_after.insert(addr, now + self.config.lease_ttl);
                }
                self.set(addr, AddrState::Free, out);
                out.push(GroupAction::Notify(GroupNotice::Released { addr, reason }));
            }
            _ => {}
        }
    }

    fn start_release(
        &mut self,
        addr: IpAddr,
        epoch: i64,
        reason: GroupReason,
        out: &mut Vec<GroupAction>,
    ) {
        self.set(
            addr,
            AddrState::Releasing {
                epoch,
                phase: HookPhase::PreRel,
                reason,
            },
            out,
        );
        self.queue_hook(addr, HookPhase::PreRel);
    }

    /// The link rule: an address whose link goes down here cannot be served here, so it is
    /// given up at once (removed, its key deleted so that a member whose link works can
    /// acquire it, then `PostRel` with the reason `link-down`), and nothing is acquired on a
    /// down link until it is back.
    fn links_changed(&mut self, addrs: Vec<IpAddr>, out: &mut Vec<GroupAction>) {
        let down: BTreeSet<IpAddr> = addrs
            .into_iter()
            .filter(|a| self.addrs.contains_key(a))
            .collect();
        let newly: Vec<IpAddr> = down.difference(&self.links_down).copied().collect();
        let was_down = !self.links_down.is_empty();
        self.links_down = down;
        let lease = self.lease_id();
        for addr in &newly {
            let addr = *addr;
            let Some(state) = self.addrs.get(&addr).copied() else {
                continue;
            };
            match state {
                AddrState::Held { epoch }
                | AddrState::Acquiring {
                    epoch,
                    phase: HookPhase::PostAcq,
                }
                | AddrState::Releasing {
                    epoch,
                    phase: HookPhase::PreRel,
                    ..
                } => {
                    out.push(GroupAction::Remove { addr });
                    if let Some(lease) = lease {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                    self.enter_release_after_removal(addr, epoch, GroupReason::LinkDown, out);
                }
                AddrState::Acquiring { epoch, .. } => {
                    // Test or PreAcq: nothing added yet; PostRel undoes what PreAcq started.
                    if let Some(lease) = lease {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                    self.enter_release_after_removal(addr, epoch, GroupReason::LinkDown, out);
                }
                AddrState::Probing { .. } | AddrState::Conflict { .. } => {
                    if let Some(lease) = lease {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                    self.set(addr, AddrState::Free, out);
                }
                AddrState::Waiting { .. } => self.set(addr, AddrState::Free, out),
                // A try in flight is given up when its answer comes; a release goes on.
                AddrState::Trying | AddrState::Free | AddrState::Releasing { .. } => {}
            }
        }
        if !newly.is_empty() {
            out.push(GroupAction::Notify(GroupNotice::LinksDown {
                addrs: self.links_down.iter().copied().collect(),
            }));
        } else if was_down && self.links_down.is_empty() {
            out.push(GroupAction::Notify(GroupNotice::LinksUp));
        }
    }

    fn shutdown(&mut self, out: &mut Vec<GroupAction>) {
        self.stopping = true;
        if let Some(lease) = self.lease_id() {
            out.push(GroupAction::Unregister { lease });
        }
        let addrs: Vec<(IpAddr, AddrState)> = self.addrs.iter().map(|(a, s)| (*a, *s)).collect();
        for (addr, state) in addrs {
            match state {
                AddrState::Held { epoch } => {
                    self.start_release(addr, epoch, GroupReason::Shutdown, out)
                }
                AddrState::Waiting { .. } => self.set(addr, AddrState::Free, out),
                AddrState::Probing { .. } | AddrState::Conflict { .. } => {
                    if let Some(lease) = self.lease_id() {
                        out.push(GroupAction::GiveUp { addr, lease });
                    }
                    self.set(addr, AddrState::Free, out);
                }
                // An acquisition under way finishes (its hooks are not cut), then releases.
                _ => {}
            }
        }
        self.probing = None;
        self.conflicts = None;
    }

    fn start_conflict_round(&mut self, now: Instant, addr: IpAddr) {
        self.conflicts
            .get_or_insert_with(|| Round::new(GROUP_CONFLICT_ROUND / PROBES, now))
            .join(addr, now);
    }

    fn check_timers(&mut self, now: Instant, out: &mut Vec<GroupAction>) {
        // A put that did not get through (etcd was unreachable, or the key still stood under
        // a previous life's lease or another failoverd's): again, at most once per renewal
        // period, on a view or on time, until the view lists this member under its lease.
        if let (Some(lease), true, false) = (self.lease_id(), self.viewed, self.stopping) {
            if !self.registered()
                && self
                    .registered_at
                    .is_none_or(|t| now >= t + self.register_period())
            {
                self.registered_at = Some(now);
                out.push(GroupAction::Register { lease });
            }
        }
        // The refresh (FAILOVER_ANNOUNCE_REFRESH): what is held is announced again.
        let held = self.held();
        match (self.config.announce_refresh, held.is_empty()) {
            (Some(every), false) => match self.refreshed {
                None => self.refreshed = Some(now),
                Some(t) if now >= t + every => {
                    self.refreshed = Some(now);
                    out.extend(held.into_iter().map(|addr| GroupAction::Announce { addr }));
                }
                Some(_) => {}
            },
            _ => self.refreshed = None,
        }
        // The lease: ask for one, renew it.
        match self.lease {
            Lease::None if !self.stopping && self.grant_after.is_none_or(|t| now >= t) => {
                self.grant_after = None;
                self.lease = Lease::Granting;
                out.push(GroupAction::GrantLease);
            }
            Lease::Held {
                id,
                renew_at,
                renewing: false,
                ..
            } if now >= renew_at => {
                if let Lease::Held { renewing, .. } = &mut self.lease {
                    *renewing = true;
                }
                out.push(GroupAction::Renew { lease: id });
            }
            _ => {}
        }
        // A preemption that was waiting for the newcomer to be ready.
        if let (true, Some(t)) = (self.config.preempt, self.outranked_since) {
            if now >= t + self.preempt_delay()
                && self
                    .addrs
                    .values()
                    .any(|s| matches!(s, AddrState::Held { .. }))
            {
                self.reconcile(now, out);
            }
        }
        self.retry_after.retain(|_, at| now < *at);
        // Addresses whose wait is over: try, if still free and this member may.
        let due: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|(_, s)| matches!(s, AddrState::Waiting { at } if now >= *at))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            let free = !self.claimed(addr) && !self.links_down.contains(&addr);
            match self.lease_id() {
                Some(lease)
                    if free
                        && !self.retry_after.contains_key(&addr)
                        && !self.stopping
                        && self.mode == MemberMode::Active =>
                {
                    self.set(addr, AddrState::Trying, out);
                    if let Some(h) = self.view.holders.get(&addr) {
                        out.push(GroupAction::ClearStale {
                            addr,
                            epoch: h.epoch,
                        });
                    }
                    out.push(GroupAction::TryAcquire { addr, lease });
                }
                _ => self.set(addr, AddrState::Free, out),
            }
        }
        // Free addresses that became tryable again (a retry wait ended, a lease came).
        if self.can_acquire() && !self.stopping {
            let rank = self.rank();
            let free: Vec<IpAddr> = self
                .addrs
                .iter()
                .filter(|(a, s)| {
                    **s == AddrState::Free
                        && !self.claimed(**a)
                        && !self.retry_after.contains_key(a)
                        && !self.links_down.contains(a)
                })
                .map(|(a, _)| *a)
                .collect();
            for addr in free {
                let wait = priority_step(self.config.lease_ttl) * rank as u32;
                self.set(addr, AddrState::Waiting { at: now + wait }, out);
            }
        }
        self.check_round(now, out);
    }

    fn check_round(&mut self, now: Instant, out: &mut Vec<GroupAction>) {
        for conflict_round in [false, true] {
            let slot = if conflict_round {
                &mut self.conflicts
            } else {
                &mut self.probing
            };
            let Some(mut r) = slot.take() else {
                continue;
            };
            // One probe for everything that has not had its three.
            let wanted: Vec<IpAddr> = r
                .pending
                .iter()
                .filter(|p| p.probes < PROBES)
                .map(|p| p.addr)
                .collect();
            if !wanted.is_empty() && now >= r.next_probe {
                for p in r.pending.iter_mut().filter(|p| p.probes < PROBES) {
                    p.probes += 1;
                    p.last_probe = now;
                }
                r.next_probe = now + r.gap;
                out.push(GroupAction::Probe { addrs: wanted });
            }
            // Decide what has had its probes and a gap since the last.
            let (done, waiting): (Vec<Pending>, Vec<Pending>) = r
                .pending
                .into_iter()
                .partition(|p| p.probes >= PROBES && now >= p.last_probe + r.gap);
            r.pending = waiting;
            if !r.pending.is_empty() {
                *slot = Some(r);
            }
            for p in done {
                self.decide(now, p, out);
            }
        }
    }

    /// The outcome of an address's probes: added (its `Test` first), or a conflict probed
    /// again.
    fn decide(&mut self, now: Instant, p: Pending, out: &mut Vec<GroupAction>) {
        let addr = p.addr;
        let answered = self
            .answers
            .get(&addr)
            .filter(|(t, _)| *t >= p.joined)
            .map(|(_, mac)| *mac);
        match (self.addrs.get(&addr).copied(), answered) {
            (Some(AddrState::Probing { epoch }), None)
            | (Some(AddrState::Conflict { epoch, .. }), None) => {
                self.fenced_conflict.remove(&addr);
                self.set(
                    addr,
                    AddrState::Acquiring {
                        epoch,
                        phase: HookPhase::Test,
                    },
                    out,
                );
                self.queue_hook(addr, HookPhase::Test);
            }
            (Some(AddrState::Probing { epoch }), Some(mac)) => {
                self.set(addr, AddrState::Conflict { epoch, mac }, out);
                out.push(GroupAction::Notify(GroupNotice::Conflict { addr, mac }));
                if let std::collections::btree_map::Entry::Vacant(e) =
                    self.fenced_conflict.entry(addr)
                {
                    e.insert(true);
                    self.queue_hook(addr, HookPhase::Fence);
                } else {
                    self.start_conflict_round(now, addr);
                }
            }
            (Some(AddrState::Conflict { epoch, .. }), Some(mac)) => {
                self.set(addr, AddrState::Conflict { epoch, mac }, out);
                self.start_conflict_round(now, addr);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
