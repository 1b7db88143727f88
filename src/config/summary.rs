//! One-line summary for `check-config`, and non-fatal warnings.

use serde_json::Value;

use super::{Config, Route};
use crate::event::{Event, Occurrence};
use crate::template::Template;

impl Config {
    /// E.g. `config OK: 3 receivers (stdout, file, webhook), 5 rules in 3 routes, namespace all,
    /// leader election on`.
    pub fn summary(&self) -> String {
        let (rules, routes) = count(&self.route);
        let kinds: Vec<&str> = self.receivers.iter().map(|r| r.sink.kind()).collect();
        format!(
            "config OK: {} receiver{} ({}), {} rule{} in {} route{}, namespace {}, leader election {}",
            self.receivers.len(),
            plural(self.receivers.len()),
            kinds.join(", "),
            rules,
            plural(rules),
            routes,
            plural(routes),
            self.namespace.as_deref().unwrap_or("all"),
            if self.leader_election.enabled {
                "on"
            } else {
                "off"
            },
        )
    }

    /// Problems that are not errors, each `path: message`: a config that exports nothing,
    /// receivers that no rule sends to, and templates that read fields the event does not have
    /// (`.Resaon` exports `<no value>`) or fail on a sample event.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.load_warnings.clone();
        let mut used = Vec::new();
        collect_receivers(&self.route, &mut used);
        if self.receivers.is_empty() {
            out.push("receivers: none defined: nothing will be exported".to_owned());
        } else if used.is_empty() {
            out.push("route: no rule sends to a receiver: nothing will be exported".to_owned());
        } else {
            out.extend(
                self.receivers
                    .iter()
                    .filter(|r| !used.contains(&r.name.as_str()))
                    .map(|r| format!("receiver {:?} is defined but no rule sends to it", r.name)),
            );
        }
        let sample = sample_event();
        for (i, r) in self.receivers.iter().enumerate() {
            let path = format!("receivers[{i}].{}", r.sink.kind());
            let receiver = r.sink.receiver();
            if let Some(layout) = &receiver.encoding().layout {
                lint_leaves(&sample, layout, &format!("{path}.layout"), &mut out);
            }
            for (key, template) in receiver.templates() {
                lint_template(&sample, template, &format!("{path}.{key}"), &mut out);
            }
            for (key, why) in receiver.warnings() {
                out.push(format!("{path}.{key}: {why} (receiver {:?})", r.name));
            }
        }
        out
    }
}

/// An exported event with every field set, as the sinks render it: what templates are checked
/// against. A field missing here is missing from every real event.
fn sample_event() -> Value {
    let event: Event = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "web-1.17f3a", "namespace": "shop", "uid": "0b8e-uid",
            "resourceVersion": "1234", "generation": 1, "generateName": "web-",
            "creationTimestamp": "2025-01-01T00:00:00Z", "deletionTimestamp": "2025-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 30, "selfLink": "/api/v1/x", "finalizers": ["f"],
            "labels": {"l": "v"}, "annotations": {"a": "v"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "u",
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "reason": "BackOff", "message": "Back-off restarting failed container",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
        "count": 3, "type": "Warning", "eventTime": "2025-01-01T00:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2025-01-01T00:00:00.000000Z"},
        "action": "Restarting",
        "related": {"apiVersion": "v1", "kind": "Node", "name": "node-1", "namespace": "",
                    "uid": "u", "resourceVersion": "1", "fieldPath": "spec"},
        "reportingComponent": "kubelet", "reportingInstance": "node-1",
        "clusterName": "cluster",
        "involvedObject": {
            "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u", "apiVersion": "v1",
            "resourceVersion": "1", "fieldPath": "spec.containers{web}",
            "labels": {"app": "web"}, "annotations": {"a": "v"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                 "uid": "u", "controller": true, "blockOwnerDeletion": true}],
            "deleted": false
        }
    }))
    .expect("the sample event decodes");
    Occurrence::new(event).value().clone()
}

