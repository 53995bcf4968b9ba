//! heartbeatd: tells the secondary, every interval and on every link, that the primary lives.
//!
//! A thin shell around [`ipfailover::sender::Sender`]: one mio loop wakes on the schedule the
//! core keeps, on signals and on `released` datagrams, and sends what the core says.

mod shell;

use clap::Parser;
use ipfailover::settings::Role;
use ipfailover_os::daemon::{self, exit, CommonArgs};

/// Broadcasts heartbeats on the public and private subnets for failoverd on the secondary.
#[derive(Debug, Parser)]
#[command(name = "heartbeatd", version, about, long_about = None, after_help = exit::help("heartbeatd"))]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() {
    let args: Args = daemon::parse_args();
    daemon::serve(&args.common, Role::Heartbeatd, |settings, path| {
        let mut shell = shell::Shell::start(settings, path)?;
        shell.run().map_err(|e| (exit::FAILURE, e.to_string()))
    })
}
