//! heartbeatd's decisions: when to send heartbeats, goodbyes and announcements, and when to add
//! and remove the primary's service addresses (docs/handover.md).
//!
//! Same shape as [`crate::failover`]: no clock, no socket. Heartbeats are due on a fixed grid
//! `start + n × interval`, so sends do not drift however late a loop turn wakes; a sender that
//! was stalled (a paused VM) sends one heartbeat at once, announces its addresses (the LAN may
//! have moved on meanwhile) and rejoins the grid, never a burst.
//!
//! The rules for service addresses (`FAILOVER_IP_PAIRS`), which heartbeatd owns:
//! - At start, and after giving one up, it *waits*: its heartbeats say it wants the address and
//!   carry a fresh wait token. It adds the address only when failoverd's report answers that
//!   token and says failoverd holds none of it, or when failoverd has said nothing for the
//!   silence (three intervals and a quarter) and a probe round gets no answer.
//! - Once added, it announces the address; it re-adds one removed behind its back.
//! - It gives an address up (removes it, then waits again) only when failoverd's report says
//!   failoverd holds it by an administrator's command, or asks it back (a failed handover):
//!   the side that gives up removes first, the side that takes adds after.
//! - On SIGTERM it removes every service address before its goodbye, and the goodbye says
//!   whether the host goes down or stays up with its own addresses.
//! - A service address whose link is down cannot be served: one held is given up (removed),
//!   and none is wanted or added until its link is back; failoverd takes it over meanwhile,
//!   and gives it back by agreement. A primary cut off from its LAN thus never comes back
//!   holding an address the secondary took.
//! - A `released` it has not acted on yet is acknowledged in every later heartbeat, and makes
//!   it announce the addresses it holds (rate-limited).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::probe::{self, Answers, Mac, Round};
use crate::wire::{Entry, Role};

/// How many goodbyes go out on every link when stopping.
pub const GOODBYES: u32 = 2;

/// A `released` datagram makes heartbeatd announce its addresses, at most this often.
pub const ANNOUNCE_MIN_GAP: Duration = Duration::from_millis(500);

/// A challenge is answered at once with an extra heartbeat round, at most this often: a
/// flood of challenges (which only a key holder can send) costs one round per gap.
pub const ANSWER_MIN_GAP: Duration = Duration::from_millis(20);

/// How long the regular heartbeats keep echoing a challenge's nonce after it arrived, at
/// least: if the at-once answer is lost, the next heartbeats still carry it.
pub const ECHO_FOR: Duration = Duration::from_secs(1);

/// Heartbeats echo a challenge's nonce for this many intervals, when that is longer than
/// [`ECHO_FOR`].
pub const ECHO_INTERVALS: u32 = 3;

/// A failed add of a service address is retried after this long.
pub const ADD_RETRY: Duration = Duration::from_secs(1);

/// What heartbeatd is configured to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderConfig {
    /// `FAILOVER_INTERVAL`.
    pub interval: Duration,
    /// The service addresses of `FAILOVER_IP_PAIRS`, which heartbeatd adds and removes.
    pub aliases: Vec<IpAddr>,
    /// `FAILOVER_ANNOUNCE_REFRESH`: announce what is held this often (`None`: only when
    /// something changes).
    pub announce_refresh: Option<Duration>,
}

impl SenderConfig {
    /// A sender with no service addresses and no refresh.
    pub fn interval(interval: Duration) -> SenderConfig {
        SenderConfig {
            interval,
            aliases: Vec::new(),
            announce_refresh: None,
        }
    }
}

/// An input to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// Time passed; send what is due.
    Tick,
    /// failoverd's report (a `released` datagram).
    Report {
        /// The id of the release it reports (0: none).
        id: u64,
        /// The wait token it answers (0: none).
        token: u64,
        /// What it says of our addresses.
        entries: Vec<Entry>,
    },
    /// A secondary asks us to prove that we are alive now.
    Challenged {
        /// The nonce to echo.
        nonce: u64,
    },
    /// New settings (SIGHUP): announce again.
    Reconfigure(SenderConfig),
    /// SIGTERM or SIGINT: remove the service addresses, say goodbye and exit.
    Shutdown {
        /// The host stays up (only heartbeatd stops), so its own addresses keep answering.
        stays_up: bool,
    },
    /// Service addresses were added; those in `failed` could not be.
    AliasesAdded {
        /// What could not be added.
        failed: Vec<IpAddr>,
    },
    /// Service addresses were removed.
    AliasesRemoved,
    /// Another host answered a probe for one of our service addresses, or announced it.
    ProbeAnswer {
        /// The address.
        addr: IpAddr,
        /// The other host's link-layer address.
        mac: Mac,
    },
    /// A service address we hold vanished from its interface.
    AliasMissing {
        /// The address.
        addr: IpAddr,
    },
    /// These service addresses are on links that are down now (the others' are up).
    LinksDown {
        /// The addresses that cannot be served.
        addrs: Vec<IpAddr>,
    },
}

