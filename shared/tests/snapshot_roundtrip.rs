//! Snapshots, versions, hibernation and wake end to end, against the
//! filesystem blob store and S3 (moto), with a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use apna::blob::BlobStore;
use apna::domain::{FileAction, ProjectStatus};
use apna::sandbox::{ExecOutput, Sandbox, SandboxState};
use apna::snapshot::{
    self, diff_trees, get_latest, hibernate_project, load_tree, record_version, restore_version,
    take_snapshot, version_diff, wake_project, zip_tree, HibernateOutcome, WakeOutcome,
};
use apna::store::Store;
use apna::testing::{faults::*, fixtures::*};

/// A version's changed files and what happened to each.
fn actions(v: &apna::domain::Version) -> Vec<(&str, FileAction)> {
    v.file_diffs
        .iter()
        .map(|d| (d.path.as_str(), d.action))
        .collect()
}

async fn round_trip(blobs: Arc<dyn BlobStore>) {
    let store = memory_store().await;
    let faults = Arc::new(Faults::default());
    let provider = FaultyProvider::new(faults.clone());
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 1);
    let original = sb.export_source().await.unwrap();
    assert!(original
        .files
        .iter()
        .all(|f| !f.path.starts_with("dist/") && !f.path.starts_with("node_modules/")));

    // Hibernate: verified snapshot, sandbox gone, status hibernated.
    let out = hibernate_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    let HibernateOutcome::Hibernated { snapshot } = out else {
        panic!("not hibernated: {out:?}")
    };
    assert_eq!(snapshot.files, original.files.len());
    // Two files have the same contents: one object for both.
    assert_eq!(snapshot.objects_new, original.files.len() - 1);
    assert_eq!(
        sb.inner.status().await.unwrap().state,
        SandboxState::Missing
    );
    assert!(sb.inner.paths().is_empty());
    let p = store.get_project(&project.id).await.unwrap().unwrap();
    assert_eq!(p.status, ProjectStatus::Hibernated);
    assert_eq!(store.run_lock_holder(&project.id).await.unwrap(), None);
    assert_eq!(
        get_latest(&*blobs, &project.id).await.unwrap().as_deref(),
        Some(snapshot.key.as_str())
    );

    // Hibernating again does nothing.
    let again = hibernate_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(
        matches!(again, HibernateOutcome::Skipped { .. }),
        "{again:?}"
    );

    // Wake: byte-identical tree, dev server started, status ready; the
    // template's dependencies are unchanged, so no npm install.
    let woke = wake_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert_eq!(
        woke,
        WakeOutcome::Woken {
            snapshot_key: snapshot.key.clone(),
            installed_packages: false
        }
    );
    assert_eq!(
        listing(&sb.export_source().await.unwrap()),
        listing(&original)
    );
    assert_eq!(sb.inner.status().await.unwrap().state, SandboxState::Ready);
    assert!(sb.inner.commands().is_empty(), "{:?}", sb.inner.commands());
    let p = store.get_project(&project.id).await.unwrap().unwrap();
    assert_eq!(p.status, ProjectStatus::Ready);
    assert_eq!(
        wake_project(&*store, &*blobs, &provider, &project.id)
            .await
            .unwrap(),
        WakeOutcome::AlreadyAwake
    );

    // A second snapshot of an unchanged tree uploads only its manifest.
    let info = take_snapshot(&*blobs, &sb, "app").await.unwrap();
    assert_eq!(
        (info.objects_new, info.objects_reused),
        (0, snapshot.objects_new)
    );
    assert_eq!(info.bytes_stored, info.manifest_size);
}

