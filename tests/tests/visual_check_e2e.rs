//! Issue #17, the visual self-check (`APNA_VISUAL_CHECK=1`): whole local
//! generations (mock model, local sandbox with Vite, SQLite, the interpreter
//! running `generation.asl.json`, the host's Chromium) of a page that builds
//! and opens cleanly but lacks what was asked for
//! (`tests/fixtures/conversations/visual_check.json`).
//!
//! With the setting on, the model's next request carries the browser check's
//! desktop screenshot as an image block, byte for byte the PNG stored for
//! that check, with the person's request; its answer edits the file, Verify
//! and the browser check run again, and the version is the fixed page. The
//! run's events say what the model saw. With the setting off, no image is
//! sent and the first page is the version.
//!
//! Needs Chromium (`tests/run` installs Debian's); without it these tests
//! say so and pass, unless `APNA_REQUIRE_SERVICES=1`.

use apna::domain::{RunEventKind, RunStatus, Screenshot};
use apna_tests::mock_anthropic::last_user_text;
use apna_tests::scripted_generation::{self, centre, Generated};
use base64::Engine;

/// The first page's background (`#0f766e`).
const FIRST: [u8; 3] = [0x0f, 0x76, 0x6e];
/// The background of the page after the model looked at it (`#1d4ed8`).
const FIXED: [u8; 3] = [0x1d, 0x4e, 0xd8];
const PROMPT: &str = "a reading list that shows how many books are on it";

/// The browser checks' screenshots, check by check.
async fn checked_screenshots(g: &Generated) -> Vec<Vec<Screenshot>> {
    g.browser_checks()
        .await
        .unwrap()
        .into_iter()
        .map(|d| serde_json::from_value(d["screenshots"].clone()).unwrap())
        .collect()
}

/// Every image block the model was sent, decoded, request by request.
fn images_sent(g: &Generated) -> Vec<(String, Vec<Vec<u8>>)> {
    g.mock
        .requests()
        .into_iter()
        .map(|r| {
            let images = r.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                .filter(|b| b["type"] == "image")
                .map(|b| {
                    assert_eq!(b["source"]["type"], "base64");
                    assert_eq!(b["source"]["media_type"], "image/png");
                    base64::engine::general_purpose::STANDARD
                        .decode(b["source"]["data"].as_str().unwrap())
                        .unwrap()
                })
                .collect();
            (last_user_text(&r.body), images)
        })
        .collect()
}

async fn generate(extra: &[(&str, &str)]) -> Generated {
    scripted_generation::generate("visual_check.json", PROMPT, extra)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_model_looks_at_the_page_once_and_fixes_it() {
    if !apna::testing::browser::chromium_present() {
        return;
    }
    let g = generate(&[("APNA_VISUAL_CHECK", "1")]).await;
    assert_eq!(g.status, RunStatus::Succeeded, "{}", g.progress);
    assert_eq!(
        g.mock.answered_calls(),
        4,
        "write, summary, look + fix, summary: {}",
        g.progress
    );

    // Two browser checks, both clean: the first page, then the fixed one.
    let checks = checked_screenshots(&g).await;
    assert_eq!(checks.len(), 2, "{}", g.progress);
    let first = checks[0]
        .iter()
        .find(|s| s.viewport == "desktop")
        .unwrap()
        .clone();
    let first_png = g.png(&first).await.unwrap();
    assert_eq!(centre(&first_png).unwrap(), FIRST);

    // The look's request carries the first check's desktop screenshot, byte
    // for byte, with the instruction and the request; the requests before it
    // carry no image, and the one after it keeps it in the conversation.
    let sent = images_sent(&g);
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().take(2).all(|(_, imgs)| imgs.is_empty()));
    let (text, images) = &sent[2];
    assert_eq!(images.len(), 1);
    assert!(images[0] == first_png, "the stored PNG, byte for byte");
    assert_eq!(apna::blob::sha256_hex(&images[0]), first.sha256);
    assert!(text.contains("screenshot"), "{text}");
    assert!(text.contains(&format!("> {PROMPT}")), "{text}");
    assert_eq!(&sent[3].1, images, "the same image, once");

    // The version is the page after the fix, with its screenshots.
    let shots = g.version().await.unwrap().screenshots;
    assert_eq!(shots.len(), 2);
    assert_eq!(
        serde_json::to_value(&shots).unwrap(),
        serde_json::to_value(&checks[1]).unwrap()
    );
    assert_eq!(centre(&g.png(&shots[0]).await.unwrap()).unwrap(), FIXED);

    // What the model saw is a run event; the look happened once.
    let looked: Vec<String> = g
        .events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == RunEventKind::Status && e.data["phase"] == "visual")
        .map(|e| e.data["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(looked.len(), 2, "{looked:?}");
    assert_eq!(looked[0], "Comparing the page with the request");
    assert!(
        looked[1].starts_with("Looked at the page: The page shows the two books")
            && looked[1].contains("book counter you asked for is missing"),
        "{looked:?}"
    );
    assert!(
        g.progress.contains("· Looked at the page: "),
        "{}",
        g.progress
    );

    // Smoke ran twice in the interpreter's history, Verify twice.
    let history = g.server.state.workflow.history(&g.run_id).await.unwrap();
    let entered = |state: &str| {
        history
            .iter()
            .filter(|h| h.state_name.as_deref() == Some(state) && h.event_type == "StateEntered")
            .count()
    };
    assert_eq!((entered("Verify"), entered("Smoke")), (2, 2));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_setting_off_no_image_is_sent() {
    if !apna::testing::browser::chromium_present() {
        return;
    }
    let g = generate(&[]).await;
    assert_eq!(g.status, RunStatus::Succeeded, "{}", g.progress);
    assert_eq!(g.mock.answered_calls(), 2, "write, summary: {}", g.progress);
    assert!(images_sent(&g).iter().all(|(_, imgs)| imgs.is_empty()));
    assert!(!g.progress.contains("Looked at the page"), "{}", g.progress);
    let shots = g.version().await.unwrap().screenshots;
    assert_eq!(centre(&g.png(&shots[0]).await.unwrap()).unwrap(), FIRST);
    g.stop().await;
}
