//! The benchmark: ipfailover and keepalived, side by side, on the namespace lab of the tests.
//!
//! Usage: ipfo-bench [--trials N] [--idle SECONDS] [--loss-intervals N] [--smoke]
//!                   [--out DIR] [--only 1s|100ms|10ms]... [--baseline FILE]
//!
//! For each setting (1 s / 3 s, 100 ms / 300 ms, 10 ms / 30 ms) and each daemon (ipfailover
//! moving the primary's own address, ipfailover moving a service alias that heartbeatd
//! manages, keepalived) it measures, with a probe that sends a UDP datagram to the VIP every
//! millisecond from the client and timestamps the replies (each tagged by the host that
//! answered), and a sampler that looks every 2 ms at whether each host holds the VIP on an
//! interface whose link is up:
//! - crash takeover: the primary's daemon SIGKILLed and its links cut at once -> the first
//!   reply from the secondary;
//! - failback: the primary's host back (rebooted: what its daemon had added is gone; links
//!   up, then its daemon) -> the first reply from the primary, when the secondary no longer
//!   holds the address, and the time two hosts held it and nobody did;
//! - a planned shutdown: SIGTERM to the primary's daemon while its system is `stopping`
//!   -> the first reply from the secondary;
//! - a restart of the primary's daemon on its live host, and a stop of it alone: two
//!   holders, nobody, and (for the stop) who holds the address at the end;
//! - kill -9 of the primary's daemon alone;
//!
//! then the idle cost (CPU and memory of each daemon), false takeovers under random loss on
//! both of the primary's links, and crash takeovers with a CPU hog on the other core; and the
//! crash medians against the newest earlier results file (or `--baseline FILE`).
//! It prints the tables and writes `<out>/<date>.md` and `<out>/<date>-takeover.svg`.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use ipfailover::settings::DEFAULT_PORT;
use ipfailover_bench::{
    cpu_ns, crash_medians, mono_ns, ms, rss_kib, signal_pid, svg, with_children, HeartbeatWatch,
    Panel, Series, Summary,
};
use ipfailover_e2e::sampler::{Sampler, Timeline};
use ipfailover_e2e::{hostconfig, read, wait_for, Host, Lab};

const ECHO_PORT: &str = "7777";
/// keepalived's virtual address (VRRP moves an address no host owns).
const VRRP_VIP: &str = "198.51.100.100";
/// ipfailover's: the primary's own public address, as with Apple's IPFailover.
const IPFO_VIP: &str = "198.51.100.10";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Ipfailover,
    /// ipfailover moving a service alias (198.51.100.100, heartbeatd's `FAILOVER_IP_PAIRS`)
    /// while the primary's own address stays on it.
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

/// A `systemctl` for the primary whose `is-system-running` prints a file the bench writes
/// (`running`; `stopping` during an emulated shutdown): (that file, a PATH with it first).
fn fake_systemctl(lab: &Lab) -> Result<(PathBuf, String), String> {
    let dir = lab.dir.join("system");
    let state = dir.join("state");
    let script = dir.join("systemctl");
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&state, "running\n"))
        .and_then(|()| {
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\n[ \"$1\" = is-system-running ] && exec cat '{}'\n",
                    state.display()
                ),
            )
        })
        .and_then(|()| std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)));
    made.map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    Ok((state, path))
}

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
    /// How many times failoverd was started.
    sec_generation: u32,
    /// What the primary's `systemctl is-system-running` prints (heartbeatd asks it at SIGTERM
    /// whether the host is going down): `running`, or `stopping` during an emulated shutdown.
    system_state: PathBuf,
    /// A PATH whose first directory holds that `systemctl`.
    system_path: String,
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

/// What the sampler saw over one scenario: how long two hosts answered for the address at
/// once, and how long nobody did.
#[derive(Debug, Clone, Copy)]
struct Holders {
    both: Duration,
    nobody: Duration,
}

/// Who holds the address at the end of a stop's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Primary,
    Secondary,
    Both,
    Nobody,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Primary => "the primary",
            End::Secondary => "the secondary",
            End::Both => "both",
            End::Nobody => "nobody",
        }
    }
}

