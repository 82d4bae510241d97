//! API errors: every failure becomes `{ "error": { "code", "message" } }` with
//! the status its [`Error`] variant stands for. Internal errors are logged with
//! the request id and shown without their details.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `not_found`.
    pub code: String,
    /// What went wrong, for the person.
    pub message: String,
}

/// An [`Error`] on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status for an error (see [`Error::http_status`]).
pub fn status_of(e: &Error) -> StatusCode {
    e.http_status()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let message = if status.is_server_error() {
            tracing::error!(error = %self.0, code = self.0.code(), "request failed");
            match &self.0 {
                Error::NotReady(m) => m.clone(),
                other => format!("{} error; see the server log", other.code()),
            }
        } else {
            self.0.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code().to_string(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Error::TooLarge("request body is too large".into()))
        } else {
            ApiError(Error::InvalidInput(r.body_text()))
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError(Error::InvalidInput(r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError(Error::InvalidInput(r.body_text()))
    }
}

/// `Json` whose rejections use our error shape, for a body that must be a
/// JSON object.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError(Error::TooLarge("request body is too large".into()))
                } else {
                    ApiError(Error::InvalidInput(r.body_text()))
                }
            })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let bytes = integral_floats_as_integers(bytes);
        let Json(value) =
            Json::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state).await?;
        // serde reads a JSON array into a struct field by field (`[null, null]`
        // would be an empty publish request); every body of this API is an object.
        if first != Some(b'{') {
            return Err(ApiError(Error::InvalidInput(
                "the request body must be a JSON object".into(),
            )));
        }
        Ok(ApiJson(value))
    }
}

/// JSON Schema counts `137.0` as an integer and serde does not: such numbers
/// become integers, so a body the document calls valid is read as valid.
fn integral_floats_as_integers(bytes: Bytes) -> Bytes {
    fn fix(v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::Number(n) => match n.as_f64() {
                // Below 2^53 a float is an exact integer.
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    *v = Value::from(f as i64);
                    true
                }
                _ => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |c, x| fix(x) | c),
            Value::Object(fields) => fields.values_mut().fold(false, |c, x| fix(x) | c),
            _ => false,
        }
    }
    if !bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return bytes;
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    if !fix(&mut value) {
        return bytes;
    }
    serde_json::to_vec(&value).map_or(bytes, Bytes::from)
}

/// `Path` whose rejections use our error shape.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejections use our error shape.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(s: &str) -> String {
        String::from_utf8(integral_floats_as_integers(Bytes::from(s.to_string())).to_vec()).unwrap()
    }

    #[test]
    fn integral_floats_become_integers_and_nothing_else_changes() {
        assert_eq!(fixed(r#"{"version": 137.0}"#), r#"{"version":137}"#);
        assert_eq!(
            fixed(r#"{"a": [2e2, {"b": -3.0}]}"#),
            r#"{"a":[200,{"b":-3}]}"#
        );
        for same in [
            r#"{"v": 1.5}"#,
            r#"{"s": "1.0"}"#,
            r#"{"v": 1}"#,
            "{not json 1.0",
            r#"{"v": 1e300}"#,
        ] {
            assert_eq!(fixed(same), same);
        }
    }
}
