//! Reading the exporter's JSON log lines the way an operator's `jq` would.

use serde_json::Value;

/// Every JSON log line of a replica's stderr (other lines skipped).
pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The fields of a log line: tracing's JSON puts them under `fields`, or at the top level when
/// flattened.
pub fn fields(line: &Value) -> Option<&serde_json::Map<String, Value>> {
    line.get("fields")
        .and_then(Value::as_object)
        .or_else(|| line.as_object())
}

/// A field of a log line (`message` included).
pub fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    fields(line)?.get(name)
}

/// The message of a log line.
pub fn message(line: &Value) -> &str {
    field(line, "message").and_then(Value::as_str).unwrap_or("")
}

/// One leadership transition line: `transition` is acquired / released / lost / standby.
#[derive(Debug, Clone)]
pub struct Transition {
    pub kind: String,
    pub timestamp: String,
    pub fields: serde_json::Map<String, Value>,
}

impl Transition {
    /// A field as text ("" when absent).
    pub fn field(&self, name: &str) -> String {
        match self.fields.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }
}

pub fn transitions(text: &str) -> Vec<Transition> {
    lines(text)
        .into_iter()
        .filter_map(|l| {
            let fields = fields(&l)?.clone();
            let kind = fields.get("transition")?.as_str()?.to_string();
            Some(Transition {
                kind,
                timestamp: l
                    .get("timestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                fields,
            })
        })
        .collect()
}

/// The address the replica serves /metrics and the health endpoints on, from its start-up line.
pub fn metrics_address(text: &str) -> Option<String> {
    lines(text).into_iter().find_map(|l| {
        (message(&l) == "serving /metrics, /healthz, /readyz")
            .then(|| field(&l, "address")?.as_str().map(str::to_string))
            .flatten()
    })
}
