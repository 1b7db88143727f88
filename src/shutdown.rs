//! Signals: the first SIGTERM, SIGINT or SIGHUP asks for a graceful shutdown (a token every stage
//! can watch); a second one exits at once with status 130 — the committed cursor makes that
//! at-least-once, never lossy. SIGHUP is graceful too: its default action would end the leader
//! without releasing the Lease, and the successor would wait for it to expire and replay.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit status after a second signal.
pub const FORCED_EXIT: i32 = 130;

/// Installs the handlers and returns the token cancelled by the first signal.
pub fn install() -> anyhow::Result<CancellationToken> {
    let mut signals = Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
    };
    let requested = CancellationToken::new();
    let token = requested.clone();
    tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(signal = first, "shutdown requested");
        token.cancel();
        let second = signals.next().await;
        tracing::warn!(
            signal = second,
            "second signal: exiting at once; the successor replays what was not acknowledged"
        );
        std::process::exit(FORCED_EXIT);
    });
    Ok(requested)
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
