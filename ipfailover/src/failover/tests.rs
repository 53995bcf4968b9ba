//! The rules of the failover core, driven with a virtual clock.

use super::*;
use std::net::Ipv4Addr;

const PUB: LinkId = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
const PRIV: LinkId = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
const SEC: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A virtual world around one core: hooks and address operations complete at once (unless held
/// back), and every action is recorded with the virtual time it was emitted at.
struct Sim {
    t0: Instant,
    now: Instant,
    core: Failover,
    log: Vec<(Duration, Action)>,
    /// What `Test` answers.
    test_ok: bool,
    /// When true, hook runs are queued instead of completing at once.
    hold_hooks: bool,
    pending: Vec<HookPhase>,
    /// Whether the addresses are on the interface.
    held: bool,
    /// Whether another host answers probes for the address (the peer alive with its address,
    /// or a third host): its MAC.
    answerer: Option<Mac>,
    /// What `Fence` does: exit 0 and silence the answerer (power the peer off), if true.
    fence_kills: bool,
    /// Every probe sent, and whether it was answered.
    probes: Vec<(Duration, bool)>,
}

impl Sim {
    fn new(config: Config, held: bool) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            core: Failover::new(t0, config, held),
            log: Vec::new(),
            test_ok: true,
            hold_hooks: false,
            pending: Vec::new(),
            held,
            answerer: None,
            fence_kills: false,
            probes: Vec::new(),
        }
    }

    fn with_timeout(timeout: Duration) -> Sim {
        Sim::new(
            Config {
                peer: Some(PUB),
                conflict_grace: DEFAULT_CONFLICT_GRACE,
                timeout: Some(timeout),
                release_after: 3,
                taken_over: vec![PUB],
            },
            false,
        )
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn feed(&mut self, event: Event) {
        let mut queue = vec![event];
        while let Some(ev) = queue.pop() {
            let actions = self.core.handle(self.now, ev);
            let mut follow = Vec::new();
            for a in actions {
                match &a {
                    Action::Probe => {
                        self.probes.push((self.elapsed(), self.answerer.is_some()));
                        if let Some(mac) = self.answerer {
                            follow.push(Event::ProbeAnswer { addr: PUB, mac });
                        }
                    }
                    // Never two holders: a takeover on timeout comes after a full round of
                    // probes that nobody answered. (A goodbye is a planned handover.)
                    Action::Transition {
                        to: State::Acquiring(AcquireStep::Test),
                        reason: Reason::Timeout,
                        ..
                    } => {
                        let last: Vec<bool> = self
                            .probes
                            .iter()
                            .rev()
                            .take(PROBES as usize)
                            .map(|(_, answered)| *answered)
                            .collect();
                        assert!(
                            last.len() == PROBES as usize && last.iter().all(|a| !a),
                            "a takeover at {:?} without a full round of unanswered probes: {:?}",
                            self.elapsed(),
                            self.probes
                        );
                    }
                    Action::RunHooks {
                        phase: HookPhase::Fence,
                        ..
                    } if !self.hold_hooks => {
                        if self.fence_kills {
                            self.answerer = None;
                        }
                        follow.push(Event::HooksDone {
                            phase: HookPhase::Fence,
                            ok: self.fence_kills,
                        });
                    }
                    Action::RunHooks { phase, .. } => {
                        if self.hold_hooks {
                            self.pending.push(*phase);
                        } else {
                            let ok = *phase != HookPhase::Test || self.test_ok;
                            follow.push(Event::HooksDone { phase: *phase, ok });
                        }
                    }
                    Action::AddAddresses => {
                        self.held = true;
                        follow.push(Event::AddressesAdded { ok: true });
                    }
                    Action::RemoveAddresses => {
                        self.held = false;
                        follow.push(Event::AddressesRemoved { ok: true });
                    }
                    _ => {}
                }
                self.log.push((self.elapsed(), a));
            }
            // Completions are handled in the order they were produced.
            follow.reverse();
            queue.extend(follow);
        }
        if let Some(d) = self.core.next_deadline() {
            assert!(
                d > self.now,
                "deadline {:?} not after now {:?} in {:?}: the shell would spin",
                d - self.t0,
                self.elapsed(),
                self.core.state()
            );
        }
    }

    /// Lets virtual time run to `t` (since start), ticking at every deadline on the way.
    fn run_until(&mut self, t: Duration) {
        let end = self.t0 + t;
        while let Some(d) = self.core.next_deadline() {
            if d > end {
                break;
            }
            self.now = d;
            self.feed(Event::Tick);
        }
        self.now = end;
        self.feed(Event::Tick);
    }

    fn heartbeat(&mut self, link: LinkId, interval: Duration) {
        self.feed(Event::Heartbeat {
            link,
            interval: Some(interval),
            via: None,
        });
    }

    /// Heartbeats every `interval` on the given links from now until `until` (exclusive).
    fn beat(&mut self, links: &[LinkId], interval: Duration, until: Duration) {
        let mut t = self.elapsed();
        while t < until {
            self.run_until(t);
            for l in links {
                self.heartbeat(*l, interval);
            }
            t += interval;
        }
        self.run_until(until);
    }

    fn finish_hook(&mut self, ok: bool) {
        let phase = self.pending.remove(0);
        self.feed(Event::HooksDone { phase, ok });
    }

    fn transitions(&self) -> Vec<(Duration, State, Reason)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Transition { to, reason, .. } => Some((*t, *to, *reason)),
                _ => None,
            })
            .collect()
    }

    fn first(&self, pred: impl Fn(&Action) -> bool) -> Option<Duration> {
        self.log.iter().find(|(_, a)| pred(a)).map(|(t, _)| *t)
    }

    fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        self.log.iter().filter(|(_, a)| pred(a)).count()
    }

    fn notices(&self) -> Vec<Notice> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    fn hooks_run(&self) -> Vec<HookPhase> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::RunHooks { phase, .. } => Some(*phase),
                _ => None,
            })
            .collect()
    }
}

fn is_takeover(a: &Action) -> bool {
    matches!(
        a,
        Action::Transition {
            to: State::Acquiring(AcquireStep::Test),
            ..
        }
    )
}

fn is_release(a: &Action) -> bool {
    matches!(
        a,
        Action::Transition {
            to: State::Releasing(ReleaseStep::PreRel),
            ..
        }
    )
}

