//! `kube-event-exporter demo`: the whole product on one machine, as child processes:
//! kube-sim (this binary, hidden `sim` subcommand), an event generator inside it, and two exporter
//! replicas under leader election. Mid-stream the leader gets SIGTERM (a rolling update) and a
//! replacement replica starts. At the end the exported occurrence keys are compared with the
//! generated ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_sim::exporter_process::ExporterProcess;
use tokio::process::{Child, Command};

use kube_event_exporter::event::Event;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long events are generated.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Occurrences generated per second (new events and repeats).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Print every exported event (each replica's stdout receiver, so whichever leads) instead of
    /// only the summary.
    #[arg(long)]
    pub show_events: bool,
    /// Keep the working directory (replica configs, logs and outputs) even when nothing was lost.
    #[arg(long)]
    pub keep: bool,
    /// Split the stream into this many shards over three replicas (leaderElection.shards), with
    /// kube-sim filtering each shard's list and watch as Kubernetes 1.36 does (shardSelector);
    /// mid-stream a fourth replica joins and one of the first leaves. 1: the active/passive pair.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: u32,
}

/// The hidden `sim` subcommand: kube-sim in its own process for the demo.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Serve KEP-5866's shardSelector.
    #[arg(long)]
    pub shard_selector: bool,
}

const LEASE: &str = "kube-event-exporter";

