//! `kube-event-exporter`: the command line. Where an event goes: `source` → `enrich` → `route` →
//! `sink` → `progress` (see `exporter` for the wiring).

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "demo")]
mod demo;
mod footprint;
mod resmoio_args;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kube_event_exporter::{
    cluster, config,
    exporter::{Exporter, Handles},
    leader::{elector::Replica, shards},
    shutdown::{self, NoLease, Outcome},
    source::Start,
    tasks::Tasks,
    telemetry,
};

// Every event is decoded into, and encoded from, short-lived allocations; glibc malloc spent a
// quarter of the exporter's CPU on them in the benchmark profile (see README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KEE_GIT_REVISION"),
    ")"
);

/// What `run` reads from its environment and how it exits (in `--help`).
const RUN_HELP: &str = "\
Environment:
  KEE_CONFIG            the config file when --config is not given
  KUBECONFIG            kubeconfig file(s) when --kubeconfig is not given and not in a cluster
  POD_NAME              identity in the Lease, unless leaderElection.identity is set (default:
                        the host name and a random suffix); the Deployment sets it
  POD_NAMESPACE         namespace of the Lease, unless leaderElection.leaseNamespace is set or the
                        service account's namespace file exists (default: default)
  TOKIO_WORKER_THREADS  async worker threads (default: 1)
  RUST_LOG              replaces the config's logLevel and the caps on libraries' logs
  NO_COLOR              no colour in text logs on a terminal
  ${VAR} in a config value is replaced by that variable (an unset one is a config error).

resmoio's flags -conf, -metrics-address and -kubeconfig are accepted as --config,
--metrics-address and --kubeconfig.

Exit status:
  0    stopped on a signal: handed over, or everything read was delivered
  1    could not start or run (API configuration, metrics address, receivers)
  2    invalid config (every error is printed)
  3    without leader election: occurrences left undelivered at shutdown
  130  a second signal during the shutdown (the same signal again within 1 s is not one)";

/// check-config's exit codes (in `--help`).
const CHECK_HELP: &str = "\
Environment:
  KEE_CONFIG  the config file when --config is not given
  ${VAR} in a config value is replaced by that variable (an unset one is an error).

Exit status:
  0  valid: a one-line summary on stdout, warnings on stderr
  2  invalid: every error on stderr, each with its YAML path (and line, when known)";

#[derive(Parser)]
#[command(name = "kube-event-exporter", version = VERSION, about = "Exports every Kubernetes event occurrence, losslessly")]
#[command(args_conflicts_with_subcommands = true, after_help = RUN_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Watch events and export them (the default).
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Validate a config file and exit: 0 with a summary, 2 with every error.
    #[command(after_help = CHECK_HELP)]
    CheckConfig(ConfigFile),
    /// Run an in-process API simulator, generate events and export them to stdout.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// kube-sim in its own process, for the demo.
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    Sim(demo::SimArgs),
}

/// The config file option, the same for `run` and `check-config`.
#[derive(Args)]
struct ConfigFile {
    /// Config file (resmoio-compatible YAML).
    #[arg(long, short = 'c', env = "KEE_CONFIG", default_value = "config.yaml")]
    config: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    file: ConfigFile,
    /// Kubeconfig; default: in-cluster, else $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Listen address of /metrics and the health endpoints.
    #[arg(long, default_value = ":2112")]
    metrics_address: String,
}

fn main() -> ExitCode {
    // One TLS provider for kube and reqwest (mixing ring and aws-lc-rs panics at runtime).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match resmoio_args::translate(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise: tokio's default (one per
    // core of the node) makes every hand-off between pipeline stages a cross-thread wake-up. With
    // one worker the benchmark spends 7.3 instead of 10.3 CPU seconds per million occurrences at
    // the same throughput (130k/s, bounded by kube-sim), far above a busy cluster's event rate.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::CheckConfig(file)) => check_config(&file.config),
        Some(Command::Run(args)) => runtime.block_on(run(args)),
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => runtime.block_on(demo::run(args)),
        #[cfg(feature = "demo")]
        Some(Command::Sim(args)) => runtime.block_on(demo::sim(args)),
        None => runtime.block_on(run(cli.run)),
    }
}