fn lint_leaves(sample: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) => lint_template(sample, s, path, out),
        Value::Object(m) => {
            for (k, child) in m {
                lint_leaves(sample, child, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                lint_leaves(sample, child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Warns about a template (already known to parse) that fails on the sample event or reads a
/// field chain the event does not have.
fn lint_template(sample: &Value, src: &str, path: &str, out: &mut Vec<String>) {
    if !src.contains("{{") {
        return;
    }
    let Ok(template) = Template::parse(src) else {
        return;
    };
    if let Err(e) = template.render(sample) {
        out.push(format!(
            "{path}: fails on a sample event, so it would fail on real ones: {e}"
        ));
        return;
    }
    let mut seen = Vec::new();
    for chain in field_chains(src) {
        if seen.contains(&chain) {
            continue;
        }
        if let Some(w) = missing_field(sample, &chain) {
            out.push(format!("{path}: {w}"));
        }
        seen.push(chain);
    }
}

/// Field chains read from the event itself: `.A.B` at the top level of the template (not inside
/// `range` or `with`, where `.` is something else) and `$.A.B` anywhere. Each is a list of names.
fn field_chains(src: &str) -> Vec<Vec<String>> {
    let mut chains = Vec::new();
    // Blocks that are open: true for those that change the dot.
    let mut blocks: Vec<bool> = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let action = after[..end]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &after[end + 2..];
        if action.starts_with("/*") {
            continue;
        }
        let keyword = action.split_whitespace().next().unwrap_or("");
        let dot_is_event = !blocks.iter().any(|changes| *changes);
        for (rooted, chain) in chains_in(action) {
            if rooted || dot_is_event {
                chains.push(chain);
            }
        }
        match keyword {
            "range" | "with" => blocks.push(true),
            "if" => blocks.push(false),
            "end" => {
                blocks.pop();
            }
            _ => {}
        }
    }
    chains
}

/// `(rooted at $, names)` of every `.A.B` / `$.A.B` in one action, outside string literals.
fn chains_in(action: &str) -> Vec<(bool, Vec<String>)> {
    let chars: Vec<char> = action.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '`' || c == '\'' {
            // Skip the literal.
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let starts = c == '.'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphabetic() || *n == '_')
            && prev.is_none_or(|p| p.is_whitespace() || p == '(' || p == '|' || p == '$');
        if !starts {
            i += 1;
            continue;
        }
        let rooted = prev == Some('$') && (i < 2 || !is_ident(chars[i - 2]));
        if prev == Some('$') && !rooted {
            i += 1;
            continue;
        }
        let mut names = Vec::new();
        while i < chars.len() && chars[i] == '.' {
            let from = i + 1;
            let mut j = from;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            if j == from {
                break;
            }
            names.push(chars[from..j].iter().collect());
            i = j;
        }
        if !names.is_empty() {
            out.push((rooted, names));
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Keys of maps whose contents are the user's (labels, annotations): a missing key there is data,
/// not a typo.
const FREE_FORM: &[&str] = &["labels", "annotations"];

/// The warning for a chain that the event does not have, found by rendering each prefix with the
/// template engine itself (so its field-name rules apply).
fn missing_field(sample: &Value, chain: &[String]) -> Option<String> {
    for k in 1..=chain.len() {
        let prefix = format!(".{}", chain[..k].join("."));
        let rendered = Template::parse(&format!("{{{{ {prefix} }}}}"))
            .ok()?
            .render(sample);
        match rendered {
            Err(e) => return Some(format!("{prefix}: {}", e.message)),
            Ok(s) if s == "<no value>" => {
                if k > 1 && FREE_FORM.contains(&chain[k - 2].to_ascii_lowercase().as_str()) {
                    return None;
                }
                let parent = if k == 1 {
                    "the event".to_owned()
                } else {
                    format!(".{}", chain[..k - 1].join("."))
                };
                let hint = suggestion(sample, &chain[..k - 1], &chain[k - 1])
                    .map(|s| format!(" (did you mean .{s}?)"))
                    .unwrap_or_default();
                return Some(format!(
                    "{prefix}: {parent} has no field {}, so this exports \"<no value>\"{hint}",
                    chain[k - 1]
                ));
            }
            Ok(_) => {}
        }
    }
    None
}

/// The closest field name (Go spelling) of the object at `parent` in the sample.
fn suggestion(sample: &Value, parent: &[String], name: &str) -> Option<String> {
    let mut obj = sample;
    for part in parent {
        let map = obj.as_object()?;
        let meta = map.get("metadata").and_then(Value::as_object);
        obj = map
            .iter()
            .chain(meta.into_iter().flatten())
            .find(|(k, _)| k.eq_ignore_ascii_case(part))
            .map(|(_, v)| v)?;
    }
    let map = obj.as_object()?;
    let mut keys: Vec<String> = map.keys().map(|k| go_name(k)).collect();
    if parent.is_empty() {
        if let Some(meta) = map.get("metadata").and_then(Value::as_object) {
            keys.extend(meta.keys().map(|k| go_name(k)));
        }
        keys.extend(["GetTimestampMs", "GetTimestampISO8601"].map(String::from));
    }
    let candidates: Vec<&str> = keys.iter().map(String::as_str).collect();
    super::schema::suggest(name, &candidates).map(str::to_owned)
}

/// `involvedObject` → `InvolvedObject`, `uid` → `UID`, `apiVersion` → `APIVersion`.
fn go_name(json: &str) -> String {
    match json {
        "uid" => "UID".to_owned(),
        "apiVersion" => "APIVersion".to_owned(),
        _ => {
            let mut c = json.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// (rules, route nodes including the root).
fn count(r: &Route) -> (usize, usize) {
    r.routes
        .iter()
        .map(count)
        .fold((r.drop.len() + r.match_.len(), 1), |(a, b), (c, d)| {
            (a + c, b + d)
        })
}

fn collect_receivers<'a>(r: &'a Route, out: &mut Vec<&'a str>) {
    for rule in r.drop.iter().chain(&r.match_) {
        if let Some(name) = &rule.receiver {
            out.push(name);
        }
    }
    for sub in &r.routes {
        collect_receivers(sub, out);
    }
}
