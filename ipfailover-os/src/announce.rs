//! Telling the LAN that an address moved here: gratuitous ARP (IPv4) and unsolicited
//! neighbour advertisements (IPv6). The packets are the core's ([`ipfailover::arp`],
//! [`ipfailover::nd`]); this sends them.

use std::io;
use std::net::IpAddr;
#[cfg(target_os = "linux")]
use std::net::{Ipv4Addr, Ipv6Addr};

/// The Ethernet broadcast address.
#[cfg(target_os = "linux")]
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Sends announcements for addresses on one interface.
///
/// On Linux it sends the packets itself, on sockets opened in the network namespace of the
/// thread that calls [`Announcer::new`] (the ICMPv6 socket: of the thread of the first IPv6
/// announcement). Elsewhere (macOS) it does nothing: the kernel announces an address itself
/// when `ifconfig` adds it as an alias.
#[derive(Debug)]
pub struct Announcer {
    iface: String,
    #[cfg(target_os = "linux")]
    linux: LinuxAnnouncer,
}

#[cfg(target_os = "linux")]
#[derive(Debug)]
struct LinuxAnnouncer {
    /// The interface's index when the sockets were opened: if it changes (the interface was
    /// deleted and made again), they are opened again.
    index: u32,
    /// `AF_PACKET`/`SOCK_DGRAM` with protocol 0: it sends ARP (the frame's EtherType is
    /// given per packet) and receives nothing, so no queue fills up with the LAN's ARP.
    packet: socket2::Socket,
    /// Raw ICMPv6, opened at the first IPv6 announcement (a host may have no IPv6).
    icmp6: Option<socket2::Socket>,
}

impl Announcer {
    /// Prepares announcements on `iface`: on Linux, reads its index and MAC address and opens
    /// an `AF_PACKET` socket bound to it.
    pub fn new(iface: &str) -> io::Result<Announcer> {
        Ok(Announcer {
            iface: iface.to_string(),
            #[cfg(target_os = "linux")]
            linux: LinuxAnnouncer::new(iface)?,
        })
    }

    /// One gratuitous ARP (IPv4: an ARP request, sender IP = target IP = addr, sender MAC = ours, to ff:ff:ff:ff:ff:ff, as RFC 5227 §3 "ARP Announcement")
    /// or one unsolicited neighbour advertisement (IPv6, RFC 4861 §7.2.6: to ff02::1, hop limit 255, Override flag set, Solicited clear, target = addr, with the target link-layer address option; source address = addr).
    ///
    /// For IPv6 the interface must hold `addr` (not tentative: add it without duplicate
    /// address detection), since it is the packet's source address.
    ///
    /// On macOS this does nothing and returns `Ok(())`: the kernel sends its own gratuitous
    /// ARP (and, for IPv6, its own advertisement) when `ifconfig` adds an alias.
    pub fn announce(&mut self, addr: IpAddr) -> io::Result<()> {
        self.announce_as(addr, None)
    }

    /// Like [`Announcer::announce`], but naming `mac` as the address's link-layer address:
    /// for handing an address back to the host that answers for it (IPv4: the ARP sender
    /// hardware address is `mac`; the frame still leaves from our interface). `None` is ours.
    pub fn announce_as(&mut self, addr: IpAddr, mac: Option<[u8; 6]>) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let result = self.linux.refresh(&self.iface).and_then(|ours| {
                let mac = mac.unwrap_or(ours);
                match addr {
                    IpAddr::V4(a) => self.linux.send_arp(mac, a),
                    IpAddr::V6(a) => self.linux.send_na(&self.iface, mac, a),
                }
            });
            result.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("announcing {addr} on {}: {e}", self.iface),
                )
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = mac;
            log::debug!(
                "not announcing {addr} on {}: the kernel announces aliases itself",
                self.iface
            );
            Ok(())
        }
    }
}

/// `ICMPV6_FILTER` from `<linux/icmpv6.h>`, absent from `libc`.
#[cfg(target_os = "linux")]
const ICMPV6_FILTER: libc::c_int = 1;

