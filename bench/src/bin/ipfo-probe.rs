//! The bench's probe: from the client, a UDP datagram to the VIP every millisecond; every
//! reply is timestamped on the monotonic clock (shared by all namespaces of the machine).
//!
//! Usage: ipfo-probe VIP:PORT OUTFILE
//!
//! Writes one line `NANOS TAG` to OUTFILE whenever the answering host changes (and every
//! 100 ms as a sign of life), flushed at once, so the driver can find "the first reply from
//! the secondary after the crash" without reading a million lines.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ipfailover_bench::mono_ns;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(target), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ipfo-probe VIP:PORT OUTFILE");
        std::process::exit(64);
    };
    let target: SocketAddr = target.parse().unwrap_or_else(|e| {
        eprintln!("ipfo-probe: {target}: {e}");
        std::process::exit(64)
    });
    let mut out = std::fs::File::create(out).unwrap_or_else(|e| {
        eprintln!("ipfo-probe: {out}: {e}");
        std::process::exit(1)
    });
    let socket = UdpSocket::bind("0.0.0.0:0").expect("socket");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut seq: u64 = 0;
    let mut last_tag = 0u8;
    let mut last_line = 0u64;
    let mut next = mono_ns();
    let mut buf = [0u8; 64];
    loop {
        let now = mono_ns();
        if now >= next {
            seq += 1;
            let _ = socket.send_to(&seq.to_be_bytes(), target);
            next += 1_000_000;
            if next < now {
                next = now + 1_000_000;
            }
        }
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            let t = mono_ns();
            let tag = if n >= 9 { buf[8] } else { b'?' };
            if tag != last_tag || t >= last_line + 100_000_000 {
                let _ = writeln!(out, "{t} {}", tag as char);
                last_tag = tag;
                last_line = t;
            }
        }
        // Sleep until the next send, in small steps so replies are stamped within ~50 us.
        let wait = next.saturating_sub(mono_ns()).min(50_000);
        std::thread::sleep(Duration::from_nanos(wait));
    }
}
