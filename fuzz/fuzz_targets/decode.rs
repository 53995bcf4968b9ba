//! The datagram decoder, with and without a key, and the replay guard behind it: no input
//! may panic, and whatever decodes re-encodes to a datagram that decodes the same.
#![no_main]

use ipfailover::wire::{decode, encode, Key, Message, ReplayGuard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"0123456789abcdef0123456789abcdef".to_vec());
    for k in [None, Some(&key)] {
        if let Ok(Message::V1 { datagram, authenticated }) = decode(data, k) {
            let mut guard = ReplayGuard::new();
            let _ = guard.check(&datagram, authenticated, datagram.time_ms);
            assert!(guard.check(&datagram, authenticated, datagram.time_ms).is_err());
            let again = encode(&datagram, k);
            match decode(&again, k) {
                Ok(Message::V1 { datagram: d2, .. }) => assert_eq!(d2, datagram),
                other => panic!("re-encoded datagram does not decode: {other:?}"),
            }
        }
    }
});
