//! Running the administrator's hooks: one at a time, each in its own process group, watched
//! from the event loop so that heartbeats are still read while a hook runs.
//!
//! The loop calls [`HookRunner::begin`] for a phase, then [`HookRunner::poll`] whenever
//! SIGCHLD arrives, the output pipe is readable or [`HookRunner::next_deadline`] passes;
//! either returns the [`PhaseReport`] once the phase is over.
//!
//! A hook's process group lives at most its timeout: past it, SIGTERM to the group, SIGKILL
//! five seconds later. That holds for a hook that exited but left children behind too, which
//! is why the hook's own process is reaped only once its group has been dealt with: an
//! unreaped process keeps its pid, so the group id cannot be reused by an unrelated process
//! before we signal it. A child that left the group (`setsid`) does not escape either: on
//! Linux the daemon is a child subreaper, so such a child is the hook's descendant while the
//! hook runs and the daemon's own child once the hook has exited; either way it is found, and
//! ended with the group.
//!
//! Being the subreaper, the daemon also inherits every orphan a hook leaves, and must reap it
//! when it ends, whatever its session: a hook killed at its timeout with `sleep 1000 &` behind
//! it leaves that sleep dead and a child of ours. Such an orphan is told from the daemon's own
//! children (a sendmail, an `ifconfig`) by its process group: those run in the daemon's group,
//! while hooks, and everything they start, run in groups of their own. A hook's own process is
//! never reaped that way, by this runner or another: [`HOOK_PIDS`] lists the hooks still to be
//! waited for through their `Child`, and the reaping holds its lock.
//!
//! What runs is what was checked: the hook directory and every directory above it, and each
//! hook's target (links resolved) with every directory above it, must be writable by nobody
//! but root or the daemon's user; they are checked when a phase begins and again right before
//! each hook starts, and the resolved target is what is executed. A hook directory that was
//! there before and has vanished is an error, not "no hooks".

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipfailover::failover::HookPhase;
use ipfailover::hooks::{check_dir, select, Entry, EntryKind};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// After SIGTERM, how long a hook's group has before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How much of a hook's output is kept (its tail).
pub const OUTPUT_TAIL: usize = 4096;

/// The PATH hooks run with (their environment is otherwise clean).
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hooks of every runner in this process that were spawned and are not yet reaped through
/// their `Child`: their exit status is theirs to read, so no orphan reaping may take it. Held
/// while a hook is spawned and while orphans are reaped, so that neither runs between a hook's
/// fork and its entry here.
static HOOK_PIDS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// [`HOOK_PIDS`], locked; a panic elsewhere while it was held leaves a list that is still
/// right.
fn hook_pids() -> std::sync::MutexGuard<'static, Vec<i32>> {
    HOOK_PIDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reaps a hook's own process through its `Child` and takes it off [`HOOK_PIDS`].
fn reap_hook(child: &mut Child) {
    let _ = child.wait();
    if let Ok(pid) = i32::try_from(child.id()) {
        hook_pids().retain(|&p| p != pid);
    }
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (not one of ours).
    Signaled(i32),
    /// It ran past the timeout and was killed.
    TimedOut,
    /// It was not run: unsafe ownership or permissions.
    Refused(String),
    /// It could not be started.
    SpawnFailed(String),
}

impl HookStatus {
    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        matches!(self, HookStatus::Exited(0))
    }
}

impl std::fmt::Display for HookStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookStatus::Exited(c) => write!(f, "exit {c}"),
            HookStatus::Signaled(s) => write!(f, "killed by signal {s}"),
            HookStatus::TimedOut => f.write_str("timed out, killed"),
            HookStatus::Refused(why) => write!(f, "refused: {why}"),
            HookStatus::SpawnFailed(e) => write!(f, "could not start: {e}"),
        }
    }
}

/// One hook's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResult {
    /// The file name.
    pub name: String,
    /// How it ended.
    pub status: HookStatus,
    /// When it started, relative to the phase's start.
    pub started_after: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// The tail of its stdout and stderr, interleaved as written.
    pub output: String,
}

/// A phase's hooks, once they have all run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    /// The lane it ran in ([`HookRunner::begin_lane`]; 0 for [`HookRunner::begin`]).
    pub lane: u64,
    /// The event.
    pub phase: HookPhase,
    /// Why the transition happened (`FAILOVER_REASON`).
    pub reason: &'static str,
    /// Each hook run or refused, in order.
    pub results: Vec<HookResult>,
    /// Files skipped with a warning (not executable, not regular).
    pub skipped: Vec<(String, String)>,
    /// The directory itself was refused (unsafe), with why.
    pub dir_refused: Option<String>,
    /// How long the phase took.
    pub duration: Duration,
}

impl PhaseReport {
    /// Whether every hook succeeded and none was refused.
    pub fn ok(&self) -> bool {
        self.dir_refused.is_none() && self.results.iter().all(|r| r.status.ok())
    }

    /// The results that were not successes.
    pub fn failures(&self) -> impl Iterator<Item = &HookResult> {
        self.results.iter().filter(|r| !r.status.ok())
    }
}

/// What hooks are told about the pair, or the group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookEnv {
    /// `FAILOVER_PEER_IP`.
    pub peer_ip: String,
    /// `FAILOVER_PEER_IP_PAIRS`, as configured.
    pub pairs: String,
    /// More variables (a group's `FAILOVER_GROUP`, `FAILOVER_ADDRESS`, `FAILOVER_EPOCH`).
    pub extra: Vec<(String, String)>,
}

/// A hook's process group that must be gone by `kill_at`, with the processes that left it.
#[derive(Debug)]
struct Lingering {
    child: Child,
    term_at: Instant,
    termed: bool,
    kill_at: Instant,
    /// Processes outside the group the hook left behind (`setsid`): pid and start time.
    strays: Vec<(i32, u64)>,
}

#[derive(Debug)]
struct Running {
    /// Its number among the hooks this runner started.
    serial: u64,
    child: Child,
    name: String,
    started: Instant,
    deadline: Instant,
    term_sent: Option<Instant>,
    output: Vec<u8>,
    reader: Option<io::PipeReader>,
}

#[derive(Debug)]
struct Phase {
    /// What its hooks are told.
    env: HookEnv,
    started: Instant,
    /// Name, the resolved target checked, and its (device, inode).
    queue: VecDeque<(String, PathBuf, (u64, u64))>,
    report: PhaseReport,
    running: Option<Running>,
}

