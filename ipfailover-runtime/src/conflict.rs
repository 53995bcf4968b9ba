//! Who else answers for our addresses: probes out (ARP probe, DAD-style neighbour
//! solicitation) and answers in, on the sockets of [`ConflictWatch`].

use std::net::IpAddr;

use ipfailover_os::conflict::ConflictWatch;
use mio::{Registry, Token};

use crate::udp::READ_BUDGET;

/// The conflict watch's sockets.
pub(crate) const CONFLICT: Token = Token(4);

/// The watched addresses and their sockets.
#[derive(Debug)]
pub struct Conflicts {
    registry: Registry,
    watch: ConflictWatch,
    readable: bool,
}

impl Conflicts {
    pub(crate) fn new(registry: Registry) -> Conflicts {
        Conflicts {
            registry,
            watch: ConflictWatch::new(),
            readable: false,
        }
    }

    /// Watches `pairs` (interface, address), and no others; a message for each interface
    /// that cannot be watched (the others are).
    pub fn watch(&mut self, pairs: &[(String, IpAddr)]) -> Vec<String> {
        self.watch.watch(&self.registry, CONFLICT, pairs)
    }

    /// Sends one probe for every watched address (what could not be sent is logged).
    pub fn probe(&mut self) {
        for e in self.watch.probe(&self.registry, CONFLICT) {
            log::warn!("{e}");
        }
    }

    pub(crate) fn readable(&mut self) {
        self.readable = true;
    }

    /// What the LAN said since the last turn: each (address, MAC) once.
    pub(crate) fn read(&mut self) -> Vec<(IpAddr, [u8; 6])> {
        if !std::mem::take(&mut self.readable) {
            return Vec::new();
        }
        let mut seen: Vec<(IpAddr, [u8; 6])> = Vec::new();
        for a in self.watch.read(READ_BUDGET) {
            if seen.contains(&(a.addr, a.mac)) {
                continue;
            }
            seen.push((a.addr, a.mac));
            log::debug!(
                "{} answers from {} on {}",
                a.addr,
                crate::mac_text(&a.mac),
                a.iface
            );
        }
        seen
    }
}
