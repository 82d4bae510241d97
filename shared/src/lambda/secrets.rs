//! Secrets read when a function starts, not put in its environment.
//!
//! The template gives functions the ARN of a secret (readable by anyone who
//! may read the function's configuration, and harmless), and the function's
//! role may read only the secrets it uses. A cold start reads each once and
//! keeps it for the life of the instance, so a rotated secret reaches new
//! instances without a redeploy.
//!
//! * `DATABASE_SECRET_ARN`: the PostgreSQL URL, or an RDS-style JSON secret
//!   (`username`, `password`, and optionally `host`, `port`, `dbname`) whose
//!   missing parts come from `DATABASE_URL` (`postgres://host:5432/apna?sslmode=require`).
//!   Becomes `DATABASE_URL`.
//! * `ANTHROPIC_API_KEY_SECRET_ARN`: the Anthropic key, read only by the
//!   functions that call the model; becomes `ANTHROPIC_API_KEY`. Elsewhere
//!   the ARN alone tells `/healthz` and `/api/config` that a key is configured.
//! * `PREVIEW_SECRET_ARN`: the secret preview links are signed with, read
//!   only by api-preview-access; becomes `APNA_PREVIEW_SECRET`. The preview
//!   gate next to Caddy checks them with the same value (infra/k8s/caddy.yaml).

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The variable naming the database secret.
pub const DATABASE_SECRET_ARN: &str = "DATABASE_SECRET_ARN";
/// The variable naming the model key's secret.
pub const MODEL_KEY_SECRET_ARN: &str = "ANTHROPIC_API_KEY_SECRET_ARN";

/// The variable naming the preview links' secret.
pub const PREVIEW_SECRET_ARN: &str = "PREVIEW_SECRET_ARN";

/// Which secrets a function reads at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The database URL (every function that opens the store).
    pub database: bool,
    /// The model key (only functions that call the model).
    pub model_key: bool,
    /// The preview links' secret (only api-preview-access).
    pub preview_secret: bool,
}

/// Reads the secrets `needs` names whose ARN is set in `vars`, and puts their
/// values where [`crate::config::Config`] reads them. `endpoint` overrides
/// Secrets Manager's (tests: moto).
pub async fn resolve(
    vars: &mut HashMap<String, String>,
    needs: Needs,
    endpoint: Option<&str>,
) -> Result<()> {
    let wanted = |var: &str, needed: bool| {
        needed
            .then(|| vars.get(var).filter(|v| !v.trim().is_empty()).cloned())
            .flatten()
    };
    let database = wanted(DATABASE_SECRET_ARN, needs.database);
    let model_key = wanted(MODEL_KEY_SECRET_ARN, needs.model_key);
    let preview = wanted(PREVIEW_SECRET_ARN, needs.preview_secret);
    if database.is_none() && model_key.is_none() && preview.is_none() {
        return Ok(());
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&loader.load().await)
            .interceptor(crate::xray::aws::XRayInterceptor::from_env())
            .build(),
    );
    if let Some(arn) = database {
        let secret = read(&client, DATABASE_SECRET_ARN, &arn).await?;
        let url = database_url(&secret, vars.get("DATABASE_URL").map(String::as_str))?;
        vars.insert("DATABASE_URL".into(), url);
    }
    if let Some(arn) = model_key {
        let key = read(&client, MODEL_KEY_SECRET_ARN, &arn).await?;
        vars.insert("ANTHROPIC_API_KEY".into(), key.trim().to_string());
    }
    if let Some(arn) = preview {
        let secret = read(&client, PREVIEW_SECRET_ARN, &arn).await?;
        vars.insert("APNA_PREVIEW_SECRET".into(), secret.trim().to_string());
    }
    Ok(())
}

async fn read(
    client: &aws_sdk_secretsmanager::Client,
    var: &'static str,
    arn: &str,
) -> Result<String> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| Error::Config {
            var,
            message: format!("cannot read secret {arn}: {}", DisplayErrorContext(&e)),
        })?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| Error::Config {
            var,
            message: format!("secret {arn} has no SecretString"),
        })
}

