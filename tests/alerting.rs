//! The slack, opsgenie and teams receivers against in-test servers that answer as the services
//! do: Slack's `chat.postMessage` (HTTP 200 with `ok:false`, one message per second per channel
//! or 429 with Retry-After) and incoming webhooks (`ok`, or a 4xx with a text reason);
//! Opsgenie's `POST /v2/alerts` (202 accepted for processing, 401/422 error bodies, rate
//! limiting, deduplication of open alerts by alias); a Teams Workflows webhook (202, 429 with
//! Retry-After, 413 over its size limit). Each server reads the occurrence keys back from what
//! it received, independently of the exporter's code, and the tests compare them with the
//! generated ones (lost, duplicated).

mod common;

use common::scenarios;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Delivery, Running, init};
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig, SimHandle};
use serde_json::{Value, json};

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A scripted answer for the next request, instead of the service's normal behaviour.
#[derive(Debug, Clone)]
enum Fault {
    /// Slack: HTTP 200 `{"ok": false, "error": …}`.
    OkFalse(&'static str),
    /// Any: this status, with `Retry-After` seconds when given, and this body.
    Status(u16, Option<u64>, &'static str),
}

fn fault_response(f: &Fault) -> Response {
    match f {
        Fault::OkFalse(e) => axum::Json(json!({"ok": false, "error": e})).into_response(),
        Fault::Status(code, after, body) => {
            let mut r = (StatusCode::from_u16(*code).unwrap(), body.to_string()).into_response();
            if let Some(s) = after {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            r
        }
    }
}

// ---- Slack ----

#[derive(Debug, Clone)]
struct SlackPost {
    channel: String,
    text: String,
    keys: Vec<String>,
    attachments: Option<Value>,
}

#[derive(Default)]
struct SlackState {
    posts: Vec<SlackPost>,
    /// When each channel (or webhook) last accepted a message.
    last: HashMap<String, Instant>,
    /// Requests refused with 429 for going faster than one per `min_interval`.
    rate_limited: usize,
    requests: usize,
    script: VecDeque<Fault>,
    /// Arrival of every request, by channel: (time, answered status).
    arrivals: Vec<(String, Instant, u16)>,
}

#[derive(Clone)]
struct FakeSlack {
    state: Arc<Mutex<SlackState>>,
    addr: SocketAddr,
}

const SLACK_TOKEN: &str = "xoxb-test-token";
/// Channels the workspace does not have.
const GONE: &str = "#gone";

/// The keys of a message's metadata, read as Slack stores it.
fn metadata_keys(body: &Value) -> Vec<String> {
    assert_eq!(
        body.pointer("/metadata/event_type"),
        Some(&json!("kube_event")),
        "{body}"
    );
    let keys: Vec<String> = body
        .pointer("/metadata/event_payload/occurrence_keys")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        body.pointer("/metadata/event_payload/events")
            .and_then(Value::as_u64),
        Some(keys.len() as u64),
        "{body}"
    );
    keys
}

impl FakeSlack {
    /// Slack with one message per `min_interval` per channel (and per webhook).
    async fn start(min_interval: Duration) -> Self {
        let state = Arc::new(Mutex::new(SlackState::default()));
        let s = state.clone();
        let api = move |headers: HeaderMap, body: Bytes| {
            let state = s.clone();
            async move { Self::chat_post_message(&state, min_interval, &headers, &body) }
        };
        let s = state.clone();
        let hook = move |Path((t, b, secret)): Path<(String, String, String)>, body: Bytes| {
            let state = s.clone();
            async move { Self::webhook(&state, min_interval, &format!("{t}/{b}/{secret}"), &body) }
        };
        let app = axum::Router::new()
            .route("/api/chat.postMessage", axum::routing::post(api))
            .route("/services/{t}/{b}/{secret}", axum::routing::post(hook));
        let addr = serve(app).await;
        Self { state, addr }
    }

    fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    fn webhook_url(&self) -> String {
        format!("http://{}/services/T0/B0/s3cret", self.addr)
    }

    /// The channel's rate: the message is accepted, or 429 when the channel had one less than
    /// `min` ago.
    fn admit(st: &mut SlackState, key: &str, min: Duration) -> bool {
        let now = Instant::now();
        if let Some(last) = st.last.get(key)
            && now.duration_since(*last) < min
        {
            st.rate_limited += 1;
            return false;
        }
        st.last.insert(key.to_owned(), now);
        true
    }

    fn chat_post_message(
        state: &Mutex<SlackState>,
        min: Duration,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return axum::Json(json!({"ok": false, "error": "invalid_json"})).into_response();
        };
        let channel = v["channel"].as_str().unwrap_or("").to_owned();
        let answer = if let Some(f) = st.script.pop_front() {
            fault_response(&f)
        } else if auth.is_empty() {
            axum::Json(json!({"ok": false, "error": "not_authed"})).into_response()
        } else if auth != format!("Bearer {SLACK_TOKEN}") {
            axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response()
        } else if channel.is_empty() || channel == GONE {
            axum::Json(json!({"ok": false, "error": "channel_not_found"})).into_response()
        } else if v["text"].as_str().unwrap_or("").is_empty() && v.get("attachments").is_none() {
            axum::Json(json!({"ok": false, "error": "no_text"})).into_response()
        } else if !Self::admit(&mut st, &channel, min) {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "").into_response();
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        } else {
            let keys = metadata_keys(&v);
            st.posts.push(SlackPost {
                channel: channel.clone(),
                text: v["text"].as_str().unwrap_or("").to_owned(),
                keys,
                attachments: v.get("attachments").cloned(),
            });
            axum::Json(json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"}))
                .into_response()
        };
        st.arrivals
            .push((channel, Instant::now(), answer.status().as_u16()));
        answer
    }

    fn webhook(state: &Mutex<SlackState>, min: Duration, hook: &str, body: &[u8]) -> Response {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        if let Some(f) = st.script.pop_front() {
            return fault_response(&f);
        }
        if hook != "T0/B0/s3cret" {
            return (StatusCode::NOT_FOUND, "no_service").into_response();
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
        };
        if v["text"].as_str().unwrap_or("").is_empty() && v.get("attachments").is_none() {
            return (StatusCode::BAD_REQUEST, "no_text").into_response();
        }
        if !Self::admit(&mut st, "webhook", min) {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response();
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
        let keys = metadata_keys(&v);
        st.posts.push(SlackPost {
            channel: "webhook".into(),
            text: v["text"].as_str().unwrap_or("").to_owned(),
            keys,
            attachments: v.get("attachments").cloned(),
        });
        (StatusCode::OK, "ok").into_response()
    }

    fn keys(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.posts.iter().flat_map(|p| p.keys.clone()).collect()
    }

    fn posts(&self) -> Vec<SlackPost> {
        self.state.lock().unwrap().posts.clone()
    }

    fn rate_limited(&self) -> usize {
        self.state.lock().unwrap().rate_limited
    }

    fn script(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(faults.iter().cloned());
    }
}

// ---- Opsgenie ----

#[derive(Debug, Clone)]
struct Alert {
    body: Value,
    /// How many create requests had this alias while it was open (Opsgenie's count).
    count: u32,
}

#[derive(Default)]
struct OpsgenieState {
    /// Open alerts by alias.
    alerts: BTreeMap<String, Alert>,
    /// Every accepted create request's occurrence_key detail.
    accepted_keys: Vec<String>,
    requests: usize,
    throttled: usize,
    /// Arrival times within the last second, for the rate limit.
    window: VecDeque<Instant>,
    script: VecDeque<Fault>,
}

#[derive(Clone)]
struct FakeOpsgenie {
    state: Arc<Mutex<OpsgenieState>>,
    addr: SocketAddr,
}

const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";

fn genie_error(status: StatusCode, message: &str, errors: Option<Value>) -> Response {
    let mut body = json!({"message": message, "took": 0.002, "requestId": "9ae63dd7-ed00-4c81-86f0-c4ffd33142c9"});
    if let Some(e) = errors {
        body["errors"] = e;
    }
    (status, axum::Json(body)).into_response()
}

impl FakeOpsgenie {
    /// Opsgenie accepting at most `per_second` create requests per second (429 beyond).
    async fn start(per_second: usize) -> Self {
        let state = Arc::new(Mutex::new(OpsgenieState::default()));
        let s = state.clone();
        let create = move |headers: HeaderMap, body: Bytes| {
            let state = s.clone();
            async move { Self::create(&state, per_second, &headers, &body) }
        };
        let app = axum::Router::new().route("/v2/alerts", axum::routing::post(create));
        let addr = serve(app).await;
        Self { state, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn create(
        state: &Mutex<OpsgenieState>,
        per_second: usize,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        if let Some(f) = st.script.pop_front() {
            return fault_response(&f);
        }
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("GenieKey {GENIE_KEY}"))
        {
            return genie_error(StatusCode::UNAUTHORIZED, "Could not authenticate", None);
        }
        let now = Instant::now();
        while st
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            st.window.pop_front();
        }
        if st.window.len() >= per_second {
            st.throttled += 1;
            return genie_error(
                StatusCode::TOO_MANY_REQUESTS,
                "You are making too many requests! To avoid errors, we recommend you limit requests.",
                None,
            );
        }
        st.window.push_back(now);
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return genie_error(
                StatusCode::BAD_REQUEST,
                "Could not parse request body",
                None,
            );
        };
        let message = v["message"].as_str().unwrap_or("");
        let mut errors = serde_json::Map::new();
        if message.is_empty() {
            errors.insert("message".into(), json!("Message can not be empty."));
        } else if message.chars().count() > 130 {
            errors.insert(
                "message".into(),
                json!("Message can not be longer than 130 characters."),
            );
        }
        if let Some(p) = v.get("priority")
            && !matches!(p.as_str(), Some("P1" | "P2" | "P3" | "P4" | "P5"))
        {
            errors.insert(
                "priority".into(),
                json!("Priority should be one of [P1, P2, P3, P4, P5]"),
            );
        }
        let alias = v["alias"].as_str().unwrap_or(message).to_owned();
        if alias.chars().count() > 512 {
            errors.insert(
                "alias".into(),
                json!("Alias can not be longer than 512 characters."),
            );
        }
        if !errors.is_empty() {
            return genie_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Request body is not processable. Please check the errors.",
                Some(Value::Object(errors)),
            );
        }
        let key = v
            .pointer("/details/occurrence_key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        st.accepted_keys.push(key);
        st.alerts
            .entry(alias)
            .and_modify(|a| a.count += 1)
            .or_insert(Alert { body: v, count: 1 });
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({"result": "Request will be processed", "took": 0.107, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"})),
        )
            .into_response()
    }

    fn alerts(&self) -> BTreeMap<String, Alert> {
        self.state.lock().unwrap().alerts.clone()
    }

    fn accepted_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted_keys.clone()
    }

    /// The occurrence key of each open alert: what Opsgenie holds.
    fn alert_keys(&self) -> Vec<String> {
        self.alerts()
            .values()
            .map(|a| {
                a.body["details"]["occurrence_key"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn script(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(faults.iter().cloned());
    }
}

// ---- Teams ----

/// Requests arriving this soon after a 429 was answered were sent before the exporter read it:
/// with several requests in flight, they are on their way already.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(100);

#[derive(Default)]
struct TeamsState {
    cards: Vec<Value>,
    requests: usize,
    throttled: usize,
    too_large: usize,
    window: VecDeque<Instant>,
    /// When the last 429 was answered, and when it said to come back.
    told_at: Option<Instant>,
    hold_until: Option<Instant>,
    /// Requests that came before Retry-After had passed, and after the exporter had the 429 (a
    /// request already on its way when another one was told to wait is not early).
    early: usize,
    script: VecDeque<Fault>,
}

#[derive(Clone)]
struct FakeTeams {
    state: Arc<Mutex<TeamsState>>,
    addr: SocketAddr,
}

/// The keys of a card, read from its "occurrence …" lines and its "N more not shown: …" note.
fn card_keys(card: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let body = card
        .pointer("/attachments/0/content/body")
        .and_then(Value::as_array)
        .expect("an adaptive card body");
    for el in body {
        for it in el["items"].as_array().into_iter().flatten() {
            if let Some(k) = it["text"]
                .as_str()
                .and_then(|t| t.strip_prefix("occurrence "))
            {
                out.push(k.to_owned());
            }
        }
        if let Some((_, rest)) = el["text"]
            .as_str()
            .and_then(|t| t.split_once(" more not shown: "))
        {
            let list = rest.split(" Shortened").next().unwrap();
            out.extend(list.split(", ").map(str::to_owned));
        }
    }
    out
}

impl FakeTeams {
    /// A Workflows webhook taking `per_second` requests per second (429 with Retry-After: 1
    /// beyond) and bodies up to `max_bytes` (413 beyond).
    async fn start(per_second: usize, max_bytes: usize) -> Self {
        let state = Arc::new(Mutex::new(TeamsState::default()));
        let s = state.clone();
        let post = move |Query(q): Query<HashMap<String, String>>, body: Bytes| {
            let state = s.clone();
            async move { Self::post(&state, per_second, max_bytes, &q, &body) }
        };
        let app = axum::Router::new().route(
            "/workflows/{id}/triggers/manual/paths/invoke",
            axum::routing::post(post),
        );
        let addr = serve(app).await;
        Self { state, addr }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/workflows/4f2a/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s1gn4ture",
            self.addr
        )
    }

    fn post(
        state: &Mutex<TeamsState>,
        per_second: usize,
        max_bytes: usize,
        q: &HashMap<String, String>,
        body: &[u8],
    ) -> Response {
        let mut st = state.lock().unwrap();
        st.requests += 1;
        let now = Instant::now();
        if let Some(f) = st.script.pop_front() {
            return fault_response(&f);
        }
        if q.get("sig").map(String::as_str) != Some("s1gn4ture") {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"code": "DirectApiAuthorizationRequired", "message": "The request must be authenticated"}})),
            )
                .into_response();
        }
        if st.hold_until.is_some_and(|t| now < t)
            && st
                .told_at
                .is_some_and(|t| now.duration_since(t) > IN_FLIGHT_GRACE)
        {
            st.early += 1;
        }
        while st
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            st.window.pop_front();
        }
        if st.window.len() >= per_second {
            st.throttled += 1;
            if st.hold_until.is_none_or(|t| now >= t) {
                st.told_at = Some(now);
                st.hold_until = Some(now + Duration::from_secs(1));
            }
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "").into_response();
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
        st.window.push_back(now);
        if body.len() > max_bytes {
            st.too_large += 1;
            return (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large").into_response();
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
        };
        let card = &v["attachments"][0];
        if v["type"] != "message"
            || card["contentType"] != "application/vnd.microsoft.card.adaptive"
            || card["content"]["type"] != "AdaptiveCard"
        {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"code": "InvalidRequestContent", "message": "not an adaptive card message"}})),
            )
                .into_response();
        }
        st.cards.push(v);
        StatusCode::ACCEPTED.into_response()
    }

    fn cards(&self) -> Vec<Value> {
        self.state.lock().unwrap().cards.clone()
    }

    fn keys(&self) -> Vec<String> {
        self.cards().iter().flat_map(card_keys).collect()
    }
}

