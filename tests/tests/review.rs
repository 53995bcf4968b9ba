//! The security review's findings, end to end: a state directory others can write, a hooks
//! record or temporary file planted by another user, a crowd of other key holders, a host
//! name that made the default sender invalid, a secret file of another user, and hostile
//! status files under failoverctl.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipfailover_e2e::output_text as text;
use ipfailover_e2e::{bin, hostconfig, wait_for, Host, Lab, VIP};

#[test]
fn a_state_directory_others_can_write_is_refused_at_start() {
    let mut lab = Lab::new("rvstate");
    let state = lab.state_dir(Host::Sec);
    fs::create_dir_all(&state).expect("state dir");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).expect("chmod");
    let fo = lab.start_failoverd(&[]);
    let status = lab.proc(fo).wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{}", lab.logs());
    let log = lab.proc(fo).log_text();
    assert!(
        log.contains("FAILOVER_STATE_DIR") && log.contains("writable by group and others"),
        "{log}"
    );
    // heartbeatd too.
    let pri = lab.state_dir(Host::Pri);
    fs::create_dir_all(&pri).expect("state dir");
    fs::set_permissions(&pri, fs::Permissions::from_mode(0o757)).expect("chmod");
    let hb = lab.start_heartbeatd(&[]);
    let status = lab.proc(hb).wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{}", lab.logs());
}

#[test]
fn a_record_or_link_planted_in_the_state_directory_is_never_acted_on() {
    let mut lab = Lab::new("rvrecord");
    let state = lab.state_dir(Host::Sec);
    fs::create_dir_all(&state).expect("state dir");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).expect("chmod");
    // A process group that is not a hook's: the victim.
    let mut victim = Command::new("setsid")
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .expect("setsid sleep");
    let pgid = victim.id();
    let start = fs::read_to_string(format!("/proc/{pgid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, r)| r.split_whitespace().nth(19).map(str::to_string))
        })
        .expect("start time");
    // A record naming it, written by another user (mode 0600 but not root's).
    let record = state.join("failoverd.hooks");
    fs::write(&record, format!("{pgid} {start}\n")).expect("record");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(&record, Some(65534), None).expect("chown");
    // And a link where the status file's temporary file will be, to a file of root's.
    let precious = lab.dir.join("precious");
    fs::write(&precious, "root's own file\n").expect("precious");
    fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).expect("chmod");
    let (_hb, fo) = lab.start_pair(&[], &[]);
    let pid = lab.proc(fo).pid();
    std::os::unix::fs::symlink(&precious, state.join(format!(".failoverd.json.{pid}.tmp")))
        .expect("plant a link");
    std::thread::sleep(Duration::from_secs(6)); // past a periodic status write
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "failoverd killed a process group named by a record it did not write"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(
        lab.proc(fo).log_text().contains("is not the daemon's own"),
        "{}",
        lab.logs()
    );
    assert_eq!(
        fs::read_to_string(&precious).expect("precious"),
        "root's own file\n",
        "a planted link was followed"
    );
    assert_eq!(lab.status(Host::Sec, "failoverd")["state"], "monitoring");
}

