//! A hostile host for the lab: captures real heartbeats off the LAN, then sends replays,
//! forgeries, truncations and junk at a target, for a while.
//!
//! Usage: ipfo-inject TARGET_IP:PORT SECONDS [--listen-port PORT]
//!
//! Prints one line per kind with how many datagrams it sent. Runs only in the lab's
//! attacker namespace (the tests start it there).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipfailover::wire::{self, Key, Message};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: ipfo-inject TARGET_IP:PORT SECONDS [--listen-port PORT]");
        std::process::exit(64);
    }
    let target: SocketAddr = args[1].parse().unwrap_or_else(|e| {
        eprintln!("bad target {}: {e}", args[1]);
        std::process::exit(64)
    });
    let seconds: f64 = args[2].parse().unwrap_or(5.0);
    let listen_port: u16 = args
        .iter()
        .position(|a| a == "--listen-port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(target.port());

    // Heartbeats are broadcast: the bridge floods them to us too.
    let listener = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    listener.set_reuse_address(true).expect("SO_REUSEADDR");
    listener
        .bind(&SocketAddr::from(([0, 0, 0, 0], listen_port)).into())
        .expect("bind the listening port");
    let listener: UdpSocket = listener.into();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut captured = Vec::new();
    let mut buf = [0u8; 2048];
    while captured.len() < 8 {
        match listener.recv_from(&mut buf) {
            Ok((n, _)) => captured.push(buf[..n].to_vec()),
            Err(e) => {
                eprintln!("captured {} datagrams, then: {e}", captured.len());
                break;
            }
        }
    }
    if captured.is_empty() {
        eprintln!("nothing to replay: no heartbeat seen on port {listen_port}");
        std::process::exit(1);
    }
    println!("captured {}", captured.len());

    // Forgeries: the captured content, with a later sequence, signed with a key we made up.
    let wrong = Key::new(b"not the shared secret, but long enough".to_vec());
    let forged: Vec<Vec<u8>> = captured
        .iter()
        .filter_map(|c| match wire::decode(c, None) {
            Ok(Message::V1 { mut datagram, .. }) => {
                datagram.seq += 1_000_000;
                Some(wire::encode(&datagram, Some(&wrong)))
            }
            _ => None,
        })
        .collect();

    let out = UdpSocket::bind("0.0.0.0:0").expect("sending socket");
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut replays, mut forgeries, mut truncations, mut junk) = (0u64, 0u64, 0u64, 0u64);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while Instant::now() < end {
        for c in &captured {
            if out.send_to(c, target).is_ok() {
                replays += 1;
            }
            let cut = c.len() / 2;
            if out.send_to(&c[..cut], target).is_ok() {
                truncations += 1;
            }
        }
        for f in &forged {
            if out.send_to(f, target).is_ok() {
                forgeries += 1;
            }
        }
        let mut bytes = [0u8; 96];
        for b in bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        if out.send_to(&bytes, target).is_ok() {
            junk += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("replays {replays}");
    println!("forgeries {forgeries}");
    println!("truncations {truncations}");
    println!("junk {junk}");
}
