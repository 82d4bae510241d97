//! Debian's Chromium driven by `tests/e2e/render.mjs`: what a page logs and
//! shows, for the browser smoke checks of starters and generated apps.

use std::path::Path;

use serde_json::Value;

use super::fixtures::repo_root;
use super::services::services_required;

/// Whether Chromium and `tests/node_modules/playwright-core` are here; with
/// `APNA_REQUIRE_SERVICES=1` their absence fails the test instead.
pub fn browser_available() -> bool {
    let chromium = std::env::var("APNA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ok = Path::new(&chromium).exists()
        && repo_root()
            .join("tests/node_modules/playwright-core")
            .is_dir();
    if !ok {
        assert!(
            !services_required(),
            "chromium or tests/node_modules/playwright-core missing"
        );
        eprintln!("skipped: no chromium or playwright-core (run tests/run)");
    }
    ok
}

/// What `render.mjs` saw on `url`: `errors` (console errors, uncaught
/// exceptions, failed requests), `text`, `slots` (every `data-slot`) and
/// `matched` (count per `--selector`). `extra` are its flags.
pub async fn render(url: &str, extra: &[&str]) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/e2e/render.mjs"))
        .arg(url)
        .args(extra)
        .current_dir(repo_root().join("tests"))
        .output()
        .await
        .expect("node");
    assert!(
        out.status.success(),
        "render.mjs {url} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "render.mjs output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Whether the browser check can run here: built with the `browser` feature
/// and the Chromium it drives present (`APNA_CHROMIUM`, Debian's headless
/// shell, `/usr/bin/chromium` or on `PATH`); with `APNA_REQUIRE_SERVICES=1` its absence fails the test
/// instead.
pub fn chromium_present() -> bool {
    let found = crate::sandbox::browser::Browser::supported()
        && crate::sandbox::browser::find_chromium(
            std::env::var_os("APNA_CHROMIUM")
                .map(std::path::PathBuf::from)
                .as_deref(),
            std::env::var_os("PATH"),
        )
        .is_ok();
    if !found {
        assert!(
            !services_required(),
            "no browser check (Chromium missing or built without --features browser) but APNA_REQUIRE_SERVICES=1: tests/run installs Debian's chromium"
        );
        eprintln!("skipped: no Chromium, or built without --features browser");
    }
    found
}
