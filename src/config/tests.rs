use std::time::Duration;

use super::*;
use crate::sink::{stdout::StdoutConfig, tls::TlsConfig};

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cr3t".into()),
        "QUEUE" => Some("64".into()),
        _ => None,
    }
}

fn ok(yaml: &str) -> Config {
    parse(yaml, &env).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errs(yaml: &str) -> ConfigErrors {
    match parse(yaml, &env) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e,
    }
}

/// The message of the only error, as `PATH: MESSAGE` without the line.
fn only(yaml: &str) -> String {
    let e = errs(yaml);
    assert_eq!(e.errors.len(), 1, "{e}");
    let e = &e.errors[0];
    format!("{}: {}", e.path, e.message)
}

const STDOUT: &str = "receivers:\n  - name: out\n    stdout: {}\n";

#[test]
fn defaults() {
    let c = ok("");
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.max_event_age, Duration::from_secs(5));
    assert_eq!(c.cluster_name, "");
    assert_eq!(c.namespace, None);
    assert_eq!(c.kube_qps, 50.0);
    assert_eq!(c.kube_burst, 100);
    assert_eq!(c.metrics_name_prefix, "kube_event_exporter_");
    assert!(!c.omit_lookup);
    assert_eq!(c.cache_size, 1024);
    assert_eq!(c.event_ttl, Duration::from_secs(3600));
    assert_eq!(c.route, Route::default());
    let le = &c.leader_election;
    assert!(le.enabled);
    assert_eq!(le.lease_name, "kube-event-exporter");
    assert_eq!(
        (le.lease_namespace.clone(), le.identity.clone()),
        (None, None)
    );
    assert_eq!(le.lease_duration, Duration::from_secs(15));
    assert_eq!(le.renew_deadline, Duration::from_secs(10));
    assert_eq!(le.retry_period, Duration::from_secs(2));
    assert_eq!(le.shutdown_linger, Duration::from_secs(15));
    assert_eq!(le.drain_timeout, Duration::from_secs(10));

    let c = ok(
        "receivers:\n  - name: a\n    stdout:\n  - name: b\n    webhook: {endpoint: 'http://x'}\n",
    );
    let d = &c.receivers[0].delivery;
    assert_eq!(
        c.receivers[0].sink,
        SinkConfig::Stdout(StdoutConfig::default())
    );
    assert_eq!(
        (d.queue, d.drop_when_full, d.timeout),
        (1024, false, Duration::from_secs(10))
    );
    assert_eq!(
        d.retry,
        RetryConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            max_attempts: None
        }
    );
    assert_eq!(
        d.batch,
        BatchConfig {
            max_events: 256,
            max_wait: Duration::from_millis(200)
        }
    );
    assert_eq!(c.receivers[1].delivery.batch.max_events, 1);
    // Zeros mean "default", as in resmoio.
    let c = ok("kubeQPS: 0\nkubeBurst: 0\ncacheSize: 0\nmaxEventAgeSeconds: 0\n");
    assert_eq!(
        (c.kube_qps, c.kube_burst, c.cache_size, c.max_event_age),
        (50.0, 100, 1024, Duration::from_secs(5))
    );
}

#[test]
fn empty_documents() {
    for text in ["", "# only a comment\n", "---\n", "~\n"] {
        assert_eq!(ok(text).receivers.len(), 0, "{text:?}");
    }
}

