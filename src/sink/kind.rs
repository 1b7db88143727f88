//! What a receiver kind is, and the table of kinds (the only list to extend when adding one).
//!
//! A kind owns everything about itself in its own module: its config struct, the keys it accepts,
//! their parsing from the YAML node (with the loader's path-aware helpers), its compiled templates,
//! the checks `run` would otherwise fail on, and its [`Sink`]. The loader, `check-config`, the key
//! reference in docs/configuration.md and [`super::Receivers::start`] all go through [`KINDS`].

use std::fmt::Debug;

use super::{
    Sink, elasticsearch, file, layout::Encoding, loki, opsgenie, pipe, slack, stdout, syslog,
    teams, webhook,
};
use crate::config::DeliveryConfig;
use crate::config::yaml::{Ctx, Fields};

/// A problem with a receiver's settings found before it runs: the key under the kind
/// (`tls.caFile`) and what is wrong with it.
pub type Problem = (&'static str, String);

/// What building a sink may need besides its own config.
pub struct BuildEnv<'a> {
    pub receiver: &'a str,
    pub delivery: &'a DeliveryConfig,
    /// Where stdout receivers write (tests capture it).
    pub stdout: &'a dyn Fn() -> stdout::Writer,
    /// Per-receiver metrics a kind updates itself (e.g. already-delivered documents).
    pub metrics: &'a crate::telemetry::Metrics,
}

/// One receiver kind: `webhook`, `file`, … (see `webhook.rs` for a worked example).
pub trait ReceiverKind: Debug + Clone + PartialEq + Send + Sync + Sized + 'static {
    /// The key that selects the kind in a receiver entry.
    const NAME: &'static str;
    /// Keys accepted in the kind's map; anything else is an error with a suggestion.
    const KEYS: &'static [&'static str];
    /// Keys of nested maps (`("tls", TLS_KEYS)`), for the key reference.
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[];
    /// `batch.maxEvents` when the receiver does not set it.
    const DEFAULT_MAX_EVENTS: usize = 256;
    /// Whether requests may be in flight at once, and how many by default (`concurrency`).
    const CONCURRENCY: Concurrency = Concurrency::Serial("it writes through one stream, in order");

    /// The kind's map, its keys already checked against `KEYS`. Every problem goes to `ctx` with
    /// its path; `None` when there was any.
    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self>;

    /// How occurrences become documents (layout / deDot), compiled at load time.
    fn encoding(&self) -> &Encoding;

    /// Every other template of the kind, as (key under the kind, source), for check-config's lint.
    fn templates(&self) -> Vec<(String, &str)> {
        Vec::new()
    }

    /// Settings that work but deserve a warning (check-config and the start print them), as
    /// (key under the kind, why): e.g. syslog over UDP, which can lose messages silently.
    fn warnings(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// What `run` would refuse, found without starting, sending or creating anything (files that
    /// cannot be written, TLS files that do not parse, a client that does not build).
    fn check(&self, env: &BuildEnv) -> Vec<Problem>;

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>>;
}

/// A kind's config behind `&dyn`, for code that handles every kind alike.
pub trait Receiver {
    fn encoding(&self) -> &Encoding;
    fn templates(&self) -> Vec<(String, &str)>;
    fn warnings(&self) -> Vec<Problem>;
    fn check(&self, env: &BuildEnv) -> Vec<Problem>;
    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>>;
}

impl<K: ReceiverKind> Receiver for K {
    fn encoding(&self) -> &Encoding {
        ReceiverKind::encoding(self)
    }
    fn templates(&self) -> Vec<(String, &str)> {
        ReceiverKind::templates(self)
    }
    fn warnings(&self) -> Vec<Problem> {
        ReceiverKind::warnings(self)
    }
    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        ReceiverKind::check(self, env)
    }
    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        ReceiverKind::build(self, env)
    }
}

/// How a kind sends: through one stream, or in concurrent lanes (`sink::worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// One request at a time, always: why (`concurrency` above 1 is a load error).
    Serial(&'static str),
    /// Lanes, this many by default: a request/response API whose round trip, not its
    /// throughput, bounds one lane.
    Lanes(usize),
}

impl Concurrency {
    pub fn default_lanes(self) -> usize {
        match self {
            Concurrency::Serial(_) => 1,
            Concurrency::Lanes(n) => n,
        }
    }
}

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
