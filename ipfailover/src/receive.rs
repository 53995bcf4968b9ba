//! What a received datagram means: decode, authenticate, check who sent it, check that it is
//! fresh.
//!
//! Pure: the shell hands in the bytes, the source address and the time. A dropped datagram
//! is counted by reason and never becomes an event.
//!
//! Freshness never depends on the two hosts' clocks. With a secret, failoverd counts the
//! datagrams of one boot of the peer (its *verified* boot) and only those: a boot it has not
//! verified (the peer restarted, or failoverd did) counts once one of its datagrams echoes the
//! nonce of a challenge failoverd sent on every link. A captured datagram cannot echo a nonce
//! drawn after it was captured, so replays of an old boot, or of this boot from before a
//! restart of failoverd, never count; within the verified boot, the sequence window drops
//! replays. The wall clock in each datagram only tells the hosts' clock difference.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::{self, DropReason, Entry, Key, Kind, Message, ReplayGuard, Window};

/// Counter name for valid datagrams from a host that is not the watched peer (our own
/// heartbeats in a peering set-up, or another pair's).
pub const NOT_PEER: &str = "not-peer";

/// Challenges go out at most this often, however many unverified datagrams arrive: a flood
/// from a key holder cannot make failoverd flood.
pub const CHALLENGE_GAP: Duration = Duration::from_millis(10);

/// A datagram that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A heartbeat; `interval` is what the sender announced (`None`: Apple's bare datagram).
    Heartbeat {
        /// The sender's interval.
        interval: Option<Duration>,
        /// The sender's boot (0 for Apple's bare datagram).
        boot: u64,
        /// What the primary says of its addresses (`None`: Apple's bare datagram, which says
        /// nothing).
        report: Option<Report>,
    },
    /// The sender's heartbeatd is stopping.
    Goodbye {
        /// The sender's boot.
        boot: u64,
        /// Only the daemon stops: the host stays up and keeps its own addresses.
        stays_up: bool,
        /// What the primary still holds (its own addresses, if it stays up).
        report: Report,
    },
    /// The secondary's report of our addresses (heartbeatd).
    Released {
        /// The id of the release it reports (0: none), to acknowledge in our heartbeats.
        id: u64,
        /// The wait token it answers (0: none).
        token: u64,
        /// What it says of each of our addresses it would take over.
        entries: Vec<Entry>,
    },
    /// A secondary asks us to prove that we are alive: echo the nonce.
    Challenge {
        /// What to echo.
        nonce: u64,
    },
}

/// What the primary says of its addresses in a heartbeat or goodbye (wire version 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Each address it speaks of, with what it says.
    pub entries: Vec<Entry>,
    /// It had more addresses than fit: one it does not list may still be held.
    pub truncated: bool,
    /// Its wait token (0: it waits for nothing).
    pub token: u64,
    /// The id of the latest `released` it acted on (0: none).
    pub ack: u64,
}

impl Report {
    fn of(d: &wire::Datagram) -> Report {
        Report {
            entries: d.entries.clone(),
            truncated: d.truncated(),
            token: d.token,
            ack: d.ack,
        }
    }
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
    /// Every dropped datagram, whatever the reason (saturating: a counter never wraps).
    pub fn dropped_total(&self) -> u64 {
        self.dropped
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    fn drop(&mut self, reason: &'static str) {
        let n = self.dropped.entry(reason).or_insert(0);
        *n = n.saturating_add(1);
    }
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// It failed a check of the wire format or of freshness.
    Invalid(DropReason),
    /// It is valid but not from the peer we watch.
    NotPeer,
}

/// A challenge to send: its nonce, and the peer's identity addresses, one per link it sends
/// on, which it goes to besides the sources heard from (a link may carry the peer's
/// datagrams one way only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The nonce the peer must echo.
    pub nonce: u64,
    /// The peer's identity addresses, as its latest unverified datagram named them.
    pub to: Vec<IpAddr>,
}

