//! AWS credentials from the standard chain, in the SDKs' order (the first source that is
//! configured is used; one that is configured but fails is an error, not a fall-through):
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. the shared files' profile (`AWS_PROFILE`, else `default`; see profile.rs): static keys
//!    (`aws_access_key_id`…), web identity (`role_arn` + `web_identity_token_file`) or
//!    `credential_process`;
//! 3. web identity (IRSA on EKS): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`
//!    (+ `AWS_ROLE_SESSION_NAME`), exchanged at STS (`AssumeRoleWithWebIdentity`, the regional
//!    endpoint or `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`); the token file is re-read at every
//!    refresh, as the kubelet rotates it;
//! 4. the container endpoint (EKS Pod Identity, ECS): `AWS_CONTAINER_CREDENTIALS_FULL_URI` or
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`;
//! 5. the EC2 instance metadata service (IMDSv2 with a session token, IMDSv1 when the token is
//!    not offered), unless `AWS_EC2_METADATA_DISABLED` is true; `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!    overrides its address.
//!
//! Choosing the source reads only the environment and the files: nothing is fetched before the
//! first request. Temporary credentials are refreshed five minutes before they expire, and at
//! once after the service said they expired. Not supported (an error naming them): profiles that
//! assume a role from another profile (`source_profile`, `credential_source`) and SSO profiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::endpoint::{self, STS};
use super::profile::{Files, Profile};
use super::xml;
use crate::sink::http::answer::snippet;
use crate::telemetry::error_chain;

/// Refresh temporary credentials this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The instance metadata service answers locally: a host without one should fail fast.
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const IMDS_DEFAULT: &str = "http://169.254.169.254";

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Static {
        access_key: String,
        secret_key: String,
        session_token: Option<String>,
        /// `environment`, or `profile NAME`.
        origin: String,
    },
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        /// STS's endpoint (no trailing `/`).
        sts: String,
        origin: String,
    },
    Process {
        command: String,
        origin: String,
    },
    Container {
        url: String,
        token: Option<String>,
        token_file: Option<PathBuf>,
    },
    Imds {
        endpoint: String,
    },
}

