//! Under systemd (docs/failoverd.md, "Under systemd"): readiness once the daemon serves, its
//! state in one line, reload and stop, and the watchdog's pings, which stop when the loop is
//! stuck.
//!
//! PID 1 on the machines that run these tests is not systemd (a container's init), so there is
//! no real service manager to start the daemons, and no journal: each test binds the
//! `NOTIFY_SOCKET` itself, a Unix datagram socket as systemd's, and reads what the daemon
//! tells it; the journal's socket likewise, mounted where the daemon looks for it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfailover_e2e::{bin, run, wait_for, Host, Lab, PRI_PRIV, VIP};

/// The service manager's end: every datagram the daemon sent, in order, with when it came.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
    got: Vec<(Instant, String)>,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("binding the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Notify {
            sock,
            path,
            got: Vec::new(),
        }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.to_string_lossy().into_owned())
    }

    /// Reads what arrived, for at most `limit`, until a datagram satisfies `want`; that one.
    fn until(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push((Instant::now(), text.clone()));
                if want(&text) {
                    return Some(text);
                }
            }
        }
        None
    }

    /// Reads whatever arrives for `d`.
    fn drain(&mut self, d: Duration) {
        self.until(d, |_| false);
    }

    fn count(&self, line: &str) -> usize {
        self.got
            .iter()
            .filter(|(_, t)| t.lines().any(|l| l == line))
            .count()
    }

    fn shown(&self) -> String {
        self.got
            .iter()
            .map(|(_, t)| t.replace('\n', " | "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn lab_dir(lab: &Lab) -> PathBuf {
    lab.state_dir(Host::Sec)
        .parent()
        .expect("the lab's directory")
        .to_path_buf()
}

#[test]
fn failoverd_is_ready_once_it_serves_and_tells_its_state_reloads_and_stop() {
    let mut lab = Lab::new("sdready");
    let hb = lab.start_heartbeatd(&[]);
    let mut notify = Notify::bind(&lab_dir(&lab));
    let conf = lab.failoverd_conf(&[]);
    let fo = lab.spawn_env(
        Host::Sec,
        "failoverd",
        "failoverd",
        &["-c", &conf],
        &[notify.env()],
    );
    let ready = notify.until(Duration::from_secs(10), |t| t.contains("READY=1"));
    // Stopped at once: whatever it had bound, it bound before it said it was ready.
    lab.proc(fo).signal(libc::SIGSTOP);
    let ready = ready.unwrap_or_else(|| panic!("no READY=1:\n{}", lab.logs()));
    let ns = lab.ns(Host::Sec);
    let udp = run(&["ip", "netns", "exec", &ns, "ss", "-Hlun", "sport = :1694"]);
    let control = lab.state_dir(Host::Sec).join("failoverd.sock");
    let bound = !String::from_utf8_lossy(&udp.stdout).trim().is_empty();
    let listening = control.exists();
    lab.proc(fo).signal(libc::SIGCONT);
    assert!(bound, "READY=1 before UDP 1694 was bound:\n{}", lab.logs());
    assert!(
        listening,
        "READY=1 before the control socket:\n{}",
        lab.logs()
    );
    // Nothing before it, and its state with it.
    assert_eq!(notify.got.len(), 1, "{}", notify.shown());
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready}");

    let monitoring = format!("STATUS=monitoring {VIP}: 2 links up");
    assert!(
        notify
            .until(Duration::from_secs(10), |t| t
                .lines()
                .any(|l| l == monitoring))
            .is_some(),
        "never `{monitoring}`:\n{}\n{}",
        notify.shown(),
        lab.logs()
    );

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 again.
    let before = notify.got.len();
    lab.proc(fo).signal(libc::SIGHUP);
    let reloading = notify.until(Duration::from_secs(5), |t| t.contains("RELOADING=1"));
    let reloading = reloading.unwrap_or_else(|| panic!("no RELOADING=1:\n{}", notify.shown()));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading}");
    assert!(
        notify
            .until(Duration::from_secs(5), |t| t.contains("READY=1"))
            .is_some(),
        "no READY=1 after the reload:\n{}",
        notify.shown()
    );
    assert!(notify.got.len() > before);

    // The primary dies: failoverd holds its address, and says since when.
    lab.kill_primary(hb);
    let holding = format!("STATUS=holding {VIP} since ");
    assert!(
        notify
            .until(Duration::from_secs(15), |t| t
                .lines()
                .any(|l| l.starts_with(&holding)))
            .is_some(),
        "never `{holding}…`:\n{}\n{}",
        notify.shown(),
        lab.logs()
    );

    // SIGTERM: STOPPING=1, then the release and the exit.
    lab.proc(fo).signal(libc::SIGTERM);
    assert!(
        notify
            .until(Duration::from_secs(5), |t| t.contains("STOPPING=1"))
            .is_some(),
        "no STOPPING=1:\n{}",
        notify.shown()
    );
    assert!(lab.proc(fo).wait_exit(Duration::from_secs(15)).is_some());
    // No watchdog was asked for: no pings.
    assert_eq!(notify.count("WATCHDOG=1"), 0, "{}", notify.shown());
}

#[test]
fn the_watchdog_is_pinged_while_the_loop_turns_and_no_longer_once_it_is_stuck() {
    let mut lab = Lab::new("sdwdog");
    lab.start_heartbeatd(&[]);
    let mut notify = Notify::bind(&lab_dir(&lab));
    let conf = lab.failoverd_conf(&[]);
    // A watchdog of 1 s (pings every 0.5 s); this debug build's loop hangs after 4 s.
    let fo = lab.spawn_env(
        Host::Sec,
        "failoverd",
        "failoverd",
        &["-c", &conf],
        &[
            notify.env(),
            ("WATCHDOG_USEC", "1000000".to_string()),
            ("IPFO_TEST_HANG_AFTER_MS", "4000".to_string()),
        ],
    );
    let hung = "the loop hangs here, on purpose";
    let log = lab.proc(fo).log.clone();
    let seen = wait_for(Duration::from_secs(15), || {
        notify.drain(Duration::from_millis(20));
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(hung))
    });
    assert!(seen.is_some(), "the loop never hung:\n{}", lab.logs());
    notify.drain(Duration::from_millis(300));
    let pings = notify.count("WATCHDOG=1");
    // About 8 in 4 s; at least one per second, whatever the load.
    assert!(
        pings >= 4,
        "{pings} pings in the 4 s the loop turned:\n{}",
        notify.shown()
    );
    // Stuck: alive, but silent.
    notify.drain(Duration::from_secs(3));
    assert_eq!(
        notify.count("WATCHDOG=1"),
        pings,
        "pings while the loop is stuck:\n{}",
        notify.shown()
    );
    assert!(lab.proc(fo).try_exit().is_none(), "{}", lab.logs());
}

