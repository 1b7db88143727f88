//! The OTLP logs messages (opentelemetry-proto: `collector/logs/v1/logs_service.proto`,
//! `logs/v1/logs.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`), derived by
//! hand with prost: no build script, no protoc. Only the fields this exporter writes or reads;
//! field numbers as in the .proto files:
//!
//! ```text
//! ExportLogsServiceRequest  { repeated ResourceLogs resource_logs = 1; }
//! ExportLogsServiceResponse { ExportLogsPartialSuccess partial_success = 1; }
//! ExportLogsPartialSuccess  { int64 rejected_log_records = 1; string error_message = 2; }
//! ResourceLogs   { Resource resource = 1; repeated ScopeLogs scope_logs = 2; string schema_url = 3; }
//! ScopeLogs      { InstrumentationScope scope = 1; repeated LogRecord log_records = 2; }
//! LogRecord      { fixed64 time_unix_nano = 1; fixed64 observed_time_unix_nano = 11;
//!                  SeverityNumber severity_number = 2; string severity_text = 3;
//!                  AnyValue body = 5; repeated KeyValue attributes = 6; string event_name = 12; }
//! Resource       { repeated KeyValue attributes = 1; }
//! InstrumentationScope { string name = 1; string version = 2; }
//! KeyValue       { string key = 1; AnyValue value = 2; }
//! AnyValue       { oneof value { string string_value = 1; bool bool_value = 2;
//!                  int64 int_value = 3; double double_value = 4;
//!                  ArrayValue array_value = 5; KeyValueList kvlist_value = 6; … } }
//! ArrayValue     { repeated AnyValue values = 1; }
//! KeyValueList   { repeated KeyValue values = 1; }
//! google.rpc.Status { int32 code = 1; string message = 2; … }   (an error answer's body)
//! ```

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(string, tag = "12")]
    pub event_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    KvList(KeyValueList),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// The body of an OTLP/HTTP error answer (`google.rpc.Status`); `details` is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl KeyValue {
    pub fn string(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: Some(AnyValue::string(value)),
        }
    }

    pub fn int(key: &str, value: i64) -> Self {
        Self {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::Int(value)),
            }),
        }
    }
}

impl AnyValue {
    pub fn string(value: impl Into<String>) -> Self {
        Self {
            value: Some(Value::String(value.into())),
        }
    }

    /// A JSON document as a value: objects become key-value lists, arrays arrays, integers that fit `int64` ints, other numbers doubles; null is an empty value.
    pub fn from_json(v: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        let value = match v {
            J::Null => None,
            J::Bool(b) => Some(Value::Bool(*b)),
            J::Number(n) => match n.as_i64() {
                Some(i) => Some(Value::Int(i)),
                None => Some(Value::Double(n.as_f64().unwrap_or(f64::NAN))),
            },
            J::String(s) => Some(Value::String(s.clone())),
            J::Array(items) => Some(Value::Array(ArrayValue {
                values: items.iter().map(AnyValue::from_json).collect(),
            })),
            J::Object(map) => Some(Value::KvList(KeyValueList {
                values: map
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(AnyValue::from_json(v)),
                    })
                    .collect(),
            })),
        };
        Self { value }
    }
}

/// `SeverityNumber`: what the k8s_events receiver maps an event's type to.
pub const SEVERITY_INFO: i32 = 9;
pub const SEVERITY_WARN: i32 = 13;
pub const SEVERITY_ERROR: i32 = 17;
pub const SEVERITY_FATAL: i32 = 21;
