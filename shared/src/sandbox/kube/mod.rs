//! Sandboxes on Kubernetes: per project a Pod running `apna sandboxd` (the
//! image of `images/preview/`), a PersistentVolumeClaim holding the workspace,
//! a ClusterIP Service `project-{id}` (Caddy's upstream) and a Secret with
//! sandboxd's token. Any cluster a kubeconfig (or the in-cluster service
//! account) reaches works; on EKS the endpoint and token come from AWS
//! (`eks`, feature `eks`).
//!
//! The driver owns only the lifecycle: everything else (files, exec, logs,
//! export/import) goes to sandboxd through a [`RemoteSandbox`], reached via the
//! API server's `pods/proxy` ([`KubeProxyTransport`], the default) or the pod
//! IP. Objects are created with server-side apply (field manager `apna`), so a
//! retried step changes nothing, and are found by the label
//! `apna.dev/project={id}` rather than by name: a project that adopted a warm
//! pod (`warm`) keeps that pod's name, volume and Secret.
//!
//! | state    | what the API server has                                     |
//! |----------|-------------------------------------------------------------|
//! | Missing  | no pod, no volume (never created, or hibernated)            |
//! | Stopped  | a volume, no live pod                                        |
//! | Starting | a pod not Ready yet (scheduling, pulling, Vite starting)     |
//! | Ready    | a Ready pod; `preview_addr` = the Service's DNS name :5173   |
//! | Crashed  | a pod in CrashLoopBackOff (or failed), with the reason      |
//!
//! Handlers are stateless: every handle re-reads what it needs. The only
//! per-process memory is a cache of the pod's name and token per project,
//! dropped whenever sandboxd stops answering or refuses the token.
//!
//! Kubernetes API requests per operation (counted by the tests' mock API
//! server; see BENCHMARKS.md): `status` 1 (2 when there is no pod), a page
//! of the project list's states 1 (2 when one of them has no pod), `ensure`
//! on a running sandbox 1 (a list, no writes), `ensure` of a new project 7,
//! `stop` 1, `destroy` 4; light sleep of an idle project 10 (one list of the
//! project pods for the whole sweep, then per project: its pods and
//! sandboxd's `/v1/activity` twice, once more under the run lock, and the
//! delete), 5 for one left awake.

mod api_error;
mod cluster;
mod connection;
#[cfg(feature = "eks")]
pub mod eks;
mod objects;
mod pod_state;
mod proxy;
mod warm;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::config::{Config, KubeTransport};
use crate::error::{Error, Result};
use crate::sandbox::remote::TOKEN_ENV;
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxProvider, SandboxState,
    SandboxStatus, SmokeReport, SmokeRequest, SourceTree,
};
use api_error::Call;
use connection::Connection;
use objects::Names;
pub use proxy::KubeProxyTransport;

/// The field manager of every server-side apply.
const FIELD_MANAGER: &str = "apna";

/// Settings for [`KubeProvider`].
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Namespace of the project objects (`KUBE_NAMESPACE`).
    pub namespace: String,
    /// The sandbox image (`CONTAINER_IMAGE`).
    pub image: String,
    /// Storage class of project volumes (`KUBE_STORAGE_CLASS`; `None` = the cluster default).
    pub storage_class: Option<String>,
    /// Warm pods to keep (`APNA_WARM_PODS`).
    pub warm_pods: u32,
    /// How sandboxd is reached.
    pub transport: KubeTransport,
    /// How long a file operation waits for a starting pod's sandboxd before `NotReady`.
    pub ready_wait: Duration,
    /// Origins of the Apna UI that may drive Select in previews (`APNA_CORS_ORIGINS`:
    /// on AWS the UI is on CloudFront, not on the preview domain's parent).
    pub ui_origins: Vec<String>,
}

impl KubeOptions {
    /// The options `config` names.
    pub fn from_config(config: &Config) -> KubeOptions {
        KubeOptions {
            namespace: config.kube_namespace.clone(),
            image: config.container_image.clone(),
            storage_class: config.kube_storage_class.clone(),
            warm_pods: config.warm_pods,
            transport: config.kube_transport,
            ready_wait: Duration::from_secs(20),
            ui_origins: config.cors_origins.clone(),
        }
    }
}

/// Hands out [`KubeSandbox`]es; cheap to clone.
#[derive(Clone)]
pub struct KubeProvider {
    inner: Arc<Inner>,
}

