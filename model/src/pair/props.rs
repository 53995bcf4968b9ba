//! The pair's properties, as the docs state them (docs/handover.md, docs/failoverd.md,
//! docs/heartbeatd.md), each window a bound checked in virtual time:
//!
//! 1. **Two hosts answering** for an address (each has it on an interface whose link is up)
//!    only within the windows the docs name, and only while the network is clean (nothing
//!    lost, delayed or duplicated, no firewall, the private link up, no daemon killed or
//!    stalled, nothing forced, within a look-back before the episode):
//!    - the primary's own address when the primary boots (heartbeatd starting with it): one
//!      challenge round trip, the trip of the heartbeat, and the hooks ([`Bounds::failback`]);
//!    - its own address when its public link returns: heartbeatd's look at its links (an
//!      interval), then the same ([`Bounds::link_return`]);
//!    - its own address after a goodbye of a host going down: until the host is down;
//!    - a service address: never.
//!
//!    Whatever else happens (any fault), two holders end within the conflict grace and what
//!    it takes to notice ([`Bounds::catch_all`]), counted while failoverd runs.
//! 2. **Nobody answering** while failoverd could take over (its host and public link up, it
//!    runs, unpaused, out of its boot grace, not within a timeout of a forced release or of a
//!    refused `Test`): at most [`Bounds::nobody`] (the primary's look at its links, the
//!    timeout, a probe round, the hooks), or [`Bounds::nobody_faulty`] after a fault.
//! 3. **A returning primary gets its service address back**: with both daemons running and a
//!    clean network, the primary answers for it within the hold-off failoverd says, plus
//!    [`Bounds::back`].
//! 4. **A paused operator state is kept**: no automatic takeover starts while an
//!    administrator's pause is in force, and a restarted failoverd is paused still.
//! 5. **No `Fence` for a boot that said goodbye** (as far as this failoverd heard it).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipfailover::failover::{hold_probe_every, HookPhase, Reason};
use ipfailover::probe;

use super::world::{Proc, World};
use super::{ms, Cmd, Fault, Nic, PairConfig, PairEvent, PairModel, Side, ALIAS, PUB};

/// The bounds, from the model's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The own address at the primary's boot: the heartbeat's trip, the challenge's round
    /// trip, a probe's, and the hooks of an acquisition under way and of the releases.
    pub failback: Duration,
    /// The own address when the primary's public link returns: heartbeatd looks at its links
    /// every interval, and failoverd, which took it because the primary could not serve it,
    /// waits for the primary to answer one of its hold probes; then as [`Bounds::failback`].
    pub link_return: Duration,
    /// Two holders after any fault: a timeout (a boot grace), three hold-probe periods, the
    /// conflict grace, the hooks, a delayed datagram and the trips.
    pub catch_all: Duration,
    /// Nobody answering on a clean network: heartbeatd's look at its links, the timeout, a
    /// probe round (the slow one, at least 100 ms), two hook phases, two trips.
    pub nobody: Duration,
    /// The same after a fault: a delayed heartbeat and another interval more.
    pub nobody_faulty: Duration,
    /// The service address back at the primary, past the hold-off: an interval, four trips
    /// (the heartbeat, the challenge and its echo, the report), two hook phases.
    pub back: Duration,
    /// A fault this long before an episode began excuses it (from the tight windows).
    pub look_back: Duration,
}

/// Slack for the rounding of the probe rounds' thirds.
const SLACK: Duration = Duration::from_millis(2);

