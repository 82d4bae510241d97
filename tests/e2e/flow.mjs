// The browser scenario shared by ui.test.mjs (real `apna serve` + mock model)
// and ui_stub.test.mjs (the Node stub): drive Debian's Chromium through
// create → stream → preview → follow-up (HMR) → versions → restore, and
// collect every console error on the way.

import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const repoRoot = path.resolve(here, '..', '..');
/** Where screenshots go (ignored by git). */
export const outDir = path.join(repoRoot, 'test-output');

/** The prompt and texts the scripted conversation (ui_e2e.json) is built around. */
export const PROMPT = 'Build a habit tracker where I can tick off habits every day';
export const FIRST_HEADING = 'Habit Tracker Ready';
export const FOLLOW_UP = 'Make the heading say Daily Habits Dashboard';
export const SECOND_HEADING = 'Daily Habits Dashboard';
const script = JSON.parse(fs.readFileSync(path.join(repoRoot, 'tests/fixtures/conversations/ui_e2e.json'), 'utf8'));
/** The scripted model's first sentence (turn 0's text). */
export const FIRST_TEXT = script.turns[0].content.find((b) => b.type === 'text').text;

/** Launches headless Chromium (Debian's, no browser download). */
export async function launch() {
  const executablePath = process.env.APNA_CHROMIUM || '/usr/bin/chromium';
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-gpu',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** Every console message of every page, for test-output/*-console.log. */
const transcript = [];

/** Writes the console transcript collected so far to test-output/{name}-console.log. */
export function saveTranscript(name) {
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${name}-console.log`), transcript.join('\n') + '\n');
}

/** A page whose console errors and uncaught exceptions are recorded in `errors`. */
export async function newPage(browser, viewport, errors, { allow = [] } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const allowed = (text) => allow.some((re) => re.test(text));
  page.on('console', (msg) => {
    transcript.push(`${new Date().toISOString()} ${msg.type()}: ${msg.text()}`);
    if (msg.type() === 'error' && !allowed(msg.text())) {
      const loc = msg.location();
      errors.push(`console.error: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.message}`));
  return { context, page };
}

/** The preview iframe's Frame (cross-origin frames are reachable through the element). */
async function previewFrame(page) {
  const handle = await page.waitForSelector('iframe.preview-frame', { state: 'attached' });
  for (let i = 0; i < 100; i++) {
    const f = await handle.contentFrame();
    if (f && f.url() !== 'about:blank' && f.url() !== '') return f;
    await page.waitForTimeout(100);
  }
  throw new Error('preview iframe never navigated');
}

/** Waits until the preview's <h1> says `text` (following reloads of the frame). */
export async function waitForPreviewHeading(page, text, timeout) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const f = await previewFrame(page);
      last = (await f.evaluate(() => [...document.querySelectorAll('h1')].map((h) => h.textContent.trim()).join(' | '))) || last;
      if (last.includes(text)) return f;
    } catch {
      // The frame navigated (starting page → app) while we looked; try again.
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`preview never showed "${text}" (last <h1>: "${last}")`);
}

/** Fails with the text of any error toast on screen. */
export async function assertNoErrorToasts(page) {
  const toasts = await page.locator('.toast-error').allTextContents();
  assert.deepEqual(toasts, [], `error messages shown in the UI: ${toasts.join(' / ')}`);
}

/**
 * The main scenario. Returns { projectId, projectUrl }. `timeouts.run` bounds one
 * agent run, `timeouts.preview` the preview showing a change.
 */
export async function mainFlow(browser, baseUrl, errors, { timeouts = { run: 60_000, preview: 60_000 }, shotPrefix = 'ui' } = {}) {
  fs.mkdirSync(outDir, { recursive: true });
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  page.setDefaultTimeout(timeouts.run);
  try {
    await page.goto(baseUrl);
    await page.getByRole('heading', { name: 'What do you want to build?' }).waitFor();

    // Starters are cards; the default is chosen, and picking another one
    // swaps the example prompts for its own.
    const appCard = page.locator('.starter-card[data-starter="app"]');
    await appCard.waitFor();
    assert.equal(await appCard.locator('input').isChecked(), true, 'the default starter is chosen');
    // The image is lazy: wait for it to settle rather than catch it mid-load.
    const loaded = await appCard.locator('img').evaluate((img) => (img.complete
      ? img.naturalWidth > 0
      : new Promise((resolve) => {
        img.addEventListener('load', () => resolve(img.naturalWidth > 0));
        img.addEventListener('error', () => resolve(false));
      })));
    assert.ok(loaded, 'its preview image loads');
    const dashboard = page.locator('.starter-card[data-starter="dashboard"]');
    await dashboard.click();
    assert.equal(await dashboard.locator('input').isChecked(), true);
    await page.locator('.examples .chip', { hasText: /dashboard/i }).first().waitFor();

    // Example prompts fill the box.
    const chip = page.locator('.examples .chip').first();
    const chipText = (await chip.textContent()).trim();
    await chip.click();
    assert.equal(await page.getByLabel('What do you want to build?').inputValue(), chipText);

    // Shift+Enter is a newline, Enter sends.
    const box = page.getByLabel('What do you want to build?');
    await box.fill('');
    await box.pressSequentially(PROMPT.slice(0, 20));
    await box.press('Shift+Enter');
    assert.equal(await box.inputValue(), `${PROMPT.slice(0, 20)}\n`, 'Shift+Enter must insert a newline');
    await box.fill(PROMPT);
    await box.press('Enter');

    await page.waitForURL(/#\/p\/[a-z0-9-]+$/);
    const projectId = page.url().match(/#\/p\/([a-z0-9-]+)$/)[1];
    const projectUrl = page.url();
    // The API may live on another origin than the UI (--separate-origin).
    const apiBase = await page.evaluate(() => document.querySelector('meta[name="apna-api-base"]').content || location.origin);
    const created = await page.request.get(new URL(`/api/projects/${projectId}`, apiBase).href);
    assert.equal((await created.json()).template, 'dashboard', 'the project begins from the chosen starter');

    // Progress streams in: the model's text and a compact line per tool call.
    await page.locator('.msg-assistant .bubble', { hasText: /habit tracker/i }).first().waitFor();
    await page.locator('.msg-assistant .tool-line', { hasText: 'src/App.tsx' }).first().waitFor();
    await page.locator('.run-end.run-succeeded').first().waitFor({ timeout: timeouts.run });
    // Streamed deltas and the step's full text must not double up.
    const firstBubbles = page.locator('.msg-assistant .bubble', { hasText: FIRST_TEXT.slice(0, 30) });
    assert.equal(await firstBubbles.count(), 1, 'the first answer is shown once');
    assert.equal((await firstBubbles.textContent()).trim(), FIRST_TEXT);
    await page.locator('.run-end.run-succeeded', { hasText: 'Saved as version 1' }).waitFor({ timeout: 10_000 });
    // The browser check's screenshot of the app goes with the version, shown
    // under "Saved as version 1" once the run ends.
    await waitForImage(page, '.run-end.run-succeeded img.shot-thumb', 'the screenshot after the run');
    await page.locator('.tool-line.tool-ok', { hasText: 'Opened in a browser: no errors' }).first().waitFor({ timeout: 10_000 });
    assert.match(await page.locator('.runbar').textContent(), /tokens/, 'the run bar shows token usage');

    // The UI reloads a preview that loaded mid-run once the run ends; let it settle.
    await page.locator('iframe.preview-frame[data-state="loaded"]').waitFor({ state: 'attached', timeout: timeouts.preview });
    const frame1 = await waitForPreviewHeading(page, FIRST_HEADING, timeouts.preview);
    await frame1.evaluate(() => {
      window.__apnaE2eMarker = 'same-document';
    });

    // Follow-up change; the preview must update in place (HMR, not a reload).
    const chat = page.getByLabel('Message to Apna');
    await chat.fill(FOLLOW_UP);
    await chat.press('Enter');
    await page.locator('.msg-user .bubble', { hasText: FOLLOW_UP }).waitFor();
    await page.locator('.msg-assistant .tool-line', { hasText: /edited src\/App\.tsx/ }).first().waitFor();
    const frame2 = await waitForPreviewHeading(page, SECOND_HEADING, timeouts.preview);
    const marker = await frame2.evaluate(() => window.__apnaE2eMarker || null);
    assert.equal(marker, 'same-document', 'the preview reloaded instead of hot-updating (HMR)');
    await page.waitForFunction(() => document.querySelectorAll('.run-end.run-succeeded').length >= 2, null, { timeout: timeouts.run });

    // Versions: two, newest first; the diff of v2 shows the heading change.
    await page.getByRole('tab', { name: 'Versions' }).click();
    const versions = page.locator('.version-list li.version');
    await page.waitForFunction(() => document.querySelectorAll('.version-list li.version').length === 2, null, { timeout: 15_000 });
    assert.deepEqual(await page.locator('.version-list .version-num').allTextContents(), ['v2', 'v1']);
    // Each version row has its screenshot thumbnail; the selected one shows
    // the desktop and phone screenshots next to its diff.
    await waitForImage(page, '.version-list li.version:nth-child(1) img.version-thumb', 'the v2 thumbnail');
    await waitForImage(page, '.version-list li.version:nth-child(2) img.version-thumb', 'the v1 thumbnail');
    await page.getByRole('button', { name: 'Show changes in version 2' }).click();
    await waitForImage(page, '.version-shots img.version-shot', 'the v2 screenshot next to its diff');
    await waitForImage(page, '.version-shots img.version-shot-phone', 'the v2 phone screenshot');
    await page.locator('.diff .dl-add', { hasText: SECOND_HEADING }).waitFor();
    await page.locator('.diff .dl-del', { hasText: FIRST_HEADING }).waitFor();

    // Restore v1 (two steps), and the preview goes back to the first heading.
    await page.getByRole('button', { name: 'Restore version 1' }).click();
    await page.getByRole('button', { name: 'Confirm restoring version 1' }).click();
    await waitForPreviewHeading(page, FIRST_HEADING, timeouts.preview);
    await page.waitForFunction(() => document.querySelectorAll('.version-list li.version').length === 3, null, { timeout: 15_000 });
    assert.equal(await versions.count(), 3, 'a restore is itself a new version');

    // Files: the tree lists src/App.tsx; the viewer highlights it.
    await page.getByRole('tab', { name: 'Files' }).click();
    // The dashboard starter's own files are there, next to the kit it builds on.
    await page.locator('.file-tree button.file[data-path="src/pages/overview.tsx"]').waitFor();
    await page.locator('.file-tree button.file[data-path="src/App.tsx"]').click();
    await page.locator('.code-viewer .code', { hasText: FIRST_HEADING }).waitFor();
    assert.ok((await page.locator('.code-viewer .tok-kw').count()) > 3, 'keywords are highlighted');

    // The download link serves a zip of the source.
    const href = await page.getByRole('link', { name: 'Download the source as a zip file' }).getAttribute('href');
    const zip = await page.request.get(new URL(href, page.url()).href);
    assert.equal(zip.status(), 200);
    assert.equal((await zip.body()).subarray(0, 2).toString(), 'PK', 'the download is a zip archive');

    await page.getByRole('tab', { name: 'Preview' }).click();
    await waitForPreviewHeading(page, FIRST_HEADING, timeouts.preview);
    await assertNoErrorToasts(page);
    for (const close of await page.locator('.toast-close').all()) await close.click();
    await page.waitForTimeout(400);
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-1280x800.png`) });
    await assertNoErrorToasts(page);
    return { projectId, projectUrl };
  } catch (e) {
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-failure.png`) }).catch(() => {});
    if (errors.length) e.message += `\nbrowser console errors so far:\n${errors.join('\n')}`;
    throw e;
  } finally {
    saveTranscript(shotPrefix);
    await context.close();
  }
}

/** The phone-width layout of a project: tabs, one pane at a time. */
export async function narrowFlow(browser, projectUrl, errors, { timeouts = { preview: 60_000 }, shotPrefix = 'ui' } = {}) {
  const { context, page } = await newPage(browser, { width: 390, height: 844 }, errors);
  try {
    await page.goto(projectUrl);
    const chatTab = page.getByRole('tab', { name: 'Chat' });
    await chatTab.waitFor();
    assert.equal(await chatTab.getAttribute('aria-selected'), 'true');
    await page.locator('.msg-user .bubble', { hasText: FOLLOW_UP }).waitFor();
    assert.equal(await page.locator('.pane-preview').isVisible(), false, 'only one pane at a time on phones');
    const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(scrollWidth <= 390, `no horizontal scrolling at 390px (scrollWidth ${scrollWidth})`);
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-390x844-chat.png`) });
    await page.getByRole('tab', { name: 'Preview' }).click();
    await waitForPreviewHeading(page, FIRST_HEADING, timeouts.preview);
    assert.equal(await page.locator('.pane-chat').isVisible(), false);
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-390x844.png`) });
    await page.getByRole('tab', { name: 'Versions' }).click();
    await page.locator('.version-list li.version').first().waitFor();
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-390x844-versions.png`) });
    await assertNoErrorToasts(page);
  } finally {
    saveTranscript(shotPrefix);
    await context.close();
  }
}