#[tokio::test]
async fn round_trip_fs() {
    let (blobs, _dir) = fs_blobs().await;
    round_trip(blobs).await;
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn round_trip_s3() {
    let Some(blobs) = s3_blobs().await else {
        return;
    };
    round_trip(blobs).await;
}

async fn versions(blobs: Arc<dyn BlobStore>) {
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 2);
    let v1_tree = sb.export_source().await.unwrap();

    let v1 = record_version(&*store, &*blobs, &sb, &project.id, Some("run-1"), "First")
        .await
        .unwrap();
    assert_eq!(v1.number, 1);
    assert_eq!(v1.file_diffs.len(), v1_tree.files.len());
    assert!(v1.file_diffs.iter().all(|d| d.action == FileAction::Create));
    // A retried finalize does not record twice.
    let again = record_version(&*store, &*blobs, &sb, &project.id, Some("run-1"), "First")
        .await
        .unwrap();
    assert_eq!(again, v1);

    sb.inner.put(
        "src/App.tsx",
        "export default function App() {\n  return <h1>Changed</h1>\n}\n",
    );
    sb.inner.put("src/new.ts", "export const x = 1\n");
    let gone = apna::sandbox::ProjectPath::parse("src/components/Widget0.tsx").unwrap();
    assert!(sb.delete_file(&gone).await.unwrap());
    let v2_tree = sb.export_source().await.unwrap();
    let v2 = record_version(&*store, &*blobs, &sb, &project.id, Some("run-2"), "Second")
        .await
        .unwrap();
    assert_eq!(
        actions(&v2),
        vec![
            ("src/App.tsx", FileAction::Update),
            ("src/components/Widget0.tsx", FileAction::Delete),
            ("src/new.ts", FileAction::Create),
        ]
    );
    assert_eq!(
        get_latest(&*blobs, &project.id).await.unwrap(),
        Some(v2.snapshot_key.clone())
    );
    assert_eq!(
        listing(&load_tree(&*blobs, &v1.snapshot_key).await.unwrap()),
        listing(&v1_tree)
    );

    let d = version_diff(&*store, &*blobs, &project.id, 2)
        .await
        .unwrap();
    assert_eq!(d.file_diffs.len(), 3);
    assert!(d.diff.contains("-  return <h1>App 2</h1>"), "{}", d.diff);
    assert!(d.diff.contains("+  return <h1>Changed</h1>"), "{}", d.diff);
    assert!(d.diff.contains("+++ b/src/new.ts"), "{}", d.diff);
    assert_eq!(
        version_diff(&*store, &*blobs, &project.id, 1)
            .await
            .unwrap()
            .file_diffs
            .len(),
        v1_tree.files.len()
    );

    // Restoring version 1 puts its files back and is itself version 3.
    let v3 = restore_version(&*store, &*blobs, &sb, &project.id, 1)
        .await
        .unwrap();
    assert_eq!((v3.number, v3.run_id.as_deref()), (3, None));
    assert_eq!(v3.summary, "Restored version 1");
    assert_eq!(
        listing(&sb.export_source().await.unwrap()),
        listing(&v1_tree)
    );
    assert_eq!(v3.file_diffs.len(), 3);
    assert_eq!(store.list_versions(&project.id).await.unwrap().len(), 3);
    assert_eq!(
        diff_trees(
            &v2_tree,
            &load_tree(&*blobs, &v3.snapshot_key).await.unwrap()
        )
        .len(),
        3
    );
    assert!(matches!(
        restore_version(&*store, &*blobs, &sb, &project.id, 9).await,
        Err(apna::Error::NotFound(_))
    ));

    // A running generation holds the lock: restore refuses rather than race it.
    assert!(store.acquire_run_lock(&project.id, "run-9").await.unwrap());
    assert!(matches!(
        restore_version(&*store, &*blobs, &sb, &project.id, 2).await,
        Err(apna::Error::Conflict(_))
    ));
    let out = hibernate_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(matches!(out, HibernateOutcome::Skipped { .. }), "{out:?}");
    assert_eq!(sb.inner.status().await.unwrap().state, SandboxState::Ready);
    assert!(store.release_run_lock(&project.id, "run-9").await.unwrap());

    // The zip holds exactly the tree.
    let zip = zip_tree(&v1_tree).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert_eq!(archive.len(), v1_tree.files.len());
    let mut f = archive.by_name("public/logo.png").unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut data).unwrap();
    assert_eq!(
        data,
        v1_tree
            .files
            .iter()
            .find(|f| f.path == "public/logo.png")
            .unwrap()
            .data
    );
}

