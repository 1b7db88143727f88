//! The opscenter receiver against a stand-in answering as Systems Manager's CreateOpsItem does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::sink::aws::fake::{self, Fake, Req};
use crate::sink::testing;

fn opscenter(yaml: &str) -> OpsCenterConfig {
    testing::receiver(yaml)
}

fn sink(fake: &Fake, yaml: &str) -> OpsCenterSink {
    testing::sink(yaml, |c, env| OpsCenterSink::build(c, env, &fake.env()))
}

/// resmoio's README example, made YAML (its commas, indentation and list of tags are not) with
/// its values kept.
pub const README_FIXED: &str = "      title: \"{{ .Message }}\"
      category: \"{{ .Reason }}\"
      description: \"Event {{ .Reason }} for {{ .InvolvedObject.Namespace }}/{{ .InvolvedObject.Name }} on K8s cluster\"
      notifications:
        - \"sns1\"
        - \"sns2\"
      operationalData:
        Reason: \"{{ .Reason }}\"
      priority: \"6\"
      region: \"us-east1\"
      relatedOpsItems:
        - \"ops1\"
        - \"ops2\"
      severity: \"6\"
      source: \"production\"
      tags:
        ENV: \"{{ .InvolvedObject.Namespace }}\"
";

#[test]
fn resmoios_readme_example_made_yaml_loads_but_its_priority_6_is_refused() {
    assert_eq!(
        testing::errors("opscenter", README_FIXED),
        ["receivers[0].opscenter.priority: \"6\": OpsCenter priorities are 1 to 5"]
    );
    let c = opscenter(&README_FIXED.replace("priority: \"6\"", "priority: \"3\""));
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].1.contains("us-east1"), "{w:?}");
    assert_eq!(
        testing::errors(
            "opscenter",
            "      title: t\n      source: s\n      operationalData:\n        /aws/resources: x\n"
        ),
        [
            "receivers[0].opscenter.description: is required (CreateOpsItem refuses an OpsItem without it)",
            "receivers[0].opscenter.operationalData./aws/resources: keys of 1-128 characters not starting with aws, amzn or ssm (reserved by AWS)"
        ]
    );
}

/// CreateOpsItem as OpsCenter answers it: an id, or OpsItemAlreadyExistsException for a
/// dedup string it has seen; `fail(n)` answers the n-th request with an error instead.
fn handler(
    fail: fn(usize) -> Option<(u16, &'static str)>,
) -> (fake::Handler, Arc<Mutex<Vec<Value>>>) {
    let items = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let out = items.clone();
    let h: fake::Handler = Arc::new(move |req: &Req, n| {
        assert_eq!(req.target, "AmazonSSM.CreateOpsItem");
        if let Some((status, code)) = fail(n) {
            return (status, json!({"__type": code, "Message": "no"}).to_string());
        }
        let v = req.json();
        let dedup: Value = serde_json::from_str(
            v["OperationalData"]["/aws/dedup"]["Value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        if !seen
            .lock()
            .unwrap()
            .insert(dedup["dedupString"].as_str().unwrap().to_owned())
        {
            return (
                400,
                json!({"__type": "OpsItemAlreadyExistsException", "Message": "exists", "OpsItemId": "oi-1"}).to_string(),
            );
        }
        items.lock().unwrap().push(v);
        (200, json!({"OpsItemId": format!("oi-{n}")}).to_string())
    });
    (h, out)
}

#[tokio::test]
async fn each_occurrence_is_an_ops_item_with_its_key_and_a_replay_is_deduplicated() {
    let (h, items) = handler(|_| None);
    let fake = Fake::start(h).await;
    let mut s = sink(
        &fake,
        &README_FIXED.replace("priority: \"6\"", "priority: \"{{ .Count }}\""),
    );
    let docs = testing::docs(3);
    s.send(&docs).await.unwrap();
    // The replay after a crash: OpsCenter answers that the OpsItems exist.
    s.send(&docs).await.unwrap();
    assert_eq!(s.already.get(), 3);
    let items = items.lock().unwrap();
    assert_eq!(items.len(), 3);
    for (item, d) in items.iter().zip(&docs) {
        assert_eq!(item["Title"], d.occ.event.message.as_deref().unwrap());
        assert_eq!(item["Category"], "BackOff");
        assert_eq!(
            item["Description"],
            format!(
                "Event BackOff for <no value>/{} on K8s cluster",
                d.occ.event.involved_object.name.clone().unwrap()
            )
        );
        assert_eq!(item["Source"], "production");
        assert_eq!(item["Severity"], "6");
        assert_eq!(item["Priority"], 1);
        assert_eq!(
            item["OperationalData"]["Reason"],
            json!({"Value": "BackOff", "Type": "SearchableString"})
        );
        assert_eq!(item["OperationalData"]["occurrence_key"]["Value"], *d.key);
        assert_eq!(item["Tags"], json!([{"Key": "ENV", "Value": "<no value>"}]));
        assert_eq!(
            item["RelatedOpsItems"],
            json!([{"OpsItemId": "ops1"}, {"OpsItemId": "ops2"}])
        );
        assert_eq!(
            item["Notifications"],
            json!([{"Arn": "sns1"}, {"Arn": "sns2"}])
        );
    }
}

#[tokio::test]
async fn throttling_resends_the_rest_of_the_batch_and_a_validation_error_only_its_item() {
    let (h, items) = handler(|n| match n {
        1 => Some((400, "ThrottlingException")),
        3 => Some((400, "ValidationException")),
        _ => None,
    });
    let fake = Fake::start(h).await;
    let mut s = sink(
        &fake,
        "      title: t\n      description: d\n      source: s\n",
    );
    assert_eq!(
        testing::resent(s.send(&testing::docs(4)).await),
        [(1, true), (2, true), (3, true)]
    );
    // The worker resends 1..4: request 2 succeeds, 3 is refused for good.
    let docs = testing::docs(4);
    match s.send(&docs[1..]).await {
        Err(SendError::Partial(list)) => {
            assert_eq!(list.len(), 1);
            assert!(
                matches!(&list[0], (1, SendError::Permanent { reason }) if reason.contains("ValidationException"))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(items.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn long_texts_are_cut_and_an_empty_title_gets_the_default_message() {
    let (h, items) = handler(|_| None);
    let fake = Fake::start(h).await;
    let mut s = sink(
        &fake,
        "      title: \"{{ if false }}x{{ end }}\"\n      description: \"{{ .Message }}{{ .Message }}\"\n      source: \"{{ .Message }}\"\n",
    );
    let mut docs = testing::docs(1);
    let mut e = docs[0].occ.event.clone();
    e.message = Some("é".repeat(3000).into());
    let occ = Arc::new(crate::event::Occurrence::new(e));
    docs[0] = Doc {
        key: occ.key.clone(),
        body: occ.json().clone(),
        occ,
    };
    s.send(&docs).await.unwrap();
    let item = &items.lock().unwrap()[0];
    assert_eq!(
        item["Description"].as_str().unwrap().chars().count(),
        DESCRIPTION
    );
    assert_eq!(item["Source"].as_str().unwrap().chars().count(), SOURCE);
    assert!(
        item["Title"]
            .as_str()
            .unwrap()
            .starts_with("Warning BackOff Pod p0: éé"),
        "{}",
        item["Title"]
    );
}
