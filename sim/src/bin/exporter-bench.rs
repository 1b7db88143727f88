//! `exporter-bench`: see `kube_sim::bench`. Needs the exporter built first:
//! `cargo build --release && cargo run --release -p kube-sim --bin exporter-bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_sim::bench::{BenchOptions, run};

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
    /// Seconds of idle time over which API requests are counted.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