/// Something heartbeatd should say in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderNotice {
    /// Waiting for failoverd before adding these service addresses.
    Waiting(Vec<IpAddr>),
    /// failoverd confirmed it holds none of these: adding them.
    Confirmed(Vec<IpAddr>),
    /// failoverd said nothing for the silence and nobody answered the probe: adding them.
    Unanswered(Vec<IpAddr>),
    /// failoverd said nothing, but another host answers for this one: not adding it.
    StillAnswers(IpAddr, Mac),
    /// failoverd holds this one by an administrator's command, or asks it back: giving it up.
    Yielding(Vec<IpAddr>, bool),
    /// A held service address vanished from its interface: adding it again.
    Missing(IpAddr),
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAction {
    /// Send one heartbeat to every destination (its fields from the sender's accessors).
    SendHeartbeat,
    /// Send one goodbye to every destination.
    SendGoodbye,
    /// Announce every address this host answers for on the heartbeat interfaces (gratuitous
    /// ARP / NA, repeated).
    Announce,
    /// Announce these addresses (repeated).
    AnnounceAddrs(Vec<IpAddr>),
    /// Add these service addresses, then report [`SenderEvent::AliasesAdded`].
    AddAliases(Vec<IpAddr>),
    /// Remove these service addresses, then report [`SenderEvent::AliasesRemoved`].
    RemoveAliases(Vec<IpAddr>),
    /// Send one probe for each of these addresses; answers come back as
    /// [`SenderEvent::ProbeAnswer`].
    Probe(Vec<IpAddr>),
    /// Tell the administrator (the log).
    Notify(SenderNotice),
    /// Exit the process.
    Exit,
}

/// Where one service address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AliasState {
    /// Not held; our heartbeats say we want it.
    Waiting,
    /// Being added.
    Adding,
    /// On its interface, ours.
    Held,
    /// Being removed.
    Removing,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Alias {
    addr: IpAddr,
    state: AliasState,
    /// A failed add is retried at this instant.
    retry_at: Option<Instant>,
}

/// heartbeatd's decisions.
#[derive(Debug, Clone, Hash)]
pub struct Sender {
    config: SenderConfig,
    next_send: Instant,
    /// When the last loop turn handed in the time: a turn much later than the grid expected
    /// is a stall.
    last_turn: Instant,
    /// When a `released` datagram last made us announce.
    last_released_announce: Option<Instant>,
    /// The nonce our datagrams echo, and until when.
    echo: Option<(u64, Instant)>,
    /// When a challenge was last answered with an extra round.
    last_answer: Option<Instant>,
    announced_at_start: bool,
    /// When the addresses were last announced (for the refresh).
    last_announce: Option<Instant>,
    sent: u64,
    /// Shutting down: the service addresses go first, then the goodbyes.
    stopping: Option<bool>,
    stopped: bool,
    aliases: Vec<Alias>,
    /// The wait token in force (0: not waiting), and how many were drawn.
    token: u64,
    tokens_drawn: u64,
    /// Seed of the wait tokens: random per start (from the shell), so that no token of an
    /// earlier boot comes back.
    seed: u64,
    /// The id of the latest release we acted on.
    ack: u64,
    /// When failoverd last reported, and since when we wait without a word from it.
    last_report: Option<Instant>,
    waiting_since: Option<Instant>,
    /// The probe round of a wait that failoverd does not answer.
    round: Option<Round>,
    answers: Answers,
    /// An add or remove under way.
    busy: bool,
    /// Service addresses whose link is down: not served, not wanted.
    unservable: Vec<IpAddr>,
}

