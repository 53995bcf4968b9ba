//! The rules of the failover core, driven with a virtual clock.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

const PUB: LinkId = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
const PRIV: LinkId = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
/// A service address heartbeatd manages on the primary.
const ALIAS: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100));
const SEC: Duration = Duration::from_secs(1);
const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x10];
const THIRD_MAC: Mac = [0x02, 0, 0, 0, 0, 0x66];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The primary answering for its own address.
fn own() -> Vec<Entry> {
    vec![Entry {
        addr: PUB,
        role: Role::IDENTITY.with(Role::HOLDS),
        mac: PEER_MAC,
    }]
}

/// The primary holding its service address.
fn alias_held() -> Vec<Entry> {
    vec![
        Entry::identity(PRIV, PEER_MAC),
        Entry {
            addr: ALIAS,
            role: Role::HOLDS.with(Role::MANAGED),
            mac: PEER_MAC,
        },
    ]
}

/// The primary waiting for its service address.
fn alias_wanted() -> Vec<Entry> {
    vec![
        Entry::identity(PRIV, PEER_MAC),
        Entry::new(ALIAS, Role::WANTS.with(Role::MANAGED)),
    ]
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
    /// The addresses on our interface.
    held: BTreeSet<IpAddr>,
    /// Who else answers probes for an address: the peer alive with it, or a third host.
    answerers: BTreeMap<IpAddr, Mac>,
    /// What `Fence` does: exit 0 and silence every answerer (power the peer off), if true.
    fence_kills: bool,
    /// Every probe sent, and whether it was answered.
    probes: Vec<(Duration, bool)>,
    /// The same, per address.
    probed: Vec<(Duration, IpAddr, bool)>,
    /// What the primary's heartbeats say of its addresses (`None`: Apple's bare datagram).
    claims: Option<Vec<Entry>>,
    /// Its wait token, its acknowledgement, its boot.
    token: u64,
    ack: u64,
    boot: u64,
    /// The primary hears our reports: it acknowledges each release at its next heartbeat.
    hears_reports: bool,
    /// While its heartbeats come, the primary's kernel answers probes for what it says it
    /// holds (unless it cannot serve: its public port does not forward).
    serves: bool,
    last_beat: Option<Instant>,
    interval: Duration,
    /// This many probes to come are lost (nobody hears their answers).
    lose_probes: u32,
}