#[tokio::test]
async fn versions_fs() {
    let (blobs, _dir) = fs_blobs().await;
    versions(blobs).await;
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn versions_s3() {
    let Some(blobs) = s3_blobs().await else {
        return;
    };
    versions(blobs).await;
}

/// Two wakes at once: exactly one restores, both end with a ready project.
#[tokio::test]
async fn concurrent_wakes_restore_once() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = Arc::new(FaultyProvider::new(Arc::new(Faults::default())));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 3);
    let original = sb.export_source().await.unwrap();
    hibernate_project(&*store, &*blobs, &*provider, &project.id)
        .await
        .unwrap();
    let wake = |store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, provider: Arc<FaultyProvider>| {
        let id = project.id.clone();
        tokio::spawn(async move { wake_project(&*store, &*blobs, &*provider, &id).await })
    };
    let a = wake(store.clone(), blobs.clone(), provider.clone());
    let b = wake(store.clone(), blobs.clone(), provider.clone());
    let outcomes = [a.await.unwrap().unwrap(), b.await.unwrap().unwrap()];
    let woken = outcomes
        .iter()
        .filter(|o| matches!(o, WakeOutcome::Woken { .. }))
        .count();
    assert_eq!(woken, 1, "{outcomes:?}");
    assert_eq!(sb.imports(), 1);
    assert_eq!(
        listing(&sb.export_source().await.unwrap()),
        listing(&original)
    );
    assert_eq!(
        store
            .get_project(&project.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ProjectStatus::Ready
    );
    assert_eq!(store.run_lock_holder(&project.id).await.unwrap(), None);
}

/// A project that added a package gets `npm install` on wake, before the dev server starts.
#[tokio::test]
async fn wake_installs_added_packages() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 4);
    let mut pkg: serde_json::Value = serde_json::from_str(&template_package_json()).unwrap();
    pkg["dependencies"]["zod"] = "^3.23.8".into();
    sb.inner.put("package.json", &pkg.to_string());
    sb.inner.set_exec_handler(Arc::new(|_| ExecOutput {
        exit_code: Some(1),
        output: "npm ERR! network".into(),
        truncated: false,
        timed_out: false,
    }));
    hibernate_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    let out = wake_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    // A failed install does not keep the project asleep: its files are back.
    assert!(
        matches!(
            out,
            WakeOutcome::Woken {
                installed_packages: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        sb.inner.commands(),
        vec![snapshot::INSTALL_COMMAND.to_string()]
    );
    assert_eq!(sb.inner.file("package.json").unwrap(), pkg.to_string(),);
}

/// The first version lists what changed since the project's starting tree
/// (recorded once, before the first run), not every template file.
#[tokio::test]
async fn the_first_version_is_compared_with_the_starting_tree() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 1);
    assert!(snapshot::record_base(&*blobs, &sb, "app").await.unwrap());
    assert!(snapshot::get_base(&*blobs, &project.id)
        .await
        .unwrap()
        .is_some());
    sb.inner.put(
        "src/App.tsx",
        "export default function App() {\n  return <h1>Habits</h1>\n}\n",
    );
    sb.inner
        .put("src/Habit.tsx", "export const Habit = () => null\n");
    // Recorded once: a later run (the tree has changed) keeps the first base.
    assert!(!snapshot::record_base(&*blobs, &sb, "app").await.unwrap());
    let v1 = record_version(&*store, &*blobs, &sb, &project.id, Some("run-1"), "First")
        .await
        .unwrap();
    assert_eq!(
        actions(&v1),
        vec![
            ("src/App.tsx", FileAction::Update),
            ("src/Habit.tsx", FileAction::Create),
        ]
    );
    let d = version_diff(&*store, &*blobs, &project.id, 1)
        .await
        .unwrap();
    assert!(d.diff.contains("-  return <h1>App 1</h1>"), "{}", d.diff);
    assert!(d.diff.contains("+  return <h1>Habits</h1>"), "{}", d.diff);
    assert!(!d.diff.contains("package.json"), "{}", d.diff);
    // A project with history but no base (older than bases) gets none.
    let old = ready_project(&*store).await;
    let old_sb = provider.get(&old.id);
    fill_app(&old_sb.inner, 2);
    record_version(&*store, &*blobs, &old_sb, &old.id, Some("r"), "Old")
        .await
        .unwrap();
    assert!(!snapshot::record_base(&*blobs, &old_sb, "app")
        .await
        .unwrap());
}

