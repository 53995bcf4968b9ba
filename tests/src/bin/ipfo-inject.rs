//! Unusual senders for the lab. Runs only in the lab's namespaces (the tests start it there).
//!
//! `ipfo-inject attack TARGET_IP:PORT SECONDS`
//!   A hostile host: captures real heartbeats off the LAN (they are broadcast, so the bridge
//!   floods them to it), then, for SECONDS, sends the target replays of them, forgeries (their
//!   content with a later sequence, signed with a made-up key), truncations (half of one, and
//!   a 20-byte stub shorter than any header) and random bytes. Prints how many of each.
//!
//! `ipfo-inject legacy INTERVAL_MS SECONDS DEST_IP:PORT...`
//!   An old Mac OS X Server primary: Apple's bare `heartbeat` datagram to each destination
//!   every INTERVAL_MS, for SECONDS.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipfailover::wire::{self, Key, Message};

fn usage() -> ! {
    eprintln!(
        "usage: ipfo-inject attack TARGET_IP:PORT SECONDS\n       \
         ipfo-inject legacy INTERVAL_MS SECONDS DEST_IP:PORT..."
    );
    std::process::exit(64)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| {
        eprintln!("bad address {s}: {e}");
        usage()
    })
}

fn number(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("attack") if args.len() == 3 => attack(addr(&args[1]), number(&args[2])),
        Some("legacy") if args.len() >= 4 => {
            let dests: Vec<SocketAddr> = args[3..].iter().map(|a| addr(a)).collect();
            legacy(number(&args[1]), number(&args[2]), &dests)
        }
        _ => usage(),
    }
}

fn legacy(interval_ms: f64, seconds: f64, dests: &[SocketAddr]) {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("socket");
    socket.set_broadcast(true).expect("SO_BROADCAST");
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for d in dests {
            if socket.send_to(b"heartbeat", d).is_ok() {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_secs_f64(interval_ms / 1000.0));
    }
    println!("legacy {sent}");
}

fn attack(target: SocketAddr, seconds: f64) {
    let listener = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    listener.set_reuse_address(true).expect("SO_REUSEADDR");
    listener
        .bind(&SocketAddr::from(([0, 0, 0, 0], target.port())).into())
        .expect("bind the heartbeat port");
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
        eprintln!(
            "nothing to replay: no heartbeat seen on port {}",
            target.port()
        );
        std::process::exit(1);
    }
    println!("captured {}", captured.len());

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
            for cut in [c.len() / 2, 20.min(c.len())] {
                if out.send_to(&c[..cut], target).is_ok() {
                    truncations += 1;
                }
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
            *b = x.to_le_bytes()[0];
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
