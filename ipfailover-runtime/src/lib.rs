//! The daemons' runtime: one mio loop, written once, that heartbeatd, a pair's failoverd and a
//! group member's failoverd each drive through a [`Driver`].
//!
//! The runtime owns everything that touches the operating system on the loop's behalf, each a
//! service any driver may open: signals (TERM, INT, HUP, CHLD), the UDP sockets ([`Udp`]),
//! the hook runner ([`Hooks`]), mail ([`Mail`]), the status file ([`StatusBoard`]), the
//! addresses moved and the kernel's address events ([`Addresses`]), announcements
//! ([`Announcements`]), the conflict watch ([`Conflicts`]) and the control socket
//! ([`Control`]); and it holds the state directory's lock ([`StateLock`]) for the life of the
//! process. A driver holds only what differs: its pure core, what it makes of a
//! datagram, a command or a finished hook phase, its status fields and its notices.
//!
//! # One turn
//!
//! The loop waits until the earliest deadline (the driver's, the hooks', an announcement's, an
//! address retry's, a control client's, the status refresh) or until something is ready, takes
//! the time once, and then, always in this order:
//!
//! 1. reads the datagrams ([`Driver::handle_datagram`]; at most [`udp::READ_BUDGET`] per
//!    socket, the rest at the next turn, which then does not wait);
//! 2. reads the conflict watch's answers ([`Driver::handle_probe_answer`]);
//! 3. follows the kernel's address events ([`Driver::handle_addresses_missing`]);
//! 4. lets the driver read its own sources ([`Driver::handle_sources`]);
//! 5. serves the control socket ([`Driver::handle_command`]), without blocking: each client
//!    has a deadline of its own ([`control::CLIENT_DEADLINE`]);
//! 6. handles the signals ([`Driver::handle_reload`], [`Driver::handle_stop`]);
//! 7. collects a finished hook phase ([`Driver::handle_hooks_done`]);
//! 8. lets time pass for the driver ([`Driver::handle_tick`]);
//! 9. retries the adds that are due, sends the announcements that are due, and sums up the
//!    lines held back about a flapping condition whose window has ended ([`Repeats`]);
//! 10. writes the status file if something changed, the daemon stops, or the refresh is due
//!     (and tells systemd the state in one line if it changed: [`systemd`]);
//! 11. pings systemd's watchdog if its time has come.
//!
//! `READY=1` goes to systemd after the first turn: the driver has read its configuration,
//! bound its sockets and opened its control socket before the loop starts.
//!
//! Inputs come before the tick: what arrived while the daemon was not running (a stall, a
//! slow turn) counts before a deadline is judged. A core whose deadline must come first (a
//! group member's fencing) checks it on every event itself.

#![forbid(unsafe_code)]

pub mod addresses;
pub mod announce;
pub mod conflict;
pub mod control;
pub mod hooks;
pub mod lock;
pub mod mail;
pub mod repeats;
pub mod status;
pub mod systemd;
pub mod udp;

#[cfg(all(test, target_os = "linux"))]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfailover::receive::Counters;
use ipfailover::status::{AddressHolder, AddressStatus};
use ipfailover_os::control::Request;
use ipfailover_os::daemon::{self, exit};
use ipfailover_os::hooks::PhaseReport;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

pub use addresses::{Addresses, Entry, Missing, Outcome};
pub use announce::{Announcements, RoundId};
pub use conflict::Conflicts;
pub use control::Control;
pub use hooks::Hooks;
pub use lock::StateLock;
pub use mail::Mail;
pub use repeats::Repeats;
pub use status::StatusBoard;
pub use systemd::ServiceManager;
pub use udp::Udp;

/// The signals' token.
const SIGNALS: Token = Token(2);

/// The first token a driver may register its own sources under (the group's etcd waker).
pub const DRIVER_TOKEN: Token = Token(100);

