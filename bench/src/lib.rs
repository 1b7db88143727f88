//! The exporter's release binary run as separate processes against kube-sim: `bench`
//! (throughput, memory and API cost; the `exporter-bench` binary) and `soak` (seeded faults
//! against replicas with the invariants checked; the `exporter-soak` binary). The fake
//! destinations they send to are the `fake-destinations` crate.

pub mod bench;
pub mod soak;
