//! The small HTTP server: `/metrics`, `/healthz`, `/readyz`, and resmoio's `/-/healthy`, `/-/ready`.

use std::net::SocketAddr;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
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

/// The metrics address cannot be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on metrics address {addr}")]
pub struct BindError {
    addr: String,
    source: std::io::Error,
}

/// Binds now (so a port clash is an error at start, not a silent log line as in the Go exporter) and
/// returns the bound address and the future serving until `shutdown`.
pub async fn bind(
    addr: &str,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = std::io::Result<()>> + use<>,
    ),
    BindError,
> {
    // resmoio's default `:2112` means every interface.
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let (local, listener) = TcpListener::bind(&addr)
        .await
        .and_then(|listener| Ok((listener.local_addr()?, listener)))
        .map_err(|source| BindError { addr, source })?;
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

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics unless the scraper prefers the Prometheus text format (`Accept: text/plain;
/// version=0.0.4`, what Prometheus sends with `scrape_protocols: [PrometheusText0.0.4]`, and what
/// promtool reads).
async fn metrics_handler(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if prefers_prometheus_text(&accept.join(",")) {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            s.metrics.encode_prometheus(),
        )
    } else {
        ([(header::CONTENT_TYPE, OPENMETRICS)], s.metrics.encode())
    }
}

/// True when `accept` ranks `text/plain` above `application/openmetrics-text` (by `q`, which
/// defaults to 1). A tie, `*/*` or no preference at all keep OpenMetrics.
fn prefers_prometheus_text(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    text > 0.0 && text > openmetrics
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        // promtool, and Prometheus limited to the classic text format.
        assert!(prefers_prometheus_text("text/plain; version=0.0.4"));
        assert!(prefers_prometheus_text(
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(prefers_prometheus_text(
            "application/openmetrics-text;q=0.2,text/plain;q=0.9"
        ));
        // Prometheus' default: OpenMetrics first.
        assert!(!prefers_prometheus_text(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        for openmetrics in ["", "*/*", "application/openmetrics-text", "text/plain;q=0"] {
            assert!(!prefers_prometheus_text(openmetrics), "{openmetrics:?}");
        }
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_format_asked_for() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Metrics::default();
        metrics.relists.inc();
        let stop = CancellationToken::new();
        let (addr, serve) = bind(
            "127.0.0.1:0",
            metrics,
            Health::new(std::time::Duration::from_secs(60)),
            stop.clone(),
        )
        .await
        .unwrap();
        let task = tokio::spawn(serve);
        let http = reqwest::Client::new();
        let scrape = |accept: Option<&'static str>| {
            let mut req = http.get(format!("http://{addr}/metrics"));
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            async move {
                let r = req.send().await.unwrap();
                let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
                (ctype, r.text().await.unwrap())
            }
        };

        let (ctype, body) = scrape(Some("text/plain; version=0.0.4")).await;
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            body.contains("# TYPE kube_event_exporter_relists_total counter\n")
                && body.contains("\nkube_event_exporter_relists_total 1\n")
                && !body.contains("# EOF"),
            "{body}"
        );

        for accept in [None, Some("application/openmetrics-text; version=1.0.0")] {
            let (ctype, body) = scrape(accept).await;
            assert_eq!(ctype, OPENMETRICS, "{accept:?}");
            assert!(
                body.contains("# TYPE kube_event_exporter_relists counter\n")
                    && body.ends_with("# EOF\n"),
                "{body}"
            );
        }
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
