//! The group demo: a three-member etcd cluster and three group members in network namespaces
//! on this machine, and a client. The holder crashes, and the next priority takes over; the
//! new holder is cut off from etcd (not from the client), fences itself before its lease can
//! expire, and the third takes over; then a clean stop hands over at once.
//!
//! Run as root: `make demo-group`. Everything it makes is removed when it ends, on success,
//! on failure and on Ctrl-C (the processes are killed by pid and the namespaces deleted).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use ipfailover_e2e::group::{vip, GroupLab};
use ipfailover_e2e::process::Session;

struct Demo {
    lab: GroupLab,
    session: Session,
}

impl Demo {
    fn say(&self, msg: &str) {
        self.session.say(msg);
    }

    /// Waits until exactly member `m` holds the address (or Ctrl-C); the time it took.
    fn holder_is(&self, addr: &str, m: usize, limit: Duration) -> Result<Duration, String> {
        self.session
            .wait(limit, || self.lab.holders_now(addr) == vec![m])
            .map_err(|e| {
                format!(
                    "m{m} does not hold {addr}: {e} (holders: {:?})",
                    self.lab.holders_now(addr)
                )
            })
    }

    fn client_sees(&self, addr: &str, m: usize) -> Result<(), String> {
        let mac = self.lab.member_mac(m);
        self.session
            .wait(Duration::from_secs(5), || {
                self.lab.client_reaches(addr)
                    && self.lab.client_neigh(addr).as_deref() == Some(mac.as_str())
            })
            .map_err(|e| format!("the client does not reach {addr} at m{m}'s MAC {mac}: {e}"))?;
        self.say(&format!("client pings {addr}: answered by m{m} ({mac})"));
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let addr = vip(0);
        self.say(
            "lab ready: etcd e1..e3 on 203.0.113.1-3; members m1 (priority 190), m2 (180), \
             m3 (170) on 198.51.100.11-13 and 203.0.113.11-13; client 198.51.100.30",
        );
        self.lab.start_etcd_cluster();
        self.say("etcd cluster up, with a leader");
        for i in 1..=3 {
            self.lab.start_member(i, &[]);
        }
        self.say(&format!(
            "failoverd started on m1, m2, m3 (group web, address {addr}, lease 2s)"
        ));
        let took = self.holder_is(&addr, 1, Duration::from_secs(20))?;
        self.say(&format!(
            "m1, the highest priority, holds {addr} ({} ms after the start)",
            took.as_millis()
        ));
        self.client_sees(&addr, 1)?;

        self.say("m1 crashes: failoverd killed, links down");
        let crash = Instant::now();
        self.lab.kill_member(1);
        self.holder_is(&addr, 2, Duration::from_secs(15))?;
        self.say(&format!(
            "m2 holds {addr} {} ms after the crash (m1's lease ran out in etcd; m2, now ranked first, won it)",
            crash.elapsed().as_millis()
        ));
        self.client_sees(&addr, 2)?;

        self.say("m2 is cut off from etcd (its etcd link down); the client still reaches it");
        let cut = Instant::now();
        self.lab.cut_from_etcd(2, true);
        let dropped = self
            .session
            .wait(Duration::from_secs(10), || {
                self.lab.holders_now(&addr).is_empty()
            })
            .map_err(|e| format!("m2 never dropped the address: {e}"))?;
        self.say(&format!(
            "m2 fenced itself: {addr} removed {} ms after the cut, before its lease could expire",
            dropped.as_millis()
        ));
        self.holder_is(&addr, 3, Duration::from_secs(15))?;
        self.say(&format!(
            "m3 holds {addr} {} ms after the cut: never two holders",
            cut.elapsed().as_millis()
        ));
        self.client_sees(&addr, 3)?;
        self.lab.cut_from_etcd(2, false);
        self.say("m2 reaches etcd again: it rejoins and takes nothing back (preemption off)");

        self.say("m3 stops cleanly (SIGTERM): it releases, deletes its keys, revokes its lease");
        let stop_at = Instant::now();
        self.lab.signal_member(3, libc::SIGTERM);
        self.holder_is(&addr, 2, Duration::from_secs(10))?;
        self.say(&format!(
            "m2 holds {addr} {} ms after the stop, without waiting for a lease to expire",
            stop_at.elapsed().as_millis()
        ));
        self.client_sees(&addr, 2)?;

        println!("\nm2's failoverctl status:");
        let conf = self.lab.member_conf(2, &[]);
        let out = std::process::Command::new(ipfailover_e2e::bin("failoverctl"))
            .args(["-c", &conf, "status"])
            .output()
            .map_err(|e| format!("failoverctl: {e}"))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        println!();
        Ok(())
    }
}

fn main() {
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        eprintln!(
            "make demo-group needs etcd (Debian's etcd-server): scripts/deps group installs it"
        );
        std::process::exit(1);
    }
    let mut demo = Demo {
        lab: GroupLab::new("demo", 3, 3),
        session: Session::new(),
    };
    let result = demo.run();
    let Demo { lab, session } = demo;
    session.finish(result, lab, |lab| lab.logs());
}