#[test]
fn takeover_exactly_at_the_timeout_and_not_before() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10)); // last heartbeats at 9 s
    assert_eq!(sim.core.state(), State::Monitoring);
    // The first probe goes out at the start of the probe window: 30 % of the timeout, at
    // most 1 s, before it.
    assert_eq!(sim.core.next_deadline(), Some(sim.t0 + ms(11_100)));
    sim.run_until(ms(11_999));
    assert_eq!(
        sim.core.state(),
        State::Monitoring,
        "no takeover before the timeout"
    );
    sim.run_until(ms(12_000));
    assert_eq!(sim.first(is_takeover), Some(ms(12_000)));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.held);
    assert_eq!(
        sim.hooks_run(),
        vec![HookPhase::Test, HookPhase::PreAcq, HookPhase::PostAcq]
    );
    assert_eq!(sim.notices(), vec![Notice::TookOver(Reason::Timeout)]);
}

#[test]
fn takeover_order_is_test_preacq_add_announce_postacq() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.run_until(ms(1000));
    let order: Vec<&str> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RunHooks { phase, .. } => Some(phase.as_str()),
            Action::AddAddresses => Some("add"),
            Action::Announce => Some("announce"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["Test", "PreAcq", "add", "announce", "PostAcq"]);
}

#[test]
fn goodbye_means_takeover_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(5000)); // heartbeats at 0..4 s
    sim.run_until(ms(4500));
    sim.feed(Event::Goodbye { link: PUB });
    assert_eq!(sim.first(is_takeover), Some(ms(4500)));
    let reason = sim.transitions().last().map(|t| t.2);
    assert_eq!(reason, Some(Reason::Goodbye));
    assert_eq!(sim.core.state(), State::Acquired);
    // The second goodbye, on the other link, changes nothing.
    sim.feed(Event::Goodbye { link: PRIV });
    assert_eq!(sim.count(is_takeover), 1);
}

#[test]
fn goodbye_during_boot_grace_takes_over_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.heartbeat(PUB, SEC);
    sim.run_until(ms(200));
    sim.feed(Event::Goodbye { link: PUB });
    assert_eq!(sim.first(is_takeover), Some(ms(200)));
}

#[test]
fn one_silent_link_is_an_anomaly_not_a_takeover() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    // The private link goes quiet; the public one carries on for a minute.
    sim.beat(&[PUB], SEC, ms(70_000));
    assert_eq!(sim.count(is_takeover), 0, "{:?}", sim.transitions());
    assert_eq!(sim.notices(), vec![Notice::LinkLost(PRIV)]);
    // Last private heartbeat at 9 s: lost exactly one timeout later.
    let lost_at = sim.first(|a| matches!(a, Action::Notify(Notice::LinkLost(_))));
    assert_eq!(lost_at, Some(ms(12_000)));
    // It comes back.
    sim.beat(&[PUB, PRIV], SEC, ms(80_000));
    assert_eq!(
        sim.notices(),
        vec![Notice::LinkLost(PRIV), Notice::LinkBack(PRIV)]
    );
}

#[test]
fn a_link_that_returns_late_after_an_outage_is_not_flagged_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(5_000));
    sim.run_until(ms(20_000)); // outage: takeover
    assert_eq!(sim.core.state(), State::Acquired);
    // The peer returns; its private heartbeats arrive a little after the public ones.
    let mut t = ms(20_000);
    while t < ms(30_000) {
        sim.run_until(t);
        sim.heartbeat(PUB, SEC);
        sim.run_until(t + ms(5));
        sim.heartbeat(PRIV, SEC);
        t += SEC;
    }
    assert!(
        !sim.notices()
            .iter()
            .any(|n| matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
}

#[test]
fn release_after_the_configured_number_of_consecutive_heartbeats() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.run_until(ms(3000)); // silent from boot: takeover at the end of the grace
    assert_eq!(sim.core.state(), State::Acquired);
    sim.run_until(ms(10_000));
    sim.heartbeat(PUB, SEC);
    sim.run_until(ms(11_000));
    sim.heartbeat(PUB, SEC);
    sim.run_until(ms(11_999));
    assert_eq!(
        sim.core.state(),
        State::Acquired,
        "two heartbeats are not three"
    );
    sim.run_until(ms(12_000));
    sim.heartbeat(PUB, SEC);
    assert_eq!(sim.first(is_release), Some(ms(12_000)));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.held);
    let order: Vec<&str> = sim
        .log
        .iter()
        .skip_while(|(_, a)| !is_release(a))
        .filter_map(|(_, a)| match a {
            Action::RunHooks { phase, .. } => Some(phase.as_str()),
            Action::RemoveAddresses => Some("remove"),
            Action::SendReleased => Some("released"),
            Action::StopAnnouncing => Some("stop-announcing"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["stop-announcing", "PreRel", "remove", "released", "PostRel"]
    );
    assert_eq!(
        sim.notices().last(),
        Some(&Notice::Released(Reason::PeerReturned))
    );
}

#[test]
fn heartbeats_broken_by_a_timeout_do_not_add_up_to_a_release() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.run_until(ms(3000));
    assert_eq!(sim.core.state(), State::Acquired);
    // Two heartbeats, a silence longer than the timeout, two more: never three in a row.
    for round in 0..10u64 {
        let base = 10_000 + round * 6_000;
        sim.run_until(ms(base));
        sim.heartbeat(PUB, SEC);
        sim.run_until(ms(base + 1000));
        sim.heartbeat(PUB, SEC);
    }
    sim.run_until(ms(100_000));
    assert_eq!(sim.count(is_release), 0);
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn boot_grace_waits_one_timeout_before_judging() {
    let mut sim = Sim::with_timeout(ms(2000));
    assert_eq!(sim.core.state(), State::BootGrace);
    sim.run_until(ms(1999));
    assert_eq!(sim.core.state(), State::BootGrace);
    assert_eq!(sim.count(is_takeover), 0);
    sim.run_until(ms(2000));
    assert_eq!(sim.first(is_takeover), Some(ms(2000)));
}

#[test]
fn boot_grace_with_the_peer_alive_goes_to_monitoring() {
    let mut sim = Sim::with_timeout(ms(2000));
    sim.beat(&[PUB, PRIV], ms(500), ms(10_000));
    assert_eq!(sim.count(is_takeover), 0);
    assert_eq!(
        sim.transitions(),
        vec![(ms(2000), State::Monitoring, Reason::BootGraceOver)]
    );
}

#[test]
fn reconcile_held_and_peer_alive_releases_with_hooks() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            conflict_grace: DEFAULT_CONFLICT_GRACE,
            timeout: Some(ms(2000)),
            release_after: 3,
            taken_over: vec![PUB],
        },
        true,
    );
    sim.beat(&[PUB], ms(500), ms(3000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.held);
    assert_eq!(sim.hooks_run(), vec![HookPhase::PreRel, HookPhase::PostRel]);
    assert_eq!(sim.first(is_release), Some(ms(2000)));
    assert_eq!(sim.count(|a| matches!(a, Action::SendReleased)), 1);
}

