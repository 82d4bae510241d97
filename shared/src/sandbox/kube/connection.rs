//! The backend's line to a pod's `apna sandboxd`: finding the pod and its
//! token, waiting for a starting pod, and noticing when the token changed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Secret};
use tokio::time::Instant;

use super::{
    api_error, name_of, objects, pod_state, token_secret, Inner, KubeProxyTransport, KubeSandbox,
};
use crate::config::KubeTransport;
use crate::error::{Error, Result};
use crate::sandbox::remote::{
    DirectTransport, RemoteSandbox, SandboxdTransport, SANDBOXD_PORT, TOKEN_ENV,
};
use crate::sandbox::{Sandbox, SandboxState};

/// A project's sandboxd client, and whether sandboxd has refused its token
/// (the pod was replaced by one with a new Secret).
pub(super) struct Connection {
    pub(super) remote: Arc<RemoteSandbox>,
    pub(super) refused: Arc<AtomicBool>,
}

/// A transport that notes when sandboxd answers 401.
struct Watched {
    inner: Arc<dyn SandboxdTransport>,
    refused: Arc<AtomicBool>,
}

#[async_trait]
impl SandboxdTransport for Watched {
    async fn send(&self, req: http::Request<bytes::Bytes>) -> Result<http::Response<bytes::Bytes>> {
        let res = self.inner.send(req).await?;
        if res.status() == http::StatusCode::UNAUTHORIZED {
            self.refused.store(true, Ordering::SeqCst);
        }
        Ok(res)
    }
}

impl Inner {
    pub(super) fn cached(&self, project_id: &str) -> Option<Arc<Connection>> {
        self.remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project_id)
            .cloned()
    }

    pub(super) fn forget(&self, project_id: &str) {
        self.remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(project_id);
    }
}

impl KubeSandbox {
    /// sandboxd's client for the project's pod, waiting (up to `ready_wait`)
    /// for a starting pod. A stopped sandbox is started; a missing one is
    /// created only when `create` (import, which restores into a new sandbox).
    pub(super) async fn remote(&self, create: bool) -> Result<Arc<Connection>> {
        if let Some(r) = self.inner.cached(&self.id) {
            return Ok(r);
        }
        let deadline = Instant::now() + self.inner.opts.ready_wait;
        let mut last = None;
        loop {
            match Self::live_pod(self.pods().await?) {
                Some(pod) if pod_state::running(&pod) => {
                    let ready = self.status_of(&pod).state == SandboxState::Ready;
                    let remote = self.connect(&pod, ready, deadline).await?;
                    self.inner
                        .remotes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(self.id.clone(), remote.clone());
                    return Ok(remote);
                }
                Some(pod) => {
                    let st = self.status_of(&pod);
                    if st.state == SandboxState::Crashed {
                        return Err(Error::NotReady(format!(
                            "the sandbox of project {} crashed: {}",
                            self.id,
                            st.detail.unwrap_or_default()
                        )));
                    }
                    last = st.detail;
                }
                None => {
                    let kept = self
                        .volumes()
                        .await?
                        .iter()
                        .any(|v| !pod_state::terminating(&v.metadata));
                    if !kept && !create {
                        return Err(Error::NotReady(format!(
                            "the sandbox of project {} does not exist yet; it is created when the project starts",
                            self.id
                        )));
                    }
                    self.ensure().await?;
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady(format!(
                    "the sandbox pod of project {} is not running after {:?}{}",
                    self.id,
                    self.inner.opts.ready_wait,
                    last.map(|d| format!(" ({d})")).unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Reads the pod's token and builds its sandboxd client; unless the pod is
    /// Ready (Vite answering, so sandboxd is up), waits for sandboxd's `/healthz`.
    async fn connect(&self, pod: &Pod, ready: bool, deadline: Instant) -> Result<Arc<Connection>> {
        let inner = &self.inner;
        let pod_name = name_of(&pod.metadata);
        let secret_name = token_secret(pod).ok_or_else(|| {
            Error::Sandbox(format!("pod {pod_name} has no {TOKEN_ENV} from a Secret"))
        })?;
        let secret = inner
            .api::<Secret>()
            .await?
            .get(secret_name)
            .await
            .map_err(|e| api_error::map(e, inner.call("get", "secrets", secret_name)))?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(objects::TOKEN_KEY))
            .and_then(|t| String::from_utf8(t.0.clone()).ok())
            .ok_or_else(|| Error::Sandbox(format!("Secret {secret_name} has no token")))?;
        let transport: Arc<dyn SandboxdTransport> = match inner.opts.transport {
            KubeTransport::Proxy => Arc::new(KubeProxyTransport::new(
                inner.client().await?,
                &inner.opts.namespace,
                pod_name,
            )),
            KubeTransport::Direct => {
                let ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .ok_or_else(|| Error::NotReady(format!("pod {pod_name} has no IP yet")))?;
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                Arc::new(DirectTransport::new(&format!(
                    "http://{host}:{SANDBOXD_PORT}"
                ))?)
            }
        };
        if !ready {
            wait_healthz(&*transport, pod_name, deadline).await?;
        }
        let refused = Arc::new(AtomicBool::new(false));
        let watched = Arc::new(Watched {
            inner: transport,
            refused: refused.clone(),
        });
        Ok(Arc::new(Connection {
            remote: Arc::new(RemoteSandbox::new(&self.id, watched, token)),
            refused,
        }))
    }

    /// Runs `op` on sandboxd. A refused token means the pod was replaced by a
    /// new one with a new Secret (a 401 means sandboxd did nothing): look
    /// again, once. Unreachable: forget the pod, the caller retries later.
    pub(super) async fn with_remote<T, F, Fut>(&self, create: bool, op: F) -> Result<T>
    where
        F: Fn(Arc<RemoteSandbox>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let conn = self.remote(create).await?;
        match op(conn.remote.clone()).await {
            Err(_) if conn.refused.load(Ordering::SeqCst) => {
                self.inner.forget(&self.id);
                let conn = self.remote(create).await?;
                let again = op(conn.remote.clone()).await;
                if again.is_err() && conn.refused.load(Ordering::SeqCst) {
                    self.inner.forget(&self.id);
                }
                again
            }
            Err(e @ Error::NotReady(_)) => {
                self.inner.forget(&self.id);
                Err(e)
            }
            other => other,
        }
    }
}

/// Polls sandboxd's unauthenticated `/healthz` until it answers 200.
async fn wait_healthz(
    transport: &dyn SandboxdTransport,
    pod: &str,
    deadline: Instant,
) -> Result<()> {
    loop {
        let req = http::Request::get("/healthz")
            .body(bytes::Bytes::new())
            .map_err(|e| Error::Internal(format!("healthz request: {e}")))?;
        let why = match transport.send(req).await {
            Ok(res) if res.status().is_success() => return Ok(()),
            Ok(res) => format!("answered {}", res.status()),
            Err(Error::NotReady(m)) => m,
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady(format!(
                "sandboxd in pod {pod} is not answering yet: {why}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