impl Sim {
    fn new(config: Config, held: &[IpAddr]) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            core: Failover::new(t0, config, held, 77),
            log: Vec::new(),
            test_ok: true,
            hold_hooks: false,
            pending: Vec::new(),
            held: held.iter().copied().collect(),
            answerers: BTreeMap::new(),
            fence_kills: false,
            probes: Vec::new(),
            probed: Vec::new(),
            claims: Some(own()),
            token: 0,
            ack: 0,
            boot: 7,
            hears_reports: true,
            serves: true,
            last_beat: None,
            interval: SEC,
            lose_probes: 0,
        }
    }

    /// What heartbeatd does with our report: acknowledge a release; add a service address it
    /// waits for once we say we hold none of it; give one up that we ask back.
    fn primary_hears(&mut self, r: &OutReport) {
        if r.id != 0 {
            self.ack = r.id;
        }
        let token = self.token;
        let Some(claims) = self.claims.as_mut() else {
            return;
        };
        let mut changed = false;
        for e in claims.iter_mut() {
            let Some(ours) = r.entries.iter().find(|o| o.addr == e.addr) else {
                continue;
            };
            if e.role.has(Role::WANTS) && ours.role == Role::NONE && r.token == token && token != 0
            {
                *e = Entry {
                    addr: e.addr,
                    role: Role::HOLDS.with(Role::MANAGED),
                    mac: PEER_MAC,
                };
                changed = true;
            } else if e.role.has(Role::HOLDS)
                && e.role.has(Role::MANAGED)
                && (ours.role.has(Role::WANTS) || ours.role.has(Role::MANUAL))
            {
                *e = Entry::new(e.addr, Role::WANTS.with(Role::MANAGED));
                self.token = token.wrapping_add(1000);
            }
        }
        if changed && !claims.iter().any(|e| e.role.has(Role::WANTS)) {
            self.token = 0;
        }
    }

    /// Who answers a probe for `addr`: a host set to answer, or the primary that is up and
    /// says it holds it.
    fn answerer(&self, addr: IpAddr) -> Option<Mac> {
        if let Some(mac) = self.answerers.get(&addr) {
            return Some(*mac);
        }
        let up = self
            .last_beat
            .is_some_and(|t| self.now <= t + self.interval * 2);
        if !up || !self.serves {
            return None;
        }
        self.claims.as_ref().and_then(|c| {
            c.iter()
                .find(|e| e.addr == addr && e.role.has(Role::HOLDS))
                .map(|e| e.mac)
        })
    }

    fn config(timeout: Duration, taken_over: &[IpAddr]) -> Config {
        Config {
            peer: Some(PUB),
            timeout: Some(timeout),
            taken_over: taken_over.to_vec(),
            ..Config::default()
        }
    }

    fn with_timeout(timeout: Duration) -> Sim {
        Sim::new(Sim::config(timeout, &[PUB]), &[])
    }

    /// A pair that moves the service address, the primary waiting for it at start.
    fn alias(timeout: Duration) -> Sim {
        let mut sim = Sim::new(Sim::config(timeout, &[ALIAS]), &[]);
        sim.claims = Some(alias_held());
        sim
    }

    /// The one answerer for the primary's own address.
    fn answer(&mut self, mac: Option<Mac>) {
        match mac {
            Some(m) => self.answerers.insert(PUB, m),
            None => self.answerers.remove(&PUB),
        };
    }

    fn is_held(&self) -> bool {
        !self.held.is_empty()
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
                    Action::Probe(addrs) => {
                        let mut answered = false;
                        let lost = self.lose_probes > 0;
                        self.lose_probes = self.lose_probes.saturating_sub(1);
                        for addr in addrs {
                            let mac = self.answerer(*addr).filter(|_| !lost);
                            self.probed.push((self.elapsed(), *addr, mac.is_some()));
                            if let Some(mac) = mac {
                                answered = true;
                                follow.push(Event::ProbeAnswer { addr: *addr, mac });
                            }
                        }
                        self.probes.push((self.elapsed(), answered));
                    }
                    // Never two holders: a takeover on timeout comes after a full round of
                    // probes of each address that nobody answered. (A goodbye is a planned
                    // handover.)
                    Action::RunHooks {
                        phase: HookPhase::Test,
                        reason: Reason::Timeout,
                        addrs,
                    } => {
                        for addr in addrs {
                            let last: Vec<bool> = self
                                .probed
                                .iter()
                                .rev()
                                .filter(|(_, a, _)| a == addr)
                                .take(PROBES as usize)
                                .map(|(_, _, answered)| *answered)
                                .collect();
                            assert!(
                                last.len() == PROBES as usize && last.iter().all(|a| !a),
                                "{addr} taken over at {:?} without a full round of unanswered \
                                 probes: {:?}",
                                self.elapsed(),
                                self.probed
                            );
                        }
                        if self.hold_hooks {
                            self.pending.push(HookPhase::Test);
                        } else {
                            follow.push(Event::HooksDone {
                                phase: HookPhase::Test,
                                ok: self.test_ok,
                            });
                        }
                    }
                    Action::RunHooks {
                        phase: HookPhase::Fence,
                        ..
                    } if !self.hold_hooks => {
                        if self.fence_kills {
                            self.answerers.clear();
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
                    Action::AddAddresses(addrs) => {
                        self.held.extend(addrs.iter().copied());
                        follow.push(Event::AddressesAdded { failed: vec![] });
                    }
                    Action::RemoveAddresses(addrs) => {
                        for addr in addrs {
                            self.held.remove(addr);
                        }
                        follow.push(Event::AddressesRemoved { failed: vec![] });
                    }
                    Action::SendReport(r) if self.hears_reports => {
                        self.primary_hears(r);
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
        let mut turns = 0;
        while let Some(d) = self.core.next_deadline() {
            if d > end {
                break;
            }
            turns += 1;
            assert!(turns < 1_000_000, "the core never rests");
            self.now = d;
            self.feed(Event::Tick);
        }
        self.now = end;
        self.feed(Event::Tick);
    }

    fn report(&self) -> Option<Report> {
        self.claims.as_ref().map(|entries| Report {
            entries: entries.clone(),
            truncated: false,
            token: self.token,
            ack: self.ack,
        })
    }

    fn heartbeat(&mut self, link: LinkId, interval: Duration) {
        self.last_beat = Some(self.now);
        self.interval = interval;
        let report = self.report();
        self.feed(Event::Heartbeat {
            link,
            interval: self.claims.as_ref().map(|_| interval),
            via: None,
            boot: self.boot,
            report,
        });
    }

    fn goodbye(&mut self, link: LinkId, stays_up: bool) {
        if !stays_up {
            // Its host goes down: it answers only if a test says so (its kernel, for a while).
            self.last_beat = None;
        }
        let report = self.report().unwrap_or_default();
        self.feed(Event::Goodbye {
            link,
            boot: self.boot,
            stays_up,
            report,
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

    fn reports(&self) -> Vec<(Duration, OutReport)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::SendReport(r) => Some((*t, r.clone())),
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

fn took_over(reason: Reason, addrs: &[IpAddr]) -> Notice {
    Notice::TookOver {
        reason,
        addrs: addrs.to_vec(),
    }
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
    assert!(sim.is_held());
    assert_eq!(
        sim.hooks_run(),
        vec![HookPhase::Test, HookPhase::PreAcq, HookPhase::PostAcq]
    );
    assert_eq!(sim.notices(), vec![took_over(Reason::Timeout, &[PUB])]);
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
            Action::AddAddresses(_) => Some("add"),
            Action::Announce(_) => Some("announce"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["Test", "PreAcq", "add", "announce", "PostAcq"]);
    // Every hook is told which addresses it acts on.
    assert!(sim.log.iter().all(|(_, a)| match a {
        Action::RunHooks { addrs, .. } => addrs == &vec![PUB],
        _ => true,
    }));
}

#[test]
fn goodbye_of_a_host_going_down_means_takeover_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(5000)); // heartbeats at 0..4 s
    sim.run_until(ms(4500));
    sim.goodbye(PUB, false);
    assert_eq!(sim.first(is_takeover), Some(ms(4500)));
    let reason = sim.transitions().last().map(|t| t.2);
    assert_eq!(reason, Some(Reason::Goodbye));
    assert_eq!(sim.core.state(), State::Acquired);
    // The second goodbye, on the other link, changes nothing.
    sim.goodbye(PRIV, false);
    assert_eq!(sim.count(is_takeover), 1);
    assert_eq!(sim.core.peer_state(sim.now), PeerState::Leaving);
}

#[test]
fn goodbye_during_boot_grace_takes_over_at_once() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.heartbeat(PUB, SEC);
    sim.run_until(ms(200));
    sim.goodbye(PUB, false);
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

// Giving back: the handover protocol.

#[test]
fn the_primarys_own_address_is_given_back_at_its_first_verified_heartbeat() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.run_until(ms(3000)); // silent from boot: takeover at the end of the grace
    assert_eq!(sim.core.state(), State::Acquired);
    sim.run_until(ms(10_000));
    // One heartbeat that says the primary answers for its address: given back at once,
    // not three heartbeats later (every moment longer is a moment of two holders).
    sim.heartbeat(PUB, SEC);
    assert_eq!(sim.first(is_release), Some(ms(10_000)));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.is_held());
    let order: Vec<&str> = sim
        .log
        .iter()
        .skip_while(|(_, a)| !is_release(a))
        .filter_map(|(_, a)| match a {
            Action::RunHooks { phase, .. } => Some(phase.as_str()),
            Action::RemoveAddresses(_) => Some("remove"),
            Action::SendReport(_) => Some("released"),
            Action::StopAnnouncing(_) => Some("stop-announcing"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["stop-announcing", "PreRel", "remove", "released", "PostRel"]
    );
    assert_eq!(
        sim.notices().last(),
        Some(&Notice::Released {
            reason: Reason::PeerReturned,
            addrs: vec![PUB],
            to: ReleasedTo::Peer
        })
    );
}

#[test]
fn a_released_is_repeated_every_interval_until_the_primary_acknowledges_it() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.run_until(ms(1000));
    assert_eq!(sim.core.state(), State::Acquired);
    // The primary is back but does not hear our reports (lost on both links).
    sim.hears_reports = false;
    sim.beat(&[PUB, PRIV], ms(100), ms(1500));
    assert_eq!(sim.core.state(), State::Monitoring);
    let ids: Vec<u64> = sim.reports().iter().map(|(_, r)| r.id).collect();
    assert!(ids.len() >= 4, "{ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0] && *id != 0), "{ids:?}");
    // Once its heartbeats carry the id, the repeats stop.
    sim.ack = ids[0];
    let before = sim.reports().len();
    sim.beat(&[PUB, PRIV], ms(100), ms(3000));
    assert!(sim.reports().len() <= before + 1, "{:?}", sim.reports());
    // Each report says we hold none of the address.
    assert_eq!(
        sim.reports()[0].1.entries,
        vec![Entry::new(PUB, Role::NONE)]
    );
}

#[test]
fn a_service_address_goes_back_by_agreement_and_the_wait_token_is_answered() {
    let mut sim = Sim::alias(ms(300));
    sim.run_until(ms(1000));
    assert_eq!(sim.core.state(), State::Acquired);
    // The primary returns and waits for its service address, with a token.
    sim.claims = Some(alias_wanted());
    sim.token = 4242;
    sim.heartbeat(PRIV, ms(100));
    // The first return: no hold-off.
    assert_eq!(sim.first(is_release), Some(ms(1000)));
    assert!(!sim.is_held());
    let reports = sim.reports();
    let (_, r) = reports.last().expect("a report");
    assert_eq!(r.token, 4242, "it answers the primary's token");
    assert_eq!(r.entries, vec![Entry::new(ALIAS, Role::NONE)]);
    assert_ne!(r.id, 0);
    // The primary adds it and says so: nothing more happens, and nobody is left without it.
    sim.claims = Some(alias_held());
    sim.token = 0;
    sim.answerers.insert(ALIAS, PEER_MAC);
    sim.beat(&[PRIV], ms(100), ms(3000));
    assert_eq!(sim.count(is_takeover), 1);
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn a_primary_waiting_while_we_hold_nothing_is_answered_at_once() {
    let mut sim = Sim::alias(ms(300));
    sim.hears_reports = false;
    sim.claims = Some(alias_wanted());
    sim.token = 9;
    sim.heartbeat(PRIV, ms(100));
    let reports = sim.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].1.token, 9);
    assert_eq!(reports[0].1.entries, vec![Entry::new(ALIAS, Role::NONE)]);
    assert_eq!(reports[0].1.id, 0, "no release to acknowledge");
    // A new token (the primary gave it up and waits again) is answered at once too.
    sim.run_until(ms(10));
    sim.token = 10;
    sim.heartbeat(PRIV, ms(100));
    assert_eq!(sim.reports().last().map(|(_, r)| r.token), Some(10));
}

#[test]
fn a_flapping_primary_is_held_off_longer_at_each_return() {
    let mut sim = Sim::alias(ms(300));
    sim.run_until(ms(1000));
    let mut gaps = Vec::new();
    for round in 0..4u64 {
        // The primary returns, waits, gets it, then dies again.
        let back = ms(1000 + round * 10_000);
        sim.run_until(back);
        sim.claims = Some(alias_wanted());
        sim.token = 100 + round;
        let before = sim.count(is_release);
        let mut t = back;
        while sim.count(is_release) == before && t < back + ms(9000) {
            sim.run_until(t);
            sim.heartbeat(PRIV, ms(100));
            t += ms(100);
        }
        let released = sim
            .log
            .iter()
            .filter(|(_, a)| is_release(a))
            .map(|(t, _)| *t)
            .next_back()
            .expect("released");
        gaps.push((released - back).as_millis());
        // It holds it for a moment, then its host dies: taken over again.
        sim.claims = Some(alias_held());
        sim.answerers.insert(ALIAS, PEER_MAC);
        sim.beat(&[PRIV], ms(100), t + ms(500));
        sim.answerers.clear();
        sim.run_until(t + ms(2000));
        assert_eq!(sim.core.state(), State::Acquired, "round {round}");
    }
    // No hold-off for the first return, then a timeout, two, four.
    assert_eq!(gaps[0], 0, "{gaps:?}");
    assert!(gaps[1] >= 300 && gaps[1] < 400, "{gaps:?}");
    assert!(gaps[2] >= 600 && gaps[2] < 700, "{gaps:?}");
    assert!(gaps[3] >= 1200 && gaps[3] < 1300, "{gaps:?}");
}

#[test]
fn a_handover_whose_first_round_of_probes_is_lost_is_not_taken_back() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.run_until(ms(1000));
    assert_eq!(sim.core.state(), State::Acquired);
    // The primary returns on a lossy LAN: the three probes after the release are lost.
    sim.lose_probes = 3;
    sim.beat(&[PUB, PRIV], ms(100), ms(3000));
    assert_eq!(sim.first(is_release), Some(ms(1000)));
    assert!(sim.probes.iter().any(|(_, a)| !a));
    assert!(!sim.is_held(), "{:?}", sim.transitions());
    assert!(!sim
        .transitions()
        .iter()
        .any(|(_, _, r)| *r == Reason::HandoverFailed));
}

#[test]
fn a_handover_nobody_answers_for_is_taken_back_without_conflict_or_fence() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.run_until(ms(1000));
    assert_eq!(sim.core.state(), State::Acquired);
    // The primary comes back on its private link only: it says it holds its address, but its
    // public port does not forward yet (spanning tree), so nobody answers for it.
    sim.serves = false;
    sim.beat(&[PRIV], ms(100), ms(2000));
    let released = sim
        .first(is_release)
        .expect("released at its first heartbeat");
    assert_eq!(released, ms(1000));
    let taken_back = sim
        .transitions()
        .into_iter()
        .find(|(_, to, r)| {
            *to == State::Acquiring(AcquireStep::Test) && *r == Reason::HandoverFailed
        })
        .map(|(t, _, _)| t)
        .expect("taken back");
    // Within one timeout and a second, short round (one round lost to loss must not count)
    // of the release.
    assert!(taken_back - released <= ms(450), "{taken_back:?}");
    assert!(sim.is_held());
    assert!(sim.notices().contains(&Notice::HandoverFailed(vec![PUB])));
    assert!(!sim
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::Conflict(_))));
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
    // While its heartbeats go on and it still cannot serve, we keep it: no bouncing.
    let releases = sim.count(is_release);
    sim.beat(&[PRIV], ms(100), ms(6000));
    assert_eq!(sim.count(is_release), releases);
    // Its port comes up: it answers our probes, so it can serve, and gets it back.
    sim.serves = true;
    sim.beat(&[PRIV], ms(100), ms(9000));
    assert!(sim.count(is_release) > releases, "{:?}", sim.transitions());
    assert!(!sim.is_held());
}

