//! Asking the LAN whether anyone else answers for an address (address conflict detection):
//! ARP probes (RFC 5227 §2.1.1: sender protocol address 0.0.0.0) for IPv4, and duplicate
//! address detection style neighbour solicitations (RFC 4862 §5.4.2: source ::, to the
//! solicited-node group) for IPv6; and listening for whoever claims one of our addresses (an
//! ARP reply or request with it as sender address, or a neighbour advertisement for it).
//!
//! The decisions are the core's ([`ipfailover::failover`]); this only sends and listens. On
//! Linux it uses one `AF_PACKET` socket per interface (probes out, ARP in, through a BPF
//! filter that passes only ARP naming one of our addresses, so the LAN's other ARP never
//! wakes the daemon) and, for IPv6 addresses, a raw ICMPv6 socket that passes only neighbour
//! advertisements. Elsewhere (macOS) there is no probing: the kernel's own duplicate address
//! detection is all there is, and nothing ever answers.

use std::net::IpAddr;

/// Another host claiming one of our addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The address it claims.
    pub addr: IpAddr,
    /// Its link-layer address (zero if an IPv6 advertisement carried none).
    pub mac: [u8; 6],
    /// The interface it was heard on.
    pub iface: String,
}

/// The addresses watched, by interface, and the sockets that watch them.
#[derive(Debug, Default)]
pub struct ConflictWatch {
    #[cfg(target_os = "linux")]
    ifaces: Vec<linux::Watched>,
    #[cfg(not(target_os = "linux"))]
    watched: Vec<(String, IpAddr)>,
}

impl ConflictWatch {
    /// Watches nothing yet.
    pub fn new() -> ConflictWatch {
        ConflictWatch::default()
    }

    /// Watches `pairs` (interface, address), registering its sockets with `registry` under
    /// `token` (and deregistering those it no longer needs). Returns a message for each
    /// interface it could not watch; the others are watched.
    pub fn watch(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        pairs: &[(String, IpAddr)],
    ) -> Vec<String> {
        #[cfg(target_os = "linux")]
        {
            linux::watch(&mut self.ifaces, registry, token, pairs)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (registry, token);
            self.watched = pairs.to_vec();
            Vec::new()
        }
    }

    /// Sends one probe for every watched address; a message for each that could not be sent.
    pub fn probe(&mut self, registry: &mio::Registry, token: mio::Token) -> Vec<String> {
        #[cfg(target_os = "linux")]
        {
            linux::probe(&mut self.ifaces, registry, token)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (registry, token);
            Vec::new()
        }
    }

    /// Everything heard since the last call that claims one of our addresses from another
    /// link-layer address than ours (at most `budget` packets read per socket).
    pub fn read(&mut self, budget: usize) -> Vec<Answer> {
        #[cfg(target_os = "linux")]
        {
            linux::read(&mut self.ifaces, budget)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = budget;
            Vec::new()
        }
    }
}

