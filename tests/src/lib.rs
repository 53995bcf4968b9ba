//! A lab of real hosts on one machine, for ipfailover's end-to-end tests and demo.
//!
//! Each [`Lab`] makes its own network namespaces (names unique to the process and the lab),
//! joined by two bridges that live in a namespace of their own, so the root namespace's
//! networking is never touched:
//!
//! ```text
//!      public bridge 198.51.100.0/24             private bridge 203.0.113.0/24
//!    pri 198.51.100.10 --+-- sec 198.51.100.20    pri 203.0.113.10 --- sec 203.0.113.20
//!                        +-- cli 198.51.100.30
//!                        +-- atk 198.51.100.66 (only when asked for)
//! ```
//! Every process the lab starts is killed by pid, and every namespace deleted, when the lab is
//! dropped, pass or fail. Only the documentation ranges of RFC 5737 and RFC 3849 are used.

#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub mod chaos;
pub mod group;
pub mod icmp;
pub mod process;
pub mod sampler;

pub use process::{cpu_ns, rss_kib, Proc};

/// The primary's public address: the address that moves.
pub const VIP: &str = "198.51.100.10";
/// The secondary's public address (the VIP of the reverse direction when peering).
pub const SEC_PUB: &str = "198.51.100.20";
/// The client's address.
pub const CLI_PUB: &str = "198.51.100.30";
/// The attacker's address, on the public LAN.
pub const ATK_PUB: &str = "198.51.100.66";
/// The primary's private address.
pub const PRI_PRIV: &str = "203.0.113.10";
/// The secondary's private address.
pub const SEC_PRIV: &str = "203.0.113.20";

static LABS: AtomicU32 = AtomicU32::new(0);

/// The hosts of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The primary: heartbeatd.
    Pri,
    /// The secondary: failoverd.
    Sec,
    /// A client on the public LAN.
    Cli,
    /// A hostile host on the public LAN (made by [`Lab::add_attacker`]).
    Atk,
    /// The namespace holding the bridges.
    Lan,
}

impl Host {
    fn suffix(self) -> &'static str {
        match self {
            Host::Pri => "pri",
            Host::Sec => "sec",
            Host::Cli => "cli",
            Host::Atk => "atk",
            Host::Lan => "lan",
        }
    }
}

/// A set of namespaces wired as above, torn down on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    /// A scratch directory for configuration files, logs and state.
    pub dir: PathBuf,
    procs: Vec<Proc>,
    /// The seed of the lab's netem ([`Lab::impair`]), for repeatable runs.
    pub seed: u64,
    /// Each host's netem: its process and the pipe its settings go down.
    netems: Vec<(Host, usize, std::process::ChildStdin)>,
}

/// What `ipfo-netem` did on one link ([`Lab::netem_report`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetemCounts {
    /// Packets it was handed.
    pub seen: u64,
    /// Packets it held for a while.
    pub held: u64,
    /// Packets it let go at once while others were held.
    pub ahead: u64,
    /// Packets that left after one that arrived later: the reordering the receiver saw.
    pub out_of_order: u64,
}

/// What [`Lab::impair`] does to a link, as `tc netem` would: delay with jitter, reordering,
/// duplication. The default is none of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Impairment {
    /// Delay of every packet, ms.
    pub delay_ms: u32,
    /// Up to this much more, at random, ms (more than the gap between packets reorders them).
    pub jitter_ms: u32,
    /// Percent of the packets sent at once, ahead of the delayed ones.
    pub reorder_pct: u8,
    /// Percent of the packets sent twice.
    pub dup_pct: u8,
}

/// The workspace's root directory (the repository).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// A fresh scratch directory for one test of a suite: `<tmp>/ipfo-<suite>-<pid>-<name>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipfo-{suite}-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The directory holding the workspace's built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("IPFAILOVER_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Tests run from target/<profile>/deps/<test>; binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut dir = exe
        .parent()
        .expect("the test binary's directory")
        .to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary, which must have been built (`cargo build --workspace`).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} does not exist: build the binaries first (cargo build --workspace), \
         or set IPFAILOVER_BIN_DIR",
        path.display()
    );
    path
}

