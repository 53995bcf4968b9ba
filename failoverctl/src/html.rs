//! `failoverctl status --html FILE`: one self-contained page (inline CSS, no scripts, no
//! external assets) that reloads itself every 5 s and says at a glance whether the pair is
//! healthy: a banner in green, amber or red, then a card per daemon.
//!
//! Colours: green = monitoring with every link up, or sending; amber = degraded; red = failed
//! over, down or stale; grey = nothing known (missing file, or details of a stale one). Every
//! colour also has a word next to it, for those who do not see it.

use std::fmt::Write as _;

use ipfailover::status::{DaemonState, LinkState, Status};

use crate::health::{link_age_ms, Freshness, Health, Level};
use crate::observe::{Daemon, Seen};
use crate::text::{datagram_counters, failoverd_summary, heartbeatd_summary};
use ipfailover::timefmt::{span, wall};

/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// How many transitions the page shows, newest first.
const TRANSITIONS_SHOWN: usize = 4;

/// A colour with a meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// As it should be.
    Green,
    /// Needs a look.
    Amber,
    /// Failed over, down or stale.
    Red,
    /// Not known, or not current.
    Grey,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Green => "green",
            Tone::Amber => "amber",
            Tone::Red => "red",
            Tone::Grey => "grey",
        }
    }
}

/// The banner's colour.
pub fn level_tone(level: Level) -> Tone {
    match level {
        Level::Healthy => Tone::Green,
        Level::Degraded => Tone::Amber,
        Level::Down => Tone::Red,
    }
}

/// A daemon's colour: its state if its file is fresh, red if stale, grey if missing.
pub fn daemon_tone(daemon: Daemon, freshness: &Freshness, status: Option<&Status>) -> Tone {
    let s = match (freshness, status) {
        (Freshness::Missing, _) => return Tone::Grey,
        (Freshness::Unreadable(_) | Freshness::Stale(_), _) | (Freshness::Fresh, None) => {
            return Tone::Red
        }
        (Freshness::Fresh, Some(s)) => s,
    };
    if let (Daemon::Failoverd, Some(g)) = (daemon, &s.group) {
        let levels = crate::health::group_health(s, g);
        return match levels.iter().map(|(l, _)| *l).max() {
            None => Tone::Green,
            Some(Level::Down) => Tone::Red,
            Some(_) => Tone::Amber,
        };
    }
    match (daemon, &s.state) {
        (Daemon::Failoverd, DaemonState::Monitoring)
            if !s.links.is_empty() && s.links.iter().all(|l| l.state == LinkState::Up) =>
        {
            Tone::Green
        }
        (Daemon::Failoverd, state) if state.failed_over() || *state == DaemonState::Stopped => {
            Tone::Red
        }
        (Daemon::Heartbeatd, DaemonState::Sending) => Tone::Green,
        _ => Tone::Amber,
    }
}

