//! The pair end to end: heartbeatd and failoverd in network namespaces, moving a real address.
//!
//! Run as root (CI does). Timed assertions use generous bounds; latency is measured by the
//! benchmark, not here.

use std::time::Duration;

use ipfailover_e2e::{hostconfig, wait_for, Host, Lab, PRI_PRIV, SEC_PUB, VIP};

const INTERVAL: &str = "100ms";
const TIMEOUT: &str = "1s";

/// Starts heartbeatd on the primary and failoverd on the secondary; returns their indexes.
fn start_pair(
    lab: &mut Lab,
    extra_hb: &[(&str, &str)],
    extra_fo: &[(&str, &str)],
) -> (usize, usize) {
    let hb = start_heartbeatd(lab, extra_hb);
    let fo = start_failoverd(lab, extra_fo);
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "failoverd never reached monitoring:\n{}",
        lab.logs()
    );
    (hb, fo)
}

fn start_heartbeatd(lab: &mut Lab, extra: &[(&str, &str)]) -> usize {
    let state = lab.dir.join("state-pri");
    let state = state.to_string_lossy().into_owned();
    let mut lines = vec![
        ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
        ("FAILOVER_INTERVAL", INTERVAL),
        ("FAILOVER_STATE_DIR", state.as_str()),
    ];
    lines.extend_from_slice(extra);
    let conf = lab.write("pri.conf", &hostconfig(&lines));
    let conf = conf.to_string_lossy().into_owned();
    lab.spawn(Host::Pri, "heartbeatd", "heartbeatd", &["-c", &conf])
}

fn start_failoverd(lab: &mut Lab, extra: &[(&str, &str)]) -> usize {
    let scripts = lab.dir.join("scripts");
    let state = lab.dir.join("state-sec");
    let (scripts, state) = (
        scripts.to_string_lossy().into_owned(),
        state.to_string_lossy().into_owned(),
    );
    let mut lines = vec![
        ("FAILOVER_PEER_IP", VIP),
        ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.10"),
        ("FAILOVER_TIMEOUT", TIMEOUT),
        ("FAILOVER_SCRIPT_DIR", scripts.as_str()),
        ("FAILOVER_STATE_DIR", state.as_str()),
    ];
    lines.extend_from_slice(extra);
    let conf = lab.write("sec.conf", &hostconfig(&lines));
    let conf = conf.to_string_lossy().into_owned();
    lab.spawn(Host::Sec, "failoverd", "failoverd", &["-c", &conf])
}

/// The client pings the VIP and learns the primary's MAC for it.
fn client_reaches_primary(lab: &Lab) {
    let pri_mac = lab.mac(Host::Pri, "eth0");
    assert!(
        wait_for(Duration::from_secs(5), || lab.client_ping(VIP)
            && lab.client_neigh(VIP).as_deref() == Some(pri_mac.as_str()))
        .is_some(),
        "the client does not reach the VIP at the primary's MAC {pri_mac}: neigh {:?}\n{}",
        lab.client_neigh(VIP),
        lab.logs()
    );
}

/// Waits for the secondary to hold the VIP and the client to reach it at the secondary's MAC.
fn client_reaches_secondary(lab: &Lab, limit: Duration) -> Duration {
    let sec_mac = lab.mac(Host::Sec, "eth0");
    let held = wait_for(limit, || lab.holds(Host::Sec, "eth0", VIP));
    let held = held.unwrap_or_else(|| panic!("the secondary never took the VIP:\n{}", lab.logs()));
    assert!(
        wait_for(Duration::from_secs(5), || lab.client_ping(VIP)
            && lab.client_neigh(VIP).as_deref() == Some(sec_mac.as_str()))
        .is_some(),
        "the client does not reach the VIP at the secondary's MAC {sec_mac}: neigh {:?}\n{}",
        lab.client_neigh(VIP),
        lab.logs()
    );
    held
}