/// A failback, measured: the probe's figures and the sampler's.
#[derive(Debug, Clone, Copy)]
struct Failback {
    /// The primary back -> its first reply to the client.
    first: Duration,
    /// The primary back -> the secondary no longer holds the address.
    released: Duration,
    holders: Holders,
    /// Of the two holders' time, what came after the primary's first heartbeat (ipfailover:
    /// what the handover itself costs, heartbeatd's start left out).
    both_after_heartbeat: Option<Duration>,
}

/// The sampler (both hosts, every 2 ms) and, for ipfailover, the primary's heartbeats as the
/// client hears them, from `start` on.
struct Watch {
    sampler: Sampler,
    heartbeats: Option<HeartbeatWatch>,
    start: Instant,
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
        let (system_state, system_path) = fake_systemctl(&lab)?;
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
            sec_generation: 0,
            system_state,
            system_path,
            state,
        };
        // The primary first, as in the tests: heartbeatd adds a service address that nobody
        // answers for after its wait for failoverd and a probe.
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
        let idx = match self.daemon {
            Daemon::Ipfailover | Daemon::IpfailoverAlias => {
                let state = self.state.path("pri");
                let alias = format!("eth0:{VRRP_VIP}/24");
                let mut lines = vec![
                    ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
                    ("FAILOVER_STATE_DIR", state.as_str()),
                ];
                let interval = dur_str(self.setting.interval);
                lines.push(("FAILOVER_INTERVAL", interval.as_str()));
                if self.daemon == Daemon::IpfailoverAlias {
                    // heartbeatd's own service address: it adds it by agreement with
                    // failoverd and removes it before its goodbye (docs/handover.md).
                    lines.push(("FAILOVER_IP_PAIRS", alias.as_str()));
                }
                let conf = self.lab.write("pri.conf", &hostconfig(&lines));
                let conf = conf.to_string_lossy().into_owned();
                let path = self.system_path.clone();
                self.lab.spawn_env(
                    Host::Pri,
                    &format!("heartbeatd-{g}"),
                    "heartbeatd",
                    &["-c", &conf],
                    &[("PATH", path)],
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
                self.sec_generation += 1;
                let name = format!("failoverd-{}", self.sec_generation);
                self.lab
                    .spawn(Host::Sec, &name, "failoverd", &["-c", &conf])
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

    /// Sets what the primary's `systemctl is-system-running` says.
    fn set_system(&self, state: &str) -> Result<(), String> {
        std::fs::write(&self.system_state, format!("{state}\n"))
            .map_err(|e| format!("{}: {e}", self.system_state.display()))
    }

    /// Starts watching: the sampler on both hosts, and for ipfailover the primary's
    /// heartbeats as the client hears them.
    fn watch(&self) -> Result<Watch, String> {
        let heartbeats = match self.daemon {
            Daemon::Ipfailover | Daemon::IpfailoverAlias => Some(HeartbeatWatch::start(
                &self.lab.ns(Host::Cli),
                DEFAULT_PORT,
                IpAddr::from([198, 51, 100, 10]),
            )?),
            Daemon::Keepalived => None,
        };
        let sampler = self.lab.sampler(&[self.vip()]);
        Ok(Watch {
            sampler,
            heartbeats,
            start: Instant::now(),
        })
    }

    /// Ends a watch once the end state has been seen for a moment: two holders and nobody
    /// from its start to the last sample in which someone held the address (every scenario
    /// ends with a holder), and the timeline.
    fn holders(
        &self,
        w: Watch,
        label: &str,
    ) -> (Holders, Timeline, Instant, Option<HeartbeatWatch>) {
        std::thread::sleep(Duration::from_millis(30));
        let tl = w.sampler.finish();
        let vip = self.vip();
        let to = [1usize, 2]
            .iter()
            .filter_map(|m| tl.last_held(*m, vip))
            .max()
            .unwrap_or(w.start);
        let h = Holders {
            both: tl.two_holders_for(vip, w.start, to),
            nobody: tl.no_holder_for(vip, w.start, to),
        };
        if h.both > Duration::ZERO && self.daemon == Daemon::IpfailoverAlias {
            self.report_overlap(&tl, label);
        }
        (h, tl, to, w.heartbeats)
    }

    /// Two holders of a service alias is what the handover protocol is there to prevent:
    /// the timeline and the end of each daemon's log go to stderr for a look.
    fn report_overlap(&self, tl: &Timeline, label: &str) {
        eprintln!(
            "   !! {} {}: two holders of {} at {label} (node 1 = primary, 2 = secondary):\n{}",
            self.daemon.name(),
            self.setting.label,
            self.vip(),
            tl.render()
        );
        for line in self
            .lab
            .logs()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            eprintln!("   | {line}");
        }
    }

    /// Makes the next return of the primary a first one for the service alias. failoverd
    /// gives a service address back after a hold-off that grows with each return of the
    /// primary within 60 s (a flapping primary; docs/handover.md), and the bench's trials
    /// follow each other within seconds: it would measure the hold-off, not the handover, and
    /// wait up to a minute per trial. So, while the primary holds everything, failoverd is
    /// restarted: it remembers no return, as after returns far apart.
    fn first_return(&mut self) -> Result<(), String> {
        if self.daemon != Daemon::IpfailoverAlias {
            return Ok(());
        }
        self.wait_steady()?;
        let idx = self.secondary;
        self.lab.proc(idx).signal(libc::SIGTERM);
        if self
            .lab
            .proc(idx)
            .wait_exit(Duration::from_secs(10))
            .is_none()
        {
            return Err(format!(
                "failoverd did not exit on SIGTERM\n{}",
                self.lab.logs()
            ));
        }
        self.secondary = self.start_secondary();
        if !self
            .lab
            .wait_log(self.secondary, "-> monitoring", Duration::from_secs(15))
        {
            return Err(format!(
                "the restarted failoverd never settled\n{}",
                self.lab.logs()
            ));
        }
        self.wait_steady()
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

    /// The primary's host is down (links down, daemon gone): its reboot clears what its
    /// daemon had added, the service alias or keepalived's VIP (the own address is the OS's
    /// configuration and comes back with the host).
    fn reboot(&self) {
        if self.daemon != Daemon::Ipfailover && self.lab.holds(Host::Pri, "eth0", VRRP_VIP) {
            self.lab.ip(
                Host::Pri,
                &["addr", "del", &format!("{VRRP_VIP}/24"), "dev", "eth0"],
            );
        }
    }

    /// The primary's host returns after going down (a crash or a shutdown): it reboots, its
    /// links come up, then its daemon starts (as after `network-online.target`).
    fn failback(&mut self) -> Result<Failback, String> {
        self.reboot();
        let w = self.watch()?;
        let t0 = mono_ns();
        let back = Instant::now();
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
        let (holders, tl, to, heartbeats) = self.holders(w, "failback");
        let both_after_heartbeat = heartbeats
            .and_then(|h| h.first_after(back))
            .map(|hb| tl.two_holders_for(vip, hb, to));
        Ok(Failback {
            first,
            released,
            holders,
            both_after_heartbeat,
        })
    }

    /// A planned shutdown of the primary's host: SIGTERM to its daemon while the system is
    /// `stopping`, then its links go down (the end of the shutdown): the first reply from the
    /// secondary. The host then comes back (a failback, not counted here).
    fn shutdown(&mut self) -> Result<Duration, String> {
        self.wait_steady()?;
        let idx = self.primary.ok_or("no primary")?;
        self.set_system("stopping")?;
        let t0 = mono_ns();
        self.lab.proc(idx).signal(libc::SIGTERM);
        let limit = self.setting.timeout * 3 + Duration::from_secs(5);
        let took = self.first_reply(t0, 'S', limit).ok_or_else(|| {
            format!(
                "{}: no takeover after SIGTERM at a shutdown\n{}",
                self.daemon.name(),
                self.lab.logs()
            )
        });
        let _ = self.lab.proc(idx).wait_exit(Duration::from_secs(10));
        self.set_system("running")?;
        self.lab.links(Host::Pri, false);
        let took = took?;
        self.failback()?;
        Ok(took)
    }

    /// The primary's daemon is restarted on its live host (`systemctl restart`: SIGTERM,
    /// its exit, a start): two holders and nobody until the primary holds the address again.
    fn restart(&mut self) -> Result<Holders, String> {
        self.wait_steady()?;
        let idx = self.primary.ok_or("no primary")?;
        let w = self.watch()?;
        self.lab.proc(idx).signal(libc::SIGTERM);
        if self
            .lab
            .proc(idx)
            .wait_exit(Duration::from_secs(10))
            .is_none()
        {
            return Err(format!(
                "{}: the primary's daemon did not exit on SIGTERM\n{}",
                self.daemon.name(),
                self.lab.logs()
            ));
        }
        self.start_primary();
        self.wait_steady()?;
        Ok(self.holders(w, "restart").0)
    }

    /// The primary's daemon alone is stopped (`systemctl stop`: SIGTERM, the host stays up),
    /// watched for three timeouts and a second: two holders, nobody, and who holds the
    /// address at the end. Then the daemon is started again.
    fn stop(&mut self) -> Result<(Holders, End), String> {
        self.wait_steady()?;
        let idx = self.primary.ok_or("no primary")?;
        let vip = self.vip();
        let w = self.watch()?;
        self.lab.proc(idx).signal(libc::SIGTERM);
        if self
            .lab
            .proc(idx)
            .wait_exit(Duration::from_secs(10))
            .is_none()
        {
            return Err(format!(
                "{}: the primary's daemon did not exit on SIGTERM\n{}",
                self.daemon.name(),
                self.lab.logs()
            ));
        }
        let window = self.setting.timeout * 3 + Duration::from_secs(1);
        std::thread::sleep(window.saturating_sub(w.start.elapsed()));
        let end = match (
            self.lab.holds(Host::Pri, "eth0", vip),
            self.lab.holds(Host::Sec, "eth0", vip),
        ) {
            (true, false) => End::Primary,
            (false, true) => End::Secondary,
            (true, true) => End::Both,
            (false, false) => End::Nobody,
        };
        let (h, ..) = self.holders(w, "stop");
        // Back to steady: the daemon again.
        self.start_primary();
        self.wait_steady()?;
        Ok((h, end))
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
    /// The results file whose crash medians this run is compared with.
    baseline: Option<PathBuf>,
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
        baseline: get("--baseline").map(PathBuf::from),
    }
}

/// The newest results file of `bench/results` (named `YYYY-MM-DD.md`) from before `date`.
fn newest_results_before(date: &str) -> Option<PathBuf> {
    let dir = ipfailover_e2e::repo().join("bench/results");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let b = n.as_bytes();
            n.len() == 13
                && n.ends_with(".md")
                && b.iter().enumerate().take(10).all(|(i, c)| {
                    if i == 4 || i == 7 {
                        *c == b'-'
                    } else {
                        c.is_ascii_digit()
                    }
                })
        })
        .filter(|n| &n[..10] < date)
        .collect();
    names.sort();
    names.pop().map(|n| dir.join(n))
}

