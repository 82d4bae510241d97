// Renders one page in Debian's Chromium and prints what it saw as JSON:
// console errors and uncaught exceptions, the body text, every `data-slot`
// value in the DOM, and whether selectors matched. Used by the Rust tests
// (shared/tests/starters.rs) as the browser smoke check of a preview, and to
// make the starters' preview images.
//
//   node tests/e2e/render.mjs URL [--wait-text TEXT] [--click BUTTON-NAME]
//        [--selector CSS]... [--screenshot PATH] [--viewport 1280x800] [--scale 1]

import { launch } from './flow.mjs';

const args = process.argv.slice(2);
const url = args.shift();
const opts = { selectors: [], viewport: '1280x800', scale: '1' };
while (args.length) {
  const flag = args.shift();
  const value = args.shift();
  if (flag === '--wait-text') opts.waitText = value;
  else if (flag === '--click') opts.click = value;
  else if (flag === '--selector') opts.selectors.push(value);
  else if (flag === '--screenshot') opts.screenshot = value;
  else if (flag === '--viewport') opts.viewport = value;
  else if (flag === '--scale') opts.scale = value;
  else throw new Error(`unknown flag ${flag}`);
}
const [width, height] = opts.viewport.split('x').map(Number);

const browser = await launch();
const errors = [];
let result;
try {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: Number(opts.scale) });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console.error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    // ERR_ABORTED is the browser cancelling its own request (a reload while
    // Vite re-optimises a newly installed package), not the app failing.
    if (why !== 'net::ERR_ABORTED') errors.push(`request failed: ${req.url()} ${why}`);
  });
  page.on('response', (resp) => {
    if (resp.status() >= 400) errors.push(`HTTP ${resp.status()}: ${resp.url()}`);
  });
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 60_000 });
    await page.waitForFunction(() => document.getElementById('root')?.childElementCount > 0, null, { timeout: 60_000 });
    if (opts.waitText) await page.getByText(opts.waitText).first().waitFor({ timeout: 30_000 });
    if (opts.click) await page.getByRole('button', { name: opts.click }).first().click({ timeout: 10_000 });
  } catch (e) {
    const text = await page.evaluate(() => document.body?.innerText?.slice(0, 2000)).catch(() => '');
    throw new Error(`${e.message}\nerrors so far: ${JSON.stringify(errors)}\npage text: ${text}`);
  }
  // Let effects, portals and charts (ResizeObserver) settle.
  await page.waitForTimeout(800);
  const seen = await page.evaluate((selectors) => ({
    title: document.title,
    text: document.body.innerText.slice(0, 4000),
    slots: [...new Set([...document.querySelectorAll('[data-slot]')].map((e) => e.getAttribute('data-slot')))].sort(),
    matched: Object.fromEntries(selectors.map((s) => [s, document.querySelectorAll(s).length])),
  }), opts.selectors);
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
  result = { errors, ...seen };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
