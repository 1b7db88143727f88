//! `exporter-soak`: kube-sim in-process, an event generator at a steady rate with repeats, an
//! in-process webhook, and real exporter processes under leader election, put through a seeded
//! random schedule of faults (signals, API faults, receiver faults, outages while nobody watches).
//! The invariants of docs/architecture.md ("Leadership and handover") are checked while it runs
//! and at the end (see `verdict`).
//!
//! Everything a failing run leaves behind is in its work directory: the schedule, each replica's
//! config, log and file receiver output, every Lease version (`lease.tsv`) and every delivery
//! (`deliveries.tsv`).

pub mod observe;
pub mod replicas;
pub mod schedule;
pub mod sharded;
pub mod verdict;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use kube_sim::{Generator, GeneratorConfig, Sim, SimConfig, SimHandle};
use observe::{Clock, LogKind, Observations, Receiver, Tailer};
use replicas::{Replicas, Timing};
use schedule::{Action, Fault, HookMode, Schedule, Sig, Target};
use verdict::split_key;
use webhook::Webhook;

/// The exporter takes the same signal again within this long of the first for the same request
/// (its `shutdown::REPEAT_WINDOW`).
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub seed: u64,
    pub duration: Duration,
    /// The duration as given on the command line, for the summary line.
    pub duration_text: String,
    pub exporter: PathBuf,
    pub work_dir: PathBuf,
    /// Occurrences generated per second.
    pub rate: f64,
}

pub struct Outcome {
    pub passed: bool,
    /// Lines to print before the last one: details and every violated invariant.
    pub report: Vec<String>,
    /// `soak: seed S, duration D, faults N (by kind …), generated G, exported E, lost L,
    /// duplicated X (bound B)`.
    pub last_line: String,
}

/// Runs the soak; Err only when the harness itself could not run (not for broken invariants).
pub async fn run(opts: &SoakOptions) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let schedule = Schedule::draw(opts.seed, opts.duration);
    std::fs::write(opts.work_dir.join("schedule.txt"), schedule.to_string())
        .context("writing the schedule")?;
    eprintln!(
        "soak: {} faults scheduled (schedule.txt in the work dir)",
        schedule.faults.len()
    );
    let clock = Clock::start();
    let obs = Arc::new(Observations::default());
    let sim = Sim::start(SimConfig::default()).await?;
    let kubeconfig = opts.work_dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let timing = Timing::default();
    let hang = timing.hook_timeout + Duration::from_millis(1500);
    let hook = Webhook::start(clock, obs.clone(), hang).await?;
    let replicas = Replicas::new(
        opts.exporter.clone(),
        opts.work_dir.clone(),
        kubeconfig,
        hook.url.clone(),
        timing,
        clock,
        obs.clone(),
    );
    let stop = CancellationToken::new();
    let monitor = tokio::spawn(observe::monitor_lease(
        sim.clone(),
        clock,
        obs.clone(),
        stop.clone(),
    ));
    let soak = Arc::new(Soak {
        opts: opts.clone(),
        sim: sim.clone(),
        hook,
        replicas,
        obs,
        clock,
        started: Instant::now(),
        executed: Mutex::default(),
        skipped: Mutex::default(),
    });
    let observer = tokio::spawn(soak.clone().observe(stop.clone()));
    let driven = soak.drive(&schedule).await;
    stop.cancel();
    let _ = observer.await;
    let _ = monitor.await;
    let outcome = driven.map(|generated| soak.outcome(&generated));
    soak.kill_all().await;
    sim.shutdown();
    outcome
}

struct Soak {
    opts: SoakOptions,
    sim: SimHandle,
    hook: Webhook,
    replicas: Replicas,
    obs: Arc<Observations>,
    clock: Clock,
    started: Instant,
    executed: Mutex<Vec<Fault>>,
    skipped: Mutex<Vec<(Fault, String)>>,
}

/// Polls `cond` every 20 ms until it holds; Err after `limit`.
async fn wait_for(limit: Duration, what: &str, cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_for_every(limit, Duration::from_millis(20), what, cond).await
}

