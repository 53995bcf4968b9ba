//! The daemon's status file (docs/status.md): written on every change ("dirty") and at least
//! every [`status::REFRESH`], riding on a wake the daemon expects anyway when it can.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ipfailover::status::{self, Status, TransitionStatus};
use ipfailover_os::daemon;
use ipfailover_os::status_file::StatusFile;

/// "Something the status shows has changed": shared by the services, so that each can say so.
#[derive(Debug, Clone, Default)]
pub struct Dirty(Rc<Cell<bool>>);

impl Dirty {
    /// The status must be written at the end of this turn.
    pub fn mark(&self) {
        self.0.set(true);
    }

    fn take(&self) -> bool {
        self.0.replace(false)
    }
}

/// The status, and the file it is written to.
#[derive(Debug)]
pub struct StatusBoard {
    value: Status,
    file: StatusFile,
    written: Instant,
    dirty: Dirty,
}

impl StatusBoard {
    pub(crate) fn new(daemon: &str, state_dir: &Path, hostname: &str, dirty: Dirty) -> Self {
        dirty.mark();
        StatusBoard {
            value: Status::new(
                daemon,
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                hostname,
                daemon::wall_ms(),
            ),
            file: StatusFile::new(state_dir, daemon),
            written: ipfailover_os::clock::now(),
            dirty,
        }
    }

    /// The status as last filled in.
    pub fn get(&self) -> &Status {
        &self.value
    }

    /// The status, to change what the driver keeps in it between writes (counters).
    pub fn get_mut(&mut self) -> &mut Status {
        &mut self.value
    }

    /// The status must be written at the end of this turn.
    pub fn mark_dirty(&self) {
        self.dirty.mark();
    }

    /// Records a transition (and writes the status at the end of the turn).
    pub fn push_transition(&mut self, t: TransitionStatus) {
        self.value.push_transition(t);
        self.dirty.mark();
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// When the file must be written again at the latest.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.written + status::REFRESH
    }

    /// Whether to write now: something changed, the daemon is stopping, or the refresh is
    /// due by the wake after this one (`expected`: how soon the daemon wakes anyway).
    pub(crate) fn due(&self, now: Instant, exiting: bool, expected: Option<Duration>) -> bool {
        let dirty = self.dirty.take();
        dirty || exiting || status::refresh_due(now, self.written, expected)
    }

    pub(crate) fn write(&mut self, now: Instant) {
        self.written = now;
        self.dirty.take();
        self.file.write(&self.value);
    }
}
