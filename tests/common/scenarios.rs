//! The handover scenarios every receiver goes through, with real exporter replicas against
//! kube-sim (replicas.rs): a rolling update (SIGTERM to the leader, a replacement started, as a
//! Deployment does) and a SIGKILL of the leader. The occurrences under test go to a receiver of
//! the caller's (its destination read by the caller: a server's store, a FIFO's reader), or to the
//! file receiver every replica has; both are compared with the generated keys.
//!
//! Also the one event generator and the one way to stop replicas that the tests share.

use std::time::{Duration, Instant};

use kube_sim::{Generator, GeneratorConfig, SimHandle};

use super::Delivery;
use super::replicas::{Cluster, Monitor, Replica, Timing};

/// Occurrences per second a scenario generates, with repeats.
pub const RATE: f64 = 200.0;

/// Occurrences per second of the delivery tests without a handover: faster than a busy
/// cluster's events, within what the test servers take.
pub const FAST: f64 = 500.0;

/// The tests' event generator: `total` occurrences at `rate` per second (0: as fast as kube-sim
/// takes them), 30 % of them repeats (`count` + 1) of recent events, over six namespaces.
pub fn generate(sim: &SimHandle, rate: f64, total: u64, seed: u64) -> Generator {
    sim.generate(GeneratorConfig {
        rate_per_sec: rate,
        total: Some(total),
        repeat_ratio: 0.3,
        namespaces: 6,
        seed,
    })
}

/// Where the occurrences under test go.
pub enum Target<'a> {
    /// The file receiver every replica has (its keys are `Outcome::archive`).
    Archive,
    /// A receiver (`yaml`: list items, indented by 2) named `name`, every occurrence routed to
    /// it; `exported` reads the keys its destination holds.
    Receiver {
        yaml: &'a str,
        name: &'a str,
        exported: &'a dyn Fn() -> Vec<String>,
    },
}

/// How hard and how long a scenario drives the replicas.
#[derive(Debug, Clone)]
pub struct Load {
    /// Occurrences per second.
    pub rate: f64,
    /// Seconds of generation.
    pub seconds: f64,
    pub timing: Timing,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            rate: RATE,
            seconds: 6.0,
            timing: Timing::default(),
        }
    }
}

pub struct Outcome {
    /// At the target.
    pub delivery: Delivery,
    /// At the file receivers of every replica.
    pub archive: Delivery,
    /// Every generated key, in generation order.
    pub generated: Vec<String>,
    /// Occurrences exported at the target beyond one per generated key.
    pub duplicated_occurrences: usize,
    /// Exit codes of the stopped leader(s).
    pub exits: Vec<Option<i32>>,
    /// For a SIGKILL: the time from the dead leader's last cursor commit (its last renewal of
    /// the Lease) to the kill, at least one retry period; what the successor replays.
    pub since_commit: Duration,
    /// Rolling update: for each, from the release of the Lease to the successor's acquisition.
    /// SIGKILL: from the kill to the successor's acquisition.
    pub takeovers: Vec<Duration>,
    /// The last successor's `/metrics`, read before the replicas stopped.
    pub successor_metrics: String,
    rate: f64,
}

/// Standbys first (they exit at once), then the leader (a graceful handover to nobody).
pub async fn stop_all(c: &Cluster, replicas: &mut [Replica]) {
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
        r.wait(Duration::from_secs(60)).await;
    }
}

async fn wait_count(g: &Generator, n: usize) {
    super::eventually(Duration::from_secs(60), "generator progress", || {
        g.count() >= n
    })
    .await;
}

fn cluster(sim: &SimHandle, target: &Target, timing: Timing) -> Cluster {
    let mut c = Cluster::new(sim, timing);
    if let Target::Receiver { yaml, name, .. } = target {
        c.extra_receivers = (*yaml).to_owned();
        c.extra_routes = vec![(*name).to_owned()];
    }
    c
}

