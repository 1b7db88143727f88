//! One AWS service for one receiver: the HTTP client, the region, the endpoint, the credentials;
//! requests in the JSON protocol (`X-Amz-Target`, `application/x-amz-json-1.0/1.1`) and the query
//! protocol (form-encoded `Action=…`, XML answers), signed with SigV4; an answer's error read as
//! the service wrote it (`__type`/`message` in JSON, `<Error><Code>` in XML) and classified as
//! every HTTP answer is (`http::answer`), and then by its code: throttling and expired
//! credentials are retried whatever the status.

use std::time::Duration;

use aws_credential_types::Credentials;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::credentials::{Chain, Source};
use super::endpoint::{self, Service};
use super::profile::Files;
use super::signing::sign;
use super::xml;
use crate::sink::SendError;
use crate::sink::http;
use crate::sink::http::answer::{Answer, classify, snippet};
use crate::sink::kind::Problem;
use crate::telemetry::error_chain;

/// The process environment, as the AWS SDKs read it.
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// One AWS service's client. Cheap to clone: clones (a receiver's lanes) share the connections
/// and the credentials.
#[derive(Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    pub endpoint: reqwest::Url,
    pub region: String,
    pub service: &'static Service,
    chain: Chain,
}

impl AwsClient {
    /// Everything decided before the first request, from the receiver's `region` and the
    /// environment `env`: the region, the endpoint and the credentials' source. Problems are
    /// named `region` or `credentials`; nothing is fetched.
    pub fn build(
        service: &'static Service,
        region: Option<&str>,
        timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AwsClient, Vec<Problem>> {
        let files = Files::load(env).map_err(|why| vec![("credentials", why)])?;
        let profile = files.profile();
        let region =
            endpoint::region(region, env, profile.as_ref()).map_err(|why| vec![("region", why)])?;
        let mut problems = Vec::new();
        let url = match endpoint::endpoint(service, &region, env, profile.as_ref()) {
            Ok((url, from)) => match reqwest::Url::parse(&format!("{url}/")) {
                Ok(u) => Some(u),
                Err(e) => {
                    problems.push(("region", format!("{from}: {url}: {e}")));
                    None
                }
            },
            Err(why) => {
                problems.push(("region", format!("{} endpoint: {why}", service.name)));
                None
            }
        };
        let source = Source::resolve(env, &files, &region)
            .map_err(|why| problems.push(("credentials", why)))
            .ok();
        let http = http::client(timeout)
            .map_err(|why| problems.push(("region", why)))
            .ok();
        match (url, source, http) {
            (Some(endpoint), Some(source), Some(http)) if problems.is_empty() => Ok(AwsClient {
                http,
                endpoint,
                region,
                service,
                chain: Chain::new(source),
            }),
            _ => Err(problems),
        }
    }

    /// Where credentials come from, for logs.
    pub fn credentials_source(&self) -> String {
        self.chain.source().describe()
    }

    /// Valid credentials for the requests of one send (fetched or refreshed if needed; a
    /// failure is transient: the credentials' service may be back soon).
    pub async fn session(&mut self) -> Result<Session, SendError> {
        let creds = self
            .chain
            .get(&self.http)
            .await
            .map_err(|reason| SendError::Transient {
                reason,
                retry_after: None,
            })?;
        Ok(Session {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            service: self.service,
            creds,
        })
    }

    /// The service refused the credentials as expired: fetch new ones for the next attempt.
    pub fn invalidate_credentials(&mut self) {
        self.chain.invalidate();
    }

    /// A request that failed as a whole, as the worker takes it; credentials refused as expired
    /// are fetched again for the next attempt.
    pub fn failed(&mut self, e: &AwsError) -> SendError {
        if e.credentials_expired() {
            self.invalidate_credentials();
        }
        e.to_send_error()
    }
}

/// What the requests of one send need; cheap to clone, so requests can run concurrently.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    pub endpoint: reqwest::Url,
    region: String,
    service: &'static Service,
    creds: Credentials,
}

