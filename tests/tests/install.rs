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
            // Readiness and the watchdog (tests/tests/systemd.rs checks what is sent).
            "Type=notify",
            "WatchdogSec=10s",
            "ExecReload=/bin/kill -HUP $MAINPID",
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

#[test]
fn the_metrics_timer_and_its_service_verify_cleanly() {
    let dir = scratch("metrics-units");
    let service = fs::read_to_string(repo().join("systemd/failoverctl-metrics.service"))
        .expect("unit")
        .replace(
            "/usr/local/bin/failoverctl",
            &bin("failoverctl").to_string_lossy(),
        );
    let timer =
        fs::read_to_string(repo().join("systemd/failoverctl-metrics.timer")).expect("timer");
    assert!(timer.contains("OnUnitActiveSec=15s"), "{timer}");
    fs::write(dir.join("failoverctl-metrics.service"), service).expect("unit copy");
    fs::write(dir.join("failoverctl-metrics.timer"), timer).expect("timer copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("failoverctl-metrics.timer"))
        .arg(dir.join("failoverctl-metrics.service"))
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<&str> = said
        .lines()
        .filter(|l| !l.contains("Failed to connect to bus"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(out.status.success() && findings.is_empty(), "{said}");
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn man_pages_render_without_a_warning_and_completions_parse() {
    let out_dir = scratch("man");
    let out = Command::new(repo().join("scripts/man"))
        .arg(bin_dir())
        .arg(&out_dir)
        .output()
        .expect("scripts/man");
    assert!(
        out.status.success(),
        "scripts/man: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pages = [
        "man8/heartbeatd.8",
        "man8/failoverd.8",
        "man8/failoverctl.8",
        "man8/failoverctl-status.8",
        "man8/failoverctl-check-config.8",
        "man8/failoverctl-metrics.8",
        "man5/ipfailover-hostconfig.5",
    ];
    for page in pages {
        let path = out_dir.join(page);
        assert!(path.exists(), "{page} not made");
        // -ww: every warning; -k: the UTF-8 of the docs through preconv, as man does.
        let out = Command::new("groff")
            .args(["-k", "-t", "-man", "-ww", "-Tutf8"])
            .arg(&path)
            .output()
            .expect("groff (package groff-base)");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.trim().is_empty(),
            "{page}: {warnings}"
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.len() > 500, "{page} is nearly empty:\n{shown}");
    }
    // The hostconfig page carries every key of the reference.
    let five = fs::read_to_string(out_dir.join("man5/ipfailover-hostconfig.5")).expect("page");
    for key in [
        "FAILOVER_PEER_IP_PAIRS",
        "FAILOVER_LEASE_TTL",
        "FAILOVER_ETCD_PASSWORD_FILE",
    ] {
        assert!(
            five.contains(key),
            "{key} is not in ipfailover-hostconfig(5)"
        );
    }
    for p in ["heartbeatd", "failoverd", "failoverctl"] {
        let bash = out_dir.join("bash").join(p);
        assert!(
            Command::new("bash")
                .arg("-n")
                .arg(&bash)
                .status()
                .expect("bash")
                .success(),
            "{p}'s bash completion does not parse"
        );
        assert!(out_dir.join("zsh").join(format!("_{p}")).exists());
    }
    let ctl = fs::read_to_string(out_dir.join("bash/failoverctl")).expect("completion");
    assert!(
        ctl.contains("metrics") && ctl.contains("check-config"),
        "{ctl}"
    );
    fs::remove_dir_all(&out_dir).expect("cleanup");
}
