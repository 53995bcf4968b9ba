//! The status files through a whole takeover and release: always valid JSON, always with
//! every field docs/status.md documents, and telling the truth about the state.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipfailover::status::Status;
use ipfailover_e2e::{bin, wait_for, Host, Lab, VIP};
use serde_json::Value;

/// The field names of one table of docs/status.md (the section headed `heading`).
fn documented(heading: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(ipfailover_e2e::repo().join("docs/status.md"))
        .expect("docs/status.md");
    let section = doc
        .split("\n#")
        .find(|s| s.trim_start_matches('#').trim_start().starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading} in docs/status.md"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let cell = l.split(" |").next().unwrap_or("");
            // `from`, `to` share a row.
            cell.split(", ")
                .map(|c| c.trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// `failoverctl status --state-dir` on a host's state directory: its exit code and output.
fn ctl(lab: &Lab, host: Host) -> (i32, String) {
    let out = std::process::Command::new(bin("failoverctl"))
        .args(["status", "--state-dir"])
        .arg(lab.state_dir(host))
        .output()
        .expect("failoverctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Checks one sample of a daemon's file; returns its state.
fn check(v: &Value, daemon: &str) -> String {
    let parsed: Status = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{daemon}.json does not match the schema: {e}\n{v}"));
    assert_eq!(parsed.daemon, daemon);
    assert_eq!(parsed.schema, 1);
    let top = documented("Fields");
    let optional: BTreeSet<String> = [
        "peer",
        "timeout_ms",
        "interval_ms",
        "destinations",
        "sends",
        "conflict",
        "peer_clock_offset_ms",
        "peer_verified",
        "peer_state",
        // Only while a third host answers; only heartbeatd's, with FAILOVER_IP_PAIRS.
        "third_host",
        "service_addresses",
        // Only a group member's (tests/tests/group.rs reads it).
        "group",
        // Only while paused, or held by hand (tests/tests/control.rs).
        "pause",
        "held_by_hand",
        // Only once something was announced (tests/tests/announce.rs reads it).
        "last_announcement_ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in &top {
        assert!(
            keys(v).contains(f) || optional.contains(f),
            "{daemon}.json lacks the documented field `{f}`: {v}"
        );
    }
    for f in keys(v) {
        assert!(
            top.contains(&f),
            "{daemon}.json has the undocumented field `{f}`"
        );
    }
    for (list, heading) in [
        ("links", "links[]"),
        ("addresses", "addresses[]"),
        ("transitions", "transitions[]"),
        ("sends", "sends[]"),
    ] {
        let doc = documented(heading);
        for item in v[list].as_array().into_iter().flatten() {
            for f in keys(item) {
                assert!(
                    doc.contains(&f),
                    "{list}[] has the undocumented field `{f}`"
                );
            }
            for f in &doc {
                assert!(
                    keys(item).contains(f)
                        || ["interface", "error", "last_error", "announced_ms"]
                            .contains(&f.as_str()),
                    "{list}[] lacks the documented field `{f}`: {item}"
                );
            }
        }
    }
    let doc = documented("counters");
    for f in keys(&v["counters"]) {
        assert!(
            doc.contains(&f),
            "counters has the undocumented field `{f}`"
        );
    }
    parsed.state
}

#[test]
fn status_files_stay_valid_and_documented_through_a_takeover_and_release() {
    let mut lab = Lab::new("status");
    let (hb, _fo) = lab.start_pair(&[], &[]);
    let mut seen = BTreeSet::new();
    let sample = |lab: &Lab, seen: &mut BTreeSet<String>| {
        let fo = lab.status(Host::Sec, "failoverd");
        if !fo.is_null() {
            seen.insert(check(&fo, "failoverd"));
        }
        let hb = lab.status(Host::Pri, "heartbeatd");
        if !hb.is_null() {
            check(&hb, "heartbeatd");
        }
    };
    sample(&lab, &mut seen);
    let fo = lab.status(Host::Sec, "failoverd");
    assert_eq!(fo["state"], "monitoring", "{fo}");
    assert_eq!(fo["links"].as_array().map(Vec::len), Some(2), "{fo}");
    let hb_status = lab.status(Host::Pri, "heartbeatd");
    assert_eq!(hb_status["state"], "sending", "{hb_status}");
    assert_eq!(hb_status["interval_ms"], 100);
    // failoverctl reads them: both hosts healthy.
    assert_eq!(ctl(&lab, Host::Sec).0, 0, "{}", ctl(&lab, Host::Sec).1);
    assert_eq!(ctl(&lab, Host::Pri).0, 0, "{}", ctl(&lab, Host::Pri).1);

    lab.kill_primary(hb);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !lab.holds(Host::Sec, "eth0", VIP) {
        sample(&lab, &mut seen);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .status(Host::Sec, "failoverd")["state"]
            == "acquired")
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")
    );
    let fo = lab.status(Host::Sec, "failoverd");
    check(&fo, "failoverd");
    assert_eq!(fo["addresses"][0]["held"], true, "{fo}");
    // Failed over: exit 2. The dead primary's heartbeatd file goes stale: down.
    let (code, text) = ctl(&lab, Host::Sec);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("ACQUIRED"), "{text}");
    let (code, text) = ctl(&lab, Host::Pri);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("STALE"), "{text}");
    assert_eq!(fo["counters"]["takeovers"], 1);
    let last = fo["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["to"], "acquired", "{fo}");
    assert!(
        fo["links"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|l| l["state"] == "silent"),
        "{fo}"
    );

    lab.links(Host::Pri, true);
    let _hb = lab.start_heartbeatd(&[]);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && lab.holds(Host::Sec, "eth0", VIP) {
        sample(&lab, &mut seen);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        wait_for(Duration::from_secs(5), || {
            let s = lab.status(Host::Sec, "failoverd");
            s["state"] == "monitoring" && s["counters"]["releases"] == 1
        })
        .is_some(),
        "{}",
        lab.status(Host::Sec, "failoverd")
    );
    let fo = lab.status(Host::Sec, "failoverd");
    check(&fo, "failoverd");
    assert_eq!(fo["addresses"][0]["held"], false, "{fo}");
    assert!(
        wait_for(Duration::from_secs(5), || ctl(&lab, Host::Sec).0 == 0).is_some(),
        "{}",
        ctl(&lab, Host::Sec).1
    );
    let reasons: Vec<&str> = fo["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"timeout") && reasons.contains(&"peer-returned"),
        "{reasons:?}"
    );
    assert!(
        seen.contains("monitoring") && seen.contains("acquired"),
        "{seen:?}"
    );
}
