//! Exporter replicas as child processes: each with its own identity, config, file receiver and log
//! in the work directory, all pointing at the in-process kube-sim and webhook. A reaper task per
//! child records how it exited and judges that against the signals it was sent.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use super::observe::{Clock, Followed, Observations};
use super::schedule::Sig;
use super::webhook::REPLICA_HEADER;
use kube_sim::exporter_process::ExporterProcess;

/// SIGHUP is a graceful shutdown like SIGTERM (src/shutdown.rs): a replica that dies by it is a
/// violation, not a crash. (True would count a SIGHUP death as a crash, for an older exporter.)
pub const SIGHUP_MAY_KILL: bool = false;

/// Exit status of a second signal during shutdown (src/shutdown.rs `FORCED_EXIT`).
pub const FORCED_EXIT: i32 = 130;

const SIGHUP: i32 = 1;
const SIGKILL: i32 = 9;

/// Lease timing of the soak: the tests' short one (same ratios as production), a short linger so
/// handovers are frequent, and a webhook timeout the hanging webhook outlasts.
#[derive(Debug, Clone)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
    pub linger: Duration,
    pub drain: Duration,
    pub hook_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry: Duration::from_millis(500),
            linger: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            hook_timeout: Duration::from_secs(3),
        }
    }
}

impl Timing {
    /// How long a replica may take to exit after SIGTERM: linger, drain, release, and margin for a
    /// loaded machine.
    pub fn exit_limit(&self) -> Duration {
        self.linger + self.drain + Duration::from_secs(10)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "status {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What an exit means, given the signals sent before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitClass {
    /// Exited 0: handed over (or stood down) cleanly.
    Graceful,
    /// Died without handing over (SIGKILL, a second signal, SIGHUP while it still kills):
    /// its successor replays from the last committed cursor.
    Crash,
    Unexpected(String),
}

pub fn classify(signals: &[(f64, Sig)], exit: Exit) -> ExitClass {
    let count = |s: Sig| signals.iter().filter(|(_, x)| *x == s).count();
    let unexpected = |why: &str| ExitClass::Unexpected(format!("{why}, exited with {exit}"));
    if signals.is_empty() {
        return unexpected("no signal was sent");
    }
    match exit {
        Exit::Code(0) => ExitClass::Graceful,
        Exit::Signal(SIGKILL) if count(Sig::Kill) > 0 => ExitClass::Crash,
        Exit::Code(FORCED_EXIT) if count(Sig::Term) >= 2 => ExitClass::Crash,
        Exit::Signal(SIGHUP) if count(Sig::Hup) > 0 && SIGHUP_MAY_KILL => ExitClass::Crash,
        _ if count(Sig::Kill) > 0 => unexpected("after SIGKILL"),
        _ if count(Sig::Term) >= 2 => {
            unexpected(&format!("after a second SIGTERM (want {FORCED_EXIT} or 0)"))
        }
        _ if count(Sig::Hup) > 0 => unexpected("after SIGHUP (want 0, a graceful exit)"),
        _ => unexpected("after one SIGTERM (want 0, a graceful exit)"),
    }
}

#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    pub pid: Option<u32>,
    pub output: PathBuf,
    pub log: PathBuf,
    pub started: f64,
    pub signals: Vec<(f64, Sig)>,
    pub exit: Option<(f64, Exit)>,
}

