//! The demo: a primary, a secondary and a client in network namespaces on this machine; the
//! primary dies, the secondary takes over its addresses, the primary returns and gets them
//! back; then heartbeatd alone stops and starts again, and its service address moves by
//! agreement, never held by two hosts at once (docs/handover.md).
//!
//! Run as root: `make demo`. Everything it makes is removed when it ends, on success, on
//! failure and on Ctrl-C (the daemons are killed by pid and the namespaces deleted).

#![forbid(unsafe_code)]

use std::time::Duration;

use ipfailover_e2e::process::Session;
use ipfailover_e2e::{hostconfig, Host, Lab, VIP};

/// The primary's service address, which heartbeatd adds and removes itself.
const ALIAS: &str = "198.51.100.100";

struct Demo {
    lab: Lab,
    session: Session,
}

impl Demo {
    fn say(&self, msg: &str) {
        self.session.say(msg);
    }

    /// Waits for `cond` (or Ctrl-C); the time it took.
    fn wait(
        &self,
        limit: Duration,
        mut cond: impl FnMut(&Lab) -> bool,
    ) -> Result<Duration, String> {
        self.session.wait(limit, || cond(&self.lab))
    }

    /// Shows who answers for `addr` at the client.
    fn client_sees(&self, addr: &str, host: Host, name: &str) -> Result<(), String> {
        let mac = self.lab.mac(host, "eth0");
        self.wait(Duration::from_secs(8), |lab| {
            lab.client_ping(addr) && lab.client_neigh(addr).as_deref() == Some(mac.as_str())
        })
        .map_err(|e| format!("the client does not reach {addr} at {name}'s MAC: {e}"))?;
        self.say(&format!("client pings {addr}: answered by {name} ({mac})"));
        Ok(())
    }

    /// Whether both hosts hold `addr` now.
    fn both_hold(&self, addr: &str) -> bool {
        self.lab.holds(Host::Pri, "eth0", addr) && self.lab.holds(Host::Sec, "eth0", addr)
    }

