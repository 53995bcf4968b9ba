//! Delay, jitter, reordering and duplication on the links (the lab's userspace netem, as this
//! kernel has no `sch_netem`): within the timeout they cost nothing; a delay longer than the
//! timeout looks like a dead primary until the late heartbeats arrive. Loss that makes a link
//! flap costs a few log lines and mails a minute, not a storm.

use std::time::Duration;

use ipfailover_e2e::{wait_for, Host, Impairment, Lab, PRI_PRIV, VIP};

#[test]
fn reordered_duplicated_and_late_heartbeats_within_the_timeout_cause_no_takeover() {
    let mut lab = Lab::new("netem");
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    let with_secret = [("FAILOVER_SECRET_FILE", secret.as_str())];
    // Interval 100 ms, timeout 1 s.
    let (_hb, _fo) = lab.start_pair(&with_secret, &with_secret);
    assert!(
        wait_for(Duration::from_secs(5), || {
            lab.status(Host::Sec, "failoverd")["state"] == "monitoring"
        })
        .is_some(),
        "{}",
        lab.logs()
    );

    // Both links: 300 ms late, up to 250 ms more (so heartbeats 100 ms apart overtake each
    // other), a quarter sent at once ahead of the held ones, a third sent twice.
    let bad = Impairment {
        delay_ms: 300,
        jitter_ms: 250,
        reorder_pct: 25,
        dup_pct: 35,
    };
    lab.impair(Host::Pri, "eth0", bad);
    lab.impair(Host::Pri, "eth1", bad);
    let before = lab.status(Host::Sec, "failoverd")["counters"].clone();
    // Sample for 8 s: the secondary must never take the address.
    let end = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "a takeover with every heartbeat arriving within the timeout:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    lab.impair(Host::Pri, "eth0", Impairment::default());
    lab.impair(Host::Pri, "eth1", Impairment::default());
    // The counters of the status file (written every 5 s) show the copies dropped as replays
    // and the reordered heartbeats accepted.
    std::thread::sleep(Duration::from_secs(6));
    let after = lab.status(Host::Sec, "failoverd");
    let replays = after["counters"]["dropped"]["replay"].as_u64().unwrap_or(0)
        - before["dropped"]["replay"].as_u64().unwrap_or(0);
    let accepted = after["counters"]["accepted"].as_u64().unwrap_or(0)
        - before["accepted"].as_u64().unwrap_or(0);
    assert_eq!(after["state"], "monitoring", "{after}");
    assert_eq!(after["counters"]["takeovers"], 0, "{after}");
    let report = lab.netem_report(Host::Pri).expect("the primary's netem");
    for link in report {
        assert!(
            link.seen >= 100
                && link.held > link.seen / 2
                && link.ahead > 0
                && link.out_of_order > 0,
            "a link was not delayed and reordered: {report:?}"
        );
    }
    // About 80 heartbeats a link in 8 s, a third of them twice: many copies, all refused.
    assert!(replays >= 20, "{replays} replays dropped: {after}");
    assert!(accepted >= 150, "{accepted} accepted: {after}");
}

#[test]
fn heartbeats_later_than_the_timeout_are_a_conflict_not_a_takeover() {
    let mut lab = Lab::new("netemlate");
    let (_hb, fo) = lab.start_pair(&[], &[]);
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    // 1.6 s late on both links, against a 1 s timeout: a silence of 1.6 s, then the
    // heartbeats again, each late but as regular as before. The primary answers ARP all
    // along, so the silence is a conflict, never a takeover: two holders would be worse.
    let late = Impairment {
        delay_ms: 1600,
        ..Impairment::default()
    };
    lab.impair(Host::Pri, "eth0", late);
    lab.impair(Host::Pri, "eth1", late);
    assert!(
        lab.wait_log(fo, "-> conflict", Duration::from_secs(5)),
        "the silence was not seen as a conflict:\n{}",
        lab.logs()
    );
    assert!(
        lab.wait_log(
            fo,
            "conflict -> monitoring (peer-alive)",
            Duration::from_secs(5)
        ),
        "the late heartbeats did not end the conflict:\n{}",
        lab.logs()
    );
    assert!(
        !lab.proc(fo).log_text().contains("added 198.51.100.10"),
        "took over a primary that answered:\n{}",
        lab.logs()
    );
    lab.impair(Host::Pri, "eth0", Impairment::default());
    lab.impair(Host::Pri, "eth1", Impairment::default());
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}

/// The sum of the counts in a summary line: `12 x "…", 11 x "…"`.
fn held_back(line: &str) -> u64 {
    line.split(" x \"")
        .filter_map(|part| part.rsplit(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_link_flapping_under_loss_logs_and_mails_a_few_lines_a_minute_not_a_storm() {
    let mut lab = Lab::new("storm");
    lab.start_smtp(Host::Sec, 2525);
    let fo_settings = [
        ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
        ("FAILOVER_EMAIL_TRANSPORT", "smtp://127.0.0.1:2525"),
        // Three heartbeats lost in a row on the private link lose it: under 30 % loss at
        // both ends of the veth, several times a second.
        ("FAILOVER_TIMEOUT", "300ms"),
    ];
    let (_hb, fo) = lab.start_pair(&[], &fo_settings);
    lab.loss(Host::Pri, "eth1", 30);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(70) {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "took over a live primary:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.loss(Host::Pri, "eth1", 0);
    let log = lab.proc(fo).log_text();
    let lost = format!("network anomaly: no heartbeat from {PRI_PRIV}");
    let back = format!("heartbeats from {PRI_PRIV} are back");
    let lines = log
        .lines()
        .filter(|l| l.contains(&lost) || l.contains(&back))
        .count();
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("] link {PRI_PRIV}: ")) && l.contains("not logged"))
        .collect();
    let held: u64 = summaries.iter().map(|l| held_back(l)).sum();
    // The storm was there: dozens of changes held back.
    assert!(
        summaries.len() == 1 && held >= 20,
        "{} summaries, {held} held back:\n{}",
        summaries.len(),
        summaries.join("\n")
    );
    // At most 3 a window: the first minute's and the start of the second's.
    assert!(lines <= 6, "{lines} lines about the link:\n{log}");
    // One mail per line let through and per summary, in digests: a handful, where the
    // storm made a dozen a minute.
    let mails = lab.mails().len();
    assert!((1..=7).contains(&mails), "{mails} mails");
}