#[test]
fn a_primary_that_cannot_serve_its_address_is_taken_over_after_a_timeout() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    assert_eq!(sim.core.state(), State::Monitoring);
    // Its public interface dies: the private link carries heartbeats that say it no longer
    // answers for its address.
    sim.claims = Some(vec![Entry::new(PUB, Role::IDENTITY)]);
    sim.beat(&[PRIV], ms(100), ms(3000));
    let took = sim.first(is_takeover).expect("taken over");
    assert!(took >= ms(1300) && took <= ms(1500), "{took:?}");
    assert!(sim
        .transitions()
        .iter()
        .any(|(_, to, r)| *to == State::Acquiring(AcquireStep::Test)
            && *r == Reason::PeerCannotServe));
    assert!(sim.is_held());
    // It comes back: given back at once.
    sim.claims = Some(own());
    sim.answer(Some(PEER_MAC));
    sim.beat(&[PUB, PRIV], ms(100), ms(4000));
    assert!(!sim.is_held());
}

/// Found by the model checker (model/, docs/hardening.md): an address taken because the
/// primary could not serve it waits for the primary to show that it can (to answer for it,
/// heard alive). When the primary fell silent (heartbeatd stopped) and its kernel answered
/// for the address again, that was neither the proof (it is not heard) nor a conflict (the
/// slot waited for proof): both hosts answered for it for as long as heartbeatd was stopped.
#[test]
fn a_silent_primary_answering_for_what_it_could_not_serve_is_a_conflict() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.core.config.conflict_grace = ms(2000);
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.claims = Some(vec![Entry::new(PUB, Role::IDENTITY)]);
    sim.beat(&[PRIV], ms(100), ms(2000));
    assert!(sim.is_held(), "taken: it could not serve");
    // heartbeatd stops (SIGSTOP); the host's kernel answers for its address again.
    sim.answer(Some(PEER_MAC));
    let from = sim.elapsed();
    sim.run_until(from + ms(8000));
    let released = sim.first(is_release).expect("given up");
    // Seen at a hold probe (every 500 ms), given up a grace (2 s) later.
    assert!(released <= from + ms(2600), "{released:?}");
    assert!(!sim.is_held());
    assert!(sim
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::Conflict(c) if c.holding)));
}

#[test]
fn a_primary_whose_public_link_is_lost_is_taken_over_after_two_timeouts_and_two_rounds() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // Its public port stops forwarding: heartbeats only on the private link, its kernel no
    // longer reachable for probes, though its heartbeats still say it holds its address.
    sim.serves = false;
    sim.beat(&[PRIV], ms(100), ms(4000));
    let took = sim.first(is_takeover).expect("taken over");
    // Heard last at 0.9 s; counted ten intervals into its silence (1.9 s, more than two
    // timeouts), two rounds after that.
    assert!(took >= ms(1900) && took <= ms(2300), "{took:?}");
    assert!(sim
        .transitions()
        .iter()
        .any(|(_, to, r)| *to == State::Acquiring(AcquireStep::Test)
            && *r == Reason::PeerCannotServe));
    let unanswered = sim.probes.iter().filter(|(t, a)| *t < took && !a).count();
    assert!(unanswered >= 6, "{:?}", sim.probes);
    // The port forwards again: its heartbeats on the public link give it back at once, even
    // before a probe of ours is answered.
    sim.beat(&[PUB, PRIV], ms(100), ms(4200));
    assert!(!sim.is_held(), "{:?}", sim.transitions());
}

#[test]
fn heavy_loss_on_the_public_link_takes_nothing_the_primary_still_claims() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // The public link misses one timeout and a half of heartbeats, and comes back: not lost
    // long enough.
    sim.beat(&[PRIV], ms(100), ms(1450));
    sim.beat(&[PUB, PRIV], ms(100), ms(2000));
    assert_eq!(sim.count(is_takeover), 0, "{:?}", sim.transitions());
    // Silent long enough, but the first round's probes are lost too: the second is answered.
    sim.lose_probes = 3;
    sim.beat(&[PRIV], ms(100), ms(3500));
    assert_eq!(
        sim.count(is_takeover),
        0,
        "{:?} {:?}",
        sim.transitions(),
        sim.probes
    );
    assert!(sim.probes.iter().any(|(_, a)| !a), "a round was lost");
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn a_primary_whose_heartbeats_say_nothing_is_given_back_after_the_release_count() {
    // Apple's bare datagram: no word on addresses, so the old rule applies.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.claims = None;
    sim.run_until(ms(3000));
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
    assert!(!sim.is_held());
    // Broken by a timeout, heartbeats do not add up.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.claims = None;
    sim.run_until(ms(3000));
    for round in 0..10u64 {
        let base = 10_000 + round * 6_000;
        sim.run_until(ms(base));
        sim.heartbeat(PUB, SEC);
        sim.run_until(ms(base + 1000));
        sim.heartbeat(PUB, SEC);
    }
    sim.run_until(ms(100_000));
    assert_eq!(sim.count(is_release), 0);
}

