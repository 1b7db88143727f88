//! AWS SigV4 for Amazon OpenSearch Service (`es`) and Serverless (`aoss`): the shared AWS signer
//! (`sink::aws`: credentials from the standard chain, `aws-sigv4`) for the `aws` block's region
//! and service.

use super::config::AwsConfig;
use crate::sink::aws::Signer;

/// The signer of the `aws` block: its region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, the
/// profile's) and service, and the credentials' source, from the environment `env`
/// (`std::env::var` in production). It signs every header already set, and the body as sent
/// (compressed or not).
pub fn signer(cfg: &AwsConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Signer, String> {
    Signer::new(cfg.region.as_deref(), &cfg.service, env)
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
        assert!(signer(&cfg(Some("eu-central-1")), &keys).is_ok());
        assert!(signer(&cfg(None), &keys).is_ok());
        let e = signer(&cfg(None), &|k| {
            (k != "AWS_DEFAULT_REGION").then(|| keys(k)).flatten()
        })
        .err()
        .unwrap();
        assert!(e.contains("no region"), "{e}");
    }
}
