//! The daemons' clock: monotonic, and counting the time the host was suspended.
//!
//! Rust's `Instant` reads `CLOCK_MONOTONIC` on Linux and `CLOCK_UPTIME_RAW` on macOS: neither
//! advances while the host sleeps. A deadline that decides holding must: a group member whose
//! lease ran out in etcd while its host was suspended must see its deadline as passed when it
//! wakes, not a suspend's length later (docs/groups.md, "Deadlines and suspend"). So the
//! loop's `now` is `Instant::now()` plus the time spent suspended since the process started:
//! the growth of `CLOCK_BOOTTIME - CLOCK_MONOTONIC` on Linux, of `CLOCK_MONOTONIC -
//! CLOCK_UPTIME_RAW` on macOS (where `CLOCK_MONOTONIC` counts sleep). Everything the loop
//! times is an `Instant` of this clock, so intervals stay intervals and deadlines count the
//! suspend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// The clock that counts a suspend, and the one `Instant` reads.
#[cfg(target_os = "linux")]
const CLOCKS: (ClockId, ClockId) = (ClockId::CLOCK_BOOTTIME, ClockId::CLOCK_MONOTONIC);
#[cfg(target_os = "macos")]
const CLOCKS: (ClockId, ClockId) = (
    ClockId::CLOCK_MONOTONIC,
    ClockId::from_raw(libc::CLOCK_UPTIME_RAW),
);

/// Time spent suspended since the host booted, as far as the two clocks tell.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn suspended_since_boot() -> Duration {
    let read = |c: ClockId| {
        clock_gettime(c)
            .map(Duration::from)
            .unwrap_or(Duration::ZERO)
    };
    let (with, without) = (read(CLOCKS.0), read(CLOCKS.1));
    with.saturating_sub(without)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn suspended_since_boot() -> Duration {
    Duration::ZERO
}

/// The suspended time already counted when the process first read the clock.
fn base() -> Duration {
    static BASE: OnceLock<Duration> = OnceLock::new();
    *BASE.get_or_init(suspended_since_boot)
}

/// Now, on the clock that counts a suspend.
pub fn now() -> Instant {
    let instant = Instant::now();
    instant + suspended()
}

/// How long the host has been suspended since the process started. It only grows: the two
/// clocks are read one after the other, so a reading may come out a few microseconds short
/// of the one before, and the largest so far is what counts.
pub fn suspended() -> Duration {
    static MOST: AtomicU64 = AtomicU64::new(0);
    let read = suspended_since_boot().saturating_sub(base());
    let nanos = u64::try_from(read.as_nanos()).unwrap_or(u64::MAX);
    let most = MOST.fetch_max(nanos, Ordering::Relaxed).max(nanos);
    Duration::from_nanos(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_runs_with_the_monotonic_clock_while_nothing_is_suspended() {
        let a = now();
        std::thread::sleep(Duration::from_millis(20));
        let b = now();
        let gap = b - a;
        assert!(
            gap >= Duration::from_millis(20) && gap < Duration::from_secs(2),
            "{gap:?}"
        );
        // No suspend happens during a test: the two clocks agree to well under a millisecond
        // (they are read one after the other).
        assert!(suspended() < Duration::from_millis(5), "{:?}", suspended());
        assert!(now() >= b);
    }
}
