//! A sandbox's state, read from its Pod's phase, conditions and container
//! status (and, without a pod, from whether its volume is still there).

use k8s_openapi::api::core::v1::Pod;

use super::objects::CONTAINER;
use crate::sandbox::{SandboxState, SandboxStatus};

/// Waiting reasons that will not clear by themselves: the container cannot
/// start until someone changes the image, the Secret or the code.
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Whether Kubernetes is deleting the object.
pub fn terminating(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// The state of a sandbox whose pod is `pod` (live, not terminating).
/// `preview_addr` is the Service's DNS name and Vite's port.
pub fn from_pod(pod: &Pod, preview_addr: &str) -> SandboxStatus {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let mk = |state, detail: Option<String>| SandboxStatus {
        state,
        preview_addr: (state == SandboxState::Ready).then(|| preview_addr.to_string()),
        detail,
    };
    if matches!(phase, "Failed" | "Succeeded") {
        let why = status
            .map(|s| {
                [s.reason.as_deref(), s.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("pod {phase}"));
        return mk(SandboxState::Crashed, Some(why));
    }
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    if let Some(waiting) = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
    {
        if let Some(reason) = waiting.reason.as_deref().filter(|r| STUCK.contains(r)) {
            let last_exit = container
                .and_then(|c| c.last_state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    format!(
                        " (last exit code {}{})",
                        t.exit_code,
                        t.reason
                            .as_deref()
                            .map(|r| format!(", {r}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let message = waiting
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return mk(
                SandboxState::Crashed,
                Some(format!("{reason}{message}{last_exit}")),
            );
        }
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if ready && phase == "Running" {
        return mk(SandboxState::Ready, None);
    }
    // Pending: not scheduled yet (quota, capacity), pulling, or Vite starting.
    let detail = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        .and_then(|c| c.message.clone().or_else(|| c.reason.clone()));
    mk(SandboxState::Starting, detail)
}

/// The state of a sandbox with no live pod.
pub fn without_pod(volume_kept: bool) -> SandboxStatus {
    SandboxStatus {
        state: if volume_kept {
            SandboxState::Stopped
        } else {
            SandboxState::Missing
        },
        preview_addr: None,
        detail: None,
    }
}

/// Whether sandboxd in the pod can be talked to: running, with an IP.
pub fn running(pod: &Pod) -> bool {
    let s = pod.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.pod_ip.as_deref()).is_some()
        && s.and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
            .and_then(|c| c.state.as_ref())
            .is_some_and(|st| st.running.is_some())
}
