//! Hook scripts end to end: real scripts in the secondary's namespace, appending to a log.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfailover_e2e::{read, wait_for, Host, Lab, VIP};

/// The hook directory for the primary, mode 0755 as the daemon requires.
fn hook_dir(lab: &Lab) -> PathBuf {
    let scripts = lab.dir.join("scripts");
    let dir = scripts.join(VIP);
    fs::create_dir_all(&dir).expect("hook dir");
    for d in [&scripts, &dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// A hook that appends `<name> <$1> <reason> held=<yes|no>` to hooks.log, then runs `extra`.
fn hook(dir: &Path, name: &str, extra: &str, mode: u32) {
    let body = format!(
        "#!/bin/sh\n\
         if ip -o addr show dev eth0 | grep -q ' {VIP}/'; then held=yes; else held=no; fi\n\
         echo \"{name} $1 $FAILOVER_REASON held=$held\" >> hooks.log\n\
         {extra}\n"
    );
    let path = dir.join(name);
    fs::write(&path, body).expect("hook");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn log_lines(dir: &Path) -> Vec<String> {
    read(&dir.join("hooks.log"))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn takeover_and_release_run_the_hooks_in_order_around_the_address() {
    let mut lab = Lab::new("hookorder");
    let dir = hook_dir(&lab);
    for name in [
        "Test",
        "PreAcq-1",
        "PreAcq-2",
        "PostAcq-1",
        "PreRel-1",
        "PostRel-1",
    ] {
        hook(&dir, name, "exit 0", 0o755);
    }
    hook(&dir, ".PreAcq-hidden", "exit 0", 0o755);
    hook(&dir, "PreAcq-1~", "exit 0", 0o755);
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(10));
    assert!(
        lab.wait_log(fo, "-> acquired", Duration::from_secs(5)),
        "{}",
        lab.logs()
    );
    lab.links(Host::Pri, true);
    let _hb = lab.start_heartbeatd(&[]);
    assert!(
        lab.wait_log(
            fo,
            "releasing (PostRel) -> monitoring",
            Duration::from_secs(10)
        ),
        "{}",
        lab.logs()
    );
    assert_eq!(
        log_lines(&dir),
        [
            "Test Test timeout held=no",
            "PreAcq-1 PreAcq timeout held=no",
            "PreAcq-2 PreAcq timeout held=no",
            "PostAcq-1 PostAcq timeout held=yes",
            "PreRel-1 PreRel peer-returned held=yes",
            "PostRel-1 PostRel peer-returned held=no",
        ],
        "\n{}",
        lab.logs()
    );
    // failoverd logs the transition before it rewrites its status file, in the same turn of
    // its loop: wait for the file to catch up.
    wait_for(Duration::from_secs(5), || {
        lab.status(Host::Sec, "failoverd")["state"] == "monitoring"
    });
    let status = lab.status(Host::Sec, "failoverd");
    assert_eq!(status["counters"]["hooks_run"], 6, "{status}");
    assert_eq!(status["counters"]["hooks_failed"], 0, "{status}");
}

#[test]
fn a_failing_test_stops_the_takeover_until_it_passes() {
    let mut lab = Lab::new("hooktest");
    let dir = hook_dir(&lab);
    hook(
        &dir,
        "Test",
        "[ -e allow ] || { echo not fit >&2; exit 1; }",
        0o755,
    );
    hook(&dir, "PreAcq-1", "exit 0", 0o755);
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    // Refused, then retried one timeout (1 s) later, and refused again.
    assert!(
        wait_for(Duration::from_secs(10), || log_lines(&dir).len() >= 2).is_some(),
        "{}",
        lab.logs()
    );
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    assert!(
        log_lines(&dir).iter().all(|l| l.starts_with("Test ")),
        "{:?}",
        log_lines(&dir)
    );
    assert!(
        lab.proc(fo).log_text().contains("refused"),
        "{}",
        lab.logs()
    );
    assert!(
        lab.proc(fo).log_text().contains("not fit"),
        "the hook's output is logged"
    );
    // The Test passes from now on: the next attempt takes over.
    fs::write(dir.join("allow"), "").expect("allow");
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let lines = log_lines(&dir);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("PreAcq-1 PreAcq timeout held=no")
    );
}

#[test]
fn a_hook_that_hangs_is_killed_and_the_takeover_completes() {
    let mut lab = Lab::new("hookhang");
    let dir = hook_dir(&lab);
    hook(&dir, "PreAcq-1", "sleep 1000", 0o755);
    hook(&dir, "PostAcq-1", "exit 0", 0o755);
    let (hb, fo) = lab.start_pair(&[], &[("FAILOVER_SCRIPT_TIMEOUT", "1s")]);
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(15), || {
        lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| panic!("no takeover:\n{}", lab.logs()));
    // 1 s timeout + 1 s hook timeout, with room for a slow machine.
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(lab.wait_log(fo, "-> acquired", Duration::from_secs(5)));
    let text = lab.proc(fo).log_text();
    assert!(
        text.contains("hook PreAcq-1 failed (timed out, killed)"),
        "{text}"
    );
    assert_eq!(log_lines(&dir).len(), 2, "{:?}", log_lines(&dir));
    // No sleep left behind in the secondary's namespace's processes we started.
    let status = lab.status(Host::Sec, "failoverd");
    assert_eq!(status["counters"]["hooks_failed"], 1, "{status}");
}

#[test]
fn a_world_writable_hook_is_refused_and_the_rest_runs() {
    let mut lab = Lab::new("hookunsafe");
    let dir = hook_dir(&lab);
    hook(&dir, "PostAcq-1", "exit 0", 0o757);
    fs::set_permissions(dir.join("PostAcq-1"), fs::Permissions::from_mode(0o757)).expect("chmod");
    hook(&dir, "PostAcq-2", "exit 0", 0o755);
    let (hb, fo) = lab.start_pair(&[], &[]);
    lab.kill_primary(hb);
    assert!(
        lab.wait_log(fo, "-> acquired", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    assert_eq!(log_lines(&dir), ["PostAcq-2 PostAcq timeout held=yes"]);
    let text = lab.proc(fo).log_text();
    assert!(
        text.contains("PostAcq-1 failed (refused: writable by others"),
        "{text}"
    );
}

#[test]
fn heartbeats_are_read_while_a_slow_hook_runs() {
    let mut lab = Lab::new("hookslow");
    let dir = hook_dir(&lab);
    hook(&dir, "PostAcq-1", "sleep 5", 0o755);
    let (hb, fo) = lab.start_pair(&[], &[("FAILOVER_SCRIPT_TIMEOUT", "20s")]);
    lab.kill_primary(hb);
    assert!(
        wait_for(Duration::from_secs(10), || log_lines(&dir).len() == 1).is_some(),
        "{}",
        lab.logs()
    );
    let hook_started = Instant::now();
    // The primary returns 1 s into the 5 s PostAcq.
    std::thread::sleep(Duration::from_secs(1));
    lab.links(Host::Pri, true);
    let _hb = lab.start_heartbeatd(&[]);
    // While the hook runs, the loop reads heartbeats: the status shows them arriving.
    assert!(
        wait_for(Duration::from_secs(3), || {
            let s = lab.status(Host::Sec, "failoverd");
            s["state"] == "acquiring"
                && s["links"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["state"] == "up"))
        })
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")
    );
    // And once the hook is done, the address is released at once.
    let released = wait_for(Duration::from_secs(10), || {
        !lab.holds(Host::Sec, "eth0", VIP)
    })
    .map(|_| hook_started.elapsed())
    .unwrap_or_else(|| panic!("never released:\n{}", lab.logs()));
    assert!(
        released >= Duration::from_millis(4800) && released < Duration::from_secs(8),
        "released {released:?} after the hook started\n{}",
        lab.logs()
    );
    assert!(lab.proc(fo).log_text().contains("(peer-returned)"));
}