/// Why a daemon could not start, and with which exit code.
#[derive(Debug)]
pub struct StartError {
    /// The process exit code (78 for configuration problems).
    pub code: i32,
    /// What went wrong, for the log.
    pub message: String,
}

impl StartError {
    /// A configuration problem (exit 78).
    pub fn config(message: String) -> StartError {
        StartError {
            code: exit::CONFIG,
            message,
        }
    }

    /// Any other failure (exit 1): `context: error`.
    pub fn other(context: &str, e: io::Error) -> StartError {
        StartError {
            code: exit::FAILURE,
            message: format!("{context}: {e}"),
        }
    }
}

/// What differs between the daemons: the runtime calls these from its loop, in the order
/// the crate's documentation gives, with the turn's time `now`, and the driver acts through
/// the runtime's services.
pub trait Driver {
    /// When the driver needs a turn at the latest: its core's deadline, its own timers.
    fn next_deadline(&self) -> Option<Instant>;

    /// How soon the driver expects to be woken anyway (a heartbeat interval), if it does: the
    /// status refresh rides on the last such wake before it is due.
    fn expected_wake(&self, _now: Instant) -> Option<Duration> {
        None
    }

    /// The datagram counters the status shows (`accepted`, `dropped`).
    fn received(&self) -> Option<&Counters> {
        None
    }

    /// A datagram arrived on a UDP socket.
    fn handle_datagram(
        &mut self,
        _rt: &mut Runtime,
        _now: Instant,
        _data: &[u8],
        _from: SocketAddr,
    ) {
    }

    /// Another host answered a probe for `addr`, or claims it (once per address and MAC per
    /// turn).
    fn handle_probe_answer(
        &mut self,
        _rt: &mut Runtime,
        _now: Instant,
        _addr: IpAddr,
        _mac: [u8; 6],
    ) {
    }

    /// Held addresses vanished from their interfaces (by hand, or a network manager): they
    /// are marked not held, and those the runtime keeps are added again this turn.
    fn handle_addresses_missing(
        &mut self,
        _rt: &mut Runtime,
        _now: Instant,
        _missing: Vec<Missing>,
    ) {
    }

    /// Every turn: the driver reads its own sources (registered under [`DRIVER_TOKEN`] and
    /// up), ready or not: a waker's readiness may be coalesced with others.
    fn handle_sources(&mut self, _rt: &mut Runtime, _now: Instant) {}

    /// The link of the interface of each of these addresses is down (the whole set, each
    /// time it changes; empty when all are up again).
    fn handle_links_down(&mut self, _rt: &mut Runtime, _now: Instant, _down: Vec<IpAddr>) {}

    /// An administrator's command; answered, now or later, with [`Control::answer`].
    fn handle_command(&mut self, rt: &mut Runtime, now: Instant, _request: Request) {
        rt.control
            .answer(now, &Err("this daemon takes no commands".to_string()));
    }

    /// SIGHUP: read the configuration again.
    fn handle_reload(&mut self, rt: &mut Runtime, now: Instant);

    /// SIGTERM or SIGINT; `count` is 1 for the first, 2 for the second...
    fn handle_stop(&mut self, rt: &mut Runtime, now: Instant, signal: i32, count: u32);

    /// The hooks of a phase are done (their results are logged and counted already).
    fn handle_hooks_done(&mut self, _rt: &mut Runtime, _now: Instant, _report: PhaseReport) {}

    /// Every turn, after the inputs: time passed.
    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant);

    /// Before the status file is written: the driver's fields of [`StatusBoard::get_mut`].
    /// The runtime fills the rest: time stamp, datagram counters (from
    /// [`Driver::received`]), hook and mail counters, and the addresses.
    fn fill_status(&mut self, rt: &mut Runtime, now: Instant);

    /// Who answers for one of the addresses the runtime keeps, as the status file shows it
    /// (`here`, `peer`, `nobody`...), if the driver can tell.
    fn address_holder(&self, _addr: IpAddr, _now: Instant) -> Option<AddressHolder> {
        None
    }

    /// At exit, once the hooks are stopped and before mail gets its grace.
    fn finish(&mut self, _rt: &mut Runtime) {}
}

