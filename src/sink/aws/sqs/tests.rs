//! The sqs receiver against a stand-in that answers as SQS does (fake.rs): keys, requests and
//! how each entry of an answer is read. Delivery to a faithful server: tests/aws.rs (moto).

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn sqs(yaml: &str) -> SqsConfig {
    testing::receiver(yaml)
}

#[test]
fn resmoios_readme_example_loads_with_a_warning_for_its_queue_name() {
    let c =
        sqs("      queueName: \"/tmp/dump\"\n      region: us-west-2\n      layout: # Optional\n");
    assert_eq!(c.queue, "/tmp/dump");
    assert_eq!(c.common.region.as_deref(), Some("us-west-2"));
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "queueName");
    assert!(w[0].1.contains("not an SQS queue name"), "{w:?}");
    assert!(sqs("      queueName: events.fifo\n").fifo());
    assert!(sqs("      queueName: events_1-a\n").warnings().is_empty());
    assert_eq!(
        testing::errors("sqs", "      region: eu-west-1\n      deDot: yes\n"),
        [
            "receivers[0].sqs.queueName: is required",
            "receivers[0].sqs.deDot: expected true or false, found \"yes\""
        ]
    );
}

/// SendMessageBatch answers: every entry successful, except what `fail` says for an entry's
/// body (`(code, sender fault)`); GetQueueUrl answers the queue's URL.
fn handler(fail: fn(&str) -> Option<(&'static str, bool)>) -> fake::Handler {
    Arc::new(move |req: &Req, _| {
        let v = req.json();
        match req.target.as_str() {
            "AmazonSQS.GetQueueUrl" => (
                200,
                json!({"QueueUrl": format!("https://sqs.test/1/{}", v["QueueName"].as_str().unwrap())})
                    .to_string(),
            ),
            "AmazonSQS.SendMessageBatch" => {
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for e in v["Entries"].as_array().unwrap() {
                    let id = e["Id"].clone();
                    let body: Value = serde_json::from_str(e["MessageBody"].as_str().unwrap()).unwrap();
                    match fail(body["message"].as_str().unwrap_or("")) {
                        Some((code, sender)) => failed.push(json!({"Id": id, "Code": code, "Message": "no", "SenderFault": sender})),
                        None => ok.push(json!({"Id": id, "MessageId": "m", "MD5OfMessageBody": "x"})),
                    }
                }
                (200, json!({"Successful": ok, "Failed": failed}).to_string())
            }
            other => (400, json!({"__type": "com.amazonaws.sqs#InvalidAction", "message": other}).to_string()),
        }
    })
}

async fn sink(fake: &Fake, yaml: &str) -> SqsSink {
    testing::sink(yaml, |c, env| SqsSink::build(c, env, &fake.env()))
}

fn entries(r: &Req) -> Vec<Value> {
    r.json()["Entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_batch_over_ten_messages_is_split_and_each_carries_its_occurrence_key() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      queueName: events\n").await;
    let docs = testing::docs(25);
    s.send(&docs).await.unwrap();
    s.send(&docs[..1]).await.unwrap();
    let reqs = fake.requests();
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    // The URL is asked once.
    assert_eq!(
        targets
            .iter()
            .filter(|t| **t == "AmazonSQS.GetQueueUrl")
            .count(),
        1
    );
    let sends: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.target == "AmazonSQS.SendMessageBatch")
        .collect();
    let mut sizes: Vec<usize> = sends.iter().map(|r| entries(r).len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 5, 10, 10]);
    let mut keys: Vec<String> = Vec::new();
    for r in &sends {
        assert!(
            r.authorization
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
        );
        assert_eq!(r.json()["QueueUrl"], "https://sqs.test/1/events");
        for e in entries(r) {
            let key = e["MessageAttributes"]["occurrence_key"]["StringValue"]
                .as_str()
                .unwrap()
                .to_owned();
            let body: Value = serde_json::from_str(e["MessageBody"].as_str().unwrap()).unwrap();
            assert_eq!(
                format!("{}:1", body["metadata"]["uid"].as_str().unwrap()),
                key
            );
            assert!(e.get("MessageGroupId").is_none());
            keys.push(key);
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 25);
}