// ---- the exporter ----

/// An exporter in this process (no leader election) routing everything to `receiver` (a
/// receiver list item named `r`, indented by 2).
async fn exporter(sim: &SimHandle, dir: &std::path::Path, receiver: &str) -> Running {
    let text = format!(
        "omitLookup: true\nmaxEventAgeSeconds: 86400\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: r\nreceivers:\n{receiver}"
    );
    let cfg = kube_event_exporter::config::parse(&text, &|_| None)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir).await;
    common::until_watching(sim).await;
    run
}

/// An event in `ns` created now; its key.
fn event(sim: &SimHandle, ns: &str, message: &str) -> String {
    let ts = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let e = sim
        .create_event(
            ns,
            json!({"metadata": {"generateName": "ev-"},
                   "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns, "apiVersion": "v1"},
                   "reason": "BackOff", "type": "Warning", "count": 1, "message": message,
                   "firstTimestamp": ts, "lastTimestamp": ts}),
        )
        .unwrap();
    format!("{}:1", e["metadata"]["uid"].as_str().unwrap())
}

async fn wait_keys(what: &str, have: impl Fn() -> Vec<String>, want: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got: BTreeSet<String> = have().into_iter().collect();
        let missing = want.iter().filter(|k| !got.contains(*k)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, {what} still lacks {missing} of {} keys",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(run: &Running, name: &str) -> f64 {
    run.metric(&format!("kube_event_exporter_{name}"))
}

const FAST_RETRY: &str = "    retry: {initialBackoff: 50ms, maxBackoff: 2s}\n";

// ---- Slack tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_folds_a_burst_into_digests_never_exceeds_one_message_per_second_per_channel_and_loses_nothing()
 {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n    slack:\n      token: {SLACK_TOKEN}\n      apiURL: {}\n      channel: '#{{{{ .Namespace }}}}'\n      message: '{{{{ .Reason }}}} {{{{ .InvolvedObject.Name }}}}: {{{{ .Message }}}}'\n      fields: {{reason: '{{{{ .Reason }}}}'}}\n",
            slack.api_url()
        ),
    )
    .await;
    let started = Instant::now();
    // 800 occurrences in about 2 s over 6 namespaces: more than 60 per second per channel, where
    // Slack takes one message per second.
    let g = scenarios::generate(&sim, 400.0, 800, 31);
    g.wait().await;
    let want = g.generated();
    wait_keys("slack", || slack.keys(), &want, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let d = Delivery::compare(&want, &slack.keys());
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(
        slack.rate_limited(),
        0,
        "a 429 in steady state: the exporter must pace itself"
    );
    assert_eq!(metric(&run, "sink_retried_total"), 0.0);
    let posts = slack.posts();
    let channels: BTreeSet<&str> = posts.iter().map(|p| p.channel.as_str()).collect();
    // At most one message per channel per second (plus the first).
    let bound = channels.len() * (elapsed.as_secs() as usize + 2);
    assert!(
        posts.len() <= bound,
        "{} messages for {} channels in {elapsed:?}",
        posts.len(),
        channels.len()
    );
    assert_eq!(metric(&run, "sink_messages_total"), posts.len() as f64);
    assert_eq!(metric(&run, "sink_rate_limited_total"), 0.0);
    let digests: Vec<&SlackPost> = posts.iter().filter(|p| p.keys.len() > 1).collect();
    assert!(!digests.is_empty(), "a burst becomes digests");
    for p in &digests {
        assert!(
            p.text.starts_with(&format!("*{} events*", p.keys.len())),
            "{}",
            p.text
        );
        assert!(p.attachments.is_none(), "a digest has no attachment");
    }
    for p in posts.iter().filter(|p| p.keys.len() == 1) {
        assert_eq!(
            p.attachments.as_ref().unwrap()[0]["fields"][0]["title"],
            "reason"
        );
    }
    eprintln!(
        "slack: {} occurrences in {} messages ({} digests, largest {}) to {} channels in {elapsed:?}",
        want.len(),
        posts.len(),
        digests.len(),
        posts.iter().map(|p| p.keys.len()).max().unwrap_or(0),
        channels.len()
    );
    run.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_ok_false_fails_only_that_channel_and_slacks_transient_errors_are_retried() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_millis(100)).await;
    // The first post is refused with a transient error, the second with a 500: both retried.
    slack.script(&[
        Fault::OkFalse("internal_error"),
        Fault::Status(500, None, ""),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n{FAST_RETRY}    slack:\n      token: {SLACK_TOKEN}\n      apiURL: {}\n      channel: '#{{{{ .Namespace }}}}'\n      minInterval: 100ms\n",
            slack.api_url()
        ),
    )
    .await;
    let ok: Vec<String> = (0..3)
        .map(|i| event(&sim, "ops", &format!("m{i}")))
        .collect();
    let lost: Vec<String> = (0..2)
        .map(|i| event(&sim, "gone", &format!("g{i}")))
        .collect();
    wait_keys("slack", || slack.keys(), &ok, Duration::from_secs(30)).await;
    common::eventually(
        Duration::from_secs(30),
        "the #gone occurrences to fail",
        || metric(&run, "sink_failed_total") == lost.len() as f64,
    )
    .await;
    let have: BTreeSet<String> = slack.keys().into_iter().collect();
    assert!(lost.iter().all(|k| !have.contains(k)));
    assert!(metric(&run, "sink_retried_total") >= 1.0);
    assert!(
        slack.state.lock().unwrap().script.is_empty(),
        "both faults were answered"
    );
    assert_eq!(metric(&run, "sink_sent_total"), ok.len() as f64);
    run.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_holds_the_channel_for_retry_after() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_millis(100)).await;
    slack.script(&[Fault::Status(429, Some(2), "")]);
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n{FAST_RETRY}    slack:\n      token: {SLACK_TOKEN}\n      apiURL: {}\n      channel: '#alerts'\n      minInterval: 100ms\n",
            slack.api_url()
        ),
    )
    .await;
    let want = vec![event(&sim, "ops", "m")];
    wait_keys("slack", || slack.keys(), &want, Duration::from_secs(30)).await;
    let arrivals = slack.state.lock().unwrap().arrivals.clone();
    assert_eq!(arrivals[0].2, 429);
    let gap = arrivals[1].1.duration_since(arrivals[0].1);
    assert!(
        gap >= Duration::from_secs(2),
        "retried {gap:?} after a 429 with Retry-After: 2"
    );
    run.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_incoming_webhook_gets_every_key_and_its_4xx_reason_is_permanent() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n{FAST_RETRY}    slack:\n      webhook: {}\n      color: danger\n",
            slack.webhook_url()
        ),
    )
    .await;
    let g = scenarios::generate(&sim, 200.0, 200, 32);
    g.wait().await;
    let want = g.generated();
    wait_keys(
        "slack webhook",
        || slack.keys(),
        &want,
        Duration::from_secs(30),
    )
    .await;
    let d = Delivery::compare(&want, &slack.keys());
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(slack.rate_limited(), 0);
    // A channel archived under the webhook: Slack's 410 with its reason fails the message.
    slack.script(&[Fault::Status(410, None, "channel_is_archived")]);
    let failed = event(&sim, "ops", "x");
    common::eventually(
        Duration::from_secs(20),
        "the refused message to fail",
        || metric(&run, "sink_failed_total") == 1.0,
    )
    .await;
    assert!(!slack.keys().contains(&failed));
    run.stop(Duration::from_secs(10)).await;
}

