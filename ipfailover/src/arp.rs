//! ARP packets for IPv4 over Ethernet (RFC 826), as the daemons send and hear them: the
//! announcements of an address that moved here (RFC 5227 §3), the probes that ask whether
//! anyone answers for one (RFC 5227 §2.1.1), and the sender named by what the LAN says.
//!
//! Pure: bytes in, bytes out. What arrives here comes from any host on the LAN, so
//! [`Arp::decode`] accepts only the one layout the daemons use (Ethernet hardware addresses,
//! IPv4 protocol addresses, a request or a reply) and reads nothing beyond its 28 bytes. The
//! layout, and the golden vectors that pin it, are in docs/design.md ("The packet codecs").

use std::net::Ipv4Addr;

use crate::wire::Mac;

/// The EtherType of ARP.
pub const ETHERTYPE: u16 = 0x0806;

/// An ARP packet for Ethernet and IPv4 is 28 bytes (after the Ethernet header).
pub const LEN: usize = 28;

/// `ar$hrd`: Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// `ar$pro`: IPv4 (the EtherType of IP).
const PTYPE_IPV4: u16 = 0x0800;

/// The offset of the sender protocol address (`ar$spa`) in the packet.
pub const SENDER_IP_OFFSET: u32 = 14;

/// `ar$op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 1: who has the target address?
    Request,
    /// 2: the sender has it.
    Reply,
}

impl Op {
    fn code(self) -> u16 {
        match self {
            Op::Request => 1,
            Op::Reply => 2,
        }
    }
}

