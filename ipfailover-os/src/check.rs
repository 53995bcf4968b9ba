//! The one configuration check: what `heartbeatd -t`, `failoverd -t`, `failoverctl
//! check-config` and `failoverctl init` accept and refuse, with the same words.
//!
//! Beyond parsing (every key, for each daemon that reads the file), it reads the files the
//! settings name, as the daemons will at start: the heartbeat secret, and for a group member the
//! etcd password file and the TLS files; and it builds failoverd's mail settings (transport,
//! sender, recipients). Every problem is a [`ConfigError`] naming the configuration file and the
//! key, so that one run shows them all. What needs the network (whether etcd answers) is left
//! to `failoverd -t`: a check of files must not depend on another host.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ipfailover::settings::{ConfigError, ConfigErrors, Role, Settings};

use crate::config::{load_secret, load_settings};

use crate::daemon;

/// A configuration that passed: its settings and the comment lines that `-t` prints after them.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The settings, as the first of the roles reads them.
    pub settings: Settings,
    /// Comment lines (`# mail from ...`): what the daemons will make of the settings.
    pub notes: Vec<String>,
}

/// Checks the file at `path` for each of `roles` (failoverctl's rules, which require nothing,
/// when there is none).
pub fn check_file(path: &Path, roles: &[Role]) -> Result<Checked, ConfigErrors> {
    let loads = roles_or_ctl(roles)
        .iter()
        .map(|r| load_settings(path, *r))
        .collect();
    finish(path, roles, loads)
}

/// Checks configuration text that is not written yet (`failoverctl init`); `path` is where it
/// will be, which names it in messages and chooses the format (TOML if it ends in `.toml`).
pub fn check_text(text: &str, path: &Path, roles: &[Role]) -> Result<Checked, ConfigErrors> {
    let loads = roles_or_ctl(roles)
        .iter()
        .map(|r| {
            if is_toml(path) {
                Settings::from_toml(text, path, *r)
            } else {
                Settings::from_hostconfig(text, path, *r)
            }
        })
        .collect();
    finish(path, roles, loads)
}

/// The last line of a refusal: `FILE: configuration is not valid for failoverd`.
pub fn not_valid(path: &Path, roles: &[Role]) -> String {
    format!(
        "{}: configuration is not valid{}",
        path.display(),
        for_whom(roles)
    )
}

/// ` for heartbeatd and failoverd`, or nothing without a daemon.
pub fn for_whom(roles: &[Role]) -> String {
    let names: Vec<&str> = roles
        .iter()
        .filter_map(|r| match r {
            Role::Heartbeatd => Some("heartbeatd"),
            Role::Failoverd => Some("failoverd"),
            Role::Ctl => None,
        })
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" for {}", names.join(" and "))
    }
}

fn roles_or_ctl(roles: &[Role]) -> Vec<Role> {
    if roles.is_empty() {
        vec![Role::Ctl]
    } else {
        roles.to_vec()
    }
}

fn is_toml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"))
}

