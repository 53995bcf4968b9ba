//! Address conflict detection, the part both daemons share: a round of ARP probes (RFC 5227,
//! sender 0.0.0.0) or DAD neighbour solicitations, and the answers heard.
//!
//! Pure, in the shape of systemd's `sd-ipv4acd`: the shell sends the probes this module asks
//! for and hands in the answers; the round decides once every probe went out and the last one
//! had time to be answered. RFC 5227 spreads its probes over seconds; a failover daemon must
//! decide within a fraction of its timeout, so a round spreads [`PROBES`] probes over a window
//! the caller chooses (docs/handover.md, "Probes").

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A link-layer (MAC) address.
pub type Mac = [u8; 6];

/// Probes sent in a round: one lost probe (or answer) must not matter.
pub const PROBES: u32 = 3;

/// The probes before a takeover are spread over the last 30 % of the timeout (at most
/// [`PROBE_WINDOW_MAX`]); the last one leaves a third of that for the answer.
pub const PROBE_WINDOW_PERCENT: u32 = 30;

/// The longest probe window: an answer on a LAN takes milliseconds, not seconds.
pub const PROBE_WINDOW_MAX: Duration = Duration::from_secs(1);

/// The shortest round that is not a takeover's: a 10 ms pair does not broadcast 300 probes a
/// second while it waits.
pub const ROUND_MIN: Duration = Duration::from_millis(100);

/// RFC 5227's DEFEND_INTERVAL: an address in conflict is defended at most this often.
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);

/// The probe window before a takeover for a given timeout.
pub fn window(timeout: Duration) -> Duration {
    (timeout * PROBE_WINDOW_PERCENT / 100).min(PROBE_WINDOW_MAX)
}

/// A round that is not a takeover's (a conflict's, a manual takeover's, a watch): the probe
/// window, but not shorter than [`ROUND_MIN`].
pub fn slow_window(timeout: Duration) -> Duration {
    window(timeout).max(ROUND_MIN)
}

/// A round of probes: when it must decide, and what it sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Round {
    /// The decision is due at this instant (the deadline it guards), and not before a third
    /// of the window after the last probe.
    decide_at: Instant,
    /// Over how long its probes are spread.
    window: Duration,
    sent: u32,
    /// When the first and the last probe went out.
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Round {
    /// A round that decides at `decide_at`, its probes spread over the `window` before it.
    pub fn new(decide_at: Instant, window: Duration) -> Round {
        Round {
            decide_at,
            window,
            sent: 0,
            first_sent: None,
            last_sent: None,
        }
    }

    /// A round that starts now and decides one `window` later.
    pub fn starting(now: Instant, window: Duration) -> Round {
        Round::new(now + window, window)
    }

    /// The instant it guards.
    pub fn decide_at(&self) -> Instant {
        self.decide_at
    }

    fn gap(&self) -> Duration {
        self.window / PROBES
    }

    /// When the next probe is due, if one is still to go.
    pub fn next_probe(&self) -> Option<Instant> {
        if self.sent >= PROBES {
            return None;
        }
        let planned = self
            .decide_at
            .checked_sub(self.window)
            .unwrap_or(self.decide_at)
            + self.gap() * self.sent;
        Some(match self.last_sent {
            // After a stall the probes are still spread out: one lost probe must not matter.
            Some(last) => planned.max(last + self.gap()),
            None => planned,
        })
    }

    /// When the round may decide: every probe sent, the deadline reached, and a third of the
    /// window given to the last probe's answer.
    pub fn decision(&self) -> Option<Instant> {
        match (self.sent >= PROBES, self.last_sent) {
            (true, Some(last)) => Some(self.decide_at.max(last + self.gap())),
            _ => None,
        }
    }

    /// Whether a probe is due at `now`; if so it counts as sent.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.next_probe().is_some_and(|t| now >= t) {
            self.sent += 1;
            self.first_sent.get_or_insert(now);
            self.last_sent = Some(now);
            true
        } else {
            false
        }
    }

    /// Whether the round may decide at `now`.
    pub fn decided(&self, now: Instant) -> bool {
        self.decision().is_some_and(|t| now >= t)
    }

    /// When the round next needs a look: its next probe, else its decision.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_probe().or_else(|| self.decision())
    }

    /// When its first probe went out: answers from then on count for it.
    pub fn first_sent(&self) -> Option<Instant> {
        self.first_sent
    }
}

