//! Google Cloud receivers: `pubsub` (topics:publish), `bigquery` (tabledata.insertAll) and
//! `cloudLogging` (entries:write), over the REST APIs with the shared credentials of [`auth`].
//!
//! Each is an `http::batch::BatchApi` (its limits, entries, request and answer). What they share
//! here: the keys every kind's config has ([`GoogleCommon`]: the key-file key, the `endpoint`
//! override for tests and private endpoints, `layout`, `deDot`), the authenticated JSON POST, a
//! request's JSON envelope, and how a whole-request answer is classified (as every HTTP answer,
//! `http::answer`, with Google's error body `{"error": {"code", "message", "status"}}` as its
//! detail; a 401 is retried too, after dropping the cached token).

pub mod auth;
pub mod bigquery;
pub mod logging;
pub mod pubsub;

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use self::auth::{CredentialSource, Tokens};
use super::Doc;
use super::SendError;
use super::http::Endpoint;
pub use super::http::answer::Answer;
use super::http::answer::classify;
use super::http::batch::{BatchApi, BatchSink};
use super::kind::{BuildEnv, Problem};
use super::layout::Encoding;
use super::partial::{Limits, Outcomes};
use super::tls::TlsConfig;
use crate::config::yaml::{Ctx, Fields};

/// What one request to any of the three APIs may carry: 1000 messages (Pub/Sub) or entries
/// (Logging), and 10 MB, less room for the envelope. BigQuery's rows per request are its
/// `batch_size`.
pub const LIMITS: Limits = Limits {
    entries: 1000,
    bytes: 9_500_000,
};

/// The label / attribute that carries the occurrence key.
pub const OCCURRENCE_KEY: &str = "occurrence_key";

/// The process environment, as the kinds read it when they are checked and built.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An optional `endpoint` override: an http(s) URL with a host, no query.
pub fn parse_endpoint(ctx: &mut Ctx, f: &Fields) -> Option<String> {
    let e = ctx.opt_string(f, "endpoint")?;
    if let Err(why) = super::http::check_url(&e) {
        ctx.error(
            &f.path("endpoint"),
            f.get("endpoint").map_or(f.line, |n| n.line),
            why,
        );
        return None;
    }
    Some(e.trim_end_matches('/').to_owned())
}

/// The keys every Google kind has for reaching its API: the key file (`credentialsFile`,
/// bigquery's `credentials_path`) and the `endpoint` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// None: `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server.
    pub credentials_file: Option<String>,
    /// The kind's key-file key, for problems.
    pub key_file: &'static str,
    /// None: the API's own endpoint.
    pub endpoint: Option<String>,
}

impl Access {
    pub fn parse(ctx: &mut Ctx, f: &Fields, key_file: &'static str) -> Access {
        Access {
            credentials_file: ctx.opt_string(f, key_file),
            key_file,
            endpoint: parse_endpoint(ctx, f),
        }
    }

    /// The API at `endpoint`, else at `default`, with the credentials of the key file, the
    /// environment or the metadata server.
    pub fn api(&self, default: &str, env: &BuildEnv) -> Result<Api, Vec<Problem>> {
        let creds = CredentialSource::resolve(self.credentials_file.as_deref(), &process_env);
        self.api_at(self.endpoint.as_deref().unwrap_or(default), &creds, env)
    }

    pub fn api_at(
        &self,
        base: &str,
        creds: &CredentialSource,
        env: &BuildEnv,
    ) -> Result<Api, Vec<Problem>> {
        Api::build(base, creds, self.key_file, env.delivery.timeout)
    }
}

/// What every Google kind's config has besides its own resource: how it reaches its API and how
/// occurrences become documents. Each kind's config embeds it (`common`), so the three parse and
/// read these keys one way.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleCommon {
    pub access: Access,
    /// `layout` and `deDot`.
    pub encoding: Encoding,
}

impl GoogleCommon {
    /// The keys [`GoogleCommon::parse`] reads besides the key file, whose name is the kind's own
    /// (resmoio's bigquery has `credentials_path`): the end of each Google kind's `KEYS`.
    pub const KEYS: &[&str] = &["endpoint", "layout", "deDot"];

