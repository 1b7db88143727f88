//! The command line: check-config's exit codes and messages, --version, and start-up errors.

use std::process::Command;

fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
}

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = exe()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_resmoio_config_with_a_one_line_summary() {
    let (code, out, err) = check(
        "logLevel: info\nmaxEventAgeSeconds: 10\nroute:\n  routes:\n    - match:\n        - receiver: dump\nreceivers:\n  - name: dump\n    stdout: {}\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("1 receiver"), "{out}");
}

#[test]
fn check_config_reports_every_error_with_its_path_and_exits_2() {
    let (code, _, err) = check(
        "logLevl: info\nroute:\n  routes:\n    - drop:\n        - namespace: \"*test*\"\n      match:\n        - receiver: missing\nreceivers:\n  - name: dump\n    stdout: {}\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("logLevl: unknown key (did you mean \"logLevel\"?)"),
        "{err}"
    );
    assert!(
        err.contains("route.routes[0].drop[0].namespace: invalid regex \"*test*\""),
        "{err}"
    );
    assert!(
        err.contains("route.routes[0].match[0].receiver: receiver \"missing\" is not defined"),
        "{err}"
    );
}

#[test]
fn unsupported_receiver_kinds_are_named() {
    let (code, _, err) = check("receivers:\n  - name: mem\n    inMemory: {}\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("receivers[0].inMemory: receiver kind inMemory is not supported yet"),
        "{err}"
    );
}

#[test]
fn version_names_crate_version_and_revision() {
    let out = exe().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains('('),
        "{text}"
    );
}

#[test]
fn a_config_error_never_starts_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "route: {routes: [{match: [{receiver: nope}]}]}\n").unwrap();
    let out = exe()
        .args(["run", "--metrics-address", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("receiver \"nope\" is not defined"));
}

#[test]
fn an_unwritable_receiver_directory_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let kubeconfig = dir.path().join("kubeconfig");
    // No API server is needed to fail here: receivers are checked before anything is exported.
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n").unwrap();
    // Leader election on (the default): checked before standing by, not when taking over.
    std::fs::write(&path, "route: {routes: [{match: [{receiver: f}]}]}\nreceivers:\n  - name: f\n    file: {path: /nonexistent-dir/events.log}\n").unwrap();
    let out = exe()
        .args(["run", "--metrics-address", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // As for every invalid config: exit 2 with every error, before anything starts.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "receivers[0].file.path: cannot write /nonexistent-dir/events.log: directory /nonexistent-dir does not exist (receiver"
        ),
        "{err}"
    );
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n").unwrap();
    // Logs "starting" (info, with a level and fields that a terminal would colour), then fails
    // reading the kubeconfig.
    std::fs::write(&path, "logFormat: text\nroute: {routes: [{match: [{receiver: out}]}]}\nreceivers:\n  - name: out\n    stdout: {}\n").unwrap();
    let out = exe()
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .args(["run", "--metrics-address", "127.0.0.1:0", "--kubeconfig"])
        .arg(dir.path().join("missing-kubeconfig"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("starting"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "ANSI escape codes on a pipe:\n{err:?}"
    );
}

fn check_env(yaml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = exe()
        .envs(env.iter().copied())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_what_run_refuses_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let (code, out, err) = check(&format!(
        "route: {{routes: [{{match: [{{receiver: f}}, {{receiver: w}}]}}]}}\n\
         receivers:\n\
         \x20 - name: f\n    file: {{path: /nonexistent-dir/events.log}}\n\
         \x20 - name: w\n    webhook:\n      endpoint: https://hooks.example.com/k8s\n      tls: {{caFile: {d}/garbage.pem, certFile: {d}/missing.pem, keyFile: {d}/garbage.pem, serverName: hooks.internal}}\n"
    ));
    assert_eq!(code, 2, "{out}{err}");
    for e in [
        "receivers[0].file.path: cannot write /nonexistent-dir/events.log: directory /nonexistent-dir does not exist (receiver \"f\")".to_string(),
        format!("receivers[1].webhook.tls.caFile: {d}/garbage.pem: no certificate in it"),
        format!("receivers[1].webhook.tls.certFile: cannot read {d}/missing.pem: "),
        format!("receivers[1].webhook.tls.keyFile: {d}/garbage.pem: no private key in it"),
    ] {
        assert!(err.contains(&e), "{e}\nnot in\n{err}");
    }
    // serverName is supported now: no error for it.
    assert!(!err.contains("serverName"), "{err}");
    assert!(out.is_empty(), "{out}");
}

#[test]
fn a_config_file_over_4_mib_is_refused_by_check_config_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    // Valid YAML (comments) past the limit: without a limit both commands would accept it.
    std::fs::write(&path, "# padding\n".repeat(500_000)).unwrap();
    let want = format!(
        "cannot read {}: larger than 4 MiB, the limit for a config file",
        path.display()
    );
    let out = exe()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&want), "{err}");
    let out = exe()
        .args(["run", "--metrics-address", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&want), "{err}");
}

