//! A Loki push endpoint for tests and the benchmark: no Loki server installs here, so this one
//! speaks the real wire format and enforces Loki's rules, and a client that gets either wrong
//! fails against it.
//!
//! `POST /loki/api/v1/push`, as Loki 3's distributor and ingester take it:
//! - the body: protobuf (`logproto.PushRequest`) compressed with snappy's block format when the
//!   Content-Type is `application/x-protobuf` or absent, or the JSON form with
//!   `application/json`; `Content-Encoding` empty or `snappy`. The protobuf is decoded by hand
//!   here (field numbers of `pkg/push/push.proto`), independently of any client's encoder;
//! - labels in Prometheus syntax (`{a="b", c="d"}`, names `[a-zA-Z_][a-zA-Z0-9_]*`, escaped
//!   values), at least one, no duplicates, name/value length and count limits; empty values
//!   are dropped (`WithoutEmpty`);
//! - entries: too old (`reject_old_samples_max_age`, 1 week), too new (10 min grace), line too
//!   long (256 KB), structured metadata allowed or not; per stream, older than the newest entry
//!   minus the out-of-order window (`max_chunk_age / 2` = 1 h) is "too far behind", and with
//!   `unordered_writes: false` any step back in time is "out of order";
//! - an entry identical to one the stream already has (timestamp, line, structured metadata)
//!   is dropped: Loki does so at ingestion (the stream's last line, the head block) and at query
//!   time (its merge iterator), so a store read here is what a query returns;
//! - 204 when everything was stored; 400 with one reason per problem when something was not,
//!   the valid entries stored all the same; 422 for a push without streams; 401 without
//!   `X-Scope-OrgID` when multi-tenant (`auth_enabled`), or without the expected basic auth
//!   (the gateway in front of Loki).
//!
//! Faults (429 with `Retry-After`, 5xx) are injected per request.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// Loki's limits that the push path enforces, with Loki 3's defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_line_size: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_label_names_per_series: usize,
    pub reject_old_samples_max_age: Duration,
    pub creation_grace_period: Duration,
    /// `max_chunk_age / 2`.
    pub out_of_order_window: Duration,
    pub unordered_writes: bool,
    pub allow_structured_metadata: bool,
    pub max_structured_metadata_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_size: 256 * 1024,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 15,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(600),
            out_of_order_window: Duration::from_secs(3600),
            unordered_writes: true,
            allow_structured_metadata: true,
            max_structured_metadata_entries: 128,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LokiOptions {
    pub limits: Limits,
    /// `auth_enabled: true`: a push without `X-Scope-OrgID` is refused (401 "no org id").
    pub multi_tenant: bool,
    /// Basic auth a gateway in front of Loki requires: (username, password).
    pub basic_auth: Option<(String, String)>,
    /// Keep each entry whole (line, labels, every structured metadata field), as tests read
    /// them; otherwise only its `occurrence_key` and tenant are kept (the benchmark's millions).
    pub keep_lines: bool,
}

/// One stored entry, as a query would return it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub ts: i128,
    /// Empty unless `keep_lines` (and then labels are empty and metadata is `occurrence_key`).
    pub line: String,
    pub metadata: BTreeMap<String, String>,
}

/// What one request was and how it was answered.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub at: Instant,
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    /// Entries in the push (0 when it did not decode).
    pub entries: usize,
    /// The reply body (reasons of a 4xx).
    pub reply: String,
}

/// A reply given instead of processing the next request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Fault {
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
            body: "ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest lines".into(),
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            body: format!("injected {status}"),
        }
    }
}

#[derive(Default)]
struct StreamState {
    highest: Option<i128>,
    last: Option<u128>,
    seen: HashSet<u128>,
}

#[derive(Default)]
struct State {
    streams: HashMap<(String, String), StreamState>,
    entries: Vec<StoredEntry>,
    duplicates: u64,
    rejected: Vec<String>,
    requests: Vec<RequestLog>,
    faults: VecDeque<Fault>,
}

