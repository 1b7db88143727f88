//! The sns receiver against a stand-in answering as SNS does (query protocol, XML).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn sns(yaml: &str) -> SnsConfig {
    testing::receiver(yaml)
}

fn sink(fake: &Fake, yaml: &str) -> SnsSink {
    testing::sink(yaml, |c, env| SnsSink::build(c, env, &fake.env()))
}

/// The entries of a PublishBatch form: member number → field → value.
fn members(req: &Req) -> BTreeMap<usize, BTreeMap<String, String>> {
    let mut out: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (k, v) in req.form() {
        if let Some(rest) = k.strip_prefix("PublishBatchRequestEntries.member.") {
            let (n, field) = rest.split_once('.').unwrap();
            out.entry(n.parse().unwrap())
                .or_default()
                .insert(field.to_owned(), v);
        }
    }
    out
}

/// PublishBatch answers: each member successful, or failed as `fail` says for its message
/// (`(code, sender fault)`).
fn handler(fail: fn(&str) -> Option<(&'static str, bool)>) -> fake::Handler {
    Arc::new(move |req: &Req, _| {
        assert_eq!(req.target, "PublishBatch");
        let (mut ok, mut failed) = (String::new(), String::new());
        for m in members(req).values() {
            let doc: Value = serde_json::from_str(&m["Message"]).unwrap();
            let id = &m["Id"];
            match fail(doc["message"].as_str().unwrap_or("")) {
                Some((code, sender)) => failed.push_str(&format!(
                    "<member><Id>{id}</Id><Code>{code}</Code><Message>no &amp; never</Message><SenderFault>{sender}</SenderFault></member>"
                )),
                None => ok.push_str(&format!("<member><Id>{id}</Id><MessageId>x</MessageId></member>")),
            }
        }
        (
            200,
            format!(
                "<PublishBatchResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishBatchResult><Successful>{ok}</Successful><Failed>{failed}</Failed></PublishBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishBatchResponse>"
            ),
        )
    })
}

const README: &str = "      topicARN: \"arn:aws:sns:us-east-1:1234567890123456:mytopic\"\n      region: \"us-west-2\"\n      layout: # Optional\n";

#[test]
fn resmoios_readme_example_loads_and_the_topics_region_wins_with_a_warning() {
    let c = sns(README);
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].1.contains("the topic is in us-east-1"), "{w:?}");
    assert!(sns("      topicARN: arn:aws:sns:eu-west-1:1:t.fifo\n").fifo());
    assert_eq!(
        testing::errors("sns", "      topicARN: mytopic\n"),
        [
            "receivers[0].sns.topicARN: \"mytopic\" is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
        ]
    );
}

#[tokio::test]
async fn messages_carry_their_key_and_a_batch_is_split_in_tens() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, README);
    let docs = testing::docs(23);
    s.send(&docs).await.unwrap();
    let reqs = fake.requests();
    let mut sizes: Vec<usize> = reqs.iter().map(|r| members(r).len()).collect();
    sizes.sort();
    assert_eq!(sizes, [3, 10, 10]);
    let mut keys = Vec::new();
    for r in &reqs {
        assert!(
            r.authorization.contains("/us-east-1/sns/aws4_request"),
            "{}",
            r.authorization
        );
        let form: BTreeMap<String, String> = r.form().into_iter().collect();
        assert_eq!(
            form["TopicArn"],
            "arn:aws:sns:us-east-1:1234567890123456:mytopic"
        );
        assert_eq!(form["Version"], "2010-03-31");
        for m in members(r).values() {
            assert_eq!(m["MessageAttributes.entry.1.Name"], "occurrence_key");
            assert_eq!(m["MessageAttributes.entry.1.Value.DataType"], "String");
            let doc: Value = serde_json::from_str(&m["Message"]).unwrap();
            let key = &m["MessageAttributes.entry.1.Value.StringValue"];
            assert_eq!(
                format!("{}:1", doc["metadata"]["uid"].as_str().unwrap()),
                *key
            );
            assert!(!m.contains_key("MessageGroupId"));
            keys.push(key.clone());
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 23);
}

#[tokio::test]
async fn a_fifo_topic_gets_group_and_deduplication_ids() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(
        &fake,
        "      topicARN: arn:aws:sns:eu-west-1:1:events.fifo\n",
    );
    let docs = testing::docs(4);
    s.send(&docs).await.unwrap();
    let m = members(&fake.requests()[0]);
    for (n, d) in docs.iter().enumerate() {
        assert_eq!(m[&(n + 1)]["MessageDeduplicationId"], d.key.to_string());
        assert_eq!(
            m[&(n + 1)]["MessageGroupId"],
            d.occ.event.involved_object.uid.clone().unwrap()
        );
    }
}

#[tokio::test]
async fn failed_members_of_a_200_are_resent_when_transient_and_dropped_when_permanent() {
    let fake = Fake::start(handler(|m| match m {
        "m0" => Some(("Throttled", true)),
        "m3" => Some(("InternalError", false)),
        "m5" => Some(("InvalidParameter", true)),
        _ => None,
    }))
    .await;
    let mut s = sink(&fake, README);
    let answer = s.send(&testing::docs(7)).await;
    assert_eq!(
        testing::resent(answer.clone()),
        [(0, true), (3, true), (5, false)]
    );
    let Err(SendError::Partial(list)) = answer else {
        unreachable!()
    };
    let reason = list[2].1.reason();
    assert!(reason.contains("InvalidParameter: no & never"), "{reason}");
}

#[tokio::test]
async fn sns_errors_are_read_from_the_xml_answer() {
    let fake = Fake::start(Arc::new(|_: &Req, n| match n {
        0 => (
            404,
            "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message></Error><RequestId>r</RequestId></ErrorResponse>".to_owned(),
        ),
        _ => (
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".to_owned(),
        ),
    }))
    .await;
    let mut s = sink(&fake, README);
    match s.send(&testing::docs(2)).await {
        Err(SendError::Permanent { reason }) => {
            assert!(
                reason.contains("NotFound: Topic does not exist"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.send(&testing::docs(2)).await,
        Err(SendError::Transient { .. })
    ));
}
