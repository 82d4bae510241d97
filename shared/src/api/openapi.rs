//! The OpenAPI 3.1 document, generated from the handlers' annotations. The
//! committed `openapi.json` at the repository root must equal it (a test checks).

use axum::Json;
use utoipa::OpenApi;

use super::{
    error, git, health, images, previews, projects, publish, runs, templates, versions, wake,
    ClientConfig,
};
use crate::domain;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Apna API",
        description = "Self-hostable AI app builder: projects, chat runs, files, versions, published sites, Git."
    ),
    paths(
        health::healthz,
        super::client_config,
        templates::list_templates,
        templates::preview,
        projects::create_project,
        projects::create_project_alias,
        projects::list_projects,
        projects::get_project,
        projects::delete_project,
        projects::chat,
        projects::list_messages,
        projects::list_runs,
        projects::list_files,
        projects::read_file,
        images::get_image,
        runs::get_run,
        runs::cancel,
        runs::events,
        versions::list_versions,
        versions::version_diff,
        versions::restore_version,
        versions::download,
        versions::text_edit,
        publish::publish,
        publish::get_publish,
        publish::unpublish,
        git::bundle,
        git::push,
        previews::preview_access,
        previews::share,
        wake::preview_wake,
        versions::screenshot,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        health::Health,
        health::Backend,
        ClientConfig,
        templates::TemplateList,
        templates::TemplateView,
        crate::config::OidcClient,
        projects::ProjectView,
        projects::CreateProject,
        projects::Created,
        projects::ChatRequest,
        images::ImageUpload,
        projects::ChatStarted,
        projects::ProjectList,
        projects::MessageList,
        projects::RunList,
        projects::FileTree,
        projects::FileContent,
        projects::Deleted,
        runs::RunView,
        runs::StepItem,
        runs::Cancelled,
        runs::EventBatch,
        versions::VersionList,
        versions::VersionDiffView,
        versions::Restored,
        publish::PublishBody,
        publish::SiteStatus,
        publish::SiteView,
        git::PushBody,
        git::Pushed,
        previews::PreviewAccess,
        previews::ShareRequest,
        versions::DownloadLink,
        wake::WakeAnswer,
        domain::Project,
        domain::ProjectStatus,
        domain::Run,
        domain::RunStatus,
        domain::Usage,
        domain::RunEvent,
        domain::Message,
        domain::Role,
        domain::ContentBlock,
        domain::ImageSource,
        domain::ImageRef,
        domain::ElementSelection,
        crate::snapshot::TextEdit,
        crate::snapshot::TextEdited,
        domain::FileDiff,
        domain::FileAction,
        domain::Version,
        domain::Screenshot,
    ))
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// `GET /api/openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
