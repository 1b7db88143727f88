//! The eventbridge receiver against a stand-in answering as EventBridge does.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn eventbridge(yaml: &str) -> EventBridgeConfig {
    testing::receiver(yaml)
}

fn sink(fake: &Fake, yaml: &str) -> EventBridgeSink {
    testing::sink(yaml, |c, env| EventBridgeSink::build(c, env, &fake.env()))
}

/// PutEvents answers: each entry accepted, or failed with the code `fail` gives its detail.
fn handler(fail: fn(&Value) -> Option<&'static str>) -> fake::Handler {
    Arc::new(move |req: &Req, _| {
        assert_eq!(req.target, "AWSEvents.PutEvents");
        let mut failed = 0;
        let entries: Vec<Value> = req.json()["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let detail: Value = serde_json::from_str(e["Detail"].as_str().unwrap()).unwrap();
                match fail(&detail) {
                    Some(code) => {
                        failed += 1;
                        json!({"ErrorCode": code, "ErrorMessage": "no"})
                    }
                    None => json!({"EventId": "id"}),
                }
            })
            .collect();
        (
            200,
            json!({"FailedEntryCount": failed, "Entries": entries}).to_string(),
        )
    })
}

const KEYS: &str = "      detailType: \"{{ .Reason }}\"\n      source: kube-event-exporter\n      eventBusName: kube\n      region: eu-west-1\n";

#[test]
fn keys_details_and_required_fields() {
    let c = eventbridge(&format!(
        "{KEYS}      details:\n        reason: \"{{{{ .Reason }}}}\"\n        n: 1\n"
    ));
    assert_eq!(c.event_bus_name.as_deref(), Some("kube"));
    assert_eq!(
        c.common.encoding.layout,
        Some(json!({"reason": "{{ .Reason }}", "n": 1}))
    );
    assert_eq!(
        testing::errors(
            "eventbridge",
            "      region: eu-west-1\n      source: aws.ec2\n"
        ),
        [
            "receivers[0].eventbridge.detailType: is required (PutEvents refuses an entry without it)",
            "receivers[0].eventbridge.source: sources starting with \"aws.\" are reserved for AWS services",
        ]
    );
    assert_eq!(
        testing::errors("eventbridge", "      detailType: x\n      source: \"\"\n"),
        ["receivers[0].eventbridge.source: is required (PutEvents refuses an entry without it)"]
    );
}

#[tokio::test]
async fn entries_carry_the_rendered_source_and_detail_type_and_the_events_time() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(&fake, KEYS);
    let docs = testing::docs(23);
    s.send(&docs).await.unwrap();
    let reqs = fake.requests();
    let mut sizes: Vec<usize> = reqs
        .iter()
        .map(|r| r.json()["Entries"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [3, 10, 10]);
    for r in &reqs {
        assert!(
            r.authorization.contains("/eu-west-1/events/aws4_request"),
            "{}",
            r.authorization
        );
        for e in r.json()["Entries"].as_array().unwrap() {
            assert_eq!(e["Source"], "kube-event-exporter");
            assert_eq!(e["DetailType"], "BackOff");
            assert_eq!(e["EventBusName"], "kube");
            // 2024-05-06T07:08:09Z, the event's lastTimestamp.
            assert_eq!(e["Time"], 1714979289);
            let detail: Value = serde_json::from_str(e["Detail"].as_str().unwrap()).unwrap();
            assert_eq!(detail["reason"], "BackOff");
        }
    }
}

#[tokio::test]
async fn failed_entries_of_a_200_are_resent_when_throttled_and_dropped_when_malformed() {
    let fake = Fake::start(handler(|d| match d["message"].as_str().unwrap() {
        "m0" => Some("ThrottlingException"),
        "m2" => Some("MalformedDetail"),
        "m3" => Some("InternalFailure"),
        _ => None,
    }))
    .await;
    let mut s = sink(&fake, KEYS);
    assert_eq!(
        testing::resent(s.send(&testing::docs(5)).await),
        [(0, true), (2, false), (3, true)]
    );
}

#[tokio::test]
async fn a_template_that_fails_sends_its_source_text() {
    let fake = Fake::start(handler(|_| None)).await;
    let mut s = sink(
        &fake,
        "      detailType: \"{{ index .Nope 3 }}\"\n      source: k8s\n      region: eu-west-1\n",
    );
    s.send(&testing::docs(1)).await.unwrap();
    let e = &fake.requests()[0].json()["Entries"][0];
    assert_eq!(e["DetailType"], "{{ index .Nope 3 }}");
    assert!(e.get("EventBusName").is_none());
}
