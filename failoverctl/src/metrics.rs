//! `failoverctl metrics`: the status files as Prometheus text exposition (format 0.0.4), for
//! node_exporter's textfile collector. Pure: what was read and the time in, text out.
//!
//! Every metric is named `ipfailover_*`, has its `# HELP` and `# TYPE`, and carries the
//! `daemon` label where both daemons could report it. States are labelled gauges (1 for the
//! current one, 0 for the others a daemon can be in), counters end in `_total`, times are in
//! seconds. docs/failoverctl.md lists them all.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipfailover::status::Status;

use crate::health::{link_age_ms, Freshness, Health};
use crate::observe::{Daemon, Seen};

/// failoverd's states (a pair's, then a group member's); heartbeatd's.
const FAILOVERD_STATES: [&str; 12] = [
    "boot-grace",
    "monitoring",
    "conflict",
    "third-host",
    "acquiring",
    "acquired",
    "releasing",
    "stopped",
    "joining",
    "member",
    "no-lease",
    "unknown",
];
const HEARTBEATD_STATES: [&str; 3] = ["sending", "stopped", "unknown"];

/// One metric family being written: its samples, in order.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

/// The families in the order they are printed.
#[derive(Default)]
struct Out {
    families: Vec<Family>,
    index: BTreeMap<&'static str, usize>,
}

