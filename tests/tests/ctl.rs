//! failoverctl end to end: status files written by hand for each situation, read by the real
//! binary (text, `--json`, `--html`, exit codes), `check-config`, and a screenshot of the HTML
//! page in headless Chromium kept as `target/failoverctl-status.png`. No namespaces, no root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipfailover::status::{AddressStatus, LinkStatus, Status, TransitionStatus};
use ipfailover_e2e::bin;

fn scratch(name: &str) -> PathBuf {
    ipfailover_e2e::scratch("ctl", name)
}

fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(d.as_millis()).expect("ms fit")
}

fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn link(addr: &str, iface: &str, state: &str, age_ms: u64) -> LinkStatus {
    LinkStatus {
        peer_address: addr.into(),
        interface: Some(iface.into()),
        last_heartbeat_age_ms: age_ms,
        heartbeats: 4021,
        state: state.into(),
    }
}

/// failoverd on sec-1, monitoring 198.51.100.10 with both links up, written just now.
fn failoverd() -> Status {
    let now = now_ms();
    let mut s = Status::new("failoverd", "0.1.0", 412, "sec-1", now - 11_520_000);
    s.updated_at_ms = now - 300;
    s.refresh_ms = 1_000;
    s.state = "monitoring".into();
    s.peer = Some("198.51.100.10".into());
    s.timeout_ms = Some(3_000);
    s.interval_ms = Some(1_000);
    s.links = vec![
        link("198.51.100.10", "eth0", "up", 200),
        link("203.0.113.10", "eth1", "up", 250),
    ];
    s.addresses = vec![AddressStatus {
        interface: "eth0".into(),
        address: "198.51.100.10".into(),
        prefix: 24,
        held: false,
        holder: None,
        error: None,
        announced_ms: None,
    }];
    s.push_transition(TransitionStatus {
        at_ms: now - 11_517_000,
        from: "boot-grace".into(),
        to: "monitoring".into(),
        reason: "boot-grace-over".into(),
        duration_ms: 3_000,
    });
    s.counters.accepted = 8254;
    s.counters.dropped.insert("bad-tag".into(), 10);
    s.counters.dropped.insert("replay".into(), 2);
    s
}

/// failoverd two minutes after taking over on the primary's silence.
fn failed_over() -> Status {
    let now = now_ms();
    let mut s = failoverd();
    s.state = "acquired".into();
    s.links = vec![
        link("198.51.100.10", "eth0", "silent", 133_000),
        link("203.0.113.10", "eth1", "silent", 133_000),
    ];
    s.addresses[0].held = true;
    s.push_transition(TransitionStatus {
        at_ms: now - 130_000,
        from: "monitoring".into(),
        to: "acquiring".into(),
        reason: "timeout".into(),
        duration_ms: 11_387_000,
    });
    s.push_transition(TransitionStatus {
        at_ms: now - 129_880,
        from: "acquiring".into(),
        to: "acquired".into(),
        reason: "timeout".into(),
        duration_ms: 120,
    });
    s.counters.hooks_run = 4;
    s.counters.mails_sent = 2;
    s.counters.takeovers = 1;
    s
}

/// heartbeatd on pri-1, sending every second on both subnets.
fn heartbeatd() -> Status {
    let now = now_ms();
    let mut s = Status::new("heartbeatd", "0.1.0", 99, "pri-1", now - 11_520_000);
    s.updated_at_ms = now - 300;
    s.refresh_ms = 1_000;
    s.state = "sending".into();
    s.interval_ms = Some(1_000);
    s.destinations = vec!["198.51.100.255:1694".into(), "203.0.113.255:1694".into()];
    s.counters.sent = 11520;
    s
}

/// Writes the status files of a situation (None: no file).
fn situation(name: &str, fo: Option<&Status>, hb: Option<&Status>) -> PathBuf {
    let dir = scratch(name);
    for (file, status) in [("failoverd.json", fo), ("heartbeatd.json", hb)] {
        if let Some(s) = status {
            fs::write(
                dir.join(file),
                serde_json::to_vec_pretty(s).expect("serialise"),
            )
            .expect("status file");
        }
    }
    dir
}

