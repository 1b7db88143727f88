//! The source: our own paginated list + watch loop over core/v1 events (docs/architecture.md,
//! "How an occurrence flows").
//!
//! Why not `kube_runtime::watcher`: it cannot resume from a stored resourceVersion, relists by
//! re-delivering everything, and busy-loops on the empty 200 that real API servers give a stale
//! events watch. Here:
//! - a cold start lists page by page (never the whole list in memory) and exports what is younger
//!   than `maxEventAgeSeconds`, then replays the API's history for the earlier counts of what it
//!   listed (see `replay`); a resumed start watches from the cursor;
//! - the watch is resumed from the last resourceVersion seen, after timeouts and transport errors;
//! - 410 Gone (HTTP or ERROR frame) and repeated immediately-empty watches (a stale resourceVersion)
//!   relist, exporting only what this process has not seen; `gap` then judges whether anything
//!   can be missing (a position read longer ago than the event TTL, repeats collapsed);
//! - every ADDED is an occurrence, every MODIFIED whose count grew is one; the rest only move the
//!   position (as checkpoints), so the cursor advances through quiet filtered stretches too.
//!
//! What to do next (list, watch, back off, stop) is decided by the pure state machine in `phase`;
//! `Source::run` only makes the requests it names and reports what they produced.

mod error;
pub mod frames;
pub mod gap;
pub mod lines;
mod managed_fields;
pub mod phase;
mod reading;
pub mod replay;
pub mod seen;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::{Duration, Instant};

use kube::api::{ListParams, WatchParams};
use kube::core::Request;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use jiff::Timestamp;

use crate::event::{Event, Text};
use crate::progress::Position;
use crate::shard::Shard;
use crate::telemetry::{Health, Metrics, metrics::CauseLabel};
pub use error::SourceError;
use frames::{Frame, ListPage, decode_event, decode_frame};
use lines::{Line, Next};
use phase::{Action, Gone, ListKind, Outcome, Phase, WatchEnd};
pub use reading::Reading;
use replay::{ListScan, Replay, Step};
use seen::Seen;

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// None: all namespaces.
    pub namespace: Option<String>,
    /// Cold start: list items whose last occurrence is older than this are not exported.
    pub max_event_age: Duration,
    pub page_size: u32,
    /// Server-side watch timeout; the watch is then resumed from the last resourceVersion.
    pub watch_timeout_secs: u32,
    /// This many consecutive watches that end at once with nothing in them mean a stale resourceVersion.
    pub stale_after_empty_watches: u32,
    pub seen_capacity: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long the API server keeps an event after its last write (`--event-ttl`): a relist
    /// after lost history can have missed events only if the history was last read longer ago.
    pub event_ttl: Duration,
    /// Only this shard's events (`leaderElection.shards` > 1): asked of the server with KEP-5866's
    /// `shardSelector`, and kept locally either way (a server without the feature ignores it).
    pub shard: Option<Shard>,
}

/// kube-apiserver's `--event-ttl` default.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// A probe for a replay's start waits this long for its first line; a served start answers at
/// once (it has at least one listed event's write after it).
const PROBE_WAIT: Duration = Duration::from_secs(10);

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            max_event_age: Duration::from_secs(5),
            page_size: 500,
            watch_timeout_secs: 290,
            stale_after_empty_watches: 3,
            seen_capacity: seen::DEFAULT_CAPACITY,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            event_ttl: DEFAULT_EVENT_TTL,
            shard: None,
        }
    }
}

/// Where the source starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// List, exporting what is younger than `max_event_age`, then watch.
    Cold,
    /// Watch from this position (a delivery cursor): everything after it is replayed.
    Resume(Position),
}

/// What the source emits, in order.
#[derive(Debug)]
pub enum Item {
    /// A new occurrence. `position` is where the cursor may move once it is delivered (None for list
    /// items, whose order is not resourceVersion order; the list's checkpoint follows them).
    Occurrence {
        event: Box<Event>,
        position: Option<Position>,
    },
    /// Nothing to export, but everything up to here is accounted for.
    Checkpoint(Position),
}

/// What a relist after lost history handed on so far, for its verdict (`gap::judge`).
#[derive(Debug)]
struct RelistTally {
    /// The stream's position whose history was gone.
    after: String,
    exported: u64,
    /// Occurrences (and their events) whose counts moved past more than one occurrence while the
    /// history was gone: exported at their latest count only.
    superseded: (u64, u64),
}

