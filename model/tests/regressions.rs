//! The counterexamples the model checker found in the real cores, replayed in virtual time
//! through both daemons (each is also a unit test of the core, in
//! `ipfailover/src/failover/tests.rs`). Each broke a property before its fix (checked by
//! reverting the fix).

use std::time::Duration;

use ipfailover_model::check::replay;
use ipfailover_model::pair::{Addrs, Cmd, Fault, Nic, PairConfig, PairModel, Side, Start, Step};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(addrs: Addrs, start: Start, steps: &[Step]) {
    // The budget: as many faults as the run injects, and a horizon as long as it waits.
    let faults = steps.iter().filter(|s| matches!(s, Step::Do(_))).count();
    let waits: Duration = steps
        .iter()
        .map(|s| match s {
            Step::Wait(d) => *d,
            Step::Do(_) => Duration::ZERO,
        })
        .sum();
    let config = PairConfig::new(addrs);
    let model = PairModel::new(PairConfig {
        faults: u8::try_from(faults).unwrap_or(u8::MAX),
        horizon: config.horizon.max(waits),
        ..config
    });
    let events = model.script(start, steps);
    if let Err((at, violation)) = replay(&model, &events) {
        panic!(
            "event {at}: {violation}\n{}",
            model.timeline(&events[..=at.min(events.len() - 1)])
        );
    }
}

/// A takeover by hand of the service address whose `Test` refused left it asked back: the
/// primary, which had given it up, waited for ever, and nobody answered for it.
#[test]
fn a_refused_takeover_by_hand() {
    run(
        Addrs::Alias,
        Start::Settled,
        &[
            Step::Wait(ms(100)),
            Step::Do(Fault::Command(Cmd::Takeover { force: false })),
            Step::Wait(ms(50)),
            Step::Do(Fault::RefuseTest),
            Step::Wait(ms(1300)),
        ],
    );
}

/// The primary's heartbeats dropped, both its addresses answering, then heartbeatd stops and
/// removes the service address (its goodbye dropped too): the conflict's rounds took over
/// nothing while the own address answered.
#[test]
fn a_conflict_with_one_address_still_answering() {
    run(
        Addrs::Both,
        Start::Cold,
        &[
            Step::Wait(ms(500)),
            Step::Do(Fault::Firewall(true)),
            Step::Wait(ms(201)),
            Step::Do(Fault::Stop(Side::P, true)),
            Step::Wait(ms(1300)),
        ],
    );
}

/// heartbeatd stops on a host that stays up, and the `Test` of the service address's
/// takeover refuses: it was never tried again.
#[test]
fn a_refused_takeover_after_a_goodbye_of_heartbeatd_alone() {
    run(
        Addrs::Both,
        Start::Cold,
        &[
            Step::Wait(ms(325)),
            Step::Do(Fault::Stop(Side::P, true)),
            Step::Do(Fault::RefuseTest),
            Step::Wait(ms(1175)),
        ],
    );
}

/// A takeover by hand while the primary's public link was down; the link returns during
/// the probe round and the primary waits for its service address again: its wait was
/// answered in the turn the round decided, and both hosts added the address.
#[test]
fn a_wait_answered_during_a_takeover_by_hand() {
    run(
        Addrs::Both,
        Start::Settled,
        &[
            Step::Wait(ms(1201)),
            Step::Do(Fault::Link(Nic::PPub, false)),
            Step::Wait(ms(100)),
            Step::Do(Fault::Command(Cmd::Takeover { force: false })),
            Step::Wait(ms(66)),
            Step::Do(Fault::Link(Nic::PPub, true)),
            Step::Wait(ms(200)),
        ],
    );
}

/// heartbeatd killed on a host that stays up, then `failoverctl takeover --force` of both
/// addresses: the primary's host answers for both, and each answer for the other address
/// started the conflict while holding again, so it was never given up.
#[test]
fn a_forced_takeover_of_two_addresses_the_primary_still_answers_for() {
    run(
        Addrs::Both,
        Start::Settled,
        &[
            Step::Wait(ms(900)),
            Step::Do(Fault::Kill(Side::P)),
            Step::Do(Fault::Command(Cmd::Takeover { force: true })),
            Step::Wait(ms(1700)),
        ],
    );
}

/// The secondary's public link down, heartbeatd stopped (SIGSTOP): failoverd took the own
/// address because the primary could not serve it (heard on the private link only), then
/// its link came back. The primary's kernel answered too, but the address waited for proof
/// that the primary can serve, which a silent primary never gives: two holders for as long
/// as heartbeatd stayed stopped.
#[test]
fn a_silent_primary_answering_for_what_it_could_not_serve() {
    run(
        Addrs::Own,
        Start::Settled,
        &[
            Step::Wait(ms(100)),
            Step::Do(Fault::Link(Nic::SPub, false)),
            Step::Wait(ms(101)),
            Step::Do(Fault::Stall(Side::P)),
            Step::Wait(ms(240)),
            Step::Do(Fault::Link(Nic::SPub, true)),
            Step::Wait(ms(1600)),
        ],
    );
}
