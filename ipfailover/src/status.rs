//! The status file each daemon keeps in `FAILOVER_STATE_DIR`: what failoverctl and monitoring
//! read. Schema version 1; fields are only ever added.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The schema version written in every file.
pub const SCHEMA: u32 = 1;

/// A status file is rewritten on every change and at least this often (docs/status.md).
pub const REFRESH: Duration = Duration::from_secs(5);

/// Whether a daemon awake at `now` should rewrite its status file, last written at `written`,
/// when it expects to wake again `next_wake` from now anyway (a heartbeat interval), or has
/// no such expectation (`None`): it writes at the last of those wakes before the refresh is
/// due, sparing a wake of its own, which costs about as much as the write.
pub fn refresh_due(now: Instant, written: Instant, next_wake: Option<Duration>) -> bool {
    now + next_wake.unwrap_or(Duration::ZERO) >= written + REFRESH
}

/// How many transitions a status file keeps.
pub const MAX_TRANSITIONS: usize = 20;

/// Declares a word of the status file: an enum whose variants are spelled as given, written
/// and read as that string, and `Other` for a word this version does not know (a newer
/// daemon's, or a file written by hand): the daemons write the variants, failoverctl matches
/// them, and neither spells a state itself.
macro_rules! status_word {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A word this version does not know, as it was written.
            Other(String),
        }

        impl $name {
            /// Every word this version knows, in the order of docs/status.md.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The word as the status file spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(word) => word,
                }
            }
        }

        impl From<&str> for $name {
            fn from(word: &str) -> $name {
                match word {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl From<String> for $name {
            fn from(word: String) -> $name {
                match $name::from(word.as_str()) {
                    $name::Other(_) => $name::Other(word),
                    known => known,
                }
            }
        }

        impl From<$name> for String {
            fn from(word: $name) -> String {
                match word {
                    $name::Other(word) => word,
                    known => known.as_str().to_string(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_word! {
    /// A daemon's state (`state`): a pair's failoverd, a group member's, heartbeatd's.
    DaemonState {
        /// failoverd has just started: no takeover for one timeout.
        BootGrace = "boot-grace",
        /// failoverd watches a peer that holds its addresses.
        Monitoring = "monitoring",
        /// The peer is silent, but another host answers for an address: no takeover.
        Conflict = "conflict",
        /// The peer answers for its address, and so does a third host.
        ThirdHost = "third-host",
        /// failoverd is taking the peer's addresses over.
        Acquiring = "acquiring",
        /// failoverd holds some of the peer's addresses.
        Acquired = "acquired",
        /// failoverd is giving addresses back.
        Releasing = "releasing",
        /// The daemon has stopped (heartbeatd: said goodbye).
        Stopped = "stopped",
        /// A group member asking etcd for a lease.
        Joining = "joining",
        /// A group member with a lease.
        Member = "member",
        /// A group member without a lease (etcd unreachable, or the lease lost).
        NoLease = "no-lease",
        /// heartbeatd sending heartbeats.
        Sending = "sending",
    }
}

impl DaemonState {
    /// The states of failoverd: a pair's, then a group member's.
    pub const FAILOVERD: [DaemonState; 11] = [
        DaemonState::BootGrace,
        DaemonState::Monitoring,
        DaemonState::Conflict,
        DaemonState::ThirdHost,
        DaemonState::Acquiring,
        DaemonState::Acquired,
        DaemonState::Releasing,
        DaemonState::Stopped,
        DaemonState::Joining,
        DaemonState::Member,
        DaemonState::NoLease,
    ];

    /// The states of heartbeatd.
    pub const HEARTBEATD: [DaemonState; 2] = [DaemonState::Sending, DaemonState::Stopped];

    /// Whether failoverd is taking, holding or giving back the peer's addresses: failed over.
    pub fn failed_over(&self) -> bool {
        matches!(
            self,
            DaemonState::Acquiring | DaemonState::Acquired | DaemonState::Releasing
        )
    }
}

impl From<crate::failover::State> for DaemonState {
    fn from(state: crate::failover::State) -> DaemonState {
        DaemonState::from(state.as_str())
    }
}

status_word! {
    /// How a link's heartbeats arrive (`links[].state`).
    LinkState {
        /// Heard within the timeout.
        Up = "up",
        /// Not heard, and no other link is: the peer is silent.
        Silent = "silent",
        /// Not heard while another link is: redundancy is gone.
        Lost = "lost",
    }
}

status_word! {
    /// What failoverd makes of the peer (`peer_state`).
    PeerState {
        /// Not heard since failoverd started (or since the peer changed).
        Unknown = "unknown",
        /// Verified heartbeats within the timeout.
        Alive = "alive",
        /// Its heartbeatd said goodbye and its host stays up.
        DaemonStopped = "daemon-stopped",
        /// It said goodbye and its host goes down.
        Leaving = "leaving",
        /// No heartbeat for the timeout.
        Silent = "silent",
    }
}

impl From<crate::failover::PeerState> for PeerState {
    fn from(state: crate::failover::PeerState) -> PeerState {
        PeerState::from(state.as_str())
    }
}

status_word! {
    /// Who answers for an address failoverd takes over (`addresses[].holder`).
    AddressHolder {
        /// This host.
        Here = "here",
        /// The peer.
        Peer = "peer",
        /// Another host (a conflict).
        AnotherHost = "other",
        /// Nobody: an outage.
        Nobody = "nobody",
        /// failoverd cannot tell.
        Unknown = "unknown",
    }
}

impl From<crate::failover::Holder> for AddressHolder {
    fn from(holder: crate::failover::Holder) -> AddressHolder {
        AddressHolder::from(holder.as_str())
    }
}

status_word! {
    /// Where one of heartbeatd's service addresses is (`service_addresses[].state`).
    ServiceState {
        /// On its interface.
        Held = "held",
        /// Waiting for failoverd to say it holds none of it.
        Waiting = "waiting",
        /// Being added or removed.
        Changing = "changing",
    }
}

status_word! {
    /// Where one of a group's addresses is on this member (`group.addresses[].state`).
    GroupAddressState {
        /// Not ours, not being acquired.
        Free = "free",
        /// Unheld: waiting this member's priority steps.
        Waiting = "waiting",
        /// The create-if-absent transaction is in flight.
        Trying = "trying",
        /// Won; probing the LAN before adding.
        Probing = "probing",
        /// Won, but another host answers for it: not added while it does.
        Conflict = "conflict",
        /// Won; its hooks and the add are under way.
        Acquiring = "acquiring",
        /// On the interface, and ours in etcd.
        Held = "held",
        /// Being given back.
        Releasing = "releasing",
    }
}

impl From<crate::group::AddrState> for GroupAddressState {
    fn from(state: crate::group::AddrState) -> GroupAddressState {
        GroupAddressState::from(state.as_str())
    }
}

/// One daemon's state, as written to `<FAILOVER_STATE_DIR>/<daemon>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Schema version ([`SCHEMA`]).
    pub schema: u32,
    /// `failoverd` or `heartbeatd`.
    pub daemon: String,
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// This host's name.
    pub hostname: String,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When this file was written, ms since the Unix epoch (staleness is judged from it).
    pub updated_at_ms: u64,
    /// The longest gap between two writes while the daemon runs, in ms.
    pub refresh_ms: u64,
    /// The longest turn of the daemon's loop since its start, in ms: how long a datagram, a
    /// command or a deadline may have waited beyond its time.
    #[serde(default)]
    pub worst_turn_ms: u64,
    /// What the daemon does now ([`DaemonState`]).
    pub state: DaemonState,
    /// The watched peer (failoverd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The timeout in force (failoverd), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The interval: heartbeatd's own, or the one the peer announced (failoverd), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Where heartbeats go (heartbeatd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// How sending to each destination goes (heartbeatd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<SendStatus>,
    /// Another host answering for one of the addresses (failoverd): the takeover is blocked,
    /// or (`holding`) both hosts answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<ConflictStatus>,
    /// The peer's wall clock minus this host's, ms, as of its latest heartbeat (failoverd):
    /// reported, never a reason to drop a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_clock_offset_ms: Option<i64>,
    /// What failoverd makes of the peer ([`PeerState`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_state: Option<PeerState>,
    /// A third host answering for an address the peer answers for (failoverd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_host: Option<ThirdHostStatus>,
    /// The service addresses heartbeatd manages (`FAILOVER_IP_PAIRS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_addresses: Vec<ServiceAddressStatus>,
    /// Whether the peer's current boot has answered a challenge (failoverd, with a secret):
    /// until it has, its heartbeats do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_verified: Option<bool>,
    /// The links the peer's heartbeats arrive on (failoverd).
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    /// The addresses taken over (failoverd) and whether they are held now.
    #[serde(default)]
    pub addresses: Vec<AddressStatus>,
    /// Takeovers paused by an administrator (failoverd): since when, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStatus>,
    /// The addresses are held because an administrator took them over (failoverd): the
    /// release rule is off until `failoverctl release`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_by_hand: bool,
    /// The group (failoverd in group mode, docs/groups.md): members, holders, etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupStatus>,
    /// When this daemon last announced any address in its own name (gratuitous ARP /
    /// unsolicited NA), ms since the Unix epoch; absent if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_announcement_ms: Option<u64>,
    /// The latest transitions, oldest first.
    #[serde(default)]
    pub transitions: Vec<TransitionStatus>,
    /// Counters since the start.
    pub counters: CounterStatus,
}

/// One link, as failoverd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The peer's source address on this link.
    pub peer_address: String,
    /// The local interface whose subnet holds it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Age of the last valid heartbeat on it, ms.
    pub last_heartbeat_age_ms: u64,
    /// Valid heartbeats received on it.
    pub heartbeats: u64,
    /// How its heartbeats arrive ([`LinkState`]).
    pub state: LinkState,
}

/// One address failoverd takes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressStatus {
    /// The interface it goes on.
    pub interface: String,
    /// The address.
    pub address: String,
    /// Its prefix length.
    pub prefix: u8,
    /// Whether this host holds it now.
    pub held: bool,
    /// Who answers for it, as far as failoverd can tell ([`AddressHolder`]; `nobody`, an
    /// outage, makes `failoverctl status` say down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<AddressHolder>,
    /// What went wrong the last time it was added or removed, if that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When this host last announced it (gratuitous ARP / unsolicited NA), ms since the Unix
    /// epoch; absent if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_ms: Option<u64>,
}

/// A third host answering for the peer's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThirdHostStatus {
    /// The address.
    pub address: String,
    /// The third host's link-layer address.
    pub mac: String,
    /// The peer's, as its heartbeats give it.
    pub peer_mac: String,
    /// Since when, ms since the Unix epoch.
    pub since_ms: u64,
}

/// A service address heartbeatd manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddressStatus {
    /// The interface it goes on.
    pub interface: String,
    /// The address.
    pub address: String,
    /// Its prefix length.
    pub prefix: u8,
    /// Where it is ([`ServiceState`]).
    pub state: ServiceState,
    /// What went wrong the last time it was added or removed, if that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A pause of takeovers (`failoverctl pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseStatus {
    /// Since when, ms since the Unix epoch.
    pub since_ms: u64,
    /// When it ends by itself, ms since the Unix epoch; absent: until `failoverctl resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// A group as one member sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// This member's name.
    pub member: String,
    /// Its priority.
    pub priority: u8,
    /// Whether a returning higher priority takes its addresses back.
    pub preempt: bool,
    /// The lease TTL, ms.
    pub lease_ttl_ms: u64,
    /// This member's lease id (hex), while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Time left before this member fences itself without a renewal, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_in_ms: Option<u64>,
    /// The etcd endpoint in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether etcd answered the latest request.
    pub etcd_reachable: bool,
    /// Why not, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    /// The revision of the latest view.
    pub revision: i64,
    /// The live members, highest priority first.
    pub members: Vec<MemberStatus>,
    /// Each of the group's addresses.
    pub addresses: Vec<GroupAddressStatus>,
}

/// A live member of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its name.
    pub name: String,
    /// Its priority.
    pub priority: u8,
    /// Seconds its lease has left, as etcd said at the latest ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_left_s: Option<i64>,
    /// Whether it is the member writing this file.
    pub this: bool,
    /// `paused` or `drained` (`failoverctl pause`, `drain`); absent while it takes addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// One of the group's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAddressStatus {
    /// The address.
    pub address: String,
    /// The interface it goes on here.
    pub interface: String,
    /// Its prefix length.
    pub prefix: u8,
    /// The member holding it in etcd, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The epoch (its key's create revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Since when this member has seen that holder, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Where it is here ([`GroupAddressState`]).
    pub state: GroupAddressState,
    /// Whether this host has it on its interface now.
    pub held: bool,
    /// The link of its interface is down here: this member cannot serve it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link_down: bool,
    /// What went wrong the last time it was added or removed here, if that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sending heartbeats to one destination (heartbeatd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendStatus {
    /// `address:port`.
    pub to: String,
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams it refused.
    pub failed: u64,
    /// Whether the latest send failed.
    pub failing: bool,
    /// The latest failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Another host answering for an address failoverd takes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictStatus {
    /// The address.
    pub address: String,
    /// The MAC that answered (`00:00:00:00:00:00` when an IPv6 advertisement named none).
    pub mac: String,
    /// Since when, ms since the Unix epoch.
    pub since_ms: u64,
    /// Whether failoverd holds the address too (a conflict while holding) rather than
    /// refraining from taking it over.
    pub holding: bool,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStatus {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// Why.
    pub reason: String,
    /// How long the state left had lasted, ms.
    pub duration_ms: u64,
}

/// Counters since the start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterStatus {
    /// Valid datagrams accepted from the peer (failoverd) or `released` (heartbeatd).
    pub accepted: u64,
    /// Datagrams dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Heartbeats sent (heartbeatd).
    #[serde(default)]
    pub sent: u64,
    /// Hooks run.
    #[serde(default)]
    pub hooks_run: u64,
    /// Hooks that failed, timed out or were refused.
    #[serde(default)]
    pub hooks_failed: u64,
    /// Mails sent.
    #[serde(default)]
    pub mails_sent: u64,
    /// Failed attempts to send mail (each is retried with back-off).
    #[serde(default)]
    pub mails_failed: u64,
    /// Notices given up after retrying for an hour.
    #[serde(default)]
    pub mails_dropped: u64,
    /// Takeovers completed.
    #[serde(default)]
    pub takeovers: u64,
    /// Releases completed.
    #[serde(default)]
    pub releases: u64,
}

impl Status {
    /// A status with nothing known yet but who writes it.
    pub fn new(
        daemon: &str,
        version: &str,
        pid: u32,
        hostname: &str,
        started_at_ms: u64,
    ) -> Status {
        Status {
            schema: SCHEMA,
            daemon: daemon.to_string(),
            version: version.to_string(),
            pid,
            hostname: hostname.to_string(),
            started_at_ms,
            updated_at_ms: started_at_ms,
            refresh_ms: 0,
            worst_turn_ms: 0,
            // Nothing yet: the daemon fills it in before the first write.
            state: DaemonState::Other(String::new()),
            peer: None,
            timeout_ms: None,
            interval_ms: None,
            destinations: Vec::new(),
            sends: Vec::new(),
            conflict: None,
            peer_clock_offset_ms: None,
            peer_state: None,
            third_host: None,
            service_addresses: Vec::new(),
            peer_verified: None,
            links: Vec::new(),
            addresses: Vec::new(),
            pause: None,
            held_by_hand: false,
            group: None,
            last_announcement_ms: None,
            transitions: Vec::new(),
            counters: CounterStatus::default(),
        }
    }

    /// Dates the status for a write at `wall_ms`, with the promise of the next by [`REFRESH`],
    /// and copies the datagram counters of the daemon's receiver.
    pub fn stamp(&mut self, wall_ms: u64, received: &crate::receive::Counters) {
        self.updated_at_ms = wall_ms;
        self.refresh_ms = u64::try_from(REFRESH.as_millis()).unwrap_or(u64::MAX);
        self.counters.accepted = received.accepted;
        self.counters.dropped = received
            .dropped
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
    }

    /// The daemon's state in one line, as systemd shows it (`STATUS=`, `systemctl status`):
    /// `holding 198.51.100.10 since 12:01:07 UTC (peer silent)`, `monitoring 198.51.100.10: 2
    /// links up`, `member web-1 of group web: holding 198.51.100.10 since 12:01:07 UTC; 3
    /// members`, `sending every 100ms to 2 destinations`. Times are this status's own (UTC,
    /// the date added beyond 12 hours).
    pub fn summary(&self) -> String {
        let now = self.updated_at_ms;
        let list = |v: Vec<&str>| {
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.join(", ")
            }
        };
        if let Some(g) = &self.group {
            let who = format!("member {} of group {}", g.member, g.name);
            return match self.state.as_str() {
                "member" => {
                    let held: Vec<&GroupAddressStatus> =
                        g.addresses.iter().filter(|a| a.held).collect();
                    let holding = if held.is_empty() {
                        "holding nothing".to_string()
                    } else {
                        let since = held.iter().filter_map(|a| a.since_ms).min();
                        format!(
                            "holding {}{}",
                            list(held.iter().map(|a| a.address.as_str()).collect()),
                            since.map_or(String::new(), |t| format!(
                                " since {} UTC",
                                crate::timefmt::wall(t, now)
                            ))
                        )
                    };
                    let etcd = if g.etcd_reachable {
                        String::new()
                    } else {
                        "; etcd does not answer".to_string()
                    };
                    format!("{who}: {holding}; {} members{etcd}", g.members.len())
                }
                "joining" => format!("{who}: joining (asking etcd for a lease)"),
                "no-lease" => format!(
                    "{who}: no lease{}",
                    g.etcd_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (etcd: {e})"))
                ),
                other => format!("{who}: {other}"),
            };
        }
        if self.daemon == "heartbeatd" {
            if self.state.as_str() != "sending" {
                return self.state.to_string();
            }
            let every = self.interval_ms.map_or(String::new(), |i| {
                format!(" every {}", crate::timefmt::span(i))
            });
            let failing = self.sends.iter().filter(|s| s.failing).count();
            let held: Vec<&str> = self
                .service_addresses
                .iter()
                .filter(|a| a.state.as_str() == "held")
                .map(|a| a.address.as_str())
                .collect();
            let mut line = format!(
                "sending{every} to {} destination{}",
                self.destinations.len(),
                if self.destinations.len() == 1 {
                    ""
                } else {
                    "s"
                }
            );
            if failing > 0 {
                line.push_str(&format!(" ({failing} failing)"));
            }
            if !held.is_empty() {
                line.push_str(&format!("; holding {}", list(held)));
            }
            return line;
        }
        let peer = self.peer.as_deref().unwrap_or("the peer");
        let held: Vec<&str> = self
            .addresses
            .iter()
            .filter(|a| a.held)
            .map(|a| a.address.as_str())
            .collect();
        let all: Vec<&str> = self.addresses.iter().map(|a| a.address.as_str()).collect();
        let up = self
            .links
            .iter()
            .filter(|l| l.state.as_str() == "up")
            .count();
        let links = format!("{up} link{} up", if up == 1 { "" } else { "s" });
        let mut line = match self.state.as_str() {
            "acquired" => {
                let since = self
                    .transitions
                    .iter()
                    .rev()
                    .find(|t| t.to == "acquired")
                    .map_or(self.started_at_ms, |t| t.at_ms);
                let why = if self.held_by_hand {
                    "taken over by hand".to_string()
                } else if up == 0 {
                    format!("{peer} silent")
                } else {
                    format!("{peer}: {links}")
                };
                format!(
                    "holding {} since {} UTC ({why})",
                    list(held),
                    crate::timefmt::wall(since, now)
                )
            }
            "monitoring" => format!("monitoring {peer}: {links}"),
            "boot-grace" => format!("boot grace: watching {peer}, {links}"),
            "acquiring" => format!("taking over {} from {peer}", list(all)),
            "releasing" => format!("giving {} back to {peer}", list(held)),
            "conflict" => match &self.conflict {
                Some(c) if c.holding => {
                    format!("holding {}, which also answers from {}", c.address, c.mac)
                }
                Some(c) => format!(
                    "conflict: {peer} silent, but {} answers from {}: not taking over",
                    c.address, c.mac
                ),
                None => format!("conflict: {peer} silent, but its address answers"),
            },
            "third-host" => match &self.third_host {
                Some(t) => format!("a third host answers for {} from {}", t.address, t.mac),
                None => "a third host answers for the peer's address".to_string(),
            },
            other => other.to_string(),
        };
        if self.pause.is_some() {
            line.push_str("; paused");
        }
        line
    }

    /// Records a transition, keeping the latest [`MAX_TRANSITIONS`].
    pub fn push_transition(&mut self, t: TransitionStatus) {
        self.transitions.push(t);
        if self.transitions.len() > MAX_TRANSITIONS {
            let extra = self.transitions.len() - MAX_TRANSITIONS;
            self.transitions.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_rides_on_the_last_heartbeat_before_it_is_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Heartbeats every second: written at the fourth, never later than 5 s.
        let at: Vec<u64> = (1..=10)
            .filter(|k| refresh_due(t0 + s(*k), t0, Some(s(1))))
            .collect();
        assert_eq!(at.first(), Some(&4));
        // Every 10 ms: at 4.99 s, the last before the deadline, not before.
        assert!(!refresh_due(t0 + ms(4980), t0, Some(ms(10))));
        assert!(refresh_due(t0 + ms(4990), t0, Some(ms(10))));
        // Nothing expected (a silent peer, a stopped sender): at the deadline itself.
        assert!(!refresh_due(t0 + ms(4999), t0, None));
        assert!(refresh_due(t0 + s(5), t0, None));
        // Heartbeats rarer than the refresh: every wake writes.
        assert!(refresh_due(t0 + ms(1), t0, Some(s(6))));
    }

    #[test]
    fn the_summary_says_the_state_in_one_line() {
        // 2024-02-29 12:01:07 UTC, and the file written a minute later.
        let t = 1_709_208_067_000;
        let mut s = Status::new("failoverd", "0.3.0", 1, "sec", t - 60_000);
        s.updated_at_ms = t + 60_000;
        s.peer = Some("198.51.100.10".into());
        let link = |state: &str| LinkStatus {
            peer_address: "198.51.100.10".into(),
            interface: None,
            last_heartbeat_age_ms: 0,
            heartbeats: 1,
            state: state.into(),
        };
        s.links = vec![link("up"), link("up")];
        s.state = "monitoring".into();
        assert_eq!(s.summary(), "monitoring 198.51.100.10: 2 links up");
        s.addresses = vec![AddressStatus {
            interface: "eth0".into(),
            address: "198.51.100.10".into(),
            prefix: 24,
            held: true,
            holder: None,
            error: None,
            announced_ms: None,
        }];
        s.links = vec![link("silent"), link("silent")];
        s.state = "acquired".into();
        s.push_transition(TransitionStatus {
            at_ms: t,
            from: "acquiring".into(),
            to: "acquired".into(),
            reason: "timeout".into(),
            duration_ms: 0,
        });
        assert_eq!(
            s.summary(),
            "holding 198.51.100.10 since 12:01:07 UTC (198.51.100.10 silent)"
        );
        s.pause = Some(PauseStatus {
            since_ms: t,
            until_ms: None,
        });
        assert!(s.summary().ends_with("; paused"), "{}", s.summary());

        let mut h = Status::new("heartbeatd", "0.3.0", 1, "pri", t);
        h.state = "sending".into();
        h.interval_ms = Some(100);
        h.destinations = vec!["198.51.100.255:1694".into(), "203.0.113.255:1694".into()];
        assert_eq!(h.summary(), "sending every 0.1s to 2 destinations");

        let mut g = Status::new("failoverd", "0.3.0", 1, "web-1", t);
        g.updated_at_ms = t + 1_000;
        g.state = "member".into();
        g.group = Some(GroupStatus {
            name: "web".into(),
            member: "web-1".into(),
            priority: 100,
            preempt: false,
            lease_ttl_ms: 3_000,
            lease: Some("1".into()),
            fence_in_ms: None,
            endpoint: None,
            etcd_reachable: true,
            etcd_error: None,
            revision: 9,
            members: vec![],
            addresses: vec![GroupAddressStatus {
                address: "198.51.100.10".into(),
                interface: "eth0".into(),
                prefix: 24,
                holder: Some("web-1".into()),
                epoch: Some(3),
                since_ms: Some(t),
                state: "held".into(),
                held: true,
                link_down: false,
                error: None,
            }],
        });
        assert_eq!(
            g.summary(),
            "member web-1 of group web: holding 198.51.100.10 since 12:01:07 UTC; 0 members"
        );
    }

    #[test]
    fn words_are_written_as_strings_and_unknown_ones_kept() {
        assert_eq!(
            serde_json::to_string(&DaemonState::ThirdHost).unwrap(),
            "\"third-host\""
        );
        let read: DaemonState = serde_json::from_str("\"no-lease\"").unwrap();
        assert_eq!(read, DaemonState::NoLease);
        // A newer daemon's word: kept as written, shown as written, written back the same.
        let newer: DaemonState = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(newer, DaemonState::Other("hibernating".into()));
        assert_eq!(newer.to_string(), "hibernating");
        assert_eq!(serde_json::to_string(&newer).unwrap(), "\"hibernating\"");
        for w in DaemonState::KNOWN {
            assert_eq!(DaemonState::from(w.as_str()), *w);
            assert_eq!(DaemonState::from(String::from(w.clone())), *w);
        }
        for w in GroupAddressState::KNOWN {
            assert_eq!(GroupAddressState::from(w.as_str()), *w);
        }
        let all = [DaemonState::FAILOVERD.as_slice(), &DaemonState::HEARTBEATD].concat();
        assert!(DaemonState::KNOWN.iter().all(|w| all.contains(w)));
        assert!(DaemonState::Releasing.failed_over() && !DaemonState::Conflict.failed_over());
    }

    #[test]
    fn every_word_the_cores_say_is_known() {
        use crate::failover;
        for name in failover::State::NAMES {
            assert!(
                !matches!(DaemonState::from(name), DaemonState::Other(_)),
                "{name}"
            );
        }
        for p in [
            failover::PeerState::Unknown,
            failover::PeerState::Alive,
            failover::PeerState::DaemonStopped,
            failover::PeerState::Leaving,
            failover::PeerState::Silent,
        ] {
            assert!(!matches!(PeerState::from(p), PeerState::Other(_)), "{p:?}");
        }
        for h in [
            failover::Holder::Here,
            failover::Holder::Peer,
            failover::Holder::Other([2, 0, 0, 0, 0, 1]),
            failover::Holder::Nobody,
            failover::Holder::Unknown,
        ] {
            assert!(
                !matches!(AddressHolder::from(h), AddressHolder::Other(_)),
                "{h:?}"
            );
        }
        use crate::group::AddrState;
        let t = Instant::now();
        let phase = crate::failover::HookPhase::PreAcq;
        for a in [
            AddrState::Free,
            AddrState::Waiting { at: t },
            AddrState::Trying,
            AddrState::Probing { epoch: 1 },
            AddrState::Conflict {
                epoch: 1,
                mac: [0; 6],
            },
            AddrState::Acquiring { epoch: 1, phase },
            AddrState::Held { epoch: 1 },
            AddrState::Releasing {
                epoch: 1,
                phase,
                reason: crate::group::GroupReason::Shutdown,
            },
        ] {
            assert!(
                !matches!(GroupAddressState::from(a), GroupAddressState::Other(_)),
                "{a:?}"
            );
        }
    }

    #[test]
    fn round_trips_through_json_and_keeps_the_latest_transitions() {
        let mut s = Status::new("failoverd", "0.1.0", 42, "sec", 1_000);
        s.state = DaemonState::Monitoring;
        s.peer = Some("198.51.100.10".into());
        for i in 0..30u64 {
            s.push_transition(TransitionStatus {
                at_ms: i,
                from: "a".into(),
                to: "b".into(),
                reason: "timeout".into(),
                duration_ms: i,
            });
        }
        assert_eq!(s.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(s.transitions[0].at_ms, 10);
        s.counters.dropped.insert("bad-tag".into(), 3);
        let json = serde_json::to_string(&s).unwrap();
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(json.contains("\"bad-tag\":3"));
    }
}
