//! Single-replica delivery against kube-sim over HTTP: every generated occurrence exported exactly
//! once (lost 0, duplicated 0) through cold start, steady watch with repeats, and API faults.

mod common;

use kube_event_exporter::shutdown::Outcome;

use std::time::Duration;

use common::{ROUTE_ALL, Running, config, init};
use kube_event_exporter::source::Start;
use kube_sim::{Generator, GeneratorConfig, Sim, SimConfig};

fn gen_cfg(rate: f64, total: u64) -> GeneratorConfig {
    GeneratorConfig {
        rate_per_sec: rate,
        total: Some(total),
        repeat_ratio: 0.3,
        namespaces: 6,
        seed: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_watch_exports_every_occurrence_including_repeats_once() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "maxEventAgeSeconds: 60\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g: Generator = sim.generate(gen_cfg(400.0, 600));
    g.wait().await;
    let generated = g.generated();
    assert!(
        generated.iter().any(|k| !k.ends_with(":1")),
        "the generator made repeats"
    );
    let (d, outcome) = run.finish("all", &generated, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
}

/// Config for the fault tests: everything to `all`, generous API rate, short backoff ceiling.
fn all_cfg(dir: &std::path::Path) -> kube_event_exporter::config::Config {
    config(
        dir,
        "maxEventAgeSeconds: 60\nkubeQPS: 1000\nkubeBurst: 1000\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_pages_the_list_and_exports_only_young_events() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // 1100 events: three pages of 500. Only the 400 young ones are exported.
    let old = Generator::seed_old_events(&sim, 700, Duration::from_secs(3600), 1);
    let young = Generator::seed_old_events(&sim, 400, Duration::ZERO, 2);
    assert_eq!((old.len(), young.len()), (700, 400));
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    let (d, outcome) = run.finish("all", &young, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
    let lists = sim
        .request_counts()
        .get(&("list".to_string(), "events".to_string()))
        .copied()
        .unwrap_or(0);
    assert!(lists >= 3, "the list was paged: {lists} list requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_filter_never_applies_to_live_watch_events() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "maxEventAgeSeconds: 1\nkubeQPS: 1000\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    // Events whose last occurrence was an hour ago, arriving live (e.g. a late recorder): exported.
    let late = Generator::seed_old_events(&sim, 20, Duration::from_secs(3600), 3);
    let (d, _) = run.finish("all", &late, Duration::from_secs(20)).await;
    assert!(d.is_exact(), "{}", d.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resume_without_loss_or_duplicates() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let g = sim.generate(gen_cfg(300.0, 900));
    for threshold in [150, 300, 450, 600, 750] {
        common::eventually(Duration::from_secs(20), "generator progress", || {
            g.count() >= threshold
        })
        .await;
        sim.drop_watches();
    }
    g.wait().await;
    let (d, outcome) = run
        .finish("all", &g.generated(), Duration::from_secs(30))
        .await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
    let watches = sim.request_counts()[&("watch".to_string(), "events".to_string())];
    assert!(
        watches >= 6,
        "the watch was resumed after each drop: {watches} watch requests"
    );
}

/// Keeps the exporter off the API (every request fails) while `during` runs, then lets it back.
async fn outage<F: std::future::Future<Output = ()>>(sim: &kube_sim::SimHandle, during: F) {
    sim.fail_next(u64::MAX, 500);
    sim.drop_watches();
    during.await;
    sim.fail_next(0, 500);
}

async fn relist_case(stale_empty_200: bool) -> (common::Delivery, Running, f64) {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_stale_watch_empty_200(stale_empty_200);
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let before = sim.generate(gen_cfg(0.0, 200));
    before.wait().await;
    let mut want = before.generated();
    common::eventually(Duration::from_secs(20), "first batch exported", || {
        let have: std::collections::BTreeSet<String> = run.keys("all").into_iter().collect();
        want.iter().all(|k| have.contains(k))
    })
    .await;
    // While the exporter is cut off: new events and repeats, then history is compacted away.
    outage(&sim, async {
        let during = sim.generate(GeneratorConfig {
            seed: 99,
            ..gen_cfg(0.0, 150)
        });
        during.wait().await;
        want.extend(during.generated());
        sim.compact();
    })
    .await;
    let gaps_before = run.metric("kube_event_exporter_possible_gaps_total");
    let after = sim.generate(GeneratorConfig {
        seed: 100,
        ..gen_cfg(200.0, 100)
    });
    after.wait().await;
    want.extend(after.generated());
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while std::time::Instant::now() < deadline {
        let have: std::collections::BTreeSet<String> = run.keys("all").into_iter().collect();
        if want.iter().all(|k| have.contains(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = common::Delivery::compare(&want, &run.keys("all"));
    (d, run, gaps_before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_resource_version_relists_without_re_exporting() {
    init();
    let (d, run, _) = relist_case(false).await;
    // Repeats of one event during the outage collapse into its latest count: the list only has the
    // current state. Those intermediate counts are the only keys allowed to be missing.
    let missing_not_superseded = missing_without_later_count(&d);
    assert!(
        missing_not_superseded.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "{}; missing without a later count: {missing_not_superseded:?}",
        d.summary()
    );
    assert!(
        run.metric("kube_event_exporter_possible_gaps_total") >= 1.0,
        "the 410 is counted as a possible gap"
    );
    assert!(run.metric("kube_event_exporter_relists_total") >= 2.0);
    run.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_watch_answered_with_empty_200_relists() {
    init();
    let (d, run, _) = relist_case(true).await;
    let missing_not_superseded = missing_without_later_count(&d);
    assert!(
        missing_not_superseded.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "{}; missing without a later count: {missing_not_superseded:?}",
        d.summary()
    );
    let text = run.metrics.encode();
    assert!(
        text.contains("watch_restarts_total{cause=\"stale\"}"),
        "stale watch detected:\n{text}"
    );
    // The history was gone as surely as after a 410: repeats in it may be superseded.
    assert!(
        run.metric("kube_event_exporter_possible_gaps_total") >= 1.0,
        "a stale watch is counted as a possible gap"
    );
    run.stop(Duration::from_secs(5)).await;
}

/// A quiet cluster on a real API server: events have no watch bookmarks, so the watch's position
/// stays at the last event while other writes (Lease renewals) move the revision and compaction,
/// on a timer, drops the history after it. The periodic reconnect of the watch then gets 410 and
/// relists. Nothing was missed, so no possible gap is counted (the alert on it used to fire on
/// every quiet cluster); the relist after an outage in which repeats collapsed still counts one
/// (`expired_resource_version_relists_without_re_exporting`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_cluster_whose_history_is_compacted_reconnects_without_a_possible_gap() {
    init();
    let sim = Sim::start(SimConfig {
        compaction_interval: Some(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let first = sim.generate(gen_cfg(200.0, 100));
    first.wait().await;
    let mut want = first.generated();
    run.wait_for_keys("all", &want, Duration::from_secs(20))
        .await;
    // Quiet: only other writes move the revision, until compaction passes the last event.
    let last_event = sim.current_resource_version();
    common::eventually(
        Duration::from_secs(10),
        "compaction past the last event",
        || {
            sim.other_write();
            sim.compacted_resource_version() > last_event
        },
    )
    .await;
    // The watch has been open (quiet) for more than the second a stale one lasts; the server
    // ends it, as it does every few minutes.
    tokio::time::sleep(kube_event_exporter::source::phase::QUICK_CLOSE).await;
    sim.drop_watches();
    common::eventually(Duration::from_secs(20), "the relist", || {
        run.metric("kube_event_exporter_relists_total") >= 2.0
    })
    .await;
    assert!(run.metric("kube_event_exporter_watch_restarts_total{cause=\"expired\"}") >= 1.0);
    assert_eq!(
        run.metric("kube_event_exporter_possible_gaps_total"),
        0.0,
        "a relist that can have missed nothing is no possible gap"
    );
    let after = sim.generate(GeneratorConfig {
        seed: 8,
        ..gen_cfg(200.0, 200)
    });
    after.wait().await;
    want.extend(after.generated());
    let (d, _) = run.finish("all", &want, Duration::from_secs(30)).await;
    assert!(d.is_exact(), "{}", d.summary());
}

/// Lost keys `uid:n` for which no `uid:m` with m > n was exported either: real losses. A lost
/// `uid:n` with an exported `uid:m>n` is a repeat that happened while history was gone.
fn missing_without_later_count(d: &common::Delivery) -> Vec<String> {
    let exported_max = |uid: &str| -> i64 {
        d.exported_keys
            .iter()
            .filter_map(|k| k.rsplit_once(':'))
            .filter(|(u, _)| *u == uid)
            .filter_map(|(_, c)| c.parse().ok())
            .max()
            .unwrap_or(0)
    };
    d.lost
        .iter()
        .filter(|k| {
            let (uid, n) = k.rsplit_once(':').unwrap();
            exported_max(uid) <= n.parse::<i64>().unwrap()
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_429_and_500_bursts_lose_nothing() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let g = sim.generate(gen_cfg(300.0, 900));
    common::eventually(Duration::from_secs(20), "progress", || g.count() >= 200).await;
    sim.fail_next(5, 429);
    sim.drop_watches();
    common::eventually(Duration::from_secs(20), "progress", || g.count() >= 500).await;
    // One burst at a time: the exporter has read past the first (it exported what was generated
    // during it) before the second starts, so each costs at most five backoffs (~6 s), not ten
    // in a row (~2 min) — which the finish below would not wait for.
    run.wait_for_keys("all", &g.generated(), Duration::from_secs(30))
        .await;
    sim.fail_next(5, 500);
    sim.drop_watches();
    g.wait().await;
    let (d, outcome) = run
        .finish("all", &g.generated(), Duration::from_secs(60))
        .await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(outcome, Outcome::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_watch_frame_is_skipped_counted_and_nothing_else_lost() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &all_cfg(dir.path()),
        sim.kube_config(),
        Start::Cold,
        dir.path(),
    )
    .await;
    common::until_watching(&sim).await;
    let g = sim.generate(gen_cfg(300.0, 300));
    common::eventually(Duration::from_secs(20), "progress", || g.count() >= 100).await;
    sim.inject_raw_event_frame(
        "team-1",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":7}}}",
    );
    sim.inject_raw_event_frame("team-1", "this is not json");
    g.wait().await;
    let metrics = run.metrics.clone();
    let (d, _) = run
        .finish("all", &g.generated(), Duration::from_secs(30))
        .await;
    assert!(d.is_exact(), "{}", d.summary());
    let text = metrics.encode();
    assert!(
        text.contains("kube_event_exporter_malformed_frames_total 2"),
        "both bad frames counted:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_at_start_then_up() {
    init();
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    // Plain HTTP: the server's CA and token do not exist before it starts.
    let run = Running::start(
        &all_cfg(dir.path()),
        kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap()),
        Start::Cold,
        dir.path(),
    )
    .await;
    let failed = "kube_event_exporter_source_failures_total{op=\"list\",cause=\"transport\"}";
    common::eventually(Duration::from_secs(10), "list retried", || {
        run.metric(failed) >= 2.0
    })
    .await;
    assert!(
        !run.health.ready(),
        "not ready while the API server is unreachable"
    );
    // Nothing was listed: no relist is counted, and the blind source shows in the lag.
    assert_eq!(run.metric("kube_event_exporter_relists_total"), 0.0);
    common::eventually(
        Duration::from_secs(10),
        "the lag to show the blind source",
        || {
            run.metric("kube_event_exporter_source_blind_seconds") >= 1.0
                && run.metric("kube_event_exporter_cursor_lag_seconds") >= 1.0
        },
    )
    .await;
    let sim = Sim::start(SimConfig {
        port,
        tls: kube_sim::TlsMode::Off,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Occurrences from before the first list collapse into their current count (the list holds
    // only current state); generate once the exporter is up, which is what "no loss" is about.
    let health = run.health.clone();
    common::eventually(
        Duration::from_secs(30),
        "ready once the API answers",
        || health.ready(),
    )
    .await;
    let g = sim.generate(gen_cfg(300.0, 300));
    g.wait().await;
    // Reading again: the watch is open, nothing is blind.
    common::eventually(Duration::from_secs(10), "the source to read again", || {
        run.metric("kube_event_exporter_source_blind_seconds") == 0.0
    })
    .await;
    assert_eq!(run.metric("kube_event_exporter_relists_total"), 1.0);
    let (d, _) = run
        .finish("all", &g.generated(), Duration::from_secs(60))
        .await;
    assert!(d.is_exact(), "{}", d.summary());
}

/// A relist of the events of 2,000 generated occurrences after lost history, over a slow API
/// server (one second per request, so the list's pages arrive one by one): the exporter resumes
/// from a position whose history was compacted away, with the list still to read when this
/// returns.
/// Returns the run, the list's resourceVersion and the occurrence key of every listed event at
/// its current count.
async fn slow_relist(
    sim: &kube_sim::SimHandle,
    dir: &std::path::Path,
) -> (Running, String, Vec<String>) {
    let position = sim.current_resource_version().to_string();
    let generated = sim.generate(gen_cfg(0.0, 2000));
    generated.wait().await;
    sim.compact();
    let listed: Vec<String> = sim
        .list_events()
        .into_iter()
        .map(|v| {
            serde_json::from_value::<kube_event_exporter::event::Event>(v)
                .unwrap()
                .occurrence_key()
        })
        .collect();
    // Several pages of 500, and repeats among the first page's events (which a relist can only
    // export at their current count).
    assert!(listed.len() > 1000, "{} events", listed.len());
    assert!(listed[..500].iter().any(|k| !k.ends_with(":1")));
    let list_rv = sim.current_resource_version().to_string();
    sim.set_latency(Duration::from_secs(1));
    let resume = kube_event_exporter::progress::Position {
        resource_version: position.into(),
        event_time: None,
        checked_at: Some(jiff::Timestamp::now()),
    };
    // No lookups of involved objects: only the list's requests are slow.
    let cfg = config(
        dir,
        "omitLookup: true\nleaderElection: {enabled: false}",
        ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Resume(resume), dir).await;
    // The first page is delivered, the rest of the list not yet read.
    common::eventually(Duration::from_secs(20), "the first page delivered", || {
        !run.keys("all").is_empty()
    })
    .await;
    assert!(
        run.keys("all").len() < listed.len(),
        "the whole list was read already"
    );
    (run, list_rv, listed)
}

/// A shutdown that comes in the middle of a relist reads the list to its end: only the list's
/// checkpoint lets the cursor move, and a successor resuming before the list would deliver
/// everything this replica delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_in_the_middle_of_a_relist_finishes_the_list_and_moves_the_cursor() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut run, list_rv, listed) = slow_relist(&sim, dir.path()).await;
    run.exporter.stop_reading();
    let report = run.exporter.drain(Duration::from_secs(30)).await;
    assert!(report.drained);
    assert_eq!(
        report
            .cursor
            .position
            .map(|p| p.resource_version.to_string()),
        Some(list_rv),
        "the cursor is at the list's resourceVersion"
    );
    let d = common::Delivery::compare(&listed, &run.keys("all"));
    assert!(d.is_exact(), "{}", d.summary());
    // The repeats collapsed while the history was gone are said once the list is done.
    assert_eq!(run.metric("kube_event_exporter_possible_gaps_total"), 1.0);
    run.exporter.join().await;
}

/// A relist stopped at once (a lost lease) has handed on some of its events at their latest
/// count: the repeats collapsed among them are a possible gap, said though the list never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_cut_short_still_reports_the_repeats_it_collapsed() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (run, _, _) = slow_relist(&sim, dir.path()).await;
    let metrics = run.metrics.clone();
    assert_eq!(
        common::metric(&metrics, "kube_event_exporter_possible_gaps_total"),
        0.0
    );
    run.exporter.abort().await;
    assert_eq!(
        common::metric(&metrics, "kube_event_exporter_possible_gaps_total"),
        1.0,
        "the collapsed repeats the relist handed on are a possible gap"
    );
}
