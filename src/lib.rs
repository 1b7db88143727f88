//! kube-event-exporter: exports every Kubernetes event occurrence to stdout, files and webhooks,
//! losslessly, under leader election.
//!
//! The data flow, one module per stage:
//! `source` (list + watch) → `enrich` (involved-object metadata) → `route` (the rule tree) →
//! `sink` (one bounded queue and worker per receiver) → `progress` (acks → the delivery cursor).
//! `event` is the model every stage shares; `pipeline` runs enrich → route → sink for one run;
//! `exporter` wires the stages together; `config` and `telemetry` serve them all.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod enrich;
pub mod event;
pub mod exporter;
pub mod leader;
pub mod pipeline;
pub mod progress;
pub mod route;
pub mod shard;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod tasks;
pub mod telemetry;
pub mod template;