#[test]
fn forty_other_key_holders_cannot_help_replays_hide_a_crash() {
    let mut lab = Lab::new("rvcrowd");
    lab.add_attacker();
    let secret = lab.write("secret", "one secret for many pairs on this LAN\n");
    let secret_s = secret.to_string_lossy().into_owned();
    let s = [("FAILOVER_SECRET_FILE", secret_s.as_str())];
    let (hb, _fo) = lab.start_pair(&s, &s);
    // The primary's heartbeats, captured off the LAN.
    let file = lab.dir.join("captured");
    let f = file.to_string_lossy().into_owned();
    let rec = lab.spawn(
        Host::Atk,
        "record",
        "ipfo-inject",
        &["record", "1694", "1.5", &f],
    );
    assert!(lab.proc(rec).wait_exit(Duration::from_secs(10)).is_some());
    // Forty other key holders keep sending, and the captured heartbeats are replayed.
    let crowd = lab.spawn(
        Host::Atk,
        "crowd",
        "ipfo-inject",
        &["crowd", &secret_s, "40", "198.51.100.20:1694", "8"],
    );
    let replay = lab.spawn(
        Host::Atk,
        "replay",
        "ipfo-inject",
        &["replay", &f, "198.51.100.20:1694", "8"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let died = Instant::now();
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(6));
    let took = died.elapsed();
    assert!(
        took < Duration::from_millis(1900),
        "the takeover came {took:?} after the crash (timeout 1 s)\n{}",
        lab.logs()
    );
    assert!(lab.proc(crowd).try_exit().is_none() && lab.proc(replay).try_exit().is_none());
    let counted = wait_for(Duration::from_secs(7), || {
        let c = lab.status(Host::Sec, "failoverd")["counters"]["dropped"].clone();
        c["not-peer"].as_u64().unwrap_or(0) > 100 && c["replay"].as_u64().unwrap_or(0) > 10
    });
    assert!(counted.is_some(), "{}", lab.status(Host::Sec, "failoverd"));
}

#[test]
fn a_host_name_with_a_trailing_dot_makes_a_valid_default_sender() {
    let mut lab = Lab::new("rvhost");
    let smtp = lab.start_smtp(Host::Sec, 2527);
    let conf = lab.failoverd_conf(&[
        ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
        ("FAILOVER_EMAIL_TRANSPORT", "smtp://127.0.0.1:2527"),
    ]);
    let failoverd = bin("failoverd").to_string_lossy().into_owned();
    // A host of its own (a UTS namespace) named with a trailing dot, as DNS spells it.
    let in_host = |cmd: &str| {
        format!(
            "printf %s sec.example.com. > /proc/sys/kernel/hostname && exec {failoverd} {cmd} -c {conf}"
        )
    };
    let check = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(Host::Sec),
            "unshare",
            "--uts",
            "sh",
            "-c",
        ])
        .arg(in_host("-t"))
        .output()
        .expect("failoverd -t");
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("# mail from failover@sec.example.com to ops@example.org"),
        "-t shows the sender the daemon uses: {}",
        text(&check)
    );
    // The daemon starts with it, and its mail goes out from that sender.
    let fo = lab.spawn_cmd(
        Host::Sec,
        "failoverd",
        &["unshare", "--uts", "sh", "-c", &in_host("")],
    );
    let _hb = lab.start_heartbeatd(&[]);
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    lab.links(Host::Pri, false);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let sent = wait_for(Duration::from_secs(10), || {
        lab.mails()
            .iter()
            .any(|m| m.contains("From: failover@sec.example.com"))
    });
    assert!(sent.is_some(), "{:?}\n{}", lab.mails(), lab.logs());
    let _ = smtp;
}

#[test]
fn a_secret_file_of_another_user_is_refused_even_with_mode_0600() {
    let lab = Lab::new("rvsecret");
    let secret = lab.write("secret", "a shared secret of more than sixteen bytes\n");
    std::os::unix::fs::chown(&secret, Some(65534), None).expect("chown");
    let conf = lab.failoverd_conf(&[("FAILOVER_SECRET_FILE", &secret.to_string_lossy())]);
    for (program, args) in [
        ("failoverd", vec!["-t", "-c", &conf]),
        ("failoverctl", vec!["check-config", "-c", &conf]),
    ] {
        let out = Command::new(bin(program))
            .args(&args)
            .output()
            .expect(program);
        assert_eq!(out.status.code(), Some(78), "{program}: {}", text(&out));
        assert!(
            text(&out).contains("owned by uid 65534"),
            "{program}: {}",
            text(&out)
        );
    }
}

#[test]
fn failoverctl_survives_hostile_status_files() {
    let dir = ipfailover_e2e::scratch("review", "hostile");
    // A FIFO named like a status file: no hang.
    let fifo = dir.join("failoverd.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    // A link to /dev/zero: no reading until memory runs out.
    std::os::unix::fs::symlink("/dev/zero", dir.join("heartbeatd.json")).expect("symlink");
    let started = Instant::now();
    let out = Command::new(bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("failoverctl");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failoverctl hung"
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a regular file"), "{}", text(&out));
    // Counters whose sum overflows: no panic, no nonsense, and not healthy.
    fs::remove_file(&fifo).expect("rm");
    fs::remove_file(dir.join("heartbeatd.json")).expect("rm");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let status = format!(
        "{{\"schema\":1,\"daemon\":\"heartbeatd\",\"version\":\"0.2.0\",\"pid\":1,\
         \"hostname\":\"elsewhere\",\"started_at_ms\":{now},\"updated_at_ms\":{now},\
         \"refresh_ms\":5000,\"state\":\"sending\",\"counters\":{{\"accepted\":1,\
         \"dropped\":{{\"replay\":18446744073709551615,\"bad-tag\":18446744073709551615}}}}}}"
    );
    fs::write(dir.join("heartbeatd.json"), status).expect("status");
    let out = Command::new(bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("failoverctl");
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("dropped 18446744073709551615"),
        "the sum saturates: {}",
        text(&out)
    );
    fs::remove_dir_all(&dir).expect("cleanup");
    let _ = hostconfig;
}
