//! Reading the configuration file and the shared secret: the files are opened and checked
//! here, and their bytes handed to the core, which parses them ([`Settings::from_file_contents`],
//! [`ipfailover::settings::parse_secrets`]).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ipfailover::settings::{
    check_secret_file, parse_secrets, ConfigError, ConfigErrors, Role, Settings,
    MAX_SECRET_FILE_LEN,
};

/// Reads a configuration file, as TOML when its name ends in `.toml` and as hostconfig
/// otherwise, with a warning if group or others may write it.
pub fn load_settings(path: &Path, role: Role) -> Result<Settings, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let mut settings = Settings::from_file_contents(bytes, path, role)?;
    if let Ok(meta) = std::fs::metadata(path) {
        settings.warn_if_writable(meta.permissions().mode());
    }
    Ok(settings)
}

/// Reads the shared secret's current key (see [`load_secrets`]).
pub fn load_secret(path: &Path, daemon_uid: u32) -> Result<Vec<u8>, String> {
    load_secrets(path, daemon_uid).map(|(current, _)| current)
}

/// Reads the shared secret: the current key, and during a rotation the old one
/// (docs/configuration.md, `FAILOVER_SECRET_FILE`). Refuses what is not a regular file, and
/// what [`check_secret_file`] and [`parse_secrets`] refuse.
pub fn load_secrets(path: &Path, daemon_uid: u32) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let shown = path.display().to_string();
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
    check_secret_file(
        meta.uid(),
        meta.permissions().mode(),
        meta.len(),
        daemon_uid,
        &shown,
    )?;
    let mut contents = Vec::new();
    file.take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut contents)
        .map_err(|e| format!("Cannot read the secret file {shown}: {e}."))?;
    if contents.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(format!(
            "The secret file {shown} grew past {MAX_SECRET_FILE_LEN} bytes while being read."
        ));
    }
    parse_secrets(&contents, &shown)
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
                "ipfailover-config-test-{}-{name}",
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
    fn settings_are_read_in_the_format_of_the_suffix() {
        let toml = TempFile::new("a.toml", b"port = 1700\n", 0o644);
        let s = load_settings(&toml.0, Role::Ctl).unwrap();
        assert_eq!(s.port, 1700);
        assert_eq!(s.source, toml.0);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // The same text is not a hostconfig line.
        let hostconfig = TempFile::new("hostconfig", b"port = 1700\n", 0o644);
        let e = load_settings(&hostconfig.0, Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].file, hostconfig.0);
        assert_eq!(e.0[0].line, Some(1));
        let hostconfig = TempFile::new("hostconfig2", b"FAILOVER_PORT=1701\n", 0o644);
        assert_eq!(load_settings(&hostconfig.0, Role::Ctl).unwrap().port, 1701);
    }

    #[test]
    fn unreadable_settings_are_one_error() {
        let missing = std::env::temp_dir().join(format!(
            "ipfailover-config-test-{}-missing",
            std::process::id()
        ));
        let e = load_settings(&missing, Role::Ctl).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, None);
        assert!(e.0[0].message.starts_with("cannot read: "), "{e}");
        let binary = TempFile::new("binary", b"FAILOVER_PORT=1\n\xff\xfe\n", 0o644);
        let e = load_settings(&binary.0, Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].line, Some(2));
        assert_eq!(e.0[0].message, "not valid UTF-8");
    }

    #[test]
    fn settings_others_can_write_are_warned_about() {
        let f = TempFile::new("writable", b"FAILOVER_PORT=1\n", 0o666);
        let s = load_settings(&f.0, Role::Ctl).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("writable by group or others (mode 0666)"));
    }

    #[test]
    fn a_secret_of_mode_0600_is_read_without_its_newline() {
        let f = TempFile::new("ok", b"0123456789abcdef\n", 0o600);
        assert_eq!(load_secret(&f.0, UID), Ok(b"0123456789abcdef".to_vec()));
        let f = TempFile::new("rot", b"new-key-0123456789\nold-key-0123456789\n", 0o600);
        assert_eq!(
            load_secrets(&f.0, UID),
            Ok((
                b"new-key-0123456789".to_vec(),
                Some(b"old-key-0123456789".to_vec())
            ))
        );
        let f = TempFile::new("short", b"0123456789abcde\n", 0o600);
        assert!(load_secret(&f.0, UID).unwrap_err().contains("15 bytes"));
    }

    #[test]
    fn a_secret_others_can_read_is_refused() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            let f = TempFile::new(&format!("mode{mode:o}"), b"0123456789abcdef", mode);
            let e = load_secret(&f.0, UID).unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains(&f.0.display().to_string()), "{e}");
        }
    }

    #[test]
    fn a_secret_of_another_user_is_refused_even_with_mode_0600() {
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
    fn a_missing_secret_or_a_directory_is_refused() {
        let e = load_secret(Path::new("/nonexistent/ipfailover/secret"), UID).unwrap_err();
        assert!(
            e.starts_with("Cannot open the secret file /nonexistent/ipfailover/secret"),
            "{e}"
        );
        let e = load_secret(&std::env::temp_dir(), UID).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
