//! Metrics, health endpoints and logging.
pub mod api_requests;
pub mod chain;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod server;

pub use chain::chain as error_chain;
pub use health::Health;
pub use metrics::Metrics;
