//! What failoverctl found in the state directory: one entry per daemon, read once, so that
//! judging and rendering afterwards are pure functions of it. [`observe`] is the one look
//! that `status`, `watch` and `metrics` take: the files read, the clock read once, the verdict.

use std::path::{Path, PathBuf};

use ipfailover::status::Status;
use serde_json::Value;

use crate::health::Health;

/// The two daemons that write status files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// The secondary's watcher.
    Failoverd,
    /// The primary's sender.
    Heartbeatd,
}

impl Daemon {
    /// Both, in the order they are shown: the one that moves addresses first.
    pub const ALL: [Daemon; 2] = [Daemon::Failoverd, Daemon::Heartbeatd];

    /// The program's name, which is also its status file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Failoverd => "failoverd",
            Daemon::Heartbeatd => "heartbeatd",
        }
    }
}

/// One daemon's status file, as found.
#[derive(Debug, Clone)]
pub enum Found {
    /// There is no file.
    Missing,
    /// There is a file, but not a status failoverctl can read; `raw` is its JSON if it is JSON.
    Unreadable {
        /// Why it could not be read.
        error: String,
        /// The file's JSON, when it parses as JSON at all.
        raw: Option<Value>,
    },
    /// A status.
    Status {
        /// The status, parsed.
        status: Box<Status>,
        /// The file's JSON as written (passed on by `--json`, fields unknown to us included).
        raw: Value,
        /// Whether its process exists: `None` when not checked (the file names another host).
        pid_alive: Option<bool>,
    },
}

impl Found {
    /// The status, if one was read.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Found::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The file's JSON, if it was JSON.
    pub fn raw(&self) -> Option<&Value> {
        match self {
            Found::Status { raw, .. } => Some(raw),
            Found::Unreadable { raw, .. } => raw.as_ref(),
            Found::Missing => None,
        }
    }
}

/// Everything found in one state directory.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The directory looked in.
    pub dir: PathBuf,
    /// `failoverd.json`.
    pub failoverd: Found,
    /// `heartbeatd.json`.
    pub heartbeatd: Found,
}

impl Seen {
    /// What was found for `daemon`.
    pub fn get(&self, daemon: Daemon) -> &Found {
        match daemon {
            Daemon::Failoverd => &self.failoverd,
            Daemon::Heartbeatd => &self.heartbeatd,
        }
    }

    /// Where `daemon`'s file is (or would be).
    pub fn path(&self, daemon: Daemon) -> PathBuf {
        status_path(&self.dir, daemon)
    }

    /// Reads both files. A process is probed with `kill(pid, 0)` only when its file names
    /// this host: a pid from another host says nothing about this one.
    pub fn read(dir: &Path, this_host: &str) -> Seen {
        let read = |d| read_one(&status_path(dir, d), this_host);
        Seen {
            dir: dir.to_path_buf(),
            failoverd: read(Daemon::Failoverd),
            heartbeatd: read(Daemon::Heartbeatd),
        }
    }
}

/// One look at a state directory: what was found, and its verdict at one instant.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The status files.
    pub seen: Seen,
    /// The verdict on them.
    pub health: Health,
    /// The wall clock, ms since the Unix epoch, read once after the files: every age is
    /// measured from it.
    pub now_ms: u64,
}

/// Reads the status files in `dir` and judges them, `this_host` naming the host failoverctl
/// runs on (whose processes it can see).
pub fn observe(dir: &Path, this_host: &str) -> Observation {
    let seen = Seen::read(dir, this_host);
    let now_ms = ipfailover_os::daemon::wall_ms();
    let health = crate::health::health(&seen, now_ms, this_host);
    Observation {
        seen,
        health,
        now_ms,
    }
}

fn status_path(dir: &Path, daemon: Daemon) -> PathBuf {
    dir.join(format!("{}.json", daemon.name()))
}

fn read_one(path: &Path, this_host: &str) -> Found {
    let bytes = match ipfailover_os::status_file::read_status_file(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => {
            return Found::Unreadable {
                error: format!("cannot read {}: {e}", path.display()),
                raw: None,
            }
        }
    };
    let raw: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return Found::Unreadable {
                error: format!("{} is not JSON: {e}", path.display()),
                raw: None,
            }
        }
    };
    match serde_json::from_value::<Status>(raw.clone()) {
        Ok(status) => {
            let pid_alive = (status.hostname == this_host).then(|| pid_exists(status.pid));
            Found::Status {
                status: Box::new(status),
                raw,
                pid_alive,
            }
        }
        Err(e) => Found::Unreadable {
            error: format!(
                "{} is not a status file failoverctl knows: {e}",
                path.display()
            ),
            raw: Some(raw),
        },
    }
}

/// Whether a process with this id exists (EPERM means it does, owned by someone else).
fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // No signal: only checks that the process exists and may be signalled.
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_processes() {
        assert!(pid_exists(std::process::id()));
        // pid 1 exists everywhere (and may belong to another user).
        assert!(pid_exists(1));
        assert!(!pid_exists(0));
        assert!(!pid_exists(u32::MAX));
    }

    #[test]
    fn reads_missing_unreadable_and_good_files() {
        let dir = std::env::temp_dir().join(format!("failoverctl-observe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seen = Seen::read(&dir, "here");
        assert!(matches!(seen.failoverd, Found::Missing));
        assert!(matches!(seen.heartbeatd, Found::Missing));

        std::fs::write(dir.join("failoverd.json"), "{not json").unwrap();
        let mut s = Status::new("heartbeatd", "0.1.0", std::process::id(), "here", 1);
        s.state = ipfailover::status::DaemonState::Sending;
        let mut raw = serde_json::to_value(&s).unwrap();
        raw["future_field"] = Value::from(7);
        std::fs::write(dir.join("heartbeatd.json"), raw.to_string()).unwrap();
        let seen = Seen::read(&dir, "here");
        assert!(matches!(
            &seen.failoverd,
            Found::Unreadable { raw: None, .. }
        ));
        match &seen.heartbeatd {
            Found::Status {
                status,
                raw: r,
                pid_alive,
            } => {
                assert_eq!(**status, s);
                assert_eq!(r["future_field"], 7, "unknown fields are kept for --json");
                assert_eq!(*pid_alive, Some(true));
            }
            other => panic!("{other:?}"),
        }
        // Another host's pid is not probed.
        let seen = Seen::read(&dir, "elsewhere");
        assert!(matches!(
            seen.heartbeatd,
            Found::Status {
                pid_alive: None,
                ..
            }
        ));
        // One look: the files, the clock after them, the verdict on both.
        let before = ipfailover_os::daemon::wall_ms();
        let o = observe(&dir, "here");
        assert!(o.now_ms >= before);
        assert!(matches!(o.seen.heartbeatd, Found::Status { .. }));
        assert!(matches!(
            o.health.of(Daemon::Failoverd),
            crate::health::Freshness::Unreadable(_)
        ));
        std::fs::write(dir.join("failoverd.json"), "{\"schema\": 1}").unwrap();
        let seen = Seen::read(&dir, "here");
        assert!(matches!(
            &seen.failoverd,
            Found::Unreadable { raw: Some(_), .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
