//! The Debian package: `make deb` builds it with cargo-deb; it installs with `dpkg -i` on this
//! machine (root, as CI), every file it names is there, its units verify, the installed
//! programs read the installed sample, `man` shows the installed pages; then it is removed
//! (the samples, conffiles, stay) and purged (nothing of it stays). Between the two it is
//! upgraded to a newer version over an edited sample and an administrator's hostconfig, which
//! stay. Nothing is enabled or started at any point.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use ipfailover_e2e::{output_text, repo, systemd_verify};

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn ok(argv: &[&str]) -> String {
    let out = run(argv);
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{text}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes a file this test made outside its scratch directory, whatever happens.
struct RemoveFile(&'static str);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
        // /etc/ipfailover, if the purge left it only for that file.
        let _ = std::fs::remove_dir("/etc/ipfailover");
    }
}

/// The same package as another version: unpacked, its control file's version changed,
/// packed again (what an upgrade installs, without building twice).
fn repack(deb: &str, dir: &Path, version: &str) -> String {
    let tree = dir.join("tree");
    let tree_s = tree.to_string_lossy().into_owned();
    ok(&["dpkg-deb", "-R", deb, &tree_s]);
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).expect("control");
    let out = dir.join(format!("ipfailover_{version}.deb"));
    let out_s = out.to_string_lossy().into_owned();
    ok(&["dpkg-deb", "--root-owner-group", "-b", &tree_s, &out_s]);
    out_s
}

/// Removes the package if a failed run left it installed.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "ipfailover"])
            .output();
    }
}

