//! The table of receiver kinds: the only list to extend when adding one (docs/architecture.md,
//! "Adding a receiver kind"). The loader, `check-config`, the key reference in
//! docs/configuration.md and [`super::Receivers::start`] all go through [`KINDS`] and
//! [`SinkConfig`]; none of them names a kind.

use super::kind::{Concurrency, Receiver, ReceiverKind};
use super::{elasticsearch, file, loki, opsgenie, pipe, slack, stdout, syslog, teams, webhook};
use crate::config::yaml::{Ctx, Fields};

/// A row of the table.
pub struct KindInfo {
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub nested: &'static [(&'static str, &'static [&'static str])],
    pub default_max_events: usize,
    pub concurrency: Concurrency,
    pub parse: for<'c, 'e, 'f, 'n> fn(&'c mut Ctx<'e>, &'f Fields<'n>) -> Option<SinkConfig>,
}

macro_rules! receiver_kinds {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// A receiver's kind and its settings.
        #[derive(Debug, Clone, PartialEq)]
        pub enum SinkConfig {
            $($variant($ty),)*
        }

        impl SinkConfig {
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SinkConfig::$variant(_) => <$ty as ReceiverKind>::NAME,)*
                }
            }

            /// The settings of kind `K`, if this is one.
            pub fn get<K: ReceiverKind>(&self) -> Option<&K> {
                let any: &dyn std::any::Any = match self {
                    $(SinkConfig::$variant(c) => c,)*
                };
                any.downcast_ref()
            }

            pub fn receiver(&self) -> &dyn Receiver {
                match self {
                    $(SinkConfig::$variant(c) => c,)*
                }
            }
        }

        /// Every supported kind.
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo {
                name: <$ty as ReceiverKind>::NAME,
                keys: <$ty as ReceiverKind>::KEYS,
                nested: <$ty as ReceiverKind>::NESTED,
                default_max_events: <$ty as ReceiverKind>::DEFAULT_MAX_EVENTS,
                concurrency: <$ty as ReceiverKind>::CONCURRENCY,
                parse: |ctx, f| <$ty as ReceiverKind>::parse(ctx, f).map(SinkConfig::$variant),
            },)*
        ];
    };
}

// The table: one line per kind.
receiver_kinds! {
    Stdout => stdout::StdoutConfig,
    File => file::FileConfig,
    Webhook => webhook::WebhookConfig,
    Elasticsearch => elasticsearch::ElasticsearchConfig,
    Opensearch => elasticsearch::OpenSearchConfig,
    Loki => loki::LokiConfig,
    Syslog => syslog::SyslogConfig,
    Pipe => pipe::PipeConfig,
    Slack => slack::SlackConfig,
    Opsgenie => opsgenie::OpsgenieConfig,
    Teams => teams::TeamsConfig,
    Sqs => super::aws::sqs::SqsConfig,
    Kinesis => super::aws::kinesis::KinesisConfig,
    Sns => super::aws::sns::SnsConfig,
    Eventbridge => super::aws::eventbridge::EventBridgeConfig,
    Firehose => super::aws::firehose::FirehoseConfig,
    Opscenter => super::aws::opscenter::OpsCenterConfig,
    Kafka => super::kafka::KafkaConfig,
    Pubsub => super::gcp::pubsub::PubsubConfig,
    Bigquery => super::gcp::bigquery::BigQueryConfig,
    CloudLogging => super::gcp::logging::CloudLoggingConfig,
    Otlp => super::otlp::OtlpConfig,
}

/// resmoio's receiver kinds. Those not in [`KINDS`] are recognised so the error says "not
/// supported yet" rather than "unknown key".
const RESMOIO_KINDS: &[&str] = &[
    "stdout",
    "file",
    "webhook",
    "elasticsearch",
    "opensearch",
    "kafka",
    "kinesis",
    "firehose",
    "sqs",
    "sns",
    "eventbridge",
    "loki",
    "teams",
    "slack",
    "opsgenie",
    "opscenter",
    "syslog",
    "pubsub",
    "bigquery",
    "pipe",
    "inMemory",
];

pub fn find(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// resmoio's kinds this exporter does not implement yet.
pub fn unsupported() -> impl Iterator<Item = &'static str> {
    RESMOIO_KINDS.iter().copied().filter(|k| find(k).is_none())
}

/// Every kind name a receiver entry may hold, supported or not.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name).chain(unsupported())
}
