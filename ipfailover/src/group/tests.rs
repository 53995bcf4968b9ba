//! The group rules, in virtual time: several members around a simulated etcd (revisions,
//! leases that expire, create-if-absent, a watch that delivers views), with crashes, stalls,
//! partitions from etcd and loss of quorum. The invariant checked after every step: no
//! address is on the interfaces of two hosts that can answer for it.

use super::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const TTL: Duration = Duration::from_secs(3);

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100 + i))
}

/// One key of the simulated etcd.
#[derive(Debug, Clone)]
struct Kv {
    value: String,
    lease: i64,
    create: i64,
}

/// etcd, simulated: one store, leases expiring at their deadline, and a quorum that may be
/// lost.
#[derive(Debug, Default, Clone)]
struct Etcd {
    revision: i64,
    keys: BTreeMap<String, Kv>,
    leases: BTreeMap<i64, Instant>,
    next_lease: i64,
    quorum: bool,
}

impl Etcd {
    fn expire(&mut self, now: Instant) -> bool {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            self.leases.remove(id);
        }
        let before = self.keys.len();
        self.keys.retain(|_, kv| !dead.contains(&kv.lease));
        if self.keys.len() != before {
            self.revision += 1;
            return true;
        }
        false
    }

    fn view(&self) -> View {
        let mut v = View {
            revision: self.revision,
            ..View::default()
        };
        for (k, kv) in &self.keys {
            if let Some(name) = k.strip_prefix("members/") {
                let (priority, mode) = MemberMode::parse_key_value(&kv.value).unwrap_or_default();
                v.members.push(Member {
                    name: name.to_string(),
                    priority,
                    lease: kv.lease,
                    mode,
                });
            } else if let Some(a) = k.strip_prefix("addrs/") {
                v.holders.insert(
                    a.parse().unwrap(),
                    Holder {
                        member: kv.value.clone(),
                        epoch: kv.create,
                        lease: kv.lease,
                    },
                );
            }
        }
        v
    }
}

/// One host of the group.
struct Host {
    core: Group,
    /// The process runs (not SIGSTOPped, not crashed).
    running: bool,
    /// The host is up: its kernel answers for what is on its interface.
    up: bool,
    /// It reaches etcd.
    reaches_etcd: bool,
    /// What is on its interface.
    held: BTreeSet<IpAddr>,
    /// Answers to hand in, and when.
    inbox: Vec<(Instant, GroupEvent)>,
    exited: bool,
    log: Vec<(Duration, GroupAction)>,
}

impl Host {
    /// A host that is up, reaches etcd and runs `core`, with nothing on its interface yet.
    fn running(core: Group) -> Host {
        Host {
            core,
            running: true,
            up: true,
            reaches_etcd: true,
            held: BTreeSet::new(),
            inbox: Vec::new(),
            exited: false,
            log: Vec::new(),
        }
    }
}

struct World {
    t0: Instant,
    now: Instant,
    etcd: Etcd,
    hosts: Vec<Host>,
    addrs: Vec<IpAddr>,
    /// Round trip to etcd.
    rtt: Duration,
    /// A request that gets no answer fails after this.
    timeout: Duration,
    /// How long one transaction takes etcd.
    txn_time: Duration,
    /// Each host's latest batch of tries: when asked, when answered.
    batches: BTreeMap<usize, (Instant, Instant)>,
    /// Transactions go unanswered while leases are renewed (the endpoint the transactions go
    /// to fails, or times out).
    txn_fails: bool,
    /// How long each hook phase takes.
    hook_time: Duration,
}

