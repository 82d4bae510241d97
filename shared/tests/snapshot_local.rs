//! Hibernate and wake with the production local driver: real files on disk,
//! the `node_modules` link, and Vite serving again after wake.

use std::sync::Arc;
use std::time::Duration;

use apna::blob::{BlobStore, FsBlobStore};
use apna::domain::{Project, ProjectStatus};
use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox, SandboxState};
use apna::snapshot::{hibernate_project, wake_project, HibernateOutcome, WakeOutcome};
use apna::store::{SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sandbox_hibernates_and_wakes_identically() {
    let data = tempfile::tempdir().unwrap();
    let provider = apna::testing::local::provider(&data.path().join("data"), None).await;
    let blobs: Arc<dyn BlobStore> =
        Arc::new(FsBlobStore::new(data.path().join("blobs")).await.unwrap());
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    // A starter other than the default: wake must bring back its packages.
    let project = Project::new("local", "a counter", "minimal");
    store.create_project(&project).await.unwrap();
    for (from, to) in [
        (ProjectStatus::Creating, ProjectStatus::Building),
        (ProjectStatus::Building, ProjectStatus::Ready),
    ] {
        assert!(store
            .set_project_status(&project.id, from, to, None)
            .await
            .unwrap());
    }

    let sb = provider.local(&project.id).unwrap();
    sb.ensure_from("minimal").await.unwrap();
    let edits = [
        ("src/App.tsx", "import { Counter } from './components/Counter'\nexport default function App() {\n  return <Counter />\n}\n"),
        ("src/components/Counter.tsx", "import { useState } from 'react'\nexport function Counter() {\n  const [n, setN] = useState(0)\n  return <button onClick={() => setN(n + 1)}>{n}</button>\n}\n"),
        ("scripts/seed.sh", "#!/bin/sh\necho seed\n"),
    ];
    for (path, body) in edits {
        sb.write_file(&ProjectPath::parse(path).unwrap(), body.as_bytes())
            .await
            .unwrap();
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            sb.root().join("scripts/seed.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    // Build output and Vite's cache are not source and must not be snapshotted.
    std::fs::create_dir_all(sb.root().join("dist")).unwrap();
    std::fs::write(sb.root().join("dist/index.html"), "built").unwrap();
    let original = sb.export_source().await.unwrap();
    assert!(original
        .files
        .iter()
        .any(|f| f.path == "src/components/Counter.tsx"));
    assert!(original.files.iter().all(|f| !f.path.starts_with("dist/")));
    let script = original.files.iter().find(|f| f.path == "scripts/seed.sh");
    assert!(script.unwrap().executable, "executable bit not exported");

    let out = hibernate_project(&store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(
        matches!(out, HibernateOutcome::Hibernated { .. }),
        "{out:?}"
    );
    assert!(!sb.root().exists(), "project directory left behind");
    assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);

    let out = wake_project(&store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            WakeOutcome::Woken {
                installed_packages: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(sb.export_source().await.unwrap(), original);
    assert!(sb.root().join("node_modules/react/package.json").exists());
    assert_eq!(
        std::fs::canonicalize(sb.root().join("node_modules")).unwrap(),
        apna::testing::local::starter("minimal").await.node_modules,
        "woken with its own starter's packages"
    );
    assert!(!sb.root().join("dist").exists());
    wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        store
            .get_project(&project.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ProjectStatus::Ready
    );
    provider.stop_all().await;
}
