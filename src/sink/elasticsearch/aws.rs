//! AWS SigV4 for Amazon OpenSearch Service (`es`) and Serverless (`aoss`): the signature is
//! `aws-sigv4`'s; the credentials come from the standard environment, in the SDKs' order:
//!
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`),
//! 2. web identity (IRSA on EKS): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`
//!    (+ `AWS_ROLE_SESSION_NAME`), exchanged at STS (`AssumeRoleWithWebIdentity`, regional
//!    endpoint, or `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`); the token file is re-read at
//!    every refresh, as the kubelet rotates it,
//! 3. the container endpoint (EKS Pod Identity, ECS): `AWS_CONTAINER_CREDENTIALS_FULL_URI` or
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`.
//!
//! Temporary credentials are refreshed five minutes before they expire. Not supported: the
//! shared `~/.aws` config/credentials files and the EC2 instance metadata service.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::config::AwsConfig;
use crate::telemetry::error_chain;

/// Refresh temporary credentials this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Static {
        access_key: String,
        secret_key: String,
        session_token: Option<String>,
    },
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        sts: String,
    },
    Container {
        url: String,
        token: Option<String>,
        token_file: Option<PathBuf>,
    },
}

impl Source {
    /// Where credentials come from, from the environment `env` (`std::env::var` in production).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, region: &str) -> Result<Source, String> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(access_key) = var("AWS_ACCESS_KEY_ID") {
            let secret_key = var("AWS_SECRET_ACCESS_KEY")
                .ok_or("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY")?;
            return Ok(Source::Static {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
            });
        }
        if let Some(token_file) = var("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role_arn = var("AWS_ROLE_ARN")
                .ok_or("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN")?;
            let sts = var("AWS_ENDPOINT_URL_STS")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| {
                    let suffix = if region.starts_with("cn-") {
                        "amazonaws.com.cn"
                    } else {
                        "amazonaws.com"
                    };
                    format!("https://sts.{region}.{suffix}")
                });
            return Ok(Source::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
                    format!(
                        "kube-event-exporter-{}",
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis()
                    )
                }),
                sts: sts.trim_end_matches('/').to_owned(),
            });
        }
        let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|p| format!("http://169.254.170.2{p}"))
        });
        if let Some(url) = container {
            return Ok(Source::Container {
                url,
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            });
        }
        Err("no AWS credentials in the environment: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             or AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN (IRSA), or AWS_CONTAINER_CREDENTIALS_FULL_URI \
             (EKS Pod Identity); ~/.aws files and the EC2 instance metadata service are not read"
            .to_owned())
    }

    fn describe(&self) -> &'static str {
        match self {
            Source::Static { .. } => "environment",
            Source::WebIdentity { .. } => "web identity",
            Source::Container { .. } => "container endpoint",
        }
    }
}

/// The region of `cfg`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub fn region(cfg: &AwsConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    cfg.region
        .clone()
        .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
        .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
        .ok_or_else(|| "no region: set aws.region, or AWS_REGION".to_owned())
}

/// Signs requests, fetching and refreshing credentials as needed.
pub struct Signer {
    region: String,
    service: String,
    source: Source,
    cached: Option<(Credentials, Option<SystemTime>)>,
}

impl Signer {
    pub fn new(cfg: &AwsConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Signer, String> {
        let region = region(cfg, env)?;
        let source = Source::from_env(env, &region)?;
        Ok(Signer {
            region,
            service: cfg.service.clone(),
            source,
            cached: None,
        })
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` and `authorization` to
    /// `headers` for a request of `method` to `url` with `body` (the bytes sent, compressed or
    /// not). Every header already in `headers` is signed.
    pub async fn sign(
        &mut self,
        client: &reqwest::Client,
        method: &str,
        url: &str,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let creds = self.credentials(client).await?;
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        // Serverless requires the payload hash header; the managed service accepts it.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
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
        let (instructions, _) = sign(signable, &params)
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

    async fn credentials(&mut self, client: &reqwest::Client) -> Result<Credentials, String> {
        if let Some((c, expiry)) = &self.cached
            && expiry.is_none_or(|e| SystemTime::now() + REFRESH_BEFORE < e)
        {
            return Ok(c.clone());
        }
        let (creds, expiry) = fetch(&self.source, client)
            .await
            .map_err(|why| format!("AWS credentials ({}): {why}", self.source.describe()))?;
        self.cached = Some((creds.clone(), expiry));
        Ok(creds)
    }
}

