//! The check itself, over CDP (chromiumoxide): launch once, a fresh browser
//! context per check, events collected while the page loads and settles.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::network::{
    EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent, EventResponseReceived,
    ResourceType,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, NavigateParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EvaluateParams, EventConsoleApiCalled, EventExceptionThrown,
    RemoteObject, StackTrace,
};
use chromiumoxide::{Browser as Cdp, BrowserConfig, Page};
use futures::StreamExt;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::source_map::{Frame, Place, SourceMaps};
use super::{BrowserOptions, NextCheck, PageCheck};
use crate::error::{Error, Result};
use crate::sandbox::build_check::{Diagnostic, DiagnosticSource};
use crate::sandbox::smoke::{Finding, ScreenshotImage, SmokeRequest, Viewport};

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(15);
/// One CDP command's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// After `load`, the page counts as settled once no request is in flight and
/// nothing new was logged for this long.
const QUIET: Duration = Duration::from_millis(250);
/// Longest wait for the page to settle after `load`.
const SETTLE_MAX: Duration = Duration::from_secs(3);

/// A running Chromium and the task driving its CDP connection.
pub struct Warm {
    browser: Arc<Cdp>,
    handler: JoinHandle<()>,
    alive: Arc<AtomicBool>,
    pid: Option<u32>,
    spare: SpareSlot,
    _profile: tempfile::TempDir,
}

/// A context and page opened ahead for the next check of the same dev
/// server (see [`Spare`]).
type SpareSlot = Arc<tokio::sync::Mutex<Option<Spare>>>;

/// A fresh context with a blank page for `host`, made after each check for
/// the next one: a project's checks come in series
/// (the fix loop, the visual check), and opening a context, a page and the
/// site's renderer process is a fifth of a check. Never used by a check of
/// another host; it is disposed of then.
struct Spare {
    host: String,
    ready: JoinHandle<Result<(BrowserContextId, Page)>>,
}

impl Warm {
    /// The browser process's id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // chromiumoxide starts the process with kill_on_drop: dropping the
        // last handle ends it.
        self.handler.abort();
    }
}

fn browser_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Sandbox(format!("the browser {what}: {e}"))
}

/// Where `setpriv` (util-linux) may be.
const SETPRIV: &[&str] = &["/usr/bin/setpriv", "/bin/setpriv"];

/// A script in `dir` that runs `exe` with `setpriv --pdeathsig KILL`:
/// Chromium then dies with the thread that started it. chromiumoxide stops
/// it only when the browser is dropped, so a process that ends without that
/// (`apna serve` killed, a test binary ending) left it running, ~100 MB
/// and its renderers each time. `None` without `setpriv`, or where `dir`
/// cannot hold a program (a `/tmp` mounted noexec).
fn dying_with_parent(exe: &Path, dir: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let setpriv = SETPRIV.iter().map(Path::new).find(|p| p.is_file())?;
    if !executable_here(dir) {
        return None;
    }
    let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
    let script = dir.join("launch-chromium");
    let text = format!(
        "#!/bin/sh\nexec {} --pdeathsig KILL -- {} \"$@\"\n",
        quote(setpriv),
        quote(exe)
    );
    std::fs::write(&script, text).ok()?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).ok()?;
    Some(script)
}

/// Whether the file system holding `dir` lets programs run (not `noexec`).
fn executable_here(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statvfs is a valid value for statvfs(3) to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_NOEXEC == 0
}

