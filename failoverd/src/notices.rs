//! What failoverd tells the administrator: subjects and bodies of its notices, and the
//! millisecond timeline of a takeover or release. Pure text; the shell sends it.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::Instant;

use ipfailover::failover::{Reason, ReleasedTo};
use ipfailover_os::hooks::{HookStatus, PhaseReport};

/// Events of one takeover or release, in milliseconds from its detection.
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    entries: Vec<(Instant, String)>,
}

impl Timeline {
    /// A timeline whose zero is `start` (the detection).
    pub fn new(start: Instant) -> Timeline {
        Timeline {
            start,
            entries: Vec::new(),
        }
    }

    /// Records what happened at `at` (before the start is fine: last heartbeats).
    pub fn at(&mut self, at: Instant, what: impl Into<String>) {
        self.entries.push((at, what.into()));
    }

    /// Records every hook of a phase at the time it started.
    pub fn hooks(&mut self, phase_start: Instant, report: &PhaseReport) {
        if report.results.is_empty() {
            let note = match &report.dir_refused {
                Some(why) => format!("{} hooks not run: {why}", report.phase.as_str()),
                None => format!("{} hooks: none", report.phase.as_str()),
            };
            self.at(phase_start, note);
            return;
        }
        if let Some(why) = &report.dir_refused {
            self.at(
                phase_start,
                format!("{} hooks not run: {why}", report.phase.as_str()),
            );
        }
        for r in &report.results {
            self.at(
                phase_start + r.started_after,
                format!("{}: {} in {} ms", r.name, r.status, r.duration.as_millis()),
            );
        }
    }

    /// The timeline as aligned lines, `+ms` / `-ms` from the detection.
    pub fn render(&self) -> String {
        let mut entries: Vec<&(Instant, String)> = self.entries.iter().collect();
        entries.sort_by_key(|(t, _)| *t);
        let mut out = String::new();
        for (t, what) in entries {
            let ms = if *t >= self.start {
                i128::try_from(t.duration_since(self.start).as_millis()).unwrap_or(i128::MAX)
            } else {
                -i128::try_from(self.start.duration_since(*t).as_millis()).unwrap_or(i128::MAX)
            };
            let _ = writeln!(out, "  {ms:>+8} ms  {what}");
        }
        out
    }
}

/// Words for a reason, as a person would say it.
pub fn reason_text(reason: Reason) -> &'static str {
    match reason {
        Reason::Timeout => "heartbeat timeout",
        Reason::Goodbye => "the peer said goodbye",
        Reason::PeerReturned => "the peer is back",
        Reason::Shutdown => "failoverd is stopping",
        Reason::Manual => "asked by an administrator",
        Reason::Conflict => "another host answers for the address",
        Reason::BootGraceOver => "start-up",
        Reason::Reconcile => "found held at start",
        Reason::TestRefused => "Test refused",
        Reason::PeerAlive => "the peer answered",
        Reason::PeerCannotServe => "the peer cannot serve the address",
        Reason::HandoverFailed => "nobody answered for the address after it was given back",
        Reason::NewPeer => "a new peer was configured",
        Reason::ThirdHost => "a third host answers for the address",
    }
}

/// The primary as the administrator knows it: `pri (198.51.100.10)`, or its address alone
/// while its name is not known yet.
pub fn peer_name(hostname: Option<&str>, ip: Option<IpAddr>) -> String {
    match (hostname, ip) {
        (Some(h), Some(ip)) if h != ip.to_string() => format!("{h} ({ip})"),
        (_, Some(ip)) => ip.to_string(),
        (Some(h), None) => h.to_string(),
        (None, None) => "the peer".to_string(),
    }
}

/// Who is telling what about which addresses.
#[derive(Debug, Clone)]
pub struct Context {
    /// This host's name.
    pub host: String,
    /// The peer's address.
    pub peer: String,
    /// The addresses taken over, space-separated.
    pub addrs: String,
}

impl Context {
    /// The addresses and whose they are, never "X from X": `198.51.100.100 from pri
    /// (198.51.100.10)`, or `198.51.100.10, pri's own address` when the address taken is the
    /// primary's own.
    pub fn addresses_of_peer(&self) -> String {
        let own = self.peer == self.addrs || self.peer.ends_with(&format!(" ({})", self.addrs));
        if !own {
            return format!("{} from {}", self.addrs, self.peer);
        }
        match self.peer.split(" (").next().filter(|n| *n != self.addrs) {
            Some(name) => format!("{}, {name}'s own address", self.addrs),
            None => format!("{}, the primary's own address", self.addrs),
        }
    }

    /// Subject of a takeover notice.
    pub fn took_over(&self, reason: Reason) -> String {
        format!(
            "[ipfailover] {} took over {} ({})",
            self.host,
            self.addresses_of_peer(),
            reason_text(reason)
        )
    }

