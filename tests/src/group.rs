//! A lab for groups (docs/groups.md): a three-member etcd cluster and N group members, each host in a
//! namespace of its own, and a client; torn down on drop like [`crate::Lab`].
//!
//! ```text
//!   public bridge 198.51.100.0/24: m1 .11, m2 .12, m3 .13 ... , cli .30; group VIPs .100 up
//!   etcd bridge   203.0.113.0/24:  e1 .1, e2 .2, e3 .3;  m1 .11, m2 .12, m3 .13 ...
//! ```
//! A member cut off from etcd (its eth1 down) still reaches the client; a member killed has
//! both links down. etcd runs only inside the lab's namespaces, on the lab's addresses, with
//! its data under the lab's scratch directory, and is ended by pid.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use crate::sampler::{Sampler, Timeline};
use crate::{bin, hostconfig, read, run, run_ok, wait_for, Proc};

static GROUP_LABS: AtomicU32 = AtomicU32::new(0);

/// A host of the group lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// The namespace holding the bridges.
    Lan,
    /// The client on the public LAN.
    Cli,
    /// etcd member `n` (1-based).
    Etcd(usize),
    /// Group member `n` (1-based).
    Member(usize),
}

impl Node {
    fn suffix(self) -> String {
        match self {
            Node::Lan => "lan".into(),
            Node::Cli => "cli".into(),
            Node::Etcd(n) => format!("e{n}"),
            Node::Member(n) => format!("m{n}"),
        }
    }
}

/// The group's `k`-th address (0-based): 198.51.100.100 and up.
pub fn vip(k: usize) -> String {
    format!("198.51.100.{}", 100 + k)
}

/// A lab of three members and a three-member etcd cluster, all started, each member with
/// `extra` in its configuration.
pub fn three_members(name: &str, extra: &[(&str, &str)]) -> GroupLab {
    let mut lab = GroupLab::new(name, 3, 3);
    lab.start_etcd_cluster();
    for i in 1..=3 {
        lab.start_member(i, extra);
    }
    lab
}

/// Fails the test if the sampler ever saw two members holding one address, with the timeline
/// and the lab's logs.
pub fn never_two(lab: &GroupLab, t: &Timeline) {
    let two = t.two_holders();
    assert!(
        two.is_empty(),
        "two holders: {two:?}\ntimeline:\n{}\n{}",
        t.render(),
        lab.logs()
    );
}

/// Member `n`'s name in the group.
pub fn member_name(n: usize) -> String {
    format!("m{n}")
}

/// The lab.
#[derive(Debug)]
pub struct GroupLab {
    prefix: String,
    namespaces: Vec<String>,
    /// Scratch: configurations, logs, state, etcd's data.
    pub dir: PathBuf,
    procs: Vec<Proc>,
    /// How many group members.
    pub members: usize,
    /// How many etcd members.
    pub etcds: usize,
    etcd_procs: BTreeMap<usize, usize>,
    member_procs: BTreeMap<usize, usize>,
    /// Set by [`GroupLab::enable_tls`]: etcd's clients speak TLS and show certificates.
    pub tls: Option<TlsFiles>,
    /// etcd's election timeout, ms (its heartbeat a tenth of it): 500 unless set before
    /// etcd starts.
    pub etcd_election_ms: u64,
}

/// The lab's TLS material (PEM files in the lab's directory), made by openssl.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The lab's CA certificate.
    pub ca: String,
    /// A client certificate the CA signed, and its key.
    pub cert: String,
    /// The client certificate's key.
    pub key: String,
    /// A second CA that signed nothing of etcd's.
    pub other_ca: String,
}

