//! ipfailover's etcd client: what a group member (docs/groups.md) asks of etcd, carried out on worker
//! threads, with the answers handed back through a channel and a mio [`Waker`], so that
//! failoverd's mio loop stays its one loop and nothing else in it knows etcd.
//!
//! # Why etcd's JSON gateway and ureq
//!
//! etcd serves its v3 API twice: as gRPC and, on the same port, as JSON over HTTP/1.1
//! (`/v3/kv/range`, `/v3/lease/keepalive`, `/v3/watch`, ...), the gateway Patroni uses. The
//! other choice was the `etcd-client` crate: well kept, but gRPC on tokio and tonic, a second
//! runtime and some hundred crates beside a daemon whose whole point is a small, auditable
//! loop. A member makes a handful of small requests per lease period and one long watch; the
//! gateway gives every one of them with a blocking HTTP client on a thread. ureq is that
//! client: well kept, pure Rust, rustls for `https://` (with a CA file, and a client
//! certificate for etcd's `--client-cert-auth`), no async runtime. Nothing here writes HTTP
//! or parses it; [`api`] only builds and reads the JSON bodies.
//!
//! # Threads
//!
//! - The **lease** thread grants, renews and revokes the member's lease. Each renewal takes
//!   the time just before it is sent: the core's fencing deadline counts from then, which is
//!   never later than when etcd restarts the lease's clock. Renewals time out well within a
//!   TTL, so a hung endpoint cannot make the member miss its deadline unseen, and a renewal
//!   that fails is sent again at once to the next endpoint: an etcd leader change costs a
//!   time limit, not a renewal period.
//! - The **kv** thread puts and deletes the member's key, runs the create-if-absent
//!   transactions that acquire addresses and the delete-if-ours ones that give them up, and
//!   every few seconds asks how long each member's lease has left (for the status).
//! - The **watch** thread reads the group's prefix, then watches it from the next revision,
//!   hands every change on as a new [`View`], and starts over with a fresh read after a
//!   compaction, a cancelled watch, an error, a lost leader or a few seconds at most: a lost
//!   watch event can leave a view wrong only until the next read (vip-manager's #394 and #431
//!   kept a wrong view for days). A read at a lower revision than one seen, or from another
//!   cluster, is a restore: handed on as [`Reply::Restored`]. A watch that ends early with
//!   nothing good is started again after a back-off, not in a loop.
//!
//! Answers are bounded: 4 MiB at most (each watch message too), numbers within what etcd can
//! give ([`api`]), and text from etcd escaped before anyone shows it.
//!
//! Endpoints are tried in turn: a request that fails moves every thread to the next one.

#![forbid(unsafe_code)]

pub mod api;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ipfailover::group::View;
use ipfailover::shown::shown;
use mio::Waker;
use serde_json::Value;

use crate::api::{excerpt, Keys, Store, WatchMessage};

/// How to reach etcd, and who this member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `http://` or `https://` URLs, without a path.
    pub endpoints: Vec<String>,
    /// The group's name.
    pub group: String,
    /// This member's name.
    pub member: String,
    /// The lease TTL, whole seconds (etcd's unit).
    pub ttl: Duration,
    /// A CA file to verify etcd's certificate with; `None` trusts the system's CA
    /// certificates (as OpenSSL finds them on Linux; the keychains on macOS).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// A user and their password, for etcd's authentication.
    pub user: Option<(String, String)>,
    /// The clock the member's loop runs on: the times of sent renewals are read from it, so
    /// that they compare with the loop's deadlines (a clock that counts a suspend).
    pub clock: Clock,
}

/// A clock: `Instant::now` by default, or one that counts a suspend.
#[derive(Clone, Copy)]
pub struct Clock(pub fn() -> Instant);

