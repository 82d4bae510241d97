//! Publishing a version as a static site at `{slug}.{APNA_APPS_DOMAIN}`.
//!
//! A publish is an execution of `statemachines/publish.asl.json`, because a
//! production build (and waking a hibernated project first) can take longer
//! than an API request may (29 s behind API Gateway):
//!
//! 1. [`start`] (the API): checks the version and slug, claims the slug
//!    (unique across users), records the job on the project's [`Site`] row
//!    (compare-and-set: one publish at a time) and starts the execution.
//! 2. [`build`] (task BuildSite): reuses a stored deploy of that version when
//!    one verifies (re-publishing an older version — a rollback — needs no
//!    build; a rename copies it), else builds the version's snapshot in the
//!    sandbox, uploads the output under its own prefix with a manifest
//!    ([`deploy::upload`]) and checks every file ([`deploy::verify`]).
//! 3. [`activate`] (task ActivateSite): checks again, flips the site's entry
//!    ([`deploy::activate`]), records the new version, then retires a renamed
//!    slug's old files and old deploys.
//! 4. [`fail`] (task PublishFailed): records why. If the flip had happened the
//!    new version is what serves, and is recorded; otherwise the previous
//!    site is put back exactly as it was.
//!
//! A reader sees the old site or the new one: the new files are all stored
//! and checked before the entry changes, and each deploy's pages load only
//! that deploy's files (see [`layout`]). [`unpublish`] takes the entry down
//! first, then the files, then frees the slug.

pub mod build;
pub mod deploy;
pub mod layout;
pub mod slug;

use std::collections::HashSet;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

pub use build::{build_site, SiteFile};
pub use deploy::DeployManifest;

use crate::app::{AppState, Backends};
use crate::domain::{now, Project, Site};
use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SandboxState};
use crate::snapshot::WakeOutcome;

/// The state machine a publish runs (`statemachines/publish.asl.json`).
pub const PUBLISH: &str = "publish";

/// Deploys kept per site besides the serving one, so that a rollback to a
/// recent version is a flip rather than a build.
pub const KEEP_DEPLOYS: usize = 4;

/// A publish older than this is taken to have died (its execution failed
/// without reaching PublishFailed), and another may start.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// What a publish is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    /// The version to publish; the newest when `None`.
    pub version: Option<i64>,
    /// The slug to serve under; the current one (or a generated one) when `None`.
    pub slug: Option<String>,
}

/// The publish state machine's payload: ids, the version and the slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishJob {
    /// The project.
    pub project_id: String,
    /// The job (its execution's name), held on the site row while it runs.
    pub job: String,
    /// The version to publish.
    pub version: i64,
    /// The slug to serve it under.
    pub slug: String,
}

/// Whether a publish of `site` is in progress (and not so old it must have died).
pub fn is_running(site: &Site) -> bool {
    site.job.is_some() && site.pending_since.is_some_and(|t| now() - t < STALE_AFTER)
}