impl World {
    fn new(priorities: &[u8], n_addrs: u8) -> World {
        let t0 = Instant::now();
        let addrs: Vec<IpAddr> = (0..n_addrs).map(addr).collect();
        let hosts = priorities
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Host::running(Group::new(
                    t0,
                    GroupConfig {
                        name: format!("m{}", i + 1),
                        priority: *p,
                        lease_ttl: TTL,
                        preempt: false,
                        addrs: addrs.clone(),
                        announce_refresh: None,
                    },
                ))
            })
            .collect();
        let mut w = World {
            t0,
            now: t0,
            etcd: Etcd {
                quorum: true,
                ..Etcd::default()
            },
            hosts,
            addrs,
            rtt: ms(2),
            timeout: ms(500),
            txn_time: Duration::from_micros(1500),
            batches: BTreeMap::new(),
            txn_fails: false,
            hook_time: Duration::ZERO,
        };
        // The shell's first loop turn.
        for h in 0..w.hosts.len() {
            w.feed(h, GroupEvent::Tick);
        }
        w
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Feeds an event to host `h` and carries out its actions.
    fn feed(&mut self, h: usize, ev: GroupEvent) {
        if !self.hosts[h].running || self.hosts[h].exited {
            return;
        }
        let now = self.now;
        let actions = self.hosts[h].core.handle(now, ev);
        for a in actions {
            self.hosts[h].log.push((now - self.t0, a.clone()));
            self.act(h, a);
        }
        self.check();
    }

    fn ok(&self, h: usize) -> bool {
        self.hosts[h].reaches_etcd && self.etcd.quorum
    }

    fn act(&mut self, h: usize, a: GroupAction) {
        let now = self.now;
        let name = self.hosts[h].core.config().name.clone();
        let prio = self.hosts[h].core.config().priority;
        match a {
            GroupAction::GrantLease => {
                if self.ok(h) {
                    self.etcd.next_lease += 1;
                    let id = self.etcd.next_lease;
                    self.etcd.leases.insert(id, now + self.rtt / 2 + TTL);
                    self.hosts[h].inbox.push((
                        now + self.rtt,
                        GroupEvent::LeaseGranted { id, sent_at: now },
                    ));
                } else {
                    self.hosts[h]
                        .inbox
                        .push((now + self.timeout, GroupEvent::GrantFailed));
                }
            }
            GroupAction::Renew { lease } => {
                if self.ok(h) {
                    match self.etcd.leases.get_mut(&lease) {
                        Some(at) => {
                            *at = now + self.rtt / 2 + TTL;
                            self.hosts[h]
                                .inbox
                                .push((now + self.rtt, GroupEvent::RenewalAcked { sent_at: now }));
                        }
                        None => self.hosts[h]
                            .inbox
                            .push((now + self.rtt, GroupEvent::LeaseLost)),
                    }
                } else {
                    self.hosts[h]
                        .inbox
                        .push((now + self.timeout, GroupEvent::RenewalFailed));
                }
            }
            GroupAction::Register { lease } => {
                // Put only if absent, as the client does.
                let key = format!("members/{name}");
                if self.ok(h)
                    && self.etcd.leases.contains_key(&lease)
                    && !self.etcd.keys.contains_key(&key)
                {
                    self.etcd.revision += 1;
                    let create = self.etcd.revision;
                    self.etcd.keys.insert(
                        format!("members/{name}"),
                        Kv {
                            value: self.hosts[h].core.mode().key_value(prio),
                            lease,
                            create,
                        },
                    );
                    self.broadcast();
                }
            }
            GroupAction::Unregister { lease } => {
                if self.ok(h) {
                    let key = format!("members/{name}");
                    if self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                        self.etcd.keys.remove(&key);
                        self.etcd.revision += 1;
                        self.broadcast();
                    }
                }
            }
            GroupAction::Revoke { lease } => {
                if self.ok(h) {
                    self.etcd.leases.remove(&lease);
                    self.etcd.keys.retain(|_, kv| kv.lease != lease);
                    self.etcd.revision += 1;
                    self.broadcast();
                }
            }
            GroupAction::TryAcquire { addr, lease } => {
                if !self.ok(h) || self.txn_fails {
                    self.hosts[h]
                        .inbox
                        .push((now + self.timeout, GroupEvent::AcquireFailed { addr }));
                    return;
                }
                let key = format!("addrs/{addr}");
                let epoch = if self.etcd.keys.contains_key(&key)
                    || !self.etcd.leases.contains_key(&lease)
                {
                    None
                } else {
                    self.etcd.revision += 1;
                    let create = self.etcd.revision;
                    self.etcd.keys.insert(
                        key,
                        Kv {
                            value: name,
                            lease,
                            create,
                        },
                    );
                    Some(create)
                };
                // As the client makes them: the tries asked for at one instant go in one
                // batch transaction; batches go one after another.
                let at = match self.batches.get(&h) {
                    Some((asked, at)) if *asked == now => *at,
                    Some((_, last)) => (*last + self.txn_time).max(now + self.rtt + self.txn_time),
                    None => now + self.rtt + self.txn_time,
                };
                self.batches.insert(h, (now, at));
                self.hosts[h]
                    .inbox
                    .push((at, GroupEvent::Acquired { addr, epoch }));
                self.broadcast();
            }
            GroupAction::ClearStale { addr, epoch } => {
                if self.ok(h) {
                    let key = format!("addrs/{addr}");
                    if self
                        .etcd
                        .keys
                        .get(&key)
                        .is_some_and(|kv| kv.create == epoch)
                    {
                        self.etcd.keys.remove(&key);
                        self.etcd.revision += 1;
                        self.broadcast();
                    }
                }
            }
            GroupAction::GiveUp { addr, lease } => {
                if self.ok(h) {
                    let key = format!("addrs/{addr}");
                    if self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                        self.etcd.keys.remove(&key);
                        self.etcd.revision += 1;
                        self.broadcast();
                    }
                }
            }
            GroupAction::Probe { addrs } => {
                for a in addrs {
                    for (o, other) in self.hosts.iter().enumerate() {
                        if o != h && other.up && other.held.contains(&a) {
                            self.hosts[h].inbox.push((
                                now + ms(1),
                                GroupEvent::ProbeAnswer {
                                    addr: a,
                                    mac: [2, 0, 0, 0, 0, o as u8],
                                },
                            ));
                            break;
                        }
                    }
                }
            }
            GroupAction::RunHooks { phase, addr, .. } => self.hosts[h].inbox.push((
                now + self.hook_time,
                GroupEvent::HooksDone {
                    addr,
                    phase,
                    ok: true,
                },
            )),
            GroupAction::Add { addr } => {
                self.hosts[h].held.insert(addr);
            }
            GroupAction::Remove { addr } => {
                self.hosts[h].held.remove(&addr);
            }
            GroupAction::ModeChanged(mode) => {
                let lease = match self.hosts[h].core.lease() {
                    Lease::Held { id, .. } => id,
                    _ => 0,
                };
                let key = format!("members/{name}");
                if self.ok(h) && self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                    if let Some(kv) = self.etcd.keys.get_mut(&key) {
                        kv.value = mode.key_value(prio);
                    }
                    self.etcd.revision += 1;
                    self.broadcast();
                }
            }
            GroupAction::Publish { lease } => {
                let key = format!("members/{name}");
                if self.ok(h) && self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                    let value = self.hosts[h].core.mode().key_value(prio);
                    if let Some(kv) = self.etcd.keys.get_mut(&key) {
                        kv.value = value;
                    }
                    self.etcd.revision += 1;
                    self.broadcast();
                }
            }
            GroupAction::Answer(_) => {}
            GroupAction::Exit => self.hosts[h].exited = true,
            GroupAction::Announce { .. }
            | GroupAction::Transition { .. }
            | GroupAction::Notify(_) => {}
        }
    }

    /// The watch: every member that reaches etcd gets the view after a change.
    fn broadcast(&mut self) {
        let view = self.etcd.view();
        let now = self.now;
        for (i, host) in self.hosts.iter_mut().enumerate() {
            let _ = i;
            if host.reaches_etcd && self.etcd.quorum {
                host.inbox
                    .push((now + self.rtt / 2, GroupEvent::View(view.clone())));
            }
        }
    }

    /// Never two hosts that can answer holding one address.
    fn check(&self) {
        for a in &self.addrs {
            let holders: Vec<usize> = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| h.up && h.held.contains(a))
                .map(|(i, _)| i)
                .collect();
            assert!(
                holders.len() <= 1,
                "{a} on hosts {holders:?} at {:?}",
                self.elapsed()
            );
        }
    }

    /// Runs to `t` (since start), delivering inbox events and ticking at deadlines.
    fn run_until(&mut self, t: Duration) {
        let end = self.t0 + t;
        loop {
            // The earliest of: an inbox event, a core deadline, a lease expiry in etcd.
            let mut next: Option<(Instant, usize, Option<usize>)> = None;
            for (h, host) in self.hosts.iter().enumerate() {
                if !host.running || host.exited {
                    continue;
                }
                for (k, (at, _)) in host.inbox.iter().enumerate() {
                    if next.is_none_or(|(n, _, _)| *at < n) {
                        next = Some((*at, h, Some(k)));
                    }
                }
                if let Some(d) = host.core.next_deadline() {
                    if next.is_none_or(|(n, _, _)| d < n) {
                        next = Some((d, h, None));
                    }
                }
            }
            let expiry = self.etcd.leases.values().min().copied();
            let (at, h, k) = match (next, expiry) {
                (Some(n), Some(e)) if e < n.0 => (e, usize::MAX, None),
                (None, Some(e)) => (e, usize::MAX, None),
                (Some(n), _) => n,
                (None, None) => break,
            };
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            if h == usize::MAX {
                if self.etcd.quorum && self.etcd.expire(self.now) {
                    self.broadcast();
                } else if !self.etcd.quorum {
                    // Without a quorum leases are not expired (etcd extends them on the next
                    // leader's election).
                    for at in self.etcd.leases.values_mut() {
                        *at += TTL;
                    }
                }
                continue;
            }
            match k {
                Some(k) => {
                    let (_, ev) = self.hosts[h].inbox.remove(k);
                    self.feed(h, ev);
                }
                None => self.feed(h, GroupEvent::Tick),
            }
        }
        self.now = end;
    }

    fn holders(&self, a: IpAddr) -> Vec<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.held.contains(&a))
            .map(|(i, _)| i)
            .collect()
    }

    /// The host crashes: process and links gone at once.
    fn crash(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.running = false;
        host.up = false;
        host.reaches_etcd = false;
        host.inbox.clear();
        host.held.clear();
    }
}

