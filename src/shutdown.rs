//! Signals: the first SIGTERM/SIGINT asks for a graceful shutdown (a token every stage can watch);
//! a second one exits at once with status 130 — the committed cursor makes that at-least-once, never
//! lossy.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit status after a second signal.
pub const FORCED_EXIT: i32 = 130;

/// Installs the handlers and returns the token cancelled by the first signal.
pub fn install() -> anyhow::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let requested = CancellationToken::new();
    let token = requested.clone();
    tokio::spawn(async move {
        let first = next(&mut term, &mut int).await;
        tracing::info!(signal = first, "shutdown requested");
        token.cancel();
        let second = next(&mut term, &mut int).await;
        tracing::warn!(
            signal = second,
            "second signal: exiting at once; the successor replays what was not acknowledged"
        );
        std::process::exit(FORCED_EXIT);
    });
    Ok(requested)
}

async fn next(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
