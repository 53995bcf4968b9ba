//! failoverd's state machine: fed with events and the current time, it answers with actions.
//!
//! It reads no clock and touches no socket. The shell calls [`Failover::handle`] with
//! `Instant::now()` taken once per loop turn, executes the [`Action`]s in order, and sleeps
//! until [`Failover::next_deadline`] or the next input. Spurious ticks are harmless.
//!
//! Every address of `FAILOVER_PEER_IP_PAIRS` is judged on its own (an address *slot*); one hook
//! sequence (a takeover or a release of some of them) runs at a time. The design is in
//! docs/handover.md; the rules, in one place:
//!
//! Watching
//! - The peer is *alive* while some link carried a verified heartbeat within the timeout.
//! - The timeout is `FAILOVER_TIMEOUT` if set, else three missed heartbeats: 3¼ × the
//!   interval the peer announced in its latest heartbeat (exactly 3 × would race the third
//!   heartbeat's arrival, so two losses in a row would make a takeover), else 3 s.
//! - A heartbeat of wire version 3 says, for each address, whether the primary answers for it
//!   (its own address, or a service address it holds), wants it (it waits for us to give it
//!   up), or neither. Apple's bare heartbeat says nothing: its addresses are judged by the
//!   release count, as before.
//! - One link silent for a timeout while another has carried heartbeats for a timeout, and at
//!   least an interval past the silent one's last, is a network anomaly (redundancy gone):
//!   notified, never a takeover. A link we cannot hear because we hold its source address is
//!   blind, not lost; a silent link whose interface now carries the peer's heartbeats from
//!   another source address was renumbered: it is forgotten, not lost.
//!
//! Giving back (never two holders)
//! - An address the alive primary answers for is given back at once, at its first verified
//!   heartbeat (one challenge round trip after its start): every moment longer is a moment of
//!   two holders.
//! - An address the alive primary wants is given back once the hold-off has run: zero for a
//!   first return, then growing with each return within [`HOLDOFF_WINDOW`], so that a flapping
//!   primary does not bounce its service addresses. It adds them only once we said, in a
//!   `released`, that we hold none: never two holders.
//! - A `released` is repeated every interval on every link until the primary's heartbeats
//!   acknowledge it.
//! - After giving an address back, it is watched for one timeout: if nobody answers for it,
//!   the handover failed (the primary cannot serve it) and we take it back, without `Fence`
//!   or conflict; its next return counts for the hold-off.
//! - What an administrator took over is given back only by an administrator; a primary that
//!   comes back answering for it is a conflict (reported at once, released after the grace);
//!   one that wants it is told that it is held by hand and waits.
//!
//! Taking over
//! - When no link carried a heartbeat for the timeout: every address is probed on the LAN
//!   ([`PROBES`] probes spread over the last part of the timeout, so that a dead peer is still
//!   taken over at the timeout); those nobody answered are taken over, those that answer are a
//!   *conflict* (no takeover while they answer: reported once, probed in rounds, taken over
//!   when a round gets no answer).
//! - At a goodbye of a host going down: every address at once, unprobed (a planned handover).
//!   At a goodbye of a host that stays up (only heartbeatd stops): the service addresses it
//!   removed before saying goodbye are taken at once; its own addresses keep answering, so they
//!   are watched by probe rounds and taken over only when a round gets no answer. A goodbye
//!   spares the probe for one timeout, not for ever.
//! - An address the alive primary neither answers for nor wants (its link is down, or it lost
//!   the address) for a whole timeout is probed, and taken over if nobody answers.
//! - The takeover runs `Test`; a refusal abandons it and it is tried again one timeout later.
//!   Then `PreAcq`, add, announce, `PostAcq`. If the peer is heard while `Test` runs, nothing
//!   has been done yet: the takeover is dropped. Once `PreAcq` has started, it completes.
//! - `Fence` runs only for a conflict that has lasted `FAILOVER_FENCE_AFTER`, never for a boot
//!   of the primary that said goodbye, never against the host we handed the address back to,
//!   and never while a reload that changed the secret or the peer settles.
//!
//! Holding
//! - Held addresses are probed while the peer is silent; another host answering for one of
//!   them while the primary does not claim it is reported once it has lasted a timeout (at
//!   once after a takeover by hand), defended at most once per [`DEFEND_INTERVAL`], and if it
//!   keeps answering for `FAILOVER_CONFLICT_GRACE` the address is released with hooks (reason
//!   `conflict`) and announced in that host's name: two hosts answering is worse than one.
//! - A held address that vanishes is added again and announced; a failed add is retried with
//!   back-off while held.
//!
//! A third host
//! - While the primary answers for an address, another MAC answering for it is a third host:
//!   reported once per episode (state `third-host` while we hold nothing).
//!
//! Start, reload and stop
//! - At start, a boot grace of one timeout before any takeover; addresses found on the
//!   interfaces are given back if the primary claims them, kept if it stays silent.
//! - A new peer (SIGHUP) while holding: the old peer's addresses are released first, with the
//!   old peer's hooks and a `released` to it; then the new peer is watched from scratch.
//! - Shutdown releases what is held (with hooks), then exits.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::probe::{self, Answers, Round};
pub use crate::probe::{Mac, DEFEND_INTERVAL, PROBES, PROBE_WINDOW_MAX, PROBE_WINDOW_PERCENT};
use crate::receive::Report;
use crate::wire::{Entry, Role};

/// A link is named by the peer's source address on it (one per subnet the peer sends on).
pub type LinkId = IpAddr;

/// The timeout used before the peer has announced its interval, when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// How many announced intervals of silence make a timeout, when none is configured: three
/// missed heartbeats.
pub const TIMEOUT_INTERVALS: u32 = 3;

/// The part of an interval added to [`TIMEOUT_INTERVALS`] when the timeout is derived: the
/// third missed heartbeat was due exactly 3 intervals after the last one, so without a margin
/// the deadline would race its arrival. A quarter interval covers the network's and the
/// sender's jitter.
pub const TIMEOUT_MARGIN_DIVISOR: u32 = 4;

/// While holding, the addresses are probed this often, at most (see [`hold_probe_every`]).
pub const HOLD_PROBE_MAX: Duration = Duration::from_secs(1);

/// The default of `FAILOVER_CONFLICT_GRACE`: how long another host may answer for an address
/// we hold before we give it up. Long enough for a host that said goodbye to finish shutting
/// down (its kernel answers until its links go down).
pub const DEFAULT_CONFLICT_GRACE: Duration = Duration::from_secs(30);

/// `FAILOVER_FENCE_AFTER` by default: this many timeouts of conflict, ...
pub const FENCE_AFTER_TIMEOUTS: u32 = 5;

/// ... and never less than this: a loss burst or a key rotation lasts less.
pub const FENCE_AFTER_MIN: Duration = Duration::from_secs(5);

/// The first retry of an add that failed; each further one waits twice as long, up to
/// [`ADD_RETRY_MAX`].
pub const ADD_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two retries of a failed add.
pub const ADD_RETRY_MAX: Duration = Duration::from_secs(30);

/// A reload that changed the secret or the peer settles for this many `FAILOVER_FENCE_AFTER`,
/// or until the peer's heartbeats verify again: no `Fence` meanwhile.
pub const SETTLE_FENCE_AFTERS: u32 = 3;

/// Returns of the primary within this long of each other count for the hold-off (or 20
/// timeouts, if that is longer).
pub const HOLDOFF_WINDOW: Duration = Duration::from_secs(60);

/// The longest hold-off.
pub const HOLDOFF_MAX: Duration = Duration::from_secs(60);

/// While the primary answers for its addresses, they are probed this often: a third host
/// answering for one of them shows itself (the probe's answers are unicast to us, where the
/// LAN's own traffic would not show them).
pub const WATCH_PROBE_EVERY: Duration = Duration::from_secs(5);

/// A gap longer than this between two turns is a stall (the deadlines wake the core at least
/// once a second while it holds anything).
pub const STALL: Duration = Duration::from_secs(2);

/// The probe window before a takeover for a given timeout.
pub fn probe_window(timeout: Duration) -> Duration {
    probe::window(timeout)
}

/// How often held addresses are probed for a conflict, for a given grace: four probes per
/// grace window, at most one per second, at least one per 10 ms.
pub fn hold_probe_every(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(10), HOLD_PROBE_MAX)
}

/// The default `FAILOVER_FENCE_AFTER` for a timeout.
pub fn default_fence_after(timeout: Duration) -> Duration {
    timeout
        .saturating_mul(FENCE_AFTER_TIMEOUTS)
        .max(FENCE_AFTER_MIN)
}

/// The settings the core needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// `FAILOVER_PEER_IP`: a new one is watched from scratch.
    pub peer: Option<IpAddr>,
    /// `FAILOVER_TIMEOUT`; `None` derives it from the peer's announced interval.
    pub timeout: Option<Duration>,
    /// `FAILOVER_RELEASE_AFTER`: for a peer whose heartbeats say nothing of its addresses
    /// (Apple's bare datagram), consecutive heartbeats on one link before a release.
    pub release_after: u32,
    /// The addresses we take over. While we may hold them, a link whose peer address is one
    /// of them is blind, not lost: the kernel drops datagrams whose source is a local address.
    pub taken_over: Vec<IpAddr>,
    /// `FAILOVER_CONFLICT_GRACE`: how long another host may answer for an address we hold.
    pub conflict_grace: Duration,
    /// `FAILOVER_FENCE_AFTER`; `None`: [`default_fence_after`] of the timeout.
    pub fence_after: Option<Duration>,
    /// The secret changed with this configuration (a reload): no `Fence` while it settles.
    pub key_changed: bool,
    /// `FAILOVER_ANNOUNCE_REFRESH`: announce what is held this often (`None`: only when it
    /// changes hands, and after a stall).
    pub announce_refresh: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peer: None,
            timeout: None,
            release_after: 3,
            taken_over: Vec::new(),
            conflict_grace: DEFAULT_CONFLICT_GRACE,
            fence_after: None,
            key_changed: false,
            announce_refresh: None,
        }
    }
}

/// failoverd's state, as the status file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just started: waiting one timeout before any takeover.
    BootGrace,
    /// The peer holds its addresses (or nobody needs to); we watch it.
    Monitoring,
    /// The peer is silent on every link, but another host still answers for an address:
    /// no takeover of it while it does.
    Conflict,
    /// The peer answers for its address, and a third host does too.
    ThirdHost,
    /// Taking over, at the given step.
    Acquiring(AcquireStep),
    /// We hold some of the peer's addresses.
    Acquired,
    /// Giving some back, at the given step.
    Releasing(ReleaseStep),
    /// Shut down; the shell exits.
    Stopped,
}

/// The steps of a takeover, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcquireStep {
    /// The `Test` hook decides whether to go on.
    Test,
    /// `PreAcq*` hooks.
    PreAcq,
    /// Adding the addresses.
    Adding,
    /// `PostAcq*` hooks, after the addresses are added and announced.
    PostAcq,
}

/// The steps of a release, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseStep {
    /// `PreRel*` hooks.
    PreRel,
    /// Removing the addresses.
    Removing,
    /// `PostRel*` hooks.
    PostRel,
}

impl State {
    /// Every state name, as the status file and `failoverctl` spell them.
    pub const NAMES: [&'static str; 8] = [
        "boot-grace",
        "monitoring",
        "conflict",
        "third-host",
        "acquiring",
        "acquired",
        "releasing",
        "stopped",
    ];

    /// The name used in status files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::BootGrace => "boot-grace",
            State::Monitoring => "monitoring",
            State::Conflict => "conflict",
            State::ThirdHost => "third-host",
            State::Acquiring(_) => "acquiring",
            State::Acquired => "acquired",
            State::Releasing(_) => "releasing",
            State::Stopped => "stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Acquiring(step) => write!(f, "acquiring ({step:?})"),
            State::Releasing(step) => write!(f, "releasing ({step:?})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why a transition happened. Those a takeover or release can have are also the hooks'
/// `FAILOVER_REASON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No heartbeat on any link for the timeout (and no other host answers).
    Timeout,
    /// The peer said goodbye.
    Goodbye,
    /// The peer is back and claims its addresses.
    PeerReturned,
    /// failoverd is stopping.
    Shutdown,
    /// An administrator asked for it.
    Manual,
    /// Another host answers for the address: no takeover, or a release of what we hold.
    Conflict,
    /// The boot grace ended.
    BootGraceOver,
    /// At start the addresses were already held and the peer is silent: kept.
    Reconcile,
    /// The `Test` hook refused the takeover.
    TestRefused,
    /// The peer was heard while `Test` ran, or during a conflict: the takeover was dropped.
    PeerAlive,
    /// The alive primary cannot serve the address (its link is down, or nobody answers).
    PeerCannotServe,
    /// We gave the address back and nobody answered for it: taken back.
    HandoverFailed,
    /// A new peer was configured: the old one's addresses go back first.
    NewPeer,
    /// A third host answers for an address the primary holds (or stopped doing so).
    ThirdHost,
}

impl Reason {
    /// The name used in status files, logs and `FAILOVER_REASON`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Goodbye => "goodbye",
            Reason::PeerReturned => "peer-returned",
            Reason::Shutdown => "shutdown",
            Reason::Manual => "manual",
            Reason::Conflict => "conflict",
            Reason::BootGraceOver => "boot-grace-over",
            Reason::Reconcile => "reconcile",
            Reason::TestRefused => "test-refused",
            Reason::PeerAlive => "peer-alive",
            Reason::PeerCannotServe => "peer-cannot-serve",
            Reason::HandoverFailed => "handover-failed",
            Reason::NewPeer => "new-peer",
            Reason::ThirdHost => "third-host",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hook events, in the order a takeover and a release run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPhase {
    /// Before a takeover; a non-zero exit refuses it.
    Test,
    /// When a takeover is blocked because another host answers for the address: the
    /// administrator's way to power the peer off. Exit 0: probe again at once.
    Fence,
    /// Before the addresses are added.
    PreAcq,
    /// After they are added and announced.
    PostAcq,
    /// Before they are removed.
    PreRel,
    /// After they are removed.
    PostRel,
}

impl HookPhase {
    /// The file-name prefix and `$1` of the hooks of this phase.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::Test => "Test",
            HookPhase::Fence => "Fence",
            HookPhase::PreAcq => "PreAcq",
            HookPhase::PostAcq => "PostAcq",
            HookPhase::PreRel => "PreRel",
            HookPhase::PostRel => "PostRel",
        }
    }
}

