//! The explorer: every run a [`Model`] allows, each state once.
//!
//! A state carries everything that decides its future, the virtual clock, the end of the
//! horizon and the faults still allowed included, so two runs that reach the same state have
//! the same futures and one of them is enough: the explorer keeps a set of the states seen
//! (by a 64-bit fingerprint of their `Hash`) and expands each state once. The search is
//! depth-first from a shared stack, on as many threads as asked; it ends when every reachable
//! state has been expanded, or at the first state that breaks a property, whose run (the
//! events from the root) is the counterexample.
//!
//! Fingerprints can collide: two different states with one fingerprint would make the second
//! one look seen. With n states the chance of any collision is about n² / 2⁶⁵: one in a
//! million at six million states.

use std::collections::HashSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A system to explore: its states, the events each allows, and what each event does.
pub trait Model: Sync {
    /// Everything that decides the future, hashed to tell states apart.
    type State: Clone + Hash + Send;
    /// One step of a run: what a counterexample lists, and what a replay feeds again.
    type Event: Clone + fmt::Debug + Send + Sync;

    /// The state every run starts from.
    fn root(&self) -> Self::State;

    /// The states the search starts from, each with the events that lead there from the root
    /// (a fixed prefix, such as a pair that has settled). By default, the root alone.
    fn starts(&self) -> Vec<Vec<Self::Event>> {
        vec![Vec::new()]
    }

    /// The events `state` allows, in a fixed order. None: the run ends there.
    fn events(&self, state: &Self::State, out: &mut Vec<Self::Event>);

    /// The state after `event`, or the property it breaks.
    fn step(&self, state: &Self::State, event: &Self::Event) -> Result<Self::State, String>;
}

/// How far to look.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Worker threads.
    pub threads: usize,
    /// Stop (incomplete) after this many states.
    pub max_states: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_states: u64::MAX,
        }
    }
}

/// What a search did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Distinct states expanded.
    pub states: u64,
    /// Events applied (successors computed), including those that led to a state already seen.
    pub transitions: u64,
    /// The longest run from the root, in events (the prefixes included).
    pub max_depth: usize,
    /// How long it took.
    pub elapsed: Duration,
    /// Every reachable state was expanded (no violation, no state limit).
    pub complete: bool,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} states, {} transitions, depth {}, {:.1} s{}",
            self.states,
            self.transitions,
            self.max_depth,
            self.elapsed.as_secs_f64(),
            if self.complete { "" } else { " (incomplete)" }
        )
    }
}

/// A run that breaks a property: the events from the root, and what broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample<E> {
    /// The events from the root, the last one the step that broke the property.
    pub events: Vec<E>,
    /// Which property, and how.
    pub violation: String,
}

/// A run as a persistent list: each node shares its prefix with its siblings.
struct Trace<E> {
    event: E,
    parent: Option<Arc<Trace<E>>>,
    depth: usize,
}

fn unwind<E: Clone>(mut t: Option<&Arc<Trace<E>>>) -> Vec<E> {
    let mut out = Vec::new();
    while let Some(node) = t {
        out.push(node.event.clone());
        t = node.parent.as_ref();
    }
    out.reverse();
    out
}

struct Node<S, E> {
    state: S,
    trace: Option<Arc<Trace<E>>>,
}

/// A state's fingerprint.
pub fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

const SHARDS: usize = 64;

struct Shared<S, E> {
    stack: Mutex<Vec<Node<S, E>>>,
    wake: Condvar,
    /// Workers expanding a node now (the stack may grow again while any is).
    busy: AtomicUsize,
    seen: Vec<Mutex<HashSet<u64>>>,
    states: AtomicU64,
    transitions: AtomicU64,
    depth: AtomicUsize,
    stop: AtomicBool,
    found: Mutex<Option<(Vec<E>, String)>>,
}

impl<S, E> Shared<S, E> {
    /// Whether `fp` is new (and now seen).
    fn first_sight(&self, fp: u64) -> bool {
        let shard = usize::try_from(fp % SHARDS as u64).unwrap_or(0);
        self.seen[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fp)
    }
}

/// Explores every run of `model` from its starts; the statistics, and the first
/// counterexample found, if any.
pub fn explore<M: Model>(model: &M, limits: Limits) -> (Stats, Option<Counterexample<M::Event>>) {
    let began = Instant::now();
    let shared: Shared<M::State, M::Event> = Shared {
        stack: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        busy: AtomicUsize::new(0),
        seen: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        states: AtomicU64::new(0),
        transitions: AtomicU64::new(0),
        depth: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        found: Mutex::new(None),
    };
    // The starts: their prefixes are replayed once; a prefix that breaks a property is a
    // counterexample of its own.
    for prefix in model.starts() {
        let mut state = model.root();
        let mut trace: Option<Arc<Trace<M::Event>>> = None;
        for e in &prefix {
            match model.step(&state, e) {
                Ok(next) => state = next,
                Err(v) => {
                    let mut events = unwind(trace.as_ref());
                    events.push(e.clone());
                    let stats = Stats {
                        states: 0,
                        transitions: 0,
                        max_depth: events.len(),
                        elapsed: began.elapsed(),
                        complete: false,
                    };
                    return (
                        stats,
                        Some(Counterexample {
                            events,
                            violation: v,
                        }),
                    );
                }
            }
            let depth = trace.as_ref().map_or(0, |t| t.depth) + 1;
            trace = Some(Arc::new(Trace {
                event: e.clone(),
                parent: trace,
                depth,
            }));
        }
        if shared.first_sight(fingerprint(&state)) {
            shared
                .stack
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Node { state, trace });
        }
    }
    let threads = limits.threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| worker(model, &shared, limits.max_states));
        }
    });
    let found = shared
        .found
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let states = shared.states.load(Ordering::Relaxed);
    let stats = Stats {
        states,
        transitions: shared.transitions.load(Ordering::Relaxed),
        max_depth: shared.depth.load(Ordering::Relaxed),
        elapsed: began.elapsed(),
        complete: found.is_none() && states < limits.max_states,
    };
    (
        stats,
        found.map(|(events, violation)| Counterexample { events, violation }),
    )
}

