//! etcd's v3 API as its JSON gateway speaks it (`/v3/...`, etcd 3.4 and later): the bodies
//! of the requests a member makes, and what their answers mean. Pure: no I/O.
//!
//! The gateway maps the protocol buffers to JSON: byte fields (keys, values) are base64, and
//! 64-bit integers (revisions, lease ids, TTLs) are strings. Fields at their default (0, false,
//! empty) are left out of answers.
//!
//! An answer is believed only within bounds: a revision from 1 to [`MAX_REVISION`], a lease id
//! that is positive, a TTL from 1 s to [`MAX_TTL`]. Anything else (a negative revision,
//! `i64::MAX`, a number that does not parse) makes the whole answer a bad one: the request
//! counts as failed. Names and values from etcd reach the view escaped ([`shown`]), so that
//! no status, mail or log line shows a control character etcd sent.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use ipfailover::group::{Holder, Member, MemberMode, View};
use ipfailover::shown::shown;
use serde_json::{json, Value};

/// The highest revision believed. etcd counts one per write: at a million writes a second,
/// 2^53 lasts 285 years; a greater one is a broken or hostile answer, and `+ 1` on any
/// revision believed cannot overflow.
pub const MAX_REVISION: i64 = 1 << 53;

/// The longest lease TTL believed, seconds. A member asks at most an hour, and etcd raises a
/// TTL only to its minimum (a few seconds): a day is beyond anything etcd would grant.
pub const MAX_TTL: i64 = 86_400;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A 64-bit integer field: a string (the gateway's way) or a number; absent is 0; anything
/// else (a number that does not parse, or out of `i64`) is a bad answer.
fn int(v: &Value, what: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "{what} is not a 64-bit integer: {}",
            excerpt(&v.to_string())
        )
    };
    match v {
        Value::Null => Ok(0),
        Value::String(s) => s.parse().map_err(|_| bad()),
        Value::Number(n) => n.as_i64().ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A field that must lie in `range` (checked after [`int`]).
fn bounded(v: &Value, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    let n = int(v, what)?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{what} {n} cannot be right (from {} to {})",
            range.start(),
            range.end()
        ))
    }
}

/// A revision: 1 to [`MAX_REVISION`].
fn revision(v: &Value, what: &str) -> Result<i64, String> {
    bounded(v, what, 1..=MAX_REVISION)
}

/// The start of a text, escaped, for a message.
pub fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    shown(&t).into_owned()
}

/// What every answer's header says: the revision etcd is at, and the cluster's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The store's revision when the answer was made.
    pub revision: i64,
    /// The cluster's id (0 if not given).
    pub cluster_id: u64,
}

fn header(answer: &Value) -> Result<Header, String> {
    let h = &answer["header"];
    let cluster_id = match &h["cluster_id"] {
        Value::Null => 0,
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("cluster id {}", excerpt(s)))?,
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("cluster id {}", excerpt(&n.to_string())))?,
        other => return Err(format!("cluster id {}", excerpt(&other.to_string()))),
    };
    Ok(Header {
        revision: revision(&h["revision"], "revision")?,
        cluster_id,
    })
}

