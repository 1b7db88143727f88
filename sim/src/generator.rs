//! Realistic event streams: new events about pods, nodes, deployments… across namespaces, and
//! repeats that bump `count` and `lastTimestamp` of a recent event (a MODIFIED frame), as the
//! kubelet's event recorder does. Every occurrence generated is recorded as `{uid}:{count}`, the
//! key the exporter must export exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::SimHandle;

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Occurrences per second; 0 = as fast as possible.
    pub rate_per_sec: f64,
    /// Stop after this many occurrences (None: until stopped).
    pub total: Option<u64>,
    /// Share of occurrences that repeat a recent event (count + 1).
    pub repeat_ratio: f64,
    pub namespaces: usize,
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            rate_per_sec: 200.0,
            total: None,
            repeat_ratio: 0.3,
            namespaces: 8,
            seed: 1,
        }
    }
}

struct Template {
    api_version: &'static str,
    kind: &'static str,
    reason: &'static str,
    type_: &'static str,
    message: &'static str,
    component: &'static str,
}

const fn t(
    api_version: &'static str,
    kind: &'static str,
    reason: &'static str,
    type_: &'static str,
    message: &'static str,
    component: &'static str,
) -> Template {
    Template {
        api_version,
        kind,
        reason,
        type_,
        message,
        component,
    }
}

const TEMPLATES: &[Template] = &[
    t(
        "v1",
        "Pod",
        "Scheduled",
        "Normal",
        "Successfully assigned {ns}/{name} to node-{n}",
        "default-scheduler",
    ),
    t(
        "v1",
        "Pod",
        "Pulling",
        "Normal",
        "Pulling image \"registry.example/app:1.{n}\"",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "Pulled",
        "Normal",
        "Successfully pulled image \"registry.example/app:1.{n}\" in 1.2s",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "Created",
        "Normal",
        "Created container app",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "Started",
        "Normal",
        "Started container app",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "BackOff",
        "Warning",
        "Back-off restarting failed container app in pod {name}",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "Unhealthy",
        "Warning",
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "kubelet",
    ),
    t(
        "v1",
        "Pod",
        "FailedScheduling",
        "Warning",
        "0/{n} nodes are available: insufficient memory.",
        "default-scheduler",
    ),
    t(
        "v1",
        "Pod",
        "Killing",
        "Normal",
        "Stopping container app",
        "kubelet",
    ),
    t(
        "v1",
        "Node",
        "OOMKilling",
        "Warning",
        "Out of memory: Killed process {n} (app)",
        "kernel-monitor",
    ),
    t(
        "v1",
        "Node",
        "NodeNotReady",
        "Normal",
        "Node node-{n} status is now: NodeNotReady",
        "node-controller",
    ),
    t(
        "apps/v1",
        "Deployment",
        "ScalingReplicaSet",
        "Normal",
        "Scaled up replica set {name}-7d9f to {n}",
        "deployment-controller",
    ),
    t(
        "apps/v1",
        "ReplicaSet",
        "SuccessfulCreate",
        "Normal",
        "Created pod: {name}-x{n}",
        "replicaset-controller",
    ),
    t(
        "batch/v1",
        "Job",
        "Completed",
        "Normal",
        "Job completed",
        "job-controller",
    ),
    t(
        "apps/v1",
        "StatefulSet",
        "FailedCreate",
        "Warning",
        "create Pod {name}-0 in StatefulSet {name} failed",
        "statefulset-controller",
    ),
];

/// A running (or finished) generator. Cheap to clone.
#[derive(Clone)]
pub struct Generator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Mutex<Vec<String>>,
    stop: CancellationToken,
    done: CancellationToken,
}

impl Generator {
    pub fn start(sim: SimHandle, cfg: GeneratorConfig) -> Self {
        let g = Generator {
            inner: Arc::new(Inner {
                keys: Mutex::new(Vec::new()),
                stop: CancellationToken::new(),
                done: CancellationToken::new(),
            }),
        };
        let inner = g.inner.clone();
        tokio::spawn(async move {
            run(&sim, &cfg, &inner).await;
            inner.done.cancel();
        });
        g
    }

    /// Every occurrence key generated so far, in order.
    pub fn generated(&self) -> Vec<String> {
        self.inner.keys.lock().expect("keys lock").clone()
    }

    pub fn count(&self) -> usize {
        self.inner.keys.lock().expect("keys lock").len()
    }

    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    pub fn is_done(&self) -> bool {
        self.inner.done.is_cancelled()
    }

    /// Until `total` is reached or the generator is stopped.
    pub async fn wait(&self) {
        self.inner.done.cancelled().await;
    }

    /// Creates `n` events whose last occurrence was `age` ago (what a cluster holds before the
    /// exporter starts); returns their keys.
    pub fn seed_old_events(sim: &SimHandle, n: usize, age: Duration, seed: u64) -> Vec<String> {
        let mut state = State::new(seed, 4);
        let at = jiff::Timestamp::now() - jiff::SignedDuration::try_from(age).unwrap_or_default();
        (0..n).filter_map(|_| state.create(sim, at)).collect()
    }
}

struct State {
    rng: StdRng,
    namespaces: usize,
    objects: HashMap<(String, String, String), String>,
    recent: VecDeque<(String, String)>,
    serial: u64,
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl State {
    fn new(seed: u64, namespaces: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            namespaces: namespaces.max(1),
            objects: HashMap::new(),
            recent: VecDeque::new(),
            serial: 0,
        }
    }

