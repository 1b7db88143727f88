//! The syslog receiver's keys, checks and connection handling (tests/syslog.rs delivers through
//! rsyslog).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::config::{self, Config};
use crate::event::{Event, Occurrence};
use crate::sink::SinkConfig;

fn load(receiver: &str) -> Result<Config, String> {
    let text = format!(
        "route:\n  routes:\n    - match:\n        - receiver: s\nreceivers:\n  - name: s\n    syslog:\n{receiver}"
    );
    config::parse(&text, &|_| None).map_err(|e| e.to_string())
}

fn syslog(receiver: &str) -> SyslogConfig {
    match load(receiver).unwrap_or_else(|e| panic!("{e}")).receivers[0]
        .sink
        .clone()
    {
        SinkConfig::Syslog(c) => c,
        other => panic!("{other:?}"),
    }
}

fn error(receiver: &str) -> String {
    load(receiver).expect_err("should not load")
}

#[test]
fn resmoios_readme_example_loads_with_its_meaning() {
    let c = syslog(
        "      network: \"tcp\"\n      address: \"127.0.0.1:11514\"\n      tag: \"k8s.event\"\n",
    );
    assert_eq!(c.transport, Transport::Tcp);
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 11514));
    assert_eq!(c.tag, "k8s.event");
    assert_eq!(c.facility, message::DEFAULT_FACILITY);
}

#[test]
fn defaults_are_tcp_our_tag_and_local0() {
    let c = syslog("      address: logs.example.com:514\n");
    assert_eq!(c.transport, Transport::Tcp);
    assert_eq!(c.family, Family::Any);
    assert_eq!(c.tag, DEFAULT_TAG);
    assert_eq!(c.facility, 16);
    assert!(
        load("      address: logs.example.com:514\n")
            .unwrap()
            .warnings()
            .is_empty()
    );
}

#[test]
fn networks_and_facilities_by_name() {
    let c = syslog(
        "      network: tcp6\n      address: \"[2001:db8::1]:6514\"\n      facility: daemon\n",
    );
    assert_eq!((c.transport, c.family), (Transport::Tcp, Family::V6));
    assert_eq!(c.host, "2001:db8::1");
    assert_eq!(c.facility, 3);
    let c = syslog("      network: udp4\n      address: h:514\n      facility: 23\n");
    assert_eq!((c.transport, c.family), (Transport::Udp, Family::V4));
    assert_eq!(c.facility, 23);
    assert_eq!(
        syslog("      network: tls\n      address: h:6514\n").transport,
        Transport::Tls
    );
}

#[test]
fn udp_is_a_warning_naming_the_receiver_and_the_risk() {
    let warnings = load("      network: udp\n      address: 127.0.0.1:514\n")
        .unwrap()
        .warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w.starts_with("receivers[0].syslog.network: "), "{w}");
    assert!(
        w.contains("loses messages silently") && w.contains("\"s\""),
        "{w}"
    );
}

#[test]
fn every_bad_key_is_an_error_at_its_path() {
    let e = error(
        "      network: unixgram\n      address: \"::1:514\"\n      tag: \"k8s event\"\n      facility: local9\n",
    );
    for want in [
        "receivers[0].syslog.network: \"unixgram\": local syslog sockets are not supported",
        "receivers[0].syslog.address: \"::1:514\": write an IPv6 address in brackets",
        "receivers[0].syslog.tag: \"k8s event\" contains ' '",
        "receivers[0].syslog.facility: \"local9\" is not a facility",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(error("      tag: x\n").contains("receivers[0].syslog.address: is required"));
    assert!(error("      address: host\n").contains("is not host:port"));
    assert!(error("      address: host:0\n").contains("is not a port number"));
    assert!(error("      address: host:http\n").contains("is not a port number"));
    assert!(
        error("      network: sctp\n      address: h:1\n").contains("is not one of tcp, tls, udp")
    );
}

#[test]
fn a_tls_block_needs_network_tls() {
    let e = error("      address: h:514\n      tls:\n        insecureSkipVerify: true\n");
    assert!(
        e.contains("receivers[0].syslog.tls: is only used with network: tls (RFC 5425), not tcp"),
        "{e}"
    );
}

#[test]
fn check_reads_the_tls_files_and_nothing_else() {
    let rc = load(
        "      network: tls\n      address: 192.0.2.1:6514\n      tls:\n        caFile: /nonexistent/ca.pem\n        certFile: /nonexistent/c.pem\n        keyFile: /nonexistent/k.pem\n",
    )
    .unwrap()
    .receivers;
    let e = crate::sink::check(&rc).unwrap_err().to_string();
    for key in ["tls.caFile", "tls.certFile", "tls.keyFile"] {
        assert!(
            e.contains(&format!(
                "receivers[0].syslog.{key}: cannot read /nonexistent/"
            )),
            "{key}: {e}"
        );
    }
    // An address nobody listens on (TEST-NET-1) passes: check connects to nothing.
    let rc = load("      network: tcp\n      address: 192.0.2.1:514\n")
        .unwrap()
        .receivers;
    crate::sink::check(&rc).unwrap();
}

fn doc(i: usize) -> Doc {
    let occ = Arc::new(Occurrence::new(
        serde_json::from_value::<Event>(serde_json::json!({
            "metadata": {"uid": format!("u{i}")}, "count": 1, "reason": "Test", "type": "Normal",
        }))
        .unwrap(),
    ));
    Doc {
        key: occ.key.clone(),
        body: occ.json().clone(),
        occ,
    }
}

/// The occurrence keys in octet-counted frames.
fn keys(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let sp = bytes.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&bytes[..sp]).unwrap().parse().unwrap();
        let msg = std::str::from_utf8(&bytes[sp + 1..sp + 1 + len]).unwrap();
        let key = msg
            .split("key=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        out.push(key.to_owned());
        bytes = &bytes[sp + 1 + len..];
    }
    out
}

#[tokio::test]
async fn a_connection_closed_by_the_collector_is_replaced_and_the_batch_delivered_on_the_new_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = syslog(&format!("      address: 127.0.0.1:{port}\n"));
    let mut sink = SyslogSink::build("s", &cfg).unwrap();

    sink.send(&[doc(0), doc(1)]).await.unwrap();
    let (mut first, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert_eq!(keys(&buf[..n]), ["u0:1", "u1:1"]);
    // The collector restarts: it closes our connection. Whether the close is seen before the
    // write (the usual case) or the write dies with it, the batch is delivered on a new
    // connection after at most a retry, as the worker would make.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = sink.send(&[doc(2)]).await {
        assert!(std::time::Instant::now() < deadline, "{e:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut second, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("a new connection")
        .unwrap();
    let n = second.read(&mut buf).await.unwrap();
    assert_eq!(keys(&buf[..n]), ["u2:1"]);
}

#[tokio::test]
async fn a_collector_that_is_down_is_a_transient_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cfg = syslog(&format!("      address: 127.0.0.1:{port}\n"));
    let mut sink = SyslogSink::build("s", &cfg).unwrap();
    match sink.send(&[doc(0)]).await {
        Err(SendError::Transient { reason, .. }) => {
            assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn udp_sends_one_datagram_per_message() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let cfg = syslog(&format!(
        "      network: udp\n      address: 127.0.0.1:{port}\n"
    ));
    let mut sink = SyslogSink::build("s", &cfg).unwrap();
    sink.send(&[doc(0), doc(1), doc(2)]).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    for i in 0..3 {
        let n = socket.recv(&mut buf).await.unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with("<134>1 "), "{msg}");
        assert!(msg.contains(&format!("key=\"u{i}:1\"")), "{msg}");
    }
}
