//! A webhook destination that takes its time, for the tests and the benchmark: each request is
//! answered 200 after `latency` (a receiver in another region, a busy ingest gateway), and every
//! occurrence of an answered request is recorded with its involved object and the order the
//! requests arrived in. It can refuse (503) the requests that carry one object, to show that a
//! retrying request holds back only its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

/// One occurrence the hook accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `{uid}:{count}`.
    pub key: String,
    /// The involved object's uid (else its name).
    pub object: String,
    /// The arrival order of its request (0 for the first request).
    pub request: u64,
}

#[derive(Default)]
struct Shared {
    latency: Duration,
    accepted: Mutex<Vec<Accepted>>,
    arrivals: AtomicU64,
    now: AtomicUsize,
    peak: AtomicUsize,
    /// Requests carrying this object (uid or name) are answered 503.
    refused: Mutex<Option<String>>,
    refusals: AtomicU64,
}

/// The running hook; stops when dropped.
pub struct SlowHook {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    series: Option<Series>,
    #[serde(default, rename = "involvedObject")]
    involved_object: Involved,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    count: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Involved {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl Doc {
    fn key(&self) -> String {
        let n = self
            .series
            .as_ref()
            .and_then(|s| s.count)
            .unwrap_or(0)
            .max(self.count.unwrap_or(0))
            .max(1);
        format!("{}:{n}", self.metadata.uid)
    }

    fn object(&self) -> String {
        let o = &self.involved_object;
        o.uid
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| o.name.clone())
            .unwrap_or_default()
    }

    fn about(&self, object: &str) -> bool {
        let o = &self.involved_object;
        o.uid.as_deref() == Some(object) || o.name.as_deref() == Some(object)
    }
}

impl SlowHook {
    /// Serves `POST /` (any path) on 127.0.0.1, answering each request after `latency`.
    pub async fn start(latency: Duration) -> std::io::Result<SlowHook> {
        let shared = Arc::new(Shared {
            latency,
            ..Shared::default()
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SlowHook { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Every occurrence accepted, in the order of the requests' arrival.
    pub fn accepted(&self) -> Vec<Accepted> {
        let mut a = self.shared.accepted.lock().expect("hook lock").clone();
        a.sort_by_key(|x| x.request);
        a
    }

    pub fn keys(&self) -> Vec<String> {
        self.accepted().into_iter().map(|a| a.key).collect()
    }

    pub fn count(&self) -> usize {
        self.shared.accepted.lock().expect("hook lock").len()
    }

    /// The most requests it was answering at once.
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Requests carrying `object` (a uid or a name) are answered 503 from now on; None: no more.
    pub fn refuse(&self, object: Option<&str>) {
        *self.shared.refused.lock().expect("hook lock") = object.map(str::to_owned);
    }

    /// Requests answered 503 so far.
    pub fn refusals(&self) -> u64 {
        self.shared.refusals.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for SlowHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let request = s.arrivals.fetch_add(1, Ordering::SeqCst);
    let docs: Vec<Doc> = match body.first() {
        Some(b'[') => serde_json::from_slice(&body).unwrap_or_default(),
        _ => serde_json::from_slice(&body)
            .map(|d| vec![d])
            .unwrap_or_default(),
    };
    let n = s.now.fetch_add(1, Ordering::SeqCst) + 1;
    s.peak.fetch_max(n, Ordering::SeqCst);
    tokio::time::sleep(s.latency).await;
    s.now.fetch_sub(1, Ordering::SeqCst);
    if docs.is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    let refused = s.refused.lock().expect("hook lock").clone();
    if let Some(object) = refused
        && docs.iter().any(|d| d.about(&object))
    {
        s.refusals.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut accepted = s.accepted.lock().expect("hook lock");
    accepted.extend(docs.iter().map(|d| Accepted {
        key: d.key(),
        object: d.object(),
        request,
    }));
    StatusCode::OK
}

/// Occurrences of one object accepted out of the order they were generated in: for each object,
/// the generated order (`generated`, every key in generation order) of its accepted keys, taken
/// in arrival order, must increase. Returns the offending (object, key) pairs.
pub fn out_of_order(generated: &[String], accepted: &[Accepted]) -> Vec<(String, String)> {
    let position: std::collections::HashMap<&str, usize> = generated
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut bad = Vec::new();
    for a in accepted {
        let Some(&p) = position.get(a.key.as_str()) else {
            continue;
        };
        match last.get(a.object.as_str()) {
            Some(&prev) if prev > p => bad.push((a.object.clone(), a.key.clone())),
            _ => {
                last.insert(a.object.as_str(), p);
            }
        }
    }
    bad
}
