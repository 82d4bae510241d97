//! The Verify step's build check on real projects (needs node and npm).

use std::time::Duration;

use apna::sandbox::build_check::{
    check_build, check_build_with_vite_build, parse_dev_log, DiagnosticSource,
};
use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox};
use apna::testing::local::*;
use apna::testing::verify_fixtures::FIXTURES;

fn p(s: &str) -> ProjectPath {
    ProjectPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_template_passes_and_errors_are_located() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-check").unwrap();
    sb.import_source(&template().await.files).await.unwrap();

    let report = check_build(&sb).await.unwrap();
    assert!(report.ok, "{:?}", report.diagnostics);
    assert!(report.diagnostics.is_empty());
    // The build output stays out of the source listing.
    let listed = sb.list_files().await.unwrap();
    assert!(listed.iter().all(|f| !f.path.starts_with(".apna-build")));

    // A type error: right file and line, from tsc.
    sb.write_file(
        &p("src/App.tsx"),
        b"export default function App() {\n  const n: number = \"not a number\";\n  return <p>{n}</p>;\n}\n",
    )
    .await
    .unwrap();
    let report = check_build(&sb).await.unwrap();
    assert!(!report.ok);
    let d = report
        .diagnostics
        .iter()
        .find(|d| d.source == DiagnosticSource::Typescript)
        .expect("a TypeScript diagnostic");
    assert_eq!((d.file.as_str(), d.line), ("src/App.tsx", 2), "{d:?}");
    assert!(d.message.contains("not assignable"), "{d:?}");

    // A broken import: the build reports the importing file and line.
    sb.write_file(
        &p("src/App.tsx"),
        b"import { thing } from \"./missing\";\n\nexport default function App() {\n  return <p>{thing}</p>;\n}\n",
    )
    .await
    .unwrap();
    let report = check_build(&sb).await.unwrap();
    assert!(!report.ok);
    let build = report
        .diagnostics
        .iter()
        .find(|d| d.source == DiagnosticSource::Build)
        .unwrap_or_else(|| panic!("a build diagnostic: {:?}", report.diagnostics));
    assert_eq!(
        (build.file.as_str(), build.line),
        ("src/App.tsx", 1),
        "{build:?}"
    );
    assert!(build.message.contains("./missing"), "{build:?}");
    assert!(report
        .diagnostics
        .iter()
        .any(|d| d.source == DiagnosticSource::Typescript
            && d.file == "src/App.tsx"
            && d.line == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_dev_server_errors_are_reported_and_fixed_ones_are_not() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-devlog").unwrap();
    sb.ensure().await.unwrap();
    let st = wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    // Let Vite see the module once, then break it and request it again.
    let (status, _) = get(addr, "proj-devlog.localhost", "/src/App.tsx").await;
    assert_eq!(status, 200);
    sb.write_file(
        &p("src/App.tsx"),
        b"export default function App() {\n  return <div>{x</div>;\n}\n",
    )
    .await
    .unwrap();
    let root = sb.root().to_str().unwrap().to_string();
    let root = root.as_str();
    let mut found = None;
    // Generous for a loaded CI machine; the loop ends as soon as it holds.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let _ = get(addr, "proj-devlog.localhost", "/src/App.tsx").await;
        // check_build reports each problem once (the build finds this one
        // too), so look at the dev-server part on its own.
        let log = sb.logs(400).await.unwrap();
        // Vite writes the headline and the code frame in separate chunks:
        // wait until the frame (the location) has reached the log too.
        if let Some(d) = parse_dev_log(&log, root)
            .into_iter()
            .find(|d| !d.file.is_empty())
        {
            found = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = found.expect("no dev server diagnostic");
    assert!(!check_build(&sb).await.unwrap().ok);
    assert_eq!((d.file.as_str(), d.line), ("src/App.tsx", 2), "{d:?}");

    // Fixing the file: the old error is no longer reported.
    sb.write_file(
        &p("src/App.tsx"),
        b"export default function App() {\n  return <div>ok</div>;\n}\n",
    )
    .await
    .unwrap();
    let mut clean = false;
    // Generous for a loaded CI machine; the loop ends as soon as it holds.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let _ = get(addr, "proj-devlog.localhost", "/src/App.tsx").await;
        let log = sb.logs(400).await.unwrap();
        if parse_dev_log(&log, root).is_empty() && check_build(&sb).await.unwrap().ok {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(clean, "log: {}", sb.logs(50).await.unwrap());
    provider.stop_all().await;
}

fn located(r: &apna::sandbox::build_check::BuildReport) -> std::collections::BTreeSet<String> {
    r.diagnostics
        .iter()
        .filter(|d| d.source != DiagnosticSource::Typescript)
        .map(|d| d.file.clone())
        .collect()
}

/// Issue #16: Verify through the running dev server (`tsc --incremental` and
/// every module loaded) reports the same problems as `tsc` + `vite build` did,
/// on every fixture, at the same file and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_check_finds_what_the_build_found_on_every_fixture() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-fixtures").unwrap();
    sb.ensure().await.unwrap();
    let st = wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    let (status, _) = get(addr, "proj-fixtures.localhost", "/").await;
    assert_eq!(status, 200);
    let original: std::collections::HashMap<String, Vec<u8>> = sb
        .export_source()
        .await
        .unwrap()
        .files
        .into_iter()
        .map(|f| (f.path, f.data))
        .collect();
    let build_out = sb.root().join(".apna-build/check");
    for fx in FIXTURES {
        for (path, text) in fx.files {
            sb.write_file(&p(path), text.as_bytes()).await.unwrap();
        }
        let before = check_build_with_vite_build(&sb).await.unwrap();
        let _ = std::fs::remove_dir_all(&build_out);
        let after = check_build(&sb).await.unwrap();
        eprintln!(
            "{}:\n  before: {:?}\n  after:  {:?}",
            fx.name, before.diagnostics, after.diagnostics
        );
        assert!(
            !build_out.exists(),
            "{}: the new check ran a build (no dev server?)",
            fx.name
        );
        assert_eq!(before.ok, fx.expect.is_empty(), "{}: {before:?}", fx.name);
        assert_eq!(after.ok, before.ok, "{}: {after:?}", fx.name);
        for (label, report) in [("before", &before), ("after", &after)] {
            for (file, line, phrase) in fx.expect {
                assert!(
                    report.diagnostics.iter().any(|d| d.file == *file
                        && (d.line == *line || d.line == 0)
                        && d.message.contains(phrase)),
                    "{} ({label}): no {file}:{line} {phrase:?} in {:?}",
                    fx.name,
                    report.diagnostics
                );
            }
        }
        // The same files are blamed outside TypeScript (whose part is the same command).
        assert_eq!(located(&before), located(&after), "{}", fx.name);
        let tsc_found = after
            .diagnostics
            .iter()
            .any(|d| d.source == DiagnosticSource::Typescript);
        assert_eq!(tsc_found, fx.tsc_sees_it, "{}: {after:?}", fx.name);
        // Back to the template for the next fixture.
        for (path, _) in fx.files {
            match original.get(*path) {
                Some(data) => sb.write_file(&p(path), data).await.unwrap(),
                None => assert!(sb.delete_file(&p(path)).await.unwrap()),
            };
        }
    }
    // Without a running dev server the check builds, as before.
    sb.write_file(&p("src/App.tsx"), FIXTURES[4].files[0].1.as_bytes())
        .await
        .unwrap();
    sb.stop().await.unwrap();
    let report = check_build(&sb).await.unwrap();
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.source == DiagnosticSource::Build
                && d.file == "src/App.tsx"
                && d.message.contains("./missing.css")),
        "{report:?}"
    );
    provider.stop_all().await;
}

/// Issue #16: with a gate of N, N + 1 Verify checks started together run at
/// most N at a time (the gate's own count), and one of them waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifies_queue_at_the_build_gate() {
    let data = tempfile::tempdir().unwrap();
    let n = 2;
    let provider = provider_with_capacity(data.path(), 0, n).await;
    let mut sandboxes = Vec::new();
    for i in 0..=n {
        let sb = provider.local(&format!("proj-gate-{i}")).unwrap();
        sb.import_source(&template().await.files).await.unwrap();
        sandboxes.push(sb);
    }
    assert_eq!(provider.build_gate().limit(), n);
    let checks: Vec<_> = sandboxes
        .iter()
        .cloned()
        .map(|sb| tokio::spawn(async move { check_build(&sb).await }))
        .collect();
    for c in checks {
        let report = c.await.unwrap().unwrap();
        assert!(report.ok, "{report:?}");
    }
    let gate = provider.build_gate();
    assert_eq!(
        gate.peak(),
        n,
        "at most {n} at once, and {n} did run together"
    );
    assert!(gate.queued() >= 1, "the extra check waited");
    assert_eq!(gate.in_use(), 0);
    provider.stop_all().await;
}