pub struct Source {
    client: kube::Client,
    cfg: SourceConfig,
    metrics: Metrics,
    health: Health,
    seen: Seen,
    request: Request,
    /// After a cold list: replaying history for the earlier counts of listed events.
    replay: Option<Replay>,
    /// Occurrences handed to the pipeline (so a shutdown can tell how many it never delivered).
    emitted: Arc<AtomicU64>,
    /// A relist after lost history that exported something not yet judged (`gap`): judged when
    /// the list ends, or when the source stops before that.
    relist: Option<RelistTally>,
    /// Stops the source at once, even in the middle of a list (the run's `cancel` waits for a
    /// list's end: see `run`).
    abort: CancellationToken,
    /// The stream's position beyond its resourceVersion (kept by the phases): the last event
    /// time there, and how far the history after it was read (`Position::checked_at`).
    at_event_time: Option<Timestamp>,
    checked_at: Option<Timestamp>,
    /// When the source last read from the API server (its blind time is a metric and lag).
    reading: Reading,
    /// Whether the server applied the shard selector at the last list (None: not listed yet).
    server_sharded: Option<bool>,
}

impl Source {
    pub fn new(client: kube::Client, cfg: SourceConfig, metrics: Metrics, health: Health) -> Self {
        let path = match &cfg.namespace {
            Some(ns) => format!("/api/v1/namespaces/{ns}/events"),
            None => "/api/v1/events".to_string(),
        };
        Self {
            client,
            seen: Seen::new(cfg.seen_capacity),
            cfg,
            metrics,
            health,
            request: Request::new(path),
            replay: None,
            emitted: Arc::default(),
            relist: None,
            abort: CancellationToken::new(),
            at_event_time: None,
            checked_at: None,
            reading: Reading::new(),
            server_sharded: None,
        }
    }

    /// Counts every occurrence handed on into `counter`.
    pub fn count_emitted(mut self, counter: Arc<AtomicU64>) -> Self {
        self.emitted = counter;
        self
    }

    /// Stops at once when `abort` fires, in the middle of a list too.
    pub fn abort_on(mut self, abort: CancellationToken) -> Self {
        self.abort = abort;
        self
    }

    /// Reports when the source reads from the API server into `reading`.
    pub fn report_reading(mut self, reading: Reading) -> Self {
        self.reading = reading;
        self
    }

    /// Runs until `cancel` fires or the receiving side of `tx` is dropped; an error only if a
    /// request cannot be built (everything else is retried).
    ///
    /// A list under way when `cancel` fires is read to its end first (only `abort_on`'s token cuts
    /// it short): its checkpoint is the only place the cursor can move to, so stopping in the
    /// middle would have the successor list again and deliver everything already delivered.
    ///
    /// The driver of `phase`: make the request the phase names, then let `phase::step` decide.
    pub async fn run(
        mut self,
        start: Start,
        tx: mpsc::Sender<Item>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        if let Start::Resume(pos) = &start {
            self.at_event_time = pos.event_time;
            self.checked_at = pos.checked_at.or(pos.event_time);
            tracing::info!(
                resource_version = %pos.resource_version,
                read_through_secs_ago = gap::age(self.checked_at, Timestamp::now()).map(|d| d.as_secs()),
                "resuming at resourceVersion"
            );
            // A resumed shard watches without listing: ask once (one item) whether the server
            // applies its selector, for the operator's signal; filtering is local either way.
            if self.cfg.shard.is_some() {
                self.detect_server_sharding().await;
            }
        }
        let result = self.drive(Phase::start(start), &tx, &cancel).await;
        // A relist cut short (stopped, or failed and not retried) handed on what it had read:
        // whatever of it can be missing is said now.
        if let Some(tally) = self.relist.take().filter(|t| t.exported > 0) {
            self.judge_relist(tally, Timestamp::now(), false);
        }
        result
    }

    /// The loop of `run`: one request per phase, then `phase::step`.
    async fn drive(
        &mut self,
        mut phase: Phase,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        let abort = self.abort.clone();
        loop {
            if cancel.is_cancelled() || abort.is_cancelled() {
                return Ok(());
            }
            let outcome = match &phase {
                Phase::List { kind, .. } => self.list(kind, tx, &abort).await,
                Phase::Watch { from, .. } => self.watch(from, tx, cancel).await,
                Phase::Relocate { .. } => self.relocate(cancel).await,
                Phase::Backoff { delay, .. } => match self.sleep(*delay, cancel).await {
                    true => Outcome::Waited,
                    false => Outcome::Stopped,
                },
                Phase::Done => return Ok(()),
            };
            self.count_failure(&outcome);
            let jitter = rand::rng().random_range(0.0..=1.0);
            let (next, actions) = phase::step(phase, &outcome, &self.cfg, jitter);
            for action in actions {
                if !self.perform(action, &outcome, tx, cancel).await {
                    return Ok(());
                }
            }
            if next == Phase::Done {
                return outcome.into_error().map_or(Ok(()), Err);
            }
            phase = next;
        }
    }

