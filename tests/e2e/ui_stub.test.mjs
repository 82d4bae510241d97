// UI smoke test against the Node stub API (tests/e2e/stub_server.mjs): the
// full browser scenario plus the config banner, waking a hibernated project,
// Stop, and bearer-token auth. Fast, and needs no Rust server.
//
//   cd tests && node --test e2e/ui_stub.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStub } from './stub_server.mjs';
import { launch, newPage, mainFlow, narrowFlow, waitForPreviewHeading, assertNoErrorToasts, PROMPT, FIRST_HEADING } from './flow.mjs';

let stub;
let browser;
let project;

before(async () => {
  stub = await startStub({ port: 0 });
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (stub) await stub.close();
});

const hook = (path, body) =>
  fetch(new URL(path, stub.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body || {}) }).then((r) => {
    assert.ok(r.ok, `stub hook ${path} failed: ${r.status}`);
    return r.json();
  });

test('create, stream, preview, follow-up, versions, restore (1280×800)', async () => {
  const errors = [];
  project = await mainFlow(browser, stub.url, errors, { timeouts: { run: 20_000, preview: 20_000 }, shotPrefix: 'ui-stub' });
  assert.deepEqual(errors, []);
});

test('phone layout (390×844)', async () => {
  assert.ok(project, 'needs the first test');
  const errors = [];
  await narrowFlow(browser, project.projectUrl, errors, { timeouts: { preview: 20_000 }, shotPrefix: 'ui-stub' });
  assert.deepEqual(errors, []);
});

test('project list shows name, status and last activity', async () => {
  const errors = [];
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  try {
    await page.goto(stub.url);
    const card = page.locator('.project-card').first();
    await card.waitFor();
    assert.match(await card.locator('.project-name').textContent(), /habit tracker/i);
    assert.equal((await card.locator('.badge').textContent()).trim(), 'ready');
    assert.match(await card.locator('.project-meta').textContent(), /Active just now/);
    await card.locator('a').click();
    await page.waitForURL(/#\/p\//);
    await page.locator('.msg-user').first().waitFor();
  } finally {
    await context.close();
  }
  assert.deepEqual(errors, []);
});

test('setup banner when no model is configured', async () => {
  const errors = [];
  await hook('/__stub/config', { model_configured: false });
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  try {
    await page.goto(stub.url);
    const banner = page.locator('#banner [role=alert]');
    await banner.waitFor();
    assert.match(await banner.textContent(), /ANTHROPIC_API_KEY/);
  } finally {
    await context.close();
    await hook('/__stub/config', { model_configured: true });
  }
  assert.deepEqual(errors, []);
});

test('a hibernated project shows "waking" and then the preview', async () => {
  assert.ok(project, 'needs the first test');
  const errors = [];
  await hook(`/__stub/hibernate/${project.projectId}`);
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  try {
    await page.goto(project.projectUrl);
    await page.getByText('Waking up your project…').waitFor();
    await page.locator('.preview-overlay').waitFor({ state: 'hidden', timeout: 10_000 });
    await waitForPreviewHeading(page, FIRST_HEADING, 15_000);
    await assertNoErrorToasts(page);
  } finally {
    await context.close();
  }
  assert.deepEqual(errors, []);
});

test('Stop cancels a running run', async () => {
  const errors = [];
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors);
  try {
    await page.goto(stub.url);
    await page.getByLabel('What do you want to build?').fill(`${PROMPT} (stop me)`);
    await page.getByRole('button', { name: 'Build it' }).click();
    await page.getByRole('button', { name: 'Stop the run' }).click();
    await page.locator('.run-end.run-cancelled', { hasText: 'Stopped' }).waitFor({ timeout: 10_000 });
    await page.waitForFunction(() => !document.querySelector('.runbar-active'));
    assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), false);
  } finally {
    await context.close();
  }
  assert.deepEqual(errors, []);
});

test('jwt mode: token field, readable 401, Bearer after saving', async () => {
  await hook('/__stub/config', { auth: 'jwt' });
  const errors = [];
  // The unauthenticated list request is expected to fail with 401 once.
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors, { allow: [/status of 401/] });
  try {
    await page.goto(stub.url);
    const field = page.getByLabel('Access token');
    await field.waitFor();
    await page.locator('.list-status', { hasText: 'A valid bearer token is required.' }).waitFor();
    await field.fill('stub-token');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.locator('.project-card').first().waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('apna.token')), 'stub-token');
  } finally {
    await context.close();
    await hook('/__stub/config', { auth: 'single_user' });
  }
  assert.deepEqual(errors, []);
});

test('progress falls back to polling when the event stream fails', async () => {
  await hook('/__stub/config', { sse: false });
  const errors = [];
  // The failed stream request itself is logged by Chromium; nothing else may be.
  const { context, page } = await newPage(browser, { width: 1280, height: 800 }, errors, { allow: [/status of 503/, /EventSource/] });
  try {
    await page.goto(stub.url);
    await page.getByLabel('What do you want to build?').fill(`${PROMPT} (polling)`);
    await page.keyboard.press('Enter');
    await page.locator('.msg-assistant .tool-line', { hasText: 'src/App.tsx' }).first().waitFor({ timeout: 10_000 });
    await page.locator('.run-end.run-succeeded', { hasText: 'Saved as version 1' }).waitFor({ timeout: 10_000 });
    await waitForPreviewHeading(page, FIRST_HEADING, 10_000);
    await assertNoErrorToasts(page);
  } finally {
    await context.close();
    await hook('/__stub/config', { sse: true });
  }
  assert.deepEqual(errors, []);
});
