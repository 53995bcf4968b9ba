//! The benchmark: ipfailover and keepalived, side by side, on the namespace lab of the tests.
//!
//! Usage: ipfo-bench [--trials N] [--idle SECONDS] [--loss-intervals N] [--smoke]
//!                   [--out DIR] [--only 1s|100ms|10ms]...
//!
//! For each setting (1 s / 3 s, 100 ms / 300 ms, 10 ms / 30 ms) and each daemon it measures,
//! with a probe that sends a UDP datagram to the VIP every millisecond from the client and
//! timestamps the replies (each tagged by the host that answered):
//! - crash takeover: the primary's daemon SIGKILLed and its links cut at once -> the first
//!   reply from the secondary;
//! - failback: the primary back (links up, daemon started) -> the first reply from the primary,
//!   and when the secondary no longer holds the address;
//! - graceful handover: SIGTERM to the primary's daemon -> the first reply from the secondary;
//!
//! then the idle cost (CPU and memory of each daemon), false takeovers under random loss on
//! both of the primary's links, and crash takeovers with a CPU hog on the other core.
//! It prints the tables and writes `<out>/<date>.md` and `<out>/<date>-takeover.svg`.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipfailover_bench::{
    cpu_ns, mono_ns, ms, rss_kib, signal_pid, svg, with_children, Panel, Series, Summary,
};
use ipfailover_e2e::{hostconfig, read, wait_for, Host, Lab};

const ECHO_PORT: &str = "7777";
/// keepalived's virtual address (VRRP moves an address no host owns).
const VRRP_VIP: &str = "198.51.100.100";
/// ipfailover's: the primary's own public address, as with Apple's IPFailover.
const IPFO_VIP: &str = "198.51.100.10";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Ipfailover,
    /// ipfailover moving a service alias (198.51.100.100) while the primary's own address
    /// stays on it.
    IpfailoverAlias,
    Keepalived,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Ipfailover => "ipfailover",
            Daemon::IpfailoverAlias => "ipfailover (service alias)",
            Daemon::Keepalived => "keepalived",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Daemon::Ipfailover => "#1a7f37",
            Daemon::IpfailoverAlias => "#0969da",
            Daemon::Keepalived => "#b35900",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Setting {
    label: &'static str,
    interval: Duration,
    timeout: Duration,
}

const SETTINGS: [Setting; 3] = [
    Setting {
        label: "1s",
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    },
    Setting {
        label: "100ms",
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    },
    Setting {
        label: "10ms",
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(30),
    },
];

