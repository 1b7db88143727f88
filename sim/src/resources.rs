//! The resource types kube-sim serves, and the discovery documents that describe them.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
    }
}

/// Everything the exporter reads: events and leases, and the kinds events are about.
pub const TYPES: &[ResourceType] = &[
    rt("", "v1", "events", "Event", true),
    rt("", "v1", "pods", "Pod", true),
    rt("", "v1", "nodes", "Node", false),
    rt("", "v1", "namespaces", "Namespace", false),
    rt("", "v1", "services", "Service", true),
    rt("", "v1", "configmaps", "ConfigMap", true),
    rt("", "v1", "secrets", "Secret", true),
    rt(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    rt("", "v1", "persistentvolumes", "PersistentVolume", false),
    rt("", "v1", "serviceaccounts", "ServiceAccount", true),
    rt("", "v1", "endpoints", "Endpoints", true),
    rt(
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
    ),
    rt("apps", "v1", "deployments", "Deployment", true),
    rt("apps", "v1", "replicasets", "ReplicaSet", true),
    rt("apps", "v1", "statefulsets", "StatefulSet", true),
    rt("apps", "v1", "daemonsets", "DaemonSet", true),
    rt("batch", "v1", "jobs", "Job", true),
    rt("batch", "v1", "cronjobs", "CronJob", true),
    rt(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
    ),
    rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    rt("networking.k8s.io", "v1", "ingresses", "Ingress", true),
    rt("coordination.k8s.io", "v1", "leases", "Lease", true),
    rt("events.k8s.io", "v1", "events", "Event", true),
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    TYPES
        .iter()
        .copied()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
}

pub fn events() -> ResourceType {
    TYPES[0]
}

pub fn find_kind(api_version: &str, kind: &str) -> Option<ResourceType> {
    TYPES
        .iter()
        .copied()
        .find(|t| t.api_version() == api_version && t.kind == kind)
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version_info() -> Value {
    json!({"major":"1","minor":"33","gitVersion":"v1.33.0-kube-sim","gitCommit":"0000000","gitTreeState":"clean",
           "buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"})
}

pub fn core_versions() -> Value {
    json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]})
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut g: Vec<(&str, &str)> = TYPES
        .iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| (t.group, t.version))
        .collect();
    g.sort();
    g.dedup();
    g
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind":"APIGroupList","apiVersion":"v1","groups":groups})
}

/// `None` when the group/version is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| json!({"name":t.plural,"singularName":t.kind.to_lowercase(),"namespaced":t.namespaced,"kind":t.kind,"verbs":VERBS}))
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":resources}),
    )
}
