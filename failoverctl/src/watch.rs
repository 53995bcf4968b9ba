//! `failoverctl watch`: the status as `status` shows it, live. On a terminal the screen is
//! redrawn twice a second (link ages tick, states change as they happen), in the spirit of
//! AFMfail's failmon; when the output is not a terminal, a new block is printed, with its
//! time, each time something other than an age changes.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use ipfailover::status::Status;
use ipfailover_os::daemon;

use crate::health;
use crate::observe::{observe, Observation, Seen};
use crate::text;

/// How often the status files are read again.
pub const EVERY: Duration = Duration::from_millis(500);

/// What a change is made of, without the ages and times that change on every read.
fn fingerprint(seen: &Seen, h: &health::Health) -> String {
    let shape = |s: Option<&Status>| {
        s.map(|s| {
            let links: Vec<String> = s
                .links
                .iter()
                .map(|l| format!("{}={}", l.peer_address, l.state))
                .collect();
            let held: Vec<String> = s
                .addresses
                .iter()
                .map(|a| format!("{}={}", a.address, a.held))
                .collect();
            let group = s.group.as_ref().map(|g| {
                g.addresses
                    .iter()
                    .map(|a| format!("{}:{:?}:{}", a.address, a.holder, a.state))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            format!(
                "{}|{}|{}|{:?}|{:?}|{}",
                s.state,
                links.join(","),
                held.join(","),
                s.pause.map(|p| p.since_ms),
                group,
                s.transitions.len()
            )
        })
        .unwrap_or_default()
    };
    format!(
        "{:?}|{:?}|{}|{}",
        h.level,
        h.reasons,
        shape(seen.failoverd.status()),
        shape(seen.heartbeatd.status())
    )
}

/// Runs until interrupted (Ctrl-C ends the process), or after `count` redraws (tests).
pub fn watch(dir: &Path, count: Option<u64>) -> i32 {
    let tty = std::io::stdout().is_terminal();
    let this_host = daemon::hostname();
    let mut last = String::new();
    let mut shown = 0u64;
    loop {
        let Observation {
            seen,
            health: h,
            now_ms,
        } = observe(dir, &this_host);
        let page = text::render_text(&seen, &h, now_ms);
        let mut out = std::io::stdout().lock();
        let written = if tty {
            // Home and clear, then the page: a redraw, not a scroll.
            write!(
                out,
                "\x1b[H\x1b[2J{page}\nfailoverctl watch: every {} ms, Ctrl-C to leave\n",
                EVERY.as_millis()
            )
            .and_then(|()| out.flush())
            .map(|()| true)
        } else {
            let f = fingerprint(&seen, &h);
            if f == last {
                Ok(false)
            } else {
                last = f;
                writeln!(
                    out,
                    "===== {} UTC =====\n{page}",
                    ipfailover::timefmt::date_time(now_ms)
                )
                .and_then(|()| out.flush())
                .map(|()| true)
            }
        };
        drop(out);
        match written {
            // The reader went away (`watch | head`): done.
            Err(_) => return 0,
            Ok(true) => shown += 1,
            Ok(false) => {}
        }
        if count.is_some_and(|c| shown >= c) {
            return 0;
        }
        std::thread::sleep(EVERY);
    }
}
