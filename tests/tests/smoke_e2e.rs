//! Issue #17: after Verify passes, the app is opened in the host's Chromium.
//!
//! Whole local generations (mock model, local sandbox with Vite, SQLite, the
//! interpreter running `generation.asl.json`) of apps that compile but are
//! broken at run time: one throws on render, one `console.error`s, one
//! requests an image that does not exist, one renders nothing. For each, the
//! model's next request carries a diagnostic naming the right file and line,
//! its fix passes both checks, and the version's screenshot shows the fixed
//! page (its background colour, which the broken page never shows). A healthy
//! app passes on the first try with a screenshot. A browser that crashes on
//! start is retried, then skipped with a note; a missing one is skipped at
//! once; neither fails the run.
//!
//! Needs Chromium (`tests/run` installs Debian's); without it these tests
//! say so and pass, unless `APNA_REQUIRE_SERVICES=1`.

use std::os::unix::fs::PermissionsExt;

use apna::domain::{RunStatus, Screenshot};
use apna_tests::mock_anthropic::last_user_text;
use apna_tests::scripted_generation::{centre, generate};

/// The fixed pages' background (`#0f766e`), which no broken page shows.
const FIXED: [u8; 3] = [0x0f, 0x76, 0x6e];

/// How the broken page's screenshot compares with the fixed one.
enum Looks {
    /// Nothing of the page shows (it threw, or rendered nothing).
    Empty,
    /// The page shows, with a difference (a broken image).
    Different,
    /// The problem is invisible (a logged error).
    Same,
}

