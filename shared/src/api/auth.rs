//! Who is calling.
//!
//! Three ways, in order: behind API Gateway the HTTP API's JWT authorizer has
//! already validated the token and the Lambda adapter puts its `sub` in a
//! [`GatewayCaller`] extension; with `APNA_JWT_SECRET` set, `apna serve`
//! verifies HS256 bearer tokens itself; with neither, `apna serve` runs
//! single-user (only allowed on loopback) and everyone is [`LOCAL_USER`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::app::AppState;
use crate::error::{Error, Result};

pub use crate::domain::LOCAL_USER;

/// The caller's user id, as validated by API Gateway (set by the Lambda adapter).
#[derive(Debug, Clone)]
pub struct GatewayCaller(pub String);

/// Marks a request that must carry a [`GatewayCaller`] (Lambda behind API
/// Gateway): without one it is refused rather than treated as single-user.
#[derive(Debug, Clone, Copy)]
pub struct RequireGatewayCaller;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Claims of the tokens `apna token` issues.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
}

/// Signs an HS256 token for `user`, valid for `hours`.
pub fn issue_token(secret: &str, user: &str, hours: i64) -> Result<String> {
    if user.is_empty() || user.len() > 128 {
        return Err(Error::InvalidInput(
            "user must be 1 to 128 characters".into(),
        ));
    }
    let now = Utc::now().timestamp();
    let claims = Claims {
        sub: user.to_string(),
        iat: now,
        exp: now + hours * 3600,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Internal(format!("signing token: {e}")))
}

/// Verifies an HS256 token and returns its subject.
pub fn verify_token(secret: &str, token: &str) -> Result<String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        let why = match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
            ErrorKind::InvalidSignature => "the token's signature does not verify",
            _ => "the token is malformed",
        };
        Error::Unauthorized(format!(
            "{why}; get a new one with `apna token --user NAME`"
        ))
    })?;
    if data.claims.sub.is_empty() {
        return Err(Error::Unauthorized("the token has no subject".into()));
    }
    Ok(data.claims.sub)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        if let Some(GatewayCaller(sub)) = parts.extensions.get::<GatewayCaller>() {
            return Ok(Caller(sub.clone()));
        }
        if parts.extensions.get::<RequireGatewayCaller>().is_some() {
            return Err(ApiError(Error::Unauthorized(
                "no validated caller: API Gateway's JWT authorizer must run before this function"
                    .into(),
            )));
        }
        let Some(secret) = state.config.jwt_secret.as_deref() else {
            return Ok(Caller(LOCAL_USER.to_string()));
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError(Error::Unauthorized(
                    "missing Authorization: Bearer <token> header".into(),
                ))
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError(Error::Unauthorized(
                    "Authorization must be `Bearer <token>`".into(),
                ))
            })?;
        Ok(Caller(verify_token(secret, token.trim())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_fail_clearly() {
        let t = issue_token("s3cret", "alice", 1).unwrap();
        assert_eq!(verify_token("s3cret", &t).unwrap(), "alice");
        assert!(verify_token("other", &t)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        let expired = issue_token("s3cret", "alice", -1).unwrap();
        assert!(verify_token("s3cret", &expired)
            .unwrap_err()
            .to_string()
            .contains("expired"));
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "a".into(),
                exp: Utc::now().timestamp() + 60,
                iat: 0,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(verify_token("s3cret", &hs512)
            .unwrap_err()
            .to_string()
            .contains("HS256"));
        assert!(verify_token("s3cret", "not.a.token").is_err());
    }
}
