//! The control socket's server end (docs/failoverctl.md; the protocol is
//! [`ipfailover_os::control`]): `<FAILOVER_STATE_DIR>/failoverd.sock`, mode 0600, one request
//! line and one answer line per connection.
//!
//! Nothing here blocks the loop. Every client is read and answered without blocking, and each
//! has a deadline: a client that has not sent its whole request [`CLIENT_DEADLINE`] after it
//! connected is answered with an error and dropped, and so is one that does not take its answer
//! within as long, while every other client, datagram and deadline is served meanwhile. The
//! one command handed to the driver waits for its answer without a deadline: the daemon answers
//! when its core does (a takeover after its probe round).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfailover_os::control::{answer_line, Request, MAX_REQUEST, SOCKET_NAME};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// The listening socket.
pub(crate) const CONTROL: Token = Token(6);
/// Clients are `CLIENT_BASE + slot`.
pub(crate) const CLIENT_BASE: usize = 1 << 16;

/// How long a client may take to send its request, and to take its answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_millis(500);

/// Clients served at once; more are closed at once.
const MAX_CLIENTS: usize = 64;

/// Connections accepted per turn (the rest at the next turn, which does not wait).
const ACCEPT_BUDGET: usize = 256;

#[derive(Debug)]
enum Phase {
    /// Reading the request line.
    Reading(Vec<u8>),
    /// Its command is with the driver.
    Waiting,
    /// Writing the answer: the line, and how much of it is written.
    Writing(Vec<u8>, usize),
}

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    uid: u32,
    pid: i32,
    phase: Phase,
    /// When it is dropped if still reading or writing.
    deadline: Option<Instant>,
    /// The poll said it is ready since it was last served.
    ready: bool,
}

/// The listening socket and its clients, once opened.
#[derive(Debug)]
pub struct Control {
    registry: Registry,
    listener: Option<(UnixListener, PathBuf)>,
    uid: u32,
    clients: Vec<Option<Client>>,
    /// The slot of the client whose command waits for its answer.
    waiting: Option<usize>,
    /// Connections may be pending.
    pending: bool,
}

impl Control {
    pub(crate) fn new(registry: Registry) -> Control {
        Control {
            registry,
            listener: None,
            uid: 0,
            clients: Vec::new(),
            waiting: None,
            pending: false,
        }
    }

    /// Binds `<dir>/failoverd.sock` for user `uid` (replacing a stale socket of ours, which
    /// nobody listens on: the state directory's lock keeps a second daemon out), mode 0600.
    pub fn open(&mut self, dir: &Path, uid: u32) -> io::Result<()> {
        let path = dir.join(SOCKET_NAME);
        match std::fs::symlink_metadata(&path) {
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
        let bound = std::os::unix::net::UnixListener::bind(&path);
        nix::sys::stat::umask(old);
        let listener = bound?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        self.registry
            .register(&mut listener, CONTROL, Interest::READABLE)?;
        self.listener = Some((listener, path));
        self.uid = uid;
        Ok(())
    }

    /// The socket's path, once opened.
    pub fn path(&self) -> Option<&Path> {
        self.listener.as_ref().map(|(_, p)| p.as_path())
    }

    /// Whether a command waits for its answer.
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Answers the command that waits, and closes its connection once the answer is out.
    pub fn answer(&mut self, now: Instant, result: &Result<String, String>) {
        if let Some(slot) = self.waiting.take() {
            self.reply(slot, now, result);
        }
    }

    /// The poll said `token` is ready.
    pub(crate) fn readable(&mut self, token: Token) {
        if token == CONTROL {
            self.pending = true;
        } else if let Some(Some(c)) = token
            .0
            .checked_sub(CLIENT_BASE)
            .and_then(|slot| self.clients.get_mut(slot))
        {
            c.ready = true;
        }
    }

    /// Whether connections may still be pending: the next turn must not wait.
    pub(crate) fn busy(&self) -> bool {
        self.pending
    }

    /// The earliest client deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .flatten()
            .filter_map(|c| c.deadline)
            .min()
    }

    /// Serves what is ready and what is due: new connections, requests, answers, clients
    /// past their deadline. The requests of allowed callers, with each caller's pid; refused
    /// callers and bad requests are answered here.
    pub(crate) fn serve(&mut self, now: Instant) -> Vec<(Request, i32)> {
        let mut out = Vec::new();
        if self.pending {
            self.accept(now);
        }
        for slot in 0..self.clients.len() {
            let Some(c) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let expired = c.deadline.is_some_and(|d| now >= d);
            if !std::mem::take(&mut c.ready) && !expired {
                continue;
            }
            match c.phase {
                Phase::Reading(_) => {
                    if let Some(r) = self.read(slot, now, expired) {
                        out.push(r);
                    }
                }
                Phase::Writing(..) => self.write(slot, expired),
                Phase::Waiting => {}
            }
        }
        out
    }