async fn launch(exe: &Path, opts: &BrowserOptions) -> Result<Warm> {
    let profile = tempfile::Builder::new()
        .prefix("apna-chromium-")
        .tempdir()
        .map_err(|e| browser_error("profile could not be created", e))?;
    // PDEATHSIG follows the thread that forks: this runs on a runtime
    // worker (async), never on a blocking-pool thread that idles out.
    let program = dying_with_parent(exe, profile.path());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cfg = BrowserConfig::builder()
        .chrome_executable(program.as_deref().unwrap_or(exe))
        .user_data_dir(profile.path())
        .launch_timeout(LAUNCH_TIMEOUT)
        .request_timeout(COMMAND_TIMEOUT)
        .viewport(None)
        .window_size(1280, 800)
        .args([
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            // Chromium keeps a renderer process started ahead for the next
            // site; every check opens a new context, which never uses it:
            // one process start (5–8% of a check's CPU) for nothing.
            "--disable-features=SpareRendererForSitePerProcess",
        ]);
    if opts.no_sandbox.unwrap_or(root) {
        cfg = cfg.no_sandbox();
    }
    let cfg = cfg
        .build()
        .map_err(|e| browser_error("could not be configured", e))?;
    let (mut browser, mut handler) = Cdp::launch(cfg)
        .await
        .map_err(|e| browser_error(&format!("({}) did not start", exe.display()), e))?;
    let pid = browser.get_mut_child().and_then(|c| c.inner.id());
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    let handler = tokio::spawn(async move {
        // Errors here are messages chromiumoxide could not read (newer CDP
        // events); the stream ends when the connection does.
        while let Some(ev) = handler.next().await {
            if let Err(e) = ev {
                tracing::trace!(error = %e, "CDP message skipped");
            }
        }
        flag.store(false, Ordering::Relaxed);
    });
    tracing::info!(executable = %exe.display(), pid, "browser started");
    Ok(Warm {
        browser: Arc::new(browser),
        handler,
        alive,
        pid,
        spare: SpareSlot::default(),
        _profile: profile,
    })
}

/// The running browser, started when there is none or it died.
async fn running(
    slot: &tokio::sync::Mutex<Option<Warm>>,
    exe: &Path,
    opts: &BrowserOptions,
) -> Result<(Arc<Cdp>, Arc<AtomicBool>, SpareSlot)> {
    let mut guard = slot.lock().await;
    if let Some(w) = guard.as_ref() {
        if w.alive.load(Ordering::Relaxed) && !w.handler.is_finished() {
            return Ok((w.browser.clone(), w.alive.clone(), w.spare.clone()));
        }
        tracing::warn!("the browser exited; starting it again");
    }
    *guard = None;
    let w = launch(exe, opts).await?;
    let out = (w.browser.clone(), w.alive.clone(), w.spare.clone());
    *guard = Some(w);
    Ok(out)
}

/// Starts the browser unless it runs.
pub async fn warm(
    slot: &tokio::sync::Mutex<Option<Warm>>,
    exe: &Path,
    opts: &BrowserOptions,
) -> Result<()> {
    running(slot, exe, opts).await.map(|_| ())
}

/// Stops the browser.
pub async fn close(slot: &tokio::sync::Mutex<Option<Warm>>) {
    let Some(mut w) = slot.lock().await.take() else {
        return;
    };
    if let Some(spare) = w.spare.lock().await.take() {
        spare.ready.abort();
        let _ = spare.ready.await;
    }
    w.handler.abort();
    if let Some(b) = Arc::get_mut(&mut w.browser) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = b.close().await;
            let _ = b.wait().await;
        })
        .await;
    }
}

/// One check of `url`. A browser that fails mid-check is marked dead so the
/// next check starts a new one.
pub async fn check(
    slot: &tokio::sync::Mutex<Option<Warm>>,
    exe: &Path,
    opts: &BrowserOptions,
    url: &str,
    req: &SmokeRequest,
    next: NextCheck,
) -> Result<PageCheck> {
    let (browser, alive, spare) = running(slot, exe, opts).await?;
    let outcome =
        tokio::time::timeout(req.timeout(), check_page(&browser, &spare, url, req, next)).await;
    match outcome {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            alive.store(false, Ordering::Relaxed);
            Err(e)
        }
        Err(_) => {
            alive.store(false, Ordering::Relaxed);
            Err(Error::Sandbox(format!(
                "the browser check did not finish within {} s",
                req.timeout().as_secs()
            )))
        }
    }
}

/// What the event listeners gathered.
#[derive(Default)]
struct Seen {
    exceptions: Vec<(String, Vec<Frame>)>,
    console_errors: Vec<(String, Vec<Frame>)>,
    /// request id → (url, resource type)
    requests: std::collections::HashMap<String, (String, Option<ResourceType>)>,
    failed: Vec<(String, String)>,
    in_flight: usize,
    last_event: Option<Instant>,
}