#[test]
fn every_key() {
    let c = ok(r#"
logLevel: debug
logFormat: json
maxEventAgeSeconds: 30
clusterName: prod
namespace: apps
leaderElection:
  enabled: false
  leaseName: exp
  leaseNamespace: ops
  identity: pod-1
  leaseDuration: 30s
  renewDeadline: 20s
  retryPeriod: 1500ms
  shutdownLinger: 5s
  drainTimeout: 1m
kubeQPS: 12.5
kubeBurst: 50
metricsNamePrefix: "my:app_"
omitLookup: true
cacheSize: 10
route:
  drop: [{namespace: "^test$"}]
  match:
    - labels: {app: "^web$", tier: ""}
      annotations: {owner: "."}
      message: "fail"
      apiVersion: "^v1$"
      kind: "^Pod$"
      reason: "Back"
      type: "Warning"
      minCount: 2
      component: kubelet
      host: "node-\\d+"
      receiver: f
  routes:
    - match: [{receiver: w}]
receivers:
  - name: f
    file: {path: /tmp/x.json, maxsize: 5, maxage: 2, maxbackups: 3, deDot: true, layout: {a: "{{ .Reason }}", n: 1}}
    queue: 10
    dropWhenFull: true
    timeout: 3s
    retry: {initialBackoff: 1s, maxBackoff: 1m, maxAttempts: 4}
    batch: {maxEvents: 100, maxWait: 1s}
  - name: w
    webhook:
      endpoint: https://h.example.com/p
      headers: {Authorization: "Bearer ${TOKEN}", X-Kind: "{{ .InvolvedObject.Kind }}"}
      tls: {insecureSkipVerify: true, serverName: h, caFile: /ca, certFile: /c, keyFile: /k}
"#);
    assert_eq!(
        (c.log_level, c.log_format),
        (LogLevel::Debug, LogFormat::Json)
    );
    assert_eq!(c.max_event_age, Duration::from_secs(30));
    assert_eq!(
        (c.cluster_name.as_str(), c.namespace.as_deref()),
        ("prod", Some("apps"))
    );
    let le = &c.leader_election;
    assert!(!le.enabled);
    assert_eq!(
        (
            le.lease_name.as_str(),
            le.lease_namespace.as_deref(),
            le.identity.as_deref()
        ),
        ("exp", Some("ops"), Some("pod-1"))
    );
    assert_eq!(
        (le.lease_duration, le.renew_deadline, le.retry_period),
        (
            Duration::from_secs(30),
            Duration::from_secs(20),
            Duration::from_millis(1500)
        )
    );
    assert_eq!(
        (le.shutdown_linger, le.drain_timeout),
        (Duration::from_secs(5), Duration::from_secs(60))
    );
    assert_eq!(
        (
            c.kube_qps,
            c.kube_burst,
            c.metrics_name_prefix.as_str(),
            c.omit_lookup,
            c.cache_size
        ),
        (12.5, 50, "my:app_", true, 10)
    );
    let rule = &c.route.match_[0];
    assert_eq!(rule.labels["app"].as_str(), "^web$");
    assert_eq!(rule.labels["tier"].as_str(), "");
    assert_eq!(rule.annotations["owner"].as_str(), ".");
    let s = |r: &Option<Regex>| r.as_ref().map(|r| r.as_str().to_owned());
    assert_eq!(s(&rule.message).as_deref(), Some("fail"));
    assert_eq!(s(&rule.api_version).as_deref(), Some("^v1$"));
    assert_eq!(s(&rule.kind).as_deref(), Some("^Pod$"));
    assert_eq!(s(&rule.reason).as_deref(), Some("Back"));
    assert_eq!(s(&rule.type_).as_deref(), Some("Warning"));
    assert_eq!(s(&rule.component).as_deref(), Some("kubelet"));
    assert_eq!(s(&rule.host).as_deref(), Some("node-\\d+"));
    assert_eq!(rule.min_count, Some(2));
    assert_eq!(rule.receiver.as_deref(), Some("f"));
    assert_eq!(s(&c.route.drop[0].namespace).as_deref(), Some("^test$"));
    assert_eq!(c.route.routes[0].match_[0].receiver.as_deref(), Some("w"));
    let f = &c.receivers[0];
    let SinkConfig::File(file) = &f.sink else {
        panic!()
    };
    assert_eq!(file.path, std::path::PathBuf::from("/tmp/x.json"));
    assert_eq!(
        (
            file.max_size_mb,
            file.max_age_days,
            file.max_backups,
            file.encoding.de_dot
        ),
        (5, 2, 3, true)
    );
    assert_eq!(
        file.encoding.layout,
        Some(serde_json::json!({"a": "{{ .Reason }}", "n": 1}))
    );
    assert_eq!(
        f.delivery,
        DeliveryConfig {
            queue: 10,
            drop_when_full: true,
            timeout: Duration::from_secs(3),
            retry: RetryConfig {
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                max_attempts: Some(4)
            },
            batch: BatchConfig {
                max_events: 100,
                max_wait: Duration::from_secs(1)
            },
            concurrency: 1,
        }
    );
    let SinkConfig::Webhook(w) = &c.receivers[1].sink else {
        panic!()
    };
    assert_eq!(w.endpoint, "https://h.example.com/p");
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.template.source()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", "Bearer s3cr3t"),
            ("x-kind", "{{ .InvolvedObject.Kind }}")
        ]
    );
    assert_eq!(
        w.tls,
        TlsConfig {
            insecure_skip_verify: true,
            server_name: Some("h".into()),
            ca_file: Some("/ca".into()),
            cert_file: Some("/c".into()),
            key_file: Some("/k".into())
        }
    );
    assert_eq!(
        c.summary(),
        "config OK: 2 receivers (file, webhook), 3 rules in 2 routes, namespace apps, leader election off"
    );
    assert!(c.warnings().is_empty());
}

#[test]
fn aliases() {
    let c = ok(
        "throttlePeriod: 7\nleaderElection:\n  leaderElectionID: old-name\nlogLevel: fatal\nlogFormat: pretty\n",
    );
    assert_eq!(c.max_event_age, Duration::from_secs(7));
    assert_eq!(c.leader_election.lease_name, "old-name");
    assert_eq!(c.log_level, LogLevel::Error);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(
        ok("logLevel: panic\nlogFormat: text").log_level,
        LogLevel::Error
    );
    assert_eq!(
        only("throttlePeriod: 1\nmaxEventAgeSeconds: 2\n"),
        "throttlePeriod: cannot set both throttlePeriod (deprecated) and maxEventAgeSeconds"
    );
    assert_eq!(
        only("leaderElection: {leaderElectionID: a, leaseName: b}"),
        "leaderElection.leaderElectionID: cannot set both leaderElectionID (resmoio's name) and leaseName"
    );
}