#[test]
fn reconcile_held_and_peer_silent_keeps_without_hooks() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            conflict_grace: DEFAULT_CONFLICT_GRACE,
            timeout: Some(ms(2000)),
            release_after: 3,
            taken_over: vec![PUB],
        },
        true,
    );
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.held);
    assert!(sim.hooks_run().is_empty());
    assert_eq!(
        sim.transitions(),
        vec![(ms(2000), State::Acquired, Reason::Reconcile)]
    );
    assert!(sim.count(|a| matches!(a, Action::Announce)) >= 1);
    // And the release rule applies from there.
    sim.beat(&[PUB], ms(500), ms(7000));
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn flapping_peer_cannot_cause_more_transitions_than_the_rules_allow() {
    // The peer alternates: 2 s of heartbeats every 100 ms, then 1 s of silence, for 10 minutes.
    // With a 300 ms timeout each silence is a takeover, each return (20 beats) a release, so
    // at most one takeover and one release per 3 s cycle, and never one within a cycle's rules.
    let mut sim = Sim::with_timeout(ms(300));
    let cycle = 3000u64;
    let cycles = 200u64;
    for c in 0..cycles {
        let base = c * cycle;
        sim.beat(&[PUB, PRIV], ms(100), ms(base + 2000));
        sim.run_until(ms(base + cycle));
    }
    let takeovers = sim.count(is_takeover) as u64;
    let releases = sim.count(is_release) as u64;
    assert!(
        takeovers <= cycles,
        "{takeovers} takeovers in {cycles} cycles"
    );
    assert!(releases <= takeovers);
    // A release needs three heartbeats after the takeover started, a takeover 300 ms of silence:
    // check the spacing of every pair.
    let times: Vec<(Duration, bool)> = sim
        .log
        .iter()
        .filter_map(|(t, a)| {
            if is_takeover(a) {
                Some((*t, true))
            } else if is_release(a) {
                Some((*t, false))
            } else {
                None
            }
        })
        .collect();
    for w in times.windows(2) {
        let gap = w[1].0 - w[0].0;
        if w[0].1 {
            assert!(!w[1].1, "two takeovers without a release");
            assert!(
                gap >= ms(200),
                "release {gap:?} after a takeover: needs 3 beats 100 ms apart"
            );
        } else {
            assert!(w[1].1, "two releases without a takeover");
            assert!(
                gap >= ms(300),
                "takeover {gap:?} after a release: needs a timeout of silence"
            );
        }
    }
}

#[test]
fn flapping_below_the_timeout_never_takes_over() {
    // Heartbeats with random-looking gaps, all below the timeout.
    let mut sim = Sim::with_timeout(ms(300));
    let mut t = 0u64;
    let mut x = 12345u64;
    while t < 120_000 {
        sim.run_until(ms(t));
        sim.heartbeat(PUB, ms(100));
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t += 1 + (x >> 33) % 299;
    }
    assert_eq!(sim.count(is_takeover), 0);
}

#[test]
fn timeout_is_derived_from_the_announced_interval() {
    let mut sim = Sim::new(Config::default(), false);
    assert_eq!(sim.core.timeout(), DEFAULT_TIMEOUT);
    sim.beat(&[PUB, PRIV], ms(100), ms(3000));
    // Three missed heartbeats, with a quarter interval for jitter.
    assert_eq!(sim.core.timeout(), ms(325));
    // Last heartbeats at 2.9 s: takeover at 3.225 s exactly.
    sim.run_until(ms(3224));
    assert_eq!(sim.count(is_takeover), 0);
    sim.run_until(ms(3225));
    assert_eq!(sim.first(is_takeover), Some(ms(3225)));
    // A configured timeout wins over the announcement.
    let mut sim = Sim::with_timeout(ms(1000));
    sim.beat(&[PUB], ms(100), ms(3000));
    assert_eq!(sim.core.timeout(), ms(1000));
}

#[test]
fn default_grace_before_any_heartbeat_is_three_seconds() {
    let mut sim = Sim::new(Config::default(), false);
    sim.run_until(ms(2999));
    assert_eq!(sim.count(is_takeover), 0);
    sim.run_until(ms(3000));
    assert_eq!(sim.first(is_takeover), Some(ms(3000)));
}

#[test]
fn test_refusal_is_retried_after_another_timeout_and_mailed_once() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.test_ok = false;
    sim.run_until(ms(5500));
    // Attempts at 1 s, 2 s, 3 s, 4 s, 5 s: each refused.
    let attempts: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, a)| is_takeover(a))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        attempts,
        vec![ms(1000), ms(2000), ms(3000), ms(4000), ms(5000)]
    );
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.held);
    assert_eq!(sim.notices(), vec![Notice::TakeoverRefused]);
    // Test now agrees: the next attempt goes through.
    sim.test_ok = true;
    sim.run_until(ms(6000));
    assert_eq!(sim.core.state(), State::Acquired);
    // A new outage mails a refusal again.
    sim.beat(&[PUB], ms(200), ms(8000));
    assert_eq!(sim.core.state(), State::Monitoring);
    sim.test_ok = false;
    sim.run_until(ms(12_000));
    assert_eq!(
        sim.notices()
            .iter()
            .filter(|n| **n == Notice::TakeoverRefused)
            .count(),
        2
    );
}

#[test]
fn peer_heard_while_test_runs_drops_the_takeover() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::Test));
    sim.run_until(ms(1200));
    sim.heartbeat(PUB, ms(300));
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Monitoring);
    assert_eq!(
        sim.transitions().last().map(|t| t.2),
        Some(Reason::PeerAlive)
    );
    assert!(!sim.held);
    assert_eq!(sim.hooks_run(), vec![HookPhase::Test]);
}

#[test]
fn peer_returning_during_postacq_is_released_afterwards() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.finish_hook(true); // Test
    sim.finish_hook(true); // PreAcq -> add -> PostAcq pending
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::PostAcq));
    assert!(sim.held);
    // PostAcq takes 5 s; the peer returns at 2 s and beats steadily.
    sim.beat(&[PUB, PRIV], ms(300), ms(6000));
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::PostAcq));
    sim.finish_hook(true);
    // Heartbeats during the acquisition count: the release starts at once.
    assert_eq!(sim.core.state(), State::Releasing(ReleaseStep::PreRel));
    sim.finish_hook(true);
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.held);
}