fn frames(trace: Option<&StackTrace>) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut t = trace;
    while let Some(st) = t {
        out.extend(st.call_frames.iter().map(|f| Frame {
            url: f.url.clone(),
            line: u32::try_from(f.line_number).unwrap_or(0),
            column: u32::try_from(f.column_number).unwrap_or(0),
            function: f.function_name.clone(),
        }));
        t = st.parent.as_deref();
    }
    out
}

/// Frames of a V8 stack in text (`    at fn (url:line:col)` or
/// `    at url:line:col`), 0-based like CDP's.
fn frames_from_text(stack: &str) -> Vec<Frame> {
    stack
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("at ")?;
            let (function, loc) = match rest.rsplit_once(" (") {
                Some((f, loc)) => (f.trim(), loc.trim_end_matches(')')),
                None => ("", rest),
            };
            let mut parts = loc.rsplitn(3, ':');
            let column = parts.next()?.parse::<u32>().ok()?;
            let line = parts.next()?.parse::<u32>().ok()?;
            let url = parts.next()?.to_string();
            Some(Frame {
                url,
                line: line.saturating_sub(1),
                column: column.saturating_sub(1),
                function: function.to_string(),
            })
        })
        .collect()
}

fn object_text(o: &RemoteObject) -> String {
    match (&o.value, &o.description) {
        (Some(serde_json::Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(d)) => d.clone(),
        (None, None) => o
            .unserializable_value
            .as_ref()
            .map(|u| u.as_ref().to_string())
            .unwrap_or_default(),
    }
}

/// `console.error("%s failed: %d", a, b)`-style text.
fn console_text(args: &[RemoteObject]) -> String {
    let mut parts: Vec<String> = args.iter().map(object_text).collect();
    if parts.is_empty() {
        return String::new();
    }
    let first = parts.remove(0);
    let mut rest = parts.into_iter();
    let mut out = String::new();
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('s' | 'd' | 'i' | 'f' | 'o' | 'O' | 'c') => {
                    let spec = chars.next();
                    if spec != Some('c') {
                        out.push_str(&rest.next().unwrap_or_default());
                    } else {
                        rest.next();
                    }
                    continue;
                }
                Some('%') => {
                    chars.next();
                    out.push('%');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    for r in rest {
        out.push(' ');
        out.push_str(&r);
    }
    out
}

fn touch(seen: &Arc<Mutex<Seen>>, f: impl FnOnce(&mut Seen)) {
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    s.last_event = Some(Instant::now());
    f(&mut s);
}

async fn listen(page: &Page, seen: &Arc<Mutex<Seen>>) -> Result<Vec<JoinHandle<()>>> {
    let err = |e| browser_error("refused an event subscription", e);
    let mut tasks = Vec::new();

    let mut ex = page
        .event_listener::<EventExceptionThrown>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = ex.next().await {
            let d = &ev.exception_details;
            let description = d.exception.as_ref().map(object_text).unwrap_or_default();
            let first = description.lines().next().unwrap_or_default().trim();
            let text = if first.is_empty() {
                d.text.clone()
            } else {
                format!("{} {first}", d.text.trim())
            };
            let mut fr = frames(d.stack_trace.as_ref());
            if fr.is_empty() {
                // A rejection's stack is only in the error's own text.
                fr = frames_from_text(&description);
            }
            if fr.is_empty() {
                if let Some(url) = &d.url {
                    fr.push(Frame {
                        url: url.clone(),
                        line: u32::try_from(d.line_number).unwrap_or(0),
                        column: u32::try_from(d.column_number).unwrap_or(0),
                        function: String::new(),
                    });
                }
            }
            touch(&s, |s| s.exceptions.push((text, fr)));
        }
    }));

    let mut console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = console.next().await {
            if ev.r#type != ConsoleApiCalledType::Error && ev.r#type != ConsoleApiCalledType::Assert
            {
                continue;
            }
            let text = console_text(&ev.args);
            let fr = frames(ev.stack_trace.as_ref());
            touch(&s, |s| s.console_errors.push((text, fr)));
        }
    }));

    let mut sent = page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = sent.next().await {
            let id = ev.request_id.as_ref().to_string();
            let url = ev.request.url.clone();
            let kind = ev.r#type.clone();
            touch(&s, |s| {
                if s.requests.insert(id, (url, kind)).is_none() {
                    s.in_flight += 1;
                }
            });
        }
    }));

    let mut received = page
        .event_listener::<EventResponseReceived>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = received.next().await {
            let status = ev.response.status;
            let url = ev.response.url.clone();
            // Vite answers a path it does not have with the app's index.html
            // (its SPA fallback), so a missing image "loads" as HTML.
            let html_instead = status < 300
                && ev.response.mime_type == "text/html"
                && matches!(
                    ev.r#type,
                    ResourceType::Image
                        | ResourceType::Stylesheet
                        | ResourceType::Script
                        | ResourceType::Font
                        | ResourceType::Media
                );
            if status >= 400 {
                let what = format!("{status} {}", ev.response.status_text)
                    .trim()
                    .to_string();
                touch(&s, |s| s.failed.push((url, what)));
            } else if html_instead {
                let what = "no such file (the dev server answered with the app's HTML page)";
                touch(&s, |s| s.failed.push((url, what.to_string())));
            }
        }
    }));

    let mut finished = page
        .event_listener::<EventLoadingFinished>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while finished.next().await.is_some() {
            touch(&s, |s| s.in_flight = s.in_flight.saturating_sub(1));
        }
    }));

    let mut failed = page
        .event_listener::<EventLoadingFailed>()
        .await
        .map_err(err)?;
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = failed.next().await {
            let id = ev.request_id.as_ref().to_string();
            let canceled = ev.canceled.unwrap_or(false);
            let socket = matches!(
                ev.r#type,
                ResourceType::WebSocket | ResourceType::EventSource
            );
            let text = ev.error_text.clone();
            touch(&s, |s| {
                s.in_flight = s.in_flight.saturating_sub(1);
                if !canceled && !socket {
                    if let Some((url, _)) = s.requests.get(&id) {
                        let url = url.clone();
                        s.failed.push((url, text));
                    }
                }
            });
        }
    }));
    Ok(tasks)
}