/// Picks a sample out of one cell's results.
type Pick = dyn Fn(&Results) -> Vec<Duration>;

#[derive(Default)]
struct Results {
    crash: Vec<Duration>,
    /// A planned shutdown: SIGTERM while the system is `stopping` -> the secondary answers.
    graceful: Vec<Duration>,
    failback: Vec<Failback>,
    restart: Vec<Holders>,
    stop: Vec<(Holders, End)>,
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

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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

/// The crash medians of this run next to those of an earlier results file (`--baseline`, or
/// the newest one in bench/results from before today): empty when there is none.
fn baseline_section(
    opts: &Opts,
    date: &str,
    settings: &[Setting],
    results: &[(Setting, Daemon, Results)],
) -> String {
    let Some(path) = opts
        .baseline
        .clone()
        .or_else(|| newest_results_before(date))
    else {
        return String::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!("(the baseline {} cannot be read)\n\n", path.display());
    };
    let old = crash_medians(&text);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut t = format!(
        "## Crash takeover against [{name}]({name}): medians in ms\n\n\
         The crash comes at a random moment of the interval, so the median of n trials has a standard error \
         of about interval / (2 √n).\n\n\
         | setting | daemon | {name} | this run | moved | standard error |\n|---|---|---|---|---|---|\n"
    );
    for s in settings {
        let label = format!("{} / {}", dur_str(s.interval), dur_str(s.timeout));
        let Some((_, before)) = old.iter().find(|(l, _)| *l == label) else {
            continue;
        };
        for (i, d) in [
            Daemon::Ipfailover,
            Daemon::IpfailoverAlias,
            Daemon::Keepalived,
        ]
        .iter()
        .enumerate()
        {
            let now = results
                .iter()
                .find(|(st, dd, _)| st.label == s.label && dd == d)
                .and_then(|(_, _, r)| Summary::of(&r.crash));
            let (Some(b), Some(n)) = (before[i], now) else {
                continue;
            };
            let se = s.interval.as_secs_f64() * 1e3 / (2.0 * (n.n as f64).sqrt());
            let moved = n.median - b;
            let _ = writeln!(
                t,
                "| {label} | {} | {} | {} | {}{} ms | {} ms |",
                d.name(),
                ms(b),
                ms(n.median),
                if moved < 0.0 { "−" } else { "+" },
                ms(moved.abs()),
                ms(se)
            );
        }
    }
    t.push('\n');
    t
}

fn main() {
    let opts = parse();
    let started = Instant::now();
    let load_before = loadavg();
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
                            bed.first_return()?;
                            let c = bed.crash()?;
                            let f = bed.failback()?;
                            bed.first_return()?;
                            let g = bed.shutdown()?;
                            eprintln!(
                                "   trial {:>2}: crash {} ms, failback {} ms (secondary released {} ms; two holders {} ms{}, nobody {} ms), shutdown {} ms",
                                i + 1,
                                ms(c.as_secs_f64() * 1e3),
                                ms(f.first.as_secs_f64() * 1e3),
                                ms(f.released.as_secs_f64() * 1e3),
                                ms(f.holders.both.as_secs_f64() * 1e3),
                                f.both_after_heartbeat.map_or(String::new(), |d| format!(
                                    ", {} ms after the first heartbeat",
                                    ms(d.as_secs_f64() * 1e3)
                                )),
                                ms(f.holders.nobody.as_secs_f64() * 1e3),
                                ms(g.as_secs_f64() * 1e3)
                            );
                            r.crash.push(c);
                            r.failback.push(f);
                            r.graceful.push(g);
                            Ok(())
                        })();
                        if let Err(e) = step {
                            failures.push(e.lines().next().unwrap_or("").to_string());
                            eprintln!("   trial {} failed: {e}", i + 1);
                            break;
                        }
                    }
                    // Restarts of the primary's daemon on its live host.
                    for _ in 0..opts.trials.div_ceil(2) {
                        match bed.first_return().and_then(|()| bed.restart()) {
                            Ok(h) => {
                                eprintln!(
                                    "   restart: two holders {} ms, nobody {} ms",
                                    ms(h.both.as_secs_f64() * 1e3),
                                    ms(h.nobody.as_secs_f64() * 1e3)
                                );
                                r.restart.push(h);
                            }
                            Err(e) => {
                                failures.push(e.lines().next().unwrap_or("").to_string());
                                eprintln!("   restart failed: {e}");
                                break;
                            }
                        }
                    }
                    // Stops of the primary's daemon alone, its host staying up.
                    for _ in 0..opts.trials.div_ceil(4) {
                        match bed.first_return().and_then(|()| bed.stop()) {
                            Ok((h, end)) => {
                                eprintln!(
                                    "   stop: two holders {} ms, nobody {} ms, held by {} at the end",
                                    ms(h.both.as_secs_f64() * 1e3),
                                    ms(h.nobody.as_secs_f64() * 1e3),
                                    end.name()
                                );
                                r.stop.push((h, end));
                            }
                            Err(e) => {
                                failures.push(e.lines().next().unwrap_or("").to_string());
                                eprintln!("   stop failed: {e}");
                                break;
                            }
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
                                eprintln!("   daemon alone killed failed: {e}");
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
        "- Load average (1, 5, 15 min; other work on the machine counts): {load_before} at the start, {} at the end",
        loadavg()
    );
    let _ = writeln!(
        report,
        "- ipfailover {}; {keepalived_version}; {}",
        env!("CARGO_PKG_VERSION"),
        command_line("rustc", &["--version"])
    );
    let _ = writeln!(
        report,
        "- Topology: the test lab (primary, secondary, client in network namespaces, public and private bridges). \
         ipfailover: heartbeats on both links, no secret, `FAILOVER_TIMEOUT` = 3 intervals, addresses handed over by agreement \
         ([docs/handover.md](../../docs/handover.md)); the VIP is the primary's own address (198.51.100.10); \
         ipfailover (service alias): the same pair moving {VRRP_VIP}, a service address heartbeatd manages \
         (`FAILOVER_IP_PAIRS=eth0:{VRRP_VIP}/24`) next to the primary's own address. keepalived: VRRPv3 on the public link, both `state BACKUP`, \
         priorities 200 (primary) and 100 (secondary), preemption on (its defaults); VIP {VRRP_VIP}."
    );
    let _ = writeln!(
        report,
        "- A crash is SIGKILL of the primary's daemon and its links down at once; the host then reboots: what its daemon \
         had added (the alias, keepalived's VIP) is gone when it returns; its links come up, then its daemon starts \
         (as after `network-online.target`). A shutdown is SIGTERM while the primary's `systemctl is-system-running` \
         says `stopping`, then its links go down. A restart or a stop of the daemon alone happens while `systemctl` says \
         `running`: the host stays up. For the service alias, failoverd is restarted (while the primary holds everything) \
         before each trial, so that each return of the primary is a first one: back-to-back returns would run into the \
         hold-off for a flapping primary (docs/handover.md), by design."
    );
    let _ = writeln!(
        report,
        "- Probe: a UDP datagram to the VIP every 1 ms from the client; each reply carries a tag \
         naming the host that answered; timestamps on CLOCK_MONOTONIC. Sampler (tests/src/sampler.rs): \
         a thread per host looks every 2 ms at whether the VIP is on an interface whose link is up there. \
         {} trials per cell unless said; min / **median** / max in ms.\n",
        opts.trials
    );
    let table = |title: &str,
                 pick: &dyn Fn(&Results) -> Vec<Duration>,
                 note: &dyn Fn(Setting, &Summary) -> String| {
        let mut t = format!("## {title}\n\n| setting | ipfailover | ipfailover (service alias) | keepalived | ipfailover: |\n|---|---|---|---|---|\n");
        for s in &settings {
            let cell = |d: Daemon| {
                results
                    .iter()
                    .find(|(st, dd, _)| st.label == s.label && *dd == d)
                    .and_then(|(_, _, r)| Summary::of(&pick(r)))
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
    // Two holders and nobody, per daemon: (count of trials, two holders, nobody).
    let holders_table = |pick: &dyn Fn(&Results) -> Vec<Holders>, extra: Option<(&str, &Pick)>| {
        let mut t = String::from(
            "| setting | ipfailover: two holders | nobody | service alias: two holders | nobody | keepalived: two holders | nobody |",
        );
        if let Some((title, _)) = extra {
            let _ = write!(t, " {title} |");
        }
        t.push_str("\n|---|---|---|---|---|---|---|");
        if extra.is_some() {
            t.push_str("---|");
        }
        t.push('\n');
        for s in &settings {
            let _ = write!(t, "| {} / {} |", dur_str(s.interval), dur_str(s.timeout));
            for d in [
                Daemon::Ipfailover,
                Daemon::IpfailoverAlias,
                Daemon::Keepalived,
            ] {
                let h = results
                    .iter()
                    .find(|(st, dd, _)| st.label == s.label && *dd == d)
                    .map(|(_, _, r)| pick(r))
                    .unwrap_or_default();
                let both: Vec<Duration> = h.iter().map(|x| x.both).collect();
                let nobody: Vec<Duration> = h.iter().map(|x| x.nobody).collect();
                let _ = write!(
                    t,
                    " {} | {} |",
                    Summary::of(&both).map_or("—".into(), |x| x.cell()),
                    Summary::of(&nobody).map_or("—".into(), |x| x.cell())
                );
            }
            if let Some((_, f)) = extra {
                let v = results
                    .iter()
                    .find(|(st, dd, _)| st.label == s.label && *dd == Daemon::Ipfailover)
                    .map(|(_, _, r)| f(r))
                    .unwrap_or_default();
                let _ = write!(t, " {} |", Summary::of(&v).map_or("—".into(), |x| x.cell()));
            }
            t.push('\n');
        }
        t
    };
    report.push_str(&table(
        "Crash takeover (SIGKILL and links down -> first reply from the secondary)",
        &|r| r.crash.clone(),
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
    report.push_str(&baseline_section(&opts, &date, &settings, &results));
    report.push_str(&table(
        "Planned shutdown of the primary (SIGTERM, system `stopping` -> first reply from the secondary)",
        &|r| r.graceful.clone(),
        &|_, x| format!("median {} ms", ms(x.median)),
    ));
    report.push('\n');
    report.push_str(&table(
        "Failback (the primary's host returns -> first reply from the primary)",
        &|r| r.failback.iter().map(|f| f.first).collect(),
        &|s, x| {
            format!(
                "median {:.1} intervals",
                x.median / (s.interval.as_secs_f64() * 1e3)
            )
        },
    ));
    report.push('\n');
    report.push_str(&table(
        "Failback: the secondary no longer holds the address",
        &|r| r.failback.iter().map(|f| f.released).collect(),
        &|s, x| {
            format!(
                "median {:.1} intervals",
                x.median / (s.interval.as_secs_f64() * 1e3)
            )
        },
    ));
    let _ = writeln!(
        report,
        "\n## Two hosts answering, and nobody\n\n\
         From the sampler: the time both hosts held the address on an interface whose link was up, and the time \
         neither did, from the event to the end state (each figure has the sampler's resolution, about 2 ms per change \
         of holder: a handover from one host to the other shows up to about 2 ms of nobody even when it took less).\n\n\
         ### Failback (the primary's host returns after a crash: links up, then its daemon)\n\n\
         The primary's own address answers from the moment its link is up (the OS configured it), so its overlap \
         includes heartbeatd's start; the last column is the part of it after the primary's first heartbeat, as the \
         client heard it (docs/handover.md: failoverd releases at the first verified heartbeat; without a secret, the \
         first heartbeat). {} trials.\n",
        opts.trials
    );
    report.push_str(&holders_table(
        &|r| r.failback.iter().map(|f| f.holders).collect(),
        Some(("ipfailover: two holders after the first heartbeat", &|r| {
            r.failback
                .iter()
                .filter_map(|f| f.both_after_heartbeat)
                .collect()
        })),
    ));
    let _ = writeln!(
        report,
        "\n### Restart of the primary's daemon on its live host (heartbeatd or keepalived: SIGTERM, exit, start)\n\n\
         From the SIGTERM until the primary holds the address again and the client is answered by it. {} trials.\n",
        opts.trials.div_ceil(2)
    );
    report.push_str(&holders_table(&|r| r.restart.clone(), None));
    let _ = writeln!(
        report,
        "\n### Stop of the primary's daemon alone (SIGTERM, its host stays up)\n\n\
         Watched for three timeouts and a second after the SIGTERM. heartbeatd removes its service alias before its \
         goodbye and failoverd takes it; the own address stays with the host that answers for it \
         (docs/handover.md). {} trials.\n",
        opts.trials.div_ceil(4)
    );
    report.push_str(&holders_table(
        &|r| r.stop.iter().map(|x| x.0).collect(),
        None,
    ));
    let _ = writeln!(
        report,
        "\nWho holds the address at the end of the window:\n\n| setting | ipfailover | ipfailover (service alias) | keepalived |\n|---|---|---|---|"
    );
    for s in &settings {
        let _ = write!(
            report,
            "| {} / {} |",
            dur_str(s.interval),
            dur_str(s.timeout)
        );
        for d in [
            Daemon::Ipfailover,
            Daemon::IpfailoverAlias,
            Daemon::Keepalived,
        ] {
            let ends: Vec<End> = results
                .iter()
                .find(|(st, dd, _)| st.label == s.label && *dd == d)
                .map(|(_, _, r)| r.stop.iter().map(|x| x.1).collect())
                .unwrap_or_default();
            let mut cell = Vec::new();
            for e in [End::Primary, End::Secondary, End::Both, End::Nobody] {
                let n = ends.iter().filter(|x| **x == e).count();
                if n > 0 {
                    cell.push(format!("{} ({n} of {})", e.name(), ends.len()));
                }
            }
            let _ = write!(
                report,
                " {} |",
                if cell.is_empty() {
                    "—".to_string()
                } else {
                    cell.join(", ")
                }
            );
        }
        report.push('\n');
    }
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
