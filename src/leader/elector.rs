//! The replica lifecycle under leader election (docs/architecture.md, "Leadership and handover"):
//!
//! standby ──acquire──► leading ──lost lease──► standby
//!                         │
//!                      SIGTERM ──► the Lease term, ended by `shutdown::coordinate`
//!
//! While leading, every renewal also stores the delivery cursor. A leader that cannot renew within
//! `renewDeadline`, or finds someone else holding the Lease, stops delivering at once and never
//! writes again — its successor (which can only take over after `leaseDuration` > `renewDeadline`)
//! resumes from the last committed cursor. After a shutdown signal the replica hands its term over
//! as a [`LeaseTerm`]: what the coordinator needs to keep renewing while it lingers and drains, and
//! to release the Lease with the final cursor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, WatchEvent, WatchParams};
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cursor::StoredCursor;
use super::lock::{Attempt, Freed, LeaseLock};
use super::renewer::{Lost, Renewer};
use super::shards::Gate;
use crate::config::{Config, LeaderElectionConfig};
use crate::exporter::{Exporter, Handles};
use crate::progress::Position;
use crate::shard::Shard;
use crate::shutdown::{Release, Term};
use crate::sink::SinkError;
use crate::source::Start;
use crate::tasks::Tasks;
use crate::telemetry::{Health, Metrics, error_chain};

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Lease namespace: configured, else the service account's, else `$POD_NAMESPACE`, else `default`.
fn lease_namespace(cfg: &LeaderElectionConfig) -> String {
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
fn identity(cfg: &LeaderElectionConfig) -> String {
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

pub struct Replica {
    cfg: Config,
    client: kube::Client,
    metrics: Metrics,
    health: Health,
    identity: String,
    namespace: String,
    lease_name: String,
    /// Sharded: the shard this candidate leads and the board that says when it may.
    sharded: Option<(Shard, Gate)>,
}

impl Replica {
    pub fn new(cfg: Config, client: kube::Client, metrics: Metrics, health: Health) -> Self {
        let identity = identity(&cfg.leader_election);
        let namespace = lease_namespace(&cfg.leader_election);
        let lease_name = cfg.leader_election.lease_name.clone();
        Self {
            cfg,
            client,
            metrics,
            health,
            identity,
            namespace,
            lease_name,
            sharded: None,
        }
    }

    /// This replica's identity in the Leases.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The namespace of its Leases.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The candidate for `shard`'s Lease in this replica (same identity), gated by `gate`.
    pub fn for_shard(&self, shard: Shard, gate: Gate) -> Replica {
        Replica {
            cfg: self.cfg.clone(),
            client: self.client.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            identity: self.identity.clone(),
            namespace: self.namespace.clone(),
            lease_name: shard.lease_name(&self.cfg.leader_election.lease_name),
            sharded: Some((shard, gate)),
        }
    }

    /// Leading (or no longer): `is_leader`, or the shard's place among those held.
    fn set_leading(&self, leading: bool) {
        set_leading(&self.metrics, self.sharded.as_ref(), leading);
    }

    /// Stands by and leads until `shutdown` fires. Then a standby is done (None); a leader returns
    /// its term and its exporter, still exporting and renewing, for `shutdown::coordinate` to end.
    /// Err: the receivers could not start (the Lease was handed back untouched).
    pub async fn run(
        self,
        tasks: &Tasks,
        shutdown: &CancellationToken,
    ) -> Result<Option<(LeaseTerm, Exporter)>, SinkError> {
        let le = &self.cfg.leader_election;
        let mut lock = LeaseLock::new(
            self.client.clone(),
            &self.namespace,
            &self.lease_name,
            &self.identity,
            le.lease_duration,
        );
        let changed = Arc::new(Notify::new());
        // Sharded, the board watches every shard's Lease and wakes the candidates.
        if self.sharded.is_none() {
            let watcher = watch_lease(
                Api::namespaced(self.client.clone(), &self.namespace),
                self.lease_name.clone(),
                changed.clone(),
                le.retry_period,
            );
            let joining = tasks.joining();
            tasks.spawn(async move {
                tokio::select! {
                    _ = watcher => {}
                    _ = joining.cancelled() => {}
                }
            });
        }
        tracing::info!(identity = %self.identity, lease = %format!("{}/{}", self.namespace, self.lease_name), "candidate for the lease");
        loop {
            let Some((epoch, cursor)) = self.stand_by(&mut lock, &changed, shutdown).await else {
                return Ok(None);
            };
            let start = match &cursor {
                Some(c) => Start::Resume(c.position()),
                None => Start::Cold,
            };
            let handles = Handles {
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                tasks: tasks.clone(),
            };
            let shard = self.sharded.as_ref().map(|(s, _)| *s);
            let exporter =
                match Exporter::start_shard(&self.cfg, self.client.clone(), start, handles, shard)
                    .await
                {
                    Ok(e) => e,
                    Err(e) => {
                        // Hand the lease back untouched so a healthy replica can lead.
                        let _ = lock.release(cursor.as_ref()).await;
                        self.set_leading(false);
                        return Err(e);
                    }
                };
            let mut renewer = Renewer::new(le, &self.identity, epoch, exporter.tracker().clone());
            // Sharded, the board may ask for the shard back (a rebalance) before any signal.
            let rebalance = async {
                match &self.sharded {
                    Some((shard, gate)) => gate.release_wanted(*shard).await,
                    None => std::future::pending().await,
                }
            };
            let until = async {
                tokio::select! {
                    _ = shutdown.cancelled() => false,
                    _ = rebalance => true,
                }
            };
            match renewer.keep(&mut lock, until).await {
                Ok(rebalancing) => {
                    let term = LeaseTerm {
                        le: le.clone(),
                        metrics: self.metrics.clone(),
                        lock,
                        renewer,
                        sharded: self.sharded.clone(),
                        rebalancing,
                    };
                    if !rebalancing {
                        return Ok(Some((term, exporter)));
                    }
                    // Hand this shard over as at a shutdown (without a linger: the replica that
                    // takes it is up), then stand by again.
                    tracing::info!(identity = %self.identity, "rebalance: handing this shard over");
                    let drain = le.drain_timeout;
                    crate::shutdown::coordinate(term, exporter, drain).await;
                    lock = LeaseLock::new(
                        self.client.clone(),
                        &self.namespace,
                        &self.lease_name,
                        &self.identity,
                        le.lease_duration,
                    );
                }
                Err(lost) => {
                    self.set_leading(false);
                    self.metrics.leader_transitions.inc();
                    lost.log("stopped delivering, back to standby");
                    // Stop at once: nothing more is delivered or committed; the successor replays.
                    exporter.abort().await;
                    lock.forget();
                }
            }
        }
    }

    /// Standby until this replica acquires the Lease: its epoch and the cursor the previous holder
    /// left. None when `shutdown` fires first (a standby exits at once).
    async fn stand_by(
        &self,
        lock: &mut LeaseLock,
        changed: &Notify,
        shutdown: &CancellationToken,
    ) -> Option<(i32, Option<StoredCursor>)> {
        let le = &self.cfg.leader_election;
        // Try whenever the Lease changes, and every retry period as a fallback.
        let standby_since = Instant::now();
        let mut following: Option<String> = None;
        let (epoch, cursor, previous_renew, previous_holder, freed) = loop {
            if shutdown.is_cancelled() {
                tracing::info!(identity = %self.identity, "shutdown: standby exits");
                return None;
            }
            if let Some((shard, gate)) = &self.sharded {
                // Only a free shard this replica's share allows; the lock judges expiry from when
                // the board first saw the Lease's record.
                let record = tokio::select! {
                    _ = shutdown.cancelled() => None,
                    r = gate.wait_to_acquire(*shard) => r,
                };
                let Some(record) = record else {
                    tracing::debug!(identity = %self.identity, "shutdown: shard candidate exits");
                    return None;
                };
                if let Some((spec, seen)) = record {
                    lock.assume_observed(spec, seen);
                }
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
                    if shutdown.is_cancelled() {
                        // The signal came while this attempt was under way (a slow API server):
                        // starting to export now would only hand over again in the middle of the
                        // first list, so give the Lease back as it was.
                        let at = cursor
                            .as_ref()
                            .map(|c| c.resource_version.as_str())
                            .unwrap_or("");
                        match lock.release(cursor.as_ref()).await {
                            Ok(true) => tracing::info!(
                                identity = %self.identity, epoch, cursor = at,
                                "shutdown: acquired the lease while shutting down; handed it back untouched"
                            ),
                            Ok(false) => tracing::info!(
                                identity = %self.identity, epoch, cursor = at,
                                "shutdown: acquired the lease while shutting down; another replica wrote it since, nothing to hand back"
                            ),
                            Err(e) => tracing::warn!(
                                identity = %self.identity, epoch, cursor = at, error = %error_chain(&e),
                                "shutdown: acquired the lease while shutting down and could not hand it back; a standby takes over when it expires, from the same cursor"
                            ),
                        }
                        return None;
                    }
                    // A released Lease names nobody: the holder we last followed released it.
                    let previous_holder = match (&previous_holder, &following) {
                        (p, Some(f)) if p.is_empty() => f.clone(),
                        _ => previous_holder,
                    };
                    break (epoch, cursor, previous_renew, previous_holder, freed);
                }
                Ok(Attempt::Following { holder }) => {
                    if let Some((shard, gate)) = &self.sharded {
                        gate.not_acquired(*shard);
                    }
                    if !holder.is_empty() && following.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            transition = "standby", identity = %self.identity, holder = %holder,
                            "standing by: the lease is held by another replica"
                        );
                        following = Some(holder);
                    }
                    if self.sharded.is_some() {
                        // The board's view was behind the Lease; it is read again meanwhile.
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(le.retry_period) => {}
                        }
                        continue;
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
                    if let Some((shard, gate)) = &self.sharded {
                        gate.not_acquired(*shard);
                    }
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
        self.set_leading(true);
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
        Some((epoch, cursor))
    }
}

/// A leader's term after the shutdown signal: the Lease it keeps renewing (with the cursor) while
/// the coordinator lingers and drains, then releases with the final cursor.
pub struct LeaseTerm {
    le: LeaderElectionConfig,
    metrics: Metrics,
    lock: LeaseLock,
    renewer: Renewer,
    sharded: Option<(Shard, Gate)>,
    /// Handed over to rebalance the shards, not for a shutdown.
    rebalancing: bool,
}

fn set_leading(metrics: &Metrics, sharded: Option<&(Shard, Gate)>, leading: bool) {
    match sharded {
        Some((shard, gate)) => gate.set_held(*shard, leading),
        None => {
            metrics.is_leader.set(i64::from(leading));
        }
    }
}

impl Term for LeaseTerm {
    fn identity(&self) -> Option<&str> {
        Some(&self.renewer.identity)
    }

    fn epoch(&self) -> Option<i32> {
        Some(self.renewer.epoch)
    }

    /// The configured linger, unless no standby has announced itself on the Lease lately — then
    /// nobody would take over during it.
    async fn linger(&mut self) -> Duration {
        let le = &self.le;
        if le.shutdown_linger.is_zero() || self.rebalancing {
            return Duration::ZERO;
        }
        // Sharded, every other alive replica is a successor (it takes shards as they are freed).
        if let Some((_, gate)) = &self.sharded {
            return if gate.others_alive() {
                le.shutdown_linger
            } else {
                Duration::ZERO
            };
        }
        // Standbys announce every half lease duration; allow a missed one.
        match self
            .lock
            .standby_seen(le.lease_duration + le.retry_period)
            .await
        {
            Ok(Some(_)) => le.shutdown_linger,
            Ok(None) => {
                tracing::info!(
                    identity = %self.renewer.identity,
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

    async fn keep_renewing_while<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Lost> {
        let kept = self.renewer.keep(&mut self.lock, work).await;
        if kept.is_err() {
            set_leading(&self.metrics, self.sharded.as_ref(), false);
        }
        kept
    }

    async fn release(&mut self, cursor: Option<&Position>) -> Release {
        set_leading(&self.metrics, self.sharded.as_ref(), false);
        let cursor = cursor.map(|p| StoredCursor::new(p, self.renewer.epoch));
        match self.lock.release(cursor.as_ref()).await {
            Ok(true) => Release::Released,
            Ok(false) => Release::TakenOver,
            Err(e) => Release::Failed(e),
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