#[test]
fn the_package_installs_verifies_removes_and_purges_cleanly() {
    // An ipfailover already installed here would be removed by this test: refuse instead.
    let before = run(&["dpkg-query", "-W", "-f=${Status}", "ipfailover"]);
    assert!(
        !String::from_utf8_lossy(&before.stdout).contains("installed"),
        "an ipfailover package is installed on this machine already; this test installs and \
         purges its own and will not touch that one"
    );
    ok(&["scripts/deb"]);
    let version = env!("CARGO_PKG_VERSION");
    let debs: Vec<_> = std::fs::read_dir(repo().join("target/debian"))
        .expect("target/debian")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("ipfailover_{version}"))
            })
        })
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = debs[0].to_string_lossy().into_owned();

    // What it holds: no live configuration, the samples as conffiles.
    let contents = ok(&["dpkg-deb", "--contents", &deb]);
    assert!(
        !contents.contains("./etc/ipfailover/hostconfig\n"),
        "{contents}"
    );
    let conffiles = ok(&["dpkg-deb", "--info", &deb, "conffiles"]);
    for f in [
        "/etc/ipfailover/hostconfig.primary",
        "/etc/ipfailover/hostconfig.secondary",
        "/etc/ipfailover/hostconfig.group",
    ] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} is not a conffile:\n{conffiles}"
        );
    }

    let _purge = Purge;
    // Installing starts nothing (and there is nothing to enable it with here anyway).
    ok(&["dpkg", "-i", &deb]);
    let listed = ok(&["dpkg", "-L", "ipfailover"]);
    let files: BTreeSet<&str> = listed.lines().collect();
    for f in [
        "/usr/sbin/heartbeatd",
        "/usr/sbin/failoverd",
        "/usr/bin/failoverctl",
        "/lib/systemd/system/failoverd.service",
        "/lib/systemd/system/heartbeatd.service",
        "/lib/systemd/system/failoverctl-metrics.timer",
        "/etc/ipfailover/hostconfig.primary",
        "/usr/share/ipfailover/hooks-template/Test",
        "/usr/share/doc/ipfailover/groups.md",
        "/usr/share/man/man8/failoverd.8.gz",
        "/usr/share/man/man5/ipfailover-hostconfig.5.gz",
        "/usr/share/bash-completion/completions/failoverctl",
        "/usr/share/zsh/vendor-completions/_failoverd",
    ] {
        assert!(files.contains(f), "{f} is not in the package:\n{listed}");
    }
    for f in &files {
        assert!(Path::new(f).exists(), "{f} is listed but not installed");
    }
    // The installed units name the installed programs, and verify.
    for unit in [
        "heartbeatd.service",
        "failoverd.service",
        "failoverctl-metrics.service",
    ] {
        let path = format!("/lib/systemd/system/{unit}");
        let text = std::fs::read_to_string(&path).expect("unit");
        assert!(
            !text.contains("/usr/local"),
            "{unit} names /usr/local:\n{text}"
        );
        if let Err(e) = systemd_verify(&[Path::new(&path)]) {
            panic!("{unit}: {e}");
        }
    }
    // The installed heartbeatd reads the installed sample (its secret made for the check).
    let dir = ipfailover_e2e::scratch("package", "check");
    let secret = dir.join("secret");
    std::fs::write(&secret, "a shared secret of more than sixteen bytes\n").expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let sample = std::fs::read_to_string("/etc/ipfailover/hostconfig.primary")
        .expect("sample")
        .replace("/etc/ipfailover/secret", &secret.to_string_lossy());
    let conf = dir.join("hostconfig.primary");
    std::fs::write(&conf, sample).expect("copy");
    let shown = ok(&["/usr/sbin/heartbeatd", "-t", "-c", &conf.to_string_lossy()]);
    assert!(shown.contains("FAILOVER_BCAST_IPS="), "{shown}");
    // man finds the installed page.
    let page = ok(&["man", "-l", "/usr/share/man/man8/failoverd.8.gz"]);
    assert!(page.contains("failoverd"), "{page}");
    ok(&["/usr/bin/failoverctl", "--version"]);

    // An upgrade, to the same package as version <v>+1, over a sample the administrator
    // edited and the administrator's own hostconfig: dpkg asks nothing (its stdin is closed,
    // so a question would fail it), the edit and the hostconfig stay, the files are the same.
    let live = "/etc/ipfailover/hostconfig";
    assert!(
        !Path::new(live).exists(),
        "{live} exists on this machine; this test makes and removes its own"
    );
    let _live = RemoveFile(live);
    std::fs::write(live, "FAILOVER_BCAST_IPS=\"198.51.100.255\"\n").expect("hostconfig");
    std::fs::set_permissions(live, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let edited = "/etc/ipfailover/hostconfig.primary";
    let mut text = std::fs::read_to_string(edited).expect("sample");
    text.push_str("# edited by the administrator\n");
    std::fs::write(edited, &text).expect("edit the sample");
    let newer_version = format!("{version}+1");
    let newer = repack(&deb, &dir, &newer_version);
    ok(&["dpkg", "-i", &newer]);
    let installed = ok(&["dpkg-query", "-W", "-f=${Version}", "ipfailover"]);
    assert_eq!(installed, newer_version);
    assert_eq!(std::fs::read_to_string(edited).expect("sample"), text);
    assert!(Path::new(live).exists(), "the upgrade removed {live}");
    let relisted = ok(&["dpkg", "-L", "ipfailover"]);
    // (A package packed by dpkg-deb lists its root, "/.", which cargo-deb's does not.)
    let refiles: BTreeSet<&str> = relisted.lines().filter(|l| *l != "/.").collect();
    assert_eq!(refiles, files, "the upgrade changed the files");
    for f in &files {
        assert!(Path::new(f).exists(), "{f} is gone after the upgrade");
    }

    // Removed: the programs go, the samples (conffiles) stay; purged: they go too.
    ok(&["dpkg", "-r", "ipfailover"]);
    assert!(!Path::new("/usr/sbin/failoverd").exists());
    assert!(Path::new("/etc/ipfailover/hostconfig.primary").exists());
    ok(&["dpkg", "-P", "ipfailover"]);
    for f in &files {
        let p = Path::new(f);
        // Directories other packages share (/usr/share/man/man8, ...) may stay.
        if p.is_dir() {
            continue;
        }
        assert!(!p.exists(), "{f} is left after the purge");
    }
    assert!(!Path::new("/etc/ipfailover/hostconfig.primary").exists());
    // The administrator's own configuration is theirs: even a purge leaves it.
    assert!(Path::new(live).exists(), "the purge removed {live}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
