//! `failoverctl metrics`: the status files as Prometheus text exposition (format 0.0.4), for
//! node_exporter's textfile collector. Pure: what was read and the time in, text out.
//!
//! Every metric is named `ipfailover_*`, has its `# HELP` and `# TYPE`, and carries the
//! `daemon` label where both daemons could report it. States are labelled gauges (1 for the
//! current one, 0 for the others a daemon can be in), counters end in `_total`, times are in
//! seconds. docs/failoverctl.md lists them all.
//!
//! Table-driven: each family is declared once (`families!`) with its type and help, and the
//! metrics that are one number of the status file are rows of tables (a family and how to read
//! it), so that adding one is adding a row.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipfailover::status::{
    AddressHolder, CounterStatus, DaemonState, GroupStatus, LinkState, LinkStatus, SendStatus,
    Status,
};

use crate::health::{link_age_ms, Freshness, Health};
use crate::observe::{Daemon, Seen};

/// The `state` label of a state this failoverctl does not know.
const UNKNOWN_STATE: &str = "unknown";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// A metric family: its name, type and help, said once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

/// Declares each family as a constant, and [`FAMILIES`], all of them in the order printed.
macro_rules! families {
    ($($id:ident: $kind:ident $name:literal $help:literal;)+) => {
        $(
            const $id: Family = Family {
                name: $name,
                kind: Kind::$kind,
                help: $help,
            };
        )+
        /// Every family, in the order they are printed.
        #[cfg_attr(not(test), allow(dead_code))]
        const FAMILIES: &[Family] = &[$($id),+];
    };
}

