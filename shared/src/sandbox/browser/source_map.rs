//! Stack frames of the page mapped back to the project's source.
//!
//! The dev server serves each module transformed (JSX, TypeScript, import
//! rewrites, the React refresh preamble), with its source map inline at the
//! end (`//# sourceMappingURL=data:application/json;base64,…`). A frame at
//! `http://127.0.0.1:5173/src/App.tsx?t=1712:14:9` is looked up in that map;
//! the file is the module's own path (`src/App.tsx`), which is what the
//! model edits.

use std::collections::HashMap;

use sourcemap::DecodedMap;

/// One stack frame in the page, positions 0-based as CDP gives them.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The script's URL.
    pub url: String,
    /// 0-based line in the served (transformed) module.
    pub line: u32,
    /// 0-based column in the served module.
    pub column: u32,
    /// The function's name, if any.
    pub function: String,
}

/// A frame placed in the project: 1-based, as editors count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `src/App.tsx`.
    pub file: String,
    /// 1-based line in the source file.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The function's name, if any.
    pub function: String,
}

/// Fetches and caches the source maps of one page's modules.
pub struct SourceMaps {
    origin: String,
    client: reqwest::Client,
    maps: HashMap<String, Option<DecodedMap>>,
}

impl SourceMaps {
    /// Maps for modules served from `origin` (`http://127.0.0.1:5173`).
    pub fn new(origin: &str) -> SourceMaps {
        SourceMaps {
            origin: origin.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            maps: HashMap::new(),
        }
    }

    /// The module path of `url` when it is one of the app's own modules (not
    /// a dependency, not Vite's client, not another origin).
    pub fn app_path(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.origin)?;
        let path = rest.split(['?', '#']).next().unwrap_or(rest);
        let own = path.starts_with('/')
            && !path.starts_with("/@")
            && !path.contains("/node_modules/")
            && !path.starts_with("/__")
            && !path.starts_with("/.vite/");
        own.then(|| path.trim_start_matches('/').to_string())
    }

    /// The first of `frames` in the app's own modules, mapped to its source.
    pub async fn first_app_frame(&mut self, frames: &[Frame]) -> Option<Place> {
        for f in frames {
            if let Some(place) = self.place(f).await {
                return Some(place);
            }
        }
        None
    }

    /// Up to `n` frames in the app's own modules, mapped.
    pub async fn app_frames(&mut self, frames: &[Frame], n: usize) -> Vec<Place> {
        let mut out = Vec::new();
        for f in frames {
            if out.len() >= n {
                break;
            }
            if let Some(p) = self.place(f).await {
                out.push(p);
            }
        }
        out
    }

    /// `frame` in its source file, when it is in an app module. Without a
    /// usable source map the served position is the best there is.
    pub async fn place(&mut self, frame: &Frame) -> Option<Place> {
        let file = self.app_path(&frame.url)?;
        let (line, column) = match self.map(&frame.url).await {
            Some(map) => match map.lookup_token(frame.line, frame.column) {
                Some(t) => (t.get_src_line() + 1, t.get_src_col() + 1),
                None => (frame.line + 1, frame.column + 1),
            },
            None => (frame.line + 1, frame.column + 1),
        };
        Some(Place {
            file,
            line,
            column,
            function: frame.function.clone(),
        })
    }

    async fn map(&mut self, url: &str) -> Option<&DecodedMap> {
        if !self.maps.contains_key(url) {
            let map = self.fetch(url).await;
            self.maps.insert(url.to_string(), map);
        }
        self.maps.get(url).and_then(Option::as_ref)
    }

    async fn fetch(&self, url: &str) -> Option<DecodedMap> {
        let resp = self
            .client
            .get(url)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let body = resp.bytes().await.ok()?;
        embedded(&body)
    }
}

/// The inline source map at the end of a served module.
pub fn embedded(module: &[u8]) -> Option<DecodedMap> {
    sourcemap::locate_sourcemap_reference_slice(module)
        .ok()
        .flatten()?
        .get_embedded_sourcemap()
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn frames_map_through_an_inline_source_map() {
        // `a;\nb` where the served line 2 column 4 came from source line 10 column 2.
        let map = r#"{"version":3,"sources":["App.tsx"],"names":[],"mappings":";IASE"}"#;
        let module = format!(
            "x;\nyyyyb;\n//# sourceMappingURL=data:application/json;base64,{}\n",
            base64::engine::general_purpose::STANDARD.encode(map)
        );
        let m = embedded(module.as_bytes()).expect("inline map");
        let t = m.lookup_token(1, 4).unwrap();
        assert_eq!((t.get_src_line(), t.get_src_col()), (9, 2));
    }

    #[test]
    fn only_the_apps_own_modules_count() {
        let maps = SourceMaps::new("http://127.0.0.1:5173/");
        assert_eq!(
            maps.app_path("http://127.0.0.1:5173/src/App.tsx?t=17")
                .as_deref(),
            Some("src/App.tsx")
        );
        for other in [
            "http://127.0.0.1:5173/@vite/client",
            "http://127.0.0.1:5173/node_modules/.vite/deps/react-dom_client.js?v=1",
            "http://cdn.example/x.js",
        ] {
            assert_eq!(maps.app_path(other), None, "{other}");
        }
    }
}
