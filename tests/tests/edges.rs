//! Edge cases of the state machine and the shells, end to end: a goodbye in the boot grace
//! while holding, a long interval, a 0 ms interval, an address removed behind failoverd's
//! back, an add that fails, failback without false alarms, a status directory removed,
//! MACs that change, sends that fail, a renumbered link, a second failoverd on one state
//! directory.

use std::time::{Duration, Instant};

use ipfailover_e2e::{bin, wait_for, Host, Lab, VIP};

fn state(lab: &Lab) -> String {
    lab.status(Host::Sec, "failoverd")["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn ctl(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(dir)
        .output()
        .expect("failoverctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_goodbye_in_the_boot_grace_while_holding_never_leaves_the_address_behind() {
    let mut lab = Lab::new("edbye");
    // Test refuses every takeover: only what was held at start can be held.
    lab.hook(VIP, "Test", "exit 1");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.proc(fo).signal(libc::SIGKILL);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    // The address is on the secondary (a takeover before the restart).
    lab.ip(
        Host::Sec,
        &["addr", "add", "198.51.100.10/24", "dev", "eth0"],
    );
    lab.kill_primary(hb);
    let fo2 = lab.start_failoverd(&[("FAILOVER_TIMEOUT", "2s")]);
    assert!(
        lab.wait_log(
            fo2,
            "holding 198.51.100.10 at start",
            Duration::from_secs(5)
        ),
        "{}",
        lab.logs()
    );
    // In the grace, heartbeatd comes back and says goodbye, then comes back for good.
    lab.links(Host::Pri, true);
    let hb2 = lab.start_heartbeatd(&[]);
    std::thread::sleep(Duration::from_millis(400));
    lab.proc(hb2).signal(libc::SIGTERM);
    assert!(lab.proc(hb2).wait_exit(Duration::from_secs(5)).is_some());
    let _hb3 = lab.start_heartbeatd(&[]);
    // The address held at start is given back, whatever Test says.
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    assert!(
        wait_for(Duration::from_secs(5), || state(&lab) == "monitoring").is_some(),
        "{}",
        lab.logs()
    );
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}

#[test]
fn a_long_interval_primary_is_not_taken_over_by_a_failoverd_started_between_heartbeats() {
    let mut lab = Lab::new("edlong");
    let _hb = lab.start_heartbeatd(&[("FAILOVER_INTERVAL", "5s")]);
    // Started just after a heartbeat, with no FAILOVER_TIMEOUT: nothing is heard for 5 s,
    // longer than the 3 s default before any heartbeat. The primary answers its probe.
    std::thread::sleep(Duration::from_millis(300));
    let fo = lab.start_failoverd(&[("FAILOVER_TIMEOUT", "")]);
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "took over a primary that beats every 5 s:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        lab.proc(fo).log_text().contains("-> monitoring"),
        "{}",
        lab.logs()
    );
    assert_eq!(
        lab.status(Host::Sec, "failoverd")["timeout_ms"].as_u64(),
        Some(16_250),
        "the timeout follows the announced interval"
    );
}

#[test]
fn a_heartbeat_announcing_a_zero_interval_is_dropped() {
    let mut lab = Lab::new("edzero");
    lab.add_attacker();
    let (_hb, fo) = lab.start_pair(&[], &[]);
    // Without a secret anyone can send valid heartbeats; one announcing 0 ms would make the
    // timeout 0.
    let inj = lab.spawn(
        Host::Atk,
        "zero",
        "ipfo-inject",
        &["beat", "0", VIP, "198.51.100.20:1694", "3"],
    );
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert!(!lab.holds(Host::Sec, "eth0", VIP), "{}", lab.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(lab.proc(inj).wait_exit(Duration::from_secs(5)).is_some());
    let dropped = wait_for(Duration::from_secs(7), || {
        lab.status(Host::Sec, "failoverd")["counters"]["dropped"]["bad-interval"]
            .as_u64()
            .unwrap_or(0)
            > 50
    });
    assert!(dropped.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
    assert_eq!(lab.status(Host::Sec, "failoverd")["timeout_ms"], 1000);
    assert!(!lab.proc(fo).log_text().contains("-> acquiring"));
}

#[test]
fn an_address_removed_behind_failoverds_back_is_added_again() {
    let mut lab = Lab::new("eddel");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    lab.ip(
        Host::Sec,
        &["addr", "del", "198.51.100.10/24", "dev", "eth0"],
    );
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(2));
    assert!(
        lab.proc(fo)
            .log_text()
            .contains("vanished from its interface"),
        "{}",
        lab.logs()
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    assert!(wait_for(Duration::from_secs(7), || lab
        .status(Host::Sec, "failoverd")["addresses"][0]["held"]
        == true)
    .is_some());
}

#[test]
fn an_address_removed_while_the_takeover_completes_is_put_back_when_it_has() {
    let mut lab = Lab::new("edpost");
    lab.hook(VIP, "PostAcq-slow", "sleep 3");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // Removed while PostAcq runs: the status says so, and the address comes back as soon as
    // the takeover completes.
    lab.ip(
        Host::Sec,
        &["addr", "del", "198.51.100.10/24", "dev", "eth0"],
    );
    let said = wait_for(Duration::from_secs(2), || {
        let a = lab.status(Host::Sec, "failoverd")["addresses"][0].clone();
        a["held"] == false
            && a["error"]
                .as_str()
                .is_some_and(|e| e.contains("behind failoverd's back"))
    });
    assert!(said.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
    assert_eq!(state(&lab), "acquiring", "{}", lab.logs());
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(6));
    assert!(
        lab.proc(fo)
            .log_text()
            .contains("vanished from its interface"),
        "{}",
        lab.logs()
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    let a = lab.status(Host::Sec, "failoverd")["addresses"][0].clone();
    assert!(a["error"].is_null(), "{a}");
}

#[test]
fn a_failoverd_stopped_past_its_timeout_counts_what_arrived_meanwhile_before_judging() {
    let mut lab = Lab::new("edstall");
    let (_hb, fo) = lab.start_pair(&[], &[]);
    // Stopped for three timeouts while the primary goes on sending: on SIGCONT the loop reads
    // the queued heartbeats before it looks at the deadline, and nothing happens.
    lab.proc(fo).signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    lab.proc(fo).signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    let log = lab.proc(fo).log_text();
    assert!(
        !log.contains("-> acquiring") && !log.contains("-> conflict"),
        "{log}"
    );
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    assert_eq!(state(&lab), "monitoring", "{}", lab.logs());
}

#[test]
fn a_second_failoverd_on_the_same_state_directory_refuses_to_start_and_touches_nothing() {
    let mut lab = Lab::new("edlock");
    let marks = lab.dir.to_string_lossy().into_owned();
    lab.hook(
        VIP,
        "PostAcq-slow",
        &format!("touch {marks}/started; sleep 4; touch {marks}/finished"),
    );
    let (hb, fo) = lab.start_pair(&[], &[]);
    let first = lab.proc(fo).pid();
    lab.kill_primary(hb);
    assert!(
        wait_for(Duration::from_secs(5), || lab.dir.join("started").exists()).is_some(),
        "{}",
        lab.logs()
    );
    // A second failoverd on the same configuration, while the first runs a hook.
    let conf = lab.dir.join("sec.conf").to_string_lossy().into_owned();
    let second = lab.spawn(Host::Sec, "failoverd2", "failoverd", &["-c", &conf]);
    let status = lab.proc(second).wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(75), "{}", lab.logs());
    let said = lab.proc(second).log_text();
    assert!(
        said.contains(&format!("is in use by another failoverd (pid {first})")),
        "{said}"
    );
    // The first one's hook ran to its end, and its control socket still answers.
    assert!(
        wait_for(Duration::from_secs(8), || lab.dir.join("finished").exists()).is_some(),
        "the first failoverd's hook was killed:\n{}",
        lab.logs()
    );
    assert!(lab.proc(fo).try_exit().is_none(), "{}", lab.logs());
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(Host::Sec)])
        .arg(bin("failoverctl"))
        .args(["pause", "--for", "1s", "--state-dir"])
        .arg(lab.state_dir(Host::Sec))
        .output()
        .expect("failoverctl");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.holds(Host::Sec, "eth0", VIP));
}

