//! The pair end to end: heartbeatd and failoverd in network namespaces, moving a real address.
//!
//! Run as root (CI does). Timed assertions use generous bounds; latency is measured by the
//! benchmark, not here.

use std::time::Duration;

use ipfailover_e2e::{hostconfig, wait_for, Host, Lab, INTERVAL, PRI_PRIV, SEC_PUB, TIMEOUT, VIP};

/// The client pings the VIP and learns the primary's MAC for it.
fn client_reaches_primary(lab: &Lab) {
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}

/// Waits for the secondary to hold the VIP and the client to reach it at the secondary's MAC.
fn client_reaches_secondary(lab: &Lab, limit: Duration) -> Duration {
    let held = wait_for(limit, || lab.holds(Host::Sec, "eth0", VIP));
    let held = held.unwrap_or_else(|| panic!("the secondary never took the VIP:\n{}", lab.logs()));
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    held
}

#[test]
fn host_death_moves_the_address_to_the_secondary() {
    let mut lab = Lab::new("death");
    let (hb, fo) = lab.start_pair(&[], &[]);
    client_reaches_primary(&lab);
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    lab.kill_primary(hb);
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
fn a_host_going_down_hands_over_at_once() {
    let mut lab = Lab::new("goodbye");
    // A long timeout: only the goodbye can explain a fast takeover. The service manager says
    // the system is stopping, as systemd does during a shutdown.
    let hb = lab.start_heartbeatd_system(&[], "stopping");
    let fo = lab.start_failoverd(&[("FAILOVER_TIMEOUT", "5s")]);
    assert!(lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)));
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
    assert!(lab.proc(hb).log_text().contains("the host is going down"));
    assert!(lab.proc(fo).log_text().contains("(goodbye)"));
    // The primary's host finishes its shutdown: its links go down.
    lab.links(Host::Pri, false);
    client_reaches_secondary(&lab, Duration::from_secs(2));
}

