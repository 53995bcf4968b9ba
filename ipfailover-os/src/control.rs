//! The control socket: `<FAILOVER_STATE_DIR>/failoverd.sock`, mode 0600, that only the
//! daemon's own user may use (docs/failoverctl.md, "Taking the wheel"). Each connection
//! carries one request line and gets one answer line; the lines are the core's
//! ([`ipfailover::control`]), re-exported here.
//!
//! Commands: `pause` (optional `for_ms`, 1 ms to [`MAX_PAUSE`]), `resume`, `release` and
//! `takeover` (optional `force`). The caller is identified by the kernel (`SO_PEERCRED`): a
//! process of another user is refused and logged, whatever the socket's mode. The daemon
//! answers when its core does: at once, or (a takeover after its probe round) a moment later;
//! one command at a time.
//!
//! This module is the socket's name and failoverctl's end; the daemon's end, which serves its
//! clients without ever blocking its loop, is the runtime's (`ipfailover-runtime`'s
//! `control` module).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use ipfailover::control::{answer_line, parse_answer, Request, MAX_PAUSE, MAX_REQUEST};

/// The socket's name in the state directory.
pub const SOCKET_NAME: &str = "failoverd.sock";

/// How long failoverctl may take to send its request (the daemon gives a client as long).
const IO_TIMEOUT: Duration = Duration::from_millis(500);

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
