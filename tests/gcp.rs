//! The Google Cloud receivers. `cloudLogging` and `bigquery` against in-test receivers faithful to
//! the REST shapes (an OAuth token endpoint that verifies the JWT's RS256 signature with the test
//! key's public key; entries:write and insertAll that check the bearer token and the request
//! limits and answer per entry: WriteLogEntriesPartialErrors, insertErrors). `pubsub` against the
//! real Pub/Sub emulator of the Google Cloud CLI (on the machine image), messages pulled back.
//! Each of the three also goes through a graceful handover and a SIGKILL of the leader with real
//! exporter processes.
//! Delivery is compared by occurrence key; resmoio's README examples go through check-config.

mod common;

use common::scenarios::{self, FAST};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Delivery, Running, init};
use kube_event_exporter::event::{Event, Occurrence};
use kube_event_exporter::sink::{Doc, SendError, Sink};
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig, SimHandle};
use serde_json::{Value, json};

const PROJECT: &str = "test-proj";
const EMAIL: &str = "exporter@test-proj.iam.gserviceaccount.com";

/// A fresh RSA key (PKCS#8 PEM) from openssl, and its public key (PKCS#1 DER) read back by ring.
fn test_key(dir: &Path) -> (String, Vec<u8>) {
    let path = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl is needed to make the test's service-account key");
    assert!(out.status.success(), "openssl genpkey: {out:?}");
    let pem = std::fs::read_to_string(&path).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    (pem, public)
}

#[derive(Default)]
struct Store {
    tokens: Vec<String>,
    bad: Vec<String>,
    /// entries:write: every stored entry, and the entry count of each request.
    entries: Vec<Value>,
    requests: Vec<usize>,
    /// insertAll rows stored.
    rows: Vec<Value>,
    /// insertIds answered INVALID_ARGUMENT / "invalid" every time.
    permanent: BTreeSet<String>,
    /// insertIds answered UNAVAILABLE / "backendError" the first time.
    transient_once: BTreeSet<String>,
    /// Fail every entry whose insertId hashes to 0 mod this, the first time (0: never).
    flaky_mod: u64,
    flaked: BTreeSet<String>,
}

type Shared = Arc<Mutex<Store>>;

struct FakeGoogle {
    addr: SocketAddr,
    store: Shared,
    public: Vec<u8>,
}

fn bad(store: &Shared, why: String) -> (StatusCode, String) {
    store.lock().unwrap().bad.push(why.clone());
    (
        StatusCode::UNAUTHORIZED,
        json!({"error": {"code": 401, "message": why, "status": "UNAUTHENTICATED"}}).to_string(),
    )
}

async fn token(
    State((store, public, uri)): State<(Shared, Arc<Vec<u8>>, String)>,
    body: String,
) -> (StatusCode, String) {
    let form: BTreeMap<&str, &str> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    if form.get("grant_type") != Some(&"urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return bad(&store, format!("grant_type in {body}"));
    }
    let jwt = form.get("assertion").copied().unwrap_or("");
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return bad(&store, "not a JWT".into());
    }
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public.as_slice(),
    );
    if key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_err()
    {
        return bad(&store, "signature does not verify".into());
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let ok = header["alg"] == "RS256"
        && header["kid"] == "kid-1"
        && claims["iss"] == EMAIL
        && claims["aud"] == uri.as_str()
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && (claims["iat"].as_i64().unwrap_or(0) - now).abs() < 60
        && claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0) == 3600;
    if !ok {
        return bad(&store, format!("claims {claims} header {header}"));
    }
    let mut s = store.lock().unwrap();
    let t = format!("tok-{}", s.tokens.len());
    s.tokens.push(t.clone());
    (
        StatusCode::OK,
        json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
    )
}

fn authorized(store: &Shared, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| store.lock().unwrap().tokens.iter().any(|k| k == t));
    if ok {
        Ok(())
    } else {
        Err(bad(store, format!("authorization {auth:?}")))
    }
}