families! {
    HEALTH: Gauge "ipfailover_health"
        "failoverctl's verdict: 0 healthy, 1 degraded, 2 failed over or down (its exit code)";
    FAILED_OVER: Gauge "ipfailover_failed_over"
        "1 while this host's failoverd takes, holds or gives back the peer's address";
    FILE_PRESENT: Gauge "ipfailover_status_file_present"
        "1 if the daemon's status file exists";
    UP: Gauge "ipfailover_up"
        "1 if the daemon's status file is fresh (written recently, by a live process)";
    STATE: Gauge "ipfailover_state"
        "1 for the daemon's current state, 0 for the others it can be in";
    INFO: Gauge "ipfailover_info"
        "The daemon's version, host and process id (always 1)";
    STATE_SINCE: Gauge "ipfailover_state_since_seconds"
        "When the daemon entered its current state, seconds since the Unix epoch";
    STATUS_AGE: Gauge "ipfailover_status_age_seconds"
        "Seconds since the daemon last wrote its status file";
    START_TIME: Gauge "ipfailover_start_time_seconds"
        "When the daemon started, seconds since the Unix epoch";
    TIMEOUT: Gauge "ipfailover_timeout_seconds"
        "failoverd's takeover timeout in force";
    INTERVAL: Gauge "ipfailover_interval_seconds"
        "The heartbeat interval: heartbeatd's own, or the one the peer announces";
    CLOCK_OFFSET: Gauge "ipfailover_peer_clock_offset_seconds"
        "The peer's wall clock minus this host's (reported, never a reason to drop)";
    PEER_VERIFIED: Gauge "ipfailover_peer_verified"
        "1 once the peer's current boot has answered a challenge";
    LINK_UP: Gauge "ipfailover_link_up"
        "1 while heartbeats arrive on the link within the timeout";
    LINK_AGE: Gauge "ipfailover_link_last_heartbeat_age_seconds"
        "Seconds since the last valid heartbeat on the link";
    LINK_HEARTBEATS: Counter "ipfailover_link_heartbeats_total"
        "Valid heartbeats received on the link";
    ADDRESS_HELD: Gauge "ipfailover_address_held"
        "1 while this host has the address on its interface";
    ANNOUNCE_AGE: Gauge "ipfailover_address_announcement_age_seconds"
        "Seconds since this host last announced the address (gratuitous ARP / unsolicited NA)";
    LAST_ANNOUNCE_AGE: Gauge "ipfailover_last_announcement_age_seconds"
        "Seconds since the daemon last announced any address in its own name";
    UNANSWERED: Gauge "ipfailover_addresses_unanswered"
        "Addresses nobody answers for, as failoverd can tell: an outage";
    THIRD_HOST: Gauge "ipfailover_third_host"
        "1 while a third host answers for an address the peer answers for";
    CONFLICT: Gauge "ipfailover_conflict"
        "1 while another host answers for an address failoverd takes over or holds";
    SENDS: Counter "ipfailover_sends_total"
        "Heartbeat datagrams the kernel took, per destination";
    SEND_FAILURES: Counter "ipfailover_send_failures_total"
        "Heartbeat datagrams the kernel refused, per destination";
    SEND_FAILING: Gauge "ipfailover_send_failing"
        "1 while the latest send to the destination failed";
    ACCEPTED: Counter "ipfailover_datagrams_accepted_total"
        "Valid datagrams accepted (failoverd: from the peer; heartbeatd: released)";
    HEARTBEATS_SENT: Counter "ipfailover_heartbeats_sent_total"
        "Heartbeats sent (heartbeatd)";
    HOOKS_RUN: Counter "ipfailover_hooks_run_total"
        "Hooks run";
    HOOKS_FAILED: Counter "ipfailover_hooks_failed_total"
        "Hooks that failed, timed out or were refused";
    MAILS_SENT: Counter "ipfailover_mails_sent_total"
        "Notices mailed";
    MAILS_FAILED: Counter "ipfailover_mails_failed_total"
        "Failed attempts to mail a notice (each is retried)";
    MAILS_DROPPED: Counter "ipfailover_mails_dropped_total"
        "Notices given up after retrying for an hour";
    TAKEOVERS: Counter "ipfailover_takeovers_total"
        "Takeovers completed";
    RELEASES: Counter "ipfailover_releases_total"
        "Releases completed";
    DROPPED: Counter "ipfailover_datagrams_dropped_total"
        "Datagrams dropped, by reason";
    ETCD_REACHABLE: Gauge "ipfailover_group_etcd_reachable"
        "1 if etcd answered this member's latest request";
    LEASE_HELD: Gauge "ipfailover_group_lease_held"
        "1 while this member has an etcd lease";
    FENCE_IN: Gauge "ipfailover_group_fence_in_seconds"
        "Seconds before this member fences itself without another acknowledged renewal";
    REVISION: Gauge "ipfailover_group_revision"
        "The etcd revision of this member's latest view of the group";
    MEMBER: Gauge "ipfailover_group_member"
        "A live member of the group, with its priority (always 1)";
    MEMBER_LEASE_LEFT: Gauge "ipfailover_group_member_lease_left_seconds"
        "Seconds a member's lease had left when etcd was last asked (-1: gone)";
    HAS_HOLDER: Gauge "ipfailover_group_address_has_holder"
        "1 if some member holds the address, as this member sees the group";
    EPOCH: Gauge "ipfailover_group_address_epoch"
        "The holder's epoch for the address (its key's create revision)";
}

/// A table's row: a family, and how to read its value.
type Row<F> = (Family, F);

/// A value of a `T`.
type Value<T> = fn(&T) -> f64;

/// A value of a `T`, if it has one.
type MaybeValue<T> = fn(&T) -> Option<f64>;

/// A number of a daemon's status, if it has it (the time `now_ms` given).
type DaemonValue = fn(&Status, u64) -> Option<f64>;

/// The per-daemon metrics that are one number of the status file.
const DAEMON_VALUES: [Row<DaemonValue>; 6] = [
    (STATUS_AGE, |s, now| {
        Some(secs(now.saturating_sub(s.updated_at_ms)))
    }),
    (START_TIME, |s, _| Some(secs(s.started_at_ms))),
    (TIMEOUT, |s, _| s.timeout_ms.map(secs)),
    (INTERVAL, |s, _| s.interval_ms.map(secs)),
    (CLOCK_OFFSET, |s, _| {
        s.peer_clock_offset_ms.map(|off| off as f64 / 1000.0)
    }),
    (PEER_VERIFIED, |s, _| s.peer_verified.map(flag)),
];