/// A running fake Loki.
#[derive(Clone)]
pub struct FakeLoki {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeLoki {
    pub async fn start(opts: LokiOptions) -> std::io::Result<FakeLoki> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let (s, o) = (state.clone(), Arc::new(opts));
        let app = axum::Router::new().route(
            "/loki/api/v1/push",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (s, o) = (s.clone(), o.clone());
                async move { handle(&s, &o, &headers, &body) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeLoki {
            addr,
            state,
            task: Arc::new(task),
        })
    }

    /// The push URL.
    pub fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    pub fn entries(&self) -> Vec<StoredEntry> {
        self.state.lock().expect("state").entries.clone()
    }

    pub fn entry_count(&self) -> usize {
        self.state.lock().expect("state").entries.len()
    }

    /// Values of one structured metadata field over every stored entry.
    pub fn metadata_values(&self, name: &str) -> Vec<String> {
        self.state
            .lock()
            .expect("state")
            .entries
            .iter()
            .filter_map(|e| e.metadata.get(name).cloned())
            .collect()
    }

    /// Identical entries dropped.
    pub fn duplicates_dropped(&self) -> u64 {
        self.state.lock().expect("state").duplicates
    }

    /// Every reason an entry or stream was refused.
    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().expect("state").rejected.clone()
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.state.lock().expect("state").requests.clone()
    }

    /// The next requests get these replies, in order, without being processed.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().expect("state").faults.extend(faults);
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn handle(state: &Mutex<State>, opts: &LokiOptions, h: &HeaderMap, body: &[u8]) -> Response {
    let mut log = RequestLog {
        at: Instant::now(),
        status: 0,
        content_type: header(h, "content-type"),
        content_encoding: header(h, "content-encoding"),
        tenant: header(h, "x-scope-orgid"),
        authorization: header(h, "authorization"),
        entries: 0,
        reply: String::new(),
    };
    let mut st = state.lock().expect("state");
    let (status, retry_after, reply) = process(&mut st, opts, h, body, &mut log);
    log.status = status.as_u16();
    log.reply = reply.clone();
    st.requests.push(log);
    drop(st);
    let mut resp = (status, reply).into_response();
    if let Some(ra) = retry_after
        && let Ok(v) = ra.parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

fn process(
    st: &mut State,
    opts: &LokiOptions,
    h: &HeaderMap,
    body: &[u8],
    log: &mut RequestLog,
) -> (StatusCode, Option<String>, String) {
    if let Some((user, pass)) = &opts.basic_auth {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if log.authorization.as_deref() != Some(want.as_str()) {
            return (StatusCode::UNAUTHORIZED, None, "Unauthorized\n".into());
        }
    }
    let tenant = match &log.tenant {
        Some(t) if !t.is_empty() => t.clone(),
        _ if opts.multi_tenant => {
            return (StatusCode::UNAUTHORIZED, None, "no org id\n".into());
        }
        _ => "fake".to_owned(),
    };
    if let Some(f) = st.faults.pop_front() {
        return (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            f.retry_after,
            f.body,
        );
    }
    let streams = match decode_request(h, body) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, None, format!("{e}\n")),
    };
    log.entries = streams.iter().map(|s| s.entries.len()).sum();
    if streams.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "error at least one valid stream is required for ingestion\n".into(),
        );
    }
    let now = jiff::Timestamp::now().as_nanosecond();
    let limits = &opts.limits;
    let mut errors: Vec<String> = Vec::new();
    for stream in streams {
        if stream.entries.is_empty() {
            continue;
        }
        let labels = match validate_labels(&stream.labels, limits) {
            Ok(l) => l,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let key = canonical(&labels);
        let oldest = now - limits.reject_old_samples_max_age.as_nanos() as i128;
        let newest = now + limits.creation_grace_period.as_nanos() as i128;
        for e in stream.entries {
            let why = if e.ts < oldest {
                Some(format!(
                    "entry for stream '{key}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    rfc3339(e.ts),
                    rfc3339(oldest)
                ))
            } else if e.ts > newest {
                Some(format!(
                    "entry for stream '{key}' has timestamp too new: {}",
                    rfc3339(e.ts)
                ))
            } else if e.line.len() > limits.max_line_size {
                Some(format!(
                    "max entry size '{}' bytes exceeded for stream '{key}' while adding an entry with length '{}' bytes",
                    limits.max_line_size,
                    e.line.len()
                ))
            } else if !e.metadata.is_empty() && !limits.allow_structured_metadata {
                Some(format!(
                    "stream '{key}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it"
                ))
            } else if e.metadata.len() > limits.max_structured_metadata_entries {
                Some(format!(
                    "stream '{key}' has too many structured metadata labels: '{}', limit: '{}'",
                    e.metadata.len(),
                    limits.max_structured_metadata_entries
                ))
            } else {
                None
            };
            if let Some(why) = why {
                errors.push(why);
                continue;
            }
            // The ingester.
            // The ingester: the stream's last line, the out-of-order window, then the head
            // block (and the querier's merge), which drop an identical entry.
            let id = entry_id(e.ts, &e.line, &e.metadata);
            let s = st.streams.entry((tenant.clone(), key.clone())).or_default();
            if s.last == Some(id) {
                st.duplicates += 1;
                continue;
            }
            if let Some(highest) = s.highest {
                let cutoff = highest - limits.out_of_order_window.as_nanos() as i128;
                if e.ts < cutoff {
                    errors.push(format!(
                        "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}' for stream: {key}",
                        rfc3339(e.ts),
                        rfc3339(e.ts),
                        rfc3339(cutoff)
                    ));
                    continue;
                }
                if !limits.unordered_writes && e.ts < highest {
                    errors.push(format!(
                        "entry with timestamp {} ignored, reason: 'entry out of order' for stream: {key}",
                        rfc3339(e.ts)
                    ));
                    continue;
                }
            }
            s.last = Some(id);
            if !s.seen.insert(id) {
                st.duplicates += 1;
                continue;
            }
            s.highest = Some(s.highest.map_or(e.ts, |h| h.max(e.ts)));
            let entry = if opts.keep_lines {
                StoredEntry {
                    tenant: tenant.clone(),
                    labels: labels.clone(),
                    ts: e.ts,
                    line: e.line,
                    metadata: e.metadata.into_iter().collect(),
                }
            } else {
                StoredEntry {
                    tenant: tenant.clone(),
                    labels: BTreeMap::new(),
                    ts: e.ts,
                    line: String::new(),
                    metadata: e
                        .metadata
                        .into_iter()
                        .filter(|(k, _)| k == "occurrence_key")
                        .collect(),
                }
            };
            st.entries.push(entry);
        }
    }
    if errors.is_empty() {
        (StatusCode::NO_CONTENT, None, String::new())
    } else {
        st.rejected.extend(errors.iter().cloned());
        (StatusCode::BAD_REQUEST, None, grouped(&errors))
    }
}

