//! The service manager's side of the loop (systemd's `sd_notify(3)` protocol): `READY=1` once
//! the daemon serves, `STATUS=` with its state in one line whenever that line changes,
//! `RELOADING=1` (with `MONOTONIC_USEC`) and `READY=1` around a SIGHUP, `STOPPING=1` at the
//! first stop signal, and `WATCHDOG=1` from the loop while it turns.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. The watchdog is on when
//! `WATCHDOG_USEC` is set and `WATCHDOG_PID`, if set, is this process: the loop then pings at
//! half that period, from the end of a turn, so a loop that stops turning stops pinging and
//! systemd restarts the daemon (docs/failoverd.md, "Under systemd").

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The environment variable that makes a debug build's loop hang on purpose, this many
/// milliseconds after it started: how the tests check that the watchdog stops. A release
/// build does not read it.
#[cfg(debug_assertions)]
pub const TEST_HANG_AFTER_MS: &str = "IPFO_TEST_HANG_AFTER_MS";

/// What the service manager has been told, and when the watchdog is pinged next.
#[derive(Debug)]
pub struct ServiceManager {
    /// `NOTIFY_SOCKET` is set: there is someone to tell.
    on: bool,
    /// The watchdog's ping period (half of `WATCHDOG_USEC`), when it is on.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    /// `READY=1` was sent (and not taken back by a reload).
    ready: bool,
    /// The last `STATUS=` line sent (or to be sent with `READY=1`).
    status: String,
    /// A failed notification was logged as a warning (the next ones at debug level).
    failure_told: bool,
    /// A debug build's hang on purpose ([`TEST_HANG_AFTER_MS`]).
    #[cfg(debug_assertions)]
    hang_at: Option<Instant>,
}

impl ServiceManager {
    /// What the environment says, at the loop's start `now`.
    pub(crate) fn from_env(now: Instant) -> ServiceManager {
        let on = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let ping_every = sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2);
        if let Some(every) = ping_every {
            log::info!(
                "systemd's watchdog is on: the loop tells it that it turns every {} ms",
                every.as_millis()
            );
        }
        ServiceManager {
            on,
            ping_every,
            next_ping: ping_every.map(|_| now),
            ready: false,
            status: String::new(),
            failure_told: false,
            #[cfg(debug_assertions)]
            hang_at: std::env::var(TEST_HANG_AFTER_MS)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| now + Duration::from_millis(ms)),
        }
    }

    /// The daemon serves (its configuration read, its sockets bound, its control socket
    /// listening): `READY=1`, with the status line.
    pub(crate) fn ready(&mut self) {
        self.ready = true;
        let line = self.status.clone();
        self.send(&[NotifyState::Ready, NotifyState::Status(&line)]);
    }

    /// The state in one line: sent when it differs from the last one (before `READY=1`, kept
    /// to go with it).
    pub(crate) fn status(&mut self, line: String) {
        if line == self.status {
            return;
        }
        self.status = line;
        if self.ready {
            let line = self.status.clone();
            self.send(&[NotifyState::Status(&line)]);
        }
    }

    /// SIGHUP: the configuration is read again (`RELOADING=1`, with the monotonic time that
    /// `Type=notify-reload` asks for).
    pub(crate) fn reloading(&mut self) {
        if !self.on {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(usec) => self.send(&[NotifyState::Reloading, usec]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// The reload is done, taken or refused: `READY=1` again.
    pub(crate) fn reloaded(&mut self) {
        if self.ready {
            self.send(&[NotifyState::Ready]);
        }
    }

    /// The first stop signal: `STOPPING=1`.
    pub(crate) fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// When the loop must turn for the watchdog (or, in a debug build, to hang on purpose).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        #[cfg(debug_assertions)]
        if let Some(at) = self.hang_at {
            return Some(self.next_ping.map_or(at, |p| p.min(at)));
        }
        self.next_ping
    }

    /// The end of a turn: the loop turns, so the watchdog is pinged if its time has come.
    pub(crate) fn turned(&mut self, now: Instant) {
        #[cfg(debug_assertions)]
        if self.hang_at.is_some_and(|at| now >= at) {
            hang();
        }
        if let (Some(every), Some(at)) = (self.ping_every, self.next_ping) {
            if now >= at {
                self.next_ping = Some(now + every);
                self.send(&[NotifyState::Watchdog]);
            }
        }
    }

    fn send(&mut self, states: &[NotifyState]) {
        if !self.on {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            if self.failure_told {
                log::debug!("cannot notify systemd (NOTIFY_SOCKET): {e}");
            } else {
                self.failure_told = true;
                log::warn!(
                    "cannot notify systemd (NOTIFY_SOCKET): {e}; readiness, status and the \
                     watchdog's pings may not arrive"
                );
            }
        }
    }
}

/// A debug build's loop stuck on purpose ([`TEST_HANG_AFTER_MS`]): it never turns again,
/// as a loop caught in a bug would not; only a signal's default action (SIGKILL, or the
/// SIGABRT of systemd's watchdog) ends it.
#[cfg(debug_assertions)]
fn hang() -> ! {
    log::warn!("{TEST_HANG_AFTER_MS}: the loop hangs here, on purpose (a test of the watchdog)");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(now: Instant) -> ServiceManager {
        ServiceManager {
            on: false,
            ping_every: Some(Duration::from_millis(500)),
            next_ping: Some(now),
            ready: false,
            status: String::new(),
            failure_told: false,
            #[cfg(debug_assertions)]
            hang_at: None,
        }
    }

    #[test]
    fn the_watchdog_is_pinged_at_half_its_period_from_the_turns() {
        let t0 = Instant::now();
        let mut sm = quiet(t0);
        assert_eq!(sm.next_deadline(), Some(t0));
        sm.turned(t0);
        assert_eq!(sm.next_deadline(), Some(t0 + Duration::from_millis(500)));
        // A turn before it is due changes nothing; a late one pings and counts from itself.
        sm.turned(t0 + Duration::from_millis(100));
        assert_eq!(sm.next_deadline(), Some(t0 + Duration::from_millis(500)));
        sm.turned(t0 + Duration::from_millis(900));
        assert_eq!(sm.next_deadline(), Some(t0 + Duration::from_millis(1400)));
    }
}
