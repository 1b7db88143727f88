//! The Kubernetes HTTP API: discovery, and get/list/watch/create/replace/patch/delete of every
//! served resource, with faults applied first. Paths are parsed by hand (one fallback handler)
//! because the API's path grammar (`/api/v1/namespaces/{ns}/{plural}/{name}` next to
//! `/api/v1/{plural}/{name}`) is easier to read as code than as overlapping routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::Shared;
use crate::faults::Access;
use crate::resources::{self, ResourceType};
use crate::shard_selector::ShardSelector;
use crate::store::ApiError;
use crate::watch::{self, WatchRequest};

const MAX_BODY: usize = 16 * 1024 * 1024;

fn json_response(code: u16, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn value_response(code: u16, v: &Value) -> Response {
    json_response(code, crate::wire::to_vec(v))
}

fn error(e: ApiError) -> Response {
    value_response(e.code, &e.status())
}

/// The 403 a real API server answers when RBAC has no rule for the request.
fn forbidden(verb: &str, t: &Target) -> ApiError {
    let what = match &t.name {
        Some(n) => format!("{} \"{n}\"", t.rt.plural),
        None => t.rt.plural.to_string(),
    };
    let scope = match &t.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User \"system:serviceaccount:kube-event-exporter:kube-event-exporter\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
            t.rt.plural, t.rt.group
        ),
    )
}

/// What a request path names.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    Resources(String, String),
    Object(Target),
}

fn parse_path(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ));
        }
    };
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    };
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let target = match rest {
        [] => return Ok(Route::Resources(group.to_string(), version.to_string())),
        ["namespaces", ns, plural] => Target {
            rt: find(plural)?,
            namespace: Some(ns.to_string()),
            name: None,
        },
        ["namespaces", ns, plural, name] => Target {
            rt: find(plural)?,
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
        },
        [plural] => Target {
            rt: find(plural)?,
            namespace: None,
            name: None,
        },
        [plural, name] => Target {
            rt: find(plural)?,
            namespace: None,
            name: Some(name.to_string()),
        },
        _ => return Err(not_found()),
    };
    if target.rt.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(not_found());
    }
    if !target.rt.namespaced && target.namespace.is_some() {
        return Err(not_found());
    }
    Ok(Route::Object(target))
}

fn query(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((percent_decode(k)?, percent_decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn verb_of(method: &Method, target: &Target, q: &HashMap<String, String>) -> &'static str {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, target.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "unknown",
    }
}

pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/admin/") || path == "/admin" {
        return crate::admin::handle(shared, req).await;
    }
    if let Some(token) = &shared.token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            // What kube-apiserver answers for a missing or wrong token.
            return error(ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let route = match parse_path(&path) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let q = query(&req);
    let (verb, resource) = match &route {
        Route::Object(t) => (verb_of(req.method(), t, &q), t.rt.plural),
        _ => ("get", "discovery"),
    };
    shared.faults.count(verb, resource);
    if resource == "leases" && matches!(verb, "create" | "update" | "patch") {
        shared.faults.lease_write_gate().await;
    }
    shared.faults.record(match &route {
        Route::Object(t) => Access::Resource {
            verb: verb.to_string(),
            group: t.rt.group.to_string(),
            resource: t.rt.plural.to_string(),
            namespace: t.namespace.clone(),
        },
        _ => Access::NonResource { path: path.clone() },
    });
    if let Route::Object(t) = &route
        && shared.faults.is_forbidden(t.rt.group, t.rt.plural)
    {
        return error(forbidden(verb, t));
    }
    if let Some(code) = shared.faults.take_failure() {
        let e = match code {
            429 => ApiError::new(
                429,
                "TooManyRequests",
                "simulated: too many requests, please try again later",
            ),
            c => ApiError::new(c, "InternalError", format!("simulated failure {c}")),
        };
        let mut r = error(e);
        if code == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return r;
    }
    match route {
        Route::Version => value_response(200, &resources::version_info()),
        Route::CoreVersions => value_response(200, &resources::core_versions()),
        Route::Groups => value_response(200, &resources::group_list()),
        Route::Resources(g, v) => match resources::resource_list(&g, &v) {
            Some(list) => value_response(200, &list),
            None => error(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )),
        },
        Route::Object(t) => object(shared, req, t, verb, q).await,
    }
}

