//! A sampler for "two holders" and "nobody": a thread per namespace that looks every 2 ms at
//! whether each address is on an interface whose link is up there, and the timeline of what
//! it saw. The pair's lab and the group's lab both use it; a node is a label (1, 2, ...) and a
//! namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::wait_for;

/// One run of samples with the same set of held addresses.
#[derive(Debug, Clone)]
struct Run {
    first: Instant,
    last: Instant,
    held: BTreeSet<IpAddr>,
}

/// Samples one namespace about every 2 ms until told to stop.
fn sample_ns(ns: &str, wanted: &BTreeSet<IpAddr>, stop: &AtomicBool, out: &Mutex<Vec<Run>>) {
    let path = format!("/run/netns/{ns}");
    let Ok(f) = fs::File::open(&path) else {
        return;
    };
    // setns moves only this thread.
    if nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Held means answering: on an interface while its link is up (a dead host's
        // addresses stay configured on its downed links, and answer nobody).
        let held: BTreeSet<IpAddr> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.is_oper_up() && wanted.contains(&i.ip()))
            .map(|i| i.ip())
            .collect();
        let mut runs = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match runs.last_mut() {
            Some(r) if r.held == held => r.last = now,
            _ => runs.push(Run {
                first: now,
                last: now,
                held,
            }),
        }
        drop(runs);
        sleep(Duration::from_millis(2));
    }
}

/// One member's runs, shared with its sampling thread.
type Runs = Arc<Mutex<Vec<Run>>>;

/// The samples of every member, taken in the background.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    threads: Vec<(usize, JoinHandle<()>, Runs)>,
    started: Instant,
}

/// When each member held each address, as sampled.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (member, address) -> intervals [first seen, last seen].
    pub held: BTreeMap<(usize, IpAddr), Vec<(Instant, Instant)>>,
    /// When sampling started.
    pub started: Option<Instant>,
}

impl Sampler {
    /// Starts sampling `nodes` (label, namespace) for `addrs`, on any interface; back once
    /// every node has a sample (a scenario that starts at once must not begin unseen).
    pub fn start(nodes: Vec<(usize, String)>, addrs: &[String]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let wanted: BTreeSet<IpAddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let mut threads = Vec::new();
        for (i, ns) in nodes {
            let stop = Arc::clone(&stop);
            let wanted = wanted.clone();
            let runs = Arc::new(Mutex::new(Vec::new()));
            let out = Arc::clone(&runs);
            let t = thread::spawn(move || sample_ns(&ns, &wanted, &stop, &out));
            threads.push((i, t, runs));
        }
        let sampled = |runs: &Runs| {
            !runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
        };
        assert!(
            wait_for(Duration::from_secs(5), || threads
                .iter()
                .all(|(_, _, runs)| sampled(runs)))
            .is_some(),
            "the sampler did not sample every node within 5 s"
        );
        Sampler {
            stop,
            threads,
            started: Instant::now(),
        }
    }

    /// Stops sampling; the timeline.
    pub fn finish(self) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        let mut t = Timeline {
            started: Some(self.started),
            ..Timeline::default()
        };
        for (i, handle, runs) in self.threads {
            let _ = handle.join();
            let runs = runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let mut open: BTreeMap<IpAddr, (Instant, Instant)> = BTreeMap::new();
            for r in runs {
                for a in &r.held {
                    open.entry(*a)
                        .and_modify(|iv| iv.1 = r.last)
                        .or_insert((r.first, r.last));
                }
                let gone: Vec<IpAddr> = open
                    .keys()
                    .filter(|a| !r.held.contains(a))
                    .copied()
                    .collect();
                for a in gone {
                    if let Some(iv) = open.remove(&a) {
                        t.held.entry((i, a)).or_default().push(iv);
                    }
                }
            }
            for (a, iv) in open {
                t.held.entry((i, a)).or_default().push(iv);
            }
        }
        t
    }
}