fn kill_primary(lab: &mut Lab, hb: usize) {
    lab.proc(hb).signal(libc::SIGKILL);
    lab.links(Host::Pri, false);
    assert!(lab.proc(hb).wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn host_death_moves_the_address_to_the_secondary() {
    let mut lab = Lab::new("death");
    let (hb, fo) = start_pair(&mut lab, &[], &[]);
    client_reaches_primary(&lab);
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    kill_primary(&mut lab, hb);
    let took = client_reaches_secondary(&lab, Duration::from_secs(10));
    // The timeout is 1 s; allow for a slow CI machine, but not for another timeout.
    assert!(
        took < Duration::from_millis(1900),
        "took over after {took:?}\n{}",
        lab.logs()
    );
    assert!(lab.proc(fo).log_text().contains("took over 198.51.100.10"));
}

#[test]
fn graceful_stop_hands_over_before_the_timeout() {
    let mut lab = Lab::new("goodbye");
    // A long timeout: only the goodbye can explain a fast takeover.
    let (hb, fo) = start_pair(&mut lab, &[], &[("FAILOVER_TIMEOUT", "5s")]);
    client_reaches_primary(&lab);
    lab.proc(hb).signal(libc::SIGTERM);
    let took = wait_for(Duration::from_secs(10), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover after goodbye:\n{}", lab.logs()));
    assert!(
        took < Duration::from_millis(1500),
        "graceful handover took {took:?}, the timeout is 5 s\n{}",
        lab.logs()
    );
    let status = lab.proc(hb).wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "heartbeatd: {status:?}"
    );
    assert!(lab.proc(fo).log_text().contains("(goodbye)"));
    // The primary's host stays up: its own address is a duplicate now, so take it down.
    lab.ip(
        Host::Pri,
        &["addr", "del", "198.51.100.10/24", "dev", "eth0"],
    );
    client_reaches_secondary(&lab, Duration::from_secs(2));
}

#[test]
fn returning_primary_gets_its_address_back() {
    let mut lab = Lab::new("return");
    let (hb, fo) = start_pair(&mut lab, &[], &[]);
    client_reaches_primary(&lab);
    kill_primary(&mut lab, hb);
    client_reaches_secondary(&lab, Duration::from_secs(10));
    // The primary returns.
    lab.links(Host::Pri, true);
    let _hb2 = start_heartbeatd(&mut lab, &[]);
    let released = wait_for(Duration::from_secs(10), || {
        !lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("the secondary never released:\n{}", lab.logs()));
    // Three heartbeats 100 ms apart, plus start-up: far below this bound.
    assert!(
        released < Duration::from_secs(3),
        "released after {released:?}"
    );
    assert!(lab.proc(fo).log_text().contains("released 198.51.100.10"));
    assert!(lab
        .proc(fo)
        .log_text()
        .contains("that its addresses are released"));
    client_reaches_primary(&lab);
}

#[test]
fn one_link_down_is_an_anomaly_not_a_takeover() {
    let mut lab = Lab::new("onelink");
    let (_hb, fo) = start_pair(&mut lab, &[], &[]);
    // The private link fails.
    lab.ip(Host::Pri, &["link", "set", "eth1", "down"]);
    assert!(
        lab.wait_log(fo, "network anomaly", Duration::from_secs(5)),
        "no anomaly logged:\n{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !lab.holds(Host::Sec, "eth0", VIP),
        "took over with one link alive:\n{}",
        lab.logs()
    );
    assert!(!lab.proc(fo).log_text().contains("-> acquiring"));
    // Back up: the link is reported back.
    lab.ip(Host::Pri, &["link", "set", "eth1", "up"]);
    assert!(lab.wait_log(
        fo,
        &format!("heartbeats from {PRI_PRIV} are back"),
        Duration::from_secs(5)
    ));
}

#[test]
fn total_loss_on_the_public_link_is_not_a_takeover() {
    let mut lab = Lab::new("loss");
    let (_hb, fo) = start_pair(&mut lab, &[], &[]);
    lab.loss(Host::Pri, "eth0", 100);
    assert!(
        lab.wait_log(fo, "network anomaly", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lab.holds(Host::Sec, "eth0", VIP), "{}", lab.logs());
    assert!(!lab.proc(fo).log_text().contains("-> acquiring"));
}

#[test]
fn failoverd_restarted_while_holding_keeps_or_releases_correctly() {
    let mut lab = Lab::new("restart");
    let (hb, fo) = start_pair(&mut lab, &[], &[]);
    kill_primary(&mut lab, hb);
    client_reaches_secondary(&lab, Duration::from_secs(10));
    // failoverd dies without releasing (SIGKILL): the address stays.
    lab.proc(fo).signal(libc::SIGKILL);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    // Restarted with the primary still dead: it keeps the address.
    let fo2 = start_failoverd(&mut lab, &[]);
    assert!(
        lab.wait_log(fo2, "-> acquired (reconcile)", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    client_reaches_secondary(&lab, Duration::from_secs(1));
    // Killed again; the primary returns meanwhile; restarted: it gives the address back.
    lab.proc(fo2).signal(libc::SIGKILL);
    assert!(lab.proc(fo2).wait_exit(Duration::from_secs(5)).is_some());
    lab.links(Host::Pri, true);
    let _hb2 = start_heartbeatd(&mut lab, &[]);
    let fo3 = start_failoverd(&mut lab, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || !lab.holds(
            Host::Sec,
            "eth0",
            VIP
        ))
        .is_some(),
        "{}",
        lab.logs()
    );
    assert!(lab.proc(fo3).log_text().contains("(peer-returned)"));
    client_reaches_primary(&lab);
}

#[test]
fn sigterm_on_failoverd_releases_what_it_holds() {
    let mut lab = Lab::new("fostop");
    let (hb, fo) = start_pair(&mut lab, &[], &[]);
    kill_primary(&mut lab, hb);
    client_reaches_secondary(&lab, Duration::from_secs(10));
    lab.proc(fo).signal(libc::SIGTERM);
    let status = lab.proc(fo).wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "failoverd: {status:?}\n{}",
        lab.logs()
    );
    assert!(
        !lab.holds(Host::Sec, "eth0", VIP),
        "address left behind:\n{}",
        lab.logs()
    );
}

#[test]
fn peering_each_host_takes_over_the_other_in_turn() {
    let mut lab = Lab::new("peering");
    let scripts = lab.dir.join("scripts").to_string_lossy().into_owned();
    let st = |h: &str| {
        lab.dir
            .join(format!("state-{h}"))
            .to_string_lossy()
            .into_owned()
    };
    let (st_pri, st_sec) = (st("pri"), st("sec"));
    let hb_conf = |state: &str| {
        hostconfig(&[
            ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
            ("FAILOVER_INTERVAL", INTERVAL),
            ("FAILOVER_STATE_DIR", state),
        ])
    };
    let fo_conf = |peer: &str, state: &str| {
        hostconfig(&[
            ("FAILOVER_PEER_IP", peer),
            ("FAILOVER_PEER_IP_PAIRS", &format!("eth0:{peer}")),
            ("FAILOVER_TIMEOUT", TIMEOUT),
            ("FAILOVER_SCRIPT_DIR", &scripts),
            ("FAILOVER_STATE_DIR", state),
        ])
    };
    // One file per host, read by both daemons: the hostconfig way.
    let pri_conf = lab.write("pri.conf", &(hb_conf(&st_pri) + &fo_conf(SEC_PUB, &st_pri)));
    let sec_conf = lab.write("sec.conf", &(hb_conf(&st_sec) + &fo_conf(VIP, &st_sec)));
    let (pri_conf, sec_conf) = (
        pri_conf.to_string_lossy().into_owned(),
        sec_conf.to_string_lossy().into_owned(),
    );
    let hb_pri = lab.spawn(Host::Pri, "hb-pri", "heartbeatd", &["-c", &pri_conf]);
    let fo_pri = lab.spawn(Host::Pri, "fo-pri", "failoverd", &["-c", &pri_conf]);
    let hb_sec = lab.spawn(Host::Sec, "hb-sec", "heartbeatd", &["-c", &sec_conf]);
    let fo_sec = lab.spawn(Host::Sec, "fo-sec", "failoverd", &["-c", &sec_conf]);
    for fo in [fo_pri, fo_sec] {
        assert!(
            lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
            "{}",
            lab.logs()
        );
    }
    // Each ignores its own heartbeats: nobody takes over while both live.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!lab.holds(Host::Sec, "eth0", VIP) && !lab.holds(Host::Pri, "eth0", SEC_PUB));

    // The primary's heartbeatd stops: the secondary takes over its address.
    lab.proc(hb_pri).signal(libc::SIGTERM);
    assert!(
        wait_for(Duration::from_secs(5), || lab.holds(Host::Sec, "eth0", VIP)).is_some(),
        "{}",
        lab.logs()
    );
    let hb_pri2 = lab.spawn(Host::Pri, "hb-pri2", "heartbeatd", &["-c", &pri_conf]);
    assert!(
        wait_for(Duration::from_secs(5), || !lab.holds(
            Host::Sec,
            "eth0",
            VIP
        ))
        .is_some(),
        "{}",
        lab.logs()
    );

    // Now the other way round.
    lab.proc(hb_sec).signal(libc::SIGTERM);
    assert!(
        wait_for(Duration::from_secs(5), || lab.holds(
            Host::Pri,
            "eth0",
            SEC_PUB
        ))
        .is_some(),
        "{}",
        lab.logs()
    );
    let _hb_sec2 = lab.spawn(Host::Sec, "hb-sec2", "heartbeatd", &["-c", &sec_conf]);
    assert!(
        wait_for(Duration::from_secs(5), || !lab.holds(
            Host::Pri,
            "eth0",
            SEC_PUB
        ))
        .is_some(),
        "{}",
        lab.logs()
    );
    assert!(lab
        .proc(fo_pri)
        .log_text()
        .contains("took over 198.51.100.20"));
    assert!(lab
        .proc(fo_sec)
        .log_text()
        .contains("took over 198.51.100.10"));
    let _ = hb_pri2;
}
