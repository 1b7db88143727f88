//! The syslog receiver against a real rsyslog (tests/common/rsyslog.rs): RFC 5424 over TCP with
//! octet counting, over TLS (RFC 5425, with a client certificate), over UDP; a collector that is
//! down and comes back; a graceful handover and a SIGKILL with real exporter processes. Every
//! delivery test compares the occurrence keys rsyslog parsed out of the structured data with the
//! generated ones, and checks that each message's MSG is the event carrying that same key.

mod common;

use common::scenarios::{self, FAST};

use std::sync::Arc;
use std::time::Duration;

use common::rsyslog::{Listener, Record, Rsyslog, TlsFiles, pki};
use common::{Delivery, Running, init};
use kube_event_exporter::config;
use kube_event_exporter::event::{Event, Occurrence};
use kube_event_exporter::sink::syslog::{SyslogConfig, SyslogSink};
use kube_event_exporter::sink::{Doc, SendError, Sink, SinkConfig};
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig};

const TAG: &str = "kee-test";

/// A receiver list item named `syslog` with these keys under `syslog:` (indented by 6).
fn receiver(keys: &str) -> String {
    format!(
        "  - name: syslog\n    timeout: 3s\n    retry: {{initialBackoff: 20ms, maxBackoff: 300ms}}\n    syslog:\n      tag: {TAG}\n{keys}"
    )
}