/// A broken app: Verify passes, the browser finds `expected` (file:line), the
/// model's fix passes, and the version's screenshots show the fixed page.
async fn broken_app_is_fixed(
    fixture: &str,
    prompt: &str,
    expected: &str,
    words: &str,
    broken_looks: Looks,
) {
    if !apna::testing::browser::chromium_present() {
        return;
    }
    let g = generate(fixture, prompt, &[]).await.unwrap();
    assert_eq!(
        g.status,
        RunStatus::Succeeded,
        "{}\n{:?}",
        g.progress,
        g.error
    );
    assert!(
        g.progress.contains("✓ build check passed"),
        "{}",
        g.progress
    );
    assert!(
        g.progress.contains("✗ browser check found 1 problem(s)"),
        "{}",
        g.progress
    );
    assert!(
        g.progress.contains("✓ browser check passed"),
        "{}",
        g.progress
    );
    assert!(
        !g.progress.contains("✗ build check"),
        "Verify alone must not catch it:\n{}",
        g.progress
    );

    // The model was told where: file and line, in Verify's shape.
    let fix_request = g
        .mock
        .requests()
        .into_iter()
        .map(|r| last_user_text(&r.body))
        .find(|t| t.contains("opening the app in a browser found"))
        .expect("a request carrying the browser check's findings");
    assert!(
        fix_request.contains(&format!("- {expected}")),
        "expected {expected} in:\n{fix_request}"
    );
    assert!(fix_request.contains(words), "{fix_request}");
    assert_eq!(g.mock.answered_calls(), 4, "write, summary, fix, summary");

    // The first check's screenshot is the broken page, the version's the fixed one.
    let checks = g.browser_checks().await.unwrap();
    assert_eq!(checks.len(), 2, "{checks:#?}");
    assert_eq!(
        (checks[0]["ok"].as_bool(), checks[1]["ok"].as_bool()),
        (Some(false), Some(true))
    );
    let v = g.version().await.unwrap();
    assert_eq!(
        v.screenshots
            .iter()
            .map(|s| (s.viewport.as_str(), s.width, s.height))
            .collect::<Vec<_>>(),
        [("desktop", 1280, 800), ("phone", 390, 844)]
    );
    assert_eq!(
        serde_json::to_value(&v.screenshots).unwrap(),
        checks[1]["screenshots"],
        "the version keeps the passing check's screenshots"
    );
    for shot in &v.screenshots {
        let png = g.png(shot).await.unwrap();
        assert_eq!(png.len() as u64, shot.bytes);
        assert_eq!(apna::blob::sha256_hex(&png), shot.sha256);
        assert_eq!(
            centre(&png).unwrap(),
            FIXED,
            "{} screenshot of the fixed page",
            shot.viewport
        );
    }
    let broken: Vec<Screenshot> = serde_json::from_value(checks[0]["screenshots"].clone()).unwrap();
    match broken_looks {
        Looks::Empty => assert_ne!(centre(&g.png(&broken[0]).await.unwrap()).unwrap(), FIXED),
        Looks::Different => assert_ne!(broken[0].sha256, v.screenshots[0].sha256),
        // The same page, byte for byte: the check makes the dev server
        // forget what it built before the write (stale Tailwind CSS under
        // load otherwise; see shared/tests/smoke_fresh.rs).
        Looks::Same => assert_eq!(broken[0].sha256, v.screenshots[0].sha256),
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_that_throws_on_render_is_fixed() {
    broken_app_is_fixed(
        "smoke_throws.json",
        "a todo list",
        "src/App.tsx:9:",
        "Cannot read properties of null (reading 'map')",
        Looks::Empty,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_that_logs_an_error_is_fixed() {
    broken_app_is_fixed(
        "smoke_console_error.json",
        "a weather card",
        "src/App.tsx:5:",
        "console.error: Could not load the weather",
        Looks::Same,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_missing_an_asset_is_fixed() {
    broken_app_is_fixed(
        "smoke_missing_asset.json",
        "a trail landing page",
        "src/App.tsx:4:",
        "/images/hero.png failed",
        Looks::Different,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_that_renders_nothing_is_fixed() {
    broken_app_is_fixed(
        "smoke_blank.json",
        "a pomodoro timer",
        "src/App.tsx:3:",
        "The page is blank",
        Looks::Empty,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_app_passes_first_time_with_a_screenshot() {
    if !apna::testing::browser::chromium_present() {
        return;
    }
    let g = generate("smoke_healthy.json", "a reading list", &[])
        .await
        .unwrap();
    assert_eq!(g.status, RunStatus::Succeeded, "{}", g.progress);
    assert_eq!(g.mock.answered_calls(), 2, "write, summary: no fix round");
    assert_eq!(
        g.progress.matches("✓ browser check passed").count(),
        1,
        "{}",
        g.progress
    );
    assert!(
        !g.progress.contains("browser check found"),
        "{}",
        g.progress
    );
    let v = g.version().await.unwrap();
    assert_eq!(v.screenshots.len(), 2);
    assert_eq!(
        centre(&g.png(&v.screenshots[0]).await.unwrap()).unwrap(),
        FIXED
    );
    // The interpreter's history shows Smoke entered and exited once.
    let history = g.server.state.workflow.history(&g.run_id).await.unwrap();
    let smoke: Vec<&str> = history
        .iter()
        .filter(|h| h.state_name.as_deref() == Some("Smoke"))
        .map(|h| h.event_type.as_str())
        .collect();
    assert_eq!(smoke.first(), Some(&"StateEntered"), "{smoke:?}");
    assert_eq!(smoke.last(), Some(&"StateExited"), "{smoke:?}");
    assert_eq!(smoke.iter().filter(|t| **t == "StateEntered").count(), 1);
    g.stop().await;
}

/// A browser that dies at start (here a "browser" that exits at once) is
/// retried once by the state machine, then the check is skipped with a note;
/// the run succeeds with a version (without screenshots).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashing_browser_is_retried_then_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("chromium");
    std::fs::write(&fake, "#!/bin/sh\necho 'crashed on purpose' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.display().to_string();
    let g = generate(
        "smoke_healthy.json",
        "a reading list",
        &[("APNA_CHROMIUM", &fake)],
    )
    .await
    .unwrap();
    assert_eq!(
        g.status,
        RunStatus::Succeeded,
        "{}\n{:?}",
        g.progress,
        g.error
    );
    assert!(
        g.progress
            .contains("The browser check was skipped (sandbox: the browser"),
        "{}",
        g.progress
    );
    let history = g.server.state.workflow.history(&g.run_id).await.unwrap();
    let smoke_failures = history
        .iter()
        .filter(|h| h.event_type == "TaskFailed" && h.data.to_string().contains("Apna.Sandbox"))
        .count();
    assert_eq!(smoke_failures, 2, "the first try and one retry");
    assert!(history
        .iter()
        .any(|h| h.state_name.as_deref() == Some("SmokeSkipped")));
    assert!(g.version().await.unwrap().screenshots.is_empty());
    g.stop().await;
}

/// No browser at all: the check reports it and is skipped at once, no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_browser_is_skipped_with_a_note() {
    let g = generate(
        "smoke_healthy.json",
        "a reading list",
        &[("APNA_CHROMIUM", "/nonexistent/chromium")],
    )
    .await
    .unwrap();
    assert_eq!(g.status, RunStatus::Succeeded, "{}", g.progress);
    assert!(
        g.progress
            .contains("– browser check skipped: APNA_CHROMIUM=/nonexistent/chromium is not a file"),
        "{}",
        g.progress
    );
    let checks = g.browser_checks().await.unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["smoke"], "skipped");
    g.stop().await;
}