fn worker<M: Model>(model: &M, shared: &Shared<M::State, M::Event>, max_states: u64) {
    let mut events = Vec::new();
    let mut fresh: Vec<Node<M::State, M::Event>> = Vec::new();
    loop {
        let node = {
            let mut stack = shared.stack.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(n) = stack.pop() {
                    shared.busy.fetch_add(1, Ordering::SeqCst);
                    break n;
                }
                if shared.busy.load(Ordering::SeqCst) == 0 {
                    // Nothing to do and nobody who could make more: done.
                    shared.wake.notify_all();
                    return;
                }
                stack = shared
                    .wake
                    .wait_timeout(stack, Duration::from_millis(20))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        if shared.states.fetch_add(1, Ordering::Relaxed) >= max_states {
            shared.stop.store(true, Ordering::Relaxed);
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            shared.wake.notify_all();
            return;
        }
        let depth = node.trace.as_ref().map_or(0, |t| t.depth);
        shared.depth.fetch_max(depth, Ordering::Relaxed);
        events.clear();
        model.events(&node.state, &mut events);
        for e in events.drain(..) {
            shared.transitions.fetch_add(1, Ordering::Relaxed);
            match model.step(&node.state, &e) {
                Ok(next) => {
                    if shared.first_sight(fingerprint(&next)) {
                        fresh.push(Node {
                            state: next,
                            trace: Some(Arc::new(Trace {
                                event: e,
                                parent: node.trace.clone(),
                                depth: depth + 1,
                            })),
                        });
                    }
                }
                Err(violation) => {
                    let mut run = unwind(node.trace.as_ref());
                    run.push(e);
                    let mut found = shared.found.lock().unwrap_or_else(PoisonError::into_inner);
                    if found.is_none() {
                        *found = Some((run, violation));
                    }
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        {
            let mut stack = shared.stack.lock().unwrap_or_else(PoisonError::into_inner);
            // Reversed, so the first event's successor is expanded first.
            stack.extend(fresh.drain(..).rev());
            shared.busy.fetch_sub(1, Ordering::SeqCst);
        }
        shared.wake.notify_all();
    }
}

/// Replays `events` from the root: the state reached, or the index of the event that broke a
/// property and how. An event the state does not allow is an error too.
pub fn replay<M: Model>(model: &M, events: &[M::Event]) -> Result<M::State, (usize, String)> {
    let mut state = model.root();
    let mut allowed = Vec::new();
    for (i, e) in events.iter().enumerate() {
        allowed.clear();
        model.events(&state, &mut allowed);
        let name = format!("{e:?}");
        if !allowed.iter().any(|a| format!("{a:?}") == name) {
            return Err((i, format!("event {name} is not allowed here")));
        }
        state = model.step(&state, e).map_err(|v| (i, v))?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two counters that each go up to 3; the property: their sum never reaches `bad`.
    struct Counters {
        bad: u8,
    }

    impl Model for Counters {
        type State = (u8, u8);
        type Event = u8;

        fn root(&self) -> (u8, u8) {
            (0, 0)
        }

        fn events(&self, s: &(u8, u8), out: &mut Vec<u8>) {
            if s.0 < 3 {
                out.push(0);
            }
            if s.1 < 3 {
                out.push(1);
            }
        }

        fn step(&self, s: &(u8, u8), e: &u8) -> Result<(u8, u8), String> {
            let next = if *e == 0 {
                (s.0 + 1, s.1)
            } else {
                (s.0, s.1 + 1)
            };
            if next.0 + next.1 >= self.bad {
                return Err(format!("sum {}", next.0 + next.1));
            }
            Ok(next)
        }
    }

    #[test]
    fn every_state_once_and_the_counterexample_replays() {
        for threads in [1, 2, 4] {
            let limits = Limits {
                threads,
                max_states: u64::MAX,
            };
            let (stats, found) = explore(&Counters { bad: 99 }, limits);
            assert!(found.is_none());
            assert_eq!(stats.states, 16, "4 × 4 states, each once");
            assert_eq!(stats.max_depth, 6);
            assert!(stats.complete);
            let (stats, found) = explore(&Counters { bad: 5 }, limits);
            let c = found.expect("a sum of 5 is reachable");
            assert!(!stats.complete);
            assert_eq!(c.events.len(), 5);
            assert_eq!(c.violation, "sum 5");
            let model = Counters { bad: 5 };
            let at = replay(&model, &c.events).expect_err("the replay breaks it too");
            assert_eq!(at, (4, "sum 5".to_string()));
        }
    }

    #[test]
    fn a_state_limit_makes_the_search_incomplete() {
        let limits = Limits {
            threads: 1,
            max_states: 5,
        };
        let (stats, found) = explore(&Counters { bad: 99 }, limits);
        assert!(found.is_none());
        assert!(!stats.complete);
    }
}