    /// A new event about a (possibly new) object. Returns its key.
    fn create(&mut self, sim: &SimHandle, at: jiff::Timestamp) -> Option<String> {
        let tpl = &TEMPLATES[self.rng.random_range(0..TEMPLATES.len())];
        let ns = format!("team-{}", self.rng.random_range(0..self.namespaces));
        let name = match tpl.kind {
            "Node" => format!("node-{}", self.rng.random_range(0..5)),
            "Pod" => format!(
                "web-{}-{:05x}",
                self.rng.random_range(0..20),
                self.rng.random_range(0..0xfffff)
            ),
            _ => format!("app-{}", self.rng.random_range(0..10)),
        };
        let cluster_scoped = tpl.kind == "Node";
        let obj_ns = if cluster_scoped {
            String::new()
        } else {
            ns.clone()
        };
        let event_ns = if cluster_scoped {
            "default".to_string()
        } else {
            ns
        };
        let uid = self.ensure_object(sim, tpl, &obj_ns, &name);
        self.serial += 1;
        let n = self.rng.random_range(1..100);
        let message = tpl
            .message
            .replace("{ns}", &event_ns)
            .replace("{name}", &name)
            .replace("{n}", &n.to_string());
        let ts = rfc3339(at);
        let mut involved =
            json!({"kind": tpl.kind, "name": name, "apiVersion": tpl.api_version, "uid": uid});
        if !cluster_scoped {
            involved["namespace"] = json!(obj_ns);
        }
        let event = json!({
            // Random, not the serial: several generators (or seedings) share one namespace space.
            "metadata": {"name": format!("{name}.{:016x}", self.rng.random::<u64>()), "namespace": event_ns},
            "involvedObject": involved,
            "reason": tpl.reason, "message": message, "type": tpl.type_,
            "source": {"component": tpl.component, "host": format!("node-{}", n % 5)},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "reportingComponent": tpl.component, "reportingInstance": format!("node-{}", n % 5),
        });
        let created = sim.create_event(&event_ns, event).ok()?;
        let key = format!("{}:1", created.pointer("/metadata/uid")?.as_str()?);
        self.recent.push_back((
            event_ns,
            created.pointer("/metadata/name")?.as_str()?.to_string(),
        ));
        if self.recent.len() > 512 {
            self.recent.pop_front();
        }
        Some(key)
    }

    fn ensure_object(&mut self, sim: &SimHandle, tpl: &Template, ns: &str, name: &str) -> String {
        let id = (tpl.kind.to_string(), ns.to_string(), name.to_string());
        if let Some(uid) = self.objects.get(&id) {
            return uid.clone();
        }
        let mut metadata = json!({"name": name, "labels": {"app": name.split('-').next().unwrap_or(name), "team": ns}});
        if !ns.is_empty() {
            metadata["namespace"] = json!(ns);
        }
        let obj = json!({"apiVersion": tpl.api_version, "kind": tpl.kind, "metadata": metadata});
        let uid = sim
            .put_object(obj)
            .ok()
            .and_then(|o| {
                o.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        self.objects.insert(id, uid.clone());
        uid
    }

    /// A repeat of a recent event: count + 1 (MODIFIED). None if there is none left to repeat.
    fn repeat(&mut self, sim: &SimHandle) -> Option<String> {
        while !self.recent.is_empty() {
            let i = self.rng.random_range(0..self.recent.len());
            let (ns, name) = self.recent[i].clone();
            let Ok(mut ev) = sim.get_event(&ns, &name) else {
                self.recent.remove(i);
                continue;
            };
            let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1) + 1;
            ev["count"] = json!(count);
            ev["lastTimestamp"] = json!(rfc3339(jiff::Timestamp::now()));
            let updated = sim.update_event(&ns, ev).ok()?;
            return Some(format!(
                "{}:{count}",
                updated.pointer("/metadata/uid")?.as_str()?
            ));
        }
        None
    }

    fn next(&mut self, sim: &SimHandle, repeat_ratio: f64) -> Option<String> {
        if !self.recent.is_empty()
            && self.rng.random_bool(repeat_ratio.clamp(0.0, 1.0))
            && let Some(k) = self.repeat(sim)
        {
            return Some(k);
        }
        self.create(sim, jiff::Timestamp::now())
    }
}

async fn run(sim: &SimHandle, cfg: &GeneratorConfig, inner: &Inner) {
    let mut state = State::new(cfg.seed, cfg.namespaces);
    let start = Instant::now();
    let mut produced: u64 = 0;
    let total = cfg.total.unwrap_or(u64::MAX);
    while produced < total && !inner.stop.is_cancelled() {
        // Produce what is due by now (rate) or a chunk (as fast as possible), then yield: pacing
        // by elapsed time keeps the average rate exact without a timer per event.
        let due = if cfg.rate_per_sec > 0.0 {
            ((start.elapsed().as_secs_f64() * cfg.rate_per_sec) as u64).min(total)
        } else {
            (produced + 256).min(total)
        };
        let mut batch = Vec::new();
        while produced < due {
            if let Some(k) = state.next(sim, cfg.repeat_ratio) {
                batch.push(k);
            }
            produced += 1;
        }
        inner.keys.lock().expect("keys lock").extend(batch);
        if cfg.rate_per_sec > 0.0 {
            let next = start + Duration::from_secs_f64((produced + 1) as f64 / cfg.rate_per_sec);
            tokio::select! {
                _ = inner.stop.cancelled() => break,
                _ = tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(2))) => {}
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}
