//! The bench's responder: answers every UDP datagram on a port with its payload followed by
//! a one-byte tag naming the host (`P` primary, `S` secondary), so the probe knows who answered.
//!
//! Usage: ipfo-echo PORT TAG

#![forbid(unsafe_code)]

use std::net::UdpSocket;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(tag)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ipfo-echo PORT TAG");
        std::process::exit(64);
    };
    let tag = tag.as_bytes().first().copied().unwrap_or(b'?');
    let socket = UdpSocket::bind(format!("0.0.0.0:{port}")).unwrap_or_else(|e| {
        eprintln!("ipfo-echo: bind {port}: {e}");
        std::process::exit(1)
    });
    let mut buf = [0u8; 64];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let n = n.min(buf.len() - 1);
        buf[n] = tag;
        let _ = socket.send_to(&buf[..=n], from);
    }
}
