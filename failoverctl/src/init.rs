//! `failoverctl init --primary | --secondary | --group NAME`: writes a checked configuration and the secret
//! file, as AFMfail's `setup` did, asking only what it cannot work out. Non-interactive with
//! options (configuration management); on a terminal it asks for what is missing, proposing
//! what this host's interfaces suggest.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipfailover::settings::{quote_value, Role};
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
    /// A member of this group on etcd rather than a pair's host.
    pub group: Option<String>,
    /// The etcd endpoints (member).
    pub etcd: Vec<String>,
    /// `FAILOVER_PRIORITY` (member), if given.
    pub priority: Option<u8>,
    /// `FAILOVER_MEMBER_NAME` (member), if given.
    pub member_name: Option<String>,
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

/// Runs `init`; the exit code. It writes nothing unless everything is right: the values
/// can be written (quoted so that they read back as given), the configuration passes the
/// daemons' check, and both files can be written; on any failure whatever it made is removed.
pub fn init(mut o: InitOptions) -> i32 {
    if o.output.exists() && !o.force {
        eprintln!(
            "failoverctl init: {} exists: not written over (--force replaces it)",
            o.output.display()
        );
        return exit::CONFIG;
    }
    if o.output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        eprintln!(
            "failoverctl init: {}: init writes the hostconfig format (KEY=\"value\" lines): \
             name the file without .toml",
            o.output.display()
        );
        return exit::USAGE;
    }
    let locals = interfaces::local_addrs().unwrap_or_default();
    let mut lines: Vec<Line> = Vec::new();
    if let Some(group) = o.group.clone() {
        if o.etcd.is_empty() {
            let answer = ask("etcd's client URLs (http://host:2379 ...)", "").unwrap_or_default();
            o.etcd = answer.split_whitespace().map(str::to_string).collect();
        }
        if o.etcd.is_empty() {
            eprintln!("failoverctl init --group: etcd's endpoints are needed: --etcd URL [URL...]");
            return exit::USAGE;
        }
        if o.pairs.is_empty() {
            let answer =
                ask("The group's addresses (iface:address/prefix ...)", "").unwrap_or_default();
            o.pairs = answer.split_whitespace().map(str::to_string).collect();
        }
        if o.pairs.is_empty() {
            eprintln!(
                "failoverctl init --group: the group's addresses are needed: --pairs \
                 iface:address/prefix"
            );
            return exit::USAGE;
        }
        lines.push(Line::new(
            "FAILOVER_ETCD_ENDPOINTS",
            "--etcd",
            o.etcd.join(" "),
        ));
        lines.push(Line::new("FAILOVER_GROUP", "--group", group));
        lines.push(Line::new(
            "FAILOVER_GROUP_IP_PAIRS",
            "--pairs",
            o.pairs.join(" "),
        ));
        if let Some(p) = o.priority {
            lines.push(Line::new("FAILOVER_PRIORITY", "--priority", p.to_string()));
        }
        if let Some(n) = &o.member_name {
            lines.push(Line::new(
                "FAILOVER_MEMBER_NAME",
                "--member-name",
                n.clone(),
            ));
        }
        if !o.email.is_empty() {
            lines.push(Line::new(
                "FAILOVER_EMAIL_RECIPIENT",
                "--email",
                o.email.join(" "),
            ));
        }
        if let Some(d) = &o.script_dir {
            lines.push(Line::path("FAILOVER_SCRIPT_DIR", "--script-dir", d));
        }
        if let Some(d) = &o.state_dir {
            lines.push(Line::path("FAILOVER_STATE_DIR", "--state-dir", d));
        }
        return finish(&o, Role::Failoverd, &lines);
    }
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
        lines.push(Line::new("FAILOVER_BCAST_IPS", "--bcast", b.join(" ")));
        if let Some(i) = &o.interval {
            lines.push(Line::new("FAILOVER_INTERVAL", "--interval", i.clone()));
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
        lines.push(Line::new("FAILOVER_PEER_IP", "--peer", peer.to_string()));
        lines.push(Line::new(
            "FAILOVER_PEER_IP_PAIRS",
            "--pairs",
            o.pairs.join(" "),
        ));
        if let Some(t) = &o.timeout {
            lines.push(Line::new("FAILOVER_TIMEOUT", "--timeout", t.clone()));
        }
        if !o.email.is_empty() {
            lines.push(Line::new(
                "FAILOVER_EMAIL_RECIPIENT",
                "--email",
                o.email.join(" "),
            ));
        }
        if let Some(d) = &o.script_dir {
            lines.push(Line::path("FAILOVER_SCRIPT_DIR", "--script-dir", d));
        }
    }
    lines.push(Line::path(
        "FAILOVER_SECRET_FILE",
        "--secret-file",
        &o.secret_file,
    ));
    if let Some(d) = &o.state_dir {
        lines.push(Line::path("FAILOVER_STATE_DIR", "--state-dir", d));
    }
    let role = if o.primary {
        Role::Heartbeatd
    } else {
        Role::Failoverd
    };
    finish(&o, role, &lines)
}

/// Renders `lines`, checks and writes them; on a failure, removes whatever it made.
fn finish(o: &InitOptions, role: Role, lines: &[Line]) -> i32 {
    let text = match render(lines, o) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("failoverctl init: {e}: nothing written");
            return exit::USAGE;
        }
    };
    let mut made = Made::default();
    let code = write_checked(o, role, &text, &mut made);
    if code != exit::OK {
        made.undo();
    }
    code
}

