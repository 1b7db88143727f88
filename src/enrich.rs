//! Enrichment: the involved object's labels, annotations and owners, looked up through the API.
//!
//! - API discovery is cached per group/version and refreshed on a miss of an unknown kind, at most
//!   once per `DISCOVERY_REFRESH` (the Go exporter runs full discovery on every cache miss).
//! - Objects are cached in a bounded LRU keyed by uid + resourceVersion (a new object version is a
//!   new key); NotFound is cached too, as `deleted: true`.
//! - GETs are rate-limited by `kubeQPS`/`kubeBurst`. Failures never hold an event back: it is
//!   exported without metadata and the failure is counted.
//! - Secrets are never looked up: `get` on secrets in a ClusterRole reads every Secret's data in
//!   the cluster, far too much for an event's labels. Events about Secrets go out without them.
//!
//! The pipeline runs several lookups at once (bounded) while preserving order; see `exporter`.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DynamicObject};
use lru::LruCache;

use crate::event::Event;
use crate::telemetry::Metrics;

const DISCOVERY_REFRESH: Duration = Duration::from_secs(30);
/// How long lookups of a resource that RBAC refused are skipped before trying again (the
/// ClusterRole may have been widened meanwhile). Without it every event about, say, a custom
/// resource would spend a rate-limited GET on a certain 403.
const FORBIDDEN_RETRY: Duration = Duration::from_secs(300);

/// What enrichment adds to `involvedObject`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectInfo {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerReference>,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
struct Resource {
    api: ApiResource,
    namespaced: bool,
}

struct DiscoveredVersion {
    fetched: Instant,
    kinds: HashMap<String, Resource>,
}

/// One lookup in flight, shared by every event about the same object meanwhile.
type Lookup = tokio::sync::OnceCell<Option<Arc<ObjectInfo>>>;

pub struct Enricher {
    client: kube::Client,
    metrics: Metrics,
    discovery: tokio::sync::Mutex<HashMap<String, DiscoveredVersion>>,
    cache: Mutex<LruCache<String, Arc<ObjectInfo>>>,
    inflight: Mutex<HashMap<String, Arc<Lookup>>>,
    /// `group/plural` → when its GET was last refused with 403.
    forbidden: Mutex<HashMap<String, Instant>>,
    limiter: RateLimiter,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    // The cause is the source, which `telemetry::error_chain` shows readably (an API error by
    // its code and message).
    #[error("discovery of {api_version}")]
    Discovery {
        api_version: String,
        source: kube::Error,
    },
    #[error("get {kind} {namespace}/{name}")]
    Get {
        kind: String,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "get {resource} is forbidden by RBAC (skipped for {}s after a 403)",
        FORBIDDEN_RETRY.as_secs()
    )]
    Forbidden { resource: String },
}

