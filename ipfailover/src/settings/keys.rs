//! The keys, and the checks both file formats share: each format only turns its syntax into
//! calls on [`Builder`], so a value means the same whichever way it is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::{format_duration, parse_duration};
use super::{ConfigError, ConfigErrors, Role, Settings};
use crate::addr::AddrPair;

/// One setting, whatever the file format calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    BcastIps,
    PeerIp,
    PeerIpPairs,
    EmailRecipient,
    NodeIp,
    Port,
    Interval,
    Timeout,
    ReleaseAfter,
    ConflictGrace,
    FenceAfter,
    IpPairs,
    AnnounceRefresh,
    SecretFile,
    ScriptDir,
    ScriptTimeout,
    EmailTransport,
    EmailFrom,
    StateDir,
    EtcdEndpoints,
    Group,
    GroupIpPairs,
    Priority,
    LeaseTtl,
    Preempt,
    MemberName,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    EtcdUser,
    EtcdPasswordFile,
}

/// How a value is written, which decides the TOML types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Several items: a TOML array of strings, or one string split at spaces.
    List,
    /// One string.
    Text,
    /// A string such as `1s`.
    Duration,
    /// An integer.
    Int,
    /// Yes or no: a TOML boolean, or `yes`/`no` (also `true`/`false`).
    Bool,
}

/// Which file format names the keys in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `FAILOVER_PORT`.
    Hostconfig,
    /// `port`.
    Toml,
}

pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub(super) const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Not in Apple's IPFailover: without a ceiling, `now + timeout` could overflow `Instant` in the daemon,
/// and a day is already far beyond any useful failover or hook time.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub(super) const MAX_SCRIPT_TIMEOUT: Duration = MAX_TIMEOUT;
pub(super) const MAX_RELEASE_AFTER: u32 = 1000;
/// A grace shorter than a few probes could give up an address over one stray answer.
pub(super) const MIN_CONFLICT_GRACE: Duration = Duration::from_millis(100);
/// A conflict shorter than this is a loss burst or a reload, not a stuck host.
pub(super) const MIN_FENCE_AFTER: Duration = Duration::from_secs(1);
/// Announcing more often than this is a storm, not a refresh.
pub(super) const MIN_ANNOUNCE_REFRESH: Duration = Duration::from_secs(1);
/// etcd's shortest useful lease: a member renews three times per TTL.
pub(super) const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// Longer than this, a dead holder keeps its addresses for longer than anyone would wait.
pub(super) const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// How many keys there are.
pub(super) const KEYS: usize = 31;

impl Key {
    /// In the order of docs/configuration.md, which is also the order `render` prints.
    pub(super) const ALL: [Key; KEYS] = [
        Key::BcastIps,
        Key::PeerIp,
        Key::PeerIpPairs,
        Key::EmailRecipient,
        Key::NodeIp,
        Key::Port,
        Key::Interval,
        Key::Timeout,
        Key::ReleaseAfter,
        Key::ConflictGrace,
        Key::FenceAfter,
        Key::IpPairs,
        Key::AnnounceRefresh,
        Key::SecretFile,
        Key::ScriptDir,
        Key::ScriptTimeout,
        Key::EmailTransport,
        Key::EmailFrom,
        Key::StateDir,
        Key::EtcdEndpoints,
        Key::Group,
        Key::GroupIpPairs,
        Key::Priority,
        Key::LeaseTtl,
        Key::Preempt,
        Key::MemberName,
        Key::EtcdCaFile,
        Key::EtcdCertFile,
        Key::EtcdKeyFile,
        Key::EtcdUser,
        Key::EtcdPasswordFile,
    ];

