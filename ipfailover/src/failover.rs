//! failoverd's state machine: fed with events and the current time, it answers with actions.
//!
//! It reads no clock and touches no socket. The shell calls [`Failover::handle`] with
//! `Instant::now()` taken once per loop turn, executes the [`Action`]s in order, and sleeps
//! until [`Failover::next_deadline`] or the next input. Spurious ticks are harmless.
//!
//! The rules, in one place:
//! - The peer is *alive* while some link carried a valid heartbeat within the timeout.
//! - The timeout is `FAILOVER_TIMEOUT` if set, else three missed heartbeats: 3¼ × the
//!   interval the peer announced in its latest heartbeat (exactly 3 × would race the third
//!   heartbeat's arrival, so two losses in a row would make a takeover), else 3 s.
//! - Takeover: when no link carried a heartbeat for the timeout, or at once on a goodbye. A
//!   goodbye starts at most one takeover; copies of it that come while acquiring or holding
//!   count for nothing.
//! - Never two holders: before a takeover on timeout (not on a goodbye younger than the
//!   timeout: one that waited out a pause or a refused `Test` is probed), every address is
//!   probed on the LAN ([`PROBES`] ARP probes or DAD neighbour solicitations, spread over the
//!   last part of the timeout, so that a dead peer is still taken over at the timeout). If
//!   another host answers for one of them, there is no takeover: the state is `conflict`, the
//!   administrator hears of it once, the `Fence` hooks run once, and probing goes on in
//!   rounds; when a round gets no answer, the takeover goes ahead. A heartbeat ends the
//!   conflict. A takeover never starts without a full probe round, even after a stall.
//! - The takeover runs `Test`; a refusal abandons it and it is tried again one timeout later
//!   while the peer stays silent. Then `PreAcq`, add, announce, `PostAcq`.
//! - If the peer is heard while `Test` runs, nothing has been done yet: the takeover is dropped.
//!   Once `PreAcq` has started, the acquisition completes, and the release rule then applies
//!   (heartbeats heard during the acquisition count). So the address is never left held with
//!   the peer alive, and no hook sequence is cut in the middle.
//! - Release: when one link has carried `FAILOVER_RELEASE_AFTER` consecutive heartbeats (no gap
//!   as long as the timeout) since the takeover began: `PreRel`, remove, `released` to the
//!   primary, `PostRel`.
//! - A conflict while holding: while we hold the addresses and the peer is silent, they are
//!   probed every [`hold_probe_every`]; another host answering for one of them is reported
//!   once, defended at most once per [`DEFEND_INTERVAL`] (RFC 5227), and if it keeps answering
//!   for `FAILOVER_CONFLICT_GRACE` (long enough for a host that said goodbye to finish shutting
//!   down) the addresses are released with hooks (reason `conflict`): two hosts answering is
//!   worse than one. Whoever the other host is (the peer, or a third host) makes no difference.
//!   While the peer is heard, the release rule is already on its way and answers are not news.
//! - An address that vanishes from the interface while held is added again and announced; an
//!   add that fails is retried, with back-off, while the addresses are held.
//! - One link silent for a timeout while another has carried heartbeats for a timeout, and
//!   at least an interval past the silent one's last, is a network anomaly (redundancy gone):
//!   notified, never a takeover. (Links of a crashed peer fall silent a few milliseconds
//!   apart: that is no anomaly, it is the takeover.) A link we cannot hear
//!   because we hold its source address is blind, not lost, and its silence is measured from
//!   the moment we can hear it again. A silent link whose interface now carries the peer's
//!   heartbeats from another source address was renumbered: it is forgotten, not lost.
//! - At start, a boot grace of one timeout (the one in force, derived from the peer's
//!   interval once it is heard); then reconcile with what the interfaces hold: addresses held
//!   and peer alive → release them; held and peer silent (or saying goodbye) → keep them.
//!   Every way out of the boot grace reconciles what was held at start.
//! - A new peer (SIGHUP) is watched from scratch, as at start: its links and timeout are its own.
//! - Shutdown releases what is held (with hooks), then exits.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A link is named by the peer's source address on it (one per subnet the peer sends on).
pub type LinkId = IpAddr;

/// A link-layer (MAC) address.
pub type Mac = [u8; 6];

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

/// Probes sent in a round: one lost probe (or answer) must not matter.
pub const PROBES: u32 = 3;

/// The probes before a takeover are spread over the last 30 % of the timeout (at most
/// [`PROBE_WINDOW_MAX`]); the last one leaves a third of that for the answer.
pub const PROBE_WINDOW_PERCENT: u32 = 30;

/// The longest probe window: an answer on a LAN takes milliseconds, not seconds.
pub const PROBE_WINDOW_MAX: Duration = Duration::from_secs(1);

/// In `conflict`, a probe round lasts at least this long, so that a 10 ms pair does not
/// broadcast 300 probes a second while it waits.
pub const CONFLICT_ROUND_MIN: Duration = Duration::from_millis(100);

/// While holding, the addresses are probed this often, at most (see [`hold_probe_every`]).
pub const HOLD_PROBE_MAX: Duration = Duration::from_secs(1);

/// RFC 5227's DEFEND_INTERVAL: an address in conflict is defended at most this often.
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);

/// The default of `FAILOVER_CONFLICT_GRACE`: how long another host may answer for an address
/// we hold before we give it up. Long enough for a host that said goodbye to finish shutting
/// down (its kernel answers until its links go down).
pub const DEFAULT_CONFLICT_GRACE: Duration = Duration::from_secs(30);

/// The first retry of an add that failed; each further one waits twice as long, up to
/// [`ADD_RETRY_MAX`].
pub const ADD_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two retries of a failed add.
pub const ADD_RETRY_MAX: Duration = Duration::from_secs(30);

/// The probe window before a takeover for a given timeout.
pub fn probe_window(timeout: Duration) -> Duration {
    (timeout * PROBE_WINDOW_PERCENT / 100).min(PROBE_WINDOW_MAX)
}

/// How often held addresses are probed for a conflict, for a given grace: four probes per
/// grace window, at most one per second, at least one per 10 ms.
pub fn hold_probe_every(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(10), HOLD_PROBE_MAX)
}