impl Bounds {
    /// The bounds of `c`.
    pub fn of(c: &PairConfig) -> Bounds {
        let trip = c.one_way;
        let hook = c.hook_time;
        let every = hold_probe_every(c.conflict_grace);
        // The hooks that may run first: an acquisition under way finishes (`PreAcq`,
        // `PostAcq`), and each address may go back in a release of its own (`PreRel`,
        // `PostRel`), one sequence at a time.
        let n = u32::try_from(c.addrs.list().len()).unwrap_or(u32::MAX);
        let hooks = hook * (2 + 2 * n);
        Bounds {
            failback: trip * 4 + hooks + SLACK,
            link_return: c.interval.max(every) + trip * 4 + hooks + SLACK,
            catch_all: c.timeout
                + every * 3
                + c.conflict_grace
                + hook * 4
                + trip * 2
                + c.delay
                + SLACK,
            nobody: c.interval
                + c.timeout
                + probe::slow_window(c.timeout)
                + hook * 2
                + trip * 2
                + SLACK,
            nobody_faulty: c.interval * 2
                + c.timeout
                + probe::slow_window(c.timeout)
                + hook * 2
                + trip * 2
                + c.delay
                + SLACK,
            back: c.interval + trip * 4 + hook * 2 + SLACK,
            look_back: c.timeout + c.delay + c.interval,
        }
    }
}

/// What started the primary's answering for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cause {
    Boot,
    LinkUp,
    Other,
}

/// One address, watched.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Watch {
    addr: IpAddr,
    /// Since when the primary answers, and why it began.
    p: Option<(Instant, Cause)>,
    /// Since when the secondary answers, and whether it held it by hand meanwhile.
    s: Option<Instant>,
    s_by_hand: bool,
    /// Since when nobody answers.
    nobody: Option<Instant>,
    /// Since when the primary could have its service address back and does not.
    back: Option<Instant>,
    /// The last instant it could: while it can, its own return is what bounds the gap.
    could_back: Option<Instant>,
}

/// The history the properties need: part of the state.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Props {
    watches: Vec<Watch>,
    /// The latest instant a fault or a faulty condition was seen.
    last_excuse: Option<Instant>,
    /// failoverd runs since (its start, or its SIGCONT).
    s_run_from: Instant,
    /// Nobody answering is judged from here: failoverd's boot grace, a SIGCONT, its public
    /// link's return, a resume, a forced release or a refused `Test` (and their timeouts).
    s_ready_from: Instant,
    /// The boots of the primary whose goodbye the running failoverd accepted.
    pub(crate) goodbyes: Vec<u64>,
    /// The boot of the primary's latest datagram failoverd accepted.
    pub(crate) peer_boot: Option<u64>,
    /// An administrator paused failoverd (answered) and has not resumed it.
    pub(crate) paused: bool,
    /// The reason of failoverd's latest takeover.
    pub(crate) s_reason: Option<Reason>,
}

impl Props {
    pub(crate) fn new(m: &PairModel, now: Instant) -> Props {
        Props {
            watches: m
                .config
                .addrs
                .list()
                .into_iter()
                .map(|addr| Watch {
                    addr,
                    p: None,
                    s: None,
                    s_by_hand: false,
                    nobody: None,
                    back: None,
                    could_back: None,
                })
                .collect(),
            last_excuse: None,
            s_run_from: now,
            s_ready_from: now,
            goodbyes: Vec::new(),
            peer_boot: None,
            paused: false,
            s_reason: None,
        }
    }

    pub(crate) fn fo_started(&mut self, m: &PairModel, now: Instant) {
        self.s_run_from = now;
        self.s_ready_from = self.s_ready_from.max(now + m.config.timeout);
        // A new process: it has heard no goodbye.
        self.goodbyes.clear();
        self.peer_boot = None;
    }

    pub(crate) fn s_continued(&mut self, now: Instant) {
        self.s_run_from = now;
        self.s_ready_from = self.s_ready_from.max(now);
    }

    pub(crate) fn s_link_up(&mut self, now: Instant) {
        self.s_ready_from = self.s_ready_from.max(now);
    }

    pub(crate) fn test_refused(&mut self, m: &PairModel, now: Instant) {
        self.s_ready_from = self.s_ready_from.max(now + m.config.timeout);
    }

    /// A command that failoverd answered with success.
    pub(crate) fn answered(&mut self, m: &PairModel, now: Instant, command: Option<Cmd>) {
        match command {
            Some(Cmd::Pause) => self.paused = true,
            Some(Cmd::Resume) => {
                self.paused = false;
                self.s_ready_from = self.s_ready_from.max(now);
            }
            Some(Cmd::Release { .. }) => {
                self.s_ready_from = self.s_ready_from.max(now + m.config.timeout)
            }
            _ => {}
        }
    }
}

