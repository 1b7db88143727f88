//! The firehose receiver against a stand-in answering as Firehose does.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn firehose(yaml: &str) -> FirehoseConfig {
    testing::receiver(yaml)
}

fn sink(fake: &Fake, yaml: &str) -> FirehoseSink {
    testing::sink(yaml, |c, env| FirehoseSink::build(c, env, &fake.env()))
}

fn data(r: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(r["Data"].as_str().unwrap())
        .unwrap()
}

fn handler(fail: fn(&Value) -> Option<&'static str>) -> fake::Handler {
    Arc::new(move |req: &Req, _| {
        assert_eq!(req.target, "Firehose_20150804.PutRecordBatch");
        let mut failed = 0;
        let out: Vec<Value> = req.json()["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let doc: Value = serde_json::from_slice(&data(r)).unwrap();
                match fail(&doc) {
                    Some(code) => {
                        failed += 1;
                        json!({"ErrorCode": code, "ErrorMessage": "no"})
                    }
                    None => json!({"RecordId": "r"}),
                }
            })
            .collect();
        (
            200,
            json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": out})
                .to_string(),
        )
    })
}

#[test]
fn resmoios_readme_example_loads_and_an_arn_is_refused_with_the_name() {
    let c = firehose(
        "      deliveryStreamName: \"events-pipeline\"\n      region: us-west-2\n      layout: # Optional\n",
    );
    assert_eq!(c.delivery_stream, "events-pipeline");
    assert!(c.warnings().is_empty());
    assert_eq!(
        testing::errors(
            "firehose",
            "      deliveryStreamName: arn:aws:firehose:eu-west-1:1:deliverystream/ev\n"
        ),
        [
            "receivers[0].firehose.deliveryStreamName: \"arn:aws:firehose:eu-west-1:1:deliverystream/ev\": the delivery stream's name, not its ARN (ev)"
        ]
    );
}

#[tokio::test]
async fn records_are_newline_delimited_documents_split_by_count_and_size() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      deliveryStreamName: ev\n");
    let docs = testing::docs(600);
    s.send(&docs).await.unwrap();
    let reqs = fake.requests();
    let mut counts: Vec<usize> = reqs
        .iter()
        .map(|r| r.json()["Records"].as_array().unwrap().len())
        .collect();
    counts.sort();
    assert_eq!(counts, [100, 500]);
    let first = reqs
        .iter()
        .find(|r| r.json()["Records"].as_array().unwrap().len() == 500)
        .unwrap();
    assert_eq!(first.json()["DeliveryStreamName"], "ev");
    let d = data(&first.json()["Records"][0]);
    assert_eq!(d.last(), Some(&b'\n'));
    assert_eq!(&d[..d.len() - 1], &docs[0].body[..]);
    // 4 MiB per request: 10 records of 900 KB are three requests.
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, "      deliveryStreamName: ev\n");
    let mut big = testing::docs(10);
    for d in &mut big {
        d.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(900_000)).into();
    }
    s.send(&big).await.unwrap();
    let mut counts: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| r.json()["Records"].as_array().unwrap().len())
        .collect();
    counts.sort();
    assert_eq!(counts, [2, 4, 4]);
}

#[tokio::test]
async fn failed_records_of_a_200_are_resent_when_the_service_is_busy() {
    let fake = Fake::start(handler(|d| match d["message"].as_str().unwrap() {
        "m1" => Some("ServiceUnavailableException"),
        "m2" => Some("InvalidKMSResourceException"),
        _ => None,
    }))
    .await;
    let mut s = sink(&fake, "      deliveryStreamName: ev\n");
    assert_eq!(
        testing::resent(s.send(&testing::docs(4)).await),
        [(1, true), (2, false)]
    );
}
