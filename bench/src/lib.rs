//! What the bench's programs share: clocks, process costs, statistics, the plot.

#![forbid(unsafe_code)]

use std::fmt::Write;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipfailover::wire::{self, Kind, Message};
pub use ipfailover_e2e::process::{children, cpu_ns, mono_ns, rss_kib, signal_pid, with_children};

/// The heartbeats a host on the primary's LAN hears: a thread inside a network namespace
/// (the client's) bound to the heartbeat port, noting when each heartbeat from `from` arrives
/// (they are broadcast, so every host of the LAN gets them) and from which boot of heartbeatd.
/// Other datagrams on that port (failoverd's reports, also broadcast) are not heartbeats and
/// are left out.
#[derive(Debug)]
pub struct HeartbeatWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<(Instant, u64)>>>,
}

impl HeartbeatWatch {
    /// Starts listening on `port` in the namespace `ns` (a name under /run/netns); back once
    /// the socket is bound, so that no heartbeat sent afterwards is missed.
    pub fn start(ns: &str, port: u16, from: IpAddr) -> Result<HeartbeatWatch, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let path = format!("/run/netns/{ns}");
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            let socket = match enter_and_bind(&path, port) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, src)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                if src.ip() != from {
                    continue;
                }
                if let Ok(Message::Ipfo { datagram, .. }) = wire::decode(&buf[..n], None) {
                    if datagram.kind == Kind::Heartbeat {
                        seen2
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((at, datagram.boot_id));
                    }
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(HeartbeatWatch {
                stop,
                thread: Some(thread),
                seen,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "the heartbeat watch in {ns} did not start within 5 s"
            )),
        }
    }

    /// When the first heartbeat at or after `t` arrived, if one did.
    pub fn first_after(&self, t: Instant) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(at, _)| *at)
            .find(|at| *at >= t)
    }
}

impl Drop for HeartbeatWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into a network namespace and binds a UDP socket on `port` there,
/// with a short read timeout so that the thread sees its stop flag.
fn enter_and_bind(path: &str, port: u16) -> Result<UdpSocket, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // setns moves only this thread.
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {path}: {e}"))?;
    let socket =
        UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| format!("read timeout: {e}"))?;
    Ok(socket)
}

/// The crash-takeover medians of a results file that ipfo-bench wrote: for each row of its
/// "Crash takeover" table, the setting as written there (`1s / 3s`) and the medians in ms of
/// its three daemons (ipfailover, its service alias, keepalived), each `None` when the cell
/// has none.
pub fn crash_medians(md: &str) -> Vec<(String, [Option<f64>; 3])> {
    let mut out = Vec::new();
    let mut lines = md
        .lines()
        .skip_while(|l| !l.starts_with("## Crash takeover ("))
        .skip(1)
        .skip_while(|l| l.trim().is_empty());
    // The header and the separator.
    let _ = lines.next();
    let _ = lines.next();
    for line in lines.take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", setting, ipfailover, alias, keepalived, note, "".
        if cells.len() < 5 {
            continue;
        }
        let median = |cell: &str| {
            let rest = cell.split_once("**")?.1;
            rest.split_once("**")?.0.trim().parse::<f64>().ok()
        };
        out.push((
            cells[1].to_string(),
            [median(cells[2]), median(cells[3]), median(cells[4])],
        ));
    }
    out
}

/// Min, median and max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Smallest.
    pub min: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

impl Summary {
    /// Summarises durations; `None` for an empty sample.
    pub fn of(sample: &[Duration]) -> Option<Summary> {
        let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Some(Summary {
            min: ms[0],
            median,
            max: ms[n - 1],
            n,
        })
    }

    /// `min / median / max` with a precision that suits the size.
    pub fn cell(&self) -> String {
        format!(
            "{} / **{}** / {}",
            ms(self.min),
            ms(self.median),
            ms(self.max)
        )
    }
}

/// A millisecond figure with sensible precision.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One series of the plot: a label, a colour, and its points in ms.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub colour: String,
    /// The values, ms.
    pub values: Vec<f64>,
}

/// One panel of the plot: a title, a reference line (the configured timeout) and series.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title, e.g. "1 s / 3 s".
    pub title: String,
    /// Where to draw the dashed reference line, ms.
    pub reference: Option<(f64, String)>,
    /// The series, drawn as rows of dots with the median marked.
    pub series: Vec<Series>,
}

