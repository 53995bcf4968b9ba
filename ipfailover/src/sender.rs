//! heartbeatd's schedule: when to send heartbeats, goodbyes and announcements.
//!
//! Same shape as [`crate::failover`]: no clock, no socket. Heartbeats are due on a fixed grid
//! `start + n × interval`, so sends do not drift however late a loop turn wakes; a sender that
//! was stalled (a paused VM) sends one heartbeat at once and rejoins the grid, never a burst.

use std::time::{Duration, Instant};

/// How many goodbyes go out on every link when stopping.
pub const GOODBYES: u32 = 2;

/// A `released` datagram makes heartbeatd announce its addresses, at most this often.
pub const ANNOUNCE_MIN_GAP: Duration = Duration::from_millis(500);

/// A challenge is answered at once with an extra heartbeat round, at most this often: a
/// flood of challenges (which only a key holder can send) costs one round per gap.
pub const ANSWER_MIN_GAP: Duration = Duration::from_millis(20);

/// How long the regular heartbeats keep echoing a challenge's nonce after it arrived, at
/// least: if the at-once answer is lost, the next heartbeats still carry it.
pub const ECHO_FOR: Duration = Duration::from_secs(1);

/// Heartbeats echo a challenge's nonce for this many intervals, when that is longer than
/// [`ECHO_FOR`].
pub const ECHO_INTERVALS: u32 = 3;

/// An input to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// Time passed; send what is due.
    Tick,
    /// The secondary says it released our addresses.
    Released,
    /// A secondary asks us to prove that we are alive now.
    Challenged {
        /// The nonce to echo.
        nonce: u64,
    },
    /// New settings (SIGHUP): the new interval, and announce again.
    Reconfigure {
        /// The new interval.
        interval: Duration,
    },
    /// SIGTERM or SIGINT: say goodbye and exit.
    Shutdown,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderAction {
    /// Send one heartbeat to every destination.
    SendHeartbeat,
    /// Send one goodbye to every destination.
    SendGoodbye,
    /// Announce this host's own addresses (gratuitous ARP / NA).
    Announce,
    /// Exit the process.
    Exit,
}

/// heartbeatd's decisions.
#[derive(Debug, Clone)]
pub struct Sender {
    interval: Duration,
    next_send: Instant,
    /// When a `released` datagram last made us announce.
    last_released_announce: Option<Instant>,
    /// The nonce our datagrams echo, and until when.
    echo: Option<(u64, Instant)>,
    /// When a challenge was last answered with an extra round.
    last_answer: Option<Instant>,
    announced_at_start: bool,
    sent: u64,
    stopped: bool,
}

impl Sender {
    /// A sender whose first heartbeat is due at `now`.
    pub fn new(now: Instant, interval: Duration) -> Sender {
        Sender {
            interval,
            next_send: now,
            last_released_announce: None,
            echo: None,
            last_answer: None,
            announced_at_start: false,
            sent: 0,
            stopped: false,
        }
    }

    /// The interval in force.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Heartbeats sent so far.
    pub fn heartbeats_sent(&self) -> u64 {
        self.sent
    }

    /// Whether it has said goodbye.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The nonce the datagrams sent at `now` echo (0: none).
    pub fn echo(&self, now: Instant) -> u64 {
        self.echo
            .filter(|(_, until)| now < *until)
            .map_or(0, |(nonce, _)| nonce)
    }