async fn cdp<T: chromiumoxide::types::Command>(
    page: &Page,
    cmd: T,
    what: &str,
) -> Result<T::Response> {
    match tokio::time::timeout(COMMAND_TIMEOUT, page.execute(cmd)).await {
        Ok(Ok(r)) => Ok(r.result),
        Ok(Err(e)) => Err(browser_error(what, e)),
        Err(_) => Err(Error::Sandbox(format!(
            "the browser did not answer ({what})"
        ))),
    }
}

async fn emulate(page: &Page, v: &Viewport) -> Result<()> {
    let params = SetDeviceMetricsOverrideParams::builder()
        .width(i64::from(v.width))
        .height(i64::from(v.height))
        .device_scale_factor(1.0)
        .mobile(v.mobile)
        .build()
        .map_err(|e| browser_error("viewport", e))?;
    cdp(page, params, "could not set the viewport").await?;
    Ok(())
}

async fn screenshot(page: &Page, v: &Viewport) -> Result<ScreenshotImage> {
    let shot = cdp(
        page,
        CaptureScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .build(),
        "could not take a screenshot",
    )
    .await?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(AsRef::<str>::as_ref(&shot.data))
        .map_err(|e| browser_error("sent an unreadable screenshot", e))?;
    Ok(ScreenshotImage {
        viewport: v.name.clone(),
        width: v.width,
        height: v.height,
        png,
    })
}

