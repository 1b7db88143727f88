//! `exporter-soak`: see `kee_bench::soak`. Needs the exporter built first:
//! `cargo build --release --workspace && ./target/release/exporter-soak --duration 4m`.
//!
//! Exit 0 only when nothing was lost, duplicates stayed within the bound and every invariant
//! held; otherwise 1, with each violated invariant printed and the work directory kept.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kee_bench::soak::schedule::Schedule;
use kee_bench::soak::{SoakOptions, run};

#[derive(Parser)]
#[command(
    name = "exporter-soak",
    about = "Seeded random faults against kube-event-exporter replicas, with its invariants checked"
)]
struct Args {
    /// How long faults are injected and events generated (e.g. 60s, 4m, 1m30s).
    #[arg(long, default_value = "4m")]
    duration: String,
    /// Seed of the fault schedule (default: random, printed at start). Passing a failing run's
    /// seed again replays its schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// The exporter binary; default: kube-event-exporter next to this binary.
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Occurrences generated per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Where replicas' configs, logs and outputs go (default: a new directory under the system
    /// temporary directory). Kept when the run fails.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Print the fault schedule of this seed and duration, and exit.
    #[arg(long)]
    schedule_only: bool,
    /// Replicas share the stream in this many shards (leaderElection.shards), under rolling
    /// replacements, crashes, scale-ups and scale-downs (kube-sim serves shardSelector for even
    /// seeds). 1: the active/passive soak.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
}

fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let d: jiff::SignedDuration = text
        .parse()
        .with_context(|| format!("--duration {text:?} is not a duration like 60s or 4m"))?;
    Duration::try_from(d).with_context(|| format!("--duration {text:?} is negative"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match soak(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("soak: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn soak(args: Args) -> anyhow::Result<bool> {
    let duration = parse_duration(&args.duration)?;
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number"
    );
    let exporter = match args.exporter {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("kube-event-exporter"),
    };
    anyhow::ensure!(
        exporter.is_file(),
        "{} not found: build it first (cargo build --release), or pass --exporter",
        exporter.display()
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    if args.schedule_only {
        let schedule = Schedule::draw(seed, duration);
        print!("{schedule}");
        let kinds: Vec<String> = Schedule::by_kind(&schedule.faults)
            .into_iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!(
            "soak: seed {seed}, duration {}, faults {} (by kind {})",
            args.duration,
            schedule.faults.len(),
            kinds.join(" ")
        );
        return Ok(true);
    }
    let work_dir = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("exporter-soak-{seed}-{}", std::process::id()))
    });
    println!(
        "soak: seed {seed}, duration {}, exporter {}, work dir {}",
        args.duration,
        exporter.display(),
        work_dir.display()
    );
    let opts = SoakOptions {
        seed,
        duration,
        duration_text: args.duration.clone(),
        exporter,
        work_dir: work_dir.clone(),
        rate: args.rate,
    };
    // Two workers: kube-sim, the generator, the webhook and the observers share them with the
    // exporter processes on a two-core machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = if args.shards > 1 {
        runtime.block_on(kee_bench::soak::sharded::run(&opts, args.shards))
    } else {
        runtime.block_on(run(&opts))
    };
    // Children are killed on drop; nothing of the run survives it.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            println!("soak: work dir kept: {}", work_dir.display());
            return Err(e);
        }
    };
    for line in &outcome.report {
        println!("{line}");
    }
    if outcome.passed && !args.keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        println!(
            "soak: {}; work dir kept: {} (replica logs rN.log, outputs rN.ndjson, schedule.txt)",
            if outcome.passed { "passed" } else { "FAILED" },
            work_dir.display()
        );
    }
    println!("{}", outcome.last_line);
    Ok(outcome.passed)
}
