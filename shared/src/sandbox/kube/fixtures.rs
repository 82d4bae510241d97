//! The mock Kubernetes API server of the kube driver's tests, and every object
//! it answers with (kube-rs/controller-rs's `fixtures.rs`): a `kube::Client`
//! over a `tower_test::mock::pair`, and a script of exchanges, each asserting
//! the exact method, path, query, content type and body of one request before
//! answering it. A request the script does not expect fails the test, so the
//! scripts also count the API requests of each operation (BENCHMARKS.md).
//!
//! The manifests here are written out by hand (not built with `objects`): they
//! are the specification the driver's objects are checked against.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};

use super::KubeOptions;
use crate::config::KubeTransport;

/// The namespace of every test.
pub const NS: &str = "apna";
/// The project of every test.
pub const ID: &str = "abc123";
/// The project's object name.
pub const NAME: &str = "project-abc123";
/// A sandboxd token.
pub const TOKEN: &str = "5f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100";

/// The driver's Role (`infra/k8s/rbac.yaml`, checked equal by a test): the
/// mock API server refuses any request these rules do not allow, as RBAC would.
pub const DRIVER_RULES: &[(&str, &[&str])] = &[
    (
        "pods",
        &["list", "create", "patch", "delete", "deletecollection"],
    ),
    ("pods/proxy", &["get", "create", "update", "delete"]),
    ("pods/log", &["get"]),
    ("services", &["create", "patch", "delete"]),
    (
        "persistentvolumeclaims",
        &["list", "create", "patch", "deletecollection"],
    ),
    (
        "secrets",
        &["get", "list", "create", "patch", "deletecollection"],
    ),
];

