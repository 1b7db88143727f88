//! How the AWS batch APIs answer per entry, for the kinds' `http::batch::BatchApi::read`: an
//! entry's error code decides whether it is resent (throttling, the service's own fault) or
//! failed for good, and an entry the answer does not mention is resent.

use serde_json::Value;

use super::client::transient_code;
use crate::sink::SendError;
use crate::sink::partial::Outcomes;

/// One entry of an answer failed with `code`/`message`: transient when the code says so or when
/// the service says the fault is not the sender's.
pub fn fail_entry(
    outcomes: &mut Outcomes,
    doc: usize,
    what: &str,
    (code, message, sender_fault): (&str, &str, bool),
) {
    let reason = format!("{what}: {code}: {message}");
    outcomes.fail(
        doc,
        if transient_code(code) || !sender_fault {
            SendError::Transient {
                reason,
                retry_after: None,
            }
        } else {
            SendError::Permanent { reason }
        },
    );
}

/// An answer listing one result per entry, in the request's order, a failed one with
/// `ErrorCode`/`ErrorMessage` (Kinesis `Records`, Firehose `RequestResponses`, EventBridge
/// `Entries`). A missing result is resent.
pub fn read_in_order(what: &str, list: &str, v: &Value, docs: &[usize], outcomes: &mut Outcomes) {
    let results = v.get(list).and_then(Value::as_array);
    for (i, doc) in docs.iter().enumerate() {
        match results.and_then(|r| r.get(i)) {
            Some(r) => {
                if let Some(code) = r.get("ErrorCode").and_then(Value::as_str) {
                    let message = r.get("ErrorMessage").and_then(Value::as_str).unwrap_or("");
                    fail_entry(outcomes, *doc, what, (code, message, true));
                }
            }
            None => outcomes.fail(
                *doc,
                SendError::Transient {
                    reason: format!("{what}: no result for entry {i} in the answer's {list}"),
                    retry_after: None,
                },
            ),
        }
    }
}

/// An answer naming its entries by `Id` (their position in the request) in a `Successful` and a
/// `Failed` list (SQS SendMessageBatch, SNS PublishBatch): each failed one with its code,
/// message and whether the fault is the sender's. An entry in neither list is resent.
pub fn read_by_id<S: AsRef<str>>(
    what: &str,
    successful: impl IntoIterator<Item = S>,
    failed: impl IntoIterator<Item = (S, S, S, bool)>,
    docs: &[usize],
    outcomes: &mut Outcomes,
) {
    let mut answered = vec![false; docs.len()];
    let id = |s: &S| s.as_ref().parse::<usize>().ok().filter(|i| *i < docs.len());
    for i in successful.into_iter().filter_map(|s| id(&s)) {
        answered[i] = true;
    }
    for (s, code, message, sender_fault) in failed {
        if let Some(i) = id(&s) {
            answered[i] = true;
            let error = (code.as_ref(), message.as_ref(), sender_fault);
            fail_entry(outcomes, docs[i], what, error);
        }
    }
    for (i, done) in answered.into_iter().enumerate() {
        if !done {
            outcomes.fail(
                docs[i],
                SendError::Transient {
                    reason: format!("{what}: entry {i} is in neither Successful nor Failed"),
                    retry_after: None,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_entries_are_resent_when_the_code_or_the_service_says_so() {
        let mut o = Outcomes::new(4);
        fail_entry(&mut o, 1, "SQS", ("ThrottlingException", "slow down", true));
        fail_entry(&mut o, 2, "SQS", ("InvalidParameterValue", "bad", true));
        // The service's own fault is retried whatever the code.
        fail_entry(&mut o, 3, "SNS", ("InternalError", "oops", false));
        let Err(SendError::Partial(list)) = o.settle() else {
            panic!("expected a per-document answer")
        };
        assert!(matches!(list[0], (1, SendError::Transient { .. })));
        assert!(matches!(list[1], (2, SendError::Permanent { .. })));
        assert!(matches!(list[2], (3, SendError::Transient { .. })));
    }

    #[test]
    fn entries_are_read_by_id_and_one_in_neither_list_is_resent() {
        let mut o = Outcomes::new(6);
        // The request held documents 2, 3 and 5 of the batch.
        read_by_id(
            "SQS SendMessageBatch",
            ["0", "9"],
            [("1", "InvalidParameterValue", "bad", true)],
            &[2, 3, 5],
            &mut o,
        );
        let Err(SendError::Partial(list)) = o.settle() else {
            panic!("expected a per-document answer")
        };
        assert_eq!(list.len(), 2);
        assert!(matches!(list[0], (3, SendError::Permanent { .. })));
        assert_eq!(
            list[1],
            (
                5,
                SendError::Transient {
                    reason: "SQS SendMessageBatch: entry 2 is in neither Successful nor Failed"
                        .into(),
                    retry_after: None
                }
            )
        );
    }
}