    /// The key file under `key_file`, `endpoint`, `layout` and `deDot`. Every problem goes to
    /// `ctx`; `None` when the layout has one.
    pub fn parse(ctx: &mut Ctx, f: &Fields, key_file: &'static str) -> Option<Self> {
        let access = Access::parse(ctx, f, key_file);
        let encoding = Encoding::parse(ctx, f, true)?;
        Some(GoogleCommon { access, encoding })
    }
}

/// A required resource name (project, topic, dataset…): no `/`, not empty.
pub fn parse_name(ctx: &mut Ctx, f: &Fields, key: &str, required: bool) -> Option<String> {
    let v = ctx.opt_string(f, key);
    match &v {
        None if required => ctx.error(&f.path(key), f.line, "is required"),
        Some(s) if s.contains('/') || s.chars().any(char::is_whitespace) => {
            ctx.error(
                &f.path(key),
                f.get(key).map_or(f.line, |n| n.line),
                format!("{s:?} is a name, without '/' or spaces"),
            );
            return None;
        }
        _ => {}
    }
    v
}

/// An authenticated JSON API: its client, base URL and tokens. Clones share the connections
/// and the token cache.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    tokens: Tokens,
}

impl Api {
    /// `key_path` is the key-file key's value when the receiver sets it (the `key` in problems).
    pub fn build(
        base: &str,
        credentials: &CredentialSource,
        key: &'static str,
        timeout: Duration,
    ) -> Result<Api, Vec<Problem>> {
        let mut problems = Vec::new();
        let ep = Endpoint::build(base, &TlsConfig::default(), timeout);
        let tokens = Tokens::build(credentials, timeout);
        if let Err(why) = &tokens {
            let key = match credentials {
                CredentialSource::KeyFile { from_env: true, .. } => {
                    "GOOGLE_APPLICATION_CREDENTIALS"
                }
                _ => key,
            };
            problems.push((key, why.clone()));
        }
        match (ep, tokens) {
            (Ok(ep), Ok(tokens)) if problems.is_empty() => Ok(Api {
                client: ep.client,
                base: base.trim_end_matches('/').to_owned(),
                tokens,
            }),
            (Err(p), _) => {
                problems.extend(p);
                Err(problems)
            }
            _ => Err(problems),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn tokens(&mut self) -> &mut Tokens {
        &mut self.tokens
    }

    /// Sends `body` (JSON) with `method` to `base + path`. Transport errors are transient; the
    /// answer is returned whatever its status (a 401 also drops the cached token).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, SendError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(auth) = self.tokens.authorization().await? {
            req = req.header(AUTHORIZATION, auth);
        }
        let answer = Answer::send(&format!("{method} {url}"), req).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            self.tokens.invalidate();
        }
        Ok(answer)
    }
}

#[derive(Deserialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Deserialize)]
pub struct ErrorInfo {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

/// A failed answer to the whole request, classified as every HTTP answer is, with Google's
/// status and message; a 401 is retried too (the cached token was dropped: the next attempt
/// gets a new one).
pub fn whole_request_error(what: &str, a: &Answer) -> SendError {
    let detail = match serde_json::from_slice::<ErrorBody>(&a.body) {
        Ok(e) => format!("{} {}", e.error.status, e.error.message),
        Err(_) => a.text().into_owned(),
    };
    match classify(what, a.status, &a.headers, &detail) {
        Err(SendError::Permanent { reason }) if a.status == StatusCode::UNAUTHORIZED => {
            SendError::Transient {
                reason,
                retry_after: None,
            }
        }
        Err(e) => e,
        Ok(()) => SendError::Transient {
            reason: format!("{what} answered {}: not an error", a.status),
            retry_after: None,
        },
    }
}

/// A `google.rpc.Status` code for one item: transient when retrying can help.
pub fn rpc_code_is_transient(code: i64) -> bool {
    // DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE (and UNKNOWN).
    matches!(code, 2 | 4 | 8 | 10 | 13 | 14)
}

/// A request's JSON: `head`, the `items` separated by commas, `tail`.
pub fn envelope<'a>(
    head: &[u8],
    items: impl IntoIterator<Item = &'a Vec<u8>>,
    tail: &[u8],
) -> Vec<u8> {
    let mut body = head.to_vec();
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(tail);
    body
}

