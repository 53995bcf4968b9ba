//! Writing a status file atomically, so a reader never sees half of one.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ipfailover::status::Status;

/// Keeps one daemon's status file up to date.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    warned: bool,
    /// Whether the directory is known to exist (made at the first write, and again after a
    /// failure).
    dir_made: bool,
}

impl StatusFile {
    /// The file `<dir>/<daemon>.json`; the directory is made if missing.
    pub fn new(dir: &Path, daemon: &str) -> StatusFile {
        StatusFile {
            path: dir.join(format!("{daemon}.json")),
            warned: false,
            dir_made: false,
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the status (temp file + rename). A failure is logged once, not on every write:
    /// status is for people, and must never stop a takeover.
    pub fn write(&mut self, status: &Status) {
        let mut result = self.try_write(status);
        if result.is_err() && self.dir_made {
            // The directory may have gone (a tmpfs cleaned up, removed by hand): make it again
            // and write at once, rather than leave the daemon without a file until later.
            self.dir_made = false;
            result = self.try_write(status);
        }
        match result {
            Ok(()) => {
                self.dir_made = true;
                if self.warned {
                    log::info!("status file {} is written again", self.path.display());
                    self.warned = false;
                }
            }
            Err(e) => {
                self.dir_made = false;
                if !self.warned {
                    log::warn!("cannot write status file {}: {e}", self.path.display());
                    self.warned = true;
                }
            }
        }
    }

    fn try_write(&self, status: &Status) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !self.dir_made {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
        let mut json = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
        json.push(b'\n');
        // Readable by all (failoverctl runs as anyone), never through a planted link.
        crate::safe_fs::write_atomic(&self.path, &json, 0o644)
    }

    /// Removes the file (at a clean exit, the daemon writes a final state instead; this is for
    /// tests and tools).
    pub fn remove(&self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// The largest status file worth reading: the daemons write a few KiB.
pub const MAX_STATUS_FILE: u64 = 1 << 20;

/// Reads a status file for a reader (failoverctl): only a regular file (a FIFO named like one
/// would hang the reader, a link to `/dev/zero` would read until memory runs out), opened
/// without blocking, at most [`MAX_STATUS_FILE`] bytes.
pub fn read_status_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATUS_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATUS_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_STATUS_FILE} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("ipfo-status-{}", std::process::id()));
        let mut f = StatusFile::new(&dir, "failoverd");
        let mut s = Status::new("failoverd", "0.1.0", 1, "h", 5);
        s.state = "acquired".into();
        f.write(&s);
        let back: Status =
            serde_json::from_slice(&fs::read(f.path()).expect("status file")).expect("json");
        assert_eq!(back, s);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_reader_reads_only_regular_files_of_a_bounded_size() {
        let dir = std::env::temp_dir().join(format!("ipfo-status-read-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        // A FIFO: refused at once, not waited on.
        let fifo = dir.join("fifo.json");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .expect("mkfifo");
        let started = std::time::Instant::now();
        assert!(read_status_file(&fifo).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // A link to /dev/zero: refused, not read until memory runs out.
        let zero = dir.join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert!(read_status_file(&zero).is_err());
        // Too large.
        let big = dir.join("big.json");
        fs::write(&big, vec![b' '; (MAX_STATUS_FILE + 1) as usize]).expect("big");
        assert!(read_status_file(&big).is_err());
        let ok = dir.join("ok.json");
        fs::write(&ok, b"{}").expect("ok");
        assert_eq!(read_status_file(&ok).expect("read"), b"{}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_directory_removed_meanwhile_is_made_again() {
        let dir = std::env::temp_dir().join(format!("ipfo-status-gone-{}", std::process::id()));
        let mut f = StatusFile::new(&dir, "heartbeatd");
        let s = Status::new("heartbeatd", "0.1.0", 1, "h", 5);
        f.write(&s);
        fs::remove_dir_all(&dir).expect("remove");
        // The very next write makes it again: no write is lost to a vanished directory.
        f.write(&s);
        assert!(f.path().exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
