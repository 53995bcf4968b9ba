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

/// A datagram to send to one destination, with its buffer kept from one send to the next.
#[derive(Debug)]
pub struct Outgoing {
    /// Where it goes.
    pub to: SocketAddr,
    /// The datagram; refilled before each send.
    pub buf: Vec<u8>,
    /// What the last [`send_batch`] met for this datagram (`None`: sent). `WouldBlock` (a full
    /// send queue) counts as a loss, not an error.
    pub error: Option<io::Error>,
    /// `to` as the kernel takes it, made once: sendmmsg (Linux) points at it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    addr: socket2::SockAddr,
}

impl Outgoing {
    /// An empty datagram for `to`.
    pub fn new(to: SocketAddr) -> Outgoing {
        Outgoing {
            to,
            buf: Vec::new(),
            error: None,
            addr: to.into(),
        }
    }
}

/// Sends each datagram to its destination with as few system calls as the platform allows
/// (one `sendmmsg` on Linux) and no allocation, and records in each what it met: at a 10 ms
/// interval the per-call cost is most of heartbeatd's.
pub fn send_batch(socket: &mio::net::UdpSocket, batch: &mut [Outgoing]) {
    #[cfg(target_os = "linux")]
    for chunk in batch.chunks_mut(BATCH) {
        send_chunk_linux(socket, chunk);
    }
    #[cfg(not(target_os = "linux"))]
    for out in batch.iter_mut() {
        out.error = send_to(socket, &out.buf, out.to).err();
    }
}

/// Datagrams per `sendmmsg`: more destinations than this take more calls.
#[cfg(target_os = "linux")]
const BATCH: usize = 8;

/// One `sendmmsg` (and more after a partial send or an error) for up to [`BATCH`] datagrams.
///
/// libc's `sendmmsg`, not nix's: nix's allocates its headers (`MultiHeaders::preallocate`),
/// and tells how many datagrams went only through its `MultiResults` iterator, which reads
/// the never-written receive-address slots of those headers as initialised values.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn send_chunk_linux(socket: &mio::net::UdpSocket, chunk: &mut [Outgoing]) {
    use std::os::fd::AsRawFd;
    let n = chunk.len().min(BATCH);
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: `mmsghdr` is a plain C struct for which all zeroes (null pointers, zero
    // lengths) is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, out) in chunk.iter_mut().take(n).enumerate() {
        out.error = None;
        iovs[i] = libc::iovec {
            iov_base: out.buf.as_ptr() as *mut libc::c_void,
            iov_len: out.buf.len(),
        };
        msgs[i].msg_hdr.msg_name = out.addr.as_ptr() as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen = out.addr.len();
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut start = 0;
    while start < n {
        let rest = &mut msgs[start..n];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        // SAFETY: `rest` holds `len` initialised mmsghdr whose pointers point into `iovs` and
        // into the chunk's buffers and addresses, which outlive the call and do not move; the
        // kernel reads those and writes only each header's `msg_len`.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), len, 0) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first datagram failed: record it and go on with the next.
            if e.kind() != io::ErrorKind::WouldBlock {
                chunk[start].error = Some(e);
            }
            start += 1;
        } else {
            start += usize::try_from(sent).unwrap_or(0).max(1);
        }
    }
}

/// Sends one datagram; `WouldBlock` (a full send queue) counts as a loss, not an error.
pub fn send_to(socket: &mio::net::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.send_to(buf, to) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::Netns;
    use std::time::Duration;

    #[test]
    fn a_batch_longer_than_one_call_arrives_in_order_and_errors_stay_with_their_datagram() {
        let ns = Netns::new();
        ns.ip("link set lo up");
        let (got, errors, after_fix) = ns.enter(|| {
            let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("listener");
            listener
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let port = listener.local_addr().expect("port").port();
            let sender = bind_sender(false).expect("sender");
            let good = SocketAddr::from(([127, 0, 0, 1], port));
            // No route to the documentation subnet yet: the kernel refuses that datagram.
            let bad = SocketAddr::from(([198, 51, 100, 255], port));
            let mut batch: Vec<Outgoing> = (0..2 * BATCH + 1)
                .map(|i| {
                    let mut out = Outgoing::new(if i == 3 { bad } else { good });
                    out.buf = vec![i as u8; 3];
                    out
                })
                .collect();
            send_batch(&sender, &mut batch);
            let mut got = Vec::new();
            let mut b = [0u8; 16];
            for _ in 0..2 * BATCH {
                let n = listener.recv(&mut b).expect("a datagram");
                got.push(b[..n].to_vec());
            }
            let errors: Vec<bool> = batch.iter().map(|o| o.error.is_some()).collect();
            // A route appears: the next send of the same batch clears the old error.
            ns.ip("addr add 198.51.100.1/24 brd + dev lo");
            send_batch(&sender, &mut batch);
            let after_fix = batch.iter().all(|o| o.error.is_none());
            (got, errors, after_fix)
        });
        let want: Vec<Vec<u8>> = (0..2 * BATCH + 1)
            .filter(|i| *i != 3)
            .map(|i| vec![i as u8; 3])
            .collect();
        assert_eq!(got, want);
        let want_errors: Vec<bool> = (0..2 * BATCH + 1).map(|i| i == 3).collect();
        assert_eq!(errors, want_errors);
        assert!(after_fix, "the error outlived the send that met it");
    }
}
