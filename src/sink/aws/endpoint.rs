//! The region and the endpoint of a service, from the configuration and the standard AWS
//! environment, in the SDKs' order.
//!
//! Region: the receiver's `region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the
//! profile's `region` (the EC2 instance metadata's region is not looked up: that would be a
//! network call before the first send).
//!
//! Endpoint, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (or the profile's
//! `ignore_configured_endpoint_urls`) is true: `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_SQS`),
//! `AWS_ENDPOINT_URL`, the profile's `services` section (`sqs = endpoint_url = …`), the profile's
//! `endpoint_url`; else the public endpoint `https://{prefix}.{region}.amazonaws.com`
//! (`amazonaws.com.cn` in China; `{prefix}-fips` when `AWS_USE_FIPS_ENDPOINT` or the profile's
//! `use_fips_endpoint` is true).

use super::profile::Profile;
use crate::sink::http::check_url;

/// An AWS service as the endpoint rules and SigV4 name it.
#[derive(Debug, PartialEq, Eq)]
pub struct Service {
    /// For messages: `SQS`.
    pub name: &'static str,
    /// The suffix of `AWS_ENDPOINT_URL_<…>` (the SDK service id, upper case, `_` for spaces).
    pub env: &'static str,
    /// The key in a profile's `services` section (lower case).
    pub config_key: &'static str,
    /// The first label of the public endpoint's host.
    pub prefix: &'static str,
    /// SigV4's service name.
    pub signing_name: &'static str,
}

pub const SQS: Service = Service {
    name: "SQS",
    env: "SQS",
    config_key: "sqs",
    prefix: "sqs",
    signing_name: "sqs",
};
pub const SNS: Service = Service {
    name: "SNS",
    env: "SNS",
    config_key: "sns",
    prefix: "sns",
    signing_name: "sns",
};
pub const KINESIS: Service = Service {
    name: "Kinesis",
    env: "KINESIS",
    config_key: "kinesis",
    prefix: "kinesis",
    signing_name: "kinesis",
};
pub const FIREHOSE: Service = Service {
    name: "Firehose",
    env: "FIREHOSE",
    config_key: "firehose",
    prefix: "firehose",
    signing_name: "firehose",
};
pub const EVENTBRIDGE: Service = Service {
    name: "EventBridge",
    env: "EVENTBRIDGE",
    config_key: "eventbridge",
    prefix: "events",
    signing_name: "events",
};
pub const SSM: Service = Service {
    name: "SSM",
    env: "SSM",
    config_key: "ssm",
    prefix: "ssm",
    signing_name: "ssm",
};
pub const STS: Service = Service {
    name: "STS",
    env: "STS",
    config_key: "sts",
    prefix: "sts",
    signing_name: "sts",
};

/// The region (see the module docs).
pub fn region(
    configured: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    profile: Option<&Profile>,
) -> Result<String, String> {
    configured
        .map(str::to_owned)
        .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
        .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
        .or_else(|| profile.and_then(|p| p.get("region")).map(str::to_owned))
        .ok_or_else(|| {
            "no region: set region, or AWS_REGION, or region in the AWS profile".to_owned()
        })
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The endpoint of `service` in `region` (see the module docs), without a trailing `/`, and where
/// it came from (for messages).
pub fn endpoint(
    service: &Service,
    region: &str,
    env: &dyn Fn(&str) -> Option<String>,
    profile: Option<&Profile>,
) -> Result<(String, String), String> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let ignore = match var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
        Some(v) => truthy(Some(&v)),
        None => truthy(profile.and_then(|p| p.get("ignore_configured_endpoint_urls"))),
    };
    if !ignore {
        let specific = format!("AWS_ENDPOINT_URL_{}", service.env);
        let configured = var(&specific)
            .map(|u| (u, specific.clone()))
            .or_else(|| var("AWS_ENDPOINT_URL").map(|u| (u, "AWS_ENDPOINT_URL".to_owned())))
            .or_else(|| {
                let p = profile?;
                p.service_endpoint(service.config_key)
                    .map(|u| {
                        (
                            u.to_owned(),
                            format!(
                                "the {} endpoint_url of profile {}",
                                service.config_key, p.name
                            ),
                        )
                    })
                    .or_else(|| {
                        p.get("endpoint_url")
                            .map(|u| (u.to_owned(), format!("endpoint_url of profile {}", p.name)))
                    })
            });
        if let Some((url, from)) = configured {
            check_url(&url).map_err(|why| format!("{from}: {why}"))?;
            return Ok((url.trim_end_matches('/').to_owned(), from));
        }
    }
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!(
            "region {region:?} is not a region name (like eu-west-1)"
        ));
    }
    let fips = match var("AWS_USE_FIPS_ENDPOINT") {
        Some(v) => truthy(Some(&v)),
        None => truthy(profile.and_then(|p| p.get("use_fips_endpoint"))),
    };
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let host = if fips {
        format!("{}-fips", service.prefix)
    } else {
        service.prefix.to_owned()
    };
    Ok((
        format!("https://{host}.{region}.{suffix}"),
        "the public endpoint".to_owned(),
    ))
}

