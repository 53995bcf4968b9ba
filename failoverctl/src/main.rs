//! failoverctl: the operator's view of ipfailover. `status` reads the status files the daemons
//! keep in `FAILOVER_STATE_DIR` and says, as text, JSON or an HTML page, whether the pair is
//! healthy; `check-config` validates a configuration file as the daemons' `-t` would.
//!
//! Exit codes: one table for the three programs, `ipfailover_os::daemon::exit::TABLE`
//! (docs/exit-codes.md), whose rows for failoverctl `--help` lists.
//!
//! Judging ([`health::health`]) and rendering ([`text`], [`json`], [`html`], [`metrics`]) are
//! pure functions of one look at the state directory ([`observe::observe`]: the files, the
//! clock read once, the verdict), which `status`, `watch` and `metrics` share; this file does
//! the reading and writing.

#![forbid(unsafe_code)]

mod health;
mod html;
mod init;
mod json;
mod metrics;
mod observe;
mod text;
mod watch;

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ipfailover::settings::{Role, Settings};
use ipfailover_os::check;
use ipfailover_os::daemon::{self, exit, CommonArgs};

use crate::observe::{observe, Observation};
use ipfailover_os::control::Request;

/// What `--help` adds to the exit codes of [`exit::TABLE`]: how `status` judges staleness.
const STALE_NOTE: &str = "\
A status file is stale when it was last written more than max(3 x refresh_ms, 15 s) ago, or
when it names this host and its process no longer exists.";

/// The exit codes, then the staleness rule: `--help` of failoverctl and of `status`.
fn long_help() -> String {
    format!("{}\n{STALE_NOTE}", exit::help("failoverctl"))
}

/// Shows the state of the local ipfailover daemons, and checks configuration files.
#[derive(Debug, Parser)]
#[command(
    name = "failoverctl",
    version,
    about,
    long_about = "Shows the state of the local ipfailover daemons (heartbeatd, failoverd) from \
                  the status files they keep in FAILOVER_STATE_DIR, as text, JSON or an HTML \
                  page, and checks configuration files.\n\nWithout a command, runs `status`.",
    after_help = exit::help("failoverctl"),
    after_long_help = long_help()
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the daemons' state from their status files (the default command)
    #[command(after_long_help = long_help())]
    Status(StatusArgs),
    /// Validate the configuration file as the daemons' -t does, print the effective settings;
    /// exit 0, or 78 naming every problem (same as -t)
    CheckConfig,
    /// Pause takeovers on this secondary: failoverd keeps watching and reporting but takes
    /// nothing over (kept across restarts); exit 0 done, 1 refused, 69 no failoverd, 77 not
    /// allowed
    Pause(PauseArgs),
    /// End a pause: a silent primary is taken over again (on a group member: end a pause or
    /// a drain)
    Resume(ControlArgs),
    /// On a group member: hand every address it holds to the next members (release hooks)
    /// and take none until `resume` (kept across restarts, shown to the other members)
    Drain(ControlArgs),
    /// Give the held addresses back to the primary now (release hooks, then `released`);
    /// refused while the primary is silent, unless --force
    Release(ForceArgs),
    /// Take the primary's addresses over now, with the reason `manual`, after probing that
    /// nobody answers for them (or at once with --force); kept until `release`
    Takeover(ForceArgs),
    /// A live view of the status: redrawn twice a second on a terminal; elsewhere, a new
    /// block each time something changes
    Watch(WatchArgs),
    /// Write a checked configuration (and the secret file) for a primary or a secondary, or
    /// (--group) for a member of a group on etcd:
    /// asks for what is missing on a terminal; with options, asks nothing
    Init(Box<InitArgs>),
    /// Print the status files as Prometheus text exposition (for node_exporter's textfile
    /// collector); exit 0 whatever the health (ipfailover_health says it), 73 if --output
    /// cannot be written
    Metrics(MetricsArgs),
}

#[derive(Debug, Default, clap::Args)]
struct WatchArgs {
    /// Stop after COUNT screens (or blocks)
    #[arg(long, value_name = "COUNT", hide = true)]
    count: Option<u64>,

