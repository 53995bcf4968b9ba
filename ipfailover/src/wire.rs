//! Wire format version 3: the heartbeat datagram, its HMAC-SHA256 tag, the freshness
//! challenge, replay protection, and the reports of the handover protocol
//! (docs/handover.md).
//!
//! ```text
//! 0   4  magic b"IPFO"
//! 4   1  version = 3
//! 5   1  kind: 1 heartbeat, 2 goodbye, 3 released (the secondary's report), 4 challenge
//! 6   1  flags: bit 0 = a 32-byte HMAC tag follows the body; other bits must be zero
//! 7   1  state: bit 0 = the address list was cut at 12 entries; bit 1 (goodbye) = only the
//!        daemon stops, the host stays up and keeps its own addresses; other bits zero
//! 8   4  sender's interval in ms (heartbeat and goodbye: 10 ms to 1 h)
//! 12  8  boot id (random per start)
//! 20  8  sequence number (+1 per datagram sent)
//! 28  8  sender's wall-clock time, ms since the Unix epoch (reported, never judged)
//! 36  8  nonce: in a challenge, the nonce asked for; in a heartbeat or goodbye, the latest
//!        nonce it answers (0: none); in a released, the id of the release it reports (0:
//!        a report that asks for no acknowledgement)
//! 44  8  token: in a heartbeat, the primary's wait token while it waits for service
//!        addresses (0: not waiting); in a released, the wait token it answers (0: none)
//! 52  8  ack: in a heartbeat or goodbye, the id of the latest released the primary acted
//!        on (0: none)
//! 60  1  hostname length N (0..=64), then N bytes of UTF-8
//! ..  1  entry count M (0..=12), then M entries:
//!        family (4 or 6), role bits, link-layer address (6 bytes, zero: unknown),
//!        then 4 or 16 bytes of address
//! ..  32 HMAC-SHA256 over every byte before it, present iff flags bit 0
//! ```
//!
//! Role bits of an entry: 0x01 the sender's identity address, 0x02 the sender answers for
//! it now, 0x04 the sender wants it (waits for the other side to give it up), 0x08 held (or
//! wanted) by an administrator's command, 0x10 a service address heartbeatd manages (it gives
//! it up when asked); other bits must be zero.
//!
//! All integers are in network byte order. Nothing here reads a clock or touches a socket.
//! Version 2 (ipfailover 0.2) had no reports; its datagrams are dropped as `old-version`, so
//! that the log can name the upgrade order. Version 1 is dropped as `bad-version`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;

/// The first four bytes of every ipfailover datagram.
pub const MAGIC: [u8; 4] = *b"IPFO";
/// The wire format version this module speaks.
pub const VERSION: u8 = 3;
/// The version of ipfailover 0.2, refused with its own reason.
pub const OLD_VERSION: u8 = 2;
/// The longest datagram accepted; anything longer is dropped unread.
pub const MAX_LEN: usize = 512;
/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Longest hostname on the wire, in bytes.
pub const MAX_HOSTNAME: usize = 64;
/// Most address entries on the wire.
pub const MAX_ADDRS: usize = 12;
/// How far below the highest sequence seen a late datagram may still be accepted.
pub const REPLAY_WINDOW: u64 = 64;
/// The shortest interval a heartbeat or goodbye may announce (`FAILOVER_INTERVAL`'s minimum).
pub const MIN_INTERVAL_MS: u32 = 10;
/// The longest interval a heartbeat or goodbye may announce: one hour.
pub const MAX_INTERVAL_MS: u32 = 3_600_000;
/// Where the body starts: magic, version, kind, flags, state, interval, boot id, sequence,
/// time, nonce, token and ack.
const FIXED_LEN: usize = 60;
/// One entry: family, role, link-layer address, then the address itself.
const ENTRY_HEAD: usize = 8;

/// State bit 0: the sender had more addresses than fit.
pub const STATE_TRUNCATED: u8 = 0x01;
/// State bit 1, in a goodbye: only the daemon stops; the host stays up with its addresses.
pub const STATE_STAYS_UP: u8 = 0x02;
const STATE_KNOWN: u8 = STATE_TRUNCATED | STATE_STAYS_UP;

/// What Apple's heartbeatd sent, without version or anything else.
const LEGACY: &[u8] = b"heartbeat";
/// Flags bit 0: a tag follows the body.
const FLAG_TAG: u8 = 0x01;
/// Magic, version, kind, flags and state: what must be checked before the tag can be found.
const PREAMBLE_LEN: usize = 8;
/// Boot ids remembered by a [`ReplayGuard`]; bounded so that a flood of forged boot ids
/// cannot grow memory.
const MAX_BOOT_IDS: usize = 32;

// The encoder writes these counts as single bytes, and its longest output must fit MAX_LEN.
const _: () = assert!(MAX_HOSTNAME <= u8::MAX as usize);
const _: () = assert!(MAX_ADDRS <= u8::MAX as usize);
const _: () =
    assert!(FIXED_LEN + 1 + MAX_HOSTNAME + 1 + MAX_ADDRS * (ENTRY_HEAD + 16) + TAG_LEN <= MAX_LEN);
// The replay window is one bit per sequence of a u64 bitmap.
const _: () = assert!(REPLAY_WINDOW == u64::BITS as u64);

type HmacSha256 = Hmac<Sha256>;

/// What a datagram announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The primary is alive; its entries say what it answers for and what it waits for.
    Heartbeat,
    /// The primary's heartbeatd is stopping: its service addresses are already removed; the
    /// state says whether the host goes down too.
    Goodbye,
    /// The secondary's report of the primary's addresses: which it holds, which it gave up
    /// (a release, acknowledged by the primary's `ack`), which it asks back.
    Released,
    /// The secondary asks the primary to prove that it is alive now: echo this nonce.
    Challenge,
}

impl Kind {
    /// The name used in logs and status files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::Goodbye => "goodbye",
            Kind::Released => "released",
            Kind::Challenge => "challenge",
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::Goodbye => 2,
            Kind::Released => 3,
            Kind::Challenge => 4,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::Goodbye),
            3 => Some(Kind::Released),
            4 => Some(Kind::Challenge),
            _ => None,
        }
    }
}

/// What the sender says of one address, as role bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Role(u8);

impl Role {
    /// The sender's identity address: how the receiver knows who sent it.
    pub const IDENTITY: Role = Role(0x01);
    /// The sender answers for it now (on an interface whose link is up).
    pub const HOLDS: Role = Role(0x02);
    /// The sender wants it and waits for the other side to give it up.
    pub const WANTS: Role = Role(0x04);
    /// Held, or wanted, by an administrator's command.
    pub const MANUAL: Role = Role(0x08);
    /// A service address heartbeatd manages: it gives it up when the secondary asks.
    pub const MANAGED: Role = Role(0x10);
    const KNOWN: u8 = 0x1f;

