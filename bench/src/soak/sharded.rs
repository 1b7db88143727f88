//! `exporter-soak --shards N`: replicas sharing the stream in `N` shards (`leaderElection.shards`)
//! under a seeded schedule of what moves shards — rolling replacements (a new replica, then
//! SIGTERM to an old one), crashes (SIGKILL, then a replacement), scale-ups and scale-downs — and
//! API faults (error bursts, dropped watches). kube-sim serves `shardSelector` for even seeds and
//! ignores it for odd ones, so both watch modes are soaked.
//!
//! The verdict compares every generated occurrence key with what the webhook received from all
//! replicas: nothing lost; duplicates only from crashes, at most what a crashed replica delivered
//! since its shards' last cursor commits (one retry period) plus one batch, per crash; and no
//! replica exiting other than as its signals ask.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use kube_sim::{GeneratorConfig, Sim, SimConfig};

use super::observe::{Clock, Observations, Receiver};
use super::replicas::{Replicas, Timing};
use super::schedule::Sig;
use super::webhook::Webhook;
use super::{Outcome, SoakOptions, wait_for};

/// Replicas kept running between faults: at least two (a crash leaves one), at most five.
const MIN_REPLICAS: usize = 2;
const MAX_REPLICAS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Move {
    Rolling,
    Crash,
    ScaleUp,
    ScaleDown,
    ApiErrors,
    DropWatches,
}

impl Move {
    fn name(self) -> &'static str {
        match self {
            Move::Rolling => "rolling",
            Move::Crash => "crash",
            Move::ScaleUp => "scale-up",
            Move::ScaleDown => "scale-down",
            Move::ApiErrors => "api-errors",
            Move::DropWatches => "drop-watches",
        }
    }
}

