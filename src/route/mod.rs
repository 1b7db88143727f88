//! The routing tree, with resmoio's semantics exactly (reference §2.2), except that an occurrence is
//! sent to each receiver at most once even when several rules name it (resmoio sends duplicates).
//!
//! - Any matching `drop` rule skips this node and its whole subtree (siblings are unaffected).
//! - Every `match` rule is evaluated; each matching rule with a `receiver` delivers on its own.
//! - Sub-routes are visited only when *every* match rule of this node matched (vacuously true).

use crate::config::{Regex, Route, Rule};
use crate::event::Event;

/// Receiver names an event is routed to, in first-reached order, without repeats.
pub fn receivers_for<'a>(route: &'a Route, event: &Event) -> Vec<&'a str> {
    let mut out = Vec::new();
    receivers_into(route, event, &mut out);
    out
}

/// [`receivers_for`] into `out` (cleared first): the pipeline keeps one list for every occurrence.
pub fn receivers_into<'a>(route: &'a Route, event: &Event, out: &mut Vec<&'a str>) {
    out.clear();
    visit(route, event, out);
}

fn visit<'a>(route: &'a Route, event: &Event, out: &mut Vec<&'a str>) {
    if route.drop.iter().any(|rule| matches(rule, event)) {
        return;
    }
    let mut all_matched = true;
    for rule in &route.match_ {
        if matches(rule, event) {
            if let Some(receiver) = rule.receiver.as_deref()
                && !out.contains(&receiver)
            {
                out.push(receiver);
            }
        } else {
            all_matched = false;
        }
    }
    if all_matched {
        for sub in &route.routes {
            visit(sub, event, out);
        }
    }
}

