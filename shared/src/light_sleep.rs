//! Light sleep: between "running" and "hibernated", a project whose preview
//! nobody has used for `APNA_PREVIEW_IDLE_MINUTES` stops its dev server and
//! keeps its files (the sandbox's [`SandboxState::Stopped`]). The next
//! preview request shows the starting page and starts it again (locally a
//! project of the starter's dependencies takes the warm spare's running dev
//! server, ~0.07 s, and any other wakes by a Vite start; see BENCHMARKS.md,
//! "#16 Density"); a run starts it in EnsureSandbox as always. On Kubernetes the same rule deletes the Pod and
//! keeps its volume ([`crate::sandbox::Sandbox::stop`]).
//!
//! A preview is in use while any of these says so:
//! * the project's `last_active` (runs, API reads) is within the idle time;
//! * the preview proxy of this process ([`PreviewActivity`]) saw a request
//!   within it, or holds an HMR WebSocket (an open tab) now;
//! * the sandbox itself reports use ([`crate::sandbox::Sandbox::preview_activity`]:
//!   in a pod, `apna sandboxd` watches the dev server's connections, because
//!   Caddy routes previews straight to the pod and no proxy of ours sees them).
//!
//! A project is only put to sleep under a maintenance hold of its run lock
//! (the lock a run holds from start to end), in status `ready` or `failed`:
//! so a run never finds its dev server asleep mid-run, and a run starting
//! while it falls asleep waits for EnsureSandbox to start it again.
//!
//! Drivers: `apna serve` runs [`sleep_idle`] on a timer (a fraction of the
//! idle time); on AWS the hibernation sweep's first task runs it (every
//! `CLEANUP_INTERVAL_MINUTES`), so there a preview sleeps between the idle
//! time and the idle time plus one sweep interval.

use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use crate::app::Backends;
use crate::domain::ProjectStatus;
use crate::error::Result;
use crate::sandbox::activity::PreviewActivity;
use crate::sandbox::SandboxState;
use crate::snapshot::lock::MaintenanceLock;

/// What one [`sleep_idle`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SleepReport {
    /// Projects whose dev server was running.
    pub awake: usize,
    /// Projects put to sleep now.
    pub slept: Vec<String>,
    /// Projects that could not be put to sleep (the error is logged).
    pub failed: usize,
}

/// What [`sleep_if_idle`] did with one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SleepOutcome {
    /// Its dev server is stopped; its files are kept.
    Slept,
    /// Left running.
    Awake {
        /// Why.
        reason: String,
    },
}

/// Puts every awake project whose preview has been idle for
/// `APNA_PREVIEW_IDLE_MINUTES` to sleep. One project's failure is logged
/// and does not stop the others.
pub async fn sleep_idle(state: &Backends) -> Result<SleepReport> {
    let awake = state.sandboxes.awake().await?;
    let mut report = SleepReport {
        awake: awake.len(),
        ..Default::default()
    };
    for id in awake {
        match sleep_if_idle(state, &id).await {
            Ok(SleepOutcome::Slept) => report.slept.push(id),
            Ok(SleepOutcome::Awake { .. }) => {}
            Err(e) => {
                report.failed += 1;
                tracing::warn!(project_id = %id, error = %e, "could not put the preview to sleep");
            }
        }
    }
    Ok(report)
}

/// Stops one project's dev server (keeping its files) when its preview has
/// been idle for `APNA_PREVIEW_IDLE_MINUTES` and no run holds it.
pub async fn sleep_if_idle(state: &Backends, project_id: &str) -> Result<SleepOutcome> {
    let span = tracing::info_span!("light_sleep", project_id = %project_id);
    async move {
        let idle = state.config.preview_idle;
        if let Some(reason) = in_use(state, project_id, idle).await? {
            return Ok(SleepOutcome::Awake { reason });
        }
        let lock = match MaintenanceLock::acquire(&*state.store, project_id, "sleep").await? {
            Ok(lock) => lock,
            Err(holder) => {
                return Ok(SleepOutcome::Awake {
                    reason: format!(
                        "run lock held by {}",
                        holder.unwrap_or_else(|| "another task".into())
                    ),
                })
            }
        };
        // Asked again under the lock: a run may have started and ended, or a
        // request come in, since the first look.
        let outcome = match in_use(state, project_id, idle).await {
            Ok(Some(reason)) => Ok(SleepOutcome::Awake { reason }),
            Ok(None) => state
                .sandboxes
                .sandbox(project_id)?
                .stop()
                .await
                .map(|()| SleepOutcome::Slept),
            Err(e) => Err(e),
        };
        lock.release(&*state.store).await;
        if matches!(outcome, Ok(SleepOutcome::Slept)) {
            tracing::info!("preview idle: dev server asleep, files kept");
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Why the project's dev server must keep running, or `None` when it may sleep.
async fn in_use(state: &Backends, project_id: &str, idle: Duration) -> Result<Option<String>> {
    let Some(project) = state.store.get_project(project_id).await? else {
        return Ok(Some("no such project".into()));
    };
    if project.deleted_at.is_some() {
        return Ok(Some("deleted".into()));
    }
    if !matches!(project.status, ProjectStatus::Ready | ProjectStatus::Failed) {
        return Ok(Some(format!("status {}", project.status.as_str())));
    }
    let since_active = (crate::domain::now() - project.last_active)
        .to_std()
        .unwrap_or_default();
    if since_active < idle {
        return Ok(Some(format!("active {}s ago", since_active.as_secs())));
    }
    if let Some(reason) = busy(&state.preview_activity, project_id, idle) {
        return Ok(Some(reason));
    }
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if let Some(a) = sandbox.preview_activity().await? {
        if !a.quiet_for(idle) {
            return Ok(Some(format!(
                "the sandbox sees its preview in use ({} open connection(s))",
                a.open_sockets
            )));
        }
    }
    if !matches!(
        sandbox.status().await?.state,
        SandboxState::Ready | SandboxState::Starting | SandboxState::Crashed
    ) {
        return Ok(Some("its dev server is not running".into()));
    }
    Ok(None)
}

fn busy(activity: &PreviewActivity, project_id: &str, idle: Duration) -> Option<String> {
    let a = activity.of(project_id);
    if a.open_sockets > 0 {
        return Some(format!("{} preview socket(s) open", a.open_sockets));
    }
    (!a.quiet_for(idle)).then(|| "preview requested within the idle time".to_string())
}

/// How often `apna serve` looks for idle previews: a quarter of the idle
/// time, between 1 s and 30 s.
pub fn check_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_often_enough_and_not_too_often() {
        assert_eq!(
            check_interval(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            check_interval(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            check_interval(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }
}
