//! Receiver tests: every delivery test compares delivered occurrence keys with the sent ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::*;
use crate::config::{self, ReceiverConfig};
use crate::event::Event;
use crate::progress::{Position, Tracker};

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
        let (delivery, ticket) = nth_delivery(tracker, i);
        keys.push(delivery.occ.key.to_string());
        r.get(name).unwrap().send(delivery).await;
        ticket.release();
    }
    keys
}

/// The `i`th occurrence at resourceVersion `i`, with its ack from `tracker` (and the ticket, to
/// release once it is queued).
fn nth_delivery(tracker: &Tracker, i: usize) -> (Delivery, crate::progress::Ticket) {
    let occ = occurrence(i);
    let ticket = tracker.begin(Some(Position {
        resource_version: i.to_string().into(),
        event_time: None,
        checked_at: None,
    }));
    let ack = ticket.ack();
    (Delivery { occ, ack }, ticket)
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
    // Sends `n` occurrences to receiver `name` of `cfgs` and returns what stdout got.
    async fn through_stdout(
        cfgs: &[ReceiverConfig],
        name: &str,
        n: usize,
    ) -> (Captured, Vec<String>, Tracker) {
        let out = Captured::default();
        let (tasks, tracker) = (TaskTracker::new(), Tracker::new(None));
        let w = out.clone();
        let r = Receivers::start_with(
            cfgs,
            &Metrics::default(),
            &tasks,
            CancellationToken::new(),
            move || Box::new(w.clone()),
        )
        .await
        .unwrap();
        let sent = send_n(&r, name, &tracker, n).await;
        r.close();
        tasks.close();
        tasks.wait().await;
        (out, sent, tracker)
    }
    let (out, sent, tracker) = through_stdout(&cfgs, "plain", 50).await;
    let got: Vec<String> = lines(&out.0.lock().unwrap()).iter().map(key_of).collect();
    assert_eq!(got, sent, "in order, once each");
    assert_eq!(tracker.cursor().position.unwrap().resource_version, "49");

    let (out, _, _) = through_stdout(&cfgs, "shaped", 1).await;
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
    let crate::sink::SinkConfig::File(fc) = &cfgs[0].sink else {
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
                sent.push(occ.key.to_string());
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

/// Sends `n` occurrences through the webhook receiver `hook` posting to `url`, and waits until
/// its worker has ended: the keys sent, the metrics, the progress tracker.
async fn through_webhook(url: &str, n: usize) -> (Vec<String>, Metrics, Tracker) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tasks, metrics, tracker) = (TaskTracker::new(), Metrics::default(), Tracker::new(None));
    let r = Receivers::start(
        &webhook_cfg(url, ""),
        &metrics,
        &tasks,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sent = send_n(&r, "hook", &tracker, n).await;
    r.close();
    tasks.close();
    tasks.wait().await;
    (sent, metrics, tracker)
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
    let (h, url) = hook(vec![(503, None), (500, None), (502, None)]).await;
    let (sent, metrics, tracker) = through_webhook(&url, 20).await;
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
    let (h, url) = hook(vec![(429, Some("1"))]).await;
    let _ = through_webhook(&url, 1).await;
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
    let (h, url) = hook(vec![(400, None)]).await;
    let (_, metrics, tracker) = through_webhook(&url, 2).await;
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
    // One request at a time: the queue's 2 and that one are all a receiver holds.
    let cfgs = receivers(&format!(
        "  - name: lossless\n    queue: 2\n    concurrency: 1\n    webhook: {{endpoint: \"{url}\"}}\n  - name: lossy\n    queue: 2\n    concurrency: 1\n    dropWhenFull: true\n    webhook: {{endpoint: \"{url}\"}}\n"
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

#[test]
fn check_finds_every_problem_start_would_hit_without_creating_anything() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("garbage.pem"), "not PEM at all\n").unwrap();
    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfgs = receivers(&format!(
        "  - name: f-missing\n    file: {{path: /nonexistent-dir/x/events.log}}\n\
         \x20 - name: f-dir\n    file: {{path: {d}}}\n\
         \x20 - name: f-ok\n    file: {{path: {d}/ok.log}}\n\
         \x20 - name: w-files\n    webhook:\n      endpoint: https://example.test/hook\n      tls: {{caFile: {d}/missing.pem, certFile: {d}/garbage.pem, keyFile: {d}/garbage.pem}}\n\
         \x20 - name: w-broken\n    webhook:\n      endpoint: https://example.test/hook\n      tls: {{caFile: {d}/broken.pem, serverName: webhook.test}}\n"
    ));
    let errors = check(&cfgs).unwrap_err();
    let got: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    let want = [
        "receivers[0].file.path: cannot write /nonexistent-dir/x/events.log: directory /nonexistent-dir/x does not exist (receiver \"f-missing\")".to_string(),
        format!("receivers[1].file.path: cannot write {d}: it is a directory (receiver \"f-dir\")"),
        format!("receivers[3].webhook.tls.caFile: cannot read {d}/missing.pem: No such file or directory (os error 2) (receiver \"w-files\")"),
        format!("receivers[3].webhook.tls.certFile: {d}/garbage.pem: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----) (receiver \"w-files\")"),
        format!("receivers[3].webhook.tls.keyFile: {d}/garbage.pem: no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----): no items found (receiver \"w-files\")"),
    ];
    assert_eq!(got[..want.len()], want, "{got:#?}");
    assert!(
        got[5].starts_with(&format!(
            "receivers[4].webhook.tls.caFile: {d}/broken.pem: certificate 1 does not parse: "
        )),
        "{got:#?}"
    );
    assert_eq!(got.len(), 6, "{got:#?}");
    // Checking did not create the file it checked, nor leave a probe behind.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only garbage.pem and broken.pem"
    );
    // An existing file is checked by opening it for appending, unchanged.
    std::fs::write(dir.path().join("ok.log"), "kept\n").unwrap();
    check(&cfgs[2..3]).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ok.log")).unwrap(),
        "kept\n"
    );
}

