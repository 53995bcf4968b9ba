//! The sample hooks in hooks-template/ work: their own test script (fake systemctl, launchctl,
//! ping and mount for idempotence, and the real ping in namespaces of its own) passes.

use std::process::Command;

#[test]
fn hooks_template_test_script_passes() {
    let dir = ipfailover_e2e::repo().join("hooks-template");
    let out = Command::new("bash")
        .arg(dir.join("test.sh"))
        .env("IPFO_HOOKS_NETNS", "require")
        .output()
        .expect("bash");
    let text = ipfailover_e2e::output_text(&out);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        out.status.success(),
        "hooks-template/test.sh failed:\n{text}"
    );
    assert!(last.ends_with(" 0 failed"), "unexpected summary: {last}");
}
