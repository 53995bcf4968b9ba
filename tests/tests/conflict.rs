//! Never two holders, end to end: a primary whose heartbeats are lost (a firewall, heartbeatd
//! killed or paused) but whose kernel still answers for its address is a conflict, not a host
//! to take over; a conflict while holding gives the address back; the Fence hook and a
//! service alias's failback. Every takeover here is either proved to follow a silent probe
//! (the primary's links down) or proved not to happen.

use std::time::{Duration, Instant};

use ipfailover_e2e::{wait_for, Host, Lab, VIP};
use serde_json::Value;

const SMTP_PORT: u16 = 2526;

/// A pair with a secret, mail to the lab's SMTP server, and `extra` for failoverd.
fn pair(lab: &mut Lab, extra: &[(&str, &str)]) -> (usize, usize) {
    pair_saying(lab, extra, "running")
}

/// [`pair`], heartbeatd's service manager saying the system is `state` (`stopping`: its
/// goodbye says the host goes down; `running`: only heartbeatd stops).
fn pair_saying(lab: &mut Lab, extra: &[(&str, &str)], state: &str) -> (usize, usize) {
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let transport = format!("smtp://127.0.0.1:{SMTP_PORT}");
    let mut fo = vec![
        ("FAILOVER_SECRET_FILE", secret.as_str()),
        ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
        ("FAILOVER_EMAIL_TRANSPORT", transport.as_str()),
        ("FAILOVER_EMAIL_FROM", "failover@sec.example.org"),
    ];
    fo.extend_from_slice(extra);
    let _hb = lab.start_heartbeatd_system(&[("FAILOVER_SECRET_FILE", secret.as_str())], state);
    let f = lab.start_failoverd(&fo);
    assert!(
        lab.wait_log(f, "-> monitoring", Duration::from_secs(10)),
        "failoverd never reached monitoring:\n{}",
        lab.logs()
    );
    (_hb, f)
}

/// Whether some delivered mail contains `needle` (headers unfolded, bodies as sent).
fn mailed(lab: &Lab, needle: &str) -> bool {
    lab.mails().iter().any(|m| {
        let flat = m
            .replace("\r\n", "\n")
            .replace("\n ", " ")
            .replace("\n\t", " ");
        flat.contains(needle)
    })
}

fn conflict(lab: &Lab) -> Value {
    lab.status(Host::Sec, "failoverd")["conflict"].clone()
}