/// Makes the secret if it is missing, checks the configuration as `-t` would, then writes
/// it; what it creates is recorded in `made`, for the caller to remove on failure.
fn write_checked(o: &InitOptions, role: Role, text: &str, made: &mut Made) -> i32 {
    if o.group.is_none() && !o.secret_file.exists() {
        if let Err(e) = make_secret(&o.secret_file, made) {
            eprintln!("failoverctl init: {e}: nothing written");
            return exit::FAILURE;
        }
    }
    // The same check as `-t`, on the text before it is written.
    let roles = [role];
    let checked = match ipfailover_os::check::check_text(text, &o.output, &roles) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: nothing written",
                ipfailover_os::check::not_valid(&o.output, &roles)
            );
            return exit::CONFIG;
        }
    };
    if let Some(parent) = o.output.parent() {
        if let Err(e) = made.dirs(parent) {
            eprintln!(
                "failoverctl init: {}: {e}: nothing written",
                parent.display()
            );
            return exit::FAILURE;
        }
    }
    if let Err(e) = ipfailover_os::safe_fs::write_atomic(&o.output, text.as_bytes(), 0o644) {
        eprintln!(
            "failoverctl init: cannot write {}: {e}: nothing written",
            o.output.display()
        );
        return exit::FAILURE;
    }
    print!("{}", checked.settings.render());
    for line in &checked.notes {
        println!("{line}");
    }
    match &o.group {
        Some(group) => eprintln!(
            "failoverctl init: wrote {} (a member of group {group}: systemctl enable --now \
             failoverd); run init --group {group} on every member, each with a name and a \
             priority of its own, and the same addresses",
            o.output.display(),
        ),
        None => eprintln!(
            "failoverctl init: wrote {} ({}); copy {} to the other host (mode 0600)",
            o.output.display(),
            if o.primary {
                "heartbeatd: systemctl enable --now heartbeatd"
            } else {
                "failoverd: systemctl enable --now failoverd"
            },
            o.secret_file.display()
        ),
    }
    exit::OK
}

/// What `init` created, newest last, so that a failure leaves nothing behind.
#[derive(Debug, Default)]
struct Made {
    /// Directories (made by us, so empty but for what else we made) and files.
    paths: Vec<(PathBuf, bool)>,
}

impl Made {
    /// `create_dir_all`, recording each directory it makes.
    fn dirs(&mut self, dir: &Path) -> std::io::Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(d)?;
            self.paths.push((d.to_path_buf(), true));
        }
        Ok(())
    }

    fn file(&mut self, path: &Path) {
        self.paths.push((path.to_path_buf(), false));
    }

    /// Removes what was made, newest first.
    fn undo(self) {
        for (path, is_dir) in self.paths.into_iter().rev() {
            let removed = if is_dir {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                eprintln!("failoverctl init: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// One key to write, with the option (or question) its value came from.
#[derive(Debug)]
struct Line {
    key: &'static str,
    option: &'static str,
    /// The value, or why it cannot be written.
    value: Result<String, String>,
}

impl Line {
    fn new(key: &'static str, option: &'static str, value: String) -> Line {
        Line {
            key,
            option,
            value: Ok(value),
        }
    }

    /// A path, as its text: one that is not UTF-8 cannot be written (shown lossily, it would
    /// name another file).
    fn path(key: &'static str, option: &'static str, path: &Path) -> Line {
        Line {
            key,
            option,
            value: path
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{} is not UTF-8", path.display())),
        }
    }
}

/// A new secret file with 32 random bytes (as hex), mode 0600, and the directories above it;
/// what it makes is recorded in `made`.
fn make_secret(path: &Path, made: &mut Made) -> Result<(), String> {
    let mut hex = String::new();
    for _ in 0..4 {
        hex.push_str(&format!("{:016x}", daemon::random_u64()));
    }
    hex.push('\n');
    if let Some(parent) = path.parent() {
        made.dirs(parent)
            .map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    ipfailover_os::safe_fs::write_atomic(path, hex.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write the secret {}: {e}", path.display()))?;
    made.file(path);
    Ok(())
}

/// The file's text, each value quoted so that it reads back as given; an error names the
/// option whose value cannot be written.
fn render(lines: &[Line], o: &InitOptions) -> Result<String, String> {
    let on = match (&o.group, o.primary) {
        (Some(_), _) => "a MEMBER of a group on etcd (runs failoverd)".to_string(),
        (None, true) => "the PRIMARY (runs heartbeatd)".to_string(),
        (None, false) => "the SECONDARY (runs failoverd)".to_string(),
    };
    let mut s = format!(
        "# /etc/ipfailover/hostconfig on {on} (written by failoverctl init).\n\
         # Every key: man ipfailover-hostconfig, or docs/configuration.md.\n\n"
    );
    for line in lines {
        let quoted = line
            .value
            .as_deref()
            .map_err(Clone::clone)
            .and_then(quote_value)
            .map_err(|e| format!("{} ({}): {e}", line.option, line.key))?;
        s.push_str(&format!("{}={quoted}\n", line.key));
    }
    Ok(s)
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
