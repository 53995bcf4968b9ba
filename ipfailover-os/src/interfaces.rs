//! This host's interfaces: their addresses, indexes and MAC addresses.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// An address of this host, with its interface and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// The interface that holds the address (`eth0`, `en0`).
    pub iface: String,
    /// The address.
    pub addr: IpAddr,
    /// The prefix length of its subnet.
    pub prefix: u8,
}

impl LocalAddr {
    /// Whether `addr` lies in this address's subnet.
    pub fn contains(&self, addr: IpAddr) -> bool {
        subnet_contains(self.addr, self.prefix, addr)
    }

    /// The subnet's broadcast address (IPv4 with a prefix up to /30; none otherwise).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix <= 30 => Some(Ipv4Addr::from(
                u32::from(a) | !u32::from(netmask_v4(self.prefix)),
            )),
            _ => None,
        }
    }
}

/// Whether `addr` lies in the subnet `net/prefix`; addresses of different families never do.
pub(crate) fn subnet_contains(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The IPv4 netmask of a prefix length (`24` gives `255.255.255.0`).
pub(crate) fn netmask_v4(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

/// Every address of this host, as the kernel reports it (`getifaddrs`).
///
/// On Linux an IPv4 address that carries a label (`eth0:1`) is reported under its interface
/// (`eth0`): Linux interface names cannot contain `:`.
pub fn local_addrs() -> io::Result<Vec<LocalAddr>> {
    let ifaces = if_addrs::get_if_addrs()?;
    Ok(ifaces
        .into_iter()
        .map(|i| {
            let (addr, prefix) = match i.addr {
                if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
                if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
            };
            let iface = if cfg!(target_os = "linux") {
                match i.name.split_once(':') {
                    Some((dev, _label)) => dev.to_string(),
                    None => i.name,
                }
            } else {
                i.name
            };
            LocalAddr {
                iface,
                addr,
                prefix,
            }
        })
        .collect())
}

/// The index of the interface `name`; `NotFound` if there is no such interface.
pub fn iface_index(name: &str) -> io::Result<u32> {
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` contains a NUL byte"),
        ));
    }
    nix::net::if_::if_nametoindex(name).map_err(|errno| {
        let err = io::Error::from(errno);
        // if_nametoindex reports a missing interface as ENODEV (Linux) or ENXIO (BSD), and
        // some systems leave errno unset (0).
        match err.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) | Some(0) | None => io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface `{name}` does not exist"),
            ),
            _ => io::Error::new(err.kind(), format!("interface `{name}`: {err}")),
        }
    })
}

/// Each interface's link state by name, and every (interface, address) pair.
pub type LinksAndAddrs = (HashMap<String, bool>, Vec<(String, IpAddr)>);

/// Each interface's name and whether its link carries traffic: administratively up and
/// running (Linux: the carrier is there, `LOWER_UP`; a veth whose other end is down, an
/// unplugged cable, a link set down are not); and every address on it. One dump of
/// `getifaddrs`.
pub fn links_and_addrs() -> io::Result<LinksAndAddrs> {
    use nix::net::if_::InterfaceFlags;
    let mut links = HashMap::new();
    let mut addrs = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let up = ifa
            .flags
            .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
        let e = links.entry(ifa.interface_name.clone()).or_insert(false);
        *e |= up;
        let ip = ifa.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        if let Some(ip) = ip {
            addrs.push((ifa.interface_name, ip));
        }
    }
    Ok((links, addrs))
}

/// The Ethernet (MAC) address of an interface.
///
/// Fails with `NotFound` if the interface does not exist, and with `Unsupported` if it is not
/// an Ethernet-like interface (loopback, a tunnel): such an interface has no ARP to update.
///
/// The `SIOCGIFHWADDR` ioctl through libc: nix wraps no such request (its `ioctl_*!` macros
/// only generate an `unsafe fn` around the same call).
#[cfg(target_os = "linux")]
pub fn mac_address(iface: &str) -> io::Result<[u8; 6]> {
    use std::os::fd::AsRawFd;

    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{iface}` is not an interface name"),
        ));
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of plain fields and one
    // pointer) for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads `ifr_name` and writes `ifr_hwaddr` of the `ifreq` we own and
    // pass by a pointer valid for the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENODEV) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface `{iface}` does not exist"),
            ),
            _ => io::Error::new(
                err.kind(),
                format!("reading the MAC address of `{iface}`: {err}"),
            ),
        });
    }
    // SAFETY: a successful SIOCGIFHWADDR has written the `ifru_hwaddr` member of the union
    // (and the zeroed request left every byte of it initialised in any case).
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "interface `{iface}` is not an Ethernet interface (hardware type {})",
                hw.sa_family
            ),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// The Ethernet (MAC) address of an interface, from its `AF_LINK` entry of `getifaddrs`.
