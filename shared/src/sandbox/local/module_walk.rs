//! Loads a dev server's page and every module it imports, as a browser's
//! first visit would. The warm spare does it so its first real visitor finds
//! the modules transformed; Verify does it to collect what Vite cannot
//! transform (a missing import, a syntax error, a Tailwind error in the CSS)
//! without a `vite build`: the dev server has already transformed most
//! modules, so this costs a fraction of a build (see BENCHMARKS.md, #16).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// A module the dev server would not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedModule {
    /// The URL path requested (`/src/App.tsx`).
    pub path: String,
    /// The module that imports it (`None` for the page itself and its scripts).
    pub importer: Option<String>,
    /// HTTP status (0 when the request itself failed).
    pub status: u16,
    /// The answer's body (Vite's error page for a transform error).
    pub body: String,
}

/// What one walk saw.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Modules served.
    pub modules: usize,
    /// The URL paths served, query strings removed (`/src/App.tsx`).
    pub served: Vec<String>,
    /// Modules that failed.
    pub failed: Vec<FailedModule>,
    /// Whether the page itself was served.
    pub page_loaded: bool,
}

/// Dependencies pre-bundled by Vite and its own client: served from a cache,
/// nothing of the app's to check, and the largest answers.
fn skipped(path: &str) -> bool {
    path.starts_with("/.vite/")
        || path.starts_with("/@vite/")
        || path.starts_with("/@react-refresh")
        || path.starts_with("/node_modules/")
        || path.starts_with("/@fs/")
}

/// Walks the page at `addr` (`host:port`) and at most `limit` modules.
pub async fn walk(addr: &str, limit: usize) -> Walk {
    let mut out = Walk::default();
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
    else {
        return out;
    };
    let (Ok(script), Ok(import)) = (
        regex::Regex::new(r#"<script type="module" src="(/[^"]+)""#),
        regex::Regex::new(r#"(?:from|import)\s*\(?\s*"(/[^"]+)""#),
    ) else {
        return out;
    };
    let get = |path: String| {
        let client = client.clone();
        let url = format!("http://{addr}{path}");
        async move {
            match client.get(url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                }
                Err(e) => (0, e.to_string()),
            }
        }
    };
    let (status, html) = get("/".into()).await;
    if status != 200 {
        out.failed.push(FailedModule {
            path: "/".into(),
            importer: None,
            status,
            body: html,
        });
        return out;
    }
    out.page_loaded = true;
    let mut queue: VecDeque<(String, Option<String>)> = script
        .captures_iter(&html)
        .map(|c| (c[1].to_string(), None))
        .filter(|(p, _)| !skipped(p))
        .collect();
    let mut seen: HashSet<String> = queue.iter().map(|(p, _)| p.clone()).collect();
    while let Some((path, importer)) = queue.pop_front() {
        let (status, body) = get(path.clone()).await;
        if status != 200 {
            out.failed.push(FailedModule {
                path,
                importer,
                status,
                body,
            });
            continue;
        }
        out.modules += 1;
        out.served
            .push(path.split('?').next().unwrap_or(&path).to_string());
        for c in import.captures_iter(&body) {
            let next = c[1].to_string();
            if !skipped(&next) && seen.len() < limit && seen.insert(next.clone()) {
                queue.push_back((next, Some(path.clone())));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_and_vite_internals_are_skipped() {
        assert!(skipped("/.vite/deps/react.js?v=1"));
        assert!(skipped("/@vite/client"));
        assert!(skipped("/@react-refresh"));
        assert!(!skipped("/src/App.tsx"));
        assert!(!skipped("/src/index.css?t=1"));
    }
}
