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

#[cfg(test)]
mod tests {
    use super::expand;

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