/// The keys of one group: `/ipfailover/<group>/members/<name>` and
/// `/ipfailover/<group>/addrs/<address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of group `group`.
    pub fn new(group: &str) -> Keys {
        Keys {
            prefix: format!("/ipfailover/{group}/"),
        }
    }

    /// The group's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A member's key.
    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }

    /// An address's key.
    pub fn addr(&self, addr: IpAddr) -> String {
        format!("{}addrs/{addr}", self.prefix)
    }

    /// `range_end` for the whole prefix: the prefix with its last byte plus one.
    fn range_end(&self) -> Vec<u8> {
        let mut end = self.prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1; // '/' + 1 = '0': never overflows
        }
        end
    }

    /// `kv/range` of the whole group.
    pub fn range_all(&self) -> Value {
        json!({ "key": b64(self.prefix.as_bytes()), "range_end": b64(&self.range_end()) })
    }

    /// `watch` of the whole group from `revision`.
    pub fn watch_from(&self, revision: i64) -> Value {
        json!({ "create_request": {
            "key": b64(self.prefix.as_bytes()),
            "range_end": b64(&self.range_end()),
            "start_revision": revision.to_string(),
        }})
    }

    /// `kv/txn` that creates the address's key (value: the member's name) with `lease` only
    /// if it does not exist: the only way a member acquires.
    pub fn acquire(&self, addr: IpAddr, name: &str, lease: i64) -> Value {
        let key = b64(self.addr(addr).as_bytes());
        json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": {
                "key": key, "value": b64(name.as_bytes()), "lease": lease.to_string(),
            }}],
        })
    }

    /// One `kv/txn` that tries all of `addrs` at once: a create-if-absent transaction nested
    /// for each (etcd 3.3 and later), so that each is won or lost on its own, in one round
    /// trip and one revision.
    pub fn acquire_many(&self, addrs: &[IpAddr], name: &str, lease: i64) -> Value {
        let ops: Vec<Value> = addrs
            .iter()
            .map(|a| json!({ "request_txn": self.acquire(*a, name, lease) }))
            .collect();
        json!({ "success": ops })
    }

    /// `kv/txn` that deletes `key` only if its create revision is `revision` (the same key,
    /// not one created since).
    pub fn delete_if_created_at(&self, key: &str, revision: i64) -> Value {
        let key = b64(key.as_bytes());
        json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": revision.to_string() }],
            "success": [{ "request_delete_range": { "key": key } }],
        })
    }

    /// `kv/txn` that puts this member's key attached to `lease` only if it does not exist: a
    /// key in the same name under another lease (a previous life's, or another failoverd's
    /// with the same name) is never overwritten.
    pub fn register_if_absent(&self, name: &str, value: &str, lease: i64) -> Value {
        let key = b64(self.member(name).as_bytes());
        json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": {
                "key": key, "value": b64(value.as_bytes()), "lease": lease.to_string(),
            }}],
        })
    }

    /// `kv/txn` that rewrites this member's key (its value: priority and mode) only while it
    /// is attached to `lease`, this member's.
    pub fn publish(&self, name: &str, value: &str, lease: i64) -> Value {
        let key = b64(self.member(name).as_bytes());
        json!({
            "compare": [{ "key": key, "target": "LEASE", "result": "EQUAL", "lease": lease.to_string() }],
            "success": [{ "request_put": {
                "key": key, "value": b64(value.as_bytes()), "lease": lease.to_string(),
            }}],
        })
    }

    /// `kv/txn` that deletes `key` only if it is attached to `lease` (still ours).
    pub fn delete_if_ours(&self, key: &str, lease: i64) -> Value {
        let key = b64(key.as_bytes());
        json!({
            "compare": [{ "key": key, "target": "LEASE", "result": "EQUAL", "lease": lease.to_string() }],
            "success": [{ "request_delete_range": { "key": key } }],
        })
    }
}

/// `lease/grant` for `ttl_s` seconds.
pub fn grant(ttl_s: u64) -> Value {
    json!({ "TTL": ttl_s.to_string() })
}

/// A lease id as request bodies take it (`lease/keepalive`, `lease/revoke`,
/// `lease/timetolive`).
pub fn lease_id(id: i64) -> Value {
    json!({ "ID": id.to_string() })
}

/// `auth/authenticate`.
pub fn authenticate(name: &str, password: &str) -> Value {
    json!({ "name": name, "password": password })
}

/// The lease a `lease/grant` answer gives: its id (positive) and TTL (1 s to [`MAX_TTL`]).
pub fn granted(answer: &Value) -> Result<(i64, i64), String> {
    let id = bounded(&answer["ID"], "lease id", 1..=i64::MAX)?;
    let ttl = bounded(&answer["TTL"], "lease TTL", 1..=MAX_TTL)?;
    Ok((id, ttl))
}

