//! Project endpoints: create, list, read, delete, chat, messages, runs, files.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::images::{prepare_uploads, ImageUpload};
use crate::app::AppState;
use crate::domain::{
    is_valid_id, now, ElementSelection, Message, Page, Project, ProjectStatus, Run,
    DEFAULT_TEMPLATE,
};
use crate::error::Error;
use crate::run::{cancel_run, create_and_start, start_run, Prompt};
use crate::sandbox::{FileEntry, ProjectPath, SandboxState};

/// A project as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// The stored project.
    #[serde(flatten)]
    pub project: Project,
    /// Where its live preview is served.
    pub preview_url: String,
    /// The run in progress, if any.
    pub active_run_id: Option<String>,
    /// The newest version's number, if any.
    pub latest_version: Option<i64>,
    /// Its dev server: `ready` or `starting` while awake, `stopped` while
    /// asleep (idle for `APNA_PREVIEW_IDLE_MINUTES`: files kept, the next
    /// preview request or run starts it), `crashed`, `missing`; `null` while
    /// hibernated or when the sandbox could not be asked.
    pub sandbox_state: Option<SandboxState>,
}

/// Body of `POST /api/projects`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    /// What to build: some text that is not only spaces, tabs and line breaks,
    /// at most `APNA_MAX_PROMPT_CHARS` (default 20000) characters. NUL
    /// characters are stored as U+FFFD.
    #[schema(min_length = 1, max_length = 20000, pattern = "[^\\t\\n\\r ]")]
    pub prompt: String,
    /// The starter to begin from (`GET /api/templates` lists them; default `app`).
    #[serde(default)]
    #[schema(schema_with = starter_name_schema)]
    pub template: Option<String>,
    /// Images to go with the prompt (a mock-up, a screenshot): at most 5.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub images: Vec<ImageUpload>,
    /// Accepted for compatibility with the seed and ignored: the user comes from the token.
    #[serde(default, rename = "userId")]
    #[schema(ignore)]
    pub user_id: Option<serde_json::Value>,
}

/// The starter names as an enum, so the document says exactly which are
/// accepted (the catalog is compiled in).
fn starter_name_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    // `null` is listed too: an enum without it would refuse what the server accepts.
    let mut names: Vec<serde_json::Value> = crate::starter::starters()
        .map(|all| all.iter().map(|s| s.name.as_str().into()).collect())
        .unwrap_or_default();
    names.push(serde_json::Value::Null);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(names))
        .description(Some(
            "The starter to begin from (`GET /api/templates` lists them; default `app`).",
        ))
        .examples([serde_json::json!("app")])
        .build()
}

/// Answer of `POST /api/projects`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The new project.
    pub project: ProjectView,
    /// The run generating it.
    pub run_id: String,
}

/// Body of `POST /api/projects/{id}/chat`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// What to change (the same rules as a prompt).
    #[schema(min_length = 1, max_length = 20000, pattern = "[^\\t\\n\\r ]")]
    pub message: String,
    /// Images to go with the message: at most 5.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub images: Vec<ImageUpload>,
    /// The element the person selected in the preview, which the message is about.
    #[serde(default)]
    pub selection: Option<ElementSelection>,
    /// Accepted and ignored (seed compatibility).
    #[serde(default, rename = "userId")]
    #[schema(ignore)]
    pub user_id: Option<serde_json::Value>,
}

/// Answer of `POST /api/projects/{id}/chat`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatStarted {
    /// The run carrying out the message.
    pub run_id: String,
}

/// The largest `offset` a list accepts.
pub const MAX_OFFSET: i64 = 100_000;

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Items to skip (0–100000, default 0).
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<i64>,
}

impl PageQuery {
    /// The page asked for; values outside the documented ranges are refused.
    fn page(&self) -> Result<Page, Error> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        if !(1..=Page::MAX).contains(&limit) {
            return Err(Error::InvalidInput(format!(
                "limit must be between 1 and {}",
                Page::MAX
            )));
        }
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(Error::InvalidInput(format!(
                "offset must be between 0 and {MAX_OFFSET}"
            )));
        }
        Ok(Page::new(limit, offset))
    }
}

