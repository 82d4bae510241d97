//! Failures on demand: a blob store and a sandbox that fail (or "crash": the
//! caller's future never resolves, as if the process died) at the k-th call,
//! counted across both, with a log of the calls made.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::memory::MemorySandbox;
use crate::blob::{BlobMeta, BlobStore, ByteStream};
use crate::error::{Error, Result};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxProvider, SandboxStatus,
    SmokeReport, SmokeRequest, SourceTree,
};

/// How the armed call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Returns an error without doing anything.
    FailBefore,
    /// Does the work, then returns an error (a lost response).
    FailAfter,
    /// Never returns: the caller's future is dropped, as if the process died.
    Crash,
    /// For `destroy`: removes half the files, then errors. Else like `FailAfter`.
    Partial,
}

/// Counts calls across the blob store and the sandbox and fails one of them.
#[derive(Default)]
pub struct Faults {
    calls: AtomicUsize,
    plan: Mutex<Option<(usize, Mode)>>,
    log: Mutex<Vec<String>>,
    crashed: Notify,
}

impl Faults {
    /// Fails call number `at` (1-based, counted from now) with `mode`.
    pub fn arm(&self, at: usize, mode: Mode) {
        self.calls.store(0, Ordering::SeqCst);
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, mode));
    }

    /// Counts from now without failing.
    pub fn disarm(&self) {
        self.calls.store(0, Ordering::SeqCst);
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Calls made since the last arm/disarm.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The calls made since the last arm/disarm, by name.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves when an armed `Crash` is reached.
    pub async fn crashed(&self) {
        self.crashed.notified().await
    }

    /// The armed mode if this call is the one to fail.
    fn next(&self, op: &str) -> Option<Mode> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(op.to_string());
        match *self.plan.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, mode)) if at == n => Some(mode),
            _ => None,
        }
    }

    async fn gate<T>(
        &self,
        op: &str,
        err: fn(String) -> Error,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.next(op) {
            None => work.await,
            Some(Mode::FailBefore) => Err(err(format!("injected failure before {op}"))),
            Some(Mode::FailAfter) | Some(Mode::Partial) => {
                let _ = work.await;
                Err(err(format!("injected failure after {op}")))
            }
            Some(Mode::Crash) => self.crash().await,
        }
    }

    /// Signals the crash and never returns.
    async fn crash<T>(&self) -> T {
        self.crashed.notify_one();
        std::future::pending().await
    }
}

/// Runs `fut` unless the armed crash fires first; `None` means it "crashed".
pub async fn run_or_crash<T>(faults: &Faults, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = fut => Some(r),
        _ = faults.crashed() => None,
    }
}

/// Something to run before a put whose key ends with a suffix (once).
pub type PutHook = (String, futures::future::BoxFuture<'static, ()>);

/// A blob store that passes every call through [`Faults`].
pub struct FaultyBlobStore {
    /// The store calls pass through to.
    pub inner: Arc<dyn BlobStore>,
    /// Decides which call fails.
    pub faults: Arc<Faults>,
    /// Run once before a matching put (see [`FaultyBlobStore::before_put`]).
    pub hooks: Mutex<Vec<PutHook>>,
}

impl FaultyBlobStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>, faults: Arc<Faults>) -> Self {
        FaultyBlobStore {
            inner,
            faults,
            hooks: Mutex::new(Vec::new()),
        }
    }

    /// Runs `hook` just before the next put of a key ending with `suffix`.
    pub fn before_put(&self, suffix: &str, hook: futures::future::BoxFuture<'static, ()>) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((suffix.to_string(), hook));
    }
}

#[async_trait]
impl BlobStore for FaultyBlobStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<BlobMeta> {
        let hook = {
            let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
            let i = hooks.iter().position(|(s, _)| key.ends_with(s.as_str()));
            i.map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook.await;
        }
        self.faults
            .gate("put", Error::Blob, self.inner.put(key, data))
            .await
    }
    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<BlobMeta> {
        self.faults
            .gate("put_stream", Error::Blob, self.inner.put_stream(key, data))
            .await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.faults
            .gate("get", Error::Blob, self.inner.get(key))
            .await
    }
    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        self.faults
            .gate("get_stream", Error::Blob, self.inner.get_stream(key))
            .await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>> {
        self.faults
            .gate("head", Error::Blob, self.inner.head(key))
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.faults
            .gate("list", Error::Blob, self.inner.list(prefix))
            .await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.faults
            .gate("delete", Error::Blob, self.inner.delete(key))
            .await
    }
}

/// A [`MemorySandbox`] whose state-changing and exporting calls pass through [`Faults`].
#[derive(Clone)]
pub struct FaultySandbox {
    /// The sandbox calls pass through to.
    pub inner: MemorySandbox,
    /// Decides which call fails.
    pub faults: Arc<Faults>,
    imports: Arc<AtomicUsize>,
}

