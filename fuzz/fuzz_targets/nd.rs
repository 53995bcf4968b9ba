//! The neighbour advertisement decoder, on whatever the LAN sends: no input may panic (the
//! options' lengths come from the sender), the target read is the message's, and what
//! decodes encodes to an advertisement that decodes the same.
#![no_main]

use ipfailover::nd::Advert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(a) = Advert::decode(data) {
        assert_eq!(&a.target.octets()[..], &data[8..24]);
        assert_eq!(Advert::decode(&a.encode()), Some(a));
    }
});