/// Waits for two animation frames, so a resize or a late render is painted.
async fn next_paint(page: &Page) -> Result<()> {
    let wait = EvaluateParams::builder()
        .expression(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        )
        .await_promise(true)
        .return_by_value(true)
        .build()
        .map_err(|e| browser_error("script", e))?;
    cdp(page, wait, "did not paint").await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Overlay {
    message: String,
    file: String,
}

#[derive(Debug, Deserialize)]
struct PageState {
    overlay: Option<Overlay>,
    blank: bool,
    root: String,
    #[serde(default)]
    broken_images: Vec<String>,
}

async fn page_state(page: &Page) -> Result<PageState> {
    let eval = EvaluateParams::builder()
        .expression(include_str!("page_state.js"))
        .return_by_value(true)
        .build()
        .map_err(|e| browser_error("script", e))?;
    let out = cdp(page, eval, "could not read the page").await?;
    let value = out.result.value.unwrap_or(serde_json::Value::Null);
    serde_json::from_value(value).map_err(|e| browser_error("sent an unreadable page state", e))
}

/// Waits until nothing is in flight and nothing happened for [`QUIET`].
async fn settle(seen: &Arc<Mutex<Seen>>) {
    let deadline = Instant::now() + SETTLE_MAX;
    let start = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        let last = s.last_event.unwrap_or(start).max(start);
        if s.in_flight == 0 && last.elapsed() >= QUIET {
            return;
        }
    }
    let in_flight = seen.lock().unwrap_or_else(|p| p.into_inner()).in_flight;
    tracing::debug!(in_flight, "the page did not settle; checking it as it is");
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

async fn check_page(
    browser: &Arc<Cdp>,
    spare: &SpareSlot,
    url: &str,
    req: &SmokeRequest,
    next: NextCheck,
) -> Result<PageCheck> {
    let origin = origin_of(url);
    let host = origin.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let ahead = spare.lock().await.take();
    // The dev server forgets what it built from files its watcher has not
    // reported yet while the browser opens a context and a page (or the
    // one opened ahead finishes opening).
    let (_, opened) = tokio::join!(super::fresh_dev_server(&origin), async {
        match ahead {
            Some(s) if s.host == host => match s.ready.await {
                Ok(Ok(opened)) => return Ok(opened),
                Ok(Err(e)) => tracing::debug!(error = %e, "the page opened ahead failed"),
                Err(e) => tracing::debug!(error = %e, "the page opened ahead failed"),
            },
            Some(other) => discard(browser.clone(), other),
            None => {}
        }
        open_page(browser, &host).await
    });
    let (ctx, page) = opened?;
    let opened_ms = started.elapsed().as_millis() as u64;
    let result = look(&page, url, &origin, req).await;
    // Closing does not hold the answer up, and the next check of this dev
    // server finds a context and a page opened while nothing else runs.
    let closer = browser.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), page.close()).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(2), closer.dispose_browser_context(ctx)).await;
    });
    // (Loading a file of the dev server in it ahead, to have the site's
    // renderer process up, saved another 150 ms but left some of the next
    // page's requests without a "finished" event, so the check waited out
    // its settle limit.)
    if result.is_ok() && next == NextCheck::Likely {
        let ahead = browser.clone();
        let ahead_host = host.clone();
        let next = Spare {
            host,
            ready: tokio::spawn(async move { open_page(&ahead, &ahead_host).await }),
        };
        if let Some(old) = spare.lock().await.replace(next) {
            discard(browser.clone(), old);
        }
    }
    tracing::debug!(
        opened_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "page checked"
    );
    result
}

/// Closes a spare no check will use.
fn discard(browser: Arc<Cdp>, spare: Spare) {
    tokio::spawn(async move {
        if let Ok(Ok((ctx, page))) = spare.ready.await {
            let _ = tokio::time::timeout(Duration::from_secs(2), page.close()).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(2), browser.dispose_browser_context(ctx))
                    .await;
        }
    });
}

/// A fresh browser context whose network reaches only `host` (everything
/// else goes to a proxy that refuses: port 9, discard; loopback included),
/// and a blank page in it.
async fn open_page(browser: &Cdp, host: &str) -> Result<(BrowserContextId, Page)> {
    let ctx_params = CreateBrowserContextParams::builder()
        .dispose_on_detach(true)
        .proxy_server("http://127.0.0.1:9")
        .proxy_bypass_list(format!("<-loopback>;{host}"))
        .build();
    let ctx = tokio::time::timeout(COMMAND_TIMEOUT, browser.create_browser_context(ctx_params))
        .await
        .map_err(|_| Error::Sandbox("the browser did not open a context".into()))?
        .map_err(|e| browser_error("could not open a context", e))?;
    let target = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(ctx.clone())
        .build()
        .map_err(|e| browser_error("target", e))?;
    let page = tokio::time::timeout(COMMAND_TIMEOUT, browser.new_page(target))
        .await
        .map_err(|_| Error::Sandbox("the browser did not open a page".into()))?
        .map_err(|e| browser_error("could not open a page", e))?;
    Ok((ctx, page))
}