// The boot grace.

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
fn held_at_start_and_claimed_by_the_primary_is_given_back_with_hooks() {
    let mut sim = Sim::new(Sim::config(ms(2000), &[PUB]), &[PUB]);
    assert!(sim.core.holds_addresses(), "held at start counts as held");
    sim.beat(&[PUB], ms(500), ms(3000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.is_held());
    assert_eq!(sim.hooks_run(), vec![HookPhase::PreRel, HookPhase::PostRel]);
    assert_eq!(sim.first(is_release), Some(ms(0)), "at its first heartbeat");
    assert!(!sim.reports().is_empty());
}

#[test]
fn held_at_start_and_the_peer_silent_is_kept_without_hooks() {
    let mut sim = Sim::new(Sim::config(ms(2000), &[PUB]), &[PUB]);
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.is_held());
    assert!(sim.hooks_run().is_empty());
    assert_eq!(
        sim.transitions(),
        vec![(ms(2000), State::Acquired, Reason::Reconcile)]
    );
    assert!(sim.count(|a| matches!(a, Action::Announce(_))) >= 1);
    // And the rules apply from there.
    sim.beat(&[PUB], ms(500), ms(7000));
    assert_eq!(sim.core.state(), State::Monitoring);
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
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            taken_over: vec![PUB],
            ..Config::default()
        },
        &[],
    );
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
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            taken_over: vec![PUB],
            ..Config::default()
        },
        &[],
    );
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
    assert!(!sim.is_held());
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
    assert!(!sim.is_held());
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
    assert!(sim.is_held());
    // PostAcq takes 5 s; the peer returns at 2 s and beats steadily.
    sim.beat(&[PUB, PRIV], ms(300), ms(6000));
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::PostAcq));
    sim.finish_hook(true);
    // The primary claims it: the release starts at once.
    assert_eq!(sim.core.state(), State::Releasing(ReleaseStep::PreRel));
    sim.finish_hook(true);
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.is_held());
}

#[test]
fn a_failing_pre_or_post_hook_does_not_stop_the_transition() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.finish_hook(true); // Test
    sim.finish_hook(false); // PreAcq fails
    assert!(sim.is_held());
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
    assert!(!sim.is_held());
    assert_eq!(
        sim.hooks_run()[3..],
        [HookPhase::PreRel, HookPhase::PostRel]
    );
    assert!(matches!(sim.log.last(), Some((_, Action::Exit))));
    let release_reason = sim.log.iter().find_map(|(_, a)| match a {
        Action::RunHooks {
            phase: HookPhase::PreRel,
            reason,
            ..
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
    let mut sim = Sim::new(Sim::config(ms(2000), &[PUB]), &[PUB]);
    sim.run_until(ms(500));
    sim.feed(Event::Shutdown);
    assert!(!sim.is_held());
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
    assert!(!sim.is_held());
}

#[test]
fn shutdown_during_test_exits_without_acquiring() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.hold_hooks = true;
    sim.run_until(ms(1000));
    sim.feed(Event::Shutdown);
    sim.finish_hook(true);
    assert_eq!(sim.core.state(), State::Stopped);
    assert!(!sim.is_held());
}

#[test]
fn goodbye_during_a_release_takes_over_again_when_it_is_done() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.run_until(ms(1000));
    sim.hold_hooks = true;
    sim.beat(&[PUB], ms(200), ms(1500));
    assert_eq!(sim.core.state(), State::Releasing(ReleaseStep::PreRel));
    sim.goodbye(PUB, false);
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
    sim.feed(Event::AddressesAdded { failed: vec![] });
    sim.feed(Event::AddressesRemoved { failed: vec![] });
    assert_eq!(sim.log.len(), before);
    assert_eq!(sim.core.state(), State::Monitoring);
}

#[test]
fn random_event_sequences_keep_the_invariants() {
    use proptest::prelude::*;
    let strategy = proptest::collection::vec((0u8..14, 0u64..700), 1..400);
    let cases = std::env::var("IPFO_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    proptest!(ProptestConfig::with_cases(cases), |(steps in strategy)| {
        let mut sim = Sim::new(Sim::config(ms(300), &[PUB, ALIAS]), &[]);
        sim.hold_hooks = true;
        for (kind, dt) in steps {
            let t = sim.elapsed() + ms(dt);
            sim.run_until(t);
            match kind {
                0..=2 => sim.heartbeat(PUB, ms(100)),
                3 => sim.heartbeat(PRIV, ms(100)),
                4 => sim.goodbye(PUB, dt % 2 == 0),
                5 | 6 if !sim.pending.is_empty() => sim.finish_hook(kind == 5),
                7 if dt < 20 => sim.feed(Event::Shutdown),
                // Another host starts or stops answering for the address.
                8 => {
                    let now = sim.answerers.contains_key(&PUB);
                    sim.answer(if now { None } else { Some(PEER_MAC) });
                }
                9 => sim.feed(Event::AddressMissing { addr: PUB }),
                // The primary changes its word on its addresses.
                10 => sim.claims = Some(own()),
                11 => sim.claims = Some(alias_wanted()),
                12 => sim.claims = Some(vec![Entry::new(PUB, Role::IDENTITY)]),
                13 => sim.token = dt,
                _ => {}
            }
            if sim.core.state() == State::Stopped {
                prop_assert!(!sim.is_held(), "stopped while holding");
                break;
            }
            // What we hold is what the core says may be held.
            for a in &sim.held {
                prop_assert!(
                    sim.core.held().contains(a)
                        || sim.core.state() == State::Acquiring(AcquireStep::Adding),
                    "{a} held in {:?}", sim.core.state()
                );
            }
        }
        // Complete whatever is pending: the core always reaches a resting state.
        for _ in 0..40 {
            if sim.pending.is_empty() { break; }
            sim.finish_hook(true);
        }
        prop_assert!(sim.pending.is_empty());
        prop_assert!(matches!(sim.core.state(),
            State::Monitoring | State::Acquired | State::Stopped | State::BootGrace
                | State::Conflict | State::ThirdHost));
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
    // The primary is back but its heartbeats say nothing of its address yet (it cannot
    // serve it): we keep it while only the private link is heard.
    sim.claims = Some(vec![Entry::new(PRIV, Role::IDENTITY.with(Role::HOLDS))]);
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
    sim.claims = Some(own());
    sim.answer(Some(PEER_MAC));
    sim.beat(&[PRIV], SEC, ms(60_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(sim.notices().contains(&Notice::LinkLost(PUB)));
}

#[test]
fn with_the_derived_timeout_two_lost_heartbeats_are_not_a_takeover() {
    // Heartbeats every 100 ms that arrive 0.2 ms after they are due; two in a row are lost
    // on both links. With a timeout of exactly 3 intervals the third would arrive after the
    // deadline; the derived timeout waits for it.
    let config = Config {
        peer: Some(PUB),
        taken_over: vec![PUB],
        ..Config::default()
    };
    let mut sim = Sim::new(config.clone(), &[]);
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
    let mut sim = Sim::new(config, &[]);
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

fn probe_times(sim: &Sim) -> Vec<Duration> {
    sim.probes.iter().map(|(t, _)| *t).collect()
}

/// The probe times from `from` on: before, the primary was heard, and its addresses were only
/// probed now and then for a third host.
fn probe_times_from(sim: &Sim, from: Duration) -> Vec<Duration> {
    probe_times(sim)
        .into_iter()
        .filter(|t| *t >= from)
        .collect()
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
    let probes = probe_times_from(&sim, ms(10_001));
    assert_eq!(probes[..3], [ms(11_100), ms(11_400), ms(11_700)]);
    assert_eq!(sim.first(is_takeover), Some(ms(12_000)));
    // Then, holding while the peer is silent, once a second for a conflict.
    assert_eq!(probes[3..], [ms(12_000), ms(13_000)]);
    // While it was heard, its address was probed every 5 s for a third host.
    assert_eq!(
        probe_times(&sim)
            .into_iter()
            .filter(|t| *t <= ms(10_000))
            .collect::<Vec<_>>(),
        [ms(0), ms(5_000), ms(10_000)]
    );
    // The window is 30 % of the timeout, capped at 1 s.
    assert_eq!(probe_window(ms(30)), ms(9));
    assert_eq!(probe_window(ms(10_000)), SEC);
}

#[test]
fn an_address_that_still_answers_is_not_taken_over_and_fence_waits_its_time() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    // Heartbeats stop (a firewall, heartbeatd killed) but the host still answers ARP.
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(60_000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.is_held());
    assert_eq!(sim.first(is_takeover), None);
    // Told once, with the MAC that answered; probing goes on in rounds.
    let conflicts: Vec<Notice> = sim.notices().into_iter().filter(in_conflict).collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let Notice::Conflict(c) = &conflicts[0] else {
        unreachable!()
    };
    assert_eq!((c.addr, c.mac, c.holding), (PUB, PEER_MAC, false));
    assert!(sim.probes.len() > 100, "{} probes", sim.probes.len());
    assert_eq!(
        sim.core.conflict().map(|c| c.since),
        Some(sim.t0 + ms(12_000))
    );
    // Fence ran once, and only after FAILOVER_FENCE_AFTER (5 timeouts by default).
    assert_eq!(sim.hooks_run(), vec![HookPhase::Fence]);
    let fenced = sim
        .first(|a| {
            matches!(
                a,
                Action::RunHooks {
                    phase: HookPhase::Fence,
                    ..
                }
            )
        })
        .unwrap();
    assert_eq!(fenced, ms(12_000) + default_fence_after(ms(3000)));
    // The host dies (its links go down): taken over within one round.
    sim.answer(None);
    let died = sim.elapsed();
    sim.run_until(ms(62_000));
    let took = sim.first(is_takeover).expect("taken over") - died;
    assert!(took <= ms(900) * 2, "{took:?}");
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim
        .notices()
        .contains(&Notice::ConflictOver { holding: false }));
}

/// Found by the model checker (model/, docs/hardening.md): while one address answered (the
/// primary's own, its host up), a conflict's rounds took over none of the others, so a
/// service address its heartbeatd had removed stayed unheld for as long as the host lived.
#[test]
fn in_a_conflict_an_address_nobody_answers_for_is_taken_over_alone() {
    let mut sim = Sim::new(Sim::config(ms(300), &[PUB, ALIAS]), &[]);
    let mut claims = own();
    claims.push(Entry {
        addr: ALIAS,
        role: Role::HOLDS.with(Role::MANAGED),
        mac: PEER_MAC,
    });
    sim.claims = Some(claims);
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // Its heartbeats are dropped (a firewall); both addresses still answer: a conflict.
    sim.answerers.insert(PUB, PEER_MAC);
    sim.answerers.insert(ALIAS, PEER_MAC);
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.is_held());
    // heartbeatd stops and removes its service address (its goodbye dropped too); its host
    // keeps its own address.
    sim.answerers.remove(&ALIAS);
    sim.run_until(ms(2600));
    assert!(
        sim.held.contains(&ALIAS),
        "the service address is taken over"
    );
    assert!(
        !sim.held.contains(&PUB),
        "not the address that still answers"
    );
    let conflicts = sim.notices().into_iter().filter(in_conflict).count();
    assert_eq!(conflicts, 1, "one episode, told once");
    assert_eq!(sim.core.conflict().map(|c| c.addr), Some(PUB));
}

#[test]
fn a_short_conflict_never_runs_fence() {
    // Loss on both links makes a conflict of a few rounds: over before Fence is due.
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(1500));
    assert_eq!(sim.core.state(), State::Conflict);
    sim.beat(&[PUB, PRIV], ms(100), ms(10_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
    assert_eq!(default_fence_after(ms(300)), FENCE_AFTER_MIN);
}

#[test]
fn fence_is_never_run_for_a_boot_that_said_goodbye() {
    // heartbeatd stopped on a host that stays up and went on answering: its own address is
    // watched; its heartbeatd's boot said goodbye, so however long it lasts, no Fence.
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
    sim.goodbye(PUB, true);
    assert_eq!(sim.core.peer_state(sim.now), PeerState::DaemonStopped);
    assert!(sim
        .notices()
        .contains(&Notice::PeerDaemonStopped { kept: vec![PUB] }));
    sim.run_until(ms(60_000));
    assert_eq!(sim.first(is_takeover), None, "its host still answers");
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
    assert!(!sim.notices().iter().any(in_conflict));
    // Its host goes down: taken over within a round of the watch.
    sim.answer(None);
    sim.run_until(ms(60_500));
    assert!(sim.is_held());
}

#[test]
fn fence_waits_while_a_reload_of_the_secret_settles() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // The secret is rewritten on this host first: the primary's heartbeats no longer verify.
    let mut config = sim.core.config().clone();
    config.key_changed = true;
    sim.feed(Event::Reconfigure(config));
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(9000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
    assert!(sim
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::FenceWithheld(_))));
    // The primary is rewritten too: its heartbeats verify again, and the conflict ends.
    sim.beat(&[PUB, PRIV], ms(100), ms(10_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
}

#[test]
fn fence_waits_while_the_primary_sends_datagrams_signed_with_another_key() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.core.config.fence_after = Some(ms(1000));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // The primary's secret was rewritten (no reload here): its datagrams fail their tag.
    sim.answer(Some(PEER_MAC));
    let mut t = ms(1000);
    while t < ms(6000) {
        sim.run_until(t);
        sim.feed(Event::ForeignKey);
        t += ms(100);
    }
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
    assert!(sim
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::FenceWithheld(why) if why.contains("another key"))));
    // They stop too (the host is stuck now): Fence a timeout after the last one.
    sim.run_until(ms(8000));
    assert!(sim.hooks_run().contains(&HookPhase::Fence));
    let fenced = sim
        .first(|a| {
            matches!(
                a,
                Action::RunHooks {
                    phase: HookPhase::Fence,
                    ..
                }
            )
        })
        .expect("fenced");
    assert!(fenced >= ms(6200) && fenced <= ms(6300), "{fenced:?}");
}