#[test]
fn unknown_keys_with_suggestions() {
    assert_eq!(
        only("receivers:\n  - name: x\n    webhok: {endpoint: 'http://a'}\n    stdout: {}\n"),
        "receivers[0].webhok: unknown key (did you mean \"webhook\"?)"
    );
    assert_eq!(
        only("logLevl: info"),
        "logLevl: unknown key (did you mean \"logLevel\"?)"
    );
    assert_eq!(
        only("route:\n  routes:\n    - match:\n        - name: foo*\n"),
        "route.routes[0].match[0].name: unknown key"
    );
    assert_eq!(
        only("maxeventageseconds: 3"),
        "maxeventageseconds: unknown key (did you mean \"maxEventAgeSeconds\"?)"
    );
    assert_eq!(
        only("leaderElection: {leaseDuraton: 20s}"),
        "leaderElection.leaseDuraton: unknown key (did you mean \"leaseDuration\"?)"
    );
    // Unknown keys inside unsupported kinds are not reported: the kind itself is.
    assert_eq!(
        only("receivers:\n  - name: k\n    inMemory: {reff: t}\n"),
        "receivers[0].inMemory: receiver kind inMemory is not supported yet"
    );
}

#[test]
fn invalid_regex() {
    assert_eq!(
        only(
            "route:\n  routes:\n    - drop:\n        - kind: Pod\n        - {}\n        - namespace: \"*test*\"\n"
        ),
        "route.routes[0].drop[2].namespace: invalid regex \"*test*\": repetition operator missing expression"
    );
    assert!(
        only("route: {match: [{labels: {app: '(x'}}]}")
            .starts_with("route.match[0].labels.app: invalid regex \"(x\"")
    );
}

#[test]
fn receivers_checked() {
    assert_eq!(
        only(&format!(
            "{STDOUT}route:\n  routes:\n    - match:\n        - receiver: nope\n"
        )),
        "route.routes[0].match[0].receiver: receiver \"nope\" is not defined in receivers"
    );
    // resmoio's kinds without an implementation yet (the table in sink/kind.rs decides).
    let unsupported: Vec<&str> = crate::sink::registry::unsupported().collect();
    assert!(unsupported.contains(&"inMemory"), "{unsupported:?}");
    for kind in unsupported {
        assert_eq!(
            only(&format!("receivers:\n  - name: x\n    {kind}: {{}}\n")),
            format!("receivers[0].{kind}: receiver kind {kind} is not supported yet")
        );
    }
    assert!(
        only("receivers:\n  - name: x\n    queue: 3\n")
            .starts_with("receivers[0]: no receiver kind: set one of stdout, file, webhook, "),
        "every supported kind is listed"
    );
    assert_eq!(
        only("receivers:\n  - name: x\n    stdout: {}\n    file: {path: /a}\n"),
        "receivers[0]: more than one receiver kind (stdout, file): set exactly one"
    );
    assert_eq!(
        only("receivers:\n  - stdout: {}\n"),
        "receivers[0].name: is required"
    );
    assert_eq!(
        only("receivers:\n  - name: a\n    stdout: {}\n  - name: a\n    stdout: {}\n"),
        "receivers[1].name: duplicate receiver name \"a\" (also receivers[0])"
    );
    assert_eq!(
        only("receivers:\n  - name: a\n    file: {}\n"),
        "receivers[0].file.path: is required"
    );
    assert_eq!(
        only("receivers:\n  - name: a\n    webhook: {}\n"),
        "receivers[0].webhook.endpoint: is required"
    );
    assert!(
        only("receivers:\n  - name: a\n    webhook: {endpoint: 'ftp://x'}\n")
            .ends_with("scheme must be http or https")
    );
    assert!(
        only("receivers:\n  - name: a\n    webhook: {endpoint: 'not a url'}\n")
            .starts_with("receivers[0].webhook.endpoint: invalid URL")
    );
    assert_eq!(
        only("receivers:\n  - name: a\n    webhook: {endpoint: 'http://x', tls: {certFile: /c}}\n"),
        "receivers[0].webhook.tls.certFile: certFile is set without keyFile"
    );
    assert_eq!(
        only("receivers:\n  - name: a\n    webhook: {endpoint: 'http://x', tls: {keyFile: /k}}\n"),
        "receivers[0].webhook.tls.keyFile: keyFile is set without certFile"
    );
    // A broken receiver that a rule names is reported once, not twice.
    assert_eq!(
        only("receivers:\n  - name: a\n    file: {}\nroute: {match: [{receiver: a}]}\n"),
        "receivers[0].file.path: is required"
    );
    // Defined but unused: a warning, not an error.
    assert_eq!(
        ok(&format!(
            "{STDOUT}  - name: used\n    stdout: {{}}\nroute: {{match: [{{receiver: used}}]}}\n"
        ))
        .warnings(),
        vec!["receiver \"out\" is defined but no rule sends to it".to_owned()]
    );
}

