//! What a deploy runs and what a cold start reads, against real services on
//! loopback: secrets from Secrets Manager (moto), the migrate step on
//! PostgreSQL, the UI published to S3 (moto), each custom resource answering
//! CloudFormation at its response URL (a loopback server standing in for the
//! presigned S3 URL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apna::lambda::custom_resource::{self, Request};
use apna::lambda::secrets::{self, Needs};
use axum::routing::put;
use serde_json::{json, Value};

const DATABASE_ONLY_NEEDS: Needs = Needs {
    database: true,
    model_key: false,
    preview_secret: false,
};

/// A Secrets Manager client on moto, and its URL.
async fn secrets_manager() -> Option<(aws_sdk_secretsmanager::Client, String)> {
    let url = apna::testing::services::moto_url()?;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&url)
        .load()
        .await;
    Some((aws_sdk_secretsmanager::Client::new(&conf), url))
}

async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    client
        .create_secret()
        .name(format!("apna/test-{}", uuid::Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn secrets_are_read_at_start_only_where_needed() {
    let Some((client, url)) = secrets_manager().await else {
        return;
    };
    let db = secret(&client, "postgres://apna:s3cret@db.internal:5432/apna").await;
    let key = secret(&client, "sk-ant-test-key\n").await;
    let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let both = vars(&[
        ("DATABASE_SECRET_ARN", &db),
        ("ANTHROPIC_API_KEY_SECRET_ARN", &key),
    ]);

    // The model's function reads both.
    let mut v = both.clone();
    secrets::resolve(
        &mut v,
        Needs {
            database: true,
            model_key: true,
            preview_secret: false,
        },
        Some(&url),
    )
    .await
    .unwrap();
    assert_eq!(
        v["DATABASE_URL"],
        "postgres://apna:s3cret@db.internal:5432/apna"
    );
    assert_eq!(v["ANTHROPIC_API_KEY"], "sk-ant-test-key");

    // Every other function reads the database only, yet still reports a key configured.
    let mut v = both.clone();
    secrets::resolve(
        &mut v,
        Needs {
            database: true,
            model_key: false,
            preview_secret: false,
        },
        Some(&url),
    )
    .await
    .unwrap();
    assert!(!v.contains_key("ANTHROPIC_API_KEY"));
    let config = apna::config::Config::from_vars(v).unwrap();
    assert!(config.model_configured());
    assert!(config.anthropic_api_key.is_none());

    // An RDS-managed secret (username and password only) and the URL's host.
    let managed = secret(&client, r#"{"username":"apna","password":"p@ss"}"#).await;
    let mut v = vars(&[
        ("DATABASE_SECRET_ARN", &managed),
        (
            "DATABASE_URL",
            "postgres://db.internal:5432/apna?sslmode=require",
        ),
    ]);
    secrets::resolve(
        &mut v,
        Needs {
            database: true,
            model_key: false,
            preview_secret: false,
        },
        Some(&url),
    )
    .await
    .unwrap();
    assert_eq!(
        v["DATABASE_URL"],
        "postgres://apna:p%40ss@db.internal:5432/apna?sslmode=require"
    );

    // The preview links' secret: read by api-preview-access only, whose
    // config then signs preview tokens with it.
    let preview = secret(&client, "preview-signing-secret\n").await;
    let with_preview = vars(&[
        ("DATABASE_SECRET_ARN", &db),
        ("PREVIEW_SECRET_ARN", &preview),
    ]);
    let mut v = with_preview.clone();
    secrets::resolve(
        &mut v,
        Needs {
            database: true,
            model_key: false,
            preview_secret: true,
        },
        Some(&url),
    )
    .await
    .unwrap();
    assert_eq!(v["APNA_PREVIEW_SECRET"], "preview-signing-secret");
    let config = apna::config::Config::from_vars(v).unwrap();
    let keys = apna::preview::access::PreviewKeys::from_config(&config)
        .expect("preview keys from the secret");
    let (t, _) = keys
        .issue("p1", "alice", apna::preview::access::TokenUse::Link, 60)
        .unwrap();
    assert!(
        apna::preview::access::PreviewKeys::new("preview-signing-secret")
            .verify(&t, "p1", apna::preview::access::TokenUse::Link)
            .is_ok()
    );
    let mut v = with_preview;
    secrets::resolve(&mut v, DATABASE_ONLY_NEEDS, Some(&url))
        .await
        .unwrap();
    assert!(!v.contains_key("APNA_PREVIEW_SECRET"));

    // A secret that does not exist stops the cold start, named.
    let mut v = vars(&[(
        "DATABASE_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:apna/none-AbCdEf",
    )]);
    let e = secrets::resolve(
        &mut v,
        Needs {
            database: true,
            model_key: false,
            preview_secret: false,
        },
        Some(&url),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("DATABASE_SECRET_ARN: cannot read secret"),
        "{e}"
    );
}

/// A stand-in for the presigned URL CloudFormation waits on: keeps each answer.
async fn response_url() -> (String, Arc<Mutex<Vec<Value>>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let kept = answers.clone();
    let app = axum::Router::new().route(
        "/cfn-response",
        put(move |headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                // The presigned URL is signed without a content type.
                assert!(headers.get("content-type").is_none(), "{headers:?}");
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str::<Value>(&body).unwrap());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cfn-response"), answers)
}

fn request(kind: &str, url: &str, properties: Value) -> Request {
    serde_json::from_value(json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:apna-X",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/apna/1",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "ResourceType": "Custom::Apna",
        "LogicalResourceId": "Resource",
        "PhysicalResourceId": if kind == "Create" { Value::Null } else { json!("apna-x") },
        "ResourceProperties": properties,
    }))
    .unwrap()
}

#[tokio::test]
async fn the_migrate_step_migrates_once_and_answers_cloudformation() {
    let Some((client, moto)) = secrets_manager().await else {
        return;
    };
    let Some(db) = apna::testing::services::fresh_postgres_url().await else {
        return;
    };
    let owner = secret(&client, &db).await;
    let (url, answers) = response_url().await;
    let env: HashMap<String, String> = [
        (
            "DATABASE_SECRET_ARN".to_string(),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-only-AbCdEf".to_string(),
        ),
        ("DATABASE_MIGRATION_SECRET_ARN".to_string(), owner),
    ]
    .into();
    for kind in ["Create", "Update"] {
        let r = request(kind, &url, json!({ "Version": "1" }));
        custom_resource::answer(&r, |r| {
            custom_resource::migrate(r, env.clone(), Some(&moto))
        })
        .await
        .unwrap();
    }
    let got = answers.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for a in &got {
        assert_eq!(a["Status"], "SUCCESS", "{a}");
        assert_eq!(a["PhysicalResourceId"], "apna-migrations");
        assert_eq!(a["LogicalResourceId"], "Resource");
    }
    assert!(!got[0]["Data"]["Applied"].as_array().unwrap().is_empty());
    assert_eq!(
        got[1]["Data"]["Applied"],
        json!([]),
        "the second deploy has nothing to do"
    );
    assert_eq!(got[0]["Data"]["Version"], got[1]["Data"]["Version"]);

    // A failure is answered too (or the stack would wait an hour), with its reason.
    let broken: HashMap<String, String> = [(
        "DATABASE_SECRET_ARN".to_string(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf".to_string(),
    )]
    .into();
    let r = request("Update", &url, json!({}));
    custom_resource::answer(&r, |r| custom_resource::migrate(r, broken, Some(&moto)))
        .await
        .unwrap();
    let a = answers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(a["Status"], "FAILED");
    assert!(
        a["Reason"].as_str().unwrap().contains("cannot read secret"),
        "{a}"
    );
    assert_eq!(
        a["PhysicalResourceId"], "apna-x",
        "a failed update keeps the resource"
    );
}

#[tokio::test]
async fn the_web_ui_is_published_with_the_api_address_and_removed_with_the_stack() {
    let Some(moto) = apna::testing::services::moto_url() else {
        return;
    };
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("apna-web-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("old.js")
        .body(b"stale".to_vec().into())
        .send()
        .await
        .unwrap();
    let (url, answers) = response_url().await;
    let props = json!({ "Bucket": bucket, "ApiBase": "https://abc123.execute-api.us-east-1.amazonaws.com" });
    let r = request("Create", &url, props.clone());
    custom_resource::answer(&r, |r| async { custom_resource::publish_web(r, &s3).await })
        .await
        .unwrap();
    let a = answers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(a["Status"], "SUCCESS", "{a}");

    let keys = |s3: aws_sdk_s3::Client, bucket: String| async move {
        let mut k: Vec<String> = s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        k.sort();
        k
    };
    let mut want: Vec<String> = apna::lambda::site::WEB_FILES
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    want.sort();
    assert_eq!(
        keys(s3.clone(), bucket.clone()).await,
        want,
        "the stale file is gone"
    );
    let index = s3
        .get_object()
        .bucket(&bucket)
        .key("index.html")
        .send()
        .await
        .unwrap();
    assert_eq!(index.content_type(), Some("text/html; charset=utf-8"));
    assert_eq!(index.cache_control(), Some("no-cache"));
    let html = String::from_utf8(index.body.collect().await.unwrap().to_vec()).unwrap();
    assert!(html.contains(
        r#"<meta name="apna-api-base" content="https://abc123.execute-api.us-east-1.amazonaws.com">"#
    ));
    let js = s3
        .get_object()
        .bucket(&bucket)
        .key("auth.js")
        .send()
        .await
        .unwrap();
    assert_eq!(js.content_type(), Some("text/javascript; charset=utf-8"));

    // Deleting the stack empties the bucket so CloudFormation can delete it.
    let r = request("Delete", &url, props);
    custom_resource::answer(&r, |r| async { custom_resource::publish_web(r, &s3).await })
        .await
        .unwrap();
    assert!(keys(s3.clone(), bucket.clone()).await.is_empty());
    // Without its bucket property the request fails, answered as such.
    let r = request("Create", &url, json!({}));
    custom_resource::answer(&r, |r| async { custom_resource::publish_web(r, &s3).await })
        .await
        .unwrap();
    let a = answers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(a["Status"], "FAILED");
    assert!(a["Reason"].as_str().unwrap().contains("Bucket"));
}

#[tokio::test]
async fn a_download_too_large_for_lambda_is_a_link_to_s3() {
    let Some(blobs) = apna::testing::fixtures::s3_blobs().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sandboxes = Arc::new(apna::testing::memory::MemoryProvider::default());
    let backends = apna::app::Backends::new(
        apna::testing::fixtures::config(dir.path(), &[]),
        apna::testing::fixtures::memory_store().await,
        blobs,
        sandboxes.clone(),
        Arc::new(apna::testing::model::NoModel),
    );
    let state = apna::app::AppState::new(
        backends,
        Arc::new(apna::testing::workflow::RecordingWorkflow::default()),
    );
    let p = apna::testing::fixtures::ready_project(&*state.store).await;
    // ~8 MB of base64 noise: the zip stays well over the 4 MiB inline limit.
    let noise: Vec<u8> = (0..6_000_000).map(|_| rand::random::<u8>()).collect();
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(&noise);
    let sb = sandboxes.get(&p.id);
    sb.put("public/big.txt", &big);
    sb.put("src/App.tsx", "export default () => null;\n");
    let get = |accept: &'static str| {
        apna::testing::lambda::http_event(
            "GET",
            &format!("/api/projects/{}/download", p.id),
            Some(&p.owner),
            &[("accept", accept)],
            None,
            json!({ "id": p.id }),
        )
    };

    // The browser UI asks for JSON: a link, which works without a token.
    let a = apna::testing::lambda::invoke(
        "api-download",
        &state,
        &get("application/zip, application/json"),
    )
    .await;
    assert_eq!(a.status, axum::http::StatusCode::OK, "{}", a.body);
    let size = a.body["size"].as_u64().unwrap();
    assert!(
        size > apna::api::versions::INLINE_DOWNLOAD_LIMIT as u64,
        "{size}"
    );
    assert_eq!(a.body["expires_in"], 900);
    let url = a.body["url"].as_str().unwrap();
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let zip = resp.bytes().await.unwrap();
    assert_eq!(zip.len() as u64, size);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("public/big.txt").unwrap(), &mut text)
        .unwrap();
    assert_eq!(text, big);

    // Anything else is redirected there.
    let a = apna::testing::lambda::invoke("api-download", &state, &get("*/*")).await;
    assert_eq!(a.status, axum::http::StatusCode::SEE_OTHER);
    assert!(a.headers["location"]
        .to_str()
        .unwrap()
        .contains("/downloads/"));

    // A small project is still answered inline.
    use apna::sandbox::Sandbox;
    let big_path = apna::sandbox::ProjectPath::parse("public/big.txt").unwrap();
    assert!(sb.delete_file(&big_path).await.unwrap());
    let a = apna::testing::lambda::invoke("api-download", &state, &get("*/*")).await;
    assert_eq!(a.status, axum::http::StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/zip");
}