/// The settings the core needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `FAILOVER_PEER_IP`: a new one is watched from scratch.
    pub peer: Option<IpAddr>,
    /// `FAILOVER_TIMEOUT`; `None` derives it from the peer's announced interval.
    pub timeout: Option<Duration>,
    /// `FAILOVER_RELEASE_AFTER`: consecutive heartbeats on one link before a release.
    pub release_after: u32,
    /// The addresses we take over. While we may hold them, a link whose peer address is one
    /// of them is blind, not lost: the kernel drops datagrams whose source is a local address.
    pub taken_over: Vec<IpAddr>,
    /// `FAILOVER_CONFLICT_GRACE`: how long another host may answer for an address we hold.
    pub conflict_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peer: None,
            timeout: None,
            release_after: 3,
            taken_over: Vec::new(),
            conflict_grace: DEFAULT_CONFLICT_GRACE,
        }
    }
}

/// failoverd's state, as the status file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just started: waiting one timeout before judging.
    BootGrace,
    /// The peer holds its addresses; we watch it.
    Monitoring,
    /// The peer is silent on every link, but another host still answers for an address:
    /// no takeover while it does.
    Conflict,
    /// Taking over, at the given step.
    Acquiring(AcquireStep),
    /// We hold the peer's addresses.
    Acquired,
    /// Giving them back, at the given step.
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
    /// The name used in status files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::BootGrace => "boot-grace",
            State::Monitoring => "monitoring",
            State::Conflict => "conflict",
            State::Acquiring(_) => "acquiring",
            State::Acquired => "acquired",
            State::Releasing(_) => "releasing",
            State::Stopped => "stopped",
        }
    }

    /// Whether the addresses may be on our interfaces in this state.
    pub fn may_hold(self) -> bool {
        matches!(
            self,
            State::Acquiring(AcquireStep::Adding | AcquireStep::PostAcq)
                | State::Acquired
                | State::Releasing(ReleaseStep::PreRel | ReleaseStep::Removing)
        )
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

/// Why a transition happened. The first six are also the hooks' `FAILOVER_REASON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No heartbeat on any link for the timeout (and no other host answers).
    Timeout,
    /// The peer said goodbye.
    Goodbye,
    /// The peer's heartbeats are back and steady.
    PeerReturned,
    /// failoverd is stopping.
    Shutdown,
    /// An administrator asked for it.
    Manual,
    /// Another host answers for the address: no takeover, or a release of what we hold.
    Conflict,
    /// The boot grace ended with the peer alive and nothing held.
    BootGraceOver,
    /// At start the addresses were already held and the peer is silent: kept.
    Reconcile,
    /// The `Test` hook refused the takeover.
    TestRefused,
    /// The peer was heard while `Test` ran, or during a conflict: the takeover was dropped.
    PeerAlive,
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
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hook events of SPEC §4, in the order a takeover and a release run them.
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

/// Another host answering for one of our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The address it answers for.
    pub addr: IpAddr,
    /// Its link-layer address.
    pub mac: Mac,
    /// When this episode began.
    pub since: Instant,
    /// Whether we hold the addresses (a conflict while holding) or were about to take over.
    pub holding: bool,
    /// When it last answered.
    pub last_answer: Instant,
    /// Whether the administrator was told. A conflict while holding is told (and defended)
    /// only once it has lasted a timeout: a returning peer announces itself a moment before
    /// its first heartbeat counts, and that is a failback, not a conflict.
    pub reported: bool,
}

/// Something the administrator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// We took over the peer's addresses.
    TookOver(Reason),
    /// We gave them back.
    Released(Reason),
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
    /// An address we hold vanished from its interface; it is being added again.
    AddressLost(IpAddr),
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
    /// A valid heartbeat from the peer arrived on a link; `interval` is what it announced
    /// (`None` for Apple's bare datagram).
    Heartbeat {
        /// The link it arrived on.
        link: LinkId,
        /// The peer's announced interval.
        interval: Option<Duration>,
        /// The local interface it arrived on (an index), if known: a link whose interface
        /// carries heartbeats from a new source address was renumbered.
        via: Option<u32>,
    },
    /// A valid goodbye from the peer arrived on a link.
    Goodbye {
        /// The link it arrived on.
        link: LinkId,
    },
    /// Another host (not us) answered a probe for one of our addresses, or announced it.
    ProbeAnswer {
        /// The address.
        addr: IpAddr,
        /// The other host's link-layer address.
        mac: Mac,
    },
    /// Time passed; check deadlines.
    Tick,
    /// The hooks of a phase finished; `ok` is false if one failed (for `Test`: refused).
    HooksDone {
        /// Which phase.
        phase: HookPhase,
        /// Whether every hook succeeded.
        ok: bool,
    },
    /// The addresses were added (`ok` false: at least one failed).
    AddressesAdded {
        /// Whether all were added.
        ok: bool,
    },
    /// The addresses were removed (`ok` false: at least one failed).
    AddressesRemoved {
        /// Whether all were removed.
        ok: bool,
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

/// What an administrator can ask of failoverd (SPEC §11). Each is answered with one
/// [`Action::Answer`]; what it starts has the reason [`Reason::Manual`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Never take over until resumed (or until `until`); keep watching. What is held stays
    /// held, and the release rule still gives it back.
    Pause {
        /// Resume by itself at this instant; `None`: until `Resume`.
        until: Option<Instant>,
    },
    /// Take over again when the peer is silent.
    Resume,
    /// Give the addresses back now. Refused while the peer is silent (nobody would hold them)
    /// unless `force`.
    Release {
        /// Release even though the peer is silent.
        force: bool,
    },
    /// Take over now, after a probe round finds that nobody answers for the addresses (or at
    /// once with `force`). What is taken over by hand is kept until released by hand: the
    /// release rule does not give it back while the peer's heartbeats go on.
    Takeover {
        /// Take over even if another host answers.
        force: bool,
    },
}

/// Whether a pause is in force, and since and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// When it began.
    pub since: Instant,
    /// When it ends by itself, if it does.
    pub until: Option<Instant>,
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
    },
    /// Add every address, then report [`Event::AddressesAdded`].
    AddAddresses,
    /// Announce every address now and repeat it a few times (gratuitous ARP / NA).
    Announce,
    /// Stop repeating announcements (the addresses are about to go).
    StopAnnouncing,
    /// Send one probe for every address (ARP probe with sender 0.0.0.0, RFC 5227; DAD
    /// neighbour solicitation for IPv6); answers come back as [`Event::ProbeAnswer`].
    Probe,
    /// Announce every held address once, to pull the LAN back to us (RFC 5227 §2.4 (b)).
    Defend,
    /// Remove every address, then report [`Event::AddressesRemoved`].
    RemoveAddresses,
    /// The addresses were given up to the host that kept answering for them: announce them
    /// on its behalf (its link-layer address as the sender), repeated, so the LAN's caches
    /// go back to it even if it announces nothing itself (its heartbeatd stopped).
    HandBack {
        /// The link-layer address of the host that answers for them.
        mac: Mac,
    },
    /// Tell the primary we released its addresses, so it announces them at once.
    SendReleased,
    /// Tell the administrator.
    Notify(Notice),
    /// The answer to the administrator's command under way: done (`Ok`, what was done) or
    /// refused (`Err`, why).
    Answer(Result<String, String>),
    /// Exit the process.
    Exit,
}

