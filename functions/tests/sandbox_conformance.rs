//! The sandbox conformance suite: one set of cases, run against the local
//! driver and against `RemoteSandbox` talking to a real `apna sandboxd`
//! process on loopback (this crate builds the binary, hence the suite lives
//! here, with the library's fixtures from `apna::testing`). Each case is written once in `cases` and instantiated per driver
//! by `conformance!`, so both must give the same results; the one known
//! difference (isolation: bubblewrap locally when installed, none in sandboxd,
//! as in a pod) is outside what these cases observe.
//!
//! Plus what only sandboxd has: the token on every route but `/healthz`, and
//! every path check of the local driver made again over raw HTTP, where no
//! `ProjectPath` has checked the path first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use apna::sandbox::local::command::TRUNCATION_MARKER;
use apna::sandbox::local::files::MAX_FILE_BYTES;
use apna::sandbox::local::wait_ready;
use apna::sandbox::remote::{DirectTransport, RemoteSandbox, TOKEN_ENV, TOKEN_HEADER};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxState, SourceFile, SourceTree};
use apna::testing::local::{get, image_templates_dir, provider, template};
use apna::testing::services::services_required;
use apna::Error;

/// A sandbox under test, the host path of its files, and what keeps it alive.
pub struct Subject {
    sandbox: Arc<dyn Sandbox>,
    root: PathBuf,
    _keep: Box<dyn Send + Sync>,
}

fn p(s: &str) -> ProjectPath {
    ProjectPath::parse(s).unwrap()
}

fn exec(cmd: &str) -> ExecRequest {
    ExecRequest {
        command: cmd.into(),
        timeout: Duration::from_secs(30),
        max_output: 64 * 1024,
    }
}

/// The local driver: a provider on a temp dir (bubblewrap when installed).
async fn local(id: &str) -> Subject {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local(id).unwrap();
    let root = sb.root().to_path_buf();
    struct Keep {
        provider: apna::sandbox::local::LocalProvider,
        _data: tempfile::TempDir,
    }
    impl Drop for Keep {
        fn drop(&mut self) {
            // Dev servers are children of this process; stop them with the test.
            let provider = self.provider.clone();
            let _ = std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(provider.stop_all())
            })
            .join();
        }
    }
    Subject {
        sandbox: Arc::new(sb),
        root,
        _keep: Box::new(Keep {
            provider,
            _data: data,
        }),
    }
}

