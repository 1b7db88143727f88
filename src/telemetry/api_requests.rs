//! Counts every request the Kubernetes client makes (`api_requests_total{verb, resource, code}`):
//! what this exporter costs the API server, and what it is refused (403 in RBAC, 429 when
//! throttled), next to the request logs an API server's operator reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::Metrics;

/// The layer the client is built with (`cluster::client`).
#[derive(Clone)]
pub struct CountRequests {
    metrics: Metrics,
}

impl CountRequests {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (verb, resource) = classify(req.method(), req.uri());
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answer = answer.await;
            let code = match &answer {
                Ok(r) => r.status().as_str().to_owned(),
                // No answer: the connection, TLS or a timeout (the error says which).
                Err(_) => "none".to_owned(),
            };
            metrics.count_api_request(verb, &resource, &code);
            answer
        })
    }
}

/// The request's verb as RBAC and audit logs name it, and its resource (the last path segment
/// that names a collection: `events`, `leases`, `pods`, …; `discovery` for `/api`, `/apis`,
/// `/version`).
pub fn classify(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/…, /apis/{group}/{version}/…: what follows the version.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    // namespaces/{ns}/{resource}[/{name}[/{subresource}]], or {resource}[/{name}].
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("discovery".to_owned(), false),
        [resource] => ((*resource).to_owned(), false),
        [resource, _name, ..] => ((*resource).to_owned(), true),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named || resource == "discovery" => "get",
        http::Method::GET => "list",
        http::Method::PUT => "update",
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: &str, uri: &str) -> (&'static str, String) {
        classify(&method.parse().unwrap(), &uri.parse().unwrap())
    }

    #[test]
    fn requests_are_named_as_rbac_names_them() {
        let s = |(v, r): (&'static str, String)| format!("{v} {r}");
        assert_eq!(s(c("GET", "/api/v1/events?limit=500")), "list events");
        assert_eq!(
            s(c("GET", "/api/v1/events?watch=true&resourceVersion=5")),
            "watch events"
        );
        assert_eq!(
            s(c("GET", "/api/v1/namespaces/team-a/events?watch=1")),
            "watch events"
        );
        assert_eq!(
            s(c(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/kube-event-exporter"
            )),
            "update leases"
        );
        assert_eq!(
            s(c("GET", "/apis/apps/v1/namespaces/shop/deployments/web")),
            "get deployments"
        );
        assert_eq!(s(c("GET", "/api/v1/nodes/node-1")), "get nodes");
        assert_eq!(s(c("GET", "/api/v1/namespaces/shop")), "get namespaces");
        assert_eq!(s(c("GET", "/apis")), "get discovery");
        assert_eq!(s(c("GET", "/version")), "get discovery");
    }
}