/**
 * Publishing from the UI: the header's Publish panel puts the newest version
 * online at `{slug}.apps.localhost`, the version list marks it live, and the
 * published app renders (deep links too) with no console errors.
 */
export async function publishFlow(browser, projectUrl, errors, { timeouts = { run: 60_000 }, shotPrefix = 'ui', heading = FIRST_HEADING } = {}) {
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  page.setDefaultTimeout(timeouts.run);
  try {
    await page.goto(projectUrl);
    await page.getByRole('button', { name: 'Publish this app' }).click();
    await page.locator('.publish-status').waitFor();
    await page.getByLabel('Site address').fill('e2e-habits');
    await page.getByRole('button', { name: 'Publish latest version' }).click();
    const link = page.locator('a.site-url');
    await link.waitFor({ timeout: timeouts.run });
    const url = await link.getAttribute('href');
    assert.match(url, /^http:\/\/e2e-habits\.apps\.localhost:\d+\/$/, 'the site address');
    await page.getByRole('tab', { name: 'Versions' }).click();
    await page.locator('.version-list .badge-live').waitFor();
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-publish.png`) });
    await assertNoErrorToasts(page);

    const site = await newPage(browser, { width: 1280, height: 800 }, errors);
    try {
      for (const target of [url, `${url}habits/today`]) {
        const resp = await site.page.goto(target);
        assert.equal(resp.status(), 200, target);
        await site.page.locator('h1', { hasText: heading }).waitFor({ timeout: 15_000 });
      }
      const scripts = await site.page.evaluate(() => [...document.scripts].map((s) => s.src));
      assert.ok(scripts.some((s) => s.includes('/_apna/')), `the page loads its deploy's scripts: ${scripts}`);
      await site.page.screenshot({ path: path.join(outDir, `${shotPrefix}-published-site.png`) });
    } finally {
      await site.context.close();
    }
  } catch (e) {
    await page.screenshot({ path: path.join(outDir, `${shotPrefix}-publish-failure.png`) }).catch(() => {});
    if (errors.length) e.message += `\nbrowser console errors so far:\n${errors.join('\n')}`;
    throw e;
  } finally {
    saveTranscript(`${shotPrefix}-publish`);
    await context.close();
  }
}

/** Waits until the image `selector` has loaded a real picture (its PNG came through the API). */
export async function waitForImage(page, selector, what, timeout = 30_000) {
  await page.locator(selector).first().waitFor({ timeout });
  const ok = await page
    .waitForFunction(
      (sel) => {
        const img = document.querySelector(sel);
        return Boolean(img && img.complete && img.naturalWidth > 100 && img.currentSrc.startsWith('blob:'));
      },
      selector,
      { timeout },
    )
    .then(() => true, () => false);
  assert.ok(ok, `${what} (${selector}) did not load`);
}