async fn look(page: &Page, url: &str, origin: &str, req: &SmokeRequest) -> Result<PageCheck> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks = listen(page, &seen).await?;
    let mut phases = Phases::new();
    let result = async {
        let desktop = req.viewports.first().cloned().unwrap_or_else(Viewport::desktop);
        emulate(page, &desktop).await?;
        let mut findings = Vec::new();
        let load_budget = req.timeout().saturating_sub(Duration::from_secs(5));
        let nav = NavigateParams::builder()
            .url(url)
            .build()
            .map_err(|e| browser_error("navigation", e))?;
        phases.mark("listen");
        match tokio::time::timeout(load_budget, page.execute(nav)).await {
            Ok(Ok(r)) => {
                if let Some(e) = r.result.error_text {
                    return Err(browser_error("could not open the page", e));
                }
                phases.mark("navigate");
                settle(&seen).await;
                phases.mark("settle");
            }
            Ok(Err(e)) => return Err(browser_error("could not open the page", e)),
            Err(_) => findings.push(Finding::Blank {
                message: format!(
                    "The page did not finish loading within {} s (an endless loop, or a request that never ends?)",
                    load_budget.as_secs()
                ),
            }),
        }
        let state = page_state(page).await?;
        phases.mark("page_state");
        let mut screenshots = vec![screenshot(page, &desktop).await?];
        phases.mark("desktop");
        for v in req.viewports.iter().skip(1) {
            emulate(page, v).await?;
            next_paint(page).await?;
            screenshots.push(screenshot(page, v).await?);
            phases.mark("other_viewports");
        }
        findings.extend(findings_of(&seen, state, origin).await);
        phases.mark("findings");
        Ok(PageCheck::Checked {
            findings,
            screenshots,
        })
    }
    .await;
    for t in tasks {
        t.abort();
    }
    tracing::debug!(phases = %phases, "where the check's time went");
    result
}