#[tokio::test]
async fn start_refuses_what_check_refuses_and_starts_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cfgs = receivers(&format!(
        "  - name: out\n    stdout: {{}}\n  - name: w\n    webhook:\n      endpoint: https://example.test/hook\n      tls: {{caFile: {}/missing.pem}}\n",
        dir.path().display()
    ));
    let tasks = TaskTracker::new();
    let err = Receivers::start(&cfgs, &Metrics::default(), &tasks, CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SinkError::Invalid(_)), "{err}");
    assert!(
        err.to_string()
            .contains("receivers[1].webhook.tls.caFile: cannot read"),
        "{err}"
    );
    assert!(tasks.is_empty(), "a worker was started");
}

type SeenHeaders = Arc<Mutex<Vec<HeaderMap>>>;

async fn record_headers(State(seen): State<SeenHeaders>, headers: HeaderMap) -> StatusCode {
    seen.lock().unwrap().push(headers);
    StatusCode::OK
}

/// An HTTP server on 127.0.0.1 that records the headers of every request; its `/hook` URL.
async fn header_recorder() -> (SeenHeaders, String) {
    let seen = SeenHeaders::default();
    let app = Router::new()
        .route("/hook", post(record_headers))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (seen, url)
}

fn webhook_sink(yaml: &str) -> webhook::WebhookSink {
    let rc = receivers(yaml).remove(0);
    let SinkConfig::Webhook(c) = &rc.sink else {
        panic!("not a webhook")
    };
    webhook::WebhookSink::build(c, Duration::from_secs(5)).unwrap_or_else(|p| panic!("{p:?}"))
}

fn doc(occ: Arc<Occurrence>) -> Doc {
    Doc {
        key: occ.key.clone(),
        body: occ.json().clone(),
        occ,
    }
}

#[tokio::test]
async fn webhook_headers_from_the_config_replace_ours_instead_of_doubling_them() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (seen, url) = header_recorder().await;
    let mut sink = webhook_sink(&format!(
        "  - name: w\n    webhook:\n      endpoint: {url}\n      headers:\n        content-type: application/cloudevents+json\n        Idempotency-Key: 'custom-{{{{ .Reason }}}}'\n        X-Message: '{{{{ .Message }}}}'\n"
    ));
    let e: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"uid": "u1", "namespace": "ns"},
        "reason": "BackOff", "count": 2, "message": "first line\nsecond line"
    }))
    .unwrap();
    sink.send(&[doc(Arc::new(Occurrence::new(e)))])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let h = seen.lock().unwrap().remove(0);
    let all = |name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    assert_eq!(all("content-type"), ["application/cloudevents+json"]);
    assert_eq!(all("idempotency-key"), ["custom-BackOff"]);
    // A rendered value with a line break is sent cleaned, not silently dropped.
    assert_eq!(all("x-message"), ["first line second line"]);
    // Without headers in the config: ours, once each.
    let (seen, url) = header_recorder().await;
    let mut sink = webhook_sink(&format!("  - name: w\n    webhook: {{endpoint: {url}}}\n"));
    sink.send(&[doc(occurrence(7))])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let h = &seen.lock().unwrap()[0];
    assert_eq!(h.get_all("content-type").iter().count(), 1);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["idempotency-key"], "uid-7:1");
}

