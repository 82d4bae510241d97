//! Who may open a preview in multi-user mode (`APNA_JWT_SECRET` set).
//!
//! A project's preview (its dev server: the app, the HMR socket, `/@fs`,
//! source maps) is the owner's unless the owner made it public. The UI asks
//! the API for a short-lived *link token* (HMAC over project, user and
//! expiry) and opens `{preview}/__apna/auth?token=…`; the proxy checks it,
//! sets a host-only, HttpOnly cookie holding a longer-lived *session token*
//! for that project only, and redirects to `/`. Every later request of the
//! preview (modules, the HMR WebSocket) carries the cookie.
//!
//! Tokens are HS256 JWTs under a key derived from `APNA_JWT_SECRET`, so a
//! preview token can never pass as an API token (or the other way round),
//! and each names the project it opens. The cookie is stripped before a
//! request reaches the dev server, which runs code the model wrote.
//!
//! The cookie is `SameSite=None; Secure; Partitioned`: the UI
//! (`localhost:3000`) embeds the preview (`{id}.localhost:3000`) in an
//! iframe, and browsers count those as different sites, so a `Lax` cookie
//! would not be sent inside the frame, and browsers that block third-party
//! cookies (Chromium does) keep only partitioned ones (CHIPS): the cookie
//! then lives under the UI's site, and a preview opened in its own tab signs
//! in through a fresh link of its own. Browsers accept `Secure` cookies on
//! `*.localhost` over plain HTTP.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};

/// How long a link token (in the UI's iframe URL) is valid.
pub const LINK_TTL_SECS: i64 = 300;
/// How long the preview cookie is valid.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// The preview host path that exchanges a link token for the cookie.
pub const AUTH_PATH: &str = "/__apna/auth";
/// The cookie's name.
pub const COOKIE: &str = "apna_preview";

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// In the URL the UI opens; exchanged for a session at once.
    Link,
    /// In the preview host's cookie.
    Session,
}

#[derive(Debug, Serialize, Deserialize)]
struct PreviewClaims {
    sub: String,
    prj: String,
    exp: i64,
    #[serde(rename = "use")]
    token_use: TokenUse,
}

/// Signs and checks preview tokens; built from `APNA_JWT_SECRET`.
#[derive(Clone)]
pub struct PreviewKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for PreviewKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreviewKeys(<secret>)")
    }
}

/// Why a token was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Past its expiry.
    Expired,
    /// Bad signature, malformed, for another project or another use.
    Invalid,
}

impl PreviewKeys {
    /// The keys `config` names (see [`Config::preview_key_secret`]); `None`
    /// when previews are open (single-user).
    pub fn from_config(config: &Config) -> Option<Self> {
        config.preview_key_secret().map(PreviewKeys::new)
    }

    /// Keys derived from the API token secret (never the secret itself).
    pub fn new(jwt_secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"apna preview token key v1\0");
        h.update(jwt_secret.as_bytes());
        PreviewKeys {
            key: h.finalize().into(),
        }
    }

    /// A token letting `user` open `project_id`'s preview for `ttl_secs`.
    pub fn issue(
        &self,
        project_id: &str,
        user: &str,
        token_use: TokenUse,
        ttl_secs: i64,
    ) -> Result<(String, i64)> {
        let exp = Utc::now().timestamp() + ttl_secs;
        let claims = PreviewClaims {
            sub: user.to_string(),
            prj: project_id.to_string(),
            exp,
            token_use,
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.key),
        )
        .map_err(|e| Error::Internal(format!("signing preview token: {e}")))?;
        Ok((token, exp))
    }

    /// The user a token was issued to, if it is valid for `project_id` and `token_use`.
    pub fn verify(
        &self,
        token: &str,
        project_id: &str,
        token_use: TokenUse,
    ) -> std::result::Result<String, TokenRefusal> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = decode::<PreviewClaims>(token, &DecodingKey::from_secret(&self.key), &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenRefusal::Expired,
                _ => TokenRefusal::Invalid,
            })?;
        let c = data.claims;
        if c.prj != project_id || c.token_use != token_use || c.sub.is_empty() {
            return Err(TokenRefusal::Invalid);
        }
        Ok(c.sub)
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Cookie` header without cookie `name` (`None` when nothing is left).
pub fn without_cookie(cookie_header: &str, name: &str) -> Option<String> {
    let rest: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|kv| !kv.is_empty() && kv.split_once('=').is_none_or(|(k, _)| k != name))
        .collect();
    (!rest.is_empty()).then(|| rest.join("; "))
}

/// The session token in a request's `apna_preview` cookie, if any.
pub fn session_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| cookie_value(c, COOKIE))
}

/// The request's other cookies, one `Cookie` value per header it sent, for
/// the dev server: the preview cookie is Apna's, not the app's (the dev
/// server runs code the model wrote and never sees it).
pub fn app_cookies(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| without_cookie(c, COOKIE))
        .collect()
}

/// The `Set-Cookie` value holding a session token (host-only: no `Domain`).
pub fn session_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={SESSION_TTL_SECS}; HttpOnly; Secure; SameSite=None; Partitioned"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_project_use_and_key() {
        let keys = PreviewKeys::new("s3cret");
        let (link, _) = keys.issue("p1", "alice", TokenUse::Link, 60).unwrap();
        assert_eq!(keys.verify(&link, "p1", TokenUse::Link), Ok("alice".into()));
        assert_eq!(
            keys.verify(&link, "p2", TokenUse::Link),
            Err(TokenRefusal::Invalid)
        );
        assert_eq!(
            keys.verify(&link, "p1", TokenUse::Session),
            Err(TokenRefusal::Invalid)
        );
        assert_eq!(
            PreviewKeys::new("other").verify(&link, "p1", TokenUse::Link),
            Err(TokenRefusal::Invalid)
        );
        let (old, _) = keys.issue("p1", "alice", TokenUse::Link, -10).unwrap();
        assert_eq!(
            keys.verify(&old, "p1", TokenUse::Link),
            Err(TokenRefusal::Expired)
        );
        // A preview token is not an API token, nor is an API token a preview token.
        assert!(crate::api::auth::verify_token("s3cret", &link).is_err());
        let api = crate::api::auth::issue_token("s3cret", "alice", 1).unwrap();
        assert_eq!(
            keys.verify(&api, "p1", TokenUse::Link),
            Err(TokenRefusal::Invalid)
        );
    }

    #[test]
    fn cookies_are_found_and_stripped() {
        let h = "a=1; apna_preview=tok; b=2";
        assert_eq!(cookie_value(h, COOKIE), Some("tok"));
        assert_eq!(without_cookie(h, COOKIE).as_deref(), Some("a=1; b=2"));
        assert_eq!(without_cookie("apna_preview=x", COOKIE), None);
        assert_eq!(cookie_value("x=1", COOKIE), None);
    }
}
