//! `npm install` of packages a project already has, answered from the shared
//! cache without running npm.
//!
//! A project's `node_modules` is a link to its starter's installed
//! dependencies. Any package-manager command first replaces that link with a
//! private copy (`template::detach_node_modules`: ~235 MB and ~1 s for the
//! `app` starter), then asks the registry, then makes Vite bundle every
//! dependency again. Models often "install" what the starter already ships
//! (`npm install recharts lucide-react`), so a plain install whose packages
//! are all present at an acceptable version is answered here, naming the
//! installed versions, and nothing is copied or downloaded. A package the
//! starter lists itself counts when no version is asked for; one that is only
//! there as another package's dependency (often an old major, like `nanoid`
//! under `postcss`) counts only when the requested range matches it. Anything
//! else (a new package, another version, a flag we do not know) runs as before.

use std::path::Path;

use serde_json::Value;

/// Flags that do not change what an install does to an already-present package.
const HARMLESS_FLAGS: &[&str] = &[
    "-D",
    "--save-dev",
    "--dev",
    "-d",
    "-S",
    "--save",
    "-P",
    "--save-prod",
    "-E",
    "--save-exact",
    "--exact",
    "--legacy-peer-deps",
    "--no-audit",
    "--no-fund",
    "--prefer-offline",
    "--silent",
    "--quiet",
    "-s",
    "--loglevel=error",
    "--loglevel=warn",
];

/// One requested package: `name` or `name@range`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    name: String,
    range: Option<String>,
}

/// What a package-manager command asks for, when it is a plain install.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Install {
    /// `npm install` / `npm ci` with no packages: install what package.json lists.
    Everything,
    /// `npm install a b@^2`.
    Packages(Vec<Wanted>),
}

/// The answer to `command` run in `project_dir` when every package it installs
/// is already there, or `None` when the command must really run (blocking).
pub fn already_installed(project_dir: &Path, command: &str) -> Option<String> {
    let install = parse(command)?;
    let link = project_dir.join("node_modules");
    // A private copy (the project installed something before): npm decides.
    if !std::fs::symlink_metadata(&link)
        .ok()?
        .file_type()
        .is_symlink()
    {
        return None;
    }
    let node_modules = std::fs::canonicalize(&link).ok()?;
    let cache_package = std::fs::read(node_modules.parent()?.join("package.json")).ok()?;
    match install {
        Install::Everything => {
            let project_package = std::fs::read(project_dir.join("package.json")).ok()?;
            (!crate::starter::dependencies_differ(&project_package, &cache_package)).then(|| {
                "Every package in package.json is already installed (shared with the template); \
                 nothing was downloaded.\n"
                    .to_string()
            })
        }
        Install::Packages(wanted) => {
            let direct: Value = serde_json::from_slice(&cache_package).ok()?;
            let mut found = Vec::new();
            for w in &wanted {
                let meta: Value = serde_json::from_slice(
                    &std::fs::read(node_modules.join(&w.name).join("package.json")).ok()?,
                )
                .ok()?;
                let version = meta.get("version")?.as_str()?.to_string();
                let is_direct = ["dependencies", "devDependencies"]
                    .iter()
                    .any(|k| direct.get(k).and_then(|d| d.get(&w.name)).is_some());
                let range = match (&w.range, is_direct) {
                    (Some(r), _) => Some(r.as_str()),
                    (None, true) => None,
                    // "the latest" of a package the starter only has indirectly: npm decides.
                    (None, false) => return None,
                };
                if !satisfies(&version, range) {
                    return None;
                }
                found.push(if is_direct {
                    format!("{}@{version}", w.name)
                } else {
                    format!(
                        "{}@{version} (a dependency of the template's packages)",
                        w.name
                    )
                });
            }
            Some(format!(
                "Already installed, nothing was downloaded: {}. These are the versions tested \
                 with this template; import them directly.\n",
                found.join(", ")
            ))
        }
    }
}

/// Parses a plain `npm|pnpm|yarn|bun install|add …` command; `None` for
/// anything else (other sub-commands, shell syntax, unknown flags, git or
/// file specs, global installs).
fn parse(command: &str) -> Option<Install> {
    if command.chars().any(|c| {
        matches!(
            c,
            ';' | '|' | '&' | '<' | '>' | '$' | '`' | '\'' | '"' | '(' | ')' | '\\' | '\n'
        )
    }) {
        return None;
    }
    let mut words = command.split_whitespace();
    let manager = words.next()?;
    let sub = words.next();
    let bare_ok = match (manager, sub) {
        (
            "npm",
            Some(
                "install" | "i" | "in" | "ins" | "inst" | "insta" | "instal" | "isnt" | "isnta"
                | "isntal" | "isntall" | "add",
            ),
        ) => true,
        ("npm", Some("ci")) => true,
        ("pnpm" | "bun", Some("add" | "install" | "i")) => true,
        ("yarn", Some("add")) => false,
        ("yarn", Some("install")) | ("yarn", None) => true,
        _ => return None,
    };
    let mut wanted = Vec::new();
    for w in words {
        if w.starts_with('-') {
            if !HARMLESS_FLAGS.contains(&w) {
                return None;
            }
            continue;
        }
        wanted.push(spec(w)?);
    }
    if wanted.is_empty() {
        return bare_ok.then_some(Install::Everything);
    }
    if sub == Some("ci") {
        return None;
    }
    Some(Install::Packages(wanted))
}