// A test CA and a certificate it signed for `webhook.test` only (EC P-256, valid 2020–2125),
// made with `openssl ca`. The key is the certificate's; nothing else trusts this CA.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBXjCCAQWgAwIBAgIBATAKBggqhkjOPQQDAjAWMRQwEgYDVQQDDAtrZWUgdGVz
dCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTI1MDEwMTAwMDAwMFowFjEUMBIGA1UE
AwwLa2VlIHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ2q2+wIbsI
bTOIimE5TrbpKj3MlTNuKDTBTAysop1aS9oNl3A1sAFTjkZ+Qqau1uFDxWs7mh40
N6GsoWpHBVT8o0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAd
BgNVHQ4EFgQUwDl/PCLY7FmI4tufGrpOv3u6mqUwCgYIKoZIzj0EAwIDRwAwRAIg
HIEc5X2ATrROA7/Momf2lCGrvGmeWL9c2xRvnXgRMeYCIDQWhBaXHXXxJlBjbeko
mFhF10ffZhvzhVUXtY0dBSDf
-----END CERTIFICATE-----
";
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBrjCCAVSgAwIBAgIBAjAKBggqhkjOPQQDAjAWMRQwEgYDVQQDDAtrZWUgdGVz
dCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTI1MDEwMTAwMDAwMFowFzEVMBMGA1UE
AwwMd2ViaG9vay50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETJNemSDv
Jt7WkcMBDMgasFMEgIA8F/KkzZkydDr3G1TT8TdUft1Dws2at0TaFcYD30ERjOyZ
9sgsR3r8VNvGwqOBjzCBjDAXBgNVHREEEDAOggx3ZWJob29rLnRlc3QwDAYDVR0T
AQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHwYD
VR0jBBgwFoAUwDl/PCLY7FmI4tufGrpOv3u6mqUwHQYDVR0OBBYEFNqqBy9TbvP4
mL8r0gbwHX0+Fmb0MAoGCCqGSM49BAMCA0gAMEUCIQC9yS1a/ZyKck+Uf1f4+enx
QSzBX8/SG5tfmuyL0zdz7gIgabXOSL6NFpOcrOwd1RFRZGIqZJLyzrm0ls73ThWj
0z4=
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvBBY6P4T0jzYPViz
AI0ACmR2XnagBNBcbWqtDQiGyBKhRANCAARMk16ZIO8m3taRwwEMyBqwUwSAgDwX
8qTNmTJ0OvcbVNPxN1R+3UPCzZq3RNoVxgPfQRGM7Jn2yCxHevxU28bC
-----END PRIVATE KEY-----
";

/// What a TLS server saw of one connection: the SNI name and, if the handshake succeeded and a
/// request came, its Host header.
type TlsSeen = std::sync::mpsc::Receiver<(Option<String>, Option<String>)>;

/// An HTTPS server on 127.0.0.1 presenting the `webhook.test` certificate, answering 200 to every
/// request; its address and, connection by connection, what it saw.
fn tls_server() -> (std::net::SocketAddr, TlsSeen) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::io::{Read, Write};
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap(),
        )
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (record, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let mut tls =
                rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let sni = tls.conn.server_name().map(str::to_owned);
            if !head.ends_with(b"\r\n\r\n") {
                let _ = record.send((sni, None));
                continue;
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let header = |name: &str| {
                head.lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            };
            let len: usize = header("content-length").map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0; len];
            let _ = tls.read_exact(&mut body);
            let _ =
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = record.send((sni, header("host")));
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn webhook_tls_server_name_is_used_for_sni_and_certificate_verification() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (addr, seen) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let receiver = |tls: &str| {
        format!(
            "  - name: w\n    webhook:\n      endpoint: https://{addr}/hook\n      tls: {{caFile: {}{tls}}}\n",
            ca.display()
        )
    };

    // The certificate names webhook.test, the endpoint is an IP: verified against serverName.
    let mut sink = webhook_sink(&receiver(", serverName: webhook.test"));
    sink.send(&[doc(occurrence(1))])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // What the server saw of that connection (it records once the response is written).
    let next = || seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        next(),
        (Some("webhook.test".to_owned()), Some(addr.to_string())),
        "SNI is serverName, Host is the endpoint's"
    );

    // Without serverName the same server is refused: its certificate is not for 127.0.0.1.
    let mut sink = webhook_sink(&receiver(""));
    let err = sink.send(&[doc(occurrence(2))]).await.unwrap_err();
    let SendError::Transient { reason, .. } = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(next().1, None, "no request on the refused connection");
}