#[test]
fn a_failing_pre_or_post_hook_does_not_stop_the_transition() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.finish_hook(true); // Test
    sim.finish_hook(false); // PreAcq fails
    assert!(sim.held);
    sim.finish_hook(false); // PostAcq fails
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn shutdown_releases_what_is_held_then_exits() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.feed(Event::Shutdown);
    assert_eq!(sim.core.state(), State::Stopped);
    assert!(!sim.held);
    assert_eq!(
        sim.hooks_run()[3..],
        [HookPhase::PreRel, HookPhase::PostRel]
    );
    assert!(matches!(sim.log.last(), Some((_, Action::Exit))));
    let release_reason = sim.log.iter().find_map(|(_, a)| match a {
        Action::RunHooks {
            phase: HookPhase::PreRel,
            reason,
        } => Some(*reason),
        _ => None,
    });
    assert_eq!(release_reason, Some(Reason::Shutdown));
}

#[test]
fn shutdown_while_monitoring_exits_at_once() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.beat(&[PUB], ms(200), ms(3000));
    sim.feed(Event::Shutdown);
    assert_eq!(sim.core.state(), State::Stopped);
    assert!(sim.hooks_run().is_empty());
    assert!(matches!(sim.log.last(), Some((_, Action::Exit))));
}

#[test]
fn shutdown_during_boot_grace_releases_addresses_found_at_start() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            conflict_grace: DEFAULT_CONFLICT_GRACE,
            timeout: Some(ms(2000)),
            release_after: 3,
            taken_over: vec![PUB],
        },
        true,
    );
    sim.run_until(ms(500));
    sim.feed(Event::Shutdown);
    assert!(!sim.held);
    assert_eq!(sim.core.state(), State::Stopped);
}

#[test]
fn shutdown_during_the_acquisition_finishes_it_then_releases() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.finish_hook(true); // Test
    sim.feed(Event::Shutdown);
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::PreAcq));
    sim.finish_hook(true); // PreAcq -> add -> PostAcq
    sim.finish_hook(true); // PostAcq -> Acquired -> release
    assert_eq!(sim.core.state(), State::Releasing(ReleaseStep::PreRel));
    sim.finish_hook(true);
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Stopped);
    assert!(!sim.held);
}

#[test]
fn shutdown_during_test_exits_without_acquiring() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.feed(Event::Shutdown);
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Stopped);
    assert!(!sim.held);
}

#[test]
fn goodbye_during_a_release_takes_over_again_when_it_is_done() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.run_until(ms(1000));
    sim.hold_hooks = true;
    sim.beat(&[PUB], ms(200), ms(1500));
    assert_eq!(sim.core.state(), State::Releasing(ReleaseStep::PreRel));
    sim.feed(Event::Goodbye { link: PUB });
    sim.finish_hook(true); // PreRel -> remove -> PostRel
    sim.finish_hook(true); // PostRel -> Monitoring -> goodbye: takeover at once
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::Test));
    assert_eq!(sim.transitions().last().map(|t| t.2), Some(Reason::Goodbye));
}

