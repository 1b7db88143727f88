//! Every way of not reaching the API server gets its own words in the log, not the
//! `ServiceError: client error (Connect)` they all used to read as. kube-sim serves HTTPS with its
//! own CA and a bearer token, and can serve the usual misconfigurations. (Each test fails with the
//! old logging, which printed only the outermost error.)

mod common;

use std::time::Duration;

use kube_sim::tls::kubeconfig;
use kube_sim::{Sim, SimConfig, TlsMode};

async fn sim(tls: TlsMode) -> kube_sim::SimHandle {
    Sim::start(SimConfig {
        tls,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Runs the exporter with this kubeconfig until it logs its first failed Lease read; returns the
/// error it logged.
async fn first_error(kubeconfig_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    first_error_in(dir.path(), kubeconfig_text).await
}

/// As [`first_error`], with the kubeconfig written to `dir/kubeconfig`.
async fn first_error_in(dir: &std::path::Path, kubeconfig_text: &str) -> String {
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, kubeconfig_text).unwrap();
    let mut a = common::replicas::Replica::spawn(
        "a",
        dir,
        "logFormat: json\nleaderElection:\n  identity: a\n  leaseNamespace: default\nroute:\n  routes:\n    - match:\n        - receiver: out\nreceivers:\n  - name: out\n    stdout: {}\n",
        &kc,
    );
    let log = a.log.clone();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    common::eventually(Duration::from_secs(30), "a failed lease read", || {
        read().contains("lease read/acquire failed")
    })
    .await;
    let _ = a.child.kill().await;
    common::logs::lines(&read())
        .into_iter()
        .find(|l| common::logs::message(l).starts_with("lease read/acquire failed"))
        .and_then(|l| Some(common::logs::field(&l, "error")?.as_str()?.to_string()))
        .unwrap_or_default()
}

fn assert_says(error: &str, words: &[&str]) {
    let lower = error.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "expected one of {words:?} in: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_authority_is_named() {
    common::init();
    let (a, other) = (sim(TlsMode::On).await, sim(TlsMode::On).await);
    let dir = tempfile::tempdir().unwrap();
    let e = first_error_in(dir.path(), &kubeconfig(&a.url(), other.ca_pem(), a.token())).await;
    assert_says(&e, &["UnknownIssuer"]);
    // Which server, and which CA did not vouch for it.
    let kc = dir.path().join("kubeconfig");
    let named = format!(
        "API server {} (CA: certificate-authority-data in {})",
        a.url().trim_end_matches('/'),
        kc.display()
    );
    assert!(e.contains(&named), "expected {named:?} in: {e}");

    // A CA file: its path, and the kubeconfig that names it.
    let ca = dir.path().join("other-ca.crt");
    std::fs::write(&ca, other.ca_pem().unwrap()).unwrap();
    let text = kubeconfig(&a.url(), None, a.token()).replace(
        "    server: ",
        &format!("    certificate-authority: {}\n    server: ", ca.display()),
    );
    let e = first_error_in(dir.path(), &text).await;
    assert_says(&e, &["UnknownIssuer"]);
    let named = format!(
        "(CA: certificate-authority {} (from {}))",
        ca.display(),
        kc.display()
    );
    assert!(e.contains(&named), "expected {named:?} in: {e}");
}

/// A failure that is not about TLS names the server only: the CA has nothing to do with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_server_but_not_the_ca() {
    common::init();
    let s = sim(TlsMode::On).await;
    // An HTTPS URL with a CA, on a port with nothing listening: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let e = first_error(&kubeconfig(&url, s.ca_pem(), s.token())).await;
    assert_says(&e, &["Connection refused"]);
    assert!(e.contains(&format!("API server {url}")), "{e}");
    assert!(!e.contains("CA:"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_server_certificate_is_named() {
    common::init();
    let s = sim(TlsMode::CaAsServerCert).await;
    let e = first_error(&kubeconfig(&s.url(), s.ca_pem(), s.token())).await;
    assert_says(&e, &["CaUsedAsEndEntity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_mismatch_is_named() {
    common::init();
    let s = sim(TlsMode::WrongName).await;
    let e = first_error(&kubeconfig(&s.url(), s.ca_pem(), s.token())).await;
    assert_says(&e, &["not valid for name", "NotValidForName"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_http_port_is_named() {
    common::init();
    let (plain, other) = (sim(TlsMode::Off).await, sim(TlsMode::On).await);
    let https = plain.url().replacen("http://", "https://", 1);
    let e = first_error(&kubeconfig(&https, other.ca_pem(), None)).await;
    assert_says(&e, &["InvalidContentType", "corrupt message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_named() {
    common::init();
    // A port with nothing listening: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = first_error(&kubeconfig(&format!("http://127.0.0.1:{port}"), None, None)).await;
    assert_says(&e, &["Connection refused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_host_is_named() {
    common::init();
    let e = first_error(&kubeconfig("https://kube-sim.invalid:6443", None, None)).await;
    assert_says(
        &e,
        &["dns error", "failed to lookup", "name or service not known"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_named() {
    common::init();
    let s = sim(TlsMode::On).await;
    let e = first_error(&kubeconfig(&s.url(), s.ca_pem(), Some("not-the-token"))).await;
    assert_says(&e, &["Unauthorized"]);
}

/// The happy path of the same: the kubeconfig kube-sim writes (its CA, its token) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubeconfig_kube_sim_writes_is_trusted_and_authorised() {
    common::init();
    let s = sim(TlsMode::On).await;
    assert!(s.url().starts_with("https://"));
    let client = common::client(&s);
    let v = client
        .apiserver_version()
        .await
        .expect("version over HTTPS");
    assert!(!v.git_version.is_empty());
    // Without the token, the API refuses like kube-apiserver.
    let mut anonymous = s.kube_config();
    anonymous.auth_info.token = None;
    let err = common::client_for(anonymous)
        .apiserver_version()
        .await
        .expect_err("no token, no API");
    assert_says(&err.to_string(), &["401", "Unauthorized"]);
}
