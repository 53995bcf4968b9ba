//! Mail to the administrator (SPEC §6): the transport for the notices failoverd composes.
//!
//! The failover loop hands a [`Notice`] to [`Mailer::send`], which only pushes it into a
//! channel: a worker thread does everything slow. The worker sends one message at a time,
//! keeps at least `min_gap` between two messages, coalesces the notices that pile up
//! meanwhile into one digest, and retries a failed send with exponential back-off (1 s,
//! doubling, at most 60 s) until each notice has been tried for `give_up_after`. A dead or
//! slow mail server therefore costs the failover loop nothing. While notices keep coming (a
//! flapping link), each digest that had to wait for the gap doubles the next gap, up to
//! [`MAX_GAP`]; a gap that passes without a notice brings it back to `min_gap`. A notice that
//! cannot wait (sent with [`Mailer::send`], not [`Mailer::send_routine`]: a takeover, a
//! release, a conflict) waits at most `min_gap` whatever the gap has grown to.
//!
//! Transports: `smtp://` and `smtps://` URLs in lettre's form (credentials, `?tls=required`
//! for STARTTLS or nothing, rustls with the system's CA certificates), or a local `sendmail`
//! (`/usr/sbin/sendmail`, or `sendmail:/absolute/path`), run with a time limit. An `smtp://`
//! server that offers STARTTLS gets it ([`SmtpRoute`]), and a password goes only inside TLS
//! unless the URL says `password_in_clear=yes` (docs/configuration.md).
//!
//! The scheduling rules live in `Outbox`, which never reads a clock: the worker passes
//! `now` in, which lets the tests below check them in virtual time.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

/// Least time between two messages, unless configured otherwise.
pub const DEFAULT_MIN_GAP: Duration = Duration::from_secs(5);
/// How long a notice is retried before it is dropped, unless configured otherwise.
pub const DEFAULT_GIVE_UP: Duration = Duration::from_secs(60 * 60);

/// The longest gap between two messages while notices keep coming.
pub const MAX_GAP: Duration = Duration::from_secs(10 * 60);
/// The prefix failoverd puts on every subject; a digest strips it from the subjects it lists.
const SUBJECT_PREFIX: &str = "[ipfailover] ";
/// A digest's subject is cut to about this many characters.
const SUBJECT_MAX_CHARS: usize = 200;
/// The first retry comes this long after a failed attempt; each further one doubles it...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Connect and per-command limit for SMTP, so a black-hole server cannot stall the worker.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a local sendmail may take before it is killed.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// The sendmail of `FAILOVER_EMAIL_TRANSPORT=sendmail`.
const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";
/// At most this many notices wait; beyond that the middle of the queue is dropped, keeping
/// the first ones (how it began) and the latest (how things stand).
const MAX_PENDING: usize = 200;
/// [`Mailer::shutdown`] waits this much beyond its grace for the worker to log what it lost.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(50);

/// Where mail goes and who it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `smtp://host:port`, `smtps://user:pass@host:465`, `sendmail` or `sendmail:/abs/path`.
    pub transport: String,
    /// The sender address (`From:` and envelope sender).
    pub from: String,
    /// Where notices go; at least one, else the Mailer is not started (the caller's job).
    pub recipients: Vec<String>,
    /// This host's name, for the subject of a digest.
    pub hostname: String,
    /// Least time between two messages ([`DEFAULT_MIN_GAP`]).
    pub min_gap: Duration,
    /// How long a notice is retried, from its first attempt, before it is dropped
    /// ([`DEFAULT_GIVE_UP`]).
    pub give_up_after: Duration,
}

impl MailSettings {
    /// Checks what [`Mailer::start`] checks (transport form, addresses), without starting
    /// anything; for a configuration check at load or reload time.
    pub fn validate(&self) -> Result<(), String> {
        Prepared::new(self).map(drop)
    }

    /// How mail leaves, for `-t`: the transport, its password hidden, and how it is protected
    /// (`smtp://ipfo:***@mail.example.org:25: STARTTLS when the server offers it; the password
    /// only inside TLS`). Settings that do not validate are shown as they are, password hidden.
    pub fn describe_transport(&self) -> String {
        match parse_route(&self.transport) {
            Ok(Route::Smtp(route)) => route.describe(),
            Ok(Route::Sendmail(path)) => path.display().to_string(),
            Err(_) => redact(&self.transport),
        }
    }
}

/// The sender used when `FAILOVER_EMAIL_FROM` is unset: `failover@<hostname>`, the host name's
/// trailing dots dropped (`sec.example.com.` is a valid host name, not a valid mail domain).
/// A host name that still makes no mail address gives `failover@localhost` and a warning:
/// a default must never stop the daemon.
pub fn default_sender(hostname: &str) -> (String, Option<String>) {
    let host = hostname.trim().trim_end_matches('.');
    let candidate = format!("failover@{host}");
    if !host.is_empty() && candidate.parse::<Mailbox>().is_ok() {
        return (candidate, None);
    }
    (
        "failover@localhost".to_owned(),
        Some(format!(
            "this host's name {hostname:?} makes no mail address: mail comes from \
             failover@localhost (set FAILOVER_EMAIL_FROM)"
        )),
    )
}

/// failoverd's mail settings, as its start, a SIGHUP, `-t` and `failoverctl check-config` all
/// build them: `None` without recipients; an error for what the configuration says wrongly (a
/// transport, a recipient, an explicit sender); a warning beside them when the default sender
/// had to fall back.
pub fn settings_for(
    settings: &ipfailover::settings::Settings,
    hostname: &str,
) -> Result<Option<(MailSettings, Option<String>)>, String> {
    check(settings, hostname).map_err(|(_, message)| message)
}

/// A problem with the mail settings: the key it is about (`FAILOVER_EMAIL_TRANSPORT`, `_FROM`
/// or `_RECIPIENT`) and what is wrong.
pub type KeyedError = (&'static str, String);

/// [`settings_for`], with the key an error is about: the configuration check names it.
pub fn check(
    settings: &ipfailover::settings::Settings,
    hostname: &str,
) -> Result<Option<(MailSettings, Option<String>)>, KeyedError> {
    if settings.email_recipients.is_empty() {
        return Ok(None);
    }
    let (from, warning) = match &settings.email_from {
        Some(from) => (from.clone(), None),
        None => default_sender(hostname),
    };
    let ms = MailSettings {
        transport: settings.email_transport.clone(),
        from,
        recipients: settings.email_recipients.clone(),
        hostname: hostname.to_string(),
        min_gap: DEFAULT_MIN_GAP,
        give_up_after: DEFAULT_GIVE_UP,
    };
    Prepared::new_keyed(&ms)?;
    Ok(Some((ms, warning)))
}

/// A Message-ID of our own: lettre's default takes the system host name as it is, and one with
/// a CR or LF in it would break the header.
fn message_id(hostname: &str) -> String {
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .take(253)
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() { "localhost" } else { host };
    let mut r = [0u8; 12];
    if getrandom::fill(&mut r).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        r[..12].copy_from_slice(&t.to_le_bytes()[..12]);
    }
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}.ipfailover@{host}>")
}

/// One thing to tell the administrator, composed by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The subject, `[ipfailover] ` first.
    pub subject: String,
    /// The plain-text body, lines as given.
    pub body: String,
}

/// Counters for the status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailStats {
    /// Messages delivered (a digest counts once).
    pub sent: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Notices given up on: retried for `give_up_after`, shed from an overfull queue, or
    /// handed in after the worker was gone.
    pub dropped: u64,
    /// Notices handed in and neither delivered nor dropped yet.
    pub pending: u64,
    /// Notices delivered inside a digest headed by another notice (a digest of N adds N - 1).
    pub coalesced: u64,
}

/// The mail worker: a thread fed by a channel.
pub struct Mailer {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    worker: JoinHandle<()>,
    /// Disconnected once the worker has returned (its sender is dropped then).
    finished: Receiver<()>,
}