impl Enricher {
    pub fn new(
        client: kube::Client,
        cache_size: usize,
        qps: f32,
        burst: u32,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            metrics,
            discovery: tokio::sync::Mutex::new(HashMap::new()),
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(cache_size.max(1)).expect("non-zero"),
            )),
            inflight: Mutex::new(HashMap::new()),
            forbidden: Mutex::new(HashMap::new()),
            limiter: RateLimiter::new(qps, burst),
        }
    }

    /// Adds the involved object's metadata to the event. Never fails: on error the event goes on
    /// without metadata (counted in `enrich_errors`, logged at debug since it can be frequent).
    pub async fn enrich(&self, mut event: Event) -> Event {
        match self.lookup(&event).await {
            Ok(Some(info)) => {
                let io = &mut event.involved_object;
                io.labels = info.labels.clone();
                io.annotations = info.annotations.clone();
                io.owner_references = info.owner_references.clone();
                io.deleted = info.deleted;
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.enrich_errors.inc();
                tracing::debug!(error = %crate::telemetry::error_chain(&e), event = %event.occurrence_key(), "involved object lookup failed; exporting without its metadata");
            }
        }
        event
    }

    async fn lookup(&self, event: &Event) -> Result<Option<Arc<ObjectInfo>>, EnrichError> {
        let io = &event.involved_object;
        let (Some(kind), Some(name)) = (io.kind.as_deref(), io.name.as_deref()) else {
            return Ok(None);
        };
        if is_secret(io.api_version.as_deref(), kind) {
            return Ok(None);
        }
        let namespace = io.namespace.as_deref().unwrap_or("");
        let key = match io.uid.as_deref() {
            Some(uid) if !uid.is_empty() => {
                format!("{uid}/{}", io.resource_version.as_deref().unwrap_or(""))
            }
            _ => format!("{kind}/{namespace}/{name}"),
        };
        if let Some(hit) = self
            .cache
            .lock()
            .expect("enrich cache lock")
            .get(&key)
            .cloned()
        {
            self.metrics.enrich_cache_hits.inc();
            return Ok(Some(hit));
        }
        // Lookups of one object already in flight are joined, not repeated: a burst of events
        // about one object (a crash-looping pod) costs one GET.
        let cell = {
            let mut inflight = self.inflight.lock().expect("enrich inflight lock");
            inflight.entry(key.clone()).or_default().clone()
        };
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let result = cell
            .get_or_try_init(|| async {
                fetched.store(true, std::sync::atomic::Ordering::Relaxed);
                self.fetch(io, kind, name, namespace).await
            })
            .await
            .cloned();
        if fetched.load(std::sync::atomic::Ordering::Relaxed) {
            let mut inflight = self.inflight.lock().expect("enrich inflight lock");
            if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&key);
            }
            if let Ok(Some(info)) = &result {
                self.cache
                    .lock()
                    .expect("enrich cache lock")
                    .put(key, info.clone());
            }
        } else if result.is_ok() {
            self.metrics.enrich_cache_hits.inc();
        }
        result
    }

    /// One GET of the involved object (after discovery); NotFound is `deleted: true`.
    async fn fetch(
        &self,
        io: &crate::event::InvolvedObject,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<Option<Arc<ObjectInfo>>, EnrichError> {
        let api_version = io
            .api_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .unwrap_or("v1");
        let Some(resource) = self.resolve(api_version, kind).await? else {
            return Ok(None);
        };
        let rbac_key = format!("{}/{}", resource.api.group, resource.api.plural);
        let refused_at = self
            .forbidden
            .lock()
            .expect("enrich forbidden lock")
            .get(&rbac_key)
            .copied();
        if refused_at.is_some_and(|at| at.elapsed() < FORBIDDEN_RETRY) {
            return Err(EnrichError::Forbidden { resource: rbac_key });
        }
        self.metrics.enrich_cache_misses.inc();
        self.limiter.acquire().await;
        let api: Api<DynamicObject> = if resource.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &resource.api)
        } else {
            Api::all_with(self.client.clone(), &resource.api)
        };
        let info = match api.get_opt(name).await {
            Ok(Some(obj)) => {
                let meta = obj.metadata;
                ObjectInfo {
                    labels: meta.labels.unwrap_or_default(),
                    annotations: meta.annotations.unwrap_or_default(),
                    owner_references: meta.owner_references.unwrap_or_default(),
                    deleted: meta.deletion_timestamp.is_some(),
                }
            }
            Ok(None) => ObjectInfo {
                deleted: true,
                ..ObjectInfo::default()
            },
            Err(kube::Error::Api(status)) if status.code == 403 => {
                // Lookups already in flight get the same 403; warn once per FORBIDDEN_RETRY.
                let previous = self
                    .forbidden
                    .lock()
                    .expect("enrich forbidden lock")
                    .insert(rbac_key.clone(), Instant::now());
                if previous.is_none_or(|at| at.elapsed() >= FORBIDDEN_RETRY) {
                    tracing::warn!(
                        group = %resource.api.group,
                        resource = %resource.api.plural,
                        status_message = %status.message,
                        "involved-object lookups are forbidden; exporting these events without labels, annotations and owners. Grant get on this resource in the exporter's ClusterRole (see deploy/base/rbac.yaml)"
                    );
                }
                return Err(EnrichError::Forbidden { resource: rbac_key });
            }
            Err(source) => {
                return Err(EnrichError::Get {
                    kind: kind.to_string(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    source,
                });
            }
        };
        Ok(Some(Arc::new(info)))
    }

    /// Maps apiVersion + kind to a resource through cached discovery.
    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Resource>, EnrichError> {
        let mut discovery = self.discovery.lock().await;
        if let Some(v) = discovery.get(api_version) {
            if let Some(r) = v.kinds.get(kind) {
                return Ok(Some(r.clone()));
            }
            if v.fetched.elapsed() < DISCOVERY_REFRESH {
                return Ok(None);
            }
        }
        self.limiter.acquire().await;
        let list = if api_version.contains('/') {
            self.client.list_api_group_resources(api_version).await
        } else {
            self.client.list_core_api_resources(api_version).await
        };
        let list = match list {
            Ok(l) => l,
            // An unknown group/version: remember that it has nothing, until the next refresh.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                discovery.insert(
                    api_version.to_string(),
                    DiscoveredVersion {
                        fetched: Instant::now(),
                        kinds: HashMap::new(),
                    },
                );
                return Ok(None);
            }
            Err(source) => {
                return Err(EnrichError::Discovery {
                    api_version: api_version.to_string(),
                    source,
                });
            }
        };
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        let kinds = list
            .resources
            .into_iter()
            .filter(|r| !r.name.contains('/'))
            .map(|r| {
                let api = ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    api_version: api_version.to_string(),
                    kind: r.kind.clone(),
                    plural: r.name,
                };
                (
                    r.kind,
                    Resource {
                        api,
                        namespaced: r.namespaced,
                    },
                )
            })
            .collect::<HashMap<_, _>>();
        let found = kinds.get(kind).cloned();
        discovery.insert(
            api_version.to_string(),
            DiscoveredVersion {
                fetched: Instant::now(),
                kinds,
            },
        );
        Ok(found)
    }
}