///
/// libc's `getifaddrs`, not nix's: nix copies each address into a fixed-size `sockaddr_dl`,
/// whose 12 bytes of `sdl_data` hold the name and then the link-layer address, so its
/// `LinkAddr::addr` gives `None` for a name of 6 bytes or more (`bridge0`, `vlan100`), and it
/// does not check the address length is 6. This reads the address within `sdl_len`.
#[cfg(target_vendor = "apple")]
pub fn mac_address(iface: &str) -> io::Result<[u8; 6]> {
    use std::ffi::CStr;

    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `&mut head` is valid for the one pointer getifaddrs writes; on success the list
    // it names is ours until the freeifaddrs below, the only one.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is non-null and a node of the list getifaddrs returned, not yet freed;
        // nothing writes to the list while `entry` is used.
        let entry = unsafe { &*cur };
        cur = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to a sockaddr owned by the list.
        let family = unsafe { (*entry.ifa_addr).sa_family };
        if name.to_bytes() != iface.as_bytes() || i32::from(family) != libc::AF_LINK {
            continue;
        }
        let dl = entry.ifa_addr as *const libc::sockaddr_dl;
        // SAFETY: an AF_LINK address is a sockaddr_dl; its link-layer address follows the
        // name inside the structure's `sdl_len` bytes, which we check before reading.
        let mac = unsafe {
            let nlen = usize::from((*dl).sdl_nlen);
            let alen = usize::from((*dl).sdl_alen);
            let data = std::mem::offset_of!(libc::sockaddr_dl, sdl_data);
            if alen == 6 && data + nlen + alen <= usize::from((*dl).sdl_len) {
                let p = (dl as *const u8).add(data + nlen);
                let mut mac = [0u8; 6];
                std::ptr::copy_nonoverlapping(p, mac.as_mut_ptr(), 6);
                Some(mac)
            } else {
                None
            }
        };
        found = Some(mac);
        break;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    match found {
        Some(Some(mac)) => Ok(mac),
        Some(None) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("interface `{iface}` has no Ethernet address"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface `{iface}` does not exist"),
        )),
    }
}

/// The Ethernet (MAC) address of an interface: not implemented on this platform.
#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
pub fn mac_address(iface: &str) -> io::Result<[u8; 6]> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("reading the MAC address of `{iface}` is not supported on this platform"),
    ))
}

/// For each destination (e.g. a subnet broadcast 198.51.100.255, or a unicast address), the local address
/// whose subnet holds it: heartbeatd's default identity. Destinations matched by no subnet are skipped.
///
/// When several subnets hold a destination, the most specific (longest prefix) wins. An
/// address matched by several destinations is listed once, at its first match.
pub fn addrs_for_destinations(dests: &[IpAddr]) -> io::Result<Vec<LocalAddr>> {
    Ok(match_destinations(&local_addrs()?, dests))
}

