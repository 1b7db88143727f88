//! The replica lifecycle under leader election (DESIGN §3):
//!
//! standby ──acquire──► leading ──lost lease──► standby
//!                         │
//!                      SIGTERM ──► linger (keep exporting and renewing) ──► drain (renewing)
//!                                  ──► release with the final cursor, in one write ──► join ──► exit 0
//!
//! While leading, every renewal also stores the delivery cursor. A leader that cannot renew within
//! `renewDeadline`, or finds someone else holding the Lease, stops delivering at once and never
//! writes again — its successor (which can only take over after `leaseDuration` > `renewDeadline`)
//! resumes from the last committed cursor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, WatchEvent, WatchParams};
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::cursor::StoredCursor;
use super::lock::{Attempt, Freed, LeaseLock};
use crate::config::{Config, LeaderElectionConfig};
use crate::exporter::{Exporter, Handles};
use crate::progress::Tracker;
use crate::sink::Receivers;
use crate::source::Start;
use crate::telemetry::{Health, Metrics, error_chain};

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Lease namespace: configured, else the service account's, else `$POD_NAMESPACE`, else `default`.
pub fn lease_namespace(cfg: &LeaderElectionConfig) -> String {
    cfg.lease_namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
        })
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// Identity: configured, else `$POD_NAME`, else the hostname plus a random suffix (two processes on
/// one host must never share an identity).
pub fn identity(cfg: &LeaderElectionConfig) -> String {
    cfg.identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "kube-event-exporter".to_string());
            format!("{host}-{:06x}", rand::rng().random_range(0..0x100_0000u32))
        })
}

enum Outcome {
    Lost(Lost),
    ShutdownRequested,
}

/// Why a leader stopped leading without a release.
#[derive(Debug, Clone)]
struct Lost {
    reason: String,
    /// The last failed renewal's error (a 500, a timeout, a refused connection), if any.
    last_error: Option<String>,
    last_renewal: jiff::Timestamp,
}

pub struct Replica {
    cfg: Config,
    client: kube::Client,
    metrics: Metrics,
    health: Health,
    identity: String,
    namespace: String,
}

impl Replica {
    pub fn new(cfg: Config, client: kube::Client, metrics: Metrics, health: Health) -> Self {
        let identity = identity(&cfg.leader_election);
        let namespace = lease_namespace(&cfg.leader_election);
        Self {
            cfg,
            client,
            metrics,
            health,
            identity,
            namespace,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Runs until `shutdown` fires (and, as leader, the handover completes).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let le = self.cfg.leader_election.clone();
        let mut lock = LeaseLock::new(
            self.client.clone(),
            &self.namespace,
            &le.lease_name,
            &self.identity,
            le.lease_duration,
        );
        let changed = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_lease(
            Api::namespaced(self.client.clone(), &self.namespace),
            le.lease_name.clone(),
            changed.clone(),
            le.retry_period,
        ));
        tracing::info!(identity = %self.identity, lease = %format!("{}/{}", self.namespace, le.lease_name), "candidate for the lease");
        let result = self.lifecycle(&mut lock, &changed, &shutdown).await;
        watcher.abort();
        result
    }