    /// Read the status files from DIR instead of the configured FAILOVER_STATE_DIR
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, clap::Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["primary", "secondary", "group"])))]
struct InitArgs {
    /// This host is the primary (runs heartbeatd)
    #[arg(long)]
    primary: bool,
    /// This host is the secondary (runs failoverd)
    #[arg(long)]
    secondary: bool,
    /// The primary's public address (secondary)
    #[arg(long, value_name = "ADDRESS")]
    peer: Option<IpAddr>,
    /// iface:address[/prefix] to take over (secondary); default: the peer's address on the
    /// interface whose subnet holds it
    #[arg(long, value_name = "IFACE:ADDRESS", num_args = 1..)]
    pairs: Vec<String>,
    /// Where heartbeats go (primary); default: each IPv4 subnet's broadcast address
    #[arg(long, value_name = "ADDRESS", num_args = 1..)]
    bcast: Vec<IpAddr>,
    /// FAILOVER_INTERVAL (primary)
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// FAILOVER_TIMEOUT (secondary)
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Who is mailed (secondary)
    #[arg(long, value_name = "ADDRESS", num_args = 1..)]
    email: Vec<String>,
    /// The shared secret: made (mode 0600) if absent; copy it to the other host
    #[arg(long, value_name = "FILE", default_value = "/etc/ipfailover/secret")]
    secret_file: PathBuf,
    /// FAILOVER_STATE_DIR, if not the default
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// FAILOVER_SCRIPT_DIR, if not the default (secondary)
    #[arg(long, value_name = "DIR")]
    script_dir: Option<PathBuf>,
    /// This host is a member of the group NAME on etcd (runs failoverd in group mode)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["peer", "bcast", "interval", "timeout"])]
    group: Option<String>,
    /// etcd's client URLs (member)
    #[arg(long, value_name = "URL", num_args = 1..)]
    etcd: Vec<String>,
    /// FAILOVER_PRIORITY, 1 to 255 (member)
    #[arg(long, value_name = "N")]
    priority: Option<u8>,
    /// FAILOVER_MEMBER_NAME (member) [default: the host name]
    #[arg(long, value_name = "NAME")]
    member_name: Option<String>,
    /// The file to write [default: the configuration file, /etc/ipfailover/hostconfig]
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write over an existing file
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Default, clap::Args)]
struct ControlArgs {
    /// The state directory holding failoverd's control socket, instead of the configured
    /// FAILOVER_STATE_DIR
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, clap::Args)]
struct PauseArgs {
    /// Resume by itself after DURATION (10m, 1h, 90s); without it, until `failoverctl resume`
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,

    #[command(flatten)]
    control: ControlArgs,
}

#[derive(Debug, Default, clap::Args)]
struct ForceArgs {
    /// Do it even though failoverd refuses: release while the primary is silent (nobody then
    /// answers for the addresses until failoverd takes them over again), or take over while
    /// another host answers for them (two hosts answer: clients split between them)
    #[arg(long)]
    force: bool,

    #[command(flatten)]
    control: ControlArgs,
}

#[derive(Debug, Default, clap::Args)]
struct MetricsArgs {
    /// Write the metrics to FILE (atomically, mode 0644) instead of standard output: point it
    /// into node_exporter's --collector.textfile.directory, with a name ending in .prom
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Read the status files from DIR instead of the configured FAILOVER_STATE_DIR (the
    /// configuration is then not read)
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, clap::Args)]
struct StatusArgs {
    /// Print one JSON object (health, exit_code, reasons, the daemons' own status files,
    /// stale) instead of text
    #[arg(long)]
    json: bool,

    /// Also write a self-contained HTML status page to FILE (atomically; it reloads every 5 s)
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,

