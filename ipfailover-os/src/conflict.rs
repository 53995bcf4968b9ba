//! Asking the LAN whether anyone else answers for an address (address conflict detection):
//! ARP probes (RFC 5227 §2.1.1: sender protocol address 0.0.0.0) for IPv4, and duplicate
//! address detection style neighbour solicitations (RFC 4862 §5.4.2: source ::, to the
//! solicited-node group) for IPv6; and listening for whoever claims one of our addresses (an
//! ARP reply or request with it as sender address, or a neighbour advertisement for it).
//!
//! The decisions are the core's ([`ipfailover::failover`]), and so are the packets
//! ([`ipfailover::arp`], [`ipfailover::nd`]); this only sends and listens. On
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

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::announce::link_addr;
    use crate::interfaces;
    use ipfailover::arp::{self, Arp, ETHERTYPE as ETH_P_ARP};
    use ipfailover::nd::{self, Advert, ETHERTYPE as ETH_P_IPV6};
    use socket2::{Domain, Protocol, SockFilter, Socket, Type};
    use std::io;
    use std::net::Ipv4Addr;
    use std::os::fd::AsRawFd;

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
            let filter: Vec<SockFilter> = arp::sender_filter(&v4)
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
                        self.packet.send_to(&Arp::probe(mac, *a).encode(), &dest)?;
                    }
                    IpAddr::V6(a) => {
                        let (_, group_mac) = nd::solicited_node(*a);
                        let dest = link_addr(self.index, ETH_P_IPV6, group_mac);
                        self.packet.send_to(&nd::dad_solicitation(*a), &dest)?;
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
        let advert = usize::from(nd::NEIGHBOR_ADVERT);
        filter[advert / 32] &= !(1u32 << (advert % 32));
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
                if let Some((mac, ip)) = arp::sender(buf.get(..n).unwrap_or(&[])) {
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
                if let Some(advert) = Advert::decode(buf.get(..n).unwrap_or(&[])) {
                    let addr = IpAddr::V6(advert.target);
                    // Without the option the MAC is unknown (zero), but the claim stands.
                    let mac = advert.target_mac.unwrap_or([0; 6]);
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
