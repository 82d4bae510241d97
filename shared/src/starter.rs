//! Starters: the templates a project can begin from.
//!
//! Each starter is a folder `images/preview/templates/{name}/` holding the
//! app's source files plus three files that are not copied into projects:
//!
//! * `template.json` — title, description, preview image, example prompts
//!   (`prompt_hints`), and optionally `base` (another starter whose files and
//!   dependencies this one builds on, overriding some files) and `notes` (a
//!   sentence for the agent about the starting layout);
//! * `prompt.md` — what is installed and how to import it, for the system
//!   prompt (a starter with a `base` uses its base's);
//! * the preview image named by `template.json`.
//!
//! The metadata is compiled in, so the API lists starters on Lambda too; the
//! local sandbox driver reads the source files from disk
//! (`sandbox::local::template`). Starters with the same `package-lock.json`
//! share one installed `node_modules`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Template names of projects made before starters existed, and the starter
/// each now is (the one template then had React and Tailwind only).
const LEGACY: &[(&str, &str)] = &[("vite-react", "minimal")];

/// Files of a starter folder that describe it and are not part of a project.
pub const METADATA_FILES: &[&str] = &["template.json", "prompt.md"];

/// One starter folder's compiled-in metadata files.
struct Bundled {
    name: &'static str,
    template_json: &'static str,
    /// `prompt.md` and `package.json` of a starter with its own dependencies.
    own: Option<(&'static str, &'static str)>,
    preview: &'static [u8],
}

macro_rules! bundled {
    ($name:literal, own) => {
        Bundled {
            name: $name,
            template_json: include_str!(concat!(
                "../../images/preview/templates/",
                $name,
                "/template.json"
            )),
            own: Some((
                include_str!(concat!(
                    "../../images/preview/templates/",
                    $name,
                    "/prompt.md"
                )),
                include_str!(concat!(
                    "../../images/preview/templates/",
                    $name,
                    "/package.json"
                )),
            )),
            preview: include_bytes!(concat!(
                "../../images/preview/templates/",
                $name,
                "/preview.png"
            )),
        }
    };
    ($name:literal) => {
        Bundled {
            name: $name,
            template_json: include_str!(concat!(
                "../../images/preview/templates/",
                $name,
                "/template.json"
            )),
            own: None,
            preview: include_bytes!(concat!(
                "../../images/preview/templates/",
                $name,
                "/preview.png"
            )),
        }
    };
}

/// Every starter, in the order people see them (the default first).
const BUNDLED: &[Bundled] = &[
    bundled!("app", own),
    bundled!("dashboard"),
    bundled!("landing"),
    bundled!("minimal", own),
];

/// `template.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateJson {
    title: String,
    description: String,
    preview: String,
    #[serde(default)]
    prompt_hints: Vec<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

/// A starter's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Starter {
    /// Folder name and API id (`app`, `dashboard`, …).
    pub name: String,
    /// Short title for a card.
    pub title: String,
    /// One or two sentences: what it is good for.
    pub description: String,
    /// Example prompts a person might start with.
    pub prompt_hints: Vec<String>,
    /// The starter whose files and dependencies this one builds on.
    pub base: Option<String>,
    /// A sentence for the agent about the starting layout.
    pub notes: Option<String>,
    /// File name of the preview image in the starter folder.
    pub preview_file: String,
    /// The preview image (PNG).
    #[serde(skip)]
    pub preview: &'static [u8],
    /// What is installed and how to import it (the base's `prompt.md` when inherited).
    pub stack: String,
    /// Its `package.json` (the base's when inherited).
    #[serde(skip)]
    pub package_json: &'static str,
}

fn parse_all() -> std::result::Result<Vec<Starter>, String> {
    let mut out: Vec<Starter> = Vec::new();
    for b in BUNDLED {
        let t: TemplateJson = serde_json::from_str(b.template_json)
            .map_err(|e| format!("starter {}: template.json: {e}", b.name))?;
        let (stack, package_json) = match (&t.base, b.own) {
            (None, Some(own)) => own,
            (Some(base), None) => BUNDLED
                .iter()
                .find(|x| x.name == base)
                .and_then(|x| x.own)
                .ok_or_else(|| {
                    format!(
                        "starter {}: base {base:?} is not a starter with its own dependencies",
                        b.name
                    )
                })?,
            (None, None) => {
                return Err(format!(
                    "starter {} has neither a base nor its own prompt.md and package.json",
                    b.name
                ))
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "starter {} has a base and its own dependencies; keep one",
                    b.name
                ))
            }
        };
        out.push(Starter {
            name: b.name.to_string(),
            title: t.title,
            description: t.description,
            prompt_hints: t.prompt_hints,
            base: t.base,
            notes: t.notes,
            preview_file: t.preview,
            preview: b.preview,
            stack: stack.trim().to_string(),
            package_json,
        });
    }
    Ok(out)
}