#[test]
fn one_lost_round_of_probes_in_a_conflict_is_no_takeover() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    // One round's probes are lost on the LAN; the host still answers the next.
    sim.lose_probes = 3;
    sim.run_until(ms(4000));
    assert!(sim.probes.iter().any(|(_, a)| !a));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.count(is_takeover), 0);
    // It dies: taken over after two rounds nobody answers.
    sim.answer(None);
    sim.run_until(ms(5000));
    let took = sim.first(is_takeover).expect("taken over");
    assert!(took > ms(4000) && took <= ms(4500), "{took:?}");
}

#[test]
fn a_heartbeat_ends_the_conflict() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
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
    sim.core.config.fence_after = Some(ms(100));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.answer(Some(PEER_MAC));
    sim.fence_kills = true;
    sim.run_until(ms(20_000));
    // Conflict at 12 s, Fence 100 ms later, a fresh round at once: taken over a round later.
    assert_eq!(sim.hooks_run()[0], HookPhase::Fence);
    let took = sim.first(is_takeover).expect("taken over");
    assert!(
        took > ms(12_100) && took <= ms(12_100) + ms(900),
        "{took:?}"
    );
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn nothing_is_decided_while_fence_runs() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.core.config.fence_after = Some(ms(100));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
    sim.hold_hooks = true;
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.pending, vec![HookPhase::Fence]);
    // The peer's host goes away while Fence still runs: probing goes on, no takeover yet.
    sim.answer(None);
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.first(is_takeover), None);
    sim.finish_hook(true);
    sim.hold_hooks = false;
    sim.run_until(ms(6000));
    assert_eq!(sim.core.state(), State::Acquired);
}

#[test]
fn a_goodbye_of_a_host_going_down_is_not_probed() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.answer(Some(PEER_MAC)); // its kernel answers until its links go down
    sim.goodbye(PUB, false);
    assert_eq!(sim.first(is_takeover), Some(ms(10_000)));
    assert_eq!(sim.core.state(), State::Acquired);
    // Not probed for the takeover: the only probes before it watch for a third host, every
    // 5 s while the primary is heard.
    assert_eq!(
        probe_times(&sim)
            .into_iter()
            .filter(|t| *t < ms(10_000))
            .collect::<Vec<_>>(),
        [ms(0), ms(5_000)],
        "{:?}",
        sim.probes
    );
}

#[test]
fn a_goodbye_of_heartbeatd_alone_leaves_the_own_address_and_takes_the_service_address() {
    let mut sim = Sim::new(Sim::config(ms(300), &[PUB, ALIAS]), &[]);
    sim.claims = Some(vec![
        Entry {
            addr: PUB,
            role: Role::IDENTITY.with(Role::HOLDS),
            mac: PEER_MAC,
        },
        Entry {
            addr: ALIAS,
            role: Role::HOLDS.with(Role::MANAGED),
            mac: PEER_MAC,
        },
    ]);
    sim.answerers.insert(PUB, PEER_MAC);
    sim.answerers.insert(ALIAS, PEER_MAC);
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // heartbeatd removes its service address, then says goodbye: its host stays up.
    sim.answerers.remove(&ALIAS);
    sim.claims = Some(own());
    sim.goodbye(PRIV, true);
    assert_eq!(sim.first(is_takeover), Some(ms(1000)));
    assert_eq!(sim.held, BTreeSet::from([ALIAS]));
    sim.run_until(ms(10_000));
    assert_eq!(sim.held, BTreeSet::from([ALIAS]), "its own address answers");
    assert!(!sim.notices().iter().any(in_conflict));
    // heartbeatd starts again and wants its service address: given back by agreement.
    sim.boot = 8;
    sim.claims = Some(vec![
        Entry {
            addr: PUB,
            role: Role::IDENTITY.with(Role::HOLDS),
            mac: PEER_MAC,
        },
        Entry::new(ALIAS, Role::WANTS.with(Role::MANAGED)),
    ]);
    sim.token = 5;
    sim.beat(&[PUB, PRIV], ms(100), ms(11_000));
    assert!(sim.held.is_empty(), "{:?}", sim.held);
    // heartbeatd added it once told, and it answers: nothing more happens.
    sim.beat(&[PUB, PRIV], ms(100), ms(15_000));
    assert!(sim.held.is_empty(), "{:?}", sim.transitions());
}