impl fmt::Debug for Mailer {
    // By hand: the transport may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Checks the settings (transport form, addresses parse as mailboxes) and starts the
    /// worker thread. Never connects here.
    pub fn start(settings: MailSettings) -> Result<Mailer, String> {
        let prepared = Prepared::new(&settings)?;
        if let Route::Sendmail(path) = &prepared.route {
            if !path.is_file() {
                log::warn!("mail: {} does not exist (yet)", path.display());
            }
        }
        let shared = Arc::new(Shared {
            stats: Mutex::new(MailStats::default()),
            worker_gone: AtomicBool::new(false),
        });
        let (commands, inbox) = mpsc::channel();
        let (finished_tx, finished) = mpsc::channel::<()>();
        let worker = Worker {
            prepared,
            outbox: Outbox::default(),
            shared: Arc::clone(&shared),
            closing: None,
        };
        let worker = thread::Builder::new()
            .name("mail".to_owned())
            .spawn(move || {
                let _finished = finished_tx;
                worker.run(&inbox);
            })
            .map_err(|e| format!("cannot start the mail thread: {e}"))?;
        Ok(Mailer {
            commands,
            shared,
            worker,
            finished,
        })
    }

    /// Queues a notice that cannot wait: it goes at most `min_gap` after the last message.
    /// Never blocks, never fails (the caller is the failover loop).
    pub fn send(&self, notice: Notice) {
        self.queue(notice, true);
    }

    /// Queues a notice that can wait for the next digest, however far the gap has grown
    /// while notices keep coming (a link that flaps).
    pub fn send_routine(&self, notice: Notice) {
        self.queue(notice, false);
    }

    fn queue(&self, notice: Notice, urgent: bool) {
        self.shared.stats().pending += 1;
        if let Err(mpsc::SendError(Command::Notice(notice, _))) =
            self.commands.send(Command::Notice(notice, urgent))
        {
            {
                let mut stats = self.shared.stats();
                stats.pending = stats.pending.saturating_sub(1);
                stats.dropped += 1;
            }
            if !self.shared.worker_gone.swap(true, Ordering::Relaxed) {
                log::error!(
                    "mail: the mail thread is gone; notices are not sent: {}",
                    notice.subject
                );
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> MailStats {
        *self.shared.stats()
    }

    /// New settings (SIGHUP); pending notices go with the new settings, and a send that is
    /// being retried is tried again at once. Invalid settings are logged and ignored: the
    /// old ones stay.
    pub fn reconfigure(&self, settings: MailSettings) {
        match Prepared::new(&settings) {
            Ok(prepared) => {
                // A closed channel was logged by `send`, or will be.
                let _ = self.commands.send(Command::Reconfigure(Box::new(prepared)));
            }
            Err(e) => log::error!("mail: new settings ignored, the old ones stay: {e}"),
        }
    }

    /// At exit: gives the worker at most `grace` to deliver what is pending (at once, without
    /// waiting for `min_gap`), then returns; notices still pending are logged as lost.
    pub fn shutdown(self, grace: Duration) {
        let Mailer {
            commands,
            shared,
            worker,
            finished,
        } = self;
        let deadline = after(Instant::now(), grace);
        let _ = commands.send(Command::Shutdown(deadline));
        drop(commands);
        match finished.recv_timeout(grace.saturating_add(SHUTDOWN_SLACK)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if worker.join().is_err() {
                    log::error!("mail: the mail thread panicked");
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // The worker is inside an attempt (bounded by the transport's time limit);
                // it is left to finish or to die with the process.
                let pending = shared.stats().pending;
                if pending > 0 {
                    log::error!("mail: still sending at exit: {pending} notice(s) lost");
                }
            }
        }
    }
}

/// What the worker and the callers share.
#[derive(Debug)]
struct Shared {
    stats: Mutex<MailStats>,
    /// Set when `send` first found the channel closed, so that it logs that once.
    worker_gone: AtomicBool,
}

impl Shared {
    /// The counters, held only for a few arithmetic operations.
    fn stats(&self) -> MutexGuard<'_, MailStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the callers tell the worker.
enum Command {
    /// A notice, and whether it cannot wait beyond the least gap.
    Notice(Notice, bool),
    Reconfigure(Box<Prepared>),
    /// Deliver what is pending by this instant, then stop.
    Shutdown(Instant),
}

/// Settings checked and turned into what a send needs.
struct Prepared {
    route: Route,
    from: Mailbox,
    to: Vec<Mailbox>,
    hostname: String,
    min_gap: Duration,
    give_up_after: Duration,
}

/// How a message leaves this host.
enum Route {
    /// SMTP, as configured by the URL. (Boxed: with the platform's TLS, as on macOS, the TLS
    /// parameters are large.)
    Smtp(Box<SmtpRoute>),
    /// A local sendmail program.
    Sendmail(PathBuf),
}

/// An `smtp://` or `smtps://` transport, read from its URL as lettre reads it, with our rules
/// for TLS: STARTTLS whenever the server offers it, and a password only inside TLS.
struct SmtpRoute {
    /// Host name or address (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The EHLO name: the URL's path, else this host's name.
    hello: ClientId,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    /// `password_in_clear=yes`: the administrator lets the password go without TLS.
    password_in_clear: bool,
    /// The URL with the password hidden, for messages.
    shown: String,
}

/// When TLS is used.
enum SmtpTls {
    /// `smtps://`: TLS from the first byte.
    Wrapper(TlsParameters),
    /// `?tls=required`: STARTTLS, or no mail.
    Required(TlsParameters),
    /// The default (and `?tls=opportunistic`): STARTTLS when the server offers it.
    WhenOffered(TlsParameters),
    /// `?tls=none`: never (a server whose certificate cannot be checked).
    Never,
}

impl SmtpRoute {
    /// Reads `smtp[s]://[user[:password]@]host[:port][/ehlo-name][?tls=...&password_in_clear=...]`.
    fn parse(transport: &str) -> Result<SmtpRoute, String> {
        let shown = redact(transport);
        let bad = |why: String| format!("mail transport {shown:?}: {why}");
        let url = url::Url::parse(transport).map_err(|e| bad(e.to_string()))?;
        let mut tls_mode = None;
        let mut password_in_clear = false;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" => tls_mode = Some(value.into_owned()),
                "password_in_clear" => {
                    password_in_clear = match value.as_ref() {
                        "yes" | "true" => true,
                        "no" | "false" => false,
                        other => {
                            return Err(bad(format!(
                                "password_in_clear is yes or no, not {other:?}"
                            )))
                        }
                    }
                }
                other => return Err(bad(format!("unknown parameter {other:?}"))),
            }
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            _ => return Err(bad("no host".to_string())),
        };
        // A server on this machine: nothing leaves it, and local servers often show a
        // certificate nobody signed (Debian's snakeoil) or one for another name.
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
        let params = || {
            TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(loopback)
                .dangerous_accept_invalid_hostnames(loopback)
                .build()
                .map_err(|e| bad(error_chain(&e)))
        };
        let (tls, default_port) = match (url.scheme(), tls_mode.as_deref()) {
            // lettre's reading: smtps:// is TLS from the start, whatever tls= says.
            ("smtps", _) => (SmtpTls::Wrapper(params()?), 465),
            ("smtp", None) => (SmtpTls::WhenOffered(params()?), 25),
            ("smtp", Some("opportunistic")) => (SmtpTls::WhenOffered(params()?), 587),
            ("smtp", Some("required")) => (SmtpTls::Required(params()?), 587),
            ("smtp", Some("none")) => (SmtpTls::Never, 25),
            ("smtp", Some(other)) => {
                return Err(bad(format!(
                    "tls is required, opportunistic or none, not {other:?}"
                )))
            }
            (other, _) => return Err(bad(format!("unknown scheme {other:?}"))),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|e| bad(e.to_string()))
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        let path = url.path().trim_matches('/');
        let hello = if path.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(path.to_string())
        };
        Ok(SmtpRoute {
            host,
            port: url.port().unwrap_or(default_port),
            hello,
            tls,
            credentials,
            password_in_clear,
            shown,
        })
    }

    /// One line for `-t`: where mail goes and how it is protected.
    fn describe(&self) -> String {
        let tls = match self.tls {
            SmtpTls::Wrapper(_) => "TLS from the start",
            SmtpTls::Required(_) => "STARTTLS required",
            SmtpTls::WhenOffered(_) => "STARTTLS when the server offers it",
            SmtpTls::Never => "no TLS (tls=none)",
        };
        let password = match (&self.credentials, self.password_in_clear) {
            (None, _) => "",
            (Some(_), false) => "; the password only inside TLS",
            (Some(_), true) => "; the password in clear without TLS (password_in_clear=yes)",
        };
        format!("{}: {tls}{password}", self.shown)
    }

    /// One attempt: connect, start TLS as configured, authenticate if told to, send.
    fn send(&self, message: &Message, timeout: Duration) -> Result<(), String> {
        let wrapper = match &self.tls {
            SmtpTls::Wrapper(p) => Some(p),
            _ => None,
        };
        let mut conn = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(timeout),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(|e| error_chain(&e))?;
        let result = self.converse(&mut conn, message);
        conn.abort();
        result
    }

    fn converse(&self, conn: &mut SmtpConnection, message: &Message) -> Result<(), String> {
        match &self.tls {
            SmtpTls::Required(p) => conn.starttls(p, &self.hello),
            SmtpTls::WhenOffered(p) if conn.can_starttls() => conn.starttls(p, &self.hello),
            _ => Ok(()),
        }
        .map_err(|e| format!("STARTTLS: {}", error_chain(&e)))?;
        if let Some(credentials) = &self.credentials {
            if !conn.is_encrypted() && !self.password_in_clear {
                return Err(format!(
                    "{}:{} offers no STARTTLS, and the password is not sent in clear: use \
                     smtps://, or add password_in_clear=yes to the URL to send it anyway",
                    self.host, self.port
                ));
            }
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .map_err(|e| error_chain(&e))?;
        }
        conn.send(message.envelope(), &message.formatted())
            .map(drop)
            .map_err(|e| error_chain(&e))
    }
}

impl Prepared {
    fn new(settings: &MailSettings) -> Result<Prepared, String> {
        Prepared::new_keyed(settings).map_err(|(_, message)| message)
    }

