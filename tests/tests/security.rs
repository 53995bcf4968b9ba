//! Hostile and unusual senders: with a secret, nothing but the primary's real, fresh
//! heartbeats count; without one, Apple's bare datagram from the peer's address counts.

use std::time::Duration;

use ipfailover_e2e::{wait_for, Host, Lab, VIP};
use serde_json::Value;

fn dropped(status: &Value, reason: &str) -> u64 {
    status["counters"]["dropped"][reason].as_u64().unwrap_or(0)
}

#[test]
fn with_a_secret_forged_truncated_and_replayed_datagrams_are_dropped_and_counted() {
    let mut lab = Lab::new("secret");
    lab.add_attacker();
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    let with_secret = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (hb, fo) = lab.start_pair(&with_secret, &with_secret);

    // The attacker captures the primary's broadcasts and fires at the secondary for 8 s.
    let inj = lab.spawn(
        Host::Atk,
        "inject",
        "ipfo-inject",
        &["attack", "198.51.100.20:1694", "8"],
    );
    // Counters reach the status file at its next periodic write (at most 5 s).
    let every_kind = wait_for(Duration::from_secs(7), || {
        let s = lab.status(Host::Sec, "failoverd");
        ["replay", "bad-tag", "truncated", "bad-magic"]
            .iter()
            .all(|r| dropped(&s, r) > 0)
    });
    let status = lab.status(Host::Sec, "failoverd");
    assert!(
        every_kind.is_some(),
        "not every kind of attack was counted: {}\n{}",
        status["counters"],
        lab.logs()
    );
    // None of it counted as a heartbeat: the links are the primary's two, nothing else.
    assert_eq!(status["state"], "monitoring", "{status}");
    let links: Vec<&str> = status["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["peer_address"].as_str())
        .collect();
    assert_eq!(links, ["198.51.100.10", "203.0.113.10"], "{status}");

    // The primary dies while the replays go on: the secondary still takes over on time.
    assert!(
        lab.proc(inj).try_exit().is_none(),
        "the attack ended too soon:\n{}",
        lab.logs()
    );
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(10), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover under attack:\n{}", lab.logs()));
    assert!(
        took < Duration::from_millis(1900),
        "takeover after {took:?} with a 1 s timeout\n{}",
        lab.logs()
    );
    assert!(
        lab.proc(inj).try_exit().is_none(),
        "the attack ended before the takeover"
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));

    // The attack went on after the takeover and is still counted, still not heartbeats.
    assert!(lab.proc(inj).wait_exit(Duration::from_secs(15)).is_some());
    let report = lab.proc(inj).log_text();
    assert!(report.contains("replays "), "{report}");
    let before = dropped(&lab.status(Host::Sec, "failoverd"), "replay");
    assert!(before > 100, "only {before} replays counted");
    let status = lab.status(Host::Sec, "failoverd");
    assert_eq!(status["state"], "acquired", "{status}");
    let _ = fo;
}

#[test]
fn apples_bare_heartbeat_from_the_peer_counts_without_a_secret() {
    let mut lab = Lab::new("legacy");
    let fo = lab.start_failoverd(&[]);
    // An old Mac OS X Server primary: "heartbeat" on both subnets every 100 ms, for 4 s.
    let old = lab.spawn(
        Host::Pri,
        "old-mac",
        "ipfo-inject",
        &[
            "legacy",
            "100",
            "4",
            "198.51.100.255:1694",
            "203.0.113.255:1694",
        ],
    );
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    assert!(lab.proc(old).wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        !lab.proc(fo).log_text().contains("-> acquiring"),
        "took over while the old primary was beating:\n{}",
        lab.logs()
    );
    // It stops sending but the host lives, still answering ARP for its address: no takeover,
    // a conflict. Then it dies (its links go down): the secondary takes over.
    assert!(
        lab.wait_log(fo, "-> conflict", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    lab.links(Host::Pri, false);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let status = lab.status(Host::Sec, "failoverd");
    // Only the datagrams from the peer's public address are the peer's.
    assert!(
        status["counters"]["accepted"].as_u64().unwrap_or(0) >= 20,
        "{status}"
    );
    assert!(dropped(&status, "not-peer") > 0, "{status}");
}