/// The counters of a status file.
const COUNTERS: [Row<Value<CounterStatus>>; 9] = [
    (ACCEPTED, |c| c.accepted as f64),
    (HEARTBEATS_SENT, |c| c.sent as f64),
    (HOOKS_RUN, |c| c.hooks_run as f64),
    (HOOKS_FAILED, |c| c.hooks_failed as f64),
    (MAILS_SENT, |c| c.mails_sent as f64),
    (MAILS_FAILED, |c| c.mails_failed as f64),
    (MAILS_DROPPED, |c| c.mails_dropped as f64),
    (TAKEOVERS, |c| c.takeovers as f64),
    (RELEASES, |c| c.releases as f64),
];

/// A link's metrics (the status it is in, and the time, given).
type LinkValue = fn(&Status, &LinkStatus, u64) -> f64;

/// Each link's metrics.
const LINK_VALUES: [Row<LinkValue>; 3] = [
    (LINK_UP, |_, l, _| flag(l.state == LinkState::Up)),
    (LINK_AGE, |s, l, now| secs(link_age_ms(s, l, now))),
    (LINK_HEARTBEATS, |_, l, _| l.heartbeats as f64),
];

/// Each heartbeat destination's metrics.
const SEND_VALUES: [Row<Value<SendStatus>>; 3] = [
    (SENDS, |d| d.sent as f64),
    (SEND_FAILURES, |d| d.failed as f64),
    (SEND_FAILING, |d| flag(d.failing)),
];

/// A group member's own metrics, labelled with the daemon and the group.
const GROUP_VALUES: [Row<MaybeValue<GroupStatus>>; 4] = [
    (ETCD_REACHABLE, |g| Some(flag(g.etcd_reachable))),
    (LEASE_HELD, |g| Some(flag(g.lease.is_some()))),
    (FENCE_IN, |g| g.fence_in_ms.map(secs)),
    (REVISION, |g| Some(g.revision as f64)),
];

/// The families in the order they are printed, with their samples.
#[derive(Default)]
struct Out {
    families: Vec<(Family, Vec<(String, f64)>)>,
    index: BTreeMap<&'static str, usize>,
}

