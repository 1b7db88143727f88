//! Multi-process harness: exporter replicas as child processes of the test, kube-sim in-process,
//! a Lease monitor, and the union of every replica's file receiver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_sim::exporter_process::ExporterProcess;
use tokio::process::{Child, Command};

pub const LEASE: &str = "kube-event-exporter";

const EXE: &str = env!("CARGO_BIN_EXE_kube-event-exporter");

/// Lease timing of the tests: short, so scenarios finish in seconds; same ratios as production.
#[derive(Debug, Clone)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
    pub linger: Option<Duration>,
    pub drain: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry: Duration::from_millis(500),
            linger: None,
            drain: Duration::from_secs(5),
        }
    }
}

pub struct Replica {
    pub name: String,
    pub child: Child,
    pub output: PathBuf,
    pub log: PathBuf,
}

impl Replica {
    /// An exporter process with the config `config_text` (written into `dir`), its stderr in
    /// `dir/{name}.log`, stdout discarded.
    pub fn spawn(name: &str, dir: &Path, config_text: &str, kubeconfig: &Path) -> Replica {
        Self::start(
            ExporterProcess::new(EXE, dir, name, kubeconfig),
            config_text,
            dir,
        )
    }

    fn start(process: ExporterProcess, config_text: &str, dir: &Path) -> Replica {
        let child = Command::from(process.command(config_text).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let name = process.name().to_string();
        Replica {
            output: dir.join(format!("{name}.ndjson")),
            log: process.log(),
            name,
            child,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
        }
    }

    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:P`, once the replica logged where it serves.
    pub async fn http_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = super::logs::metrics_address(&self.log_text()) {
                return format!("http://{addr}");
            }
            assert!(
                Instant::now() < deadline,
                "{} never logged its metrics address",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The status `/readyz` answers now.
    pub async fn readyz(&self) -> u16 {
        let url = format!("{}/readyz", self.http_url().await);
        match reqwest::get(&url).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` answers 200, as a Deployment's rollout does before it goes on.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.readyz().await;
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {limit:?} (/readyz {status})",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One sample of a metric on the replica's `/metrics` (summed over labels).
    pub async fn metric(&self, name: &str) -> f64 {
        super::sum_samples(&self.metrics_text().await, name)
    }

    /// The replica's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let url = format!("{}/metrics", self.http_url().await);
        reqwest::get(&url)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body")
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub leases: Api<Lease>,
    pub timing: Timing,
    /// Extra receiver YAML (list items, indented by 2) and the receiver names routed to.
    pub extra_receivers: String,
    pub extra_routes: Vec<String>,
    pub outputs: Vec<PathBuf>,
    /// `leaderElection.shards` (0 or 1: unsharded).
    pub shards: u32,
}

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Cluster {
    pub fn new(sim: &kube_sim::SimHandle, timing: Timing) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        let leases = Api::namespaced(super::client(sim), "default");
        Self {
            dir,
            kubeconfig,
            leases,
            timing,
            extra_receivers: String::new(),
            extra_routes: Vec::new(),
            outputs: Vec::new(),
            shards: 0,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn start(&mut self, name: &str) -> Replica {
        let t = &self.timing;
        let dir = self.dir.path();
        let output = dir.join(format!("{name}.ndjson"));
        let mut linger = t
            .linger
            .map(|l| format!("\n  shutdownLinger: {}", secs(l)))
            .unwrap_or_default();
        if self.shards > 1 {
            linger.push_str(&format!("\n  shards: {}", self.shards));
        }
        let extra_routes: String = self
            .extra_routes
            .iter()
            .map(|r| format!("\n        - receiver: {r}"))
            .collect();
        // The identity is the pod name (POD_NAME), as in the Deployment.
        let config = format!(
            "logFormat: json\nkubeQPS: 1000\nkubeBurst: 1000\nmaxEventAgeSeconds: 3600\nleaderElection:\n  leaseNamespace: default\n  leaseDuration: {}\n  renewDeadline: {}\n  retryPeriod: {}\n  drainTimeout: {}{linger}\nroute:\n  routes:\n    - match:\n        - receiver: archive{extra_routes}\nreceivers:\n  - name: archive\n    file:\n      path: {}\n{}",
            secs(t.lease),
            secs(t.renew_deadline),
            secs(t.retry),
            secs(t.drain),
            output.display(),
            self.extra_receivers
        );
        let process =
            ExporterProcess::new(EXE, dir, name, &self.kubeconfig).rust_log("info,kube_client=off");
        let replica = Replica::start(process, &config, dir);
        self.outputs.push(replica.output.clone());
        replica
    }

    pub async fn holder(&self) -> String {
        holder(&self.leases).await
    }

    /// How long ago the holder last renewed the Lease, and so committed its cursor (the cursor
    /// is written with every renewal), but at least `floor`. Read right after a SIGKILL it is
    /// the span whose deliveries the successor replays: one retry period on a quiet machine,
    /// more when the dead leader's last renewals were late on a loaded one.
    pub async fn since_commit(&self, floor: Duration) -> Duration {
        let renewed = self
            .leases
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.renew_time)
            .map(|t| t.0);
        let age = renewed.map_or(Duration::ZERO, |t| {
            Duration::try_from(jiff::Timestamp::now().duration_since(t)).unwrap_or_default()
        });
        age.max(floor)
    }

    pub async fn wait_holder(&self, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let h = self.holder().await;
            if want(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "lease holder still {h:?} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every occurrence key in every replica's file receiver.
    pub fn exported(&self) -> Vec<String> {
        self.outputs
            .iter()
            .flat_map(|p| super::keys_in_file(p))
            .collect()
    }

    pub async fn wait_exported(&self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let have: std::collections::BTreeSet<String> = self.exported().into_iter().collect();
            if want.iter().all(|k| have.contains(k)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn holder(leases: &Api<Lease>) -> String {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

/// Holder changes observed every 10 ms.
#[derive(Clone, Default)]
pub struct Monitor {
    pub changes: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Monitor {
    pub fn start(leases: Api<Lease>) -> Self {
        let m = Monitor::default();
        let changes = m.changes.clone();
        tokio::spawn(async move {
            loop {
                let h = holder(&leases).await;
                {
                    let mut c = changes.lock().unwrap();
                    if c.last().is_none_or(|(_, last)| *last != h) {
                        c.push((Instant::now(), h));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        m
    }

    /// When the holder first became `who` after `after` (None if not seen within a second: the
    /// caller may have seen the change before this 10 ms poll did).
    pub async fn became(&self, who: &str, after: Instant) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let found = self
                .changes
                .lock()
                .unwrap()
                .iter()
                .find(|(t, h)| *t >= after && h == who)
                .map(|(t, _)| *t);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When the holder was last seen empty (released) between `after` and `until`.
    pub fn released_between(&self, after: Instant, until: Instant) -> Option<Instant> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .find(|(t, h)| *t >= after && *t <= until && h.is_empty())
            .map(|(t, _)| *t)
    }
}
