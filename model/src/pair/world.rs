//! The pair's world: two hosts, their daemons (the real cores behind what their drivers do),
//! the datagrams and ARP answers in flight, and the clock.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipfailover::failover::{
    Action, Command, Config, Event, Failover, HookPhase, Notice, OutReport,
};
use ipfailover::receive::{Incoming, Receiver, Rejected};
use ipfailover::sender::{Sender, SenderAction, SenderConfig, SenderEvent};
use ipfailover::wire::{self, Datagram, DropReason, Entry, Kind, Role};

use super::props::Props;
use super::{
    Cmd, Fault, Mutation, Nic, PairEvent, PairModel, Side, ALIAS, PRIV, PUB, P_MAC, S_MAC, S_PRIV,
    S_PUB,
};

/// The wall clock both hosts read: only reported, never judged.
const WALL_MS: u64 = 1_800_000_000_000;

/// heartbeatd looks at its links every interval, at most every 100 ms (its driver).
const LINK_CHECK_MIN: Duration = Duration::from_millis(100);

/// The primary's MAC on the private link.
const P_PRIV_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];

/// A daemon: not running, running, or stopped by SIGSTOP (its state kept, its input queued).
#[derive(Debug, Clone, Hash)]
pub(crate) enum Proc<T> {
    Down,
    Running(T),
    Stalled(T),
}

impl<T> Proc<T> {
    pub(crate) fn running(&self) -> Option<&T> {
        match self {
            Proc::Running(t) => Some(t),
            _ => None,
        }
    }

    fn stalled(&self) -> bool {
        matches!(self, Proc::Stalled(_))
    }

    fn down(&self) -> bool {
        matches!(self, Proc::Down)
    }
}

/// One of the two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Net {
    Pub,
    Priv,
}

impl Net {
    fn index(self) -> usize {
        match self {
            Net::Pub => 0,
            Net::Priv => 1,
        }
    }

    const BOTH: [Net; 2] = [Net::Pub, Net::Priv];
}

/// What travels: a UDP datagram (encoded, as on the wire), or an ARP frame naming an address
/// (an answer to a probe, or an announcement), which the receiver's conflict watch hears.
#[derive(Debug, Clone, Hash)]
pub(crate) enum Body {
    Udp(Vec<u8>),
    Arp { addr: IpAddr, mac: [u8; 6] },
}

#[derive(Debug, Clone, Hash)]
pub(crate) struct Packet {
    pub(crate) id: u32,
    pub(crate) due: Instant,
    pub(crate) net: Net,
    pub(crate) to: Side,
    pub(crate) from: IpAddr,
    pub(crate) body: Body,
    /// Delayed or duplicated already: not again.
    pub(crate) touched: bool,
}

/// heartbeatd: its core, its receiver, and what its driver keeps.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Hb {
    pub(crate) sender: Sender,
    rx: Receiver,
    boot: u64,
    seq: u64,
    /// The links as last looked up (public, private), and the addresses present then.
    view: Option<[bool; 2]>,
    present: Vec<IpAddr>,
    looked: Instant,
    /// The service addresses whose link was down at the last look.
    down: Vec<IpAddr>,
}

/// failoverd: its core, its receiver, and what its driver keeps.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Fo {
    pub(crate) core: Failover,
    rx: Receiver,
    boot: u64,
    seq: u64,
    /// The links the primary's datagrams came from: where reports go.
    sources: [bool; 2],
    /// The hook phase running: which, how it ends, when.
    hook: Option<(HookPhase, bool, Instant)>,
    /// Removals put off by [`Mutation::RemoveAfterReport`].
    deferred: Vec<IpAddr>,
    /// The command waiting for its answer.
    command: Option<Cmd>,
}

impl Fo {
    /// The command waiting for its answer.
    pub(crate) fn command_pending(&self) -> Option<Cmd> {
        self.command
    }
}

/// What a replay logs, and a violation found in the middle of a step: not part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    log: Option<Vec<String>>,
    pub(crate) violation: Option<String>,
}

