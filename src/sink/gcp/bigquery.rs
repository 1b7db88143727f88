//! `bigquery`: streaming inserts with `tabledata.insertAll`
//! (`POST /bigquery/v2/projects/P/datasets/D/tables/T/insertAll`), one row per occurrence with
//! `insertId` = the occurrence key. BigQuery drops a row whose insertId it saw in about the last
//! minute (best effort), so a quick replay is usually not a second row; a later one is, and the
//! key is the way to drop it at query time. (The Storage Write API's default stream would be
//! at-least-once with no dedup at all, so insertAll is used.)
//!
//! The row is the document as resmoio wrote it: nulls dropped and keys made BigQuery column names
//! (anything but letters and digits becomes `_`, a leading non-letter gets a `_` prefix). Unlike
//! resmoio (load jobs with schema autodetection), the table must exist with a matching schema.
//! Requests use `skipInvalidRows`, so the valid rows of a batch are inserted and `insertErrors`
//! names the others by index: `invalid` is permanent, `backendError`, `rateLimitExceeded`,
//! `internalError`, `timeout` and `stopped` are resent. A batch is cut into requests of
//! `batch_size` rows (default 500, Google's recommendation) and at most 10 MB.
//!
//! resmoio's `location` (used to create the dataset) is accepted and not needed: the dataset is
//! not created. `max_retries`, `interval_seconds` and `timeout_seconds` are our delivery settings
//! `retry.maxAttempts`, `batch.maxWait` and `timeout` and are warned about when set.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Answer, Api, Google, GoogleBatch, GoogleCommon, LIMITS, json_str, parse_name,
    whole_request_error,
};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind, keys};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError, Sink};

pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";
const MAX_ROWS: i64 = 50_000;
const DEFAULT_ROWS: usize = 500;

/// `receivers[].bigquery`.
#[derive(Debug, Clone, PartialEq)]
pub struct BigQueryConfig {
    pub project: Option<String>,
    pub dataset: String,
    pub table: String,
    pub location: Option<String>,
    /// Rows per insertAll request.
    pub batch_size: usize,
    pub ignore_unknown_values: bool,
    /// `credentials_path`, `endpoint`, `layout` and `deDot`.
    pub common: GoogleCommon,
    /// resmoio's keys that are our delivery settings here, as set (for the warnings).
    pub delivery_keys: Vec<(&'static str, &'static str)>,
}

impl ReceiverKind for BigQueryConfig {
    const NAME: &'static str = "bigquery";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &keys::<13>(
        &[
            "project",
            "dataset",
            "table",
            "location",
            "credentials_path",
            "batch_size",
            "max_retries",
            "interval_seconds",
            "timeout_seconds",
            "ignoreUnknownValues",
        ],
        GoogleCommon::KEYS,
    );
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let project = parse_name(ctx, f, "project", false);
        let dataset = parse_name(ctx, f, "dataset", true);
        let table = parse_name(ctx, f, "table", true);
        let location = ctx.opt_string(f, "location");
        let batch_size = ctx.int(f, "batch_size", 1, MAX_ROWS).map(|n| n as usize);
        let mut delivery_keys = Vec::new();
        for (key, ours) in [
            ("max_retries", "retry.maxAttempts"),
            ("interval_seconds", "batch.maxWait"),
            ("timeout_seconds", "timeout"),
        ] {
            if ctx.int(f, key, 0, i64::MAX).is_some() {
                delivery_keys.push((key, ours));
            }
        }
        let ignore_unknown_values = ctx.bool(f, "ignoreUnknownValues").unwrap_or(false);
        let common = GoogleCommon::parse(ctx, f, "credentials_path")?;
        Some(Self {
            project,
            dataset: dataset?,
            table: table?,
            location,
            batch_size: batch_size.unwrap_or(DEFAULT_ROWS),
            ignore_unknown_values,
            common,
            delivery_keys,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        self.delivery_keys
            .iter()
            .map(|(key, ours)| {
                (
                    *key,
                    format!("resmoio's {key} is not used here: set the receiver's {ours} instead"),
                )
            })
            .collect()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        let kind = BigQuery {
            cfg: self.clone(),
            path: None,
        };
        let api = self.common.access.api(DEFAULT_ENDPOINT, env)?;
        Ok(Box::new(Google::sink(api, kind)))
    }
}

/// A key as a BigQuery column name, as resmoio makes it.
pub fn column_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if !key.chars().next().is_some_and(char::is_alphabetic) {
        out.push('_');
    }
    out.extend(
        key.chars()
            .map(|c| if c.is_alphanumeric() { c } else { '_' }),
    );
    out
}

/// The row of a document: nulls dropped, keys made column names (in nested objects and in
/// objects inside lists too).
pub fn row(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (column_name(&k), row(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(row).collect()),
        v => v,
    }
}

#[derive(Deserialize)]
struct InsertAnswer {
    #[serde(rename = "insertErrors", default)]
    insert_errors: Vec<InsertError>,
}

#[derive(Deserialize)]
struct InsertError {
    index: usize,
    #[serde(default)]
    errors: Vec<ErrorProto>,
}