/// Like Loki's `GroupedErrors`: each distinct message once, with its count when repeated.
fn grouped(errors: &[String]) -> String {
    let mut counts: Vec<(&String, usize)> = Vec::new();
    for e in errors {
        match counts.iter_mut().find(|(m, _)| *m == e) {
            Some((_, n)) => *n += 1,
            None => counts.push((e, 1)),
        }
    }
    let many = counts.len() > 1;
    counts
        .iter()
        .map(|(m, n)| {
            if many || *n > 1 {
                format!("{n} errors like: {m}")
            } else {
                (*m).clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
        + "\n"
}

fn rfc3339(nanos: i128) -> String {
    jiff::Timestamp::from_nanosecond(nanos)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| nanos.to_string())
}

/// Identity of an entry within a stream (timestamp, line, structured metadata), 128 bits.
fn entry_id(ts: i128, line: &str, metadata: &[(String, String)]) -> u128 {
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        ts.hash(&mut h);
        line.hash(&mut h);
        metadata.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// A decoded stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PushStream {
    pub labels: String,
    pub entries: Vec<PushEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushEntry {
    pub ts: i128,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// The streams of a push body, as Loki's `parsePushRequestBody` reads it.
pub fn decode_request(h: &HeaderMap, body: &[u8]) -> Result<Vec<PushStream>, String> {
    match header(h, "content-encoding").as_deref() {
        None | Some("") | Some("snappy") => {}
        Some(other) => return Err(format!("Content-Encoding {other:?} not supported")),
    }
    let content_type = header(h, "content-type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == "application/json" {
        decode_json(body)
    } else {
        // No Content-Type or application/x-protobuf (or anything else): snappy + protobuf.
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|e| format!("snappy: decompression failed: {e}"))?;
        decode_protobuf(&raw)
    }
}

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("decoding JSON: {e}"))?;
    let streams = v
        .get("streams")
        .and_then(|s| s.as_array())
        .ok_or("expected an object with a \"streams\" array")?;
    let mut out = Vec::new();
    for s in streams {
        let labels = s
            .get("stream")
            .and_then(|l| l.as_object())
            .ok_or("stream: expected an object of labels")?;
        let mut pairs = Vec::new();
        for (k, v) in labels {
            let v = v.as_str().ok_or("stream: label values must be strings")?;
            pairs.push((k.clone(), v.to_owned()));
        }
        // Loki turns the map into a label set, then parses its string form like a protobuf
        // push's; names it cannot parse fail there.
        pairs.sort();
        let labels = format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut entries = Vec::new();
        for value in s
            .get("values")
            .and_then(|v| v.as_array())
            .ok_or("values: expected an array")?
        {
            let parts = value.as_array().ok_or("values: expected arrays")?;
            let ts = parts
                .first()
                .and_then(|t| t.as_str())
                .ok_or(jsonparser_malformed("timestamp"))?
                .parse::<i64>()
                .map_err(|e| format!("timestamp: {e}"))?;
            let line = parts
                .get(1)
                .and_then(|l| l.as_str())
                .ok_or(jsonparser_malformed("line"))?
                .to_owned();
            let mut metadata = Vec::new();
            if let Some(m) = parts.get(2) {
                let m = m.as_object().ok_or("Value is not an object")?;
                for (k, v) in m {
                    let v = v.as_str().ok_or("could not parse structured metadata")?;
                    metadata.push((k.clone(), v.to_owned()));
                }
            }
            entries.push(PushEntry {
                ts: i128::from(ts),
                line,
                metadata,
            });
        }
        out.push(PushStream { labels, entries });
    }
    Ok(out)
}

fn jsonparser_malformed(what: &str) -> String {
    format!("Value is not a string ({what})")
}

/// A protobuf reader for the few message types of a push.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("proto: unexpected end of varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("proto: varint overflow".into())
    }

    /// (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8), String> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err("proto: illegal tag 0".into());
        }
        Ok((field, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or("proto: length out of range")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(format!("proto: unsupported wire type {w}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("proto: unexpected end".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn expect_wire(msg: &str, field: u64, wire: u8, want: u8) -> Result<(), String> {
    if wire == want {
        Ok(())
    } else {
        Err(format!(
            "proto: {msg}: wrong wireType = {wire} for field {field}"
        ))
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("proto: {what}: invalid UTF-8"))
}

/// `logproto.PushRequest`: streams = 1, format = 2.
pub fn decode_protobuf(buf: &[u8]) -> Result<Vec<PushStream>, String> {
    let mut r = Reader::new(buf);
    let mut streams = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire("PushRequest", field, wire, 2)?;
                streams.push(decode_stream(r.bytes()?)?);
            }
            2 => {
                expect_wire("PushRequest", field, wire, 2)?;
                r.bytes()?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(streams)
}

/// `StreamAdapter`: labels = 1, entries = 2, hash = 3.
fn decode_stream(buf: &[u8]) -> Result<PushStream, String> {
    let mut r = Reader::new(buf);
    let mut s = PushStream {
        labels: String::new(),
        entries: Vec::new(),
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire("StreamAdapter", field, wire, 2)?;
                s.labels = utf8(r.bytes()?, "labels")?;
            }
            2 => {
                expect_wire("StreamAdapter", field, wire, 2)?;
                s.entries.push(decode_entry(r.bytes()?)?);
            }
            3 => {
                expect_wire("StreamAdapter", field, wire, 0)?;
                r.varint()?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(s)
}

/// `EntryAdapter`: timestamp = 1 (google.protobuf.Timestamp: seconds = 1, nanos = 2), line = 2,
/// structuredMetadata = 3 (LabelPairAdapter: name = 1, value = 2), parsed = 4.
fn decode_entry(buf: &[u8]) -> Result<PushEntry, String> {
    let mut r = Reader::new(buf);
    let mut e = PushEntry {
        ts: 0,
        line: String::new(),
        metadata: Vec::new(),
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire("EntryAdapter", field, wire, 2)?;
                let mut t = Reader::new(r.bytes()?);
                let (mut secs, mut nanos) = (0i64, 0i64);
                while !t.done() {
                    let (f, w) = t.key()?;
                    match f {
                        1 => {
                            expect_wire("Timestamp", f, w, 0)?;
                            secs = t.varint()? as i64;
                        }
                        2 => {
                            expect_wire("Timestamp", f, w, 0)?;
                            nanos = i64::from(t.varint()? as i32);
                        }
                        _ => t.skip(w)?,
                    }
                }
                if !(0..1_000_000_000).contains(&nanos) {
                    return Err(format!(
                        "timestamp: seconds:{secs} nanos:{nanos}: nanos not in range [0, 1e9)"
                    ));
                }
                e.ts = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            }
            2 => {
                expect_wire("EntryAdapter", field, wire, 2)?;
                e.line = utf8(r.bytes()?, "line")?;
            }
            3 => {
                expect_wire("EntryAdapter", field, wire, 2)?;
                let mut p = Reader::new(r.bytes()?);
                let (mut name, mut value) = (String::new(), String::new());
                while !p.done() {
                    let (f, w) = p.key()?;
                    match f {
                        1 => {
                            expect_wire("LabelPairAdapter", f, w, 2)?;
                            name = utf8(p.bytes()?, "name")?;
                        }
                        2 => {
                            expect_wire("LabelPairAdapter", f, w, 2)?;
                            value = utf8(p.bytes()?, "value")?;
                        }
                        _ => p.skip(w)?,
                    }
                }
                e.metadata.push((name, value));
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(e)
}

/// Parses and validates a stream's labels as Loki's `parseStreamLabels` + `ValidateLabels` do.
fn validate_labels(src: &str, limits: &Limits) -> Result<BTreeMap<String, String>, String> {
    let pairs =
        parse_labels(src).map_err(|e| format!("error parsing labels '{src}' with error: {e}"))?;
    let mut labels = BTreeMap::new();
    for (name, value) in pairs {
        if labels.contains_key(&name) {
            return Err(format!("stream '{src}' has duplicate label name: '{name}'"));
        }
        labels.insert(name, value);
    }
    labels.retain(|_, v: &mut String| !v.is_empty());
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".into());
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{src}' has {} label names; limit {}",
            labels.len(),
            limits.max_label_names_per_series
        ));
    }
    for (name, value) in &labels {
        if name.len() > limits.max_label_name_length {
            return Err(format!("stream '{src}' has label name too long: '{name}'"));
        }
        if value.len() > limits.max_label_value_length {
            return Err(format!(
                "stream '{src}' has label value too long: '{value}'"
            ));
        }
    }
    Ok(labels)
}

/// The canonical form of a label set (sorted, Go-quoted values).
fn canonical(labels: &BTreeMap<String, String>) -> String {
    format!(
        "{{{}}}",
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `{name="value", …}` as Prometheus' `ParseMetric` reads it (without a metric name): names
/// `[a-zA-Z_][a-zA-Z0-9_]*`, values in double quotes, single quotes or backticks, with the
/// PromQL lexer's escapes in the quoted forms.
pub fn parse_labels(src: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    ws(&mut i);
    if chars.get(i) != Some(&'{') {
        return Err(format!(
            "1:{}: parse error: unexpected character, expected \"{{\"",
            i + 1
        ));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        ws(&mut i);
        if chars.get(i) == Some(&'}') {
            i += 1;
            break;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "1:{}: parse error: unexpected character inside braces: {:?}",
                start + 1,
                chars.get(start).copied().unwrap_or(' ')
            ));
        }
        ws(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(format!(
                "1:{}: parse error: unexpected character after label name, expected \"=\"",
                i + 1
            ));
        }
        i += 1;
        ws(&mut i);
        let value = parse_string(&chars, &mut i)?;
        out.push((name, value));
        ws(&mut i);
        match chars.get(i) {
            Some(',') => i += 1,
            Some('}') => {
                i += 1;
                break;
            }
            _ => {
                return Err(format!(
                    "1:{}: parse error: unexpected character, expected \",\" or \"}}\"",
                    i + 1
                ));
            }
        }
    }
    ws(&mut i);
    if i != chars.len() {
        return Err(format!(
            "1:{}: parse error: unexpected text after labels",
            i + 1
        ));
    }
    Ok(out)
}

fn parse_string(chars: &[char], i: &mut usize) -> Result<String, String> {
    let quote = match chars.get(*i) {
        Some(q @ ('"' | '\'' | '`')) => *q,
        _ => {
            return Err(format!(
                "1:{}: parse error: expected a quoted label value",
                *i + 1
            ));
        }
    };
    *i += 1;
    let mut out = String::new();
    loop {
        let c = *chars
            .get(*i)
            .ok_or("parse error: unterminated quoted string")?;
        *i += 1;
        if c == quote {
            return Ok(out);
        }
        if quote == '`' {
            out.push(c);
            continue;
        }
        match c {
            '\n' => return Err("parse error: unterminated quoted string".into()),
            '\\' => {
                let e = *chars
                    .get(*i)
                    .ok_or("parse error: escape sequence not terminated")?;
                *i += 1;
                let hex = |n: usize, i: &mut usize| -> Result<char, String> {
                    let s: String = chars
                        .get(*i..*i + n)
                        .ok_or("escape sequence not terminated")?
                        .iter()
                        .collect();
                    *i += n;
                    u32::from_str_radix(&s, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("parse error: invalid escape sequence \\{e}{s}"))
                };
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    q if q == quote => out.push(q),
                    'x' => out.push(hex(2, i)?),
                    'u' => out.push(hex(4, i)?),
                    'U' => out.push(hex(8, i)?),
                    '0'..='7' => {
                        let s: String = chars
                            .get(*i - 1..*i + 2)
                            .ok_or("parse error: escape sequence not terminated")?
                            .iter()
                            .collect();
                        *i += 2;
                        let v = u32::from_str_radix(&s, 8)
                            .map_err(|_| format!("parse error: invalid octal escape \\{s}"))?;
                        out.push(char::from_u32(v).ok_or("parse error: invalid octal escape")?);
                    }
                    other => {
                        return Err(format!("parse error: unknown escape sequence {other:?}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_like_prometheus() {
        assert_eq!(
            parse_labels(r#"{a="b", c="x\"y\\z\n\u00e9"}"#).unwrap(),
            [("a".into(), "b".into()), ("c".into(), "x\"y\\z\né".into())]
        );
        assert_eq!(parse_labels("{}").unwrap(), []);
        assert_eq!(
            parse_labels("{a=`r\\n`,}").unwrap(),
            [("a".into(), "r\\n".into())]
        );
        for bad in [
            "a=\"b\"",
            "{a=\"b\"",
            "{a.b=\"c\"}",
            "{1a=\"b\"}",
            "{a=b}",
            "{a=\"b\nc\"}",
            "{a=\"\\q\"}",
            "{a=\"b\"} x",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn label_rules_are_enforced() {
        let l = Limits::default();
        assert!(
            validate_labels(r#"{a="b", a="c"}"#, &l)
                .unwrap_err()
                .contains("duplicate")
        );
        assert_eq!(
            validate_labels(r#"{a=""}"#, &l).unwrap_err(),
            "error at least one label pair is required per stream"
        );
        let long = format!("{{a=\"{}\"}}", "x".repeat(2049));
        assert!(
            validate_labels(&long, &l)
                .unwrap_err()
                .contains("label value too long")
        );
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
        assert!(
            validate_labels(&format!("{{{}}}", many.join(",")), &l)
                .unwrap_err()
                .contains("16 label names; limit 15")
        );
    }

    #[test]
    fn protobuf_decoding_rejects_wrong_wire_types() {
        // Field 1 of a stream (labels) sent as a varint.
        let stream = [0x08, 0x01];
        let mut req = vec![0x0a, stream.len() as u8];
        req.extend_from_slice(&stream);
        assert!(
            decode_protobuf(&req)
                .unwrap_err()
                .contains("wrong wireType")
        );
        assert!(
            decode_protobuf(&[0x0a, 0x05, 0x01])
                .unwrap_err()
                .contains("out of range")
        );
    }
}