    /// [`Prepared::new`], an error naming the key it is about.
    fn new_keyed(settings: &MailSettings) -> Result<Prepared, KeyedError> {
        let route =
            parse_route(&settings.transport).map_err(|e| ("FAILOVER_EMAIL_TRANSPORT", e))?;
        let from = settings.from.trim().parse::<Mailbox>().map_err(|e| {
            (
                "FAILOVER_EMAIL_FROM",
                format!("mail sender {:?} is not a mail address: {e}", settings.from),
            )
        })?;
        if settings.recipients.is_empty() {
            return Err(("FAILOVER_EMAIL_RECIPIENT", "no mail recipients".to_owned()));
        }
        let to = settings
            .recipients
            .iter()
            .map(|r| {
                r.trim().parse::<Mailbox>().map_err(|e| {
                    (
                        "FAILOVER_EMAIL_RECIPIENT",
                        format!("mail recipient {r:?} is not a mail address: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            route,
            from,
            to,
            hostname: settings.hostname.clone(),
            min_gap: settings.min_gap,
            give_up_after: settings.give_up_after,
        })
    }

    fn recipients(&self) -> String {
        let addrs: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        addrs.join(", ")
    }

    /// The message for one notice (or digest): plain text, with the headers of SPEC §6.
    fn message(&self, notice: &Notice) -> Result<Message, String> {
        let mut builder = Message::builder().from(self.from.clone());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .subject(one_line(&notice.subject))
            .message_id(Some(message_id(&self.hostname)))
            .header(ContentType::TEXT_PLAIN)
            .header(AutoSubmitted)
            .body(notice.body.clone())
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// One attempt to deliver `message`, within about `timeout` (SMTP: per command).
    fn deliver(&self, message: &Message, timeout: Duration) -> Result<(), String> {
        match &self.route {
            Route::Smtp(route) => route.send(message, timeout),
            Route::Sendmail(path) => {
                // Local submission takes UNIX line ends.
                let text = String::from_utf8_lossy(&message.formatted()).replace("\r\n", "\n");
                run_sendmail(path, message.envelope(), text.as_bytes(), timeout)
            }
        }
    }
}

/// The transport forms of `FAILOVER_EMAIL_TRANSPORT`.
fn parse_route(transport: &str) -> Result<Route, String> {
    let t = transport.trim();
    if t == "sendmail" {
        return Ok(Route::Sendmail(PathBuf::from(DEFAULT_SENDMAIL)));
    }
    if let Some(path) = t.strip_prefix("sendmail:") {
        return if Path::new(path).is_absolute() {
            Ok(Route::Sendmail(PathBuf::from(path)))
        } else {
            Err(format!(
                "mail transport {t:?}: the sendmail path must be absolute"
            ))
        };
    }
    if t.starts_with("smtp://") || t.starts_with("smtps://") {
        return SmtpRoute::parse(t).map(|r| Route::Smtp(Box::new(r)));
    }
    Err(format!(
        "mail transport {:?} is none of smtp://host:port, smtps://[user:pass@]host:port, \
         sendmail, sendmail:/absolute/path",
        redact(t)
    ))
}

/// The transport with any password hidden, for messages.
fn redact(transport: &str) -> String {
    ipfailover::settings::redact_transport(transport)
}

/// An error with its causes, each once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A header value on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// `Auto-Submitted: auto-generated` (RFC 3834), so that auto-responders stay quiet.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Runs `sendmail -i -f FROM -- TO...` with the message on its standard input, as lettre's
/// sendmail transport does, but kills it after `timeout`.
fn run_sendmail(
    path: &Path,
    envelope: &Envelope,
    message: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let mut command = Process::new(path);
    command.arg("-i");
    if let Some(from) = envelope.from() {
        command.arg("-f").arg(AsRef::<str>::as_ref(from));
    }
    command
        .arg("--")
        .args(envelope.to().iter().map(AsRef::<str>::as_ref))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;

    // Helper threads feed stdin and drain stderr, so that a large message or a chatty
    // sendmail cannot dead-lock with us; they end when the child closes its pipes.
    let (written_tx, written) = mpsc::channel();
    let (stderr_tx, stderr) = mpsc::channel();
    let mut helpers = Ok(());
    if let Some(mut stdin) = child.stdin.take() {
        let input = message.to_vec();
        helpers = helpers.and(spawn_helper("sendmail-in", move || {
            let _ = written_tx.send(stdin.write_all(&input));
        }));
    }
    if let Some(mut pipe) = child.stderr.take() {
        helpers = helpers.and(spawn_helper("sendmail-err", move || {
            let _ = stderr_tx.send(read_tail(&mut pipe, 2048));
        }));
    }
    if let Err(e) = helpers {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("cannot run {}: {e}", path.display()));
    }

    let deadline = after(Instant::now(), timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {timeout:?}: killed",
                    path.display()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {}: {e}", path.display()));
            }
        }
    };
    if !status.success() {
        let stderr = stderr
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(format!("{} {status}: {}", path.display(), stderr.trim()));
    }
    match written.recv_timeout(Duration::from_secs(1)) {
        Ok(Err(e)) => Err(format!(
            "{} exited before reading the whole message: {e}",
            path.display()
        )),
        _ => Ok(()),
    }
}

fn spawn_helper(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Everything `reader` yields, keeping only the last `keep` bytes.
fn read_tail(reader: &mut impl Read, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
}

/// One message for the notices sent together: the notice itself if alone, else a digest.
fn compose(hostname: &str, notices: &[Notice]) -> Notice {
    if let [single] = notices {
        return single.clone();
    }
    let listed: Vec<&str> = notices
        .iter()
        .map(|n| n.subject.strip_prefix(SUBJECT_PREFIX).unwrap_or(&n.subject))
        .collect();
    let subject = format!(
        "{SUBJECT_PREFIX}{hostname}: {} events: {}",
        notices.len(),
        listed.join(", ")
    );
    let mut body = format!("{} events on {hostname}, oldest first.\n\n", notices.len());
    for (i, notice) in notices.iter().enumerate() {
        if i > 0 {
            body.push_str(&"-".repeat(72));
            body.push('\n');
        }
        body.push_str(&one_line(&notice.subject));
        body.push_str("\n\n");
        body.push_str(notice.body.trim_end_matches('\n'));
        body.push('\n');
    }
    Notice {
        subject: truncate_chars(&subject, SUBJECT_MAX_CHARS),
        body,
    }
}

/// `text` cut to at most `max` characters, `...` marking a cut.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

/// `t + d`, or as late as the clock goes: settings may say "forever" with a huge duration.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(t)
}

/// A notice waiting to be delivered.
#[derive(Debug)]
struct Entry {
    notice: Notice,
    /// When it was first part of an attempt; its give-up clock starts there.
    first_try: Option<Instant>,
    /// It waits at most the least gap, not a gap grown by a stream of notices.
    urgent: bool,
}

/// Why nothing may be sent before some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The least gap after a message (sent or given up); skipped at shutdown.
    Gap(Instant),
    /// The back-off after a failed attempt.
    Retry(Instant),
}

/// The notices waiting and when the next attempt may go: the scheduling rules, with `now`
/// passed in.
#[derive(Debug)]
struct Outbox {
    /// Oldest first.
    entries: Vec<Entry>,
    wait: Option<Wait>,
    /// The back-off to use after the next failure.
    retry_delay: Duration,
    /// How many of `entries` the attempt under way carries.
    in_attempt: usize,
    /// How many messages in a row had to wait for a gap (notices kept coming): each doubles
    /// the next gap.
    streak: u32,
    /// The attempt under way carries notices that waited for a gap.
    pressed: bool,
    /// An urgent notice may go from this instant (the least gap after the last message).
    urgent_from: Option<Instant>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            entries: Vec::new(),
            wait: None,
            retry_delay: FIRST_RETRY,
            in_attempt: 0,
            streak: 0,
            pressed: false,
            urgent_from: None,
        }
    }
}