#[derive(Deserialize)]
struct ErrorProto {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    message: String,
}

fn reason_is_transient(reason: &str) -> bool {
    matches!(
        reason,
        "backendError"
            | "rateLimitExceeded"
            | "internalError"
            | "timeout"
            | "stopped"
            | "quotaExceeded"
    )
}

/// insertAll into one table.
#[derive(Clone)]
pub struct BigQuery {
    cfg: BigQueryConfig,
    /// `…/tables/T/insertAll`, once the project is known.
    path: Option<String>,
}

impl GoogleBatch for BigQuery {
    /// The insertAll path.
    type Target = String;

    /// `batch_size` rows per request.
    fn limits(&self) -> Limits {
        Limits {
            entries: self.cfg.batch_size,
            bytes: LIMITS.bytes,
        }
    }

    fn target<'a>(
        &'a mut self,
        api: &'a mut Api,
        _: &'a [Doc],
    ) -> BoxFuture<'a, Result<String, SendError>> {
        async move {
            if let Some(p) = &self.path {
                return Ok(p.clone());
            }
            let project = api.tokens().project(self.cfg.project.as_deref()).await?;
            let p = format!(
                "/bigquery/v2/projects/{project}/datasets/{}/tables/{}/insertAll",
                self.cfg.dataset, self.cfg.table
            );
            self.path = Some(p.clone());
            Ok(p)
        }
        .boxed()
    }

    /// `{"insertId": …, "json": …}`: the row, with the occurrence key as its insertId.
    fn encode(&mut self, _: &String, doc: &Doc) -> Result<Vec<u8>, SendError> {
        let value = match serde_json::from_slice(&doc.body) {
            Ok(v @ Value::Object(_)) => row(v),
            _ => {
                return Err(SendError::Permanent {
                    reason: format!("{}: the document is not a JSON object", doc.key),
                });
            }
        };
        let mut r = b"{\"insertId\":".to_vec();
        json_str(&mut r, &doc.key);
        r.extend_from_slice(b",\"json\":");
        serde_json::to_writer(&mut r, &value).expect("writing to a Vec");
        r.push(b'}');
        Ok(r)
    }

    fn request(&self, path: &String) -> (String, Vec<u8>, &'static [u8]) {
        let head = format!(
            "{{\"kind\":\"bigquery#tableDataInsertAllRequest\",\"skipInvalidRows\":true,\"ignoreUnknownValues\":{},\"rows\":[",
            self.cfg.ignore_unknown_values
        );
        (path.clone(), head.into_bytes(), b"]}")
    }

    /// With `skipInvalidRows` the valid rows are inserted and `insertErrors` names the others.
    fn read(&self, api: &Api, answer: Answer, batch: &[Doc], docs: &[usize], o: &mut Outcomes) {
        let outcomes = o;
        let what = format!(
            "insertAll into {}.{} at {}",
            self.cfg.dataset,
            self.cfg.table,
            api.base()
        );
        if !answer.is_success() {
            let e = whole_request_error(&what, &answer);
            return outcomes.fail_all(docs.iter().copied(), &e);
        }
        let parsed: InsertAnswer = match serde_json::from_slice(&answer.body) {
            Ok(a) => a,
            Err(e) => {
                let e = SendError::Transient {
                    reason: format!("{what}: unexpected answer: {e}"),
                    retry_after: None,
                };
                return outcomes.fail_all(docs.iter().copied(), &e);
            }
        };
        for ie in parsed.insert_errors {
            let Some(&i) = docs.get(ie.index) else {
                continue;
            };
            let transient =
                !ie.errors.is_empty() && ie.errors.iter().all(|e| reason_is_transient(&e.reason));
            let detail: Vec<String> = ie
                .errors
                .iter()
                .map(|e| {
                    if e.location.is_empty() {
                        format!("{}: {}", e.reason, e.message)
                    } else {
                        format!("{} at {}: {}", e.reason, e.location, e.message)
                    }
                })
                .collect();
            let reason = format!("{what}: row {}: {}", batch[i].key, detail.join("; "));
            outcomes.fail(
                i,
                if transient {
                    SendError::Transient {
                        reason,
                        retry_after: None,
                    }
                } else {
                    SendError::Permanent { reason }
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_made_as_resmoio_made_them() {
        let v = serde_json::json!({
            "metadata": {"name": "x", "deletionTimestamp": null},
            "involvedObject": {"labels": {"app.kubernetes.io/name": "web", "9lives": "y"}},
            "eventTime": null,
            "related": [{"a-b": 1, "c": null}]
        });
        assert_eq!(
            row(v),
            serde_json::json!({
                "metadata": {"name": "x"},
                "involvedObject": {"labels": {"app_kubernetes_io_name": "web", "_9lives": "y"}},
                "related": [{"a_b": 1}]
            })
        );
    }

    #[test]
    fn insert_error_reasons_are_sorted_into_retried_and_failed() {
        assert!(reason_is_transient("backendError"));
        assert!(reason_is_transient("stopped"));
        assert!(!reason_is_transient("invalid"));
        assert!(!reason_is_transient("notFound"));
    }
}
