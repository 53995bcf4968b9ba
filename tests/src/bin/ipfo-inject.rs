//! Unusual senders for the lab. Runs only in the lab's namespaces (the tests start it there).
//!
//! `ipfo-inject attack TARGET_IP:PORT SECONDS`
//!   A hostile host: captures real heartbeats off the LAN (they are broadcast, so the bridge
//!   floods them to it), then, for SECONDS, sends the target replays of them, forgeries (their
//!   content with a later sequence, signed with a made-up key), truncations (half of one, and
//!   a 20-byte stub shorter than any header) and random bytes. Prints how many of each.
//!
//! `ipfo-inject flood TARGET RATE SECONDS [LISTEN_PORT]`
//!   A flood: captures heartbeats on LISTEN_PORT (default 1694), then sends RATE datagrams
//!   per second for SECONDS, a third each of random bytes, forged heartbeats (captured content,
//!   fresh sequence numbers, a made-up key) and replays. TARGET is IP:PORT, or `source` for the
//!   address and port the captured heartbeats came from (heartbeatd's own socket). Prints how
//!   many of each it sent.
//!
//! `ipfo-inject legacy INTERVAL_MS SECONDS DEST_IP:PORT...`
//!   An old Mac OS X Server primary: Apple's bare `heartbeat` datagram to each destination
//!   every INTERVAL_MS, for SECONDS.
//!
//! `ipfo-inject record PORT SECONDS FILE`
//!   Captures every datagram to PORT (broadcasts reach us too) for SECONDS into FILE, then
//!   prints how many of each kind (`heartbeat N`, `goodbye N`).
//!
//! `ipfo-inject replay FILE TARGET_IP:PORT SECONDS`
//!   Sends every datagram of FILE to the target, one every 2 ms round and round, for SECONDS.
//!
//! `ipfo-inject crowd SECRET_FILE N TARGET_IP:PORT SECONDS`
//!   N other key holders on the LAN (one secret for many pairs): authentic heartbeats from N
//!   made-up hosts (198.51.100.101 on), each with a boot id of its own, every 20 ms.
//!
//! `ipfo-inject beat INTERVAL_MS PEER_IP TARGET_IP:PORT SECONDS`
//!   Valid unauthenticated heartbeats naming PEER_IP and announcing INTERVAL_MS (0 included:
//!   what a key holder or, without a secret, anyone could send), every 20 ms for SECONDS.

#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipfailover::wire::{self, Key, Message};

fn usage() -> ! {
    eprintln!(
        "usage: ipfo-inject attack TARGET_IP:PORT SECONDS\n       \
         ipfo-inject flood TARGET|source RATE SECONDS [LISTEN_PORT]\n       \
         ipfo-inject legacy INTERVAL_MS SECONDS DEST_IP:PORT...\n       \
         ipfo-inject record PORT SECONDS FILE\n       \
         ipfo-inject replay FILE TARGET_IP:PORT SECONDS\n       \
         ipfo-inject crowd SECRET_FILE N TARGET_IP:PORT SECONDS\n       \
         ipfo-inject beat INTERVAL_MS PEER_IP TARGET_IP:PORT SECONDS"
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
        Some("flood") if args.len() >= 4 => {
            let port = args.get(4).map_or(1694.0, |p| number(p)) as u16;
            flood(&args[1], number(&args[2]), number(&args[3]), port)
        }
        Some("record") if args.len() == 4 => {
            record(number(&args[1]) as u16, number(&args[2]), &args[3])
        }
        Some("replay") if args.len() == 4 => replay(&args[1], addr(&args[2]), number(&args[3])),
        Some("crowd") if args.len() == 5 => crowd(
            &args[1],
            number(&args[2]) as u8,
            addr(&args[3]),
            number(&args[4]),
        ),
        Some("beat") if args.len() == 5 => beat(
            number(&args[1]) as u32,
            args[2].parse().unwrap_or_else(|_| usage()),
            addr(&args[3]),
            number(&args[4]),
        ),
        Some("legacy") if args.len() >= 4 => {
            let dests: Vec<SocketAddr> = args[3..].iter().map(|a| addr(a)).collect();
            legacy(number(&args[1]), number(&args[2]), &dests)
        }
        _ => usage(),
    }
}

fn record(port: u16, seconds: f64, file: &str) {
    let listener = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    listener.set_reuse_address(true).expect("SO_REUSEADDR");
    listener
        .bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .expect("bind the heartbeat port");
    let listener: UdpSocket = listener.into();
    listener
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    println!("recording");
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut out = Vec::new();
    let (mut beats, mut goodbyes) = (0, 0);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok((n, _)) = listener.recv_from(&mut buf) {
            let d = &buf[..n];
            if let Ok(Message::Ipfo { datagram, .. }) = wire::decode(d, None) {
                match datagram.kind {
                    wire::Kind::Heartbeat => beats += 1,
                    wire::Kind::Goodbye => goodbyes += 1,
                    _ => {}
                }
            }
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(d);
        }
    }
    std::fs::write(file, out).expect("the record file");
    println!("heartbeat {beats}");
    println!("goodbye {goodbyes}");
}