    pub(super) fn hostconfig_name(self) -> &'static str {
        match self {
            Key::BcastIps => "FAILOVER_BCAST_IPS",
            Key::PeerIp => "FAILOVER_PEER_IP",
            Key::PeerIpPairs => "FAILOVER_PEER_IP_PAIRS",
            Key::EmailRecipient => "FAILOVER_EMAIL_RECIPIENT",
            Key::NodeIp => "FAILOVER_NODE_IP",
            Key::Port => "FAILOVER_PORT",
            Key::Interval => "FAILOVER_INTERVAL",
            Key::Timeout => "FAILOVER_TIMEOUT",
            Key::ReleaseAfter => "FAILOVER_RELEASE_AFTER",
            Key::ConflictGrace => "FAILOVER_CONFLICT_GRACE",
            Key::FenceAfter => "FAILOVER_FENCE_AFTER",
            Key::IpPairs => "FAILOVER_IP_PAIRS",
            Key::AnnounceRefresh => "FAILOVER_ANNOUNCE_REFRESH",
            Key::SecretFile => "FAILOVER_SECRET_FILE",
            Key::ScriptDir => "FAILOVER_SCRIPT_DIR",
            Key::ScriptTimeout => "FAILOVER_SCRIPT_TIMEOUT",
            Key::EmailTransport => "FAILOVER_EMAIL_TRANSPORT",
            Key::EmailFrom => "FAILOVER_EMAIL_FROM",
            Key::StateDir => "FAILOVER_STATE_DIR",
            Key::EtcdEndpoints => "FAILOVER_ETCD_ENDPOINTS",
            Key::Group => "FAILOVER_GROUP",
            Key::GroupIpPairs => "FAILOVER_GROUP_IP_PAIRS",
            Key::Priority => "FAILOVER_PRIORITY",
            Key::LeaseTtl => "FAILOVER_LEASE_TTL",
            Key::Preempt => "FAILOVER_PREEMPT",
            Key::MemberName => "FAILOVER_MEMBER_NAME",
            Key::EtcdCaFile => "FAILOVER_ETCD_CA_FILE",
            Key::EtcdCertFile => "FAILOVER_ETCD_CERT_FILE",
            Key::EtcdKeyFile => "FAILOVER_ETCD_KEY_FILE",
            Key::EtcdUser => "FAILOVER_ETCD_USER",
            Key::EtcdPasswordFile => "FAILOVER_ETCD_PASSWORD_FILE",
        }
    }

    pub(super) fn toml_name(self) -> &'static str {
        match self {
            Key::BcastIps => "bcast_ips",
            Key::PeerIp => "peer_ip",
            Key::PeerIpPairs => "peer_ip_pairs",
            Key::EmailRecipient => "email_recipient",
            Key::NodeIp => "node_ip",
            Key::Port => "port",
            Key::Interval => "interval",
            Key::Timeout => "timeout",
            Key::ReleaseAfter => "release_after",
            Key::ConflictGrace => "conflict_grace",
            Key::FenceAfter => "fence_after",
            Key::IpPairs => "ip_pairs",
            Key::AnnounceRefresh => "announce_refresh",
            Key::SecretFile => "secret_file",
            Key::ScriptDir => "script_dir",
            Key::ScriptTimeout => "script_timeout",
            Key::EmailTransport => "email_transport",
            Key::EmailFrom => "email_from",
            Key::StateDir => "state_dir",
            Key::EtcdEndpoints => "etcd_endpoints",
            Key::Group => "group",
            Key::GroupIpPairs => "group_ip_pairs",
            Key::Priority => "priority",
            Key::LeaseTtl => "lease_ttl",
            Key::Preempt => "preempt",
            Key::MemberName => "member_name",
            Key::EtcdCaFile => "etcd_ca_file",
            Key::EtcdCertFile => "etcd_cert_file",
            Key::EtcdKeyFile => "etcd_key_file",
            Key::EtcdUser => "etcd_user",
            Key::EtcdPasswordFile => "etcd_password_file",
        }
    }

    pub(super) fn name(self, format: Format) -> &'static str {
        match format {
            Format::Hostconfig => self.hostconfig_name(),
            Format::Toml => self.toml_name(),
        }
    }

    pub(super) fn from_name(name: &str, format: Format) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name(format) == name)
    }

    pub(super) fn kind(self) -> Kind {
        match self {
            Key::BcastIps
            | Key::PeerIpPairs
            | Key::IpPairs
            | Key::EmailRecipient
            | Key::NodeIp
            | Key::EtcdEndpoints
            | Key::GroupIpPairs => Kind::List,
            Key::Port | Key::ReleaseAfter | Key::Priority => Kind::Int,
            Key::Interval
            | Key::Timeout
            | Key::ScriptTimeout
            | Key::ConflictGrace
            | Key::FenceAfter
            | Key::AnnounceRefresh
            | Key::LeaseTtl => Kind::Duration,
            Key::Preempt => Kind::Bool,
            Key::PeerIp
            | Key::SecretFile
            | Key::ScriptDir
            | Key::EmailTransport
            | Key::EmailFrom
            | Key::StateDir
            | Key::Group
            | Key::MemberName
            | Key::EtcdCaFile
            | Key::EtcdCertFile
            | Key::EtcdKeyFile
            | Key::EtcdUser
            | Key::EtcdPasswordFile => Kind::Text,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The known key closest to a misspelt one, if any is close enough to be a likely typo.
pub(super) fn suggest(name: &str, format: Format) -> Option<&'static str> {
    // Long garbage gets no suggestion; this also bounds the quadratic distance below.
    if name.len() > 64 {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    let strip = |s: &str| -> String {
        let s = s.to_ascii_uppercase();
        s.strip_prefix("FAILOVER_").map(str::to_string).unwrap_or(s)
    };
    let wanted = strip(&upper);
    Key::ALL
        .into_iter()
        .filter_map(|k| {
            let candidate = k.name(format);
            let known = strip(candidate);
            let d = edit_distance(&wanted, &known);
            let limit = (known.len() / 3).clamp(1, 3);
            let is_prefix = wanted.len() >= 4
                && (known.starts_with(wanted.as_str()) || wanted.starts_with(known.as_str()));
            (d <= limit || is_prefix).then_some((d, candidate))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance, so that a swapped pair of letters counts as one typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // Rows i-2, i-1 and i of the usual table.
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for (i, &ca) in a.iter().enumerate() {
        cur.iter_mut().for_each(|c| *c = 0);
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX) + 1;
            let ins = cur.get(j).copied().unwrap_or(usize::MAX - 1) + 1;
            let sub = prev.get(j).copied().unwrap_or(usize::MAX - 1) + cost;
            let mut best = del.min(ins).min(sub);
            let swapped = i > 0
                && j > 0
                && a.get(i - 1) == Some(&cb)
                && b.get(j - 1) == Some(&ca)
                && ca != cb;
            if swapped {
                if let Some(t) = prev2.get(j - 1) {
                    best = best.min(t + 1);
                }
            }
            if let Some(c) = cur.get_mut(j + 1) {
                *c = best;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

/// The settings a file leaves alone.
pub(super) fn defaults(source: &Path) -> Settings {
    Settings {
        source: source.to_path_buf(),
        bcast_ips: Vec::new(),
        peer_ip: None,
        peer_ip_pairs: Vec::new(),
        email_recipients: Vec::new(),
        node_ips: Vec::new(),
        port: super::DEFAULT_PORT,
        interval: Duration::from_secs(1),
        timeout: None,
        release_after: 3,
        conflict_grace: crate::failover::DEFAULT_CONFLICT_GRACE,
        fence_after: None,
        ip_pairs: Vec::new(),
        announce_refresh: None,
        secret_file: None,
        script_dir: default_script_dir(),
        script_timeout: Duration::from_secs(60),
        email_transport: "smtp://localhost:25".to_string(),
        email_from: None,
        state_dir: PathBuf::from("/var/run/ipfailover"),
        etcd_endpoints: Vec::new(),
        group: "ipfailover".to_string(),
        group_ip_pairs: Vec::new(),
        priority: 100,
        lease_ttl: Duration::from_secs(3),
        preempt: false,
        member_name: None,
        etcd_ca_file: None,
        etcd_cert_file: None,
        etcd_key_file: None,
        etcd_user: None,
        etcd_password_file: None,
        warnings: Vec::new(),
    }
}

fn default_script_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/IPFailover")
    } else {
        PathBuf::from("/etc/ipfailover")
    }
}

/// Collects the values of one file and every problem with them.
#[derive(Debug)]
pub(super) struct Builder<'a> {
    file: &'a Path,
    format: Format,
    settings: Settings,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Line of the last assignment of each key, to warn about overrides.
    set_on: [Option<usize>; KEYS],
    /// Keys with a bad value: not also reported as missing.
    invalid: [bool; KEYS],
}

impl<'a> Builder<'a> {
    pub(super) fn new(file: &'a Path, format: Format) -> Self {
        Builder {
            file,
            format,
            settings: defaults(file),
            errors: Vec::new(),
            warnings: Vec::new(),
            set_on: [None; KEYS],
            invalid: [false; KEYS],
        }
    }

    fn located(&self, line: Option<usize>, key: Option<&str>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            key: key.map(str::to_string),
            message,
        }
    }

    /// Records a problem that is not about one known key's value (syntax, unknown keys).
    pub(super) fn error(&mut self, line: Option<usize>, key: Option<&str>, message: String) {
        let e = self.located(line, key, message);
        self.errors.push(e);
    }

    /// Records a finding that does not stop the daemon.
    pub(super) fn warn(&mut self, line: Option<usize>, key: Option<&str>, message: String) {
        let w = self.located(line, key, message);
        self.warnings.push(w);
    }

    /// Records a bad value for a known key, which is then not also reported as missing.
    pub(super) fn bad(&mut self, key: Key, line: usize, message: String) {
        self.invalid[key.index()] = true;
        self.error(Some(line), Some(key.name(self.format)), message);
    }

    /// Reports a key in our namespace that we do not know: most likely a typo, which would
    /// otherwise silently leave a default in force.
    pub(super) fn unknown_key(&mut self, name: &str, line: usize) {
        let known: Vec<&str> = Key::ALL.iter().map(|k| k.name(self.format)).collect();
        let hint = match suggest(name, self.format) {
            Some(s) => format!(" (did you mean {s}?)"),
            None => String::new(),
        };
        let message = format!("unknown key{hint}; known keys are {}", known.join(", "));
        self.error(Some(line), Some(name), message);
    }

    /// Notes an assignment; a later one wins, as when the shell sources the file.
    fn assigned(&mut self, key: Key, line: usize) {
        if let Some(previous) = self.set_on[key.index()] {
            let message = format!("also set on line {previous}; this later value wins");
            self.warn(Some(line), Some(key.name(self.format)), message);
        }
        self.set_on[key.index()] = Some(line);
    }

    fn reset(&mut self, key: Key) {
        let d = defaults(self.file);
        let s = &mut self.settings;
        match key {
            Key::BcastIps => s.bcast_ips = d.bcast_ips,
            Key::PeerIp => s.peer_ip = d.peer_ip,
            Key::PeerIpPairs => s.peer_ip_pairs = d.peer_ip_pairs,
            Key::EmailRecipient => s.email_recipients = d.email_recipients,
            Key::NodeIp => s.node_ips = d.node_ips,
            Key::Port => s.port = d.port,
            Key::Interval => s.interval = d.interval,
            Key::Timeout => s.timeout = d.timeout,
            Key::ReleaseAfter => s.release_after = d.release_after,
            Key::ConflictGrace => s.conflict_grace = d.conflict_grace,
            Key::FenceAfter => s.fence_after = d.fence_after,
            Key::IpPairs => s.ip_pairs = d.ip_pairs,
            Key::AnnounceRefresh => s.announce_refresh = d.announce_refresh,
            Key::SecretFile => s.secret_file = d.secret_file,
            Key::ScriptDir => s.script_dir = d.script_dir,
            Key::ScriptTimeout => s.script_timeout = d.script_timeout,
            Key::EmailTransport => s.email_transport = d.email_transport,
            Key::EmailFrom => s.email_from = d.email_from,
            Key::StateDir => s.state_dir = d.state_dir,
            Key::EtcdEndpoints => s.etcd_endpoints = d.etcd_endpoints,
            Key::Group => s.group = d.group,
            Key::GroupIpPairs => s.group_ip_pairs = d.group_ip_pairs,
            Key::Priority => s.priority = d.priority,
            Key::LeaseTtl => s.lease_ttl = d.lease_ttl,
            Key::Preempt => s.preempt = d.preempt,
            Key::MemberName => s.member_name = d.member_name,
            Key::EtcdCaFile => s.etcd_ca_file = d.etcd_ca_file,
            Key::EtcdCertFile => s.etcd_cert_file = d.etcd_cert_file,
            Key::EtcdKeyFile => s.etcd_key_file = d.etcd_key_file,
            Key::EtcdUser => s.etcd_user = d.etcd_user,
            Key::EtcdPasswordFile => s.etcd_password_file = d.etcd_password_file,
        }
    }

    /// Applies a value written as a string. Empty means unset, as Apple's tools write
    /// `FAILOVER_X=""` for a key they do not use.
    pub(super) fn set_text(&mut self, key: Key, text: &str, line: usize) {
        self.assigned(key, line);
        if key.kind() == Kind::List {
            let items = split_list(key, text)
                .map(|s| (s.to_string(), line))
                .collect();
            self.apply_items(key, items);
            return;
        }
        let text = text.trim();
        if text.is_empty() {
            self.reset(key);
            return;
        }
        if text.contains(char::is_control) {
            // A mail transport may hold a password: it is never shown.
            let shown = match key {
                Key::EmailTransport => super::render::redact_transport(text),
                _ => text.to_string(),
            };
            self.bad(
                key,
                line,
                format!("control characters are not allowed, got {shown:?}"),
            );
            return;
        }
        match key.kind() {
            Kind::Int => match parse_int(text) {
                Some(v) => self.apply_int(key, v, Some(text), line),
                None => {
                    let message = format!("{}, got {text:?}", int_expectation(key));
                    self.bad(key, line, message);
                }
            },
            Kind::Duration => match parse_duration(text) {
                Ok(d) => self.apply_duration(key, d, text, line),
                Err(message) => self.bad(key, line, message),
            },
            Kind::Bool => match text.to_ascii_lowercase().as_str() {
                "yes" | "true" => self.apply_bool(key, true),
                "no" | "false" => self.apply_bool(key, false),
                _ => self.bad(key, line, format!("expected yes or no, got {text:?}")),
            },
            Kind::Text | Kind::List => self.apply_text(key, text, line),
        }
    }

    /// Applies a list whose items may each come from a different line (a TOML array); every
    /// item is split like a single string would be, so both spellings mean the same.
    pub(super) fn set_items(&mut self, key: Key, items: Vec<(String, usize)>, line: usize) {
        self.assigned(key, line);
        let items = items
            .iter()
            .flat_map(|(s, l)| split_list(key, s).map(move |part| (part.to_string(), *l)))
            .collect();
        self.apply_items(key, items);
    }

    /// Applies a value written as a TOML boolean.
    pub(super) fn set_bool(&mut self, key: Key, value: bool, line: usize) {
        self.assigned(key, line);
        self.apply_bool(key, value);
    }

    fn apply_bool(&mut self, key: Key, value: bool) {
        if key == Key::Preempt {
            self.settings.preempt = value;
        }
    }

    /// Applies a value written as a TOML integer.
    pub(super) fn set_int(&mut self, key: Key, value: i64, line: usize) {
        self.assigned(key, line);
        self.apply_int(key, value, None, line);
    }

    fn apply_int(&mut self, key: Key, value: i64, text: Option<&str>, line: usize) {
        let got = match text {
            Some(t) => format!("{t:?}"),
            None => value.to_string(),
        };
        let expected = int_expectation(key);
        match key {
            Key::Port => match u16::try_from(value) {
                Ok(p) if p != 0 => self.settings.port = p,
                _ => self.bad(key, line, format!("{expected}, got {got}")),
            },
            Key::ReleaseAfter => match u32::try_from(value) {
                Ok(n) if (1..=MAX_RELEASE_AFTER).contains(&n) => self.settings.release_after = n,
                _ => self.bad(key, line, format!("{expected}, got {got}")),
            },
            Key::Priority => match u8::try_from(value) {
                Ok(p) if p != 0 => self.settings.priority = p,
                _ => self.bad(key, line, format!("{expected}, got {got}")),
            },
            _ => self.bad(key, line, format!("expected a string, got integer {got}")),
        }
    }

    fn apply_duration(&mut self, key: Key, d: Duration, text: &str, line: usize) {
        let (min, max, too_small) = match key {
            Key::Interval => (MIN_INTERVAL, MAX_INTERVAL, ""),
            Key::Timeout => (MIN_TIMEOUT, MAX_TIMEOUT, ""),
            Key::ConflictGrace => (MIN_CONFLICT_GRACE, MAX_TIMEOUT, ""),
            Key::FenceAfter => (MIN_FENCE_AFTER, MAX_TIMEOUT, ""),
            Key::AnnounceRefresh => (MIN_ANNOUNCE_REFRESH, MAX_TIMEOUT, ""),
            Key::LeaseTtl => (MIN_LEASE_TTL, MAX_LEASE_TTL, ""),
            _ => (
                Duration::from_nanos(1),
                MAX_SCRIPT_TIMEOUT,
                "greater than 0 and ",
            ),
        };
        if d < min || d > max {
            let range = if too_small.is_empty() {
                format!("from {} to {}", format_duration(min), format_duration(max))
            } else {
                format!("{too_small}at most {}", format_duration(max))
            };
            self.bad(
                key,
                line,
                format!("expected a duration {range}, got {text:?}"),
            );
            return;
        }
        if key == Key::LeaseTtl && d.subsec_nanos() != 0 {
            // etcd counts leases in whole seconds: a fraction would be rounded behind the
            // administrator's back, and the fencing deadline with it.
            self.bad(
                key,
                line,
                format!("expected whole seconds (etcd's leases count in seconds), got {text:?}"),
            );
            return;
        }
        match key {
            Key::Interval => self.settings.interval = d,
            Key::Timeout => self.settings.timeout = Some(d),
            Key::ConflictGrace => self.settings.conflict_grace = d,
            Key::FenceAfter => self.settings.fence_after = Some(d),
            Key::AnnounceRefresh => self.settings.announce_refresh = Some(d),
            Key::LeaseTtl => self.settings.lease_ttl = d,
            _ => self.settings.script_timeout = d,
        }
    }

    fn apply_text(&mut self, key: Key, text: &str, line: usize) {
        match key {
            Key::PeerIp => match text.parse::<IpAddr>() {
                Ok(ip) => self.settings.peer_ip = Some(ip),
                Err(_) => self.bad(
                    key,
                    line,
                    format!("expected an IPv4 or IPv6 address, got {text:?}"),
                ),
            },
            Key::Group | Key::MemberName => match check_name(text) {
                Ok(()) if key == Key::Group => self.settings.group = text.to_string(),
                Ok(()) => self.settings.member_name = Some(text.to_string()),
                Err(message) => self.bad(key, line, message),
            },
            Key::EtcdUser => self.settings.etcd_user = Some(text.to_string()),
            Key::EtcdCaFile | Key::EtcdCertFile | Key::EtcdKeyFile | Key::EtcdPasswordFile => {
                if !text.starts_with('/') {
                    let message = format!("expected an absolute path, got {text:?}");
                    self.bad(key, line, message);
                    return;
                }
                let path = Some(PathBuf::from(text));
                match key {
                    Key::EtcdCaFile => self.settings.etcd_ca_file = path,
                    Key::EtcdCertFile => self.settings.etcd_cert_file = path,
                    Key::EtcdKeyFile => self.settings.etcd_key_file = path,
                    _ => self.settings.etcd_password_file = path,
                }
            }
            Key::SecretFile | Key::ScriptDir | Key::StateDir => {
                // Daemons run from launchd or systemd with `/` as working directory, so a
                // relative path would not mean what it meant in the administrator's shell.
                if !text.starts_with('/') {
                    let message = format!("expected an absolute path, got {text:?}");
                    self.bad(key, line, message);
                    return;
                }
                let path = PathBuf::from(text);
                match key {
                    Key::SecretFile => self.settings.secret_file = Some(path),
                    Key::ScriptDir => self.settings.script_dir = path,
                    _ => self.settings.state_dir = path,
                }
            }
            Key::EmailTransport => match check_transport(text) {
                Ok(()) => self.settings.email_transport = text.to_string(),
                Err(message) => self.bad(key, line, message),
            },
            Key::EmailFrom => match check_mail_address(text) {
                Ok(()) => self.settings.email_from = Some(text.to_string()),
                Err(message) => self.bad(key, line, format!("expected {message}")),
            },
            _ => self.bad(key, line, "internal: not a text key".to_string()),
        }
    }

    fn apply_items(&mut self, key: Key, items: Vec<(String, usize)>) {
        let mut ips = Vec::new();
        let mut pairs: Vec<AddrPair> = Vec::new();
        // Address -> position in `pairs`, so that a long list is checked in linear time.
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        let mut mails = Vec::new();
        let mut urls = Vec::new();
        for (item, line) in items {
            if item.contains(char::is_control) {
                let message = format!("control characters are not allowed, got {item:?}");
                self.bad(key, line, message);
                continue;
            }
            match key {
                Key::EtcdEndpoints => match check_endpoint(&item) {
                    Ok(url) => urls.push(url),
                    Err(message) => self.bad(key, line, message),
                },
                Key::PeerIpPairs | Key::GroupIpPairs | Key::IpPairs => match item.parse::<AddrPair>() {
                    Ok(pair) => {
                        let first = seen.get(&pair.addr).and_then(|&i| pairs.get(i));
                        if let Some(first) = first {
                            let message = format!(
                                "{} is listed twice ({first} and {pair}); each address can be \
                                 taken over only once",
                                pair.addr
                            );
                            self.bad(key, line, message);
                        } else {
                            seen.insert(pair.addr, pairs.len());
                            pairs.push(pair);
                        }
                    }
                    Err(e) => self.bad(
                        key,
                        line,
                        format!("{e}; expected space-separated iface:address[/prefix] like en0:10.0.0.100"),
                    ),
                },
                Key::EmailRecipient => match check_mail_address(&item) {
                    Ok(()) => mails.push(item),
                    Err(message) => self.bad(
                        key,
                        line,
                        format!("expected comma- or space-separated {message}"),
                    ),
                },
                _ => match item.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => self.bad(
                        key,
                        line,
                        format!("expected space-separated IPv4 or IPv6 addresses, got {item:?}"),
                    ),
                },
            }
        }
        match key {
            Key::BcastIps => self.settings.bcast_ips = ips,
            Key::NodeIp => self.settings.node_ips = ips,
            Key::PeerIpPairs => self.settings.peer_ip_pairs = pairs,
            Key::IpPairs => self.settings.ip_pairs = pairs,
            Key::GroupIpPairs => self.settings.group_ip_pairs = pairs,
            Key::EtcdEndpoints => self.settings.etcd_endpoints = urls,
            _ => self.settings.email_recipients = mails,
        }
    }

    /// Checks what the reading daemon cannot do without, then hands out the settings or every
    /// problem in file order.
    pub(super) fn finish(
        mut self,
        role: Role,
        check_required: bool,
    ) -> Result<Settings, ConfigErrors> {
        if check_required {
            let s = &self.settings;
            let mut missing: Vec<(Key, &str)> = Vec::new();
            match role {
                Role::Heartbeatd if s.bcast_ips.is_empty() => missing.push((
                    Key::BcastIps,
                    "required by heartbeatd: the addresses heartbeats are sent to (the \
                     broadcast addresses of the public and the private subnet)",
                )),
                // Group mode: the group's addresses, not the pair's keys.
                Role::Failoverd
                    if !s.etcd_endpoints.is_empty() || self.invalid[Key::EtcdEndpoints.index()] =>
                {
                    missing.extend(s.group_ip_pairs.is_empty().then_some((
                        Key::GroupIpPairs,
                        "required in group mode (FAILOVER_ETCD_ENDPOINTS is set): the \
                         iface:address[/prefix] entries the group moves, like \
                         eth0:198.51.100.100",
                    )));
                }
                Role::Failoverd => {
                    if s.peer_ip.is_none() {
                        missing.push((
                            Key::PeerIp,
                            "required by failoverd: the primary's public address, the host \
                             it watches",
                        ));
                    }
                    if s.peer_ip_pairs.is_empty() {
                        missing.push((
                            Key::PeerIpPairs,
                            "required by failoverd: the iface:address[/prefix] entries it \
                             takes over, like en0:10.0.0.100",
                        ));
                    }
                }
                _ => {}
            }
            for (key, message) in missing {
                if !self.invalid[key.index()] {
                    self.error(None, Some(key.name(self.format)), message.to_string());
                }
            }
        }
        self.check_group_keys(role);
        // Stable: problems on one line keep the order they were found in; missing keys last.
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        self.warnings.sort_by_key(|w| w.line.unwrap_or(usize::MAX));
        let mut settings = self.settings;
        settings.warnings = self.warnings.iter().map(ToString::to_string).collect();
        Ok(settings)
    }
}

impl Builder<'_> {
    /// The group keys that only make sense together.
    fn check_group_keys(&mut self, role: Role) {
        let s = &self.settings;
        let group_mode = !s.etcd_endpoints.is_empty();
        let mut problems: Vec<(Key, String)> = Vec::new();
        let format = self.format;
        let name = |k: Key| k.name(format);
        if role == Role::Failoverd
            && group_mode
            && s.peer_ip.is_some()
            && s.peer_ip_pairs.is_empty()
        {
            let line = self.set_on[Key::PeerIp.index()];
            let message = format!(
                "ignored in group mode ({} is set): a group member watches no peer",
                name(Key::EtcdEndpoints)
            );
            self.warn(line, Some(name(Key::PeerIp)), message);
        }
        let s = &self.settings;
        if role == Role::Failoverd && group_mode && !s.peer_ip_pairs.is_empty() {
            problems.push((
                Key::PeerIpPairs,
                format!(
                    "a failoverd is either a pair's secondary ({}) or a group member ({}), not \
                     both: run the group on its own host, or drop one of them",
                    name(Key::PeerIpPairs),
                    name(Key::GroupIpPairs)
                ),
            ));
        }
        if role == Role::Failoverd && !group_mode && !self.invalid[Key::EtcdEndpoints.index()] {
            for k in [Key::GroupIpPairs] {
                if self.set_on[k.index()].is_some() && !s.group_ip_pairs.is_empty() {
                    problems.push((
                        k,
                        format!(
                            "only means something in group mode: set {} to etcd's URLs",
                            name(Key::EtcdEndpoints)
                        ),
                    ));
                }
            }
        }
        match (&s.etcd_cert_file, &s.etcd_key_file) {
            (Some(_), None) => problems.push((
                Key::EtcdCertFile,
                format!(
                    "a client certificate needs its key: set {} too",
                    name(Key::EtcdKeyFile)
                ),
            )),
            (None, Some(_)) => problems.push((
                Key::EtcdKeyFile,
                format!(
                    "a key needs its certificate: set {} too",
                    name(Key::EtcdCertFile)
                ),
            )),
            _ => {}
        }
        match (&s.etcd_user, &s.etcd_password_file) {
            (Some(_), None) => problems.push((
                Key::EtcdUser,
                format!(
                    "a user needs a password: set {} too",
                    name(Key::EtcdPasswordFile)
                ),
            )),
            (None, Some(_)) => problems.push((
                Key::EtcdPasswordFile,
                format!("a password needs its user: set {} too", name(Key::EtcdUser)),
            )),
            _ => {}
        }
        // A password over http:// goes in clear, and whoever can read it can also change what
        // etcd answers: said at every start, -t and check-config (docs/configuration.md).
        let s = &self.settings;
        let plain: Vec<&str> = s
            .etcd_endpoints
            .iter()
            .filter(|e| e.starts_with("http://"))
            .map(String::as_str)
            .collect();
        if role == Role::Failoverd && s.etcd_user.is_some() && !plain.is_empty() {
            let message = format!(
                "the etcd password goes in clear to {}: anyone on the path can read it, and with \
                 it change the group's keys; use https:// endpoints",
                plain.join(", ")
            );
            let line = self.set_on[Key::EtcdUser.index()];
            self.warn(line, Some(name(Key::EtcdUser)), message);
        }
        for (key, message) in problems {
            if !self.invalid[key.index()] {
                let line = self.set_on[key.index()];
                self.error(line, Some(key.name(self.format)), message);
            }
        }
    }
}