/// A page of projects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// Projects, most recently active first.
    pub projects: Vec<ProjectView>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    /// Messages in conversation order.
    pub messages: Vec<Message>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// A project's runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Runs, newest first.
    pub runs: Vec<Run>,
}

/// A project's source files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileTree {
    /// Files, sorted by path.
    pub files: Vec<FileEntry>,
}

/// One file's content.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileContent {
    /// Path relative to the project root.
    pub path: String,
    /// Content (UTF-8; invalid bytes replaced).
    pub content: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file is not valid UTF-8 text.
    pub binary: bool,
}

/// Answer of `DELETE /api/projects/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// Always true.
    pub deleted: bool,
}

fn next_offset(page: Page, got: usize) -> Option<i64> {
    (got as i64 == page.limit).then_some(page.offset + page.limit)
}

/// The caller's project, or 404 (also for other users' and deleted projects).
pub async fn owned_project(state: &AppState, caller: &Caller, id: &str) -> Result<Project, Error> {
    let missing = || Error::NotFound(format!("project {id} not found"));
    if !is_valid_id(id) {
        return Err(missing());
    }
    match state.store.get_project(id).await? {
        Some(p) if p.owner == caller.0 && p.deleted_at.is_none() => Ok(p),
        _ => Err(missing()),
    }
}

/// A project with its preview URL, active run and latest version.
pub async fn view(state: &AppState, project: Project) -> Result<ProjectView, Error> {
    let sandbox_state = if has_sandbox(&project) {
        match state.sandboxes.sandbox(&project.id)?.status().await {
            Ok(st) => Some(st.state),
            Err(e) => {
                tracing::debug!(project_id = %project.id, error = %e, "sandbox status unknown");
                None
            }
        }
    } else {
        None
    };
    let (active_run_id, latest_version) = run_and_version(state, &project).await?;
    Ok(assemble(
        state,
        project,
        active_run_id,
        latest_version,
        sandbox_state,
    ))
}

/// Whether the project may have a sandbox to ask about (hibernated and
/// deleted ones have none: their view says `null`, not `missing`).
fn has_sandbox(project: &Project) -> bool {
    !matches!(
        project.status,
        ProjectStatus::Hibernated | ProjectStatus::Deleted
    )
}

/// The project's active run and newest version number, from the store.
async fn run_and_version(
    state: &AppState,
    project: &Project,
) -> Result<(Option<String>, Option<i64>), Error> {
    // Hibernate, wake and restore hold the lock too; they are not runs.
    let active_run_id = state
        .store
        .run_lock_holder(&project.id)
        .await?
        .filter(|h| !crate::snapshot::is_maintenance_holder(h));
    let latest_version = state
        .store
        .list_versions(&project.id)
        .await?
        .last()
        .map(|v| v.number);
    Ok((active_run_id, latest_version))
}

fn assemble(
    state: &AppState,
    project: Project,
    active_run_id: Option<String>,
    latest_version: Option<i64>,
    sandbox_state: Option<SandboxState>,
) -> ProjectView {
    ProjectView {
        preview_url: state.config.preview_url(&project.id),
        project,
        active_run_id,
        latest_version,
        sandbox_state,
    }
}

/// The sandbox states of a page of projects, read in one call to the
/// provider (on Kubernetes one list of pods, not one request per project).
/// A failed read leaves every state unknown rather than failing the list.
async fn page_states(state: &AppState, projects: &[Project]) -> HashMap<String, SandboxState> {
    let ids: Vec<String> = projects
        .iter()
        .filter(|p| has_sandbox(p))
        .map(|p| p.id.clone())
        .collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    match state.sandboxes.statuses(&ids).await {
        Ok(found) => found.into_iter().map(|(id, st)| (id, st.state)).collect(),
        Err(e) => {
            tracing::debug!(projects = ids.len(), error = %e, "sandbox states unknown");
            HashMap::new()
        }
    }
}