struct Inner {
    /// The API client, made on first use (a Lambda that never touches a
    /// sandbox never calls DescribeCluster).
    client: tokio::sync::OnceCell<kube::Client>,
    /// What to connect with, for a provider made by [`KubeProvider::from_config`].
    config: Option<Config>,
    opts: KubeOptions,
    /// Per project: the sandboxd client of its current pod.
    remotes: Mutex<HashMap<String, Arc<Connection>>>,
}

impl KubeProvider {
    /// A provider over `client` (tests pass a mock API server's).
    pub fn new(client: kube::Client, opts: KubeOptions) -> KubeProvider {
        KubeProvider {
            inner: Arc::new(Inner {
                client: tokio::sync::OnceCell::new_with(Some(client)),
                config: None,
                opts,
                remotes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A provider that connects as `config` says when first used.
    pub fn from_config(config: &Config) -> KubeProvider {
        KubeProvider {
            inner: Arc::new(Inner {
                client: tokio::sync::OnceCell::new(),
                config: Some(config.clone()),
                opts: KubeOptions::from_config(config),
                remotes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Connects now (`apna serve` checks its configuration at startup).
    pub async fn connect(&self) -> Result<()> {
        self.inner.client().await.map(|_| ())
    }

    /// The concrete sandbox for a project.
    pub fn kube(&self, project_id: &str) -> Result<KubeSandbox> {
        Ok(KubeSandbox {
            names: Names::project(project_id)?,
            id: project_id.to_string(),
            inner: self.inner.clone(),
        })
    }

    /// Brings the warm pool to `APNA_WARM_PODS` ready pods: removes warm pods
    /// that crashed and starts the missing ones. Returns how many it started.
    /// Run by the hibernation sweep (and after a create adopts a warm pod).
    pub async fn replenish_warm_pods(&self) -> Result<usize> {
        warm::replenish(&self.inner).await
    }
}

impl SandboxProvider for KubeProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.kube(project_id)?))
    }

    fn backend(&self) -> &'static str {
        "kube"
    }

    fn replenish(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.inner.opts.warm_pods > 0 {
                self.replenish_warm_pods().await?;
            }
            Ok(())
        })
    }

    /// One list of the pods that belong to a project (warm pods do not).
    fn awake(&self) -> futures::future::BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let pods = self
                .inner
                .list::<Pod>("pods", objects::PROJECT_LABEL)
                .await?;
            let mut ids: Vec<String> = pods
                .iter()
                .filter(|p| !pod_state::terminating(&p.metadata))
                .filter_map(|p| objects::project_of(&p.metadata))
                .map(str::to_string)
                .collect();
            ids.sort();
            ids.dedup();
            Ok(ids)
        })
    }

    /// One list of the page's pods (a set-based selector on the project
    /// label), and one of their volumes when some have no live pod: what
    /// [`Sandbox::status`] reads per project, for all of them at once.
    fn statuses<'a>(
        &'a self,
        ids: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<HashMap<String, SandboxStatus>>> {
        let span = tracing::debug_span!(
            "sandbox_statuses",
            xray = "kubernetes",
            projects = ids.len()
        );
        Box::pin(
            async move {
                // Sorted and unique, so the same page makes the same request;
                // an id that cannot name a sandbox has none to report.
                let sandboxes: BTreeMap<&str, KubeSandbox> = ids
                    .iter()
                    .filter_map(|id| Some((id.as_str(), self.kube(id).ok()?)))
                    .collect();
                if sandboxes.is_empty() {
                    return Ok(HashMap::new());
                }
                let pods = self
                    .inner
                    .list::<Pod>(
                        "pods",
                        &objects::projects_selector(sandboxes.keys().copied()),
                    )
                    .await?;
                let mut by_project = group_by_project(pods);
                let mut found = HashMap::with_capacity(sandboxes.len());
                let mut podless = Vec::new();
                for (id, sb) in &sandboxes {
                    let pods = by_project.remove(*id).unwrap_or_default();
                    match KubeSandbox::live_pod(pods) {
                        Some(pod) => {
                            found.insert(id.to_string(), sb.status_of(&pod));
                        }
                        None => podless.push(*id),
                    }
                }
                if !podless.is_empty() {
                    let volumes = self
                        .inner
                        .list::<PersistentVolumeClaim>(
                            "persistentvolumeclaims",
                            &objects::projects_selector(podless.iter().copied()),
                        )
                        .await?;
                    let kept = group_by_project(volumes);
                    for id in podless {
                        let volume_kept = kept.get(id).is_some_and(|v| KubeSandbox::volume_kept(v));
                        found.insert(id.to_string(), pod_state::without_pod(volume_kept));
                    }
                }
                Ok(found)
            }
            .instrument(span),
        )
    }
}