    /// `source_failures_total{op, cause}` for a failed request.
    fn count_failure(&self, outcome: &Outcome) {
        let (op, e) = match outcome {
            Outcome::ListFailed(e) => ("list", e),
            Outcome::RelocateFailed(e)
            | Outcome::Watched {
                end: WatchEnd::Failed(e),
                ..
            } => ("watch", e),
            _ => return,
        };
        self.metrics.count_source_failure(op, e.cause());
    }

    /// Carries out what `step` decided besides the next request; false if the receiving side is
    /// gone.
    async fn perform(
        &mut self,
        action: Action,
        outcome: &Outcome,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> bool {
        match action {
            Action::Restart(cause) => {
                self.metrics
                    .watch_restarts
                    .get_or_create(&CauseLabel {
                        cause: cause.label().to_string(),
                    })
                    .inc();
            }
            Action::HistoryGone {
                resource_version,
                gone,
            } => {
                let read_through_secs_ago =
                    gap::age(self.checked_at, Timestamp::now()).map(|d| d.as_secs());
                match gone {
                    Gone::Expired => tracing::info!(
                        resource_version,
                        read_through_secs_ago,
                        "watch history after this resourceVersion is gone (410 Gone); relisting"
                    ),
                    Gone::Stale { empty_watches } => tracing::info!(
                        resource_version,
                        read_through_secs_ago,
                        empty_watches,
                        "watch keeps ending at once with nothing in it; treating the resourceVersion as stale and relisting"
                    ),
                }
            }
            Action::ReplayGone { at, why } => {
                if let Some(replay) = self.replay.as_mut() {
                    if let Ok(at) = at.parse() {
                        replay.gone_through(at);
                    }
                    tracing::info!(
                        why, resource_version = %at, from_resource_version = replay.from,
                        list_resource_version = replay.list_rv,
                        "cold start: watch history through this resourceVersion is gone; looking for a later place to replay from"
                    );
                }
            }
            Action::AbandonReplay { why } => return self.abandon_replay(why, tx, cancel).await,
            Action::Retry { attempt } => {
                self.health.set_api_ok(false);
                match outcome {
                    Outcome::ListFailed(e) => {
                        // A page that does not decode can quote itself whole in the error.
                        let error: String = crate::telemetry::error_chain(e)
                            .chars()
                            .take(1000)
                            .collect();
                        tracing::warn!(error, attempt, "listing events failed; retrying");
                    }
                    Outcome::Watched {
                        at,
                        end: WatchEnd::Failed(e),
                        ..
                    } => {
                        tracing::warn!(error = %crate::telemetry::error_chain(e), attempt, resource_version = %at, "watch failed; resuming");
                    }
                    Outcome::RelocateFailed(e) => {
                        tracing::warn!(error = %crate::telemetry::error_chain(e), attempt, "cold start: probing the watch history failed; retrying");
                    }
                    _ => {}
                }
            }
        }
        true
    }

    async fn sleep(&self, d: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Hands `item` on unless `cancel` has fired; false if cancelled or the receiving side is gone.
    async fn emit(&self, tx: &mpsc::Sender<Item>, item: Item, cancel: &CancellationToken) -> bool {
        !cancel.is_cancelled() && self.hand_on(tx, item, cancel).await
    }

    /// [`emit`](Self::emit) for a caller that has just checked `cancel`: waits for room only
    /// while it has not fired. Without waiting (most items), no registration for the
    /// cancellation.
    async fn hand_on(
        &self,
        tx: &mpsc::Sender<Item>,
        item: Item,
        cancel: &CancellationToken,
    ) -> bool {
        let occurrence = matches!(item, Item::Occurrence { .. });
        let sent = match tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(item)) => tokio::select! {
                biased;
                _ = cancel.cancelled() => false,
                r = tx.send(item) => r.is_ok(),
            },
        };
        if sent && occurrence {
            self.emitted.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// One whole paginated list: Listed, ListFailed (retried later) or Stopped.
    async fn list(
        &mut self,
        kind: &ListKind,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut lp = ListParams::default().limit(self.cfg.page_size);
        let mut list_rv: Option<String> = None;
        let now = jiff::Timestamp::now();
        let (mut exported, mut items, mut page_no) = (0u64, 0u64, 0u32);
        let started = Instant::now();
        let mut scan =
            (*kind == ListKind::Cold).then(|| ListScan::new(now, self.cfg.max_event_age));
        if let ListKind::Relist { after } = kind {
            // A retry after a failed page goes on with the same tally: what the failed attempt
            // handed on is filtered as seen this time, its collapsed counts stay counted.
            self.relist.get_or_insert_with(|| RelistTally {
                after: after.clone(),
                exported: 0,
                superseded: (0, 0),
            });
        }
        loop {
            page_no += 1;
            // Later pages come from the first page's snapshot through the continue token (the API
            // server rejects a resourceVersion next to a continue token).
            let req = match self.request.list(&lp) {
                Ok(r) => self.sharded(r),
                Err(source) => {
                    return Outcome::ListFailed(SourceError::Request { op: "list", source });
                }
            };
            let text = tokio::select! {
                _ = cancel.cancelled() => return Outcome::Stopped,
                r = self.client.request_text(req) => r,
            };
            let text = match text {
                Ok(t) => t,
                Err(kube::Error::Api(s)) if s.code == 410 => {
                    // The continue token expired mid-list: start the list over.
                    tracing::warn!("list continue token expired; restarting the list");
                    lp.continue_token = None;
                    list_rv = None;
                    page_no = 0;
                    continue;
                }
                Err(source) => {
                    return Outcome::ListFailed(SourceError::List {
                        page: page_no,
                        source,
                    });
                }
            };
            self.health.set_api_ok(true);
            self.reading.answered();
            let page: ListPage<'_> = match serde_json::from_str(&text) {
                Ok(p) => p,
                Err(source) => {
                    return Outcome::ListFailed(SourceError::ListPage {
                        page: page_no,
                        source,
                    });
                }
            };
            if list_rv.is_none() {
                list_rv = page.metadata.resource_version.clone();
                self.note_shard_info(page.metadata.shard_info.as_ref());
            }
            for raw in &page.items {
                items += 1;
                self.received("LIST");
                let event = match decode_event(raw.get()) {
                    Ok(e) => e,
                    Err(e) => {
                        self.malformed(&e.to_string(), raw.get());
                        continue;
                    }
                };
                if !self.owns(&event) {
                    continue;
                }
                let keep = self.keep_listed(kind, &event, now);
                if let Some(scan) = scan.as_mut() {
                    scan.record(&event, keep);
                }
                if keep {
                    exported += 1;
                    if let Some(tally) = self.relist.as_mut() {
                        tally.exported += 1;
                    }
                    let item = Item::Occurrence {
                        event: Box::new(event),
                        position: None,
                    };
                    if !self.emit(tx, item, cancel).await {
                        return Outcome::Stopped;
                    }
                }
            }
            match page.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(token) => lp.continue_token = Some(token),
                None => break,
            }
        }
        let Some(rv) = list_rv else {
            return Outcome::ListFailed(SourceError::NoListVersion);
        };
        self.metrics.relists.inc();
        tracing::info!(
            kind = kind.label(), resource_version = %rv, items, exported,
            elapsed_ms = started.elapsed().as_millis() as u64, "listed events"
        );
        if let Some(tally) = self.relist.take() {
            self.judge_relist(tally, now, true);
        }
        // A consistent list: every event written after its resourceVersion was written after it
        // was asked for.
        self.checked_at = self.checked_at.max(Some(now));
        self.at_event_time = None;
        if let Some(replay) = scan.and_then(|s| s.plan(&rv)) {
            // The list's checkpoint waits for the replay (see `replay`).
            tracing::info!(
                from_resource_version = replay.from, list_resource_version = %rv,
                listed_with_earlier_counts = replay.listed_behind(),
                "cold start: replaying watch history for the earlier counts of listed events"
            );
            let watch_from = replay.from.to_string();
            self.replay = Some(replay);
            return Outcome::Listed { watch_from };
        }
        if !self
            .emit(tx, self.list_checkpoint(rv.clone()), cancel)
            .await
        {
            return Outcome::Stopped;
        }
        Outcome::Listed { watch_from: rv }
    }

