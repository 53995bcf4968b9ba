//! Logging to systemd's journal with structured fields (docs/troubleshooting.md, "In the
//! journal").
//!
//! When a daemon's stderr is the journal (systemd sets `JOURNAL_STREAM` to the device and
//! inode of the stream it connected to stderr), its log goes through the journal's native
//! protocol instead (the `systemd-journal-logger` crate): each line with its `PRIORITY`, and
//! the lines about an event with the event's stable `MESSAGE_ID` and the fields
//! `IPFAILOVER_EVENT`, `IPFAILOVER_ADDRESS`, `IPFAILOVER_PEER`, `IPFAILOVER_REASON` (and
//! `IPFAILOVER_LINK`, `IPFAILOVER_MAC` where they apply), so that `journalctl
//! MESSAGE_ID=e7997f3e1253415fb9468f09f422f13b` lists every takeover. The same filter
//! (`--log-level`, `RUST_LOG`) applies. Anywhere else the log stays as it is: lines on stderr,
//! the fields left out.

use std::fmt;

use log::Level;

/// A kind of event, with its journal `MESSAGE_ID`: 128 random bits fixed once, never reused
/// for another kind, never changed (journal queries and alerts name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// This host took addresses over (a pair's failoverd; a group member that won and added
    /// one).
    Takeover,
    /// This host gave addresses up (released to the peer, to a host that answers, at a stop,
    /// by preemption...).
    Release,
    /// The `Test` hook refused a takeover.
    TakeoverRefused,
    /// Another host answers for an address this host holds or would take.
    Conflict,
    /// That conflict is over.
    ConflictOver,
    /// A third host answers for the peer's address.
    ThirdHost,
    /// The third host no longer answers.
    ThirdHostOver,
    /// The `Fence` hooks run, against a host that will not let go of an address.
    Fence,
    /// A group member fenced itself: its lease could not be confirmed, it removed its
    /// addresses.
    Fenced,
    /// Heartbeats no longer arrive on one link while another carries them: redundancy lost.
    LinkLost,
    /// Heartbeats arrive on that link again.
    LinkBack,
    /// A held address vanished from its interface (removed by hand): added again.
    AddressLost,
    /// The peer's heartbeatd said goodbye while its host stays up.
    PeerStopped,
    /// An address given back was not answered for by the primary: taken back.
    HandoverFailed,
    /// heartbeatd gave a service address up to failoverd (taken over by hand, or not
    /// reachable here).
    Drained,
    /// Takeovers paused by an administrator.
    Paused,
    /// Takeovers resumed.
    Resumed,
    /// Lines of one kind held back by the rate limit, summed up in one.
    Repeated,
}

impl Event {
    /// Every kind, in the order docs/troubleshooting.md lists them.
    pub const ALL: [Event; 18] = [
        Event::Takeover,
        Event::Release,
        Event::TakeoverRefused,
        Event::Conflict,
        Event::ConflictOver,
        Event::ThirdHost,
        Event::ThirdHostOver,
        Event::Fence,
        Event::Fenced,
        Event::LinkLost,
        Event::LinkBack,
        Event::AddressLost,
        Event::PeerStopped,
        Event::HandoverFailed,
        Event::Drained,
        Event::Paused,
        Event::Resumed,
        Event::Repeated,
    ];

    /// Its name, the `IPFAILOVER_EVENT` field.
    pub fn name(self) -> &'static str {
        match self {
            Event::Takeover => "takeover",
            Event::Release => "release",
            Event::TakeoverRefused => "takeover-refused",
            Event::Conflict => "conflict",
            Event::ConflictOver => "conflict-over",
            Event::ThirdHost => "third-host",
            Event::ThirdHostOver => "third-host-over",
            Event::Fence => "fence",
            Event::Fenced => "fenced",
            Event::LinkLost => "link-lost",
            Event::LinkBack => "link-back",
            Event::AddressLost => "address-lost",
            Event::PeerStopped => "peer-stopped",
            Event::HandoverFailed => "handover-failed",
            Event::Drained => "drained",
            Event::Paused => "paused",
            Event::Resumed => "resumed",
            Event::Repeated => "repeated",
        }
    }

    /// Its `MESSAGE_ID` (32 lowercase hex digits, as `journalctl` wants them).
    pub fn message_id(self) -> &'static str {
        match self {
            Event::Takeover => "e7997f3e1253415fb9468f09f422f13b",
            Event::Release => "7bb8b8daa7f54144980074ed99d23da3",
            Event::TakeoverRefused => "401a6cf46be44cf8a870d863d457ff11",
            Event::Conflict => "3e5425a54f094efc94e4d5f75787955b",
            Event::ConflictOver => "e327567d7d724765a6061f3849388758",
            Event::ThirdHost => "c7460ced0dd9497e89631f7f220fcd30",
            Event::ThirdHostOver => "14b0ee3c35ad48bc91a6b745da868d5c",
            Event::Fence => "b363627b5b1343848e45c4666fae4c80",
            Event::Fenced => "eb2c26456468488b8fc78128a5c792e0",
            Event::LinkLost => "29fff9c1a11d4c6ba1b6bb2cfe2f77a1",
            Event::LinkBack => "f534cdf2f9934acc8ca5717e7103d8f9",
            Event::AddressLost => "d43677dea1ab42298223340d1065adda",
            Event::PeerStopped => "9ae4ced47f144b8286e2860766e4e290",
            Event::HandoverFailed => "243412524dfe45ce9a5c36599333f767",
            Event::Drained => "b1972dee86f943a98324906b275aaf4a",
            Event::Paused => "82b1b48f81e243fe82edb9331ca8e7a4",
            Event::Resumed => "f3f0efb166f24025b338746669183a07",
            Event::Repeated => "b08cf0dc9a644f94b5ed59bf7be9dd03",
        }
    }
}

