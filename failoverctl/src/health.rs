//! The verdict: healthy, degraded or down, with the reasons in words. Pure: it reads what
//! [`Seen`] holds and the time it is given, never the clock or the process table.
//!
//! The rules, each also a comment above its branch in [`health`]:
//!
//! - **down** (exit 2): no status file exists; or every existing one is stale (or unreadable);
//!   or failoverd is `acquiring`, `acquired` or `releasing`, i.e. this host has taken, holds or
//!   is giving back the peer's address: failed over.
//! - **degraded** (exit 1): one of two files is stale (or unreadable); failoverd is in its boot
//!   grace; failoverd is monitoring and a link is `lost` or `silent`, or no heartbeat has been
//!   heard yet; failoverd is in `conflict` (the peer is silent but its address still answers:
//!   nothing was taken over, and nothing protects it); heartbeatd is `stopped`, or a send to
//!   one of its destinations fails; failoverd is `stopped`; a state failoverctl does not know.
//! - A group member (failoverd with `group` in its status) is judged by [`group_health`]:
//!   **down** when an address of the group has no holder; **degraded** when etcd does not
//!   answer it, it has no lease, or an address is in conflict here.
//! - **down** also when failoverd says nobody answers for one of the addresses (the primary
//!   does not claim it, this host does not hold it, and nobody answered a probe): an outage.
//! - **degraded** also while failoverd is paused (`failoverctl pause`): nothing is protected;
//!   when a third host answers for the primary's address (`third-host`); when the primary's
//!   heartbeatd stopped while its host answers (`peer_state: daemon-stopped`).
//! - **healthy** (exit 0): anything else. One fresh file alone is healthy: a primary runs only
//!   heartbeatd.

use ipfailover::status::{
    AddressHolder, DaemonState, GroupAddressState, LinkState, PeerState, Status,
};
use ipfailover_os::daemon::exit;

use crate::observe::{Daemon, Found, Seen};
use ipfailover::timefmt::{span, wall};

/// A status file older than this is stale whatever its `refresh_ms` says: the daemons write
/// at least every 5 s, so three missed writes.
pub const MIN_STALE_MS: u64 = 15_000;

/// How many refresh periods may pass without a write before a file is stale.
pub const STALE_REFRESHES: u64 = 3;

/// The overall verdict, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Everything as it should be.
    Healthy,
    /// Still protected or still serving, but something needs a look.
    Degraded,
    /// Failed over, or nothing running.
    Down,
}

impl Level {
    /// failoverctl's exit code for it.
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Healthy => exit::OK,
            Level::Degraded => exit::DEGRADED,
            Level::Down => exit::DOWN,
        }
    }

    /// Its name in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Down => "down",
        }
    }
}

/// Why a status file cannot be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// It has not been written for longer than the daemon promises.
    NotUpdated {
        /// Since the last write, ms.
        for_ms: u64,
    },
    /// It names this host, and its process no longer exists.
    ProcessGone {
        /// The process id in the file.
        pid: u32,
        /// Since the last write, ms.
        for_ms: u64,
    },
}

impl Stale {
    /// The words after `STALE: `.
    pub fn describe(self) -> String {
        match self {
            Stale::NotUpdated { for_ms } => {
                format!("not updated for {} (daemon not running?)", span(for_ms))
            }
            Stale::ProcessGone { pid, for_ms } => format!(
                "process {pid} no longer exists, not updated for {} (daemon not running?)",
                span(for_ms)
            ),
        }
    }
}

/// How far one daemon's file can be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// No file.
    Missing,
    /// A file that is not a readable status.
    Unreadable(String),
    /// A status that is out of date.
    Stale(Stale),
    /// A status that is current.
    Fresh,
}

impl Freshness {
    /// Whether the file exists but must not be believed (`stale` in `--json`).
    pub fn is_unusable(&self) -> bool {
        matches!(self, Freshness::Unreadable(_) | Freshness::Stale(_))
    }
}

/// The verdict, its reasons and how far each file can be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The overall level.
    pub level: Level,
    /// Whether failoverd has taken, holds or is giving back the peer's address.
    pub failed_over: bool,
    /// Why the level is not healthy, one sentence each.
    pub reasons: Vec<String>,
    /// failoverd's file.
    pub failoverd: Freshness,
    /// heartbeatd's file.
    pub heartbeatd: Freshness,
}

impl Health {
    /// How far `daemon`'s file can be believed.
    pub fn of(&self, daemon: Daemon) -> &Freshness {
        match daemon {
            Daemon::Failoverd => &self.failoverd,
            Daemon::Heartbeatd => &self.heartbeatd,
        }
    }

    /// The banner: `HEALTHY`, `DEGRADED`, `FAILED OVER` or `DOWN`.
    pub fn headline(&self) -> &'static str {
        match self.level {
            Level::Healthy => "HEALTHY",
            Level::Degraded => "DEGRADED",
            Level::Down if self.failed_over => "FAILED OVER",
            Level::Down => "DOWN",
        }
    }

    /// The exit code.
    pub fn exit_code(&self) -> i32 {
        self.level.exit_code()
    }
}

