//! The kinesis receiver against a stand-in answering as Kinesis does (fake.rs).

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn kinesis(yaml: &str) -> KinesisConfig {
    testing::receiver(yaml)
}

fn sink(fake: &Fake, yaml: &str) -> KinesisSink {
    testing::sink(yaml, |c, env| KinesisSink::build(c, env, &fake.env()))
}

/// PutRecords answers: each record accepted, or failed with the code `fail` gives its message.
fn handler(fail: fn(&str) -> Option<&'static str>) -> fake::Handler {
    Arc::new(move |req: &Req, _| {
        assert_eq!(req.target, "Kinesis_20131202.PutRecords");
        let v = req.json();
        let mut failed = 0;
        let records: Vec<Value> = v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(r["Data"].as_str().unwrap())
                    .unwrap();
                let doc: Value = serde_json::from_slice(&data).unwrap();
                match fail(doc["message"].as_str().unwrap_or("")) {
                    Some(code) => {
                        failed += 1;
                        json!({"ErrorCode": code, "ErrorMessage": "no"})
                    }
                    None => json!({"SequenceNumber": "1", "ShardId": "shardId-000000000000"}),
                }
            })
            .collect();
        (
            200,
            json!({"FailedRecordCount": failed, "Records": records}).to_string(),
        )
    })
}

#[test]
fn resmoios_readme_examples_load_and_an_arn_names_the_region() {
    let c = kinesis(
        "      streamName: \"events-pipeline\"\n      region: us-west-2\n      layout: # Optional\n",
    );
    assert_eq!(c.stream, "events-pipeline");
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let arn = kinesis(
        "      streamName: arn:aws:kinesis:eu-west-1:123456789012:stream/ev\n      region: us-west-2\n",
    );
    let w = arn.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].1.contains("eu-west-1"), "{w:?}");
    assert_eq!(
        testing::errors("kinesis", "      streamName: arn:aws:sqs:eu-west-1:1:q\n"),
        [
            "receivers[0].kinesis.streamName: \"arn:aws:sqs:eu-west-1:1:q\" is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
        ]
    );
    assert_eq!(
        testing::errors("kinesis", "      region: eu-west-1\n"),
        ["receivers[0].kinesis.streamName: is required"]
    );
}

#[tokio::test]
async fn records_are_keyed_by_the_involved_object_and_split_by_count_and_size() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      streamName: ev\n");
    let docs = testing::docs(1100);
    s.send(&docs).await.unwrap();
    let reqs = fake.requests();
    let counts: Vec<usize> = reqs
        .iter()
        .map(|r| r.json()["Records"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [500, 500, 100]);
    let mut i = 0;
    for r in &reqs {
        let v = r.json();
        assert_eq!(v["StreamName"], "ev");
        for rec in v["Records"].as_array().unwrap() {
            assert_eq!(
                rec["PartitionKey"],
                docs[i].occ.event.involved_object.uid.as_deref().unwrap()
            );
            let data = base64::engine::general_purpose::STANDARD
                .decode(rec["Data"].as_str().unwrap())
                .unwrap();
            assert_eq!(data, docs[i].body);
            i += 1;
        }
    }
    // 5 MiB per request: 12 records of 600 KB are three requests.
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      streamName: ev\n");
    let mut big = testing::docs(12);
    for d in &mut big {
        d.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(600_000)).into();
    }
    s.send(&big).await.unwrap();
    let counts: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| r.json()["Records"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [8, 4]);
}

#[tokio::test]
async fn throttled_records_of_a_200_are_resent_and_invalid_ones_dropped() {
    let fake = Fake::start(handler(|m| match m {
        "m1" => Some("ProvisionedThroughputExceededException"),
        "m2" => Some("InternalFailure"),
        "m4" => Some("KMSAccessDeniedException"),
        _ => None,
    }))
    .await;
    let mut s = sink(&fake, "      streamName: ev\n");
    assert_eq!(
        testing::resent(s.send(&testing::docs(6)).await),
        [(1, true), (2, true), (4, false)]
    );
}

#[tokio::test]
async fn a_stream_arn_is_sent_as_such_and_a_missing_stream_is_permanent() {
    let fake = Fake::start(Arc::new(|req: &Req, _| {
        let v = req.json();
        assert_eq!(v["StreamARN"], "arn:aws:kinesis:eu-west-1:1:stream/ev");
        assert!(v.get("StreamName").is_none());
        assert!(req.authorization.contains("/eu-west-1/kinesis/aws4_request"), "{}", req.authorization);
        (
            400,
            json!({"__type": "ResourceNotFoundException", "message": "Stream ev under account 1 not found."}).to_string(),
        )
    }))
    .await;
    let mut s = sink(
        &fake,
        "      streamName: arn:aws:kinesis:eu-west-1:1:stream/ev\n      region: us-east-1\n",
    );
    match s.send(&testing::docs(3)).await {
        Err(SendError::Permanent { reason }) => {
            assert!(
                reason.contains("ResourceNotFoundException") && reason.contains("not found"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_record_over_1_mib_fails_alone() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      streamName: ev\n");
    let mut docs = testing::docs(3);
    docs[1].body = format!("\"{}\"", "x".repeat(1024 * 1024)).into();
    match s.send(&docs).await {
        Err(SendError::Partial(list)) => {
            assert_eq!(list.len(), 1);
            assert!(
                matches!(&list[0], (1, SendError::Permanent { reason }) if reason.contains("over Kinesis's limit"))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.requests()[0].json()["Records"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