/// A restore installs packages only when the restored `package.json` asks for
/// other packages than the one it replaces, and then once.
#[tokio::test]
async fn restore_installs_only_when_packages_change() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 2);
    sb.inner.put("package.json", &template_package_json());
    let record = |run: &'static str| {
        let (store, blobs, sb, id) = (&store, &blobs, &sb, project.id.clone());
        async move {
            record_version(&**store, &**blobs, sb, &id, Some(run), run)
                .await
                .unwrap()
        }
    };
    record("run-1").await;
    let mut pkg: serde_json::Value = serde_json::from_str(&template_package_json()).unwrap();
    pkg["dependencies"]["zod"] = "^3.23.8".into();
    sb.inner.put("package.json", &pkg.to_string());
    record("run-2").await;
    sb.inner.put("src/App.tsx", "export default () => null\n");
    record("run-3").await;

    // Version 2 has the same packages as the files it replaces: no install.
    restore_version(&*store, &*blobs, &sb, &project.id, 2)
        .await
        .unwrap();
    assert!(sb.inner.commands().is_empty(), "{:?}", sb.inner.commands());
    // Version 1 drops zod: one install.
    restore_version(&*store, &*blobs, &sb, &project.id, 1)
        .await
        .unwrap();
    assert_eq!(
        sb.inner.commands(),
        vec![snapshot::INSTALL_COMMAND.to_string()]
    );
    assert_eq!(
        sb.inner.file("package.json").unwrap(),
        template_package_json()
    );
}

