//! SIGHUP under a running pair: what a reload changes, and when (docs/failoverd.md, "Reload").
//! Each case once left both hosts holding the address, or a status that lied.

use std::time::{Duration, Instant};

use ipfailover_e2e::{wait_for, Host, Lab, VIP};

fn no_takeover_for(lab: &Lab, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "took over a live primary:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(lab: &Lab) -> String {
    lab.status(Host::Sec, "failoverd")["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_key_rewritten_in_place_is_read_again_at_every_sighup() {
    let mut lab = Lab::new("rlkey");
    let secret = lab.write("secret", "the first shared secret of this pair\n");
    let secret = secret.to_string_lossy().into_owned();
    let s = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (hb, fo) = lab.start_pair(&s, &s);
    // The same path, a new key, and SIGHUP to both daemons.
    lab.write("secret", "a second, rotated shared secret\n");
    lab.proc(hb).signal(libc::SIGHUP);
    lab.proc(fo).signal(libc::SIGHUP);
    no_takeover_for(&lab, Duration::from_secs(3));
    assert_eq!(state(&lab), "monitoring", "{}", lab.logs());
    // The new key is what counts now: heartbeats are accepted, none dropped as bad-tag since
    // the reloads settled. (The two daemons reload a moment apart, so a heartbeat or two
    // signed with the other key may be dropped at the reload itself; the counters compared
    // are those of a status written after it settled, not of one written before it.)
    let settled = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    assert!(
        wait_for(Duration::from_secs(7), || lab
            .status(Host::Sec, "failoverd")["updated_at_ms"]
            .as_u64()
            .is_some_and(|t| t >= settled))
        .is_some(),
        "{}",
        lab.logs()
    );
    let before = lab.status(Host::Sec, "failoverd")["counters"].clone();
    std::thread::sleep(Duration::from_secs(6));
    let after = lab.status(Host::Sec, "failoverd")["counters"].clone();
    assert!(
        after["accepted"].as_u64() > before["accepted"].as_u64(),
        "{before} -> {after}"
    );
    assert_eq!(
        after["dropped"]["bad-tag"], before["dropped"]["bad-tag"],
        "{after}"
    );
}

#[test]
fn a_reload_shortens_a_boot_grace_under_way() {
    let mut lab = Lab::new("rlgrace");
    let _hb = lab.start_heartbeatd(&[]);
    let fo = lab.start_failoverd(&[("FAILOVER_TIMEOUT", "60s")]);
    assert!(
        lab.wait_log(fo, "timeout 1m;", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    lab.failoverd_conf(&[("FAILOVER_TIMEOUT", "300ms")]);
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(fo, "boot-grace -> monitoring", Duration::from_secs(3)),
        "the shorter grace did not apply:\n{}",
        lab.logs()
    );
}

#[test]
fn new_pairs_during_the_boot_grace_wait_for_the_addresses_held_at_start() {
    let mut lab = Lab::new("rlpairs");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // failoverd restarts while holding: its boot grace begins with the address held.
    lab.proc(fo).signal(libc::SIGKILL);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    let before = lab.proc(fo).log_text().len();
    let fo2 = lab.start_failoverd(&[("FAILOVER_TIMEOUT", "3s")]);
    assert!(
        lab.wait_log(
            fo2,
            "holding 198.51.100.10 at start",
            Duration::from_secs(5)
        ),
        "{}",
        lab.logs()
    );
    // New pairs by SIGHUP, and the primary returns during the grace.
    lab.failoverd_conf(&[
        ("FAILOVER_TIMEOUT", "3s"),
        ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.50"),
    ]);
    lab.proc(fo2).signal(libc::SIGHUP);
    lab.links(Host::Pri, true);
    let _hb2 = lab.start_heartbeatd(&[]);
    // The address held at start is released (the primary is alive), and only then do the
    // new pairs apply: 198.51.100.50 was never held, so nothing says it was released.
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(8));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    let log = lab.proc(fo2).log_text().split_off(before);
    assert!(
        log.contains("new FAILOVER_PEER_IP_PAIRS apply once"),
        "{log}"
    );
    assert!(log.contains("removed 198.51.100.10 from eth0"), "{log}");
    assert!(!log.contains("198.51.100.50 was not on eth0"), "{log}");
    assert!(!log.contains("released 198.51.100.50"), "{log}");
    assert!(!lab.holds(Host::Sec, "eth0", "198.51.100.50"));
}

#[test]
fn release_hooks_see_the_pairs_they_release_not_the_new_ones() {
    let mut lab = Lab::new("rlhooks");
    let seen = lab.dir.join("prerel-pairs");
    lab.hook(
        VIP,
        "PreRel-record",
        &format!("echo \"$FAILOVER_PEER_IP_PAIRS\" > {}", seen.display()),
    );
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    lab.failoverd_conf(&[("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.50")]);
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(fo, "SIGHUP: configuration reloaded", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    lab.links(Host::Pri, true);
    let _hb2 = lab.start_heartbeatd(&[]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(8));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default().trim(),
        "eth0:198.51.100.10",
        "PreRel saw other pairs than those it released:\n{}",
        lab.logs()
    );
}

#[test]
fn a_new_peer_leaves_nothing_of_the_old_one_in_the_status() {
    let mut lab = Lab::new("rlpeer");
    lab.add_attacker();
    // A second primary on the public LAN, at 198.51.100.66, sending on one link only.
    let state = lab.dir.join("state-atk").to_string_lossy().into_owned();
    let conf = lab.write(
        "atk.conf",
        &ipfailover_e2e::hostconfig(&[
            ("FAILOVER_BCAST_IPS", "198.51.100.255"),
            ("FAILOVER_INTERVAL", "100ms"),
            ("FAILOVER_STATE_DIR", &state),
        ]),
    );
    let conf = conf.to_string_lossy().into_owned();
    let _other = lab.spawn(Host::Atk, "heartbeatd-atk", "heartbeatd", &["-c", &conf]);
    let (_hb, fo) = lab.start_pair(&[], &[]);
    lab.failoverd_conf(&[
        ("FAILOVER_PEER_IP", "198.51.100.66"),
        ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.66"),
    ]);
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(fo, "SIGHUP: configuration reloaded", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // Past two timeouts and a status refresh: only the new peer's link, up.
    let only_new = wait_for(Duration::from_secs(8), || {
        let links = lab.status(Host::Sec, "failoverd")["links"].clone();
        links.as_array().is_some_and(|l| {
            l.len() == 1 && l[0]["peer_address"] == "198.51.100.66" && l[0]["state"] == "up"
        })
    });
    assert!(only_new.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
    let log = lab.proc(fo).log_text();
    assert!(!log.contains("network anomaly"), "{log}");
    let out = std::process::Command::new(ipfailover_e2e::bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(lab.state_dir(Host::Sec))
        .output()
        .expect("failoverctl");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A pair whose hosts read a secret file each, with a Fence hook that leaves a mark.
fn keyed_pair(lab: &mut Lab, pri: &str, sec: &str) -> (usize, usize, std::path::PathBuf) {
    let p = lab.write("secret-pri", pri).to_string_lossy().into_owned();
    let s = lab.write("secret-sec", sec).to_string_lossy().into_owned();
    let marker = lab.dir.join("fenced");
    lab.hook(
        VIP,
        "Fence",
        &format!("echo \"$1 $FAILOVER_REASON\" >> {}", marker.display()),
    );
    let (hb, fo) = lab.start_pair(
        &[("FAILOVER_SECRET_FILE", p.as_str())],
        &[
            ("FAILOVER_SECRET_FILE", s.as_str()),
            ("FAILOVER_FENCE_AFTER", "1s"),
        ],
    );
    (hb, fo, marker)
}

fn bad_tags(lab: &Lab) -> u64 {
    lab.status(Host::Sec, "failoverd")["counters"]["dropped"]["bad-tag"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_key_rotated_one_host_at_a_time_with_two_keys_loses_no_heartbeat() {
    let mut lab = Lab::new("rlrot");
    let old = "the old shared secret of this pair\n";
    let new = "the new shared secret of this pair\n";
    let (hb, fo, marker) = keyed_pair(&mut lab, old, old);
    let sampler = lab.sampler(&[VIP]);
    let before = bad_tags(&lab);
    // docs/configuration.md, "Rotating the key": the new key first (it signs), the old one
    // second (it still verifies), on one host, then the other; then the old one goes.
    lab.write("secret-sec", &format!("{new}{old}"));
    lab.proc(fo).signal(libc::SIGHUP);
    no_takeover_for(&lab, Duration::from_secs(3));
    lab.write("secret-pri", &format!("{new}{old}"));
    lab.proc(hb).signal(libc::SIGHUP);
    no_takeover_for(&lab, Duration::from_secs(3));
    lab.write("secret-pri", new);
    lab.write("secret-sec", new);
    lab.proc(hb).signal(libc::SIGHUP);
    lab.proc(fo).signal(libc::SIGHUP);
    no_takeover_for(&lab, Duration::from_secs(3));
    assert_eq!(state(&lab), "monitoring", "{}", lab.logs());
    // The status written after the last reload: not one heartbeat failed its tag.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bad_tags(&lab), before, "{}", lab.logs());
    let timeline = sampler.finish();
    assert!(timeline.two_holders().is_empty(), "{}", timeline.render());
    assert!(!marker.exists(), "Fence ran:\n{}", lab.logs());
}

#[test]
fn a_secret_rewritten_on_the_two_hosts_seconds_apart_runs_no_fence() {
    let mut lab = Lab::new("rlapart");
    let old = "the old shared secret of this pair\n";
    let new = "the new shared secret of this pair\n";
    let (hb, fo, marker) = keyed_pair(&mut lab, old, old);
    let sampler = lab.sampler(&[VIP]);
    // One line, no old key kept: while the two disagree no heartbeat verifies, and the
    // primary still answers for its address. That is the reload settling, not a stuck host:
    // no Fence, whatever FAILOVER_FENCE_AFTER says, and nothing taken.
    lab.write("secret-sec", new);
    lab.proc(fo).signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_secs(3));
    lab.write("secret-pri", new);
    lab.proc(hb).signal(libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(5), || state(&lab) == "monitoring").is_some(),
        "{}",
        lab.logs()
    );
    no_takeover_for(&lab, Duration::from_secs(2));
    let timeline = sampler.finish();
    assert!(timeline.two_holders().is_empty(), "{}", timeline.render());
    assert!(!marker.exists(), "Fence ran:\n{}", lab.logs());
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
}