#[test]
fn durations_and_types() {
    assert_eq!(
        only("leaderElection: {drainTimeout: 90}"),
        "leaderElection.drainTimeout: invalid duration 90: add a unit, e.g. 90s"
    );
    assert_eq!(
        only("leaderElection: {drainTimeout: '90'}"),
        "leaderElection.drainTimeout: invalid duration \"90\": add a unit, e.g. 15s"
    );
    assert!(
        only("leaderElection: {drainTimeout: 3d}")
            .starts_with("leaderElection.drainTimeout: invalid duration \"3d\": unknown unit")
    );
    assert_eq!(
        only("maxEventAgeSeconds: abc"),
        "maxEventAgeSeconds: expected an integer, found \"abc\""
    );
    assert_eq!(
        only("maxEventAgeSeconds: 1.5"),
        "maxEventAgeSeconds: expected an integer, found 1.5"
    );
    assert_eq!(
        only("omitLookup: yes please"),
        "omitLookup: expected true or false, found \"yes please\""
    );
    assert_eq!(
        only("receivers: {a: 1}"),
        "receivers: expected a list, found a map"
    );
    assert_eq!(only("route: [1]"), "route: expected a map, found a list");
    assert_eq!(
        only("clusterName: true"),
        "clusterName: expected a string, found true"
    );
    assert_eq!(
        only("cacheSize: -1"),
        "cacheSize: must be between 0 and 1048576, found -1"
    );
    assert_eq!(
        only("logLevel: loud"),
        "logLevel: unknown log level \"loud\" (use trace, debug, info, warn, error or disabled)"
    );
    assert_eq!(
        only("logFormat: xml"),
        "logFormat: unknown log format \"xml\" (use text or json)"
    );
    assert_eq!(
        only("metricsNamePrefix: 9bad"),
        "metricsNamePrefix: \"9bad\" must match ^[a-zA-Z][a-zA-Z0-9_:]*_$ (e.g. kube_event_exporter_)"
    );
    assert_eq!(
        only(&format!("{STDOUT}    queue: 0\n")),
        "receivers[0].queue: must be between 1 and 1048576, found 0"
    );
    assert_eq!(
        only(&format!("{STDOUT}    retry: {{maxAttempts: 0}}\n")),
        "receivers[0].retry.maxAttempts: must be between 1 and 4294967295, found 0"
    );
    assert_eq!(
        only(&format!("{STDOUT}    batch: {{maxEvents: 0}}\n")),
        "receivers[0].batch.maxEvents: must be between 1 and 65536, found 0"
    );
    assert_eq!(
        only(&format!(
            "{STDOUT}    retry: {{initialBackoff: 1m, maxBackoff: 1s}}\n"
        )),
        "receivers[0].retry.initialBackoff: must not exceed maxBackoff (1s)"
    );
    // `${VAR}` in a number is expanded, then read.
    assert_eq!(
        ok(&format!("{STDOUT}    queue: ${{QUEUE}}\n")).receivers[0]
            .delivery
            .queue,
        64
    );
}

#[test]
fn leader_election_timing() {
    assert_eq!(
        only("leaderElection: {leaseDuration: 10s, renewDeadline: 10s}"),
        "leaderElection.leaseDuration: must be greater than renewDeadline (10s >= 10s)"
    );
    assert_eq!(
        only("leaderElection: {renewDeadline: 2s, retryPeriod: 2s}"),
        "leaderElection.renewDeadline: must be greater than 1.2 × retryPeriod (2s <= 1.2 × 2s)"
    );
    assert_eq!(
        ok("leaderElection: {leaseDuration: 60s}")
            .leader_election
            .shutdown_linger,
        Duration::from_secs(60)
    );
}

#[test]
fn templates_checked_at_load() {
    assert_eq!(
        only(
            "receivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      layout:\n        msg: '{{ nosuch .Reason }}'\n"
        ),
        "receivers[0].webhook.layout.msg: line 1, column 4: function \"nosuch\" not defined"
    );
    assert_eq!(
        only("receivers:\n  - name: w\n    stdout:\n      layout:\n        tags: [ok, '{{ .X ']\n"),
        "receivers[0].stdout.layout.tags[1]: line 1, column 1: unclosed action"
    );
    assert_eq!(
        only(
            "receivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      headers: {X-A: '{{ if }}'}\n"
        ),
        "receivers[0].webhook.headers.X-A: line 1, column 1: missing value for if"
    );
    let e = errs(
        "receivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      layout:\n        a: 1\n        msg: '{{ nosuch }}'\n",
    );
    assert_eq!(e.errors[0].line, Some(7));
}

