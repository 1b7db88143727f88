//! The cold-start boundary: occurrences that happened before the exporter's first list.
//!
//! A list shows each event at its current count only. These tests create events and repeat them
//! *before* the exporter starts (deterministically: a seeded generator run to completion first), the
//! situation of the demo run that lost `count` 1 of its first event, and check that the exporter
//! replays the API's watch history for the earlier counts, and what it promises when that history
//! is gone.

mod common;

use kube_event_exporter::shutdown::Outcome;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ROUTE_ALL, Running, config, init};
use kube_event_exporter::source::Start;
use kube_sim::{Generator, GeneratorConfig, Sim, SimConfig};

fn gen_cfg(rate: f64, total: u64, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        rate_per_sec: rate,
        total: Some(total),
        repeat_ratio: 0.4,
        namespaces: 4,
        seed,
    }
}

fn cfg(dir: &std::path::Path) -> kube_event_exporter::config::Config {
    config(
        dir,
        "maxEventAgeSeconds: 60\nkubeQPS: 1000\nkubeBurst: 1000\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    )
}

/// Generates `total` occurrences before any exporter runs; returns their keys.
async fn before_start(sim: &kube_sim::SimHandle, total: u64, seed: u64) -> Vec<String> {
    let g = sim.generate(gen_cfg(0.0, total, seed));
    g.wait().await;
    let keys = g.generated();
    let repeats = keys.iter().filter(|k| !k.ends_with(":1")).count();
    assert!(repeats > 20, "the generator repeated events: {repeats}");
    keys
}

/// The keys a list alone shows: each event at its highest count.
fn current_counts(keys: &[String]) -> Vec<String> {
    let mut max: BTreeMap<&str, u32> = BTreeMap::new();
    for k in keys {
        let (uid, n) = k.rsplit_once(':').expect("uid:count");
        let n: u32 = n.parse().expect("count");
        let e = max.entry(uid).or_default();
        *e = (*e).max(n);
    }
    max.into_iter().map(|(u, n)| format!("{u}:{n}")).collect()
}

/// Records every cursor the exporter reaches, to check it never moves backwards.
fn record_cursor(run: &Running) -> tokio::task::JoinHandle<Vec<u64>> {
    let mut rx = run.exporter.tracker().subscribe();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while rx.changed().await.is_ok() {
            let rv = rx
                .borrow()
                .position
                .as_ref()
                .map(|p| p.resource_version.clone());
            if let Some(rv) = rv {
                seen.push(rv.parse().expect("integer resourceVersion"));
            }
        }
        seen
    })
}

fn assert_monotonic(cursors: &[u64]) {
    assert!(!cursors.is_empty(), "the cursor moved");
    for w in cursors.windows(2) {
        assert!(w[0] <= w[1], "cursor moved backwards: {} → {}", w[0], w[1]);
    }
}

/// The demo's lost `count` 1, reproduced deterministically: every occurrence made before the first
/// list (repeats included) is exported once, and so is everything after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_before_the_first_list_are_exported_from_the_watch_history() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let mut want = before_start(&sim, 400, 11).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&cfg(dir.path()), sim.kube_config(), Start::Cold, dir.path()).await;
    let cursors = record_cursor(&run);
    common::until_watching(&sim).await;
    let live = sim.generate(gen_cfg(400.0, 200, 12));
    live.wait().await;
    want.extend(live.generated());
    let (d, outcome) = run.finish("all", &want, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
    assert_monotonic(&cursors.await.unwrap());
}

/// With old events in the cluster, the replay starts at the newest one before the age window, not
/// at the start of history: here history before it is compacted, and nothing is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_after_the_newest_event_older_than_the_window() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let old = Generator::seed_old_events(&sim, 50, Duration::from_secs(3600), 1);
    sim.compact();
    let want = before_start(&sim, 300, 21).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&cfg(dir.path()), sim.kube_config(), Start::Cold, dir.path()).await;
    let (d, _) = run.finish("all", &want, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert!(
        old.iter().all(|k| !d.exported_keys.contains(k)),
        "old events stay filtered"
    );
}

/// What a real API server does to a cold start: the replay's first start is an event from before
/// a quiet stretch, whose history was compacted (every 5 minutes) while only other writes moved
/// the revision; the young history is still held. The replay is answered 410, finds the earliest
/// start still served, and recovers every earlier count from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_replay_start_moves_to_the_history_still_held() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let old = Generator::seed_old_events(&sim, 50, Duration::from_secs(3600), 1);
    for _ in 0..300 {
        sim.other_write();
    }
    sim.compact();
    let held_from = sim.compacted_resource_version();
    let want = before_start(&sim, 300, 61).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&cfg(dir.path()), sim.kube_config(), Start::Cold, dir.path()).await;
    let cursors = record_cursor(&run);
    let (d, outcome) = run.finish("all", &want, Duration::from_secs(30)).await;
    assert!(
        d.is_exact(),
        "every earlier count after {held_from} is replayed: {}",
        d.summary()
    );
    assert_eq!(outcome, Outcome::Done);
    assert!(
        old.iter().all(|k| !d.exported_keys.contains(k)),
        "old events stay filtered"
    );
    assert_monotonic(&cursors.await.unwrap());
    // The 410, the probes (about log2 of the 300 revisions between), the replay from the new start.
    let watches = sim.request_counts()[&("watch".to_string(), "events".to_string())];
    assert!(watches >= 4, "{watches} watch requests");
}

/// History gone (compacted, answered with 410 or with the empty 200 of a stale watch): a cold start
/// exports every event at its current count, exactly once, and then everything live.
async fn without_history(stale_empty_200: bool) {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_stale_watch_empty_200(stale_empty_200);
    let before = before_start(&sim, 300, 31).await;
    sim.compact();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&cfg(dir.path()), sim.kube_config(), Start::Cold, dir.path()).await;
    let cursors = record_cursor(&run);
    // The replay is abandoned and the watch continues from the list: live occurrences arrive.
    let mut want = current_counts(&before);
    assert!(want.len() < before.len());
    let listed = want.clone();
    run.wait_for_keys("all", &listed, Duration::from_secs(30))
        .await;
    let live = sim.generate(gen_cfg(400.0, 200, 32));
    live.wait().await;
    want.extend(live.generated());
    let (d, outcome) = run.finish("all", &want, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
    assert_monotonic(&cursors.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_falls_back_to_current_counts_after_410() {
    init();
    without_history(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_falls_back_to_current_counts_after_an_empty_watch() {
    init();
    without_history(true).await;
}

/// The replay exports each earlier occurrence once even when the watch breaks in the middle of it
/// and resumes from inside the replayed history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_interrupted_by_broken_watches_exports_each_occurrence_once() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let want = before_start(&sim, 2000, 41).await;
    // Every watch breaks after 300 frames: the replay of ~2000 writes resumes several times.
    sim.cut_watches_after(Some(300));
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&cfg(dir.path()), sim.kube_config(), Start::Cold, dir.path()).await;
    let cursors = record_cursor(&run);
    run.wait_for_keys("all", &want, Duration::from_secs(60))
        .await;
    let watches = sim.request_counts()[&("watch".to_string(), "events".to_string())];
    assert!(
        watches >= 5,
        "the replay was resumed: {watches} watch requests"
    );
    sim.cut_watches_after(None);
    let (d, _) = run.finish("all", &want, Duration::from_secs(10)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_monotonic(&cursors.await.unwrap());
}
