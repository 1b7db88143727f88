//! kube-sim: an in-memory Kubernetes API server over real HTTP, for the exporter's tests, demo and
//! benchmark. The real `kube::Client` talks to it as to an API server for everything the exporter
//! uses: discovery, events (paginated list, watch from a resourceVersion, 410 after compaction),
//! generic objects for enrichment, and Leases with optimistic concurrency. Faults are injected
//! through [`SimHandle`] or the `/admin/…` endpoints. See docs/architecture.md, "kube-sim, the
//! test API server".
//!
//! This crate is what the demo links (the API server, its generator, and [`exporter_process`]);
//! the fake destinations are the `fake-destinations` crate, the benchmark and the soak `kee-bench`.

mod admin;
mod api;
pub mod exporter_process;
mod faults;
pub mod generator;
pub mod resources;
pub mod shard_selector;
pub mod store;
pub mod tls;
mod watch;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, atomic::AtomicU64};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use faults::Access;
pub use generator::{Generator, GeneratorConfig};
use store::{ApiError, Store};
pub use tls::TlsMode;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// 0: an ephemeral port.
    pub port: u16,
    /// Watch history entries kept; older ones are compacted away (watches from before get 410).
    pub history_limit: usize,
    /// Events are deleted this long after their last write (kube-apiserver `--event-ttl`).
    pub event_ttl: Option<Duration>,
    /// Compacts the history on a timer, as kube-apiserver does (`--etcd-compaction-interval`,
    /// 5 minutes by default): each tick compacts at the revision the previous tick saw, so
    /// between one and two intervals of history are kept, whatever the write rate. Lease
    /// renewals move the revision too, so on a quiet cluster an events watch position falls
    /// out of the history after at most two intervals. None: only `history_limit` and
    /// `compact` drop history.
    pub compaction_interval: Option<Duration>,
    /// Send BOOKMARK frames on events watches (real servers do not: events have no watch cache).
    pub event_bookmarks: bool,
    pub bookmark_interval: Duration,
    /// HTTPS with a generated CA and a bearer token (the default), or plain HTTP, or a broken
    /// certificate for error tests.
    pub tls: TlsMode,
    /// Serve KEP-5866's `shardSelector` on lists and watches (a 1.36+ server with the
    /// `ShardedListAndWatch` gate); off, the parameter is ignored, as by an older server.
    pub shard_selector: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            port: 0,
            history_limit: 100_000,
            event_ttl: Some(Duration::from_secs(3600)),
            compaction_interval: Some(Duration::from_secs(300)),
            event_bookmarks: false,
            bookmark_interval: Duration::from_secs(60),
            tls: TlsMode::default(),
            shard_selector: false,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) store: Mutex<Store>,
    /// The current resourceVersion, to wake watchers.
    pub(crate) changed: tokio::sync::watch::Sender<u64>,
    /// Bumped to close every open watch.
    pub(crate) drop_watches: tokio::sync::watch::Sender<u64>,
    pub(crate) faults: faults::Faults,
    pub(crate) lists: Mutex<VecDeque<(u64, Arc<api::ListSnapshot>)>>,
    pub(crate) next_list_id: AtomicU64,
    pub(crate) generator: Mutex<Option<Generator>>,
    pub(crate) url: String,
    /// Every API request must carry `Authorization: Bearer {token}` (None: plain HTTP, no auth).
    pub(crate) token: Option<String>,
    /// What clients must trust (None: plain HTTP).
    pub(crate) ca: Option<(String, Vec<u8>)>,
}

impl Shared {
    /// Runs a store mutation and wakes the watchers.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let (out, rv) = {
            let mut s = self.store.lock().expect("store lock");
            let out = f(&mut s);
            (out, s.rv)
        };
        self.changed.send_replace(rv);
        out
    }
}

/// A running simulator. Cheap to clone; `shutdown` stops it.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

pub struct Sim;

/// Serves `app` on `listener` (plain TCP or TLS) until `shutdown` completes.
async fn serve<L>(
    listener: L,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "kube-sim server failed");
    }
}