/// The JSON protocol's content types.
pub const JSON_1_0: &str = "application/x-amz-json-1.0";
pub const JSON_1_1: &str = "application/x-amz-json-1.1";

impl Session {
    /// A JSON-protocol call: `target` (`AmazonSQS.SendMessageBatch`) with `body`; the answer's
    /// JSON on success.
    pub async fn json(
        &self,
        target: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, AwsError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(target).expect("a valid target"),
        );
        let action = target.rsplit('.').next().unwrap_or(target);
        let answer = self.post(action, headers, body).await?;
        if answer.is_success() {
            let text = answer.text();
            return serde_json::from_str(&text).map_err(|e| AwsError {
                action: self.what(action),
                status: Some(answer.status),
                headers: answer.headers.clone(),
                code: String::new(),
                message: format!("the answer is not JSON ({e}): {}", snippet(&text)),
                sender_fault: false,
            });
        }
        Err(self.json_error(action, answer))
    }

    /// [`json`](Self::json) with a JSON `body`, as a batch API sends a request.
    pub fn call<'a>(
        &'a self,
        target: &'a str,
        content_type: &'static str,
        body: &serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, AwsError>> {
        let body = serde_json::to_vec(body).expect("JSON serializes");
        self.json(target, content_type, body).boxed()
    }

    /// A query-protocol call (SNS): `form` is the URL-encoded body with `Action` and `Version`;
    /// the answer's XML on success.
    pub async fn query(&self, action: &str, form: String) -> Result<String, AwsError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let answer = self.post(action, headers, form.into_bytes()).await?;
        let text = answer.text().into_owned();
        if answer.is_success() {
            return Ok(text);
        }
        let code = xml::text(&text, "Code").unwrap_or_default();
        let message = xml::text(&text, "Message").unwrap_or_else(|| snippet(&text));
        let sender_fault = xml::text(&text, "Type").is_some_and(|t| t == "Sender");
        Err(AwsError {
            action: self.what(action),
            status: Some(answer.status),
            headers: answer.headers,
            code,
            message,
            sender_fault,
        })
    }

    fn what(&self, action: &str) -> String {
        format!("{} {action} at {}", self.service.name, self.endpoint)
    }

    async fn post(
        &self,
        action: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, AwsError> {
        let transport = |message: String| AwsError {
            action: self.what(action),
            status: None,
            headers: HeaderMap::new(),
            code: String::new(),
            message,
            sender_fault: false,
        };
        sign(
            &self.creds,
            &self.region,
            self.service.signing_name,
            false,
            "POST",
            self.endpoint.as_str(),
            &mut headers,
            &body,
        )
        .map_err(transport)?;
        let resp = self
            .http
            .post(self.endpoint.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        Ok(Answer::read(resp).await)
    }

    fn json_error(&self, action: &str, answer: Answer) -> AwsError {
        let text = answer.text();
        let headers = &answer.headers;
        let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| {
            v.as_ref()
                .and_then(|v| v.get(k))
                .and_then(|x| x.as_str())
                .map(str::to_owned)
        };
        // `__type` is `com.amazonaws.sqs#QueueDoesNotExist` or `ResourceNotFoundException`;
        // `x-amzn-ErrorType` is `Code:http://…`.
        let code = field("__type")
            .or_else(|| field("code"))
            .or_else(|| {
                headers
                    .get("x-amzn-errortype")
                    .and_then(|h| h.to_str().ok())
                    .map(|h| h.split(':').next().unwrap_or(h).to_owned())
            })
            .map(|c| c.rsplit('#').next().unwrap_or(&c).to_owned())
            .unwrap_or_default();
        let message = field("message")
            .or_else(|| field("Message"))
            .unwrap_or_else(|| snippet(&text));
        // SQS also says who is at fault: `x-amzn-query-error: AWS.SimpleQueueService.…;Sender`.
        let sender_fault = headers
            .get("x-amzn-query-error")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.ends_with(";Sender"));
        AwsError {
            action: self.what(action),
            status: Some(answer.status),
            headers: answer.headers.clone(),
            code,
            message,
            sender_fault,
        }
    }
}

