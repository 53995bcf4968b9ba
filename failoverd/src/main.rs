//! failoverd: watches the primary's heartbeats and takes over its addresses when they stop.
//!
//! A thin shell around [`ipfailover::failover::Failover`]: one mio loop reads the socket and
//! the signals, takes the time once per turn, feeds the core and carries out its actions.

mod notices;
mod shell;

use clap::Parser;
use ipfailover::settings::Role;
use ipfailover_os::daemon::{self, exit, CommonArgs};

/// Takes over the primary's addresses when its heartbeats stop, and gives them back.
#[derive(Debug, Parser)]
#[command(name = "failoverd", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() {
    let args: Args = daemon::parse_args();
    daemon::serve(&args.common, Role::Failoverd, |settings, path| {
        let mut shell = shell::Shell::start(settings, path).map_err(|e| (e.code, e.message))?;
        shell.run().map_err(|e| (exit::FAILURE, e.to_string()))
    })
}
