//! The Lease lock against kube-sim: optimistic concurrency, client-go expiry, release, and the
//! cursor riding on renewals.

mod common;

use std::time::Duration;

use kube_event_exporter::leader::cursor::StoredCursor;
use kube_event_exporter::leader::lock::{Attempt, LeaseLock};
use kube_sim::{Sim, SimConfig};

fn lock(client: &kube::Client, id: &str, lease: Duration) -> LeaseLock {
    LeaseLock::new(client.clone(), "default", "exporter", id, lease)
}

fn cursor(rv: &str, epoch: i32) -> StoredCursor {
    StoredCursor {
        resource_version: rv.into(),
        event_time: None,
        checked_at: None,
        epoch,
    }
}

fn leading(a: &Attempt) -> Option<(i32, bool)> {
    match a {
        Attempt::Leading {
            epoch, acquired, ..
        } => Some((*epoch, *acquired)),
        Attempt::Following { .. } => None,
    }
}

#[tokio::test]
async fn only_one_of_two_concurrent_candidates_wins_every_time() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    for round in 0..20 {
        let name = format!("race-{round}");
        let (mut a, mut b) = (
            LeaseLock::new(
                client.clone(),
                "default",
                &name,
                "a",
                Duration::from_secs(15),
            ),
            LeaseLock::new(
                client.clone(),
                "default",
                &name,
                "b",
                Duration::from_secs(15),
            ),
        );
        let (ra, rb) = tokio::join!(a.try_acquire_or_renew(None), b.try_acquire_or_renew(None));
        let winners = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|r| leading(r).is_some())
            .count();
        assert_eq!(winners, 1, "round {round}: exactly one leader");
    }
}

#[tokio::test]
async fn release_hands_over_at_once_with_the_cursor_and_a_new_epoch() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    let (mut a, mut b) = (
        lock(&client, "a", Duration::from_secs(15)),
        lock(&client, "b", Duration::from_secs(15)),
    );
    assert_eq!(
        leading(&a.try_acquire_or_renew(None).await.unwrap()),
        Some((0, true))
    );
    assert!(
        leading(&b.try_acquire_or_renew(None).await.unwrap()).is_none(),
        "held by a"
    );
    assert_eq!(
        leading(
            &a.try_acquire_or_renew(Some(&cursor("41", 0)))
                .await
                .unwrap()
        ),
        Some((0, false)),
        "renewal"
    );
    assert_eq!(
        b.read_cursor().await.unwrap(),
        Some(cursor("41", 0)),
        "the renewal carried the cursor"
    );
    assert!(a.release(Some(&cursor("42", 0))).await.unwrap());
    match b.try_acquire_or_renew(None).await.unwrap() {
        Attempt::Leading {
            epoch,
            acquired,
            cursor: c,
            ..
        } => {
            assert_eq!(
                (epoch, acquired),
                (1, true),
                "takeover increments leaseTransitions"
            );
            assert_eq!(
                c,
                Some(cursor("42", 0)),
                "the successor reads the final cursor"
            );
        }
        other => panic!("b should take over a released lease at once: {other:?}"),
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_only_after_its_duration_by_our_clock() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    let (mut a, mut b) = (
        lock(&client, "a", Duration::from_secs(1)),
        lock(&client, "b", Duration::from_secs(1)),
    );
    assert!(leading(&a.try_acquire_or_renew(None).await.unwrap()).is_some());
    // a stops renewing (crashed). b first observes the record now…
    assert!(leading(&b.try_acquire_or_renew(None).await.unwrap()).is_none());
    let observed = std::time::Instant::now();
    // …and may take it once the record has not changed for the lease duration.
    let deadline = observed + Duration::from_secs(5);
    loop {
        if let Some((epoch, _)) = leading(&b.try_acquire_or_renew(None).await.unwrap()) {
            assert_eq!(epoch, 1);
            assert!(
                observed.elapsed() >= Duration::from_secs(1),
                "took over after {:?}",
                observed.elapsed()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never took over an expired lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The deposed holder's next renewal fails with a conflict: it must learn it lost.
    assert!(
        leading(
            &a.try_acquire_or_renew(Some(&cursor("99", 0)))
                .await
                .unwrap()
        )
        .is_none()
    );
    assert_ne!(
        b.read_cursor().await.unwrap(),
        Some(cursor("99", 0)),
        "a deposed leader never writes the cursor"
    );
}

#[tokio::test]
async fn a_partitioned_holder_cannot_renew() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    let mut a = lock(&client, "a", Duration::from_secs(15));
    assert!(leading(&a.try_acquire_or_renew(None).await.unwrap()).is_some());
    sim.refuse_lease_writes(Some("a"));
    assert!(a.try_acquire_or_renew(Some(&cursor("5", 0))).await.is_err());
    sim.refuse_lease_writes(None);
    assert!(
        leading(&a.try_acquire_or_renew(None).await.unwrap()).is_some(),
        "renews again once healed"
    );
}

/// Standbys write an announcement annotation on the Lease. A holder whose renewal conflicts with
/// such writes — even several in a row — still holds the Lease: it re-reads and renews, and never
/// takes the conflict for a lost lease (which would stop delivery and make the successor replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_survive_concurrent_annotation_writes() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    let mut a = lock(&client, "a", Duration::from_secs(15));
    assert!(leading(&a.try_acquire_or_renew(None).await.unwrap()).is_some());
    // Another writer changes only an annotation, as fast as it can (no precondition: every write
    // lands and moves the resourceVersion).
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "default");
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let (leases, stop) = (leases.clone(), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0u64;
            while !stop.is_cancelled() {
                let patch = serde_json::json!({"metadata": {"annotations": {
                    kube_event_exporter::leader::lock::STANDBY_ANNOTATION: format!("b {writes}")}}});
                leases
                    .patch(
                        "exporter",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                    .unwrap();
                writes += 1;
            }
            writes
        })
    };
    let (mut renewed, mut contended) = (0, 0);
    for i in 0..200 {
        match a
            .try_acquire_or_renew(Some(&cursor(&i.to_string(), 0)))
            .await
        {
            Ok(attempt) => {
                assert_eq!(
                    leading(&attempt).map(|l| l.0),
                    Some(0),
                    "round {i}: a conflict was taken for a lost lease: {attempt:?}"
                );
                renewed += 1;
            }
            // Three conflicts in a row: a transient error the renewer retries, never "lost".
            Err(e) => {
                assert!(e.to_string().contains("409"), "{e}");
                contended += 1;
            }
        }
    }
    stop.cancel();
    let writes = writer.await.unwrap();
    assert!(writes > 50, "the annotation writer ran: {writes} writes");
    // Against a writer this fast most renewals contend; what matters is that none was taken for a
    // lost lease (checked above) and that renewals still get through.
    assert!(
        renewed > 0,
        "{renewed} renewals, {contended} contended, {writes} writes"
    );
    // Quiet again: the next renewal writes the cursor, still as holder of epoch 0.
    let last = a
        .try_acquire_or_renew(Some(&cursor("200", 0)))
        .await
        .unwrap();
    assert_eq!(leading(&last).map(|l| l.0), Some(0));
    assert_eq!(
        a.read_cursor().await.unwrap().map(|c| c.resource_version),
        Some("200".to_string())
    );
}

