//! Building the Kubernetes client: an explicit kubeconfig, else in-cluster, else `$KUBECONFIG` /
//! `~/.kube/config` (the Go exporter's order).

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::infer().await.context(
                "no --kubeconfig given, not running in a cluster, and no usable $KUBECONFIG or ~/.kube/config",
            )?,
        },
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}