impl GroupLab {
    /// Builds `members` group members and `etcds` etcd hosts (etcd not started yet).
    pub fn new(name: &str, members: usize, etcds: usize) -> GroupLab {
        let n = GROUP_LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ipfg{}{}-{}", std::process::id(), n, name);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        let mut lab = GroupLab {
            prefix,
            namespaces: Vec::new(),
            dir,
            procs: Vec::new(),
            members,
            etcds,
            etcd_procs: BTreeMap::new(),
            member_procs: BTreeMap::new(),
            tls: None,
            etcd_election_ms: 500,
        };
        lab.build();
        lab
    }

    /// The namespace of a node.
    pub fn ns(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.suffix())
    }

    fn add_ns(&mut self, node: Node) {
        let ns = self.ns(node);
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
        self.namespaces.push(ns);
        self.ip(node, &["link", "set", "lo", "up"]);
    }

    /// `ip -n <ns> ARGS`, panicking on failure.
    pub fn ip(&self, node: Node, args: &[&str]) -> String {
        let ns = self.ns(node);
        let mut full = vec!["ip", "-n", ns.as_str()];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&run(&full).stdout).into_owned()
    }

    /// A command in a node's namespace; whether it succeeded.
    pub fn exec_ok(&self, node: Node, args: &[&str]) -> bool {
        let ns = self.ns(node);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run_ok(&full)
    }

    /// A command in a node's namespace: its stdout, whatever its exit status.
    pub fn exec_out(&self, node: Node, args: &[&str]) -> String {
        let ns = self.ns(node);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn plug(&self, node: Node, bridge: &str, ifname: &str, addr: &str) {
        let lan = self.ns(Node::Lan);
        let inner = self.ns(node);
        let outer = format!("{}-{}", node.suffix(), ifname);
        run(&[
            "ip", "-n", &lan, "link", "add", &outer, "type", "veth", "peer", "name", ifname,
            "netns", &inner,
        ]);
        self.ip(Node::Lan, &["link", "set", &outer, "master", bridge, "up"]);
        self.ip(node, &["addr", "add", addr, "dev", ifname]);
        self.ip(node, &["link", "set", ifname, "up"]);
    }

    fn build(&mut self) {
        self.add_ns(Node::Lan);
        self.add_ns(Node::Cli);
        for j in 1..=self.etcds {
            self.add_ns(Node::Etcd(j));
        }
        for i in 1..=self.members {
            self.add_ns(Node::Member(i));
        }
        for br in ["brpub", "bretcd"] {
            self.ip(Node::Lan, &["link", "add", br, "type", "bridge"]);
            self.ip(
                Node::Lan,
                &["link", "set", br, "type", "bridge", "forward_delay", "0"],
            );
            self.ip(Node::Lan, &["link", "set", br, "up"]);
        }
        self.plug(Node::Cli, "brpub", "eth0", "198.51.100.30/24");
        for j in 1..=self.etcds {
            self.plug(
                Node::Etcd(j),
                "bretcd",
                "eth0",
                &format!("203.0.113.{j}/24"),
            );
        }
        for i in 1..=self.members {
            self.plug(
                Node::Member(i),
                "brpub",
                "eth0",
                &format!("198.51.100.{}/24", 10 + i),
            );
            self.plug(
                Node::Member(i),
                "bretcd",
                "eth1",
                &format!("203.0.113.{}/24", 10 + i),
            );
        }
    }

    /// etcd's client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        let scheme = self.scheme();
        (1..=self.etcds)
            .map(|j| format!("{scheme}://203.0.113.{j}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn launch(&mut self, node: Node, name: &str, argv: &[&str], rust_log: bool) -> usize {
        let log = self.dir.join(format!("{name}.log"));
        let env = if rust_log {
            vec![(
                "RUST_LOG",
                "debug,ureq=warn,ureq_proto=warn,rustls=warn".to_string(),
            )]
        } else {
            Vec::new()
        };
        let ns = self.ns(node);
        self.procs
            .push(Proc::spawn_in(&ns, name, argv, log, &env, Stdio::null()));
        self.procs.len() - 1
    }

    /// Starts any command in a node's namespace, output to `<name>.log`; its index.
    pub fn spawn_cmd(&mut self, node: Node, name: &str, argv: &[&str]) -> usize {
        self.launch(node, name, argv, false)
    }

    /// A process the lab started.
    pub fn proc(&mut self, idx: usize) -> &mut Proc {
        &mut self.procs[idx]
    }

    /// Writes a file in the lab's directory (mode 0600); its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        fs::write(&path, text).expect("lab file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        path.to_string_lossy().into_owned()
    }

    /// Cuts the lab in two (or heals it): nothing crosses the bridges between the nodes of
    /// `half` and the others, on either LAN.
    pub fn split(&self, half: &[Node], cut: bool) {
        let lan = self.ns(Node::Lan);
        let _ = run_ok(&[
            "ip",
            "netns",
            "exec",
            &lan,
            "nft",
            "delete",
            "table",
            "bridge",
            "ipfosplit",
        ]);
        if !cut {
            return;
        }
        let mut all = vec![Node::Cli];
        all.extend((1..=self.etcds).map(Node::Etcd));
        all.extend((1..=self.members).map(Node::Member));
        let ports = |n: Node| -> Vec<String> {
            match n {
                Node::Member(_) => vec![
                    format!("{}-eth0", n.suffix()),
                    format!("{}-eth1", n.suffix()),
                ],
                _ => vec![format!("{}-eth0", n.suffix())],
            }
        };
        let a: Vec<String> = half.iter().flat_map(|n| ports(*n)).collect();
        let b: Vec<String> = all
            .iter()
            .filter(|n| !half.contains(n))
            .flat_map(|n| ports(*n))
            .collect();
        let set = |v: &[String]| {
            v.iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = format!(
            "table bridge ipfosplit {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
             iifname {{ {a} }} oifname {{ {b} }} drop\n    iifname {{ {b} }} oifname {{ {a} }} drop\n  }}\n}}\n",
            a = set(&a),
            b = set(&b)
        );
        let file = self.dir.join("split.nft");
        fs::write(&file, rules).expect("nft rules");
        run(&[
            "ip",
            "netns",
            "exec",
            &lan,
            "nft",
            "-f",
            &file.to_string_lossy(),
        ]);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Makes a CA, a server certificate for every etcd member's address, a client
    /// certificate, and a second CA (openssl, EC P-256); etcd started after this serves its
    /// clients over TLS only and asks each for a certificate the CA signed
    /// (`--client-cert-auth`), and members get the CA, certificate and key in their
    /// configuration. Peers keep plain HTTP on the lab's own bridge.
    pub fn enable_tls(&mut self) {
        self.enable_tls_as(true);
    }

    /// [`GroupLab::enable_tls`], with a server certificate for `serverAuth` alone unless
    /// `server_client_auth` (the mistake etcd 3.4's gateway turns into "connection closed").
    pub fn enable_tls_as(&mut self, server_client_auth: bool) {
        let d = self.dir.join("tls");
        fs::create_dir_all(&d).expect("tls directory");
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("openssl (scripts/deps test installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut a = vec!["req", "-x509"];
            a.extend_from_slice(&ec);
            let (key, crt, subj) = (
                p(&format!("{ca}.key")),
                p(&format!("{ca}.pem")),
                format!("/CN=ipfailover lab {ca}"),
            );
            a.extend_from_slice(&["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]);
            openssl(&a);
        }
        let sans = (1..=self.etcds)
            .map(|j| format!("IP:203.0.113.{j}"))
            .collect::<Vec<_>>()
            .join(",");
        for (name, ext) in [
            // etcd 3.4's JSON gateway shows the server's certificate to etcd's gRPC port as a
            // client certificate: with --client-cert-auth it must allow clientAuth too.
            (
                "server",
                format!(
                    "subjectAltName={sans}\nextendedKeyUsage=serverAuth{}",
                    if server_client_auth {
                        ",clientAuth"
                    } else {
                        ""
                    }
                ),
            ),
            ("client", "extendedKeyUsage=clientAuth".to_string()),
        ] {
            let (key, csr, crt) = (
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.pem")),
            );
            let subj = format!("/CN=ipfailover lab {name}");
            let mut a = vec!["req"];
            a.extend_from_slice(&ec);
            a.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&a);
            let extfile = p(&format!("{name}.ext"));
            fs::write(&extfile, ext).expect("extension file");
            let (ca, cakey) = (p("ca.pem"), p("ca.key"));
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &cakey,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ]);
        }
        self.tls = Some(TlsFiles {
            ca: p("ca.pem"),
            cert: p("client.pem"),
            key: p("client.key"),
            other_ca: p("other-ca.pem"),
        });
    }

    /// Starts etcd member `j` (its data directory kept across restarts).
    pub fn start_etcd(&mut self, j: usize) {
        let data = self.dir.join(format!("etcd{j}"));
        fs::create_dir_all(&data).expect("etcd data directory");
        let me = format!("203.0.113.{j}");
        let scheme = self.scheme();
        let cluster = (1..=self.etcds)
            .map(|k| format!("e{k}=http://203.0.113.{k}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = vec![
            "etcd".into(),
            format!("--name=e{j}"),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={scheme}://{me}:2379"),
            format!("--advertise-client-urls={scheme}://{me}:2379"),
            format!("--listen-peer-urls=http://{me}:2380"),
            format!("--initial-advertise-peer-urls=http://{me}:2380"),
            format!("--initial-cluster={cluster}"),
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={}", self.prefix),
            // Short, as a LAN allows: elections within a second (by default).
            format!("--heartbeat-interval={}", self.etcd_election_ms / 10),
            format!("--election-timeout={}", self.etcd_election_ms),
            "--logger=zap".into(),
            "--log-level=warn".into(),
            // The lab's etcd is thrown away: fsync would only slow the tests.
            "--unsafe-no-fsync".into(),
        ];
        if let Some(tls) = &self.tls {
            let d = self.dir.join("tls");
            args.extend([
                format!("--cert-file={}", d.join("server.pem").display()),
                format!("--key-file={}", d.join("server.key").display()),
                format!("--trusted-ca-file={}", tls.ca),
                "--client-cert-auth".into(),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let idx = self.launch(Node::Etcd(j), &format!("etcd{j}"), &argv, false);
        self.etcd_procs.insert(j, idx);
    }

    /// Starts every etcd member and waits until the cluster has a leader.
    pub fn start_etcd_cluster(&mut self) {
        for j in 1..=self.etcds {
            self.start_etcd(j);
        }
        assert!(
            wait_for(Duration::from_secs(20), || self.etcd_leader().is_some()).is_some(),
            "the lab's etcd cluster never elected a leader:\n{}",
            self.logs()
        );
    }

    /// `etcdctl ARGS` against the cluster, from member 1's namespace... or any etcd's.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let endpoints = format!("--endpoints={}", self.endpoints());
        let mut argv = vec![
            "etcdctl".to_string(),
            endpoints,
            "--dial-timeout=1s".into(),
            "--command-timeout=2s".into(),
        ];
        if let Some(tls) = &self.tls {
            argv.push(format!("--cacert={}", tls.ca));
            argv.push(format!("--cert={}", tls.cert));
            argv.push(format!("--key={}", tls.key));
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        let live = (1..=self.etcds)
            .find(|j| self.etcd_procs.contains_key(j))
            .unwrap_or(1);
        let ns = self.ns(Node::Etcd(live));
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(&argv)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The etcd member that leads, if the cluster has a leader.
    pub fn etcd_leader(&self) -> Option<usize> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
        for s in v.as_array()? {
            let id = s["Status"]["header"]["member_id"].as_u64()?;
            let leader = s["Status"]["leader"].as_u64()?;
            if id == leader && leader != 0 {
                let ep = s["Endpoint"].as_str()?;
                let j = ep
                    .trim_start_matches(self.scheme())
                    .trim_start_matches("://203.0.113.")
                    .trim_end_matches(":2379")
                    .parse()
                    .ok()?;
                return Some(j);
            }
        }
        None
    }

    /// `etcdctl snapshot save FILE` from etcd member `j` (a snapshot is taken of one
    /// member); whether it succeeded.
    pub fn save_etcd_snapshot(&self, j: usize, file: &std::path::Path) -> bool {
        let endpoint = format!("--endpoints={}://203.0.113.{j}:2379", self.scheme());
        let file = file.to_string_lossy();
        let mut argv = vec!["ip", "netns", "exec", "", "etcdctl", &endpoint];
        let ns = self.ns(Node::Etcd(j));
        argv[3] = &ns;
        let tls: Vec<String> = self
            .tls
            .iter()
            .flat_map(|t| {
                [
                    format!("--cacert={}", t.ca),
                    format!("--cert={}", t.cert),
                    format!("--key={}", t.key),
                ]
            })
            .collect();
        argv.extend(tls.iter().map(String::as_str));
        argv.extend(["snapshot", "save", &file]);
        Command::new(argv[0])
            .args(&argv[1..])
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Restores the whole etcd cluster from `file` (`etcdctl snapshot restore` for each
    /// member, its old data directory thrown away) and starts it again: etcd's revision goes
    /// back to the snapshot's. Waits for a leader.
    pub fn restore_etcd_cluster(&mut self, file: &std::path::Path) {
        for j in 1..=self.etcds {
            self.kill_etcd(j);
        }
        let cluster = (1..=self.etcds)
            .map(|k| format!("e{k}=http://203.0.113.{k}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        for j in 1..=self.etcds {
            let data = self.dir.join(format!("etcd{j}"));
            let _ = fs::remove_dir_all(&data);
            // Offline (files only), but in the lab's namespace all the same.
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns(Node::Etcd(j)), "etcdctl"])
                .args(["snapshot", "restore", &file.to_string_lossy()])
                .arg(format!("--name=e{j}"))
                .arg(format!("--initial-cluster={cluster}"))
                .arg(format!("--initial-cluster-token={}", self.prefix))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://203.0.113.{j}:2380"
                ))
                .arg(format!("--data-dir={}", data.display()))
                .env("ETCDCTL_API", "3")
                .stdin(Stdio::null())
                .output()
                .expect("etcdctl snapshot restore");
            assert!(
                out.status.success(),
                "etcdctl snapshot restore: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for j in 1..=self.etcds {
            self.start_etcd(j);
        }
        assert!(
            wait_for(Duration::from_secs(20), || self.etcd_leader().is_some()).is_some(),
            "the restored etcd cluster never elected a leader:\n{}",
            self.logs()
        );
    }

    /// Kills etcd member `j` (SIGKILL).
    pub fn kill_etcd(&mut self, j: usize) {
        if let Some(idx) = self.etcd_procs.remove(&j) {
            self.procs[idx].signal(libc::SIGKILL);
            let _ = self.procs[idx].wait_exit(Duration::from_secs(5));
        }
    }

    /// Writes member `i`'s configuration: the lab's defaults and `extra` (later keys win).
    pub fn member_conf(&self, i: usize, extra: &[(&str, &str)]) -> String {
        let state = self.state_dir(i).to_string_lossy().into_owned();
        let scripts = self.dir.join("scripts").to_string_lossy().into_owned();
        let mut lines: Vec<(String, String)> = vec![
            ("FAILOVER_ETCD_ENDPOINTS".into(), self.endpoints()),
            ("FAILOVER_GROUP".into(), "web".into()),
            (
                "FAILOVER_GROUP_IP_PAIRS".into(),
                format!("eth0:{}/24", vip(0)),
            ),
            ("FAILOVER_MEMBER_NAME".into(), member_name(i)),
            ("FAILOVER_PRIORITY".into(), format!("{}", 200 - 10 * i)),
            ("FAILOVER_LEASE_TTL".into(), "2s".into()),
            ("FAILOVER_SCRIPT_DIR".into(), scripts),
            ("FAILOVER_STATE_DIR".into(), state),
        ];
        if let Some(tls) = &self.tls {
            lines.push(("FAILOVER_ETCD_CA_FILE".into(), tls.ca.clone()));
            lines.push(("FAILOVER_ETCD_CERT_FILE".into(), tls.cert.clone()));
            lines.push(("FAILOVER_ETCD_KEY_FILE".into(), tls.key.clone()));
        }
        for (k, v) in extra {
            lines.retain(|(key, _)| key != k);
            lines.push((k.to_string(), v.to_string()));
        }
        let refs: Vec<(&str, &str)> = lines
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = self.dir.join(format!("m{i}.conf"));
        fs::write(&path, hostconfig(&refs)).expect("member configuration");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        path.to_string_lossy().into_owned()
    }

    /// `failoverd -t -c conf` inside member `i`'s namespace, where the lab's etcd answers.
    pub fn check_config(&self, i: usize, conf: &str) -> std::process::Output {
        let failoverd = bin("failoverd").to_string_lossy().into_owned();
        Command::new("ip")
            .args(["netns", "exec", &self.ns(Node::Member(i))])
            .args([failoverd.as_str(), "-t", "-c", conf])
            .output()
            .expect("failoverd -t")
    }

    /// Member `i`'s state directory.
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state-m{i}"))
    }

    /// Starts failoverd on member `i`; its process index.
    pub fn start_member(&mut self, i: usize, extra: &[(&str, &str)]) -> usize {
        let conf = self.member_conf(i, extra);
        let prog = bin("failoverd").to_string_lossy().into_owned();
        let idx = self.launch(
            Node::Member(i),
            &format!("m{i}"),
            &[&prog, "-c", &conf],
            true,
        );
        self.member_procs.insert(i, idx);
        idx
    }

    /// Member `i`'s failoverd.
    pub fn member(&mut self, i: usize) -> &mut Proc {
        let idx = self.member_procs[&i];
        &mut self.procs[idx]
    }

    /// Sends a signal to member `i`'s failoverd.
    pub fn signal_member(&mut self, i: usize, sig: i32) {
        self.member(i).signal(sig);
    }

    /// Member `i` dies: failoverd SIGKILLed and both links down.
    pub fn kill_member(&mut self, i: usize) {
        self.member_links(i, false);
        self.signal_member(i, libc::SIGKILL);
        assert!(self.member(i).wait_exit(Duration::from_secs(5)).is_some());
    }

    /// Sets member `i`'s links down or up.
    pub fn member_links(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        for ifname in ["eth0", "eth1"] {
            self.ip(Node::Member(i), &["link", "set", ifname, state]);
        }
    }

    /// Cuts member `i` off from etcd (its etcd link down), or joins it again; the client
    /// still reaches it.
    pub fn cut_from_etcd(&self, i: usize, cut: bool) {
        let state = if cut { "down" } else { "up" };
        self.ip(Node::Member(i), &["link", "set", "eth1", state]);
    }

    /// Drops (or stops dropping) everything member `i` sends or receives on its etcd link,
    /// as a firewall or a broken switch would: the link stays up, connections hang.
    pub fn firewall_etcd(&self, i: usize, on: bool) {
        let ns = self.ns(Node::Member(i));
        let _ = run_ok(&[
            "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "ipfocut",
        ]);
        if on {
            let rules = "table inet ipfocut {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    iifname \"eth1\" drop\n  }\n  chain output {\n    type filter hook output priority 0; policy accept;\n    oifname \"eth1\" drop\n  }\n}\n";
            let file = self.dir.join(format!("cut-m{i}.nft"));
            fs::write(&file, rules).expect("nft rules");
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "nft",
                "-f",
                &file.to_string_lossy(),
            ]);
        }
    }

    /// Which members have `addr` on their eth0 now, with the link up (answering).
    pub fn holders_now(&self, addr: &str) -> Vec<usize> {
        (1..=self.members)
            .filter(|i| {
                self.ip(
                    Node::Member(*i),
                    &["-o", "addr", "show", "dev", "eth0", "up"],
                )
                .contains(&format!("inet {addr}/"))
            })
            .collect()
    }

    /// Waits until exactly one member holds `addr`; which.
    pub fn wait_one_holder(&self, addr: &str, limit: Duration) -> Option<usize> {
        let mut found = None;
        wait_for(limit, || {
            let h = self.holders_now(addr);
            found = (h.len() == 1).then(|| h[0]);
            found.is_some()
        })?;
        found
    }

    /// Waits until exactly one member other than `not` holds `addr`; which.
    pub fn wait_one_holder_other_than(
        &self,
        addr: &str,
        not: usize,
        limit: Duration,
    ) -> Option<usize> {
        let mut found = None;
        wait_for(limit, || {
            let h = self.holders_now(addr);
            found = (h.len() == 1 && h[0] != not).then(|| h[0]);
            found.is_some()
        })?;
        found
    }

    /// Member `i`'s status file, parsed (`Null` if absent).
    pub fn status(&self, i: usize) -> serde_json::Value {
        let path = self.state_dir(i).join("failoverd.json");
        serde_json::from_str(&read(&path)).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the client reaches `addr` (one ping, a second to answer).
    pub fn client_reaches(&self, addr: &str) -> bool {
        let ns = self.ns(Node::Cli);
        let dst: IpAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("ping: {addr} is not an address: {e}"));
        crate::icmp::ping_in(&ns, dst, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("ping {addr} from the client: {e}"))
    }

    /// The MAC of member `i`'s eth0.
    pub fn member_mac(&self, i: usize) -> String {
        let out = self.ip(Node::Member(i), &["-o", "link", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or("")
            .to_string()
    }

    /// The MAC the client has for `addr`, if any.
    pub fn client_neigh(&self, addr: &str) -> Option<String> {
        let out = self.ip(Node::Cli, &["neigh", "show", addr]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    /// Everything the lab's processes logged.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            s.push_str(&format!("----- {} ({}) -----\n", p.name, p.log.display()));
            let text = p.log_text();
            // The tail: a long test's logs would drown the failure.
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(150);
            for l in &lines[from..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Waits until member `i`'s log contains `needle`.
    pub fn wait_log(&mut self, i: usize, needle: &str, limit: Duration) -> bool {
        let log = self.member(i).log.clone();
        wait_for(limit, || read(&log).contains(needle)).is_some()
    }

    /// Starts sampling every member's eth0 for the group's addresses `addrs` (member `i` is
    /// label `i` in the timeline).
    pub fn sampler(&self, addrs: &[String]) -> Sampler {
        let nodes = (1..=self.members)
            .map(|i| (i, self.ns(Node::Member(i))))
            .collect();
        Sampler::start(nodes, addrs)
    }
}

impl Drop for GroupLab {
    fn drop(&mut self) {
        self.procs.clear();
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
