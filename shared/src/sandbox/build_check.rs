//! The Verify step's checks: TypeScript, the app's modules and the dev
//! server's recent errors, turned into structured [`Diagnostic`]s.
//!
//! [`check_build`] asks the sandbox ([`Sandbox::check_build`]): the local
//! driver and sandboxd (the same [`crate::sandbox::local::workspace`] code, in
//! a pod) run `tsc --incremental` (its build info kept in `.apna-build/`, out
//! of snapshots) and load every module of the page through the running dev
//! server ([`check_with_dev_server`]), which has already transformed nearly
//! all of them: what Vite cannot transform (a missing import, a syntax error,
//! a bad Tailwind directive) comes back as Vite's error page. That finds the
//! same problems as a full `vite build` on every fixture of
//! `shared/tests/sandbox_build_check.rs` for a fraction of its CPU (BENCHMARKS.md,
//! #16). Without a running dev server, or after a change of its config, the
//! check falls back to [`check_build_with_vite_build`], the way it was done
//! before: `tsc` and a production build, through [`Sandbox::exec`] only. The
//! type checker is
//! TypeScript 7 (the native compiler, `typescript@7`): on the template it takes
//! 0.13 s against 0.85 s for `typescript@5.9` (`@typescript/native-preview`,
//! the same compiler, also 0.13 s); both print identical diagnostics.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;
use crate::sandbox::local::module_walk::FailedModule;
use crate::sandbox::{ExecRequest, Sandbox};

/// At most this many diagnostics are returned.
pub const MAX_DIAGNOSTICS: usize = 50;

/// Build output goes here (inside the project, git-ignored, not watched by Vite).
pub const BUILD_OUT_DIR: &str = ".apna-build";

// The check builds into `.apna-build/check`, not the whole folder, because
// `--emptyOutDir` would otherwise wipe a publish staged beside it.

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticSource {
    /// `tsc --noEmit`.
    Typescript,
    /// `vite build`.
    Build,
    /// The running dev server's log.
    DevServer,
    /// The page in a headless browser (the Smoke task, after Verify).
    Browser,
}

/// One problem, located in the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Diagnostic {
    /// Path relative to the project root (`src/App.tsx`); empty when unknown.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// Which check reported it.
    pub source: DiagnosticSource,
}

/// The outcome of [`check_build`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildReport {
    /// No diagnostics and every command succeeded.
    pub ok: bool,
    /// Problems found, at most [`MAX_DIAGNOSTICS`].
    pub diagnostics: Vec<Diagnostic>,
    /// Whether more diagnostics were found than returned.
    pub truncated: bool,
}

const TSC: &str = "node_modules/.bin/tsc --noEmit -p tsconfig.json --pretty false";
/// The type check with its build info kept between checks (in the build
/// output folder: git-ignored, not snapshotted, not watched by Vite; a new
/// project starts from the starter's, see
/// [`crate::sandbox::local::template`]). TypeScript 7's native compiler is
/// run directly, on one thread: its `node_modules/.bin/tsc` is a Node script
/// that starts it (0.08 s of CPU per check on Node < 22.15, which cannot
/// `execve`), and its worker threads add CPU a Verify among twenty does not
/// get back in time. A project that installed another TypeScript gets its
/// `tsc` as it is.
pub(crate) const TSC_INCREMENTAL: &str = "set -- node_modules/@typescript/typescript-*/lib/tsc; \
if [ -x \"$1\" ]; then set -- \"$1\" --singleThreaded; else set -- node_modules/.bin/tsc; fi; \
\"$@\" --noEmit -p tsconfig.json --pretty false --incremental --tsBuildInfoFile .apna-build/tsc.tsbuildinfo";

/// Where [`TSC_INCREMENTAL`] keeps its build info, from the project root.
pub(crate) const TSC_BUILD_INFO: &str = ".apna-build/tsc.tsbuildinfo";
/// Most modules [`check_with_dev_server`] loads.
const MAX_MODULES: usize = 2000;
const VITE_BUILD: &str =
    "node node_modules/vite/bin/vite.js build --configLoader runner --outDir .apna-build/check --emptyOutDir --logLevel warn";

fn req(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.to_string(),
        timeout: Duration::from_secs(180),
        max_output: 256 * 1024,
    }
}