/// `name`, `name@range`, `@scope/name`, `@scope/name@range`; `None` for
/// anything that is not a registry package (paths, URLs, git, aliases).
fn spec(word: &str) -> Option<Wanted> {
    let (scope, rest) = match word.strip_prefix('@') {
        Some(r) => {
            let (scope, rest) = r.split_once('/')?;
            (Some(scope), rest)
        }
        None => (None, word),
    };
    let (name, range) = match rest.split_once('@') {
        Some((n, r)) => (n, Some(r.to_string())),
        None => (rest, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '~')
            })
    };
    if !valid(name) || scope.is_some_and(|s| !valid(s)) {
        return None;
    }
    if range
        .as_deref()
        .is_some_and(|r| r.contains(':') || r.contains('/'))
    {
        return None;
    }
    Some(Wanted {
        name: match scope {
            Some(s) => format!("@{s}/{name}"),
            None => name.to_string(),
        },
        range,
    })
}

/// Whether `version` meets an npm range: none, `latest` and `*` take what is
/// installed (the template pins tested versions), a bare version must be
/// equal, and `^`, `~`, comparisons, `x` wildcards and `||` are checked.
/// Anything unparsable (other dist-tags) is not satisfied.
fn satisfies(version: &str, range: Option<&str>) -> bool {
    let Ok(v) = semver::Version::parse(version) else {
        return false;
    };
    let range = match range.map(str::trim) {
        None | Some("" | "latest" | "*" | "x") => return true,
        Some(r) => r,
    };
    range.split("||").any(|part| {
        let part = part.trim().trim_start_matches('v');
        if let Ok(exact) = semver::Version::parse(part.trim_start_matches('=')) {
            return exact == v;
        }
        let part = part.replace(".x", ".*").replace(".X", ".*");
        semver::VersionReq::parse(&part).is_ok_and(|req| req.matches(&v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(cmd: &str) -> Option<Vec<(String, Option<String>)>> {
        match parse(cmd)? {
            Install::Packages(w) => Some(w.into_iter().map(|w| (w.name, w.range)).collect()),
            Install::Everything => Some(Vec::new()),
        }
    }

    #[test]
    fn plain_installs_are_parsed_and_everything_else_is_not() {
        assert_eq!(
            packages("npm install recharts lucide-react@^1.2 -D"),
            Some(vec![
                ("recharts".into(), None),
                ("lucide-react".into(), Some("^1.2".into()))
            ])
        );
        assert_eq!(
            packages("pnpm add @radix-ui/react-dialog@1.3.1"),
            Some(vec![(
                "@radix-ui/react-dialog".into(),
                Some("1.3.1".into())
            )])
        );
        assert_eq!(packages("npm i"), Some(vec![]));
        assert_eq!(packages("yarn add zod"), Some(vec![("zod".into(), None)]));
        for other in [
            "npm run build",
            "npm install recharts && rm -rf src",
            "npm install -g typescript",
            "npm install ./local-pkg",
            "npm install github:user/repo",
            "npm install user/repo",
            "npm install lodash@npm:lodash-es",
            "npm install 'zod'",
            "npm ci zod",
            "yarn add",
            "npx shadcn add button",
            "npm install Recharts",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn ranges_follow_npm() {
        for (range, ok) in [
            (None, true),
            (Some("latest"), true),
            (Some("3.11.1"), true),
            (Some("3.11.0"), false),
            (Some("^3.0.0"), true),
            (Some("^3"), true),
            (Some("3"), true),
            (Some("3.x"), true),
            (Some("~3.10.0"), false),
            (Some(">=3.1"), true),
            (Some("^2.0.0"), false),
            (Some("^2 || ^3"), true),
            (Some("next"), false),
        ] {
            assert_eq!(satisfies("3.11.1", range), ok, "{range:?}");
        }
    }

    #[test]
    fn answers_only_from_a_shared_link_with_every_package_present() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let nm = cache.join("node_modules");
        for (name, version) in [("recharts", "3.11.1"), ("react-is", "19.3.1")] {
            std::fs::create_dir_all(nm.join(name)).unwrap();
            std::fs::write(
                nm.join(name).join("package.json"),
                format!(r#"{{"name":"{name}","version":"{version}"}}"#),
            )
            .unwrap();
        }
        let package = r#"{"dependencies":{"recharts":"3.11.1"}}"#;
        std::fs::write(cache.join("package.json"), package).unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("package.json"), package).unwrap();
        std::os::unix::fs::symlink(&nm, project.join("node_modules")).unwrap();

        let answer = already_installed(&project, "npm install recharts react-is@^19").unwrap();
        assert!(answer.contains("recharts@3.11.1,"), "{answer}");
        assert!(answer.contains("react-is@19.3.1 (a dependency"), "{answer}");
        // Only another package's dependency, and no version asked for: npm decides.
        assert_eq!(already_installed(&project, "npm install react-is"), None);
        assert!(already_installed(&project, "npm install").is_some());
        assert_eq!(
            already_installed(&project, "npm install recharts zod"),
            None
        );
        assert_eq!(already_installed(&project, "npm install recharts@2"), None);

        // The project asks for more than the template has: npm must run.
        std::fs::write(
            project.join("package.json"),
            r#"{"dependencies":{"recharts":"3.11.1","zod":"^4"}}"#,
        )
        .unwrap();
        assert_eq!(already_installed(&project, "npm install"), None);

        // A private node_modules (an earlier real install): npm decides.
        std::fs::remove_file(project.join("node_modules")).unwrap();
        std::fs::create_dir_all(project.join("node_modules/recharts")).unwrap();
        assert_eq!(already_installed(&project, "npm install recharts"), None);
    }
}