// ---- Opsgenie tests ----

fn opsgenie_receiver(url: &str, key: &str, extra: &str) -> String {
    format!(
        "  - name: r\n{FAST_RETRY}    opsgenie:\n      apiKey: {key}\n      URL: {url}\n      priority: '{{{{ if eq .Type \"Warning\" }}}}P2{{{{ else }}}}P4{{{{ end }}}}'\n      tags: [kube, '{{{{ .Reason }}}}']\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_creates_one_alert_per_occurrence_with_its_priority_and_a_replay_is_deduplicated_by_alias()
 {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // Throttled at 100 alerts per second: the 429s are retried.
    let og = FakeOpsgenie::start(100).await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = opsgenie_receiver(&og.url(), GENIE_KEY, "");
    let run = exporter(&sim, dir.path(), &receiver).await;
    let g = scenarios::generate(&sim, 400.0, 400, 33);
    g.wait().await;
    let want = g.generated();
    wait_keys(
        "opsgenie",
        || og.alert_keys(),
        &want,
        Duration::from_secs(60),
    )
    .await;
    let throttled = og.state.lock().unwrap().throttled;
    assert_eq!(metric(&run, "sink_rate_limited_total"), throttled as f64);
    assert_eq!(metric(&run, "sink_messages_total"), want.len() as f64);
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &og.alert_keys());
    assert!(d.is_exact(), "{}", d.summary());
    assert!(throttled > 0, "the burst met the rate limit");
    for (alias, a) in og.alerts() {
        assert_eq!(
            alias, a.body["details"]["occurrence_key"],
            "alias = occurrence key"
        );
        let warning = a.body["message"].as_str().unwrap().starts_with("Warning ");
        assert_eq!(a.body["priority"], if warning { "P2" } else { "P4" });
        assert_eq!(a.body["tags"][0], "kube");
    }
    // A successor replays (a cold start re-exports every event at its current count): the
    // same aliases, so Opsgenie raises counts instead of opening second alerts.
    let before = og.alerts().len();
    let dir2 = tempfile::tempdir().unwrap();
    let run2 = exporter(&sim, dir2.path(), &receiver).await;
    common::eventually(Duration::from_secs(30), "the replay", || {
        og.alerts().values().any(|a| a.count > 1)
    })
    .await;
    run2.stop(Duration::from_secs(10)).await;
    assert_eq!(og.alerts().len(), before, "a replay opened no new alert");
    eprintln!(
        "opsgenie: {} alerts, {} throttled requests retried, {} create requests accepted",
        before,
        throttled,
        og.accepted_keys().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_validation_errors_fail_one_alert_and_a_bad_key_fails_the_batch_without_retrying()
{
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let og = FakeOpsgenie::start(1000).await;
    og.script(&[Fault::Status(422, None, r#"{"message":"Request body is not processable. Please check the errors.","errors":{"responders":"Responder not found"},"took":0.0,"requestId":"r"}"#)]);
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &opsgenie_receiver(&og.url(), GENIE_KEY, ""),
    )
    .await;
    let refused = event(&sim, "ops", "first");
    let ok = event(&sim, "ops", "second");
    wait_keys(
        "opsgenie",
        || og.alert_keys(),
        std::slice::from_ref(&ok),
        Duration::from_secs(30),
    )
    .await;
    common::eventually(Duration::from_secs(10), "the 422 to be counted", || {
        metric(&run, "sink_failed_total") == 1.0
    })
    .await;
    assert!(!og.alert_keys().contains(&refused));
    assert_eq!(
        metric(&run, "sink_retried_total"),
        0.0,
        "a 422 is not retried"
    );
    run.stop(Duration::from_secs(10)).await;

    // A wrong key: 401 for the first alert of a batch, the rest failed without a request each.
    let og = FakeOpsgenie::start(1000).await;
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &opsgenie_receiver(&og.url(), "not-the-key", "").replace(
            FAST_RETRY,
            &format!("{FAST_RETRY}    batch: {{maxEvents: 10, maxWait: 1s}}\n"),
        ),
    )
    .await;
    let n = sim.list_events().len();
    for i in 0..5 {
        event(&sim, "ops", &format!("k{i}"));
    }
    common::eventually(Duration::from_secs(20), "every occurrence to fail", || {
        metric(&run, "sink_failed_total") == (n + 5) as f64
    })
    .await;
    let requests = og.state.lock().unwrap().requests;
    assert!(
        requests < n + 5,
        "{requests} requests for {} occurrences: a 401 stops the batch",
        n + 5
    );
    assert_eq!(metric(&run, "sink_retried_total"), 0.0);
    run.stop(Duration::from_secs(10)).await;
}

// ---- Teams tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_delivers_every_key_in_cards_honours_429_retry_after_and_shortens_oversized_cards() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // Four requests per second, as Teams' webhooks; 28 KB.
    let teams = FakeTeams::start(4, 28 * 1024).await;
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n{FAST_RETRY}    teams:\n      endpoint: '{}'\n",
            teams.url()
        ),
    )
    .await;
    let g = scenarios::generate(&sim, 300.0, 300, 34);
    let big = event(&sim, "ops", &"x".repeat(200_000));
    g.wait().await;
    let mut want = g.generated();
    want.push(big.clone());
    wait_keys("teams", || teams.keys(), &want, Duration::from_secs(60)).await;
    let (throttled, cards) = {
        let st = teams.state.lock().unwrap();
        (st.throttled, st.cards.len())
    };
    assert_eq!(metric(&run, "sink_rate_limited_total"), throttled as f64);
    assert_eq!(metric(&run, "sink_messages_total"), cards as f64);
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &teams.keys());
    assert!(d.is_exact(), "{}", d.summary());
    let st = teams.state.lock().unwrap();
    assert_eq!(st.early, 0, "a request came before Retry-After had passed");
    assert_eq!(st.too_large, 0);
    let card = st
        .cards
        .iter()
        .find(|c| card_keys(c).contains(&big))
        .expect("the big event's card");
    let text = card.to_string();
    assert!(
        text.contains("Shortened to fit Teams' message size limit"),
        "{text:.300}"
    );
    eprintln!(
        "teams: {} occurrences in {} cards, {} throttled requests",
        want.len(),
        st.cards.len(),
        st.throttled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_413_shrinks_the_card_instead_of_failing_again_and_again() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // An endpoint that takes 8 KB at most: the first card (20 KB budget) is refused, and sent
    // again at once at half the budget (and half again if need be) until it fits.
    let teams = FakeTeams::start(100, 8 * 1024).await;
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &format!(
            "  - name: r\n{FAST_RETRY}    teams:\n      endpoint: '{}'\n",
            teams.url()
        ),
    )
    .await;
    let want = vec![event(&sim, "ops", &"y".repeat(50_000))];
    wait_keys("teams", || teams.keys(), &want, Duration::from_secs(30)).await;
    let refused = teams.state.lock().unwrap().too_large;
    assert!(refused >= 1, "the first card was over the endpoint's limit");
    assert_eq!(metric(&run, "sink_failed_total"), 0.0);
    assert_eq!(
        metric(&run, "sink_retried_total"),
        0.0,
        "shrunk within the attempt, not retried"
    );
    // The smaller budget is kept: the next big card fits at once.
    let next = vec![event(&sim, "ops", &"z".repeat(50_000))];
    wait_keys("teams", || teams.keys(), &next, Duration::from_secs(30)).await;
    assert_eq!(teams.state.lock().unwrap().too_large, refused);
    run.stop(Duration::from_secs(10)).await;
}