fn exporter_config(receiver: &str) -> config::Config {
    let text = format!(
        "clusterName: test-cluster\nomitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: syslog\nreceivers:\n{receiver}"
    );
    config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The RFC 5424 fields of `r` are those of the event in its MSG, and its SD key is that event's.
fn assert_well_formed(r: &Record) {
    let e: Event = r.event();
    assert_eq!(r.key, e.occurrence_key(), "SD key vs MSG: {r:?}");
    assert_eq!(r.app, TAG);
    assert_eq!(r.procid, std::process::id().to_string());
    assert_eq!(r.host, "test-cluster");
    assert_eq!(Some(r.msgid.as_str()), e.reason.as_deref(), "{r:?}");
    let severity = match e.type_.as_deref() {
        Some("Warning") => 4,
        Some("Normal") => 6,
        _ => 5,
    };
    assert_eq!(r.pri, (16 * 8 + severity).to_string(), "local0 PRI: {r:?}");
    let when = e.last_seen().expect("generated events have a time");
    assert_eq!(
        r.time,
        when.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "{r:?}"
    );
    let o = &e.involved_object;
    // An absent parameter reads as "" in rsyslog.
    assert_eq!(r.kind, o.kind.clone().unwrap_or_default(), "{r:?}");
    assert_eq!(r.name, o.name.clone().unwrap_or_default(), "{r:?}");
    assert_eq!(
        r.namespace,
        o.namespace.clone().unwrap_or_default(),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_rsyslog_once_with_its_key_in_structured_data_and_msg() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), TAG, Listener::Tcp);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(&format!(
        "      network: tcp\n      address: 127.0.0.1:{}\n",
        rsyslog.port
    )));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 11);
    g.wait().await;
    let want = g.generated();
    rsyslog.wait_for_keys(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let records = rsyslog.records();
    let d = Delivery::compare(&want, &rsyslog.keys());
    eprintln!("rsyslog over TCP: {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    records.iter().for_each(assert_well_formed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_down_then_up_loses_nothing_and_replays_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), TAG, Listener::Tcp);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(&format!(
        "      address: 127.0.0.1:{}\n",
        rsyslog.port
    )));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let before = scenarios::generate(&sim, FAST, 200, 21);
    before.wait().await;
    let mut want = before.generated();
    rsyslog.wait_for_keys(&want, Duration::from_secs(60)).await;

    // The collector goes away (a restart, a rollout) with the connection open; events go on.
    rsyslog.stop();
    let during = scenarios::generate(&sim, FAST, 200, 22);
    during.wait().await;
    want.extend(during.generated());
    common::eventually(
        Duration::from_secs(30),
        "the exporter to retry while rsyslog is down",
        || run.metric("kube_event_exporter_sink_retried") >= 2.0,
    )
    .await;
    assert_eq!(
        rsyslog.keys().len(),
        200,
        "nothing can arrive while rsyslog is down"
    );
    rsyslog.spawn();
    rsyslog.wait_for_keys(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &rsyslog.keys());
    eprintln!("rsyslog down then up: {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    rsyslog.records().iter().for_each(assert_well_formed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_delivers_every_occurrence_to_rsyslog() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = pki(&dir.path().join("pki"));
    let rsyslog = Rsyslog::start(
        &dir.path().join("rsyslog"),
        TAG,
        Listener::Tls(TlsFiles {
            ca: ca.clone(),
            cert,
            key,
            client_certificates: true,
        }),
    );
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(&format!(
        "      network: tls\n      address: 127.0.0.1:{}\n      tls:\n        caFile: {}\n        certFile: {}\n        keyFile: {}\n",
        rsyslog.port,
        ca.display(),
        client.display(),
        client_key.display()
    )));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 300, 31);
    g.wait().await;
    let want = g.generated();
    rsyslog.wait_for_keys(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let d = Delivery::compare(&want, &rsyslog.keys());
    eprintln!("rsyslog over TLS: {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    rsyslog.records().iter().for_each(assert_well_formed);
}

/// The syslog settings of a one-receiver config.
fn syslog_config(keys: &str) -> SyslogConfig {
    let cfg = exporter_config(&receiver(keys));
    match &cfg.receivers[0].sink {
        SinkConfig::Syslog(c) => c.clone(),
        other => panic!("{other:?}"),
    }
}

fn docs(n: usize) -> Vec<Doc> {
    (0..n)
        .map(|i| {
            let occ = Arc::new(Occurrence::new(
                serde_json::from_value::<Event>(serde_json::json!({
                    "metadata": {"uid": format!("direct-{i}"), "namespace": "ns"},
                    "involvedObject": {"kind": "Pod", "namespace": "ns", "name": format!("p{i}")},
                    "reason": "Direct", "type": "Normal", "count": 1,
                    "lastTimestamp": "2026-01-01T00:00:00Z",
                    "clusterName": "test-cluster",
                }))
                .unwrap(),
            ));
            Doc {
                key: occ.key.clone(),
                body: occ.json().clone(),
                occ,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_collector_that_fails_verification_is_retried_and_never_delivered() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, ..] = pki(&dir.path().join("pki"));
    let [other_ca, ..] = pki(&dir.path().join("other"));
    let rsyslog = Rsyslog::start(
        &dir.path().join("rsyslog"),
        TAG,
        Listener::Tls(TlsFiles {
            ca: ca.clone(),
            cert,
            key,
            client_certificates: false,
        }),
    );
    let address = format!(
        "      network: tls\n      address: 127.0.0.1:{}\n",
        rsyslog.port
    );
    for (tls, want) in [
        (
            format!("      tls:\n        caFile: {}\n", other_ca.display()),
            "UnknownIssuer",
        ),
        (
            format!(
                "      tls:\n        caFile: {}\n        serverName: syslog.example.com\n",
                ca.display()
            ),
            "certificate not valid for name \"syslog.example.com\"",
        ),
    ] {
        let cfg = syslog_config(&format!("{address}{tls}"));
        let mut sink = SyslogSink::build("syslog", &cfg).unwrap();
        match sink.send(&docs(1)).await {
            Err(SendError::Transient { reason, .. }) => {
                assert!(reason.contains(want), "{want}: {reason}")
            }
            Err(other) => panic!("{want}: not transient: {other:?}"),
            Ok(()) => panic!("{want}: delivered despite the failed verification"),
        }
    }
    // The right CA delivers, so the failures above were the verification's.
    let cfg = syslog_config(&format!(
        "{address}      tls:\n        caFile: {}\n",
        ca.display()
    ));
    let mut sink = SyslogSink::build("syslog", &cfg).unwrap();
    let batch = docs(3);
    sink.send(&batch).await.unwrap();
    let want: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    rsyslog.wait_for_keys(&want, Duration::from_secs(20)).await;
    assert_eq!(rsyslog.keys(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_delivers_to_a_collector_whose_certificate_is_unknown() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, ..] = pki(&dir.path().join("pki"));
    let rsyslog = Rsyslog::start(
        &dir.path().join("rsyslog"),
        TAG,
        Listener::Tls(TlsFiles {
            ca,
            cert,
            key,
            client_certificates: false,
        }),
    );
    // No CA of ours, and a name the certificate does not have: both unchecked.
    let cfg = syslog_config(&format!(
        "      network: tls\n      address: 127.0.0.1:{}\n      tls:\n        insecureSkipVerify: true\n        serverName: syslog.example.com\n",
        rsyslog.port
    ));
    let mut sink = SyslogSink::build("syslog", &cfg).unwrap();
    let batch = docs(2);
    sink.send(&batch).await.unwrap();
    let want: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    rsyslog.wait_for_keys(&want, Duration::from_secs(20)).await;
    assert_eq!(rsyslog.keys(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_reach_rsyslog_one_message_each() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), TAG, Listener::Udp);
    let cfg = syslog_config(&format!(
        "      network: udp\n      address: 127.0.0.1:{}\n",
        rsyslog.port
    ));
    let mut sink = SyslogSink::build("syslog", &cfg).unwrap();
    let batch = docs(20);
    sink.send(&batch).await.unwrap();
    let want: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    rsyslog.wait_for_keys(&want, Duration::from_secs(20)).await;
    let d = Delivery::compare(&want, &rsyslog.keys());
    assert!(d.is_exact(), "{}", d.summary());
    for r in rsyslog.records() {
        assert_eq!(r.key, r.event().occurrence_key());
        assert_eq!(r.pri, "134");
    }
}

/// The receiver of the handover scenarios (the replicas run as processes: their PROCID differs).
fn handover_receiver(port: u16) -> String {
    receiver(&format!("      address: 127.0.0.1:{port}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handover_to_rsyslog_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), TAG, Listener::Tcp);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::graceful_handover(
        &sim,
        &handover_receiver(rsyslog.port),
        "syslog",
        &|| rsyslog.keys(),
        41,
    )
    .await;
    eprintln!("syslog graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    for r in rsyslog.records() {
        assert_eq!(r.key, r.event().occurrence_key());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_with_rsyslog_loses_nothing_and_duplicates_at_most_a_retry_period_and_a_batch()
 {
    init();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), TAG, Listener::Tcp);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &handover_receiver(rsyslog.port),
        "syslog",
        &|| rsyslog.keys(),
        42,
    )
    .await;
    // batch.maxWait is the default 200ms.
    o.assert_no_loss_and_bounded_duplicates("syslog SIGKILL", Duration::from_millis(200));
    // A replayed message is recognisable: the same key in SD and MSG.
    for r in rsyslog.records() {
        assert_eq!(r.key, r.event().occurrence_key());
    }
}

fn check_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resmoios_readme_example_and_ours_pass_check_config_with_no_collector_running() {
    // resmoio's README, verbatim (a port nobody listens on: check-config connects to nothing).
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: \"syslog\"\nreceivers:\n  - name: \"syslog\"\n    syslog:\n      network: \"tcp\"\n      address: \"127.0.0.1:11514\"\n      tag: \"k8s.event\"\n\n",
    );
    assert_eq!(code, 0, "{err}");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/syslog.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn udp_passes_check_config_with_a_warning() {
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: s\nreceivers:\n  - name: s\n    syslog:\n      network: udp\n      address: 127.0.0.1:514\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: receivers[0].syslog.network: udp sends each message as a datagram")
            && err.contains("loses messages silently"),
        "{err}"
    );
}

#[test]
fn unreadable_tls_files_fail_check_config_naming_the_key() {
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: s\nreceivers:\n  - name: s\n    syslog:\n      network: tls\n      address: logs.example.com:6514\n      tls:\n        caFile: /nonexistent/ca.pem\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].syslog.tls.caFile: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}