/// One ARP packet, Ethernet and IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arp {
    /// Request or reply.
    pub op: Op,
    /// `ar$sha`: the sender's link-layer address.
    pub sender_mac: Mac,
    /// `ar$spa`: the sender's address (0.0.0.0 in a probe).
    pub sender_ip: Ipv4Addr,
    /// `ar$tha`: the target's link-layer address (zero in a request).
    pub target_mac: Mac,
    /// `ar$tpa`: the address asked about.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// An ARP Announcement (RFC 5227 §3): a request whose sender and target addresses are
    /// both `ip`, from `mac`, target hardware address zero.
    pub fn announcement(mac: Mac, ip: Ipv4Addr) -> Arp {
        Arp {
            op: Op::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: ip,
        }
    }

    /// An ARP Probe (RFC 5227 §2.1.1): a request for `target` from `mac` with sender address
    /// 0.0.0.0, so that no cache learns anything from it.
    pub fn probe(mac: Mac, target: Ipv4Addr) -> Arp {
        Arp {
            op: Op::Request,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: target,
        }
    }

    /// The packet's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut p = [0u8; LEN];
        p[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        p[2..4].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        p[4] = 6; // ar$hln
        p[5] = 4; // ar$pln
        p[6..8].copy_from_slice(&self.op.code().to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac);
        p[14..18].copy_from_slice(&self.sender_ip.octets());
        p[18..24].copy_from_slice(&self.target_mac);
        p[24..28].copy_from_slice(&self.target_ip.octets());
        p
    }

    /// Reads an ARP packet (what follows the Ethernet header): `None` unless it is an
    /// Ethernet/IPv4 request or reply of at least [`LEN`] bytes. Bytes after the 28th (an
    /// Ethernet frame's padding) are ignored.
    pub fn decode(p: &[u8]) -> Option<Arp> {
        let p: &[u8; LEN] = p.get(..LEN)?.try_into().ok()?;
        let head = u16::from_be_bytes([p[0], p[1]]);
        let pro = u16::from_be_bytes([p[2], p[3]]);
        if head != HTYPE_ETHERNET || pro != PTYPE_IPV4 || p[4] != 6 || p[5] != 4 {
            return None;
        }
        let op = match u16::from_be_bytes([p[6], p[7]]) {
            1 => Op::Request,
            2 => Op::Reply,
            _ => return None,
        };
        let mac =
            |at: usize| -> Mac { [p[at], p[at + 1], p[at + 2], p[at + 3], p[at + 4], p[at + 5]] };
        let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
        Some(Arp {
            op,
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }
}

/// The sender of an ARP request or reply, as (MAC, IPv4 address), if `p` is one: who claims
/// an address.
pub fn sender(p: &[u8]) -> Option<(Mac, Ipv4Addr)> {
    Arp::decode(p).map(|a| (a.sender_mac, a.sender_ip))
}

/// One classic BPF instruction: (code, jump if true, jump if false, k).
pub type BpfInsn = (u16, u8, u8, u32);

/// At most this many addresses go into one [`sender_filter`]: the jump offsets are a byte.
pub const FILTER_MAX: usize = 200;

/// A classic BPF program for a socket that receives ARP packets without their Ethernet
/// header: pass a packet whose sender address is one of `addrs` (the first [`FILTER_MAX`]),
/// drop the rest, so that the LAN's other ARP never wakes the daemon.
pub fn sender_filter(addrs: &[Ipv4Addr]) -> Vec<BpfInsn> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let addrs = addrs.get(..addrs.len().min(FILTER_MAX)).unwrap_or(addrs);
    let n = addrs.len();
    let mut prog = vec![(LD_W_ABS, 0, 0, SENDER_IP_OFFSET)];
    for (i, a) in addrs.iter().enumerate() {
        // On a match jump over the remaining comparisons and the drop, to the pass.
        let jt = u8::try_from(n - i).unwrap_or(u8::MAX);
        prog.push((JEQ_K, jt, 0, u32::from(*a)));
    }
    prog.push((RET_K, 0, 0, 0));
    prog.push((RET_K, 0, 0, 0xffff));
    prog
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: Mac = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn a_probe_names_no_sender_address_and_replies_name_theirs() {
        let p = Arp::probe(MAC, Ipv4Addr::new(198, 51, 100, 10)).encode();
        assert_eq!(sender(&p), Some((MAC, Ipv4Addr::UNSPECIFIED)));
        let mut reply = p;
        reply[7] = 2;
        reply[14..18].copy_from_slice(&[198, 51, 100, 10]);
        assert_eq!(sender(&reply), Some((MAC, Ipv4Addr::new(198, 51, 100, 10))));
        reply[7] = 3; // RARP: not ours
        assert_eq!(sender(&reply), None);
        assert_eq!(sender(&reply[..10]), None);
        assert_eq!(sender(&p[..27]), None);
    }

    #[test]
    fn other_hardware_or_protocol_types_are_not_read() {
        let good = Arp::announcement(MAC, Ipv4Addr::new(198, 51, 100, 10)).encode();
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16), (6, 1)] {
            let mut bad = good;
            bad[at] = value;
            assert_eq!(Arp::decode(&bad), None, "byte {at} = {value}");
        }
        // An Ethernet frame's padding after the packet is not part of it.
        let mut padded = good.to_vec();
        padded.extend_from_slice(&[0xee; 18]);
        assert_eq!(Arp::decode(&padded), Arp::decode(&good));
    }

    #[test]
    fn the_filter_jumps_to_the_pass_for_each_address() {
        let a = Ipv4Addr::new(198, 51, 100, 10);
        let b = Ipv4Addr::new(198, 51, 100, 100);
        let prog = sender_filter(&[a, b]);
        assert_eq!(prog.len(), 5);
        assert_eq!(prog[0], (0x20, 0, 0, 14), "load the sender address");
        // Run it by hand on the sender address.
        let run = |spa: u32| -> u32 {
            let mut pc = 1;
            loop {
                let (code, jt, jf, k) = prog[pc];
                match code {
                    0x15 => pc += 1 + usize::from(if spa == k { jt } else { jf }),
                    0x06 => return k,
                    _ => unreachable!(),
                }
            }
        };
        assert_eq!(run(u32::from(a)), 0xffff);
        assert_eq!(run(u32::from(b)), 0xffff);
        assert_eq!(run(u32::from(Ipv4Addr::new(198, 51, 100, 30))), 0);
        assert_eq!(
            sender_filter(&[]).len(),
            3,
            "nothing watched: everything dropped"
        );
        let many: Vec<Ipv4Addr> = (0..300u32).map(Ipv4Addr::from).collect();
        assert_eq!(sender_filter(&many).len(), FILTER_MAX + 3);
    }

    proptest! {
        #[test]
        fn what_decodes_encodes_to_the_same_bytes(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(a) = Arp::decode(&p) {
                prop_assert_eq!(&a.encode()[..], &p[..LEN]);
            }
        }

        #[test]
        fn what_encodes_decodes_to_the_same_packet(
            reply in any::<bool>(), sha in any::<Mac>(), spa in any::<u32>(),
            tha in any::<Mac>(), tpa in any::<u32>(),
        ) {
            let a = Arp {
                op: if reply { Op::Reply } else { Op::Request },
                sender_mac: sha,
                sender_ip: spa.into(),
                target_mac: tha,
                target_ip: tpa.into(),
            };
            prop_assert_eq!(Arp::decode(&a.encode()), Some(a));
        }
    }
}
