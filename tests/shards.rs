//! Shards over replicas (`leaderElection.shards`), with real exporter processes against kube-sim,
//! once with the server filtering each shard (KEP-5866 `shardSelector`) and once as an older server
//! that ignores it (each replica filters locally). Six shards over three replicas under 150
//! occurrences/s: a rolling replacement (a fourth replica joins, then SIGTERM to one), a crash
//! (SIGKILL) and a scale-down; every occurrence key of every replica's file is compared with the
//! generated ones.

mod common;

use std::time::{Duration, Instant};

use common::replicas::{Cluster, LEASE, Replica, Timing};
use common::scenarios;
use common::{Delivery, init};
use k8s_openapi::api::coordination::v1::Lease;
use kube_sim::{Sim, SimConfig};

const SHARDS: u32 = 6;
const RATE: f64 = 150.0;

fn shard_lease(i: u32) -> String {
    format!("{LEASE}-shard-{i}-of-{SHARDS}")
}

/// The shard Leases as they are now: (holder, last renewal) per shard.
async fn shard_leases(c: &Cluster) -> Vec<(String, Option<jiff::Timestamp>)> {
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let lease: Option<Lease> = c.leases.get_opt(&shard_lease(i)).await.ok().flatten();
        let spec = lease.and_then(|l| l.spec).unwrap_or_default();
        out.push((
            spec.holder_identity.unwrap_or_default(),
            spec.renew_time.map(|t| t.0),
        ));
    }
    out
}

