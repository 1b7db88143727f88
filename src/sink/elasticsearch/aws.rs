//! AWS SigV4 for Amazon OpenSearch Service (`es`) and Serverless (`aoss`): the shared AWS signer
//! (`sink::aws`: credentials from the standard chain, `aws-sigv4`) for the `aws` block's region
//! and service.

use reqwest::header::HeaderMap;

use super::config::AwsConfig;

/// Signs requests, fetching and refreshing credentials as needed.
#[derive(Clone)]
pub struct Signer(crate::sink::aws::Signer);

impl Signer {
    /// The region of `cfg` (else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's) and the
    /// credentials' source, from the environment `env` (`std::env::var` in production).
    pub fn new(cfg: &AwsConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Signer, String> {
        crate::sink::aws::Signer::new(cfg.region.as_deref(), &cfg.service, env).map(Signer)
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
        self.0.sign(client, method, url, headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_block_then_the_environment() {
        let cfg = |r: Option<&str>| AwsConfig {
            region: r.map(str::to_owned),
            service: "es".into(),
        };
        let keys = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".to_owned()),
            "AWS_DEFAULT_REGION" => Some("us-west-2".to_owned()),
            _ => None,
        };
        assert!(Signer::new(&cfg(Some("eu-central-1")), &keys).is_ok());
        assert!(Signer::new(&cfg(None), &keys).is_ok());
        let e = Signer::new(&cfg(None), &|k| {
            (k != "AWS_DEFAULT_REGION").then(|| keys(k)).flatten()
        })
        .err()
        .unwrap();
        assert!(e.contains("no region"), "{e}");
    }
}