/// A group's or member's name: it becomes part of etcd keys and of a hook directory's path.
fn check_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a name of letters, digits, '-', '_' and '.' (at most 64), got {text:?}"
        ))
    }
}

/// An etcd endpoint: `http://host:port` or `https://host:port`, without a path.
fn check_endpoint(text: &str) -> Result<String, String> {
    let expectation = || {
        format!(
            "expected etcd URLs like http://203.0.113.1:2379 or https://etcd1:2379, got {text:?}"
        )
    };
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(expectation)?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', '@']) || host.contains(char::is_whitespace)
    {
        return Err(expectation());
    }
    Ok(text.strip_suffix('/').unwrap_or(text).to_string())
}

/// Splits at ASCII whitespace (and commas, for mail addresses). Other whitespace stays inside
/// an item, so that `render` writes back exactly what was read.
fn split_list(key: Key, text: &str) -> impl Iterator<Item = &str> {
    let commas = matches!(key, Key::EmailRecipient | Key::EtcdEndpoints);
    text.split(move |c: char| c.is_ascii_whitespace() || (commas && c == ','))
        .filter(|s| !s.is_empty())
}

fn parse_int(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn int_expectation(key: Key) -> String {
    match key {
        Key::Port => "expected a UDP port from 1 to 65535".to_string(),
        Key::Priority => "expected a priority from 1 to 255".to_string(),
        _ => format!("expected a whole number from 1 to {MAX_RELEASE_AFTER}"),
    }
}

/// Says what a mail address must look like when `text` is not one. Deliberately loose:
/// it catches a wrong separator or a missing domain, and leaves the rest to the mail server.
pub(super) fn check_mail_address(text: &str) -> Result<(), String> {
    let expectation = format!("mail addresses like admin@example.com, got {text:?}");
    let (local, domain) = text.split_once('@').ok_or_else(|| expectation.clone())?;
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if local.is_empty()
        || domain.is_empty()
        || local.contains(bad_char)
        || domain.contains(bad_char)
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(expectation);
    }
    Ok(())
}

