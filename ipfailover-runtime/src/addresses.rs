//! The addresses a daemon moves: adding and removing them through the host's back end
//! (rtnetlink, ifconfig), what each last met, and the kernel's address events.
//!
//! Every address has a held flag (on its interface, as far as our own operations and the
//! kernel's events tell) and the error of its last add or remove. A driver adds and removes
//! them itself ([`Addresses::add_all`], [`Addresses::remove`]), or asks the runtime to keep
//! one on its interface ([`Addresses::hold`]): an add that fails is then tried again after
//! [`ADD_RETRY_FIRST`], twice as long each time up to [`ADD_RETRY_MAX`], the one policy the
//! pair's core applies to its own retries; and a kept address removed by hand is added again
//! at once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use ipfailover::failover::{ADD_RETRY_FIRST, ADD_RETRY_MAX};
use ipfailover_os::addrs::{self, AddressBackend, ResolvedPair};
use mio::{Registry, Token};

use crate::status::Dirty;
use crate::StartError;

/// Links are looked at this often even without the kernel's events.
pub const LINK_LOOK_EVERY: Duration = Duration::from_secs(1);

/// The kernel's address events.
pub(crate) const ADDRESS_EVENTS: Token = Token(5);

/// One address and what is known of it.
#[derive(Debug, Clone)]
pub struct Entry {
    pair: ResolvedPair,
    held: bool,
    error: Option<String>,
    /// Kept on its interface by the runtime ([`Addresses::hold`]).
    keep: bool,
    /// The next retry of a kept address that is not on its interface, and the wait before it.
    retry: Option<(Instant, Duration)>,
}

impl Entry {
    /// The address, its interface and prefix.
    pub fn pair(&self) -> &ResolvedPair {
        &self.pair
    }

    /// Whether it is on its interface, as far as our operations and the kernel's events tell.
    pub fn held(&self) -> bool {
        self.held
    }

    /// What went wrong the last time it was added or removed, or that it vanished.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the runtime keeps it on its interface ([`Addresses::hold`]).
    pub fn kept(&self) -> bool {
        self.keep
    }
}

/// What one add or remove met: `Ok(true)` done, `Ok(false)` nothing to do, or the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The address.
    pub pair: ResolvedPair,
    /// What happened.
    pub result: Result<bool, String>,
}

/// An address the kernel no longer shows on its interface while we held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The address.
    pub addr: IpAddr,
    /// Its interface.
    pub iface: String,
}

/// The addresses, the back end, and the kernel's events.
#[derive(Debug)]
pub struct Addresses {
    registry: Registry,
    backend: Option<Box<dyn AddressBackend>>,
    entries: Vec<Entry>,
    #[cfg(target_os = "linux")]
    events: Option<ipfailover_os::AddressEvents>,
    /// The addresses whose interface's link was down at the last look (`None`: not looked).
    links_down: Option<Vec<IpAddr>>,
    links_looked: Option<Instant>,
    /// The kernel said something changed: look at what is held this turn.
    changed: bool,
    dirty: Dirty,
}

impl Addresses {
    pub(crate) fn new(registry: Registry, dirty: Dirty) -> Addresses {
        Addresses {
            registry,
            backend: None,
            entries: Vec::new(),
            #[cfg(target_os = "linux")]
            events: None,
            links_down: None,
            links_looked: None,
            changed: false,
            dirty,
        }
    }

    /// Opens the host's back end (rtnetlink on Linux, ifconfig on macOS).
    pub fn open(&mut self) -> Result<(), StartError> {
        let backend =
            addrs::default_backend().map_err(|e| StartError::other("address back end", e))?;
        self.backend = Some(backend);
        Ok(())
    }

