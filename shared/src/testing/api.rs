//! The API in a box: a [`Harness`] calling the router in process.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::memory::MemoryProvider;
use super::model::NoModel;
use super::workflow::RecordingWorkflow;
use crate::app::{AppState, Backends};
use crate::blob::FsBlobStore;
use crate::store::Store;

/// The API over a real store, in-memory sandboxes, a blob store in a temp
/// dir, no model and a [`RecordingWorkflow`].
pub struct Harness {
    /// The API's state.
    pub state: AppState,
    /// The whole API.
    pub router: Router,
    /// What the API asked of the workflow.
    pub workflow: Arc<RecordingWorkflow>,
    /// The projects' sandboxes.
    pub sandboxes: Arc<MemoryProvider>,
    _dir: tempfile::TempDir,
}

/// A [`Harness`] over `store` with the settings `vars`.
pub async fn harness(store: Arc<dyn Store>, vars: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = super::fixtures::config(dir.path(), vars);
    let blobs = Arc::new(FsBlobStore::new(dir.path().join("blobs")).await.unwrap());
    let sandboxes = Arc::new(MemoryProvider::default());
    let backends = Backends::new(config, store, blobs, sandboxes.clone(), Arc::new(NoModel));
    let workflow = Arc::new(RecordingWorkflow::default());
    let state = AppState::new(backends, workflow.clone());
    // As `api::router`, but each route sees only the backends its Lambda
    // function builds: a handler reaching further fails the test.
    let hosts = crate::api::guard::HostAllowlist::for_server(&state.config);
    let router = crate::api::with_middleware(
        crate::api::deployed_routes(&state).fallback(crate::api::not_found),
        state.clone(),
        Some(hosts),
    );
    Harness {
        state,
        router,
        workflow,
        sandboxes,
        _dir: dir,
    }
}

/// An API answer.
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: axum::http::HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
    /// The body as it came.
    pub bytes: bytes::Bytes,
}

impl Harness {
    /// Sends one request (JSON when `body` is given) through the router.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        self.call_with(method, uri, token, body, &[("host", "localhost")])
            .await
    }

    /// [`Harness::call`] with the given headers instead of the default `Host: localhost`.
    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
            bytes,
        }
    }

    /// GET `uri`.
    pub async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call("GET", uri, token, None).await
    }

    /// POST JSON `body` to `uri`.
    pub async fn post(&self, uri: &str, token: Option<&str>, body: &str) -> Reply {
        self.call("POST", uri, token, Some(body)).await
    }
}

/// Asserts the one error shape and returns its code.
pub fn error_code(r: &Reply) -> String {
    let code = r.body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error shape in {}", r.text));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
    code.to_string()
}
