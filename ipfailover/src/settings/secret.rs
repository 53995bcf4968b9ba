//! The shared key that authenticates heartbeats.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Shorter keys are guessable; 16 bytes is the least that HMAC-SHA256 can be trusted with.
const MIN_KEY_LEN: usize = 16;
/// A key is one short line; anything far larger is the wrong file.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Reads the shared secret's current key (see [`load_secrets`]).
pub fn load_secret(path: &Path, daemon_uid: u32) -> Result<Vec<u8>, String> {
    load_secrets(path, daemon_uid).map(|(current, _)| current)
}

/// Reads the shared secret: the current key on the first line, and, during a rotation, the
/// old key on the second (docs/configuration.md: the first signs, both verify). Refuses files
/// others could read or change, files owned by another user than root or `daemon_uid` (that
/// user could read the key, forge a goodbye, rotate the key), more than two keys, and keys too
/// short to be safe; the newline that ends a line, as editors leave it, is not part of a key.
pub fn load_secrets(path: &Path, daemon_uid: u32) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let shown = path.display();
    // Looked at before opening, because opening a FIFO would block; and again after, so
    // that what is checked is what is read.
    let before = std::fs::metadata(path)
        .map_err(|e| format!("Cannot open the secret file {shown}: {e}."))?;
    if !before.is_file() {
        return Err(format!("The secret file {shown} is not a regular file."));
    }
    let file =
        File::open(path).map_err(|e| format!("Cannot open the secret file {shown}: {e}."))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("Cannot inspect the secret file {shown}: {e}."))?;
    if !meta.is_file() {
        return Err(format!("The secret file {shown} is not a regular file."));
    }
    let owner = meta.uid();
    if owner != 0 && owner != daemon_uid {
        return Err(format!(
            "The secret file {shown} is owned by uid {owner}, not by root or the daemon's uid \
             {daemon_uid}; its owner could read the key and forge heartbeats: run chown \
             {daemon_uid} {shown}."
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "The secret file {shown} is accessible to group or others (mode {mode:04o}); \
             anyone who can read it can forge heartbeats: run chmod 600 {shown}."
        ));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(format!(
            "The secret file {shown} is {} bytes long; a key is one line of at most {MAX_FILE_LEN} bytes.",
            meta.len()
        ));
    }
    let mut key = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut key)
        .map_err(|e| format!("Cannot read the secret file {shown}: {e}."))?;
    if key.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "The secret file {shown} grew past {MAX_FILE_LEN} bytes while being read."
        ));
    }
    let mut lines = key
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect::<Vec<_>>();
    // A file that ends with a newline has an empty last piece: that is the editor's, not a key.
    while lines.last().is_some_and(|l| l.is_empty()) && lines.len() > 1 {
        lines.pop();
    }
    if lines.len() > 2 {
        return Err(format!(
            "The secret file {shown} has {} lines; it holds one key, or two during a rotation \
             (the new key first, the old one second).",
            lines.len()
        ));
    }
    let mut keys = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.len() < MIN_KEY_LEN {
            let which = match (i, lines.len()) {
                (0, 1) => "The key",
                (0, _) => "The new key (line 1)",
                _ => "The old key (line 2)",
            };
            return Err(format!(
                "{which} in {shown} is {} bytes long; it must be at least {MIN_KEY_LEN} bytes \
                 (for example the output of `openssl rand -hex 32`).",
                line.len()
            ));
        }
        keys.push(line.to_vec());
    }
    let mut keys = keys.into_iter();
    let current = keys.next().unwrap_or_default();
    Ok((current, keys.next()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// The owner the tests' files get: whoever runs them.
    const UID: u32 = 0;

    /// A file of its own in the temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8], mode: u32) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "ipfailover-secret-test-{}-{name}",
                std::process::id()
            ));
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    #[test]
    fn mode_0600_accepted_and_newline_stripped() {
        let f = TempFile::new("ok", b"0123456789abcdef\n", 0o600);
        assert_eq!(load_secret(&f.0, UID), Ok(b"0123456789abcdef".to_vec()));
        let f = TempFile::new("crlf", b"0123456789abcdef\r\n", 0o600);
        assert_eq!(load_secret(&f.0, UID), Ok(b"0123456789abcdef".to_vec()));
        let f = TempFile::new("bare", b"0123456789abcdefXYZ", 0o400);
        assert_eq!(load_secret(&f.0, UID), Ok(b"0123456789abcdefXYZ".to_vec()));
        // Empty lines at the end are the editor's.
        let f = TempFile::new("two", b"0123456789abcdef\n\n", 0o600);
        assert_eq!(load_secret(&f.0, UID), Ok(b"0123456789abcdef".to_vec()));
    }

    #[test]
    fn a_second_line_is_the_old_key_of_a_rotation() {
        let f = TempFile::new("rot", b"new-key-0123456789\nold-key-0123456789\n", 0o600);
        assert_eq!(
            load_secrets(&f.0, UID),
            Ok((
                b"new-key-0123456789".to_vec(),
                Some(b"old-key-0123456789".to_vec())
            ))
        );
        assert_eq!(load_secret(&f.0, UID), Ok(b"new-key-0123456789".to_vec()));
        let f = TempFile::new("one", b"new-key-0123456789\n", 0o600);
        assert_eq!(
            load_secrets(&f.0, UID),
            Ok((b"new-key-0123456789".to_vec(), None))
        );
        let f = TempFile::new(
            "three",
            b"0123456789abcdef\n0123456789abcdef\nx123456789abcdef\n",
            0o600,
        );
        assert!(load_secrets(&f.0, UID).unwrap_err().contains("3 lines"));
        let f = TempFile::new("shortold", b"0123456789abcdef\nshort\n", 0o600);
        let e = load_secrets(&f.0, UID).unwrap_err();
        assert!(e.starts_with("The old key (line 2)"), "{e}");
    }

    #[test]
    fn group_or_other_access_refused() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            let f = TempFile::new(&format!("mode{mode:o}"), b"0123456789abcdef", mode);
            let e = load_secret(&f.0, UID).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains(&f.0.display().to_string()), "{e}");
        }
    }

    #[test]
    fn a_file_of_another_user_is_refused_even_with_mode_0600() {
        let f = TempFile::new("owner", b"0123456789abcdef", 0o600);
        let me = fs::metadata(&f.0).unwrap().uid();
        // As root or as its owner: accepted.
        assert!(load_secret(&f.0, me).is_ok());
        if me != 0 {
            return; // Only root can give a file away; the tests run as root in CI.
        }
        std::os::unix::fs::chown(&f.0, Some(65534), None).unwrap();
        let e = load_secret(&f.0, 0).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
        // A daemon running as uid 1000 accepts neither 65534's file nor would it accept 1000's
        // file owned by 65534; root-owned is accepted for any daemon user.
        assert!(load_secret(&f.0, 1000).is_err());
        std::os::unix::fs::chown(&f.0, Some(0), None).unwrap();
        assert!(load_secret(&f.0, 1000).is_ok());
    }

    #[test]
    fn short_key_refused() {
        let f = TempFile::new("short", b"0123456789abcde\n", 0o600);
        let e = load_secret(&f.0, UID).unwrap_err();
        assert!(e.contains("15 bytes"), "{e}");
        let f = TempFile::new("empty", b"", 0o600);
        assert!(load_secret(&f.0, UID).is_err());
    }

    #[test]
    fn missing_file_and_directory_refused() {
        let e = load_secret(Path::new("/nonexistent/ipfailover/secret"), UID).unwrap_err();
        assert!(
            e.starts_with("Cannot open the secret file /nonexistent/ipfailover/secret"),
            "{e}"
        );
        let e = load_secret(&std::env::temp_dir(), UID).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
