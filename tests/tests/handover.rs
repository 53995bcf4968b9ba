//! The handover protocol end to end (docs/handover.md): an address changes hands by
//! agreement, so an administrator's ordinary week makes no moment of two holders, and nobody
//! answering only for as long as a handover takes. Each scenario samples both hosts every 2 ms
//! (is the address on an interface whose link is up) and reports both figures.

use std::time::{Duration, Instant};

use ipfailover_e2e::{wait_for, Host, Lab, VIP};

/// The primary's service address, managed by heartbeatd.
const ALIAS: &str = "198.51.100.100";

/// How long nobody may answer across a handover of a service address here: the release's
/// remove and one trip of the report, on a loaded machine (the bench measures it).
const HANDOVER_GAP: Duration = Duration::from_millis(300);

/// A pair that moves the service address: heartbeatd manages it, failoverd takes it over.
fn alias_pair(lab: &mut Lab, fo: &[(&str, &str)]) -> (usize, usize) {
    let hb = lab.start_heartbeatd(&[("FAILOVER_IP_PAIRS", &format!("eth0:{ALIAS}/24"))]);
    let mut settings = vec![("FAILOVER_PEER_IP_PAIRS", format!("eth0:{ALIAS}"))];
    settings.extend(fo.iter().map(|(k, v)| (*k, v.to_string())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fo = lab.start_failoverd(&settings);
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(5));
    (hb, fo)
}

/// The sampler's verdict over `[from, to]`: no two holders, and nobody for at most `gap`.
fn single_holder(
    timeline: &ipfailover_e2e::sampler::Timeline,
    addr: &str,
    from: Instant,
    gap: Duration,
) {
    let to = Instant::now();
    assert!(
        timeline.two_holders().is_empty(),
        "two holders of {addr}: {:?}\n{}",
        timeline.two_holders(),
        timeline.render()
    );
    let nobody = timeline.no_holder_for(addr, from, to);
    assert!(
        nobody <= gap,
        "nobody answered for {addr} for {nobody:?}\n{}",
        timeline.render()
    );
}

#[test]
fn a_service_address_fails_back_with_no_moment_of_two_holders() {
    let mut lab = Lab::new("hoback");
    let (hb, fo) = alias_pair(&mut lab, &[]);
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(5));
    lab.client_reaches(ALIAS, Host::Sec, Duration::from_secs(5));
    // The primary reboots, so the address is no longer on its interface, and returns: its
    // links come up and heartbeatd starts again.
    lab.ip(
        Host::Pri,
        &["addr", "del", &format!("{ALIAS}/24"), "dev", "eth0"],
    );
    let sampler = lab.sampler(&[ALIAS]);
    let back = Instant::now();
    let _hb2 = lab.start_heartbeatd(&[("FAILOVER_IP_PAIRS", &format!("eth0:{ALIAS}/24"))]);
    lab.links(Host::Pri, true);
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(5));
    // The client's entry expires in the middle of the failback: it must end at the primary.
    lab.ip(Host::Cli, &["neigh", "flush", "dev", "eth0"]);
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    assert!(!lab.holds(Host::Sec, "eth0", ALIAS));
    let timeline = sampler.finish();
    single_holder(&timeline, ALIAS, back, HANDOVER_GAP);
    assert!(
        lab.proc(fo).log_text().contains("(peer-returned)"),
        "{}",
        lab.logs()
    );
}

#[test]
fn restarting_or_stopping_heartbeatd_moves_the_service_address_by_agreement() {
    let mut lab = Lab::new("horestart");
    let (hb, _fo) = alias_pair(&mut lab, &[]);
    let sampler = lab.sampler(&[ALIAS, VIP]);
    let start = Instant::now();
    // A restart: heartbeatd removes the address before its goodbye, failoverd takes it at
    // once; the new heartbeatd waits until failoverd has given it up, then adds it.
    lab.proc(hb).signal(libc::SIGTERM);
    assert!(lab.proc(hb).wait_exit(Duration::from_secs(5)).is_some());
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(3));
    let hb2 = lab.start_heartbeatd(&[("FAILOVER_IP_PAIRS", &format!("eth0:{ALIAS}/24"))]);
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(5));
    assert!(!lab.holds(Host::Sec, "eth0", ALIAS));
    // A stop: the service address goes to the secondary, the primary's own address stays.
    lab.proc(hb2).signal(libc::SIGTERM);
    assert!(lab.proc(hb2).wait_exit(Duration::from_secs(5)).is_some());
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.holds(Host::Pri, "eth0", VIP) && !lab.holds(Host::Sec, "eth0", VIP));
    lab.client_reaches(ALIAS, Host::Sec, Duration::from_secs(5));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    let timeline = sampler.finish();
    single_holder(&timeline, ALIAS, start, HANDOVER_GAP * 2);
    assert!(timeline.two_holders().is_empty());
}

