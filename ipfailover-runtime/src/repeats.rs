//! Lines that repeat, held back (docs/troubleshooting.md, "No log storms"): about one condition
//! (a link that flaps under loss), at most [`BURST`] lines a [`WINDOW`] are logged and mailed;
//! the rest are counted, and summed up in one line and one notice when the window ends. Pure:
//! the time is handed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a window lasts, from the first line about its condition.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many lines about one condition a window lets through.
pub const BURST: u32 = 3;

#[derive(Debug)]
struct Window {
    start: Instant,
    shown: u32,
    /// What was held back, by what it said, with how often.
    held: BTreeMap<String, u32>,
    /// What the latest line said (let through or not): how things stand.
    last: String,
}

/// What a window held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The condition.
    pub key: String,
    /// Each kind of line held back, with how often.
    pub held: Vec<(String, u32)>,
    /// How many in all.
    pub total: u32,
    /// What the latest line said.
    pub last: String,
}

impl Summary {
    /// The summary in words: `link 203.0.113.10: 12 x "…", 11 x "…" not logged in the last
    /// 60 s (at most 3 lines a minute about it); the latest: …`.
    pub fn text(&self) -> String {
        let held: Vec<String> = self
            .held
            .iter()
            .map(|(what, n)| format!("{n} x \"{what}\""))
            .collect();
        format!(
            "{}: {} not logged in the last {} s (at most {BURST} lines a minute about it); \
             the latest: {}",
            self.key,
            held.join(", "),
            WINDOW.as_secs(),
            self.last
        )
    }
}

/// The windows open, one per condition.
#[derive(Debug, Default)]
pub struct Repeats {
    windows: BTreeMap<String, Window>,
}

impl Repeats {
    /// A line about condition `key` that says `what`, at `now`: whether to log (and mail) it.
    pub fn allow(&mut self, now: Instant, key: &str, what: &str) -> bool {
        let w = self
            .windows
            .entry(key.to_string())
            .or_insert_with(|| Window {
                start: now,
                shown: 0,
                held: BTreeMap::new(),
                last: String::new(),
            });
        // A window over with nothing held starts again; one with something held is summed
        // up by `due` first (at the end of this turn), and this line counts in it.
        if now >= w.start + WINDOW && w.held.is_empty() {
            w.start = now;
            w.shown = 0;
        }
        w.last = what.to_string();
        if w.shown < BURST {
            w.shown += 1;
            true
        } else {
            *w.held.entry(what.to_string()).or_default() += 1;
            false
        }
    }

    /// When a window with something held ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.windows
            .values()
            .filter(|w| !w.held.is_empty())
            .map(|w| w.start + WINDOW)
            .min()
    }

    /// The windows that ended by `now` with something held: their summaries. Windows over
    /// are dropped.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let over: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| now >= w.start + WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in over {
            let Some(w) = self.windows.remove(&key) else {
                continue;
            };
            if w.held.is_empty() {
                continue;
            }
            let total = w.held.values().sum();
            out.push(Summary {
                key,
                held: w.held.into_iter().collect(),
                total,
                last: w.last,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link flapping twice a second for three minutes: 3 lines and one summary a minute.
    #[test]
    fn a_flapping_condition_logs_a_burst_then_one_summary_a_window() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        let mut logged = 0;
        let mut summaries = Vec::new();
        for i in 0..360u64 {
            let now = t0 + Duration::from_millis(500 * i);
            let what = if i % 2 == 0 { "lost" } else { "back" };
            // The loop wakes at the deadline (here, with a line due at the same instant).
            summaries.extend(r.due(now));
            if r.allow(now, "link 203.0.113.10", what) {
                logged += 1;
            }
        }
        assert_eq!(logged, 9, "3 a minute for 3 minutes");
        assert_eq!(summaries.len(), 2);
        let first = &summaries[0];
        assert_eq!(first.total, 117);
        assert_eq!(
            first.held,
            vec![("back".to_string(), 59), ("lost".to_string(), 58)]
        );
        assert!(first
            .text()
            .starts_with("link 203.0.113.10: 59 x \"back\", 58 x \"lost\""));
        // The third minute's window is still open: summed up at its end.
        let end = t0 + Duration::from_secs(180);
        let at = r.next_deadline().expect("a window with lines held");
        assert!(
            at > end - Duration::from_secs(1) && at <= end + WINDOW,
            "{at:?}"
        );
        assert_eq!(r.due(at).len(), 1);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn conditions_are_counted_apart_and_a_quiet_one_is_never_held() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        for i in 0..3 {
            assert!(r.allow(t0 + Duration::from_secs(i), "link a", "lost"));
        }
        assert!(!r.allow(t0 + Duration::from_secs(3), "link a", "lost"));
        assert!(r.allow(t0 + Duration::from_secs(3), "link b", "lost"));
        // Once a minute, for an hour: every line is logged, nothing summed up.
        let mut r = Repeats::default();
        for i in 0..60u64 {
            let now = t0 + Duration::from_secs(61 * i);
            assert!(r.allow(now, "link a", "lost"));
            assert!(r.due(now).is_empty());
        }
        assert_eq!(r.next_deadline(), None);
    }
}
