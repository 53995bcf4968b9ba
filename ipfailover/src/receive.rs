//! What a received datagram means: decode, authenticate, check for replay, check who sent it.
//!
//! Pure: the shell hands in the bytes, the source address and its wall clock. A dropped
//! datagram is counted by reason and never becomes an event.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::wire::{self, DropReason, Key, Kind, Message, ReplayGuard};

/// Counter name for valid datagrams from a host that is not the watched peer (our own
/// heartbeats in a peering set-up, or another pair's).
pub const NOT_PEER: &str = "not-peer";

/// A datagram that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A heartbeat; `interval` is what the sender announced (`None`: Apple's bare datagram).
    Heartbeat {
        /// The sender's interval.
        interval: Option<Duration>,
    },
    /// The sender is stopping.
    Goodbye,
    /// The secondary released our addresses.
    Released,
}

/// Datagram counters: accepted, and dropped by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that passed every check.
    pub accepted: u64,
    /// Datagrams dropped, by reason (`DropReason::as_str` names, and [`NOT_PEER`]).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// Every dropped datagram, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// It failed a check of the wire format.
    Invalid(DropReason),
    /// It is valid but not from the peer we watch.
    NotPeer,
}

/// Turns datagrams into [`Incoming`] for one daemon.
#[derive(Debug)]
pub struct Receiver {
    key: Option<Key>,
    replay: ReplayGuard,
    peer: Option<IpAddr>,
    counters: Counters,
}

impl Receiver {
    /// `peer`: accept only datagrams naming this address among the sender's identity addresses
    /// (failoverd); `None` accepts any valid sender (heartbeatd, for `released`).
    pub fn new(key: Option<Key>, peer: Option<IpAddr>) -> Receiver {
        Receiver {
            key,
            replay: ReplayGuard::new(),
            peer,
            counters: Counters::default(),
        }
    }

    /// Replaces the key (SIGHUP); the replay state goes with the old key.
    pub fn set_key(&mut self, key: Option<Key>) {
        self.key = key;
        self.replay.forget();
    }

    /// Changes the watched peer (SIGHUP).
    pub fn set_peer(&mut self, peer: Option<IpAddr>) {
        self.peer = peer;
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Checks one datagram from `src`, received when the wall clock read `now_wall_ms`.
    pub fn receive(
        &mut self,
        buf: &[u8],
        src: IpAddr,
        now_wall_ms: u64,
    ) -> Result<Incoming, Rejected> {
        let result = self.check(buf, src, now_wall_ms);
        match result {
            Ok(_) => self.counters.accepted += 1,
            Err(Rejected::Invalid(r)) => self.counters.drop(r.as_str()),
            Err(Rejected::NotPeer) => self.counters.drop(NOT_PEER),
        }
        result
    }

    fn check(&mut self, buf: &[u8], src: IpAddr, now_wall_ms: u64) -> Result<Incoming, Rejected> {
        match wire::decode(buf, self.key.as_ref()).map_err(Rejected::Invalid)? {
            // Apple's bare datagram names nobody: it counts when it comes from the peer's address.
            Message::Legacy => match self.peer {
                Some(p) if p == src => Ok(Incoming::Heartbeat { interval: None }),
                Some(_) => Err(Rejected::NotPeer),
                None => Err(Rejected::NotPeer),
            },
            Message::V1 {
                datagram,
                authenticated,
            } => {
                self.replay
                    .check(&datagram, authenticated, now_wall_ms)
                    .map_err(Rejected::Invalid)?;
                if let Some(p) = self.peer {
                    if !datagram.addrs.contains(&p) {
                        return Err(Rejected::NotPeer);
                    }
                }
                Ok(match datagram.kind {
                    Kind::Heartbeat => Incoming::Heartbeat {
                        interval: Some(Duration::from_millis(u64::from(datagram.interval_ms))),
                    },
                    Kind::Goodbye => Incoming::Goodbye,
                    Kind::Released => Incoming::Released,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, Datagram};

    const NOW: u64 = 1_800_000_000_000;

    fn peer() -> IpAddr {
        "198.51.100.10".parse().unwrap()
    }

    fn dgram(kind: Kind, seq: u64, addrs: Vec<IpAddr>) -> Datagram {
        Datagram {
            kind,
            interval_ms: 100,
            boot_id: 7,
            seq,
            time_ms: NOW,
            hostname: "pri".into(),
            addrs,
        }
    }

    #[test]
    fn accepts_the_peer_and_counts_the_rest() {
        let key = Key::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let mut r = Receiver::new(Some(key.clone()), Some(peer()));
        let src = peer();
        let hb = encode(&dgram(Kind::Heartbeat, 1, vec![peer()]), Some(&key));
        assert_eq!(
            r.receive(&hb, src, NOW),
            Ok(Incoming::Heartbeat {
                interval: Some(Duration::from_millis(100))
            })
        );
        // The same bytes again: a replay.
        assert_eq!(
            r.receive(&hb, src, NOW),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        // Another host's heartbeat (our own, in a peering set-up).
        let own = encode(
            &dgram(Kind::Heartbeat, 2, vec!["198.51.100.20".parse().unwrap()]),
            Some(&key),
        );
        assert_eq!(r.receive(&own, src, NOW), Err(Rejected::NotPeer));
        // A forged one.
        let wrong = Key::new(b"another key, sixteen bytes or more".to_vec());
        let forged = encode(&dgram(Kind::Goodbye, 3, vec![peer()]), Some(&wrong));
        assert_eq!(
            r.receive(&forged, src, NOW),
            Err(Rejected::Invalid(DropReason::BadTag))
        );
        // An unauthenticated one.
        let bare = encode(&dgram(Kind::Goodbye, 4, vec![peer()]), None);
        assert_eq!(
            r.receive(&bare, src, NOW),
            Err(Rejected::Invalid(DropReason::MissingTag))
        );
        // Apple's bare datagram is refused when a secret is set.
        assert_eq!(
            r.receive(b"heartbeat", src, NOW),
            Err(Rejected::Invalid(DropReason::MissingTag))
        );
        let gb = encode(&dgram(Kind::Goodbye, 5, vec![peer()]), Some(&key));
        assert_eq!(r.receive(&gb, src, NOW), Ok(Incoming::Goodbye));
        let c = r.counters();
        assert_eq!(c.accepted, 2);
        assert_eq!(c.dropped.get("replay"), Some(&1));
        assert_eq!(c.dropped.get(NOT_PEER), Some(&1));
        assert_eq!(c.dropped.get("bad-tag"), Some(&1));
        assert_eq!(c.dropped.get("missing-tag"), Some(&2));
        assert_eq!(c.dropped_total(), 5);
    }

    #[test]
    fn legacy_heartbeat_counts_from_the_peer_address_only() {
        let mut r = Receiver::new(None, Some(peer()));
        assert_eq!(
            r.receive(b"heartbeat", peer(), NOW),
            Ok(Incoming::Heartbeat { interval: None })
        );
        assert_eq!(
            r.receive(b"heartbeat", "198.51.100.30".parse().unwrap(), NOW),
            Err(Rejected::NotPeer)
        );
    }

    #[test]
    fn without_a_peer_any_valid_sender_is_accepted() {
        let mut r = Receiver::new(None, None);
        let rel = encode(&dgram(Kind::Released, 1, vec![]), None);
        assert_eq!(
            r.receive(&rel, "203.0.113.20".parse().unwrap(), NOW),
            Ok(Incoming::Released)
        );
        assert_eq!(
            r.receive(b"junk", peer(), NOW),
            Err(Rejected::Invalid(DropReason::BadMagic))
        );
    }
}
