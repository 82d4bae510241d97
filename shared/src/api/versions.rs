//! Version endpoints: list, diff against the previous version, restore (a
//! restore is itself a new version), and download the source as a zip.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use super::projects::owned_project;
use crate::app::AppState;
use crate::domain::{FileDiff, Screenshot, Version};
use crate::error::Error;

/// A project's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// Oldest first.
    pub versions: Vec<Version>,
}

/// A version's changes against the one before it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiffView {
    /// The version.
    pub number: i64,
    /// All changes as one unified diff.
    pub diff: String,
    /// Per-file changes.
    pub file_diffs: Vec<FileDiff>,
}

/// Answer of a restore.
#[derive(Debug, Serialize, ToSchema)]
pub struct Restored {
    /// The new version holding the restored files.
    pub version: Version,
}

/// The project's versions, oldest first.
#[utoipa::path(get, path = "/api/projects/{id}/versions", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<VersionList>> {
    owned_project(&state, &caller, &id).await?;
    let versions = state.store.list_versions(&id).await?;
    Ok(Json(VersionList { versions }))
}

/// Version `n` as a unified diff against version `n - 1`.
#[utoipa::path(get, path = "/api/projects/{id}/versions/{n}/diff",
    params(("id" = String, Path, description = "Project id"), ("n" = i64, Path, minimum = 1, description = "Version number")),
    responses((status = 200, body = VersionDiffView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn version_diff(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(String, i64)>,
) -> ApiResult<Json<VersionDiffView>> {
    owned_project(&state, &caller, &id).await?;
    let d = crate::snapshot::version_diff(&*state.store, &*state.blobs, &id, n).await?;
    Ok(Json(VersionDiffView {
        number: d.number,
        diff: d.diff,
        file_diffs: d.file_diffs,
    }))
}

/// Puts version `n`'s files back, recorded as a new version. 409 while a run is active.
#[utoipa::path(post, path = "/api/projects/{id}/versions/{n}/restore",
    params(("id" = String, Path, description = "Project id"), ("n" = i64, Path, minimum = 1, description = "Version number"),
           ("X-Apna-Request" = String, Header, description = "Any value: a POST without a JSON body must carry it (a cross-site form cannot)")),
    responses((status = 202, body = Restored), (status = 400, body = ErrorBody),
              (status = 403, description = "a cross-site request, or no X-Apna-Request header", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(String, i64)>,
) -> ApiResult<(StatusCode, Json<Restored>)> {
    owned_project(&state, &caller, &id).await?;
    let sandbox = state.sandboxes.sandbox(&id)?;
    let version =
        crate::snapshot::restore_version(&*state.store, &*state.blobs, &*sandbox, &id, n).await?;
    state.store.touch_project(&id, crate::domain::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(Restored { version })))
}

/// A version's screenshot as PNG (named by its SHA-256, so it never changes).
#[utoipa::path(get, path = "/api/projects/{id}/screenshots/{sha256}",
    params(("id" = String, Path, description = "Project id"), ("sha256" = String, Path, description = "The screenshot's SHA-256, as a version lists it", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, description = "The PNG", content_type = "image/png"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn screenshot(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, sha256)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    owned_project(&state, &caller, &id).await?;
    if !Screenshot::is_valid_sha256(&sha256) {
        return Err(Error::InvalidInput(format!(
            "{sha256:?} is not a screenshot name (64 lowercase hex digits)"
        ))
        .into());
    }
    let key = Screenshot::blob_key(&id, &sha256);
    if state.blobs.head(&key).await?.is_none() {
        return Err(Error::NotFound("no such screenshot".into()).into());
    }
    let png = state.blobs.get(&key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            // Content-addressed: the same name is always the same picture.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        png,
    )
        .into_response())
}

/// Largest archive sent in the answer itself. A Lambda answers at most 6 MB,
/// and a binary body goes base64-encoded (4/3 larger): 4 MiB of zip is 5.6 MB
/// on the wire, 5 MB would not fit.
pub const INLINE_DOWNLOAD_LIMIT: usize = 4 * 1024 * 1024;

/// How long the link to a large archive works.
const DOWNLOAD_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Where a large archive waits for its download (the bucket expires them).
fn download_key(project_id: &str) -> String {
    format!("downloads/{project_id}/{}.zip", uuid::Uuid::new_v4())
}

/// A link to a project archive too large to send in the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadLink {
    /// Where to GET the zip (no token needed; it expires).
    pub url: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// Seconds until the link stops working.
    pub expires_in: u64,
}

/// The project's current source as a zip. Archives over 4 MiB, where the
/// blob store can hand out links (S3), are answered with a link instead:
/// `303 See Other` to it, or the link as JSON when the request accepts
/// `application/json` (the browser UI, which cannot read a cross-origin
/// redirect).
#[utoipa::path(get, path = "/api/projects/{id}/download", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, description = "the source tree as application/zip, or (asked with Accept: application/json) a link to a large archive",
               content((Vec<u8> = "application/zip"), (DownloadLink = "application/json"))),
              (status = 303, description = "a large archive: its link in Location"),
              (status = 404, body = ErrorBody),
              (status = 409, description = "the project has no files yet", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let project = owned_project(&state, &caller, &id).await?;
    let tree = crate::project::current_tree(&state, &id).await?;
    if tree.files.is_empty() {
        // The project is there; there is nothing to zip yet (a 404 would say it is not).
        return Err(Error::Conflict("the project has no files yet".into()).into());
    }
    let zip = crate::snapshot::zip_tree(&tree)?;
    let filename = format!("{}.zip", file_name(&project.name));
    if zip.len() > INLINE_DOWNLOAD_LIMIT {
        let key = download_key(&id);
        if let Some(url) = state
            .blobs
            .presigned_get(&key, DOWNLOAD_LINK_TTL, &filename)
            .await?
        {
            let size = zip.len() as u64;
            state.blobs.put(&key, zip.into()).await?;
            let wants_json = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"));
            if wants_json {
                return Ok(Json(DownloadLink {
                    url,
                    size,
                    expires_in: DOWNLOAD_LINK_TTL.as_secs(),
                })
                .into_response());
            }
            return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response());
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        zip,
    )
        .into_response())
}

/// A project name as a download's file name: lower-case ASCII words joined by
/// hyphens (`apna-app` when nothing is left).
pub fn file_name(project_name: &str) -> String {
    let name = project_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if name.is_empty() {
        "apna-app".to_string()
    } else {
        name
    }
}

/// "Edit text" on an element selected in the preview: changes the element's
/// literal text in its source file without the model, recorded as a new
/// version. 409 while a run is active or when the text is not a literal there.
#[utoipa::path(post, path = "/api/projects/{id}/text-edit", request_body = crate::snapshot::TextEdit,
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = crate::snapshot::TextEdited), (status = 400, body = ErrorBody),
              (status = 403, description = "a cross-site request", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn text_edit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(edit): ApiJson<crate::snapshot::TextEdit>,
) -> ApiResult<Json<crate::snapshot::TextEdited>> {
    owned_project(&state, &caller, &id).await?;
    let sandbox = state.sandboxes.sandbox(&id)?;
    let edited =
        crate::snapshot::edit_text(&*state.store, &*state.blobs, &*sandbox, &id, &edit).await?;
    state.store.touch_project(&id, crate::domain::now()).await?;
    Ok(Json(edited))
}