    async fn lifecycle(
        &self,
        lock: &mut LeaseLock,
        changed: &Notify,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let le = &self.cfg.leader_election;
        loop {
            // Standby: try whenever the Lease changes, and every retry period as a fallback.
            let standby_since = Instant::now();
            let mut following: Option<String> = None;
            let (epoch, cursor, previous_renew, previous_holder, freed) = loop {
                if shutdown.is_cancelled() {
                    tracing::info!(identity = %self.identity, "shutdown: standby exits");
                    return Ok(());
                }
                match lock.try_acquire_or_renew(None).await {
                    Ok(Attempt::Leading {
                        epoch,
                        cursor,
                        previous_renew,
                        previous_holder,
                        freed,
                        ..
                    }) => {
                        // A released Lease names nobody: the holder we last followed released it.
                        let previous_holder = match (&previous_holder, &following) {
                            (p, Some(f)) if p.is_empty() => f.clone(),
                            _ => previous_holder,
                        };
                        break (epoch, cursor, previous_renew, previous_holder, freed);
                    }
                    Ok(Attempt::Following { holder }) => {
                        if !holder.is_empty() && following.as_deref() != Some(holder.as_str()) {
                            tracing::info!(
                                transition = "standby", identity = %self.identity, holder = %holder,
                                "standing by: the lease is held by another replica"
                            );
                            following = Some(holder);
                        }
                        // Ready once the Lease is observed and this standby announced on it, so a
                        // leader shut down after our readiness knows it has a successor.
                        match lock.announce_standby().await {
                            Ok(true) => self.health.set_api_ok(true),
                            Ok(false) => {}
                            Err(e) => {
                                self.health.set_api_ok(false);
                                tracing::warn!(error = %error_chain(&e), "announcing this standby on the lease failed; retrying");
                            }
                        }
                    }
                    Err(e) => {
                        self.health.set_api_ok(false);
                        tracing::warn!(error = %error_chain(&e), "lease read/acquire failed; retrying");
                    }
                }
                self.health.heartbeat();
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(le.retry_period) => {}
                }
            };
            self.health.set_api_ok(true);
            self.metrics.is_leader.set(1);
            self.metrics.leader_transitions.inc();
            // Takeover: from the previous holder's last write (its release, or its last renewal before
            // it died) to now — the time nobody exported.
            let takeover = previous_renew.map(|t| {
                jiff::Timestamp::now()
                    .duration_since(t)
                    .as_secs_f64()
                    .max(0.0)
            });
            if let Some(t) = takeover {
                self.metrics.takeover_seconds.set(t);
            }
            tracing::info!(
                transition = "acquired", identity = %self.identity, previous_holder = %previous_holder,
                why = freed.as_str(), epoch,
                cursor = cursor.as_ref().map(|c| c.resource_version.as_str()).unwrap_or(""),
                standby_ms = standby_since.elapsed().as_millis() as u64,
                takeover_ms = takeover.filter(|_| freed != Freed::FirstHolder).map(|t| (t * 1000.0) as u64),
                "acquired lease"
            );
            let start = match &cursor {
                Some(c) => Start::Resume(c.position()),
                None => Start::Cold,
            };
            let tasks = TaskTracker::new();
            let abort = CancellationToken::new();
            let receivers =
                match Receivers::start(&self.cfg.receivers, &self.metrics, &tasks, abort.clone())
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        // Hand the lease back untouched so a healthy replica can lead.
                        let _ = lock.release(cursor.as_ref()).await;
                        self.metrics.is_leader.set(0);
                        return Err(anyhow::Error::new(e).context("starting receivers"));
                    }
                };
            let handles = Handles {
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                tasks,
                abort,
            };
            let exporter =
                Exporter::start(&self.cfg, self.client.clone(), receivers, start, handles);
            let tracker = exporter.tracker().clone();
            let mut renewer = Renewer::new(le, epoch, tracker);

            let outcome = tokio::select! {
                lost = renewer.keep(lock, std::future::pending::<()>()) => match lost {
                    Err(lost) => Outcome::Lost(lost),
                    Ok(()) => unreachable!("a pending future never completes"),
                },
                _ = shutdown.cancelled() => Outcome::ShutdownRequested,
            };
            match outcome {
                Outcome::Lost(lost) => {
                    self.metrics.is_leader.set(0);
                    self.metrics.leader_transitions.inc();
                    self.log_lost(epoch, &lost, "stopped delivering, back to standby");
                    // Stop at once: nothing more is delivered or committed; the successor replays.
                    exporter.shutdown(Duration::ZERO).await;
                    lock.forget();
                }
                Outcome::ShutdownRequested => return self.hand_over(lock, exporter, renewer).await,
            }
        }
    }

    /// Linger, drain, release with the final cursor, join.
    async fn hand_over(
        &self,
        lock: &mut LeaseLock,
        exporter: Exporter,
        mut renewer: Renewer,
    ) -> anyhow::Result<()> {
        let le = &self.cfg.leader_election;
        let started = Instant::now();
        let linger = self.linger(lock).await;
        tracing::info!(identity = %self.identity, epoch = renewer.epoch, linger_ms = linger.as_millis() as u64, "shutdown: lingering");
        if let Err(lost) = renewer.keep(lock, tokio::time::sleep(linger)).await {
            self.log_lost(
                renewer.epoch,
                &lost,
                "while lingering; stopping without committing",
            );
            exporter.shutdown(Duration::ZERO).await;
            self.metrics.is_leader.set(0);
            return Ok(());
        }
        let lingered = started.elapsed();
        tracing::info!(identity = %self.identity, epoch = renewer.epoch, in_flight = exporter.tracker().in_flight(), "shutdown: draining");
        let drain = le.drain_timeout;
        let (report, renewed) = {
            let shutdown = exporter.shutdown(drain);
            tokio::pin!(shutdown);
            let mut report = None;
            let renewed = renewer
                .keep(lock, async {
                    report = Some((&mut shutdown).await);
                })
                .await;
            let report = match report {
                Some(r) => r,
                // Lost the lease mid-drain: finish joining, but do not commit.
                None => shutdown.await,
            };
            (report, renewed)
        };
        self.metrics.is_leader.set(0);
        if let Err(lost) = renewed {
            self.log_lost(
                renewer.epoch,
                &lost,
                "while draining; not committing the cursor",
            );
            return Ok(());
        }
        let drained_in = started.elapsed().saturating_sub(lingered);
        let cursor = report
            .cursor
            .position
            .as_ref()
            .map(|p| StoredCursor::new(p, renewer.epoch));
        match lock.release(cursor.as_ref()).await {
            Ok(true) => tracing::info!(
                transition = "released", identity = %self.identity, epoch = renewer.epoch,
                cursor = cursor.as_ref().map(|c| c.resource_version.as_str()).unwrap_or(""),
                drained = report.drained, pending = report.in_flight,
                linger_ms = linger.as_millis() as u64, drain_ms = drained_in.as_millis() as u64,
                handover_ms = started.elapsed().as_millis() as u64,
                "released lease"
            ),
            Ok(false) => {
                tracing::warn!(identity = %self.identity, "lease was taken over before release; cursor not written")
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "releasing the lease failed; the successor takes over after it expires")
            }
        }
        Ok(())
    }

    /// How long to keep exporting after a shutdown signal: the configured linger, unless no standby
    /// has announced itself on the Lease lately — then nobody would take over during it.
    async fn linger(&self, lock: &LeaseLock) -> Duration {
        let le = &self.cfg.leader_election;
        if le.shutdown_linger.is_zero() {
            return Duration::ZERO;
        }
        // Standbys announce every half lease duration; allow a missed one.
        match lock.standby_seen(le.lease_duration + le.retry_period).await {
            Ok(Some(_)) => le.shutdown_linger,
            Ok(None) => {
                tracing::info!(
                    identity = %self.identity,
                    "shutdown: no standby has announced itself on the lease; skipping the linger"
                );
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "shutdown: could not read the lease for standbys; lingering");
                le.shutdown_linger
            }
        }
    }

    fn log_lost(&self, epoch: i32, lost: &Lost, what: &str) {
        tracing::error!(
            transition = "lost", identity = %self.identity, epoch, reason = %lost.reason,
            last_error = lost.last_error.as_deref().unwrap_or(""),
            last_renewal = %lost.last_renewal,
            "lost lease; {what}"
        );
    }
}

