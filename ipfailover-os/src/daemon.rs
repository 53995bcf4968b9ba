//! What every ipfailover program does the same way: command line, exit codes, logging,
//! settings and secret loading.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use ipfailover::settings::{load_secrets, Role, Settings};
use ipfailover::wire::Key;

/// Exit codes of the three programs, in one table: sysexits.h values where one fits. The
/// table is [`exit::TABLE`]; docs/exit-codes.md shows it, and each program's `--help` lists
/// the rows that concern it ([`exit::help`]).
pub mod exit {
    /// Normal exit; `failoverctl status`: healthy; a command: done.
    pub const OK: i32 = 0;
    /// Any other failure; for `failoverctl status`, [`DEGRADED`] (the same number); for a
    /// command to failoverd, refused.
    pub const FAILURE: i32 = 1;
    /// `failoverctl status`: degraded.
    pub const DEGRADED: i32 = 1;
    /// `failoverctl status`: failed over, or down.
    pub const DOWN: i32 = 2;
    /// Bad command line (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// No failoverd answers on the control socket (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// A file failoverctl was asked to write cannot be written (EX_CANTCREAT).
    pub const CANTCREAT: i32 = 73;
    /// The state directory is in use by another running daemon (EX_TEMPFAIL): a supervisor
    /// may try again later.
    pub const IN_USE: i32 = 75;
    /// This user may not command failoverd (EX_NOPERM).
    pub const NOPERM: i32 = 77;
    /// Bad configuration (EX_CONFIG): supervisors should not restart.
    pub const CONFIG: i32 = 78;

