//! Configuration: the hostconfig file (`FAILOVER_PORT="1694"`) or its TOML twin, both read
//! into one validated [`Settings`], with every problem reported at once and located.

mod duration;
mod error;
mod hostconfig;
mod keys;
mod render;
mod secret;
mod toml_file;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::addr::AddrPair;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use render::{quote_value, redact_transport};
pub use secret::{check_secret_file, parse_secrets, MAX_SECRET_FILE_LEN};

/// The UDP port of heartbeats when `FAILOVER_PORT` is not set: Apple's.
pub const DEFAULT_PORT: u16 = 1694;

/// Who reads the file, which decides what it must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The primary's sender: needs somewhere to send heartbeats.
    Heartbeatd,
    /// The secondary's watcher: needs a peer and addresses to take over.
    Failoverd,
    /// `failoverctl`: reads whatever is there and requires nothing.
    Ctl,
}

/// Validated settings, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file read.
    pub source: PathBuf,
    /// `FAILOVER_BCAST_IPS`: where heartbeats go.
    pub bcast_ips: Vec<IpAddr>,
    /// `FAILOVER_PEER_IP`: the primary watched, and the name of its hook directory.
    pub peer_ip: Option<IpAddr>,
    /// `FAILOVER_PEER_IP_PAIRS`: the addresses taken over, no address twice.
    pub peer_ip_pairs: Vec<AddrPair>,
    /// `FAILOVER_EMAIL_RECIPIENT`: who is told; empty means no mail.
    pub email_recipients: Vec<String>,
    /// `FAILOVER_NODE_IP`: identity sent in heartbeats; empty means the daemon decides.
    pub node_ips: Vec<IpAddr>,
    /// `FAILOVER_PORT`: the UDP port, never 0.
    pub port: u16,
    /// `FAILOVER_INTERVAL`: time between heartbeats, 10ms to 1h.
    pub interval: Duration,
    /// `FAILOVER_TIMEOUT`: silence before takeover; `None` derives it from the peer's interval.
    pub timeout: Option<Duration>,
    /// `FAILOVER_RELEASE_AFTER`: consecutive heartbeats before release, 1 to 1000.
    pub release_after: u32,
    /// `FAILOVER_CONFLICT_GRACE`: how long another host may answer for an address failoverd
    /// holds before it gives the address up (100 ms to 24 h).
    pub conflict_grace: Duration,
    /// `FAILOVER_FENCE_AFTER`: how long a conflict lasts before the `Fence` hooks run; `None`
    /// is five timeouts, at least 5 s.
    pub fence_after: Option<Duration>,
    /// `FAILOVER_IP_PAIRS`: the primary's service addresses, which heartbeatd adds and removes
    /// by agreement with failoverd.
    pub ip_pairs: Vec<AddrPair>,
    /// `FAILOVER_ANNOUNCE_REFRESH`: announce what is held this often; `None` (the default)
    /// announces only when something changes.
    pub announce_refresh: Option<Duration>,
    /// `FAILOVER_SECRET_FILE`: the shared key's file; `None` means unauthenticated heartbeats.
    pub secret_file: Option<PathBuf>,
    /// `FAILOVER_SCRIPT_DIR`: parent of the per-peer hook directories.
    pub script_dir: PathBuf,
    /// `FAILOVER_SCRIPT_TIMEOUT`: longest run of one hook.
    pub script_timeout: Duration,
    /// `FAILOVER_EMAIL_TRANSPORT`: `smtp://…`, `smtps://…`, `sendmail` or `sendmail:/path`.
    pub email_transport: String,
    /// `FAILOVER_EMAIL_FROM`: sender; `None` leaves `failover@<hostname>` to the daemon.
    pub email_from: Option<String>,
    /// `FAILOVER_STATE_DIR`: where the status files go.
    pub state_dir: PathBuf,
    /// `FAILOVER_ETCD_ENDPOINTS`: etcd's URLs; set, failoverd is a group member (docs/groups.md).
    pub etcd_endpoints: Vec<String>,
    /// `FAILOVER_GROUP`: the group's name, its keys under `/ipfailover/<group>/`.
    pub group: String,
    /// `FAILOVER_GROUP_IP_PAIRS`: the addresses the group moves.
    pub group_ip_pairs: Vec<AddrPair>,
    /// `FAILOVER_PRIORITY`: 1 to 255, the highest live one acquires.
    pub priority: u8,
    /// `FAILOVER_LEASE_TTL`: the member's etcd lease, whole seconds.
    pub lease_ttl: Duration,
    /// `FAILOVER_PREEMPT`: a returning higher priority takes its addresses back.
    pub preempt: bool,
    /// `FAILOVER_MEMBER_NAME`: this member's name in the group; `None` is the host name.
    pub member_name: Option<String>,
    /// `FAILOVER_ETCD_CA_FILE`: the CA that signs etcd's certificate.
    pub etcd_ca_file: Option<PathBuf>,
    /// `FAILOVER_ETCD_CERT_FILE`: the client certificate for etcd.
    pub etcd_cert_file: Option<PathBuf>,
    /// `FAILOVER_ETCD_KEY_FILE`: its key.
    pub etcd_key_file: Option<PathBuf>,
    /// `FAILOVER_ETCD_USER`: the etcd user.
    pub etcd_user: Option<String>,
    /// `FAILOVER_ETCD_PASSWORD_FILE`: the file holding that user's password.
    pub etcd_password_file: Option<PathBuf>,
    /// Findings that do not stop the daemon, each naming file and line.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Where the daemons look without `-c`: the hostconfig Apple's IPFailover used, or ours.
    pub fn default_path() -> &'static Path {
        if cfg!(target_os = "macos") {
            Path::new("/etc/hostconfig")
        } else {
            Path::new("/etc/ipfailover/hostconfig")
        }
    }

    /// Parses a configuration file's bytes, as TOML when `path` ends in `.toml` and as
    /// hostconfig otherwise; `path` only names the file (reading it is `ipfailover-os`'s
    /// `config::load_settings`, which also gives [`Settings::warn_if_writable`] its mode).
    pub fn from_file_contents(
        bytes: Vec<u8>,
        path: &Path,
        role: Role,
    ) -> Result<Settings, ConfigErrors> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let line = 1 + e
                .as_bytes()
                .iter()
                .take(valid)
                .filter(|b| **b == b'\n')
                .count();
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                key: None,
                message: "not valid UTF-8".to_string(),
            }])
        })?;
        let is_toml = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
        if is_toml {
            Settings::from_toml(&text, path, role)
        } else {
            Settings::from_hostconfig(&text, path, role)
        }
    }

    /// Warns when the file's permission bits `mode` let group or others write it: whoever can
    /// write it decides which addresses this host takes over.
    pub fn warn_if_writable(&mut self, mode: u32) {
        let mode = mode & 0o777;
        if mode & 0o022 != 0 {
            self.warnings.push(format!(
                "{}: writable by group or others (mode {mode:04o}); only root should be \
                 able to change which addresses this host takes over",
                self.source.display()
            ));
        }
    }

    /// Whether failoverd runs as a member of a group (`FAILOVER_ETCD_ENDPOINTS` is set).
    pub fn group_mode(&self) -> bool {
        !self.etcd_endpoints.is_empty()
    }

    /// Parses hostconfig text (`KEY="value"` lines); `path` only names the file in messages.
    pub fn from_hostconfig(text: &str, path: &Path, role: Role) -> Result<Settings, ConfigErrors> {
        hostconfig::parse(text, path, role)
    }

    /// Parses TOML text (`port = 1694`); `path` only names the file in messages.
    pub fn from_toml(text: &str, path: &Path, role: Role) -> Result<Settings, ConfigErrors> {
        toml_file::parse(text, path, role)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn hc(text: &str, role: Role) -> Result<Settings, ConfigErrors> {
        Settings::from_hostconfig(text, Path::new("/etc/ipfailover/hostconfig"), role)
    }

    fn tm(text: &str, role: Role) -> Result<Settings, ConfigErrors> {
        Settings::from_toml(text, Path::new("/etc/ipfailover/ipfailover.toml"), role)
    }

    fn defaults() -> Settings {
        keys::defaults(Path::new("/etc/ipfailover/hostconfig"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pair(s: &str) -> AddrPair {
        s.parse().unwrap()
    }

    /// Everything except where it came from and the warnings, which name the file.
    fn same(a: &Settings, b: &Settings) -> bool {
        let strip = |s: &Settings| Settings {
            source: PathBuf::new(),
            warnings: Vec::new(),
            ..s.clone()
        };
        strip(a) == strip(b)
    }

    fn messages(e: &ConfigErrors) -> Vec<(Option<usize>, Option<String>, String)> {
        e.0.iter()
            .map(|e| (e.line, e.key.clone(), e.message.clone()))
            .collect()
    }

    /// A setting of each key, in hostconfig and TOML, and its effect on the defaults.
    type Case = (&'static str, &'static str, fn(&mut Settings));

    fn every_key() -> Vec<Case> {
        vec![
            (
                r#"FAILOVER_BCAST_IPS="192.168.0.255 10.0.0.255""#,
                r#"bcast_ips = ["192.168.0.255", "10.0.0.255"]"#,
                |s| s.bcast_ips = vec![ip("192.168.0.255"), ip("10.0.0.255")],
            ),
            (
                r#"FAILOVER_BCAST_IPS="192.168.0.255 ff02::1""#,
                r#"bcast_ips = "192.168.0.255 ff02::1""#,
                |s| s.bcast_ips = vec![ip("192.168.0.255"), ip("ff02::1")],
            ),
            (
                "FAILOVER_PEER_IP=10.0.0.1",
                r#"peer_ip = "10.0.0.1""#,
                |s| s.peer_ip = Some(ip("10.0.0.1")),
            ),
            (
                "FAILOVER_PEER_IP='2001:db8::1'",
                r#"peer_ip = "2001:db8::1""#,
                |s| s.peer_ip = Some(ip("2001:db8::1")),
            ),
            (
                r#"FAILOVER_PEER_IP_PAIRS="en0:10.0.0.100 en1:192.168.0.100/24 eth0:2001:db8::100/64""#,
                r#"peer_ip_pairs = ["en0:10.0.0.100", "en1:192.168.0.100/24", "eth0:2001:db8::100/64"]"#,
                |s| {
                    s.peer_ip_pairs = vec![
                        pair("en0:10.0.0.100"),
                        pair("en1:192.168.0.100/24"),
                        pair("eth0:2001:db8::100/64"),
                    ]
                },
            ),
            (
                r#"FAILOVER_EMAIL_RECIPIENT="admin@example.com, ops@example.com root@localhost""#,
                r#"email_recipient = ["admin@example.com", "ops@example.com", "root@localhost"]"#,
                |s| {
                    s.email_recipients = vec![
                        "admin@example.com".to_string(),
                        "ops@example.com".to_string(),
                        "root@localhost".to_string(),
                    ]
                },
            ),
            (
                "FAILOVER_EMAIL_RECIPIENT=admin@example.com,ops@example.com",
                r#"email_recipient = "admin@example.com,ops@example.com""#,
                |s| {
                    s.email_recipients = vec![
                        "admin@example.com".to_string(),
                        "ops@example.com".to_string(),
                    ]
                },
            ),
            (
                r#"FAILOVER_NODE_IP="10.0.0.2 192.168.0.2""#,
                r#"node_ip = ["10.0.0.2", "192.168.0.2"]"#,
                |s| s.node_ips = vec![ip("10.0.0.2"), ip("192.168.0.2")],
            ),
            ("FAILOVER_PORT=1695", "port = 1695", |s| s.port = 1695),
            ("FAILOVER_PORT=65535", "port = 0xffff", |s| s.port = 65535),
            ("FAILOVER_INTERVAL=100ms", r#"interval = "100ms""#, |s| {
                s.interval = Duration::from_millis(100)
            }),
            ("FAILOVER_INTERVAL=2.5s", r#"interval = "2.5s""#, |s| {
                s.interval = Duration::from_millis(2500)
            }),
            ("FAILOVER_TIMEOUT=5s", r#"timeout = "5s""#, |s| {
                s.timeout = Some(Duration::from_secs(5))
            }),
            ("FAILOVER_RELEASE_AFTER=10", "release_after = 10", |s| {
                s.release_after = 10
            }),
            (
                "FAILOVER_SECRET_FILE=/etc/ipfailover/secret",
                r#"secret_file = "/etc/ipfailover/secret""#,
                |s| s.secret_file = Some(PathBuf::from("/etc/ipfailover/secret")),
            ),
            (
                r#"FAILOVER_SCRIPT_DIR="/opt/ipfailover hooks""#,
                r#"script_dir = "/opt/ipfailover hooks""#,
                |s| s.script_dir = PathBuf::from("/opt/ipfailover hooks"),
            ),
            (
                "FAILOVER_SCRIPT_TIMEOUT=2m",
                r#"script_timeout = "2m""#,
                |s| s.script_timeout = Duration::from_secs(120),
            ),
            (
                "FAILOVER_EMAIL_TRANSPORT=smtps://mail.example.com:465",
                r#"email_transport = "smtps://mail.example.com:465""#,
                |s| s.email_transport = "smtps://mail.example.com:465".to_string(),
            ),
            (
                "FAILOVER_EMAIL_TRANSPORT=sendmail:/usr/sbin/sendmail",
                r#"email_transport = "sendmail:/usr/sbin/sendmail""#,
                |s| s.email_transport = "sendmail:/usr/sbin/sendmail".to_string(),
            ),
            (
                "FAILOVER_EMAIL_FROM=failover@example.com",
                r#"email_from = "failover@example.com""#,
                |s| s.email_from = Some("failover@example.com".to_string()),
            ),
            (
                "FAILOVER_STATE_DIR=/run/ipfailover",
                r#"state_dir = "/run/ipfailover""#,
                |s| s.state_dir = PathBuf::from("/run/ipfailover"),
            ),
            (
                "FAILOVER_ETCD_ENDPOINTS=http://203.0.113.1:2379,https://etcd2:2379/",
                r#"etcd_endpoints = ["http://203.0.113.1:2379", "https://etcd2:2379/"]"#,
                |s| {
                    s.etcd_endpoints =
                        vec!["http://203.0.113.1:2379".into(), "https://etcd2:2379".into()]
                },
            ),
            ("FAILOVER_GROUP=web-1.prod", r#"group = "web-1.prod""#, |s| {
                s.group = "web-1.prod".into()
            }),
            (
                r#"FAILOVER_GROUP_IP_PAIRS="eth0:198.51.100.100 eth0:198.51.100.101/24""#,
                r#"group_ip_pairs = ["eth0:198.51.100.100", "eth0:198.51.100.101/24"]"#,
                |s| {
                    s.group_ip_pairs =
                        vec![pair("eth0:198.51.100.100"), pair("eth0:198.51.100.101/24")]
                },
            ),
            ("FAILOVER_PRIORITY=255", "priority = 255", |s| s.priority = 255),
            ("FAILOVER_LEASE_TTL=5s", r#"lease_ttl = "5s""#, |s| {
                s.lease_ttl = Duration::from_secs(5)
            }),
            ("FAILOVER_PREEMPT=yes", "preempt = true", |s| s.preempt = true),
            ("FAILOVER_MEMBER_NAME=m1", r#"member_name = "m1""#, |s| {
                s.member_name = Some("m1".into())
            }),
            (
                "FAILOVER_ETCD_CA_FILE=/etc/ipfailover/etcd-ca.pem",
                r#"etcd_ca_file = "/etc/ipfailover/etcd-ca.pem""#,
                |s| s.etcd_ca_file = Some(PathBuf::from("/etc/ipfailover/etcd-ca.pem")),
            ),
            (
                "FAILOVER_ETCD_CERT_FILE=/etc/ipfailover/etcd.pem\nFAILOVER_ETCD_KEY_FILE=/etc/ipfailover/etcd.key",
                "etcd_cert_file = \"/etc/ipfailover/etcd.pem\"\netcd_key_file = \"/etc/ipfailover/etcd.key\"",
                |s| {
                    s.etcd_cert_file = Some(PathBuf::from("/etc/ipfailover/etcd.pem"));
                    s.etcd_key_file = Some(PathBuf::from("/etc/ipfailover/etcd.key"));
                },
            ),
            (
                "FAILOVER_ETCD_USER=ipfo\nFAILOVER_ETCD_PASSWORD_FILE=/etc/ipfailover/etcd-password",
                "etcd_user = \"ipfo\"\netcd_password_file = \"/etc/ipfailover/etcd-password\"",
                |s| {
                    s.etcd_user = Some("ipfo".into());
                    s.etcd_password_file = Some(PathBuf::from("/etc/ipfailover/etcd-password"));
                },
            ),
        ]
    }

    #[test]
    fn every_key_in_both_formats() {
        for (hostconfig, toml, effect) in every_key() {
            let mut expected = defaults();
            effect(&mut expected);
            let a = hc(hostconfig, Role::Ctl).unwrap();
            let b = tm(toml, Role::Ctl).unwrap();
            assert!(same(&a, &expected), "{hostconfig}: {a:?}");
            assert!(same(&b, &expected), "{toml}: {b:?}");
            assert!(a.warnings.is_empty() && b.warnings.is_empty());
        }
        // All at once, too.
        let mut expected = defaults();
        let (mut h, mut t) = (String::new(), String::new());
        for (hostconfig, toml, effect) in every_key() {
            // Keys set twice in the table: keep the last, as both formats would.
            let key = toml.split(' ').next().unwrap();
            t = t
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            h.push_str(hostconfig);
            h.push('\n');
            t.push_str(toml);
            t.push('\n');
            effect(&mut expected);
        }
        // Every key at once is a pair and a group in one file: failoverd refuses that (see
        // group_mode_keys), so the roles that require nothing read it.
        let a = hc(&h, Role::Ctl).unwrap();
        let b = tm(&t, Role::Ctl).unwrap();
        assert!(same(&a, &expected));
        assert!(same(&b, &expected));
    }

    #[test]
    fn an_etcd_password_over_http_is_warned_about() {
        let group =
            "FAILOVER_ETCD_ENDPOINTS=\"http://203.0.113.1:2379 https://203.0.113.2:2379\"\n\
                     FAILOVER_GROUP_IP_PAIRS=eth0:198.51.100.100\n\
                     FAILOVER_ETCD_USER=ipfo\n\
                     FAILOVER_ETCD_PASSWORD_FILE=/etc/ipfailover/etcd-password\n";
        let s = hc(group, Role::Failoverd).unwrap();
        assert_eq!(
            s.warnings,
            vec![
                "/etc/ipfailover/hostconfig:3: FAILOVER_ETCD_USER: the etcd password goes in \
                 clear to http://203.0.113.1:2379: anyone on the path can read it, and with it \
                 change the group's keys; use https:// endpoints"
                    .to_string()
            ]
        );
        // Over https:// only, or without a user: nothing to say. failoverctl status, which
        // only reads where the status files are, does not say it either.
        let tls = group.replace("http://203.0.113.1", "https://203.0.113.1");
        assert!(hc(&tls, Role::Failoverd).unwrap().warnings.is_empty());
        let no_user = "FAILOVER_ETCD_ENDPOINTS=http://203.0.113.1:2379\n\
                       FAILOVER_GROUP_IP_PAIRS=eth0:198.51.100.100\n";
        assert!(hc(no_user, Role::Failoverd).unwrap().warnings.is_empty());
        assert!(hc(group, Role::Ctl).unwrap().warnings.is_empty());
    }

    #[test]
    fn group_mode_keys() {
        let group = "FAILOVER_ETCD_ENDPOINTS=http://203.0.113.1:2379\n\
                     FAILOVER_GROUP_IP_PAIRS=eth0:198.51.100.100\n";
        let s = hc(group, Role::Failoverd).unwrap();
        assert!(s.group_mode());
        assert_eq!(
            (s.group.as_str(), s.priority, s.lease_ttl, s.preempt),
            ("ipfailover", 100, Duration::from_secs(3), false)
        );
        // In group mode the pair's keys are not required...
        assert!(s.peer_ip.is_none());
        // ...but the group's addresses are.
        let e = hc(
            "FAILOVER_ETCD_ENDPOINTS=http://203.0.113.1:2379\n",
            Role::Failoverd,
        )
        .unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("FAILOVER_GROUP_IP_PAIRS"));
        // A pair and a group in one failoverd: refused.
        let both = format!(
            "{group}FAILOVER_PEER_IP=198.51.100.10\nFAILOVER_PEER_IP_PAIRS=eth0:198.51.100.10\n"
        );
        let e = hc(&both, Role::Failoverd).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("FAILOVER_PEER_IP_PAIRS"));
        assert!(e.0[0].message.contains("not both"), "{}", e.0[0].message);
        // Group addresses without etcd mean nothing.
        let e = hc(
            "FAILOVER_PEER_IP=198.51.100.10\nFAILOVER_PEER_IP_PAIRS=eth0:198.51.100.10\n\
             FAILOVER_GROUP_IP_PAIRS=eth0:198.51.100.100\n",
            Role::Failoverd,
        )
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(3));
        assert!(e.0[0].message.contains("FAILOVER_ETCD_ENDPOINTS"));
        // Bad values, each located.
        for (line, key, needle) in [
            ("FAILOVER_PRIORITY=0", "FAILOVER_PRIORITY", "from 1 to 255"),
            (
                "FAILOVER_PRIORITY=256",
                "FAILOVER_PRIORITY",
                "from 1 to 255",
            ),
            (
                "FAILOVER_LEASE_TTL=1500ms",
                "FAILOVER_LEASE_TTL",
                "whole seconds",
            ),
            ("FAILOVER_LEASE_TTL=0s", "FAILOVER_LEASE_TTL", "from 1s"),
            ("FAILOVER_PREEMPT=maybe", "FAILOVER_PREEMPT", "yes or no"),
            ("FAILOVER_GROUP=../etc", "FAILOVER_GROUP", "letters, digits"),
            (
                "FAILOVER_MEMBER_NAME='a b'",
                "FAILOVER_MEMBER_NAME",
                "letters, digits",
            ),
            (
                "FAILOVER_ETCD_ENDPOINTS=203.0.113.1:2379",
                "FAILOVER_ETCD_ENDPOINTS",
                "http://",
            ),
            (
                "FAILOVER_ETCD_ENDPOINTS=http://a/v3",
                "FAILOVER_ETCD_ENDPOINTS",
                "http://",
            ),
            (
                "FAILOVER_ETCD_CA_FILE=ca.pem",
                "FAILOVER_ETCD_CA_FILE",
                "absolute path",
            ),
            (
                "FAILOVER_ETCD_CERT_FILE=/c.pem",
                "FAILOVER_ETCD_CERT_FILE",
                "needs its key",
            ),
            (
                "FAILOVER_ETCD_USER=ipfo",
                "FAILOVER_ETCD_USER",
                "needs a password",
            ),
        ] {
            let e = hc(&format!("{group}{line}\n"), Role::Failoverd).unwrap_err();
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{line}: {e:?}");
            assert!(
                e.0[0].message.contains(needle),
                "{line}: {}",
                e.0[0].message
            );
        }
        // And the effective settings written back read back the same.
        let s = hc(
            &format!("{group}FAILOVER_PREEMPT=yes\nFAILOVER_PRIORITY=7\nFAILOVER_GROUP=web\n"),
            Role::Failoverd,
        )
        .unwrap();
        let again = hc(&s.render(), Role::Failoverd).unwrap();
        assert!(same(&s, &again), "{}", s.render());
    }

    #[test]
    fn defaults_for_an_empty_file() {
        let s = hc("", Role::Ctl).unwrap();
        assert_eq!(s, defaults());
        assert_eq!(s.port, 1694);
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.timeout, None);
        assert_eq!(s.release_after, 3);
        assert_eq!(s.script_timeout, Duration::from_secs(60));
        assert_eq!(s.email_transport, "smtp://localhost:25");
        assert_eq!(s.state_dir, PathBuf::from("/var/run/ipfailover"));
        let expected_dir = if cfg!(target_os = "macos") {
            "/Library/IPFailover"
        } else {
            "/etc/ipfailover"
        };
        assert_eq!(s.script_dir, PathBuf::from(expected_dir));
        assert!(same(&tm("", Role::Ctl).unwrap(), &s));
    }

    #[test]
    fn empty_values_mean_default() {
        // Apple's hostconfig writes FAILOVER_X="" for keys it does not use.
        let text = "FAILOVER_BCAST_IPS=\"\"\nFAILOVER_PORT=''\nFAILOVER_INTERVAL=\n\
                    FAILOVER_TIMEOUT=\"\"\nFAILOVER_EMAIL_FROM=\"  \"\nFAILOVER_STATE_DIR=\n";
        assert_eq!(hc(text, Role::Ctl).unwrap(), defaults());
        // And an empty value after a real one unsets it, as in the shell.
        let s = hc("FAILOVER_PORT=7\nFAILOVER_PORT=\n", Role::Ctl).unwrap();
        assert_eq!(s.port, 1694);
        let toml = "bcast_ips = []\nnode_ip = \"\"\ntimeout = \"\"\nemail_from = \"\"\n";
        assert!(same(&tm(toml, Role::Ctl).unwrap(), &defaults()));
    }

    #[test]
    fn comments_blank_lines_export_and_crlf() {
        let text =
            "# ipfailover\n\n   # indented comment\nexport FAILOVER_PORT=\"1700\" # why not\r\n\
                    FAILOVER_INTERVAL='200ms'\t# faster\n\t\nFAILOVER_RELEASE_AFTER=5 #\n";
        let s = hc(text, Role::Ctl).unwrap();
        assert_eq!(s.port, 1700);
        assert_eq!(s.interval, Duration::from_millis(200));
        assert_eq!(s.release_after, 5);
        let s = hc("\u{feff}FAILOVER_PORT=9\n", Role::Ctl).unwrap();
        assert_eq!(s.port, 9);
    }

    #[test]
    fn other_keys_are_ignored() {
        let text = "HOSTNAME=-AUTOMATIC-\nAFPSERVER=-YES-\nexport PATH=\"$PATH:/opt/bin\"\n\
                    WEIRD=a b; c\nFOO=`date`\nFAILOVER_PORT=1695\n";
        let s = hc(text, Role::Ctl).unwrap();
        assert_eq!(s.port, 1695);
        assert!(s.warnings.is_empty());
        // Except that they must still be assignments with closed quotes.
        let e = hc("OTHER=\"open\nFAILOVER_PORT=1\n", Role::Ctl).unwrap_err();
        assert_eq!(
            messages(&e),
            vec![(
                Some(1),
                Some("OTHER".into()),
                "unterminated double quote".into()
            )]
        );
    }

    #[test]
    fn our_key_in_the_wrong_case_is_a_warning() {
        let s = hc("failover_port=1\n", Role::Ctl).unwrap();
        assert_eq!(s.port, 1694);
        assert_eq!(
            s.warnings,
            vec![
                "/etc/ipfailover/hostconfig:1: failover_port: ignored: keys are case-sensitive; \
                  did you mean FAILOVER_PORT?"
                    .to_string()
            ]
        );
    }

    #[test]
    fn repeated_key_warns_and_last_wins() {
        let s = hc("FAILOVER_PORT=1\n\nFAILOVER_PORT=2\n", Role::Ctl).unwrap();
        assert_eq!(s.port, 2);
        assert_eq!(
            s.warnings,
            vec![
                "/etc/ipfailover/hostconfig:3: FAILOVER_PORT: also set on line 1; this later \
                  value wins"
                    .to_string()
            ]
        );
        // TOML forbids it outright.
        let e = tm("port = 1\nport = 2\n", Role::Ctl).unwrap_err();
        assert_eq!(
            messages(&e),
            vec![(Some(2), Some("port".into()), "duplicate key".into())]
        );
    }

    #[test]
    fn unknown_failover_key_with_suggestion() {
        let e = hc("FAILOVER_PORT=1\nFAILOVER_TIMOUT=3s\n", Role::Ctl).unwrap_err();
        assert_eq!(e.0.len(), 1);
        let err = &e.0[0];
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("FAILOVER_TIMOUT"));
        assert!(
            err.message.starts_with(
                "unknown key (did you mean FAILOVER_TIMEOUT?); known keys are FAILOVER_BCAST_IPS, "
            ),
            "{}",
            err.message
        );
        let e = hc("FAILOVER_COLOUR=blue\n", Role::Ctl).unwrap_err();
        assert!(e.0[0].message.starts_with("unknown key; known keys are "));
        assert!(e.0[0].message.ends_with("FAILOVER_ETCD_PASSWORD_FILE"));
        let e = tm("\n\ntimout = \"3s\"\n", Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].line, Some(3));
        assert_eq!(e.0[0].key.as_deref(), Some("timout"));
        assert!(e.0[0]
            .message
            .starts_with("unknown key (did you mean timeout?); known keys are bcast_ips, "));
        let e = tm("[failover]\nport = 1\n", Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].line, Some(1));
        assert_eq!(e.0[0].key.as_deref(), Some("failover"));
    }

    #[test]
    fn required_keys_per_role() {
        let e = hc("", Role::Heartbeatd).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, None);
        assert_eq!(e.0[0].key.as_deref(), Some("FAILOVER_BCAST_IPS"));
        assert!(e.0[0].message.starts_with("required by heartbeatd"));
        assert!(hc("FAILOVER_BCAST_IPS=10.0.0.255", Role::Heartbeatd).is_ok());

        let e = hc("FAILOVER_BCAST_IPS=10.0.0.255", Role::Failoverd).unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|e| e.key.as_deref().unwrap()).collect();
        assert_eq!(keys, ["FAILOVER_PEER_IP", "FAILOVER_PEER_IP_PAIRS"]);
        assert!(e.0.iter().all(|e| e.line.is_none()));
        assert!(e
            .0
            .iter()
            .all(|e| e.message.starts_with("required by failoverd")));
        assert_eq!(
            e.0[0].to_string(),
            "/etc/ipfailover/hostconfig: FAILOVER_PEER_IP: required by failoverd: the primary's \
             public address, the host it watches"
        );
        let e = hc(
            "FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=\"\"",
            Role::Failoverd,
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].key.as_deref(), Some("FAILOVER_PEER_IP_PAIRS"));
        assert!(hc(
            "FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=en0:10.0.0.100",
            Role::Failoverd
        )
        .is_ok());

        assert!(hc("", Role::Ctl).is_ok());
        let e = tm("", Role::Failoverd).unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|e| e.key.as_deref().unwrap()).collect();
        assert_eq!(keys, ["peer_ip", "peer_ip_pairs"]);

        // A bad value is reported once, not also as missing.
        let e = hc("FAILOVER_BCAST_IPS=nowhere", Role::Heartbeatd).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, Some(1));
    }

    #[test]
    fn bounds() {
        let ok = |text: &str| hc(text, Role::Ctl).is_ok();
        for (text, accepted) in [
            ("FAILOVER_PORT=1", true),
            ("FAILOVER_PORT=65535", true),
            ("FAILOVER_PORT=0", false),
            ("FAILOVER_PORT=65536", false),
            ("FAILOVER_PORT=-1", false),
            ("FAILOVER_PORT=99999999999999999999999", false),
            ("FAILOVER_PORT=http", false),
            ("FAILOVER_INTERVAL=10ms", true),
            ("FAILOVER_INTERVAL=9ms", false),
            ("FAILOVER_INTERVAL=9999us", false),
            ("FAILOVER_INTERVAL=1h", true),
            ("FAILOVER_INTERVAL=3600001ms", false),
            ("FAILOVER_INTERVAL=1", false),
            ("FAILOVER_INTERVAL=0", false),
            ("FAILOVER_TIMEOUT=10ms", true),
            ("FAILOVER_TIMEOUT=9ms", false),
            ("FAILOVER_TIMEOUT=24h", true),
            ("FAILOVER_TIMEOUT=25h", false),
            ("FAILOVER_RELEASE_AFTER=1", true),
            ("FAILOVER_RELEASE_AFTER=1000", true),
            ("FAILOVER_RELEASE_AFTER=0", false),
            ("FAILOVER_RELEASE_AFTER=1001", false),
            ("FAILOVER_RELEASE_AFTER=3.5", false),
            ("FAILOVER_CONFLICT_GRACE=100ms", true),
            ("FAILOVER_CONFLICT_GRACE=99ms", false),
            ("FAILOVER_CONFLICT_GRACE=2m", true),
            ("FAILOVER_CONFLICT_GRACE=25h", false),
            ("FAILOVER_SCRIPT_TIMEOUT=1ms", true),
            ("FAILOVER_SCRIPT_TIMEOUT=0s", false),
            ("FAILOVER_SCRIPT_TIMEOUT=24h", true),
            ("FAILOVER_SCRIPT_TIMEOUT=25h", false),
            ("FAILOVER_SECRET_FILE=secret", false),
            ("FAILOVER_SCRIPT_DIR=hooks", false),
            ("FAILOVER_STATE_DIR=./state", false),
            ("FAILOVER_EMAIL_TRANSPORT=smtp://mail:25", true),
            ("FAILOVER_EMAIL_TRANSPORT=sendmail", true),
            ("FAILOVER_EMAIL_TRANSPORT=mail.example.com", false),
            ("FAILOVER_EMAIL_FROM=nobody", false),
            ("FAILOVER_EMAIL_RECIPIENT=admin", false),
            ("FAILOVER_EMAIL_RECIPIENT=\"a@b.c; d@e.f\"", false),
            ("FAILOVER_PEER_IP=10.0.0.300", false),
            ("FAILOVER_PEER_IP=\"10.0.0.1 10.0.0.2\"", false),
            ("FAILOVER_PEER_IP_PAIRS=10.0.0.100", false),
            (
                "FAILOVER_PEER_IP_PAIRS=\"en0:10.0.0.100 en1:10.0.0.100/24\"",
                false,
            ),
            (
                "FAILOVER_PEER_IP_PAIRS=\"en0:10.0.0.100 en0:10.0.0.101\"",
                true,
            ),
            ("FAILOVER_NODE_IP=host.example.com", false),
        ] {
            assert_eq!(ok(text), accepted, "{text}");
        }
        for (text, accepted) in [
            ("port = 0", false),
            ("port = 65536", false),
            ("port = -5", false),
            ("port = \"1694\"", false),
            ("port = 1.5", false),
            ("release_after = 1000", true),
            ("release_after = 1001", false),
            ("interval = 1", false),
            ("interval = \"9ms\"", false),
            ("timeout = true", false),
            ("peer_ip = [\"10.0.0.1\"]", false),
            ("bcast_ips = [1, 2]", false),
            ("bcast_ips = 10", false),
            ("script_dir = { path = \"/x\" }", false),
            ("state_dir = \"/a\\nb\"", false),
            ("peer_ip_pairs = [\"e\\tn0:10.0.0.1\"]", false),
            ("interval = 1979-05-27", false),
        ] {
            assert_eq!(tm(text, Role::Ctl).is_ok(), accepted, "{text}");
        }
    }

    #[test]
    fn messages_name_key_line_and_expectation() {
        let e = hc("\n\n\n\n\n\nFAILOVER_INTERVAL=fast\n", Role::Ctl).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/ipfailover/hostconfig:7: FAILOVER_INTERVAL: expected a duration like 100ms, \
             1s or 2.5s, got \"fast\""
        );
        let e = hc("FAILOVER_INTERVAL=5ms", Role::Ctl).unwrap_err();
        assert_eq!(
            e.0[0].message,
            "expected a duration from 10ms to 1h, got \"5ms\""
        );
        let e = hc("FAILOVER_PORT=0", Role::Ctl).unwrap_err();
        assert_eq!(
            e.0[0].message,
            "expected a UDP port from 1 to 65535, got \"0\""
        );
        let e = tm("port = 0", Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].message, "expected a UDP port from 1 to 65535, got 0");
        let e = tm("port = \"1694\"", Role::Ctl).unwrap_err();
        assert_eq!(e.0[0].message, "expected an integer, got a string");
        let e = tm("interval = 1", Role::Ctl).unwrap_err();
        assert_eq!(
            e.0[0].message,
            "expected a duration string like \"1s\", got an integer"
        );
        let e = tm("bcast_ips = [\n  \"10.0.0.255\",\n  2,\n]", Role::Ctl).unwrap_err();
        assert_eq!(
            messages(&e),
            vec![(
                Some(3),
                Some("bcast_ips".into()),
                "expected an array of strings, got an array holding an integer".into()
            )]
        );
        let e = hc(
            "FAILOVER_PEER_IP_PAIRS=\"en0:10.0.0.100 en1:10.0.0.100/24\"",
            Role::Ctl,
        )
        .unwrap_err();
        assert_eq!(
            e.0[0].message,
            "10.0.0.100 is listed twice (en0:10.0.0.100 and en1:10.0.0.100/24); each address can \
             be taken over only once"
        );
        let e = hc("FAILOVER_BCAST_IPS=$BCAST", Role::Ctl).unwrap_err();
        assert!(e.0[0].message.contains("single quotes"), "{e}");
    }

    #[test]
    fn five_mistakes_all_reported() {
        let text = "\
# five mistakes
FAILOVER_BCAST_IPS=\"10.0.0.255 10.0.0.256\"
FAILOVER_PEER_IP=10.0.0.1

FAILOVER_INTERVAL=fast
FAILOVER_PORT=0
this is not an assignment
FAILOVER_PEER_IP_PAIRS=\"en0:10.0.0.100
FAILOVER_RELEASE_AFTER=3
";
        let e = hc(text, Role::Failoverd).unwrap_err();
        let found: Vec<_> = e.0.iter().map(|e| (e.line, e.key.clone())).collect();
        assert_eq!(
            found,
            vec![
                (Some(2), Some("FAILOVER_BCAST_IPS".to_string())),
                (Some(5), Some("FAILOVER_INTERVAL".to_string())),
                (Some(6), Some("FAILOVER_PORT".to_string())),
                (Some(7), None),
                (Some(8), Some("FAILOVER_PEER_IP_PAIRS".to_string())),
                // The broken line leaves the pairs unset, which failoverd cannot do without.
                (None, Some("FAILOVER_PEER_IP_PAIRS".to_string())),
            ],
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 6);

        let toml = "\
# five mistakes
bcast_ips = [\"10.0.0.255\", \"10.0.0.256\"]
peer_ip = \"10.0.0.1\"

interval = \"fast\"
port = 0
colour = \"blue\"
peer_ip_pairs = 7
release_after = 3
";
        let e = tm(toml, Role::Failoverd).unwrap_err();
        let found: Vec<_> = e.0.iter().map(|e| (e.line, e.key.clone())).collect();
        assert_eq!(
            found,
            vec![
                (Some(2), Some("bcast_ips".to_string())),
                (Some(5), Some("interval".to_string())),
                (Some(6), Some("port".to_string())),
                (Some(7), Some("colour".to_string())),
                (Some(8), Some("peer_ip_pairs".to_string())),
            ],
            "{e}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_lines() {
        let e = tm("port = 1\ninterval = \"1s\n", Role::Failoverd).unwrap_err();
        assert!(!e.0.is_empty());
        assert_eq!(e.0[0].line, Some(2), "{e}");
        // Nothing is reported missing when the file could not be read whole.
        assert!(e.0.iter().all(|e| e.line.is_some()), "{e}");
        // One complaint per broken line, and the other lines are still checked.
        let e = tm("port = = 1\nrelease_after = 0\n", Role::Ctl).unwrap_err();
        let lines: Vec<_> = e.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(1), Some(2)], "{e}");
    }

    fn full() -> Settings {
        let mut s = defaults();
        for (_, _, effect) in every_key() {
            effect(&mut s);
        }
        s.email_from = Some("fa`il$over@example.com".to_string());
        s.script_dir = PathBuf::from("/opt/it's `here` \\ and $there");
        s
    }

    #[test]
    fn render_round_trips() {
        let minimal = hc("FAILOVER_BCAST_IPS=10.0.0.255", Role::Heartbeatd).unwrap();
        for s in [full(), defaults(), minimal] {
            let text = s.render();
            let back = hc(&text, Role::Ctl).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(same(&back, &s), "{text}\n{back:?}");
            assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        }
    }

    #[test]
    fn render_shows_defaults_and_unset_keys() {
        let text = defaults().render();
        assert!(text.starts_with("# ipfailover settings read from /etc/ipfailover/hostconfig\n"));
        assert!(
            text.contains("\nFAILOVER_PORT=\"1694\"  # default\n"),
            "{text}"
        );
        assert!(text.contains("\nFAILOVER_INTERVAL=\"1s\"  # default\n"));
        assert!(text.contains(
            "\n# FAILOVER_TIMEOUT unset: 3 missed heartbeats: 3.25 x the interval the peer announces (3s before any heartbeat)\n"
        ));
        assert!(text.contains("\n# FAILOVER_EMAIL_FROM unset: failover@<hostname>\n"));
        assert!(
            text.contains("\nFAILOVER_CONFLICT_GRACE=\"30s\"  # default\n"),
            "{text}"
        );
        // One line per key, plus the heading.
        assert_eq!(text.lines().count(), keys::KEYS + 1);
        let text = full().render();
        assert!(
            text.contains("\nFAILOVER_PORT=\"1694\"  # default\n")
                || text.contains("\nFAILOVER_PORT=\"65535\"\n")
        );
        assert!(text.contains("\nFAILOVER_TIMEOUT=\"5s\"\n"), "{text}");
    }

    #[test]
    fn the_format_is_picked_by_the_suffix() {
        let toml = Path::new("/etc/ipfailover/a.toml");
        let s = Settings::from_file_contents(b"port = 1700\n".to_vec(), toml, Role::Ctl).unwrap();
        assert_eq!(s.port, 1700);
        assert_eq!(s.source, toml);
        // The same text is not a hostconfig line.
        let hostconfig = Path::new("/etc/ipfailover/hostconfig");
        let e = Settings::from_file_contents(b"port = 1700\n".to_vec(), hostconfig, Role::Ctl)
            .unwrap_err();
        assert_eq!(e.0[0].file, hostconfig);
        assert_eq!(e.0[0].line, Some(1));
        let s =
            Settings::from_file_contents(b"FAILOVER_PORT=1701\n".to_vec(), hostconfig, Role::Ctl);
        assert_eq!(s.unwrap().port, 1701);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_one_error_on_their_line() {
        let path = Path::new("/etc/ipfailover/hostconfig");
        let e =
            Settings::from_file_contents(b"FAILOVER_PORT=1\n\xff\xfe\n".to_vec(), path, Role::Ctl)
                .unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, Some(2));
        assert_eq!(e.0[0].message, "not valid UTF-8");
    }

    #[test]
    fn a_file_others_can_write_is_warned_about() {
        let mut s = hc("FAILOVER_PORT=1\n", Role::Ctl).unwrap();
        s.warn_if_writable(0o100644);
        assert!(s.warnings.is_empty());
        s.warn_if_writable(0o100666);
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("writable by group or others (mode 0666)"));
        assert!(s.warnings[0].starts_with("/etc/ipfailover/hostconfig: "));
    }

    #[test]
    fn default_path_matches_the_platform() {
        let expected = if cfg!(target_os = "macos") {
            "/etc/hostconfig"
        } else {
            "/etc/ipfailover/hostconfig"
        };
        assert_eq!(Settings::default_path(), Path::new(expected));
    }

    proptest::proptest! {
        #[test]
        fn hostconfig_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = hc(&text, Role::Failoverd);
        }

        #[test]
        fn hostconfig_never_panics_on_near_misses(
            lines in proptest::collection::vec(
                "[ \t]*(export[ \t]+)?(FAILOVER_(BCAST_IPS|PEER_IP|PEER_IP_PAIRS|EMAIL_RECIPIENT|NODE_IP|PORT|INTERVAL|TIMEOUT|RELEASE_AFTER|SECRET_FILE|SCRIPT_DIR|SCRIPT_TIMEOUT|EMAIL_TRANSPORT|EMAIL_FROM|STATE_DIR|[A-Z_]{0,8})|[a-zA-Z_]{1,5})[ ]?=\
                 [\"' a-z0-9.:/$`\\\\#@,;()|\t\r]{0,30}",
                0..8,
            )
        ) {
            let _ = hc(&lines.join("\n"), Role::Heartbeatd);
        }

        #[test]
        fn toml_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = tm(&text, Role::Failoverd);
        }

        #[test]
        fn toml_never_panics_on_near_misses(
            lines in proptest::collection::vec(
                "(bcast_ips|peer_ip|peer_ip_pairs|email_recipient|node_ip|port|interval|timeout|release_after|secret_file|script_dir|script_timeout|email_transport|email_from|state_dir|[a-z_]{1,14}) ?= ?(\"[^\"\\n]{0,20}\"|-?[0-9]{1,21}|0x[0-9a-f]{1,20}|\
                 \\[[\" a-z0-9.:,/]{0,30}\\]|true|\\{ *\\}|[0-9.]{1,8})",
                0..8,
            )
        ) {
            let _ = tm(&lines.join("\n"), Role::Failoverd);
        }

        #[test]
        fn accepted_hostconfig_renders_back_to_itself(
            port in 1u16..,
            interval_ms in 10u64..3_600_000,
            release in 1u32..=1000,
        ) {
            let text = format!(
                "FAILOVER_PORT={port}\nFAILOVER_INTERVAL={interval_ms}ms\nFAILOVER_RELEASE_AFTER={release}\n"
            );
            let s = hc(&text, Role::Ctl).unwrap();
            let back = hc(&s.render(), Role::Ctl).unwrap();
            proptest::prop_assert!(same(&s, &back));
        }
    }
}