fn dur_str(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// One daemon pair on its own lab, with echo responders and the probe running.
struct Bed {
    lab: Lab,
    daemon: Daemon,
    setting: Setting,
    /// Settings for the secondary: the configured timeout, or ipfailover's default.
    explicit_timeout: bool,
    probe_file: PathBuf,
    /// The probe's process in the lab.
    probe: usize,
    primary: Option<usize>,
    secondary: usize,
    generation: u32,
    /// ipfailover's status files. Last, so that it goes after the lab has stopped the daemons.
    state: StateDir,
}

/// Where the status files go: on tmpfs, as under `FAILOVER_STATE_DIR`'s default `/var/run`
/// on a systemd host (where `/run` is tmpfs). The lab's own directory may be on a disk
/// filesystem, where replacing a file by rename makes ext4 write the new one out first, a
/// cost that belongs to the filesystem chosen, not to the daemon. Removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(lab: &Lab, name: &str) -> StateDir {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.join(format!("ipfo-bench-{}-{name}", std::process::id()))
        } else {
            lab.dir.join("state")
        };
        StateDir(dir)
    }

    fn path(&self, host: &str) -> String {
        self.0.join(host).to_string_lossy().into_owned()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Bed {
    fn vip(&self) -> &'static str {
        match self.daemon {
            Daemon::Ipfailover => IPFO_VIP,
            Daemon::IpfailoverAlias | Daemon::Keepalived => VRRP_VIP,
        }
    }

    fn new(daemon: Daemon, setting: Setting, explicit_timeout: bool) -> Result<Bed, String> {
        let name = format!(
            "b{}{}",
            &daemon.name()[..2],
            setting.label.trim_end_matches('s')
        );
        let mut lab = Lab::new(&name);
        lab.spawn(Host::Pri, "echo-pri", "ipfo-echo", &[ECHO_PORT, "P"]);
        lab.spawn(Host::Sec, "echo-sec", "ipfo-echo", &[ECHO_PORT, "S"]);
        let probe_file = lab.dir.join("probe.txt");
        let state = StateDir::new(&lab, &name);
        let mut bed = Bed {
            lab,
            daemon,
            setting,
            explicit_timeout,
            probe_file,
            probe: 0,
            primary: None,
            secondary: 0,
            generation: 0,
            state,
        };
        bed.start_primary();
        let vip = bed.vip();
        if wait_for(Duration::from_secs(15), || {
            bed.lab.holds(Host::Pri, "eth0", vip)
        })
        .is_none()
        {
            return Err(format!(
                "{}: the primary never held {vip}\n{}",
                daemon.name(),
                bed.lab.logs()
            ));
        }
        bed.secondary = bed.start_secondary();
        let ready = match daemon {
            Daemon::Ipfailover | Daemon::IpfailoverAlias => "-> monitoring",
            Daemon::Keepalived => "Entering BACKUP STATE",
        };
        if !bed
            .lab
            .wait_log(bed.secondary, ready, Duration::from_secs(15))
        {
            return Err(format!(
                "{}: the secondary never settled\n{}",
                daemon.name(),
                bed.lab.logs()
            ));
        }
        let target = format!("{vip}:{ECHO_PORT}");
        let file = bed.probe_file.to_string_lossy().into_owned();
        bed.probe = bed
            .lab
            .spawn(Host::Cli, "probe", "ipfo-probe", &[&target, &file]);
        bed.wait_steady()?;
        Ok(bed)
    }

    fn start_primary(&mut self) {
        self.generation += 1;
        let g = self.generation;
        if self.daemon == Daemon::IpfailoverAlias {
            // The service address is the primary's, configured like its own (it stays on a
            // host that crashes and comes back, as configuration does).
            self.lab.ip(
                Host::Pri,
                &["addr", "replace", &format!("{VRRP_VIP}/24"), "dev", "eth0"],
            );
        }
        let idx = match self.daemon {
            Daemon::Ipfailover | Daemon::IpfailoverAlias => {
                let state = self.state.path("pri");
                let conf = self.lab.write(
                    "pri.conf",
                    &hostconfig(&[
                        ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
                        ("FAILOVER_INTERVAL", &dur_str(self.setting.interval)),
                        ("FAILOVER_STATE_DIR", &state),
                    ]),
                );
                let conf = conf.to_string_lossy().into_owned();
                self.lab.spawn(
                    Host::Pri,
                    &format!("heartbeatd-{g}"),
                    "heartbeatd",
                    &["-c", &conf],
                )
            }
            Daemon::Keepalived => {
                self.start_keepalived(Host::Pri, 200, &format!("keepalived-pri-{g}"))
            }
        };
        self.primary = Some(idx);
    }

    fn start_secondary(&mut self) -> usize {
        match self.daemon {
            Daemon::Ipfailover | Daemon::IpfailoverAlias => {
                let state = self.state.path("sec");
                let scripts = self.lab.dir.join("scripts").to_string_lossy().into_owned();
                let timeout = dur_str(self.setting.timeout);
                let pairs = format!("eth0:{}", self.vip());
                let mut lines = vec![
                    ("FAILOVER_PEER_IP", IPFO_VIP),
                    ("FAILOVER_PEER_IP_PAIRS", pairs.as_str()),
                    ("FAILOVER_SCRIPT_DIR", scripts.as_str()),
                    ("FAILOVER_STATE_DIR", state.as_str()),
                ];
                if self.explicit_timeout {
                    lines.push(("FAILOVER_TIMEOUT", timeout.as_str()));
                }
                let conf = self.lab.write("sec.conf", &hostconfig(&lines));
                let conf = conf.to_string_lossy().into_owned();
                self.lab
                    .spawn(Host::Sec, "failoverd", "failoverd", &["-c", &conf])
            }
            Daemon::Keepalived => self.start_keepalived(Host::Sec, 100, "keepalived-sec"),
        }
    }

    /// keepalived as usually configured: both start as BACKUP, the primary with the higher
    /// priority (it preempts), VRRPv3 for sub-second adverts.
    fn start_keepalived(&mut self, host: Host, priority: u8, name: &str) -> usize {
        let advert = self.setting.interval.as_secs_f64();
        let conf = format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version 3\n  script_user root\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
             priority {priority}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {VRRP_VIP}/24 dev eth0\n  }}\n}}\n"
        );
        let path = self.lab.write(&format!("{name}.conf"), &conf);
        let dir = self.lab.dir.clone();
        let pid = dir
            .join(format!("{name}.pid"))
            .to_string_lossy()
            .into_owned();
        let vpid = dir
            .join(format!("{name}-vrrp.pid"))
            .to_string_lossy()
            .into_owned();
        let path = path.to_string_lossy().into_owned();
        self.lab.spawn_cmd(
            host,
            name,
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
        )
    }

    fn pids(&mut self, idx: usize) -> Vec<u32> {
        with_children(self.lab.proc(idx).pid())
    }

    /// The probe's lines after `since`: (time, tag).
    fn probe_after(&self, since: u64) -> Vec<(u64, char)> {
        read(&self.probe_file)
            .lines()
            .filter_map(|l| {
                let (t, tag) = l.split_once(' ')?;
                Some((t.parse().ok()?, tag.chars().next()?))
            })
            .filter(|(t, _)| *t > since)
            .collect()
    }

    /// The first reply from `tag` after `since`, waiting at most `limit`.
    fn first_reply(&self, since: u64, tag: char, limit: Duration) -> Option<Duration> {
        let end = Instant::now() + limit;
        loop {
            if let Some((t, _)) = self.probe_after(since).into_iter().find(|(_, g)| *g == tag) {
                return Some(Duration::from_nanos(t - since));
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The primary holds the address, the secondary does not, and the client is answered by
    /// the primary.
    fn wait_steady(&self) -> Result<(), String> {
        let vip = self.vip();
        let limit = Duration::from_secs(15) + self.setting.timeout * 4;
        let ok = wait_for(limit, || {
            self.lab.holds(Host::Pri, "eth0", vip)
                && !self.lab.holds(Host::Sec, "eth0", vip)
                && self
                    .probe_after(mono_ns().saturating_sub(300_000_000))
                    .last()
                    .is_some_and(|(_, g)| *g == 'P')
        });
        ok.map(|_| ()).ok_or_else(|| {
            format!(
                "{} {}: never steady\n{}",
                self.daemon.name(),
                self.setting.label,
                self.lab.logs()
            )
        })
    }

    fn crash(&mut self) -> Result<Duration, String> {
        self.wait_steady()?;
        // A random point of the heartbeat interval: the last heartbeat before the crash went
        // out between 0 and 1 interval earlier, uniformly, as in a real crash.
        let frac = (mono_ns() ^ (mono_ns() >> 17)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
        let frac = frac as f64 / (1u64 << 53) as f64;
        std::thread::sleep(Duration::from_millis(20) + self.setting.interval.mul_f64(frac));
        let idx = self.primary.ok_or("no primary")?;
        let pids = self.pids(idx);
        let t0 = mono_ns();
        for pid in &pids {
            signal_pid(*pid, libc::SIGKILL);
        }
        self.lab.links(Host::Pri, false);
        let _ = self.lab.proc(idx).wait_exit(Duration::from_secs(5));
        let limit = self.setting.timeout * 3 + Duration::from_secs(5);
        self.first_reply(t0, 'S', limit).ok_or_else(|| {
            format!(
                "{} {}: no takeover after a crash\n{}",
                self.daemon.name(),
                self.setting.label,
                self.lab.logs()
            )
        })
    }

    /// The primary returns; (first reply from it, secondary released).
    fn failback(&mut self) -> Result<(Duration, Duration), String> {
        let t0 = mono_ns();
        self.lab.links(Host::Pri, true);
        self.start_primary();
        let limit = self.setting.timeout * 6 + Duration::from_secs(8);
        let first = self
            .first_reply(t0, 'P', limit)
            .ok_or_else(|| format!("{}: no failback\n{}", self.daemon.name(), self.lab.logs()))?;
        let vip = self.vip();
        let end = Instant::now() + limit;
        while self.lab.holds(Host::Sec, "eth0", vip) {
            if Instant::now() >= end {
                return Err(format!(
                    "{}: the secondary never released",
                    self.daemon.name()
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let released = Duration::from_nanos(mono_ns() - t0);
        self.wait_steady()?;
        Ok((first, released))
    }

    fn graceful(&mut self) -> Result<Duration, String> {
        self.wait_steady()?;
        let idx = self.primary.ok_or("no primary")?;
        let t0 = mono_ns();
        self.lab.proc(idx).signal(libc::SIGTERM);
        let limit = self.setting.timeout * 3 + Duration::from_secs(5);
        let took = self.first_reply(t0, 'S', limit).ok_or_else(|| {
            format!(
                "{}: no takeover after SIGTERM\n{}",
                self.daemon.name(),
                self.lab.logs()
            )
        })?;
        let _ = self.lab.proc(idx).wait_exit(Duration::from_secs(10));
        // Back to steady: the primary's daemon again (the host never went down).
        self.start_primary();
        self.wait_steady()?;
        Ok(took)
    }

    /// The primary's daemon alone is killed (SIGKILL; the host, its links and its addresses
    /// stay): whether the secondary took the address over, and for how long both hosts held
    /// it, over a window of three timeouts and a second. Then the daemon is started again.
    fn daemon_killed(&mut self) -> Result<(Option<Duration>, Duration, Duration), String> {
        self.wait_steady()?;
        let idx = self.primary.ok_or("no primary")?;
        let pids = self.pids(idx);
        let vip = self.vip();
        let t0 = Instant::now();
        for pid in &pids {
            signal_pid(*pid, libc::SIGKILL);
        }
        let _ = self.lab.proc(idx).wait_exit(Duration::from_secs(5));
        let window = self.setting.timeout * 3 + Duration::from_secs(1);
        let mut took = None;
        let mut both = Duration::ZERO;
        let mut last = Instant::now();
        while t0.elapsed() < window {
            let sec = self.lab.holds(Host::Sec, "eth0", vip);
            let pri = self.lab.holds(Host::Pri, "eth0", vip);
            let now = Instant::now();
            if sec && took.is_none() {
                took = Some(now - t0);
            }
            if sec && pri {
                both += now - last;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(2));
        }
        // Back to steady: the daemon again on the live host.
        if self.daemon == Daemon::Keepalived {
            // A keepalived killed with -9 leaves its address behind; its restart cleans up.
            let _ = self.lab.ip(
                Host::Pri,
                &["addr", "del", &format!("{vip}/24"), "dev", "eth0"],
            );
        }
        self.start_primary();
        self.wait_steady()?;
        Ok((took, both, window))
    }

    /// CPU (% of one core) and RSS (KiB) of the primary's and the secondary's daemon while
    /// idle for `d`. The probe is paused meanwhile: its thousand packets a second through the
    /// primary's stack are not the daemons' work, and they would cool the daemons' caches.
    fn cost(&mut self, d: Duration) -> Result<[(f64, u64); 2], String> {
        self.wait_steady()?;
        self.lab.proc(self.probe).signal(libc::SIGSTOP);
        let out = self.idle_cost(d);
        self.lab.proc(self.probe).signal(libc::SIGCONT);
        out
    }

    fn idle_cost(&mut self, d: Duration) -> Result<[(f64, u64); 2], String> {
        // Let the last probe replies and their wake-ups pass.
        std::thread::sleep(Duration::from_millis(200));
        let pri = self.primary.ok_or("no primary")?;
        let sides = [self.pids(pri), self.pids(self.secondary)];
        let before: Vec<u64> = sides
            .iter()
            .map(|pids| pids.iter().filter_map(|p| cpu_ns(*p)).sum())
            .collect();
        let t0 = mono_ns();
        std::thread::sleep(d);
        let wall = (mono_ns() - t0) as f64;
        let mut out = [(0.0, 0); 2];
        for (i, pids) in sides.iter().enumerate() {
            let after: u64 = pids.iter().filter_map(|p| cpu_ns(*p)).sum();
            let rss: u64 = pids.iter().filter_map(|p| rss_kib(*p)).sum();
            out[i] = ((after - before[i]) as f64 / wall * 100.0, rss);
        }
        Ok(out)
    }

    /// The CPU (% of one core) of `ipfo-floor` in heartbeatd's place for `d`: the cost of the
    /// sending alone. heartbeatd comes back afterwards. A short takeover while one replaces
    /// the other is possible at 10 ms and harmless: the floor's heartbeats bring it back.
    fn floor_cost(&mut self, d: Duration) -> Result<f64, String> {
        self.wait_steady()?;
        let pri = self.primary.take().ok_or("no primary")?;
        self.lab.proc(self.probe).signal(libc::SIGSTOP);
        let interval = self.setting.interval.as_millis().to_string();
        let floor = self.lab.spawn(
            Host::Pri,
            &format!("floor-{}", self.generation),
            "ipfo-floor",
            &[&interval, "198.51.100.255", "203.0.113.255"],
        );
        self.lab.proc(pri).signal(libc::SIGKILL);
        let _ = self.lab.proc(pri).wait_exit(Duration::from_secs(5));
        // Any takeover over and released, then the floor alone.
        std::thread::sleep(Duration::from_millis(500) + self.setting.timeout * 4);
        let pid = self.lab.proc(floor).pid();
        let before = cpu_ns(pid);
        let t0 = mono_ns();
        std::thread::sleep(d);
        let wall = (mono_ns() - t0) as f64;
        let after = cpu_ns(pid);
        self.lab.proc(floor).signal(libc::SIGKILL);
        let _ = self.lab.proc(floor).wait_exit(Duration::from_secs(5));
        self.lab.proc(self.probe).signal(libc::SIGCONT);
        self.start_primary();
        self.wait_steady()?;
        match (before, after) {
            (Some(b), Some(a)) => Ok((a - b) as f64 / wall * 100.0),
            _ => Err(format!("ipfo-floor did not run\n{}", self.lab.logs())),
        }
    }

    /// Takeovers by the secondary while the primary lives, with `loss` % random loss on both of
    /// its links, over `intervals` heartbeat intervals.
    fn false_takeovers(&mut self, loss: u8, intervals: u64) -> Result<u64, String> {
        self.wait_steady()?;
        let count = |bed: &mut Bed| -> u64 {
            match bed.daemon {
                Daemon::Ipfailover | Daemon::IpfailoverAlias => {
                    bed.lab.status(Host::Sec, "failoverd")["counters"]["takeovers"]
                        .as_u64()
                        .unwrap_or(0)
                }
                Daemon::Keepalived => {
                    let log = bed.lab.proc(bed.secondary).log_text();
                    log.matches("Entering MASTER STATE").count() as u64
                }
            }
        };
        // Let the status file catch up first.
        std::thread::sleep(Duration::from_millis(1200));
        let before = count(self);
        for ifname in ["eth0", "eth1"] {
            self.lab.loss(Host::Pri, ifname, loss);
        }
        std::thread::sleep(self.setting.interval * u32::try_from(intervals).unwrap_or(u32::MAX));
        for ifname in ["eth0", "eth1"] {
            self.lab.loss(Host::Pri, ifname, 0);
        }
        std::thread::sleep(Duration::from_millis(1200) + self.setting.timeout * 4);
        Ok(count(self) - before)
    }
}

struct Opts {
    trials: usize,
    idle: Duration,
    loss_intervals: u64,
    hog_trials: usize,
    out: PathBuf,
    only: Vec<String>,
    smoke: bool,
}

fn parse() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let smoke = args.iter().any(|a| a == "--smoke");
    let only: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].clone())
        .collect();
    Opts {
        trials: get("--trials")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 2 } else { 20 }),
        idle: Duration::from_secs(
            get("--idle")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if smoke { 2 } else { 60 }),
        ),
        loss_intervals: get("--loss-intervals")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 300 } else { 6000 }),
        hog_trials: if smoke { 2 } else { 10 },
        out: get("--out").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(if smoke {
                "target/bench-smoke"
            } else {
                "bench/results"
            })
        }),
        only: if smoke && only.is_empty() {
            vec!["100ms".into(), "10ms".into()]
        } else {
            only
        },
        smoke,
    }
}