pub async fn run(args: DemoArgs) -> ExitCode {
    kube_event_exporter::telemetry::logging::init(
        kube_event_exporter::config::LogLevel::Warn,
        kube_event_exporter::config::LogFormat::Text,
    );
    match demo(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn sim(args: SimArgs) -> ExitCode {
    match serve_sim(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-sim failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_sim(args: SimArgs) -> anyhow::Result<()> {
    let sim = kube_sim::Sim::start(kube_sim::SimConfig {
        port: args.port,
        shard_selector: args.shard_selector,
        ..Default::default()
    })
    .await?;
    sim.write_kubeconfig(&args.kubeconfig)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

struct Replica {
    name: String,
    child: Child,
    output: PathBuf,
}

async fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let kubeconfig = dir.path().join("kubeconfig");
    let mut sim = Command::new(&exe);
    sim.args(["sim", "--kubeconfig"]).arg(&kubeconfig);
    if args.shards > 1 {
        sim.arg("--shard-selector");
    }
    let mut sim = sim
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting kube-sim")?;
    wait_for(Duration::from_secs(20), || kubeconfig.exists())
        .await
        .context("kube-sim did not write its kubeconfig")?;
    let (url, http) = admin_endpoint(&kubeconfig)?;
    let client = kube_event_exporter::cluster::client(
        Some(&kubeconfig),
        &kube_event_exporter::telemetry::Metrics::default(),
    )
    .await?;
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let env = Env {
        exe: &exe,
        dir: dir.path(),
        kubeconfig: &kubeconfig,
        show: args.show_events,
        shards: args.shards,
    };
    if args.shards > 1 {
        let outcome = sharded(&args, &env, &leases, &http, &url).await;
        let _ = terminate(&sim);
        let _ = sim.wait().await;
        if !matches!(outcome, Ok(true)) || args.keep {
            let kept = dir.keep();
            eprintln!("demo: kept {}", kept.display());
        }
        return outcome;
    }

    eprintln!("demo: kube-sim at {url}; starting replicas a and b");
    let mut replicas = vec![
        start_replica(&env, "a").await?,
        start_replica(&env, "b").await?,
    ];
    let first = wait_holder(&leases, Duration::from_secs(30), |h| !h.is_empty()).await?;
    let (stop_monitor, monitor) = monitor_holder(leases.clone());
    eprintln!(
        "demo: {first} leads; generating {} occurrences/s for {:?}",
        args.rate, args.duration
    );
    let total = start_generator(&http, &url, &args).await?;

    // A rolling update a third of the way in: SIGTERM the leader, start its replacement.
    tokio::time::sleep(args.duration / 3).await;
    let leader = replicas
        .iter()
        .position(|r| r.name == first)
        .context("leader is not one of ours")?;
    terminate(&replicas[leader].child)?;
    eprintln!("demo: SIGTERM to leader {first}; starting replacement c");
    replicas.push(start_replica(&env, "c").await?);
    let successor = wait_holder(&leases, Duration::from_secs(60), |h| {
        !h.is_empty() && h != first
    })
    .await?;
    let status = replicas[leader].child.wait().await?;
    eprintln!("demo: {first} exited with {status}; {successor} leads");

    // Wait for the generator, then for the exports to catch up.
    let (want, exported) = wait_exported(&http, &url, total, &replicas).await?;
    // Standbys first (they exit at once), then the leader, so no further handover is counted.
    let last = holder(&leases).await;
    for r in replicas.iter().filter(|r| r.name != last) {
        let _ = terminate(&r.child);
    }
    for r in replicas.iter_mut().filter(|r| r.name != last) {
        let _ = tokio::time::timeout(Duration::from_secs(30), r.child.wait()).await;
    }
    drop(stop_monitor);
    let gaps = handovers(&monitor.await.unwrap_or_default());
    for r in replicas.iter().filter(|r| r.name == last) {
        let _ = terminate(&r.child);
    }
    for r in replicas.iter_mut().filter(|r| r.name == last) {
        let _ = tokio::time::timeout(Duration::from_secs(60), r.child.wait()).await;
    }
    let _ = terminate(&sim);
    let _ = sim.wait().await;

    let exported = exported();
    let (lost, duplicated) = compare(&want, &exported);
    let max_gap = gaps.iter().copied().max().unwrap_or_default();
    let handovers = gaps.len();
    let exact = lost == 0 && duplicated == 0;
    if !exact || args.keep {
        // Logs, configs and every replica's output, for whoever investigates.
        let kept = dir.keep();
        eprintln!("demo: kept {}", kept.display());
    }
    println!(
        "demo: generated {} occurrences, exported {}, lost {lost}, duplicated {duplicated}, handovers {handovers}, max gap {}ms",
        want.len(),
        exported.len(),
        max_gap.as_millis()
    );
    Ok(exact)
}

/// Starts kube-sim's generator at `args.rate` for `args.duration`; returns how many it makes.
async fn start_generator(
    http: &reqwest::Client,
    url: &str,
    args: &DemoArgs,
) -> anyhow::Result<u64> {
    let total = (args.rate * args.duration.as_secs_f64()).round() as u64;
    http.post(format!(
        "{url}/admin/generate?rate={}&total={total}&repeat=0.3",
        args.rate
    ))
    .send()
    .await?
    .error_for_status()
    .context("starting the generator")?;
    Ok(total)
}

/// Waits for the generator, then (at most 60 s) for every generated key in the replicas'
/// outputs. Returns the generated keys and a reader of every key exported so far.
async fn wait_exported(
    http: &reqwest::Client,
    url: &str,
    total: u64,
    replicas: &[Replica],
) -> anyhow::Result<(BTreeSet<String>, impl Fn() -> Vec<String> + use<>)> {
    let generated = wait_generated(http, url, total).await?;
    let outputs: Vec<PathBuf> = replicas.iter().map(|r| r.output.clone()).collect();
    let exported = move || -> Vec<String> { outputs.iter().flat_map(|p| keys_in(p)).collect() };
    let want: BTreeSet<String> = generated.into_iter().collect();
    let _ = wait_for(Duration::from_secs(60), || {
        let have: BTreeSet<String> = exported().into_iter().collect();
        want.is_subset(&have)
    })
    .await;
    Ok((want, exported))
}

/// Lost and duplicated occurrences of `exported` against `want`, the first of each printed.
fn compare(want: &BTreeSet<String>, exported: &[String]) -> (usize, usize) {
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for k in exported {
        *counts.entry(k).or_default() += 1;
    }
    let lost: Vec<&String> = want.iter().filter(|k| !counts.contains_key(k)).collect();
    let dup_keys: Vec<&&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let duplicated: usize = counts.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    if !lost.is_empty() || duplicated > 0 {
        eprintln!("demo: lost {:?}", &lost[..lost.len().min(10)]);
        eprintln!("demo: duplicated {:?}", &dup_keys[..dup_keys.len().min(10)]);
    }
    (lost.len(), duplicated)
}

/// Shards over replicas: a, b and c share the shards; a third of the way in d joins (the others
/// hand it its share) and a leaves (its shards go to the others); all with the server filtering
/// each shard's events.
async fn sharded(
    args: &DemoArgs,
    env: &Env<'_>,
    leases: &Api<Lease>,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<bool> {
    let n = args.shards;
    eprintln!(
        "demo: kube-sim at {url} (serving shardSelector); starting replicas a, b and c with {n} shards"
    );
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(start_replica(env, name).await?);
    }
    let spread = wait_spread(leases, n, Duration::from_secs(60), |h| {
        h.iter().all(|h| !h.is_empty())
    })
    .await?;
    eprintln!(
        "demo: shards held: {spread}; generating {} occurrences/s for {:?}",
        args.rate, args.duration
    );
    let total = start_generator(http, url, args).await?;

    tokio::time::sleep(args.duration / 3).await;
    eprintln!("demo: replica d joins");
    replicas.push(start_replica(env, "d").await?);
    let spread = wait_spread(leases, n, Duration::from_secs(60), |h| {
        h.iter().any(|h| h == "d") && h.iter().all(|h| !h.is_empty())
    })
    .await?;
    eprintln!("demo: shards held: {spread}");
    eprintln!("demo: SIGTERM to a (a rolling update)");
    terminate(&replicas[0].child)?;
    let status = replicas[0].child.wait().await?;
    let spread = wait_spread(leases, n, Duration::from_secs(60), |h| {
        h.iter().all(|h| !h.is_empty() && h != "a")
    })
    .await?;
    eprintln!("demo: a exited with {status}; shards held: {spread}");

    let (want, exported) = wait_exported(http, url, total, &replicas).await?;
    for r in &replicas[1..] {
        let _ = terminate(&r.child);
    }
    for r in &mut replicas[1..] {
        let _ = tokio::time::timeout(Duration::from_secs(60), r.child.wait()).await;
    }
    let exported = exported();
    let (lost, duplicated) = compare(&want, &exported);
    println!(
        "demo: generated {} occurrences, exported {}, lost {lost}, duplicated {duplicated}, {n} shards over 3 replicas, then 4, then 3",
        want.len(),
        exported.len(),
    );
    Ok(lost == 0 && duplicated == 0)
}

/// Waits until the shard Leases' holders satisfy `want`; returns the spread ("a 2, b 2, c 2").
async fn wait_spread(
    leases: &Api<Lease>,
    shards: u32,
    limit: Duration,
    want: impl Fn(&[String]) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut holders = Vec::new();
        for i in 0..shards {
            let name = format!("{LEASE}-shard-{i}-of-{shards}");
            holders.push(holder_of(leases, &name).await);
        }
        if want(&holders) {
            let mut by: BTreeMap<&str, usize> = BTreeMap::new();
            for h in &holders {
                *by.entry(h.as_str()).or_default() += 1;
            }
            let spread: Vec<String> = by.iter().map(|(h, c)| format!("{h} {c}")).collect();
            return Ok(spread.join(", "));
        }
        if Instant::now() > deadline {
            bail!("shard holders {holders:?} not as expected after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where and how replicas start.
struct Env<'a> {
    exe: &'a Path,
    dir: &'a Path,
    kubeconfig: &'a Path,
    show: bool,
    shards: u32,
}

async fn start_replica(env: &Env<'_>, name: &str) -> anyhow::Result<Replica> {
    let (exe, dir, kubeconfig, show) = (env.exe, env.dir, env.kubeconfig, env.show);
    let shards = if env.shards > 1 {
        format!("\n  shards: {}", env.shards)
    } else {
        String::new()
    };
    let output = dir.join(format!("{name}.ndjson"));
    let stdout_receiver = if show {
        "\n        - receiver: screen"
    } else {
        ""
    };
    let screen = if show {
        "\n  - name: screen\n    stdout: {}"
    } else {
        ""
    };
    // The identity is the pod name (POD_NAME), as in the Deployment.
    let config = format!(
        "logLevel: info
leaderElection:
  leaseNamespace: default
  leaseDuration: 4s
  renewDeadline: 3s
  retryPeriod: 500ms
  shutdownLinger: 2s{shards}
route:
  routes:
    - match:
        - receiver: archive{stdout_receiver}
receivers:
  - name: archive
    file:
      path: {}{screen}
",
        output.display()
    );
    let process = ExporterProcess::new(exe, dir, name, kubeconfig).inherit_stdout(show);
    let child = Command::from(process.command(&config)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting replica {name}"))?;
    Ok(Replica {
        name: name.to_string(),
        child,
        output,
    })
}

fn terminate(child: &Child) -> anyhow::Result<()> {
    let Some(pid) = child.id() else { return Ok(()) };
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    Ok(())
}

/// kube-sim's URL and a client of its admin endpoints, trusting the CA its kubeconfig names
/// (admin requests need no token).
fn admin_endpoint(kubeconfig: &Path) -> anyhow::Result<(String, reqwest::Client)> {
    use base64::Engine as _;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cluster = kc
        .clusters
        .into_iter()
        .find_map(|c| c.cluster)
        .context("no cluster in kube-sim's kubeconfig")?;
    let url = cluster
        .server
        .context("no server in kube-sim's kubeconfig")?;
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .context("kube-sim's CA in the kubeconfig is not base64")?;
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&pem).context("kube-sim's CA certificate")?,
        );
    }
    Ok((url, builder.build().context("building the admin client")?))
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn holder(leases: &Api<Lease>) -> String {
    holder_of(leases, LEASE).await
}

async fn holder_of(leases: &Api<Lease>, name: &str) -> String {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

async fn wait_holder(
    leases: &Api<Lease>,
    limit: Duration,
    want: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let h = holder(leases).await;
        if want(&h) {
            return Ok(h);
        }
        if Instant::now() > deadline {
            bail!("no lease holder as expected after {limit:?} (holder {h:?})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records every change of the Lease holder, polled every 10 ms, until the returned sender is dropped.
fn monitor_holder(
    leases: Api<Lease>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<(Instant, String)>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut changes: Vec<(Instant, String)> = Vec::new();
        loop {
            let h = holder(&leases).await;
            if changes.last().is_none_or(|(_, last)| *last != h) {
                changes.push((Instant::now(), h));
            }
            tokio::select! {
                _ = &mut stopped => return changes,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (stop, task)
}

/// Handovers and their gaps: from the release (holder emptied) to the next holder.
fn handovers(changes: &[(Instant, String)]) -> Vec<Duration> {
    let mut gaps = Vec::new();
    let mut released: Option<Instant> = None;
    let mut current = String::new();
    for (at, h) in changes {
        if h.is_empty() {
            released.get_or_insert(*at);
        } else {
            if (!current.is_empty() || released.is_some()) && *h != current {
                gaps.push(released.map(|r| at.duration_since(r)).unwrap_or_default());
            }
            released = None;
            current = h.clone();
        }
    }
    gaps
}

async fn wait_generated(
    http: &reqwest::Client,
    url: &str,
    total: u64,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let keys: Vec<String> = http
            .get(format!("{url}/admin/generated"))
            .send()
            .await?
            .json()
            .await?;
        if keys.len() as u64 >= total || Instant::now() > deadline {
            return Ok(keys);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn keys_in(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .map(|e| e.occurrence_key())
        .collect()
}