#[test]
fn stale_completions_change_nothing() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.beat(&[PUB], ms(200), ms(2000));
    let before = sim.log.len();
    sim.feed(Event::HooksDone {
        phase: HookPhase::PostAcq,
        ok: true,
    });
    sim.feed(Event::AddressesAdded { ok: true });
    sim.feed(Event::AddressesRemoved { ok: true });
    assert_eq!(sim.log.len(), before);
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn random_event_sequences_keep_the_invariants() {
    use proptest::prelude::*;
    let strategy = proptest::collection::vec((0u8..10, 0u64..700), 1..400);
    proptest!(ProptestConfig::with_cases(std::env::var("IPFO_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)), |(steps in strategy)| {
        let mut sim = Sim::with_timeout(ms(300));
        sim.hold_hooks = true;
        for (kind, dt) in steps {
            let t = sim.elapsed() + ms(dt);
            sim.run_until(t);
            match kind {
                0..=2 => sim.heartbeat(PUB, ms(100)),
                3 => sim.heartbeat(PRIV, ms(100)),
                4 => sim.feed(Event::Goodbye { link: PUB }),
                5 | 6 if !sim.pending.is_empty() => sim.finish_hook(kind == 5),
                7 if dt < 20 => sim.feed(Event::Shutdown),
                // Another host starts or stops answering for the address.
                8 => sim.answerer = if sim.answerer.is_some() { None } else { Some(PEER_MAC) },
                9 => sim.feed(Event::AddressMissing { addr: PUB }),
                _ => {}
            }
            // The addresses are held only in states that may hold them.
            prop_assert!(!sim.held || sim.core.state().may_hold()
                || sim.core.state() == State::Acquiring(AcquireStep::Adding),
                "held in {:?}", sim.core.state());
            if sim.core.state() == State::Stopped {
                prop_assert!(!sim.held, "stopped while holding");
                break;
            }
        }
        // Complete whatever is pending: the core always reaches a resting state.
        for _ in 0..20 {
            if sim.pending.is_empty() { break; }
            sim.finish_hook(true);
        }
        prop_assert!(sim.pending.is_empty());
        prop_assert!(matches!(sim.core.state(),
            State::Monitoring | State::Acquired | State::Stopped | State::BootGrace
                | State::Conflict));
    });
}

#[test]
fn the_link_from_a_held_address_is_blind_not_lost() {
    // While we hold 198.51.100.10 the returning peer's public heartbeats (sourced from it) are
    // dropped by our kernel; only the private link is heard. That is no anomaly.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(5000));
    sim.run_until(ms(20_000));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.core.config.release_after = 100; // stay acquired while only the private link is heard
    sim.beat(&[PRIV], SEC, ms(40_000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(
        sim.notices()
            .iter()
            .all(|n| !matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
    // Once released, the public link is heard again; had it stayed silent it would be lost.
    sim.core.config.release_after = 3;
    sim.beat(&[PRIV], SEC, ms(60_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(sim.notices().contains(&Notice::LinkLost(PUB)));
}

#[test]
fn with_the_derived_timeout_two_lost_heartbeats_are_not_a_takeover() {
    // Heartbeats every 100 ms that arrive 0.2 ms after they are due; two in a row are lost
    // on both links. With a timeout of exactly 3 intervals the third would arrive after the
    // deadline; the derived timeout waits for it.
    let mut sim = Sim::new(Config::default(), false);
    let mut t = 0u64;
    while t < 20_000 {
        let lost = (10_000..10_200).contains(&t);
        sim.run_until(Duration::from_micros(t * 1000 + 200));
        if !lost {
            sim.heartbeat(PUB, ms(100));
            sim.heartbeat(PRIV, ms(100));
        }
        t += 100;
    }
    assert_eq!(sim.count(is_takeover), 0, "{:?}", sim.transitions());
    // Three lost in a row is an outage.
    let mut sim = Sim::new(Config::default(), false);
    let mut t = 0u64;
    while t < 20_000 {
        let lost = (10_000..10_300).contains(&t);
        sim.run_until(Duration::from_micros(t * 1000 + 200));
        if !lost {
            sim.heartbeat(PUB, ms(100));
        }
        t += 100;
    }
    assert_eq!(sim.count(is_takeover), 1, "{:?}", sim.transitions());
}

// Never two holders: the probe, the conflict, Fence, and a conflict while holding.

const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x10];
const THIRD_MAC: Mac = [0x02, 0, 0, 0, 0, 0x66];

fn probe_times(sim: &Sim) -> Vec<Duration> {
    sim.probes.iter().map(|(t, _)| *t).collect()
}

fn in_conflict(n: &Notice) -> bool {
    matches!(n, Notice::Conflict(_))
}

#[test]
fn a_dead_peer_is_probed_in_the_last_part_of_the_timeout_and_taken_over_at_it() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000)); // last heartbeats at 9 s: deadline 12 s
    sim.run_until(ms(13_000));
    // Three probes over the last 900 ms, the last leaving 300 ms for an answer.
    assert_eq!(probe_times(&sim)[..3], [ms(11_100), ms(11_400), ms(11_700)]);
    assert_eq!(sim.first(is_takeover), Some(ms(12_000)));
    // Then, holding while the peer is silent, once a second for a conflict.
    assert_eq!(probe_times(&sim)[3..], [ms(12_000), ms(13_000)]);
    // The window is 30 % of the timeout, capped at 1 s.
    assert_eq!(probe_window(ms(30)), ms(9));
    assert_eq!(probe_window(ms(10_000)), SEC);
}

#[test]
fn an_address_that_still_answers_is_not_taken_over() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    // Heartbeats stop (a firewall, heartbeatd killed) but the host still answers ARP.
    sim.answerer = Some(PEER_MAC);
    sim.run_until(ms(60_000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.held);
    assert_eq!(sim.first(is_takeover), None);
    // Told once, with the MAC that answered; Fence ran once; probing goes on in rounds.
    let conflicts: Vec<Notice> = sim.notices().into_iter().filter(in_conflict).collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let Notice::Conflict(c) = &conflicts[0] else {
        unreachable!()
    };
    assert_eq!((c.addr, c.mac, c.holding), (PUB, PEER_MAC, false));
    assert_eq!(sim.hooks_run(), vec![HookPhase::Fence]);
    assert!(sim.probes.len() > 100, "{} probes", sim.probes.len());
    assert_eq!(
        sim.core.conflict().map(|c| c.since),
        Some(sim.t0 + ms(12_000))
    );
    // The host dies (its links go down): taken over within one round.
    sim.answerer = None;
    let died = sim.elapsed();
    sim.run_until(ms(62_000));
    let took = sim.first(is_takeover).expect("taken over") - died;
    assert!(took <= CONFLICT_ROUND_MIN.max(ms(900)) * 2, "{took:?}");
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim
        .notices()
        .contains(&Notice::ConflictOver { holding: false }));
}

#[test]
fn a_heartbeat_ends_the_conflict() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answerer = Some(PEER_MAC);
    sim.run_until(ms(3000));
    assert_eq!(sim.core.state(), State::Conflict);
    // The firewall is lifted.
    sim.beat(&[PUB, PRIV], ms(100), ms(4000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(sim.core.conflict().is_none());
    assert!(sim
        .transitions()
        .contains(&(ms(3000), State::Monitoring, Reason::PeerAlive)));
    assert_eq!(sim.first(is_takeover), None);
}

#[test]
fn fence_that_powers_the_peer_off_is_followed_by_the_takeover_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.answerer = Some(PEER_MAC);
    sim.fence_kills = true;
    sim.run_until(ms(20_000));
    // Conflict at 12 s, Fence at once, a fresh round at once: taken over one round later.
    assert_eq!(sim.hooks_run()[0], HookPhase::Fence);
    let took = sim.first(is_takeover).expect("taken over");
    assert!(
        took > ms(12_000) && took <= ms(12_000) + ms(900),
        "{took:?}"
    );
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn nothing_is_decided_while_fence_runs() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answerer = Some(PEER_MAC);
    sim.hold_hooks = true;
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.pending, vec![HookPhase::Fence]);
    // The peer's host goes away while Fence still runs: probing goes on, no takeover yet.
    sim.answerer = None;
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.first(is_takeover), None);
    sim.finish_hook(true);
    sim.hold_hooks = false;
    sim.run_until(ms(6000));
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn a_goodbye_is_a_planned_handover_and_is_not_probed() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.answerer = Some(PEER_MAC); // the host stays up while heartbeatd stops
    sim.feed(Event::Goodbye { link: PUB });
    assert_eq!(sim.first(is_takeover), Some(ms(10_000)));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.probes.is_empty(), "{:?}", sim.probes);
}

#[test]
fn copies_of_a_goodbye_start_one_takeover_not_another_after_a_conflict_release() {
    // heartbeatd stops on a host that stays up: its goodbye comes on both links, twice, the
    // later copies while the takeover runs. The host keeps answering, so the address is given
    // back after the grace; then the core must not take it over again on the old goodbye (it
    // did, unprobed, in CI: the address went back and forth every few seconds).
    let mut sim = Sim::with_timeout(ms(1000));
    sim.core.config.conflict_grace = ms(2000);
    sim.beat(&[PUB, PRIV], ms(100), ms(5000));
    sim.answerer = Some(PEER_MAC);
    sim.hold_hooks = true;
    sim.feed(Event::Goodbye { link: PUB });
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::Test));
    for link in [PRIV, PUB, PRIV] {
        sim.feed(Event::Goodbye { link });
    }
    sim.hold_hooks = false;
    while !sim.pending.is_empty() {
        sim.finish_hook(true);
    }
    assert_eq!(sim.core.state(), State::Acquired);
    sim.run_until(ms(20_000));
    let takeovers = sim
        .transitions()
        .iter()
        .filter(|(_, to, _)| *to == State::Acquiring(AcquireStep::Test))
        .count();
    assert_eq!(takeovers, 1, "{:?}", sim.transitions());
    assert_eq!(sim.core.state(), State::Conflict, "{:?}", sim.transitions());
    assert!(!sim.held);
}

