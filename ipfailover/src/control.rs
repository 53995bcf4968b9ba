//! The control channel's lines: what `failoverctl pause`, `resume`, `release` and `takeover`
//! send to failoverd, and what it answers (docs/failoverctl.md, "Taking the wheel"). One
//! request line and one answer line a connection, both JSON:
//!
//! ```text
//! -> {"command":"pause","for_ms":600000}
//! <- {"ok":true,"message":"paused: no takeover until the pause ends"}
//! ```
//!
//! Pure: text in, values out. A request line is read by the daemon from whoever connects to
//! its socket, so [`Request::parse`] refuses, with a reason, anything but the commands below;
//! the socket itself (its path, its peer check, failoverctl's end) is `ipfailover-os`'s
//! `control` module, and the daemon's end the runtime's.

use std::time::Duration;

use serde_json::{json, Value};

/// A request line may be at most this long.
pub const MAX_REQUEST: u64 = 4096;

/// The longest `pause --for`: a year (8760h). Longer is a pause until `resume`; the bound
/// keeps every time the daemon derives from it (the pause's end, on the monotonic and the
/// wall clock) far from overflowing.
pub const MAX_PAUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A command, as failoverctl sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `failoverctl pause [--for DURATION]`.
    Pause {
        /// How long, in ms, from 1 to [`MAX_PAUSE`]; `None`: until resumed.
        for_ms: Option<u64>,
    },
    /// `failoverctl resume`.
    Resume,
    /// `failoverctl drain` (a group member).
    Drain,
    /// `failoverctl release [--force]`.
    Release {
        /// Even though the peer is silent.
        force: bool,
    },
    /// `failoverctl takeover [--force]`.
    Takeover {
        /// Even though the address answers.
        force: bool,
    },
}

impl Request {
    /// The request line.
    pub fn to_line(self) -> String {
        let v = match self {
            Request::Pause { for_ms } => json!({ "command": "pause", "for_ms": for_ms }),
            Request::Resume => json!({ "command": "resume" }),
            Request::Drain => json!({ "command": "drain" }),
            Request::Release { force } => json!({ "command": "release", "force": force }),
            Request::Takeover { force } => json!({ "command": "takeover", "force": force }),
        };
        format!("{v}\n")
    }

    /// Parses a request line; what is wrong with it otherwise.
    pub fn parse(line: &str) -> Result<Request, String> {
        let v: Value =
            serde_json::from_str(line.trim()).map_err(|e| format!("not a JSON request: {e}"))?;
        let force = v["force"].as_bool().unwrap_or(false);
        match v["command"].as_str() {
            Some("pause") => Ok(Request::Pause {
                for_ms: match &v["for_ms"] {
                    Value::Null => None,
                    ms => Some(pause_ms(ms)?),
                },
            }),
            Some("resume") => Ok(Request::Resume),
            Some("drain") => Ok(Request::Drain),
            Some("release") => Ok(Request::Release { force }),
            Some("takeover") => Ok(Request::Takeover { force }),
            Some(other) => Err(format!("unknown command {other:?}")),
            None => Err("no command".to_string()),
        }
    }
}

/// A pause's length: whole milliseconds from 1 to [`MAX_PAUSE`]; anything else (negative, a
/// fraction, a string, longer than a year) is refused rather than read as "until resume".
fn pause_ms(value: &Value) -> Result<u64, String> {
    let max = u64::try_from(MAX_PAUSE.as_millis()).unwrap_or(u64::MAX);
    match value.as_u64() {
        Some(ms) if (1..=max).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "for_ms: expected whole milliseconds from 1 to {max} (a year), got {value}"
        )),
    }
}

/// An answer line: `Ok(message)` done, `Err(message)` refused.
pub fn answer_line(result: &Result<String, String>) -> String {
    let v = match result {
        Ok(m) => json!({ "ok": true, "message": m }),
        Err(m) => json!({ "ok": false, "message": m }),
    };
    format!("{v}\n")
}

/// Reads an answer line: `Ok(message)` done, `Err(message)` refused; an error if the line is
/// not an answer.
pub fn parse_answer(line: &str) -> Result<Result<String, String>, String> {
    let v: Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("not an answer: {e}: {line:?}"))?;
    let message = v["message"].as_str().unwrap_or("").to_string();
    match v["ok"].as_bool() {
        Some(true) => Ok(Ok(message)),
        Some(false) => Ok(Err(message)),
        None => Err(format!("not an answer: {line:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_answers_round_trip() {
        for r in [
            Request::Pause { for_ms: None },
            Request::Pause {
                for_ms: Some(600_000),
            },
            Request::Resume,
            Request::Release { force: true },
            Request::Takeover { force: false },
        ] {
            assert_eq!(Request::parse(&r.to_line()), Ok(r));
        }
        assert!(Request::parse("{\"command\":\"reboot\"}").is_err());
        // A pause's length is bounded and must be whole milliseconds: nothing else is read
        // as a pause until resume, or overflows the daemon's clocks.
        let year = u64::try_from(MAX_PAUSE.as_millis()).unwrap();
        assert_eq!(
            Request::parse(&format!("{{\"command\":\"pause\",\"for_ms\":{year}}}")),
            Ok(Request::Pause { for_ms: Some(year) })
        );
        for bad in [
            format!("{}", year + 1),
            u64::MAX.to_string(),
            "0".into(),
            "-1".into(),
            "1.5".into(),
            "1e30".into(),
            "\"10m\"".into(),
        ] {
            let line = format!("{{\"command\":\"pause\",\"for_ms\":{bad}}}");
            let e = Request::parse(&line).unwrap_err();
            assert!(
                e.starts_with("for_ms: expected whole milliseconds"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            Request::parse("{\"command\":\"pause\",\"for_ms\":null}"),
            Ok(Request::Pause { for_ms: None })
        );
        assert!(Request::parse("garbage").is_err());
        assert_eq!(Request::parse("[1,2]"), Err("no command".to_string()));
        let ok = Ok("done".to_string());
        assert_eq!(parse_answer(&answer_line(&ok)), Ok(ok));
        let no = Err("refused: why".to_string());
        assert_eq!(parse_answer(&answer_line(&no)), Ok(no));
        assert!(parse_answer("{\"message\":\"x\"}").is_err());
    }

    #[test]
    fn the_lines_are_as_documented() {
        assert_eq!(
            Request::Pause {
                for_ms: Some(600_000)
            }
            .to_line(),
            "{\"command\":\"pause\",\"for_ms\":600000}\n"
        );
        let answer = answer_line(&Ok("paused".into()));
        assert!(answer.ends_with("}\n") && !answer[..answer.len() - 1].contains('\n'));
        assert!(answer.contains("\"ok\":true") && answer.contains("\"message\":\"paused\""));
    }

    proptest! {
        #[test]
        fn any_line_parses_or_is_refused_and_what_parses_round_trips(line in ".{0,200}") {
            if let Ok(r) = Request::parse(&line) {
                prop_assert_eq!(Request::parse(&r.to_line()), Ok(r));
            }
            if let Ok(a) = parse_answer(&line) {
                prop_assert_eq!(parse_answer(&answer_line(&a)), Ok(a));
            }
        }
    }
}
