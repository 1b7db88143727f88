//! Building the Kubernetes client: an explicit kubeconfig, else in-cluster, else `$KUBECONFIG` /
//! `~/.kube/config` (the Go exporter's order).
//!
//! A TLS failure reads `invalid peer certificate: UnknownIssuer` deep in kube's error chain, which
//! names neither the server nor the certificate authority that failed to vouch for it. The client
//! carries an outermost layer that wraps every transport error in [`ApiTransportError`], naming the
//! server and, for TLS errors, where the CA came from ([`CaSource`]); the original error stays its
//! `source()`, so `telemetry::error_chain` still shows the cause.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::client::ClientBuilder;
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use tower::BoxError;
use tower::util::MapErrLayer;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading kubeconfig {}", path.display())]
    Read {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("using kubeconfig {}", path.display())]
    Use {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error(
        "no --kubeconfig given, not running in a cluster, and no usable $KUBECONFIG or ~/.kube/config"
    )]
    Infer(#[source] InferConfigError),
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// What the API server's certificate is checked against.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    /// The kubeconfig's `certificate-authority` file.
    File { path: String, kubeconfig: String },
    /// The kubeconfig's `certificate-authority-data`.
    Inline { kubeconfig: String },
    /// The service account's CA file, in a pod.
    ServiceAccount { path: PathBuf },
    /// Nothing configured: the system's root certificates.
    SystemRoots,
    /// `insecure-skip-tls-verify`: nothing.
    Insecure { kubeconfig: String },
    /// `http://`: no TLS.
    PlainHttp,
}

impl fmt::Display for CaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaSource::File { path, kubeconfig } => {
                write!(f, "certificate-authority {path} (from {kubeconfig})")
            }
            CaSource::Inline { kubeconfig } => {
                write!(f, "certificate-authority-data in {kubeconfig}")
            }
            CaSource::ServiceAccount { path } => {
                write!(f, "the service account's {}", path.display())
            }
            CaSource::SystemRoots => f.write_str("the system's root certificates"),
            CaSource::Insecure { kubeconfig } => {
                write!(f, "none: insecure-skip-tls-verify in {kubeconfig}")
            }
            CaSource::PlainHttp => f.write_str("none: plain HTTP"),
        }
    }
}

/// A request that did not get an answer from the API server: which server, and for a TLS failure
/// which CA the certificate was checked against. The transport's own error is the source.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiTransportError {
    server: Arc<str>,
    /// Set when the failure is a TLS one, where the CA is what the operator needs to check.
    ca: Option<Arc<CaSource>>,
    #[source]
    source: BoxError,
}

impl ApiTransportError {
    fn new(server: Arc<str>, ca: &Arc<CaSource>, source: BoxError) -> Self {
        let ca = is_tls(source.as_ref()).then(|| ca.clone());
        Self { server, ca, source }
    }

    fn describe(&self) -> String {
        match &self.ca {
            Some(ca) => format!("API server {} (CA: {ca})", self.server),
            None => format!("API server {}", self.server),
        }
    }
}

/// Whether a rustls error is in the chain. It comes wrapped in `io::Error`s (tokio-rustls wraps
/// it, hyper-rustls wraps that again), whose `source()` skips what they wrap: look inside them.
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// The client, its requests counted in `metrics` (`api_requests_total`).
pub async fn client(
    kubeconfig: Option<&Path>,
    metrics: &crate::telemetry::Metrics,
) -> Result<kube::Client, ClusterError> {
    let (config, origin) = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| ClusterError::Read {
                path: path.to_owned(),
                source,
            })?;
            let origin = Origin::Kubeconfig(selected_cluster(&kc), path.display().to_string());
            let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Use {
                    path: path.to_owned(),
                    source,
                })?;
            (config, origin)
        }
        None => match kube::Config::incluster() {
            Ok(c) => (c, Origin::InCluster),
            Err(_) => {
                let config = kube::Config::infer().await.map_err(ClusterError::Infer)?;
                // Read again only to tell where the CA came from (infer does not say).
                let kc = Kubeconfig::read().ok();
                let origin = Origin::Kubeconfig(
                    kc.as_ref().and_then(selected_cluster),
                    default_kubeconfig_name(),
                );
                (config, origin)
            }
        },
    };
    let ca = Arc::new(ca_source(&config, &origin));
    let server: Arc<str> = config.cluster_url.to_string().trim_end_matches('/').into();
    tracing::info!(server = %server, ca = %ca, "Kubernetes API server");
    let layer = MapErrLayer::new(move |e: BoxError| -> BoxError {
        // kube's own errors (auth, request building) say what they are; only transport errors
        // lack the server and the CA.
        if e.is::<kube::Error>() {
            e
        } else {
            Box::new(ApiTransportError::new(server.clone(), &ca, e))
        }
    });
    Ok(ClientBuilder::try_from(config)
        .map_err(ClusterError::Client)?
        .with_layer(&layer)
        .with_layer(&crate::telemetry::api_requests::CountRequests::new(
            metrics.clone(),
        ))
        .build())
}