/// Runs hooks for one peer's directory.
#[derive(Debug)]
pub struct HookRunner {
    dir: PathBuf,
    timeout: Duration,
    env: HookEnv,
    uid: u32,
    /// The phases under way, by lane: one at a time in each lane, lanes side by side (a
    /// group runs each address's phases in a lane of its own).
    phases: BTreeMap<u64, Phase>,
    lingering: Vec<Lingering>,
    /// Hooks started so far: tells the loop a new output pipe needs watching.
    spawned: u64,
    /// Where the process groups still to be dealt with are written, so that a failoverd
    /// killed with SIGKILL can finish the job when it starts again.
    record: Option<PathBuf>,
    /// The hook directory existed at some point: if it vanishes, that is an error.
    dir_seen: bool,
}

impl HookRunner {
    /// Hooks from `dir` (`<FAILOVER_SCRIPT_DIR>/<peer>`), each allowed `timeout`.
    pub fn new(dir: PathBuf, timeout: Duration, env: HookEnv) -> HookRunner {
        let uid = nix::unistd::geteuid().as_raw();
        become_subreaper();
        let dir_seen = dir.is_dir();
        HookRunner {
            dir,
            timeout,
            env,
            uid,
            phases: BTreeMap::new(),
            lingering: Vec::new(),
            spawned: 0,
            record: None,
            dir_seen,
        }
    }

    /// Keeps a record of live hook process groups in `path`; first kills the groups a previous
    /// run recorded and could not deal with (it was killed), so no hook outlives its timeout
    /// by more than a restart.
    pub fn with_record(mut self, path: PathBuf) -> HookRunner {
        let killed = kill_recorded(&path, self.uid);
        if killed > 0 {
            log::warn!(
                "killed {killed} hook process group(s) left by a previous failoverd that was killed"
            );
        }
        self.record = Some(path);
        self.write_record();
        self
    }