#[test]
fn env_substitution() {
    let c = ok(
        "clusterName: ${TOKEN}-x\nreceivers:\n  - name: w\n    stdout:\n      layout:\n        l: '{{ range $k, $v := .Labels }}{{ $k }}{{ end }} $5 $$${TOKEN}'\n        s: 'Bearer ${TOKEN}'\n",
    );
    assert_eq!(c.cluster_name, "s3cr3t-x");
    let SinkConfig::Stdout(s) = &c.receivers[0].sink else {
        panic!()
    };
    let layout = s.encoding.layout.as_ref().unwrap();
    assert_eq!(
        layout["l"],
        "{{ range $k, $v := .Labels }}{{ $k }}{{ end }} $5 $${TOKEN}"
    );
    assert_eq!(layout["s"], "Bearer s3cr3t");
    assert_eq!(
        only("clusterName: '${MISSING}'"),
        "clusterName: environment variable MISSING is not set"
    );
    // Keys are never substituted.
    assert_eq!(only("${TOKEN}: 1"), "${TOKEN}: unknown key");
}

#[test]
fn collects_every_error() {
    let e = errs(
        "logLevl: x\nmaxEventAgeSeconds: abc\nroute:\n  match:\n    - kind: '*'\n      receiver: ghost\nreceivers:\n  - name: a\n    inMemory: {}\n  - name: b\n    webhok: {}\n    stdout: {}\n",
    );
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "logLevl",
            "maxEventAgeSeconds",
            "route.match[0].kind",
            "route.match[0].receiver",
            "receivers[0].inMemory",
            "receivers[1].webhok"
        ]
    );
    assert_eq!(e.errors[0].line, Some(1));
    assert_eq!(e.errors[5].line, Some(11));
    let text = e.to_string();
    assert_eq!(text.lines().count(), 6);
    assert!(
        text.starts_with("logLevl: unknown key (did you mean \"logLevel\"?) (line 1)\n"),
        "{text}"
    );
}

/// An unknown key with a block map under it is reported on its own line, not on the line of the
/// map's first key (issue 23: `stdot:` on line 35 was reported as line 36).
#[test]
fn an_unknown_key_over_a_nested_map_is_reported_on_its_own_line() {
    let e = errs(
        "logLevel: info\nreceivers:\n  - name: out\n    stdout: {}\n    stdot:\n      deDot: true\n      layout:\n        msg: x\nleaderElction:\n  - a\n",
    );
    let lines: Vec<(&str, Option<u64>)> =
        e.errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        lines,
        [("receivers[0].stdot", Some(5)), ("leaderElction", Some(9)),],
        "{e}"
    );
}

#[test]
fn yaml_syntax_errors() {
    let e =
        errs("receivers:\n  - name: a\n    stdout:\n      layout:\n        msg: {{ .Message }}\n");
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].line, Some(5));
    assert!(
        e.errors[0].message.starts_with("invalid YAML: line 5"),
        "{}",
        e.errors[0].message
    );
    assert!(
        e.errors[0]
            .message
            .ends_with("(hint: wrap values with special characters in quotes)")
    );
    let e = errs("a: [1,\n");
    assert!(!e.errors[0].message.contains("hint"));
    assert_eq!(only("- 1\n- 2\n"), ": expected a map, found a list");
}

#[test]
fn resmoio_style_config_loads() {
    // The shape of resmoio's README/config.example.yaml, with its invalid regexes fixed.
    let c = ok(r#"
logLevel: error
logFormat: json
maxEventAgeSeconds: 60
kubeQPS: 100
kubeBurst: 500
metricsNamePrefix: event_exporter_
route:
  routes:
    - match:
        - receiver: "dump"
    - drop:
        - namespace: "test"
        - type: "Normal"
      match:
        - receiver: "critical-events-queue"
    - match:
        - kind: "Pod|Deployment|ReplicaSet"
          labels:
            version: "dev"
          receiver: "slack-warnings"
receivers:
  - name: "dump"
    file:
      path: "/tmp/dump"
      layout:
        message: "{{ .Message }}"
        reason: "{{ .Reason }}"
        type: "{{ .Type }}"
        count: "{{ .Count }}"
        kind: "{{ .InvolvedObject.Kind }}"
        name: "{{ .InvolvedObject.Name }}"
        namespace: "{{ .Namespace }}"
        component: "{{ .Source.Component }}"
        host: "{{ .Source.Host }}"
  - name: "critical-events-queue"
    webhook:
      endpoint: "http://my-webhook-host/cluster/events"
      headers:
        X-API-KEY: "{{ .InvolvedObject.Labels.apiKey }}"
        User-Agent: kube-event-exporter 1.0
      layout:
        text: "{{ .Message }} {{ .GetTimestampMs }}"
  - name: "slack-warnings"
    webhook:
      endpoint: "https://hooks.slack.example/services/x"
"#);
    assert_eq!(c.receivers.len(), 3);
    assert_eq!(
        c.summary(),
        "config OK: 3 receivers (file, webhook, webhook), 5 rules in 4 routes, namespace all, leader election on"
    );
}

#[test]
fn examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Examples may reference secrets through ${VAR}; any value will do here. (Lower-case
            // names are template variables, `$k`: not in the environment.)
            let secrets = |name: &str| {
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    .then(|| "example".to_owned())
            };
            let c = parse(&text, &secrets).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(
                c.warnings().is_empty(),
                "{}: {:?}",
                path.display(),
                c.warnings()
            );
            n += 1;
        }
    }
    assert!(n >= 4);
}

