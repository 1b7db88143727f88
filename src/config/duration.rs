//! Go `time.ParseDuration` syntax: `300ms`, `15s`, `1m30s`, `1.5h`, `2h45m10s`.
//!
//! Written by hand rather than humantime: humantime also accepts `1h 30m`, `5 days` and the like,
//! which Go (and so a config shared with the Go exporter) does not.

use std::time::Duration;

pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.parse::<f64>().is_ok() {
        return Err(format!("invalid duration {s:?}: add a unit, e.g. 15s"));
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = t[start..i]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let ustart = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let nanos_per = match &t[ustart..i] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit after {number}"
                ));
            }
            u => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {u:?} (use ns, us, ms, s, m, h)"
                ));
            }
        };
        total += number * nanos_per;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2h45m10s"), Ok(Duration::from_secs(9910)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse("90").unwrap_err(),
            "invalid duration \"90\": add a unit, e.g. 15s"
        );
        assert!(parse("1d").unwrap_err().contains("unknown unit \"d\""));
        assert!(parse("1h 30m").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("s").is_err());
    }
}