/// What the primary says of one of our addresses, in its latest verified heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// It answers for it now (its own address, or a service address it holds).
    Holds {
        /// It is the primary's own (identity) address, which it cannot give up.
        own: bool,
        /// heartbeatd manages it (a service address): it gives it up when asked.
        managed: bool,
    },
    /// It wants it: it waits for us to say we hold none of it.
    Wants,
    /// Neither: its link is down, or it does not have it.
    Free,
    /// We cannot tell (the peer is silent, says nothing of addresses, or cut its list).
    Unknown,
}

/// Another host answering for one of our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conflict {
    /// The address it answers for.
    pub addr: IpAddr,
    /// Its link-layer address.
    pub mac: Mac,
    /// When this episode began.
    pub since: Instant,
    /// Whether we hold the address (a conflict while holding) or were about to take over.
    pub holding: bool,
    /// When it last answered.
    pub last_answer: Instant,
    /// Whether the administrator was told. A conflict while holding is told (and defended)
    /// only once it has lasted a timeout: a returning peer announces itself a moment before
    /// its first heartbeat counts, and that is a failback, not a conflict.
    pub reported: bool,
}

/// A third host answering for an address the primary answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThirdHost {
    /// The address.
    pub addr: IpAddr,
    /// The third host's link-layer address.
    pub mac: Mac,
    /// The primary's, as its heartbeats give it.
    pub peer_mac: Mac,
    /// When it was first heard.
    pub since: Instant,
    /// When it was last heard.
    pub last: Instant,
}

/// What the peer is, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Not heard since we started (or since the peer changed).
    Unknown,
    /// Verified heartbeats within the timeout.
    Alive,
    /// Its heartbeatd said goodbye and its host stays up: its own addresses keep answering.
    DaemonStopped,
    /// It said goodbye and its host goes down.
    Leaving,
    /// No heartbeat for the timeout.
    Silent,
}

impl PeerState {
    /// The name used in status files.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Alive => "alive",
            PeerState::DaemonStopped => "daemon-stopped",
            PeerState::Leaving => "leaving",
            PeerState::Silent => "silent",
        }
    }
}

/// Who answers for one of our addresses, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This host.
    Here,
    /// The primary, by its heartbeats' word (or, its heartbeatd stopped, by its host's answers).
    Peer,
    /// Another host, by its link-layer address (a conflict).
    Other(Mac),
    /// Nobody: the primary does not claim it, we do not hold it, and nobody answered for it
    /// within the last timeout.
    Nobody,
    /// We cannot tell (the boot grace, or a primary that says nothing of its addresses).
    Unknown,
}

impl Holder {
    /// The name used in status files.
    pub fn as_str(self) -> &'static str {
        match self {
            Holder::Here => "here",
            Holder::Peer => "peer",
            Holder::Other(_) => "other",
            Holder::Nobody => "nobody",
            Holder::Unknown => "unknown",
        }
    }
}

/// To whom a release gave the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleasedTo {
    /// The primary, which claims them.
    Peer,
    /// The host with this link-layer address, which kept answering for them.
    Host(Mac),
    /// Nobody in particular (a stop, a release by hand, a new peer).
    Nobody,
}

/// Something the administrator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// We took over these of the peer's addresses.
    TookOver {
        /// Why.
        reason: Reason,
        /// Which.
        addrs: Vec<IpAddr>,
    },
    /// We gave these back.
    Released {
        /// Why.
        reason: Reason,
        /// Which.
        addrs: Vec<IpAddr>,
        /// To whom.
        to: ReleasedTo,
    },
    /// `Test` refused a takeover (once per outage).
    TakeoverRefused,
    /// One link went silent while another still carries heartbeats.
    LinkLost(LinkId),
    /// That link carries heartbeats again.
    LinkBack(LinkId),
    /// Another host answers for an address: the takeover is blocked (or, `holding`, we and
    /// it both answer). Once per episode.
    Conflict(Conflict),
    /// The conflict is over: the other host stopped answering, or the peer was heard.
    ConflictOver {
        /// Whether it was a conflict while holding.
        holding: bool,
    },
    /// A third host answers for an address the primary answers for. Once per episode.
    ThirdHost(ThirdHost),
    /// It stopped answering.
    ThirdHostOver(IpAddr),
    /// An address we hold vanished from its interface; it is being added again.
    AddressLost(IpAddr),
    /// The peer's heartbeatd stopped while its host stays up with these addresses; they are
    /// taken over when they stop answering.
    PeerDaemonStopped {
        /// What its host keeps answering for.
        kept: Vec<IpAddr>,
    },
    /// We gave these back and nobody answered for them: taken back.
    HandoverFailed(Vec<IpAddr>),
    /// The primary is back and wants these, which an administrator took over: it waits for
    /// `failoverctl release`.
    HeldByHand(Vec<IpAddr>),
    /// `Fence` was due but is not run, and why (once per conflict episode).
    FenceWithheld(&'static str),
    /// An administrator paused takeovers.
    Paused(Pause),
    /// Takeovers are on again: by hand, or (`auto`) at the end of a `pause --for`.
    Resumed {
        /// The pause ran out by itself.
        auto: bool,
    },
}

/// An input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A verified heartbeat from the peer arrived on a link.
    Heartbeat {
        /// The link it arrived on.
        link: LinkId,
        /// The peer's announced interval (`None` for Apple's bare datagram).
        interval: Option<Duration>,
        /// The local interface it arrived on (an index), if known: a link whose interface
        /// carries heartbeats from a new source address was renumbered.
        via: Option<u32>,
        /// The peer's boot (0 for Apple's bare datagram).
        boot: u64,
        /// What it says of its addresses (`None`: Apple's bare datagram).
        report: Option<Report>,
    },
    /// A verified goodbye from the peer arrived on a link.
    Goodbye {
        /// The link it arrived on.
        link: LinkId,
        /// The boot saying goodbye.
        boot: u64,
        /// Only heartbeatd stops; the host stays up with its own addresses.
        stays_up: bool,
        /// What it still holds.
        report: Report,
    },
    /// Another host (not us) answered a probe for one of our addresses, or announced it.
    ProbeAnswer {
        /// The address.
        addr: IpAddr,
        /// The other host's link-layer address.
        mac: Mac,
    },
    /// A datagram from one of the peer's addresses whose tag this host's key does not verify:
    /// the peer is alive and keyed differently (a secret rewritten on one host, a rotation
    /// under way), not stuck, so `Fence` waits (a datagram anybody can forge, so it never
    /// counts as a heartbeat).
    ForeignKey,
    /// Time passed; check deadlines.
    Tick,
    /// The hooks of a phase finished; `ok` is false if one failed (for `Test`: refused).
    HooksDone {
        /// Which phase.
        phase: HookPhase,
        /// Whether every hook succeeded.
        ok: bool,
    },
    /// The addresses of an [`Action::AddAddresses`] were added, but for `failed`.
    AddressesAdded {
        /// What could not be added.
        failed: Vec<IpAddr>,
    },
    /// The addresses of an [`Action::RemoveAddresses`] were removed, but for `failed`.
    AddressesRemoved {
        /// What could not be removed.
        failed: Vec<IpAddr>,
    },
    /// One of our addresses vanished from its interface (an `ip addr del`, a network manager).
    AddressMissing {
        /// The address.
        addr: IpAddr,
    },
    /// Stop: release what is held, then exit.
    Shutdown,
    /// New settings (SIGHUP).
    Reconfigure(Config),
    /// An administrator's command (`failoverctl pause` ...), answered with
    /// [`Action::Answer`].
    Command(Command),
}

/// What an administrator can ask of failoverd. Each is answered with one [`Action::Answer`];
/// what it starts has the reason [`Reason::Manual`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Never take over until resumed (or until `until`); keep watching. What is held stays
    /// held, and the rules still give it back.
    Pause {
        /// Resume by itself at this instant; `None`: until `Resume`.
        until: Option<Instant>,
    },
    /// Take over again when the peer is silent.
    Resume,
    /// Give the addresses back now. Refused while the peer is silent (nobody would hold them)
    /// unless `force`; forced, no takeover follows for one timeout.
    Release {
        /// Release even though the peer is silent.
        force: bool,
    },
    /// Take over now. A service address the alive primary holds is asked back first (it
    /// removes it, then we add it); otherwise after a probe round finds that nobody answers
    /// (or at once with `force`). What is taken over by hand is kept until released by hand.
    Takeover {
        /// Take over even if another host answers.
        force: bool,
    },
}

/// Whether a pause is in force, and since and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pause {
    /// When it began.
    pub since: Instant,
    /// When it ends by itself, if it does.
    pub until: Option<Instant>,
}

/// What failoverd tells the primary in a `released` datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutReport {
    /// The id of the release to acknowledge (0: none).
    pub id: u64,
    /// The primary's wait token this answers (0: none).
    pub token: u64,
    /// What we say of each of the primary's addresses we take over: held (by hand), asked
    /// back, or none (we hold none of it).
    pub entries: Vec<Entry>,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The state changed (for logs, status and mail).
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Run the hooks of a phase, one at a time, then report [`Event::HooksDone`].
    RunHooks {
        /// Which phase.
        phase: HookPhase,
        /// The takeover's or release's reason (`FAILOVER_REASON`).
        reason: Reason,
        /// The addresses acted on (`FAILOVER_PEER_IP_PAIRS` for the hooks).
        addrs: Vec<IpAddr>,
    },
    /// Add these addresses, then report [`Event::AddressesAdded`].
    AddAddresses(Vec<IpAddr>),
    /// Announce these addresses now and repeat it a few times (gratuitous ARP / NA).
    Announce(Vec<IpAddr>),
    /// Stop repeating announcements of these (they are about to go).
    StopAnnouncing(Vec<IpAddr>),
    /// Send one probe for each (ARP probe with sender 0.0.0.0, RFC 5227; DAD neighbour
    /// solicitation for IPv6); answers come back as [`Event::ProbeAnswer`].
    Probe(Vec<IpAddr>),
    /// Announce these held addresses once, to pull the LAN back to us (RFC 5227 §2.4 (b)).
    Defend(Vec<IpAddr>),
    /// Remove these addresses, then report [`Event::AddressesRemoved`].
    RemoveAddresses(Vec<IpAddr>),
    /// These were given up to the host that kept answering for them: announce them on its
    /// behalf (its link-layer address as the sender), repeated, so the LAN's caches go back
    /// to it even if it announces nothing itself.
    HandBack {
        /// The link-layer address of the host that answers for them.
        mac: Mac,
        /// The addresses.
        addrs: Vec<IpAddr>,
    },
    /// Send a `released` report to the primary on every link it is heard on.
    SendReport(OutReport),
    /// The configuration of a reload is in force now (after the old peer's addresses went
    /// back): the shell switches to the new peer's hooks and links.
    Reconfigured,
    /// Tell the administrator.
    Notify(Notice),
    /// The answer to the administrator's command under way: done (`Ok`, what was done) or
    /// refused (`Err`, why).
    Answer(Result<String, String>),
    /// Exit the process.
    Exit,
}

/// What the core knows of one link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// When its last valid heartbeat arrived.
    pub last: Instant,
    /// Since when it has carried heartbeats without a silence as long as the timeout.
    pub up_since: Instant,
    /// Consecutive heartbeats counted towards a release (Apple's bare heartbeats).
    pub consecutive: u32,
    /// Valid heartbeats received on it, ever.
    pub heartbeats: u64,
    /// Whether it is flagged as lost while another link carries heartbeats.
    pub anomaly: bool,
    /// Its silence is measured from here or its last heartbeat, whichever is later: the end
    /// of a time in which we could not hear it (we held its source address).
    pub judged_from: Instant,
    /// The local interface it arrives on, if known.
    pub via: Option<u32>,
    /// When it was first heard.
    pub first: Instant,
}