/// A running `apna sandboxd`; dropping it sends SIGTERM (so it stops Vite,
/// which lives in its own process group) and waits.
pub struct Daemon {
    child: Child,
    pub addr: std::net::SocketAddr,
    pub token: String,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling a child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `apna sandboxd` on a fresh workspace, with the starters' sources
/// and the test cache's installed `node_modules` laid out as in the image.
pub async fn start_daemon(id: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let template_dir = image_templates_dir(&dir.path().join("templates")).await;
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let root = std::fs::canonicalize(&workspace).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let token = format!("tok-{}-{}", std::process::id(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_apna"))
        .arg("sandboxd")
        .arg("--workspace")
        .arg(&workspace)
        .arg("--templates")
        .arg(&template_dir)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--dev-server")
        .arg("127.0.0.1:0")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env(TOKEN_ENV, &token)
        .env("APNA_PROJECT_ID", id)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start apna sandboxd");
    let mut daemon = Daemon {
        child,
        addr,
        token,
        root,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("apna sandboxd exited: {status}");
        }
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "sandboxd never answered /healthz"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon
}

/// `RemoteSandbox` over loopback HTTP to a real `apna sandboxd` process. The
/// daemon seeds its workspace and starts Vite on start (a pod is a ready
/// project); `destroy` first gives the cases the local driver's starting
/// point, a project that does not exist yet.
async fn remote(id: &str) -> Subject {
    let daemon = start_daemon(id).await;
    let transport = DirectTransport::new(&format!("http://{}", daemon.addr)).unwrap();
    let sb = RemoteSandbox::new(id, Arc::new(transport), daemon.token.clone());
    sb.destroy().await.unwrap();
    Subject {
        sandbox: Arc::new(sb),
        root: daemon.root.clone(),
        _keep: Box::new(daemon),
    }
}

/// The cases, each given a sandbox that does not exist yet.
mod cases {
    use super::*;

    /// A tree sorted by path, as an export gives it.
    fn tree(files: &[(&str, &[u8], bool)]) -> SourceTree {
        let mut t = SourceTree {
            files: files
                .iter()
                .map(|(path, data, executable)| SourceFile {
                    path: path.to_string(),
                    data: data.to_vec(),
                    executable: *executable,
                })
                .collect(),
        };
        t.files.sort_by(|a, b| a.path.cmp(&b.path));
        t
    }

    pub async fn files_keep_every_byte_and_paths_stay_literal(s: Subject) {
        let sb = &s.sandbox;
        let id = sb.project_id().to_string();
        assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);
        let e = sb.read_file(&p("src/App.tsx")).await.unwrap_err();
        assert!(matches!(e, Error::NotReady(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!("the sandbox of project {id} does not exist yet; it is created when the project starts")
        );
        sb.import_source(&template().await.files).await.unwrap();

        // Every byte value, an empty file, and the largest file allowed.
        let all: Vec<u8> = (0..=255u8).cycle().take(256 * 3).collect();
        sb.write_file(&p("bin/all.bin"), &all).await.unwrap();
        assert_eq!(sb.read_file(&p("bin/all.bin")).await.unwrap(), all);
        sb.write_file(&p("bin/empty"), b"").await.unwrap();
        assert_eq!(sb.read_file(&p("bin/empty")).await.unwrap(), b"");
        let big: Vec<u8> = (0..MAX_FILE_BYTES as usize)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        sb.write_file(&p("bin/big.bin"), &big).await.unwrap();
        let back = sb.read_file(&p("bin/big.bin")).await.unwrap();
        assert!(back == big, "8 MiB file changed in transit");
        let mut over = big;
        over.push(0);
        let e = sb.write_file(&p("bin/over.bin"), &over).await.unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "{} bytes is over the {MAX_FILE_BYTES} byte file limit",
                over.len()
            )
        );

        // Shell-looking names are names: nothing runs, the file is where it says.
        let odd = [
            "src/with space.ts",
            "src/it's \"quoted\".ts",
            "src/$(touch pwned).ts",
            "src/`touch pwned2`;x.ts",
            "src/a&b|c>d<e.ts",
            "src/100% ?#[x].ts",
            "src/ünï-cødé ✓.ts",
            "src/-rf",
        ];
        for (i, name) in odd.iter().enumerate() {
            sb.write_file(&p(name), format!("// {i}\n").as_bytes())
                .await
                .unwrap();
            assert_eq!(
                sb.read_file(&p(name)).await.unwrap(),
                format!("// {i}\n").as_bytes(),
                "{name}"
            );
            assert!(
                s.root.join(name).is_file(),
                "{name} not at its literal path"
            );
        }
        assert!(!s.root.join("pwned").exists() && !s.root.join("src/pwned").exists());
        assert!(!s.root.join("pwned2").exists() && !s.root.join("src/pwned2").exists());
        let listed: Vec<String> = sb
            .list_files()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        for name in odd {
            assert!(listed.contains(&name.to_string()), "{name} not listed");
        }
        assert!(listed.contains(&"package.json".to_string()));
        assert!(listed.iter().all(|f| !f.starts_with("node_modules")));
        let big_entry = sb
            .list_files()
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.path == "bin/big.bin")
            .unwrap();
        assert_eq!(big_entry.size, MAX_FILE_BYTES);

        // Errors keep their kind and words.
        let e = sb.read_file(&p("src/nope.ts")).await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "src/nope.ts does not exist; use list_files to see the project's files"
        );
        let e = sb.read_file(&p("src")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains("it is a directory"), "{e}");
        let e = sb
            .write_file(&p("node_modules/vite/x.js"), b"x")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        let pkg = sb
            .read_file(&p("node_modules/vite/package.json"))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&pkg).contains("\"name\": \"vite\""));
        assert!(sb.delete_file(&p("src/$(touch pwned).ts")).await.unwrap());
        assert!(!sb.delete_file(&p("src/$(touch pwned).ts")).await.unwrap());
        let e = sb.delete_file(&p("src")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    }

    pub async fn symlink_escapes_are_refused(s: Subject) {
        let sb = &s.sandbox;
        sb.import_source(&template().await.files).await.unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let out = sb
            .exec(&exec(&format!(
                "ln -s '{0}' esc && ln -s '{0}/secret' leak && ln -s src inner",
                outside.path().display()
            )))
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(0), "{}", out.output);
        for path in ["esc/secret", "leak", "esc/new.txt"] {
            let results = [
                sb.read_file(&p(path)).await.map(|_| ()),
                sb.write_file(&p(path), b"pwned").await,
                sb.delete_file(&p(path)).await.map(|_| ()),
            ];
            for r in results {
                let e = r.unwrap_err();
                assert!(matches!(e, Error::InvalidInput(_)), "{path}: {e}");
                assert!(e.to_string().contains("outside the project"), "{path}: {e}");
            }
        }
        let e = sb
            .write_file(&p("esc/deep/new.txt"), b"x")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "s"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        // A link that stays inside works; links are never listed or exported.
        sb.write_file(&p("inner/via-link.ts"), b"1").await.unwrap();
        assert_eq!(sb.read_file(&p("src/via-link.ts")).await.unwrap(), b"1");
        let tree = sb.export_source().await.unwrap();
        assert!(tree.files.iter().all(|f| !f.path.starts_with("esc")
            && f.path != "leak"
            && !f.path.starts_with("inner/")));
    }

    pub async fn exec_reports_exit_codes_timeouts_and_truncation(s: Subject) {
        let sb = &s.sandbox;
        sb.import_source(&template().await.files).await.unwrap();
        let out = sb
            .exec(&exec("echo hi; echo err >&2; exit 3"))
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert!(
            out.output.contains("hi") && out.output.contains("err"),
            "{}",
            out.output
        );
        assert!(!out.truncated && !out.timed_out);
        let out = sb.exec(&exec("pwd; ls package.json")).await.unwrap();
        assert_eq!(out.exit_code, Some(0), "{}", out.output);

        let out = sb
            .exec(&ExecRequest {
                command: "yes | head -c 100000".into(),
                timeout: Duration::from_secs(10),
                max_output: 1000,
            })
            .await
            .unwrap();
        assert!(out.truncated);
        assert_eq!(out.output.len(), 1000 + TRUNCATION_MARKER.len());
        assert!(out.output.ends_with(TRUNCATION_MARKER));

        let marker = format!("{}", 31_000 + std::process::id() % 1000);
        let started = Instant::now();
        let out = sb
            .exec(&ExecRequest {
                command: format!("sleep {marker} & sleep {marker}; echo never"),
                timeout: Duration::from_secs(1),
                max_output: 1000,
            })
            .await
            .unwrap();
        assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
        assert!(!out.output.contains("never"));
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        let left = Command::new("sh")
            .args(["-c", &format!("pgrep -f '^sleep {marker}$' || true")])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "a background process survived the timeout"
        );

        for bad in [
            ExecRequest {
                command: "  ".into(),
                ..exec("")
            },
            ExecRequest {
                timeout: Duration::ZERO,
                ..exec("true")
            },
        ] {
            let e = sb.exec(&bad).await.unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        }
        // Neither the server's environment nor sandboxd's token reach a command.
        let out = sb.exec(&exec("env")).await.unwrap();
        assert!(
            !out.output
                .lines()
                .any(|l| l.starts_with("CARGO") || l.starts_with(TOKEN_ENV)),
            "{}",
            out.output
        );
    }

    pub async fn export_import_leaves_unchanged_files_untouched(s: Subject) {
        let sb = &s.sandbox;
        let base = tree(&[
            ("package.json", b"{\"name\":\"x\"}\n", false),
            ("src/keep.ts", b"export const k = 1;\n", false),
            ("src/change.ts", b"export const c = 1;\n", false),
            ("src/gone.ts", b"export const g = 1;\n", false),
            ("run.sh", b"#!/bin/sh\necho run\n", true),
            (
                "src/all bytes.bin",
                &(0..=255u8).collect::<Vec<u8>>(),
                false,
            ),
        ]);
        sb.import_source(&base).await.unwrap();
        let exported = sb.export_source().await.unwrap();
        assert_eq!(exported, base, "export is not what was imported");
        let out = sb.exec(&exec("./run.sh")).await.unwrap();
        assert_eq!(out.output.trim(), "run", "executable bit lost");

        let mtime = |rel: &str| -> SystemTime {
            std::fs::metadata(s.root.join(rel))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before: Vec<SystemTime> =
            ["package.json", "src/keep.ts", "run.sh", "src/all bytes.bin"]
                .iter()
                .map(|f| mtime(f))
                .collect();
        let change_before = mtime("src/change.ts");
        std::thread::sleep(Duration::from_millis(20));

        let mut next = base.clone();
        next.files.retain(|f| f.path != "src/gone.ts");
        for f in &mut next.files {
            if f.path == "src/change.ts" {
                f.data = b"export const c = 2;\n".to_vec();
            }
        }
        next.files.push(SourceFile {
            path: "src/new dir/new.ts".into(),
            data: b"export {}\n".to_vec(),
            executable: false,
        });
        next.files.sort_by(|a, b| a.path.cmp(&b.path));
        sb.import_source(&next).await.unwrap();
        let after: Vec<SystemTime> = ["package.json", "src/keep.ts", "run.sh", "src/all bytes.bin"]
            .iter()
            .map(|f| mtime(f))
            .collect();
        assert_eq!(before, after, "an unchanged file was rewritten");
        assert_ne!(change_before, mtime("src/change.ts"));
        assert_eq!(sb.export_source().await.unwrap(), next);
        let e = sb.read_file(&p("src/gone.ts")).await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");

        // A bad tree is refused whole, before anything changes.
        for bad in ["../evil.ts", "node_modules/x.js", "/abs.ts"] {
            let mut t = next.clone();
            t.files.push(SourceFile {
                path: bad.into(),
                data: b"x".to_vec(),
                executable: false,
            });
            let e = sb.import_source(&t).await.unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e}");
        }
        assert_eq!(sb.export_source().await.unwrap(), next);
    }

    pub async fn the_dev_server_serves_the_template_logs_and_stops(s: Subject) {
        let sb = &s.sandbox;
        let st = sb.ensure().await.unwrap();
        assert!(
            matches!(st.state, SandboxState::Starting | SandboxState::Ready),
            "{st:?}"
        );
        let st = wait_ready(sb.as_ref(), Duration::from_secs(60))
            .await
            .unwrap();
        let addr: std::net::SocketAddr = st.preview_addr.clone().unwrap().parse().unwrap();
        let (status, body) = get(addr, "p.localhost", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("/src/main.tsx"), "{body}");
        let (status, body) = get(addr, "p.localhost", "/src/App.tsx").await;
        assert_eq!(status, 200, "{body}");
        // ensure on a running sandbox changes nothing.
        assert_eq!(sb.ensure().await.unwrap().state, SandboxState::Ready);
        let logs = sb.logs(100).await.unwrap();
        assert!(logs.contains("ready in"), "{logs}");
        assert!(sb.logs(1).await.unwrap().lines().count() <= 1);

        sb.stop().await.unwrap();
        let st = sb.status().await.unwrap();
        assert_eq!(st.state, SandboxState::Stopped, "{st:?}");
        assert!(st.preview_addr.is_none());
        assert!(
            sb.logs(100).await.unwrap().contains("ready in"),
            "log kept after stop"
        );
        sb.ensure().await.unwrap();
        wait_ready(sb.as_ref(), Duration::from_secs(60))
            .await
            .unwrap();
        sb.destroy().await.unwrap();
        assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);
        assert!(
            template()
                .await
                .node_modules
                .join("vite/package.json")
                .is_file(),
            "destroy touched the template's dependencies"
        );
    }

    /// Issue #16: Verify runs next to the files (through sandboxd's
    /// `/v1/check` in a pod) and finds what only Vite sees through the
    /// running dev server, without a build.
    pub async fn verify_checks_through_the_dev_server(s: Subject) {
        use apna::sandbox::build_check::{check_build, DiagnosticSource};
        let sb = &s.sandbox;
        sb.ensure().await.unwrap();
        let st = wait_ready(sb.as_ref(), Duration::from_secs(60))
            .await
            .unwrap();
        let addr: std::net::SocketAddr = st.preview_addr.clone().unwrap().parse().unwrap();
        assert_eq!(get(addr, "p.localhost", "/").await.0, 200);
        let app = ProjectPath::parse("src/App.tsx").unwrap();
        let original = sb.read_file(&app).await.unwrap();
        sb.write_file(
            &app,
            b"import \"./missing.css\";\n\nexport default function App() {\n  return <p>hi</p>;\n}\n",
        )
        .await
        .unwrap();
        let report = check_build(sb.as_ref()).await.unwrap();
        assert!(!report.ok, "{report:?}");
        assert!(
            report
                .diagnostics
                .iter()
                .any(|d| d.source == DiagnosticSource::DevServer
                    && (d.file.as_str(), d.line) == ("src/App.tsx", 1)
                    && d.message.contains("./missing.css")),
            "{report:?}"
        );
        assert!(
            !s.root.join(".apna-build/check").exists(),
            "the check built the app"
        );
        sb.write_file(&app, &original).await.unwrap();
        let report = check_build(sb.as_ref()).await.unwrap();
        assert!(report.ok, "{report:?}");
        sb.destroy().await.unwrap();
    }

    pub async fn destroy_ends_a_running_command(s: Subject) {
        let sb = s.sandbox.clone();
        sb.import_source(&template().await.files).await.unwrap();
        let busy = {
            let sb = sb.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let out = sb
                    .exec(&exec(
                        "mkdir -p out && i=0; while true; do i=$((i+1)); echo $i > out/f$((i % 50)); done",
                    ))
                    .await;
                (out, started.elapsed())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.root.join("out/f1").exists() {
            assert!(Instant::now() < deadline, "the command never wrote");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sb.destroy().await.unwrap();
        assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);
        let (out, took) = busy.await.unwrap();
        let out = out.unwrap();
        assert!(!out.timed_out && out.exit_code.is_none(), "{out:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!s.root.join("out").exists(), "a killed command wrote again");
        assert!(!s.root.join("package.json").exists());
        // And the project comes back from the template.
        sb.ensure().await.unwrap();
        assert!(s.root.join("package.json").is_file());
        sb.stop().await.unwrap();
    }

    pub async fn starters_seed_a_new_sandbox_until_it_changes(s: Subject) {
        let sb = s.sandbox.clone();
        let read = |path: &'static str| {
            let sb = sb.clone();
            async move { sb.read_file(&p(path)).await.unwrap() }
        };
        let minimal = apna::testing::local::starter("minimal").await;
        let landing = apna::testing::local::starter("landing").await;
        let file_of = |t: &apna::sandbox::local::PreparedTemplate, path: &str| {
            t.files
                .files
                .iter()
                .find(|f| f.path == path)
                .unwrap()
                .data
                .clone()
        };
        assert!(matches!(
            sb.ensure_from("nextjs").await,
            Err(Error::InvalidInput(m)) if m.contains("app, dashboard, landing, minimal")
        ));
        sb.ensure_from("minimal").await.unwrap();
        assert_eq!(
            read("package.json").await,
            file_of(&minimal, "package.json")
        );
        assert_eq!(read("src/App.tsx").await, file_of(&minimal, "src/App.tsx"));
        sb.destroy().await.unwrap();
        // Seeded from the default starter and untouched (a warm pod or
        // spare): asking for another starter gives it that one's files.
        sb.ensure().await.unwrap();
        sb.ensure_from("landing").await.unwrap();
        assert_eq!(read("src/App.tsx").await, file_of(&landing, "src/App.tsx"));
        assert!(read("src/components/pricing.tsx").await.len() > 100);
        // Once anything changed it, it is a project: a starter no longer applies.
        sb.write_file(&p("src/note.txt"), b"mine").await.unwrap();
        sb.ensure_from("minimal").await.unwrap();
        assert_eq!(read("src/App.tsx").await, file_of(&landing, "src/App.tsx"));
        assert_eq!(read("src/note.txt").await, b"mine");
        sb.stop().await.unwrap();
    }

    pub async fn installing_a_package_the_starter_has_is_answered(s: Subject) {
        let sb = s.sandbox.clone();
        sb.ensure_from("app").await.unwrap();
        sb.stop().await.unwrap();
        let out = sb
            .exec(&exec("npm install recharts lucide-react"))
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        assert!(out.output.contains("recharts@"), "{}", out.output);
        // No private copy: node_modules is still the link to the shared install.
        assert!(std::fs::symlink_metadata(s.root.join("node_modules"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

/// One test per case and driver: `local::NAME` and `remote::NAME`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local_driver {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(local(concat!("loc-", stringify!($case)).replace('_', "-").as_str()).await).await;
                }
            )*
        }
        mod remote_sandboxd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(remote(concat!("rem-", stringify!($case)).replace('_', "-").as_str()).await).await;
                }
            )*
        }
    };
}

