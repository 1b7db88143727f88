//! Shards spread over replicas without a coordinator (`leaderElection.shards` > 1; docs/architecture.md,
//! "Shards"). Each shard has its own Lease, cursor and handover (`elector::Replica` runs one per
//! shard); this module decides *which* of them a replica should hold:
//!
//! ```text
//! members Lease (heartbeats) ─┐
//! shard Leases (holders) ─────┼─► Board (one list per retry period, or on a Lease change) ─► View
//!                             │                                                           │
//!                             └──────────────── balance(view, me) ◄───────────────────────┘
//!                                      may acquire a free shard? / release which shard?
//! ```
//!
//! Replicas learn who is alive from a members Lease in which each writes a heartbeat annotation;
//! a replica shutting down removes itself first, so the others take its shards as it releases
//! them. [`balance`] is a pure function: a replica takes a free shard only while it holds fewer
//! than its share and no alive replica holds fewer; it gives one up (gracefully: drain, final
//! cursor, release) only when it holds more than its share, or when another holds less than the
//! floor of it and this replica is the first of the most loaded. A shard moves only when the share
//! changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElectionConfig;
use crate::exporter::Exporter;
use crate::shard::Shard;
use crate::shutdown::{self, Outcome};
use crate::sink::SinkError;
use crate::tasks::Tasks;
use crate::telemetry::{Health, Metrics, error_chain};
use tracing::Instrument;

use super::elector::{LeaseTerm, Replica};

/// Runs one candidate per shard on `replica`'s identity until `shutdown`, then leaves the members
/// Lease and hands every held shard over at once (linger, drain, final cursor, release).
/// Err: a receiver could not start (every held shard is still handed over first).
pub async fn run(
    replica: Replica,
    le: &LeaderElectionConfig,
    client: kube::Client,
    handles: (Metrics, Health),
    tasks: &Tasks,
    shutdown: &CancellationToken,
) -> Result<Outcome, SinkError> {
    let (metrics, health) = handles;
    let board = Board::start(
        client,
        replica.namespace(),
        replica.identity(),
        le,
        metrics,
        health,
        tasks,
    );
    tracing::info!(
        identity = %replica.identity(), shards = le.shards,
        members = %members_lease(&le.lease_name),
        "sharded: a candidate for each shard's lease"
    );
    // A receiver that cannot start stops every shard, as it stops the one Lease unsharded.
    let stop = shutdown.child_token();
    let runs = Shard::all(le.shards).map(|shard| {
        let candidate = replica.for_shard(shard, board.gate());
        let stop = &stop;
        async move {
            let r = candidate.run(tasks, stop).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }
        .instrument(tracing::info_span!("shard", shard = %shard))
    });
    let leave = async {
        stop.cancelled().await;
        board.leave().await;
    };
    let (_, results) = tokio::join!(leave, futures::future::join_all(runs));
    let mut failure = None;
    let mut held: Vec<(Shard, LeaseTerm, Exporter)> = Vec::new();
    for (shard, r) in Shard::all(le.shards).zip(results) {
        match r {
            Ok(Some((term, exporter))) => held.push((shard, term, exporter)),
            Ok(None) => {}
            Err(e) => failure = Some(e),
        }
    }
    let drain = le.drain_timeout;
    let outcomes = futures::future::join_all(held.into_iter().map(|(shard, term, exporter)| {
        shutdown::coordinate(term, exporter, drain)
            .instrument(tracing::info_span!("shard", shard = %shard))
    }))
    .await;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(if outcomes.contains(&Outcome::Lost) {
        Outcome::Lost
    } else {
        Outcome::Done
    })
}

/// Annotation of the members Lease: a JSON object of identity → RFC 3339 time of its last heartbeat.
pub const MEMBERS_ANNOTATION: &str = "kube-event-exporter.io/members";

/// The members Lease of `lease_name`.
pub fn members_lease(lease_name: &str) -> String {
    format!("{lease_name}-members")
}

/// What one replica should do about the shards, given who is alive and who holds what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// It may take a free shard.
    pub may_acquire: bool,
    /// It should hand this shard over (one at a time).
    pub release: Option<u32>,
}