/// Starts publishing `project` (already checked to be the caller's) and
/// returns its site with the publish pending.
pub async fn start(state: &AppState, project: &Project, req: PublishRequest) -> Result<Site> {
    let pid = project.id.as_str();
    let versions = state.store.list_versions(pid).await?;
    let version = match req.version {
        Some(n) => versions
            .iter()
            .find(|v| v.number == n)
            .ok_or_else(|| Error::NotFound(format!("version {n} does not exist")))?,
        // A state the project is in, not a malformed request: 409, as for a
        // chat while a run is active.
        None => versions.last().ok_or_else(|| {
            Error::Conflict(
                "nothing to publish yet: the project has no version; wait for its first run to finish"
                    .into(),
            )
        })?,
    };
    let site = state
        .store
        .get_site(pid)
        .await?
        .unwrap_or_else(|| Site::new(pid));
    if is_running(&site) {
        return Err(Error::Conflict(
            "a publish of this project is already in progress; try again when it finishes".into(),
        ));
    }
    let slug = claim(state, project, &site, req.slug.as_deref()).await?;
    let owned = |s: &Option<String>| s.as_deref() == Some(slug.as_str());
    let newly_claimed = !owned(&site.slug) && !owned(&site.pending_slug);
    let job = PublishJob {
        project_id: pid.to_string(),
        job: format!("publish-{}", crate::domain::new_run_id()),
        version: version.number,
        slug: slug.clone(),
    };
    let mut pending = site.clone();
    pending.job = Some(job.job.clone());
    pending.pending_version = Some(job.version);
    pending.pending_slug = Some(slug.clone());
    pending.pending_since = Some(now());
    pending.updated_at = now();
    if !state.store.save_site(&pending, site.job.as_deref()).await? {
        if newly_claimed {
            state.store.release_slug(&slug, pid).await?;
        }
        return Err(Error::Conflict(
            "a publish of this project is already in progress; try again when it finishes".into(),
        ));
    }
    // A publish that died without cleaning up may have claimed another slug.
    if let Some(old) = site.pending_slug.as_deref() {
        if old != slug && site.slug.as_deref() != Some(old) {
            deploy::remove_site(&*state.blobs, old).await?;
            state.store.release_slug(old, pid).await?;
        }
    }
    let input = serde_json::to_value(&job)?;
    if let Err(e) = state.workflow.start(PUBLISH, &job.job, input).await {
        let mut back = site.clone();
        back.job = None;
        back.pending_version = None;
        back.pending_slug = None;
        back.pending_since = None;
        back.updated_at = now();
        state.store.save_site(&back, Some(&job.job)).await?;
        if newly_claimed {
            state.store.release_slug(&slug, pid).await?;
        }
        return Err(e);
    }
    state.store.touch_project(pid, now()).await?;
    tracing::info!(project_id = %pid, job = %job.job, version = job.version, slug = %slug, "publish started");
    Ok(pending)
}

/// The slug this publish serves under, claimed for the project: the one asked
/// for (409 when another project holds it), else the site's current one, else
/// one made from the project's name.
async fn claim(
    state: &AppState,
    project: &Project,
    site: &Site,
    wanted: Option<&str>,
) -> Result<String> {
    let pid = project.id.as_str();
    if let Some(s) = wanted {
        slug::check(s)?;
        if !state.store.claim_slug(s, pid).await? {
            return Err(Error::Conflict(format!(
                "the address {s:?} is taken; choose another"
            )));
        }
        return Ok(s.to_string());
    }
    if let Some(s) = &site.slug {
        return Ok(s.clone());
    }
    for _ in 0..8 {
        let s = slug::generate(&project.name);
        if state.store.claim_slug(&s, pid).await? {
            return Ok(s);
        }
    }
    Err(Error::Conflict(
        "could not find a free address; choose a slug".into(),
    ))
}

/// The site row, if `job` is still the publish it holds.
async fn held(state: &Backends, job: &PublishJob) -> Result<Option<Site>> {
    let site = state.store.get_site(&job.project_id).await?;
    Ok(site.filter(|s| s.job.as_deref() == Some(job.job.as_str())))
}

