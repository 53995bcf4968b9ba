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
//! - Takeover: when no link carried a heartbeat for the timeout, or at once on a goodbye.
//! - The takeover runs `Test`; a refusal abandons it and it is tried again one timeout later
//!   while the peer stays silent. Then `PreAcq`, add, announce, `PostAcq`.
//! - If the peer is heard while `Test` runs, nothing has been done yet: the takeover is dropped.
//!   Once `PreAcq` has started, the acquisition completes, and the release rule then applies
//!   (heartbeats heard during the acquisition count). So the address is never left held with
//!   the peer alive, and no hook sequence is cut in the middle.
//! - Release: when one link has carried `FAILOVER_RELEASE_AFTER` consecutive heartbeats (no gap
//!   as long as the timeout) since the takeover began: `PreRel`, remove, `released` to the
//!   primary, `PostRel`.
//! - One link silent for a timeout while another has carried heartbeats for a timeout is a
//!   network anomaly (redundancy gone): notified, never a takeover.
//! - At start, a boot grace of one timeout; then reconcile with what the interfaces hold:
//!   addresses held and peer alive → release them; held and peer silent → keep them.
//! - Shutdown releases what is held (with hooks), then exits.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// The settings the core needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `FAILOVER_TIMEOUT`; `None` derives it from the peer's announced interval.
    pub timeout: Option<Duration>,
    /// `FAILOVER_RELEASE_AFTER`: consecutive heartbeats on one link before a release.
    pub release_after: u32,
    /// The addresses we take over. While we may hold them, a link whose peer address is one
    /// of them is blind, not lost: the kernel drops datagrams whose source is a local address.
    pub taken_over: Vec<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: None,
            release_after: 3,
            taken_over: Vec::new(),
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

/// Why a transition happened. The first five are also the hooks' `FAILOVER_REASON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No heartbeat on any link for the timeout.
    Timeout,
    /// The peer said goodbye.
    Goodbye,
    /// The peer's heartbeats are back and steady.
    PeerReturned,
    /// failoverd is stopping.
    Shutdown,
    /// An administrator asked for it.
    Manual,
    /// The boot grace ended with the peer alive and nothing held.
    BootGraceOver,
    /// At start the addresses were already held and the peer is silent: kept.
    Reconcile,
    /// The `Test` hook refused the takeover.
    TestRefused,
    /// The peer was heard while `Test` ran: the takeover was dropped.
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
            HookPhase::PreAcq => "PreAcq",
            HookPhase::PostAcq => "PostAcq",
            HookPhase::PreRel => "PreRel",
            HookPhase::PostRel => "PostRel",
        }
    }
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
    },
    /// A valid goodbye from the peer arrived on a link.
    Goodbye {
        /// The link it arrived on.
        link: LinkId,
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
    /// Stop: release what is held, then exit.
    Shutdown,
    /// New settings (SIGHUP).
    Reconfigure(Config),
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
    /// Remove every address, then report [`Event::AddressesRemoved`].
    RemoveAddresses,
    /// Tell the primary we released its addresses, so it announces them at once.
    SendReleased,
    /// Tell the administrator.
    Notify(Notice),
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
}

/// failoverd's decisions.
#[derive(Debug, Clone)]
pub struct Failover {
    config: Config,
    state: State,
    started: Instant,
    grace_end: Instant,
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
    /// The peer said goodbye and has not been heard since.
    said_goodbye: bool,
    /// The latest time the shell handed in: what has been judged already.
    now: Instant,
}