/// Polls `cond` every `every` until it holds; Err after `limit`.
async fn wait_for_every(
    limit: Duration,
    every: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

impl Soak {
    fn now(&self) -> f64 {
        self.clock.now()
    }

    fn timing(&self) -> &Timing {
        self.replicas.timing()
    }

    fn generator(&self) -> anyhow::Result<Generator> {
        self.sim.generator().context("the generator is not running")
    }

    /// Starts replicas and the generator, runs both fault tracks, then lets everything settle and
    /// stops. Returns the generated occurrence keys.
    async fn drive(self: &Arc<Self>, schedule: &Schedule) -> anyhow::Result<Vec<String>> {
        self.replicas.start()?;
        self.replicas.start()?;
        wait_for(Duration::from_secs(30), "a first leader", || {
            !self.obs.holder().is_empty()
        })
        .await?;
        // Occurrences generated once the first watch is open must all be exported (repeats from
        // before a cold list would collapse into the current count).
        wait_for(Duration::from_secs(30), "the leader's events watch", || {
            self.sim
                .request_counts()
                .contains_key(&("watch".to_string(), "events".to_string()))
        })
        .await?;
        self.sim.generate(GeneratorConfig {
            rate_per_sec: self.opts.rate,
            total: None,
            repeat_ratio: 0.3,
            namespaces: 8,
            seed: self.opts.seed,
        });
        eprintln!(
            "soak: {:7.1}s generating {} occurrences/s",
            self.now(),
            self.opts.rate
        );
        let (process, env): (Vec<Fault>, Vec<Fault>) =
            schedule.faults.iter().cloned().partition(Fault::is_process);
        let (a, b) = tokio::join!(self.track(process), self.track(env));
        a?;
        b?;
        tokio::time::sleep_until(self.started + self.opts.duration).await;
        self.finish().await
    }

    /// Runs one track's faults at their times (late ones at once: timing noise).
    async fn track(&self, faults: Vec<Fault>) -> anyhow::Result<()> {
        for fault in faults {
            tokio::time::sleep_until(self.started + fault.at).await;
            eprintln!("soak: {:7.1}s fault: {fault}", self.now());
            match self.execute(&fault).await? {
                None => self
                    .executed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(fault),
                Some(why) => {
                    eprintln!("soak: {:7.1}s skipped {}: {why}", self.now(), fault.kind());
                    self.skipped
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((fault, why));
                }
            }
        }
        Ok(())
    }

    /// Ok(Some(reason)) when the fault could not apply (no standby to hit, say).
    async fn execute(&self, fault: &Fault) -> anyhow::Result<Option<String>> {
        let sim = &self.sim;
        match &fault.action {
            Action::Signal { target, sig } => return self.signal_fault(*target, *sig).await,
            Action::Outage { nobody_for, delete } => {
                return self.outage(*nobody_for, *delete).await;
            }
            Action::ApiErrors { status, requests } => sim.fail_next(*requests, *status),
            Action::DropWatches => sim.drop_watches(),
            Action::Compaction => self.compact_under_the_watch().await,
            Action::StaleWatches { lasting } => {
                sim.set_stale_watch_empty_200(true);
                self.compact_under_the_watch().await;
                tokio::time::sleep(*lasting).await;
                sim.set_stale_watch_empty_200(false);
            }
            Action::Partition { target, lasting } => {
                // Between handovers nobody may hold the Lease for a moment.
                let _ = wait_for(Duration::from_secs(5), "a replica to partition", || {
                    self.pick(*target).is_some()
                })
                .await;
                let Some(name) = self.pick(*target) else {
                    return Ok(Some(format!("no {target:?} to partition")));
                };
                eprintln!("soak: {:7.1}s lease writes of {name} refused", self.now());
                sim.refuse_lease_writes(Some(&name));
                tokio::time::sleep(*lasting).await;
                sim.refuse_lease_writes(None);
            }
            Action::ApiDown {
                lasting,
                by_latency,
            } => {
                if *by_latency {
                    sim.set_latency(self.timing().lease + Duration::from_secs(1));
                } else {
                    sim.fail_next(u64::MAX / 2, 500);
                }
                sim.drop_watches();
                tokio::time::sleep(*lasting).await;
                sim.set_latency(Duration::ZERO);
                sim.fail_next(0, 500);
            }
            Action::Webhook { mode, lasting } => {
                self.hook.set_mode(*mode);
                tokio::time::sleep(*lasting).await;
                self.hook.set_mode(HookMode::Up);
            }
        }
        Ok(None)
    }

    /// The replica a fault hits: the holder (if it was sent no signal yet), or a healthy standby.
    fn pick(&self, target: Target) -> Option<String> {
        let holder = self.obs.holder();
        let healthy = self.replicas.healthy();
        match target {
            Target::Leader => healthy.into_iter().find(|n| *n == holder),
            Target::Standby => healthy.into_iter().find(|n| *n != holder),
        }
    }

    /// Waits (bounded) for a healthy leader and a healthy standby, so a process fault hits a
    /// settled pair rather than a handover still in progress.
    async fn settle(&self, limit: Duration) {
        let settled = wait_for(limit, "a settled leader and standby", || {
            let healthy = self.replicas.healthy();
            let holder = self.obs.holder();
            healthy.len() >= 2 && healthy.contains(&holder)
        })
        .await;
        if let Err(e) = settled {
            eprintln!("soak: {:7.1}s {e}; going on", self.now());
        }
    }

    async fn signal_fault(&self, target: Target, sig: Sig) -> anyhow::Result<Option<String>> {
        self.settle(Duration::from_secs(20)).await;
        let Some(name) = self.pick(target) else {
            return Ok(Some(format!("no healthy {target:?}")));
        };
        if sig == Sig::TermTwice {
            self.term_twice(&name).await?;
        } else {
            self.replicas.signal(&name, sig).await?;
            // Its replacement, as a Deployment would start one.
            self.replicas.start()?;
        }
        Ok(None)
    }

    /// SIGTERM, then a second SIGTERM while the replica drains. The webhook hangs meanwhile, so
    /// the drain cannot finish before the second signal arrives.
    async fn term_twice(&self, name: &str) -> anyhow::Result<()> {
        self.hook.force(Some(HookMode::Hang));
        let t0 = self.now();
        self.replicas.signal(name, Sig::Term).await?;
        let first = Instant::now();
        self.replicas.start()?;
        let limit = self.timing().linger + Duration::from_secs(5);
        let draining = wait_for(limit, "the drain", || {
            self.obs.log_seen(name, t0, &LogKind::Draining)
                || self.replicas.get(name).is_none_or(|r| !r.running())
        })
        .await;
        // A repeat within this window is the same request (one SIGTERM delivered twice): the
        // second signal has to come later to force the exit.
        tokio::time::sleep_until(first + REPEAT_WINDOW + Duration::from_millis(100)).await;
        if draining.is_ok() && self.replicas.get(name).is_some_and(|r| r.running()) {
            self.replicas.signal(name, Sig::Term).await?;
        } else {
            eprintln!(
                "soak: {:7.1}s {name} never drained before exiting",
                self.now()
            );
        }
        self.replicas.wait_exit(name, Duration::from_secs(5)).await;
        self.hook.force(None);
        Ok(())
    }

    /// Nobody watches for a while: every replica stops gracefully, events created meanwhile are
    /// deleted (as the event TTL would) and the history is compacted, so the next leader's resume
    /// gets 410, relists, and can only report the deleted events as a possible gap.
    async fn outage(&self, nobody_for: Duration, delete: usize) -> anyhow::Result<Option<String>> {
        self.settle(Duration::from_secs(20)).await;
        let generator = self.generator()?;
        let from = generator.count();
        self.stop_replicas().await?;
        tokio::time::sleep(nobody_for).await;
        let keys = generator.generated();
        let new_events: Vec<&str> = keys
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.strip_suffix(":1"))
            .collect();
        // Spread over the outage rather than the first few.
        let step = (new_events.len() / delete.max(1)).max(1);
        let doomed: BTreeSet<&str> = new_events
            .iter()
            .step_by(step)
            .take(delete)
            .copied()
            .collect();
        let mut deleted = 0;
        for ev in self.sim.list_events() {
            let meta = |f: &str| {
                ev.pointer(&format!("/metadata/{f}"))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let uid = meta("uid");
            if doomed.contains(uid.as_str())
                && self
                    .sim
                    .delete_event(&meta("namespace"), &meta("name"))
                    .is_ok()
            {
                self.obs.mark_deleted(uid, self.now());
                deleted += 1;
            }
        }
        self.sim.compact();
        eprintln!(
            "soak: {:7.1}s nobody watched for {}ms; deleted {deleted} events created meanwhile, compacted the history",
            self.now(),
            nobody_for.as_millis()
        );
        self.replicas.start()?;
        self.replicas.start()?;
        Ok(None)
    }

    /// The leader's watch is dropped and its reconnection delayed while the history is compacted
    /// past it, so it resumes from a compacted resourceVersion.
    async fn compact_under_the_watch(&self) {
        self.sim.set_latency(Duration::from_millis(300));
        self.sim.drop_watches();
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.sim.compact();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.sim.set_latency(Duration::ZERO);
    }

    /// SIGTERM to every running replica, standbys first (they exit at once), then the leader
    /// (which hands over to nobody); waits for every exit.
    async fn stop_replicas(&self) -> anyhow::Result<()> {
        let holder = self.obs.holder();
        let mut running = self.replicas.running();
        // The leader last.
        running.sort_by_key(|n| *n == holder);
        for name in &running {
            let signalled = self
                .replicas
                .get(name)
                .is_some_and(|r| !r.signals.is_empty());
            if !signalled {
                self.replicas.signal(name, Sig::Term).await?;
            }
            if *name != holder {
                self.replicas
                    .wait_exit(name, self.timing().exit_limit())
                    .await;
            }
        }
        for name in &running {
            self.replicas
                .wait_exit(name, self.timing().exit_limit())
                .await;
        }
        self.replicas.reap_stuck().await;
        Ok(())
    }

    /// Heals every fault, stops the generator, waits for the exporters to catch up, and stops
    /// them. Returns the generated keys.
    async fn finish(&self) -> anyhow::Result<Vec<String>> {
        self.sim.fail_next(0, 500);
        self.sim.set_latency(Duration::ZERO);
        self.sim.set_stale_watch_empty_200(false);
        self.sim.refuse_lease_writes(None);
        self.hook.force(None);
        self.hook.set_mode(HookMode::Up);
        while self.replicas.healthy().len() < 2 {
            self.replicas.start()?;
        }
        let generator = self.generator()?;
        generator.stop();
        let _ = tokio::time::timeout(Duration::from_secs(10), generator.wait()).await;
        let generated = generator.generated();
        eprintln!(
            "soak: {:7.1}s generated {}; waiting for both receivers to catch up",
            self.now(),
            generated.len()
        );
        // Each check reads every delivery so far: twice a second is plenty.
        let caught_up = wait_for_every(
            Duration::from_secs(120),
            Duration::from_millis(500),
            "both receivers to catch up",
            || self.missing(&generated) == 0,
        )
        .await;
        if let Err(e) = caught_up {
            eprintln!(
                "soak: {:7.1}s {e}: {} occurrences still missing",
                self.now(),
                self.missing(&generated)
            );
        }
        self.stop_replicas().await?;
        Ok(generated)
    }

    /// Generated occurrences some receiver still lacks, not counting those that may be gone for
    /// good (deleted events, counts superseded by a later one): the verdict judges those.
    fn missing(&self, generated: &[String]) -> usize {
        let deliveries = self.obs.deliveries();
        let mut have: BTreeSet<(Receiver, &str)> = BTreeSet::new();
        let mut highest: BTreeMap<(Receiver, &str), i64> = BTreeMap::new();
        for d in &deliveries {
            have.insert((d.receiver, d.key.as_str()));
            let (uid, n) = split_key(&d.key);
            let h = highest.entry((d.receiver, uid)).or_default();
            *h = (*h).max(n);
        }
        let deleted = self.obs.deleted();
        generated
            .iter()
            .filter(|k| {
                let (uid, n) = split_key(k);
                !deleted.contains_key(uid)
                    && Receiver::ALL.iter().any(|r| {
                        !have.contains(&(*r, k.as_str()))
                            && highest.get(&(*r, uid)).is_none_or(|h| *h <= n)
                    })
            })
            .count()
    }

    /// Follows files and logs, samples the generator, and checks what can be checked on the fly.
    async fn observe(self: Arc<Self>, stop: CancellationToken) {
        let mut tailer = Tailer::default();
        let mut checked = 0;
        let mut tick: u64 = 0;
        loop {
            let stopping = stop.is_cancelled();
            tailer.poll(&self.replicas.followed(), &self.clock, &self.obs);
            if stopping {
                return;
            }
            if let Some(g) = self.sim.generator() {
                self.obs.sample_generated(self.now(), g.count());
            }
            tick += 1;
            if tick.is_multiple_of(20) {
                checked = self.check_holders(checked);
                self.replicas.reap_stuck().await;
            }
            if tick.is_multiple_of(150) {
                self.progress();
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Early warning of deliveries by a replica without the Lease (the verdict repeats the check
    /// over everything at the end). Returns how many deliveries are checked now.
    fn check_holders(&self, from: usize) -> usize {
        let deliveries = self.obs.deliveries();
        let horizon = self.now() - 1.0;
        let upto = deliveries[from.min(deliveries.len())..]
            .iter()
            .position(|d| d.t >= horizon)
            .map(|p| from + p)
            .unwrap_or(deliveries.len());
        let lease = self.obs.lease();
        let timeline = verdict::Timeline::new(&lease);
        for v in verdict::deliveries_without_lease(&deliveries[from.min(upto)..upto], &timeline) {
            eprintln!("soak: {:7.1}s VIOLATION (early warning): {v}", self.now());
        }
        upto
    }

    fn progress(&self) {
        let deliveries = self.obs.deliveries();
        let count = |r: Receiver| deliveries.iter().filter(|d| d.receiver == r).count();
        let lease = self.obs.lease();
        let last = lease.last();
        eprintln!(
            "soak: {:7.1}s progress: generated {}, delivered file {} webhook {}, holder {:?} epoch {} cursor {}, faults {}, running {:?}",
            self.now(),
            self.sim.generator().map(|g| g.count()).unwrap_or(0),
            count(Receiver::File),
            count(Receiver::Webhook),
            last.map(|s| s.holder.as_str()).unwrap_or(""),
            last.map(|s| s.epoch).unwrap_or(0),
            last.and_then(|s| s.cursor).unwrap_or(0),
            self.executed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            self.replicas.running(),
        );
    }

    /// The observations, for reading a failed run: lease.tsv (every Lease version) and
    /// deliveries.tsv (every delivery to either receiver), times in seconds since the start.
    fn dump(
        &self,
        lease: &[observe::LeaseState],
        deliveries: &[observe::Delivery],
    ) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let mut text = String::from("t\trv\tholder\tepoch\tcursor\trenewed\n");
        for s in lease {
            let _ = writeln!(
                text,
                "{:.3}\t{}\t{}\t{}\t{}\t{:.3}",
                s.t,
                s.rv,
                s.holder,
                s.epoch,
                s.cursor.map(|c| c.to_string()).unwrap_or_default(),
                s.renewed.unwrap_or(f64::NAN)
            );
        }
        std::fs::write(self.opts.work_dir.join("lease.tsv"), text)?;
        let mut text = String::from("t\tlo\treceiver\treplica\tkey\trv\n");
        for d in deliveries {
            let _ = writeln!(
                text,
                "{:.3}\t{:.3}\t{}\t{}\t{}\t{}",
                d.t,
                d.lo,
                d.receiver.name(),
                d.replica,
                d.key,
                d.rv
            );
        }
        std::fs::write(self.opts.work_dir.join("deliveries.tsv"), text)?;
        Ok(())
    }

    /// Kills whatever still runs (after a harness error).
    async fn kill_all(&self) {
        for name in self.replicas.running() {
            let _ = self.replicas.signal(&name, Sig::Kill).await;
        }
    }

    fn outcome(&self, generated: &[String]) -> Outcome {
        let deliveries = self.obs.deliveries();
        let lease = self.obs.lease();
        let logs = self.obs.logs();
        let replicas = self.replicas.all();
        let samples = self.obs.generated_samples();
        let deleted = self.obs.deleted();
        let v = verdict::judge(&verdict::Inputs {
            generated,
            deliveries: &deliveries,
            lease: &lease,
            logs: &logs,
            replicas: &replicas,
            generated_at: &samples,
            deleted: &deleted,
        });
        if let Err(e) = self.dump(&lease, &deliveries) {
            eprintln!("soak: could not write the observations: {e:#}");
        }
        let executed = self
            .executed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let skipped = self
            .skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut violations = self.obs.violations();
        violations.extend(v.violations.iter().cloned());
        let mut report = vec![format!(
            "soak: {} replicas ran, {} Lease versions, {} epochs; faults skipped {}{}",
            replicas.len(),
            lease.len(),
            lease.last().map(|s| s.epoch + 1).unwrap_or(0),
            skipped.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                let s: Vec<String> = skipped
                    .iter()
                    .map(|(f, why)| format!("{} ({why})", f.kind()))
                    .collect();
                format!(": {}", s.join(", "))
            }
        )];
        report.extend(v.details.iter().map(|d| format!("soak: {d}")));
        report.extend(violations.iter().map(|x| format!("soak: VIOLATION: {x}")));
        let kinds: Vec<String> = Schedule::by_kind(&executed)
            .into_iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let last_line = format!(
            "soak: seed {}, duration {}, faults {} (by kind {}), generated {}, exported {}, lost {}, duplicated {} (bound {})",
            self.opts.seed,
            self.opts.duration_text,
            executed.len(),
            kinds.join(" "),
            v.generated,
            v.exported,
            v.lost,
            v.duplicated,
            v.bound
        );
        Outcome {
            passed: violations.is_empty() && v.lost == 0 && v.duplicated <= v.bound,
            report,
            last_line,
        }
    }
}
