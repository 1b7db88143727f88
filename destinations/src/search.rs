//! An Elasticsearch/OpenSearch `_bulk` endpoint for the benchmark: it takes what the servers take
//! and answers as they do, in memory, so the benchmark measures the exporter rather than a search
//! engine. (The receiver's tests run against osmem-server, a real OpenSearch-API server.)
//!
//! `POST /_bulk` (and `/{index}/_bulk`): NDJSON, `Content-Encoding: gzip` or none; each action
//! line (`create` or `index`, with `_index` and `_id`) is followed by its document, which must be
//! a JSON object. Per item, as the servers answer: `create` of an `_id` the index already has is
//! 409 `version_conflict_engine_exception`; `index` with `version_type: external` is 409 unless
//! its `version` is higher than the stored one; otherwise 201 (200 for a replaced document). An
//! action line that is not JSON, or a missing document, is a 400 for the whole request
//! (`illegal_argument_exception`), like the servers' request validation. `filter_path` is
//! honoured for the forms the exporter asks for (`errors`, `items.*.status`, `items.*.error`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Default)]
struct Store {
    /// index → _id → version.
    docs: HashMap<String, HashMap<String, i64>>,
    /// Every `_id` written, in order (the benchmark compares them with the generated keys).
    written: Vec<String>,
    requests: u64,
    conflicts: u64,
    /// Each request is answered this long after it arrived (a remote cluster's round trip).
    latency: std::time::Duration,
}

/// The running endpoint; stops when dropped.
pub struct FakeSearch {
    url: String,
    store: Arc<Mutex<Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSearch {
    pub async fn start() -> std::io::Result<FakeSearch> {
        Self::with_latency(std::time::Duration::ZERO).await
    }

    /// Answers each `_bulk` request `latency` after it arrived.
    pub async fn with_latency(latency: std::time::Duration) -> std::io::Result<FakeSearch> {
        let store: Arc<Mutex<Store>> = Arc::new(Mutex::new(Store {
            latency,
            ..Store::default()
        }));
        let app = axum::Router::new()
            .route("/_bulk", axum::routing::post(bulk))
            .route("/{index}/_bulk", axum::routing::post(bulk))
            .with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSearch { url, store, task })
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Documents written (not counting 409s).
    pub fn written_count(&self) -> usize {
        self.store.lock().expect("store").written.len()
    }

    /// The `_id` of every document written, in order.
    pub fn written(&self) -> Vec<String> {
        self.store.lock().expect("store").written.clone()
    }

    pub fn requests(&self) -> u64 {
        self.store.lock().expect("store").requests
    }

    pub fn conflicts(&self) -> u64 {
        self.store.lock().expect("store").conflicts
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for FakeSearch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bad_request(reason: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"type": "illegal_argument_exception", "reason": reason}, "status": 400})),
    )
        .into_response()
}

async fn bulk(
    State(store): State<Arc<Mutex<Store>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = store.lock().expect("store").latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzip {
        let mut out = Vec::new();
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
            return bad_request(format!("the gzip body does not decompress: {e}"));
        }
        out
    } else {
        body.to_vec()
    };
    // Read the whole request before taking the store, as a cluster parses concurrent bulks in
    // parallel: only the version check and the write are serialised.
    struct Action {
        op: String,
        /// `create` (else `index`, the only other op taken).
        create: bool,
        index: String,
        id: String,
        external: bool,
        version: Option<i64>,
        parses: bool,
    }
    let mut lines = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let mut actions = Vec::new();
    while let Some(action) = lines.next() {
        let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(action) else {
            return bad_request("Malformed action/metadata line".into());
        };
        let Some((op, meta)) = action.iter().next() else {
            return bad_request("Malformed action/metadata line".into());
        };
        let (Some(index), Some(id)) = (
            meta.get("_index").and_then(Value::as_str),
            meta.get("_id").and_then(Value::as_str),
        ) else {
            return bad_request("an action without _index or _id".into());
        };
        let Some(doc) = lines.next() else {
            return bad_request("The bulk request must be terminated by a newline".into());
        };
        let create = match op.as_str() {
            "create" => true,
            "index" => false,
            _ => return bad_request(format!("Malformed action/metadata line: unknown op {op}")),
        };
        actions.push(Action {
            op: op.clone(),
            create,
            index: index.to_owned(),
            id: id.to_owned(),
            external: meta.get("version_type").and_then(Value::as_str) == Some("external"),
            version: meta.get("version").and_then(Value::as_i64),
            parses: matches!(serde_json::from_slice::<Value>(doc), Ok(Value::Object(_))),
        });
    }
    let mut items = Vec::with_capacity(actions.len());
    let mut errors = false;
    let mut store = store.lock().expect("store");
    store.requests += 1;
    for Action {
        op,
        create,
        index,
        id,
        external,
        version,
        parses,
    } in actions
    {
        if !parses {
            items.push(
                json!({op.clone(): {"_index": index, "_id": id, "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}}),
            );
            errors = true;
            continue;
        }
        let current = store.docs.get(&index).and_then(|d| d.get(&id)).copied();
        let (status, new_version) = match (create, current) {
            (true, Some(v)) => (409, v),
            (true, None) => (201, 1),
            (false, Some(v)) if external && version.is_none_or(|n| n <= v) => (409, v),
            (false, Some(v)) => (
                200,
                if external {
                    version.unwrap_or(v + 1)
                } else {
                    v + 1
                },
            ),
            (false, None) => (201, if external { version.unwrap_or(1) } else { 1 }),
        };
        let item = if status == 409 {
            store.conflicts += 1;
            errors = true;
            json!({"_index": index, "_id": id, "status": 409,
                "error": {"type": "version_conflict_engine_exception",
                    "reason": format!("[{id}]: version conflict, current version [{new_version}]")}})
        } else {
            store
                .docs
                .entry(index.clone())
                .or_default()
                .insert(id.clone(), new_version);
            store.written.push(id.clone());
            json!({"_index": index, "_id": id, "_version": new_version, "status": status,
                "result": if status == 201 { "created" } else { "updated" }})
        };
        items.push(json!({ op: item }));
    }
    drop(store);
    let filtered = query.contains_key("filter_path");
    let items: Vec<Value> = if filtered {
        items
            .into_iter()
            .map(|mut i| {
                if let Some(Value::Object(r)) =
                    i.as_object_mut().and_then(|o| o.values_mut().next())
                {
                    r.retain(|k, _| k == "status" || k == "error");
                }
                i
            })
            .collect()
    } else {
        items
    };
    axum::Json(json!({"took": 1, "errors": errors, "items": items})).into_response()
}
