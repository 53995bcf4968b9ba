//! The group's properties, as docs/groups.md states them:
//!
//! 1. **One holder**: never two members whose kernels answer for one address (the probe
//!    before every add keeps a stalled holder's address from being added twice), but for the
//!    paused VM's window: a VM paused through another member's probes answers again when it
//!    resumes, until its failoverd's first turn (at once, unless that failoverd is stopped
//!    too).
//! 2. **Only the winner adds**: a member adds an address only while etcd has its key in that
//!    member's name, under that member's current lease.
//! 3. **A claim that is gone is removed at once**: a member whose process runs does not keep
//!    an address whose key is gone or another's for longer than a view's trip
//!    ([`GroupBounds::claim_gone`]); its lease never expires in etcd before it fenced itself.
//! 4. **No quorum, nobody holds past the deadline**: once etcd has lost its quorum, every
//!    holder has removed its addresses within its deadline ([`GroupBounds::no_quorum`]).
//! 5. **A dead holder's address is held again**: while etcd has a quorum and some member
//!    runs and reaches it, nobody answers for an address for at most
//!    [`GroupBounds::nobody`] (the dead holder's lease, a join wait, the priority steps, the
//!    probes, the hooks, the round trips).
//!
//! An etcd restored from an older snapshot excuses 2 and 3: its keys and leases are the
//! snapshot's, and a member learns that only from its next renewal.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipfailover::group::{priority_step, Lease, GROUP_PROBE_WINDOW};

use super::world::{kv_value, GroupWorld};
use super::{GroupConfig, GroupEvent, GroupFault, GroupModel};
use crate::pair::ms;

/// The bounds, from the model's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBounds {
    /// A member keeps an address whose claim is gone at most a view's trip.
    pub claim_gone: Duration,
    /// Without a quorum, a holder has removed its addresses within its deadline: TTL − TTL/5
    /// after the last acknowledged renewal, sent before the quorum was lost.
    pub no_quorum: Duration,
    /// Nobody answers for an address at most this long while the group can act.
    pub nobody: Duration,
}

const SLACK: Duration = Duration::from_millis(2);

impl GroupBounds {
    /// The bounds of `c`.
    pub fn of(c: &GroupConfig) -> GroupBounds {
        let ttl = c.ttl;
        GroupBounds {
            claim_gone: c.rtt + SLACK,
            no_quorum: ttl - ttl / 5 + SLACK,
            nobody: ttl
                + ttl / 3
                + priority_step(ttl) * 2
                + GROUP_PROBE_WINDOW
                + GROUP_PROBE_WINDOW / 3
                + c.hook_time * 3
                + c.rtt * 10
                + SLACK,
        }
    }
}

/// The history the properties need.
#[derive(Debug, Clone, Hash)]
pub(crate) struct GroupProps {
    addrs: Vec<IpAddr>,
    /// Per address: since when two members answer for it, since when nobody does.
    two: Vec<Option<Instant>>,
    nobody: Vec<Option<Instant>>,
    /// Per member and address: since when it keeps the address without its claim.
    unclaimed: Vec<Vec<Option<Instant>>>,
    /// Nobody answering is judged from here (a fault that lets the group act again).
    ready_from: Instant,
    /// Since when etcd has no quorum.
    quorum_lost: Option<Instant>,
    /// etcd was restored from its snapshot.
    restored: bool,
}

impl GroupProps {
    pub(crate) fn new(m: &GroupModel, now: Instant) -> GroupProps {
        let addrs = m.config.addrs();
        let n = m.config.priorities.len();
        GroupProps {
            two: vec![None; addrs.len()],
            nobody: vec![None; addrs.len()],
            unclaimed: vec![vec![None; addrs.len()]; n],
            addrs,
            ready_from: now,
            quorum_lost: None,
            restored: false,
        }
    }

    pub(crate) fn started(&mut self, _m: &GroupModel, now: Instant) {
        self.ready_from = self.ready_from.max(now);
    }
}

impl GroupWorld {
    /// Whether member `i` holds `addr`'s key, under its current lease.
    fn claims(&self, i: usize, addr: IpAddr) -> bool {
        self.hosts[i]
            .active()
            .is_some_and(|d| self.claims_with(i, addr, d.core.lease()))
    }

    fn claims_with(&self, i: usize, addr: IpAddr, lease: Lease) -> bool {
        let Lease::Held { id, .. } = lease else {
            return false;
        };
        self.etcd
            .holder(addr)
            .is_some_and(|(who, l)| who == format!("m{}", i + 1) && l == id)
    }

    /// Member `i`, whose lease is `lease`, adds `addr`: only the winner of its key does.
    pub(crate) fn adding(&mut self, i: usize, addr: IpAddr, lease: Lease) {
        if !self.props.restored && !self.claims_with(i, addr, lease) {
            self.extra.violation = Some(format!(
                "m{} adds {addr}, but etcd has its key {}",
                i + 1,
                match self.etcd.holder(addr) {
                    Some((who, lease)) => format!("in {who}'s name, under lease {lease}"),
                    None => "nowhere".into(),
                }
            ));
        }
    }

