//! HTTPS for kube-sim, the way real API servers serve it: a certificate authority generated at
//! start (written into the kubeconfig as `certificate-authority-data`), a server certificate it
//! signed for 127.0.0.1 and localhost, and a bearer token every API request must carry. So every
//! test walks the TLS and authentication path a real cluster's clients walk.
//!
//! [`TlsMode`] also serves the misconfigurations operators meet, for the tests of the exporter's
//! error messages: the CA certificate itself as the server certificate, and a certificate for
//! another host name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// How kube-sim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// HTTPS with a certificate for 127.0.0.1 and localhost, signed by the generated CA.
    #[default]
    On,
    /// Plain HTTP (`--insecure-http`).
    Off,
    /// HTTPS presenting the CA certificate itself as the server's (a common copy-paste mistake).
    CaAsServerCert,
    /// HTTPS with a certificate for `kube-sim.invalid` only: a host name mismatch for clients of
    /// 127.0.0.1.
    WrongName,
}

/// The generated authority and the server's TLS configuration.
pub struct Pki {
    /// PEM of the CA certificate: what clients must trust.
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub server: Arc<rustls::ServerConfig>,
}

impl Pki {
    pub fn generate(mode: TlsMode) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, as every cluster's CA has: another kube-sim's CA is then an unknown
        // issuer, not a same-named one with a bad signature.
        let serial: u64 = rand::random();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("kube-sim CA {serial:016x}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("signing the CA certificate")?;
        let (ca_pem, ca_der) = (ca_cert.pem(), ca_cert.der().to_vec());
        let (chain, key) = if mode == TlsMode::CaAsServerCert {
            (
                vec![ca_cert.der().clone()],
                PrivatePkcs8KeyDer::from(ca_key.serialize_der()),
            )
        } else {
            let names = match mode {
                TlsMode::WrongName => vec!["kube-sim.invalid".to_string()],
                _ => vec!["127.0.0.1".to_string(), "localhost".to_string()],
            };
            let mut params = CertificateParams::new(names)?;
            params
                .distinguished_name
                .push(DnType::CommonName, "kube-sim");
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().context("generating the server key")?;
            let issuer = Issuer::new(ca_params, ca_key);
            let cert = params
                .signed_by(&key, &issuer)
                .context("signing the server certificate")?;
            (
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()),
            )
        };
        // Our own provider, whatever the process installed as default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(CertificateDer::into_owned).collect(),
                PrivateKeyDer::Pkcs8(key),
            )
            .context("the server certificate")?;
        Ok(Self {
            ca_pem,
            ca_der,
            server: Arc::new(server),
        })
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently (a client that never
/// finishes its handshake must not hold up the others), handing axum the finished streams.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

/// A handshake not done by then is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "kube-sim: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "kube-sim: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "kube-sim: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A kubeconfig for `server`, trusting `ca_pem` (if any) and sending `token` (if any).
pub fn kubeconfig(server: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    use base64::Engine as _;
    let ca = ca_pem
        .map(|pem| {
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {server}{ca}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user:{user}\n"
    )
}