/// A sink whose answers are scripted; records the keys of every batch it was given.
struct Scripted {
    answers: std::collections::VecDeque<Result<(), SendError>>,
    seen: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Sink for Scripted {
    fn send<'a>(
        &'a mut self,
        batch: &'a [Doc],
    ) -> futures::future::BoxFuture<'a, Result<(), SendError>> {
        self.seen
            .lock()
            .unwrap()
            .push(batch.iter().map(|d| d.key.to_string()).collect());
        let answer = self.answers.pop_front().unwrap_or(Ok(()));
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_per_document_answer_acks_the_delivered_and_the_permanent_and_resends_only_the_transient()
{
    let rc = receivers(
        "  - name: bulk\n    retry: {initialBackoff: 1ms, maxBackoff: 2ms}\n    batch: {maxEvents: 4, maxWait: 1s}\n    stdout: {}\n",
    )
    .remove(0);
    let transient = |why: &str| SendError::Transient {
        reason: why.to_owned(),
        retry_after: None,
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Scripted {
        answers: [
            // 0 delivered, 1 a mapping error, 2 and 3 throttled.
            Err(SendError::Partial(vec![
                (
                    1,
                    SendError::Permanent {
                        reason: "mapper_parsing_exception".into(),
                    },
                ),
                (2, transient("es_rejected_execution_exception")),
                (3, transient("es_rejected_execution_exception")),
            ])),
            // Of the resent two, the first (3) is throttled again.
            Err(SendError::Partial(vec![(1, transient("429"))])),
            Ok(()),
        ]
        .into(),
        seen: seen.clone(),
    };
    let (metrics, tracker) = (Metrics::default(), Tracker::new(None));
    let worker = worker::Worker::new(
        &rc,
        vec![Box::new(sink)],
        OrderKey::InvolvedObject,
        Encoder::Event,
        metrics.clone(),
        CancellationToken::new(),
    );
    let (tx, rx) = queue::queue(8);
    let mut keys = Vec::new();
    for i in 0..4 {
        let (delivery, ticket) = nth_delivery(&tracker, i);
        keys.push(delivery.occ.key.to_string());
        assert!(tx.send(delivery).await.is_ok());
        ticket.release();
    }
    drop(tx);
    worker.run(rx).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            keys.clone(),
            vec![keys[2].clone(), keys[3].clone()],
            vec![keys[3].clone()],
        ]
    );
    assert_eq!(tracker.in_flight(), 0, "every occurrence was settled");
    let text = metrics.encode();
    assert!(
        text.contains("sink_sent_total{receiver=\"bulk\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("sink_failed_total{receiver=\"bulk\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sink_retried_total{receiver=\"bulk\"} 2"),
        "{text}"
    );
}

/// A destination that takes `delay` per request, records the keys of each batch it accepted (in
/// the order the answers were given) and the most requests it had at once; `stuck`: the involved
/// object whose batches fail (transiently) that many times first.
#[derive(Clone)]
struct Slow {
    delay: Duration,
    accepted: Arc<Mutex<Vec<String>>>,
    now: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
    stuck: Option<(String, Arc<std::sync::atomic::AtomicUsize>)>,
}

impl Slow {
    fn new(delay: Duration, stuck: Option<(&str, usize)>) -> Self {
        Self {
            delay,
            accepted: Arc::default(),
            now: Arc::default(),
            peak: Arc::default(),
            stuck: stuck.map(|(o, n)| (o.to_owned(), Arc::new(n.into()))),
        }
    }
}

impl Sink for Slow {
    fn send<'a>(
        &'a mut self,
        batch: &'a [Doc],
    ) -> futures::future::BoxFuture<'a, Result<(), SendError>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(n, SeqCst);
            tokio::time::sleep(self.delay).await;
            self.now.fetch_sub(1, SeqCst);
            if let Some((object, left)) = &self.stuck
                && batch
                    .iter()
                    .any(|d| d.occ.event.involved_object.uid.as_deref() == Some(object))
                && left
                    .fetch_update(SeqCst, SeqCst, |l| l.checked_sub(1))
                    .is_ok()
            {
                return Err(SendError::Transient {
                    reason: "503".into(),
                    retry_after: None,
                });
            }
            let mut accepted = self.accepted.lock().unwrap();
            accepted.extend(batch.iter().map(|d| d.key.to_string()));
            Ok(())
        })
    }

    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