impl Clock {
    /// Now.
    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock(Instant::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Clocks are not compared: two configurations differ only by what else they hold.
impl PartialEq for Clock {
    fn eq(&self, _: &Clock) -> bool {
        true
    }
}

impl Eq for Clock {}

/// What the member asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Grant a lease of the TTL.
    Grant,
    /// Renew the lease.
    Renew {
        /// The lease.
        lease: i64,
    },
    /// Revoke it (every key attached goes with it).
    Revoke {
        /// The lease.
        lease: i64,
    },
    /// Put the member's key, attached to the lease, if it does not exist.
    Register {
        /// The lease.
        lease: i64,
        /// The key's value: the priority and the mode (`MemberMode::key_value`).
        value: String,
    },
    /// Rewrite the member's key (a new priority or mode), if it is still attached to the
    /// lease.
    Publish {
        /// The lease.
        lease: i64,
        /// The key's value.
        value: String,
    },
    /// Delete the member's key if it is still attached to the lease.
    Unregister {
        /// The lease.
        lease: i64,
    },
    /// Create the address's key with the lease, if it does not exist.
    TryAcquire {
        /// The address.
        addr: IpAddr,
        /// The lease.
        lease: i64,
    },
    /// Delete the address's key if its create revision is still `epoch` (a stale key).
    ClearStale {
        /// The address.
        addr: IpAddr,
        /// The stale key's create revision.
        epoch: i64,
    },
    /// Delete the address's key, if it is attached to the lease.
    GiveUp {
        /// The address.
        addr: IpAddr,
        /// The lease.
        lease: i64,
    },
}

/// What etcd answered, or that it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A lease was granted; the grant was sent at `sent_at`.
    Granted {
        /// Its id.
        id: i64,
        /// The TTL etcd gave it, seconds (etcd raises one shorter than its minimum).
        ttl: i64,
        /// When the grant was sent.
        sent_at: Instant,
    },
    /// The grant failed.
    GrantFailed(String),
    /// A renewal sent at `sent_at` was acknowledged.
    Renewed {
        /// When it was sent.
        sent_at: Instant,
    },
    /// A renewal failed or went unanswered.
    RenewFailed(String),
    /// etcd no longer has the lease.
    LeaseLost,
    /// The group's keys, as they are now.
    View(View),
    /// etcd's history went back (a revision lower than one already seen, or another cluster
    /// id: a restore from a snapshot): the group's keys read afresh, the new truth.
    Restored {
        /// The highest revision seen before.
        highest: i64,
        /// The keys now.
        view: View,
    },
    /// A create-if-absent transaction's outcome: the epoch if it won.
    Acquired {
        /// The address.
        addr: IpAddr,
        /// Its epoch, if won.
        epoch: Option<i64>,
    },
    /// A transaction went unanswered: its outcome is unknown (the next view tells).
    AcquireFailed {
        /// The address.
        addr: IpAddr,
        /// Why.
        why: String,
    },
    /// Another request failed (a put, a delete, a revoke): worth a log line.
    Failed {
        /// What was asked.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// The seconds each member's lease has left, by member name (-1: gone).
    LeaseTimes(BTreeMap<String, i64>),
    /// Whether etcd answers, and which endpoint (for the status and the log).
    Reachable {
        /// The endpoint in use.
        endpoint: String,
        /// `None` when it answers; why not, otherwise.
        error: Option<String>,
    },
}

/// Why the client could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The longest a watch runs before the prefix is read again from scratch.
fn watch_cycle(ttl: Duration) -> Duration {
    (ttl * 2).clamp(Duration::from_secs(2), Duration::from_secs(10))
}

/// The longest one renewal may take: a third of the renewal period, so a hung endpoint
/// leaves time for another try on the next one before the deadline.
fn renew_timeout(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// How long one renewal may go on trying endpoints: half a TTL, about what is left between
/// the send of a renewal and the deadline of the one before.
fn renew_budget(ttl: Duration) -> Duration {
    ttl / 2
}

/// Other requests: a transaction that hangs leaves its address unheld, no worse.
fn request_timeout(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_millis(300), Duration::from_secs(5))
}

/// Addresses tried in one transaction.
const BATCH: usize = 64;

/// The largest answer read, and the largest message of a watch: a group's keys take a few
/// hundred bytes each, so 4 MiB is thousands of members and addresses; a larger one is a
/// broken or hostile etcd, and the request counts as failed rather than filling memory.
pub const MAX_ANSWER: u64 = 4 << 20;

/// The first wait before a watch that ended early, without a good message, is started again;
/// doubled at each such end up to [`WATCH_BACKOFF_MAX`]; back to this after a good message.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two watches that end early.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often the members' remaining lease times are asked, for the status (rewritten at
/// least every 5 s): each member asks about every member, so this is the one cost that grows
/// with the square of the group.
const LEASE_TIMES_EVERY: Duration = Duration::from_secs(5);

/// The HTTP side shared by the threads: the agent, the endpoints, which one is in use, and
/// the authentication token.
#[derive(Debug)]
struct Http {
    agent: ureq::Agent,
    endpoints: Vec<String>,
    current: AtomicUsize,
    user: Option<(String, String)>,
    token: Mutex<Option<String>>,
    replies: Sender<Reply>,
    waker: Arc<Waker>,
    /// The last reachability told, so that it is told once per change.
    told: Mutex<Option<(String, Option<String>)>>,
}

/// An answer that is an error, as etcd or the gateway says it.
fn error_of(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    Some(match e {
        Value::String(s) => excerpt(s),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| excerpt(&other.to_string()), excerpt),
    })
}

fn is_auth_error(message: &str) -> bool {
    message.contains("invalid auth token")
        || message.contains("auth token is expired")
        || message.contains("user name is empty")
}

impl Http {
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn endpoint(&self) -> String {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        self.endpoints.get(i).cloned().unwrap_or_default()
    }

    /// Moves every thread to the next endpoint, unless another thread already did since
    /// `failed` was tried.
    fn rotate(&self, failed: &str) {
        let i = self.current.load(Ordering::Relaxed);
        if self
            .endpoints
            .get(i % self.endpoints.len().max(1))
            .map(String::as_str)
            == Some(failed)
        {
            let _ = self.current.compare_exchange(
                i,
                i.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn reply(&self, r: Reply) {
        if self.replies.send(r).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Tells whether etcd answers, once per change from answering to not (or to another
    /// endpoint): not at every failed request while it is down.
    fn tell_reachable(&self, endpoint: &str, error: Option<String>) {
        let mut told = Self::lock(&self.told);
        let now = match &error {
            None => (endpoint.to_string(), None),
            Some(_) => (String::new(), Some(String::new())),
        };
        if told.as_ref() != Some(&now) {
            *told = Some(now);
            drop(told);
            self.reply(Reply::Reachable {
                endpoint: endpoint.to_string(),
                error,
            });
        }
    }

    /// POSTs `body` to `path` at the endpoint in use and reads the JSON answer; on a failure
    /// moves to the next endpoint. Authenticates first when a user is set and no token is
    /// held, and once more when etcd says the token is no longer good.
    fn call(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, String> {
        let endpoint = self.endpoint();
        let result = self.call_at(&endpoint, path, body, timeout, true);
        match &result {
            Ok(_) => self.tell_reachable(&endpoint, None),
            Err(e) => {
                self.rotate(&endpoint);
                self.tell_reachable(&endpoint, Some(e.clone()));
            }
        }
        result
    }

    fn call_at(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        timeout: Duration,
        retry_auth: bool,
    ) -> Result<Value, String> {
        let token = self.token_for(endpoint, timeout)?;
        let mut response = self.post(endpoint, path, body, timeout, token.as_deref())?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| format!("{endpoint}{path}: reading the answer: {e}"))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{endpoint}{path}: not etcd's JSON (HTTP {status}): {e}: {}",
                excerpt(&text)
            )
        })?;
        if let Some(message) = error_of(&value) {
            if retry_auth && self.user.is_some() && is_auth_error(&message) {
                *Self::lock(&self.token) = None;
                return self.call_at(endpoint, path, body, timeout, false);
            }
            return Err(format!(
                "{endpoint}{path}: etcd says: {message}{}",
                gateway_hint(endpoint, &message)
            ));
        }
        if !(200..300).contains(&status) {
            return Err(format!(
                "{endpoint}{path}: HTTP {status}: {}",
                excerpt(&text)
            ));
        }
        // Streaming calls (keepalive) wrap their answer.
        Ok(match value.get("result") {
            Some(r) if path != "/v3/watch" => r.clone(),
            _ => value,
        })
    }

    fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = self
            .agent
            .post(format!("{endpoint}{path}"))
            .header("Content-Type", "application/json")
            // etcd's WithRequireLeader, through the gateway: a member that has lost its
            // leader fails the call (and cancels a watch) instead of answering stale.
            .header("Grpc-Metadata-hasleader", "true");
        if let Some(t) = token {
            request = request.header("Authorization", t);
        }
        request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.to_string())
            .map_err(|e| {
                let text = e.to_string();
                format!("{endpoint}{path}: {}{}", shown(&text), tls_hint(&text))
            })
    }

