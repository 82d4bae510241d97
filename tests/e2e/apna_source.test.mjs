// The dev-only Vite plugin (images/preview/vite-plugin-apna-source.js) in a
// project made from each starter the way Apna makes one (its base's files,
// then its own, without template.json / prompt.md / the preview image; the
// shared plugin file at the root; node_modules linked from the installed
// dependencies): the dev server tags JSX with data-apna-src and injects the
// select script; the production build contains neither.
//
//   node --test tests/e2e/apna_source.test.mjs
//
// Needs each starter's installed node_modules: the test cache `cargo test`
// and tests/run fill (`$APNA_TEMPLATE_CACHE`, default target/apna-test-cache,
// `{hash}/node_modules` with the hash Apna computes from the lock file and
// package.json), or node_modules installed in the starter's folder. Without
// them it skips, unless APNA_REQUIRE_SERVICES=1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const templates = path.join(root, 'images/preview/templates');
const plugin = path.join(root, 'images/preview/vite-plugin-apna-source.js');
const cache = process.env.APNA_TEMPLATE_CACHE || path.join(root, 'target/apna-test-cache');
const SKIP = ['node_modules', 'dist', '.vite', '.apna-build', 'template.json', 'prompt.md'];

function meta(name) {
  return JSON.parse(fs.readFileSync(path.join(templates, name, 'template.json'), 'utf8'));
}

/** The installed node_modules for a starter (its base's when it has one), or undefined. */
function nodeModules(name) {
  const owner = meta(name).base || name;
  const dir = path.join(templates, owner);
  const h = crypto.createHash('sha256');
  h.update(fs.readFileSync(path.join(dir, 'package-lock.json')));
  h.update(fs.readFileSync(path.join(dir, 'package.json')));
  const hash = h.digest('hex').slice(0, 16);
  return [path.join(cache, hash, 'node_modules'), path.join(dir, 'node_modules')].find((c) =>
    fs.existsSync(path.join(c, 'vite/package.json')),
  );
}

function project(name, nm) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `apna-source-${name}-`));
  const m = meta(name);
  for (const layer of [m.base, name].filter(Boolean)) {
    const from = path.join(templates, layer);
    const preview = meta(layer).preview;
    for (const entry of fs.readdirSync(from)) {
      if (SKIP.includes(entry) || entry === preview) continue;
      fs.cpSync(path.join(from, entry), path.join(dir, entry), { recursive: true });
    }
  }
  fs.copyFileSync(plugin, path.join(dir, 'vite-plugin-apna-source.js'));
  fs.symlinkSync(nm, path.join(dir, 'node_modules'));
  return dir;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listFiles(dir) {
  return fs.readdirSync(dir, { recursive: true }).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile());
}

/** Line and column (1-based) of the first intrinsic JSX element (`<div`, `<h1`) in `code`. */
function firstIntrinsic(code) {
  const lines = code.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /<([a-z][a-z0-9]*)[\s>/]/.exec(lines[i]);
    if (m && !lines[i].trimStart().startsWith('//') && !lines[i].trimStart().startsWith('import')) return [i + 1, m.index + 1];
  }
  return null;
}

const starters = fs.readdirSync(templates).filter((d) => fs.existsSync(path.join(templates, d, 'template.json'))).sort();
assert.ok(starters.length >= 4, `starters found: ${starters}`);

