//! Connecting to the cluster: EKS from AWS credentials, or a kubeconfig, or
//! the in-cluster service account.

use crate::config::Config;
use crate::error::{Error, Result};

/// Connects as `config` says: EKS (`EKS_CLUSTER_NAME`), else
/// `KUBE_CONFIG_PATH`, else `KUBECONFIG` / `~/.kube/config` / in-cluster.
pub(super) async fn connect(config: &Config) -> Result<kube::Client> {
    // rustls needs one process-wide crypto provider when several are compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[cfg(feature = "eks")]
    if let Some(cluster) = &config.eks_cluster_name {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        return super::eks::client(&sdk, cluster, &config.kube_namespace).await;
    }
    let kube_config = match &config.kube_config_path {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Config {
                var: "KUBE_CONFIG_PATH",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::Config {
                    var: "KUBE_CONFIG_PATH",
                    message: format!("{}: {e}", path.display()),
                })?
        }
        None => kube::Config::infer().await.map_err(|e| Error::Config {
            var: "KUBE_CONFIG_PATH",
            message: format!(
                "no Kubernetes configuration found (set KUBE_CONFIG_PATH or KUBECONFIG, or run in a cluster): {e}"
            ),
        })?,
    };
    kube::Client::try_from(kube_config)
        .map_err(|e| Error::Sandbox(format!("kubernetes client: {e}")))
}