impl Hash for Extra {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// The whole pair at one instant.
#[derive(Debug, Clone, Hash)]
pub struct World {
    pub(crate) now: Instant,
    pub(crate) end: Instant,
    pub(crate) faults_left: u8,
    begun: bool,
    pub(crate) p_up: bool,
    /// The primary's links: public, private.
    pub(crate) p_links: [bool; 2],
    /// The service addresses on the primary's interface.
    pub(crate) p_aliases: Vec<IpAddr>,
    pub(crate) hb: Proc<Hb>,
    pub(crate) s_up: bool,
    pub(crate) s_pub: bool,
    /// The primary's addresses on the secondary's interface.
    pub(crate) s_iface: Vec<IpAddr>,
    pub(crate) fo: Proc<Fo>,
    /// `failoverd.pause` in the state directory (on tmpfs: a reboot clears it).
    pause_file: bool,
    pub(crate) net: Vec<Packet>,
    next_id: u32,
    draws: u64,
    pub(crate) firewall: bool,
    pub(crate) refuse_test: bool,
    /// The primary's host goes down at this instant (its heartbeatd said so).
    pub(crate) shutdown_at: Option<Instant>,
    pub(crate) props: Props,
    pub(crate) extra: Extra,
}

/// An input to one of failoverd's loop turns.
enum FoInput {
    Udp(Vec<u8>, IpAddr, Net),
    Arp(IpAddr, [u8; 6]),
    Command(Cmd),
    Stop,
    HookDone(HookPhase, bool),
}

/// An input to one of heartbeatd's loop turns.
enum HbInput {
    Udp(Vec<u8>, IpAddr),
    Arp(IpAddr, [u8; 6]),
    Stop(bool),
}

impl World {
    pub(crate) fn new(m: &PairModel) -> World {
        let now = m.base;
        let mut w = World {
            now,
            end: now + Duration::from_secs(3600),
            faults_left: u8::MAX,
            begun: false,
            p_up: true,
            p_links: [true, true],
            p_aliases: Vec::new(),
            hb: Proc::Down,
            s_up: true,
            s_pub: true,
            s_iface: Vec::new(),
            fo: Proc::Down,
            pause_file: false,
            net: Vec::new(),
            next_id: 0,
            draws: 0,
            firewall: false,
            refuse_test: false,
            shutdown_at: None,
            props: Props::new(m, now),
            extra: Extra::default(),
        };
        w.start_hb(m);
        w.start_fo(m);
        w.observe(&PairEvent::Advance);
        w
    }

    /// Virtual time since the model's base.
    pub fn elapsed(&self, base: Instant) -> Duration {
        self.now.saturating_duration_since(base)
    }

    pub(crate) fn log_on(&mut self) {
        self.extra.log = Some(Vec::new());
    }

    pub(crate) fn take_log(&mut self) -> Vec<String> {
        self.extra
            .log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(l) = self.extra.log.as_mut() {
            l.push(line());
        }
    }

    fn draw(&mut self) -> u64 {
        self.draws += 1;
        mix(self.draws)
    }

    // ----- The search's view -----