async fn object(
    shared: Arc<Shared>,
    req: Request,
    t: Target,
    verb: &str,
    q: HashMap<String, String>,
) -> Response {
    let ns = t.namespace.clone().unwrap_or_default();
    match verb {
        "watch" => return watch_response(shared, t, &q),
        "list" => return list(&shared, &t, &q),
        "get" => {
            let store = shared.store.lock().expect("store lock");
            return match store.get(t.rt, &ns, t.name.as_deref().unwrap_or("")) {
                Ok(o) => json_response(200, o.json.to_vec()),
                Err(e) => error(e),
            };
        }
        _ => {}
    }
    let body = match to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(ApiError::new(
                400,
                "BadRequest",
                format!("reading the body: {e}"),
            ));
        }
    };
    let parse = |b: &Bytes| -> Result<Value, ApiError> {
        serde_json::from_slice(b).map_err(|e| {
            ApiError::new(
                400,
                "BadRequest",
                format!("the body is not valid JSON: {e}"),
            )
        })
    };
    let name = t.name.clone().unwrap_or_default();
    let result = (|| -> Result<(u16, Value), ApiError> {
        if verb == "delete" {
            return shared
                .mutate(|s| s.delete(t.rt, &ns, &name))
                .map(|v| (200, v));
        }
        let value = parse(&body)?;
        if t.rt.plural == "leases" {
            check_partition(&shared, &t, &ns, &value)?;
        }
        match verb {
            "create" => shared
                .mutate(|s| s.create(t.rt, &ns, value))
                .map(|v| (201, v)),
            "update" => shared
                .mutate(|s| s.replace(t.rt, &ns, &name, value))
                .map(|v| (200, v)),
            "patch" => shared
                .mutate(|s| s.patch(t.rt, &ns, &name, &value))
                .map(|v| (200, v)),
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        }
    })();
    match result {
        Ok((code, v)) => value_response(code, &v),
        Err(e) => error(e),
    }
}