// ---- check-config ----

fn check_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resmoios_readme_examples_and_ours_pass_check_config_without_connecting() {
    // resmoio's README examples, verbatim (hosts that do not resolve here: nothing connects).
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "slack"
        - receiver: "alerts"
        - receiver: "ms_teams"
receivers:
  - name: "alerts"
    opsgenie:
      apiKey: xxx
      priority: "P3"
      message: "Event {{ .Reason }} for {{ .InvolvedObject.Namespace }}/{{ .InvolvedObject.Name }} on K8s cluster"
      alias: "{{ .UID }}"
      description: "<pre>{{ toPrettyJson . }}</pre>"
      tags:
        - "event"
        - "{{ .Reason }}"
        - "{{ .InvolvedObject.Kind }}"
        - "{{ .InvolvedObject.Name }}"
  - name: "slack"
    slack:
      token: YOUR-API-TOKEN-HERE
      channel: "@{{ .InvolvedObject.Labels.owner }}"
      message: "{{ .Message }}"
      color: # optional
      title: # optional
      author_name: # optional
      footer: # optional
      fields:
        namespace: "{{ .Namespace }}"
        reason: "{{ .Reason }}"
        object: "{{ .Namespace }}"

  - name: "ms_teams"
    teams:
      endpoint: "https://outlook.office.com/webhook/..."
      layout: # Optional
"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("slack"),
        "no warning for the Slack example: {err}"
    );
    assert!(
        err.contains("receivers[2].teams.endpoint: is an Office 365 connector"),
        "{err}"
    );
    for example in ["slack", "teams", "opsgenie"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("examples/{example}.yaml"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
            .args(["check-config", "--config"])
            .arg(&path)
            .env("SLACK_BOT_TOKEN", "xoxb-ci-placeholder")
            .env("OPSGENIE_API_KEY", "ci-placeholder")
            .env("TEAMS_WORKFLOW_SIG", "ci-placeholder")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_invalid_priority_or_template_fails_check_config_naming_the_key() {
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: o\nreceivers:\n  - name: o\n    opsgenie:\n      apiKey: k\n      priority: critical\n      message: '{{ .Reason'\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].opsgenie.priority: expected P1, P2, P3, P4 or P5"),
        "{err}"
    );
    assert!(err.contains("receivers[0].opsgenie.message:"), "{err}");
}