impl Source {
    /// The first configured source (see the module docs), for services in `region`. `env` is
    /// the process environment (`std::env::var` in production), `files` the shared files.
    pub fn resolve(
        env: &dyn Fn(&str) -> Option<String>,
        files: &Files,
        region: &str,
    ) -> Result<Source, String> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(access_key) = var("AWS_ACCESS_KEY_ID") {
            let secret_key = var("AWS_SECRET_ACCESS_KEY")
                .ok_or("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY")?;
            return Ok(Source::Static {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
                origin: "environment".to_owned(),
            });
        }
        let profile = files.profile();
        if profile.is_none() && files.explicit {
            return Err(format!(
                "AWS_PROFILE {:?} is in neither file ({})",
                files.selected,
                files.describe()
            ));
        }
        if let Some(p) = &profile
            && let Some(source) = from_profile(p, env, region)?
        {
            return Ok(source);
        }
        if let Some(token_file) = var("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role_arn = var("AWS_ROLE_ARN")
                .ok_or("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN")?;
            return Ok(Source::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(session_name),
                sts: sts_endpoint(env, profile.as_ref(), region)?,
                origin: "web identity".to_owned(),
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
        let disabled =
            var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if disabled {
            return Err(format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile \
                 with credentials ({}), or AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN (IRSA), or \
                 AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity); the instance metadata \
                 service is disabled (AWS_EC2_METADATA_DISABLED)",
                files.describe()
            ));
        }
        let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .or_else(|| {
                profile
                    .as_ref()
                    .and_then(|p| p.get("ec2_metadata_service_endpoint"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| IMDS_DEFAULT.to_owned());
        Ok(Source::Imds {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Static { origin, .. } => origin.clone(),
            Source::WebIdentity { origin, .. } => origin.clone(),
            Source::Process { origin, .. } => origin.clone(),
            Source::Container { .. } => "container endpoint".to_owned(),
            Source::Imds { .. } => "instance metadata".to_owned(),
        }
    }
}

fn session_name() -> String {
    format!(
        "kube-event-exporter-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    )
}

fn sts_endpoint(
    env: &dyn Fn(&str) -> Option<String>,
    profile: Option<&Profile>,
    region: &str,
) -> Result<String, String> {
    endpoint::endpoint(&STS, region, env, profile)
        .map(|(url, _)| url)
        .map_err(|why| format!("STS endpoint (for web identity): {why}"))
}

/// The profile's own credentials, if it has any (a profile with only a region is not a source).
fn from_profile(
    p: &Profile,
    env: &dyn Fn(&str) -> Option<String>,
    region: &str,
) -> Result<Option<Source>, String> {
    let origin = format!("profile {}", p.name);
    if p.get("sso_session").is_some() || p.get("sso_start_url").is_some() {
        return Err(format!(
            "{origin} uses AWS SSO, which is not supported: use web identity (IRSA), EKS Pod \
             Identity, or keys"
        ));
    }
    if let Some(role_arn) = p.get("role_arn") {
        if let Some(token_file) = p.get("web_identity_token_file") {
            return Ok(Some(Source::WebIdentity {
                token_file: token_file.into(),
                role_arn: role_arn.to_owned(),
                session_name: p
                    .get("role_session_name")
                    .map(str::to_owned)
                    .unwrap_or_else(session_name),
                sts: sts_endpoint(env, Some(p), region)?,
                origin,
            }));
        }
        return Err(format!(
            "{origin} assumes role {role_arn} from source_profile/credential_source, which is not \
             supported: use web identity (role_arn with web_identity_token_file, or IRSA), EKS Pod \
             Identity, or keys"
        ));
    }
    if let Some(command) = p.get("credential_process") {
        return Ok(Some(Source::Process {
            command: command.to_owned(),
            origin: format!("credential_process of {origin}"),
        }));
    }
    if let Some(access_key) = p.get("aws_access_key_id") {
        let secret_key = p.get("aws_secret_access_key").ok_or_else(|| {
            format!("{origin} has aws_access_key_id without aws_secret_access_key")
        })?;
        return Ok(Some(Source::Static {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            session_token: p.get("aws_session_token").map(str::to_owned),
            origin,
        }));
    }
    Ok(None)
}

/// A source and the credentials it last gave.
#[derive(Debug)]
/// Credentials from a source, cached until five minutes before they expire. Cheap to clone: the
/// clones (a receiver's concurrent lanes) share one cache, so one fetch serves them all.
#[derive(Clone)]
pub struct Chain {
    source: Arc<Source>,
    cached: Arc<tokio::sync::Mutex<Option<Cached>>>,
}

/// Credentials and when they expire (None: never, static ones).
type Cached = (Credentials, Option<SystemTime>);

impl Chain {
    pub fn new(source: Source) -> Chain {
        Chain {
            source: Arc::new(source),
            cached: Arc::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Valid credentials, fetched when there are none or they expire within five minutes. Lanes
    /// that ask meanwhile wait for the one fetch.
    pub async fn get(&self, client: &reqwest::Client) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = &*cached
            && expiry.is_none_or(|e| SystemTime::now() + REFRESH_BEFORE < e)
        {
            return Ok(c.clone());
        }
        let (creds, expiry) = fetch(&self.source, client)
            .await
            .map_err(|why| format!("AWS credentials ({}): {why}", self.source.describe()))?;
        *cached = Some((creds.clone(), expiry));
        Ok(creds)
    }

    /// The service said the credentials expired or are invalid: fetch anew next time (static
    /// ones are kept; they cannot change).
    /// When another lane holds the cache, it is fetching new ones right now: nothing to forget.
    pub fn invalidate(&self) {
        if !matches!(*self.source, Source::Static { .. })
            && let Ok(mut cached) = self.cached.try_lock()
        {
            *cached = None;
        }
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
            ..
        } => Ok((
            Credentials::new(
                access_key,
                secret_key,
                session_token.clone(),
                None,
                "static",
            ),
            None,
        )),
        Source::WebIdentity {
            token_file,
            role_arn,
            session_name,
            sts,
            ..
        } => web_identity(client, token_file, role_arn, session_name, sts).await,
        Source::Process { command, .. } => process(command).await,
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
            let text = get_text(req, url).await?;
            json_credentials(&text, url, "Token", "container")
        }
        Source::Imds { endpoint } => imds(client, endpoint).await,
    }
}

async fn get_text(req: reqwest::RequestBuilder, what: &str) -> Result<String, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{what} answered {status}: {}", snippet(&text)));
    }
    Ok(text)
}

async fn web_identity(
    client: &reqwest::Client,
    token_file: &std::path::Path,
    role_arn: &str,
    session_name: &str,
    sts: &str,
) -> Result<(Credentials, Option<SystemTime>), String> {
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
        let code = xml::text(&text, "Code").unwrap_or_default();
        let message = xml::text(&text, "Message").unwrap_or_default();
        return Err(format!(
            "AssumeRoleWithWebIdentity at {sts} answered {status}: {code} {message}"
        ));
    }
    let get = |tag: &str| {
        xml::text(&text, tag)
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

/// `credential_process`: the command (through `sh -c`, as the SDKs run it) prints
/// `{"Version": 1, "AccessKeyId": …, "SecretAccessKey": …, "SessionToken": …, "Expiration": …}`.
async fn process(command: &str) -> Result<(Credentials, Option<SystemTime>), String> {
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| format!("{command:?} did not finish within 60 s"))?
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{command:?} exited with {}: {}",
            out.status,
            stderr.trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{command:?}: not JSON: {e}"))?;
    if v.get("Version").and_then(|x| x.as_i64()) != Some(1) {
        return Err(format!(
            "{command:?}: expected \"Version\": 1 in its output"
        ));
    }
    json_credentials(&text, command, "SessionToken", "process")
}

/// Credentials in the JSON shape of the container endpoint, IMDS and `credential_process`:
/// `AccessKeyId`, `SecretAccessKey`, the session token under `token_key`, `Expiration`.
fn json_credentials(
    text: &str,
    what: &str,
    token_key: &str,
    provider: &'static str,
) -> Result<(Credentials, Option<SystemTime>), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{what}: not JSON: {e}"))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
    };
    let need = |k: &str| s(k).ok_or_else(|| format!("{what}: no {k} in the answer"));
    let expiry = match s("Expiration") {
        Some(e) => Some(parse_expiry(&e)?),
        None => None,
    };
    Ok((
        Credentials::new(
            need("AccessKeyId")?,
            need("SecretAccessKey")?,
            s(token_key),
            expiry,
            provider,
        ),
        expiry,
    ))
}

