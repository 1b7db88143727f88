//! Google credentials shared by `pubsub`, `bigquery` and `cloudLogging`: an OAuth 2 access token
//! from a service-account key file (a JWT signed RS256, exchanged at the key's `token_uri`), or
//! from the metadata server (GKE workload identity, GCE), or none at all (an emulator).
//!
//! Which one: the receiver's key-file key (`credentialsFile`, bigquery's `credentials_path`), else
//! `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server (`GCE_METADATA_HOST` overrides its
//! address, as Google's libraries do). A key file is read and its key parsed when the receiver is
//! checked, so `check-config` names a missing or broken file; nothing connects before the first
//! send. Tokens are cached until five minutes before they expire; a 401 from an API drops the
//! cached one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use crate::sink::SendError;
use crate::sink::http;
use crate::sink::http::answer::snippet;
use crate::telemetry::error_chain;

/// What every receiver kind here asks for (Pub/Sub, BigQuery and Logging all accept it).
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// How long before its expiry a token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where tokens come from, decided when the receiver is built.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// A service-account key file; `from_env` when it was named by `GOOGLE_APPLICATION_CREDENTIALS`.
    KeyFile { path: String, from_env: bool },
    /// The metadata server at this `host[:port]`.
    Metadata { host: String },
    /// No token (an emulator, `PUBSUB_EMULATOR_HOST`).
    None,
}

impl CredentialSource {
    /// The key file configured, else `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server.
    pub fn resolve(configured: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        if let Some(path) = configured {
            return Self::KeyFile {
                path: path.to_owned(),
                from_env: false,
            };
        }
        if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
            return Self::KeyFile {
                path,
                from_env: true,
            };
        }
        let host = env("GCE_METADATA_HOST")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
        Self::Metadata { host }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::KeyFile { path, from_env } if *from_env => {
                format!("the key file {path} (GOOGLE_APPLICATION_CREDENTIALS)")
            }
            Self::KeyFile { path, .. } => format!("the key file {path}"),
            Self::Metadata { host } => format!("the metadata server {host}"),
            Self::None => "no credentials (emulator)".to_owned(),
        }
    }
}

/// A service-account key, parsed.
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    pub project_id: Option<String>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFileJson {
    #[serde(rename = "type")]
    type_: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
}