/// How long a file may go unwritten: `max(3 × refresh_ms, 15 s)`.
pub fn stale_after_ms(status: &Status) -> u64 {
    status
        .refresh_ms
        .saturating_mul(STALE_REFRESHES)
        .max(MIN_STALE_MS)
}

/// How far one file can be believed at `now_ms`. The process is only consulted when the file
/// names this host (a pid on another host says nothing here).
pub fn freshness(found: &Found, now_ms: u64, this_host: &str) -> Freshness {
    match found {
        Found::Missing => Freshness::Missing,
        Found::Unreadable { error, .. } => Freshness::Unreadable(error.clone()),
        Found::Status {
            status, pid_alive, ..
        } => {
            let for_ms = now_ms.saturating_sub(status.updated_at_ms);
            if status.hostname == this_host && *pid_alive == Some(false) {
                Freshness::Stale(Stale::ProcessGone {
                    pid: status.pid,
                    for_ms,
                })
            } else if for_ms > stale_after_ms(status) {
                Freshness::Stale(Stale::NotUpdated { for_ms })
            } else {
                Freshness::Fresh
            }
        }
    }
}

/// The addresses a status says are held, as `a.b.c.d/p on iface`.
pub fn held_addresses(status: &Status) -> Vec<String> {
    status
        .addresses
        .iter()
        .filter(|a| a.held)
        .map(|a| format!("{}/{} on {}", a.address, a.prefix, a.interface))
        .collect()
}

/// A link's name for people: `10.0.0.100 (eth0)`.
pub fn link_name(link: &ipfailover::status::LinkStatus) -> String {
    match &link.interface {
        Some(i) => format!("{} ({i})", link.peer_address),
        None => link.peer_address.clone(),
    }
}

/// Age of a link's last heartbeat at `now_ms`: its age when the file was written plus the time
/// since.
pub fn link_age_ms(status: &Status, link: &ipfailover::status::LinkStatus, now_ms: u64) -> u64 {
    link.last_heartbeat_age_ms
        .saturating_add(now_ms.saturating_sub(status.updated_at_ms))
}

/// The latest transition into the current state, if the file still has it.
pub fn entered(status: &Status) -> Option<&ipfailover::status::TransitionStatus> {
    status
        .transitions
        .iter()
        .rev()
        .find(|t| t.to == status.state.as_str())
}

