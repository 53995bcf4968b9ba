//! The group benchmark (docs/groups.md): ipfailover's group on a three-member etcd cluster, side by
//! side with keepalived running three VRRP nodes (unicast peers) on the same lab, three hosts
//! and a client. It reports, it does not judge: medians and spread of the crash takeover and
//! the clean stop, the milliseconds with two holders and with none while the holder is cut off
//! from its peers (not from the client) and while the lab is cut in two halves, how far apart
//! 100 addresses move, and etcd's load at 3 and 10 members.
//!
//! `bench/run --group` runs it (root, namespaces only; everything is removed at the end).

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ipfailover_bench::{signal_pid, Summary};
use ipfailover_e2e::group::{vip, GroupLab, Node, Timeline};
use ipfailover_e2e::wait_for;

/// ipfailover's lease and keepalived's advert interval: chosen so that both detect a dead
/// holder in about the same time (a 2 s lease; VRRP's master-down interval is 3 adverts).
const LEASE_TTL: &str = "2s";
const ADVERT_INT: &str = "0.6";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Ipfailover,
    Keepalived,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Ipfailover => "ipfailover",
            Daemon::Keepalived => "keepalived",
        }
    }
}

/// A group of three with one address (or `n`), up and settled on m1.
struct Bed {
    lab: GroupLab,
    daemon: Daemon,
    addrs: Vec<String>,
}

impl Bed {
    fn new(daemon: Daemon, name: &str, n_addrs: usize, members: usize) -> Result<Bed, String> {
        let mut lab = GroupLab::new(name, members, 3);
        let addrs: Vec<String> = (0..n_addrs).map(vip).collect();
        match daemon {
            Daemon::Ipfailover => {
                lab.start_etcd_cluster();
                let pairs = addrs
                    .iter()
                    .map(|a| format!("eth0:{a}/24"))
                    .collect::<Vec<_>>()
                    .join(" ");
                for i in 1..=members {
                    lab.start_member(
                        i,
                        &[
                            ("FAILOVER_GROUP_IP_PAIRS", &pairs),
                            ("FAILOVER_LEASE_TTL", LEASE_TTL),
                        ],
                    );
                }
            }
            Daemon::Keepalived => {
                for i in 1..=members {
                    start_keepalived(&mut lab, i, members, &addrs);
                }
            }
        }
        let mut bed = Bed { lab, daemon, addrs };
        bed.settle(1, Duration::from_secs(30))?;
        Ok(bed)
    }

    /// Waits until member `m` alone holds every address.
    fn settle(&mut self, m: usize, limit: Duration) -> Result<(), String> {
        let addrs = self.addrs.clone();
        let lab = &self.lab;
        wait_for(limit, || {
            let out = lab.ip(
                Node::Member(m),
                &["-o", "addr", "show", "dev", "eth0", "up"],
            );
            addrs.iter().all(|a| out.contains(&format!("inet {a}/")))
                && addrs.iter().all(|a| lab.holders_now(a) == vec![m])
        })
        .map(|_| ())
        .ok_or_else(|| format!("{}: m{m} never held everything", self.daemon.name()))
    }

    fn kill(&mut self, m: usize) {
        match self.daemon {
            Daemon::Ipfailover => self.lab.kill_member(m),
            Daemon::Keepalived => {
                // A crash says nothing: both processes are frozen before the links go down,
                // or keepalived would see its interface go and send a last advert (priority
                // 0) on the other link, which a dead host never does.
                let child = keepalived_child(&self.lab, m);
                let idx = keepalived_proc(&self.lab, m);
                if let Some(c) = child {
                    signal_pid(c, libc::SIGSTOP);
                }
                if let Some(i) = idx {
                    self.lab.proc(i).signal(libc::SIGSTOP);
                }
                self.lab.member_links(m, false);
                if let Some(c) = child {
                    signal_pid(c, libc::SIGKILL);
                }
                if let Some(i) = idx {
                    self.lab.proc(i).signal(libc::SIGKILL);
                }
            }
        }
    }

    fn stop(&mut self, m: usize) {
        match self.daemon {
            Daemon::Ipfailover => self.lab.signal_member(m, libc::SIGTERM),
            Daemon::Keepalived => {
                if let Some(idx) = keepalived_proc(&self.lab, m) {
                    self.lab.proc(idx).signal(libc::SIGTERM);
                }
            }
        }
    }
}