/// A strip plot: one panel per setting, one row of dots per daemon, each panel on its own
/// linear axis from 0 to a bit past the largest value.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let width = 900.0;
    let row_h = 34.0;
    let panel_gap = 56.0;
    let left = 130.0;
    let right = 30.0;
    let mut y = 60.0;
    let mut body = String::new();
    for p in panels {
        let max = p
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .chain(p.reference.iter().map(|r| r.0))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.08;
        let scale = (width - left - right) / max;
        let x = |v: f64| left + v * scale;
        let top = y;
        let h = row_h * p.series.len() as f64;
        let _ = writeln!(
            body,
            r#"<text x="{left}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
            top - 12.0,
            esc(&p.title)
        );
        // Axis with ticks.
        let step = nice_step(max);
        let mut t = 0.0;
        while t <= max {
            let _ = writeln!(
                body,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle" fill="#555">{4}</text>"##,
                x(t),
                top,
                top + h,
                top + h + 14.0,
                ms(t)
            );
            t += step;
        }
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">ms</text>"##,
            width - right + 4.0,
            top + h + 14.0
        );
        if let Some((v, label)) = &p.reference {
            let _ = writeln!(
                body,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#444" stroke-dasharray="4 3"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle" fill="#444">{4}</text>"##,
                x(*v),
                top - 4.0,
                top + h,
                top - 2.0 + 0.0,
                esc(label)
            );
        }
        for (i, s) in p.series.iter().enumerate() {
            let cy = top + row_h * i as f64 + row_h / 2.0;
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="end" fill="{}">{}</text>"#,
                left - 10.0,
                cy + 4.0,
                s.colour,
                esc(&s.label)
            );
            for (j, v) in s.values.iter().enumerate() {
                // A small deterministic vertical spread so equal values stay visible.
                let dy = ((j * 7919) % 13) as f64 - 6.0;
                let _ = writeln!(
                    body,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="{}" fill-opacity="0.55"/>"#,
                    x(*v),
                    cy + dy,
                    s.colour
                );
            }
            let durations: Vec<Duration> = s
                .values
                .iter()
                .map(|v| Duration::from_secs_f64(v / 1000.0))
                .collect();
            if let Some(sum) = Summary::of(&durations) {
                let _ = writeln!(
                    body,
                    r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="{3}" stroke-width="3"/><text x="{4:.1}" y="{5:.1}" font-size="11" fill="{3}">median {6} ms</text>"#,
                    x(sum.median),
                    cy - 12.0,
                    cy + 12.0,
                    s.colour,
                    x(sum.median) + 5.0,
                    cy - 9.0,
                    ms(sum.median)
                );
            }
        }
        y = top + h + panel_gap;
    }
    let height = y;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="28" font-size="18" font-weight="bold">{}</text>
{body}</svg>
"##,
        esc(title)
    )
}

fn nice_step(max: f64) -> f64 {
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_samples() {
        let d = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let s = Summary::of(&d(&[5, 1, 3])).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 3.0, 5.0, 3));
        let s = Summary::of(&d(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn crash_medians_are_read_from_a_results_file() {
        let md = "# x\n\n## Crash takeover (SIGKILL and links down -> first reply from the secondary)\n\n\
                  | setting | ipfailover | ipfailover (service alias) | keepalived | ipfailover: |\n\
                  |---|---|---|---|---|\n\
                  | 1s / 3s | 2227 / **2631** / 3014 | 2031 / **2494** / 2954 | 2617 / **3058** / 3569 | median 369 ms under the timeout |\n\
                  | 10ms / 30ms | 22.2 / **26.3** / 30.9 | — | 27.6 / **33.5** / 36.9 | x |\n\
                  \nThe last heartbeat\n\n## Graceful\n| 1s / 3s | 1 / **2** / 3 | | | |\n";
        let m = crash_medians(md);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "1s / 3s");
        assert_eq!(m[0].1, [Some(2631.0), Some(2494.0), Some(3058.0)]);
        assert_eq!(m[1].1, [Some(26.3), None, Some(33.5)]);
        assert!(crash_medians("no table here").is_empty());
    }

    #[test]
    fn own_cpu_time_and_memory_are_readable() {
        let me = std::process::id();
        let a = cpu_ns(me).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        let b = cpu_ns(me).unwrap();
        assert!(b > a, "{x}");
        assert!(rss_kib(me).unwrap() > 100);
    }

    #[test]
    fn the_plot_is_an_svg_with_every_point() {
        let p = Panel {
            title: "100 ms / 300 ms".into(),
            reference: Some((300.0, "timeout".into())),
            series: vec![Series {
                label: "ipfailover".into(),
                colour: "#1f6f3f".into(),
                values: vec![250.0, 260.0, 270.0],
            }],
        };
        let s = svg("crash takeover", &[p]);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<circle").count(), 3);
        assert!(s.contains("median 260 ms"));
    }
}
