//! Golden vectors for the codecs of what crosses the LAN and the control socket.
//!
//! The frames below were not produced by the code they test: `scripts/golden-frames` lays
//! each one out field by field from the RFCs' tables with Python's `struct` (RFC 826 for ARP,
//! RFC 5227 for probes and announcements, RFC 4861 and 4862 for neighbour discovery, RFC 8200
//! for the checksum) and prints it as hex; the strings are pasted from its output. The control
//! lines are written by hand from docs/failoverctl.md. docs/design.md ("The packet codecs")
//! says how to add one.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipfailover::arp::{self, Arp, Op};
use ipfailover::control::{self, Request};
use ipfailover::nd::{self, Advert};

const OUR_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
const OTHER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0xaa, 0xbb, 0xcc];
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const HOST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// Bytes from the script's hex.
fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn arp_announcement() {
    let golden = hex("000108000604000102005e102030c633640a000000000000c633640a");
    assert_eq!(Arp::announcement(OUR_MAC, VIP4).encode().to_vec(), golden);
}

#[test]
fn arp_probe() {
    let golden = hex("000108000604000102005e10203000000000000000000000c633640a");
    assert_eq!(Arp::probe(OUR_MAC, VIP4).encode().to_vec(), golden);
    // Heard back, a probe names 0.0.0.0: never a claim on an address of ours.
    assert_eq!(arp::sender(&golden), Some((OUR_MAC, Ipv4Addr::UNSPECIFIED)));
}

#[test]
fn arp_reply_from_another_host() {
    let golden = hex("000108000604000202005eaabbccc633640a02005e102030c6336414");
    let expected = Arp {
        op: Op::Reply,
        sender_mac: OTHER_MAC,
        sender_ip: VIP4,
        target_mac: OUR_MAC,
        target_ip: HOST4,
    };
    assert_eq!(Arp::decode(&golden), Some(expected));
    assert_eq!(arp::sender(&golden), Some((OTHER_MAC, VIP4)));
    assert_eq!(expected.encode().to_vec(), golden);
}

#[test]
fn unsolicited_neighbour_advertisement_and_its_checksum() {
    let golden = hex("880000002000000020010db8000000000000000000000010020102005e102030");
    let na = Advert::unsolicited(OUR_MAC, VIP6).encode();
    assert_eq!(na, golden);
    // The kernel fills the checksum in; computed here, it is the script's.
    let sum = nd::checksum(&VIP6.octets(), &nd::ALL_NODES.octets(), &na);
    assert_eq!(sum.to_be_bytes().to_vec(), hex("7acd"));
}

#[test]
fn solicited_advertisement_from_another_host() {
    let golden = hex("880000006000000020010db8000000000000000000000010020102005eaabbcc");
    assert_eq!(
        Advert::decode(&golden),
        Some(Advert {
            router: false,
            solicited: true,
            override_: true,
            target: VIP6,
            target_mac: Some(OTHER_MAC),
        })
    );
}

#[test]
fn solicited_node_group() {
    let golden = hex("ff0200000000000000000001ff0000103333ff000010");
    let (group, mac) = nd::solicited_node(VIP6);
    assert_eq!(group.octets().to_vec(), golden[..16]);
    assert_eq!(mac.to_vec(), golden[16..]);
}

#[test]
fn duplicate_address_detection_solicitation() {
    let golden = hex(
        "6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff000010\
         87004ccf0000000020010db8000000000000000000000010",
    );
    assert_eq!(nd::dad_solicitation(VIP6).to_vec(), golden);
}

#[test]
fn control_request_lines() {
    for (line, request) in [
        (
            "{\"command\":\"pause\",\"for_ms\":600000}\n",
            Request::Pause {
                for_ms: Some(600_000),
            },
        ),
        (
            "{\"command\":\"pause\",\"for_ms\":null}\n",
            Request::Pause { for_ms: None },
        ),
        ("{\"command\":\"resume\"}\n", Request::Resume),
        (
            "{\"command\":\"release\",\"force\":true}\n",
            Request::Release { force: true },
        ),
        (
            "{\"command\":\"takeover\",\"force\":false}\n",
            Request::Takeover { force: false },
        ),
    ] {
        assert_eq!(request.to_line(), line);
        assert_eq!(Request::parse(line), Ok(request));
    }
    // An older failoverctl's pause without for_ms, and a takeover without force.
    assert_eq!(
        Request::parse("{\"command\":\"pause\"}"),
        Ok(Request::Pause { for_ms: None })
    );
    assert_eq!(
        Request::parse("{\"command\":\"takeover\"}"),
        Ok(Request::Takeover { force: false })
    );
}

#[test]
fn control_answer_lines() {
    assert_eq!(
        control::parse_answer(
            "{\"ok\":true,\"message\":\"paused: no takeover until the pause ends\"}\n"
        ),
        Ok(Ok("paused: no takeover until the pause ends".to_string()))
    );
    assert_eq!(
        control::parse_answer("{\"ok\":false,\"message\":\"refused: only uid 0 may\"}"),
        Ok(Err("refused: only uid 0 may".to_string()))
    );
    assert!(control::parse_answer("{\"message\":\"no verdict\"}").is_err());
}