#[test]
fn load_reads_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "clusterName: f\n").unwrap();
    assert_eq!(load(&p).unwrap().cluster_name, "f");
    let e = load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(e.to_string().starts_with("cannot read "));
}

#[test]
fn load_refuses_a_file_over_the_size_limit_while_reading() {
    let limit = load::MAX_CONFIG_BYTES;
    assert_eq!(limit, 4 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.yaml");
    // A valid YAML document (comments) one byte over the limit.
    let mut text = "# padding\n".repeat((limit / 10) as usize + 1);
    text.truncate(limit as usize);
    text.push_str("\nclusterName: x\n");
    std::fs::write(&p, &text).unwrap();
    let e = load(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "cannot read {}: larger than 4 MiB, the limit for a config file",
            p.display()
        )
    );
    // An endless source (what /dev/zero is) stops at the limit instead of filling the memory.
    let e = load::read_limited(std::io::Read::take(std::io::repeat(b'#'), u64::MAX), limit);
    assert_eq!(
        e.unwrap_err(),
        "larger than 4 MiB, the limit for a config file"
    );
    // Up to the limit is fine.
    assert_eq!(
        load::read_limited(&b"clusterName: x\n"[..], 15).unwrap(),
        "clusterName: x\n"
    );
    assert!(
        load::read_limited(&b"a: \xff\n"[..], 100)
            .unwrap_err()
            .starts_with("not UTF-8 text")
    );
}

#[test]
fn every_bad_template_is_reported_each_at_its_leaf() {
    let e = errs(
        "receivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      headers:\n        X-A: '{{ if }}'\n        X-B: '{{ .Reason'\n      layout:\n        a: '{{ nosuch }}'\n        ok: '{{ .Reason }}'\n        nested:\n          b: '{{ .X '\n        tags: [ok, '{{ end }}']\n",
    );
    let paths: Vec<(&str, Option<u64>)> =
        e.errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("receivers[0].webhook.headers.X-A", Some(6)),
            ("receivers[0].webhook.headers.X-B", Some(7)),
            ("receivers[0].webhook.layout.a", Some(9)),
            ("receivers[0].webhook.layout.nested.b", Some(12)),
            ("receivers[0].webhook.layout.tags[1]", Some(13)),
        ],
        "{e}"
    );
}

#[test]
fn header_values_that_http_refuses_are_load_errors_that_do_not_show_the_value() {
    let yaml = "receivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      headers:\n        Authorization: 'Bearer ${TOKEN}'\n";
    // A secret mounted from a file, with its trailing newline.
    let env = |name: &str| (name == "TOKEN").then(|| "s3cr3t\n".to_owned());
    let e = parse(yaml, &env).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "receivers[0].webhook.headers.Authorization: not a valid HTTP header value: a line break at character 14 of 14 (a secret"
        ),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t"), "the error shows the secret: {msg}");
    let env = |name: &str| (name == "TOKEN").then(|| "a\u{1}b".to_owned());
    assert!(
        parse(yaml, &env)
            .unwrap_err()
            .to_string()
            .contains("the control character U+0001 at character 9 of 10"),
    );
    // Tabs, spaces and non-ASCII text are valid.
    let env = |name: &str| (name == "TOKEN").then(|| "a\tb c é".to_owned());
    assert!(parse(yaml, &env).is_ok());
}

#[test]
fn a_config_that_exports_nothing_is_warned_about() {
    assert_eq!(
        ok("").warnings(),
        vec!["receivers: none defined: nothing will be exported".to_owned()]
    );
    assert_eq!(
        ok(&format!("{STDOUT}route: {{drop: [{{namespace: x}}]}}\n")).warnings(),
        vec!["route: no rule sends to a receiver: nothing will be exported".to_owned()]
    );
}

/// Warnings of a stdout receiver with this layout, routed (so only template warnings remain).
fn layout_warnings(layout: &str) -> Vec<String> {
    ok(&format!(
        "route: {{match: [{{receiver: out}}]}}\nreceivers:\n  - name: out\n    stdout:\n      layout:\n{layout}"
    ))
    .warnings()
}