#[tokio::test]
async fn a_batch_over_256_kib_is_split_by_size() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      queueName: events\n").await;
    let mut docs = testing::docs(4);
    for d in &mut docs {
        d.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024)).into();
    }
    s.send(&docs).await.unwrap();
    let sends: Vec<usize> = fake
        .requests()
        .iter()
        .filter(|r| r.target == "AmazonSQS.SendMessageBatch")
        .map(|r| entries(r).len())
        .collect();
    assert_eq!(sends, [2, 2]);
}

#[tokio::test]
async fn failed_entries_of_a_200_are_resent_when_transient_and_dropped_when_permanent() {
    let fake = Fake::start(handler(|m| match m {
        "m1" => Some(("ThrottlingException", true)),
        "m2" => Some(("InternalError", false)),
        "m3" => Some(("InvalidMessageContents", true)),
        _ => None,
    }))
    .await;
    let mut s = sink(&fake, "      queueName: events\n").await;
    let answer = s.send(&testing::docs(5)).await;
    assert_eq!(
        testing::resent(answer.clone()),
        [(1, true), (2, true), (3, false)]
    );
    let Err(SendError::Partial(list)) = answer else {
        unreachable!()
    };
    assert!(
        list[2].1.reason().contains("InvalidMessageContents"),
        "{list:?}"
    );
}

#[tokio::test]
async fn an_entry_missing_from_the_answer_is_resent() {
    let fake = Fake::start(Arc::new(|req: &Req, _| match req.target.as_str() {
        "AmazonSQS.GetQueueUrl" => (200, json!({"QueueUrl": "u"}).to_string()),
        _ => (200, json!({"Successful": [{"Id": "0"}]}).to_string()),
    }))
    .await;
    let mut s = sink(&fake, "      queueName: events\n").await;
    match s.send(&testing::docs(2)).await {
        Err(SendError::Partial(list)) => {
            assert_eq!(list.len(), 1);
            assert!(matches!(list[0], (1, SendError::Transient { .. })));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_fifo_queue_gets_dedup_and_group_ids_in_order_one_request_at_a_time() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      queueName: events.fifo\n").await;
    let docs = testing::docs(12);
    s.send(&docs).await.unwrap();
    let sends: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.target == "AmazonSQS.SendMessageBatch")
        .collect();
    let all: Vec<Value> = sends.iter().flat_map(entries).collect();
    assert_eq!(sends.len(), 2);
    for (e, d) in all.iter().zip(&docs) {
        assert_eq!(e["MessageDeduplicationId"], *d.key);
        assert_eq!(
            e["MessageGroupId"],
            d.occ.event.involved_object.uid.as_deref().unwrap()
        );
    }
}

#[tokio::test]
async fn a_missing_queue_is_permanent_and_asked_for_again_and_throttling_is_transient() {
    let fake = Fake::start(Arc::new(|req: &Req, n| match (req.target.as_str(), n) {
        ("AmazonSQS.GetQueueUrl", 0) => (
            400,
            json!({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The specified queue does not exist."}).to_string(),
        ),
        ("AmazonSQS.GetQueueUrl", _) => (200, json!({"QueueUrl": "u"}).to_string()),
        (_, 2) => (
            400,
            json!({"__type": "com.amazonaws.sqs#ThrottlingException", "message": "Rate exceeded"}).to_string(),
        ),
        _ => (500, "{}".to_owned()),
    }))
    .await;
    let mut s = sink(&fake, "      queueName: nope\n").await;
    match s.send(&testing::docs(2)).await {
        Err(SendError::Permanent { reason }) => {
            assert!(
                reason.contains("GetQueueUrl")
                    && reason.contains("QueueDoesNotExist")
                    && reason.contains("does not exist"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    match s.send(&testing::docs(2)).await {
        Err(SendError::Transient { reason, .. }) => {
            assert!(reason.contains("ThrottlingException"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match s.send(&testing::docs(1)).await {
        Err(SendError::Transient { reason, .. }) => assert!(reason.contains("500"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_message_fails_alone() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      queueName: events\n").await;
    let mut docs = testing::docs(2);
    docs[0].body = format!("\"{}\"", "x".repeat(1024 * 1024)).into();
    match s.send(&docs).await {
        Err(SendError::Partial(list)) => {
            assert_eq!(list.len(), 1);
            assert!(
                matches!(&list[0], (0, SendError::Permanent { reason }) if reason.contains("over SQS's limit"))
            );
        }
        other => panic!("{other:?}"),
    }
}