impl Sender {
    /// A sender whose first heartbeat is due at `now`; `seed` (random) seeds its wait tokens.
    /// Its service addresses wait for failoverd (the shell removed any that a previous run
    /// left on its interface: after a crash of the host, that address may be failoverd's now).
    pub fn new(now: Instant, config: SenderConfig, seed: u64) -> Sender {
        let aliases: Vec<Alias> = config
            .aliases
            .iter()
            .map(|&addr| Alias {
                addr,
                state: AliasState::Waiting,
                retry_at: None,
            })
            .collect();
        let mut s = Sender {
            config,
            next_send: now,
            last_turn: now,
            last_released_announce: None,
            echo: None,
            last_answer: None,
            announced_at_start: false,
            last_announce: None,
            sent: 0,
            stopping: None,
            stopped: false,
            aliases,
            token: 0,
            tokens_drawn: 0,
            seed,
            ack: 0,
            last_report: None,
            waiting_since: None,
            round: None,
            answers: Answers::new(),
            busy: false,
            unservable: Vec::new(),
        };
        if s.aliases.iter().any(|a| a.state == AliasState::Waiting) {
            s.start_waiting(now);
        }
        s
    }

    /// The interval in force.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Heartbeats sent so far.
    pub fn heartbeats_sent(&self) -> u64 {
        self.sent
    }

    /// Whether it has said goodbye.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether the goodbye says the host stays up.
    pub fn stays_up(&self) -> bool {
        self.stopping.unwrap_or(false)
    }

    /// The nonce the datagrams sent at `now` echo (0: none).
    pub fn echo(&self, now: Instant) -> u64 {
        self.echo
            .filter(|(_, until)| now < *until)
            .map_or(0, |(nonce, _)| nonce)
    }

    /// The wait token our heartbeats carry (0: we wait for nothing).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The id of the latest `released` we acted on.
    pub fn ack(&self) -> u64 {
        self.ack
    }

    /// What our heartbeats say of each service address: held, wanted, or (being removed, or
    /// on a link that is down) nothing.
    pub fn alias_entries(&self) -> Vec<(IpAddr, Role)> {
        self.aliases
            .iter()
            .map(|a| {
                let role = match a.state {
                    _ if self.unservable.contains(&a.addr) => Role::NONE,
                    AliasState::Held => Role::HOLDS,
                    AliasState::Waiting | AliasState::Adding => Role::WANTS,
                    AliasState::Removing => Role::NONE,
                };
                (a.addr, role)
            })
            .collect()
    }

    /// The service addresses held now.
    pub fn held_aliases(&self) -> Vec<IpAddr> {
        self.aliases_in(AliasState::Held)
    }

    /// The service addresses we wait for.
    pub fn waiting_aliases(&self) -> Vec<IpAddr> {
        self.aliases_in(AliasState::Waiting)
    }

    fn aliases_in(&self, state: AliasState) -> Vec<IpAddr> {
        self.aliases
            .iter()
            .filter(|a| a.state == state)
            .map(|a| a.addr)
            .collect()
    }

    /// The silence after which a failoverd that says nothing is taken for absent: three
    /// intervals and a quarter, as failoverd's own default timeout.
    pub fn silence(&self) -> Duration {
        let i = self.config.interval;
        i.saturating_mul(3) + i / 4
    }