#[test]
fn templates_reading_fields_the_event_lacks_are_warned_about() {
    assert_eq!(
        layout_warnings("        reason: '{{ .Resaon }}'\n"),
        vec![
            "receivers[0].stdout.layout.reason: .Resaon: the event has no field Resaon, so this exports \"<no value>\" (did you mean .Reason?)"
                .to_owned()
        ]
    );
    assert_eq!(
        layout_warnings(
            "        kind: '{{ .InvolvedObject.Knd }}'\n        all: ['{{ if .Seris }}x{{ end }}', '{{ default \"-\" $.Mesage }}']\n"
        ),
        vec![
            "receivers[0].stdout.layout.all[0]: .Seris: the event has no field Seris, so this exports \"<no value>\" (did you mean .Series?)".to_owned(),
            "receivers[0].stdout.layout.all[1]: .Mesage: the event has no field Mesage, so this exports \"<no value>\" (did you mean .Message?)".to_owned(),
            "receivers[0].stdout.layout.kind: .InvolvedObject.Knd: .InvolvedObject has no field Knd, so this exports \"<no value>\" (did you mean .Kind?)".to_owned(),
        ]
    );
    // In a range or with, `.` is the element: only `$.` chains are the event's.
    assert_eq!(
        layout_warnings(
            "        o: '{{ range .InvolvedObject.OwnerReferences }}{{ .Kind }} {{ $.Resaon }}{{ end }}'\n"
        ),
        vec![
            "receivers[0].stdout.layout.o: .Resaon: the event has no field Resaon, so this exports \"<no value>\" (did you mean .Reason?)".to_owned()
        ]
    );
    // A template that fails on an event fails on every event.
    assert_eq!(
        layout_warnings("        r: '{{ .Reason.Text }}'\n"),
        vec![
            "receivers[0].stdout.layout.r: fails on a sample event, so it would fail on real ones: line 1, column 4: can't evaluate field Text in type string".to_owned()
        ]
    );
    // Webhook headers too.
    let c = ok(
        "route: {match: [{receiver: w}]}\nreceivers:\n  - name: w\n    webhook:\n      endpoint: http://x\n      headers: {X-Reason: '{{ .Reasn }}'}\n",
    );
    assert_eq!(
        c.warnings(),
        vec![
            "receivers[0].webhook.headers.X-Reason: .Reasn: the event has no field Reasn, so this exports \"<no value>\" (did you mean .Reason?)".to_owned()
        ]
    );
}

