//! Errors as operators need to read them: the whole chain of causes on one line.
//!
//! A kube-client transport error displays as `ServiceError: client error (Connect)` whatever went
//! wrong; the cause (connection refused, a DNS failure, an unknown certificate authority) is only
//! in its `source()` chain. Layers often repeat their cause's words in their own message, so a
//! cause already contained in the text so far is skipped.

use std::error::Error;

/// `error: cause: cause's cause…`, without repeats.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct E {
        msg: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(msg: &'static str, source: Option<E>) -> E {
        E {
            msg,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn joins_causes_and_skips_repeated_words() {
        let err = e(
            "ServiceError: client error (Connect)",
            Some(e(
                "client error (Connect)",
                Some(e(
                    "tcp connect error",
                    Some(e("Connection refused (os error 111)", None)),
                )),
            )),
        );
        assert_eq!(
            chain(&err),
            "ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_single_error_is_its_message() {
        assert_eq!(
            chain(&e("lease renewal failed", None)),
            "lease renewal failed"
        );
    }
}
