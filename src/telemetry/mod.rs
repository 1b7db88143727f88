//! Metrics, health endpoints and logging.
pub mod health;
pub mod logging;
pub mod metrics;
pub mod server;

pub use health::Health;
pub use metrics::Metrics;