/// Task BuildSite: a verified deploy of the job's version under its slug —
/// reused, copied from another slug, or built and uploaded. Returns its id.
pub async fn build(state: &Backends, job: &PublishJob) -> Result<String> {
    let span = tracing::info_span!("publish_build", project_id = %job.project_id, job = %job.job);
    async move {
        if held(state, job).await?.is_none() {
            return Err(Error::Conflict(format!(
                "publish {} is no longer the project's publish in progress",
                job.job
            )));
        }
        let version = state
            .store
            .get_version(&job.project_id, job.version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("version {} does not exist", job.version)))?;
        let blobs = &*state.blobs;
        let deploys = deploy::list(blobs, &job.project_id).await?;
        let same_version = || deploys.iter().rev().filter(|d| d.version == job.version);
        for d in same_version().filter(|d| d.slug == job.slug) {
            if deploy::verify(blobs, d).await.is_ok() {
                tracing::info!(deploy_id = %d.deploy_id, "reusing a stored deploy");
                return Ok(d.deploy_id.clone());
            }
        }
        for d in same_version() {
            if deploy::verify(blobs, d).await.is_ok() {
                let copied = deploy::copy(blobs, d, &job.slug).await?;
                deploy::verify(blobs, &copied).await?;
                tracing::info!(deploy_id = %d.deploy_id, from = %d.slug, "copied a deploy to the new slug");
                return Ok(copied.deploy_id);
            }
        }
        let sandbox = awake_sandbox(state, &job.project_id).await?;
        let tree = crate::snapshot::load_tree(blobs, &version.snapshot_key).await?;
        let deploy_id = format!("v{}-{:08x}", job.version, rand::thread_rng().gen::<u32>());
        let started = std::time::Instant::now();
        let files = build::build_site(&*sandbox, &tree, &deploy_id).await?;
        let built = started.elapsed();
        let manifest =
            deploy::upload(blobs, &job.project_id, &job.slug, &deploy_id, job.version, &files)
                .await?;
        deploy::verify(blobs, &manifest).await?;
        tracing::info!(
            deploy_id = %deploy_id,
            files = manifest.files.len(),
            bytes = manifest.bytes(),
            build_ms = built.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "deploy built, uploaded and verified"
        );
        Ok(deploy_id)
    }
    .instrument(span)
    .await
}

/// The project's sandbox, woken from its snapshot first when it is hibernated.
async fn awake_sandbox(state: &Backends, project_id: &str) -> Result<Arc<dyn Sandbox>> {
    let outcome =
        crate::snapshot::wake_project(&*state.store, &*state.blobs, &*state.sandboxes, project_id)
            .await?;
    if outcome == WakeOutcome::InProgress {
        return Err(Error::NotReady("the project is waking up".into()));
    }
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if sandbox.status().await?.state == SandboxState::Missing {
        sandbox.ensure().await?;
    }
    Ok(sandbox)
}

/// Task ActivateSite: flips the entry to deploy `deploy_id` and records it.
/// Repeating it after it succeeded returns the site as it is.
pub async fn activate(state: &Backends, job: &PublishJob, deploy_id: &str) -> Result<Site> {
    let span = tracing::info_span!("publish_activate", project_id = %job.project_id, job = %job.job, deploy_id);
    async move {
        if held(state, job).await?.is_none() {
            let site = state.store.get_site(&job.project_id).await?;
            return match site {
                Some(s)
                    if s.deploy_id.as_deref() == Some(deploy_id)
                        && s.slug.as_deref() == Some(job.slug.as_str()) =>
                {
                    // Done before; finish what that attempt may have cut short.
                    tidy(state, &job.project_id).await?;
                    Ok(s)
                }
                _ => Err(Error::Conflict(format!(
                    "publish {} is no longer the project's publish in progress",
                    job.job
                ))),
            };
        }
        let blobs = &*state.blobs;
        let manifest = deploy::load(blobs, &job.project_id, &job.slug, deploy_id)
            .await?
            .ok_or_else(|| Error::Blob(format!("deploy {deploy_id} has no manifest")))?;
        deploy::verify(blobs, &manifest).await?;
        deploy::activate(blobs, &manifest).await?;
        record_live(state, job, &manifest).await
    }
    .instrument(span)
    .await
}

/// Records `manifest` as what serves (the flip has happened), then tidies up.
async fn record_live(
    state: &Backends,
    job: &PublishJob,
    manifest: &DeployManifest,
) -> Result<Site> {
    let live = Site {
        project_id: job.project_id.clone(),
        slug: Some(job.slug.clone()),
        version: Some(manifest.version),
        deploy_id: Some(manifest.deploy_id.clone()),
        published_at: Some(now()),
        job: None,
        pending_version: None,
        pending_slug: None,
        pending_since: None,
        last_error: None,
        updated_at: now(),
    };
    if !state.store.save_site(&live, Some(&job.job)).await? {
        return Err(Error::Conflict(format!(
            "publish {} is no longer the project's publish in progress",
            job.job
        )));
    }
    tracing::info!(version = manifest.version, slug = %job.slug, "site published");
    tidy(state, &job.project_id).await?;
    Ok(live)
}

