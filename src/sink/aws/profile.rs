//! The shared AWS config and credentials files (`~/.aws/config`, `~/.aws/credentials`), read as
//! the SDKs read them: `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` override the paths, the
//! profile is `AWS_PROFILE` (else `default`), `[profile name]` sections in the config file and
//! `[name]` in the credentials file (whose keys win), `[services name]` sections for per-service
//! endpoints, `#` and `;` comments, indented continuation lines and sub-properties
//! (`sqs =` followed by indented `endpoint_url = …`).

use std::collections::HashMap;
use std::path::PathBuf;

/// One profile's properties (names lower-cased), with the `[services]` section it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub name: String,
    pub props: HashMap<String, String>,
    /// The `services` section's sub-properties per service key (`sqs` → `endpoint_url` → URL).
    pub services: HashMap<String, HashMap<String, String>>,
}

impl Profile {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `endpoint_url` of the service (`sqs`) from the profile's `services` section.
    pub fn service_endpoint(&self, service_key: &str) -> Option<&str> {
        self.services
            .get(service_key)
            .and_then(|s| s.get("endpoint_url"))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Every profile of both files.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// The selected profile's name (`AWS_PROFILE`, else `default`), and whether it was asked for.
    pub selected: String,
    pub explicit: bool,
    profiles: HashMap<String, HashMap<String, String>>,
    /// `[services name]` sections: section → service key → sub-properties.
    services: HashMap<String, HashMap<String, HashMap<String, String>>>,
    /// The files that were read, for messages.
    pub read: Vec<PathBuf>,
}

/// A parsed section: its header and its properties (a sub-property is `parent.child`).
type Section = (String, Vec<(String, String)>);

impl Files {
    /// No files read; `name` selected (`explicit`: as if `AWS_PROFILE` named it).
    pub fn empty(name: &str, explicit: bool) -> Files {
        Files {
            selected: name.to_owned(),
            explicit,
            ..Files::default()
        }
    }

    /// Reads both files from the paths the environment `env` names (a missing file is no error;
    /// one that cannot be read is).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Files, String> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let path = |var_name: &str, file: &str| -> Option<PathBuf> {
            match var(var_name) {
                Some(p) => Some(expand_home(&p, home.as_deref())),
                None => home.as_ref().map(|h| h.join(".aws").join(file)),
            }
        };
        let mut files = Files {
            selected: var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned()),
            explicit: var("AWS_PROFILE").is_some(),
            ..Files::default()
        };
        if let Some(p) = path("AWS_CONFIG_FILE", "config")
            && let Some(text) = read(&p)?
        {
            files.add_config(&text);
            files.read.push(p);
        }
        if let Some(p) = path("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            && let Some(text) = read(&p)?
        {
            files.add_credentials(&text);
            files.read.push(p);
        }
        Ok(files)
    }

    /// The config file's text: `[default]`, `[profile name]`, `[services name]`.
    pub fn add_config(&mut self, text: &str) {
        for (header, props) in sections(text) {
            let mut words = header.split_whitespace();
            let (kind, name) = match (words.next(), words.next(), words.next()) {
                (Some("default"), None, _) => ("profile", "default"),
                (Some("profile"), Some(n), None) => ("profile", n),
                (Some("services"), Some(n), None) => ("services", n),
                _ => continue,
            };
            if kind == "services" {
                let section = self.services.entry(name.to_owned()).or_default();
                for (k, v) in props {
                    if let Some((service, sub)) = k.split_once('.') {
                        section
                            .entry(service.to_owned())
                            .or_default()
                            .insert(sub.to_owned(), v);
                    }
                }
            } else {
                let p = self.profiles.entry(name.to_owned()).or_default();
                for (k, v) in props {
                    // A credentials-file key wins: only fill what is not there.
                    p.entry(k).or_insert(v);
                }
            }
        }
    }

    /// The credentials file's text: `[name]` sections, whose keys win over the config file's.
    pub fn add_credentials(&mut self, text: &str) {
        for (header, props) in sections(text) {
            let name = header.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                continue;
            }
            let p = self.profiles.entry(name.to_owned()).or_default();
            for (k, v) in props {
                p.insert(k, v);
            }
        }
    }

    /// The selected profile, if either file has it.
    pub fn profile(&self) -> Option<Profile> {
        self.named(&self.selected)
    }

    pub fn named(&self, name: &str) -> Option<Profile> {
        let props = self.profiles.get(name)?.clone();
        let services = props
            .get("services")
            .and_then(|s| self.services.get(s))
            .cloned()
            .unwrap_or_default();
        Some(Profile {
            name: name.to_owned(),
            props,
            services,
        })
    }

    /// Where the files were looked for, for messages.
    pub fn describe(&self) -> String {
        if self.read.is_empty() {
            "no AWS config or credentials file".to_owned()
        } else {
            self.read
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        }
    }
}