#[test]
fn a_goodbye_during_a_conflict_hands_over() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answerer = Some(PEER_MAC);
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    sim.feed(Event::Goodbye { link: PRIV });
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.transitions().contains(&(
        ms(2000),
        State::Acquiring(AcquireStep::Test),
        Reason::Goodbye
    )));
}

#[test]
fn after_a_stall_the_core_probes_before_it_acts() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // failoverd was stopped (SIGSTOP, a paused VM) from 1 s to 10 s: no tick in between.
    sim.now = sim.t0 + ms(10_000);
    sim.answerer = Some(PEER_MAC);
    sim.feed(Event::Tick);
    assert_eq!(
        sim.first(is_takeover),
        None,
        "no takeover before a probe round"
    );
    assert_eq!(probe_times(&sim), vec![ms(10_000)]);
    sim.run_until(ms(10_500));
    assert_eq!(sim.core.state(), State::Conflict);
    // The same stall with a dead peer: the round still takes its time, then the takeover.
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.now = sim.t0 + ms(10_000);
    sim.feed(Event::Tick);
    sim.run_until(ms(10_500));
    assert_eq!(probe_times(&sim)[..3], [ms(10_000), ms(10_030), ms(10_060)]);
    assert_eq!(sim.first(is_takeover), Some(ms(10_090)));
}

#[test]
fn the_boot_grace_probes_too() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.answerer = Some(PEER_MAC);
    sim.run_until(ms(10_000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.first(is_takeover), None);
}

/// A sim that took over at 12 s (the peer silent since 9 s), with a grace of 5 s.
fn holding(grace: Duration) -> Sim {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.core.config.conflict_grace = grace;
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.run_until(ms(12_500));
    assert_eq!(sim.core.state(), State::Acquired);
    sim
}

fn defends(a: &Action) -> bool {
    matches!(a, Action::Defend)
}

#[test]
fn another_host_answering_while_we_hold_is_defended_then_given_the_address() {
    let mut sim = holding(ms(5000));
    // The primary comes back with its own address, its heartbeats blocked by a firewall.
    sim.answerer = Some(PEER_MAC);
    sim.run_until(ms(30_000));
    let conflicts: Vec<Notice> = sim.notices().into_iter().filter(in_conflict).collect();
    assert_eq!(
        conflicts.len(),
        2,
        "while holding, then blocking the takeover: {conflicts:?}"
    );
    let Notice::Conflict(c) = conflicts[0] else {
        unreachable!()
    };
    assert!(c.holding);
    let since = c.since - sim.t0;
    // Seen at the first probe while holding (every 1 s); told and defended once the peer has
    // had a timeout (3 s) to be heard, since a returning peer announces itself first.
    assert!(since <= ms(13_500), "{since:?}");
    assert_eq!(sim.first(defends), Some(since + ms(3000)));
    assert_eq!(
        sim.count(defends),
        1,
        "at most once per 10 s within a 5 s grace"
    );
    // Released at the end of the grace, with the reason `conflict`, and not taken back.
    let released = sim.first(is_release).expect("released");
    assert_eq!(released, since + ms(5000));
    assert!(sim.transitions().contains(&(
        released,
        State::Releasing(ReleaseStep::PreRel),
        Reason::Conflict
    )));
    assert!(!sim.held);
    assert_eq!(sim.count(is_takeover), 1);
    assert_eq!(sim.core.state(), State::Conflict);
    // The LAN is sent back to the host that kept answering, in its name.
    assert_eq!(
        sim.count(|a| matches!(a, Action::HandBack { mac } if *mac == PEER_MAC)),
        1
    );
}

#[test]
fn a_host_that_stops_answering_within_the_grace_leaves_us_holding() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.core.config.conflict_grace = ms(10_000);
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    // A goodbye; the host still answers while it shuts down, then its links go down.
    sim.answerer = Some(PEER_MAC);
    sim.feed(Event::Goodbye { link: PUB });
    sim.run_until(ms(16_000));
    assert!(sim.notices().iter().any(in_conflict));
    sim.answerer = None;
    sim.run_until(ms(60_000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.held);
    assert_eq!(sim.count(is_release), 0, "no flapping");
    assert!(sim
        .notices()
        .contains(&Notice::ConflictOver { holding: true }));
}

#[test]
fn defence_is_at_most_once_per_defend_interval() {
    let mut sim = holding(ms(60_000));
    sim.answerer = Some(THIRD_MAC);
    sim.run_until(ms(45_000));
    let times: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, a)| defends(a))
        .map(|(t, _)| *t)
        .collect();
    assert!(times.len() >= 3, "{times:?}");
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= DEFEND_INTERVAL, "{times:?}");
    }
}

#[test]
fn a_returning_peer_that_announces_itself_before_it_is_heard_is_no_conflict() {
    let mut sim = holding(ms(30_000));
    // It announces (gratuitous ARP) a moment before its first heartbeat counts.
    sim.feed(Event::ProbeAnswer {
        addr: PUB,
        mac: PEER_MAC,
    });
    sim.run_until(sim.elapsed() + ms(50));
    sim.beat(&[PRIV], SEC, sim.elapsed() + ms(4000));
    assert!(
        !sim.notices().iter().any(in_conflict),
        "{:?}",
        sim.notices()
    );
    assert!(!sim
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::ConflictOver { .. })));
    assert_eq!(sim.count(defends), 0, "no defence against a failback");
    assert!(sim.first(is_release).is_some());
}

#[test]
fn answers_while_the_peer_is_heard_are_the_returning_peer_not_a_conflict() {
    let mut sim = holding(ms(2000));
    sim.answerer = Some(PEER_MAC);
    // The peer is back and heard on the private link: the release rule gives the address back.
    sim.beat(&[PRIV], SEC, ms(20_000));
    assert!(
        !sim.notices().iter().any(in_conflict),
        "{:?}",
        sim.notices()
    );
    assert!(sim.transitions().iter().any(|(_, to, r)| *to
        == State::Releasing(ReleaseStep::PreRel)
        && *r == Reason::PeerReturned));
}

// The boot grace and reloads (issue 17).