/// Issue #16: with K warm spares, K creates at once all adopt one (each is
/// ready at once: a cold start would still be starting Vite), and the
/// spares are made again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_adopts_as_many_warm_spares() {
    if !matches!(
        apna::sandbox::local::Isolation::detect(),
        apna::sandbox::local::Isolation::Bubblewrap { .. }
    ) || std::env::var("APNA_TEST_NO_BWRAP").is_ok_and(|v| v == "1")
    {
        eprintln!("skipped: warm spares need bubblewrap");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let k = 3;
    let provider = provider_with_capacity(data.path(), k, 2).await;
    assert!(provider.wait_spare_ready(Duration::from_secs(120)).await);
    assert_eq!(provider.spare_count(), k);
    let creates: Vec<_> = (0..k)
        .map(|i| {
            let sb = provider.local(&format!("proj-burst-{i}")).unwrap();
            tokio::spawn(async move { sb.ensure().await })
        })
        .collect();
    for c in creates {
        let st = c.await.unwrap().unwrap();
        assert_eq!(st.state, apna::sandbox::SandboxState::Ready, "{st:?}");
    }
    // A fourth create finds none left (the refill has not finished yet) or
    // a fresh one; either way the pool comes back to K.
    assert!(provider.wait_spare_ready(Duration::from_secs(120)).await);
    assert_eq!(provider.spare_count(), k);
    provider.stop_all().await;
}