/// The answers heard for a set of addresses: for each, the latest answer from another host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Answers {
    latest: BTreeMap<IpAddr, (Instant, Mac)>,
}

impl Answers {
    /// Nothing heard yet.
    pub fn new() -> Answers {
        Answers::default()
    }

    /// Records an answer for `addr` from `mac` at `now`.
    pub fn record(&mut self, now: Instant, addr: IpAddr, mac: Mac) {
        self.latest.insert(addr, (now, mac));
    }

    /// The latest answer for `addr`, if any.
    pub fn latest(&self, addr: IpAddr) -> Option<(Instant, Mac)> {
        self.latest.get(&addr).copied()
    }

    /// Who answered for `addr` at or after `since`, if anyone.
    pub fn since(&self, addr: IpAddr, since: Option<Instant>) -> Option<Mac> {
        let since = since?;
        self.latest
            .get(&addr)
            .filter(|(t, _)| *t >= since)
            .map(|(_, mac)| *mac)
    }

    /// Who answered for `addr` during `round` (from its first probe on), if anyone.
    pub fn in_round(&self, addr: IpAddr, round: &Round) -> Option<Mac> {
        self.since(addr, round.first_sent())
    }

    /// Forgets everything heard of `addr`.
    pub fn forget(&mut self, addr: IpAddr) {
        self.latest.remove(&addr);
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_round_spreads_its_probes_and_decides_after_the_last_answer_window() {
        let t0 = Instant::now();
        let mut r = Round::new(t0 + ms(300), ms(300));
        assert_eq!(r.next_probe(), Some(t0));
        assert!(r.poll(t0));
        assert!(!r.poll(t0), "one probe per gap");
        assert_eq!(r.next_probe(), Some(t0 + ms(100)));
        assert!(r.poll(t0 + ms(100)));
        assert!(r.poll(t0 + ms(200)));
        assert_eq!(r.next_probe(), None);
        assert_eq!(r.decision(), Some(t0 + ms(300)));
        assert!(!r.decided(t0 + ms(299)));
        assert!(r.decided(t0 + ms(300)));
        assert_eq!(r.first_sent(), Some(t0));
    }

    #[test]
    fn after_a_stall_the_probes_are_still_spread_and_the_answer_waited_for() {
        let t0 = Instant::now();
        let mut r = Round::new(t0 + ms(300), ms(300));
        // Woken a second late: the first probe goes, the others follow a gap apart.
        let late = t0 + ms(1000);
        assert!(r.poll(late));
        assert_eq!(r.next_probe(), Some(late + ms(100)));
        assert!(r.poll(late + ms(100)));
        assert!(r.poll(late + ms(200)));
        assert_eq!(r.decision(), Some(late + ms(300)));
    }

    #[test]
    fn answers_count_from_the_rounds_first_probe() {
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        let mut answers = Answers::new();
        answers.record(t0, a, [1; 6]);
        let mut r = Round::new(t0 + ms(400), ms(300));
        assert!(r.poll(t0 + ms(100)));
        assert_eq!(answers.in_round(a, &r), None, "heard before the round");
        answers.record(t0 + ms(150), a, [2; 6]);
        assert_eq!(answers.in_round(a, &r), Some([2; 6]));
        answers.forget(a);
        assert_eq!(answers.latest(a), None);
        assert_eq!(mac_text(&[0, 1, 0xab, 3, 4, 0xff]), "00:01:ab:03:04:ff");
    }

    #[test]
    fn windows_follow_the_timeout_within_bounds() {
        assert_eq!(window(ms(300)), ms(90));
        assert_eq!(window(ms(10_000)), PROBE_WINDOW_MAX);
        assert_eq!(slow_window(ms(30)), ROUND_MIN);
    }
}