    /// Read the status files from DIR instead of the configured FAILOVER_STATE_DIR (the
    /// configuration is then not read)
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() {
    let args: Args = daemon::parse_args();
    daemon::init_logging(args.common.log_level.as_deref());
    let code = match (args.common.check_config, &args.command) {
        (
            true,
            Some(
                Command::Status(_)
                | Command::Metrics(_)
                | Command::Pause(_)
                | Command::Resume(_)
                | Command::Drain(_)
                | Command::Release(_)
                | Command::Takeover(_)
                | Command::Watch(_)
                | Command::Init(_),
            ),
        ) => {
            eprintln!(
                "error: -t/--check-config checks the configuration; it cannot be combined with \
                 status\n\nFor more information, try '--help'."
            );
            exit::USAGE
        }
        (true, _) | (false, Some(Command::CheckConfig)) => check_config(&args.common),
        (false, Some(Command::Status(s))) => status(&args.common, s),
        (false, Some(Command::Metrics(m))) => metrics(&args.common, m),
        (false, Some(Command::Watch(w))) => match state_dir(&args.common, w.state_dir.as_ref()) {
            Ok(dir) => watch::watch(&dir, w.count),
            Err(code) => code,
        },
        (false, Some(Command::Init(i))) => init::init(init::InitOptions {
            primary: i.primary,
            peer: i.peer,
            pairs: i.pairs.clone(),
            bcast: i.bcast.clone(),
            interval: i.interval.clone(),
            timeout: i.timeout.clone(),
            email: i.email.clone(),
            secret_file: i.secret_file.clone(),
            state_dir: i.state_dir.clone(),
            script_dir: i.script_dir.clone(),
            group: i.group.clone(),
            etcd: i.etcd.clone(),
            priority: i.priority,
            member_name: i.member_name.clone(),
            output: i
                .output
                .clone()
                .unwrap_or_else(|| args.common.config_path()),
            force: i.force,
        }),
        (false, Some(Command::Pause(p))) => match p.for_.as_deref().map(parse_for) {
            Some(Err(e)) => {
                eprintln!("failoverctl pause --for: {e}");
                exit::USAGE
            }
            Some(Ok(ms)) => control(
                &args.common,
                &p.control,
                Request::Pause { for_ms: Some(ms) },
            ),
            None => control(&args.common, &p.control, Request::Pause { for_ms: None }),
        },
        (false, Some(Command::Resume(c))) => control(&args.common, c, Request::Resume),
        (false, Some(Command::Drain(c))) => control(&args.common, c, Request::Drain),
        (false, Some(Command::Release(f))) => control(
            &args.common,
            &f.control,
            Request::Release { force: f.force },
        ),
        (false, Some(Command::Takeover(f))) => control(
            &args.common,
            &f.control,
            Request::Takeover { force: f.force },
        ),
        (false, None) => status(&args.common, &StatusArgs::default()),
    };
    std::process::exit(code);
}

/// Writes to stdout; a closed pipe (`failoverctl status | head -1`) is not an error worth a
/// panic.
fn print(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The state directory: `--state-dir`, or the configured `FAILOVER_STATE_DIR`; an exit code
/// if the configuration cannot say.
fn state_dir(common: &CommonArgs, given: Option<&PathBuf>) -> Result<PathBuf, i32> {
    match given {
        Some(dir) => Ok(dir.clone()),
        None => settings_for_status(common).map(|settings| settings.state_dir),
    }
}

fn status(common: &CommonArgs, args: &StatusArgs) -> i32 {
    let dir = match state_dir(common, args.state_dir.as_ref()) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    let Observation {
        seen,
        health,
        now_ms,
    } = observe(&dir, &daemon::hostname());
    let mut code = health.exit_code();
    if let Some(file) = &args.html {
        let page = html::render_html(&seen, &health, now_ms);
        if let Err(e) = ipfailover_os::safe_fs::write_atomic(file, page.as_bytes(), 0o644) {
            eprintln!("failoverctl: cannot write {}: {e}", file.display());
            code = exit::CANTCREAT;
        }
    }
    if args.json {
        print(&json::render_json(&seen, &health));
    } else {
        print(&text::render_text(&seen, &health, now_ms));
    }
    code
}

/// `--for`: a duration as the settings write them (`10m`, `90s`, `2.5h`), in ms, at most a
/// year (the daemon refuses longer too).
fn parse_for(text: &str) -> Result<u64, String> {
    let d = ipfailover::settings::parse_duration(text)?;
    if d.is_zero() {
        return Err("expected a duration greater than 0".to_string());
    }
    if d > ipfailover_os::control::MAX_PAUSE {
        return Err(format!(
            "{text:?} is longer than a year (8760h): for a longer pause, give no --for, and \
             failoverctl resume ends it"
        ));
    }
    u64::try_from(d.as_millis()).map_err(|_| "too long".to_string())
}

/// Sends one command to failoverd and prints its answer: exit 0 done, 1 refused, 69 when no
/// failoverd answers, 77 when this user may not command it.
fn control(common: &CommonArgs, args: &ControlArgs, request: Request) -> i32 {
    let dir = match state_dir(common, args.state_dir.as_ref()) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    // A takeover waits for its probe round (a second at most); the rest answer at once.
    let wait = std::time::Duration::from_secs(15);
    match ipfailover_os::control::send(&dir, request, wait) {
        Ok(Ok(message)) => {
            println!("{message}");
            exit::OK
        }
        Ok(Err(message)) => {
            eprintln!("failoverctl: {message}");
            if message.starts_with("refused: only uid") {
                exit::NOPERM
            } else {
                exit::FAILURE
            }
        }
        Err(e) => {
            let socket = dir.join(ipfailover_os::control::SOCKET_NAME);
            match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    eprintln!(
                        "failoverctl: {}: {e}: only failoverd's own user (root) may command it",
                        socket.display()
                    );
                    exit::NOPERM
                }
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    eprintln!(
                        "failoverctl: no failoverd answers at {} ({e}): is it running, with \
                         this FAILOVER_STATE_DIR?",
                        socket.display()
                    );
                    exit::UNAVAILABLE
                }
                _ => {
                    eprintln!("failoverctl: {}: {e}", socket.display());
                    exit::UNAVAILABLE
                }
            }
        }
    }
}