#[test]
fn the_highest_priority_acquires_everything_nobody_holds() {
    let mut w = World::new(&[100, 200, 150], 3);
    w.run_until(ms(2000));
    for a in w.addrs.clone() {
        assert_eq!(w.holders(a), vec![1], "{a}");
    }
    // The epoch is the key's create revision, and hooks get it.
    let epochs: Vec<i64> = w.hosts[1]
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            GroupAction::RunHooks {
                phase: HookPhase::PostAcq,
                epoch,
                ..
            } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 3);
    assert!(epochs.iter().all(|e| *e > 0));
}

#[test]
fn a_crashed_holder_is_replaced_by_the_next_priority_within_ttl_and_a_step() {
    let mut w = World::new(&[100, 200, 150], 2);
    w.run_until(ms(2000));
    let crash = w.elapsed();
    w.crash(1);
    w.run_until(crash + TTL + ms(1000));
    for a in w.addrs.clone() {
        assert_eq!(w.holders(a), vec![2], "{a}: the next priority takes it");
    }
    let took = w.hosts[2]
        .log
        .iter()
        .find(|(t, a)| *t > crash && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t - crash)
        .expect("an add");
    // The lease runs out at most a TTL after the crash, then the probe window.
    assert!(took <= TTL + GROUP_PROBE_WINDOW + ms(50), "{took:?}");
}

#[test]
fn a_holder_cut_off_from_etcd_fences_itself_before_anyone_can_acquire() {
    let mut w = World::new(&[200, 100], 2);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // Cut off from etcd, but still up on the LAN: it must drop the addresses before the
    // other member can have them (check() asserts it at every step).
    let cut = w.elapsed();
    w.hosts[0].reaches_etcd = false;
    w.run_until(cut + TTL * 3);
    for a in w.addrs.clone() {
        assert_eq!(w.holders(a), vec![1], "{a}");
    }
    let fenced = w.hosts[0]
        .log
        .iter()
        .find(|(t, a)| *t > cut && matches!(a, GroupAction::Notify(GroupNotice::Fenced { .. })))
        .map(|(t, _)| *t)
        .expect("fenced");
    let taken = w.hosts[1]
        .log
        .iter()
        .find(|(t, a)| *t > cut && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t)
        .expect("taken");
    assert!(fenced < taken, "fenced at {fenced:?}, taken at {taken:?}");
    // Back in touch: it gets a new lease, and holds nothing (no preemption).
    w.hosts[0].reaches_etcd = true;
    w.run_until(w.elapsed() + TTL * 2);
    assert!(matches!(w.hosts[0].core.lease(), Lease::Held { .. }));
    assert!(w.hosts[0].held.is_empty());
}

