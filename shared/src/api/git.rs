//! Git endpoints: the project's versions as a Git bundle, and a push of them
//! to a remote over HTTPS. Both need the `git` feature (on by default).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use super::projects::owned_project;
use crate::app::AppState;

/// Body of `POST /api/projects/{id}/git/push`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// The repository: `https://host/owner/name.git` (no credentials in it).
    pub remote_url: String,
    /// The branch to update (default `main`). Only fast-forwards: a branch
    /// with commits that are not this project's versions is refused.
    #[serde(default)]
    pub branch: Option<String>,
    /// A token that may write to the repository (sent as HTTP Basic
    /// password); when absent, the one kept for this remote, if any.
    #[serde(default)]
    pub token: Option<String>,
    /// `true` keeps the token for later pushes to this remote, `false`
    /// forgets a kept one; absent leaves it as it is. Never kept unless asked.
    #[serde(default)]
    pub remember_token: Option<bool>,
}

/// What a push did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pushed {
    /// The branch updated.
    pub branch: String,
    /// The remote branch's tip now (the newest version's commit).
    pub head: String,
    /// Commits the remote did not have before.
    pub commits: usize,
    /// Git objects sent.
    pub objects: usize,
    /// Whether the remote was already up to date.
    pub up_to_date: bool,
}

/// The project's history as a Git bundle: one commit per version (message =
/// summary, author = owner, time = the version's), branch `main`.
/// `git clone project.bundle` makes a repository of it.
#[utoipa::path(get, path = "/api/projects/{id}/git", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, description = "A Git bundle (v2)", content_type = "application/x-git-bundle"),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the project has no versions yet", body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn bundle(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let project = owned_project(&state, &caller, &id).await?;
    imp::bundle(&state, &project).await
}

/// Pushes the project's versions to a Git remote over HTTPS. Later pushes
/// send only new commits; a remote branch that moved on is refused (409).
#[utoipa::path(post, path = "/api/projects/{id}/git/push", request_body = PushBody,
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = Pushed), (status = 400, body = ErrorBody),
              (status = 403, description = "a cross-site request", body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn push(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PushBody>,
) -> ApiResult<Json<Pushed>> {
    let project = owned_project(&state, &caller, &id).await?;
    imp::push(&state, &project, body).await.map(Json)
}

#[cfg(feature = "git")]
mod imp {
    use axum::http::header;
    use axum::response::{IntoResponse, Response};

    use super::{PushBody, Pushed};
    use crate::api::error::ApiResult;
    use crate::app::AppState;
    use crate::domain::Project;
    use crate::git::{PushRequest, DEFAULT_BRANCH};

    pub(super) async fn bundle(state: &AppState, project: &Project) -> ApiResult<Response> {
        let repo = crate::git::repository(state, project).await?;
        let bundle = repo.bundle(DEFAULT_BRANCH)?;
        let name = crate::api::versions::file_name(&project.name);
        Ok((
            [
                (header::CONTENT_TYPE, "application/x-git-bundle".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.bundle\""),
                ),
            ],
            bundle,
        )
            .into_response())
    }

    pub(super) async fn push(
        state: &AppState,
        project: &Project,
        body: PushBody,
    ) -> ApiResult<Pushed> {
        let (outcome, branch) = crate::git::push_project(
            state,
            project,
            PushRequest {
                remote_url: body.remote_url,
                branch: body.branch,
                token: body.token,
                remember_token: body.remember_token,
            },
        )
        .await?;
        Ok(Pushed {
            branch,
            head: outcome.head.to_string(),
            commits: outcome.commits,
            objects: outcome.objects,
            up_to_date: outcome.up_to_date,
        })
    }
}

#[cfg(not(feature = "git"))]
mod imp {
    use axum::response::Response;

    use super::{PushBody, Pushed};
    use crate::api::error::ApiResult;
    use crate::app::AppState;
    use crate::domain::Project;
    use crate::error::Error;

    fn missing() -> Error {
        Error::NotReady("this build has no Git support: build with `--features git`".into())
    }

    pub(super) async fn bundle(_: &AppState, _: &Project) -> ApiResult<Response> {
        Err(missing().into())
    }

    pub(super) async fn push(_: &AppState, _: &Project, _: PushBody) -> ApiResult<Pushed> {
        Err(missing().into())
    }
}
