use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg(interval_ms: u64) -> SenderConfig {
    SenderConfig::interval(ms(interval_ms))
}

fn alias() -> IpAddr {
    "198.51.100.100".parse().unwrap()
}

fn with_alias(interval_ms: u64) -> SenderConfig {
    SenderConfig {
        aliases: vec![alias()],
        ..cfg(interval_ms)
    }
}

/// failoverd's report that it holds none of the alias, answering `token`.
fn free(token: u64, id: u64) -> SenderEvent {
    SenderEvent::Report {
        id,
        token,
        entries: vec![Entry::new(alias(), Role::NONE)],
    }
}

fn report(role: Role) -> SenderEvent {
    SenderEvent::Report {
        id: 0,
        token: 0,
        entries: vec![Entry::new(alias(), role)],
    }
}

#[test]
fn announces_then_sends_at_start_and_stays_on_the_grid() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(100), 1);
    assert_eq!(
        s.handle(t0, SenderEvent::Tick),
        vec![SenderAction::Announce, SenderAction::SendHeartbeat]
    );
    assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
    // Woken 7 ms late: the send happens, the grid does not move.
    assert_eq!(
        s.handle(t0 + ms(107), SenderEvent::Tick),
        vec![SenderAction::SendHeartbeat]
    );
    assert_eq!(s.next_deadline(), Some(t0 + ms(200)));
    // Woken early: nothing.
    assert!(s.handle(t0 + ms(150), SenderEvent::Tick).is_empty());
    assert_eq!(s.token(), 0, "no service address: nothing to wait for");
}

#[test]
fn ten_thousand_intervals_do_not_drift() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(10), 1);
    let mut now = t0;
    let mut x = 7u64;
    for _ in 0..10_000 {
        let due = s.next_deadline().unwrap_or(now);
        // Every wake-up is 0..3 ms late.
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        now = due + Duration::from_micros((x >> 40) % 3000);
        s.handle(now, SenderEvent::Tick);
    }
    assert_eq!(s.heartbeats_sent(), 10_000);
    assert_eq!(s.next_deadline(), Some(t0 + ms(100_000)));
}

#[test]
fn a_stall_sends_once_announces_and_rejoins_the_grid() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(100), 1);
    s.handle(t0, SenderEvent::Tick);
    // Paused for 5.05 s: the LAN may have moved on, so the addresses are announced again.
    let out = s.handle(t0 + ms(5150), SenderEvent::Tick);
    assert_eq!(
        out,
        vec![SenderAction::Announce, SenderAction::SendHeartbeat]
    );
    assert_eq!(s.next_deadline(), Some(t0 + ms(5200)));
    // A turn a little late is no stall.
    assert_eq!(
        s.handle(t0 + ms(5290), SenderEvent::Tick),
        vec![SenderAction::SendHeartbeat]
    );
}

#[test]
fn a_configured_refresh_announces_periodically() {
    let t0 = Instant::now();
    let config = SenderConfig {
        announce_refresh: Some(ms(1000)),
        ..cfg(100)
    };
    let mut s = Sender::new(t0, config, 1);
    s.handle(t0, SenderEvent::Tick);
    let mut announced = Vec::new();
    let mut now = t0;
    while now < t0 + ms(3500) {
        now = s.next_deadline().unwrap();
        if s.handle(now, SenderEvent::Tick)
            .contains(&SenderAction::Announce)
        {
            announced.push(now.duration_since(t0).as_millis());
        }
    }
    assert_eq!(announced, vec![1000, 2000, 3000]);
}

#[test]
fn shutdown_says_goodbye_at_least_twice_then_exits() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(100), 1);
    s.handle(t0, SenderEvent::Tick);
    let out = s.handle(t0 + ms(30), SenderEvent::Shutdown { stays_up: false });
    assert_eq!(
        out,
        vec![
            SenderAction::SendGoodbye,
            SenderAction::SendGoodbye,
            SenderAction::Exit
        ]
    );
    assert!(!s.stays_up());
    assert_eq!(s.next_deadline(), None);
    assert!(s.handle(t0 + ms(200), SenderEvent::Tick).is_empty());
}