/// A link of the primary counts as lost for [`Reason::PeerCannotServe`] once it has been
/// silent this many timeouts, and at least [`LOST_LINK_HEARTBEATS`] intervals, while another
/// carries heartbeats: heavy loss silences a link for one timeout now and then (at 30 % loss,
/// ten heartbeats in a row are lost once in about 170,000), a dead NIC for good.
pub const LOST_LINK_TIMEOUTS: u32 = 2;

/// See [`LOST_LINK_TIMEOUTS`].
pub const LOST_LINK_HEARTBEATS: u32 = 10;

/// While waiting for the primary to show it can serve an address taken back, probes go out
/// at most this often (and at least every probe round).
pub const PROOF_PROBE_MIN: Duration = Duration::from_millis(250);

/// Unanswered probe rounds in a row before an address the primary still claims is taken for
/// a lost link: one round lost to the same loss must not make two holders.
pub const LOST_LINK_ROUNDS: u32 = 2;

impl Link {
    /// When its silence started, for judging it.
    fn silent_since(&self) -> Instant {
        self.last.max(self.judged_from)
    }
}

/// One of our addresses, judged on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The address.
    pub addr: IpAddr,
    /// On our interface, as far as our own operations tell.
    pub held: bool,
    /// Taken over by an administrator: given back only by one.
    pub manual: bool,
    /// What the primary says of it.
    pub claim: Claim,
    /// Since when it says so.
    pub claim_since: Instant,
    /// The link-layer address the primary answers with for it, if it said.
    pub peer_mac: Option<Mac>,
    /// We gave it to the primary at this instant and wait to hear that someone answers.
    released_at: Option<Instant>,
    /// The probe round watching that handover.
    handover_round: Option<Round>,
    /// Rounds of that watch that nobody answered so far.
    handover_misses: u32,
    /// We ask the primary to give it up (a failed handover, or a takeover by hand).
    asked_back: Option<Reason>,
    /// Taken back after a failed handover: given back only once the primary shows it can
    /// serve it (it answers for it).
    awaits_proof: Option<Instant>,
    /// Taken because a link of the primary was lost and nobody answered: also given back
    /// when every link carries heartbeats again.
    taken_for_lost_link: bool,
}

impl Slot {
    fn new(addr: IpAddr, held: bool, now: Instant) -> Slot {
        Slot {
            addr,
            held,
            manual: false,
            claim: Claim::Unknown,
            claim_since: now,
            peer_mac: None,
            released_at: None,
            handover_round: None,
            handover_misses: 0,
            asked_back: None,
            awaits_proof: None,
            taken_for_lost_link: false,
        }
    }
}

/// A takeover or release under way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Sequence {
    /// A takeover (else a release).
    acquire: bool,
    addrs: Vec<IpAddr>,
    reason: Reason,
    /// After a conflict release: the host given the addresses.
    handback: Option<Mac>,
}

/// Why an automatic probe round runs, and what follows its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Purpose {
    /// A takeover on silence: answered addresses are a conflict.
    Timeout,
    /// The kept addresses of a host whose daemon said goodbye: answers are expected.
    Watch,
    /// Addresses the alive primary cannot serve.
    Unserved,
}

/// The notice of the latest goodbye.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Goodbye {
    at: Instant,
    boot: u64,
    stays_up: bool,
    /// What its host keeps answering for.
    kept: Vec<IpAddr>,
    /// It has started its takeover (copies of it ask for nothing more).
    used: bool,
}

/// The earliest instant at which any rule wants another look: every rule that waits for a
/// time registers it here while it is judged, so [`Failover::next_deadline`] cannot disagree
/// with the rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Timers {
    now: Option<Instant>,
    next: Option<Instant>,
}

impl Timers {
    fn start(now: Instant) -> Timers {
        Timers {
            now: Some(now),
            next: None,
        }
    }

    /// Wants a look at `t`, if it is still to come.
    fn at(&mut self, t: Instant) {
        if self.now.is_some_and(|now| t > now) {
            self.next = Some(self.next.map_or(t, |n| n.min(t)));
        }
    }
}

/// failoverd's decisions.
#[derive(Debug, Clone, Hash)]
pub struct Failover {
    config: Config,
    state: State,
    started: Instant,
    /// The peer is watched since then (the start, or a change of peer).
    watch_since: Instant,
    slots: Vec<Slot>,
    links: BTreeMap<LinkId, Link>,
    last_heard: Option<Instant>,
    announced_interval: Option<Duration>,
    /// The peer's boot whose heartbeats count now, and whether it speaks of its addresses.
    peer_boot: Option<u64>,
    legacy: bool,
    /// The primary's wait token and the release id it acknowledged, from its latest report.
    peer_token: u64,
    peer_ack: u64,
    /// Its report was cut: an address it does not list may still be held.
    peer_truncated: bool,
    /// Boots of the peer that said goodbye: never fenced.
    said_goodbye: Vec<u64>,
    goodbye: Option<Goodbye>,
    /// A refused takeover is not retried before this instant.
    retry_not_before: Option<Instant>,
    /// `Test` refused during the current outage (mail once per outage).
    refused_this_outage: bool,
    seq: Option<Sequence>,
    /// Shutdown was asked for.
    stop_requested: bool,
    /// The peer was heard while `Test` ran.
    heard_during_test: bool,
    /// The automatic probe round under way.
    round: Option<(Purpose, Round)>,
    answers: Answers,
    conflict: Option<Conflict>,
    /// The `Fence` hooks ran in this conflict episode; they are running.
    fenced: bool,
    fence_running: bool,
    /// Why `Fence` was withheld in this episode, once told.
    fence_withheld_told: bool,
    /// No `Fence` before this instant (a reload of the secret or the peer settles).
    fence_not_before: Option<Instant>,
    /// When a datagram from the peer's addresses last failed its tag ([`Event::ForeignKey`]).
    foreign_key_at: Option<Instant>,
    /// Unanswered rounds in a row for an address the primary claims while a link is lost.
    unserved_misses: u32,
    /// Unanswered rounds in a row in a conflict.
    conflict_misses: u32,
    /// The host we last handed addresses back to after a conflict.
    handed_back_to: Option<Mac>,
    third: Option<ThirdHost>,
    /// When held addresses were last probed; when the primary's were (for a third host);
    /// when we last defended one; when they were last announced by the refresh.
    hold_probed: Option<Instant>,
    watch_probed: Option<Instant>,
    refreshed: Option<Instant>,
    defended: Option<Instant>,
    /// A failed add is retried at this instant, and the wait after that.
    add_retry: Option<(Instant, Duration)>,
    /// Releases to the returning primary, for the hold-off.
    returns: VecDeque<Instant>,
    /// The release whose acknowledgement we wait for, and when we last sent a report.
    release_id: u64,
    ids_drawn: u64,
    seed: u64,
    report_sent: Option<Instant>,
    /// The wait token we last answered.
    answered_token: u64,
    /// The primary was told which addresses are held by hand.
    held_by_hand_told: bool,
    /// A reload waiting for the old peer's addresses to go back.
    pending: Option<Config>,
    pause: Option<Pause>,
    /// A takeover by hand waits for its probe round, or for the primary to give up what it
    /// was asked back.
    manual_round: Option<Round>,
    manual_asked: bool,
    timers: Timers,
    /// The latest time the shell handed in: what has been judged already.
    now: Instant,
}

impl Failover {
    /// Starts in boot grace. `held_at_start` lists those of the addresses the interfaces
    /// already hold (a restart while we held them); `seed` (random) seeds the release ids.
    pub fn new(now: Instant, config: Config, held_at_start: &[IpAddr], seed: u64) -> Failover {
        let slots = config
            .taken_over
            .iter()
            .map(|&a| Slot::new(a, held_at_start.contains(&a), now))
            .collect();
        let mut f = Failover {
            config,
            state: State::BootGrace,
            started: now,
            watch_since: now,
            slots,
            links: BTreeMap::new(),
            last_heard: None,
            announced_interval: None,
            peer_boot: None,
            legacy: false,
            peer_token: 0,
            peer_ack: 0,
            peer_truncated: false,
            said_goodbye: Vec::new(),
            goodbye: None,
            retry_not_before: None,
            refused_this_outage: false,
            seq: None,
            stop_requested: false,
            heard_during_test: false,
            round: None,
            answers: Answers::new(),
            conflict: None,
            fenced: false,
            fence_running: false,
            fence_withheld_told: false,
            fence_not_before: None,
            foreign_key_at: None,
            unserved_misses: 0,
            conflict_misses: 0,
            handed_back_to: None,
            third: None,
            hold_probed: None,
            watch_probed: None,
            refreshed: None,
            defended: None,
            add_retry: None,
            returns: VecDeque::new(),
            release_id: 0,
            ids_drawn: 0,
            seed,
            report_sent: None,
            answered_token: 0,
            held_by_hand_told: false,
            pending: None,
            pause: None,
            manual_round: None,
            manual_asked: false,
            timers: Timers::default(),
            now,
        };
        f.judge(now, &mut Vec::new());
        f
    }

    // ----- What the shell reads -----

    /// The pause in force, if any.
    pub fn pause(&self) -> Option<Pause> {
        self.pause
    }

    /// Whether an administrator's takeover holds some of the addresses.
    pub fn manual_hold(&self) -> bool {
        self.slots.iter().any(|s| s.held && s.manual)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Every address, judged.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The addresses that may be on our interfaces now.
    pub fn held(&self) -> Vec<IpAddr> {
        self.slots
            .iter()
            .filter(|s| s.held)
            .map(|s| s.addr)
            .collect()
    }

    /// Whether any of the peer's addresses may be on our interfaces now.
    pub fn holds_addresses(&self) -> bool {
        self.slots.iter().any(|s| s.held)
            || self
                .seq
                .as_ref()
                .is_some_and(|s| s.acquire && self.state == State::Acquiring(AcquireStep::Adding))
    }

    /// The links seen so far, by the peer's source address.
    pub fn links(&self) -> &BTreeMap<LinkId, Link> {
        &self.links
    }

    /// The conflict under way, if any.
    pub fn conflict(&self) -> Option<&Conflict> {
        self.conflict.as_ref()
    }

    /// The third host answering for the primary's address, if any.
    pub fn third_host(&self) -> Option<&ThirdHost> {
        self.third.as_ref()
    }

    /// The timeout in force now.
    pub fn timeout(&self) -> Duration {
        self.config.timeout.unwrap_or_else(|| {
            self.announced_interval
                .map(|i| i.saturating_mul(TIMEOUT_INTERVALS) + i / TIMEOUT_MARGIN_DIVISOR)
                .unwrap_or(DEFAULT_TIMEOUT)
        })
    }

    /// How long a conflict lasts before `Fence` runs.
    pub fn fence_after(&self) -> Duration {
        self.config
            .fence_after
            .unwrap_or_else(|| default_fence_after(self.timeout()))
    }

    /// The interval the peer announced last, if any.
    pub fn announced_interval(&self) -> Option<Duration> {
        self.announced_interval
    }

    /// When the last valid heartbeat arrived on any link.
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// When the core started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the boot grace ends (or ended): one timeout, the one in force now, after start.
    pub fn grace_end(&self) -> Instant {
        self.watch_since + self.timeout()
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the peer carried a heartbeat within the timeout on some link.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.last_heard.is_some_and(|t| now < t + self.timeout())
    }

    /// What the peer is, as far as we can tell at `now`.
    pub fn peer_state(&self, now: Instant) -> PeerState {
        if let Some(g) = &self.goodbye {
            if self.last_heard.is_none_or(|t| t <= g.at) {
                return if g.stays_up {
                    PeerState::DaemonStopped
                } else {
                    PeerState::Leaving
                };
            }
        }
        match self.last_heard {
            None => PeerState::Unknown,
            Some(_) if self.peer_alive(now) => PeerState::Alive,
            Some(_) => PeerState::Silent,
        }
    }

    /// Who answers for `addr` at `now`, as far as we can tell.
    pub fn holder(&self, addr: IpAddr, now: Instant) -> Holder {
        let Some(s) = self.slots.iter().find(|s| s.addr == addr) else {
            return Holder::Unknown;
        };
        if s.held {
            return Holder::Here;
        }
        let timeout = self.timeout();
        let heard = self
            .answers
            .latest(addr)
            .filter(|(t, _)| now < *t + timeout);
        let alive = self.peer_alive(now);
        match (alive, s.claim) {
            (true, Claim::Holds { .. }) => return Holder::Peer,
            (true, Claim::Unknown) if self.legacy => return Holder::Unknown,
            _ => {}
        }
        if self
            .goodbye
            .as_ref()
            .is_some_and(|g| g.stays_up && g.kept.contains(&addr))
            && heard.is_some()
        {
            return Holder::Peer;
        }
        match heard {
            Some((_, mac)) if s.peer_mac == Some(mac) => Holder::Peer,
            Some((_, mac)) => Holder::Other(mac),
            None if self.state == State::BootGrace || self.last_heard.is_none() => Holder::Unknown,
            // The live peer says it does not have it: nobody, once the probe that follows
            // has had its window to be answered.
            None if alive
                && s.claim == Claim::Free
                && now < s.claim_since + timeout + probe::window(timeout) =>
            {
                Holder::Unknown
            }
            None => Holder::Nobody,
        }
    }

    /// The hold-off a primary that wants its addresses back waits now.
    pub fn holdoff(&self) -> Duration {
        let n = self.returns.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let shift = u32::try_from(n.min(16)).unwrap_or(16);
        self.timeout()
            .saturating_mul(1u32 << shift.saturating_sub(1).min(15))
            .min(HOLDOFF_MAX)
    }

    /// The next instant at which the core wants a [`Event::Tick`], if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next
    }

