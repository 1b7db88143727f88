//! What the soak sees, timestamped on one clock: every Lease state (read in-process, so injected
//! API faults never blind the observer), every delivery to the file and webhook receivers, the
//! replicas' transition log lines, and the generator's progress. The verdict is computed from
//! these alone.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use kube_sim::SimHandle;

pub const LEASE_NAME: &str = "kube-event-exporter";
pub const LEASE_NAMESPACE: &str = "default";
/// The exporter's cursor annotation (src/leader/cursor.rs): `{"resourceVersion":"123",…}`.
pub const CURSOR_ANNOTATION: &str = "kube-event-exporter.io/cursor";

/// Seconds since the soak started, on the wall clock: replica logs carry wall-clock timestamps and
/// the Lease carries the exporter's renewTime, so everything is compared on that clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: jiff::Timestamp,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: jiff::Timestamp::now(),
        }
    }

    pub fn now(&self) -> f64 {
        self.at(jiff::Timestamp::now())
    }

    pub fn at(&self, t: jiff::Timestamp) -> f64 {
        t.duration_since(self.start).as_secs_f64()
    }

    pub fn parse(&self, rfc3339: &str) -> Option<f64> {
        rfc3339.parse::<jiff::Timestamp>().ok().map(|t| self.at(t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Receiver {
    File,
    Webhook,
}

impl Receiver {
    pub const ALL: [Receiver; 2] = [Receiver::File, Receiver::Webhook];

    pub fn name(self) -> &'static str {
        match self {
            Receiver::File => "file",
            Receiver::Webhook => "webhook",
        }
    }
}

/// One occurrence handed to a receiver by a replica, seen between `lo` and `t`: for a file, the
/// previous and the current poll; for the webhook, the request's arrival and its acceptance.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub receiver: Receiver,
    pub replica: String,
    pub key: String,
    pub rv: u64,
    pub lo: f64,
    pub t: f64,
}

/// One version of the Lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseState {
    pub t: f64,
    pub rv: u64,
    pub holder: String,
    pub epoch: i64,
    pub cursor: Option<u64>,
    /// spec.renewTime, written by the holder when it built the request that stored `cursor`.
    pub renewed: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogKind {
    /// `cold`: no cursor to resume from, so a full list follows.
    Acquired {
        epoch: i64,
        cold: bool,
    },
    Released {
        drained: bool,
    },
    /// The leader gave up without committing: taken over before its release, or the release failed.
    NotReleased,
    LostLease,
    PossibleGap,
    /// A relist started (410, a stale watch): until it is acknowledged whole, the cursor cannot
    /// move, since listed events do not come in resourceVersion order.
    Relisting,
    Draining,
    Panic,
}

impl LogKind {
    /// A list whose events are delivered out of resourceVersion order starts here.
    pub fn starts_list(&self) -> bool {
        matches!(
            self,
            LogKind::PossibleGap | LogKind::Relisting | LogKind::Acquired { cold: true, .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub t: f64,
    pub replica: String,
    pub kind: LogKind,
    pub line: String,
}

#[derive(Default)]
pub struct Observations {
    pub deliveries: Mutex<Vec<Delivery>>,
    pub lease: Mutex<Vec<LeaseState>>,
    pub logs: Mutex<Vec<LogEvent>>,
    /// (t, occurrences generated so far), every 100 ms.
    pub generated: Mutex<Vec<(f64, usize)>>,
    pub violations: Mutex<Vec<String>>,
    /// Events the soak deleted while nobody watched: uid → when.
    pub deleted: Mutex<BTreeMap<String, f64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking observer task must not hide what the others saw.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observations {
    /// Records a broken invariant and prints it at once (the run goes on: one failing seed should
    /// show everything that went wrong).
    pub fn violation(&self, t: f64, what: String) {
        eprintln!("soak: {t:7.1}s VIOLATION: {what}");
        lock(&self.violations).push(format!("{t:.1}s: {what}"));
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.deliveries).clone()
    }

    pub fn record(&self, d: impl IntoIterator<Item = Delivery>) {
        lock(&self.deliveries).extend(d);
    }

    pub fn lease(&self) -> Vec<LeaseState> {
        lock(&self.lease).clone()
    }

    pub fn holder(&self) -> String {
        lock(&self.lease)
            .last()
            .map(|s| s.holder.clone())
            .unwrap_or_default()
    }

    pub fn logs(&self) -> Vec<LogEvent> {
        lock(&self.logs).clone()
    }

    pub fn log_seen(&self, replica: &str, after: f64, kind: &LogKind) -> bool {
        lock(&self.logs)
            .iter()
            .any(|e| e.replica == replica && e.t >= after && e.kind == *kind)
    }

    pub fn generated_samples(&self) -> Vec<(f64, usize)> {
        lock(&self.generated).clone()
    }

    pub fn sample_generated(&self, t: f64, n: usize) {
        lock(&self.generated).push((t, n));
    }

    pub fn deleted(&self) -> BTreeMap<String, f64> {
        lock(&self.deleted).clone()
    }

    pub fn mark_deleted(&self, uid: String, t: f64) {
        lock(&self.deleted).insert(uid, t);
    }
}

/// The fields of an exported event that identify its occurrence.
#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    metadata: DocMeta,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    series: Option<DocSeries>,
}

#[derive(Deserialize, Default)]
struct DocMeta {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct DocSeries {
    #[serde(default)]
    count: Option<i64>,
}

impl Doc {
    /// `{uid}:{count}` as the exporter keys it (count, else series.count, at least 1), and the
    /// resourceVersion the event had.
    fn occurrence(self) -> (String, u64) {
        let n = self
            .series
            .and_then(|s| s.count)
            .unwrap_or(0)
            .max(self.count.unwrap_or(0))
            .max(1);
        let rv = self
            .metadata
            .resource_version
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        (format!("{}:{n}", self.metadata.uid), rv)
    }
}

/// Occurrences in a webhook body: one event, or a JSON array of them (a batch).
pub fn occurrences_in_body(body: &[u8]) -> Result<Vec<(String, u64)>, serde_json::Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let docs: Vec<Doc> = serde_json::from_slice(body)?;
        Ok(docs.into_iter().map(Doc::occurrence).collect())
    } else {
        Ok(vec![serde_json::from_slice::<Doc>(body)?.occurrence()])
    }
}

pub fn occurrence_in_line(line: &[u8]) -> Option<(String, u64)> {
    serde_json::from_slice::<Doc>(line)
        .ok()
        .map(Doc::occurrence)
}

/// Reads a growing file from where the previous read stopped; yields complete lines only.
#[derive(Default)]
pub struct Tail {
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    pub fn lines(&mut self, path: &Path) -> Vec<Vec<u8>> {
        let Ok(mut f) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// What the tailer follows for one replica.
#[derive(Debug, Clone)]
pub struct Followed {
    pub name: String,
    pub output: PathBuf,
    pub log: PathBuf,
}

/// Follows every replica's file receiver and log.
#[derive(Default)]
pub struct Tailer {
    files: BTreeMap<String, (Tail, f64)>,
    logs: BTreeMap<String, Tail>,
}

impl Tailer {
    /// Reads what every replica appended since the last call.
    pub fn poll(&mut self, replicas: &[Followed], clock: &Clock, obs: &Observations) {
        for r in replicas {
            let now = clock.now();
            let (tail, last) = self
                .files
                .entry(r.name.clone())
                .or_insert_with(|| (Tail::default(), now));
            let lo = *last;
            *last = now;
            let mut new = Vec::new();
            for line in tail.lines(&r.output) {
                match occurrence_in_line(&line) {
                    Some((key, rv)) => new.push(Delivery {
                        receiver: Receiver::File,
                        replica: r.name.clone(),
                        key,
                        rv,
                        lo,
                        t: now,
                    }),
                    None => obs.violation(
                        now,
                        format!(
                            "{}: a line of its file receiver is not an event: {}",
                            r.name,
                            String::from_utf8_lossy(&line[..line.len().min(200)])
                        ),
                    ),
                }
            }
            obs.record(new);
            let log = self.logs.entry(r.name.clone()).or_default();
            for line in log.lines(&r.log) {
                if let Some(e) = log_event(&r.name, &line, clock) {
                    announce(&e);
                    if e.kind == LogKind::Panic {
                        obs.violation(e.t, format!("{} panicked: {}", e.replica, e.line));
                    }
                    lock(&obs.logs).push(e);
                }
            }
        }
    }
}

fn announce(e: &LogEvent) {
    let what = match &e.kind {
        LogKind::Acquired { epoch, cold } => format!(
            "acquired the lease, epoch {epoch}{}",
            if *cold {
                " (no cursor: cold start)"
            } else {
                ""
            }
        ),
        LogKind::Released { drained } => format!("released the lease (drained {drained})"),
        LogKind::NotReleased => "did not release the lease".into(),
        LogKind::LostLease => "lost the lease".into(),
        LogKind::PossibleGap => "reported a possible gap".into(),
        LogKind::Relisting | LogKind::Draining | LogKind::Panic => return,
    };
    eprintln!("soak: {:7.1}s {} {what}", e.t, e.replica);
}

/// The transition lines the verdict needs, from the exporter's JSON log (docs/architecture.md,
/// "Leadership and handover", names them).
fn log_event(replica: &str, line: &[u8], clock: &Clock) -> Option<LogEvent> {
    let text = String::from_utf8_lossy(line).to_string();
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return text.contains("panicked").then(|| LogEvent {
            t: clock.now(),
            replica: replica.to_string(),
            kind: LogKind::Panic,
            line: text.clone(),
        });
    };
    let field = |k: &str| v.get(k).or_else(|| v.get("fields").and_then(|f| f.get(k)));
    let message = field("message").and_then(Value::as_str).unwrap_or_default();
    let kind = if message == "acquired lease" {
        LogKind::Acquired {
            epoch: field("epoch").and_then(Value::as_i64).unwrap_or(-1),
            cold: field("cursor")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty),
        }
    } else if message == "released lease" {
        LogKind::Released {
            drained: field("drained").and_then(Value::as_bool).unwrap_or(false),
        }
    } else if message.starts_with("lease was taken over before release")
        || message.starts_with("releasing the lease failed")
    {
        LogKind::NotReleased
    } else if message.starts_with("lost lease") {
        LogKind::LostLease
    } else if message.starts_with("possible gap") {
        LogKind::PossibleGap
    } else if message.contains("relisting") {
        LogKind::Relisting
    } else if message.starts_with("shutdown: draining") {
        LogKind::Draining
    } else {
        return None;
    };
    let t = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|s| clock.parse(s))
        .unwrap_or_else(|| clock.now());
    Some(LogEvent {
        t,
        replica: replica.to_string(),
        kind,
        line: text,
    })
}

/// The Lease as stored, or None before its creation.
pub fn read_lease(sim: &SimHandle, clock: &Clock) -> Option<LeaseState> {
    let v = sim
        .get_object(
            "coordination.k8s.io/v1",
            "Lease",
            LEASE_NAMESPACE,
            LEASE_NAME,
        )
        .ok()?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let cursor = v
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CURSOR_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|c| c.get("resourceVersion")?.as_str()?.parse().ok());
    Some(LeaseState {
        t: clock.now(),
        rv: s("/metadata/resourceVersion")?.parse().ok()?,
        holder: s("/spec/holderIdentity").unwrap_or_default().to_string(),
        epoch: v
            .pointer("/spec/leaseTransitions")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        cursor,
        renewed: s("/spec/renewTime").and_then(|r| clock.parse(r)),
    })
}

/// Records every version of the Lease: the simulator wakes us on every write of any object, and
/// we keep the Lease's versions. Checks on the spot that the cursor never moves backwards.
pub async fn monitor_lease(
    sim: SimHandle,
    clock: Clock,
    obs: Arc<Observations>,
    stop: CancellationToken,
) {
    let mut changes = sim.subscribe();
    let mut last_rv = 0;
    let mut highest: Option<(u64, f64, String)> = None;
    loop {
        if let Some(state) = read_lease(&sim, &clock).filter(|s| s.rv != last_rv) {
            last_rv = state.rv;
            if let (Some(c), Some((h, at, who))) = (state.cursor, &highest)
                && c < *h
            {
                obs.violation(
                    state.t,
                    format!(
                        "the cursor moved backwards: {c} written in epoch {} (holder {:?}) after {h} (written at {at:.1}s, holder {who:?})",
                        state.epoch, state.holder
                    ),
                );
            }
            if let Some(c) = state.cursor
                && highest.as_ref().is_none_or(|(h, _, _)| c > *h)
            {
                highest = Some((c, state.t, state.holder.clone()));
            }
            lock(&obs.lease).push(state);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            // A fallback: a missed wake-up must not freeze the timeline.
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