impl Sim {
    /// Binds 127.0.0.1 and serves until `shutdown`.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", cfg.port))?;
        let addr = listener.local_addr()?;
        let pki = match cfg.tls {
            TlsMode::Off => None,
            mode => Some(tls::Pki::generate(mode)?),
        };
        let token = pki.as_ref().map(|_| {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..32)
                .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
                .collect::<String>()
        });
        let scheme = if pki.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(cfg.history_limit, cfg.event_ttl)),
            changed: tokio::sync::watch::channel(0).0,
            drop_watches: tokio::sync::watch::channel(0).0,
            faults: faults::Faults::default(),
            lists: Mutex::new(VecDeque::new()),
            next_list_id: AtomicU64::new(1),
            generator: Mutex::new(None),
            url: format!("{scheme}://{addr}"),
            token,
            ca: pki.as_ref().map(|p| (p.ca_pem.clone(), p.ca_der.clone())),
            cfg,
        });
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(api::handle)
            .with_state(shared.clone());
        let (s, token) = (shared.clone(), stop.clone());
        let shutdown = async move {
            token.cancelled().await;
            // Open watches would hold graceful shutdown forever.
            s.drop_watches.send_modify(|g| *g += 1);
        };
        match pki {
            Some(pki) => {
                let listener = tls::TlsListener::new(listener, pki.server, stop.clone())?;
                tokio::spawn(serve(listener, app, shutdown));
            }
            None => {
                tokio::spawn(serve(listener, app, shutdown));
            }
        }
        if let Some(every) = shared.cfg.compaction_interval.filter(|d| !d.is_zero()) {
            let (s, token) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen_at_last_tick = None;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let _ = s.mutate(|st| {
                        if let Some(rv) = seen_at_last_tick {
                            st.compact_to(rv);
                        }
                        seen_at_last_tick = Some(st.rv);
                        Ok(())
                    });
                }
            });
        }
        if shared.cfg.event_ttl.is_some() {
            let (s, token) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    let _ = s.mutate(|st| Ok(st.expire_events(std::time::Instant::now())));
                }
            });
        }
        Ok(SimHandle { shared, addr, stop })
    }
}

impl SimHandle {
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(&self) {
        if let Some(g) = self
            .shared
            .generator
            .lock()
            .expect("generator lock")
            .as_ref()
        {
            g.stop();
        }
        self.stop.cancel();
    }