impl Failover {
    /// Starts in boot grace. `held_at_start` says whether the interfaces already hold any of
    /// the peer's addresses (a restart while we held them).
    pub fn new(now: Instant, config: Config, held_at_start: bool) -> Failover {
        let grace = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Failover {
            config,
            state: State::BootGrace,
            started: now,
            grace_end: now + grace,
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
            now,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The links seen so far, by the peer's source address.
    pub fn links(&self) -> &BTreeMap<LinkId, Link> {
        &self.links
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

    /// The next instant at which the core wants a [`Event::Tick`], if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        };
        match self.state {
            State::BootGrace => consider(self.grace_end),
            State::Monitoring => consider(self.takeover_deadline().0),
            _ => {}
        }
        // Link anomalies are watched in every state but the last.
        if self.state != State::Stopped {
            for (id, link) in &self.links {
                if link.anomaly || self.blind(id) {
                    continue;
                }
                for (other_id, other) in &self.links {
                    if other_id == id {
                        continue;
                    }
                    // The instant `link` would count as lost while `other` counts as steady,
                    // if `other` is still alive then.
                    let at = (link.last + timeout).max(other.up_since + timeout);
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

    /// When a takeover is due in `Monitoring`, and why.
    fn takeover_deadline(&self) -> (Instant, Reason) {
        let silent_since = self.last_heard.unwrap_or(self.started);
        let (mut at, reason) = if self.said_goodbye {
            (silent_since, Reason::Goodbye)
        } else {
            (silent_since + self.timeout(), Reason::Timeout)
        };
        if let Some(retry) = self.retry_not_before {
            at = at.max(retry);
        }
        (at, reason)
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.now = self.now.max(now);
        match event {
            Event::Heartbeat { link, interval } => {
                self.handle_heartbeat(now, link, interval, &mut out)
            }
            Event::Goodbye { link: _ } => self.handle_goodbye(now, &mut out),
            Event::Tick => {}
            Event::HooksDone { phase, ok } => self.handle_hooks_done(now, phase, ok, &mut out),
            Event::AddressesAdded { ok } => self.handle_added(ok, &mut out),
            Event::AddressesRemoved { ok } => self.handle_removed(ok, &mut out),
            Event::Shutdown => self.handle_shutdown(&mut out),
            Event::Reconfigure(config) => self.config = config,
        }
        self.check_deadlines(now, &mut out);
        out
    }

    fn handle_heartbeat(
        &mut self,
        now: Instant,
        id: LinkId,
        interval: Option<Duration>,
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
        });
        // A heartbeat after a silence as long as the timeout starts a new run.
        if now >= link.last + timeout || link.heartbeats == 0 {
            link.up_since = now;
            link.consecutive = 0;
        }
        link.last = now;
        link.heartbeats += 1;
        link.consecutive = link.consecutive.saturating_add(1);
        if link.anomaly {
            link.anomaly = false;
            out.push(Action::Notify(Notice::LinkBack(id)));
        }
    }

    fn handle_goodbye(&mut self, now: Instant, out: &mut Vec<Action>) {
        // A goodbye ends every run of heartbeats: after it, only fresh ones count for a release.
        for link in self.links.values_mut() {
            link.consecutive = 0;
        }
        self.said_goodbye = true;
        // The peer said goodbye: take over at once. In Monitoring the deadline check does it (a
        // refused Test still waits its retry); a release under way finishes first, then the
        // same check takes over again.
        if self.state == State::BootGrace {
            self.start_takeover(now, Reason::Goodbye, out);
        }
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
                } else if self.heard_during_test && self.peer_alive(now) {
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

    fn handle_added(&mut self, _ok: bool, out: &mut Vec<Action>) {
        // Availability first: a failed add is reported by the shell, and the takeover goes on
        // with what could be added.
        if self.state == State::Acquiring(AcquireStep::Adding) {
            let reason = self.transition_reason;
            out.push(Action::Announce);
            self.set_state(State::Acquiring(AcquireStep::PostAcq), reason, out);
            out.push(Action::RunHooks {
                phase: HookPhase::PostAcq,
                reason,
            });
        }
    }

    fn handle_removed(&mut self, _ok: bool, out: &mut Vec<Action>) {
        if self.state == State::Releasing(ReleaseStep::Removing) {
            let reason = self.transition_reason;
            // Tell the primary at once; PostRel may take a while and the clients should not wait.
            out.push(Action::SendReleased);
            self.set_state(State::Releasing(ReleaseStep::PostRel), reason, out);
            out.push(Action::RunHooks {
                phase: HookPhase::PostRel,
                reason,
            });
        }
    }

    fn handle_shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            // Addresses found at start are released like ours.
            State::BootGrace if self.held_at_start => self.start_release(Reason::Shutdown, out),
            State::BootGrace | State::Monitoring => {
                self.set_state(State::Stopped, Reason::Shutdown, out);
                out.push(Action::Exit);
            }
            State::Acquired => self.start_release(Reason::Shutdown, out),
            // A transition under way finishes its current step first; see the step handlers.
            State::Acquiring(_) | State::Releasing(_) => self.stop_requested = true,
            State::Stopped => {}
        }
    }

    fn check_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.check_links(now, out);
        match self.state {
            State::BootGrace if now >= self.grace_end => self.end_boot_grace(now, out),
            State::Monitoring if now >= self.takeover_deadline().0 => {
                let reason = self.takeover_deadline().1;
                self.start_takeover(now, reason, out)
            }
            State::Acquired if self.release_due() => self.start_release(Reason::PeerReturned, out),
            _ => {}
        }
    }

    /// Flags links silent for a timeout while another link has carried heartbeats for one.
    fn check_links(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Stopped {
            return;
        }
        let timeout = self.timeout();
        let steady: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| self.link_alive(l, now) && now >= l.up_since + timeout)
            .map(|(id, _)| *id)
            .collect();
        let blind: Vec<LinkId> = self
            .links
            .keys()
            .filter(|id| self.blind(id))
            .copied()
            .collect();
        for (id, link) in self.links.iter_mut() {
            let silent = now >= link.last + timeout;
            if !link.anomaly && silent && !blind.contains(id) && steady.iter().any(|s| s != id) {
                link.anomaly = true;
                out.push(Action::Notify(Notice::LinkLost(*id)));
            }
        }
    }

    /// Whether we cannot hear this link now because we may hold its peer address.
    fn blind(&self, id: &LinkId) -> bool {
        self.state.may_hold() && self.config.taken_over.contains(id)
    }

    fn release_due(&self) -> bool {
        self.links
            .values()
            .any(|l| l.consecutive >= self.config.release_after)
    }

    fn end_boot_grace(&mut self, now: Instant, out: &mut Vec<Action>) {
        let alive = self.peer_alive(now);
        match (self.held_at_start, alive) {
            // Held and the peer is back: give them back, with hooks.
            (true, true) => {
                self.set_state(State::Acquired, Reason::Reconcile, out);
                self.start_release(Reason::PeerReturned, out);
            }
            // Held and the peer is silent: keep them, and make sure all are there and known.
            (true, false) => {
                self.set_state(State::Acquired, Reason::Reconcile, out);
                out.push(Action::AddAddresses);
                out.push(Action::Announce);
            }
            (false, true) => self.set_state(State::Monitoring, Reason::BootGraceOver, out),
            (false, false) => self.start_takeover(now, Reason::Timeout, out),
        }
    }

    fn start_takeover(&mut self, _now: Instant, reason: Reason, out: &mut Vec<Action>) {
        self.transition_reason = reason;
        self.heard_during_test = false;
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
        self.state = to;
        out.push(Action::Transition { from, to, reason });
    }
}

#[cfg(test)]
mod tests;