#[derive(Default)]
struct Results {
    crash: Vec<Duration>,
    graceful: Vec<Duration>,
    failback_first: Vec<Duration>,
    failback_released: Vec<Duration>,
    cost: Option<[(f64, u64); 2]>,
    /// The primary's daemon alone killed: takeover (if any), time with two holders, window.
    killed: Vec<(Option<Duration>, Duration, Duration)>,
    /// ipfo-floor's CPU in heartbeatd's place (ipfailover only).
    floor: Option<f64>,
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let t = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|_| "not found".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem} memory; kernel {}",
        command_line("uname", &["-r"])
    )
}

fn main() {
    let opts = parse();
    let started = Instant::now();
    // Today's date in UTC, as coreutils' date prints it (the results are named by it).
    let date = command_line("date", &["-u", "+%F"]);
    let mut report = String::new();
    let settings: Vec<Setting> = SETTINGS
        .iter()
        .copied()
        .filter(|s| opts.only.is_empty() || opts.only.iter().any(|o| o == s.label))
        .collect();
    let mut results: Vec<(Setting, Daemon, Results)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    for setting in &settings {
        for daemon in [
            Daemon::Ipfailover,
            Daemon::IpfailoverAlias,
            Daemon::Keepalived,
        ] {
            eprintln!(
                "== {} at {} / {}",
                daemon.name(),
                dur_str(setting.interval),
                dur_str(setting.timeout)
            );
            let mut r = Results::default();
            match Bed::new(daemon, *setting, true) {
                Ok(mut bed) => {
                    for i in 0..opts.trials {
                        let step = (|| -> Result<(), String> {
                            let c = bed.crash()?;
                            let (first, released) = bed.failback()?;
                            let g = bed.graceful()?;
                            eprintln!(
                                "   trial {:>2}: crash {} ms, failback {} ms (secondary released {} ms), graceful {} ms",
                                i + 1,
                                ms(c.as_secs_f64() * 1e3),
                                ms(first.as_secs_f64() * 1e3),
                                ms(released.as_secs_f64() * 1e3),
                                ms(g.as_secs_f64() * 1e3)
                            );
                            r.crash.push(c);
                            r.failback_first.push(first);
                            r.failback_released.push(released);
                            r.graceful.push(g);
                            Ok(())
                        })();
                        if let Err(e) = step {
                            failures.push(e.lines().next().unwrap_or("").to_string());
                            eprintln!("   trial {} failed: {e}", i + 1);
                            break;
                        }
                    }
                    // kill -9 of the primary's daemon alone, a few times.
                    for _ in 0..opts.trials.div_ceil(4) {
                        match bed.daemon_killed() {
                            Ok(k) => {
                                eprintln!(
                                    "   daemon alone killed: takeover {:?}, two holders {} ms",
                                    k.0.map(|d| d.as_millis()),
                                    k.1.as_millis()
                                );
                                r.killed.push(k);
                            }
                            Err(e) => {
                                failures.push(e.lines().next().unwrap_or("").to_string());
                                break;
                            }
                        }
                    }
                    // Cost and floor once per kind of daemon: the alias costs the same.
                    if daemon != Daemon::IpfailoverAlias {
                        match bed.cost(opts.idle) {
                            Ok(c) => r.cost = Some(c),
                            Err(e) => failures.push(e.lines().next().unwrap_or("").to_string()),
                        }
                    }
                    if daemon == Daemon::Ipfailover {
                        match bed.floor_cost(opts.idle) {
                            Ok(c) => r.floor = Some(c),
                            Err(e) => failures.push(e.lines().next().unwrap_or("").to_string()),
                        }
                    }
                }
                Err(e) => {
                    eprintln!("   {e}");
                    failures.push(e.lines().next().unwrap_or("").to_string());
                }
            }
            results.push((*setting, daemon, r));
        }
    }

    // False takeovers under loss, with each daemon's default timing at 10 ms (ipfailover:
    // FAILOVER_TIMEOUT unset; keepalived: advert_int 0.01).
    let mut losses: Vec<(u8, Daemon, Result<u64, String>)> = Vec::new();
    let loss_setting = SETTINGS[2];
    for daemon in [Daemon::Ipfailover, Daemon::Keepalived] {
        eprintln!("== false takeovers: {} under loss", daemon.name());
        match Bed::new(daemon, loss_setting, false) {
            Ok(mut bed) => {
                for loss in [5u8, 10, 20] {
                    let n = bed.false_takeovers(loss, opts.loss_intervals);
                    eprintln!("   {loss} % loss: {n:?}");
                    losses.push((loss, daemon, n));
                }
            }
            Err(e) => failures.push(e.lines().next().unwrap_or("").to_string()),
        }
    }

    // Crash takeovers with the other core busy.
    let hog_setting = SETTINGS[1];
    let mut hogged: Vec<(Daemon, Vec<Duration>)> = Vec::new();
    for daemon in [Daemon::Ipfailover, Daemon::Keepalived] {
        eprintln!("== crash takeover with a CPU hog: {}", daemon.name());
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let hog = std::thread::spawn(move || {
            let mut x = 0u64;
            while !s2.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                std::hint::black_box(x);
            }
        });
        let mut v = Vec::new();
        match Bed::new(daemon, hog_setting, true) {
            Ok(mut bed) => {
                for _ in 0..opts.hog_trials {
                    match bed.crash().and_then(|c| bed.failback().map(|_| c)) {
                        Ok(c) => v.push(c),
                        Err(e) => {
                            failures.push(e.lines().next().unwrap_or("").to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) => failures.push(e.lines().next().unwrap_or("").to_string()),
        }
        stop.store(true, Ordering::Relaxed);
        let _ = hog.join();
        hogged.push((daemon, v));
    }

    // The report.
    let keepalived_version = command_line("keepalived", &["--version"]);
    let _ = writeln!(report, "# ipfailover vs keepalived: {date}\n");
    let _ = writeln!(
        report,
        "Made by `bench/run{}` in {:.0} s.\n",
        if opts.smoke { " --smoke" } else { "" },
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(report, "- Machine: {}", machine());
    let _ = writeln!(
        report,
        "- ipfailover {}; {keepalived_version}; {}",
        env!("CARGO_PKG_VERSION"),
        command_line("rustc", &["--version"])
    );
    let _ = writeln!(
        report,
        "- Topology: the test lab (primary, secondary, client in network namespaces, public and private bridges). \
         ipfailover: heartbeats on both links, `FAILOVER_TIMEOUT` = 3 intervals, release after 3 heartbeats; \
         the VIP is the primary's own address (198.51.100.10); \
         ipfailover (service alias): the same pair moving {VRRP_VIP}, an alias kept on the primary next to its own address. keepalived: VRRPv3 on the public link, both `state BACKUP`, \
         priorities 200 (primary) and 100 (secondary), preemption on (its defaults); VIP {VRRP_VIP}."
    );
    let _ = writeln!(
        report,
        "- Probe: a UDP datagram to the VIP every 1 ms from the client; each reply carries a tag \
         naming the host that answered; timestamps on CLOCK_MONOTONIC. {} trials per cell; \
         min / **median** / max in ms.\n",
        opts.trials
    );
    let table = |title: &str,
                 pick: &dyn Fn(&Results) -> &Vec<Duration>,
                 note: &dyn Fn(Setting, &Summary) -> String| {
        let mut t = format!("## {title}\n\n| setting | ipfailover | ipfailover (service alias) | keepalived | ipfailover: |\n|---|---|---|---|---|\n");
        for s in &settings {
            let cell = |d: Daemon| {
                results
                    .iter()
                    .find(|(st, dd, _)| st.label == s.label && *dd == d)
                    .and_then(|(_, _, r)| Summary::of(pick(r)))
            };
            let (a, al, b) = (
                cell(Daemon::Ipfailover),
                cell(Daemon::IpfailoverAlias),
                cell(Daemon::Keepalived),
            );
            let _ = writeln!(
                t,
                "| {} / {} | {} | {} | {} | {} |",
                dur_str(s.interval),
                dur_str(s.timeout),
                a.map_or("—".into(), |x| x.cell()),
                al.map_or("—".into(), |x| x.cell()),
                b.map_or("—".into(), |x| x.cell()),
                a.map_or(String::new(), |x| note(*s, &x))
            );
        }
        t
    };
    report.push_str(&table(
        "Crash takeover (SIGKILL and links down -> first reply from the secondary)",
        &|r| &r.crash,
        &|s, x| {
            format!(
                "median {} ms {} the timeout",
                ms((x.median - s.timeout.as_secs_f64() * 1e3).abs()),
                if x.median <= s.timeout.as_secs_f64() * 1e3 {
                    "under"
                } else {
                    "over"
                }
            )
        },
    ));
    report.push_str(
        "\nThe last heartbeat before a crash was sent between 0 and 1 interval earlier, so a daemon \
         that takes over exactly at its timeout shows a median about half an interval under it.\n\n",
    );
    report.push_str(&table(
        "Graceful handover (SIGTERM -> first reply from the secondary)",
        &|r| &r.graceful,
        &|_, x| format!("median {} ms", ms(x.median)),
    ));
    report.push('\n');
    report.push_str(&table(
        "Failback (the primary returns -> first reply from the primary)",
        &|r| &r.failback_first,
        &|s, x| {
            format!(
                "median {:.1} intervals",
                x.median / (s.interval.as_secs_f64() * 1e3)
            )
        },
    ));
    report.push_str(
        "\nipfailover's primary announces itself as soon as heartbeatd starts, so clients come back \
         at once; the secondary gives the address up after 3 heartbeats:\n\n",
    );
    report.push_str(&table(
        "Failback: the secondary no longer holds the address",
        &|r| &r.failback_released,
        &|s, x| {
            format!(
                "median {:.1} intervals",
                x.median / (s.interval.as_secs_f64() * 1e3)
            )
        },
    ));
    let _ = writeln!(
        report,
        "\n## kill -9 of the primary's daemon alone (its host, links and addresses stay)\n\n\
         The secondary must not take the address over: the primary still answers for it. Each \
         cell: how many of the trials took over, and the time with two hosts holding the \
         address, summed over the trials (each watched for three timeouts and a second).\n\n\
         | setting | ipfailover | ipfailover (service alias) | keepalived |\n|---|---|---|---|"
    );
    for s in &settings {
        let k = |d: Daemon| {
            results
                .iter()
                .find(|(st, dd, _)| st.label == s.label && *dd == d)
                .map(|(_, _, r)| {
                    if r.killed.is_empty() {
                        return "—".to_string();
                    }
                    let took = r.killed.iter().filter(|k| k.0.is_some()).count();
                    let both: Duration = r.killed.iter().map(|k| k.1).sum();
                    format!(
                        "{took} of {} taken over; two holders {} ms",
                        r.killed.len(),
                        both.as_millis()
                    )
                })
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            report,
            "| {} / {} | {} | {} | {} |",
            dur_str(s.interval),
            dur_str(s.timeout),
            k(Daemon::Ipfailover),
            k(Daemon::IpfailoverAlias),
            k(Daemon::Keepalived)
        );
    }
    let _ = writeln!(
        report,
        "\n## Cost, idle for {} s (CPU in % of one core; resident memory)\n\n| setting | ipfailover heartbeatd | floor (ipfo-floor) | ipfailover failoverd | keepalived primary | keepalived secondary |\n|---|---|---|---|---|---|",
        opts.idle.as_secs()
    );
    for s in &settings {
        let c = |d: Daemon| {
            results
                .iter()
                .find(|(st, dd, _)| st.label == s.label && *dd == d)
                .and_then(|(_, _, r)| r.cost)
        };
        let f = |x: Option<[(f64, u64); 2]>, i: usize| {
            x.map_or("—".into(), |v| {
                format!("{:.4} % / {:.1} MB", v[i].0, v[i].1 as f64 / 1024.0)
            })
        };
        let floor = results
            .iter()
            .find(|(st, dd, _)| st.label == s.label && *dd == Daemon::Ipfailover)
            .and_then(|(_, _, r)| r.floor)
            .map_or("—".into(), |v| format!("{v:.4} %"));
        let _ = writeln!(
            report,
            "| {} | {} | {floor} | {} | {} | {} |",
            dur_str(s.interval),
            f(c(Daemon::Ipfailover), 0),
            f(c(Daemon::Ipfailover), 1),
            f(c(Daemon::Keepalived), 0),
            f(c(Daemon::Keepalived), 1)
        );
    }
    let _ = writeln!(
        report,
        "\nkeepalived's figures are its parent and VRRP child together. The probe is paused while they are measured. \
         ipfailover's status files are on tmpfs (see `StateDir`). The floor is `ipfo-floor` measured in heartbeatd's place: \
         a loop that sends the same two heartbeats per interval through the same encoder and `sendmmsg`, and does nothing else; \
         what heartbeatd costs above it is heartbeatd's own, the rest is the kernel sending two datagrams into the lab's veths and bridges.\n\n## False takeovers under random loss on both of the primary's links\n\n{} intervals of 10 ms per cell, each daemon with its default timing (ipfailover: `FAILOVER_TIMEOUT` unset, i.e. 3¼ intervals; keepalived: `advert_int 0.01`).\n\n| loss | ipfailover | keepalived |\n|---|---|---|",
        opts.loss_intervals
    );
    for loss in [5u8, 10, 20] {
        let cell = |d: Daemon| {
            losses
                .iter()
                .find(|(l, dd, _)| *l == loss && *dd == d)
                .map_or("—".to_string(), |(_, _, r)| match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("error: {}", e.lines().next().unwrap_or("")),
                })
        };
        let _ = writeln!(
            report,
            "| {loss} % | {} | {} |",
            cell(Daemon::Ipfailover),
            cell(Daemon::Keepalived)
        );
    }
    let _ = writeln!(
        report,
        "\n## Crash takeover with the other core busy (100 ms / 300 ms, a CPU hog spinning)\n\n| | with the hog | without (above) |\n|---|---|---|"
    );
    for (d, v) in &hogged {
        let without = results
            .iter()
            .find(|(st, dd, _)| st.label == "100ms" && dd == d)
            .and_then(|(_, _, r)| Summary::of(&r.crash));
        let _ = writeln!(
            report,
            "| {} | {} | {} |",
            d.name(),
            Summary::of(v).map_or("—".into(), |x| x.cell()),
            without.map_or("—".into(), |x| x.cell())
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(report, "\n## Failures\n");
        for f in &failures {
            let _ = writeln!(report, "- {f}");
        }
    }

    // The plot.
    let panels: Vec<Panel> = settings
        .iter()
        .map(|s| Panel {
            title: format!(
                "{} interval, {} timeout",
                dur_str(s.interval),
                dur_str(s.timeout)
            ),
            reference: Some((s.timeout.as_secs_f64() * 1e3, "timeout".into())),
            series: [Daemon::Ipfailover, Daemon::Keepalived]
                .iter()
                .map(|d| Series {
                    label: d.name().into(),
                    colour: d.colour().into(),
                    values: results
                        .iter()
                        .find(|(st, dd, _)| st.label == s.label && dd == d)
                        .map(|(_, _, r)| r.crash.iter().map(|x| x.as_secs_f64() * 1e3).collect())
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    let plot = svg(
        "Crash takeover: SIGKILL and links down -> first reply from the secondary",
        &panels,
    );
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        eprintln!("cannot create {}: {e}", opts.out.display());
    }
    let svg_name = format!("{date}-takeover.svg");
    let _ = writeln!(report, "\n![crash takeover distributions]({svg_name})");
    let md = opts.out.join(format!("{date}.md"));
    let _ = std::fs::write(opts.out.join(&svg_name), plot);
    match std::fs::write(&md, &report) {
        Ok(()) => eprintln!(
            "wrote {} and {}",
            md.display(),
            opts.out.join(&svg_name).display()
        ),
        Err(e) => eprintln!("cannot write {}: {e}", md.display()),
    }
    println!("{report}");
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