/// An ARP probe (RFC 5227 §2.1.1): a request for `target` from `mac` with sender protocol
/// address 0.0.0.0, so that no cache learns anything from it.
#[cfg(any(target_os = "linux", test))]
fn arp_probe(mac: [u8; 6], target: std::net::Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    // p[14..18], the sender protocol address, stays 0.0.0.0; p[18..24] stays zero.
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// The sender of an ARP packet (request or reply) as (MAC, IPv4 address), if it is one.
#[cfg(any(target_os = "linux", test))]
fn arp_sender(p: &[u8]) -> Option<([u8; 6], std::net::Ipv4Addr)> {
    let head = p.get(0..8)?;
    if head != [0, 1, 8, 0, 6, 4, 0, 1] && head != [0, 1, 8, 0, 6, 4, 0, 2] {
        return None;
    }
    let mac: [u8; 6] = p.get(8..14)?.try_into().ok()?;
    let ip: [u8; 4] = p.get(14..18)?.try_into().ok()?;
    Some((mac, std::net::Ipv4Addr::from(ip)))
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1) and its MAC (RFC 2464 §7).
#[cfg(any(target_os = "linux", test))]
fn solicited_node(target: std::net::Ipv6Addr) -> (std::net::Ipv6Addr, [u8; 6]) {
    let o = target.octets();
    let group = std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// A duplicate address detection neighbour solicitation for `target`, as a whole IPv6 packet
/// (RFC 4862 §5.4.2: source ::, destination the solicited-node group, hop limit 255, no
/// source link-layer address option), checksum included.
#[cfg(any(target_os = "linux", test))]
fn dad_solicitation(target: std::net::Ipv6Addr) -> [u8; 64] {
    let (group, _) = solicited_node(target);
    let mut p = [0u8; 64];
    p[0] = 0x60; // version 6
    p[4..6].copy_from_slice(&24u16.to_be_bytes()); // payload length
    p[6] = 58; // ICMPv6
    p[7] = 255; // hop limit
                // p[8..24], the source address, stays ::.
    p[24..40].copy_from_slice(&group.octets());
    let ns = &mut p[40..64];
    ns[0] = 135; // neighbour solicitation
    ns[8..24].copy_from_slice(&target.octets());
    let sum = icmp6_checksum(&[0; 16], &group.octets(), &p[40..64]);
    p[42..44].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The ICMPv6 checksum of `message` (its checksum field zero) over the pseudo-header.
#[cfg(any(target_os = "linux", test))]
fn icmp6_checksum(src: &[u8; 16], dst: &[u8; 16], message: &[u8]) -> u16 {
    let len = u32::try_from(message.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let mut sum: u32 = 0;
    for chunk in [&src[..], &dst[..], &len[..], &[0, 0, 0, 58][..], message] {
        for pair in chunk.chunks(2) {
            sum += u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The target and target link-layer address of a neighbour advertisement (an ICMPv6
/// message, as a raw ICMPv6 socket delivers it), if it is one.
#[cfg(any(target_os = "linux", test))]
fn advertised(m: &[u8]) -> Option<(std::net::Ipv6Addr, [u8; 6])> {
    if m.first() != Some(&136) || m.len() < 24 {
        return None;
    }
    let target: [u8; 16] = m.get(8..24)?.try_into().ok()?;
    // Options: type, length in units of 8 bytes, value. Type 2 is the target's MAC.
    let mut mac = [0u8; 6];
    let mut rest = m.get(24..).unwrap_or(&[]);
    while let [kind, len, ..] = rest {
        let size = usize::from(*len) * 8;
        if size == 0 || size > rest.len() {
            break;
        }
        if *kind == 2 && size >= 8 {
            if let Some(v) = rest.get(2..8) {
                mac.copy_from_slice(v);
            }
        }
        rest = rest.get(size..).unwrap_or(&[]);
    }
    Some((std::net::Ipv6Addr::from(target), mac))
}

/// A classic BPF program for an `AF_PACKET`/`SOCK_DGRAM` ARP socket: pass a packet whose
/// sender protocol address (offset 14 of the ARP header) is one of `addrs`, drop the rest.
#[cfg(any(target_os = "linux", test))]
fn arp_filter(addrs: &[std::net::Ipv4Addr]) -> Vec<(u16, u8, u8, u32)> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    // At most 255 addresses fit the jump offsets; nobody moves that many on one interface.
    let addrs = addrs.get(..addrs.len().min(200)).unwrap_or(addrs);
    let n = addrs.len();
    let mut prog = vec![(LD_W_ABS, 0, 0, 14)];
    for (i, a) in addrs.iter().enumerate() {
        // On a match jump over the remaining comparisons and the drop, to the pass.
        let jt = u8::try_from(n - i).unwrap_or(u8::MAX);
        prog.push((JEQ_K, jt, 0, u32::from(*a)));
    }
    prog.push((RET_K, 0, 0, 0));
    prog.push((RET_K, 0, 0, 0xffff));
    prog
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::announce::link_addr;
    use crate::interfaces;
    use socket2::{Domain, Protocol, SockFilter, Socket, Type};
    use std::io;
    use std::net::Ipv4Addr;
    use std::os::fd::AsRawFd;

    const ETH_P_ARP: u16 = 0x0806;
    const ETH_P_IPV6: u16 = 0x86dd;
    const BROADCAST: [u8; 6] = [0xff; 6];

    /// One interface: its addresses and the sockets that watch them.
    #[derive(Debug)]
    pub(super) struct Watched {
        iface: String,
        index: u32,
        addrs: Vec<IpAddr>,
        packet: Socket,
        icmp6: Option<Socket>,
    }

    impl Watched {
        fn open(iface: &str, addrs: Vec<IpAddr>) -> io::Result<Watched> {
            let index = interfaces::iface_index(iface)?;
            let proto = Protocol::from(i32::from(ETH_P_ARP.to_be()));
            let packet = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto))?;
            let v4: Vec<Ipv4Addr> = addrs
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })
                .collect();
            let filter: Vec<SockFilter> = arp_filter(&v4)
                .into_iter()
                .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
                .collect();
            packet.attach_filter(&filter)?;
            packet.bind(&link_addr(index, ETH_P_ARP, [0; 6]))?;
            packet.set_nonblocking(true)?;
            let icmp6 = if addrs.iter().any(IpAddr::is_ipv6) {
                Some(advert_socket(iface)?)
            } else {
                None
            };
            Ok(Watched {
                iface: iface.to_string(),
                index,
                addrs,
                packet,
                icmp6,
            })
        }

        fn sources(&self) -> impl Iterator<Item = i32> + '_ {
            std::iter::once(self.packet.as_raw_fd())
                .chain(self.icmp6.as_ref().map(|s| s.as_raw_fd()))
        }

        fn send_probes(&self) -> io::Result<()> {
            let mac = interfaces::mac_address(&self.iface)?;
            for addr in &self.addrs {
                match addr {
                    IpAddr::V4(a) => {
                        let dest = link_addr(self.index, ETH_P_ARP, BROADCAST);
                        self.packet.send_to(&arp_probe(mac, *a), &dest)?;
                    }
                    IpAddr::V6(a) => {
                        let (_, group_mac) = solicited_node(*a);
                        let dest = link_addr(self.index, ETH_P_IPV6, group_mac);
                        self.packet.send_to(&dad_solicitation(*a), &dest)?;
                    }
                }
            }
            Ok(())
        }
    }

    /// A raw ICMPv6 socket on `iface` that receives only neighbour advertisements.
    fn advert_socket(iface: &str) -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(iface.as_bytes()))?;
        // ICMP6_FILTER: a set bit blocks a type; only 136 passes.
        let mut filter = [u32::MAX; 8];
        filter[136 / 32] &= !(1u32 << (136 % 32));
        crate::announce::set_icmp6_filter(&socket, &filter)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    fn register(w: &Watched, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        for fd in w.sources() {
            registry.register(
                &mut mio::unix::SourceFd(&fd),
                token,
                mio::Interest::READABLE,
            )?;
        }
        Ok(())
    }

    fn deregister(w: &Watched, registry: &mio::Registry) {
        for fd in w.sources() {
            // Closing would forget it anyway; an error here changes nothing.
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
    }

    pub(super) fn watch(
        ifaces: &mut Vec<Watched>,
        registry: &mio::Registry,
        token: mio::Token,
        pairs: &[(String, IpAddr)],
    ) -> Vec<String> {
        for w in ifaces.drain(..) {
            deregister(&w, registry);
        }
        let mut by_iface: Vec<(String, Vec<IpAddr>)> = Vec::new();
        for (iface, addr) in pairs {
            match by_iface.iter_mut().find(|(i, _)| i == iface) {
                Some((_, addrs)) => addrs.push(*addr),
                None => by_iface.push((iface.clone(), vec![*addr])),
            }
        }
        let mut errors = Vec::new();
        for (iface, addrs) in by_iface {
            match Watched::open(&iface, addrs)
                .and_then(|w| register(&w, registry, token).map(|()| w))
            {
                Ok(w) => ifaces.push(w),
                Err(e) => errors.push(format!("watching for address conflicts on {iface}: {e}")),
            }
        }
        errors
    }

    pub(super) fn probe(
        ifaces: &mut [Watched],
        registry: &mio::Registry,
        token: mio::Token,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for w in ifaces.iter_mut() {
            if w.send_probes().is_ok() {
                continue;
            }
            // The interface may have been re-created (a new index) or renamed back: open it
            // again and try once more.
            match Watched::open(&w.iface, w.addrs.clone()) {
                Ok(fresh) => {
                    deregister(w, registry);
                    if let Err(e) = register(&fresh, registry, token) {
                        errors.push(format!(
                            "watching for address conflicts on {}: {e}",
                            w.iface
                        ));
                    }
                    *w = fresh;
                    if let Err(e) = w.send_probes() {
                        errors.push(format!("probing on {}: {e}", w.iface));
                    }
                }
                Err(e) => errors.push(format!("probing on {}: {e}", w.iface)),
            }
        }
        errors
    }

    pub(super) fn read(ifaces: &mut [Watched], budget: usize) -> Vec<Answer> {
        let mut found = Vec::new();
        let mut buf = [0u8; 1500];
        for w in ifaces.iter() {
            // Our own frames (the kernel's replies for what we hold, our announcements) come
            // back to a packet socket too: they carry our MAC, read now (it may change).
            let own = interfaces::mac_address(&w.iface).ok();
            for _ in 0..budget {
                let n = match (&w.packet).read_some(&mut buf) {
                    Some(n) => n,
                    None => break,
                };
                if let Some((mac, ip)) = arp_sender(buf.get(..n).unwrap_or(&[])) {
                    let addr = IpAddr::V4(ip);
                    if Some(mac) != own && mac != [0; 6] && w.addrs.contains(&addr) {
                        found.push(Answer {
                            addr,
                            mac,
                            iface: w.iface.clone(),
                        });
                    }
                }
            }
            let Some(icmp6) = &w.icmp6 else {
                continue;
            };
            for _ in 0..budget {
                let n = match icmp6.read_some(&mut buf) {
                    Some(n) => n,
                    None => break,
                };
                if let Some((target, mac)) = advertised(buf.get(..n).unwrap_or(&[])) {
                    let addr = IpAddr::V6(target);
                    if Some(mac) != own && w.addrs.contains(&addr) {
                        found.push(Answer {
                            addr,
                            mac,
                            iface: w.iface.clone(),
                        });
                    }
                }
            }
        }
        found
    }

    /// One non-blocking read: `None` when there is nothing more (or the socket failed).
    trait ReadSome {
        fn read_some(self, buf: &mut [u8]) -> Option<usize>;
    }

    impl ReadSome for &Socket {
        fn read_some(self, buf: &mut [u8]) -> Option<usize> {
            use std::io::Read;
            let mut s = self;
            loop {
                match s.read(buf) {
                    Ok(n) => return Some(n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn an_arp_probe_has_no_sender_address() {
        let p = arp_probe(MAC, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, request
                2, 0, 0x5e, 0x10, 0x20, 0x30, 0, 0, 0, 0, // sender: our MAC, 0.0.0.0
                0, 0, 0, 0, 0, 0, 198, 51, 100, 10, // target
            ]
        );
        // A probe names no sender address: it is never an answer.
        assert_eq!(arp_sender(&p), Some((MAC, Ipv4Addr::UNSPECIFIED)));
    }

    #[test]
    fn replies_and_requests_name_their_sender() {
        let mut reply = arp_probe(MAC, Ipv4Addr::UNSPECIFIED);
        reply[7] = 2;
        reply[14..18].copy_from_slice(&[198, 51, 100, 10]);
        assert_eq!(
            arp_sender(&reply),
            Some((MAC, Ipv4Addr::new(198, 51, 100, 10)))
        );
        reply[7] = 3; // RARP: not ours
        assert_eq!(arp_sender(&reply), None);
        assert_eq!(arp_sender(&reply[..10]), None);
    }

    #[test]
    fn a_dad_solicitation_is_well_formed() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let (group, mac) = solicited_node(target);
        assert_eq!(group, "ff02::1:ff00:10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac, [0x33, 0x33, 0xff, 0, 0, 0x10]);
        let p = dad_solicitation(target);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(&p[8..24], &[0; 16], "source ::");
        assert_eq!(p[7], 255, "hop limit");
        assert_eq!(p[40], 135);
        assert_eq!(&p[48..64], &target.octets());
        // The checksum verifies: summing with it gives zero.
        let mut zeroed = p;
        zeroed[42] = 0;
        zeroed[43] = 0;
        assert_eq!(
            icmp6_checksum(&[0; 16], &group.octets(), &zeroed[40..64]),
            u16::from_be_bytes([p[42], p[43]])
        );
    }

    #[test]
    fn an_advertisement_names_its_target_and_mac() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let mut na = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        na.extend_from_slice(&target.octets());
        na.extend_from_slice(&[2, 1]);
        na.extend_from_slice(&MAC);
        assert_eq!(advertised(&na), Some((target, MAC)));
        // Without the option the MAC is unknown, but the claim stands.
        assert_eq!(advertised(&na[..24]), Some((target, [0; 6])));
        // A zero-length option ends the parse rather than looping.
        let mut bad = na[..24].to_vec();
        bad.extend_from_slice(&[2, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(advertised(&bad), Some((target, [0; 6])));
        assert_eq!(advertised(&[135; 24]), None);
    }

    #[test]
    fn the_arp_filter_jumps_to_the_pass_for_each_address() {
        let a = Ipv4Addr::new(198, 51, 100, 10);
        let b = Ipv4Addr::new(198, 51, 100, 100);
        let prog = arp_filter(&[a, b]);
        assert_eq!(prog.len(), 5);
        // Run it by hand on the sender address.
        let run = |spa: u32| -> u32 {
            let mut pc = 1;
            loop {
                let (code, jt, jf, k) = prog[pc];
                match code {
                    0x15 => pc += 1 + usize::from(if spa == k { jt } else { jf }),
                    0x06 => return k,
                    _ => unreachable!(),
                }
            }
        };
        assert_eq!(run(u32::from(a)), 0xffff);
        assert_eq!(run(u32::from(b)), 0xffff);
        assert_eq!(run(u32::from(Ipv4Addr::new(198, 51, 100, 30))), 0);
        assert_eq!(
            arp_filter(&[]).len(),
            3,
            "nothing watched: everything dropped"
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::*;
    use crate::testns::Netns;
    use std::time::{Duration, Instant};

    /// Two hosts on a veth pair: we are vA in the first namespace, the other host is vB in
    /// the second (its kernel answers for what vB holds).
    fn lan() -> (Netns, Netns) {
        let (ours, other) = (Netns::new(), Netns::new());
        ours.ip(&format!(
            "link add vA type veth peer name vB netns {}",
            other.name()
        ));
        ours.ip("link set vA up");
        other.ip("link set vB up");
        ours.ip("addr add 198.51.100.20/24 dev vA");
        (ours, other)
    }

    /// Probes `addr` on vA every 50 ms for up to `wait`, collecting the answers.
    fn ask(addr: &str, wait: Duration) -> Vec<Answer> {
        let poll = mio::Poll::new().expect("poll");
        let mut w = ConflictWatch::new();
        let addr: IpAddr = addr.parse().expect("addr");
        let errors = w.watch(poll.registry(), mio::Token(9), &[("vA".to_string(), addr)]);
        assert!(errors.is_empty(), "{errors:?}");
        let end = Instant::now() + wait;
        let mut found = Vec::new();
        while Instant::now() < end && found.is_empty() {
            let errors = w.probe(poll.registry(), mio::Token(9));
            assert!(errors.is_empty(), "{errors:?}");
            std::thread::sleep(Duration::from_millis(50));
            found.extend(w.read(64));
        }
        found
    }

    #[test]
    fn another_host_holding_the_address_answers_the_arp_probe() {
        let (ns, other) = lan();
        other.ip("addr add 198.51.100.10/24 dev vB");
        let mac_b = other.enter(|| crate::interfaces::mac_address("vB").expect("mac"));
        let found = ns.enter(|| ask("198.51.100.10", Duration::from_secs(3)));
        assert_eq!(
            found.first(),
            Some(&Answer {
                addr: "198.51.100.10".parse().unwrap(),
                mac: mac_b,
                iface: "vA".into()
            }),
            "{found:?}"
        );
    }

    #[test]
    fn a_free_address_gets_no_answer_and_our_own_frames_do_not_count() {
        let (ns, _other) = lan();
        assert!(ns
            .enter(|| ask("198.51.100.10", Duration::from_millis(500)))
            .is_empty());
        // We hold it ourselves and announce it: our frames carry our MAC, and do not count.
        ns.ip("addr add 198.51.100.10/24 dev vA");
        let found = ns.enter(|| {
            let poll = mio::Poll::new().expect("poll");
            let mut w = ConflictWatch::new();
            let addr: IpAddr = "198.51.100.10".parse().unwrap();
            w.watch(poll.registry(), mio::Token(9), &[("vA".to_string(), addr)]);
            let mut a = crate::announce::Announcer::new("vA").expect("announcer");
            a.announce(addr).expect("announce");
            w.probe(poll.registry(), mio::Token(9));
            std::thread::sleep(Duration::from_millis(300));
            w.read(64)
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn another_host_holding_an_ipv6_address_answers_the_dad_solicitation() {
        let (ns, other) = lan();
        other.ip("addr add 2001:db8::10/64 dev vB nodad");
        let mac_b = other.enter(|| crate::interfaces::mac_address("vB").expect("mac"));
        // Let vA's link-local address settle: the kernel drops neighbour discovery on an
        // interface that is not ready.
        std::thread::sleep(Duration::from_millis(200));
        let found = ns.enter(|| ask("2001:db8::10", Duration::from_secs(5)));
        assert_eq!(found.first().map(|a| a.mac), Some(mac_b), "{found:?}");
    }

    #[test]
    fn an_interface_made_again_is_watched_again() {
        let (ns, other) = lan();
        let poll = mio::Poll::new().expect("poll");
        let mut w = ConflictWatch::new();
        let addr: IpAddr = "198.51.100.10".parse().unwrap();
        ns.enter(|| w.watch(poll.registry(), mio::Token(9), &[("vA".to_string(), addr)]));
        // vA and vB deleted and made again, with new indexes: the next probe reopens.
        ns.ip("link del vA");
        ns.ip(&format!(
            "link add vA type veth peer name vB netns {}",
            other.name()
        ));
        ns.ip("link set vA up");
        other.ip("link set vB up");
        other.ip("addr add 198.51.100.10/24 dev vB");
        let found = ns.enter(|| {
            let end = Instant::now() + Duration::from_secs(3);
            let mut found = Vec::new();
            while Instant::now() < end && found.is_empty() {
                let errors = w.probe(poll.registry(), mio::Token(9));
                assert!(errors.is_empty(), "{errors:?}");
                std::thread::sleep(Duration::from_millis(50));
                found.extend(w.read(64));
            }
            found
        });
        assert!(
            !found.is_empty(),
            "no answer after the interface was made again"
        );
    }
}
