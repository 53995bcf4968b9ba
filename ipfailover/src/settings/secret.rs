//! The shared key that authenticates heartbeats: what a secret file may be, and the keys in
//! it. Reading the file is `ipfailover-os`'s (`config::load_secrets`), which hands the file's
//! owner, mode and bytes to the functions here.

/// Shorter keys are guessable; 16 bytes is the least that HMAC-SHA256 can be trusted with.
const MIN_KEY_LEN: usize = 16;
/// A key is one short line; anything far larger is the wrong file.
pub const MAX_SECRET_FILE_LEN: u64 = 64 * 1024;

/// Whether a secret file of this owner, mode and length may be read by a daemon running as
/// `daemon_uid`: not accessible to group or others, owned by root or `daemon_uid` (another
/// owner could read the key, forge a goodbye, rotate the key), and at most
/// [`MAX_SECRET_FILE_LEN`] bytes. `shown` names the file in the refusal.
pub fn check_secret_file(
    owner: u32,
    mode: u32,
    len: u64,
    daemon_uid: u32,
    shown: &str,
) -> Result<(), String> {
    if owner != 0 && owner != daemon_uid {
        return Err(format!(
            "The secret file {shown} is owned by uid {owner}, not by root or the daemon's uid \
             {daemon_uid}; its owner could read the key and forge heartbeats: run chown \
             {daemon_uid} {shown}."
        ));
    }
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "The secret file {shown} is accessible to group or others (mode {mode:04o}); \
             anyone who can read it can forge heartbeats: run chmod 600 {shown}."
        ));
    }
    if len > MAX_SECRET_FILE_LEN {
        return Err(format!(
            "The secret file {shown} is {len} bytes long; a key is one line of at most {MAX_SECRET_FILE_LEN} bytes."
        ));
    }
    Ok(())
}

/// The keys in a secret file's bytes: the current key on the first line, and, during a
/// rotation, the old key on the second (docs/configuration.md: the first signs, both
/// verify). Refuses more than two keys and keys too short to be safe; the newline that ends a
/// line, as editors leave it, is not part of a key. `shown` names the file in the refusal.
pub fn parse_secrets(contents: &[u8], shown: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let mut lines = contents
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

    const SHOWN: &str = "/etc/ipfailover/secret";

    fn key(contents: &[u8]) -> Result<Vec<u8>, String> {
        parse_secrets(contents, SHOWN).map(|(current, _)| current)
    }

    #[test]
    fn newlines_are_the_editors() {
        assert_eq!(key(b"0123456789abcdef\n"), Ok(b"0123456789abcdef".to_vec()));
        assert_eq!(
            key(b"0123456789abcdef\r\n"),
            Ok(b"0123456789abcdef".to_vec())
        );
        assert_eq!(
            key(b"0123456789abcdefXYZ"),
            Ok(b"0123456789abcdefXYZ".to_vec())
        );
        // Empty lines at the end are the editor's.
        assert_eq!(
            key(b"0123456789abcdef\n\n"),
            Ok(b"0123456789abcdef".to_vec())
        );
    }

    #[test]
    fn a_second_line_is_the_old_key_of_a_rotation() {
        assert_eq!(
            parse_secrets(b"new-key-0123456789\nold-key-0123456789\n", SHOWN),
            Ok((
                b"new-key-0123456789".to_vec(),
                Some(b"old-key-0123456789".to_vec())
            ))
        );
        assert_eq!(
            parse_secrets(b"new-key-0123456789\n", SHOWN),
            Ok((b"new-key-0123456789".to_vec(), None))
        );
        let three = b"0123456789abcdef\n0123456789abcdef\nx123456789abcdef\n";
        assert!(parse_secrets(three, SHOWN).unwrap_err().contains("3 lines"));
        let e = parse_secrets(b"0123456789abcdef\nshort\n", SHOWN).unwrap_err();
        assert!(e.starts_with("The old key (line 2)"), "{e}");
    }

    #[test]
    fn short_keys_are_refused() {
        let e = key(b"0123456789abcde\n").unwrap_err();
        assert!(e.contains("15 bytes"), "{e}");
        assert!(e.starts_with("The key in /etc/ipfailover/secret"), "{e}");
        assert!(key(b"").is_err());
    }

    #[test]
    fn group_or_other_access_and_other_owners_are_refused() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            let e = check_secret_file(0, mode, 17, 0, SHOWN).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains(SHOWN), "{e}");
        }
        assert_eq!(check_secret_file(0, 0o100600, 17, 0, SHOWN), Ok(()));
        assert_eq!(check_secret_file(0, 0o400, 17, 1000, SHOWN), Ok(()));
        assert_eq!(check_secret_file(1000, 0o600, 17, 1000, SHOWN), Ok(()));
        let e = check_secret_file(65534, 0o600, 17, 0, SHOWN).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
        assert!(check_secret_file(65534, 0o600, 17, 1000, SHOWN).is_err());
        let e = check_secret_file(0, 0o600, MAX_SECRET_FILE_LEN + 1, 0, SHOWN).unwrap_err();
        assert!(e.contains("a key is one line"), "{e}");
    }
}