#[test]
fn a_primary_back_on_its_private_link_only_does_not_get_its_address() {
    let mut lab = Lab::new("hopriv");
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // The primary returns with only its private link: its public port is not up yet.
    let sampler = lab.sampler(&[VIP]);
    let back = Instant::now();
    lab.ip(Host::Pri, &["link", "set", "eth1", "up"]);
    let _hb2 = lab.start_heartbeatd(&[]);
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .status(Host::Sec, "failoverd")["peer_state"]
            == "alive")
        .is_some(),
        "{}",
        lab.logs()
    );
    // Its heartbeats say it cannot serve its address: the secondary keeps it, and the client
    // is served all along.
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.holds(Host::Sec, "eth0", VIP), "{}", lab.logs());
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(2));
    // Its public port comes up: it gets its address back.
    lab.ip(Host::Pri, &["link", "set", "eth0", "up"]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(5));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    let timeline = sampler.finish();
    let nobody = timeline.no_holder_for(VIP, back, Instant::now());
    assert!(
        nobody < Duration::from_millis(50),
        "{nobody:?}\n{}",
        timeline.render()
    );
    assert!(!lab.proc(fo).log_text().contains("-> conflict"));
}

#[test]
fn a_third_host_answering_for_the_primarys_address_is_reported() {
    let mut lab = Lab::new("hothird");
    lab.add_attacker();
    let (_hb, fo) = lab.start_pair(&[], &[]);
    let mac = lab.mac(Host::Atk, "eth0");
    // A host configured with the primary's address by mistake: it answers ARP for it.
    lab.ip(
        Host::Atk,
        &["addr", "add", &format!("{VIP}/32"), "dev", "eth0"],
    );
    let seen = wait_for(Duration::from_secs(15), || {
        lab.status(Host::Sec, "failoverd")["state"] == "third-host"
    });
    assert!(
        seen.is_some(),
        "{}\n{}",
        lab.status(Host::Sec, "failoverd"),
        lab.logs()
    );
    let st = lab.status(Host::Sec, "failoverd");
    assert_eq!(st["third_host"]["mac"], mac.as_str(), "{st}");
    assert!(lab
        .proc(fo)
        .log_text()
        .contains("a third host answers for 198.51.100.10"));
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    // It goes away: over.
    lab.ip(
        Host::Atk,
        &["addr", "del", &format!("{VIP}/32"), "dev", "eth0"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .status(Host::Sec, "failoverd")["state"]
            == "monitoring")
        .is_some(),
        "{}",
        lab.logs()
    );
}

#[test]
fn a_new_peer_on_sighup_gives_the_old_peers_address_back_first() {
    let mut lab = Lab::new("honewpeer");
    let log = lab.dir.join("hooks.log").to_string_lossy().into_owned();
    for name in ["PreRel-log", "PostRel-log"] {
        lab.hook(
            VIP,
            name,
            &format!(
                "echo \"$1 $FAILOVER_REASON $FAILOVER_PEER_IP $FAILOVER_PEER_IP_PAIRS\" >> {log}"
            ),
        );
    }
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    // The administrator points failoverd at another primary.
    lab.failoverd_conf(&[
        ("FAILOVER_PEER_IP", "198.51.100.11"),
        ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.111"),
    ]);
    lab.proc(fo).signal(libc::SIGHUP);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(5));
    // PostRel runs once the address is gone.
    let ran = || {
        let hooks = ipfailover_e2e::read(std::path::Path::new(&log));
        hooks.contains(&format!("PreRel new-peer {VIP} eth0:{VIP}"))
            && hooks.contains(&format!("PostRel new-peer {VIP} eth0:{VIP}"))
    };
    assert!(
        wait_for(Duration::from_secs(5), ran).is_some(),
        "{}\n{}",
        ipfailover_e2e::read(std::path::Path::new(&log)),
        lab.logs()
    );
    assert!(
        wait_for(Duration::from_secs(5), || {
            lab.status(Host::Sec, "failoverd")["peer"] == "198.51.100.11"
        })
        .is_some(),
        "{}\n{}",
        lab.status(Host::Sec, "failoverd"),
        lab.logs()
    );
}

#[test]
fn a_primary_whose_public_link_goes_down_gives_its_service_address_up_and_gets_it_back() {
    let mut lab = Lab::new("holink");
    let (hb, fo) = alias_pair(&mut lab, &[]);
    let sampler = lab.sampler(&[ALIAS]);
    // Its public link goes down while heartbeatd runs: heartbeats still come on the private
    // link, the service address cannot be served there, so heartbeatd gives it up and
    // failoverd takes it.
    lab.ip(Host::Pri, &["link", "set", "eth0", "down"]);
    assert!(
        lab.wait_log(hb, "cannot be served here", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(10));
    lab.client_reaches(ALIAS, Host::Sec, Duration::from_secs(5));
    assert!(!lab.holds(Host::Pri, "eth0", ALIAS));
    // The link comes back: the address goes back by agreement.
    let back = Instant::now();
    lab.ip(Host::Pri, &["link", "set", "eth0", "up"]);
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(10));
    lab.ip(Host::Cli, &["neigh", "flush", "dev", "eth0"]);
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    assert!(!lab.holds(Host::Sec, "eth0", ALIAS));
    let timeline = sampler.finish();
    single_holder(&timeline, ALIAS, back, HANDOVER_GAP);
    assert!(
        !lab.proc(fo).log_text().contains("-> conflict"),
        "{}",
        lab.logs()
    );
}