/// What the core knows of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// When its last valid heartbeat arrived.
    pub last: Instant,
    /// Since when it has carried heartbeats without a silence as long as the timeout.
    pub up_since: Instant,
    /// Consecutive heartbeats counted towards a release.
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

impl Link {
    /// When its silence started, for judging it.
    fn silent_since(&self) -> Instant {
        self.last.max(self.judged_from)
    }
}

/// A round of probes: when it must decide, and what it sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Round {
    /// The decision is due at this instant (the takeover deadline it guards), and not before
    /// a third of the window after the last probe.
    decide_at: Instant,
    /// Over how long its probes are spread.
    window: Duration,
    sent: u32,
    /// When the first and the last probe went out.
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Round {
    fn new(decide_at: Instant, window: Duration) -> Round {
        Round {
            decide_at,
            window,
            sent: 0,
            first_sent: None,
            last_sent: None,
        }
    }

    fn gap(&self) -> Duration {
        self.window / PROBES
    }

    /// When the next probe is due, if one is still to go.
    fn next_probe(&self) -> Option<Instant> {
        if self.sent >= PROBES {
            return None;
        }
        let planned = self
            .decide_at
            .checked_sub(self.window)
            .unwrap_or(self.decide_at)
            + self.gap() * self.sent;
        Some(match self.last_sent {
            // After a stall the probes are still spread out: one lost probe must not matter.
            Some(last) => planned.max(last + self.gap()),
            None => planned,
        })
    }

    /// When the round may decide: every probe sent, the deadline reached, and a third of the
    /// window given to the last probe's answer.
    fn decision(&self) -> Option<Instant> {
        match (self.sent >= PROBES, self.last_sent) {
            (true, Some(last)) => Some(self.decide_at.max(last + self.gap())),
            _ => None,
        }
    }
}

/// failoverd's decisions.
#[derive(Debug, Clone)]
pub struct Failover {
    config: Config,
    state: State,
    started: Instant,
    /// The peer is watched since then (the start, or a change of peer).
    watch_since: Instant,
    held_at_start: bool,
    links: BTreeMap<LinkId, Link>,
    last_heard: Option<Instant>,
    announced_interval: Option<Duration>,
    /// A refused takeover is not retried before this instant.
    retry_not_before: Option<Instant>,
    /// `Test` refused during the current outage (mail once per outage).
    refused_this_outage: bool,
    /// Why the current takeover or release started.
    transition_reason: Reason,
    /// Shutdown was asked for while a transition ran.
    stop_requested: bool,
    /// The peer was heard while `Test` ran.
    heard_during_test: bool,
    /// The peer said goodbye and has not been heard since, and no takeover used it yet.
    said_goodbye: bool,
    /// When that goodbye came: it spares the probe for one timeout, not for ever.
    goodbye_at: Option<Instant>,
    /// The probe round guarding a takeover, or running in `conflict`.
    round: Option<Round>,
    /// The latest answer for one of our addresses from another host: when, which, from whom.
    last_answer: Option<(Instant, IpAddr, Mac)>,
    /// The conflict under way, if any.
    conflict: Option<Conflict>,
    /// The `Fence` hooks ran in this conflict episode.
    fenced: bool,
    /// The `Fence` hooks are running.
    fence_running: bool,
    /// When the held addresses were last probed for a conflict while holding.
    hold_probed: Option<Instant>,
    /// When we last defended an address.
    defended: Option<Instant>,
    /// A failed add is retried at this instant, and the wait after that.
    add_retry: Option<(Instant, Duration)>,
    /// The host the release under way gives the addresses up to, after a conflict.
    handback: Option<Mac>,
    /// Takeovers paused by an administrator.
    pause: Option<Pause>,
    /// A manual takeover waits for its probe round (`Some(force)`), or a command waits for
    /// its answer at the end of a transition.
    manual_round: Option<Round>,
    /// Held by an administrator's takeover: the release rule does not apply.
    manual_hold: bool,
    /// The latest time the shell handed in: what has been judged already.
    now: Instant,
}

impl Failover {
    /// Starts in boot grace. `held_at_start` says whether the interfaces already hold any of
    /// the peer's addresses (a restart while we held them).
    pub fn new(now: Instant, config: Config, held_at_start: bool) -> Failover {
        Failover {
            config,
            state: State::BootGrace,
            started: now,
            watch_since: now,
            held_at_start,
            links: BTreeMap::new(),
            last_heard: None,
            announced_interval: None,
            retry_not_before: None,
            refused_this_outage: false,
            transition_reason: Reason::Timeout,
            stop_requested: false,
            heard_during_test: false,
            said_goodbye: false,
            goodbye_at: None,
            round: None,
            last_answer: None,
            conflict: None,
            fenced: false,
            fence_running: false,
            hold_probed: None,
            defended: None,
            add_retry: None,
            handback: None,
            pause: None,
            manual_round: None,
            manual_hold: false,
            now,
        }
    }

    /// The pause in force, if any.
    pub fn pause(&self) -> Option<Pause> {
        self.pause
    }