impl ServiceAccountKey {
    /// Reads and parses a key file. The error says what is wrong without printing the key.
    pub fn read(path: &str) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Self::parse(&text).map_err(|why| format!("{path}: {why}"))
    }

    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let json: KeyFileJson = serde_json::from_slice(text)
            .map_err(|e| format!("not a service-account key file (JSON): {e}"))?;
        match json.type_.as_deref() {
            Some("service_account") => {}
            Some(other) => {
                return Err(format!(
                    "credentials of type {other:?} are not supported: use a service-account key \
                     (type \"service_account\") or workload identity (no key file)"
                ));
            }
            None => return Err("no \"type\": not a service-account key file".to_owned()),
        }
        let client_email = json
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or("no \"client_email\"")?;
        let pem = json.private_key.ok_or("no \"private_key\"")?;
        let key = parse_private_key(&pem)?;
        Ok(Self {
            client_email,
            private_key_id: json.private_key_id.filter(|k| !k.is_empty()),
            token_uri: json
                .token_uri
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            project_id: json.project_id.filter(|p| !p.is_empty()),
            key,
        })
    }

    /// The signed assertion for the JWT-bearer grant (RFC 7523), valid for an hour from `now`.
    pub fn assertion(&self, scope: &str, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// A PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what Google's key files hold) or PKCS#1.
fn parse_private_key(pem: &str) -> Result<RsaKeyPair, String> {
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "\"private_key\" is not a PEM key".to_owned())?;
    let parsed = if pkcs1 {
        RsaKeyPair::from_der(&der)
    } else {
        RsaKeyPair::from_pkcs8(&der)
    };
    parsed.map_err(|e| format!("\"private_key\" is not a usable RSA key: {e}"))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

enum Source {
    Key(Box<ServiceAccountKey>),
    Metadata(String),
    None,
}

/// Access tokens for one receiver, cached. Clones (the receiver's lanes) share the cache, so one
/// exchange serves them all.
#[derive(Clone)]
pub struct Tokens {
    source: Arc<Source>,
    /// For logs and errors.
    describe: String,
    client: reqwest::Client,
    cached: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
    project: Option<String>,
}

impl Tokens {
    /// Reads the key file when there is one (an error names the file and what is wrong).
    pub fn build(source: &CredentialSource, timeout: Duration) -> Result<Self, String> {
        let client = http::client(timeout)?;
        let (inner, project) = match source {
            CredentialSource::KeyFile { path, .. } => {
                let key = ServiceAccountKey::read(path)?;
                let project = key.project_id.clone();
                (Source::Key(Box::new(key)), project)
            }
            CredentialSource::Metadata { host } => (Source::Metadata(host.clone()), None),
            CredentialSource::None => (Source::None, None),
        };
        Ok(Self {
            source: Arc::new(inner),
            describe: source.describe(),
            client,
            cached: Arc::default(),
            project,
        })
    }

    /// The `Authorization` value, or None without credentials (an emulator).
    pub async fn authorization(&self) -> Result<Option<String>, SendError> {
        if matches!(*self.source, Source::None) {
            return Ok(None);
        }
        // Lanes that ask while one exchanges wait for its token.
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(Some(format!("Bearer {token}")));
        }
        let (token, expires_in) = self.fetch().await?;
        // Replaced five minutes before expiry (or at half its life when shorter than ten).
        let life = Duration::from_secs(expires_in.unwrap_or(3600));
        let keep = if life > 2 * REFRESH_MARGIN {
            life - REFRESH_MARGIN
        } else {
            life / 2
        };
        *cached = Some((token.clone(), Instant::now() + keep));
        Ok(Some(format!("Bearer {token}")))
    }

    /// Forgets the cached token (the API answered 401). When another lane holds the cache, it is
    /// exchanging a new one right now: nothing to forget.
    pub fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.try_lock() {
            *cached = None;
        }
    }

    /// Getting a token fails transiently: a metadata server or token endpoint that is down, or a
    /// key that was revoked, holds the queue (and is logged with the reason) rather than drop.
    async fn fetch(&self) -> Result<(String, Option<u64>), SendError> {
        let fail = |why: String| SendError::Transient {
            reason: format!("access token from {}: {why}", self.describe),
            retry_after: None,
        };
        let req = match &*self.source {
            Source::Key(key) => {
                let now = jiff::Timestamp::now().as_second().max(0) as u64;
                let assertion = key.assertion(SCOPE, now).map_err(fail)?;
                let body = format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                );
                self.client
                    .post(&key.token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            Source::Metadata(host) => self
                .client
                .get(format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .header("metadata-flavor", "Google"),
            Source::None => unreachable!("no token is fetched without credentials"),
        };
        let body = answered(req, false, fail).await?;
        let answer: TokenAnswer = serde_json::from_str(&body)
            .map_err(|e| fail(format!("unexpected answer ({e}): {}", snippet(&body))))?;
        Ok((answer.access_token, answer.expires_in))
    }

    /// The project: `configured`, else the key file's `project_id`, else the metadata server's.
    pub async fn project(&mut self, configured: Option<&str>) -> Result<String, SendError> {
        if let Some(p) = configured {
            return Ok(p.to_owned());
        }
        if let Some(p) = &self.project {
            return Ok(p.clone());
        }
        let p = self.metadata("project/project-id").await?;
        self.project = Some(p.clone());
        Ok(p)
    }

    /// A value of the metadata server (`project/project-id`, `instance/attributes/cluster-name`).
    /// Transient on failure, naming what to configure instead.
    pub async fn metadata(&self, path: &str) -> Result<String, SendError> {
        let host = match &*self.source {
            Source::Metadata(host) => host.clone(),
            _ => std::env::var("GCE_METADATA_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned()),
        };
        let fail = |why: String| SendError::Transient {
            reason: format!("{path} from the metadata server {host}: {why}"),
            retry_after: None,
        };
        let req = self
            .client
            .get(format!("http://{host}/computeMetadata/v1/{path}"))
            .header("metadata-flavor", "Google");
        Ok(answered(req, true, fail).await?.trim().to_owned())
    }
}

/// The body of a 2xx answer to `req` (not blank, when `needs_body`). Anything else is `fail`ed:
/// every failure to get credentials or the cluster's place is transient, unlike an API's answer
/// (a revoked key or a metadata server that is down holds the queue, logged, rather than drop).
async fn answered(
    req: reqwest::RequestBuilder,
    needs_body: bool,
    fail: impl Fn(String) -> SendError,
) -> Result<String, SendError> {
    let resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| fail(error_chain(&e)))?;
    if !status.is_success() || (needs_body && body.trim().is_empty()) {
        return Err(fail(format!("answered {status}: {}", snippet(&body))));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_configured_file_then_the_environment_then_the_metadata_server() {
        let none = |_: &str| None;
        assert_eq!(
            CredentialSource::resolve(Some("/k.json"), &none),
            CredentialSource::KeyFile {
                path: "/k.json".into(),
                from_env: false
            }
        );
        let env = |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| "/e.json".to_owned());
        assert_eq!(
            CredentialSource::resolve(None, &env),
            CredentialSource::KeyFile {
                path: "/e.json".into(),
                from_env: true
            }
        );
        let env = |k: &str| (k == "GCE_METADATA_HOST").then(|| "127.0.0.1:1".to_owned());
        assert_eq!(
            CredentialSource::resolve(None, &env),
            CredentialSource::Metadata {
                host: "127.0.0.1:1".into()
            }
        );
        assert_eq!(
            CredentialSource::resolve(None, &none),
            CredentialSource::Metadata {
                host: DEFAULT_METADATA_HOST.into()
            }
        );
    }

    #[test]
    fn a_key_file_that_is_not_a_service_account_key_is_named_without_printing_it() {
        let err =
            ServiceAccountKey::parse(br#"{"type":"authorized_user","client_id":"x"}"#).unwrap_err();
        assert!(
            err.contains("\"authorized_user\" are not supported"),
            "{err}"
        );
        let err = ServiceAccountKey::parse(
            br#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap_err();
        assert!(err.contains("not a usable RSA key"), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
        let err = ServiceAccountKey::parse(b"not json").unwrap_err();
        assert!(err.contains("not a service-account key file"), "{err}");
    }
}