/// What a `lease/keepalive` answer for `lease` says: `Some(ttl)` renewed, `None` the lease is
/// gone (etcd answers a TTL of 0, or none, for a lease it no longer has); an error for an
/// answer that cannot be right (another lease, a TTL out of bounds).
pub fn kept_alive(answer: &Value, lease: i64) -> Result<Option<i64>, String> {
    let result = answer.get("result").unwrap_or(answer);
    let id = int(&result["ID"], "lease id")?;
    if id != 0 && id != lease {
        return Err(format!("an answer for lease {id:x}, not {lease:x}"));
    }
    let ttl = bounded(&result["TTL"], "lease TTL", 0..=MAX_TTL)?;
    Ok((ttl > 0).then_some(ttl))
}

/// The remaining TTL of a `lease/timetolive` answer (-1: the lease is gone).
pub fn time_to_live(answer: &Value) -> Result<i64, String> {
    match answer.get("TTL") {
        Some(v) => bounded(v, "lease TTL", -1..=MAX_TTL),
        None => Ok(-1),
    }
}

/// Whether a `kv/txn` answer succeeded, and the revision it was made at.
pub fn txn(answer: &Value) -> Result<(bool, i64), String> {
    Ok((
        answer["succeeded"].as_bool().unwrap_or(false),
        header(answer)?.revision,
    ))
}

/// The outcome of [`Keys::acquire_many`]: the revision, and whether each was won, in order.
/// An error if the answer does not hold one outcome per address, or its revision cannot be
/// right.
pub fn txn_many(answer: &Value, n: usize) -> Result<(i64, Vec<bool>), String> {
    let responses = answer["responses"]
        .as_array()
        .filter(|r| r.len() == n)
        .ok_or_else(|| {
            format!(
                "not one outcome per address: {}",
                excerpt(&answer.to_string())
            )
        })?;
    let won = responses
        .iter()
        .map(|r| r["response_txn"]["succeeded"].as_bool().unwrap_or(false))
        .collect();
    Ok((header(answer)?.revision, won))
}

/// The token of an `auth/authenticate` answer.
pub fn token(answer: &Value) -> Option<String> {
    answer["token"].as_str().map(str::to_string)
}

/// One key as etcd gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Its create revision.
    pub create: i64,
    /// Its lease (0: none).
    pub lease: i64,
}

/// One key of an answer: `Ok(None)` for a key that is not text (nobody's key: left out), an
/// error for a field that cannot be right. A put has a create revision; a delete (`put`
/// false) has none.
fn kv(v: &Value, put: bool) -> Result<Option<Kv>, String> {
    let Some(key) = v["key"].as_str().and_then(unb64) else {
        return Err(format!(
            "a key that is not base64: {}",
            excerpt(&v.to_string())
        ));
    };
    let Ok(key) = String::from_utf8(key) else {
        return Ok(None);
    };
    // A value that is not text still holds the key: who holds it, shown as it can be.
    let value = v["value"]
        .as_str()
        .and_then(unb64)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let create = if put {
        revision(&v["create_revision"], "create revision")?
    } else {
        0
    };
    Ok(Some(Kv {
        key,
        value,
        create,
        lease: bounded(&v["lease"], "lease id", 0..=i64::MAX)?,
    }))
}

/// The keys of a `kv/range` answer, and its header; an error for an answer that cannot be
/// right.
pub fn range(answer: &Value) -> Result<(Vec<Kv>, Header), String> {
    let header = header(answer)?;
    let mut kvs = Vec::new();
    if let Some(a) = answer["kvs"].as_array() {
        for v in a {
            if let Some(k) = kv(v, true)? {
                kvs.push(k);
            }
        }
    }
    Ok((kvs, header))
}

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch was created.
    Created,
    /// Changes at `revision`: each a put (`Some`) or a delete (`None`) of a key.
    Events {
        /// The revision of the header.
        revision: i64,
        /// The changes.
        changes: Vec<(String, Option<Kv>)>,
    },
    /// A progress notification: nothing changed up to `revision`.
    Progress {
        /// The revision.
        revision: i64,
    },
    /// etcd cancelled the watch (a compaction past its start, or an error): read again.
    Cancelled {
        /// Why, as etcd says.
        reason: String,
    },
}

