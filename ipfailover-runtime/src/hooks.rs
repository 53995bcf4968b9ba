//! The hook runner as the loop sees it: the running hook's output pipe watched, SIGCHLD and
//! the runner's deadlines turned into polls, and every finished phase logged and counted here,
//! once, before its driver hears of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfailover::failover::HookPhase;
use ipfailover_os::hooks::{HookEnv, HookRunner, HookStatus, PhaseReport};
use mio::{Interest, Registry, Token};

use crate::status::Dirty;

/// The running hook's output pipe.
pub(crate) const HOOK_OUTPUT: Token = Token(3);

/// At exit, how long hooks still running get between SIGTERM and SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The daemon's hooks, if it runs any.
#[derive(Debug)]
pub struct Hooks {
    registry: Registry,
    runner: Option<HookRunner>,
    /// The output pipes registered with the poll, by the runner's hook number.
    sources: Vec<(u64, i32)>,
    /// The pipe was readable or a child exited: poll the runner this turn.
    due: bool,
    runs: u64,
    failed: u64,
    dirty: Dirty,
}

impl Hooks {
    pub(crate) fn new(registry: Registry, dirty: Dirty) -> Hooks {
        Hooks {
            registry,
            runner: None,
            sources: Vec::new(),
            due: false,
            runs: 0,
            failed: 0,
            dirty,
        }
    }

    /// Runs hooks from `dir`, each for at most `timeout`, keeping the record of live hook
    /// process groups in `record` (and first killing what a killed predecessor recorded).
    pub fn start(&mut self, dir: PathBuf, timeout: Duration, env: HookEnv, record: PathBuf) {
        self.runner = Some(HookRunner::new(dir, timeout, env).with_record(record));
    }

    /// New settings (SIGHUP); a phase under way finishes with the old ones.
    pub fn reconfigure(&mut self, dir: PathBuf, timeout: Duration, env: HookEnv) {
        if let Some(r) = self.runner.as_mut() {
            r.reconfigure(dir, timeout, env);
        }
    }

    /// New variables for the next phase.
    pub fn set_env(&mut self, env: HookEnv) {
        if let Some(r) = self.runner.as_mut() {
            r.set_env(env);
        }
    }

    /// The hook directory, if hooks run.
    pub fn dir(&self) -> Option<&Path> {
        self.runner.as_ref().map(HookRunner::dir)
    }

    /// Starts the hooks of a phase. When there is nothing to run, the phase's report comes
    /// back at once (logged and counted, like every report); otherwise the driver hears of
    /// it through [`crate::Driver::handle_hooks_done`].
    pub fn begin(
        &mut self,
        now: Instant,
        phase: HookPhase,
        reason: &'static str,
    ) -> Option<PhaseReport> {
        let report = match self.runner.as_mut() {
            Some(r) => r.begin(now, phase, reason),
            None => Some(PhaseReport {
                lane: 0,
                phase,
                reason,
                results: Vec::new(),
                skipped: Vec::new(),
                dir_refused: None,
                duration: Duration::ZERO,
            }),
        };
        if let Some(r) = &report {
            self.record(r);
        }
        self.watch_output();
        report
    }

    /// Starts the hooks of a phase in `lane`, telling them `env`: lanes run side by side (a
    /// group's addresses each have one). Like [`Hooks::begin`] otherwise.
    pub fn begin_lane(
        &mut self,
        lane: u64,
        env: HookEnv,
        now: Instant,
        phase: HookPhase,
        reason: &'static str,
    ) -> Option<PhaseReport> {
        let report = match self.runner.as_mut() {
            Some(r) => r.begin_lane(lane, env, now, phase, reason),
            None => Some(PhaseReport {
                lane,
                phase,
                reason,
                results: Vec::new(),
                skipped: Vec::new(),
                dir_refused: None,
                duration: Duration::ZERO,
            }),
        };
        if let Some(r) = &report {
            self.record(r);
        }
        self.watch_output();
        report
    }

    /// Hooks run, and those that failed, timed out or were refused, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (self.runs, self.failed)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.runner.as_ref().and_then(HookRunner::next_deadline)
    }

    /// The output pipe was readable, or a child exited.
    pub(crate) fn wake(&mut self) {
        self.due = true;
    }

    /// A phase's report if one ended by `now` (logged and counted).
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<PhaseReport> {
        let due = std::mem::take(&mut self.due) || self.next_deadline().is_some_and(|d| now >= d);
        if !due {
            return Vec::new();
        }
        let reports = self
            .runner
            .as_mut()
            .map(|r| r.poll(now))
            .unwrap_or_default();
        for r in &reports {
            self.record(r);
        }
        self.watch_output();
        reports
    }

    /// At exit: what still runs gets SIGTERM, then SIGKILL.
    pub(crate) fn shutdown(&mut self) {
        if let Some(r) = self.runner.as_mut() {
            r.shutdown(SHUTDOWN_GRACE);
        }
    }

    /// Keeps the poll watching the running hooks' output pipes (all under one token: any of
    /// them readable polls the runner, which drains them all).
    fn watch_output(&mut self) {
        let now = self
            .runner
            .as_ref()
            .map(HookRunner::output_sources)
            .unwrap_or_default();
        if now == self.sources {
            return;
        }
        for (n, fd) in std::mem::take(&mut self.sources) {
            if now.contains(&(n, fd)) {
                self.sources.push((n, fd));
                continue;
            }
            // The old pipe may be closed already (the kernel then forgot it): ignore errors.
            let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        for (n, fd) in now {
            if self.sources.contains(&(n, fd)) {
                continue;
            }
            match self.registry.register(
                &mut mio::unix::SourceFd(&fd),
                HOOK_OUTPUT,
                Interest::READABLE,
            ) {
                Ok(()) => self.sources.push((n, fd)),
                Err(e) => log::warn!("cannot watch a hook's output: {e}"),
            }
        }
    }

    /// Logs and counts a finished phase.
    fn record(&mut self, report: &PhaseReport) {
        let phase = report.phase.as_str();
        if let Some(why) = &report.dir_refused {
            log::error!("{phase} hooks not run: {why}");
            self.failed += 1;
        }
        for (name, why) in &report.skipped {
            log::warn!("hook {name} skipped: {why}");
        }
        for r in &report.results {
            if !matches!(r.status, HookStatus::Refused(_)) {
                self.runs += 1;
            }
            if r.status.ok() {
                log::info!("hook {} ok in {} ms", r.name, r.duration.as_millis());
            } else {
                self.failed += 1;
                let output = r.output.trim_end();
                log::warn!(
                    "hook {} failed ({}) after {} ms{}{}",
                    r.name,
                    r.status,
                    r.duration.as_millis(),
                    if output.is_empty() {
                        ""
                    } else {
                        "; its output ends:\n"
                    },
                    output
                );
            }
        }
        self.dirty.mark();
    }
}
