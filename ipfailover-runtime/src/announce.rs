//! Announcements (gratuitous ARP, unsolicited neighbour advertisements): rounds repeated on
//! the schedule of [`AnnounceRound`], several at once, each replacing only its own.
//!
//! A round in our own name announces an address the runtime moves ([`crate::Addresses`])
//! only while it is on its interface: announcing an address that could not be added would
//! send the LAN to a host that does not answer for it. A round on behalf of another host
//! (the hand-back of an address to the host that answers for it) names that host's MAC.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use ipfailover::announce::AnnounceRound;
use ipfailover_os::announce::Announcers;

use crate::addresses::Addresses;

/// Which round: several may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoundId {
    /// The driver's round over a set of addresses (heartbeatd's own, a pair's held ones).
    Own,
    /// A round for one address (a group member's).
    Address(IpAddr),
    /// Addresses given up, announced in the name of the host that now answers for them.
    HandBack,
}

#[derive(Debug)]
struct Round {
    /// (interface, address) to announce at each step.
    targets: Vec<(String, IpAddr)>,
    /// Whose MAC to name; `None`: the interface's own.
    mac: Option<[u8; 6]>,
    round: AnnounceRound,
}

/// The announcement sockets, one per interface, and the rounds under way.
#[derive(Debug, Default)]
pub struct Announcements {
    announcers: Announcers,
    rounds: BTreeMap<RoundId, Round>,
    /// When each address was last announced in our own name (sent without an error).
    last: BTreeMap<IpAddr, Instant>,
}

impl Announcements {
    /// Starts (or restarts) round `id` at `now` over `targets`, in the name of `mac` (another
    /// host's) or our own. The first steps are sent at the end of this turn.
    pub fn start(
        &mut self,
        id: RoundId,
        now: Instant,
        targets: Vec<(String, IpAddr)>,
        mac: Option<[u8; 6]>,
    ) {
        let mut round = AnnounceRound::new();
        round.start(now);
        self.rounds.insert(
            id,
            Round {
                targets,
                mac,
                round,
            },
        );
    }

    /// Stops round `id`.
    pub fn stop(&mut self, id: RoundId) {
        self.rounds.remove(&id);
    }

    /// Announces `addr` on `iface` once, now (a defence, outside any round).
    pub fn announce_once(&mut self, iface: &str, addr: IpAddr) {
        // The announcer's error names the address and the interface.
        match self.announcers.announce(iface, addr) {
            Ok(()) => {
                self.last.insert(addr, ipfailover_os::clock::now());
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    /// When `addr` was last announced in our own name, if it was.
    pub fn last_of(&self, addr: IpAddr) -> Option<Instant> {
        self.last.get(&addr).copied()
    }

    /// When anything was last announced in our own name, if anything was.
    pub fn last(&self) -> Option<Instant> {
        self.last.values().max().copied()
    }

    /// When the next step of a round is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.rounds
            .values()
            .filter_map(|r| r.round.next_deadline())
            .min()
    }

    /// Sends the steps due at `now`; rounds that are over are dropped.
    pub(crate) fn run_due(&mut self, now: Instant, addresses: &Addresses) {
        let Announcements {
            announcers,
            rounds,
            last,
        } = self;
        for round in rounds.values_mut() {
            for _ in 0..round.round.due(now) {
                for (iface, addr) in &round.targets {
                    match round.mac {
                        Some(mac) => {
                            if let Err(e) = announcers.announce_as(iface, *addr, Some(mac)) {
                                log::debug!("{e}");
                            }
                        }
                        None => {
                            if addresses.get(*addr).is_some_and(|e| !e.held()) {
                                continue;
                            }
                            match announcers.announce(iface, *addr) {
                                Ok(()) => {
                                    last.insert(*addr, now);
                                    log::debug!("announced {addr} on {iface}");
                                }
                                // The announcer's error names the address and the interface.
                                Err(e) => log::warn!("{e}"),
                            }
                        }
                    }
                }
            }
        }
        rounds.retain(|_, r| r.round.next_deadline().is_some());
    }
}