fn expand_home(p: &str, home: Option<&std::path::Path>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

fn read(p: &std::path::Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// A value without its trailing comment (` #…` or ` ;…`: a `#` inside a value is kept).
fn strip_comment(v: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in v.char_indices() {
        if (c == '#' || c == ';') && prev_space {
            return v[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    v.trim_end()
}

/// The sections of an INI-like text, in order; property names lower-cased.
fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    // The property the indented lines below belong to (for continuations and sub-properties).
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if !indented && trimmed.starts_with('[') {
            let header = trimmed[1..]
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            out.push((header, Vec::new()));
            parent = None;
            continue;
        }
        let Some((_, props)) = out.last_mut() else {
            continue;
        };
        if indented && let Some(p) = &parent {
            match trimmed.split_once('=') {
                // A sub-property of `parent` (which had an empty value).
                Some((k, v)) => props.push((
                    format!("{p}.{}", k.trim().to_ascii_lowercase()),
                    strip_comment(v.trim()).to_owned(),
                )),
                // A continuation of `parent`'s value.
                None => {
                    if let Some((_, v)) = props.iter_mut().rev().find(|(k, _)| k == p) {
                        if !v.is_empty() {
                            v.push('\n');
                        }
                        v.push_str(trimmed);
                    }
                }
            }
            continue;
        }
        if let Some((k, v)) = trimmed.split_once('=') {
            let key = k.trim().to_ascii_lowercase();
            props.push((key.clone(), strip_comment(v.trim()).to_owned()));
            parent = Some(key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# a comment
[default]
region = eu-west-1 ; the region
output=json

[profile ci]
role_arn = arn:aws:iam::1:role/ci
web_identity_token_file = /var/run/token
services = local

[services local]
sqs =
  endpoint_url = http://localhost:4566
kinesis =
  endpoint_url = http://localhost:4567 # trailing
";

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKID
aws_secret_access_key = se#cret
region = us-east-2
";

    #[test]
    fn profiles_merge_both_files_with_the_credentials_file_winning() {
        let mut f = Files {
            selected: "default".into(),
            ..Files::default()
        };
        f.add_config(CONFIG);
        f.add_credentials(CREDENTIALS);
        let p = f.profile().unwrap();
        assert_eq!(p.get("aws_access_key_id"), Some("AKID"));
        assert_eq!(p.get("aws_secret_access_key"), Some("se#cret"));
        assert_eq!(p.get("region"), Some("us-east-2"));
        assert_eq!(p.get("output"), Some("json"));
        let ci = f.named("ci").unwrap();
        assert_eq!(ci.get("role_arn"), Some("arn:aws:iam::1:role/ci"));
        assert_eq!(ci.service_endpoint("sqs"), Some("http://localhost:4566"));
        assert_eq!(
            ci.service_endpoint("kinesis"),
            Some("http://localhost:4567")
        );
        assert_eq!(ci.service_endpoint("sns"), None);
        assert!(
            f.named("local").is_none(),
            "a services section is no profile"
        );
    }

    #[test]
    fn files_come_from_the_environment_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfg");
        std::fs::write(&config, CONFIG).unwrap();
        let c = config.to_string_lossy().into_owned();
        let env = |k: &str| match k {
            "AWS_CONFIG_FILE" => Some(c.clone()),
            "AWS_SHARED_CREDENTIALS_FILE" => Some("/nonexistent/credentials".into()),
            "AWS_PROFILE" => Some("ci".into()),
            _ => None,
        };
        let f = Files::load(&env).unwrap();
        assert!(f.explicit);
        assert_eq!(f.read, vec![config]);
        assert_eq!(f.profile().unwrap().name, "ci");
    }
}
