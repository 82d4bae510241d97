//! Snapshot size and speed against the seed's whole-folder tar.gz.
//!
//! The project is the real template (with its `npm ci`-installed
//! `node_modules`, as a sandbox has it) plus ten generated source files of a
//! small todo app. Measured, on a local sandbox and the filesystem blob store
//! (plus S3 on moto when `APNA_TEST_MOTO_URL` is set):
//!
//! * the seed's snapshot: `tar -czf` of the whole folder, `node_modules` included;
//! * ours: a content-addressed source-only snapshot (first, then after an edit);
//! * the alternative format: one tar.zst of the source tree per snapshot;
//! * snapshot time (export + write + verify) and restore time (read + import
//!   into a fresh sandbox), median of `APNA_BENCH_ROUNDS` (default 10).
//!
//! Run: `cargo bench -p apna --bench snapshot`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[cfg(feature = "aws")]
use apna::blob::S3BlobStore;
use apna::blob::{BlobStore, FsBlobStore};
use apna::sandbox::{ProjectPath, Sandbox, SourceTree};
use apna::snapshot::{self, take_snapshot, verify_snapshot, ZSTD_LEVEL};

fn rounds() -> usize {
    std::env::var("APNA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn kb(n: u64) -> String {
    format!("{:.1} KB", n as f64 / 1024.0)
}

/// Ten source files an agent might write for a todo app.
fn generated_files() -> Vec<(String, String)> {
    let mut files = vec![
        (
            "src/types.ts".to_string(),
            "export type Filter = 'all' | 'active' | 'done'\n\nexport interface Todo {\n  id: string\n  title: string\n  done: boolean\n  createdAt: number\n  tags: string[]\n}\n".to_string(),
        ),
        (
            "src/lib/storage.ts".to_string(),
            "import type { Todo } from '../types'\n\nconst KEY = 'apna.todos.v1'\n\nexport function loadTodos(): Todo[] {\n  try {\n    const raw = localStorage.getItem(KEY)\n    return raw ? (JSON.parse(raw) as Todo[]) : []\n  } catch {\n    return []\n  }\n}\n\nexport function saveTodos(todos: Todo[]): void {\n  localStorage.setItem(KEY, JSON.stringify(todos))\n}\n".to_string(),
        ),
        (
            "src/hooks/useTodos.ts".to_string(),
            "import { useEffect, useMemo, useState } from 'react'\nimport type { Filter, Todo } from '../types'\nimport { loadTodos, saveTodos } from '../lib/storage'\n\nexport function useTodos() {\n  const [todos, setTodos] = useState<Todo[]>(() => loadTodos())\n  const [filter, setFilter] = useState<Filter>('all')\n  useEffect(() => saveTodos(todos), [todos])\n  const visible = useMemo(\n    () => todos.filter((t) => (filter === 'all' ? true : filter === 'done' ? t.done : !t.done)),\n    [todos, filter],\n  )\n  const add = (title: string) =>\n    setTodos((ts) => [...ts, { id: crypto.randomUUID(), title, done: false, createdAt: Date.now(), tags: [] }])\n  const toggle = (id: string) => setTodos((ts) => ts.map((t) => (t.id === id ? { ...t, done: !t.done } : t)))\n  const remove = (id: string) => setTodos((ts) => ts.filter((t) => t.id !== id))\n  return { todos, visible, filter, setFilter, add, toggle, remove }\n}\n".to_string(),
        ),
        (
            "src/App.tsx".to_string(),
            "import { Header } from './components/Header'\nimport { AddTodo } from './components/AddTodo'\nimport { TodoList } from './components/TodoList'\nimport { Filters } from './components/Filters'\nimport { Stats } from './components/Stats'\nimport { useTodos } from './hooks/useTodos'\n\nexport default function App() {\n  const { todos, visible, filter, setFilter, add, toggle, remove } = useTodos()\n  return (\n    <main className=\"mx-auto max-w-xl p-6 space-y-4\">\n      <Header count={todos.length} />\n      <AddTodo onAdd={add} />\n      <Filters value={filter} onChange={setFilter} />\n      <TodoList todos={visible} onToggle={toggle} onRemove={remove} />\n      <Stats todos={todos} />\n    </main>\n  )\n}\n".to_string(),
        ),
    ];
    for (name, body) in [
        ("Header", "<header className=\"flex items-center justify-between\">\n      <h1 className=\"text-2xl font-bold\">Todos</h1>\n      <span className=\"text-sm text-gray-500\">{props.count} items</span>\n    </header>"),
        ("AddTodo", "<form className=\"flex gap-2\" onSubmit={(e) => { e.preventDefault(); const f = e.currentTarget; const v = (f.elements.namedItem('t') as HTMLInputElement).value.trim(); if (v) { props.onAdd(v); f.reset() } }}>\n      <input name=\"t\" className=\"flex-1 rounded border px-3 py-2\" placeholder=\"What needs doing?\" />\n      <button className=\"rounded bg-indigo-600 px-4 py-2 text-white\">Add</button>\n    </form>"),
        ("TodoList", "<ul className=\"divide-y rounded border\">\n      {props.todos.map((t) => (\n        <li key={t.id} className=\"flex items-center gap-3 p-3\">\n          <input type=\"checkbox\" checked={t.done} onChange={() => props.onToggle(t.id)} />\n          <span className={t.done ? 'line-through text-gray-400' : ''}>{t.title}</span>\n          <button className=\"ml-auto text-red-500\" onClick={() => props.onRemove(t.id)}>Delete</button>\n        </li>\n      ))}\n    </ul>"),
        ("Filters", "<div className=\"flex gap-2\">\n      {(['all', 'active', 'done'] as const).map((f) => (\n        <button key={f} className={f === props.value ? 'font-semibold underline' : ''} onClick={() => props.onChange(f)}>{f}</button>\n      ))}\n    </div>"),
        ("Stats", "<p className=\"text-sm text-gray-600\">\n      {props.todos.filter((t) => t.done).length} of {props.todos.length} done\n    </p>"),
        ("EmptyState", "<div className=\"rounded border border-dashed p-8 text-center text-gray-500\">\n      Nothing here yet. Add your first todo above.\n    </div>"),
    ] {
        files.push((
            format!("src/components/{name}.tsx"),
            format!(
                "import type {{ Filter, Todo }} from '../types'\n\n// eslint-disable-next-line @typescript-eslint/no-explicit-any\ntype Props = any\n\nexport function {name}(props: Props) {{\n  void (null as unknown as Filter | Todo)\n  return (\n    {body}\n  )\n}}\n"
            ),
        ));
    }
    files
}

/// The seed's snapshot: `tar -czf` of the whole project folder.
fn seed_tar_gz(tree: &SourceTree, node_modules: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    append_tree(&mut tar, tree);
    tar.append_dir_all("node_modules", node_modules)
        .expect("tar node_modules");
    tar.into_inner().unwrap().finish().unwrap()
}

fn append_tree<W: Write>(tar: &mut tar::Builder<W>, tree: &SourceTree) {
    for f in &tree.files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.data.len() as u64);
        h.set_mode(if f.executable { 0o755 } else { 0o644 });
        h.set_cksum();
        tar.append_data(&mut h, &f.path, f.data.as_slice())
            .expect("tar file");
    }
}

