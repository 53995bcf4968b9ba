//! ipfailover's core: everything the daemons decide, free of sockets and of the clock.
//!
//! - [`settings`]: the hostconfig and TOML configuration, parsed and validated into [`Settings`].
//! - [`wire`]: the heartbeat datagram, version 2, with HMAC-SHA256 and the freshness challenge.
//! - [`receive`]: what a received datagram means: authentic, fresh, from the peer.
//! - [`failover`]: failoverd's state machine for a pair, fed with events and the current time.
//! - [`group`]: a group member's state machine (etcd arbitrates), the same shape.
//! - [`sender`]: heartbeatd's schedule, the same shape.
//! - [`shown`]: text that came from others, escaped for a terminal, a mail or a log line.
//! - [`arp`], [`nd`], [`control`]: the codecs of what arrives from others (ARP, neighbour
//!   discovery, the control socket's lines), golden-tested and fuzzed.
//!
//! No file, socket or clock is touched here (`ipfailover-os` reads the configuration and the
//! secret, and hands their bytes in), and no `unsafe`: see docs/design.md.

#![forbid(unsafe_code)]

pub mod addr;
pub mod announce;
pub mod arp;
pub mod control;
pub mod failover;
pub mod group;
pub mod hooks;
pub mod nd;
pub mod probe;
pub mod receive;
pub mod sender;
pub mod settings;
pub mod shown;
pub mod status;
pub mod timefmt;
pub mod wire;

pub use addr::AddrPair;