/// keepalived on member `i`: VRRPv3 over the private link (203.0.113.0/24) to unicast peers,
/// the address on eth0; all `state BACKUP` with `nopreempt`, as ipfailover's group does not
/// preempt by default.
fn start_keepalived(lab: &mut GroupLab, i: usize, members: usize, addrs: &[String]) {
    let peers: String = (1..=members)
        .filter(|k| *k != i)
        .map(|k| format!("    203.0.113.{}\n", 10 + k))
        .collect();
    let vips: String = addrs
        .iter()
        .map(|a| format!("    {a}/24 dev eth0\n"))
        .collect();
    let conf = format!(
        "global_defs {{\n  router_id m{i}\n  vrrp_version 3\n  script_user root\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  nopreempt\n  interface eth1\n  \
         virtual_router_id 51\n  priority {}\n  advert_int {ADVERT_INT}\n  \
         unicast_src_ip 203.0.113.{}\n  unicast_peer {{\n{peers}  }}\n  \
         virtual_ipaddress {{\n{vips}  }}\n}}\n",
        200 - 10 * i,
        10 + i
    );
    let path = lab.write(&format!("keepalived-m{i}.conf"), &conf);
    let pid = lab.dir.join(format!("keepalived-m{i}.pid"));
    let vpid = lab.dir.join(format!("keepalived-m{i}-vrrp.pid"));
    let (pid, vpid) = (
        pid.to_string_lossy().into_owned(),
        vpid.to_string_lossy().into_owned(),
    );
    lab.spawn_cmd(
        Node::Member(i),
        &format!("keepalived-m{i}"),
        &[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "--vrrp",
            "-f",
            &path,
            "-p",
            &pid,
            "-r",
            &vpid,
        ],
    );
}

/// The lab's index of member `m`'s keepalived: the lab starts nothing else on members in a
/// keepalived bed, in member order.
fn keepalived_proc(_lab: &GroupLab, m: usize) -> Option<usize> {
    Some(m - 1)
}