fn check_transport(text: &str) -> Result<(), String> {
    let ok = if let Some(rest) = text
        .strip_prefix("smtp://")
        .or_else(|| text.strip_prefix("smtps://"))
    {
        !rest.is_empty() && !rest.contains(char::is_whitespace)
    } else if text == "sendmail" {
        true
    } else if let Some(path) = text.strip_prefix("sendmail:") {
        path.starts_with('/')
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected smtp://host:port, smtps://host:port, sendmail or sendmail:/absolute/path, \
             got {:?}",
            super::render::redact_transport(text)
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Key::ALL {
            assert_eq!(
                Key::from_name(k.hostconfig_name(), Format::Hostconfig),
                Some(k)
            );
            assert_eq!(Key::from_name(k.toml_name(), Format::Toml), Some(k));
            assert_eq!(
                k.hostconfig_name(),
                format!("FAILOVER_{}", k.toml_name().to_ascii_uppercase())
            );
        }
        for (i, k) in Key::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn suggestions() {
        for (typo, format, expected) in [
            (
                "FAILOVER_TIMOUT",
                Format::Hostconfig,
                Some("FAILOVER_TIMEOUT"),
            ),
            (
                "FAILOVER_TIEMOUT",
                Format::Hostconfig,
                Some("FAILOVER_TIMEOUT"),
            ),
            ("FAILOVER_PROT", Format::Hostconfig, Some("FAILOVER_PORT")),
            (
                "FAILOVER_EMAIL_RECIPIENTS",
                Format::Hostconfig,
                Some("FAILOVER_EMAIL_RECIPIENT"),
            ),
            (
                "FAILOVER_BCAST_IP",
                Format::Hostconfig,
                Some("FAILOVER_BCAST_IPS"),
            ),
            (
                "FAILOVER_SECRET",
                Format::Hostconfig,
                Some("FAILOVER_SECRET_FILE"),
            ),
            (
                "FAILOVER_NODE_IPS",
                Format::Hostconfig,
                Some("FAILOVER_NODE_IP"),
            ),
            ("FAILOVER_WHATEVER", Format::Hostconfig, None),
            ("FAILOVER_X", Format::Hostconfig, None),
            ("intervall", Format::Toml, Some("interval")),
            ("state_directory", Format::Toml, Some("state_dir")),
            ("colour", Format::Toml, None),
        ] {
            assert_eq!(suggest(typo, format), expected, "{typo}");
        }
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "acb"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn mail_addresses() {
        for good in [
            "admin@example.com",
            "a.b+c@mail.example.org",
            "root@localhost",
        ] {
            assert_eq!(check_mail_address(good), Ok(()), "{good}");
        }
        for bad in [
            "admin",
            "@example.com",
            "admin@",
            "a@b@c",
            "a b@c",
            "<a@b>",
            "a@.b",
            "a@b.",
            "a@b..c",
            "Admin <a@b>",
        ] {
            assert!(check_mail_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transports() {
        for good in [
            "smtp://localhost:25",
            "smtps://mail.example.com:465",
            "smtp://user:pass@mail.example.com:587?tls=required",
            "sendmail",
            "sendmail:/usr/sbin/sendmail",
        ] {
            assert_eq!(check_transport(good), Ok(()), "{good}");
        }
        for bad in [
            "smtp://",
            "http://x",
            "sendmail:usr/sbin/sendmail",
            "sendmailx",
            "mail",
        ] {
            assert!(check_transport(bad).is_err(), "{bad}");
        }
    }
}
