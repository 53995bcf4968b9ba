//! The chaos soak: a seeded, repeatable run of random faults against a pair in the lab, with
//! a checker sampling the secondary every few milliseconds against the ground truth.
//!
//! Faults: a link of either host down for a while; random loss on a primary link; delay with
//! jitter, reordering and duplication on a primary link (the lab's userspace netem, both
//! ways); heartbeatd or failoverd killed (SIGKILL) and restarted, with the host left up;
//! either paused (SIGSTOP, as a stalled VM) and resumed; heartbeatd stopped cleanly (goodbye)
//! and restarted; a firewall on the primary that drops its heartbeats on both links; a
//! daemon restarted with its wall clock ten minutes off.
//!
//! Invariants:
//! 1. never two hosts holding the address, while heartbeatd runs, the private link is whole
//!    (up at both ends, no loss, no netem, no firewall) and the secondary's daemon runs, for
//!    longer than one release window, whatever happens on the public link;
//! 2. never two hosts answering for the address (the primary's public link up, the secondary
//!    holding it with its own up) for longer than the conflict grace window, whatever else
//!    happens: a primary whose heartbeats are lost but whose kernel answers is a conflict,
//!    not a host to take over;
//! 3. whenever the primary's address no longer answers (its public link down) and its
//!    heartbeats cannot arrive, and the secondary's daemon runs, the secondary holds the
//!    address within the timeout (plus the boot grace after a restart);
//! 4. once the faults stop, the pair settles with the primary holding the address;
//! 5. when failoverd stops (SIGTERM), no address is left on the secondary;
//! 6. failoverd's memory and open files do not grow;
//! 7. no process a hook started outlives the hook's timeout (plus the SIGKILL grace, and a
//!    restart of failoverd when it was killed meanwhile): each takeover runs a PostAcq hook
//!    that leaves a `sleep` behind.
//!
//! On a violation the report carries the seed and the timeline, so the run can be repeated.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::{cpu_ns, hostconfig, rss_kib, wait_for, Host, Lab, VIP};

/// Heartbeat interval of the soak.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// failoverd's timeout in the soak.
pub const TIMEOUT: Duration = Duration::from_millis(400);
/// The hooks' timeout in the soak.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the secondary lets another host answer for the address it holds.
pub const CONFLICT_GRACE: Duration = Duration::from_secs(2);
/// Delays the netem faults choose from, ms, and the jitters added to them.
const DELAYS: [u32; 4] = [20, 50, 150, 300];
const JITTERS: [u32; 3] = [0, 30, 120];
/// The latest a held heartbeat can arrive after it was sent.
const MOST_LATE: Duration = Duration::from_millis(300 + 120);

/// What happened, and whether every invariant held.
#[derive(Debug)]
pub struct Report {
    /// The seed of the run.
    pub seed: u64,
    /// Faults injected.
    pub faults: u64,
    /// Samples taken by the checker.
    pub samples: u64,
    /// Takeovers and releases failoverd completed (from its last status).
    pub takeovers: u64,
    /// Invariant violations, each with the time it was seen.
    pub violations: Vec<String>,
    /// Everything that happened, with times.
    pub timeline: Vec<String>,
    /// failoverd's resident memory at the start and end of its last run, KiB.
    pub rss: (u64, u64),
    /// failoverd's open files at the start and end of its last run.
    pub fds: (usize, usize),
    /// CPU used by failoverd's last run, ns.
    pub cpu_ns: u64,
    /// Processes hooks left behind, all checked to be gone by their deadline.
    pub hook_leftovers: usize,
    /// What the netem did on the primary's links (packets held, and reordered as seen by
    /// the receiver).
    pub netem: Option<[crate::NetemCounts; 2]>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The ground truth the driver knows, which the checker compares with what it sees.
#[derive(Debug, Default, Clone)]
struct Truth {
    hb: Option<usize>,
    hb_paused: bool,
    fo: Option<usize>,
    fo_paused: bool,
    /// pri eth0, pri eth1, sec eth0, sec eth1.
    up: [bool; 4],
    /// loss % on pri eth0, pri eth1.
    loss: [u8; 2],
    /// netem on pri eth0, pri eth1.
    impaired: [bool; 2],
    /// A firewall on the primary drops its heartbeats on both links.
    firewall: bool,
}

impl Truth {
    /// The primary's kernel answers for its address on the public LAN.
    fn primary_answers(&self) -> bool {
        self.up[0] && self.loss[0] < 100
    }
    /// The primary is gone for the secondary: its address does not answer, and no heartbeat
    /// can reach the secondary on the private link.
    fn primary_dead(&self) -> bool {
        let beats = self.hb.is_some() && !self.hb_paused && !self.firewall;
        let private = self.up[1] && self.up[3] && self.loss[1] < 100;
        !(self.primary_answers() || beats && private)
    }
    /// heartbeatd runs, and the private link is whole: the secondary hears every heartbeat
    /// there, whatever happens on the public link (where it cannot hear the primary while it
    /// holds the primary's address).
    fn primary_healthy(&self) -> bool {
        self.hb.is_some()
            && !self.hb_paused
            && self.up[1]
            && self.up[3]
            && self.loss[1] == 0
            && !self.impaired[1]
            && !self.firewall
    }
    fn secondary_runs(&self) -> bool {
        self.fo.is_some() && !self.fo_paused
    }
}

/// An undo scheduled for later.
#[derive(Debug, Clone, Copy)]
enum Undo {
    LinkUp(usize),
    NoLoss(usize),
    NoImpairment(usize),
    StartHb,
    StartFo,
    ContHb,
    ContFo,
    NoFirewall,
}

/// What the soak's hook recorded: each leftover's pid and age.
fn leftovers(path: &std::path::Path) -> Vec<(i32, Duration)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::read(path)
        .lines()
        .filter_map(|l| {
            let (pid, t) = l.split_once(' ')?;
            let t: u64 = t.trim().parse().ok()?;
            Some((
                pid.parse().ok()?,
                Duration::from_secs(now.saturating_sub(t)),
            ))
        })
        .collect()
}