    /// Whether an administrator's takeover holds the addresses (the release rule is off).
    pub fn manual_hold(&self) -> bool {
        self.manual_hold
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the peer's addresses may be on our interfaces now: the state says so, or the
    /// boot grace began with them held.
    pub fn holds_addresses(&self) -> bool {
        self.state.may_hold() || (self.state == State::BootGrace && self.held_at_start)
    }

    /// The links seen so far, by the peer's source address.
    pub fn links(&self) -> &BTreeMap<LinkId, Link> {
        &self.links
    }

    /// The conflict under way, if any.
    pub fn conflict(&self) -> Option<&Conflict> {
        self.conflict.as_ref()
    }

    /// The timeout in force now.
    pub fn timeout(&self) -> Duration {
        self.config.timeout.unwrap_or_else(|| {
            self.announced_interval
                .map(|i| i.saturating_mul(TIMEOUT_INTERVALS) + i / TIMEOUT_MARGIN_DIVISOR)
                .unwrap_or(DEFAULT_TIMEOUT)
        })
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

    fn link_alive(&self, link: &Link, now: Instant) -> bool {
        now < link.last + self.timeout()
    }

    /// How much longer than a silent link another must have carried heartbeats before the
    /// silent one counts as lost: one interval (a third of the timeout before one is known).
    fn outlived_by(&self) -> Duration {
        self.announced_interval
            .unwrap_or_else(|| self.timeout() / 3)
    }

    /// The next instant at which the core wants a [`Event::Tick`], if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        };
        // While `Fence` runs nothing is decided: its end brings its own check.
        let decide = !self.fence_running;
        let consider_round = |round: Round, consider: &mut dyn FnMut(Instant)| {
            if let Some(t) = round.next_probe() {
                consider(t);
            }
            if let Some(t) = round.decision().filter(|_| decide) {
                consider(t);
            }
        };
        let paused = self.pause.is_some();
        match self.state {
            // Paused: no takeover to prepare; the grace still ends when the peer is heard.
            State::BootGrace if !self.held_at_start && paused && self.peer_alive(self.now) => {
                consider(self.grace_end());
            }
            State::BootGrace if !self.held_at_start && paused => {}
            State::Monitoring | State::Conflict if paused => {}
            State::BootGrace if !self.held_at_start => {
                if self.peer_alive(self.now) {
                    consider(self.grace_end());
                }
                consider_round(self.round_for(self.boot_deadline()), &mut consider);
            }
            State::BootGrace => consider(self.grace_end()),
            State::Monitoring => {
                let (at, reason) = self.takeover_deadline();
                if reason == Reason::Goodbye {
                    if decide {
                        consider(at);
                    }
                } else {
                    consider_round(self.round_for(at), &mut consider);
                }
            }
            State::Conflict => {
                if let Some(round) = self.round {
                    consider_round(round, &mut consider);
                }
            }
            State::Acquired => {
                if !self.peer_alive(self.now) {
                    consider(self.next_hold_probe());
                }
                if let Some(c) = &self.conflict {
                    consider(c.since + self.config.conflict_grace);
                    consider(self.conflict_over_at(c));
                    if !c.reported {
                        consider(c.since + timeout);
                    } else if let Some(t) = self.defended {
                        consider(t + DEFEND_INTERVAL);
                    }
                }
                if let Some((at, _)) = self.add_retry {
                    consider(at);
                }
            }
            _ => {}
        }
        if let Some(until) = self.pause.and_then(|p| p.until) {
            consider(until);
        }
        if let Some(r) = self.manual_round {
            if let Some(t) = r.next_probe() {
                consider(t);
            }
            if let Some(t) = r.decision() {
                consider(t);
            }
        }
        // While holding, the peer's return is news for the hold probes: they stop.
        if self.state == State::Acquired {
            if let Some(t) = self.last_heard {
                if t + timeout > self.now {
                    consider(t + timeout);
                }
            }
        }
        // Link anomalies (and renumbered links) are watched in every state but the last.
        if self.state != State::Stopped {
            for (id, link) in &self.links {
                if link.anomaly || self.blind(id) {
                    continue;
                }
                let silent_at = link.silent_since() + timeout;
                for (other_id, other) in &self.links {
                    if other_id == id {
                        continue;
                    }
                    // Only a link that outlived this one by an interval makes it lost; if
                    // `other` has not yet, its next heartbeat is an event with its own check.
                    if other.last < link.last + self.outlived_by() {
                        continue;
                    }
                    // The instant `link` would count as lost while `other` counts as steady,
                    // if `other` is still alive then.
                    let at = silent_at.max(other.up_since + timeout);
                    // A past instant was judged already: its condition can only become true
                    // again through an event, which brings its own check.
                    if at < other.last + timeout && at > self.now {
                        consider(at);
                    }
                }
            }
        }
        next
    }

    /// The probe round that guards a decision due at `at`: the one under way if it guards
    /// that instant, else a fresh one.
    fn round_for(&self, at: Instant) -> Round {
        match self.round {
            Some(r) if r.decide_at == at => r,
            _ => Round::new(at, probe_window(self.timeout())),
        }
    }

    /// When the boot grace decides, if the peer is not heard: at its end, or at the peer's own
    /// timeout if that is later (it was heard during the grace and then fell silent).
    fn boot_deadline(&self) -> Instant {
        let end = self.grace_end();
        self.last_heard.map_or(end, |t| end.max(t + self.timeout()))
    }

    /// When a takeover is due in `Monitoring`, and why.
    fn takeover_deadline(&self) -> (Instant, Reason) {
        let silent_since = self.last_heard.unwrap_or(self.watch_since);
        let (mut at, reason) = if self.goodbye_fresh() {
            (silent_since, Reason::Goodbye)
        } else {
            (silent_since + self.timeout(), Reason::Timeout)
        };
        if let Some(retry) = self.retry_not_before {
            at = at.max(retry);
        }
        (at, reason)
    }

    /// Whether a goodbye still asks for an unprobed takeover: it came within the last
    /// timeout. One that waited longer (a pause, a refused `Test` waiting its retry) no longer
    /// says the host is on its way down, so that takeover is probed like any other.
    fn goodbye_fresh(&self) -> bool {
        self.said_goodbye
            && self
                .goodbye_at
                .is_some_and(|t| self.now <= t + self.timeout())
    }

    fn next_hold_probe(&self) -> Instant {
        match self.hold_probed {
            Some(t) => t + hold_probe_every(self.config.conflict_grace),
            None => self.now,
        }
    }

    /// When a conflict while holding counts as over: nothing heard from the other host for
    /// two and a half probe periods.
    fn conflict_over_at(&self, c: &Conflict) -> Instant {
        c.last_answer + hold_probe_every(self.config.conflict_grace) * 5 / 2
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.now = self.now.max(now);
        match event {
            Event::Heartbeat {
                link,
                interval,
                via,
            } => self.handle_heartbeat(now, link, interval, via, &mut out),
            Event::Goodbye { link: _ } => self.handle_goodbye(now, &mut out),
            Event::ProbeAnswer { addr, mac } => self.handle_answer(now, addr, mac),
            Event::Tick => {}
            Event::HooksDone { phase, ok } => self.handle_hooks_done(now, phase, ok, &mut out),
            Event::AddressesAdded { ok } => self.handle_added(now, ok, &mut out),
            Event::AddressesRemoved { ok } => self.handle_removed(ok, &mut out),
            Event::AddressMissing { addr } => {
                // Held, and gone from under us: put it back (adding is idempotent) and tell.
                if self.state == State::Acquired && self.config.taken_over.contains(&addr) {
                    out.push(Action::Notify(Notice::AddressLost(addr)));
                    out.push(Action::AddAddresses);
                }
            }
            Event::Shutdown => self.handle_shutdown(&mut out),
            Event::Reconfigure(config) => self.reconfigure(now, config),
            Event::Command(c) => self.handle_command(now, c, &mut out),
        }
        self.check_deadlines(now, &mut out);
        out
    }

    fn reconfigure(&mut self, now: Instant, config: Config) {
        if config.peer != self.config.peer {
            // Another host: nothing we knew of the old one applies. It is watched as at start,
            // so its silence is counted from now, not from before we knew it.
            self.links.clear();
            self.last_heard = None;
            self.announced_interval = None;
            self.said_goodbye = false;
            self.retry_not_before = None;
            self.watch_since = now;
            self.round = None;
            self.end_conflict(None);
        }
        self.config = config;
    }

    fn handle_heartbeat(
        &mut self,
        now: Instant,
        id: LinkId,
        interval: Option<Duration>,
        via: Option<u32>,
        out: &mut Vec<Action>,
    ) {
        if let Some(i) = interval {
            self.announced_interval = Some(i);
        }
        let timeout = self.timeout();
        self.last_heard = Some(now);
        self.said_goodbye = false;
        // A heartbeat ends an outage: the next refusal of Test is mailed again.
        self.refused_this_outage = false;
        self.retry_not_before = None;
        if self.state == State::Acquiring(AcquireStep::Test) {
            self.heard_during_test = true;
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
        // The peer is alive: whatever answered for its address was the peer.
        if self.state == State::Conflict {
            self.end_conflict(Some(out));
            self.set_state(State::Monitoring, Reason::PeerAlive, out);
        } else if self.conflict.is_some_and(|c| c.holding) {
            // While holding, the release rule now applies; the answers were the peer's.
            self.end_conflict(Some(out));
        }
    }

    fn handle_goodbye(&mut self, now: Instant, out: &mut Vec<Action>) {
        // A goodbye ends every run of heartbeats: after it, only fresh ones count for a release.
        for link in self.links.values_mut() {
            link.consecutive = 0;
        }
        // heartbeatd says goodbye more than once, on every link: the copies that arrive once
        // the takeover it asked for is under way, or done, ask for nothing more. Kept, one
        // would start a second, unprobed takeover as soon as a release for a conflict (the
        // host stayed up) ended, and the address would go back and forth every grace.
        if matches!(self.state, State::Acquiring(_) | State::Acquired) {
            return;
        }
        self.said_goodbye = true;
        self.goodbye_at = Some(now);
        // The peer said goodbye: take over at once, without probing (it still answers until
        // it is down; a planned handover is what the goodbye asks for). In Monitoring the
        // deadline check does it (a refused Test still waits its retry); a release under way
        // finishes first, then the same check takes over again.
        match self.state {
            // Held at start and the peer leaves: keep them, as when it is silent.
            State::BootGrace if self.held_at_start => self.keep_held_at_start(Reason::Goodbye, out),
            State::BootGrace => self.start_takeover(now, Reason::Goodbye, out),
            // In Monitoring and Conflict, the deadline check takes over.
            _ => {}
        }
    }

    /// Another host answered for one of our addresses.
    fn handle_answer(&mut self, now: Instant, addr: IpAddr, mac: Mac) {
        if !self.config.taken_over.contains(&addr) {
            return;
        }
        self.last_answer = Some((now, addr, mac));
        if let Some(c) = &mut self.conflict {
            c.last_answer = now;
            return;
        }
        // While we hold the addresses and the peer is silent, an answer is a conflict while
        // holding; while the peer is heard, it is the returning peer and the release rule
        // handles it.
        if self.state == State::Acquired && !self.peer_alive(now) {
            self.conflict = Some(Conflict {
                addr,
                mac,
                since: now,
                holding: true,
                last_answer: now,
                reported: false,
            });
        }
    }

    /// Announces what we hold, at most once per [`DEFEND_INTERVAL`].
    fn defend(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.defended.is_none_or(|t| now >= t + DEFEND_INTERVAL) {
            self.defended = Some(now);
            out.push(Action::Defend);
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
    }

    fn handle_hooks_done(
        &mut self,
        now: Instant,
        phase: HookPhase,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        let reason = self.transition_reason;
        match (self.state, phase) {
            (State::Acquiring(AcquireStep::Test), HookPhase::Test) => {
                if self.stop_requested {
                    self.set_state(State::Stopped, Reason::Shutdown, out);
                    out.push(Action::Exit);
                } else if !ok {
                    // Test refused: abandon, and try again one timeout later if still silent.
                    self.retry_not_before = Some(now + self.timeout());
                    if !self.refused_this_outage {
                        self.refused_this_outage = true;
                        out.push(Action::Notify(Notice::TakeoverRefused));
                    }
                    self.set_state(State::Monitoring, Reason::TestRefused, out);
                } else if self.heard_during_test && self.peer_alive(now) && reason != Reason::Manual
                {
                    // Nothing was done yet, and the peer is back: drop the takeover.
                    self.set_state(State::Monitoring, Reason::PeerAlive, out);
                } else {
                    self.set_state(State::Acquiring(AcquireStep::PreAcq), reason, out);
                    out.push(Action::RunHooks {
                        phase: HookPhase::PreAcq,
                        reason,
                    });
                }
            }
            (_, HookPhase::Fence) => {
                self.fence_running = false;
                if self.stop_requested && self.state == State::Conflict {
                    self.set_state(State::Stopped, Reason::Shutdown, out);
                    out.push(Action::Exit);
                } else if self.state == State::Conflict {
                    // Fenced (or not): ask the LAN again at once rather than at the round's
                    // end, so that a powered-off peer is taken over within one round.
                    let window = self.conflict_round();
                    if ok || self.round.is_none() {
                        self.round = Some(Round::new(now + window, window));
                    }
                }
            }
            (State::Acquiring(AcquireStep::PreAcq), HookPhase::PreAcq) => {
                self.set_state(State::Acquiring(AcquireStep::Adding), reason, out);
                out.push(Action::AddAddresses);
            }
            (State::Acquiring(AcquireStep::PostAcq), HookPhase::PostAcq) => {
                self.set_state(State::Acquired, reason, out);
                out.push(Action::Notify(Notice::TookOver(reason)));
                if self.stop_requested {
                    self.start_release(Reason::Shutdown, out);
                }
            }
            (State::Releasing(ReleaseStep::PreRel), HookPhase::PreRel) => {
                self.set_state(State::Releasing(ReleaseStep::Removing), reason, out);
                out.push(Action::RemoveAddresses);
            }
            (State::Releasing(ReleaseStep::PostRel), HookPhase::PostRel) => {
                out.push(Action::Notify(Notice::Released(reason)));
                if self.stop_requested {
                    self.set_state(State::Stopped, Reason::Shutdown, out);
                    out.push(Action::Exit);
                } else {
                    self.set_state(State::Monitoring, reason, out);
                }
            }
            // A report that does not match the step (a stale one) changes nothing.
            _ => {}
        }
    }

    fn handle_added(&mut self, now: Instant, ok: bool, out: &mut Vec<Action>) {
        // Availability first: a failed add is reported by the shell, and the takeover goes on
        // with what could be added; the rest is retried while we hold.
        let retry = |prev: Option<(Instant, Duration)>| {
            let wait = prev.map_or(ADD_RETRY_FIRST, |(_, w)| (w * 2).min(ADD_RETRY_MAX));
            Some((now + wait, wait))
        };
        match self.state {
            State::Acquiring(AcquireStep::Adding) => {
                self.add_retry = if ok { None } else { retry(None) };
                let reason = self.transition_reason;
                out.push(Action::Announce);
                self.set_state(State::Acquiring(AcquireStep::PostAcq), reason, out);
                out.push(Action::RunHooks {
                    phase: HookPhase::PostAcq,
                    reason,
                });
            }
            State::Acquired => {
                // A retry, a re-add of a vanished address, or the reconcile at start: what is
                // there now is announced.
                self.add_retry = if ok { None } else { retry(self.add_retry) };
                out.push(Action::Announce);
            }
            _ => {}
        }
    }

    fn handle_removed(&mut self, _ok: bool, out: &mut Vec<Action>) {
        if self.state == State::Releasing(ReleaseStep::Removing) {
            let reason = self.transition_reason;
            // Tell the primary at once; PostRel may take a while and the clients should not wait.
            out.push(Action::SendReleased);
            if let Some(mac) = self.handback.take() {
                out.push(Action::HandBack { mac });
            }
            self.set_state(State::Releasing(ReleaseStep::PostRel), reason, out);
            out.push(Action::RunHooks {
                phase: HookPhase::PostRel,
                reason,
            });
        }
    }

    /// An administrator's command. Each rule is a sentence: the core decides, the shell only
    /// carries the answer back.
    fn handle_command(&mut self, now: Instant, command: Command, out: &mut Vec<Action>) {
        let peer = self
            .config
            .peer
            .map_or("the peer".to_string(), |p| p.to_string());
        match command {
            // Pause: takeovers stop, watching goes on; a second pause moves its end.
            Command::Pause { until } => {
                let pause = Pause {
                    since: self.pause.map_or(now, |p| p.since),
                    until,
                };
                self.pause = Some(pause);
                // A probe round for a takeover is dropped; one for a manual takeover too.
                if matches!(self.state, State::Monitoring | State::BootGrace) {
                    self.round = None;
                }
                self.manual_round = None;
                out.push(Action::Notify(Notice::Paused(pause)));
                let held = if self.state.may_hold() {
                    " (what it holds stays held until the peer's heartbeats give it back)"
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
            Command::Release { force } => match self.state {
                State::Acquired if !self.peer_alive(now) && !force => {
                    out.push(Action::Answer(Err(format!(
                        "refused: {peer} is silent, so releasing would leave nobody answering                          for its addresses (--force releases anyway; failoverd then takes them                          over again after the timeout unless paused)"
                    ))));
                }
                State::Acquired => {
                    self.manual_hold = false;
                    self.end_conflict(Some(out));
                    self.start_release(Reason::Manual, out);
                    out.push(Action::Answer(Ok(format!(
                        "releasing: giving the addresses back to {peer} (PreRel, remove,                          PostRel)"
                    ))));
                }
                State::Acquiring(_) | State::Releasing(_) => {
                    out.push(Action::Answer(Err(format!(
                        "refused: a transition is under way ({}); ask again when it is over",
                        self.state
                    ))));
                }
                _ => out.push(Action::Answer(Err(
                    "refused: this host holds none of the peer's addresses".to_string(),
                ))),
            },
            // Takeover: only when nothing holds them; after a probe round unless forced.
            Command::Takeover { force } => match self.state {
                State::Monitoring | State::Conflict | State::BootGrace if force => {
                    self.end_conflict(Some(out));
                    self.held_at_start = false;
                    self.manual_hold = true;
                    self.start_takeover(now, Reason::Manual, out);
                    out.push(Action::Answer(Ok(
                        "taking over (forced: not probed first)".to_string()
                    )));
                }
                State::Monitoring | State::Conflict | State::BootGrace if self.held_at_start => {
                    out.push(Action::Answer(Err(
                        "refused: the addresses were on this host at start and failoverd is                          still deciding about them (boot grace)"
                            .to_string(),
                    )));
                }
                State::Monitoring | State::Conflict | State::BootGrace => {
                    if self.manual_round.is_none() {
                        let window = probe_window(self.timeout()).max(CONFLICT_ROUND_MIN);
                        self.manual_round = Some(Round::new(now + window, window));
                    }
                    // Answered when the round decides (check_manual_round).
                }
                State::Acquired => out.push(Action::Answer(Ok(
                    "already holding the addresses".to_string()
                ))),
                State::Acquiring(_) | State::Releasing(_) => {
                    out.push(Action::Answer(Err(format!(
                        "refused: a transition is under way ({}); ask again when it is over",
                        self.state
                    ))));
                }
                State::Stopped => out.push(Action::Answer(Err("failoverd is stopping".into()))),
            },
        }
    }

    /// The probe round of a manual takeover: the takeover if nobody answered, else a refusal.
    fn check_manual_round(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(mut round) = self.manual_round else {
            return;
        };
        if !matches!(
            self.state,
            State::Monitoring | State::Conflict | State::BootGrace
        ) {
            self.manual_round = None;
            out.push(Action::Answer(Err(format!(
                "refused: the state changed to {} while probing",
                self.state
            ))));
            return;
        }
        if round.next_probe().is_some_and(|t| now >= t) {
            round.sent += 1;
            round.first_sent.get_or_insert(now);
            round.last_sent = Some(now);
            out.push(Action::Probe);
        }
        self.manual_round = Some(round);
        if round.decision().is_some_and(|t| now >= t) {
            self.manual_round = None;
            match self.answer_since(round.first_sent) {
                Some((addr, mac)) => out.push(Action::Answer(Err(format!(
                    "refused: {addr} still answers from {} on the LAN; taking it over would                      make two hosts answer for it (--force takes over anyway)",
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                )))),
                None => {
                    self.end_conflict(Some(out));
                    self.held_at_start = false;
                    self.manual_hold = true;
                    self.start_takeover(now, Reason::Manual, out);
                    out.push(Action::Answer(Ok(
                        "taking over: nobody answers for the addresses".to_string(),
                    )));
                }
            }
        }
    }

    fn handle_shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            // Addresses found at start are released like ours.
            State::BootGrace if self.held_at_start => self.start_release(Reason::Shutdown, out),
            State::Conflict if self.fence_running => self.stop_requested = true,
            State::BootGrace | State::Monitoring | State::Conflict => {
                self.set_state(State::Stopped, Reason::Shutdown, out);
                out.push(Action::Exit);
            }
            State::Acquired => self.start_release(Reason::Shutdown, out),
            // A transition under way finishes its current step first; see the step handlers.
            State::Acquiring(_) | State::Releasing(_) => self.stop_requested = true,
            State::Stopped => {}
        }
    }

    /// Acts on every deadline that has passed. A state entered here may have deadlines of
    /// its own that passed already (a probe window that began before it was entered): it is
    /// checked at once, a few times at most.
    fn check_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        // A `pause --for` that has run its time.
        if self
            .pause
            .is_some_and(|p| p.until.is_some_and(|u| now >= u))
        {
            self.pause = None;
            out.push(Action::Notify(Notice::Resumed { auto: true }));
        }
        self.check_manual_round(now, out);
        self.check_links(now, out);
        for _ in 0..4 {
            let before = self.state;
            self.check_state_deadlines(now, out);
            if self.state == before {
                break;
            }
        }
    }

    fn check_state_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        // Paused: no takeover starts, from any state; what is held follows its rules.
        let paused = self.pause.is_some();
        match self.state {
            State::BootGrace
                if paused
                    && !self.held_at_start
                    && self.peer_alive(now)
                    && now >= self.grace_end() =>
            {
                self.set_state(State::Monitoring, Reason::BootGraceOver, out);
            }
            State::BootGrace if paused && !self.held_at_start => {}
            State::Monitoring | State::Conflict if paused => {}
            State::BootGrace if self.held_at_start && now >= self.grace_end() => {
                self.end_boot_grace(now, out);
            }
            State::BootGrace if self.held_at_start => {}
            State::BootGrace => {
                if self.peer_alive(now) && now >= self.grace_end() {
                    self.set_state(State::Monitoring, Reason::BootGraceOver, out);
                } else {
                    let at = self.boot_deadline();
                    self.run_round(now, at, out);
                }
            }
            State::Monitoring => {
                let (at, reason) = self.takeover_deadline();
                if reason == Reason::Goodbye {
                    if now >= at && !self.fence_running {
                        self.start_takeover(now, reason, out);
                    }
                } else {
                    self.run_round(now, at, out);
                }
            }
            State::Conflict if self.goodbye_fresh() && !self.fence_running => {
                // A planned handover, asked for while the address still answered: the
                // goodbye is not probed.
                self.end_conflict(Some(out));
                self.start_takeover(now, Reason::Goodbye, out);
            }
            State::Conflict => self.check_conflict_round(now, out),
            State::Acquired => self.check_holding(now, out),
            _ => {}
        }
    }

    /// Sends the probes due for a takeover at `at`, and decides once the round is complete:
    /// a conflict if another host answered, else the takeover.
    fn run_round(&mut self, now: Instant, at: Instant, out: &mut Vec<Action>) {
        let mut round = self.round_for(at);
        if round.next_probe().is_some_and(|t| now >= t) {
            round.sent += 1;
            round.first_sent.get_or_insert(now);
            round.last_sent = Some(now);
            out.push(Action::Probe);
        }
        self.round = Some(round);
        if round.decision().is_some_and(|t| now >= t) && !self.fence_running {
            self.round = None;
            match self.answer_since(round.first_sent) {
                Some((addr, mac)) => self.enter_conflict(now, addr, mac, out),
                None => self.start_takeover(now, Reason::Timeout, out),
            }
        }
    }

    /// The latest answer at or after `since`, if any.
    fn answer_since(&self, since: Option<Instant>) -> Option<(IpAddr, Mac)> {
        let since = since?;
        self.last_answer
            .filter(|(t, _, _)| *t >= since)
            .map(|(_, addr, mac)| (addr, mac))
    }

    /// A conflict round's length: the probe window, but not less than [`CONFLICT_ROUND_MIN`].
    fn conflict_round(&self) -> Duration {
        probe_window(self.timeout()).max(CONFLICT_ROUND_MIN)
    }

    fn enter_conflict(&mut self, now: Instant, addr: IpAddr, mac: Mac, out: &mut Vec<Action>) {
        let c = Conflict {
            addr,
            mac,
            since: now,
            holding: false,
            last_answer: now,
            reported: true,
        };
        self.conflict = Some(c);
        self.set_state(State::Conflict, Reason::Conflict, out);
        out.push(Action::Notify(Notice::Conflict(c)));
        let window = self.conflict_round();
        self.round = Some(Round::new(now + window, window));
        // The administrator's way out: power the other host off. Once per episode.
        if !self.fenced {
            self.fenced = true;
            self.fence_running = true;
            out.push(Action::RunHooks {
                phase: HookPhase::Fence,
                reason: Reason::Conflict,
            });
        }
        // The next round's first probe goes out at once.
        if self.state == State::Conflict {
            self.check_conflict_round(now, out);
        }
    }

    /// In `conflict`: probe in rounds; a round without an answer ends the conflict with the
    /// takeover (not while `Fence` runs: its end starts a new round at once).
    fn check_conflict_round(&mut self, now: Instant, out: &mut Vec<Action>) {
        let window = self.conflict_round();
        let mut round = self
            .round
            .unwrap_or_else(|| Round::new(now + window, window));
        if round.decision().is_some_and(|t| now >= t) {
            let answered = self.answer_since(round.first_sent);
            if answered.is_none() && !self.fence_running {
                self.round = None;
                self.end_conflict(Some(out));
                self.start_takeover(now, Reason::Timeout, out);
                return;
            }
            if let (Some((addr, mac)), Some(c)) = (answered, &mut self.conflict) {
                c.addr = addr;
                c.mac = mac;
            }
            // Still answering, or `Fence` still at work: another round, starting now.
            round = Round::new(now + window, window);
        }
        if round.next_probe().is_some_and(|t| now >= t) {
            round.sent += 1;
            round.first_sent.get_or_insert(now);
            round.last_sent = Some(now);
            out.push(Action::Probe);
        }
        self.round = Some(round);
    }

    /// While holding: probe for a conflict while the peer is silent, give the addresses up
    /// when another host keeps answering past the grace, retry a failed add, release on the
    /// peer's steady return.
    fn check_holding(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some((at, _)) = self.add_retry {
            if now >= at {
                out.push(Action::AddAddresses);
                // Rescheduled by the report of this add.
                self.add_retry = self.add_retry.map(|(_, w)| (now + w, w));
            }
        }
        if let Some(mut c) = self.conflict {
            if now >= self.conflict_over_at(&c) {
                self.end_conflict(Some(out));
            } else if now >= c.since + self.config.conflict_grace {
                // The other host kept answering for the whole grace: it is there, and two
                // hosts answering for one address is worse than none of ours.
                if !c.reported {
                    c.reported = true;
                    out.push(Action::Notify(Notice::Conflict(c)));
                }
                self.end_conflict(None);
                self.start_release(Reason::Conflict, out);
                self.handback = Some(c.mac);
                return;
            } else if c.reported || now >= c.since + self.timeout() {
                if !c.reported {
                    c.reported = true;
                    self.conflict = Some(c);
                    out.push(Action::Notify(Notice::Conflict(c)));
                }
                self.defend(now, out);
            }
        }
        // Held by an administrator's takeover: given back only by an administrator.
        if self.release_due() && !self.manual_hold {
            self.start_release(Reason::PeerReturned, out);
            return;
        }
        if !self.peer_alive(now) && now >= self.next_hold_probe() {
            self.hold_probed = Some(now);
            out.push(Action::Probe);
        }
    }

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
        let steady: Vec<(LinkId, Instant)> = self
            .links
            .iter()
            .filter(|(_, l)| self.link_alive(l, now) && now >= l.up_since + timeout)
            .map(|(id, l)| (*id, l.last))
            .collect();
        let outlived_by = self.outlived_by();
        let blind: Vec<LinkId> = self
            .links
            .keys()
            .filter(|id| self.blind(id))
            .copied()
            .collect();
        for (id, link) in self.links.iter_mut() {
            let silent = now >= link.silent_since() + timeout;
            let outlived = steady
                .iter()
                .any(|(s, last)| s != id && *last >= link.last + outlived_by);
            if !link.anomaly && silent && !blind.contains(id) && outlived {
                link.anomaly = true;
                out.push(Action::Notify(Notice::LinkLost(*id)));
            }
        }
    }

