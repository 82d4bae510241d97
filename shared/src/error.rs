//! The library's one error type.
//!
//! Every seam (store, blob store, sandbox, model, workflow) reports failures as
//! an [`Error`]; the API maps each variant to exactly one HTTP status and the
//! JSON shape `{ "error": { "code", "message" } }`. Messages are written for the
//! person (or the model) who will read them and never contain secrets.

/// Result with the library's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Apna, grouped by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or breaks a rule (HTTP 400).
    #[error("{0}")]
    InvalidInput(String),
    /// No credentials, or credentials that do not verify (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// The thing does not exist, or belongs to someone else (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with current state, e.g. a run is already active (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// A per-user cap was reached (HTTP 429).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The sandbox or another dependency is not ready yet (HTTP 503).
    #[error("{0}")]
    NotReady(String),
    /// A setting from the environment is missing or malformed.
    #[error("{var}: {message}")]
    Config {
        /// The environment variable at fault.
        var: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The database failed.
    #[error("store: {0}")]
    Store(String),
    /// The object store failed.
    #[error("blob store: {0}")]
    Blob(String),
    /// The sandbox failed (process, pod, file system inside it).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The model API failed after retries, or answered something unusable.
    #[error("model: {0}")]
    Model(String),
    /// A workflow definition or execution failed.
    #[error("workflow: {0}")]
    Workflow(String),
    /// A local I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or an unexpected state; the message is logged, not shown verbatim to users.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// A short machine-readable code, used as `error.code` in API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::Unauthorized(_) => "unauthorized",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "payload_too_large",
            Error::QuotaExceeded(_) => "quota_exceeded",
            Error::NotReady(_) => "not_ready",
            Error::Config { .. } => "config",
            Error::Store(_) => "store",
            Error::Blob(_) => "blob",
            Error::Sandbox(_) => "sandbox",
            Error::Model(_) => "model",
            Error::Workflow(_) => "workflow",
            Error::Io(_) => "io",
            Error::Internal(_) => "internal",
        }
    }

    /// The one HTTP status this kind of error answers with (the API's and sandboxd's).
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Model(_) | Error::Blob(_) | Error::Store(_) | Error::Sandbox(_) => {
                StatusCode::BAD_GATEWAY
            }
            Error::Config { .. } | Error::Workflow(_) | Error::Io(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::NotReady(_) | Error::Store(_) | Error::Blob(_) | Error::Io(_)
        )
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => Error::NotFound("not found".into()),
            other => Error::Store(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Store(format!("migration failed: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::InvalidInput(format!("invalid JSON: {e}"))
    }
}
