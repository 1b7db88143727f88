//! Handover scenarios for one receiver: real exporter replicas against kube-sim (replicas.rs),
//! the receiver under test routed every occurrence, a seeded generator, and the keys the
//! receiver's destination holds (read by the caller: a server's store, a FIFO's reader) compared
//! with the generated ones.

use std::time::{Duration, Instant};

use kube_sim::{GeneratorConfig, SimHandle};

use super::Delivery;
use super::replicas::{Cluster, Replica, Timing};

/// Occurrences per second: as tests/handover.rs, with repeats.
pub const RATE: f64 = 200.0;

pub struct Outcome {
    pub delivery: Delivery,
    /// Every generated key, in generation order.
    pub generated: Vec<String>,
    /// Exported occurrences beyond one per generated key.
    pub duplicated_occurrences: usize,
    /// Exit codes of the stopped leader(s).
    pub exits: Vec<Option<i32>>,
    /// For a SIGKILL: the time from the dead leader's last cursor commit (its last renewal of
    /// the Lease) to the kill, at least one retry period; what the successor replays.
    pub since_commit: Duration,
}

fn generate(sim: &SimHandle, seconds: f64, seed: u64) -> kube_sim::Generator {
    sim.generate(GeneratorConfig {
        rate_per_sec: RATE,
        total: Some((RATE * seconds) as u64),
        repeat_ratio: 0.3,
        namespaces: 6,
        seed,
    })
}

async fn wait_count(g: &kube_sim::Generator, n: usize) {
    super::eventually(Duration::from_secs(60), "generator progress", || {
        g.count() >= n
    })
    .await;
}

/// A cluster whose replicas also have `receiver` (receiver list items, indented by 2) and route
/// everything to `name`.
fn cluster(sim: &SimHandle, receiver: &str, name: &str) -> Cluster {
    let mut c = Cluster::new(sim, Timing::default());
    c.extra_receivers = receiver.to_owned();
    c.extra_routes = vec![name.to_owned()];
    c
}

/// Standbys first (they exit at once), then the leader.
async fn stop_all(c: &Cluster, replicas: &mut [Replica]) {
    let leader = c.holder().await;
    for r in replicas.iter().filter(|r| r.name != leader) {
        r.signal("TERM");
    }
    for r in replicas.iter_mut().filter(|r| r.name != leader) {
        r.wait(Duration::from_secs(20)).await;
    }
    for r in replicas.iter().filter(|r| r.name == leader) {
        r.signal("TERM");
    }
    for r in replicas.iter_mut() {
        r.wait(Duration::from_secs(30)).await;
    }
}

async fn finish(
    c: &Cluster,
    replicas: &mut [Replica],
    g: &kube_sim::Generator,
    exported: &dyn Fn() -> Vec<String>,
) -> (Delivery, usize, Vec<String>) {
    g.wait().await;
    let want = g.generated();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: std::collections::BTreeSet<String> = exported().into_iter().collect();
        if want.iter().all(|k| have.contains(k)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_all(c, replicas).await;
    let d = Delivery::compare(&want, &exported());
    let dup = d.exported - (d.generated - d.lost.len());
    if !d.lost.is_empty() {
        for r in replicas.iter() {
            eprintln!("--- {} log (tail):", r.name);
            let log = r.log_text();
            let lines: Vec<&str> = log.lines().collect();
            for l in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{l}");
            }
        }
    }
    (d, dup, want)
}

/// Two replicas; mid-stream the leader gets SIGTERM and a replacement starts (a rolling update).
pub async fn graceful_handover(
    sim: &SimHandle,
    receiver: &str,
    name: &str,
    exported: &dyn Fn() -> Vec<String>,
    seed: u64,
) -> Outcome {
    let mut c = cluster(sim, receiver, name);
    let retry = c.timing.retry;
    let mut replicas = vec![c.start("r0").await, c.start("r1").await];
    c.wait_holder(Duration::from_secs(30), |h| !h.is_empty())
        .await;
    super::until_watching(sim).await;
    let g = generate(sim, 6.0, seed);
    wait_count(&g, (RATE * 2.0) as usize).await;
    let leader = c.holder().await;
    let idx = replicas
        .iter()
        .position(|r| r.name == leader)
        .expect("the leader is one of ours");
    replicas[idx].signal("TERM");
    replicas.push(c.start("r2").await);
    c.wait_holder(Duration::from_secs(60), |h| !h.is_empty() && h != leader)
        .await;
    let exits = vec![replicas[idx].wait(Duration::from_secs(30)).await];
    let (delivery, duplicated_occurrences, generated) =
        finish(&c, &mut replicas, &g, exported).await;
    Outcome {
        delivery,
        generated,
        duplicated_occurrences,
        exits,
        since_commit: retry,
    }
}

/// Two replicas; mid-stream the leader is SIGKILLed, the standby takes over after the lease.
pub async fn sigkill_of_the_leader(
    sim: &SimHandle,
    receiver: &str,
    name: &str,
    exported: &dyn Fn() -> Vec<String>,
    seed: u64,
) -> Outcome {
    let mut c = cluster(sim, receiver, name);
    let retry = c.timing.retry;
    let mut replicas = vec![c.start("a").await, c.start("b").await];
    let leader = c
        .wait_holder(Duration::from_secs(30), |h| !h.is_empty())
        .await;
    super::until_watching(sim).await;
    let g = generate(sim, 6.0, seed);
    wait_count(&g, (RATE * 2.0) as usize).await;
    let idx = replicas.iter().position(|r| r.name == leader).unwrap();
    replicas[idx].signal("KILL");
    let since_commit = c.since_commit(retry).await;
    let exits = vec![replicas[idx].wait(Duration::from_secs(10)).await];
    c.wait_holder(Duration::from_secs(30), |h| !h.is_empty() && h != leader)
        .await;
    let (delivery, duplicated_occurrences, generated) =
        finish(&c, &mut replicas, &g, exported).await;
    Outcome {
        delivery,
        generated,
        duplicated_occurrences,
        exits,
        since_commit,
    }
}

impl Outcome {
    /// How many occurrences a SIGKILL may export twice: the successor replays from the cursor
    /// committed at the last renewal (`since_commit` of occurrences were delivered since: one
    /// retry period unless that renewal was late), plus the batch that was delivered but not yet acknowledged when the
    /// process died (at most `max_wait` of occurrences, the batch's fill time).
    pub fn duplicate_bound(&self, max_wait: Duration) -> usize {
        (RATE * (self.since_commit + max_wait).as_secs_f64()).ceil() as usize
    }

    /// What a SIGKILL may cost, asserted: nothing lost, nothing exported that was not generated,
    /// and no more duplicates than [`duplicate_bound`](Self::duplicate_bound). `what` names the
    /// receiver in the printed summary.
    pub fn assert_no_loss_and_bounded_duplicates(&self, what: &str, batch_fill: Duration) {
        let d = &self.delivery;
        eprintln!(
            "{what}: {}; duplicated occurrences {}",
            d.summary(),
            self.duplicated_occurrences
        );
        assert!(
            d.lost.is_empty() && d.unexpected.is_empty(),
            "{}",
            d.summary()
        );
        let bound = self.duplicate_bound(batch_fill);
        assert!(
            self.duplicated_occurrences <= bound,
            "duplicates {} > the occurrences since the last cursor commit and one batch ({bound})",
            self.duplicated_occurrences
        );
    }
}
