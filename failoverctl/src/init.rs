//! `failoverctl init --primary | --secondary`: writes a checked configuration and the secret
//! file, as AFMfail's `setup` did, asking only what it cannot work out. Non-interactive with
//! options (configuration management); on a terminal it asks for what is missing, proposing
//! what this host's interfaces suggest.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipfailover::settings::Role;
use ipfailover_os::daemon::{self, exit};
use ipfailover_os::interfaces::{self, LocalAddr};

/// What `init` was told.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The primary (heartbeatd) rather than the secondary.
    pub primary: bool,
    /// The primary's public address (secondary).
    pub peer: Option<IpAddr>,
    /// `iface:address[/prefix]` to take over (secondary); default: the peer's address on
    /// the interface whose subnet holds it.
    pub pairs: Vec<String>,
    /// Where heartbeats go (primary); default: the broadcast address of each IPv4 subnet.
    pub bcast: Vec<IpAddr>,
    /// `FAILOVER_INTERVAL` (primary) or `FAILOVER_TIMEOUT` (secondary), if given.
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Mail to (secondary).
    pub email: Vec<String>,
    /// The secret file: made (mode 0600) if absent; copy it to the other host.
    pub secret_file: PathBuf,
    /// `FAILOVER_STATE_DIR` and `FAILOVER_SCRIPT_DIR`, if not the defaults.
    pub state_dir: Option<PathBuf>,
    pub script_dir: Option<PathBuf>,
    /// The file written.
    pub output: PathBuf,
    /// Write over an existing file.
    pub force: bool,
}

/// The broadcast address of each IPv4 subnet of this host but loopback's, in interface order.
pub fn proposed_bcast(locals: &[LocalAddr]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for l in locals {
        if let IpAddr::V4(a) = l.addr {
            if a.is_loopback() || a.is_link_local() || l.prefix >= 31 {
                continue;
            }
            let mask = u32::MAX.checked_shl(32 - u32::from(l.prefix)).unwrap_or(0);
            let b = IpAddr::V4(Ipv4Addr::from(u32::from(a) | !mask));
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    out
}

/// The interface whose subnet holds `peer`, if any.
pub fn iface_for(locals: &[LocalAddr], peer: IpAddr) -> Option<String> {
    locals
        .iter()
        .filter(|l| l.addr != peer && l.contains(peer))
        .max_by_key(|l| l.prefix)
        .map(|l| l.iface.clone())
}

fn ask(question: &str, proposal: &str) -> Option<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let mut out = std::io::stderr();
    if proposal.is_empty() {
        let _ = write!(out, "{question}: ");
    } else {
        let _ = write!(out, "{question} [{proposal}]: ");
    }
    let _ = out.flush();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).ok()?;
    let line = line.trim();
    Some(if line.is_empty() {
        proposal.to_string()
    } else {
        line.to_string()
    })
}