/// IMDSv2: a session token (PUT), the role name, then its credentials.
async fn imds(
    client: &reqwest::Client,
    endpoint: &str,
) -> Result<(Credentials, Option<SystemTime>), String> {
    let token_url = format!("{endpoint}/latest/api/token");
    let token = client
        .put(&token_url)
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .timeout(IMDS_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("PUT {token_url}: {}", error_chain(&e)))?;
    let token = match token.status().as_u16() {
        200 => Some(token.text().await.unwrap_or_default()),
        // IMDSv1 only.
        404 | 405 => None,
        s => {
            return Err(format!(
                "PUT {token_url} answered {s} (is the instance metadata service reachable from \
                 this pod? IMDSv2 needs a hop limit of 2 in containers)"
            ));
        }
    };
    let get = |path: String| {
        let mut req = client.get(path.clone()).timeout(IMDS_TIMEOUT);
        if let Some(t) = &token {
            req = req.header("x-aws-ec2-metadata-token", t.trim());
        }
        async move { get_text(req, &path).await }
    };
    let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let roles = get(base.clone()).await?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| format!("GET {base}: the instance has no IAM role"))?;
    let url = format!("{base}{role}");
    let text = get(url.clone()).await?;
    json_credentials(&text, &url, "Token", "imds")
}