/// Renews the Lease every retry period, storing the cursor, while a future runs.
struct Renewer {
    retry_period: Duration,
    renew_deadline: Duration,
    epoch: i32,
    tracker: Tracker,
    /// The last successful write: the renew deadline counts from here.
    last_success: Instant,
    /// The error of the last failed attempt since the last success.
    last_error: Option<String>,
    next_attempt: Instant,
    written: Option<StoredCursor>,
}

impl Renewer {
    fn new(le: &LeaderElectionConfig, epoch: i32, tracker: Tracker) -> Self {
        Self {
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
    async fn keep(
        &mut self,
        lock: &mut LeaseLock,
        work: impl Future<Output = ()>,
    ) -> Result<(), Lost> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                _ = &mut work => return Ok(()),
                _ = tokio::time::sleep_until(self.next_attempt) => {}
            }
            self.renew_once(lock).await?;
        }
    }

    async fn renew_once(&mut self, lock: &mut LeaseLock) -> Result<(), Lost> {
        self.try_renew(lock).await.map_err(|reason| Lost {
            reason,
            last_error: self.last_error.clone(),
            // The wall-clock time of the last success, for the log line.
            last_renewal: jiff::Timestamp::now()
                .checked_sub(self.last_success.elapsed())
                .unwrap_or_else(|_| jiff::Timestamp::now()),
        })
    }

    async fn try_renew(&mut self, lock: &mut LeaseLock) -> Result<(), String> {
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
                    return Err(format!(
                        "lease was re-acquired with a new epoch {epoch} (was {})",
                        self.epoch
                    ));
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
            Ok(Ok(Attempt::Following { holder })) => {
                Err(format!("lease is now held by {holder:?}"))
            }
            Ok(Err(e)) => {
                let error = error_chain(&e);
                self.last_error = Some(error.clone());
                if Instant::now() >= deadline {
                    Err("no successful renewal within the renew deadline".to_string())
                } else {
                    tracing::warn!(error = %error, "lease renewal failed; retrying");
                    // Retry sooner than a full period, while the deadline allows.
                    self.next_attempt = (Instant::now() + self.retry_period / 2).min(deadline);
                    Ok(())
                }
            }
            Err(_) => {
                // The attempt in flight timed out; an earlier attempt's error says more.
                self.last_error
                    .get_or_insert_with(|| "request timed out".to_string());
                Err("no successful renewal within the renew deadline".to_string())
            }
        }
    }
}

/// Wakes `changed` on every change of our Lease, so a standby reacts to a release in milliseconds.
async fn watch_lease(api: Api<Lease>, name: String, changed: Arc<Notify>, retry: Duration) {
    loop {
        let wp = WatchParams::default().timeout(290);
        match api.watch(&wp, "0").await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(
                            WatchEvent::Added(l) | WatchEvent::Modified(l) | WatchEvent::Deleted(l),
                        ) if l.metadata.name.as_deref() == Some(name.as_str()) => {
                            changed.notify_one()
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "lease watch failed; polling meanwhile"),
        }
        tokio::time::sleep(retry).await;
    }
}