/// The sweep (the hibernation state machine, run by the interpreter over the
/// real task handlers) hibernates idle ready/failed projects only.
#[tokio::test]
async fn sweep_hibernates_idle_projects() {
    let (blobs, dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = Arc::new(FaultyProvider::new(Arc::new(Faults::default())));
    let idle = ready_project(&*store).await;
    let running = ready_project(&*store).await;
    let fresh = ready_project(&*store).await;
    for p in [&idle, &running, &fresh] {
        fill_app(&provider.get(&p.id).inner, 5);
    }
    assert!(store
        .set_project_status(
            &running.id,
            ProjectStatus::Ready,
            ProjectStatus::Building,
            None
        )
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    store
        .touch_project(&fresh.id, apna::domain::now())
        .await
        .unwrap();
    // POD_TTL_HOURS of 20 ms.
    let config = config(dir.path(), &[("POD_TTL_HOURS", "0.0000056")]);
    let backends = apna::app::Backends::new(
        config,
        store.clone(),
        blobs.clone(),
        provider.clone(),
        Arc::new(apna::testing::model::NoModel),
    );
    let workflow = apna::workflow::LocalWorkflow::new(
        store.clone(),
        Arc::new(apna::tasks::TaskRouter::new(backends)),
        [(apna::run::HIBERNATION, apna::server::HIBERNATION_ASL)],
    )
    .unwrap();
    apna::workflow::Workflow::start(
        &workflow,
        apna::run::HIBERNATION,
        "sweep",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let exec = workflow.wait("sweep").await.unwrap().unwrap();
    assert_eq!(
        exec.status,
        apna::domain::ExecutionStatus::Succeeded,
        "{exec:?}"
    );
    let swept = exec.output.unwrap().to_string();
    assert!(swept.contains(&idle.id), "{swept}");
    assert!(
        !swept.contains(&running.id) && !swept.contains(&fresh.id),
        "{swept}"
    );
    for (p, status) in [
        (&idle, ProjectStatus::Hibernated),
        (&running, ProjectStatus::Building),
        (&fresh, ProjectStatus::Ready),
    ] {
        assert_eq!(
            store.get_project(&p.id).await.unwrap().unwrap().status,
            status
        );
    }
}

/// A corrupted object is caught by wake (checksum) and by hibernation's verification.
#[tokio::test]
async fn corruption_is_detected() {
    let (blobs, dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 6);
    let info = take_snapshot(&*blobs, &sb, "app").await.unwrap();
    snapshot::verify_snapshot(&*blobs, &info).await.unwrap();
    let manifest = snapshot::read_manifest(&*blobs, &info.key).await.unwrap();
    let victim = dir.path().join("blobs").join(format!(
        "projects/{}/objects/{}",
        project.id, manifest.files[0].sha256
    ));
    std::fs::write(&victim, zstd::bulk::compress(b"tampered", 3).unwrap()).unwrap();
    assert!(snapshot::verify_snapshot(&*blobs, &info).await.is_err());
    let err = load_tree(&*blobs, &info.key).await.unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    std::fs::remove_file(&victim).unwrap();
    assert!(snapshot::verify_snapshot(&*blobs, &info).await.is_err());
    // Taking a snapshot again re-uploads the missing object, after which it verifies.
    let info = take_snapshot(&*blobs, &sb, "app").await.unwrap();
    assert_eq!(info.objects_new, 1);
    snapshot::verify_snapshot(&*blobs, &info).await.unwrap();
}

/// Every public async function can run on a spawned task (as API handlers and
/// the scheduler do): their futures are `Send`.
#[tokio::test]
async fn public_futures_are_send() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = Arc::new(FaultyProvider::new(Arc::new(Faults::default())));
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 7);
    let id = project.id.clone();
    let (s, b, p) = (store.clone(), blobs.clone(), provider.clone());
    let sbx = sb.clone();
    tokio::spawn(async move {
        let info = take_snapshot(&*b, &sbx, "app").await.unwrap();
        load_tree(&*b, &info.key).await.unwrap();
        snapshot::restore(&*b, &sbx, &info.key).await.unwrap();
        snapshot::set_latest(&*b, &id, &info.key).await.unwrap();
        record_version(&*s, &*b, &sbx, &id, None, "v")
            .await
            .unwrap();
        version_diff(&*s, &*b, &id, 1).await.unwrap();
        restore_version(&*s, &*b, &sbx, &id, 1).await.unwrap();
        hibernate_project(&*s, &*b, &*p, &id).await.unwrap();
        wake_project(&*s, &*b, &*p, &id).await.unwrap();
    })
    .await
    .unwrap();
    assert_eq!(store.list_versions(&project.id).await.unwrap().len(), 2);
    assert_eq!(
        store
            .get_project(&project.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ProjectStatus::Ready
    );
}

/// A status change during hibernation (here: the project is deleted while its
/// snapshot uploads) stops it before anything is removed.
#[tokio::test]
async fn status_change_mid_hibernation_keeps_the_sandbox() {
    let (inner, _dir) = fs_blobs().await;
    let faults = Arc::new(Faults::default());
    let blobs = FaultyBlobStore::new(inner, faults.clone());
    let store = memory_store().await;
    let provider = FaultyProvider::new(faults);
    let project = ready_project(&*store).await;
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 8);
    let original = sb.export_source().await.unwrap();
    let (s, id) = (store.clone(), project.id.clone());
    blobs.before_put(
        "/latest",
        Box::pin(async move {
            assert!(s.soft_delete_project(&id).await.unwrap());
        }),
    );
    let out = hibernate_project(&*store, &blobs, &provider, &project.id)
        .await
        .unwrap();
    assert_eq!(
        out,
        HibernateOutcome::Skipped {
            reason: "status changed meanwhile".into()
        }
    );
    assert_eq!(
        listing(&sb.export_source().await.unwrap()),
        listing(&original)
    );
    assert_eq!(
        store
            .get_project(&project.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ProjectStatus::Deleted
    );
    assert_eq!(store.run_lock_holder(&project.id).await.unwrap(), None);
}

/// A project whose last run failed hibernates too, and wakes ready.
#[tokio::test]
async fn failed_projects_hibernate_and_wake_ready() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let project = ready_project(&*store).await;
    for (from, to) in [
        (ProjectStatus::Ready, ProjectStatus::Building),
        (ProjectStatus::Building, ProjectStatus::Failed),
    ] {
        assert!(store
            .set_project_status(&project.id, from, to, Some("boom"))
            .await
            .unwrap());
    }
    let sb = provider.get(&project.id);
    fill_app(&sb.inner, 9);
    let original = sb.export_source().await.unwrap();
    let out = hibernate_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(
        matches!(out, HibernateOutcome::Hibernated { .. }),
        "{out:?}"
    );
    let out = wake_project(&*store, &*blobs, &provider, &project.id)
        .await
        .unwrap();
    assert!(matches!(out, WakeOutcome::Woken { .. }), "{out:?}");
    assert_eq!(
        listing(&sb.export_source().await.unwrap()),
        listing(&original)
    );
    assert_eq!(
        store
            .get_project(&project.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ProjectStatus::Ready
    );
}

#[tokio::test]
async fn snapshots_record_the_starter_and_wake_starts_from_it() {
    let (blobs, _dir) = fs_blobs().await;
    let store = memory_store().await;
    let provider = FaultyProvider::new(Arc::new(Faults::default()));
    let p = apna::domain::Project::new(apna::domain::LOCAL_USER, "sales", "dashboard");
    store.create_project(&p).await.unwrap();
    for (from, to) in [
        (ProjectStatus::Creating, ProjectStatus::Building),
        (ProjectStatus::Building, ProjectStatus::Ready),
    ] {
        assert!(store
            .set_project_status(&p.id, from, to, None)
            .await
            .unwrap());
    }
    let sb = provider.get(&p.id);
    fill_app(&sb.inner, 3);
    let HibernateOutcome::Hibernated { snapshot } =
        hibernate_project(&*store, &*blobs, &provider, &p.id)
            .await
            .unwrap()
    else {
        panic!("not hibernated")
    };
    let manifest = snapshot::read_manifest(&*blobs, &snapshot.key)
        .await
        .unwrap();
    assert_eq!(manifest.template.as_deref(), Some("dashboard"));
    assert!(matches!(
        wake_project(&*store, &*blobs, &provider, &p.id)
            .await
            .unwrap(),
        WakeOutcome::Woken { .. }
    ));
    assert_eq!(sb.inner.starter().as_deref(), Some("dashboard"));

    // A snapshot from before starters were recorded: the starter whose
    // packages the tree asks for (the old template is today's `minimal`).
    let mut old = manifest.clone();
    old.template = None;
    let mut tree = load_tree(&*blobs, &snapshot.key).await.unwrap();
    let minimal = apna::starter::find("minimal").unwrap().package_json;
    for f in &mut tree.files {
        if f.path == "package.json" {
            f.data = minimal.as_bytes().to_vec();
        }
    }
    assert_eq!(snapshot::starter_of(&old, &tree), "minimal");
    for f in &mut tree.files {
        if f.path == "package.json" {
            f.data = br#"{"dependencies":{"left-pad":"1.0.0"}}"#.to_vec();
        }
    }
    assert_eq!(snapshot::starter_of(&old, &tree), "app");
    old.template = Some("vite-react".into());
    assert_eq!(snapshot::starter_of(&old, &tree), "minimal");
}
