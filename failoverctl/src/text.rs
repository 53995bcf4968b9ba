//! `failoverctl status` for a person at a terminal.

use std::fmt::Write as _;

use ipfailover::status::{AddressHolder, DaemonState, LinkState, PeerState, Status};

use crate::health::{entered, held_addresses, link_age_ms, link_name, Freshness, Health};
use crate::observe::{Daemon, Seen};
use ipfailover::shown::shown;
use ipfailover::timefmt::{span, wall};

/// How many transitions the text shows, newest first.
const TRANSITIONS_SHOWN: usize = 3;

/// Whether a daemon gets a section: all do, but the heartbeatd of a group member, which runs
/// failoverd alone, when it has no status file (there is nothing to look for).
pub(crate) fn worth_showing(seen: &Seen, health: &Health, daemon: Daemon) -> bool {
    let group_member = seen
        .get(Daemon::Failoverd)
        .status()
        .is_some_and(|s| s.group.is_some());
    !(group_member
        && daemon == Daemon::Heartbeatd
        && matches!(health.of(daemon), Freshness::Missing))
}

/// The verdict with its reasons, then one block per daemon.
pub fn render_text(seen: &Seen, health: &Health, now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (exit {}): status in {} at {} UTC",
        health.headline(),
        health.exit_code(),
        seen.dir.display(),
        wall(now_ms, now_ms)
    );
    for r in &health.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    for daemon in Daemon::ALL {
        if !worth_showing(seen, health, daemon) {
            continue;
        }
        out.push('\n');
        let name = daemon.name();
        match (health.of(daemon), seen.get(daemon).status()) {
            (Freshness::Missing, _) => {
                let _ = writeln!(
                    out,
                    "{name}: no status file (looked for {})",
                    seen.path(daemon).display()
                );
            }
            (Freshness::Unreadable(e), _) => {
                let _ = writeln!(out, "{name}: unreadable status file: {e}");
            }
            // A status is always found with Stale and Fresh; nothing to show otherwise.
            (Freshness::Fresh | Freshness::Stale(_), None) => {}
            (Freshness::Stale(stale), Some(s)) => {
                let _ = writeln!(
                    out,
                    "{name} on {} (pid {}, v{}): STALE: {}",
                    s.hostname,
                    s.pid,
                    s.version,
                    stale.describe()
                );
                let held = held_addresses(s);
                let _ = write!(
                    out,
                    "  last known state: {} at {} UTC",
                    s.state,
                    wall(s.updated_at_ms, now_ms)
                );
                if !held.is_empty() {
                    let _ = write!(out, ", then holding {}", held.join(", "));
                }
                out.push('\n');
            }
            (Freshness::Fresh, Some(s)) => match daemon {
                Daemon::Failoverd => failoverd_block(&mut out, s, now_ms),
                Daemon::Heartbeatd => heartbeatd_block(&mut out, s, now_ms),
            },
        }
    }
    out
}

/// `name on host (pid 412, up 3h12m, v0.1.0): `
fn who(s: &Status, now_ms: u64) -> String {
    format!(
        "{} on {} (pid {}, up {}, v{}): ",
        s.daemon,
        s.hostname,
        s.pid,
        span(now_ms.saturating_sub(s.started_at_ms)),
        s.version
    )
}

/// What a daemon does now: a state label in capitals and the words after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `ACQUIRED`, `MONITORING`, `SENDING`…
    pub label: String,
    /// What goes with it: `holding 10.0.0.100 for 10.0.0.100 since 12:01:07 UTC (timeout)`.
    pub detail: String,
    /// Whether the text joins the two with a dash (a sentence of its own) or a space.
    pub dash: bool,
}

impl Summary {
    fn new(label: &str, detail: String, dash: bool) -> Summary {
        Summary {
            label: label.to_string(),
            detail,
            dash,
        }
    }

    /// `ACQUIRED — holding …`, `SENDING every 1s …`
    pub fn line(&self) -> String {
        if self.detail.is_empty() {
            self.label.clone()
        } else if self.dash {
            format!("{} — {}", self.label, self.detail)
        } else {
            format!("{} {}", self.label, self.detail)
        }
    }
}

