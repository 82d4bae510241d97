//! Publishing with the production local driver: the template app's version
//! built by the real `vite build` in a staging folder of its sandbox (Tailwind
//! classes, hashed assets, the deploy's base in every URL), served by `apna
//! serve`'s router; the project's own tree is left as it was.

use apna::publish::{PublishJob, PublishRequest};
use apna::sandbox::ProjectPath;
use apna::testing::site::fetch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_app_builds_publishes_and_serves() {
    let data = tempfile::tempdir().unwrap();
    let apna::testing::local::LocalApp {
        provider,
        store,
        blobs,
        backends,
        workflow,
        state,
        project,
        sandbox: sb,
    } = apna::testing::local::app_with_project(data.path(), "Counter").await;
    let app = "export default function App() {\n  return <h1 className=\"text-4xl text-emerald-700\">Published Counter</h1>\n}\n";
    sb.write_file(&ProjectPath::parse("src/App.tsx").unwrap(), app.as_bytes())
        .await
        .unwrap();
    let version = apna::snapshot::record_version(&*store, &*blobs, &*sb, &project.id, None, "v1")
        .await
        .unwrap();
    // The sandbox moves on after the version: the published site must not see it.
    sb.write_file(
        &ProjectPath::parse("src/App.tsx").unwrap(),
        b"export default function App() { return <h1>Unsaved Work</h1> }\n",
    )
    .await
    .unwrap();
    let before = sb.export_source().await.unwrap();

    apna::publish::start(
        &state,
        &project,
        PublishRequest {
            version: Some(version.number),
            slug: Some("counter".into()),
        },
    )
    .await
    .unwrap();
    let job: PublishJob =
        serde_json::from_value(workflow.starts.lock().unwrap()[0].2.clone()).unwrap();
    let deploy = apna::publish::build(&backends, &job).await.unwrap();
    apna::publish::activate(&backends, &job, &deploy)
        .await
        .unwrap();
    assert_eq!(
        sb.export_source().await.unwrap(),
        before,
        "publishing changed the project's source"
    );
    let staged = provider
        .local(&project.id)
        .unwrap()
        .root()
        .join(".apna-build/publish");
    assert!(
        std::fs::read_dir(&staged).map(|d| d.count()).unwrap_or(0) == 0,
        "the staging folder is left behind"
    );

    let router = apna::server::app_router(state.clone());
    let host = "counter.apps.localhost:3000";
    let index = fetch(&router, host, "/", &[]).await;
    assert_eq!(index.status, 200);
    let html = index.text();
    let base = format!("/_apna/{deploy}/");
    let script = html
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let style = html
        .split("href=\"")
        .find(|s| s.contains(".css"))
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        script.starts_with(&base) && style.starts_with(&base),
        "{html}"
    );
    let js = fetch(&router, host, script, &[]).await;
    assert_eq!(js.status, 200);
    assert!(js.text().contains("Published Counter"));
    assert!(!js.text().contains("Unsaved Work"));
    let css = fetch(&router, host, style, &[]).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    for class in ["text-4xl", "text-emerald-700"] {
        assert!(
            css.text().contains(class),
            "Tailwind missed {class} in the staged build"
        );
    }
    let icon = fetch(&router, host, "/favicon.svg", &[]).await;
    assert_eq!(icon.status, 200);
    provider.stop_all().await;
}