impl Replica {
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

#[derive(Clone)]
struct Launch {
    exe: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
    hook_url: String,
    timing: Timing,
    clock: Clock,
    obs: Arc<Observations>,
    /// `leaderElection.shards` of every replica (1: one Lease).
    shards: u32,
}

#[derive(Default)]
struct Inner {
    replicas: Vec<Replica>,
    next: usize,
}

/// Every replica started during the run, live or not. Cheap to clone.
#[derive(Clone)]
pub struct Replicas {
    launch: Arc<Launch>,
    inner: Arc<Mutex<Inner>>,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Replicas {
    pub fn new(
        exe: PathBuf,
        dir: PathBuf,
        kubeconfig: PathBuf,
        hook_url: String,
        timing: Timing,
        clock: Clock,
        obs: Arc<Observations>,
    ) -> Self {
        Self {
            launch: Arc::new(Launch {
                exe,
                dir,
                kubeconfig,
                hook_url,
                timing,
                clock,
                obs,
                shards: 1,
            }),
            inner: Arc::default(),
        }
    }

    /// Every replica started from now on shares the stream in `shards` shards.
    pub fn with_shards(mut self, shards: u32) -> Self {
        Arc::make_mut(&mut self.launch).shards = shards;
        self
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn timing(&self) -> &Timing {
        &self.launch.timing
    }

    /// Starts a replica under a new identity (r0, r1, …); returns its name.
    pub fn start(&self) -> anyhow::Result<String> {
        let name = {
            let mut inner = self.inner();
            inner.next += 1;
            format!("r{}", inner.next - 1)
        };
        let l = &self.launch;
        let output = l.dir.join(format!("{name}.ndjson"));
        let process = ExporterProcess::new(&l.exe, &l.dir, &name, &l.kubeconfig);
        let log = process.log();
        let command = process
            .command(&config_yaml(
                &name,
                &output,
                &l.hook_url,
                &l.timing,
                l.shards,
            ))
            .with_context(|| format!("preparing replica {name}"))?;
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", l.exe.display()))?;
        let started = l.clock.now();
        self.inner().replicas.push(Replica {
            name: name.clone(),
            pid: child.id(),
            output,
            log,
            started,
            signals: Vec::new(),
            exit: None,
        });
        eprintln!("soak: {started:7.1}s {name} started");
        let (me, who) = (self.clone(), name.clone());
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(-1),
                },
                Err(_) => Exit::Code(-1),
            };
            me.exited(&who, exit);
        });
        Ok(name)
    }

    fn exited(&self, name: &str, exit: Exit) {
        let t = self.launch.clock.now();
        let signals = {
            let mut inner = self.inner();
            let Some(r) = inner.replicas.iter_mut().find(|r| r.name == name) else {
                return;
            };
            r.exit = Some((t, exit));
            r.signals.clone()
        };
        let after = signals
            .first()
            .map(|(s, _)| format!(" {:.1}s after the first signal", t - s))
            .unwrap_or_default();
        eprintln!("soak: {t:7.1}s {name} exited with {exit}{after}");
        if let ExitClass::Unexpected(why) = classify(&signals, exit) {
            let signals: Vec<String> = signals
                .iter()
                .map(|(t, s)| format!("SIG{} at {t:.1}s", s.name()))
                .collect();
            self.launch.obs.violation(
                t,
                format!("{name}: {why} (signals: {})", signals.join(", ")),
            );
        }
    }

    /// Sends a signal (TERM, HUP or KILL) and records it. A replica that already exited is left
    /// alone: its pid may belong to another process by now.
    pub async fn signal(&self, name: &str, sig: Sig) -> anyhow::Result<()> {
        let pid = {
            let mut inner = self.inner();
            let Some(r) = inner.replicas.iter_mut().find(|r| r.name == name) else {
                bail!("no replica {name}");
            };
            if !r.running() {
                return Ok(());
            }
            let Some(pid) = r.pid else { return Ok(()) };
            r.signals.push((self.launch.clock.now(), sig));
            pid
        };
        eprintln!(
            "soak: {:7.1}s SIG{} to {name}",
            self.launch.clock.now(),
            sig.name()
        );
        let status = tokio::process::Command::new("kill")
            .arg(format!("-{}", sig.name()))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running kill")?;
        if !status.success() && self.get(name).is_some_and(|r| r.running()) {
            bail!("kill -{} {pid} ({name}) failed", sig.name());
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Replica> {
        self.inner()
            .replicas
            .iter()
            .find(|r| r.name == name)
            .cloned()
    }

    pub fn all(&self) -> Vec<Replica> {
        self.inner().replicas.clone()
    }

    /// Running replicas that were sent no signal: the ones a fault may still pick.
    pub fn healthy(&self) -> Vec<String> {
        self.inner()
            .replicas
            .iter()
            .filter(|r| r.running() && r.signals.is_empty())
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn running(&self) -> Vec<String> {
        self.inner()
            .replicas
            .iter()
            .filter(|r| r.running())
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn followed(&self) -> Vec<Followed> {
        self.inner()
            .replicas
            .iter()
            .map(|r| Followed {
                name: r.name.clone(),
                output: r.output.clone(),
                log: r.log.clone(),
            })
            .collect()
    }

    /// Waits until the replica exited; None if it is still running after `limit`.
    pub async fn wait_exit(&self, name: &str, limit: Duration) -> Option<Exit> {
        let deadline = Instant::now() + limit;
        loop {
            match self.get(name) {
                None => return None,
                Some(r) => {
                    if let Some((_, e)) = r.exit {
                        return Some(e);
                    }
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replicas still running `limit` after their first signal: a violation each, then SIGKILL.
    pub async fn reap_stuck(&self) {
        let now = self.launch.clock.now();
        let limit = self.launch.timing.exit_limit().as_secs_f64();
        let stuck: Vec<(String, f64)> = self
            .inner()
            .replicas
            .iter()
            .filter(|r| r.running())
            .filter_map(|r| {
                let first = r.signals.first()?.0;
                let already_killed = r.signals.iter().any(|(_, s)| *s == Sig::Kill);
                (now - first > limit && !already_killed).then(|| (r.name.clone(), first))
            })
            .collect();
        for (name, first) in stuck {
            self.launch.obs.violation(
                now,
                format!(
                    "{name} still runs {:.1}s after its first signal (limit {limit:.0}s: linger + drain + 10s); killing it",
                    now - first
                ),
            );
            if let Err(e) = self.signal(&name, Sig::Kill).await {
                eprintln!("soak: {e:#}");
            }
        }
    }
}

/// A replica's config: the tests' lease timing, a file receiver and the soak's webhook, both fed
/// every event; the webhook batches (a slow webhook must not throttle the file receiver below the
/// generation rate), sends up to four requests at once (it answers after a round trip) and names
/// the replica in a header. `eventTTL` is shorter than the shortest
/// outage: the outages delete events as a TTL that short would, so a resume after one may have
/// missed them, and must say so.
fn config_yaml(name: &str, output: &Path, hook_url: &str, t: &Timing, shards: u32) -> String {
    let shards = if shards > 1 {
        format!("\n  shards: {shards}")
    } else {
        String::new()
    };
    format!(
        "logFormat: json
logLevel: info
kubeQPS: 1000
kubeBurst: 1000
maxEventAgeSeconds: 3600
eventTTL: 3s
leaderElection:
  leaseNamespace: default
  leaseDuration: {lease}
  renewDeadline: {renew}
  retryPeriod: {retry}
  shutdownLinger: {linger}
  drainTimeout: {drain}{shards}
route:
  routes:
    - match:
        - receiver: file
        - receiver: hook
receivers:
  - name: file
    file:
      path: {output}
  - name: hook
    timeout: {timeout}
    concurrency: 4
    retry: {{initialBackoff: 100ms, maxBackoff: 2s}}
    batch: {{maxEvents: 100, maxWait: 100ms}}
    webhook:
      endpoint: {hook_url}
      headers:
        {REPLICA_HEADER}: {name}
",
        lease = ms(t.lease),
        renew = ms(t.renew_deadline),
        retry = ms(t.retry),
        linger = ms(t.linger),
        drain = ms(t.drain),
        timeout = ms(t.hook_timeout),
        output = output.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_judged_against_the_signals_sent() {
        let term = [(1.0, Sig::Term)];
        let twice = [(1.0, Sig::Term), (2.0, Sig::Term)];
        assert_eq!(classify(&term, Exit::Code(0)), ExitClass::Graceful);
        assert!(matches!(
            classify(&term, Exit::Code(1)),
            ExitClass::Unexpected(_)
        ));
        assert!(matches!(
            classify(&[], Exit::Code(0)),
            ExitClass::Unexpected(_)
        ));
        assert_eq!(classify(&twice, Exit::Code(130)), ExitClass::Crash);
        assert_eq!(classify(&twice, Exit::Code(0)), ExitClass::Graceful);
        assert_eq!(
            classify(&[(1.0, Sig::Kill)], Exit::Signal(9)),
            ExitClass::Crash
        );
        let hup = classify(&[(1.0, Sig::Hup)], Exit::Signal(1));
        assert_eq!(hup == ExitClass::Crash, SIGHUP_MAY_KILL);
    }
}