/// The gap after a message, the `streak`-th in a row whose notices had to wait: `min_gap`
/// doubled that many times, at most [`MAX_GAP`] (or `min_gap`, if that is longer).
fn grown_gap(min_gap: Duration, streak: u32) -> Duration {
    min_gap
        .saturating_mul(1u32 << streak.min(20))
        .min(MAX_GAP.max(min_gap))
}

/// What became of a failed attempt.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    /// Notices whose time ran out: dropped.
    dropped: Vec<Notice>,
    /// When the rest are tried again (`None` when nothing is left).
    retry_in: Option<Duration>,
}

impl Outbox {
    /// A notice joins the queue at `now`: it goes with the next attempt, whatever its kind.
    /// The first notice after a whole gap without one ends a streak: it goes at once, and the
    /// gap after it is `min_gap` again. Returns a notice shed to keep the queue bounded.
    fn handle_notice(&mut self, now: Instant, notice: Notice, urgent: bool) -> Option<Notice> {
        let quiet = self.entries.is_empty()
            && match self.wait {
                None => true,
                Some(Wait::Gap(at)) => at <= now,
                Some(Wait::Retry(_)) => false,
            };
        if quiet {
            self.streak = 0;
            self.wait = None;
        }
        self.entries.push(Entry {
            notice,
            first_try: None,
            urgent,
        });
        (self.entries.len() > MAX_PENDING).then(|| self.entries.remove(MAX_PENDING / 2).notice)
    }

    /// When the next attempt is due; `None` when nothing waits. At shutdown the gap between
    /// messages is skipped, the back-off is not.
    fn next_deadline(&self, now: Instant, closing: bool) -> Option<Instant> {
        if self.entries.is_empty() {
            return None;
        }
        Some(match self.wait {
            None => now,
            Some(Wait::Gap(_)) if closing => now,
            Some(Wait::Gap(at)) => match self.urgent_from {
                Some(from) if self.entries.iter().any(|e| e.urgent) => at.min(from),
                _ => at,
            },
            Some(Wait::Retry(at)) => at,
        })
    }

    /// An attempt starts with every notice waiting; returns them, oldest first.
    fn begin_attempt(&mut self, now: Instant) -> Vec<Notice> {
        self.in_attempt = self.entries.len();
        // Notices that waited for a gap make this message part of a streak; a retry keeps
        // what the first attempt was.
        self.pressed = match self.wait {
            None => false,
            Some(Wait::Gap(_)) => true,
            Some(Wait::Retry(_)) => self.pressed,
        };
        self.entries
            .iter_mut()
            .map(|e| {
                e.first_try.get_or_insert(now);
                e.notice.clone()
            })
            .collect()
    }

    /// The attempt delivered its notices; the next message waits `min_gap`, doubled for each
    /// message in a row whose notices had to wait for a gap ([`grown_gap`]); an urgent one
    /// `min_gap` at most. Returns how many notices it carried.
    fn handle_sent(&mut self, now: Instant, min_gap: Duration) -> usize {
        let carried = self.entries.drain(..self.in_attempt).count();
        self.in_attempt = 0;
        self.streak = if self.pressed {
            self.streak.saturating_add(1)
        } else {
            0
        };
        self.pressed = false;
        self.wait = Some(Wait::Gap(after(now, grown_gap(min_gap, self.streak))));
        self.urgent_from = Some(after(now, min_gap));
        self.retry_delay = FIRST_RETRY;
        carried
    }

    /// The attempt failed. Notices tried for `give_up_after` since their first attempt are
    /// dropped; the rest are retried after the back-off, which doubles up to [`MAX_RETRY`] but
    /// never runs past the moment the oldest of them would be given up.
    fn handle_failed(
        &mut self,
        now: Instant,
        give_up_after: Duration,
        min_gap: Duration,
    ) -> Failure {
        let attempted = self.in_attempt.min(self.entries.len());
        self.in_attempt = 0;
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(self.entries.len());
        for (i, entry) in self.entries.drain(..).enumerate() {
            let expired = entry
                .first_try
                .is_some_and(|t| now.saturating_duration_since(t) >= give_up_after);
            if i < attempted && expired {
                dropped.push(entry.notice);
            } else {
                kept.push(entry);
            }
        }
        self.entries = kept;
        if self.entries.is_empty() {
            // A message given up counts as a message for the gap.
            self.wait = Some(Wait::Gap(after(now, min_gap)));
            self.urgent_from = Some(after(now, min_gap));
            self.retry_delay = FIRST_RETRY;
            return Failure {
                dropped,
                retry_in: None,
            };
        }
        let give_up_in = self
            .entries
            .iter()
            .filter_map(|e| e.first_try)
            .map(|t| after(t, give_up_after).saturating_duration_since(now))
            .min()
            .unwrap_or(MAX_RETRY);
        let delay = self.retry_delay.min(give_up_in);
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
        self.wait = Some(Wait::Retry(after(now, delay)));
        Failure {
            dropped,
            retry_in: Some(delay),
        }
    }

    /// New settings: a send being retried is tried again at once, its back-off restarted.
    fn handle_reconfigure(&mut self, now: Instant) {
        if let Some(Wait::Retry(_)) = self.wait {
            self.wait = Some(Wait::Retry(now));
            self.retry_delay = FIRST_RETRY;
        }
    }

    /// Everything still waiting, for the exit.
    fn take_all(&mut self) -> Vec<Notice> {
        self.in_attempt = 0;
        self.entries.drain(..).map(|e| e.notice).collect()
    }
}

/// The worker thread's state.
struct Worker {
    prepared: Prepared,
    outbox: Outbox,
    shared: Arc<Shared>,
    /// Set at shutdown: deliver by this instant, then stop.
    closing: Option<Instant>,
}

