//! Metrics, health endpoints and logging.
pub mod metrics;