impl Out {
    /// A sample of `family`.
    fn add(&mut self, family: Family, labels: &[(&str, &str)], value: f64) {
        let i = *self.index.entry(family.name).or_insert_with(|| {
            self.families.push((family, Vec::new()));
            self.families.len() - 1
        });
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        if let Some((_, samples)) = self.families.get_mut(i) {
            samples.push((labels, value));
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for (f, samples) in &self.families {
            let _ = writeln!(s, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, v) in samples {
                let _ = writeln!(s, "{}{labels} {}", f.name, number(*v));
            }
        }
        s
    }
}

/// A label value as the exposition format writes it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".to_string()
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Everything failoverctl knows, as metrics.
pub fn render_metrics(seen: &Seen, health: &Health, now_ms: u64) -> String {
    let mut o = Out::default();
    o.add(HEALTH, &[], f64::from(health.exit_code()));
    o.add(FAILED_OVER, &[], flag(health.failed_over));
    for daemon in Daemon::ALL {
        let name = daemon.name();
        let fresh = health.of(daemon);
        let labels = [("daemon", name)];
        o.add(
            FILE_PRESENT,
            &labels,
            flag(!matches!(fresh, Freshness::Missing)),
        );
        o.add(UP, &labels, flag(matches!(fresh, Freshness::Fresh)));
        if let Some(s) = seen.get(daemon).status() {
            daemon_metrics(&mut o, daemon, s, now_ms);
        }
    }
    o.render()
}

fn daemon_metrics(o: &mut Out, daemon: Daemon, s: &Status, now_ms: u64) {
    let d = daemon.name();
    let known: &[DaemonState] = match daemon {
        Daemon::Failoverd => &DaemonState::FAILOVERD,
        Daemon::Heartbeatd => &DaemonState::HEARTBEATD,
    };
    let current = if known.contains(&s.state) {
        s.state.as_str()
    } else {
        UNKNOWN_STATE
    };
    for state in known.iter().map(DaemonState::as_str).chain([UNKNOWN_STATE]) {
        o.add(
            STATE,
            &[("daemon", d), ("state", state)],
            flag(state == current),
        );
    }
    let pid = s.pid.to_string();
    o.add(
        INFO,
        &[
            ("daemon", d),
            ("version", &s.version),
            ("hostname", &s.hostname),
            ("pid", &pid),
        ],
        1.0,
    );
    if let Some(t) = s
        .transitions
        .iter()
        .rev()
        .find(|t| t.to == s.state.as_str())
        .filter(|_| s.group.is_none())
    {
        o.add(STATE_SINCE, &[("daemon", d)], secs(t.at_ms));
    }
    for (family, value) in DAEMON_VALUES {
        if let Some(v) = value(s, now_ms) {
            o.add(family, &[("daemon", d)], v);
        }
    }
    for l in &s.links {
        let iface = l.interface.clone().unwrap_or_default();
        let labels = [
            ("daemon", d),
            ("peer_address", l.peer_address.as_str()),
            ("interface", iface.as_str()),
        ];
        for (family, value) in LINK_VALUES {
            o.add(family, &labels, value(s, l, now_ms));
        }
    }
    for a in &s.addresses {
        let labels = [
            ("daemon", d),
            ("address", a.address.as_str()),
            ("interface", a.interface.as_str()),
        ];
        o.add(ADDRESS_HELD, &labels, flag(a.held));
    }
    for a in &s.addresses {
        if let Some(at) = a.announced_ms {
            o.add(
                ANNOUNCE_AGE,
                &[("daemon", d), ("address", a.address.as_str())],
                secs(now_ms.saturating_sub(at)),
            );
        }
    }
    if let Some(at) = s.last_announcement_ms {
        o.add(
            LAST_ANNOUNCE_AGE,
            &[("daemon", d)],
            secs(now_ms.saturating_sub(at)),
        );
    }
    if s.group.is_none() && !s.addresses.is_empty() {
        let unanswered = s
            .addresses
            .iter()
            .filter(|a| !a.held && a.holder == Some(AddressHolder::Nobody))
            .count();
        o.add(UNANSWERED, &[("daemon", d)], unanswered as f64);
    }
    if let Some(t) = &s.third_host {
        let labels = [
            ("daemon", d),
            ("address", t.address.as_str()),
            ("mac", t.mac.as_str()),
        ];
        o.add(THIRD_HOST, &labels, 1.0);
    }
    if let Some(c) = &s.conflict {
        let labels = [
            ("daemon", d),
            ("address", c.address.as_str()),
            ("mac", c.mac.as_str()),
            ("holding", if c.holding { "yes" } else { "no" }),
        ];
        o.add(CONFLICT, &labels, 1.0);
    }
    for send in &s.sends {
        let labels = [("daemon", d), ("to", send.to.as_str())];
        for (family, value) in SEND_VALUES {
            o.add(family, &labels, value(send));
        }
    }
    for (family, value) in COUNTERS {
        o.add(family, &[("daemon", d)], value(&s.counters));
    }
    for (reason, n) in &s.counters.dropped {
        o.add(
            DROPPED,
            &[("daemon", d), ("reason", reason.as_str())],
            *n as f64,
        );
    }
    if let Some(g) = &s.group {
        group_metrics(o, d, g);
    }
}

fn group_metrics(o: &mut Out, d: &str, g: &GroupStatus) {
    let base = [("daemon", d), ("group", g.name.as_str())];
    for (family, value) in GROUP_VALUES {
        if let Some(v) = value(g) {
            o.add(family, &base, v);
        }
    }
    for m in &g.members {
        let prio = m.priority.to_string();
        let labels = [
            ("daemon", d),
            ("group", g.name.as_str()),
            ("member", m.name.as_str()),
            ("priority", prio.as_str()),
            ("this", if m.this { "yes" } else { "no" }),
        ];
        o.add(MEMBER, &labels, 1.0);
        if let Some(l) = m.lease_left_s {
            let labels = [
                ("daemon", d),
                ("group", g.name.as_str()),
                ("member", m.name.as_str()),
            ];
            o.add(MEMBER_LEASE_LEFT, &labels, l as f64);
        }
    }
    for a in &g.addresses {
        let labels = [
            ("daemon", d),
            ("group", g.name.as_str()),
            ("address", a.address.as_str()),
        ];
        o.add(HAS_HOLDER, &labels, flag(a.holder.is_some()));
        if let (Some(h), Some(e)) = (&a.holder, a.epoch) {
            let labels = [
                ("daemon", d),
                ("group", g.name.as_str()),
                ("address", a.address.as_str()),
                ("holder", h.as_str()),
            ];
            o.add(EPOCH, &labels, e as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::health;
    use crate::health::tests::*;

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        for (fo, hb) in [
            (Some(failoverd()), Some(heartbeatd())),
            (Some(failed_over()), None),
            (Some(group_member()), None),
            (None, None),
        ] {
            let seen = seen(fo, hb);
            let h = health(&seen, NOW, HOST);
            let text = render_metrics(&seen, &h, NOW);
            let mut typed = std::collections::BTreeSet::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let mut w = rest.split(' ');
                    let (name, kind) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                    assert!(typed.insert(name.to_string()), "{name} typed twice");
                    if kind == "counter" {
                        assert!(name.ends_with("_total"), "{name}");
                    }
                } else if !line.starts_with('#') {
                    let name = line.split(['{', ' ']).next().unwrap_or("");
                    assert!(
                        typed.contains(name),
                        "{name} has no TYPE before it:\n{text}"
                    );
                    assert!(name.starts_with("ipfailover_"), "{name}");
                }
            }
            assert!(text.contains("ipfailover_health "), "{text}");
        }
    }

    #[test]
    fn states_and_values_as_expected() {
        let seen = seen(Some(failed_over()), Some(heartbeatd()));
        let h = health(&seen, NOW, HOST);
        let text = render_metrics(&seen, &h, NOW);
        assert!(text.contains("ipfailover_health 2\n"), "{text}");
        assert!(text.contains("ipfailover_failed_over 1\n"));
        assert!(text.contains("ipfailover_state{daemon=\"failoverd\",state=\"acquired\"} 1\n"));
        assert!(text.contains("ipfailover_state{daemon=\"failoverd\",state=\"monitoring\"} 0\n"));
        assert!(text.contains("ipfailover_up{daemon=\"heartbeatd\"} 1\n"));
        // Never announced: no age at all (not a huge one).
        assert!(!text.contains("announcement_age"), "{text}");
        let mut fo = failed_over();
        fo.addresses[0].announced_ms = Some(NOW - 42_500);
        fo.last_announcement_ms = Some(NOW - 2_000);
        let announced = crate::health::tests::seen(Some(fo), None);
        let h = health(&announced, NOW, HOST);
        let text = render_metrics(&announced, &h, NOW);
        assert!(
            text.contains(
                "ipfailover_address_announcement_age_seconds{daemon=\"failoverd\",address=\"10.0.0.100\"} 42.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ipfailover_last_announcement_age_seconds{daemon=\"failoverd\"} 2\n"),
            "{text}"
        );
        let seen = seen_group();
        let h = health(&seen, NOW, HOST);
        let text = render_metrics(&seen, &h, NOW);
        assert!(text.contains(
            "ipfailover_group_address_epoch{daemon=\"failoverd\",group=\"web\",address=\"198.51.100.101\",holder=\"m1\"} 12\n"
        ), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_is_documented_and_named_once() {
        let doc = include_str!("../../docs/failoverctl.md");
        let mut names = std::collections::BTreeSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} declared twice", f.name);
            assert!(
                doc.contains(&format!("`{}`", f.name)),
                "{} is not in docs/failoverctl.md",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
        }
    }

    fn seen_group() -> Seen {
        seen(Some(group_member()), None)
    }
}
