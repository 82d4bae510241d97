//! Warm pods: `APNA_WARM_PODS` template sandboxes (Pod + PVC + Secret, label
//! `apna.dev/warm=true`) already running Vite, as the local driver's warm
//! spare. Creating a pod, attaching a volume and starting Vite takes seconds
//! on a real cluster; a new project instead adopts a warm pod by relabelling
//! it (its Service selects the new labels) and gets its files by one import.
//!
//! Adoption is safe under concurrency and crashes: the claim is a merge patch
//! carrying the pod's `resourceVersion`, so of two creators racing for one pod
//! exactly one wins (the other gets 409 and tries the next). The claim marks
//! the pod `apna.dev/adopting`; the Secret and PVC are relabelled (and freed
//! from the warm pod's ownership), the Service applied, and the mark removed
//! last, so an ensure that finds a marked pod finishes the adoption.
//!
//! Warm Secrets and PVCs are owned by their pod: a warm pod deleted (crashed
//! and cleaned, or half-created) takes them along by garbage collection.
//! Refilling is stateless: the create that adopts tops the pool up, and so does
//! the hibernation sweep ([`replenish`]); nothing runs in the background.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::objects::{self, Names};
use super::{name_of, pod_state, token_secret, workspace_claim, Inner, KubeSandbox};
use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SandboxState, SandboxStatus};

/// Warm pods that never got Ready in this long are replaced by the sweep.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// At most this many warm pods are tried when others win the race for them.
const CLAIM_ATTEMPTS: usize = 3;

fn usable(pod: &Pod) -> bool {
    !pod_state::terminating(&pod.metadata)
        && pod_state::from_pod(pod, "").state != SandboxState::Crashed
}

fn ready(pod: &Pod) -> bool {
    pod_state::from_pod(pod, "").state == SandboxState::Ready
}

