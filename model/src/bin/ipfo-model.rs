//! The model checker from the command line (docs/hardening.md, "The model checker").
//!
//! ```text
//! ipfo-model [--long | --ci | --smoke]      a suite (default: --long, what bench/run --model runs)
//! ipfo-model pair  [--addrs own|alias|both] [--starts cold,settled,taken] [--kinds LIST]
//!                  [--faults N] [--horizon-ms N] [--grace-ms N] [--mutation remove-after-report]
//! ipfo-model group [--addrs N] [--preempt] [--cold] [--kinds LIST] [--faults N]
//!                  [--horizon-ms N] [--mutation fence-keeps-addresses]
//! ipfo-model bounds                         the settings and the bounds the properties check
//! common options:  [--threads N] [--max-states N]
//! ```
//!
//! Pair kinds: network, firewall, hosts, daemons, stalls, links, commands, hooks, all.
//! Group kinds: hosts, daemons, stalls, cuts, etcd, all. Exits 1 if a property is broken
//! (the counterexample is printed as a timeline, and as events a test can replay), 2 on a
//! usage error.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use ipfailover_model::check::Limits;
use ipfailover_model::group::{GroupConfig, GroupFaults, GroupModel, GroupMutation};
use ipfailover_model::pair::{Addrs, Faults, Mutation, PairConfig, PairModel, Start};
use ipfailover_model::suite::{self, Check};

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    match value(args, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: not a number: {v}")),
    }
}

fn pair_kinds(list: &str) -> Result<Faults, String> {
    let mut f = Faults::NONE;
    for k in list.split(',') {
        match k {
            "network" => f.network = true,
            "firewall" => f.firewall = true,
            "hosts" => f.hosts = true,
            "daemons" => f.daemons = true,
            "stalls" => f.stalls = true,
            "links" => f.links = true,
            "commands" => f.commands = true,
            "hooks" => f.hooks = true,
            "all" => f = Faults::ALL,
            other => return Err(format!("--kinds: unknown kind {other}")),
        }
    }
    Ok(f)
}

fn group_kinds(list: &str) -> Result<GroupFaults, String> {
    let mut f = GroupFaults {
        hosts: false,
        daemons: false,
        stalls: false,
        cuts: false,
        etcd: false,
    };
    for k in list.split(',') {
        match k {
            "hosts" => f.hosts = true,
            "daemons" => f.daemons = true,
            "stalls" => f.stalls = true,
            "cuts" => f.cuts = true,
            "etcd" => f.etcd = true,
            "all" => f = GroupFaults::ALL,
            other => return Err(format!("--kinds: unknown kind {other}")),
        }
    }
    Ok(f)
}

fn pair_check(args: &[String]) -> Result<Check, String> {
    let addrs = match value(args, "--addrs").unwrap_or("both") {
        "own" => Addrs::Own,
        "alias" => Addrs::Alias,
        "both" => Addrs::Both,
        other => return Err(format!("--addrs: own, alias or both, not {other}")),
    };
    let mut c = PairConfig::new(addrs);
    if let Some(f) = number(args, "--faults")? {
        c.faults = f;
    }
    if let Some(h) = number(args, "--horizon-ms")? {
        c.horizon = Duration::from_millis(h);
    }
    if let Some(g) = number(args, "--grace-ms")? {
        c.conflict_grace = Duration::from_millis(g);
    }
    if let Some(k) = value(args, "--kinds") {
        c.kinds = pair_kinds(k)?;
    }
    if let Some(s) = value(args, "--starts") {
        c.starts = s
            .split(',')
            .map(|x| match x {
                "cold" => Ok(Start::Cold),
                "settled" => Ok(Start::Settled),
                "taken" => Ok(Start::TakenOver),
                other => Err(format!("--starts: cold, settled or taken, not {other}")),
            })
            .collect::<Result<_, _>>()?;
    }
    match value(args, "--mutation") {
        None => {}
        Some("remove-after-report") => c.mutation = Mutation::RemoveAfterReport,
        Some(other) => return Err(format!("--mutation: remove-after-report, not {other}")),
    }
    Ok(Check::Pair(format!("pair ({addrs:?})"), c))
}