/// One message of a `watch` stream, with the cluster id of its header (0 if not given); an
/// error for a message that cannot be right (the watch is then read again from scratch).
pub fn watch_message(message: &Value) -> Result<(WatchMessage, u64), String> {
    let r = message.get("result").unwrap_or(message);
    let compacted = bounded(&r["compact_revision"], "compact revision", 0..=MAX_REVISION)?;
    if r["canceled"].as_bool().unwrap_or(false) || compacted > 0 {
        let reason = r["cancel_reason"]
            .as_str()
            .map(excerpt)
            .unwrap_or_else(|| format!("compacted at revision {compacted}"));
        return Ok((WatchMessage::Cancelled { reason }, 0));
    }
    if let Some(error) = message.get("error") {
        let reason = excerpt(&error.to_string());
        return Ok((WatchMessage::Cancelled { reason }, 0));
    }
    if r["created"].as_bool().unwrap_or(false) && r.get("events").is_none() {
        return Ok((WatchMessage::Created, 0));
    }
    let h = header(r)?;
    let message = match r["events"].as_array() {
        Some(events) => {
            let mut changes = Vec::new();
            for e in events {
                let deleted = e["type"].as_str() == Some("DELETE");
                if let Some(k) = kv(&e["kv"], !deleted)? {
                    changes.push((k.key.clone(), (!deleted).then_some(k)));
                }
            }
            WatchMessage::Events {
                revision: h.revision,
                changes,
            }
        }
        None => WatchMessage::Progress {
            revision: h.revision,
        },
    };
    Ok((message, h.cluster_id))
}

/// The group's keys by name, kept up to date from a range and then watch events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    /// The revision the store is at.
    pub revision: i64,
    /// Key to its content.
    pub keys: BTreeMap<String, Kv>,
}

impl Store {
    /// A store from a `kv/range` of the group.
    pub fn from_range(kvs: Vec<Kv>, revision: i64) -> Store {
        Store {
            revision,
            keys: kvs.into_iter().map(|k| (k.key.clone(), k)).collect(),
        }
    }

    /// Applies a watch's changes.
    pub fn apply(&mut self, revision: i64, changes: Vec<(String, Option<Kv>)>) {
        for (key, change) in changes {
            match change {
                Some(kv) => {
                    self.keys.insert(key, kv);
                }
                None => {
                    self.keys.remove(&key);
                }
            }
        }
        self.revision = self.revision.max(revision);
    }

    /// The view the core takes: the members and the held addresses of `keys`' group. Keys
    /// that do not parse (someone else's, or garbage) are left out.
    pub fn view(&self, keys: &Keys) -> View {
        let mut view = View {
            revision: self.revision,
            ..View::default()
        };
        let members = format!("{}members/", keys.prefix());
        let addrs = format!("{}addrs/", keys.prefix());
        for (key, kv) in &self.keys {
            if let Some(name) = key.strip_prefix(&members) {
                if let Some((priority, mode)) = MemberMode::parse_key_value(&kv.value) {
                    view.members.push(Member {
                        name: shown(name).into_owned(),
                        priority,
                        lease: kv.lease,
                        mode,
                    });
                }
            } else if let Some(a) = key.strip_prefix(&addrs) {
                if let Ok(addr) = a.parse() {
                    view.holders.insert(
                        addr,
                        Holder {
                            // Escaped: a member's own name needs no escape, so the
                            // comparison with it is unchanged.
                            member: shown(&kv.value).into_owned(),
                            epoch: kv.create,
                            lease: kv.lease,
                        },
                    );
                }
            }
        }
        view
    }