/// The pure part of [`addrs_for_destinations`].
fn match_destinations(locals: &[LocalAddr], dests: &[IpAddr]) -> Vec<LocalAddr> {
    let mut found: Vec<LocalAddr> = Vec::new();
    for &dest in dests {
        let best = locals.iter().filter(|l| l.contains(dest)).fold(
            None::<&LocalAddr>,
            |best, l| match best {
                Some(b) if b.prefix >= l.prefix => Some(b),
                _ => Some(l),
            },
        );
        if let Some(l) = best {
            if !found.contains(l) {
                found.push(l.clone());
            }
        }
    }
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A local address, for tests.
    pub(crate) fn local(iface: &str, addr: &str, prefix: u8) -> LocalAddr {
        LocalAddr {
            iface: iface.to_string(),
            addr: addr.parse().expect("test address"),
            prefix,
        }
    }

    /// An address, for tests.
    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn subnets_contain_their_addresses_only() {
        let net = ip("198.51.100.20");
        assert!(subnet_contains(net, 24, ip("198.51.100.255")));
        assert!(subnet_contains(net, 24, ip("198.51.100.0")));
        assert!(!subnet_contains(net, 24, ip("198.51.101.1")));
        assert!(subnet_contains(net, 0, ip("203.0.113.1")));
        assert!(subnet_contains(net, 32, net));
        assert!(!subnet_contains(net, 32, ip("198.51.100.21")));
        assert!(!subnet_contains(net, 24, ip("2001:db8::1")));
        let net6 = ip("2001:db8::20");
        assert!(subnet_contains(net6, 64, ip("2001:db8::ffff:1")));
        assert!(!subnet_contains(net6, 64, ip("2001:db8:0:1::1")));
        assert!(subnet_contains(net6, 0, ip("2001:db9::1")));
        assert!(subnet_contains(net6, 128, net6));
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_v4(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask_v4(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask_v4(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask_v4(20), Ipv4Addr::new(255, 255, 240, 0));
    }

    #[test]
    fn destinations_pick_the_most_specific_subnet_once() {
        let locals = [
            local("lo", "127.0.0.1", 8),
            local("eth0", "198.51.100.20", 24),
            local("eth1", "203.0.113.20", 24),
            local("eth1", "203.0.113.130", 25),
            local("eth0", "2001:db8::20", 64),
        ];
        let found = match_destinations(
            &locals,
            &[
                ip("198.51.100.255"),
                ip("203.0.113.255"),
                ip("198.51.100.30"),
                ip("192.0.2.255"),
                ip("255.255.255.255"),
                ip("2001:db8::1"),
            ],
        );
        assert_eq!(
            found,
            vec![
                local("eth0", "198.51.100.20", 24),
                local("eth1", "203.0.113.130", 25),
                local("eth0", "2001:db8::20", 64),
            ]
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::*;
    use crate::testns::Netns;

    /// The MAC address `ip -o link show dev IFACE` reports.
    fn ip_link_mac(ns: &Netns, iface: &str) -> [u8; 6] {
        let out = ns.ip(&format!("-o link show dev {iface}"));
        let text = out
            .split_whitespace()
            .skip_while(|t| *t != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no link/ether in {out}"));
        let mut mac = [0u8; 6];
        for (byte, hex) in mac.iter_mut().zip(text.split(':')) {
            *byte = u8::from_str_radix(hex, 16).expect("hex");
        }
        mac
    }

    #[test]
    fn interfaces_inside_a_namespace() {
        let ns = Netns::new();
        ns.ip("link add vA type veth peer name vB");
        ns.ip("link set vA address 02:00:5e:00:53:0a");
        ns.ip("link set vA up");
        ns.ip("link set vB up");
        ns.ip("addr add 198.51.100.20/24 dev vA");
        ns.ip("addr add 203.0.113.20/25 dev vB");
        ns.ip("addr add 2001:db8::20/64 dev vA nodad");
        let vb_mac = ip_link_mac(&ns, "vB");
        ns.enter(|| {
            assert_eq!(
                mac_address("vA").expect("mac of vA"),
                [0x02, 0x00, 0x5e, 0x00, 0x53, 0x0a]
            );
            assert_eq!(mac_address("vB").expect("mac of vB"), vb_mac);
            let err = mac_address("eth9").expect_err("no eth9");
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            // Loopback has no Ethernet address to announce.
            let err = mac_address("lo").expect_err("lo is not Ethernet");
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");

            let locals = local_addrs().expect("local addresses");
            let va = LocalAddr {
                iface: "vA".into(),
                addr: "198.51.100.20".parse().expect("addr"),
                prefix: 24,
            };
            let vb = LocalAddr {
                iface: "vB".into(),
                addr: "203.0.113.20".parse().expect("addr"),
                prefix: 25,
            };
            let va6 = LocalAddr {
                iface: "vA".into(),
                addr: "2001:db8::20".parse().expect("addr"),
                prefix: 64,
            };
            for l in [&va, &vb, &va6] {
                assert!(locals.contains(l), "{l:?} not in {locals:?}");
            }
            assert!(iface_index("vA").expect("index") > 0);
            let err = iface_index("eth9").expect_err("no eth9");
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert!(err.to_string().contains("`eth9` does not exist"), "{err}");

            let dests: Vec<IpAddr> = ["198.51.100.255", "203.0.113.127", "203.0.113.255"]
                .iter()
                .map(|s| s.parse().expect("addr"))
                .collect();
            assert_eq!(
                addrs_for_destinations(&dests[..1]).expect("identity"),
                vec![va.clone()]
            );
            // 203.0.113.255 lies outside vB's /25.
            assert_eq!(
                addrs_for_destinations(&dests).expect("identity"),
                vec![va, vb]
            );
        });
    }
}