/// Where the client's configuration came from.
enum Origin {
    InCluster,
    /// The cluster entry the current context selects (None when it cannot be found), and how to
    /// name the kubeconfig.
    Kubeconfig(Option<kube::config::Cluster>, String),
}

/// The cluster of the kubeconfig's current context, as `from_custom_kubeconfig` with default
/// options picks it.
fn selected_cluster(kc: &Kubeconfig) -> Option<kube::config::Cluster> {
    let current = kc.current_context.as_deref()?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?;
    kc.clusters
        .iter()
        .find(|c| c.name == context.cluster)?
        .cluster
        .clone()
}

/// `$KUBECONFIG (…)` when set, else `~/.kube/config`: where `Kubeconfig::read` looks.
fn default_kubeconfig_name() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(v) if !v.is_empty() => format!("$KUBECONFIG ({v})"),
        _ => "~/.kube/config".to_string(),
    }
}

fn ca_source(config: &kube::Config, origin: &Origin) -> CaSource {
    if config.cluster_url.scheme_str() == Some("http") {
        return CaSource::PlainHttp;
    }
    if let Some(path) = &config.root_cert_file {
        return CaSource::ServiceAccount { path: path.clone() };
    }
    let kubeconfig = match origin {
        Origin::InCluster => String::new(),
        Origin::Kubeconfig(_, name) => name.clone(),
    };
    if config.accept_invalid_certs {
        return CaSource::Insecure { kubeconfig };
    }
    if config.root_cert.is_none() {
        return CaSource::SystemRoots;
    }
    // kube prefers the data over the file when both are set.
    match origin {
        Origin::Kubeconfig(Some(cluster), _) if cluster.certificate_authority_data.is_some() => {
            CaSource::Inline { kubeconfig }
        }
        Origin::Kubeconfig(Some(cluster), _) if cluster.certificate_authority.is_some() => {
            CaSource::File {
                path: cluster.certificate_authority.clone().unwrap_or_default(),
                kubeconfig,
            }
        }
        _ => CaSource::Inline { kubeconfig },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(cluster: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(&format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {{server: 'https://other:6443'}}\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n{cluster}\ncontexts:\n- name: ctx\n  context: {{cluster: c, user: u}}\ncurrent-context: ctx\nusers:\n- name: u\n  user: {{}}\n"
        ))
        .unwrap()
    }

    async fn source_of(cluster: &str) -> CaSource {
        let kc = kubeconfig(cluster);
        let origin = Origin::Kubeconfig(selected_cluster(&kc), "/k/config".into());
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        ca_source(&config, &origin)
    }

    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ3c1c3Q=\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn the_ca_source_is_the_current_contexts_cluster_entry() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.crt");
        std::fs::write(&file, PEM).unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(PEM);
        assert_eq!(
            source_of(&format!("    certificate-authority: {}", file.display())).await,
            CaSource::File {
                path: file.display().to_string(),
                kubeconfig: "/k/config".into()
            }
        );
        assert_eq!(
            source_of(&format!("    certificate-authority-data: {data}")).await,
            CaSource::Inline {
                kubeconfig: "/k/config".into()
            }
        );
        assert_eq!(
            source_of("    insecure-skip-tls-verify: true").await,
            CaSource::Insecure {
                kubeconfig: "/k/config".into()
            }
        );
        assert_eq!(source_of("").await, CaSource::SystemRoots);
        assert_eq!(
            CaSource::Inline {
                kubeconfig: "/k/config".into()
            }
            .to_string(),
            "certificate-authority-data in /k/config"
        );
    }

    #[test]
    fn only_tls_failures_name_the_ca() {
        let ca = Arc::new(CaSource::SystemRoots);
        // As hyper-rustls returns it: io::Error::other(tokio-rustls's io::Error(rustls::Error)).
        let tls: BoxError = Box::new(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        )));
        let e = ApiTransportError::new("https://10.0.0.1:6443".into(), &ca, tls);
        assert_eq!(
            e.to_string(),
            "API server https://10.0.0.1:6443 (CA: the system's root certificates)"
        );
        assert!(
            crate::telemetry::error_chain(&e).ends_with("UnknownIssuer"),
            "{}",
            crate::telemetry::error_chain(&e)
        );
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = ApiTransportError::new("https://10.0.0.1:6443".into(), &ca, refused);
        assert_eq!(e.to_string(), "API server https://10.0.0.1:6443");
    }
}