    /// Whether we cannot hear this link now because we may hold its peer address.
    fn blind(&self, id: &LinkId) -> bool {
        self.holds_addresses() && self.config.taken_over.contains(id)
    }

    fn release_due(&self) -> bool {
        self.links
            .values()
            .any(|l| l.consecutive >= self.config.release_after)
    }

    fn end_boot_grace(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.peer_alive(now) {
            // Held and the peer is back: give them back, with hooks.
            self.set_state(State::Acquired, Reason::Reconcile, out);
            self.start_release(Reason::PeerReturned, out);
        } else {
            self.keep_held_at_start(Reason::Reconcile, out);
        }
    }

    /// Held at start and the peer is silent (or leaving): keep them, and make sure all are
    /// there and known.
    fn keep_held_at_start(&mut self, reason: Reason, out: &mut Vec<Action>) {
        self.set_state(State::Acquired, reason, out);
        out.push(Action::AddAddresses);
    }

    fn start_takeover(&mut self, _now: Instant, reason: Reason, out: &mut Vec<Action>) {
        self.transition_reason = reason;
        self.heard_during_test = false;
        // A goodbye starts one takeover, not one after every release.
        self.said_goodbye = false;
        self.round = None;
        // Only heartbeats heard from now on count towards giving the addresses back.
        for link in self.links.values_mut() {
            link.consecutive = 0;
        }
        self.set_state(State::Acquiring(AcquireStep::Test), reason, out);
        out.push(Action::RunHooks {
            phase: HookPhase::Test,
            reason,
        });
    }

