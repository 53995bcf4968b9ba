//! The Linux address back end: rtnetlink requests on a blocking `NETLINK_ROUTE` socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::addrs::{AddressBackend, ResolvedPair};

/// How long to wait for the kernel's answer before giving up; it answers at once in practice.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a dump that the kernel marks as interrupted (the list changed during the dump)
/// is restarted before its result is used anyway.
const DUMP_RETRIES: usize = 3;

/// Large enough for any single datagram of an address dump (the kernel fills at most 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;

/// Adds and removes addresses through rtnetlink (`RTM_NEWADDR`, `RTM_DELADDR`, `RTM_GETADDR`).
///
/// The socket belongs to the network namespace of the thread that called [`Netlink::new`].
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Only the kernel (port 0) may answer us.
        socket.connect(&SocketAddr::new(0, 0))?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Sends one request and returns its sequence number.
    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let sent = self.socket.send(&bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "rtnetlink: sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(self.seq)
    }

    /// Reads the answer to request `seq`: the messages of a dump until `NLMSG_DONE`, or the
    /// acknowledgement of a request sent with `NLM_F_ACK`. A negative acknowledgement becomes
    /// an `io::Error` carrying the kernel's errno. The flag tells whether the kernel marked
    /// the dump as interrupted. Answers to older requests, abandoned after an error, are
    /// skipped.
    fn receive(&mut self, seq: u32) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut messages = Vec::new();
        let mut interrupted = false;
        loop {
            let len = {
                let mut window = &mut self.buf[..];
                match self.socket.recv(&mut window, libc::MSG_TRUNC) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "rtnetlink: no answer from the kernel within {} s",
                                REPLY_TIMEOUT.as_secs()
                            ),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            };
            if len > self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("rtnetlink: a {len}-byte answer did not fit the buffer"),
                ));
            }
            let mut offset = 0;
            while offset < len {
                let packet: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[offset..len]).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("rtnetlink: cannot parse the kernel's answer: {e}"),
                        )
                    })?;
                let size = packet.header.length as usize;
                if size == 0 {
                    break;
                }
                offset += (size + 3) & !3;
                if packet.header.sequence_number != seq {
                    continue;
                }
                if packet.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match packet.payload {
                    NetlinkPayload::Done(_) => return Ok((messages, interrupted)),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok((messages, interrupted)),
                        Some(_) => return Err(e.to_io()),
                    },
                    NetlinkPayload::InnerMessage(m) => messages.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request with `NLM_F_ACK` and waits for the acknowledgement.
    fn request_ack(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(message, flags | NLM_F_REQUEST | NLM_F_ACK)?;
        self.receive(seq).map(drop)
    }

    /// Every address of one family, restarting the dump if the kernel says it was interrupted.
    fn dump_addresses(&mut self, family: AddressFamily) -> io::Result<Vec<AddressMessage>> {
        let mut attempt = 0;
        loop {
            let mut query = AddressMessage::default();
            query.header.family = family;
            let seq = self.send(
                RouteNetlinkMessage::GetAddress(query),
                NLM_F_REQUEST | NLM_F_DUMP,
            )?;
            let (messages, interrupted) = self.receive(seq)?;
            attempt += 1;
            if !interrupted || attempt > DUMP_RETRIES {
                return Ok(messages
                    .into_iter()
                    .filter_map(|m| match m {
                        RouteNetlinkMessage::NewAddress(a) => Some(a),
                        _ => None,
                    })
                    .collect());
            }
        }
    }

    /// The index the interface named `name` has now, in the socket's network namespace.
    fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut query = LinkMessage::default();
        query
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let seq = self.send(
            RouteNetlinkMessage::GetLink(query),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        let (messages, _) = self
            .receive(seq)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
        messages
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {name}: not found"),
                )
            })
    }

    /// The pair with its interface's index as it is now, looked up by name when acting: an
    /// interface deleted and made again has a new index, and one that is gone is an error
    /// that names it.
    fn current(&mut self, pair: &ResolvedPair) -> io::Result<ResolvedPair> {
        let index = self.link_index(&pair.iface)?;
        Ok(ResolvedPair {
            index,
            ..pair.clone()
        })
    }

    /// The entries for `pair`'s address on `pair`'s interface, whatever their prefix.
    fn find(&mut self, pair: &ResolvedPair) -> io::Result<Vec<AddressMessage>> {
        let family = family_of(pair.addr);
        let all = self.dump_addresses(family).map_err(|e| {
            io::Error::new(e.kind(), format!("listing the addresses for {pair}: {e}"))
        })?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.index == pair.index && local_address(m) == Some(pair.addr))
            .collect())
    }
}

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The interface's own address in an address message: `IFA_LOCAL` where present (IPv4, and
/// point-to-point links, where `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS`.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

