//! The shipped manifests against what the code really does: two exporter processes started with
//! the Deployment's arguments, environment and ConfigMap, against kube-sim, which records every
//! kind of request it serves. Each request must be allowed by the RBAC objects of the install:
//! the ClusterRole and the Lease's Role of deploy/base, or the Roles of the namespace-scoped overlay
//! deploy/overlays/namespaced (which deletes the ClusterRole and watches the pod's namespace only).
//! The image's default command must be the Deployment's arguments.
//!
//! kustomize is not needed: an overlay is read for what it changes (its own resources, the objects
//! it deletes with `$patch: delete`, the config file its `configMapGenerator` replaces); CI renders
//! and validates both with kustomize (.ci/run).

mod common;

use common::scenarios::{self, FAST};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube_sim::{Access, Sim, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The namespace the base installs into (kustomization `namespace:`), where the Roles apply.
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
#[derive(Debug)]
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

const RBAC_KINDS: &[&str] = &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// One way to install: the config file the ConfigMap carries and the RBAC objects.
struct Install {
    config: PathBuf,
    rbac: Vec<Value>,
}

fn base() -> Install {
    Install {
        config: root().join("deploy/base/config.yaml"),
        rbac: yaml_docs("deploy/base/rbac.yaml"),
    }
}

/// deploy/overlays/namespaced as kustomize renders it, for what matters here: the base's RBAC
/// objects less those the overlay deletes, plus its own; its config file instead of the base's.
fn namespaced_overlay() -> Install {
    let dir = "deploy/overlays/namespaced";
    let k = yaml_docs(&format!("{dir}/kustomization.yaml")).remove(0);
    assert_eq!(
        k["namespace"], NAMESPACE,
        "{dir} installs where the base does"
    );
    let resources = strings(&k["resources"]);
    assert!(
        resources.iter().any(|r| r == "../../base"),
        "{dir} builds on the base: {resources:?}"
    );
    let mut rbac = yaml_docs("deploy/base/rbac.yaml");
    for p in k["patches"].as_array().into_iter().flatten() {
        let patch: Value = serde_saphyr::from_str(p["patch"].as_str().unwrap()).unwrap();
        if patch["$patch"] == "delete" {
            let before = rbac.len();
            rbac.retain(|d| {
                !(d["kind"] == patch["kind"] && d["metadata"]["name"] == patch["metadata"]["name"])
            });
            assert_eq!(
                rbac.len() + 1,
                before,
                "{dir} deletes a base object: {patch}"
            );
        }
    }
    for r in resources.iter().filter(|r| *r != "../../base") {
        rbac.extend(
            yaml_docs(&format!("{dir}/{r}"))
                .into_iter()
                .filter(|d| RBAC_KINDS.iter().any(|k| d["kind"] == *k)),
        );
    }
    let generator = k["configMapGenerator"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "kube-event-exporter-config"))
        .unwrap_or_else(|| panic!("{dir} generates the config"));
    assert_eq!(generator["behavior"], "replace");
    let files = strings(&generator["files"]);
    assert_eq!(files, ["config.yaml"]);
    Install {
        config: root().join(dir).join(&files[0]),
        rbac,
    }
}

/// What the service account may do: the rules of each role bound to it, cluster-wide through a
/// ClusterRoleBinding, in `NAMESPACE` through a RoleBinding (every object here is installed there).
struct Grants {
    cluster: Vec<Rule>,
    namespaced: Vec<Rule>,
}

impl Grants {
    fn of(rbac: &[Value], service_account: &str) -> Self {
        let mut grants = Grants {
            cluster: Vec::new(),
            namespaced: Vec::new(),
        };
        for binding in rbac
            .iter()
            .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        {
            let binds_us = binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == service_account);
            if !binds_us {
                continue;
            }
            let role_ref = &binding["roleRef"];
            let role = rbac
                .iter()
                .find(|d| {
                    d["kind"] == role_ref["kind"] && d["metadata"]["name"] == role_ref["name"]
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} binds a role that is not installed",
                        binding["metadata"]["name"]
                    )
                });
            let rules = role["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| Rule {
                    groups: strings(&r["apiGroups"]),
                    resources: strings(&r["resources"]),
                    verbs: strings(&r["verbs"]),
                });
            if binding["kind"] == "ClusterRoleBinding" {
                grants.cluster.extend(rules);
            } else {
                grants.namespaced.extend(rules);
            }
        }
        grants
    }

    fn allows(&self, access: &Access) -> bool {
        match access {
            Access::Resource {
                verb,
                group,
                resource,
                namespace,
            } => {
                self.cluster.iter().any(|r| r.allows(verb, group, resource))
                    || (namespace.as_deref() == Some(NAMESPACE)
                        && self
                            .namespaced
                            .iter()
                            .any(|r| r.allows(verb, group, resource)))
            }
            Access::NonResource { path } => is_discovery(path),
        }
    }
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

