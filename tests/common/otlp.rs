//! An OTLP/HTTP logs endpoint for the otlp receiver's tests: `otlp_endpoint.py` on the OpenTelemetry
//! project's generated Python classes (PyPI `opentelemetry-proto`, pinned) and protobuf's own JSON
//! parser, so what the exporter sends is decoded by code that is not ours. Each test starts its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pyservers::{PyPackage, Ready, Server, ServerSpec};

const OTLP_PROTO: PyPackage = PyPackage {
    spec: "opentelemetry-proto==1.45.2",
    binary: "python",
};

/// One stored log record, flattened by the endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub resource: Map<String, Value>,
    pub scope: Value,
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: Value,
    pub attributes: Map<String, Value>,
}

impl Record {
    /// `{k8s.event.uid}:{k8s.event.count}`, after checking that `k8s.event.occurrence_key` says
    /// the same.
    pub fn key(&self) -> String {
        let uid = self.attributes["k8s.event.uid"]
            .as_str()
            .unwrap_or_default();
        let count = self.attributes["k8s.event.count"].as_i64().unwrap_or(-1);
        let key = format!("{uid}:{count}");
        assert_eq!(
            self.attributes.get("k8s.event.occurrence_key"),
            Some(&Value::String(key.clone())),
            "{self:?}"
        );
        key
    }
}

/// One request as the endpoint saw it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub at: f64,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub headers: Map<String, Value>,
    pub status: u16,
    pub records: usize,
    #[serde(default)]
    pub error: Option<String>,
}

pub struct OtlpEndpoint {
    server: Server,
    client: reqwest::Client,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/otlp_endpoint.py")
}

impl OtlpEndpoint {
    pub fn start() -> Self {
        let python = OTLP_PROTO.install();
        let script = script();
        let spec = ServerSpec::new(
            python,
            &[&script.to_string_lossy(), "--port", "{port}"],
            Ready::Http("/"),
        );
        Self {
            server: spec.start(),
            client: reqwest::Client::new(),
        }
    }

    /// The base URL, as an `endpoint:` is written (the exporter appends `/v1/logs`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> T {
        let resp = self
            .client
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}; {}", self.server.log_tail()));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
    }

    pub async fn records(&self) -> Vec<Record> {
        self.get("/records").await
    }

    pub async fn keys(&self) -> Vec<String> {
        self.records().await.iter().map(Record::key).collect()
    }

    pub async fn requests(&self) -> Vec<Request> {
        self.get("/requests").await
    }

    /// The next `times` requests are answered `status`, with `Retry-After: retry_after` if set.
    pub async fn fail(&self, status: u16, times: usize, retry_after: Option<&str>) {
        let mut f =
            json!({"status": status, "times": times, "message": format!("scripted {status}")});
        if let Some(r) = retry_after {
            f["retryAfter"] = json!(r);
        }
        self.post("/admin/fail", f).await;
    }

    /// The next successful request keeps all but its last `reject` records and says so.
    pub async fn partial(&self, reject: usize, message: &str) {
        self.post(
            "/admin/partial",
            json!({"reject": reject, "message": message}),
        )
        .await;
    }

    /// Waits until every key of `want` is stored; panics naming how many are missing.
    pub async fn wait_for(&self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let have: std::collections::BTreeSet<String> = self.keys().await.into_iter().collect();
            let missing = want.iter().filter(|k| !have.contains(*k)).count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {limit:?} the OTLP endpoint still lacks {missing} of {} records; requests: {:?}",
                want.len(),
                self.requests()
                    .await
                    .iter()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
