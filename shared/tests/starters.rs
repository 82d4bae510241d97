//! Every starter passes the Verify step's build check (tsc + vite build) and
//! renders in Chromium without a console error; a page using every component
//! of the `app` starter's kit and every bundled library does too. In each, the
//! dev server tags elements with `data-apna-src` ("Select", issue #21) and the
//! production build has neither the tags nor the select script. Needs node,
//! npm, Debian's chromium and `tests/node_modules` (tests/run installs them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apna::preview::SandboxPreviewBackend;
use apna::sandbox::build_check::{check_build, check_build_with_vite_build};
use apna::sandbox::local::{wait_ready, LocalSandbox};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxProvider};
use apna::testing::browser::{browser_available, render};
use apna::testing::fixtures::repo_root;
use apna::testing::local::*;
use serde_json::Value;

fn repo() -> PathBuf {
    repo_root()
}

/// Builds the project and renders it through the preview proxy; returns what the browser saw.
async fn build_and_render(
    sb: &LocalSandbox,
    proxy: std::net::SocketAddr,
    wait_text: &str,
    extra: &[&str],
) -> Value {
    let report = check_build(sb).await.unwrap();
    assert!(report.ok, "{}: {:#?}", sb.project_id(), report.diagnostics);
    // Verify checks through the dev server; the production build (publish,
    // the fallback check) must pass too and carry no dev-only tags.
    let report = check_build_with_vite_build(sb).await.unwrap();
    assert!(report.ok, "{}: {:#?}", sb.project_id(), report.diagnostics);
    assert_build_has_no_source_tags(sb).await;
    wait_ready(sb, Duration::from_secs(120)).await.unwrap();
    let url = format!("http://{}.localhost:{}/", sb.project_id(), proxy.port());
    let mut args = vec!["--wait-text", wait_text, "--selector", "[data-apna-src]"];
    args.extend_from_slice(extra);
    let seen = render(&url, &args).await;
    assert_eq!(
        seen["errors"],
        Value::Array(vec![]),
        "{} logged errors in Chromium; dev server log:\n{}",
        sb.project_id(),
        sb.logs(60).await.unwrap()
    );
    assert!(
        seen["matched"]["[data-apna-src]"].as_u64().unwrap_or(0) > 0,
        "{}: the dev server tagged no element with data-apna-src",
        sb.project_id()
    );
    seen
}

/// The build check's output (`.apna-build/check`) is a real bundle without
/// the dev-only plugin's `data-apna-src` tags or select script.
async fn assert_build_has_no_source_tags(sb: &LocalSandbox) {
    let run = |command: &str| ExecRequest {
        command: command.to_string(),
        timeout: Duration::from_secs(30),
        max_output: 64 * 1024,
    };
    let bundles = sb
        .exec(&run("find .apna-build/check -type f -name '*.js' | wc -l"))
        .await
        .unwrap();
    assert!(
        bundles.output.trim().parse::<u32>().unwrap_or(0) > 0,
        "{}: the build wrote no bundle: {}",
        sb.project_id(),
        bundles.output
    );
    let found = sb
        .exec(&run(
            "grep -rl -e data-apna-src -e apna:selected .apna-build/check",
        ))
        .await
        .unwrap();
    // grep exits 1 when nothing matches, 2 on an error.
    assert_eq!(
        found.exit_code,
        Some(1),
        "{}: the production build has the dev-only plugin's output: {}",
        sb.project_id(),
        found.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_starter_builds_and_renders_without_console_errors() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy = start_proxy(Arc::new(SandboxPreviewBackend::new(shared))).await;
    let out = repo().join("test-output");
    std::fs::create_dir_all(&out).unwrap();
    for (name, text) in [
        ("app", "Your app is on its way"),
        ("dashboard", "Recent orders"),
        ("landing", "Simple pricing"),
        ("minimal", "Your app is on its way"),
    ] {
        let sb = provider.local(&format!("starter-{name}")).unwrap();
        sb.ensure_from(name).await.unwrap();
        // A desktop layout at half scale: the starter's card image in the UI.
        let shot = out.join(format!("starter-{name}.png"));
        let shot = shot.to_string_lossy();
        let seen =
            build_and_render(&sb, proxy, text, &["--screenshot", &shot, "--scale", "0.5"]).await;

        eprintln!("{name}: rendered, screenshot in {shot}");
        if name == "dashboard" {
            // Charts, icons and the routed layout are on the first page.
            let more = render(
                &format!("http://starter-dashboard.localhost:{}/orders", proxy.port()),
                &[
                    "--wait-text",
                    "ana@example.com",
                    "--selector",
                    "input[placeholder='Search orders']",
                ],
            )
            .await;
            assert_eq!(more["errors"], Value::Array(vec![]));
            assert_eq!(more["matched"]["input[placeholder='Search orders']"], 1);
            assert!(seen["text"].as_str().unwrap().contains("Revenue"));
        }
    }
    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_every_kit_component_renders_in_chromium() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy = start_proxy(Arc::new(SandboxPreviewBackend::new(shared))).await;
    let sb = provider.local("starter-kit").unwrap();
    sb.ensure_from("app").await.unwrap();
    let page = std::fs::read(repo().join("tests/fixtures/kit/App.tsx")).unwrap();
    sb.write_file(&ProjectPath::parse("src/App.tsx").unwrap(), &page)
        .await
        .unwrap();
    // Every component file of the kit is imported by the page.
    let page = String::from_utf8(page).unwrap();
    let kit: Vec<String> = sb
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|f| {
            f.path
                .strip_prefix("src/components/ui/")
                .and_then(|n| n.strip_suffix(".tsx"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(kit.len(), 19, "{kit:?}");
    for component in &kit {
        let import = if component == "sonner" {
            "from \"sonner\"".to_string()
        } else {
            format!("from \"@/components/ui/{component}\"")
        };
        assert!(
            page.contains(&import),
            "the kit page does not use {component}"
        );
    }
    let shot = repo().join("test-output/starter-app-kit.png");
    let seen = build_and_render(
        &sb,
        proxy,
        "Open from the start.",
        &[
            "--screenshot",
            &shot.to_string_lossy(),
            "--scale",
            "0.5",
            "--selector",
            "[data-sonner-toast]",
            "--selector",
            ".recharts-surface",
            "--selector",
            "svg.lucide",
        ],
    )
    .await;
    let slots: Vec<&str> = seen["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for slot in [
        "button",
        "card",
        "card-title",
        "input",
        "textarea",
        "label",
        "select-trigger",
        "select-content",
        "checkbox",
        "switch",
        "dialog-content",
        "dialog-title",
        "dropdown-menu-content",
        "dropdown-menu-item",
        "tabs-list",
        "tooltip-content",
        "table",
        "badge",
        "avatar",
        "progress",
        "skeleton",
        "separator",
    ] {
        assert!(slots.contains(&slot), "{slot} was not rendered: {slots:?}");
    }
    for selector in ["[data-sonner-toast]", ".recharts-surface", "svg.lucide"] {
        assert!(
            seen["matched"][selector].as_u64().unwrap_or(0) > 0,
            "{selector} not on the page: {seen}"
        );
    }
    assert!(seen["text"].as_str().unwrap().contains("January 2nd, 2026"));
    provider.stop_all().await;
}
