//! The browser UI (`web/`), built into the function that publishes it to the
//! stack's web bucket (behind CloudFront). No build step: the files are
//! served as committed, with the API's address put into `index.html`.

/// One file of the UI: its name, content type and bytes.
pub struct WebFile {
    /// Object key (the file's name in `web/`).
    pub name: &'static str,
    /// `Content-Type` to serve it with.
    pub content_type: &'static str,
    /// The committed bytes.
    pub bytes: &'static [u8],
}

macro_rules! web_file {
    ($name:literal, $type:literal) => {
        WebFile {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../../web/", $name)),
        }
    };
}

/// Every file of `web/` (a test checks the list against the directory).
pub const WEB_FILES: &[WebFile] = &[
    web_file!("index.html", "text/html; charset=utf-8"),
    web_file!("style.css", "text/css; charset=utf-8"),
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("api.js", "text/javascript; charset=utf-8"),
    web_file!("attachments.js", "text/javascript; charset=utf-8"),
    web_file!("auth.js", "text/javascript; charset=utf-8"),
    web_file!("dom.js", "text/javascript; charset=utf-8"),
    web_file!("highlight.js", "text/javascript; charset=utf-8"),
    web_file!("project.js", "text/javascript; charset=utf-8"),
    web_file!("select.js", "text/javascript; charset=utf-8"),
];

/// The empty API address `index.html` is committed with (same origin).
const API_BASE_META: &str = r#"<meta name="apna-api-base" content="">"#;

/// A file's bytes as published: `index.html` names the API at `api_base`.
pub fn published(file: &WebFile, api_base: &str) -> Vec<u8> {
    if file.name != "index.html" {
        return file.bytes.to_vec();
    }
    let html = String::from_utf8_lossy(file.bytes);
    let escaped: String = api_base
        .trim_end_matches('/')
        .chars()
        .map(|c| match c {
            '"' => "&quot;".to_string(),
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            c => c.to_string(),
        })
        .collect();
    html.replacen(
        API_BASE_META,
        &format!(r#"<meta name="apna-api-base" content="{escaped}">"#),
        1,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_web_is_published() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = WEB_FILES.iter().map(|f| f.name.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "add new web/ files to WEB_FILES");
    }

    #[test]
    fn index_names_the_api() {
        let index = WEB_FILES.iter().find(|f| f.name == "index.html").unwrap();
        assert!(String::from_utf8_lossy(index.bytes).contains(API_BASE_META));
        let out = String::from_utf8(published(
            index,
            "https://abc.execute-api.us-east-1.amazonaws.com/",
        ))
        .unwrap();
        assert!(out.contains(r#"<meta name="apna-api-base" content="https://abc.execute-api.us-east-1.amazonaws.com">"#));
        let out = String::from_utf8(published(index, r#"https://x"><script>"#)).unwrap();
        assert!(!out.contains("<script>\""), "{out}");
        let css = WEB_FILES.iter().find(|f| f.name == "style.css").unwrap();
        assert_eq!(published(css, "https://x"), css.bytes);
    }
}
