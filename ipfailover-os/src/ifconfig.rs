//! The command back end: `ifconfig IFACE alias` and `-alias`, as on macOS.
//!
//! It is macOS's back end, and runs anywhere a program with macOS's `ifconfig` syntax is
//! given, which is how it is tested on Linux.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::addrs::{AddressBackend, ResolvedPair};
use crate::interfaces::netmask_v4;

/// Adds and removes addresses by running `ifconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ifconfig {
    program: PathBuf,
}

impl Ifconfig {
    /// A back end that runs `program` with macOS's `ifconfig` syntax.
    pub fn new(program: impl Into<PathBuf>) -> Ifconfig {
        Ifconfig {
            program: program.into(),
        }
    }

    /// Runs the program with `args`; its standard output, or an error naming the command line
    /// and quoting its standard error.
    fn run(&self, args: &[String]) -> io::Result<String> {
        let line = command_line(&self.program, args);
        log::debug!("running `{line}`");
        let output = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{line}`: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(io::Error::other(format!(
                "`{line}` failed ({}): {}",
                output.status,
                stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Default for Ifconfig {
    /// `/sbin/ifconfig`.
    fn default() -> Ifconfig {
        Ifconfig::new("/sbin/ifconfig")
    }
}

fn command_line(program: &std::path::Path, args: &[String]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// `ifconfig IFACE alias ADDR netmask MASK` or `ifconfig IFACE inet6 ADDR prefixlen P alias`.
fn add_args(pair: &ResolvedPair) -> Vec<String> {
    match pair.addr {
        IpAddr::V4(a) => vec![
            pair.iface.clone(),
            "alias".into(),
            a.to_string(),
            "netmask".into(),
            netmask_v4(pair.prefix).to_string(),
        ],
        IpAddr::V6(a) => vec![
            pair.iface.clone(),
            "inet6".into(),
            a.to_string(),
            "prefixlen".into(),
            pair.prefix.to_string(),
            "alias".into(),
        ],
    }
}

/// `ifconfig IFACE -alias ADDR` or `ifconfig IFACE inet6 ADDR -alias`.
fn remove_args(pair: &ResolvedPair) -> Vec<String> {
    match pair.addr {
        IpAddr::V4(a) => vec![pair.iface.clone(), "-alias".into(), a.to_string()],
        IpAddr::V6(a) => vec![
            pair.iface.clone(),
            "inet6".into(),
            a.to_string(),
            "-alias".into(),
        ],
    }
}

/// Whether the output of `ifconfig IFACE` lists `addr` on an `inet ADDR` or `inet6 ADDR[%scope]`
/// line.
pub(crate) fn output_holds(output: &str, addr: IpAddr) -> bool {
    output.lines().any(|line| {
        let mut tokens = line.split_whitespace();
        let listed = match (tokens.next(), tokens.next()) {
            (Some("inet"), Some(a)) => a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
            (Some("inet6"), Some(a)) => {
                let a = a.split_once('%').map_or(a, |(a, _scope)| a);
                a.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
            }
            _ => None,
        };
        listed == Some(addr)
    })
}

/// The Ethernet address on the `ether XX:XX:XX:XX:XX:XX` line of the output of
/// `ifconfig IFACE`, if there is one.
pub(crate) fn output_ether(output: &str) -> Option<[u8; 6]> {
    output.lines().find_map(|line| {
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("ether") {
            return None;
        }
        let text = tokens.next()?;
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(mac)
    })
}

impl Ifconfig {
    /// The interface's Ethernet (MAC) address, from the `ether` line of `ifconfig IFACE`:
    /// `NotFound` if the interface does not exist, `Unsupported` if it has no such line
    /// (loopback, a tunnel).
    pub fn mac_address(&self, iface: &str) -> io::Result<[u8; 6]> {
        let output = self.run(&[iface.to_string()]).map_err(|e| {
            if e.to_string().contains("does not exist") {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface `{iface}` does not exist"),
                )
            } else {
                e
            }
        })?;
        output_ether(&output).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("interface `{iface}` has no Ethernet address"),
            )
        })
    }
}

impl AddressBackend for Ifconfig {
    fn name(&self) -> &'static str {
        "ifconfig"
    }

    fn add(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        if self.holds(pair)? {
            return Ok(false);
        }
        self.run(&add_args(pair))?;
        Ok(true)
    }

    fn remove(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        if !self.holds(pair)? {
            return Ok(false);
        }
        self.run(&remove_args(pair))?;
        Ok(true)
    }

    fn holds(&mut self, pair: &ResolvedPair) -> io::Result<bool> {
        let output = self.run(std::slice::from_ref(&pair.iface))?;
        Ok(output_holds(&output, pair.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MACOS_OUTPUT: &str = "\
en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\toptions=6463<RXCSUM,TXCSUM,TSO4,TSO6,CHANNEL_IO,PARTIAL_CSUM,ZEROINVERT_CSUM>
\tether 3c:22:fb:00:00:01
\tinet6 fe80::1c8a:2bff:fe00:1%en0 prefixlen 64 secured scopeid 0x4
\tinet 198.51.100.20 netmask 0xffffff00 broadcast 198.51.100.255
\tinet 198.51.100.10 netmask 0xffffff00 broadcast 198.51.100.255
\tinet6 2001:db8::10 prefixlen 64
\tnd6 options=201<PERFORMNUD,DAD>
\tmedia: autoselect
\tstatus: active
";

    #[test]
    fn parses_macos_output() {
        let has = |s: &str| output_holds(MACOS_OUTPUT, s.parse().expect("addr"));
        assert!(has("198.51.100.20"));
        assert!(has("198.51.100.10"));
        assert!(!has("198.51.100.1"));
        assert!(!has("198.51.100.255"));
        assert!(has("2001:db8::10"));
        assert!(has("2001:0db8:0:0::10"), "compared as addresses, not text");
        assert!(has("fe80::1c8a:2bff:fe00:1"));
        assert!(!has("2001:db8::1"));
        assert_eq!(
            output_ether(MACOS_OUTPUT),
            Some([0x3c, 0x22, 0xfb, 0x00, 0x00, 0x01])
        );
        assert_eq!(
            output_ether("lo0: flags=8049<UP,LOOPBACK>\n\tinet 127.0.0.1\n"),
            None
        );
        assert_eq!(output_ether("\tether 3c:22:fb:00:00\n"), None, "five bytes");
        assert_eq!(
            output_ether("\tether 3c:22:fb:00:00:01:02\n"),
            None,
            "seven"
        );
        assert_eq!(output_ether("\tether 3c:22:fb:00:00:zz\n"), None);
    }

    /// A fake `ifconfig` in a directory of its own: it logs its arguments to `log`, prints a
    /// header and the lines of `state` for `ifconfig IFACE`, and edits `state` on alias and
    /// -alias, as macOS's would. Interface `bad` fails as a missing interface does.
    struct FakeIfconfig {
        dir: PathBuf,
    }

    const SCRIPT: &str = r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/log"
if [ "$1" = bad ]; then
    echo "ifconfig: interface bad does not exist" >&2
    exit 1
fi
if [ $# -eq 1 ]; then
    echo "$1: flags=8863<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500"
    cat "$d/state"
    exit 0
fi
case "$2 $#" in
"alias 5")
    printf '\tinet %s netmask %s\n' "$3" "$5" >> "$d/state" ;;
"-alias 3")
    grep -v "inet $3 " "$d/state" > "$d/state.new"; mv "$d/state.new" "$d/state" ;;
"inet6 6")
    printf '\tinet6 %s prefixlen %s\n' "$3" "$5" >> "$d/state" ;;
"inet6 4")
    grep -v "inet6 $3 " "$d/state" > "$d/state.new"; mv "$d/state.new" "$d/state" ;;
*)
    echo "fake ifconfig: unexpected arguments: $*" >&2
    exit 64 ;;
esac
"#;

    impl FakeIfconfig {
        fn new() -> FakeIfconfig {
            static COUNT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ipfo-os-ifconfig-{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).expect("temp dir");
            let script = dir.join("ifconfig");
            fs::write(&script, SCRIPT).expect("write fake ifconfig");
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
            fs::write(
                dir.join("state"),
                "\tether 02:00:5e:00:53:14\n\
                 \tinet6 fe80::1%fake0 prefixlen 64 scopeid 0x4\n\
                 \tinet 198.51.100.20 netmask 0xffffff00 broadcast 198.51.100.255\n",
            )
            .expect("write state");
            let fake = FakeIfconfig { dir };
            fake.wait_until_runnable();
            fake
        }

        /// Another test thread that forks while this one still has the script open for
        /// writing makes exec fail with ETXTBSY until that child execs; wait that out.
        fn wait_until_runnable(&self) {
            for _ in 0..200 {
                match Command::new(self.program()).arg("fake0").output() {
                    Ok(_) => {
                        fs::write(self.dir.join("log"), "").expect("clear log");
                        return;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(e) => panic!("cannot run the fake ifconfig: {e}"),
                }
            }
            panic!("the fake ifconfig stayed busy (ETXTBSY) for 2 s");
        }

        fn program(&self) -> PathBuf {
            self.dir.join("ifconfig")
        }

        fn backend(&self) -> Ifconfig {
            Ifconfig::new(self.program())
        }

        /// The argument lines logged since the last call.
        fn take_log(&self) -> Vec<String> {
            let path = self.dir.join("log");
            let log = fs::read_to_string(&path).unwrap_or_default();
            fs::write(&path, "").expect("clear log");
            log.lines().map(str::to_string).collect()
        }
    }

    impl Drop for FakeIfconfig {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn resolved(iface: &str, addr: &str, prefix: u8) -> ResolvedPair {
        ResolvedPair {
            iface: iface.into(),
            index: 4,
            addr: addr.parse().expect("addr"),
            prefix,
        }
    }

    #[test]
    fn adds_and_removes_ipv4_with_alias() {
        let fake = FakeIfconfig::new();
        let mut b = fake.backend();
        let vip = resolved("en0", "198.51.100.10", 24);
        assert!(b.add(&vip).expect("add"));
        assert_eq!(
            fake.take_log(),
            ["en0", "en0 alias 198.51.100.10 netmask 255.255.255.0"]
        );
        assert!(b.holds(&vip).expect("holds"));
        fake.take_log();
        assert!(!b.add(&vip).expect("add again"));
        assert_eq!(
            fake.take_log(),
            ["en0"],
            "no alias command when already held"
        );
        assert!(b.remove(&vip).expect("remove"));
        assert_eq!(fake.take_log(), ["en0", "en0 -alias 198.51.100.10"]);
        assert!(!b.holds(&vip).expect("holds"));
        fake.take_log();
        assert!(!b.remove(&vip).expect("remove again"));
        assert_eq!(fake.take_log(), ["en0"], "no -alias command when absent");
        // The interface's own address is still there.
        assert!(b
            .holds(&resolved("en0", "198.51.100.20", 24))
            .expect("holds"));
    }

    #[test]
    fn adds_a_host_address_with_a_full_netmask() {
        let fake = FakeIfconfig::new();
        let mut b = fake.backend();
        assert!(b.add(&resolved("en1", "203.0.113.10", 32)).expect("add"));
        assert_eq!(
            fake.take_log(),
            ["en1", "en1 alias 203.0.113.10 netmask 255.255.255.255"]
        );
    }

    #[test]
    fn adds_and_removes_ipv6_with_alias() {
        let fake = FakeIfconfig::new();
        let mut b = fake.backend();
        let vip = resolved("en0", "2001:db8::10", 64);
        assert!(b.add(&vip).expect("add"));
        assert_eq!(
            fake.take_log(),
            ["en0", "en0 inet6 2001:db8::10 prefixlen 64 alias"]
        );
        assert!(!b.add(&vip).expect("add again"));
        assert_eq!(fake.take_log(), ["en0"]);
        assert!(b.remove(&vip).expect("remove"));
        assert_eq!(fake.take_log(), ["en0", "en0 inet6 2001:db8::10 -alias"]);
        assert!(!b.remove(&vip).expect("remove again"));
        assert_eq!(fake.take_log(), ["en0"]);
        assert!(b.holds(&resolved("en0", "fe80::1", 64)).expect("holds"));
    }

    #[test]
    fn reads_the_mac_address_from_the_ether_line() {
        let fake = FakeIfconfig::new();
        let b = fake.backend();
        assert_eq!(
            b.mac_address("en0").expect("mac"),
            [0x02, 0x00, 0x5e, 0x00, 0x53, 0x14]
        );
        assert_eq!(fake.take_log(), ["en0"]);
        let err = b.mac_address("bad").expect_err("no such interface");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(err.to_string(), "interface `bad` does not exist");
        fs::write(
            fake.dir.join("state"),
            "\tinet 127.0.0.1 netmask 0xff000000\n",
        )
        .expect("state");
        let err = b.mac_address("lo0").expect_err("no ether line");
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_line_and_stderr() {
        let fake = FakeIfconfig::new();
        let mut b = fake.backend();
        let err = b
            .add(&resolved("bad", "198.51.100.10", 24))
            .expect_err("bad interface");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{} bad`", fake.program().display())),
            "{msg}"
        );
        assert!(msg.contains("interface bad does not exist"), "{msg}");
        let missing = Ifconfig::new(Path::new("/nonexistent/ifconfig"))
            .holds(&resolved("en0", "198.51.100.10", 24))
            .expect_err("no program");
        assert!(
            missing.to_string().contains("/nonexistent/ifconfig en0"),
            "{missing}"
        );
    }
}
