//! The shutdown coordinator (docs/architecture.md, "Leadership and handover"), top to bottom:
//!
//! ```text
//! signal ──► linger (exporting, renewing) ──► stop reading ──► drain (renewing)
//!        ──► final cursor + release ──► join this run ──► join the process
//! ```
//!
//! 1. [`install`]: the first SIGTERM, SIGINT or SIGHUP cancels a token; a second one exits at once
//!    with status 130 — the committed cursor makes that at-least-once, never lossy. The same signal
//!    again within 1 s of the first is not a second one but the same request delivered twice
//!    (`timeout` and some supervisors signal both the process and its process group): it is
//!    logged and the shutdown goes on. SIGHUP is graceful too: its default action would end the
//!    leader without releasing the Lease, and the successor would wait for it to expire and replay.
//! 2. [`coordinate`] ends one leadership [`Term`] and its exporter: keep exporting for the linger,
//!    stop reading, drain what was read through the sinks, write the final cursor while releasing
//!    the term, and join the run's tasks. Under leader election the term is the Lease (the elector
//!    keeps renewing it while we linger and drain, and reports a lost lease); without it, [`NoLease`]
//!    goes through the same steps with nothing to renew, nobody to linger for and no successor.
//! 3. [`Tasks::join`](crate::tasks::Tasks::join): every task of the process — signal handler,
//!    Lease watcher, HTTP server, and each run's source, pipeline and sinks — was spawned on one
//!    `Tasks`; the last step stops the long-lived ones and waits for all of them, so "nothing left
//!    running" is a fact, not a hope.
//!
//! A lost lease at any point aborts delivery at once and commits nothing: the successor resumes
//! from the last cursor this replica committed.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exporter::Exporter;
use crate::leader::lock::LockError;
use crate::leader::renewer::Lost;
use crate::progress::Position;
use crate::tasks::Tasks;
use crate::telemetry::error_chain;

/// Exit status after a second signal.
const FORCED_EXIT: i32 = 130;

/// The same signal again within this long of the first is the same shutdown request: one SIGTERM
/// sent to the process and to its process group arrives twice.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(1);

// ── 1. Signal ──────────────────────────────────────────────────────────────────────────────────

/// Installs the handlers (a task on `tasks`) and returns the token cancelled by the first signal.
pub fn install(tasks: &Tasks) -> std::io::Result<CancellationToken> {
    let mut signals = Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
    };
    let requested = CancellationToken::new();
    let token = requested.clone();
    let joining = tasks.joining();
    tasks.spawn(async move {
        let first = tokio::select! {
            s = signals.next() => s,
            // The process is ending without a signal (an error at start).
            _ = joining.cancelled() => return,
        };
        let first_at = Instant::now();
        tracing::info!(signal = first, "shutdown requested");
        token.cancel();
        let second = loop {
            let next = tokio::select! {
                s = signals.next() => s,
                _ = joining.cancelled() => return,
            };
            let after = first_at.elapsed();
            if !is_repeat(first, next, after) {
                break next;
            }
            tracing::info!(
                signal = next,
                after_ms = millis(after),
                "repeated signal within 1s; same shutdown request"
            );
        };
        tracing::warn!(
            signal = second,
            "second signal: exiting at once; the successor replays what was not acknowledged"
        );
        std::process::exit(FORCED_EXIT);
    });
    Ok(requested)
}

/// Whether `next`, `after` the `first` signal, repeats the same request rather than asking to
/// exit at once.
fn is_repeat(first: &str, next: &str, after: Duration) -> bool {
    next == first && after < REPEAT_WINDOW
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

// ── 2. The term a shutdown ends ────────────────────────────────────────────────────────────────

/// What a leadership term provides to its shutdown: the Lease under election
/// (`leader::elector::LeaseTerm`), or [`NoLease`].
pub trait Term {
    /// Who holds the term and its epoch, for the transition lines (None without election: the
    /// fields are left out).
    fn identity(&self) -> Option<&str>;
    fn epoch(&self) -> Option<i32>;

    /// How long to keep exporting after the signal; zero when nobody would take over meanwhile.
    fn linger(&mut self) -> impl Future<Output = Duration>;

    /// Runs `work` to completion while keeping the term (renewing the Lease, which also stores the
    /// cursor). Err as soon as the term is lost; `work` is then dropped unfinished.
    fn keep_renewing_while<T>(
        &mut self,
        work: impl Future<Output = T>,
    ) -> impl Future<Output = Result<T, Lost>>;

    /// Ends the term, handing `cursor` (where every receiver acknowledged) to the successor.
    fn release(&mut self, cursor: Option<&Position>) -> impl Future<Output = Release>;
}

/// How a term ended.
#[derive(Debug)]
pub enum Release {
    /// The Lease names nobody and carries the final cursor: a standby takes over at once.
    Released,
    /// Someone else wrote the Lease first; the cursor was not written.
    TakenOver,
    /// The write failed; the successor takes over after the Lease expires.
    Failed(LockError),
    /// No Lease, so no successor resumes where this replica stopped.
    NoSuccessor,
}

/// The term of a replica without leader election: nothing to renew, nobody to linger for (as a
/// lone replica under election), nothing to release, and no successor.
pub struct NoLease;

impl Term for NoLease {
    fn identity(&self) -> Option<&str> {
        None
    }

    fn epoch(&self) -> Option<i32> {
        None
    }

    async fn linger(&mut self) -> Duration {
        Duration::ZERO
    }

    async fn keep_renewing_while<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Lost> {
        Ok(work.await)
    }

    async fn release(&mut self, _cursor: Option<&Position>) -> Release {
        Release::NoSuccessor
    }
}

/// What the shutdown of a term achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handed over with the final cursor, or (without a successor) everything read was delivered.
    /// Also when the release itself failed: the successor then replays from the last renewal.
    Done,
    /// The lease was lost during the shutdown: nothing was committed; the successor replays.
    Lost,
    /// Without a successor, this many occurrences read from the API were never delivered.
    Undelivered(usize),
}