/// Runs a command, returning its output; panics with the command and its stderr if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What a command printed: its standard output, then its standard error.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `systemd-analyze verify` on unit files: `Ok` if it exits 0 and says nothing, else what it
/// said. It exits 0 on unknown keys but names them, so any output is a finding (but for the
/// absence of a system bus, as in a container).
pub fn systemd_verify(units: &[&Path]) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .stdin(Stdio::null())
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let said = output_text(&out);
    let findings = said
        .lines()
        .filter(|l| !l.contains("Failed to connect to bus") && !l.trim().is_empty())
        .count();
    if out.status.success() && findings == 0 {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify ({}): {said}", out.status))
    }
}

/// Runs a command and says whether it succeeded (quietly).
pub fn run_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns the time it took.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        sleep(Duration::from_millis(10));
    }
}

impl Lab {
    /// Builds the topology. Fails loudly (never skips) if namespaces cannot be made.
    pub fn new(name: &str) -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ipfo{}{}-{}", std::process::id(), n, name);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            dir,
            procs: Vec::new(),
            seed: 1,
            netems: Vec::new(),
        };
        lab.build();
        lab
    }

    /// The namespace name of a host.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.prefix, host.suffix())
    }

    fn add_ns(&mut self, host: Host) {
        let ns = self.ns(host);
        let out = Command::new("ip")
            .args(["netns", "add", &ns])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is needed, and root): {e}"));
        assert!(
            out.status.success(),
            "cannot create network namespace {ns}: {} -- the end-to-end tests need root and \
             iproute2; they do not skip",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        self.namespaces.push(ns.clone());
        self.ip(host, &["link", "set", "lo", "up"]);
    }

    /// Runs `ip -n <ns> ARGS`, panicking on failure.
    pub fn ip(&self, host: Host, args: &[&str]) -> String {
        let ns = self.ns(host);
        let mut full = vec!["ip", "-n", ns.as_str()];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&run(&full).stdout).into_owned()
    }

    /// Runs a command inside a host's namespace, panicking on failure.
    pub fn exec(&self, host: Host, args: &[&str]) -> String {
        let ns = self.ns(host);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&run(&full).stdout).into_owned()
    }

    /// Runs a command inside a host's namespace; whether it succeeded.
    pub fn exec_ok(&self, host: Host, args: &[&str]) -> bool {
        let ns = self.ns(host);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run_ok(&full)
    }

    /// Joins `host` to a bridge with a veth: `ifname` inside the host, `addr` on it.
    fn plug(&self, host: Host, bridge: &str, ifname: &str, addr: &str) {
        let lan = self.ns(Host::Lan);
        let peer_ns = self.ns(host);
        let outer = format!("{}-{}", host.suffix(), ifname);
        run(&[
            "ip", "-n", &lan, "link", "add", &outer, "type", "veth", "peer", "name", ifname,
            "netns", &peer_ns,
        ]);
        self.ip(Host::Lan, &["link", "set", &outer, "master", bridge, "up"]);
        self.ip(host, &["addr", "add", addr, "dev", ifname]);
        self.ip(host, &["link", "set", ifname, "up"]);
    }

    fn build(&mut self) {
        for h in [Host::Lan, Host::Pri, Host::Sec, Host::Cli] {
            self.add_ns(h);
        }
        for br in ["brpub", "brpriv"] {
            self.ip(Host::Lan, &["link", "add", br, "type", "bridge"]);
            // Forward at once: no STP listening delay on a lab bridge.
            self.ip(
                Host::Lan,
                &["link", "set", br, "type", "bridge", "forward_delay", "0"],
            );
            self.ip(Host::Lan, &["link", "set", br, "up"]);
        }
        self.plug(Host::Pri, "brpub", "eth0", "198.51.100.10/24");
        self.plug(Host::Pri, "brpriv", "eth1", "203.0.113.10/24");
        self.plug(Host::Sec, "brpub", "eth0", "198.51.100.20/24");
        self.plug(Host::Sec, "brpriv", "eth1", "203.0.113.20/24");
        self.plug(Host::Cli, "brpub", "eth0", "198.51.100.30/24");
    }

    /// Adds the hostile host on the public LAN.
    pub fn add_attacker(&mut self) {
        self.add_ns(Host::Atk);
        self.plug(Host::Atk, "brpub", "eth0", "198.51.100.66/24");
    }

    /// Gives pri, sec and cli IPv6 addresses on the public LAN (2001:db8::10, ::20, ::30),
    /// without duplicate address detection so they are usable at once.
    pub fn add_ipv6(&self) {
        for (host, addr) in [
            (Host::Pri, "2001:db8::10/64"),
            (Host::Sec, "2001:db8::20/64"),
            (Host::Cli, "2001:db8::30/64"),
        ] {
            self.ip(host, &["-6", "addr", "add", addr, "dev", "eth0", "nodad"]);
        }
    }

    /// The MAC the client's neighbour table has for an address, if any (IPv4 or IPv6).
    pub fn client_neigh6(&self, addr: &str) -> Option<String> {
        let out = self.ip(Host::Cli, &["-6", "neigh", "show", addr]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_string);
            }
        }
        None
    }

    /// The MAC address of a host's interface.
    pub fn mac(&self, host: Host, ifname: &str) -> String {
        let out = self.ip(host, &["-o", "link", "show", ifname]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "link/ether" {
                return words.next().unwrap_or_default().to_string();
            }
        }
        panic!("no MAC for {ifname} in {out}");
    }

    /// Whether a host's interface holds an address.
    pub fn holds(&self, host: Host, ifname: &str, addr: &str) -> bool {
        let out = self.ip(host, &["-o", "addr", "show", "dev", ifname]);
        out.split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// Waits until `host` holds `addr` on `ifname` (or, with `want` false, no longer holds
    /// it); fails the test with every log after `limit`. Returns how long it took.
    pub fn wait_holds(
        &self,
        host: Host,
        ifname: &str,
        addr: &str,
        want: bool,
        limit: Duration,
    ) -> Duration {
        wait_for(limit, || self.holds(host, ifname, addr) == want).unwrap_or_else(|| {
            panic!(
                "{host:?} {} {addr} on {ifname} after {limit:?}:\n{}",
                if want { "never held" } else { "still holds" },
                self.logs()
            )
        })
    }

    /// The MAC the client's neighbour table has for an address, if any.
    pub fn client_neigh(&self, addr: &str) -> Option<String> {
        let out = self.ip(Host::Cli, &["neigh", "show", addr]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_string);
            }
        }
        None
    }

    /// One ping (ICMP or ICMPv6 echo, the lab's own: no `ping` binary) from the client to
    /// `addr`, waiting at most 1 s for the reply.
    pub fn client_ping(&self, addr: &str) -> bool {
        self.ping_from(Host::Cli, addr, Duration::from_secs(1))
    }

    /// One echo from `host` to `addr`, waiting at most `wait`; panics if the echo cannot be
    /// sent at all (a bad address, no namespace), which is a broken test, not a lost reply.
    pub fn ping_from(&self, host: Host, addr: &str, wait: Duration) -> bool {
        let dst: std::net::IpAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("ping: {addr} is not an address: {e}"));
        icmp::ping_in(&self.ns(host), dst, wait)
            .unwrap_or_else(|e| panic!("ping {addr} from {host:?}: {e}"))
    }

    /// Sets all of a host's lab links up or down (a dead host stops answering ARP too).
    pub fn links(&self, host: Host, up: bool) {
        let state = if up { "up" } else { "down" };
        let names: &[&str] = match host {
            Host::Pri | Host::Sec => &["eth0", "eth1"],
            _ => &["eth0"],
        };
        for n in names {
            self.ip(host, &["link", "set", n, state]);
        }
    }

    /// Drops `percent`% of the frames on one of a host's links, both ways, with nftables
    /// ingress rules at both ends of the veth (this kernel has no netem). 0 removes the loss.
    pub fn loss(&self, host: Host, ifname: &str, percent: u8) {
        let outer = format!("{}-{}", host.suffix(), ifname);
        for (ns_host, dev) in [(Host::Lan, outer.as_str()), (host, ifname)] {
            let rule = match percent {
                0 => None,
                100.. => Some("drop".to_string()),
                _ => Some(format!("numgen random mod 100 < {percent} drop")),
            };
            self.device_rule(ns_host, "loss", "ingress", dev, rule.as_deref());
        }
    }

    /// Sets the one rule of a netdev chain on `dev`'s `hook`, or none. The table and chain
    /// stay once made: removing a hook makes the kernel drop every packet held in the
    /// namespace's netfilter queues, which would be loss that nobody asked for.
    fn device_rule(&self, host: Host, what: &str, hook: &str, dev: &str, rule: Option<&str>) {
        let table = format!("{what}_{}", dev.replace('-', "_"));
        self.nft(
            host,
            &format!(
                "table netdev {table} {{\n  chain c {{\n    type filter hook {hook} device \"{dev}\" \
                 priority 0;\n  }}\n}}\nflush chain netdev {table} c\n{}\n",
                rule.map(|r| format!("add rule netdev {table} c {r}"))
                    .unwrap_or_default()
            ),
        );
    }

    /// Delays, reorders and duplicates the UDP packets a host sends and receives on one of its
    /// links, as `tc netem` would on both ends of the veth (this kernel has no netem).
    ///
    /// Delay and reordering: iptables `NFQUEUE` rules hand the packets to the host's
    /// `ipfo-netem`, which holds them. Duplication: nftables `dup` at the egress of both ends
    /// of the veth (a mark keeps the copy from being copied again). The default
    /// [`Impairment`] removes it all; packets already held still leave on their schedule.
    pub fn impair(&mut self, host: Host, ifname: &str, imp: Impairment) {
        let queue = match ifname {
            "eth0" => "0",
            "eth1" => "1",
            _ => panic!("impair: only eth0 and eth1 have queues, not {ifname}"),
        };
        if !self.netems.iter().any(|(h, _, _)| *h == host) {
            let seed = self.seed.to_string();
            let prog = bin("ipfo-netem").to_string_lossy().into_owned();
            let name = format!("netem-{}", host.suffix());
            let idx = self.launch(host, &name, &[&prog, &seed, "0", "1"], Stdio::piped(), None);
            assert!(
                self.wait_log(idx, "bound to queues", Duration::from_secs(5)),
                "ipfo-netem did not start:\n{}",
                self.procs[idx].log_text()
            );
            let stdin = self.procs[idx].take_stdin().expect("netem's stdin");
            self.netems.push((host, idx, stdin));
        }
        let line = format!(
            "{queue} {} {} {}\n",
            imp.delay_ms, imp.jitter_ms, imp.reorder_pct
        );
        if let Some((_, _, stdin)) = self.netems.iter_mut().find(|(h, _, _)| *h == host) {
            stdin.write_all(line.as_bytes()).expect("netem settings");
            stdin.flush().expect("netem settings");
        }
        let ns = self.ns(host);
        for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
            let rule = [
                chain,
                dir,
                ifname,
                "-p",
                "udp",
                "-j",
                "NFQUEUE",
                "--queue-num",
                queue,
                "--queue-bypass",
            ];
            let mut del = vec!["ip", "netns", "exec", &ns, "iptables", "-D"];
            del.extend_from_slice(&rule);
            while run_ok(&del) {}
            if imp.delay_ms > 0 || imp.jitter_ms > 0 {
                let mut add = vec!["ip", "netns", "exec", &ns, "iptables", "-A"];
                add.extend_from_slice(&rule);
                run(&add);
            }
        }
        let outer = format!("{}-{}", host.suffix(), ifname);
        for (ns_host, dev) in [(Host::Lan, outer.as_str()), (host, ifname)] {
            let rule = (imp.dup_pct > 0).then(|| {
                format!(
                    "meta l4proto udp meta mark != 0x1d numgen random mod 100 < {} \
                     meta mark set 0x1d dup to \"{dev}\"",
                    imp.dup_pct.min(100)
                )
            });
            self.device_rule(ns_host, "dup", "egress", dev, rule.as_deref());
        }
    }

    /// Stops a host's netem, letting every held packet go, and returns what it did on each
    /// link (eth0, eth1). None if the host had no netem.
    pub fn netem_report(&mut self, host: Host) -> Option<[NetemCounts; 2]> {
        let pos = self.netems.iter().position(|(h, _, _)| *h == host)?;
        let (_, idx, stdin) = self.netems.remove(pos);
        drop(stdin);
        let _ = self.procs[idx].wait_exit(Duration::from_secs(5));
        let log = self.procs[idx].log_text();
        let counts = |queue: usize| {
            let line = log
                .lines()
                .find(|l| l.starts_with(&format!("queue {queue}:")))
                .unwrap_or_else(|| panic!("no report for queue {queue} from ipfo-netem:\n{log}"));
            let n: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .skip(1)
                .collect();
            NetemCounts {
                seen: n[0],
                held: n[1],
                ahead: n[2],
                out_of_order: n[3],
            }
        };
        Some([counts(0), counts(1)])
    }

    /// Loads nftables rules into a host's namespace (the package nftables is needed).
    pub fn nft(&self, host: Host, rules: &str) {
        let ns = self.ns(host);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (package nftables) is needed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("nft rules");
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft failed: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts (or heals) every path between the primary and the secondary, on both links,
    /// while the client still reaches both: a partition, made by the bridges in `lan`.
    pub fn partition(&self, cut: bool) {
        let ns = self.ns(Host::Lan);
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "delete",
            "table",
            "bridge",
            "partition",
        ]);
        if cut {
            let mut rules = String::from(
                "table bridge partition {\n  chain cut {\n    type filter hook forward priority 0;\n",
            );
            for (a, b) in [
                ("pri-eth0", "sec-eth0"),
                ("sec-eth0", "pri-eth0"),
                ("pri-eth1", "sec-eth1"),
                ("sec-eth1", "pri-eth1"),
            ] {
                rules.push_str(&format!("    iifname \"{a}\" oifname \"{b}\" drop\n"));
            }
            rules.push_str("  }\n}\n");
            self.nft(Host::Lan, &rules);
        }
    }

    /// Writes a file in the scratch directory, mode 0600; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("directory for a lab file");
        }
        let mut f = fs::File::create(&path).expect("lab file");
        f.write_all(text.as_bytes()).expect("writing a lab file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// Starts a workspace binary inside a host's namespace with `args`, stderr to a log file.
    pub fn spawn(&mut self, host: Host, name: &str, program: &str, args: &[&str]) -> usize {
        let prog = bin(program).to_string_lossy().into_owned();
        let mut argv = vec![prog.as_str()];
        argv.extend_from_slice(args);
        self.launch(host, name, &argv, Stdio::null(), Some("debug"))
    }

    /// Starts any command inside a host's namespace, output to `<name>.log`.
    pub fn spawn_cmd(&mut self, host: Host, name: &str, argv: &[&str]) -> usize {
        self.launch(host, name, argv, Stdio::null(), None)
    }

    /// Starts a workspace binary like [`Lab::spawn`], its wall clock `offset_s` seconds off
    /// (libfaketime, preloaded into the daemon itself, so the pid is the daemon's; the
    /// monotonic clock is left alone, as NTP would leave it). The package faketime is needed.
    pub fn spawn_skewed(
        &mut self,
        host: Host,
        name: &str,
        program: &str,
        args: &[&str],
        offset_s: i64,
    ) -> usize {
        let lib = faketime_lib();
        let prog = bin(program).to_string_lossy().into_owned();
        let mut argv = vec![prog.as_str()];
        argv.extend_from_slice(args);
        let env = [
            ("LD_PRELOAD", lib.to_string_lossy().into_owned()),
            ("FAKETIME", format!("{offset_s:+}s")),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ];
        self.launch_env(host, name, &argv, Stdio::null(), Some("debug"), &env)
    }

    /// Drops (or stops dropping) every UDP datagram to port 1694 that `host` sends, as a
    /// firewall on that host would (nftables in its namespace): heartbeats do not leave,
    /// everything else (ARP, the client's traffic) does.
    pub fn firewall_heartbeats(&self, host: Host, on: bool) {
        let ns = self.ns(host);
        run_ok(&[
            "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "ipfo_fw",
        ]);
        if on {
            self.nft(
                host,
                "table inet ipfo_fw {\n  chain out {\n    type filter hook output priority 0;\n    \
                 udp dport 1694 drop\n  }\n}\n",
            );
        }
    }

    /// Starts `argv` in a host's namespace (`ip netns exec` execs it: the pid we get is the
    /// program's), output to `<name>.log`, with `RUST_LOG` if given.
    fn launch(
        &mut self,
        host: Host,
        name: &str,
        argv: &[&str],
        stdin: Stdio,
        rust_log: Option<&str>,
    ) -> usize {
        self.launch_env(host, name, argv, stdin, rust_log, &[])
    }

    fn launch_env(
        &mut self,
        host: Host,
        name: &str,
        argv: &[&str],
        stdin: Stdio,
        rust_log: Option<&str>,
        env: &[(&str, String)],
    ) -> usize {
        let log = self.dir.join(format!("{name}.log"));
        let mut all: Vec<(&str, String)> = env.to_vec();
        if let Some(level) = rust_log {
            all.insert(0, ("RUST_LOG", level.to_string()));
        }
        let ns = self.ns(host);
        self.procs
            .push(Proc::spawn_in(&ns, name, argv, log, &all, stdin));
        self.procs.len() - 1
    }

    /// Starts a real SMTP server (Debian's aiosmtpd) on 127.0.0.1:`port` inside `host`'s
    /// namespace, storing what it receives in the Maildir `<lab>/maildir`.
    pub fn start_smtp(&mut self, host: Host, port: u16) -> usize {
        let maildir = self.dir.join("maildir").to_string_lossy().into_owned();
        let listen = format!("127.0.0.1:{port}");
        let idx = self.spawn_cmd(
            host,
            "smtp",
            &[
                "/usr/bin/python3",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &listen,
                "-c",
                "aiosmtpd.handlers.Mailbox",
                &maildir,
            ],
        );
        let ok = wait_for(Duration::from_secs(10), || {
            self.exec_ok(
                host,
                &[
                    "/usr/bin/python3",
                    "-c",
                    &format!("import socket; socket.create_connection(('127.0.0.1', {port}), 1)"),
                ],
            )
        });
        assert!(
            ok.is_some(),
            "aiosmtpd did not start (package python3-aiosmtpd, run with /usr/bin/python3):\n{}",
            self.procs[idx].log_text()
        );
        idx
    }

    /// The messages the lab's SMTP server stored, oldest first (raw RFC 5322 text).
    pub fn mails(&self) -> Vec<String> {
        let dir = self.dir.join("maildir").join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((m.modified().ok()?, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|(_, p)| read(p)).collect()
    }

    /// A process started by [`Lab::spawn`].
    pub fn proc(&mut self, idx: usize) -> &mut Proc {
        &mut self.procs[idx]
    }

    /// Everything the lab's processes logged, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            s.push_str(&format!("----- {} ({}) -----\n", p.name, p.log.display()));
            s.push_str(&p.log_text());
        }
        s
    }

    /// Waits until a process's log contains `needle`.
    pub fn wait_log(&mut self, idx: usize, needle: &str, limit: Duration) -> bool {
        let log = self.procs[idx].log.clone();
        wait_for(limit, || {
            fs::read_to_string(&log)
                .map(|t| t.contains(needle))
                .unwrap_or(false)
        })
        .is_some()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (each Proc kills its child by pid), then namespaces.
        let pids: Vec<u32> = self.procs.iter().map(Proc::pid).collect();
        self.procs.clear();
        // libfaketime (spawn_skewed) keeps a shared-memory segment and a semaphore named by
        // the pid of the process it was preloaded into, and removes them at exit: a daemon
        // killed with SIGKILL leaves them in /dev/shm. Ours, by pid; absent ones are fine.
        for pid in pids {
            let _ = fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
            let _ = fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() || std::env::var_os("IPFAILOVER_LAB_KEEP").is_some() {
            eprintln!("lab files kept for inspection in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The heartbeat interval the lab's pair uses.
pub const INTERVAL: &str = "100ms";
/// The timeout the lab's failoverd uses.
pub const TIMEOUT: &str = "1s";

impl Lab {
    /// Writes `<name>.conf` from the lab's defaults for a daemon plus `extra` (later keys win).
    fn config(&self, name: &str, base: Vec<(&str, String)>, extra: &[(&str, &str)]) -> String {
        let mut lines: Vec<(String, String)> =
            base.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in extra {
            lines.retain(|(key, _)| key != k);
            lines.push((k.to_string(), v.to_string()));
        }
        let refs: Vec<(&str, &str)> = lines
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.write(&format!("{name}.conf"), &hostconfig(&refs))
            .to_string_lossy()
            .into_owned()
    }

    /// The state directory of a host.
    pub fn state_dir(&self, host: Host) -> PathBuf {
        self.dir.join(format!("state-{}", host.suffix()))
    }

    /// Writes heartbeatd's configuration (`pri.conf`): the lab's defaults and `extra`.
    pub fn heartbeatd_conf(&self, extra: &[(&str, &str)]) -> String {
        let state = self.state_dir(Host::Pri).to_string_lossy().into_owned();
        self.config(
            "pri",
            vec![
                ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255".into()),
                ("FAILOVER_INTERVAL", INTERVAL.into()),
                ("FAILOVER_STATE_DIR", state),
            ],
            extra,
        )
    }

    /// Writes failoverd's configuration (`sec.conf`): the lab's defaults and `extra`. Written
    /// again under a running failoverd, it is what the next SIGHUP reads.
    pub fn failoverd_conf(&self, extra: &[(&str, &str)]) -> String {
        let scripts = self.dir.join("scripts").to_string_lossy().into_owned();
        let state = self.state_dir(Host::Sec).to_string_lossy().into_owned();
        self.config(
            "sec",
            vec![
                ("FAILOVER_PEER_IP", VIP.into()),
                ("FAILOVER_PEER_IP_PAIRS", format!("eth0:{VIP}")),
                ("FAILOVER_TIMEOUT", TIMEOUT.into()),
                ("FAILOVER_SCRIPT_DIR", scripts),
                ("FAILOVER_STATE_DIR", state),
            ],
            extra,
        )
    }

    /// Starts heartbeatd on the primary with the lab's defaults and `extra` settings.
    pub fn start_heartbeatd(&mut self, extra: &[(&str, &str)]) -> usize {
        let conf = self.heartbeatd_conf(extra);
        self.spawn(Host::Pri, "heartbeatd", "heartbeatd", &["-c", &conf])
    }

    /// Starts heartbeatd on the primary as [`Lab::start_heartbeatd`] does, with a `systemctl`
    /// first on its PATH that says the system is `state` (`stopping`: a shutdown under way,
    /// which its goodbye then announces; `running`: only heartbeatd stops).
    pub fn start_heartbeatd_system(&mut self, extra: &[(&str, &str)], state: &str) -> usize {
        let conf = self.heartbeatd_conf(extra);
        let path = self.systemctl_says(state);
        self.spawn_env(
            Host::Pri,
            "heartbeatd",
            "heartbeatd",
            &["-c", &conf],
            &[("PATH", path)],
        )
    }

    /// A PATH whose first directory holds a `systemctl` that says the system is `state`, as
    /// `systemctl is-system-running` does (`stopping` during a shutdown).
    pub fn systemctl_says(&self, state: &str) -> String {
        let dir = self.dir.join(format!("systemctl-{state}"));
        fs::create_dir_all(&dir).expect("a directory for systemctl");
        let script = dir.join("systemctl");
        fs::write(
            &script,
            format!("#!/bin/sh\n[ \"$1\" = is-system-running ] && echo {state}\n"),
        )
        .expect("systemctl");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        )
    }

    /// [`Lab::spawn`] with extra environment variables.
    pub fn spawn_env(
        &mut self,
        host: Host,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> usize {
        let prog = bin(program).to_string_lossy().into_owned();
        let mut argv = vec![prog.as_str()];
        argv.extend_from_slice(args);
        self.launch_env(host, name, &argv, Stdio::null(), Some("debug"), env)
    }

    /// Starts sampling the primary (node 1) and the secondary (node 2) for `addrs`: whether
    /// each holds it on an interface whose link is up, every 2 ms.
    pub fn sampler(&self, addrs: &[&str]) -> sampler::Sampler {
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        sampler::Sampler::start(
            vec![(1, self.ns(Host::Pri)), (2, self.ns(Host::Sec))],
            &addrs,
        )
    }

    /// Starts failoverd on the secondary, watching the primary, with `extra` settings.
    pub fn start_failoverd(&mut self, extra: &[(&str, &str)]) -> usize {
        let conf = self.failoverd_conf(extra);
        self.spawn(Host::Sec, "failoverd", "failoverd", &["-c", &conf])
    }

    /// Writes an executable hook `<scripts>/<peer>/<name>` with `body` (a shell script),
    /// with the modes the hook runner insists on.
    pub fn hook(&self, peer: &str, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let scripts = self.dir.join("scripts");
        let dir = scripts.join(peer);
        fs::create_dir_all(&dir).expect("hook directory");
        for d in [&scripts, &dir] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("hook");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
        path
    }

    /// Starts both and waits until failoverd monitors the primary; their indexes.
    pub fn start_pair(&mut self, hb: &[(&str, &str)], fo: &[(&str, &str)]) -> (usize, usize) {
        let h = self.start_heartbeatd(hb);
        let f = self.start_failoverd(fo);
        assert!(
            self.wait_log(f, "-> monitoring", Duration::from_secs(10)),
            "failoverd never reached monitoring:\n{}",
            self.logs()
        );
        (h, f)
    }

    /// The primary dies: its heartbeatd is SIGKILLed and its links go down.
    pub fn kill_primary(&mut self, hb: usize) {
        self.proc(hb).signal(libc::SIGKILL);
        self.links(Host::Pri, false);
        assert!(self.proc(hb).wait_exit(Duration::from_secs(5)).is_some());
    }

    /// Waits until the client reaches `addr` and its neighbour table has `host`'s MAC for it.
    pub fn client_reaches(&self, addr: &str, host: Host, limit: Duration) {
        let mac = self.mac(host, "eth0");
        assert!(
            wait_for(limit, || self.client_ping(addr)
                && self.client_neigh(addr).as_deref() == Some(mac.as_str()))
            .is_some(),
            "the client does not reach {addr} at {host:?}'s MAC {mac}: neigh {:?}\n{}",
            self.client_neigh(addr),
            self.logs()
        );
    }

    /// A daemon's status file, parsed (`Null` if absent or unreadable).
    pub fn status(&self, host: Host, daemon: &str) -> serde_json::Value {
        let path = self.state_dir(host).join(format!("{daemon}.json"));
        serde_json::from_str(&read(&path)).unwrap_or(serde_json::Value::Null)
    }
}

/// A daemon's configuration, written as a hostconfig file in the lab.
pub fn hostconfig(lines: &[(&str, &str)]) -> String {
    let mut s = String::from("# written by the ipfailover lab\n");
    for (k, v) in lines {
        s.push_str(&format!("{k}=\"{v}\"\n"));
    }
    s
}

/// Removes a directory that a running daemon may be writing into meanwhile: a file it creates
/// between `remove_dir_all`'s listing and its `rmdir` makes that fail with "directory not
/// empty" (or a file renamed away, "not found"), so it is tried again, for up to a second.
pub fn remove_dir_while_written(dir: &Path) {
    let mut last = None;
    for _ in 0..200 {
        match fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::NotFound
                ) && dir.exists() =>
            {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) if !dir.exists() => return,
            Err(e) => panic!("removing {}: {e}", dir.display()),
        }
    }
    panic!(
        "removing {}: still there after a second: {last:?}",
        dir.display()
    );
}

/// libfaketime's library (Debian's package faketime), which the clock tests preload.
pub fn faketime_lib() -> PathBuf {
    let found = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "libfaketime.so.1 is not under /usr/lib/*/faketime: the clock tests need the \
             package faketime (scripts/deps test installs it)"
        )
    })
}

/// Reads a path as text, or an empty string.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