    /// After each step: who answers since when.
    pub(crate) fn observe(&mut self, _m: &GroupModel, e: &GroupEvent) {
        let now = self.now;
        if let GroupEvent::Fault(f) = e {
            match f {
                GroupFault::Host(_, true)
                | GroupFault::Start(_)
                | GroupFault::Cont(_)
                | GroupFault::Freeze(_, false)
                | GroupFault::Reach(_, true)
                | GroupFault::Quorum(true)
                | GroupFault::Leader
                | GroupFault::Restore => self.props.ready_from = now,
                // A member that claims an address in etcd fails: the others wait for its
                // lease, a TTL from now at most.
                GroupFault::Host(i, false)
                | GroupFault::Kill(i)
                | GroupFault::Stall(i)
                | GroupFault::Freeze(i, true)
                | GroupFault::Reach(i, false) => {
                    let name = format!("m{}", i + 1);
                    if self
                        .etcd
                        .keys
                        .iter()
                        .any(|(k, kv)| k.starts_with("addrs/") && kv_value(kv) == name)
                    {
                        self.props.ready_from = now;
                    }
                }
                _ => {}
            }
            if *f == GroupFault::Restore {
                self.props.restored = true;
            }
        }
        self.props.quorum_lost = if self.etcd.quorum {
            None
        } else {
            self.props.quorum_lost.or(Some(now))
        };
        let addrs = self.props.addrs.clone();
        for (k, addr) in addrs.iter().enumerate() {
            let answering = self.hosts.iter().filter(|h| h.answers(*addr)).count();
            self.props.two[k] = if answering >= 2 {
                self.props.two[k].or(Some(now))
            } else {
                None
            };
            self.props.nobody[k] = if answering == 0 {
                self.props.nobody[k].or(Some(now))
            } else {
                None
            };
            for i in 0..self.hosts.len() {
                let keeps = self.hosts[i].answers(*addr)
                    && self.hosts[i].active().is_some()
                    && self.etcd.quorum
                    && !self.claims(i, *addr);
                self.props.unclaimed[i][k] = if keeps {
                    self.props.unclaimed[i][k].or(Some(now))
                } else {
                    None
                };
            }
        }
    }

    /// Before anything happens at the new instant: did what lasted until now break a bound?
    pub(crate) fn check_timed(&mut self, m: &GroupModel) {
        let now = self.now;
        let b = m.bounds();
        let t = |i: Instant| ms(i.saturating_duration_since(m.base));
        for (k, addr) in self.props.addrs.iter().enumerate() {
            if let Some(since) = self.props.two[k] {
                // A member whose VM was paused answers again before its failoverd has run:
                // the paused VM's window, until that failoverd's first turn.
                let paused_vm = self
                    .hosts
                    .iter()
                    .any(|h| h.answers(*addr) && h.paused_unseen);
                if now > since && !paused_vm {
                    let who: Vec<String> = (0..self.hosts.len())
                        .filter(|i| self.hosts[*i].answers(*addr))
                        .map(|i| format!("m{}", i + 1))
                        .collect();
                    self.extra.violation = Some(format!(
                        "{} answer for {addr} since {}",
                        who.join(" and "),
                        t(since)
                    ));
                    return;
                }
            }
            for i in 0..self.hosts.len() {
                if let Some(since) = self.props.unclaimed[i][k] {
                    if !self.props.restored && now > since + b.claim_gone {
                        self.extra.violation = Some(format!(
                            "m{} keeps {addr} since {} ({} by now, more than {}), but etcd has \
                             its key {}",
                            i + 1,
                            t(since),
                            ms(now - since),
                            ms(b.claim_gone),
                            match self.etcd.holder(*addr) {
                                Some((who, lease)) => format!("in {who}'s name, lease {lease}"),
                                None => "nowhere".into(),
                            }
                        ));
                        return;
                    }
                }
            }
            if let Some(lost) = self.props.quorum_lost {
                for i in 0..self.hosts.len() {
                    if self.hosts[i].active().is_some()
                        && self.hosts[i].answers(*addr)
                        && now > lost + b.no_quorum
                    {
                        self.extra.violation = Some(format!(
                            "m{} still holds {addr} {} after etcd lost its quorum (at {}): its \
                             deadline is at most {} after",
                            i + 1,
                            ms(now - lost),
                            t(lost),
                            ms(b.no_quorum)
                        ));
                        return;
                    }
                }
            }
            if let Some(since) = self.props.nobody[k] {
                let can_act = self.etcd.quorum
                    && self.hosts.iter().any(|h| h.active().is_some() && h.reaches);
                let from = since.max(self.props.ready_from);
                if can_act && now > from + b.nobody {
                    self.extra.violation = Some(format!(
                        "nobody answers for {addr} since {} ({} counted while the group could \
                         act), longer than {}",
                        t(since),
                        ms(now - from),
                        ms(b.nobody)
                    ));
                    return;
                }
            }
        }
    }
}
