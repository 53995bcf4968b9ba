//! Adding and removing the taken-over addresses.

use std::fmt;
use std::io;
use std::net::IpAddr;

use ipfailover::AddrPair;

use crate::interfaces::{self, LocalAddr};

/// A pair with its interface checked and prefix decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPair {
    /// Interface name.
    pub iface: String,
    /// Interface index, as it was when the pair was resolved.
    pub index: u32,
    /// The address taken over.
    pub addr: IpAddr,
    /// The prefix length it is added with.
    pub prefix: u8,
}

impl fmt::Display for ResolvedPair {
    /// `iface:address/prefix`, the form of `FAILOVER_PEER_IP_PAIRS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.iface, self.addr, self.prefix)
    }
}

/// Checks the interface exists (error message: "interface `eth9` of FAILOVER_PEER_IP_PAIRS entry `eth9:10.0.0.1` does not exist")
/// and decides the prefix: the pair's own, else the prefix of an existing address on that interface whose subnet holds it, else 32/128.
///
/// Among several existing subnets that hold the address, the most specific wins; the address
/// itself, if the interface already holds it (a takeover from before a restart), does not
/// count, so that the answer does not depend on whether it is held.
pub fn resolve(pair: &AddrPair) -> Result<ResolvedPair, String> {
    resolve_as(pair, "FAILOVER_PEER_IP_PAIRS")
}

/// [`resolve`], for a pair of the key `key` (a group's `FAILOVER_GROUP_IP_PAIRS`).
pub fn resolve_as(pair: &AddrPair, key: &str) -> Result<ResolvedPair, String> {
    let index = interfaces::iface_index(&pair.iface).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "interface `{}` of {key} entry `{pair}` does not exist",
                pair.iface
            )
        } else {
            format!("interface `{}` of {key} entry `{pair}`: {e}", pair.iface)
        }
    })?;
    let max = pair.max_prefix();
    let prefix = match pair.prefix {
        Some(p) if p <= max => p,
        Some(p) => {
            return Err(format!(
                "`/{p}` in {key} entry `{pair}` is longer than {max} bits"
            ))
        }
        None => {
            let locals = interfaces::local_addrs().map_err(|e| {
                format!(
                    "cannot list the addresses of `{}` for {key} entry `{pair}`: {e}",
                    pair.iface
                )
            })?;
            prefix_from_subnets(&locals, &pair.iface, pair.addr).unwrap_or(max)
        }
    };
    Ok(ResolvedPair {
        iface: pair.iface.clone(),
        index,
        addr: pair.addr,
        prefix,
    })
}

/// The prefix of the most specific subnet on `iface` that holds `addr`, other than `addr`'s own.
fn prefix_from_subnets(locals: &[LocalAddr], iface: &str, addr: IpAddr) -> Option<u8> {
    locals
        .iter()
        .filter(|l| l.iface == iface && l.addr != addr && l.contains(addr))
        .map(|l| l.prefix)
        .max()
}

/// How addresses are added and removed; every operation is idempotent.
pub trait AddressBackend: Send + std::fmt::Debug {
    /// A short name for logs (`netlink`, `ifconfig`).
    fn name(&self) -> &'static str;
    /// Adds the address; Ok(true) if added, Ok(false) if it was already there.
    fn add(&mut self, pair: &ResolvedPair) -> io::Result<bool>;
    /// Removes it; Ok(true) if removed, Ok(false) if it was not there.
    fn remove(&mut self, pair: &ResolvedPair) -> io::Result<bool>;
    /// Whether the interface holds the address now (any prefix).
    fn holds(&mut self, pair: &ResolvedPair) -> io::Result<bool>;
}

/// rtnetlink on Linux, ifconfig on macOS.
///
/// On Linux the back end talks to the network namespace of the calling thread.
pub fn default_backend() -> io::Result<Box<dyn AddressBackend>> {
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(crate::netlink::Netlink::new()?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(Box::new(crate::ifconfig::Ifconfig::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interfaces::tests::{ip, local};

    #[test]
    fn the_prefix_comes_from_the_most_specific_subnet_of_that_interface() {
        let locals = [
            local("eth0", "198.51.100.20", 24),
            local("eth0", "198.51.100.130", 25),
            local("eth0", "198.51.100.200", 32),
            local("eth1", "203.0.113.20", 24),
            local("eth0", "2001:db8::20", 64),
        ];
        assert_eq!(
            prefix_from_subnets(&locals, "eth0", ip("198.51.100.10")),
            Some(24)
        );
        assert_eq!(
            prefix_from_subnets(&locals, "eth0", ip("198.51.100.140")),
            Some(25)
        );
        // Another interface's subnet does not count.
        assert_eq!(
            prefix_from_subnets(&locals, "eth0", ip("203.0.113.10")),
            None
        );
        assert_eq!(
            prefix_from_subnets(&locals, "eth0", ip("2001:db8::10")),
            Some(64)
        );
        // The address's own entry does not count.
        assert_eq!(
            prefix_from_subnets(&locals, "eth0", ip("198.51.100.200")),
            Some(25)
        );
    }

    #[test]
    fn resolved_pairs_display_as_configured() {
        let pair = ResolvedPair {
            iface: "eth0".into(),
            index: 2,
            addr: ip("2001:db8::10"),
            prefix: 64,
        };
        assert_eq!(pair.to_string(), "eth0:2001:db8::10/64");
    }
}