/// The pid of keepalived's VRRP child on member `m`, from its pid file.
fn keepalived_child(lab: &GroupLab, m: usize) -> Option<u32> {
    let path = lab.dir.join(format!("keepalived-m{m}-vrrp.pid"));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cell(s: Option<Summary>) -> String {
    match s {
        Some(s) => format!("{:.0} ms ({:.0}–{:.0}, n={})", s.median, s.min, s.max, s.n),
        None => "—".to_string(),
    }
}

/// Crash of the holder (process killed, links down): the time until another holds it.
fn crash(daemon: Daemon, trials: usize) -> Result<(Vec<Duration>, Duration), String> {
    let mut took = Vec::new();
    let mut two = Duration::ZERO;
    for t in 0..trials {
        let mut bed = Bed::new(daemon, &format!("gc{t}"), 1, 3)?;
        let addr = bed.addrs[0].clone();
        let sampler = bed.lab.sampler(std::slice::from_ref(&addr));
        let at = Instant::now();
        bed.kill(1);
        let got = wait_for(Duration::from_secs(15), || {
            let h = bed.lab.holders_now(&addr);
            h.len() == 1 && h[0] != 1
        });
        std::thread::sleep(Duration::from_millis(200));
        let tl = sampler.finish();
        if got.is_some() {
            let first = (2..=3)
                .filter_map(|m| tl.first_held_after(m, &addr, at))
                .min();
            if let Some(f) = first {
                took.push(f - at);
            }
        }
        two += tl.two_holders_for(&addr, at, Instant::now());
    }
    Ok((took, two))
}

/// A clean stop of the holder: the gap between its release and the next one's add.
fn clean_stop(daemon: Daemon, trials: usize) -> Result<Vec<Duration>, String> {
    let mut gaps = Vec::new();
    for t in 0..trials {
        let mut bed = Bed::new(daemon, &format!("gs{t}"), 1, 3)?;
        let addr = bed.addrs[0].clone();
        let sampler = bed.lab.sampler(std::slice::from_ref(&addr));
        let at = Instant::now();
        bed.stop(1);
        let _ = wait_for(Duration::from_secs(10), || {
            let h = bed.lab.holders_now(&addr);
            h.len() == 1 && h[0] != 1
        });
        std::thread::sleep(Duration::from_millis(200));
        let tl = sampler.finish();
        let next = (2..=3)
            .filter_map(|m| tl.first_held_after(m, &addr, at))
            .min();
        if let (Some(n), Some(d)) = (next, tl.held_until(1, &addr, at - Duration::from_secs(1))) {
            gaps.push(n.saturating_duration_since(d));
        }
    }
    Ok(gaps)
}

/// A fault held for `window`, then healed: the time with two holders and with none, during
/// the fault and for a settling time after it.
fn fault(
    daemon: Daemon,
    name: &str,
    window: Duration,
    apply: impl Fn(&GroupLab, bool),
) -> Result<(Duration, Duration, Timeline), String> {
    let bed = Bed::new(daemon, name, 1, 3)?;
    let addr = bed.addrs[0].clone();
    let sampler = bed.lab.sampler(std::slice::from_ref(&addr));
    let at = Instant::now();
    apply(&bed.lab, true);
    std::thread::sleep(window);
    apply(&bed.lab, false);
    std::thread::sleep(Duration::from_secs(4));
    let end = Instant::now();
    let tl = sampler.finish();
    Ok((
        tl.two_holders_for(&addr, at, end),
        tl.no_holder_for(&addr, at, end),
        tl,
    ))
}

/// 100 addresses, the holder crashes: when each was first held again.
fn hundred(daemon: Daemon) -> Result<Vec<Duration>, String> {
    let mut bed = Bed::new(daemon, "g100", 100, 3)?;
    let addrs = bed.addrs.clone();
    let sampler = bed.lab.sampler(&addrs);
    let at = Instant::now();
    bed.kill(1);
    let _ = wait_for(Duration::from_secs(20), || {
        let out = bed.lab.ip(
            Node::Member(2),
            &["-o", "addr", "show", "dev", "eth0", "up"],
        );
        addrs.iter().all(|a| out.contains(&format!("inet {a}/")))
    });
    std::thread::sleep(Duration::from_millis(200));
    let tl = sampler.finish();
    Ok(addrs
        .iter()
        .filter_map(|a| (2..=3).filter_map(|m| tl.first_held_after(m, a, at)).min())
        .map(|t| t - at)
        .collect())
}

/// Requests etcd handles, from its own counters (every gateway call is a gRPC call inside
/// etcd), summed over the cluster.
fn etcd_requests(lab: &GroupLab) -> Option<u64> {
    let mut total = 0u64;
    for j in 1..=lab.etcds {
        let url = format!("http://203.0.113.{j}:2379/metrics");
        let script = format!(
            "import urllib.request;print(urllib.request.urlopen('{url}',timeout=2).read().decode())"
        );
        let text = lab.exec_out(Node::Etcd(j), &["python3", "-c", &script]);
        let n: f64 = text
            .lines()
            .filter(|l| l.starts_with("grpc_server_started_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if text.is_empty() {
            return None;
        }
        total += n as u64;
    }
    Some(total)
}

/// etcd's load from an idle group of `members`, over `window`: requests per second in all,
/// and per group member.
fn etcd_load(members: usize, window: Duration) -> Result<(f64, f64), String> {
    let bed = Bed::new(Daemon::Ipfailover, &format!("gl{members}"), 1, members)?;
    std::thread::sleep(Duration::from_secs(3));
    let before = etcd_requests(&bed.lab).ok_or("etcd's metrics could not be read")?;
    std::thread::sleep(window);
    let after = etcd_requests(&bed.lab).ok_or("etcd's metrics could not be read")?;
    let rate = after.saturating_sub(before) as f64 / window.as_secs_f64();
    Ok((rate, rate / members as f64))
}

fn main() {
    let mut trials = 10usize;
    let mut out_dir = std::path::PathBuf::from("bench/results");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--trials" => trials = args.next().and_then(|n| n.parse().ok()).unwrap_or(trials),
            "--out" => out_dir = args.next().map(Into::into).unwrap_or(out_dir),
            other => {
                eprintln!("ipfo-bench-group: unknown argument {other} (--trials N, --out DIR)");
                std::process::exit(2);
            }
        }
    }
    match run(trials) {
        Ok(report) => {
            print!("{report}");
            let _ = std::fs::create_dir_all(&out_dir);
            let date = ipfailover_e2e::run(&["date", "-u", "+%Y-%m-%d"]);
            let date = String::from_utf8_lossy(&date.stdout).trim().to_string();
            let path = out_dir.join(format!("{date}-group.md"));
            match std::fs::write(&path, &report) {
                Ok(()) => eprintln!("written to {}", path.display()),
                Err(e) => eprintln!("cannot write {}: {e}", path.display()),
            }
        }
        Err(e) => {
            eprintln!("ipfo-bench-group: {e}");
            std::process::exit(1);
        }
    }
}