/// Every starter, the default first.
pub fn starters() -> Result<&'static [Starter]> {
    static ALL: OnceLock<std::result::Result<Vec<Starter>, String>> = OnceLock::new();
    ALL.get_or_init(parse_all)
        .as_deref()
        .map_err(|e| Error::Internal(e.clone()))
}

/// The starter called `name`; an unknown name is bad input naming the choices.
pub fn find(name: &str) -> Result<&'static Starter> {
    let all = starters()?;
    all.iter().find(|s| s.name == name).ok_or_else(|| {
        Error::InvalidInput(format!(
            "unknown template {name:?}; available: {}",
            names(all)
        ))
    })
}

/// The starter a stored project's `template` names, old names included
/// (`find` accepts current names only, as a new project must use one).
pub fn for_project(template: &str) -> Result<&'static Starter> {
    let name = LEGACY
        .iter()
        .find(|(old, _)| *old == template)
        .map_or(template, |(_, now)| now);
    find(name)
}

/// `app, dashboard, …` for messages.
fn names(all: &[Starter]) -> String {
    all.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether two `package.json` files ask for different packages. An unreadable
/// project file counts as different, so npm reports what is wrong with it.
pub fn dependencies_differ(project: &[u8], template: &[u8]) -> bool {
    fn deps(data: &[u8]) -> Option<Vec<Value>> {
        let v: Value = serde_json::from_slice(data).ok()?;
        Some(
            [
                "dependencies",
                "devDependencies",
                "optionalDependencies",
                "peerDependencies",
                "overrides",
            ]
            .iter()
            .map(|k| v.get(*k).cloned().unwrap_or(Value::Null))
            .collect(),
        )
    }
    match (deps(project), deps(template)) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DEFAULT_TEMPLATE;

    #[test]
    fn every_folder_is_a_starter_and_every_starter_parses() {
        let all = starters().unwrap();
        assert_eq!(all[0].name, DEFAULT_TEMPLATE);
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/preview/templates");
        let mut folders: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("template.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        names.sort();
        assert_eq!(
            folders, names,
            "a starter folder is missing from BUNDLED (or the reverse)"
        );
        for s in all {
            assert!(
                !s.title.is_empty() && !s.description.is_empty(),
                "{}",
                s.name
            );
            assert!(
                s.preview.starts_with(b"\x89PNG"),
                "{} preview is a PNG",
                s.name
            );
            assert!(
                dir.join(&s.name).join(&s.preview_file).is_file(),
                "{}",
                s.name
            );
            assert!(!s.prompt_hints.is_empty(), "{}", s.name);
            if let Some(base) = &s.base {
                let b = find(base).unwrap();
                assert!(
                    b.base.is_none(),
                    "{}: a base has no base of its own",
                    s.name
                );
                assert!(
                    !dir.join(&s.name).join("package-lock.json").exists(),
                    "{}: a starter with a base uses its base's lock file",
                    s.name
                );
            } else {
                assert!(
                    dir.join(&s.name).join("package-lock.json").is_file(),
                    "{}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn the_sandbox_image_installs_every_lock_file() {
        let dockerfile = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/preview/Dockerfile"),
        )
        .unwrap();
        for s in starters().unwrap().iter().filter(|s| s.base.is_none()) {
            assert!(
                dockerfile.contains(&format!("npm ci --prefix {} ", s.name)),
                "images/preview/Dockerfile must `npm ci --prefix {}`",
                s.name
            );
        }
        assert!(dockerfile.contains("COPY images/preview/templates/ ./"));
    }

    #[test]
    fn compares_dependencies_not_bytes() {
        let t = crate::starter::find("minimal")
            .unwrap()
            .package_json
            .as_bytes();
        assert!(!dependencies_differ(t, t));
        let mut v: Value = serde_json::from_slice(t).unwrap();
        v["name"] = "my-app".into();
        v["scripts"]["lint"] = "eslint .".into();
        assert!(!dependencies_differ(
            &serde_json::to_vec_pretty(&v).unwrap(),
            t
        ));
        v["dependencies"]["zod"] = "^3.23.0".into();
        assert!(dependencies_differ(&serde_json::to_vec(&v).unwrap(), t));
        assert!(dependencies_differ(b"{ not json", t));
    }

    #[test]
    fn unknown_names_list_the_choices() {
        assert_eq!(find("dashboard").unwrap().base.as_deref(), Some("app"));
        let err = find("nope").unwrap_err().to_string();
        assert!(err.contains("app, dashboard, landing, minimal"), "{err}");
        assert!(matches!(find("nope"), Err(Error::InvalidInput(_))));
        assert!(find("vite-react").is_err());
        assert_eq!(for_project("vite-react").unwrap().name, "minimal");
        assert_eq!(for_project("landing").unwrap().name, "landing");
    }
}
