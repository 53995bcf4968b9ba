//! Files a root daemon may trust: paths that nobody but root or the daemon's user can change,
//! and files created so that no one can slip a link or an old file in their place.
//!
//! The rules (SECURITY.md): a directory the daemon writes in, or runs hooks from, is owned by
//! the daemon's user (or root) and writable by no one else; every directory above it, up to
//! `/`, is owned by root or the daemon's user and writable by no one else, except a sticky
//! directory owned by root (`/tmp`), where others cannot rename or remove what is not theirs.
//! Files the daemon creates are made with `O_CREAT|O_EXCL|O_NOFOLLOW` and renamed into place,
//! so a link planted at the name is never followed.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The sticky bit (`S_ISVTX`).
const STICKY: u32 = 0o1000;

/// Why `meta` (of `path`) may not be trusted by a daemon running as `uid`, if it may not. A
/// directory writable by others is fine only when `sticky_ok` and it is sticky and root's.
fn distrust(path: &Path, meta: &fs::Metadata, uid: u32, sticky_ok: bool) -> Option<String> {
    let owner = meta.uid();
    let mode = meta.mode() & 0o7777;
    if owner != 0 && owner != uid {
        return Some(format!(
            "{} is owned by uid {owner}, not by root or the daemon's uid {uid}",
            path.display()
        ));
    }
    if mode & 0o022 != 0 && !(sticky_ok && meta.is_dir() && mode & STICKY != 0 && owner == 0) {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "group",
            _ => "others",
        };
        return Some(format!(
            "{} is writable by {who} (mode {mode:04o})",
            path.display()
        ));
    }
    None
}

/// Checks that nobody but root or `uid` can change what `path` names: every directory from
/// `/` down to `path`'s parent, after resolving links (so a link's target is what is judged),
/// and `path` itself. Returns the resolved path.
pub fn check_chain(path: &Path, uid: u32) -> Result<PathBuf, String> {
    let real = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prefix = PathBuf::new();
    let parts: Vec<_> = real.components().collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(part);
        let meta = fs::metadata(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        let last = i + 1 == parts.len();
        // Above the file, a sticky root directory is fine; the file (or directory) itself
        // must be nobody else's to write.
        if let Some(why) = distrust(&prefix, &meta, uid, !last) {
            return Err(why);
        }
    }
    Ok(real)
}

/// A directory of the daemon's own (the state directory): made (mode 0755) if missing, then
/// required to be owned by `uid` (or root, when `uid` is root) and writable by no one else,
/// below a chain [`check_chain`] accepts.
pub fn own_dir(path: &Path, uid: u32) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| format!("cannot make {}: {e}", path.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    if meta.uid() != uid {
        return Err(format!(
            "{} is owned by uid {}, not by the daemon's uid {uid}",
            path.display(),
            meta.uid()
        ));
    }
    check_chain(path, uid).map(drop)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, made with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and `mode`, then renamed over `path` (a link planted at `path`
/// is replaced, never followed). A temporary file left by an earlier attempt is removed first.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Ours from an earlier failure, or something planted: either way it goes (unlink
            // removes a link itself, never its target).
            fs::remove_file(&tmp)?;
            open()?
        }
        Err(e) => return Err(e),
    };
    let written = file.write_all(bytes);
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Reads a file the daemon itself wrote (the hooks record), only if it is a regular file (not
/// a link) owned by `uid` with mode 0600: anything else was not written by the daemon and is
/// not trusted. `Ok(None)` when there is none.
pub fn read_own(path: &Path, uid: u32) -> Result<Option<String>, String> {
    use std::io::Read;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o777 != 0o600 {
        return Err(format!(
            "{} is not the daemon's own (a regular file of uid {uid}, mode 0600): ignored",
            path.display()
        ));
    }
    let mut text = String::new();
    file.take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ipfo-safe-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        Dir(d)
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn a_world_writable_directory_is_refused_a_sticky_root_one_above_is_not() {
        let d = scratch("chain");
        let sub = d.0.join("state");
        assert!(own_dir(&sub, me()).is_ok(), "made and owned");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = own_dir(&sub, me()).unwrap_err();
        assert!(e.contains("writable by group and others"), "{e}");
        // A sticky world-writable parent owned by root (as /tmp) is fine above; not as the
        // directory itself.
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o1777)).expect("chmod");
        if me() == 0 {
            assert!(own_dir(&sub, 0).is_ok());
            fs::set_permissions(&sub, fs::Permissions::from_mode(0o1777)).expect("chmod");
            assert!(own_dir(&sub, 0).is_err());
        }
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let d = scratch("link");
        let victim = d.0.join("victim");
        fs::write(&victim, b"precious").expect("victim");
        let target = d.0.join("status.json");
        let tmp = d.0.join(format!(".status.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("plant a link");
        write_atomic(&target, b"{}", 0o644).expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(fs::read(&target).expect("target"), b"{}");
        // A link at the final name is replaced by the rename, not written through.
        fs::remove_file(&target).expect("rm");
        std::os::unix::fs::symlink(&victim, &target).expect("plant a link");
        write_atomic(&target, b"{\"x\":1}", 0o644).expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert!(!fs::symlink_metadata(&target)
            .expect("meta")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn only_the_daemons_own_record_is_trusted() {
        let d = scratch("record");
        let rec = d.0.join("failoverd.hooks");
        assert_eq!(read_own(&rec, me()), Ok(None));
        write_atomic(&rec, b"123 456\n", 0o600).expect("write");
        assert_eq!(read_own(&rec, me()), Ok(Some("123 456\n".into())));
        fs::set_permissions(&rec, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(read_own(&rec, me()).is_err(), "mode 0644 is not ours");
        fs::remove_file(&rec).expect("rm");
        let other = d.0.join("other");
        fs::write(&other, b"1 1\n").expect("other");
        fs::set_permissions(&other, fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&other, &rec).expect("link");
        assert!(read_own(&rec, me()).is_err(), "a link is not ours");
    }
}