    /// Subject of a pause notice.
    pub fn paused(&self) -> String {
        format!(
            "[ipfailover] {} paused: no takeover of {} from {}",
            self.host, self.addrs, self.peer
        )
    }

    /// Subject of the notice that a pause is over.
    pub fn resumed(&self) -> String {
        format!(
            "[ipfailover] {} resumed: takes over {} from {} again",
            self.host, self.addrs, self.peer
        )
    }

    /// Subject of a release notice: to whom the addresses went.
    pub fn released(&self, reason: Reason, to: ReleasedTo) -> String {
        let whom = match to {
            ReleasedTo::Peer => format!("released {} to {}", self.addrs, self.peer),
            ReleasedTo::Host(mac) => format!(
                "released {} to the host at {}, which answers for it",
                self.addrs,
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            ),
            ReleasedTo::Nobody => format!("released {}", self.addrs),
        };
        format!(
            "[ipfailover] {} {whom} ({})",
            self.host,
            reason_text(reason)
        )
    }

    /// Subject of a third host answering for the primary's address.
    pub fn third_host(&self, addr: &str, mac: &str) -> String {
        format!(
            "[ipfailover] {}: a third host answers for {addr} from {mac}, besides {}",
            self.host, self.peer
        )
    }

    /// Subject of the end of a third host's answers.
    pub fn third_host_over(&self, addr: &str) -> String {
        format!(
            "[ipfailover] {}: {addr} no longer answers from a third host",
            self.host
        )
    }

    /// Subject of a goodbye of heartbeatd alone.
    pub fn peer_daemon_stopped(&self) -> String {
        format!(
            "[ipfailover] {}: heartbeatd on {} stopped; its host still answers",
            self.host, self.peer
        )
    }

    /// Subject of a failed handover.
    pub fn handover_failed(&self) -> String {
        format!(
            "[ipfailover] {}: {} cannot serve {}: taken back",
            self.host, self.peer, self.addrs
        )
    }

    /// Subject of a primary waiting for an address held by hand.
    pub fn held_by_hand(&self) -> String {
        format!(
            "[ipfailover] {}: {} wants {} back, held by hand until failoverctl release",
            self.host, self.peer, self.addrs
        )
    }

    /// Subject of a blocked takeover: the address still answers from `mac`.
    pub fn conflict(&self, addr: &str, mac: &str) -> String {
        format!(
            "[ipfailover] {}: heartbeats from {} lost on every link, but {addr} still answers \
             from {mac}: not taking over",
            self.host, self.peer
        )
    }

    /// Subject of a conflict while holding.
    pub fn conflict_holding(&self, addr: &str, mac: &str) -> String {
        format!(
            "[ipfailover] {}: {addr}, which it holds, also answers from {mac}",
            self.host
        )
    }

    /// Subject of the end of a conflict.
    pub fn conflict_over(&self) -> String {
        format!(
            "[ipfailover] {}: {} no longer answers from another host",
            self.host, self.addrs
        )
    }

    /// Subject of an address that vanished while held.
    pub fn address_lost(&self, addr: &str) -> String {
        format!(
            "[ipfailover] {}: {addr} vanished from its interface while held; added again",
            self.host
        )
    }

    /// Subject of the hosts' clocks disagreeing.
    pub fn clock_offset(&self, offset: &str) -> String {
        format!(
            "[ipfailover] {}: the clock of {} is {offset} this host's",
            self.host, self.peer
        )
    }

    /// Subject of a refused takeover.
    pub fn refused(&self) -> String {
        format!(
            "[ipfailover] {} did not take over {} from {}: the Test hook refused",
            self.host, self.addrs, self.peer
        )
    }

    /// Subject of a failed or refused hook.
    pub fn hook_failed(&self, report: &PhaseReport) -> String {
        let names: Vec<String> = report
            .failures()
            .map(|r| match r.status {
                HookStatus::Refused(_) => format!("{} (refused)", r.name),
                _ => r.name.clone(),
            })
            .collect();
        if names.is_empty() {
            format!(
                "[ipfailover] {}: {} hooks not run (unsafe directory)",
                self.host,
                report.phase.as_str()
            )
        } else {
            format!(
                "[ipfailover] {}: hook {} failed during {} of {}",
                self.host,
                names.join(", "),
                report.phase.as_str(),
                self.addrs
            )
        }
    }

    /// Subject of a lost link (redundancy gone).
    pub fn link_lost(&self, link: &str) -> String {
        format!(
            "[ipfailover] {}: network anomaly: no heartbeats from {} via {} (redundancy lost)",
            self.host, self.peer, link
        )
    }

    /// Subject of a link back.
    pub fn link_back(&self, link: &str) -> String {
        format!(
            "[ipfailover] {}: heartbeats from {} via {} are back",
            self.host, self.peer, link
        )
    }
}