#[cfg(target_os = "linux")]
impl LinuxAnnouncer {
    fn new(iface: &str) -> io::Result<LinuxAnnouncer> {
        let index = crate::interfaces::iface_index(iface)?;
        let packet = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::DGRAM, None)?;
        packet.bind(&link_addr(index, 0, [0; 6]))?;
        Ok(LinuxAnnouncer {
            index,
            packet,
            icmp6: None,
        })
    }

    /// Reads the interface's index and MAC now (an announcement must carry the MAC the
    /// interface has today, and leave by the interface that has its name today), opening
    /// the sockets again if the index changed. Returns the MAC.
    fn refresh(&mut self, iface: &str) -> io::Result<[u8; 6]> {
        let index = crate::interfaces::iface_index(iface)?;
        if index != self.index {
            *self = LinuxAnnouncer::new(iface)?;
        }
        crate::interfaces::mac_address(iface)
    }

    fn send_arp(&self, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
        let frame = ipfailover::arp::Arp::announcement(mac, ip).encode();
        let dest = link_addr(self.index, ipfailover::arp::ETHERTYPE, BROADCAST_MAC);
        self.packet.send_to(&frame, &dest)?;
        Ok(())
    }

    fn send_na(&mut self, iface: &str, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
        let socket = match &mut self.icmp6 {
            Some(s) => s,
            slot => slot.insert(icmp6_socket(iface, self.index)?),
        };
        let message = ipfailover::nd::Advert::unsolicited(mac, ip).encode();
        let dest = std::net::SocketAddrV6::new(ipfailover::nd::ALL_NODES, 0, 0, self.index);
        send_from(socket, &message, dest, ip, self.index)
    }
}

/// A raw ICMPv6 socket that sends on `iface` with hop limit 255 (RFC 4861 §7.1.2: receivers
/// drop neighbour discovery messages with any other) and receives nothing.
#[cfg(target_os = "linux")]
fn icmp6_socket(iface: &str, index: u32) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(iface.as_bytes()))?;
    socket.set_multicast_if_v6(index)?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_loop_v6(false)?;
    // Block every ICMPv6 type on input (a set bit blocks), so that the LAN's ICMPv6 does
    // not pile up in a queue nobody reads.
    set_icmp6_filter(&socket, &[u32::MAX; 8])?;
    Ok(socket)
}

/// Sets a raw ICMPv6 socket's `ICMP6_FILTER` (RFC 3542 §3.2): bit `t` of the 256 set blocks
/// type `t` on input.
#[cfg(target_os = "linux")]
pub(crate) fn set_icmp6_filter(socket: &socket2::Socket, filter: &[u32; 8]) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, icmp6_filter::Icmp6Filter, filter)?;
    Ok(())
}

/// `ICMP6_FILTER` as a nix socket option: neither nix nor socket2 has it, and nix's
/// `sockopt_impl!` defines one from the option's level, name and value type (the 32-byte
/// `struct icmp6_filter`, eight u32), the way nix defines its own.
#[cfg(target_os = "linux")]
mod icmp6_filter {
    use nix::{setsockopt_impl, sockopt_impl};

    sockopt_impl!(
        /// `ICMPV6_FILTER` at level `IPPROTO_ICMPV6`, set only.
        Icmp6Filter,
        SetOnly,
        libc::IPPROTO_ICMPV6,
        super::ICMPV6_FILTER,
        [u32; 8]
    );
}

/// Sends `payload` to `dest` with source address `source` on interface `index`, given per
/// packet as `IPV6_PKTINFO` ancillary data (RFC 3542 §6.1).
#[cfg(target_os = "linux")]
fn send_from(
    socket: &socket2::Socket,
    payload: &[u8],
    dest: std::net::SocketAddrV6,
    source: Ipv6Addr,
    index: u32,
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn6};
    use std::os::fd::AsRawFd;

    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: source.octets(),
        },
        ipi6_ifindex: index,
    };
    sendmsg(
        socket.as_raw_fd(),
        &[io::IoSlice::new(payload)],
        &[ControlMessage::Ipv6PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&SockaddrIn6::from(dest)),
    )?;
    Ok(())
}