#[test]
fn the_boot_grace_follows_the_timeout_derived_from_the_first_heartbeat() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            taken_over: vec![PUB],
            ..Config::default()
        },
        false,
    );
    // A primary every 5 s, first heard 2 s after our start: the timeout is now 16.25 s.
    sim.run_until(ms(2000));
    sim.heartbeat(PUB, ms(5000));
    assert_eq!(sim.core.grace_end(), sim.t0 + ms(16_250));
    sim.run_until(ms(6999));
    assert_eq!(sim.core.state(), State::BootGrace);
    sim.beat(&[PUB], ms(5000), ms(20_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert_eq!(sim.first(is_takeover), None);
}

#[test]
fn a_reload_shortens_a_boot_grace_under_way() {
    let mut sim = Sim::with_timeout(ms(60_000));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    let mut config = sim.core.config().clone();
    config.timeout = Some(ms(300));
    sim.feed(Event::Reconfigure(config));
    sim.beat(&[PUB, PRIV], ms(100), ms(1500));
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn a_goodbye_in_the_boot_grace_while_holding_keeps_the_addresses() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            timeout: Some(ms(3000)),
            taken_over: vec![PUB],
            ..Config::default()
        },
        true,
    );
    assert!(sim.core.holds_addresses(), "held at start counts as held");
    sim.beat(&[PRIV], SEC, ms(1500));
    sim.feed(Event::Goodbye { link: PRIV });
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(
        !sim.hooks_run().contains(&HookPhase::Test),
        "nothing to take over"
    );
    assert!(sim.count(|a| matches!(a, Action::AddAddresses)) == 1);
    // Whatever happens next, the held addresses are under the release rule.
    sim.beat(&[PRIV], SEC, ms(10_000));
    assert!(sim.first(is_release).is_some());
    assert!(!sim.held);
}

