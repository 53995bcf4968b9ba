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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// The socket's name in the state directory.
pub const SOCKET_NAME: &str = "failoverd.sock";

/// A request line may be at most this long.
const MAX_REQUEST: u64 = 4096;

/// How long a client may take to send its request, and to take an answer.
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

/// The daemon's end: the listening socket and the connection waiting for an answer.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    uid: u32,
    waiting: Option<UnixStream>,
}

impl ControlSocket {
    /// Binds `<dir>/failoverd.sock` for user `uid` (replacing a stale socket of ours), mode
    /// 0600.
    pub fn bind(dir: &Path, uid: u32) -> io::Result<ControlSocket> {
        let path = dir.join(SOCKET_NAME);
        match std::fs::symlink_metadata(&path) {
            // A socket left by a previous run of ours: nobody listens on it any more (a second
            // failoverd on one state directory would already have failed to lock it out).
            Ok(m) if m.file_type().is_socket() && m.uid() == uid => std::fs::remove_file(&path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket of uid {uid}: not replaced",
                        path.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Created 0600: no window in which another user could connect.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&path);
        nix::sys::stat::umask(old);
        let listener = bound?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlSocket {
            listener,
            path,
            uid,
            waiting: None,
        })
    }

    /// The listening socket's fd, for the poll.
    pub fn fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a command waits for its answer.
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Accepts what is pending; each request of an allowed caller is returned, with the
    /// caller's pid for the log. Refused callers and bad requests are answered here.
    pub fn accept(&mut self) -> Vec<(Request, i32)> {
        let mut out = Vec::new();
        for _ in 0..16 {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    break;
                }
            };
            if let Some(r) = self.take(stream) {
                out.push(r);
            }
        }
        out
    }

    /// One connection: who, and what it asks.
    fn take(&mut self, mut stream: UnixStream) -> Option<(Request, i32)> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let (uid, pid) = match peer(&stream) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("control socket: cannot tell who connected ({e}): refused");
                return None;
            }
        };
        let mut line = String::new();
        let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
        if uid != self.uid {
            log::warn!(
                "control socket: a request from uid {uid} (pid {pid}) refused: only uid {} may \
                 command failoverd",
                self.uid
            );
            let _ = stream.write_all(
                answer_line(&Err(format!(
                    "refused: only uid {} may command failoverd",
                    self.uid
                )))
                .as_bytes(),
            );
            return None;
        }
        let request = match read {
            Ok(_) => Request::parse(&line),
            Err(e) => Err(format!("reading the request: {e}")),
        };
        match request {
            Err(why) => {
                log::warn!("control socket: a bad request from pid {pid}: {why}");
                let _ = stream.write_all(answer_line(&Err(why)).as_bytes());
                None
            }
            Ok(_) if self.waiting.is_some() => {
                let _ = stream.write_all(
                    answer_line(&Err(
                        "busy: another command waits for its answer; ask again in a moment"
                            .to_string(),
                    ))
                    .as_bytes(),
                );
                None
            }
            Ok(r) => {
                self.waiting = Some(stream);
                Some((r, pid))
            }
        }
    }

    /// Answers the command that waits, and closes its connection.
    pub fn answer(&mut self, result: &Result<String, String>) {
        if let Some(mut stream) = self.waiting.take() {
            if let Err(e) = stream.write_all(answer_line(result).as_bytes()) {
                log::debug!("control socket: the caller did not wait for its answer: {e}");
            }
        }
    }
}

/// Who is at the other end of `stream`, as the kernel says: uid and pid (0 where the pid is
/// not told).
#[cfg(target_os = "linux")]
fn peer(stream: &UnixStream) -> nix::Result<(u32, i32)> {
    let c =
        nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::PeerCredentials)?;
    Ok((c.uid(), c.pid()))
}

#[cfg(not(target_os = "linux"))]
fn peer(stream: &UnixStream) -> nix::Result<(u32, i32)> {
    let (uid, _) = nix::unistd::getpeereid(stream.as_fd())?;
    Ok((uid.as_raw(), 0))
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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

    #[test]
    fn a_command_is_answered_over_the_socket_and_the_socket_is_ours_only() {
        let dir = std::env::temp_dir().join(format!("ipfo-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let mut sock = ControlSocket::bind(&dir, uid).unwrap();
        let mode = std::fs::metadata(sock.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let d = dir.clone();
        let client = std::thread::spawn(move || {
            send(
                &d,
                Request::Pause { for_ms: Some(1000) },
                Duration::from_secs(5),
            )
        });
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(sock.accept());
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            got.first().map(|(r, _)| *r),
            Some(Request::Pause { for_ms: Some(1000) })
        );
        assert!(sock.waiting());
        sock.answer(&Ok("paused".to_string()));
        assert_eq!(client.join().unwrap().unwrap(), Ok("paused".to_string()));
        drop(sock);
        assert!(!dir.join(SOCKET_NAME).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