conformance!(
    files_keep_every_byte_and_paths_stay_literal,
    symlink_escapes_are_refused,
    exec_reports_exit_codes_timeouts_and_truncation,
    export_import_leaves_unchanged_files_untouched,
    the_dev_server_serves_the_template_logs_and_stops,
    destroy_ends_a_running_command,
    starters_seed_a_new_sandbox_until_it_changes,
    installing_a_package_the_starter_has_is_answered,
    verify_checks_through_the_dev_server,
);

/// Every route of sandboxd, as (method, path-and-query).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("POST", "/v1/ensure"),
    ("GET", "/v1/files"),
    ("GET", "/v1/file?path=package.json"),
    ("PUT", "/v1/file?path=x.txt"),
    ("DELETE", "/v1/file?path=x.txt"),
    ("POST", "/v1/exec"),
    ("GET", "/v1/logs?lines=5"),
    ("POST", "/v1/stop"),
    ("POST", "/v1/destroy"),
    ("GET", "/v1/source"),
    ("PUT", "/v1/source"),
    ("POST", "/v1/check"),
    ("GET", "/v1/no-such-route"),
    ("GET", "/"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxd_needs_its_token_on_every_route_but_healthz() {
    let d = start_daemon("auth-check").await;
    let client = reqwest::Client::new();
    let before = std::fs::read(d.root.join("package.json")).unwrap();
    let wrong_same_length: String = d.token.chars().rev().collect();
    for (method, uri) in ROUTES {
        for token in [
            None,
            Some("wrong"),
            Some(wrong_same_length.as_str()),
            Some(""),
        ] {
            let mut req =
                client.request(method.parse().unwrap(), format!("http://{}{uri}", d.addr));
            if let Some(t) = token {
                req = req.header(TOKEN_HEADER, t);
            }
            // The token must not be accepted from Authorization either.
            req = req.header("authorization", format!("Bearer {}", d.token));
            let resp = req.body("x").send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {uri} with {token:?}");
            let v: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        }
    }
    let r = client
        .get(format!("http://{}/healthz", d.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    // Nothing those requests asked for happened.
    assert_eq!(std::fs::read(d.root.join("package.json")).unwrap(), before);
    assert!(!d.root.join("x.txt").exists());
    let ok = client
        .get(format!("http://{}/v1/status", d.addr))
        .header(TOKEN_HEADER, &d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let unknown = client
        .get(format!("http://{}/v1/no-such-route", d.addr))
        .header(TOKEN_HEADER, &d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A RemoteSandbox with a wrong token gets a sandbox error, not the caller's 401.
    let transport = Arc::new(DirectTransport::new(&format!("http://{}", d.addr)).unwrap());
    let wrong = RemoteSandbox::new("auth-check", transport, "nope".into());
    let e = wrong.status().await.unwrap_err();
    assert!(matches!(e, Error::Sandbox(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_check_holds_over_raw_http() {
    let d = start_daemon("path-check").await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path(), d.root.join("esc")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), d.root.join("leak")).unwrap();
    let client = reqwest::Client::new();
    let send = |method: &str, query: &str, body: &'static [u8]| {
        client
            .request(
                method.parse().unwrap(),
                format!("http://{}/v1/file?{query}", d.addr),
            )
            .header(TOKEN_HEADER, &d.token)
            .body(body)
            .send()
    };
    // Raw, percent-encoded query values: no ProjectPath has checked them.
    let refused = [
        "path=..%2F..%2Fetc%2Fpasswd",
        "path=src%2F..%2F..%2Fx",
        "path=%2Fetc%2Fpasswd",
        "path=%2F%2Fetc%2Fpasswd",
        "path=a%00b",
        "path=a%0Ab",
        "path=a%1Bb",
        "path=a%5Cb",
        "path=~%2Fx",
        "path=C:%2Fx",
        "path=.",
        "path=",
        "path=esc%2Fsecret",
        "path=leak",
        "path=esc%2Fnew.txt",
        "path=.%2Fesc%2F..%2Fesc%2Fsecret",
        "nopath=x",
    ];
    for q in refused {
        for method in ["GET", "PUT", "DELETE"] {
            let resp = send(method, q, b"pwned").await.unwrap();
            assert_eq!(resp.status(), 400, "{method} ?{q}");
            let v: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "invalid_input", "{method} ?{q}: {v}");
        }
    }
    for q in [
        "path=node_modules%2Fvite%2Fx.js",
        "path=.git%2Fconfig",
        "path=dist%2Fa.js",
    ] {
        let resp = send("PUT", q, b"x").await.unwrap();
        assert_eq!(resp.status(), 400, "PUT ?{q}");
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert!(!Path::new("/etc/x").exists());

    // A well-formed path with `+` and `%` round-trips literally.
    let resp = send("PUT", "path=src%2Fa%2Bb%2520c.ts", b"lit")
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        std::fs::read(d.root.join("src/a+b%20c.ts")).unwrap(),
        b"lit"
    );

    // Oversized and malformed bodies get JSON errors and change nothing.
    let big = vec![b'x'; MAX_FILE_BYTES as usize + 1];
    let resp = client
        .put(format!("http://{}/v1/file?path=big.bin", d.addr))
        .header(TOKEN_HEADER, &d.token)
        .body(big)
        .send()
        .await;
    // sandboxd answers 413 from the Content-Length without reading the body;
    // on a busy machine the client may still be writing when the connection
    // closes, which is the same refusal seen from the other end.
    match resp {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e}"),
    }
    assert!(!d.root.join("big.bin").exists());
    for (uri, body, status) in [
        ("/v1/exec", &b"{not json"[..], 400),
        ("/v1/exec", &b"{\"command\":\"true\"}"[..], 400),
    ] {
        let resp = client
            .post(format!("http://{}{uri}", d.addr))
            .header(TOKEN_HEADER, &d.token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{uri}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_input", "{v}");
    }
    // A tar with a link, a `..` path or garbage is refused before anything is written.
    let mut link = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    link.append_link(&mut h, "evil", outside.path()).unwrap();
    let mut dotdot = tar::Header::new_gnu();
    dotdot.set_size(1);
    dotdot.set_mode(0o644);
    let name = b"../escaped.txt";
    dotdot.as_old_mut().name[..name.len()].copy_from_slice(name);
    dotdot.set_cksum();
    let mut raw = dotdot.as_bytes().to_vec();
    raw.extend_from_slice(&[b'x'; 512]);
    raw.extend_from_slice(&[0; 1024]);
    for body in [link.into_inner().unwrap(), raw, vec![7u8; 2000]] {
        let resp = client
            .put(format!("http://{}/v1/source", d.addr))
            .header(TOKEN_HEADER, &d.token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    assert!(
        d.root.join("package.json").is_file(),
        "a refused import changed the tree"
    );
    assert!(!d.root.join("evil").exists());
    assert!(!d.root.parent().unwrap().join("escaped.txt").exists());
}

#[tokio::test]
async fn an_unreachable_sandboxd_is_not_ready() {
    let port = free_port();
    let transport = Arc::new(DirectTransport::new(&format!("http://127.0.0.1:{port}")).unwrap());
    let sb = RemoteSandbox::new("gone", transport, "t".into());
    let e = sb.status().await.unwrap_err();
    assert!(matches!(e, Error::NotReady(_)), "{e}");
    let e = sb.read_file(&p("a.ts")).await.unwrap_err();
    assert!(matches!(e, Error::NotReady(_)), "{e}");
}

#[test]
fn sandboxd_refuses_to_start_without_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_apna"))
        .arg("sandboxd")
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(TOKEN_ENV), "{err}");
}

/// `(pid, state)` of every process whose parent is `parent`.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|s| s.parse::<u32>().ok()) == Some(parent) {
            out.push((pid, state));
        }
    }
    out
}

/// In a pod sandboxd is PID 1: orphans of commands are reaped (no zombies
/// pile up) and SIGTERM reaches the real server, which stops Vite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_sandboxd_reaps_orphans_and_forwards_sigterm() {
    let probe = Command::new("unshare")
        .args(["-fp", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            !services_required(),
            "unshare -fp (root, util-linux) is required (APNA_REQUIRE_SERVICES=1)"
        );
        eprintln!("skipped: cannot make a PID namespace here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let template_dir = image_templates_dir(&dir.path().join("templates")).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let unshare = Command::new("unshare")
        .args([
            "-fp",
            "--mount-proc",
            env!("CARGO_BIN_EXE_apna"),
            "sandboxd",
        ])
        .arg("--workspace")
        .arg(dir.path().join("workspace"))
        .arg("--templates")
        .arg(&template_dir)
        .args(["--listen", &addr, "--dev-server", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env(TOKEN_ENV, "pid1-token")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    /// Ends the namespace (its PID 1 first) however the test ends.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            for (pid, _) in children_of(self.0.id()) {
                // SAFETY: signalling a process this test started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut unshare = Reap(unshare);
    let deadline = Instant::now() + Duration::from_secs(30);
    let init = loop {
        if let [(pid, _)] = children_of(unshare.0.id())[..] {
            if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
                break pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "sandboxd in a PID namespace never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let transport = Arc::new(DirectTransport::new(&format!("http://{addr}")).unwrap());
    let sb = RemoteSandbox::new("pid1", transport, "pid1-token".into());
    wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    for _ in 0..3 {
        let out = sb
            .exec(&exec("sleep 100 & sleep 101 & echo hi"))
            .await
            .unwrap();
        assert_eq!(out.output.trim(), "hi");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kids = children_of(init);
    assert_eq!(
        kids.len(),
        1,
        "PID 1 has children besides sandboxd: {kids:?}"
    );
    assert_ne!(kids[0].1, 'Z');
    let server = kids[0].0;
    let vite: Vec<u32> = children_of(server).into_iter().map(|(p, _)| p).collect();
    assert!(!vite.is_empty(), "no dev server under sandboxd");

    // SAFETY: signalling a process this test started (in its namespace).
    unsafe {
        libc::kill(init as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = unshare.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop sandboxd");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    for pid in vite {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "Vite {pid} outlived sandboxd"
        );
    }
}

/// The kube driver end to end, short of a cluster: `KubeSandbox` connects with
/// a kubeconfig to a stand-in API server on loopback that lists one Ready pod,
/// serves its token Secret, and implements `pods/proxy` by forwarding to a real
/// `apna sandboxd` (dropping `Authorization`, as the API server does). File
/// operations, exec, logs and export/import then cross the whole client stack:
/// kube-rs, the proxy path, the token header, sandboxd's wire format.
mod kube_driver {
    use super::*;
    use apna::config::Config;
    use apna::sandbox::kube::KubeProvider;
    use axum::body::Bytes;
    use axum::extract::{Path as UrlPath, Request, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Stand {
        daemon_addr: std::net::SocketAddr,
        token: String,
        id: String,
        api_requests: AtomicUsize,
        http: reqwest::Client,
    }

    fn authorized(headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Bearer kubeconfig-token")
    }

    async fn list_pods(State(s): State<Arc<Stand>>, headers: HeaderMap) -> Response {
        assert!(authorized(&headers));
        s.api_requests.fetch_add(1, Ordering::SeqCst);
        let name = format!("project-{}", s.id);
        axum::Json(json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{
                "metadata": { "name": name, "namespace": "apna", "labels": { "apna.dev/project": s.id } },
                "spec": { "containers": [{
                    "name": "sandbox",
                    "env": [{ "name": TOKEN_ENV, "valueFrom": { "secretKeyRef": { "name": format!("{name}-sandboxd"), "key": "token" } } }]
                }] },
                "status": {
                    "phase": "Running", "podIP": "127.0.0.1",
                    "conditions": [{ "type": "Ready", "status": "True" }],
                    "containerStatuses": [{
                        "name": "sandbox", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                        "state": { "running": {} }
                    }]
                }
            }]
        }))
        .into_response()
    }

    async fn get_secret(State(s): State<Arc<Stand>>, headers: HeaderMap) -> Response {
        assert!(authorized(&headers));
        s.api_requests.fetch_add(1, Ordering::SeqCst);
        let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &s.token);
        axum::Json(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("project-{}-sandboxd", s.id), "namespace": "apna" },
            "data": { "token": token }
        }))
        .into_response()
    }

    async fn proxy(
        State(s): State<Arc<Stand>>,
        UrlPath((pod, rest)): UrlPath<(String, String)>,
        req: Request,
    ) -> Response {
        assert_eq!(pod, format!("project-{}:7070", s.id));
        assert!(authorized(req.headers()));
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let method = req.method().clone();
        let mut headers = req.headers().clone();
        headers.remove("authorization");
        headers.remove("host");
        let body: Bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        let res = s
            .http
            .request(method, format!("http://{}/{rest}{query}", s.daemon_addr))
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        let headers = res.headers().clone();
        let body = res.bytes().await.unwrap();
        let mut out = (status, body).into_response();
        if let Some(ct) = headers.get("content-type") {
            out.headers_mut().insert("content-type", ct.clone());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kube_sandbox_through_pods_proxy_to_a_real_sandboxd() {
        let id = "kube-e2e";
        let daemon = start_daemon(id).await;
        let stand = Arc::new(Stand {
            daemon_addr: daemon.addr,
            token: daemon.token.clone(),
            id: id.into(),
            api_requests: AtomicUsize::new(0),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/apna/pods",
                axum::routing::get(list_pods),
            )
            .route(
                "/api/v1/namespaces/apna/secrets/{name}",
                axum::routing::get(get_secret),
            )
            .route(
                "/api/v1/namespaces/apna/pods/{pod}/proxy/{*rest}",
                axum::routing::any(proxy),
            )
            .with_state(stand.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  cluster:\n    server: http://{api}\ncontexts:\n- name: t\n  context: {{cluster: c, user: u, namespace: apna}}\nusers:\n- name: u\n  user: {{token: kubeconfig-token}}\n"
            ),
        )
        .unwrap();
        let config = Config::from_vars(
            [
                ("APNA_SANDBOX", "kube"),
                ("KUBE_NAMESPACE", "apna"),
                ("KUBE_CONFIG_PATH", kubeconfig.to_str().unwrap()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .unwrap();
        let provider = KubeProvider::from_config(&config);
        provider.connect().await.unwrap();
        let sb = provider.kube(id).unwrap();

        let bytes: Vec<u8> = (0..=255u8).collect();
        let odd = p("dir with space/$(touch pwned) 'q'.bin");
        sb.write_file(&odd, &bytes).await.unwrap();
        assert_eq!(sb.read_file(&odd).await.unwrap(), bytes);
        assert_eq!(
            std::fs::read(daemon.root.join(odd.as_str())).unwrap(),
            bytes
        );
        assert!(!daemon.root.join("pwned").exists());
        let listed = sb.list_files().await.unwrap();
        assert!(listed
            .iter()
            .any(|f| f.path == odd.as_str() && f.size == 256));
        assert!(matches!(
            sb.read_file(&p("missing.txt")).await,
            Err(Error::NotFound(_))
        ));
        let out = sb.exec(&exec("printf hi; exit 3")).await.unwrap();
        assert_eq!((out.exit_code, out.output.as_str()), (Some(3), "hi"));
        let mut tree = sb.export_source().await.unwrap();
        assert!(tree.files.iter().any(|f| f.path == "package.json"));
        tree.files.push(SourceFile {
            path: "src/extra.ts".into(),
            data: b"export const x = 1;\n".to_vec(),
            executable: false,
        });
        tree.files.sort_by(|a, b| a.path.cmp(&b.path));
        sb.import_source(&tree).await.unwrap();
        assert_eq!(
            sb.read_file(&p("src/extra.ts")).await.unwrap(),
            b"export const x = 1;\n"
        );
        sb.logs(20).await.unwrap();
        assert!(sb.delete_file(&odd).await.unwrap());

        // One lookup of the pod and its token, and one more look at the pod by
        // `logs` (a crashed container's come from pods/log); everything else
        // went through pods/proxy.
        assert_eq!(stand.api_requests.load(Ordering::SeqCst), 3);
        let status = sb.status().await.unwrap();
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(
            status.preview_addr.as_deref(),
            Some("project-kube-e2e.apna.svc.cluster.local:5173")
        );
        drop(daemon);
    }
}