/// A challenge sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Pending {
    nonce: u64,
    /// After this instant an echo of `nonce` no longer counts, and a new nonce is drawn.
    expires: Instant,
}

/// The watched peer's freshness, with a secret.
#[derive(Debug, Default, Clone, Hash)]
struct Freshness {
    /// The boot of the peer whose datagrams count, and its sequence window: never evicted.
    verified: Option<(u64, Window)>,
    pending: Option<Pending>,
    /// An unverified datagram of the peer arrived since the last challenge went out.
    wanted: bool,
    /// The identity addresses that datagram named.
    wanted_to: Vec<IpAddr>,
    last_sent: Option<Instant>,
}

/// Turns datagrams into [`Incoming`] for one daemon.
#[derive(Debug, Clone)]
pub struct Receiver {
    key: Option<Key>,
    peer: Option<IpAddr>,
    /// Without a secret, or without a peer (heartbeatd): per-boot windows against duplicates.
    replay: ReplayGuard,
    fresh: Freshness,
    counters: Counters,
    /// The peer's wall clock minus ours, at its latest accepted datagram.
    clock_offset_ms: Option<i64>,
    /// The host name in the peer's latest accepted datagram, printable characters only.
    peer_hostname: Option<String>,
}

/// What decides the fate of the next datagrams: the peer watched, the replay windows and the
/// freshness (not the key, the counters, or the clock difference and host name, which are only
/// reported). A model checker hashes the receiver with the daemon that owns it.
impl std::hash::Hash for Receiver {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.peer.hash(state);
        self.replay.hash(state);
        self.fresh.hash(state);
    }
}

impl Receiver {
    /// `peer`: accept only datagrams naming this address among the sender's identity addresses
    /// (failoverd); `None` accepts any valid sender (heartbeatd, for `released` and
    /// challenges).
    pub fn new(key: Option<Key>, peer: Option<IpAddr>) -> Receiver {
        Receiver {
            key,
            peer,
            replay: ReplayGuard::new(),
            fresh: Freshness::default(),
            counters: Counters::default(),
            clock_offset_ms: None,
            peer_hostname: None,
        }
    }

    /// Replaces the key (SIGHUP, every time: a key rewritten in place is a new key). The
    /// replay and freshness state go with the old key: the peer proves itself again, one
    /// round trip.
    pub fn set_key(&mut self, key: Option<Key>) {
        self.key = key;
        self.replay.forget();
        self.fresh = Freshness::default();
    }

