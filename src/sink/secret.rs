//! A credential from the config (a password, a token, an API key, an `Authorization` value): kept
//! as written, never printed. Configs derive `Debug`, and `check-config`, logs and panics print
//! them; a `Secret` shows as `***` there.

/// A value that is never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl Secret {
    /// The value itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_value() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
