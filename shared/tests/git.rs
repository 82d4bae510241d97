//! Versions as Git commits, checked with the real `git`: a bare repository
//! served over HTTP on loopback by `git http-backend` (started here, behind a
//! token), pushed to through the API, cloned back with the git CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use apna::domain::{Project, LOCAL_USER};
use apna::testing::api::{harness, Harness};
use apna::testing::memory::MemorySandbox;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::json;

const TOKEN: &str = "s3cr3t-push-token";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// `git http-backend` as CGI behind a tiny HTTP server that wants `TOKEN`.
async fn serve_repos(root: PathBuf) -> SocketAddr {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    let app = axum::Router::new().fallback(move |req: Request| {
        let root = root.clone();
        let expected = expected.clone();
        async move { cgi(&root, &expected, req).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn cgi(root: &Path, expected: &str, req: Request) -> Response {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected);
    if !authorized {
        return Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "apna")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    feed.await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .expect("CGI headers");
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
    let mut resp = Response::builder();
    let mut status = 200;
    for line in head.lines() {
        let (k, v) = line.split_once(':').unwrap();
        if k.eq_ignore_ascii_case("status") {
            status = v.trim()[..3].parse().unwrap();
        } else {
            resp = resp.header(k.trim(), v.trim());
        }
    }
    resp.status(status)
        .body(Body::from(out.stdout[split.0 + split.1..].to_vec()))
        .unwrap()
}

struct Setup {
    h: Harness,
    project: Project,
    sb: MemorySandbox,
    dir: tempfile::TempDir,
    remote: String,
}

async fn setup() -> Option<Setup> {
    if Command::new("git").arg("--version").output().is_err() {
        assert!(
            !apna::testing::local::services_required(),
            "git is not installed"
        );
        eprintln!("skipped: git is not installed");
        return None;
    }
    let store = apna::testing::fixtures::memory_store().await;
    let h = harness(store, &[("APNA_GIT_ALLOW_PRIVATE_REMOTES", "1")]).await;
    let project = Project::new(LOCAL_USER, "Habit Tracker", "vite-react");
    h.state.store.create_project(&project).await.unwrap();
    let sb = h.sandboxes.get(&project.id);
    apna::testing::fixtures::fill_app(&sb, 1);
    let dir = tempfile::tempdir().unwrap();
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", "app.git"],
    );
    git(
        &dir.path().join("app.git"),
        &["config", "http.receivepack", "true"],
    );
    let addr = serve_repos(dir.path().to_path_buf()).await;
    let remote = format!("http://{addr}/app.git");
    Some(Setup {
        h,
        project,
        sb,
        dir,
        remote,
    })
}

impl Setup {
    async fn version(&self, summary: &str, edit: &str) -> apna::domain::Version {
        self.sb.put("src/App.tsx", edit);
        apna::snapshot::record_version(
            &*self.h.state.store,
            &*self.h.state.blobs,
            &self.sb,
            &self.project.id,
            None,
            summary,
        )
        .await
        .unwrap()
    }

    async fn push(&self, body: serde_json::Value) -> apna::testing::api::Reply {
        self.h
            .post(
                &format!("/api/projects/{}/git/push", self.project.id),
                None,
                &body.to_string(),
            )
            .await
    }

    /// Clones the served repository into a fresh folder and returns it.
    fn clone_back(&self, name: &str) -> PathBuf {
        let url = self
            .remote
            .replace("http://", &format!("http://x-access-token:{TOKEN}@"));
        git(self.dir.path(), &["clone", "-q", &url, name]);
        self.dir.path().join(name)
    }

    /// Commits as (id, subject+body, author name, author email, author time), oldest first.
    fn log(&self, repo: &Path) -> Vec<(String, String, String, String, i64)> {
        git(
            repo,
            &[
                "log",
                "--reverse",
                "--format=%H%x00%B%x00%an%x00%ae%x00%at%x01",
                "main",
            ],
        )
        .split('\x01')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\0').collect();
            (
                f[0].to_string(),
                f[1].trim().to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
    }

    /// Asserts the commits are the versions: message, author, time, and each
    /// tree equal to that version's snapshot byte for byte.
    async fn assert_history(&self, repo: &Path) {
        let versions = self
            .h
            .state
            .store
            .list_versions(&self.project.id)
            .await
            .unwrap();
        let log = self.log(repo);
        assert_eq!(log.len(), versions.len(), "{log:?}");
        for (v, (id, message, name, email, time)) in versions.iter().zip(&log) {
            assert_eq!(message, v.summary.trim());
            assert_eq!(name, LOCAL_USER);
            assert_eq!(email, "local@users.apna.invalid");
            assert_eq!(*time, v.created_at.timestamp());
            let tree = apna::snapshot::load_tree(&*self.h.state.blobs, &v.snapshot_key)
                .await
                .unwrap();
            let listing = git(repo, &["ls-tree", "-r", "-z", id]);
            let entries: Vec<&str> = listing.split('\0').filter(|e| !e.is_empty()).collect();
            assert_eq!(entries.len(), tree.files.len(), "version {}", v.number);
            for (entry, file) in entries.iter().zip(&tree.files) {
                let (meta, path) = entry.split_once('\t').unwrap();
                let meta: Vec<&str> = meta.split(' ').collect();
                assert_eq!(path, file.path);
                assert_eq!(
                    meta[0],
                    if file.executable { "100755" } else { "100644" },
                    "{path}"
                );
                let data = git_bytes(repo, &["cat-file", "blob", meta[2]]);
                assert_eq!(data, file.data, "version {} {path}", v.number);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_versions_as_commits_then_only_new_ones_and_never_over_a_diverged_branch() {
    let Some(s) = setup().await else { return };
    {
        // An executable file in a nested folder, and an empty one.
        let p = apna::sandbox::ProjectPath::parse("scripts/tools/seed.sh").unwrap();
        apna::sandbox::Sandbox::write_file(&s.sb, &p, b"#!/bin/sh\necho seed\n")
            .await
            .unwrap();
    }
    s.version(
        "Build a habit tracker",
        "export default () => <h1>Habits</h1>\n",
    )
    .await;
    s.version(
        "Make the heading say Daily Habits\n\nAlso tidy the layout.",
        "export default () => <h1>Daily Habits</h1>\n",
    )
    .await;

    // Without the token the remote refuses, and the token is nowhere in the answer.
    let r = s
        .push(json!({"remote_url": s.remote, "token": "wrong-token"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("token"), "{}", r.text);
    assert!(!r.text.contains("wrong-token"));

    let r = s
        .push(json!({"remote_url": s.remote, "token": TOKEN, "branch": "main"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["commits"], 2);
    assert_eq!(r.body["up_to_date"], false);
    assert!(!r.text.contains(TOKEN));
    let first = s.clone_back("first");
    s.assert_history(&first).await;
    assert_eq!(git(&first, &["rev-parse", "HEAD"]).trim(), r.body["head"]);
    git(&first, &["fsck", "--strict"]);

    // One more version: exactly one more commit, and only its objects are sent.
    let v3 = s
        .version(
            "Add a streak counter",
            "export default () => <h1>Streaks</h1>\n",
        )
        .await;
    let r2 = s
        .push(json!({"remote_url": s.remote, "token": TOKEN, "remember_token": true}))
        .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!(r2.body["commits"], 1);
    // The commit, the root tree, src/ and the new App.tsx: nothing already there.
    assert_eq!(r2.body["objects"], 4, "{}", r2.text);
    let bare = s.dir.path().join("app.git");
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]).trim(), "3");
    let second = s.clone_back("second");
    s.assert_history(&second).await;
    assert_eq!(s.log(&second)[2].1, v3.summary);
    // The same history twice gives the same ids: the first two commits are unchanged.
    assert_eq!(s.log(&first)[..2], s.log(&second)[..2]);

    // Nothing new: up to date. The kept token is used without sending it again.
    let r3 = s.push(json!({"remote_url": s.remote})).await;
    assert_eq!(r3.status, 200, "{}", r3.text);
    assert_eq!(r3.body["up_to_date"], true);
    assert_eq!(r3.body["commits"], 0);

    // Someone else pushes to main: Apna refuses to overwrite it.
    git(
        &second,
        &[
            "-c",
            "user.name=Other",
            "-c",
            "user.email=o@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "outside change",
        ],
    );
    git(&second, &["push", "-q", "origin", "main"]);
    let foreign = git(&bare, &["rev-parse", "main"]);
    s.version(
        "Dark theme",
        "export default () => <h1 className=\"dark\">Streaks</h1>\n",
    )
    .await;
    let r4 = s
        .push(json!({"remote_url": s.remote, "token": TOKEN}))
        .await;
    assert_eq!(r4.status, 409, "{}", r4.text);
    assert!(r4.text.contains("never overwrites"), "{}", r4.text);
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        foreign,
        "the remote branch was changed"
    );
    // Another branch takes the whole history.
    let r5 = s
        .push(json!({"remote_url": s.remote, "token": TOKEN, "branch": "apna/history"}))
        .await;
    assert_eq!(r5.status, 200, "{}", r5.text);
    assert_eq!(r5.body["commits"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_clones_into_the_version_history() {
    let Some(s) = setup().await else { return };
    let none =
        s.h.get(&format!("/api/projects/{}/git", s.project.id), None)
            .await;
    // The project is there; it has nothing to bundle yet (as publish answers).
    assert_eq!(none.status, 409, "{}", none.text);
    s.version("First", "export default () => <h1>One</h1>\n")
        .await;
    s.version("Second", "export default () => <h1>Two</h1>\n")
        .await;
    let resp =
        s.h.get(&format!("/api/projects/{}/git", s.project.id), None)
            .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["content-type"], "application/x-git-bundle");
    assert!(resp.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("habit-tracker.bundle"));
    let raw = {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .uri(format!("/api/projects/{}/git", s.project.id))
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let resp = s.h.router.clone().oneshot(req).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    };
    let bundle = s.dir.path().join("project.bundle");
    std::fs::write(&bundle, &raw).unwrap();
    git(
        s.dir.path(),
        &["clone", "-q", "project.bundle", "from-bundle"],
    );
    let repo = s.dir.path().join("from-bundle");
    git(&repo, &["bundle", "verify", "-q", "../project.bundle"]);
    s.assert_history(&repo).await;
    git(&repo, &["fsck", "--strict"]);
}

#[tokio::test]
async fn bad_push_requests_are_refused_before_any_network() {
    let store = apna::testing::fixtures::memory_store().await;
    let h = harness(store, &[]).await;
    let project = Project::new(LOCAL_USER, "x", "vite-react");
    h.state.store.create_project(&project).await.unwrap();
    let url = format!("/api/projects/{}/git/push", project.id);
    for body in [
        json!({}),
        json!({"remote_url": "http://example.com/a.git"}),
        json!({"remote_url": "https://127.0.0.1/a.git"}),
        json!({"remote_url": "https://user:pw@example.com/a.git"}),
        json!({"remote_url": "https://example.com/a.git", "branch": "../x"}),
        json!({"remote_url": "https://example.com/a.git", "branch": "-f"}),
        json!({"remote_url": "https://example.com/a.git", "force": true}),
    ] {
        let r = h.post(&url, None, &body.to_string()).await;
        assert_eq!(r.status, 400, "{body} → {}", r.text);
    }
    let other = format!("/api/projects/{}/git", "no-such-project");
    assert_eq!(h.get(&other, None).await.status, 404);
}
