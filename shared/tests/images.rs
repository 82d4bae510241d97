//! Issue #21 through the HTTP API: images attached to create and chat, the
//! element selection, "edit text" without the model, and the images' life
//! with their project (owner only, kept through hibernation, purged with it).

use std::io::Cursor;
use std::sync::Arc;

use apna::api::auth::issue_token;
use apna::run::{finish_run, RunEnd};
use apna::store::{PostgresStore, SqliteStore, Store};
use apna::testing::api::{error_code, harness, Harness};
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value};

async fn stores() -> Vec<Arc<dyn Store>> {
    let mut v: Vec<Arc<dyn Store>> = vec![Arc::new(
        SqliteStore::connect("sqlite::memory:").await.unwrap(),
    )];
    if let Some(url) = apna::testing::services::fresh_postgres_url().await {
        v.push(Arc::new(PostgresStore::connect(&url).await.unwrap()));
    }
    v
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A screenshot-like PNG: flat areas and some detail.
fn png(w: u32, h: u32) -> Vec<u8> {
    encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            if y < 60 {
                image::Rgb([30, 41, 59])
            } else {
                image::Rgb([(x % 200) as u8, 250, (y % 100) as u8])
            }
        })),
        image::ImageFormat::Png,
    )
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 90])
        })),
        image::ImageFormat::Jpeg,
    )
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Every object in the harness's blob store under `projects/`.
async fn stored_blobs(h: &Harness) -> Vec<String> {
    h.state.blobs.list("projects/").await.unwrap()
}