/// Never holds the address for `d`, sampling every 5 ms.
fn never_holds(lab: &Lab, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert!(
            !lab.holds(Host::Sec, "eth0", VIP),
            "the secondary took over a primary that still answers:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_firewall_that_drops_the_heartbeats_is_a_conflict_until_the_primary_dies() {
    let mut lab = Lab::new("cfw");
    let (_hb, fo) = pair(&mut lab, &[]);
    let pri_mac = lab.mac(Host::Pri, "eth0");
    // UDP 1694 dropped on both links of the live primary.
    lab.firewall_heartbeats(Host::Pri, true);
    assert!(
        lab.wait_log(fo, "-> conflict", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    never_holds(&lab, Duration::from_secs(2));
    let c = wait_for(Duration::from_secs(6), || {
        conflict(&lab)["mac"] == pri_mac.as_str()
    })
    .map(|_| conflict(&lab));
    let c = c.unwrap_or_else(|| {
        panic!(
            "no conflict in the status: {}",
            lab.status(Host::Sec, "failoverd")
        )
    });
    assert_eq!(c["address"], VIP);
    assert_eq!(c["holding"], false);
    assert_eq!(lab.status(Host::Sec, "failoverd")["state"], "conflict");
    assert!(
        wait_for(Duration::from_secs(10), || mailed(
            &lab,
            &format!("198.51.100.10 still answers from {pri_mac}: not taking over")
        ))
        .is_some(),
        "no conflict mail:\n{}",
        lab.logs()
    );
    // The primary's host goes down: now its address does not answer, and it is taken over
    // within the timeout (1 s), counted from its links going down.
    let down = Instant::now();
    lab.links(Host::Pri, false);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let took = down.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "taken over {took:?} after the links went down"
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
}

#[test]
fn heartbeatd_killed_or_paused_on_a_live_host_is_no_reason_to_take_over() {
    let mut lab = Lab::new("ckill");
    let (hb, fo) = pair(&mut lab, &[]);
    // SIGKILL: the host lives, with its address.
    lab.proc(hb).signal(libc::SIGKILL);
    assert!(lab.proc(hb).wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        lab.wait_log(fo, "-> conflict", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    never_holds(&lab, Duration::from_secs(2));
    assert_eq!(lab.status(Host::Sec, "failoverd")["state"], "conflict");
    // A new heartbeatd: a new boot, which proves itself fresh and ends the conflict.
    let secret = lab.dir.join("secret").to_string_lossy().into_owned();
    let hb2 = lab.start_heartbeatd_system(&[("FAILOVER_SECRET_FILE", &secret)], "stopping");
    assert!(
        lab.wait_log(
            fo,
            "conflict -> monitoring (peer-alive)",
            Duration::from_secs(5)
        ),
        "{}",
        lab.logs()
    );
    // SIGSTOP past the timeout (a paused VM, a hung process), then SIGCONT.
    lab.proc(hb2).signal(libc::SIGSTOP);
    never_holds(&lab, Duration::from_millis(2500));
    assert_eq!(lab.status(Host::Sec, "failoverd")["state"], "conflict");
    lab.proc(hb2).signal(libc::SIGCONT);
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .status(Host::Sec, "failoverd")["state"]
            == "monitoring")
        .is_some(),
        "{}",
        lab.logs()
    );
    assert!(!lab.proc(fo).log_text().contains("added 198.51.100.10"));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}

#[test]
fn a_fence_hook_that_powers_the_primary_off_is_followed_by_the_takeover() {
    let mut lab = Lab::new("cfence");
    // Fence "powers the primary off": its links go down (what IPMI or a PDU would do).
    let pri = lab.ns(Host::Pri);
    let hooks = lab.dir.join("scripts").join(VIP);
    let marker = lab.dir.join("fenced");
    std::fs::create_dir_all(&hooks).expect("hook dir");
    let fence = hooks.join("Fence");
    std::fs::write(
        &fence,
        format!(
            "#!/bin/sh\necho \"$1 $FAILOVER_REASON\" > {}\nip -n {pri} link set eth0 down\n\
             ip -n {pri} link set eth1 down\nexit 0\n",
            marker.display()
        ),
    )
    .expect("Fence");
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [lab.dir.join("scripts"), hooks.clone()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(&fence, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let (hb, fo) = pair(&mut lab, &[("FAILOVER_FENCE_AFTER", "1s")]);
    lab.proc(hb).signal(libc::SIGKILL);
    assert!(
        lab.wait_log(fo, "-> conflict", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    let conflicted = Instant::now();
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let took = conflicted.elapsed();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        "Fence conflict"
    );
    // FAILOVER_FENCE_AFTER (1 s), then one probe round (300 ms here) and the takeover's
    // hooks.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "taken over {took:?} after the conflict"
    );
    assert!(
        lab.proc(fo).log_text().contains("hook Fence ok"),
        "{}",
        lab.logs()
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
}

#[test]
fn a_primary_back_with_its_address_but_no_heartbeats_gets_it_back_after_the_grace() {
    let mut lab = Lab::new("creturn");
    let (hb, fo) = pair(&mut lab, &[("FAILOVER_CONFLICT_GRACE", "2s")]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    // It comes back, its address on its interface, but a firewall drops its heartbeats.
    lab.firewall_heartbeats(Host::Pri, true);
    lab.links(Host::Pri, true);
    let secret = lab.dir.join("secret").to_string_lossy().into_owned();
    let _hb2 = lab.start_heartbeatd(&[("FAILOVER_SECRET_FILE", &secret)]);
    let back = Instant::now();
    // Both answer for a while (the grace), then the secondary releases with reason conflict.
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    let released = back.elapsed();
    // The grace runs from its first answer (its announcement at start), which this clock
    // may see a moment late.
    assert!(
        released >= Duration::from_millis(1800) && released < Duration::from_secs(6),
        "released {released:?} after the primary came back (grace 2 s)"
    );
    assert!(
        lab.proc(fo)
            .log_text()
            .contains("-> releasing (PreRel) (conflict)"),
        "{}",
        lab.logs()
    );
    assert!(
        wait_for(Duration::from_secs(10), || mailed(
            &lab,
            "also answers from"
        ))
        .is_some(),
        "no mail of the conflict while holding:\n{}",
        lab.logs()
    );
    // The client ends at the primary's MAC, and the secondary does not take it again.
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    never_holds(&lab, Duration::from_secs(2));
}

#[test]
fn a_goodbye_from_a_host_that_stays_up_is_taken_then_given_back_after_the_grace() {
    let mut lab = Lab::new("cbye");
    // Its service manager says the host is going down, but the host stays up after all (a
    // shutdown that hangs, or is called off): the goodbye is taken at face value, at once,
    // and the address given back once the host keeps answering past the grace.
    let (hb, fo) = pair_saying(&mut lab, &[("FAILOVER_CONFLICT_GRACE", "2s")], "stopping");
    let bye = Instant::now();
    lab.proc(hb).signal(libc::SIGTERM);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(2));
    assert!(
        bye.elapsed() < Duration::from_millis(800),
        "{:?}",
        bye.elapsed()
    );
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    let gave_back = bye.elapsed();
    assert!(gave_back >= Duration::from_secs(2), "{gave_back:?}");
    // heartbeatd is gone, so it announces nothing: the secondary announced the address in
    // the primary's name when it gave it up, and the client is back at once.
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(1));
    never_holds(&lab, Duration::from_millis(1500));

    // A host that says goodbye and then goes down within the grace (a clean shutdown): the
    // secondary takes over and keeps the address, with no flapping.
    let secret = lab.dir.join("secret").to_string_lossy().into_owned();
    let hb2 = lab.start_heartbeatd_system(&[("FAILOVER_SECRET_FILE", &secret)], "stopping");
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .status(Host::Sec, "failoverd")["state"]
            == "monitoring")
        .is_some(),
        "{}",
        lab.logs()
    );
    let takeovers_before = lab.proc(fo).log_text().matches("-> acquired").count();
    lab.proc(hb2).signal(libc::SIGTERM);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(700));
    lab.links(Host::Pri, false);
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        assert!(
            lab.holds(Host::Sec, "eth0", VIP),
            "the address was handed back and forth:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let log = lab.proc(fo).log_text();
    assert_eq!(
        log.matches("-> acquired").count(),
        takeovers_before + 1,
        "{log}"
    );
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
}

#[test]
fn asymmetric_links_are_no_reason_to_take_over() {
    let mut lab = Lab::new("casym");
    // Link 1 (public) drops what the primary sends the secondary; link 2 (private) drops
    // what the secondary sends the primary. failoverd starts in that state: its challenge
    // reaches the primary only on link 1, the answer reaches it only on link 2.
    lab.nft(
        Host::Lan,
        "table bridge asym {\n  chain f {\n    type filter hook forward priority 0;\n    \
         iifname \"pri-eth0\" oifname \"sec-eth0\" drop\n    \
         iifname \"sec-eth1\" oifname \"pri-eth1\" drop\n  }\n}\n",
    );
    let secret = lab.write("secret", "the shared secret of this lab pair\n");
    let secret = secret.to_string_lossy().into_owned();
    let s = [("FAILOVER_SECRET_FILE", secret.as_str())];
    let (_hb, fo) = lab.start_pair(&s, &s);
    never_holds(&lab, Duration::from_secs(3));
    let status = lab.status(Host::Sec, "failoverd");
    assert_eq!(status["state"], "monitoring", "{status}");
    assert_eq!(status["peer_verified"], true, "{status}");
    assert!(
        !lab.proc(fo).log_text().contains("-> acquiring"),
        "{}",
        lab.logs()
    );
}

#[test]
fn a_service_alias_fails_back_to_the_primarys_mac() {
    let mut lab = Lab::new("calias");
    const ALIAS: &str = "198.51.100.100";
    lab.ip(
        Host::Pri,
        &["addr", "add", "198.51.100.100/24", "dev", "eth0"],
    );
    let pri_mac = lab.mac(Host::Pri, "eth0");
    let (hb, _fo) = lab.start_pair(&[], &[("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.100")]);
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(5));
    lab.client_reaches(ALIAS, Host::Sec, Duration::from_secs(5));
    // The primary comes back: the secondary releases, and heartbeatd announces the alias it
    // was told about, not only its own address.
    lab.links(Host::Pri, true);
    let _hb2 = lab.start_heartbeatd(&[]);
    lab.wait_holds(Host::Sec, "eth0", ALIAS, false, Duration::from_secs(5));
    let released = Instant::now();
    let back = wait_for(Duration::from_secs(5), || {
        lab.client_neigh(ALIAS).as_deref() == Some(pri_mac.as_str()) && lab.client_ping(ALIAS)
    });
    let back = back.unwrap_or_else(|| {
        panic!(
            "the client never got back to the primary's MAC for {ALIAS}: {:?}\n{}",
            lab.client_neigh(ALIAS),
            lab.logs()
        )
    });
    // Three intervals (100 ms) plus a few ms, with room for a busy machine.
    assert!(
        back < Duration::from_millis(800),
        "the client reached {ALIAS} at the primary {back:?} after the release ({:?} since)",
        released.elapsed()
    );
}

#[test]
fn heavy_loss_on_both_links_makes_short_conflicts_and_never_a_fence() {
    let mut lab = Lab::new("closs");
    let marker = lab.dir.join("fenced");
    lab.hook(
        VIP,
        "Fence",
        &format!("echo \"$1 $FAILOVER_REASON\" >> {}", marker.display()),
    );
    // A tight timeout (three intervals) and the default FAILOVER_FENCE_AFTER: at 60 % loss on
    // each link the secondary misses three heartbeats in a row every few seconds, and each
    // time the primary's next heartbeat ends what followed. None of it is a stuck host.
    let (_hb, fo) = lab.start_pair(&[], &[("FAILOVER_TIMEOUT", "300ms")]);
    let sampler = lab.sampler(&[VIP]);
    let from = Instant::now();
    for link in ["eth0", "eth1"] {
        lab.loss(Host::Pri, link, 60);
    }
    std::thread::sleep(Duration::from_secs(20));
    for link in ["eth0", "eth1"] {
        lab.loss(Host::Pri, link, 0);
    }
    assert!(
        wait_for(Duration::from_secs(10), || {
            lab.status(Host::Sec, "failoverd")["state"] == "monitoring"
                && !lab.holds(Host::Sec, "eth0", VIP)
        })
        .is_some(),
        "{}",
        lab.logs()
    );
    let timeline = sampler.finish();
    let two = timeline.two_holders_for(VIP, from, Instant::now());
    let nobody = timeline.no_holder_for(VIP, from, Instant::now());
    let log = lab.proc(fo).log_text();
    let conflicts = log.matches("-> conflict").count();
    let takeovers = log.matches("failoverd::pair] took over").count();
    eprintln!(
        "{conflicts} conflicts, {takeovers} takeovers, two holders {two:?}, nobody {nobody:?} over 20 s at 60 % loss \
         on both links"
    );
    assert!(!marker.exists(), "Fence ran:\n{}", lab.logs());
    assert!(
        !lab.proc(fo).log_text().contains("hook Fence"),
        "{}",
        lab.logs()
    );
    assert!(
        conflicts + takeovers > 0,
        "the loss made no timeout at all:\n{}",
        lab.logs()
    );
    // The primary's kernel answers all along: a takeover needs a whole probe round lost as
    // well, and then its next heartbeat that gets through gives the address back at once
    // (about a sixth of a second at this loss, a few times in these 20 s).
    assert!(
        two < Duration::from_millis(takeovers as u64 * 600 + 500),
        "{two:?} over {takeovers} takeovers\n{}",
        timeline.render()
    );
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}