/// Occurrence `count` of the event `event` about the object `object`.
fn about(object: &str, event: &str, count: i32) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"uid": event, "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": object, "uid": object},
        "reason": "BackOff", "count": count, "type": "Warning"
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

/// A worker for the receiver `yaml` with `concurrency` senders cloned from `sink`, running: its
/// tracker, the sending end of its queue, and its task.
fn start_worker<S: Sink + Clone>(
    yaml: &str,
    sink: &S,
    concurrency: usize,
) -> (Tracker, queue::QueueSender, tokio::task::JoinHandle<()>) {
    let rc = receivers(yaml).remove(0);
    let senders: Vec<Box<dyn Sink>> = (0..concurrency)
        .map(|_| Box::new(sink.clone()) as Box<dyn Sink>)
        .collect();
    let worker = worker::Worker::new(
        &rc,
        senders,
        OrderKey::InvolvedObject,
        Encoder::Event,
        Metrics::default(),
        CancellationToken::new(),
    );
    let (tx, rx) = queue::queue(rc.delivery.queue);
    (Tracker::new(None), tx, tokio::spawn(worker.run(rx)))
}

/// Queues `occ` with a ticket of `tracker`, as the pipeline does.
async fn queue_one(tracker: &Tracker, tx: &queue::QueueSender, occ: Arc<Occurrence>) {
    let ticket = tracker.begin(None);
    let ack = ticket.ack();
    assert!(tx.send(Delivery { occ, ack }).await.is_ok());
    ticket.release();
}

/// Runs a worker of `concurrency` senders cloned from `sink` over `occs` (queued in order); returns
/// the tracker once every occurrence is settled or the worker ended.
async fn run_worker(
    sink: &Slow,
    concurrency: usize,
    max_events: usize,
    occs: Vec<Arc<Occurrence>>,
) -> Tracker {
    let (tracker, tx, run) = start_worker(
        &format!(
            "  - name: slow\n    concurrency: {concurrency}\n    retry: {{initialBackoff: 1ms, maxBackoff: 2ms}}\n    batch: {{maxEvents: {max_events}, maxWait: 5ms}}\n    webhook: {{endpoint: 'http://127.0.0.1:9/'}}\n"
        ),
        sink,
        concurrency,
    );
    for occ in occs {
        queue_one(&tracker, &tx, occ).await;
    }
    drop(tx);
    run.await.unwrap();
    tracker
}

/// `objects` objects `o{i}`, one event `e{i}` each, repeated `counts` times, interleaved as the
/// source would emit them.
fn interleaved(objects: usize, counts: i32) -> Vec<Arc<Occurrence>> {
    (1..=counts)
        .flat_map(|count| {
            (0..objects).map(move |o| about(&format!("o{o}"), &format!("e{o}"), count))
        })
        .collect()
}

/// Every object of [`interleaved`] had its counts 1 to `counts` accepted, in order.
fn assert_each_object_in_order(accepted: &[String], counts: i32) {
    let mut by: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for k in accepted {
        let (event, count) = k.rsplit_once(':').unwrap();
        by.entry(event.replace('e', "o"))
            .or_default()
            .push(count.parse().unwrap());
    }
    for (object, got) in by {
        assert_eq!(
            got,
            (1..=counts).collect::<Vec<_>>(),
            "{object} out of order"
        );
    }
}

#[tokio::test]
async fn requests_run_concurrently_and_each_objects_occurrences_arrive_in_order() {
    // 12 objects, one event each repeated 15 times, interleaved as the source would emit them.
    let occs = interleaved(12, 15);
    let sink = Slow::new(Duration::from_millis(5), None);
    let tracker = run_worker(&sink, 8, 1, occs).await;
    assert_eq!(tracker.in_flight(), 0, "every occurrence acknowledged");
    let peak = sink.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak > 1 && peak <= 8, "{peak} requests at once");
    let accepted = sink.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 180);
    assert_each_object_in_order(&accepted, 15);
}

