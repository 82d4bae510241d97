//! Where a published site's files are in the blob store, and which file a
//! request for `{slug}.{apps domain}{path}` gets. CloudFront runs the same
//! rules in `infra/site-router.js`; both are checked against the cases in
//! `tests/fixtures/site_routes.json`.
//!
//! # Keys
//!
//! * `sites/{slug}/_apna/{deploy}/…` — one deploy: a build's output, written
//!   once and never changed. The app is built with Vite's `base` set to
//!   `/_apna/{deploy}/`, so its pages load their scripts, styles and assets
//!   from their own deploy and never from another.
//! * `sites/{slug}/index.html` — the entry: a copy of the serving deploy's
//!   `index.html`, and the pointer that a publish flips with one write. Every
//!   path without a file extension gets it (client-side routes).
//! * `sites/{slug}/{file}` — copies of the serving deploy's other top-level
//!   files (`public/`: `favicon.svg`, `robots.txt`, …) for URLs that name
//!   them without the deploy prefix.
//! * `projects/{id}/deploys/{slug}/{deploy}.json` — a deploy's manifest
//!   ([`super::DeployManifest`]); private, next to the project's snapshots.

use crate::blob::ObjectHeaders;

/// The URL and key segment under which deploys live.
pub const DEPLOY_DIR: &str = "_apna";

/// `Cache-Control` of files inside a deploy: their URLs change with every deploy.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the entry and top-level copies: revalidated on every use.
pub const REVALIDATE: &str = "no-cache";

/// `sites/{slug}/`: everything served for one slug.
pub fn site_prefix(slug: &str) -> String {
    format!("sites/{slug}/")
}

/// `sites/{slug}/index.html`: the entry, which a publish flips.
pub fn entry_key(slug: &str) -> String {
    format!("sites/{slug}/index.html")
}

/// `sites/{slug}/_apna/{deploy}/`: one deploy's files.
pub fn deploy_prefix(slug: &str, deploy_id: &str) -> String {
    format!("sites/{slug}/{DEPLOY_DIR}/{deploy_id}/")
}

/// The URL path a deploy is built for (Vite's `base`).
pub fn deploy_base(deploy_id: &str) -> String {
    format!("/{DEPLOY_DIR}/{deploy_id}/")
}

/// `projects/{id}/deploys/`: a project's deploy manifests.
pub fn manifests_prefix(project_id: &str) -> String {
    format!("projects/{project_id}/deploys/")
}

/// `projects/{id}/deploys/{slug}/{deploy}.json`: one deploy's manifest. A
/// rename copies a deploy to the new slug under the same id (its pages name
/// their deploy's URL prefix), so the slug is part of the key.
pub fn manifest_key(project_id: &str, slug: &str, deploy_id: &str) -> String {
    format!("projects/{project_id}/deploys/{slug}/{deploy_id}.json")
}

/// Whether `id` has the shape of a deploy id we make (`v3-0a1b2c3d`).
pub fn is_deploy_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether a built file is copied to the top of the site: everything but the
/// entry itself and Vite's hashed `assets/`, which only deploy URLs name.
pub fn is_top_level_copy(path: &str) -> bool {
    path != "index.html" && !path.starts_with("assets/")
}

/// The site-relative path serving a request path (still percent-encoded, as
/// on the wire), or `None` for paths that can name no file (`..`, NUL,
/// backslashes, bad encoding). Paths without a file extension get the entry.
pub fn route(uri_path: &str) -> Option<String> {
    let decoded = percent_decode(uri_path)?;
    let rel = decoded.strip_prefix('/')?;
    if rel.is_empty() || rel.ends_with('/') {
        return Some("index.html".into());
    }
    let segments: Vec<&str> = rel.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains(['\\', '\0']))
    {
        return None;
    }
    if segments[0] == DEPLOY_DIR || segments.last().is_some_and(|l| l.contains('.')) {
        Some(rel.to_string())
    } else {
        Some("index.html".into())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers a site file is served with: its content type, and immutable
/// caching inside a deploy, revalidation everywhere else.
pub fn headers_for(rel: &str) -> ObjectHeaders {
    let mime = mime_guess::from_path(rel).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "svg" | "manifest+json"
        );
    let content_type = if text && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    let in_deploy =
        rel.starts_with(DEPLOY_DIR) && rel.as_bytes().get(DEPLOY_DIR.len()) == Some(&b'/');
    ObjectHeaders {
        content_type,
        cache_control: if in_deploy { IMMUTABLE } else { REVALIDATE }.to_string(),
    }
}

/// The slug a `Host` header names: `{slug}.{apps_domain}` (port allowed),
/// or one of the extra `hosts` (custom domains). Matched exactly like
/// preview hosts: lower-case, one label, nothing else.
pub fn slug_for_host(host: &str, apps_domain: &str, hosts: &[(String, String)]) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            h
        }
        Some(_) => return None,
        None => host,
    };
    if let Some((_, slug)) = hosts.iter().find(|(h, _)| h == name) {
        return Some(slug.clone());
    }
    let (label, domain) = name.split_once('.')?;
    let ok = domain == apps_domain
        && (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| label.to_string())
}

/// Whether a host belongs to published sites at all (then [`slug_for_host`]
/// decides which, strictly): a subdomain of the apps domain, or an extra host.
pub fn is_site_host(host: &str, apps_domain: &str, hosts: &[(String, String)]) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    hosts.iter().any(|(h, _)| h == name)
        || (name.len() > apps_domain.len() + 1
            && name.ends_with(apps_domain)
            && name.as_bytes()[name.len() - apps_domain.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_the_cloudfront_function() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/site_routes.json")).unwrap();
        for case in cases["routes"].as_array().unwrap() {
            let uri = case["uri"].as_str().unwrap();
            let want = case["file"].as_str();
            assert_eq!(route(uri).as_deref(), want, "route({uri:?})");
        }
        for case in cases["hosts"].as_array().unwrap() {
            let host = case["host"].as_str().unwrap();
            let want = case["slug"].as_str();
            let hosts = vec![("shop.example.com".to_string(), "my-shop".to_string())];
            assert_eq!(
                slug_for_host(host, "apps.example.com", &hosts).as_deref(),
                want,
                "slug_for_host({host:?})"
            );
        }
    }

    #[test]
    fn headers_by_kind() {
        let h = headers_for("index.html");
        assert_eq!(h.content_type, "text/html; charset=utf-8");
        assert_eq!(h.cache_control, REVALIDATE);
        let h = headers_for("_apna/v1-ab/assets/index-x1.js");
        assert!(h.content_type.contains("javascript"), "{}", h.content_type);
        assert_eq!(h.cache_control, IMMUTABLE);
        assert_eq!(headers_for("_apna/v1/a.png").content_type, "image/png");
        assert_eq!(
            headers_for("favicon.svg").content_type,
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(headers_for("_apnax/a.css").cache_control, REVALIDATE);
        assert_eq!(
            headers_for("data.bin").content_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn site_hosts() {
        let none: Vec<(String, String)> = vec![];
        assert!(is_site_host(
            "a.apps.localhost:3000",
            "apps.localhost",
            &none
        ));
        assert!(is_site_host("a.b.apps.localhost", "apps.localhost", &none));
        assert!(!is_site_host("apps.localhost", "apps.localhost", &none));
        assert!(!is_site_host("x.localhost", "apps.localhost", &none));
        assert_eq!(
            slug_for_host("a.b.apps.localhost", "apps.localhost", &none),
            None
        );
    }
}