fn flaky(s: &mut Store, id: &str) -> bool {
    if s.flaky_mod == 0 || s.flaked.contains(id) {
        return false;
    }
    let h = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    if h % s.flaky_mod == 0 {
        s.flaked.insert(id.to_owned());
        return true;
    }
    false
}

/// entries.write: 10 MB and 1000 entries per request; per-entry errors in
/// WriteLogEntriesPartialErrors (the valid entries are written, as with partialSuccess).
async fn entries_write(
    State(store): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if let Err(e) = authorized(&store, &headers) {
        return e;
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "{{\"error\":{{\"code\":400,\"message\":\"{e}\",\"status\":\"INVALID_ARGUMENT\"}}}}"
                ),
            );
        }
    };
    let entries = req["entries"].as_array().cloned().unwrap_or_default();
    let mut s = store.lock().unwrap();
    if body.len() > 10_000_000 || entries.len() > 1000 {
        s.bad.push(format!(
            "request of {} bytes, {} entries",
            body.len(),
            entries.len()
        ));
        return (StatusCode::BAD_REQUEST, json!({"error": {"code": 400, "message": "Request payload size exceeds the limit", "status": "INVALID_ARGUMENT"}}).to_string());
    }
    if req["logName"] != format!("projects/{PROJECT}/logs/events") || req["partialSuccess"] != true
    {
        s.bad
            .push(format!("logName/partialSuccess {}", req["logName"]));
    }
    s.requests.push(entries.len());
    let mut errors = serde_json::Map::new();
    for (i, e) in entries.into_iter().enumerate() {
        let id = e["insertId"].as_str().unwrap_or("").to_owned();
        if s.permanent.contains(&id) {
            errors.insert(i.to_string(), json!({"code": 3, "message": "Log entry with size 300K exceeds maximum size of 256K"}));
        } else if s.transient_once.remove(&id) || flaky(&mut s, &id) {
            errors.insert(
                i.to_string(),
                json!({"code": 14, "message": "The service is currently unavailable."}),
            );
        } else {
            s.entries.push(e);
        }
    }
    if errors.is_empty() {
        return (StatusCode::OK, "{}".into());
    }
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": 400, "message": "Log entries failed", "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors", "logEntryErrors": errors}
        ]}})
        .to_string(),
    )
}

/// tabledata.insertAll: 10 MB and 50,000 rows per request; insertErrors by row index (with
/// skipInvalidRows the others are inserted).
async fn insert_all(
    State(store): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if let Err(e) = authorized(&store, &headers) {
        return e;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    let rows = req["rows"].as_array().cloned().unwrap_or_default();
    let mut s = store.lock().unwrap();
    if body.len() > 10_000_000 || rows.len() > 50_000 || req["skipInvalidRows"] != true {
        s.bad.push(format!(
            "insertAll of {} bytes, {} rows",
            body.len(),
            rows.len()
        ));
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}})
                .to_string(),
        );
    }
    s.requests.push(rows.len());
    let mut errors = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        let id = r["insertId"].as_str().unwrap_or("").to_owned();
        if s.permanent.contains(&id) {
            errors.push(json!({"index": i, "errors": [{"reason": "invalid", "location": "reason", "message": "no such field: reason."}]}));
        } else if s.transient_once.remove(&id) || flaky(&mut s, &id) {
            errors.push(json!({"index": i, "errors": [{"reason": "backendError", "message": "Backend error."}]}));
        } else {
            s.rows.push(r);
        }
    }
    let mut answer = json!({"kind": "bigquery#tableDataInsertAllResponse"});
    if !errors.is_empty() {
        answer["insertErrors"] = Value::Array(errors);
    }
    (StatusCode::OK, answer.to_string())
}