/// What an event line says besides its text; each set field becomes a journal field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    /// `IPFAILOVER_ADDRESS`: the address (or addresses, comma-separated) concerned.
    pub address: Option<&'a str>,
    /// `IPFAILOVER_PEER`: the peer (a pair's primary) or the member concerned.
    pub peer: Option<&'a str>,
    /// `IPFAILOVER_REASON`: why, as the hooks' `FAILOVER_REASON` says it.
    pub reason: Option<&'a str>,
    /// `IPFAILOVER_LINK`: the link (the peer's address on it).
    pub link: Option<&'a str>,
    /// `IPFAILOVER_MAC`: the link-layer address of another host.
    pub mac: Option<&'a str>,
    /// `IPFAILOVER_REPEATED`: how many lines a summary stands for.
    pub repeated: Option<&'a str>,
}

/// Logs one line about `event` at `level`, from `target` (a module path, for the filter),
/// with `fields`: in the journal as structured fields, elsewhere the line alone. Use the
/// [`crate::event!`] macro.
pub fn log_event(
    target: &str,
    level: Level,
    event: Event,
    fields: &Fields<'_>,
    args: fmt::Arguments<'_>,
) {
    let metadata = log::Metadata::builder().level(level).target(target).build();
    if level > log::max_level() || !log::logger().enabled(&metadata) {
        return;
    }
    let mut kvs: Vec<(&str, &str)> = vec![
        ("MESSAGE_ID", event.message_id()),
        ("IPFAILOVER_EVENT", event.name()),
    ];
    for (key, value) in [
        ("IPFAILOVER_ADDRESS", fields.address),
        ("IPFAILOVER_PEER", fields.peer),
        ("IPFAILOVER_REASON", fields.reason),
        ("IPFAILOVER_LINK", fields.link),
        ("IPFAILOVER_MAC", fields.mac),
        ("IPFAILOVER_REPEATED", fields.repeated),
    ] {
        if let Some(v) = value {
            kvs.push((key, v));
        }
    }
    let kvs = kvs.as_slice();
    log::logger().log(
        &log::Record::builder()
            .args(args)
            .level(level)
            .target(target)
            .key_values(&kvs)
            .build(),
    );
}

/// Logs a line about an event: `event!(Level::Warn, Event::Takeover, Fields { .. }, "took
/// over {}", what)`. See [`log_event`].
#[macro_export]
macro_rules! event {
    ($level:expr, $event:expr, $fields:expr, $($arg:tt)+) => {
        $crate::journal::log_event(
            module_path!(),
            $level,
            $event,
            &$fields,
            format_args!($($arg)+),
        )
    };
}

/// Whether stderr is the journal (`JOURNAL_STREAM` names it).
#[cfg(target_os = "linux")]
pub fn stderr_is_journal() -> bool {
    systemd_journal_logger::connected_to_journal()
}

/// Whether stderr is the journal: never, where there is no systemd.
#[cfg(not(target_os = "linux"))]
pub fn stderr_is_journal() -> bool {
    false
}

/// Installs the journal as the logger, with the filter `spec` (`RUST_LOG`'s syntax); `Err`
/// with why when the journal's socket cannot be reached (the caller logs to stderr then).
#[cfg(target_os = "linux")]
pub fn install(spec: &str) -> Result<(), String> {
    let journal = systemd_journal_logger::JournalLog::new()
        .map_err(|e| format!("the journal's socket: {e}"))?;
    let journal = match systemd_journal_logger::current_exe_identifier() {
        Some(id) => journal.with_syslog_identifier(id),
        None => journal,
    };
    let filter = env_filter::Builder::new().parse(spec).build();
    let max = filter.filter();
    log::set_boxed_logger(Box::new(env_filter::FilteredLog::new(journal, filter)))
        .map_err(|e| e.to_string())?;
    log::set_max_level(max);
    Ok(())
}

/// Where there is no systemd, there is no journal.
#[cfg(not(target_os = "linux"))]
pub fn install(_spec: &str) -> Result<(), String> {
    Err("no journal on this system".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_event_has_its_own_well_formed_message_id() {
        let ids: BTreeSet<&str> = Event::ALL.iter().map(|e| e.message_id()).collect();
        assert_eq!(ids.len(), Event::ALL.len());
        for id in ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        let names: BTreeSet<&str> = Event::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), Event::ALL.len());
    }

    /// docs/troubleshooting.md lists every event with its MESSAGE_ID, as here.
    #[test]
    fn the_troubleshooting_page_lists_every_message_id() {
        let page = include_str!("../../docs/troubleshooting.md");
        for e in Event::ALL {
            let row = format!("| `{}` | `{}` |", e.name(), e.message_id());
            assert!(page.contains(&row), "docs/troubleshooting.md lacks {row}");
        }
    }
}