#[test]
fn the_watchdog_of_another_process_is_not_pinged() {
    let mut lab = Lab::new("sdwpid");
    let mut notify = Notify::bind(&lab_dir(&lab));
    let conf = lab.heartbeatd_conf(&[]);
    // WATCHDOG_PID names another process (a shell that execs, say): not ours to ping.
    lab.spawn_env(
        Host::Pri,
        "heartbeatd",
        "heartbeatd",
        &["-c", &conf],
        &[
            notify.env(),
            ("WATCHDOG_USEC", "1000000".to_string()),
            ("WATCHDOG_PID", "1".to_string()),
        ],
    );
    assert!(
        notify
            .until(Duration::from_secs(10), |t| t.contains("READY=1"))
            .is_some(),
        "no READY=1:\n{}",
        lab.logs()
    );
    notify.drain(Duration::from_secs(2));
    assert_eq!(notify.count("WATCHDOG=1"), 0, "{}", notify.shown());
    assert!(
        notify.got.iter().any(|(_, t)| t
            .lines()
            .any(|l| l.starts_with("STATUS=sending every 0.1s to 2"))),
        "{}",
        notify.shown()
    );
}

/// One journal entry of the native protocol: `KEY=value` lines, or `KEY`, a little-endian
/// 64-bit length and that many bytes, for values with a newline.
fn journal_entry(mut data: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    while !data.is_empty() {
        let Some(nl) = data.iter().position(|b| *b == b'\n') else {
            break;
        };
        let line = &data[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &data[nl + 1..];
            let Some(len) = rest
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .and_then(|l| usize::try_from(l).ok())
            else {
                break;
            };
            let Some(value) = rest.get(8..8 + len) else {
                break;
            };
            fields.insert(key, String::from_utf8_lossy(value).into_owned());
            data = rest.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    fields
}

/// The journal's end: every entry the daemon wrote.
struct Journal {
    sock: UnixDatagram,
    entries: Vec<BTreeMap<String, String>>,
}

impl Journal {
    fn until(
        &mut self,
        limit: Duration,
        want: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Option<BTreeMap<String, String>> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let entry = journal_entry(&buf[..n]);
                self.entries.push(entry.clone());
                if want(&entry) {
                    return Some(entry);
                }
            }
        }
        None
    }

    fn event(&mut self, limit: Duration, name: &str) -> Option<BTreeMap<String, String>> {
        self.until(limit, |e| {
            e.get("IPFAILOVER_EVENT").map(String::as_str) == Some(name)
        })
    }

    fn shown(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn under_the_journal_each_event_has_its_message_id_and_fields() {
    let mut lab = Lab::new("sdjournal");
    let hb = lab.start_heartbeatd(&[]);
    let dir = lab_dir(&lab);
    let sock = dir.join("journal.sock");
    let mut journal = Journal {
        sock: UnixDatagram::bind(&sock).expect("binding the journal's socket"),
        entries: Vec::new(),
    };
    journal
        .sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // stderr is the journal: JOURNAL_STREAM names the device and inode of failoverd's stderr,
    // the lab's log file for it, made here first.
    let stderr = dir.join("failoverd.log");
    std::fs::write(&stderr, "").expect("log file");
    let meta = std::fs::metadata(&stderr).expect("log file");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let conf = lab.failoverd_conf(&[]);
    // In a mount namespace of its own, a tmpfs on /run with the test's socket where the
    // journal's would be.
    let script = format!(
        "mount -t tmpfs ipfo-run /run && mkdir -p /run/systemd/journal && \
         touch /run/systemd/journal/socket && \
         mount --bind '{}' /run/systemd/journal/socket && \
         exec env JOURNAL_STREAM={stream} RUST_LOG=debug '{}' -c '{conf}'",
        sock.display(),
        bin("failoverd").display()
    );
    let fo = lab.spawn_cmd(
        Host::Sec,
        "failoverd",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
    );
    let started = journal.until(Duration::from_secs(10), |e| {
        e.get("MESSAGE")
            .is_some_and(|m| m.starts_with("failoverd "))
    });
    let started = started.unwrap_or_else(|| panic!("nothing in the journal:\n{}", lab.logs()));
    assert_eq!(
        started.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("failoverd")
    );
    assert_eq!(
        started.get("PRIORITY").map(String::as_str),
        Some("5"),
        "{started:?}"
    );
    assert!(
        journal
            .until(Duration::from_secs(10), |e| e
                .get("MESSAGE")
                .is_some_and(|m| m.contains("-> monitoring")))
            .is_some(),
        "never monitoring:\n{}",
        journal.shown()
    );

    // The private link loses everything: redundancy lost, then back.
    lab.loss(Host::Pri, "eth1", 100);
    let lost = journal.event(Duration::from_secs(10), "link-lost");
    let lost = lost.unwrap_or_else(|| panic!("no link-lost:\n{}", journal.shown()));
    assert_eq!(
        lost.get("MESSAGE_ID").map(String::as_str),
        Some("29fff9c1a11d4c6ba1b6bb2cfe2f77a1")
    );
    assert_eq!(
        lost.get("IPFAILOVER_LINK").map(String::as_str),
        Some(PRI_PRIV)
    );
    assert_eq!(lost.get("IPFAILOVER_PEER").map(String::as_str), Some(VIP));
    assert_eq!(lost.get("PRIORITY").map(String::as_str), Some("4"));
    lab.loss(Host::Pri, "eth1", 0);
    let back = journal.event(Duration::from_secs(10), "link-back");
    let back = back.unwrap_or_else(|| panic!("no link-back:\n{}", journal.shown()));
    assert_eq!(
        back.get("MESSAGE_ID").map(String::as_str),
        Some("f534cdf2f9934acc8ca5717e7103d8f9")
    );

    // The primary dies: the takeover, with the address, the peer and the reason.
    lab.kill_primary(hb);
    let took = journal.event(Duration::from_secs(15), "takeover");
    let took = took.unwrap_or_else(|| panic!("no takeover:\n{}\n{}", journal.shown(), lab.logs()));
    assert_eq!(
        took.get("MESSAGE_ID").map(String::as_str),
        Some("e7997f3e1253415fb9468f09f422f13b")
    );
    assert_eq!(
        took.get("IPFAILOVER_ADDRESS").map(String::as_str),
        Some(VIP)
    );
    assert_eq!(took.get("IPFAILOVER_PEER").map(String::as_str), Some(VIP));
    assert_eq!(
        took.get("IPFAILOVER_REASON").map(String::as_str),
        Some("timeout")
    );
    assert!(
        took.get("MESSAGE")
            .is_some_and(|m| m.starts_with("took over ")),
        "{took:?}"
    );
    // The debug lines go there too, at their priority; nothing went to stderr.
    assert!(journal
        .entries
        .iter()
        .any(|e| e.get("PRIORITY").map(String::as_str) == Some("6")));
    let plain = lab.proc(fo).log_text();
    assert!(!plain.contains("took over"), "on stderr too:\n{plain}");
}