impl FakeGoogle {
    async fn start(public: Vec<u8>) -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Shared::default();
        let uri = format!("http://{addr}/token");
        let app = Router::new()
            .route(
                "/token",
                post(token).with_state((store.clone(), Arc::new(public.clone()), uri)),
            )
            .route(
                "/v2/entries:write",
                post(entries_write).with_state(store.clone()),
            )
            .route(
                &format!("/bigquery/v2/projects/{PROJECT}/datasets/events/tables/k8s/insertAll"),
                post(insert_all).with_state(store.clone()),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGoogle {
            addr,
            store,
            public,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A service-account key file whose token_uri is this server.
    fn key_file(&self, dir: &Path, pem: &str) -> PathBuf {
        let _ = &self.public;
        let path = dir.join("sa.json");
        std::fs::write(
            &path,
            json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "kid-1",
                   "private_key": pem, "client_email": EMAIL, "client_id": "1",
                   "token_uri": format!("{}/token", self.url())})
            .to_string(),
        )
        .unwrap();
        path
    }

    fn assert_no_bad_requests(&self) {
        let s = self.store.lock().unwrap();
        assert!(s.bad.is_empty(), "refused requests: {:?}", s.bad);
        assert!(!s.tokens.is_empty(), "no token was asked for");
    }
}

/// A sink built from one receiver's YAML, as `run` builds it.
fn sink(receiver_yaml: &str) -> Box<dyn Sink> {
    let text = format!(
        "route:\n  routes:\n    - match:\n        - receiver: r\nreceivers:\n  - name: r\n{receiver_yaml}"
    );
    let cfg = kube_event_exporter::config::parse(&text, &|_| None)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    let rc = &cfg.receivers[0];
    let metrics = kube_event_exporter::telemetry::Metrics::default();
    let stdout = || -> kube_event_exporter::sink::stdout::Writer { Box::new(tokio::io::sink()) };
    let env = kube_event_exporter::sink::BuildEnv {
        receiver: &rc.name,
        delivery: &rc.delivery,
        stdout: &stdout,
        metrics: &metrics,
    };
    rc.sink
        .receiver()
        .build(&env)
        .unwrap_or_else(|p| panic!("build: {p:?}"))
}

/// `n` documents (full events): even ones Warning events about a pod of their namespace, odd
/// ones Normal events about a node.
fn docs(n: usize) -> Vec<Doc> {
    (0..n)
        .map(|i| {
            let io = if i % 2 == 0 {
                json!({"kind": "Pod", "name": format!("web-{i}"), "namespace": "shop", "uid": format!("pod-uid-{i}")})
            } else {
                json!({"kind": "Node", "name": format!("node-{i}"), "uid": format!("node-uid-{i}")})
            };
            let ev: Event = serde_json::from_value(json!({
                "metadata": {"name": format!("ev-{i}"), "namespace": "shop", "uid": format!("ev-uid-{i:05}")},
                "involvedObject": io, "reason": "BackOff", "message": "m",
                "type": if i % 2 == 0 { "Warning" } else { "Normal" }, "count": 2,
                "lastTimestamp": "2026-03-01T10:00:00Z", "firstTimestamp": "2026-03-01T09:00:00Z",
            }))
            .unwrap();
            let occ = Arc::new(Occurrence::new(ev));
            Doc {
                key: occ.key.clone(),
                body: occ.json().clone(),
                occ,
            }
        })
        .collect()
}

