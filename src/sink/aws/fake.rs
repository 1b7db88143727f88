//! Unit tests' stand-in for an AWS service: an HTTP server on loopback that records each
//! request (its target or action, SigV4 header, body) and answers what the test's handler says,
//! so the receivers' reading of partial failures and errors can be driven precisely. Delivery
//! against a faithful server is tested with moto (tests/aws.rs).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::{Router, extract::State, routing::post};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Req {
    /// `X-Amz-Target` (JSON protocol) or the form's `Action` (query protocol).
    pub target: String,
    pub authorization: String,
    pub body: Vec<u8>,
}

impl Req {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON request")
    }

    /// The form's fields (query protocol).
    pub fn form(&self) -> Vec<(String, String)> {
        reqwest::Url::parse(&format!(
            "http://x/?{}",
            String::from_utf8_lossy(&self.body)
        ))
        .expect("a form")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
    }
}

/// What the server answers: a status and a body.
pub type Handler = Arc<dyn Fn(&Req, usize) -> (u16, String) + Send + Sync>;

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Req>>>,
    handler: Handler,
}

pub struct Fake {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    /// Starts a server answering with `handler(request, number of earlier requests)`.
    pub async fn start(handler: Handler) -> Fake {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            requests: requests.clone(),
            handler,
        };
        let app = Router::new()
            .route("/", post(serve))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url, requests }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// An AWS environment pointing every service here, with static keys.
    pub fn env(&self) -> impl Fn(&str) -> Option<String> + use<> {
        let url = self.url.clone();
        move |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            "AWS_ENDPOINT_URL" => Some(url.clone()),
            "AWS_REGION" => Some("us-east-1".into()),
            _ => None,
        }
    }
}

async fn serve(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut target = h("x-amz-target");
    if target.is_empty() {
        target = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "Action")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
    }
    let req = Req {
        target,
        authorization: h("authorization"),
        body: body.to_vec(),
    };
    let n = {
        let mut r = s.requests.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let (status, body) = (s.handler)(&req, n);
    (axum::http::StatusCode::from_u16(status).unwrap(), body)
}
