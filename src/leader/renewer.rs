//! Renewing the Lease while leading, and deciding when it is lost: no successful renewal within
//! `renewDeadline`, another holder, or the Lease re-acquired under a new epoch in between. Every
//! renewal writes the delivery cursor; a lost lease is final for the term (the replica stops
//! delivering at once and never writes again).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::cursor::StoredCursor;
use super::lock::{Attempt, LeaseLock, LockError};
use crate::config::LeaderElectionConfig;
use crate::progress::Tracker;
use crate::telemetry::error_chain;

/// Why a leader stopped leading without a release.
#[derive(Debug)]
pub struct Lost {
    identity: String,
    epoch: i32,
    reason: LostReason,
    /// The last failed renewal's error (a 500, a timeout, a refused connection), if any.
    last_error: Option<RenewError>,
    last_renewal: jiff::Timestamp,
}

impl Lost {
    /// The `transition=lost` line; `what` says what the replica does about it.
    pub fn log(&self, what: &str) {
        tracing::error!(
            transition = "lost", identity = %self.identity, epoch = self.epoch, reason = %self.reason,
            last_error = self.last_error.as_ref().map(|e| error_chain(e)).unwrap_or_default(),
            last_renewal = %self.last_renewal,
            "lost lease; {what}"
        );
    }
}

#[derive(Debug, thiserror::Error)]
enum LostReason {
    /// We lost it and got it back in between: someone else may have delivered.
    #[error("lease was re-acquired with a new epoch {now} (was {was})")]
    Reacquired { now: i32, was: i32 },
    #[error("lease is now held by {0:?}")]
    HeldBy(String),
    #[error("no successful renewal within the renew deadline")]
    RenewDeadline,
}

/// A renewal that failed without losing the lease (yet).
#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("request timed out")]
    TimedOut,
}

/// Renews the Lease every retry period, storing the cursor, while a future runs.
pub struct Renewer {
    pub identity: String,
    retry_period: Duration,
    renew_deadline: Duration,
    pub epoch: i32,
    tracker: Tracker,
    /// The last successful write: the renew deadline counts from here.
    last_success: Instant,
    /// The error of the last failed attempt since the last success.
    last_error: Option<RenewError>,
    next_attempt: Instant,
    written: Option<StoredCursor>,
}

impl Renewer {
    pub fn new(le: &LeaderElectionConfig, identity: &str, epoch: i32, tracker: Tracker) -> Self {
        Self {
            identity: identity.to_string(),
            retry_period: le.retry_period,
            renew_deadline: le.renew_deadline,
            epoch,
            tracker,
            last_success: Instant::now(),
            last_error: None,
            next_attempt: Instant::now() + le.retry_period,
            written: None,
        }
    }

    /// Runs `work` to completion while renewing. Err as soon as the lease is lost (then `work` is
    /// dropped unfinished).
    pub async fn keep<T>(
        &mut self,
        lock: &mut LeaseLock,
        work: impl Future<Output = T>,
    ) -> Result<T, Lost> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tokio::time::sleep_until(self.next_attempt) => {}
            }
            self.renew_once(lock).await?;
        }
    }

    async fn renew_once(&mut self, lock: &mut LeaseLock) -> Result<(), Lost> {
        self.try_renew(lock).await.map_err(|reason| Lost {
            identity: self.identity.clone(),
            epoch: self.epoch,
            reason,
            last_error: self.last_error.take(),
            // The wall-clock time of the last success, for the log line.
            last_renewal: jiff::Timestamp::now()
                .checked_sub(self.last_success.elapsed())
                .unwrap_or_else(|_| jiff::Timestamp::now()),
        })
    }

    async fn try_renew(&mut self, lock: &mut LeaseLock) -> Result<(), LostReason> {
        let cursor = self
            .tracker
            .cursor()
            .position
            .map(|p| StoredCursor::new(&p, self.epoch));
        let deadline = self.last_success + self.renew_deadline;
        let attempt =
            tokio::time::timeout_at(deadline, lock.try_acquire_or_renew(cursor.as_ref())).await;
        match attempt {
            Ok(Ok(Attempt::Leading {
                epoch, acquired, ..
            })) => {
                if acquired && epoch != self.epoch {
                    // We lost it and got it back in between: someone else may have delivered.
                    return Err(LostReason::Reacquired {
                        now: epoch,
                        was: self.epoch,
                    });
                }
                self.last_success = Instant::now();
                self.last_error = None;
                self.next_attempt = self.last_success + self.retry_period;
                if cursor != self.written {
                    tracing::debug!(
                        cursor = cursor
                            .as_ref()
                            .map(|c| c.resource_version.as_str())
                            .unwrap_or(""),
                        "renewed"
                    );
                    self.written = cursor;
                }
                Ok(())
            }
            Ok(Ok(Attempt::Following { holder })) => Err(LostReason::HeldBy(holder)),
            Ok(Err(e)) => {
                if Instant::now() >= deadline {
                    self.last_error = Some(e.into());
                    return Err(LostReason::RenewDeadline);
                }
                tracing::warn!(error = %error_chain(&e), "lease renewal failed; retrying");
                // Retry sooner than a full period, while the deadline allows.
                self.next_attempt = (Instant::now() + self.retry_period / 2).min(deadline);
                self.last_error = Some(e.into());
                Ok(())
            }
            Err(_) => {
                // The attempt in flight timed out; an earlier attempt's error says more.
                self.last_error.get_or_insert(RenewError::TimedOut);
                Err(LostReason::RenewDeadline)
            }
        }
    }
}
