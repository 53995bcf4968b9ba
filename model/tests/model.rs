//! The model checker at the depth `make test` affords (docs/hardening.md, "The model
//! checker"): every run of the pair and of a group within the fault budget and the horizon,
//! against the properties the docs state; and the same checker shown to find a bug planted
//! on purpose.
//!
//! An optimised build (`cargo test --release -p ipfailover-model`, which `make test` runs)
//! checks two faults per run; a debug build, which explores six to twelve times slower, one.

use std::time::Duration;

use ipfailover_model::check::{explore, replay, Limits};
use ipfailover_model::group::{GroupConfig, GroupFaults, GroupModel, GroupMutation};
use ipfailover_model::pair::{Addrs, Faults, Mutation, PairConfig, PairModel, Start};
use ipfailover_model::suite;

#[test]
fn the_bounded_checks_break_no_property() {
    let checks = if cfg!(debug_assertions) {
        suite::smoke()
    } else {
        suite::ci()
    };
    let outcomes = suite::run_all(&checks, Limits::default(), |o| eprintln!("{o}"));
    for o in &outcomes {
        assert!(o.counterexample.is_none(), "{o}");
        assert!(o.stats.complete, "{o}");
        assert!(o.stats.states > 1000, "{o}: the search did not go far");
    }
}

/// The rule "the side that gives an address up removes it first" dropped from failoverd's
/// shell: the checker finds the two holders, and the run it prints replays.
#[test]
fn a_planted_bug_in_the_pair_is_found() {
    let config = PairConfig {
        starts: vec![Start::TakenOver],
        faults: 1,
        kinds: Faults {
            hosts: true,
            ..Faults::NONE
        },
        mutation: Mutation::RemoveAfterReport,
        ..PairConfig::new(Addrs::Alias)
    };
    let model = PairModel::new(config.clone());
    let (stats, found) = explore(&model, Limits::default());
    let c = found.expect("the planted bug is found");
    assert!(
        c.violation.contains("two hosts answer for 198.51.100.100"),
        "{}",
        c.violation
    );
    assert!(!stats.complete);
    let timeline = model.timeline(&c.events);
    assert!(timeline.contains("host primary boots"), "{timeline}");
    assert!(timeline.contains("VIOLATION"), "{timeline}");
    // The run replays to the same violation...
    let (at, v) = replay(&model, &c.events).expect_err("it replays");
    assert_eq!((at, v), (c.events.len() - 1, c.violation.clone()));
    // ...and without the planted bug the same run breaks nothing.
    let fixed = PairModel::new(PairConfig {
        mutation: Mutation::None,
        ..config
    });
    assert!(replay(&fixed, &c.events).is_ok());
}

/// A group member whose fence leaves its addresses on its interface: the checker finds it
/// keeping an address after its lease is gone.
#[test]
fn a_planted_bug_in_the_group_is_found() {
    let config = GroupConfig {
        faults: 1,
        kinds: GroupFaults {
            hosts: false,
            daemons: false,
            stalls: false,
            cuts: true,
            etcd: false,
        },
        mutation: GroupMutation::FenceKeepsAddresses,
        horizon: Duration::from_secs(3),
        ..GroupConfig::new()
    };
    let model = GroupModel::new(config.clone());
    let (_, found) = explore(&model, Limits::default());
    let c = found.expect("the planted bug is found");
    assert!(
        c.violation.contains("m1 keeps 198.51.100.100"),
        "{}",
        c.violation
    );
    assert!(replay(&model, &c.events).is_err());
    let fixed = GroupModel::new(GroupConfig {
        mutation: GroupMutation::None,
        ..config
    });
    assert!(replay(&fixed, &c.events).is_ok());
}
