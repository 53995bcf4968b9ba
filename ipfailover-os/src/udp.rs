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

/// Sends each datagram to its destination with as few system calls as the platform allows
/// (one `sendmmsg` on Linux): at a 10 ms interval the per-call cost is most of heartbeatd's.
/// Returns, for each datagram, the error it met, if any; `WouldBlock` counts as a loss.
pub fn send_batch(
    socket: &mio::net::UdpSocket,
    datagrams: &[(Vec<u8>, SocketAddr)],
) -> Vec<Option<io::Error>> {
    #[cfg(target_os = "linux")]
    {
        send_batch_linux(socket, datagrams)
    }
    #[cfg(not(target_os = "linux"))]
    {
        datagrams
            .iter()
            .map(|(buf, to)| send_to(socket, buf, *to).err())
            .collect()
    }
}

#[cfg(target_os = "linux")]
fn send_batch_linux(
    socket: &mio::net::UdpSocket,
    datagrams: &[(Vec<u8>, SocketAddr)],
) -> Vec<Option<io::Error>> {
    use std::os::fd::AsRawFd;
    let mut results: Vec<Option<io::Error>> = datagrams.iter().map(|_| None).collect();
    let addrs: Vec<socket2::SockAddr> = datagrams.iter().map(|(_, to)| (*to).into()).collect();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(buf, _)| libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        })
        .collect();
    // SAFETY: a zeroed mmsghdr is valid; every pointer set below points into `addrs` and
    // `iovs`, which outlive the sendmmsg call and are not moved meanwhile.
    let mut msgs: Vec<libc::mmsghdr> = (0..datagrams.len())
        .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
        .collect();
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
        m.msg_hdr.msg_namelen = addrs[i].len();
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut start = 0;
    while start < msgs.len() {
        let rest = &mut msgs[start..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        // SAFETY: `rest` is a valid array of `len` initialised mmsghdr.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), len, 0) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first datagram failed: record it and go on with the next.
            if e.kind() != io::ErrorKind::WouldBlock {
                results[start] = Some(e);
            }
            start += 1;
        } else {
            start += usize::try_from(sent).unwrap_or(0).max(1);
        }
    }
    results
}

/// Sends one datagram; `WouldBlock` (a full send queue) counts as a loss, not an error.
pub fn send_to(socket: &mio::net::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.send_to(buf, to) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
