//! The administrator in charge (docs/failoverctl.md, "Taking the wheel"), on real namespaces: pause and resume, a pause that
//! ends by itself and one that survives a restart, release and takeover by hand with their
//! refusals, and a caller who is not failoverd's user.

use std::process::{Command, Output};
use std::time::Duration;

use ipfailover_e2e::output_text as said;
use ipfailover_e2e::{bin, wait_for, Host, Lab, VIP};

const SMTP_PORT: u16 = 2531;

/// `failoverctl ARGS --state-dir <sec's>` run inside the secondary's namespace.
fn ctl(lab: &Lab, args: &[&str]) -> Output {
    let ns = lab.ns(Host::Sec);
    let dir = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    let ctl = bin("failoverctl").to_string_lossy().into_owned();
    let mut argv = vec!["netns", "exec", ns.as_str(), ctl.as_str()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--state-dir", dir.as_str()]);
    Command::new("ip")
        .args(&argv)
        .output()
        .expect("failoverctl")
}

/// A pair with mail to the lab's SMTP server, and `extra` for failoverd.
fn pair(lab: &mut Lab, extra: &[(&str, &str)]) -> (usize, usize) {
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let transport = format!("smtp://127.0.0.1:{SMTP_PORT}");
    let mut fo = vec![
        ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
        ("FAILOVER_EMAIL_TRANSPORT", transport.as_str()),
        ("FAILOVER_EMAIL_FROM", "failover@sec.example.org"),
    ];
    fo.extend_from_slice(extra);
    lab.start_pair(&[], &fo)
}

fn mailed(lab: &Lab, needle: &str) -> bool {
    lab.mails().iter().any(|m| {
        m.replace("\r\n", "\n")
            .replace("\n ", " ")
            .replace("\n\t", " ")
            .contains(needle)
    })
}

#[test]
fn paused_it_never_takes_over_and_resumed_it_does_within_the_timeout() {
    let mut lab = Lab::new("pause");
    let (hb, _fo) = pair(&mut lab, &[]);
    let out = ctl(&lab, &["pause"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("paused"), "{}", said(&out));
    lab.kill_primary(hb);
    // Three timeouts of silence: nothing taken over; the status says paused, exit 1.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !lab.holds(Host::Sec, "eth0", VIP),
        "taken over while paused:\n{}",
        lab.logs()
    );
    let st = lab.status(Host::Sec, "failoverd");
    assert!(st["pause"]["since_ms"].as_u64().is_some(), "{st}");
    let out = ctl(&lab, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("PAUSED"), "{}", said(&out));
    // Resumed: taken over within the timeout (1 s) and a probe round.
    let out = ctl(&lab, &["resume"]);
    assert!(out.status.success(), "{}", said(&out));
    let took = wait_for(Duration::from_secs(5), || lab.holds(Host::Sec, "eth0", VIP));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(3)),
        "{took:?}\n{}",
        lab.logs()
    );
    assert!(wait_for(Duration::from_secs(10), || mailed(&lab, "paused")).is_some());
    assert!(wait_for(Duration::from_secs(10), || mailed(&lab, "resumed")).is_some());
    assert!(lab.status(Host::Sec, "failoverd")["pause"].is_null());
}

#[test]
fn a_pause_for_a_while_ends_by_itself_and_a_pause_survives_a_restart() {
    let mut lab = Lab::new("pausefor");
    let (hb, fo) = pair(&mut lab, &[]);
    // Kept across a restart of failoverd.
    assert!(ctl(&lab, &["pause"]).status.success());
    lab.proc(fo).signal(libc::SIGTERM);
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(10)).is_some());
    let fo2 = lab.start_failoverd(&[]);
    assert!(
        lab.wait_log(fo2, "kept across the restart", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    lab.kill_primary(hb);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !lab.holds(Host::Sec, "eth0", VIP),
        "the restart ended the pause:\n{}",
        lab.logs()
    );
    // A pause --for 2s (replacing the first) ends by itself, and the silent primary is taken over.
    let out = ctl(&lab, &["pause", "--for", "2s"]);
    assert!(out.status.success(), "{}", said(&out));
    let st = lab.status(Host::Sec, "failoverd");
    assert!(st["pause"]["until_ms"].as_u64().is_some(), "{st}");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    let took = wait_for(Duration::from_secs(6), || lab.holds(Host::Sec, "eth0", VIP));
    assert!(
        took.is_some(),
        "the pause did not end by itself:\n{}",
        lab.logs()
    );
    assert!(ctl(&lab, &["pause", "--for", "soon"]).status.code() == Some(64));
}

