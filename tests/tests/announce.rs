//! Announcements as the LAN sees them: with `FAILOVER_ANNOUNCE_REFRESH`, a held address is
//! announced again while it is held, long after the burst of its takeover is over; the
//! status says when it last was.

use std::time::{Duration, Instant};

use ipfailover_e2e::{Host, Lab, VIP};

/// Prints one line per gratuitous ARP for the address in argv[1] seen on eth0 (sender and
/// target both that address), for argv[2] seconds: `<unix time> <sender MAC>`.
const ARP_WATCH: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
s.settimeout(0.2)
end = time.time() + float(sys.argv[2])
print("watching", flush=True)
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if len(f) < 42:
        continue
    spa = socket.inet_ntoa(f[28:32])
    tpa = socket.inet_ntoa(f[38:42])
    if spa == sys.argv[1] and tpa == sys.argv[1]:
        print("%.3f %s" % (time.time(), f[22:28].hex(":")), flush=True)
"#;

#[test]
fn a_held_address_is_announced_again_every_refresh_as_the_client_sees() {
    let mut lab = Lab::new("annref");
    let (hb, _fo) = lab.start_pair(&[], &[("FAILOVER_ANNOUNCE_REFRESH", "3s")]);
    lab.kill_primary(hb);
    lab.wait_holds(Host::Sec, "eth0", VIP, true, Duration::from_secs(10));
    let took = Instant::now();
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(10));
    // Past the takeover's own burst (its last step is at 10 s), for 12 s.
    std::thread::sleep(Duration::from_secs(11));
    let watch = lab.spawn_cmd(
        Host::Cli,
        "arpwatch",
        &["/usr/bin/python3", "-c", ARP_WATCH, VIP, "12"],
    );
    assert!(
        lab.wait_log(watch, "watching", Duration::from_secs(5)),
        "the ARP watch did not start:\n{}",
        lab.logs()
    );
    assert!(
        lab.proc(watch).wait_exit(Duration::from_secs(20)).is_some(),
        "the ARP watch did not end"
    );
    let sec_mac = lab.mac(Host::Sec, "eth0");
    let seen: Vec<(f64, String)> = lab
        .proc(watch)
        .log_text()
        .lines()
        .filter_map(|l| {
            let (t, mac) = l.split_once(' ')?;
            Some((t.parse().ok()?, mac.to_string()))
        })
        .collect();
    assert!(
        seen.iter().all(|(_, mac)| *mac == sec_mac),
        "announced from another MAC than the holder's {sec_mac}: {seen:?}"
    );
    // A round starts at each refresh: announcements more than a second after the previous.
    let rounds =
        seen.windows(2).filter(|w| w[1].0 - w[0].0 > 1.5).count() + usize::from(!seen.is_empty());
    assert!(
        rounds >= 3,
        "{rounds} rounds of announcements in 12 s with a refresh of 3 s, {:.0} s after the \
         takeover: {seen:?}\n{}",
        took.elapsed().as_secs_f64(),
        lab.logs()
    );
    assert_eq!(lab.client_neigh(VIP).as_deref(), Some(sec_mac.as_str()));
    // The status says when the address was last announced: within the refresh, give or take
    // the status's own refresh.
    let status = lab.status(Host::Sec, "failoverd");
    let updated = status["updated_at_ms"].as_u64().unwrap_or(0);
    let announced = status["addresses"][0]["announced_ms"].as_u64();
    assert!(
        announced.is_some_and(|a| updated.saturating_sub(a) <= 3_500),
        "announced_ms {announced:?}, updated_at_ms {updated}: {status}"
    );
    let last = status["last_announcement_ms"].as_u64();
    assert!(last >= announced, "{status}");
}

/// A group member with `FAILOVER_ANNOUNCE_REFRESH` announces what it holds again and again,
/// as a pair's secondary does, long after the burst of its acquisition.
#[test]
fn a_group_members_held_address_is_announced_again_every_refresh() {
    use ipfailover_e2e::group::{vip, GroupLab, Node};
    let mut lab = GroupLab::new("gannref", 2, 1);
    lab.start_etcd_cluster();
    for i in 1..=2 {
        lab.start_member(i, &[("FAILOVER_ANNOUNCE_REFRESH", "3s")]);
    }
    let addr = vip(0);
    assert_eq!(
        lab.wait_one_holder(&addr, Duration::from_secs(20)),
        Some(1),
        "{}",
        lab.logs()
    );
    // Past the acquisition's own burst (its last step is at 10 s), for 10 s.
    std::thread::sleep(Duration::from_secs(11));
    let watch = lab.spawn_cmd(
        Node::Cli,
        "arpwatch",
        &["/usr/bin/python3", "-c", ARP_WATCH, &addr, "10"],
    );
    let started = ipfailover_e2e::wait_for(Duration::from_secs(5), || {
        lab.proc(watch).log_text().contains("watching")
    });
    assert!(started.is_some(), "the ARP watch did not start");
    assert!(
        lab.proc(watch).wait_exit(Duration::from_secs(20)).is_some(),
        "the ARP watch did not end"
    );
    let mac = lab.member_mac(1);
    let seen: Vec<(f64, String)> = lab
        .proc(watch)
        .log_text()
        .lines()
        .filter_map(|l| {
            let (t, mac) = l.split_once(' ')?;
            Some((t.parse().ok()?, mac.to_string()))
        })
        .collect();
    assert!(
        seen.iter().all(|(_, m)| *m == mac),
        "announced from another MAC than the holder's {mac}: {seen:?}"
    );
    let rounds =
        seen.windows(2).filter(|w| w[1].0 - w[0].0 > 1.5).count() + usize::from(!seen.is_empty());
    assert!(
        rounds >= 2,
        "{rounds} rounds of announcements in 10 s with a refresh of 3 s: {seen:?}\n{}",
        lab.logs()
    );
    let st = lab.status(1);
    assert!(st["last_announcement_ms"].as_u64().is_some(), "{st}");
}