    fn run(&mut self) -> Result<(), String> {
        self.say("lab ready: pri 198.51.100.10 + 203.0.113.10, sec 198.51.100.20 + 203.0.113.20, client 198.51.100.30");
        let dir = self.lab.dir.to_string_lossy().into_owned();
        let pri = self.lab.write(
            "pri.conf",
            &hostconfig(&[
                ("FAILOVER_BCAST_IPS", "198.51.100.255 203.0.113.255"),
                ("FAILOVER_INTERVAL", "100ms"),
                ("FAILOVER_IP_PAIRS", &format!("eth0:{ALIAS}/24")),
                ("FAILOVER_STATE_DIR", &format!("{dir}/pri")),
            ]),
        );
        let sec = self.lab.write(
            "sec.conf",
            &hostconfig(&[
                ("FAILOVER_PEER_IP", VIP),
                (
                    "FAILOVER_PEER_IP_PAIRS",
                    &format!("eth0:198.51.100.10 eth0:{ALIAS}"),
                ),
                ("FAILOVER_TIMEOUT", "500ms"),
                ("FAILOVER_SCRIPT_DIR", &format!("{dir}/scripts")),
                ("FAILOVER_STATE_DIR", &format!("{dir}/sec")),
            ]),
        );
        let (pri, sec) = (
            pri.to_string_lossy().into_owned(),
            sec.to_string_lossy().into_owned(),
        );
        let hb = self
            .lab
            .spawn(Host::Pri, "heartbeatd", "heartbeatd", &["-c", &pri]);
        let fo = self
            .lab
            .spawn(Host::Sec, "failoverd", "failoverd", &["-c", &sec]);
        self.say("heartbeatd started on pri (every 100 ms), failoverd on sec (timeout 500 ms)");
        let log = self.lab.proc(fo).log.clone();
        self.wait(Duration::from_secs(10), |_| {
            ipfailover_e2e::read(&log).contains("-> monitoring")
        })
        .map_err(|e| format!("failoverd did not start monitoring: {e}"))?;
        self.say("failoverd hears the primary on both links: monitoring");
        self.wait(Duration::from_secs(5), |lab| {
            lab.holds(Host::Pri, "eth0", ALIAS)
        })?;
        self.say(&format!(
            "heartbeatd added its service address {ALIAS} once failoverd said it holds none"
        ));
        self.client_sees(VIP, Host::Pri, "pri")?;
        self.client_sees(ALIAS, Host::Pri, "pri")?;

        self.say("the primary dies: heartbeatd killed (SIGKILL) and its links cut");
        self.lab.proc(hb).signal(libc::SIGKILL);
        self.lab.links(Host::Pri, false);
        let took = self.wait(Duration::from_secs(10), |lab| {
            lab.holds(Host::Sec, "eth0", VIP) && lab.holds(Host::Sec, "eth0", ALIAS)
        })?;
        self.say(&format!(
            "sec holds {VIP} and {ALIAS} {} ms after the death (timeout 500 ms)",
            took.as_millis()
        ));
        self.client_sees(VIP, Host::Sec, "sec")?;

        self.say("the primary returns: links up, heartbeatd started again");
        let hb2 = self
            .lab
            .spawn(Host::Pri, "heartbeatd-2", "heartbeatd", &["-c", &pri]);
        self.lab.links(Host::Pri, true);
        let mut overlap = false;
        let took = self.wait(Duration::from_secs(10), |lab| {
            overlap |= lab.holds(Host::Pri, "eth0", ALIAS) && lab.holds(Host::Sec, "eth0", ALIAS);
            !lab.holds(Host::Sec, "eth0", VIP)
                && !lab.holds(Host::Sec, "eth0", ALIAS)
                && lab.holds(Host::Pri, "eth0", ALIAS)
        })?;
        self.say(&format!(
            "sec gave both back {} ms after the primary came back: {VIP} at its first \
             heartbeat, {ALIAS} removed first and then added by heartbeatd{}",
            took.as_millis(),
            if overlap || self.both_hold(ALIAS) {
                " (SEEN ON BOTH!)"
            } else {
                ""
            }
        ));
        self.client_sees(VIP, Host::Pri, "pri")?;
        self.client_sees(ALIAS, Host::Pri, "pri")?;

        self.say(
            "heartbeatd alone stops (SIGTERM; the host stays up): it removes its service \
                  address, then says goodbye",
        );
        self.lab.proc(hb2).signal(libc::SIGTERM);
        let took = self.wait(Duration::from_secs(10), |lab| {
            lab.holds(Host::Sec, "eth0", ALIAS)
        })?;
        self.say(&format!(
            "sec holds {ALIAS} {} ms after the goodbye; {VIP} stays with pri's host, which \
             answers for it",
            took.as_millis()
        ));
        self.client_sees(ALIAS, Host::Sec, "sec")?;
        self.client_sees(VIP, Host::Pri, "pri")?;
        let _ = self.lab.proc(hb2).wait_exit(Duration::from_secs(5));

        self.say("heartbeatd starts again: it waits until failoverd has given the address up");
        let _hb3 = self
            .lab
            .spawn(Host::Pri, "heartbeatd-3", "heartbeatd", &["-c", &pri]);
        let mut overlap = false;
        let took = self.wait(Duration::from_secs(10), |lab| {
            overlap |= lab.holds(Host::Pri, "eth0", ALIAS) && lab.holds(Host::Sec, "eth0", ALIAS);
            lab.holds(Host::Pri, "eth0", ALIAS) && !lab.holds(Host::Sec, "eth0", ALIAS)
        })?;
        self.say(&format!(
            "pri holds {ALIAS} again {} ms later{}",
            took.as_millis(),
            if overlap {
                " (SEEN ON BOTH!)"
            } else {
                "; never both at once"
            }
        ));
        self.client_sees(ALIAS, Host::Pri, "pri")?;

        println!("\nfailoverd's log:");
        for line in self
            .lab
            .proc(fo)
            .log_text()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
        {
            println!("  {line}");
        }
        println!();
        Ok(())
    }
}

fn main() {
    let mut demo = Demo {
        lab: Lab::new("demo"),
        session: Session::new(),
    };
    let result = demo.run();
    let Demo { lab, session } = demo;
    session.finish(result, lab, |lab| lab.logs());
}
