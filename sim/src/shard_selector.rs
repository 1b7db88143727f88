//! KEP-5866 server-side sharding (`shardSelector`, feature gate `ShardedListAndWatch`, alpha in
//! Kubernetes 1.36), served when `SimConfig::shard_selector` is on; off, the parameter is ignored
//! as an older server ignores an unknown query parameter.
//!
//! Grammar served: `shardRange(FIELD, 'START', 'END')` terms joined by `||`, FIELD one of
//! `object.metadata.uid` and `object.metadata.namespace`, bounds `0x`-prefixed hexadecimal, start
//! inclusive, end exclusive (up to `0x10000000000000000`), over the FNV-1a 64-bit hash of the
//! field's value. A list echoes what it applied in `metadata.shardInfo.selector`.

use serde_json::Value;

use crate::store::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Uid,
    Namespace,
}

#[derive(Debug, Clone)]
pub struct ShardSelector {
    /// As the client sent it (echoed in `shardInfo`).
    pub text: String,
    ranges: Vec<(Field, u128, u128)>,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn invalid(text: &str, why: &str) -> ApiError {
    ApiError::new(
        400,
        "BadRequest",
        format!("invalid shardSelector {text:?}: {why}"),
    )
}

impl ShardSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut ranges = Vec::new();
        for term in text.split("||") {
            let term = term.trim();
            let args = term
                .strip_prefix("shardRange(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| {
                    invalid(text, "each term must be shardRange(field, 'start', 'end')")
                })?;
            let parts: Vec<&str> = args.split(',').map(str::trim).collect();
            let [field, start, end] = parts[..] else {
                return Err(invalid(text, "shardRange takes three arguments"));
            };
            let field = match field {
                "object.metadata.uid" => Field::Uid,
                "object.metadata.namespace" => Field::Namespace,
                other => return Err(invalid(text, &format!("unsupported field {other}"))),
            };
            let bound = |b: &str| -> Result<u128, ApiError> {
                let hex = b
                    .strip_prefix('\'')
                    .and_then(|b| b.strip_suffix('\''))
                    .and_then(|b| b.strip_prefix("0x"))
                    .ok_or_else(|| invalid(text, "bounds are quoted 0x-prefixed hexadecimal"))?;
                let v = u128::from_str_radix(hex, 16)
                    .map_err(|_| invalid(text, &format!("bad hexadecimal bound {b}")))?;
                if v > 1u128 << 64 {
                    return Err(invalid(text, &format!("bound {b} is beyond 2^64")));
                }
                Ok(v)
            };
            let (start, end) = (bound(start)?, bound(end)?);
            if start >= end {
                return Err(invalid(text, "start must be below end"));
            }
            ranges.push((field, start, end));
        }
        Ok(Self {
            text: text.to_string(),
            ranges,
        })
    }

    /// Whether the object (JSON) is in one of the ranges.
    pub fn matches_object(&self, object: &[u8]) -> bool {
        serde_json::from_slice::<Value>(object).is_ok_and(|o| self.matches(&o))
    }

    /// Whether a watch frame (`{"type":…,"object":…}`) is sent: its object matches.
    pub fn matches_frame(&self, frame: &[u8]) -> bool {
        serde_json::from_slice::<Value>(frame).is_ok_and(|f| self.matches(&f["object"]))
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        self.ranges.iter().any(|(field, start, end)| {
            let value = match field {
                Field::Uid => meta["uid"].as_str(),
                Field::Namespace => meta["namespace"].as_str(),
            };
            let h = u128::from(fnv1a64(value.unwrap_or("").as_bytes()));
            *start <= h && h < *end
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_or_together_and_bad_selectors_are_400() {
        let s = ShardSelector::parse(
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') || shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')",
        )
        .unwrap();
        assert!(s.matches_object(br#"{"metadata":{"uid":"a"}}"#));
        assert!(s.matches_object(br#"{"metadata":{"uid":"b"}}"#));
        // fnv1a64("a") = 0xaf63dc4c8601ec8c: in the upper half only.
        let lower = ShardSelector::parse(
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')",
        )
        .unwrap();
        assert!(!lower.matches_object(br#"{"metadata":{"uid":"a"}}"#));
        assert!(
            lower.matches_frame(br#"{"type":"ADDED","object":{"metadata":{"uid":""}}}"#)
                == (fnv1a64(b"") < 0x8000_0000_0000_0000)
        );
        for bad in [
            "shardRange(object.metadata.name, '0x0', '0x1')",
            "shardRange(object.metadata.uid, '0x1', '0x1')",
            "shardRange(object.metadata.uid, 0x0, '0x1')",
            "range(object.metadata.uid, '0x0', '0x1')",
            "shardRange(object.metadata.uid, '0x0', '0x100000000000000000')",
        ] {
            assert_eq!(ShardSelector::parse(bad).unwrap_err().code, 400, "{bad}");
        }
    }
}