    /// Rewrites the record: one line `PGID STARTTIME` per group still alive or lingering.
    fn write_record(&self) {
        let Some(path) = &self.record else {
            return;
        };
        let mut text = String::new();
        let running = self
            .phases
            .values()
            .filter_map(|p| p.running.as_ref())
            .map(|r| &r.child);
        for child in running.chain(self.lingering.iter().map(|l| &l.child)) {
            if let Some(start) = start_time(child.id()) {
                text.push_str(&format!("{} {start}\n", child.id()));
            }
        }
        for (pid, start) in self.lingering.iter().flat_map(|l| l.strays.iter()) {
            text.push_str(&format!("p {pid} {start}\n"));
        }
        let result = if text.is_empty() {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            // Mode 0600 and no link followed: a record is trusted only when it is ours.
            path.parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| crate::safe_fs::write_atomic(path, text.as_bytes(), 0o600))
        };
        if let Err(e) = result {
            log::debug!("hook record {}: {e}", path.display());
        }
    }

    /// New settings (SIGHUP); a phase under way finishes with the old ones.
    pub fn reconfigure(&mut self, dir: PathBuf, timeout: Duration, env: HookEnv) {
        if dir != self.dir {
            self.dir_seen = dir.is_dir();
        }
        self.dir = dir;
        self.timeout = timeout;
        self.env = env;
    }

    /// New variables for the next phase (a group's phases are each for one address).
    pub fn set_env(&mut self, env: HookEnv) {
        self.env = env;
    }

    /// The hook directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a phase is under way.
    pub fn busy(&self) -> bool {
        !self.phases.is_empty()
    }

    /// The running hooks' output pipes, for the loop to watch: for each, a number that
    /// changes with every hook (an fd number may be reused by the next pipe) and the raw fd.
    pub fn output_sources(&self) -> Vec<(u64, i32)> {
        self.phases
            .values()
            .filter_map(|p| p.running.as_ref())
            .filter_map(|r| {
                r.reader
                    .as_ref()
                    .map(|reader| (r.serial, reader.as_raw_fd()))
            })
            .collect()
    }

    /// Starts the hooks of a phase in lane 0, with the variables of [`HookRunner::set_env`].
    /// Returns the report at once if there is nothing to run.
    pub fn begin(
        &mut self,
        now: Instant,
        phase: HookPhase,
        reason: &'static str,
    ) -> Option<PhaseReport> {
        let env = self.env.clone();
        self.begin_lane(0, env, now, phase, reason)
    }

    /// Starts the hooks of a phase in `lane`, telling them `env`; phases of other lanes run
    /// side by side. Returns the report at once if there is nothing to run.
    pub fn begin_lane(
        &mut self,
        lane: u64,
        env: HookEnv,
        now: Instant,
        phase: HookPhase,
        reason: &'static str,
    ) -> Option<PhaseReport> {
        if let Some(old) = self.phases.remove(&lane) {
            // The core never overlaps phases in a lane; if it did, the old one must not leak.
            log::error!(
                "hook phase {} started while {} ran",
                phase.as_str(),
                old.report.phase.as_str()
            );
            if let Some(r) = old.running {
                self.linger_now(r.child, now);
            }
        }
        let mut report = PhaseReport {
            lane,
            phase,
            reason,
            results: Vec::new(),
            skipped: Vec::new(),
            dir_refused: None,
            duration: Duration::ZERO,
        };
        let mut queue = VecDeque::new();
        match self.list() {
            Ok(None) => {}
            Ok(Some(entries)) => {
                let sel = select(phase, &entries, self.uid);
                for (name, why) in sel.skipped {
                    report.skipped.push((lossy(&name), why));
                }
                for (name, why) in sel.refused {
                    report.results.push(HookResult {
                        name: lossy(&name),
                        status: HookStatus::Refused(why),
                        started_after: Duration::ZERO,
                        duration: Duration::ZERO,
                        output: String::new(),
                    });
                }
                for name in sel.run {
                    let path = self.dir.join(OsStr::from_bytes(&name));
                    match checked_target(&path, self.uid) {
                        Ok((target, id)) => queue.push_back((lossy(&name), target, id)),
                        Err(why) => report.results.push(HookResult {
                            name: lossy(&name),
                            status: HookStatus::Refused(why),
                            started_after: Duration::ZERO,
                            duration: Duration::ZERO,
                            output: String::new(),
                        }),
                    }
                }
            }
            Err(why) => report.dir_refused = Some(why),
        }
        self.phases.insert(
            lane,
            Phase {
                env,
                started: now,
                queue,
                report,
                running: None,
            },
        );
        self.advance(lane, now)
    }

    /// Reads the directory: `None` if it does not exist and never did (no hooks), an error if
    /// it is unsafe, or if it was there before and has vanished (renamed away during a
    /// takeover: `Test` must not be skipped silently).
    fn list(&mut self) -> Result<Option<Vec<Entry>>, String> {
        let meta = match fs::metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.dir_seen => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "the hook directory {} has vanished (it was there before): its hooks \
                     cannot run",
                    self.dir.display()
                ))
            }
            Err(e) => return Err(format!("{}: {e}", self.dir.display())),
        };
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", self.dir.display()));
        }
        self.dir_seen = true;
        check_dir(meta.mode(), meta.uid(), self.uid)
            .map_err(|why| format!("directory {} is {why}", self.dir.display()))?;
        // Every directory above it too: one that others can write lets them swap the
        // directory itself for one of their own.
        crate::safe_fs::check_chain(&self.dir, self.uid)
            .map_err(|why| format!("hook directory {}: {why}", self.dir.display()))?;
        let mut entries = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        for item in rd.flatten() {
            let name = item.file_name().as_bytes().to_vec();
            // Follow symlinks: what runs is the target, so its owner and mode are what count.
            let entry = match fs::metadata(item.path()) {
                Ok(m) => Entry {
                    name,
                    kind: if m.is_file() {
                        EntryKind::File
                    } else if m.is_dir() {
                        EntryKind::Dir
                    } else {
                        EntryKind::Other
                    },
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                },
                Err(_) => Entry {
                    name,
                    kind: EntryKind::Other,
                    mode: 0,
                    uid: u32::MAX,
                },
            };
            entries.push(entry);
        }
        Ok(Some(entries))
    }

    /// Starts the lane's next hook if none runs; returns the report when its phase is over.
    fn advance(&mut self, lane: u64, now: Instant) -> Option<PhaseReport> {
        loop {
            let phase = self.phases.get_mut(&lane)?;
            if phase.running.is_some() {
                return None;
            }
            let Some((name, path, id)) = phase.queue.pop_front() else {
                let mut done = self.phases.remove(&lane)?;
                done.report.duration = now.saturating_duration_since(done.started);
                return Some(done.report);
            };
            let event = phase.report.phase.as_str();
            let reason = phase.report.reason;
            let env = phase.env.clone();
            // Checked again now: a hook queued behind a slow one may have been swapped in
            // the meantime, by whoever could (which the checks leave to root and us).
            let spawned = match checked_target(&path, self.uid) {
                Ok((_, now_id)) if now_id == id => self.spawn(&path, event, reason, &env),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} changed after it was checked: not run", path.display()),
                )),
                Err(why) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
            };
            match spawned {
                Ok((child, reader)) => {
                    self.spawned += 1;
                    let serial = self.spawned;
                    log::info!("hook {name} started ({event}, {reason})");
                    let phase = self.phases.get_mut(&lane)?;
                    phase.running = Some(Running {
                        serial,
                        child,
                        name,
                        started: now,
                        deadline: now + self.timeout,
                        term_sent: None,
                        output: Vec::new(),
                        reader: Some(reader),
                    });
                    self.write_record();
                    return None;
                }
                Err(e) => {
                    let phase = self.phases.get_mut(&lane)?;
                    let started_after = now.saturating_duration_since(phase.started);
                    phase.report.results.push(HookResult {
                        name,
                        status: HookStatus::SpawnFailed(e.to_string()),
                        started_after,
                        duration: Duration::ZERO,
                        output: String::new(),
                    });
                }
            }
        }
    }

    fn spawn(
        &self,
        path: &Path,
        event: &str,
        reason: &str,
        env: &HookEnv,
    ) -> io::Result<(Child, io::PipeReader)> {
        let (reader, writer) = io::pipe()?;
        set_nonblocking(&reader)?;
        let mut command = Command::new(path);
        command
            .arg(event)
            .env_clear()
            .env("PATH", HOOK_PATH)
            .env("FAILOVER_EVENT", event);
        // A group member's hooks have no peer: no empty variable pretends they have one.
        if !env.peer_ip.is_empty() {
            command
                .env("FAILOVER_PEER_IP", &env.peer_ip)
                .env("FAILOVER_PEER_IP_PAIRS", &env.pairs);
        }
        command
            .env("FAILOVER_REASON", reason)
            .env("FAILOVER_HOOK_DIR", &self.dir)
            .envs(env.extra.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0);
        // Listed before any orphan reaping can run: a hook that exits at once is still ours.
        let mut hooks = hook_pids();
        let child = command.spawn()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            hooks.push(pid);
        }
        Ok((child, reader))
    }

    /// Reads output, notices exits and timeouts, kills lingering groups; returns the report
    /// when the phase is over.
    pub fn poll(&mut self, now: Instant) -> Vec<PhaseReport> {
        self.reap_lingering(now);
        let lanes: Vec<u64> = self.phases.keys().copied().collect();
        lanes
            .into_iter()
            .filter_map(|lane| self.poll_lane(lane, now))
            .collect()
    }

    fn poll_lane(&mut self, lane: u64, now: Instant) -> Option<PhaseReport> {
        let timeout = self.timeout;
        let phase = self.phases.get_mut(&lane)?;
        let phase_started = phase.started;
        let running = phase.running.as_mut()?;
        drain(running);
        let exited = peek_exit(&running.child);
        let status = match exited {
            Some(raw) => Some(if running.term_sent.is_some() {
                HookStatus::TimedOut
            } else {
                raw
            }),
            None => {
                if running.term_sent.is_none() && now >= running.deadline {
                    log::warn!(
                        "hook {} ran past {} s: SIGTERM to its process group",
                        running.name,
                        timeout.as_secs_f64()
                    );
                    signal_group(&running.child, Signal::SIGTERM);
                    signal_tree(running.child.id(), Signal::SIGTERM);
                    running.term_sent = Some(now);
                    None
                } else if running.term_sent.is_some_and(|t| now >= t + KILL_GRACE) {
                    log::warn!(
                        "hook {} ignored SIGTERM: SIGKILL to its process group",
                        running.name
                    );
                    signal_group(&running.child, Signal::SIGKILL);
                    signal_tree(running.child.id(), Signal::SIGKILL);
                    // The kill is certain; its exit is reported at once.
                    Some(HookStatus::TimedOut)
                } else {
                    None
                }
            }
        };
        let status = status?;
        let mut done = phase.running.take()?;
        drain(&mut done);
        let result = HookResult {
            name: done.name.clone(),
            status,
            started_after: done.started.saturating_duration_since(phase_started),
            duration: now.saturating_duration_since(done.started),
            output: tail(&done.output),
        };
        phase.report.results.push(result);
        // Whatever the hook left in its group goes by its deadline (or now + grace after a
        // timeout); the hook's own zombie keeps the group id reserved until then.
        let (term_at, kill_at) = match done.term_sent {
            Some(t) => (t, t + KILL_GRACE),
            None => (done.deadline, done.deadline + KILL_GRACE),
        };
        // What left the group is ours now (the subreaper): it goes with the group.
        let mut known: Vec<i32> = Vec::new();
        known.extend(
            self.lingering
                .iter()
                .flat_map(|l| l.strays.iter().map(|s| s.0)),
        );
        let strays = adopted_strays(&known);
        if !strays.is_empty() {
            log::info!(
                "hook {} left {} process(es) outside its group; they end with it",
                done.name,
                strays.len()
            );
        }
        self.lingering.push(Lingering {
            child: done.child,
            term_at,
            termed: done.term_sent.is_some(),
            kill_at,
            strays,
        });
        self.write_record();
        self.advance(lane, now)
    }

    fn linger_now(&mut self, child: Child, now: Instant) {
        signal_group(&child, Signal::SIGTERM);
        signal_tree(child.id(), Signal::SIGTERM);
        self.lingering.push(Lingering {
            child,
            term_at: now,
            termed: true,
            kill_at: now + KILL_GRACE,
            strays: Vec::new(),
        });
    }

    fn reap_lingering(&mut self, now: Instant) {
        let before = self.lingering.len();
        self.lingering.retain_mut(|l| {
            if !l.termed && now >= l.term_at {
                signal_group(&l.child, Signal::SIGTERM);
                signal_strays(&l.strays, Signal::SIGTERM);
                l.termed = true;
            }
            if now >= l.kill_at {
                signal_group(&l.child, Signal::SIGKILL);
                signal_strays(&l.strays, Signal::SIGKILL);
                reap_hook(&mut l.child);
                return false;
            }
            reap_strays(&mut l.strays);
            true
        });
        // Orphans a hook left (its background child killed with the group, a grandchild that
        // exited on its own) must not stay zombies of ours.
        reap_adopted_zombies();
        if self.lingering.len() != before {
            self.write_record();
        }
    }

    /// When the runner needs [`HookRunner::poll`] even without SIGCHLD or output.
    pub fn next_deadline(&self) -> Option<Instant> {
        let running = self
            .phases
            .values()
            .filter_map(|p| p.running.as_ref())
            .map(|r| match r.term_sent {
                Some(t) => t + KILL_GRACE,
                None => r.deadline,
            })
            .min();
        let lingering = self
            .lingering
            .iter()
            .map(|l| if l.termed { l.kill_at } else { l.term_at })
            .min();
        match (running, lingering) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// At exit: every hook process group still around gets SIGTERM, then SIGKILL after at
    /// most `grace`.
    pub fn shutdown(&mut self, grace: Duration) {
        let now = Instant::now();
        for (_, phase) in std::mem::take(&mut self.phases) {
            if let Some(r) = phase.running {
                log::warn!("stopping: hook {} is killed", r.name);
                self.linger_now(r.child, now);
            }
        }
        for l in &mut self.lingering {
            if !l.termed {
                signal_group(&l.child, Signal::SIGTERM);
                signal_strays(&l.strays, Signal::SIGTERM);
                l.termed = true;
            }
            l.kill_at = l.kill_at.min(now + grace);
        }
        let end = now + grace;
        while !self.lingering.is_empty() {
            let now = Instant::now();
            // Groups whose members are all gone can be reaped early: nothing left to kill.
            self.lingering.retain_mut(|l| {
                reap_strays(&mut l.strays);
                if now >= l.kill_at || (group_empty(&l.child) && l.strays.is_empty()) {
                    signal_group(&l.child, Signal::SIGKILL);
                    signal_strays(&l.strays, Signal::SIGKILL);
                    reap_hook(&mut l.child);
                    false
                } else {
                    true
                }
            });
            if now >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.write_record();
    }
}

/// A process's start time (clock ticks since boot, /proc/PID/stat field 22): with the pid it
/// names one process for good, where a pid alone may be reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the process groups a record names, when they are still the same ones; returns how
/// many were signalled. The record is removed. A record that is not the daemon's own (not a
/// regular file of its user with mode 0600: someone else wrote it) is not acted on.
fn kill_recorded(path: &Path, uid: u32) -> usize {
    let text = match crate::safe_fs::read_own(path, uid) {
        Ok(Some(text)) => text,
        Ok(None) => return 0,
        Err(why) => {
            log::warn!("{why}");
            let _ = fs::remove_file(path);
            return 0;
        }
    };
    let mut killed = 0;
    for line in text.lines() {
        // A process that left its hook's group: killed alone, if it is still the same one.
        if let Some(rest) = line.strip_prefix("p ") {
            let mut f = rest.split_whitespace();
            if let (Some(pid), Some(start)) = (
                f.next().and_then(|v| v.parse::<i32>().ok()),
                f.next().and_then(|v| v.parse::<u64>().ok()),
            ) {
                if pid > 1 && start_time(pid.unsigned_abs()) == Some(start) {
                    // A process a previous failoverd recorded, checked above to be the same
                    // one (pid and start time).
                    if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                        killed += 1;
                    }
                }
            }
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(pgid), Some(start)) = (
            f.next().and_then(|v| v.parse::<i32>().ok()),
            f.next().and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if pgid <= 1 {
            continue;
        }
        // The leader still exists: it must be the one recorded. Gone: while any member of
        // its group lives, no new process can take that id, so the group is still ours.
        let same = match start_time(pgid.unsigned_abs()) {
            Some(now) => now == start,
            None => true,
        };
        if same {
            // A group a previous failoverd created, checked above.
            if killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    let _ = fs::remove_file(path);
    killed
}

/// The hook at `path`, links resolved, if it and every directory above it are writable by
/// nobody but root or `uid`: its real path and its (device, inode).
fn checked_target(path: &Path, uid: u32) -> Result<(PathBuf, (u64, u64)), String> {
    let target = crate::safe_fs::check_chain(path, uid)?;
    let meta = fs::metadata(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", target.display()));
    }
    Ok((target, (meta.dev(), meta.ino())))
}

/// Makes this process the reaper of its descendants' orphans (Linux), so that a hook's child
/// that calls `setsid` and is orphaned comes to us rather than to init, where it would be
/// out of reach.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            log::warn!(
                "cannot become a child subreaper ({}): a hook's child that leaves its process \
                 group may outlive the hook's timeout",
                io::Error::from(e)
            );
        }
    }
}