#[test]
fn a_stalled_holder_drops_its_addresses_before_acting_and_the_new_one_waits_for_that() {
    let mut w = World::new(&[200, 100], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // SIGSTOP: the process stops, its kernel still answers for the address.
    let stop = w.elapsed();
    w.hosts[0].running = false;
    w.run_until(stop + TTL + ms(2000));
    // The other member won the key, but the address still answers: a conflict, not an add.
    assert!(
        w.hosts[1].held.is_empty(),
        "added while the stalled holder answers"
    );
    assert!(matches!(
        w.hosts[1].core.addrs()[&addr(0)],
        AddrState::Conflict { .. }
    ));
    // SIGCONT: the first thing it does is fence; then the other adds.
    w.hosts[0].running = true;
    w.feed(0, GroupEvent::Tick);
    assert!(
        w.hosts[0].held.is_empty(),
        "it acted before dropping the address"
    );
    w.run_until(w.elapsed() + ms(1000));
    assert_eq!(w.holders(addr(0)), vec![1]);
}

#[test]
fn without_a_quorum_nobody_acquires_and_the_holder_fences_at_its_deadline() {
    let mut w = World::new(&[200, 150, 100], 1);
    w.run_until(ms(2000));
    let lost = w.elapsed();
    w.etcd.quorum = false;
    w.run_until(lost + TTL * 3);
    assert!(w.holders(addr(0)).is_empty(), "held without a quorum");
    let fenced_at = w.hosts[0]
        .log
        .iter()
        .find(|(t, a)| *t > lost && matches!(a, GroupAction::Notify(GroupNotice::Fenced { .. })))
        .map(|(t, _)| *t - lost)
        .expect("fenced");
    assert!(fenced_at <= TTL, "{fenced_at:?}");
    // The quorum returns: the group recovers.
    w.etcd.quorum = true;
    for l in w.etcd.leases.values_mut() {
        *l = w.now + TTL;
    }
    w.run_until(w.elapsed() + TTL * 3);
    assert_eq!(w.holders(addr(0)).len(), 1);
}

#[test]
fn shutdown_releases_revokes_and_the_next_takes_over_within_a_step() {
    let mut w = World::new(&[200, 100], 2);
    w.run_until(ms(2000));
    let stop = w.elapsed();
    w.feed(0, GroupEvent::Shutdown);
    w.run_until(stop + ms(1000));
    assert!(w.hosts[0].exited);
    for a in w.addrs.clone() {
        assert_eq!(w.holders(a), vec![1]);
    }
    let took = w.hosts[1]
        .log
        .iter()
        .filter(|(t, a)| *t > stop && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t - stop)
        .max()
        .expect("added");
    assert!(took < ms(400), "{took:?}");
}

#[test]
fn preemption_gives_the_addresses_back_to_a_returning_better_member_only_when_on() {
    for preempt in [false, true] {
        let mut w = World::new(&[200, 100], 1);
        for h in &mut w.hosts {
            h.core.config.preempt = preempt;
        }
        w.run_until(ms(2000));
        w.crash(0);
        w.run_until(ms(2000) + TTL * 2);
        assert_eq!(w.holders(addr(0)), vec![1]);
        // The better member returns.
        let mut back = Group::new(w.now, w.hosts[0].core.config.clone());
        std::mem::swap(&mut w.hosts[0].core, &mut back);
        let h0 = &mut w.hosts[0];
        h0.running = true;
        h0.up = true;
        h0.reaches_etcd = true;
        w.feed(0, GroupEvent::Tick);
        w.run_until(w.elapsed() + TTL * 2);
        let want = if preempt { vec![0] } else { vec![1] };
        assert_eq!(w.holders(addr(0)), want, "preempt {preempt}");
    }
}

#[test]
fn a_hundred_addresses_move_together() {
    let mut w = World::new(&[200, 100], 100);
    w.run_until(ms(2000));
    let crash = w.elapsed();
    w.crash(0);
    w.run_until(crash + TTL + ms(1000));
    let adds: Vec<Duration> = w.hosts[1]
        .log
        .iter()
        .filter(|(t, a)| *t > crash && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(adds.len(), 100);
    let spread = *adds.iter().max().unwrap() - *adds.iter().min().unwrap();
    assert!(spread <= ms(100), "{spread:?}");
}

#[test]
fn a_hundred_addresses_with_slow_hooks_move_in_about_the_time_of_a_few() {
    let mut w = World::new(&[200, 100], 100);
    w.hook_time = ms(50);
    w.run_until(ms(4000));
    assert_eq!(w.holders(addr(99)), vec![0]);
    let crash = w.elapsed();
    w.crash(0);
    w.run_until(crash + TTL + ms(2000));
    let adds: Vec<Duration> = w.hosts[1]
        .log
        .iter()
        .filter(|(t, a)| *t > crash && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t - crash)
        .collect();
    assert_eq!(adds.len(), 100);
    // Test and PreAcq before each add, 50 ms each, MAX_PARALLEL_HOOKS at a time.
    let last = *adds.iter().max().unwrap();
    assert!(last <= TTL + ms(1000), "{last:?}");
    // Never more than the bound at once.
    let mut running = 0usize;
    let mut most = 0usize;
    let mut events: Vec<(Duration, i32)> = Vec::new();
    for (t, a) in &w.hosts[1].log {
        if let GroupAction::RunHooks { .. } = a {
            events.push((*t, 1));
            events.push((*t + w.hook_time, -1));
        }
    }
    events.sort();
    for (_, d) in events {
        running = (running as i32 + d) as usize;
        most = most.max(running);
    }
    assert!(most <= MAX_PARALLEL_HOOKS && most > 1, "{most}");
}

#[test]
fn a_holder_whose_link_goes_down_gives_its_addresses_up_and_takes_none_until_it_is_back() {
    let mut w = World::new(&[200, 100], 2);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    let cut = w.elapsed();
    // Its service link dies; it still reaches etcd over another.
    w.hosts[0].up = false;
    let addrs = w.addrs.clone();
    w.feed(
        0,
        GroupEvent::LinksDown {
            addrs: addrs.clone(),
        },
    );
    assert!(w.hosts[0].held.is_empty(), "removed at once");
    w.run_until(cut + ms(1000));
    for a in &addrs {
        assert_eq!(
            w.holders(*a),
            vec![1],
            "{a}: the member whose link works has it"
        );
    }
    let took = w.hosts[1]
        .log
        .iter()
        .find(|(t, a)| *t > cut && matches!(a, GroupAction::Add { .. }))
        .map(|(t, _)| *t - cut)
        .expect("an add");
    // The key goes at once; the next member's step and probe window follow.
    assert!(
        took <= priority_step(TTL) + GROUP_PROBE_WINDOW + ms(100),
        "{took:?}"
    );
    assert!(w.hosts[0].log.iter().any(|(t, a)| *t >= cut
        && matches!(
            a,
            GroupAction::RunHooks {
                phase: HookPhase::PostRel,
                reason: GroupReason::LinkDown,
                ..
            }
        )));
    // The holder dies too: the one whose link is down acquires nothing.
    w.crash(1);
    w.run_until(cut + TTL * 3);
    assert!(w.hosts[0].held.is_empty());
    // Its link is back: it takes them.
    w.hosts[0].up = true;
    w.feed(0, GroupEvent::LinksDown { addrs: Vec::new() });
    w.run_until(cut + TTL * 3 + ms(1000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    assert!(w.hosts[0]
        .log
        .iter()
        .any(|(_, a)| *a == GroupAction::Notify(GroupNotice::LinksUp)));
}

#[test]
fn a_restarted_member_revokes_the_lease_of_its_previous_life() {
    let mut w = World::new(&[200, 100], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    let old = match w.hosts[0].core.lease() {
        Lease::Held { id, .. } => id,
        other => panic!("{other:?}"),
    };
    // failoverd alone is killed and started again at once: the new process starts with
    // nothing on the interface (it removes what it finds) and a new lease; the old lease's
    // key still names it.
    let restart = w.elapsed();
    let mut fresh = Group::new(w.now, w.hosts[0].core.config.clone());
    // The lease the old process recorded in its state directory.
    fresh.previous_life(old);
    std::mem::swap(&mut w.hosts[0].core, &mut fresh);
    w.hosts[0].held.clear();
    w.hosts[0].inbox.clear();
    w.feed(0, GroupEvent::Tick);
    // Its watch starts with a read of the group.
    w.broadcast();
    w.run_until(restart + TTL / 2);
    let revoked = w.hosts[0]
        .log
        .iter()
        .any(|(t, a)| *t > restart && *a == GroupAction::Revoke { lease: old });
    assert!(revoked, "the old lease is not revoked");
    // Well before the old lease would have expired, the address is held again.
    w.run_until(restart + TTL - ms(500));
    assert_eq!(w.holders(addr(0)).len(), 1);
}

#[test]
fn a_restarted_member_that_knows_no_previous_lease_waits_for_it_and_revokes_nothing() {
    let mut w = World::new(&[200, 100], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // Its record was lost: the new process cannot tell its previous life's key in its name
    // from another failoverd's, so it revokes nothing and joins once that key is gone (the
    // old lease expires); the address is held again within a TTL and a few steps.
    let restart = w.elapsed();
    let fresh = Group::new(w.now, w.hosts[0].core.config.clone());
    w.hosts[0].core = fresh;
    w.hosts[0].held.clear();
    w.hosts[0].inbox.clear();
    w.feed(0, GroupEvent::Tick);
    w.broadcast();
    w.run_until(restart + TTL * 2);
    assert!(!w.hosts[0]
        .log
        .iter()
        .any(|(t, a)| *t > restart && matches!(a, GroupAction::Revoke { .. })));
    assert_eq!(w.holders(addr(0)).len(), 1);
    assert!(matches!(w.hosts[0].core.lease(), Lease::Held { .. }));
}

#[test]
fn two_members_with_one_name_never_revoke_each_other_and_the_second_does_not_join() {
    let mut w = World::new(&[200, 100], 2);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // A clone of m1 (same name, a host of its own) starts.
    let clone_at = w.elapsed();
    let config = w.hosts[0].core.config.clone();
    w.hosts.push(Host::running(Group::new(w.now, config)));
    w.feed(2, GroupEvent::Tick);
    // Its watch starts with a read of the group, before and after it has a lease.
    w.broadcast();
    w.run_until(clone_at + ms(100));
    w.broadcast();
    w.run_until(clone_at + TTL * 4);
    for h in [0, 2] {
        assert!(
            !w.hosts[h]
                .log
                .iter()
                .any(|(_, a)| matches!(a, GroupAction::Revoke { .. })),
            "host {h} revoked a lease"
        );
    }
    // m1 kept everything all along, the clone holds nothing and has no key of its own.
    assert_eq!(w.holders(addr(0)), vec![0]);
    assert_eq!(w.holders(addr(1)), vec![0]);
    assert!(w.hosts[2].held.is_empty());
    assert!(!w.hosts[0].log.iter().any(
        |(t, a)| *t > clone_at && matches!(a, GroupAction::Notify(GroupNotice::Fenced { .. }))
    ));
    // When m1 dies, its key goes with its lease and the clone joins under that name; the
    // addresses are held again by one member (m2, already joined, is first to see them free).
    w.crash(0);
    let crashed = w.elapsed();
    w.run_until(crashed + TTL * 3);
    assert_eq!(w.holders(addr(0)).len(), 1);
    let Lease::Held { id, .. } = w.hosts[2].core.lease() else {
        panic!("the clone has no lease");
    };
    assert_eq!(w.etcd.keys["members/m1"].lease, id);
}

#[test]
fn an_address_key_put_by_hand_is_no_claim_and_is_replaced() {
    let mut w = World::new(&[200, 100], 2);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // An operator "moves" addr 1 with etcdctl: a key naming m2, under no lease, overwriting
    // m1's (etcd keeps the key's create revision on a put).
    let key = format!("addrs/{}", addr(1));
    let create = w.etcd.keys[&key].create;
    w.etcd.revision += 1;
    w.etcd.keys.insert(
        key.clone(),
        Kv {
            value: "m2".into(),
            lease: 0,
            create,
        },
    );
    let put_at = w.elapsed();
    w.broadcast();
    // m1 no longer has a claim: it removes the address at once; a member then deletes the
    // stale key and acquires as usual, never two holders on the way (`check` runs at every
    // step), and the address is held again within a second.
    w.run_until(put_at + ms(1000));
    assert_eq!(w.holders(addr(1)).len(), 1, "{:?}", w.etcd.keys.get(&key));
    let kv = &w.etcd.keys[&key];
    assert_ne!(kv.lease, 0);
    assert!(kv.create > create, "a new key, a new epoch");
    // Nobody touches the key of an address that is properly held.
    assert_eq!(w.holders(addr(0)), vec![0]);
    // A key under a live member's lease naming another member is no claim either.
    let lease_m2 = w.etcd.keys["members/m2"].lease;
    let k0 = format!("addrs/{}", addr(0));
    let c0 = w.etcd.keys[&k0].create;
    w.etcd.revision += 1;
    w.etcd.keys.insert(
        k0.clone(),
        Kv {
            value: "m9".into(),
            lease: lease_m2,
            create: c0,
        },
    );
    let t = w.elapsed();
    w.broadcast();
    w.run_until(t + ms(1000));
    assert_eq!(w.holders(addr(0)).len(), 1);
    assert!(w.etcd.keys[&k0].create > c0);
}

/// Drives one member by hand up to `until`, acknowledging renewals at once and answering
/// hooks at once; its actions.
fn drive(
    g: &mut Group,
    from: Instant,
    until: Instant,
    events: &mut Vec<(Instant, GroupEvent)>,
) -> Vec<(Instant, GroupAction)> {
    let mut log = Vec::new();
    let mut now = from;
    loop {
        events.sort_by_key(|(t, _)| *t);
        let next_event = events.first().map(|(t, _)| *t);
        let next = [g.next_deadline(), next_event].into_iter().flatten().min();
        let Some(next) = next.filter(|t| *t <= until) else {
            return log;
        };
        now = now.max(next);
        let ev = match events.first() {
            Some((t, _)) if *t <= now => events.remove(0).1,
            _ => GroupEvent::Tick,
        };
        for a in g.handle(now, ev) {
            match &a {
                GroupAction::Renew { .. } => {
                    events.push((now + ms(1), GroupEvent::RenewalAcked { sent_at: now }))
                }
                GroupAction::RunHooks { phase, addr, .. } => events.push((
                    now,
                    GroupEvent::HooksDone {
                        addr: *addr,
                        phase: *phase,
                        ok: true,
                    },
                )),
                _ => {}
            }
            log.push((now, a));
        }
    }
}

#[test]
fn an_address_won_while_others_are_probed_is_probed_and_added_too() {
    let t0 = Instant::now();
    let (a0, a1) = (addr(0), addr(1));
    let mut g = Group::new(
        t0,
        GroupConfig {
            name: "m1".into(),
            priority: 200,
            lease_ttl: TTL,
            preempt: false,
            addrs: vec![a0, a1],
            announce_refresh: None,
        },
    );
    let view = View {
        revision: 2,
        members: vec![Member {
            name: "m1".into(),
            priority: 200,
            lease: 7,
            mode: MemberMode::Active,
        }],
        holders: BTreeMap::new(),
    };
    let mut events = vec![
        (t0 + ms(1), GroupEvent::LeaseGranted { id: 7, sent_at: t0 }),
        (t0 + ms(2), GroupEvent::View(view)),
    ];
    let log = drive(&mut g, t0, t0 + TTL / 3 + ms(20), &mut events);
    let tried: Vec<Instant> = log
        .iter()
        .filter(|(_, a)| matches!(a, GroupAction::TryAcquire { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(tried.len(), 2, "{log:?}");
    // a0 is won at once; a1 110 ms later: after a0's third probe, before a0 is decided.
    let won = tried[0] + ms(3);
    let mut events = vec![
        (
            won,
            GroupEvent::Acquired {
                addr: a0,
                epoch: Some(3),
            },
        ),
        (
            won + ms(110),
            GroupEvent::Acquired {
                addr: a1,
                epoch: Some(4),
            },
        ),
    ];
    let log = drive(&mut g, tried[0], won + ms(600), &mut events);
    for a in [a0, a1] {
        assert!(
            matches!(g.addrs()[&a], AddrState::Held { .. }),
            "{a}: {:?}\n{log:?}",
            g.addrs()[&a]
        );
        // Three probes each, whenever it joined.
        let probes = log
            .iter()
            .filter(|(_, x)| matches!(x, GroupAction::Probe { addrs } if addrs.contains(&a)))
            .count();
        assert_eq!(probes, PROBES as usize, "{a}");
    }
}

#[test]
fn an_unanswered_acquisition_is_retried_after_a_while_not_in_a_loop() {
    let mut w = World::new(&[200], 1);
    // Transactions fail at once (connection refused) while the lease is renewed.
    w.timeout = ms(1);
    w.txn_fails = true;
    let from = w.elapsed();
    w.run_until(from + ms(3000));
    let tries = w.hosts[0]
        .log
        .iter()
        .filter(|(_, a)| matches!(a, GroupAction::TryAcquire { .. }))
        .count();
    let most = 3000 / (TTL / ACQUIRE_BACKOFF_DIVISOR).as_millis() as usize + 1;
    assert!(tries >= 1 && tries <= most, "{tries} tries in 3 s");
    assert!(matches!(w.hosts[0].core.lease(), Lease::Held { .. }));
    // Once etcd answers again, the address is acquired.
    w.txn_fails = false;
    w.run_until(from + ms(4000));
    assert_eq!(w.holders(addr(0)), vec![0]);
}

#[test]
fn with_preemption_the_holder_waits_for_the_better_member_so_the_address_moves_once() {
    let mut w = World::new(&[200, 150, 100], 1);
    for h in &mut w.hosts {
        h.core.config.preempt = true;
    }
    w.run_until(ms(2000));
    w.crash(0);
    w.run_until(ms(2000) + TTL * 2);
    assert_eq!(w.holders(addr(0)), vec![1]);
    // The best member returns: the address must go from m2 to m1, never through m3.
    let back = w.elapsed();
    let mut fresh = Group::new(w.now, w.hosts[0].core.config.clone());
    std::mem::swap(&mut w.hosts[0].core, &mut fresh);
    let h0 = &mut w.hosts[0];
    h0.running = true;
    h0.up = true;
    h0.reaches_etcd = true;
    w.feed(0, GroupEvent::Tick);
    w.run_until(back + TTL * 3);
    assert_eq!(w.holders(addr(0)), vec![0]);
    let m3_added = w.hosts[2]
        .log
        .iter()
        .any(|(t, a)| *t > back && matches!(a, GroupAction::Add { .. }));
    assert!(
        !m3_added,
        "the address went through m3 on its way back to m1"
    );
}

#[test]
fn random_faults_never_make_two_holders() {
    use proptest::prelude::*;
    let strategy = proptest::collection::vec((0u8..8, 0usize..3, 50u64..3000), 1..40);
    let cases = std::env::var("IPFO_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120);
    proptest!(ProptestConfig::with_cases(cases), |(steps in strategy)| {
        let mut w = World::new(&[200, 150, 100], 3);
        w.run_until(ms(1500));
        for (kind, h, dt) in steps {
            let t = w.elapsed() + ms(dt);
            match kind {
                0 => w.crash(h),
                // A stall, or its end (of a process on a host that is up).
                1 if w.hosts[h].up => w.hosts[h].running = !w.hosts[h].running,
                2 => w.hosts[h].reaches_etcd = !w.hosts[h].reaches_etcd, // cut from etcd
                3 => w.etcd.quorum = !w.etcd.quorum,
                4 if !w.hosts[h].running && !w.hosts[h].up => {
                    // The crashed host comes back, as a new process.
                    let cfg = w.hosts[h].core.config.clone();
                    w.hosts[h].core = Group::new(w.now, cfg);
                    // A reboot: nothing on the interfaces.
                    w.hosts[h].held.clear();
                    w.hosts[h].running = true;
                    w.hosts[h].up = true;
                    w.hosts[h].reaches_etcd = true;
                    w.hosts[h].exited = false;
                    w.feed(h, GroupEvent::Tick);
                }
                5 => w.feed(h, GroupEvent::Shutdown),
                _ => {}
            }
            // check() runs at every step inside run_until: the invariant is asserted there.
            w.run_until(t);
        }
    });
}

#[test]
fn held_addresses_are_announced_again_after_a_stall_and_by_the_refresh() {
    let t0 = Instant::now();
    let a0 = addr(0);
    // A long lease, so that a stall of a few seconds does not fence the member.
    let ttl = Duration::from_secs(30);
    let mut g = Group::new(
        t0,
        GroupConfig {
            name: "m1".into(),
            priority: 200,
            lease_ttl: ttl,
            preempt: false,
            addrs: vec![a0],
            announce_refresh: None,
        },
    );
    let view = View {
        revision: 2,
        members: vec![Member {
            name: "m1".into(),
            priority: 200,
            lease: 7,
            mode: MemberMode::Active,
        }],
        holders: BTreeMap::new(),
    };
    let mut events = vec![
        (t0 + ms(1), GroupEvent::LeaseGranted { id: 7, sent_at: t0 }),
        (t0 + ms(2), GroupEvent::View(view)),
    ];
    let log = drive(&mut g, t0, t0 + ttl / 3 + ms(20), &mut events);
    let tried = log
        .iter()
        .find(|(_, a)| matches!(a, GroupAction::TryAcquire { .. }))
        .map(|(t, _)| *t)
        .expect("a try");
    let mut events = vec![(
        tried + ms(3),
        GroupEvent::Acquired {
            addr: a0,
            epoch: Some(3),
        },
    )];
    let held_at = tried + ms(600);
    let log = drive(&mut g, tried, held_at, &mut events);
    assert!(matches!(g.addrs()[&a0], AddrState::Held { .. }), "{log:?}");
    let announces = |log: &[(Instant, GroupAction)]| {
        log.iter()
            .filter(|(_, a)| *a == GroupAction::Announce { addr: a0 })
            .count()
    };
    assert_eq!(announces(&log), 1, "announced when added");
    // Held and turning at least once a second: no announcement without a refresh.
    assert!(g.next_deadline().is_some_and(|d| d <= held_at + STALL / 2));
    let quiet_end = held_at + Duration::from_secs(10);
    let log = drive(&mut g, held_at, quiet_end, &mut Vec::new());
    assert_eq!(announces(&log), 0, "{log:?}");
    // Stopped for 5 s (within its lease): announced again at once.
    let after_stall = quiet_end + Duration::from_secs(5);
    let out = g.handle(after_stall, GroupEvent::Tick);
    assert!(out.contains(&GroupAction::Announce { addr: a0 }), "{out:?}");
    assert!(matches!(g.addrs()[&a0], AddrState::Held { .. }));
    // With a refresh of 5 s, every 5 s while held.
    g.set_announce_refresh(Some(Duration::from_secs(5)));
    let log = drive(
        &mut g,
        after_stall,
        after_stall + Duration::from_secs(21),
        &mut Vec::new(),
    );
    let refreshes = announces(&log);
    assert!((3..=5).contains(&refreshes), "{refreshes}: {log:?}");
}

/// The epochs host `h` handed its hooks after `since`.
fn hook_epochs(w: &World, h: usize, since: Duration) -> Vec<i64> {
    w.hosts[h]
        .log
        .iter()
        .filter(|(t, _)| *t > since)
        .filter_map(|(_, a)| match a {
            GroupAction::RunHooks { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .collect()
}

/// The answers a host's core gave to commands, in order.
fn answers(w: &World, h: usize) -> Vec<Result<String, String>> {
    w.hosts[h]
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            GroupAction::Answer(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// etcd restored from an older snapshot: its revision goes back. The members take the
/// restored keys as the truth (a view at a lower revision than they have seen is no longer
/// ignored for ever), the group fails over again, and the epochs hooks get keep growing.
#[test]
fn after_a_restore_of_etcd_the_group_fails_over_and_epochs_keep_growing() {
    let mut w = World::new(&[200, 150, 100], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    let snapshot = w.etcd.clone();
    // The holder crashes; m2 takes over, at a later epoch.
    let crash = w.elapsed();
    w.crash(0);
    w.run_until(crash + TTL + ms(1000));
    assert_eq!(w.holders(addr(0)), vec![1]);
    let before: i64 = (0..3)
        .flat_map(|h| hook_epochs(&w, h, Duration::ZERO))
        .max()
        .expect("hooks ran");
    assert!(before > snapshot.revision);
    // Some churn moves the revision further on.
    for _ in 0..20 {
        w.etcd.revision += 1;
    }
    w.broadcast();
    w.run_until(w.elapsed() + ms(100));
    // etcd is restored from the snapshot: m1's key holds the address again, under its old
    // lease (restored leases live a TTL from the restart: a new leader extends them).
    let restore = w.elapsed();
    w.etcd = snapshot;
    let now = w.now;
    for at in w.etcd.leases.values_mut() {
        *at = now + TTL;
    }
    let view = w.etcd.view();
    for h in 1..3 {
        w.hosts[h]
            .inbox
            .push((now + ms(1), GroupEvent::Restored(view.clone())));
    }
    // m2 gives up what the restored keys say it does not hold, at once.
    w.run_until(restore + ms(10));
    assert!(w.holders(addr(0)).is_empty(), "{:?}", w.holders(addr(0)));
    // m1 is dead: its restored lease runs out, and the best survivor takes the address.
    w.run_until(restore + TTL + ms(1500));
    assert_eq!(w.holders(addr(0)), vec![1], "a failover after the restore");
    let after = hook_epochs(&w, 1, restore + ms(10));
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|e| *e > before),
        "epochs {after:?} after the restore, {before} before"
    );
    // And the next crash moves it again, to m3, with a greater epoch still.
    let crash = w.elapsed();
    w.crash(1);
    w.run_until(crash + TTL + ms(1000));
    assert_eq!(w.holders(addr(0)), vec![2]);
    let last = hook_epochs(&w, 2, crash);
    assert!(last.iter().all(|e| *e > before), "{last:?}");
}

/// Without a restore notice, a view older than the one a member has is still ignored.
#[test]
fn an_older_view_alone_is_ignored() {
    let mut w = World::new(&[200, 150], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    let revision = w.hosts[1].core.view().revision;
    let mut stale = w.etcd.view();
    stale.revision = revision - 1;
    stale.holders.clear();
    w.feed(1, GroupEvent::View(stale));
    assert_eq!(w.hosts[1].core.view().revision, revision);
    assert_eq!(w.holders(addr(0)), vec![0]);
}

#[test]
fn a_drained_member_hands_everything_on_takes_nothing_and_is_not_preempted_to() {
    let mut w = World::new(&[200, 150, 100], 2);
    for h in &mut w.hosts {
        h.core.config.preempt = true;
    }
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    assert_eq!(w.holders(addr(1)), vec![0]);
    let drained = w.elapsed();
    w.feed(0, GroupEvent::Command(GroupCommand::Drain));
    assert!(answers(&w, 0)[0]
        .as_ref()
        .is_ok_and(|m| m.contains("draining")));
    // Both go to m2 (the next priority) within a step and a probe window; never two holders.
    w.run_until(drained + ms(600));
    assert_eq!(w.holders(addr(0)), vec![1]);
    assert_eq!(w.holders(addr(1)), vec![1]);
    let reasons: Vec<GroupReason> = w.hosts[0]
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            GroupAction::Notify(GroupNotice::Released { reason, .. }) => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![GroupReason::Drained, GroupReason::Drained]);
    // The others see it drained, so that m2 does not hand them back (preemption is on).
    assert_eq!(
        w.etcd
            .view()
            .members
            .iter()
            .find(|m| m.name == "m1")
            .map(|m| m.mode),
        Some(MemberMode::Drained)
    );
    w.run_until(drained + TTL * 3);
    assert_eq!(w.holders(addr(0)), vec![1]);
    // m2 crashes: m3 takes over, the drained m1 still takes nothing.
    w.crash(1);
    let crashed = w.elapsed();
    w.run_until(crashed + TTL * 2);
    assert_eq!(w.holders(addr(0)), vec![2]);
    assert!(w.hosts[0].held.is_empty());
    // Resumed, m1 is the best live member again and, with preemption, gets them back.
    let resumed = w.elapsed();
    w.feed(0, GroupEvent::Command(GroupCommand::Resume));
    assert!(answers(&w, 0)[1]
        .as_ref()
        .is_ok_and(|m| m.contains("resumed")));
    w.run_until(resumed + TTL * 2);
    assert_eq!(w.holders(addr(0)), vec![0]);
    assert_eq!(w.holders(addr(1)), vec![0]);
}

#[test]
fn a_paused_member_keeps_what_it_holds_takes_nothing_new_and_the_pause_runs_out() {
    let mut w = World::new(&[200, 150, 100], 1);
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // m2, next in line, is paused for two TTLs; then the holder crashes.
    let paused = w.elapsed();
    let until = w.now + TTL * 2;
    w.feed(
        1,
        GroupEvent::Command(GroupCommand::Pause { until: Some(until) }),
    );
    assert!(answers(&w, 1)[0]
        .as_ref()
        .is_ok_and(|m| m.contains("paused")));
    w.crash(0);
    // m3 takes over, without waiting for the paused m2's turn.
    w.run_until(paused + TTL + ms(300));
    assert_eq!(w.holders(addr(0)), vec![2]);
    // A paused holder keeps what it holds: pause m3, and it still holds after a while.
    w.feed(2, GroupEvent::Command(GroupCommand::Pause { until: None }));
    w.run_until(paused + TTL * 2 - ms(100));
    assert_eq!(w.holders(addr(0)), vec![2]);
    assert_eq!(w.hosts[1].core.mode(), MemberMode::Paused);
    // m2's pause ran out by itself: it is live again, and says so in its key.
    w.run_until(paused + TTL * 2 + ms(100));
    assert_eq!(w.hosts[1].core.mode(), MemberMode::Active);
    assert_eq!(
        w.etcd
            .view()
            .members
            .iter()
            .find(|m| m.name == "m2")
            .map(|m| m.mode),
        Some(MemberMode::Active)
    );
    // Drain refuses nothing, pause on a drained member is refused.
    w.feed(2, GroupEvent::Command(GroupCommand::Drain));
    w.feed(2, GroupEvent::Command(GroupCommand::Pause { until: None }));
    let a = answers(&w, 2);
    assert!(a[1].is_ok() && a[2].is_err(), "{a:?}");
    // m3 drained: the address goes to m2, live again.
    let t = w.elapsed();
    w.run_until(t + ms(800));
    assert_eq!(w.holders(addr(0)), vec![1]);
}

#[test]
fn a_priority_changed_on_sighup_is_published_and_preemption_follows_it() {
    let mut w = World::new(&[200, 150, 100], 1);
    for h in &mut w.hosts {
        h.core.config.preempt = true;
    }
    w.run_until(ms(2000));
    assert_eq!(w.holders(addr(0)), vec![0]);
    // m3 becomes the best: published at once, and the address moves to it, never two holders.
    let t = w.elapsed();
    w.feed(2, GroupEvent::PriorityChanged(250));
    let m3 = w.etcd.view().members.into_iter().find(|m| m.name == "m3");
    assert_eq!(m3.map(|m| m.priority), Some(250));
    w.run_until(t + TTL * 2);
    assert_eq!(w.holders(addr(0)), vec![2]);
}