/// Found by the model checker (model/, docs/hardening.md): after the goodbye of heartbeatd
/// alone, a `Test` that refused the takeover of the service address was never tried again:
/// the rounds that followed watched the host's own address only, and nobody answered for the
/// service address for as long as the host lived.
#[test]
fn a_refused_takeover_after_a_goodbye_of_heartbeatd_alone_is_tried_again() {
    let mut sim = Sim::new(Sim::config(ms(300), &[PUB, ALIAS]), &[]);
    let mut claims = own();
    claims.push(Entry {
        addr: ALIAS,
        role: Role::HOLDS.with(Role::MANAGED),
        mac: PEER_MAC,
    });
    sim.claims = Some(claims);
    sim.answerers.insert(PUB, PEER_MAC);
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.claims = Some(own());
    sim.test_ok = false;
    sim.goodbye(PRIV, true);
    assert!(sim.held.is_empty(), "Test refused");
    sim.test_ok = true;
    // One timeout later, probed like a timeout's.
    sim.run_until(ms(1000) + ms(300) * 3);
    assert_eq!(sim.held, BTreeSet::from([ALIAS]));
    assert_eq!(
        sim.notices()
            .iter()
            .filter(|n| **n == Notice::TakeoverRefused)
            .count(),
        1
    );
}

#[test]
fn copies_of_a_goodbye_start_one_takeover() {
    let mut sim = Sim::with_timeout(ms(1000));
    sim.core.config.conflict_grace = ms(2000);
    sim.beat(&[PUB, PRIV], ms(100), ms(5000));
    sim.hold_hooks = true;
    sim.goodbye(PUB, false);
    assert_eq!(sim.core.state(), State::Acquiring(AcquireStep::Test));
    for link in [PRIV, PUB, PRIV] {
        sim.goodbye(link, false);
    }
    sim.hold_hooks = false;
    while !sim.pending.is_empty() {
        sim.finish_hook(true);
    }
    assert_eq!(sim.core.state(), State::Acquired);
    sim.run_until(ms(20_000));
    assert_eq!(sim.count(is_takeover), 1, "{:?}", sim.transitions());
}

#[test]
fn a_goodbye_during_a_conflict_hands_over() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(2000));
    assert_eq!(sim.core.state(), State::Conflict);
    sim.goodbye(PRIV, false);
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
    sim.answer(Some(PEER_MAC));
    sim.feed(Event::Tick);
    assert_eq!(
        sim.first(is_takeover),
        None,
        "no takeover before a probe round"
    );
    assert_eq!(probe_times_from(&sim, ms(1000)), vec![ms(10_000)]);
    sim.run_until(ms(10_500));
    assert_eq!(sim.core.state(), State::Conflict);
    // The same stall with a dead peer: the round still takes its time, then the takeover.
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.now = sim.t0 + ms(10_000);
    sim.feed(Event::Tick);
    sim.run_until(ms(10_500));
    assert_eq!(
        probe_times_from(&sim, ms(1000))[..3],
        [ms(10_000), ms(10_030), ms(10_060)]
    );
    assert_eq!(sim.first(is_takeover), Some(ms(10_090)));
}

#[test]
fn the_boot_grace_probes_too() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.answer(Some(PEER_MAC));
    sim.run_until(ms(10_000));
    assert_eq!(sim.core.state(), State::Conflict);
    assert_eq!(sim.first(is_takeover), None);
}

/// A sim that took over at 12 s (the peer silent since 9 s).
fn holding(grace: Duration) -> Sim {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.core.config.conflict_grace = grace;
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    sim.run_until(ms(12_500));
    assert_eq!(sim.core.state(), State::Acquired);
    sim
}

fn defends(a: &Action) -> bool {
    matches!(a, Action::Defend(_))
}

#[test]
fn another_host_answering_while_we_hold_is_defended_then_given_the_address() {
    let mut sim = holding(ms(5000));
    // The primary comes back with its own address, its heartbeats blocked by a firewall.
    sim.answer(Some(PEER_MAC));
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
    assert!(!sim.is_held());
    assert_eq!(sim.count(is_takeover), 1);
    assert_eq!(sim.core.state(), State::Conflict);
    // The LAN is sent back to the host that kept answering, in its name; the mail says so.
    assert_eq!(
        sim.count(|a| matches!(a, Action::HandBack { mac, .. } if *mac == PEER_MAC)),
        1
    );
    assert!(sim.notices().contains(&Notice::Released {
        reason: Reason::Conflict,
        addrs: vec![PUB],
        to: ReleasedTo::Host(PEER_MAC)
    }));
    // And that host is never fenced afterwards.
    sim.run_until(ms(120_000));
    assert!(!sim.hooks_run().contains(&HookPhase::Fence));
}

#[test]
fn a_host_that_stops_answering_within_the_grace_leaves_us_holding() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.core.config.conflict_grace = ms(10_000);
    sim.beat(&[PUB, PRIV], SEC, ms(10_000));
    // A goodbye; the host still answers while it shuts down, then its links go down.
    sim.answer(Some(PEER_MAC));
    sim.goodbye(PUB, false);
    sim.run_until(ms(16_000));
    assert!(sim.notices().iter().any(in_conflict));
    sim.answer(None);
    sim.run_until(ms(60_000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.is_held());
    assert_eq!(sim.count(is_release), 0, "no flapping");
    assert!(sim
        .notices()
        .contains(&Notice::ConflictOver { holding: true }));
}