/// Runs `init`; the exit code.
pub fn init(mut o: InitOptions) -> i32 {
    if o.output.exists() && !o.force {
        eprintln!(
            "failoverctl init: {} exists: not written over (--force replaces it)",
            o.output.display()
        );
        return exit::CONFIG;
    }
    let locals = interfaces::local_addrs().unwrap_or_default();
    let mut lines: Vec<(String, String)> = Vec::new();
    if o.primary {
        if o.bcast.is_empty() {
            let proposal = proposed_bcast(&locals)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            let answer = ask(
                "Broadcast addresses of the public and the private subnet",
                &proposal,
            )
            .unwrap_or(proposal);
            o.bcast = answer
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect();
        }
        if o.bcast.is_empty() {
            eprintln!(
                "failoverctl init --primary: no broadcast address found on this host: give \
                 them with --bcast"
            );
            return exit::USAGE;
        }
        let b: Vec<String> = o.bcast.iter().map(ToString::to_string).collect();
        lines.push(("FAILOVER_BCAST_IPS".into(), b.join(" ")));
        if let Some(i) = &o.interval {
            lines.push(("FAILOVER_INTERVAL".into(), i.clone()));
        }
    } else {
        if o.peer.is_none() {
            o.peer = ask("The primary's public address", "").and_then(|a| a.parse().ok());
        }
        let Some(peer) = o.peer else {
            eprintln!(
                "failoverctl init --secondary: the primary's address is needed: --peer ADDRESS"
            );
            return exit::USAGE;
        };
        if o.pairs.is_empty() {
            let proposal = iface_for(&locals, peer)
                .map(|i| format!("{i}:{peer}"))
                .unwrap_or_default();
            let answer =
                ask("Addresses to take over (iface:address ...)", &proposal).unwrap_or(proposal);
            o.pairs = answer.split_whitespace().map(str::to_string).collect();
        }
        if o.pairs.is_empty() {
            eprintln!(
                "failoverctl init --secondary: no interface of this host is on {peer}'s subnet: \
                 give the addresses with --pairs iface:address"
            );
            return exit::USAGE;
        }
        lines.push(("FAILOVER_PEER_IP".into(), peer.to_string()));
        lines.push(("FAILOVER_PEER_IP_PAIRS".into(), o.pairs.join(" ")));
        if let Some(t) = &o.timeout {
            lines.push(("FAILOVER_TIMEOUT".into(), t.clone()));
        }
        if !o.email.is_empty() {
            lines.push(("FAILOVER_EMAIL_RECIPIENT".into(), o.email.join(" ")));
        }
        if let Some(d) = &o.script_dir {
            lines.push(("FAILOVER_SCRIPT_DIR".into(), d.display().to_string()));
        }
    }
    if let Err(e) = make_secret(&o.secret_file) {
        eprintln!("failoverctl init: {e}");
        return exit::FAILURE;
    }
    lines.push((
        "FAILOVER_SECRET_FILE".into(),
        o.secret_file.display().to_string(),
    ));
    if let Some(d) = &o.state_dir {
        lines.push(("FAILOVER_STATE_DIR".into(), d.display().to_string()));
    }
    let role = if o.primary {
        Role::Heartbeatd
    } else {
        Role::Failoverd
    };
    let text = render(&lines, o.primary);
    if let Some(parent) = o.output.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("failoverctl init: {}: {e}", parent.display());
            return exit::FAILURE;
        }
    }
    if let Err(e) = ipfailover_os::safe_fs::write_atomic(&o.output, text.as_bytes(), 0o644) {
        eprintln!("failoverctl init: cannot write {}: {e}", o.output.display());
        return exit::FAILURE;
    }
    // The same check as `-t`.
    let roles = [role];
    match ipfailover_os::check::check_file(&o.output, &roles) {
        Ok(checked) => {
            print!("{}", checked.settings.render());
            for line in &checked.notes {
                println!("{line}");
            }
            eprintln!(
                "failoverctl init: wrote {} ({}); copy {} to the other host (mode 0600)",
                o.output.display(),
                if o.primary {
                    "heartbeatd: systemctl enable --now heartbeatd"
                } else {
                    "failoverd: systemctl enable --now failoverd"
                },
                o.secret_file.display()
            );
            exit::OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}", ipfailover_os::check::not_valid(&o.output, &roles));
            exit::CONFIG
        }
    }
}

/// A new secret file with 32 random bytes (as hex), mode 0600, unless one exists (the one
/// copied from the other host).
fn make_secret(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let mut hex = String::new();
    for _ in 0..4 {
        hex.push_str(&format!("{:016x}", daemon::random_u64()));
    }
    hex.push('\n');
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    ipfailover_os::safe_fs::write_atomic(path, hex.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write the secret {}: {e}", path.display()))
}

fn render(lines: &[(String, String)], primary: bool) -> String {
    let mut s = format!(
        "# /etc/ipfailover/hostconfig on the {} (written by failoverctl init).\n\
         # Every key: man ipfailover-hostconfig, or docs/configuration.md.\n\n",
        if primary {
            "PRIMARY (runs heartbeatd)"
        } else {
            "SECONDARY (runs failoverd)"
        }
    );
    for (k, v) in lines {
        s.push_str(&format!("{k}=\"{v}\"\n"));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn local(iface: &str, addr: &str, prefix: u8) -> LocalAddr {
        LocalAddr {
            iface: iface.into(),
            addr: addr.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn broadcasts_and_the_peers_interface_are_worked_out() {
        let locals = [
            local("lo", "127.0.0.1", 8),
            local("eth0", "198.51.100.20", 24),
            local("eth1", "203.0.113.20", 25),
            local("eth0", "2001:db8::20", 64),
        ];
        assert_eq!(
            proposed_bcast(&locals),
            vec![
                "198.51.100.255".parse::<IpAddr>().unwrap(),
                "203.0.113.127".parse().unwrap()
            ]
        );
        assert_eq!(
            iface_for(&locals, "198.51.100.10".parse().unwrap()).as_deref(),
            Some("eth0")
        );
        assert_eq!(iface_for(&locals, "192.0.2.1".parse().unwrap()), None);
    }
}