/// The (resource, verb) pairs RBAC checks for a request, as the API server
/// derives them (server-side apply also needs `create` when it creates).
pub fn rbac_of(
    method: &Method,
    path: &str,
    content_type: Option<&str>,
) -> Vec<(String, &'static str)> {
    let rest = path
        .split('?')
        .next()
        .unwrap_or_default()
        .strip_prefix(&format!("/api/v1/namespaces/{NS}/"))
        .unwrap_or_else(|| panic!("not a namespaced core path: {path}"));
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    let by_method = |m: &Method| match *m {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    match parts.as_slice() {
        [resource] => {
            let verb = match *method {
                Method::GET => "list",
                Method::POST => "create",
                Method::DELETE => "deletecollection",
                _ => "unknown",
            };
            vec![(resource.to_string(), verb)]
        }
        [resource, _name] => {
            let mut v = vec![(resource.to_string(), by_method(method))];
            if content_type == Some("application/apply-patch+yaml") {
                v.push((resource.to_string(), "create"));
            }
            v
        }
        [resource, _name, sub, ..] => vec![(format!("{resource}/{sub}"), by_method(method))],
        _ => panic!("unexpected path {path}"),
    }
}

/// The driver's options in tests: no warm pods unless a test sets some.
pub fn options() -> KubeOptions {
    KubeOptions {
        namespace: NS.into(),
        image: "registry.example/apna/preview@sha256:0123".into(),
        storage_class: Some("gp3".into()),
        warm_pods: 0,
        transport: KubeTransport::Proxy,
        ready_wait: std::time::Duration::from_secs(20),
        ui_origins: Vec::new(),
    }
}

/// How a request's URI is matched.
pub enum UriMatch {
    /// Exactly this path and query.
    Exact(String),
    /// A regular expression over path and query (for random warm pod names).
    Pattern(regex::Regex),
}

/// How a request's body is matched.
pub enum BodyMatch {
    /// No body.
    Empty,
    /// This JSON, exactly.
    Json(Value),
    /// This JSON after `redact` replaced what is random (tokens).
    Redacted(Value, fn(&mut Value)),
}

/// One request the mock expects, and its answer.
pub struct Exchange {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: UriMatch,
    /// Content type of the body, when there is one.
    pub content_type: Option<&'static str>,
    /// Headers that must be present with these values.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: BodyMatch,
    /// Answer status.
    pub status: u16,
    /// Answer body.
    pub response: Bytes,
}

impl Exchange {
    fn new(method: Method, uri: String) -> Exchange {
        Exchange {
            method,
            uri: UriMatch::Exact(uri),
            content_type: None,
            headers: vec![],
            body: BodyMatch::Empty,
            status: 200,
            response: Bytes::from_static(b"{}"),
        }
    }

    /// Answers with JSON.
    pub fn reply(mut self, status: u16, body: Value) -> Exchange {
        self.status = status;
        self.response = Bytes::from(body.to_string());
        self
    }

    /// Answers with raw bytes (sandboxd behind pods/proxy).
    pub fn reply_raw(mut self, status: u16, body: &'static [u8]) -> Exchange {
        self.status = status;
        self.response = Bytes::from_static(body);
        self
    }

    /// Requires a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Exchange {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Matches the URI with a pattern instead.
    pub fn uri_pattern(mut self, re: &str) -> Exchange {
        self.uri = UriMatch::Pattern(regex::Regex::new(re).expect("pattern"));
        self
    }
}

fn core(resource: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{resource}")
}

fn selector_query(selector: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("labelSelector", selector)
        .finish()
}

/// `GET` a list of `resource` by label selector.
pub fn list(resource: &str, selector: &str) -> Exchange {
    Exchange::new(
        Method::GET,
        format!("{}?&{}", core(resource), selector_query(selector)),
    )
}

/// `GET` one object.
pub fn get(resource: &str, name: &str) -> Exchange {
    Exchange::new(Method::GET, format!("{}/{name}", core(resource)))
}

/// Server-side apply of `body` to `resource/name` (field manager `apna`, forced).
pub fn apply(resource: &str, name: &str, body: Value) -> Exchange {
    Exchange {
        content_type: Some("application/apply-patch+yaml"),
        body: BodyMatch::Json(body),
        ..Exchange::new(
            Method::PATCH,
            format!("{}/{name}?&force=true&fieldManager=apna", core(resource)),
        )
    }
}

/// A JSON merge patch of `resource/name`.
pub fn merge(resource: &str, name: &str, body: Value) -> Exchange {
    Exchange {
        content_type: Some("application/merge-patch+json"),
        body: BodyMatch::Json(body),
        ..Exchange::new(
            Method::PATCH,
            format!("{}/{name}?&fieldManager=apna", core(resource)),
        )
    }
}

/// `POST` a Secret (its random token redacted before comparing).
pub fn create_secret(body: Value) -> Exchange {
    Exchange {
        content_type: Some("application/json"),
        body: BodyMatch::Redacted(body, redact_token),
        ..Exchange::new(Method::POST, format!("{}?", core("secrets")))
    }
}

/// `DELETE` every `resource` matching a selector.
pub fn delete_collection(resource: &str, selector: &str) -> Exchange {
    Exchange {
        content_type: Some("application/json"),
        body: BodyMatch::Json(json!({ "propagationPolicy": "Background" })),
        ..Exchange::new(
            Method::DELETE,
            format!("{}?&{}", core(resource), selector_query(selector)),
        )
    }
}

/// `DELETE` one object.
pub fn delete(resource: &str, name: &str) -> Exchange {
    Exchange {
        content_type: Some("application/json"),
        body: BodyMatch::Json(json!({ "propagationPolicy": "Background" })),
        ..Exchange::new(Method::DELETE, format!("{}/{name}?", core(resource)))
    }
}

/// A request through `pods/proxy` to sandboxd on 7070 (`path` is sandboxd's).
pub fn proxy(method: Method, pod: &str, path: &str) -> Exchange {
    Exchange::new(method, format!("{}/{pod}:7070/proxy{path}", core("pods")))
}

/// Replaces a Secret's `data.token` (random) with a marker, after checking it
/// is 64 hex characters.
fn redact_token(v: &mut Value) {
    let token = v.pointer_mut("/data/token").expect("secret has data.token");
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        token.as_str().expect("base64 string"),
    )
    .expect("token is base64");
    assert_eq!(decoded.len(), 64, "token is 256 bits in hex");
    assert!(decoded.iter().all(u8::is_ascii_hexdigit));
    *token = json!("<token>");
}

/// The mock API server: answers a script of exchanges.
pub struct ApiServer {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// A client talking to a fresh mock API server.
pub fn client() -> (kube::Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, NS), ApiServer { handle })
}