    fn start_release(&mut self, reason: Reason, out: &mut Vec<Action>) {
        self.transition_reason = reason;
        if reason == Reason::Shutdown {
            self.stop_requested = true;
        }
        self.add_retry = None;
        self.set_state(State::Releasing(ReleaseStep::PreRel), reason, out);
        out.push(Action::StopAnnouncing);
        out.push(Action::RunHooks {
            phase: HookPhase::PreRel,
            reason,
        });
    }

    /// The one funnel for state changes: ignores self-transitions, records the reason.
    fn set_state(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        if self.state == to {
            return;
        }
        let from = self.state;
        let could_hold = self.holds_addresses();
        self.state = to;
        // A manual hold ends with the holding.
        if matches!(to, State::Monitoring | State::Stopped) {
            self.manual_hold = false;
        }
        if to != State::BootGrace {
            self.held_at_start = false;
        }
        // The links we could not hear while holding their source address are judged from now:
        // their silence while we held it says nothing.
        if could_hold && !self.holds_addresses() {
            let now = self.now;
            let taken = self.config.taken_over.clone();
            for (id, link) in self.links.iter_mut() {
                if taken.contains(id) {
                    link.judged_from = link.judged_from.max(now);
                }
            }
        }
        if !matches!(to, State::Acquired) {
            self.hold_probed = None;
            if self.conflict.is_some_and(|c| c.holding) {
                self.conflict = None;
            }
        }
        out.push(Action::Transition { from, to, reason });
    }
}

#[cfg(test)]
mod tests;