#[test]
fn defence_is_at_most_once_per_defend_interval() {
    let mut sim = holding(ms(60_000));
    sim.answer(Some(THIRD_MAC));
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

// Reloads.

#[test]
fn the_boot_grace_follows_the_timeout_derived_from_the_first_heartbeat() {
    let mut sim = Sim::new(
        Config {
            peer: Some(PUB),
            taken_over: vec![PUB],
            ..Config::default()
        },
        &[],
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
    let mut sim = Sim::new(Sim::config(ms(3000), &[PUB]), &[PUB]);
    // The primary's heartbeats say nothing of its address yet (it is on its way down).
    sim.claims = Some(vec![Entry::new(PRIV, Role::IDENTITY.with(Role::HOLDS))]);
    sim.beat(&[PRIV], SEC, ms(1500));
    sim.goodbye(PRIV, false);
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(
        !sim.hooks_run().contains(&HookPhase::Test),
        "nothing to take over"
    );
    assert!(sim.is_held());
}

#[test]
fn a_link_we_could_not_hear_is_judged_from_the_release() {
    // The failback: only the private link is heard while we hold the public address; after
    // the release the public link's heartbeats come back a little later. No anomaly.
    let mut sim = Sim::with_timeout(ms(325));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    sim.run_until(ms(5000));
    assert_eq!(sim.core.state(), State::Acquired);
    sim.beat(&[PRIV], ms(100), ms(5100)); // released at its first heartbeat
    assert_eq!(sim.core.state(), State::Monitoring);
    // Its public heartbeats reach us again from the next one on, and a little late.
    sim.beat(&[PRIV], ms(100), ms(5300));
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
    config.taken_over = vec![other];
    sim.feed(Event::Reconfigure(config));
    assert!(sim.core.links().is_empty(), "the old peer's links are gone");
    assert_eq!(sim.count(|a| *a == Action::Reconfigured), 1);
    let mut same = sim.core.config().clone();
    same.timeout = Some(ms(400));
    sim.feed(Event::Reconfigure(same));
    assert_eq!(
        sim.count(|a| *a == Action::Reconfigured),
        2,
        "at once when nothing is held"
    );
    sim.claims = Some(vec![Entry::identity(other, PEER_MAC)]);
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
fn a_new_peer_while_holding_gives_the_old_peers_addresses_back_first() {
    let mut sim = holding(ms(30_000));
    let other: IpAddr = "198.51.100.11".parse().unwrap();
    let mut config = sim.core.config().clone();
    config.peer = Some(other);
    config.taken_over = vec![other];
    sim.feed(Event::Reconfigure(config));
    // Released with the old addresses (and so the old hooks), a released sent, and only then
    // the new settings in force.
    let release = sim.first(is_release).expect("released");
    let reconfigured = sim.first(|a| *a == Action::Reconfigured).expect("in force");
    assert!(release <= reconfigured);
    let order: Vec<String> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RunHooks {
                phase: HookPhase::PreRel,
                reason,
                addrs,
            } => Some(format!("PreRel {reason} {addrs:?}")),
            Action::SendReport(_) => Some("released".into()),
            Action::Reconfigured => Some("reconfigured".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "PreRel new-peer [198.51.100.10]",
            "released",
            "reconfigured"
        ]
    );
    assert!(!sim.is_held());
    assert_eq!(sim.core.config().peer, Some(other));
    assert!(sim.notices().contains(&Notice::Released {
        reason: Reason::NewPeer,
        addrs: vec![PUB],
        to: ReleasedTo::Nobody
    }));
}

#[test]
fn a_renumbered_link_is_forgotten_not_lost() {
    let mut sim = Sim::with_timeout(ms(300));
    let renumbered: IpAddr = "203.0.113.11".parse().unwrap();
    let beat = |sim: &mut Sim, link, via| {
        let report = sim.report();
        sim.feed(Event::Heartbeat {
            link,
            interval: Some(ms(100)),
            via: Some(via),
            boot: 7,
            report,
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
    let adds = |sim: &Sim| sim.count(|a| matches!(a, Action::AddAddresses(_)));
    let before = adds(&sim);
    sim.held.clear();
    sim.feed(Event::AddressMissing { addr: PUB });
    assert_eq!(adds(&sim), before + 1);
    assert!(sim.is_held());
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
    sim.feed(Event::AddressesAdded { failed: vec![PUB] });
    // The sim's adds succeed: one retry after 1 s, then nothing more.
    sim.run_until(t + ms(10_000));
    let retries: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(at, a)| *at > t && matches!(a, Action::AddAddresses(_)))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(retries, vec![t + ADD_RETRY_FIRST]);
    assert!(sim
        .log
        .iter()
        .any(|(at, a)| *at == t + ADD_RETRY_FIRST && matches!(a, Action::Announce(_))));
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

// A third host.

#[test]
fn a_third_host_answering_for_the_primarys_address_is_reported_once() {
    let mut sim = Sim::with_timeout(ms(300));
    sim.beat(&[PUB, PRIV], ms(100), ms(1000));
    // The primary answers, and so does another MAC.
    sim.answerers.insert(PUB, THIRD_MAC);
    sim.feed(Event::ProbeAnswer {
        addr: PUB,
        mac: PEER_MAC,
    });
    sim.feed(Event::ProbeAnswer {
        addr: PUB,
        mac: THIRD_MAC,
    });
    sim.beat(&[PUB, PRIV], ms(100), ms(5000));
    assert_eq!(sim.core.state(), State::ThirdHost);
    let told: Vec<Notice> = sim
        .notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::ThirdHost(_)))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    let Notice::ThirdHost(t) = told[0] else {
        unreachable!()
    };
    assert_eq!((t.addr, t.mac, t.peer_mac), (PUB, THIRD_MAC, PEER_MAC));
    assert!(sim.core.third_host().is_some());
    assert_eq!(sim.first(is_takeover), None);
    // It goes away: over, back to monitoring.
    sim.answerers.clear();
    sim.beat(&[PUB, PRIV], ms(100), ms(10_000));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(sim.notices().contains(&Notice::ThirdHostOver(PUB)));
}

// The administrator in charge.

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
    assert!(sim.is_held());
}

#[test]
fn a_goodbye_that_waited_out_a_pause_is_probed_before_the_takeover() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.feed(Event::Command(Command::Pause { until: None }));
    sim.answer(Some(PEER_MAC));
    sim.goodbye(PUB, false);
    sim.run_until(Duration::from_secs(600));
    assert_eq!(sim.first(is_takeover), None);
    sim.feed(Event::Command(Command::Resume));
    sim.run_until(Duration::from_secs(610));
    assert_eq!(sim.first(is_takeover), None, "{:?}", sim.transitions());
    assert!(!sim.is_held());
    assert_eq!(sim.core.state(), State::Conflict);
    assert!(!sim.probes.is_empty());
    // The same, with the host gone meanwhile: taken over after one probe round.
    let mut sim = Sim::with_timeout(ms(3000));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(10));
    sim.feed(Event::Command(Command::Pause { until: None }));
    sim.goodbye(PUB, false);
    sim.run_until(Duration::from_secs(600));
    sim.feed(Event::Command(Command::Resume));
    sim.run_until(Duration::from_secs(602));
    let took = sim.first(is_takeover).expect("a takeover after resume");
    assert!(took > Duration::from_secs(600), "{took:?}");
    assert!(!sim.probes.is_empty());
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
    let refused = answers(&sim);
    assert!(
        matches!(refused.last(), Some(Err(e)) if e.contains("silent")),
        "{refused:?}"
    );
    // One sentence, no runs of spaces from a broken line continuation.
    assert!(!format!("{refused:?}").contains("  "), "{refused:?}");
    assert_eq!(sim.core.state(), State::Acquired);
    sim.feed(Event::Command(Command::Release { force: true }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert!(!sim.is_held());
    let released = sim.elapsed();
    assert!(sim
        .transitions()
        .iter()
        .any(|(_, to, r)| *to == State::Releasing(ReleaseStep::PreRel) && *r == Reason::Manual));
    assert!(!sim.reports().is_empty());
    // Taken over again after one timeout, as the refusal said, not at once.
    sim.run_until(released + ms(2900));
    assert!(!sim.is_held());
    sim.run_until(released + ms(3100));
    assert!(sim.is_held());
}

#[test]
fn takeover_by_hand_of_the_primarys_own_address_is_refused_unless_forced() {
    let mut sim = Sim::with_timeout(ms(3000));
    sim.answer(Some([2, 0, 0, 0, 0, 1]));
    sim.beat(&[PUB, PRIV], SEC, Duration::from_secs(5));
    sim.feed(Event::Command(Command::Takeover { force: false }));
    let a = answers(&sim);
    assert!(
        matches!(a.last(), Some(Err(e)) if e.contains("own address")),
        "{a:?}"
    );
    assert_eq!(sim.first(is_takeover), None);
    // Forced: at once, reason manual, and Test/PreAcq/PostAcq get FAILOVER_REASON=manual.
    sim.feed(Event::Command(Command::Takeover { force: true }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.log.iter().all(|(_, a)| match a {
        Action::RunHooks { reason, .. } => *reason == Reason::Manual,
        _ => true,
    }));
    // The primary answers for it too: reported at once, and given up after the grace.
    sim.core.config.conflict_grace = ms(5000);
    let forced = sim.elapsed();
    sim.beat(&[PUB, PRIV], SEC, forced + ms(10_000));
    let told = sim
        .log
        .iter()
        .find(|(_, a)| matches!(a, Action::Notify(Notice::Conflict(c)) if c.holding))
        .map(|(t, _)| *t)
        .expect("reported");
    assert!(told <= forced + ms(1100), "{told:?}");
    assert!(!sim.is_held(), "released after the grace");
}

#[test]
fn takeover_by_hand_of_a_service_address_asks_the_primary_to_give_it_up_first() {
    let mut sim = Sim::alias(ms(300));
    sim.beat(&[PRIV], ms(100), ms(1000));
    sim.feed(Event::Command(Command::Takeover { force: false }));
    // Our report asks for it back, by hand; heartbeatd removes it and waits (the sim's
    // primary does what heartbeatd does).
    let (_, r) = sim.reports().last().cloned().expect("a report");
    assert_eq!(
        r.entries,
        vec![Entry::new(ALIAS, Role::WANTS.with(Role::MANUAL))]
    );
    assert!(answers(&sim).is_empty(), "answered once it is done");
    // Once its heartbeats say it gave it up: a probe round, then the takeover.
    sim.beat(&[PRIV], ms(100), ms(2000));
    assert!(
        matches!(answers(&sim).last(), Some(Ok(_))),
        "{:?}",
        answers(&sim)
    );
    assert!(sim.is_held());
    assert!(sim.core.manual_hold());
    let asked = ms(1000);
    let took = sim.first(is_takeover).expect("taken over");
    assert!(took > asked, "after the primary gave it up");
    // It waits for it, and we say it is held by hand: no release, however long.
    sim.beat(&[PRIV], ms(100), ms(10_000));
    assert!(sim.is_held());
    assert!(sim.notices().contains(&Notice::HeldByHand(vec![ALIAS])));
    let (_, r) = sim.reports().last().cloned().expect("a report");
    assert_eq!(
        r.entries,
        vec![Entry::new(ALIAS, Role::HOLDS.with(Role::MANUAL))]
    );
    // An administrator gives it back: by agreement, as any other release.
    sim.feed(Event::Command(Command::Release { force: false }));
    assert!(!sim.is_held());
    sim.beat(&[PRIV], ms(100), ms(12_000));
    assert!(!sim.is_held());
    assert_eq!(
        sim.claims.as_ref().map(|c| c[1].role),
        Some(Role::HOLDS.with(Role::MANAGED)),
        "heartbeatd took it back"
    );
}

/// Found by the model checker (model/, docs/hardening.md): a takeover by hand of a service
/// address whose `Test` refused left the address asked back, so the primary, which had given
/// it up, waited for it for ever, and nobody answered for it.
#[test]
fn a_refused_takeover_by_hand_gives_the_service_address_back_to_the_primary() {
    let mut sim = Sim::alias(ms(300));
    sim.beat(&[PRIV], ms(100), ms(1000));
    sim.test_ok = false;
    sim.feed(Event::Command(Command::Takeover { force: false }));
    sim.beat(&[PRIV], ms(100), ms(2000));
    assert!(!sim.is_held());
    assert!(sim.notices().contains(&Notice::TakeoverRefused));
    let (_, r) = sim.reports().last().cloned().expect("a report");
    assert_eq!(
        r.entries,
        vec![Entry::new(ALIAS, Role::NONE)],
        "no longer asked back"
    );
    assert_eq!(
        sim.claims.as_ref().map(|c| c[1].role),
        Some(Role::HOLDS.with(Role::MANAGED)),
        "the primary has it back"
    );
}

/// Found by the model checker (model/, docs/hardening.md): the primary, whose public link had
/// come back during a takeover by hand of its service address, waited for that address again,
/// and the report answering its wait said that we hold none of it, in the very turn the
/// takeover's probe round decided: both hosts added it.
#[test]
fn a_wait_is_not_answered_while_a_takeover_by_hand_is_under_way() {
    let mut sim = Sim::alias(ms(300));
    sim.beat(&[PRIV], ms(100), ms(1000));
    // Its public link is down: it gave the service address up.
    sim.claims = Some(vec![
        Entry::identity(PRIV, PEER_MAC),
        Entry::new(ALIAS, Role::MANAGED),
    ]);
    sim.beat(&[PRIV], ms(100), ms(1100));
    sim.feed(Event::Command(Command::Takeover { force: false }));
    let asked = sim.elapsed();
    // The link is back: it waits for the address, with a new token, while we probe.
    sim.claims = Some(alias_wanted());
    sim.token = 42;
    sim.beat(&[PRIV], ms(100), ms(2000));
    let answered_wait = sim.reports().iter().any(|(t, r)| {
        *t >= asked && r.token == 42 && r.entries == vec![Entry::new(ALIAS, Role::NONE)]
    });
    assert!(!answered_wait, "{:?}", sim.reports());
    assert!(sim.is_held(), "taken over by hand");
    assert_eq!(
        sim.claims.as_ref().map(|c| c[1].role),
        Some(Role::WANTS.with(Role::MANAGED)),
        "the primary still waits: held by hand"
    );
}

/// Found by the model checker (model/, docs/hardening.md): a forced takeover of both of the
/// primary's addresses while its host still answers for them (its heartbeatd killed). Each
/// answer for the other address started a new conflict episode, in turn, so the grace never
/// ran out: both hosts answered for both addresses for as long as the primary's host lived.
#[test]
fn a_conflict_while_holding_two_addresses_is_given_up_after_one_grace() {
    let mut sim = Sim::new(Sim::config(ms(3000), &[PUB, ALIAS]), &[]);
    let mut claims = own();
    claims.push(Entry {
        addr: ALIAS,
        role: Role::HOLDS.with(Role::MANAGED),
        mac: PEER_MAC,
    });
    sim.claims = Some(claims);
    sim.core.config.conflict_grace = ms(5000);
    sim.beat(&[PUB, PRIV], SEC, ms(5000));
    // heartbeatd is killed: no more heartbeats; its host answers for both addresses.
    sim.answerers.insert(PUB, PEER_MAC);
    sim.answerers.insert(ALIAS, PEER_MAC);
    sim.feed(Event::Command(Command::Takeover { force: true }));
    assert!(matches!(answers(&sim).last(), Some(Ok(_))));
    assert!(sim.held.contains(&PUB) && sim.held.contains(&ALIAS));
    let forced = sim.elapsed();
    sim.run_until(forced + ms(30_000));
    let released = sim.first(is_release).expect("given up");
    // The first hold probe finds the conflict; both go back one grace after it, together.
    assert!(released <= forced + ms(5000) + ms(1500), "{released:?}");
    assert!(!sim.is_held(), "{:?}", sim.held);
    assert!(sim.notices().contains(&Notice::Released {
        reason: Reason::Conflict,
        addrs: vec![PUB, ALIAS],
        to: ReleasedTo::Host(PEER_MAC)
    }));
    let told = sim
        .notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::Conflict(c) if c.holding))
        .count();
    assert_eq!(told, 1, "one episode, told once");
}

#[test]
fn takeover_by_hand_of_an_address_nobody_answers_is_kept_until_released_by_hand() {
    let mut sim = Sim::alias(ms(3000));
    // The primary is alive but does not hold its service address (waiting, paused by us).
    sim.claims = Some(alias_wanted());
    sim.feed(Event::Command(Command::Pause { until: None }));
    sim.beat(&[PRIV], SEC, Duration::from_secs(5));
    sim.feed(Event::Command(Command::Takeover { force: false }));
    sim.beat(&[PRIV], SEC, Duration::from_secs(8));
    assert!(
        matches!(answers(&sim).last(), Some(Ok(m)) if m.contains("taking over")),
        "{:?}",
        answers(&sim)
    );
    assert_eq!(sim.core.state(), State::Acquired);
    assert!(sim.core.manual_hold());
    let took = sim.first(is_takeover).expect("taken over");
    let probes_before: usize = sim.probes.iter().filter(|(t, _)| *t <= took).count();
    assert!(probes_before >= PROBES as usize);
    // The primary's heartbeats go on: the rules do not give it back...
    sim.beat(&[PRIV], SEC, Duration::from_secs(20));
    assert_eq!(sim.core.state(), State::Acquired);
    // ...an administrator does.
    sim.feed(Event::Command(Command::Release { force: false }));
    assert_eq!(sim.core.state(), State::Monitoring);
    assert!(!sim.core.manual_hold());
}

#[test]
fn held_addresses_are_announced_again_after_a_stall_and_by_the_refresh() {
    let mut sim = holding(ms(30_000));
    let announces = |sim: &Sim| sim.count(|a| matches!(a, Action::Announce(_)));
    let before = announces(&sim);
    // failoverd was stopped for 10 s: at the first turn after, the addresses are announced.
    sim.now += Duration::from_secs(10);
    sim.feed(Event::Tick);
    assert_eq!(announces(&sim), before + 1);
    // With a refresh of 5 s, every 5 s while held.
    let mut sim = holding(ms(30_000));
    sim.core.config.announce_refresh = Some(Duration::from_secs(5));
    let start = sim.elapsed();
    let before = announces(&sim);
    sim.run_until(start + Duration::from_secs(21));
    let refreshes = announces(&sim) - before;
    assert!((3..=5).contains(&refreshes), "{refreshes}");
}