/// A pause longer than a year is refused, by failoverctl and by failoverd itself (a request
/// on the socket), instead of overflowing the daemon's clocks: failoverd keeps running,
/// unpaused, and takes a sound pause afterwards.
#[test]
fn a_pause_too_long_for_the_clocks_is_refused_by_failoverctl_and_by_failoverd() {
    use std::io::{BufRead, Write};
    let mut lab = Lab::new("pausemax");
    let (_hb, fo) = pair(&mut lab, &[]);
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    let out = ctl(&lab, &["pause", "--for", "5000000000000h"]);
    assert_eq!(out.status.code(), Some(64), "{}", said(&out));
    assert!(said(&out).contains("longer than a year"), "{}", said(&out));
    // The same straight to the socket, as another client could send it.
    let socket = lab.state_dir(Host::Sec).join("failoverd.sock");
    for for_ms in [u64::MAX.to_string(), "-1".to_string(), "1.5".to_string()] {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        writeln!(stream, "{{\"command\":\"pause\",\"for_ms\":{for_ms}}}").expect("send");
        let mut answer = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut answer)
            .expect("answer");
        assert!(
            answer.contains("\"ok\":false") && answer.contains("for_ms: expected whole"),
            "{for_ms}: {answer}\n{}",
            lab.logs()
        );
    }
    assert!(
        lab.proc(fo).wait_exit(Duration::from_millis(500)).is_none(),
        "failoverd died:\n{}",
        lab.logs()
    );
    assert!(lab.status(Host::Sec, "failoverd")["pause"].is_null());
    let out = ctl(&lab, &["pause", "--for", "8760h"]);
    assert!(out.status.success(), "{}", said(&out));
    let st = lab.status(Host::Sec, "failoverd");
    let until = st["pause"]["until_ms"].as_u64().expect("until_ms");
    let year_ms = 365 * 24 * 3600 * 1000;
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    assert!(
        until > now + year_ms - 60_000 && until <= now + year_ms,
        "{st}"
    );
}

#[test]
fn release_by_hand_is_refused_while_the_primary_is_silent_and_the_return_needs_no_hand() {
    let mut lab = Lab::new("release");
    let (hb, fo) = pair(&mut lab, &[]);
    lab.kill_primary(hb);
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(10));
    // Silent primary: refused, nothing changes; one sentence, no runs of spaces.
    let out = ctl(&lab, &["release"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("silent"), "{}", said(&out));
    assert!(!said(&out).contains("  "), "{}", said(&out));
    assert!(lab.holds(Host::Sec, "eth0", VIP));
    // The primary is back: its own address goes back at its first verified heartbeat, with
    // nobody's hand, and there is nothing left to release.
    lab.links(Host::Pri, true);
    let _hb = lab.start_heartbeatd(&[]);
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(3));
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(10));
    let out = ctl(&lab, &["release"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("holds none"), "{}", said(&out));
    assert!(lab.proc(fo).log_text().contains("(peer-returned)"));
}

#[test]
fn a_forced_release_is_taken_over_again_only_after_the_timeout() {
    let mut lab = Lab::new("forcerel");
    let (hb, fo) = pair(&mut lab, &[]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(10));
    let out = ctl(&lab, &["release", "--force"]);
    assert!(out.status.success(), "{}", said(&out));
    let released = lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(3));
    let _ = released;
    let at = std::time::Instant::now();
    // As the refusal says: taken over again after the timeout (1 s), not at once.
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(5));
    let again = at.elapsed();
    assert!(
        again >= Duration::from_millis(900),
        "{again:?}\n{}",
        lab.logs()
    );
    assert!(lab.proc(fo).log_text().contains("(manual)"));
}

