//! A newcomer's first run: the demo needs nothing but iproute2 and the project's binaries, and
//! `scripts/deps` names (or installs) what the tests need. There is no fresh machine here, so
//! the tools are hidden in a private mount namespace (a bind mount of /dev/null over each
//! binary, an empty tmpfs over aiosmtpd's package), as ../shared/TESTING.md describes; the
//! root namespace's mounts are never touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use ipfailover_e2e::output_text as text;
use ipfailover_e2e::{bin, repo, scratch};

/// Runs `script` with bash in a private mount namespace in which `tools` (and, if asked,
/// python3's aiosmtpd) are hidden, from the repository's top directory.
fn with_hidden(tools: &[&str], hide_aiosmtpd: bool, script: &str) -> Output {
    let mut prelude = String::from("set -u\nmount --make-rprivate /\n");
    for t in tools {
        // The real file, not a link to it: hiding /sbin/ip must hide /usr/sbin/ip too.
        prelude.push_str(&format!(
            "p=$(command -v {t}) || {{ echo 'cannot hide {t}: it is not installed' >&2; exit 90; }}\n\
             mount --bind /dev/null \"$(realpath \"$p\")\" || exit 91\n\
             if {t} --version >/dev/null 2>&1; then echo '{t} still runs' >&2; exit 92; fi\n"
        ));
    }
    if hide_aiosmtpd {
        prelude.push_str(
            "d=$(/usr/bin/python3 -c 'import aiosmtpd, os; print(os.path.dirname(aiosmtpd.__file__))') \
             || { echo 'cannot hide aiosmtpd: it is not installed' >&2; exit 90; }\n\
             mount -t tmpfs none \"$d\" || exit 91\n\
             if /usr/bin/python3 -c 'import aiosmtpd.smtp' 2>/dev/null; then echo 'aiosmtpd still imports' >&2; exit 92; fi\n",
        );
    }
    let out = Command::new("unshare")
        .args(["-m", "bash", "-c", &format!("{prelude}{script}")])
        .current_dir(repo())
        .output()
        .expect("unshare (util-linux) and bash");
    let code = out.status.code();
    assert!(
        !matches!(code, Some(90..=92)),
        "could not hide the tools ({code:?}): {}",
        text(&out)
    );
    out
}

/// `make demo` with the build left out (CARGO=true: the test's binaries are built already).
fn make_demo(cargo: &str) -> String {
    format!(
        "make -s demo CARGO={cargo} DEMO={}",
        bin("ipfo-demo").display()
    )
}

#[test]
fn the_demo_runs_without_ping_nft_iptables_or_aiosmtpd() {
    let out = with_hidden(&["ping", "nft", "iptables"], true, &make_demo("true"));
    let t = text(&out);
    assert!(out.status.success(), "make demo failed:\n{t}");
    for step in [
        "client pings 198.51.100.10: answered by pri",
        "sec holds 198.51.100.10",
        "answered by sec",
        "sec gave both back",
        "after the goodbye",
        "never both at once",
    ] {
        assert!(!t.contains("SEEN ON BOTH"), "{t}");
        assert!(t.contains(step), "the demo did not show {step:?}:\n{t}");
    }
}

#[test]
fn the_demo_says_in_one_line_what_it_lacks_before_building() {
    let dir = scratch("firstrun", "demo-preflight");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    // A stand-in for cargo that leaves a mark: the preflight must stop before the build.
    let marker = dir.join("built");
    let cargo = dir.join("cargo");
    fs::write(&cargo, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("cargo");
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).expect("chmod");
    let cargo = cargo.to_string_lossy().into_owned();

    // Without iproute2.
    let out = with_hidden(&["ip"], false, &make_demo(&cargo));
    let t = text(&out);
    assert!(
        !out.status.success(),
        "make demo without ip succeeded:\n{t}"
    );
    assert!(
        t.contains("iproute2") && t.contains("apt-get install iproute2"),
        "{t}"
    );
    assert!(
        !marker.exists(),
        "make demo built before saying ip is missing:\n{t}"
    );

    // Without root.
    let out = with_hidden(
        &[],
        false,
        &format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups {}",
            make_demo(&cargo)
        ),
    );
    let t = text(&out);
    assert!(!out.status.success(), "make demo as nobody succeeded:\n{t}");
    let said: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("make demo needs"))
        .collect();
    assert_eq!(said.len(), 1, "one line, saying what to do:\n{t}");
    assert!(
        said[0].contains("root") && said[0].contains("sudo make demo"),
        "{t}"
    );
    assert!(
        !marker.exists(),
        "make demo built before saying root is needed:\n{t}"
    );

    // With everything: the preflight passes and the build runs.
    let out = with_hidden(&[], false, &format!("scripts/deps demo && {cargo}"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(marker.exists());
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_set_up_script_names_or_installs_what_the_tests_lack() {
    let dir = scratch("firstrun", "deps");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let hidden = ["ping", "nft"];

    // Report only: every missing tool with its package, and the line that installs them.
    let out = with_hidden(&hidden, true, "scripts/deps --check test");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for named in ["ping (iputils-ping)", "nft (nftables)", "python3-aiosmtpd"] {
        assert!(t.contains(named), "{named} not named:\n{t}");
    }
    assert!(
        t.contains(
            "apt-get install --no-install-recommends iputils-ping nftables python3-aiosmtpd"
        ),
        "{t}"
    );
    assert!(
        !t.contains("iptables"),
        "iptables is there and was named:\n{t}"
    );

    // Without root: the same list, and nothing is installed.
    let out = with_hidden(
        &hidden,
        true,
        "setpriv --reuid=65534 --regid=65534 --clear-groups scripts/deps test",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("ping (iputils-ping)") && t.contains("python3-aiosmtpd"),
        "{t}"
    );

    // As root on Debian: apt-get installs exactly the missing packages, quietly, and the
    // script says which. (apt-get is watched here, not run: the real install is what CI and
    // a fresh machine do. This stand-in installs nothing, so the script must then say that
    // the tools are still missing rather than claim success.)
    let calls = dir.join("apt-calls");
    let apt = dir.join("apt-get");
    fs::write(
        &apt,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
    )
    .expect("apt stand-in");
    fs::set_permissions(&apt, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = with_hidden(
        &hidden,
        true,
        &format!("IPFO_APT_GET={} scripts/deps test", apt.display()),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("installing iputils-ping nftables python3-aiosmtpd"),
        "it says what it installs:\n{t}"
    );
    assert!(t.contains("still missing after the install"), "{t}");
    let calls = fs::read_to_string(&calls).expect("apt-get was called");
    assert_eq!(
        calls,
        "update -qq\ninstall -y -qq --no-install-recommends iputils-ping nftables python3-aiosmtpd\n"
    );

    // Nothing hidden: nothing to do, nothing said.
    let out = with_hidden(&[], false, "scripts/deps --check test");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out), "");
    fs::remove_dir_all(&dir).expect("cleanup");
}