    /// No role: in a report, an address the sender does not hold.
    pub const NONE: Role = Role(0);

    /// Whether every bit of `other` is set here.
    pub fn has(self, other: Role) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The bits of both.
    pub fn with(self, other: Role) -> Role {
        Role(self.0 | other.0)
    }

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The role of these bits, if every one is known.
    pub fn from_bits(bits: u8) -> Option<Role> {
        (bits & !Role::KNOWN == 0).then_some(Role(bits))
    }
}

/// A link-layer (MAC) address; all zeros when unknown.
pub type Mac = [u8; 6];

/// One address the sender speaks of, with what it says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The address.
    pub addr: IpAddr,
    /// What the sender says of it.
    pub role: Role,
    /// The link-layer address the sender answers with for it (zeros: unknown or not held).
    pub mac: Mac,
}

impl Entry {
    /// An entry for an identity address the sender answers for.
    pub fn identity(addr: IpAddr, mac: Mac) -> Entry {
        Entry {
            addr,
            role: Role::IDENTITY.with(Role::HOLDS),
            mac,
        }
    }

    /// An entry with a role and no link-layer address.
    pub fn new(addr: IpAddr, role: Role) -> Entry {
        Entry {
            addr,
            role,
            mac: [0; 6],
        }
    }
}

/// One datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// What the datagram announces.
    pub kind: Kind,
    /// The state bits ([`STATE_TRUNCATED`], [`STATE_STAYS_UP`]).
    pub state: u8,
    /// The sender's heartbeat interval, from which the receiver derives its default timeout.
    pub interval_ms: u32,
    /// Chosen at random at each start of the sender, so that sequence numbers can restart.
    pub boot_id: u64,
    /// Increases by one per datagram sent, across all links.
    pub seq: u64,
    /// The sender's wall-clock time, in ms since the Unix epoch: reported (the hosts' clock
    /// difference), never a reason to drop.
    pub time_ms: u64,
    /// A challenge's nonce; in a heartbeat or goodbye, the nonce it answers (0: none); in a
    /// released, the id of the release (0: none).
    pub nonce: u64,
    /// The primary's wait token (heartbeat), or the token a released answers.
    pub token: u64,
    /// The id of the latest released the primary acted on.
    pub ack: u64,
    /// The sender's hostname (at most [`MAX_HOSTNAME`] bytes on the wire).
    pub hostname: String,
    /// The addresses it speaks of (at most [`MAX_ADDRS`] on the wire).
    pub entries: Vec<Entry>,
}

impl Datagram {
    /// A datagram of `kind` with every other field empty.
    pub fn new(kind: Kind) -> Datagram {
        Datagram {
            kind,
            state: 0,
            interval_ms: 0,
            boot_id: 0,
            seq: 0,
            time_ms: 0,
            nonce: 0,
            token: 0,
            ack: 0,
            hostname: String::new(),
            entries: Vec::new(),
        }
    }

    /// The sender's identity addresses.
    pub fn identity(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.entries
            .iter()
            .filter(|e| e.role.has(Role::IDENTITY))
            .map(|e| e.addr)
    }

    /// Whether the address list was cut.
    pub fn truncated(&self) -> bool {
        self.state & STATE_TRUNCATED != 0
    }

    /// Whether a goodbye says that only the daemon stops.
    pub fn stays_up(&self) -> bool {
        self.state & STATE_STAYS_UP != 0
    }
}

/// The shared secret, ready to compute HMAC-SHA256 tags.
#[derive(Clone)]
pub struct Key {
    /// The keyed HMAC state, cloned for each datagram; the raw key bytes are not kept.
    /// `None` only if the hmac crate refused the key, which it never does (RFC 2104 takes
    /// keys of any length); it exists so that the impossible case fails closed instead of
    /// panicking: every datagram then fails verification and none is tagged.
    mac: Option<HmacSha256>,
    /// An older key that still verifies (a rotation under way); it never signs.
    old: Option<Box<Key>>,
}

impl Key {
    /// Makes a key from the secret's bytes.
    pub fn new(bytes: Vec<u8>) -> Key {
        Key {
            mac: HmacSha256::new_from_slice(&bytes).ok(),
            old: None,
        }
    }

    /// A key that signs with `self` and also accepts tags made with `old`: a rotation done
    /// one host at a time loses no heartbeat (docs/configuration.md).
    pub fn with_old(mut self, old: Key) -> Key {
        self.old = Some(Box::new(Key { old: None, ..old }));
        self
    }

    /// Whether an older key is accepted too.
    pub fn rotating(&self) -> bool {
        self.old.is_some()
    }

    /// During a rotation, the same two keys with the old one signing: what a daemon answers
    /// with while its peer still signs with the old key, so that a rotation loses nothing in
    /// either order (docs/configuration.md, "Rotating the key"). `None` when not rotating.
    pub fn old_signing(&self) -> Option<Key> {
        let old = self.old.as_ref()?;
        Some(Key {
            mac: old.mac.clone(),
            old: Some(Box::new(Key {
                mac: self.mac.clone(),
                old: None,
            })),
        })
    }

    /// Whether a tagged datagram verifies with the old key and not with the new one: the
    /// peer has not started using the new key yet. False when not rotating, or for anything
    /// that is not a tagged datagram of this version.
    pub fn only_old_verifies(&self, buf: &[u8]) -> bool {
        let Some(old) = self.old.as_ref() else {
            return false;
        };
        if buf.len() > MAX_LEN
            || buf.get(..MAGIC.len()) != Some(&MAGIC[..])
            || buf.get(6).is_none_or(|f| f & FLAG_TAG == 0)
        {
            return false;
        }
        let Some(end) = buf
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&end| end >= PREAMBLE_LEN)
        else {
            return false;
        };
        let (signed, tag) = buf.split_at(end);
        let new_ok = self
            .mac
            .clone()
            .is_some_and(|mac| mac.chain_update(signed).verify_slice(tag).is_ok());
        !new_ok && old.verify(signed, tag).is_ok()
    }

    fn tag(&self, signed: &[u8]) -> Option<[u8; TAG_LEN]> {
        let mac = self.mac.clone()?;
        Some(mac.chain_update(signed).finalize().into_bytes().into())
    }

    fn verify(&self, signed: &[u8], tag: &[u8]) -> Result<(), DropReason> {
        let own = self
            .mac
            .clone()
            .is_some_and(|mac| mac.chain_update(signed).verify_slice(tag).is_ok());
        // verify_slice compares in constant time, so a forger learns nothing from timing.
        if own
            || self
                .old
                .as_ref()
                .is_some_and(|o| o.verify(signed, tag).is_ok())
        {
            Ok(())
        } else {
            Err(DropReason::BadTag)
        }
    }
}