/// Gives project `sb` a warm pod, if there is one; tops the pool up after.
/// Warm pods are seeded from the default starter; for `starter` (another
/// one) the claim records it and the adoption gives the pod its files.
pub(super) async fn adopt(
    sb: &KubeSandbox,
    starter: Option<&str>,
) -> Result<Option<SandboxStatus>> {
    let inner = &sb.inner;
    let pool = inner.list::<Pod>("pods", &objects::warm_selector()).await?;
    let mut candidates: Vec<&Pod> = pool.iter().filter(|p| usable(p)).collect();
    // Ready ones first, then the oldest (closest to ready).
    candidates.sort_by_key(|p| {
        (
            !ready(p),
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let mut claimed = None;
    for pod in candidates.iter().take(CLAIM_ATTEMPTS) {
        if let Some(p) = claim(sb, pod, starter).await? {
            claimed = Some(p);
            break;
        }
    }
    let left = candidates.len() - usize::from(claimed.is_some());
    let status = match &claimed {
        Some(pod) => Some(finish_adoption(sb, pod).await?),
        None => None,
    };
    // The pool is topped up after the create is done; a failure here must not fail it.
    let want = inner.opts.warm_pods as usize;
    if left < want {
        if let Err(e) = start(inner, want - left).await {
            tracing::warn!(project_id = %sb.id, error = %e, "could not refill the warm pods");
        }
    }
    Ok(status)
}

/// Claims one warm pod for the project; `None` when another creator got it first.
async fn claim(sb: &KubeSandbox, pod: &Pod, starter: Option<&str>) -> Result<Option<Pod>> {
    let name = name_of(&pod.metadata);
    let mut patch = json!({
        "metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "labels": {
                objects::WARM_LABEL: null,
                objects::PROJECT_LABEL: sb.id,
                objects::APP_LABEL: sb.names.base,
                objects::ADOPTING_LABEL: "true",
            }
        }
    });
    if let Some(s) = starter {
        patch["metadata"]["labels"][objects::STARTER_LABEL] = json!(s);
    }
    let params = PatchParams {
        field_manager: Some(super::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match sb
        .inner
        .api::<Pod>()
        .await?
        .patch(name, &params, &Patch::Merge(patch))
        .await
    {
        Ok(p) => Ok(Some(p)),
        // Changed (claimed) or deleted since we listed it.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(None),
        Err(e) => Err(super::api_error::map(
            e,
            sb.inner.call("patch", "pods", name),
        )),
    }
}

/// Moves a claimed warm pod's Secret and PVC to the project, applies the
/// project's Service, gives the workspace the starter the claim asked for
/// (sandboxd does so only while nothing has changed it), then unmarks the
/// pod. Idempotent: an ensure that finds the mark calls it again.
pub(super) async fn finish_adoption(sb: &KubeSandbox, pod: &Pod) -> Result<SandboxStatus> {
    let inner = &sb.inner;
    let name = name_of(&pod.metadata);
    let (Some(secret), Some(claim)) = (token_secret(pod), workspace_claim(pod)) else {
        return Err(Error::Sandbox(format!(
            "warm pod {name} has no token Secret or workspace volume"
        )));
    };
    let to_project = json!({
        "metadata": {
            "labels": { objects::WARM_LABEL: null, objects::PROJECT_LABEL: sb.id },
            "ownerReferences": null,
        }
    });
    inner
        .merge::<Secret>("secrets", secret, to_project.clone())
        .await?;
    inner
        .merge::<PersistentVolumeClaim>("persistentvolumeclaims", claim, to_project)
        .await?;
    let svc = objects::service(&sb.names, &sb.id, &inner.opts.namespace);
    inner.apply::<Service>("services", &svc).await?;
    let wanted = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(objects::STARTER_LABEL));
    if let Some(starter) = wanted {
        sb.with_remote(false, |r| async move { r.ensure_from(starter).await })
            .await?;
    }
    let mut unmark = json!({ "metadata": { "labels": { objects::ADOPTING_LABEL: null } } });
    if wanted.is_some() {
        unmark["metadata"]["labels"][objects::STARTER_LABEL] = json!(null);
    }
    let pod: Pod = inner.merge("pods", name, unmark).await?;
    tracing::info!(project_id = %sb.id, pod = %name, "adopted a warm pod");
    Ok(sb.status_of(&pod))
}

/// Starts `n` warm pod sets: the Pod first (its uid owns the rest), then its
/// Secret and PVC. The pod waits, unscheduled, until its volume exists.
async fn start(inner: &Inner, n: usize) -> Result<usize> {
    for _ in 0..n {
        let names = Names::warm();
        let secret = names.secret();
        let pod = objects::pod(
            &inner.opts,
            objects::PodSpecInput {
                name: &names.base,
                labels: objects::warm_labels(),
                claim: &names.base,
                secret: &secret,
                log_id: &names.base,
                starter: None,
            },
        );
        let pod = inner.apply("pods", &pod).await?;
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: names.base.clone(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            ..Default::default()
        };
        inner
            .create_secret(&secret, objects::warm_labels(), Some(owner.clone()))
            .await?;
        let mut pvc = objects::pvc(&names.base, &inner.opts, objects::warm_labels());
        pvc.metadata.owner_references = Some(vec![owner]);
        inner.apply("persistentvolumeclaims", &pvc).await?;
        tracing::info!(pod = %names.base, "warm pod started");
    }
    Ok(n)
}

/// Removes crashed or stale warm pods (their Secret and PVC follow) and starts
/// enough new ones to have `APNA_WARM_PODS`.
pub(super) async fn replenish(inner: &Inner) -> Result<usize> {
    let pool = inner.list::<Pod>("pods", &objects::warm_selector()).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut healthy = 0usize;
    for pod in pool.iter().filter(|p| !pod_state::terminating(&p.metadata)) {
        let stale = !ready(pod)
            && pod
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| now.duration_since(t.0).unsigned_abs() > STALE_AFTER);
        if usable(pod) && !stale {
            healthy += 1;
        } else {
            let name = name_of(&pod.metadata);
            tracing::info!(pod = %name, "removing a warm pod that crashed or never got ready");
            inner.delete::<Pod>("pods", name).await?;
        }
    }
    let want = inner.opts.warm_pods as usize;
    start(inner, want.saturating_sub(healthy)).await
}