/// One process as /proc/PID/stat tells it.
#[derive(Debug, Clone, Copy)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    /// Its process group.
    pgrp: i32,
    zombie: bool,
    start: u64,
}

/// Every process of the system (Linux); empty elsewhere.
fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(ProcInfo {
                pid,
                zombie: f.first() == Some(&"Z"),
                ppid: f.get(1)?.parse().ok()?,
                pgrp: f.get(2)?.parse().ok()?,
                start: f.get(19)?.parse().ok()?,
            })
        })
        .collect()
}

/// Signals every descendant of `root` (by parent links, whatever its group or session).
fn signal_tree(root: u32, sig: Signal) {
    let Ok(root) = i32::try_from(root) else {
        return;
    };
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        tree.extend(all.iter().filter(|q| q.ppid == p).map(|q| q.pid));
        i += 1;
    }
    for pid in tree.into_iter().skip(1) {
        // A descendant of our own hook, found a moment ago; one already gone is no matter.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Processes we adopted that no hook's group holds (a hook's child that left its group, with
/// `setsid` or its own process group, orphaned by the hook's exit) and that are not already
/// tracked (`known`), with their descendants. Orphans still in a hook's group go with that
/// group.
fn adopted_strays(known: &[i32]) -> Vec<(i32, u64)> {
    let (me, own_group) = own_pid_and_group();
    let all = processes();
    let hooks = hook_pids().clone();
    let mut found: Vec<(i32, u64)> = all
        .iter()
        .filter(|p| {
            p.ppid == me
                && p.pgrp != own_group
                && !hooks.contains(&p.pgrp)
                && !hooks.contains(&p.pid)
                && !known.contains(&p.pid)
        })
        .map(|p| (p.pid, p.start))
        .collect();
    let mut i = 0;
    while let Some(&(p, _)) = found.get(i) {
        found.extend(all.iter().filter(|q| q.ppid == p).map(|q| (q.pid, q.start)));
        i += 1;
    }
    found
}

/// Signals the strays that are still the processes recorded (pid and start time).
fn signal_strays(strays: &[(i32, u64)], sig: Signal) {
    for &(pid, start) in strays {
        if start_time(pid.unsigned_abs()) == Some(start) {
            // A process a hook left behind, checked to be the same one.
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Reaps the strays that have exited (those that were our children), forgetting them.
fn reap_strays(strays: &mut Vec<(i32, u64)>) {
    strays.retain(|&(pid, start)| {
        if start_time(pid.unsigned_abs()) != Some(start) {
            return false;
        }
        // WNOHANG on one pid: reaps it only if it is our exited child.
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(_) => false,
            // nix reaps first and decodes the status after: with WNOHANG, a valid flag,
            // EINVAL is a status it has no `Signal` for (a real-time signal), of a child that
            // was reaped all the same.
            Err(nix::errno::Errno::EINVAL) => false,
            // Not our child (ECHILD) or another error: kept while it is the same process.
            Err(_) => true,
        }
    });
}

/// Reaps the zombies we adopted from hooks, whatever their session: children of ours outside
/// our own process group (where the daemon's own children run, each waited for by its
/// owner), that are not a hook still to be waited for through its `Child` ([`HOOK_PIDS`]).
fn reap_adopted_zombies() {
    let (me, own_group) = own_pid_and_group();
    let zombies: Vec<i32> = processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.zombie && p.pgrp != own_group)
        .map(|p| p.pid)
        .collect();
    if zombies.is_empty() {
        return;
    }
    // Locked from here: a hook seen above is listed by now (its spawn holds the lock from
    // before the fork until it is listed), and none is spawned while we reap.
    let hooks = hook_pids();
    for pid in zombies {
        if !hooks.contains(&pid) {
            // WNOHANG on a zombie child of ours that no Child owns (a pid reused since the
            // scan is either not our exited child, and untouched, or a listed hook).
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// This process's id and its process group's.
fn own_pid_and_group() -> (i32, i32) {
    let me = nix::unistd::getpid().as_raw();
    let group = nix::unistd::getpgrp().as_raw();
    (me, group)
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    let fd = fd.as_fd();
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Reads what the hook wrote so far, keeping the tail; closes the pipe at EOF.
fn drain(r: &mut Running) {
    let Some(reader) = r.reader.as_mut() else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                r.reader = None;
                return;
            }
            Ok(n) => {
                r.output.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                if r.output.len() > 2 * OUTPUT_TAIL {
                    let cut = r.output.len() - OUTPUT_TAIL;
                    r.output.drain(..cut);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The tail of a hook's output as text for the log and mail: invalid UTF-8 replaced, and every
/// control character but newline and tab written as an escape (`\0`, `\u{1b}`), so that a hook
/// cannot put NUL bytes in the log or forge log lines with a carriage return.
fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(OUTPUT_TAIL);
    let text = String::from_utf8_lossy(output.get(start..).unwrap_or(&[]));
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Signals the hook's process group (its pid: the hook leads the group).
fn signal_group(child: &Child, sig: Signal) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    // A group id we created (the hook's pid, not yet reaped); a group already empty is no
    // matter.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// Whether only the (zombie) leader is left in the hook's group.
fn group_empty(child: &Child) -> bool {
    // Without /proc scanning there is no portable test; a leader that has exited with every
    // other member gone makes killpg(0) still succeed, so be conservative on other systems.
    #[cfg(target_os = "linux")]
    {
        let Ok(pgid) = i32::try_from(child.id()) else {
            return true;
        };
        let Ok(dir) = fs::read_dir("/proc") else {
            return false;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == pgid {
                continue;
            }
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name (which may contain spaces) start after ") ".
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let pgrp = fields.nth(2).and_then(|f| f.parse::<i32>().ok());
            if pgrp == Some(pgid) {
                return false;
            }
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = child;
        false
    }
}

/// Whether the hook's own process has exited, and how, without reaping it.
///
/// libc's `waitid`, not nix's: nix has none on macOS, and its `WaitStatus` turns the signal
/// number into a `Signal`, failing (EINVAL) on a real-time signal, which `Signaled` reports.
#[allow(unsafe_code)]
fn peek_exit(child: &Child) -> Option<HookStatus> {
    let pid = libc::id_t::from(child.id());
    // SAFETY: `siginfo_t` is a plain C struct (integers and a union of integers and pointers)
    // for which all zeroes is a valid value; `&mut info` is valid for writes of one
    // `siginfo_t` for the call, which is all waitid writes, and the flags are valid for it
    // (WNOWAIT leaves our child waitable for the final reap through its `Child`). The union
    // members read after (the SIGCHLD layout's pid and status) are initialised: zeroed
    // before the call, so that `si_pid` reads 0 if waitid writes nothing (WNOHANG and no
    // child has exited), and written with that layout when a child event is reported.
    let (rc, si_pid, status, code) = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let (si_pid, status) = (info.si_pid(), info.si_status());
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let (si_pid, status) = (info.si_pid, info.si_status);
        (rc, si_pid, status, info.si_code)
    };
    if rc != 0 || si_pid == 0 {
        return None;
    }
    Some(if code == libc::CLD_EXITED {
        HookStatus::Exited(status)
    } else {
        HookStatus::Signaled(status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfailover::failover::Reason;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn hook_dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ipfo-hooks-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn runner(dir: &Path, timeout: Duration) -> HookRunner {
        HookRunner::new(
            dir.to_path_buf(),
            timeout,
            HookEnv {
                peer_ip: "198.51.100.10".into(),
                pairs: "eth0:198.51.100.10".into(),
                extra: Vec::new(),
            },
        )
    }

    /// Drives the runner as the loop would, without a loop: poll every 5 ms.
    fn run_phase(r: &mut HookRunner, phase: HookPhase, limit: Duration) -> PhaseReport {
        let start = Instant::now();
        if let Some(rep) = r.begin(start, phase, Reason::Timeout.as_str()) {
            return rep;
        }
        loop {
            std::thread::sleep(Duration::from_millis(5));
            if let Some(rep) = r.poll(Instant::now()).pop() {
                return rep;
            }
            assert!(
                start.elapsed() < limit,
                "phase still running after {limit:?}"
            );
        }
    }

    #[test]
    fn phases_in_different_lanes_run_side_by_side_each_with_its_variables() {
        let d = hook_dir("lanes");
        let log = d.0.join("log");
        let log = log.to_string_lossy();
        script(
            &d.0,
            "PreAcq-slow",
            &format!("sleep 0.4; echo \"$FAILOVER_ADDRESS\" >> {log}"),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_secs(10));
        let start = Instant::now();
        for lane in 0..4u64 {
            let env = HookEnv {
                extra: vec![(
                    "FAILOVER_ADDRESS".into(),
                    format!("198.51.100.{}", 100 + lane),
                )],
                ..HookEnv::default()
            };
            assert!(r
                .begin_lane(lane, env, start, HookPhase::PreAcq, "unheld")
                .is_none());
        }
        assert_eq!(r.output_sources().len(), 4);
        let mut done = Vec::new();
        while done.len() < 4 {
            std::thread::sleep(Duration::from_millis(5));
            done.extend(r.poll(Instant::now()));
            assert!(start.elapsed() < Duration::from_secs(5), "{done:?}");
        }
        // Side by side: about one hook's time, not four.
        assert!(
            start.elapsed() < Duration::from_millis(1200),
            "{:?}",
            start.elapsed()
        );
        let mut lanes: Vec<u64> = done.iter().map(|rep| rep.lane).collect();
        lanes.sort();
        assert_eq!(lanes, vec![0, 1, 2, 3]);
        assert!(done.iter().all(PhaseReport::ok));
        let mut seen: Vec<String> = std::fs::read_to_string(&*log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                "198.51.100.100",
                "198.51.100.101",
                "198.51.100.102",
                "198.51.100.103"
            ]
        );
    }

    #[test]
    fn runs_in_order_with_the_documented_environment() {
        let d = hook_dir("env");
        let log = d.0.join("log");
        let log = log.to_string_lossy();
        for n in ["PreAcq-2", "PreAcq-1"] {
            script(
                &d.0,
                n,
                &format!(
                    "echo \"$(basename $0) $1 $FAILOVER_EVENT $FAILOVER_PEER_IP $FAILOVER_PEER_IP_PAIRS \
                     $FAILOVER_REASON pwd=$(pwd) pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$ \
                     home=${{HOME:-unset}}\" >> {log}; read x && echo stdin-not-null; echo to-stderr >&2; exit 0"
                ),
                0o755,
            );
        }
        let mut r = runner(&d.0, Duration::from_secs(10));
        let rep = run_phase(&mut r, HookPhase::PreAcq, Duration::from_secs(10));
        assert!(rep.ok(), "{rep:?}");
        assert_eq!(rep.results.len(), 2);
        let text = fs::read_to_string(d.0.join("log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("PreAcq-1 PreAcq PreAcq 198.51.100.10 eth0:198.51.100.10 timeout"),
            "{text}"
        );
        assert!(lines[1].starts_with("PreAcq-2 "), "{text}");
        let dir = fs::canonicalize(&d.0).unwrap();
        assert!(
            lines[0].contains(&format!("pwd={}", dir.display())),
            "{text}"
        );
        assert!(lines[0].contains("home=unset"), "clean environment: {text}");
        // Its own process group: pgid == pid.
        for l in &lines {
            let pgid = l.split("pgid=").nth(1).unwrap().split(' ').next().unwrap();
            let pid = l.split("pid=").nth(1).unwrap().split(' ').next().unwrap();
            assert_eq!(pgid, pid, "{l}");
        }
        assert!(rep.results[0].output.contains("to-stderr"));
        assert!(!rep.results[0].output.contains("stdin-not-null"));
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_failing_hook_is_reported_with_its_output_and_the_next_still_runs() {
        let d = hook_dir("fail");
        script(&d.0, "PostAcq-1", "echo something broke; exit 3", 0o755);
        script(&d.0, "PostAcq-2", "exit 0", 0o755);
        script(&d.0, "PostAcq-3", "this is not executable", 0o644);
        let mut r = runner(&d.0, Duration::from_secs(10));
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(10));
        assert!(!rep.ok());
        assert_eq!(rep.results[0].status, HookStatus::Exited(3));
        assert!(rep.results[0].output.contains("something broke"));
        assert_eq!(rep.results[1].status, HookStatus::Exited(0));
        assert_eq!(rep.skipped.len(), 1);
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_hanging_hook_and_its_children_are_killed_after_the_timeout() {
        let d = hook_dir("hang");
        let pidfile = d.0.join("grandchild.pid");
        script(
            &d.0,
            "Test",
            &format!(
                "trap '' TERM; sleep 1000 & echo $! > {}; wait",
                pidfile.display()
            ),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_millis(300));
        let start = Instant::now();
        let rep = run_phase(&mut r, HookPhase::Test, Duration::from_secs(10));
        assert_eq!(rep.results[0].status, HookStatus::TimedOut);
        // It ignored SIGTERM: SIGKILL came 5 s after.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) + KILL_GRACE, "{took:?}");
        assert!(took < Duration::from_secs(8), "{took:?}");
        let gc: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild (sleep) went with the group.
        r.shutdown(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
        // No signal: only checks for existence.
        let alive = exists(gc);
        assert!(!alive || is_zombie(gc), "grandchild {gc} survived");
    }

    #[test]
    fn a_grandchild_left_behind_by_a_hook_that_exited_is_killed_at_the_timeout() {
        let d = hook_dir("orphan");
        let pidfile = d.0.join("gc.pid");
        script(
            &d.0,
            "PostAcq",
            &format!("sleep 1000 & echo $! > {}; exit 0", pidfile.display()),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_millis(500));
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(5));
        assert!(rep.ok(), "{rep:?}");
        let gc: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(exists(gc), "the grandchild runs until the timeout");
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let _ = r.poll(Instant::now());
            if !exists(gc) || is_zombie(gc) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive = exists(gc) && !is_zombie(gc);
        assert!(!alive, "grandchild {gc} outlived the hook's timeout");
        r.shutdown(Duration::from_secs(1));
    }

    /// Whether `pid` exists (kill with no signal).
    fn exists(pid: i32) -> bool {
        kill(Pid::from_raw(pid), None).is_ok()
    }

    fn is_zombie(pid: i32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
    }

    #[test]
    fn a_child_that_left_the_group_with_setsid_is_killed_at_the_timeout() {
        let d = hook_dir("setsid");
        let pidfile = d.0.join("escaped.pid");
        script(
            &d.0,
            "PostAcq",
            &format!(
                "setsid sleep 1000 & echo $! > {}; exit 0",
                pidfile.display()
            ),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_millis(500));
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(5));
        assert!(rep.ok(), "{rep:?}");
        let pid: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end {
            let _ = r.poll(Instant::now());
            if !exists(pid) || is_zombie(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive = exists(pid) && !is_zombie(pid);
        if alive {
            // Our test's own stray, killed so the test leaves nothing behind.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        assert!(!alive, "the setsid child {pid} outlived the hook's timeout");
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_background_child_killed_with_its_hook_is_reaped_in_the_daemons_own_session() {
        let d = hook_dir("zombie");
        let pidfile = d.0.join("bg.pid");
        // No setsid: the child stays in the hook's group, in our session.
        script(
            &d.0,
            "PostAcq",
            &format!("sleep 1000 & echo $! > {}; sleep 1000", pidfile.display()),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_millis(300));
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(8));
        assert_eq!(rep.results[0].status, HookStatus::TimedOut);
        let bg: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with the group, orphaned to us (the subreaper): reaped as the loop polls,
        // not left a zombie for the daemon's life.
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end && exists(bg) {
            let _ = r.poll(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = exists(bg);
        if left && !is_zombie(bg) {
            // Our test's own child, killed so the test leaves nothing behind.
            let _ = kill(Pid::from_raw(bg), Signal::SIGKILL);
        }
        assert!(
            !left,
            "the hook's background child {bg} is still here (zombie: {})",
            is_zombie(bg)
        );
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn reaping_orphans_never_takes_the_exit_of_a_hook_another_runner_waits_for() {
        // One runner reaps orphans on every poll, as fast as it can, while another runs hooks
        // that exit at once: each of those exits is still the second runner's to read.
        let d = hook_dir("steal");
        script(&d.0, "PostAcq", "exit 7", 0o755);
        let idle = hook_dir("steal-idle");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reaper = {
            let stop = std::sync::Arc::clone(&stop);
            let dir = idle.0.clone();
            std::thread::spawn(move || {
                let mut r = runner(&dir, Duration::from_secs(5));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = r.poll(Instant::now());
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let mut r = runner(&d.0, Duration::from_secs(5));
        for _ in 0..50 {
            let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(5));
            assert_eq!(rep.results[0].status, HookStatus::Exited(7), "{rep:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reaper.join().unwrap();
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_child_that_left_the_group_for_one_of_its_own_is_killed_at_the_timeout() {
        let d = hook_dir("setpgid");
        let pidfile = d.0.join("escaped.pid");
        // A process group of its own in our session (as job control makes one).
        script(
            &d.0,
            "PostAcq",
            &format!(
                "python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(1000)' & \
                 echo $! > {}; sleep 0.2; exit 0",
                pidfile.display()
            ),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_millis(500));
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(5));
        assert!(rep.ok(), "{rep:?}");
        let pid: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end && exists(pid) {
            let _ = r.poll(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive = exists(pid) && !is_zombie(pid);
        if alive {
            // Our test's own stray, killed so the test leaves nothing behind.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        assert!(
            !alive,
            "the child {pid} in a group of its own outlived the timeout"
        );
        assert!(!exists(pid), "the child {pid} was left a zombie");
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_hook_swapped_while_another_runs_is_not_run() {
        let d = hook_dir("swap");
        let ran = d.0.join("ran");
        script(&d.0, "PreAcq-1", "sleep 0.3", 0o755);
        script(
            &d.0,
            "PreAcq-2",
            &format!("echo checked > {}", ran.display()),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_secs(5));
        assert!(r
            .begin(Instant::now(), HookPhase::PreAcq, Reason::Timeout.as_str())
            .is_none());
        // While PreAcq-1 sleeps, PreAcq-2 is replaced by another file.
        let other = d.0.join(".new");
        fs::write(
            &other,
            format!("#!/bin/sh\necho swapped > {}\n", ran.display()),
        )
        .unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&other, d.0.join("PreAcq-2")).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        let rep = loop {
            if let Some(rep) = r.poll(Instant::now()).pop() {
                break rep;
            }
            assert!(Instant::now() < end, "the phase never ended");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!ran.exists(), "a hook that changed after its check ran");
        let second = &rep.results[1];
        assert!(
            matches!(&second.status, HookStatus::SpawnFailed(why) if why.contains("changed after it was checked")),
            "{rep:?}"
        );
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn hooks_in_or_below_directories_others_can_write_are_refused() {
        let d = hook_dir("chain");
        // A hook that links into a directory another user owns.
        let foreign = d.0.join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::set_permissions(&foreign, fs::Permissions::from_mode(0o755)).unwrap();
        let hooks = d.0.join("hooks");
        fs::create_dir(&hooks).unwrap();
        fs::set_permissions(&hooks, fs::Permissions::from_mode(0o755)).unwrap();
        script(&foreign, "target", "exit 0", 0o755);
        std::os::unix::fs::symlink(foreign.join("target"), hooks.join("PreAcq-link")).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
            let mut r = runner(&hooks, Duration::from_secs(5));
            let rep = run_phase(&mut r, HookPhase::PreAcq, Duration::from_secs(5));
            assert!(
                matches!(&rep.results[0].status, HookStatus::Refused(why) if why.contains("owned by uid 65534")),
                "{rep:?}"
            );
        }
        // A hook directory below a directory others can write (not sticky).
        let open = d.0.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let inner = open.join("hooks");
        fs::create_dir(&inner).unwrap();
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o755)).unwrap();
        script(&inner, "PreAcq", "exit 0", 0o755);
        let mut r = runner(&inner, Duration::from_secs(5));
        let rep = run_phase(&mut r, HookPhase::PreAcq, Duration::from_secs(5));
        let why = rep.dir_refused.clone().unwrap_or_default();
        assert!(why.contains("writable by group and others"), "{rep:?}");
        assert!(!rep.ok());
    }

    #[test]
    fn a_hook_directory_that_vanished_is_an_error_not_no_hooks() {
        let d = hook_dir("vanish");
        script(&d.0, "Test", "exit 0", 0o755);
        let mut r = runner(&d.0, Duration::from_secs(5));
        let moved = d.0.with_extension("away");
        fs::rename(&d.0, &moved).unwrap();
        let rep = run_phase(&mut r, HookPhase::Test, Duration::from_secs(5));
        fs::rename(&moved, &d.0).unwrap();
        assert!(
            !rep.ok(),
            "a vanished Test directory must refuse, not pass: {rep:?}"
        );
        assert!(
            rep.dir_refused
                .as_deref()
                .is_some_and(|w| w.contains("vanished")),
            "{rep:?}"
        );
    }

    #[test]
    fn hook_output_is_escaped_for_the_log() {
        assert_eq!(tail(b"ok\n\tindented\n"), "ok\n\tindented\n");
        assert_eq!(tail(b"a\0b\rc\x1b[31m"), "a\\u{0}b\\rc\\u{1b}[31m");
        assert_eq!(tail(&[0u8; 4096]).matches("\\u{0}").count(), 4096);
        assert!(!tail(&[0u8; 10]).contains('\0'));
    }

    #[test]
    fn unsafe_hooks_and_directories_are_refused() {
        let d = hook_dir("unsafe");
        script(&d.0, "PreRel-1", "touch ran-1", 0o757);
        script(&d.0, "PreRel-2", "touch ran-2", 0o755);
        // chmod after writing: umask may have masked the bits.
        fs::set_permissions(d.0.join("PreRel-1"), fs::Permissions::from_mode(0o757)).unwrap();
        let mut r = runner(&d.0, Duration::from_secs(5));
        let rep = run_phase(&mut r, HookPhase::PreRel, Duration::from_secs(5));
        assert!(!rep.ok());
        assert!(
            matches!(rep.results[0].status, HookStatus::Refused(_)),
            "{rep:?}"
        );
        assert!(!d.0.join("ran-1").exists());
        assert!(d.0.join("ran-2").exists());
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o777)).unwrap();
        let rep = run_phase(&mut r, HookPhase::PreRel, Duration::from_secs(5));
        assert!(
            rep.dir_refused
                .as_deref()
                .is_some_and(|w| w.contains("others")),
            "{rep:?}"
        );
        assert!(rep.results.is_empty());
        r.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn groups_left_by_a_killed_daemon_are_killed_at_the_next_start() {
        let d = hook_dir("record");
        let pidfile = d.0.join("gc.pid");
        let record = d.0.join("state").join("failoverd.hooks");
        script(
            &d.0,
            "PostAcq",
            &format!("sleep 1000 & echo $! > {}; exit 0", pidfile.display()),
            0o755,
        );
        let mut r = runner(&d.0, Duration::from_secs(60)).with_record(record.clone());
        let rep = run_phase(&mut r, HookPhase::PostAcq, Duration::from_secs(5));
        assert!(rep.ok());
        let gc: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(record.exists(), "the lingering group is recorded");
        // The daemon dies without dealing with it (SIGKILL): the runner is just forgotten.
        std::mem::forget(r);
        assert!(exists(gc));
        // The next start kills what the record names.
        let r2 = runner(&d.0, Duration::from_secs(60)).with_record(record.clone());
        std::thread::sleep(Duration::from_millis(100));
        let alive = exists(gc) && !is_zombie(gc);
        assert!(!alive, "the grandchild {gc} survived the restart");
        assert!(!record.exists());
        drop(r2);
    }

    #[test]
    fn a_missing_directory_means_no_hooks() {
        let mut r = runner(
            Path::new("/nonexistent/ipfailover/198.51.100.10"),
            Duration::from_secs(1),
        );
        let rep = r
            .begin(Instant::now(), HookPhase::Test, Reason::Timeout.as_str())
            .unwrap();
        assert!(rep.ok() && rep.results.is_empty());
    }
}
