//! resmoio's command line (Go's `flag` package: one dash, `-name=value` or `-name value`) as ours:
//! its Deployment runs `-conf=/data/config.yaml`, which clap would read as `-c onf=…`.

use std::ffi::OsString;

/// resmoio's flags and ours.
const RENAMED: &[(&str, &str)] = &[
    ("conf", "--config"),
    ("metrics-address", "--metrics-address"),
    ("kubeconfig", "--kubeconfig"),
];

/// The arguments with resmoio's flags written as ours; an error naming a resmoio flag we do not
/// have and what to do instead.
pub fn translate(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>, String> {
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else {
                return Ok(arg);
            };
            let Some(flag) = text
                .strip_prefix("--")
                .or_else(|| text.strip_prefix('-'))
                .filter(|_| text.len() > 2)
            else {
                return Ok(arg);
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if name == "metrics-tls-config" {
                return Err(format!(
                    "{text}: resmoio's TLS and basic auth for /metrics are not supported; serve the metrics port behind TLS (a sidecar, or a mesh) instead"
                ));
            }
            match RENAMED.iter().find(|(old, _)| *old == name) {
                Some((_, new)) => Ok(match value {
                    Some(v) => OsString::from(format!("{new}={v}")),
                    None => OsString::from(*new),
                }),
                None => Ok(arg),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<Vec<String>, String> {
        translate(args.iter().map(OsString::from))
            .map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn resmoios_flags_are_ours() {
        assert_eq!(
            t(&["exe", "-conf=/data/config.yaml", "-metrics-address=:2112"]).unwrap(),
            [
                "exe",
                "--config=/data/config.yaml",
                "--metrics-address=:2112"
            ]
        );
        assert_eq!(
            t(&["exe", "-conf", "c.yaml", "--kubeconfig", "k"]).unwrap(),
            ["exe", "--config", "c.yaml", "--kubeconfig", "k"]
        );
        // Ours, and what is not a flag, stay as they are.
        assert_eq!(
            t(&["exe", "check-config", "-c", "x.yaml", "--config=y"]).unwrap(),
            ["exe", "check-config", "-c", "x.yaml", "--config=y"]
        );
        let e = t(&["exe", "-metrics-tls-config=web.yaml"]).unwrap_err();
        assert!(e.starts_with("-metrics-tls-config=web.yaml: "), "{e}");
    }
}
