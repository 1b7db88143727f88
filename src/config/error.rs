//! Load errors: every problem found in one pass, each naming its YAML path.

use std::fmt;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// YAML path, e.g. `receivers[1].webhook.endpoint`; empty for whole-file errors.
    pub path: String,
    pub message: String,
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every error found while loading; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub(crate) fn one(path: &str, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            errors: vec![ConfigError {
                path: path.to_owned(),
                message: message.into(),
                line: None,
            }],
        }
    }

    /// The error at `path`, if any (handy in tests and for tooling).
    pub fn at(&self, path: &str) -> Option<&ConfigError> {
        self.errors.iter().find(|e| e.path == path)
    }
}