    /// Changes the watched peer (SIGHUP); a new peer must prove itself fresh.
    pub fn set_peer(&mut self, peer: Option<IpAddr>) {
        if peer != self.peer {
            self.fresh = Freshness::default();
            self.clock_offset_ms = None;
            self.peer_hostname = None;
        }
        self.peer = peer;
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The peer's wall clock minus ours, in ms, as of its latest accepted datagram: reported,
    /// never a reason to drop.
    pub fn peer_clock_offset_ms(&self) -> Option<i64> {
        self.clock_offset_ms
    }

    /// The peer's host name, as its latest accepted datagram gave it (control characters
    /// dropped: it ends up in logs, mail subjects and terminals).
    pub fn peer_hostname(&self) -> Option<&str> {
        self.peer_hostname.as_deref()
    }

    /// Whether the peer's current boot has proved itself fresh (always true without a secret,
    /// which gives no freshness to prove).
    pub fn peer_verified(&self) -> bool {
        self.key.is_none() || self.fresh.verified.is_some()
    }

    /// Checks one datagram from `src`, received at `now` when the wall clock read `wall_ms`.
    pub fn receive(
        &mut self,
        buf: &[u8],
        src: IpAddr,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Incoming, Rejected> {
        let result = self.check(buf, src, now, wall_ms);
        match result {
            Ok(_) => self.counters.accepted = self.counters.accepted.saturating_add(1),
            Err(Rejected::Invalid(r)) => self.counters.drop(r.as_str()),
            Err(Rejected::NotPeer) => self.counters.drop(NOT_PEER),
        }
        result
    }

    /// If an unverified datagram of the peer asks for one, a challenge to send now on every
    /// link: the pending nonce while it lives (`lifetime` from when it was drawn), else a new
    /// one from `draw`. `None`: nothing to send, or one went out within [`CHALLENGE_GAP`].
    pub fn challenge(
        &mut self,
        now: Instant,
        lifetime: Duration,
        draw: impl FnOnce() -> u64,
    ) -> Option<Challenge> {
        let f = &mut self.fresh;
        if !f.wanted || f.last_sent.is_some_and(|t| now < t + CHALLENGE_GAP) {
            return None;
        }
        f.wanted = false;
        f.last_sent = Some(now);
        let nonce = match f.pending {
            Some(p) if now < p.expires => p.nonce,
            _ => {
                // Zero means "no echo" on the wire.
                let nonce = draw().max(1);
                f.pending = Some(Pending {
                    nonce,
                    expires: now + lifetime,
                });
                nonce
            }
        };
        Some(Challenge {
            nonce,
            to: std::mem::take(&mut f.wanted_to),
        })
    }

    fn check(
        &mut self,
        buf: &[u8],
        src: IpAddr,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Incoming, Rejected> {
        let (d, authenticated) =
            match wire::decode(buf, self.key.as_ref()).map_err(Rejected::Invalid)? {
                // Apple's bare datagram names nobody: it counts when it comes from the peer's address.
                Message::Legacy => {
                    return match self.peer {
                        Some(p) if p == src => Ok(Incoming::Heartbeat {
                            interval: None,
                            boot: 0,
                            report: None,
                        }),
                        _ => Err(Rejected::NotPeer),
                    }
                }
                Message::Ipfo {
                    datagram,
                    authenticated,
                } => (datagram, authenticated),
            };
        let Some(peer) = self.peer else {
            return self.check_for_heartbeatd(d, authenticated);
        };
        match d.kind {
            Kind::Heartbeat | Kind::Goodbye => {}
            // failoverd sends these; another failoverd's are not news to us.
            Kind::Released | Kind::Challenge => return Err(Rejected::NotPeer),
        }
        // The sender is checked first: only the watched peer's datagrams touch its windows.
        if !d.identity().any(|a| a == peer) {
            return Err(Rejected::NotPeer);
        }
        if self.key.is_some() {
            self.check_fresh(&d, now)?;
        } else {
            self.replay.check(&d).map_err(Rejected::Invalid)?;
        }
        self.clock_offset_ms = Some(clock_offset(d.time_ms, wall_ms));
        if self.peer_hostname.as_deref() != Some(d.hostname.as_str()) {
            let clean: String = d.hostname.chars().filter(|c| !c.is_control()).collect();
            self.peer_hostname = (!clean.is_empty()).then_some(clean);
        }
        Ok(match d.kind {
            Kind::Goodbye => Incoming::Goodbye {
                boot: d.boot_id,
                stays_up: d.stays_up(),
                report: Report::of(&d),
            },
            _ => Incoming::Heartbeat {
                interval: Some(Duration::from_millis(u64::from(d.interval_ms))),
                boot: d.boot_id,
                report: Some(Report::of(&d)),
            },
        })
    }

    /// The peer's datagram counts if it is of the verified boot and new in its window, or if
    /// it proves a new boot fresh by echoing the pending challenge.
    fn check_fresh(&mut self, d: &wire::Datagram, now: Instant) -> Result<(), Rejected> {
        let f = &mut self.fresh;
        if let Some((boot, window)) = &mut f.verified {
            if *boot == d.boot_id {
                return if window.admit(d.seq) {
                    Ok(())
                } else {
                    Err(Rejected::Invalid(DropReason::Replay))
                };
            }
        }
        let answers = f
            .pending
            .is_some_and(|p| d.nonce != 0 && d.nonce == p.nonce && now < p.expires);
        if answers {
            // One verified boot at a time: a peer that restarted leaves its old boot behind,
            // and nothing of the old boot (its goodbye included) counts again.
            f.verified = Some((d.boot_id, Window::fresh_from(d.seq)));
            f.pending = None;
            f.wanted = false;
            return Ok(());
        }
        f.wanted = true;
        f.wanted_to = d.identity().collect();
        Err(Rejected::Invalid(DropReason::Unverified))
    }

    fn check_for_heartbeatd(
        &mut self,
        d: wire::Datagram,
        authenticated: bool,
    ) -> Result<Incoming, Rejected> {
        match d.kind {
            // Our own heartbeats, or another primary's, looped back to us.
            Kind::Heartbeat | Kind::Goodbye => Err(Rejected::NotPeer),
            // A challenge is only worth answering when it proves a key holder asked: without
            // a secret no secondary sends one.
            Kind::Challenge if !authenticated => Err(Rejected::NotPeer),
            // A replayed old challenge would make us echo a stale nonce instead of the one a
            // secondary waits for: each challenge counts once.
            Kind::Challenge => {
                self.replay.check(&d).map_err(Rejected::Invalid)?;
                Ok(Incoming::Challenge { nonce: d.nonce })
            }
            // Without a secret anyone may send one; it only makes us announce, or (answering
            // our wait token, which is on the wire in clear) add a service address, which an
            // unauthenticated pair cannot protect anyway.
            Kind::Released => {
                self.replay.check(&d).map_err(Rejected::Invalid)?;
                Ok(Incoming::Released {
                    id: d.nonce,
                    token: d.token,
                    entries: d.entries,
                })
            }
        }
    }
}

/// `theirs - ours` in ms, saturating.
fn clock_offset(theirs: u64, ours: u64) -> i64 {
    if theirs >= ours {
        i64::try_from(theirs - ours).unwrap_or(i64::MAX)
    } else {
        i64::try_from(ours - theirs).map_or(i64::MIN, |d| -d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, Datagram};

    const WALL: u64 = 1_800_000_000_000;

    fn peer() -> IpAddr {
        "198.51.100.10".parse().unwrap()
    }

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn dgram(kind: Kind, boot_id: u64, seq: u64, nonce: u64) -> Datagram {
        Datagram {
            interval_ms: 100,
            boot_id,
            seq,
            time_ms: WALL,
            nonce,
            hostname: "pri".into(),
            entries: vec![Entry::identity(peer(), [0; 6])],
            ..Datagram::new(kind)
        }
    }

    fn hb(boot: u64, seq: u64, nonce: u64) -> Vec<u8> {
        encode(&dgram(Kind::Heartbeat, boot, seq, nonce), Some(&key()))
    }

    /// A heartbeat of boot 7, as the receiver hands it on.
    #[allow(non_snake_case)]
    fn BEAT() -> Incoming {
        beat(7)
    }

    fn beat(boot: u64) -> Incoming {
        Incoming::Heartbeat {
            interval: Some(Duration::from_millis(100)),
            boot,
            report: Some(Report {
                entries: vec![Entry::identity(peer(), [0; 6])],
                ..Report::default()
            }),
        }
    }
    const UNVERIFIED: Result<Incoming, Rejected> = Err(Rejected::Invalid(DropReason::Unverified));

    /// A receiver for which boot 7 proved itself with seq 1.
    fn verified(t0: Instant) -> Receiver {
        let mut r = Receiver::new(Some(key()), Some(peer()));
        assert_eq!(r.receive(&hb(7, 1, 0), peer(), t0, WALL), UNVERIFIED);
        let c = r.challenge(t0, Duration::from_secs(1), || 99).unwrap();
        assert_eq!(c.nonce, 99);
        assert_eq!(
            c.to,
            vec![peer()],
            "to the addresses the peer names, on every link"
        );
        assert_eq!(r.receive(&hb(7, 2, c.nonce), peer(), t0, WALL), Ok(BEAT()));
        r
    }

    #[test]
    fn a_new_boot_counts_only_once_it_echoes_a_fresh_challenge() {
        let t0 = Instant::now();
        let mut r = Receiver::new(Some(key()), Some(peer()));
        assert!(!r.peer_verified());
        // Nothing of an unverified boot counts: not a heartbeat, not a goodbye, not a wrong
        // nonce, not an old nonce.
        assert_eq!(r.receive(&hb(7, 1, 0), peer(), t0, WALL), UNVERIFIED);
        let gb = encode(&dgram(Kind::Goodbye, 7, 2, 0), Some(&key()));
        assert_eq!(r.receive(&gb, peer(), t0, WALL), UNVERIFIED);
        // One challenge goes out, and not another within the gap.
        let n = r.challenge(t0, Duration::from_secs(1), || 5).unwrap().nonce;
        assert_eq!(r.challenge(t0, Duration::from_secs(1), || 6), None);
        assert_eq!(r.receive(&hb(7, 3, n + 1), peer(), t0, WALL), UNVERIFIED);
        assert_eq!(
            r.challenge(t0 + CHALLENGE_GAP, Duration::from_secs(1), || 6)
                .map(|c| c.nonce),
            Some(n),
            "the pending nonce is asked again while it lives"
        );
        // The echo counts, and from then on the boot's later datagrams do.
        assert_eq!(r.receive(&hb(7, 4, n), peer(), t0, WALL), Ok(BEAT()));
        assert!(r.peer_verified());
        assert_eq!(r.receive(&hb(7, 5, 0), peer(), t0, WALL), Ok(BEAT()));
        // Everything the boot sent before its proof is a replay now.
        assert_eq!(
            r.receive(&hb(7, 3, n + 1), peer(), t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        assert_eq!(
            r.receive(&gb, peer(), t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        assert_eq!(
            r.challenge(t0 + CHALLENGE_GAP * 9, Duration::from_secs(1), || 6),
            None
        );
    }

    #[test]
    fn an_echo_counts_only_while_its_challenge_lives() {
        let t0 = Instant::now();
        let mut r = Receiver::new(Some(key()), Some(peer()));
        let life = Duration::from_millis(500);
        assert_eq!(r.receive(&hb(7, 1, 0), peer(), t0, WALL), UNVERIFIED);
        let n = r.challenge(t0, life, || 5).unwrap().nonce;
        // Too late: a datagram echoing an expired nonce may have been held back and replayed.
        let late = t0 + life;
        assert_eq!(r.receive(&hb(7, 2, n), peer(), late, WALL), UNVERIFIED);
        assert_eq!(
            r.challenge(late, life, || 6).map(|c| c.nonce),
            Some(6),
            "a new nonce is drawn"
        );
        assert_eq!(r.receive(&hb(7, 3, n), peer(), late, WALL), UNVERIFIED);
        assert_eq!(r.receive(&hb(7, 4, 6), peer(), late, WALL), Ok(BEAT()));
    }

    #[test]
    fn a_restarted_peer_proves_itself_again_and_its_old_boot_never_counts_again() {
        let t0 = Instant::now();
        let mut r = verified(t0);
        let old_goodbye = encode(&dgram(Kind::Goodbye, 7, 50, 0), Some(&key()));
        // Boot 8 starts: unverified until it echoes.
        let t1 = t0 + CHALLENGE_GAP;
        assert_eq!(r.receive(&hb(8, 1, 0), peer(), t1, WALL), UNVERIFIED);
        let n = r
            .challenge(t1, Duration::from_secs(1), || 77)
            .unwrap()
            .nonce;
        assert_eq!(r.receive(&hb(8, 2, n), peer(), t1, WALL), Ok(beat(8)));
        // A goodbye of boot 7 that was never seen (held back by an attacker) is no longer
        // of the verified boot: it does not count.
        assert_eq!(r.receive(&old_goodbye, peer(), t0, WALL), UNVERIFIED);
    }

    #[test]
    fn the_clocks_difference_is_reported_never_judged() {
        let t0 = Instant::now();
        let mut r = verified(t0);
        let ten_min = 600_000;
        // Our clock 10 minutes ahead, then 10 minutes behind: every heartbeat counts.
        assert_eq!(
            r.receive(&hb(7, 3, 0), peer(), t0, WALL + ten_min),
            Ok(BEAT())
        );
        assert_eq!(r.peer_clock_offset_ms(), Some(-600_000));
        assert_eq!(
            r.receive(&hb(7, 4, 0), peer(), t0, WALL - ten_min),
            Ok(BEAT())
        );
        assert_eq!(r.peer_clock_offset_ms(), Some(600_000));
        assert_eq!(r.receive(&hb(7, 5, 0), peer(), t0, 0), Ok(BEAT()));
        assert_eq!(clock_offset(0, u64::MAX), i64::MIN);
        assert_eq!(clock_offset(u64::MAX, 0), i64::MAX);
    }

    #[test]
    fn other_key_holders_never_touch_the_peers_state() {
        let t0 = Instant::now();
        let mut r = verified(t0);
        // Forty other hosts with the same key, each with boot ids of their own: not the peer,
        // so they are counted and forgotten, and the peer's window is untouched.
        for host in 0..40u8 {
            let mut d = dgram(Kind::Heartbeat, 1000 + u64::from(host), 1, 0);
            let from = IpAddr::from([198, 51, 100, 100 + host]);
            d.entries = vec![Entry::identity(from, [0; 6])];
            let b = encode(&d, Some(&key()));
            assert_eq!(r.receive(&b, from, t0, WALL), Err(Rejected::NotPeer));
        }
        assert_eq!(
            r.receive(&hb(7, 2, 99), peer(), t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay)),
            "the peer's replay window survived the crowd"
        );
        assert_eq!(r.counters().dropped.get(NOT_PEER), Some(&40));
    }

    #[test]
    fn a_new_key_or_a_new_peer_must_be_proved_again() {
        let t0 = Instant::now();
        let mut r = verified(t0);
        r.set_key(Some(key()));
        assert!(!r.peer_verified());
        assert_eq!(r.receive(&hb(7, 9, 0), peer(), t0, WALL), UNVERIFIED);
        let mut r = verified(t0);
        r.set_peer(Some(peer()));
        assert!(r.peer_verified(), "the same peer: nothing to prove");
        r.set_peer(Some("198.51.100.11".parse().unwrap()));
        assert!(!r.peer_verified());
    }

    #[test]
    fn counts_what_it_drops() {
        let t0 = Instant::now();
        let mut r = verified(t0);
        let src = peer();
        // Another host's heartbeat (our own, in a peering set-up).
        let mut own = dgram(Kind::Heartbeat, 3, 2, 0);
        own.entries = vec![Entry::identity("198.51.100.20".parse().unwrap(), [0; 6])];
        assert_eq!(
            r.receive(&encode(&own, Some(&key())), src, t0, WALL),
            Err(Rejected::NotPeer)
        );
        // A forged one.
        let wrong = Key::new(b"another key, sixteen bytes or more".to_vec());
        let forged = encode(&dgram(Kind::Goodbye, 7, 3, 0), Some(&wrong));
        assert_eq!(
            r.receive(&forged, src, t0, WALL),
            Err(Rejected::Invalid(DropReason::BadTag))
        );
        // An unauthenticated one, and Apple's bare datagram, refused when a secret is set.
        let bare = encode(&dgram(Kind::Goodbye, 7, 4, 0), None);
        assert_eq!(
            r.receive(&bare, src, t0, WALL),
            Err(Rejected::Invalid(DropReason::MissingTag))
        );
        assert_eq!(
            r.receive(b"heartbeat", src, t0, WALL),
            Err(Rejected::Invalid(DropReason::MissingTag))
        );
        let gb = encode(&dgram(Kind::Goodbye, 7, 5, 0), Some(&key()));
        assert_eq!(
            r.receive(&gb, src, t0, WALL),
            Ok(Incoming::Goodbye {
                boot: 7,
                stays_up: false,
                report: Report {
                    entries: vec![Entry::identity(peer(), [0; 6])],
                    ..Report::default()
                }
            })
        );
        let c = r.counters();
        assert_eq!(c.accepted, 2);
        assert_eq!(c.dropped.get("unverified"), Some(&1));
        assert_eq!(c.dropped.get(NOT_PEER), Some(&1));
        assert_eq!(c.dropped.get("bad-tag"), Some(&1));
        assert_eq!(c.dropped.get("missing-tag"), Some(&2));
        assert_eq!(c.dropped_total(), 5);
    }

    #[test]
    fn without_a_secret_there_is_nothing_to_prove_and_duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut r = Receiver::new(None, Some(peer()));
        assert!(r.peer_verified());
        let b = encode(&dgram(Kind::Heartbeat, 7, 1, 0), None);
        assert_eq!(r.receive(&b, peer(), t0, WALL), Ok(BEAT()));
        assert_eq!(
            r.receive(&b, peer(), t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        assert_eq!(r.challenge(t0, Duration::from_secs(1), || 1), None);
    }

    #[test]
    fn legacy_heartbeat_counts_from_the_peer_address_only() {
        let t0 = Instant::now();
        let mut r = Receiver::new(None, Some(peer()));
        assert_eq!(
            r.receive(b"heartbeat", peer(), t0, WALL),
            Ok(Incoming::Heartbeat {
                interval: None,
                boot: 0,
                report: None
            })
        );
        assert_eq!(
            r.receive(b"heartbeat", "198.51.100.30".parse().unwrap(), t0, WALL),
            Err(Rejected::NotPeer)
        );
    }

    #[test]
    fn heartbeatd_takes_released_and_authenticated_challenges() {
        let t0 = Instant::now();
        let mut r = Receiver::new(Some(key()), None);
        let mut rel = dgram(Kind::Released, 1, 1, 31);
        rel.token = 55;
        rel.entries = vec![Entry::new(
            "198.51.100.100".parse().unwrap(),
            crate::wire::Role::NONE,
        )];
        let b = encode(&rel, Some(&key()));
        let src = "203.0.113.20".parse().unwrap();
        assert_eq!(
            r.receive(&b, src, t0, WALL),
            Ok(Incoming::Released {
                id: 31,
                token: 55,
                entries: rel.entries.clone()
            })
        );
        assert_eq!(
            r.receive(&b, src, t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        let ch = encode(&dgram(Kind::Challenge, 1, 2, 4242), Some(&key()));
        assert_eq!(
            r.receive(&ch, src, t0, WALL),
            Ok(Incoming::Challenge { nonce: 4242 })
        );
        // Replayed, it does not count again: it cannot displace a newer nonce.
        assert_eq!(
            r.receive(&ch, src, t0, WALL),
            Err(Rejected::Invalid(DropReason::Replay))
        );
        // Our own heartbeats looped back are not for us.
        assert_eq!(
            r.receive(&hb(9, 1, 0), src, t0, WALL),
            Err(Rejected::NotPeer)
        );
        // Without a secret, a challenge proves nothing and is not answered.
        let mut r = Receiver::new(None, None);
        let ch = encode(&dgram(Kind::Challenge, 1, 2, 4242), None);
        assert_eq!(r.receive(&ch, src, t0, WALL), Err(Rejected::NotPeer));
        assert_eq!(
            r.receive(b"junk", peer(), t0, WALL),
            Err(Rejected::Invalid(DropReason::BadMagic))
        );
    }

    #[test]
    fn counters_saturate() {
        let mut c = Counters::default();
        c.dropped.insert("replay", u64::MAX);
        c.dropped.insert("bad-tag", u64::MAX);
        assert_eq!(c.dropped_total(), u64::MAX);
        c.drop("replay");
        assert_eq!(c.dropped.get("replay"), Some(&u64::MAX));
    }
}
