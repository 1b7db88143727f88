//! Shared harness of the integration tests: kube-sim in-process over real HTTP, an exporter run
//! in-process against it with file receivers, and occurrence-key comparison.
#![allow(dead_code)]

pub mod keys;
pub mod logs;
pub mod moto;
pub mod otlp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_event_exporter::config::{self, Config};
use kube_event_exporter::exporter::{Exporter, Handles};
use kube_event_exporter::shutdown::{self, NoLease, Outcome};
use kube_event_exporter::source::Start;
use kube_event_exporter::tasks::Tasks;
use kube_event_exporter::telemetry::{Health, Metrics};

pub use keys::{Delivery, keys_in_file};
#[allow(unused_imports)] // not every test binary reads transition lines
pub use logs::transitions;

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A client of the simulator (its CA trusted, its token sent) without kube's built-in 429/503
/// retry, so fault tests see our own handling (the production client keeps it).
pub fn client(sim: &kube_sim::SimHandle) -> kube::Client {
    client_for(sim.kube_config())
}

/// A client for `cfg`, without kube's built-in retry.
pub fn client_for(mut cfg: kube::Config) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Config text with one file receiver per name in `files`, routed by `route` (YAML, indented by 2).
pub fn config(dir: &Path, extra: &str, route: &str, files: &[&str]) -> Config {
    let mut receivers = String::new();
    for name in files {
        receivers.push_str(&format!(
            "  - name: {name}\n    file:\n      path: {}\n",
            dir.join(format!("{name}.ndjson")).display()
        ));
    }
    let text = format!("{extra}\nroute:\n{route}\nreceivers:\n{receivers}");
    config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"))
}

/// Routes everything to the receiver `all`.
pub const ROUTE_ALL: &str = "  routes:\n    - match:\n        - receiver: all";

pub struct Running {
    pub exporter: Exporter,
    pub metrics: Metrics,
    pub health: Health,
    pub dir: PathBuf,
}

impl Running {
    pub async fn start(cfg: &Config, api: kube::Config, start: Start, dir: &Path) -> Self {
        let metrics = Metrics::default();
        let health = Health::new(Duration::from_secs(600));
        health.set_config_loaded();
        let handles = Handles {
            metrics: metrics.clone(),
            health: health.clone(),
            tasks: Tasks::default(),
        };
        let exporter = Exporter::start(cfg, client_for(api), start, handles)
            .await
            .expect("receivers");
        Self {
            exporter,
            metrics,
            health,
            dir: dir.to_path_buf(),
        }
    }

    pub fn keys(&self, receiver: &str) -> Vec<String> {
        keys_in_file(&self.dir.join(format!("{receiver}.ndjson")))
    }

    /// Waits until `receiver` has every key of `want`; panics after `limit` with what is missing.
    pub async fn wait_for_keys(&self, receiver: &str, want: &[String], limit: Duration) {
        let want: std::collections::BTreeSet<&String> = want.iter().collect();
        let deadline = Instant::now() + limit;
        loop {
            let have = self.keys(receiver);
            let have: std::collections::BTreeSet<&String> = have.iter().collect();
            let missing: Vec<&&String> = want.difference(&have).take(5).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {limit:?}, {receiver} still lacks {} keys, e.g. {missing:?}",
                want.difference(&have).count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `receiver` has every key of `want` (or the limit passes), then stops (`stop`).
    pub async fn finish(
        self,
        receiver: &str,
        want: &[String],
        limit: Duration,
    ) -> (Delivery, Outcome) {
        let deadline = Instant::now() + limit;
        let want_set: std::collections::BTreeSet<&String> = want.iter().collect();
        loop {
            let have = self.keys(receiver);
            let have: std::collections::BTreeSet<&String> = have.iter().collect();
            if want_set.is_subset(&have) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let path = self.dir.join(format!("{receiver}.ndjson"));
        let outcome = self.stop(Duration::from_secs(10)).await;
        (Delivery::compare(want, &keys_in_file(&path)), outcome)
    }

    /// Ends the run as production does without leader election: the shutdown coordinator with
    /// no Lease (stop reading, drain within `drain`, join every task of the run).
    pub async fn stop(self, drain: Duration) -> Outcome {
        shutdown::coordinate(NoLease, self.exporter, drain).await
    }

    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics, name)
    }
}

/// The sum of every sample of the metrics whose names start with `name`.
pub fn metric(metrics: &Metrics, name: &str) -> f64 {
    sum_samples(&metrics.encode(), name)
}

/// The sum of every sample in an exposition text whose metric name starts with `name`.
pub fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until an exporter's first list is done and its watch is open: occurrences generated from
/// then on must all be exported. (Repeats from before a cold list collapse into the current count,
/// since a list holds only current state.)
pub async fn until_watching(sim: &kube_sim::SimHandle) {
    eventually(
        Duration::from_secs(20),
        "the exporter's watch to open",
        || {
            sim.request_counts()
                .contains_key(&("watch".to_string(), "events".to_string()))
        },
    )
    .await;
}
pub mod debian;
pub mod pyservers;
pub mod replicas;
pub mod rsyslog;
pub mod scenarios;
pub mod tansu;