/// What a daemon signs with. Outside a rotation, the key; during one (two lines in the
/// secret file), the first line, unless the peer was last heard signing with the second: then
/// the second, so that the peer, which may not know the new key yet, still verifies what it
/// gets. A rotation therefore loses nothing in either order (docs/configuration.md).
#[derive(Debug, Clone, Default)]
pub struct Signer {
    key: Option<Key>,
    old_signing: Option<Key>,
    peer_uses_old: bool,
}

impl Signer {
    /// Signs with `key` (none: nothing is signed) until the peer is heard.
    pub fn new(key: Option<Key>) -> Signer {
        Signer {
            old_signing: key.as_ref().and_then(Key::old_signing),
            key,
            peer_uses_old: false,
        }
    }

    /// A datagram of the peer, accepted: note which of the two keys it used.
    pub fn heard(&mut self, buf: &[u8]) {
        if let Some(k) = &self.key {
            self.peer_uses_old = k.rotating() && k.only_old_verifies(buf);
        }
    }

    /// The key to sign the next datagram with.
    pub fn key(&self) -> Option<&Key> {
        match (&self.old_signing, self.peer_uses_old) {
            (Some(old), true) => Some(old),
            _ => self.key.as_ref(),
        }
    }

    /// Whether the peer was last heard signing with the old key.
    pub fn peer_uses_old(&self) -> bool {
        self.peer_uses_old && self.old_signing.is_some()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.old.is_some() {
            "Key(<redacted>, old: <redacted>)"
        } else {
            "Key(<redacted>)"
        })
    }
}

/// What a datagram was, once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An ipfailover datagram; `authenticated` is true when a key was given and the tag matched.
    Ipfo {
        /// The decoded fields.
        datagram: Datagram,
        /// Whether the HMAC tag was verified against the configured key.
        authenticated: bool,
    },
    /// Apple's bare `heartbeat` datagram, accepted only when no key is configured.
    Legacy,
}

/// Why a datagram was dropped; each reason is a counter in the status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than the header, or than its length fields or flags announce.
    Truncated,
    /// Longer than [`MAX_LEN`].
    Oversized,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// A version other than [`VERSION`] and [`OLD_VERSION`].
    BadVersion,
    /// Version 2: from ipfailover 0.2, which must be upgraded (docs/wire-format.md).
    OldVersion,
    /// A kind this version does not define.
    BadKind,
    /// Bad flags, state, role, address family, UTF-8, counts over the maxima, or trailing
    /// bytes.
    Malformed,
    /// A key is configured but the datagram carries no tag.
    MissingTag,
    /// The tag does not match the configured key.
    BadTag,
    /// A heartbeat or goodbye announcing an interval outside 10 ms to 1 h.
    BadInterval,
    /// A sequence number already seen, or too old for the replay window.
    Replay,
    /// From a boot of the peer that has not yet answered a challenge: it may be a replay.
    Unverified,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::OldVersion,
        DropReason::BadKind,
        DropReason::Malformed,
        DropReason::MissingTag,
        DropReason::BadTag,
        DropReason::BadInterval,
        DropReason::Replay,
        DropReason::Unverified,
    ];

    /// The counter name used in status files.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::BadMagic => "bad-magic",
            DropReason::BadVersion => "bad-version",
            DropReason::OldVersion => "old-version",
            DropReason::BadKind => "bad-kind",
            DropReason::Malformed => "malformed",
            DropReason::MissingTag => "missing-tag",
            DropReason::BadTag => "bad-tag",
            DropReason::BadInterval => "bad-interval",
            DropReason::Replay => "replay",
            DropReason::Unverified => "unverified",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Truncated => "datagram shorter than its fields announce",
            DropReason::Oversized => "datagram longer than 512 bytes",
            DropReason::BadMagic => "not an ipfailover datagram (bad magic)",
            DropReason::BadVersion => "unsupported wire format version",
            DropReason::OldVersion => {
                "from ipfailover 0.2 (wire format version 2), which this version does not \
                 understand: upgrade both hosts (stop failoverd on the secondary first, then \
                 upgrade and start heartbeatd on the primary, then failoverd; \
                 docs/wire-format.md)"
            }
            DropReason::BadKind => "unknown datagram kind",
            DropReason::Malformed => "malformed datagram",
            DropReason::MissingTag => "no HMAC tag, but a secret is configured",
            DropReason::BadTag => "bad HMAC tag",
            DropReason::BadInterval => "announced interval outside 10 ms to 1 h",
            DropReason::Replay => "replayed or duplicate sequence number",
            DropReason::Unverified => {
                "from a boot of the peer that has not answered a challenge yet"
            }
        })
    }
}

/// Encodes a datagram, tagged when a key is given; over-long fields are cut so it cannot fail
/// (a cut address list sets [`STATE_TRUNCATED`]).
pub fn encode(d: &Datagram, key: Option<&Key>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_LEN);
    encode_into(d, key, &mut out);
    out
}

