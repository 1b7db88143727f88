//! The small HTTP server: `/metrics`, `/healthz`, `/readyz`, and resmoio's `/-/healthy`, `/-/ready`.

use std::net::SocketAddr;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Health, Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// Binds now (so a port clash is an error at start, not a silent log line as in the Go exporter) and
/// returns the bound address and the future serving until `shutdown`.
pub async fn bind(
    addr: &str,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    SocketAddr,
    impl Future<Output = std::io::Result<()>> + use<>,
)> {
    // resmoio's default `:2112` means every interface.
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on metrics address {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(live))
        .route("/-/healthy", get(live))
        .route("/readyz", get(ready))
        .route("/-/ready", get(ready))
        .with_state(AppState { metrics, health });
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    };
    Ok((local, serve))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn live(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.live() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event loop stalled\n")
    }
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