#[test]
fn every_field_of_the_exported_event_passes_the_template_check() {
    let fields = [
        ".Reason",
        ".Message",
        ".Type",
        ".Count",
        ".Action",
        ".EventTime",
        ".FirstTimestamp",
        ".LastTimestamp",
        ".Series.Count",
        ".Series.LastObservedTime",
        ".Related.Kind",
        ".Related.Name",
        ".ReportingController",
        ".ReportingComponent",
        ".ReportingInstance",
        ".Source.Component",
        ".Source.Host",
        ".ClusterName",
        ".Name",
        ".Namespace",
        ".UID",
        ".ResourceVersion",
        ".CreationTimestamp",
        ".Labels.anything",
        ".Annotations.x",
        ".ObjectMeta.Name",
        ".Metadata.Name",
        ".InvolvedObject.Kind",
        ".InvolvedObject.Name",
        ".InvolvedObject.Namespace",
        ".InvolvedObject.UID",
        ".InvolvedObject.APIVersion",
        ".InvolvedObject.ResourceVersion",
        ".InvolvedObject.FieldPath",
        ".InvolvedObject.Labels.app",
        ".InvolvedObject.Labels.missing",
        ".InvolvedObject.Annotations.x",
        ".InvolvedObject.OwnerReferences",
        ".InvolvedObject.Deleted",
        ".GetTimestampMs",
        ".GetTimestampISO8601",
    ];
    let layout: String = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("        f{i}: '{{{{ {f} }}}}'\n"))
        .collect();
    assert_eq!(layout_warnings(&layout), Vec::<String>::new());
    // Literals, variables, numbers and comments are not field chains.
    assert_eq!(
        layout_warnings(
            "        a: '{{ printf \"%s .Nope\" .Reason }} {{ $x := .InvolvedObject }}{{ $x.Nope }} {{ add 1.5 2 }} {{/* .Nope */}}'\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn sizes_allocated_at_start_are_bounded() {
    // Each passed check-config once and then aborted the exporter at start (a channel, a batch
    // buffer or an LRU of that many entries).
    let big = i64::MAX;
    assert_eq!(
        only(&format!("cacheSize: {big}\n")),
        format!("cacheSize: must be between 0 and 1048576, found {big}")
    );
    assert_eq!(
        only(&format!("{STDOUT}    queue: {big}\n")),
        format!("receivers[0].queue: must be between 1 and 1048576, found {big}")
    );
    assert_eq!(
        only(&format!("{STDOUT}    batch: {{maxEvents: {big}}}\n")),
        format!("receivers[0].batch.maxEvents: must be between 1 and 65536, found {big}")
    );
    let c = ok(&format!(
        "cacheSize: 1048576\n{STDOUT}    queue: 1048576\n    batch: {{maxEvents: 65536}}\n"
    ));
    assert_eq!(c.cache_size, 1 << 20);
}

#[test]
fn tls_server_name_is_checked_at_load() {
    assert_eq!(
        only(
            "receivers:\n  - name: w\n    webhook:\n      endpoint: http://example.test/hook\n      tls: {serverName: webhook.test}\n"
        ),
        "receivers[0].webhook.tls.serverName: needs an https:// endpoint, not http://"
    );
    assert_eq!(
        only(
            "receivers:\n  - name: w\n    webhook:\n      endpoint: https://example.test/hook\n      tls: {serverName: 10.0.0.1}\n"
        ),
        "receivers[0].webhook.tls.serverName: \"10.0.0.1\" is an IP address: write it in endpoint instead (serverName is a DNS name)"
    );
}

#[test]
fn event_ttl_is_a_positive_duration() {
    assert_eq!(
        ok("eventTTL: 3h\n").event_ttl,
        Duration::from_secs(3 * 3600)
    );
    assert!(
        only("eventTTL: 0\n").starts_with("eventTTL: must be more than 0"),
        "{}",
        only("eventTTL: 0\n")
    );
    assert_eq!(
        only("eventTTL: 60\n"),
        "eventTTL: invalid duration 60: add a unit, e.g. 60s"
    );
}

#[test]
fn the_log_format_is_read_leniently_from_a_config_that_does_not_load() {
    use super::load::log_format_in;
    // Among errors: the file asks for JSON.
    assert_eq!(
        log_format_in("logFormat: json\nlogLevl: info\nreceivers: 3\n"),
        Some(LogFormat::Json)
    );
    assert_eq!(
        log_format_in("{logFormat: json, receivers: 3}"),
        Some(LogFormat::Json),
        "flow style"
    );
    // Not YAML at all: the line as written, quoted or with a comment.
    assert_eq!(
        log_format_in("logFormat: \"json\"  # for Loki\nroute: {{ .Message }}\n"),
        Some(LogFormat::Json)
    );
    assert_eq!(log_format_in("logFormat: text\nlogLevl: x\n"), None);
    assert_eq!(
        log_format_in("receivers:\n  logFormat: json\n"),
        None,
        "not top level"
    );
    assert_eq!(log_format_in("route: {{ x }}\n  logFormat: json\n"), None);
    assert_eq!(log_format_in("- logFormat\n"), None);
}

#[test]
fn concurrency_defaults_per_kind_and_serial_kinds_refuse_more_than_one() {
    let c = ok(
        "receivers:\n  - name: w\n    webhook: {endpoint: 'http://x.test/'}\n  - name: f\n    file: {path: /tmp/x}\n  - name: w4\n    concurrency: 4\n    webhook: {endpoint: 'http://x.test/'}\n  - name: f1\n    concurrency: 1\n    file: {path: /tmp/x}\n",
    );
    let lanes: Vec<usize> = c.receivers.iter().map(|r| r.delivery.concurrency).collect();
    assert_eq!(lanes, [16, 1, 4, 1]);
    assert_eq!(
        only("receivers:\n  - name: f\n    concurrency: 2\n    file: {path: /tmp/x}\n"),
        "receivers[0].concurrency: the file receiver sends one request at a time: it appends to one file, in order"
    );
    for bad in ["0", "65", "two"] {
        let e = only(&format!(
            "receivers:\n  - name: w\n    concurrency: {bad}\n    webhook: {{endpoint: 'http://x.test/'}}\n"
        ));
        assert!(e.starts_with("receivers[0].concurrency: "), "{e}");
    }
}

#[test]
fn an_unbraced_variable_that_is_set_is_sent_as_written_with_a_warning() {
    let c = ok(
        "receivers:\n  - name: hook\n    webhook:\n      endpoint: http://x.test/\n      headers:\n        X-API-KEY: $TOKEN\n        X-Template: '{{ $k := 1 }}'\n",
    );
    let SinkConfig::Webhook(w) = &c.receivers[0].sink else {
        unreachable!()
    };
    assert_eq!(w.headers[0].template.source(), "$TOKEN", "sent as written");
    let warnings = c.warnings();
    let w: Vec<&String> = warnings.iter().filter(|w| w.contains("$TOKEN")).collect();
    assert_eq!(w.len(), 1, "{warnings:?}");
    assert!(
        w[0].starts_with(
            "receivers[0].webhook.headers.X-API-KEY: $TOKEN is sent as written (line 6)"
        ) && w[0].contains("write ${TOKEN}"),
        "{}",
        w[0]
    );
    assert!(
        !warnings.iter().any(|w| w.contains("$k")),
        "a template variable whose name is not set is no concern: {warnings:?}"
    );
}

#[test]
fn log_level_disabled_is_resmoios_off() {
    let c = ok("logLevel: disabled\n");
    assert_eq!(c.log_level, LogLevel::Off);
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.starts_with("logLevel: disabled turns every log line off")),
        "{:?}",
        c.warnings()
    );
}
