//! Mail end to end: failoverd mails a real SMTP server (aiosmtpd, in the secondary's
//! namespace) and the tests read what was really delivered.

use std::time::{Duration, Instant};

use ipfailover_e2e::{wait_for, Host, Lab, VIP};

const SMTP_PORT: u16 = 2525;
const TO: &str = "ops@example.org, oncall@example.org";

fn mail_settings() -> [(&'static str, &'static str); 3] {
    [
        ("FAILOVER_EMAIL_RECIPIENT", TO),
        ("FAILOVER_EMAIL_TRANSPORT", "smtp://127.0.0.1:2525"),
        ("FAILOVER_EMAIL_FROM", "failover@sec.example.org"),
    ]
}

/// The value of a header (first occurrence, unfolded).
fn header(mail: &str, name: &str) -> Option<String> {
    let mut lines = mail.lines();
    let prefix = format!("{}:", name.to_ascii_lowercase());
    while let Some(l) = lines.next() {
        if l.is_empty() {
            return None;
        }
        if l.to_ascii_lowercase().starts_with(&prefix) {
            let mut v = l[prefix.len()..].trim().to_string();
            for cont in lines.by_ref() {
                if cont.starts_with(' ') || cont.starts_with('\t') {
                    v.push(' ');
                    v.push_str(cont.trim());
                } else {
                    break;
                }
            }
            return Some(v);
        }
    }
    None
}

fn body(mail: &str) -> String {
    mail.split_once("\n\n")
        .map(|(_, b)| b.replace("\r\n", "\n"))
        .unwrap_or_default()
}

fn subjects(lab: &Lab) -> Vec<String> {
    lab.mails()
        .iter()
        .filter_map(|m| header(m, "Subject"))
        .collect()
}

fn wait_mail(lab: &Lab, needle: &str, limit: Duration) -> String {
    let mut found = None;
    wait_for(limit, || {
        found = lab
            .mails()
            .into_iter()
            .find(|m| header(m, "Subject").is_some_and(|s| s.contains(needle)));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no mail with `{needle}` within {limit:?}; got {:?}\n{}",
            subjects(lab),
            lab.logs()
        )
    })
}