/// Objects by the project their label names.
fn group_by_project<K: kube::Resource>(objects: Vec<K>) -> HashMap<String, Vec<K>> {
    let mut by_project: HashMap<String, Vec<K>> = HashMap::new();
    for o in objects {
        if let Some(project) = objects::project_of(o.meta()).map(str::to_string) {
            by_project.entry(project).or_default().push(o);
        }
    }
    by_project
}

impl Inner {
    async fn client(&self) -> Result<kube::Client> {
        self.client
            .get_or_try_init(|| async {
                match &self.config {
                    Some(config) => cluster::connect(config).await,
                    None => Err(Error::Internal("kube provider without a client".into())),
                }
            })
            .await
            .cloned()
    }

    async fn api<K>(&self) -> Result<Api<K>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Ok(Api::namespaced(self.client().await?, &self.opts.namespace))
    }

    fn call<'a>(&'a self, verb: &'a str, resource: &'a str, name: &'a str) -> Call<'a> {
        Call {
            verb,
            resource,
            name,
            namespace: &self.opts.namespace,
        }
    }

    /// Lists objects of kind `K` matching a label selector.
    async fn list<K>(&self, resource: &str, selector: &str) -> Result<Vec<K>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .await?
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| api_error::map(e, self.call("list", resource, selector)))
    }

    /// Server-side apply of `obj` (field manager `apna`, taking over fields).
    async fn apply<K>(&self, resource: &str, obj: &K) -> Result<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        self.api::<K>()
            .await?
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map_err(|e| api_error::map(e, self.call("patch", resource, &name)))
    }

    /// A JSON merge patch (labels, owner references) of one object.
    async fn merge<K>(&self, resource: &str, name: &str, patch: serde_json::Value) -> Result<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api::<K>()
            .await?
            .patch(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| api_error::map(e, self.call("patch", resource, name)))
    }

    /// Deletes every object of kind `K` matching a selector.
    async fn delete_all<K>(&self, resource: &str, selector: &str) -> Result<()>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .await?
            .delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels(selector),
            )
            .await
            .map(|_| ())
            .map_err(|e| api_error::map(e, self.call("deletecollection", resource, selector)))
    }

    /// Deletes one object; one that is already gone is fine.
    async fn delete<K>(&self, resource: &str, name: &str) -> Result<()>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self
            .api::<K>()
            .await?
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error::map(e, self.call("delete", resource, name))),
        }
    }

    /// Creates the sandboxd token Secret `name`; one that already exists is kept
    /// (its token is what the pod reads, so it must never change).
    async fn create_secret(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
        owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) -> Result<()> {
        let mut secret = objects::secret(name, &self.opts.namespace, labels, &new_token());
        secret.metadata.owner_references = owner.map(|o| vec![o]);
        match self
            .api::<Secret>()
            .await?
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_error::map(e, self.call("create", "secrets", name))),
        }
    }
}

/// A new sandboxd token: 256 random bits, hex.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The Secret a pod reads its token from.
fn token_secret(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == objects::CONTAINER)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == TOKEN_ENV)?
        .value_from
        .as_ref()?
        .secret_key_ref
        .as_ref()
        .map(|s| s.name.as_str())
}

/// The PVC a pod mounts as its workspace.
fn workspace_claim(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == "workspace")?
        .persistent_volume_claim
        .as_ref()
        .map(|p| p.claim_name.as_str())
}