/// A core/v1 Secret (an empty apiVersion is core/v1, as in `fetch`).
fn is_secret(api_version: Option<&str>, kind: &str) -> bool {
    kind == "Secret" && matches!(api_version, None | Some("" | "v1"))
}

/// Token bucket: `qps` tokens a second, at most `burst` saved. Waiters queue on the mutex, so the
/// order is fair.
struct RateLimiter {
    qps: f64,
    burst: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(qps: f32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: f64::from(qps).max(0.001),
            burst,
            state: tokio::sync::Mutex::new((burst, Instant::now())),
        }
    }

    async fn acquire(&self) {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        st.0 = (st.0 + now.duration_since(st.1).as_secs_f64() * self.qps).min(self.burst);
        st.1 = now;
        if st.0 < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - st.0) / self.qps);
            tokio::time::sleep(wait).await;
            st.0 = 1.0;
            st.1 = Instant::now();
        }
        st.0 -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_core_secrets_are_secrets() {
        assert!(is_secret(Some("v1"), "Secret"));
        assert!(is_secret(None, "Secret"));
        assert!(is_secret(Some(""), "Secret"));
        assert!(!is_secret(Some("external-secrets.io/v1"), "Secret"));
        assert!(!is_secret(Some("v1"), "ConfigMap"));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_burst_then_qps() {
        let l = RateLimiter::new(10.0, 3);
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            l.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "burst is immediate"
        );
        l.acquire().await;
        l.acquire().await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(190),
            "two more tokens at 10/s take ~200ms, took {waited:?}"
        );
    }
}
