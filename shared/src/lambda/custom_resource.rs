//! What `sam deploy` runs through CloudFormation custom resources: the
//! PostgreSQL migrations (once per deploy, as the role that owns the schema)
//! and the browser UI's publication to the web bucket (with the API's address).
//!
//! CloudFormation invokes the function with a request and waits for an answer
//! PUT to the request's presigned `ResponseURL`; an answer must be sent for
//! every request, failures included, or the stack waits an hour.

use std::collections::HashMap;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::secrets::{self, Needs};
use super::site::{published, WEB_FILES};
use crate::error::{Error, Result};

/// A CloudFormation custom resource request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    /// `Create`, `Update` or `Delete`.
    pub request_type: String,
    /// Where the answer goes (a presigned S3 URL).
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack.
    pub stack_id: String,
    /// This request.
    pub request_id: String,
    /// The resource's name in the template.
    pub logical_resource_id: String,
    /// The id the resource got when created (absent on Create).
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    /// The resource's properties in the template.
    #[serde(default)]
    pub resource_properties: HashMap<String, Value>,
}

/// The answer CloudFormation reads.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Response<'a> {
    status: &'a str,
    reason: String,
    physical_resource_id: String,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    data: Value,
}

/// What a custom resource's work returned: its physical id and outputs.
pub struct Done {
    /// The resource's id (kept the same across updates, so nothing is replaced).
    pub physical_id: String,
    /// Values `!GetAtt Resource.Name` reads.
    pub data: Value,
}

/// Runs `work` for `request` and PUTs the answer (success, or failure with
/// the error as the reason) to its `ResponseURL`.
pub async fn answer<F, Fut>(request: &Request, work: F) -> Result<Value>
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Done>>,
{
    let fallback_id = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| request.logical_resource_id.clone());
    let (status, reason, physical_id, data) = match work(request.clone()).await {
        Ok(done) => ("SUCCESS", String::new(), done.physical_id, done.data),
        Err(e) => {
            tracing::error!(request = %request.request_type, error = %e, "custom resource failed");
            // CloudFormation shows the reason in the stack's events.
            let reason: String = e.to_string().chars().take(1000).collect();
            ("FAILED", reason, fallback_id, Value::Null)
        }
    };
    let body = serde_json::to_string(&Response {
        status,
        reason,
        physical_resource_id: physical_id,
        stack_id: &request.stack_id,
        request_id: &request.request_id,
        logical_resource_id: &request.logical_resource_id,
        data: data.clone(),
    })?;
    // The presigned URL is signed without a content type: send none.
    let resp = reqwest::Client::new()
        .put(&request.response_url)
        .body(body)
        .send()
        .await
        .map_err(|e| Error::Internal(format!("answering CloudFormation: {e}")))?;
    if !resp.status().is_success() {
        return Err(Error::Internal(format!(
            "CloudFormation's response URL answered {}",
            resp.status()
        )));
    }
    Ok(json!({ "status": status, "data": data }))
}

fn property<'a>(request: &'a Request, name: &str) -> Result<&'a str> {
    request
        .resource_properties
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::InvalidInput(format!("custom resource property {name} is missing")))
}

/// The migrate step: applies the PostgreSQL migrations as the schema's owner
/// (`DATABASE_MIGRATION_SECRET_ARN`, else `DATABASE_SECRET_ARN`). Deleting
/// the resource changes nothing: the data outlives the stack. `vars` is the
/// function's environment.
pub async fn migrate(
    request: Request,
    mut vars: HashMap<String, String>,
    secrets_endpoint: Option<&str>,
) -> Result<Done> {
    let physical_id = "apna-migrations".to_string();
    if request.request_type == "Delete" {
        return Ok(Done {
            physical_id,
            data: Value::Null,
        });
    }
    if let Some(owner) = vars
        .get("DATABASE_MIGRATION_SECRET_ARN")
        .filter(|v| !v.is_empty())
        .cloned()
    {
        vars.insert(secrets::DATABASE_SECRET_ARN.into(), owner);
    }
    secrets::resolve(
        &mut vars,
        Needs {
            database: true,
            model_key: false,
            preview_secret: false,
        },
        secrets_endpoint,
    )
    .await?;
    let url = vars
        .get("DATABASE_URL")
        .cloned()
        .ok_or_else(|| Error::Config {
            var: "DATABASE_URL",
            message: "the migrate step needs the database (DatabaseSecretArn)".into(),
        })?;
    let migrated = crate::store::migrate(&url).await?;
    tracing::info!(?migrated, "migrations applied");
    Ok(Done {
        physical_id,
        data: json!({
            "Version": migrated.as_ref().map_or(0, |m| m.version),
            "Applied": migrated.map(|m| m.applied).unwrap_or_default(),
        }),
    })
}

/// Publishes `web/` to the bucket (`Bucket` property) with the API's address
/// (`ApiBase`) in `index.html`, and removes files a newer UI no longer has.
/// Deleting the resource empties the bucket, so the stack can delete it.
pub async fn publish_web(request: Request, s3: &aws_sdk_s3::Client) -> Result<Done> {
    let bucket = property(&request, "Bucket")?.to_string();
    let physical_id = format!("apna-web-{bucket}");
    let existing = list(s3, &bucket).await?;
    if request.request_type == "Delete" {
        for key in existing {
            delete(s3, &bucket, &key).await?;
        }
        return Ok(Done {
            physical_id,
            data: Value::Null,
        });
    }
    let api_base = property(&request, "ApiBase")?;
    for file in WEB_FILES {
        s3.put_object()
            .bucket(&bucket)
            .key(file.name)
            .content_type(file.content_type)
            // No hashed names: browsers and CloudFront revalidate every file.
            .cache_control("no-cache")
            .body(ByteStream::from(published(file, api_base)))
            .send()
            .await
            .map_err(|e| {
                Error::Blob(format!(
                    "PutObject {}: {}",
                    file.name,
                    DisplayErrorContext(&e)
                ))
            })?;
    }
    for key in existing {
        if !WEB_FILES.iter().any(|f| f.name == key) {
            delete(s3, &bucket, &key).await?;
        }
    }
    Ok(Done {
        physical_id,
        data: json!({ "Files": WEB_FILES.len() }),
    })
}

async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::Blob(format!("ListObjectsV2: {}", DisplayErrorContext(&e))))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(keys),
        }
    }
}

async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::Blob(format!("DeleteObject {key}: {}", DisplayErrorContext(&e))))?;
    Ok(())
}
