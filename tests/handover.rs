//! Leader election and handover with real exporter processes against kube-sim (docs/architecture.md,
//! "Leadership and handover"). Each scenario generates ≥ 200 occurrences/s with
//! repeats and compares every exported occurrence key (the union of all replicas' files) with the
//! generated ones; failures report lost and duplicated counts.

mod common;

use std::time::{Duration, Instant};

use common::replicas::{Cluster, Timing};
use common::scenarios::{self, Load, RATE, Target, stop_all};
use common::{Delivery, init};
use kube_sim::{GeneratorConfig, Sim, SimConfig, SimHandle};

fn generate(sim: &SimHandle, seconds: f64, seed: u64) -> kube_sim::Generator {
    scenarios::generate(sim, RATE, (RATE * seconds) as u64, seed)
}

async fn wait_count(g: &kube_sim::Generator, n: usize) {
    common::eventually(Duration::from_secs(60), "generator progress", || {
        g.count() >= n
    })
    .await;
}

/// Graceful rolling updates with the file receiver of every replica as the target.
async fn rolling(timing: Timing, rounds: usize) -> scenarios::Outcome {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let load = Load {
        timing,
        ..Load::default()
    };
    scenarios::rolling_update(&sim, Target::Archive, load, rounds, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_sigterm_with_default_linger_loses_and_duplicates_nothing() {
    init();
    let o = rolling(Timing::default(), 1).await;
    let (d, gaps) = (&o.archive, &o.takeovers);
    eprintln!(
        "graceful default linger: {}; handover gaps {gaps:?}",
        d.summary()
    );
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    assert!(
        gaps[0] <= Duration::from_secs(1),
        "standby took over {:?} after the release",
        gaps[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_sigterm_without_linger_loses_and_duplicates_nothing() {
    init();
    let o = rolling(
        Timing {
            linger: Some(Duration::ZERO),
            ..Timing::default()
        },
        1,
    )
    .await;
    let (d, gaps) = (&o.archive, &o.takeovers);
    eprintln!(
        "graceful linger 0s: {}; handover gaps {gaps:?}",
        d.summary()
    );
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(o.exits, [Some(0)]);
    assert!(gaps[0] <= Duration::from_secs(1), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rolling_restarts_in_a_row_lose_and_duplicate_nothing() {
    init();
    let o = rolling(
        Timing {
            linger: Some(Duration::from_secs(1)),
            ..Timing::default()
        },
        3,
    )
    .await;
    eprintln!(
        "three rolling restarts: {}; handover gaps {:?}",
        o.archive.summary(),
        o.takeovers
    );
    assert!(o.archive.is_exact(), "{}", o.archive.summary());
    assert_eq!(o.exits, [Some(0), Some(0), Some(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_nothing_and_duplicates_at_most_one_retry_period() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let load = Load {
        seconds: 8.0,
        ..Load::default()
    };
    let (lease, retry) = (load.timing.lease, load.timing.retry);
    let o = scenarios::sigkill(&sim, Target::Archive, load, 2).await;
    // The successor replays what was delivered since the last cursor commit: one retry period
    // of occurrences, unless the dead leader's last renewal was late on a loaded machine.
    o.assert_no_loss_and_bounded_duplicates("SIGKILL", Duration::ZERO);
    let takeover = o.takeovers[0];
    eprintln!("SIGKILL: takeover {takeover:?}");
    assert!(
        takeover <= lease + retry + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_stops_delivering_within_the_renew_deadline() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let timing = Timing::default();
    let deadline = timing.renew_deadline;
    let mut c = Cluster::new(&sim, timing);
    let mut replicas = vec![c.start("a").await, c.start("b").await];
    let leader = c
        .wait_holder(Duration::from_secs(30), |h| !h.is_empty())
        .await;
    common::until_watching(&sim).await;
    let g = generate(&sim, 10.0, 3);
    wait_count(&g, 750).await;
    sim.refuse_lease_writes(Some(&leader));
    let cut = std::time::SystemTime::now();
    let next = c
        .wait_holder(Duration::from_secs(30), |h| !h.is_empty() && h != leader)
        .await;
    let idx = replicas.iter().position(|r| r.name == leader).unwrap();
    // The old leader logs that it lost the lease and stopped; its file stops growing before then.
    common::eventually(Duration::from_secs(10), "lost lease logged", || {
        replicas[idx].log_text().contains("lost lease")
    })
    .await;
    // It says why: the writes' own error (here the API's 500), not a generic timeout.
    let lost = common::transitions(&replicas[idx].log_text())
        .into_iter()
        .find(|t| t.kind == "lost")
        .expect("a lost transition line");
    assert!(
        lost.field("last_error").contains("simulated partition"),
        "lost lease names the failed writes' error: {lost:?}"
    );
    assert!(!lost.field("last_renewal").is_empty(), "{lost:?}");
    let last_write = std::fs::metadata(&replicas[idx].output)
        .unwrap()
        .modified()
        .unwrap();
    let stopped_after = last_write.duration_since(cut).unwrap_or_default();
    g.wait().await;
    let want = g.generated();
    c.wait_exported(&want, Duration::from_secs(60)).await;
    assert_eq!(
        c.holder().await,
        next,
        "the partitioned replica never took the lease back"
    );
    sim.refuse_lease_writes(None);
    stop_all(&c, &mut replicas).await;
    let d = Delivery::compare(&want, &c.exported());
    eprintln!(
        "partition: {}; old leader's last write {stopped_after:?} after the cut",
        d.summary()
    );
    assert!(
        d.lost.is_empty() && d.unexpected.is_empty(),
        "{}",
        d.summary()
    );
    assert!(
        stopped_after <= deadline + Duration::from_millis(500),
        "old leader delivered {stopped_after:?} after the partition"
    );
}

/// A rolling update on a quiet cluster of a real API server: no event for longer than the watch
/// history is kept (the replicas' own Lease renewals move the revision, compaction runs on a
/// timer), so the successor resumes at a compacted cursor, gets 410 and relists. It has read that
/// history moments before (the cursor says how recently), so nothing can be missing: no possible
/// gap is logged or counted by either replica, and everything before and after arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_cluster_hands_over_after_compaction_without_a_possible_gap() {
    init();
    let sim = Sim::start(SimConfig {
        compaction_interval: Some(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = Cluster::new(
        &sim,
        Timing {
            linger: Some(Duration::ZERO),
            ..Timing::default()
        },
    );
    let mut a = c.start("a").await;
    c.wait_holder(Duration::from_secs(30), |h| h == "a").await;
    let mut b = c.start("b").await;
    b.wait_ready(Duration::from_secs(30)).await;
    common::until_watching(&sim).await;
    let before = sim.generate(GeneratorConfig {
        rate_per_sec: 100.0,
        total: Some(100),
        repeat_ratio: 0.3,
        namespaces: 6,
        seed: 71,
    });
    before.wait().await;
    let mut want = before.generated();
    c.wait_exported(&want, Duration::from_secs(30)).await;
    let last_event = sim.current_resource_version();
    common::eventually(
        Duration::from_secs(20),
        "compaction past the last event (Lease renewals move the revision)",
        || sim.compacted_resource_version() > last_event,
    )
    .await;
    a.signal("TERM");
    assert_eq!(a.wait(Duration::from_secs(30)).await, Some(0));
    c.wait_holder(Duration::from_secs(30), |h| h == "b").await;
    common::eventually(Duration::from_secs(30), "b's relist", || {
        b.log_text()
            .contains("relisted after the watch history was gone: nothing can be missing")
    })
    .await;
    let after = generate(&sim, 1.0, 72);
    after.wait().await;
    want.extend(after.generated());
    c.wait_exported(&want, Duration::from_secs(30)).await;
    b.signal("TERM");
    assert_eq!(b.wait(Duration::from_secs(30)).await, Some(0));
    let d = Delivery::compare(&want, &c.exported());
    assert!(d.is_exact(), "{}", d.summary());
    for r in [&a, &b] {
        assert!(
            !r.log_text().contains("possible gap"),
            "{} reported a possible gap:\n{}",
            r.name,
            r.log_text()
        );
    }
    assert!(
        b.log_text()
            .contains("watch history after this resourceVersion is gone (410 Gone)"),
        "the resume did meet the compaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_down_longer_than_history_loses_nothing_still_in_the_api() {
    init();
    // Small history: the outage below outlives it, so the resume gets 410.
    let sim = Sim::start(SimConfig {
        history_limit: 400,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = Cluster::new(
        &sim,
        Timing {
            linger: Some(Duration::ZERO),
            ..Timing::default()
        },
    );
    let mut a = c.start("a").await;
    c.wait_holder(Duration::from_secs(30), |h| h == "a").await;
    common::until_watching(&sim).await;
    let before = generate(&sim, 2.0, 4);
    before.wait().await;
    let mut want = before.generated();
    c.wait_exported(&want, Duration::from_secs(30)).await;
    a.signal("TERM");
    assert_eq!(a.wait(Duration::from_secs(30)).await, Some(0));
    // Nobody exports: 1000 occurrences, far more than the 400 kept in history.
    let during = sim.generate(GeneratorConfig {
        rate_per_sec: 0.0,
        total: Some(1000),
        seed: 5,
        ..GeneratorConfig::default()
    });
    during.wait().await;
    want.extend(during.generated());
    let mut b = c.start("b").await;
    c.wait_holder(Duration::from_secs(30), |h| h == "b").await;
    c.wait_exported(&want, Duration::from_secs(60)).await;
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).await;
    let d = Delivery::compare(&want, &c.exported());
    // Repeats of one event during the outage collapse into its current count in the relist.
    let real_losses: Vec<&String> = d
        .lost
        .iter()
        .filter(|k| {
            let (uid, n) = k.rsplit_once(':').unwrap();
            !d.exported_keys.iter().any(|e| {
                e.rsplit_once(':').is_some_and(|(u, m)| {
                    u == uid && m.parse::<i64>().unwrap() > n.parse::<i64>().unwrap()
                })
            })
        })
        .collect();
    eprintln!(
        "both down past history: {}; collapsed repeats {}",
        d.summary(),
        d.lost.len() - real_losses.len()
    );
    assert!(
        real_losses.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "{}; real losses {real_losses:?}",
        d.summary()
    );
    assert!(
        b.log_text().contains("possible gap"),
        "the missing history is reported as a possible gap"
    );
    assert!(
        !a.log_text().contains("possible gap"),
        "no possible gap while history was complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_during_drain_exits_fast_and_the_successor_replays() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // A webhook that starts hanging mid-stream: the leader's drain cannot finish.
    let (hook, hook_url, received) = hanging_webhook().await;
    let mut c = Cluster::new(
        &sim,
        Timing {
            linger: Some(Duration::ZERO),
            drain: Duration::from_secs(30),
            ..Timing::default()
        },
    );
    c.extra_receivers = format!(
        "  - name: hook\n    timeout: 60s\n    batch: {{maxEvents: 50, maxWait: 20ms}}\n    webhook:\n      endpoint: {hook_url}\n"
    );
    c.extra_routes = vec!["hook".into()];
    let mut replicas = vec![c.start("a").await];
    c.wait_holder(Duration::from_secs(30), |h| h == "a").await;
    common::until_watching(&sim).await;
    let g = generate(&sim, 3.0, 6);
    wait_count(&g, 200).await;
    // Let a cursor be committed (a renewal after deliveries), then make the webhook hang.
    common::eventually(Duration::from_secs(10), "webhook deliveries", || {
        received.lock().unwrap().len() >= 100
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .leases
        .get(common::replicas::LEASE)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("kube-event-exporter.io/cursor")
    {
        assert!(Instant::now() < deadline, "no cursor committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hook.close();
    common::eventually(
        Duration::from_secs(10),
        "a webhook request held at the gate",
        || hook.waiting() > 0,
    )
    .await;
    replicas[0].signal("TERM");
    let first = Instant::now();
    common::eventually(Duration::from_secs(10), "draining", || {
        replicas[0].log_text().contains("shutdown: draining")
    })
    .await;
    // The same signal within the repeat window is the same request (a SIGTERM delivered to the
    // process and its group); only a later one forces the exit.
    tokio::time::sleep_until(
        (first + kube_event_exporter::shutdown::REPEAT_WINDOW + Duration::from_millis(100)).into(),
    )
    .await;
    let second = Instant::now();
    replicas[0].signal("TERM");
    let code = replicas[0].wait(Duration::from_secs(5)).await;
    let fast = second.elapsed();
    assert_eq!(
        code,
        Some(130),
        "second signal exits at once with 130; log:\n{}",
        replicas[0].log_text()
    );
    hook.release();
    replicas.push(c.start("b").await);
    c.wait_holder(Duration::from_secs(30), |h| h == "b").await;
    g.wait().await;
    let want = g.generated();
    c.wait_exported(&want, Duration::from_secs(60)).await;
    if std::env::var("DEBUG_HANDOVER").is_ok() {
        for r in &replicas {
            eprintln!("--- {} log:\n{}", r.name, r.log_text());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let have: std::collections::BTreeSet<String> =
            received.lock().unwrap().iter().cloned().collect();
        if want.iter().all(|k| have.contains(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_all(&c, &mut replicas).await;
    let file = Delivery::compare(&want, &c.exported());
    let hook = Delivery::compare(&want, &received.lock().unwrap());
    eprintln!(
        "second SIGTERM: exit after {fast:?}; file {}; webhook {}",
        file.summary(),
        hook.summary()
    );
    assert!(
        file.lost.is_empty() && hook.lost.is_empty(),
        "file {}; webhook {}",
        file.summary(),
        hook.summary()
    );
    assert!(file.unexpected.is_empty() && hook.unexpected.is_empty());
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Holds webhook requests until released.
#[derive(Clone, Default)]
struct Gate {
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    notify: std::sync::Arc<tokio::sync::Notify>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    async fn pass(&self) {
        let notified = self.notify.notified();
        if !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            notified.await;
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn release(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// A webhook that records every occurrence; while its gate is closed, requests hang.
async fn hanging_webhook() -> (Gate, String, Received) {
    let gate = Gate::default();
    gate.release();
    let received: Received = Default::default();
    let (r, g) = (received.clone(), gate.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (r, g) = (r.clone(), g.clone());
            async move {
                g.pass().await;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let docs = v.as_array().cloned().unwrap_or_else(|| vec![v]);
                let mut r = r.lock().unwrap();
                for d in docs {
                    r.push(
                        serde_json::from_value::<kube_event_exporter::event::Event>(d)
                            .unwrap()
                            .occurrence_key(),
                    );
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (gate, url, received)
}