/// The failing hooks of a report, each with the tail of its output.
pub fn hook_failures(report: &PhaseReport) -> String {
    let mut out = String::new();
    if let Some(why) = &report.dir_refused {
        let _ = writeln!(
            out,
            "The {} hooks were not run: {why}",
            report.phase.as_str()
        );
    }
    for r in report.failures() {
        let _ = writeln!(
            out,
            "Hook {} ({}): {} after {} ms",
            r.name,
            report.phase.as_str(),
            r.status,
            r.duration.as_millis()
        );
        let output = r.output.trim_end();
        if !output.is_empty() {
            let _ = writeln!(out, "Its output ends with:");
            for line in output.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfailover::failover::HookPhase;
    use ipfailover_os::hooks::HookResult;
    use std::time::Duration;

    #[test]
    fn timeline_is_sorted_and_signed_from_the_detection() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut t = Timeline::new(t0);
        t.at(
            t0 + Duration::from_millis(16),
            "added 198.51.100.10/24 to eth0",
        );
        t.at(
            t0 - Duration::from_millis(1003),
            "last heartbeat via 198.51.100.10",
        );
        t.at(t0, "detected");
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "     -1003 ms  last heartbeat via 198.51.100.10");
        assert_eq!(lines[1], "        +0 ms  detected");
        assert_eq!(lines[2], "       +16 ms  added 198.51.100.10/24 to eth0");
    }

    #[test]
    fn subjects_name_the_host_the_event_and_the_address() {
        // The primary's own address: never "took over X from X".
        let c = Context {
            host: "sec-1".into(),
            peer: peer_name(Some("pri-1"), "10.0.0.100".parse().ok()),
            addrs: "10.0.0.100".into(),
        };
        assert_eq!(
            c.took_over(Reason::Timeout),
            "[ipfailover] sec-1 took over 10.0.0.100, pri-1's own address (heartbeat timeout)"
        );
        assert_eq!(
            c.released(Reason::PeerReturned, ReleasedTo::Peer),
            "[ipfailover] sec-1 released 10.0.0.100 to pri-1 (10.0.0.100) (the peer is back)"
        );
        // Before its name is known.
        let c = Context {
            peer: peer_name(None, "10.0.0.100".parse().ok()),
            ..c
        };
        assert_eq!(
            c.took_over(Reason::Timeout),
            "[ipfailover] sec-1 took over 10.0.0.100, the primary's own address (heartbeat \
             timeout)"
        );
        // A service address.
        let c = Context {
            host: "sec-1".into(),
            peer: peer_name(Some("pri-1"), "10.0.0.10".parse().ok()),
            addrs: "10.0.0.100".into(),
        };
        assert_eq!(
            c.took_over(Reason::Goodbye),
            "[ipfailover] sec-1 took over 10.0.0.100 from pri-1 (10.0.0.10) (the peer said \
             goodbye)"
        );
        // Given up to a third host: its MAC, not the dead primary.
        assert_eq!(
            c.released(Reason::Conflict, ReleasedTo::Host([2, 0, 0, 0, 0, 0x66])),
            "[ipfailover] sec-1 released 10.0.0.100 to the host at 02:00:00:00:00:66, which \
             answers for it (another host answers for the address)"
        );
        assert!(c.link_lost("203.0.113.10").contains("redundancy lost"));
    }

    #[test]
    fn hook_failures_carry_the_output_tail() {
        let report = PhaseReport {
            lane: 0,
            phase: HookPhase::PostAcq,
            reason: Reason::Timeout.as_str(),
            results: vec![
                HookResult {
                    name: "PostAcq-1".into(),
                    status: HookStatus::Exited(3),
                    started_after: Duration::ZERO,
                    duration: Duration::from_millis(42),
                    output: "starting nginx\nnginx: bind failed\n".into(),
                },
                HookResult {
                    name: "PostAcq-2".into(),
                    status: HookStatus::Refused("writable by others (mode 0757)".into()),
                    started_after: Duration::ZERO,
                    duration: Duration::ZERO,
                    output: String::new(),
                },
            ],
            skipped: vec![],
            dir_refused: None,
            duration: Duration::from_millis(42),
        };
        let c = Context {
            host: "sec".into(),
            peer: "p".into(),
            addrs: "a".into(),
        };
        assert_eq!(
            c.hook_failed(&report),
            "[ipfailover] sec: hook PostAcq-1, PostAcq-2 (refused) failed during PostAcq of a"
        );
        let body = hook_failures(&report);
        assert!(
            body.contains("Hook PostAcq-1 (PostAcq): exit 3 after 42 ms"),
            "{body}"
        );
        assert!(body.contains("  | nginx: bind failed"), "{body}");
        assert!(body.contains("refused: writable by others"), "{body}");
    }
}