fn group_check(args: &[String]) -> Result<Check, String> {
    let mut c = GroupConfig::new();
    if let Some(n) = number::<usize>(args, "--addrs")? {
        if !(1..=2).contains(&n) {
            return Err("--addrs: 1 or 2".into());
        }
        c.addrs = n;
    }
    c.preempt = args.iter().any(|a| a == "--preempt");
    c.settled = !args.iter().any(|a| a == "--cold");
    if let Some(f) = number(args, "--faults")? {
        c.faults = f;
    }
    if let Some(h) = number(args, "--horizon-ms")? {
        c.horizon = Duration::from_millis(h);
    }
    if let Some(k) = value(args, "--kinds") {
        c.kinds = group_kinds(k)?;
    }
    match value(args, "--mutation") {
        None => {}
        Some("fence-keeps-addresses") => c.mutation = GroupMutation::FenceKeepsAddresses,
        Some(other) => return Err(format!("--mutation: fence-keeps-addresses, not {other}")),
    }
    Ok(Check::Group("group".into(), c))
}

/// The models' settings and the bounds their properties check, as the docs quote them.
fn print_bounds() {
    for addrs in [Addrs::Own, Addrs::Alias, Addrs::Both] {
        let c = PairConfig::new(addrs);
        println!(
            "pair ({addrs:?}): interval {:?}, timeout {:?}, conflict grace {:?}, fence after {:?}, \
             hooks {:?}, one way {:?}, delay {:?}",
            c.interval, c.timeout, c.conflict_grace, c.fence_after, c.hook_time, c.one_way, c.delay
        );
        println!("  {:?}", PairModel::new(c).bounds());
    }
    for n in [1, 2] {
        let c = GroupConfig {
            addrs: n,
            ..GroupConfig::new()
        };
        println!(
            "group ({n} address(es)): priorities {:?}, lease TTL {:?}, etcd round trip {:?}, \
             hooks {:?}",
            c.priorities, c.ttl, c.rtt, c.hook_time
        );
        println!("  {:?}", GroupModel::new(c).bounds());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bounds") {
        print_bounds();
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "ipfo-model [--long | --ci | --smoke]\n\
             ipfo-model pair [--addrs own|alias|both] [--starts cold,settled,taken] [--kinds LIST] \
             [--faults N] [--horizon-ms N] [--grace-ms N] [--mutation remove-after-report]\n\
             ipfo-model group [--addrs 1|2] [--preempt] [--cold] [--kinds LIST] [--faults N] \
             [--horizon-ms N] [--mutation fence-keeps-addresses]\n\
             ipfo-model bounds\n\
             common: [--threads N] [--max-states N]"
        );
        return ExitCode::SUCCESS;
    }
    let checks = match args.first().map(String::as_str) {
        Some("pair") => pair_check(&args).map(|c| vec![c]),
        Some("group") => group_check(&args).map(|c| vec![c]),
        _ if args.iter().any(|a| a == "--ci") => Ok(suite::ci()),
        _ if args.iter().any(|a| a == "--smoke") => Ok(suite::smoke()),
        _ => Ok(suite::long()),
    };
    let mut limits = Limits::default();
    let extra = (|| -> Result<(), String> {
        if let Some(t) = number(&args, "--threads")? {
            limits.threads = t;
        }
        if let Some(m) = number(&args, "--max-states")? {
            limits.max_states = m;
        }
        Ok(())
    })();
    let checks = match (checks, extra) {
        (Ok(c), Ok(())) => c,
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ipfo-model: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "ipfo-model: {} check(s) on {} thread(s)",
        checks.len(),
        limits.threads
    );
    let outcomes = suite::run_all(&checks, limits, |o| println!("{o}"));
    let states: u64 = outcomes.iter().map(|o| o.stats.states).sum();
    let seconds: f64 = outcomes.iter().map(|o| o.stats.elapsed.as_secs_f64()).sum();
    let depth = outcomes
        .iter()
        .map(|o| o.stats.max_depth)
        .max()
        .unwrap_or(0);
    let broken = outcomes
        .iter()
        .filter(|o| o.counterexample.is_some())
        .count();
    println!("ipfo-model: {states} states, depth {depth}, {seconds:.1} s; {broken} violation(s)");
    if broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
