//! The Verify step's build check on real projects (needs node and npm).

use std::time::Duration;

use apna::sandbox::build_check::{check_build, parse_dev_log, DiagnosticSource};
use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox};
use apna::testing::local::*;

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
