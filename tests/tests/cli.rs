//! The programs' command line: `-t` on the shipped samples, exit codes, error messages.
//! (No namespaces needed: `-t` only reads files.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ipfailover_e2e::output_text as text;
use ipfailover_e2e::{bin, repo};

fn scratch(name: &str) -> PathBuf {
    ipfailover_e2e::scratch("cli", name)
}

/// A copy of a sample whose secret file exists (mode 0600), as it would on a real host.
fn sample_with_secret(sample: &str, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("secret");
    std::fs::write(&secret, "a shared secret of more than sixteen bytes\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = std::fs::read_to_string(repo().join(sample)).expect("sample");
    let text = text.replace("/etc/ipfailover/secret", &secret.to_string_lossy());
    let name = Path::new(sample).file_name().expect("name");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("copy");
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(bin(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

#[test]
fn every_sample_passes_check_config_for_the_daemons_that_read_it() {
    let dir = scratch("samples");
    let cases: &[(&str, &[&str])] = &[
        ("etc/hostconfig.primary", &["heartbeatd"]),
        ("etc/hostconfig.secondary", &["failoverd"]),
        (
            "etc/peering/host-a.hostconfig",
            &["heartbeatd", "failoverd"],
        ),
        (
            "etc/peering/host-b.hostconfig",
            &["heartbeatd", "failoverd"],
        ),
        ("etc/ipfailover.toml", &["failoverd"]),
    ];
    for (sample, programs) in cases {
        let conf = sample_with_secret(sample, &dir);
        let conf = conf.to_string_lossy();
        for program in *programs {
            for flag in ["-t", "-n", "--check-config"] {
                let out = run(program, &[flag, "-c", &conf]);
                assert!(
                    out.status.success(),
                    "{program} {flag} -c {sample}: {:?}\n{}",
                    out.status,
                    text(&out)
                );
                let shown = String::from_utf8_lossy(&out.stdout);
                assert!(shown.contains("FAILOVER_PORT=\"1694\""), "{shown}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_bad_config_exits_78_naming_every_problem() {
    let dir = scratch("bad");
    let conf = dir.join("bad.conf");
    std::fs::write(
        &conf,
        "FAILOVER_PEER_IP=\"10.0.0.300\"\nFAILOVER_TIMOUT=\"3s\"\nFAILOVER_INTERVAL=\"fast\"\n",
    )
    .expect("config");
    let conf_s = conf.to_string_lossy();
    let out = run("failoverd", &["-t", "-c", &conf_s]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("{conf_s}:1: FAILOVER_PEER_IP")), "{t}");
    assert!(t.contains(&format!("{conf_s}:2: FAILOVER_TIMOUT")), "{t}");
    assert!(t.contains("did you mean FAILOVER_TIMEOUT"), "{t}");
    assert!(t.contains(&format!("{conf_s}:3: FAILOVER_INTERVAL")), "{t}");
    assert!(
        t.contains("FAILOVER_PEER_IP_PAIRS"),
        "the missing key is named too: {t}"
    );
    // Without -t the daemon refuses to start, with the same code.
    let out = run("failoverd", &["-c", &conf_s]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let out = run("heartbeatd", &["-c", &conf_s]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    // A missing file.
    let out = run("heartbeatd", &["-t", "-c", "/nonexistent/ipfailover.conf"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn an_unknown_interface_is_a_clear_error_at_start() {
    let dir = scratch("iface");
    let conf = dir.join("sec.conf");
    std::fs::write(
        &conf,
        format!(
            "FAILOVER_PEER_IP=\"198.51.100.10\"\nFAILOVER_PEER_IP_PAIRS=\"nosuchif0:198.51.100.10\"\n\
             FAILOVER_STATE_DIR=\"{}\"\n",
            dir.display()
        ),
    )
    .expect("config");
    // failoverd stops before it binds a socket or sends anything.
    let out = run("failoverd", &["-c", &conf.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("nosuchif0"), "{}", text(&out));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn usage_errors_exit_64_and_help_and_version_exit_0() {
    for program in ["heartbeatd", "failoverd"] {
        let out = run(program, &["--no-such-option"]);
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
        let out = run(program, &["-h"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out).contains("--check-config"));
        let out = run(program, &["-V"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out).contains(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn options_work_before_and_after_the_command() {
    let dir = scratch("order");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let conf = dir.join("sec.conf");
    std::fs::write(
        &conf,
        format!(
            "FAILOVER_PEER_IP=\"198.51.100.10\"\nFAILOVER_PEER_IP_PAIRS=\"eth0:198.51.100.10\"\n\
             FAILOVER_BCAST_IPS=\"198.51.100.255\"\nFAILOVER_STATE_DIR=\"{}\"\n",
            state.display()
        ),
    )
    .expect("config");
    let conf = conf.to_string_lossy();
    // failoverctl: -c before the command and after it, the same answer. No daemon runs, so the
    // answer is "down" (exit 2) as JSON: what matters is that the option was taken, not refused
    // as a usage error (64), and that the configured state directory was read.
    let orders: [&[&str]; 3] = [
        &["status", "--json", "-c", &conf],
        &["-c", &conf, "status", "--json"],
        &["status", "-c", &conf, "--json", "--log-level", "warn"],
    ];
    for args in orders {
        let out = run("failoverctl", args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "failoverctl {args:?}: {}",
            text(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("failoverctl {args:?}: not JSON ({e}): {}", text(&out)));
        assert_eq!(v["health"], "down", "failoverctl {args:?}: {v}");
        assert!(
            v.to_string().contains(&*state.to_string_lossy()),
            "failoverctl {args:?} read another state directory: {v}"
        );
    }
    for args in [["check-config", "-c", &conf], ["-c", &conf, "check-config"]] {
        let out = run("failoverctl", &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "failoverctl {args:?}: {}",
            text(&out)
        );
    }
    // The daemons: -t and -c in either order.
    for program in ["heartbeatd", "failoverd"] {
        for args in [["-t", "-c", &conf], ["-c", &conf, "-t"]] {
            let out = run(program, &args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{program} {args:?}: {}",
                text(&out)
            );
            assert!(
                text(&out).contains("FAILOVER_PORT=\"1694\""),
                "{}",
                text(&out)
            );
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Every exit code a program can return is in its --help (and -h), as docs/exit-codes.md
/// lists them: the daemons' 75 (state directory in use) too.
#[test]
fn each_programs_help_lists_its_exit_codes() {
    let cases: &[(&str, &[i32])] = &[
        ("heartbeatd", &[0, 1, 64, 75, 78]),
        ("failoverd", &[0, 1, 64, 75, 78]),
        ("failoverctl", &[0, 1, 2, 64, 69, 73, 77, 78]),
    ];
    for (program, codes) in cases {
        for flag in ["--help", "-h"] {
            let out = run(program, &[flag]);
            assert!(out.status.success(), "{program} {flag}: {}", text(&out));
            let help = String::from_utf8_lossy(&out.stdout);
            let block = help
                .split("Exit codes:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("{program} {flag}: no exit codes\n{help}"));
            let listed: Vec<i32> = block
                .lines()
                .filter_map(|l| l.strip_prefix("  ")?.split(' ').next()?.parse().ok())
                .collect();
            let mut unique = listed.clone();
            unique.dedup();
            assert_eq!(&unique, codes, "{program} {flag}:\n{block}");
        }
    }
}

/// The SMTP password in FAILOVER_EMAIL_TRANSPORT never appears in what -t and check-config
/// print, and both say how mail is protected: STARTTLS, and the password only inside TLS
/// unless the URL says password_in_clear=yes.
#[test]
fn the_smtp_password_is_hidden_and_the_mail_tls_is_said() {
    let dir = scratch("mailpw");
    let conf = dir.join("sec.conf");
    let write = |transport: &str| {
        std::fs::write(
            &conf,
            format!(
                "FAILOVER_PEER_IP=\"198.51.100.10\"\nFAILOVER_PEER_IP_PAIRS=\"eth0:198.51.100.10\"\n\
                 FAILOVER_EMAIL_RECIPIENT=\"root@example.org\"\n\
                 FAILOVER_EMAIL_TRANSPORT=\"{transport}\"\n"
            ),
        )
        .expect("config");
    };
    let conf_s = conf.to_string_lossy().into_owned();
    let cases = [
        (
            "smtp://ipfo:s3cret-pw@mail.example.org:587?tls=required",
            "smtp://ipfo:***@mail.example.org:587?tls=required: STARTTLS required; the password \
             only inside TLS",
        ),
        (
            "smtp://ipfo:s3cret-pw@mail.example.org",
            "smtp://ipfo:***@mail.example.org: STARTTLS when the server offers it; the password \
             only inside TLS",
        ),
        (
            "smtp://ipfo:s3cret-pw@mail.example.org?password_in_clear=yes",
            "the password in clear without TLS (password_in_clear=yes)",
        ),
    ];
    for (transport, said) in cases {
        write(transport);
        for (program, args) in [
            ("failoverd", vec!["-t", "-c", &conf_s]),
            ("failoverctl", vec!["check-config", "-c", &conf_s]),
        ] {
            let out = run(program, &args);
            let all = text(&out);
            assert!(out.status.success(), "{program} {transport}: {all}");
            assert!(
                !all.contains("s3cret-pw"),
                "{program} shows the password: {all}"
            );
            assert!(
                all.contains("FAILOVER_EMAIL_TRANSPORT=\"smtp://ipfo:***@mail.example.org"),
                "{program}: {all}"
            );
            assert!(all.contains(said), "{program}, {transport}: {all}");
        }
    }
    // A misspelt parameter is refused, not ignored, and the password is not shown either.
    write("smtp://ipfo:s3cret-pw@mail.example.org?password_in_claer=yes");
    for (program, args) in [
        ("failoverd", vec!["-t", "-c", &conf_s]),
        ("failoverctl", vec!["check-config", "-c", &conf_s]),
    ] {
        let out = run(program, &args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(78), "{program}: {all}");
        assert!(
            all.contains("unknown parameter \"password_in_claer\""),
            "{all}"
        );
        assert!(
            !all.contains("s3cret-pw"),
            "{program} shows the password: {all}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `failoverctl init` writes values that read back as given, or refuses them, and on any
/// failure leaves nothing behind: neither the configuration nor the secret it made, nor the
/// directories it made for them.
#[test]
fn init_quotes_what_it_writes_and_writes_nothing_when_it_fails() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("init");
    let d = dir.to_string_lossy().into_owned();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--secondary",
            "--peer",
            "198.51.100.10",
            "--pairs",
            "eth0:198.51.100.10",
        ];
        args.extend_from_slice(extra);
        run("failoverctl", &args)
    };
    let leftovers = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("scratch")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let secret = format!("{d}/new/secret");
    let conf = format!("{d}/etc/hostconfig");

    // A quote and a newline in --email once added a key of the caller's choosing.
    let out = init(&[
        "--email",
        "root@example.org\"\nFAILOVER_SCRIPT_DIR=\"/tmp/evil",
        "--secret-file",
        &secret,
        "--output",
        &conf,
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--email"), "{}", text(&out));
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    // A quote alone is written as it is, and the check then refuses the address.
    let out = init(&[
        "--email",
        "root@example.org\" x",
        "--secret-file",
        &secret,
        "--output",
        &conf,
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("FAILOVER_EMAIL_RECIPIENT"),
        "{}",
        text(&out)
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());

    // A secret file the daemons would refuse: nothing written (the configuration was, once).
    let open = dir.join("open-secret");
    std::fs::write(&open, "a shared secret of more than sixteen bytes\n").expect("secret");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = init(&["--secret-file", &open.to_string_lossy(), "--output", &conf]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    assert_eq!(leftovers(), ["open-secret"]);
    std::fs::remove_file(&open).expect("rm");

    // The configuration cannot be written (its directory would be below a file): the secret
    // made for it goes too.
    std::fs::write(dir.join("file"), "").expect("file");
    let out = init(&[
        "--secret-file",
        &secret,
        "--output",
        &format!("{d}/file/hostconfig"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(leftovers(), ["file"]);

    // Shell characters in a path are quoted so that it reads back as given.
    let scripts = format!("{d}/hooks \"$HOME\" `id` \\ it's");
    let out = init(&[
        "--email",
        "root@example.org",
        "--script-dir",
        &scripts,
        "--secret-file",
        &secret,
        "--output",
        &conf,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run("failoverctl", &["check-config", "-c", &conf]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let quoted = scripts
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
        .replace('`', "\\`");
    assert!(
        shown.contains(&format!("FAILOVER_SCRIPT_DIR=\"{quoted}\"\n")),
        "{shown}"
    );
    assert!(
        shown.contains("FAILOVER_EMAIL_RECIPIENT=\"root@example.org\""),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `failoverctl init --group` writes a member's configuration that `check-config` passes, with
/// no secret file; without etcd's endpoints it asks (no terminal: refuses) and writes nothing.
#[test]
fn init_group_writes_a_members_configuration() {
    let dir = scratch("init-group");
    let d = dir.to_string_lossy().into_owned();
    let conf = format!("{d}/etc/hostconfig");
    let secret = format!("{d}/secret");
    let out = run(
        "failoverctl",
        &[
            "init",
            "--group",
            "web",
            "--pairs",
            "eth0:198.51.100.100/24",
            "--output",
            &conf,
            "--secret-file",
            &secret,
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--etcd"), "{}", text(&out));
    assert!(!Path::new(&conf).exists());
    let out = run(
        "failoverctl",
        &[
            "init",
            "--group",
            "web",
            "--etcd",
            "http://203.0.113.1:2379",
            "http://203.0.113.2:2379",
            "--pairs",
            "eth0:198.51.100.100/24",
            "eth0:198.51.100.101/24",
            "--priority",
            "150",
            "--member-name",
            "web-2",
            "--email",
            "ops@example.org",
            "--output",
            &conf,
            "--secret-file",
            &secret,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("init --group web on every member"),
        "{}",
        text(&out)
    );
    assert!(
        !Path::new(&secret).exists(),
        "a member needs no heartbeat secret"
    );
    let out = run("failoverctl", &["check-config", "-c", &conf]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for line in [
        "FAILOVER_ETCD_ENDPOINTS=\"http://203.0.113.1:2379 http://203.0.113.2:2379\"",
        "FAILOVER_GROUP=\"web\"",
        "FAILOVER_PRIORITY=\"150\"",
        "FAILOVER_MEMBER_NAME=\"web-2\"",
    ] {
        assert!(shown.contains(line), "{line}:\n{shown}");
    }
    // A pair's option with --group is a usage error.
    let out = run(
        "failoverctl",
        &["init", "--group", "web", "--peer", "198.51.100.10"],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
