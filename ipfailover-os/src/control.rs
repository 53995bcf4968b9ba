//! The control channel (SPEC §11): a Unix socket, `<FAILOVER_STATE_DIR>/failoverd.sock`, mode
//! 0600, that only the daemon's own user may use. Each connection carries one request line and
//! gets one answer line, both JSON:
//!
//! ```text
//! -> {"command":"pause","for_ms":600000}
//! <- {"ok":true,"message":"paused: no takeover until the pause ends"}
//! ```
//!
//! Commands: `pause` (optional `for_ms`, 1 ms to [`MAX_PAUSE`]), `resume`, `release` and
//! `takeover` (optional `force`). The caller is identified by the kernel (`SO_PEERCRED`): a process of another user
//! is refused and logged, whatever the socket's mode. The daemon answers when its core does:
//! at once, or (a takeover after its probe round) a moment later; one command at a time.
//!
//! This module is the protocol and failoverctl's end; the daemon's end, which serves its
//! clients without ever blocking its loop, is the runtime's (`ipfailover-runtime`'s
//! `control` module).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// The socket's name in the state directory.
pub const SOCKET_NAME: &str = "failoverd.sock";

/// A request line may be at most this long.
pub const MAX_REQUEST: u64 = 4096;

/// How long failoverctl may take to send its request (the daemon gives a client as long).
const IO_TIMEOUT: Duration = Duration::from_millis(500);

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

/// An answer line.
pub fn answer_line(result: &Result<String, String>) -> String {
    let v = match result {
        Ok(m) => json!({ "ok": true, "message": m }),
        Err(m) => json!({ "ok": false, "message": m }),
    };
    format!("{v}\n")
}

/// Reads an answer line: `Ok(message)` done, `Err(message)` refused.
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

/// failoverctl's end: sends `request` to the daemon whose socket is in `dir`, waits at most
/// `wait` for the answer.
pub fn send(dir: &Path, request: Request, wait: Duration) -> io::Result<Result<String, String>> {
    let path = dir.join(SOCKET_NAME);
    let mut stream = UnixStream::connect(&path)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_read_timeout(Some(wait))?;
    // A refusal may come before the request is read: its answer is still worth reading.
    if let Err(e) = stream.write_all(request.to_line().as_bytes()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e);
        }
    }
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST)).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "failoverd closed the connection without an answer",
        ));
    }
    parse_answer(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        let ok = Ok("done".to_string());
        assert_eq!(parse_answer(&answer_line(&ok)), Ok(ok));
        let no = Err("refused: why".to_string());
        assert_eq!(parse_answer(&answer_line(&no)), Ok(no));
    }
}
