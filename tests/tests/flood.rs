//! Floods: tens of thousands of hostile datagrams a second at either daemon do not delay a
//! takeover or a heartbeat, keep the CPU bounded and the memory flat, and every kind is
//! counted as dropped.

use std::time::{Duration, Instant};

use ipfailover_e2e::{cpu_ns, rss_kib, wait_for, Host, Lab, VIP};

const RATE: &str = "50000";

/// How long the flood at the secondary lasts: 10 s on every build, 30 s for the figures
/// (`IPFAILOVER_FLOOD_SECONDS=30`).
fn flood_seconds() -> u64 {
    std::env::var("IPFAILOVER_FLOOD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(6)
}

/// One flood at a time: each needs a core of its own to reach its rate.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn dropped(lab: &Lab, host: Host, daemon: &str, reason: &str) -> u64 {
    lab.status(host, daemon)["counters"]["dropped"][reason]
        .as_u64()
        .unwrap_or(0)
}

fn rate_of(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("rate "))
        .and_then(|r| r.trim_end_matches("/s").parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_flood_at_the_secondary_does_not_delay_the_takeover() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("floodsec");
    lab.add_attacker();
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    let with_secret = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (hb, fo) = lab.start_pair(&with_secret, &with_secret);
    let pid = lab.proc(fo).pid();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kib(pid).unwrap_or(0);
    let seconds = flood_seconds();
    let inj = lab.spawn(
        Host::Atk,
        "flood",
        "ipfo-inject",
        &["flood", "198.51.100.20:1694", RATE, &seconds.to_string()],
    );
    // Let the flood run a while with the primary alive (a third of it): no takeover.
    std::thread::sleep(Duration::from_secs(seconds / 3));
    let cpu_start = (Instant::now(), cpu_ns(pid).unwrap_or(0));
    assert!(
        !lab.holds(Host::Sec, "eth0", VIP),
        "flood made a takeover:\n{}",
        lab.logs()
    );
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(10), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover under the flood:\n{}", lab.logs()));
    assert!(
        took < Duration::from_millis(1500),
        "takeover after {took:?} with a 1 s timeout under the flood"
    );
    assert!(
        lab.proc(inj).try_exit().is_none(),
        "the flood ended too early"
    );
    assert!(lab
        .proc(inj)
        .wait_exit(Duration::from_secs(seconds + 10))
        .is_some());
    let cpu =
        (cpu_ns(pid).unwrap_or(0) - cpu_start.1) as f64 / cpu_start.0.elapsed().as_nanos() as f64;
    let report = lab.proc(inj).log_text();
    let rate = rate_of(&report);
    eprintln!(
        "flood at {rate:.0}/s: takeover {} ms after the crash (timeout 1 s); failoverd used {:.0} % of a core",
        took.as_millis(),
        cpu * 100.0
    );
    assert!(
        rate > 20_000.0,
        "the flood was too weak to mean anything: {report}"
    );
    assert!(
        cpu < 0.9,
        "failoverd saturated a core: {:.0} %",
        cpu * 100.0
    );
    // Memory flat: the replay window and everything else are bounded.
    let rss_after = rss_kib(pid).unwrap_or(0);
    assert!(
        rss_after < rss_before + 2048,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Every kind was dropped and counted (at the status file's next write).
    assert!(
        wait_for(Duration::from_secs(8), || {
            ["bad-tag", "replay", "bad-magic"]
                .iter()
                .all(|r| dropped(&lab, Host::Sec, "failoverd", r) > 1000)
        })
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")["counters"]
    );
    assert_eq!(lab.status(Host::Sec, "failoverd")["state"], "acquired");
}

#[test]
fn a_flood_at_heartbeatd_does_not_delay_its_heartbeats() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("floodpri");
    lab.add_attacker();
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    // Heartbeats every 10 ms, and a secondary that takes over after 60 ms of silence: any
    // delay of heartbeatd's sends beyond 50 ms would show as a takeover.
    let (hb, fo) = lab.start_pair(
        &[
            ("FAILOVER_SECRET_FILE", secret.as_str()),
            ("FAILOVER_INTERVAL", "10ms"),
        ],
        &[
            ("FAILOVER_SECRET_FILE", secret.as_str()),
            ("FAILOVER_TIMEOUT", "60ms"),
        ],
    );
    let pid = lab.proc(hb).pid();
    let rss_before = rss_kib(pid).unwrap_or(0);
    // At heartbeatd's own socket (the source port of its heartbeats).
    let inj = lab.spawn(
        Host::Atk,
        "flood",
        "ipfo-inject",
        &["flood", "source", RATE, "8"],
    );
    assert!(lab.proc(inj).wait_exit(Duration::from_secs(20)).is_some());
    let report = lab.proc(inj).log_text();
    assert!(report.contains("flooding 198.51.100.10:"), "{report}");
    assert!(rate_of(&report) > 20_000.0, "{report}");
    assert!(
        !lab.proc(fo).log_text().contains("-> acquiring"),
        "a heartbeat was late by more than the 60 ms timeout during the flood:\n{}",
        lab.logs()
    );
    let rss_after = rss_kib(pid).unwrap_or(0);
    assert!(
        rss_after < rss_before + 2048,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        wait_for(Duration::from_secs(8), || {
            dropped(&lab, Host::Pri, "heartbeatd", "bad-tag") > 1000
        })
        .is_some(),
        "{}",
        lab.status(Host::Pri, "heartbeatd")["counters"]
    );
}
