//! Service files and installation: the systemd units pass `systemd-analyze verify`, the
//! launchd plists parse, and `make install` puts everything where the docs say.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use ipfailover_e2e::{bin, bin_dir, repo};

fn scratch(name: &str) -> PathBuf {
    ipfailover_e2e::scratch("install", name)
}

#[test]
fn systemd_units_verify_cleanly_with_only_the_capabilities_needed() {
    let dir = scratch("units");
    for (unit, caps) in [
        ("heartbeatd", "CAP_NET_RAW"),
        ("failoverd", "CAP_NET_ADMIN CAP_NET_RAW"),
    ] {
        let text =
            fs::read_to_string(repo().join(format!("systemd/{unit}.service"))).expect("unit");
        for line in [
            "After=network-online.target",
            "Restart=on-failure",
            "RestartPreventExitStatus=78",
            &format!("CapabilityBoundingSet={caps}"),
            &format!("AmbientCapabilities={caps}"),
            "NoNewPrivileges=yes",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit}: no `{line}`");
        }
        // systemd-analyze checks that ExecStart exists: point it at the built binary.
        let built = bin(unit);
        let text = text.replace(&format!("/usr/local/sbin/{unit}"), &built.to_string_lossy());
        let path = dir.join(format!("{unit}.service"));
        fs::write(&path, text).expect("unit copy");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (package systemd) is needed");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // It exits 0 on unknown keys but says so: any output is a finding.
        let findings: Vec<&str> = said
            .lines()
            .filter(|l| !l.contains("Failed to connect to bus"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            out.status.success() && findings.is_empty(),
            "{unit}: {said}"
        );
    }
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn launchd_plists_parse_with_the_keys_launchd_needs() {
    for daemon in ["heartbeatd", "failoverd"] {
        let path = repo().join(format!("launchd/org.ipfailover.{daemon}.plist"));
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import plistlib,sys\n\
                 d=plistlib.load(open(sys.argv[1],'rb'))\n\
                 print(d['Label'], d['ProgramArguments'][0], d['RunAtLoad'], d['KeepAlive'], \
                 d['StandardOutPath'], d['StandardErrorPath'])",
            ])
            .arg(&path)
            .output()
            .expect("/usr/bin/python3 (plistlib) is needed");
        assert!(
            out.status.success(),
            "{daemon}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.trim(),
            format!(
                "org.ipfailover.{daemon} /usr/local/sbin/{daemon} True True \
                 /var/log/ipfailover/{daemon}.log /var/log/ipfailover/{daemon}.log"
            )
        );
    }
}

#[test]
fn make_install_honours_prefix_and_destdir() {
    let dest = scratch("destdir");
    let build = bin_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into());
    let out = Command::new("make")
        .current_dir(repo())
        .arg("install")
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("PREFIX=/usr")
        .arg(format!("BUILD={build}"))
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/sbin/heartbeatd",
        "usr/sbin/failoverd",
        "usr/share/ipfailover/etc/hostconfig.secondary",
        "usr/share/ipfailover/etc/peering/host-a.hostconfig",
        "usr/share/doc/ipfailover/README.md",
        "etc/systemd/system/failoverd.service",
        "etc/systemd/system/heartbeatd.service",
        "etc/ipfailover",
    ] {
        assert!(dest.join(f).exists(), "{f} not installed");
    }
    let unit = fs::read_to_string(dest.join("etc/systemd/system/failoverd.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/sbin/failoverd"), "{unit}");
    assert!(!unit.contains("/usr/local"), "PREFIX not applied: {unit}");
    // Nothing outside DESTDIR: the live configuration is never written.
    assert!(!dest.join("etc/ipfailover/hostconfig").exists());
    fs::remove_dir_all(&dest).expect("cleanup");
}
