//! Receiver tests: every delivery test compares delivered occurrence keys with the sent ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::*;
use crate::config::{self, ReceiverConfig};
use crate::progress::{Position, Tracker};
use crate::source::event::Event;

fn receivers(yaml: &str) -> Vec<ReceiverConfig> {
    let text = format!("route:\n  routes: []\nreceivers:\n{yaml}");
    config::parse(&text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .receivers
}

fn occurrence(i: usize) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"uid": format!("uid-{i}"), "resourceVersion": i.to_string(), "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": format!("p{i}"), "labels": {"app.kubernetes.io/name": "web"}},
        "reason": "BackOff", "count": 1, "type": "Warning"
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

/// Sends `n` occurrences to `name`, each with an ack from `tracker`; returns the sent keys.
async fn send_n(r: &Receivers, name: &str, tracker: &Tracker, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let occ = occurrence(i);
        keys.push(occ.key.clone());
        let ticket = tracker.begin(Some(Position {
            resource_version: i.to_string(),
            event_time: None,
        }));
        r.get(name)
            .unwrap()
            .send(Delivery {
                occ,
                ack: ticket.ack(),
            })
            .await;
        ticket.release();
    }
    keys
}

fn compare(sent: &[String], got: &[String]) -> (usize, usize) {
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for k in got {
        *counts.entry(k).or_default() += 1;
    }
    let lost = sent.iter().filter(|k| !counts.contains_key(k)).count();
    let dup = counts.values().filter(|n| **n > 1).count();
    (lost, dup)
}

async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn lines(buf: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(buf)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn key_of(v: &serde_json::Value) -> String {
    format!("{}:{}", v["metadata"]["uid"].as_str().unwrap(), v["count"])
}

#[tokio::test]
async fn stdout_writes_ndjson_in_order_with_layout_and_dedot() {
    let cfgs = receivers(
        "  - name: plain\n    stdout: {}\n  - name: shaped\n    stdout:\n      deDot: true\n      layout:\n        why: \"{{ .Reason }}\"\n        n: 3\n",
    );
    let out = Captured::default();
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let w = out.clone();
    let r = Receivers::start_with(
        &cfgs,
        &metrics,
        &tasks,
        CancellationToken::new(),
        move || Box::new(w.clone()),
    )
    .await
    .unwrap();
    let sent = send_n(&r, "plain", &tracker, 50).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    let got: Vec<String> = lines(&out.0.lock().unwrap()).iter().map(key_of).collect();
    assert_eq!(got, sent, "in order, once each");
    assert_eq!(tracker.cursor().position.unwrap().resource_version, "49");

    let out = Captured::default();
    let (tasks, tracker) = (TaskTracker::new(), Tracker::new(None));
    let w = out.clone();
    let r = Receivers::start_with(
        &cfgs,
        &metrics,
        &tasks,
        CancellationToken::new(),
        move || Box::new(w.clone()),
    )
    .await
    .unwrap();
    send_n(&r, "shaped", &tracker, 1).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    let docs = lines(&out.0.lock().unwrap());
    assert_eq!(
        docs,
        [serde_json::json!({"why": "BackOff", "n": 3})],
        "layout rendered, number stays a number"
    );
}

#[tokio::test]
async fn file_rotates_without_losing_or_splitting_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let cfgs = receivers(&format!(
        "  - name: f\n    batch: {{maxEvents: 7}}\n    file:\n      path: {}\n      maxbackups: 3\n",
        path.display()
    ));
    let crate::config::SinkConfig::File(fc) = &cfgs[0].sink else {
        unreachable!()
    };
    // Rotation every ~4 KiB: drive the sink directly so the limit can be tiny.
    let mut sink = file::FileSink::open("f", fc).unwrap().with_max_bytes(4096);
    let mut sent = Vec::new();
    for chunk in (0..300).collect::<Vec<_>>().chunks(7) {
        let docs: Vec<Doc> = chunk
            .iter()
            .map(|i| {
                let occ = occurrence(*i);
                sent.push(occ.key.clone());
                Doc {
                    key: occ.key.clone(),
                    body: occ.json().clone(),
                    occ,
                }
            })
            .collect();
        sink.send(&docs)
            .await
            .map_err(|e| format!("{e:?}"))
            .unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "current file + maxbackups 3: {files:?}");
    // Only the last 3 backups are kept, so compare what the kept files hold with the tail of `sent`.
    let mut got = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.ends_with('\n'), "{} ends mid-line", f.display());
        got.extend(lines(text.as_bytes()).iter().map(key_of));
    }
    let kept: std::collections::BTreeSet<&String> = got.iter().collect();
    let tail_start = sent.iter().position(|k| kept.contains(k)).unwrap();
    let (lost, dup) = compare(&sent[tail_start..], &got);
    assert_eq!(
        (lost, dup),
        (0, 0),
        "within the kept files: lost {lost}, duplicated {dup}"
    );
    assert!(tail_start > 0, "older backups were pruned");
}