    /// After a relist that followed lost history: whether anything can be missing (`gap`), said
    /// once and counted as a possible gap only then. `complete`: false when the relist was cut
    /// short (the source stopped, or gave up after a failed page); what it handed on is judged
    /// all the same.
    fn judge_relist(&self, tally: RelistTally, listed_at: Timestamp, complete: bool) {
        let ttl = self.cfg.event_ttl;
        let read_through_secs_ago = gap::age(self.checked_at, listed_at).map(|d| d.as_secs());
        let RelistTally {
            after, exported, ..
        } = &tally;
        match gap::judge(self.checked_at, listed_at, ttl, tally.superseded) {
            Some(gap) => {
                self.metrics.possible_gaps.inc();
                let (superseded, superseded_events) = gap.collapsed.unwrap_or_default();
                tracing::warn!(
                    resource_version = %after,
                    read_through_secs_ago,
                    event_ttl_secs = ttl.as_secs(),
                    superseded,
                    superseded_events,
                    exported,
                    complete,
                    "possible gap: {}",
                    gap.why(ttl)
                );
            }
            None if complete => tracing::info!(
                resource_version = %after,
                read_through_secs_ago,
                event_ttl_secs = ttl.as_secs(),
                exported,
                "relisted after the watch history was gone: nothing can be missing (read more recently than eventTTL, no count moved by more than one)"
            ),
            None => tracing::info!(
                resource_version = %after,
                read_through_secs_ago,
                exported,
                "relist after the watch history was gone stopped before its end: nothing it handed on can be missing; the successor lists again"
            ),
        }
    }