/// A failed call: no answer (`status` None), or the service's error.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// `SQS SendMessageBatch at https://…`.
    pub action: String,
    pub status: Option<StatusCode>,
    /// The answer's headers (`Retry-After`); empty without an answer.
    pub headers: HeaderMap,
    /// The service's error code (`ThrottlingException`), without a namespace.
    pub code: String,
    pub message: String,
    pub sender_fault: bool,
}

impl AwsError {
    /// Worth retrying: no answer, a 5xx, 429 or 408, throttling, expired credentials.
    pub fn transient(&self) -> bool {
        matches!(self.to_send_error(), SendError::Transient { .. })
    }

    /// The credentials were refused as expired or not yet valid (a clock or rotation race).
    pub fn credentials_expired(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ExpiredToken"
                | "ExpiredTokenException"
                | "RequestExpired"
                | "TokenRefreshRequired"
                | "InvalidClientTokenId"
                | "RequestTimeTooSkewed"
        )
    }

    pub fn reason(&self) -> String {
        self.to_send_error().reason().to_owned()
    }

    /// The answer classified as every HTTP answer is, then by the service's code: throttling and
    /// expired credentials are retried whatever the status. A 2xx here is an answer that could
    /// not be read, which the same request would not mend.
    pub fn to_send_error(&self) -> SendError {
        let Some(status) = self.status else {
            return SendError::Transient {
                reason: format!("{}: {}", self.action, self.message),
                retry_after: None,
            };
        };
        let detail = if self.code.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.code, self.message)
        };
        match classify(&self.action, status, &self.headers, &detail) {
            Ok(()) => SendError::Permanent {
                reason: format!("{} answered {status}: {detail}", self.action),
            },
            Err(SendError::Permanent { reason })
                if transient_code(&self.code) || self.credentials_expired() =>
            {
                SendError::Transient {
                    reason,
                    retry_after: None,
                }
            }
            Err(e) => e,
        }
    }
}

/// Error codes AWS services use for "slow down" and "try again", in answers and per entry of a
/// batch answer.
pub fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "Throttled"
            | "KMSThrottling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "KMSThrottlingException"
            | "KMS.ThrottlingException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "InternalFailure"
            | "InternalError"
            | "InternalErrorException"
            | "InternalServerError"
            | "InternalServerException"
            | "InternalException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "AWS.SimpleQueueService.RequestThrottled"
            | "TooManyUpdates"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str) -> AwsError {
        AwsError {
            action: "SQS SendMessageBatch at http://x/".into(),
            status: Some(StatusCode::from_u16(status).unwrap()),
            headers: HeaderMap::new(),
            code: code.into(),
            message: "m".into(),
            sender_fault: true,
        }
    }

    #[test]
    fn throttling_server_faults_and_expired_credentials_are_retried() {
        assert!(err(400, "ThrottlingException").transient());
        assert!(err(400, "ProvisionedThroughputExceededException").transient());
        assert!(err(400, "ExpiredToken").transient());
        assert!(err(500, "InternalFailure").transient());
        assert!(err(503, "").transient());
        assert!(!err(400, "QueueDoesNotExist").transient());
        assert!(!err(403, "AccessDeniedException").transient());
        assert!(!err(400, "ValidationException").transient());
        let none = AwsError {
            status: None,
            ..err(400, "")
        };
        assert!(none.transient());
        assert_eq!(
            err(400, "QueueDoesNotExist").reason(),
            "SQS SendMessageBatch at http://x/ answered 400 Bad Request: QueueDoesNotExist: m"
        );
    }
}
