//! Publish endpoints: publish a version (or roll back to one), read the
//! site's state, unpublish. The work runs as a workflow (`crate::publish`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use super::projects::owned_project;
use crate::app::AppState;
use crate::domain::Site;
use crate::publish::PublishRequest;

/// Body of `POST /api/projects/{id}/publish`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The version to publish (an older one is a rollback); the newest when absent.
    #[serde(default)]
    pub version: Option<i64>,
    /// The address: `{slug}.{apps domain}`. A DNS label of 3–63 characters;
    /// the current one (or one made from the project's name) when absent;
    /// a new one renames the site, freeing the old one once the new one serves.
    #[serde(default)]
    #[schema(schema_with = slug_schema)]
    pub slug: Option<String>,
}

/// `slug`: the rule `crate::publish::slug::check` applies, so a body the
/// document admits is not refused for its slug.
fn slug_schema() -> utoipa::openapi::schema::Object {
    use crate::publish::slug;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "The address: `{slug}.{apps domain}`. A DNS label of 3–63 lower-case letters, \
             digits and inner hyphens (not `--` in the third and fourth place, not a reserved \
             name); the current one (or one made from the project's name) when absent; a new \
             one renames the site, freeing the old one once the new one serves.",
        ))
        .min_length(Some(slug::MIN_LEN))
        .max_length(Some(slug::MAX_LEN))
        .pattern(Some(slug::pattern()))
        .examples([serde_json::json!("my-app")])
        .build()
}

/// Where a site stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// Nothing serves.
    Unpublished,
    /// A version serves.
    Published,
}

/// A project's published site as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    /// Whether a version serves.
    pub status: SiteStatus,
    /// Where it serves.
    pub url: Option<String>,
    /// Its address label.
    pub slug: Option<String>,
    /// The version that serves.
    pub version: Option<i64>,
    /// When that version was published.
    pub published_at: Option<DateTime<Utc>>,
    /// Whether a publish is in progress.
    pub publishing: bool,
    /// The version the publish in progress will serve.
    pub pending_version: Option<i64>,
    /// The address the publish in progress will serve under.
    pub pending_url: Option<String>,
    /// Why the last publish failed (the previous site kept serving).
    pub error: Option<String>,
}

impl SiteView {
    fn of(state: &AppState, site: &Site) -> Self {
        SiteView {
            status: if site.slug.is_some() {
                SiteStatus::Published
            } else {
                SiteStatus::Unpublished
            },
            url: site.slug.as_deref().map(|s| state.config.site_url(s)),
            slug: site.slug.clone(),
            version: site.version,
            published_at: site.published_at,
            publishing: crate::publish::is_running(site),
            pending_version: site.pending_version,
            pending_url: site
                .pending_slug
                .as_deref()
                .filter(|_| crate::publish::is_running(site))
                .map(|s| state.config.site_url(s)),
            error: site.last_error.clone(),
        }
    }
}

/// Publishes a version as a static site (202: it builds in the background;
/// poll `GET …/publish`). 409 when another publish runs, the slug is taken
/// or the project has no version yet.
#[utoipa::path(post, path = "/api/projects/{id}/publish", request_body = PublishBody,
    params(("id" = String, Path, description = "Project id")),
    responses((status = 202, body = SiteView), (status = 400, body = ErrorBody),
              (status = 403, description = "a cross-site request", body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PublishBody>,
) -> ApiResult<(StatusCode, Json<SiteView>)> {
    let project = owned_project(&state, &caller, &id).await?;
    let site = crate::publish::start(
        &state,
        &project,
        PublishRequest {
            version: body.version,
            slug: body.slug,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(SiteView::of(&state, &site))))
}

/// The project's site: its URL, the version that serves and since when, and
/// a publish in progress.
#[utoipa::path(get, path = "/api/projects/{id}/publish", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = SiteView), (status = 404, body = ErrorBody)))]
pub async fn get_publish(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SiteView>> {
    owned_project(&state, &caller, &id).await?;
    let site = state
        .store
        .get_site(&id)
        .await?
        .unwrap_or_else(|| Site::new(&id));
    Ok(Json(SiteView::of(&state, &site)))
}

/// Takes the site down and frees its address. 409 while a publish runs.
#[utoipa::path(delete, path = "/api/projects/{id}/publish", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = SiteView), (status = 403, description = "a cross-site request", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn unpublish(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SiteView>> {
    owned_project(&state, &caller, &id).await?;
    let site = crate::publish::unpublish(&state, &id, false).await?;
    Ok(Json(SiteView::of(&state, &site)))
}
