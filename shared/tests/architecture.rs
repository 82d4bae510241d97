//! Which way dependencies point inside the `apna` crate (docs/architecture.md):
//! each top-level module may use only the modules listed before it in
//! [`LAYERS`], so there are no cycles and nothing below the HTTP layer knows
//! about HTTP. Unit tests (`#[cfg(test)] mod tests` and `tests.rs` files) and
//! comments are not counted.
//!
//! Run it alone with `cargo test -p apna --test architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, from the bottom up.
const LAYERS: &[&str] = &[
    "error",
    "xray",
    "config",
    "domain",
    "starter",
    "diff",
    "blob",
    "images",
    "store",
    "sandbox",
    "snapshot",
    "agent",
    "workflow",
    "app",
    "project",
    "publish",
    "git",
    "run",
    "light_sleep",
    "tasks",
    "preview",
    "site",
    "api",
    "server",
    "lambda",
    "testing",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source that counts: unit tests and comments removed.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `module -> modules it uses`, from every `crate::name` path in its files.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel.file_name().is_some_and(|n| n == "tests.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let used = edges.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                used.insert(name);
            }
        }
    }
    edges
}

#[test]
fn every_module_is_in_a_layer() {
    for module in edges().keys() {
        assert!(
            LAYERS.contains(&module.as_str()),
            "shared/src/{module} is not listed in LAYERS (tests/architecture.rs) and docs/architecture.md"
        );
    }
}

#[test]
fn dependencies_point_down() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (module, used) in edges() {
        let Some(mine) = rank(&module) else { continue };
        for dep in used {
            match rank(&dep) {
                Some(theirs) if theirs < mine => {}
                _ => wrong.push(format!("{module} -> {dep}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules using modules at their level or above (see docs/architecture.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_entry_points_use_the_http_layer() {
    for (module, used) in edges() {
        if used.contains("api") {
            assert!(
                ["server", "lambda", "testing"].contains(&module.as_str()),
                "{module} uses crate::api; only the entry points (server, lambda) may"
            );
        }
    }
}

#[test]
fn the_checker_sees_real_edges() {
    // Guards the parser itself: a checker that saw nothing would pass anything.
    let edges = edges();
    assert!(edges["api"].contains("run"));
    assert!(edges["tasks"].contains("agent"));
    assert!(!edges["store"].contains("sandbox"));
}
