//! Freshness that does not trust the clocks: a wall clock ten minutes off on either host
//! drops nothing (heartbeats count once the peer answers a challenge), and replays of
//! captured datagrams never count, even after failoverd restarts and forgets what it saw.

use std::time::{Duration, Instant};

use ipfailover_e2e::{wait_for, Host, Lab, VIP};

fn secret(lab: &Lab) -> String {
    lab.write("secret", "the shared secret of this lab pair\n")
        .to_string_lossy()
        .into_owned()
}

/// Starts the pair with a secret, one of the daemons with its wall clock `offset_s` off.
fn skewed_pair(lab: &mut Lab, skewed: Host, offset_s: i64) -> (usize, usize) {
    let secret = secret(lab);
    let state_pri = lab.state_dir(Host::Pri).to_string_lossy().into_owned();
    let state_sec = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    let scripts = lab.dir.join("scripts").to_string_lossy().into_owned();
    let pri = lab.write(
        "pri.conf",
        &ipfailover_e2e::hostconfig(&[
            ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
            ("FAILOVER_INTERVAL", "100ms"),
            ("FAILOVER_SECRET_FILE", &secret),
            ("FAILOVER_STATE_DIR", &state_pri),
        ]),
    );
    let sec = lab.write(
        "sec.conf",
        &ipfailover_e2e::hostconfig(&[
            ("FAILOVER_PEER_IP", VIP),
            ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.10"),
            ("FAILOVER_TIMEOUT", "1s"),
            ("FAILOVER_SECRET_FILE", &secret),
            ("FAILOVER_STATE_DIR", &state_sec),
            ("FAILOVER_SCRIPT_DIR", &scripts),
        ]),
    );
    let (pri, sec) = (
        pri.to_string_lossy().into_owned(),
        sec.to_string_lossy().into_owned(),
    );
    let hb = if skewed == Host::Pri {
        lab.spawn_skewed(
            Host::Pri,
            "heartbeatd",
            "heartbeatd",
            &["-c", &pri],
            offset_s,
        )
    } else {
        lab.spawn(Host::Pri, "heartbeatd", "heartbeatd", &["-c", &pri])
    };
    let fo = if skewed == Host::Sec {
        lab.spawn_skewed(Host::Sec, "failoverd", "failoverd", &["-c", &sec], offset_s)
    } else {
        lab.spawn(Host::Sec, "failoverd", "failoverd", &["-c", &sec])
    };
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "failoverd never reached monitoring:\n{}",
        lab.logs()
    );
    (hb, fo)
}

/// A clock `offset_s` off on `skewed`: no takeover while the primary lives, the offset in
/// the status, and the takeover when the primary dies.
fn clocks_off(name: &str, skewed: Host, offset_s: i64) {
    let mut lab = Lab::new(name);
    let (hb, fo) = skewed_pair(&mut lab, skewed, offset_s);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "took over a live primary with a clock {offset_s} s off on {skewed:?}:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The status shows the difference: the peer's clock minus ours.
    let want = if skewed == Host::Pri {
        offset_s * 1000
    } else {
        -offset_s * 1000
    };
    let shown = wait_for(Duration::from_secs(7), || {
        lab.status(Host::Sec, "failoverd")["peer_clock_offset_ms"]
            .as_i64()
            .is_some_and(|o| (o - want).abs() < 5_000)
    });
    let status = lab.status(Host::Sec, "failoverd");
    assert!(
        shown.is_some(),
        "offset not shown, want {want} ms: {status}"
    );
    assert_eq!(status["state"], "monitoring", "{status}");
    assert_eq!(status["peer_verified"], true, "{status}");
    assert!(
        status["counters"]["accepted"].as_u64().unwrap_or(0) >= 10,
        "{status}"
    );
    assert!(
        lab.proc(fo).log_text().contains("the peer's clock is 10m"),
        "the difference is logged once:\n{}",
        lab.logs()
    );
    // The primary dies: taken over within the timeout.
    let died = Instant::now();
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    assert!(
        died.elapsed() < Duration::from_millis(1800),
        "{:?}",
        died.elapsed()
    );
}

#[test]
fn the_secondarys_clock_ten_minutes_ahead_changes_nothing() {
    clocks_off("clkseca", Host::Sec, 600);
}

#[test]
fn the_secondarys_clock_ten_minutes_behind_changes_nothing() {
    clocks_off("clksecb", Host::Sec, -600);
}