#[test]
fn a_release_is_acknowledged_and_announced_rate_limited() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(1000), 1);
    s.handle(t0, SenderEvent::Tick);
    let released = |id| SenderEvent::Report {
        id,
        token: 0,
        entries: vec![],
    };
    // Right after the start-up announcement: a release still announces.
    assert_eq!(
        s.handle(t0 + ms(200), released(5)),
        vec![SenderAction::Announce]
    );
    assert_eq!(s.ack(), 5);
    // The same release repeated (failoverd repeats until acknowledged): nothing new.
    assert!(s.handle(t0 + ms(300), released(5)).is_empty());
    // Another release within the gap is acknowledged, not announced.
    assert!(s.handle(t0 + ms(400), released(6)).is_empty());
    assert_eq!(s.ack(), 6);
    assert_eq!(
        s.handle(t0 + ms(800), released(7)),
        vec![SenderAction::Announce]
    );
    // A report that is no release (id 0) is not acknowledged.
    assert!(s.handle(t0 + ms(900), released(0)).is_empty());
    assert_eq!(s.ack(), 7);
}

#[test]
fn a_challenge_is_answered_at_once_and_echoed_for_a_while() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(100), 1);
    s.handle(t0, SenderEvent::Tick);
    assert_eq!(s.echo(t0), 0);
    let out = s.handle(t0 + ms(30), SenderEvent::Challenged { nonce: 42 });
    assert_eq!(out, vec![SenderAction::SendHeartbeat], "answered at once");
    assert_eq!(
        s.next_deadline(),
        Some(t0 + ms(100)),
        "the grid did not move"
    );
    // A second challenge within the gap is echoed, not answered with another round.
    assert!(s
        .handle(t0 + ms(40), SenderEvent::Challenged { nonce: 43 })
        .is_empty());
    assert_eq!(s.echo(t0 + ms(40)), 43);
    assert_eq!(s.echo(t0 + ms(1039)), 43);
    assert_eq!(
        s.echo(t0 + ms(1040)),
        0,
        "echoed for 1 s (3 intervals are less)"
    );
    // With a long interval, for three intervals.
    let mut s = Sender::new(t0, cfg(5000), 1);
    s.handle(t0, SenderEvent::Tick);
    s.handle(t0, SenderEvent::Challenged { nonce: 7 });
    assert_eq!(s.echo(t0 + ms(14_999)), 7);
    assert_eq!(s.echo(t0 + ms(15_000)), 0);
}

#[test]
fn reconfigure_announces_and_takes_the_new_interval() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(1000), 1);
    s.handle(t0, SenderEvent::Tick);
    let out = s.handle(t0 + ms(300), SenderEvent::Reconfigure(cfg(100)));
    // The new interval starts with a heartbeat at once.
    assert_eq!(
        out,
        vec![SenderAction::Announce, SenderAction::SendHeartbeat]
    );
    assert_eq!(s.interval(), ms(100));
    assert_eq!(s.next_deadline(), Some(t0 + ms(400)));
}

// Service addresses.

#[test]
fn a_service_address_is_added_only_once_failoverd_confirms_it_holds_none() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    let out = s.handle(t0, SenderEvent::Tick);
    assert!(!out.iter().any(|a| matches!(a, SenderAction::AddAliases(_))));
    let token = s.token();
    assert_ne!(token, 0, "the heartbeats carry a wait token");
    assert_eq!(s.alias_entries(), vec![(alias(), Role::WANTS)]);
    // A report answering another token (a replay from before) adds nothing.
    assert!(!s
        .handle(t0 + ms(20), free(token ^ 1, 0))
        .iter()
        .any(|a| matches!(a, SenderAction::AddAliases(_))));
    // A report that failoverd still holds it adds nothing either.
    let holds = SenderEvent::Report {
        id: 0,
        token,
        entries: vec![Entry::new(alias(), Role::HOLDS)],
    };
    assert!(!s
        .handle(t0 + ms(25), holds)
        .iter()
        .any(|a| matches!(a, SenderAction::AddAliases(_))));
    // The confirmation: added, then announced once the add is done.
    let out = s.handle(t0 + ms(30), free(token, 0));
    assert!(
        out.contains(&SenderAction::AddAliases(vec![alias()])),
        "{out:?}"
    );
    assert_eq!(
        s.handle(t0 + ms(31), SenderEvent::AliasesAdded { failed: vec![] }),
        vec![SenderAction::AnnounceAddrs(vec![alias()])]
    );
    assert_eq!(s.held_aliases(), vec![alias()]);
    assert_eq!(s.alias_entries(), vec![(alias(), Role::HOLDS)]);
}