fn metrics(common: &CommonArgs, args: &MetricsArgs) -> i32 {
    let dir = match state_dir(common, args.state_dir.as_ref()) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    let o = observe(&dir, &daemon::hostname());
    let text = metrics::render_metrics(&o.seen, &o.health, o.now_ms);
    match &args.output {
        Some(file) => match ipfailover_os::safe_fs::write_atomic(file, text.as_bytes(), 0o644) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("failoverctl: cannot write {}: {e}", file.display());
                exit::CANTCREAT
            }
        },
        None => {
            print(&text);
            exit::OK
        }
    }
}

/// The settings that say where the status files are. A missing *default* file is fine (a host
/// may run failoverctl before it is configured): the defaults apply. A file named with `-c`
/// must exist.
fn settings_for_status(common: &CommonArgs) -> Result<Settings, i32> {
    let path = common.config_path();
    let missing = matches!(std::fs::metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let loaded = if common.config.is_none() && missing {
        Settings::from_hostconfig("", &path, Role::Ctl)
    } else {
        ipfailover_os::config::load_settings(&path, Role::Ctl)
    };
    match loaded {
        Ok(settings) => {
            for w in &settings.warnings {
                log::warn!("{w}");
            }
            Ok(settings)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "failoverctl: cannot tell where the status files are: fix {} or give \
                 --state-dir",
                path.display()
            );
            Err(exit::CONFIG)
        }
    }
}

/// The daemons whose rules a file must satisfy, judged from its content: heartbeatd's if it
/// says where heartbeats go, failoverd's if it names a peer or addresses to take over, only
/// failoverctl's (which require nothing) if neither.
fn roles_of(settings: &Settings) -> Vec<Role> {
    let mut roles = Vec::new();
    if !settings.bcast_ips.is_empty() {
        roles.push(Role::Heartbeatd);
    }
    if settings.peer_ip.is_some()
        || !settings.peer_ip_pairs.is_empty()
        || settings.group_mode()
        || !settings.group_ip_pairs.is_empty()
    {
        roles.push(Role::Failoverd);
    }
    roles
}

/// The role a key belongs to, in either format's spelling.
fn role_of_key(key: &str) -> Option<Role> {
    match key {
        "FAILOVER_BCAST_IPS" | "bcast_ips" => Some(Role::Heartbeatd),
        "FAILOVER_PEER_IP"
        | "FAILOVER_PEER_IP_PAIRS"
        | "peer_ip"
        | "peer_ip_pairs"
        | "FAILOVER_ETCD_ENDPOINTS"
        | "FAILOVER_GROUP_IP_PAIRS"
        | "etcd_endpoints"
        | "group_ip_pairs" => Some(Role::Failoverd),
        _ => None,
    }
}

