//! Publishing without Node: a memory sandbox whose `exec` plays `vite build`
//! (the output names its deploy's base, like Vite's), and requests to
//! published sites through `apna serve`'s router.

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::memory::MemorySandbox;
use crate::sandbox::ExecOutput;

/// Text in a staged `src/App.tsx` that makes the fake build fail.
pub const BUILD_FAILS: &str = "BUILD_FAILS";

fn ok(output: String) -> ExecOutput {
    ExecOutput {
        exit_code: Some(0),
        output,
        truncated: false,
        timed_out: false,
    }
}

/// Makes `sb` answer the publish build's commands: `rm -rf` of the staging
/// folder, `vite build` (writes `index.html`, a hashed script holding the
/// staged `src/App.tsx`, and `favicon.svg`; fails when the app contains
/// [`BUILD_FAILS`]) and the output listing.
pub fn fake_vite(sb: &MemorySandbox) {
    let handle = sb.clone();
    sb.set_exec_handler(std::sync::Arc::new(move |req| {
        let cmd = req.command.as_str();
        if let Some(dir) = cmd.strip_prefix("rm -rf ") {
            handle.remove_prefix(&format!("{dir}/"));
            return ok(String::new());
        }
        let Some(rest) = cmd.strip_prefix("cd ") else {
            return ok(String::new());
        };
        let (dir, tail) = rest.split_once(" && ").unwrap_or((rest, ""));
        if tail.starts_with("find ") {
            let prefix = format!("{dir}/");
            let listing: Vec<String> = handle
                .paths()
                .into_iter()
                .filter_map(|p| p.strip_prefix(&prefix).map(|r| format!("./{r}")))
                .collect();
            return ok(listing.join("\n") + "\n");
        }
        if tail.contains("vite.js build") {
            let base = tail
                .split_whitespace()
                .skip_while(|w| *w != "--base")
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let app = handle
                .file(&format!("{dir}/src/App.tsx"))
                .unwrap_or_default();
            if app.contains(BUILD_FAILS) {
                return ExecOutput {
                    exit_code: Some(1),
                    output: "src/App.tsx:1:1: ERROR: Expected \";\" but found \"FAILS\"\n".into(),
                    truncated: false,
                    timed_out: false,
                };
            }
            let hash = &crate::blob::sha256_hex(app.as_bytes())[..8];
            let script = format!("assets/index-{hash}.js");
            handle.put(
                &format!("{dir}/out/index.html"),
                &format!(
                    "<!doctype html><html><head><link rel=\"icon\" href=\"{base}favicon.svg\">\
                     <script type=\"module\" src=\"{base}{script}\"></script></head>\
                     <body><div id=\"root\"></div></body></html>\n"
                ),
            );
            handle.put(
                &format!("{dir}/out/{script}"),
                &format!("document.getElementById('root').textContent = {app:?};\n"),
            );
            handle.put(
                &format!("{dir}/out/favicon.svg"),
                "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
            );
            return ok(String::new());
        }
        ok(String::new())
    }));
}

/// A response from a published site.
pub struct Page {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: axum::http::HeaderMap,
    /// Body (as received: compressed when asked for).
    pub body: Vec<u8>,
}

impl Page {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
}

/// GET `path` with `Host: host` and extra `headers` through `router`.
pub async fn fetch(router: &Router, host: &str, path: &str, headers: &[(&str, &str)]) -> Page {
    let mut req = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Page {
        status,
        headers,
        body,
    }
}
