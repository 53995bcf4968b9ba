//! The daemons' UDP sockets, one per address family: failoverd's listeners on its port,
//! heartbeatd's senders on an ephemeral one. Reading is bounded per socket and per turn, so a
//! flood of datagrams never holds up a deadline; what is left is read at the next turn, which
//! then does not wait.

use std::io;
use std::net::SocketAddr;

use ipfailover_os::udp::{self, Outgoing};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::StartError;

/// The IPv4 socket's token.
pub(crate) const SOCKET4: Token = Token(0);
/// The IPv6 socket's token.
pub(crate) const SOCKET6: Token = Token(1);

/// Datagrams read per socket per loop turn: under a flood, deadlines are still honoured.
pub const READ_BUDGET: usize = 256;

/// The sockets, if the daemon opened any.
#[derive(Debug)]
pub struct Udp {
    registry: Registry,
    sockets: [Option<UdpSocket>; 2],
    /// Sockets that may still hold datagrams (mio is edge-triggered).
    unread: [bool; 2],
    /// What each socket may still be read this turn.
    budget: [usize; 2],
}

impl Udp {
    pub(crate) fn new(registry: Registry) -> Udp {
        Udp {
            registry,
            sockets: [None, None],
            unread: [false; 2],
            budget: [READ_BUDGET; 2],
        }
    }

    /// Listens on `port` (failoverd): IPv4, and IPv6 too where the host has it.
    pub fn listen(&mut self, port: u16) -> Result<(), StartError> {
        let s4 = udp::bind_listener(false, port)
            .map_err(|e| StartError::other(&format!("binding UDP port {port}"), e))?;
        self.add(0, s4)?;
        match udp::bind_listener(true, port) {
            Ok(s6) => self.add(1, s6)?,
            Err(e) => log::debug!("no IPv6 listener: {e}"),
        }
        Ok(())
    }

    /// Sends from an ephemeral port (heartbeatd), IPv6 too when `v6`; answers come back to it.
    pub fn open_sender(&mut self, v6: bool) -> Result<(), StartError> {
        let s4 = udp::bind_sender(false).map_err(|e| StartError::other("UDP socket", e))?;
        self.add(0, s4)?;
        if v6 {
            let s6 =
                udp::bind_sender(true).map_err(|e| StartError::other("UDP socket (IPv6)", e))?;
            self.add(1, s6)?;
        }
        Ok(())
    }

    fn add(&mut self, family: usize, mut socket: UdpSocket) -> Result<(), StartError> {
        let token = if family == 0 { SOCKET4 } else { SOCKET6 };
        self.registry
            .register(&mut socket, token, Interest::READABLE)
            .map_err(|e| StartError::other("poll", e))?;
        if let Some(slot) = self.sockets.get_mut(family) {
            *slot = Some(socket);
        }
        Ok(())
    }

    /// Whether an IPv6 socket is open.
    pub fn has_v6(&self) -> bool {
        self.sockets[1].is_some()
    }

    /// The socket for `to`: IPv6 destinations go to the IPv6 socket when there is one, else to
    /// the IPv4 one (which refuses them, and the caller says so).
    fn socket_for(&self, v6: bool) -> io::Result<&UdpSocket> {
        let s = if v6 {
            self.sockets[1].as_ref().or(self.sockets[0].as_ref())
        } else {
            self.sockets[0].as_ref()
        };
        s.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no UDP socket is open"))
    }

    /// Sends one datagram; a full send queue counts as a loss, not an error.
    pub fn send_to(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        udp::send_to(self.socket_for(to.is_ipv6())?, bytes, to)
    }

    /// Sends `out4` on the IPv4 socket and `out6` on the IPv6 one, as few system calls as
    /// the platform allows; each datagram records what it met.
    pub fn send_batch(&self, out4: &mut [Outgoing], out6: &mut [Outgoing]) {
        for (batch, v6) in [(out4, false), (out6, true)] {
            if batch.is_empty() {
                continue;
            }
            match self.socket_for(v6) {
                Ok(s) => udp::send_batch(s, batch),
                Err(e) => {
                    for out in batch.iter_mut() {
                        out.error = Some(io::Error::new(e.kind(), e.to_string()));
                    }
                }
            }
        }
    }

    /// The poll said `token` is readable.
    pub(crate) fn readable(&mut self, token: Token) {
        if token == SOCKET4 {
            self.unread[0] = true;
        } else if token == SOCKET6 {
            self.unread[1] = true;
        }
    }

    /// Whether a socket may still hold datagrams: the next turn must not wait.
    pub(crate) fn unread(&self) -> bool {
        self.unread.iter().any(|u| *u)
    }

    /// A new turn: each socket may be read [`READ_BUDGET`] times again.
    pub(crate) fn begin_turn(&mut self) {
        self.budget = [READ_BUDGET; 2];
    }

    /// The next datagram of this turn into `buf`: its length and sender; `None` once every
    /// socket is drained or has used its budget.
    pub(crate) fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        for i in 0..2 {
            while self.unread[i] {
                if self.budget[i] == 0 {
                    break; // still unread: the next turn polls with a zero timeout
                }
                self.budget[i] -= 1;
                let Some(socket) = self.sockets[i].as_ref() else {
                    self.unread[i] = false;
                    break;
                };
                match socket.recv_from(buf) {
                    Ok(got) => return Some(got),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.unread[i] = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("receiving: {e}");
                        self.unread[i] = false;
                    }
                }
            }
        }
        None
    }
}