impl Worker {
    fn run(mut self, inbox: &Receiver<Command>) {
        let mut open = true;
        loop {
            let now = Instant::now();
            let due = self.outbox.next_deadline(now, self.closing.is_some());
            if let Some(end) = self.closing {
                match due {
                    None => break,
                    Some(at) if at > end => break,
                    Some(_) => {}
                }
            }
            if open {
                let received = match due {
                    None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(at) => inbox.recv_timeout(at.saturating_duration_since(now)),
                };
                match received {
                    Ok(command) => {
                        self.handle_command(command);
                        // Take in everything already queued, so that it goes in one message.
                        loop {
                            match inbox.try_recv() {
                                Ok(command) => self.handle_command(command),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => {
                                    open = false;
                                    break;
                                }
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                if !open && self.closing.is_none() {
                    // The Mailer was dropped without shutdown: no grace, what waits is lost.
                    self.closing = Some(Instant::now());
                }
            } else if let Some(at) = due {
                thread::sleep(at.saturating_duration_since(now));
            }
            let now = Instant::now();
            if self
                .outbox
                .next_deadline(now, self.closing.is_some())
                .is_some_and(|at| at <= now)
                && self.closing.is_none_or(|end| now <= end)
            {
                self.attempt(now);
            }
        }
        self.lose_pending();
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Notice(notice, urgent) => {
                if let Some(shed) = self.outbox.handle_notice(Instant::now(), notice, urgent) {
                    log::warn!(
                        "mail: more than {MAX_PENDING} notices wait; dropped: {}",
                        shed.subject
                    );
                    let mut stats = self.shared.stats();
                    stats.dropped += 1;
                    stats.pending = stats.pending.saturating_sub(1);
                }
            }
            Command::Reconfigure(prepared) => {
                self.prepared = *prepared;
                self.outbox.handle_reconfigure(Instant::now());
            }
            Command::Shutdown(deadline) => self.closing = Some(deadline),
        }
    }

    /// One attempt with every notice waiting.
    fn attempt(&mut self, now: Instant) {
        let notices = self.outbox.begin_attempt(now);
        let carried = notices.len() as u64;
        let notice = compose(&self.prepared.hostname, &notices);
        let timeout = match self.closing {
            // Within the grace, but long enough to connect at all.
            Some(end) => {
                let left = end.saturating_duration_since(now);
                left.max(Duration::from_millis(200))
            }
            None => Duration::MAX,
        };
        let result = self.prepared.message(&notice).and_then(|message| {
            let limit = match self.prepared.route {
                Route::Smtp(_) => SMTP_TIMEOUT,
                Route::Sendmail(_) => SENDMAIL_TIMEOUT,
            };
            self.prepared.deliver(&message, timeout.min(limit))
        });
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.outbox.handle_sent(now, self.prepared.min_gap);
                log::info!(
                    "mail sent to {}: {}",
                    self.prepared.recipients(),
                    notice.subject
                );
                let mut stats = self.shared.stats();
                stats.sent += 1;
                stats.coalesced += carried.saturating_sub(1);
                stats.pending = stats.pending.saturating_sub(carried);
            }
            Err(e) => {
                let failure = self.outbox.handle_failed(
                    now,
                    self.prepared.give_up_after,
                    self.prepared.min_gap,
                );
                match failure.retry_in {
                    Some(delay) => log::warn!(
                        "mail to {} failed: {e}; next try in {delay:.1?} ({})",
                        self.prepared.recipients(),
                        notice.subject
                    ),
                    None => log::warn!(
                        "mail to {} failed: {e} ({})",
                        self.prepared.recipients(),
                        notice.subject
                    ),
                }
                for lost in &failure.dropped {
                    log::error!(
                        "mail: given up after {:?} of retries: {}",
                        self.prepared.give_up_after,
                        lost.subject
                    );
                }
                let mut stats = self.shared.stats();
                stats.failed_attempts += 1;
                stats.dropped += failure.dropped.len() as u64;
                stats.pending = stats.pending.saturating_sub(failure.dropped.len() as u64);
            }
        }
    }

    /// At exit, what could not be delivered is logged and counted.
    fn lose_pending(&mut self) {
        let lost = self.outbox.take_all();
        for notice in &lost {
            log::error!("mail: not sent, lost at exit: {}", notice.subject);
        }
        let mut stats = self.shared.stats();
        stats.dropped += lost.len() as u64;
        stats.pending = stats.pending.saturating_sub(lost.len() as u64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn a_default_sender_never_stops_the_daemon() {
        assert_eq!(
            default_sender("sec.example.com."),
            ("failover@sec.example.com".to_owned(), None)
        );
        assert_eq!(default_sender("sec-1"), ("failover@sec-1".to_owned(), None));
        for bad in ["", ".", "bad host", "sec\r\nBcc: x@example.org", "a@b"] {
            let (from, warning) = default_sender(bad);
            assert_eq!(from, "failover@localhost", "{bad:?}");
            assert!(
                warning.is_some_and(|w| w.contains("FAILOVER_EMAIL_FROM")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_message_id_is_clean_whatever_the_host_name() {
        let id = message_id("sec\r\nX-Injected: yes");
        assert!(
            id.starts_with('<') && id.ends_with("@secX-Injectedyes>"),
            "{id}"
        );
        assert!(
            !id.contains('\r') && !id.contains('\n') && !id.contains(' '),
            "{id}"
        );
        assert!(message_id("").ends_with("@localhost>"));
        assert_ne!(message_id("h"), message_id("h"), "unique");
    }
    use std::fs;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Child;
    use std::sync::atomic::AtomicU32;

    fn notice(i: usize) -> Notice {
        Notice {
            subject: format!("[ipfailover] sec-1 event {i}"),
            body: format!("line one of {i}\nline two of {i}\n"),
        }
    }

    fn settings(transport: &str) -> MailSettings {
        MailSettings {
            transport: transport.to_owned(),
            from: "failover@example.org".to_owned(),
            recipients: vec![
                "admin@example.org".to_owned(),
                "Night Shift <oncall@example.net>".to_owned(),
            ],
            hostname: "sec-1".to_owned(),
            min_gap: Duration::from_millis(300),
            give_up_after: Duration::from_secs(60),
        }
    }

    /// A unique scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Scratch {
            static COUNT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "ipfo-mail-{what}-{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// aiosmtpd storing each message in a maildir; killed and removed on drop.
    struct SmtpServer {
        child: Child,
        maildir: Scratch,
    }

    impl SmtpServer {
        fn start(port: u16) -> SmtpServer {
            let maildir = Scratch::new("maildir");
            let child = Process::new("/usr/bin/python3")
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir.0.join("box"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let server = SmtpServer { child, maildir };
            assert!(
                wait_until(Duration::from_secs(5), || TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "aiosmtpd did not come up on port {port}"
            );
            server
        }

        /// The stored messages, CRLF turned to LF.
        fn messages(&self) -> Vec<String> {
            let Ok(dir) = fs::read_dir(self.maildir.0.join("box/new")) else {
                return Vec::new();
            };
            dir.map(|e| {
                fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .replace("\r\n", "\n")
            })
            .collect()
        }
    }

    impl Drop for SmtpServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        done()
    }

    /// The unfolded value of header `name` in `message`.
    fn header(message: &str, name: &str) -> Option<String> {
        let head = message.split("\n\n").next().unwrap();
        let mut value: Option<String> = None;
        for line in head.lines() {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    fn body(message: &str) -> &str {
        message.split_once("\n\n").unwrap().1
    }

    // --- The rules, in virtual time. ---

    #[test]
    fn outbox_sends_the_first_notice_at_once_then_keeps_the_gap() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(5);
        let mut outbox = Outbox::default();
        assert_eq!(outbox.next_deadline(t0, false), None);
        outbox.handle_notice(t0, notice(1), true);
        assert_eq!(outbox.next_deadline(t0, false), Some(t0));
        assert_eq!(outbox.begin_attempt(t0), vec![notice(1)]);
        assert_eq!(outbox.handle_sent(t0, gap), 1);
        assert_eq!(outbox.next_deadline(t0, false), None);

        // Notices within the gap wait for it, and all go together.
        for i in 2..5 {
            outbox.handle_notice(t0, notice(i), true);
        }
        assert_eq!(outbox.next_deadline(t0, false), Some(t0 + gap));
        // At shutdown the gap is skipped.
        assert_eq!(outbox.next_deadline(t0, true), Some(t0));
        assert_eq!(outbox.begin_attempt(t0 + gap).len(), 3);
        assert_eq!(outbox.handle_sent(t0 + gap, gap), 3);

        // After a quiet period, the next notice goes at once.
        let later = t0 + Duration::from_secs(60);
        outbox.handle_notice(later, notice(5), true);
        assert!(outbox.next_deadline(later, false).unwrap() <= later);
    }

    /// A link flapping for an hour, a notice every 2 s: digests every 5, 10, 20... s, then
    /// every 10 minutes; a takeover meanwhile waits 5 s at most; a quiet gap starts over.
    #[test]
    fn outbox_gap_grows_while_notices_keep_coming_but_not_for_urgent_ones() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(5);
        let mut outbox = Outbox::default();
        let mut sent_at = Vec::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(3600);
        let mut next_notice = t0;
        while now < end {
            if now >= next_notice {
                outbox.handle_notice(now, notice(1), false);
                next_notice += Duration::from_secs(2);
            }
            if outbox.next_deadline(now, false).is_some_and(|at| at <= now) {
                outbox.begin_attempt(now);
                outbox.handle_sent(now, gap);
                sent_at.push(now.duration_since(t0).as_secs());
            }
            now += Duration::from_secs(1);
        }
        assert_eq!(&sent_at[..8], &[0, 5, 15, 35, 75, 155, 315, 635]);
        // Then every 10 minutes: 12 messages in the hour, not 720.
        assert_eq!(sent_at[8] - sent_at[7], 600);
        assert_eq!(sent_at.len(), 12, "{sent_at:?}");
        // A takeover during the long gap goes 5 s after the last message.
        let last = t0 + Duration::from_secs(*sent_at.last().unwrap());
        outbox.handle_notice(now, notice(2), true);
        assert_eq!(outbox.next_deadline(now, false), Some(last + gap));
        outbox.begin_attempt(now);
        outbox.handle_sent(now, gap);
        // Quiet for a whole (grown) gap: the next notice goes at once, the gap is 5 s again.
        let quiet = now + MAX_GAP + Duration::from_secs(1);
        outbox.handle_notice(quiet, notice(3), false);
        assert_eq!(outbox.next_deadline(quiet, false), Some(quiet));
        outbox.begin_attempt(quiet);
        outbox.handle_sent(quiet, gap);
        outbox.handle_notice(quiet, notice(4), false);
        assert_eq!(outbox.next_deadline(quiet, false), Some(quiet + gap));
    }

    #[test]
    fn outbox_backs_off_doubling_to_a_minute_and_gives_up_per_notice() {
        let t0 = Instant::now();
        let give_up = Duration::from_secs(600);
        let gap = Duration::from_secs(5);
        let mut outbox = Outbox::default();
        outbox.handle_notice(t0, notice(1), true);
        let mut now = t0;
        let mut delays = Vec::new();
        loop {
            assert_eq!(outbox.next_deadline(now, false), Some(now));
            outbox.begin_attempt(now);
            let failure = outbox.handle_failed(now, give_up, gap);
            if delays.len() == 3 {
                // A notice joining a retried send goes with the next attempt (at 15 s), on
                // its own clock.
                outbox.handle_notice(now, notice(2), true);
            }
            let delay = failure.retry_in.unwrap();
            if !failure.dropped.is_empty() {
                assert_eq!(failure.dropped, vec![notice(1)]);
                // The last retry was clamped so that notice 1 was given up at 600 s exactly.
                assert_eq!(now, t0 + give_up);
                // Notice 2 gets its own last retry at 615 s.
                assert_eq!(delay, Duration::from_secs(15));
                now += delay;
                break;
            }
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60, 57],
            "back-off"
        );
        assert_eq!(outbox.next_deadline(now, false), Some(now));
        outbox.begin_attempt(now);
        let failure = outbox.handle_failed(now, give_up, gap);
        assert_eq!(
            failure,
            Failure {
                dropped: vec![notice(2)],
                retry_in: None
            }
        );
        // A message given up counts as a message for the gap.
        outbox.handle_notice(now, notice(3), true);
        assert_eq!(outbox.next_deadline(now, false), Some(now + gap));
    }

    #[test]
    fn outbox_success_resets_the_back_off_and_reconfigure_retries_at_once() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.handle_notice(t0, notice(1), true);
        outbox.begin_attempt(t0);
        outbox.handle_failed(t0, DEFAULT_GIVE_UP, DEFAULT_MIN_GAP);
        outbox.begin_attempt(t0 + FIRST_RETRY);
        let failure = outbox.handle_failed(t0 + FIRST_RETRY, DEFAULT_GIVE_UP, DEFAULT_MIN_GAP);
        assert_eq!(failure.retry_in, Some(Duration::from_secs(2)));
        let t1 = t0 + Duration::from_millis(1500);
        outbox.handle_reconfigure(t1);
        assert_eq!(outbox.next_deadline(t1, false), Some(t1));
        outbox.begin_attempt(t1);
        assert_eq!(
            outbox
                .handle_failed(t1, DEFAULT_GIVE_UP, DEFAULT_MIN_GAP)
                .retry_in,
            Some(FIRST_RETRY)
        );
        outbox.begin_attempt(t1 + FIRST_RETRY);
        outbox.handle_sent(t1 + FIRST_RETRY, DEFAULT_MIN_GAP);
        assert_eq!(outbox.retry_delay, FIRST_RETRY);
        // Reconfiguring during a gap does not shorten it.
        outbox.handle_notice(t0, notice(2), true);
        outbox.handle_reconfigure(t1 + FIRST_RETRY);
        assert_eq!(
            outbox.next_deadline(t1 + FIRST_RETRY, false),
            Some(t1 + FIRST_RETRY + DEFAULT_MIN_GAP)
        );
    }

    #[test]
    fn huge_durations_mean_forever_and_do_not_panic() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        outbox.handle_notice(t0, notice(1), true);
        outbox.begin_attempt(t0);
        let failure = outbox.handle_failed(t0, Duration::MAX, Duration::MAX);
        assert_eq!(failure.retry_in, Some(FIRST_RETRY));
        outbox.begin_attempt(t0);
        outbox.handle_sent(t0, Duration::MAX);
        outbox.handle_notice(t0, notice(2), true);
        assert!(outbox.next_deadline(t0, false).unwrap() > t0 + Duration::from_secs(86400));
    }

    #[test]
    fn outbox_stays_bounded_keeping_the_first_and_the_latest() {
        let t0 = Instant::now();
        let mut outbox = Outbox::default();
        let mut shed = Vec::new();
        for i in 0..MAX_PENDING + 10 {
            shed.extend(outbox.handle_notice(t0, notice(i), true));
        }
        assert_eq!(outbox.entries.len(), MAX_PENDING);
        assert_eq!(shed.len(), 10);
        assert_eq!(outbox.entries[0].notice, notice(0));
        assert_eq!(
            outbox.entries[MAX_PENDING - 1].notice,
            notice(MAX_PENDING + 9)
        );
        assert_eq!(shed[0], notice(MAX_PENDING / 2));
    }

    #[test]
    fn a_digest_lists_every_notice_oldest_first() {
        let notices: Vec<Notice> = (1..=3).map(notice).collect();
        let digest = compose("sec-1", &notices);
        assert_eq!(
            digest.subject,
            "[ipfailover] sec-1: 3 events: sec-1 event 1, sec-1 event 2, sec-1 event 3"
        );
        let dashes = "-".repeat(72);
        assert_eq!(
            digest.body,
            format!(
                "3 events on sec-1, oldest first.\n\n\
                 [ipfailover] sec-1 event 1\n\nline one of 1\nline two of 1\n{dashes}\n\
                 [ipfailover] sec-1 event 2\n\nline one of 2\nline two of 2\n{dashes}\n\
                 [ipfailover] sec-1 event 3\n\nline one of 3\nline two of 3\n"
            )
        );
        // One notice goes as it is.
        assert_eq!(compose("sec-1", &notices[..1]), notices[0]);
    }

    #[test]
    fn a_long_digest_subject_is_cut_on_a_character_boundary() {
        let notices: Vec<Notice> = (0..40)
            .map(|i| Notice {
                subject: format!("[ipfailover] sec-1 prise de contrôle n° {i}"),
                body: String::new(),
            })
            .collect();
        let subject = compose("sec-1", &notices).subject;
        assert_eq!(subject.chars().count(), SUBJECT_MAX_CHARS);
        assert!(
            subject.starts_with("[ipfailover] sec-1: 40 events: sec-1 prise de contrôle n° 0, ")
        );
        assert!(subject.ends_with("..."));
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact("smtps://user:secret@mail.example.org:465"),
            "smtps://user:***@mail.example.org:465"
        );
        assert_eq!(
            redact("smtp://mail.example.org:25/ehlo?tls=required"),
            "smtp://mail.example.org:25/ehlo?tls=required"
        );
        assert_eq!(redact("sendmail"), "sendmail");
    }

    /// A tiny SMTP server for one connection, on a loopback port of its own: it offers
    /// STARTTLS or not, accepts any AUTH, and records what the client said. After STARTTLS it
    /// records the first byte the client sends (0x16: a TLS handshake) and hangs up: it speaks
    /// no TLS.
    struct FakeSmtp {
        port: u16,
        thread: thread::JoinHandle<Vec<String>>,
    }

    impl FakeSmtp {
        fn start(offer_starttls: bool) -> FakeSmtp {
            use std::io::BufRead;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let thread = thread::spawn(move || {
                let mut seen = Vec::new();
                let Ok((stream, _)) = listener.accept() else {
                    return seen;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut out = stream.try_clone().unwrap();
                let mut input = std::io::BufReader::new(stream);
                let _ = out.write_all(b"220 fake ESMTP\r\n");
                let mut line = String::new();
                while matches!(input.read_line(&mut line), Ok(n) if n > 0) {
                    let command = line.trim_end().to_owned();
                    line.clear();
                    let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    seen.push(command);
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" if offer_starttls => {
                            b"250-fake\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"
                        }
                        "EHLO" => b"250-fake\r\n250 AUTH PLAIN LOGIN\r\n",
                        "STARTTLS" => {
                            let _ = out.write_all(b"220 go ahead\r\n");
                            let mut first = [0u8; 1];
                            if input.read_exact(&mut first).is_ok() {
                                seen.push(format!("TLS {:02x}", first[0]));
                            }
                            return seen;
                        }
                        "AUTH" => b"235 ok\r\n",
                        "MAIL" | "RCPT" => b"250 ok\r\n",
                        "DATA" => {
                            let _ = out.write_all(b"354 go on\r\n");
                            loop {
                                if !matches!(input.read_line(&mut line), Ok(n) if n > 0) {
                                    return seen;
                                }
                                let end = line == ".\r\n";
                                line.clear();
                                if end {
                                    break;
                                }
                            }
                            seen.push("(message)".to_owned());
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = out.write_all(b"221 bye\r\n");
                            return seen;
                        }
                        _ => b"500 what?\r\n",
                    };
                    let _ = out.write_all(answer);
                }
                seen
            });
            FakeSmtp { port, thread }
        }

        /// What the client said, once it has hung up.
        fn said(self) -> Vec<String> {
            self.thread.join().unwrap()
        }
    }

    /// One attempt to send a notice through `transport`, as the worker makes it.
    fn attempt(transport: &str) -> Result<(), String> {
        let prepared = Prepared::new(&settings(transport))?;
        let message = prepared.message(&notice(1))?;
        prepared.deliver(&message, Duration::from_secs(5))
    }

    #[test]
    fn starttls_is_used_when_offered_and_a_password_never_goes_in_clear() {
        // The server offers STARTTLS: the client starts TLS before anything else, and the
        // password would only go inside it (this server speaks no TLS: the attempt fails).
        let server = FakeSmtp::start(true);
        let result = attempt(&format!("smtp://ipfo:s3cret@127.0.0.1:{}", server.port));
        let said = server.said();
        assert!(result.is_err());
        assert!(said.iter().any(|l| l == "STARTTLS"), "{said:?}");
        assert_eq!(said.last().map(String::as_str), Some("TLS 16"), "{said:?}");
        assert!(!said.iter().any(|l| l.starts_with("AUTH")), "{said:?}");

        // No STARTTLS: the password is not sent, and the error says what to do.
        let server = FakeSmtp::start(false);
        let e = attempt(&format!("smtp://ipfo:s3cret@127.0.0.1:{}", server.port)).unwrap_err();
        let said = server.said();
        assert!(!said.iter().any(|l| l.starts_with("AUTH")), "{said:?}");
        assert!(!said.iter().any(|l| l.starts_with("MAIL")), "{said:?}");
        assert!(
            e.contains("password_in_clear=yes") && !e.contains("s3cret"),
            "{e}"
        );

        // The administrator said so: it is sent, and the message goes.
        let server = FakeSmtp::start(false);
        attempt(&format!(
            "smtp://ipfo:s3cret@127.0.0.1:{}?password_in_clear=yes",
            server.port
        ))
        .unwrap();
        let said = server.said();
        assert!(said.iter().any(|l| l.starts_with("AUTH PLAIN")), "{said:?}");
        assert!(said.iter().any(|l| l == "(message)"), "{said:?}");

        // Without a password, a server without STARTTLS gets the notice in plain, as before;
        // tls=none never starts TLS even when offered.
        let server = FakeSmtp::start(false);
        attempt(&format!("smtp://127.0.0.1:{}", server.port)).unwrap();
        assert!(server.said().iter().any(|l| l == "(message)"));
        let server = FakeSmtp::start(true);
        attempt(&format!("smtp://127.0.0.1:{}?tls=none", server.port)).unwrap();
        let said = server.said();
        assert!(!said.iter().any(|l| l == "STARTTLS"), "{said:?}");
        assert!(said.iter().any(|l| l == "(message)"), "{said:?}");
    }

    // --- Against real servers and programs. ---

    #[test]
    fn start_rejects_bad_transports_and_addresses() {
        let e = Mailer::start(settings("ftp://x")).unwrap_err();
        assert!(e.contains("\"ftp://x\"") && e.contains("smtp://"), "{e}");
        let e = Mailer::start(settings("sendmail:usr/sbin/sendmail")).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = Mailer::start(settings("smtps://user:secret@")).unwrap_err();
        assert!(!e.contains("secret"), "{e}");

        let mut bad = settings("smtp://127.0.0.1:25");
        bad.recipients.push("not an address".to_owned());
        let e = Mailer::start(bad.clone()).unwrap_err();
        assert!(
            e.contains("recipient \"not an address\" is not a mail address"),
            "{e}"
        );
        assert_eq!(bad.validate(), Err(e));

        let mut bad = settings("smtp://127.0.0.1:25");
        bad.from = "failover".to_owned();
        let e = Mailer::start(bad).unwrap_err();
        assert!(e.contains("sender \"failover\""), "{e}");

        let mut bad = settings("smtp://127.0.0.1:25");
        bad.recipients.clear();
        assert!(Mailer::start(bad).is_err());

        for good in [
            "smtp://127.0.0.1:25",
            "smtp://mail.example.org:587?tls=required",
            "smtps://user:p%40ss@mail.example.org",
            "sendmail",
            "sendmail:/usr/lib/sendmail",
        ] {
            assert_eq!(settings(good).validate(), Ok(()), "{good}");
        }
    }

    #[test]
    fn a_notice_is_delivered_with_the_right_headers() {
        let port = free_port();
        let server = SmtpServer::start(port);
        let mailer = Mailer::start(settings(&format!("smtp://127.0.0.1:{port}"))).unwrap();
        let sent = Notice {
            subject: "[ipfailover] sec-1 took over 10.0.0.100 from 10.0.0.1 (heartbeat timeout)"
                .to_owned(),
            body:
                "t+0 ms: last heartbeat\nt+3000 ms: takeover\n\nlinks: eth1 silent, eth2 silent\n"
                    .to_owned(),
        };
        mailer.send(sent.clone());
        assert!(wait_until(Duration::from_secs(5), || mailer.stats().sent == 1));
        assert_eq!(
            mailer.stats(),
            MailStats {
                sent: 1,
                ..MailStats::default()
            }
        );
        let messages = server.messages();
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(header(m, "Subject").unwrap(), sent.subject);
        assert_eq!(header(m, "From").unwrap(), "failover@example.org");
        let to = header(m, "To").unwrap();
        assert!(
            to.contains("admin@example.org") && to.contains("\"Night Shift\" <oncall@example.net>"),
            "{to}"
        );
        let rcpt = header(m, "X-RcptTo").unwrap();
        assert!(
            rcpt.contains("admin@example.org") && rcpt.contains("oncall@example.net"),
            "{rcpt}"
        );
        assert!(header(m, "Date").is_some(), "{m}");
        let id = header(m, "Message-ID").unwrap();
        assert!(
            id.starts_with('<') && id.ends_with('>') && id.contains('@'),
            "{id}"
        );
        assert_eq!(header(m, "Auto-Submitted").unwrap(), "auto-generated");
        assert_eq!(
            header(m, "Content-Type").unwrap(),
            "text/plain; charset=utf-8"
        );
        // aiosmtpd's maildir adds a line end at the end.
        assert_eq!(body(m).trim_end(), sent.body.trim_end());
        mailer.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn notices_that_pile_up_are_coalesced_into_one_digest() {
        let port = free_port();
        let server = SmtpServer::start(port);
        let mut s = settings(&format!("smtp://127.0.0.1:{port}"));
        s.min_gap = Duration::from_secs(2);
        let mailer = Mailer::start(s).unwrap();
        mailer.send(notice(0));
        assert!(wait_until(Duration::from_secs(5), || mailer.stats().sent == 1));
        let started = Instant::now();
        for i in 1..=10 {
            mailer.send(notice(i));
        }
        assert_eq!(mailer.stats().pending, 10);
        assert!(wait_until(Duration::from_secs(6), || mailer.stats().sent == 2));
        // The digest waited for the gap.
        assert!(started.elapsed() >= Duration::from_millis(1500));
        thread::sleep(Duration::from_millis(300));
        assert_eq!(
            mailer.stats(),
            MailStats {
                sent: 2,
                coalesced: 9,
                ..MailStats::default()
            }
        );
        let messages = server.messages();
        assert_eq!(messages.len(), 2);
        let digest = messages
            .iter()
            .find(|m| header(m, "Subject").unwrap().contains("10 events"))
            .unwrap();
        assert!(header(digest, "Subject")
            .unwrap()
            .starts_with("[ipfailover] sec-1: 10 events: sec-1 event 1, sec-1 event 2, "));
        let body = body(digest);
        let mut at = 0;
        for i in 1..=10 {
            let heading = format!("[ipfailover] sec-1 event {i}\n\nline one of {i}\n");
            let found = body[at..]
                .find(&heading)
                .unwrap_or_else(|| panic!("{i} in {body}"));
            at += found + heading.len();
        }
        mailer.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_dead_server_delays_nothing_and_gets_one_digest_when_it_is_back() {
        let port = free_port();
        let mut s = settings(&format!("smtp://127.0.0.1:{port}"));
        s.min_gap = Duration::from_millis(100);
        let mailer = Mailer::start(s).unwrap();
        let before = Instant::now();
        mailer.send(notice(1));
        assert!(before.elapsed() < Duration::from_millis(50));
        // Attempts at 0 s and 1 s.
        assert!(wait_until(Duration::from_secs(3), || mailer
            .stats()
            .failed_attempts
            >= 2));
        mailer.send(notice(2));
        mailer.send(notice(3));
        let server = SmtpServer::start(port);
        // The next retry comes 2 s after the second attempt (or 4 s after a third).
        assert!(wait_until(Duration::from_secs(8), || mailer.stats().sent == 1));
        let stats = mailer.stats();
        assert_eq!(
            (stats.sent, stats.coalesced, stats.pending, stats.dropped),
            (1, 2, 0, 0)
        );
        assert!(stats.failed_attempts >= 2);
        let messages = server.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            header(&messages[0], "Subject").unwrap(),
            "[ipfailover] sec-1: 3 events: sec-1 event 1, sec-1 event 2, sec-1 event 3"
        );
        mailer.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_notice_is_given_up_after_its_time() {
        let mut s = settings(&format!("smtp://127.0.0.1:{}", free_port()));
        s.give_up_after = Duration::from_secs(3);
        let mailer = Mailer::start(s).unwrap();
        mailer.send(notice(1));
        assert_eq!(mailer.stats().pending, 1);
        // Attempts at 0, 1 and 3 s; dropped after the third.
        assert!(wait_until(Duration::from_secs(6), || mailer
            .stats()
            .dropped
            == 1));
        let stats = mailer.stats();
        assert_eq!(
            (stats.sent, stats.pending, stats.failed_attempts),
            (0, 0, 3)
        );
        mailer.shutdown(Duration::ZERO);
    }

    #[test]
    fn reconfigure_sends_pending_notices_with_the_new_settings_at_once() {
        let mut s = settings(&format!("smtp://127.0.0.1:{}", free_port()));
        let mailer = Mailer::start(s.clone()).unwrap();
        mailer.send(notice(1));
        assert!(wait_until(Duration::from_secs(3), || mailer
            .stats()
            .failed_attempts
            >= 2));
        let port = free_port();
        let server = SmtpServer::start(port);
        s.transport = format!("smtp://127.0.0.1:{port}");
        // Bad settings are ignored; the good ones take over.
        mailer.reconfigure(settings("ftp://x"));
        mailer.reconfigure(s);
        // The next back-off would be 2 s; the reconfigured send goes at once.
        assert!(wait_until(Duration::from_millis(1000), || mailer
            .stats()
            .sent
            == 1));
        assert_eq!(server.messages().len(), 1);
        mailer.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn shutdown_delivers_pending_notices_without_waiting_for_the_gap() {
        let port = free_port();
        let server = SmtpServer::start(port);
        let mut s = settings(&format!("smtp://127.0.0.1:{port}"));
        s.min_gap = Duration::from_secs(60);
        let mailer = Mailer::start(s).unwrap();
        mailer.send(notice(1));
        assert!(wait_until(Duration::from_secs(5), || mailer.stats().sent == 1));
        mailer.send(notice(2));
        let before = Instant::now();
        mailer.shutdown(Duration::from_secs(3));
        assert!(before.elapsed() < Duration::from_secs(2));
        assert_eq!(server.messages().len(), 2);
    }

    #[test]
    fn shutdown_returns_after_its_grace_even_if_the_server_never_answers() {
        // A listener that never accepts: connections complete in the backlog, no greeting.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mailer = Mailer::start(settings(&format!("smtp://127.0.0.1:{port}"))).unwrap();
        mailer.send(notice(1));
        thread::sleep(Duration::from_millis(100));
        let before = Instant::now();
        mailer.send(notice(2));
        assert!(before.elapsed() < Duration::from_millis(50));
        mailer.shutdown(Duration::from_millis(300));
        assert!(
            before.elapsed() < Duration::from_millis(600),
            "{:?}",
            before.elapsed()
        );
        drop(listener);
    }

    #[test]
    fn send_after_the_worker_is_gone_does_not_panic() {
        let mailer = Mailer::start(settings("sendmail:/nonexistent/sendmail")).unwrap();
        let Mailer {
            commands,
            shared,
            worker,
            finished,
        } = mailer;
        commands.send(Command::Shutdown(Instant::now())).unwrap();
        worker.join().unwrap();
        let worker = thread::spawn(|| {});
        let mailer = Mailer {
            commands,
            shared,
            worker,
            finished,
        };
        mailer.send(notice(1));
        mailer.send(notice(2));
        assert_eq!(
            mailer.stats(),
            MailStats {
                dropped: 2,
                ..MailStats::default()
            }
        );
        mailer.shutdown(Duration::ZERO);
    }

    fn fake_sendmail(dir: &Path, script: &str) -> PathBuf {
        let path = dir.join("fake-sendmail");
        let staged = dir.join("fake-sendmail.new");
        fs::write(&staged, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&staged, &path).unwrap();
        path
    }

    #[test]
    fn sendmail_gets_the_message_and_the_recipients() {
        let dir = Scratch::new("sendmail");
        let d = dir.0.display();
        let path = fake_sendmail(
            &dir.0,
            &format!(
                "printf '%s\\n' \"$@\" > {d}/args.new; cat > {d}/stdin; mv {d}/args.new {d}/args"
            ),
        );
        let mailer = Mailer::start(settings(&format!("sendmail:{}", path.display()))).unwrap();
        mailer.send(notice(1));
        // A retry covers a spurious ETXTBSY from another test's fork.
        assert!(wait_until(Duration::from_secs(4), || mailer.stats().sent == 1));
        assert_eq!(
            fs::read_to_string(dir.0.join("args")).unwrap(),
            "-i\n-f\nfailover@example.org\n--\nadmin@example.org\noncall@example.net\n"
        );
        let m = fs::read_to_string(dir.0.join("stdin")).unwrap();
        assert!(!m.contains('\r'));
        assert_eq!(header(&m, "Subject").unwrap(), notice(1).subject);
        assert_eq!(header(&m, "Auto-Submitted").unwrap(), "auto-generated");
        assert_eq!(body(&m), notice(1).body);
        mailer.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_failing_sendmail_is_a_failed_attempt() {
        let dir = Scratch::new("sendmail");
        let path = fake_sendmail(&dir.0, "cat > /dev/null; echo 'queue full' >&2; exit 1");
        let mailer = Mailer::start(settings(&format!("sendmail:{}", path.display()))).unwrap();
        mailer.send(notice(1));
        assert!(wait_until(Duration::from_secs(3), || mailer
            .stats()
            .failed_attempts
            >= 1));
        let stats = mailer.stats();
        assert_eq!((stats.sent, stats.pending), (0, 1));
        let envelope = Envelope::new(
            Some("a@example.org".parse().unwrap()),
            vec!["b@example.org".parse().unwrap()],
        )
        .unwrap();
        let e = run_sendmail(
            &path,
            &envelope,
            b"Subject: x\n\nx\n",
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            e.contains("exit status: 1") && e.contains("queue full"),
            "{e}"
        );
        mailer.shutdown(Duration::ZERO);
    }

    #[test]
    fn a_hung_sendmail_is_killed() {
        let dir = Scratch::new("sendmail");
        let path = fake_sendmail(&dir.0, "exec sleep 30");
        let envelope = Envelope::new(None, vec!["b@example.org".parse().unwrap()]).unwrap();
        let before = Instant::now();
        let e = run_sendmail(&path, &envelope, b"x\n", Duration::from_millis(300)).unwrap_err();
        assert!(before.elapsed() < Duration::from_secs(2));
        assert!(e.contains("killed"), "{e}");
    }
}