// ---- handovers: real exporter processes (tests/common/scenarios.rs) against the in-test services ----

fn slack_handover_receiver(slack: &FakeSlack) -> String {
    format!(
        "  - name: slack\n    batch: {{maxEvents: 500}}\n    slack:\n      token: {SLACK_TOKEN}\n      apiURL: {}\n      channel: '#{{{{ .Namespace }}}}'\n",
        slack.api_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_graceful_handover_loses_and_duplicates_nothing() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_secs(1)).await;
    let o = common::scenarios::graceful_handover(
        &sim,
        &slack_handover_receiver(&slack),
        "slack",
        &|| slack.keys(),
        51,
    )
    .await;
    eprintln!(
        "slack graceful handover: {}; {} messages, {} answered 429",
        o.delivery.summary(),
        slack.posts().len(),
        slack.rate_limited()
    );
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_sigkill_of_the_leader_loses_nothing_and_duplicates_at_most_a_retry_period_and_a_digest()
 {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let slack = FakeSlack::start(Duration::from_secs(1)).await;
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &slack_handover_receiver(&slack),
        "slack",
        &|| slack.keys(),
        52,
    )
    .await;
    // A digest holds up to a second (minInterval) of occurrences, plus batch.maxWait.
    o.assert_no_loss_and_bounded_duplicates("slack SIGKILL", Duration::from_millis(1200));
}