    /// The token to send, authenticating first if a user is set and none is held.
    fn token_for(&self, endpoint: &str, timeout: Duration) -> Result<Option<String>, String> {
        let Some((name, password)) = &self.user else {
            return Ok(None);
        };
        if let Some(t) = Self::lock(&self.token).clone() {
            return Ok(Some(t));
        }
        let body = api::authenticate(name, password);
        let mut response = self.post(endpoint, "/v3/auth/authenticate", &body, timeout, None)?;
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| format!("{endpoint}: authenticating: {}", shown(&e.to_string())))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{endpoint}: authenticating: {e}: {}", excerpt(&text)))?;
        if let Some(message) = error_of(&value) {
            return Err(format!("{endpoint}: authenticating as {name}: {message}"));
        }
        let token = api::token(&value)
            .ok_or_else(|| format!("{endpoint}: authenticating as {name}: no token"))?;
        *Self::lock(&self.token) = Some(token.clone());
        Ok(Some(token))
    }
}

/// The member's connection to etcd. (Dropping it stops the threads.)
#[derive(Debug)]
pub struct Client {
    lease_tx: Option<Sender<Request>>,
    kv_tx: Option<Sender<Request>>,
    replies: Receiver<Reply>,
    stop: Arc<AtomicBool>,
    /// Each worker that takes requests says here when it has finished its queue.
    done: Receiver<()>,
}

/// What to look at, for the TLS failures an administrator meets while setting up (the words
/// are rustls's and the server's alerts, as ureq passes them on).
fn tls_hint(error: &str) -> &'static str {
    if error.contains("UnknownIssuer") {
        " (etcd's certificate is not signed by a CA in FAILOVER_ETCD_CA_FILE, or by one of the \
         system's CAs when that is unset)"
    } else if error.contains("NotValidForName") {
        " (etcd's certificate does not name this endpoint's address or host name in its \
         subject alternative names)"
    } else if error.contains("Expired") || error.contains("NotValidYet") {
        " (a certificate is out of its validity dates, or this host's clock is off)"
    } else if error.contains("BadCertificate")
        || error.contains("CertificateRequired")
        || error.contains("UnknownCA")
    {
        " (etcd refused this member's client certificate, or none was shown: \
         FAILOVER_ETCD_CERT_FILE and FAILOVER_ETCD_KEY_FILE, signed by etcd's \
         ETCD_TRUSTED_CA_FILE)"
    } else {
        ""
    }
}

/// etcd 3.4's JSON gateway says only "connection closed", or names a gRPC transport error
/// ("transport: failed to write client preface: … connection reset by peer"), when its own
/// connection to etcd's gRPC port fails, which with TLS is nearly always a server certificate
/// without clientAuth.
fn gateway_hint(endpoint: &str, message: &str) -> &'static str {
    let gateway_lost_itself = message.contains("connection closed")
        || message.contains("client preface")
        || message.contains("transport: ");
    if endpoint.starts_with("https://") && gateway_lost_itself {
        " (with ETCD_CLIENT_CERT_AUTH, etcd's own server certificate must allow clientAuth \
         too: its gateway shows it to etcd's gRPC port; see groups(7), TLS)"
    } else {
        ""
    }
}

/// What the TLS files give: the CAs to trust and the client certificate.
struct TlsFiles {
    roots: Roots,
    client: Option<ureq::tls::ClientCert>,
}

/// The CAs that may sign etcd's certificate.
enum Roots {
    /// These: `FAILOVER_ETCD_CA_FILE`'s, or (Linux) the system's; none when no endpoint is
    /// `https://`.
    Certs(Vec<ureq::tls::Certificate<'static>>),
    /// The platform's own verifier with the system's store (macOS only: ureq's rustls panics
    /// on it without its platform-verifier feature).
    #[cfg(target_os = "macos")]
    Platform,
}

/// The system's CA certificates, as OpenSSL finds them (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// first, else the distribution's bundle): what an administrator expects a program to trust.
#[cfg(not(target_os = "macos"))]
fn system_roots() -> Result<Roots, String> {
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<_> = found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() {
        let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "unset, and the system's CA certificates hold none{}: install them \
             (ca-certificates), or set FAILOVER_ETCD_CA_FILE to the CA that signs etcd's \
             certificates",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        ));
    }
    Ok(Roots::Certs(certs))
}

/// On macOS the platform's TLS reads the system's store (the keychains) itself.
#[cfg(target_os = "macos")]
fn system_roots() -> Result<Roots, String> {
    Ok(Roots::Platform)
}

/// Reads the CA file and the client certificate and key; every problem, each with the key
/// that names the file.
fn read_tls_files(config: &Config) -> Result<TlsFiles, Vec<(&'static str, String)>> {
    use ureq::tls::{parse_pem, ClientCert, PemItem};
    let certificates = |pem: &[u8]| -> Vec<ureq::tls::Certificate<'static>> {
        parse_pem(pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut problems = Vec::new();
    let mut roots = Roots::Certs(Vec::new());
    if let Some(ca) = &config.ca_file {
        match read(ca) {
            Ok(pem) => {
                let certs = certificates(&pem);
                if certs.is_empty() {
                    problems.push((
                        "FAILOVER_ETCD_CA_FILE",
                        format!("{}: no PEM certificate in it", ca.display()),
                    ));
                }
                roots = Roots::Certs(certs);
            }
            Err(e) => problems.push(("FAILOVER_ETCD_CA_FILE", e)),
        }
    } else if config.endpoints.iter().any(|e| e.starts_with("https://")) {
        match system_roots() {
            Ok(r) => roots = r,
            Err(e) => problems.push(("FAILOVER_ETCD_CA_FILE", e)),
        }
    }
    let mut client = None;
    if let Some((cert, key)) = &config.client_cert {
        let chain = match read(cert) {
            Ok(pem) => {
                let chain = certificates(&pem);
                if chain.is_empty() {
                    problems.push((
                        "FAILOVER_ETCD_CERT_FILE",
                        format!("{}: no PEM certificate in it", cert.display()),
                    ));
                }
                chain
            }
            Err(e) => {
                problems.push(("FAILOVER_ETCD_CERT_FILE", e));
                Vec::new()
            }
        };
        let key = read(key).and_then(|pem| {
            ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| format!("{}: {e}", key.display()))
        });
        match key {
            Ok(key) if !chain.is_empty() => client = Some(ClientCert::new_with_certs(&chain, key)),
            Ok(_) => {}
            Err(e) => problems.push(("FAILOVER_ETCD_KEY_FILE", e)),
        }
    }
    if problems.is_empty() {
        Ok(TlsFiles { roots, client })
    } else {
        Err(problems)
    }
}