#[test]
fn an_add_that_fails_is_reported_retried_and_never_announced() {
    let mut lab = Lab::new("edadd");
    // (No dummy interfaces in every kernel: a veth pair will do.)
    lab.ip(
        Host::Sec,
        &[
            "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
        ],
    );
    lab.ip(Host::Sec, &["link", "set", "dum0", "up"]);
    let (hb, fo) = lab.start_pair(
        &[],
        &[(
            "FAILOVER_PEER_IP_PAIRS",
            "eth0:198.51.100.10 dum0:198.51.100.77/32",
        )],
    );
    // The second pair's interface goes away before the takeover.
    lab.ip(Host::Sec, &["link", "del", "dum0"]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let reported = wait_for(Duration::from_secs(7), || {
        let a = lab.status(Host::Sec, "failoverd")["addresses"][1].clone();
        a["held"] == false && a["error"].as_str().is_some_and(|e| e.contains("dum0"))
    });
    assert!(reported.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
    let log = lab.proc(fo).log_text();
    assert!(log.contains("took over 198.51.100.10"), "{log}");
    assert!(!log.contains("198.51.100.77 on dum0: announcing"), "{log}");
    // The interface is back (made again: a new index): the retry adds the address.
    lab.ip(
        Host::Sec,
        &[
            "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
        ],
    );
    lab.ip(Host::Sec, &["link", "set", "dum0", "up"]);
    lab.wait_holds(
        Host::Sec,
        "dum0",
        "198.51.100.77",
        true,
        Duration::from_secs(10),
    );
    // When the primary returns, its own address goes back; the other one stays here, since
    // the primary does not answer for it (its heartbeats say so): somebody must.
    lab.links(Host::Pri, true);
    let _hb2 = lab.start_heartbeatd(&[]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.holds(Host::Sec, "dum0", "198.51.100.77"));
    let st = lab.status(Host::Sec, "failoverd");
    assert_eq!(st["addresses"][1]["holder"], "here", "{st}");
    assert_eq!(st["addresses"][0]["holder"], "peer", "{st}");
}

#[test]
fn failback_raises_no_false_network_anomaly() {
    let mut lab = Lab::new("edfalse");
    // A slow PreRel hook, and the private destination listed first.
    lab.hook(VIP, "PreRel-slow", "sleep 1.5");
    let (hb, fo) = lab.start_pair(
        &[("FAILOVER_BCAST_IPS", "203.0.113.255 198.51.100.255")],
        &[],
    );
    for round in 0..2 {
        lab.kill_primary(hb);
        lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
        lab.links(Host::Pri, true);
        let hb2 = lab.start_heartbeatd(&[("FAILOVER_BCAST_IPS", "203.0.113.255 198.51.100.255")]);
        lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
        // Two timeouts after the release: the public link is heard again, no anomaly.
        std::thread::sleep(Duration::from_secs(2));
        let log = lab.proc(fo).log_text();
        assert!(
            !log.contains("network anomaly"),
            "a false anomaly in round {round}:\n{log}"
        );
        lab.kill_primary(hb2);
        lab.links(Host::Pri, true);
        lab.start_heartbeatd(&[("FAILOVER_BCAST_IPS", "203.0.113.255 198.51.100.255")]);
        assert!(wait_for(Duration::from_secs(5), || state(&lab) == "monitoring").is_some());
    }
}

#[test]
fn a_status_directory_removed_is_made_again_at_the_next_change_and_at_exit() {
    let mut lab = Lab::new("edstatus");
    let (hb, fo) = lab.start_pair(&[], &[]);
    let dir = lab.state_dir(Host::Sec);
    ipfailover_e2e::remove_dir_while_written(&dir);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // The takeover wrote it: no waiting for the periodic refresh.
    assert!(
        wait_for(Duration::from_millis(300), || state(&lab) == "acquired").is_some(),
        "no status file right after the takeover"
    );
    ipfailover_e2e::remove_dir_while_written(&dir);
    lab.proc(fo).signal(libc::SIGTERM);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    assert_eq!(state(&lab), "stopped", "no final status after the exit");
}

#[test]
fn announcements_carry_the_mac_the_interface_has_now() {
    let mut lab = Lab::new("edmac");
    let (hb, _fo) = lab.start_pair(&[], &[]);
    // The primary's eth0 gets a new MAC, then SIGHUP: it announces with the new one.
    lab.ip(
        Host::Pri,
        &["link", "set", "eth0", "address", "02:00:00:00:10:10"],
    );
    lab.proc(hb).signal(libc::SIGHUP);
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    // The secondary's MAC changes between two takeovers: the second announces the new one.
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    lab.links(Host::Pri, true);
    let hb2 = lab.start_heartbeatd(&[]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(8));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    lab.ip(
        Host::Sec,
        &["link", "set", "eth0", "address", "02:00:00:00:20:20"],
    );
    lab.kill_primary(hb2);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
}

#[test]
fn heartbeatd_whose_sends_all_fail_is_not_healthy() {
    let mut lab = Lab::new("edsend");
    let (_hb, _fo) = lab.start_pair(&[], &[]);
    let (code, _) = ctl(&lab.state_dir(Host::Pri));
    assert_eq!(code, Some(0));
    lab.links(Host::Pri, false);
    let degraded = wait_for(Duration::from_secs(8), || {
        let (code, text) = ctl(&lab.state_dir(Host::Pri));
        code == Some(1) && text.contains("cannot send to 198.51.100.255:1694")
    });
    let (code, text) = ctl(&lab.state_dir(Host::Pri));
    assert!(degraded.is_some(), "exit {code:?}:\n{text}");
    let sends = lab.status(Host::Pri, "heartbeatd")["sends"].clone();
    assert!(
        sends.as_array().is_some_and(|s| s.len() == 2
            && s.iter()
                .all(|d| d["failing"] == true && d["failed"].as_u64() > Some(0))),
        "{sends}"
    );
}

#[test]
fn a_renumbered_primary_link_is_forgotten_not_lost() {
    let mut lab = Lab::new("edrenum");
    let (_hb, fo) = lab.start_pair(&[], &[]);
    // The primary's private address changes while it runs (the old one first: removing a
    // subnet's primary address takes its secondaries with it).
    lab.ip(
        Host::Pri,
        &["addr", "del", "203.0.113.10/24", "dev", "eth1"],
    );
    lab.ip(
        Host::Pri,
        &["addr", "add", "203.0.113.11/24", "dev", "eth1"],
    );
    let settled = wait_for(Duration::from_secs(10), || {
        let links = lab.status(Host::Sec, "failoverd")["links"].clone();
        let addrs: Vec<String> = links
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{} {}", l["peer_address"], l["state"]))
            .collect();
        addrs == ["\"198.51.100.10\" \"up\"", "\"203.0.113.11\" \"up\""]
    });
    assert!(settled.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
    assert!(
        !lab.proc(fo).log_text().contains("network anomaly"),
        "{}",
        lab.logs()
    );
    let (code, text) = ctl(&lab.state_dir(Host::Sec));
    assert_eq!(code, Some(0), "{text}");
}
