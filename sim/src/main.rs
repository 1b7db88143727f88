//! `kube-sim serve`: the simulator as a process, for manual runs and other tools.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube_sim::{GeneratorConfig, Sim, SimConfig};

#[derive(Parser)]
#[command(
    name = "kube-sim",
    version,
    about = "An in-memory Kubernetes API server for tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve on 127.0.0.1 until SIGTERM/SIGINT.
    Serve {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write a kubeconfig for clients.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Watch history entries kept before compaction.
        #[arg(long, default_value_t = 100_000)]
        history: usize,
        /// Compaction interval (kube-apiserver --etcd-compaction-interval); 0s disables it.
        #[arg(long, default_value = "5m", value_parser = humantime_like)]
        compaction_interval: Duration,
        /// Event TTL (kube-apiserver --event-ttl).
        #[arg(long, default_value = "1h", value_parser = humantime_like)]
        event_ttl: Duration,
        /// Send BOOKMARK frames on events watches (real servers do not).
        #[arg(long)]
        event_bookmarks: bool,
        /// Serve KEP-5866's shardSelector on lists and watches (Kubernetes 1.36+ with the
        /// ShardedListAndWatch gate); without it the parameter is ignored, as by older servers.
        #[arg(long)]
        shard_selector: bool,
        /// Start generating this many occurrences per second at once.
        #[arg(long)]
        generate_rate: Option<f64>,
        #[arg(long)]
        generate_total: Option<u64>,
        /// Serve plain HTTP without authentication (default: HTTPS with a generated CA and a
        /// bearer token, both written into the kubeconfig).
        #[arg(long)]
        insecure_http: bool,
    },
}

fn humantime_like(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30s, 5m, 1h"))?;
    Ok(match unit {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "ms" => Duration::from_millis(n),
        _ => return Err(format!("{s:?}: expected e.g. 30s, 5m, 1h")),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        command:
            Command::Serve {
                port,
                kubeconfig,
                history,
                event_ttl,
                compaction_interval,
                event_bookmarks,
                shard_selector,
                generate_rate,
                generate_total,
                insecure_http,
            },
    } = Cli::parse();
    let sim = Sim::start(SimConfig {
        port,
        history_limit: history,
        event_ttl: Some(event_ttl),
        compaction_interval: Some(compaction_interval),
        event_bookmarks,
        shard_selector,
        tls: if insecure_http {
            kube_sim::TlsMode::Off
        } else {
            kube_sim::TlsMode::On
        },
        ..SimConfig::default()
    })
    .await?;
    sim.write_kubeconfig(&kubeconfig)?;
    eprintln!(
        "kube-sim serving {} (kubeconfig {})",
        sim.url(),
        kubeconfig.display()
    );
    if let Some(rate) = generate_rate {
        sim.generate(GeneratorConfig {
            rate_per_sec: rate,
            total: generate_total,
            ..GeneratorConfig::default()
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    sim.shutdown();
    Ok(())
}