    /// The lease of each member, for asking how long each has left.
    pub fn member_leases(&self, keys: &Keys) -> Vec<(String, i64)> {
        let members = format!("{}members/", keys.prefix());
        self.keys
            .iter()
            .filter_map(|(k, kv)| {
                k.strip_prefix(&members)
                    .map(|n| (shown(n).into_owned(), kv.lease))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_the_range_of_a_prefix() {
        let k = Keys::new("web");
        assert_eq!(k.member("m1"), "/ipfailover/web/members/m1");
        assert_eq!(
            k.addr("198.51.100.100".parse().unwrap()),
            "/ipfailover/web/addrs/198.51.100.100"
        );
        let r = k.range_all();
        assert_eq!(
            unb64(r["key"].as_str().unwrap()).unwrap(),
            b"/ipfailover/web/"
        );
        assert_eq!(
            unb64(r["range_end"].as_str().unwrap()).unwrap(),
            b"/ipfailover/web0"
        );
    }

    #[test]
    fn the_acquire_transaction_creates_only_if_absent() {
        let k = Keys::new("g");
        let t = k.acquire("198.51.100.100".parse().unwrap(), "m1", 7587);
        assert_eq!(t["compare"][0]["target"], "CREATE");
        assert_eq!(t["compare"][0]["create_revision"], "0");
        assert_eq!(t["success"][0]["request_put"]["lease"], "7587");
        assert_eq!(
            unb64(t["success"][0]["request_put"]["value"].as_str().unwrap()).unwrap(),
            b"m1"
        );
        let d = k.delete_if_ours("/ipfailover/g/addrs/x", 7587);
        assert_eq!(d["compare"][0]["target"], "LEASE");
        assert_eq!(d["compare"][0]["lease"], "7587");
    }

    #[test]
    fn many_addresses_are_tried_in_one_transaction_each_on_its_own() {
        let k = Keys::new("g");
        let addrs: Vec<IpAddr> = ["198.51.100.100", "198.51.100.101"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let t = k.acquire_many(&addrs, "m1", 9);
        assert!(
            t.get("compare").is_none(),
            "the outer transaction always runs"
        );
        let inner = &t["success"][1]["request_txn"];
        assert_eq!(inner["compare"][0]["target"], "CREATE");
        assert_eq!(
            unb64(inner["compare"][0]["key"].as_str().unwrap()).unwrap(),
            b"/ipfailover/g/addrs/198.51.100.101"
        );
        let a: Value = serde_json::from_str(
            r#"{"header":{"revision":"21"},"succeeded":true,"responses":[
                {"response_txn":{"header":{},"succeeded":true,"responses":[{"response_put":{}}]}},
                {"response_txn":{"header":{}}}]}"#,
        )
        .unwrap();
        assert_eq!(txn_many(&a, 2), Ok((21, vec![true, false])));
        assert!(txn_many(&a, 3).is_err());
    }

    #[test]
    fn answers_as_the_gateway_writes_them() {
        let g: Value = serde_json::from_str(
            r#"{"header":{"revision":"4"},"ID":"7587848329573342467","TTL":"3"}"#,
        )
        .unwrap();
        assert_eq!(granted(&g), Ok((7587848329573342467, 3)));
        let ka: Value =
            serde_json::from_str(r#"{"result":{"header":{},"ID":"75","TTL":"3"}}"#).unwrap();
        assert_eq!(kept_alive(&ka, 75), Ok(Some(3)));
        // A lease etcd no longer has: TTL 0 is left out.
        let gone: Value = serde_json::from_str(r#"{"result":{"header":{},"ID":"75"}}"#).unwrap();
        assert_eq!(kept_alive(&gone, 75), Ok(None));
        let t: Value =
            serde_json::from_str(r#"{"header":{"revision":"12"},"succeeded":true}"#).unwrap();
        assert_eq!(txn(&t), Ok((true, 12)));
        let lost: Value = serde_json::from_str(r#"{"header":{"revision":"13"}}"#).unwrap();
        assert_eq!(txn(&lost), Ok((false, 13)));
    }

    #[test]
    fn a_range_then_watch_events_keep_the_view() {
        let keys = Keys::new("g");
        let r: Value = serde_json::from_str(&format!(
            r#"{{"header":{{"revision":"9"}},"kvs":[
              {{"key":"{}","value":"{}","create_revision":"3","lease":"11"}},
              {{"key":"{}","value":"{}","create_revision":"7","lease":"11"}}]}}"#,
            b64(b"/ipfailover/g/members/m1"),
            b64(b"200"),
            b64(b"/ipfailover/g/addrs/198.51.100.100"),
            b64(b"m1")
        ))
        .unwrap();
        let (kvs, header) = range(&r).unwrap();
        let mut store = Store::from_range(kvs, header.revision);
        let v = store.view(&keys);
        assert_eq!(v.revision, 9);
        assert_eq!(
            v.members,
            vec![Member {
                name: "m1".into(),
                priority: 200,
                lease: 11,
                mode: MemberMode::Active,
            }]
        );
        let h = &v.holders[&"198.51.100.100".parse::<IpAddr>().unwrap()];
        assert_eq!((h.member.as_str(), h.epoch, h.lease), ("m1", 7, 11));
        // The lease expires: both keys are deleted in one event batch.
        let w: Value = serde_json::from_str(&format!(
            r#"{{"result":{{"header":{{"revision":"10"}},"events":[
              {{"type":"DELETE","kv":{{"key":"{}","mod_revision":"10"}}}},
              {{"type":"DELETE","kv":{{"key":"{}","mod_revision":"10"}}}}]}}}}"#,
            b64(b"/ipfailover/g/members/m1"),
            b64(b"/ipfailover/g/addrs/198.51.100.100")
        ))
        .unwrap();
        let Ok((WatchMessage::Events { revision, changes }, _)) = watch_message(&w) else {
            panic!("not events");
        };
        store.apply(revision, changes);
        let v = store.view(&keys);
        assert_eq!(v.revision, 10);
        assert!(v.members.is_empty() && v.holders.is_empty());
    }

    #[test]
    fn a_compaction_cancels_the_watch() {
        let c: Value = serde_json::from_str(
            r#"{"result":{"header":{"revision":"50"},"canceled":true,"compact_revision":"40"}}"#,
        )
        .unwrap();
        assert!(matches!(
            watch_message(&c),
            Ok((WatchMessage::Cancelled { .. }, _))
        ));
        let created: Value =
            serde_json::from_str(r#"{"result":{"header":{"revision":"5"},"created":true}}"#)
                .unwrap();
        assert_eq!(watch_message(&created), Ok((WatchMessage::Created, 0)));
        let garbage: Value = serde_json::from_str(r#"{"error":{"grpc_code":14}}"#).unwrap();
        assert!(matches!(
            watch_message(&garbage),
            Ok((WatchMessage::Cancelled { .. }, _))
        ));
    }

    #[test]
    fn keys_of_others_and_garbage_are_left_out_of_the_view() {
        let keys = Keys::new("g");
        let mut store = Store::default();
        for (k, v) in [
            ("/ipfailover/g/members/m1", "not a number"),
            ("/ipfailover/g/addrs/not-an-address", "m1"),
            ("/ipfailover/g/other", "x"),
        ] {
            store.keys.insert(
                k.into(),
                Kv {
                    key: k.into(),
                    value: v.into(),
                    create: 1,
                    lease: 1,
                },
            );
        }
        let v = store.view(&keys);
        assert!(v.members.is_empty() && v.holders.is_empty());
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_that_cannot_be_right_make_a_bad_answer_not_a_panic() {
        let max = i64::MAX;
        // Revisions: negative, zero, absurd, not a number.
        for rev in ["-5", "0", &max.to_string(), "9007199254740993", "x", "1e3"] {
            let r = json(&format!(r#"{{"header":{{"revision":"{rev}"}}}}"#));
            assert!(range(&r).is_err(), "revision {rev}");
            let w = json(&format!(
                r#"{{"result":{{"header":{{"revision":"{rev}"}},"events":[]}}}}"#
            ));
            assert!(watch_message(&w).is_err(), "watch revision {rev}");
            let t = json(&format!(
                r#"{{"header":{{"revision":"{rev}"}},"responses":[{{}}]}}"#
            ));
            assert!(txn_many(&t, 1).is_err(), "txn revision {rev}");
        }
        let top = json(&format!(r#"{{"header":{{"revision":"{MAX_REVISION}"}}}}"#));
        assert_eq!(range(&top).unwrap().1.revision, MAX_REVISION);
        // A key whose create revision or lease cannot be right spoils the answer.
        let bad_kv = |create: &str, lease: &str| {
            json(&format!(
                r#"{{"header":{{"revision":"9"}},"kvs":[{{"key":"{}","value":"{}","create_revision":"{create}","lease":"{lease}"}}]}}"#,
                b64(b"/ipfailover/g/addrs/198.51.100.100"),
                b64(b"m1")
            ))
        };
        assert!(range(&bad_kv("3", "11")).is_ok());
        assert!(range(&bad_kv("-3", "11")).is_err());
        assert!(range(&bad_kv("3", "-11")).is_err());
        assert!(range(&bad_kv(&max.to_string(), "11")).is_err());
        // Leases and TTLs.
        for (id, ttl) in [
            ("0", "3"),
            ("-7", "3"),
            ("7", "0"),
            ("7", "-1"),
            ("7", &max.to_string()),
        ] {
            let g = json(&format!(r#"{{"ID":"{id}","TTL":"{ttl}"}}"#));
            assert!(granted(&g).is_err(), "grant {id} {ttl}");
        }
        let g = json(&format!(r#"{{"ID":"{max}","TTL":"2"}}"#));
        assert_eq!(granted(&g), Ok((max, 2)));
        let k = json(&format!(r#"{{"result":{{"ID":"7","TTL":"{max}"}}}}"#));
        assert!(kept_alive(&k, 7).is_err());
        let k = json(r#"{"result":{"ID":"7","TTL":"-3"}}"#);
        assert!(kept_alive(&k, 7).is_err());
        let other = json(r#"{"result":{"ID":"8","TTL":"3"}}"#);
        assert!(
            kept_alive(&other, 7).is_err(),
            "an answer for another lease"
        );
        assert!(time_to_live(&json(r#"{"TTL":"-9"}"#)).is_err());
        assert_eq!(time_to_live(&json(r#"{"TTL":"-1"}"#)), Ok(-1));
        assert_eq!(time_to_live(&json("{}")), Ok(-1));
        // A cluster id that is not a number.
        let c = json(r#"{"header":{"revision":"3","cluster_id":"-1"}}"#);
        assert!(range(&c).is_err());
        let c = json(r#"{"header":{"revision":"3","cluster_id":"18446744073709551615"}}"#);
        assert_eq!(range(&c).unwrap().1.cluster_id, u64::MAX);
    }

    #[test]
    fn names_values_and_reasons_from_etcd_reach_the_view_escaped() {
        let keys = Keys::new("g");
        let r = json(&format!(
            r#"{{"header":{{"revision":"9"}},"kvs":[
              {{"key":"{}","value":"{}","create_revision":"3","lease":"11"}},
              {{"key":"{}","value":"{}","create_revision":"7","lease":"11"}},
              {{"key":"{}","value":"{}","create_revision":"8","lease":"12"}},
              {{"key":"{}","value":"{}","create_revision":"8","lease":"12"}}]}}"#,
            b64(b"/ipfailover/g/members/evil\n\x1b[31mFAKE"),
            b64(b"200"),
            b64(b"/ipfailover/g/addrs/198.51.100.100"),
            b64("m1\nSubject: forged\r\n\u{202e}".as_bytes()),
            b64(b"/ipfailover/g/addrs/198.51.100.101"),
            b64(&[0xff, 0x1b, b'x']),
            b64(&[b'/', b'i', 0xff]),
            b64(b"x"),
        ));
        let (kvs, header) = range(&r).unwrap();
        let view = Store::from_range(kvs, header.revision).view(&keys);
        let texts: Vec<String> = view
            .members
            .iter()
            .map(|m| m.name.clone())
            .chain(view.holders.values().map(|h| h.member.clone()))
            .collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        for t in &texts {
            assert!(!t.chars().any(char::is_control), "{t:?}");
            assert!(!t.contains('\u{202e}'), "{t:?}");
        }
        // A cancel reason too.
        let c = json(r#"{"result":{"canceled":true,"cancel_reason":"bad\nline\u001b"}}"#);
        let Ok((WatchMessage::Cancelled { reason }, _)) = watch_message(&c) else {
            panic!("not cancelled");
        };
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
}