impl ApiServer {
    /// Answers `script` in order, asserting each request, then asserts that no
    /// further request comes. Join the handle to see assertion failures.
    pub fn run(mut self, script: Vec<Exchange>) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let total = script.len();
            for (i, ex) in script.into_iter().enumerate() {
                let what = format!("request {} of {total}", i + 1);
                let (req, send) = self
                    .handle
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("{what} never came"));
                let (parts, body) = req.into_parts();
                let uri = parts.uri.to_string();
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                for (resource, verb) in rbac_of(&parts.method, &uri, content_type) {
                    let allowed = DRIVER_RULES
                        .iter()
                        .any(|(r, verbs)| *r == resource && verbs.contains(&verb));
                    assert!(
                        allowed,
                        "{what}: the Role does not allow {verb} {resource} ({uri})"
                    );
                }
                assert_eq!(parts.method, ex.method, "{what}: method of {uri}");
                match &ex.uri {
                    UriMatch::Exact(u) => assert_eq!(&uri, u, "{what}: path and query"),
                    UriMatch::Pattern(re) => assert!(re.is_match(&uri), "{what}: {uri} !~ {re}"),
                }
                assert_eq!(
                    parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    ex.content_type,
                    "{what}: content type of {uri}"
                );
                for (name, value) in &ex.headers {
                    assert_eq!(
                        parts.headers.get(*name).and_then(|v| v.to_str().ok()),
                        Some(value.as_str()),
                        "{what}: header {name} of {uri}"
                    );
                }
                let bytes = body.collect().await.expect("request body").to_bytes();
                match ex.body {
                    BodyMatch::Empty => assert!(bytes.is_empty(), "{what}: {uri} has a body"),
                    BodyMatch::Json(want) => {
                        let got: Value = serde_json::from_slice(&bytes).expect("JSON body");
                        assert_eq!(got, want, "{what}: body of {} {uri}", ex.method);
                    }
                    BodyMatch::Redacted(want, redact) => {
                        let mut got: Value = serde_json::from_slice(&bytes).expect("JSON body");
                        redact(&mut got);
                        assert_eq!(got, want, "{what}: body of {} {uri}", ex.method);
                    }
                }
                send.send_response(
                    Response::builder()
                        .status(ex.status)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(ex.response))
                        .expect("response"),
                );
            }
            tokio::select! {
                extra = self.handle.next_request() => {
                    if let Some((req, _)) = extra {
                        panic!("unexpected request after the script: {} {}", req.method(), req.uri());
                    }
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
            total
        })
    }
}

// ---------------------------------------------------------------- objects

/// Labels of the project's objects.
pub fn project_labels() -> Value {
    json!({
        "app.kubernetes.io/managed-by": "apna",
        "apna.dev/role": "preview",
        "apna.dev/project": ID,
    })
}

/// Labels of the project's pod.
pub fn project_pod_labels() -> Value {
    let mut l = project_labels();
    l["app"] = json!(NAME);
    l
}

/// Labels of warm objects.
pub fn warm_labels() -> Value {
    json!({
        "app.kubernetes.io/managed-by": "apna",
        "apna.dev/role": "preview",
        "apna.dev/warm": "true",
    })
}

/// The Pod the driver applies: `apna sandboxd` + Vite, PSS "restricted".
pub fn pod_manifest(name: &str, labels: Value, claim: &str, secret: &str, log_id: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NS, "labels": labels },
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": { "type": "RuntimeDefault" }
            },
            "containers": [{
                "name": "sandbox",
                "image": "registry.example/apna/preview@sha256:0123",
                "imagePullPolicy": "IfNotPresent",
                "ports": [
                    { "name": "vite", "containerPort": 5173, "protocol": "TCP" },
                    { "name": "sandboxd", "containerPort": 7070, "protocol": "TCP" }
                ],
                "env": [
                    { "name": "APNA_SANDBOXD_TOKEN", "valueFrom": { "secretKeyRef": { "name": secret, "key": "token", "optional": false } } },
                    { "name": "APNA_PROJECT_ID", "value": log_id },
                    { "name": "APNA_HMR_CLIENT_PORT", "value": "443" },
                    { "name": "HOME", "value": "/home/apna" }
                ],
                "resources": {
                    "requests": { "cpu": "250m", "memory": "512Mi" },
                    "limits": { "cpu": "1", "memory": "2Gi" }
                },
                "readinessProbe": {
                    "httpGet": { "path": "/", "port": 5173 },
                    "periodSeconds": 2, "failureThreshold": 3, "timeoutSeconds": 2
                },
                "livenessProbe": {
                    "httpGet": { "path": "/healthz", "port": 7070 },
                    "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "privileged": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "runAsUser": 1000,
                    "runAsGroup": 1000,
                    "capabilities": { "drop": ["ALL"] },
                    "seccompProfile": { "type": "RuntimeDefault" }
                },
                "volumeMounts": [
                    { "name": "workspace", "mountPath": "/workspace" },
                    { "name": "tmp", "mountPath": "/tmp" },
                    { "name": "home", "mountPath": "/home/apna" }
                ]
            }],
            "volumes": [
                { "name": "workspace", "persistentVolumeClaim": { "claimName": claim, "readOnly": false } },
                { "name": "tmp", "emptyDir": { "sizeLimit": "1Gi" } },
                { "name": "home", "emptyDir": { "sizeLimit": "256Mi" } }
            ]
        }
    })
}

/// The project's Pod as applied for a new project.
pub fn project_pod_manifest() -> Value {
    pod_manifest(
        NAME,
        project_pod_labels(),
        NAME,
        &format!("{NAME}-sandboxd"),
        ID,
    )
}

/// The PVC the driver applies.
pub fn pvc_manifest(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "namespace": NS, "labels": labels },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "resources": { "requests": { "storage": "5Gi" } }
        }
    })
}