/// Verify's check of `sandbox`, run where its files are (see the module doc).
pub async fn check_build(sandbox: &dyn Sandbox) -> Result<BuildReport> {
    sandbox.check_build().await
}

/// Type-checks and builds the project (`tsc` and `vite build`, through
/// [`Sandbox::exec`]), and reads fresh dev-server errors: Verify before #16,
/// and its fallback.
pub async fn check_build_with_vite_build<S: Sandbox + ?Sized>(sandbox: &S) -> Result<BuildReport> {
    let pwd = sandbox.exec(&req("pwd")).await?;
    let root = pwd.output.trim().to_string();
    let (tsc_req, build_req) = (req(TSC), req(VITE_BUILD));
    let (tsc, build) = tokio::join!(sandbox.exec(&tsc_req), sandbox.exec(&build_req));
    let (tsc, build) = (tsc?, build?);
    // Read the log after the checks: Vite writes an error's headline and its
    // code frame in separate chunks, and by now both have landed.
    let log = sandbox.logs(400).await;
    let mut diags = parse_tsc(&tsc.output, &root);
    if tsc.exit_code != Some(0) && diags.is_empty() {
        diags.push(fallback(
            &tsc.output,
            DiagnosticSource::Typescript,
            tsc.timed_out,
        ));
    }
    let build_diags = parse_vite_build(&build.output, &root);
    let build_failed = build.exit_code != Some(0);
    if build_failed && build_diags.is_empty() {
        diags.push(fallback(
            &build.output,
            DiagnosticSource::Build,
            build.timed_out,
        ));
    }
    diags.extend(build_diags);
    diags.extend(parse_dev_log(&log.unwrap_or_default(), &root));
    Ok(report(diags, !build_failed && tsc.exit_code == Some(0)))
}

fn report(mut diags: Vec<Diagnostic>, commands_ok: bool) -> BuildReport {
    dedupe(&mut diags);
    let truncated = diags.len() > MAX_DIAGNOSTICS;
    diags.truncate(MAX_DIAGNOSTICS);
    BuildReport {
        ok: diags.is_empty() && commands_ok,
        diagnostics: diags,
        truncated,
    }
}

/// Type-checks the project incrementally while loading every module of its
/// page from the dev server at `addr` (`host:port`, reachable from this
/// process), then reads fresh dev-server errors.
pub async fn check_with_dev_server<S: Sandbox + ?Sized>(
    sandbox: &S,
    addr: &str,
) -> Result<BuildReport> {
    let pwd = sandbox.exec(&req("pwd")).await?;
    let root = pwd.output.trim().to_string();
    let tsc_req = req(TSC_INCREMENTAL);
    let (tsc, walk) = tokio::join!(
        sandbox.exec(&tsc_req),
        crate::sandbox::local::module_walk::walk(addr, MAX_MODULES)
    );
    let tsc = tsc?;
    let log = sandbox.logs(400).await;
    let mut diags = parse_tsc(&tsc.output, &root);
    if tsc.exit_code != Some(0) && diags.is_empty() {
        diags.push(fallback(
            &tsc.output,
            DiagnosticSource::Typescript,
            tsc.timed_out,
        ));
    }
    diags.extend(walk.failed.iter().map(|f| parse_failed_module(f, &root)));
    let log = log.unwrap_or_default();
    diags.extend(
        parse_dev_log(&log, &root)
            .into_iter()
            .filter(|d| !fixed_since_logged(d, &walk.served)),
    );
    diags.extend(standing_stylesheet_errors(&log, &root));
    Ok(report(
        diags,
        tsc.exit_code == Some(0) && walk.page_loaded && walk.failed.is_empty(),
    ))
}

/// Whether a logged dev-server error is about a script module this check's
/// walk has just been served: its transform succeeds now. The log alone
/// cannot tell, because Vite's watcher may not yet have logged the update of
/// a file fixed moments ago (seen under load). Stylesheets are excluded:
/// Tailwind answers a broken one with its last good CSS.
fn fixed_since_logged(diag: &Diagnostic, served: &[String]) -> bool {
    !diag.file.is_empty()
        && !diag.file.ends_with(".css")
        && served.iter().any(|p| module_file(p) == diag.file)
}