pub fn parse_expiry(s: &str) -> Result<SystemTime, String> {
    let t: jiff::Timestamp = s
        .trim()
        .parse()
        .map_err(|e| format!("expiration {s:?}: {e}"))?;
    Ok(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sink::testing::vars as env;

    fn resolve(vars: &[(&str, &str)], files: &Files) -> Result<Source, String> {
        Source::resolve(&env(vars), files, "eu-west-1")
    }

    #[test]
    fn credentials_are_found_in_the_sdk_order() {
        let none = Files::default();
        let both = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ];
        assert!(matches!(
            resolve(&both, &none).unwrap(),
            Source::Static { .. }
        ));
        match resolve(&both[2..], &none).unwrap() {
            Source::WebIdentity { sts, role_arn, .. } => {
                assert_eq!(sts, "https://sts.eu-west-1.amazonaws.com");
                assert_eq!(role_arn, "arn:aws:iam::1:role/r");
            }
            s => panic!("{s:?}"),
        }
        let mut sts = both[2..].to_vec();
        sts.push(("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/"));
        match resolve(&sts, &none).unwrap() {
            Source::WebIdentity { sts, .. } => assert_eq!(sts, "http://127.0.0.1:9"),
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
            resolve(&pod_identity, &none).unwrap(),
            Source::Container { .. }
        ));
        assert_eq!(
            resolve(&[], &none).unwrap(),
            Source::Imds {
                endpoint: IMDS_DEFAULT.into()
            }
        );
        let e = resolve(&[("AWS_EC2_METADATA_DISABLED", "true")], &none).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID") && e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        let e = resolve(&both[2..3], &none).unwrap_err();
        assert!(e.contains("AWS_ROLE_ARN"), "{e}");
    }

    #[test]
    fn a_profile_comes_after_the_environment_and_before_web_identity() {
        let mut files = Files::empty("default", false);
        files.add_credentials("[default]\naws_access_key_id = P\naws_secret_access_key = S\n");
        let irsa = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ];
        match resolve(&irsa, &files).unwrap() {
            Source::Static {
                access_key, origin, ..
            } => assert_eq!(
                (access_key.as_str(), origin.as_str()),
                ("P", "profile default")
            ),
            s => panic!("{s:?}"),
        }
        let env_keys = [("AWS_ACCESS_KEY_ID", "E"), ("AWS_SECRET_ACCESS_KEY", "S")];
        assert!(matches!(
            resolve(&env_keys, &files).unwrap(),
            Source::Static { origin, .. } if origin == "environment"
        ));
        let mut files = Files::empty("ci", true);
        assert!(resolve(&[], &files).unwrap_err().contains("\"ci\""));
        files.add_config(
            "[profile ci]\nrole_arn = arn:aws:iam::1:role/ci\nweb_identity_token_file = /tok\n",
        );
        assert!(matches!(
            resolve(&[], &files).unwrap(),
            Source::WebIdentity { origin, .. } if origin == "profile ci"
        ));
        files.add_config("[profile sso]\nsso_session = corp\n[profile chained]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = ci\n[profile proc]\ncredential_process = /bin/creds --json\n");
        files.selected = "sso".into();
        assert!(resolve(&[], &files).unwrap_err().contains("SSO"));
        files.selected = "chained".into();
        assert!(resolve(&[], &files).unwrap_err().contains("source_profile"));
        files.selected = "proc".into();
        assert!(matches!(
            resolve(&[], &files).unwrap(),
            Source::Process { command, .. } if command == "/bin/creds --json"
        ));
    }

    #[tokio::test]
    async fn credential_process_output_is_read() {
        let json = r#"{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "SK", "SessionToken": "ST", "Expiration": "2030-01-01T00:00:00Z"}"#;
        let (c, expiry) = process(&format!("echo '{json}'")).await.unwrap();
        assert_eq!(c.access_key_id(), "AK");
        assert_eq!(c.session_token(), Some("ST"));
        assert!(expiry.is_some());
        let e = process("echo nope >&2; exit 3").await.unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }

    /// An instance metadata service (IMDSv2) and a container endpoint on loopback, answering
    /// as AWS's do; returns its URL and the requests it saw (method, path, token header).
    async fn metadata_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let log = log.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                log.lock().unwrap().push(format!(
                    "{method} {} token={} auth={}",
                    uri.path(),
                    h("x-aws-ec2-metadata-token"),
                    h("authorization")
                ));
                let creds = r#"{"Code": "Success", "AccessKeyId": "ASIAIMDS", "SecretAccessKey": "s", "Token": "t", "Expiration": "2099-01-01T00:00:00Z"}"#;
                match (method.as_str(), uri.path()) {
                    ("PUT", "/latest/api/token") if h("x-aws-ec2-metadata-token-ttl-seconds") != "-" => {
                        (StatusCode::OK, "imds-token".to_owned())
                    }
                    ("GET", p) if h("x-aws-ec2-metadata-token") != "imds-token" && p.starts_with("/latest") => {
                        (StatusCode::UNAUTHORIZED, String::new())
                    }
                    ("GET", "/latest/meta-data/iam/security-credentials/") => {
                        (StatusCode::OK, "node-role\n".to_owned())
                    }
                    ("GET", "/latest/meta-data/iam/security-credentials/node-role") => {
                        (StatusCode::OK, creds.to_owned())
                    }
                    ("GET", "/v1/credentials") if h("authorization") == "pod-token" => {
                        (StatusCode::OK, creds.replace("ASIAIMDS", "ASIAPOD"))
                    }
                    _ => (StatusCode::NOT_FOUND, String::new()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn instance_metadata_and_the_container_endpoint_give_refreshable_credentials() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (url, seen) = metadata_server().await;
        let client = reqwest::Client::new();
        let imds = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str())];
        let chain = Chain::new(resolve(&imds, &Files::default()).unwrap());
        let c = chain.get(&client).await.unwrap();
        assert_eq!(
            (c.access_key_id(), c.session_token()),
            ("ASIAIMDS", Some("t"))
        );
        // Cached until five minutes before it expires.
        chain.get(&client).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "PUT /latest/api/token token=- auth=-",
                "GET /latest/meta-data/iam/security-credentials/ token=imds-token auth=-",
                "GET /latest/meta-data/iam/security-credentials/node-role token=imds-token auth=-",
            ]
        );
        chain.invalidate();
        chain.get(&client).await.unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            6,
            "fetched anew after invalidate"
        );

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "pod-token\n").unwrap();
        let full = format!("{url}/v1/credentials");
        let pod = [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token.to_str().unwrap(),
            ),
        ];
        let chain = Chain::new(resolve(&pod, &Files::default()).unwrap());
        assert_eq!(chain.get(&client).await.unwrap().access_key_id(), "ASIAPOD");

        // Nothing listening: the error names the source and the address.
        let none = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")];
        let e = Chain::new(resolve(&none, &Files::default()).unwrap())
            .get(&client)
            .await
            .unwrap_err();
        assert!(
            e.starts_with(
                "AWS credentials (instance metadata): PUT http://127.0.0.1:9/latest/api/token"
            ),
            "{e}"
        );
    }

    #[test]
    fn sts_answers_are_read() {
        let text = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>tok&amp;en</SessionToken><SecretAccessKey>sk</SecretAccessKey>\
            <Expiration>2030-10-24T23:00:23Z</Expiration><AccessKeyId>ASIA</AccessKeyId>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml::text(text, "SessionToken").unwrap(), "tok&en");
        assert!(parse_expiry(&xml::text(text, "Expiration").unwrap()).is_ok());
    }
}