/// Removes what no longer serves: every other slug's files (a renamed site's
/// old address, or the new one of a rename that failed), freeing the slug,
/// then deploys beyond the newest [`KEEP_DEPLOYS`]. A slug counts as the
/// project's while a deploy manifest names it, so a tidy cut short is
/// finished by the next one (every publish's end runs it).
async fn tidy(state: &Backends, project_id: &str) -> Result<()> {
    let Some(site) = state.store.get_site(project_id).await? else {
        return Ok(());
    };
    let deploys = deploy::list(&*state.blobs, project_id).await?;
    let in_use = |slug: &str| {
        site.slug.as_deref() == Some(slug)
            || (site.job.is_some() && site.pending_slug.as_deref() == Some(slug))
    };
    let mut retired: Vec<&str> = deploys
        .iter()
        .map(|d| d.slug.as_str())
        .filter(|s| !in_use(s))
        .collect();
    retired.sort_unstable();
    retired.dedup();
    for slug in &retired {
        deploy::remove_site(&*state.blobs, slug).await?;
        state.store.release_slug(slug, project_id).await?;
        tracing::info!(project_id, slug, "retired an address that no longer serves");
    }
    prune(state, &deploys, &site, &in_use).await
}

/// Deletes deploys beyond the newest [`KEEP_DEPLOYS`] of the serving slug
/// and every deploy of slugs not in use; never the serving one.
async fn prune(
    state: &Backends,
    deploys: &[DeployManifest],
    site: &Site,
    in_use: &(dyn Fn(&str) -> bool + Sync),
) -> Result<()> {
    let live_slug = site.slug.as_deref();
    let recent: HashSet<&str> = deploys
        .iter()
        .rev()
        .filter(|d| Some(d.slug.as_str()) == live_slug)
        .take(KEEP_DEPLOYS + 1)
        .map(|d| d.deploy_id.as_str())
        .collect();
    let drop: Vec<DeployManifest> = deploys
        .iter()
        .filter(|d| {
            let id = d.deploy_id.as_str();
            let kept = if Some(d.slug.as_str()) == live_slug {
                recent.contains(id) || site.deploy_id.as_deref() == Some(id)
            } else {
                in_use(&d.slug)
            };
            !kept
        })
        .cloned()
        .collect();
    deploy::prune(&*state.blobs, &drop, &HashSet::new()).await
}