/// Stylesheet errors not followed by an update of that stylesheet. Tailwind's
/// plugin reports a broken stylesheet once and then serves its last good
/// CSS until the file changes again, so an error logged before another
/// file's update (which ends [`parse_dev_log`]'s window) still stands.
pub fn standing_stylesheet_errors(log: &str, root: &str) -> Vec<Diagnostic> {
    let text = crate::sandbox::local::supervisor::strip_ansi(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("ready in") || l.contains("server restarted"))
        .map_or(0, |i| i + 1);
    let mut standing: Vec<Diagnostic> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start) {
        if line.contains("hmr update") || line.contains("page reload") {
            standing.retain(|d| !line.contains(d.file.as_str()));
            continue;
        }
        if line.contains("Internal server error: ") || line.contains("Pre-transform error: ") {
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.contains("[vite]"))
                .map_or(lines.len(), |n| i + 1 + n);
            standing.extend(
                parse_dev_log(&lines[i..end].join("\n"), root)
                    .into_iter()
                    .filter(|d| d.file.ends_with(".css")),
            );
        }
    }
    standing
}

/// Whether the dev server's log says its config could not be (re)loaded
/// since it last started: it then serves with an older config than a build
/// would use, so only a build can tell.
pub fn dev_config_failed(log: &str) -> bool {
    let text = crate::sandbox::local::supervisor::strip_ansi(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("ready in") || l.contains("server restarted"))
        .map_or(0, |i| i + 1);
    lines[start..]
        .iter()
        .any(|l| l.contains("failed to load config") || l.contains("server restart failed"))
}

/// A module path as a project file: `/src/App.tsx?t=1` → `src/App.tsx`.
fn module_file(path: &str) -> String {
    let p = path.split('?').next().unwrap_or(path);
    p.trim_start_matches('/').to_string()
}

/// One module the dev server would not serve, as a diagnostic: Vite's error
/// page carries the error as JSON (`const error = {message, id, loc, …}`).
pub fn parse_failed_module(failed: &FailedModule, root: &str) -> Diagnostic {
    let mut d = Diagnostic {
        file: module_file(&failed.path),
        line: 0,
        column: 0,
        message: String::new(),
        source: DiagnosticSource::DevServer,
    };
    let error = failed.body.find("const error = ").and_then(|i| {
        serde_json::Deserializer::from_str(&failed.body[i + "const error = ".len()..])
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(|v| v.ok())
    });
    let Some(error) = error else {
        d.message = match (failed.status, &failed.importer) {
            (0, _) => format!(
                "the dev server did not answer for {}: {}",
                failed.path,
                failed.body.trim()
            ),
            (status, Some(importer)) => {
                d.file = module_file(importer);
                format!(
                    "{} (imported here) could not be loaded: HTTP {status}",
                    failed.path
                )
            }
            (status, None) => format!("{} could not be loaded: HTTP {status}", failed.path),
        };
        return d;
    };
    let message = error["message"].as_str().unwrap_or("").trim();
    if let Some(id) = error["id"].as_str() {
        d.file = relative(id.split('?').next().unwrap_or(id), root);
    }
    if let Some(loc) = error.get("loc").filter(|l| l.is_object()) {
        if let Some(file) = loc["file"].as_str() {
            d.file = relative(file, root);
        }
        d.line = loc["line"].as_u64().map_or(0, |n| n as u32);
        // Vite's `loc.column` counts from 0.
        d.column = loc["column"].as_u64().map_or(0, |n| n as u32 + 1);
    }
    // A transform error holds a rolldown/oxc headline and code frame.
    let mut headline = None;
    for line in message.lines() {
        if let Some(msg) = bracket_headline(line) {
            headline.get_or_insert_with(|| msg.to_string());
        } else if let Some(loc) = frame_location(line) {
            let (file, l, c) = split_location(loc);
            if d.line == 0 {
                d.file = relative(file, root);
                d.line = l;
                d.column = c;
            }
        }
    }
    d.message = headline.unwrap_or_else(|| message.lines().next().unwrap_or("").trim().to_string());
    if d.message.is_empty() {
        d.message = format!(
            "{} could not be loaded: HTTP {}",
            failed.path, failed.status
        );
    }
    d
}

