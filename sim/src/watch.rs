//! Watch streams: newline-delimited frames read from the store's history at the watcher's own pace.
//!
//! Each watcher keeps a cursor (the last resourceVersion it sent) and copies frames after it out of
//! the history under the lock (cheap: `Bytes` clones), then writes them without the lock. It can
//! never silently skip a change: if history after its cursor was compacted while it lagged, the
//! stream ends, and the client's resumed watch gets 410 — as with a real API server.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::Instant;

use crate::Shared;
use crate::resources::ResourceType;
use crate::store::ApiError;

pub struct WatchRequest {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    /// None: start with the current objects (synthetic ADDED), as for resourceVersion "" or "0".
    pub from: Option<u64>,
    pub timeout: Duration,
    pub bookmarks: bool,
    /// KEP-5866: only objects in these hash ranges (when the server serves it).
    pub shard: Option<crate::shard_selector::ShardSelector>,
}

pub enum Start {
    Stream(Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>),
    /// 200 with a single ERROR frame and close (a compacted resourceVersion).
    Expired(Bytes),
    /// 200 and an empty body (what etcd-backed events answer for a stale resourceVersion).
    Empty,
}

struct State {
    shared: Arc<Shared>,
    req: WatchRequest,
    cursor: u64,
    pending: VecDeque<Bytes>,
    deadline: Instant,
    next_bookmark: Option<Instant>,
    changed: tokio::sync::watch::Receiver<u64>,
    dropped: tokio::sync::watch::Receiver<u64>,
    /// Frames this stream may still send (a fault: the connection breaks after them).
    frames_left: Option<u64>,
}

pub fn start(shared: Arc<Shared>, req: WatchRequest) -> Start {
    let changed = shared.changed.subscribe();
    let dropped = shared.drop_watches.subscribe();
    let (cursor, pending) = {
        let store = shared.store.lock().expect("store lock");
        match req.from {
            Some(from) if from < store.compacted => {
                if shared.faults.stale_empty_200() {
                    return Start::Empty;
                }
                let status = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {from} ({})", store.compacted),
                )
                .status();
                let frame = serde_json::json!({"type": "ERROR", "object": status});
                return Start::Expired(Bytes::from(format!("{frame}\n")));
            }
            Some(from) => (from, VecDeque::new()),
            None => {
                let (rv, items) = store.snapshot(req.rt, req.namespace.as_deref());
                let frames = items
                    .into_iter()
                    .filter(|o| req.shard.as_ref().is_none_or(|s| s.matches_object(o)))
                    .map(|o| {
                        let mut f = Vec::with_capacity(o.len() + 32);
                        f.extend_from_slice(b"{\"type\":\"ADDED\",\"object\":");
                        f.extend_from_slice(&o);
                        f.extend_from_slice(b"}\n");
                        Bytes::from(f)
                    })
                    .collect();
                (rv, frames)
            }
        }
    };
    let bookmarks = req.bookmarks && (req.rt.plural != "events" || shared.cfg.event_bookmarks);
    let next_bookmark = bookmarks.then(|| Instant::now() + shared.cfg.bookmark_interval);
    let frames_left = shared.faults.watch_frame_limit();
    let state = State {
        frames_left,
        deadline: Instant::now() + req.timeout,
        shared,
        req,
        cursor,
        pending,
        next_bookmark,
        changed,
        dropped,
    };
    Start::Stream(Box::new(futures::stream::unfold(state, step)))
}

async fn step(mut s: State) -> Option<(Result<Bytes, Infallible>, State)> {
    loop {
        if s.frames_left == Some(0) {
            return None;
        }
        if let Some(frame) = s.pending.pop_front() {
            s.frames_left = s.frames_left.map(|n| n - 1);
            return Some((Ok(frame), s));
        }
        // Mark the current version seen before reading, so a change after the read wakes us.
        s.changed.borrow_and_update();
        let fetched = {
            let store = s.shared.store.lock().expect("store lock");
            store
                .entries_after(s.cursor, s.req.rt, s.req.namespace.as_deref(), 1024)
                .map(|e| (e, store.rv))
        };
        match fetched {
            // History after our cursor is gone: end the stream; the resumed watch gets 410.
            Err(crate::store::Compacted) => return None,
            Ok((entries, _)) if !entries.is_empty() => {
                s.cursor = entries.last().map(|e| e.rv).unwrap_or(s.cursor);
                let shard = s.req.shard.as_ref();
                s.pending.extend(
                    entries
                        .iter()
                        .filter(|e| shard.is_none_or(|sel| sel.matches_frame(&e.frame)))
                        .map(|e| e.frame.clone()),
                );
                continue;
            }
            Ok((_, current)) => s.cursor = s.cursor.max(current),
        }
        let bookmark_at = s
            .next_bookmark
            .unwrap_or(s.deadline + Duration::from_secs(3600));
        tokio::select! {
            r = s.changed.changed() => if r.is_err() { return None },
            _ = s.dropped.changed() => return None,
            _ = tokio::time::sleep_until(s.deadline) => return None,
            _ = tokio::time::sleep_until(bookmark_at) => {
                s.next_bookmark = Some(Instant::now() + s.shared.cfg.bookmark_interval);
                let frame = serde_json::json!({"type":"BOOKMARK","object":{"kind":s.req.rt.kind,"apiVersion":s.req.rt.api_version(),
                    "metadata":{"resourceVersion":s.cursor.to_string()}}});
                s.pending.push_back(Bytes::from(format!("{frame}\n")));
            }
        }
    }
}