/// Whether an event is a fault that excuses the tight windows.
fn excusing(e: &PairEvent) -> bool {
    match e {
        PairEvent::Advance | PairEvent::Begin { .. } => false,
        PairEvent::Fault(f) => !matches!(
            f,
            Fault::Host(_, true)
                | Fault::Host(Side::P, false)
                | Fault::Start(_)
                | Fault::Stop(_, _)
                | Fault::Link(Nic::PPub, _)
                | Fault::Link(_, true)
                | Fault::Command(Cmd::Pause | Cmd::Resume)
                | Fault::Command(Cmd::Release { force: false })
                | Fault::Command(Cmd::Takeover { force: false })
        ),
    }
}

impl World {
    /// Conditions under which the tight windows do not hold, as long as they last.
    fn faulty(&self) -> bool {
        self.firewall
            || (self.p_up && !self.p_links[1])
            || (self.s_up && !self.s_pub)
            || matches!(self.hb, Proc::Stalled(_))
            || matches!(self.fo, Proc::Stalled(_))
            || (self.p_up && matches!(self.hb, Proc::Down))
            || (self.s_up && matches!(self.fo, Proc::Down))
            || self.refuse_test
            || self.net.iter().any(|p| p.touched)
    }

    fn excused(&self, m: &PairModel, since: Instant) -> bool {
        let look_back = m.bounds().look_back;
        self.props
            .last_excuse
            .is_some_and(|x| x + look_back >= since)
    }

    /// After each step: who answers since when, and the faults seen.
    pub(crate) fn observe(&mut self, e: &PairEvent) {
        let now = self.now;
        if excusing(e) || self.faulty() {
            self.props.last_excuse = Some(now);
        }
        let cause = match e {
            PairEvent::Fault(Fault::Host(Side::P, true)) => Cause::Boot,
            PairEvent::Fault(Fault::Link(Nic::PPub, true)) => Cause::LinkUp,
            _ => Cause::Other,
        };
        // What an administrator takes over, or has taken, stays until released by hand.
        let manual_alias = self.fo.running().is_some_and(|fo| {
            fo.command_pending() == Some(Cmd::Takeover { force: false })
                || fo.command_pending() == Some(Cmd::Takeover { force: true })
                || fo.core.slots().iter().any(|s| s.addr == ALIAS && s.manual)
        });
        let back_possible = self.p_up
            && self.p_links[0]
            && self.hb.running().is_some()
            && self.s_up
            && self.fo.running().is_some()
            && !manual_alias;
        let mut watches = std::mem::take(&mut self.props.watches);
        for w in &mut watches {
            let p = self.p_answers(w.addr);
            let s = self.s_answers(w.addr);
            w.p = if p { w.p.or(Some((now, cause))) } else { None };
            w.s = if s { w.s.or(Some(now)) } else { None };
            let by_hand = self
                .fo
                .running()
                .is_some_and(|fo| fo.core.slots().iter().any(|x| x.addr == w.addr && x.manual));
            w.s_by_hand = s && (w.s_by_hand || by_hand);
            w.nobody = if !p && !s {
                w.nobody.or(Some(now))
            } else {
                None
            };
            w.back = if w.addr == ALIAS && back_possible && !p {
                w.back.or(Some(now))
            } else {
                None
            };
            if w.addr == ALIAS && back_possible {
                w.could_back = Some(now);
            }
        }
        self.props.watches = watches;
        // A pause is kept: in the core of a failoverd that runs, whatever happened.
        if self.props.paused {
            if let Some(fo) = self.fo.running() {
                if fo.core.pause().is_none() {
                    self.extra.violation = Some(
                        "an administrator's pause is no longer in force, and nobody resumed it"
                            .into(),
                    );
                }
            }
        }
    }