fn fallback(output: &str, source: DiagnosticSource, timed_out: bool) -> Diagnostic {
    let text = crate::sandbox::local::supervisor::strip_ansi(output);
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = tail.len().saturating_sub(8);
    let message = if timed_out {
        "the check timed out".to_string()
    } else if tail.is_empty() {
        "the check failed without output".to_string()
    } else {
        tail[start..].join("\n")
    };
    Diagnostic {
        file: String::new(),
        line: 0,
        column: 0,
        message,
        source,
    }
}

fn dedupe(diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert((d.file.clone(), d.line, d.message.clone())));
}

/// A path as the model should see it: relative to the project root.
fn relative(path: &str, root: &str) -> String {
    let p = path.trim();
    let p = if !root.is_empty() {
        p.strip_prefix(root)
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(p)
    } else {
        p
    };
    p.trim_start_matches("./").to_string()
}

/// `path:line:col` (line and column optional) → parts.
fn split_location(loc: &str) -> (&str, u32, u32) {
    let mut parts = loc.rsplitn(3, ':');
    let a = parts.next().unwrap_or("");
    let b = parts.next();
    let c = parts.next();
    match (
        c,
        b.and_then(|b| b.parse::<u32>().ok()),
        a.parse::<u32>().ok(),
    ) {
        (Some(file), Some(line), Some(col)) => (file, line, col),
        _ => match (b, a.parse::<u32>().ok()) {
            (Some(_), Some(line)) => (loc.rsplit_once(':').map_or(loc, |(f, _)| f), line, 0),
            _ => (loc, 0, 0),
        },
    }
}