/// Milliseconds spent in each part of a check, for the debug log.
struct Phases {
    last: Instant,
    spent: Vec<(&'static str, u128)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            last: Instant::now(),
            spent: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.spent.push((name, (now - self.last).as_millis()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.spent.iter().enumerate() {
            write!(f, "{}{name} {ms} ms", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

fn browser_diag(place: Option<Place>, message: String) -> Finding {
    let (file, line, column) = place.map_or((String::new(), 0, 0), |p| (p.file, p.line, p.column));
    Finding::Located(Diagnostic {
        file,
        line,
        column,
        message,
        source: DiagnosticSource::Browser,
    })
}

/// The stack as the model should read it: `at App (src/App.tsx:4:9)` lines.
fn stack_text(places: &[Place]) -> String {
    places
        .iter()
        .map(|p| {
            let f = if p.function.is_empty() {
                "<anonymous>"
            } else {
                &p.function
            };
            format!("\n    at {f} ({}:{}:{})", p.file, p.line, p.column)
        })
        .collect()
}

async fn findings_of(seen: &Arc<Mutex<Seen>>, state: PageState, origin: &str) -> Vec<Finding> {
    let (exceptions, console_errors, failed) = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        (
            s.exceptions.clone(),
            s.console_errors.clone(),
            s.failed.clone(),
        )
    };
    let mut maps = SourceMaps::new(origin);
    let mut out = Vec::new();
    let vite_client = format!("{origin}/@vite/");
    for (text, fr) in exceptions {
        let places = maps.app_frames(&fr, 3).await;
        // The dev server's own client failing (its HMR socket cannot reach a
        // proxy that is not in front of this page) is not the app's fault.
        if places.is_empty() && fr.iter().any(|f| f.url.starts_with(&vite_client)) {
            continue;
        }
        let message = format!("{text}{}", stack_text(&places));
        out.push(browser_diag(places.first().cloned(), message));
    }
    for (text, fr) in console_errors {
        // The Vite client's own complaints (its HMR socket cannot reach a
        // proxy that is not in front of this page) are not the app's.
        if fr.first().is_some_and(|f| f.url.starts_with(&vite_client)) {
            continue;
        }
        let place = maps.first_app_frame(&fr).await;
        let text: String = text.chars().take(1500).collect();
        out.push(browser_diag(place, format!("console.error: {text}")));
    }
    let mut failed = failed;
    for src in &state.broken_images {
        let bare = src.split(['?', '#']).next().unwrap_or(src);
        if !failed
            .iter()
            .any(|(u, _)| u.split(['?', '#']).next() == Some(bare))
        {
            failed.push((src.clone(), "the image did not load".to_string()));
        }
    }
    let mut reported = std::collections::HashSet::new();
    for (url, what) in failed {
        if !url.starts_with(origin) {
            continue;
        }
        let path = url[origin.len()..].to_string();
        let bare = path.split(['?', '#']).next().unwrap_or(&path).to_string();
        if bare == "/favicon.ico" || !reported.insert(bare.clone()) {
            continue;
        }
        out.push(Finding::Request {
            message: format!("The page's request for {bare} failed: {what}"),
            path,
        });
    }
    if let Some(ov) = state.overlay {
        let (file, line, column) = split_file(&ov.file);
        out.push(Finding::Located(Diagnostic {
            file,
            line,
            column,
            message: format!("Vite's error overlay: {}", ov.message.trim()),
            source: DiagnosticSource::Browser,
        }));
    }
    if state.blank && out.is_empty() {
        out.push(Finding::Blank {
            message: format!(
                "The page is blank: nothing is visible inside {} after it loaded (no text, images or styled boxes)",
                state.root
            ),
        });
    }
    out
}

/// `/abs/src/App.tsx:12:5` → parts (line and column 0 when missing).
fn split_file(loc: &str) -> (String, u32, u32) {
    let loc = loc.trim();
    let mut parts = loc.rsplitn(3, ':');
    let a = parts.next().and_then(|s| s.parse::<u32>().ok());
    let b = parts.next();
    let c = parts.next();
    match (c, b.and_then(|s| s.parse::<u32>().ok()), a) {
        (Some(file), Some(line), Some(col)) => (file.to_string(), line, col),
        _ => (loc.to_string(), 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process state letter of `pid` (`Z` once it died and awaits reaping), or `None` when gone.
    fn state_of(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }

    #[test]
    fn programs_may_run_from_the_profile_directory() {
        // No noexec mount exists on the test machines to show the refusal;
        // a directory that cannot be looked at counts as one.
        let dir = tempfile::tempdir().unwrap();
        assert!(executable_here(dir.path()));
        assert!(!executable_here(Path::new("/no/such/dir")));
    }

    #[test]
    fn the_browser_dies_with_the_thread_that_started_it() {
        let Ok(exe) = super::super::find_chromium(None, std::env::var_os("PATH")) else {
            assert!(
                !crate::testing::services::services_required(),
                "no Chromium, and APNA_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: no Chromium");
            return;
        };
        // As if the process had been killed: the thread that started the
        // browser ends, and nothing drops it.
        let (pid, profile) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let w = launch(&exe, &BrowserOptions::default()).await.unwrap();
                let out = (w.pid().unwrap(), w._profile.path().to_path_buf());
                std::mem::forget(w);
                out
            })
        })
        .join()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(state_of(pid), None | Some('Z')) {
            assert!(
                Instant::now() < deadline,
                "Chromium {pid} outlived its starter"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(profile);
    }

    #[test]
    fn console_format_strings_are_filled_in() {
        let s = |v: &str| {
            RemoteObject::builder()
                .r#type(chromiumoxide::cdp::js_protocol::runtime::RemoteObjectType::String)
                .value(serde_json::Value::String(v.into()))
                .build()
                .unwrap()
        };
        assert_eq!(
            console_text(&[s("%s failed: %s%%"), s("load"), s("boom"), s("extra")]),
            "load failed: boom% extra"
        );
        assert_eq!(
            split_file("/p/src/App.tsx:3:9"),
            ("/p/src/App.tsx".into(), 3, 9)
        );
        let fr = frames_from_text(
            "Error: WebSocket closed without opened.\n    at WebSocket.<anonymous> (http://127.0.0.1:5173/@vite/client:535:10)\n    at http://127.0.0.1:5173/src/App.tsx?t=1:4:7",
        );
        assert_eq!(fr.len(), 2);
        assert_eq!(
            (fr[0].function.as_str(), fr[0].line, fr[0].column),
            ("WebSocket.<anonymous>", 534, 9)
        );
        assert_eq!(
            (fr[1].url.as_str(), fr[1].line),
            ("http://127.0.0.1:5173/src/App.tsx?t=1", 3)
        );
        assert_eq!(
            split_file("/p/src/App.tsx"),
            ("/p/src/App.tsx".into(), 0, 0)
        );
    }
}