    /// PEM of the certificate authority clients must trust (None over plain HTTP).
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.ca.as_ref().map(|(pem, _)| pem.as_str())
    }

    /// The bearer token API requests must carry (None over plain HTTP).
    pub fn token(&self) -> Option<&str> {
        self.shared.token.as_deref()
    }

    /// A client configuration for this server: its CA trusted, its token sent.
    pub fn kube_config(&self) -> kube::Config {
        let mut cfg = kube::Config::new(self.url().parse().expect("kube-sim's own URL parses"));
        if let Some((_, der)) = &self.shared.ca {
            cfg.root_cert = Some(vec![der.clone()]);
        }
        if let Some(token) = &self.shared.token {
            cfg.auth_info.token = Some(token.clone().into());
        }
        cfg
    }

    /// A kubeconfig pointing at this server, trusting its CA and sending its token.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let text = tls::kubeconfig(&self.url(), self.ca_pem(), self.token());
        // Written whole, then renamed: a reader polling for the file never sees half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn current_resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store lock").rv
    }

    /// The latest compacted resourceVersion: a watch from an older one gets 410.
    pub fn compacted_resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store lock").compacted
    }

    /// One write that is not an event (a component's Lease renewal, as a real cluster has every
    /// few seconds): it moves the revision an events watch never sees.
    pub fn other_write(&self) {
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "kube-scheduler-0", "renewTime": jiff::Timestamp::now().to_string()},
        });
        let _ = self.put_object(lease);
    }

    fn rt(api_version: &str, kind: &str) -> Result<resources::ResourceType, ApiError> {
        resources::find_kind(api_version, kind).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("kube-sim does not serve {api_version} {kind}"),
            )
        })
    }

    /// Creates an event in `namespace` (metadata.uid, resourceVersion and creationTimestamp filled).
    pub fn create_event(&self, namespace: &str, event: Value) -> Result<Value, ApiError> {
        self.shared
            .mutate(|s| s.create(resources::events(), namespace, event))
    }

    /// Replaces an event (a new count, say): a MODIFIED watch frame.
    pub fn update_event(&self, namespace: &str, event: Value) -> Result<Value, ApiError> {
        let name = event
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut event = event;
        event["metadata"]["resourceVersion"] = Value::Null;
        self.shared
            .mutate(|s| s.replace(resources::events(), namespace, &name, event))
    }

    pub fn delete_event(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.shared
            .mutate(|s| s.delete(resources::events(), namespace, name))
    }

    pub fn get_event(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        Ok(self
            .shared
            .store
            .lock()
            .expect("store lock")
            .get(resources::events(), namespace, name)?
            .value
            .clone())
    }

    pub fn list_events(&self) -> Vec<Value> {
        let store = self.shared.store.lock().expect("store lock");
        let (_, items) = store.snapshot(resources::events(), None);
        items
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect()
    }

    pub fn event_count(&self) -> usize {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .count(resources::events())
    }

    /// Any served object as stored, read in-process: no injected fault or latency applies (for
    /// observers such as the soak's Lease monitor).
    pub fn get_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let rt = Self::rt(api_version, kind)?;
        let ns = if rt.namespaced { namespace } else { "" };
        Ok(self
            .shared
            .store
            .lock()
            .expect("store lock")
            .get(rt, ns, name)?
            .value
            .clone())
    }

    /// Changes on every write of any object (the value is the current resourceVersion), so an
    /// in-process observer sees every version of an object without polling the API.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Creates (or replaces) any served object; its `apiVersion` and `kind` pick the resource.
    pub fn put_object(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_string();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let rt = Self::rt(&api_version, &kind)?;
        let ns = if rt.namespaced {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.shared.mutate(|s| match s.get(rt, &ns, &name) {
            Ok(_) => {
                let mut o = object;
                o["metadata"]["resourceVersion"] = Value::Null;
                s.replace(rt, &ns, &name, o)
            }
            Err(_) => s.create(rt, &ns, object),
        })
    }

    pub fn delete_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let rt = Self::rt(api_version, kind)?;
        let ns = if rt.namespaced { namespace } else { "" };
        self.shared.mutate(|s| s.delete(rt, ns, name))
    }

    /// Appends a raw line to the events watch history (for malformed-frame tests).
    pub fn inject_raw_event_frame(&self, namespace: &str, line: &str) -> u64 {
        self.shared
            .mutate(|s| Ok(s.push_raw_event_frame(namespace, line)))
            .unwrap_or_default()
    }

    /// Drops all watch history now: every watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let _ = self.shared.mutate(|s| {
            s.compact();
            Ok(())
        });
    }

    /// Closes every open watch stream now.
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|g| *g += 1);
    }

    /// The next `n` API requests (not admin) fail with `status` (429 carries `Retry-After: 1`).
    /// `n = 0` clears a pending failure.
    pub fn fail_next(&self, n: u64, status: u16) {
        self.shared.faults.fail_next(n, status);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency);
    }

    /// Watches from a compacted resourceVersion answer 200 with an empty body (kubernetes#104171)
    /// instead of the ERROR 410 frame.
    /// Every watch opened from now on ends after `limit` frames, as if its connection broke
    /// (None: no limit).
    pub fn cut_watches_after(&self, limit: Option<u64>) {
        self.shared.faults.set_watch_frame_limit(limit);
    }

    pub fn set_stale_watch_empty_200(&self, on: bool) {
        self.shared.faults.set_stale_empty_200(on);
    }

    /// Lease writes from this identity fail (a partition); None heals it.
    pub fn refuse_lease_writes(&self, identity: Option<&str>) {
        self.shared
            .faults
            .set_partitioned(identity.map(str::to_string));
    }

    /// While `on`, every Lease write (create, update, patch) waits before it is applied, as under
    /// a slow etcd; turning it off lets them through.
    pub fn stall_lease_writes(&self, on: bool) {
        self.shared.faults.set_stall_lease_writes(on);
    }

    /// Lease writes that waited under `stall_lease_writes` so far.
    pub fn stalled_lease_writes(&self) -> u64 {
        self.shared.faults.stalled_lease_writes()
    }

    /// Requests served, by (verb, resource), e.g. `("watch", "events")`, `("update", "leases")`.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.shared.faults.counts()
    }

    /// Every distinct kind of request served so far (verb, group, resource, namespace), for
    /// checking RBAC rules against what a client really calls.
    pub fn accesses(&self) -> std::collections::BTreeSet<Access> {
        self.shared.faults.accesses()
    }

    /// Answers every request on `group`/`resource` with 403 Forbidden, as RBAC does without a rule.
    pub fn forbid(&self, group: &str, resource: &str) {
        self.shared.faults.forbid(group, resource);
    }

    /// Undoes `forbid` (the rule was added).
    pub fn allow(&self, group: &str, resource: &str) {
        self.shared.faults.allow(group, resource);
    }

    /// Starts a generator (stopping any previous one); its keys are read with `generated`.
    pub fn generate(&self, cfg: GeneratorConfig) -> Generator {
        let g = Generator::start(self.clone(), cfg);
        if let Some(old) = self
            .shared
            .generator
            .lock()
            .expect("generator lock")
            .replace(g.clone())
        {
            old.stop();
        }
        g
    }

    /// The generator last started from here or the admin endpoint, if any.
    pub fn generator(&self) -> Option<Generator> {
        self.shared
            .generator
            .lock()
            .expect("generator lock")
            .clone()
    }
}
