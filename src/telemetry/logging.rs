//! Logging setup: `tracing` to stderr (stdout belongs to the stdout sink), JSON or text.
//!
//! Each failure should be one line of ours, with context. Libraries log their own view of the same
//! failure (kube-client's HTTP layer says `ERROR failed with error …` for every transport error we
//! already report, hyper and h2 are chatty at debug), so they are capped at warn, and kube-client's
//! HTTP trace layer is off. `RUST_LOG`, when set, replaces all of this.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{ConfigErrors, LogFormat, LogLevel};

/// Crates capped at warn (or at error when that is the configured level). Directive targets match
/// by string prefix: `hyper` also covers `hyper_util` and `hyper_rustls`, so no entry may be a
/// prefix of our own crates' names (`kube` would silence `kube_event_exporter`).
const THIRD_PARTY: &[&str] = &[
    "kube_client",
    "kube_core",
    "kube_runtime",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "tower",
    "axum",
    "tokio",
    "mio",
    "want",
];

/// kube-client's HTTP trace layer: its `failed with error …` / `failed with status …` lines
/// duplicate the errors we log with context.
const OFF: &[&str] = &["kube_client::client::builder"];

/// The filter directives for `level` when `RUST_LOG` is not set.
pub fn directives(level: LogLevel) -> String {
    let ours = level_name(level);
    let theirs = match level {
        LogLevel::Error => "error",
        LogLevel::Off => "off",
        _ => "warn",
    };
    let mut out = ours.to_owned();
    for krate in THIRD_PARTY {
        out.push_str(&format!(",{krate}={theirs}"));
    }
    for target in OFF {
        out.push_str(&format!(",{target}=off"));
    }
    out
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Off => "off",
    }
}

/// `rust_log` (the value of `RUST_LOG`), when set and valid, replaces the configured level and
/// the caps on libraries.
pub fn filter(level: LogLevel, rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(directives(level)))
}

/// Colour only a terminal (never a pipe or a log collector's file), and not when `NO_COLOR` is set.
fn ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn init(level: LogLevel, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let builder = fmt()
        .with_env_filter(filter(level, rust_log.as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(ansi());
    // try_init: a second call (tests, demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logs the errors of a config that did not load as JSON lines, the shape `logFormat: json` gives
/// every other line (logging is not set up: the config that says how failed to load). One ERROR
/// line per error, with the file (`config`), the error's YAML path (`yaml_path`) and `line` when it
/// has them. Neither `RUST_LOG` nor `logLevel` applies: these are the reasons the process exits.
pub fn config_errors_json(file: &Path, errors: &ConfigErrors) {
    config_errors_json_to(std::io::stderr, file, errors);
}

fn config_errors_json_to<W>(writer: W, file: &Path, errors: &ConfigErrors)
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let subscriber = fmt()
        .json()
        .flatten_event(true)
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing::Level::ERROR)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for e in &errors.errors {
            tracing::error!(
                config = %file.display(),
                yaml_path = (!e.path.is_empty()).then_some(e.path.as_str()),
                line = e.line,
                "{e}"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber with `filter(level, rust_log)` prints for a fixed set of log lines.
    fn printed(level: LogLevel, rust_log: Option<&str>) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = fmt()
            .with_env_filter(filter(level, rust_log))
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "kube_client::client::builder", "failed with error kube-dup");
            tracing::warn!(target: "kube_client::client::auth", "kube-warn");
            tracing::info!(target: "hyper_util::client::legacy::pool", "hyper-info");
            tracing::warn!(target: "hyper_util::client::legacy", "hyper-warn");
            tracing::debug!(target: "reqwest::connect", "reqwest-debug");
            tracing::debug!(target: "h2::codec", "h2-debug");
            tracing::info!(target: "rustls::client::hs", "rustls-info");
            tracing::info!(target: "kube_event_exporter::source", "ours-info");
            tracing::debug!(target: "kube_event_exporter::source", "ours-debug");
            tracing::warn!(target: "kube_event_exporter::sink", "ours-warn");
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn library_lines_are_capped_and_kube_clients_duplicate_error_is_off() {
        let out = printed(LogLevel::Info, None);
        for shown in ["kube-warn", "hyper-warn", "ours-info", "ours-warn"] {
            assert!(out.contains(shown), "{shown} missing:\n{out}");
        }
        for hidden in [
            "kube-dup",
            "hyper-info",
            "reqwest-debug",
            "h2-debug",
            "rustls-info",
            "ours-debug",
        ] {
            assert!(!out.contains(hidden), "{hidden} printed:\n{out}");
        }
        // At debug, ours get more detail, libraries still do not.
        let out = printed(LogLevel::Debug, None);
        assert!(out.contains("ours-debug"), "{out}");
        for hidden in ["kube-dup", "hyper-info", "reqwest-debug", "h2-debug"] {
            assert!(!out.contains(hidden), "{hidden} printed at debug:\n{out}");
        }
        // At error, library warnings are not louder than ours.
        let out = printed(LogLevel::Error, None);
        assert!(
            !out.contains("hyper-warn") && !out.contains("ours-warn"),
            "{out}"
        );
    }

    #[test]
    fn rust_log_replaces_the_configured_filter() {
        let out = printed(LogLevel::Info, Some("warn,kube_client=debug"));
        assert!(
            out.contains("kube-dup") && out.contains("ours-warn"),
            "{out}"
        );
        assert!(!out.contains("ours-info"), "{out}");
        // Empty or invalid: the configured filter.
        for rust_log in ["", "not a [valid filter"] {
            let out = printed(LogLevel::Info, Some(rust_log));
            assert!(
                out.contains("ours-info") && !out.contains("kube-dup"),
                "{out}"
            );
        }
    }

    #[test]
    fn config_errors_are_json_lines_with_their_file_path_and_line() {
        let buf = Buf::default();
        let out = buf.clone();
        let errors = crate::config::parse("logFormat: json\nlogLevl: info\nroute: 3\n", &|_| None)
            .unwrap_err();
        assert_eq!(errors.errors.len(), 2, "{errors}");
        config_errors_json_to(
            move || out.clone(),
            Path::new("/etc/kee/config.yaml"),
            &errors,
        );
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for (line, e) in lines.iter().zip(&errors.errors) {
            assert_eq!(line["level"], "ERROR", "{line}");
            assert_eq!(line["config"], "/etc/kee/config.yaml", "{line}");
            assert_eq!(line["yaml_path"], e.path.as_str(), "{line}");
            assert_eq!(line["line"], e.line.unwrap(), "{line}");
            assert_eq!(line["message"], e.to_string(), "{line}");
            assert!(line["timestamp"].is_string(), "{line}");
        }
        assert_eq!(lines[0]["yaml_path"], "logLevl");
        assert_eq!(lines[1]["line"], 3);
    }
}
