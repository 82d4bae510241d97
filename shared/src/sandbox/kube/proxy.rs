//! Reaching a pod's sandboxd through the Kubernetes API server's `pods/proxy`
//! subresource: works from anywhere the API endpoint does (a Lambda outside
//! the VPC included), with the API server's authentication and RBAC in front.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;

use super::api_error::{self, Call};
use crate::error::{Error, Result};
use crate::sandbox::remote::{RequestTimeout, SandboxdTransport, SANDBOXD_PORT};

/// How long a request waits for its answer when it does not say (`RequestTimeout`).
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `SandboxdTransport` over `/api/v1/namespaces/{ns}/pods/{pod}:7070/proxy`.
pub struct KubeProxyTransport {
    client: kube::Client,
    namespace: String,
    pod: String,
    base: String,
}

impl KubeProxyTransport {
    /// A transport to sandboxd in `pod` of `namespace`.
    pub fn new(client: kube::Client, namespace: &str, pod: &str) -> Self {
        KubeProxyTransport {
            client,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            base: format!("/api/v1/namespaces/{namespace}/pods/{pod}:{SANDBOXD_PORT}/proxy"),
        }
    }

    fn call<'a>(&'a self, verb: &'a str) -> Call<'a> {
        Call {
            verb,
            resource: "pods/proxy",
            name: &self.pod,
            namespace: &self.namespace,
        }
    }
}

/// The RBAC verb the API server checks for a proxied request's method.
fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "proxy",
    }
}

/// A `v1 Status` body: the API server (not sandboxd) answered, e.g. the pod
/// is gone (404), its port refuses connections (502/503) or RBAC said no (403).
fn api_server_status(body: &[u8]) -> Option<kube::core::Status> {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        kind: Option<&'a str>,
        #[serde(rename = "apiVersion")]
        api_version: Option<&'a str>,
    }
    let k: Kind = serde_json::from_slice(body).ok()?;
    if k.kind == Some("Status") && k.api_version == Some("v1") {
        serde_json::from_slice(body).ok()
    } else {
        None
    }
}

#[async_trait]
impl SandboxdTransport for KubeProxyTransport {
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (parts, body) = req.into_parts();
        let verb = verb(&parts.method);
        let timeout = parts
            .extensions
            .get::<RequestTimeout>()
            .map_or(DEFAULT_TIMEOUT, |t| t.0);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut out = http::Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path}", self.base));
        for (k, v) in &parts.headers {
            out = out.header(k, v);
        }
        let out = out
            .body(kube::client::Body::from(body))
            .map_err(|e| Error::Internal(format!("pods/proxy request: {e}")))?;
        let exchange = async {
            let res = self
                .client
                .send(out)
                .await
                .map_err(|e| api_error::map(e, self.call(verb)))?;
            let (parts, body) = res.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| {
                    Error::NotReady(format!(
                        "sandboxd in pod {} stopped answering: {e}",
                        self.pod
                    ))
                })?
                .to_bytes();
            Ok::<_, Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                Error::NotReady(format!(
                    "sandboxd in pod {} did not answer within {timeout:?}",
                    self.pod
                ))
            })??;
        if !parts.status.is_success() {
            if let Some(status) = api_server_status(&body) {
                let code = if status.code == 0 {
                    parts.status.as_u16()
                } else {
                    status.code
                };
                return Err(api_error::from_status(
                    code,
                    &status.message,
                    self.call(verb),
                ));
            }
        }
        Ok(http::Response::from_parts(parts, body))
    }
}
