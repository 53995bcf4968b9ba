//! The group's world: etcd, three hosts with their failoverd (the real group core behind what
//! the group driver does), the LAN, and the clock.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipfailover::failover::HookPhase;
use ipfailover::group::{
    Group, GroupAction, GroupConfig as CoreConfig, GroupEvent as CoreEvent, GroupNotice, Holder,
    Lease, Member, MemberMode, View,
};

use super::props::GroupProps;
use super::{GroupEvent, GroupFault, GroupModel, GroupMutation};

/// One key of etcd.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Kv {
    value: String,
    lease: i64,
    create: i64,
}

/// The value of a key (a member's name, or its priority).
pub(crate) fn kv_value(kv: &Kv) -> &str {
    &kv.value
}

/// etcd, as the members see it through its API: a revision, keys attached to leases, leases
/// that expire when nobody renews them, and a quorum without which nothing is granted,
/// renewed, expired or written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Etcd {
    pub(crate) revision: i64,
    pub(crate) keys: BTreeMap<String, Kv>,
    /// Each lease, and when it expires.
    pub(crate) leases: BTreeMap<i64, Instant>,
    next_lease: i64,
    pub(crate) quorum: bool,
}

impl Etcd {
    /// The group's keys as a view.
    fn view(&self) -> View {
        let mut v = View {
            revision: self.revision,
            ..View::default()
        };
        for (k, kv) in &self.keys {
            if let Some(name) = k.strip_prefix("members/") {
                if let Some((priority, mode)) = MemberMode::parse_key_value(&kv.value) {
                    v.members.push(Member {
                        name: name.to_string(),
                        priority,
                        lease: kv.lease,
                        mode,
                    });
                }
            } else if let Some(a) = k.strip_prefix("addrs/") {
                if let Ok(addr) = a.parse() {
                    v.holders.insert(
                        addr,
                        Holder {
                            member: kv.value.clone(),
                            epoch: kv.create,
                            lease: kv.lease,
                        },
                    );
                }
            }
        }
        v
    }

    /// The member holding `addr`, by its key.
    pub(crate) fn holder(&self, addr: IpAddr) -> Option<(&str, i64)> {
        self.keys
            .get(&format!("addrs/{addr}"))
            .map(|kv| (kv.value.as_str(), kv.lease))
    }

    /// Deletes the leases expired at `now` with their keys; whether anything changed.
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
}

/// A daemon: not running, running, or stopped by SIGSTOP.
#[derive(Debug, Clone, Hash)]
pub(crate) enum Proc<T> {
    Down,
    Running(T),
    Stalled(T),
}

/// failoverd in group mode: its core and the hook phases running (one per address).
#[derive(Debug, Clone, Hash)]
pub(crate) struct Daemon {
    pub(crate) core: Group,
    hooks: Vec<(IpAddr, HookPhase, Instant)>,
}

/// One member's host.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Host {
    pub(crate) up: bool,
    /// Its VM is paused: nothing runs, nothing answers.
    pub(crate) frozen: bool,
    /// It reaches etcd.
    pub(crate) reaches: bool,
    /// The group's addresses on its interface.
    pub(crate) iface: Vec<IpAddr>,
    pub(crate) proc: Proc<Daemon>,
    /// systemd restarts a killed failoverd (`Restart=on-failure`, `RestartSec=1s`).
    restart_at: Option<Instant>,
    /// Its VM was paused, and its failoverd has not run since: its kernel missed probes
    /// that its failoverd has not yet answered for (the paused VM's window, docs/groups.md).
    pub(crate) paused_unseen: bool,
    /// The lease its failoverd last recorded in the state directory (`failoverd.lease`).
    last_lease: Option<i64>,
}

impl Host {
    /// Its daemon runs now (not stopped, not frozen).
    pub(crate) fn active(&self) -> Option<&Daemon> {
        match &self.proc {
            Proc::Running(d) if self.up && !self.frozen => Some(d),
            _ => None,
        }
    }

    /// Its kernel answers for `addr`.
    pub(crate) fn answers(&self, addr: IpAddr) -> bool {
        self.up && !self.frozen && self.iface.contains(&addr)
    }
}

/// A message on its way to a member: an answer from etcd, a view from its watch, or an ARP
/// frame its conflict watch hears.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Msg {
    pub(crate) id: u32,
    pub(crate) due: Instant,
    pub(crate) to: usize,
    pub(crate) event: CoreEvent,
}

