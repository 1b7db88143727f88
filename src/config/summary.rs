//! One-line summary for `check-config`, and non-fatal warnings.

use super::{Config, Route};

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

    /// Problems that are not errors: receivers that no rule sends to.
    pub fn warnings(&self) -> Vec<String> {
        let mut used = Vec::new();
        collect_receivers(&self.route, &mut used);
        self.receivers
            .iter()
            .filter(|r| !used.contains(&r.name.as_str()))
            .map(|r| format!("receiver {:?} is defined but no rule sends to it", r.name))
            .collect()
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
