//! `POST /preview-wake/{id}`: what a preview's waking page calls. Caddy serves
//! that page when a project's preview does not answer (a hibernated project
//! has no pod, nor has one in light sleep); the page asks here for the
//! project to be woken, then reloads once the preview answers.
//!
//! Public (the page has no API token; the project id is the preview's host
//! name anyway), idempotent (one wake execution per hibernation, see
//! [`crate::project::start_wake`]) and throttled by API Gateway on AWS. Only
//! the project's own preview origin may read the answer (the page sends its
//! cookies, so the answer names that origin and allows credentials).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiPath, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{is_valid_id, ProjectStatus};
use crate::error::Error;

/// Answer of `POST /preview-wake/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WakeAnswer {
    /// `waking` when a wake is under way, else the project's status.
    pub status: String,
}

/// Starts waking a hibernated or sleeping project for its preview page. 202 while it
/// wakes, 200 with the status when there is nothing to wake, 404 for unknown
/// or deleted projects.
#[utoipa::path(post, path = "/preview-wake/{id}", params(("id" = String, Path, description = "Project id")),
    responses((status = 202, body = WakeAnswer), (status = 200, body = WakeAnswer), (status = 404, body = ErrorBody)))]
pub async fn preview_wake(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let missing = || Error::NotFound(format!("project {id} not found"));
    if !is_valid_id(&id) {
        return Err(missing().into());
    }
    let project = match state.store.get_project(&id).await? {
        Some(p) if p.deleted_at.is_none() => p,
        _ => return Err(missing().into()),
    };
    let (code, status) = if project.status == ProjectStatus::Hibernated {
        crate::project::start_wake(&state, &project).await?;
        (StatusCode::ACCEPTED, "waking".to_string())
    } else if project.status != ProjectStatus::Deleted && asleep(&state, &id).await? {
        // Light sleep: the files are in place; starting the dev server (on
        // kube: creating the pod on the kept volume) is a few API calls and
        // does not wait for it to serve.
        state.sandboxes.sandbox(&id)?.ensure().await?;
        (StatusCode::ACCEPTED, "waking".to_string())
    } else {
        (StatusCode::OK, project.status.as_str().to_string())
    };
    let mut resp = (code, Json(WakeAnswer { status })).into_response();
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = headers.get(header::ORIGIN) {
        if is_preview_origin(&state.config, &id, origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
    Ok(resp)
}

/// Whether the project's dev server is stopped with its files kept (light sleep).
async fn asleep(state: &AppState, project_id: &str) -> Result<bool, Error> {
    let st = state.sandboxes.sandbox(project_id)?.status().await?;
    Ok(st.state == crate::sandbox::SandboxState::Stopped)
}

/// Whether `origin` is the project's own preview origin (`https://{id}.{CADDY_DOMAIN}`,
/// or `http://{id}.localhost:{PORT}` for `apna serve`).
fn is_preview_origin(config: &Config, project_id: &str, origin: &HeaderValue) -> bool {
    let preview = config.preview_url(project_id);
    origin.as_bytes() == preview.trim_end_matches('/').as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_projects_own_preview_origin() {
        let dir = std::path::Path::new("/tmp");
        let local = crate::config::Config::from_vars(
            [("APNA_DATA_DIR", dir.to_str().unwrap_or("/tmp"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap();
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_preview_origin(
            &local,
            "abc",
            &v("http://abc.localhost:3000")
        ));
        assert!(!is_preview_origin(
            &local,
            "abc",
            &v("http://abd.localhost:3000")
        ));
        assert!(!is_preview_origin(
            &local,
            "abc",
            &v("http://abc.localhost:3000.evil.example")
        ));
        let aws = crate::config::Config::from_vars(
            [("CADDY_DOMAIN", "preview.example.com")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap();
        assert!(is_preview_origin(
            &aws,
            "abc",
            &v("https://abc.preview.example.com")
        ));
        assert!(!is_preview_origin(
            &aws,
            "abc",
            &v("http://abc.preview.example.com")
        ));
        assert!(!is_preview_origin(
            &aws,
            "abc",
            &v("https://x.abc.preview.example.com")
        ));
    }
}
