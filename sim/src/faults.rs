//! Fault injection and request accounting, shared by the HTTP layer and the admin controls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<FaultState>,
    /// While true, Lease writes wait before they are applied (a slow etcd under one write).
    stall_lease_writes: tokio::sync::watch::Sender<bool>,
    /// Lease writes that have waited so far.
    stalled_lease_writes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct FaultState {
    fail_remaining: u64,
    fail_status: u16,
    latency: Duration,
    stale_empty_200: bool,
    watch_frame_limit: Option<u64>,
    partitioned: Option<String>,
    counts: BTreeMap<(String, String), u64>,
    accesses: BTreeSet<Access>,
    forbidden: BTreeSet<(String, String)>,
}

/// One kind of request the API server served, in the terms RBAC authorises: what an audit log
/// would show and what a Role or ClusterRole must allow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Resource {
        verb: String,
        group: String,
        resource: String,
        /// None for cluster-scoped resources and for requests across all namespaces.
        namespace: Option<String>,
    },
    /// `/api`, `/apis/...`, `/version`: discovery, allowed to every authenticated user by the
    /// default `system:discovery` ClusterRole.
    NonResource { path: String },
}

impl Faults {
    pub fn fail_next(&self, n: u64, status: u16) {
        let mut s = self.inner.lock().expect("faults lock");
        s.fail_remaining = n;
        s.fail_status = status;
    }

    /// The status to fail this request with, if a failure is pending (consumes one).
    pub fn take_failure(&self) -> Option<u16> {
        let mut s = self.inner.lock().expect("faults lock");
        if s.fail_remaining == 0 {
            return None;
        }
        s.fail_remaining -= 1;
        Some(s.fail_status)
    }

    pub fn set_stall_lease_writes(&self, on: bool) {
        self.stall_lease_writes.send_replace(on);
    }

    pub fn stalled_lease_writes(&self) -> u64 {
        self.stalled_lease_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits while Lease writes are stalled (counting the write once if it waits).
    pub async fn lease_write_gate(&self) {
        let mut stalled = self.stall_lease_writes.subscribe();
        if *stalled.borrow_and_update() {
            self.stalled_lease_writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stalled.wait_for(|on| !on).await;
        }
    }

    pub fn set_latency(&self, d: Duration) {
        self.inner.lock().expect("faults lock").latency = d;
    }

    pub fn latency(&self) -> Duration {
        self.inner.lock().expect("faults lock").latency
    }

    /// Every watch opened from now on ends after this many frames (a connection that breaks).
    pub fn set_watch_frame_limit(&self, limit: Option<u64>) {
        self.inner.lock().expect("faults lock").watch_frame_limit = limit;
    }

    pub fn watch_frame_limit(&self) -> Option<u64> {
        self.inner.lock().expect("faults lock").watch_frame_limit
    }

    pub fn set_stale_empty_200(&self, on: bool) {
        self.inner.lock().expect("faults lock").stale_empty_200 = on;
    }

    pub fn stale_empty_200(&self) -> bool {
        self.inner.lock().expect("faults lock").stale_empty_200
    }

    pub fn set_partitioned(&self, identity: Option<String>) {
        self.inner.lock().expect("faults lock").partitioned = identity;
    }

    pub fn partitioned(&self) -> Option<String> {
        self.inner.lock().expect("faults lock").partitioned.clone()
    }

    pub fn count(&self, verb: &str, resource: &str) {
        *self
            .inner
            .lock()
            .expect("faults lock")
            .counts
            .entry((verb.to_string(), resource.to_string()))
            .or_default() += 1;
    }

    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.inner.lock().expect("faults lock").counts.clone()
    }

    pub fn record(&self, access: Access) {
        self.inner
            .lock()
            .expect("faults lock")
            .accesses
            .insert(access);
    }

    pub fn accesses(&self) -> BTreeSet<Access> {
        self.inner.lock().expect("faults lock").accesses.clone()
    }

    /// Every request on `group`/`resource` is refused with 403, as RBAC would without a rule.
    pub fn forbid(&self, group: &str, resource: &str) {
        self.inner
            .lock()
            .expect("faults lock")
            .forbidden
            .insert((group.to_string(), resource.to_string()));
    }

    pub fn allow(&self, group: &str, resource: &str) {
        self.inner
            .lock()
            .expect("faults lock")
            .forbidden
            .remove(&(group.to_string(), resource.to_string()));
    }

    pub fn is_forbidden(&self, group: &str, resource: &str) -> bool {
        self.inner
            .lock()
            .expect("faults lock")
            .forbidden
            .contains(&(group.to_string(), resource.to_string()))
    }
}
