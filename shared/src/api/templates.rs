//! The starters a new project can begin from: `GET /api/templates` and each
//! one's preview image. Public, like `/api/config`: they describe the product,
//! not anyone's data, and an `<img>` cannot send a token.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiPath, ApiResult, ErrorBody};
use crate::domain::DEFAULT_TEMPLATE;
use crate::starter::{self, Starter};

/// One starter as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// The name to send as `template` in `POST /api/projects`.
    pub name: String,
    /// Short title.
    pub title: String,
    /// What it is good for.
    pub description: String,
    /// Example prompts to start from.
    pub prompt_hints: Vec<String>,
    /// Path of its preview image (PNG), relative to the API's origin.
    pub preview_url: String,
    /// Whether a project naming no template gets this one.
    pub default: bool,
}

/// Answer of `GET /api/templates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Every starter, the default first.
    pub templates: Vec<TemplateView>,
}

fn view(s: &Starter) -> TemplateView {
    TemplateView {
        name: s.name.clone(),
        title: s.title.clone(),
        description: s.description.clone(),
        prompt_hints: s.prompt_hints.clone(),
        preview_url: format!("/api/templates/{}/preview.png", s.name),
        default: s.name == DEFAULT_TEMPLATE,
    }
}

/// The starters a project can begin from.
#[utoipa::path(get, path = "/api/templates", responses((status = 200, body = TemplateList)))]
pub async fn list_templates() -> ApiResult<Json<TemplateList>> {
    Ok(Json(TemplateList {
        templates: starter::starters()?.iter().map(view).collect(),
    }))
}

/// A starter's preview image.
#[utoipa::path(get, path = "/api/templates/{name}/preview.png",
    params(("name" = String, Path, description = "Starter name")),
    responses((status = 200, description = "PNG screenshot of the starter", content_type = "image/png"),
              (status = 404, body = ErrorBody)))]
pub async fn preview(ApiPath(name): ApiPath<String>) -> ApiResult<Response> {
    let s = starter::find(&name)
        .map_err(|_| crate::error::Error::NotFound(format!("no template called {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            // Compiled in: it changes only with a new build.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        s.preview,
    )
        .into_response())
}