    /// When the next decision is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let mut next = Some(self.next_send);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        if let Some(r) = &self.round {
            consider(r.deadline());
        } else if let Some(since) = self.waiting_since {
            consider(Some(
                self.probe_round_for(since).decide_at() - self.probe_window(),
            ));
        }
        for a in &self.aliases {
            consider(a.retry_at);
        }
        if let (Some(every), Some(last)) = (self.config.announce_refresh, self.last_announce) {
            consider(Some(last + every));
        }
        next
    }

    fn probe_window(&self) -> Duration {
        probe::window(self.silence())
    }

    /// The round that guards adding unconfirmed addresses: it decides one silence after the
    /// later of the wait's start and failoverd's last report.
    fn probe_round_for(&self, since: Instant) -> Round {
        let from = self.last_report.map_or(since, |r| r.max(since));
        Round::new(from + self.silence(), self.probe_window())
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: SenderEvent) -> Vec<SenderAction> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        // A turn a whole interval later than the grid wanted: we were stalled, and the LAN may
        // have moved on (announce after it, as after a start).
        let stalled = now > self.next_send + self.config.interval && self.announced_at_start;
        self.last_turn = now;
        match event {
            SenderEvent::Tick => {}
            SenderEvent::Report { id, token, entries } => {
                self.handle_report(now, id, token, &entries, &mut out)
            }
            SenderEvent::Challenged { nonce } => {
                let keep = ECHO_FOR.max(self.config.interval.saturating_mul(ECHO_INTERVALS));
                self.echo = Some((nonce, now + keep));
                // Answer at once, on every link (a challenge that reached us on one link may
                // only be answerable on the other), off the grid: the grid stays where it is.
                if self.last_answer.is_none_or(|t| now >= t + ANSWER_MIN_GAP) {
                    self.last_answer = Some(now);
                    self.sent += 1;
                    out.push(SenderAction::SendHeartbeat);
                }
            }
            SenderEvent::Reconfigure(config) => self.reconfigure(now, config, &mut out),
            SenderEvent::Shutdown { stays_up } => {
                if self.stopping.is_none() {
                    self.stopping = Some(stays_up);
                }
            }
            SenderEvent::AliasesAdded { failed } => self.handle_added(now, &failed, &mut out),
            SenderEvent::AliasesRemoved => {
                self.busy = false;
                let listed = &self.config.aliases;
                // What is no longer configured is forgotten; the rest waits for failoverd.
                self.aliases
                    .retain(|a| a.state != AliasState::Removing || listed.contains(&a.addr));
                let mut removed = false;
                for a in &mut self.aliases {
                    if a.state == AliasState::Removing {
                        a.state = AliasState::Waiting;
                        removed = true;
                    }
                }
                if removed && self.stopping.is_none() {
                    self.start_waiting(now);
                }
            }
            SenderEvent::ProbeAnswer { addr, mac } => {
                if self.aliases.iter().any(|a| a.addr == addr) {
                    self.answers.record(now, addr, mac);
                }
            }
            SenderEvent::LinksDown { addrs } => {
                let back: Vec<IpAddr> = self
                    .unservable
                    .iter()
                    .filter(|a| !addrs.contains(a))
                    .copied()
                    .collect();
                self.unservable = addrs;
                // Back on a link that is up: wanted again, with a fresh wait.
                if !back.is_empty() && self.stopping.is_none() {
                    self.start_waiting(now);
                }
            }
            SenderEvent::AliasMissing { addr } => {
                if let Some(a) = self
                    .aliases
                    .iter_mut()
                    .find(|a| a.addr == addr && a.state == AliasState::Held)
                {
                    // Ours, and gone from under us: put it back (adding is idempotent).
                    a.state = AliasState::Waiting;
                    a.retry_at = Some(now);
                    out.push(SenderAction::Notify(SenderNotice::Missing(addr)));
                }
            }
        }
        if self.stopping.is_some() {
            self.stop(&mut out);
            return out;
        }
        self.decide(now, &mut out);
        if !self.announced_at_start || stalled {
            // At start, before the first heartbeat: a returning primary is reachable at once.
            self.announced_at_start = true;
            self.announce(now, &mut out);
        } else if let (Some(every), Some(last)) = (self.config.announce_refresh, self.last_announce)
        {
            if now >= last + every {
                self.announce(now, &mut out);
            }
        }
        if now >= self.next_send {
            out.push(SenderAction::SendHeartbeat);
            self.sent += 1;
            // The next slot on the grid strictly after now: late wake-ups do not drift, and a
            // long stall does not cause a burst.
            let behind = now.duration_since(self.next_send);
            let step = self.config.interval.as_nanos().max(1);
            let skip = behind.as_nanos() / step + 1;
            let skip = u32::try_from(skip).unwrap_or(u32::MAX);
            self.next_send += self.config.interval.saturating_mul(skip);
        }
        out
    }

    fn announce(&mut self, now: Instant, out: &mut Vec<SenderAction>) {
        self.last_announce = Some(now);
        out.push(SenderAction::Announce);
    }

    /// Draws a new wait token: failoverd's confirmation must answer this one.
    fn start_waiting(&mut self, now: Instant) {
        self.tokens_drawn += 1;
        self.token = splitmix(self.seed.wrapping_add(self.tokens_drawn)).max(1);
        self.waiting_since = Some(now);
        self.round = None;
    }

    fn handle_report(
        &mut self,
        now: Instant,
        id: u64,
        token: u64,
        entries: &[Entry],
        out: &mut Vec<SenderAction>,
    ) {
        self.last_report = Some(now);
        // A release we have not acted on: acknowledge it, and announce what it names that we
        // hold, so that the LAN comes back to us at once.
        if id != 0 && id != self.ack {
            self.ack = id;
            if self
                .last_released_announce
                .is_none_or(|t| now >= t + ANNOUNCE_MIN_GAP)
            {
                self.last_released_announce = Some(now);
                self.last_announce = Some(now);
                out.push(SenderAction::Announce);
            }
        }
        // failoverd confirms it holds none of what we wait for: only a report answering the
        // token in force counts (an old one may be a replay from before failoverd took it).
        if token != 0 && token == self.token && !self.busy {
            let unservable = &self.unservable;
            let confirmed: Vec<IpAddr> = self
                .aliases
                .iter()
                .filter(|a| a.state == AliasState::Waiting && !unservable.contains(&a.addr))
                .filter(|a| {
                    entries
                        .iter()
                        .any(|e| e.addr == a.addr && !e.role.has(Role::HOLDS))
                })
                .filter(|a| {
                    !entries
                        .iter()
                        .any(|e| e.addr == a.addr && e.role.has(Role::WANTS))
                })
                .map(|a| a.addr)
                .collect();
            if !confirmed.is_empty() {
                out.push(SenderAction::Notify(SenderNotice::Confirmed(
                    confirmed.clone(),
                )));
                self.add(now, confirmed, out);
            }
        }
        // failoverd holds one of ours by an administrator's command, or asks it back (it found
        // that nobody could reach it here): give it up, then wait.
        if !self.busy {
            let mut manual = false;
            let yielding: Vec<IpAddr> = self
                .aliases
                .iter()
                .filter(|a| a.state == AliasState::Held)
                .filter(|a| {
                    entries.iter().any(|e| {
                        let asks = e.addr == a.addr
                            && (e.role.has(Role::MANUAL) || e.role.has(Role::WANTS));
                        manual |= asks && e.role.has(Role::MANUAL);
                        asks
                    })
                })
                .map(|a| a.addr)
                .collect();
            if !yielding.is_empty() {
                out.push(SenderAction::Notify(SenderNotice::Yielding(
                    yielding.clone(),
                    manual,
                )));
                self.remove(yielding, out);
            }
        }
    }

    fn add(&mut self, now: Instant, addrs: Vec<IpAddr>, out: &mut Vec<SenderAction>) {
        for a in &mut self.aliases {
            if addrs.contains(&a.addr) {
                a.state = AliasState::Adding;
                a.retry_at = None;
            }
        }
        self.busy = true;
        self.round = None;
        if self.waiting_aliases().is_empty() {
            self.waiting_since = None;
        } else {
            // The rest still wait: their silence is counted from now.
            self.waiting_since = Some(now);
        }
        out.push(SenderAction::AddAliases(addrs));
    }

    fn remove(&mut self, addrs: Vec<IpAddr>, out: &mut Vec<SenderAction>) {
        for a in &mut self.aliases {
            if addrs.contains(&a.addr) {
                a.state = AliasState::Removing;
                a.retry_at = None;
            }
        }
        self.busy = true;
        out.push(SenderAction::RemoveAliases(addrs));
    }

    fn handle_added(&mut self, now: Instant, failed: &[IpAddr], out: &mut Vec<SenderAction>) {
        self.busy = false;
        let mut added = Vec::new();
        for a in &mut self.aliases {
            if a.state != AliasState::Adding {
                continue;
            }
            if failed.contains(&a.addr) {
                // Availability first: retried, as what could be added is kept.
                a.state = AliasState::Waiting;
                a.retry_at = Some(now + ADD_RETRY);
            } else {
                a.state = AliasState::Held;
                added.push(a.addr);
            }
        }
        if !added.is_empty() {
            self.last_announce = Some(now);
            out.push(SenderAction::AnnounceAddrs(added));
        }
    }

    /// The rules of waiting, in order: a retry after a failed add or a vanished address; a
    /// failoverd that says nothing for the silence gets a probe round, and what nobody answers
    /// for is added.
    fn decide(&mut self, now: Instant, out: &mut Vec<SenderAction>) {
        if self.busy {
            return;
        }
        // Held but no longer configured (a reload): removed.
        let unlisted: Vec<IpAddr> = self
            .aliases
            .iter()
            .filter(|a| a.state == AliasState::Held && !self.config.aliases.contains(&a.addr))
            .map(|a| a.addr)
            .collect();
        if !unlisted.is_empty() {
            self.remove(unlisted, out);
            return;
        }
        // Held on a link that is down: it cannot be served; given up, so that the secondary
        // may take it, and waited for again when the link is back.
        let cut: Vec<IpAddr> = self
            .aliases
            .iter()
            .filter(|a| a.state == AliasState::Held && self.unservable.contains(&a.addr))
            .map(|a| a.addr)
            .collect();
        if !cut.is_empty() {
            self.remove(cut, out);
            return;
        }
        let retry: Vec<IpAddr> = self
            .aliases
            .iter()
            .filter(|a| {
                a.state == AliasState::Waiting
                    && a.retry_at.is_some_and(|t| now >= t)
                    && !self.unservable.contains(&a.addr)
            })
            .map(|a| a.addr)
            .collect();
        if !retry.is_empty() {
            self.add(now, retry, out);
            return;
        }
        let Some(since) = self.waiting_since else {
            return;
        };
        let waiting: Vec<IpAddr> = self
            .waiting_aliases()
            .into_iter()
            .filter(|a| !self.unservable.contains(a))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let guard = self.probe_round_for(since);
        let mut round = match self.round {
            Some(r) if r.decide_at() == guard.decide_at() => r,
            _ => guard,
        };
        if round.poll(now) {
            out.push(SenderAction::Probe(waiting.clone()));
        }
        if round.decided(now) {
            self.round = None;
            let mut free = Vec::new();
            for addr in waiting {
                match self.answers.in_round(addr, &round) {
                    Some(mac) => {
                        out.push(SenderAction::Notify(SenderNotice::StillAnswers(addr, mac)))
                    }
                    None => free.push(addr),
                }
            }
            if free.is_empty() {
                // Still answered: wait another silence.
                self.waiting_since = Some(now);
            } else {
                out.push(SenderAction::Notify(SenderNotice::Unanswered(free.clone())));
                self.add(now, free, out);
            }
        } else {
            self.round = Some(round);
        }
    }

    fn reconfigure(&mut self, now: Instant, config: SenderConfig, out: &mut Vec<SenderAction>) {
        // Rejoin a grid of the new interval from the last send.
        self.next_send = now.min(self.next_send);
        // New service addresses wait for failoverd; those no longer listed and not held are
        // forgotten (held ones are removed by `decide`, then forgotten).
        let mut fresh = false;
        for &addr in &config.aliases {
            if !self.aliases.iter().any(|a| a.addr == addr) {
                self.aliases.push(Alias {
                    addr,
                    state: AliasState::Waiting,
                    retry_at: None,
                });
                fresh = true;
            }
        }
        self.aliases
            .retain(|a| config.aliases.contains(&a.addr) || a.state != AliasState::Waiting);
        self.config = config;
        if fresh {
            out.push(SenderAction::Notify(SenderNotice::Waiting(
                self.waiting_aliases(),
            )));
            self.start_waiting(now);
        }
        self.announce(now, out);
    }

    /// Stopping: the service addresses go first (removed, so that failoverd may take them at
    /// once), then the goodbyes, then the exit.
    fn stop(&mut self, out: &mut Vec<SenderAction>) {
        if self.busy {
            return;
        }
        let held: Vec<IpAddr> = self
            .aliases
            .iter()
            .filter(|a| matches!(a.state, AliasState::Held))
            .map(|a| a.addr)
            .collect();
        if !held.is_empty() {
            self.remove(held, out);
            return;
        }
        self.stopped = true;
        for _ in 0..GOODBYES {
            out.push(SenderAction::SendGoodbye);
        }
        out.push(SenderAction::Exit);
    }
}

/// SplitMix64: spreads a counter into an unpredictable-looking token (the seed is random).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
