//! Test fixtures for the API: an `AppState` over a real store (SQLite or
//! PostgreSQL), in-memory sandboxes, a model that must not be called, and a
//! workflow double that records what the API asked of it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apna::agent::{DeltaSender, Model, ModelRequest, ModelResponse};
use apna::app::AppState;
use apna::blob::FsBlobStore;
use apna::config::Config;
use apna::domain::{Execution, HistoryEvent};
use apna::sandbox::memory::MemorySandbox;
use apna::sandbox::{Sandbox, SandboxProvider};
use apna::store::Store;
use apna::workflow::Workflow;
use apna::{Error, Result};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Sandboxes kept in memory, one per project, shared across handles.
#[derive(Default)]
pub struct MemoryProvider {
    boxes: Mutex<HashMap<String, MemorySandbox>>,
}

impl MemoryProvider {
    pub fn get(&self, id: &str) -> MemorySandbox {
        let mut boxes = self.boxes.lock().unwrap();
        boxes
            .entry(id.to_string())
            .or_insert_with(|| MemorySandbox::with_template(id))
            .clone()
    }
}

impl SandboxProvider for MemoryProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.get(project_id)))
    }
    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// A model the API tests never reach.
pub struct NoModel;

#[async_trait]
impl Model for NoModel {
    fn model_id(&self) -> &str {
        "none"
    }
    async fn complete(&self, _: &ModelRequest, _: Option<&DeltaSender>) -> Result<ModelResponse> {
        Err(Error::Model("the API tests do not call the model".into()))
    }
}

/// Records starts and stops; executions never progress by themselves.
#[derive(Default)]
pub struct RecordingWorkflow {
    pub starts: Mutex<Vec<(String, String, Value)>>,
    pub stops: Mutex<Vec<String>>,
}

#[async_trait]
impl Workflow for RecordingWorkflow {
    fn backend(&self) -> &'static str {
        "recording"
    }
    async fn start(&self, sm: &str, name: &str, input: Value) -> Result<()> {
        self.starts
            .lock()
            .unwrap()
            .push((sm.into(), name.into(), input));
        Ok(())
    }
    async fn describe(&self, _: &str) -> Result<Option<Execution>> {
        Ok(None)
    }
    async fn history(&self, _: &str) -> Result<Vec<HistoryEvent>> {
        Ok(vec![])
    }
    async fn stop(&self, name: &str, _: &str) -> Result<()> {
        self.stops.lock().unwrap().push(name.into());
        Ok(())
    }
}

pub struct Harness {
    pub state: AppState,
    pub router: Router,
    pub workflow: Arc<RecordingWorkflow>,
    pub sandboxes: Arc<MemoryProvider>,
    _dir: tempfile::TempDir,
}

pub async fn harness(store: Arc<dyn Store>, vars: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("APNA_DATA_DIR".into(), dir.path().display().to_string());
    let config = Config::from_vars(env).unwrap();
    let blobs = Arc::new(FsBlobStore::new(dir.path().join("blobs")).await.unwrap());
    let sandboxes = Arc::new(MemoryProvider::default());
    let state = AppState::new(config, store, blobs, sandboxes.clone(), Arc::new(NoModel));
    let workflow = Arc::new(RecordingWorkflow::default());
    state.set_workflow(workflow.clone());
    let router = apna::api::router(state.clone());
    Harness {
        state,
        router,
        workflow,
        sandboxes,
        _dir: dir,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
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
        }
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call("GET", uri, token, None).await
    }

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