/// The Service the driver applies.
pub fn service_manifest() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": NAME, "namespace": NS, "labels": project_labels() },
        "spec": {
            "type": "ClusterIP",
            "selector": { "app": NAME },
            "ports": [{ "name": "vite", "port": 5173, "targetPort": 5173, "protocol": "TCP" }]
        }
    })
}

/// The token Secret the driver creates (token redacted).
pub fn secret_manifest(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": NS, "labels": labels },
        "type": "Opaque",
        "immutable": true,
        "data": { "token": "<token>" }
    })
}

/// A list answer.
pub fn list_of(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": "100" },
        "items": items
    })
}

/// A `v1 Status` failure answer.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    })
}

/// How far along a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Just created: not scheduled.
    Pending,
    /// Not schedulable (quota).
    Unschedulable,
    /// Container running, Vite not answering yet.
    Running,
    /// Ready.
    Ready,
    /// The container keeps crashing.
    CrashLoop,
    /// The image cannot be pulled.
    ImagePullBackOff,
    /// Evicted.
    Evicted,
}

/// A pod as the API server returns it: `manifest` plus uid, resource version
/// and a status for `phase`.
pub fn pod_in(mut manifest: Value, phase: PodPhase) -> Value {
    let name = manifest["metadata"]["name"]
        .as_str()
        .unwrap_or("x")
        .to_string();
    manifest["metadata"]["uid"] = json!(format!("uid-{name}"));
    manifest["metadata"]["resourceVersion"] = json!("41");
    manifest["metadata"]["creationTimestamp"] = json!("2026-01-02T03:04:05Z");
    let cond = |t: &str, s: bool| json!({ "type": t, "status": if s { "True" } else { "False" } });
    let running = json!({ "running": { "startedAt": "2026-01-02T03:04:06Z" } });
    let container = |state: Value, ready: bool, restarts: i32, last: Value| {
        json!([{
            "name": "sandbox", "image": "img", "imageID": "", "ready": ready,
            "restartCount": restarts, "state": state, "lastState": last
        }])
    };
    manifest["status"] = match phase {
        PodPhase::Pending => json!({ "phase": "Pending" }),
        PodPhase::Unschedulable => json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."
            }]
        }),
        PodPhase::Running => json!({
            "phase": "Running", "podIP": "10.1.2.3",
            "conditions": [cond("PodScheduled", true), cond("Ready", false)],
            "containerStatuses": container(running, false, 0, json!({}))
        }),
        PodPhase::Ready => json!({
            "phase": "Running", "podIP": "10.1.2.3",
            "conditions": [cond("PodScheduled", true), cond("Ready", true)],
            "containerStatuses": container(running, true, 0, json!({}))
        }),
        PodPhase::CrashLoop => json!({
            "phase": "Running", "podIP": "10.1.2.3",
            "conditions": [cond("PodScheduled", true), cond("Ready", false)],
            "containerStatuses": container(
                json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container" } }),
                false, 4,
                json!({ "terminated": { "exitCode": 1, "reason": "Error" } })
            )
        }),
        PodPhase::ImagePullBackOff => json!({
            "phase": "Pending",
            "conditions": [cond("PodScheduled", true), cond("Ready", false)],
            "containerStatuses": container(
                json!({ "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image" } }),
                false, 0, json!({})
            )
        }),
        PodPhase::Evicted => json!({
            "phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage."
        }),
    };
    manifest
}

/// The project's pod, in `phase`.
pub fn project_pod(phase: PodPhase) -> Value {
    pod_in(project_pod_manifest(), phase)
}

/// The same object, being deleted.
pub fn terminating(mut obj: Value) -> Value {
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-02T04:00:00Z");
    obj
}

/// An object as stored: `manifest` with uid and resource version.
pub fn stored(mut manifest: Value) -> Value {
    let name = manifest["metadata"]["name"]
        .as_str()
        .unwrap_or("x")
        .to_string();
    manifest["metadata"]["uid"] = json!(format!("uid-{name}"));
    manifest["metadata"]["resourceVersion"] = json!("41");
    manifest
}

/// The project's stored PVC.
pub fn project_pvc() -> Value {
    stored(pvc_manifest(NAME, project_labels()))
}

/// A stored token Secret with [`TOKEN`].
pub fn secret_with_token(name: &str, labels: Value) -> Value {
    let mut s = stored(secret_manifest(name, labels));
    s["data"]["token"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        TOKEN
    ));
    s
}

/// A warm pod `warm-{suffix}` in `phase`.
pub fn warm_pod(suffix: &str, phase: PodPhase) -> Value {
    let name = format!("warm-{suffix}");
    pod_in(
        pod_manifest(
            &name,
            warm_labels(),
            &name,
            &format!("{name}-sandboxd"),
            &name,
        ),
        phase,
    )
}
