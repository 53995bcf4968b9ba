//! The processes the labs, the demos and the bench start: a started process ([`Proc`]),
//! signals by pid, a process's children and costs, the monotonic clock they all read, and a
//! demo's session (its narration's clock and its Ctrl-C). One module, so that the lab, the
//! demos and the bench signal, wait and measure in one way. No `unsafe`: the system calls go
//! through nix.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process a lab started, with its log: killed (and reaped) when dropped, if still running.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// A short name for messages.
    pub name: String,
}

impl Proc {
    /// A started process, logging to `log`.
    pub fn new(child: Child, log: PathBuf, name: String) -> Proc {
        Proc { child, log, name }
    }

    /// Starts `argv` in network namespace `ns` (`ip netns exec` execs it: the pid is the
    /// program's), its output appended to `log`, with `env` added to its environment.
    pub fn spawn_in(
        ns: &str,
        name: &str,
        argv: &[&str],
        log: PathBuf,
        env: &[(&str, String)],
        stdin: std::process::Stdio,
    ) -> Proc {
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = std::process::Command::new("ip")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(stdin)
            .stdout(logf.try_clone().expect("log file"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        Proc::new(child, log, name.to_string())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to it (`libc::SIGTERM` and the like).
    pub fn signal(&self, sig: i32) {
        signal_pid(self.child.id(), sig);
    }

    /// Whether it has exited (and its status if so).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for it to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            sleep(Duration::from_millis(10));
        }
        None
    }

    /// Its standard input, if it was started with a pipe there (once).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends signal `sig` to process `pid`, one the caller started (or read from a pid file of
/// one it started). Pids 0 and 1, which would name a group or init, and unknown signal
/// numbers are ignored; so is a process that is already gone.
pub fn signal_pid(pid: u32, sig: i32) {
    let (Ok(pid), Ok(sig)) = (i32::try_from(pid), Signal::try_from(sig)) else {
        return;
    };
    if pid > 1 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// The children of a process (keepalived forks its VRRP worker), from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A process and its children: what a crash kills.
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut all = children(pid);
    all.push(pid);
    all
}

/// CPU time a process has used, in nanoseconds (all its threads), exact to the nanosecond:
/// /proc's clock ticks (10 ms) are too coarse for a daemon that uses 0.01 % of a core.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?);
    let clock = nix::time::clock_getcpuclockid(pid).ok()?;
    timespec_ns(nix::time::clock_gettime(clock).ok()?)
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every network namespace, so that a
/// probe in a client and the driver outside agree on when things happened.
pub fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .ok()
        .and_then(timespec_ns)
        .unwrap_or(0)
}

fn timespec_ns(ts: nix::sys::time::TimeSpec) -> Option<u64> {
    Some(u64::try_from(ts.tv_sec()).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec()).ok()?)
}

/// Resident memory of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A demo's run: the clock its narration is timed by, and Ctrl-C (SIGINT or SIGTERM), which
/// ends every wait at once so that the lab is torn down.
#[derive(Debug)]
pub struct Session {
    t0: Instant,
    stop: Arc<AtomicBool>,
}

impl Session {
    /// Starts the clock and catches SIGINT and SIGTERM.
    pub fn new() -> Session {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
                eprintln!("cannot handle signal {sig}: {e}");
            }
        }
        Session {
            t0: Instant::now(),
            stop,
        }
    }

    /// Prints a line of the narration, with the time since the start.
    pub fn say(&self, msg: &str) {
        println!("[{:>7.3} s] {msg}", self.t0.elapsed().as_secs_f64());
    }

    /// Whether Ctrl-C was pressed.
    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits for `cond` (or Ctrl-C, an error); the time it took, or an error after `limit`.
    pub fn wait(
        &self,
        limit: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Result<Duration, String> {
        let took = crate::wait_for(limit, || self.interrupted() || cond());
        if self.interrupted() {
            return Err("interrupted".into());
        }
        took.ok_or_else(|| format!("nothing happened within {limit:?}"))
    }

    /// Ends the demo: says what stopped it, with the lab's `logs`, if it failed; then tears
    /// the lab down (drops it: its processes killed by pid, its namespaces deleted) and exits
    /// 0, or 1 on failure.
    pub fn finish<L>(
        &self,
        result: Result<(), String>,
        lab: L,
        logs: impl FnOnce(&L) -> String,
    ) -> ! {
        if let Err(e) = &result {
            eprintln!("demo stopped: {e}\n{}", logs(&lab));
        }
        self.say("done; removing the lab");
        drop(lab);
        std::process::exit(i32::from(result.is_err()));
    }
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_costs_of_a_child() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let mut p = Proc::new(child, PathBuf::from("/nonexistent"), "sleep".into());
        assert!(cpu_ns(p.pid()).is_some());
        assert!(rss_kib(p.pid()).is_some_and(|k| k > 0));
        assert!(with_children(std::process::id()).contains(&std::process::id()));
        assert!(p.try_exit().is_none());
        p.signal(libc::SIGTERM);
        let status = p.wait_exit(Duration::from_secs(5)).expect("exited");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // Gone, 0, 1 and nonsense: nothing happens.
        signal_pid(p.pid(), libc::SIGKILL);
        signal_pid(0, libc::SIGTERM);
        signal_pid(1, 0);
        signal_pid(u32::MAX, libc::SIGKILL);
        signal_pid(std::process::id(), 12345);
        let (a, b) = (mono_ns(), mono_ns());
        assert!(a > 0 && b >= a);
    }
}