/// A region as AWS names them (`eu-west-1`, `us-gov-west-1`, `cn-north-1`): for warnings only,
/// since new regions and partitions keep appearing.
pub fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sink::testing::vars as env;

    #[test]
    fn endpoints_follow_the_sdk_order() {
        let none = env(&[]);
        assert_eq!(
            endpoint(&SQS, "eu-west-1", &none, None).unwrap().0,
            "https://sqs.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&EVENTBRIDGE, "cn-north-1", &none, None).unwrap().0,
            "https://events.cn-north-1.amazonaws.com.cn"
        );
        let fips = [("AWS_USE_FIPS_ENDPOINT", "true")];
        assert_eq!(
            endpoint(&KINESIS, "us-east-1", &env(&fips), None)
                .unwrap()
                .0,
            "https://kinesis-fips.us-east-1.amazonaws.com"
        );
        let both = [
            ("AWS_ENDPOINT_URL", "http://localhost:5000/"),
            ("AWS_ENDPOINT_URL_SQS", "http://localhost:4566"),
        ];
        assert_eq!(
            endpoint(&SQS, "eu-west-1", &env(&both), None).unwrap(),
            (
                "http://localhost:4566".to_owned(),
                "AWS_ENDPOINT_URL_SQS".to_owned()
            )
        );
        assert_eq!(
            endpoint(&SNS, "eu-west-1", &env(&both), None).unwrap().0,
            "http://localhost:5000"
        );
        let ignore = [
            ("AWS_ENDPOINT_URL", "http://localhost:5000"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ];
        assert_eq!(
            endpoint(&SNS, "eu-west-1", &env(&ignore), None).unwrap().0,
            "https://sns.eu-west-1.amazonaws.com"
        );
        let mut profile = Profile {
            name: "dev".into(),
            ..Profile::default()
        };
        profile
            .props
            .insert("endpoint_url".into(), "http://all:1".into());
        profile.services.insert(
            "sqs".into(),
            [("endpoint_url".to_owned(), "http://sqs:2".to_owned())].into(),
        );
        assert_eq!(
            endpoint(&SQS, "x-y-1", &none, Some(&profile)).unwrap().0,
            "http://sqs:2"
        );
        assert_eq!(
            endpoint(&SNS, "x-y-1", &none, Some(&profile)).unwrap().0,
            "http://all:1"
        );
        let bad = [("AWS_ENDPOINT_URL", "localhost:4566")];
        let e = endpoint(&SQS, "eu-west-1", &env(&bad), None).unwrap_err();
        assert!(e.starts_with("AWS_ENDPOINT_URL: invalid URL"), "{e}");
        assert!(endpoint(&SQS, "eu west", &none, None).is_err());
    }

    #[test]
    fn the_region_comes_from_the_config_then_the_environment_then_the_profile() {
        let vars = [("AWS_DEFAULT_REGION", "us-west-2")];
        assert_eq!(
            region(Some("eu-central-1"), &env(&vars), None).unwrap(),
            "eu-central-1"
        );
        assert_eq!(region(None, &env(&vars), None).unwrap(), "us-west-2");
        let mut p = Profile::default();
        p.props.insert("region".into(), "ap-south-1".into());
        assert_eq!(region(None, &env(&[]), Some(&p)).unwrap(), "ap-south-1");
        assert!(region(None, &env(&[]), None).is_err());
        assert!(looks_like_region("us-gov-west-1") && looks_like_region("eu-west-1"));
        assert!(!looks_like_region("us-east1") && !looks_like_region("EU-WEST-1"));
    }
}