/// Checks a prompt or chat message as the OpenAPI document describes it:
/// something besides spaces, tabs and line breaks, at most `max` characters.
/// NUL becomes U+FFFD (PostgreSQL text cannot hold it; it means nothing in a prompt).
fn check_text(what: &str, text: &str, max: usize) -> Result<String, Error> {
    if text.chars().count() > max {
        return Err(Error::InvalidInput(format!(
            "{what} is longer than {max} characters"
        )));
    }
    let t = text.trim_matches([' ', '\t', '\n', '\r']);
    if t.is_empty() {
        return Err(Error::InvalidInput(format!("{what} must not be empty")));
    }
    Ok(t.replace('\0', "\u{fffd}"))
}

/// Creates a project from a prompt (and up to 5 images) and starts generating it.
#[utoipa::path(post, path = "/api/projects", request_body = CreateProject,
    responses((status = 202, body = Created), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, description = "a cross-site request", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let prompt = check_text("prompt", &body.prompt, state.config.max_prompt_chars)?;
    let template = body.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    crate::starter::find(template)?;
    let prompt = Prompt {
        text: prompt,
        images: prepare_uploads(&body.images).await?,
        selection: None,
    };
    let (project, run) = create_and_start(&state, &caller.0, prompt, template).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Created {
            project: view(&state, project).await?,
            run_id: run.id,
        }),
    ))
}