fn run(trials: usize) -> Result<String, String> {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# Groups: ipfailover on etcd vs keepalived VRRP, three hosts\n\n\
         - ipfailover: three members, `FAILOVER_LEASE_TTL={LEASE_TTL}`, preemption off, on a \
         three-member etcd {} cluster (heartbeat 50 ms, election 500 ms).\n\
         - keepalived: three VRRPv3 nodes, unicast peers over the private link, `advert_int \
         {ADVERT_INT}` (master down after about 3 adverts), `nopreempt`.\n\
         - A crash: the daemon frozen, the host's links down, the daemon killed. Fault (a) is \
         a firewall dropping everything on the holder's private link (which stays up).\n\
         - Holders are sampled on every host's interface about every 2 ms; a host holds an \
         address while it is on its eth0 and the link is up.\n",
        String::from_utf8_lossy(&ipfailover_e2e::run(&["etcd", "--version"]).stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .trim_start_matches("etcd Version: ")
    );
    let _ = writeln!(
        r,
        "## Takeover and handover, {trials} trials each\n\n| | ipfailover | keepalived |\n|---|---|---|"
    );
    let (ic, itwo) = crash(Daemon::Ipfailover, trials)?;
    let (kc, ktwo) = crash(Daemon::Keepalived, trials)?;
    let _ = writeln!(
        r,
        "| crash of the holder: takeover | {} | {} |",
        cell(Summary::of(&ic)),
        cell(Summary::of(&kc))
    );
    let _ = writeln!(
        r,
        "| crash: time with two holders, all trials | {:.0} ms | {:.0} ms |",
        ms(itwo),
        ms(ktwo)
    );
    let is = clean_stop(Daemon::Ipfailover, trials)?;
    let ks = clean_stop(Daemon::Keepalived, trials)?;
    let _ = writeln!(
        r,
        "| clean stop: gap without a holder | {} | {} |",
        cell(Summary::of(&is)),
        cell(Summary::of(&ks))
    );

    let _ = writeln!(
        r,
        "\n## Faults held for 8 s, then healed (4 s more measured)\n\n\
         | fault | ipfailover: two holders | ipfailover: none | keepalived: two holders | keepalived: none |\n\
         |---|---|---|---|---|"
    );
    let window = Duration::from_secs(8);
    // A firewall on the holder's private link (the link stays up): etcd for ipfailover,
    // the VRRP peers for keepalived.
    let cut_holder = |lab: &GroupLab, on: bool| lab.firewall_etcd(1, on);
    let halves = |lab: &GroupLab, on: bool| lab.split(&[Node::Member(1), Node::Etcd(1)], on);
    for (name, tag, f) in [
        (
            "(a) holder cut off from its peers, not from the client",
            "ga",
            &cut_holder as &dyn Fn(&GroupLab, bool),
        ),
        (
            "(b) the lab cut in two: m1 and e1 apart from m2, m3, e2, e3 and the client",
            "gb",
            &halves,
        ),
    ] {
        let (i2, i0, _) = fault(Daemon::Ipfailover, tag, window, f)?;
        let (k2, k0, _) = fault(Daemon::Keepalived, &format!("{tag}k"), window, f)?;
        let _ = writeln!(
            r,
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            ms(i2),
            ms(i0),
            ms(k2),
            ms(k0)
        );
    }

    let _ = writeln!(
        r,
        "\n## 100 addresses, the holder crashes\n\n| | ipfailover | keepalived |\n|---|---|---|"
    );
    let ih = hundred(Daemon::Ipfailover)?;
    let kh = hundred(Daemon::Keepalived)?;
    let spread = |v: &[Duration]| match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) => format!("{:.0} ms (n={})", ms(*b - *a), v.len()),
        _ => "—".to_string(),
    };
    let _ = writeln!(
        r,
        "| first to last address moved | {} | {} |",
        spread(&ih),
        spread(&kh)
    );
    let _ = writeln!(
        r,
        "| takeover, median address | {} | {} |",
        cell(Summary::of(&ih)),
        cell(Summary::of(&kh))
    );

    let _ = writeln!(
        r,
        "\n## etcd's load, idle group, 10 s\n\n| members | requests/s, whole cluster | per group member |\n|---|---|---|"
    );
    for members in [3usize, 10] {
        let (all, per) = etcd_load(members, Duration::from_secs(10))?;
        let _ = writeln!(r, "| {members} | {all:.1} | {per:.1} |");
    }
    Ok(r)
}