/// What one Google batch API says of itself; [`Google`] makes it a `BatchApi` (its entries are
/// JSON, its requests a POST of them in an envelope, its failures `SendError`s).
pub trait GoogleBatch: Clone + Send + Sync + 'static {
    /// What a send resolves once (a path, the cluster's place).
    type Target: Send + Sync;

    fn limits(&self) -> Limits {
        LIMITS
    }

    fn target<'a>(
        &'a mut self,
        api: &'a mut Api,
        batch: &'a [Doc],
    ) -> BoxFuture<'a, Result<Self::Target, SendError>>;

    /// One document's JSON.
    fn encode(&mut self, target: &Self::Target, doc: &Doc) -> Result<Vec<u8>, SendError>;

    /// Where a request goes, and the JSON before and after its entries.
    fn request(&self, target: &Self::Target) -> (String, Vec<u8>, &'static [u8]);

    /// Records in `outcomes` what `answer` says failed of `docs` (the request's documents, in
    /// order); `api` names where it went.
    fn read(&self, api: &Api, answer: Answer, batch: &[Doc], docs: &[usize], o: &mut Outcomes);
}

/// A Google batch API with its client and tokens, shared by the lanes.
#[derive(Clone)]
pub struct Google<K> {
    api: Api,
    kind: K,
}

impl<K: GoogleBatch> Google<K> {
    pub fn sink(api: Api, kind: K) -> BatchSink<Google<K>> {
        BatchSink::new(Google { api, kind })
    }
}

impl<K: GoogleBatch> BatchApi for Google<K> {
    type Target = K::Target;
    type Entry = Vec<u8>;
    type Answer = Answer;
    type Error = SendError;

    fn limits(&self) -> Limits {
        self.kind.limits()
    }

    fn target<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<K::Target, SendError>> {
        self.kind.target(&mut self.api, batch)
    }

    fn encode(&mut self, target: &K::Target, doc: &Doc) -> Result<(Vec<u8>, usize), SendError> {
        let entry = self.kind.encode(target, doc)?;
        // With the comma that separates it from the next.
        let size = entry.len() + 1;
        Ok((entry, size))
    }

    fn request<'a>(
        &'a self,
        target: &'a K::Target,
        entries: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Answer, SendError>> {
        let (path, head, tail) = self.kind.request(target);
        let body = envelope(&head, entries, tail);
        async move { self.api.call(Method::POST, &path, body).await }.boxed()
    }

    fn read(&self, answer: Answer, batch: &[Doc], docs: &[usize], outcomes: &mut Outcomes) {
        self.kind.read(&self.api, answer, batch, docs, outcomes);
    }

    fn failed(&mut self, e: SendError) -> SendError {
        e
    }
}

/// Writes `s` as a JSON string.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_request_answers_are_classified_with_googles_message() {
        let a = |code: u16, body: &str| Answer {
            status: StatusCode::from_u16(code).unwrap(),
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_owned()),
        };
        let err = r#"{"error":{"code":404,"message":"Resource not found (resource=t).","status":"NOT_FOUND"}}"#;
        match whole_request_error("publish", &a(404, err)) {
            SendError::Permanent { reason } => {
                assert!(reason.contains("NOT_FOUND Resource not found"), "{reason}")
            }
            e => panic!("{e:?}"),
        }
        for code in [401, 408, 429, 500, 503] {
            assert!(
                matches!(
                    whole_request_error("x", &a(code, "")),
                    SendError::Transient { .. }
                ),
                "{code}"
            );
        }
        assert!(matches!(
            whole_request_error("x", &a(403, "denied")),
            SendError::Permanent { .. }
        ));
    }
}