/// [`encode`] into a buffer that is cleared first, so that a sender at a 10 ms interval can
/// reuse its buffers instead of allocating a new one for every datagram.
pub fn encode_into(d: &Datagram, key: Option<&Key>, out: &mut Vec<u8>) {
    let hostname = truncate_on_char_boundary(&d.hostname, MAX_HOSTNAME);
    let entries = d.entries.get(..MAX_ADDRS).unwrap_or(&d.entries);
    let tagged = key.is_some_and(|k| k.mac.is_some());
    let mut state = d.state & STATE_KNOWN;
    if entries.len() < d.entries.len() {
        state |= STATE_TRUNCATED;
    }

    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(d.kind.code());
    out.push(if tagged { FLAG_TAG } else { 0 });
    out.push(state);
    out.extend_from_slice(&d.interval_ms.to_be_bytes());
    out.extend_from_slice(&d.boot_id.to_be_bytes());
    out.extend_from_slice(&d.seq.to_be_bytes());
    out.extend_from_slice(&d.time_ms.to_be_bytes());
    out.extend_from_slice(&d.nonce.to_be_bytes());
    out.extend_from_slice(&d.token.to_be_bytes());
    out.extend_from_slice(&d.ack.to_be_bytes());
    // Both counts are bounded by the maxima above, which fit a byte (asserted at compile time).
    out.push(hostname.len() as u8);
    out.extend_from_slice(hostname.as_bytes());
    out.push(entries.len() as u8);
    for e in entries {
        out.push(if e.addr.is_ipv4() { 4 } else { 6 });
        out.push(e.role.bits() & Role::KNOWN);
        out.extend_from_slice(&e.mac);
        match e.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if let Some(tag) = key.and_then(|k| k.tag(out)) {
        out.extend_from_slice(&tag);
    }
}

/// Decodes and, when a key is given, authenticates a datagram; never panics on any input.
pub fn decode(buf: &[u8], key: Option<&Key>) -> Result<Message, DropReason> {
    // Size first: nothing longer than MAX_LEN is worth reading.
    if buf.len() > MAX_LEN {
        return Err(DropReason::Oversized);
    }
    // Apple's heartbeatd carries no secret, so with one configured it is as good as untagged.
    if is_legacy(buf) {
        return match key {
            None => Ok(Message::Legacy),
            Some(_) => Err(DropReason::MissingTag),
        };
    }

    // Fields are judged in wire order as their bytes arrive, so a short datagram of another
    // protocol or version is counted as such rather than as truncated.
    let mut r = Reader::new(buf);
    if r.array::<4>()? != MAGIC {
        return Err(DropReason::BadMagic);
    }
    match r.u8()? {
        VERSION => {}
        OLD_VERSION => return Err(DropReason::OldVersion),
        _ => return Err(DropReason::BadVersion),
    }
    let kind = Kind::from_code(r.u8()?).ok_or(DropReason::BadKind)?;
    let flags = r.u8()?;
    if flags & !FLAG_TAG != 0 {
        return Err(DropReason::Malformed);
    }
    let state = r.u8()?;
    if state & !STATE_KNOWN != 0 {
        return Err(DropReason::Malformed);
    }

    // The tag, when flagged, is the last TAG_LEN bytes; everything before it is signed.
    let (signed, tag) = if flags & FLAG_TAG != 0 {
        let end = buf
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&end| end >= PREAMBLE_LEN)
            .ok_or(DropReason::Truncated)?;
        let (signed, tag) = buf.split_at_checked(end).ok_or(DropReason::Truncated)?;
        (signed, Some(tag))
    } else {
        (buf, None)
    };

    // With a key, the tag is verified before the body is parsed: only authentic bytes reach
    // the parser, and any damage to them is counted as a bad tag.
    let authenticated = match (key, tag) {
        (None, _) => false,
        (Some(_), None) => return Err(DropReason::MissingTag),
        (Some(key), Some(tag)) => {
            key.verify(signed, tag)?;
            true
        }
    };

    let mut r = Reader::new(signed);
    r.take(PREAMBLE_LEN)?;
    let datagram = parse_body(kind, state, &mut r)?;
    // Exactly one tag may follow the body; it was split off above, so anything left is extra.
    if !r.is_empty() {
        return Err(DropReason::Malformed);
    }
    Ok(Message::Ipfo {
        datagram,
        authenticated,
    })
}

fn is_legacy(buf: &[u8]) -> bool {
    matches!(buf.strip_prefix(LEGACY), Some([] | [b'\n' | 0]))
}

/// Parses everything after the preamble up to where the tag would start.
fn parse_body(kind: Kind, state: u8, r: &mut Reader<'_>) -> Result<Datagram, DropReason> {
    let interval_ms = r.u32()?;
    let boot_id = r.u64()?;
    let seq = r.u64()?;
    let time_ms = r.u64()?;
    let nonce = r.u64()?;
    let token = r.u64()?;
    let ack = r.u64()?;
    // The interval decides the receiver's timeout: one outside what the settings allow (a
    // 0 ms interval would make the timeout 0) is never believed.
    if matches!(kind, Kind::Heartbeat | Kind::Goodbye)
        && !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms)
    {
        return Err(DropReason::BadInterval);
    }

    let hostname_len = usize::from(r.u8()?);
    if hostname_len > MAX_HOSTNAME {
        return Err(DropReason::Malformed);
    }
    let hostname = std::str::from_utf8(r.take(hostname_len)?)
        .map_err(|_| DropReason::Malformed)?
        .to_string();

    let count = usize::from(r.u8()?);
    if count > MAX_ADDRS {
        return Err(DropReason::Malformed);
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let family = r.u8()?;
        let role = Role::from_bits(r.u8()?).ok_or(DropReason::Malformed)?;
        let mac = r.array::<6>()?;
        let addr = match family {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(DropReason::Malformed),
        };
        entries.push(Entry { addr, role, mac });
    }

    Ok(Datagram {
        kind,
        state,
        interval_ms,
        boot_id,
        seq,
        time_ms,
        nonce,
        token,
        ack,
        hostname,
        entries,
    })
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    let end = (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or("")
}

/// A cursor over a datagram in which running out of bytes is a [`DropReason::Truncated`].
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DropReason> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(DropReason::Truncated)?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DropReason> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| DropReason::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DropReason> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DropReason> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DropReason> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Replay protection per boot id with a sliding window, as IPsec's anti-replay (RFC 4303
/// §3.4.3). It knows nothing of time: freshness across restarts is the challenge's job
/// ([`crate::receive`]), never the two hosts' clocks.
#[derive(Debug, Default, Clone)]
pub struct ReplayGuard {
    windows: HashMap<u64, Window>,
    /// Counts accepted datagrams; stamps each window so the least recently accepted is evicted.
    accepted: u64,
}

/// What one boot id has sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// The highest sequence accepted.
    highest: u64,
    /// Bit `d - 1` is set when `highest - d` was accepted, for `d` in `1..=REPLAY_WINDOW`.
    seen: u64,
    /// The guard's `accepted` count when this boot id last passed.
    last_accepted: u64,
}

impl Window {
    fn new(seq: u64, stamp: u64) -> Window {
        Window {
            highest: seq,
            seen: 0,
            last_accepted: stamp,
        }
    }

    /// A window in which `seq` and every sequence below it count as seen: what a boot that
    /// has just proved itself fresh with `seq` may still send is only what comes after.
    pub fn fresh_from(seq: u64) -> Window {
        Window {
            highest: seq,
            seen: u64::MAX,
            last_accepted: 0,
        }
    }

    /// Records `seq` and returns true if it is new; leaves the window alone otherwise.
    pub fn admit(&mut self, seq: u64) -> bool {
        // A sequence above the highest is new: slide the window up to it, and the old
        // highest becomes a seen sequence `shift` below the new one.
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = shl(self.seen, shift) | shl(1, shift - 1);
            self.highest = seq;
            return true;
        }
        // Below the highest, a sequence is new only inside the window and not yet seen;
        // the highest itself and anything older than the window count as replays.
        let distance = self.highest - seq;
        if distance == 0 || distance > REPLAY_WINDOW {
            return false;
        }
        let bit = shl(1, distance - 1);
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// `x << n`, with bits shifted past the top gone rather than an overflow.
fn shl(x: u64, n: u64) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| x.checked_shl(n))
        .unwrap_or(0)
}