/// The pure decision. `alive`: the replicas heard from lately (`me` is added); `holders[i]`: who
/// holds shard i (None: free or expired); `mine`: the shards `me` holds and is not releasing.
pub fn balance(
    shards: u32,
    me: &str,
    alive: &BTreeSet<String>,
    holders: &[Option<String>],
    mine: &BTreeSet<u32>,
) -> Balance {
    let mut members: BTreeMap<&str, usize> = alive.iter().map(|m| (m.as_str(), 0)).collect();
    members.insert(me, 0);
    for h in holders.iter().flatten() {
        if let Some(c) = members.get_mut(h.as_str()) {
            *c += 1;
        }
    }
    members.insert(me, mine.len());
    let n = members.len();
    let total = shards as usize;
    let (lo, hi) = (total / n, total.div_ceil(n));
    let held = mine.len();
    let least = members.values().copied().min().unwrap_or(0);
    let most = members.values().copied().max().unwrap_or(0);
    let first_of_most = members.iter().find(|(_, c)| **c == most).map(|(m, _)| *m);
    // Someone below the floor takes a free shard first: giving one up then would move two.
    let none_free = holders.iter().all(Option::is_some);
    let someone_starved = none_free && members.values().any(|c| *c < lo);
    let release = if held > hi || (held > lo && someone_starved && first_of_most == Some(me)) {
        mine.iter().next_back().copied()
    } else {
        None
    };
    Balance {
        may_acquire: release.is_none() && held < hi && held <= least,
        release,
    }
}

/// The shared picture every replica's shards decide from.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Replicas whose heartbeat changed within a lease duration (by this replica's clock).
    pub alive: BTreeSet<String>,
    /// Per shard: the holder, while its Lease is held and not expired.
    pub holders: Vec<Option<String>>,
    /// Per shard: the Lease record as listed and when it was first seen unchanged (what the lock
    /// judges expiry from), None when the Lease does not exist.
    pub records: Vec<Option<(LeaseSpec, Instant)>>,
    /// Set once the first list succeeded.
    pub listed: bool,
}

/// A replica's handle on the board: the view, what it holds, and its decisions.
#[derive(Clone)]
pub struct Gate {
    pub identity: String,
    shards: u32,
    view: watch::Receiver<View>,
    held: Arc<Mutex<Held>>,
    metrics: Metrics,
    /// Fires when this replica starts leaving: it stops taking shards.
    leaving: CancellationToken,
}

#[derive(Default)]
struct Held {
    shards: BTreeSet<u32>,
    /// Shards a candidate of this replica is trying to take: counted as held, so two candidates
    /// deciding at once do not both take this replica past its share.
    acquiring: BTreeSet<u32>,
    releasing: BTreeSet<u32>,
    /// A shard this replica just gave up is not taken back until the view has moved on.
    released_at: BTreeMap<u32, Instant>,
}

impl Gate {
    /// This replica's decision now.
    fn decide(&self, view: &View) -> Balance {
        self.decide_with(view, &self.held.lock().expect("held lock"))
    }

    fn decide_with(&self, view: &View, held: &Held) -> Balance {
        let mine: BTreeSet<u32> = held
            .shards
            .union(&held.acquiring)
            .filter(|s| !held.releasing.contains(s))
            .copied()
            .collect();
        let mut b = balance(
            self.shards,
            &self.identity,
            &view.alive,
            &view.holders,
            &mine,
        );
        if !held.releasing.is_empty() {
            // One hand-over at a time; decide again once it is done.
            b.release = None;
            b.may_acquire = false;
        }
        b
    }

    /// Waits until `shard` is free (released, expired or never created) and this replica may take
    /// it; returns the Lease record as seen, for the lock's expiry clock. None: leaving.
    pub async fn wait_to_acquire(&self, shard: Shard) -> Option<Option<(LeaseSpec, Instant)>> {
        let mut view = self.view.clone();
        loop {
            if self.leaving.is_cancelled() {
                return None;
            }
            {
                let v = view.borrow_and_update();
                let i = shard.index as usize;
                let mut held = self.held.lock().expect("held lock");
                let recent = held
                    .released_at
                    .get(&shard.index)
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                let free = v.listed && v.holders[i].is_none() && !recent;
                if free && self.decide_with(&v, &held).may_acquire {
                    held.acquiring.insert(shard.index);
                    return Some(v.records[i].clone());
                }
            }
            tokio::select! {
                _ = self.leaving.cancelled() => return None,
                r = view.changed() => if r.is_err() { return None },
            }
        }
    }