/// For a file that does not parse: the roles whose keys it sets with a non-empty value,
/// looked for line by line (`KEY=value`, `export KEY=value`, `key = value`).
fn roles_in_text(text: &str) -> Vec<Role> {
    let mut roles = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(role) = role_of_key(key.trim()) else {
            continue;
        };
        let value = value.trim();
        let rest = ["\"\"", "''", "[]"]
            .iter()
            .find_map(|empty| value.strip_prefix(empty))
            .unwrap_or(value)
            .trim_start();
        let empty = rest.is_empty() || rest.starts_with('#');
        if !empty && !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles
}

/// `check-config` (and `-t`): the daemons' own check ([`ipfailover_os::check`]), for the
/// daemons whose keys the file sets.
fn check_config(common: &CommonArgs) -> i32 {
    let path = common.config_path();
    let mut roles = match ipfailover_os::config::load_settings(&path, Role::Ctl) {
        Ok(settings) => roles_of(&settings),
        Err(errors) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut roles = roles_in_text(&text);
            for role in errors
                .0
                .iter()
                .filter_map(|e| e.key.as_deref().and_then(role_of_key))
            {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            roles
        }
    };
    // heartbeatd first, then failoverd: the order docs/configuration.md lists their keys.
    roles.sort_by_key(|r| match r {
        Role::Heartbeatd => 0,
        Role::Failoverd => 1,
        Role::Ctl => 2,
    });
    match check::check_file(&path, &roles) {
        Ok(checked) => {
            for w in &checked.settings.warnings {
                log::warn!("{w}");
            }
            print(&checked.settings.render());
            for line in &checked.notes {
                print(&format!("{line}\n"));
            }
            if roles.is_empty() {
                print(
                    "# valid, but for neither daemon: it sets neither FAILOVER_BCAST_IPS \
                     (heartbeatd) nor FAILOVER_PEER_IP (failoverd)\n",
                );
            } else {
                print(&format!("# valid{}\n", check::for_whom(&roles)));
            }
            exit::OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}", check::not_valid(&path, &roles));
            exit::CONFIG
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_text() {
        assert_eq!(roles_in_text(""), []);
        assert_eq!(
            roles_in_text("FAILOVER_BCAST_IPS=\"10.0.0.255\"\nFAILOVER_PORT=x\n"),
            [Role::Heartbeatd]
        );
        assert_eq!(
            roles_in_text("export FAILOVER_PEER_IP_PAIRS='eth0:10.0.0.1'"),
            [Role::Failoverd]
        );
        assert_eq!(
            roles_in_text("peer_ip = \"10.0.0.1\"\nbcast_ips = []\n"),
            [Role::Failoverd]
        );
        assert_eq!(
            roles_in_text("FAILOVER_BCAST_IPS=\"\"  # unused\n#FAILOVER_PEER_IP=1\n"),
            []
        );
    }

    #[test]
    fn a_pause_is_at_most_a_year() {
        assert_eq!(parse_for("10m"), Ok(600_000));
        assert_eq!(parse_for("8760h"), Ok(31_536_000_000));
        for bad in ["8761h", "5000000000000h", "0s", "soon"] {
            assert!(parse_for(bad).is_err(), "{bad}");
        }
        assert!(parse_for("8761h")
            .unwrap_err()
            .contains("longer than a year"));
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let a =
            Args::try_parse_from(["failoverctl", "-c", "/x", "status", "--json", "--html", "p"])
                .unwrap();
        assert_eq!(a.common.config, Some(PathBuf::from("/x")));
        assert!(matches!(
            a.command,
            Some(Command::Status(StatusArgs { json: true, .. }))
        ));
        let a = Args::try_parse_from(["failoverctl", "-n"]).unwrap();
        assert!(a.common.check_config && a.command.is_none());
        let a = Args::try_parse_from(["failoverctl", "check-config"]).unwrap();
        assert!(matches!(a.command, Some(Command::CheckConfig)));
    }

    #[test]
    fn writes_atomically() {
        let dir = std::env::temp_dir().join(format!("failoverctl-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("status.html");
        ipfailover_os::safe_fs::write_atomic(&file, b"one", 0o644).unwrap();
        ipfailover_os::safe_fs::write_atomic(&file, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(
            ipfailover_os::safe_fs::write_atomic(&dir.join("no/such/dir/x.html"), b"x", 0o644)
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
