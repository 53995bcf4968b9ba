//! Long chaos soaks: `ipfo-chaos SECONDS SEED...` runs one soak per seed and prints each
//! report; exits 1 if any invariant was violated (the report has the seed and the timeline).

#![forbid(unsafe_code)]

use std::time::Duration;

use ipfailover_e2e::chaos;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(seconds) = args.first().and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: ipfo-chaos SECONDS SEED...");
        std::process::exit(64);
    };
    let seeds: Vec<u64> = args[1..].iter().filter_map(|s| s.parse().ok()).collect();
    let mut failed = false;
    for seed in if seeds.is_empty() { vec![1] } else { seeds } {
        let r = chaos::soak(seed, Duration::from_secs(seconds));
        print!("{}", r.render());
        failed |= !r.violations.is_empty();
    }
    std::process::exit(i32::from(failed));
}