#[test]
fn stopping_heartbeatd_alone_leaves_the_own_address_where_it_is() {
    let mut lab = Lab::new("hbstop");
    let hb = lab.start_heartbeatd_system(&[], "running");
    let fo = lab.start_failoverd(&[]);
    assert!(lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)));
    client_reaches_primary(&lab);
    let sampler = lab.sampler(&[VIP]);
    let stopped = std::time::Instant::now();
    lab.proc(hb).signal(libc::SIGTERM);
    assert!(lab.proc(hb).wait_exit(Duration::from_secs(5)).is_some());
    assert!(lab.proc(hb).log_text().contains("only heartbeatd stops"));
    assert!(
        lab.wait_log(fo, "its host stays up", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // The host stays up and answers for its address: nothing moves, nothing is fenced.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lab.holds(Host::Sec, "eth0", VIP), "{}", lab.logs());
    assert_eq!(
        lab.status(Host::Sec, "failoverd")["peer_state"],
        "daemon-stopped"
    );
    client_reaches_primary(&lab);
    // Then the host dies after all: its address stops answering, and is taken over.
    let died = std::time::Instant::now();
    lab.links(Host::Pri, false);
    let took = client_reaches_secondary(&lab, Duration::from_secs(5));
    let timeline = sampler.finish();
    assert!(
        timeline.two_holders().is_empty(),
        "two holders: {:?}\n{}",
        timeline.two_holders(),
        timeline.render()
    );
    // Nobody answered only from the host's death to the takeover.
    let nobody = timeline.no_holder_for(VIP, stopped, died);
    assert!(nobody < Duration::from_millis(20), "{nobody:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!lab.proc(fo).log_text().contains("-> conflict"));
}

#[test]
fn returning_primary_gets_its_address_back() {
    let mut lab = Lab::new("return");
    let (hb, fo) = lab.start_pair(&[], &[]);
    client_reaches_primary(&lab);
    lab.kill_primary(hb);
    client_reaches_secondary(&lab, Duration::from_secs(10));
    // The primary returns: its heartbeatd starts as its links come up.
    let sampler = lab.sampler(&[VIP]);
    let _hb2 = lab.start_heartbeatd(&[]);
    lab.links(Host::Pri, true);
    let back = std::time::Instant::now();
    let released = wait_for(Duration::from_secs(10), || {
        !lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("the secondary never released:\n{}", lab.logs()));
    // At its first verified heartbeat: one challenge round trip, far below this bound.
    assert!(
        released < Duration::from_secs(1),
        "released after {released:?}"
    );
    assert!(lab.proc(fo).log_text().contains("released 198.51.100.10"));
    assert!(lab
        .proc(fo)
        .log_text()
        .contains("198.51.100.10 are released"));
    client_reaches_primary(&lab);
    let timeline = sampler.finish();
    let end = std::time::Instant::now();
    // The primary's own address answers from its links' return: the two hold it at once only
    // until its first verified heartbeat (the bench measures it; this bound is generous).
    let overlap = timeline.two_holders_for(VIP, back, end);
    assert!(
        overlap < Duration::from_millis(500),
        "{overlap:?}\n{}",
        timeline.render()
    );
    // Nobody: at most the samplers' own granularity (each samples every 2 ms).
    let nobody = timeline.no_holder_for(VIP, back, end);
    assert!(
        nobody < Duration::from_millis(20),
        "{nobody:?}\n{}",
        timeline.render()
    );
}

#[test]
fn one_link_down_is_an_anomaly_not_a_takeover() {
    let mut lab = Lab::new("onelink");
    let (_hb, fo) = lab.start_pair(&[], &[]);
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
fn a_primary_whose_public_link_carries_nothing_is_taken_over_and_gets_it_back() {
    let mut lab = Lab::new("loss");
    let (_hb, fo) = lab.start_pair(&[], &[]);
    client_reaches_primary(&lab);
    // Its public NIC carries nothing, though its link is up: heartbeats still come on the
    // private link, but nobody can reach its address.
    lab.loss(Host::Pri, "eth0", 100);
    assert!(
        lab.wait_log(fo, "network anomaly", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    client_reaches_secondary(&lab, Duration::from_secs(5));
    assert!(
        lab.proc(fo).log_text().contains("(peer-cannot-serve)"),
        "{}",
        lab.logs()
    );
    assert!(!lab.proc(fo).log_text().contains("-> conflict"));
    // Its NIC works again: its kernel answers our probes, and it gets its address back.
    lab.loss(Host::Pri, "eth0", 0);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    client_reaches_primary(&lab);
}

#[test]
fn failoverd_restarted_while_holding_keeps_or_releases_correctly() {
    let mut lab = Lab::new("restart");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    client_reaches_secondary(&lab, Duration::from_secs(10));
    // failoverd dies without releasing (SIGKILL): the address stays.
    lab.proc(fo).signal(libc::SIGKILL);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    // Restarted with the primary still dead: it keeps the address.
    let fo2 = lab.start_failoverd(&[]);
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
    let _hb2 = lab.start_heartbeatd(&[]);
    let fo3 = lab.start_failoverd(&[]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    assert!(lab.proc(fo3).log_text().contains("(peer-returned)"));
    client_reaches_primary(&lab);
}

#[test]
fn sigterm_on_failoverd_releases_what_it_holds() {
    let mut lab = Lab::new("fostop");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
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
    // Their service managers say the system is stopping: each heartbeatd stopped below says
    // goodbye for a host going down.
    let stopping = [("PATH", lab.systemctl_says("stopping"))];
    let hb_pri = lab.spawn_env(
        Host::Pri,
        "hb-pri",
        "heartbeatd",
        &["-c", &pri_conf],
        &stopping,
    );
    let fo_pri = lab.spawn(Host::Pri, "fo-pri", "failoverd", &["-c", &pri_conf]);
    let hb_sec = lab.spawn_env(
        Host::Sec,
        "hb-sec",
        "heartbeatd",
        &["-c", &sec_conf],
        &stopping,
    );
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

    // The primary's host begins its shutdown: its heartbeatd says goodbye, and the secondary
    // takes over its address at once; the shutdown is called off and heartbeatd starts again.
    lab.proc(hb_pri).signal(libc::SIGTERM);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // One heartbeatd per state directory: the next starts once this one is gone.
    assert!(lab.proc(hb_pri).wait_exit(Duration::from_secs(5)).is_some());
    let hb_pri2 = lab.spawn(Host::Pri, "hb-pri2", "heartbeatd", &["-c", &pri_conf]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(5));

    // Now the other way round.
    lab.proc(hb_sec).signal(libc::SIGTERM);
    lab.wait_holds(Host::Pri, "eth0", SEC_PUB, true, Duration::from_secs(5));
    assert!(lab.proc(hb_sec).wait_exit(Duration::from_secs(5)).is_some());
    let _hb_sec2 = lab.spawn(Host::Sec, "hb-sec2", "heartbeatd", &["-c", &sec_conf]);
    lab.wait_holds(Host::Pri, "eth0", SEC_PUB, false, Duration::from_secs(5));
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

#[test]
fn sighup_rereads_the_config_and_keeps_the_old_one_if_invalid() {
    let mut lab = Lab::new("reload");
    let (hb, fo) = lab.start_pair(&[], &[]);
    // An invalid file: logged, the old settings stay, the daemon runs on.
    lab.write("sec.conf", "FAILOVER_PEER_IP=\"not an address\"\n");
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(fo, "keeping the old one", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    lab.write("pri.conf", "FAILOVER_INTERVAL=\"never\"\n");
    lab.proc(hb).signal(libc::SIGHUP);
    assert!(
        lab.wait_log(hb, "keeping the old one", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lab.proc(fo).try_exit().is_none() && lab.proc(hb).try_exit().is_none());
    assert!(!lab.holds(Host::Sec, "eth0", VIP), "{}", lab.logs());

    // A valid one: a longer timeout on the secondary, a longer interval on the primary.
    let state = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    lab.write(
        "sec.conf",
        &hostconfig(&[
            ("FAILOVER_PEER_IP", VIP),
            ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.10"),
            ("FAILOVER_TIMEOUT", "3s"),
            ("FAILOVER_STATE_DIR", &state),
        ]),
    );
    lab.proc(fo).signal(libc::SIGHUP);
    assert!(lab.wait_log(fo, "configuration reloaded", Duration::from_secs(5)));
    let pstate = lab.state_dir(Host::Pri).to_string_lossy().into_owned();
    lab.write(
        "pri.conf",
        &hostconfig(&[
            ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
            ("FAILOVER_INTERVAL", "200ms"),
            ("FAILOVER_STATE_DIR", &pstate),
        ]),
    );
    lab.proc(hb).signal(libc::SIGHUP);
    assert!(lab.wait_log(hb, "configuration reloaded", Duration::from_secs(5)));
    assert!(
        wait_for(Duration::from_secs(5), || {
            lab.status(Host::Pri, "heartbeatd")["interval_ms"] == 200
                && lab.status(Host::Sec, "failoverd")["interval_ms"] == 200
                && lab.status(Host::Sec, "failoverd")["timeout_ms"] == 3000
        })
        .is_some(),
        "{} {}",
        lab.status(Host::Pri, "heartbeatd"),
        lab.status(Host::Sec, "failoverd")
    );
    // The new timeout is the one in force.
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(10), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover:\n{}", lab.logs()));
    assert!(
        took > Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "took over after {took:?} with a 3 s timeout\n{}",
        lab.logs()
    );
}

#[test]
fn ipv6_addresses_move_too_announced_by_neighbour_advertisement() {
    let mut lab = Lab::new("ipv6");
    lab.add_ipv6();
    let (hb, fo) = lab.start_pair(
        &[],
        &[(
            "FAILOVER_PEER_IP_PAIRS",
            "eth0:198.51.100.10 eth0:2001:db8::10/64",
        )],
    );
    let (pri_mac, sec_mac) = (lab.mac(Host::Pri, "eth0"), lab.mac(Host::Sec, "eth0"));
    let v6 = "2001:db8::10";
    let reach = |lab: &Lab, mac: &str| {
        wait_for(Duration::from_secs(5), || {
            lab.client_ping(v6) && lab.client_neigh6(v6).as_deref() == Some(mac)
        })
        .is_some()
    };
    assert!(
        reach(&lab, &pri_mac),
        "the client does not reach {v6} at the primary\n{}",
        lab.logs()
    );
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", v6, true, Duration::from_secs(10));
    // Added without DAD: usable at once, never tentative.
    // (Only our address's line: the interface's own link-local address may still be in DAD
    // on a loaded machine.)
    let shown = lab.ip(Host::Sec, &["-6", "addr", "show", "dev", "eth0"]);
    let ours: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("2001:db8::10/"))
        .collect();
    assert_eq!(ours.len(), 1, "{shown}");
    assert!(!ours[0].contains("tentative"), "{shown}");
    // The neighbour advertisement moved the client's entry without waiting for it to expire.
    assert!(
        reach(&lab, &sec_mac),
        "the client does not reach {v6} at the secondary\n{}",
        lab.logs()
    );
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    lab.proc(fo).signal(libc::SIGTERM);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(5)).is_some());
    assert!(!lab.holds(Host::Sec, "eth0", v6) && !lab.holds(Host::Sec, "eth0", VIP));
}