/// A new project starts from the starter's type-check build info (made once
/// per template cache from the pristine starter), and `tsc` from that seed
/// still reports errors in files the project never changed, found through a
/// file it did change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_type_checks_from_the_starters_build_info() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let Some(deps) = template().await.vite_deps else {
        eprintln!("skipped: the type-check seed is made under bubblewrap only");
        return;
    };
    provider.set_warm_spare(false).await;
    let seed = apna::sandbox::local::template::type_check_seed(&deps);
    let seeded = std::fs::read(&seed).expect("the starter's type-check build info");
    assert!(
        String::from_utf8_lossy(&seeded).contains("src/App.tsx"),
        "a build info of the starter"
    );

    let sb = provider.local("proj-seed").unwrap();
    sb.ensure().await.unwrap();
    let info = sb.root().join(".apna-build/tsc.tsbuildinfo");
    assert_eq!(std::fs::read(&info).unwrap(), seeded, "a copy of the seed");
    // Through the dev server: the check that runs `tsc --incremental`.
    wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    let report = check_build(&sb).await.unwrap();
    assert!(report.ok, "{:?}", report.diagnostics);

    // `cn` now takes a number: the kit's components, unchanged since the
    // seed was made, no longer type-check.
    sb.write_file(
        &p("src/lib/utils.ts"),
        b"export function cn(n: number): string {\n  return String(n);\n}\n",
    )
    .await
    .unwrap();
    let report = check_build(&sb).await.unwrap();
    assert!(!report.ok);
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.source == DiagnosticSource::Typescript
                && d.file == "src/components/ui/button.tsx"),
        "{:?}",
        report.diagnostics
    );
    // The project's own build info changed; the seed did not.
    assert_ne!(std::fs::read(&info).unwrap(), seeded);
    assert_eq!(std::fs::read(&seed).unwrap(), seeded);
    provider.stop_all().await;
}