/// What failoverd does now.
pub fn failoverd_summary(s: &Status, now_ms: u64) -> Summary {
    if let Some(g) = &s.group {
        let held: Vec<&str> = g
            .addresses
            .iter()
            .filter(|a| a.held)
            .map(|a| a.address.as_str())
            .collect();
        return Summary::new(
            &s.state.as_str().to_uppercase(),
            format!(
                "member {} of group {}, holds {}",
                g.member,
                g.name,
                if held.is_empty() {
                    "nothing".to_string()
                } else {
                    held.join(" ")
                }
            ),
            true,
        );
    }
    let peer = s.peer.as_deref().unwrap_or("(no peer)");
    let since = entered(s)
        .map(|t| format!(" since {} UTC ({})", wall(t.at_ms, now_ms), t.reason))
        .unwrap_or_default();
    let all: Vec<&str> = s.addresses.iter().map(|a| a.address.as_str()).collect();
    let held: Vec<&str> = s
        .addresses
        .iter()
        .filter(|a| a.held)
        .map(|a| a.address.as_str())
        .collect();
    let timeout = s
        .timeout_ms
        .map(|t| format!(", timeout {}", span(t)))
        .unwrap_or_default();
    match &s.state {
        DaemonState::BootGrace => Summary::new(
            "BOOT-GRACE",
            format!("not judging peer {peer} yet{timeout}{since}"),
            true,
        ),
        DaemonState::Monitoring => {
            let up = s.links.iter().filter(|l| l.state == LinkState::Up).count();
            let detail = if s.links.is_empty() {
                format!("peer {peer}, no heartbeat heard yet{timeout}")
            } else {
                format!("peer {peer}, {up} of {} links up{timeout}", s.links.len())
            };
            Summary::new("MONITORING", detail, false)
        }
        DaemonState::Acquiring => Summary::new(
            "ACQUIRING",
            format!("taking over {} for {peer}{since}", all.join(" ")),
            true,
        ),
        DaemonState::Acquired => Summary::new(
            "ACQUIRED",
            format!(
                "holding {} for {peer}{since}",
                if held.is_empty() {
                    "nothing".to_string()
                } else {
                    held.join(" ")
                }
            ),
            true,
        ),
        DaemonState::Releasing => Summary::new(
            "RELEASING",
            format!("giving {} back to {peer}{since}", all.join(" ")),
            true,
        ),
        DaemonState::Conflict => Summary::new(
            "CONFLICT",
            format!(
                "no heartbeat from {peer}, but {} still answers{}: not taking it over{since}",
                s.conflict
                    .as_ref()
                    .map_or_else(|| all.join(" "), |c| c.address.clone()),
                s.conflict
                    .as_ref()
                    .map_or(String::new(), |c| format!(" from {}", c.mac))
            ),
            true,
        ),
        DaemonState::ThirdHost => Summary::new(
            "THIRD-HOST",
            s.third_host.as_ref().map_or_else(
                || format!("a third host answers for an address of {peer}"),
                |t| {
                    format!(
                        "{} answers from {} besides {peer} ({})",
                        t.address, t.mac, t.peer_mac
                    )
                },
            ),
            true,
        ),
        DaemonState::Stopped => {
            Summary::new("STOPPED", format!("not watching {peer}{since}"), true)
        }
        other => Summary::new(
            &other.as_str().to_uppercase(),
            "(unknown state)".to_string(),
            false,
        ),
    }
}

/// What heartbeatd does now.
pub fn heartbeatd_summary(s: &Status) -> Summary {
    let every = s
        .interval_ms
        .map(|i| format!("every {} ", span(i)))
        .unwrap_or_default();
    let to = if s.destinations.is_empty() {
        String::new()
    } else {
        format!("to {}, ", s.destinations.join(" "))
    };
    match &s.state {
        DaemonState::Sending => Summary::new(
            "SENDING",
            format!("{every}{to}{} sent", s.counters.sent),
            false,
        ),
        DaemonState::Stopped => Summary::new(
            "STOPPED",
            format!("said goodbye, {} sent", s.counters.sent),
            true,
        ),
        other => Summary::new(
            &other.as_str().to_uppercase(),
            "(unknown state)".to_string(),
            false,
        ),
    }
}