    fn accept(&mut self, now: Instant) {
        let Some((listener, _)) = &self.listener else {
            self.pending = false;
            return;
        };
        for _ in 0..ACCEPT_BUDGET {
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    self.pending = false;
                    return;
                }
            };
            let (uid, pid) = match peer(&stream) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("control socket: cannot tell who connected ({e}): refused");
                    continue;
                }
            };
            if self.clients.iter().flatten().count() >= MAX_CLIENTS {
                log::warn!(
                    "control socket: {MAX_CLIENTS} clients are served already: pid {pid} \
                     refused"
                );
                continue;
            }
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(s) => s,
                None => {
                    self.clients.push(None);
                    self.clients.len() - 1
                }
            };
            if let Err(e) =
                self.registry
                    .register(&mut stream, Token(CLIENT_BASE + slot), Interest::READABLE)
            {
                log::warn!("control socket: cannot watch a client: {e}");
                continue;
            }
            if let Some(s) = self.clients.get_mut(slot) {
                *s = Some(Client {
                    stream,
                    uid,
                    pid,
                    phase: Phase::Reading(Vec::new()),
                    deadline: Some(now + CLIENT_DEADLINE),
                    // A request may be there already: read it this turn.
                    ready: true,
                });
            }
        }
        // Some may still be pending; the next turn takes them without waiting.
    }

    /// Reads what the client sent; its request once the line is whole.
    fn read(&mut self, slot: usize, now: Instant, expired: bool) -> Option<(Request, i32)> {
        let c = self.clients.get_mut(slot)?.as_mut()?;
        let Phase::Reading(buf) = &mut c.phase else {
            return None;
        };
        let mut failed = None;
        let mut chunk = [0u8; 512];
        let whole = loop {
            if buf.contains(&b'\n') || buf.len() as u64 >= MAX_REQUEST {
                break true;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(format!("reading the request: {e}"));
                    break true;
                }
            }
        };
        if !whole && !expired {
            return None;
        }
        if !whole {
            failed = Some(format!(
                "reading the request: none within {} ms",
                CLIENT_DEADLINE.as_millis()
            ));
        }
        let (uid, pid) = (c.uid, c.pid);
        let limit = usize::try_from(MAX_REQUEST).unwrap_or(usize::MAX);
        let line = buf.get(..buf.len().min(limit)).unwrap_or(&[]);
        let line = String::from_utf8_lossy(line);
        let line = line.split('\n').next().unwrap_or("").to_string();
        if uid != self.uid {
            log::warn!(
                "control socket: a request from uid {uid} (pid {pid}) refused: only uid {} may \
                 command failoverd",
                self.uid
            );
            let refusal = Err(format!(
                "refused: only uid {} may command failoverd",
                self.uid
            ));
            self.reply(slot, now, &refusal);
            return None;
        }
        let request = match failed {
            Some(why) => Err(why),
            None => Request::parse(&line),
        };
        match request {
            Err(why) => {
                log::warn!("control socket: a bad request from pid {pid}: {why}");
                self.reply(slot, now, &Err(why));
                None
            }
            Ok(_) if self.waiting.is_some() => {
                let busy = Err(
                    "busy: another command waits for its answer; ask again in a moment".to_string(),
                );
                self.reply(slot, now, &busy);
                None
            }
            Ok(r) => {
                c.phase = Phase::Waiting;
                c.deadline = None;
                self.waiting = Some(slot);
                Some((r, pid))
            }
        }
    }

    /// Starts writing `result` to the client in `slot`.
    fn reply(&mut self, slot: usize, now: Instant, result: &Result<String, String>) {
        let Some(Some(c)) = self.clients.get_mut(slot) else {
            return;
        };
        c.phase = Phase::Writing(answer_line(result).into_bytes(), 0);
        c.deadline = Some(now + CLIENT_DEADLINE);
        if let Err(e) =
            self.registry
                .reregister(&mut c.stream, Token(CLIENT_BASE + slot), Interest::WRITABLE)
        {
            log::debug!("control socket: {e}");
        }
        self.write(slot, false);
    }

    /// Writes what the socket takes of the answer; closes the connection once it is out,
    /// or once the client has had its time.
    fn write(&mut self, slot: usize, expired: bool) {
        let Some(Some(c)) = self.clients.get_mut(slot) else {
            return;
        };
        let Phase::Writing(line, done) = &mut c.phase else {
            return;
        };
        let finished = loop {
            let Some(rest) = line.get(*done..).filter(|r| !r.is_empty()) else {
                break true;
            };
            match c.stream.write(rest) {
                Ok(0) => break true,
                Ok(n) => *done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("control socket: the caller did not wait for its answer: {e}");
                    break true;
                }
            }
        };
        if finished || expired {
            if !finished {
                log::debug!(
                    "control socket: pid {} did not take its answer in time: dropped",
                    c.pid
                );
            }
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.clients.get_mut(slot).and_then(Option::take) {
            let _ = self.registry.deregister(&mut c.stream);
        }
        if self.waiting == Some(slot) {
            self.waiting = None;
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.listener {
            let _ = std::fs::remove_file(path);
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