/// After the fault: waits until the target and the file receivers hold every generated key (or
/// two minutes pass), reads the successor's metrics, stops every replica and compares.
async fn finish(
    c: &Cluster,
    replicas: &mut [Replica],
    g: &Generator,
    target: &Target<'_>,
) -> (Delivery, Delivery, Vec<String>, String) {
    g.wait().await;
    let want = g.generated();
    let exported = || match target {
        Target::Archive => c.exported(),
        Target::Receiver { exported, .. } => exported(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have: std::collections::BTreeSet<String> = exported().into_iter().collect();
        if want.iter().all(|k| have.contains(k)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.wait_exported(&want, Duration::from_secs(30)).await;
    let leader = c.holder().await;
    let successor_metrics = match replicas.iter().find(|r| r.name == leader) {
        Some(r) => r.metrics_text().await,
        None => String::new(),
    };
    stop_all(c, replicas).await;
    let d = Delivery::compare(&want, &exported());
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
    let archive = Delivery::compare(&want, &c.exported());
    (d, archive, want, successor_metrics)
}

fn outcome(
    (delivery, archive, generated, successor_metrics): (Delivery, Delivery, Vec<String>, String),
    exits: Vec<Option<i32>>,
    since_commit: Duration,
    takeovers: Vec<Duration>,
    rate: f64,
) -> Outcome {
    let duplicated_occurrences = delivery.exported - (delivery.generated - delivery.lost.len());
    Outcome {
        delivery,
        archive,
        generated,
        duplicated_occurrences,
        exits,
        since_commit,
        takeovers,
        successor_metrics,
        rate,
    }
}

/// Two replicas; `rounds` times, the leader gets SIGTERM and a replacement starts (a rolling
/// update), three seconds of occurrences apart.
pub async fn rolling_update(
    sim: &SimHandle,
    target: Target<'_>,
    load: Load,
    rounds: usize,
    seed: u64,
) -> Outcome {
    let mut c = cluster(sim, &target, load.timing.clone());
    let monitor = Monitor::start(c.leases.clone());
    let retry = c.timing.retry;
    let mut replicas = vec![c.start("r0").await, c.start("r1").await];
    c.wait_holder(Duration::from_secs(30), |h| !h.is_empty())
        .await;
    super::until_watching(sim).await;
    let seconds = load.seconds.max(3.0 * rounds as f64 + 3.0);
    let g = generate(sim, load.rate, (load.rate * seconds) as u64, seed);
    let (mut exits, mut takeovers) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        wait_count(&g, (load.rate * 3.0 * (round + 1) as f64) as usize).await;
        let leader = c.holder().await;
        let idx = replicas
            .iter()
            .position(|r| r.name == leader)
            .expect("the leader is one of ours");
        let t0 = Instant::now();
        replicas[idx].signal("TERM");
        replicas.push(c.start(&format!("r{}", round + 2)).await);
        let next = c
            .wait_holder(Duration::from_secs(60), |h| !h.is_empty() && h != leader)
            .await;
        let acquired = monitor
            .became(&next, t0)
            .await
            .expect("the monitor saw the new holder");
        let released = monitor.released_between(t0, acquired);
        takeovers.push(
            released
                .map(|r| acquired.saturating_duration_since(r))
                .unwrap_or_default(),
        );
        exits.push(replicas[idx].wait(Duration::from_secs(60)).await);
    }
    let finished = finish(&c, &mut replicas, &g, &target).await;
    outcome(finished, exits, retry, takeovers, load.rate)
}

/// Two replicas; mid-stream the leader is SIGKILLed, the standby takes over after the lease.
pub async fn sigkill(sim: &SimHandle, target: Target<'_>, load: Load, seed: u64) -> Outcome {
    let mut c = cluster(sim, &target, load.timing.clone());
    let monitor = Monitor::start(c.leases.clone());
    let retry = c.timing.retry;
    let mut replicas = vec![c.start("a").await, c.start("b").await];
    let leader = c
        .wait_holder(Duration::from_secs(30), |h| !h.is_empty())
        .await;
    super::until_watching(sim).await;
    let g = generate(sim, load.rate, (load.rate * load.seconds) as u64, seed);
    wait_count(&g, (load.rate * 2.0) as usize).await;
    let idx = replicas.iter().position(|r| r.name == leader).unwrap();
    let killed = Instant::now();
    replicas[idx].signal("KILL");
    let since_commit = c.since_commit(retry).await;
    let exits = vec![replicas[idx].wait(Duration::from_secs(10)).await];
    let next = c
        .wait_holder(Duration::from_secs(30), |h| !h.is_empty() && h != leader)
        .await;
    let takeover = monitor
        .became(&next, killed)
        .await
        .expect("the monitor saw the new holder")
        .duration_since(killed);
    let finished = finish(&c, &mut replicas, &g, &target).await;
    outcome(finished, exits, since_commit, vec![takeover], load.rate)
}

/// A rolling update to the receiver `receiver` (named `name`) under the default load.
pub async fn graceful_handover(
    sim: &SimHandle,
    receiver: &str,
    name: &str,
    exported: &dyn Fn() -> Vec<String>,
    seed: u64,
) -> Outcome {
    let target = Target::Receiver {
        yaml: receiver,
        name,
        exported,
    };
    rolling_update(sim, target, Load::default(), 1, seed).await
}

/// A SIGKILL of the leader exporting to the receiver `receiver` (named `name`), default load.
pub async fn sigkill_of_the_leader(
    sim: &SimHandle,
    receiver: &str,
    name: &str,
    exported: &dyn Fn() -> Vec<String>,
    seed: u64,
) -> Outcome {
    let target = Target::Receiver {
        yaml: receiver,
        name,
        exported,
    };
    sigkill(sim, target, Load::default(), seed).await
}

impl Outcome {
    /// How many occurrences a SIGKILL may export twice: the successor replays from the cursor
    /// committed at the last renewal (`since_commit` of occurrences were delivered since: one
    /// retry period unless that renewal was late), plus what was delivered but not yet
    /// acknowledged when the process died (at most `batch_fill` of occurrences: a batch's fill
    /// time, or the requests in flight).
    pub fn duplicate_bound(&self, batch_fill: Duration) -> usize {
        (self.rate * (self.since_commit + batch_fill).as_secs_f64()).ceil() as usize
    }

    /// What a SIGKILL may cost, asserted: nothing lost, nothing exported that was not generated,
    /// and no more duplicates than [`duplicate_bound`](Self::duplicate_bound). `what` names the
    /// receiver in the printed summary.
    pub fn assert_no_loss_and_bounded_duplicates(&self, what: &str, batch_fill: Duration) {
        self.assert_no_loss_and_at_most(what, self.duplicate_bound(batch_fill));
    }

    /// Nothing lost, nothing unexpected, at most `bound` duplicates.
    pub fn assert_no_loss_and_at_most(&self, what: &str, bound: usize) {
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
        assert!(
            self.duplicated_occurrences <= bound,
            "duplicates {} > the occurrences since the last cursor commit and one batch ({bound})",
            self.duplicated_occurrences
        );
    }

    /// A sample of the successor's metrics (summed over labels).
    pub fn successor_metric(&self, name: &str) -> f64 {
        super::sum_samples(&self.successor_metrics, name)
    }
}