impl Timeline {
    /// Every moment two members were seen holding one address: (address, members, ms
    /// since the start of sampling).
    pub fn two_holders(&self) -> Vec<String> {
        let start = self.started.unwrap_or_else(Instant::now);
        let ms = |t: Instant| t.saturating_duration_since(start).as_millis();
        let mut out = Vec::new();
        let keys: Vec<&(usize, IpAddr)> = self.held.keys().collect();
        for (x, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(x + 1) {
                if a.1 != b.1 || a.0 == b.0 {
                    continue;
                }
                for ia in &self.held[*a] {
                    for ib in &self.held[*b] {
                        if ia.0 <= ib.1 && ib.0 <= ia.1 {
                            out.push(format!(
                                "{} on node {} ({}..{} ms) and node {} ({}..{} ms)",
                                a.1,
                                a.0,
                                ms(ia.0),
                                ms(ia.1),
                                b.0,
                                ms(ib.0),
                                ms(ib.1)
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// The first instant member `i` was seen holding `addr` at or after `after`.
    pub fn first_held_after(&self, i: usize, addr: &str, after: Instant) -> Option<Instant> {
        let addr: IpAddr = addr.parse().ok()?;
        self.held
            .get(&(i, addr))?
            .iter()
            .filter(|iv| iv.1 >= after)
            .map(|iv| iv.0.max(after))
            .min()
    }

    /// The end of the interval in which member `i` held `addr` at or after `at`: when it was
    /// last seen holding it then.
    pub fn held_until(&self, i: usize, addr: &str, at: Instant) -> Option<Instant> {
        let addr: IpAddr = addr.parse().ok()?;
        self.held
            .get(&(i, addr))?
            .iter()
            .filter(|iv| iv.1 >= at)
            .map(|iv| iv.1)
            .min()
    }

    /// The last instant member `i` was seen holding `addr`.
    pub fn last_held(&self, i: usize, addr: &str) -> Option<Instant> {
        let addr: IpAddr = addr.parse().ok()?;
        self.held.get(&(i, addr))?.iter().map(|iv| iv.1).max()
    }

    /// The intervals in which someone held `addr`, clipped to `[from, to]`, per member.
    fn clipped(&self, addr: &str, from: Instant, to: Instant) -> Vec<(usize, Instant, Instant)> {
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return Vec::new();
        };
        self.held
            .iter()
            .filter(|((_, a), _)| *a == addr)
            .flat_map(|((m, _), ivs)| ivs.iter().map(move |iv| (*m, iv.0, iv.1)))
            .filter_map(|(m, a, b)| {
                let (a, b) = (a.max(from), b.min(to));
                (a < b).then_some((m, a, b))
            })
            .collect()
    }

    /// How long, within `[from, to]`, two members were seen holding `addr` at once.
    pub fn two_holders_for(&self, addr: &str, from: Instant, to: Instant) -> Duration {
        let ivs = self.clipped(addr, from, to);
        let mut total = Duration::ZERO;
        for (x, a) in ivs.iter().enumerate() {
            for b in ivs.iter().skip(x + 1) {
                if a.0 != b.0 {
                    let (s, e) = (a.1.max(b.1), a.2.min(b.2));
                    if s < e {
                        total += e - s;
                    }
                }
            }
        }
        total
    }

    /// How long, within `[from, to]`, nobody was seen holding `addr`.
    pub fn no_holder_for(&self, addr: &str, from: Instant, to: Instant) -> Duration {
        let mut ivs: Vec<(Instant, Instant)> = self
            .clipped(addr, from, to)
            .into_iter()
            .map(|(_, a, b)| (a, b))
            .collect();
        ivs.sort();
        let mut covered = Duration::ZERO;
        let mut cur: Option<(Instant, Instant)> = None;
        for (a, b) in ivs {
            match cur {
                Some((s, e)) if a <= e => cur = Some((s, e.max(b))),
                Some((s, e)) => {
                    covered += e - s;
                    cur = Some((a, b));
                }
                None => cur = Some((a, b)),
            }
        }
        if let Some((s, e)) = cur {
            covered += e - s;
        }
        to.saturating_duration_since(from).saturating_sub(covered)
    }

    /// The whole timeline, for a failure message.
    pub fn render(&self) -> String {
        let start = self.started.unwrap_or_else(Instant::now);
        let ms = |t: Instant| t.saturating_duration_since(start).as_millis();
        let mut s = String::new();
        for ((i, a), ivs) in &self.held {
            for iv in ivs {
                s.push_str(&format!("  node {i} {a}: {}..{} ms\n", ms(iv.0), ms(iv.1)));
            }
        }
        s
    }
}