    /// One row of the table: a code, its name here, the programs that exit with it, and what
    /// it means for them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Row {
        /// The exit code.
        pub code: i32,
        /// The constant's name in this module.
        pub name: &'static str,
        /// The programs that use the code with this meaning.
        pub programs: &'static [&'static str],
        /// What it means.
        pub meaning: &'static str,
    }

    const ALL: &[&str] = &["heartbeatd", "failoverd", "failoverctl"];
    const DAEMONS: &[&str] = &["heartbeatd", "failoverd"];
    const CTL: &[&str] = &["failoverctl"];

    /// Every exit code of every program. A code may have a row per meaning.
    pub const TABLE: &[Row] = &[
        Row {
            code: OK,
            name: "OK",
            programs: DAEMONS,
            meaning: "normal exit: stopped by a signal (after the goodbye, or the release of \
                      what was held); -t: the configuration is valid",
        },
        Row {
            code: OK,
            name: "OK",
            programs: CTL,
            meaning: "status: healthy; a command: done; check-config, -t: the configuration \
                      is valid",
        },
        Row {
            code: FAILURE,
            name: "FAILURE",
            programs: DAEMONS,
            meaning: "a failure after start (a socket, the event loop)",
        },
        Row {
            code: DEGRADED,
            name: "DEGRADED",
            programs: CTL,
            meaning: "status: degraded; pause, resume, release, takeover: refused by failoverd \
                      (the reason is printed); init: a file could not be written",
        },
        Row {
            code: DOWN,
            name: "DOWN",
            programs: CTL,
            meaning: "status: failed over (failoverd acquiring, holding or releasing the \
                      peer's addresses) or down (no fresh status file, or an address of the \
                      group has no holder)",
        },
        Row {
            code: USAGE,
            name: "USAGE",
            programs: ALL,
            meaning: "usage error on the command line",
        },
        Row {
            code: UNAVAILABLE,
            name: "UNAVAILABLE",
            programs: CTL,
            meaning: "pause, resume, release, takeover: no failoverd answers on the control \
                      socket (not running, another state directory, or a group member)",
        },
        Row {
            code: CANTCREAT,
            name: "CANTCREAT",
            programs: CTL,
            meaning: "status --html, metrics --output: the file cannot be written",
        },
        Row {
            code: IN_USE,
            name: "IN_USE",
            programs: DAEMONS,
            meaning: "the state directory is in use by another running daemon",
        },
        Row {
            code: NOPERM,
            name: "NOPERM",
            programs: CTL,
            meaning: "pause, resume, release, takeover: this user may not command failoverd",
        },
        Row {
            code: CONFIG,
            name: "CONFIG",
            programs: DAEMONS,
            meaning: "configuration error: an invalid file, secret file, state directory or \
                      interface; a supervisor should not restart",
        },
        Row {
            code: CONFIG,
            name: "CONFIG",
            programs: CTL,
            meaning: "configuration error: check-config, -t or init found a problem, or the \
                      settings that name the state directory cannot be read; init: the file \
                      exists and --force was not given",
        },
    ];

    /// The `Exit codes:` block of `program`'s `--help`: the rows of [`TABLE`] for it, each
    /// meaning wrapped under its code.
    pub fn help(program: &str) -> String {
        const WIDTH: usize = 92;
        let mut out = String::from("Exit codes:\n");
        for row in TABLE.iter().filter(|r| r.programs.contains(&program)) {
            let mut line = format!("  {:<3} ", row.code);
            for word in row.meaning.split(' ') {
                if line.len() + word.len() > WIDTH && line.len() > 6 {
                    out.push_str(line.trim_end());
                    out.push('\n');
                    line = " ".repeat(6);
                }
                line.push_str(word);
                line.push(' ');
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The options all three programs take. They are global: people type them after a command
/// too (`failoverctl status --json -c FILE`), as with systemctl, ip and git.
#[derive(Debug, Clone, Parser)]
pub struct CommonArgs {
    /// Configuration file: hostconfig style, or TOML if the name ends in `.toml`
    /// [default: /etc/ipfailover/hostconfig on Linux, /etc/hostconfig on macOS]
    #[arg(short = 'c', long = "config", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Check the configuration, print the effective settings and exit: 0 if valid, 78 if not
    #[arg(short = 't', short_alias = 'n', long = "check-config", global = true)]
    pub check_config: bool,

    /// Log level: error, warn, info, debug or trace [default: $RUST_LOG, else info]
    #[arg(long = "log-level", value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Print this program's manual page (man), or its completions for a shell (bash, zsh,
    /// fish), from the same definitions as --help, and exit: what `make man` and the package
    /// install. Hidden from --help.
    #[arg(long = "generate", value_name = "WHAT", hide = true, global = true)]
    pub generate: Option<String>,
}

impl CommonArgs {
    /// The configuration file to read.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| Settings::default_path().to_path_buf())
    }
}

/// `--generate man|bash|zsh|fish`: the manual page or the completions of program `T`, on
/// standard output; `--generate man-dir=DIR`: its page and one per command, into `DIR`. The
/// exit code.
fn generate<T: Parser>(what: &str) -> i32 {
    use std::io::Write as _;
    let mut cmd = T::command();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    let page = |cmd: clap::Command| {
        clap_mangen::Man::new(cmd)
            .section("8")
            .manual("ipfailover")
            .source(format!("ipfailover {}", env!("CARGO_PKG_VERSION")))
    };
    let result = match what {
        "man" => page(cmd).render(&mut out).map_err(|e| e.to_string()),
        // The program's page and one per command (failoverctl-status(8), ...), into DIR.
        w if w.starts_with("man-dir=") => {
            let dir = PathBuf::from(&w["man-dir=".len()..]);
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            let mut pages = vec![cmd.clone()];
            pages.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
            pages.into_iter().try_for_each(|c| {
                let man = page(c);
                let mut text = Vec::new();
                man.render(&mut text)
                    .and_then(|()| std::fs::write(dir.join(man.get_filename()), text))
                    .map_err(|e| format!("{}: {e}", dir.display()))
            })
        }
        shell => match shell.parse::<clap_complete::Shell>() {
            Ok(sh) => {
                clap_complete::generate(sh, &mut cmd, name, &mut out);
                Ok(())
            }
            Err(_) => Err(format!(
                "--generate: expected man, bash, zsh or fish, got {shell:?}"
            )),
        },
    };
    match result.and_then(|()| {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())
    }) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("{e}");
            exit::USAGE
        }
    }
}

/// Parses the command line; `-h` and `-V` print and exit 0, a usage error exits 64.
pub fn parse_args<T: Parser>() -> T {
    let matches = match T::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => exit_for_clap(e),
    };
    if let Some(what) = matches.get_one::<String>("generate") {
        std::process::exit(generate::<T>(what));
    }
    match T::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => exit_for_clap(e),
    }
}

