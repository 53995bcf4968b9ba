//! etcd's v3 API as its JSON gateway speaks it (`/v3/...`, etcd 3.4 and later): the bodies
//! of the requests a member makes, and what their answers mean. Pure: no I/O.
//!
//! The gateway maps the protocol buffers to JSON: byte fields (keys, values) are base64, and
//! 64-bit integers (revisions, lease ids, TTLs) are strings. Fields at their default (0, false,
//! empty) are left out of answers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use ipfailover::group::{Holder, Member, MemberMode, View};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A 64-bit integer field: a string (the gateway's way) or a number; absent is 0.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
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

/// The lease a `lease/grant` answer gives: its id and TTL (seconds).
pub fn granted(answer: &Value) -> Option<(i64, i64)> {
    let id = int(&answer["ID"]);
    (id != 0).then(|| (id, int(&answer["TTL"])))
}

/// What a `lease/keepalive` answer says: `Some(ttl)` renewed, `None` the lease is gone (etcd
/// answers a TTL of 0, or none, for a lease it no longer has).
pub fn kept_alive(answer: &Value) -> Option<i64> {
    let result = answer.get("result").unwrap_or(answer);
    let ttl = int(&result["TTL"]);
    (ttl > 0).then_some(ttl)
}

/// The remaining TTL of a `lease/timetolive` answer (-1: the lease is gone).
pub fn time_to_live(answer: &Value) -> i64 {
    match answer.get("TTL") {
        Some(v) => int(v),
        None => -1,
    }
}

/// Whether a `kv/txn` answer succeeded, and the revision it was made at.
pub fn txn(answer: &Value) -> (bool, i64) {
    (
        answer["succeeded"].as_bool().unwrap_or(false),
        int(&answer["header"]["revision"]),
    )
}

/// The outcome of [`Keys::acquire_many`]: the revision, and whether each was won, in order.
/// `None` if the answer does not hold one outcome per address.
pub fn txn_many(answer: &Value, n: usize) -> Option<(i64, Vec<bool>)> {
    let responses = answer["responses"].as_array()?;
    if responses.len() != n {
        return None;
    }
    let won = responses
        .iter()
        .map(|r| r["response_txn"]["succeeded"].as_bool().unwrap_or(false))
        .collect();
    Some((int(&answer["header"]["revision"]), won))
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

fn kv(v: &Value) -> Option<Kv> {
    let key = String::from_utf8(unb64(v["key"].as_str()?)?).ok()?;
    let value = v["value"]
        .as_str()
        .and_then(unb64)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    Some(Kv {
        key,
        value,
        create: int(&v["create_revision"]),
        lease: int(&v["lease"]),
    })
}

/// The keys of a `kv/range` answer, and its revision.
pub fn range(answer: &Value) -> (Vec<Kv>, i64) {
    let kvs = answer["kvs"]
        .as_array()
        .map(|a| a.iter().filter_map(kv).collect())
        .unwrap_or_default();
    (kvs, int(&answer["header"]["revision"]))
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

/// One message of a `watch` stream.
pub fn watch_message(message: &Value) -> WatchMessage {
    let r = message.get("result").unwrap_or(message);
    if r["canceled"].as_bool().unwrap_or(false) || int(&r["compact_revision"]) > 0 {
        let reason = r["cancel_reason"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("compacted at revision {}", int(&r["compact_revision"])));
        return WatchMessage::Cancelled { reason };
    }
    if let Some(error) = message.get("error") {
        return WatchMessage::Cancelled {
            reason: error.to_string(),
        };
    }
    let revision = int(&r["header"]["revision"]);
    match r["events"].as_array() {
        Some(events) => WatchMessage::Events {
            revision,
            changes: events
                .iter()
                .filter_map(|e| {
                    let k = kv(&e["kv"])?;
                    let deleted = e["type"].as_str() == Some("DELETE");
                    Some((k.key.clone(), (!deleted).then_some(k)))
                })
                .collect(),
        },
        None if r["created"].as_bool().unwrap_or(false) => WatchMessage::Created,
        None => WatchMessage::Progress { revision },
    }
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
                        name: name.to_string(),
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
                            member: kv.value.clone(),
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
            .filter_map(|(k, kv)| k.strip_prefix(&members).map(|n| (n.to_string(), kv.lease)))
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
        assert_eq!(txn_many(&a, 2), Some((21, vec![true, false])));
        assert_eq!(txn_many(&a, 3), None);
    }

    #[test]
    fn answers_as_the_gateway_writes_them() {
        let g: Value = serde_json::from_str(
            r#"{"header":{"revision":"4"},"ID":"7587848329573342467","TTL":"3"}"#,
        )
        .unwrap();
        assert_eq!(granted(&g), Some((7587848329573342467, 3)));
        let ka: Value =
            serde_json::from_str(r#"{"result":{"header":{},"ID":"75","TTL":"3"}}"#).unwrap();
        assert_eq!(kept_alive(&ka), Some(3));
        // A lease etcd no longer has: TTL 0 is left out.
        let gone: Value = serde_json::from_str(r#"{"result":{"header":{},"ID":"75"}}"#).unwrap();
        assert_eq!(kept_alive(&gone), None);
        let t: Value =
            serde_json::from_str(r#"{"header":{"revision":"12"},"succeeded":true}"#).unwrap();
        assert_eq!(txn(&t), (true, 12));
        let lost: Value = serde_json::from_str(r#"{"header":{"revision":"13"}}"#).unwrap();
        assert_eq!(txn(&lost), (false, 13));
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
        let (kvs, rev) = range(&r);
        let mut store = Store::from_range(kvs, rev);
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
        let WatchMessage::Events { revision, changes } = watch_message(&w) else {
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
        assert!(matches!(watch_message(&c), WatchMessage::Cancelled { .. }));
        let created: Value =
            serde_json::from_str(r#"{"result":{"header":{"revision":"5"},"created":true}}"#)
                .unwrap();
        assert_eq!(watch_message(&created), WatchMessage::Created);
        let garbage: Value = serde_json::from_str(r#"{"error":{"grpc_code":14}}"#).unwrap();
        assert!(matches!(
            watch_message(&garbage),
            WatchMessage::Cancelled { .. }
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
}