/// A link's colour: up is green, lost (another link still heard) amber, silent red.
pub fn link_tone(state: &LinkState) -> Tone {
    match state {
        LinkState::Up => Tone::Green,
        LinkState::Silent => Tone::Red,
        _ => Tone::Amber,
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
*{box-sizing:border-box}
html{background:#e9ecf0}
body{margin:0;color:#1b2129;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif}
.banner{padding:14px 28px 12px;color:#fff}
.banner h1{margin:0;font-size:46px;line-height:1.1;font-weight:800;letter-spacing:.03em}
.banner .where{margin-top:2px;font-size:15px;opacity:.9}
.banner ul{margin:8px 0 0;padding-left:22px;font-size:16px;font-weight:500}
.banner li{margin:2px 0}
.banner.green{background:#17803a}.banner.amber{background:#b45f06}.banner.red{background:#b42318}.banner.grey{background:#5d6670}
main{display:grid;grid-template-columns:1fr;gap:14px;padding:14px 18px 4px;align-items:start}
@media (min-width:860px){main{grid-template-columns:3fr 2fr}}
.card{background:#fff;border-radius:8px;border-top:8px solid #5d6670;padding:10px 16px 12px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
.card.green{border-color:#17803a}.card.amber{border-color:#d97706}.card.red{border-color:#b42318}.card.grey{border-color:#8a939c}
.card h2{margin:0;font-size:20px;line-height:1.5}
.card h2 .host{font-weight:400;color:#4a5562;white-space:nowrap}
.summary{margin:6px 0 4px;font-size:16px;font-weight:600}
.facts{margin:0 0 6px;color:#4a5562;font-size:13px}
.old{opacity:.6}
.note{margin:6px 0;color:#4a5562;font-style:italic}
.badge{display:inline-block;min-width:64px;text-align:center;padding:1px 9px;border-radius:4px;color:#fff;font-weight:700;font-size:13px;letter-spacing:.04em;white-space:nowrap}
h2 .badge{font-size:16px;padding:2px 12px;margin-right:8px;vertical-align:2px}
.badge.green{background:#17803a}.badge.amber{background:#c26a06}.badge.red{background:#b42318}.badge.grey{background:#6b7580}
p{margin:2px 0}
h3{margin:10px 0 2px;font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.07em;color:#5d6670}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:3px 10px 3px 0;border-bottom:1px solid #e4e7eb;vertical-align:middle}
th{font-size:12px;font-weight:600;color:#5d6670;white-space:nowrap}
td.nw{white-space:nowrap}
small{color:#5d6670}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.mono{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,monospace;font-size:13px}
footer{padding:6px 18px 14px;color:#5d6670;font-size:12px}
";

/// The page.
pub fn render_html(seen: &Seen, health: &Health, now_ms: u64) -> String {
    let mut out = String::new();
    let hosts: Vec<&str> = Daemon::ALL
        .iter()
        .filter_map(|d| seen.get(*d).status())
        .map(|s| s.hostname.as_str())
        .collect();
    let mut hosts_shown = hosts.clone();
    hosts_shown.dedup();
    let where_ = if hosts_shown.is_empty() {
        "ipfailover".to_string()
    } else {
        format!("ipfailover on {}", hosts_shown.join(", "))
    };
    let tone = level_tone(health.level);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} — {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        health.headline(),
        esc(&where_)
    );
    let _ = write!(
        out,
        "<header class=\"banner {}\">\n<h1>{}</h1>\n<div class=\"where\">{} · status read \
         from {} at {} UTC · exit code {}</div>\n",
        tone.class(),
        health.headline(),
        esc(&where_),
        esc(&seen.dir.display().to_string()),
        wall(now_ms, now_ms),
        health.exit_code()
    );
    if !health.reasons.is_empty() {
        out.push_str("<ul>\n");
        for r in &health.reasons {
            let _ = writeln!(out, "<li>{}</li>", esc(r));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</header>\n<main>\n");
    for daemon in Daemon::ALL {
        if !crate::text::worth_showing(seen, health, daemon) {
            continue;
        }
        card(&mut out, seen, health, daemon, now_ms);
    }
    let _ = write!(
        out,
        "</main>\n<footer>Written by failoverctl {} at {} UTC. The page reloads every \
         {REFRESH_SECONDS} s; it is current only while something runs \
         <span class=\"mono\">failoverctl status --html</span> again (a timer or cron job). \
         Times are UTC.</footer>\n</body>\n</html>\n",
        esc(env!("CARGO_PKG_VERSION")),
        wall(now_ms, now_ms)
    );
    out
}

fn badge(tone: Tone, text: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        tone.class(),
        esc(text)
    )
}

fn card(out: &mut String, seen: &Seen, health: &Health, daemon: Daemon, now_ms: u64) {
    let name = daemon.name();
    let freshness = health.of(daemon);
    let found = seen.get(daemon);
    let status = found.status();
    let tone = daemon_tone(daemon, freshness, status);
    let _ = writeln!(out, "<section class=\"card {}\">", tone.class());
    match (freshness, status) {
        (Freshness::Missing, _) => {
            let _ = write!(
                out,
                "<h2>{} {name}</h2>\n<p class=\"note\">No status file: looked for <span \
                 class=\"mono\">{}</span>. Not running on this host, or the state directory \
                 is another one.</p>\n",
                badge(Tone::Grey, "NO FILE"),
                esc(&seen.path(daemon).display().to_string())
            );
        }
        (Freshness::Unreadable(e), _) => {
            let _ = write!(
                out,
                "<h2>{} {name}</h2>\n<p class=\"note\">{}</p>\n",
                badge(Tone::Red, "UNREADABLE"),
                esc(e)
            );
        }
        (Freshness::Stale(stale), Some(s)) => {
            let _ = write!(
                out,
                "<h2>{} {name} <span class=\"host\">on {}</span></h2>\n\
                 <p class=\"summary\">{}</p>\n\
                 <p class=\"note\">Last known state: <b>{}</b>, as of {} UTC (not \
                 current):</p>\n<div class=\"old\">\n",
                badge(Tone::Red, "STALE"),
                esc(&s.hostname),
                esc(&stale.describe()),
                esc(s.state.as_str()),
                wall(s.updated_at_ms, now_ms)
            );
            details(out, daemon, s, now_ms, false);
            out.push_str("</div>\n");
        }
        (Freshness::Fresh, Some(s)) => {
            let mut summary = match daemon {
                Daemon::Failoverd => failoverd_summary(s, now_ms),
                Daemon::Heartbeatd => heartbeatd_summary(s),
            };
            // The card lists heartbeatd's destinations below; the line needs only the pace.
            if daemon == Daemon::Heartbeatd && s.state == DaemonState::Sending {
                summary.detail = match s.interval_ms {
                    Some(i) => format!("every {}, {} sent", span(i), s.counters.sent),
                    None => format!("{} sent", s.counters.sent),
                };
            }
            let _ = write!(
                out,
                "<h2>{} {name} <span class=\"host\">on {}</span></h2>\n\
                 <p class=\"summary\">{}</p>\n",
                badge(tone, &summary.label),
                esc(&s.hostname),
                esc(&summary.detail)
            );
            details(out, daemon, s, now_ms, true);
        }
        (Freshness::Fresh | Freshness::Stale(_), None) => {}
    }
    out.push_str("</section>\n");
}

/// Facts, links, addresses, transitions and counters; `current` is false for a stale file,
/// whose colours are then grey: nothing in it may look healthy.
fn details(out: &mut String, daemon: Daemon, s: &Status, now_ms: u64, current: bool) {
    let tone = |t: Tone| if current { t } else { Tone::Grey };
    let mut facts = vec![
        format!("pid {}", s.pid),
        // A stale daemon's uptime ended, as far as anyone knows, at its last write.
        format!(
            "up {}",
            span(if current { now_ms } else { s.updated_at_ms }.saturating_sub(s.started_at_ms))
        ),
        format!("v{}", s.version),
    ];
    if let Some(t) = s.timeout_ms {
        facts.push(format!("timeout {}", span(t)));
    }
    if let (Daemon::Failoverd, Some(i)) = (daemon, s.interval_ms) {
        facts.push(format!("peer interval {}", span(i)));
    }
    facts.push(format!(
        "written {} ago",
        span(now_ms.saturating_sub(s.updated_at_ms))
    ));
    let _ = writeln!(out, "<p class=\"facts\">{}</p>", esc(&facts.join(" · ")));

    if daemon == Daemon::Heartbeatd {
        if !s.destinations.is_empty() {
            out.push_str("<h3>Heartbeats go to</h3>\n<p class=\"mono\">");
            out.push_str(&esc(&s.destinations.join("  ")));
            out.push_str("</p>\n");
        }
        let _ = writeln!(
            out,
            "<h3>Counters</h3>\n<p>sent {} · {}</p>",
            s.counters.sent,
            esc(&datagram_counters(s, "released received"))
        );
        return;
    }

    if let Some(g) = &s.group {
        group_details(out, g, now_ms, current);
        return;
    }
    out.push_str("<h3>Links</h3>\n");
    if s.links.is_empty() {
        out.push_str("<p class=\"note\">No heartbeat received from the peer yet.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>peer address</th><th>interface</th><th>state</th>\
             <th>last heartbeat</th><th class=\"n\">heartbeats</th></tr>\n",
        );
        for l in &s.links {
            let _ = writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{} ago</td>\
                 <td class=\"n\">{}</td></tr>",
                esc(&l.peer_address),
                esc(l.interface.as_deref().unwrap_or("?")),
                badge(tone(link_tone(&l.state)), &l.state.as_str().to_uppercase()),
                span(link_age_ms(s, l, now_ms)),
                l.heartbeats
            );
        }
        out.push_str("</table>\n");
    }

    if !s.addresses.is_empty() {
        out.push_str(
            "<h3>Addresses taken over</h3>\n<table>\n<tr><th>address</th><th>interface</th>\
             <th>on this host</th></tr>\n",
        );
        for a in &s.addresses {
            let held = if a.held {
                badge(tone(Tone::Red), "HELD")
            } else {
                badge(tone(Tone::Green), "NOT HELD")
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"mono\">{}/{}</td><td>{}</td><td>{held}</td></tr>",
                esc(&a.address),
                a.prefix,
                esc(&a.interface)
            );
        }
        out.push_str("</table>\n");
    }

    if !s.transitions.is_empty() {
        out.push_str(
            "<h3>Last transitions (UTC)</h3>\n<table>\n<tr><th>when</th><th>change</th>\
             <th>reason</th><th>previous lasted</th></tr>\n",
        );
        for t in s.transitions.iter().rev().take(TRANSITIONS_SHOWN) {
            let _ = writeln!(
                out,
                "<tr><td class=\"nw\">{} <small>{} ago</small></td><td class=\"nw\">{} → {}</td>\
                 <td class=\"nw\">{}</td><td class=\"nw\">{}</td></tr>",
                wall(t.at_ms, now_ms),
                span(now_ms.saturating_sub(t.at_ms)),
                esc(&t.from),
                esc(&t.to),
                esc(&t.reason),
                span(t.duration_ms),
            );
        }
        out.push_str("</table>\n");
    }

    let c = &s.counters;
    let _ = writeln!(
        out,
        "<h3>Counters</h3>\n<p>{} · hooks run {} / failed {} · mails sent {} / failed {} · \
         takeovers {} · releases {}</p>",
        esc(&datagram_counters(s, "accepted")),
        c.hooks_run,
        c.hooks_failed,
        c.mails_sent,
        c.mails_failed,
        c.takeovers,
        c.releases
    );
}

/// A group member's view: etcd, the members, each address's holder.
fn group_details(
    out: &mut String,
    g: &ipfailover::status::GroupStatus,
    now_ms: u64,
    current: bool,
) {
    let tone = |t: Tone| if current { t } else { Tone::Grey };
    let etcd = if g.etcd_reachable {
        badge(tone(Tone::Green), "ANSWERS")
    } else {
        badge(tone(Tone::Amber), "DOES NOT ANSWER")
    };
    let _ = writeln!(
        out,
        "<h3>Group {}</h3>\n<p>member <b>{}</b> · priority {} · lease TTL {} · preemption {} · \
         etcd {} {} · revision {}</p>",
        esc(&g.name),
        esc(&g.member),
        g.priority,
        span(g.lease_ttl_ms),
        if g.preempt { "on" } else { "off" },
        esc(g.endpoint.as_deref().unwrap_or("")),
        etcd,
        g.revision
    );
    if let Some(e) = &g.etcd_error {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(e));
    }
    out.push_str(
        "<table>\n<tr><th>member</th><th class=\"n\">priority</th><th>lease left</th></tr>\n",
    );
    for m in &g.members {
        let _ = writeln!(
            out,
            "<tr><td>{}{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&m.name),
            if m.this {
                " <small>(this host)</small>"
            } else {
                ""
            },
            m.priority,
            m.lease_left_s
                .map_or_else(|| "?".to_string(), |l| format!("{l}s"))
        );
    }
    out.push_str("</table>\n");
    out.push_str(
        "<h3>Addresses</h3>\n<table>\n<tr><th>address</th><th>interface</th><th>holder</th>\
         <th class=\"n\">epoch</th><th>since (UTC)</th><th>here</th></tr>\n",
    );
    for a in &g.addresses {
        let holder = match &a.holder {
            Some(h) => esc(h),
            None => badge(tone(Tone::Red), "NO HOLDER"),
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"mono\">{}/{}</td><td>{}</td><td>{holder}</td><td class=\"n\">{}</td>\
             <td class=\"nw\">{}</td><td>{}</td></tr>",
            esc(&a.address),
            a.prefix,
            esc(&a.interface),
            a.epoch.map(|e| e.to_string()).unwrap_or_default(),
            a.since_ms.map(|t| wall(t, now_ms)).unwrap_or_default(),
            esc(a.state.as_str())
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::health;
    use crate::health::tests::*;

    fn page(seen: &Seen) -> String {
        render_html(seen, &health(seen, NOW, HOST), NOW)
    }

    fn check_shape(html: &str) {
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.ends_with("</html>\n"));
        // Self-contained: no scripts, no external assets.
        for bad in ["<script", "src=", "href=", "url(", "@import"] {
            assert!(!html.contains(bad), "{bad} in the page");
        }
    }

    #[test]
    fn healthy_page_is_green() {
        let html = page(&seen(Some(failoverd()), Some(heartbeatd())));
        check_shape(&html);
        assert!(html.contains("<header class=\"banner green\">\n<h1>HEALTHY</h1>"));
        assert!(html.contains("<title>HEALTHY — ipfailover on sec-1, pri-1</title>"));
        assert!(html.contains("<section class=\"card green\">\n<h2><span class=\"badge green\">MONITORING</span> failoverd"));
        assert!(html.contains("<span class=\"badge green\">SENDING</span> heartbeatd"));
        assert!(!html.contains("class=\"badge amber\""));
        assert!(!html.contains("badge red"));
    }

    #[test]
    fn a_lost_link_is_amber() {
        let mut s = failoverd();
        s.links[0] = link("10.0.0.100", "eth0", LinkState::Lost, 133_000, 4021);
        let html = page(&seen(Some(s), Some(heartbeatd())));
        check_shape(&html);
        assert!(html.contains("<header class=\"banner amber\">\n<h1>DEGRADED</h1>"));
        assert!(html.contains("<section class=\"card amber\">"));
        assert!(html.contains("<span class=\"badge amber\">LOST</span>"));
        assert!(html.contains("<span class=\"badge green\">UP</span>"));
    }

    #[test]
    fn failed_over_is_red() {
        let html = page(&seen(Some(failed_over()), None));
        check_shape(&html);
        assert!(html.contains("<header class=\"banner red\">\n<h1>FAILED OVER</h1>"));
        assert!(html.contains("<span class=\"badge red\">ACQUIRED</span> failoverd"));
        assert!(html.contains("holding 10.0.0.100 for 10.0.0.100 since 12:01:07 UTC (timeout)"));
        assert!(html.contains("<span class=\"badge red\">HELD</span>"));
        assert!(html.contains("<span class=\"badge grey\">NO FILE</span> heartbeatd"));
    }

    #[test]
    fn stale_is_red_and_its_details_grey() {
        let mut s = failoverd();
        s.updated_at_ms = NOW - 300_000;
        let html = page(&seen(Some(s), None));
        check_shape(&html);
        assert!(html.contains("<h1>DOWN</h1>"));
        assert!(html.contains("<span class=\"badge red\">STALE</span> failoverd"));
        assert!(html.contains("not updated for 5m (daemon not running?)"));
        // Its links were up when it was written, but nothing of it may look healthy now.
        assert!(!html.contains("badge green"), "{html}");
        assert!(html.contains("<span class=\"badge grey\">UP</span>"));
    }

    #[test]
    fn missing_everything() {
        let html = page(&seen(None, None));
        check_shape(&html);
        assert!(html.contains("<h1>DOWN</h1>"));
        assert!(html
            .contains("looked for <span class=\"mono\">/var/run/ipfailover/failoverd.json</span>"));
    }

    #[test]
    fn content_from_files_is_escaped() {
        let mut s = failed_over();
        s.hostname = "<img src=x onerror=alert(1)>&\"'".into();
        s.transitions[0].reason = "<script>alert(1)</script>".into();
        let html = page(&seen(Some(s), None));
        assert!(
            !html.contains("<img") && !html.contains("<script"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;"));
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
