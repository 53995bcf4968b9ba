//! IPv6 neighbour discovery messages (RFC 4861), as the daemons send and hear them: the
//! unsolicited neighbour advertisement that tells the LAN an address moved here (§7.2.6), the
//! duplicate address detection solicitation that asks whether anyone answers for one (RFC 4862
//! §5.4.2), and the advertisements other hosts send for our addresses.
//!
//! Pure: bytes in, bytes out. An advertisement comes from any host on the LAN, so
//! [`Advert::decode`] never reads past the message and stops at the first malformed option
//! (a zero length would otherwise loop for ever). The layouts, and the golden vectors that
//! pin them, are in docs/design.md ("The packet codecs").

use std::net::Ipv6Addr;

use crate::wire::Mac;

/// The EtherType of IPv6.
pub const ETHERTYPE: u16 = 0x86dd;

/// ICMPv6's IPv6 next-header number.
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;

/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// The option that carries the target's link-layer address.
const OPT_TARGET_LL: u8 = 2;

/// The all-nodes group, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour advertisement: who answers for `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Advert {
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: caches replace what they had for the target.
    pub override_: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The target link-layer address option, if the message has one.
    pub target_mac: Option<Mac>,
}

impl Advert {
    /// The unsolicited advertisement of an address that moved here (RFC 4861 §7.2.6): Router
    /// and Solicited clear, Override set, with the target link-layer address `mac`.
    pub fn unsolicited(mac: Mac, target: Ipv6Addr) -> Advert {
        Advert {
            router: false,
            solicited: false,
            override_: true,
            target,
            target_mac: Some(mac),
        }
    }

    /// The ICMPv6 message (24 bytes, 32 with the option), checksum left zero: the kernel
    /// computes it for a raw ICMPv6 socket (see [`checksum`] to compute it here).
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![0u8; 24];
        m[0] = NEIGHBOR_ADVERT;
        // m[1], the code, is 0; m[2..4], the checksum, is left zero.
        m[4] = (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_) << 5);
        m[8..24].copy_from_slice(&self.target.octets());
        if let Some(mac) = self.target_mac {
            m.extend_from_slice(&[OPT_TARGET_LL, 1]);
            m.extend_from_slice(&mac);
        }
        m
    }

    /// Reads a neighbour advertisement (an ICMPv6 message, as a raw ICMPv6 socket delivers
    /// it): `None` unless it is one, at least 24 bytes long. The options are read while they
    /// are well formed; a later target link-layer option replaces an earlier one.
    pub fn decode(m: &[u8]) -> Option<Advert> {
        if m.first() != Some(&NEIGHBOR_ADVERT) {
            return None;
        }
        let flags = *m.get(4)?;
        let target: [u8; 16] = m.get(8..24)?.try_into().ok()?;
        let mut target_mac = None;
        let mut rest = m.get(24..).unwrap_or(&[]);
        // Options: type, length in units of 8 bytes, value.
        while let [kind, len, ..] = rest {
            let size = usize::from(*len) * 8;
            if size == 0 || size > rest.len() {
                break;
            }
            if *kind == OPT_TARGET_LL {
                if let Some(v) = rest.get(2..8).and_then(|v| <Mac>::try_from(v).ok()) {
                    target_mac = Some(v);
                }
            }
            rest = rest.get(size..).unwrap_or(&[]);
        }
        Some(Advert {
            router: flags & 0x80 != 0,
            solicited: flags & 0x40 != 0,
            override_: flags & 0x20 != 0,
            target: Ipv6Addr::from(target),
            target_mac,
        })
    }
}

