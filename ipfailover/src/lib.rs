//! ipfailover's core: everything the daemons decide, free of sockets and of the clock.
//!
//! - [`settings`]: the hostconfig and TOML configuration, parsed and validated into [`Settings`].
//! - [`wire`]: the heartbeat datagram, version 1, with HMAC-SHA256 and replay protection.
//! - [`failover`]: failoverd's state machine, fed with events and the current time.
//! - [`sender`]: heartbeatd's schedule, the same shape.

pub mod addr;
pub mod announce;
pub mod failover;
pub mod hooks;
pub mod receive;
pub mod sender;
pub mod settings;
pub mod status;
pub mod wire;

pub use addr::AddrPair;