fn exit_for_clap(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let code = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::OK,
        _ => exit::USAGE,
    };
    // Printing can only fail if stderr is gone; the exit code still tells.
    let _ = e.print();
    std::process::exit(code)
}

/// Logs to stderr with millisecond timestamps; `--log-level`, else `RUST_LOG`, else info.
/// When stderr is systemd's journal, to the journal instead, with structured fields
/// ([`crate::journal`]).
pub fn init_logging(level: Option<&str>) {
    let spec = match level {
        Some(l) => l.to_string(),
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => v,
            _ => "info".to_string(),
        },
    };
    let journal_error = if crate::journal::stderr_is_journal() {
        match crate::journal::install(&spec) {
            Ok(()) => return,
            Err(e) => Some(e),
        }
    } else {
        None
    };
    let mut builder = env_logger::Builder::new();
    builder.format_timestamp_millis();
    builder.parse_filters(&spec);
    builder.init();
    if let Some(e) = journal_error {
        log::warn!("stderr is the journal, but logging to it natively failed ({e}): plain lines");
    }
}

/// A daemon's life once its arguments are parsed: logging, then its settings (as
/// [`load_settings_or_exit`]), then `run` with them and the configuration's path. Exits 0 when
/// `run` returns, or logs its message and exits with its code.
pub fn serve(
    args: &CommonArgs,
    role: Role,
    run: impl FnOnce(Settings, PathBuf) -> Result<(), (i32, String)>,
) -> ! {
    serve_checked(args, role, |_| Ok(Vec::new()), run)
}

/// [`serve`], with a check of the daemon's own for `-t`: its lines are printed after the
/// settings; its error is a configuration error (exit 78).
pub fn serve_checked(
    args: &CommonArgs,
    role: Role,
    check: impl FnOnce(&Settings) -> Result<Vec<String>, String>,
    run: impl FnOnce(Settings, PathBuf) -> Result<(), (i32, String)>,
) -> ! {
    init_logging(args.log_level.as_deref());
    let settings = load_settings_checked(args, role, check);
    let code = match run(settings, args.config_path()) {
        Ok(()) => exit::OK,
        Err((code, message)) => {
            log::error!("{message}");
            code
        }
    };
    std::process::exit(code)
}

/// Loads the settings for `role`. With `-t`, prints them and exits 0; on any error, prints
/// every problem and exits 78.
pub fn load_settings_or_exit(args: &CommonArgs, role: Role) -> Settings {
    load_settings_checked(args, role, |_| Ok(Vec::new()))
}

/// [`load_settings_or_exit`], with the daemon's own check for `-t` beyond the shared one
/// ([`crate::check`]): its lines are printed after the settings; its error is a configuration
/// error.
pub fn load_settings_checked(
    args: &CommonArgs,
    role: Role,
    check: impl FnOnce(&Settings) -> Result<Vec<String>, String>,
) -> Settings {
    let path = args.config_path();
    if args.check_config {
        std::process::exit(check_config(&path, role, check));
    }
    match Settings::load(&path, role) {
        Ok(settings) => {
            for w in &settings.warnings {
                log::warn!("{w}");
            }
            settings
        }
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(exit::CONFIG);
        }
    }
}

/// `-t`: the shared check for `role`, then the daemon's own; prints the effective settings and
/// what follows from them, or every problem. The exit code.
fn check_config(
    path: &Path,
    role: Role,
    check: impl FnOnce(&Settings) -> Result<Vec<String>, String>,
) -> i32 {
    let roles = [role];
    let checked = match crate::check::check_file(path, &roles) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}", crate::check::not_valid(path, &roles));
            return exit::CONFIG;
        }
    };
    for w in &checked.settings.warnings {
        log::warn!("{w}");
    }
    let extra = match check(&checked.settings) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            eprintln!("{}", crate::check::not_valid(path, &roles));
            return exit::CONFIG;
        }
    };
    print!("{}", checked.settings.render());
    for line in checked.notes.iter().chain(&extra) {
        println!("{line}");
    }
    exit::OK
}

