//! The control socket's lines: a request as failoverd reads it from a client, an answer as
//! failoverctl reads it from failoverd. No input may panic, and what parses writes back to a
//! line that parses the same.
#![no_main]

use ipfailover::control::{answer_line, parse_answer, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Request::parse(line) {
        assert_eq!(Request::parse(&r.to_line()), Ok(r));
    }
    if let Ok(a) = parse_answer(line) {
        assert_eq!(parse_answer(&answer_line(&a)), Ok(a));
    }
});
