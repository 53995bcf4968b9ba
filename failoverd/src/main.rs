//! failoverd: watches the primary's heartbeats and takes over its addresses when they stop.
//!
//! A pair's failoverd is a driver of the runtime around [`ipfailover::failover::Failover`]:
//! the runtime's loop reads the socket and the signals and takes the time once per turn; the
//! driver feeds the core and carries out its actions through the runtime's services.

#![forbid(unsafe_code)]

mod group;
mod notices;
mod pair;

use clap::Parser;
use ipfailover::settings::Role;
use ipfailover_os::daemon::{self, exit, CommonArgs};

/// Takes over the primary's addresses when its heartbeats stop, and gives them back.
#[derive(Debug, Parser)]
#[command(name = "failoverd", version, about, long_about = None, after_help = exit::help("failoverd"))]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() {
    let args: Args = daemon::parse_args();
    daemon::serve_checked(
        &args.common,
        Role::Failoverd,
        check_group,
        |settings, path| {
            if settings.group_mode() {
                let (mut member, mut rt) =
                    group::GroupMember::start(settings, path).map_err(|e| (e.code, e.message))?;
                return rt
                    .run(&mut member)
                    .map_err(|e| (exit::FAILURE, e.to_string()));
            }
            let (mut pair, mut rt) =
                pair::Pair::start(settings, path).map_err(|e| (e.code, e.message))?;
            rt.run(&mut pair)
                .map_err(|e| (exit::FAILURE, e.to_string()))
        },
    )
}

/// `-t` in group mode: every interface of `FAILOVER_GROUP_IP_PAIRS` must exist here (the
/// daemon would refuse to start), the TLS files and the password must be readable, and each
/// etcd endpoint is asked whether it answers (a comment line each; one that does not answer
/// is said, not an error: etcd may be down while the configuration is right).
fn check_group(settings: &ipfailover::settings::Settings) -> Result<Vec<String>, String> {
    if !settings.group_mode() {
        return Ok(Vec::new());
    }
    let missing: Vec<String> = settings
        .group_ip_pairs
        .iter()
        .filter_map(|p| {
            ipfailover_os::addrs::resolve_as(p, "FAILOVER_GROUP_IP_PAIRS")
                .err()
                .map(|e| format!("{e} on this host"))
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }
    let member = group::member_name(settings);
    let config = group::etcd_config(settings, &member)?;
    let mut lines = vec![format!(
        "# group {} member {member} priority {}",
        settings.group, settings.priority
    )];
    lines.extend(ipfailover_etcd::check(&config).map_err(|e| e.to_string())?);
    Ok(lines)
}