fn replay(file: &str, target: SocketAddr, seconds: f64) {
    let data = std::fs::read(file).expect("the record file");
    let mut datagrams = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + n {
            break;
        }
        datagrams.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    if datagrams.is_empty() {
        eprintln!("nothing to replay in {file}");
        std::process::exit(1);
    }
    let out = UdpSocket::bind("0.0.0.0:0").expect("sending socket");
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for d in &datagrams {
            if out.send_to(d, target).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    println!("replayed {sent}");
}

fn crowd(secret: &str, n: u8, target: SocketAddr, seconds: f64) {
    let bytes = std::fs::read(secret).expect("the secret file");
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec();
    let key = Key::new(bytes);
    let out = UdpSocket::bind("0.0.0.0:0").expect("sending socket");
    let mut hosts: Vec<wire::Datagram> = (0..n)
        .map(|i| wire::Datagram {
            interval_ms: 100,
            boot_id: 0x1000 + u64::from(i),
            hostname: format!("other-{i}"),
            entries: vec![wire::Entry::identity(
                std::net::IpAddr::from([198, 51, 100, 101u8.saturating_add(i)]),
                [0; 6],
            )],
            ..wire::Datagram::new(wire::Kind::Heartbeat)
        })
        .collect();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        for d in hosts.iter_mut() {
            d.seq += 1;
            if out.send_to(&wire::encode(d, Some(&key)), target).is_ok() {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("crowd {sent}");
}

fn beat(interval_ms: u32, peer: std::net::IpAddr, target: SocketAddr, seconds: f64) {
    let out = UdpSocket::bind("0.0.0.0:0").expect("sending socket");
    let mut d = wire::Datagram {
        interval_ms,
        boot_id: 0x0bad_0bad,
        hostname: "impostor".into(),
        entries: vec![wire::Entry::identity(peer, [0; 6])],
        ..wire::Datagram::new(wire::Kind::Heartbeat)
    };
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        d.seq += 1;
        if out.send_to(&wire::encode(&d, None), target).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("beats {sent}");
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

/// Captures up to 8 datagrams sent to `port` (broadcasts reach us too), with their sources.
fn capture(port: u16) -> Vec<(Vec<u8>, SocketAddr)> {
    let listener = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    listener.set_reuse_address(true).expect("SO_REUSEADDR");
    listener
        .bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .expect("bind the heartbeat port");
    let listener: UdpSocket = listener.into();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut captured = Vec::new();
    let mut buf = [0u8; 2048];
    while captured.len() < 8 {
        match listener.recv_from(&mut buf) {
            Ok((n, from)) => captured.push((buf[..n].to_vec(), from)),
            Err(e) => {
                eprintln!("captured {} datagrams, then: {e}", captured.len());
                break;
            }
        }
    }
    captured
}

fn flood(target: &str, rate: f64, seconds: f64, port: u16) {
    let captured = capture(port);
    if captured.is_empty() {
        eprintln!("nothing captured on port {port}");
        std::process::exit(1);
    }
    let target: SocketAddr = if target == "source" {
        captured[0].1
    } else {
        addr(target)
    };
    println!(
        "captured {}; flooding {target} at {rate:.0}/s for {seconds} s",
        captured.len()
    );
    let wrong = Key::new(b"not the shared secret, but long enough".to_vec());
    let mut templates: Vec<ipfailover::wire::Datagram> = captured
        .iter()
        .filter_map(|(c, _)| match wire::decode(c, None) {
            Ok(Message::Ipfo { datagram, .. }) => Some(datagram),
            _ => None,
        })
        .collect();
    let out = UdpSocket::bind("0.0.0.0:0").expect("sending socket");
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (mut junk, mut forged, mut replays, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut sent_total = 0u64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut bytes = [0u8; 120];
    while Instant::now() < end {
        // Send what the rate allows by now, then sleep a little.
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent_total < due {
            let kind = sent_total % 3;
            sent_total += 1;
            let ok = match kind {
                0 => {
                    for b in bytes.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x.to_le_bytes()[0];
                    }
                    junk += 1;
                    out.send_to(&bytes[..(x % 120) as usize], target)
                }
                1 if !templates.is_empty() => {
                    let i = (x as usize) % templates.len();
                    templates[i].seq = templates[i].seq.wrapping_add(1_000_000);
                    forged += 1;
                    out.send_to(&wire::encode(&templates[i], Some(&wrong)), target)
                }
                _ => {
                    let (c, _) = &captured[(sent_total as usize) % captured.len()];
                    replays += 1;
                    out.send_to(c, target)
                }
            };
            if ok.is_err() {
                errors += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!("junk {junk}");
    println!("forgeries {forged}");
    println!("replays {replays}");
    println!("send errors {errors}");
    println!(
        "rate {:.0}/s",
        sent_total as f64 / start.elapsed().as_secs_f64()
    );
}

fn attack(target: SocketAddr, seconds: f64) {
    let captured: Vec<Vec<u8>> = capture(target.port()).into_iter().map(|(c, _)| c).collect();
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
            Ok(Message::Ipfo { mut datagram, .. }) => {
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