    /// Follows the kernel's address events. Where the kernel will not give them, a warning
    /// says what is lost (`without`).
    pub fn follow(&mut self, without: &str) -> Result<(), StartError> {
        #[cfg(target_os = "linux")]
        match ipfailover_os::AddressEvents::new() {
            Ok(events) => {
                let fd = events.fd();
                self.registry
                    .register(
                        &mut mio::unix::SourceFd(&fd),
                        ADDRESS_EVENTS,
                        mio::Interest::READABLE,
                    )
                    .map_err(|e| StartError::other("poll", e))?;
                self.events = Some(events);
            }
            Err(e) => log::warn!("cannot follow the kernel's address changes ({e}): {without}"),
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (without, &self.registry);
        Ok(())
    }

    /// Takes these addresses, none held, without errors (what was set before is forgotten).
    pub fn set(&mut self, pairs: Vec<ResolvedPair>) {
        self.entries = pairs
            .into_iter()
            .map(|pair| Entry {
                pair,
                held: false,
                error: None,
                keep: false,
                retry: None,
            })
            .collect();
        self.dirty.mark();
    }

    /// The addresses, in the order they were set.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// One address.
    pub fn get(&self, addr: IpAddr) -> Option<&Entry> {
        self.entries.iter().find(|e| e.pair.addr == addr)
    }

    fn entry_mut(&mut self, addr: IpAddr) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.pair.addr == addr)
    }

    fn backend(&mut self) -> std::io::Result<&mut Box<dyn AddressBackend>> {
        self.backend.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotConnected, "no address back end")
        })
    }

    /// Whether the interface holds `pair` now, as the back end reads it.
    pub fn holds_now(&mut self, pair: &ResolvedPair) -> std::io::Result<bool> {
        self.backend()?.holds(pair)
    }

    /// Records that `addr` is (or is not) on its interface, as found at start.
    pub fn mark_held(&mut self, addr: IpAddr, held: bool) {
        if let Some(e) = self.entry_mut(addr) {
            e.held = held;
        }
        self.dirty.mark();
    }

    /// Removes `pair` without a word: for what a previous run left behind, which the driver
    /// tells in its own words.
    pub fn remove_unlogged(&mut self, pair: &ResolvedPair) -> std::io::Result<bool> {
        self.backend()?.remove(pair)
    }

    /// Adds `addr` to its interface (idempotent) and logs what it met: an error once per
    /// change of outcome, not at every retry.
    pub fn add(&mut self, addr: IpAddr) -> Option<Outcome> {
        let i = self.entries.iter().position(|e| e.pair.addr == addr)?;
        self.add_at(i)
    }

    /// Adds every address; what each met, in order.
    pub fn add_all(&mut self) -> Vec<Outcome> {
        (0..self.entries.len())
            .filter_map(|i| self.add_at(i))
            .collect()
    }

    fn add_at(&mut self, i: usize) -> Option<Outcome> {
        let pair = self.entries.get(i)?.pair.clone();
        let result = self.backend().and_then(|b| b.add(&pair));
        self.dirty.mark();
        let e = self.entries.get_mut(i)?;
        let p = &pair;
        let failed = result.as_ref().err().map(ToString::to_string);
        // Logged once per change of outcome, not at every retry.
        let repeated = failed.is_some() && failed == e.error;
        e.error.clone_from(&failed);
        match &result {
            Ok(true) => {
                e.held = true;
                log::info!("added {}/{} to {}", p.addr, p.prefix, p.iface);
            }
            Ok(false) => {
                e.held = true;
                log::info!("{} was already on {}", p.addr, p.iface);
            }
            Err(err) => {
                e.held = false;
                if !repeated {
                    log::error!(
                        "adding {}/{} to {}: {err} (retried while the addresses are held)",
                        p.addr,
                        p.prefix,
                        p.iface
                    );
                }
            }
        }
        Some(Outcome {
            pair,
            result: result.map_err(|err| err.to_string()),
        })
    }

    /// Removes `addr` from its interface (idempotent) and logs what it met. The runtime no
    /// longer keeps it.
    pub fn remove(&mut self, addr: IpAddr) -> Option<Outcome> {
        let i = self.entries.iter().position(|e| e.pair.addr == addr)?;
        self.remove_at(i)
    }

    /// Removes every address; what each met, in order.
    pub fn remove_all(&mut self) -> Vec<Outcome> {
        (0..self.entries.len())
            .filter_map(|i| self.remove_at(i))
            .collect()
    }

    /// Removes every address that is held (at once, at a hurried exit).
    pub fn remove_held(&mut self) {
        for i in 0..self.entries.len() {
            if self.entries.get(i).is_some_and(|e| e.held) {
                self.remove_at(i);
            }
        }
    }

    fn remove_at(&mut self, i: usize) -> Option<Outcome> {
        let pair = self.entries.get(i)?.pair.clone();
        let result = self.backend().and_then(|b| b.remove(&pair));
        self.dirty.mark();
        let e = self.entries.get_mut(i)?;
        e.keep = false;
        e.retry = None;
        let p = &pair;
        e.error = result.as_ref().err().map(ToString::to_string);
        match &result {
            Ok(true) => {
                e.held = false;
                log::info!("removed {} from {}", p.addr, p.iface);
            }
            Ok(false) => {
                e.held = false;
                log::info!("{} was not on {}", p.addr, p.iface);
            }
            Err(err) => log::error!("removing {} from {}: {err}", p.addr, p.iface),
        }
        Some(Outcome {
            pair,
            result: result.map_err(|err| err.to_string()),
        })
    }

    /// Adds `addr` and keeps it on its interface until [`Addresses::remove`] or
    /// [`Addresses::keep`]`(addr, false)`: a failed add is retried with back-off, and the
    /// address is added again at once if the kernel says it vanished.
    pub fn hold(&mut self, now: Instant, addr: IpAddr) -> Option<Outcome> {
        let outcome = self.add(addr)?;
        if let Some(e) = self.entry_mut(addr) {
            e.keep = true;
            e.retry = match outcome.result {
                Ok(_) => None,
                Err(_) => Some((now + ADD_RETRY_FIRST, ADD_RETRY_FIRST)),
            };
        }
        Some(outcome)
    }

    /// Stops (or starts) keeping `addr` without adding or removing it: an address being given
    /// up is not added again.
    pub fn keep(&mut self, addr: IpAddr, keep: bool) {
        if let Some(e) = self.entry_mut(addr) {
            e.keep = keep;
            if !keep {
                e.retry = None;
            }
        }
    }

    /// When the next retry of a kept address is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let links = self.links_looked.map(|t| t + LINK_LOOK_EVERY);
        self.entries
            .iter()
            .filter(|e| e.keep && !e.held)
            .filter_map(|e| e.retry.map(|(at, _)| at))
            .chain(links.filter(|_| !self.entries.is_empty()))
            .min()
    }

    /// Tries again each kept address whose retry is due; the addresses that are back.
    pub(crate) fn retry_due(&mut self, now: Instant) -> Vec<IpAddr> {
        let due: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|e| e.keep && !e.held && e.retry.is_some_and(|(at, _)| now >= at))
            .map(|e| e.pair.addr)
            .collect();
        let mut back = Vec::new();
        for addr in due {
            let ok = self.add(addr).is_some_and(|o| o.result.is_ok());
            if let Some(e) = self.entry_mut(addr) {
                if ok {
                    e.retry = None;
                    log::info!("{addr} added on a retry");
                    back.push(addr);
                } else {
                    let wait = e.retry.map_or(ADD_RETRY_FIRST, |(_, w)| {
                        if w.is_zero() {
                            ADD_RETRY_FIRST
                        } else {
                            (w * 2).min(ADD_RETRY_MAX)
                        }
                    });
                    e.retry = Some((now + wait, wait));
                }
            }
        }
        back
    }

    /// The poll said the kernel's event socket is readable.
    pub(crate) fn readable(&mut self) {
        self.changed = true;
    }

    /// Reads the kernel's pending events: whether anything changed since the last turn.
    pub(crate) fn take_events(&mut self) -> bool {
        std::mem::take(&mut self.changed) && self.drain_events()
    }

    /// The addresses whose interface's link is down, when that set changed: after the
    /// kernel's events, and at least every [`LINK_LOOK_EVERY`] (where there are no events, or
    /// one was missed). `None`: no change, or nothing to follow.
    pub(crate) fn check_links(&mut self, now: Instant, changed: bool) -> Option<Vec<IpAddr>> {
        if self.entries.is_empty() {
            return None;
        }
        if !changed && self.links_looked.is_some_and(|t| now < t + LINK_LOOK_EVERY) {
            return None;
        }
        self.links_looked = Some(now);
        let (links, _) = match ipfailover_os::interfaces::links_and_addrs() {
            Ok(l) => l,
            Err(e) => {
                log::debug!("reading the links' state: {e}");
                return None;
            }
        };
        let down: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|e| links.get(&e.pair.iface) == Some(&false))
            .map(|e| e.pair.addr)
            .collect();
        if self.links_down.as_ref() == Some(&down) {
            return None;
        }
        self.links_down = Some(down.clone());
        self.dirty.mark();
        Some(down)
    }

    /// The addresses whose link was down at the last look.
    pub fn links_down(&self) -> &[IpAddr] {
        self.links_down.as_deref().unwrap_or(&[])
    }

    /// After the kernel's address events (`changed`): the held addresses gone from their
    /// interfaces (one look at every address of the host, however many we hold). Each is
    /// marked not held, with why; a kept one is added again this turn.
    pub(crate) fn check_missing(&mut self, now: Instant, changed: bool) -> Vec<Missing> {
        if !changed {
            return Vec::new();
        }
        if !self.entries.iter().any(|e| e.held) {
            return Vec::new();
        }
        let present: BTreeSet<(String, IpAddr)> = match ipfailover_os::local_addrs() {
            Ok(locals) => locals.into_iter().map(|l| (l.iface, l.addr)).collect(),
            Err(e) => {
                log::warn!("reading this host's addresses: {e}");
                return Vec::new();
            }
        };
        let mut missing = Vec::new();
        for e in &mut self.entries {
            if e.held && !present.contains(&(e.pair.iface.clone(), e.pair.addr)) {
                e.held = false;
                e.error = Some(format!(
                    "removed from {} behind failoverd's back",
                    e.pair.iface
                ));
                if e.keep {
                    e.retry = Some((now, Duration::ZERO));
                }
                missing.push(Missing {
                    addr: e.pair.addr,
                    iface: e.pair.iface.clone(),
                });
            }
        }
        if !missing.is_empty() {
            self.dirty.mark();
        }
        missing
    }

    /// Reads the pending notifications; whether there was any.
    fn drain_events(&mut self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.events.as_mut().is_some_and(|ev| ev.drain())
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }
}