fn logging_receiver(g: &FakeGoogle, key: &Path) -> String {
    format!(
        "    cloudLogging:\n      endpoint: {}\n      credentialsFile: {}\n      location: europe-west1\n      clusterName: prod\n",
        g.url(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_logging_splits_a_batch_over_1000_entries_and_writes_each_as_gkes_exporter_does() {
    init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let mut s = sink(&logging_receiver(&g, &key));
    let batch = docs(2500);
    s.send(&batch).await.expect("delivered");
    s.send(&batch[..3]).await.expect("a second batch");
    g.assert_no_bad_requests();
    let st = g.store.lock().unwrap();
    assert_eq!(st.requests, vec![1000, 1000, 500, 3]);
    assert_eq!(st.tokens.len(), 1, "the token is cached");
    let ids: Vec<String> = st
        .entries
        .iter()
        .map(|e| e["insertId"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    let d = Delivery::compare(&want, &ids[..2500]);
    assert!(d.lost.is_empty() && d.duplicated.is_empty(), "{d:?}");
    let pod = &st.entries[0];
    assert_eq!(pod["insertId"], "ev-uid-00000:2");
    assert_eq!(pod["labels"]["occurrence_key"], "ev-uid-00000:2");
    assert_eq!(pod["severity"], "WARNING");
    assert_eq!(pod["timestamp"], "2026-03-01T10:00:00Z");
    assert_eq!(
        pod["resource"],
        json!({"type": "k8s_pod", "labels": {"project_id": PROJECT, "location": "europe-west1", "cluster_name": "prod", "namespace_name": "shop", "pod_name": "web-0"}})
    );
    assert_eq!(pod["jsonPayload"]["reason"], "BackOff");
    let node = &st.entries[1];
    assert_eq!(node["severity"], "INFO");
    assert_eq!(
        node["resource"],
        json!({"type": "k8s_node", "labels": {"project_id": PROJECT, "location": "europe-west1", "cluster_name": "prod", "node_name": "node-1"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_logging_partial_errors_fail_the_invalid_entry_and_resend_only_the_unavailable_one() {
    init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let batch = docs(10);
    {
        let mut st = g.store.lock().unwrap();
        st.permanent.insert(batch[3].key.to_string());
        st.transient_once.insert(batch[5].key.to_string());
    }
    let mut s = sink(&logging_receiver(&g, &key));
    match s.send(&batch).await {
        Err(SendError::Partial(failed)) => {
            assert_eq!(failed.len(), 2, "{failed:?}");
            assert!(
                matches!(failed[0], (3, SendError::Permanent { .. })),
                "{failed:?}"
            );
            assert!(
                matches!(failed[1], (5, SendError::Transient { .. })),
                "{failed:?}"
            );
        }
        other => panic!("expected a per-entry answer, got {other:?}"),
    }
    // The worker resends the transient one alone.
    s.send(&batch[5..6]).await.expect("resent");
    g.assert_no_bad_requests();
    let st = g.store.lock().unwrap();
    let ids: Vec<String> = st
        .entries
        .iter()
        .map(|e| e["insertId"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, d)| d.key.to_string())
        .collect();
    let d = Delivery::compare(&want, &ids);
    assert!(
        d.lost.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "{d:?}"
    );
    assert_eq!(st.requests, vec![10, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigquery_rows_carry_the_key_as_insert_id_and_insert_errors_are_answered_per_row() {
    init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let batch = docs(1200);
    {
        let mut st = g.store.lock().unwrap();
        st.permanent.insert(batch[700].key.to_string());
        st.transient_once.insert(batch[10].key.to_string());
    }
    let mut s = sink(&format!(
        "    bigquery:\n      endpoint: {}\n      credentials_path: {}\n      dataset: events\n      table: k8s\n",
        g.url(),
        key.display()
    ));
    match s.send(&batch).await {
        Err(SendError::Partial(failed)) => {
            assert_eq!(failed.len(), 2, "{failed:?}");
            assert!(
                matches!(failed[0], (10, SendError::Transient { .. })),
                "{failed:?}"
            );
            match &failed[1] {
                (700, SendError::Permanent { reason }) => {
                    assert!(
                        reason.contains("invalid at reason: no such field"),
                        "{reason}"
                    )
                }
                f => panic!("{f:?}"),
            }
        }
        other => panic!("expected a per-row answer, got {other:?}"),
    }
    s.send(&batch[10..11]).await.expect("resent");
    g.assert_no_bad_requests();
    let st = g.store.lock().unwrap();
    // batch_size defaults to 500 rows per request.
    assert_eq!(st.requests, vec![500, 500, 200, 1]);
    let ids: Vec<String> = st
        .rows
        .iter()
        .map(|r| r["insertId"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 700)
        .map(|(_, d)| d.key.to_string())
        .collect();
    let d = Delivery::compare(&want, &ids);
    assert!(
        d.lost.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "{d:?}"
    );
    // resmoio's row shape: nulls dropped, keys made column names.
    let row = &st.rows[0]["json"];
    assert_eq!(row["involvedObject"]["uid"], "pod-uid-0");
    assert!(row.get("eventTime").is_none(), "{row}");
}

/// An exporter in this process (no leader election) with one receiver `r`.
async fn exporter(sim: &SimHandle, dir: &Path, receiver: &str) -> Running {
    let text = format!(
        "omitLookup: true\nmaxEventAgeSeconds: 86400\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: r\nreceivers:\n  - name: r\n    retry: {{initialBackoff: 50ms, maxBackoff: 1s}}\n    batch: {{maxEvents: 200, maxWait: 50ms}}\n{receiver}"
    );
    let cfg = kube_event_exporter::config::parse(&text, &|_| None)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir).await;
    common::until_watching(sim).await;
    run
}

async fn wait_keys(
    what: &str,
    want: &[String],
    limit: Duration,
    have: impl Fn() -> Vec<String>,
) -> Delivery {
    let deadline = Instant::now() + limit;
    loop {
        let d = Delivery::compare(want, &have());
        if d.lost.is_empty() || Instant::now() > deadline {
            return d;
        }
        let _ = what;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_occurrences_reach_cloud_logging_and_bigquery_through_flaky_answers_lost_0() {
    init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    for kind in ["cloudLogging", "bigquery"] {
        let g = FakeGoogle::start(public.clone()).await;
        g.store.lock().unwrap().flaky_mod = 7;
        let key = g.key_file(dir.path(), &pem);
        let receiver = if kind == "cloudLogging" {
            logging_receiver(&g, &key)
        } else {
            format!(
                "    bigquery:\n      endpoint: {}\n      credentials_path: {}\n      dataset: events\n      table: k8s\n",
                g.url(),
                key.display()
            )
        };
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let run = exporter(&sim, dir.path(), &receiver).await;
        let gen_ = scenarios::generate(&sim, FAST, 600, 31);
        gen_.wait().await;
        let want = gen_.generated();
        let store = g.store.clone();
        let d = wait_keys(kind, &want, Duration::from_secs(60), || {
            let st = store.lock().unwrap();
            if kind == "cloudLogging" {
                st.entries
                    .iter()
                    .map(|e| e["insertId"].as_str().unwrap_or("").to_owned())
                    .collect()
            } else {
                st.rows
                    .iter()
                    .map(|e| e["insertId"].as_str().unwrap_or("").to_owned())
                    .collect()
            }
        })
        .await;
        let _ = run.stop(Duration::from_secs(10)).await;
        assert!(
            d.lost.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
            "{kind}: lost {} duplicated {} unexpected {} of {}",
            d.lost.len(),
            d.duplicated.len(),
            d.unexpected.len(),
            d.generated
        );
        assert!(
            !g.store.lock().unwrap().flaked.is_empty(),
            "{kind}: no entry was answered UNAVAILABLE"
        );
        g.assert_no_bad_requests();
    }
}

// ---- Pub/Sub against the emulator ----

const EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

struct Emulator {
    child: std::process::Child,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pubsub_emulator(dir: &Path) -> Emulator {
    assert!(
        Path::new(EMULATOR).exists(),
        "the Pub/Sub emulator is missing: install the Debian package google-cloud-cli-pubsub-emulator (and a Java runtime)"
    );
    let port = common::pyservers::free_port();
    let log = std::fs::File::create(dir.join("pubsub-emulator.log")).unwrap();
    let child = std::process::Command::new(EMULATOR)
        .args(["--host=127.0.0.1", &format!("--port={port}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting the Pub/Sub emulator");
    let em = Emulator { child, port };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            return em;
        }
        assert!(
            Instant::now() < deadline,
            "the Pub/Sub emulator did not listen within 90 s: {}",
            std::fs::read_to_string(dir.join("pubsub-emulator.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The topic `kube-events` and its subscription `all` on the emulator at `base`. The receiver
/// creates the topic itself (`create_topic`), but the subscription must exist before the first
/// publish, so the topic is made here first (create_topic then finds it: fine).
async fn topic_and_subscription(base: &str) {
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{base}/topics/kube-events"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let r = http
        .put(format!("{base}/subscriptions/all"))
        .json(&json!({"topic": format!("projects/{PROJECT}/topics/kube-events"), "enableMessageOrdering": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_delivers_generated_occurrences_to_the_emulator_with_the_key_attribute_and_ordering_key()
 {
    init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let em = pubsub_emulator(dir.path()).await;
    let base = format!("http://127.0.0.1:{}/v1/projects/{PROJECT}", em.port);
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let http = reqwest::Client::new();
    topic_and_subscription(&base).await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let receiver = format!(
        "    pubsub:\n      gcloud_project_id: {PROJECT}\n      topic: kube-events\n      create_topic: true\n      orderingKey: true\n      endpoint: http://127.0.0.1:{}\n      credentialsFile: {}\n",
        em.port,
        key.display()
    );
    let run = exporter(&sim, dir.path(), &receiver).await;
    let gen_ = scenarios::generate(&sim, FAST, 600, 41);
    gen_.wait().await;
    let want = gen_.generated();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Delivery::compare(&want, &got).lost.is_empty() && Instant::now() < deadline {
        let a: Value = http
            .post(format!("{base}/subscriptions/all:pull"))
            .json(&json!({"maxMessages": 1000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let msgs = a["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut acks = Vec::new();
        for m in &msgs {
            let data = STANDARD
                .decode(m["message"]["data"].as_str().unwrap())
                .unwrap();
            let ev: Event = serde_json::from_slice(&data).unwrap();
            let key = m["message"]["attributes"]["occurrence_key"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(key, ev.occurrence_key());
            assert_eq!(
                m["message"]["orderingKey"].as_str(),
                ev.involved_object.uid.as_deref()
            );
            got.push(key);
            acks.push(m["ackId"].clone());
        }
        if !acks.is_empty() {
            http.post(format!("{base}/subscriptions/all:acknowledge"))
                .json(&json!({"ackIds": acks}))
                .send()
                .await
                .unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let _ = run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &got);
    assert!(
        d.lost.is_empty() && d.duplicated.is_empty() && d.unexpected.is_empty(),
        "lost {} duplicated {} unexpected {} of {}",
        d.lost.len(),
        d.duplicated.len(),
        d.unexpected.len(),
        d.generated
    );
    g.assert_no_bad_requests();
}

// ---- check-config ----

fn check_config(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"));
    cmd.args(["check-config", "--config"])
        .arg(&path)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("PUBSUB_EMULATOR_HOST")
        // Nothing may connect: a metadata server that does not exist.
        .env("GCE_METADATA_HOST", "127.0.0.1:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resmoios_readme_examples_and_ours_pass_check_config_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    // resmoio's README Pub/Sub example, verbatim under a route.
    let (code, err) = check_config(
        dir.path(),
        "route:\n  routes:\n    - match:\n        - receiver: pubsub\nreceivers:\n  - name: \"pubsub\"\n    pubsub:\n      gcloud_project_id: \"my-project\"\n      topic: \"kube-event\"\n      create_topic: False\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // Its BigQuery example lists the keys with no values; with values written in (dataset and
    // table are required: resmoio fails at start without them too). No key file: workload identity.
    let (code, err) = check_config(
        dir.path(),
        "route:\n  routes:\n    - match:\n        - receiver: my-big-query\nreceivers:\n  - name: \"my-big-query\"\n    bigquery:\n      location: US\n      project: my-project\n      dataset: kube_events\n      table: events\n      credentials_path:\n      batch_size: 1000\n      max_retries: 3\n      interval_seconds: 10\n      timeout_seconds: 60\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "resmoio's interval_seconds is not used here: set the receiver's batch.maxWait instead"
        ),
        "{err}"
    );
    for example in ["pubsub", "bigquery", "cloud-logging"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.yaml"));
        let (code, err) = check_config(dir.path(), &std::fs::read_to_string(&path).unwrap(), &[]);
        assert_eq!(code, 0, "{example}: {err}");
    }
}

#[test]
fn check_config_names_a_missing_or_broken_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |extra: &str| {
        format!(
            "route:\n  routes:\n    - match:\n        - receiver: l\nreceivers:\n  - name: l\n    cloudLogging:\n      project: p\n{extra}"
        )
    };
    let (code, err) = check_config(
        dir.path(),
        &cfg("      credentialsFile: /nonexistent/sa.json\n"),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].cloudLogging.credentialsFile: cannot read /nonexistent/sa.json"),
        "{err}"
    );
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"type":"authorized_user"}"#).unwrap();
    let (code, err) = check_config(
        dir.path(),
        &cfg(""),
        &[("GOOGLE_APPLICATION_CREDENTIALS", broken.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("GOOGLE_APPLICATION_CREDENTIALS")
            && err.contains("\"authorized_user\" are not supported"),
        "{err}"
    );
    let (code, err) = check_config(
        dir.path(),
        "route:\n  routes:\n    - match:\n        - receiver: b\nreceivers:\n  - name: b\n    bigquery:\n      project: p\n",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].bigquery.dataset: is required"),
        "{err}"
    );
    assert!(
        err.contains("receivers[0].bigquery.table: is required"),
        "{err}"
    );
}

// ---- handovers: real exporter processes (tests/common/scenarios.rs) against the fake Logging ----

/// The insertIds Cloud Logging received, in arrival order (replays included: the real service
/// folds entries with the same insertId and timestamp into one).
fn logged_keys(g: &FakeGoogle) -> Vec<String> {
    g.store
        .lock()
        .unwrap()
        .entries
        .iter()
        .map(|e| e["insertId"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_logging_graceful_handover_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let receiver = format!("  - name: logging\n{}", logging_receiver(&g, &key));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o =
        common::scenarios::graceful_handover(&sim, &receiver, "logging", &|| logged_keys(&g), 61)
            .await;
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    g.assert_no_bad_requests();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_logging_sigkill_of_the_leader_loses_nothing_and_replays_only_known_insert_ids() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let receiver = format!("  - name: logging\n{}", logging_receiver(&g, &key));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &receiver,
        "logging",
        &|| logged_keys(&g),
        62,
    )
    .await;
    o.assert_no_loss_and_bounded_duplicates("cloudLogging SIGKILL", Duration::from_millis(200));
    // Every replayed entry repeats an insertId and timestamp already written: Cloud Logging
    // keeps one.
    let mut first: BTreeMap<String, Value> = BTreeMap::new();
    for e in g.store.lock().unwrap().entries.iter() {
        let id = e["insertId"].as_str().unwrap_or("").to_owned();
        let seen = first
            .entry(id.clone())
            .or_insert_with(|| e["timestamp"].clone());
        assert_eq!(
            *seen, e["timestamp"],
            "{id}: a replay with another timestamp"
        );
    }
    g.assert_no_bad_requests();
}

// ---- handovers of BigQuery (the fake insertAll) and Pub/Sub (the emulator) ----

/// The insertIds of the rows BigQuery stored, replays included (the real service folds rows with
/// the same insertId within about a minute, best effort).
fn row_keys(g: &FakeGoogle) -> Vec<String> {
    g.store
        .lock()
        .unwrap()
        .rows
        .iter()
        .map(|r| r["insertId"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn bigquery_receiver(g: &FakeGoogle, key: &Path) -> String {
    format!(
        "  - name: bq\n    bigquery:\n      endpoint: {}\n      credentials_path: {}\n      dataset: events\n      table: k8s\n",
        g.url(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigquery_graceful_handover_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::graceful_handover(
        &sim,
        &bigquery_receiver(&g, &key),
        "bq",
        &|| row_keys(&g),
        63,
    )
    .await;
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    g.assert_no_bad_requests();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigquery_sigkill_of_the_leader_loses_nothing_and_replays_only_known_insert_ids() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = test_key(dir.path());
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir.path(), &pem);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &bigquery_receiver(&g, &key),
        "bq",
        &|| row_keys(&g),
        64,
    )
    .await;
    // No unexpected insertId: every replayed row repeats one already written.
    o.assert_no_loss_and_bounded_duplicates("bigquery SIGKILL", Duration::from_millis(200));
    g.assert_no_bad_requests();
}

/// Pulls and acknowledges the subscription `all` in the background, as a consumer would; the
/// `occurrence_key` attributes received, redeliveries included.
struct Puller {
    keys: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Puller {
    fn start(base: String) -> Puller {
        let keys = Arc::new(Mutex::new(Vec::new()));
        let out = keys.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let answer = http
                    .post(format!("{base}/subscriptions/all:pull"))
                    .json(&json!({"maxMessages": 1000}))
                    .send()
                    .await;
                let a: Value = match answer {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                let msgs = a["receivedMessages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if msgs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let mut acks = Vec::new();
                for m in &msgs {
                    let key = m["message"]["attributes"]["occurrence_key"]
                        .as_str()
                        .unwrap_or("(no occurrence_key attribute)")
                        .to_owned();
                    out.lock().unwrap().push(key);
                    acks.push(m["ackId"].clone());
                }
                http.post(format!("{base}/subscriptions/all:acknowledge"))
                    .json(&json!({"ackIds": acks}))
                    .send()
                    .await
                    .expect("acknowledging to the emulator");
            }
        });
        Puller { keys, task }
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

impl Drop for Puller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The emulator with topic and subscription, a token server for the receiver's credentials, the
/// receiver list item (`ps`), and a consumer pulling from the subscription.
struct PubsubSetup {
    _em: Emulator,
    g: FakeGoogle,
    receiver: String,
    puller: Puller,
}

async fn pubsub_setup(dir: &Path) -> PubsubSetup {
    let em = pubsub_emulator(dir).await;
    let base = format!("http://127.0.0.1:{}/v1/projects/{PROJECT}", em.port);
    topic_and_subscription(&base).await;
    let (pem, public) = test_key(dir);
    let g = FakeGoogle::start(public).await;
    let key = g.key_file(dir, &pem);
    let receiver = format!(
        "  - name: ps\n    pubsub:\n      gcloud_project_id: {PROJECT}\n      topic: kube-events\n      create_topic: true\n      endpoint: http://127.0.0.1:{}\n      credentialsFile: {}\n",
        em.port,
        key.display()
    );
    PubsubSetup {
        _em: em,
        g,
        receiver,
        puller: Puller::start(base),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_graceful_handover_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ps = pubsub_setup(dir.path()).await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o =
        common::scenarios::graceful_handover(&sim, &ps.receiver, "ps", &|| ps.puller.keys(), 65)
            .await;
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    ps.g.assert_no_bad_requests();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_sigkill_of_the_leader_loses_nothing_and_replays_only_known_keys() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ps = pubsub_setup(dir.path()).await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &ps.receiver,
        "ps",
        &|| ps.puller.keys(),
        66,
    )
    .await;
    // A batch counts toward the cursor when the emulator answers the publish, and this JVM
    // answers in up to a few hundred ms on a loaded machine: the batch in flight at the last
    // commit is replayed too, so its fill time (maxWait 200 ms) gets 500 ms of answer time.
    o.assert_no_loss_and_bounded_duplicates("pubsub SIGKILL", Duration::from_millis(700));
    ps.g.assert_no_bad_requests();
}