/// A `sockaddr_ll` for interface `index`, EtherType `protocol`, link-layer address `mac`.
///
/// Built by hand: socket2 has no constructor for `AF_PACKET` addresses, nor nix for its
/// `LinkAddr` (only the unsafe `SockaddrLike::from_raw`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn link_addr(index: u32, protocol: u16, mac: [u8; 6]) -> socket2::SockAddr {
    let mut storage = socket2::SockAddrStorage::zeroed();
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sockaddr_ll` is one of this platform's socket address types, valid all zeroes
    // as the storage is, and fits in it (`view_as` asserts it); once its fields are set, the
    // storage holds an initialised `sockaddr_ll` of family AF_PACKET, and `len` is its size.
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
        ll.sll_protocol = protocol.to_be();
        ll.sll_ifindex = index as libc::c_int;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&mac);
        socket2::SockAddr::new(storage, len)
    }
}

/// One [`Announcer`] per interface, opened when first needed and kept: what both daemons
/// use to announce addresses on whatever interfaces they hold them.
#[derive(Debug, Default)]
pub struct Announcers {
    by_iface: std::collections::HashMap<String, Announcer>,
}

impl Announcers {
    /// No interface opened yet.
    pub fn new() -> Announcers {
        Announcers::default()
    }

    /// Announces `addr` on `iface`, opening the interface's announcer the first time.
    pub fn announce(&mut self, iface: &str, addr: IpAddr) -> io::Result<()> {
        self.announce_as(iface, addr, None)
    }

    /// [`Announcers::announce`] naming `mac` (another host's) as the address's owner.
    pub fn announce_as(
        &mut self,
        iface: &str,
        addr: IpAddr,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        if !self.by_iface.contains_key(iface) {
            let a = Announcer::new(iface)?;
            self.by_iface.insert(iface.to_string(), a);
        }
        match self.by_iface.get_mut(iface) {
            Some(a) => a.announce_as(addr, mac),
            None => Ok(()),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::*;
    use crate::testns::Netns;
    use socket2::{Domain, Socket, Type};
    use std::io::Read;
    use std::time::{Duration, Instant};

    use ipfailover::arp::ETHERTYPE as ETH_P_ARP;
    use ipfailover::nd::{ETHERTYPE as ETH_P_IPV6, NEIGHBOR_ADVERT as ND_NEIGHBOR_ADVERT};

    /// A namespace with a veth pair vA/vB, both up.
    fn veth_namespace() -> Netns {
        let ns = Netns::new();
        ns.ip("link add vA type veth peer name vB");
        ns.ip("link set vA up");
        ns.ip("link set vB up");
        ns
    }

    /// An `AF_PACKET`/`SOCK_RAW` socket that receives whole frames of one EtherType on `iface`.
    fn listen(iface: &str, protocol: u16) -> Socket {
        let index = crate::interfaces::iface_index(iface).expect("index");
        let proto = socket2::Protocol::from(i32::from(protocol.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto)).expect("packet socket");
        socket
            .bind(&link_addr(index, protocol, [0; 6]))
            .expect("bind packet socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        socket
    }

    /// The first frame, within 3 s, that `wanted` accepts.
    fn receive(socket: &Socket, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        for _ in 0..1000 {
            if Instant::now() > deadline {
                break;
            }
            match (&*socket).read(&mut buf) {
                Ok(n) if wanted(&buf[..n]) => return buf[..n].to_vec(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("receiving: {e}"),
            }
        }
        panic!("no matching frame within 3 s");
    }

    #[test]
    fn gratuitous_arp_reaches_the_other_end() {
        let ns = veth_namespace();
        ns.enter(|| {
            let mac = crate::interfaces::mac_address("vA").expect("mac");
            let listener = listen("vB", ETH_P_ARP);
            let mut announcer = Announcer::new("vA").expect("announcer");
            let vip: IpAddr = "198.51.100.10".parse().expect("addr");
            announcer.announce(vip).expect("announce");
            let frame = receive(&listener, |f| {
                f.len() >= 42 && f[28..32] == [198, 51, 100, 10]
            });
            assert_eq!(frame[0..6], BROADCAST_MAC, "Ethernet destination");
            assert_eq!(frame[6..12], mac, "Ethernet source");
            assert_eq!(frame[12..14], ETH_P_ARP.to_be_bytes());
            let arp = &frame[14..42];
            assert_eq!(arp[0..8], [0, 1, 8, 0, 6, 4, 0, 1], "an ARP request");
            assert_eq!(arp[8..14], mac, "sender MAC");
            assert_eq!(arp[14..18], [198, 51, 100, 10], "sender IP");
            assert_eq!(arp[24..28], [198, 51, 100, 10], "target IP");
        });
    }

    /// The ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 §8.1) of a whole message,
    /// checksum field included: zero when the checksum is right.
    fn icmp6_checksum(src: &[u8], dst: &[u8], message: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for chunk in bytes.chunks(2) {
                let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
                sum += u32::from(word);
            }
        };
        add(src);
        add(dst);
        add(&(message.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(message);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn unsolicited_neighbour_advertisement_reaches_the_other_end() {
        let ns = veth_namespace();
        ns.ip("addr add 2001:db8::10/64 dev vA nodad");
        ns.enter(|| {
            let mac = crate::interfaces::mac_address("vA").expect("mac");
            let listener = listen("vB", ETH_P_IPV6);
            let mut announcer = Announcer::new("vA").expect("announcer");
            let vip: Ipv6Addr = "2001:db8::10".parse().expect("addr");
            announcer.announce(IpAddr::V6(vip)).expect("announce");
            // Ethernet 14 + IPv6 40 + NA 32; next header ICMPv6, type 136.
            let frame = receive(&listener, |f| {
                f.len() >= 86 && f[14 + 6] == 58 && f[54] == ND_NEIGHBOR_ADVERT
            });
            assert_eq!(frame[0..6], [0x33, 0x33, 0, 0, 0, 1], "to all nodes");
            assert_eq!(frame[6..12], mac, "Ethernet source");
            let ip6 = &frame[14..54];
            assert_eq!(ip6[7], 255, "hop limit");
            assert_eq!(ip6[8..24], vip.octets(), "source address");
            assert_eq!(
                ip6[24..40],
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
                "destination address"
            );
            let payload_len = usize::from(u16::from_be_bytes([ip6[4], ip6[5]]));
            assert_eq!(payload_len, 32);
            let na = &frame[54..86];
            assert_eq!(na[1], 0, "code");
            assert_eq!(
                na[4] & 0xe0,
                0x20,
                "Override set, Router and Solicited clear"
            );
            assert_eq!(na[8..24], vip.octets(), "target");
            assert_eq!(na[24..26], [2, 1], "target link-layer address option");
            assert_eq!(na[26..32], mac, "the option holds our MAC");
            assert_eq!(icmp6_checksum(&ip6[8..24], &ip6[24..40], na), 0, "checksum");
        });
    }

    #[test]
    fn an_ipv6_address_must_be_held_before_it_is_announced() {
        let ns = veth_namespace();
        ns.enter(|| {
            let mut announcer = Announcer::new("vA").expect("announcer");
            let err = announcer
                .announce("2001:db8::10".parse().expect("addr"))
                .expect_err("the source address is not ours");
            assert!(
                err.to_string().contains("announcing 2001:db8::10 on vA"),
                "{err}"
            );
        });
    }

    #[test]
    fn an_announcer_needs_an_existing_interface() {
        let ns = veth_namespace();
        ns.enter(|| {
            let err = Announcer::new("eth9").expect_err("no eth9");
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        });
    }
}
