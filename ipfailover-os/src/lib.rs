//! ipfailover's operating-system adapters: everything that touches the host's interfaces.
//!
//! - [`interfaces`]: this host's addresses, interface indexes and MAC addresses, and the
//!   address heartbeatd uses as its identity on each heartbeat subnet.
//! - [`addrs`]: adding and removing the taken-over addresses through an [`AddressBackend`]:
//!   [`Netlink`] (rtnetlink) on Linux, [`Ifconfig`] (`ifconfig alias`) on macOS.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements, so that the LAN
//!   learns at once that an address has moved.
//! - [`conflict`]: ARP probes and DAD neighbour solicitations, and listening for whoever else
//!   claims our addresses (address conflict detection, RFC 5227).
//!
//! - [`config`]: reading the configuration file and the shared secret (the core parses them).
//! - [`daemon`]: what the three programs share: command line, exit codes, logging, settings.
//! - [`check`]: the one configuration check of `-t`, `failoverctl check-config` and `init`.
//! - [`safe_fs`]: paths a root daemon may trust, and files created so that no link is followed.
//! - [`udp`]: the daemons' sockets.
//!
//! Everything here acts in the network namespace of the calling thread: sockets are opened,
//! and interfaces looked up, in the thread that calls the function or constructor.
//!
//! `unsafe` is denied here as in the other crates, except in the few functions that make a
//! system call no maintained crate wraps; each allows it by name, and each `unsafe` block
//! says why it is sound (docs/design.md, "unsafe").

#![deny(unsafe_code)]

pub mod addrs;
pub mod announce;
pub mod check;
pub mod clock;
pub mod config;
pub mod conflict;
pub mod control;
pub mod daemon;
pub mod hooks;
pub mod ifconfig;
pub mod interfaces;
pub mod journal;
pub mod mail;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod safe_fs;
pub mod status_file;
pub mod udp;

#[cfg(all(any(test, feature = "testns"), target_os = "linux"))]
pub mod testns;

pub use addrs::{default_backend, resolve, AddressBackend, ResolvedPair};
pub use announce::{Announcer, Announcers};
pub use ifconfig::Ifconfig;
pub use interfaces::{addrs_for_destinations, iface_index, local_addrs, mac_address, LocalAddr};
#[cfg(target_os = "linux")]
pub use netlink::{AddressEvents, Netlink};