/// The checks `run` makes before it starts: the file, then the receivers (file directories, TLS
/// files, …; `sink::check` starts nothing). Warnings go to stderr, the summary to stdout; exit 2
/// with every error.
fn check_config(path: &std::path::Path) -> ExitCode {
    match load_checked(path) {
        Ok(cfg) => {
            for warning in cfg.warnings() {
                eprintln!("warning: {warning}");
            }
            println!("{}: {}", path.display(), cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: invalid config\n{errors}", path.display());
            ExitCode::from(2)
        }
    }
}

/// The config, and every receiver check `start` would make (check-config and run alike).
fn load_checked(path: &std::path::Path) -> Result<config::Config, config::ConfigErrors> {
    config::load(path)
        .and_then(|cfg| kube_event_exporter::sink::check(&cfg.receivers).map(|()| cfg))
}

async fn run(args: RunArgs) -> ExitCode {
    // The same checks as check-config, before anything starts: receivers that cannot work
    // (unwritable file, unreadable TLS files) fail here, not when a standby takes over.
    let cfg = match load_checked(&args.file.config) {
        Ok(c) => c,
        Err(errors) => {
            // Logging is not set up (the config says how): a file that asks for JSON gets its
            // errors as JSON lines, so a log pipeline reads them like every other line.
            match config::log_format_hint(&args.file.config) {
                config::LogFormat::Json => {
                    telemetry::logging::config_errors_json(&args.file.config, &errors)
                }
                config::LogFormat::Text => {
                    eprintln!("{}: invalid config\n{errors}", args.file.config.display())
                }
            }
            return ExitCode::from(2);
        }
    };
    telemetry::logging::init(cfg.log_level, cfg.log_format);
    for warning in cfg.warnings() {
        tracing::warn!(config = %args.file.config.display(), "{warning}");
    }
    match serve(cfg, args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %telemetry::error_chain(&*e), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Exit status when a shutdown without leader election left occurrences undelivered.
const UNDELIVERED_EXIT: u8 = 3;

async fn serve(cfg: config::Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    tracing::info!(version = VERSION, config = %args.file.config.display(), summary = %cfg.summary(), "starting");
    let metrics = telemetry::Metrics::new(&cfg.metrics_name_prefix);
    // A standby's series exist too: alerts aggregate over every pod of the Deployment.
    for receiver in &cfg.receivers {
        metrics.init_receiver(&receiver.name);
    }
    // A quiet watch is silent for up to its 290 s timeout; only twice that is a stall.
    let health = telemetry::Health::new(std::time::Duration::from_secs(600));
    health.set_config_loaded();
    // Every task of the process is spawned here and joined at the end, whatever happens between.
    let tasks = Tasks::default();
    let (addr, server) = telemetry::server::bind(
        &args.metrics_address,
        metrics.clone(),
        health.clone(),
        tasks.joining(),
    )
    .await?;
    tasks.spawn(server);
    tracing::info!(address = %addr, "serving /metrics, /healthz, /readyz");
    let handles = Handles {
        metrics,
        health,
        tasks: tasks.clone(),
    };
    let outcome = export_until_shut_down(cfg, &args, handles).await;
    tasks.join().await;
    let code = match outcome? {
        Outcome::Done | Outcome::Lost => ExitCode::SUCCESS,
        Outcome::Undelivered(_) => ExitCode::from(UNDELIVERED_EXIT),
    };
    tracing::info!(success = code == ExitCode::SUCCESS, "shutdown: done");
    Ok(code)
}

/// Exports (as the leader, or alone without leader election) until a signal, then hands over
/// through the shutdown coordinator. A standby just stops.
async fn export_until_shut_down(
    cfg: config::Config,
    args: &RunArgs,
    handles: Handles,
) -> anyhow::Result<Outcome> {
    let tasks = handles.tasks.clone();
    let signal = shutdown::install(&tasks).context("installing signal handlers")?;
    let client = cluster::client(args.kubeconfig.as_deref(), &handles.metrics).await?;
    let drain_timeout = cfg.leader_election.drain_timeout;
    if cfg.leader_election.enabled && cfg.leader_election.shards > 1 {
        let le = cfg.leader_election.clone();
        let replica = Replica::new(
            cfg,
            client.clone(),
            handles.metrics.clone(),
            handles.health.clone(),
        );
        let outcome = shards::run(
            replica,
            &le,
            client,
            (handles.metrics, handles.health),
            &tasks,
            &signal,
        )
        .await
        .context("starting receivers")?;
        Ok(outcome)
    } else if cfg.leader_election.enabled {
        let replica = Replica::new(cfg, client, handles.metrics, handles.health);
        let leading = replica
            .run(&tasks, &signal)
            .await
            .context("starting receivers")?;
        Ok(match leading {
            Some((term, exporter)) => shutdown::coordinate(term, exporter, drain_timeout).await,
            None => Outcome::Done,
        })
    } else {
        tracing::warn!(
            "leader election is disabled: run exactly one replica, or events are exported twice"
        );
        let exporter = Exporter::start(&cfg, client, Start::Cold, handles)
            .await
            .context("starting receivers")?;
        signal.cancelled().await;
        Ok(shutdown::coordinate(NoLease, exporter, drain_timeout).await)
    }
}