    /// A hook phase starts: `Fence` never for a boot that said goodbye, `Test` of an
    /// automatic takeover never while paused.
    pub(crate) fn hooks_started(&mut self, phase: HookPhase, reason: Reason) {
        if phase == HookPhase::Fence
            && self
                .props
                .peer_boot
                .is_some_and(|b| self.props.goodbyes.contains(&b))
        {
            self.extra.violation =
                Some("Fence runs against a boot of the primary that said goodbye".into());
        }
        if phase == HookPhase::Test && reason != Reason::Manual && self.props.paused {
            self.extra.violation = Some(format!(
                "a takeover ({reason}) starts while an administrator's pause is in force"
            ));
        }
    }

    /// Before anything happens at the new instant: did what lasted until now break a bound?
    pub(crate) fn check_timed(&mut self, m: &PairModel) {
        let now = self.now;
        let b = m.bounds();
        let base = m.base;
        let t = |i: Instant| ms(i.saturating_duration_since(base));
        let fo_runs = self.fo.running().is_some();
        for w in &self.props.watches {
            if let (Some((p_since, cause)), Some(s_since)) = (w.p, w.s) {
                let since = p_since.max(s_since);
                // The own address taken over by hand, which the primary's kernel answers for
                // again (its link back, its host booted), is a conflict, given up after the
                // grace (docs/handover.md). A service address taken by hand is asked back
                // first: only `--force`, an excusing fault, makes two holders of it.
                if (w.s_by_hand && w.addr == PUB) || self.excused(m, since) {
                    let from = since.max(self.props.s_run_from);
                    if fo_runs && now > from + b.catch_all {
                        self.extra.violation = Some(format!(
                            "two hosts answer for {} since {} ({} counted while failoverd runs), \
                             longer than the conflict grace and what it takes to notice ({})",
                            w.addr,
                            t(since),
                            ms(now - from),
                            ms(b.catch_all)
                        ));
                        return;
                    }
                } else {
                    let (allowed, window) = if w.addr != PUB {
                        (since, "never, for a service address")
                    } else {
                        match cause {
                            Cause::Boot => (p_since + b.failback, "the failback window"),
                            Cause::LinkUp => (p_since + b.link_return, "the link-return window"),
                            Cause::Other => match (self.props.s_reason, self.shutdown_at) {
                                (Some(Reason::Goodbye), Some(down)) => {
                                    (down, "the host's shutdown after its goodbye")
                                }
                                _ => (since, "never, outside the windows"),
                            },
                        }
                    };
                    if now > allowed {
                        self.extra.violation = Some(format!(
                            "two hosts answer for {} since {} (the primary since {}, the \
                             secondary since {}), {} by now; allowed: {window}, until {}",
                            w.addr,
                            t(since),
                            t(p_since),
                            t(s_since),
                            ms(now - since),
                            t(allowed)
                        ));
                        return;
                    }
                }
            }
            if let Some(since) = w.nobody {
                let can_act = self.s_up
                    && self.s_pub
                    && self
                        .fo
                        .running()
                        .is_some_and(|fo| fo.core.pause().is_none());
                let from = since
                    .max(self.props.s_ready_from)
                    .max(w.could_back.unwrap_or(since));
                let bound = if self.excused(m, since) {
                    b.nobody_faulty
                } else {
                    b.nobody
                };
                if can_act && now > from + bound {
                    self.extra.violation = Some(format!(
                        "nobody answers for {} since {} ({} counted while failoverd could take \
                         it over), longer than {}",
                        w.addr,
                        t(since),
                        ms(now - from),
                        ms(bound)
                    ));
                    return;
                }
            }
            if let Some(since) = w.back {
                // After a fault, counted from the end of its look-back: a fault excuses a
                // slow return, not one that never comes.
                let from = self
                    .props
                    .last_excuse
                    .map_or(since, |x| since.max(x + b.look_back));
                let holdoff = self
                    .fo
                    .running()
                    .map_or(Duration::ZERO, |fo| fo.core.holdoff());
                if now > from + holdoff + b.back {
                    self.extra.violation = Some(format!(
                        "the returning primary does not have {} back: it could since {}, {} by \
                         now ({} counted after the faults), longer than the hold-off ({}) and {}",
                        w.addr,
                        t(since),
                        ms(now - since),
                        ms(now - from),
                        ms(holdoff),
                        ms(b.back)
                    ));
                    return;
                }
            }
        }
    }
}
