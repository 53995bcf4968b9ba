//! The floor under heartbeatd's idle cost: the least a program can do that keeps failoverd
//! content. Every interval it sends one valid heartbeat to each destination, through the same
//! encoder and the same single `sendmmsg` as heartbeatd, and does nothing else: no event loop,
//! no status file, no look-ups of its addresses, no signals, no replies. The bench measures its
//! CPU beside heartbeatd's, so the report shows how much of heartbeatd's cost is the sending
//! itself on this machine's kernel and how much is heartbeatd.
//!
//! Usage: ipfo-floor INTERVAL_MS DESTINATION... (run it in a lab namespace, as the bench does).

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipfailover::settings::DEFAULT_PORT;
use ipfailover::wire::{self, Datagram, Kind};
use ipfailover_os::{daemon, interfaces, udp};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let interval = args.first().and_then(|a| a.parse::<u64>().ok());
    let dests: Vec<IpAddr> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (Some(interval_ms), false) = (interval, dests.is_empty()) else {
        eprintln!("usage: ipfo-floor INTERVAL_MS DESTINATION...");
        std::process::exit(64);
    };
    let addrs: Vec<IpAddr> = interfaces::addrs_for_destinations(&dests)
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.addr)
        .collect();
    let socket = udp::bind_sender(false).unwrap_or_else(|e| {
        eprintln!("ipfo-floor: UDP socket: {e}");
        std::process::exit(1)
    });
    let mut batch: Vec<udp::Outgoing> = dests
        .iter()
        .map(|d| udp::Outgoing::new(SocketAddr::new(*d, DEFAULT_PORT)))
        .collect();
    let mut d = Datagram {
        interval_ms: u32::try_from(interval_ms).unwrap_or(u32::MAX),
        boot_id: daemon::random_boot_id(),
        hostname: daemon::hostname(),
        entries: addrs
            .into_iter()
            .map(|a| wire::Entry::new(a, wire::Role::IDENTITY.with(wire::Role::HOLDS)))
            .collect(),
        ..Datagram::new(Kind::Heartbeat)
    };
    let interval = Duration::from_millis(interval_ms);
    let mut next = Instant::now();
    eprintln!("ipfo-floor: sending every {interval_ms} ms");
    loop {
        d.time_ms = daemon::wall_ms();
        for out in &mut batch {
            d.seq += 1;
            wire::encode_into(&d, None, &mut out.buf);
        }
        udp::send_batch(&socket, &mut batch);
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
