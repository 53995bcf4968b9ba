//! Delay, jitter, reordering and duplication on the links (the lab's userspace netem, as this
//! kernel has no `sch_netem`): within the timeout they cost nothing; a delay longer than the
//! timeout looks like a dead primary until the late heartbeats arrive.

use std::time::Duration;

use ipfailover_e2e::{wait_for, Host, Impairment, Lab, VIP};

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