/// The problems with the TLS files of `config` (CA, client certificate and key), each with
/// the key that names the file: what the configuration check reports. None: they are right.
pub fn check_tls_files(config: &Config) -> Vec<(&'static str, String)> {
    read_tls_files(config).err().unwrap_or_default()
}

/// The TLS settings, from the CA and client certificate files.
fn tls_config(config: &Config) -> Result<ureq::tls::TlsConfig, ConfigError> {
    use ureq::tls::{RootCerts, TlsConfig};
    let files = read_tls_files(config).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(|(k, m)| format!("{k} {m}")).collect();
        ConfigError(text.join("; "))
    })?;
    let mut builder = TlsConfig::builder();
    // ureq picks rustls unless told: on macOS the platform's TLS is the one built in.
    #[cfg(target_os = "macos")]
    {
        builder = builder.provider(ureq::tls::TlsProvider::NativeTls);
    }
    builder = builder.root_certs(match files.roots {
        Roots::Certs(certs) => RootCerts::new_with_certs(&certs),
        #[cfg(target_os = "macos")]
        Roots::Platform => RootCerts::PlatformVerifier,
    });
    if let Some(client) = files.client {
        builder = builder.client_cert(Some(client));
    }
    Ok(builder.build())
}

impl Client {
    /// Starts the threads; nothing is asked of etcd until a request comes, but the watch,
    /// which starts at once.
    pub fn start(config: Config, waker: Arc<Waker>) -> Result<Client, ConfigError> {
        if config.endpoints.is_empty() {
            return Err(ConfigError("no etcd endpoint".to_string()));
        }
        let tls = tls_config(&config)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .max_idle_connections_per_host(4)
            .build()
            .into();
        let (reply_tx, replies) = mpsc::channel();
        let http = Arc::new(Http {
            agent,
            endpoints: config.endpoints.clone(),
            current: AtomicUsize::new(0),
            user: config.user.clone(),
            token: Mutex::new(None),
            replies: reply_tx,
            waker,
            told: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Keys::new(&config.group);
        let member_leases: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let (done_tx, done) = mpsc::channel();

        let (lease_tx, lease_rx) = mpsc::channel();
        let worker = LeaseWorker {
            http: Arc::clone(&http),
            ttl: config.ttl,
            clock: config.clock,
        };
        let done_lease = done_tx.clone();
        spawn("etcd-lease", move || {
            worker.run(&lease_rx);
            let _ = done_lease.send(());
        })?;

        let (kv_tx, kv_rx) = mpsc::channel();
        let worker = KvWorker {
            http: Arc::clone(&http),
            keys: keys.clone(),
            member: config.member.clone(),
            ttl: config.ttl,
            member_leases: Arc::clone(&member_leases),
        };
        spawn("etcd-kv", move || {
            worker.run(&kv_rx);
            let _ = done_tx.send(());
        })?;

        let worker = WatchWorker {
            http,
            keys,
            ttl: config.ttl,
            stop: Arc::clone(&stop),
            member_leases,
        };
        spawn("etcd-watch", move || worker.run())?;
        Ok(Client {
            lease_tx: Some(lease_tx),
            kv_tx: Some(kv_tx),
            replies,
            stop,
            done,
        })
    }

    /// Hands a request to its worker.
    pub fn send(&self, request: Request) {
        let to = match request {
            Request::Grant | Request::Renew { .. } | Request::Revoke { .. } => &self.lease_tx,
            _ => &self.kv_tx,
        };
        if to.as_ref().is_none_or(|t| t.send(request).is_err()) {
            log::error!("etcd worker thread has stopped");
        }
    }

    /// The next answer, if one has come.
    pub fn try_recv(&self) -> Option<Reply> {
        self.replies.try_recv().ok()
    }

    /// Lets the workers finish what they were asked (the release's deletes and the revoke),
    /// for at most `grace`, then stops them.
    pub fn finish(mut self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        // The workers end once their queues are empty and these are gone.
        self.lease_tx = None;
        self.kv_tx = None;
        let until = Instant::now() + grace;
        for _ in 0..2 {
            let left = until.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                log::warn!("etcd: requests still unanswered at exit");
                return;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// For `failoverd -t`: reads the TLS files (an error if they are not right), then asks each
/// endpoint for its status; a line each, saying whether it answers. An endpoint that does not
/// answer is not an error: etcd may be down while the configuration is right.
pub fn check(config: &Config) -> Result<Vec<String>, ConfigError> {
    let tls = tls_config(config)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    let (replies, _) = mpsc::channel();
    let poll = mio::Poll::new().map_err(|e| ConfigError(format!("poll: {e}")))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), mio::Token(0))
            .map_err(|e| ConfigError(format!("poll waker: {e}")))?,
    );
    let mut lines = Vec::new();
    let mut answering = None;
    for endpoint in &config.endpoints {
        let http = Http {
            agent: agent.clone(),
            endpoints: vec![endpoint.clone()],
            current: AtomicUsize::new(0),
            user: config.user.clone(),
            token: Mutex::new(None),
            replies: replies.clone(),
            waker: Arc::clone(&waker),
            told: Mutex::new(None),
        };
        let line = match http.call_at(
            endpoint,
            "/v3/maintenance/status",
            &serde_json::json!({}),
            Duration::from_secs(2),
            true,
        ) {
            Ok(answer) => {
                let version = excerpt(answer["version"].as_str().unwrap_or("?"));
                let leader = answer["leader"].as_str().unwrap_or("0");
                let has_leader = leader != "0" && !leader.is_empty();
                if has_leader && answering.is_none() {
                    answering = Some((endpoint.clone(), http));
                }
                format!(
                    "# etcd {endpoint}: answers (etcd {version}{})",
                    if has_leader {
                        ", has a leader"
                    } else {
                        ", NO leader: no quorum"
                    }
                )
            }
            Err(e) => format!("# etcd {endpoint}: does NOT answer: {e}"),
        };
        lines.push(line);
    }
    lines.push(check_ttl(config.ttl, answering.as_ref())?);
    Ok(lines)
}

/// etcd's shortest lease at its default election timeout (1000 ms): 1.5 × that, rounded up
/// to whole seconds.
pub const ETCD_DEFAULT_MIN_TTL: Duration = Duration::from_secs(2);

/// Whether etcd grants a lease of `ttl` as asked, or raises it to its minimum (1.5 × its
/// election timeout, rounded up to a second): a lease etcd raises would be refused here, not
/// found out at run time (the member would fence by its own TTL, and the others wait for
/// etcd's). Asked of an endpoint that answers, with a lease granted and revoked at once; when
/// none answers, a TTL below etcd's minimum at its default election timeout is refused.
fn check_ttl(ttl: Duration, answering: Option<&(String, Http)>) -> Result<String, ConfigError> {
    let asked = ttl.as_secs().max(1);
    let refuse = |granted: u64, by: String| {
        ConfigError(format!(
            "FAILOVER_LEASE_TTL {asked}s is shorter than etcd's shortest lease ({granted}s{by}: \
             1.5 x its election timeout, rounded up to a second): etcd would grant {granted}s, \
             and the others would wait that long for a dead member's addresses; set \
             FAILOVER_LEASE_TTL to {granted}s or more (see groups(7), The figures)"
        ))
    };
    if let Some((endpoint, http)) = answering {
        let timeout = Duration::from_secs(2);
        let granted = http
            .call_at(
                endpoint,
                "/v3/lease/grant",
                &api::grant(asked),
                timeout,
                true,
            )
            .and_then(|a| api::granted(&a));
        match granted {
            Ok((id, granted)) => {
                let _ = http.call_at(
                    endpoint,
                    "/v3/lease/revoke",
                    &api::lease_id(id),
                    timeout,
                    true,
                );
                let granted = u64::try_from(granted).unwrap_or(0);
                if granted > asked {
                    return Err(refuse(granted, format!(", as {endpoint} grants it")));
                }
                return Ok(format!(
                    "# lease TTL {asked}s: {endpoint} grants it as asked"
                ));
            }
            Err(e) => log::debug!("etcd {endpoint}: a trial lease: {e}"),
        }
    }
    let least = ETCD_DEFAULT_MIN_TTL.as_secs();
    if asked < least {
        return Err(refuse(
            least,
            " at etcd's default election timeout of 1000 ms; no endpoint answered to say \
             otherwise"
                .to_string(),
        ));
    }
    Ok(format!(
        "# lease TTL {asked}s: not asked of etcd (no endpoint with a leader answers); at \
         least etcd's shortest lease at its default election timeout ({least}s)"
    ))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), ConfigError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("starting the {name} thread: {e}")))
}

