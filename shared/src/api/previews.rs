//! Preview access endpoints: the URL the UI opens for a project's preview
//! (with a short-lived signed token when the preview is private), and
//! sharing a preview with anyone who has its link. See `preview::access`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use super::projects::{owned_project, view, ProjectView};
use crate::app::AppState;
use crate::error::Error;
use crate::preview::access::{TokenUse, AUTH_PATH, LINK_TTL_SECS};

/// Answer of `GET /api/projects/{id}/preview-access`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewAccess {
    /// What to open: the preview itself, or for a private preview in
    /// multi-user mode its sign-in link carrying `token`.
    pub url: String,
    /// The preview's own address (what a share link points at).
    pub preview_url: String,
    /// The link token (HMAC over project, user and expiry), when one is needed.
    pub token: Option<String>,
    /// When `token` stops working (it is exchanged for a cookie at once).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether anyone with the link may open the preview.
    pub public: bool,
}

/// Body of `PUT /api/projects/{id}/share`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ShareRequest {
    /// `true`: anyone with the preview's link may open it; `false`: only the owner.
    pub public: bool,
}

/// How to open the project's preview. In multi-user mode a private preview
/// needs the owner's token: open `url` (it sets a cookie on the preview host
/// and redirects to the app).
#[utoipa::path(get, path = "/api/projects/{id}/preview-access",
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = PreviewAccess), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview_access(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<PreviewAccess>> {
    let project = owned_project(&state, &caller, &id).await?;
    let preview_url = state.config.preview_url(&id);
    let keys = crate::preview::access::PreviewKeys::from_config(&state.config);
    let (url, token, expires_at) = match keys {
        Some(keys) if !project.preview_public => {
            let (token, exp) = keys.issue(&id, &caller.0, TokenUse::Link, LINK_TTL_SECS)?;
            let url = format!(
                "{}{}?token={token}",
                preview_url.trim_end_matches('/'),
                AUTH_PATH
            );
            let expires = Utc
                .timestamp_opt(exp, 0)
                .single()
                .ok_or_else(|| Error::Internal("token expiry out of range".into()))?;
            (url, Some(token), Some(expires))
        }
        // Single-user previews are open on loopback; public ones to everyone.
        _ => (preview_url.clone(), None, None),
    };
    Ok(Json(PreviewAccess {
        url,
        preview_url,
        token,
        expires_at,
        public: project.preview_public,
    }))
}

/// Shares the project's preview with anyone who has its link, or makes it
/// the owner's again. Only matters in multi-user mode.
#[utoipa::path(put, path = "/api/projects/{id}/share", request_body = ShareRequest,
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, description = "a cross-site request", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn share(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> ApiResult<Json<ProjectView>> {
    owned_project(&state, &caller, &id).await?;
    if !state.store.set_preview_public(&id, body.public).await? {
        return Err(Error::NotFound(format!("project {id} not found")).into());
    }
    tracing::info!(project_id = %id, public = body.public, "preview sharing changed");
    let project = owned_project(&state, &caller, &id).await?;
    Ok(Json(view(&state, project).await?))
}