fn opsgenie_handover_receiver(og: &FakeOpsgenie) -> String {
    format!(
        "  - name: opsgenie\n    opsgenie:\n      apiKey: {GENIE_KEY}\n      URL: {}\n",
        og.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_graceful_handover_opens_one_alert_per_occurrence() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let og = FakeOpsgenie::start(10_000).await;
    let o = common::scenarios::graceful_handover(
        &sim,
        &opsgenie_handover_receiver(&og),
        "opsgenie",
        &|| og.alert_keys(),
        53,
    )
    .await;
    eprintln!("opsgenie graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    let requests = og.accepted_keys().len();
    assert_eq!(
        requests, o.delivery.generated,
        "no create request was repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_sigkill_of_the_leader_loses_nothing_and_the_replay_opens_no_second_alert() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let og = FakeOpsgenie::start(10_000).await;
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &opsgenie_handover_receiver(&og),
        "opsgenie",
        &|| og.alert_keys(),
        54,
    )
    .await;
    let replayed = og.accepted_keys().len() - o.delivery.generated;
    eprintln!(
        "opsgenie SIGKILL: alerts {}; {replayed} create requests replayed, deduplicated by alias",
        o.delivery.summary()
    );
    // What Opsgenie holds: each occurrence once, the replays counted on the open alerts.
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    let counted: u32 = og.alerts().values().map(|a| a.count - 1).sum();
    assert_eq!(counted as usize, replayed);
}

fn teams_handover_receiver(teams: &FakeTeams) -> String {
    format!(
        "  - name: teams\n    batch: {{maxEvents: 25}}\n    teams:\n      endpoint: '{}'\n",
        teams.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_graceful_handover_loses_and_duplicates_nothing() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let teams = FakeTeams::start(20, 28 * 1024).await;
    let o = common::scenarios::graceful_handover(
        &sim,
        &teams_handover_receiver(&teams),
        "teams",
        &|| teams.keys(),
        55,
    )
    .await;
    eprintln!("teams graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_sigkill_of_the_leader_loses_nothing_and_duplicates_at_most_a_retry_period_and_a_card()
 {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let teams = FakeTeams::start(20, 28 * 1024).await;
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &teams_handover_receiver(&teams),
        "teams",
        &|| teams.keys(),
        56,
    )
    .await;
    o.assert_no_loss_and_bounded_duplicates("teams SIGKILL", Duration::from_millis(200));
}