#[test]
fn check_config_prints_warnings_but_passes() {
    let (code, out, err) = check(
        "route: {routes: [{match: [{receiver: dump}]}]}\nreceivers:\n  - name: dump\n    stdout:\n      layout: {reason: '{{ .Resaon }}', kind: '{{ .InvolvedObject.Kind }}'}\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(
        err,
        "warning: receivers[0].stdout.layout.reason: .Resaon: the event has no field Resaon, so this exports \"<no value>\" (did you mean .Reason?)\n"
    );
    let (code, _, err) = check("clusterName: x\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: receivers: none defined: nothing will be exported"),
        "{err}"
    );
}

#[test]
fn a_header_secret_ending_in_a_newline_is_refused_without_showing_it() {
    let (code, _, err) = check_env(
        "route: {routes: [{match: [{receiver: w}]}]}\nreceivers:\n  - name: w\n    webhook:\n      endpoint: https://hooks.example.com/k8s\n      headers: {Authorization: 'Bearer ${HOOK_TOKEN}'}\n",
        &[("HOOK_TOKEN", "s3cr3t-t0ken\n")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].webhook.headers.Authorization: not a valid HTTP header value: a line break at character 20 of 20"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
}

/// `demo --show-events` prints what every replica exports (whichever leads), so the printed keys
/// are exactly the generated ones; it used to print only the first replica's.
#[test]
fn demo_show_events_prints_every_replicas_exports() {
    let out = exe()
        .args(["demo", "--duration", "3s", "--rate", "100", "--show-events"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let summary = stdout.lines().last().expect("a summary line").to_string();
    let generated: usize = summary
        .strip_prefix("demo: generated ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary: {summary}"));
    let printed: std::collections::BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let uid = v.pointer("/metadata/uid")?.as_str()?.to_string();
            let count = v.get("count").and_then(|c| c.as_i64()).unwrap_or(1);
            Some(format!("{uid}:{count}"))
        })
        .collect();
    assert!(summary.contains("lost 0, duplicated 0"), "{summary}");
    assert_eq!(
        printed.len(),
        generated,
        "printed keys vs generated: {summary}"
    );
    assert!(stderr.contains("leads"), "{stderr}");
}

