//! `/admin/…`: the fault and generator controls over HTTP, for child processes and the CLI.
//! Never subject to injected faults or latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::{GeneratorConfig, Shared, SimHandle};

fn reply(code: StatusCode, v: Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok() -> Response {
    reply(StatusCode::OK, json!({"ok": true}))
}

fn bad(msg: String) -> Box<Response> {
    Box::new(reply(StatusCode::BAD_REQUEST, json!({"error": msg})))
}

fn params(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn num<T: std::str::FromStr>(
    p: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, Box<Response>> {
    match p.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("{key}={v} is not a number"))),
    }
}

pub async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    let handle = SimHandle {
        addr: shared
            .url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into()),
        shared,
        stop: Default::default(),
    };
    let p = params(&req);
    let path = req.uri().path().to_string();
    let r: Result<Response, Box<Response>> = async {
        Ok(match path.as_str() {
            "/admin/compact" => {
                handle.compact();
                ok()
            }
            "/admin/drop-watches" => {
                handle.drop_watches();
                ok()
            }
            "/admin/fail" => {
                handle.fail_next(num(&p, "n", 1)?, num(&p, "status", 500)?);
                ok()
            }
            "/admin/latency" => {
                handle.set_latency(Duration::from_millis(num(&p, "ms", 0)?));
                ok()
            }
            "/admin/stale-watch" => {
                handle.set_stale_watch_empty_200(p.get("enabled").is_none_or(|v| v == "true"));
                ok()
            }
            "/admin/partition" => {
                handle.refuse_lease_writes(p.get("identity").filter(|s| !s.is_empty()).map(String::as_str));
                ok()
            }
            "/admin/counts" => {
                let counts: Vec<Value> = handle
                    .request_counts()
                    .into_iter()
                    .map(|((verb, resource), n)| json!({"verb": verb, "resource": resource, "count": n}))
                    .collect();
                reply(StatusCode::OK, json!(counts))
            }
            "/admin/events" => {
                let ns = p.get("namespace").cloned().unwrap_or_else(|| "default".into());
                let body = to_bytes(req.into_body(), 1 << 20).await.map_err(|e| bad(e.to_string()))?;
                let ev: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
                match handle.create_event(&ns, ev) {
                    Ok(v) => reply(StatusCode::CREATED, v),
                    Err(e) => reply(StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST), e.status()),
                }
            }
            "/admin/generate" => {
                let cfg = GeneratorConfig {
                    rate_per_sec: num(&p, "rate", 200.0)?,
                    total: p.get("total").map(|v| v.parse()).transpose().map_err(|_| bad("total is not a number".into()))?,
                    repeat_ratio: num(&p, "repeat", 0.3)?,
                    namespaces: num(&p, "namespaces", 8)?,
                    seed: num(&p, "seed", 1)?,
                };
                handle.generate(cfg);
                ok()
            }
            "/admin/generate/stop" => {
                if let Some(g) = handle.generator() {
                    g.stop();
                }
                ok()
            }
            "/admin/generated" => {
                let keys = handle.generator().map(|g| g.generated()).unwrap_or_default();
                reply(StatusCode::OK, json!(keys))
            }
            "/admin/generate/status" => {
                let g = handle.generator();
                reply(StatusCode::OK, json!({"generated": g.as_ref().map(|g| g.count()).unwrap_or(0), "done": g.is_none_or(|g| g.is_done())}))
            }
            other => reply(StatusCode::NOT_FOUND, json!({"error": format!("no admin endpoint {other}")})),
        })
    }
    .await;
    r.unwrap_or_else(|e| *e)
}