/// Whether `pid` is still the hook's `sleep 1000` (not a recycled pid, not a zombie).
fn alive_sleep(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, r)| r.starts_with('Z'));
    cmd.starts_with(b"sleep\0") && cmd.windows(4).any(|w| w == b"1000") && !zombie
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs the soak for `duration` with `seed`.
pub fn soak(seed: u64, duration: Duration) -> Report {
    let mut lab = Lab::new(&format!("chaos{}", seed % 1000));
    let t0 = Instant::now();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut report = Report {
        seed,
        faults: 0,
        samples: 0,
        takeovers: 0,
        violations: Vec::new(),
        timeline: Vec::new(),
        rss: (0, 0),
        fds: (0, 0),
        cpu_ns: 0,
        hook_leftovers: 0,
        netem: None,
    };
    lab.seed = seed;
    let stamp = |t0: Instant| format!("{:>8.3}", t0.elapsed().as_secs_f64());
    let secret = lab.write("secret", "the chaos pair's shared secret\n");
    let secret = secret.to_string_lossy().into_owned();
    let state_pri = lab.state_dir(Host::Pri).to_string_lossy().into_owned();
    let state_sec = lab.state_dir(Host::Sec).to_string_lossy().into_owned();
    let pri_conf = lab.write(
        "pri.conf",
        &hostconfig(&[
            ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
            ("FAILOVER_INTERVAL", "100ms"),
            ("FAILOVER_SECRET_FILE", &secret),
            ("FAILOVER_STATE_DIR", &state_pri),
        ]),
    );
    // A PostAcq hook that leaves a process behind, which must not outlive the timeout.
    let scripts = lab.dir.join("scripts");
    let hook_dir = scripts.join(VIP);
    let hook_pids = hook_dir.join("leftovers");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&hook_dir).expect("hook dir");
        for d in [&scripts, &hook_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let hook = hook_dir.join("PostAcq-leftover");
        std::fs::write(
            &hook,
            // Two leftovers: one in the hook's group, one that left it (setsid).
            "#!/bin/sh\nsleep 1000 &\necho \"$! $(date +%s)\" >> leftovers\n\
             setsid sleep 1000 &\necho \"$! $(date +%s)\" >> leftovers\nexit 0\n",
        )
        .expect("hook");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let scripts = scripts.to_string_lossy().into_owned();
    let sec_conf = lab.write(
        "sec.conf",
        &hostconfig(&[
            ("FAILOVER_PEER_IP", VIP),
            ("FAILOVER_PEER_IP_PAIRS", "eth0:198.51.100.10"),
            ("FAILOVER_TIMEOUT", "400ms"),
            ("FAILOVER_SECRET_FILE", &secret),
            ("FAILOVER_STATE_DIR", &state_sec),
            ("FAILOVER_SCRIPT_DIR", &scripts),
            ("FAILOVER_SCRIPT_TIMEOUT", "2s"),
            ("FAILOVER_CONFLICT_GRACE", "2s"),
        ]),
    );
    let (pri_conf, sec_conf) = (
        pri_conf.to_string_lossy().into_owned(),
        sec_conf.to_string_lossy().into_owned(),
    );
    // Each start picks a wall clock: right, ten minutes ahead, or ten minutes behind (a host
    // that booted before NTP): freshness must not care.
    let mut n = 0u32;
    let mut start_hb = |lab: &mut Lab, skew: i64| {
        n += 1;
        let name = format!("heartbeatd-{n}");
        match skew {
            0 => lab.spawn(Host::Pri, &name, "heartbeatd", &["-c", &pri_conf]),
            s => lab.spawn_skewed(Host::Pri, &name, "heartbeatd", &["-c", &pri_conf], s),
        }
    };
    let mut m = 0u32;
    let mut start_fo = |lab: &mut Lab, skew: i64| {
        m += 1;
        let name = format!("failoverd-{m}");
        match skew {
            0 => lab.spawn(Host::Sec, &name, "failoverd", &["-c", &sec_conf]),
            s => lab.spawn_skewed(Host::Sec, &name, "failoverd", &["-c", &sec_conf], s),
        }
    };
    const SKEWS: [i64; 3] = [0, 600, -600];
    let mut truth = Truth {
        up: [true; 4],
        ..Truth::default()
    };
    truth.hb = Some(start_hb(&mut lab, 0));
    truth.fo = Some(start_fo(&mut lab, 0));
    let mut fo_started = Instant::now();
    std::thread::sleep(TIMEOUT * 3);

    let links = [
        (Host::Pri, "eth0"),
        (Host::Pri, "eth1"),
        (Host::Sec, "eth0"),
        (Host::Sec, "eth1"),
    ];
    // Release: the boot grace after a restart, three heartbeats, and slack for a busy machine.
    let release_bound = TIMEOUT * 2 + INTERVAL * 4 + Duration::from_millis(1500);
    // Takeover: the boot grace after a restart, the timeout, the latest a heartbeat held by
    // the netem arrives, and slack.
    let takeover_bound = TIMEOUT * 2 + MOST_LATE + Duration::from_millis(1500);
    // Two hosts answering: the boot grace after a restart, a probe while holding (every
    // half second with this grace), the grace itself, and slack.
    let answer_bound =
        TIMEOUT + Duration::from_millis(500) + CONFLICT_GRACE + Duration::from_millis(1500);
    let mut answering_since: Option<Instant> = None;
    let mut undos: Vec<(Instant, Undo)> = Vec::new();
    let mut next_fault = Instant::now() + rng.ms(300, 1500);
    let mut dual_since: Option<Instant> = None;
    let mut dead_since: Option<Instant> = None;
    let mut fo_runs_since = Instant::now();
    let mut holding = false;
    // failoverd's memory and open files 1 s into its current run: (pid, rss, fds).
    let mut baseline: Option<(u32, u64, usize)> = None;
    // A hook's leftover may live its timeout, the SIGKILL grace, the longest pause and the
    // longest restart of failoverd (3 s each in this soak), and a little slack.
    let leftover_bound = SCRIPT_TIMEOUT + Duration::from_secs(5 + 3 + 3 + 2);
    let mut leftovers_seen: Vec<i32> = Vec::new();
    let mut next_leftover_check = Instant::now();
    let end = t0 + duration;

    while Instant::now() < end {
        // Undo what is due.
        let now = Instant::now();
        let due: Vec<Undo> = undos
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, u)| *u)
            .collect();
        undos.retain(|(t, _)| *t > now);
        for u in due {
            let what = match u {
                Undo::LinkUp(i) => {
                    lab.ip(links[i].0, &["link", "set", links[i].1, "up"]);
                    truth.up[i] = true;
                    format!("{:?} {} up", links[i].0, links[i].1)
                }
                Undo::NoLoss(i) => {
                    lab.loss(Host::Pri, links[i].1, 0);
                    truth.loss[i] = 0;
                    format!("no more loss on Pri {}", links[i].1)
                }
                Undo::NoImpairment(i) => {
                    lab.impair(Host::Pri, links[i].1, crate::Impairment::default());
                    truth.impaired[i] = false;
                    format!("no more netem on Pri {}", links[i].1)
                }
                Undo::StartHb => {
                    let skew = SKEWS[rng.below(3) as usize];
                    truth.hb = Some(start_hb(&mut lab, skew));
                    format!("heartbeatd started, its clock {skew:+} s off")
                }
                Undo::StartFo => {
                    let skew = SKEWS[rng.below(3) as usize];
                    truth.fo = Some(start_fo(&mut lab, skew));
                    fo_started = Instant::now();
                    fo_runs_since = Instant::now();
                    format!("failoverd started, its clock {skew:+} s off")
                }
                Undo::NoFirewall => {
                    lab.firewall_heartbeats(Host::Pri, false);
                    truth.firewall = false;
                    "the primary's firewall lets heartbeats through again".to_string()
                }
                Undo::ContHb => {
                    if let Some(i) = truth.hb {
                        lab.proc(i).signal(libc::SIGCONT);
                    }
                    truth.hb_paused = false;
                    "heartbeatd resumed (SIGCONT)".to_string()
                }
                Undo::ContFo => {
                    if let Some(i) = truth.fo {
                        lab.proc(i).signal(libc::SIGCONT);
                    }
                    truth.fo_paused = false;
                    fo_runs_since = Instant::now();
                    "failoverd resumed (SIGCONT)".to_string()
                }
            };
            report.timeline.push(format!("{} {what}", stamp(t0)));
        }

        // A new fault, at most two at a time.
        if Instant::now() >= next_fault && undos.len() < 2 {
            report.faults += 1;
            let what = match rng.below(10) {
                0 | 1 => {
                    let i = rng.below(4) as usize;
                    if truth.up[i] {
                        lab.ip(links[i].0, &["link", "set", links[i].1, "down"]);
                        truth.up[i] = false;
                        undos.push((Instant::now() + rng.ms(200, 3000), Undo::LinkUp(i)));
                    }
                    format!("{:?} {} down", links[i].0, links[i].1)
                }
                2 => {
                    let i = rng.below(2) as usize;
                    let pct = [10u8, 30, 50, 100][rng.below(4) as usize];
                    lab.loss(Host::Pri, links[i].1, pct);
                    truth.loss[i] = pct;
                    undos.push((Instant::now() + rng.ms(500, 4000), Undo::NoLoss(i)));
                    format!("{pct} % loss on Pri {}", links[i].1)
                }
                3 if truth.hb.is_some() && !truth.hb_paused => {
                    if let Some(i) = truth.hb.take() {
                        lab.proc(i).signal(libc::SIGKILL);
                        let _ = lab.proc(i).wait_exit(Duration::from_secs(2));
                    }
                    undos.push((Instant::now() + rng.ms(300, 4000), Undo::StartHb));
                    "heartbeatd killed (SIGKILL)".to_string()
                }
                4 if truth.fo.is_some() && !truth.fo_paused => {
                    if let Some(i) = truth.fo.take() {
                        lab.proc(i).signal(libc::SIGKILL);
                        let _ = lab.proc(i).wait_exit(Duration::from_secs(2));
                    }
                    undos.push((Instant::now() + rng.ms(300, 3000), Undo::StartFo));
                    "failoverd killed (SIGKILL)".to_string()
                }
                5 if truth.hb.is_some() && !truth.hb_paused => {
                    if let Some(i) = truth.hb {
                        lab.proc(i).signal(libc::SIGSTOP);
                    }
                    truth.hb_paused = true;
                    undos.push((Instant::now() + rng.ms(100, 2500), Undo::ContHb));
                    "heartbeatd paused (SIGSTOP)".to_string()
                }
                6 if truth.fo.is_some() && !truth.fo_paused => {
                    if let Some(i) = truth.fo {
                        lab.proc(i).signal(libc::SIGSTOP);
                    }
                    truth.fo_paused = true;
                    undos.push((Instant::now() + rng.ms(100, 2000), Undo::ContFo));
                    "failoverd paused (SIGSTOP)".to_string()
                }
                7 if truth.hb.is_some() && !truth.hb_paused => {
                    if let Some(i) = truth.hb.take() {
                        lab.proc(i).signal(libc::SIGTERM);
                        let _ = lab.proc(i).wait_exit(Duration::from_secs(2));
                    }
                    undos.push((Instant::now() + rng.ms(300, 3000), Undo::StartHb));
                    "heartbeatd stopped (goodbye)".to_string()
                }
                8 => {
                    let i = rng.below(2) as usize;
                    let imp = crate::Impairment {
                        delay_ms: DELAYS[rng.below(DELAYS.len() as u64) as usize],
                        jitter_ms: JITTERS[rng.below(JITTERS.len() as u64) as usize],
                        reorder_pct: [0, 25][rng.below(2) as usize],
                        dup_pct: [0, 10, 40][rng.below(3) as usize],
                    };
                    lab.impair(Host::Pri, links[i].1, imp);
                    truth.impaired[i] = true;
                    undos.push((Instant::now() + rng.ms(500, 4000), Undo::NoImpairment(i)));
                    format!(
                        "netem on Pri {}: delay {} ms, jitter {} ms, {} % at once, {} % twice",
                        links[i].1, imp.delay_ms, imp.jitter_ms, imp.reorder_pct, imp.dup_pct
                    )
                }
                9 if !truth.firewall => {
                    lab.firewall_heartbeats(Host::Pri, true);
                    truth.firewall = true;
                    undos.push((Instant::now() + rng.ms(500, 4000), Undo::NoFirewall));
                    "a firewall on the primary drops its heartbeats on both links".to_string()
                }
                _ => "nothing (the chosen daemon is down)".to_string(),
            };
            report.timeline.push(format!("{} fault: {what}", stamp(t0)));
            next_fault = Instant::now() + rng.ms(300, 2500);
        }

        // failoverd's baseline, once per run.
        if let Some(fo) = truth.fo {
            let pid = lab.proc(fo).pid();
            if baseline.is_none_or(|b| b.0 != pid) && fo_started.elapsed() >= Duration::from_secs(1)
            {
                baseline = Some((pid, rss_kib(pid).unwrap_or(0), open_fds(pid)));
            }
        }

        // Hook leftovers, twice a second.
        if Instant::now() >= next_leftover_check {
            next_leftover_check = Instant::now() + Duration::from_millis(500);
            for (pid, age) in leftovers(&hook_pids) {
                if age > leftover_bound && alive_sleep(pid) && !leftovers_seen.contains(&pid) {
                    leftovers_seen.push(pid);
                    report.violations.push(format!(
                        "{} a process left by a hook ({pid}) lived {age:?}, past its timeout (bound {leftover_bound:?})",
                        stamp(t0)
                    ));
                }
            }
        }

        // Sample and check.
        let held = lab.holds(Host::Sec, "eth0", VIP);
        report.samples += 1;
        if held != holding {
            holding = held;
            report.timeline.push(format!(
                "{} seen: the secondary {} the address",
                stamp(t0),
                if held { "holds" } else { "no longer holds" }
            ));
        }
        let now = Instant::now();
        let runs_long = truth.secondary_runs() && now >= fo_runs_since;
        if held && truth.primary_healthy() && runs_long {
            let since = *dual_since.get_or_insert(now);
            if now - since > release_bound {
                report.violations.push(format!(
                    "{} two hosts held the address for {:?} with the primary healthy (bound {release_bound:?})",
                    stamp(t0),
                    now - since
                ));
                dual_since = Some(now);
            }
        } else {
            dual_since = None;
        }
        // Two hosts answering for the address: the primary's kernel, and the secondary.
        if held && truth.up[2] && truth.primary_answers() && runs_long {
            let since = *answering_since.get_or_insert(now);
            if now - since > answer_bound {
                report.violations.push(format!(
                    "{} two hosts answered for the address for {:?} (bound {answer_bound:?})",
                    stamp(t0),
                    now - since
                ));
                answering_since = Some(now);
            }
        } else {
            answering_since = None;
        }
        if truth.primary_dead() && runs_long {
            let since = *dead_since.get_or_insert(now);
            if !held && now - since > takeover_bound {
                report.violations.push(format!(
                    "{} the primary was dead for {:?} and the secondary did not hold the address (bound {takeover_bound:?})",
                    stamp(t0),
                    now - since
                ));
                dead_since = Some(now);
            }
        } else {
            dead_since = None;
        }
        std::thread::sleep(Duration::from_millis(3));
    }

    // Stop the faults and let the pair settle.
    report.timeline.push(format!("{} faults stop", stamp(t0)));
    for (up, (host, ifname)) in truth.up.iter().zip(links) {
        if !up {
            lab.ip(host, &["link", "set", ifname, "up"]);
        }
    }
    lab.firewall_heartbeats(Host::Pri, false);
    for (_, ifname) in &links[..2] {
        lab.loss(Host::Pri, ifname, 0);
        if truth.impaired.iter().any(|i| *i) {
            lab.impair(Host::Pri, ifname, crate::Impairment::default());
        }
    }
    report.netem = lab.netem_report(Host::Pri);
    match truth.hb {
        Some(i) if truth.hb_paused => lab.proc(i).signal(libc::SIGCONT),
        Some(_) => {}
        None => truth.hb = Some(start_hb(&mut lab, 0)),
    }
    match truth.fo {
        Some(i) if truth.fo_paused => lab.proc(i).signal(libc::SIGCONT),
        Some(_) => {}
        None => truth.fo = Some(start_fo(&mut lab, 0)),
    }
    // At the end, wait out the bound for the youngest leftover, then none may be alive.
    let youngest = leftovers(&hook_pids).iter().map(|(_, a)| *a).min();
    if let Some(age) = youngest {
        std::thread::sleep(leftover_bound.saturating_sub(age));
    }
    for (pid, age) in leftovers(&hook_pids) {
        if alive_sleep(pid) && !leftovers_seen.contains(&pid) {
            report.violations.push(format!(
                "{} a process left by a hook ({pid}, {age:?} old) is still alive at the end",
                stamp(t0)
            ));
        }
    }
    report.hook_leftovers = leftovers(&hook_pids).len();
    let settled = wait_for(release_bound + Duration::from_secs(3), || {
        !lab.holds(Host::Sec, "eth0", VIP)
    });
    if settled.is_none() {
        report.violations.push(format!(
            "{} after the faults stopped the secondary still held the address",
            stamp(t0)
        ));
    }
    if let Some(fo) = truth.fo {
        let pid = lab.proc(fo).pid();
        report.rss.1 = rss_kib(pid).unwrap_or(0);
        report.fds.1 = open_fds(pid);
        if let Some((bpid, rss, fds)) = baseline {
            if bpid == pid {
                report.rss.0 = rss;
                report.fds.0 = fds;
                if report.rss.1 > rss + 2048 || report.fds.1 > fds + 2 {
                    report.violations.push(format!(
                        "{} failoverd grew: RSS {rss} -> {} KiB, open files {fds} -> {}",
                        stamp(t0),
                        report.rss.1,
                        report.fds.1
                    ));
                }
            }
        }
        report.cpu_ns = cpu_ns(pid).unwrap_or(0);
        report.takeovers = lab.status(Host::Sec, "failoverd")["counters"]["takeovers"]
            .as_u64()
            .unwrap_or(0);
        // A takeover to hold something (the primary dies: its heartbeatd killed, its links
        // down), then a clean stop: nothing may be left behind.
        if let Some(hb) = truth.hb.take() {
            lab.proc(hb).signal(libc::SIGKILL);
            let _ = lab.proc(hb).wait_exit(Duration::from_secs(3));
        }
        lab.links(Host::Pri, false);
        let held = wait_for(Duration::from_secs(5), || lab.holds(Host::Sec, "eth0", VIP));
        lab.proc(fo).signal(libc::SIGTERM);
        let stopped = lab.proc(fo).wait_exit(Duration::from_secs(10));
        if held.is_none() || stopped.is_none() || lab.holds(Host::Sec, "eth0", VIP) {
            report.violations.push(format!(
                "{} failoverd stopped (SIGTERM) left the address behind, or never took it (held: {}, exited: {:?})",
                stamp(t0),
                held.is_some(),
                stopped
            ));
        }
    }
    report
}

impl Report {
    /// A summary and, if anything failed, the seed and the timeline.
    pub fn render(&self) -> String {
        let mut s = format!(
            "chaos seed {}: {} faults, {} samples, {} hook leftovers checked, {} violations; failoverd's last run: {} takeovers, RSS {} KiB, {} open files\n",
            self.seed,
            self.faults,
            self.samples,
            self.hook_leftovers,
            self.violations.len(),
            self.takeovers,
            self.rss.1,
            self.fds.1
        );
        if let Some(links) = &self.netem {
            let _ = writeln!(
                s,
                "netem on the primary's links: {} packets held, {} sent ahead, {} reordered",
                links.iter().map(|l| l.held).sum::<u64>(),
                links.iter().map(|l| l.ahead).sum::<u64>(),
                links.iter().map(|l| l.out_of_order).sum::<u64>()
            );
        }
        if !self.violations.is_empty() {
            for v in &self.violations {
                let _ = writeln!(s, "VIOLATION {v}");
            }
            let _ = writeln!(s, "timeline (repeat with this seed):");
            for t in &self.timeline {
                let _ = writeln!(s, "  {t}");
            }
        }
        s
    }
}