/// `run` with `logFormat: json` writes its config errors as JSON log lines (one per error, level
/// ERROR, the file, the YAML path and line), as every other line of its log: they used to be plain
/// text, since logging was never set up. Without `logFormat: json`, plain text as before.
#[test]
fn run_writes_config_errors_as_json_when_the_file_asks_for_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let out = exe()
            .env_remove("RUST_LOG")
            .args(["run", "--metrics-address", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), path.display().to_string(), err)
    };
    let (code, path, err) = run(
        "json.yaml",
        "logFormat: json\nlogLevl: info\nroute: {routes: [{match: [{receiver: nope}]}]}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "one line per error:\n{err}");
    for l in &lines {
        assert_eq!(l["level"], "ERROR", "{l}");
        assert_eq!(l["config"], path.as_str(), "{l}");
    }
    assert_eq!(lines[0]["yaml_path"], "logLevl");
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(
        lines[0]["message"],
        "logLevl: unknown key (did you mean \"logLevel\"?) (line 2)"
    );
    assert_eq!(lines[1]["yaml_path"], "route.routes[0].match[0].receiver");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("receiver \"nope\" is not defined"),
        "{}",
        lines[1]
    );

    // YAML that does not parse: still JSON, from the `logFormat: json` line as written.
    let (code, _, err) = run("broken.yaml", "logFormat: json\nroute: {{ .Message }}\n");
    assert_eq!(code, Some(2), "{err}");
    let line: serde_json::Value =
        serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid YAML"),
        "{line}"
    );
    assert_eq!(line["line"], 2, "{line}");
    assert!(
        line.get("yaml_path").is_none(),
        "a whole-file error has no path: {line}"
    );

    // Text otherwise, as before.
    let (code, path, err) = run("text.yaml", "logLevl: info\n");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "{path}: invalid config\nlogLevl: unknown key (did you mean \"logLevel\"?) (line 1)\n"
        )
    );
}

/// `check-config` takes `--config` as `run` does: described, from `KEE_CONFIG`, else
/// `config.yaml` (it used to be required and undescribed).
#[test]
fn check_config_defaults_to_config_yaml_like_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "route: {routes: [{match: [{receiver: out}]}]}\nreceivers:\n  - name: out\n    stdout: {}\n",
    )
    .unwrap();
    let out = exe()
        .current_dir(dir.path())
        .env_remove("KEE_CONFIG")
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("config.yaml: "), "{stdout}");

    let help = |args: &[&str]| {
        let out = exe().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let check = help(&["check-config", "--help"]);
    let run = help(&["run", "--help"]);
    // The option's help, on its line or (in the long format) on the next.
    let option = |text: &str| {
        let start = text
            .find("--config <CONFIG>")
            .unwrap_or_else(|| panic!("no --config in:\n{text}"));
        let mut lines = text[start..].lines();
        let mut out: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        for l in lines.take_while(|l| !l.trim().is_empty() && !l.trim().starts_with('-')) {
            out.extend(l.split_whitespace());
        }
        out.join(" ")
    };
    assert_eq!(option(&check), option(&run));
    assert!(
        option(&check).contains("Config file") && option(&check).contains("[default: config.yaml]"),
        "{check}"
    );
    for code in ["0  valid", "2  invalid"] {
        assert!(check.contains(code), "{code:?} in:\n{check}");
    }
}

/// `--help` names the environment the exporter reads and its exit codes.
#[test]
fn help_names_the_environment_and_the_exit_codes() {
    for args in [&["--help"][..], &["run", "--help"]] {
        let out = exe().args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for var in [
            "KEE_CONFIG",
            "KUBECONFIG",
            "POD_NAME",
            "POD_NAMESPACE",
            "TOKIO_WORKER_THREADS",
            "RUST_LOG",
        ] {
            assert!(text.contains(var), "{args:?}: {var} not in:\n{text}");
        }
        let codes: Vec<&str> = text
            .split("Exit status:")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: no exit status in:\n{text}"))
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(codes, ["0", "1", "2", "3", "130"], "{args:?}:\n{text}");
    }
}

/// resmoio's Deployment runs `-conf=/data/config.yaml -metrics-address=:2112`: the same flags
/// work here (they used to read as `-c onf=…` and an unknown `-m`).
#[test]
fn resmoios_deployment_flags_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // A config that does not load: `run` stops at once with it, before any API call.
    std::fs::write(&path, "logLevl: info\n").unwrap();
    let out = exe()
        .arg(format!("-conf={}", path.display()))
        .arg("-metrics-address=127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}: invalid config", path.display())) && err.contains("logLevl"),
        "{err}"
    );
    let out = exe()
        .args(["check-config", "-conf"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = exe().arg("-metrics-tls-config=web.yaml").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("-metrics-tls-config"), "{err}");
}
