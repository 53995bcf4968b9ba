//! The limit, by simulation: drives the pure failover core (the same code failoverd runs) in
//! virtual time under random loss, delay and jitter, and prints, for each timeout and loss
//! rate, the false-takeover rate and the detection-time distribution.
//!
//! Usage: ipfo-sim [--intervals N] [--crashes K] [--seed S] [--jitter FRACTION]
//!
//! Time is counted in heartbeat intervals, so the table holds for any interval; delays are a
//! small base plus uniform jitter of up to FRACTION of an interval (default 0.05), and each
//! heartbeat is lost on each of the two links independently with the given probability.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipfailover::failover::{Action, Config, Event, Failover, State};

const LINKS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
];

/// The interval in virtual time. Results are in units of it.
const INTERVAL_NS: u64 = 100_000_000;

/// xorshift64*: small, fast, seeded: runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct World {
    t0: Instant,
    core: Failover,
    takeovers: u64,
    acquired_at: Option<u64>,
}

impl World {
    fn new(timeout_ns: u64) -> World {
        let t0 = Instant::now();
        let config = Config {
            timeout: Some(Duration::from_nanos(timeout_ns)),
            release_after: 3,
            // One address nobody answers for: the probes before a takeover go unanswered, so
            // what is counted is the heartbeats' own false timeouts (a live peer would also
            // answer the probe).
            taken_over: vec!["198.51.100.10".parse().unwrap_or(LINKS[0])],
            ..Config::default()
        };
        World {
            t0,
            core: Failover::new(t0, config, &[], 1),
            takeovers: 0,
            acquired_at: None,
        }
    }

