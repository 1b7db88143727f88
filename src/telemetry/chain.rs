//! Errors as operators need to read them: the whole chain of causes on one line.
//!
//! A kube-client transport error displays as `ServiceError: client error (Connect)` whatever went
//! wrong; the cause (connection refused, a DNS failure, an unknown certificate authority) is only
//! in its `source()` chain. Layers often repeat their cause's words in their own message, so a
//! cause already contained in the text so far is skipped.
//!
//! An error answer of the API (`kube::Error::Api`) displays with the whole `Status` in Rust debug
//! form (`ApiError: … (Status { status: Some(Failure), … ListMeta { continue_: None …`); it reads
//! as `API error 403 Forbidden: <the API's message>` instead, also where a layer quoted it in its
//! own message.

use std::error::Error;

use kube::core::Status;

/// `error: cause: cause's cause…`, without repeats.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut out = describe(error);
    let mut next = error.source();
    while let Some(cause) = next {
        let text = describe(cause);
        let raw = cause.to_string();
        if raw != text && !raw.is_empty() && out.contains(&raw) {
            out = out.replace(&raw, &text);
        }
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// One error of a chain: the API's Status by its code, reason and message; anything else as it
/// displays.
fn describe(error: &(dyn Error + 'static)) -> String {
    if let Some(kube::Error::Api(status)) = error.downcast_ref::<kube::Error>() {
        return api_error(status);
    }
    // `kube::Error::Api`'s source: the boxed Status (or a bare one, should kube unbox it).
    if let Some(status) = error.downcast_ref::<Box<Status>>() {
        return api_error(status);
    }
    if let Some(status) = error.downcast_ref::<Status>() {
        return api_error(status);
    }
    error.to_string()
}

/// `API error 403 Forbidden: events is forbidden: …`; what the API left out is left out.
fn api_error(status: &Status) -> String {
    let mut out = String::from("API error");
    if status.code != 0 {
        out.push_str(&format!(" {}", status.code));
    }
    if !status.reason.is_empty() {
        out.push_str(&format!(" {}", status.reason));
    }
    if !status.message.is_empty() {
        out.push_str(&format!(": {}", status.message));
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

    fn forbidden() -> kube::Error {
        kube::Error::Api(Box::new(Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code: 403,
            message: "events is forbidden: User \"system:serviceaccount:kee:kee\" cannot list resource \"events\" in API group \"\" at the cluster scope".into(),
            reason: "Forbidden".into(),
            metadata: Some(Default::default()),
            details: None,
        }))
    }

    #[test]
    fn an_api_error_is_its_code_reason_and_message_without_debug_output() {
        let want = "API error 403 Forbidden: events is forbidden: User \"system:serviceaccount:kee:kee\" cannot list resource \"events\" in API group \"\" at the cluster scope";
        assert_eq!(chain(&forbidden()), want);
        // Below a layer of ours, and inside a layer that quotes its cause in its own message.
        #[derive(Debug, thiserror::Error)]
        #[error("listing events (page 1)")]
        struct Listing(#[source] kube::Error);
        assert_eq!(
            chain(&Listing(forbidden())),
            format!("listing events (page 1): {want}")
        );
        #[derive(Debug, thiserror::Error)]
        #[error("lease default/kee: {0}")]
        struct Quoting(#[source] kube::Error);
        let text = chain(&Quoting(forbidden()));
        assert_eq!(text, format!("lease default/kee: {want}"));
        assert!(
            !text.contains("Status {") && !text.contains("ListMeta"),
            "{text}"
        );
    }

    #[test]
    fn an_api_error_without_a_code_or_message_leaves_them_out() {
        let e = kube::Error::Api(Box::new(Status {
            code: 0,
            message: String::new(),
            reason: "Expired".into(),
            ..Status::default()
        }));
        assert_eq!(chain(&e), "API error Expired");
        let e = kube::Error::Api(Box::new(Status {
            code: 500,
            message: "etcdserver: request timed out".into(),
            ..Status::default()
        }));
        assert_eq!(chain(&e), "API error 500: etcdserver: request timed out");
    }
}