/// `accepted 8254, dropped 12 (bad-tag 10, replay 2)`
pub fn datagram_counters(s: &Status, accepted_name: &str) -> String {
    let c = &s.counters;
    // Saturating: a hostile or corrupt file's counters must not overflow into nonsense.
    let dropped = c
        .dropped
        .values()
        .fold(0u64, |sum, n| sum.saturating_add(*n));
    let mut text = format!("{accepted_name} {}, dropped {dropped}", c.accepted);
    if dropped > 0 {
        let parts: Vec<String> = c
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = write!(text, " ({})", parts.join(", "));
    }
    text
}

/// A group member's view: the members, then each address with its holder. What came from
/// etcd (names, errors) is escaped by failoverd; escaped here again, since a status file is
/// not trusted to be failoverd's.
fn group_block(out: &mut String, s: &Status, g: &ipfailover::status::GroupStatus, now_ms: u64) {
    let etcd = match (&g.endpoint, g.etcd_reachable) {
        (Some(e), true) => format!("etcd answers at {e}"),
        (e, false) => format!(
            "etcd does NOT answer{}{}",
            e.as_deref().map(|e| format!(" at {e}")).unwrap_or_default(),
            g.etcd_error
                .as_deref()
                .map(|e| format!(": {}", shown(e)))
                .unwrap_or_default()
        ),
        (None, true) => "etcd answers".to_string(),
    };
    let lease = match (&g.lease, g.fence_in_ms) {
        (Some(id), Some(f)) => format!("lease {id} (fences in {} without a renewal)", span(f)),
        _ => "NO lease".to_string(),
    };
    let _ = writeln!(
        out,
        "{}{} — member {} of group {}, priority {}, lease TTL {}, preemption {}",
        who(s, now_ms),
        s.state.as_str().to_uppercase(),
        g.member,
        g.name,
        g.priority,
        span(g.lease_ttl_ms),
        if g.preempt { "on" } else { "off" }
    );
    let _ = writeln!(out, "  {etcd}; {lease}; view at revision {}", g.revision);
    for m in &g.members {
        let _ = writeln!(
            out,
            "  member {:<12} priority {:>3}  {}  lease {}{}",
            shown(&m.name),
            m.priority,
            m.mode
                .as_deref()
                .map_or("live".to_string(), |w| w.to_uppercase()),
            m.lease_left_s.map_or_else(
                || "?".to_string(),
                |l| if l < 0 {
                    "gone".to_string()
                } else {
                    format!("{l}s left")
                }
            ),
            if m.this { "  (this host)" } else { "" }
        );
    }
    for a in &g.addresses {
        let holder = match (&a.holder, a.epoch) {
            (Some(h), Some(e)) => format!("held by {} (epoch {e})", shown(h)),
            (Some(h), None) => format!("held by {}", shown(h)),
            _ => "NO HOLDER".to_string(),
        };
        let since = a
            .since_ms
            .map(|t| format!(" since {} UTC", wall(t, now_ms)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  address {}/{} on {}: {holder}{since}; here {}{}{}",
            a.address,
            a.prefix,
            a.interface,
            a.state,
            if a.link_down { " (LINK DOWN here)" } else { "" },
            a.error
                .as_deref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        );
    }
    if !s.transitions.is_empty() {
        let _ = writeln!(out, "  last transitions (UTC, newest first):");
        for t in s.transitions.iter().rev().take(TRANSITIONS_SHOWN) {
            let _ = writeln!(
                out,
                "    {} {}: {} -> {}",
                wall(t.at_ms, now_ms),
                t.reason,
                t.from,
                t.to
            );
        }
    }
    let c = &s.counters;
    let _ = writeln!(
        out,
        "  counters: hooks run {} / failed {}, mails sent {} / failed {}, takeovers {}, releases {}",
        c.hooks_run, c.hooks_failed, c.mails_sent, c.mails_failed, c.takeovers, c.releases
    );
}

fn failoverd_block(out: &mut String, s: &Status, now_ms: u64) {
    if let Some(g) = &s.group {
        group_block(out, s, g, now_ms);
        return;
    }
    let _ = writeln!(
        out,
        "{}{}",
        who(s, now_ms),
        failoverd_summary(s, now_ms).line()
    );
    if let Some(p) = &s.pause {
        let _ = writeln!(
            out,
            "  PAUSED since {} UTC{}: no takeover (failoverctl resume)",
            wall(p.since_ms, now_ms),
            p.until_ms
                .map(|u| format!(", until {} UTC", wall(u, now_ms)))
                .unwrap_or_default()
        );
    }
    if s.held_by_hand {
        let _ = writeln!(
            out,
            "  held by an administrator's takeover: until failoverctl release"
        );
    }
    let rows: Vec<[String; 4]> = s
        .links
        .iter()
        .map(|l| {
            [
                format!("link {}", link_name(l)),
                l.state.as_str().to_uppercase(),
                format!("last heartbeat {} ago", span(link_age_ms(s, l, now_ms))),
                format!("{} heartbeats", l.heartbeats),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0], r[1], r[2], r[3]
        );
    }
    if let Some(p) = s
        .peer_state
        .as_ref()
        .filter(|p| **p == PeerState::DaemonStopped)
    {
        let _ = writeln!(
            out,
            "  peer: {p}: its heartbeatd said goodbye, its host still answers for its own \
             address (taken over when it stops answering)"
        );
    }
    for a in &s.addresses {
        let who = match (a.held, &a.holder) {
            (true, _) => "held here".to_string(),
            (false, Some(AddressHolder::Peer)) => "not held (the peer answers for it)".to_string(),
            (false, Some(AddressHolder::Nobody)) => "NOBODY ANSWERS for it".to_string(),
            (false, Some(AddressHolder::AnotherHost)) => {
                "not held (another host answers for it)".to_string()
            }
            (false, _) => "not held".to_string(),
        };
        let _ = writeln!(
            out,
            "  address {}/{} on {}: {who}",
            a.address, a.prefix, a.interface,
        );
    }
    if !s.transitions.is_empty() {
        let _ = writeln!(out, "  last transitions (UTC, newest first):");
        for t in s.transitions.iter().rev().take(TRANSITIONS_SHOWN) {
            let _ = writeln!(
                out,
                "    {} {} -> {} ({}, {} ago, after {} in {})",
                wall(t.at_ms, now_ms),
                t.from,
                t.to,
                t.reason,
                span(now_ms.saturating_sub(t.at_ms)),
                span(t.duration_ms),
                t.from
            );
        }
    }
    let c = &s.counters;
    let _ = writeln!(
        out,
        "  counters: {}, hooks run {} / failed {}, mails sent {} / failed {}, takeovers {}, \
         releases {}",
        datagram_counters(s, "accepted"),
        c.hooks_run,
        c.hooks_failed,
        c.mails_sent,
        c.mails_failed,
        c.takeovers,
        c.releases
    );
}

fn heartbeatd_block(out: &mut String, s: &Status, now_ms: u64) {
    let _ = writeln!(out, "{}{}", who(s, now_ms), heartbeatd_summary(s).line());
    let _ = writeln!(
        out,
        "  counters: sent {}, {}",
        s.counters.sent,
        datagram_counters(s, "released received")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::health;
    use crate::health::tests::*;
    use crate::observe::Found;

    fn text(fo: Option<Status>, hb: Option<Status>) -> String {
        let seen = seen(fo, hb);
        render_text(&seen, &health(&seen, NOW, HOST), NOW)
    }

    #[test]
    fn names_and_errors_from_etcd_are_shown_escaped() {
        let mut s = group_member();
        if let Some(g) = s.group.as_mut() {
            g.members[0].name = "m1\n  member FAKE priority 255".into();
            g.addresses[1].holder = Some("m1\u{1b}[2J\u{202e}".into());
            g.etcd_reachable = false;
            g.etcd_error = Some("etcd says: x\r\nHEALTHY".into());
        }
        let t = text(Some(s), None);
        assert!(!t.contains("FAKE priority 255\n"), "{t}");
        assert!(t.contains("member m1\\n  member FAKE"), "{t}");
        assert!(
            !t.contains('\u{1b}') && !t.contains('\u{202e}') && !t.contains('\r'),
            "{t}"
        );
        assert!(t.contains("x\\r\\nHEALTHY"), "{t}");
    }

    #[test]
    fn text_healthy() {
        let t = text(Some(failoverd()), Some(heartbeatd()));
        let expected = "\
HEALTHY (exit 0): status in /var/run/ipfailover at 14:03:04 UTC

failoverd on sec-1 (pid 412, up 3h12m, v0.1.0): MONITORING peer 10.0.0.100, 2 of 2 links up, timeout 3s
  link 10.0.0.100 (eth0)   UP  last heartbeat 0.7s ago  4021 heartbeats
  link 192.168.0.1 (eth1)  UP  last heartbeat 0.8s ago  4233 heartbeats
  address 10.0.0.100/24 on eth0: not held
  last transitions (UTC, newest first):
    10:51:07 boot-grace -> monitoring (boot-grace-over, 3h11m ago, after 3s in boot-grace)
  counters: accepted 8254, dropped 12 (bad-tag 10, replay 2), hooks run 0 / failed 0, mails sent 0 / failed 0, takeovers 0, releases 0

heartbeatd on pri-1 (pid 99, up 3h12m, v0.1.0): SENDING every 1s to 10.0.0.255:1694 192.168.0.255:1694, 11520 sent
  counters: sent 11520, released received 0, dropped 0
";
        assert_eq!(t, expected, "\n{t}");
    }

    #[test]
    fn degraded_by_a_lost_link() {
        let mut s = failoverd();
        s.links[0] = link("10.0.0.100", "eth0", LinkState::Lost, 132_500, 4021);
        let t = text(Some(s), Some(heartbeatd()));
        assert!(t.starts_with("DEGRADED (exit 1): "), "{t}");
        assert!(
            t.contains("\n  - failoverd: link 10.0.0.100 (eth0) is lost: no heartbeat for 2m13s"),
            "{t}"
        );
        assert!(
            t.contains("MONITORING peer 10.0.0.100, 1 of 2 links up"),
            "{t}"
        );
        assert!(
            t.contains(
                "  link 10.0.0.100 (eth0)   LOST  last heartbeat 2m13s ago  4021 heartbeats\n"
            ),
            "{t}"
        );
    }

    #[test]
    fn text_failed_over() {
        let t = text(Some(failed_over()), None);
        assert!(t.starts_with("FAILED OVER (exit 2): "), "{t}");
        assert!(
            t.contains(
                "failoverd on sec-1 (pid 412, up 3h12m, v0.1.0): ACQUIRED — holding 10.0.0.100 \
                 for 10.0.0.100 since 12:01:07 UTC (timeout)\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("  address 10.0.0.100/24 on eth0: held here\n"),
            "{t}"
        );
        assert!(t.contains("SILENT"), "{t}");
        assert!(
            t.contains(
                "    12:01:07 acquiring -> acquired (timeout, 2h1m ago, after 0.1s in acquiring)\n"
            ),
            "{t}"
        );
        assert!(t.contains("    12:01:07 monitoring -> acquiring (timeout, 2h1m ago, after 1h in monitoring)\n"), "{t}");
        assert!(t.contains(
            "heartbeatd: no status file (looked for /var/run/ipfailover/heartbeatd.json)"
        ));
    }

    #[test]
    fn text_stale() {
        let mut s = failed_over();
        s.updated_at_ms = NOW - 300_000;
        let t = text(Some(s), None);
        assert!(t.starts_with("DOWN (exit 2): "), "{t}");
        assert!(
            t.contains(
                "failoverd on sec-1 (pid 412, v0.1.0): STALE: not updated for 5m (daemon not \
                 running?)\n  last known state: acquired at 13:58:04 UTC, then holding \
                 10.0.0.100/24 on eth0\n"
            ),
            "{t}"
        );
        // Nothing of the stale file is shown as if it were current.
        assert!(!t.contains("ACQUIRED"), "{t}");
        assert!(!t.contains("link "), "{t}");
    }

    #[test]
    fn missing_and_unreadable() {
        let t = text(None, None);
        assert!(
            t.starts_with("DOWN (exit 2): status in /var/run/ipfailover"),
            "{t}"
        );
        assert!(
            t.contains("failoverd: no status file (looked for /var/run/ipfailover/failoverd.json)")
        );
        assert!(t.contains(
            "heartbeatd: no status file (looked for /var/run/ipfailover/heartbeatd.json)"
        ));
        let mut seen = seen(None, Some(heartbeatd()));
        seen.failoverd = Found::Unreadable {
            error: "x is not JSON".into(),
            raw: None,
        };
        let t = render_text(&seen, &health(&seen, NOW, HOST), NOW);
        assert!(
            t.contains("\nfailoverd: unreadable status file: x is not JSON\n"),
            "{t}"
        );
    }
}