impl FaultySandbox {
    /// How many times `import_source` ran.
    pub fn imports(&self) -> usize {
        self.imports.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Sandbox for FaultySandbox {
    fn project_id(&self) -> &str {
        self.inner.project_id()
    }
    async fn ensure(&self) -> Result<SandboxStatus> {
        self.faults
            .gate("ensure", Error::Sandbox, self.inner.ensure())
            .await
    }
    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        self.faults
            .gate("ensure", Error::Sandbox, self.inner.ensure_from(starter))
            .await
    }
    async fn status(&self) -> Result<SandboxStatus> {
        self.faults
            .gate("status", Error::Sandbox, self.inner.status())
            .await
    }
    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.inner.read_file(path).await
    }
    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.inner.write_file(path, data).await
    }
    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.inner.delete_file(path).await
    }
    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.inner.list_files().await
    }
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        self.faults
            .gate("exec", Error::Sandbox, self.inner.exec(req))
            .await
    }
    async fn logs(&self, lines: usize) -> Result<String> {
        self.inner.logs(lines).await
    }
    async fn stop(&self) -> Result<()> {
        self.inner.stop().await
    }
    async fn destroy(&self) -> Result<()> {
        match self.faults.next("destroy") {
            None => self.inner.destroy().await,
            Some(Mode::Crash) => self.faults.crash().await,
            Some(Mode::FailBefore) => Err(Error::Sandbox("injected failure before destroy".into())),
            Some(Mode::FailAfter) => {
                self.inner.destroy().await?;
                Err(Error::Sandbox("injected failure after destroy".into()))
            }
            Some(Mode::Partial) => {
                // A destroy that dies half way: some files gone, the rest still there.
                let paths = self.inner.paths();
                for p in paths.iter().take(paths.len() / 2) {
                    self.inner.delete_file(&ProjectPath::parse(p)?).await?;
                }
                Err(Error::Sandbox(
                    "injected failure half way through destroy".into(),
                ))
            }
        }
    }
    async fn export_source(&self) -> Result<SourceTree> {
        self.faults
            .gate("export_source", Error::Sandbox, self.inner.export_source())
            .await
    }
    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        self.faults
            .gate("smoke_check", Error::Sandbox, self.inner.smoke_check(req))
            .await
    }
    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        self.imports.fetch_add(1, Ordering::SeqCst);
        match self.faults.next("import_source") {
            None => self.inner.import_source(tree).await,
            Some(Mode::Crash) => self.faults.crash().await,
            Some(Mode::FailBefore) => Err(Error::Sandbox(
                "injected failure before import_source".into(),
            )),
            Some(Mode::FailAfter) => {
                self.inner.import_source(tree).await?;
                Err(Error::Sandbox(
                    "injected failure after import_source".into(),
                ))
            }
            Some(Mode::Partial) => {
                // Half the files written over whatever was there.
                for f in tree.files.iter().take(tree.files.len() / 2) {
                    self.inner
                        .write_file(&ProjectPath::parse(&f.path)?, &f.data)
                        .await?;
                }
                Err(Error::Sandbox(
                    "injected failure half way through import_source".into(),
                ))
            }
        }
    }
}

/// One [`FaultySandbox`] per project, created on first use, all sharing one [`Faults`].
pub struct FaultyProvider {
    /// Shared by every sandbox handed out.
    pub faults: Arc<Faults>,
    sandboxes: Mutex<HashMap<String, FaultySandbox>>,
}

impl FaultyProvider {
    /// A provider whose sandboxes fail as `faults` is armed.
    pub fn new(faults: Arc<Faults>) -> Self {
        FaultyProvider {
            faults,
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    /// The concrete sandbox of a project.
    pub fn get(&self, project_id: &str) -> FaultySandbox {
        self.sandboxes
            .lock()
            .unwrap()
            .entry(project_id.to_string())
            .or_insert_with(|| FaultySandbox {
                inner: MemorySandbox::new(project_id),
                faults: self.faults.clone(),
                imports: Arc::new(AtomicUsize::new(0)),
            })
            .clone()
    }
}

impl SandboxProvider for FaultyProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.get(project_id)))
    }
    fn backend(&self) -> &'static str {
        "faulty-memory"
    }
}

/// Sandboxes that take `delay` for every call (an EKS pod being scheduled, a
/// volume attaching), then act like [`MemorySandbox`]: for checking that a
/// request path does not wait for a sandbox.
pub struct SlowProvider {
    delay: std::time::Duration,
    inner: super::memory::MemoryProvider,
    calls: Arc<AtomicUsize>,
}

impl SlowProvider {
    /// Sandboxes taking `delay` per call.
    pub fn new(delay: std::time::Duration) -> Self {
        SlowProvider {
            delay,
            inner: super::memory::MemoryProvider::default(),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Calls made to any of its sandboxes so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct SlowSandbox {
    delay: std::time::Duration,
    inner: MemorySandbox,
    calls: Arc<AtomicUsize>,
}

impl SlowSandbox {
    async fn wait(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
    }
}

#[async_trait]
impl Sandbox for SlowSandbox {
    fn project_id(&self) -> &str {
        self.inner.project_id()
    }
    async fn ensure(&self) -> Result<SandboxStatus> {
        self.wait().await;
        self.inner.ensure().await
    }
    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        self.wait().await;
        self.inner.ensure_from(starter).await
    }
    async fn status(&self) -> Result<SandboxStatus> {
        self.wait().await;
        self.inner.status().await
    }
    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.wait().await;
        self.inner.read_file(path).await
    }
    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.wait().await;
        self.inner.write_file(path, data).await
    }
    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.wait().await;
        self.inner.delete_file(path).await
    }
    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.wait().await;
        self.inner.list_files().await
    }
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        self.wait().await;
        self.inner.exec(req).await
    }
    async fn logs(&self, lines: usize) -> Result<String> {
        self.wait().await;
        self.inner.logs(lines).await
    }
    async fn stop(&self) -> Result<()> {
        self.wait().await;
        self.inner.stop().await
    }
    async fn destroy(&self) -> Result<()> {
        self.wait().await;
        self.inner.destroy().await
    }
    async fn export_source(&self) -> Result<SourceTree> {
        self.wait().await;
        self.inner.export_source().await
    }
    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        self.wait().await;
        self.inner.import_source(tree).await
    }
}

impl SandboxProvider for SlowProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(SlowSandbox {
            delay: self.delay,
            inner: self.inner.get(project_id),
            calls: self.calls.clone(),
        }))
    }
    fn backend(&self) -> &'static str {
        "slow"
    }
}
