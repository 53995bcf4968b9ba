//! One daemon per state directory: an exclusive `flock` on `<FAILOVER_STATE_DIR>/<daemon>.lock`,
//! held for the life of the process (the kernel lets it go when the process ends, however it
//! ends). A second failoverd on the same directory would otherwise kill the first one's hooks
//! (the hooks record) and take its control socket; heartbeatd has a lock of its own, so that
//! the two daemons of a host may share a directory.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: its pid, as it wrote it, if it could be read.
    InUse(Option<u32>),
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// The lock, held until the process ends.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Takes `<dir>/<daemon>.lock` without waiting, and writes our pid in it.
    pub fn take(dir: &Path, daemon: &str) -> Result<StateLock, LockError> {
        let path = dir.join(format!("{daemon}.lock"));
        // Never through a link planted in the directory; readable by all, like the status.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(LockError::Io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                return Err(LockError::InUse(pid));
            }
            Err((_, e)) => return Err(LockError::Io(io::Error::from(e))),
        };
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        if let Err(e) = written {
            // The lock holds all the same; only the pid in a refusal is lost.
            log::debug!("{}: {e}", path.display());
        }
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