#[derive(Debug)]
struct LeaseWorker {
    http: Arc<Http>,
    ttl: Duration,
    clock: Clock,
}

impl LeaseWorker {
    fn run(&self, requests: &Receiver<Request>) {
        while let Ok(request) = requests.recv() {
            match request {
                Request::Grant => {
                    let sent_at = self.clock.now();
                    let body = api::grant(self.ttl.as_secs().max(1));
                    let reply =
                        match self
                            .http
                            .call("/v3/lease/grant", &body, request_timeout(self.ttl))
                        {
                            Ok(answer) => match api::granted(&answer) {
                                Ok((id, ttl)) => Reply::Granted { id, ttl, sent_at },
                                Err(e) => Reply::GrantFailed(format!("a bad answer: {e}")),
                            },
                            Err(e) => Reply::GrantFailed(e),
                        };
                    self.http.reply(reply);
                }
                Request::Renew { lease } => {
                    let reply = self.renew(lease);
                    self.http.reply(reply);
                }
                Request::Revoke { lease } => {
                    if let Err(why) = self.http.call(
                        "/v3/lease/revoke",
                        &api::lease_id(lease),
                        request_timeout(self.ttl),
                    ) {
                        self.http.reply(Reply::Failed {
                            what: format!("revoking lease {lease:x}"),
                            why,
                        });
                    }
                }
                other => log::error!("etcd-lease: not a lease request: {other:?}"),
            }
        }
    }

    /// One renewal: on a failure (an error, a time-out, a bad answer) it is sent again at once
    /// to the next endpoint, each endpoint once, while a try still fits in half a TTL (a
    /// renewal is sent a third of a TTL after the last acknowledged one, whose deadline is
    /// four fifths of a TTL after it: about half a TTL is what is left): an etcd member that
    /// cannot reach its leader (a dead leader's followers, forwarding to it, hang) costs one
    /// time limit, not a renewal period. Every endpoint failing is a failed renewal; the core
    /// asks again a tenth of a TTL later.
    fn renew(&self, lease: i64) -> Reply {
        let started = Instant::now();
        let timeout = renew_timeout(self.ttl);
        let budget = renew_budget(self.ttl);
        let tries = self.http.endpoints.len().max(1);
        let mut failures = Vec::new();
        for _ in 0..tries {
            let endpoint = self.http.endpoint();
            // Taken before sending: etcd restarts the lease's clock later than this.
            let sent_at = self.clock.now();
            let why = match self
                .http
                .call("/v3/lease/keepalive", &api::lease_id(lease), timeout)
            {
                Ok(answer) => match api::kept_alive(&answer, lease) {
                    Ok(Some(_)) => return Reply::Renewed { sent_at },
                    Ok(None) => return Reply::LeaseLost,
                    Err(e) => {
                        self.http.rotate(&endpoint);
                        format!("{endpoint}: a bad answer: {e}")
                    }
                },
                // call() has moved to the next endpoint.
                Err(e) => e,
            };
            failures.push(why);
            if started.elapsed() + timeout > budget {
                break;
            }
        }
        Reply::RenewFailed(failures.join("; "))
    }
}

#[derive(Debug)]
struct KvWorker {
    http: Arc<Http>,
    keys: Keys,
    member: String,
    ttl: Duration,
    member_leases: Arc<Mutex<Vec<(String, i64)>>>,
}