async fn fetch(
    source: &Source,
    client: &reqwest::Client,
) -> Result<(Credentials, Option<SystemTime>), String> {
    match source {
        Source::Static {
            access_key,
            secret_key,
            session_token,
        } => Ok((
            Credentials::new(
                access_key,
                secret_key,
                session_token.clone(),
                None,
                "environment",
            ),
            None,
        )),
        Source::WebIdentity {
            token_file,
            role_arn,
            session_name,
            sts,
        } => {
            let token = std::fs::read_to_string(token_file)
                .map_err(|e| format!("cannot read {}: {e}", token_file.display()))?;
            let mut form = reqwest::Url::parse("http://form/").expect("a valid URL");
            form.query_pairs_mut()
                .append_pair("Action", "AssumeRoleWithWebIdentity")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", role_arn)
                .append_pair("RoleSessionName", session_name)
                .append_pair("WebIdentityToken", token.trim());
            let resp = client
                .post(format!("{sts}/"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.query().unwrap_or("").to_owned())
                .send()
                .await
                .map_err(|e| format!("POST {sts}: {}", error_chain(&e)))?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| format!("POST {sts}: {}", error_chain(&e)))?;
            if !status.is_success() {
                let code = xml_text(&text, "Code").unwrap_or_default();
                let message = xml_text(&text, "Message").unwrap_or_default();
                return Err(format!(
                    "AssumeRoleWithWebIdentity at {sts} answered {status}: {code} {message}"
                ));
            }
            let get = |tag: &str| {
                xml_text(&text, tag)
                    .ok_or_else(|| format!("AssumeRoleWithWebIdentity answer without <{tag}>"))
            };
            let expiry = parse_expiry(&get("Expiration")?)?;
            Ok((
                Credentials::new(
                    get("AccessKeyId")?,
                    get("SecretAccessKey")?,
                    Some(get("SessionToken")?),
                    Some(expiry),
                    "web-identity",
                ),
                Some(expiry),
            ))
        }
        Source::Container {
            url,
            token,
            token_file,
        } => {
            let mut req = client.get(url);
            let token = match token_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                ),
                None => token.clone(),
            };
            if let Some(t) = token {
                req = req.header("authorization", t.trim());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!("GET {url} answered {status}"));
            }
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
            let s = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("GET {url}: no {k} in the answer"))
            };
            let expiry = match v.get("Expiration").and_then(|x| x.as_str()) {
                Some(e) => Some(parse_expiry(e)?),
                None => None,
            };
            Ok((
                Credentials::new(
                    s("AccessKeyId")?,
                    s("SecretAccessKey")?,
                    s("Token").ok(),
                    expiry,
                    "container",
                ),
                expiry,
            ))
        }
    }
}

fn parse_expiry(s: &str) -> Result<SystemTime, String> {
    let t: jiff::Timestamp = s
        .trim()
        .parse()
        .map_err(|e| format!("expiration {s:?}: {e}"))?;
    Ok(SystemTime::from(t))
}

/// The text of the first `<tag>…</tag>` of an XML document, entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credentials_are_found_in_the_sdk_order() {
        let both = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ];
        assert!(matches!(
            Source::from_env(&env(&both), "eu-west-1").unwrap(),
            Source::Static { .. }
        ));
        let irsa = &both[2..];
        match Source::from_env(&env(irsa), "eu-west-1").unwrap() {
            Source::WebIdentity { sts, role_arn, .. } => {
                assert_eq!(sts, "https://sts.eu-west-1.amazonaws.com");
                assert_eq!(role_arn, "arn:aws:iam::1:role/r");
            }
            s => panic!("{s:?}"),
        }
        let pod_identity = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/pod-identity/token",
            ),
        ];
        assert!(matches!(
            Source::from_env(&env(&pod_identity), "eu-west-1").unwrap(),
            Source::Container { .. }
        ));
        let e = Source::from_env(&env(&[]), "eu-west-1").unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID") && e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        let e = Source::from_env(&env(&both[2..3]), "eu-west-1").unwrap_err();
        assert!(e.contains("AWS_ROLE_ARN"), "{e}");
    }

    #[test]
    fn region_from_the_config_then_the_environment() {
        let cfg = |r: Option<&str>| AwsConfig {
            region: r.map(str::to_owned),
            service: "es".into(),
        };
        let vars = [("AWS_DEFAULT_REGION", "us-west-2")];
        assert_eq!(
            region(&cfg(Some("eu-central-1")), &env(&vars)).unwrap(),
            "eu-central-1"
        );
        assert_eq!(region(&cfg(None), &env(&vars)).unwrap(), "us-west-2");
        assert!(region(&cfg(None), &env(&[])).is_err());
    }

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
        let cfg = AwsConfig {
            region: Some("eu-west-1".into()),
            service: "aoss".into(),
        };
        let mut signer = Signer::new(&cfg, &env(&vars)).unwrap();
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
    }

    #[test]
    fn sts_answers_are_read() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>tok&amp;en</SessionToken><SecretAccessKey>sk</SecretAccessKey>\
            <Expiration>2030-10-24T23:00:23Z</Expiration><AccessKeyId>ASIA</AccessKeyId>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_text(xml, "SessionToken").unwrap(), "tok&en");
        assert_eq!(xml_text(xml, "AccessKeyId").unwrap(), "ASIA");
        assert!(parse_expiry(&xml_text(xml, "Expiration").unwrap()).is_ok());
        assert_eq!(xml_text(xml, "Nope"), None);
    }
}