/// The windows in the order of their boot ids, so that two guards that saw the same equal
/// their hashes whatever the map's order.
impl std::hash::Hash for ReplayGuard {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut windows: Vec<(&u64, &Window)> = self.windows.iter().collect();
        windows.sort_unstable_by_key(|(id, _)| **id);
        windows.hash(state);
        self.accepted.hash(state);
    }
}

impl ReplayGuard {
    /// A guard that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `d` if its sequence is new for its boot id, and records it; drops it otherwise.
    pub fn check(&mut self, d: &Datagram) -> Result<(), DropReason> {
        let stamp = self.accepted.wrapping_add(1);
        match self.windows.get_mut(&d.boot_id) {
            Some(window) => {
                if !window.admit(d.seq) {
                    return Err(DropReason::Replay);
                }
                window.last_accepted = stamp;
            }
            None => {
                // A new boot id: make room by forgetting the one that passed longest ago,
                // which under a flood of forged ids is never the live sender.
                if self.windows.len() >= MAX_BOOT_IDS {
                    let oldest = self
                        .windows
                        .iter()
                        .min_by_key(|(_, w)| w.last_accepted)
                        .map(|(&id, _)| id);
                    if let Some(id) = oldest {
                        self.windows.remove(&id);
                    }
                }
                self.windows.insert(d.boot_id, Window::new(d.seq, stamp));
            }
        }
        self.accepted = stamp;
        Ok(())
    }

