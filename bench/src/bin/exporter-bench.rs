//! `exporter-bench`: see `kee_bench::bench`. Needs the exporter built first:
//! `cargo build --release && cargo run --release -p kube-sim --bin exporter-bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

// The exporter's allocator: the baseline clients (this binary in another mode) are compared with
// the exporter on equal terms. kube-sim, in this process too, gets it as well.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use kee_bench::bench::{BenchOptions, run};

#[derive(Parser)]
#[command(
    name = "exporter-bench",
    about = "Throughput, memory and API cost of kube-event-exporter"
)]
struct Args {
    /// The exporter binary; default: kube-event-exporter next to this binary.
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Events already in the API for the cold start.
    #[arg(long, default_value_t = 100_000)]
    cold: usize,
    /// Occurrences streamed in the sustained phases.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Occurrences sent to the webhook that answers in 50 ms (from history, then live at 200/s).
    #[arg(long, default_value_t = 4000)]
    latency_events: usize,
    /// Occurrences sent to the OpenSearch that answers in 100 ms.
    #[arg(long, default_value_t = 200_000)]
    latency_search_events: usize,
    /// Seconds of 100 occurrences/s before the leader's and the standby's RSS is read.
    #[arg(long, default_value_t = 30)]
    steady_seconds: u64,
    /// Seconds of idle time over which API requests are counted.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run as the baseline client against this kube-sim URL (the benchmark starts
    /// itself this way, so the baseline runs in its own process like the exporter).
    #[arg(long, hide = true)]
    baseline_client: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    baseline_rv: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    baseline_count: usize,
    #[arg(long, hide = true, value_enum, default_value = "key")]
    baseline_decode: kee_bench::bench::Decode,
    #[arg(long, hide = true)]
    baseline_out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.baseline_client {
        let out = args
            .baseline_out
            .as_deref()
            .context("--baseline-out is required with --baseline-client")?;
        // One thread: a minimal client does not pay for waking a second one on every chunk
        // (on a multi-thread runtime the baseline spent most of its time in futex wake-ups).
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(kee_bench::bench::baseline_client(
                url,
                args.baseline_rv,
                args.baseline_count,
                args.baseline_decode,
                out,
            ));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let exporter = match args.exporter {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("kube-event-exporter"),
    };
    anyhow::ensure!(
        exporter.exists(),
        "{} not found: build it first (cargo build --release)",
        exporter.display()
    );
    let work = tempfile_dir()?;
    let opts = BenchOptions {
        exporter,
        cold_events: args.cold,
        sustained_events: args.events,
        idle: Duration::from_secs(args.idle_seconds),
        work_dir: work.clone(),
        baseline_exe: Some(std::env::current_exe()?),
        latency_events: args.latency_events,
        latency_search_events: args.latency_search_events,
        steady: Duration::from_secs(args.steady_seconds),
    };
    let report = run(&opts, |m| eprintln!("bench: {m}")).await;
    let _ = std::fs::remove_dir_all(&work);
    let report = report?;
    print!("{}", report.table());
    println!("machine: {}", report.machine);
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    println!("{}", report.last_line());
    anyhow::ensure!(report.exact(), "a phase lost or duplicated occurrences");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("exporter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