/// Reads the shared key named by the settings; `None` (with a warning) when none is set.
pub fn load_key(settings: &Settings) -> Result<Option<Key>, String> {
    match &settings.secret_file {
        Some(file) => load_secrets(file, euid()).map(|(current, old)| {
            let key = Key::new(current);
            Some(match old {
                Some(old) => key.with_old(Key::new(old)),
                None => key,
            })
        }),
        None => {
            log::warn!(
                "FAILOVER_SECRET_FILE is not set: heartbeats are not authenticated, and anyone on \
                 the LAN can forge them"
            );
            Ok(None)
        }
    }
}

/// SIGHUP: the new settings and key, or `None` with every problem logged (the caller keeps
/// its old settings).
pub fn reload(config: &Path, role: Role) -> Option<(Settings, Option<Key>)> {
    let settings = match Settings::load(config, role) {
        Ok(s) => s,
        Err(errors) => {
            log::error!(
                "SIGHUP: the new configuration is not valid; keeping the old one:\n{errors}"
            );
            return None;
        }
    };
    for w in &settings.warnings {
        log::warn!("{w}");
    }
    match load_key(&settings) {
        Ok(key) => Some((settings, key)),
        Err(e) => {
            log::error!("SIGHUP: FAILOVER_SECRET_FILE: {e}; keeping the old configuration");
            None
        }
    }
}

/// Like [`load_key`], exiting 78 on an error.
pub fn load_key_or_exit(settings: &Settings, config: &Path) -> Option<Key> {
    load_key(settings).unwrap_or_else(|e| {
        log::error!("{}: FAILOVER_SECRET_FILE: {e}", config.display());
        std::process::exit(exit::CONFIG)
    })
}

/// The effective user id: the daemon's user, whose files (secret, state, hooks) it trusts.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// This host's name, as the wire format and mail use it.
pub fn hostname() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => "localhost".to_string(),
    }
}

/// Milliseconds since the Unix epoch, for the wire format's timestamp.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random 64-bit boot id, new at every start.
pub fn random_boot_id() -> u64 {
    random_u64()
}

/// 64 random bits from the operating system (a challenge's nonce, a boot id).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No randomness source: time and pid still differ from one start to the next.
        return wall_ms() ^ (u64::from(std::process::id()) << 40);
    }
    u64::from_ne_bytes(b)
}

/// Whether this host is shutting down, as heartbeatd's goodbye tells failoverd: the service
/// manager says so. With systemd, `systemctl is-system-running` prints `stopping` during a
/// shutdown or reboot. Without systemd (or when it does not answer within a second) we cannot
/// tell, and say the host stays up: failoverd then takes the primary's own address only once
/// it stops answering, which is slower but never makes two holders (docs/handover.md).
pub fn host_going_down() -> bool {
    use std::process::{Command, Stdio};
    let child = Command::new("systemctl")
        .arg("is-system-running")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => {
                // Our own child, found hung: ended and reaped.
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.take(256).read_to_string(&mut out);
    }
    out.trim() == "stopping"
}

#[cfg(test)]
mod tests {
    use super::exit;

    /// docs/exit-codes.md shows the table as it is here, row for row.
    #[test]
    fn the_exit_code_page_is_the_table() {
        let page = include_str!("../../docs/exit-codes.md");
        let rows: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("| ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_digit()))
            .collect();
        let expected: Vec<String> = exit::TABLE
            .iter()
            .map(|r| {
                format!(
                    "| {} | `{}` | {} | {} |",
                    r.code,
                    r.name,
                    r.programs.join(", "),
                    r.meaning
                )
            })
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn each_program_lists_its_codes_and_only_those() {
        let ctl = exit::help("failoverctl");
        for code in [0, 1, 2, 64, 69, 73, 77, 78] {
            assert!(ctl.contains(&format!("\n  {code:<3} ")), "{code}: {ctl}");
        }
        assert!(!ctl.contains("\n  75 "), "{ctl}");
        let daemon = exit::help("heartbeatd");
        for code in [0, 1, 64, 75, 78] {
            assert!(
                daemon.contains(&format!("\n  {code:<3} ")),
                "{code}: {daemon}"
            );
        }
        assert!(!daemon.contains("\n  69 "), "{daemon}");
        assert_eq!(exit::help("failoverd"), daemon);
    }
}