fn name_of(meta: &kube::api::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn has_label(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.labels.as_ref().is_some_and(|l| l.contains_key(key))
}

/// One project's sandbox on Kubernetes.
#[derive(Clone)]
pub struct KubeSandbox {
    id: String,
    names: Names,
    inner: Arc<Inner>,
}

impl KubeSandbox {
    fn selector(&self) -> String {
        objects::project_selector(&self.id)
    }

    /// `project-{id}.{ns}.svc.cluster.local:5173`: where Caddy reaches the preview.
    fn preview_addr(&self) -> String {
        format!(
            "{}.{}.svc.cluster.local:{}",
            self.names.base,
            self.inner.opts.namespace,
            objects::VITE_PORT
        )
    }

    async fn pods(&self) -> Result<Vec<Pod>> {
        self.inner.list::<Pod>("pods", &self.selector()).await
    }

    async fn volumes(&self) -> Result<Vec<PersistentVolumeClaim>> {
        self.inner
            .list::<PersistentVolumeClaim>("persistentvolumeclaims", &self.selector())
            .await
    }

    fn live_pod(pods: Vec<Pod>) -> Option<Pod> {
        pods.into_iter()
            .find(|p| !pod_state::terminating(&p.metadata))
    }

    /// Whether one of the project's volumes is not being deleted: its files are kept.
    fn volume_kept(volumes: &[PersistentVolumeClaim]) -> bool {
        volumes.iter().any(|v| !pod_state::terminating(&v.metadata))
    }

    fn status_of(&self, pod: &Pod) -> SandboxStatus {
        pod_state::from_pod(pod, &self.preview_addr())
    }

    /// The token Secret's name: the project's (adopted warm Secrets keep their
    /// name), created now if there is none.
    async fn secret_name(&self) -> Result<String> {
        let existing = self
            .inner
            .list::<Secret>("secrets", &self.selector())
            .await?;
        if let Some(s) = existing.first() {
            return Ok(name_of(&s.metadata).to_string());
        }
        let name = self.names.secret();
        self.inner
            .create_secret(&name, objects::project_labels(&self.id), None)
            .await?;
        Ok(name)
    }

    /// Creates what is missing of Secret, PVC, Service and Pod (in that order:
    /// a pod implies the rest exist). `claim` is the project's live volume.
    async fn create(&self, claim: Option<String>, starter: Option<&str>) -> Result<SandboxStatus> {
        let inner = &self.inner;
        let secret = self.secret_name().await?;
        let claim = match claim {
            Some(c) => c,
            None => {
                let pvc = objects::pvc(
                    &self.names.base,
                    &inner.opts,
                    objects::project_labels(&self.id),
                );
                inner.apply("persistentvolumeclaims", &pvc).await?;
                self.names.base.clone()
            }
        };
        let svc = objects::service(&self.names, &self.id, &inner.opts.namespace);
        inner.apply::<Service>("services", &svc).await?;
        let pod = objects::pod(
            &inner.opts,
            objects::PodSpecInput {
                name: &self.names.base,
                labels: objects::project_pod_labels(&self.id),
                claim: &claim,
                secret: &secret,
                log_id: &self.id,
                starter,
            },
        );
        let pod = inner.apply("pods", &pod).await?;
        tracing::info!(project_id = %self.id, pod = %self.names.base, "sandbox pod created");
        Ok(self.status_of(&pod))
    }

    /// Ensures the pod; a missing sandbox gets `starter` (`None`: the default).
    async fn ensure_with(&self, starter: Option<&str>) -> Result<SandboxStatus> {
        let pods = self.pods().await?;
        let dying_pod = pods.iter().any(|p| {
            pod_state::terminating(&p.metadata) && name_of(&p.metadata) == self.names.base
        });
        if let Some(pod) = Self::live_pod(pods) {
            if has_label(&pod.metadata, objects::ADOPTING_LABEL) {
                return warm::finish_adoption(self, &pod).await;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if !matches!(phase, Some("Failed" | "Succeeded")) {
                return Ok(self.status_of(&pod));
            }
            // Evicted or otherwise finished: it will not run again.
            let name = name_of(&pod.metadata).to_string();
            self.inner.delete::<Pod>("pods", &name).await?;
            self.inner.forget(&self.id);
            return Ok(SandboxStatus {
                state: SandboxState::Starting,
                preview_addr: None,
                detail: Some(format!("replacing pod {name}, which ended")),
            });
        }
        if dying_pod {
            return Ok(SandboxStatus {
                state: SandboxState::Starting,
                preview_addr: None,
                detail: Some("waiting for the previous pod to stop".into()),
            });
        }
        let volumes = self.volumes().await?;
        let claim = volumes
            .iter()
            .find(|v| !pod_state::terminating(&v.metadata))
            .map(|v| name_of(&v.metadata).to_string());
        if claim.is_none() {
            if volumes
                .iter()
                .any(|v| name_of(&v.metadata) == self.names.base)
            {
                return Ok(SandboxStatus {
                    state: SandboxState::Starting,
                    preview_addr: None,
                    detail: Some("waiting for the previous volume to be deleted".into()),
                });
            }
            if self.inner.opts.warm_pods > 0 {
                if let Some(status) = warm::adopt(self, starter).await? {
                    return Ok(status);
                }
            }
        }
        self.create(claim, starter).await
    }

    /// The last lines of a crashed container's previous run (`pods/log`).
    async fn previous_logs(&self, pod: &Pod, lines: usize) -> Result<String> {
        let name = name_of(&pod.metadata);
        let params = LogParams {
            container: Some(objects::CONTAINER.into()),
            previous: true,
            tail_lines: Some(i64::try_from(lines).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        match self.inner.api::<Pod>().await?.logs(name, &params).await {
            Ok(text) => Ok(text),
            // No previous container (it never ran): nothing to show.
            Err(kube::Error::Api(s)) if s.code == 400 || s.code == 404 => Ok(String::new()),
            Err(e) => Err(api_error::map(e, self.inner.call("get", "pods/log", name))),
        }
    }
}

#[async_trait]
impl Sandbox for KubeSandbox {
    fn project_id(&self) -> &str {
        &self.id
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        let span = tracing::debug_span!("ensure_pod", xray = "kubernetes", project_id = %self.id);
        self.ensure_with(None).instrument(span).await
    }

    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        crate::starter::find(starter)?;
        let other = (starter != crate::domain::DEFAULT_TEMPLATE).then_some(starter);
        let span = tracing::debug_span!("ensure_pod", xray = "kubernetes", project_id = %self.id);
        self.ensure_with(other).instrument(span).await
    }

    async fn status(&self) -> Result<SandboxStatus> {
        if let Some(pod) = Self::live_pod(self.pods().await?) {
            return Ok(self.status_of(&pod));
        }
        Ok(pod_state::without_pod(Self::volume_kept(
            &self.volumes().await?,
        )))
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.with_remote(false, |r| async move { r.read_file(path).await })
            .await
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.with_remote(false, |r| async move { r.write_file(path, data).await })
            .await
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.with_remote(false, |r| async move { r.delete_file(path).await })
            .await
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.with_remote(false, |r| async move { r.list_files().await })
            .await
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        let span = tracing::info_span!("exec", project_id = %self.id);
        self.with_remote(false, |r| async move { r.exec(req).await })
            .instrument(span)
            .await
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        match Self::live_pod(self.pods().await?) {
            None => Ok(String::new()),
            Some(pod) if pod_state::running(&pod) => {
                self.with_remote(false, |r| async move { r.logs(lines).await })
                    .await
            }
            Some(pod) => {
                let restarted = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.restart_count > 0));
                if restarted {
                    self.previous_logs(&pod, lines).await
                } else {
                    Ok(self.status_of(&pod).detail.unwrap_or_default())
                }
            }
        }
    }

    async fn preview_activity(&self) -> Result<Option<crate::sandbox::activity::Activity>> {
        // Only a running pod is asked: `with_remote` would start a stopped one.
        match Self::live_pod(self.pods().await?) {
            Some(pod) if pod_state::running(&pod) => {
                self.with_remote(false, |r| async move { r.preview_activity().await })
                    .await
            }
            _ => Ok(None),
        }
    }

    async fn stop(&self) -> Result<()> {
        self.inner.forget(&self.id);
        self.inner
            .delete_all::<Pod>("pods", &self.selector())
            .await?;
        tracing::info!(project_id = %self.id, "sandbox pod deleted (volume kept)");
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        self.inner.forget(&self.id);
        let selector = self.selector();
        self.inner.delete_all::<Pod>("pods", &selector).await?;
        self.inner
            .delete::<Service>("services", &self.names.base)
            .await?;
        self.inner
            .delete_all::<PersistentVolumeClaim>("persistentvolumeclaims", &selector)
            .await?;
        self.inner
            .delete_all::<Secret>("secrets", &selector)
            .await?;
        tracing::info!(project_id = %self.id, "sandbox destroyed (pod, volume, service, secret)");
        Ok(())
    }

    async fn export_source(&self) -> Result<SourceTree> {
        self.with_remote(false, |r| async move { r.export_source().await })
            .await
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        self.with_remote(true, |r| async move { r.import_source(tree).await })
            .await
    }
    /// sandboxd opens its own dev server in the headless browser of the image.
    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        let span = tracing::info_span!("smoke_check", project_id = %self.id);
        self.with_remote(false, |r| async move { r.smoke_check(req).await })
            .instrument(span)
            .await
    }
    /// sandboxd checks next to the files and its dev server, under its pod's build gate.
    async fn check_build(&self) -> Result<crate::sandbox::build_check::BuildReport> {
        let span = tracing::info_span!("check_build", project_id = %self.id);
        self.with_remote(false, |r| async move { r.check_build().await })
            .instrument(span)
            .await
    }
}