    // ----- Input -----

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        // Not judged for far longer than any deadline allows (a stopped process, a suspended
        // VM): the LAN may have moved on, so what we hold is announced again.
        let stalled = now > self.now + STALL && self.seq.is_none() && !self.held().is_empty();
        self.now = self.now.max(now);
        if stalled {
            out.push(Action::Announce(self.held()));
        }
        match event {
            Event::Heartbeat {
                link,
                interval,
                via,
                boot,
                report,
            } => self.handle_heartbeat(now, link, interval, via, boot, report, &mut out),
            Event::Goodbye {
                link: _,
                boot,
                stays_up,
                report,
            } => self.handle_goodbye(now, boot, stays_up, &report, &mut out),
            Event::ProbeAnswer { addr, mac } => self.handle_answer(now, addr, mac, &mut out),
            Event::ForeignKey => self.foreign_key_at = Some(now),
            Event::Tick => {}
            Event::HooksDone { phase, ok } => self.handle_hooks_done(now, phase, ok, &mut out),
            Event::AddressesAdded { failed } => self.handle_added(now, &failed, &mut out),
            Event::AddressesRemoved { failed } => self.handle_removed(now, &failed, &mut out),
            Event::AddressMissing { addr } => {
                // Held, and gone from under us: put it back (adding is idempotent) and tell.
                let idle = self.seq.is_none();
                if let Some(s) = self.slots.iter_mut().find(|s| s.addr == addr && s.held) {
                    if idle {
                        out.push(Action::Notify(Notice::AddressLost(addr)));
                        out.push(Action::AddAddresses(vec![addr]));
                    }
                    let _ = s;
                }
            }
            Event::Shutdown => {
                self.stop_requested = true;
            }
            Event::Reconfigure(config) => self.reconfigure(now, config, &mut out),
            Event::Command(c) => self.handle_command(now, c, &mut out),
        }
        self.judge(now, &mut out);
        out
    }

    /// Applies every rule that time or the last event made due, and registers when each
    /// rule wants its next look.
    fn judge(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.timers = Timers::start(now);
        // A `pause --for` that has run its time.
        if let Some(until) = self.pause.and_then(|p| p.until) {
            if now >= until {
                self.pause = None;
                out.push(Action::Notify(Notice::Resumed { auto: true }));
            } else {
                self.timers.at(until);
            }
        }
        self.check_links(now, out);
        self.check_third_host(now, out);
        self.check_handovers(now, out);
        self.check_reports(now, out);
        // A state entered here may have deadlines of its own that passed already: judged
        // again at once, a few times at most.
        for _ in 0..4 {
            let before = (self.state, self.seq.clone());
            self.decide(now, out);
            if (self.state, self.seq.clone()) == before {
                break;
            }
        }
        self.check_manual_round(now, out);
        if self.state == State::Acquired || self.manual_hold() {
            self.check_holding(now, out);
        }
        // While holding, the peer's return is news (the hold probes stop); after a goodbye,
        // its freshness runs out; the peer falling silent is news for the status.
        if let Some(t) = self.last_heard {
            self.timers.at(t + self.timeout());
        }
        if let Some(g) = &self.goodbye {
            self.timers.at(g.at + self.timeout());
        }
    }

    // ----- Heartbeats, goodbyes, answers -----

    #[allow(clippy::too_many_arguments)]
    fn handle_heartbeat(
        &mut self,
        now: Instant,
        id: LinkId,
        interval: Option<Duration>,
        via: Option<u32>,
        boot: u64,
        report: Option<Report>,
        out: &mut Vec<Action>,
    ) {
        if let Some(i) = interval {
            self.announced_interval = Some(i);
        }
        let timeout = self.timeout();
        let was_alive = self.peer_alive(now);
        self.last_heard = Some(now);
        // A heartbeat ends an outage: the next refusal of Test is mailed again.
        self.refused_this_outage = false;
        self.retry_not_before = None;
        if self.state == State::Acquiring(AcquireStep::Test) {
            self.heard_during_test = true;
        }
        if self.peer_boot != Some(boot) {
            self.peer_boot = Some(boot);
        }
        // Verified again after a reload of the secret or the peer: settled.
        self.fence_not_before = None;
        // Heard after its goodbye: that goodbye is over (the boot is still never fenced).
        if self.goodbye.as_ref().is_some_and(|g| g.at <= now) {
            self.goodbye = None;
        }
        let link = self.links.entry(id).or_insert(Link {
            last: now,
            up_since: now,
            consecutive: 0,
            heartbeats: 0,
            anomaly: false,
            judged_from: now,
            via,
            first: now,
        });
        // A heartbeat after a silence as long as the timeout starts a new run.
        if now >= link.last + timeout || link.heartbeats == 0 {
            link.up_since = now;
            link.consecutive = 0;
        }
        link.last = now;
        link.via = via.or(link.via);
        link.heartbeats += 1;
        link.consecutive = link.consecutive.saturating_add(1);
        if link.anomaly {
            link.anomaly = false;
            out.push(Action::Notify(Notice::LinkBack(id)));
        }
        match report {
            None => {
                self.legacy = true;
                for s in &mut self.slots {
                    s.claim = Claim::Unknown;
                }
            }
            Some(r) => {
                self.legacy = false;
                self.take_report(now, &r);
            }
        }
        // The peer is alive: whatever answered for its address while it was silent was the
        // peer.
        if !was_alive || self.state == State::Conflict {
            if let Some(c) = self.conflict {
                if !c.holding || self.config.taken_over.contains(&c.addr) {
                    self.end_conflict(Some(out));
                }
            }
        }
        if self.state == State::Conflict {
            self.round = None;
            self.set_state(State::Monitoring, Reason::PeerAlive, out);
        }
    }

    /// The primary's word on each of our addresses.
    fn take_report(&mut self, now: Instant, r: &Report) {
        self.peer_token = r.token;
        self.peer_ack = r.ack;
        self.peer_truncated = r.truncated;
        for s in &mut self.slots {
            let entry = r.entries.iter().find(|e| e.addr == s.addr);
            let claim = match entry {
                Some(e) if e.role.has(Role::HOLDS) => Claim::Holds {
                    own: e.role.has(Role::IDENTITY),
                    managed: e.role.has(Role::MANAGED),
                },
                Some(e) if e.role.has(Role::WANTS) => Claim::Wants,
                Some(_) => Claim::Free,
                None if r.truncated => Claim::Unknown,
                None => Claim::Free,
            };
            if let Some(e) = entry.filter(|e| e.role.has(Role::HOLDS) && e.mac != [0; 6]) {
                s.peer_mac = Some(e.mac);
            }
            if claim != s.claim {
                s.claim = claim;
                s.claim_since = now;
            }
        }
    }

    fn handle_goodbye(
        &mut self,
        now: Instant,
        boot: u64,
        stays_up: bool,
        report: &Report,
        out: &mut Vec<Action>,
    ) {
        // A goodbye ends every run of heartbeats: after it, only fresh ones count.
        for link in self.links.values_mut() {
            link.consecutive = 0;
        }
        if !self.said_goodbye.contains(&boot) {
            self.said_goodbye.push(boot);
            if self.said_goodbye.len() > 8 {
                self.said_goodbye.remove(0);
            }
        }
        // heartbeatd says goodbye more than once, on every link: the copies ask for nothing
        // more than the first.
        if self.goodbye.as_ref().is_some_and(|g| g.boot == boot) {
            return;
        }
        // The peer is no longer heard from now: its freshness ends with its goodbye.
        self.last_heard = self
            .last_heard
            .map(|t| t.min(now.checked_sub(self.timeout()).unwrap_or(t)));
        let kept: Vec<IpAddr> = if stays_up {
            report
                .entries
                .iter()
                .filter(|e| e.role.has(Role::HOLDS))
                .map(|e| e.addr)
                .filter(|a| self.config.taken_over.contains(a))
                .collect()
        } else {
            Vec::new()
        };
        for s in &mut self.slots {
            s.claim = if kept.contains(&s.addr) {
                Claim::Holds {
                    own: true,
                    managed: false,
                }
            } else {
                Claim::Free
            };
            s.claim_since = now;
            // Whatever we gave back and watched is the peer's business no more.
            s.released_at = None;
            s.handover_round = None;
        }
        if stays_up && !kept.is_empty() {
            out.push(Action::Notify(Notice::PeerDaemonStopped {
                kept: kept.clone(),
            }));
        }
        self.goodbye = Some(Goodbye {
            at: now,
            boot,
            stays_up,
            kept,
            used: false,
        });
        // A planned handover while a conflict blocked the takeover: the goodbye settles it.
        if self.state == State::Conflict && !self.fence_running {
            self.end_conflict(Some(out));
            self.round = None;
            self.set_state(State::Monitoring, Reason::Goodbye, out);
        }
    }

    /// Another host answered for one of our addresses.
    fn handle_answer(&mut self, now: Instant, addr: IpAddr, mac: Mac, out: &mut Vec<Action>) {
        let peer_alive = self.peer_alive(now);
        let idle = self.seq.is_none();
        let Some(slot) = self.slots.iter_mut().find(|s| s.addr == addr) else {
            return;
        };
        self.answers.record(now, addr, mac);
        // Someone answers for what we gave back: the handover worked.
        if slot.released_at.is_some() {
            slot.released_at = None;
            slot.handover_round = None;
        }
        let (held, claim, peer_mac, awaits_proof, manual_slot) = (
            slot.held,
            slot.claim,
            slot.peer_mac,
            slot.awaits_proof.is_some(),
            slot.manual,
        );
        if let Some(c) = &mut self.conflict {
            if c.addr == addr || !c.holding {
                c.last_answer = now;
                c.mac = mac;
                return;
            }
            // Another address we hold answers during a conflict while holding: the same
            // episode goes on (a new one would start the grace again at each answer, for ever
            // while both answer); it is given up with the rest at the end of the grace.
            if held {
                c.last_answer = now;
                return;
            }
        }
        // While we hold it and the primary does not claim it, an answer is a conflict while
        // holding (the primary silent, or a third host); a claimed one is given back anyway.
        if held {
            // What an administrator took over and the primary answers for too is a conflict:
            // reported at once, given up after the grace.
            let manual = manual_slot;
            let claimed = peer_alive && matches!(claim, Claim::Holds { .. }) && !manual;
            // One taken because the primary could not serve it is given back when the
            // primary shows it can (it answers, heard alive); a silent primary whose kernel
            // answers for it is a conflict like any other, given up after the grace.
            if idle && !claimed && (!awaits_proof || !peer_alive) {
                self.conflict = Some(Conflict {
                    addr,
                    mac,
                    since: now,
                    holding: true,
                    last_answer: now,
                    reported: false,
                });
            }
            return;
        }
        // The primary answers for it and another MAC does too: a third host.
        if peer_alive {
            if let (Claim::Holds { .. }, Some(peer_mac)) = (claim, peer_mac) {
                if mac != peer_mac {
                    match &mut self.third {
                        Some(t) if t.addr == addr && t.mac == mac => t.last = now,
                        _ => {
                            let t = ThirdHost {
                                addr,
                                mac,
                                peer_mac,
                                since: now,
                                last: now,
                            };
                            self.third = Some(t);
                            out.push(Action::Notify(Notice::ThirdHost(t)));
                        }
                    }
                }
            }
        }
    }

    // ----- The decision ladder -----

    /// One decision at a time, when no hook sequence runs: first what must go back (never two
    /// holders), then what may be taken.
    fn decide(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.seq.is_some() || self.state == State::Stopped {
            return;
        }
        // 1. Stopping: everything held goes back, then we exit.
        if self.stop_requested && !self.fence_running {
            let held = self.held();
            if held.is_empty() {
                self.set_state(State::Stopped, Reason::Shutdown, out);
                out.push(Action::Exit);
            } else {
                self.start_release(held, Reason::Shutdown, None, out);
            }
            return;
        }
        // 2. A new peer: the old one's addresses go back first, with its hooks.
        if self.pending.is_some() {
            let held = self.held();
            if held.is_empty() {
                self.apply_pending(now, out);
            } else {
                self.start_release(held, Reason::NewPeer, None, out);
                return;
            }
        }
        // 3. Given back: what the alive primary answers for, or wants after the hold-off.
        let give_back = self.addresses_to_give_back(now, out);
        if !give_back.is_empty() {
            self.start_release(give_back, Reason::PeerReturned, None, out);
            return;
        }
        // 4. The boot grace: no takeover before it ends.
        if self.state == State::BootGrace {
            let end = self.grace_end();
            if now < end && !self.goodbye_fresh(now) {
                self.timers.at(end);
                if !self.peer_alive(now) {
                    // The grace decides like a timeout: its probes go out before its end.
                    let at = self.boot_deadline();
                    self.run_takeover_round(now, Purpose::Timeout, Some(at), out);
                }
                return;
            }
            if self.slots.iter().any(|s| s.held) && !self.peer_alive(now) {
                // Held at start and the peer is silent: kept; make sure all are there.
                let held = self.held();
                self.set_state(State::Acquired, Reason::Reconcile, out);
                out.push(Action::AddAddresses(held));
                return;
            }
            if self.peer_alive(now) || self.goodbye_fresh(now) {
                let to = self.rest_state();
                self.set_state(to, Reason::BootGraceOver, out);
            }
        }
        // 5. Takeovers.
        self.decide_takeover(now, out);
    }

    /// The held addresses the rules give back now.
    fn addresses_to_give_back(&mut self, now: Instant, notices: &mut Vec<Action>) -> Vec<IpAddr> {
        let alive = self.peer_alive(now);
        let holdoff = self.holdoff();
        let mut out = Vec::new();
        let mut held_by_hand = Vec::new();
        let legacy_due = self.legacy
            && self
                .links
                .values()
                .any(|l| l.consecutive >= self.config.release_after);
        for s in &self.slots {
            if !s.held || !alive {
                continue;
            }
            if s.manual {
                if s.claim == Claim::Wants {
                    held_by_hand.push(s.addr);
                }
                continue;
            }
            match s.claim {
                // Every moment longer is a moment of two holders: at once. After a failed
                // handover, once the primary shows that it can serve (it answers for it).
                Claim::Holds { .. }
                    if s.awaits_proof.is_none()
                        || self.answered_by_peer(s)
                        || (s.taken_for_lost_link
                            && self.every_link_heard_since(s.awaits_proof)) =>
                {
                    out.push(s.addr);
                }
                // It waits, holding nothing: no hurry, and a flapping primary waits longer.
                Claim::Wants => {
                    let due = s.claim_since + holdoff;
                    if now >= due {
                        out.push(s.addr);
                    } else {
                        self.timers.at(due);
                    }
                }
                Claim::Unknown if legacy_due => out.push(s.addr),
                _ => {}
            }
        }
        if !held_by_hand.is_empty() && !self.held_by_hand_told {
            self.held_by_hand_told = true;
            notices.push(Action::Notify(Notice::HeldByHand(held_by_hand)));
        }
        out
    }

    /// Whether every link of the primary carried a heartbeat after `since`: its NIC on the
    /// lost link sends again.
    fn every_link_heard_since(&self, since: Option<Instant>) -> bool {
        since.is_some_and(|t| !self.links.is_empty() && self.links.values().all(|l| l.last > t))
    }

    /// Whether the primary has answered for a slot we took back since we took it: it can
    /// serve it now.
    fn answered_by_peer(&self, s: &Slot) -> bool {
        let (Some(since), Some((at, mac))) = (s.awaits_proof, self.answers.latest(s.addr)) else {
            return false;
        };
        at > since && s.peer_mac.is_none_or(|m| m == mac)
    }

    /// Whether a goodbye still asks for an unprobed takeover: it came within the last
    /// timeout and has not started one yet. One that waited longer (a pause, a refused `Test`
    /// waiting its retry) no longer says the host is on its way down, so that takeover is
    /// probed like any other.
    fn goodbye_fresh(&self, now: Instant) -> bool {
        self.goodbye
            .as_ref()
            .is_some_and(|g| !g.used && now <= g.at + self.timeout())
    }

    /// When the boot grace decides, if the peer is not heard: at its end, or at the peer's own
    /// timeout if that is later (it was heard during the grace and then fell silent).
    fn boot_deadline(&self) -> Instant {
        let end = self.grace_end();
        self.last_heard.map_or(end, |t| end.max(t + self.timeout()))
    }

    /// When a takeover on silence is due.
    fn silence_deadline(&self) -> Instant {
        let silent_since = self.last_heard.unwrap_or(self.watch_since);
        let mut at = silent_since.max(self.watch_since) + self.timeout();
        if let Some(retry) = self.retry_not_before {
            at = at.max(retry);
        }
        at
    }

    fn decide_takeover(&mut self, now: Instant, out: &mut Vec<Action>) {
        // Paused: no takeover starts; what is held follows its rules.
        if self.pause.is_some() {
            self.round = None;
            return;
        }
        let alive = self.peer_alive(now);
        // A goodbye: a planned handover, unprobed. A host that stays up keeps its own
        // addresses; what it removed before saying goodbye is ours at once.
        if self.goodbye_fresh(now) && self.retry_not_before.is_none_or(|r| now >= r) {
            let kept = self
                .goodbye
                .as_ref()
                .map(|g| g.kept.clone())
                .unwrap_or_default();
            let take: Vec<IpAddr> = self
                .slots
                .iter()
                .filter(|s| !s.held && !kept.contains(&s.addr))
                .map(|s| s.addr)
                .collect();
            if !take.is_empty() && !self.fence_running {
                if let Some(g) = &mut self.goodbye {
                    g.used = true;
                }
                self.end_conflict(Some(out));
                self.start_takeover(take, Reason::Goodbye, out);
                return;
            }
        }
        // The peer is going silent: the takeover's probe round starts in the last part of its
        // timeout, while its last heartbeat still counts.
        let timeout = self.timeout();
        let silent_at = self.silence_deadline();
        let going_silent = now + probe::window(timeout) >= silent_at;
        if alive && !going_silent {
            self.timers.at(silent_at - probe::window(timeout));
        }
        if !alive || going_silent {
            let watching = self
                .goodbye
                .as_ref()
                .is_some_and(|g| g.stays_up && !g.kept.is_empty());
            if let Some(retry) = self.retry_not_before.filter(|r| now < *r && watching) {
                self.timers.at(retry);
            } else if watching {
                // The host of a stopped heartbeatd answers for its own addresses: they are
                // taken over when a round gets no answer (the host went down after all).
                self.run_takeover_round(now, Purpose::Watch, None, out);
            } else if self.state == State::Conflict {
                self.conflict_round(now, out);
            } else {
                let at = self.silence_deadline();
                self.run_takeover_round(now, Purpose::Timeout, Some(at), out);
            }
            return;
        }
        // The alive primary cannot serve an address: it neither holds nor wants it for a
        // whole timeout, or one of its links is lost and nobody answers for it.
        let lost_link = match self.lost_link_since() {
            Some(t) if t <= now => true,
            Some(t) => {
                self.timers.at(t);
                false
            }
            None => false,
        };
        if !lost_link {
            self.unserved_misses = 0;
        }
        let mut due = None::<Instant>;
        let mut any = false;
        for s in &self.slots {
            if s.held || s.released_at.is_some() || s.asked_back.is_some() {
                continue;
            }
            match s.claim {
                Claim::Free => {
                    let at = s.claim_since + timeout;
                    due = Some(due.map_or(at, |d: Instant| d.max(at)));
                    any = true;
                }
                Claim::Holds { .. } if lost_link => any = true,
                _ => {}
            }
        }
        if !any {
            if self.round.is_some_and(|(p, _)| p == Purpose::Unserved) {
                self.round = None;
            }
            return;
        }
        let due = match (due, self.retry_not_before) {
            (Some(d), Some(r)) => Some(d.max(r)),
            (d, _) => d,
        };
        match due {
            Some(at) if now + probe::window(timeout) < at => {
                self.timers.at(at - probe::window(timeout));
            }
            _ => self.run_takeover_round(now, Purpose::Unserved, due, out),
        }
    }

    /// When a lost link of the primary (silent while another carries heartbeats) counts for
    /// [`Reason::PeerCannotServe`]: [`LOST_LINK_TIMEOUTS`] timeouts (and
    /// [`LOST_LINK_HEARTBEATS`] intervals) into its silence. `None`
    /// while no link is lost.
    fn lost_link_since(&self) -> Option<Instant> {
        let timeout = self.timeout();
        let interval = self.announced_interval.unwrap_or(timeout / 3);
        let silence = (timeout * LOST_LINK_TIMEOUTS).max(interval * LOST_LINK_HEARTBEATS);
        self.links
            .values()
            .filter(|l| l.anomaly)
            .map(|l| l.silent_since() + silence)
            .min()
    }

    /// The addresses an automatic round is about.
    fn candidates(&self, purpose: Purpose, now: Instant) -> Vec<IpAddr> {
        let lost_link = self.lost_link_since().is_some_and(|t| t <= now);
        let timeout = self.timeout();
        self.slots
            .iter()
            .filter(|s| !s.held)
            .filter(|s| match purpose {
                Purpose::Timeout => true,
                // The host of a stopped heartbeatd answers for what it kept; what it removed
                // is taken as soon as nobody answers for it (its goodbye's takeover was
                // refused, say).
                Purpose::Watch => true,
                Purpose::Unserved => {
                    s.released_at.is_none()
                        && s.asked_back.is_none()
                        && match s.claim {
                            Claim::Free => now + probe::window(timeout) >= s.claim_since + timeout,
                            Claim::Holds { .. } => lost_link,
                            _ => false,
                        }
                }
            })
            .map(|s| s.addr)
            .collect()
    }

    /// Runs the probe round of an automatic takeover: deciding at `decide_at`, or (`None`)
    /// in rounds that follow each other. Once it decides, what nobody answered for is taken
    /// over; what answers is a conflict (on silence) or left alone.
    fn run_takeover_round(
        &mut self,
        now: Instant,
        purpose: Purpose,
        decide_at: Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let addrs = self.candidates(purpose, now);
        if addrs.is_empty() {
            self.round = None;
            return;
        }
        let timeout = self.timeout();
        let window = match purpose {
            Purpose::Timeout => probe::window(timeout),
            Purpose::Watch => probe::slow_window(timeout),
            Purpose::Unserved => probe::slow_window(timeout),
        };
        let mut round = match (self.round, decide_at) {
            (Some((p, r)), Some(at)) if p == purpose && r.decide_at() == at => r,
            (Some((p, r)), None) if p == purpose => r,
            (_, Some(at)) => Round::new(at, window),
            (_, None) => Round::starting(now, window),
        };
        if round.poll(now) {
            out.push(Action::Probe(addrs.clone()));
        }
        if !round.decided(now) || self.fence_running {
            if let Some(t) = round.deadline() {
                self.timers.at(t);
            }
            self.round = Some((purpose, round));
            return;
        }
        self.round = None;
        let (answered, free): (Vec<IpAddr>, Vec<IpAddr>) = addrs
            .iter()
            .partition(|a| self.answers.in_round(**a, &round).is_some());
        match purpose {
            Purpose::Timeout => {
                if !free.is_empty() {
                    self.start_takeover(free, Reason::Timeout, out);
                } else if let Some(&addr) = answered.first() {
                    let mac = self.answers.in_round(addr, &round).unwrap_or([0; 6]);
                    self.enter_conflict(now, addr, mac, out);
                }
            }
            Purpose::Watch if !free.is_empty() => self.start_takeover(free, Reason::Timeout, out),
            Purpose::Unserved if !free.is_empty() => {
                // What the primary still claims is taken only after LOST_LINK_ROUNDS rounds
                // in a row go unanswered; what it says it does not have, at once.
                let (claimed, unclaimed): (Vec<IpAddr>, Vec<IpAddr>) = free.iter().partition(|a| {
                    self.slots
                        .iter()
                        .any(|s| s.addr == **a && matches!(s.claim, Claim::Holds { .. }))
                });
                self.unserved_misses = self.unserved_misses.saturating_add(1);
                let take: Vec<IpAddr> = if self.unserved_misses >= LOST_LINK_ROUNDS {
                    free.clone()
                } else {
                    self.timers.at(now);
                    unclaimed
                };
                if !take.is_empty() {
                    if take.iter().any(|a| claimed.contains(a)) {
                        self.unserved_misses = 0;
                    }
                    self.start_takeover(take, Reason::PeerCannotServe, out)
                }
            }
            // Still answered: the next round starts at the next look.
            _ => {
                if purpose == Purpose::Unserved {
                    self.unserved_misses = 0;
                }
                self.timers.at(now + probe::slow_window(timeout))
            }
        }
    }

    fn enter_conflict(&mut self, now: Instant, addr: IpAddr, mac: Mac, out: &mut Vec<Action>) {
        // The episode goes on (other addresses were taken over meanwhile): told once.
        if let Some(c) = self.conflict.as_mut().filter(|c| !c.holding) {
            c.addr = addr;
            c.mac = mac;
            c.last_answer = now;
            self.set_state(State::Conflict, Reason::Conflict, out);
            self.conflict_round(now, out);
            return;
        }
        let c = Conflict {
            addr,
            mac,
            since: now,
            holding: false,
            last_answer: now,
            reported: true,
        };
        self.conflict = Some(c);
        self.fenced = false;
        self.fence_withheld_told = false;
        self.set_state(State::Conflict, Reason::Conflict, out);
        out.push(Action::Notify(Notice::Conflict(c)));
        self.conflict_round(now, out);
    }

    /// In `conflict`: probe in rounds; a round without an answer ends the conflict with the
    /// takeover (not while `Fence` runs: its end starts a new round at once). `Fence` runs
    /// once the conflict has lasted `FAILOVER_FENCE_AFTER`, unless it must not.
    fn conflict_round(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(c) = self.conflict.filter(|c| !c.holding) else {
            let at = self.silence_deadline();
            self.run_takeover_round(now, Purpose::Timeout, Some(at), out);
            return;
        };
        self.consider_fence(now, &c, out);
        let window = probe::slow_window(self.timeout());
        let addrs = self.candidates(Purpose::Timeout, now);
        let mut round = match self.round {
            Some((Purpose::Timeout, r)) => r,
            _ => Round::starting(now, window),
        };
        if round.decided(now) {
            let answered: Vec<(IpAddr, Mac)> = addrs
                .iter()
                .filter_map(|a| self.answers.in_round(*a, &round).map(|m| (*a, m)))
                .collect();
            if answered.is_empty() && !self.fence_running {
                // A host that answered a round ago is taken over only once a second round
                // goes unanswered too (loss on the LAN), unless Fence has just powered it off.
                self.conflict_misses += 1;
                if self.fenced || self.conflict_misses >= LOST_LINK_ROUNDS {
                    self.conflict_misses = 0;
                    self.round = None;
                    self.end_conflict(Some(out));
                    self.start_takeover(addrs, Reason::Timeout, out);
                    return;
                }
            } else {
                self.conflict_misses = 0;
            }
            // Each address is judged on its own: those nobody answered for are taken over
            // now; the conflict goes on for the others.
            let free: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !answered.iter().any(|(b, _)| b == a))
                .collect();
            if !free.is_empty() && !self.fence_running {
                self.round = None;
                self.start_takeover(free, Reason::Timeout, out);
                return;
            }
            if let (Some((addr, mac)), Some(c)) = (answered.first(), &mut self.conflict) {
                c.addr = *addr;
                c.mac = *mac;
            }
            // Still answering, or `Fence` still at work: another round, starting now.
            round = Round::starting(now, window);
        }
        if round.poll(now) {
            out.push(Action::Probe(addrs));
        }
        if let Some(t) = round.deadline() {
            self.timers.at(t);
        }
        self.round = Some((Purpose::Timeout, round));
    }

    /// `Fence` is the administrator's way to power a stuck primary off: only for a conflict
    /// that has lasted `FAILOVER_FENCE_AFTER`, never for a boot that said goodbye (its host is
    /// shutting down, or stays up on purpose), never against the host we handed the address
    /// back to, never while a reload of the secret or the peer settles, never while the peer's
    /// datagrams still arrive signed with another key.
    fn consider_fence(&mut self, now: Instant, c: &Conflict, out: &mut Vec<Action>) {
        if self.fenced || self.fence_running {
            return;
        }
        let due = c.since + self.fence_after();
        if now < due {
            self.timers.at(due);
            return;
        }
        let withheld = if self
            .peer_boot
            .is_some_and(|b| self.said_goodbye.contains(&b))
        {
            Some("the primary's heartbeatd said goodbye: its host is not stuck")
        } else if self.handed_back_to == Some(c.mac) {
            Some("the address was handed back to that host after a conflict")
        } else if let Some(t) = self.fence_not_before.filter(|t| now < *t) {
            self.timers.at(t);
            Some("a reload changed the secret or the peer and is settling")
        } else if let Some(t) = self
            .foreign_key_at
            .map(|t| t + self.timeout())
            .filter(|t| now < *t)
        {
            self.timers.at(t);
            Some(
                "the primary still sends heartbeats, signed with another key (the two hosts' \
                 secret files differ): it is not stuck",
            )
        } else {
            None
        };
        match withheld {
            Some(why) => {
                if !self.fence_withheld_told {
                    self.fence_withheld_told = true;
                    out.push(Action::Notify(Notice::FenceWithheld(why)));
                }
            }
            None => {
                self.fenced = true;
                self.fence_running = true;
                out.push(Action::RunHooks {
                    phase: HookPhase::Fence,
                    reason: Reason::Conflict,
                    addrs: vec![c.addr],
                });
            }
        }
    }

    /// Ends the conflict episode, telling the administrator (if `out` is given and they
    /// were told of it).
    fn end_conflict(&mut self, out: Option<&mut Vec<Action>>) {
        if let Some(c) = self.conflict.take() {
            if let (Some(out), true) = (out, c.reported) {
                out.push(Action::Notify(Notice::ConflictOver { holding: c.holding }));
            }
        }
        self.fenced = false;
        self.fence_withheld_told = false;
        self.conflict_misses = 0;
    }

    // ----- Holding -----

    /// While holding: probe for a conflict while the peer is silent (or while we wait for the
    /// primary to show it can serve), defend, give an address up when another host keeps
    /// answering past the grace, retry a failed add.
    fn check_holding(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some((at, _)) = self.add_retry {
            if now >= at {
                if self.seq.is_none() {
                    out.push(Action::AddAddresses(self.held()));
                }
                // Rescheduled by the report of this add.
                self.add_retry = self.add_retry.map(|(_, w)| (now + w, w));
            }
            if let Some((at, _)) = self.add_retry {
                self.timers.at(at);
            }
        }
        if self.seq.is_some() {
            return;
        }
        let every = hold_probe_every(self.config.conflict_grace);
        if let Some(mut c) = self.conflict.filter(|c| c.holding) {
            let still_held = self.slots.iter().any(|s| s.addr == c.addr && s.held);
            let over_at = c.last_answer + every * 5 / 2;
            let manual = self.slots.iter().any(|s| s.addr == c.addr && s.manual);
            if !still_held || now >= over_at {
                self.end_conflict(Some(out));
            } else if now >= c.since + self.config.conflict_grace {
                // The other host kept answering for the whole grace: it is there, and two
                // hosts answering for one address is worse than none of ours.
                if !c.reported {
                    c.reported = true;
                    out.push(Action::Notify(Notice::Conflict(c)));
                }
                self.end_conflict(None);
                // Every address of ours the other host answered for in this episode.
                let answered = &self.answers;
                let addrs: Vec<IpAddr> = self
                    .slots
                    .iter()
                    .filter(|s| {
                        s.held
                            && (s.addr == c.addr || answered.since(s.addr, Some(c.since)).is_some())
                    })
                    .map(|s| s.addr)
                    .collect();
                for s in self.slots.iter_mut().filter(|s| addrs.contains(&s.addr)) {
                    s.manual = false;
                }
                self.start_release(addrs, Reason::Conflict, Some(c.mac), out);
                return;
            } else {
                self.timers.at(over_at);
                self.timers.at(c.since + self.config.conflict_grace);
                // A returning peer announces itself a moment before its first heartbeat
                // counts: told after a timeout, or at once for what an administrator took.
                let report_at = c.since + self.timeout();
                if c.reported || manual || now >= report_at {
                    if !c.reported {
                        c.reported = true;
                        self.conflict = Some(c);
                        out.push(Action::Notify(Notice::Conflict(c)));
                    }
                    self.defend(now, out);
                } else {
                    self.timers.at(report_at);
                }
            }
        }
        // The refresh (FAILOVER_ANNOUNCE_REFRESH): what is held is announced again.
        if let Some(every) = self.config.announce_refresh {
            let due = self.refreshed.map_or(now + every, |t| t + every);
            if self.refreshed.is_none() {
                self.refreshed = Some(now);
            } else if now >= due {
                self.refreshed = Some(now);
                out.push(Action::Announce(self.held()));
            }
            self.timers.at(self.refreshed.map_or(due, |t| t + every));
        }
        let peer_silent = !self.peer_alive(now);
        let probed: Vec<IpAddr> = self
            .slots
            .iter()
            .filter(|s| s.held && (peer_silent || s.awaits_proof.is_some() || s.manual))
            .map(|s| s.addr)
            .collect();
        if !probed.is_empty() {
            // Waiting for the primary to show it can serve: the sooner it answers, the
            // shorter two hosts may answer if it could all along (loss on the LAN).
            let every = if self
                .slots
                .iter()
                .any(|s| s.held && s.awaits_proof.is_some())
            {
                every.min(probe::slow_window(self.timeout()).max(PROOF_PROBE_MIN))
            } else {
                every
            };
            let next = self.hold_probed.map_or(now, |t| t + every);
            if now >= next {
                self.hold_probed = Some(now);
                out.push(Action::Probe(probed));
                self.timers.at(now + every);
            } else {
                self.timers.at(next);
            }
        }
    }

    /// Announces what we hold, at most once per [`DEFEND_INTERVAL`].
    fn defend(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.defended {
            Some(t) if now < t + DEFEND_INTERVAL => self.timers.at(t + DEFEND_INTERVAL),
            _ => {
                self.defended = Some(now);
                out.push(Action::Defend(self.held()));
                self.timers.at(now + DEFEND_INTERVAL);
            }
        }
    }

    /// A third host: the primary's addresses are probed now and then while it answers for
    /// them; an episode ends when the third host has not been heard for a while, and is probed
    /// more often meanwhile.
    fn check_third_host(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(t) = self.third else {
            let watched: Vec<IpAddr> = if self.peer_alive(now) && self.seq.is_none() {
                self.slots
                    .iter()
                    .filter(|s| !s.held && matches!(s.claim, Claim::Holds { .. }))
                    .map(|s| s.addr)
                    .collect()
            } else {
                Vec::new()
            };
            if watched.is_empty() {
                self.watch_probed = None;
                return;
            }
            let next = self.watch_probed.map_or(now, |p| p + WATCH_PROBE_EVERY);
            if now >= next {
                self.watch_probed = Some(now);
                out.push(Action::Probe(watched));
                self.timers.at(now + WATCH_PROBE_EVERY);
            } else {
                self.timers.at(next);
            }
            return;
        };
        let every = hold_probe_every(self.config.conflict_grace);
        let still_claimed = self.peer_alive(now)
            && self
                .slots
                .iter()
                .any(|s| s.addr == t.addr && !s.held && matches!(s.claim, Claim::Holds { .. }));
        if !still_claimed || now >= t.last + every * 5 / 2 {
            self.third = None;
            out.push(Action::Notify(Notice::ThirdHostOver(t.addr)));
            if self.state == State::ThirdHost {
                let to = self.rest_state();
                self.set_state(to, Reason::ThirdHost, out);
            }
            return;
        }
        self.timers.at(t.last + every * 5 / 2);
        if self.state == State::Monitoring {
            self.set_state(State::ThirdHost, Reason::ThirdHost, out);
        }
        let next = self.hold_probed.map_or(now, |p| p + every);
        if now >= next {
            self.hold_probed = Some(now);
            out.push(Action::Probe(vec![t.addr]));
            self.timers.at(now + every);
        } else {
            self.timers.at(next);
        }
    }

    /// After a release to the primary: one timeout for someone to answer for each address;
    /// nobody answering means the handover failed, and the address is taken back (a service
    /// address the primary says it holds is asked back first: it removes it, then we add it).
    fn check_handovers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let timeout = self.timeout();
        let alive = self.peer_alive(now);
        let mut failed = Vec::new();
        let mut ask = Vec::new();
        for s in &mut self.slots {
            if s.held {
                continue;
            }
            // Asked back: taken once the primary no longer holds it (or gives no sign for a
            // timeout: two hosts on an address nobody can reach beats nobody reachable).
            if s.asked_back == Some(Reason::HandoverFailed) {
                let gave_up = !matches!(s.claim, Claim::Holds { .. }) || !alive;
                let waited = now >= s.claim_since.max(s.released_at.unwrap_or(now)) + timeout;
                if gave_up || waited {
                    failed.push(s.addr);
                } else {
                    self.timers
                        .at(s.claim_since.max(s.released_at.unwrap_or(now)) + timeout);
                }
                continue;
            }
            let Some(at) = s.released_at else {
                continue;
            };
            if !alive {
                s.released_at = None;
                s.handover_round = None;
                continue;
            }
            let mut round = s
                .handover_round
                .unwrap_or_else(|| Round::new(at + timeout, timeout));
            if round.poll(now) {
                ask.push(s.addr);
            }
            if round.decided(now) {
                s.handover_round = None;
                if self.answers.since(s.addr, Some(at)).is_some() {
                    s.released_at = None;
                    s.handover_misses = 0;
                    continue;
                }
                // One round lost to loss on the LAN must not take it back: another round.
                s.handover_misses += 1;
                if s.handover_misses < LOST_LINK_ROUNDS {
                    let next = Round::starting(now, probe::slow_window(timeout));
                    if let Some(t) = next.deadline() {
                        self.timers.at(t);
                    }
                    s.handover_round = Some(next);
                    continue;
                }
                s.handover_misses = 0;
                match s.claim {
                    Claim::Holds { managed: true, .. } => {
                        s.asked_back = Some(Reason::HandoverFailed);
                        s.claim_since = now;
                        self.timers.at(now + timeout);
                    }
                    _ => failed.push(s.addr),
                }
            } else {
                if let Some(t) = round.deadline() {
                    self.timers.at(t);
                }
                s.handover_round = Some(round);
            }
        }
        if !ask.is_empty() {
            out.push(Action::Probe(ask));
        }
        if !failed.is_empty() && self.seq.is_none() {
            for s in &mut self.slots {
                if failed.contains(&s.addr) {
                    s.released_at = None;
                    s.handover_round = None;
                    s.asked_back = None;
                    s.awaits_proof = Some(now);
                }
            }
            self.returns.push_back(now);
            out.push(Action::Notify(Notice::HandoverFailed(failed.clone())));
            self.start_takeover(failed, Reason::HandoverFailed, out);
        } else if !failed.is_empty() {
            self.timers.at(now + Duration::from_millis(1));
        }
    }

    /// What the primary must hear from us: a release until it acknowledges it, an answer to
    /// its wait token, what we hold by hand or ask back. At most one report per interval,
    /// but a new token is answered at once.
    fn check_reports(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.peer_alive(now) && self.release_id == 0 {
            return;
        }
        let every = self
            .announced_interval
            .unwrap_or_else(|| self.timeout() / 3)
            .max(Duration::from_millis(10));
        let unacked = self.release_id != 0 && self.peer_ack != self.release_id;
        // While a takeover by hand is under way, the primary's wait is not answered: it would
        // add what we are about to take.
        let manual_under_way = self.manual_round.is_some() || self.manual_asked;
        let waits = self.peer_token != 0
            && !manual_under_way
            && self.slots.iter().any(|s| s.claim == Claim::Wants);
        let asks = self
            .slots
            .iter()
            .any(|s| s.asked_back.is_some() || (s.held && s.manual));
        if !(unacked || waits || asks) {
            return;
        }
        // A release nobody acknowledges for long (the primary is gone) is given up on.
        if unacked
            && !self.peer_alive(now)
            && self.report_sent.is_some_and(|t| now >= t + self.timeout())
        {
            self.release_id = 0;
            return;
        }
        let new_token = waits && self.peer_token != self.answered_token;
        let due = self.report_sent.is_none_or(|t| now >= t + every);
        if new_token || due {
            self.report_sent = Some(now);
            if waits {
                self.answered_token = self.peer_token;
            }
            out.push(Action::SendReport(self.report(unacked, waits)));
        }
        if let Some(t) = self.report_sent {
            self.timers.at(t + every);
        }
    }

    fn report(&self, unacked: bool, waits: bool) -> OutReport {
        OutReport {
            id: if unacked { self.release_id } else { 0 },
            token: if waits { self.peer_token } else { 0 },
            entries: self
                .slots
                .iter()
                .map(|s| {
                    let mut role = Role::NONE;
                    if s.held
                        || (self
                            .seq
                            .as_ref()
                            .is_some_and(|q| q.acquire && q.addrs.contains(&s.addr)))
                    {
                        role = role.with(Role::HOLDS);
                    } else if s.asked_back.is_some() {
                        role = role.with(Role::WANTS);
                    }
                    if s.manual || (s.asked_back == Some(Reason::Manual)) {
                        role = role.with(Role::MANUAL);
                    }
                    Entry::new(s.addr, role)
                })
                .collect(),
        }
    }

    fn draw_release_id(&mut self) -> u64 {
        self.ids_drawn += 1;
        splitmix(self.seed.wrapping_add(self.ids_drawn)).max(1)
    }

    // ----- Links -----

    /// Flags links silent for a timeout while another link has carried heartbeats for one,
    /// and forgets those renumbered.
    fn check_links(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Stopped {
            return;
        }
        let timeout = self.timeout();
        // A silent link whose interface carries heartbeats from a source first heard after it
        // went silent was renumbered: the peer no longer sends from that address.
        let renumbered: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(id, l)| {
                now >= l.silent_since() + timeout
                    && l.via.is_some()
                    && self.links.iter().any(|(oid, o)| {
                        oid != *id && o.via == l.via && o.first >= l.last && self.link_alive(o, now)
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in renumbered {
            if let Some(l) = self.links.remove(&id) {
                if l.anomaly {
                    out.push(Action::Notify(Notice::LinkBack(id)));
                }
            }
        }
        let steady: Vec<(LinkId, Instant, Instant)> = self
            .links
            .iter()
            .filter(|(_, l)| self.link_alive(l, now))
            .map(|(id, l)| (*id, l.last, l.up_since))
            .collect();
        let outlived_by = self.outlived_by();
        let blind: Vec<LinkId> = self
            .links
            .keys()
            .filter(|id| self.blind(id))
            .copied()
            .collect();
        let mut wake = Vec::new();
        for (id, link) in self.links.iter_mut() {
            if link.anomaly || blind.contains(id) {
                continue;
            }
            let silent_at = link.silent_since() + timeout;
            for (sid, last, up_since) in &steady {
                // Only a link that outlived this one by an interval makes it lost; if it has
                // not yet, its next heartbeat is an event with its own look.
                if sid == id || *last < link.last + outlived_by {
                    continue;
                }
                // The instant `link` counts as lost while the other counts as steady.
                let at = silent_at.max(*up_since + timeout);
                if now >= at {
                    link.anomaly = true;
                    out.push(Action::Notify(Notice::LinkLost(*id)));
                    break;
                }
                if at < *last + timeout {
                    wake.push(at);
                }
            }
        }
        for t in wake {
            self.timers.at(t);
        }
        // Renumbering is judged when a silent link has been silent for the timeout.
        for l in self.links.values() {
            self.timers.at(l.silent_since() + timeout);
        }
    }

    fn link_alive(&self, link: &Link, now: Instant) -> bool {
        now < link.last + self.timeout()
    }

    /// How much longer than a silent link another must have carried heartbeats before the
    /// silent one counts as lost: one interval (a third of the timeout before one is known).
    fn outlived_by(&self) -> Duration {
        self.announced_interval
            .unwrap_or_else(|| self.timeout() / 3)
    }

    /// Whether we cannot hear this link now because we may hold its peer address.
    fn blind(&self, id: &LinkId) -> bool {
        self.slots.iter().any(|s| s.addr == *id && s.held)
            || self
                .seq
                .as_ref()
                .is_some_and(|q| q.acquire && q.addrs.contains(id))
    }

    // ----- Hook sequences -----

    fn start_takeover(&mut self, addrs: Vec<IpAddr>, reason: Reason, out: &mut Vec<Action>) {
        self.heard_during_test = false;
        self.round = None;
        // Only heartbeats heard from now on count towards giving the addresses back.
        for link in self.links.values_mut() {
            link.consecutive = 0;
        }
        self.seq = Some(Sequence {
            acquire: true,
            addrs: addrs.clone(),
            reason,
            handback: None,
        });
        self.set_state(State::Acquiring(AcquireStep::Test), reason, out);
        out.push(Action::RunHooks {
            phase: HookPhase::Test,
            reason,
            addrs,
        });
    }

    fn start_release(
        &mut self,
        addrs: Vec<IpAddr>,
        reason: Reason,
        handback: Option<Mac>,
        out: &mut Vec<Action>,
    ) {
        self.add_retry = None;
        self.seq = Some(Sequence {
            acquire: false,
            addrs: addrs.clone(),
            reason,
            handback,
        });
        self.set_state(State::Releasing(ReleaseStep::PreRel), reason, out);
        out.push(Action::StopAnnouncing(addrs.clone()));
        out.push(Action::RunHooks {
            phase: HookPhase::PreRel,
            reason,
            addrs,
        });
    }

    fn handle_hooks_done(
        &mut self,
        now: Instant,
        phase: HookPhase,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        if phase == HookPhase::Fence {
            if !self.fence_running {
                return;
            }
            self.fence_running = false;
            if self.state == State::Conflict && ok {
                // Fenced: ask the LAN again at once rather than at the round's end, so that a
                // powered-off peer is taken over within one round.
                self.round = None;
            }
            return;
        }
        let Some(seq) = self.seq.clone() else {
            return;
        };
        let reason = seq.reason;
        match (self.state, phase) {
            (State::Acquiring(AcquireStep::Test), HookPhase::Test) => {
                // Dropped when the peer was heard while Test ran: nothing was done yet. A
                // takeover that does not depend on the peer's silence goes on.
                let depends_on_silence = matches!(reason, Reason::Timeout | Reason::Goodbye);
                if reason == Reason::Manual && (self.stop_requested || !ok) {
                    // A takeover by hand that will not happen asks nothing back any more: the
                    // primary, which gave the address up for it, has it again.
                    for s in &mut self.slots {
                        if s.asked_back == Some(Reason::Manual) {
                            s.asked_back = None;
                        }
                    }
                }
                if self.stop_requested {
                    self.seq = None;
                    let to = self.rest_state();
                    self.set_state(to, Reason::Shutdown, out);
                } else if !ok {
                    // Test refused: abandon, and try again one timeout later if still silent.
                    self.retry_not_before = Some(now + self.timeout());
                    if !self.refused_this_outage {
                        self.refused_this_outage = true;
                        out.push(Action::Notify(Notice::TakeoverRefused));
                    }
                    self.seq = None;
                    let to = self.rest_state();
                    self.set_state(to, Reason::TestRefused, out);
                } else if self.heard_during_test && self.peer_alive(now) && depends_on_silence {
                    self.seq = None;
                    let to = self.rest_state();
                    self.set_state(to, Reason::PeerAlive, out);
                } else {
                    self.set_state(State::Acquiring(AcquireStep::PreAcq), reason, out);
                    out.push(Action::RunHooks {
                        phase: HookPhase::PreAcq,
                        reason,
                        addrs: seq.addrs,
                    });
                }
            }
            (State::Acquiring(AcquireStep::PreAcq), HookPhase::PreAcq) => {
                self.set_state(State::Acquiring(AcquireStep::Adding), reason, out);
                out.push(Action::AddAddresses(seq.addrs));
            }
            (State::Acquiring(AcquireStep::PostAcq), HookPhase::PostAcq) => {
                self.seq = None;
                out.push(Action::Notify(Notice::TookOver {
                    reason,
                    addrs: seq.addrs,
                }));
                self.set_state(State::Acquired, reason, out);
            }
            (State::Releasing(ReleaseStep::PreRel), HookPhase::PreRel) => {
                self.set_state(State::Releasing(ReleaseStep::Removing), reason, out);
                out.push(Action::RemoveAddresses(seq.addrs));
            }
            (State::Releasing(ReleaseStep::PostRel), HookPhase::PostRel) => {
                self.seq = None;
                let to = match (seq.handback, reason) {
                    (Some(mac), _) => ReleasedTo::Host(mac),
                    (None, Reason::PeerReturned) => ReleasedTo::Peer,
                    _ => ReleasedTo::Nobody,
                };
                out.push(Action::Notify(Notice::Released {
                    reason,
                    addrs: seq.addrs,
                    to,
                }));
                let rest = self.rest_state();
                self.set_state(rest, reason, out);
            }
            // A report that does not match the step (a stale one) changes nothing.
            _ => {}
        }
    }

    fn handle_added(&mut self, now: Instant, failed: &[IpAddr], out: &mut Vec<Action>) {
        // Availability first: a failed add is reported by the shell, and the takeover goes on
        // with what could be added; the rest is retried while we hold.
        let retry = |prev: Option<(Instant, Duration)>| {
            let wait = prev.map_or(ADD_RETRY_FIRST, |(_, w)| (w * 2).min(ADD_RETRY_MAX));
            Some((now + wait, wait))
        };
        let acquiring = self.state == State::Acquiring(AcquireStep::Adding);
        let seq = self.seq.clone();
        let added: Vec<IpAddr> = match (&seq, acquiring) {
            (Some(q), true) => q.addrs.clone(),
            _ => self.held(),
        }
        .into_iter()
        .filter(|a| !failed.contains(a))
        .collect();
        if acquiring {
            let Some(q) = seq else {
                return;
            };
            for s in &mut self.slots {
                if q.addrs.contains(&s.addr) {
                    s.held = true;
                    s.manual = q.reason == Reason::Manual;
                    s.asked_back = None;
                    s.released_at = None;
                    s.handover_round = None;
                    // Taken because the primary could not serve it: given back once it shows
                    // it can.
                    s.awaits_proof =
                        matches!(q.reason, Reason::HandoverFailed | Reason::PeerCannotServe)
                            .then_some(now);
                    s.taken_for_lost_link = q.reason == Reason::PeerCannotServe
                        && matches!(s.claim, Claim::Holds { .. });
                }
            }
            self.held_by_hand_told = false;
            // A retry under way (of another address) goes on; a new failure starts one.
            if !failed.is_empty() && self.add_retry.is_none() {
                self.add_retry = retry(None);
            }
            out.push(Action::Announce(added));
            self.set_state(State::Acquiring(AcquireStep::PostAcq), q.reason, out);
            out.push(Action::RunHooks {
                phase: HookPhase::PostAcq,
                reason: q.reason,
                addrs: q.addrs,
            });
        } else if self.seq.is_none() && self.slots.iter().any(|s| s.held) {
            // A retry, a re-add of a vanished address, or the reconcile at start: what is
            // there now is announced.
            self.add_retry = if failed.is_empty() {
                None
            } else {
                retry(self.add_retry)
            };
            if !added.is_empty() {
                out.push(Action::Announce(added));
            }
        }
    }

    fn handle_removed(&mut self, now: Instant, _failed: &[IpAddr], out: &mut Vec<Action>) {
        if self.state != State::Releasing(ReleaseStep::Removing) {
            return;
        }
        let Some(q) = self.seq.clone() else {
            return;
        };
        for s in &mut self.slots {
            if q.addrs.contains(&s.addr) {
                s.held = false;
                s.manual = false;
                s.awaits_proof = None;
                s.taken_for_lost_link = false;
                if q.reason == Reason::PeerReturned {
                    s.released_at = Some(now);
                    s.handover_misses = 0;
                    s.handover_round = None;
                }
            }
        }
        if q.reason == Reason::PeerReturned {
            self.returns.push_back(now);
            let window = HOLDOFF_WINDOW.max(self.timeout().saturating_mul(20));
            while self
                .returns
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > window)
            {
                self.returns.pop_front();
            }
        }
        // Tell the primary at once, and again every interval until it acknowledges;
        // PostRel may take a while and the clients should not wait.
        self.release_id = self.draw_release_id();
        self.report_sent = Some(now);
        let waits = self.peer_token != 0 && self.slots.iter().any(|s| s.claim == Claim::Wants);
        if waits {
            self.answered_token = self.peer_token;
        }
        out.push(Action::SendReport(self.report(true, waits)));
        if let Some(mac) = q.handback {
            self.handed_back_to = Some(mac);
            out.push(Action::HandBack {
                mac,
                addrs: q.addrs.clone(),
            });
        }
        self.set_state(State::Releasing(ReleaseStep::PostRel), q.reason, out);
        out.push(Action::RunHooks {
            phase: HookPhase::PostRel,
            reason: q.reason,
            addrs: q.addrs,
        });
    }

    // ----- Commands -----

    /// An administrator's command. Each rule is a sentence: the core decides, the shell only
    /// carries the answer back.
    fn handle_command(&mut self, now: Instant, command: Command, out: &mut Vec<Action>) {
        let peer = self
            .config
            .peer
            .map_or("the peer".to_string(), |p| p.to_string());
        let busy = self.seq.as_ref().map(|_| self.state);
        match command {
            // Pause: takeovers stop, watching goes on; a second pause moves its end.
            Command::Pause { until } => {
                let pause = Pause {
                    since: self.pause.map_or(now, |p| p.since),
                    until,
                };
                self.pause = Some(pause);
                self.round = None;
                self.manual_round = None;
                self.manual_asked = false;
                out.push(Action::Notify(Notice::Paused(pause)));
                let held = if self.slots.iter().any(|s| s.held) {
                    " (what it holds stays held until the peer claims it back)"
                } else {
                    ""
                };
                out.push(Action::Answer(Ok(match until {
                    Some(_) => format!("paused: no takeover until the pause ends{held}"),
                    None => format!("paused: no takeover until failoverctl resume{held}"),
                })));
            }
            Command::Resume => {
                if self.pause.take().is_some() {
                    out.push(Action::Notify(Notice::Resumed { auto: false }));
                    out.push(Action::Answer(Ok(
                        "resumed: a silent peer is taken over again".to_string(),
                    )));
                } else {
                    out.push(Action::Answer(Ok(
                        "not paused: nothing to resume".to_string()
                    )));
                }
            }
            // Release: only what is held; never leave the address to nobody unless forced.
            Command::Release { force } => {
                let held = self.held();
                if let Some(state) = busy {
                    out.push(Action::Answer(Err(format!(
                        "refused: a transition is under way ({state}); ask again when it is over"
                    ))));
                } else if held.is_empty() {
                    out.push(Action::Answer(Err(
                        "refused: this host holds none of the peer's addresses".to_string(),
                    )));
                } else if !self.peer_alive(now) && !force {
                    out.push(Action::Answer(Err(format!(
                        "refused: {peer} is silent, so releasing would leave nobody answering \
                         for its addresses (--force releases anyway; failoverd then takes them \
                         over again after one timeout unless paused)"
                    ))));
                } else {
                    if !self.peer_alive(now) {
                        // Forced: the silent peer is taken over again after a whole timeout.
                        self.retry_not_before = Some(now + self.timeout());
                        self.goodbye = None;
                    }
                    for s in &mut self.slots {
                        s.manual = false;
                    }
                    self.end_conflict(Some(out));
                    self.start_release(held, Reason::Manual, None, out);
                    out.push(Action::Answer(Ok(format!(
                        "releasing: giving the addresses back to {peer} (PreRel, remove, PostRel)"
                    ))));
                }
            }
            Command::Takeover { force } => self.command_takeover(now, force, busy, out),
        }
    }

    fn command_takeover(
        &mut self,
        now: Instant,
        force: bool,
        busy: Option<State>,
        out: &mut Vec<Action>,
    ) {
        let free: Vec<IpAddr> = self
            .slots
            .iter()
            .filter(|s| !s.held)
            .map(|s| s.addr)
            .collect();
        if let Some(state) = busy {
            out.push(Action::Answer(Err(format!(
                "refused: a transition is under way ({state}); ask again when it is over"
            ))));
            return;
        }
        if self.state == State::Stopped {
            out.push(Action::Answer(Err("failoverd is stopping".into())));
            return;
        }
        if free.is_empty() {
            out.push(Action::Answer(Ok(
                "already holding the addresses".to_string()
            )));
            return;
        }
        if force {
            self.end_conflict(Some(out));
            self.manual_round = None;
            self.manual_asked = false;
            self.start_takeover(free, Reason::Manual, out);
            out.push(Action::Answer(Ok(
                "taking over (forced: not probed first)".to_string()
            )));
            return;
        }
        let alive = self.peer_alive(now);
        // The primary's own address cannot be moved while its host answers for it.
        if let Some(s) = self
            .slots
            .iter()
            .find(|s| !s.held && alive && matches!(s.claim, Claim::Holds { managed: false, .. }))
        {
            out.push(Action::Answer(Err(format!(
                "refused: {} is the primary's own address and it answers for it; taking it \
                 over would make two hosts answer for it (stop the primary, or --force)",
                s.addr
            ))));
            return;
        }
        // A service address the primary manages is asked back: it removes it, then we add it.
        let mut asked = false;
        for s in &mut self.slots {
            if !s.held && alive && matches!(s.claim, Claim::Holds { managed: true, .. }) {
                s.asked_back = Some(Reason::Manual);
                s.claim_since = now;
                asked = true;
            }
        }
        self.manual_asked = asked;
        if self.manual_round.is_none() && !asked {
            self.manual_round = Some(Round::starting(now, probe::slow_window(self.timeout())));
        }
        // Answered when the round decides (check_manual_round).
    }

    /// A takeover by hand: once the primary gave up what it was asked back, a probe round;
    /// the takeover if nobody answered, else a refusal.
    fn check_manual_round(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.manual_asked {
            let timeout = self.timeout();
            let asked: Vec<&Slot> = self
                .slots
                .iter()
                .filter(|s| s.asked_back == Some(Reason::Manual))
                .collect();
            let still: Vec<IpAddr> = asked
                .iter()
                .filter(|s| matches!(s.claim, Claim::Holds { .. }) && self.peer_alive(now))
                .map(|s| s.addr)
                .collect();
            let since = asked.iter().map(|s| s.claim_since).max().unwrap_or(now);
            if still.is_empty() {
                self.manual_asked = false;
                self.manual_round = Some(Round::starting(now, probe::slow_window(timeout)));
            } else if now >= since + timeout {
                self.manual_asked = false;
                for s in &mut self.slots {
                    if s.asked_back == Some(Reason::Manual) {
                        s.asked_back = None;
                    }
                }
                out.push(Action::Answer(Err(format!(
                    "refused: the primary did not give up {} within {} ms",
                    still
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    timeout.as_millis()
                ))));
                return;
            } else {
                self.timers.at(since + timeout);
                return;
            }
        }
        let Some(mut round) = self.manual_round else {
            return;
        };
        if self.seq.is_some() || self.state == State::Stopped {
            self.manual_round = None;
            out.push(Action::Answer(Err(format!(
                "refused: the state changed to {} while probing",
                self.state
            ))));
            return;
        }
        let free: Vec<IpAddr> = self
            .slots
            .iter()
            .filter(|s| !s.held)
            .map(|s| s.addr)
            .collect();
        if round.poll(now) {
            out.push(Action::Probe(free.clone()));
        }
        if !round.decided(now) {
            if let Some(t) = round.deadline() {
                self.timers.at(t);
            }
            self.manual_round = Some(round);
            return;
        }
        self.manual_round = None;
        if let Some((addr, mac)) = free
            .iter()
            .find_map(|a| self.answers.in_round(*a, &round).map(|m| (*a, m)))
        {
            for s in &mut self.slots {
                if s.asked_back == Some(Reason::Manual) {
                    s.asked_back = None;
                }
            }
            out.push(Action::Answer(Err(format!(
                "refused: {addr} still answers from {} on the LAN; taking it over would make two \
                 hosts answer for it (--force takes over anyway)",
                probe::mac_text(&mac)
            ))));
        } else {
            self.end_conflict(Some(out));
            self.start_takeover(free, Reason::Manual, out);
            out.push(Action::Answer(Ok(
                "taking over: nobody answers for the addresses".to_string(),
            )));
        }
    }

    // ----- Reload -----

    fn reconfigure(&mut self, now: Instant, config: Config, out: &mut Vec<Action>) {
        let peer_changed = config.peer != self.config.peer;
        if peer_changed || config.key_changed {
            // Until the peer has proved itself again with the new key or address, its silence
            // is ours to explain, not its host's fault: no Fence for three times the fence
            // delay, or until it is heard again.
            let after = config
                .fence_after
                .unwrap_or_else(|| default_fence_after(config.timeout.unwrap_or(self.timeout())));
            self.fence_not_before = Some(now + after.saturating_mul(SETTLE_FENCE_AFTERS));
        }
        let dropped_held = self
            .slots
            .iter()
            .any(|s| s.held && !config.taken_over.contains(&s.addr));
        if peer_changed || dropped_held {
            self.pending = Some(config);
        } else {
            self.apply(now, config);
            out.push(Action::Reconfigured);
        }
    }

    /// A reload whose old addresses are all back: the new settings are in force.
    fn apply_pending(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some(config) = self.pending.take() {
            self.apply(now, config);
            out.push(Action::Reconfigured);
        }
    }

    fn apply(&mut self, now: Instant, config: Config) {
        if config.peer != self.config.peer {
            // Another host: nothing we knew of the old one applies. It is watched as at start,
            // so its silence is counted from now, not from before we knew it.
            self.links.clear();
            self.last_heard = None;
            self.announced_interval = None;
            self.goodbye = None;
            self.said_goodbye.clear();
            self.peer_boot = None;
            self.peer_token = 0;
            self.peer_ack = 0;
            self.retry_not_before = None;
            self.watch_since = now;
            self.round = None;
            self.third = None;
            self.returns.clear();
            self.release_id = 0;
            self.handed_back_to = None;
            self.end_conflict(None);
            self.answers = Answers::new();
        }
        let mut slots = Vec::new();
        for &addr in &config.taken_over {
            match self.slots.iter().find(|s| s.addr == addr) {
                Some(s) if config.peer == self.config.peer => slots.push(s.clone()),
                _ => slots.push(Slot::new(addr, false, now)),
            }
        }
        self.slots = slots;
        self.config = config;
    }

    // ----- The funnel -----

    /// Where we rest when no sequence runs.
    fn rest_state(&self) -> State {
        if self.slots.iter().any(|s| s.held) {
            State::Acquired
        } else if self.conflict.is_some_and(|c| !c.holding) {
            State::Conflict
        } else if self.third.is_some() {
            State::ThirdHost
        } else {
            State::Monitoring
        }
    }

    /// The one funnel for state changes: ignores self-transitions, records the reason.
    fn set_state(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        if self.state == to {
            return;
        }
        let from = self.state;
        let could_hold = from == State::Acquired
            || matches!(from, State::Acquiring(_) | State::Releasing(_))
            || (from == State::BootGrace && self.slots.iter().any(|s| s.held));
        self.state = to;
        // The links we could not hear while holding their source address are judged from now:
        // their silence while we held it says nothing.
        if could_hold {
            let now = self.now;
            let held: Vec<IpAddr> = self.held();
            for (id, link) in self.links.iter_mut() {
                if self.config.taken_over.contains(id) && !held.contains(id) {
                    link.judged_from = link.judged_from.max(now);
                }
            }
        }
        if to != State::Acquired {
            self.hold_probed = None;
            self.refreshed = None;
        }
        if matches!(to, State::Monitoring | State::Stopped)
            && self.conflict.is_some_and(|c| c.holding)
        {
            self.conflict = None;
        }
        out.push(Action::Transition { from, to, reason });
    }
}

/// SplitMix64: spreads a counter into an unpredictable-looking id (the seed is random).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
