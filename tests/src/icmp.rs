//! The lab's own ping: one ICMP (or ICMPv6) echo from inside a namespace, so that the demo
//! and the tests need no `ping` binary (iputils-ping is not on a fresh machine).
//!
//! A raw socket is made by a short-lived thread that has entered the namespace (a socket
//! stays in the namespace it was made in), the echo request goes out, and the reply is
//! matched by source, identifier and sequence. Each ping has a socket of its own: raw sockets
//! each get a copy of every ICMP packet, so concurrent pings cannot steal each other's replies.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

static SEQ: AtomicU16 = AtomicU16::new(1);

/// Sends one echo request to `dst` from inside the network namespace `ns` (a name under
/// `/run/netns`) and waits at most `wait` for its reply. Errors say what could not be done
/// (no namespace, no raw socket); a missing reply is `Ok(false)`.
pub fn ping_in(ns: &str, dst: IpAddr, wait: Duration) -> io::Result<bool> {
    let socket = raw_socket_in(ns, dst.is_ipv6())?;
    // The std type only carries the descriptor: recvfrom and sendto work on a raw socket as
    // on a UDP one, and the port of the address is ignored.
    let socket = UdpSocket::from(socket);
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0x1694);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let request = echo_request(dst.is_ipv6(), id, seq);
    socket.send_to(&request, SocketAddr::new(dst, 0))?;
    let end = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if from.ip() == dst && is_reply(buf.get(..n).unwrap_or(&[]), dst.is_ipv6(), id, seq) {
            return Ok(true);
        }
    }
}

/// A raw ICMP socket made inside the namespace `ns`.
fn raw_socket_in(ns: &str, v6: bool) -> io::Result<Socket> {
    let path = format!("/run/netns/{ns}");
    let netns =
        File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // It moves only this short-lived thread.
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                if v6 {
                    Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                } else {
                    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
                }
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// An echo request with a payload; for IPv6 the kernel fills in the checksum.
fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"ipfailover lab ping");
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// Whether `packet` (an IPv4 datagram with its header; or an ICMPv6 message, which raw
/// ICMPv6 sockets deliver without one) is the reply to our request.
fn is_reply(packet: &[u8], v6: bool, id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let header = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        packet.get(header..).unwrap_or(&[])
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    icmp.len() >= 8
        && icmp[0] == want
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_request_verifies() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn only_our_reply_matches() {
        let mut reply = echo_request(true, 9, 3);
        reply[0] = ECHO_REPLY_V6;
        assert!(is_reply(&reply, true, 9, 3));
        assert!(!is_reply(&reply, true, 9, 4));
        assert!(!is_reply(&reply, true, 8, 3));
        let mut v4 = vec![0x45; 20];
        let mut icmp = echo_request(false, 9, 3);
        icmp[0] = ECHO_REPLY_V4;
        v4.extend_from_slice(&icmp);
        assert!(is_reply(&v4, false, 9, 3));
        assert!(!is_reply(&v4[..22], false, 9, 3));
    }
}