/// The solicited-node multicast group of `target` (RFC 4291 §2.7.1) and its Ethernet
/// address (RFC 2464 §7).
pub fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, Mac) {
    let o = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// A duplicate address detection neighbour solicitation for `target`, as a whole IPv6
/// packet (RFC 4862 §5.4.2: source ::, destination the solicited-node group, hop limit 255,
/// no source link-layer address option), its checksum computed: 40 bytes of IPv6 header and
/// 24 of ICMPv6.
pub fn dad_solicitation(target: Ipv6Addr) -> [u8; 64] {
    let (group, _) = solicited_node(target);
    let mut p = [0u8; 64];
    p[0] = 0x60; // version 6, traffic class and flow label 0
    p[4..6].copy_from_slice(&24u16.to_be_bytes()); // payload length
    p[6] = NEXT_HEADER_ICMPV6;
    p[7] = 255; // hop limit
                // p[8..24], the source address, stays ::.
    p[24..40].copy_from_slice(&group.octets());
    p[40] = NEIGHBOR_SOLICIT;
    p[48..64].copy_from_slice(&target.octets());
    let sum = checksum(&[0; 16], &group.octets(), &p[40..64]);
    p[42..44].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The ICMPv6 checksum of `message` (its checksum field zero) over the IPv6 pseudo-header of
/// `src` and `dst` (RFC 8200 §8.1). Over a message whose checksum is filled in, it is zero
/// when the checksum is right.
pub fn checksum(src: &[u8; 16], dst: &[u8; 16], message: &[u8]) -> u16 {
    let len = u32::try_from(message.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let mut sum: u64 = 0;
    for chunk in [
        &src[..],
        &dst[..],
        &len[..],
        &[0, 0, 0, NEXT_HEADER_ICMPV6][..],
        message,
    ] {
        for pair in chunk.chunks(2) {
            let hi = pair.first().copied().unwrap_or(0);
            let lo = pair.get(1).copied().unwrap_or(0);
            sum += u64::from(u16::from_be_bytes([hi, lo]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: Mac = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn an_advertisement_names_its_target_and_mac() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let na = Advert::unsolicited(MAC, target).encode();
        let read = Advert::decode(&na).unwrap();
        assert_eq!((read.target, read.target_mac), (target, Some(MAC)));
        assert!(read.override_ && !read.solicited && !read.router);
        // Without the option the MAC is unknown, but the claim stands.
        assert_eq!(Advert::decode(&na[..24]).unwrap().target_mac, None);
        // A zero-length option ends the parse rather than looping.
        let mut bad = na[..24].to_vec();
        bad.extend_from_slice(&[2, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(Advert::decode(&bad).unwrap().target_mac, None);
        // An option longer than the message is not read.
        let mut long = na[..24].to_vec();
        long.extend_from_slice(&[2, 2, 1, 2, 3, 4, 5, 6]);
        assert_eq!(Advert::decode(&long).unwrap().target_mac, None);
        // Another option first, then ours.
        let mut two = na[..24].to_vec();
        two.extend_from_slice(&[1, 1, 9, 9, 9, 9, 9, 9]);
        two.extend_from_slice(&na[24..]);
        assert_eq!(Advert::decode(&two).unwrap().target_mac, Some(MAC));
        assert_eq!(Advert::decode(&[135; 24]), None);
        assert_eq!(Advert::decode(&na[..23]), None);
    }

    #[test]
    fn a_dad_solicitation_is_well_formed_and_its_checksum_verifies() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let (group, mac) = solicited_node(target);
        assert_eq!(group, "ff02::1:ff00:10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac, [0x33, 0x33, 0xff, 0, 0, 0x10]);
        let p = dad_solicitation(target);
        assert_eq!(checksum(&[0; 16], &group.octets(), &p[40..64]), 0);
    }

    proptest! {
        #[test]
        fn decoding_reads_only_the_message(m in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(a) = Advert::decode(&m) {
                prop_assert_eq!(&a.target.octets()[..], &m[8..24]);
            }
        }

        #[test]
        fn what_encodes_decodes_the_same(
            r in any::<bool>(), s in any::<bool>(), o in any::<bool>(),
            target in any::<[u8; 16]>(), mac in any::<Option<Mac>>(),
        ) {
            let a = Advert {
                router: r,
                solicited: s,
                override_: o,
                target: target.into(),
                target_mac: mac,
            };
            prop_assert_eq!(Advert::decode(&a.encode()), Some(a));
        }

        #[test]
        fn a_filled_in_checksum_sums_to_zero(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
            m in proptest::collection::vec(any::<u8>(), 4..64),
        ) {
            let mut m = m;
            m[2] = 0;
            m[3] = 0;
            let sum = checksum(&src, &dst, &m);
            m[2..4].copy_from_slice(&sum.to_be_bytes());
            // One's complement: a sum of 0xffff and of 0 are the same; either verifies.
            let again = checksum(&src, &dst, &m);
            prop_assert!(again == 0 || again == 0xffff, "{again:#x}");
        }
    }
}