    /// Fires when the balance asks this replica to hand `shard` over; it is then marked releasing.
    pub async fn release_wanted(&self, shard: Shard) {
        let mut view = self.view.clone();
        loop {
            {
                let v = view.borrow_and_update();
                if self.decide(&v).release == Some(shard.index) {
                    self.held
                        .lock()
                        .expect("held lock")
                        .releasing
                        .insert(shard.index);
                    return;
                }
            }
            if view.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether another replica is alive to take over (a leaving replica lingers only then).
    pub fn others_alive(&self) -> bool {
        self.view.borrow().alive.iter().any(|m| *m != self.identity)
    }

    /// The attempt `wait_to_acquire` allowed did not take the shard (someone was first).
    pub fn not_acquired(&self, shard: Shard) {
        self.held
            .lock()
            .expect("held lock")
            .acquiring
            .remove(&shard.index);
    }

    /// This replica now leads `shard` (true) or no longer does (false).
    pub fn set_held(&self, shard: Shard, leading: bool) {
        let mut held = self.held.lock().expect("held lock");
        held.acquiring.remove(&shard.index);
        if leading {
            held.shards.insert(shard.index);
        } else if held.shards.remove(&shard.index) {
            if held.releasing.remove(&shard.index) {
                self.metrics.rebalances.inc();
            }
            held.released_at.insert(shard.index, Instant::now());
        }
        self.metrics.shards_held.set(held.shards.len() as i64);
        self.metrics
            .is_leader
            .set(i64::from(!held.shards.is_empty()));
    }
}

/// The board: lists the Leases, keeps this replica's heartbeat on the members Lease, publishes
/// the [`View`]. Runs on `tasks` until the process joins; [`Board::leave`] removes the heartbeat.
pub struct Board {
    leave: CancellationToken,
    left: Arc<tokio::sync::Notify>,
    gate: Gate,
}

struct Observer {
    api: Api<Lease>,
    identity: String,
    lease_duration: Duration,
    shard_names: Vec<String>,
    members_name: String,
    /// Per shard Lease: its record and when first seen so.
    records: Vec<Option<(LeaseSpec, Instant)>>,
    /// Per member: its heartbeat value and when first seen so.
    beats: BTreeMap<String, (String, Instant)>,
    last_beat: Option<Instant>,
}

impl Board {
    /// Starts the board's task on `tasks`.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        identity: &str,
        le: &LeaderElectionConfig,
        metrics: Metrics,
        health: Health,
        tasks: &Tasks,
    ) -> Board {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let shard_names: Vec<String> = Shard::all(le.shards)
            .map(|s| s.lease_name(&le.lease_name))
            .collect();
        let members_name = members_lease(&le.lease_name);
        let (tx, rx) = watch::channel(View {
            holders: vec![None; le.shards as usize],
            records: vec![None; le.shards as usize],
            ..View::default()
        });
        let leaving = CancellationToken::new();
        let left = Arc::new(tokio::sync::Notify::new());
        let gate = Gate {
            identity: identity.to_string(),
            shards: le.shards,
            view: rx,
            held: Arc::default(),
            metrics: metrics.clone(),
            leaving: leaving.clone(),
        };
        metrics.shards_held.set(0);
        let mut observer = Observer {
            api: api.clone(),
            identity: identity.to_string(),
            lease_duration: le.lease_duration,
            shard_names,
            members_name: members_name.clone(),
            records: vec![None; le.shards as usize],
            beats: BTreeMap::new(),
            last_beat: None,
        };
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut names: BTreeSet<String> = observer.shard_names.iter().cloned().collect();
        names.insert(members_name.clone());
        let watcher = watch_leases(api.clone(), names, changed.clone(), le.retry_period);
        let retry = le.retry_period;
        let joining = tasks.joining();
        let leave = leaving.clone();
        let left_tx = left.clone();
        let held = gate.held.clone();
        tasks.spawn(async move {
            let mut watcher = std::pin::pin!(watcher);
            let mut left = false;
            loop {
                match observer.round(!leave.is_cancelled()).await {
                    Ok(view) => {
                        tx.send_replace(view);
                        // Live while the board turns; ready from here while no shard's source
                        // speaks for the API (each does, for its own reads, once held).
                        health.heartbeat();
                        if held.lock().expect("held lock").shards.is_empty() {
                            health.set_api_ok(true);
                        }
                    }
                    Err(e) => {
                        if held.lock().expect("held lock").shards.is_empty() {
                            health.set_api_ok(false);
                        }
                        tracing::warn!(error = %error_chain(&e), "reading the shard leases failed; retrying")
                    }
                }
                tokio::select! {
                    _ = joining.cancelled() => break,
                    _ = leave.cancelled(), if !left => {
                        observer.leave().await;
                        left = true;
                        left_tx.notify_waiters();
                    }
                    _ = &mut watcher => {}
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
        Board {
            leave: leaving,
            left,
            gate,
        }
    }

    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Stops taking shards and removes this replica's heartbeat, so the others count it gone and
    /// take its shards as it releases them.
    pub async fn leave(&self) {
        let notified = self.left.notified();
        self.leave.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
    }
}

impl Observer {
    /// One list of the Leases (and a heartbeat when due): the view now.
    async fn round(&mut self, beat: bool) -> Result<View, kube::Error> {
        let listed = self.api.list(&ListParams::default()).await?;
        let now = Instant::now();
        let mut by_name: BTreeMap<String, Lease> = listed
            .items
            .into_iter()
            .filter_map(|l| l.metadata.name.clone().map(|n| (n, l)))
            .collect();
        let mut holders = Vec::with_capacity(self.shard_names.len());
        for (i, name) in self.shard_names.iter().enumerate() {
            let spec = by_name
                .get(name)
                .map(|l| l.spec.clone().unwrap_or_default());
            let slot = &mut self.records[i];
            match spec {
                None => *slot = None,
                Some(spec) => {
                    if slot.as_ref().is_none_or(|(r, _)| *r != spec) {
                        *slot = Some((spec, now));
                    }
                }
            }
            holders.push(slot.as_ref().and_then(|(spec, seen)| {
                let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
                let duration =
                    Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
                (*seen + duration > now).then_some(holder)
            }));
        }
        let members = by_name.remove(&self.members_name);
        let beats = members.as_ref().map(read_beats).unwrap_or_default();
        let stale_before = jiff::Timestamp::now() - 3 * self.lease_duration;
        self.beats.retain(|m, _| beats.contains_key(m));
        for (member, value) in &beats {
            if self.beats.get(member).is_none_or(|(v, _)| v != value) {
                self.beats.insert(member.clone(), (value.clone(), now));
            }
        }
        let mut alive: BTreeSet<String> = self
            .beats
            .iter()
            .filter(|(_, (value, seen))| {
                let recent = value
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t > stale_before);
                recent && seen.elapsed() < self.lease_duration
            })
            .map(|(m, _)| m.clone())
            .collect();
        if beat {
            alive.insert(self.identity.clone());
            let due = self
                .last_beat
                .is_none_or(|t| t.elapsed() >= self.lease_duration / 3);
            if due {
                match self
                    .write_beats(members, Some(jiff::Timestamp::now()))
                    .await
                {
                    Ok(()) => self.last_beat = Some(Instant::now()),
                    Err(e) => {
                        tracing::debug!(error = %e, "heartbeat on the members lease failed; next round")
                    }
                }
            }
        }
        Ok(View {
            alive,
            holders,
            records: self.records.clone(),
            listed: true,
        })
    }

    /// Writes this replica's heartbeat (`at`) or removes it (None), pruning long-dead members;
    /// the members Lease is created when missing. A conflict is retried by the next round.
    async fn write_beats(
        &self,
        current: Option<Lease>,
        at: Option<jiff::Timestamp>,
    ) -> Result<(), kube::Error> {
        let prune_before = jiff::Timestamp::now() - 10 * self.lease_duration;
        let mut beats = current.as_ref().map(read_beats).unwrap_or_default();
        beats.retain(|_, v| v.parse::<jiff::Timestamp>().is_ok_and(|t| t > prune_before));
        match at {
            Some(t) => {
                beats.insert(self.identity.clone(), t.to_string());
            }
            None => {
                beats.remove(&self.identity);
            }
        }
        let value = serde_json::to_string(&beats).expect("a map of strings serializes");
        match current {
            Some(mut lease) => {
                lease
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(MEMBERS_ANNOTATION.to_string(), value);
                let name = self.members_name.clone();
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.members_name.clone()),
                        annotations: Some(BTreeMap::from([(
                            MEMBERS_ANNOTATION.to_string(),
                            value,
                        )])),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec::default()),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Removes this replica's heartbeat (a few tries: a conflict is another member's beat).
    async fn leave(&mut self) {
        for _ in 0..3 {
            let current = match self.api.get_opt(&self.members_name).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "shutdown: reading the members lease failed");
                    continue;
                }
            };
            if current.is_none() {
                return;
            }
            match self.write_beats(current, None).await {
                Ok(()) => {
                    tracing::info!(identity = %self.identity, "shutdown: left the members lease; the other replicas take this one's shards as it releases them");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "leaving the members lease; trying again"),
            }
        }
        tracing::warn!(identity = %self.identity, "shutdown: could not leave the members lease; the others count this replica until its heartbeat is a lease duration old");
    }
}

/// Who a Lease is in the hands of: a shard's holder, or the members of the members Lease.
fn hands_of(lease: &Lease) -> Vec<String> {
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let mut hands: Vec<String> = read_beats(lease).into_keys().collect();
    hands.extend(holder);
    hands
}

fn read_beats(lease: &Lease) -> BTreeMap<String, String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MEMBERS_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Wakes `changed` when one of `names` changes hands (a shard's holder, or who is in the
/// members Lease), so the board reads at once: a release is taken over in milliseconds, not a
/// retry period later. Renewals and heartbeats, which change nothing the board decides on, wait
/// for its periodic read (every replica reacting to every renewal would list the Leases several
/// times a second).
async fn watch_leases(
    api: Api<Lease>,
    names: BTreeSet<String>,
    changed: Arc<tokio::sync::Notify>,
    retry: Duration,
) {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let wp = WatchParams::default().timeout(290);
        match api.watch(&wp, "0").await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    let (lease, gone) = match ev {
                        Ok(WatchEvent::Added(l) | WatchEvent::Modified(l)) => (l, false),
                        Ok(WatchEvent::Deleted(l)) => (l, true),
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    let Some(name) = lease.metadata.name.clone().filter(|n| names.contains(n))
                    else {
                        continue;
                    };
                    let hands = if gone { Vec::new() } else { hands_of(&lease) };
                    if seen.get(&name) != Some(&hands) {
                        seen.insert(name, hands);
                        changed.notify_one();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "lease watch failed; polling meanwhile"),
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn holders(of: &[Option<&str>]) -> Vec<Option<String>> {
        of.iter().map(|h| h.map(str::to_string)).collect()
    }

    fn mine(of: &[u32]) -> BTreeSet<u32> {
        of.iter().copied().collect()
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let b = balance(6, "a", &set(&[]), &holders(&[None; 6]), &mine(&[0, 1, 2]));
        assert_eq!(
            b,
            Balance {
                may_acquire: true,
                release: None
            }
        );
        let b = balance(
            6,
            "a",
            &set(&["a"]),
            &holders(&[Some("a"); 6]),
            &mine(&[0, 1, 2, 3, 4, 5]),
        );
        assert!(!b.may_acquire && b.release.is_none());
    }

    #[test]
    fn a_newcomer_gets_a_share_from_replicas_over_it() {
        let h = holders(&[
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
        ]);
        let alive = set(&["a", "b", "c"]);
        // Share 2: both over it give one up (their last), the newcomer may take.
        assert_eq!(
            balance(6, "a", &alive, &h, &mine(&[0, 1, 2])).release,
            Some(2)
        );
        assert_eq!(
            balance(6, "b", &alive, &h, &mine(&[3, 4, 5])).release,
            Some(5)
        );
        let c = balance(6, "c", &alive, &h, &mine(&[]));
        assert!(c.may_acquire && c.release.is_none());
    }

    #[test]
    fn with_an_uneven_share_only_the_first_of_the_most_loaded_gives_one_up() {
        // 6 shards over 4: shares of 1 or 2. d holds none, below the floor.
        let h = holders(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let alive = set(&["a", "b", "c", "d"]);
        assert_eq!(balance(6, "a", &alive, &h, &mine(&[0, 1])).release, Some(1));
        assert_eq!(balance(6, "b", &alive, &h, &mine(&[2, 3])).release, None);
        assert_eq!(balance(6, "c", &alive, &h, &mine(&[4, 5])).release, None);
        assert!(balance(6, "d", &alive, &h, &mine(&[])).may_acquire);
        // Once d holds one, nobody is below the floor: no more moves.
        let h = holders(&[
            Some("a"),
            Some("d"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        for (who, held) in [
            ("a", vec![0]),
            ("b", vec![2, 3]),
            ("c", vec![4, 5]),
            ("d", vec![1]),
        ] {
            let b = balance(6, who, &alive, &h, &mine(&held));
            assert_eq!(b.release, None, "{who}");
            // Only those below the ceiling of the share could take a shard (none is free).
            assert_eq!(b.may_acquire, held.len() < 2, "{who}");
        }
    }

    #[test]
    fn nobody_gives_a_shard_up_for_a_starved_replica_while_one_is_free() {
        // a already gave one up for d; until d takes it, b (now the first of the most loaded)
        // must not give up another.
        let h = holders(&[Some("a"), None, Some("b"), Some("b"), Some("c"), Some("c")]);
        let alive = set(&["a", "b", "c", "d"]);
        assert_eq!(balance(6, "b", &alive, &h, &mine(&[2, 3])).release, None);
        assert!(balance(6, "d", &alive, &h, &mine(&[])).may_acquire);
        assert!(
            !balance(6, "a", &alive, &h, &mine(&[0])).may_acquire,
            "d holds fewer"
        );
    }

    #[test]
    fn orphaned_shards_go_to_the_least_loaded_survivors_up_to_their_share() {
        // c died: its two shards expired (None). Survivors hold 2 each; share is now 3.
        let h = holders(&[Some("a"), Some("a"), Some("b"), Some("b"), None, None]);
        let alive = set(&["a", "b"]);
        assert!(balance(6, "a", &alive, &h, &mine(&[0, 1])).may_acquire);
        // a took one: it is now above b, so b takes the other.
        let h = holders(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("a"), None]);
        assert!(!balance(6, "a", &alive, &h, &mine(&[0, 1, 4])).may_acquire);
        assert!(balance(6, "b", &alive, &h, &mine(&[2, 3])).may_acquire);
    }

    #[test]
    fn a_replica_that_left_is_not_counted_and_its_shards_go_to_the_others() {
        // c is leaving (not alive) but still holds its shards while it drains: a and b may take
        // them once released, up to 3 each.
        let h = holders(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let alive = set(&["a", "b"]);
        let a = balance(6, "a", &alive, &h, &mine(&[0, 1]));
        assert!(a.may_acquire && a.release.is_none());
    }

    #[test]
    fn stable_spreads_never_move() {
        for (shards, spread) in [
            (6u32, vec![2usize, 2, 2]),
            (6, vec![2, 2, 1, 1]),
            (5, vec![2, 2, 1]),
            (4, vec![1, 1, 1, 1, 0, 0]),
        ] {
            let names: Vec<String> = (0..spread.len()).map(|i| format!("r{i}")).collect();
            let alive: BTreeSet<String> = names.iter().cloned().collect();
            let mut h = Vec::new();
            let mut owned: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); spread.len()];
            for (r, n) in spread.iter().enumerate() {
                for _ in 0..*n {
                    owned[r].insert(h.len() as u32);
                    h.push(Some(names[r].clone()));
                }
            }
            assert_eq!(h.len(), shards as usize);
            for (r, name) in names.iter().enumerate() {
                let b = balance(shards, name, &alive, &h, &owned[r]);
                assert_eq!(b.release, None, "{shards} over {spread:?}: {name} releases");
            }
        }
    }
}