for (const name of starters) {
  const nm = nodeModules(name);
  if (!nm) {
    if (process.env.APNA_REQUIRE_SERVICES === '1') test(`${name}: apna source plugin`, () => assert.fail(`no installed node_modules for ${name}`));
    else console.log(`skipped ${name}: no installed node_modules`);
    continue;
  }

  test(`${name}: the config imports the plugin first`, () => {
    const m = meta(name);
    const config = fs.readFileSync(path.join(templates, m.base || name, 'vite.config.ts'), 'utf8');
    assert.match(config, /import apnaSource from "\.\/vite-plugin-apna-source\.js";/);
    assert.match(config, /plugins: \[apnaSource\(\), /);
  });

  test(`${name}: the production build has no data-apna-src and no select script`, { timeout: 180_000 }, () => {
    const dir = project(name, nm);
    try {
      const r = spawnSync(path.join(nm, '.bin/vite'), ['build', '--logLevel', 'warn'], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr + r.stdout);
      const files = listFiles(path.join(dir, 'dist'));
      assert.ok(files.some((f) => f.endsWith('.js')), 'the build wrote a bundle');
      for (const f of files) {
        const text = fs.readFileSync(f, 'latin1');
        assert.ok(!text.includes('data-apna-src'), `${path.relative(dir, f)} has data-apna-src`);
        assert.ok(!text.includes('apna:selected'), `${path.relative(dir, f)} has the select script`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`${name}: the dev server tags JSX elements and injects the select script`, { timeout: 180_000 }, async (t) => {
    const dir = project(name, nm);
    const port = await freePort();
    const vite = spawn(path.join(nm, '.bin/vite'), ['--logLevel', 'warn'], {
      cwd: dir,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
    });
    t.after(() => {
      vite.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const base = `http://127.0.0.1:${port}`;
    let html = '';
    for (let i = 0; i < 600 && !html; i++) {
      try {
        const r = await fetch(`${base}/`);
        if (r.ok) html = await r.text();
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(html.includes('apna:selected'), 'index.html carries the select script');
    const app = await (await fetch(`${base}/src/App.tsx`)).text();
    const at = firstIntrinsic(fs.readFileSync(path.join(dir, 'src/App.tsx'), 'utf8'));
    assert.ok(at, 'src/App.tsx has an intrinsic element');
    assert.ok(app.includes(`"data-apna-src": "src/App.tsx:${at[0]}:${at[1]}"`), app.slice(0, 3000));
  });
}

// Select from a UI that is not on the preview domain's parent (on AWS the UI
// is on CloudFront, previews under Caddy's domain): the dev server trusts the
// origins in APNA_UI_ORIGINS, and still no other page that frames the preview.
{
  const nm = nodeModules('minimal');
  const chromiumPath = process.env.APNA_CHROMIUM || '/usr/bin/chromium';
  if (nm && fs.existsSync(chromiumPath)) {
    test('minimal: Select answers a UI named by APNA_UI_ORIGINS, and no other framing page', { timeout: 180_000 }, async (t) => {
      const { launch } = await import('./flow.mjs');
      const http = await import('node:http');
      const dir = project('minimal', nm);
      const [vitePort, uiPort] = [await freePort(), await freePort()];
      const ui = `http://ui.localhost:${uiPort}`;
      const preview = `http://p1.preview.localhost:${vitePort}`;
      const vite = spawn(path.join(nm, '.bin/vite'), ['--logLevel', 'warn'], {
        cwd: dir,
        env: { ...process.env, PORT: String(vitePort), HOST: '127.0.0.1', APNA_UI_ORIGINS: `${ui},not an origin` },
      });
      // Any host on this port gets the framing page: ui.localhost (trusted) and other.localhost (not).
      const server = http.createServer((req, res) => {
        res.setHeader('content-type', 'text/html');
        res.end(`<!doctype html><iframe id="f" src="${preview}/" width="800" height="600"></iframe>
<script>window.got = []; addEventListener('message', (e) => { if (e.origin === ${JSON.stringify(preview)}) window.got.push(e.data); });</script>`);
      }).listen(uiPort, '127.0.0.1');
      const browser = await launch();
      t.after(async () => {
        await browser.close();
        server.close();
        vite.kill();
        fs.rmSync(dir, { recursive: true, force: true });
      });
      for (let i = 0; i < 600; i++) {
        try {
          if ((await fetch(`http://127.0.0.1:${vitePort}/`)).ok) break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }

      const select = async (origin) => {
        const page = await browser.newPage();
        await page.goto(`${origin}/`);
        const frame = await (await page.waitForSelector('#f')).contentFrame();
        await frame.waitForSelector('h1', { timeout: 60_000 });
        const ready = await page
          .waitForFunction(() => window.got.some((m) => m.type === 'apna:ready'), null, { timeout: 5_000 })
          .then(() => true, () => false);
        await page.evaluate((p) => document.getElementById('f').contentWindow.postMessage({ type: 'apna:select', on: true }, p), preview);
        await page.waitForTimeout(300);
        await frame.click('h1');
        const selected = await page
          .waitForFunction(() => window.got.find((m) => m.type === 'apna:selected'), null, { timeout: 5_000 })
          .then((h) => h.jsonValue(), () => null);
        await page.close();
        return { ready, selected };
      };

      const named = await select(ui);
      assert.equal(named.ready, true, 'the preview greets the UI named in APNA_UI_ORIGINS');
      assert.ok(named.selected, 'a click in Select mode reaches the UI');
      assert.match(named.selected.source, /^src\/App\.tsx:\d+:\d+$/);
      assert.equal(named.selected.tag, 'h1');
      assert.equal(named.selected.text, 'Your app is on its way');

      const other = await select(`http://other.localhost:${uiPort}`);
      assert.deepEqual(other, { ready: false, selected: null }, 'a page not named is neither greeted nor obeyed');
    });
  }
}
