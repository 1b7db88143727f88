//! A client-go compatible Lease lock with optimistic concurrency.
//!
//! Every write is a `replace` carrying the resourceVersion we last read (or a `create`), so two
//! candidates can never both win: the loser gets 409 and re-reads. Expiry follows client-go: a
//! record is expired when it has not changed for its `leaseDurationSeconds` *by our own clock*
//! since we first saw it, so clock skew between replicas does not matter.
//!
//! The delivery cursor rides in an annotation and is written by the same request as the renewal.
//! Standbys announce themselves in another annotation (a write every half lease duration), so a
//! leader shutting down knows whether anyone will take over and whether lingering is worth it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::cursor::{ANNOTATION, StoredCursor};

/// Read-decide-write rounds one attempt makes while the Lease names us but keeps changing.
const CONFLICT_RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lease {namespace}/{name}: changed under us {attempts} times in a row (409 Conflict)")]
    Contended {
        namespace: String,
        name: String,
        attempts: u32,
    },
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Annotation in which standbys announce themselves: `{identity} {RFC 3339 time}`.
pub const STANDBY_ANNOTATION: &str = "kube-event-exporter.io/standby";

/// Why the Lease could be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freed {
    /// No Lease existed: we created it.
    FirstHolder,
    /// The previous holder released it (empty holder).
    Released,
    /// The previous holder stopped renewing for its lease duration (by our clock).
    Expired,
    /// It named us already (a restart under the same identity).
    Ours,
}

impl Freed {
    pub fn as_str(self) -> &'static str {
        match self {
            Freed::FirstHolder => "first holder",
            Freed::Released => "released",
            Freed::Expired => "expired",
            Freed::Ours => "held by this identity before",
        }
    }
}

/// The outcome of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// We hold the Lease. `epoch` is its `leaseTransitions`; `acquired` is true when this attempt took
    /// it (then `cursor` is what the previous holder left, and `previous_renew` its last write).
    Leading {
        epoch: i32,
        acquired: bool,
        cursor: Option<StoredCursor>,
        previous_renew: Option<jiff::Timestamp>,
        /// When `acquired`: who held it before (empty if nobody) and why it was free.
        previous_holder: String,
        freed: Freed,
    },
    /// Someone else holds it (empty if it is being created concurrently).
    Following { holder: String },
}

/// The leader-election record (the Lease's spec) as first seen, and when. Only the holder's
/// writes change the spec; annotations (a standby's announcement) do not, so they never postpone
/// an expiry — as client-go compares the record, not the resourceVersion.
struct Observed {
    record: LeaseSpec,
    at: Instant,
}

pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
    /// The Lease as we last wrote it while holding it.
    held: Option<Lease>,
    observed: Option<Observed>,
    /// The Lease as last read while someone else held it (a standby announces on this version).
    followed: Option<Lease>,
    /// When this replica last announced itself as a standby.
    announced: Option<Instant>,
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            held: None,
            observed: None,
            followed: None,
            announced: None,
        }
    }

    fn err(&self, source: kube::Error) -> LockError {
        LockError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// The Lease as it is now (None: it does not exist).
    async fn read(&self) -> Result<Option<Lease>, LockError> {
        self.api.get_opt(&self.name).await.map_err(|e| self.err(e))
    }

    fn duration_secs(&self) -> i32 {
        self.lease_duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }

    /// The Lease's record was first seen as `record` at `at` (by the shard board, which lists
    /// every Lease): the expiry clock runs from then, not from this lock's first read.
    pub fn assume_observed(&mut self, record: LeaseSpec, at: Instant) {
        if self.observed.as_ref().is_none_or(|o| o.record != record) {
            self.observed = Some(Observed { record, at });
        }
    }

    /// Forget that we hold the lease (after losing it): the next attempt re-reads.
    pub fn forget(&mut self) {
        self.held = None;
    }

    /// Renews if we hold the Lease, else acquires it if it is free or expired. `cursor`, when
    /// given, is written in the same request.
    pub async fn try_acquire_or_renew(
        &mut self,
        cursor: Option<&StoredCursor>,
    ) -> Result<Attempt, LockError> {
        // A conflict on a Lease that still names us is another replica's annotation write (a
        // standby's announcement), not a lost lease: read and write again.
        for _ in 0..CONFLICT_RETRIES {
            if let Some(attempt) = self.attempt(cursor).await? {
                return Ok(attempt);
            }
        }
        Err(LockError::Contended {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            attempts: CONFLICT_RETRIES,
        })
    }

    /// One read-decide-write. None: our write conflicted although the Lease names us.
    async fn attempt(
        &mut self,
        cursor: Option<&StoredCursor>,
    ) -> Result<Option<Attempt>, LockError> {
        if let Some(held) = self.held.clone() {
            let mut lease = held;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now_micro());
            spec.lease_duration_seconds = Some(self.duration_secs());
            set_cursor(&mut lease, cursor);
            match self.write(&lease).await? {
                Some(epoch) => {
                    return Ok(Some(Attempt::Leading {
                        epoch,
                        acquired: false,
                        cursor: None,
                        previous_renew: None,
                        previous_holder: self.identity.clone(),
                        freed: Freed::Ours,
                    }));
                }
                // Someone else wrote the Lease: re-read and re-decide below.
                None => self.held = None,
            }
        }
        let current = self.read().await?;
        let Some(current) = current else {
            return self.create(cursor).await.map(Some);
        };
        let now = Instant::now();
        let spec = current.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|o| o.record != spec) {
            self.observed = Some(Observed {
                record: spec.clone(),
                at: now,
            });
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record_duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let observed_at = self.observed.as_ref().map(|o| o.at).unwrap_or(now);
        let held_by_other = !holder.is_empty() && holder != self.identity;
        if held_by_other && observed_at + record_duration > now {
            self.followed = Some(current);
            return Ok(Some(Attempt::Following { holder }));
        }
        self.followed = None;
        let freed = if holder.is_empty() {
            Freed::Released
        } else if held_by_other {
            Freed::Expired
        } else {
            Freed::Ours
        };
        // Free, expired, or ours (e.g. we restarted under the same identity): take it.
        let previous_cursor = current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
            .and_then(|s| match StoredCursor::decode(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, value = %s, "ignoring a malformed cursor annotation on the lease");
                    None
                }
            });
        let mut lease = current;
        let transitions = spec.lease_transitions.unwrap_or(0);
        let taking_over = holder != self.identity;
        let stamp = now_micro();
        let new_spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.duration_secs());
        new_spec.renew_time = Some(stamp.clone());
        if taking_over {
            new_spec.acquire_time = Some(stamp);
            new_spec.lease_transitions = Some(transitions + 1);
        }
        if let Some(c) = cursor {
            set_cursor(&mut lease, Some(c));
        }
        match self.write(&lease).await? {
            Some(epoch) => Ok(Some(Attempt::Leading {
                epoch,
                acquired: true,
                cursor: previous_cursor,
                previous_renew: spec.renew_time.as_ref().map(|t| t.0),
                previous_holder: holder,
                freed,
            })),
            None if freed == Freed::Ours => Ok(None),
            None => Ok(Some(Attempt::Following { holder })),
        }
    }

    /// Writes `lease`, its resourceVersion the precondition; then we hold what was written, and
    /// its epoch is returned. None: someone else wrote the Lease first (409).
    async fn write(&mut self, lease: &Lease) -> Result<Option<i32>, LockError> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(written) => {
                let epoch = epoch_of(&written);
                self.held = Some(written);
                Ok(Some(epoch))
            }
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn create(&mut self, cursor: Option<&StoredCursor>) -> Result<Attempt, LockError> {
        let stamp = now_micro();
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_secs()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        set_cursor(&mut lease, cursor);
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.held = Some(written);
                Ok(Attempt::Leading {
                    epoch: 0,
                    acquired: true,
                    cursor: None,
                    previous_renew: None,
                    previous_holder: String::new(),
                    freed: Freed::FirstHolder,
                })
            }
            Err(e) if is_conflict(&e) => Ok(Attempt::Following {
                holder: String::new(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up in one write that also stores the final cursor: empty holder and a
    /// 1 s duration, as client-go's ReleaseOnCancel, so a standby takes over at once.
    /// Returns false if we no longer held it (someone else wrote it since).
    pub async fn release(&mut self, cursor: Option<&StoredCursor>) -> Result<bool, LockError> {
        let Some(mut lease) = self.held.take() else {
            return Ok(false);
        };
        // A conflict may only be a standby's announcement: re-read, and release if still ours.
        for _ in 0..CONFLICT_RETRIES {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now_micro());
            set_cursor(&mut lease, cursor);
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(self.err(e)),
            }
            let current = self.read().await?;
            match current {
                Some(l) if holder_of(&l) == self.identity => lease = l,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// As a standby: records on the Lease (last read by `try_acquire_or_renew`) that this replica
    /// stands by, at most every half lease duration. A conflict (the leader renewed meanwhile) is
    /// not an error: the next call tries again. Ok(true) when the announcement is on the Lease.
    pub async fn announce_standby(&mut self) -> Result<bool, LockError> {
        let fresh = self
            .announced
            .is_some_and(|at| at.elapsed() < self.lease_duration / 2);
        if fresh {
            return Ok(true);
        }
        let Some(mut lease) = self.followed.take() else {
            return Ok(false);
        };
        let value = format!("{} {}", self.identity, jiff::Timestamp::now());
        lease
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(STANDBY_ANNOTATION.to_string(), value);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.announced = Some(Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// As the leader: the identity of a standby that announced itself within `within`, if any
    /// (a read of the Lease).
    pub async fn standby_seen(&self, within: Duration) -> Result<Option<String>, LockError> {
        let lease = self.read().await?;
        let announced = lease
            .and_then(|l| l.metadata.annotations)
            .and_then(|a| a.get(STANDBY_ANNOTATION).cloned());
        Ok(announced.and_then(|v| {
            let (identity, at) = v.split_once(' ')?;
            let at: jiff::Timestamp = at.parse().ok()?;
            let age = jiff::Timestamp::now().duration_since(at).unsigned_abs();
            (identity != self.identity && age <= within).then(|| identity.to_string())
        }))
    }

    /// The cursor currently stored on the Lease (a read, for standbys and tools).
    pub async fn read_cursor(&self) -> Result<Option<StoredCursor>, LockError> {
        let lease = self.read().await?;
        Ok(lease
            .and_then(|l| l.metadata.annotations)
            .and_then(|a| a.get(ANNOTATION).cloned())
            .and_then(|s| StoredCursor::decode(&s).ok()))
    }
}

fn holder_of(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

fn epoch_of(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

fn set_cursor(lease: &mut Lease, cursor: Option<&StoredCursor>) {
    if let Some(c) = cursor {
        lease
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION.to_string(), c.encode());
    }
}
