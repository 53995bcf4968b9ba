//! What every ipfailover program does the same way: command line, exit codes, logging,
//! settings and secret loading.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use ipfailover::settings::{load_secret, Role, Settings};
use ipfailover::wire::Key;

/// Exit codes shared by the three programs (sysexits.h values).
pub mod exit {
    /// Normal exit.
    pub const OK: i32 = 0;
    /// Any other failure.
    pub const FAILURE: i32 = 1;
    /// Bad command line (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// The state directory is in use by another daemon of the same kind (EX_TEMPFAIL): it
    /// holds the directory's lock file until it ends.
    pub const IN_USE: i32 = 75;
    /// Bad configuration (EX_CONFIG): supervisors should not restart.
    pub const CONFIG: i32 = 78;
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
pub fn init_logging(level: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    builder.format_timestamp_millis();
    match level {
        Some(l) => {
            builder.parse_filters(l);
        }
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => {
                builder.parse_filters(&v);
            }
            _ => {
                builder.filter_level(log::LevelFilter::Info);
            }
        },
    }
    builder.init();
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

/// [`load_settings_or_exit`], with the daemon's own check for `-t`.
pub fn load_settings_checked(
    args: &CommonArgs,
    role: Role,
    check: impl FnOnce(&Settings) -> Result<Vec<String>, String>,
) -> Settings {
    let path = args.config_path();
    match Settings::load(&path, role) {
        Ok(settings) => {
            for w in &settings.warnings {
                log::warn!("{w}");
            }
            if args.check_config {
                if let Some(file) = &settings.secret_file {
                    if let Err(e) = load_secret(file, euid()) {
                        eprintln!("{}: FAILOVER_SECRET_FILE: {e}", path.display());
                        std::process::exit(exit::CONFIG);
                    }
                }
                let mail = match role {
                    Role::Failoverd => match check_mail(&settings) {
                        Ok(line) => line,
                        Err(e) => {
                            eprintln!("{e}");
                            std::process::exit(exit::CONFIG);
                        }
                    },
                    _ => None,
                };
                let extra = match check(&settings) {
                    Ok(lines) => lines,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        std::process::exit(exit::CONFIG);
                    }
                };
                print!("{}", settings.render());
                if let Some(line) = mail {
                    println!("{line}");
                }
                for line in extra {
                    println!("{line}");
                }
                std::process::exit(exit::OK);
            }
            settings
        }
        Err(errors) => {
            eprintln!("{errors}");
            if args.check_config {
                eprintln!("{}: configuration is not valid", path.display());
            }
            std::process::exit(exit::CONFIG);
        }
    }
}

/// What `-t` says of failoverd's mail, built as failoverd builds it at start: a comment line
/// naming the sender (a fallback logged as a warning), or the error failoverd would stop with.
pub fn check_mail(settings: &Settings) -> Result<Option<String>, String> {
    match crate::mail::settings_for(settings, &hostname()) {
        Ok(Some((ms, warning))) => {
            if let Some(w) = warning {
                log::warn!("{w}");
            }
            Ok(Some(format!(
                "# mail from {} to {}",
                ms.from,
                ms.recipients.join(", ")
            )))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!(
            "{}: mail (FAILOVER_EMAIL_*): {e}",
            settings.source.display()
        )),
    }
}

/// Reads the shared key named by the settings; `None` (with a warning) when none is set.
pub fn load_key(settings: &Settings) -> Result<Option<Key>, String> {
    match &settings.secret_file {
        Some(file) => load_secret(file, euid()).map(|k| Some(Key::new(k))),
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