/// The seed's name for `POST /api/projects`, kept for its clients.
#[utoipa::path(post, path = "/api/projects/create", request_body = CreateProject,
    responses((status = 202, body = Created), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, description = "a cross-site request", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_project_alias(
    state: State<AppState>,
    caller: Caller,
    body: ApiJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    create_project(state, caller, body).await
}

/// The caller's projects, most recently active first.
#[utoipa::path(get, path = "/api/projects", params(PageQuery),
    responses((status = 200, body = ProjectList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ProjectList>> {
    let page = q.page()?;
    let projects = state.store.list_projects(&caller.0, page).await?;
    let next = next_offset(page, projects.len());
    // The store's per-project reads run concurrently with each other and
    // with the one read of the page's sandbox states.
    let (mut states, store_parts) = futures::join!(
        page_states(&state, &projects),
        futures::future::try_join_all(projects.iter().map(|p| run_and_version(&state, p)))
    );
    let views = projects
        .into_iter()
        .zip(store_parts?)
        .map(|(p, (active_run_id, latest_version))| {
            let sandbox_state = states.remove(&p.id);
            assemble(&state, p, active_run_id, latest_version, sandbox_state)
        })
        .collect();
    Ok(Json(ProjectList {
        projects: views,
        next_offset: next,
    }))
}

/// One project. Reading a hibernated project starts waking it (the answer does not wait).
#[utoipa::path(get, path = "/api/projects/{id}", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ProjectView>> {
    let project = owned_project(&state, &caller, &id).await?;
    state.store.touch_project(&id, now()).await?;
    if project.status == ProjectStatus::Hibernated {
        // Only the start of an execution: the answer does not wait for the restore.
        if let Err(e) = crate::project::start_wake(&state, &project).await {
            tracing::warn!(project_id = %id, error = %e, "could not start waking the project");
        }
    }
    Ok(Json(view(&state, project).await?))
}

/// Deletes a project: cancels its run, snapshots it, removes the sandbox, soft-deletes. Idempotent.
#[utoipa::path(delete, path = "/api/projects/{id}", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = Deleted), (status = 403, description = "a cross-site request", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Deleted>> {
    if !is_valid_id(&id) {
        return Err(Error::NotFound(format!("project {id} not found")).into());
    }
    let project = match state.store.get_project(&id).await? {
        Some(p) if p.owner == caller.0 => p,
        _ => return Err(Error::NotFound(format!("project {id} not found")).into()),
    };
    if project.deleted_at.is_some() {
        return Ok(Json(Deleted { deleted: true }));
    }
    // A maintenance hold (hibernate, wake, restore) is not a run to cancel.
    let holder = state.store.run_lock_holder(&id).await?;
    if let Some(run_id) = holder.filter(|h| !crate::snapshot::is_maintenance_holder(h)) {
        cancel_run(&state, &run_id).await?;
    }
    crate::project::remove_sandbox(&state, &project).await?;
    // A deleted project's site stops serving and its address is freed now.
    crate::publish::unpublish(&state, &id, true).await?;
    state.store.soft_delete_project(&id).await?;
    Ok(Json(Deleted { deleted: true }))
}

/// Sends a chat message (with up to 5 images and the element selected in the
/// preview): starts a run that changes the app. 409 while another run is active.
#[utoipa::path(post, path = "/api/projects/{id}/chat", request_body = ChatRequest,
    params(("id" = String, Path, description = "Project id")),
    responses((status = 202, body = ChatStarted), (status = 400, body = ErrorBody),
              (status = 403, description = "a cross-site request", body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> ApiResult<(StatusCode, Json<ChatStarted>)> {
    let message = check_text("message", &body.message, state.config.max_prompt_chars)?;
    let selection = body.selection.map(ElementSelection::checked).transpose()?;
    let project = owned_project(&state, &caller, &id).await?;
    let prompt = Prompt {
        text: message,
        images: prepare_uploads(&body.images).await?,
        selection,
    };
    let run = start_run(&state, &project, prompt).await?;
    Ok((StatusCode::ACCEPTED, Json(ChatStarted { run_id: run.id })))
}

/// The project's conversation, in order.
#[utoipa::path(get, path = "/api/projects/{id}/messages", params(("id" = String, Path, description = "Project id"), PageQuery),
    responses((status = 200, body = MessageList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<MessageList>> {
    owned_project(&state, &caller, &id).await?;
    let page = q.page()?;
    let messages = state.store.list_messages(&id, page).await?;
    let next = next_offset(page, messages.len());
    Ok(Json(MessageList {
        messages,
        next_offset: next,
    }))
}

/// The project's runs, newest first.
#[utoipa::path(get, path = "/api/projects/{id}/runs", params(("id" = String, Path, description = "Project id"), PageQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<RunList>> {
    owned_project(&state, &caller, &id).await?;
    let runs = state.store.list_runs(&id, q.page()?).await?;
    Ok(Json(RunList { runs }))
}

/// The project's source files (from the sandbox, or the latest snapshot while hibernated).
#[utoipa::path(get, path = "/api/projects/{id}/files", params(("id" = String, Path, description = "Project id")),
    responses((status = 200, body = FileTree), (status = 404, body = ErrorBody)))]
pub async fn list_files(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<FileTree>> {
    owned_project(&state, &caller, &id).await?;
    let files = crate::project::list_files(&state, &id).await?;
    Ok(Json(FileTree { files }))
}

/// One file's content.
#[utoipa::path(get, path = "/api/projects/{id}/files/{path}",
    params(("id" = String, Path, description = "Project id"), ("path" = String, Path, description = "File path relative to the project root, e.g. src/App.tsx; a path that cannot name a file (`..`, absolute, control characters) is 404 like a missing file")),
    responses((status = 200, body = FileContent), (status = 404, body = ErrorBody)))]
pub async fn read_file(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> ApiResult<Json<FileContent>> {
    owned_project(&state, &caller, &id).await?;
    // A path that could not name a file of the project (control characters,
    // `..`, absolute) is answered like any missing file, with the reason.
    let path =
        ProjectPath::parse(&path).map_err(|e| Error::NotFound(format!("no such file: {e}")))?;
    if path.is_in_ignored_dir() {
        return Err(Error::NotFound(format!("{path} is not a source file")).into());
    }
    let data = crate::project::read_file(&state, &id, &path).await?;
    let size = data.len() as u64;
    let (content, binary) = match String::from_utf8(data) {
        Ok(s) => (s, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    };
    Ok(Json(FileContent {
        path: path.to_string(),
        content,
        size,
        binary,
    }))
}
