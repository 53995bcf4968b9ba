//! The datagram decoder, with and without a key, the replay guard and the receiver behind it:
//! no input may panic, and whatever decodes re-encodes to a datagram that decodes the same.
#![no_main]

use std::time::Instant;

use ipfailover::receive::Receiver;
use ipfailover::wire::{decode, encode, Key, Message, ReplayGuard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let peer = "198.51.100.10".parse().unwrap();
    for k in [None, Some(&key)] {
        // Both receivers, failoverd's (watching a peer) and heartbeatd's.
        for watched in [Some(peer), None] {
            let mut r = Receiver::new(k.cloned(), watched);
            let _ = r.receive(data, peer, Instant::now(), 0);
            let _ = r.challenge(Instant::now(), std::time::Duration::from_secs(1), || 1);
        }
        if let Ok(Message::Ipfo { datagram, authenticated: _ }) = decode(data, k) {
            let mut guard = ReplayGuard::new();
            let _ = guard.check(&datagram);
            assert!(guard.check(&datagram).is_err());
            let again = encode(&datagram, k);
            match decode(&again, k) {
                Ok(Message::Ipfo { datagram: d2, .. }) => assert_eq!(d2, datagram),
                other => panic!("re-encoded datagram does not decode: {other:?}"),
            }
        }
    }
});
