//! Building the Kubernetes client: an explicit kubeconfig, else in-cluster, else `$KUBECONFIG` /
//! `~/.kube/config` (the Go exporter's order).

use std::path::{Path, PathBuf};

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};

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

pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| ClusterError::Read {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Use {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::infer().await.map_err(ClusterError::Infer)?,
        },
    };
    kube::Client::try_from(config).map_err(ClusterError::Client)
}