/// A partitioned replica's Lease writes fail: its renewals and acquisitions (holder = it) and its
/// release (holder emptied while it holds the Lease).
fn check_partition(shared: &Shared, t: &Target, ns: &str, body: &Value) -> Result<(), ApiError> {
    let Some(id) = shared.faults.partitioned() else {
        return Ok(());
    };
    let holder = body
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or("");
    let current = t
        .name
        .as_deref()
        .and_then(|n| {
            let store = shared.store.lock().expect("store lock");
            store.get(t.rt, ns, n).ok().and_then(|o| {
                o.value
                    .pointer("/spec/holderIdentity")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        })
        .unwrap_or_default();
    if holder == id || (holder.is_empty() && current == id) {
        return Err(ApiError::new(
            500,
            "InternalError",
            format!("simulated partition: lease writes from {id} fail"),
        ));
    }
    Ok(())
}

fn watch_response(shared: Arc<Shared>, t: Target, q: &HashMap<String, String>) -> Response {
    let from = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && v.as_str() != "0");
    let from = match from.map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return error(ApiError::new(
                400,
                "BadRequest",
                "resourceVersion must be an integer",
            ));
        }
    };
    let shard = match shard_selector(&shared, q) {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1800);
    let req = WatchRequest {
        rt: t.rt,
        namespace: t.namespace,
        from,
        timeout: Duration::from_secs(timeout),
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        shard,
    };
    let body = match watch::start(shared, req) {
        watch::Start::Stream(s) => Body::from_stream(Box::into_pin(s)),
        watch::Start::Expired(frame) => Body::from(frame),
        watch::Start::Empty => Body::empty(),
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A consistent snapshot being paged through by continue tokens.
pub struct ListSnapshot {
    rv: u64,
    items: Vec<Bytes>,
    created: Instant,
}

const SNAPSHOTS_KEPT: usize = 32;
const CONTINUE_TTL: Duration = Duration::from_secs(300);

/// The request's `shardSelector` when this server serves KEP-5866 (else ignored, as an older
/// server ignores an unknown parameter).
fn shard_selector(
    shared: &Shared,
    q: &HashMap<String, String>,
) -> Result<Option<ShardSelector>, ApiError> {
    match q.get("shardSelector").filter(|s| !s.is_empty()) {
        Some(text) if shared.cfg.shard_selector => ShardSelector::parse(text).map(Some),
        _ => Ok(None),
    }
}

fn list(shared: &Shared, t: &Target, q: &HashMap<String, String>) -> Response {
    let shard = match shard_selector(shared, q) {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let expired = || {
        error(ApiError::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ))
    };
    let (snapshot, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((id, offset)) = token
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)))
            else {
                return error(ApiError::new(
                    400,
                    "BadRequest",
                    format!("invalid continue token {token:?}"),
                ));
            };
            let compacted = shared.store.lock().expect("store lock").compacted;
            let lists = shared.lists.lock().expect("lists lock");
            match lists.iter().find(|(i, _)| *i == id) {
                Some((_, s)) if s.rv >= compacted && s.created.elapsed() < CONTINUE_TTL => {
                    (s.clone(), offset)
                }
                _ => return expired(),
            }
        }
        None => {
            let store = shared.store.lock().expect("store lock");
            if let Some(rv) = q
                .get("resourceVersion")
                .filter(|v| !v.is_empty() && v.as_str() != "0")
            {
                let Ok(rv) = rv.parse::<u64>() else {
                    return error(ApiError::new(
                        400,
                        "BadRequest",
                        "resourceVersion must be an integer",
                    ));
                };
                match q.get("resourceVersionMatch").map(String::as_str) {
                    // Only the current snapshot is kept: an exact list of an older one cannot be served.
                    Some("Exact") if rv != store.rv => {
                        return error(ApiError::new(
                            410,
                            "Expired",
                            format!("too old resource version: {rv} ({})", store.rv),
                        ));
                    }
                    _ if rv > store.rv => {
                        return error(ApiError::new(
                            504,
                            "Timeout",
                            format!("Too large resource version: {rv}, current: {}", store.rv),
                        ));
                    }
                    _ => {}
                }
            }
            let (rv, mut items) = store.snapshot(t.rt, t.namespace.as_deref());
            if let Some(sel) = &shard {
                items.retain(|o| sel.matches_object(o));
            }
            (
                Arc::new(ListSnapshot {
                    rv,
                    items,
                    created: Instant::now(),
                }),
                0,
            )
        }
    };
    let end = limit
        .map(|l| (offset + l).min(snapshot.items.len()))
        .unwrap_or(snapshot.items.len());
    let start = offset.min(end);
    let token = if end < snapshot.items.len() {
        let mut lists = shared.lists.lock().expect("lists lock");
        let id = match lists.iter().find(|(_, s)| Arc::ptr_eq(s, &snapshot)) {
            Some((id, _)) => *id,
            None => {
                let id = shared
                    .next_list_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                lists.push_back((id, snapshot.clone()));
                while lists.len() > SNAPSHOTS_KEPT {
                    lists.pop_front();
                }
                id
            }
        };
        Some(format!("{id}-{end}"))
    } else {
        None
    };
    let mut meta = json!({"resourceVersion": snapshot.rv.to_string()});
    if let Some(sel) = &shard {
        meta["shardInfo"] = json!({"selector": sel.text});
    }
    if let Some(tok) = &token {
        meta["continue"] = json!(tok);
        meta["remainingItemCount"] = json!(snapshot.items.len() - end);
    }
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{meta},\"items\":[",
        t.rt.kind,
        t.rt.api_version()
    );
    let mut body = Vec::with_capacity(
        head.len()
            + snapshot.items[start..end]
                .iter()
                .map(|b| b.len() + 1)
                .sum::<usize>()
            + 2,
    );
    body.extend_from_slice(head.as_bytes());
    for (i, item) in snapshot.items[start..end].iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    json_response(200, body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self)
    }
}