// ── 3. The sequence ────────────────────────────────────────────────────────────────────────────

/// Ends `term` and `exporter` after the shutdown signal: linger, stop reading, drain, release with
/// the final cursor, join the run's tasks.
pub async fn coordinate(
    mut term: impl Term,
    mut exporter: Exporter,
    drain_timeout: Duration,
) -> Outcome {
    let started = Instant::now();

    // Linger: keep exporting (and renewing) for a while, so a rolling update's new standby is
    // ready when the Lease is released and takes over within milliseconds.
    let linger = term.linger().await;
    tracing::info!(
        identity = term.identity(),
        epoch = term.epoch(),
        linger_ms = millis(linger),
        "shutdown: lingering"
    );
    if let Err(lost) = term.keep_renewing_while(tokio::time::sleep(linger)).await {
        lost.log("while lingering; stopping without committing");
        exporter.abort().await;
        return Outcome::Lost;
    }
    let lingered = started.elapsed();

    // Stop reading: nothing new enters the pipeline.
    tracing::info!(
        identity = term.identity(),
        epoch = term.epoch(),
        in_flight = exporter.tracker().in_flight(),
        "shutdown: draining"
    );
    exporter.stop_reading();

    // Drain, still renewing: everything read goes through the sinks within the drain timeout;
    // what is left then is aborted, its acks dropped, so the cursor stays before it.
    let report = match term
        .keep_renewing_while(exporter.drain(drain_timeout))
        .await
    {
        Ok(report) => report,
        Err(lost) => {
            lost.log("while draining; not committing the cursor");
            exporter.abort().await;
            return Outcome::Lost;
        }
    };
    let drained_in = started.elapsed().saturating_sub(lingered);

    let exporter_totals = exporter.receiver_totals();

    // Final cursor + release, in one write: the successor resumes exactly after what every
    // receiver acknowledged.
    let cursor = report.cursor.position.as_ref();
    let outcome = match term.release(cursor).await {
        Release::Released => {
            tracing::info!(
                transition = "released",
                identity = term.identity(),
                epoch = term.epoch(),
                cursor = cursor.map(|p| p.resource_version.as_str()).unwrap_or(""),
                drained = report.drained,
                pending = report.in_flight,
                linger_ms = millis(linger),
                drain_ms = millis(drained_in),
                handover_ms = millis(started.elapsed()),
                "released lease"
            );
            Outcome::Done
        }
        Release::TakenOver => {
            tracing::warn!(
                identity = term.identity(),
                "lease was taken over before release; cursor not written"
            );
            Outcome::Done
        }
        Release::Failed(e) => {
            tracing::error!(
                error = %error_chain(&e),
                "releasing the lease failed; the successor takes over after it expires"
            );
            Outcome::Done
        }
        Release::NoSuccessor if report.drained => {
            tracing::info!("shutdown: drained; everything read was delivered");
            Outcome::Done
        }
        Release::NoSuccessor => {
            tracing::error!(
                undelivered = report.undelivered,
                drain_timeout_ms = millis(drain_timeout),
                "shutdown: {} occurrences were not delivered within the drain timeout and are lost (no successor without leader election)",
                report.undelivered
            );
            Outcome::Undelivered(report.undelivered)
        }
    };

    // Join this run's tasks; the process-wide join (`Tasks::join`) follows.
    exporter.join().await;
    // What each receiver did, so a user can reconcile with the destination without scraping.
    for t in exporter_totals {
        tracing::info!(
            receiver = %t.receiver, sent = t.sent, failed = t.failed, dropped = t.dropped,
            pending = t.pending,
            "shutdown: receiver totals since the process started"
        );
    }
    outcome
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_signal_within_a_second_is_a_repeat() {
        let ms = Duration::from_millis;
        assert!(is_repeat("SIGTERM", "SIGTERM", ms(0)));
        assert!(is_repeat("SIGTERM", "SIGTERM", ms(999)));
        assert!(!is_repeat("SIGTERM", "SIGTERM", ms(1000)));
        assert!(!is_repeat("SIGTERM", "SIGTERM", ms(5000)));
        // Another signal is somebody else asking: it forces the exit however soon it comes.
        assert!(!is_repeat("SIGTERM", "SIGINT", ms(10)));
        assert!(!is_repeat("SIGHUP", "SIGTERM", ms(10)));
    }

    #[tokio::test]
    async fn the_process_join_waits_for_every_scope_and_stops_long_lived_tasks() {
        let tasks = Tasks::default();
        let joining = tasks.joining();
        let forever = tasks.spawn(async move { joining.cancelled().await });
        let scope = tasks.scope();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        scope.tracker().spawn(async move {
            let _ = released.await;
        });
        drop(scope);
        let join = tasks.join();
        tokio::pin!(join);
        // The scope's task still runs: the join waits for it, though the scope itself is gone.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut join)
                .await
                .is_err()
        );
        release.send(()).unwrap();
        join.await;
        assert!(forever.is_finished());
    }
}