#[tokio::test]
async fn unwritable_file_is_a_start_error_naming_receiver_and_path() {
    let cfgs =
        receivers("  - name: archive\n    file:\n      path: /nonexistent-dir/x/events.log\n");
    let err = Receivers::start(
        &cfgs,
        &Metrics::default(),
        &TaskTracker::new(),
        CancellationToken::new(),
    )
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("archive") && msg.contains("/nonexistent-dir/x/events.log"),
        "{msg}"
    );
}

/// A webhook receiver on 127.0.0.1 answering with the statuses in `script` (then 200), recording
/// (time, idempotency key, body) of every request.
/// Statuses to answer, each with an optional Retry-After.
type Script = Vec<(u16, Option<&'static str>)>;

#[derive(Clone, Default)]
struct Hook {
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<(Instant, String, serde_json::Value)>>>,
}

async fn hook_handler(
    State(h): State<Hook>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let (status, retry_after) = {
        let mut s = h.script.lock().unwrap();
        if s.is_empty() {
            (200, None)
        } else {
            s.remove(0)
        }
    };
    let mut out = HeaderMap::new();
    if let Some(ra) = retry_after {
        out.insert("retry-after", ra.parse().unwrap());
    }
    if status == 200 {
        h.seen
            .lock()
            .unwrap()
            .push((Instant::now(), key, serde_json::from_str(&body).unwrap()));
    } else {
        h.seen.lock().unwrap().push((
            Instant::now(),
            format!("rejected {status}"),
            serde_json::Value::Null,
        ));
    }
    (StatusCode::from_u16(status).unwrap(), out, "nope".into())
}

async fn serve_hook(hook: Hook, listener: tokio::net::TcpListener) {
    let app = Router::new()
        .route("/hook", post(hook_handler))
        .with_state(hook);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

async fn hook(script: Vec<(u16, Option<&'static str>)>) -> (Hook, String) {
    let h = Hook {
        script: Arc::new(Mutex::new(script)),
        ..Hook::default()
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    serve_hook(h.clone(), l).await;
    (h, url)
}

fn webhook_cfg(url: &str, extra: &str) -> Vec<ReceiverConfig> {
    receivers(&format!(
        "  - name: hook\n    retry: {{initialBackoff: 10ms, maxBackoff: 50ms}}\n{extra}    webhook:\n      endpoint: {url}\n      headers:\n        X-Reason: \"{{{{ .Reason }}}}\"\n"
    ))
}

fn delivered_keys(h: &Hook) -> Vec<String> {
    h.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, k, _)| !k.starts_with("rejected"))
        .flat_map(|(_, _, body)| match body {
            serde_json::Value::Array(docs) => docs.iter().map(key_of).collect::<Vec<_>>(),
            doc => vec![key_of(doc)],
        })
        .collect()
}

#[tokio::test]
async fn webhook_retries_5xx_and_delivers_each_once_with_its_idempotency_key() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (h, url) = hook(vec![(503, None), (500, None), (502, None)]).await;
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let r = Receivers::start(
        &webhook_cfg(&url, ""),
        &metrics,
        &tasks,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sent = send_n(&r, "hook", &tracker, 20).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    let got = delivered_keys(&h);
    let (lost, dup) = compare(&sent, &got);
    assert_eq!((lost, dup), (0, 0), "lost {lost}, duplicated {dup}");
    for (_, key, body) in h
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, k, _)| !k.starts_with("rejected"))
    {
        assert_eq!(key, &key_of(body), "Idempotency-Key is the occurrence key");
    }
    assert!(
        metrics
            .encode()
            .contains("sink_retried_total{receiver=\"hook\"} 3"),
        "{}",
        metrics.encode()
    );
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn webhook_honours_retry_after_on_429() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (h, url) = hook(vec![(429, Some("1"))]).await;
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let r = Receivers::start(
        &webhook_cfg(&url, ""),
        &metrics,
        &tasks,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    send_n(&r, "hook", &tracker, 1).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    let seen = h.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].0.duration_since(seen[0].0);
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?}, before Retry-After: 1"
    );
}