#[test]
fn a_silent_failoverd_gets_a_probe_round_and_what_nobody_answers_is_added() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    let mut now = t0;
    let mut probes = 0;
    let mut added_at = None;
    while now < t0 + ms(1000) && added_at.is_none() {
        now = s.next_deadline().unwrap();
        for a in s.handle(now, SenderEvent::Tick) {
            match a {
                SenderAction::Probe(list) => {
                    assert_eq!(list, vec![alias()]);
                    probes += 1;
                }
                SenderAction::AddAliases(_) => added_at = Some(now),
                _ => {}
            }
        }
    }
    assert_eq!(probes, probe::PROBES);
    // Three intervals and a quarter of silence, and the answer window of the last probe.
    let added = added_at.expect("added").duration_since(t0);
    assert!(added >= ms(325) && added <= ms(360), "{added:?}");
}

#[test]
fn an_answered_probe_keeps_the_address_waiting() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    let mut now = t0;
    let mut notices = Vec::new();
    while now < t0 + ms(2000) {
        now = s.next_deadline().unwrap();
        for a in s.handle(now, SenderEvent::Tick) {
            match a {
                SenderAction::Probe(_) => {
                    let answer = SenderEvent::ProbeAnswer {
                        addr: alias(),
                        mac: [2, 0, 0, 0, 0, 0x14],
                    };
                    s.handle(now + ms(1), answer);
                }
                SenderAction::AddAliases(_) => panic!("added while another host answers"),
                SenderAction::Notify(n) => notices.push(n),
                _ => {}
            }
        }
    }
    assert!(notices.contains(&SenderNotice::StillAnswers(alias(), [2, 0, 0, 0, 0, 0x14])));
    assert_eq!(s.waiting_aliases(), vec![alias()]);
}

#[test]
fn reports_keep_a_wait_from_turning_into_a_probe() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    // failoverd holds it and says so every interval (it runs its release hooks).
    let mut now = t0;
    for i in 1..30 {
        now = t0 + ms(100 * i);
        s.handle(now, report(Role::HOLDS));
        let out = s.handle(now, SenderEvent::Tick);
        assert!(
            !out.iter()
                .any(|a| matches!(a, SenderAction::Probe(_) | SenderAction::AddAliases(_))),
            "{out:?}"
        );
    }
    let token = s.token();
    let out = s.handle(now + ms(10), free(token, 3));
    assert!(out.contains(&SenderAction::AddAliases(vec![alias()])));
    assert_eq!(s.ack(), 3);
}

#[test]
fn an_address_failoverd_holds_by_hand_or_asks_back_is_given_up_then_waited_for() {
    for role in [Role::HOLDS.with(Role::MANUAL), Role::WANTS] {
        let t0 = Instant::now();
        let mut s = Sender::new(t0, with_alias(100), 9);
        s.handle(t0, SenderEvent::Tick);
        let first = s.token();
        s.handle(t0, free(first, 0));
        s.handle(t0, SenderEvent::AliasesAdded { failed: vec![] });
        // failoverd holding it by itself is not a reason: it will give it back.
        assert!(s.handle(t0 + ms(10), report(Role::HOLDS)).is_empty());
        let out = s.handle(t0 + ms(20), report(role));
        assert!(
            out.contains(&SenderAction::RemoveAliases(vec![alias()])),
            "{out:?}"
        );
        assert_eq!(s.alias_entries(), vec![(alias(), Role::NONE)]);
        s.handle(t0 + ms(21), SenderEvent::AliasesRemoved);
        assert_eq!(s.waiting_aliases(), vec![alias()]);
        assert_ne!(s.token(), first, "a new wait, a new token");
        // The old confirmation does not bring it back.
        assert!(!s
            .handle(t0 + ms(30), free(first, 0))
            .iter()
            .any(|a| matches!(a, SenderAction::AddAliases(_))));
    }
}

