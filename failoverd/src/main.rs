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
    daemon::init_logging(args.common.log_level.as_deref());
    let settings = daemon::load_settings_or_exit(&args.common, Role::Failoverd);
    let code = match shell::Shell::start(settings, args.common.config_path()) {
        Ok(mut shell) => match shell.run() {
            Ok(()) => exit::OK,
            Err(e) => {
                log::error!("{e}");
                exit::FAILURE
            }
        },
        Err(e) => {
            log::error!("{}", e.message);
            e.code
        }
    };
    std::process::exit(code);
}
