//! heartbeatd: tells the secondary, every interval and on every link, that the primary lives.
//!
//! A driver of the runtime around [`ipfailover::sender::Sender`]: the runtime's loop wakes on
//! the schedule the core keeps, on signals and on `released` datagrams, and the driver sends
//! what the core says.

#![forbid(unsafe_code)]

mod driver;

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
        let (mut hb, mut rt) =
            driver::Heartbeatd::start(settings, path).map_err(|e| (e.code, e.message))?;
        rt.run(&mut hb).map_err(|e| (exit::FAILURE, e.to_string()))
    })
}