#[test]
fn shutdown_removes_the_service_addresses_before_the_goodbyes() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    s.handle(t0, free(s.token(), 0));
    s.handle(t0, SenderEvent::AliasesAdded { failed: vec![] });
    let out = s.handle(t0 + ms(50), SenderEvent::Shutdown { stays_up: true });
    assert_eq!(out, vec![SenderAction::RemoveAliases(vec![alias()])]);
    assert!(!s.stopped());
    // Ticks meanwhile send nothing: the goodbye waits for the removal.
    assert!(s.handle(t0 + ms(100), SenderEvent::Tick).is_empty());
    assert_eq!(
        s.handle(t0 + ms(101), SenderEvent::AliasesRemoved),
        vec![
            SenderAction::SendGoodbye,
            SenderAction::SendGoodbye,
            SenderAction::Exit
        ]
    );
    assert!(s.stays_up());
    assert!(s.stopped());
    assert_eq!(s.alias_entries(), vec![(alias(), Role::WANTS)]);
}

#[test]
fn a_vanished_or_failed_service_address_is_added_again() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    s.handle(t0, free(s.token(), 0));
    // The add fails: retried a second later.
    assert!(s
        .handle(
            t0,
            SenderEvent::AliasesAdded {
                failed: vec![alias()]
            }
        )
        .is_empty());
    assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
    let out = s.handle(t0 + ADD_RETRY, SenderEvent::Tick);
    assert!(
        out.contains(&SenderAction::AddAliases(vec![alias()])),
        "{out:?}"
    );
    s.handle(t0 + ADD_RETRY, SenderEvent::AliasesAdded { failed: vec![] });
    // Removed by hand: put back at once.
    let out = s.handle(t0 + ms(2000), SenderEvent::AliasMissing { addr: alias() });
    assert!(out.contains(&SenderAction::Notify(SenderNotice::Missing(alias()))));
    assert!(
        out.contains(&SenderAction::AddAliases(vec![alias()])),
        "{out:?}"
    );
}

#[test]
fn a_reload_adds_new_service_addresses_by_agreement_and_removes_dropped_ones() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, cfg(100), 9);
    s.handle(t0, SenderEvent::Tick);
    assert_eq!(s.token(), 0);
    let out = s.handle(t0 + ms(10), SenderEvent::Reconfigure(with_alias(100)));
    assert!(out.contains(&SenderAction::Notify(SenderNotice::Waiting(vec![alias()]))));
    assert_ne!(s.token(), 0);
    s.handle(t0 + ms(20), free(s.token(), 0));
    s.handle(t0 + ms(20), SenderEvent::AliasesAdded { failed: vec![] });
    let out = s.handle(t0 + ms(30), SenderEvent::Reconfigure(cfg(100)));
    assert!(
        out.contains(&SenderAction::RemoveAliases(vec![alias()])),
        "{out:?}"
    );
    s.handle(t0 + ms(31), SenderEvent::AliasesRemoved);
    assert!(s.alias_entries().is_empty(), "forgotten once removed");
}

#[test]
fn a_service_address_on_a_link_that_goes_down_is_given_up_and_waited_for_when_it_is_back() {
    let t0 = Instant::now();
    let mut s = Sender::new(t0, with_alias(100), 9);
    s.handle(t0, SenderEvent::Tick);
    s.handle(t0, free(s.token(), 0));
    s.handle(t0, SenderEvent::AliasesAdded { failed: vec![] });
    assert_eq!(s.held_aliases(), vec![alias()]);
    // Its link goes down: not served, so given up, and not wanted while it is down.
    let out = s.handle(
        t0 + ms(10),
        SenderEvent::LinksDown {
            addrs: vec![alias()],
        },
    );
    assert!(
        out.contains(&SenderAction::RemoveAliases(vec![alias()])),
        "{out:?}"
    );
    s.handle(t0 + ms(11), SenderEvent::AliasesRemoved);
    assert_eq!(s.alias_entries(), vec![(alias(), Role::NONE)]);
    // A confirmation, or a silent failoverd, adds nothing while the link is down.
    let token = s.token();
    let mut now = t0 + ms(11);
    for _ in 0..50 {
        now += ms(100);
        let out = s.handle(now, free(token, 0));
        assert!(
            !out.iter()
                .any(|a| matches!(a, SenderAction::AddAliases(_) | SenderAction::Probe(_))),
            "{out:?}"
        );
    }
    // The link is back: wanted again, with a new token, and added once confirmed.
    s.handle(now, SenderEvent::LinksDown { addrs: vec![] });
    assert_eq!(s.alias_entries(), vec![(alias(), Role::WANTS)]);
    assert_ne!(s.token(), token);
    let out = s.handle(now + ms(5), free(s.token(), 0));
    assert!(
        out.contains(&SenderAction::AddAliases(vec![alias()])),
        "{out:?}"
    );
}
