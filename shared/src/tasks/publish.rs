//! The publish state machine's tasks: BuildSite, ActivateSite, PublishFailed
//! (`statemachines/publish.asl.json`; the work is in `crate::publish`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::parse;
use crate::app::Backends;
use crate::error::Result;
use crate::publish::{FailedInput, PublishJob};

/// ActivateSite's input: the job and the deploy BuildSite produced.
#[derive(Debug, Deserialize)]
struct Built {
    #[serde(flatten)]
    job: PublishJob,
    deploy_id: String,
}

/// A verified deploy of the job's version: reused, copied or built.
pub(super) async fn build_site(input: Value, state: &Backends) -> Result<Value> {
    let job: PublishJob = parse(input)?;
    let deploy_id = crate::publish::build(state, &job).await?;
    Ok(json!({ "deploy_id": deploy_id }))
}

/// Flips the site to the deploy and records it.
pub(super) async fn activate_site(input: Value, state: &Backends) -> Result<Value> {
    let built: Built = parse(input)?;
    let site = crate::publish::activate(state, &built.job, &built.deploy_id).await?;
    Ok(serde_json::to_value(site)?)
}

/// Ends a failed publish, leaving the previous site serving.
pub(super) async fn publish_failed(input: Value, state: &Backends) -> Result<Value> {
    let failed: FailedInput = parse(input)?;
    let site = crate::publish::fail(
        state,
        &failed.job,
        failed.deploy_id.as_deref(),
        &failed.message(),
    )
    .await?;
    Ok(serde_json::to_value(site)?)
}