/// A standby whose shutdown signal comes while its acquisition is under way (the API server slow
/// to write the Lease) does not start exporting only to hand over in the middle of its first
/// list: it gives the Lease back at once, with the cursor it found, for a replica that stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_acquires_while_shutting_down_hands_the_lease_back_untouched() {
    use kube_event_exporter::leader::elector::Replica;
    use kube_event_exporter::tasks::Tasks;
    use kube_event_exporter::telemetry::{Health, Metrics};

    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = common::client(&sim);
    // A previous leader released the Lease with its final cursor.
    let mut old = lock(&client, "old", Duration::from_secs(15));
    old.try_acquire_or_renew(None).await.unwrap();
    assert!(old.release(Some(&cursor("42", 0))).await.unwrap());
    let leases_written = sim.current_resource_version();

    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        "leaderElection:\n  identity: b\n  leaseNamespace: default\n  leaseName: exporter",
        common::ROUTE_ALL,
        &["all"],
    );
    sim.stall_lease_writes(true);
    let metrics = Metrics::default();
    let replica = Replica::new(
        cfg,
        client.clone(),
        metrics.clone(),
        Health::new(Duration::from_secs(600)),
    );
    let (tasks, shutdown) = (Tasks::default(), tokio_util::sync::CancellationToken::new());
    let run = {
        let (tasks, shutdown) = (tasks.clone(), shutdown.clone());
        tokio::spawn(async move { replica.run(&tasks, &shutdown).await.map(|r| r.is_some()) })
    };
    common::eventually(Duration::from_secs(20), "b's acquisition under way", || {
        sim.stalled_lease_writes() >= 1
    })
    .await;
    shutdown.cancel();
    sim.stall_lease_writes(false);
    let leading = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the replica ends")
        .unwrap()
        .expect("no receiver error");
    assert!(
        !leading,
        "a replica shutting down returns no term to hand over"
    );
    tasks.join().await;

    // b acquired (its write went through) and released in its next write: the Lease names
    // nobody and still carries the previous leader's cursor.
    let reader = lock(&client, "reader", Duration::from_secs(15));
    assert_eq!(reader.read_cursor().await.unwrap(), Some(cursor("42", 0)));
    let lease: k8s_openapi::api::coordination::v1::Lease =
        kube::Api::namespaced(client.clone(), "default")
            .get("exporter")
            .await
            .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(""));
    assert!(
        sim.current_resource_version() >= leases_written + 2,
        "acquired, then released"
    );
    // It never started exporting: no event was asked of the API, nothing reached the receiver.
    let counts = sim.request_counts();
    let reads: Vec<_> = counts.keys().filter(|(_, r)| r == "events").collect();
    assert!(
        reads.is_empty(),
        "events read while shutting down: {reads:?}"
    );
    assert!(!dir.path().join("all.ndjson").exists());
    assert_eq!(
        common::metric(&metrics, "kube_event_exporter_leader_transitions_total"),
        0.0
    );
}
