//! The effective settings written back as hostconfig lines: what `-t` prints, and a file this
//! parser reads back to the same settings.

use std::fmt::Write as _;

use super::duration::format_duration;
use super::keys::{defaults, Key};
use super::Settings;

impl Settings {
    /// The effective settings, every key with its value (defaults included), as hostconfig
    /// lines that read back to equal settings; unset optional keys are comments saying what
    /// happens instead.
    pub fn render(&self) -> String {
        let defaults = defaults(&self.source);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# ipfailover settings read from {}",
            self.source.display()
        );
        for key in Key::ALL {
            let name = key.hostconfig_name();
            match value_of(self, key) {
                Ok(value) => {
                    let is_default = value_of(&defaults, key).is_ok_and(|d| d == value);
                    let marker = if is_default { "  # default" } else { "" };
                    let _ = writeln!(out, "{name}={}{marker}", quote(&value));
                }
                Err(meaning) => {
                    let _ = writeln!(out, "# {name} unset: {meaning}");
                }
            }
        }
        out
    }
}

/// The value as the parser reads it, or what its absence means.
fn value_of(s: &Settings, key: Key) -> Result<String, &'static str> {
    fn list<T: ToString>(items: &[T], unset: &'static str) -> Result<String, &'static str> {
        if items.is_empty() {
            return Err(unset);
        }
        Ok(items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "))
    }
    fn path(p: &Option<std::path::PathBuf>, unset: &'static str) -> Result<String, &'static str> {
        p.as_ref().map(|p| p.display().to_string()).ok_or(unset)
    }
    match key {
        Key::BcastIps => list(
            &s.bcast_ips,
            "heartbeats go nowhere (heartbeatd requires it)",
        ),
        Key::PeerIp => s
            .peer_ip
            .map(|ip| ip.to_string())
            .ok_or("no peer is watched (failoverd requires it)"),
        Key::PeerIpPairs => list(
            &s.peer_ip_pairs,
            "no address to take over (failoverd requires it)",
        ),
        Key::EmailRecipient => list(&s.email_recipients, "no mail is sent"),
        Key::NodeIp => list(
            &s.node_ips,
            "this host's addresses on the heartbeat subnets",
        ),
        Key::Port => Ok(s.port.to_string()),
        Key::Interval => Ok(format_duration(s.interval)),
        Key::Timeout => s.timeout.map(format_duration).ok_or(
            "3 missed heartbeats: 3.25 x the interval the peer announces (3s before any heartbeat)",
        ),
        Key::ReleaseAfter => Ok(s.release_after.to_string()),
        Key::ConflictGrace => Ok(format_duration(s.conflict_grace)),
        Key::FenceAfter => s
            .fence_after
            .map(format_duration)
            .ok_or("a conflict runs the Fence hooks after 5 timeouts, at least 5s"),
        Key::IpPairs => list(
            &s.ip_pairs,
            "heartbeatd manages no service address (the primary's addresses are the OS's)",
        ),
        Key::AnnounceRefresh => s
            .announce_refresh
            .map(format_duration)
            .ok_or("addresses are announced when they change hands, and after a stall"),
        Key::SecretFile => s
            .secret_file
            .as_ref()
            .map(|p| p.display().to_string())
            .ok_or("heartbeats are not authenticated"),
        Key::ScriptDir => Ok(s.script_dir.display().to_string()),
        Key::ScriptTimeout => Ok(format_duration(s.script_timeout)),
        Key::EmailTransport => Ok(redact_transport(&s.email_transport)),
        Key::EmailFrom => s.email_from.clone().ok_or("failover@<hostname>"),
        Key::StateDir => Ok(s.state_dir.display().to_string()),
        Key::EtcdEndpoints => list(&s.etcd_endpoints, "no group: failoverd watches one peer"),
        Key::Group => Ok(s.group.clone()),
        Key::GroupIpPairs => list(
            &s.group_ip_pairs,
            "no group addresses (group mode requires them)",
        ),
        Key::Priority => Ok(s.priority.to_string()),
        Key::LeaseTtl => Ok(format_duration(s.lease_ttl)),
        Key::Preempt => Ok(if s.preempt { "yes" } else { "no" }.to_string()),
        Key::MemberName => s.member_name.clone().ok_or("the host name"),
        Key::EtcdCaFile => path(&s.etcd_ca_file, "the system's CA certificates"),
        Key::EtcdCertFile => path(&s.etcd_cert_file, "no client certificate"),
        Key::EtcdKeyFile => path(&s.etcd_key_file, "no client certificate"),
        Key::EtcdUser => s.etcd_user.clone().ok_or("no etcd authentication"),
        Key::EtcdPasswordFile => path(&s.etcd_password_file, "no etcd authentication"),
    }
}

/// A mail transport with its password hidden (`smtp://user:***@host:25`), as everything that
/// shows the settings writes it: `-t`, `failoverctl check-config`, logs and mail.
pub fn redact_transport(transport: &str) -> String {
    if let Some((scheme, rest)) = transport.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            if let Some((user, _password)) = authority[..at].split_once(':') {
                return format!("{scheme}://{user}:***@{}", &rest[at + 1..]);
            }
        }
    }
    transport.to_owned()
}

/// A value as a hostconfig line writes it (`KEY=` then this): double-quoted, with `"`, `\`,
/// `$` and backquotes escaped, so that the parser (and `sh`) read back exactly `value`. A
/// control character cannot be written: a line holds one key.
pub fn quote_value(value: &str) -> Result<String, String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{c:?} cannot be written in a configuration value (one line holds one key)"
        )),
        None => Ok(quote(value)),
    }
}

/// Double quotes, escaping what the shell would otherwise interpret.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn the_mail_password_is_never_shown() {
        let mut s = defaults(std::path::Path::new("/etc/ipfailover/hostconfig"));
        s.email_transport = "smtp://ipfo:s3cr@t@mail.example.org:587?tls=required".to_string();
        let text = s.render();
        assert!(!text.contains("s3cr"), "{text}");
        assert!(
            text.contains(
                "FAILOVER_EMAIL_TRANSPORT=\"smtp://ipfo:***@mail.example.org:587?tls=required\""
            ),
            "{text}"
        );
        for (shown, hidden) in [
            ("smtps://u:p@h:465", "smtps://u:***@h:465"),
            ("smtp://u@h", "smtp://u@h"),
            ("smtp://h:25/x@y", "smtp://h:25/x@y"),
            ("sendmail", "sendmail"),
        ] {
            assert_eq!(redact_transport(shown), hidden);
        }
    }

    #[test]
    fn a_quoted_value_reads_back_as_itself_or_is_refused() {
        use crate::settings::{Role, Settings};
        let path = std::path::Path::new("/etc/ipfailover/hostconfig");
        for dir in [
            r#"/opt/a "b" c"#,
            r"/opt/\x",
            "/opt/$HOME/`id`",
            "/opt/it's",
        ] {
            let text = format!("FAILOVER_SCRIPT_DIR={}\n", quote_value(dir).unwrap());
            let s = Settings::from_hostconfig(&text, path, Role::Ctl).unwrap();
            assert_eq!(s.script_dir, std::path::PathBuf::from(dir), "{text}");
        }
        for bad in ["a\nFAILOVER_PEER_IP=\"1.2.3.4", "a\rb", "a\tb", "a\0b"] {
            assert!(quote_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting_escapes_shell_characters() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote(r#"a"b\c$d`e"#), r#""a\"b\\c\$d\`e""#);
    }
}