async fn project_count(h: &Harness, token: Option<&str>) -> usize {
    let r = h.get("/api/projects", token).await;
    r.body["projects"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_are_stored_with_the_message_and_served_to_their_owner() {
    for store in stores().await {
        let backend = store.backend();
        let h = harness(store, &[]).await;
        let shot = png(1280, 800);
        let photo = jpeg(4000, 3000);
        let body = json!({
            "prompt": "make it look like this",
            "images": [
                { "data": b64(&shot), "name": "shot.png" },
                { "data": format!("data:image/jpeg;base64,{}", b64(&photo)) },
            ],
        });
        let r = h.post("/api/projects", None, &body.to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{backend}: {}", r.text);
        let id = r.body["project"]["id"].as_str().unwrap().to_string();

        // The message: two stored images first, then the text.
        let r = h.get(&format!("/api/projects/{id}/messages"), None).await;
        let content = r.body["messages"][0]["content"].as_array().unwrap().clone();
        assert_eq!(content.len(), 3, "{content:?}");
        assert_eq!(
            content[2],
            json!({"type": "text", "text": "make it look like this"})
        );
        let first = &content[0]["source"];
        assert_eq!(first["type"], "stored");
        assert_eq!(first["media_type"], "image/png");
        assert_eq!(
            (first["width"].as_u64(), first["height"].as_u64()),
            (Some(1280), Some(800))
        );
        assert_eq!(first["id"], apna::blob::sha256_hex(&shot));
        // The 4000×3000 photo was scaled to what the model takes.
        let second = &content[1]["source"];
        assert_eq!(second["media_type"], "image/jpeg");
        let (w, h2) = (
            second["width"].as_u64().unwrap(),
            second["height"].as_u64().unwrap(),
        );
        assert!(w <= 1568 && w * h2 <= 1092 * 1092, "{w}×{h2}");
        assert!(w * h2 / 750 <= 1600);

        // Served back byte for byte with its type, to the owner.
        let image_id = first["id"].as_str().unwrap();
        let r = h
            .call(
                "GET",
                &format!("/api/projects/{id}/images/{image_id}"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "image/png");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(stored_blobs(&h).await.len(), 2);
        // Unknown and malformed ids: 404.
        for bad in ["0".repeat(64), "../latest".into(), "ABC".into()] {
            let r = h
                .get(&format!("/api/projects/{id}/images/{bad}"), None)
                .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {}", r.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_images_are_refused_and_nothing_is_stored() {
    for store in stores().await {
        let h = harness(store, &[]).await;
        let ok = b64(&png(20, 20));
        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend_from_slice(b"this is a text file pretending to be a PNG");
        let mut huge = png(20, 20);
        huge.resize(5 * 1024 * 1024 + 10, 0);
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"/>"#;
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (
                json!([{ "data": b64(svg), "name": "logo.png" }]),
                StatusCode::BAD_REQUEST,
                "not a PNG, JPEG, WebP or GIF",
            ),
            (
                json!([{ "data": b64(b"%PDF-1.7 ...") }]),
                StatusCode::BAD_REQUEST,
                "not a PNG, JPEG, WebP or GIF",
            ),
            (
                json!([{ "data": b64(&fake_png), "name": "shot.png" }]),
                StatusCode::BAD_REQUEST,
                "not a valid one",
            ),
            (
                json!([{ "data": b64(&huge) }]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "5 MB",
            ),
            (
                json!([{ "data": "not base64!!" }]),
                StatusCode::BAD_REQUEST,
                "not valid base64",
            ),
            (json!([{ "data": "" }]), StatusCode::BAD_REQUEST, "empty"),
            (
                json!(vec![json!({ "data": ok }); 6]),
                StatusCode::BAD_REQUEST,
                "at most 5 images",
            ),
            // One good image does not let a bad one through.
            (
                json!([{ "data": ok }, { "data": b64(svg) }]),
                StatusCode::BAD_REQUEST,
                "image 2",
            ),
        ];
        for (images, status, words) in &cases {
            let r = h
                .post(
                    "/api/projects",
                    None,
                    &json!({ "prompt": "an app", "images": images }).to_string(),
                )
                .await;
            assert_eq!(r.status, *status, "{words}: {}", r.text);
            error_code(&r);
            assert!(r.text.contains(words), "{words}: {}", r.text);
        }
        assert_eq!(project_count(&h, None).await, 0, "no project was created");
        assert!(stored_blobs(&h).await.is_empty(), "no image was stored");

        // The same on chat: no run, no message, no blob.
        let r = h
            .post("/api/projects", None, r#"{"prompt": "an app"}"#)
            .await;
        let id = r.body["project"]["id"].as_str().unwrap().to_string();
        let run_id = r.body["run_id"].as_str().unwrap().to_string();
        finish_run(
            &h.state,
            &run_id,
            RunEnd::Succeeded {
                summary: "ok".into(),
            },
        )
        .await
        .unwrap();
        for (images, status, words) in &cases {
            let r = h
                .post(
                    &format!("/api/projects/{id}/chat"),
                    None,
                    &json!({ "message": "like this", "images": images }).to_string(),
                )
                .await;
            assert_eq!(r.status, *status, "{words}: {}", r.text);
        }
        // A malformed selection is refused the same way.
        for sel in [
            json!({"source": "App.tsx", "tag": "h1"}),
            json!({"source": "src/App.tsx:0:5", "tag": "h1"}),
            json!({"source": "src/App.tsx:1:1", "tag": "<script>"}),
            json!({"source": "src/App.tsx:1:1", "tag": "h1", "text": "x".repeat(1001)}),
        ] {
            let r = h
                .post(
                    &format!("/api/projects/{id}/chat"),
                    None,
                    &json!({ "message": "make it red", "selection": sel }).to_string(),
                )
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{sel}: {}", r.text);
            assert!(r.text.contains("selection"), "{}", r.text);
        }
        let r = h.get(&format!("/api/projects/{id}/messages"), None).await;
        assert_eq!(r.body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(
            h.get(&format!("/api/projects/{id}/runs"), None).await.body["runs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(stored_blobs(&h).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_carries_images_and_the_selected_element() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let r = h
        .post("/api/projects", None, r#"{"prompt": "an app"}"#)
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    finish_run(
        &h.state,
        &run_id,
        RunEnd::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();
    let selection = json!({
        "source": "src/App.tsx:12:9",
        "tag": "h1",
        "classes": "text-3xl font-bold",
        "text": "Habit Tracker",
    });
    let r = h
        .post(
            &format!("/api/projects/{id}/chat"),
            None,
            &json!({
                "message": "make it red",
                "selection": selection,
                "images": [{ "data": b64(&png(64, 64)) }],
            })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = h.get(&format!("/api/projects/{id}/messages"), None).await;
    let content = &r.body["messages"][1]["content"];
    assert_eq!(content[0]["type"], "image");
    assert_eq!(
        content[1],
        json!({"type": "selection", "selection": selection})
    );
    assert_eq!(content[2]["text"], "make it red");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_user_cannot_read_a_projects_images() {
    for store in stores().await {
        let h = harness(store, &[("APNA_JWT_SECRET", "test-secret")]).await;
        let alice =
            issue_token("test-secret", &format!("alice-{}", uuid::Uuid::new_v4()), 1).unwrap();
        let bob = issue_token("test-secret", &format!("bob-{}", uuid::Uuid::new_v4()), 1).unwrap();
        let shot = png(100, 50);
        let r = h
            .post(
                "/api/projects",
                Some(&alice),
                &json!({ "prompt": "alice's app", "images": [{ "data": b64(&shot) }] }).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let id = r.body["project"]["id"].as_str().unwrap().to_string();
        let uri = format!(
            "/api/projects/{id}/images/{}",
            apna::blob::sha256_hex(&shot)
        );
        assert_eq!(h.get(&uri, Some(&alice)).await.status, StatusCode::OK);
        let r = h.get(&uri, Some(&bob)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(error_code(&r), "not_found");
        assert_eq!(h.get(&uri, None).await.status, StatusCode::UNAUTHORIZED);
        // Bob's own project with the same image id does not reach Alice's copy.
        let (bob_project, _) = {
            let r = h
                .post("/api/projects", Some(&bob), r#"{"prompt": "bob's app"}"#)
                .await;
            (r.body["project"]["id"].as_str().unwrap().to_string(), ())
        };
        let r = h
            .get(
                &format!(
                    "/api/projects/{bob_project}/images/{}",
                    apna::blob::sha256_hex(&shot)
                ),
                Some(&bob),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_survive_hibernation_and_go_with_the_purge() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[("APNA_DELETED_RETENTION_DAYS", "0")],
    )
    .await;
    let shot = png(320, 200);
    let r = h
        .post(
            "/api/projects",
            None,
            &json!({ "prompt": "an app", "images": [{ "data": b64(&shot) }] }).to_string(),
        )
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let (store, blobs) = (h.state.store.clone(), h.state.blobs.clone());
    let sb = h.sandboxes.get(&id);
    sb.put(
        "src/App.tsx",
        "export default function App() { return <h1>hi</h1> }\n",
    );
    apna::snapshot::record_version(&*store, &*blobs, &sb, &id, Some(&run_id), "first")
        .await
        .unwrap();
    finish_run(
        &h.state,
        &run_id,
        RunEnd::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();
    let uri = format!(
        "/api/projects/{id}/images/{}",
        apna::blob::sha256_hex(&shot)
    );

    let out = apna::snapshot::hibernate_project(&*store, &*blobs, &*h.sandboxes, &id)
        .await
        .unwrap();
    assert!(
        matches!(out, apna::snapshot::HibernateOutcome::Hibernated { .. }),
        "{out:?}"
    );
    let r = h.call("GET", &uri, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "readable while hibernated");
    apna::project::wake(&h.state, &id).await.unwrap();
    assert_eq!(
        store
            .get_project(&id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "ready"
    );
    let r = h.call("GET", &uri, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "and after the wake");
    // The conversation still refers to it, so the next run sends it again.
    let messages = apna::agent::conversation::load_messages(&*store, &id)
        .await
        .unwrap();
    let model_msgs = apna::agent::conversation::to_model_messages(&messages, "later-run");
    assert_eq!(apna::agent::safety::image_tokens(&model_msgs), 86);

    // Deleted, then purged: the image goes with every other blob of the project.
    assert_eq!(
        h.call("DELETE", &format!("/api/projects/{id}"), None, None)
            .await
            .status,
        StatusCode::OK
    );
    assert!(blobs
        .head(&apna::images::image_key(
            &id,
            &apna::blob::sha256_hex(&shot)
        ))
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let report = apna::project::purge_deleted(&h.state, 10).await.unwrap();
    assert_eq!(report.purged, vec![id.clone()]);
    assert!(blobs
        .list(&format!("projects/{id}/"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edit_text_changes_the_literal_and_records_a_version() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let r = h
        .post("/api/projects", None, r#"{"prompt": "an app"}"#)
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let sb = h.sandboxes.get(&id);
    let app = "export default function App() {\n  return (\n    <main>\n      <h1 className=\"text-3xl\">Habit Trackr</h1>\n      <p>{n} done</p>\n    </main>\n  );\n}\n";
    sb.put("src/App.tsx", app);
    apna::snapshot::record_version(
        &*h.state.store,
        &*h.state.blobs,
        &sb,
        &id,
        Some(&run_id),
        "first",
    )
    .await
    .unwrap();

    // While the run holds the project: 409, nothing changed.
    let edit = json!({"source": "src/App.tsx:4:7", "old_text": "Habit Trackr", "new_text": "Habit Tracker"});
    let uri = format!("/api/projects/{id}/text-edit");
    let r = h.post(&uri, None, &edit.to_string()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    finish_run(
        &h.state,
        &run_id,
        RunEnd::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();

    let r = h.post(&uri, None, &edit.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["version"]["number"], 2);
    assert_eq!(r.body["file_diff"]["added"], 1);
    assert_eq!(r.body["file_diff"]["removed"], 1);
    assert!(sb
        .file("src/App.tsx")
        .unwrap()
        .contains("<h1 className=\"text-3xl\">Habit Tracker</h1>"));
    let r = h.get(&format!("/api/projects/{id}/versions"), None).await;
    assert!(r.text.contains("Edited text in src/App.tsx"), "{}", r.text);
    // No model, no run: the project has still one run.
    let r = h.get(&format!("/api/projects/{id}/runs"), None).await;
    assert_eq!(r.body["runs"].as_array().unwrap().len(), 1);

    // Not exact: clear errors, the file untouched.
    let before = sb.file("src/App.tsx").unwrap();
    for (body, status) in [
        (
            json!({"source": "src/App.tsx:5:7", "old_text": "3 done", "new_text": "x"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"source": "src/App.tsx:4:7", "old_text": "Habit Trackr", "new_text": "again"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"source": "src/App.tsx:4:7", "old_text": "Habit Tracker", "new_text": "<b>x</b>"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"source": "../etc/passwd:1:1", "old_text": "a", "new_text": "b"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"source": "src/Nope.tsx:1:1", "old_text": "a", "new_text": "b"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"source": "nonsense", "old_text": "a", "new_text": "b"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = h.post(&uri, None, &body.to_string()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        error_code(&r);
    }
    assert_eq!(sb.file("src/App.tsx").unwrap(), before);
}

/// The patterns `openapi.json` states for a selection, a text edit and an
/// image are the server's own rules, so a body the schema admits is not
/// refused for them (tests/schemathesis.toml keeps only what no schema can
/// say: whether the bytes are an image).
mod schema_rules {
    use apna::domain::{source_location, MAX_SOURCE_CHARS};
    use apna::snapshot::replace_element_text;
    use base64::Engine;
    use proptest::prelude::*;
    use regex::Regex;
    use serde_json::Value;

    fn schemas() -> Value {
        let doc: Value = serde_json::from_str(&apna::api::openapi::document()).unwrap();
        doc["components"]["schemas"].clone()
    }

    fn pattern(schema: &str, field: &str) -> String {
        schemas()[schema]["properties"][field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema}.{field} has a pattern"))
            .to_string()
    }

    fn source_re() -> Regex {
        let p = pattern("ElementSelection", "source");
        assert_eq!(
            p,
            pattern("TextEdit", "source"),
            "one rule for both sources"
        );
        assert_eq!(p, apna::domain::SOURCE_PATTERN);
        Regex::new(&p).unwrap()
    }

    /// The pattern without its anchors, for proptest's generator.
    fn unanchored(p: &str) -> String {
        p.trim_start_matches('^').trim_end_matches('$').to_string()
    }

    const APP: &str =
        "export default function App() {\n  return <h1 className=\"t\">Hello</h1>;\n}\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_source_the_schema_admits_is_accepted(
            s in proptest::string::string_regex(&unanchored(apna::domain::SOURCE_PATTERN)).unwrap()
        ) {
            prop_assume!(s.chars().count() <= MAX_SOURCE_CHARS);
            let (path, _, _) = source_location(&s).expect("accepted");
            prop_assert!(apna::sandbox::ProjectPath::parse(path).is_ok(), "{s:?}");
        }

        #[test]
        fn a_source_is_accepted_exactly_when_the_schema_admits_it(
            s in "[a-z0-9/.:~\\\\ \\x00\\x7f\\u{85}é-]{0,14}"
        ) {
            let re = source_re();
            let schema = re.is_match(&s) && s.chars().count() <= MAX_SOURCE_CHARS;
            prop_assert_eq!(schema, source_location(&s).is_some(), "{:?}", s);
        }

        #[test]
        fn new_text_is_refused_exactly_when_the_schema_refuses_it(
            s in "[a-z {}<>\\t\\n\\u{85}\\u{a0}\\u{2003}\\u{3000}\\u{feff}]{1,6}"
        ) {
            let re = Regex::new(&pattern("TextEdit", "new_text")).unwrap();
            let done = replace_element_text(APP, 2, 10, "Hello", &s);
            prop_assert_eq!(re.is_match(&s), done.is_ok(), "{:?}: {:?}", s, done);
        }

        #[test]
        fn image_data_decodes_exactly_when_the_schema_admits_it(
            bytes in proptest::collection::vec(any::<u8>(), 0..12),
            noise in "[A-Za-z0-9+/=]{0,9}",
            prefix in proptest::option::of("data:[a-z/;0-9]{0,12},")
        ) {
            let re = Regex::new(&pattern("ImageUpload", "data")).unwrap();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            for b64 in [encoded, noise.clone()] {
                let data = format!("{}{b64}", prefix.clone().unwrap_or_default());
                let decodes = base64::engine::general_purpose::STANDARD.decode(&b64).is_ok();
                prop_assert_eq!(re.is_match(&data), decodes, "{:?}", data);
            }
        }
    }

    #[test]
    fn template_names_are_the_starters() {
        let schemas = schemas();
        let names: Vec<Value> = apna::starter::starters()
            .unwrap()
            .iter()
            .map(|s| Value::from(s.name.clone()))
            .chain([Value::Null])
            .collect();
        assert_eq!(
            schemas["CreateProject"]["properties"]["template"]["enum"],
            Value::Array(names)
        );
    }
}