    /// The replay's history is gone (410, stale) and no later start is served: emit the list's
    /// checkpoint (`step` has the watch go on from the list's resourceVersion). False if the
    /// receiving side is gone.
    async fn abandon_replay(
        &mut self,
        why: &str,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(mut replay) = self.replay.take() else {
            return true;
        };
        let list_rv = replay.list_rv.to_string();
        tracing::warn!(
            why, from_resource_version = replay.from, list_resource_version = %list_rv,
            listed_with_earlier_counts = replay.listed_behind(), exported_earlier = replay.exported,
            not_fully_replayed = replay.incomplete(),
            "cold start: watch history before the list is gone; earlier counts of listed events may not be exported; watching from the list"
        );
        !replay.abandon() || self.emit(tx, self.list_checkpoint(list_rv), cancel).await
    }

    /// The replay's start is gone: probe later starts (bisection, `Replay::next_probe`) for the
    /// earliest one still served.
    async fn relocate(&mut self, cancel: &CancellationToken) -> Outcome {
        let Some(mut replay) = self.replay.take() else {
            // Nothing to relocate (cannot happen: only a replay enters this phase).
            return Outcome::Stopped;
        };
        let mut probes = 0u32;
        let outcome = loop {
            let Some(start) = replay.next_probe() else {
                let list_rv = replay.list_rv.to_string();
                let start = replay.relocate();
                if let Some(from) = start {
                    tracing::info!(
                        from_resource_version = from, list_resource_version = %list_rv, probes,
                        relocations = replay.relocations,
                        listed_with_earlier_counts = replay.listed_behind(),
                        "cold start: replaying from the earliest place whose watch history is still held"
                    );
                }
                break Outcome::Relocated {
                    start: start.map(|s| s.to_string()),
                    list_rv,
                };
            };
            probes += 1;
            match self.probe(start, cancel).await {
                Ok(Some(served)) => replay.probed(start, served),
                Ok(None) => break Outcome::Stopped,
                Err(e) => break Outcome::RelocateFailed(e),
            }
        };
        self.replay = Some(replay);
        outcome
    }

    /// Whether a watch from `from` is served: its first line is a frame (Some(true)), or it is
    /// answered 410, an ERROR 410 frame, or nothing (Some(false)). None: cancelled.
    async fn probe(
        &self,
        from: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<bool>, SourceError> {
        let from = from.to_string();
        let wp = WatchParams::default().timeout(PROBE_WAIT.as_secs() as u32);
        let req = self
            .request
            .watch(&wp, &from)
            .map(|r| self.sharded(r))
            .map_err(|source| SourceError::Request {
                op: "watch",
                source,
            })?;
        let body = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            r = self.client.request_stream(req) => r,
        };
        let body = match body {
            Ok(b) => b,
            Err(kube::Error::Api(s)) if s.code == 410 => return Ok(Some(false)),
            Err(source) => return Err(SourceError::Watch { from, source }),
        };
        self.reading.answered();
        let lines = lines::LineReader::new(body, lines::MAX_LINE);
        let mut lines = lines::Bounded::new(lines, cancel, PROBE_WAIT);
        loop {
            let line = match lines.next().await {
                Next::Cancelled => return Ok(None),
                // Nothing at all, at once or for the whole wait: a stale resourceVersion.
                Next::Silent | Next::End => return Ok(Some(false)),
                Next::Failed(source) => return Err(SourceError::WatchBroke { from, source }),
                Next::Line(Line::Text(line)) => line,
                // A frame, even one we could not read: the history is there.
                Next::Line(_) => return Ok(Some(true)),
            };
            if line.trim().is_empty() {
                continue;
            }
            return match decode_frame(line) {
                Ok(Frame::Error(status)) if status.code == 410 => Ok(Some(false)),
                Ok(Frame::Error(status)) => Err(SourceError::ErrorFrame {
                    from,
                    code: status.code,
                    reason: status.reason.to_string(),
                    message: status.message.to_string(),
                }),
                _ => Ok(Some(true)),
            };
        }
    }