#[test]
fn the_primarys_clock_ten_minutes_ahead_changes_nothing() {
    clocks_off("clkpri", Host::Pri, 600);
}

/// Records what the attacker on the public LAN hears on UDP 1694 for `seconds`.
fn record(lab: &mut Lab, seconds: &str) -> (usize, std::path::PathBuf) {
    let file = lab.dir.join("captured");
    let f = file.to_string_lossy().into_owned();
    let rec = lab.spawn(
        Host::Atk,
        "record",
        "ipfo-inject",
        &["record", "1694", seconds, &f],
    );
    assert!(
        lab.wait_log(rec, "recording", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    (rec, file)
}

#[test]
fn replays_after_a_restart_of_failoverd_never_count() {
    let mut lab = Lab::new("clkreplay");
    lab.add_attacker();
    let secret = secret(&lab);
    let s = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (hb, fo) = lab.start_pair(&s, &s);
    // Two seconds of the live primary's heartbeats, captured off the LAN.
    let (rec, file) = record(&mut lab, "2");
    assert!(lab.proc(rec).wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        lab.proc(rec).log_text().contains("heartbeat "),
        "{}",
        lab.logs()
    );
    // The primary dies and failoverd restarts: it has no memory of what it saw. The attacker
    // replays the captured heartbeats all along: none may count, and the takeover comes
    // at the end of the new failoverd's boot grace.
    lab.kill_primary(hb);
    lab.proc(fo).signal(libc::SIGKILL);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    let f = file.to_string_lossy().into_owned();
    let rep = lab.spawn(
        Host::Atk,
        "replay",
        "ipfo-inject",
        &["replay", &f, "198.51.100.20:1694", "6"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let _fo2 = lab.start_failoverd(&s);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let took = started.elapsed();
    // The boot grace (1 s) and the takeover, with room for a busy machine.
    assert!(
        took < Duration::from_millis(2000),
        "taken over after {took:?}\n{}",
        lab.logs()
    );
    assert!(
        lab.proc(rep).try_exit().is_none(),
        "the replay ended too soon"
    );
    let counted = wait_for(Duration::from_secs(7), || {
        lab.status(Host::Sec, "failoverd")["counters"]["dropped"]["unverified"]
            .as_u64()
            .unwrap_or(0)
            > 20
    });
    let status = lab.status(Host::Sec, "failoverd");
    assert!(
        counted.is_some(),
        "the replays were not dropped as unverified: {status}"
    );
    assert_eq!(
        status["counters"]["accepted"].as_u64(),
        Some(0),
        "a replay counted as a heartbeat: {status}"
    );
    assert!(
        status["links"].as_array().is_none_or(|l| l.is_empty()),
        "{status}"
    );
}

#[test]
fn an_old_boots_goodbye_replayed_never_causes_a_takeover() {
    let mut lab = Lab::new("clkbye");
    lab.add_attacker();
    let secret = secret(&lab);
    let s = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (hb, fo) = lab.start_pair(&s, &s);
    // The attacker captures the primary's goodbye when heartbeatd is stopped cleanly.
    let (rec, file) = record(&mut lab, "1.5");
    std::thread::sleep(Duration::from_millis(300));
    lab.proc(hb).signal(libc::SIGTERM);
    assert!(lab.proc(rec).wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        lab.proc(rec).log_text().contains("goodbye 2"),
        "no goodbye captured: {}",
        lab.proc(rec).log_text()
    );
    // heartbeatd is back (a new boot), the secondary gives the address back, and then
    // restarts, forgetting everything of the old boot.
    let _hb2 = lab.start_heartbeatd(&s);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(5));
    lab.proc(fo).signal(libc::SIGTERM);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    // Both runs log to the same file: only what the second one wrote counts below.
    let before = lab.proc(fo).log_text().len();
    let fo2 = lab.start_failoverd(&s);
    assert!(
        lab.wait_log(fo2, "-> monitoring", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // The old boot's goodbye, replayed over and over: never a takeover.
    let f = file.to_string_lossy().into_owned();
    let rep = lab.spawn(
        Host::Atk,
        "replay",
        "ipfo-inject",
        &["replay", &f, "198.51.100.20:1694", "3"],
    );
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "a replayed goodbye made a takeover:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(lab.proc(rep).wait_exit(Duration::from_secs(5)).is_some());
    let second_run = lab.proc(fo2).log_text().split_off(before);
    assert!(
        !second_run.contains("goodbye from the peer"),
        "{second_run}"
    );
    assert!(second_run.contains("-> monitoring"), "{second_run}");
}