/// Runs the sharded soak; Err only when the harness itself could not run.
pub async fn run(opts: &SoakOptions, shards: u32) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let server_side = opts.seed.is_multiple_of(2);
    let clock = Clock::start();
    let obs = Arc::new(Observations::default());
    let sim = Sim::start(SimConfig {
        shard_selector: server_side,
        ..SimConfig::default()
    })
    .await?;
    let kubeconfig = opts.work_dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let timing = Timing::default();
    let hook = Webhook::start(
        clock,
        obs.clone(),
        timing.hook_timeout + Duration::from_secs(2),
    )
    .await?;
    let replicas = Replicas::new(
        opts.exporter.clone(),
        opts.work_dir.clone(),
        kubeconfig,
        hook.url.clone(),
        timing.clone(),
        clock,
        obs.clone(),
    )
    .with_shards(shards);
    eprintln!(
        "soak: {shards} shards, kube-sim {} shardSelector",
        if server_side { "serving" } else { "ignoring" }
    );
    for _ in 0..3 {
        replicas.start()?;
    }
    wait_for(
        Duration::from_secs(60),
        "the replicas' first watches",
        || {
            sim.request_counts()
                .get(&("watch".to_string(), "events".to_string()))
                .is_some_and(|n| *n >= u64::from(shards))
        },
    )
    .await?;
    let started = Instant::now();
    let generator = sim.generate(GeneratorConfig {
        rate_per_sec: opts.rate,
        total: None,
        repeat_ratio: 0.3,
        namespaces: 8,
        seed: opts.seed,
    });
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut done: BTreeMap<Move, usize> = BTreeMap::new();
    // Faults until 20 s before the end, 6–14 s apart, so every move completes under load.
    let mut at = Duration::from_secs(5);
    while at + Duration::from_secs(20) < opts.duration {
        tokio::time::sleep_until(started + at).await;
        let healthy = replicas.healthy();
        let mv = match rng.random_range(0..10) {
            0..=2 => Move::Rolling,
            3..=4 => Move::Crash,
            5 if healthy.len() < MAX_REPLICAS => Move::ScaleUp,
            6 if healthy.len() > MIN_REPLICAS => Move::ScaleDown,
            5..=7 => Move::ApiErrors,
            _ => Move::DropWatches,
        };
        let pick = |rng: &mut StdRng| healthy[rng.random_range(0..healthy.len())].clone();
        eprintln!("soak: {:7.1}s move: {}", clock.now(), mv.name());
        match mv {
            Move::Rolling => {
                // A Deployment's surge: the new pod first, then the old one goes.
                replicas.start()?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let old = pick(&mut rng);
                replicas.signal(&old, Sig::Term).await?;
            }
            Move::Crash => {
                let victim = pick(&mut rng);
                replicas.signal(&victim, Sig::Kill).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                replicas.start()?;
            }
            Move::ScaleUp => {
                replicas.start()?;
            }
            Move::ScaleDown => {
                let leaving = pick(&mut rng);
                replicas.signal(&leaving, Sig::Term).await?;
            }
            Move::ApiErrors => {
                let status = if rng.random_bool(0.5) { 500 } else { 429 };
                sim.fail_next(5, status);
                sim.drop_watches();
            }
            Move::DropWatches => sim.drop_watches(),
        }
        *done.entry(mv).or_default() += 1;
        at += Duration::from_millis(rng.random_range(6_000..14_000));
    }
    tokio::time::sleep_until(started + opts.duration).await;
    generator.stop();
    let generated = generator.generated();
    let want: BTreeSet<&String> = generated.iter().collect();
    eprintln!(
        "soak: {:7.1}s generated {}; waiting for the webhook to have every key",
        clock.now(),
        want.len()
    );
    let hook_keys = || -> Vec<String> {
        obs.deliveries()
            .into_iter()
            .filter(|d| d.receiver == Receiver::Webhook)
            .map(|d| d.key)
            .collect()
    };
    let _ = wait_for(Duration::from_secs(90), "every key at the webhook", || {
        let have: BTreeSet<String> = hook_keys().into_iter().collect();
        want.iter().all(|k| have.contains(*k))
    })
    .await;
    for name in replicas.running() {
        replicas.signal(&name, Sig::Term).await?;
    }
    for name in replicas.all().iter().map(|r| r.name.clone()) {
        replicas.wait_exit(&name, timing.exit_limit()).await;
    }
    let exported = hook_keys();
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for k in &exported {
        *counts.entry(k).or_default() += 1;
    }
    let lost: Vec<&&String> = want.iter().filter(|k| !counts.contains_key(**k)).collect();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    let unexpected = counts.keys().filter(|k| !want.contains(*k)).count();
    // A crash replays what the dead replica's shards delivered since their last commit (one
    // retry period, two on a loaded machine) and its requests in flight (4 × 100).
    let crashes = done.get(&Move::Crash).copied().unwrap_or(0);
    let per_crash = opts.rate * (2 * timing.retry + Duration::from_secs(1)).as_secs_f64() + 400.0;
    let bound = (crashes as f64 * per_crash).ceil() as usize;
    let mut report = Vec::new();
    if !lost.is_empty() {
        report.push(format!(
            "soak: LOST {} keys, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if duplicated > bound {
        report.push(format!(
            "soak: {duplicated} duplicates over the bound {bound} ({crashes} crashes)"
        ));
    }
    if unexpected > 0 {
        report.push(format!(
            "soak: {unexpected} keys exported that were never generated"
        ));
    }
    for v in obs.violations() {
        report.push(format!("soak: violation: {v}"));
    }
    let passed = report.is_empty();
    let by_kind: Vec<String> = done
        .iter()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    let last_line = format!(
        "soak: seed {}, duration {}, shards {shards} (server-side {server_side}), moves {} (by kind {}), generated {}, exported {}, lost {}, duplicated {duplicated} (bound {bound})",
        opts.seed,
        opts.duration_text,
        done.values().sum::<usize>(),
        by_kind.join(" "),
        want.len(),
        exported.len(),
        lost.len(),
    );
    drop(hook);
    sim.shutdown();
    Ok(Outcome {
        passed,
        report,
        last_line,
    })
}