/// Task PublishFailed: ends the publish with `error`. When the entry already
/// serves the new deploy (the flip happened, recording it did not), that is
/// recorded; otherwise the previous site is put back as it was and a slug
/// this publish claimed is freed.
pub async fn fail(
    state: &Backends,
    job: &PublishJob,
    deploy_id: Option<&str>,
    error: &str,
) -> Result<Site> {
    let span = tracing::info_span!("publish_failed", project_id = %job.project_id, job = %job.job);
    async move {
        let Some(site) = held(state, job).await? else {
            // Recorded already (the failure came after); finish tidying up.
            if let Err(e) = tidy(state, &job.project_id).await {
                tracing::warn!(error = %e, "could not tidy up after the publish");
            }
            return Ok(state
                .store
                .get_site(&job.project_id)
                .await?
                .unwrap_or_else(|| Site::new(&job.project_id)));
        };
        let blobs = &*state.blobs;
        let deploys = deploy::list(blobs, &job.project_id).await?;
        let serving = deploy::serving(blobs, &job.slug, &deploys).await?;
        if let Some(new) = serving.filter(|d| Some(d.deploy_id.as_str()) == deploy_id) {
            tracing::info!("the flip happened before the failure: recording the new version");
            return record_live(state, job, new).await;
        }
        if let (Some(slug), Some(live)) = (site.slug.as_deref(), site.deploy_id.as_deref()) {
            if let Some(m) = deploy::load(blobs, &job.project_id, slug, live).await? {
                deploy::activate(blobs, &m).await?;
            }
        }
        let claimed_here = site.slug.as_deref() != Some(job.slug.as_str());
        if claimed_here {
            deploy::remove_site(blobs, &job.slug).await?;
        }
        let mut ended = site.clone();
        ended.job = None;
        ended.pending_version = None;
        ended.pending_slug = None;
        ended.pending_since = None;
        ended.last_error = Some(error.chars().take(2000).collect());
        ended.updated_at = now();
        state.store.save_site(&ended, Some(&job.job)).await?;
        if claimed_here {
            state.store.release_slug(&job.slug, &job.project_id).await?;
        }
        if let Err(e) = tidy(state, &job.project_id).await {
            tracing::warn!(error = %e, "could not tidy up after the failed publish");
        }
        tracing::warn!(error, "publish failed; the previous site still serves");
        Ok(ended)
    }
    .instrument(span)
    .await
}

/// Takes the project's site down: the entry first (it stops serving at once),
/// then its files and deploys, then the slug is freed. 409 while a publish
/// runs, unless `even_while_publishing` (a project being deleted): then the
/// publish in progress loses its hold and stops at its next task.
pub async fn unpublish(
    state: &Backends,
    project_id: &str,
    even_while_publishing: bool,
) -> Result<Site> {
    let Some(site) = state.store.get_site(project_id).await? else {
        return Ok(Site::new(project_id));
    };
    if is_running(&site) && !even_while_publishing {
        return Err(Error::Conflict(
            "a publish of this project is in progress; try again when it finishes".into(),
        ));
    }
    let blobs = &*state.blobs;
    for slug in [site.slug.as_deref(), site.pending_slug.as_deref()]
        .into_iter()
        .flatten()
    {
        deploy::remove_site(blobs, slug).await?;
    }
    let deploys = deploy::list(blobs, project_id).await?;
    deploy::prune(blobs, &deploys, &HashSet::new()).await?;
    for slug in [site.slug.as_deref(), site.pending_slug.as_deref()]
        .into_iter()
        .flatten()
    {
        state.store.release_slug(slug, project_id).await?;
    }
    let gone = Site::new(project_id);
    if !state.store.save_site(&gone, site.job.as_deref()).await? {
        return Err(Error::Conflict(
            "a publish of this project started meanwhile; try again".into(),
        ));
    }
    tracing::info!(project_id, slug = ?site.slug, "site unpublished");
    Ok(gone)
}

/// The payload fields PublishFailed reads besides the job.
#[derive(Debug, Deserialize)]
pub struct FailedInput {
    /// The job.
    #[serde(flatten)]
    pub job: PublishJob,
    /// The deploy BuildSite produced, if it got that far.
    #[serde(default)]
    pub deploy_id: Option<String>,
    /// The caught error (`{Error, Cause}`).
    #[serde(default)]
    pub error: serde_json::Value,
}

impl FailedInput {
    /// The error's cause for the person, or its name.
    pub fn message(&self) -> String {
        let cause = self.error.get("Cause").and_then(|v| v.as_str());
        let name = self.error.get("Error").and_then(|v| v.as_str());
        // Task failures carry the library's message as the cause; Lambda
        // errors wrap it in JSON ({"errorMessage": …}).
        let cause = cause.map(|c| {
            serde_json::from_str::<serde_json::Value>(c)
                .ok()
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(|m| m.as_str())
                        .map(String::from)
                })
                .unwrap_or_else(|| c.to_string())
        });
        cause
            .or(name.map(String::from))
            .unwrap_or_else(|| json!(self.error).to_string())
    }
}
