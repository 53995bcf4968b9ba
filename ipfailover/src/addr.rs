//! `iface:address[/prefix]`: one address that failoverd takes over, and the interface it goes on.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One entry of `FAILOVER_PEER_IP_PAIRS`: an address to take over and the interface it goes on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddrPair {
    /// Interface name (`en0`, `eth0`).
    pub iface: String,
    /// The address taken over.
    pub addr: IpAddr,
    /// Prefix length; `None` means "the prefix of the interface's subnet that holds it, else
    /// /32 or /128", resolved by the OS adapter.
    pub prefix: Option<u8>,
}

impl AddrPair {
    /// The longest prefix valid for this address family.
    pub fn max_prefix(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

impl fmt::Display for AddrPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.iface, self.addr)?;
        if let Some(p) = self.prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl FromStr for AddrPair {
    type Err = String;

    /// Parses `iface:address[/prefix]`. The interface is everything before the first `:`, so
    /// IPv6 works as written: `eth0:2001:db8::100/64`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (iface, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not of the form iface:address[/prefix]"))?;
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
            return Err(format!(
                "`{iface}` in `{s}` is not an interface name (1 to 15 characters, no `/`)"
            ));
        }
        let (addr, prefix) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` in `{s}` is not an IPv4 or IPv6 address"))?;
        let mut pair = AddrPair {
            iface: iface.to_string(),
            addr,
            prefix: None,
        };
        if let Some(p) = prefix {
            let p: u8 = p
                .parse()
                .map_err(|_| format!("`/{p}` in `{s}` is not a prefix length"))?;
            if p > pair.max_prefix() {
                return Err(format!(
                    "`/{p}` in `{s}` is longer than {} bits",
                    pair.max_prefix()
                ));
            }
            pair.prefix = Some(p);
        }
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apple_form_and_ipv6() {
        let p: AddrPair = "en0:10.0.0.100".parse().unwrap();
        assert_eq!(p.iface, "en0");
        assert_eq!(p.addr, "10.0.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(p.prefix, None);
        let p: AddrPair = "eth0:2001:db8::100/64".parse().unwrap();
        assert_eq!(p.iface, "eth0");
        assert_eq!(p.addr, "2001:db8::100".parse::<IpAddr>().unwrap());
        assert_eq!(p.prefix, Some(64));
        assert_eq!(p.to_string(), "eth0:2001:db8::100/64");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "10.0.0.1",
            ":10.0.0.1",
            "en0:",
            "en0:10.0.0.300",
            "en0:10.0.0.1/33",
            "en0:10.0.0.1/x",
            "averyveryverylongname:10.0.0.1",
        ] {
            assert!(bad.parse::<AddrPair>().is_err(), "{bad} should be rejected");
        }
    }
}