    /// One frame while replaying: Ok(None) handled here; Ok(Some(frame)) not part of the replay
    /// (past it, or an ERROR), handle it as live; Err(()) the receiving side is gone.
    async fn replay_frame(
        &mut self,
        frame: Frame,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> Result<Option<Frame>, ()> {
        let Some(replay) = self.replay.as_mut() else {
            return Ok(Some(frame));
        };
        let Some(rv) = frame_rv(&frame) else {
            return Ok(Some(frame));
        };
        let event = match &frame {
            Frame::Added(e) | Frame::Modified(e) => Some(&**e),
            _ => None,
        };
        let step = replay.step(rv, event);
        let checkpoint = matches!(
            step,
            Step::Past { checkpoint: true }
                | Step::Inside {
                    checkpoint: true,
                    ..
                }
        );
        let list_rv = replay.list_rv;
        if checkpoint {
            tracing::info!(
                from_resource_version = replay.from,
                list_resource_version = list_rv,
                relocations = replay.relocations,
                listed_with_earlier_counts = replay.listed_behind(),
                exported_earlier = replay.exported,
                not_fully_replayed = replay.incomplete(),
                "cold start: replay complete"
            );
        }
        let checkpoint_item = self.list_checkpoint(list_rv.to_string());
        match step {
            Step::Past { .. } => {
                self.replay = None;
                if checkpoint && !self.emit(tx, checkpoint_item, cancel).await {
                    return Err(());
                }
                Ok(Some(frame))
            }
            Step::Inside { export, .. } => {
                match frame {
                    Frame::Added(event) | Frame::Modified(event) if export => {
                        let item = Item::Occurrence {
                            event,
                            position: None,
                        };
                        if !self.emit(tx, item, cancel).await {
                            return Err(());
                        }
                    }
                    Frame::Added(_) | Frame::Modified(_) => self.filtered("already_exported"),
                    _ => {}
                }
                if checkpoint && !self.emit(tx, checkpoint_item, cancel).await {
                    return Err(());
                }
                Ok(None)
            }
        }
    }

    /// Whether a listed event is exported; records it as seen either way.
    fn keep_listed(&mut self, kind: &ListKind, event: &Event, now: jiff::Timestamp) -> bool {
        let uid = event.uid();
        let count = event.occurrence_count();
        match kind {
            ListKind::Cold => {
                self.seen.observe(uid, count);
                let too_old = event.last_seen().is_some_and(|t| {
                    now.duration_since(t).unsigned_abs() > self.cfg.max_event_age && t < now
                });
                if too_old {
                    self.filtered("too_old");
                }
                !too_old
            }
            ListKind::Relist { after } => {
                let before = self.seen.get(uid);
                if !self.seen.observe(uid, count) {
                    self.filtered("already_exported");
                    return false;
                }
                // A uid evicted from `seen` but older than our stream position was seen already.
                if before.is_none() && rv_le(event.resource_version(), after) {
                    self.filtered("already_exported");
                    return false;
                }
                // Counts between the last one we saw (none: the event is new) and this one
                // happened while the history was gone.
                let skipped = i64::from(count) - i64::from(before.unwrap_or(0)) - 1;
                if let Some(tally) = self.relist.as_mut().filter(|_| skipped > 0) {
                    tally.superseded.0 += skipped as u64;
                    tally.superseded.1 += 1;
                }
                true
            }
        }
    }

    /// "Everything up to the list's resourceVersion is accounted for."
    fn list_checkpoint(&self, resource_version: String) -> Item {
        Item::Checkpoint(Position {
            resource_version: resource_version.into(),
            event_time: None,
            checked_at: self.checked_at,
        })
    }

    fn filtered(&self, reason: &str) {
        self.metrics.count_filtered(reason);
    }

    fn malformed(&self, error: &str, raw: &str) {
        self.metrics.malformed_frames.inc();
        // Decode errors can quote the input whole: keep both bounded.
        let snippet: String = raw.chars().take(200).collect();
        let error: String = error.chars().take(500).collect();
        tracing::warn!(error, frame = %snippet, "skipping malformed event");
    }

    /// One watch request from `from`, read to its end.
    async fn watch(
        &mut self,
        from: &str,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut at = from.to_string();
        let end = self.read_watch(from, &mut at, tx, cancel).await;
        self.reading.closed();
        let Some(end) = end else {
            return Outcome::Stopped;
        };
        let replay = self.replay.as_ref().map(|r| r.list_rv.to_string());
        Outcome::Watched { at, end, replay }
    }

    /// Reads one watch, keeping `at` at the resourceVersion of its last frame. None: stopped
    /// (cancelled, or the receiving side is gone).
    async fn read_watch(
        &mut self,
        from: &str,
        at: &mut String,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> Option<WatchEnd> {
        let wp = WatchParams::default().timeout(self.cfg.watch_timeout_secs);
        let req = match self.request.watch(&wp, from) {
            Ok(r) => self.sharded(r),
            Err(source) => {
                let e = SourceError::Request {
                    op: "watch",
                    source,
                };
                return Some(WatchEnd::Failed(e));
            }
        };
        let started = Instant::now();
        let body = tokio::select! {
            _ = cancel.cancelled() => return None,
            r = self.client.request_stream(req) => r,
        };
        let body = match body {
            Ok(b) => b,
            Err(kube::Error::Api(s)) if s.code == 410 => return Some(WatchEnd::Expired),
            Err(source) => {
                let from = from.to_string();
                return Some(WatchEnd::Failed(SourceError::Watch { from, source }));
            }
        };
        self.health.set_api_ok(true);
        self.reading.opened();
        let idle_limit = Duration::from_secs(u64::from(self.cfg.watch_timeout_secs) + 30);
        let lines = lines::LineReader::new(body, lines::MAX_LINE);
        let mut lines = lines::Bounded::new(lines, cancel, idle_limit);
        let mut frames = 0u64;
        let mut decoder = frames::Decoder::default();
        let closed = |frames| WatchEnd::Closed {
            frames,
            elapsed: started.elapsed(),
        };
        loop {
            let line = match lines.next().await {
                Next::Cancelled => return None,
                Next::Silent => {
                    tracing::warn!(
                        idle_secs = idle_limit.as_secs(),
                        "watch silent past its timeout; reconnecting"
                    );
                    return Some(closed(frames));
                }
                Next::End => {
                    if !self.read_through(at, started, tx, cancel).await {
                        return None;
                    }
                    return Some(closed(frames));
                }
                Next::Failed(source) => {
                    let from = from.to_string();
                    return Some(WatchEnd::Failed(SourceError::WatchBroke { from, source }));
                }
                Next::Line(Line::Text(line)) => line,
                Next::Line(Line::TooLong { bytes }) => {
                    self.malformed(
                        &format!(
                            "watch frame of {bytes} bytes is over the {} byte limit",
                            lines::MAX_LINE
                        ),
                        "",
                    );
                    continue;
                }
                Next::Line(Line::NotUtf8 { bytes }) => {
                    self.malformed(&format!("watch frame of {bytes} bytes is not UTF-8"), "");
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            frames += 1;
            self.health.heartbeat();
            let frame = match decoder.decode(line) {
                Ok(f) => f,
                Err(e) => {
                    self.malformed(&e.to_string(), line);
                    continue;
                }
            };
            self.received(frame.type_name());
            // Every frame but an ERROR moves the position, replayed ones included. The buffer is
            // reused: no allocation per frame.
            if let Some(rv) = frame_rv(&frame) {
                at.clear();
                at.push_str(rv);
            }
            let frame = match self.replay_frame(frame, tx, cancel).await {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(()) => return None,
            };
            let item = match frame {
                Frame::Error(status) => {
                    if status.code == 410 {
                        tracing::debug!(status_message = %status.message, "watch answered 410 Gone");
                        return Some(WatchEnd::Expired);
                    }
                    tracing::warn!(code = status.code, reason = %status.reason, status_message = %status.message, "watch ERROR frame; resuming");
                    return Some(closed(frames));
                }
                Frame::Bookmark(rv) => {
                    // The server's position as it sends this: everything after it is newer.
                    self.checked_at = self.checked_at.max(Some(Timestamp::now()));
                    self.at_event_time = None;
                    Item::Checkpoint(self.position(rv.into()))
                }
                Frame::Deleted(event) => {
                    self.seen.forget(event.uid());
                    self.filtered("deleted");
                    Item::Checkpoint(self.position_of(&event))
                }
                Frame::Added(event) | Frame::Modified(event) if !self.owns(&event) => {
                    Item::Checkpoint(self.position_of(&event))
                }
                Frame::Added(event) | Frame::Modified(event) => {
                    self.occurrence_or_checkpoint(event)
                }
            };
            // The reader checked `cancel` just before this frame: not again (a lock each).
            if !self.hand_on(tx, item, cancel).await {
                return None;
            }
        }
    }

    /// Whether `event` belongs to this source's shard (always, unsharded); counts it filtered
    /// when not.
    fn owns(&self, event: &Event) -> bool {
        let owned = self.cfg.shard.is_none_or(|s| s.owns(event.uid()));
        if !owned {
            self.filtered("other_shard");
        }
        owned
    }

    /// `req` with this source's `shardSelector`, if it has a shard.
    fn sharded(&self, req: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
        let Some(shard) = self.cfg.shard else {
            return req;
        };
        let (mut parts, body) = req.into_parts();
        let sep = if parts.uri.query().is_some() {
            '&'
        } else {
            '?'
        };
        let uri = format!(
            "{}{sep}shardSelector={}",
            parts.uri,
            percent_encode(&shard.selector())
        );
        // Percent-encoding leaves only characters a URI allows.
        parts.uri = uri.parse().expect("a percent-encoded query is a valid URI");
        http::Request::from_parts(parts, body)
    }

    /// A one-item list with the shard selector, read for its `shardInfo` only; a failure is
    /// left to the next list to tell.
    async fn detect_server_sharding(&mut self) {
        let lp = ListParams::default().limit(1);
        let Ok(req) = self.request.list(&lp).map(|r| self.sharded(r)) else {
            return;
        };
        let Ok(text) = self.client.request_text(req).await else {
            return;
        };
        if let Ok(page) = serde_json::from_str::<ListPage<'_>>(&text) {
            self.note_shard_info(page.metadata.shard_info.as_ref());
        }
    }

    /// After a list's first page: whether the server applied our shard selector (KEP-5866 echoes
    /// it in `metadata.shardInfo`), logged when that changes.
    fn note_shard_info(&mut self, info: Option<&frames::ShardInfo>) {
        let Some(shard) = self.cfg.shard else {
            return;
        };
        let served = info
            .and_then(|i| i.selector.as_deref())
            .is_some_and(|s| s == shard.selector());
        if self.server_sharded != Some(served) {
            tracing::info!(
                shard = %shard, server_side = served,
                "{}",
                if served {
                    "the API server filters this shard's events (shardSelector)"
                } else {
                    "the API server sends every event (no shardSelector support); filtering this shard locally"
                }
            );
            self.server_sharded = Some(served);
        }
        self.metrics.set_server_sharded(shard.index, served);
    }

    fn received(&self, type_: &str) {
        self.metrics.count_received(type_);
    }

    /// A watch that stayed open and ended cleanly (the server's timeout) delivered everything
    /// written before its end: the history after `at` is read through now, and the checkpoint
    /// says so, so the cursor stays fresh on a quiet cluster (where events have no bookmarks to
    /// move it). A watch that ended at once proves nothing (a stale resourceVersion answers so),
    /// nor do positions inside a replay, which are never emitted. False if the receiving side is
    /// gone.
    async fn read_through(
        &mut self,
        at: &str,
        started: Instant,
        tx: &mpsc::Sender<Item>,
        cancel: &CancellationToken,
    ) -> bool {
        if started.elapsed() < phase::QUICK_CLOSE || self.replay.is_some() {
            return true;
        }
        self.checked_at = self.checked_at.max(Some(Timestamp::now()));
        let item = Item::Checkpoint(self.position(at.into()));
        self.emit(tx, item, cancel).await
    }

    /// The position at `resource_version` as the stream knows it now.
    fn position(&self, resource_version: Text) -> Position {
        Position {
            resource_version,
            event_time: self.at_event_time,
            checked_at: self.checked_at,
        }
    }

    /// The stream moves to `event`'s write: everything after it was written after the event's
    /// own time.
    fn position_of(&mut self, event: &Event) -> Position {
        self.at_event_time = event.last_seen();
        self.checked_at = self.checked_at.max(self.at_event_time);
        self.position(event.resource_version().into())
    }

    /// ADDED, and MODIFIED whose count grew, are occurrences; other changes only move the position.
    fn occurrence_or_checkpoint(&mut self, event: Box<Event>) -> Item {
        let position = self.position_of(&event);
        if self.seen.observe(event.uid(), event.occurrence_count()) {
            Item::Occurrence {
                event,
                position: Some(position),
            }
        } else {
            self.filtered("not_new_occurrence");
            Item::Checkpoint(position)
        }
    }
}

/// The resourceVersion a frame moves the stream to (an ERROR frame moves nothing).
fn frame_rv(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Added(e) | Frame::Modified(e) | Frame::Deleted(e) => Some(e.resource_version()),
        Frame::Bookmark(rv) => Some(rv),
        Frame::Error(_) => None,
    }
}

/// `a <= b` for resourceVersions, compared as integers (KEP-5504: comparable within a resource;
/// every etcd-backed server uses integers). Unparseable: false (do not skip).
fn rv_le(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a <= b,
        _ => false,
    }
}

/// A query value percent-encoded: RFC 3986's unreserved characters as they are, every other
/// byte as `%XX`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