#[test]
fn takeover_by_hand_of_the_primarys_own_address_is_refused_and_forced_is_a_conflict() {
    let mut lab = Lab::new("takeover");
    let (_hb, fo) = pair(&mut lab, &[("FAILOVER_CONFLICT_GRACE", "2s")]);
    // The primary answers for its own address: refused, nothing taken.
    let out = ctl(&lab, &["takeover"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("own address"), "{}", said(&out));
    assert!(!said(&out).contains("  "), "{}", said(&out));
    assert!(!lab.holds(Host::Sec, "eth0", VIP));
    // Forced: taken, and since the primary answers too, told at once and given back after the
    // grace; never silent, never without end.
    let out = ctl(&lab, &["takeover", "--force"]);
    assert!(out.status.success(), "{}", said(&out));
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(3));
    assert!(
        lab.wait_log(fo, "also answers from", Duration::from_secs(3)),
        "{}",
        lab.logs()
    );
    lab.wait_holds(Host::Sec, "eth0", VIP, false, Duration::from_secs(10));
    assert!(wait_for(Duration::from_secs(10), || mailed(
        &lab,
        "also answers from"
    ))
    .is_some());
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
}

#[test]
fn takeover_by_hand_of_a_service_address_moves_it_by_agreement_and_back() {
    const ALIAS: &str = "198.51.100.100";
    let mut lab = Lab::new("takealias");
    lab.hook(
        VIP,
        "PostAcq-log",
        &format!(
            "echo \"$1 $FAILOVER_REASON $FAILOVER_PEER_IP_PAIRS\" >> {}",
            lab.dir.join("reasons.log").display()
        ),
    );
    lab.start_smtp(Host::Sec, SMTP_PORT);
    let transport = format!("smtp://127.0.0.1:{SMTP_PORT}");
    let (_hb, fo) = lab.start_pair(
        &[("FAILOVER_IP_PAIRS", &format!("eth0:{ALIAS}/24"))],
        &[
            ("FAILOVER_PEER_IP_PAIRS", &format!("eth0:{ALIAS}")),
            ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
            ("FAILOVER_EMAIL_TRANSPORT", transport.as_str()),
            ("FAILOVER_EMAIL_FROM", "failover@sec.example.org"),
        ],
    );
    // heartbeatd adds its service address once failoverd says it holds none of it.
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(5));
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    let sampler = lab.sampler(&[ALIAS]);
    // Taken by hand: heartbeatd gives it up, then failoverd adds it.
    let out = ctl(&lab, &["takeover"]);
    assert!(out.status.success(), "{}", said(&out));
    lab.wait_holds(Host::Sec, "eth0", ALIAS, true, Duration::from_secs(3));
    lab.client_reaches(ALIAS, Host::Sec, Duration::from_secs(5));
    assert_eq!(lab.status(Host::Sec, "failoverd")["held_by_hand"], true);
    assert!(wait_for(Duration::from_secs(5), || ipfailover_e2e::read(
        &lab.dir.join("reasons.log")
    )
    .contains(&format!("PostAcq manual eth0:{ALIAS}")))
    .is_some());
    // The primary waits for it while it is held by hand: nothing moves, however long.
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.holds(Host::Sec, "eth0", ALIAS) && !lab.holds(Host::Pri, "eth0", ALIAS));
    // Given back by hand: by agreement again, and the client follows.
    let out = ctl(&lab, &["release"]);
    assert!(out.status.success(), "{}", said(&out));
    lab.wait_holds(Host::Pri, "eth0", ALIAS, true, Duration::from_secs(3));
    lab.client_reaches(ALIAS, Host::Pri, Duration::from_secs(5));
    let timeline = sampler.finish();
    assert!(
        timeline.two_holders().is_empty(),
        "{:?}\n{}",
        timeline.two_holders(),
        timeline.render()
    );
    assert!(lab.proc(fo).log_text().contains("(manual)"));
}