/// Parses `tsc --pretty false` output: `file(line,col): error TSnnnn: message`.
pub fn parse_tsc(output: &str, root: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for line in output.lines() {
        if let Some((loc, rest)) = line.split_once("): error ") {
            if let Some((file, pos)) = loc.rsplit_once('(') {
                let mut nums = pos.split(',').map(|n| n.trim().parse::<u32>().unwrap_or(0));
                let l = nums.next().unwrap_or(0);
                let c = nums.next().unwrap_or(0);
                out.push(Diagnostic {
                    file: relative(file, root),
                    line: l,
                    column: c,
                    message: rest.trim().to_string(),
                    source: DiagnosticSource::Typescript,
                });
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("error TS") {
            out.push(Diagnostic {
                file: String::new(),
                line: 0,
                column: 0,
                message: format!("TS{rest}"),
                source: DiagnosticSource::Typescript,
            });
        } else if line.starts_with("  ") && !line.trim().is_empty() {
            // Continuation of the previous message (elaboration lines).
            if let Some(last) = out.last_mut() {
                if last.message.len() < 2000 {
                    last.message.push('\n');
                    last.message.push_str(line.trim());
                }
            }
        }
    }
    out
}

/// The `[ file:line:col ]` of a rolldown/oxc code frame header (`╭─[ … ]`).
fn frame_location(line: &str) -> Option<&str> {
    let i = line.find("─[")?;
    let rest = &line[i + "─[".len()..];
    let end = rest.rfind(']')?;
    Some(rest[..end].trim())
}

/// `[CODE] message` at the start of a line (rolldown's error headline).
fn bracket_headline(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let rest = t.strip_prefix('[')?;
    let (code, msg) = rest.split_once("] ")?;
    // PLUGIN_TIMINGS is rolldown's advice that plugins made a (slow, loaded
    // machine) build slow: nothing in the app to fix.
    if code.is_empty() || code.contains(' ') || code == "PLUGIN_TIMINGS" {
        return None;
    }
    Some(msg.trim())
}

/// Parses `vite build` output (rolldown code frames and `file:` lines).
pub fn parse_vite_build(output: &str, root: &str) -> Vec<Diagnostic> {
    let text = crate::sandbox::local::supervisor::strip_ansi(output);
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    // `[plugin NAME] /path/file` then `Error: message` (a plugin's error,
    // e.g. Tailwind's in a stylesheet).
    let mut plugin_file: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("[plugin ") {
            plugin_file = rest
                .split_once("] ")
                .map(|(_, f)| relative(f, root))
                .filter(|f| !f.is_empty());
            continue;
        }
        if let Some(file) = plugin_file.take() {
            if let Some(msg) = line.trim_start().strip_prefix("Error: ") {
                out.push(Diagnostic {
                    file,
                    line: 0,
                    column: 0,
                    message: msg.trim().to_string(),
                    source: DiagnosticSource::Build,
                });
                continue;
            }
        }
        if let Some(rest) = line
            .split_once("Rolldown failed to resolve import ")
            .map(|(_, r)| r)
        {
            // `"pkg" from "/root/src/App.tsx".`
            let mut quoted = rest.split('"').skip(1).step_by(2);
            if let (Some(what), Some(from)) = (quoted.next(), quoted.next()) {
                let file = relative(from, root);
                out.push(Diagnostic {
                    message: format!("Could not resolve import \"{what}\" from \"{file}\""),
                    file,
                    line: 0,
                    column: 0,
                    source: DiagnosticSource::Build,
                });
                continue;
            }
        }
        if let Some(msg) = bracket_headline(line) {
            pending = Some(msg.to_string());
        } else if let Some(loc) = frame_location(line) {
            let (file, l, c) = split_location(loc);
            out.push(Diagnostic {
                file: relative(file, root),
                line: l,
                column: c,
                message: pending.take().unwrap_or_else(|| "build error".into()),
                source: DiagnosticSource::Build,
            });
        } else if let Some(loc) = line.trim_start().strip_prefix("file: ") {
            let (file, l, c) = split_location(loc);
            if let Some(msg) = pending.take() {
                out.push(Diagnostic {
                    file: relative(file, root),
                    line: l,
                    column: c,
                    message: msg,
                    source: DiagnosticSource::Build,
                });
            }
        }
    }
    if let Some(msg) = pending {
        out.push(Diagnostic {
            file: String::new(),
            line: 0,
            column: 0,
            message: msg,
            source: DiagnosticSource::Build,
        });
    }
    out
}

/// Parses dev-server errors logged after the last successful update (an HMR
/// update, a page reload or the server start): older errors are already fixed.
pub fn parse_dev_log(log: &str, root: &str) -> Vec<Diagnostic> {
    let text = crate::sandbox::local::supervisor::strip_ansi(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| {
            l.contains("hmr update") || l.contains("page reload") || l.contains("ready in")
        })
        .map_or(0, |i| i + 1);
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut current: Option<Diagnostic> = None;
    let flush = |cur: &mut Option<Diagnostic>, out: &mut Vec<Diagnostic>| {
        if let Some(d) = cur.take() {
            out.push(d);
        }
    };
    for line in &lines[start..] {
        // A pre-transform error is Vite transforming an import ahead of its
        // request; some plugins (Tailwind's) then answer the request itself
        // from their last good result, so this line is the only report.
        if let Some((_, msg)) = line
            .split_once("Internal server error: ")
            .or_else(|| line.split_once("Pre-transform error: "))
        {
            flush(&mut current, &mut out);
            current = Some(Diagnostic {
                file: String::new(),
                line: 0,
                column: 0,
                message: msg.trim().to_string(),
                source: DiagnosticSource::DevServer,
            });
            continue;
        }
        let Some(cur) = current.as_mut() else {
            continue;
        };
        if let Some(msg) = bracket_headline(line) {
            if cur.message.starts_with("Transform failed") {
                cur.message = msg.to_string();
            }
        } else if let Some(loc) = frame_location(line) {
            let (file, l, c) = split_location(loc);
            cur.file = relative(file, root);
            cur.line = l;
            cur.column = c;
        } else if let Some(loc) = line.trim_start().strip_prefix("File: ") {
            let (file, l, c) = split_location(loc);
            if cur.file.is_empty() || cur.line == 0 {
                cur.file = relative(file, root);
                if l > 0 {
                    cur.line = l;
                    cur.column = c;
                }
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`TSC_INCREMENTAL`] in `dir`, whose fake compilers print their arguments.
    fn tsc_args(dir: &std::path::Path) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(TSC_INCREMENTAL)
            .current_dir(dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn the_native_compiler_runs_directly_and_another_typescript_as_installed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = |rel: &str, name: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("#!/bin/sh\necho {name} \"$@\"\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // A project whose TypeScript is not the native one (its own `npm
        // install typescript@5`): its `tsc`, without the native-only flag.
        fake("node_modules/.bin/tsc", "node-tsc");
        let args = tsc_args(dir.path());
        assert!(args.starts_with("node-tsc --noEmit"), "{args}");
        assert!(!args.contains("--singleThreaded"), "{args}");
        assert!(args.ends_with("--tsBuildInfoFile .apna-build/tsc.tsbuildinfo"));
        // The starters' TypeScript 7: its platform binary, on one thread.
        fake(
            "node_modules/@typescript/typescript-linux-x64/lib/tsc",
            "native",
        );
        let args = tsc_args(dir.path());
        assert!(
            args.starts_with("native --singleThreaded --noEmit"),
            "{args}"
        );
        assert!(args.ends_with("--tsBuildInfoFile .apna-build/tsc.tsbuildinfo"));
    }

    #[test]
    fn build_speed_advice_is_not_a_problem() {
        let out = "[PLUGIN_TIMINGS] JavaScript callbacks ran for 6.6s of this 6.9s build (95%).\n";
        assert!(parse_vite_build(out, "/p").is_empty());
    }

    #[test]
    fn parses_tsc() {
        let out =
            "src/App.tsx(2,9): error TS2322: Type 'string' is not assignable to type 'number'.\n\
                   src/main.tsx(14,17): error TS2307: Cannot find module './Missing'.\n";
        let d = parse_tsc(out, "/p");
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].file.as_str(), d[0].line, d[0].column),
            ("src/App.tsx", 2, 9)
        );
        assert!(d[1].message.starts_with("TS2307"));
    }

    #[test]
    fn parses_rolldown_frames() {
        let out = "error during build:\nBuild failed with 1 error:\n\n\u{1b}[31m[UNRESOLVED_IMPORT] \u{1b}[0mCould not resolve './Missing' in src/main.tsx\n   \u{1b}[38;5;246m╭\u{1b}[0m─[ src/main.tsx:9:17 ]\n";
        let d = parse_vite_build(out, "/p");
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].file.as_str(), d[0].line, d[0].column),
            ("src/main.tsx", 9, 17)
        );
        assert!(d[0].message.contains("Could not resolve"));
    }

    #[test]
    fn dev_log_keeps_only_fresh_errors() {
        let log = "\
4:41:02 PM [vite] Internal server error: old\n  File: /p/src/Old.tsx:1:1\n\
4:41:03 PM [vite] (client) hmr update /src/App.tsx\n\
4:41:04 PM [vite] Internal server error: Failed to resolve import \"./Nope\" from \"src/main.tsx\". Does the file exist?\n\
  Plugin: vite:import-analysis\n  File: /p/src/main.tsx:1:14\n\
4:41:05 PM [vite] Internal server error: Transform failed with 1 error:\n\n[PARSE_ERROR] Unterminated regular expression\n   ╭─[ src/App.tsx:2:18 ]\n  File: /p/src/App.tsx\n\
4:41:06 PM [vite] (client) Pre-transform error: Cannot apply unknown utility class `nope`\n  Plugin: @tailwindcss/vite:generate:serve\n  File: /p/src/index.css\n";
        let d = parse_dev_log(log, "/p");
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            (d[2].file.as_str(), d[2].message.as_str()),
            ("src/index.css", "Cannot apply unknown utility class `nope`")
        );
        assert_eq!(
            (d[0].file.as_str(), d[0].line, d[0].column),
            ("src/main.tsx", 1, 14)
        );
        assert_eq!((d[1].file.as_str(), d[1].line), ("src/App.tsx", 2));
        assert_eq!(d[1].message, "Unterminated regular expression");
    }

    #[test]
    fn parses_plugin_errors_and_unresolved_packages() {
        let out = "error during build:\nBuild failed with 1 error:\n\n[plugin @tailwindcss/vite:generate:build] /p/src/index.css\nError: Cannot apply unknown utility class `nope`\n    at onInvalidCandidate (file:///x/lib.mjs:21:1867)\n";
        let d = parse_vite_build(out, "/p");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].file, "src/index.css");
        assert_eq!(d[0].message, "Cannot apply unknown utility class `nope`");
        let out = "Error: [vite]: Rolldown failed to resolve import \"canvas-confetti\" from \"/p/src/App.tsx\".\nThis is most likely unintended\n";
        let d = parse_vite_build(out, "/p");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].file, "src/App.tsx");
        assert!(d[0].message.contains("canvas-confetti"), "{d:?}");
    }

    #[test]
    fn vite_error_pages_become_located_diagnostics() {
        let page = |json: &str| FailedModule {
            path: "/src/App.tsx?t=1".into(),
            importer: Some("/src/main.tsx".into()),
            status: 500,
            body: format!(
                "<html><script type=\"module\">\n const error = {json}\n try {{ }}</script>"
            ),
        };
        let d = parse_failed_module(
            &page(
                r#"{"message":"Failed to resolve import \"./missing.css\" from \"src/App.tsx\". Does the file exist?","id":"/p/src/App.tsx","loc":{"file":"/p/src/App.tsx","line":1,"column":7}}"#,
            ),
            "/p",
        );
        assert_eq!((d.file.as_str(), d.line, d.column), ("src/App.tsx", 1, 8));
        assert!(d
            .message
            .starts_with("Failed to resolve import \"./missing.css\""));
        let d = parse_failed_module(
            &page(
                r#"{"message":"Transform failed with 1 error:\n\n[PARSE_ERROR] Unterminated regular expression\n   ╭─[ src/App.tsx:2:18 ]\n","id":"/p/src/App.tsx","frame":""}"#,
            ),
            "/p",
        );
        assert_eq!((d.file.as_str(), d.line, d.column), ("src/App.tsx", 2, 18));
        assert_eq!(d.message, "Unterminated regular expression");
        let d = parse_failed_module(
            &page(
                r#"{"message":"Cannot apply unknown utility class `nope`","id":"/p/src/index.css?direct"}"#,
            ),
            "/p",
        );
        assert_eq!((d.file.as_str(), d.line), ("src/index.css", 0));
        let missing = FailedModule {
            path: "/src/Gone.tsx".into(),
            importer: Some("/src/App.tsx?t=2".into()),
            status: 404,
            body: String::new(),
        };
        let d = parse_failed_module(&missing, "/p");
        assert_eq!(d.file, "src/App.tsx");
        assert!(d.message.contains("/src/Gone.tsx"), "{d:?}");
    }

    #[test]
    fn a_logged_error_of_a_module_served_since_is_fixed() {
        let d = |file: &str| Diagnostic {
            file: file.into(),
            line: 1,
            column: 7,
            message: "Failed to resolve import".into(),
            source: DiagnosticSource::DevServer,
        };
        let served = vec!["/src/main.tsx".to_string(), "/src/App.tsx".to_string()];
        assert!(fixed_since_logged(&d("src/App.tsx"), &served));
        assert!(!fixed_since_logged(&d("src/Other.tsx"), &served));
        assert!(!fixed_since_logged(&d(""), &served));
        let css = vec!["/src/index.css".to_string()];
        assert!(!fixed_since_logged(&d("src/index.css"), &css));
    }

    #[test]
    fn a_stylesheet_error_stands_until_that_stylesheet_changes() {
        let broken = "1:00:00 PM [vite] (client) page reload src/index.css\n\
1:00:01 PM [vite] (client) Pre-transform error: Cannot apply unknown utility class `nope`\n  Plugin: @tailwindcss/vite:generate:serve\n  File: /p/src/index.css\n\
1:00:02 PM [vite] (client) hmr update /src/App.tsx\n";
        // The window of fresh errors ended with App.tsx's update...
        assert!(parse_dev_log(broken, "/p").is_empty());
        // ...but the stylesheet has not changed since its error.
        let d = standing_stylesheet_errors(broken, "/p");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].file, "src/index.css");
        let fixed = format!("{broken}1:00:03 PM [vite] (client) hmr update /src/index.css\n");
        assert!(standing_stylesheet_errors(&fixed, "/p").is_empty());
    }

    #[test]
    fn a_config_that_failed_to_load_since_the_start_is_noticed() {
        assert!(!dev_config_failed("VITE v8 ready in 400 ms\n"));
        assert!(dev_config_failed(
            "VITE v8 ready in 400 ms\nvite.config.ts changed, restarting server...\nfailed to load config from /p/vite.config.ts\nserver restart failed\n"
        ));
        assert!(!dev_config_failed(
            "server restart failed\nVITE v8 ready in 300 ms\n"
        ));
    }

    #[test]
    fn locations_split() {
        assert_eq!(split_location("/a/b.tsx:3:4"), ("/a/b.tsx", 3, 4));
        assert_eq!(split_location("/a/b.tsx"), ("/a/b.tsx", 0, 0));
    }
}