#[tokio::test]
async fn webhook_4xx_is_permanent_counted_and_acknowledged() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (h, url) = hook(vec![(400, None)]).await;
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let r = Receivers::start(
        &webhook_cfg(&url, ""),
        &metrics,
        &tasks,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    send_n(&r, "hook", &tracker, 2).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    assert_eq!(h.seen.lock().unwrap().len(), 2, "the 400 is not retried");
    assert!(
        metrics
            .encode()
            .contains("sink_failed_total{receiver=\"hook\"} 1")
    );
    assert_eq!(
        tracker.in_flight(),
        0,
        "a permanent failure is acknowledged"
    );
}

#[tokio::test]
async fn webhook_down_then_up_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Reserve a port, release it: connections are refused until the server binds it.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let r = Receivers::start(
        &webhook_cfg(&url, "    batch: {maxEvents: 5, maxWait: 20ms}\n"),
        &metrics,
        &tasks,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sent = send_n(&r, "hook", &tracker, 12).await;
    let m = metrics.clone();
    eventually(Duration::from_secs(10), "retries while down", || {
        m.encode()
            .contains("sink_retried_total{receiver=\"hook\"} 3")
    })
    .await;
    let h = Hook::default();
    serve_hook(
        h.clone(),
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    r.close();
    tasks.close();
    tasks.wait().await;
    let (lost, dup) = compare(&sent, &delivered_keys(&h));
    assert_eq!((lost, dup), (0, 0), "lost {lost}, duplicated {dup}");
    assert!(
        h.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, k, _)| k.contains("..")),
        "batches carry first..last keys"
    );
}

#[tokio::test]
async fn full_queue_blocks_or_drops_when_asked() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A server that never answers within the test: the worker holds one batch, the queue fills.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let (c, _) = listener.accept().await.unwrap();
            conns.push(c);
        }
    });
    let cfgs = receivers(&format!(
        "  - name: lossless\n    queue: 2\n    webhook: {{endpoint: \"{url}\"}}\n  - name: lossy\n    queue: 2\n    dropWhenFull: true\n    webhook: {{endpoint: \"{url}\"}}\n"
    ));
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let abort = CancellationToken::new();
    let r = Receivers::start(&cfgs, &metrics, &tasks, abort.clone())
        .await
        .unwrap();
    send_n(&r, "lossy", &tracker, 10).await;
    let dropped = metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("kube_event_exporter_sink_dropped_total{receiver=\"lossy\"}"))
        .map(str::to_string);
    let dropped: u64 = dropped
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        (7..=8).contains(&dropped),
        "1 in flight + 2 queued, the rest dropped: {dropped}"
    );
    let blocked = tokio::time::timeout(
        Duration::from_millis(300),
        send_n(&r, "lossless", &tracker, 10),
    )
    .await;
    assert!(blocked.is_err(), "a full lossless queue makes send wait");
    // Abort: the stuck deliveries keep their acks un-done, so the cursor does not pass them.
    abort.cancel();
    r.close();
    tasks.close();
    tasks.wait().await;
    assert!(tracker.abandoned() > 0);
    assert!(
        tracker.cursor().position.is_none(),
        "nothing was delivered, the cursor did not move"
    );
}