/// The group rules (docs/groups.md, "The rules"), for a failoverd that is a group member:
///
/// - **down**: an address of the group has no holder in this member's view (nobody answers
///   for it; while etcd is unreachable the view may be old, and that is said too).
/// - **degraded**: etcd does not answer this member; it has no lease (it fenced itself, or
///   has not joined yet); one of its addresses is in conflict here (won, but another host
///   answers for it); adding or removing one failed; it has stopped.
/// - Holding addresses is normal for a group member: not a failover.
pub fn group_health(s: &Status, g: &ipfailover::status::GroupStatus) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    let who = format!(
        "failoverd on {} (member {} of group {})",
        s.hostname, g.member, g.name
    );
    // An address nobody holds is an address nobody answers for.
    for a in g.addresses.iter().filter(|a| a.holder.is_none()) {
        out.push((
            Level::Down,
            format!(
                "group {}: {} has no holder{}",
                g.name,
                a.address,
                if g.etcd_reachable {
                    String::new()
                } else {
                    " (as of this member's last view: etcd does not answer it)".to_string()
                }
            ),
        ));
    }
    if !g.etcd_reachable {
        out.push((
            Level::Degraded,
            format!(
                "{who}: etcd does not answer{}{}",
                g.endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default(),
                g.etcd_error
                    .as_deref()
                    .map(|e| format!(": {}", ipfailover::shown::shown(e)))
                    .unwrap_or_default()
            ),
        ));
    }
    match &s.state {
        DaemonState::Member => {}
        DaemonState::Stopped => out.push((Level::Degraded, format!("{who} has stopped"))),
        DaemonState::Joining => {
            out.push((Level::Degraded, format!("{who} is asking etcd for a lease")))
        }
        DaemonState::NoLease => out.push((
            Level::Degraded,
            format!(
                "{who} has no lease: it cannot hold or acquire anything (it fenced itself, or \
                 etcd has not answered yet)"
            ),
        )),
        other => out.push((
            Level::Degraded,
            format!(
                "{who} reports a state failoverctl does not know: {:?}",
                other.as_str()
            ),
        )),
    }
    let down: Vec<&str> = g
        .addresses
        .iter()
        .filter(|a| a.link_down)
        .map(|a| a.address.as_str())
        .collect();
    if !down.is_empty() {
        out.push((
            Level::Degraded,
            format!(
                "{who}: the link of {} is down here: this member cannot serve {} (another \
                 member holds {})",
                down.join(", "),
                if down.len() == 1 { "it" } else { "them" },
                if down.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    for a in &g.addresses {
        if a.state == GroupAddressState::Conflict {
            out.push((
                Level::Degraded,
                format!(
                    "{who} won {} but another host still answers for it: not added while it \
                     does",
                    a.address
                ),
            ));
        }
        if let Some(e) = &a.error {
            out.push((
                Level::Degraded,
                format!("{who}: adding or removing {} failed: {e}", a.address),
            ));
        }
    }
    out
}

/// Judges what was found; see the module documentation for the rules.
pub fn health(seen: &Seen, now_ms: u64, this_host: &str) -> Health {
    let fo = freshness(&seen.failoverd, now_ms, this_host);
    let hb = freshness(&seen.heartbeatd, now_ms, this_host);
    let mut level = Level::Healthy;
    let mut failed_over = false;
    let mut reasons = Vec::new();
    let mut raise = |l: Level, reason: String, reasons: &mut Vec<String>| {
        level = level.max(l);
        reasons.push(reason);
    };

    let existing = [&fo, &hb]
        .iter()
        .filter(|f| !matches!(f, Freshness::Missing))
        .count();
    let unusable = [&fo, &hb].iter().filter(|f| f.is_unusable()).count();

    // No status file at all: neither daemon runs here, or we look in the wrong place.
    if existing == 0 {
        raise(
            Level::Down,
            format!(
                "no status file in {}: neither failoverd nor heartbeatd is running here \
                 (or the state directory is another one)",
                seen.dir.display()
            ),
            &mut reasons,
        );
    }
    // Every file there is stale: whatever ran here has stopped. One of two stale: half of it.
    let unusable_level = if existing > 0 && unusable == existing {
        Level::Down
    } else {
        Level::Degraded
    };
    for (daemon, f) in [(Daemon::Failoverd, &fo), (Daemon::Heartbeatd, &hb)] {
        let name = daemon.name();
        match f {
            Freshness::Stale(s) => {
                raise(
                    unusable_level,
                    format!("{name}: STALE: {}", s.describe()),
                    &mut reasons,
                );
                // A failoverd that died holding the peer's address may have left it on the
                // interface: say so, since nothing else will.
                if let Some(status) = seen.get(daemon).status() {
                    let held = held_addresses(status);
                    if status.state.failed_over() || !held.is_empty() {
                        reasons.push(format!(
                            "{name}: its last known state was {}{}: check whether this host \
                             still holds the peer's address",
                            status.state,
                            if held.is_empty() {
                                String::new()
                            } else {
                                format!(", holding {}", held.join(", "))
                            }
                        ));
                    }
                }
            }
            Freshness::Unreadable(e) => {
                raise(
                    unusable_level,
                    format!("{name}: unreadable status file: {e}"),
                    &mut reasons,
                );
            }
            Freshness::Missing | Freshness::Fresh => {}
        }
    }

    // Paused by an administrator: no takeover will happen, whatever the peer does.
    if let (Freshness::Fresh, Some(s)) = (&fo, seen.failoverd.status()) {
        if let Some(p) = &s.pause {
            raise(
                Level::Degraded,
                format!(
                    "failoverd on {} is PAUSED since {} UTC{}: it takes nothing over \
                     (failoverctl resume ends it)",
                    s.hostname,
                    wall(p.since_ms, now_ms),
                    p.until_ms
                        .map(|u| format!(", until {} UTC", wall(u, now_ms)))
                        .unwrap_or_default()
                ),
                &mut reasons,
            );
        }
        if s.held_by_hand {
            reasons.push(format!(
                "failoverd on {} holds the addresses because an administrator took them over: \
                 they stay until failoverctl release",
                s.hostname
            ));
        }
    }
    // Nobody answers for an address: the service is down, whatever the states say.
    if let (Freshness::Fresh, Some(s)) = (&fo, seen.failoverd.status()) {
        if s.group.is_none() {
            for a in s
                .addresses
                .iter()
                .filter(|a| !a.held && a.holder == Some(AddressHolder::Nobody))
            {
                raise(
                    Level::Down,
                    format!(
                        "nobody answers for {}: the peer does not claim it, failoverd on {} \
                         does not hold it, and no host answered a probe for it",
                        a.address, s.hostname
                    ),
                    &mut reasons,
                );
            }
            if s.peer_state == Some(PeerState::DaemonStopped) {
                raise(
                    Level::Degraded,
                    format!(
                        "heartbeatd on {} stopped while its host stays up: failoverd on {} \
                         watches its address by probes, and takes it over when it stops \
                         answering (start heartbeatd again)",
                        s.peer.as_deref().unwrap_or("the peer"),
                        s.hostname
                    ),
                    &mut reasons,
                );
            }
        }
    }
    // A group member: its view of the group decides, not a pair's states.
    if let (Freshness::Fresh, Some(s), Some(g)) = (
        &fo,
        seen.failoverd.status(),
        seen.failoverd.status().and_then(|s| s.group.as_ref()),
    ) {
        for (l, reason) in group_health(s, g) {
            raise(l, reason, &mut reasons);
        }
    } else if let (Freshness::Fresh, Some(s)) = (&fo, seen.failoverd.status()) {
        let peer = s.peer.as_deref().unwrap_or("the peer");
        let since = entered(s)
            .map(|t| format!(" since {} UTC ({})", wall(t.at_ms, now_ms), t.reason))
            .unwrap_or_default();
        let addrs = |held_only: bool| {
            let list: Vec<String> = s
                .addresses
                .iter()
                .filter(|a| a.held || !held_only)
                .map(|a| a.address.clone())
                .collect();
            if list.is_empty() {
                "its addresses".to_string()
            } else {
                list.join(", ")
            }
        };
        match &s.state {
            // This host holds, or is moving, the peer's address: the pair has failed over.
            DaemonState::Acquiring => {
                failed_over = true;
                raise(
                    Level::Down,
                    format!(
                        "failed over: failoverd on {} is taking over {} from peer {peer}{since}",
                        s.hostname,
                        addrs(false)
                    ),
                    &mut reasons,
                );
            }
            DaemonState::Acquired => {
                failed_over = true;
                raise(
                    Level::Down,
                    format!(
                        "failed over: failoverd on {} holds {} for peer {peer}{since}",
                        s.hostname,
                        addrs(true)
                    ),
                    &mut reasons,
                );
                for a in s.addresses.iter().filter(|a| !a.held) {
                    if let Some(e) = &a.error {
                        raise(
                            Level::Down,
                            format!(
                                "failoverd on {} could not add {}: {e} (retried while it holds \
                                 the others)",
                                s.hostname, a.address
                            ),
                            &mut reasons,
                        );
                    }
                }
                if let Some(c) = s.conflict.as_ref().filter(|c| c.holding) {
                    raise(
                        Level::Down,
                        format!(
                            "{} also answers from {} (since {} UTC): two hosts answer for it; \
                             failoverd gives it up if that goes on past its conflict grace",
                            c.address,
                            c.mac,
                            wall(c.since_ms, now_ms)
                        ),
                        &mut reasons,
                    );
                }
            }
            DaemonState::Releasing => {
                failed_over = true;
                raise(
                    Level::Down,
                    format!(
                        "failed over: failoverd on {} is giving {} back to peer {peer}{since}",
                        s.hostname,
                        addrs(false)
                    ),
                    &mut reasons,
                );
            }
            // In its boot grace failoverd does not judge the peer yet: nothing is protected.
            DaemonState::BootGrace => raise(
                Level::Degraded,
                format!(
                    "failoverd is in its boot grace period{}: it does not judge peer {peer} yet",
                    s.timeout_ms
                        .map(|t| format!(" ({})", span(t)))
                        .unwrap_or_default()
                ),
                &mut reasons,
            ),
            // Monitoring: each link that is not up is a reason; so is a peer never heard.
            DaemonState::Monitoring => {
                if s.links.is_empty() {
                    raise(
                        Level::Degraded,
                        format!("failoverd has heard no heartbeat from peer {peer} yet"),
                        &mut reasons,
                    );
                }
                for link in &s.links {
                    let age = span(link_age_ms(s, link, now_ms));
                    let name = link_name(link);
                    match &link.state {
                        LinkState::Up => {}
                        LinkState::Lost => raise(
                            Level::Degraded,
                            format!(
                                "failoverd: link {name} is lost: no heartbeat for {age} while \
                                 another link still carries them (no redundancy left)"
                            ),
                            &mut reasons,
                        ),
                        LinkState::Silent => raise(
                            Level::Degraded,
                            format!(
                                "failoverd: link {name} is silent: no heartbeat for {age}, and \
                                 none on any other link either, yet no takeover"
                            ),
                            &mut reasons,
                        ),
                        other => raise(
                            Level::Degraded,
                            format!(
                                "failoverd: link {name} is in an unknown state {:?}",
                                other.as_str()
                            ),
                            &mut reasons,
                        ),
                    }
                }
            }
            // The peer is silent on every link but its address still answers: no takeover.
            DaemonState::Conflict => {
                let answered = s.conflict.as_ref().map_or_else(
                    || "still answers".to_string(),
                    |c| {
                        format!(
                            "{} still answers from {} (since {} UTC)",
                            c.address,
                            c.mac,
                            wall(c.since_ms, now_ms)
                        )
                    },
                );
                raise(
                    Level::Degraded,
                    format!(
                        "failoverd on {}: no heartbeat from peer {peer} on any link, but \
                         {answered}: not taking over (a firewall dropping UDP heartbeats? \
                         heartbeatd stopped on a host that is up?)",
                        s.hostname
                    ),
                    &mut reasons,
                );
            }
            // A third host answers for the primary's address: the LAN's clients are split.
            DaemonState::ThirdHost => {
                let what = s.third_host.as_ref().map_or_else(
                    || "a third host answers for its address".to_string(),
                    |t| {
                        format!(
                            "{} answers from {} as well as from the peer's {}",
                            t.address, t.mac, t.peer_mac
                        )
                    },
                );
                raise(
                    Level::Degraded,
                    format!("failoverd on {}: {what} (since {}): look for a host configured with that address by mistake", s.hostname,
                        s.third_host
                            .as_ref()
                            .map_or_else(|| "?".to_string(), |t| wall(t.since_ms, now_ms))),
                    &mut reasons,
                );
            }
            // A stopped failoverd watches nothing (it normally exits right after writing this).
            DaemonState::Stopped => raise(
                Level::Degraded,
                format!("failoverd has stopped: nobody watches peer {peer}"),
                &mut reasons,
            ),
            other => raise(
                Level::Degraded,
                format!(
                    "failoverd reports a state failoverctl does not know: {:?}",
                    other.as_str()
                ),
                &mut reasons,
            ),
        }
    }

    if let (Freshness::Fresh, Some(s)) = (&hb, seen.heartbeatd.status()) {
        match &s.state {
            // Sending, but a destination the kernel refuses is a link the secondary does not
            // hear from: say so rather than call it healthy.
            DaemonState::Sending => {
                for d in s.sends.iter().filter(|d| d.failing) {
                    raise(
                        Level::Degraded,
                        format!(
                            "heartbeatd on {} cannot send to {}: {}",
                            s.hostname,
                            d.to,
                            d.last_error.as_deref().unwrap_or("unknown error")
                        ),
                        &mut reasons,
                    );
                }
            }
            // A stopped heartbeatd has said goodbye: the secondary takes over, if there is one.
            DaemonState::Stopped => raise(
                Level::Degraded,
                format!(
                    "heartbeatd on {} has stopped sending heartbeats: the secondary takes over",
                    s.hostname
                ),
                &mut reasons,
            ),
            other => raise(
                Level::Degraded,
                format!(
                    "heartbeatd reports a state failoverctl does not know: {:?}",
                    other.as_str()
                ),
                &mut reasons,
            ),
        }
    }

    Health {
        level,
        failed_over,
        reasons,
        failoverd: fo,
        heartbeatd: hb,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use ipfailover::status::{AddressStatus, LinkStatus, Status, TransitionStatus};

    use super::*;

    /// 2024-02-29 14:03:04 UTC.
    pub const NOW: u64 = 1_709_215_384_000;
    pub const HOST: &str = "sec-1";

    pub fn link(addr: &str, iface: &str, state: LinkState, age_ms: u64, n: u64) -> LinkStatus {
        LinkStatus {
            peer_address: addr.into(),
            interface: Some(iface.into()),
            last_heartbeat_age_ms: age_ms,
            heartbeats: n,
            state,
        }
    }

    /// failoverd on sec-1, up 3h12m, watching 10.0.0.100 on two links, both up.
    pub fn failoverd() -> Status {
        let started = NOW - (3 * 3600 + 12 * 60) * 1000;
        let mut s = Status::new("failoverd", "0.1.0", 412, HOST, started);
        s.updated_at_ms = NOW - 500;
        s.refresh_ms = 5_000;
        s.state = DaemonState::Monitoring;
        s.peer = Some("10.0.0.100".into());
        s.timeout_ms = Some(3_000);
        s.interval_ms = Some(1_000);
        s.links = vec![
            link("10.0.0.100", "eth0", LinkState::Up, 200, 4021),
            link("192.168.0.1", "eth1", LinkState::Up, 300, 4233),
        ];
        s.addresses = vec![AddressStatus {
            interface: "eth0".into(),
            address: "10.0.0.100".into(),
            prefix: 24,
            held: false,
            holder: None,
            error: None,
            announced_ms: None,
        }];
        s.push_transition(TransitionStatus {
            at_ms: started + 3_000,
            from: "boot-grace".into(),
            to: "monitoring".into(),
            reason: "boot-grace-over".into(),
            duration_ms: 3_000,
        });
        s.counters.accepted = 8254;
        s.counters.dropped.insert("bad-tag".into(), 10);
        s.counters.dropped.insert("replay".into(), 2);
        s
    }

    /// failoverd after a takeover at 12:01:07 UTC on the primary's silence.
    pub fn failed_over() -> Status {
        let mut s = failoverd();
        let at = NOW - (2 * 3600 + 60 + 57) * 1000;
        s.state = DaemonState::Acquired;
        s.links = vec![
            link("10.0.0.100", "eth0", LinkState::Silent, 7_320_000, 4021),
            link("192.168.0.1", "eth1", LinkState::Silent, 7_321_000, 4233),
        ];
        s.addresses[0].held = true;
        s.push_transition(TransitionStatus {
            at_ms: at,
            from: "monitoring".into(),
            to: "acquiring".into(),
            reason: "timeout".into(),
            duration_ms: 3_600_000,
        });
        s.push_transition(TransitionStatus {
            at_ms: at + 120,
            from: "acquiring".into(),
            to: "acquired".into(),
            reason: "timeout".into(),
            duration_ms: 120,
        });
        s.counters.hooks_run = 4;
        s.counters.mails_sent = 2;
        s.counters.takeovers = 1;
        s
    }

    /// heartbeatd on pri-1, sending every second on two subnets.
    pub fn heartbeatd() -> Status {
        let mut s = Status::new("heartbeatd", "0.1.0", 99, "pri-1", NOW - 11_520_000);
        s.updated_at_ms = NOW - 800;
        s.refresh_ms = 1_000;
        s.state = DaemonState::Sending;
        s.interval_ms = Some(1_000);
        s.destinations = vec!["10.0.0.255:1694".into(), "192.168.0.255:1694".into()];
        s.counters.sent = 11520;
        s
    }

    pub fn found(s: Status) -> Found {
        let raw = serde_json::to_value(&s).unwrap();
        let pid_alive = (s.hostname == HOST).then_some(true);
        Found::Status {
            status: Box::new(s),
            raw,
            pid_alive,
        }
    }

    pub fn seen(fo: Option<Status>, hb: Option<Status>) -> Seen {
        Seen {
            dir: PathBuf::from("/var/run/ipfailover"),
            failoverd: fo.map(found).unwrap_or(Found::Missing),
            heartbeatd: hb.map(found).unwrap_or(Found::Missing),
        }
    }

    fn judge(fo: Option<Status>, hb: Option<Status>) -> Health {
        health(&seen(fo, hb), NOW, HOST)
    }

    #[test]
    fn healthy_pair_and_single_daemons() {
        for (fo, hb) in [
            (Some(failoverd()), Some(heartbeatd())),
            (Some(failoverd()), None),
            (None, Some(heartbeatd())),
        ] {
            let h = judge(fo, hb);
            assert_eq!(h.level, Level::Healthy, "{:?}", h.reasons);
            assert!(h.reasons.is_empty());
            assert_eq!(h.exit_code(), 0);
            assert_eq!(h.headline(), "HEALTHY");
        }
    }

    #[test]
    fn a_conflict_degrades_and_names_the_mac_that_answered() {
        let mut s = failoverd();
        s.state = DaemonState::Conflict;
        s.conflict = Some(ipfailover::status::ConflictStatus {
            address: "10.0.0.100".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            since_ms: NOW - 60_000,
            holding: false,
        });
        let h = judge(Some(s), Some(heartbeatd()));
        assert_eq!(h.level, Level::Degraded, "{:?}", h.reasons);
        assert!(
            h.reasons[0].contains("10.0.0.100 still answers from aa:bb:cc:dd:ee:ff"),
            "{:?}",
            h.reasons
        );
    }

    #[test]
    fn a_conflict_while_holding_and_a_failed_add_are_said() {
        let mut s = failoverd();
        s.state = DaemonState::Acquired;
        s.addresses[0].held = false;
        s.addresses[0].error = Some("interface eth9: No such device".into());
        s.conflict = Some(ipfailover::status::ConflictStatus {
            address: "10.0.0.100".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            since_ms: NOW - 5_000,
            holding: true,
        });
        let h = judge(Some(s), Some(heartbeatd()));
        assert_eq!(h.level, Level::Down);
        let all = h.reasons.join("\n");
        assert!(
            all.contains("could not add 10.0.0.100: interface eth9"),
            "{all}"
        );
        assert!(all.contains("also answers from aa:bb:cc:dd:ee:ff"), "{all}");
    }

    #[test]
    fn heartbeatd_whose_sends_fail_is_degraded_not_healthy() {
        let mut hb = heartbeatd();
        hb.sends = vec![ipfailover::status::SendStatus {
            to: "10.0.0.255:1694".into(),
            sent: 10,
            failed: 90,
            failing: true,
            last_error: Some("Network is unreachable (os error 101)".into()),
        }];
        let h = judge(None, Some(hb));
        assert_eq!(h.level, Level::Degraded, "{:?}", h.reasons);
        assert_eq!(
            h.reasons,
            ["heartbeatd on pri-1 cannot send to 10.0.0.255:1694: Network is unreachable (os error 101)"]
        );
    }

    #[test]
    fn a_lost_link_degrades() {
        let mut s = failoverd();
        s.links[0] = link("10.0.0.100", "eth0", LinkState::Lost, 133_000, 4021);
        let h = judge(Some(s), Some(heartbeatd()));
        assert_eq!(h.level, Level::Degraded);
        assert_eq!(h.exit_code(), 1);
        assert_eq!(h.reasons.len(), 1, "{:?}", h.reasons);
        assert!(h.reasons[0].contains("link 10.0.0.100 (eth0) is lost"));
        // The age counts the time since the file was written.
        assert!(
            h.reasons[0].contains("no heartbeat for 2m13s"),
            "{:?}",
            h.reasons
        );
    }

    #[test]
    fn a_silent_link_boot_grace_and_no_heartbeat_yet_degrade() {
        let mut s = failoverd();
        s.links[1].state = LinkState::Silent;
        assert_eq!(judge(Some(s), None).level, Level::Degraded);
        let mut s = failoverd();
        s.state = DaemonState::BootGrace;
        let h = judge(Some(s), None);
        assert_eq!(h.level, Level::Degraded);
        assert!(h.reasons[0].contains("boot grace"), "{:?}", h.reasons);
        let mut s = failoverd();
        s.links.clear();
        let h = judge(Some(s), None);
        assert_eq!(h.level, Level::Degraded);
        assert!(h.reasons[0].contains("no heartbeat"), "{:?}", h.reasons);
        let mut s = heartbeatd();
        s.state = DaemonState::Stopped;
        let h = judge(Some(failoverd()), Some(s));
        assert_eq!(h.level, Level::Degraded);
        assert!(h.reasons[0].contains("heartbeatd on pri-1 has stopped"));
    }

    #[test]
    fn failed_over_is_down() {
        for state in ["acquiring", "acquired", "releasing"] {
            let mut s = failed_over();
            s.state = state.into();
            let h = judge(Some(s), Some(heartbeatd()));
            assert_eq!(h.level, Level::Down, "{state}");
            assert!(h.failed_over);
            assert_eq!(h.exit_code(), 2);
            assert_eq!(h.headline(), "FAILED OVER");
        }
        let h = judge(Some(failed_over()), None);
        assert_eq!(
            h.reasons,
            [
                "failed over: failoverd on sec-1 holds 10.0.0.100 for peer 10.0.0.100 since \
              12:01:07 UTC (timeout)"
            ]
        );
        // Silent links while acquired are the takeover's cause, not another reason.
        assert_eq!(h.reasons.len(), 1);
    }

    #[test]
    fn staleness_by_age_and_by_process() {
        // At the limit: max(3 × 5 s, 15 s) = 15 s.
        let mut s = failoverd();
        s.updated_at_ms = NOW - 15_000;
        assert_eq!(judge(Some(s.clone()), None).level, Level::Healthy);
        s.updated_at_ms = NOW - 15_001;
        let h = judge(Some(s.clone()), None);
        assert_eq!(h.level, Level::Down, "the only file is stale");
        assert_eq!(
            h.failoverd,
            Freshness::Stale(Stale::NotUpdated { for_ms: 15_001 })
        );
        assert!(!h.failed_over);
        // A long refresh period stretches the limit.
        s.refresh_ms = 60_000;
        assert_eq!(judge(Some(s), None).level, Level::Healthy);
        // One of two stale: degraded.
        let mut s = failoverd();
        s.updated_at_ms = NOW - 300_000;
        let h = judge(Some(s), Some(heartbeatd()));
        assert_eq!(h.level, Level::Degraded);
        assert_eq!(
            h.reasons,
            ["failoverd: STALE: not updated for 5m (daemon not running?)"]
        );
        // Both stale: down.
        let mut s = failoverd();
        s.updated_at_ms = NOW - 300_000;
        let mut t = heartbeatd();
        t.updated_at_ms = NOW - 20_000;
        let h = judge(Some(s), Some(t));
        assert_eq!(h.level, Level::Down);
        assert_eq!(h.reasons.len(), 2);
        // Fresh by time, but this host's process is gone.
        let mut seen = seen(Some(failoverd()), Some(heartbeatd()));
        if let Found::Status { pid_alive, .. } = &mut seen.failoverd {
            *pid_alive = Some(false);
        }
        let h = health(&seen, NOW, HOST);
        assert_eq!(h.level, Level::Degraded);
        assert!(matches!(
            h.failoverd,
            Freshness::Stale(Stale::ProcessGone { pid: 412, .. })
        ));
        assert!(h.reasons[0].contains("process 412 no longer exists"));
        // The same file read on another host: the pid is not its business.
        assert_eq!(health(&seen, NOW, "other").level, Level::Healthy);
    }

    #[test]
    fn a_stale_failed_over_file_is_never_healthy_and_warns_about_the_address() {
        let mut s = failed_over();
        s.updated_at_ms = NOW - 600_000;
        let h = judge(Some(s), Some(heartbeatd()));
        assert_eq!(h.level, Level::Degraded);
        assert!(!h.failed_over, "a stale state is not believed");
        assert!(
            h.reasons[1].contains("last known state was acquired, holding 10.0.0.100/24 on eth0"),
            "{:?}",
            h.reasons
        );
    }

    #[test]
    fn missing_and_unreadable_files() {
        let h = judge(None, None);
        assert_eq!(h.level, Level::Down);
        assert_eq!(h.headline(), "DOWN");
        assert!(h.reasons[0].starts_with("no status file in /var/run/ipfailover"));
        let mut seen = seen(None, Some(heartbeatd()));
        seen.failoverd = Found::Unreadable {
            error: "not JSON".into(),
            raw: None,
        };
        let h = health(&seen, NOW, HOST);
        assert_eq!(h.level, Level::Degraded);
        assert!(h.failoverd.is_unusable());
        seen.heartbeatd = Found::Missing;
        assert_eq!(health(&seen, NOW, HOST).level, Level::Down);
    }

    #[test]
    fn unknown_states_are_not_healthy() {
        let mut s = failoverd();
        s.state = "dancing".into();
        assert_eq!(judge(Some(s), None).level, Level::Degraded);
        let mut s = heartbeatd();
        s.state = "dancing".into();
        assert_eq!(judge(None, Some(s)).level, Level::Degraded);
        let mut s = failoverd();
        s.state = DaemonState::Stopped;
        assert_eq!(judge(Some(s), None).level, Level::Degraded);
    }

    /// A group member m2 of group web: two addresses, one held here, one by m1.
    pub fn group_member() -> Status {
        use ipfailover::status::{GroupAddressStatus, GroupStatus, MemberStatus};
        let mut s = failoverd();
        s.state = DaemonState::Member;
        s.peer = None;
        s.links.clear();
        s.transitions.clear();
        let addr = |a: &str, holder: Option<&str>, held: bool| GroupAddressStatus {
            address: a.into(),
            interface: "eth0".into(),
            prefix: 24,
            holder: holder.map(str::to_string),
            epoch: holder.map(|_| 12),
            since_ms: Some(NOW - 60_000),
            state: if held {
                GroupAddressState::Held
            } else {
                GroupAddressState::Free
            },
            held,
            link_down: false,
            error: None,
        };
        s.group = Some(GroupStatus {
            name: "web".into(),
            member: "m2".into(),
            priority: 150,
            preempt: false,
            lease_ttl_ms: 3_000,
            lease: Some("694d7f5a0c2b1e03".into()),
            fence_in_ms: Some(2_100),
            endpoint: Some("http://203.0.113.1:2379".into()),
            etcd_reachable: true,
            etcd_error: None,
            revision: 42,
            members: vec![
                MemberStatus {
                    name: "m1".into(),
                    priority: 200,
                    lease_left_s: Some(2),
                    this: false,
                    mode: None,
                },
                MemberStatus {
                    name: "m2".into(),
                    priority: 150,
                    lease_left_s: Some(3),
                    this: true,
                    mode: None,
                },
            ],
            addresses: vec![
                addr("198.51.100.100", Some("m2"), true),
                addr("198.51.100.101", Some("m1"), false),
            ],
        });
        s
    }

    #[test]
    fn a_group_member_holding_addresses_is_healthy_and_one_without_a_holder_is_down() {
        let h = judge(Some(group_member()), None);
        assert_eq!(h.level, Level::Healthy, "{:?}", h.reasons);
        assert!(!h.failed_over, "holding is what a group member does");
        // An address nobody holds: down, exit 2, named.
        let mut s = group_member();
        if let Some(g) = s.group.as_mut() {
            g.addresses[1].holder = None;
            g.addresses[1].epoch = None;
        }
        let h = judge(Some(s), None);
        assert_eq!((h.level, h.exit_code()), (Level::Down, 2));
        assert!(
            h.reasons
                .iter()
                .any(|r| r.contains("198.51.100.101 has no holder")),
            "{:?}",
            h.reasons
        );
        // etcd unreachable, or no lease, or a conflict here: degraded.
        for change in [
            |s: &mut Status| {
                if let Some(g) = s.group.as_mut() {
                    g.etcd_reachable = false;
                    g.etcd_error = Some("connection refused".into());
                }
            },
            |s: &mut Status| s.state = "no-lease".into(),
            |s: &mut Status| {
                if let Some(g) = s.group.as_mut() {
                    g.addresses[0].state = GroupAddressState::Conflict;
                }
            },
            |s: &mut Status| {
                if let Some(g) = s.group.as_mut() {
                    g.addresses[0].link_down = true;
                }
            },
        ] {
            let mut s = group_member();
            change(&mut s);
            let h = judge(Some(s), None);
            assert_eq!(h.level, Level::Degraded, "{:?}", h.reasons);
        }
        // The text and the page show the group.
        let text = crate::text::render_text(
            &seen(Some(group_member()), None),
            &judge(Some(group_member()), None),
            NOW,
        );
        assert!(
            text.contains("MEMBER — member m2 of group web, priority 150"),
            "{text}"
        );
        assert!(text.contains("member m1"), "{text}");
        assert!(
            text.contains("address 198.51.100.101/24 on eth0: held by m1 (epoch 12)"),
            "{text}"
        );
        // A member runs no heartbeatd: nothing to say about its missing status file.
        assert!(!text.contains("heartbeatd"), "{text}");
        let html = crate::html::render_html(
            &seen(Some(group_member()), None),
            &judge(Some(group_member()), None),
            NOW,
        );
        assert!(html.contains("<h3>Group web</h3>"), "{html}");
        assert!(!html.contains("heartbeatd"), "{html}");
    }
}
