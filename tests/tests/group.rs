//! Groups on etcd (docs/groups.md), end to end: a real three-member etcd cluster and three group
//! members in namespaces, a client on the public LAN, and a sampler that looks at every
//! member's interface every few milliseconds. The invariant of every scenario: never two
//! members holding one address at the same sample.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::time::{Duration, Instant};

use ipfailover_e2e::group::{never_two, three_members, vip, GroupLab};

/// Waits (up to 20 s) until member `i`, and only it, holds `addr`.
fn held_by(lab: &GroupLab, addr: &str, i: usize) {
    assert_eq!(
        lab.wait_one_holder(addr, Duration::from_secs(20)),
        Some(i),
        "m{i} should hold {addr}:\n{}",
        lab.logs()
    );
}

#[test]
fn the_holder_crashes_and_the_next_priority_takes_over() {
    let mut lab = three_members("crash", &[]);
    let addr = vip(0);
    let first = lab.wait_one_holder(&addr, Duration::from_secs(20));
    assert_eq!(
        first,
        Some(1),
        "m1 (the highest priority) should hold {addr}:\n{}",
        lab.logs()
    );
    assert!(
        lab.client_reaches(&addr),
        "the client does not reach {addr}"
    );
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    let crashed = Instant::now();
    lab.kill_member(1);
    let next = lab.wait_one_holder(&addr, Duration::from_secs(15));
    let t = sampler.finish();
    never_two(&lab, &t);
    assert_eq!(next, Some(2), "m2 should take {addr} over:\n{}", lab.logs());
    let took = t.first_held_after(2, &addr, crashed).map(|at| at - crashed);
    eprintln!("takeover after the crash: {took:?}");
    assert!(
        lab.client_reaches(&addr),
        "the client does not reach {addr} after the takeover"
    );
    assert_eq!(lab.client_neigh(&addr), Some(lab.member_mac(2)));
    // failoverctl on the new holder: healthy, the group view as text and as JSON.
    let conf = lab.member_conf(2, &[]);
    let ctl = ipfailover_e2e::bin("failoverctl")
        .to_string_lossy()
        .into_owned();
    let run = |args: &[&str]| {
        std::process::Command::new(&ctl)
            .args(["-c", &conf])
            .args(args)
            .output()
            .expect("failoverctl")
    };
    // Once m1's lease has expired in etcd, the view no longer lists it.
    let settled = ipfailover_e2e::wait_for(Duration::from_secs(8), || {
        let out = run(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.code() == Some(0)
            && text.contains(&format!("address {addr}/24 on eth0: held by m2"))
            && !text.contains("member m1 ")
    });
    let out = run(&["status"]);
    assert!(
        settled.is_some(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["health"], "healthy");
    assert_eq!(
        v["daemons"]["failoverd"]["group"]["addresses"][0]["holder"],
        "m2"
    );
}

#[test]
fn a_holder_cut_off_from_etcd_drops_the_address_before_another_acquires_it() {
    let mut lab = three_members("cut", &[]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    let cut = Instant::now();
    // Cut off from etcd, not from the client: its kernel would go on answering if it kept
    // the address. A firewall, not a link down: the link stays up and requests hang.
    lab.firewall_etcd(1, true);
    let next = lab.wait_one_holder_other_than(&addr, 1, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let t = sampler.finish();
    never_two(&lab, &t);
    assert_eq!(next, Some(2), "m2 should take {addr} over:\n{}", lab.logs());
    let dropped = t.last_held(1, &addr).expect("m1 held it");
    let taken = t.first_held_after(2, &addr, cut).expect("m2 holds it");
    eprintln!(
        "m1 dropped it {:?} after the cut; m2 added it {:?} after the cut",
        dropped - cut,
        taken - cut
    );
    assert!(
        lab.wait_log(1, "fenced itself", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // Back in touch, it rejoins and takes nothing back (no preemption).
    lab.firewall_etcd(1, false);
    let rejoined = ipfailover_e2e::wait_for(Duration::from_secs(15), || {
        let st = lab.status(1);
        st["state"] == "member" && st["group"]["etcd_reachable"] == true
    });
    assert!(
        rejoined.is_some(),
        "m1 did not rejoin: {}\n{}",
        lab.status(1),
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.holders_now(&addr), vec![2], "{}", lab.logs());
}

#[test]
fn without_an_etcd_quorum_nobody_acquires_and_the_group_recovers_with_it() {
    let mut lab = three_members("quorum", &[("FAILOVER_LEASE_TTL", "3s")]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    // The leader dies: the other two elect a new one; the holder keeps the address (its
    // renewals go to another endpoint), or at worst fences and it is acquired again.
    let leader = lab.etcd_leader().expect("a leader");
    lab.kill_etcd(leader);
    assert!(
        ipfailover_e2e::wait_for(Duration::from_secs(10), || lab.etcd_leader().is_some()).is_some(),
        "no new etcd leader"
    );
    assert!(
        lab.wait_one_holder(&addr, Duration::from_secs(15))
            .is_some(),
        "{}",
        lab.logs()
    );
    // Then a second etcd member: no quorum. The holder fences at its deadline; nobody
    // acquires while the quorum is gone.
    let second = (1..=3).find(|j| *j != leader).expect("another etcd member");
    let lost = Instant::now();
    lab.kill_etcd(second);
    let gone = ipfailover_e2e::wait_for(Duration::from_secs(10), || {
        lab.holders_now(&addr).is_empty()
    });
    assert!(
        gone.is_some(),
        "the holder did not fence without a quorum:\n{}",
        lab.logs()
    );
    eprintln!("fenced {:?} after the quorum was lost", lost.elapsed());
    // Nobody acquires while it is gone.
    for _ in 0..30 {
        assert!(
            lab.holders_now(&addr).is_empty(),
            "acquired without a quorum:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The quorum returns: the group recovers.
    lab.start_etcd(leader);
    lab.start_etcd(second);
    let back = lab.wait_one_holder(&addr, Duration::from_secs(30));
    let t = sampler.finish();
    never_two(&lab, &t);
    assert!(
        back.is_some(),
        "the group did not recover with the quorum:\n{}",
        lab.logs()
    );
    assert!(lab.client_reaches(&addr));
}

#[test]
fn a_stalled_holder_drops_the_address_before_it_acts_and_the_next_waits_for_that() {
    let mut lab = three_members("stall", &[]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    lab.signal_member(1, libc::SIGSTOP);
    // Past its TTL: m2 wins the key, but m1's kernel still answers for the address, so m2
    // must not add it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        lab.holders_now(&addr),
        vec![1],
        "added while the stalled holder answers"
    );
    let resumed = Instant::now();
    lab.signal_member(1, libc::SIGCONT);
    let next = lab.wait_one_holder_other_than(&addr, 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let t = sampler.finish();
    never_two(&lab, &t);
    assert_eq!(next, Some(2), "{}", lab.logs());
    let dropped = t.last_held(1, &addr).expect("m1 held it");
    eprintln!(
        "m1 dropped the address {:?} after SIGCONT",
        dropped.saturating_duration_since(resumed)
    );
    assert!(
        lab.wait_log(1, "fenced itself", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
}

#[test]
fn a_clean_stop_hands_over_at_once_and_preemption_decides_the_return() {
    for preempt in ["no", "yes"] {
        let mut lab = three_members(&format!("stop{preempt}"), &[("FAILOVER_PREEMPT", preempt)]);
        let addr = vip(0);
        held_by(&lab, &addr, 1);
        let sampler = lab.sampler(std::slice::from_ref(&addr));
        let stop = Instant::now();
        lab.signal_member(1, libc::SIGTERM);
        assert!(
            lab.member(1).wait_exit(Duration::from_secs(10)).is_some(),
            "{}",
            lab.logs()
        );
        let next = lab.wait_one_holder(&addr, Duration::from_secs(10));
        assert_eq!(next, Some(2), "{}", lab.logs());
        // m1 returns.
        lab.start_member(1, &[("FAILOVER_PREEMPT", preempt)]);
        std::thread::sleep(Duration::from_secs(4));
        let t = sampler.finish();
        never_two(&lab, &t);
        // m1's hold: the interval that ends around the stop (its last sample holding may be a
        // sample period before the SIGTERM, if the removal was that quick).
        let gap = t
            .first_held_after(2, &addr, stop)
            .zip(t.held_until(1, &addr, stop - Duration::from_secs(1)))
            .map(|(taken, dropped)| taken.saturating_duration_since(dropped));
        eprintln!("preempt {preempt}: handover gap {gap:?}");
        assert!(
            gap.is_some_and(|g| g < Duration::from_secs(2)),
            "the clean stop did not hand over promptly: {gap:?}\n{}",
            t.render()
        );
        let want = if preempt == "yes" { vec![1] } else { vec![2] };
        assert_eq!(
            lab.holders_now(&addr),
            want,
            "preempt {preempt}:\n{}",
            lab.logs()
        );
    }
}

#[test]
fn a_hundred_addresses_move_together_when_their_holder_crashes() {
    let addrs: Vec<String> = (0..100).map(vip).collect();
    let pairs = addrs
        .iter()
        .map(|a| format!("eth0:{a}/24"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut lab = three_members("hundred", &[("FAILOVER_GROUP_IP_PAIRS", &pairs)]);
    let all_on = |lab: &GroupLab, m: usize| {
        let out = lab.ip(
            ipfailover_e2e::group::Node::Member(m),
            &["-o", "addr", "show", "dev", "eth0", "up"],
        );
        addrs.iter().all(|a| out.contains(&format!("inet {a}/")))
    };
    assert!(
        ipfailover_e2e::wait_for(Duration::from_secs(30), || all_on(&lab, 1)).is_some(),
        "m1 does not hold all 100:\n{}",
        lab.logs()
    );
    let sampler = lab.sampler(&addrs);
    let crash = Instant::now();
    lab.kill_member(1);
    assert!(
        ipfailover_e2e::wait_for(Duration::from_secs(20), || all_on(&lab, 2)).is_some(),
        "m2 does not hold all 100:\n{}",
        lab.logs()
    );
    let t = sampler.finish();
    never_two(&lab, &t);
    let firsts: Vec<Duration> = addrs
        .iter()
        .filter_map(|a| t.first_held_after(2, a, crash))
        .map(|at| at - crash)
        .collect();
    assert_eq!(firsts.len(), 100);
    let (lo, hi) = (firsts.iter().min().copied(), firsts.iter().max().copied());
    eprintln!("100 addresses moved between {lo:?} and {hi:?} after the crash");
}

#[test]
fn compaction_and_member_restarts_leave_no_address_on_two_hosts_or_none() {
    let addrs: Vec<String> = (0..3).map(vip).collect();
    let pairs = addrs
        .iter()
        .map(|a| format!("eth0:{a}/24"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut lab = three_members("compact", &[("FAILOVER_GROUP_IP_PAIRS", &pairs)]);
    for a in &addrs {
        assert!(
            lab.wait_one_holder(a, Duration::from_secs(20)).is_some(),
            "{}",
            lab.logs()
        );
    }
    let sampler = lab.sampler(&addrs);
    // Many revisions, then a compaction of all of them.
    for k in 0..50 {
        lab.etcdctl(&["put", &format!("/other/key{k}"), "x"]);
    }
    let status = lab.etcdctl(&["endpoint", "status", "-w", "json"]);
    let rev = serde_json::from_str::<serde_json::Value>(status.trim())
        .ok()
        .and_then(|v| v[0]["Status"]["header"]["revision"].as_i64())
        .expect("a revision");
    lab.etcdctl(&["compact", &rev.to_string()]);
    // failoverd alone is killed on the holder, and started again: the address stays on its
    // interface meanwhile (its kernel answers), so nobody else may add it; the new process
    // removes it and the group settles.
    lab.signal_member(1, libc::SIGKILL);
    assert!(lab.member(1).wait_exit(Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(1));
    lab.start_member(1, &[("FAILOVER_GROUP_IP_PAIRS", &pairs)]);
    // A non-holder restarts too, and the watchers re-read after the compaction.
    lab.signal_member(3, libc::SIGTERM);
    assert!(lab.member(3).wait_exit(Duration::from_secs(10)).is_some());
    lab.start_member(3, &[("FAILOVER_GROUP_IP_PAIRS", &pairs)]);
    std::thread::sleep(Duration::from_secs(6));
    let t = sampler.finish();
    never_two(&lab, &t);
    for a in &addrs {
        assert_eq!(
            lab.holders_now(a).len(),
            1,
            "{a}: not exactly one holder:\n{}",
            lab.logs()
        );
    }
    // Every member's status agrees on the holders.
    let view = |i: usize| lab.status(i)["group"]["addresses"].clone();
    let holders = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["holder"].as_str().unwrap_or("-").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let h1 = holders(view(1));
    assert_eq!(h1.len(), 3, "{}", lab.status(1));
    assert!(h1.iter().all(|h| h != "-"), "{h1:?}");
    assert_eq!(holders(view(2)), h1);
    assert_eq!(holders(view(3)), h1);
}

#[test]
fn check_config_says_whether_etcd_answers_and_refuses_a_readable_password() {
    let mut lab = GroupLab::new("check", 1, 3);
    let conf = lab.member_conf(1, &[]);
    // etcd down: the configuration is right, and -t says etcd does not answer.
    let out = lab.check_config(1, &conf);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("FAILOVER_ETCD_ENDPOINTS=\""), "{text}");
    assert!(
        text.contains("# group web member m1 priority 190"),
        "{text}"
    );
    assert!(
        text.contains("http://203.0.113.1:2379: does NOT answer"),
        "{text}"
    );
    // etcd up: it answers, with a leader.
    lab.start_etcd_cluster();
    let out = lab.check_config(1, &conf);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.matches(": answers (etcd 3.").count(), 3, "{text}");
    assert!(text.contains("has a leader"), "{text}");
    // A password file others can read: a configuration error (78), named.
    let pw = lab.dir.join("etcd-password");
    std::fs::write(&pw, "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pw_s = pw.to_string_lossy().into_owned();
    let conf = lab.member_conf(
        1,
        &[
            ("FAILOVER_ETCD_USER", "ipfo"),
            ("FAILOVER_ETCD_PASSWORD_FILE", &pw_s),
        ],
    );
    let out = lab.check_config(1, &conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("FAILOVER_ETCD_PASSWORD_FILE") && err.contains("chmod 600"),
        "{err}"
    );
    // An interface this host does not have: refused by -t as the daemon would refuse it.
    let conf = lab.member_conf(1, &[("FAILOVER_GROUP_IP_PAIRS", "eth9:198.51.100.100/24")]);
    let out = lab.check_config(1, &conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("interface `eth9` of FAILOVER_GROUP_IP_PAIRS entry"),
        "{err}"
    );
}

/// The lines of a program's stderr that are not log lines (those start with a timestamp).
fn said(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// `failoverctl check-config` and `failoverd -t` are one check: they refuse the same files with
/// the same words (the etcd password and TLS files too, which check-config once let through),
/// and show the same settings for a good one.
#[test]
fn check_config_and_failoverd_t_refuse_the_same_files_with_the_same_words() {
    use std::os::unix::fs::PermissionsExt;
    let lab = GroupLab::new("agree", 1, 1);
    let ctl = ipfailover_e2e::bin("failoverctl")
        .to_string_lossy()
        .into_owned();
    let check_config = |conf: &str| {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(ipfailover_e2e::group::Node::Member(1)),
            ])
            .args([ctl.as_str(), "check-config", "-c", conf])
            .output()
            .unwrap()
    };
    let file = |name: &str, text: &str, mode: u32| {
        let p = lab.dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_string_lossy().into_owned()
    };
    let missing = lab.dir.join("no-such-file").to_string_lossy().into_owned();
    let open_pw = file("pw-0644", "secret\n", 0o644);
    let not_pem = file("not-a-ca.pem", "this is no certificate\n", 0o644);
    let open_secret = file("secret-0644", "a shared secret of sixteen bytes\n", 0o644);
    let bad: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "a missing etcd password file",
            vec![
                ("FAILOVER_ETCD_USER", "ipfo"),
                ("FAILOVER_ETCD_PASSWORD_FILE", &missing),
            ],
        ),
        (
            "an etcd password file others can read",
            vec![
                ("FAILOVER_ETCD_USER", "ipfo"),
                ("FAILOVER_ETCD_PASSWORD_FILE", &open_pw),
            ],
        ),
        (
            "a CA file without a certificate",
            vec![("FAILOVER_ETCD_CA_FILE", &not_pem)],
        ),
        (
            "a missing client certificate and key",
            vec![
                ("FAILOVER_ETCD_CERT_FILE", &missing),
                ("FAILOVER_ETCD_KEY_FILE", &missing),
            ],
        ),
        (
            "a secret file others can read",
            vec![("FAILOVER_SECRET_FILE", &open_secret)],
        ),
        (
            "a mail transport lettre cannot read",
            vec![
                ("FAILOVER_EMAIL_RECIPIENT", "root@example.org"),
                ("FAILOVER_EMAIL_TRANSPORT", "smtp://[bad"),
            ],
        ),
    ];
    for (what, extra) in &bad {
        let conf = lab.member_conf(1, extra);
        let t = lab.check_config(1, &conf);
        let c = check_config(&conf);
        assert_eq!(
            t.status.code(),
            Some(78),
            "failoverd -t, {what}: {:?}",
            said(&t)
        );
        assert_eq!(
            c.status.code(),
            Some(78),
            "check-config, {what}: {:?}",
            said(&c)
        );
        assert_eq!(said(&t), said(&c), "{what}");
        assert!(
            said(&t)
                .last()
                .is_some_and(|l| l.ends_with("configuration is not valid for failoverd")),
            "{what}: {:?}",
            said(&t)
        );
    }
    // A good file: both accept it and show the same settings.
    let conf = lab.member_conf(1, &[]);
    let t = lab.check_config(1, &conf);
    let c = check_config(&conf);
    assert!(
        t.status.success() && c.status.success(),
        "{:?} {:?}",
        said(&t),
        said(&c)
    );
    let settings = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .take_while(|l| !l.starts_with("# group ") && !l.starts_with("# valid"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(settings(&t), settings(&c));
}

/// `failoverd -t` run in member `i`'s namespace with `SSL_CERT_FILE` set (and `SSL_CERT_DIR`
/// not): where OpenSSL, and so failoverd, finds the system's CA certificates.
fn check_config_with_system_cas(
    lab: &GroupLab,
    i: usize,
    conf: &str,
    ssl_cert_file: &str,
) -> std::process::Output {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(ipfailover_e2e::group::Node::Member(i)),
        ])
        .arg(ipfailover_e2e::bin("failoverd"))
        .args(["-t", "-c", conf])
        .env("SSL_CERT_FILE", ssl_cert_file)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
}

/// Without FAILOVER_ETCD_CA_FILE, failoverd trusts the system's CA certificates (what -t says),
/// not a list built into it: etcd's certificate, signed by a CA the system trusts, is accepted;
/// one the system does not trust is refused, with a hint that names the system's CAs; a system
/// without any CA certificate is a configuration error.
#[test]
fn without_a_ca_file_the_systems_ca_certificates_are_trusted() {
    let mut lab = GroupLab::new("sysca", 1, 1);
    lab.enable_tls();
    lab.start_etcd_cluster();
    let tls = lab.tls.clone().unwrap();
    let conf = lab.member_conf(1, &[("FAILOVER_ETCD_CA_FILE", "")]);
    let out = check_config_with_system_cas(&lab, 1, &conf, &tls.ca);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("# FAILOVER_ETCD_CA_FILE unset: the system's CA certificates"),
        "{text}"
    );
    assert!(text.contains(": answers (etcd 3."), "{text}");
    let out = check_config_with_system_cas(&lab, 1, &conf, &tls.other_ca);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("does NOT answer"), "{text}");
    assert!(text.contains("one of the system's CAs"), "{text}");
    let empty = lab.write("no-cas.pem", "no certificate here\n");
    let out = check_config_with_system_cas(&lab, 1, &conf, &empty);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("FAILOVER_ETCD_CA_FILE: unset, and the system's CA certificates hold none"),
        "{err}"
    );
}

/// A user and password over http:// endpoints: -t and check-config say that the password
/// goes in clear (and so does every start).
#[test]
fn an_etcd_password_over_http_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let lab = GroupLab::new("pwhttp", 1, 1);
    let pw = lab.dir.join("etcd-password");
    std::fs::write(&pw, "secret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pw = pw.to_string_lossy().into_owned();
    let conf = lab.member_conf(
        1,
        &[
            ("FAILOVER_ETCD_USER", "ipfo"),
            ("FAILOVER_ETCD_PASSWORD_FILE", &pw),
        ],
    );
    let warning = "FAILOVER_ETCD_USER: the etcd password goes in clear to http://203.0.113.1:2379";
    let out = lab.check_config(1, &conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(warning), "{err}");
    let out = std::process::Command::new(ipfailover_e2e::bin("failoverctl"))
        .args(["check-config", "-c", &conf])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(warning), "{err}");
}

/// A hook that records its phase and environment in `<dir>/hooks.log`.
fn recording_hook(lab: &GroupLab, name: &str, extra: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = lab.dir.join("scripts").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [lab.dir.join("scripts"), dir.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = lab.dir.join("hooks.log");
    let body = format!(
        "#!/bin/sh\necho \"member=$FAILOVER_MEMBER phase=$1 group=$FAILOVER_GROUP addr=$FAILOVER_ADDRESS epoch=$FAILOVER_EPOCH \
         reason=$FAILOVER_REASON iface=$FAILOVER_INTERFACE\" >> {}\n{extra}\n",
        log.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn hooks_run_around_each_address_with_its_epoch_and_test_can_refuse() {
    let mut lab = GroupLab::new("hooks", 2, 3);
    lab.start_etcd_cluster();
    for name in [
        "PreAcq-10-log",
        "PostAcq-10-log",
        "PreRel-10-log",
        "PostRel-10-log",
    ] {
        recording_hook(&lab, name, "exit 0");
    }
    // Test refuses on m1 only: m2 gets the address although m1 outranks it.
    recording_hook(
        &lab,
        "Test",
        "[ \"$FAILOVER_MEMBER\" = m1 ] && exit 1; exit 0",
    );
    for i in 1..=2 {
        lab.start_member(i, &[]);
    }
    let addr = vip(0);
    let holder = lab.wait_one_holder(&addr, Duration::from_secs(20));
    assert_eq!(holder, Some(2), "Test refused on m1:\n{}", lab.logs());
    // PostAcq runs once the address is on: wait for it.
    let hooks_log = lab.dir.join("hooks.log");
    ipfailover_e2e::wait_for(Duration::from_secs(5), || {
        ipfailover_e2e::read(&hooks_log).contains("member=m2 phase=PostAcq")
    });
    let log = ipfailover_e2e::read(&hooks_log);
    let epoch_of = |line: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("epoch="))
            .and_then(|e| e.parse::<i64>().ok())
    };
    assert!(
        log.contains(&format!("member=m1 phase=Test group=web addr={addr}")),
        "{log}"
    );
    assert!(
        !log.contains("member=m1 phase=PreAcq"),
        "m1 went on after its Test refused:\n{log}"
    );
    let m2: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("member=m2 "))
        .collect();
    let phases: Vec<&str> = m2
        .iter()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("phase=")))
        .collect();
    assert_eq!(phases, ["Test", "PreAcq", "PostAcq"], "{log}");
    // Every phase of one acquisition has the same epoch: the key's create revision.
    let epochs: Vec<Option<i64>> = m2.iter().map(|l| epoch_of(l)).collect();
    assert!(
        epochs.iter().all(|e| e.is_some() && *e == epochs[0]),
        "{log}"
    );
    assert!(
        m2.iter()
            .all(|l| l.contains("reason=unheld") && l.contains("iface=eth0")),
        "{log}"
    );
    // A clean stop: PreRel before the address goes, PostRel after, reason shutdown.
    lab.signal_member(2, libc::SIGTERM);
    assert!(lab.member(2).wait_exit(Duration::from_secs(10)).is_some());
    let log = ipfailover_e2e::read(&lab.dir.join("hooks.log"));
    assert!(log.contains("member=m2 phase=PreRel group=web"), "{log}");
    assert!(log.contains("member=m2 phase=PostRel group=web"), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.starts_with("member=m2 phase=P") && l.contains("Rel "))
            .all(|l| l.contains("reason=shutdown")),
        "{log}"
    );
}

#[test]
fn the_group_sample_passes_check_config_inside_a_namespace() {
    let lab = GroupLab::new("sample", 1, 0);
    let text = std::fs::read_to_string(ipfailover_e2e::repo().join("etc/hostconfig.group"))
        .expect("etc/hostconfig.group");
    // The sample's files, made in the lab: a password of root's, mode 0600; no CA (a CA file
    // must hold a certificate).
    let pw = lab.write("etcd-password", "s3cret\n");
    let text = text
        .replace("/etc/ipfailover/etcd-password", &pw)
        .replace("FAILOVER_ETCD_CA_FILE=", "#FAILOVER_ETCD_CA_FILE=");
    let conf = lab.write("group.conf", &text);
    // Inside the lab's namespace: the sample's etcd addresses lead nowhere from there.
    let out = lab.check_config(1, &conf);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("FAILOVER_GROUP_IP_PAIRS=\"eth0:10.0.0.100/24 eth0:10.0.0.101/24\""),
        "{shown}"
    );
    assert_eq!(shown.matches("does NOT answer").count(), 3, "{shown}");
}

#[test]
fn a_member_authenticates_to_etcd_and_a_wrong_password_acquires_nothing() {
    let mut lab = GroupLab::new("auth", 2, 3);
    lab.start_etcd_cluster();
    for args in [
        &["user", "add", "root:rootpw", "--interactive=false"][..],
        &["user", "add", "ipfo:goodpw", "--interactive=false"],
        &["role", "add", "ipfo"],
        &[
            "role",
            "grant-permission",
            "ipfo",
            "--prefix=true",
            "readwrite",
            "/ipfailover/web/",
        ],
        &["user", "grant-role", "ipfo", "ipfo"],
        &["auth", "enable"],
    ] {
        let out = lab.etcdctl(args);
        assert!(!out.is_empty(), "etcdctl {args:?} said nothing");
    }
    let good = lab.write("good-password", "goodpw\n");
    let bad = lab.write("bad-password", "wrong\n");
    lab.start_member(
        1,
        &[
            ("FAILOVER_ETCD_USER", "ipfo"),
            ("FAILOVER_ETCD_PASSWORD_FILE", &bad),
        ],
    );
    lab.start_member(
        2,
        &[
            ("FAILOVER_ETCD_USER", "ipfo"),
            ("FAILOVER_ETCD_PASSWORD_FILE", &good),
        ],
    );
    let addr = vip(0);
    // m1 outranks m2, but cannot authenticate: m2 holds the address.
    held_by(&lab, &addr, 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.holders_now(&addr), vec![2]);
    assert!(
        lab.wait_log(1, "authenticating as ipfo", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    assert_ne!(lab.status(1)["state"], "member", "{}", lab.status(1));
}

#[test]
fn members_reach_etcd_over_tls_with_client_certificates_and_untrusted_ones_acquire_nothing() {
    let mut lab = GroupLab::new("tls", 3, 3);
    lab.enable_tls();
    lab.start_etcd_cluster();
    let tls = lab.tls.clone().unwrap();
    let check = |lab: &GroupLab, i: usize, conf: &str| {
        let out = lab.check_config(i, conf);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // -t over TLS, with the lab's CA and a client certificate: every endpoint answers.
    let text = check(&lab, 3, &lab.member_conf(3, &[]));
    assert!(
        text.contains("https://203.0.113.1:2379: answers (etcd 3."),
        "{text}"
    );
    assert_eq!(text.matches(": answers (etcd 3.").count(), 3, "{text}");
    // Trusting another CA: etcd's certificate is refused, and -t says so per endpoint.
    let wrong_ca = [("FAILOVER_ETCD_CA_FILE", tls.other_ca.as_str())];
    let text = check(&lab, 1, &lab.member_conf(1, &wrong_ca));
    assert_eq!(text.matches("does NOT answer").count(), 3, "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let addr = vip(0);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    // m1 outranks the others but trusts the wrong CA; m2 shows no client certificate, which
    // etcd (--client-cert-auth) refuses; m3 has both right and is the only one that holds.
    lab.start_member(1, &wrong_ca);
    let no_cert = [
        ("FAILOVER_ETCD_CERT_FILE", ""),
        ("FAILOVER_ETCD_KEY_FILE", ""),
    ];
    lab.start_member(2, &no_cert);
    lab.start_member(3, &[]);
    held_by(&lab, &addr, 3);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.holders_now(&addr), vec![3], "{}", lab.logs());
    for i in [1, 2] {
        assert_ne!(lab.status(i)["state"], "member", "{}", lab.status(i));
    }
    // Each log says what to look at.
    assert!(
        lab.wait_log(
            1,
            "not signed by a CA in FAILOVER_ETCD_CA_FILE",
            Duration::from_secs(5)
        ),
        "{}",
        lab.logs()
    );
    assert!(
        lab.wait_log(
            2,
            "refused this member's client certificate",
            Duration::from_secs(5)
        ),
        "{}",
        lab.logs()
    );
    // The holder crashes; m1, restarted with the lab's CA, takes over over TLS.
    lab.kill_member(3);
    let crashed = Instant::now();
    // m1 never held anything: stopping it is only a restart with another configuration.
    lab.signal_member(1, libc::SIGTERM);
    assert!(lab.member(1).wait_exit(Duration::from_secs(5)).is_some());
    lab.start_member(1, &[]);
    let t = lab.wait_one_holder(&addr, Duration::from_secs(20));
    assert_eq!(t, Some(1), "{}", lab.logs());
    assert!(crashed.elapsed() < Duration::from_secs(10));
    let timeline = sampler.finish();
    never_two(&lab, &timeline);
    assert!(timeline.first_held_after(2, &addr, crashed).is_none());
}

#[test]
fn a_held_address_removed_by_hand_is_added_again_by_its_holder_and_nobody_else() {
    let mut lab = three_members("byhand", &[]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    // Safe to add it again: m1's key holds the address in etcd while its lease lives, so no
    // other member may acquire it meanwhile; the re-add happens only in that state.
    let removed = Instant::now();
    lab.ip(
        ipfailover_e2e::group::Node::Member(1),
        &["addr", "del", &format!("{addr}/24"), "dev", "eth0"],
    );
    assert!(
        lab.wait_log(1, "behind failoverd's back", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    let back =
        ipfailover_e2e::wait_for(Duration::from_secs(5), || lab.holders_now(&addr) == vec![1]);
    assert!(back.is_some(), "{}", lab.logs());
    assert!(
        lab.client_reaches(&addr),
        "the client does not reach {addr}"
    );
    assert_eq!(lab.client_neigh(&addr), Some(lab.member_mac(1)));
    std::thread::sleep(Duration::from_secs(2));
    let t = sampler.finish();
    never_two(&lab, &t);
    for other in [2, 3] {
        assert!(
            t.first_held_after(other, &addr, removed).is_none(),
            "{}",
            t.render()
        );
    }
    let re_added = t.first_held_after(1, &addr, removed + Duration::from_millis(1));
    eprintln!("added again after {:?}", re_added.map(|at| at - removed));
    assert_eq!(lab.status(1)["group"]["addresses"][0]["holder"], "m1");
}

#[test]
fn a_server_certificate_without_client_auth_is_named_as_the_cause() {
    // etcd with --client-cert-auth and a server certificate for serverAuth alone: etcdctl
    // (gRPC) works, but etcd's JSON gateway cannot reach etcd's own gRPC port with it, and
    // every request ends in "connection closed". -t names the certificate to fix.
    let mut lab = GroupLab::new("tlseku", 1, 1);
    lab.enable_tls_as(false);
    lab.start_etcd_cluster();
    let conf = lab.member_conf(1, &[]);
    let out = lab.check_config(1, &conf);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("does NOT answer"), "{text}");
    assert!(
        text.contains("server certificate must allow clientAuth"),
        "{text}"
    );
}

#[test]
fn an_address_whose_interface_is_gone_is_retried_with_back_off_and_added_when_it_is_back() {
    use ipfailover_e2e::group::Node;
    let mut lab = GroupLab::new("backoff", 1, 1);
    lab.start_etcd_cluster();
    // A second address on an interface of its own (a veth: no dummy interfaces in every
    // kernel), which goes away while held.
    let veth = [
        "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
    ];
    lab.ip(Node::Member(1), &veth);
    // Both ends up, so that dum0 carries traffic: an address on a link that is down is not
    // acquired at all (docs/groups.md).
    lab.ip(Node::Member(1), &["link", "set", "dum1", "up"]);
    lab.ip(Node::Member(1), &["link", "set", "dum0", "up"]);
    let pairs = format!("eth0:{}/24 dum0:198.51.100.77/32", vip(0));
    lab.start_member(1, &[("FAILOVER_GROUP_IP_PAIRS", pairs.as_str())]);
    held_by(&lab, &vip(0), 1);
    let on_dum0 = |lab: &GroupLab| {
        lab.exec_out(
            Node::Member(1),
            &["ip", "-o", "addr", "show", "dev", "dum0"],
        )
        .contains("198.51.100.77/32")
    };
    assert!(
        ipfailover_e2e::wait_for(Duration::from_secs(10), || on_dum0(&lab)).is_some(),
        "{}",
        lab.logs()
    );
    lab.ip(Node::Member(1), &["link", "del", "dum0"]);
    assert!(
        lab.wait_log(1, "behind failoverd's back", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    // Tried at once, after 1 s and 2 s more (3 s), then 4 s more (7 s): over 6 s, three
    // tries, and the error logged once, not at every try.
    std::thread::sleep(Duration::from_secs(6));
    let failures = lab
        .logs()
        .matches("adding 198.51.100.77/32 to dum0:")
        .count();
    assert_eq!(failures, 1, "{}", lab.logs());
    let st = lab.status(1);
    let a = st["addresses"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["address"] == "198.51.100.77"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(a["held"], false, "{st}");
    assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
    // The interface is back (a new index): the next try (at 7 s) adds the address.
    lab.ip(Node::Member(1), &veth);
    // Both ends up, so that dum0 carries traffic: an address on a link that is down is not
    // acquired at all (docs/groups.md).
    lab.ip(Node::Member(1), &["link", "set", "dum1", "up"]);
    lab.ip(Node::Member(1), &["link", "set", "dum0", "up"]);
    assert!(
        ipfailover_e2e::wait_for(Duration::from_secs(10), || on_dum0(&lab)).is_some(),
        "{}",
        lab.logs()
    );
    // Added by the next try, or (the new interface's link was down for a moment before it
    // was set up) given up by the link rule and won again: either way held, and on dum0.
    let held = ipfailover_e2e::wait_for(Duration::from_secs(5), || {
        lab.status(1)["addresses"].as_array().is_some_and(|l| {
            l.iter()
                .any(|a| a["address"] == "198.51.100.77" && a["held"] == true)
        })
    });
    assert!(held.is_some(), "{}", lab.logs());
    assert!(on_dum0(&lab), "{}", lab.logs());
}

#[test]
fn a_holder_whose_service_link_dies_gives_its_address_up_at_once() {
    let mut lab = three_members("glink", &[]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    // m1's service link dies; it still reaches etcd over its other link, and renews.
    let cut = Instant::now();
    lab.ip(
        ipfailover_e2e::group::Node::Member(1),
        &["link", "set", "eth0", "down"],
    );
    assert!(
        lab.wait_log(1, "link of", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    let next = lab.wait_one_holder(&addr, Duration::from_secs(5));
    assert_eq!(next, Some(2), "{}", lab.logs());
    assert!(lab.client_reaches(&addr), "{}", lab.logs());
    let st = lab.status(1);
    let a = &st["group"]["addresses"][0];
    assert_eq!(a["link_down"], true, "{st}");
    assert_eq!(a["held"], false, "{st}");
    // failoverctl on m1 says it cannot serve the address: degraded, not healthy.
    let out = std::process::Command::new(ipfailover_e2e::bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(lab.state_dir(1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("LINK DOWN here"), "{text}");
    // The link is back: m1 takes nothing back (no preemption), and says so no more.
    lab.ip(
        ipfailover_e2e::group::Node::Member(1),
        &["link", "set", "eth0", "up"],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.holders_now(&addr), vec![2], "{}", lab.logs());
    assert_eq!(
        lab.status(1)["group"]["addresses"][0]["link_down"],
        serde_json::Value::Null
    );
    let t = sampler.finish();
    never_two(&lab, &t);
    let nobody = t.no_holder_for(&addr, cut, Instant::now());
    eprintln!("nobody answered for {nobody:?} after the link died");
    assert!(
        nobody < Duration::from_secs(2),
        "{nobody:?}\n{}",
        t.render()
    );
}

#[test]
fn a_key_put_by_hand_is_replaced_and_a_second_member_with_one_name_does_not_join() {
    let mut lab = three_members("gkeys", &[]);
    let addr = vip(0);
    held_by(&lab, &addr, 1);
    let sampler = lab.sampler(std::slice::from_ref(&addr));
    // An operator "moves" the address with etcdctl: a key naming m2, under no lease.
    let key = format!("/ipfailover/web/addrs/{addr}");
    let put = Instant::now();
    lab.etcdctl(&["put", &key, "m2"]);
    // The key is no claim: m1 removes the address, a member deletes the key and acquires
    // it under its lease, with hooks as usual; one holder again within a few seconds.
    let back = loop {
        let one = lab.holders_now(&addr).len() == 1;
        let got = lab.etcdctl(&["get", &key, "-w", "json"]);
        let lease = serde_json::from_str::<serde_json::Value>(got.trim())
            .ok()
            .and_then(|v| v["kvs"][0]["lease"].as_i64())
            .unwrap_or(0);
        if one && lease != 0 {
            break put.elapsed();
        }
        assert!(
            put.elapsed() < Duration::from_secs(10),
            "the hand-put key still stands: {got}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("held under a lease again {back:?} after the key was put by hand");
    assert!(lab.logs().contains("is no claim"), "{}", lab.logs());
    // A second failoverd under the name m1 (a cloned host): m3 is restarted with it. It
    // neither joins nor revokes m1's lease; m1 keeps what it holds and never fences.
    let holder = lab.wait_one_holder(&addr, Duration::from_secs(5)).unwrap();
    lab.signal_member(3, libc::SIGTERM);
    assert!(lab.member(3).wait_exit(Duration::from_secs(10)).is_some());
    lab.start_member(3, &[("FAILOVER_MEMBER_NAME", "m1")]);
    assert!(
        lab.wait_log(3, "not joining", Duration::from_secs(15)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.holders_now(&addr), vec![holder], "{}", lab.logs());
    let t = sampler.finish();
    never_two(&lab, &t);
    assert!(!lab.logs().contains("fenced itself"), "{}", lab.logs());
    assert!(
        lab.status(3)["group"]["lease"].is_string(),
        "{}",
        lab.status(3)
    );
}

/// `failoverctl CMD --state-dir <member i's>`.
fn member_ctl(lab: &GroupLab, i: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(ipfailover_e2e::bin("failoverctl"))
        .args(args)
        .arg("--state-dir")
        .arg(lab.state_dir(i))
        .output()
        .unwrap()
}

#[test]
fn drain_pause_resume_and_a_new_priority_move_addresses_with_one_holder_throughout() {
    let addrs: Vec<String> = (0..2).map(vip).collect();
    let pairs = addrs
        .iter()
        .map(|a| format!("eth0:{a}/24"))
        .collect::<Vec<_>>()
        .join(" ");
    let extra = [
        ("FAILOVER_GROUP_IP_PAIRS", pairs.as_str()),
        ("FAILOVER_PREEMPT", "yes"),
    ];
    let mut lab = three_members("gdrain", &extra);
    for a in &addrs {
        held_by(&lab, a, 1);
    }
    let sampler = lab.sampler(&addrs);
    // Drain m1: both addresses go to m2 with release hooks; m1 takes nothing back although
    // preemption is on and it has the highest priority.
    let out = member_ctl(&lab, 1, &["drain"]);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("draining"), "{said}");
    let drained = Instant::now();
    for a in &addrs {
        // The answer comes before the release hooks have run: m1 may still hold it a moment.
        let on_m2 =
            ipfailover_e2e::wait_for(Duration::from_secs(20), || lab.holders_now(a) == vec![2]);
        assert!(on_m2.is_some(), "m2 should hold {a}:\n{}", lab.logs());
    }
    let moved = drained.elapsed();
    // The others see m1 drained.
    let st = lab.status(2);
    let m1 = st["group"]["members"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == "m1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(m1["mode"], "drained", "{st}");
    // A restart keeps the drain.
    lab.signal_member(1, libc::SIGTERM);
    assert!(lab.member(1).wait_exit(Duration::from_secs(10)).is_some());
    lab.start_member(1, &extra);
    assert!(
        lab.wait_log(1, "kept across the restart", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    for a in &addrs {
        assert_eq!(lab.holders_now(a), vec![2], "{}", lab.logs());
    }
    let text = |lab: &GroupLab| {
        String::from_utf8_lossy(&member_ctl(lab, 1, &["status"]).stdout).into_owned()
    };
    let drained_shown =
        ipfailover_e2e::wait_for(Duration::from_secs(10), || text(&lab).contains("DRAINED"));
    let text = text(&lab);
    assert!(
        drained_shown.is_some(),
        "{text}\n{}",
        lab.etcdctl(&["get", "--prefix", "/ipfailover/", "-w", "json"])
    );
    // A pair's commands are refused on a member, with what to use instead.
    let out = member_ctl(&lab, 2, &["release"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failoverctl drain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pause m2, then resume m1: a paused holder releases nothing, not even to preemption, so
    // they stay with m2.
    assert_eq!(member_ctl(&lab, 2, &["pause"]).status.code(), Some(0));
    assert_eq!(member_ctl(&lab, 1, &["resume"]).status.code(), Some(0));
    std::thread::sleep(Duration::from_secs(3));
    for a in &addrs {
        assert_eq!(lab.holders_now(a), vec![2], "{}", lab.logs());
    }
    // m2 resumed: preemption moves them to m1.
    assert_eq!(member_ctl(&lab, 2, &["resume"]).status.code(), Some(0));
    for a in &addrs {
        let on_m1 =
            ipfailover_e2e::wait_for(Duration::from_secs(20), || lab.holders_now(a) == vec![1]);
        assert!(on_m1.is_some(), "m1 should hold {a}:\n{}", lab.logs());
    }
    // m3's priority raised on SIGHUP: published at once, and preemption moves both to it.
    lab.member_conf(
        3,
        &[
            ("FAILOVER_GROUP_IP_PAIRS", pairs.as_str()),
            ("FAILOVER_PREEMPT", "yes"),
            ("FAILOVER_PRIORITY", "250"),
        ],
    );
    lab.signal_member(3, libc::SIGHUP);
    for a in &addrs {
        let on_m3 =
            ipfailover_e2e::wait_for(Duration::from_secs(20), || lab.holders_now(a) == vec![3]);
        assert!(on_m3.is_some(), "m3 should hold {a}:\n{}", lab.logs());
    }
    let t = sampler.finish();
    never_two(&lab, &t);
    for a in &addrs {
        let nobody = t.no_holder_for(a, drained, Instant::now());
        eprintln!("{a}: nobody answered for {nobody:?} over three handovers by command");
        assert!(
            nobody < Duration::from_secs(3),
            "{nobody:?}\n{}",
            t.render()
        );
    }
    eprintln!("drain moved both addresses in {moved:?}");
}