/// What a replay logs, and a violation found in the middle of a step: not part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    log: Option<Vec<String>>,
    pub(crate) violation: Option<String>,
}

impl Hash for Extra {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// The whole group at one instant.
#[derive(Debug, Clone, Hash)]
pub struct GroupWorld {
    pub(crate) now: Instant,
    end: Instant,
    faults_left: u8,
    begun: bool,
    pub(crate) etcd: Etcd,
    /// etcd as it was at the start (a backup, for [`GroupFault::Restore`]).
    snapshot: Option<Etcd>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) msgs: Vec<Msg>,
    next_id: u32,
    pub(crate) props: GroupProps,
    pub(crate) extra: Extra,
}

fn name(i: usize) -> String {
    format!("m{}", i + 1)
}

fn mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 1, u8::try_from(i).unwrap_or(0)]
}

impl GroupWorld {
    pub(crate) fn new(m: &GroupModel) -> GroupWorld {
        let now = m.base;
        let n = m.config.priorities.len();
        let mut w = GroupWorld {
            now,
            end: now + Duration::from_secs(3600),
            faults_left: u8::MAX,
            begun: false,
            etcd: Etcd {
                revision: 1,
                keys: BTreeMap::new(),
                leases: BTreeMap::new(),
                next_lease: 0,
                quorum: true,
            },
            snapshot: None,
            hosts: (0..n)
                .map(|_| Host {
                    up: true,
                    frozen: false,
                    reaches: true,
                    iface: Vec::new(),
                    proc: Proc::Down,
                    restart_at: None,
                    paused_unseen: false,
                    last_lease: None,
                })
                .collect(),
            msgs: Vec::new(),
            next_id: 0,
            props: GroupProps::new(m, now),
            extra: Extra::default(),
        };
        for i in 0..n {
            w.start(m, i);
        }
        w.observe(m, &GroupEvent::Advance);
        w
    }

    pub(crate) fn end(&self) -> Instant {
        self.end
    }

    /// Virtual time since the model's base.
    pub fn elapsed(&self, base: Instant) -> Duration {
        self.now.saturating_duration_since(base)
    }

    pub(crate) fn log_on(&mut self) {
        self.extra.log = Some(Vec::new());
    }

    pub(crate) fn take_log(&mut self) -> Vec<String> {
        self.extra
            .log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(l) = self.extra.log.as_mut() {
            l.push(line());
        }
    }

    // ----- The search's view -----