/// Every condition set on the rule must hold; an unset condition is "don't care".
pub fn matches(rule: &Rule, event: &Event) -> bool {
    fn field(re: &Option<Regex>, value: Option<&str>) -> bool {
        re.as_ref()
            .is_none_or(|re| re.is_match(value.unwrap_or("")))
    }
    fn map(
        rules: &std::collections::BTreeMap<String, Regex>,
        values: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        rules
            .iter()
            .all(|(k, re)| values.get(k).is_some_and(|v| re.is_match(v)))
    }
    let source = event.source.as_ref();
    field(&rule.message, event.message.as_deref())
        && field(
            &rule.api_version,
            event.involved_object.api_version.as_deref(),
        )
        && field(&rule.kind, event.involved_object.kind.as_deref())
        && field(&rule.namespace, event.metadata.namespace.as_deref())
        && field(&rule.reason, event.reason.as_deref())
        && field(&rule.type_, event.type_.as_deref())
        && field(&rule.component, source.and_then(|s| s.component.as_deref()))
        && field(&rule.host, source.and_then(|s| s.host.as_deref()))
        && rule
            .min_count
            .is_none_or(|min| event.occurrence_count() >= min)
        && map(&rule.labels, &event.involved_object.labels)
        && map(&rule.annotations, &event.involved_object.annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(s: &str) -> Option<Regex> {
        Some(Regex::new(s).unwrap())
    }

    fn rule(f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule::default();
        f(&mut r);
        r
    }

    fn ev(ns: &str, kind: &str, reason: &str, type_: &str) -> Event {
        let mut e = Event::default();
        e.metadata.namespace = Some(ns.into());
        e.involved_object.kind = Some(kind.into());
        e.reason = Some(reason.into());
        e.type_ = Some(type_.into());
        e.count = Some(1);
        e
    }

    #[test]
    fn empty_route_sends_nothing() {
        assert!(receivers_for(&Route::default(), &ev("a", "Pod", "X", "Normal")).is_empty());
    }

    #[test]
    fn drop_beats_match_and_prunes_the_subtree_only() {
        // GH issue 51 of the Go exporter: drop Normal, match one reason.
        let route = Route {
            drop: vec![rule(|r| r.type_ = re("Normal"))],
            match_: vec![rule(|r| {
                r.reason = re("FailedCreatePodContainer");
                r.receiver = Some("elastic".into());
            })],
            routes: vec![Route {
                match_: vec![rule(|r| r.receiver = Some("child".into()))],
                ..Route::default()
            }],
        };
        let root = Route {
            routes: vec![
                route,
                Route {
                    match_: vec![rule(|r| r.receiver = Some("sibling".into()))],
                    ..Route::default()
                },
            ],
            ..Route::default()
        };
        assert_eq!(
            receivers_for(
                &root,
                &ev("a", "Pod", "FailedCreatePodContainer", "Warning")
            ),
            ["elastic", "child", "sibling"]
        );
        assert_eq!(
            receivers_for(&root, &ev("a", "Pod", "FailedCreate", "Warning")),
            ["sibling"],
            "pattern longer than value"
        );
        assert_eq!(
            receivers_for(&root, &ev("a", "Pod", "FailedCreatePodContainer", "Normal")),
            ["sibling"],
            "drop prunes subtree, not sibling"
        );
    }

    #[test]
    fn descent_requires_every_match_rule_but_each_rule_delivers_alone() {
        let route = Route {
            match_: vec![
                rule(|r| {
                    r.namespace = re("^prod$");
                    r.receiver = Some("prod".into());
                }),
                rule(|r| {
                    r.type_ = re("Warning");
                    r.receiver = Some("warnings".into());
                }),
            ],
            routes: vec![Route {
                match_: vec![rule(|r| r.receiver = Some("prod-warnings".into()))],
                ..Route::default()
            }],
            ..Route::default()
        };
        assert_eq!(
            receivers_for(&route, &ev("prod", "Pod", "X", "Warning")),
            ["prod", "warnings", "prod-warnings"]
        );
        assert_eq!(
            receivers_for(&route, &ev("prod", "Pod", "X", "Normal")),
            ["prod"]
        );
        assert_eq!(
            receivers_for(&route, &ev("dev", "Pod", "X", "Warning")),
            ["warnings"]
        );
    }

    #[test]
    fn several_receivers_and_no_duplicates() {
        let route = Route {
            routes: vec![
                Route {
                    match_: vec![rule(|r| r.receiver = Some("a".into()))],
                    ..Route::default()
                },
                Route {
                    match_: vec![rule(|r| r.receiver = Some("b".into()))],
                    ..Route::default()
                },
                Route {
                    match_: vec![rule(|r| {
                        r.kind = re("Pod");
                        r.receiver = Some("a".into());
                    })],
                    ..Route::default()
                },
            ],
            ..Route::default()
        };
        assert_eq!(
            receivers_for(&route, &ev("x", "Pod", "R", "Normal")),
            ["a", "b"]
        );
    }

    #[test]
    fn rule_fields_are_unanchored_and_anded() {
        let r = rule(|r| {
            r.kind = re("Pod");
            r.reason = re("^Back");
        });
        assert!(
            matches(&r, &ev("x", "PodDisruptionBudget", "BackOff", "Warning")),
            "unanchored like Go"
        );
        assert!(!matches(&r, &ev("x", "Pod", "ImageBackOff", "Warning")));
    }

    #[test]
    fn labels_require_the_key_and_min_count_compares_count() {
        let mut e = ev("x", "Pod", "R", "Normal");
        e.involved_object
            .labels
            .insert("app".into(), "web-1".into());
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("app".to_string(), Regex::new("^web").unwrap());
        assert!(matches(&rule(|r| r.labels = labels.clone()), &e));
        e.involved_object.labels.clear();
        assert!(
            !matches(&rule(|r| r.labels = labels.clone()), &e),
            "missing label key never matches"
        );
        e.count = Some(3);
        assert!(matches(&rule(|r| r.min_count = Some(3)), &e));
        assert!(!matches(&rule(|r| r.min_count = Some(4)), &e));
    }
}
