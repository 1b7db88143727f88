//! Logging setup: `tracing` to stderr (stdout belongs to the stdout sink), JSON or text.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, LogLevel};

/// `RUST_LOG`, when set, overrides the configured level. kube-client logs transport failures at
/// error level; we report those ourselves with context, so it is capped at warn.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},kube_client=warn,hyper=warn,reqwest=warn"))
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: a second call (tests, demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