/// Two exporter processes started as the Deployment starts them, with `config` as its ConfigMap:
/// a leader, then a standby once it leads, both watching. Returns them with their stdout files.
struct Replicas {
    _children: Vec<Child>,
    outputs: Vec<PathBuf>,
    service_account: String,
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start(sim: &SimHandle, config: &Path) -> Self {
        let deployment = yaml_docs("deploy/base/deployment.yaml").remove(0);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let args = strings(&container["args"]);
        let service_account = pod["serviceAccountName"].as_str().unwrap().to_string();
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
            args[config_arg] = config.display().to_string();
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
        let (leader, leader_out) = start("exporter-a");
        let leases = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
            common::client(sim),
            NAMESPACE,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while common::replicas::holder(&leases).await != "exporter-a" {
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (standby, standby_out) = start("exporter-b");
        common::until_watching(sim).await;
        Self {
            _children: vec![leader, standby],
            outputs: vec![leader_out, standby_out],
            service_account,
            _dir: dir,
        }
    }

    fn exported(&self) -> Vec<String> {
        self.outputs
            .iter()
            .flat_map(|p| common::keys_in_file(p))
            .collect()
    }

    /// Waits until every key of `want` was exported (or a minute passed).
    async fn wait_exported(&self, want: &[String]) -> common::Delivery {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let have: BTreeSet<String> = self.exported().into_iter().collect();
            if want.iter().all(|k| have.contains(k)) || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        common::Delivery::compare(want, &self.exported())
    }
}

/// Every request made so far that `grants` do not allow, and the distinct `verb group/resource`
/// requests seen.
fn check_accesses(sim: &SimHandle, grants: &Grants) -> (Vec<Access>, BTreeSet<String>) {
    let accesses = sim.accesses();
    let denied = accesses
        .iter()
        .filter(|a| !grants.allows(a))
        .cloned()
        .collect();
    let resources = accesses
        .iter()
        .filter_map(|a| match a {
            Access::Resource {
                verb,
                group,
                resource,
                ..
            } => Some(format!("{verb} {group}/{resource}")),
            Access::NonResource { .. } => None,
        })
        .collect();
    (denied, resources)
}

fn assert_made(resources: &BTreeSet<String>, needed: &[&str]) {
    for need in needed {
        assert!(
            resources.contains(*need),
            "the run made no `{need}` request: {resources:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_is_allowed_by_the_shipped_rbac() {
    common::init();
    let deployment = yaml_docs("deploy/base/deployment.yaml").remove(0);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);

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

    let install = base();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let replicas = Replicas::start(&sim, &install.config).await;
    // Objects exist for the generated events, so enrichment GETs them.
    let g = scenarios::generate(&sim, FAST, 1500, 7);
    g.wait().await;
    let delivery = replicas.wait_exported(&g.generated()).await;
    assert!(delivery.is_exact(), "{}", delivery.summary());

    let grants = Grants::of(&install.rbac, &replicas.service_account);
    assert!(!grants.cluster.is_empty(), "the base binds its ClusterRole");
    let (denied, resources) = check_accesses(&sim, &grants);
    eprintln!("rbac: distinct requests: {resources:?}");
    assert!(
        denied.is_empty(),
        "requests the shipped RBAC does not allow: {denied:#?}"
    );
    // The run exercised every path that needs a permission: the events list and watch, the
    // Lease from both sides, and enrichment of several kinds.
    assert_made(
        &resources,
        &[
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
        ],
    );
}

/// deploy/overlays/namespaced: no cluster-wide permission, and the exporter needs none. It watches
/// its own namespace only (events elsewhere are not exported), enriches what is there through the
/// overlay's Role, and its config is the base's with `namespace: ${POD_NAMESPACE}` alone added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespaced_overlay_needs_no_cluster_wide_permission() {
    common::init();
    let install = namespaced_overlay();
    assert!(
        !install
            .rbac
            .iter()
            .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"),
        "no cluster-wide RBAC in the namespaced overlay"
    );
    // The base's config, plus the namespace line (and comments): nothing else to keep in step.
    let base_config = std::fs::read_to_string(base().config).unwrap();
    let config = std::fs::read_to_string(&install.config).unwrap();
    let mut base_lines = base_config.lines().peekable();
    for line in config.lines() {
        if base_lines.peek() == Some(&line) {
            base_lines.next();
        } else {
            assert!(
                line.trim().is_empty()
                    || line.starts_with('#')
                    || line == "namespace: ${POD_NAMESPACE}",
                "the overlay's config adds {line:?} to the base's"
            );
        }
    }
    assert_eq!(
        base_lines.next(),
        None,
        "the overlay's config lacks a line of the base's"
    );
    assert!(config.contains("\nnamespace: ${POD_NAMESPACE}\n"));

    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let replicas = Replicas::start(&sim, &install.config).await;
    // Events in other namespaces first: not watched, so never exported nor looked up.
    let g = scenarios::generate(&sim, FAST, 1500, 8);
    g.wait().await;
    // Then events in the exporter's namespace about objects there, so enrichment GETs them.
    let mut want = Vec::new();
    for (api_version, kind, name) in [
        ("v1", "Pod", "web-0"),
        ("apps/v1", "Deployment", "web"),
        ("batch/v1", "Job", "migrate"),
    ] {
        sim.put_object(json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "web"}}}))
            .unwrap();
        let e = sim
            .create_event(NAMESPACE, json!({"metadata": {"generateName": "e-"},
                "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name, "namespace": NAMESPACE},
                "reason": "R", "count": 1}))
            .unwrap();
        want.push(format!("{}:1", e["metadata"]["uid"].as_str().unwrap()));
    }
    // Exported in source order: once these are, any earlier event in another namespace would be.
    let delivery = replicas.wait_exported(&want).await;
    assert!(
        delivery.is_exact(),
        "only the exporter's namespace is exported: {}",
        delivery.summary()
    );

    let grants = Grants::of(&install.rbac, &replicas.service_account);
    assert!(grants.cluster.is_empty());
    let (denied, resources) = check_accesses(&sim, &grants);
    eprintln!("rbac (namespaced): distinct requests: {resources:?}");
    assert!(
        denied.is_empty(),
        "requests the namespaced overlay's RBAC does not allow: {denied:#?}"
    );
    assert_made(
        &resources,
        &[
            "list /events",
            "watch /events",
            "get coordination.k8s.io/leases",
            "create coordination.k8s.io/leases",
            "update coordination.k8s.io/leases",
            "watch coordination.k8s.io/leases",
            "get /pods",
            "get apps/deployments",
            "get batch/jobs",
        ],
    );
}
