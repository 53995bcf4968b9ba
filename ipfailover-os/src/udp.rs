//! The UDP sockets of the two daemons.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive buffer asked for: a flood of junk should overflow the kernel's queue, not ours.
const RECV_BUFFER: usize = 4 << 20;

/// failoverd's listening socket on `port` for one address family: broadcast-capable, shareable
/// with another failoverd of this host (`SO_REUSEADDR`: broadcasts reach every listener).
pub fn bind_listener(v6: bool, port: u16) -> io::Result<mio::net::UdpSocket> {
    let (domain, addr) = if v6 {
        (
            Domain::IPV6,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        )
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // A smaller buffer than asked is fine: the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// heartbeatd's sending socket: an ephemeral port, so it never competes with a failoverd on
/// the same host for port 1694, and `released` replies come back to it.
pub fn bind_sender(v6: bool) -> io::Result<mio::net::UdpSocket> {
    let (domain, addr) = if v6 {
        (
            Domain::IPV6,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        )
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        socket.set_only_v6(true)?;
        // Heartbeats stay on the link, whatever the destination.
        socket.set_multicast_hops_v6(1)?;
    } else {
        socket.set_broadcast(true)?;
        socket.set_multicast_ttl_v4(1)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Sends one datagram; `WouldBlock` (a full send queue) counts as a loss, not an error.
pub fn send_to(socket: &mio::net::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.send_to(buf, to) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
