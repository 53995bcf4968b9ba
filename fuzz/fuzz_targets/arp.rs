//! The ARP decoder, on whatever the LAN sends: no input may panic, what decodes encodes back
//! to the packet's own 28 bytes, and the sender read is the packet's.
#![no_main]

use ipfailover::arp::{self, Arp, LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(a) = Arp::decode(data) {
        assert_eq!(&a.encode()[..], &data[..LEN]);
        assert_eq!(arp::sender(data), Some((a.sender_mac, a.sender_ip)));
    } else {
        assert_eq!(arp::sender(data), None);
    }
});
