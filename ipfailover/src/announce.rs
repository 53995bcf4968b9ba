//! When to repeat an announcement (gratuitous ARP, unsolicited neighbour advertisement).
//!
//! One announcement can be lost, and a cache that saw the old owner a moment ago may still
//! be deciding; so each announcement is a round: twice at once, then spread out.

use std::time::{Duration, Instant};

/// Offsets of the announcements of a round, from its start.
pub const ROUND_MS: [u64; 7] = [0, 0, 50, 250, 1000, 3000, 10_000];

/// A round of announcements in progress, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceRound {
    round: Option<(Instant, usize)>,
}

impl AnnounceRound {
    /// No round.
    pub fn new() -> AnnounceRound {
        AnnounceRound::default()
    }

    /// Starts a round at `now` (replacing one under way).
    pub fn start(&mut self, now: Instant) {
        self.round = Some((now, 0));
    }

    /// Stops the round (the addresses are going away).
    pub fn stop(&mut self) {
        self.round = None;
    }

    /// How many announcements are due at `now`; they are counted as sent.
    pub fn due(&mut self, now: Instant) -> usize {
        let Some((start, mut step)) = self.round else {
            return 0;
        };
        let first = step;
        while let Some(ms) = ROUND_MS.get(step) {
            if now < start + Duration::from_millis(*ms) {
                break;
            }
            step += 1;
        }
        self.round = (step < ROUND_MS.len()).then_some((start, step));
        step - first
    }

    /// When the next announcement of the round is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (start, step) = self.round?;
        ROUND_MS
            .get(step)
            .map(|ms| start + Duration::from_millis(*ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_twice_at_once_then_spread_out() {
        let t0 = Instant::now();
        let mut r = AnnounceRound::new();
        assert_eq!(r.due(t0), 0);
        r.start(t0);
        assert_eq!(r.due(t0), 2);
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(r.due(t0 + Duration::from_millis(49)), 0);
        // A late wake-up sends what it missed once each, not more.
        assert_eq!(r.due(t0 + Duration::from_millis(1500)), 3);
        assert_eq!(r.due(t0 + Duration::from_secs(60)), 2);
        assert_eq!(r.next_deadline(), None);
        r.start(t0);
        r.stop();
        assert_eq!(r.due(t0 + Duration::from_secs(1)), 0);
    }
}