#[test]
fn a_caller_who_is_not_failoverds_user_is_refused() {
    let mut lab = Lab::new("ctlperm");
    let (_hb, _fo) = pair(&mut lab, &[]);
    let socket = lab.state_dir(Host::Sec).join("failoverd.sock");
    let mode = std::fs::metadata(&socket).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o600));
    let as_nobody = |lab: &Lab| {
        let ns = lab.ns(Host::Sec);
        let dir = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
        let ctl = bin("failoverctl").to_string_lossy().into_owned();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                &ctl,
                "pause",
                "--state-dir",
                &dir,
            ])
            .output()
            .expect("setpriv")
    };
    // The state directory and the socket keep others out...
    let out = as_nobody(&lab);
    assert_eq!(out.status.code(), Some(77), "{}", said(&out));
    // ...and so does failoverd itself, asking the kernel who connected: even a socket made
    // world-writable by mistake (and a directory others may enter) lets nobody else in.
    use std::os::unix::fs::PermissionsExt;
    let dir = lab.state_dir(Host::Sec);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = as_nobody(&lab);
    assert_eq!(out.status.code(), Some(77), "{}", said(&out));
    assert!(said(&out).contains("only uid 0"), "{}", said(&out));
    let st = lab.status(Host::Sec, "failoverd");
    assert!(st["pause"].is_null(), "a stranger paused failoverd: {st}");
    assert!(
        lab.logs().contains("refused: only uid 0"),
        "not logged:\n{}",
        lab.logs()
    );
}

#[test]
fn init_writes_configurations_that_pass_the_check_and_make_a_working_pair() {
    let mut lab = Lab::new("init");
    let secret = lab.dir.join("secret").to_string_lossy().into_owned();
    let ctl = bin("failoverctl").to_string_lossy().into_owned();
    let init = |host: Host, args: &[&str]| {
        let ns = lab.ns(host);
        let mut argv = vec!["netns", "exec", ns.as_str(), ctl.as_str(), "init"];
        argv.extend_from_slice(args);
        Command::new("ip")
            .args(&argv)
            .output()
            .expect("failoverctl init")
    };
    let pri_state = lab.state_dir(Host::Pri).to_string_lossy().into_owned();
    let sec_state = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    let pri_conf = lab.dir.join("pri-init.conf").to_string_lossy().into_owned();
    let sec_conf = lab.dir.join("sec-init.conf").to_string_lossy().into_owned();
    let scripts = lab.dir.join("scripts").to_string_lossy().into_owned();
    // The primary: the broadcast addresses come from its interfaces; the secret is made.
    let out = init(
        Host::Pri,
        &[
            "--primary",
            "--interval",
            "100ms",
            "--secret-file",
            &secret,
            "--state-dir",
            &pri_state,
            "--output",
            &pri_conf,
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("FAILOVER_BCAST_IPS=\"198.51.100.255 203.0.113.255\""),
        "{}",
        said(&out)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret)
        .expect("secret")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // The secondary: the address to take over is the peer's, on the interface of its subnet;
    // the same secret (copied, here the same file).
    let out = init(
        Host::Sec,
        &[
            "--secondary",
            "--peer",
            VIP,
            "--timeout",
            "1s",
            "--secret-file",
            &secret,
            "--state-dir",
            &sec_state,
            "--script-dir",
            &scripts,
            "--output",
            &sec_conf,
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains(&format!("FAILOVER_PEER_IP_PAIRS=\"eth0:{VIP}\"")),
        "{}",
        said(&out)
    );
    // Never over an existing file without --force.
    let again = init(
        Host::Sec,
        &[
            "--secondary",
            "--peer",
            VIP,
            "--secret-file",
            &secret,
            "--output",
            &sec_conf,
        ],
    );
    assert_eq!(again.status.code(), Some(78), "{}", said(&again));
    // Non-interactive and missing what it needs: a usage error naming the option.
    let none = init(
        Host::Sec,
        &[
            "--secondary",
            "--secret-file",
            &secret,
            "--output",
            "/nonexistent/x",
        ],
    );
    assert_eq!(none.status.code(), Some(64), "{}", said(&none));
    assert!(said(&none).contains("--peer"), "{}", said(&none));
    // They make a working pair.
    let hb = lab.spawn(Host::Pri, "heartbeatd", "heartbeatd", &["-c", &pri_conf]);
    let fo = lab.spawn(Host::Sec, "failoverd", "failoverd", &["-c", &sec_conf]);
    assert!(
        lab.wait_log(fo, "-> monitoring", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    lab.kill_primary(hb);
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(10));
}

#[test]
fn watch_shows_a_takeover_as_it_happens_in_a_terminal_and_in_a_pipe() {
    let mut lab = Lab::new("watch");
    let (hb, _fo) = pair(&mut lab, &[]);
    let ns = lab.ns(Host::Sec);
    let dir = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    let ctl = bin("failoverctl").to_string_lossy().into_owned();
    // In a pipe: a block per change.
    let piped = lab.dir.join("watch.txt");
    let file = std::fs::File::create(&piped).expect("watch output");
    let mut background = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            &ctl,
            "watch",
            "--count",
            "3",
            "--state-dir",
            &dir,
        ])
        .stdout(file)
        .spawn()
        .expect("failoverctl watch");
    // In a terminal: tmux, redrawn in place.
    let session = format!("ipfowatch{}", std::process::id());
    let command = format!("ip netns exec {ns} {ctl} watch --state-dir {dir}");
    assert!(Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "50",
            &command
        ])
        .status()
        .expect("tmux")
        .success());
    let pane = || {
        Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let shown = wait_for(Duration::from_secs(10), || pane().contains("MONITORING"));
    assert!(
        shown.is_some(),
        "watch never showed MONITORING:\n{}",
        pane()
    );
    lab.kill_primary(hb);
    let shown = wait_for(Duration::from_secs(10), || pane().contains("ACQUIRED"));
    let last = pane();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(shown.is_some(), "watch never showed the takeover:\n{last}");
    assert!(
        !last.contains("MONITORING"),
        "not redrawn in place:\n{last}"
    );
    // The pipe got the change as blocks of their own, then stopped after three.
    let end = wait_for(Duration::from_secs(10), || {
        matches!(background.try_wait(), Ok(Some(_)))
    });
    if end.is_none() {
        let _ = background.kill();
    }
    let text = ipfailover_e2e::read(&piped);
    assert!(text.matches("===== ").count() >= 2, "{text}");
    let first_monitoring = text.find("MONITORING").unwrap_or(usize::MAX);
    let later = text.rfind("ACQUIR").unwrap_or(0);
    assert!(later > first_monitoring, "{text}");
}