/// Merges the parses' problems; if there are none, checks what the settings name.
fn finish(
    path: &Path,
    roles: &[Role],
    loads: Vec<Result<Settings, ConfigErrors>>,
) -> Result<Checked, ConfigErrors> {
    let mut settings = None;
    let mut errors: Vec<ConfigError> = Vec::new();
    for loaded in loads {
        match loaded {
            Ok(s) => {
                settings.get_or_insert(s);
            }
            Err(ConfigErrors(list)) => {
                for e in list {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    let settings = match settings {
        Some(s) if errors.is_empty() => s,
        _ => return Err(ConfigErrors(errors)),
    };
    let failoverd = roles.contains(&Role::Failoverd);
    let problem = |key: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: Some(key_name(path, key)),
        message,
    };
    if let Some(file) = &settings.secret_file {
        if let Err(e) = load_secret(file, daemon::euid()) {
            errors.push(problem("FAILOVER_SECRET_FILE", e));
        }
    }
    let mut notes = Vec::new();
    if failoverd {
        match crate::mail::check(&settings, &daemon::hostname()) {
            Ok(Some((ms, warning))) => {
                if let Some(w) = warning {
                    log::warn!("{w}");
                }
                notes.push(format!(
                    "# mail from {} to {}, by {}",
                    ms.from,
                    ms.recipients.join(", "),
                    ms.describe_transport()
                ));
            }
            Ok(None) => {}
            Err((key, message)) => errors.push(problem(key, message)),
        }
    }
    if failoverd && settings.group_mode() {
        if let Some(file) = &settings.etcd_password_file {
            if let Err(e) = read_etcd_password(file) {
                errors.push(problem("FAILOVER_ETCD_PASSWORD_FILE", e));
            }
        }
        let config = ipfailover_etcd::Config {
            endpoints: settings.etcd_endpoints.clone(),
            group: settings.group.clone(),
            member: settings.member_name.clone().unwrap_or_default(),
            ttl: settings.lease_ttl,
            ca_file: settings.etcd_ca_file.clone(),
            client_cert: settings
                .etcd_cert_file
                .clone()
                .zip(settings.etcd_key_file.clone()),
            user: None,
            clock: ipfailover_etcd::Clock::default(),
        };
        for (key, message) in ipfailover_etcd::check_tls_files(&config) {
            errors.push(problem(key, message));
        }
    }
    if errors.is_empty() {
        Ok(Checked { settings, notes })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A key as the file's format spells it: `FAILOVER_SECRET_FILE`, or `secret_file` in TOML.
fn key_name(path: &Path, hostconfig_name: &str) -> String {
    if is_toml(path) {
        hostconfig_name
            .strip_prefix("FAILOVER_")
            .unwrap_or(hostconfig_name)
            .to_ascii_lowercase()
    } else {
        hostconfig_name.to_string()
    }
}

/// The etcd password in `path`: its first line. Like the heartbeat secret, the file must be a
/// regular file of root or the daemon's user that nobody else can read or write, and not empty.
pub fn read_etcd_password(path: &Path) -> Result<String, String> {
    let shown = path.display();
    // Non-blocking: a FIFO put there does not hang the check or the daemon.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let uid = daemon::euid();
    if meta.uid() != 0 && meta.uid() != uid {
        return Err(format!(
            "{shown}: owned by uid {}, not by root or the daemon's uid {uid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {:04o}): run chmod 600 {shown}",
            meta.mode() & 0o777,
        ));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(format!("{shown}: empty"));
    }
    Ok(password)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("ipfo-check-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const MEMBER: &str = "FAILOVER_ETCD_ENDPOINTS=\"https://203.0.113.1:2379\"\n\
                          FAILOVER_GROUP_IP_PAIRS=\"eth0:198.51.100.100/24\"\n";

    #[test]
    fn every_file_a_member_names_is_read_and_every_problem_named() {
        let d = Scratch::new("member");
        let pw = d.file("pw", "secret\n", 0o644);
        let missing = d.0.join("no-such-ca.pem");
        let text = format!(
            "{MEMBER}FAILOVER_ETCD_USER=ipfo\nFAILOVER_ETCD_PASSWORD_FILE={}\n\
             FAILOVER_ETCD_CA_FILE={}\n",
            pw.display(),
            missing.display()
        );
        let conf = d.file("hostconfig", &text, 0o600);
        let errors = check_file(&conf, &[Role::Failoverd]).unwrap_err();
        let keys: Vec<&str> = errors.0.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            ["FAILOVER_ETCD_PASSWORD_FILE", "FAILOVER_ETCD_CA_FILE"],
            "{errors}"
        );
        assert!(errors.to_string().contains("chmod 600"), "{errors}");
        // Right files: it passes; as failoverctl's rules alone (no daemon), nothing is read.
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = text.replace(
            &format!("FAILOVER_ETCD_CA_FILE={}\n", missing.display()),
            "",
        );
        let conf = d.file("hostconfig", &text, 0o600);
        check_file(&conf, &[Role::Failoverd]).unwrap();
        let pw_gone = text.replace(&pw.display().to_string(), &missing.display().to_string());
        let conf = d.file("hostconfig", &pw_gone, 0o600);
        assert!(check_file(&conf, &[Role::Failoverd]).is_err());
        assert!(check_file(&conf, &[]).is_ok());
    }

    #[test]
    fn text_not_yet_written_is_checked_as_the_file_would_be() {
        let d = Scratch::new("text");
        let secret = d.file("secret", "0123456789abcdef0123\n", 0o644);
        let path = d.0.join("hostconfig");
        let text = format!(
            "FAILOVER_BCAST_IPS=\"198.51.100.255\"\nFAILOVER_SECRET_FILE=\"{}\"\n",
            secret.display()
        );
        let errors = check_text(&text, &path, &[Role::Heartbeatd]).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].file, path);
        assert_eq!(errors.0[0].key.as_deref(), Some("FAILOVER_SECRET_FILE"));
        assert!(!path.exists());
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = check_text(&text, &path, &[Role::Heartbeatd]).unwrap();
        assert_eq!(ok.settings.secret_file.as_deref(), Some(secret.as_path()));
        assert_eq!(
            not_valid(&path, &[Role::Heartbeatd, Role::Failoverd]),
            format!(
                "{}: configuration is not valid for heartbeatd and failoverd",
                path.display()
            )
        );
    }
}