impl KvWorker {
    fn run(&self, requests: &Receiver<Request>) {
        let mut next_times = Instant::now() + LEASE_TIMES_EVERY;
        loop {
            let wait = next_times.saturating_duration_since(Instant::now());
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    // Everything queued behind it too: the tries go in batches, one round
                    // trip for a hundred addresses; the rest in order.
                    let mut batch = vec![first];
                    while let Ok(more) = requests.try_recv() {
                        batch.push(more);
                    }
                    let (tries, others): (Vec<Request>, Vec<Request>) = batch
                        .into_iter()
                        .partition(|r| matches!(r, Request::TryAcquire { .. }));
                    for request in others {
                        self.handle(request);
                    }
                    self.try_acquire(tries);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.lease_times();
                    next_times = Instant::now() + LEASE_TIMES_EVERY;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&self, request: Request) {
        let timeout = request_timeout(self.ttl);
        match request {
            Request::Publish { lease, value } => {
                let body = self.keys.publish(&self.member, &value, lease);
                if let Err(why) = self.http.call("/v3/kv/txn", &body, timeout) {
                    self.http.reply(Reply::Failed {
                        what: format!("publishing {}", self.keys.member(&self.member)),
                        why,
                    });
                }
            }
            Request::Register { lease, value } => {
                let body = self.keys.register_if_absent(&self.member, &value, lease);
                if let Err(why) = self.http.call("/v3/kv/txn", &body, timeout) {
                    self.http.reply(Reply::Failed {
                        what: format!("putting {}", self.keys.member(&self.member)),
                        why,
                    });
                }
            }
            Request::Unregister { lease } => {
                let key = self.keys.member(&self.member);
                let body = self.keys.delete_if_ours(&key, lease);
                if let Err(why) = self.http.call("/v3/kv/txn", &body, timeout) {
                    self.http.reply(Reply::Failed {
                        what: format!("deleting {key}"),
                        why,
                    });
                }
            }
            Request::TryAcquire { .. } => self.try_acquire(vec![request]),
            Request::ClearStale { addr, epoch } => {
                let key = self.keys.addr(addr);
                let body = self.keys.delete_if_created_at(&key, epoch);
                if let Err(why) = self.http.call("/v3/kv/txn", &body, timeout) {
                    self.http.reply(Reply::Failed {
                        what: format!("deleting the stale {key}"),
                        why,
                    });
                }
            }
            Request::GiveUp { addr, lease } => {
                let key = self.keys.addr(addr);
                let body = self.keys.delete_if_ours(&key, lease);
                if let Err(why) = self.http.call("/v3/kv/txn", &body, timeout) {
                    self.http.reply(Reply::Failed {
                        what: format!("deleting {key}"),
                        why,
                    });
                }
            }
            other => log::error!("etcd-kv: not a key request: {other:?}"),
        }
    }

    /// Create-if-absent for each address, in transactions of at most [`BATCH`] (etcd's
    /// default `--max-txn-ops` is 128), grouped by lease.
    fn try_acquire(&self, tries: Vec<Request>) {
        let mut by_lease: BTreeMap<i64, Vec<IpAddr>> = BTreeMap::new();
        for r in tries {
            if let Request::TryAcquire { addr, lease } = r {
                by_lease.entry(lease).or_default().push(addr);
            }
        }
        for (lease, addrs) in by_lease {
            for chunk in addrs.chunks(BATCH) {
                let body = self.keys.acquire_many(chunk, &self.member, lease);
                let answer = self
                    .http
                    .call("/v3/kv/txn", &body, request_timeout(self.ttl))
                    .and_then(|a| {
                        api::txn_many(&a, chunk.len()).map_err(|e| format!("a bad answer: {e}"))
                    });
                match answer {
                    Ok((revision, won)) => {
                        for (addr, won) in chunk.iter().zip(won) {
                            self.http.reply(Reply::Acquired {
                                addr: *addr,
                                epoch: (won && revision > 0).then_some(revision),
                            });
                        }
                    }
                    Err(why) => {
                        for addr in chunk {
                            self.http.reply(Reply::AcquireFailed {
                                addr: *addr,
                                why: why.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// How long each member's lease has left.
    fn lease_times(&self) {
        let leases = Http::lock(&self.member_leases).clone();
        if leases.is_empty() {
            return;
        }
        let mut times = BTreeMap::new();
        for (name, lease) in leases {
            let answer = self.http.call(
                "/v3/lease/timetolive",
                &api::lease_id(lease),
                request_timeout(self.ttl),
            );
            match answer {
                Ok(a) => match api::time_to_live(&a) {
                    Ok(t) => {
                        times.insert(name, t);
                    }
                    Err(e) => {
                        log::debug!("etcd: lease time of {name}: a bad answer: {e}");
                        return;
                    }
                },
                // etcd is not answering: the view says so; no times this round.
                Err(_) => return,
            }
        }
        self.http.reply(Reply::LeaseTimes(times));
    }
}

#[derive(Debug)]
struct WatchWorker {
    http: Arc<Http>,
    keys: Keys,
    ttl: Duration,
    stop: Arc<AtomicBool>,
    member_leases: Arc<Mutex<Vec<(String, i64)>>>,
}

/// What the watch has seen of etcd's history, across its cycles: a range at a lower
/// revision, or from another cluster, is a history that went back (a restore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct History {
    /// The highest revision handed on (0: none yet).
    highest: i64,
    /// The cluster id of the last range (0: not known).
    cluster: u64,
}

impl History {
    /// Whether a range at `header` says the history went back.
    fn went_back(&self, header: api::Header) -> bool {
        let other_cluster =
            self.cluster != 0 && header.cluster_id != 0 && header.cluster_id != self.cluster;
        (self.highest > 0 && header.revision < self.highest) || other_cluster
    }
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WatchEnd {
    /// It brought changes or progress, or ran its cycle: start again at once.
    Good,
    /// It ended early with nothing good (an empty body, a closed connection, a cancel):
    /// start again after the back-off.
    Early,
}

/// A reader that fails once more than its allowance has been read since the last
/// [`Allowance::renew`]: one watch message may not take more than [`MAX_ANSWER`] bytes.
struct Capped<R> {
    inner: R,
    left: std::rc::Rc<Cell<u64>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(std::io::Error::other(format!(
                "a watch message larger than {} MiB",
                MAX_ANSWER >> 20
            )));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

/// Reads the stream of JSON messages of `reader`, each at most [`MAX_ANSWER`] bytes (what
/// separates them counts with the next); a larger one ends the stream with an error.
fn messages<R: Read>(reader: R) -> impl Iterator<Item = Result<Value, String>> {
    let left = std::rc::Rc::new(Cell::new(MAX_ANSWER));
    let capped = Capped {
        inner: reader,
        left: std::rc::Rc::clone(&left),
    };
    let mut stream = serde_json::Deserializer::from_reader(capped).into_iter::<Value>();
    std::iter::from_fn(move || {
        let next = stream.next()?;
        let exhausted = left.get() == 0;
        left.set(MAX_ANSWER);
        Some(match next {
            Ok(v) => Ok(v),
            Err(_) if exhausted => Err(format!(
                "a watch message larger than {} MiB",
                MAX_ANSWER >> 20
            )),
            Err(e) if e.is_io() || e.is_eof() => return None,
            Err(e) => Err(format!("not etcd's JSON: {e}")),
        })
    })
}

/// The next wait after a watch that ended early.
fn next_backoff(now: Duration) -> Duration {
    (now * 2).clamp(WATCH_BACKOFF_MIN, WATCH_BACKOFF_MAX)
}

impl WatchWorker {
    fn run(&self) {
        let mut last_error: Option<String> = None;
        let mut history = History::default();
        let mut backoff = WATCH_BACKOFF_MIN;
        while !self.stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let end = match self.cycle(&mut history) {
                Ok(end) => {
                    last_error = None;
                    end
                }
                Err(e) => {
                    // The loop hears of it as etcd not answering; the detail is for debugging.
                    if last_error.as_ref() != Some(&e) {
                        log::debug!("etcd watch: {e}");
                    }
                    last_error = Some(e);
                    WatchEnd::Early
                }
            };
            // A watch that ran most of its cycle was a good one, whatever ended it.
            if end == WatchEnd::Good || started.elapsed() >= watch_cycle(self.ttl) / 2 {
                backoff = WATCH_BACKOFF_MIN;
            } else {
                // Not in a loop: an etcd that answers every watch with an empty or broken
                // body is asked less and less often, up to a few seconds apart.
                thread::sleep(backoff);
                backoff = next_backoff(backoff);
            }
        }
    }

    fn publish(&self, store: &Store, restored_from: Option<i64>) {
        *Http::lock(&self.member_leases) = store.member_leases(&self.keys);
        let view = store.view(&self.keys);
        self.http.reply(match restored_from {
            Some(highest) => Reply::Restored { highest, view },
            None => Reply::View(view),
        });
    }

    /// One read of the prefix, then a watch from the next revision until it ends, fails or
    /// has run a cycle.
    fn cycle(&self, history: &mut History) -> Result<WatchEnd, String> {
        let answer = self.http.call(
            "/v3/kv/range",
            &self.keys.range_all(),
            request_timeout(self.ttl),
        )?;
        let (kvs, header) = api::range(&answer).map_err(|e| {
            let endpoint = self.http.endpoint();
            self.http.rotate(&endpoint);
            format!("{endpoint}/v3/kv/range: a bad answer: {e}")
        })?;
        let revision = header.revision;
        let restored_from = history.went_back(header).then_some(history.highest);
        if let Some(highest) = restored_from {
            log::warn!(
                "etcd's revision went back from {highest} to {revision}{} (restored from a \
                 snapshot?): reading the group afresh and taking it as the truth",
                if history.cluster != header.cluster_id {
                    format!(
                        ", cluster {:x} is now {:x}",
                        history.cluster, header.cluster_id
                    )
                } else {
                    String::new()
                }
            );
            history.highest = 0;
        }
        history.highest = history.highest.max(revision);
        history.cluster = header.cluster_id;
        let mut store = Store::from_range(kvs, revision);
        self.publish(&store, restored_from);
        let endpoint = self.http.endpoint();
        // A revision is at most api::MAX_REVISION: no overflow.
        let body = self.keys.watch_from(revision.saturating_add(1));
        let cycle = watch_cycle(self.ttl);
        let token = self.http.token_for(&endpoint, request_timeout(self.ttl))?;
        let mut response =
            match self
                .http
                .post(&endpoint, "/v3/watch", &body, cycle, token.as_deref())
            {
                Ok(r) => r,
                Err(e) => {
                    self.http.rotate(&endpoint);
                    return Err(e);
                }
            };
        let reader = BufReader::new(response.body_mut().as_reader());
        let started = Instant::now();
        let mut end = WatchEnd::Early;
        for message in messages(reader) {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(WatchEnd::Good);
            }
            let message = message.map_err(|e| format!("{endpoint}/v3/watch: {e}"))?;
            let (message, cluster) = api::watch_message(&message)
                .map_err(|e| format!("{endpoint}/v3/watch: a bad message: {e}"))?;
            if cluster != 0 && history.cluster != 0 && cluster != history.cluster {
                return Err(format!(
                    "{endpoint}/v3/watch: a message from cluster {cluster:x}, not {:x}",
                    history.cluster
                ));
            }
            match message {
                WatchMessage::Created => {}
                WatchMessage::Progress { revision } => {
                    if revision < store.revision {
                        return Err(format!(
                            "{endpoint}/v3/watch: revision {revision} after {}",
                            store.revision
                        ));
                    }
                    end = WatchEnd::Good;
                }
                WatchMessage::Events { revision, changes } => {
                    // A revision that goes back within a watch: read again (the range tells
                    // whether the history went back).
                    if revision < store.revision {
                        return Err(format!(
                            "{endpoint}/v3/watch: revision {revision} after {}",
                            store.revision
                        ));
                    }
                    store.apply(revision, changes);
                    history.highest = history.highest.max(store.revision);
                    self.publish(&store, None);
                    end = WatchEnd::Good;
                }
                WatchMessage::Cancelled { reason } => {
                    log::info!("etcd watch cancelled ({reason}): reading the group again");
                    if is_auth_error(&reason) {
                        *Http::lock(&self.http.token) = None;
                    }
                    return Ok(end);
                }
            }
        }
        // The cycle's time limit, or the connection gone.
        if started.elapsed() >= cycle / 2 {
            end = WatchEnd::Good;
        }
        Ok(end)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_message_is_capped_and_the_stream_ends_with_an_error_not_a_buffer() {
        let small = br#"{"result":{"created":true}} {"result":{"header":{"revision":"5"}}}"#;
        let got: Vec<_> = messages(&small[..]).collect();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok));
        // An empty body: no message, no error (the watch ended early: back-off).
        assert_eq!(messages(&b""[..]).count(), 0);
        // A message of more than MAX_ANSWER bytes: an error, and nothing after it.
        let mut big = br#"{"result":{"header":{"revision":"5"}}}"#.to_vec();
        big.extend_from_slice(br#"{"result":{"x":""#);
        big.resize(big.len() + usize::try_from(MAX_ANSWER).unwrap(), b'a');
        big.extend_from_slice(br#""}}"#);
        let got: Vec<_> = messages(&big[..]).collect();
        assert!(got[0].is_ok());
        assert!(got[1].as_ref().unwrap_err().contains("larger than 4 MiB"));
        assert_eq!(got.len(), 2);
        // Endless whitespace counts too.
        let blank = vec![b' '; usize::try_from(MAX_ANSWER).unwrap() + 10];
        let got: Vec<_> = messages(&blank[..]).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
        // Not JSON, and JSON nested deeper than serde's limit: errors, not a crash.
        assert!(messages(&b"<html>"[..]).next().unwrap().is_err());
        let deep = "[".repeat(100_000);
        assert!(messages(deep.as_bytes()).next().unwrap().is_err());
    }

    /// An endpoint nothing listens on: a port of this host just freed.
    fn closed_endpoint() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    }

    fn http_for(endpoints: &[String]) -> Arc<Http> {
        let (replies, _) = mpsc::channel();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        Arc::new(Http {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            endpoints: endpoints.to_vec(),
            current: AtomicUsize::new(0),
            user: None,
            token: Mutex::new(None),
            replies,
            waker,
            told: Mutex::new(None),
        })
    }

    #[test]
    fn a_renewal_that_hangs_goes_to_the_next_endpoint_after_its_time_limit() {
        // Connections are taken (the kernel's backlog) and never answered: an etcd member
        // forwarding to a dead leader.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hung_at = format!("http://{}", hung.local_addr().unwrap());
        let endpoints = vec![hung_at.clone(), closed_endpoint()];
        let http = http_for(&endpoints);
        let ttl = Duration::from_secs(3);
        let worker = LeaseWorker {
            http: Arc::clone(&http),
            ttl,
            clock: Clock::default(),
        };
        let started = Instant::now();
        let Reply::RenewFailed(why) = worker.renew(7) else {
            panic!("renewed against nothing");
        };
        let took = started.elapsed();
        assert!(
            why.contains(&hung_at) && why.contains(&endpoints[1]),
            "{why}"
        );
        // One time limit for the hung one, then the next at once, within the budget.
        assert!(took >= renew_timeout(ttl), "{took:?}");
        assert!(took < renew_budget(ttl), "{took:?}");
    }

    #[test]
    fn a_failed_renewal_is_sent_again_at_once_to_the_next_endpoint() {
        let endpoints = vec![closed_endpoint(), closed_endpoint(), closed_endpoint()];
        let http = http_for(&endpoints);
        let worker = LeaseWorker {
            http: Arc::clone(&http),
            ttl: Duration::from_secs(3),
            clock: Clock::default(),
        };
        let started = Instant::now();
        let Reply::RenewFailed(why) = worker.renew(7) else {
            panic!("renewed against nothing");
        };
        // Every endpoint tried, one after another, in this one renewal; none twice.
        for e in &endpoints {
            assert_eq!(why.matches(e.as_str()).count(), 1, "{why}");
        }
        assert_eq!(http.current.load(Ordering::Relaxed), 3);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The next renewal starts where this one left off: the first endpoint again.
        assert_eq!(http.endpoint(), endpoints[0]);
    }

    #[test]
    fn watches_that_end_early_back_off_up_to_a_few_seconds() {
        let mut wait = WATCH_BACKOFF_MIN;
        let mut waits = vec![wait];
        for _ in 0..8 {
            wait = next_backoff(wait);
            waits.push(wait);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000]);
    }

    #[test]
    fn a_history_went_back_when_the_revision_does_or_the_cluster_changes() {
        let h = |revision, cluster_id| api::Header {
            revision,
            cluster_id,
        };
        let fresh = History::default();
        assert!(!fresh.went_back(h(1, 7)));
        let seen = History {
            highest: 500,
            cluster: 7,
        };
        assert!(!seen.went_back(h(500, 7)));
        assert!(!seen.went_back(h(600, 7)));
        assert!(seen.went_back(h(499, 7)));
        assert!(seen.went_back(h(600, 8)), "another cluster");
        assert!(!seen.went_back(h(600, 0)), "no cluster id given");
    }

    #[test]
    fn a_ttl_etcd_would_raise_is_refused_when_etcd_cannot_say() {
        let one = check_ttl(Duration::from_secs(1), None).unwrap_err();
        assert!(one.0.contains("FAILOVER_LEASE_TTL 1s"), "{one}");
        assert!(one.0.contains("2s or more"), "{one}");
        let two = check_ttl(Duration::from_secs(2), None).unwrap();
        assert!(two.contains("not asked of etcd"), "{two}");
    }

    #[test]
    fn error_messages_from_etcd_are_escaped() {
        let v: Value =
            serde_json::from_str(r#"{"error":"bad\nFAKE LOG LINE\u001b[2J","code":2}"#).unwrap();
        let e = error_of(&v).unwrap();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        let v: Value = serde_json::from_str(r#"{"error":{"message":"x\ry"}}"#).unwrap();
        assert_eq!(error_of(&v).unwrap(), "x\\ry");
    }

    #[test]
    fn tls_failures_name_the_setting_to_look_at() {
        let unknown = "io: invalid peer certificate: UnknownIssuer";
        assert!(tls_hint(unknown).contains("FAILOVER_ETCD_CA_FILE"));
        let alert = "io: received fatal alert: BadCertificate";
        assert!(tls_hint(alert).contains("FAILOVER_ETCD_CERT_FILE"));
        let name = "io: invalid peer certificate: NotValidForName";
        assert!(tls_hint(name).contains("subject alternative names"));
        assert_eq!(tls_hint("io: Connection refused (os error 111)"), "");
        let https = "https://203.0.113.1:2379";
        assert!(gateway_hint(https, "connection closed").contains("clientAuth"));
        let preface = "connection error: desc = \"transport: failed to write client preface: \
                       write tcp 203.0.113.1:43226->203.0.113.1:2379: write: connection reset \
                       by peer\"";
        assert!(gateway_hint(https, preface).contains("clientAuth"));
        assert_eq!(
            gateway_hint("http://203.0.113.1:2379", "connection closed"),
            ""
        );
        assert_eq!(
            gateway_hint(https, "etcdserver: requested lease not found"),
            ""
        );
    }
}
