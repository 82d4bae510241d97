//! The visual self-check (`APNA_VISUAL_CHECK=1`): once at the end of a
//! project's first run, the desktop screenshot Smoke took of a page that
//! passed both checks is shown to the model with the person's request, and
//! what it says looks wrong goes back through the fix loop.
//!
//! It rides on the loop that is there: Smoke leaves the request (text and
//! the screenshot, stored as an image of the project the way an attached
//! image is, so the model request inlines it like any other) as the next
//! step's fix text and answers "not ok", AfterSmoke sends the run back to
//! AgentStep while Verify's attempts last, and Verify and Smoke run again
//! after the model's turn. Whether it was asked is a checkpoint of the run
//! (`visual`), so it happens once per run whatever retries or restarts, and
//! the model's answer is recorded as a run event ("Looked at the page: …").

use serde_json::{json, Value};

use super::checkpoint::TaskKey;
use crate::app::Backends;
use crate::domain::{ImageRef, Page, Run};
use crate::error::{Error, Result};
use crate::run::report_phase;
use crate::sandbox::smoke::ScreenshotImage;

/// The phase of the run events it records.
const PHASE: &str = "visual";
/// How much of the person's request is quoted back to the model.
const MAX_QUOTED_CHARS: usize = 2_000;
/// How much of the model's answer the "Looked at the page" event keeps.
const MAX_EVENT_CHARS: usize = 500;

/// What Smoke knows when it may ask.
pub(super) struct Asking<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Its project.
    pub project_id: &'a str,
    /// Verify's attempt count after the check that passed.
    pub attempt: u32,
    /// The run's fix-attempt budget.
    pub max_fix_attempts: u32,
    /// The step the model's look at the page will be.
    pub next_step: u32,
}

/// Asks the model to look at `screenshots` (the desktop one) when the
/// setting is on, this is the project's first run, attempts remain and it
/// has not been asked in this run; leaves the request for step
/// `next_step`. Returns whether the model is (or already was, in this
/// attempt) asked, so Smoke sends the run back to the agent.
pub(super) async fn ask(
    state: &Backends,
    a: &Asking<'_>,
    screenshots: &[ScreenshotImage],
) -> Result<bool> {
    if !state.config.visual_check || a.attempt >= a.max_fix_attempts {
        return Ok(false);
    }
    if let Some(asked) = TaskKey::Visual.get(&*state.store, a.run_id).await? {
        // A retry of the Smoke that asked asks again; a later Smoke does not.
        return Ok(asked.get("attempt").and_then(Value::as_u64) == Some(u64::from(a.attempt)));
    }
    let Some(desktop) = screenshots
        .iter()
        .find(|s| s.viewport == "desktop")
        .or(screenshots.first())
    else {
        return Ok(false);
    };
    let Some(run) = first_run(state, a.project_id).await? else {
        return Ok(false);
    };
    if run.id != a.run_id {
        return Ok(false);
    }
    let prepared = crate::images::prepare_all(vec![(
        desktop.png.clone(),
        "the browser check's screenshot".to_string(),
    )])
    .await?;
    let image = crate::images::store(&*state.blobs, a.project_id, &prepared)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("a stored screenshot has no image reference".into()))?;
    let text = instruction(&run.message, desktop, &image);
    TaskKey::Fix(a.next_step)
        .put(
            &*state.store,
            a.run_id,
            &json!({ "text": text, "images": [image], "visual": true }),
        )
        .await?;
    let stored = TaskKey::Visual
        .put(
            &*state.store,
            a.run_id,
            &json!({ "attempt": a.attempt, "step": a.next_step, "image": image }),
        )
        .await?;
    if stored.get("attempt").and_then(Value::as_u64) != Some(u64::from(a.attempt)) {
        return Ok(false);
    }
    report_phase(
        &*state.store,
        a.run_id,
        PHASE,
        "Comparing the page with the request",
    )
    .await?;
    Ok(true)
}

/// The project's oldest run.
async fn first_run(state: &Backends, project_id: &str) -> Result<Option<Run>> {
    let mut oldest = None;
    let mut offset = 0;
    loop {
        let page = state
            .store
            .list_runs(project_id, Page::new(Page::MAX, offset))
            .await?;
        let n = page.len() as i64;
        if let Some(last) = page.into_iter().last() {
            oldest = Some(last);
        }
        if n < Page::MAX {
            return Ok(oldest);
        }
        offset += n;
    }
}

/// What the model is told, before the screenshot.
fn instruction(request: &str, shot: &ScreenshotImage, image: &ImageRef) -> String {
    let quoted: String = request.trim().chars().take(MAX_QUOTED_CHARS).collect();
    let quoted = quoted
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "The app builds and opens without errors. Below is a screenshot of its page as a \
         browser shows it now ({}×{}, {}; Apna took it, the person did not attach it; image {}). \
         Compare it with what the person asked for:\n\n{quoted}\n\n\
         If something asked for is missing or looks wrong (layout, styling, text, empty or \
         broken areas), fix it in the files. If the page already does what was asked, change \
         nothing. Either way, start your reply with one or two sentences on what you see on \
         the page.",
        shot.width, shot.height, shot.viewport, image.id
    )
}

/// Records the model's answer to the look at the page as a run event, once.
pub(super) async fn looked(state: &Backends, run_id: &str, text: &str) -> Result<()> {
    if TaskKey::Looked.get(&*state.store, run_id).await?.is_some() {
        return Ok(());
    }
    let said: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_EVENT_CHARS)
        .collect();
    let said = if said.is_empty() {
        "no comment".to_string()
    } else {
        said
    };
    TaskKey::Looked
        .put(&*state.store, run_id, &json!({ "text": said }))
        .await?;
    report_phase(
        &*state.store,
        run_id,
        PHASE,
        &format!("Looked at the page: {said}"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instruction_quotes_the_request() {
        let shot = ScreenshotImage {
            viewport: "desktop".into(),
            width: 1280,
            height: 800,
            png: Vec::new(),
        };
        let image = ImageRef {
            id: "ab".repeat(32),
            media_type: "image/png".into(),
            width: 1280,
            height: 800,
            size: 10,
        };
        let text = instruction("a reading list\nwith a counter", &shot, &image);
        assert!(
            text.contains("> a reading list\n> with a counter"),
            "{text}"
        );
        assert!(text.contains("1280×800, desktop"), "{text}");
        assert!(text.contains(&image.id));
        let long = instruction(&"x".repeat(10_000), &shot, &image);
        assert!(long.len() < MAX_QUOTED_CHARS + 1_000);
    }
}
