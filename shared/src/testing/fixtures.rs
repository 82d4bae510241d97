//! Fixtures: configs, stores, blob stores, projects and source trees.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "aws")]
use crate::blob::S3BlobStore;
use crate::blob::{BlobStore, FsBlobStore};
use crate::config::Config;
use crate::domain::{Project, ProjectStatus, DEFAULT_TEMPLATE, LOCAL_USER};
use crate::sandbox::{ProjectPath, Sandbox, SourceFile, SourceTree};
use crate::store::{SqliteStore, Store};

use super::memory::MemorySandbox;

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A config from `vars` over defaults, with its data dir at `data_dir`.
pub fn config(data_dir: &Path, vars: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.entry("APNA_DATA_DIR".into())
        .or_insert_with(|| data_dir.display().to_string());
    Config::from_vars(env).unwrap()
}

/// A config for a whole local server in `data_dir` whose model is the mock
/// Anthropic API at `mock_url`: the template cache shared by all tests
/// (installed once), a free port, plus `extra`.
pub fn server_config(data_dir: &Path, mock_url: &str, extra: &[(&str, &str)]) -> Config {
    let cache = super::local::test_cache_dir().display().to_string();
    let mut vars = vec![
        ("APNA_TEMPLATE_CACHE", cache.as_str()),
        ("ANTHROPIC_BASE_URL", mock_url),
        ("ANTHROPIC_API_KEY", "test-key"),
        ("PORT", "0"),
    ];
    vars.extend_from_slice(extra);
    config(data_dir, &vars)
}

/// An in-memory SQLite store.
pub async fn memory_store() -> Arc<dyn Store> {
    Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap())
}

/// A blob store in a temporary directory (keep the guard alive).
pub async fn fs_blobs() -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs")).await.unwrap();
    (Arc::new(blobs), dir)
}

/// An S3 blob store on moto, or `None` when `APNA_TEST_MOTO_URL` is unset.
#[cfg(feature = "aws")]
pub async fn s3_blobs() -> Option<Arc<dyn BlobStore>> {
    let url = super::services::moto_url()?;
    let store = S3BlobStore::connect("apna-snapshot-tests", "us-east-1", Some(&url))
        .await
        .unwrap();
    // Tests run in parallel: create the bucket once, not in a race.
    static BUCKET: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);
    let mut ready = BUCKET.lock().await;
    if !*ready {
        store.ensure_bucket().await.unwrap();
        *ready = true;
    }
    Some(Arc::new(store))
}

/// A project in status `ready`.
pub async fn ready_project(store: &dyn Store) -> Project {
    let p = Project::new(LOCAL_USER, "a habit tracker", DEFAULT_TEMPLATE);
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
    store.get_project(&p.id).await.unwrap().unwrap()
}

/// The default starter's real `package.json`, so wake sees unchanged dependencies.
pub fn template_package_json() -> String {
    crate::starter::find(crate::domain::DEFAULT_TEMPLATE)
        .unwrap()
        .package_json
        .to_string()
}

/// Fills a sandbox with a realistic app: template files, generated components,
/// a duplicate file, a binary asset, an empty file, and ignored build output.
pub fn fill_app(sb: &MemorySandbox, seed: usize) {
    for (path, body) in [
        ("index.html", "<!doctype html>\n<div id=\"root\"></div>\n<script type=\"module\" src=\"/src/main.tsx\"></script>\n".to_string()),
        ("package.json", template_package_json()),
        ("src/main.tsx", "import { createRoot } from 'react-dom/client'\nimport App from './App'\ncreateRoot(document.getElementById('root')!).render(<App />)\n".to_string()),
        ("src/App.tsx", format!("export default function App() {{\n  return <h1>App {seed}</h1>\n}}\n")),
        ("src/index.css", "@import \"tailwindcss\";\n".to_string()),
        ("src/copy-of-index.css", "@import \"tailwindcss\";\n".to_string()),
        ("src/empty.ts", String::new()),
        ("dist/index.js", "built".to_string()),
        ("node_modules/react/index.js", "module.exports = {}".to_string()),
    ] {
        sb.put(path, &body);
    }
    for i in 0..6 {
        sb.put(
            &format!("src/components/Widget{i}.tsx"),
            &format!(
                "export function Widget{i}() {{\n  return <div className=\"p-{i}\">widget {i} of project {seed}</div>\n}}\n"
            ),
        );
    }
    let png: Vec<u8> = (0..300u32).map(|i| (i * 7 + seed as u32) as u8).collect();
    let p = ProjectPath::parse("public/logo.png").unwrap();
    futures::executor::block_on(sb.write_file(&p, &png)).unwrap();
}

/// A tree as (path, bytes) pairs for readable assertion failures.
pub fn listing(tree: &SourceTree) -> Vec<(String, Vec<u8>)> {
    tree.files
        .iter()
        .map(|f: &SourceFile| (f.path.clone(), f.data.clone()))
        .collect()
}
