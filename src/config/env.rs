//! `${VAR}` substitution inside string values (never keys).
//!
//! resmoio runs `os.ExpandEnv` over the whole file, which also eats `$VAR` and so destroys Go
//! template variables (`{{ range $k, $v := . }}`). We only expand the braced form, after parsing;
//! `$x`, a lone `$` and `$${` (an escaped, literal `${`) are left for the template.

/// Expands `${NAME}` with `env`. Errors name the first unset variable or a malformed reference.
pub(crate) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err("unterminated ${ in value (write $${ for a literal ${)".into());
            };
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "invalid environment variable reference ${{{name}}}"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Names of `$NAME` references without braces in `s` that `env` knows: resmoio (which runs
/// `os.ExpandEnv` over the whole file) replaced them with the variable; we send them as written
/// (Go template variables look the same), so a config copied from resmoio that relies on them
/// deserves a warning.
pub(crate) fn unbraced_set(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(at) = s[i..].find('$').map(|p| p + i) {
        let start = at + 1;
        let escaped = at > 0 && bytes[at - 1] == b'$';
        let mut end = start;
        while end < bytes.len() && (bytes[end] == b'_' || bytes[end].is_ascii_alphanumeric()) {
            end += 1;
        }
        let name = &s[start..end];
        let first_ok = name
            .as_bytes()
            .first()
            .is_some_and(|b| *b == b'_' || b.is_ascii_alphabetic());
        if !escaped && first_ok && env(name).is_some() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        i = end.max(start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{expand, unbraced_set};

    #[test]
    fn unbraced_references_to_set_variables_are_found() {
        let env = |k: &str| (k == "MY_API_KEY" || k == "k").then(|| "v".to_owned());
        assert_eq!(unbraced_set("$MY_API_KEY", &env), ["MY_API_KEY"]);
        assert_eq!(
            unbraced_set("Bearer $MY_API_KEY and $MY_API_KEY", &env),
            ["MY_API_KEY"]
        );
        // Braced, unset, a number, or escaped: nothing to say.
        assert!(unbraced_set("${MY_API_KEY} $OTHER $5 $$MY_API_KEY", &env).is_empty());
        // A Go template variable whose name happens to be set is reported too: it is only a
        // warning, and the variable's owner can rename either.
        assert_eq!(unbraced_set("{{ range $k, $v := . }}", &env), ["k"]);
    }

    fn env(k: &str) -> Option<String> {
        (k == "TOKEN").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn braces_only() {
        assert_eq!(expand("Bearer ${TOKEN}", &env).unwrap(), "Bearer s3cr3t");
        assert_eq!(
            expand("{{ range $k, $v := . }}$ $5 $TOKEN", &env).unwrap(),
            "{{ range $k, $v := . }}$ $5 $TOKEN"
        );
        assert_eq!(
            expand("$${TOKEN} ${TOKEN}$", &env).unwrap(),
            "${TOKEN} s3cr3t$"
        );
        assert_eq!(
            expand("${NOPE}", &env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(expand("${TOKEN", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }
}
