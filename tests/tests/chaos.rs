//! A short chaos soak on every build (the long ones are `ipfo-chaos` in the bench): random
//! faults from a fixed seed, every invariant checked all along.

use std::time::Duration;

use ipfailover_e2e::chaos;

#[test]
fn a_short_chaos_soak_keeps_every_invariant() {
    let seed = std::env::var("IPFAILOVER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1694);
    let report = chaos::soak(seed, Duration::from_secs(45));
    eprintln!("{}", report.render());
    assert!(report.violations.is_empty(), "{}", report.render());
    assert!(
        report.faults >= 15,
        "too few faults to mean anything: {}",
        report.render()
    );
}
