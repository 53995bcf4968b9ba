//! `failoverctl metrics` through a takeover: what it prints passes Prometheus's own checker
//! (`promtool check metrics`, Debian's package prometheus) at every step, and says what
//! happened.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipfailover_e2e::{bin, wait_for, Host, Lab, VIP};

/// `failoverctl metrics --state-dir` on a host's state directory.
fn metrics(lab: &Lab, host: Host) -> String {
    let out = Command::new(bin("failoverctl"))
        .args(["metrics", "--state-dir"])
        .arg(lab.state_dir(host))
        .output()
        .expect("failoverctl metrics");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// promtool's verdict on an exposition: its complaints (none when it is clean).
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus; scripts/deps test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = ipfailover_e2e::output_text(&out);
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("promtool: {:?}: {said}", out.status)
    }
}

#[test]
fn metrics_pass_promtool_through_a_takeover_and_tell_it() {
    let mut lab = Lab::new("metrics");
    let (hb, _fo) = lab.start_pair(&[], &[]);
    for host in [Host::Sec, Host::Pri] {
        let m = metrics(&lab, host);
        assert_eq!(promtool(&m), "", "{m}");
    }
    let m = metrics(&lab, Host::Sec);
    assert!(m.contains("ipfailover_health 0\n"), "{m}");
    assert!(
        m.contains("ipfailover_state{daemon=\"failoverd\",state=\"monitoring\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("ipfailover_link_up{daemon=\"failoverd\",peer_address=\"198.51.100.10\""),
        "{m}"
    );

    lab.kill_primary(hb);
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .status(Host::Sec, "failoverd")["state"]
            == "acquired")
        .is_some(),
        "{}",
        lab.logs()
    );
    let m = metrics(&lab, Host::Sec);
    assert_eq!(promtool(&m), "", "{m}");
    assert!(m.contains("ipfailover_health 2\n"), "{m}");
    assert!(m.contains("ipfailover_failed_over 1\n"), "{m}");
    assert!(
        m.contains("ipfailover_state{daemon=\"failoverd\",state=\"acquired\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("ipfailover_takeovers_total{daemon=\"failoverd\"} 1\n"),
        "{m}"
    );
    assert!(m.contains(&format!("ipfailover_address_held{{daemon=\"failoverd\",address=\"{VIP}\",interface=\"eth0\"}} 1\n")), "{m}");
    // --output writes the file atomically, for the textfile collector.
    let file = lab.dir.join("ipfailover.prom");
    let out = Command::new(bin("failoverctl"))
        .args(["metrics", "--state-dir"])
        .arg(lab.state_dir(Host::Sec))
        .arg("--output")
        .arg(&file)
        .output()
        .expect("failoverctl metrics --output");
    assert!(out.status.success());
    let written = std::fs::read_to_string(&file).expect("the .prom file");
    assert_eq!(promtool(&written), "");
}