/// The `RTM_NEWADDR` message for a pair: `IFA_LOCAL` and `IFA_ADDRESS`, for IPv4 the subnet's
/// broadcast address (when the subnet has one), for IPv6 `IFA_F_NODAD` so that the address
/// is usable at once instead of staying tentative during duplicate address detection: the
/// primary that owned it is presumed dead, and the takeover must not wait.
fn new_address_message(pair: &ResolvedPair) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(pair.addr);
    message.header.prefix_len = pair.prefix;
    message.header.scope = AddressScope::Universe;
    message.header.index = pair.index;
    message.attributes.push(AddressAttribute::Local(pair.addr));
    message
        .attributes
        .push(AddressAttribute::Address(pair.addr));
    match pair.addr {
        IpAddr::V4(v4) => {
            if let Some(broadcast) = broadcast_v4(v4, pair.prefix) {
                message
                    .attributes
                    .push(AddressAttribute::Broadcast(broadcast));
            }
        }
        IpAddr::V6(_) => {
            message.header.flags = AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    message
}

/// The broadcast address of `addr/prefix`; none for /31 (RFC 3021) and /32.
fn broadcast_v4(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None;
    }
    let host_bits = u32::MAX >> prefix;
    Some(Ipv4Addr::from(u32::from(addr) | host_bits))
}

/// Whether an errno from `RTM_DELADDR` means the address was not there (any more).
fn is_not_there(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT) | Some(libc::ESRCH)
    )
}

impl AddressBackend for Netlink {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn add(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        let pair = &self.current(pair)?;
        // The kernel's EEXIST only covers the same address with the same prefix: an IPv4
        // address held with another prefix would be added a second time. So look first.
        if !self.find(pair)?.is_empty() {
            return Ok(false);
        }
        let message = RouteNetlinkMessage::NewAddress(new_address_message(pair));
        match self.request_ack(message, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(io::Error::new(e.kind(), format!("adding {pair}: {e}"))),
        }
    }

    fn remove(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        let pair = &self.current(pair)?;
        let mut removed = false;
        // Remove each entry with the prefix it really has, which may differ from the pair's.
        for found in self.find(pair)? {
            let mut message = AddressMessage::default();
            message.header.family = found.header.family;
            message.header.prefix_len = found.header.prefix_len;
            message.header.index = found.header.index;
            message.attributes = found
                .attributes
                .into_iter()
                .filter(|a| matches!(a, AddressAttribute::Local(_) | AddressAttribute::Address(_)))
                .collect();
            match self.request_ack(RouteNetlinkMessage::DelAddress(message), 0) {
                Ok(()) => removed = true,
                Err(e) if is_not_there(&e) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "removing {}:{}/{}: {e}",
                            pair.iface, pair.addr, found.header.prefix_len
                        ),
                    ))
                }
            }
        }
        Ok(removed)
    }

    fn holds(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        let pair = &self.current(pair)?;
        Ok(!self.find(pair)?.is_empty())
    }
}