#[test]
fn a_link_we_could_not_hear_is_judged_from_the_release() {
    // The failback: only the private link is heard while we hold the public address; after
    // the release the public link's heartbeats come back a little later. No anomaly.
    let mut sim = Sim::with_timeout(ms(325));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.beat(&[PRIV], ms(100), ms(5300)); // released at 5.2 s
    assert_eq!(sim.core.state(), State::Monitoring);
    sim.beat(&[PRIV], ms(100), ms(5500));
    sim.beat(&[PUB, PRIV], ms(100), ms(8000));
    assert!(
        !sim.notices()
            .iter()
            .any(|n| matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
}

#[test]
fn a_new_peer_is_watched_from_scratch() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    let other: IpAddr = "198.51.100.11".parse().unwrap();
    let mut config = sim.core.config().clone();
    config.peer = Some(other);
    sim.feed(Event::Reconfigure(config));
    assert!(sim.core.links().is_empty(), "the old peer's links are gone");
    sim.beat(&[other], ms(100), ms(3000));
    assert_eq!(sim.core.links().len(), 1);
    assert!(
        !sim.notices()
            .iter()
            .any(|n| matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
    assert_eq!(sim.first(is_takeover), None);
}

#[test]
fn a_renumbered_link_is_forgotten_not_lost() {
    let mut sim = Sim::with_timeout(ms(300));
    let renumbered: IpAddr = "203.0.113.11".parse().unwrap();
    let beat = |sim: &mut Sim, link, via| {
        sim.feed(Event::Heartbeat {
            link,
            interval: Some(ms(100)),
            via: Some(via),
        })
    };
    let mut t = ms(0);
    while t < ms(2000) {
        sim.run_until(t);
        beat(&mut sim, PUB, 1);
        // The primary's private address changes at 1 s: same interface, new source.
        beat(&mut sim, if t < ms(1000) { PRIV } else { renumbered }, 2);
        t += ms(100);
    }
    sim.run_until(ms(2000));
    assert!(
        !sim.core.links().contains_key(&PRIV),
        "{:?}",
        sim.core.links()
    );
    assert!(sim.core.links().contains_key(&renumbered));
    assert!(
        !sim.notices()
            .iter()
            .any(|n| matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
    // A link that is cut, with nothing new on its interface, is still lost.
    let mut t = ms(2000);
    while t < ms(3000) {
        sim.run_until(t);
        beat(&mut sim, PUB, 1);
        t += ms(100);
    }
    sim.run_until(ms(3000));
    assert!(sim.notices().contains(&Notice::LinkLost(renumbered)));
}

#[test]
fn an_address_removed_behind_our_back_is_added_again() {
    let mut sim = holding(ms(30_000));
    let adds = |sim: &Sim| sim.count(|a| matches!(a, Action::AddAddresses));
    let before = adds(&sim);
    sim.held = false;
    sim.feed(Event::AddressMissing { addr: PUB });
    assert_eq!(adds(&sim), before + 1);
    assert!(sim.held);
    assert!(sim.notices().contains(&Notice::AddressLost(PUB)));
    // Not ours, or not held: nothing.
    sim.feed(Event::AddressMissing {
        addr: "198.51.100.99".parse().unwrap(),
    });
    assert_eq!(adds(&sim), before + 1);
}

#[test]
fn a_failed_add_is_retried_with_back_off_while_held() {
    let mut sim = holding(ms(30_000));
    let t = sim.elapsed();
    sim.feed(Event::AddressesAdded { ok: false });
    // The sim's adds succeed: one retry after 1 s, then nothing more.
    sim.run_until(t + ms(10_000));
    let retries: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(at, a)| *at > t && matches!(a, Action::AddAddresses))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(retries, vec![t + ADD_RETRY_FIRST]);
    assert!(sim
        .log
        .iter()
        .any(|(at, a)| *at == t + ADD_RETRY_FIRST && matches!(a, Action::Announce)));
}

#[test]
fn links_of_a_crashed_peer_falling_silent_a_moment_apart_are_no_anomaly() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.beat(&[PUB, PRIV], ms(100), ms(3000));
    // The public link's last heartbeat at 2.9 s, the private one's 5 ms later.
    sim.run_until(ms(2905));
    sim.heartbeat(PRIV, ms(100));
    sim.run_until(ms(6000));
    assert!(
        !sim.notices()
            .iter()
            .any(|n| matches!(n, Notice::LinkLost(_))),
        "{:?}",
        sim.notices()
    );
    assert_eq!(sim.first(is_takeover), Some(ms(3905)));
}

fn answers(sim: &Sim) -> Vec<Result<String, String>> {
    sim.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Answer(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn paused_no_takeover_however_long_the_silence_and_resume_takes_over_within_the_timeout() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.feed(Event::Command(Command::Pause { until: None }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert!(sim.core.pause().is_some());
    // The primary dies; a minute of silence: nothing is taken over, nothing probed.
    let probes_before = sim.probes.len();
    sim.run_until(Duration::from_secs(70));
    assert_eq!(sim.first(is_takeover), None);
    assert_eq!(sim.core.state(), State::Monitoring);
    assert_eq!(sim.probes.len(), probes_before);
    assert!(sim.notices().iter().any(|n| matches!(n, Notice::Paused(_))));
    // Resumed: the silent peer is taken over, after a probe round, within a timeout.
    sim.feed(Event::Command(Command::Resume));
    assert!(sim.notices().contains(&Notice::Resumed { auto: false }));
    sim.run_until(Duration::from_secs(73));
    let took = sim.first(is_takeover).expect("a takeover after resume");
    assert!(took <= Duration::from_secs(73), "{took:?}");
    assert!(sim.held);
}

#[test]
fn a_goodbye_that_waited_out_a_pause_is_probed_before_the_takeover() {
    // Paused; heartbeatd says goodbye on a host that stays up; resumed ten minutes later. The
    // goodbye no longer says the host is going down: the takeover is probed, and the live
    // host's answer keeps the address where it is (unprobed, both would answer).
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.feed(Event::Command(Command::Pause { until: None }));
    sim.answerer = Some(PEER_MAC);
    sim.feed(Event::Goodbye { link: PUB });
    sim.run_until(Duration::from_secs(600));
    assert_eq!(sim.first(is_takeover), None);
    sim.feed(Event::Command(Command::Resume));
    sim.run_until(Duration::from_secs(610));
    assert_eq!(sim.first(is_takeover), None, "{:?}", sim.transitions());
    assert!(!sim.held);
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.probes.is_empty());
    // The same, with the host gone meanwhile: taken over after one probe round.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.feed(Event::Command(Command::Pause { until: None }));
    sim.feed(Event::Goodbye { link: PUB });
    sim.run_until(Duration::from_secs(600));
    sim.feed(Event::Command(Command::Resume));
    sim.run_until(Duration::from_secs(602));
    let took = sim.first(is_takeover).expect("a takeover after resume");
    assert!(took > Duration::from_secs(600), "{took:?}");
    assert!(!sim.probes.is_empty());
    // A fresh goodbye (not paused) is still a planned handover: at once, no probe.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.answerer = Some(PEER_MAC);
    sim.feed(Event::Goodbye { link: PUB });
    assert_eq!(sim.first(is_takeover), Some(Duration::from_secs(10)));
    assert!(sim.probes.is_empty());
}

#[test]
fn a_pause_for_a_while_ends_by_itself() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    let until = sim.now + Duration::from_secs(20);
    sim.feed(Event::Command(Command::Pause { until: Some(until) }));
    sim.run_until(Duration::from_secs(29));
    assert_eq!(sim.first(is_takeover), None);
    sim.run_until(Duration::from_secs(33));
    assert!(sim.notices().contains(&Notice::Resumed { auto: true }));
    let took = sim.first(is_takeover).expect("taken over after the pause");
    assert!(
        took >= Duration::from_secs(30) && took <= Duration::from_secs(33),
        "{took:?}"
    );
}

#[test]
fn release_by_hand_is_refused_while_the_peer_is_silent_unless_forced() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.run_until(Duration::from_secs(20));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.feed(Event::Command(Command::Release { force: false }));
    assert!(
        matches!(answers(&sim).last(), Some(Err(e)) if e.contains("silent")),
        "{:?}",
        answers(&sim)
    );
    assert_eq!(sim.core.state(), State::Acquired);
    sim.feed(Event::Command(Command::Release { force: true }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert!(!sim.held);
    assert!(sim
        .transitions()
        .iter()
        .any(|(_, to, r)| *to == State::Releasing(ReleaseStep::PreRel) && *r == Reason::Manual));
    assert!(sim.count(|a| *a == Action::SendReleased) >= 1);
}

#[test]
fn release_by_hand_while_the_peer_is_back_gives_it_back_at_once() {
    let mut config = Sim::with_timeout(ms(3000)).core.config().clone();
    config.release_after = 1000;
    let mut sim = Sim::new(config, false);
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.run_until(Duration::from_secs(20));
    assert_eq!(sim.core.state(), State::Acquired);
    // The peer is back; with this release rule it would take 1000 heartbeats.
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(25));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.feed(Event::Command(Command::Release { force: false }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.held);
    let reasons: Vec<Reason> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RunHooks {
                phase: HookPhase::PreRel,
                reason,
            } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![Reason::Manual]);
}

#[test]
fn takeover_by_hand_is_refused_while_the_address_answers_unless_forced() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(5));
    // The primary lives and answers for its address.
    sim.answerer = Some([2, 0, 0, 0, 0, 1]);
    sim.feed(Event::Command(Command::Takeover { force: false }));
    // No answer until the probe round decides.
    assert!(answers(&sim).is_empty());
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(8));
    let a = answers(&sim);
    assert!(
        matches!(a.last(), Some(Err(e)) if e.contains("02:00:00:00:00:01")),
        "{a:?}"
    );
    assert_eq!(sim.first(is_takeover), None);
    assert!(sim.probes.iter().filter(|(_, answered)| *answered).count() >= 1);
    // Forced: at once, reason manual, and Test/PreAcq/PostAcq get FAILOVER_REASON=manual.
    sim.feed(Event::Command(Command::Takeover { force: true }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.log.iter().all(|(_, a)| match a {
        Action::RunHooks { reason, .. } => *reason == Reason::Manual,
        _ => true,
    }));
}

#[test]
fn takeover_by_hand_of_an_address_nobody_answers_is_kept_until_released_by_hand() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(5));
    // The primary lives, but nothing answers for the address (a service alias it dropped).
    sim.feed(Event::Command(Command::Takeover { force: false }));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(8));
    assert!(
        matches!(answers(&sim).last(), Some(Ok(_))),
        "{:?}",
        answers(&sim)
    );
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.core.manual_hold());
    let took = sim.first(is_takeover).expect("taken over");
    // After a full probe round.
    let probes_before: usize = sim.probes.iter().filter(|(t, _)| *t <= took).count();
    assert!(probes_before >= PROBES as usize);
    // The peer's heartbeats go on: the release rule does not give it back...
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(20));
    assert_eq!(sim.core.state(), State::Acquired);
    // ...an administrator does.
    sim.feed(Event::Command(Command::Release { force: false }));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.core.manual_hold());
    // And the rule applies again afterwards: no takeover while the peer is heard.
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(30));
    assert_eq!(sim.core.state(), State::Monitoring);
}