/// Waits until the replicas hold `want` shards between them, in any order (by their
/// `shards_held` gauge and by the Leases).
async fn wait_spread(c: &Cluster, replicas: &[&Replica], want: &[usize], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let leases = shard_leases(c).await;
        let mut held = Vec::new();
        for r in replicas {
            let by_lease = leases.iter().filter(|(h, _)| *h == r.name).count();
            let gauge = r.metric("kube_event_exporter_shards_held").await as usize;
            held.push((by_lease, gauge));
        }
        let mut by_lease: Vec<usize> = held.iter().map(|(l, _)| *l).collect();
        let mut by_gauge: Vec<usize> = held.iter().map(|(_, g)| *g).collect();
        let mut wanted = want.to_vec();
        by_lease.sort_unstable();
        by_gauge.sort_unstable();
        wanted.sort_unstable();
        if by_lease == wanted && by_gauge == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shards held (by the leases, by the gauge) {held:?}, want {want:?}; leases {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(server_side: bool, seed: u64) {
    init();
    let sim = Sim::start(SimConfig {
        shard_selector: server_side,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let timing = Timing::default();
    let retry = timing.retry;
    let mut c = Cluster::new(&sim, timing);
    c.shards = SHARDS;
    let mut a = c.start("a").await;
    let mut b = c.start("b").await;
    let mut cc = c.start("c").await;
    wait_spread(&c, &[&a, &b, &cc], &[2, 2, 2], Duration::from_secs(30)).await;
    let g = scenarios::generate(&sim, RATE, (RATE * 24.0) as u64, seed);
    let wait_count = |n: usize| {
        let g = &g;
        async move {
            common::eventually(Duration::from_secs(60), "generator progress", || {
                g.count() >= n
            })
            .await
        }
    };
    wait_count(300).await;

    // Rolling replacement: a fourth replica joins and gets a share; then one old one goes.
    let d = c.start("d").await;
    d.wait_ready(Duration::from_secs(20)).await;
    wait_spread(
        &c,
        &[&a, &b, &cc, &d],
        &[1, 2, 2, 1],
        Duration::from_secs(30),
    )
    .await;
    a.signal("TERM");
    assert_eq!(a.wait(Duration::from_secs(30)).await, Some(0), "a exits 0");
    wait_spread(&c, &[&b, &cc, &d], &[2, 2, 2], Duration::from_secs(30)).await;

    // Crash: what b delivered since its shards' last commits may be delivered again.
    wait_count(g.count() + 300).await;
    // Graceful moves so far (a newcomer's share, a rolling replacement) duplicated nothing.
    let before = Delivery::compare(&g.generated(), &c.exported());
    assert!(
        before.duplicated.is_empty(),
        "before the crash: {}",
        before.summary()
    );
    let leases = shard_leases(&c).await;
    b.signal("KILL");
    let now = jiff::Timestamp::now();
    let since_commit = leases
        .iter()
        .filter(|(h, _)| *h == "b")
        .filter_map(|(_, t)| *t)
        .map(|t| Duration::try_from(now.duration_since(t)).unwrap_or_default())
        .max()
        .unwrap_or_default()
        .max(retry);
    b.wait(Duration::from_secs(10)).await;
    wait_spread(&c, &[&cc, &d], &[3, 3], Duration::from_secs(30)).await;

    // Scale-down: one of the two survivors goes; the last takes everything.
    wait_count(g.count() + 300).await;
    cc.signal("TERM");
    assert_eq!(cc.wait(Duration::from_secs(30)).await, Some(0), "c exits 0");
    wait_spread(&c, &[&d], &[6], Duration::from_secs(30)).await;

    common::eventually(Duration::from_secs(60), "generation done", || g.is_done()).await;
    let want = g.generated();
    c.wait_exported(&want, Duration::from_secs(60)).await;
    let delivery = Delivery::compare(&want, &c.exported());
    let duplicated = delivery.exported - (delivery.generated - delivery.lost.len());
    // The crash replays at most what b's shards delivered since their last commit.
    let bound = (RATE * (since_commit + retry).as_secs_f64()).ceil() as usize;
    eprintln!(
        "shards, server-side {server_side}: {}; duplicated occurrences {duplicated} (bound {bound})",
        delivery.summary()
    );
    assert!(
        delivery.lost.is_empty() && delivery.unexpected.is_empty(),
        "{}",
        delivery.summary()
    );
    assert!(duplicated <= bound, "{duplicated} duplicates > {bound}");

    // Each replica watched only its shards' events: the server filtered them, or the replica did.
    let text = d.metrics_text().await;
    let served = common::sum_samples(&text, "kube_event_exporter_source_server_sharded");
    let filtered = text
        .lines()
        .find(|l| {
            l.starts_with("kube_event_exporter_events_filtered_total{reason=\"other_shard\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    if server_side {
        assert_eq!(
            served,
            f64::from(SHARDS),
            "every shard served by the server"
        );
        assert_eq!(filtered, 0.0, "nothing of another shard reached d");
    } else {
        assert_eq!(served, 0.0, "an older server: no shard served");
        assert!(filtered > 0.0, "d filtered other shards' events locally");
    }
    let mut d = d;
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(30)).await, Some(0));

    // Every transition line names its shard (the troubleshooting one-liners select on it), and
    // how long each moved shard went unexported (from the previous holder's last write).
    let mut takeovers: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for r in [&a, &b, &cc, &d] {
        for line in common::logs::lines(&r.log_text()) {
            let Some(kind) = common::logs::field(&line, "transition").and_then(|v| v.as_str())
            else {
                continue;
            };
            if kind == "standby" {
                continue;
            }
            assert!(
                line["span"]["shard"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("/6")),
                "{}: a {kind} line without its shard: {line}",
                r.name
            );
            let why = common::logs::field(&line, "why").and_then(|v| v.as_str());
            let ms = common::logs::field(&line, "takeover_ms").and_then(|v| v.as_u64());
            if let (Some(why), Some(ms)) = (why, ms) {
                takeovers.entry(why.to_string()).or_default().push(ms);
            }
        }
    }
    eprintln!("shards, server-side {server_side}: takeover ms by why {takeovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_shards_over_replicas_survive_rolling_crash_and_scale_down_with_server_side_selector() {
    scenario(true, 61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_shards_over_replicas_survive_rolling_crash_and_scale_down_filtering_locally() {
    scenario(false, 62).await;
}

#[test]
fn the_sharded_overlay_is_the_base_with_six_shards_over_three_replicas() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let env = |_: &str| Some("ns".to_string());
    let base = kube_event_exporter::config::parse(&read("base/config.yaml"), &env).unwrap();
    let sharded =
        kube_event_exporter::config::parse(&read("overlays/sharded/config.yaml"), &env).unwrap();
    assert_eq!(base.leader_election.shards, 1);
    assert_eq!(sharded.leader_election.shards, 6);
    let mut same = sharded.leader_election.clone();
    same.shards = 1;
    assert_eq!(same, base.leader_election, "only the shard count differs");
    assert_eq!(
        sharded.summary(),
        base.summary(),
        "the same receivers and routes"
    );
    let k = read("overlays/sharded/kustomization.yaml");
    assert!(
        k.contains("- ../../base") && k.contains("replicas: 3") && k.contains("minAvailable: 2")
    );
}
