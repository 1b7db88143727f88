//! What the kinds' unit tests share: a config with one receiver, its load errors, its settings
//! and sink, documents to send, and how a per-document answer reads.

use std::sync::Arc;

use serde_json::json;

use super::kind::{BuildEnv, Problem, ReceiverKind};
use super::{Doc, SendError};
use crate::config::{Config, ConfigErrors, parse};
use crate::event::{Event, Occurrence};

fn text(kind: &str, yaml: &str) -> String {
    format!(
        "route:\n  routes:\n    - match:\n        - receiver: r\nreceivers:\n  - name: r\n    {kind}:\n{yaml}"
    )
}

/// An environment of these variables only.
pub fn vars<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// A config with one receiver `r` of `kind` with `yaml` (indented by 6) under it, `${VAR}`s read
/// from `env`.
pub fn parse_with(
    kind: &str,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    parse(&text(kind, yaml), env)
}

/// Such a config, which must load.
pub fn config(kind: &str, yaml: &str) -> Config {
    parse_with(kind, yaml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{}", text(kind, yaml)))
}

/// The errors of such a config (which must not load), as `path: message`.
pub fn errors_with(kind: &str, yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match parse_with(kind, yaml, env) {
        Ok(_) => panic!("expected errors for:\n{}", text(kind, yaml)),
        Err(e) => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

pub fn errors(kind: &str, yaml: &str) -> Vec<String> {
    errors_with(kind, yaml, &|_| None)
}

/// The settings of the receiver of kind `K` configured with `yaml`.
pub fn receiver<K: ReceiverKind>(yaml: &str) -> K {
    receiver_with(yaml, &|_| None)
}

pub fn receiver_with<K: ReceiverKind>(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> K {
    let cfg = parse_with(K::NAME, yaml, env).unwrap_or_else(|e| panic!("{e}"));
    let sink = &cfg.receivers[0].sink;
    sink.get::<K>()
        .unwrap_or_else(|| panic!("not {}: {sink:?}", K::NAME))
        .clone()
}

/// Runs `f` with a BuildEnv for the first receiver of `cfg`.
pub fn with_env<T>(cfg: &Config, f: impl FnOnce(&BuildEnv) -> T) -> T {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stdout = || -> super::stdout::Writer { Box::new(tokio::io::sink()) };
    let metrics = crate::telemetry::Metrics::default();
    let env = BuildEnv {
        receiver: "r",
        delivery: &cfg.receivers[0].delivery,
        stdout: &stdout,
        metrics: &metrics,
    };
    f(&env)
}

/// The sink `build` makes of the receiver of kind `K` configured with `yaml`, `${VAR}`s read
/// from `env`.
pub fn sink_with<K: ReceiverKind, S>(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    build: impl FnOnce(&K, &BuildEnv) -> Result<S, Vec<Problem>>,
) -> S {
    let cfg = parse_with(K::NAME, yaml, env).unwrap_or_else(|e| panic!("{e}"));
    let k = cfg.receivers[0]
        .sink
        .get::<K>()
        .expect("the kind asked for");
    with_env(&cfg, |env| build(k, env)).unwrap_or_else(|p| panic!("{p:?}"))
}

pub fn sink<K: ReceiverKind, S>(
    yaml: &str,
    build: impl FnOnce(&K, &BuildEnv) -> Result<S, Vec<Problem>>,
) -> S {
    sink_with(yaml, &|_| None, build)
}

/// The document of `occ` as the worker makes it by default.
pub fn doc(occ: &Arc<Occurrence>) -> Doc {
    Doc {
        key: occ.key.clone(),
        body: occ.json().clone(),
        occ: occ.clone(),
    }
}

/// `n` documents: the events `uid-i` of objects `obj-{i % 3}`, count 1.
pub fn docs(n: usize) -> Vec<Doc> {
    (0..n)
        .map(|i| {
            let e: Event = serde_json::from_value(json!({
                "metadata": {"uid": format!("uid-{i}"), "namespace": "ns", "name": format!("e{i}")},
                "involvedObject": {"kind": "Pod", "name": format!("p{}", i % 3), "uid": format!("obj-{}", i % 3)},
                "reason": "BackOff", "count": 1, "type": "Warning", "message": format!("m{i}"),
                "lastTimestamp": "2024-05-06T07:08:09Z",
            }))
            .unwrap();
            doc(&Arc::new(Occurrence::new(e)))
        })
        .collect()
}

/// A per-document answer as (index, whether it is resent), or what else the answer was.
pub fn resent(answer: Result<(), SendError>) -> Vec<(usize, bool)> {
    match answer {
        Err(SendError::Partial(list)) => list
            .iter()
            .map(|(i, e)| (*i, matches!(e, SendError::Transient { .. })))
            .collect(),
        other => panic!("expected a per-document answer, got {other:?}"),
    }
}
