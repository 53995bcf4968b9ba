//! The loop with a fake driver: its timers, datagrams and signals, the order of a turn, the
//! control socket's clients and their deadlines, and the address retry policy. Sockets are opened only inside a network namespace of the test's
//! own.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipfailover_os::testns::Netns;

use super::*;

/// What the fake saw, and when to stop.
#[derive(Debug)]
struct Fake {
    start: Instant,
    /// A deadline of the driver's own.
    deadline: Option<Instant>,
    /// When the deadline was seen passed.
    fired: Option<Instant>,
    ticks: u32,
    /// Everything in the order the loop called it: `d` a datagram, `t` a tick, `h` SIGHUP.
    calls: Vec<char>,
    datagrams: Vec<(Vec<u8>, SocketAddr)>,
    /// Commands, and when they arrived.
    commands: Vec<(Request, Instant)>,
    reloads: u32,
    /// Stop when this says so (checked at each tick), or after `limit`.
    done: fn(&Fake) -> bool,
    limit: Duration,
}

impl Fake {
    fn new(done: fn(&Fake) -> bool) -> Fake {
        Fake {
            start: Instant::now(),
            deadline: None,
            fired: None,
            ticks: 0,
            calls: Vec::new(),
            datagrams: Vec::new(),
            commands: Vec::new(),
            reloads: 0,
            done,
            limit: Duration::from_secs(10),
        }
    }
}

impl Driver for Fake {
    fn next_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.fired.is_none())
    }

    fn handle_datagram(&mut self, _rt: &mut Runtime, _now: Instant, data: &[u8], from: SocketAddr) {
        self.calls.push('d');
        self.datagrams.push((data.to_vec(), from));
    }

    fn handle_command(&mut self, rt: &mut Runtime, now: Instant, request: Request) {
        self.calls.push('c');
        self.commands.push((request, now));
        rt.control.answer(now, &Ok("done".to_string()));
    }

    fn handle_reload(&mut self, _rt: &mut Runtime, _now: Instant) {
        self.calls.push('h');
        self.reloads += 1;
    }

    fn handle_stop(&mut self, rt: &mut Runtime, _now: Instant, _signal: i32, _count: u32) {
        rt.exit();
    }

    fn handle_tick(&mut self, rt: &mut Runtime, now: Instant) {
        self.calls.push('t');
        self.ticks += 1;
        if self.fired.is_none() && self.deadline.is_some_and(|d| now >= d) {
            self.fired = Some(now);
        }
        if (self.done)(self) || now >= self.start + self.limit {
            rt.exit();
        }
    }

    fn fill_status(&mut self, rt: &mut Runtime, _now: Instant) {
        rt.status.get_mut().state = format!("ticked-{}", self.ticks).into();
    }
}