    /// When the next heartbeat is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.stopped).then_some(self.next_send)
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: SenderEvent) -> Vec<SenderAction> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        match event {
            SenderEvent::Tick => {}
            SenderEvent::Released => {
                // Rate-limited, so that a flood of `released` cannot turn us into an ARP storm.
                if self
                    .last_released_announce
                    .is_none_or(|t| now >= t + ANNOUNCE_MIN_GAP)
                {
                    self.last_released_announce = Some(now);
                    out.push(SenderAction::Announce);
                }
            }
            SenderEvent::Challenged { nonce } => {
                let keep = ECHO_FOR.max(self.interval.saturating_mul(ECHO_INTERVALS));
                self.echo = Some((nonce, now + keep));
                // Answer at once, on every link (a challenge that reached us on one link may
                // only be answerable on the other), off the grid: the grid stays where it is.
                if self.last_answer.is_none_or(|t| now >= t + ANSWER_MIN_GAP) {
                    self.last_answer = Some(now);
                    self.sent += 1;
                    out.push(SenderAction::SendHeartbeat);
                }
            }
            SenderEvent::Reconfigure { interval } => {
                self.interval = interval;
                // Rejoin a grid of the new interval from the last send.
                self.next_send = now.min(self.next_send);
                out.push(SenderAction::Announce);
            }
            SenderEvent::Shutdown => {
                self.stopped = true;
                for _ in 0..GOODBYES {
                    out.push(SenderAction::SendGoodbye);
                }
                out.push(SenderAction::Exit);
                return out;
            }
        }
        if !self.announced_at_start {
            // At start, before the first heartbeat: a returning primary is reachable at once.
            self.announced_at_start = true;
            out.push(SenderAction::Announce);
        }
        if now >= self.next_send {
            out.push(SenderAction::SendHeartbeat);
            self.sent += 1;
            // The next slot on the grid strictly after now: late wake-ups do not drift, and a
            // long stall does not cause a burst.
            let behind = now.duration_since(self.next_send);
            let step = self.interval.as_nanos().max(1);
            let skip = behind.as_nanos() / step + 1;
            let skip = u32::try_from(skip).unwrap_or(u32::MAX);
            self.next_send += self.interval.saturating_mul(skip);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn announces_then_sends_at_start_and_stays_on_the_grid() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(100));
        assert_eq!(
            s.handle(t0, SenderEvent::Tick),
            vec![SenderAction::Announce, SenderAction::SendHeartbeat]
        );
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
        // Woken 7 ms late: the send happens, the grid does not move.
        assert_eq!(
            s.handle(t0 + ms(107), SenderEvent::Tick),
            vec![SenderAction::SendHeartbeat]
        );
        assert_eq!(s.next_deadline(), Some(t0 + ms(200)));
        // Woken early: nothing.
        assert!(s.handle(t0 + ms(150), SenderEvent::Tick).is_empty());
    }

    #[test]
    fn ten_thousand_intervals_do_not_drift() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(10));
        let mut now = t0;
        let mut x = 7u64;
        for _ in 0..10_000 {
            let due = s.next_deadline().unwrap_or(now);
            // Every wake-up is 0..3 ms late.
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            now = due + Duration::from_micros((x >> 40) % 3000);
            s.handle(now, SenderEvent::Tick);
        }
        assert_eq!(s.heartbeats_sent(), 10_000);
        assert_eq!(s.next_deadline(), Some(t0 + ms(100_000)));
    }

    #[test]
    fn a_stall_sends_once_and_rejoins_the_grid() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(100));
        s.handle(t0, SenderEvent::Tick);
        // Paused for 5.05 s.
        let out = s.handle(t0 + ms(5150), SenderEvent::Tick);
        assert_eq!(out, vec![SenderAction::SendHeartbeat]);
        assert_eq!(s.next_deadline(), Some(t0 + ms(5200)));
    }

    #[test]
    fn shutdown_says_goodbye_at_least_twice_then_exits() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(100));
        s.handle(t0, SenderEvent::Tick);
        let out = s.handle(t0 + ms(30), SenderEvent::Shutdown);
        assert_eq!(
            out,
            vec![
                SenderAction::SendGoodbye,
                SenderAction::SendGoodbye,
                SenderAction::Exit
            ]
        );
        assert_eq!(s.next_deadline(), None);
        assert!(s.handle(t0 + ms(200), SenderEvent::Tick).is_empty());
    }

    #[test]
    fn released_announces_rate_limited() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(1000));
        s.handle(t0, SenderEvent::Tick);
        // Right after the start-up announcement: a release still announces.
        assert_eq!(
            s.handle(t0 + ms(200), SenderEvent::Released),
            vec![SenderAction::Announce]
        );
        assert!(s.handle(t0 + ms(300), SenderEvent::Released).is_empty());
        assert_eq!(
            s.handle(t0 + ms(800), SenderEvent::Released),
            vec![SenderAction::Announce]
        );
        assert!(s.handle(t0 + ms(900), SenderEvent::Released).is_empty());
        assert_eq!(
            s.handle(t0 + ms(1300), SenderEvent::Released),
            vec![SenderAction::Announce, SenderAction::SendHeartbeat]
        );
    }

    #[test]
    fn a_challenge_is_answered_at_once_and_echoed_for_a_while() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(100));
        s.handle(t0, SenderEvent::Tick);
        assert_eq!(s.echo(t0), 0);
        let out = s.handle(t0 + ms(30), SenderEvent::Challenged { nonce: 42 });
        assert_eq!(out, vec![SenderAction::SendHeartbeat], "answered at once");
        assert_eq!(
            s.next_deadline(),
            Some(t0 + ms(100)),
            "the grid did not move"
        );
        // A second challenge within the gap is echoed, not answered with another round.
        assert!(s
            .handle(t0 + ms(40), SenderEvent::Challenged { nonce: 43 })
            .is_empty());
        assert_eq!(s.echo(t0 + ms(40)), 43);
        assert_eq!(s.echo(t0 + ms(1039)), 43);
        assert_eq!(
            s.echo(t0 + ms(1040)),
            0,
            "echoed for 1 s (3 intervals are less)"
        );
        // With a long interval, for three intervals.
        let mut s = Sender::new(t0, ms(5000));
        s.handle(t0, SenderEvent::Tick);
        s.handle(t0, SenderEvent::Challenged { nonce: 7 });
        assert_eq!(s.echo(t0 + ms(14_999)), 7);
        assert_eq!(s.echo(t0 + ms(15_000)), 0);
    }

    #[test]
    fn reconfigure_announces_and_takes_the_new_interval() {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, ms(1000));
        s.handle(t0, SenderEvent::Tick);
        let out = s.handle(t0 + ms(300), SenderEvent::Reconfigure { interval: ms(100) });
        // The new interval starts with a heartbeat at once.
        assert_eq!(
            out,
            vec![SenderAction::Announce, SenderAction::SendHeartbeat]
        );
        assert_eq!(s.interval(), ms(100));
        assert_eq!(s.next_deadline(), Some(t0 + ms(400)));
    }
}
