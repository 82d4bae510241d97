//! Fault injection for hibernation and wake: every blob-store and sandbox
//! call of a hibernation (and of a wake) is made to fail in turn — an error
//! before the call, an error after it (lost response), a half-done call, and a
//! crash (the future is dropped mid-way, as if the process died). After each
//! trial a checker requires that no file was lost: the project is either
//! running (status ready, sandbox present with the exact tree) or restorable
//! (status hibernated, and wake gives back the exact tree).

use std::sync::Arc;
use std::time::Duration;

use apna::blob::BlobStore;
use apna::domain::ProjectStatus;
use apna::sandbox::{Sandbox, SandboxState, SourceTree};
use apna::snapshot::{
    hibernate_project, record_version, release_stale_lock, wake_project, WakeOutcome,
};
use apna::store::Store;
use apna::testing::{faults::*, fixtures::*};

const MODES: [Mode; 4] = [
    Mode::FailBefore,
    Mode::FailAfter,
    Mode::Partial,
    Mode::Crash,
];

struct Env {
    store: Arc<dyn Store>,
    blobs: FaultyBlobStore,
    faults: Arc<Faults>,
    provider: FaultyProvider,
}

impl Env {
    fn new(store: Arc<dyn Store>, inner: Arc<dyn BlobStore>) -> Env {
        let faults = Arc::new(Faults::default());
        Env {
            store,
            blobs: FaultyBlobStore::new(inner, faults.clone()),
            provider: FaultyProvider::new(faults.clone()),
            faults,
        }
    }

    /// A ready project with one recorded version and changes since, so the
    /// hibernation both reuses and uploads objects. Returns its tree.
    async fn project(&self, seed: usize) -> (String, SourceTree) {
        self.faults.disarm();
        let p = ready_project(&*self.store).await;
        let sb = self.provider.get(&p.id);
        fill_app(&sb.inner, seed);
        record_version(&*self.store, &self.blobs, &sb, &p.id, Some("run-1"), "v1")
            .await
            .unwrap();
        sb.inner.put(
            "src/App.tsx",
            &format!("export default function App() {{\n  return <h1>Edited {seed}</h1>\n}}\n"),
        );
        sb.inner.put(
            "src/lib/format.ts",
            "export const fmt = (n: number) => n.toFixed(2)\n",
        );
        let tree = sb.inner.export_source().await.unwrap();
        (p.id, tree)
    }

    async fn hibernate(&self, id: &str) -> Option<apna::Result<apna::snapshot::HibernateOutcome>> {
        run_or_crash(
            &self.faults,
            hibernate_project(&*self.store, &self.blobs, &self.provider, id),
        )
        .await
    }

    async fn wake(&self, id: &str) -> Option<apna::Result<WakeOutcome>> {
        run_or_crash(
            &self.faults,
            wake_project(&*self.store, &self.blobs, &self.provider, id),
        )
        .await
    }

    /// The invariant after any fault. Returns which of the two safe states it found.
    async fn check(&self, id: &str, tree: &SourceTree, what: &str) -> &'static str {
        self.faults.disarm();
        // Time passes: a hold left by a "crashed" task expires.
        release_stale_lock(&*self.store, id, Duration::ZERO)
            .await
            .unwrap();
        let sb = self.provider.get(id);
        let status = self.store.get_project(id).await.unwrap().unwrap().status;
        let found = match status {
            ProjectStatus::Ready | ProjectStatus::Failed => {
                assert_ne!(
                    sb.inner.status().await.unwrap().state,
                    SandboxState::Missing,
                    "{what}: status {status:?} but the sandbox is gone"
                );
                "running"
            }
            ProjectStatus::Hibernated => {
                let out = wake_project(&*self.store, &self.blobs, &self.provider, id)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: hibernated but wake fails: {e}"));
                assert!(
                    matches!(out, WakeOutcome::Woken { .. }),
                    "{what}: wake gave {out:?}"
                );
                assert_eq!(
                    self.store.get_project(id).await.unwrap().unwrap().status,
                    ProjectStatus::Ready,
                    "{what}"
                );
                "restorable"
            }
            other => panic!("{what}: project left in status {other:?}"),
        };
        assert_eq!(
            listing(&sb.inner.export_source().await.unwrap()),
            listing(tree),
            "{what}: files differ ({found})"
        );
        assert_eq!(
            self.store.run_lock_holder(id).await.unwrap(),
            None,
            "{what}: lock still held"
        );
        found
    }
}

/// Runs every fault at every call of a hibernation and of a wake; returns the trial count.
async fn fault_matrix(env: &Env) -> usize {
    // Call counts of clean runs (the same on every project built by `Env::project`).
    let (id, tree) = env.project(0).await;
    env.faults.disarm();
    env.hibernate(&id).await.unwrap().unwrap();
    let hibernate_calls = env.faults.calls();
    let hibernate_log = env.faults.log();
    env.faults.disarm();
    assert!(matches!(
        env.wake(&id).await.unwrap().unwrap(),
        WakeOutcome::Woken { .. }
    ));
    let wake_calls = env.faults.calls();
    let wake_log = env.faults.log();
    env.check(&id, &tree, "clean run").await;
    println!("hibernate calls: {hibernate_log:?}\nwake calls: {wake_log:?}");
    assert!(hibernate_log.contains(&"export_source".to_string()));
    assert!(hibernate_log.contains(&"destroy".to_string()));
    assert!(wake_log.contains(&"import_source".to_string()));

    let mut trials = 0;
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for mode in MODES {
        for k in 1..=hibernate_calls {
            let (id, tree) = env.project(trials + 1).await;
            env.faults.arm(k, mode);
            let result = env.hibernate(&id).await;
            let what = format!(
                "hibernate, {mode:?} at call {k} ({}) -> {}",
                hibernate_log[k - 1],
                match &result {
                    None => "crashed".to_string(),
                    Some(r) => format!("{r:?}"),
                }
            );
            assert!(env.faults.calls() >= k, "{what}: fault not reached");
            *seen.entry(env.check(&id, &tree, &what).await).or_default() += 1;
            trials += 1;
        }
        for k in 1..=wake_calls {
            let (id, tree) = env.project(trials + 1).await;
            env.hibernate(&id).await.unwrap().unwrap();
            env.faults.arm(k, mode);
            let result = env.wake(&id).await;
            let what = format!(
                "wake, {mode:?} at call {k} ({}) -> {}",
                wake_log[k - 1],
                match &result {
                    None => "crashed".to_string(),
                    Some(r) => format!("{r:?}"),
                }
            );
            assert!(env.faults.calls() >= k, "{what}: fault not reached");
            *seen.entry(env.check(&id, &tree, &what).await).or_default() += 1;
            trials += 1;
        }
    }
    println!(
        "{} trials on {}: {seen:?}",
        trials,
        env.blobs.inner.backend()
    );
    // Both safe states occur: early faults keep it running, late ones leave it restorable.
    assert!(seen.get("running").copied().unwrap_or(0) > 0);
    assert!(seen.get("restorable").copied().unwrap_or(0) > 0);
    trials
}

#[tokio::test]
async fn hibernation_survives_every_fault_fs() {
    let (blobs, _dir) = fs_blobs().await;
    let env = Env::new(memory_store().await, blobs);
    let trials = fault_matrix(&env).await;
    assert!(trials >= 100, "only {trials} trials");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn hibernation_survives_every_fault_s3() {
    let Some(blobs) = s3_blobs().await else {
        return;
    };
    let env = Env::new(memory_store().await, blobs);
    let trials = fault_matrix(&env).await;
    assert!(trials >= 100, "only {trials} trials");
}