/// The loop and its services. (No Debug for the signal handle; the services have theirs.)
pub struct Runtime {
    daemon: &'static str,
    state_dir: PathBuf,
    hostname: String,
    poll: Poll,
    signals: Signals,
    stop_signals: u32,
    exit: bool,
    /// The longest turn so far (from the end of the wait to the end of the turn).
    worst_turn: Duration,
    /// The UDP sockets.
    pub udp: Udp,
    /// The hook runner.
    pub hooks: Hooks,
    /// Mail to the administrator.
    pub mail: Mail,
    /// The status file.
    pub status: StatusBoard,
    /// The addresses moved, and the kernel's address events.
    pub addresses: Addresses,
    /// Announcements under way.
    pub announcements: Announcements,
    /// Who else answers for our addresses.
    pub conflicts: Conflicts,
    /// The administrator's channel.
    pub control: Control,
    /// Lines about a flapping condition, held back beyond a few a minute.
    pub repeats: Repeats,
    /// systemd: readiness, status line, watchdog.
    service: ServiceManager,
    /// One daemon of this kind per state directory, for the life of the process.
    _lock: StateLock,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("daemon", &self.daemon)
            .field("state_dir", &self.state_dir)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The loop for `daemon` (`heartbeatd`, `failoverd`: its status file's and lock file's
    /// name) with its state directory, which must be the daemon's own (made if missing) and
    /// used by no other daemon of its kind (exit 75 if it is), and its signals. Every other
    /// service starts closed; the driver opens those it needs.
    pub fn start(daemon: &'static str, state_dir: &Path) -> Result<Runtime, StartError> {
        // The state directory holds the hooks record, which a root daemon acts on at start:
        // nobody else may be able to write there.
        ipfailover_os::safe_fs::own_dir(state_dir, daemon::euid())
            .map_err(|e| StartError::config(format!("FAILOVER_STATE_DIR: {e}")))?;
        // Before anything acts on the directory (the hooks record, the control socket).
        let lock = StateLock::take(state_dir, daemon).map_err(|e| match e {
            lock::LockError::InUse(pid) => StartError {
                code: exit::IN_USE,
                message: format!(
                    "FAILOVER_STATE_DIR {} is in use by another {daemon} ({}): one {daemon} per \
                     state directory; stop that one first, or give this one a directory of its \
                     own",
                    state_dir.display(),
                    pid.map_or_else(
                        || "its pid could not be read".to_string(),
                        |p| format!("pid {p}")
                    )
                ),
            },
            lock::LockError::Io(e) => StartError::other(
                &format!(
                    "FAILOVER_STATE_DIR: {}",
                    state_dir.join(format!("{daemon}.lock")).display()
                ),
                e,
            ),
        })?;
        let poll_err = |e| StartError::other("poll", e);
        let poll = Poll::new().map_err(poll_err)?;
        let registry = || poll.registry().try_clone().map_err(poll_err);
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
            .map_err(|e| StartError::other("signals", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(poll_err)?;
        let hostname = daemon::hostname();
        let dirty = status::Dirty::default();
        Ok(Runtime {
            udp: Udp::new(registry()?),
            hooks: Hooks::new(registry()?, dirty.clone()),
            mail: Mail::new(hostname.clone()),
            status: StatusBoard::new(daemon, state_dir, &hostname, dirty.clone()),
            addresses: Addresses::new(registry()?, dirty),
            announcements: Announcements::default(),
            conflicts: Conflicts::new(registry()?),
            control: Control::new(registry()?),
            repeats: Repeats::default(),
            daemon,
            state_dir: state_dir.to_path_buf(),
            hostname,
            poll,
            signals,
            stop_signals: 0,
            exit: false,
            worst_turn: Duration::ZERO,
            service: ServiceManager::from_env(ipfailover_os::clock::now()),
            _lock: lock,
        })
    }

    /// This host's name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The registry to register the driver's own sources with (under [`DRIVER_TOKEN`] and up).
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Stops the loop at the end of this turn (the status is written, hooks stopped, mail
    /// given its grace).
    pub fn exit(&mut self) {
        self.exit = true;
    }

    /// Whether the loop stops at the end of this turn.
    pub fn exiting(&self) -> bool {
        self.exit
    }

    /// The longest turn of the loop so far: how long anything may have waited beyond its
    /// time (the status file's `worst_turn_ms`).
    pub fn worst_turn(&self) -> Duration {
        self.worst_turn
    }

    /// Starts announcement round `id` (see [`Announcements::start`]) and sends its first steps
    /// now.
    pub fn announce(
        &mut self,
        id: RoundId,
        now: Instant,
        targets: Vec<(String, IpAddr)>,
        mac: Option<[u8; 6]>,
    ) {
        self.announcements.start(id, now, targets, mac);
        self.announcements.run_due(now, &self.addresses);
    }

    /// Runs the loop until a driver calls [`Runtime::exit`]. The first turn does not wait.
    pub fn run<D: Driver>(&mut self, driver: &mut D) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 2048];
        let mut first = true;
        loop {
            if !first {
                let before = ipfailover_os::clock::now();
                let timeout = if self.udp.unread() || self.control.busy() {
                    Duration::ZERO
                } else {
                    self.next_wake(driver).saturating_duration_since(before)
                };
                if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
            let now = ipfailover_os::clock::now();
            let mut signalled = false;
            for ev in events.iter() {
                match ev.token() {
                    t @ (udp::SOCKET4 | udp::SOCKET6) => self.udp.readable(t),
                    SIGNALS => signalled = true,
                    hooks::HOOK_OUTPUT => self.hooks.wake(),
                    conflict::CONFLICT => self.conflicts.readable(),
                    addresses::ADDRESS_EVENTS => self.addresses.readable(),
                    t => self.control.readable(t),
                }
            }
            events.clear();
            self.turn(driver, now, signalled, &mut buf);
            if first {
                first = false;
                self.service.ready();
            }
            self.service.turned(now);
            let took = now.elapsed();
            if took > self.worst_turn {
                self.worst_turn = took;
                log::debug!("the longest loop turn so far: {} ms", millis(took));
            }
            if self.exit {
                self.hooks.shutdown();
                driver.finish(self);
                self.mail.shutdown();
                log::info!("{} stopped", self.daemon);
                return Ok(());
            }
        }
    }

    /// The earliest deadline of the driver and of every service.
    fn next_wake<D: Driver>(&self, driver: &D) -> Instant {
        [
            driver.next_deadline(),
            self.hooks.next_deadline(),
            self.announcements.next_deadline(),
            self.addresses.next_deadline(),
            self.control.next_deadline(),
            self.service.next_deadline(),
            self.repeats.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(self.status.next_deadline(), Instant::min)
    }

    /// One turn, in the order the crate's documentation gives.
    fn turn<D: Driver>(&mut self, driver: &mut D, now: Instant, signalled: bool, buf: &mut [u8]) {
        self.udp.begin_turn();
        while let Some((n, from)) = self.udp.recv(buf) {
            driver.handle_datagram(self, now, buf.get(..n).unwrap_or(&[]), from);
        }
        for (addr, mac) in self.conflicts.read() {
            driver.handle_probe_answer(self, now, addr, mac);
        }
        let changed = self.addresses.take_events();
        if let Some(down) = self.addresses.check_links(now, changed) {
            driver.handle_links_down(self, now, down);
        }
        let missing = self.addresses.check_missing(now, changed);
        if !missing.is_empty() {
            driver.handle_addresses_missing(self, now, missing);
        }
        driver.handle_sources(self, now);
        for (request, pid) in self.control.serve(now) {
            log::info!("control: {request:?} from pid {pid}");
            driver.handle_command(self, now, request);
        }
        if signalled {
            self.handle_signals(driver, now);
        }
        for report in self.hooks.poll(now) {
            driver.handle_hooks_done(self, now, report);
        }
        driver.handle_tick(self, now);
        for addr in self.addresses.retry_due(now) {
            if let Some(e) = self.addresses.get(addr) {
                let target = vec![(e.pair().iface.clone(), addr)];
                self.announcements
                    .start(RoundId::Address(addr), now, target, None);
            }
        }
        self.announcements.run_due(now, &self.addresses);
        for summary in self.repeats.due(now) {
            self.sum_up(&summary);
        }
        if self.status.due(now, self.exit, driver.expected_wake(now)) {
            self.write_status(driver, now);
        }
    }

    /// Lines held back about a flapping condition: one line and one notice for them all.
    fn sum_up(&mut self, summary: &repeats::Summary) {
        let text = summary.text();
        let total = summary.total.to_string();
        ipfailover_os::event!(
            log::Level::Warn,
            ipfailover_os::journal::Event::Repeated,
            ipfailover_os::journal::Fields {
                repeated: Some(&total),
                ..Default::default()
            },
            "{text}"
        );
        let subject = format!(
            "[ipfailover] {}: {}: {} more events in the last {} s",
            self.hostname,
            summary.key,
            summary.total,
            repeats::WINDOW.as_secs()
        );
        self.mail.send_routine(subject, format!("{text}\n"));
    }

    fn handle_signals<D: Driver>(&mut self, driver: &mut D, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            match sig {
                SIGCHLD => self.hooks.wake(),
                SIGHUP => {
                    self.service.reloading();
                    driver.handle_reload(self, now);
                    self.service.reloaded();
                }
                SIGTERM | SIGINT => {
                    self.stop_signals += 1;
                    if self.stop_signals == 1 {
                        self.service.stopping();
                    }
                    driver.handle_stop(self, now, sig, self.stop_signals);
                }
                _ => {}
            }
        }
    }

    fn write_status<D: Driver>(&mut self, driver: &mut D, now: Instant) {
        let none = Counters::default();
        let wall = daemon::wall_ms();
        self.status
            .get_mut()
            .stamp(wall, driver.received().unwrap_or(&none));
        // Monotonic instants as wall-clock times, as of this write.
        let wall_of = |at: Instant| wall.saturating_sub(millis(now.saturating_duration_since(at)));
        driver.fill_status(self, now);
        let addresses = self
            .addresses
            .entries()
            .iter()
            .map(|e| AddressStatus {
                interface: e.pair().iface.clone(),
                address: e.pair().addr.to_string(),
                prefix: e.pair().prefix,
                held: e.held(),
                holder: driver.address_holder(e.pair().addr, now),
                error: e.error().map(ToString::to_string),
                announced_ms: self.announcements.last_of(e.pair().addr).map(wall_of),
            })
            .collect();
        let last_announcement = self.announcements.last().map(wall_of);
        let (runs, failed) = self.hooks.counts();
        let mail = self.mail.stats();
        let worst = millis(self.worst_turn);
        let s = self.status.get_mut();
        s.worst_turn_ms = worst;
        s.addresses = addresses;
        s.last_announcement_ms = last_announcement;
        s.counters.hooks_run = runs;
        s.counters.hooks_failed = failed;
        if let Some(ms) = mail {
            s.counters.mails_sent = ms.sent;
            s.counters.mails_failed = ms.failed_attempts;
            s.counters.mails_dropped = ms.dropped;
        }
        self.status.write(now);
        let line = self.status.get().summary();
        self.service.status(line);
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