/// The kernel's address and link notifications (`RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`,
/// `RTMGRP_LINK`): a non-blocking socket that becomes readable whenever an address is added
/// or removed, or a link goes up or down, in the calling thread's network namespace. Its
/// messages are not parsed: that something changed is reason enough to look again.
#[derive(Debug)]
pub struct AddressEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl AddressEvents {
    /// Subscribes to the address and link groups.
    pub fn new() -> io::Result<AddressEvents> {
        const RTMGRP_LINK: u32 = 0x1;
        const RTMGRP_IPV4_IFADDR: u32 = 0x10;
        const RTMGRP_IPV6_IFADDR: u32 = 0x100;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        ))?;
        socket.set_non_blocking(true)?;
        Ok(AddressEvents {
            socket,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    /// Reads every pending notification; whether there was any (an overrun, `ENOBUFS`,
    /// counts: changes were missed).
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        for _ in 0..1024 {
            let mut window = &mut self.buf[..];
            match self.socket.recv(&mut window, 0) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    any = true;
                    break;
                }
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrs::resolve;
    use crate::testns::Netns;
    use ipfailover::AddrPair;

    fn pair(s: &str) -> AddrPair {
        s.parse().expect("test pair")
    }

    #[test]
    fn broadcast_addresses() {
        let a = Ipv4Addr::new(198, 51, 100, 10);
        assert_eq!(broadcast_v4(a, 24), Some(Ipv4Addr::new(198, 51, 100, 255)));
        assert_eq!(broadcast_v4(a, 30), Some(Ipv4Addr::new(198, 51, 100, 11)));
        assert_eq!(broadcast_v4(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast_v4(a, 31), None);
        assert_eq!(broadcast_v4(a, 32), None);
    }

    #[test]
    fn new_address_messages_carry_local_address_and_broadcast_or_nodad() {
        let v4 = ResolvedPair {
            iface: "eth0".into(),
            index: 7,
            addr: "198.51.100.10".parse().expect("addr"),
            prefix: 24,
        };
        let m = new_address_message(&v4);
        assert_eq!(m.header.index, 7);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!(
            m.attributes,
            vec![
                AddressAttribute::Local(v4.addr),
                AddressAttribute::Address(v4.addr),
                AddressAttribute::Broadcast(Ipv4Addr::new(198, 51, 100, 255)),
            ]
        );
        let v6 = ResolvedPair {
            addr: "2001:db8::10".parse().expect("addr"),
            prefix: 64,
            ..v4
        };
        let m = new_address_message(&v6);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
    }

    /// A namespace with a veth pair vA/vB, both up; vA holds 198.51.100.20/24 and
    /// 2001:db8::20/64.
    fn veth_namespace() -> Netns {
        let ns = Netns::new();
        ns.ip("link add vA type veth peer name vB");
        ns.ip("link set vA up");
        ns.ip("link set vB up");
        ns.ip("addr add 198.51.100.20/24 dev vA");
        ns.ip("addr add 2001:db8::20/64 dev vA nodad");
        ns
    }

    #[test]
    fn an_interface_made_again_is_found_by_name_and_a_missing_one_is_named() {
        let ns = veth_namespace();
        let resolved = ns.enter(|| resolve(&pair("vA:198.51.100.10")).expect("resolve"));
        let mut nl = ns.enter(|| Netlink::new().expect("netlink socket"));
        // Deleted and made again: a new index, the same name.
        ns.ip("link del vA");
        let err = nl.add(&resolved).expect_err("vA is gone");
        assert!(err.to_string().contains("interface vA"), "{err}");
        ns.ip("link add vA type veth peer name vB");
        ns.ip("link set vA up");
        ns.ip("addr add 198.51.100.20/24 dev vA");
        let new_index = ns.enter(|| crate::interfaces::iface_index("vA").expect("index"));
        assert_ne!(new_index, resolved.index);
        assert!(nl.add(&resolved).expect("add on the new vA"));
        assert!(listed(&ns, "198.51.100.10/24"), "{}", ns.ip("-o addr"));
        assert!(nl.remove(&resolved).expect("remove"));
    }

    /// Whether `ip -o addr show dev vA` lists `addr/prefix`.
    fn listed(ns: &Netns, needle: &str) -> bool {
        ns.ip("-o addr show dev vA")
            .split_whitespace()
            .any(|token| token == needle)
    }

    #[test]
    fn adds_and_removes_ipv4_idempotently() {
        let ns = veth_namespace();
        let resolved = ns.enter(|| resolve(&pair("vA:198.51.100.10")).expect("resolve"));
        assert_eq!(resolved.prefix, 24);
        let mut nl = ns.enter(|| Netlink::new().expect("netlink socket"));
        // The socket stays in the namespace it was opened in, whichever thread uses it.
        assert!(nl.add(&resolved).expect("add"));
        assert!(listed(&ns, "198.51.100.10/24"), "{}", ns.ip("-o addr"));
        assert!(ns.ip("-o addr show dev vA").contains("brd 198.51.100.255"));
        assert!(!nl.add(&resolved).expect("add again"));
        assert!(nl.holds(&resolved).expect("holds"));
        assert!(nl.remove(&resolved).expect("remove"));
        assert!(!listed(&ns, "198.51.100.10/24"), "{}", ns.ip("-o addr"));
        assert!(!nl.holds(&resolved).expect("holds"));
        assert!(!nl.remove(&resolved).expect("remove again"));
        // The interface's own address is untouched.
        assert!(listed(&ns, "198.51.100.20/24"));
    }

    #[test]
    fn adds_and_removes_ipv6_without_dad() {
        let ns = veth_namespace();
        let resolved = ns.enter(|| resolve(&pair("vA:2001:db8::10")).expect("resolve"));
        assert_eq!(resolved.prefix, 64);
        ns.enter(|| {
            let mut nl = Netlink::new().expect("netlink socket");
            assert!(nl.add(&resolved).expect("add"));
            assert!(!nl.add(&resolved).expect("add again"));
            assert!(nl.holds(&resolved).expect("holds"));
        });
        let line = ns
            .ip("-o addr show dev vA")
            .lines()
            .find(|l| l.contains("2001:db8::10/64"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("2001:db8::10 not added: {}", ns.ip("-o addr")));
        assert!(!line.contains("tentative"), "{line}");
        assert!(line.contains("nodad"), "{line}");
        ns.enter(|| {
            let mut nl = Netlink::new().expect("netlink socket");
            assert!(nl.remove(&resolved).expect("remove"));
            assert!(!nl.holds(&resolved).expect("holds"));
            assert!(!nl.remove(&resolved).expect("remove again"));
        });
        assert!(!listed(&ns, "2001:db8::10/64"), "{}", ns.ip("-o addr"));
        assert!(listed(&ns, "2001:db8::20/64"));
    }

    #[test]
    fn an_address_held_with_another_prefix_is_held_and_removed() {
        let ns = veth_namespace();
        ns.ip("addr add 198.51.100.10/32 dev vA");
        let resolved = ns.enter(|| resolve(&pair("vA:198.51.100.10")).expect("resolve"));
        assert_eq!(resolved.prefix, 24, "the address's own /32 does not count");
        let mut nl = ns.enter(|| Netlink::new().expect("netlink socket"));
        assert!(nl.holds(&resolved).expect("holds"));
        assert!(!nl.add(&resolved).expect("add"), "already there, with /32");
        assert!(!listed(&ns, "198.51.100.10/24"), "{}", ns.ip("-o addr"));
        assert!(nl.remove(&resolved).expect("remove"));
        assert!(!listed(&ns, "198.51.100.10/32"), "{}", ns.ip("-o addr"));
    }

    #[test]
    fn resolve_checks_the_interface_and_defaults_to_a_host_prefix() {
        let ns = veth_namespace();
        ns.enter(|| {
            assert_eq!(
                resolve(&pair("eth9:198.51.100.1")).expect_err("no eth9 in the namespace"),
                "interface `eth9` of FAILOVER_PEER_IP_PAIRS entry `eth9:198.51.100.1` does not exist"
            );
            let outside = resolve(&pair("vA:203.0.113.77")).expect("resolve");
            assert_eq!(outside.prefix, 32);
            let outside6 = resolve(&pair("vA:2001:db8:1::77")).expect("resolve");
            assert_eq!(outside6.prefix, 128);
            let own = resolve(&pair("vA:198.51.100.10/28")).expect("resolve");
            assert_eq!(own.prefix, 28);
            // vB has no addresses of its own.
            let bare = resolve(&pair("vB:198.51.100.10")).expect("resolve");
            assert_eq!(bare.prefix, 32);
            assert_eq!(own.index, crate::interfaces::iface_index("vA").expect("index"));
        });
    }

    #[test]
    fn a_host_prefix_address_has_no_broadcast_and_is_removed() {
        let ns = veth_namespace();
        ns.enter(|| {
            let resolved = resolve(&pair("vB:203.0.113.10")).expect("resolve");
            let mut nl = Netlink::new().expect("netlink socket");
            assert!(nl.add(&resolved).expect("add"));
            assert!(nl.holds(&resolved).expect("holds"));
            assert!(nl.remove(&resolved).expect("remove"));
            assert!(!nl.holds(&resolved).expect("holds"));
        });
    }
}