impl Out {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let i = *self.index.entry(name).or_insert_with(|| {
            self.families.push(Family {
                name,
                help,
                kind,
                samples: Vec::new(),
            });
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
        if let Some(f) = self.families.get_mut(i) {
            f.samples.push((labels, value));
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.families {
            let _ = writeln!(s, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind);
            for (labels, v) in &f.samples {
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

/// Everything failoverctl knows, as metrics.
pub fn render_metrics(seen: &Seen, health: &Health, now_ms: u64) -> String {
    let mut o = Out::default();
    o.add(
        "ipfailover_health",
        "gauge",
        "failoverctl's verdict: 0 healthy, 1 degraded, 2 failed over or down (its exit code)",
        &[],
        f64::from(health.exit_code()),
    );
    o.add(
        "ipfailover_failed_over",
        "gauge",
        "1 while this host's failoverd takes, holds or gives back the peer's address",
        &[],
        if health.failed_over { 1.0 } else { 0.0 },
    );
    for daemon in Daemon::ALL {
        let name = daemon.name();
        let fresh = health.of(daemon);
        o.add(
            "ipfailover_status_file_present",
            "gauge",
            "1 if the daemon's status file exists",
            &[("daemon", name)],
            if matches!(fresh, Freshness::Missing) {
                0.0
            } else {
                1.0
            },
        );
        o.add(
            "ipfailover_up",
            "gauge",
            "1 if the daemon's status file is fresh (written recently, by a live process)",
            &[("daemon", name)],
            if matches!(fresh, Freshness::Fresh) {
                1.0
            } else {
                0.0
            },
        );
        if let Some(s) = seen.get(daemon).status() {
            daemon_metrics(&mut o, daemon, s, now_ms);
        }
    }
    o.render()
}

fn daemon_metrics(o: &mut Out, daemon: Daemon, s: &Status, now_ms: u64) {
    let d = daemon.name();
    let known: &[&str] = match daemon {
        Daemon::Failoverd => &FAILOVERD_STATES,
        Daemon::Heartbeatd => &HEARTBEATD_STATES,
    };
    let current = if known.contains(&s.state.as_str()) {
        s.state.as_str()
    } else {
        "unknown"
    };
    for state in known {
        o.add(
            "ipfailover_state",
            "gauge",
            "1 for the daemon's current state, 0 for the others it can be in",
            &[("daemon", d), ("state", state)],
            if *state == current { 1.0 } else { 0.0 },
        );
    }
    o.add(
        "ipfailover_status_age_seconds",
        "gauge",
        "Seconds since the daemon last wrote its status file",
        &[("daemon", d)],
        secs(now_ms.saturating_sub(s.updated_at_ms)),
    );
    o.add(
        "ipfailover_start_time_seconds",
        "gauge",
        "When the daemon started, seconds since the Unix epoch",
        &[("daemon", d)],
        secs(s.started_at_ms),
    );
    let pid = s.pid.to_string();
    o.add(
        "ipfailover_info",
        "gauge",
        "The daemon's version, host and process id (always 1)",
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
        .find(|t| t.to == s.state)
        .filter(|_| s.group.is_none())
    {
        o.add(
            "ipfailover_state_since_seconds",
            "gauge",
            "When the daemon entered its current state, seconds since the Unix epoch",
            &[("daemon", d)],
            secs(t.at_ms),
        );
    }
    if let Some(t) = s.timeout_ms {
        o.add(
            "ipfailover_timeout_seconds",
            "gauge",
            "failoverd's takeover timeout in force",
            &[("daemon", d)],
            secs(t),
        );
    }
    if let Some(i) = s.interval_ms {
        o.add(
            "ipfailover_interval_seconds",
            "gauge",
            "The heartbeat interval: heartbeatd's own, or the one the peer announces",
            &[("daemon", d)],
            secs(i),
        );
    }
    if let Some(off) = s.peer_clock_offset_ms {
        o.add(
            "ipfailover_peer_clock_offset_seconds",
            "gauge",
            "The peer's wall clock minus this host's (reported, never a reason to drop)",
            &[("daemon", d)],
            off as f64 / 1000.0,
        );
    }
    if let Some(v) = s.peer_verified {
        o.add(
            "ipfailover_peer_verified",
            "gauge",
            "1 once the peer's current boot has answered a challenge",
            &[("daemon", d)],
            if v { 1.0 } else { 0.0 },
        );
    }
    for l in &s.links {
        let iface = l.interface.clone().unwrap_or_default();
        let labels = [
            ("daemon", d),
            ("peer_address", l.peer_address.as_str()),
            ("interface", iface.as_str()),
        ];
        o.add(
            "ipfailover_link_up",
            "gauge",
            "1 while heartbeats arrive on the link within the timeout",
            &labels,
            if l.state == "up" { 1.0 } else { 0.0 },
        );
        o.add(
            "ipfailover_link_last_heartbeat_age_seconds",
            "gauge",
            "Seconds since the last valid heartbeat on the link",
            &labels,
            secs(link_age_ms(s, l, now_ms)),
        );
        o.add(
            "ipfailover_link_heartbeats_total",
            "counter",
            "Valid heartbeats received on the link",
            &labels,
            l.heartbeats as f64,
        );
    }
    for a in &s.addresses {
        o.add(
            "ipfailover_address_held",
            "gauge",
            "1 while this host has the address on its interface",
            &[
                ("daemon", d),
                ("address", a.address.as_str()),
                ("interface", a.interface.as_str()),
            ],
            if a.held { 1.0 } else { 0.0 },
        );
    }
    for a in &s.addresses {
        if let Some(at) = a.announced_ms {
            o.add(
                "ipfailover_address_announcement_age_seconds",
                "gauge",
                "Seconds since this host last announced the address (gratuitous ARP / \
                 unsolicited NA)",
                &[("daemon", d), ("address", a.address.as_str())],
                secs(now_ms.saturating_sub(at)),
            );
        }
    }
    if let Some(at) = s.last_announcement_ms {
        o.add(
            "ipfailover_last_announcement_age_seconds",
            "gauge",
            "Seconds since the daemon last announced any address in its own name",
            &[("daemon", d)],
            secs(now_ms.saturating_sub(at)),
        );
    }
    if s.group.is_none() && !s.addresses.is_empty() {
        let unanswered = s
            .addresses
            .iter()
            .filter(|a| !a.held && a.holder.as_deref() == Some("nobody"))
            .count();
        o.add(
            "ipfailover_addresses_unanswered",
            "gauge",
            "Addresses nobody answers for, as failoverd can tell: an outage",
            &[("daemon", d)],
            unanswered as f64,
        );
    }
    if let Some(t) = &s.third_host {
        o.add(
            "ipfailover_third_host",
            "gauge",
            "1 while a third host answers for an address the peer answers for",
            &[
                ("daemon", d),
                ("address", t.address.as_str()),
                ("mac", t.mac.as_str()),
            ],
            1.0,
        );
    }
    if let Some(c) = &s.conflict {
        o.add(
            "ipfailover_conflict",
            "gauge",
            "1 while another host answers for an address failoverd takes over or holds",
            &[
                ("daemon", d),
                ("address", c.address.as_str()),
                ("mac", c.mac.as_str()),
                ("holding", if c.holding { "yes" } else { "no" }),
            ],
            1.0,
        );
    }
    for send in &s.sends {
        let labels = [("daemon", d), ("to", send.to.as_str())];
        o.add(
            "ipfailover_sends_total",
            "counter",
            "Heartbeat datagrams the kernel took, per destination",
            &labels,
            send.sent as f64,
        );
        o.add(
            "ipfailover_send_failures_total",
            "counter",
            "Heartbeat datagrams the kernel refused, per destination",
            &labels,
            send.failed as f64,
        );
        o.add(
            "ipfailover_send_failing",
            "gauge",
            "1 while the latest send to the destination failed",
            &labels,
            if send.failing { 1.0 } else { 0.0 },
        );
    }
    let c = &s.counters;
    let counters: [(&'static str, &'static str, u64); 9] = [
        (
            "ipfailover_datagrams_accepted_total",
            "Valid datagrams accepted (failoverd: from the peer; heartbeatd: released)",
            c.accepted,
        ),
        (
            "ipfailover_heartbeats_sent_total",
            "Heartbeats sent (heartbeatd)",
            c.sent,
        ),
        ("ipfailover_hooks_run_total", "Hooks run", c.hooks_run),
        (
            "ipfailover_hooks_failed_total",
            "Hooks that failed, timed out or were refused",
            c.hooks_failed,
        ),
        (
            "ipfailover_mails_sent_total",
            "Notices mailed",
            c.mails_sent,
        ),
        (
            "ipfailover_mails_failed_total",
            "Failed attempts to mail a notice (each is retried)",
            c.mails_failed,
        ),
        (
            "ipfailover_mails_dropped_total",
            "Notices given up after retrying for an hour",
            c.mails_dropped,
        ),
        (
            "ipfailover_takeovers_total",
            "Takeovers completed",
            c.takeovers,
        ),
        (
            "ipfailover_releases_total",
            "Releases completed",
            c.releases,
        ),
    ];
    for (name, help, v) in counters {
        o.add(name, "counter", help, &[("daemon", d)], v as f64);
    }
    for (reason, n) in &c.dropped {
        o.add(
            "ipfailover_datagrams_dropped_total",
            "counter",
            "Datagrams dropped, by reason",
            &[("daemon", d), ("reason", reason.as_str())],
            *n as f64,
        );
    }
    if let Some(g) = &s.group {
        group_metrics(o, d, g);
    }
}

fn group_metrics(o: &mut Out, d: &str, g: &ipfailover::status::GroupStatus) {
    let base = [("daemon", d), ("group", g.name.as_str())];
    o.add(
        "ipfailover_group_etcd_reachable",
        "gauge",
        "1 if etcd answered this member's latest request",
        &base,
        if g.etcd_reachable { 1.0 } else { 0.0 },
    );
    o.add(
        "ipfailover_group_lease_held",
        "gauge",
        "1 while this member has an etcd lease",
        &base,
        if g.lease.is_some() { 1.0 } else { 0.0 },
    );
    if let Some(f) = g.fence_in_ms {
        o.add(
            "ipfailover_group_fence_in_seconds",
            "gauge",
            "Seconds before this member fences itself without another acknowledged renewal",
            &base,
            secs(f),
        );
    }
    o.add(
        "ipfailover_group_revision",
        "gauge",
        "The etcd revision of this member's latest view of the group",
        &base,
        g.revision as f64,
    );
    for m in &g.members {
        let prio = m.priority.to_string();
        o.add(
            "ipfailover_group_member",
            "gauge",
            "A live member of the group, with its priority (always 1)",
            &[
                ("daemon", d),
                ("group", g.name.as_str()),
                ("member", m.name.as_str()),
                ("priority", prio.as_str()),
                ("this", if m.this { "yes" } else { "no" }),
            ],
            1.0,
        );
        if let Some(l) = m.lease_left_s {
            o.add(
                "ipfailover_group_member_lease_left_seconds",
                "gauge",
                "Seconds a member's lease had left when etcd was last asked (-1: gone)",
                &[
                    ("daemon", d),
                    ("group", g.name.as_str()),
                    ("member", m.name.as_str()),
                ],
                l as f64,
            );
        }
    }
    for a in &g.addresses {
        let labels = [
            ("daemon", d),
            ("group", g.name.as_str()),
            ("address", a.address.as_str()),
        ];
        o.add(
            "ipfailover_group_address_has_holder",
            "gauge",
            "1 if some member holds the address, as this member sees the group",
            &labels,
            if a.holder.is_some() { 1.0 } else { 0.0 },
        );
        if let (Some(h), Some(e)) = (&a.holder, a.epoch) {
            o.add(
                "ipfailover_group_address_epoch",
                "gauge",
                "The holder's epoch for the address (its key's create revision)",
                &[
                    ("daemon", d),
                    ("group", g.name.as_str()),
                    ("address", a.address.as_str()),
                    ("holder", h.as_str()),
                ],
                e as f64,
            );
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

    fn seen_group() -> Seen {
        seen(Some(group_member()), None)
    }
}
