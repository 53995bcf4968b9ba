//! The control socket's server end (docs/failoverctl.md; the protocol is
//! [`ipfailover_os::control`]): `<FAILOVER_STATE_DIR>/failoverd.sock`, mode 0600, one request
//! line and one answer line per connection.

use std::io;
use std::path::Path;
use std::time::Instant;

use ipfailover_os::control::{ControlSocket, Request};
use mio::{Interest, Registry, Token};

/// The listening socket.
pub(crate) const CONTROL: Token = Token(6);

/// The listening socket, once opened.
#[derive(Debug)]
pub struct Control {
    registry: Registry,
    socket: Option<ControlSocket>,
    pending: bool,
}

impl Control {
    pub(crate) fn new(registry: Registry) -> Control {
        Control {
            registry,
            socket: None,
            pending: false,
        }
    }

    /// Binds `<dir>/failoverd.sock` for user `uid`, mode 0600.
    pub fn open(&mut self, dir: &Path, uid: u32) -> io::Result<()> {
        let c = ControlSocket::bind(dir, uid)?;
        let fd = c.fd();
        self.registry
            .register(&mut mio::unix::SourceFd(&fd), CONTROL, Interest::READABLE)?;
        self.socket = Some(c);
        Ok(())
    }

    /// Whether a command waits for its answer.
    pub fn waiting(&self) -> bool {
        self.socket.as_ref().is_some_and(ControlSocket::waiting)
    }

    /// Answers the command that waits, and closes its connection.
    pub fn answer(&mut self, _now: Instant, result: &Result<String, String>) {
        if let Some(c) = self.socket.as_mut() {
            c.answer(result);
        }
    }

    /// The poll said `token` is ready.
    pub(crate) fn readable(&mut self, token: Token) {
        if token == CONTROL {
            self.pending = true;
        }
    }

    /// Whether connections may still be pending: the next turn must not wait.
    pub(crate) fn busy(&self) -> bool {
        false
    }

    /// The earliest client deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// The requests of allowed callers, with each caller's pid; refused callers and bad
    /// requests are answered here.
    pub(crate) fn serve(&mut self, _now: Instant) -> Vec<(Request, i32)> {
        if !std::mem::take(&mut self.pending) {
            return Vec::new();
        }
        match self.socket.as_mut() {
            Some(c) => c.accept(),
            None => Vec::new(),
        }
    }
}