/// A state directory of the test's own, fresh.
fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipfo-runtime-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_deadline_of_the_driver_wakes_the_loop_on_time_without_spinning() {
    let dir = state_dir("timer");
    let mut rt = Runtime::start("fake", &dir).expect("runtime");
    let mut fake = Fake::new(|f| f.fired.is_some());
    fake.deadline = Some(fake.start + Duration::from_millis(150));
    rt.run(&mut fake).expect("run");
    let fired = fake
        .fired
        .expect("the deadline was never seen")
        .duration_since(fake.start);
    assert!(
        fired >= Duration::from_millis(150) && fired < Duration::from_millis(400),
        "woke after {fired:?}"
    );
    // The first turn (at once) and the deadline's, and a few more for the signals of the other
    // tests (SIGHUP, SIGCHLD of their commands): a loop that spins ticks thousands of times.
    assert!(fake.ticks <= 12, "{:?}", fake.calls);
    // The status was written at exit, with the driver's fields.
    let text = std::fs::read_to_string(dir.join("fake.json")).expect("status file");
    assert!(
        text.contains(&format!("\"ticked-{}\"", fake.ticks)),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn datagrams_are_read_before_the_tick_and_a_flood_over_the_budget_waits_one_turn() {
    let ns = Netns::new();
    ns.ip("link set lo up");
    let dir = state_dir("udp");
    let fake = ns.enter(|| {
        let mut rt = Runtime::start("fake", &dir).expect("runtime");
        rt.udp.listen(1694).expect("listen");
        let to = SocketAddr::from(([127, 0, 0, 1], 1694));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        let total = udp::READ_BUDGET + 44;
        for i in 0..total {
            sender
                .send_to(&u16::try_from(i).expect("small").to_be_bytes(), to)
                .expect("send");
        }
        let mut fake = Fake::new(|f| f.datagrams.len() > udp::READ_BUDGET + 43);
        rt.run(&mut fake).expect("run");
        fake
    });
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(fake.datagrams.len(), udp::READ_BUDGET + 44);
    for (i, (data, from)) in fake.datagrams.iter().enumerate() {
        assert_eq!(
            data.as_slice(),
            u16::try_from(i).expect("small").to_be_bytes(),
            "in order"
        );
        assert_eq!(from.ip(), IpAddr::from([127, 0, 0, 1]));
    }
    // The first turn does not wait; the next reads one budget's worth, then ticks; the rest
    // at the next turn, which did not wait. (A SIGHUP of another test may add a turn.)
    let turns: Vec<usize> = fake
        .calls
        .iter()
        .filter(|c| **c != 'h')
        .collect::<String>()
        .split('t')
        .map(str::len)
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(turns, [udp::READ_BUDGET, 44], "{:?}", fake.calls);
    assert_eq!(fake.calls.last(), Some(&'t'));
    assert!(fake.start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_signal_reaches_the_driver_at_once() {
    let dir = state_dir("signal");
    let mut rt = Runtime::start("fake", &dir).expect("runtime");
    let mut fake = Fake::new(|f| f.reloads > 0);
    let raiser = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGHUP)
            .expect("kill");
    });
    rt.run(&mut fake).expect("run");
    raiser.join().expect("raiser");
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(fake.reloads, 1);
    // Handled in a turn of its own, before that turn's tick, and without waiting for the
    // status refresh (5 s) or any other deadline.
    assert!(fake.calls.ends_with(&['h', 't']), "{:?}", fake.calls);
    assert!(fake.start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_kept_address_that_cannot_be_added_is_retried_with_back_off() {
    let dir = state_dir("retry");
    let mut rt = Runtime::start("fake", &dir).expect("runtime");
    // No back end opened: every add fails, as an interface that is gone does.
    let pair = ipfailover_os::ResolvedPair {
        iface: "eth9".into(),
        index: 9,
        addr: IpAddr::from([198, 51, 100, 77]),
        prefix: 32,
    };
    rt.addresses.set(vec![pair.clone()]);
    let t0 = Instant::now();
    let outcome = rt.addresses.hold(t0, pair.addr).expect("known address");
    assert!(outcome.result.is_err());
    let mut tries = Vec::new();
    let mut at = t0;
    for _ in 0..8 {
        at = rt.addresses.next_deadline().expect("a retry is scheduled");
        tries.push(at.duration_since(t0).as_secs());
        assert!(rt.addresses.retry_due(at).is_empty());
    }
    assert_eq!(tries, [1, 3, 7, 15, 31, 61, 91, 121]);
    let e = rt.addresses.get(pair.addr).expect("entry");
    assert!(!e.held());
    assert!(e.error().is_some_and(|e| e.contains("no address back end")));
    // Given up on purpose: no more retries.
    rt.addresses.keep(pair.addr, false);
    assert_eq!(rt.addresses.next_deadline(), None);
    assert!(rt
        .addresses
        .retry_due(at + Duration::from_secs(600))
        .is_empty());
    drop(rt);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn mail_settings_a_sighup_cannot_use_leave_the_old_ones_in_force() {
    use ipfailover::settings::Role;
    let dir = state_dir("mail");
    std::fs::create_dir_all(&dir).expect("dir");
    let load = |lines: &str| {
        let path = dir.join("hostconfig");
        let text = format!(
            "FAILOVER_PEER_IP=198.51.100.10\nFAILOVER_PEER_IP_PAIRS=eth0:198.51.100.10\n{lines}"
        );
        std::fs::write(&path, text).expect("write");
        ipfailover_os::config::load_settings(&path, Role::Failoverd).expect("valid settings")
    };
    let mut mail = Mail::new("sec".to_string());
    mail.start(&load(
        "FAILOVER_EMAIL_RECIPIENT=ops@example.org\nFAILOVER_EMAIL_TRANSPORT=sendmail:/nonexistent/sendmail\n",
    ))
    .expect("mail starts");
    assert!(mail.active());
    // Accepted by the settings, refused by the mailer (no host): the old settings stay.
    mail.reload(&load(
        "FAILOVER_EMAIL_RECIPIENT=ops@example.org\nFAILOVER_EMAIL_TRANSPORT=smtps://user:secret@\n",
    ));
    assert!(mail.active(), "a SIGHUP with a typo stopped mail");
    // No recipient any more: mail stops.
    mail.reload(&load(""));
    assert!(!mail.active());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn an_idle_control_client_is_dropped_at_its_deadline_and_delays_nothing_else() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let dir = state_dir("control");
    let mut rt = Runtime::start("fake", &dir).expect("runtime");
    rt.control
        .open(&dir, nix::unistd::geteuid().as_raw())
        .expect("control socket");
    let path = dir.join(ipfailover_os::control::SOCKET_NAME);
    // Three clients connect and send nothing; each waits for what the daemon says.
    let idle: Vec<_> = (0..3)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).expect("connect");
                let connected = Instant::now();
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let mut said = String::new();
                let _ = s.read_to_string(&mut said);
                (connected.elapsed(), said)
            })
        })
        .collect();
    // A fourth, a moment later, sends its request at once, and another sends half a line.
    let dir2 = dir.clone();
    let asker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        let answer = ipfailover_os::control::send(&dir2, Request::Resume, Duration::from_secs(5));
        (sent.elapsed(), answer)
    });
    let path2 = path.clone();
    let halfway = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&path2).expect("connect");
        s.write_all(b"{\"command\":").expect("write");
        let mut said = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.read_to_string(&mut said);
        said
    });
    // Running until every client has had its deadline.
    let mut fake = Fake::new(|f| !f.commands.is_empty() && f.fired.is_some());
    fake.deadline = Some(fake.start + Duration::from_millis(1100));
    rt.run(&mut fake).expect("run");
    let worst = rt.worst_turn();
    let (asked_in, answer) = asker.join().expect("asker");
    assert_eq!(answer.expect("an answer"), Ok("done".to_string()));
    assert!(
        asked_in < Duration::from_millis(300),
        "the request waited {asked_in:?} behind idle clients"
    );
    assert_eq!(fake.commands.len(), 1);
    assert_eq!(fake.commands[0].0, Request::Resume);
    for t in idle {
        let (after, said) = t.join().expect("idle client");
        assert!(
            after >= Duration::from_millis(450) && after < Duration::from_millis(1200),
            "an idle client was dropped after {after:?}"
        );
        assert!(said.contains("none within 500 ms"), "{said:?}");
    }
    let said = halfway.join().expect("halfway client");
    assert!(said.contains("none within 500 ms"), "{said:?}");
    assert!(worst < Duration::from_millis(100), "a turn took {worst:?}");
    drop(rt);
    assert!(!path.exists(), "the socket outlived the runtime");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_state_directory_has_one_daemon_of_each_kind() {
    let dir = state_dir("lock");
    let rt = Runtime::start("failoverd", &dir).expect("the first failoverd");
    let second = Runtime::start("failoverd", &dir).expect_err("a second failoverd");
    assert_eq!(second.code, exit::IN_USE);
    assert!(
        second.message.contains(&format!(
            "in use by another failoverd (pid {})",
            std::process::id()
        )),
        "{}",
        second.message
    );
    // heartbeatd has a lock of its own: the two daemons of a host may share a directory.
    let hb = Runtime::start("heartbeatd", &dir).expect("heartbeatd beside failoverd");
    drop(rt);
    // The lock goes with its holder.
    let again = Runtime::start("failoverd", &dir).expect("failoverd once the first is gone");
    drop((again, hb));
    // A link planted at the lock file's name is not followed.
    std::fs::remove_file(dir.join("failoverd.lock")).expect("remove");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("failoverd.lock")).expect("symlink");
    let planted = Runtime::start("failoverd", &dir).expect_err("through a link");
    assert_eq!(planted.code, exit::FAILURE, "{}", planted.message);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
