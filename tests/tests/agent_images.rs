//! Issue #21: a person's screenshot and selected element reach the model
//! (Anthropic and Bedrock) as an image block and structured context, survive
//! as references in the store, and the scripted model edits exactly the
//! selected line and copies the image into the project.

use std::io::Cursor;

use apna::domain::{ContentBlock, ElementSelection, ImageSource, NewMessage, Role};
use apna_tests::agent_harness::AgentHarness;
use apna_tests::mock_anthropic::{validate_request, Script};
use base64::Engine;

const APP: &str = "export default function App() {\n  return (\n    <main className=\"min-h-screen bg-slate-50 p-8\">\n      <h1 className=\"text-3xl font-bold\">Habit Tracker</h1>\n      <p className=\"text-slate-500\">Tick a habit when it is done.</p>\n      <h1 className=\"text-3xl font-bold\">Habit Tracker</h1>\n    </main>\n  );\n}\n";

fn screenshot() -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(1280, 800, |x, y| {
        if y < 80 {
            image::Rgb([220, 38, 38])
        } else {
            image::Rgb([248, 250, (x / 10 % 256) as u8 ^ (y / 10 % 256) as u8])
        }
    }));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The fixture with the stored image's id in place of `IMAGE_ID`.
fn script(image_id: &str) -> Script {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/conversations/image_selection.json");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("IMAGE_ID", image_id);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    Script::from_file(file.path()).unwrap()
}

async fn converse(bedrock: bool) {
    let png = screenshot();
    let prepared = apna::images::prepare(&png, "image 1").unwrap();
    let image_id = prepared.meta.id.clone();
    let h = if bedrock {
        AgentHarness::with_bedrock(script(&image_id), true).await
    } else {
        AgentHarness::new(script(&image_id)).await
    }
    .unwrap();
    h.sandbox.put("src/App.tsx", APP);
    let refs = apna::images::store(&*h.blobs, &h.project.id, &[prepared])
        .await
        .unwrap();
    let selection = ElementSelection {
        source: "src/App.tsx:4:7".into(),
        tag: "h1".into(),
        classes: "text-3xl font-bold".into(),
        text: "Habit Tracker".into(),
    };
    h.store
        .append_messages(
            &h.project.id,
            &[NewMessage {
                run_id: Some(h.run.id.clone()),
                role: Role::User,
                content: vec![
                    ContentBlock::Image {
                        source: ImageSource::Stored(refs[0].clone()),
                    },
                    ContentBlock::Selection { selection },
                    ContentBlock::Text {
                        text: "make it red".into(),
                    },
                ],
                tool_calls: vec![],
                file_diffs: vec![],
            }],
        )
        .await
        .unwrap();

    let outcomes = h.run_until_done(1, 6).await.unwrap();
    assert!(outcomes.last().unwrap().done, "{outcomes:?}");

    // Every request was valid for the API and carried the image as base64
    // PNG, byte for byte, and the selection as text, before the person's words.
    let requests = h.mock.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let mut body = r.body.clone();
        if bedrock {
            // Bedrock takes the model from the URL, not the body.
            body["model"] = "bedrock".into();
        }
        validate_request(&body).unwrap();
        let first = &r.body["messages"][0]["content"];
        let image = first
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "image")
            .expect("an image block");
        assert_eq!(image["source"]["type"], "base64");
        assert_eq!(image["source"]["media_type"], "image/png");
        let data = base64::engine::general_purpose::STANDARD
            .decode(image["source"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, png);
        let text: Vec<&str> = first
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
        let joined = text.join("\n");
        assert!(
            joined.contains(&format!("image {image_id} (1280×800 image/png)")),
            "{joined}"
        );
        assert!(
            joined.contains("<selected_element source=\"src/App.tsx:4:7\" tag=\"h1\" class=\"text-3xl font-bold\">Habit Tracker</selected_element>"),
            "{joined}"
        );
        assert!(joined.contains("src/App.tsx line 4, column 7"), "{joined}");
        assert!(joined.ends_with("make it red"), "{joined}");
    }
    // The mock counted the image as the API documents: 1280 × 800 / 750.
    assert!(
        outcomes[0].usage.input_tokens >= 1366,
        "{:?}",
        outcomes[0].usage
    );

    // Exactly the selected line changed; its twin two lines down did not.
    let after = h.sandbox.file("src/App.tsx").unwrap();
    let (old, new): (Vec<&str>, Vec<&str>) = (APP.lines().collect(), after.lines().collect());
    assert_eq!(old.len(), new.len());
    let changed: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
    assert_eq!(changed, vec![3], "{after}");
    assert!(new[3].contains("text-red-600"));
    // And the screenshot is in the project, byte for byte.
    use apna::sandbox::Sandbox;
    let copied = h
        .sandbox
        .read_file(&apna::sandbox::ProjectPath::parse("public/reference.png").unwrap())
        .await
        .unwrap();
    assert_eq!(copied, png);

    // The store keeps a reference, never the base64.
    let stored = apna::agent::conversation::load_messages(&*h.store, &h.project.id)
        .await
        .unwrap();
    let json = serde_json::to_string(&stored).unwrap();
    assert!(!json.contains("\"base64\""));
    assert!(json.len() < 20_000, "{}", json.len());
}

#[tokio::test]
async fn the_model_gets_the_image_and_the_selection_and_edits_that_line() {
    converse(false).await;
}

#[tokio::test]
async fn the_same_on_bedrock() {
    converse(true).await;
}

#[tokio::test]
async fn save_image_copies_only_the_projects_images() {
    // (revive replays save_image like the other file-changing tools.)
    let png = screenshot();
    let prepared = apna::images::prepare(&png, "image 1").unwrap();
    let h = AgentHarness::new(script(&prepared.meta.id)).await.unwrap();
    let blobs = h.blobs.clone();
    apna::images::store(&*blobs, &h.project.id, std::slice::from_ref(&prepared))
        .await
        .unwrap();
    let tools = apna::agent::tools::Toolbox::for_project(blobs, &h.project.id);
    let out = tools
        .execute(
            &h.sandbox,
            "save_image",
            &serde_json::json!({"image_id": prepared.meta.id, "path": "public/a.png"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    let out = tools
        .execute(
            &h.sandbox,
            "save_image",
            &serde_json::json!({"image_id": "0".repeat(64), "path": "public/b.png"}),
        )
        .await;
    assert!(
        out.is_error && out.content.contains("no attached image"),
        "{}",
        out.content
    );
    let out = tools
        .execute(
            &h.sandbox,
            "save_image",
            &serde_json::json!({"image_id": prepared.meta.id, "path": "../x.png"}),
        )
        .await;
    assert!(out.is_error, "{}", out.content);
}