#[test]
fn idle_clients_on_the_control_socket_delay_no_takeover() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut lab = Lab::new("ctlidle");
    let (hb, _fo) = pair(&mut lab, &[]);
    let socket = lab.state_dir(Host::Sec).join("failoverd.sock");
    // 16 clients of failoverd's own user that connect and say nothing, again and again: each
    // is dropped at its deadline and at once connects again.
    let stop = Arc::new(AtomicBool::new(false));
    let idlers: Vec<_> = (0..16)
        .map(|_| {
            let (socket, stop) = (socket.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut dropped = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = UnixStream::connect(&socket) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut said = Vec::new();
                    let _ = s.read_to_end(&mut said);
                    dropped += 1;
                }
                dropped
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::time::Instant::now();
    lab.kill_primary(hb);
    let took = wait_for(Duration::from_secs(30), || {
        lab.holds(Host::Sec, "eth0", VIP)
    });
    let after = killed.elapsed();
    // A command still gets its answer at once, among the idle clients.
    let asked = std::time::Instant::now();
    let out = ctl(&lab, &["pause", "--for", "1s"]);
    let answered_in = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    let dropped: u32 = idlers
        .into_iter()
        .map(|t| t.join().expect("an idle client"))
        .sum();
    let worst = lab.status(Host::Sec, "failoverd")["worst_turn_ms"].clone();
    eprintln!(
        "takeover after {took:?} ({after:?} from the kill); idle clients dropped {dropped} \
         times; failoverctl pause answered in {answered_in:?}; the loop's worst turn: {worst} ms"
    );
    // The timeout (1 s) and the probe round, with room for a busy machine.
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(3)),
        "took over after {took:?} with idle clients on the control socket\n{}",
        lab.logs()
    );
    assert!(
        dropped >= 16,
        "the idle clients were never dropped: {dropped}"
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        answered_in < Duration::from_secs(1),
        "a command waited {answered_in:?} behind idle clients"
    );
    assert!(
        worst.as_u64().is_some_and(|w| w < 500),
        "a loop turn took {worst} ms"
    );
}
