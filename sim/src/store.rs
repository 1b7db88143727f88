//! The in-memory object store: one global monotonic resourceVersion (like etcd), the current
//! objects, and a bounded history of watch frames, each serialized once.
//!
//! History is a deque ordered by resourceVersion; `compacted` is the highest resourceVersion no
//! longer in it. A watch from `rv` is servable iff `rv >= compacted` (every change after it is kept).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// An API error, answered as a `Status` with the same HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.plural),
        )
    }
    pub fn status(&self) -> Value {
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":self.message,
               "reason":self.reason,"code":self.code})
    }
}

pub struct Obj {
    pub value: Value,
    pub json: Bytes,
    pub rv: u64,
    /// Events only: when the TTL removes it.
    pub expires: Option<Instant>,
}

/// History after the requested resourceVersion was compacted away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted;

/// One change, as the watch frame line sent to every watcher of its resource.
#[derive(Debug)]
pub struct Entry {
    pub rv: u64,
    pub rt: ResourceType,
    pub namespace: String,
    pub frame: Bytes,
}

pub struct Store {
    pub rv: u64,
    pub compacted: u64,
    objects: BTreeMap<ResourceType, BTreeMap<(String, String), Obj>>,
    history: VecDeque<Arc<Entry>>,
    history_limit: usize,
    event_ttl: Option<Duration>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn new_uid() -> String {
    let mut r = rand::rng();
    let b: [u8; 16] = r.random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

/// What the API server records of who wrote an event, as it does for every object since
/// server-side apply: one `Update` entry of its writer with the fields it set, replaced on each
/// write by the same writer. Real events carry it (`kubectl get events -o json
/// --show-managed-fields`), so a client reads past a few hundred bytes of it on every event. The
/// writer is named by the event's reporting component: the API server takes it from the client's
/// user agent, which for the components that write events is that name.
fn managed_fields(value: &Value, api_version: &str) -> Value {
    let manager = ["/reportingComponent", "/source/component"]
        .iter()
        .filter_map(|p| value.pointer(p).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or("kube-sim");
    json!([{
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(value),
    }])
}

/// The `f:` tree of the fields set: `source` and `series` field by field, the object references
/// (atomic in the API's schema) and every other field whole, and the metadata's labels and
/// annotations key by key.
fn fields_v1(value: &Value) -> Value {
    fn keys(v: &Value) -> Value {
        let set = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null());
        Value::Object(set.map(|(k, _)| (format!("f:{k}"), json!({}))).collect())
    }
    let mut out = serde_json::Map::new();
    for (k, v) in value.as_object().into_iter().flatten() {
        match k.as_str() {
            _ if v.is_null() => {}
            "apiVersion" | "kind" => {}
            "metadata" => {
                let mut meta = serde_json::Map::new();
                for part in ["labels", "annotations"] {
                    if let Some(m) = v.get(part).filter(|m| m.is_object()) {
                        meta.insert(format!("f:{part}"), keys(m));
                    }
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
            }
            "source" | "series" if v.is_object() => {
                out.insert(format!("f:{k}"), keys(v));
            }
            _ => {
                out.insert(format!("f:{k}"), json!({}));
            }
        }
    }
    Value::Object(out)
}

/// The characters of a generated name's suffix: the API server's, without vowels (no words).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Store {
    pub fn new(history_limit: usize, event_ttl: Option<Duration>) -> Self {
        Self {
            // Like a fresh etcd behind an API server that already wrote its own objects: history
            // is kept from the start until the first compaction (the history limit, or `compact`).
            rv: 100,
            compacted: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            event_ttl,
        }
    }

    fn bucket(&mut self, rt: ResourceType) -> &mut BTreeMap<(String, String), Obj> {
        self.objects.entry(rt).or_default()
    }

    /// Stamps the object with the next resourceVersion, stores it and records the change.
    fn commit(
        &mut self,
        rt: ResourceType,
        ns: &str,
        name: &str,
        mut value: Value,
        kind: &str,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        value["apiVersion"] = json!(rt.api_version());
        value["kind"] = json!(rt.kind);
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        if rt.plural == "events" && kind != "DELETED" {
            value["metadata"]["managedFields"] = managed_fields(&value, &rt.api_version());
        }
        let json = Bytes::from(crate::wire::to_vec(&value));
        let expires = (rt.plural == "events" && kind != "DELETED")
            .then_some(self.event_ttl)
            .flatten()
            .map(|ttl| Instant::now() + ttl);
        self.push_frame(rt, ns, kind, &json);
        if kind == "DELETED" {
            self.bucket(rt).remove(&(ns.to_string(), name.to_string()));
        } else {
            self.bucket(rt).insert(
                (ns.to_string(), name.to_string()),
                Obj {
                    value: value.clone(),
                    json,
                    rv,
                    expires,
                },
            );
        }
        value
    }

    fn push_frame(&mut self, rt: ResourceType, ns: &str, kind: &str, object: &[u8]) {
        let mut frame = Vec::with_capacity(object.len() + 32);
        frame.extend_from_slice(b"{\"type\":\"");
        frame.extend_from_slice(kind.as_bytes());
        frame.extend_from_slice(b"\",\"object\":");
        frame.extend_from_slice(object);
        frame.extend_from_slice(b"}\n");
        self.history.push_back(Arc::new(Entry {
            rv: self.rv,
            rt,
            namespace: ns.to_string(),
            frame: Bytes::from(frame),
        }));
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// A raw (possibly malformed) frame line for the events resource, for fault tests.
    pub fn push_raw_event_frame(&mut self, ns: &str, line: &str) -> u64 {
        self.rv += 1;
        let mut frame = line.trim_end().as_bytes().to_vec();
        frame.push(b'\n');
        self.history.push_back(Arc::new(Entry {
            rv: self.rv,
            rt: crate::resources::events(),
            namespace: ns.to_string(),
            frame: Bytes::from(frame),
        }));
        self.rv
    }

    pub fn get(&self, rt: ResourceType, ns: &str, name: &str) -> Result<&Obj, ApiError> {
        self.objects
            .get(&rt)
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(&rt, name))
    }

    /// A name for `generateName`, as the API server makes it: five characters from its
    /// alphabet without vowels, tried again on a collision (up to 8 tries, the RetryGenerateName
    /// behaviour, GA since 1.32). Only after the last try does a collision reach the caller as 409.
    fn generate_name(&self, rt: ResourceType, ns: &str, prefix: &str) -> String {
        let mut rng = rand::rng();
        self.first_free_name(rt, ns, prefix, || {
            (0..5)
                .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
                .collect()
        })
    }

    fn first_free_name(
        &self,
        rt: ResourceType,
        ns: &str,
        prefix: &str,
        mut suffix: impl FnMut() -> String,
    ) -> String {
        let mut name = String::new();
        for _ in 0..8 {
            name = format!("{prefix}{}", suffix());
            if self.get(rt, ns, &name).is_err() {
                break;
            }
        }
        name
    }

    pub fn create(
        &mut self,
        rt: ResourceType,
        ns: &str,
        mut value: Value,
    ) -> Result<Value, ApiError> {
        if !value.is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body must be a JSON object",
            ));
        }
        if !value.get("metadata").is_some_and(Value::is_object) {
            value["metadata"] = json!({});
        }
        let name = match (meta_str(&value, "name"), meta_str(&value, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) => self.generate_name(rt, ns, prefix),
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("{}: metadata.name: Required value", rt.kind),
                ));
            }
        };
        if self.get(rt, ns, &name).is_ok() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.plural),
            ));
        }
        let meta = &mut value["metadata"];
        meta["name"] = json!(name);
        if rt.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(new_uid());
        meta["creationTimestamp"] = json!(now_rfc3339());
        Ok(self.commit(rt, ns, &name, value, "ADDED"))
    }

    /// PUT: with a resourceVersion in the body, only if it is the current one (optimistic concurrency).
    pub fn replace(
        &mut self,
        rt: ResourceType,
        ns: &str,
        name: &str,
        mut value: Value,
    ) -> Result<Value, ApiError> {
        if !value.is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body must be a JSON object",
            ));
        }
        let current = self.get(rt, ns, name)?;
        if let Some(want) = meta_str(&value, "resourceVersion").filter(|s| !s.is_empty())
            && want != current.rv.to_string()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.plural
                ),
            ));
        }
        let (uid, created) = (
            current.value["metadata"]["uid"].clone(),
            current.value["metadata"]["creationTimestamp"].clone(),
        );
        if !value.get("metadata").is_some_and(Value::is_object) {
            value["metadata"] = json!({});
        }
        let meta = &mut value["metadata"];
        meta["name"] = json!(name);
        if rt.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = uid;
        meta["creationTimestamp"] = created;
        Ok(self.commit(rt, ns, name, value, "MODIFIED"))
    }

    /// JSON merge patch (RFC 7386); strategic merge patches are treated the same way.
    pub fn patch(
        &mut self,
        rt: ResourceType,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let mut value = self.get(rt, ns, name)?.value.clone();
        if let Some(want) = patch
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            && want != value["metadata"]["resourceVersion"]
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                    rt.plural
                ),
            ));
        }
        merge(&mut value, patch);
        value["metadata"]["resourceVersion"] = Value::Null;
        self.replace(rt, ns, name, value)
    }

    pub fn delete(&mut self, rt: ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let value = self.get(rt, ns, name)?.value.clone();
        Ok(self.commit(rt, ns, name, value, "DELETED"))
    }

    /// Current objects of a resource (one namespace or all) as serialized JSON, and the list's
    /// resourceVersion.
    pub fn snapshot(&self, rt: ResourceType, ns: Option<&str>) -> (u64, Vec<Bytes>) {
        let items = self
            .objects
            .get(&rt)
            .map(|b| {
                b.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, o)| o.json.clone())
                    .collect()
            })
            .unwrap_or_default();
        (self.rv, items)
    }

    /// Frames of `rt` (in `ns`, if given) with resourceVersion > `after`, at most `max`.
    /// Err(Compacted) when history after `after` has been compacted away.
    pub fn entries_after(
        &self,
        after: u64,
        rt: ResourceType,
        ns: Option<&str>,
        max: usize,
    ) -> Result<Vec<Arc<Entry>>, Compacted> {
        if after < self.compacted {
            return Err(Compacted);
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        Ok(self
            .history
            .range(start..)
            .filter(|e| e.rt == rt && ns.is_none_or(|ns| ns == e.namespace))
            .take(max)
            .cloned()
            .collect())
    }

    /// Drops all history now: every watch from an older resourceVersion gets 410.
    pub fn compact(&mut self) {
        self.compact_to(self.rv);
    }

    /// Drops the history up to and including `rv`, as an etcd compaction at that revision does:
    /// a watch from `rv` or later is still served, one from before it gets 410.
    pub fn compact_to(&mut self, rv: u64) {
        let rv = rv.min(self.rv);
        while self.history.front().is_some_and(|e| e.rv <= rv) {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(rv);
    }

    /// Deletes events whose TTL passed (DELETED frames, as etcd lease expiry does).
    pub fn expire_events(&mut self, now: Instant) -> usize {
        let rt = crate::resources::events();
        let expired: Vec<(String, String)> = self
            .objects
            .get(&rt)
            .map(|b| {
                b.iter()
                    .filter(|(_, o)| o.expires.is_some_and(|e| e <= now))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for (ns, name) in &expired {
            let _ = self.delete(rt, ns, name);
        }
        expired.len()
    }

    pub fn count(&self, rt: ResourceType) -> usize {
        self.objects.get(&rt).map(BTreeMap::len).unwrap_or(0)
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_managed_fields_of_their_writer_as_the_api_server_writes_them() {
        let mut store = Store::new(100, None);
        let rt = crate::resources::events();
        let event = json!({
            "metadata": {"name": "e1", "labels": {"app": "a"}},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "BackOff", "count": 1, "action": null,
            "source": {"component": "kubelet", "host": "node-1"},
            "reportingComponent": "kubelet",
        });
        let created = store.create(rt, "ns", event.clone()).unwrap();
        let managed = &created["metadata"]["managedFields"];
        assert_eq!(managed.as_array().map(Vec::len), Some(1), "{managed}");
        let entry = &managed[0];
        assert_eq!(entry["manager"], "kubelet");
        assert_eq!(entry["operation"], "Update");
        assert_eq!(entry["apiVersion"], "v1");
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert!(entry["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            entry["fieldsV1"],
            json!({
                "f:count": {}, "f:involvedObject": {}, "f:reason": {},
                "f:reportingComponent": {},
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:source": {"f:component": {}, "f:host": {}},
            })
        );
        // A write by the same writer replaces its entry: still one.
        let mut bumped = created.clone();
        bumped["count"] = json!(2);
        let replaced = store.replace(rt, "ns", "e1", bumped).unwrap();
        assert_eq!(
            replaced["metadata"]["managedFields"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // What a watch sends is the stored object, managed fields and all.
        let (_, items) = store.snapshot(rt, Some("ns"));
        let listed: Value = serde_json::from_slice(&items[0]).unwrap();
        assert_eq!(
            listed["metadata"]["managedFields"],
            replaced["metadata"]["managedFields"]
        );
    }
    use crate::resources::events;

    #[test]
    fn generate_name_tries_again_on_a_collision_like_the_api_server() {
        let mut s = Store::new(100, None);
        s.create(events(), "ns", json!({"metadata":{"name":"e-bbbbb"}}))
            .unwrap();
        let mut tries = ["bbbbb", "bbbbb", "ccccc"].into_iter();
        let name = s.first_free_name(events(), "ns", "e-", || tries.next().unwrap().into());
        assert_eq!(name, "e-ccccc");
        // After eight collisions the name is kept and the create answers 409.
        let mut calls = 0;
        let name = s.first_free_name(events(), "ns", "e-", || {
            calls += 1;
            "bbbbb".into()
        });
        assert_eq!((name.as_str(), calls), ("e-bbbbb", 8));
        let generated = s
            .create(events(), "ns", json!({"metadata":{"generateName":"e-"}}))
            .unwrap();
        let suffix = generated["metadata"]["name"].as_str().unwrap();
        let suffix = suffix.strip_prefix("e-").unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|b| NAME_ALPHABET.contains(&b)));
    }

    #[test]
    fn history_is_bounded_and_compaction_is_tracked() {
        let mut s = Store::new(3, None);
        for i in 0..5 {
            s.create(events(), "ns", json!({"metadata":{"name":format!("e{i}")}}))
                .unwrap();
        }
        assert_eq!(s.rv, 105);
        assert_eq!(s.compacted, 102);
        assert!(s.entries_after(101, events(), None, 10).is_err());
        assert_eq!(s.entries_after(102, events(), None, 10).unwrap().len(), 3);
    }

    #[test]
    fn compaction_at_a_revision_keeps_what_follows_it() {
        let mut s = Store::new(100, None);
        for i in 0..5 {
            s.create(events(), "ns", json!({"metadata":{"name":format!("e{i}")}}))
                .unwrap();
        }
        s.compact_to(103);
        assert_eq!(s.compacted, 103);
        assert!(s.entries_after(102, events(), None, 10).is_err());
        let kept = s.entries_after(103, events(), None, 10).unwrap();
        assert_eq!(kept.iter().map(|e| e.rv).collect::<Vec<_>>(), [104, 105]);
        // An older compaction revision never brings history back.
        s.compact_to(101);
        assert_eq!(s.compacted, 103);
    }

    #[test]
    fn replace_with_stale_resource_version_conflicts() {
        let mut s = Store::new(10, None);
        let rt = crate::resources::find("coordination.k8s.io", "v1", "leases").unwrap();
        let l = s
            .create(rt, "default", json!({"metadata":{"name":"x"},"spec":{}}))
            .unwrap();
        s.replace(rt, "default", "x", l.clone()).unwrap();
        assert_eq!(s.replace(rt, "default", "x", l).unwrap_err().code, 409);
    }

    #[test]
    fn merge_patch() {
        let mut v = json!({"a":1,"b":{"c":2,"d":3}});
        merge(&mut v, &json!({"b":{"c":null,"e":4},"f":5}));
        assert_eq!(v, json!({"a":1,"b":{"d":3,"e":4},"f":5}));
    }
}