    /// Forgets every boot id, e.g. when the secret changes and old state means nothing.
    pub fn forget(&mut self) {
        self.windows.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// `fixed()` encoded without a key (built with Python's struct module, not this code).
    const GOLDEN_PLAIN: &str = "4950464f03010000000003e80102030405060708000000000000002a\
        0000018bcfe56800112233445566778899aabbccddeeff000000000000000007057072692d3103\
        040302000000000ac633640a\
        060200000000000020010db8000000000000000000000010\
        0404000000000000c6336464";

    /// `fixed()` encoded with `KEY`; the tag was computed with Python's hmac module, not
    /// with this code.
    const GOLDEN_TAGGED: &str = "4950464f03010100000003e80102030405060708000000000000002a\
        0000018bcfe56800112233445566778899aabbccddeeff000000000000000007057072692d3103\
        040302000000000ac633640a\
        060200000000000020010db8000000000000000000000010\
        0404000000000000c6336464\
        7ae3c77e86ffbe5a6e914a97944b86b9e94731810fbce33065d55cd3ccaaf0e2";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key() -> Key {
        Key::new(KEY.to_vec())
    }

    fn fixed() -> Datagram {
        Datagram {
            kind: Kind::Heartbeat,
            state: 0,
            interval_ms: 1000,
            boot_id: 0x0102_0304_0506_0708,
            seq: 42,
            time_ms: 1_700_000_000_000,
            nonce: 0x1122_3344_5566_7788,
            token: 0x99aa_bbcc_ddee_ff00,
            ack: 7,
            hostname: "pri-1".to_string(),
            entries: vec![
                Entry::identity("198.51.100.10".parse().unwrap(), [2, 0, 0, 0, 0, 0x0a]),
                Entry::new("2001:db8::10".parse().unwrap(), Role::HOLDS),
                Entry::new("198.51.100.100".parse().unwrap(), Role::WANTS),
            ],
        }
    }

    fn ipfo(datagram: Datagram, authenticated: bool) -> Message {
        Message::Ipfo {
            datagram,
            authenticated,
        }
    }

    /// Builds a datagram by hand, independently of `encode`, so fields can be made invalid.
    fn raw(kind: u8, flags: u8, hostname: &[u8], count: u8, addrs: &[u8]) -> Vec<u8> {
        let mut b = b"IPFO".to_vec();
        b.extend_from_slice(&[VERSION, kind, flags, 0]);
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.push(hostname.len() as u8);
        b.extend_from_slice(hostname);
        b.push(count);
        b.extend_from_slice(addrs);
        b
    }

    #[test]
    fn golden_plain() {
        let golden = hex(GOLDEN_PLAIN);
        assert_eq!(golden.len(), 115);
        assert_eq!(encode(&fixed(), None), golden);
        assert_eq!(decode(&golden, None), Ok(ipfo(fixed(), false)));
    }

    #[test]
    fn golden_tagged() {
        let golden = hex(GOLDEN_TAGGED);
        assert_eq!(golden.len(), 115 + TAG_LEN);
        assert_eq!(encode(&fixed(), Some(&key())), golden);
        assert_eq!(decode(&golden, Some(&key())), Ok(ipfo(fixed(), true)));
    }

    #[test]
    fn tag_is_ignored_without_a_key() {
        let golden = hex(GOLDEN_TAGGED);
        assert_eq!(decode(&golden, None), Ok(ipfo(fixed(), false)));
        // Ignored, not verified: a wrong tag passes too, but unauthenticated.
        let mut forged = golden.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&forged, None), Ok(ipfo(fixed(), false)));
    }

    #[test]
    fn round_trip_each_kind_with_and_without_key() {
        for kind in [
            Kind::Heartbeat,
            Kind::Goodbye,
            Kind::Released,
            Kind::Challenge,
        ] {
            let d = Datagram { kind, ..fixed() };
            assert_eq!(decode(&encode(&d, None), None), Ok(ipfo(d.clone(), false)));
            let k = key();
            assert_eq!(
                decode(&encode(&d, Some(&k)), Some(&k)),
                Ok(ipfo(d.clone(), true))
            );
        }
    }

    #[test]
    fn round_trip_empty_fields() {
        let d = Datagram {
            hostname: String::new(),
            entries: Vec::new(),
            ..fixed()
        };
        let buf = encode(&d, None);
        assert_eq!(buf.len(), 62);
        assert_eq!(decode(&buf, None), Ok(ipfo(d, false)));
    }

    #[test]
    fn wrong_key_is_bad_tag() {
        let buf = encode(&fixed(), Some(&key()));
        let other = Key::new(b"0123456789abcdef0123456789abcdeF".to_vec());
        assert_eq!(decode(&buf, Some(&other)), Err(DropReason::BadTag));
        assert_eq!(
            decode(&buf, Some(&Key::new(Vec::new()))),
            Err(DropReason::BadTag)
        );
    }

    #[test]
    fn untagged_with_key_is_missing_tag() {
        let buf = encode(&fixed(), None);
        assert_eq!(decode(&buf, Some(&key())), Err(DropReason::MissingTag));
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let k = key();
        let buf = encode(&fixed(), Some(&k));
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                let got = decode(&bad, Some(&k));
                assert!(got.is_err(), "byte {i} bit {bit}: {got:?}");
                // Past the preamble the tag is checked before anything is parsed.
                if i >= PREAMBLE_LEN {
                    assert_eq!(got, Err(DropReason::BadTag), "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let k = key();
        let plain = encode(&fixed(), None);
        let tagged = encode(&fixed(), Some(&k));
        for len in 0..plain.len() {
            assert!(decode(&plain[..len], None).is_err(), "plain, {len} bytes");
            assert!(
                decode(&plain[..len], Some(&k)).is_err(),
                "plain, {len} bytes"
            );
        }
        for len in 0..tagged.len() {
            assert!(decode(&tagged[..len], None).is_err(), "tagged, {len} bytes");
            assert!(
                decode(&tagged[..len], Some(&k)).is_err(),
                "tagged, {len} bytes"
            );
        }
        assert_eq!(decode(&plain[..64], None), Err(DropReason::Truncated));
        assert_eq!(decode(&[], None), Err(DropReason::Truncated));
        // Without a key, a tag cut short is a datagram shorter than its flags announce.
        assert_eq!(
            decode(&tagged[..tagged.len() - 1], None),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn legacy_only_without_key() {
        for buf in [&b"heartbeat"[..], b"heartbeat\n", b"heartbeat\0"] {
            assert_eq!(decode(buf, None), Ok(Message::Legacy));
            assert_eq!(decode(buf, Some(&key())), Err(DropReason::MissingTag));
        }
        for buf in [
            &b"heartbeat\n\n"[..],
            b"heartbeat\r\n",
            b"heartbeat\0\0",
            b"heartbeats",
            b"Heartbeat",
            b" heartbeat",
        ] {
            assert_eq!(decode(buf, None), Err(DropReason::BadMagic), "{buf:?}");
        }
    }

    #[test]
    fn oversized_is_checked_first() {
        assert_eq!(decode(&[0; MAX_LEN + 1], None), Err(DropReason::Oversized));
        let mut buf = encode(&fixed(), Some(&key()));
        buf.resize(MAX_LEN + 1, 0);
        assert_eq!(decode(&buf, Some(&key())), Err(DropReason::Oversized));
        let mut buf = b"heartbeat".to_vec();
        buf.resize(MAX_LEN + 1, 0);
        assert_eq!(decode(&buf, None), Err(DropReason::Oversized));
        // At exactly MAX_LEN the datagram is read, and its padding is trailing garbage.
        let mut buf = encode(&fixed(), None);
        buf.resize(MAX_LEN, 0);
        assert_eq!(decode(&buf, None), Err(DropReason::Malformed));
    }

    #[test]
    fn crafted_inputs_give_each_structural_reason() {
        use DropReason::*;
        // family, role (identity + holds), MAC, address
        let v4 = [4, 3, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1];
        let ok = raw(1, 0, b"h", 1, &v4);
        assert!(decode(&ok, None).is_ok());

        let mut bad_magic = ok.clone();
        bad_magic[3] = b'X';
        let mut bad_version = ok.clone();
        bad_version[4] = 1;
        let mut old_version = ok.clone();
        old_version[4] = OLD_VERSION;
        let mut bad_state = ok.clone();
        bad_state[7] = 0x04;
        let mut trailing = ok.clone();
        trailing.push(0);
        let mut long_tag = raw(1, FLAG_TAG, b"h", 1, &v4);
        long_tag.extend_from_slice(&[0; TAG_LEN + 1]);
        let mut bad_role = v4;
        bad_role[1] = 0x20;

        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("header cut short", ok[..20].to_vec(), Truncated),
            ("token cut short", ok[..50].to_vec(), Truncated),
            ("hostname cut short", ok[..62].to_vec(), Truncated),
            ("address cut short", ok[..ok.len() - 1].to_vec(), Truncated),
            ("MAC cut short", ok[..ok.len() - 6].to_vec(), Truncated),
            ("count beyond data", raw(1, 0, b"h", 2, &v4), Truncated),
            (
                "flag without tag",
                raw(1, FLAG_TAG, b"h", 1, &v4),
                Truncated,
            ),
            ("magic", bad_magic, BadMagic),
            ("three bytes of junk", b"GET".to_vec(), Truncated),
            ("version", bad_version, BadVersion),
            ("short other version", b"IPFO\x01".to_vec(), BadVersion),
            ("version 4", b"IPFO\x04\x01".to_vec(), BadVersion),
            ("version 2", old_version, OldVersion),
            ("short version 2", b"IPFO\x02\x01".to_vec(), OldVersion),
            ("kind 0", raw(0, 0, b"h", 1, &v4), BadKind),
            ("kind 5", raw(5, 0, b"h", 1, &v4), BadKind),
            ("kind 255", raw(255, 0, b"h", 1, &v4), BadKind),
            ("unknown flag", raw(1, 0x02, b"h", 1, &v4), Malformed),
            ("high flag", raw(1, 0x81, b"h", 1, &v4), Malformed),
            ("unknown state bit", bad_state, Malformed),
            ("unknown role bit", raw(1, 0, b"h", 1, &bad_role), Malformed),
            (
                "family 5",
                raw(1, 0, b"h", 1, &[5, 3, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1]),
                Malformed,
            ),
            (
                "family 0",
                raw(1, 0, b"h", 1, &[0, 3, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1]),
                Malformed,
            ),
            ("bad UTF-8", raw(1, 0, b"h\xff", 1, &v4), Malformed),
            (
                "hostname 65 bytes",
                raw(1, 0, &[b'a'; 65], 0, &[]),
                Malformed,
            ),
            (
                "13 addresses",
                raw(1, 0, b"h", 13, &v4.repeat(13)),
                Malformed,
            ),
            ("trailing byte", trailing, Malformed),
            ("33 bytes after body", long_tag, Malformed),
        ];
        for (what, buf, want) in cases {
            assert_eq!(decode(&buf, None), Err(want), "{what}");
        }
        // The largest legal counts are accepted.
        let max = raw(1, 0, &[b'a'; 64], 12, &v4.repeat(12));
        assert!(decode(&max, None).is_ok());
        // Both state bits are known.
        let mut both = ok.clone();
        both[7] = STATE_TRUNCATED | STATE_STAYS_UP;
        let Ok(Message::Ipfo { datagram, .. }) = decode(&both, None) else {
            panic!("does not decode");
        };
        assert!(datagram.truncated() && datagram.stays_up());
    }

    #[test]
    fn a_rotated_key_verifies_old_and_new_tags_and_signs_with_the_new() {
        let old = key();
        let new = Key::new(b"a new secret, rotated one host at a time".to_vec());
        let both = new.clone().with_old(old.clone());
        assert!(both.rotating() && !new.rotating());
        let by_old = encode(&fixed(), Some(&old));
        let by_new = encode(&fixed(), Some(&new));
        assert_eq!(decode(&by_old, Some(&both)), Ok(ipfo(fixed(), true)));
        assert_eq!(decode(&by_new, Some(&both)), Ok(ipfo(fixed(), true)));
        assert_eq!(
            encode(&fixed(), Some(&both)),
            by_new,
            "signs with the new key"
        );
        assert_eq!(decode(&by_old, Some(&new)), Err(DropReason::BadTag));
        let shown = format!("{both:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_peer_still_signing_with_the_old_key_is_answered_with_it() {
        let old = key();
        let new = Key::new(b"a new secret, rotated one host at a time".to_vec());
        let both = new.clone().with_old(old.clone());
        let by_old = encode(&fixed(), Some(&old));
        let by_new = encode(&fixed(), Some(&new));
        assert!(both.only_old_verifies(&by_old));
        assert!(!both.only_old_verifies(&by_new));
        assert!(!new.only_old_verifies(&by_old), "not rotating");
        assert!(!both.only_old_verifies(&encode(&fixed(), None)), "untagged");
        assert!(!both.only_old_verifies(&by_old[..10]));
        let answer = both.old_signing().expect("rotating");
        assert_eq!(encode(&fixed(), Some(&answer)), by_old);
        // It still verifies both.
        assert_eq!(decode(&by_new, Some(&answer)), Ok(ipfo(fixed(), true)));
        assert!(new.old_signing().is_none());
    }

    #[test]
    fn a_cut_address_list_says_so() {
        let d = Datagram {
            entries: (0..MAX_ADDRS + 1)
                .map(|i| {
                    Entry::new(
                        IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8)),
                        Role::HOLDS,
                    )
                })
                .collect(),
            ..fixed()
        };
        let Ok(Message::Ipfo { datagram, .. }) = decode(&encode(&d, None), None) else {
            panic!("does not decode");
        };
        assert!(datagram.truncated());
        assert_eq!(datagram.entries.len(), MAX_ADDRS);
        assert!(!fixed().truncated());
    }

    #[test]
    fn encode_cuts_hostname_on_char_boundary_and_addresses_at_max() {
        let hostname = format!("{}é", "a".repeat(MAX_HOSTNAME - 1));
        assert_eq!(hostname.len(), MAX_HOSTNAME + 1);
        let d = Datagram {
            hostname,
            entries: (0..20u8)
                .map(|i| {
                    Entry::new(
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i.into())),
                        Role::HOLDS,
                    )
                })
                .collect(),
            ..fixed()
        };
        let buf = encode(&d, Some(&key()));
        assert!(buf.len() <= MAX_LEN);
        let Ok(Message::Ipfo { datagram, .. }) = decode(&buf, Some(&key())) else {
            panic!("does not decode");
        };
        assert_eq!(datagram.hostname, "a".repeat(MAX_HOSTNAME - 1));
        assert_eq!(datagram.entries, d.entries[..MAX_ADDRS]);
        assert!(datagram.truncated());

        assert_eq!(truncate_on_char_boundary("ééé", 5), "éé");
        assert_eq!(truncate_on_char_boundary("ééé", 1), "");
        assert_eq!(truncate_on_char_boundary("abc", 64), "abc");
    }

    #[test]
    fn encode_into_a_used_buffer_matches_a_fresh_encode() {
        // A buffer last used for a longer, tagged datagram: nothing of it may remain.
        let long = Datagram {
            hostname: "a".repeat(MAX_HOSTNAME),
            ..fixed()
        };
        let mut buf = encode(&long, Some(&key()));
        let short = Datagram { seq: 99, ..fixed() };
        for k in [None, Some(key())] {
            encode_into(&short, k.as_ref(), &mut buf);
            assert_eq!(buf, encode(&short, k.as_ref()));
            assert!(decode(&buf, k.as_ref()).is_ok());
        }
    }

    #[test]
    fn key_debug_hides_the_secret() {
        let shown = format!("{:?}", Key::new(b"hunter2-secret".to_vec()));
        assert!(!shown.contains("hunter2"), "{shown}");
        // Nor as numbers: 'h' is 104.
        assert!(!shown.contains("104"), "{shown}");
    }

    #[test]
    fn names_are_the_counter_names() {
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "truncated",
                "oversized",
                "bad-magic",
                "bad-version",
                "old-version",
                "bad-kind",
                "malformed",
                "missing-tag",
                "bad-tag",
                "bad-interval",
                "replay",
                "unverified"
            ]
        );
        let mut sorted = DropReason::ALL;
        sorted.sort();
        assert_eq!(sorted, DropReason::ALL);
        assert_eq!(DropReason::BadTag.to_string(), "bad HMAC tag");
        for r in DropReason::ALL {
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(Kind::Heartbeat.as_str(), "heartbeat");
        assert_eq!(Kind::Goodbye.as_str(), "goodbye");
        assert_eq!(Kind::Released.as_str(), "released");
        assert_eq!(Kind::Challenge.as_str(), "challenge");
    }

    #[test]
    fn a_heartbeat_or_goodbye_must_announce_an_interval_the_settings_allow() {
        for kind in [Kind::Heartbeat, Kind::Goodbye] {
            for bad in [0, 9, MAX_INTERVAL_MS + 1, u32::MAX] {
                let d = Datagram {
                    kind,
                    interval_ms: bad,
                    ..fixed()
                };
                assert_eq!(
                    decode(&encode(&d, Some(&key())), Some(&key())),
                    Err(DropReason::BadInterval),
                    "{kind:?} {bad} ms"
                );
            }
            for good in [MIN_INTERVAL_MS, 1000, MAX_INTERVAL_MS] {
                let d = Datagram {
                    kind,
                    interval_ms: good,
                    ..fixed()
                };
                assert!(
                    decode(&encode(&d, None), None).is_ok(),
                    "{kind:?} {good} ms"
                );
            }
        }
        // `released` and `challenge` come from failoverd, which has no interval of its own.
        for kind in [Kind::Released, Kind::Challenge] {
            let d = Datagram {
                kind,
                interval_ms: 0,
                ..fixed()
            };
            assert!(decode(&encode(&d, None), None).is_ok(), "{kind:?}");
        }
    }

    // ReplayGuard

    const NOW: u64 = 1_700_000_000_000;

    fn dg(boot_id: u64, seq: u64) -> Datagram {
        Datagram {
            boot_id,
            seq,
            time_ms: NOW,
            ..fixed()
        }
    }

    #[test]
    fn replay_in_order_accepted_duplicate_refused() {
        let mut g = ReplayGuard::new();
        for seq in 0..200 {
            assert_eq!(g.check(&dg(1, seq)), Ok(()), "seq {seq}");
        }
        assert_eq!(g.check(&dg(1, 199)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, 150)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, 0)), Err(DropReason::Replay));
    }

    #[test]
    fn replay_out_of_order_within_window_accepted_once() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&dg(1, 10)), Ok(()));
        assert_eq!(g.check(&dg(1, 100)), Ok(()));
        // 10 is now 90 below the highest: outside the window, and seen anyway.
        assert_eq!(g.check(&dg(1, 10)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, 40)), Ok(()));
        assert_eq!(g.check(&dg(1, 40)), Err(DropReason::Replay));
        // The window holds the REPLAY_WINDOW sequences below the highest, no more.
        assert_eq!(g.check(&dg(1, 100 - REPLAY_WINDOW)), Ok(()));
        assert_eq!(g.check(&dg(1, 99 - REPLAY_WINDOW)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, 99)), Ok(()));
        assert_eq!(g.check(&dg(1, 100)), Err(DropReason::Replay));
        // Two links: each datagram arrives once on each of them, interleaved.
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&dg(2, 1)), Ok(()));
        assert_eq!(g.check(&dg(2, 3)), Ok(()));
        assert_eq!(g.check(&dg(2, 2)), Ok(()));
        assert_eq!(g.check(&dg(2, 4)), Ok(()));
        assert_eq!(g.check(&dg(2, 3)), Err(DropReason::Replay));
    }

    #[test]
    fn replay_window_slides_and_clears_on_big_jumps() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&dg(1, 1)), Ok(()));
        assert_eq!(g.check(&dg(1, 2)), Ok(()));
        // Sliding by exactly the window width keeps the old highest as its last bit.
        assert_eq!(g.check(&dg(1, 2 + REPLAY_WINDOW)), Ok(()));
        assert_eq!(g.check(&dg(1, 2)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, 1000)), Ok(()));
        assert_eq!(g.check(&dg(1, 999)), Ok(()));
        assert_eq!(g.check(&dg(1, 936)), Ok(()));
        assert_eq!(g.check(&dg(1, 935)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, u64::MAX)), Ok(()));
        assert_eq!(g.check(&dg(1, u64::MAX)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(1, u64::MAX - 64)), Ok(()));
    }

    #[test]
    fn replay_boot_ids_are_independent() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&dg(1, 100)), Ok(()));
        assert_eq!(g.check(&dg(2, 1)), Ok(()));
        assert_eq!(g.check(&dg(2, 100)), Ok(()));
        assert_eq!(g.check(&dg(1, 100)), Err(DropReason::Replay));
        assert_eq!(g.check(&dg(2, 100)), Err(DropReason::Replay));
    }

    #[test]
    fn replay_memory_is_bounded_and_keeps_the_live_peer() {
        let mut g = ReplayGuard::new();
        let live = u64::MAX;
        for i in 0..1000u64 {
            assert_eq!(g.check(&dg(live, i)), Ok(()));
            assert_eq!(g.check(&dg(i, 5)), Ok(()));
            assert!(g.windows.len() <= MAX_BOOT_IDS);
        }
        assert_eq!(g.windows.len(), MAX_BOOT_IDS);
        // The peer that keeps sending was never evicted, so its old sequences stay replays.
        assert_eq!(g.check(&dg(live, 999)), Err(DropReason::Replay));
        // The oldest flood ids were, and the newest were not.
        assert_eq!(g.check(&dg(0, 5)), Ok(()));
        assert_eq!(g.check(&dg(999, 5)), Err(DropReason::Replay));
    }

    #[test]
    fn a_window_fresh_from_a_sequence_admits_only_what_follows() {
        let mut w = Window::fresh_from(100);
        for seq in [0, 37, 99, 100] {
            assert!(
                !w.admit(seq),
                "{seq} was sent before the proof, or is the proof"
            );
        }
        assert!(w.admit(102));
        assert!(
            w.admit(101),
            "inside the window after the proof: late, not replayed"
        );
        assert!(!w.admit(101));
    }

    #[test]
    fn replay_forget() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(&dg(1, 5)), Ok(()));
        g.forget();
        assert!(g.windows.is_empty());
        assert_eq!(g.check(&dg(1, 5)), Ok(()));
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Heartbeat),
            Just(Kind::Goodbye),
            Just(Kind::Released),
            Just(Kind::Challenge)
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (any::<IpAddr>(), 0u8..=0x1f, any::<[u8; 6]>()).prop_map(|(addr, bits, mac)| Entry {
            addr,
            role: Role::from_bits(bits).unwrap(),
            mac,
        })
    }

    prop_compose! {
        fn datagram()(
            kind in kind(),
            state in 0u8..=STATE_KNOWN,
            interval_ms in MIN_INTERVAL_MS..=MAX_INTERVAL_MS,
            boot_id in any::<u64>(),
            seq in any::<u64>(),
            time_ms in any::<u64>(),
            nonce in any::<u64>(),
            token in any::<u64>(),
            ack in any::<u64>(),
            hostname in "[a-zA-Z0-9.-]{0,64}",
            entries in proptest::collection::vec(entry(), 0..=MAX_ADDRS),
        ) -> Datagram {
            Datagram {
                kind, state, interval_ms, boot_id, seq, time_ms, nonce, token, ack, hostname,
                entries,
            }
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&buf, None);
            let _ = decode(&buf, Some(&key()));
        }

        #[test]
        fn decode_never_panics_on_damaged_datagrams(
            d in datagram(),
            tagged in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let k = key();
            let mut buf = encode(&d, tagged.then_some(&k));
            for (at, byte) in edits {
                let i = at.index(buf.len());
                buf[i] = byte;
            }
            buf.truncate(cut.index(buf.len() + 1));
            let _ = decode(&buf, None);
            if let Ok(Message::Ipfo { datagram, authenticated }) = decode(&buf, Some(&k)) {
                // Authentic bytes are the bytes that were sent.
                prop_assert!(authenticated);
                prop_assert_eq!(datagram, d);
            }
        }

        #[test]
        fn valid_datagrams_round_trip(d in datagram(), tagged in any::<bool>()) {
            let k = key();
            let buf = encode(&d, tagged.then_some(&k));
            prop_assert!(buf.len() <= MAX_LEN);
            prop_assert_eq!(decode(&buf, None), Ok(ipfo(d.clone(), false)));
            let want = if tagged { Ok(ipfo(d, true)) } else { Err(DropReason::MissingTag) };
            prop_assert_eq!(decode(&buf, Some(&k)), want);
        }
    }
}