    pub(crate) fn events(&self, m: &PairModel, out: &mut Vec<PairEvent>) {
        let c = &m.config;
        if !self.begun {
            out.push(PairEvent::Begin {
                faults: c.faults,
                horizon_ms: u64::try_from(c.horizon.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if self.now < self.end {
            out.push(PairEvent::Advance);
        }
        if self.faults_left == 0 {
            return;
        }
        let k = c.kinds;
        let mut f = |x: Fault| out.push(PairEvent::Fault(x));
        if k.network {
            for p in &self.net {
                f(Fault::Lose(p.id));
                if !p.touched {
                    f(Fault::Delay(p.id));
                    if matches!(p.body, Body::Udp(_)) {
                        f(Fault::Dup(p.id));
                    }
                }
            }
        }
        if k.firewall {
            f(Fault::Firewall(!self.firewall));
        }
        if k.hosts {
            f(Fault::Host(Side::P, !self.p_up));
            f(Fault::Host(Side::S, !self.s_up));
        }
        if k.daemons {
            if self.p_up {
                match self.hb {
                    Proc::Down => f(Fault::Start(Side::P)),
                    Proc::Running(_) => {
                        f(Fault::Kill(Side::P));
                        f(Fault::Stop(Side::P, true));
                        f(Fault::Stop(Side::P, false));
                    }
                    Proc::Stalled(_) => f(Fault::Kill(Side::P)),
                }
            }
            if self.s_up {
                match self.fo {
                    Proc::Down => f(Fault::Start(Side::S)),
                    Proc::Running(_) => {
                        f(Fault::Kill(Side::S));
                        f(Fault::Stop(Side::S, false));
                    }
                    Proc::Stalled(_) => f(Fault::Kill(Side::S)),
                }
            }
        }
        if k.stalls {
            for (side, proc_running, proc_stalled) in [
                (Side::P, self.hb.running().is_some(), self.hb.stalled()),
                (Side::S, self.fo.running().is_some(), self.fo.stalled()),
            ] {
                if proc_running {
                    f(Fault::Stall(side));
                } else if proc_stalled {
                    f(Fault::Cont(side));
                }
            }
        }
        if k.links {
            if self.p_up {
                f(Fault::Link(Nic::PPub, !self.p_links[0]));
                f(Fault::Link(Nic::PPriv, !self.p_links[1]));
            }
            if self.s_up {
                f(Fault::Link(Nic::SPub, !self.s_pub));
            }
        }
        if k.commands {
            if let Some(fo) = self.fo.running() {
                if fo.command.is_none() {
                    let paused = fo.core.pause().is_some();
                    f(Fault::Command(if paused {
                        Cmd::Resume
                    } else {
                        Cmd::Pause
                    }));
                    for force in [false, true] {
                        f(Fault::Command(Cmd::Release { force }));
                        f(Fault::Command(Cmd::Takeover { force }));
                    }
                }
            }
        }
        if k.hooks && !self.refuse_test {
            f(Fault::RefuseTest);
        }
    }

    /// Applies one event; the property it breaks, if any.
    pub(crate) fn step(&mut self, m: &PairModel, e: &PairEvent) -> Result<(), String> {
        match e {
            PairEvent::Advance => {
                let t = self.next_due(m);
                self.now = t;
                // What lasted until now is judged before anything happens at now.
                self.check_timed(m);
                if let Some(v) = self.extra.violation.take() {
                    return Err(v);
                }
                self.advance(m);
            }
            PairEvent::Begin { faults, horizon_ms } => {
                self.begun = true;
                self.faults_left = *faults;
                self.end = self.now + Duration::from_millis(*horizon_ms);
            }
            PairEvent::Fault(f) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                self.fault(m, *f);
            }
        }
        self.observe(e);
        match self.extra.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// The next instant anything is due: a datagram's arrival, a hook's end, a daemon's
    /// deadline, the primary's shutdown; at most the end of the horizon.
    fn next_due(&self, m: &PairModel) -> Instant {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        consider(self.shutdown_at);
        for p in &self.net {
            if !self.stalled(p.to) {
                consider(Some(p.due));
            }
        }
        if let Some(fo) = self.fo.running() {
            consider(fo.core.next_deadline());
            consider(fo.hook.map(|(_, _, t)| t));
        }
        if let Some(hb) = self.hb.running() {
            consider(hb.sender.next_deadline());
        }
        next.unwrap_or(self.now + m.config.timeout)
            .max(self.now)
            .min(self.end)
    }

    fn stalled(&self, side: Side) -> bool {
        match side {
            Side::P => self.hb.stalled(),
            Side::S => self.fo.stalled(),
        }
    }

    /// Everything due now, in a fixed order: the primary's shutdown, the arrivals (in the
    /// order they are due, then sent), the hook's end, the daemons' deadlines.
    fn advance(&mut self, m: &PairModel) {
        let now = self.now;
        if self.shutdown_at.is_some_and(|t| t <= now) {
            self.log(|| "primary: its shutdown ends, its links go down".into());
            self.crash(Side::P);
        }
        self.deliver_due(m, None);
        self.hook_due(m);
        if self
            .hb
            .running()
            .and_then(|h| h.sender.next_deadline())
            .is_some_and(|t| t <= now)
        {
            self.hb_turn(m, None);
        }
        if self
            .fo
            .running()
            .and_then(|f| f.core.next_deadline())
            .is_some_and(|t| t <= now)
        {
            self.fo_turn(m, None);
        }
    }

    /// Delivers what is due now (to `only`, if given), in order.
    fn deliver_due(&mut self, m: &PairModel, only: Option<Side>) {
        let now = self.now;
        loop {
            let next = self
                .net
                .iter()
                .enumerate()
                .filter(|(_, p)| p.due <= now && !self.stalled(p.to))
                .filter(|(_, p)| only.is_none_or(|s| s == p.to))
                .min_by_key(|(_, p)| (p.due, p.id))
                .map(|(i, _)| i);
            let Some(i) = next else {
                return;
            };
            let p = self.net.remove(i);
            self.deliver(m, p);
        }
    }

    fn hook_due(&mut self, m: &PairModel) {
        let due = self
            .fo
            .running()
            .and_then(|f| f.hook)
            .filter(|(_, _, t)| *t <= self.now);
        if let Some((phase, ok, _)) = due {
            if let Proc::Running(fo) = &mut self.fo {
                fo.hook = None;
            }
            if phase == HookPhase::Fence && m.config.fence_kills {
                self.log(|| "Fence powers the primary off".into());
                self.crash(Side::P);
            }
            self.fo_turn(m, Some(FoInput::HookDone(phase, ok)));
        }
    }

    fn deliver(&mut self, m: &PairModel, p: Packet) {
        let what = describe(&p);
        match p.to {
            Side::S => {
                let reachable = self.s_up && (p.net == Net::Priv || self.s_pub);
                // The kernel drops datagrams whose source is one of its own addresses.
                let own_source = p.net == Net::Pub
                    && p.from == PUB
                    && self.s_iface.contains(&PUB)
                    && matches!(p.body, Body::Udp(_));
                let walled = self.firewall && matches!(p.body, Body::Udp(_));
                if !reachable || own_source || walled || self.fo.down() {
                    self.log(|| format!("  . #{} {what} dropped", p.id));
                    return;
                }
                self.log(|| format!("  . #{} {what} arrives", p.id));
                let input = match p.body {
                    Body::Udp(bytes) => FoInput::Udp(bytes, p.from, p.net),
                    Body::Arp { addr, mac } => FoInput::Arp(addr, mac),
                };
                self.fo_turn(m, Some(input));
            }
            Side::P => {
                if !self.p_up || !self.p_links[p.net.index()] || self.hb.down() {
                    self.log(|| format!("  . #{} {what} dropped", p.id));
                    return;
                }
                self.log(|| format!("  . #{} {what} arrives", p.id));
                let input = match p.body {
                    Body::Udp(bytes) => HbInput::Udp(bytes, p.from),
                    Body::Arp { addr, mac } => HbInput::Arp(addr, mac),
                };
                self.hb_turn(m, Some(input));
            }
        }
    }

    fn send(&mut self, m: &PairModel, to: Side, net: Net, from: IpAddr, body: Body) {
        self.next_id += 1;
        let p = Packet {
            id: self.next_id,
            due: self.now + m.config.one_way,
            net,
            to,
            from,
            body,
            touched: false,
        };
        self.log(|| format!("  . #{} {} sent", p.id, describe(&p)));
        self.net.push(p);
    }

    // ----- Faults -----

    fn fault(&mut self, m: &PairModel, f: Fault) {
        match f {
            Fault::Lose(id) => self.net.retain(|p| p.id != id),
            Fault::Delay(id) => {
                if let Some(p) = self.net.iter_mut().find(|p| p.id == id) {
                    p.due += m.config.delay;
                    p.touched = true;
                }
            }
            Fault::Dup(id) => {
                if let Some(p) = self.net.iter_mut().find(|p| p.id == id) {
                    p.touched = true;
                    let mut copy = p.clone();
                    self.next_id += 1;
                    copy.id = self.next_id;
                    copy.due += m.config.one_way;
                    self.net.push(copy);
                }
            }
            Fault::Firewall(on) => self.firewall = on,
            Fault::Host(side, false) => self.crash(side),
            Fault::Host(Side::P, true) => {
                self.p_up = true;
                self.p_links = [true, true];
                self.p_aliases.clear();
                self.start_hb(m);
            }
            Fault::Host(Side::S, true) => {
                self.s_up = true;
                self.s_pub = true;
                self.s_iface.clear();
                self.start_fo(m);
            }
            Fault::Kill(Side::P) => self.hb = Proc::Down,
            Fault::Kill(Side::S) => self.fo = Proc::Down,
            Fault::Start(Side::P) => self.start_hb(m),
            Fault::Start(Side::S) => self.start_fo(m),
            Fault::Stop(Side::P, stays_up) => {
                if !stays_up {
                    self.shutdown_at = Some(self.now + m.config.shutdown_time);
                }
                self.hb_turn(m, Some(HbInput::Stop(stays_up)));
            }
            Fault::Stop(Side::S, _) => self.fo_turn(m, Some(FoInput::Stop)),
            Fault::Stall(Side::P) => {
                if let Proc::Running(hb) = std::mem::replace(&mut self.hb, Proc::Down) {
                    self.hb = Proc::Stalled(hb);
                }
            }
            Fault::Stall(Side::S) => {
                if let Proc::Running(fo) = std::mem::replace(&mut self.fo, Proc::Down) {
                    self.fo = Proc::Stalled(fo);
                }
            }
            Fault::Cont(side) => {
                match side {
                    Side::P => {
                        if let Proc::Stalled(hb) = std::mem::replace(&mut self.hb, Proc::Down) {
                            self.hb = Proc::Running(hb);
                        }
                    }
                    Side::S => {
                        if let Proc::Stalled(fo) = std::mem::replace(&mut self.fo, Proc::Down) {
                            self.fo = Proc::Running(fo);
                        }
                        self.props.s_continued(self.now);
                    }
                }
                // Its first turn: what arrived meanwhile, the hook that ended, the tick.
                self.deliver_due(m, Some(side));
                match side {
                    Side::P => self.hb_turn(m, None),
                    Side::S => {
                        self.hook_due(m);
                        self.fo_turn(m, None);
                    }
                }
            }
            Fault::Link(nic, up) => match nic {
                Nic::PPub => self.p_links[0] = up,
                Nic::PPriv => self.p_links[1] = up,
                Nic::SPub => {
                    self.s_pub = up;
                    if up {
                        self.props.s_link_up(self.now);
                    }
                }
            },
            Fault::Command(c) => self.fo_turn(m, Some(FoInput::Command(c))),
            Fault::RefuseTest => self.refuse_test = true,
        }
    }

    /// A host goes down: its daemon with it, its addresses (its kernel no longer answers).
    fn crash(&mut self, side: Side) {
        match side {
            Side::P => {
                self.p_up = false;
                self.hb = Proc::Down;
                self.p_aliases.clear();
                self.shutdown_at = None;
            }
            Side::S => {
                self.s_up = false;
                self.fo = Proc::Down;
                self.s_iface.clear();
                // The state directory is on tmpfs: the pause goes with the reboot.
                self.pause_file = false;
                self.props.paused = false;
            }
        }
    }

    // ----- heartbeatd -----

    /// What `Heartbeatd::start` does: a service address left on the interface by a previous
    /// run is removed (it may be failoverd's by now), then the first turn.
    fn start_hb(&mut self, m: &PairModel) {
        let aliases = if m.config.addrs.alias() {
            vec![ALIAS]
        } else {
            Vec::new()
        };
        self.p_aliases.retain(|a| !aliases.contains(a));
        let boot = self.draw();
        let seed = self.draw();
        let config = SenderConfig {
            interval: m.config.interval,
            aliases,
            announce_refresh: None,
        };
        self.hb = Proc::Running(Hb {
            sender: Sender::new(self.now, config, seed),
            rx: Receiver::new(Some(m.key.clone()), None),
            boot,
            seq: 0,
            view: None,
            present: Vec::new(),
            looked: self.now,
            down: Vec::new(),
        });
        self.log(|| "heartbeatd starts".into());
        self.hb_turn(m, None);
    }

    /// One loop turn of heartbeatd: an input, then the tick (the links looked at when due).
    fn hb_turn(&mut self, m: &PairModel, input: Option<HbInput>) {
        let Proc::Running(mut hb) = std::mem::replace(&mut self.hb, Proc::Down) else {
            return;
        };
        let now = self.now;
        let mut alive = true;
        match input {
            Some(HbInput::Udp(bytes, from)) => match hb.rx.receive(&bytes, from, now, WALL_MS) {
                Ok(Incoming::Released { id, token, entries }) => {
                    alive = self.hb_feed(m, &mut hb, SenderEvent::Report { id, token, entries })
                }
                Ok(Incoming::Challenge { nonce }) => {
                    alive = self.hb_feed(m, &mut hb, SenderEvent::Challenged { nonce })
                }
                Ok(_) => {}
                Err(e) => self.log(|| format!("  heartbeatd drops it: {e:?}")),
            },
            // Its conflict watch hears only the service addresses it manages.
            Some(HbInput::Arp(addr, mac)) if m.config.addrs.alias() && addr == ALIAS => {
                alive = self.hb_feed(m, &mut hb, SenderEvent::ProbeAnswer { addr, mac });
            }
            Some(HbInput::Arp(..)) => {}
            Some(HbInput::Stop(stays_up)) => {
                alive = self.hb_feed(m, &mut hb, SenderEvent::Shutdown { stays_up })
            }
            None => {}
        }
        if alive {
            // handle_tick: the links, every interval (at most every 100 ms); then the tick.
            let every = m.config.interval.max(LINK_CHECK_MIN);
            if hb.view.is_none() || now >= hb.looked + every {
                hb.looked = now;
                hb.view = Some(self.p_links);
                let mut present = vec![PUB, PRIV];
                present.extend(self.p_aliases.iter().copied());
                hb.present = present;
                let down: Vec<IpAddr> = if self.p_links[0] || !m.config.addrs.alias() {
                    Vec::new()
                } else {
                    vec![ALIAS]
                };
                if down != hb.down {
                    hb.down = down.clone();
                    alive = self.hb_feed(m, &mut hb, SenderEvent::LinksDown { addrs: down });
                }
            }
            if alive {
                alive = self.hb_feed(m, &mut hb, SenderEvent::Tick);
            }
        }
        if alive {
            self.hb = Proc::Running(hb);
        } else {
            self.log(|| "heartbeatd exits".into());
        }
    }

    /// Feeds the sender and carries out its actions; false once it exits.
    fn hb_feed(&mut self, m: &PairModel, hb: &mut Hb, event: SenderEvent) -> bool {
        let now = self.now;
        let mut queue = VecDeque::from([event]);
        let mut alive = true;
        while let Some(ev) = queue.pop_front() {
            for a in hb.sender.handle(now, ev) {
                match a {
                    SenderAction::SendHeartbeat => self.hb_send(m, hb, Kind::Heartbeat),
                    SenderAction::SendGoodbye => self.hb_send(m, hb, Kind::Goodbye),
                    SenderAction::Announce => {
                        let mut all = vec![PUB];
                        all.extend(self.p_aliases.iter().copied());
                        self.p_announce(m, &all);
                    }
                    SenderAction::AnnounceAddrs(addrs) => self.p_announce(m, &addrs),
                    SenderAction::AddAliases(addrs) => {
                        for a in &addrs {
                            if !self.p_aliases.contains(a) {
                                self.p_aliases.push(*a);
                            }
                        }
                        self.log(|| format!("primary adds {}", list(&addrs)));
                        queue.push_back(SenderEvent::AliasesAdded { failed: Vec::new() });
                    }
                    SenderAction::RemoveAliases(addrs) => {
                        self.p_aliases.retain(|a| !addrs.contains(a));
                        self.log(|| format!("primary removes {}", list(&addrs)));
                        queue.push_back(SenderEvent::AliasesRemoved);
                    }
                    SenderAction::Probe(_) => self.p_probe(m),
                    SenderAction::Notify(n) => self.log(|| format!("heartbeatd: {n:?}")),
                    SenderAction::Exit => alive = false,
                }
            }
        }
        alive
    }

    /// A heartbeat or goodbye on every link whose NIC is up, as the driver builds it.
    fn hb_send(&mut self, m: &PairModel, hb: &mut Hb, kind: Kind) {
        let view = hb.view.unwrap_or([true, true]);
        let mut entries = Vec::new();
        for (addr, i, mac) in [(PUB, 0, P_MAC), (PRIV, 1, P_PRIV_MAC)] {
            let answers = hb.present.contains(&addr) && view[i];
            entries.push(Entry {
                addr,
                role: if answers {
                    Role::IDENTITY.with(Role::HOLDS)
                } else {
                    Role::IDENTITY
                },
                mac: if answers { mac } else { [0; 6] },
            });
        }
        for (addr, role) in hb.sender.alias_entries() {
            let mut role = role.with(Role::MANAGED);
            let mut mac = [0; 6];
            if role.has(Role::HOLDS) {
                if hb.present.contains(&addr) && view[0] {
                    mac = P_MAC;
                } else {
                    role = Role::MANAGED;
                }
            }
            entries.push(Entry { addr, role, mac });
        }
        let now = self.now;
        let mut d = Datagram {
            kind,
            state: if kind == Kind::Goodbye && hb.sender.stays_up() {
                wire::STATE_STAYS_UP
            } else {
                0
            },
            interval_ms: u32::try_from(m.config.interval.as_millis()).unwrap_or(u32::MAX),
            boot_id: hb.boot,
            seq: 0,
            time_ms: WALL_MS,
            nonce: hb.sender.echo(now),
            token: hb.sender.token(),
            ack: hb.sender.ack(),
            hostname: "primary".into(),
            entries,
        };
        for net in Net::BOTH {
            if !self.p_links[net.index()] {
                continue;
            }
            hb.seq += 1;
            d.seq = hb.seq;
            let bytes = wire::encode(&d, Some(&m.key));
            let from = match net {
                Net::Pub => PUB,
                Net::Priv => PRIV,
            };
            self.send(m, Side::S, net, from, Body::Udp(bytes));
        }
    }

    /// Gratuitous ARP from the primary for those of `addrs` it has (the secondary's conflict
    /// watch hears those it watches).
    fn p_announce(&mut self, m: &PairModel, addrs: &[IpAddr]) {
        if !self.p_links[0] {
            return;
        }
        let watched = m.config.addrs.list();
        for a in addrs {
            if watched.contains(a) && (*a == PUB || self.p_aliases.contains(a)) {
                self.send(
                    m,
                    Side::S,
                    Net::Pub,
                    *a,
                    Body::Arp {
                        addr: *a,
                        mac: P_MAC,
                    },
                );
            }
        }
    }

    /// heartbeatd probes every service address it watches: the secondary's kernel answers
    /// for those it has.
    fn p_probe(&mut self, m: &PairModel) {
        if !self.p_links[0] || !m.config.addrs.alias() {
            return;
        }
        if self.s_answers(ALIAS) {
            self.send(
                m,
                Side::P,
                Net::Pub,
                S_PUB,
                Body::Arp {
                    addr: ALIAS,
                    mac: S_MAC,
                },
            );
        }
    }

    // ----- failoverd -----

    /// What `Pair::start` does: the addresses found on the interface are held at start; a
    /// pause kept in the state directory is handed to the core (its answer goes nowhere);
    /// then the first turn.
    fn start_fo(&mut self, m: &PairModel) {
        let c = &m.config;
        let addrs = c.addrs.list();
        let held: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.s_iface.contains(a))
            .collect();
        let config = Config {
            peer: Some(PUB),
            timeout: Some(c.timeout),
            release_after: 3,
            taken_over: addrs,
            conflict_grace: c.conflict_grace,
            fence_after: Some(c.fence_after),
            key_changed: false,
            announce_refresh: None,
        };
        let boot = self.draw();
        let seed = self.draw();
        let mut core = Failover::new(self.now, config, &held, seed);
        if self.pause_file {
            let _ = core.handle(self.now, Event::Command(Command::Pause { until: None }));
        }
        self.fo = Proc::Running(Fo {
            core,
            rx: Receiver::new(Some(m.key.clone()), Some(PUB)),
            boot,
            seq: 0,
            sources: [false, false],
            hook: None,
            deferred: Vec::new(),
            command: None,
        });
        self.props.fo_started(m, self.now);
        self.log(|| format!("failoverd starts, holding {}", list(&held)));
        self.fo_turn(m, None);
    }

    /// One loop turn of failoverd: an input, then the tick.
    fn fo_turn(&mut self, m: &PairModel, input: Option<FoInput>) {
        let Proc::Running(mut fo) = std::mem::replace(&mut self.fo, Proc::Down) else {
            return;
        };
        let now = self.now;
        let mut alive = true;
        match input {
            Some(FoInput::Udp(bytes, from, net)) => {
                match fo.rx.receive(&bytes, from, now, WALL_MS) {
                    Ok(Incoming::Heartbeat {
                        interval,
                        boot,
                        report,
                    }) => {
                        fo.sources[net.index()] = true;
                        self.props.peer_boot = Some(boot);
                        let via = Some(u32::try_from(net.index()).unwrap_or(0) + 1);
                        let ev = Event::Heartbeat {
                            link: from,
                            interval,
                            via,
                            boot,
                            report,
                        };
                        alive = self.fo_feed(m, &mut fo, ev);
                    }
                    Ok(Incoming::Goodbye {
                        boot,
                        stays_up,
                        report,
                    }) => {
                        if !self.props.goodbyes.contains(&boot) {
                            self.props.goodbyes.push(boot);
                        }
                        self.props.peer_boot = Some(boot);
                        let ev = Event::Goodbye {
                            link: from,
                            boot,
                            stays_up,
                            report,
                        };
                        alive = self.fo_feed(m, &mut fo, ev);
                    }
                    Ok(_) => {}
                    Err(Rejected::Invalid(DropReason::Unverified)) => {
                        fo.sources[net.index()] = true;
                        let lifetime = fo.core.timeout().max(Duration::from_secs(1));
                        let draws = &mut self.draws;
                        let challenge = fo.rx.challenge(now, lifetime, || {
                            *draws += 1;
                            mix(*draws)
                        });
                        if let Some(c) = challenge {
                            for a in c.to {
                                if a == PUB {
                                    fo.sources[0] = true;
                                } else if a == PRIV {
                                    fo.sources[1] = true;
                                }
                            }
                            let d = Datagram {
                                boot_id: fo.boot,
                                time_ms: WALL_MS,
                                nonce: c.nonce,
                                hostname: "secondary".into(),
                                ..Datagram::new(Kind::Challenge)
                            };
                            self.fo_send(m, &mut fo, d, true);
                        }
                    }
                    Err(e) => self.log(|| format!("  failoverd drops it: {e:?}")),
                }
            }
            // Its conflict watch hears only the addresses it takes over.
            Some(FoInput::Arp(addr, mac)) if m.config.addrs.list().contains(&addr) => {
                alive = self.fo_feed(m, &mut fo, Event::ProbeAnswer { addr, mac });
            }
            Some(FoInput::Arp(..)) => {}
            Some(FoInput::Command(c)) => {
                fo.command = Some(c);
                let command = match c {
                    Cmd::Pause => Command::Pause { until: None },
                    Cmd::Resume => Command::Resume,
                    Cmd::Release { force } => Command::Release { force },
                    Cmd::Takeover { force } => Command::Takeover { force },
                };
                alive = self.fo_feed(m, &mut fo, Event::Command(command));
            }
            Some(FoInput::Stop) => alive = self.fo_feed(m, &mut fo, Event::Shutdown),
            Some(FoInput::HookDone(phase, ok)) => {
                alive = self.fo_feed(m, &mut fo, Event::HooksDone { phase, ok })
            }
            None => {}
        }
        if alive {
            alive = self.fo_feed(m, &mut fo, Event::Tick);
        }
        if alive {
            self.fo = Proc::Running(fo);
        } else {
            self.log(|| "failoverd exits".into());
        }
    }

    /// Feeds the core and carries out its actions as the driver does; false once it exits.
    fn fo_feed(&mut self, m: &PairModel, fo: &mut Fo, event: Event) -> bool {
        let now = self.now;
        let mut queue = VecDeque::from([event]);
        let mut alive = true;
        while let Some(ev) = queue.pop_front() {
            if let Event::HooksDone {
                phase: HookPhase::PostRel,
                ..
            } = ev
            {
                let deferred = std::mem::take(&mut fo.deferred);
                if !deferred.is_empty() {
                    self.s_iface.retain(|a| !deferred.contains(a));
                    self.log(|| format!("secondary removes {} (late)", list(&deferred)));
                }
            }
            for a in fo.core.handle(now, ev) {
                match a {
                    Action::Transition { from, to, reason } => {
                        if matches!(to, ipfailover::failover::State::Acquiring(_))
                            && !matches!(from, ipfailover::failover::State::Acquiring(_))
                        {
                            self.props.s_reason = Some(reason);
                        }
                        self.log(|| format!("failoverd: {from} -> {to} ({reason})"));
                    }
                    Action::RunHooks {
                        phase,
                        reason,
                        addrs,
                    } => {
                        self.hooks_started(phase, reason);
                        let ok = match phase {
                            HookPhase::Test => {
                                let refused = std::mem::take(&mut self.refuse_test);
                                if refused {
                                    self.props.test_refused(m, now);
                                }
                                !refused
                            }
                            HookPhase::Fence => m.config.fence_kills,
                            _ => true,
                        };
                        self.log(|| {
                            format!(
                                "failoverd runs {} ({reason}) for {}{}",
                                phase.as_str(),
                                list(&addrs),
                                if ok { "" } else { ": it fails" }
                            )
                        });
                        if m.config.hook_time.is_zero() {
                            if phase == HookPhase::Fence && m.config.fence_kills {
                                self.crash(Side::P);
                            }
                            queue.push_back(Event::HooksDone { phase, ok });
                        } else {
                            fo.hook = Some((phase, ok, now + m.config.hook_time));
                        }
                    }
                    Action::AddAddresses(addrs) => {
                        for a in &addrs {
                            if !self.s_iface.contains(a) {
                                self.s_iface.push(*a);
                            }
                        }
                        self.log(|| format!("secondary adds {}", list(&addrs)));
                        queue.push_back(Event::AddressesAdded { failed: Vec::new() });
                    }
                    Action::RemoveAddresses(addrs) => {
                        if m.config.mutation == Mutation::RemoveAfterReport {
                            fo.deferred.extend(addrs.iter().copied());
                        } else {
                            self.s_iface.retain(|a| !addrs.contains(a));
                            self.log(|| format!("secondary removes {}", list(&addrs)));
                        }
                        queue.push_back(Event::AddressesRemoved { failed: Vec::new() });
                    }
                    Action::Announce(addrs) | Action::Defend(addrs) => self.s_announce(m, &addrs),
                    Action::Probe(_) => self.s_probe(m),
                    Action::SendReport(r) => self.fo_report(m, fo, &r),
                    Action::Notify(n) => {
                        match &n {
                            Notice::Paused(_) => self.pause_file = true,
                            Notice::Resumed { .. } => self.pause_file = false,
                            _ => {}
                        }
                        self.log(|| format!("failoverd: {n:?}"));
                    }
                    Action::Answer(result) => {
                        let command = fo.command.take();
                        if result.is_ok() {
                            self.props.answered(m, now, command);
                        }
                        self.log(|| format!("failoverd answers {command:?}: {result:?}"));
                    }
                    Action::Exit => alive = false,
                    Action::StopAnnouncing(_) | Action::HandBack { .. } | Action::Reconfigured => {}
                }
            }
        }
        alive
    }

    /// The `released` report, to the primary on every link its datagrams came from.
    fn fo_report(&mut self, m: &PairModel, fo: &mut Fo, r: &OutReport) {
        let d = Datagram {
            boot_id: fo.boot,
            time_ms: WALL_MS,
            nonce: r.id,
            token: r.token,
            hostname: "secondary".into(),
            entries: r.entries.clone(),
            ..Datagram::new(Kind::Released)
        };
        self.fo_send(m, fo, d, false);
    }

    /// Sends `d` to the primary on every link it was heard on. A unicast to the primary's own
    /// address stays here while this host holds that address; a challenge also goes to each
    /// link's broadcast address, which does not.
    fn fo_send(&mut self, m: &PairModel, fo: &mut Fo, mut d: Datagram, broadcast: bool) {
        for net in Net::BOTH {
            if !fo.sources[net.index()] || (net == Net::Pub && !self.s_pub) {
                continue;
            }
            if net == Net::Pub && !broadcast && self.s_iface.contains(&PUB) {
                continue;
            }
            fo.seq += 1;
            d.seq = fo.seq;
            let bytes = wire::encode(&d, Some(&m.key));
            let from = match net {
                Net::Pub => S_PUB,
                Net::Priv => S_PRIV,
            };
            self.send(m, Side::P, net, from, Body::Udp(bytes));
        }
    }

    /// Gratuitous ARP from the secondary: heartbeatd's conflict watch hears its service
    /// address.
    fn s_announce(&mut self, m: &PairModel, addrs: &[IpAddr]) {
        if !self.s_pub || !m.config.addrs.alias() {
            return;
        }
        if addrs.contains(&ALIAS) && self.s_iface.contains(&ALIAS) {
            self.send(
                m,
                Side::P,
                Net::Pub,
                ALIAS,
                Body::Arp {
                    addr: ALIAS,
                    mac: S_MAC,
                },
            );
        }
    }

    /// failoverd probes every address it watches: the primary's kernel answers for those it
    /// has on an up link.
    fn s_probe(&mut self, m: &PairModel) {
        if !self.s_pub {
            return;
        }
        for a in m.config.addrs.list() {
            if self.p_answers(a) {
                self.send(
                    m,
                    Side::S,
                    Net::Pub,
                    a,
                    Body::Arp {
                        addr: a,
                        mac: P_MAC,
                    },
                );
            }
        }
    }

    // ----- Who answers -----

    /// The primary's kernel answers for `addr`: its host is up, its public link too, and the
    /// address is on its interface.
    pub(crate) fn p_answers(&self, addr: IpAddr) -> bool {
        self.p_up && self.p_links[0] && (addr == PUB || self.p_aliases.contains(&addr))
    }

    /// The secondary's kernel answers for `addr`.
    pub(crate) fn s_answers(&self, addr: IpAddr) -> bool {
        self.s_up && self.s_pub && self.s_iface.contains(&addr)
    }
}

/// A counter spread into an id that looks random (SplitMix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)).max(1)
}

pub(crate) fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "nothing".into();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A packet in words, for the timeline.
fn describe(p: &Packet) -> String {
    let dir = match p.to {
        Side::S => "P→S",
        Side::P => "S→P",
    };
    let net = match p.net {
        Net::Pub => "public",
        Net::Priv => "private",
    };
    let what = match &p.body {
        Body::Arp { addr, .. } => format!("ARP {addr}"),
        Body::Udp(bytes) => match wire::decode(bytes, None) {
            Ok(wire::Message::Ipfo { datagram: d, .. }) => {
                let roles: Vec<String> = d
                    .entries
                    .iter()
                    .filter(|e| e.addr != PRIV && e.addr != S_PRIV)
                    .map(|e| {
                        let mut r = String::new();
                        if e.role.has(Role::HOLDS) {
                            r.push_str("holds");
                        } else if e.role.has(Role::WANTS) {
                            r.push_str("wants");
                        } else {
                            r.push_str("none");
                        }
                        if e.role.has(Role::MANUAL) {
                            r.push_str("/manual");
                        }
                        format!("{} {r}", e.addr)
                    })
                    .collect();
                let mut s = format!("{} seq {}", d.kind.as_str(), d.seq);
                if d.nonce != 0 {
                    s.push_str(&format!(
                        " {} {:x}",
                        if d.kind == Kind::Released {
                            "id"
                        } else {
                            "nonce"
                        },
                        d.nonce & 0xffff
                    ));
                }
                if d.token != 0 {
                    s.push_str(&format!(" token {:x}", d.token & 0xffff));
                }
                if d.ack != 0 {
                    s.push_str(&format!(" ack {:x}", d.ack & 0xffff));
                }
                if d.stays_up() {
                    s.push_str(" stays-up");
                }
                if !roles.is_empty() {
                    s.push_str(&format!(" [{}]", roles.join(", ")));
                }
                s
            }
            _ => "junk".into(),
        },
    };
    format!("{dir} {net} {what}")
}