#[test]
fn takeover_and_release_are_mailed_with_their_timeline() {
    let mut lab = Lab::new("mail");
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let (hb, _fo) = lab.start_pair(&[], &mail_settings());
    lab.kill_primary(hb);
    let m = wait_mail(&lab, "took over", Duration::from_secs(15));
    let subject = header(&m, "Subject").unwrap_or_default();
    // The primary's own address, named as such: never "took over X from X".
    assert!(
        subject.contains("took over 198.51.100.10, ")
            && subject.ends_with("'s own address (heartbeat timeout)")
            && !subject.contains("from 198.51.100.10"),
        "{subject}"
    );
    assert!(subject.starts_with("[ipfailover] "), "{subject}");
    let to = header(&m, "To").unwrap_or_default();
    assert!(
        to.contains("ops@example.org") && to.contains("oncall@example.org"),
        "{to}"
    );
    assert_eq!(
        header(&m, "From").as_deref(),
        Some("failover@sec.example.org")
    );
    assert!(
        header(&m, "Date").is_some() && header(&m, "Message-ID").is_some(),
        "{m}"
    );
    let b = body(&m);
    for needle in [
        "Timeline (ms from the detection):",
        "last heartbeat via 198.51.100.10",
        "detected: no heartbeat on any link for 1s",
        "added 198.51.100.10/24 to eth0",
        "announced",
        "Links now:",
    ] {
        assert!(b.contains(needle), "`{needle}` missing from:\n{b}");
    }
    // The primary returns: the release is mailed too.
    lab.links(Host::Pri, true);
    let _hb = lab.start_heartbeatd(&[]);
    let m = wait_mail(&lab, "released", Duration::from_secs(20));
    let subject = header(&m, "Subject").unwrap_or_default();
    assert!(
        subject.contains("released 198.51.100.10 to ")
            && subject.ends_with(" (198.51.100.10) (the peer is back)"),
        "{subject}"
    );
    let b = body(&m);
    assert!(b.contains("removed 198.51.100.10 from eth0"), "{b}");
    assert!(b.contains("told the primary (released)"), "{b}");
    // Counters reach the status file at its next periodic write (at most 5 s).
    assert!(
        wait_for(Duration::from_secs(12), || {
            lab.status(Host::Sec, "failoverd")["counters"]["mails_sent"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        })
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")
    );
}

#[test]
fn a_lost_link_is_mailed_as_an_anomaly() {
    let mut lab = Lab::new("mailanom");
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let (_hb, _fo) = lab.start_pair(&[], &mail_settings());
    lab.ip(Host::Pri, &["link", "set", "eth1", "down"]);
    let m = wait_mail(&lab, "network anomaly", Duration::from_secs(15));
    let subject = header(&m, "Subject").unwrap_or_default();
    assert!(
        subject.contains("(198.51.100.10) via 203.0.113.10 (redundancy lost)"),
        "{subject}"
    );
    assert!(
        body(&m).contains("203.0.113.10 (eth1): lost"),
        "{}",
        body(&m)
    );
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    lab.ip(Host::Pri, &["link", "set", "eth1", "up"]);
    wait_mail(&lab, "are back", Duration::from_secs(20));
}

#[test]
fn a_dead_mail_server_does_not_delay_the_takeover_and_the_mail_comes_later() {
    let mut lab = Lab::new("maildead");
    // No SMTP server yet.
    let (hb, _fo) = lab.start_pair(&[], &mail_settings());
    let killed = Instant::now();
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(10), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover:\n{}", lab.logs()));
    assert!(
        took < Duration::from_millis(1900),
        "took over after {took:?}"
    );
    // Sending fails and is retried (counted at the status file's next write).
    assert!(
        wait_for(Duration::from_secs(15), || {
            lab.status(Host::Sec, "failoverd")["counters"]["mails_failed"]
                .as_u64()
                .unwrap_or(0)
                > 0
        })
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")
    );
    assert!(lab.mails().is_empty());
    // The server comes back: the notice is delivered within the back-off.
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let m = wait_mail(&lab, "took over", Duration::from_secs(40));
    assert!(body(&m).contains("detected: no heartbeat on any link"));
    // One message: the retries did not duplicate it.
    assert_eq!(lab.mails().len(), 1, "{:?}", subjects(&lab));
    assert!(killed.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_flapping_peer_causes_a_bounded_number_of_messages() {
    let mut lab = Lab::new("mailflap");
    lab.start_smtp(Host::Sec, SMTP_PORT);
    // Ten shutdowns of the primary, each called off and heartbeatd started again, in about ten
    // seconds: each a takeover (goodbye) and a release (its first verified heartbeat).
    let hb = lab.start_heartbeatd_system(&[], "stopping");
    let fo = lab.start_failoverd(&mail_settings());
    assert!(lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)));
    let mut current = hb;
    let start = Instant::now();
    for _ in 0..10 {
        lab.proc(current).signal(libc::SIGTERM);
        let _ = lab.proc(current).wait_exit(Duration::from_secs(5));
        assert!(wait_for(Duration::from_secs(5), || lab.holds(Host::Sec, "eth0", VIP)).is_some());
        current = lab.start_heartbeatd_system(&[], "stopping");
        assert!(wait_for(Duration::from_secs(5), || !lab.holds(
            Host::Sec,
            "eth0",
            VIP
        ))
        .is_some());
        std::thread::sleep(Duration::from_millis(300));
    }
    let flapping = start.elapsed();
    // Let everything pending go out (the gap between messages is 5 s).
    std::thread::sleep(Duration::from_secs(12));
    let mails = lab.mails();
    let bound = 2 + flapping.as_secs() / 5 + 2;
    assert!(
        (2..=bound as usize).contains(&mails.len()),
        "{} messages for 20 events in {flapping:?} (bound {bound}): {:?}",
        mails.len(),
        subjects(&lab)
    );
    // Nothing was lost: the messages and digests name every takeover and release. A digest
    // lists each notice under its subject line.
    let mut listed: Vec<String> = Vec::new();
    for m in &mails {
        let subject = header(m, "Subject").unwrap_or_default();
        if subject.contains(" events: ") {
            listed.extend(
                body(m)
                    .lines()
                    .filter(|l| l.starts_with("[ipfailover] "))
                    .map(str::to_string),
            );
        } else {
            listed.push(subject);
        }
    }
    let takeovers = listed
        .iter()
        .filter(|s| s.contains("took over 198.51.100.10"))
        .count();
    let releases = listed
        .iter()
        .filter(|s| s.contains("released 198.51.100.10"))
        .count();
    assert!(
        takeovers == 10 && releases == 10,
        "{takeovers} takeovers, {releases} releases listed: {listed:#?}"
    );
    assert!(
        subjects(&lab).iter().any(|s| s.contains("events")),
        "{:?}",
        subjects(&lab)
    );
}

#[test]
fn a_sighup_with_mail_settings_it_cannot_use_keeps_the_old_ones() {
    let mut lab = Lab::new("mailhup");
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let (hb, fo) = lab.start_pair(&[], &mail_settings());
    // A transport the settings accept but the mailer cannot use (no host): a typo.
    let mut bad = mail_settings().to_vec();
    bad.push(("FAILOVER_EMAIL_TRANSPORT", "smtps://user:secret@"));
    lab.failoverd_conf(&bad);
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(fo, "the old mail settings are kept", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // The next takeover is still mailed, through the old transport.
    lab.kill_primary(hb);
    wait_mail(&lab, "took over", Duration::from_secs(15));
    assert!(
        !lab.proc(fo).log_text().contains("secret"),
        "{}",
        lab.logs()
    );
}