#[tokio::test]
async fn batches_of_one_object_keep_its_order_across_concurrent_requests() {
    let occs = interleaved(5, 40);
    let sink = Slow::new(Duration::from_millis(3), None);
    let tracker = run_worker(&sink, 4, 7, occs).await;
    assert_eq!(tracker.in_flight(), 0);
    let accepted = sink.accepted.lock().unwrap().clone();
    assert_each_object_in_order(&accepted, 40);
}

#[tokio::test]
async fn a_retrying_object_holds_back_only_its_own_occurrences() {
    let occs = interleaved(8, 10);
    // o3's requests fail 60 times (about 60 backoffs of 1-2 ms plus 2 ms each) before one passes.
    let sink = Slow::new(Duration::from_millis(2), Some(("o3", 60)));
    let tracker = run_worker(&sink, 4, 1, occs).await;
    assert_eq!(tracker.in_flight(), 0);
    let accepted = sink.accepted.lock().unwrap().clone();
    let first_o3 = accepted
        .iter()
        .position(|k| k.starts_with("e3:"))
        .expect("o3 delivered in the end");
    assert_eq!(
        first_o3, 70,
        "every other object's 70 occurrences went while o3 was retrying: {accepted:?}"
    );
    assert_each_object_in_order(&accepted, 10);
}

/// A destination that answers its first request 429 with `Retry-After` and records when every
/// request started.
#[derive(Clone)]
struct RateLimited {
    retry_after: Duration,
    starts: Arc<Mutex<Vec<Instant>>>,
    told: Arc<Mutex<Option<Instant>>>,
}

impl Sink for RateLimited {
    fn send<'a>(
        &'a mut self,
        _batch: &'a [Doc],
    ) -> futures::future::BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.starts.lock().unwrap().push(Instant::now());
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut told = self.told.lock().unwrap();
            if told.is_none() {
                *told = Some(Instant::now());
                return Err(SendError::Transient {
                    reason: "429".into(),
                    retry_after: Some(self.retry_after),
                });
            }
            Ok(())
        })
    }

    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

#[tokio::test]
async fn a_retry_after_holds_every_request_of_the_receiver_not_only_the_one_told() {
    let sink = RateLimited {
        retry_after: Duration::from_millis(300),
        starts: Arc::default(),
        told: Arc::default(),
    };
    let (tracker, tx, run) = start_worker(
        "  - name: limited\n    concurrency: 4\n    retry: {initialBackoff: 1ms, maxBackoff: 1s}\n    webhook: {endpoint: 'http://127.0.0.1:9/'}\n",
        &sink,
        4,
    );
    // One occurrence first (the one that is told to wait), then many about other objects.
    for i in 0..40 {
        queue_one(&tracker, &tx, about(&format!("o{i}"), &format!("e{i}"), 1)).await;
        if i == 0 {
            // Let the first request be answered before the others are queued.
            common_wait(|| sink.told.lock().unwrap().is_some()).await;
        }
    }
    drop(tx);
    run.await.unwrap();
    assert_eq!(tracker.in_flight(), 0);
    let told = sink.told.lock().unwrap().expect("told to wait");
    let early: Vec<Duration> = sink
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|s| **s > told && **s < told + sink.retry_after)
        .map(|s| *s - told)
        .collect();
    assert!(
        early.is_empty(),
        "requests started during Retry-After: {early:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sends_what_is_ready_without_waiting_for_max_wait() {
    // Room for 4, batches of up to 10 after an hour: once the 4 rooms are taken nothing more
    // can arrive, so a batch that cannot grow goes now (with 2 requests × 500 in flight and a
    // queue of 1024, OpenSearch's lanes otherwise idled for maxWait behind busy objects).
    let sink = Slow::new(Duration::from_millis(50), None);
    let (tracker, tx, run) = start_worker(
        "  - name: full\n    queue: 4\n    concurrency: 2\n    batch: {maxEvents: 10, maxWait: 1h}\n    webhook: {endpoint: 'http://127.0.0.1:9/'}\n",
        &sink,
        2,
    );
    let started = tokio::time::Instant::now();
    for i in 0..4 {
        queue_one(&tracker, &tx, about(&format!("o{i}"), &format!("e{i}"), 1)).await;
    }
    // Virtual time: if the batch waited for maxWait, this loop would reach the hour.
    while sink.accepted.lock().unwrap().len() < 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a full queue waited {took:?} for more occurrences"
    );
    drop(tx);
    run.await.unwrap();
    assert_eq!(tracker.in_flight(), 0);
}

/// Polls `cond` every millisecond for at most 5 s.
async fn common_wait(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