    fn at(&self, ns: u64) -> Instant {
        self.t0 + Duration::from_nanos(ns)
    }

    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Feeds an event at `ns`; hooks and address operations complete at once.
    fn feed(&mut self, ns: u64, event: Event) {
        let now = self.at(ns);
        let mut queue = vec![event];
        while let Some(ev) = queue.pop() {
            for a in self.core.handle(now, ev) {
                match a {
                    Action::RunHooks { phase, .. } => {
                        queue.push(Event::HooksDone { phase, ok: true })
                    }
                    Action::AddAddresses(_) => {
                        queue.push(Event::AddressesAdded { failed: Vec::new() })
                    }
                    Action::RemoveAddresses(_) => {
                        queue.push(Event::AddressesRemoved { failed: Vec::new() })
                    }
                    Action::Transition {
                        to: State::Acquired,
                        from: State::Acquiring(_),
                        ..
                    } => {
                        self.takeovers += 1;
                        self.acquired_at.get_or_insert(ns);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Runs deadlines up to `ns` (exclusive of later ones).
    fn run_until(&mut self, ns: u64) {
        while let Some(d) = self.core.next_deadline() {
            let dn = self.ns(d);
            if dn > ns {
                break;
            }
            self.feed(dn, Event::Tick);
        }
    }
}

/// Heartbeats sent in intervals `[from, to)` before `dead` (the sender's death), each link
/// losing each with probability `loss`; the arrivals in time order.
fn heartbeats(
    rng: &mut Rng,
    from: u64,
    to: u64,
    loss: f64,
    jitter: f64,
    dead: u64,
) -> BinaryHeap<Reverse<(u64, usize)>> {
    let mut heap = BinaryHeap::new();
    for k in from..to {
        if k * INTERVAL_NS >= dead {
            break;
        }
        for link in 0..LINKS.len() {
            if rng.unit() < loss {
                continue;
            }
            let delay = 50_000 + (rng.unit() * jitter * INTERVAL_NS as f64) as u64;
            heap.push(Reverse((k * INTERVAL_NS + delay, link)));
        }
    }
    heap
}

fn deliver(w: &mut World, heap: &mut BinaryHeap<Reverse<(u64, usize)>>, until: u64) {
    while let Some(Reverse((t, link))) = heap.peek().copied() {
        if t >= until {
            break;
        }
        heap.pop();
        w.run_until(t);
        w.feed(
            t,
            Event::Heartbeat {
                link: LINKS[link],
                interval: Some(Duration::from_nanos(INTERVAL_NS)),
                via: None,
                boot: 1,
                // Heartbeats that say nothing of the addresses: the release count gives them
                // back, and the timeouts are what is measured.
                report: None,
            },
        );
    }
    w.run_until(until);
}

/// False takeovers over `intervals` of a live peer.
fn false_takeovers(timeout_ns: u64, loss: f64, jitter: f64, intervals: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut w = World::new(timeout_ns);
    let chunk = 10_000;
    let mut k = 0;
    while k < intervals {
        let end = (k + chunk).min(intervals);
        let mut heap = heartbeats(&mut rng, k, end, loss, jitter, u64::MAX);
        deliver(&mut w, &mut heap, end * INTERVAL_NS);
        k = end;
    }
    w.takeovers
}

/// Detection times (crash to acquired), in intervals, over `crashes` crashes at random phase.
fn detection(timeout_ns: u64, loss: f64, jitter: f64, crashes: u64, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for _ in 0..crashes {
        let mut w = World::new(timeout_ns);
        // Alive for 20 intervals (past the boot grace), then dead at a random instant.
        let crash = 20 * INTERVAL_NS + (rng.unit() * INTERVAL_NS as f64) as u64;
        let mut heap = heartbeats(&mut rng, 0, 22, loss, jitter, crash);
        deliver(&mut w, &mut heap, crash);
        if w.takeovers > 0 {
            // A false takeover before the crash: not a detection sample.
            continue;
        }
        w.acquired_at = None;
        deliver(&mut w, &mut heap, crash + 100 * INTERVAL_NS);
        if let Some(at) = w.acquired_at {
            out.push((at - crash) as f64 / INTERVAL_NS as f64);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let intervals = arg(&args, "--intervals", 1_000_000);
    let crashes = arg(&args, "--crashes", 2_000);
    let seed = arg(&args, "--seed", 1694);
    let jitter = args
        .iter()
        .position(|a| a == "--jitter")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.05);
    let timeouts: [(f64, &str); 5] = [
        (3.0, "3 intervals"),
        (3.25, "3¼ (default)"),
        (3.5, "3½"),
        (4.0, "4"),
        (5.0, "5"),
    ];
    let losses = [0.0, 0.01, 0.05, 0.10, 0.20, 0.30];
    let started = Instant::now();
    println!(
        "Simulated with the failover core itself: {intervals} heartbeat intervals per cell for \
         false takeovers, {crashes} crashes at a random phase per cell for detection; two links, \
         each heartbeat lost independently on each link with the given probability, delivered \
         after 0.05 % + up to {:.0} % of an interval of jitter; seed {seed}.\n",
        jitter * 100.0
    );
    println!("| timeout | loss per link | false takeovers per million intervals | per day at 1 s | detection p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (factor, label) in timeouts {
        let timeout_ns = (factor * INTERVAL_NS as f64) as u64;
        for (i, loss) in losses.iter().enumerate() {
            let cell_seed = seed
                .wrapping_mul(31)
                .wrapping_add(i as u64 * 1_000 + (factor * 100.0) as u64);
            let ft = false_takeovers(timeout_ns, *loss, jitter, intervals, cell_seed);
            let per_million = ft as f64 * 1e6 / intervals as f64;
            let per_day = per_million * 86_400.0 / 1e6;
            let det = detection(timeout_ns, *loss, jitter, crashes, cell_seed ^ 0xdead);
            println!(
                "| {label} | {:.0} % | {} | {} | {:.2} I | {:.2} I | {:.2} I |",
                loss * 100.0,
                if ft == 0 {
                    format!("0 (of {intervals})")
                } else {
                    format!("{per_million:.1}")
                },
                if ft == 0 {
                    "0".to_string()
                } else {
                    format!("{per_day:.2}")
                },
                pct(&det, 0.5),
                pct(&det, 0.99),
                pct(&det, 1.0)
            );
        }
    }
    eprintln!("ipfo-sim: done in {:.1} s", started.elapsed().as_secs_f64());
}