fn ctl(args: &[&str]) -> Output {
    Command::new(bin("failoverctl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run failoverctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `status --state-dir DIR` as text, as JSON and with `--html`, checks that the three
/// agree on the exit code, and returns the text, the JSON and the page.
fn status_all_ways(dir: &Path, code: i32) -> (String, serde_json::Value, String) {
    let d = dir.to_string_lossy();
    let text = ctl(&["status", "--state-dir", &d]);
    assert_eq!(text.status.code(), Some(code), "{}", all(&text));

    let json = ctl(&["status", "--json", "--state-dir", &d]);
    assert_eq!(json.status.code(), Some(code), "{}", all(&json));
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(&json)));
    assert_eq!(value["exit_code"], code);

    let page = dir.join("www").join("status.html");
    fs::create_dir_all(page.parent().expect("parent")).expect("www");
    let html = ctl(&[
        "status",
        "--state-dir",
        &d,
        "--html",
        &page.to_string_lossy(),
    ]);
    assert_eq!(html.status.code(), Some(code), "{}", all(&html));
    // The text is printed with --html too.
    assert_eq!(stdout(&html).lines().count(), stdout(&text).lines().count());
    let page_text = fs::read_to_string(&page).expect("the page exists");
    assert!(page_text.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(!page_text.contains("<script"));
    let leftovers = fs::read_dir(page.parent().expect("parent"))
        .expect("www")
        .count();
    assert_eq!(leftovers, 1, "only the page, no temp file");
    (stdout(&text), value, page_text)
}

#[test]
fn healthy_pair_exits_0() {
    let (fo, hb) = (failoverd(), heartbeatd());
    let dir = situation("healthy", Some(&fo), Some(&hb));
    let (text, json, html) = status_all_ways(&dir, 0);
    assert!(text.starts_with("HEALTHY (exit 0): status in "), "{text}");
    assert!(
        text.contains(
            "failoverd on sec-1 (pid 412, up 3h12m, v0.1.0): MONITORING peer 198.51.100.10, 2 \
             of 2 links up, timeout 3s"
        ),
        "{text}"
    );
    assert!(
        text.contains("heartbeatd on pri-1 (pid 99, up 3h12m, v0.1.0): SENDING every 1s to"),
        "{text}"
    );
    assert_eq!(json["health"], "healthy");
    assert_eq!(json["reasons"], serde_json::json!([]));
    assert_eq!(json["stale"]["failoverd"], false);
    assert_eq!(json["stale"]["heartbeatd"], false);
    // The daemons' JSON passed on as written.
    assert_eq!(
        json["daemons"]["failoverd"],
        serde_json::to_value(&fo).expect("json")
    );
    assert_eq!(
        json["daemons"]["heartbeatd"],
        serde_json::to_value(&hb).expect("json")
    );
    assert!(html.contains("<h1>HEALTHY</h1>"), "{html}");
    assert!(html.contains("banner green"));
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_lost_link_is_degraded_and_exits_1() {
    let mut fo = failoverd();
    fo.links[0] = link("198.51.100.10", "eth0", "lost", 133_000);
    let dir = situation("lost", Some(&fo), Some(&heartbeatd()));
    let (text, json, html) = status_all_ways(&dir, 1);
    assert!(text.starts_with("DEGRADED (exit 1): "), "{text}");
    assert!(
        text.contains("failoverd: link 198.51.100.10 (eth0) is lost: no heartbeat for 2m13s"),
        "{text}"
    );
    assert!(text.contains("LOST"), "{text}");
    assert_eq!(json["health"], "degraded");
    assert!(json["reasons"][0]
        .as_str()
        .expect("a reason")
        .contains("is lost"));
    assert!(html.contains("<h1>DEGRADED</h1>"));
    assert!(html.contains("<span class=\"badge amber\">LOST</span>"));
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn boot_grace_and_a_stopped_heartbeatd_are_degraded() {
    let mut fo = failoverd();
    fo.state = "boot-grace".into();
    let dir = situation("grace", Some(&fo), None);
    let (text, json, _) = status_all_ways(&dir, 1);
    assert!(text.contains("boot grace"), "{text}");
    assert_eq!(json["health"], "degraded");
    fs::remove_dir_all(&dir).expect("cleanup");

    let mut hb = heartbeatd();
    hb.state = "stopped".into();
    let dir = situation("stopped", None, Some(&hb));
    let (text, _, _) = status_all_ways(&dir, 1);
    assert!(text.contains("heartbeatd on pri-1 has stopped"), "{text}");
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn failed_over_exits_2() {
    let dir = situation("failed", Some(&failed_over()), Some(&heartbeatd()));
    let (text, json, html) = status_all_ways(&dir, 2);
    assert!(text.starts_with("FAILED OVER (exit 2): "), "{text}");
    assert!(
        text.contains(": ACQUIRED — holding 198.51.100.10 for 198.51.100.10 since "),
        "{text}"
    );
    assert!(text.contains("UTC (timeout)"), "{text}");
    assert!(
        text.contains("  address 198.51.100.10/24 on eth0: held here\n"),
        "{text}"
    );
    assert_eq!(json["health"], "down");
    assert!(json["reasons"][0]
        .as_str()
        .expect("a reason")
        .starts_with("failed over: failoverd on sec-1 holds 198.51.100.10"));
    assert!(html.contains("<h1>FAILED OVER</h1>"));
    assert!(html.contains("banner red"));
    assert!(html.contains("<span class=\"badge red\">ACQUIRED</span>"));
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn stale_files_are_never_healthy() {
    // One of two stale: degraded.
    let mut fo = failoverd();
    fo.updated_at_ms = now_ms() - 300_000;
    let dir = situation("stale-one", Some(&fo), Some(&heartbeatd()));
    let (text, json, html) = status_all_ways(&dir, 1);
    assert!(
        text.contains(
            "failoverd on sec-1 (pid 412, v0.1.0): STALE: not updated for 5m (daemon not \
             running?)"
        ),
        "{text}"
    );
    assert!(!text.contains("MONITORING"), "{text}");
    assert_eq!(json["health"], "degraded");
    assert_eq!(json["stale"]["failoverd"], true);
    assert_eq!(json["stale"]["heartbeatd"], false);
    assert!(html.contains("<span class=\"badge red\">STALE</span> failoverd"));
    fs::remove_dir_all(&dir).expect("cleanup");

    // Every file stale: down.
    let mut hb = heartbeatd();
    hb.updated_at_ms = now_ms() - 60_000;
    let dir = situation("stale-all", Some(&fo), Some(&hb));
    let (text, json, html) = status_all_ways(&dir, 2);
    assert!(text.starts_with("DOWN (exit 2): "), "{text}");
    assert_eq!(json["health"], "down");
    assert!(html.contains("<h1>DOWN</h1>"));
    fs::remove_dir_all(&dir).expect("cleanup");

    // Fresh by its time, but it names this host and its process is gone.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap");
    let mut fo = failoverd();
    fo.hostname = this_host();
    fo.pid = pid;
    let dir = situation("pid-gone", Some(&fo), None);
    let (text, json, _) = status_all_ways(&dir, 2);
    assert!(
        text.contains(&format!("STALE: process {pid} no longer exists")),
        "{text}"
    );
    assert_eq!(json["stale"]["failoverd"], true);
    fs::remove_dir_all(&dir).expect("cleanup");
    // The same file while its process lives (this test's own pid) is fresh.
    fo.pid = std::process::id();
    let dir = situation("pid-alive", Some(&fo), None);
    status_all_ways(&dir, 0);
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn missing_files_are_down_and_say_where_they_were_looked_for() {
    let dir = situation("missing", None, None);
    let (text, json, html) = status_all_ways(&dir, 2);
    let d = dir.display();
    assert!(
        text.contains(&format!(
            "failoverd: no status file (looked for {d}/failoverd.json)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "heartbeatd: no status file (looked for {d}/heartbeatd.json)"
        )),
        "{text}"
    );
    assert_eq!(json["health"], "down");
    assert_eq!(json["daemons"]["failoverd"], serde_json::Value::Null);
    assert!(html.contains("NO FILE"));
    // A file that is not a status is not believed either.
    fs::write(dir.join("failoverd.json"), "{\"half\": ").expect("write");
    let out = ctl(&["status", "--state-dir", &dir.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(
        stdout(&out).contains("failoverd: unreadable status file:"),
        "{}",
        all(&out)
    );
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_state_dir_comes_from_the_configuration() {
    let dir = situation("config", Some(&failed_over()), None);
    let conf = dir.join("hostconfig");
    fs::write(&conf, format!("FAILOVER_STATE_DIR=\"{}\"\n", dir.display())).expect("config");
    let c = conf.to_string_lossy();
    let out = ctl(&["-c", &c, "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(stdout(&out).contains("ACQUIRED"), "{}", all(&out));
    // Without a command, status is what runs.
    let out = ctl(&["-c", &c]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(stdout(&out).contains("ACQUIRED"), "{}", all(&out));
    // A file named with -c must exist.
    let out = ctl(&["-c", "/nonexistent/ipfailover/hostconfig", "status"]);
    assert_eq!(out.status.code(), Some(78), "{}", all(&out));
    assert!(all(&out).contains("--state-dir"), "{}", all(&out));
    // A page that cannot be written is its own failure.
    let out = ctl(&["-c", &c, "status", "--html", "/nonexistent/dir/status.html"]);
    assert_eq!(out.status.code(), Some(73), "{}", all(&out));
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn check_config_on_good_and_bad_files() {
    let dir = scratch("check");
    let good = dir.join("good");
    fs::write(
        &good,
        "FAILOVER_PEER_IP=\"198.51.100.10\"\nFAILOVER_PEER_IP_PAIRS=\"eth0:198.51.100.10\"\n",
    )
    .expect("config");
    let g = good.to_string_lossy();
    for args in [
        vec!["-c", &g, "check-config"],
        vec!["-t", "-c", &g],
        vec!["-n", "-c", &g],
        vec!["--check-config", "-c", &g],
    ] {
        let out = ctl(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", all(&out));
        let shown = stdout(&out);
        assert!(
            shown.contains("FAILOVER_PEER_IP=\"198.51.100.10\""),
            "{shown}"
        );
        assert!(
            shown.contains("FAILOVER_PORT=\"1694\"  # default"),
            "{shown}"
        );
        assert!(shown.contains("# valid for failoverd\n"), "{shown}");
    }
    // A file for both daemons, and one for neither.
    let both = dir.join("both.toml");
    fs::write(
        &both,
        "bcast_ips = [\"198.51.100.255\"]\npeer_ip = \"198.51.100.20\"\n\
         peer_ip_pairs = [\"eth0:198.51.100.20\"]\n",
    )
    .expect("config");
    let out = ctl(&["-c", &both.to_string_lossy(), "check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(
        stdout(&out).contains("# valid for heartbeatd and failoverd\n"),
        "{}",
        all(&out)
    );
    let neither = dir.join("neither");
    fs::write(&neither, "FAILOVER_PORT=1700\n").expect("config");
    let out = ctl(&["-c", &neither.to_string_lossy(), "check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(
        stdout(&out).contains("# valid, but for neither daemon"),
        "{}",
        all(&out)
    );

    // Every problem, each with file, line and key, and the key failoverd cannot do without.
    let bad = dir.join("bad");
    fs::write(
        &bad,
        "FAILOVER_PEER_IP=\"198.51.100.300\"\nFAILOVER_TIMOUT=\"3s\"\nFAILOVER_INTERVAL=\"fast\"\n",
    )
    .expect("config");
    let b = bad.to_string_lossy();
    for args in [vec!["-c", &b, "check-config"], vec!["-t", "-c", &b]] {
        let out = ctl(&args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", all(&out));
        let t = all(&out);
        assert!(t.contains(&format!("{b}:1: FAILOVER_PEER_IP")), "{t}");
        assert!(t.contains(&format!("{b}:2: FAILOVER_TIMOUT")), "{t}");
        assert!(t.contains(&format!("{b}:3: FAILOVER_INTERVAL")), "{t}");
        assert!(t.contains("FAILOVER_PEER_IP_PAIRS"), "{t}");
        assert!(
            t.contains("configuration is not valid for failoverd"),
            "{t}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout: {t}");
    }
    let out = ctl(&["-c", "/nonexistent/hostconfig", "check-config"]);
    assert_eq!(out.status.code(), Some(78), "{}", all(&out));
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn usage_help_and_version() {
    let out = ctl(&["--no-such-option"]);
    assert_eq!(out.status.code(), Some(64), "{}", all(&out));
    let out = ctl(&["status", "--bogus"]);
    assert_eq!(out.status.code(), Some(64), "{}", all(&out));
    let out = ctl(&["-t", "status"]);
    assert_eq!(out.status.code(), Some(64), "{}", all(&out));
    let out = ctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = all(&out);
    for needle in [
        "status",
        "check-config",
        "--check-config",
        "Exit codes:",
        "0   status: healthy",
        "1   status: degraded",
        "2   status: failed over",
        "64  usage error",
        "69  pause, resume, release, takeover: no failoverd answers",
        "77  pause, resume, release, takeover: this user may not",
        "78  configuration error",
        "A status file is stale when",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
    let out = ctl(&["status", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(all(&out).contains("--state-dir") && all(&out).contains("Exit codes:"));
    let out = ctl(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(all(&out).contains(env!("CARGO_PKG_VERSION")));
}

/// The workspace's target directory, from this test binary's path
/// (`<target>/<profile>/deps/ctl-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut dir = exe.parent().expect("its directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop(); // the profile
    dir
}

/// Screenshots `page` with headless Chromium into `png`, at 1000×700.
fn screenshot(page: &Path, png: &Path, profile: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not on PATH: the HTML status page is checked in headless \
                 Chromium, and .ci/run must install it (apt-get install -y \
                 --no-install-recommends chromium)"
            )
        });
    let _ = fs::remove_file(png);
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--window-size=1000,700",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let end = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium took more than 120 s to screenshot {}",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed: {status}");
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn the_failed_over_page_renders_in_chromium() {
    // Peering: sec-1 has taken over pri-1's address, and sends its own heartbeats.
    let mut hb = heartbeatd();
    hb.hostname = "sec-1".into();
    let dir = situation("screenshot", Some(&failed_over()), Some(&hb));
    let page = dir.join("status.html");
    let out = ctl(&[
        "status",
        "--state-dir",
        &dir.to_string_lossy(),
        "--html",
        &page.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(fs::read_to_string(&page)
        .expect("page")
        .contains("FAILED OVER"));

    let target = target_dir();
    fs::create_dir_all(&target).expect("target dir");
    let png = target.join("failoverctl-status.png");
    screenshot(&page, &png, &dir.join("chromium-profile"));
    let shot = fs::read(&png).expect("the screenshot exists");
    assert_eq!(png_size(&shot), (1000, 700), "{}", png.display());
    assert!(shot.len() > 5 * 1024, "{} bytes only", shot.len());

    // An empty page, shot the same way, is the floor: the status page must carry far more.
    let empty = dir.join("empty.html");
    fs::write(&empty, "<!DOCTYPE html>\n<html><body></body></html>\n").expect("empty page");
    let empty_png = dir.join("empty.png");
    screenshot(&empty, &empty_png, &dir.join("chromium-profile-2"));
    let blank = fs::read(&empty_png).expect("the blank screenshot");
    assert_eq!(png_size(&blank), (1000, 700));
    assert!(
        shot.len() > 2 * blank.len(),
        "the screenshot ({} bytes) is hardly larger than a blank page ({} bytes)",
        shot.len(),
        blank.len()
    );
    eprintln!("screenshot: {} ({} bytes)", png.display(), shot.len());
    fs::remove_dir_all(&dir).expect("cleanup");
}