/// The alternative format: one tar.zst of the source tree.
fn source_tar_zst(tree: &SourceTree, level: i32) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    append_tree(&mut tar, tree);
    zstd::bulk::compress(&tar.into_inner().unwrap(), level).unwrap()
}

/// The same measurements against S3 on moto (`APNA_TEST_MOTO_URL`).
#[cfg(feature = "aws")]
async fn measure_s3(
    provider: &apna::sandbox::local::LocalProvider,
    template_files: &SourceTree,
    files: &[(String, String)],
) {
    let Ok(url) = std::env::var("APNA_TEST_MOTO_URL") else {
        println!("[s3] skipped: APNA_TEST_MOTO_URL is not set");
        return;
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    let s3 = S3BlobStore::connect("apna-snapshot-bench", "us-east-1", Some(&url))
        .await
        .unwrap();
    s3.ensure_bucket().await.unwrap();
    measure("s3 (moto)", Arc::new(s3), provider, template_files, files).await;
}

async fn measure(
    label: &str,
    blobs: Arc<dyn BlobStore>,
    provider: &apna::sandbox::local::LocalProvider,
    template_files: &SourceTree,
    files: &[(String, String)],
) {
    let n = rounds();
    let (mut snap_ms, mut restore_ms, mut verify_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    let mut incremental = None;
    for round in 0..n {
        let id = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let sb = provider.local(&id).unwrap();
        // A fresh project: the template, then the agent's files.
        sb.import_source(template_files).await.unwrap();
        for (p, body) in files {
            sb.write_file(&ProjectPath::parse(p).unwrap(), body.as_bytes())
                .await
                .unwrap();
        }

        let t = Instant::now();
        let info = take_snapshot(&*blobs, &sb, "app").await.unwrap();
        snap_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        verify_snapshot(&*blobs, &info).await.unwrap();
        verify_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let original = sb.export_source().await.unwrap();

        // An edit, as one chat message would make, then the next snapshot.
        let app = ProjectPath::parse("src/components/Stats.tsx").unwrap();
        let mut body = sb.read_file(&app).await.unwrap();
        body.extend_from_slice(format!("// round {round}\n").as_bytes());
        sb.write_file(&app, &body).await.unwrap();
        let next = take_snapshot(&*blobs, &sb, "app").await.unwrap();

        sb.destroy().await.unwrap();
        let t = Instant::now();
        snapshot::restore(&*blobs, &sb, &info.key).await.unwrap();
        restore_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            sb.export_source().await.unwrap(),
            original,
            "restore differs"
        );
        sb.destroy().await.unwrap();
        first.get_or_insert(info);
        incremental.get_or_insert(next);
    }
    let (first, incremental) = (first.unwrap(), incremental.unwrap());
    println!(
        "[{label}] first snapshot: {} files, {} source, {} stored ({} objects + manifest {})",
        first.files,
        kb(first.bytes),
        kb(first.bytes_stored),
        first.objects_new,
        kb(first.manifest_size)
    );
    println!(
        "[{label}] next snapshot after a one-file edit: {} stored ({} new object, {} reused)",
        kb(incremental.bytes_stored),
        incremental.objects_new,
        incremental.objects_reused
    );
    println!(
        "[{label}] median of {n}: snapshot (export+write) {:.1} ms, verify {:.1} ms, restore (read+import) {:.1} ms",
        median(snap_ms),
        median(verify_ms),
        median(restore_ms)
    );
}

#[tokio::main]
async fn main() {
    let template = apna::testing::local::template().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = apna::testing::local::provider(&dir.path().join("data"), None).await;
    let files = generated_files();

    // The project tree as a sandbox exports it.
    let sb = provider.local("bench-tree").unwrap();
    sb.import_source(&template.files).await.unwrap();
    for (p, body) in &files {
        sb.write_file(&ProjectPath::parse(p).unwrap(), body.as_bytes())
            .await
            .unwrap();
    }
    let tree = sb.export_source().await.unwrap();
    sb.destroy().await.unwrap();
    let source_bytes: u64 = tree.files.iter().map(|f| f.data.len() as u64).sum();
    println!(
        "project: template + {} generated files = {} source files, {} (node_modules: {})",
        files.len(),
        tree.files.len(),
        kb(source_bytes),
        template.node_modules.display()
    );

    let t = Instant::now();
    let seed = seed_tar_gz(&tree, &template.node_modules);
    let seed_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "seed whole-folder tar.gz (node_modules included): {} in {:.0} ms",
        kb(seed.len() as u64),
        seed_ms
    );

    // Format choice: per-file zstd objects vs one tar.zst of the source.
    for level in [3, ZSTD_LEVEL, 19] {
        let per_file: usize = {
            let mut seen = std::collections::HashSet::new();
            tree.files
                .iter()
                .filter(|f| seen.insert(apna::blob::sha256_hex(&f.data)))
                .map(|f| zstd::bulk::compress(&f.data, level).unwrap().len())
                .sum()
        };
        let t = Instant::now();
        let tz = source_tar_zst(&tree, level);
        println!(
            "zstd level {level:>2}: per-file objects {} vs source tar.zst {} ({:.2} ms)",
            kb(per_file as u64),
            kb(tz.len() as u64),
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    let fs_blobs: Arc<dyn BlobStore> =
        Arc::new(FsBlobStore::new(dir.path().join("blobs")).await.unwrap());
    let probe = apna::snapshot::write_snapshot(&*fs_blobs, "bench-size", "app", &tree)
        .await
        .unwrap();
    println!(
        "ours vs seed: {} / {} = {:.3}% (target ≤ 1%)",
        kb(probe.bytes_stored),
        kb(seed.len() as u64),
        probe.bytes_stored as f64 * 100.0 / seed.len() as f64
    );
    println!(
        "a second version re-stored as tar.zst would cost {} again; ours stores only changed files (below)",
        kb(source_tar_zst(&tree, ZSTD_LEVEL).len() as u64)
    );

    measure("fs", fs_blobs, &provider, &template.files, &files).await;
    #[cfg(feature = "aws")]
    measure_s3(&provider, &template.files, &files).await;
    #[cfg(not(feature = "aws"))]
    println!("[s3] skipped: build with --features aws");
    provider.stop_all().await;
}
