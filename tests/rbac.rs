//! The shipped manifests against what the code really does: two exporter processes started with
//! the Deployment's arguments, environment and ConfigMap (deploy/base), against kube-sim, which
//! records every kind of request it serves. Each request must be allowed by the ClusterRole or the
//! namespaced Role of deploy/base/rbac.yaml, and the image's default command must be the
//! Deployment's arguments.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_sim::{Access, GeneratorConfig, Sim, SimConfig};
use serde_json::Value;
use tokio::process::Command;

/// The namespace the base installs into (kustomization `namespace:`), where the Role applies.
const NAMESPACE: &str = "kube-event-exporter";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One RBAC rule: apiGroups × resources × verbs ("*" matches anything).
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == x || v == "*");
        any(&self.groups, group) && any(&self.resources, resource) && any(&self.verbs, verb)
    }
}

fn rules_of(docs: &[Value], kind: &str) -> Vec<Rule> {
    let role: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(role.len(), 1, "deploy/base/rbac.yaml has one {kind}");
    role[0]["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} has rules"))
        .iter()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
        })
        .collect()
}

/// The binding of `role_kind` grants it to the Deployment's service account.
fn assert_bound(docs: &[Value], binding_kind: &str, role_kind: &str, service_account: &str) {
    let binding = docs
        .iter()
        .find(|d| d["kind"] == binding_kind)
        .unwrap_or_else(|| panic!("deploy/base/rbac.yaml has a {binding_kind}"));
    let role = docs.iter().find(|d| d["kind"] == role_kind).unwrap();
    assert_eq!(binding["roleRef"]["kind"], role_kind);
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subjects = binding["subjects"].as_array().unwrap();
    assert!(
        subjects
            .iter()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == service_account),
        "{binding_kind} binds {service_account}: {subjects:?}"
    );
}

/// Discovery, which the default system:discovery ClusterRole allows to every authenticated user.
fn is_discovery(path: &str) -> bool {
    path == "/version"
        || path == "/api"
        || path == "/apis"
        || path.strip_prefix("/api/").is_some_and(|v| !v.contains('/'))
        || path
            .strip_prefix("/apis/")
            .is_some_and(|gv| gv.matches('/').count() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_is_allowed_by_the_shipped_rbac() {
    common::init();
    let deployment = yaml_docs("deploy/base/deployment.yaml").remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    let service_account = pod["serviceAccountName"].as_str().unwrap();

    // The image runs the Deployment's arguments by default.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("Dockerfile has a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    assert_eq!(cmd, args, "Dockerfile CMD and the Deployment's args differ");

    // The downward API gives the pod its name and namespace.
    let env: Vec<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(env.contains(&"POD_NAME".into()) && env.contains(&"POD_NAMESPACE".into()));

    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    // The Deployment's arguments, with the ConfigMap's file where it is mounted and a free port.
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let config_arg = args.iter().position(|a| a == "--config").unwrap() + 1;
    assert_eq!(args[config_arg], format!("{mount}/config.yaml"));
    let metrics_arg = args.iter().position(|a| a == "--metrics-address").unwrap() + 1;
    let start = |name: &str| {
        let mut args = args.clone();
        args[config_arg] = root().join("deploy/base/config.yaml").display().to_string();
        args[metrics_arg] = "127.0.0.1:0".into();
        let out = dir.path().join(format!("{name}.ndjson"));
        let child = Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", NAMESPACE)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        (child, out)
    };
    let (_leader, leader_out) = start("exporter-a");
    let leases = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        common::client(&sim),
        NAMESPACE,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while common::replicas::holder(&leases).await != "exporter-a" {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_standby, standby_out) = start("exporter-b");
    common::until_watching(&sim).await;

    // Events about pods, nodes, deployments, replica sets, stateful sets and jobs, whose objects
    // exist, so enrichment GETs them.
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: 500.0,
        total: Some(1500),
        repeat_ratio: 0.3,
        namespaces: 4,
        seed: 7,
    });
    g.wait().await;
    let want = g.generated();
    let exported = || {
        [&leader_out, &standby_out]
            .iter()
            .flat_map(|p| common::keys_in_file(p))
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have: BTreeSet<String> = exported().into_iter().collect();
        if want.iter().all(|k| have.contains(k)) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = common::Delivery::compare(&want, &exported());
    assert!(delivery.is_exact(), "{}", delivery.summary());

    let docs = yaml_docs("deploy/base/rbac.yaml");
    let cluster = rules_of(&docs, "ClusterRole");
    let namespaced = rules_of(&docs, "Role");
    assert_bound(&docs, "ClusterRoleBinding", "ClusterRole", service_account);
    assert_bound(&docs, "RoleBinding", "Role", service_account);

    let accesses = sim.accesses();
    let mut denied = Vec::new();
    let mut resources = BTreeSet::new();
    for a in &accesses {
        match a {
            Access::Resource {
                verb,
                group,
                resource,
                namespace,
            } => {
                let by_cluster_role = cluster.iter().any(|r| r.allows(verb, group, resource));
                let by_role = namespace.as_deref() == Some(NAMESPACE)
                    && namespaced.iter().any(|r| r.allows(verb, group, resource));
                if !(by_cluster_role || by_role) {
                    denied.push(a.clone());
                }
                resources.insert(format!("{verb} {group}/{resource}"));
            }
            Access::NonResource { path } => {
                if !is_discovery(path) {
                    denied.push(a.clone());
                }
            }
        }
    }
    eprintln!("rbac: {} distinct requests: {resources:?}", accesses.len());
    assert!(
        denied.is_empty(),
        "requests the shipped RBAC does not allow: {denied:#?}"
    );

    // The run exercised every path that needs a permission: the events list and watch, the
    // Lease from both sides, and enrichment of several kinds.
    for need in [
        "list /events",
        "watch /events",
        "get coordination.k8s.io/leases",
        "create coordination.k8s.io/leases",
        "update coordination.k8s.io/leases",
        "watch coordination.k8s.io/leases",
        "get /pods",
        "get /nodes",
        "get apps/deployments",
        "get batch/jobs",
    ] {
        assert!(
            resources.contains(need),
            "the run made no `{need}` request: {resources:?}"
        );
    }
}