    pub(crate) fn events(&self, m: &GroupModel, out: &mut Vec<GroupEvent>) {
        let c = &m.config;
        if !self.begun {
            out.push(GroupEvent::Begin {
                faults: c.faults,
                horizon_ms: u64::try_from(c.horizon.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if self.now < self.end {
            out.push(GroupEvent::Advance);
        }
        if self.faults_left == 0 {
            return;
        }
        let k = c.kinds;
        let mut f = |x: GroupFault| out.push(GroupEvent::Fault(x));
        for (i, h) in self.hosts.iter().enumerate() {
            if k.hosts {
                f(GroupFault::Host(i, !h.up));
            }
            if !h.up {
                continue;
            }
            if k.daemons {
                match h.proc {
                    Proc::Down => f(GroupFault::Start(i)),
                    Proc::Running(_) => {
                        f(GroupFault::Kill(i));
                        f(GroupFault::Stop(i));
                    }
                    Proc::Stalled(_) => f(GroupFault::Kill(i)),
                }
            }
            if k.stalls {
                match h.proc {
                    Proc::Running(_) if !h.frozen => f(GroupFault::Stall(i)),
                    Proc::Stalled(_) => f(GroupFault::Cont(i)),
                    _ => {}
                }
                f(GroupFault::Freeze(i, !h.frozen));
            }
            if k.cuts {
                f(GroupFault::Reach(i, !h.reaches));
            }
        }
        if k.etcd {
            f(GroupFault::Quorum(!self.etcd.quorum));
            if self.etcd.quorum {
                f(GroupFault::Leader);
            }
            if self.snapshot.is_some() {
                f(GroupFault::Restore);
            }
        }
    }

    /// Applies one event; the property it breaks, if any.
    pub(crate) fn step(&mut self, m: &GroupModel, e: &GroupEvent) -> Result<(), String> {
        match e {
            GroupEvent::Advance => {
                self.now = self.next_due(m);
                self.check_timed(m);
                if let Some(v) = self.extra.violation.take() {
                    return Err(v);
                }
                self.advance(m);
            }
            GroupEvent::Begin { faults, horizon_ms } => {
                self.begun = true;
                self.faults_left = *faults;
                self.end = self.now + Duration::from_millis(*horizon_ms);
                self.snapshot = Some(self.etcd.clone());
            }
            GroupEvent::Fault(f) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                self.fault(m, *f);
            }
        }
        self.observe(m, e);
        match self.extra.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    fn next_due(&self, m: &GroupModel) -> Instant {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for msg in &self.msgs {
            if !self.waits(msg.to) {
                consider(Some(msg.due));
            }
        }
        for h in &self.hosts {
            if let Some(d) = h.active() {
                consider(d.core.next_deadline());
                consider(d.hooks.iter().map(|(_, _, t)| *t).min());
            }
            if h.up && !h.frozen {
                consider(h.restart_at);
            }
        }
        if self.etcd.quorum {
            consider(self.etcd.leases.values().min().copied());
        }
        next.unwrap_or(self.now + m.config.ttl)
            .max(self.now)
            .min(self.end)
    }

    /// Member `i` cannot take its input now (stopped or frozen): it waits in its sockets.
    fn waits(&self, i: usize) -> bool {
        let h = &self.hosts[i];
        h.up && (h.frozen || matches!(h.proc, Proc::Stalled(_)))
    }

    fn advance(&mut self, m: &GroupModel) {
        let now = self.now;
        if self.etcd.quorum && self.etcd.expire(now) {
            self.log(|| "etcd: a lease expired, with its keys".into());
            self.broadcast(m);
        }
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.up && !h.frozen && h.restart_at.is_some_and(|t| t <= now) {
                self.log(|| format!("systemd restarts failoverd on m{}", i + 1));
                self.start(m, i);
            }
        }
        self.deliver_due(m, None);
        for i in 0..self.hosts.len() {
            while self.hook_due(i) {
                self.hook_done(m, i);
            }
            let due = self.hosts[i]
                .active()
                .and_then(|d| d.core.next_deadline())
                .is_some_and(|t| t <= now);
            if due {
                self.turn(m, i, CoreEvent::Tick);
            }
        }
    }

    fn deliver_due(&mut self, m: &GroupModel, only: Option<usize>) {
        let now = self.now;
        loop {
            let next = self
                .msgs
                .iter()
                .enumerate()
                .filter(|(_, x)| x.due <= now && !self.waits(x.to))
                .filter(|(_, x)| only.is_none_or(|i| i == x.to))
                .min_by_key(|(_, x)| (x.due, x.id))
                .map(|(k, _)| k);
            let Some(k) = next else {
                return;
            };
            let msg = self.msgs.remove(k);
            if self.hosts[msg.to].active().is_some() {
                self.turn(m, msg.to, msg.event);
            }
        }
    }

    /// Whether one of member `i`'s hook phases is over (its daemon runs).
    fn hook_due(&self, i: usize) -> bool {
        self.hosts[i]
            .active()
            .is_some_and(|d| d.hooks.iter().any(|(_, _, t)| *t <= self.now))
    }

    /// The earliest finished hook phase of member `i`, reported.
    fn hook_done(&mut self, m: &GroupModel, i: usize) {
        let now = self.now;
        let done = match &mut self.hosts[i].proc {
            Proc::Running(d) => d
                .hooks
                .iter()
                .enumerate()
                .filter(|(_, (_, _, t))| *t <= now)
                .min_by_key(|(_, (a, _, t))| (*t, *a))
                .map(|(k, _)| k)
                .map(|k| d.hooks.remove(k)),
            _ => None,
        };
        if let Some((addr, phase, _)) = done {
            self.turn(
                m,
                i,
                CoreEvent::HooksDone {
                    addr,
                    phase,
                    ok: true,
                },
            );
        }
    }

    fn send(&mut self, to: usize, after: Duration, event: CoreEvent) {
        self.next_id += 1;
        self.msgs.push(Msg {
            id: self.next_id,
            due: self.now + after,
            to,
            event,
        });
    }

    /// Every member whose watch reaches etcd gets the view.
    fn broadcast(&mut self, m: &GroupModel) {
        if !self.etcd.quorum {
            return;
        }
        let view = self.etcd.view();
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.up && h.reaches && !matches!(h.proc, Proc::Down) {
                self.send(i, m.config.rtt / 2, CoreEvent::View(view.clone()));
            }
        }
    }

    // ----- Faults -----

    fn fault(&mut self, m: &GroupModel, f: GroupFault) {
        match f {
            GroupFault::Host(i, false) => {
                let h = &mut self.hosts[i];
                h.up = false;
                h.frozen = false;
                h.iface.clear();
                h.proc = Proc::Down;
                h.restart_at = None;
                self.msgs.retain(|x| x.to != i);
            }
            GroupFault::Host(i, true) => {
                let h = &mut self.hosts[i];
                h.up = true;
                h.reaches = true;
                h.iface.clear();
                self.start(m, i);
            }
            GroupFault::Kill(i) => {
                self.hosts[i].proc = Proc::Down;
                self.hosts[i].restart_at = Some(self.now + m.config.restart_after);
                self.msgs.retain(|x| x.to != i);
            }
            GroupFault::Start(i) => self.start(m, i),
            GroupFault::Stop(i) => self.turn(m, i, CoreEvent::Shutdown),
            GroupFault::Stall(i) => {
                if let Proc::Running(d) = std::mem::replace(&mut self.hosts[i].proc, Proc::Down) {
                    self.hosts[i].proc = Proc::Stalled(d);
                }
            }
            GroupFault::Cont(i) => {
                if let Proc::Stalled(d) = std::mem::replace(&mut self.hosts[i].proc, Proc::Down) {
                    self.hosts[i].proc = Proc::Running(d);
                }
                self.resume(m, i);
            }
            GroupFault::Freeze(i, frozen) => {
                self.hosts[i].frozen = frozen;
                if frozen {
                    self.hosts[i].paused_unseen = true;
                }
                if !frozen {
                    self.resume(m, i);
                }
            }
            GroupFault::Reach(i, reaches) => {
                self.hosts[i].reaches = reaches;
                if reaches && self.etcd.quorum {
                    // The watch reads the prefix again.
                    let view = self.etcd.view();
                    self.send(i, m.config.rtt, CoreEvent::View(view));
                }
            }
            GroupFault::Quorum(q) => {
                self.etcd.quorum = q;
                if q {
                    // The new leader starts every lease's TTL again.
                    let ttl = m.config.ttl;
                    for at in self.etcd.leases.values_mut() {
                        *at = (*at).max(self.now + ttl);
                    }
                    self.broadcast(m);
                }
            }
            GroupFault::Leader => {
                let ttl = m.config.ttl;
                for at in self.etcd.leases.values_mut() {
                    *at = self.now + ttl;
                }
            }
            GroupFault::Restore => {
                if let Some(mut snap) = self.snapshot.clone() {
                    let ttl = m.config.ttl;
                    for at in snap.leases.values_mut() {
                        *at = self.now + ttl;
                    }
                    snap.next_lease = snap.next_lease.max(self.etcd.next_lease);
                    // `etcdutl snapshot restore --bump-revision`: the revision goes on from
                    // above the old one, so the members' watches see the restored keys
                    // (docs/groups.md; without it they ignore every view older than theirs).
                    if m.config.restore_bumps {
                        snap.revision = self.etcd.revision + 1000;
                    }
                    self.etcd = snap;
                    self.broadcast(m);
                }
            }
        }
    }

    /// A stopped or frozen member runs again: what arrived meanwhile, its hook, its tick.
    fn resume(&mut self, m: &GroupModel, i: usize) {
        let h = &self.hosts[i];
        if h.up && !h.frozen && h.restart_at.is_some_and(|t| t <= self.now) {
            self.start(m, i);
            return;
        }
        if self.hosts[i].active().is_none() {
            return;
        }
        self.deliver_due(m, Some(i));
        while self.hook_due(i) {
            self.hook_done(m, i);
        }
        self.turn(m, i, CoreEvent::Tick);
    }

    /// What failoverd's group start does: the group's addresses found on the interface are
    /// removed (no claim: another member may hold them by now), the watch reads the prefix,
    /// then the first turn.
    fn start(&mut self, m: &GroupModel, i: usize) {
        let c = &m.config;
        self.hosts[i].iface.clear();
        self.hosts[i].restart_at = None;
        let config = CoreConfig {
            name: name(i),
            priority: c.priorities[i],
            lease_ttl: c.ttl,
            preempt: c.preempt,
            addrs: c.addrs(),
            announce_refresh: None,
        };
        self.hosts[i].proc = Proc::Running(Daemon {
            core: {
                let mut core = Group::new(self.now, config);
                if let Some(lease) = self.hosts[i].last_lease {
                    core.previous_life(lease);
                }
                core
            },
            hooks: Vec::new(),
        });
        self.msgs.retain(|x| x.to != i);
        if self.hosts[i].reaches && self.etcd.quorum {
            let view = self.etcd.view();
            self.send(i, c.rtt, CoreEvent::View(view));
        }
        self.props.started(m, self.now);
        self.log(|| format!("{} starts failoverd", name(i)));
        self.turn(m, i, CoreEvent::Tick);
    }

    /// One loop turn of member `i`: an input, then the tick.
    fn turn(&mut self, m: &GroupModel, i: usize, event: CoreEvent) {
        if self.hosts[i].active().is_none() {
            return;
        }
        let Proc::Running(mut d) = std::mem::replace(&mut self.hosts[i].proc, Proc::Down) else {
            return;
        };
        self.hosts[i].paused_unseen = false;
        let mut alive = self.feed(m, i, &mut d, event);
        if alive {
            alive = self.feed(m, i, &mut d, CoreEvent::Tick);
        }
        if alive {
            self.hosts[i].proc = Proc::Running(d);
        } else {
            self.log(|| format!("{} failoverd exits", name(i)));
        }
    }

    /// Feeds the core and carries out its actions as the driver does; false once it exits.
    fn feed(&mut self, m: &GroupModel, i: usize, d: &mut Daemon, event: CoreEvent) -> bool {
        let c = &m.config;
        let now = self.now;
        let mut queue = VecDeque::from([event]);
        let mut alive = true;
        while let Some(ev) = queue.pop_front() {
            let actions = d.core.handle(now, ev);
            let fenced = actions
                .iter()
                .any(|a| matches!(a, GroupAction::Notify(GroupNotice::Fenced { .. })));
            for a in actions {
                let reach = self.hosts[i].reaches && self.etcd.quorum;
                match a {
                    GroupAction::GrantLease => {
                        if reach {
                            self.etcd.next_lease += 1;
                            let id = self.etcd.next_lease;
                            self.etcd.leases.insert(id, now + c.ttl);
                            self.hosts[i].last_lease = Some(id);
                            self.send(i, c.rtt, CoreEvent::LeaseGranted { id, sent_at: now });
                        } else {
                            self.send(i, other_limit(c.ttl), CoreEvent::GrantFailed);
                        }
                    }
                    GroupAction::Renew { lease } => {
                        if !reach {
                            self.send(i, renew_limit(c.ttl), CoreEvent::RenewalFailed);
                        } else if let Some(at) = self.etcd.leases.get_mut(&lease) {
                            *at = now + c.ttl;
                            self.send(i, c.rtt, CoreEvent::RenewalAcked { sent_at: now });
                        } else {
                            self.send(i, c.rtt, CoreEvent::LeaseLost);
                        }
                    }
                    GroupAction::Register { lease } => {
                        // Put only if absent, as the client does.
                        if reach
                            && self.etcd.leases.contains_key(&lease)
                            && !self.etcd.keys.contains_key(&format!("members/{}", name(i)))
                        {
                            self.etcd.revision += 1;
                            let create = self.etcd.revision;
                            self.etcd.keys.insert(
                                format!("members/{}", name(i)),
                                Kv {
                                    value: d.core.mode().key_value(c.priorities[i]),
                                    lease,
                                    create,
                                },
                            );
                            self.broadcast(m);
                        }
                    }
                    GroupAction::Unregister { lease } => {
                        let key = format!("members/{}", name(i));
                        if reach && self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                            self.etcd.keys.remove(&key);
                            self.etcd.revision += 1;
                            self.broadcast(m);
                        }
                    }
                    GroupAction::Revoke { lease } => {
                        if reach {
                            self.etcd.leases.remove(&lease);
                            self.etcd.keys.retain(|_, kv| kv.lease != lease);
                            self.etcd.revision += 1;
                            self.log(|| format!("{} revokes lease {lease}", name(i)));
                            self.broadcast(m);
                        }
                    }
                    GroupAction::TryAcquire { addr, lease } => {
                        if !reach {
                            self.send(i, other_limit(c.ttl), CoreEvent::AcquireFailed { addr });
                            continue;
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
                                    value: name(i),
                                    lease,
                                    create,
                                },
                            );
                            Some(create)
                        };
                        self.log(|| {
                            format!(
                                "{} tries {addr}: {}",
                                name(i),
                                epoch.map_or("lost".to_string(), |e| format!("won, epoch {e}"))
                            )
                        });
                        self.send(i, c.rtt, CoreEvent::Acquired { addr, epoch });
                        if epoch.is_some() {
                            self.broadcast(m);
                        }
                    }
                    GroupAction::ClearStale { addr, epoch } => {
                        let key = format!("addrs/{addr}");
                        if reach
                            && self
                                .etcd
                                .keys
                                .get(&key)
                                .is_some_and(|kv| kv.create == epoch)
                        {
                            self.etcd.keys.remove(&key);
                            self.etcd.revision += 1;
                            self.broadcast(m);
                        }
                    }
                    GroupAction::Publish { .. } | GroupAction::ModeChanged(_) => {
                        let key = format!("members/{}", name(i));
                        let lease = match d.core.lease() {
                            Lease::Held { id, .. } => id,
                            _ => 0,
                        };
                        if reach && self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                            let value = d.core.mode().key_value(c.priorities[i]);
                            if let Some(kv) = self.etcd.keys.get_mut(&key) {
                                kv.value = value;
                            }
                            self.etcd.revision += 1;
                            self.broadcast(m);
                        }
                    }
                    GroupAction::Answer(_) => {}
                    GroupAction::GiveUp { addr, lease } => {
                        let key = format!("addrs/{addr}");
                        if reach && self.etcd.keys.get(&key).is_some_and(|kv| kv.lease == lease) {
                            self.etcd.keys.remove(&key);
                            self.etcd.revision += 1;
                            self.broadcast(m);
                        }
                    }
                    GroupAction::Probe { addrs } => {
                        for addr in addrs {
                            for j in 0..self.hosts.len() {
                                if j != i && self.hosts[j].answers(addr) {
                                    self.send(
                                        i,
                                        c.one_way,
                                        CoreEvent::ProbeAnswer { addr, mac: mac(j) },
                                    );
                                }
                            }
                        }
                    }
                    GroupAction::Announce { addr } => {
                        for j in 0..self.hosts.len() {
                            if j != i && self.hosts[j].up {
                                self.send(
                                    j,
                                    c.one_way,
                                    CoreEvent::ProbeAnswer { addr, mac: mac(i) },
                                );
                            }
                        }
                    }
                    GroupAction::RunHooks { phase, addr, .. } => {
                        self.log(|| format!("{} runs {} for {addr}", name(i), phase.as_str()));
                        if c.hook_time.is_zero() {
                            queue.push_back(CoreEvent::HooksDone {
                                addr,
                                phase,
                                ok: true,
                            });
                        } else {
                            d.hooks.push((addr, phase, now + c.hook_time));
                        }
                    }
                    GroupAction::Add { addr } => {
                        self.adding(i, addr, d.core.lease());
                        if !self.hosts[i].iface.contains(&addr) {
                            self.hosts[i].iface.push(addr);
                        }
                        self.log(|| format!("{} adds {addr}", name(i)));
                    }
                    GroupAction::Remove { addr } => {
                        if fenced && c.mutation == GroupMutation::FenceKeepsAddresses {
                            continue;
                        }
                        self.hosts[i].iface.retain(|a| *a != addr);
                        self.log(|| format!("{} removes {addr}", name(i)));
                    }
                    GroupAction::Transition { addr, from, to } => self.log(|| {
                        format!("  {} {addr}: {} -> {}", name(i), from.as_str(), to.as_str())
                    }),
                    GroupAction::Notify(n) => self.log(|| format!("{}: {n:?}", name(i))),
                    GroupAction::Exit => alive = false,
                }
            }
        }
        alive
    }
}

/// The time limit of a renewal: TTL/6, 100 ms to 2 s (the etcd client).
fn renew_limit(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The time limit of the other requests: TTL/2, 300 ms to 5 s.
fn other_limit(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_millis(300), Duration::from_secs(5))
}
