//! SigV4 (the signature is `aws-sigv4`'s), and the [`Signer`] elasticsearch/opensearch use for
//! Amazon OpenSearch: a region, a service name and a credentials [`Chain`].

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign as sigv4,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::credentials::{Chain, Source};
use super::endpoint;
use super::profile::Files;

/// Adds `x-amz-date`, `x-amz-security-token`, `authorization` (and `x-amz-content-sha256` when
/// `payload_header`) to `headers` for a request of `method` to `url` with `body` (the bytes
/// sent). Every header already in `headers` is signed.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    creds: &Credentials,
    region: &str,
    service: &str,
    payload_header: bool,
    method: &str,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    if payload_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4: {e}"))?
        .into();
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signable = SignableRequest::new(
        method,
        url,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4: {e}"))?;
    let (instructions, _) = sigv4(signable, &params)
        .map_err(|e| format!("SigV4: {e}"))?
        .into_parts();
    for (name, value) in instructions.headers() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let mut value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(())
}

/// Signs requests for one service in one region, fetching and refreshing credentials as needed.
/// Clones share the credentials.
#[derive(Clone)]
pub struct Signer {
    region: String,
    service: String,
    chain: Chain,
}

impl Signer {
    /// The region (`region`, else the environment, else the profile) and the credentials'
    /// source, from the environment `env` (`std::env::var` in production) and the shared files.
    pub fn new(
        region: Option<&str>,
        service: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Signer, String> {
        let files = Files::load(env)?;
        let profile = files.profile();
        let region = endpoint::region(region, env, profile.as_ref())?;
        let source = Source::resolve(env, &files, &region)?;
        Ok(Signer {
            region,
            service: service.to_owned(),
            chain: Chain::new(source),
        })
    }

    /// Signs (see [`sign`]) with the payload hash header, which OpenSearch Serverless requires.
    pub async fn sign(
        &mut self,
        client: &reqwest::Client,
        method: &str,
        url: &str,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let creds = self.chain.get(client).await?;
        sign(
            &creds,
            &self.region,
            &self.service,
            true,
            method,
            url,
            headers,
            body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_signed_with_the_body_hash_and_the_session_token() {
        let vars = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "session"),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut signer = Signer::new(Some("eu-west-1"), "aoss", &env).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-ndjson"),
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        signer
            .sign(
                &client,
                "POST",
                "https://x.eu-west-1.aoss.amazonaws.com/_bulk",
                &mut headers,
                b"{}\n",
            )
            .await
            .unwrap();
        let auth = headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/eu-west-1/aoss/aws4_request")
                && auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date"),
            "{auth}"
        );
        assert_eq!(
            headers["x-amz-content-sha256"],
            // sha256("{}\n")
            "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
        );
        assert_eq!(headers["x-amz-security-token"], "session");
        assert!(headers.contains_key("x-amz-date"));

        // Without the payload header (the JSON and query APIs), the hash is only in the
        // signature.
        let creds = Credentials::new("AK", "SK", None, None, "test");
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.SendMessageBatch"),
        );
        sign(
            &creds,
            "us-east-1",
            "sqs",
            false,
            "POST",
            "https://sqs.us-east-1.amazonaws.com/",
            &mut h,
            b"{}",
        )
        .unwrap();
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.contains("/us-east-1/sqs/aws4_request")
                && auth.contains("SignedHeaders=host;x-amz-date;x-amz-target"),
            "{auth}"
        );
        assert!(!h.contains_key("x-amz-content-sha256"));
    }
}
