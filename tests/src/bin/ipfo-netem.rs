//! A userspace netem for the lab, whose kernel has no `sch_netem`: it holds the packets that
//! iptables `NFQUEUE` rules hand it and lets each go after a delay with jitter, some of them
//! at once, ahead of the held ones (netem's `reorder`). Duplication is left to nftables
//! (`dup`); loss to nftables too. [`ipfailover_e2e::Lab::impair`] sets all of it up.
//!
//! `ipfo-netem SEED QUEUE...` runs inside one of the lab's namespaces, bound to the queues.
//! Settings come on stdin, a line each: `QUEUE DELAY_MS JITTER_MS REORDER_PCT`. Until a queue
//! has settings its packets pass at once. At the end of stdin it lets every held packet go,
//! prints what it did per queue, and exits.
//!
//! What it prints counts, per queue: packets seen; packets held; packets sent at once while
//! others were held (reordered ahead of them); packets that left after one that arrived
//! later (the reordering as the receiver sees it); and, for all queues, the held packets
//! the kernel dropped before their time (as it does when their interface goes down).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};

/// How one queue's packets are treated.
#[derive(Debug, Clone, Copy, Default)]
struct Setting {
    delay: Duration,
    jitter: Duration,
    /// Percent of packets that go at once instead of being held.
    reorder: u64,
}

#[derive(Debug, Default)]
struct Stats {
    seen: u64,
    held: u64,
    ahead: u64,
    out_of_order: u64,
    /// The arrival number of the latest-arrived packet let go so far.
    newest_out: Option<u64>,
}

impl Stats {
    fn out(&mut self, arrival: u64) {
        match self.newest_out {
            Some(n) if n > arrival => self.out_of_order += 1,
            _ => self.newest_out = Some(arrival),
        }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn parse(line: &str) -> Option<(u16, Setting)> {
    let f: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match f[..] {
        [q, delay, jitter, reorder] if reorder <= 100 => Some((
            u16::try_from(q).ok()?,
            Setting {
                delay: Duration::from_millis(delay),
                jitter: Duration::from_millis(jitter),
                reorder,
            },
        )),
        _ => None,
    }
}

fn usage() -> ! {
    eprintln!("usage: ipfo-netem SEED QUEUE...   (settings on stdin: QUEUE DELAY_MS JITTER_MS REORDER_PCT)");
    std::process::exit(64)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("ipfo-netem: {what}: {e}");
    std::process::exit(1)
}

/// Lets a packet go, counting it against its arrival number `n`.
fn release(queue: &mut Queue, stats: &mut BTreeMap<u16, Stats>, mut msg: Message, n: u64) {
    if let Some(s) = stats.get_mut(&msg.get_queue_num()) {
        s.out(n);
    }
    msg.set_verdict(Verdict::Accept);
    queue.verdict(msg).unwrap_or_else(|e| fail("verdict", e));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(seed) = args.first().and_then(|s| s.parse::<u64>().ok()) else {
        usage()
    };
    let queues: Vec<u16> = args[1..]
        .iter()
        .map(|q| q.parse().unwrap_or_else(|_| usage()))
        .collect();
    if queues.is_empty() {
        usage()
    }
    let mut queue = Queue::open().unwrap_or_else(|e| fail("opening the netfilter queue socket", e));
    for &q in &queues {
        queue.bind(q).unwrap_or_else(|e| fail("binding a queue", e));
        // A full queue lets packets through rather than dropping them: loss is not ours.
        queue
            .set_fail_open(q, true)
            .unwrap_or_else(|e| fail("fail-open", e));
        queue
            .set_queue_max_len(q, 8192)
            .unwrap_or_else(|e| fail("queue length", e));
    }
    // nfq does not expose its socket to poll on: a 1 ms tick bounds the added latency.
    queue.set_nonblocking(true);

    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    eprintln!("ipfo-netem: bound to queues {queues:?}");

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut settings: BTreeMap<u16, Setting> = BTreeMap::new();
    let mut stats: BTreeMap<u16, Stats> = queues.iter().map(|&q| (q, Stats::default())).collect();
    // Held packets by (due time, arrival number).
    let mut held: BTreeMap<(Instant, u64), Message> = BTreeMap::new();
    let mut arrivals = 0u64;
    let mut vanished = 0u64;
    loop {
        match rx.try_recv() {
            Ok(Some(line)) => match parse(&line) {
                Some((q, s)) => {
                    settings.insert(q, s);
                }
                None => eprintln!(
                    "ipfo-netem: ignored {line:?}: want QUEUE DELAY_MS JITTER_MS REORDER_PCT"
                ),
            },
            Ok(None) | Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        loop {
            let msg = match queue.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The answer to a verdict on a packet the kernel no longer held: it dropped
                // it meanwhile (its interface went down, or its hook went away).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    vanished += 1;
                    continue;
                }
                Err(e) => fail("receiving from the queue", e),
            };
            arrivals += 1;
            let q = msg.get_queue_num();
            let s = settings.get(&q).copied().unwrap_or_default();
            let st = stats.entry(q).or_default();
            st.seen += 1;
            let at_once = s.delay.is_zero() && s.jitter.is_zero()
                || (s.reorder > 0 && rng.below(100) < s.reorder);
            if at_once {
                if !held.is_empty() {
                    st.ahead += 1;
                }
                release(&mut queue, &mut stats, msg, arrivals);
            } else {
                st.held += 1;
                let jitter = s.jitter.as_millis() as u64;
                let due = Instant::now() + s.delay + Duration::from_millis(rng.below(jitter + 1));
                held.insert((due, arrivals), msg);
            }
        }
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let n = entry.key().1;
            release(&mut queue, &mut stats, entry.remove(), n);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    while let Some(((_, n), msg)) = held.pop_first() {
        release(&mut queue, &mut stats, msg, n);
    }
    for (q, s) in &stats {
        println!(
            "queue {q}: {} seen, {} held, {} sent ahead of held ones, {} left after a later one",
            s.seen, s.held, s.ahead, s.out_of_order
        );
    }
    println!("{vanished} packets dropped by the kernel while held");
}