/// The JSON form of a database secret (what RDS and its rotation functions store).
#[derive(Deserialize)]
struct DbSecret {
    username: String,
    password: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<serde_json::Value>,
    #[serde(default)]
    dbname: Option<String>,
}

/// The PostgreSQL URL from a secret's value: a URL as it is, or a JSON secret
/// completed from `base` (`DATABASE_URL` without credentials).
pub fn database_url(secret: &str, base: Option<&str>) -> Result<String> {
    let bad = |message: String| Error::Config {
        var: DATABASE_SECRET_ARN,
        message,
    };
    let secret = secret.trim();
    if secret.starts_with("postgres://") || secret.starts_with("postgresql://") {
        return Ok(secret.to_string());
    }
    let s: DbSecret = serde_json::from_str(secret).map_err(|_| {
        bad(
            "the secret is neither a postgres:// URL nor a JSON object with username and password"
                .into(),
        )
    })?;
    let mut url = match base.filter(|b| !b.trim().is_empty()) {
        Some(b) => url::Url::parse(b.trim())
            .map_err(|e| bad(format!("DATABASE_URL {b:?} is not a URL: {e}")))?,
        None => {
            url::Url::parse("postgres://localhost:5432/postgres").map_err(|e| bad(e.to_string()))?
        }
    };
    let host = s.host.or_else(|| {
        base.filter(|b| !b.trim().is_empty())
            .and(url.host_str().map(str::to_string))
    });
    let Some(host) = host else {
        return Err(bad(
            "the JSON secret has no host: give it one, or set DATABASE_URL (the template's DatabaseUrl) to postgres://HOST:5432/DB?sslmode=require"
                .into(),
        ));
    };
    url.set_host(Some(&host))
        .map_err(|e| bad(format!("host {host:?}: {e}")))?;
    if let Some(port) = s.port {
        let port = match port {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(p) => p.parse().ok(),
            _ => None,
        }
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| bad("the secret's port is not a port number".into()))?;
        let _ = url.set_port(Some(port));
    }
    if let Some(db) = s.dbname {
        url.set_path(&db);
    }
    url.set_username(&s.username)
        .and_then(|_| url.set_password(Some(&s.password)))
        .map_err(|_| bad("cannot put the credentials into the URL".into()))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pass_through_and_rds_json_is_completed() {
        assert_eq!(
            database_url(" postgres://u:p@h/db ", None).unwrap(),
            "postgres://u:p@h/db"
        );
        // An RDS-managed master secret: username and password only.
        let managed = r#"{"username":"apna","password":"p@ss:/w?rd"}"#;
        let url = database_url(
            managed,
            Some("postgres://db.example.com:5432/apna?sslmode=require"),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://apna:p%40ss%3A%2Fw%3Frd@db.example.com:5432/apna?sslmode=require"
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(urlencoding_decode(parsed.password().unwrap()), "p@ss:/w?rd");
        // A rotation-style secret names its own host, port and database.
        let full = r#"{"engine":"postgres","host":"h2","port":6543,"dbname":"prod","username":"u","password":"p"}"#;
        assert_eq!(
            database_url(full, Some("postgres://ignored:5432/x?sslmode=require")).unwrap(),
            "postgres://u:p@h2:6543/prod?sslmode=require"
        );
        assert_eq!(
            database_url(
                r#"{"host":"h","port":"5433","username":"u","password":"p"}"#,
                None
            )
            .unwrap(),
            "postgres://u:p@h:5433/postgres"
        );
    }

    #[test]
    fn bad_secrets_are_named_without_their_value() {
        for (secret, base) in [
            ("hunter2", None),
            (r#"{"user":"x"}"#, None),
            (r#"{"username":"u","password":"hunter2"}"#, None),
            (
                r#"{"username":"u","password":"hunter2","port":"http"}"#,
                Some("postgres://h/db"),
            ),
        ] {
            let e = database_url(secret, base).unwrap_err().to_string();
            assert!(e.starts_with("DATABASE_SECRET_ARN:"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    fn urlencoding_decode(s: &str) -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}
