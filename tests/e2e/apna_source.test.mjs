// The dev-only Vite plugin (images/preview/vite-plugin-apna-source.js) in a
// project made from the template the way Apna makes one (the template's files
// plus the shared plugin file at the root, node_modules linked from the
// installed template): the dev server tags JSX with data-apna-src and injects
// the select script; the production build contains neither.
//
//   node --test tests/e2e/apna_source.test.mjs
//
// Needs the template's installed node_modules: APNA_TEMPLATE_NODE_MODULES, or
// images/preview/template/node_modules, or the test cache tests/run fills
// (target/apna-test-cache/*/node_modules). Without one it skips, unless
// APNA_REQUIRE_SERVICES=1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const template = path.join(root, 'images/preview/template');
const plugin = path.join(root, 'images/preview/vite-plugin-apna-source.js');

function nodeModules() {
  const candidates = [process.env.APNA_TEMPLATE_NODE_MODULES, path.join(template, 'node_modules')];
  const cache = path.join(root, 'target/apna-test-cache');
  if (fs.existsSync(cache)) for (const d of fs.readdirSync(cache)) candidates.push(path.join(cache, d, 'node_modules'));
  return candidates.find((c) => c && fs.existsSync(path.join(c, 'vite/package.json')));
}

function project(nm) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apna-source-'));
  for (const entry of fs.readdirSync(template)) {
    if (['node_modules', 'dist', '.vite', '.apna-build'].includes(entry)) continue;
    fs.cpSync(path.join(template, entry), path.join(dir, entry), { recursive: true });
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

const nm = nodeModules();
if (!nm) {
  if (process.env.APNA_REQUIRE_SERVICES === '1') test('apna source plugin', () => assert.fail('no installed template node_modules'));
  else console.log('skipped: no installed template node_modules');
} else {
  test('the production build has no data-apna-src and no select script', { timeout: 120_000 }, () => {
    const dir = project(nm);
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

  test('the dev server tags JSX elements and injects the select script', { timeout: 120_000 }, async (t) => {
    const dir = project(nm);
    const port = await freePort();
    const vite = spawn(path.join(nm, '.bin/vite'), ['--logLevel', 'warn'], { cwd: dir, env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' } });
    t.after(() => {
      vite.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const base = `http://127.0.0.1:${port}`;
    let html = '';
    for (let i = 0; i < 200 && !html; i++) {
      try {
        const r = await fetch(`${base}/`);
        if (r.ok) html = await r.text();
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(html.includes('apna:selected'), 'index.html carries the select script');
    const app = await (await fetch(`${base}/src/App.tsx`)).text();
    // The template's <h1> is on line 6, column 9 of src/App.tsx.
    const line = fs.readFileSync(path.join(dir, 'src/App.tsx'), 'utf8').split('\n').findIndex((l) => l.includes('<h1')) + 1;
    const col = fs.readFileSync(path.join(dir, 'src/App.tsx'), 'utf8').split('\n')[line - 1].indexOf('<h1') + 1;
    assert.ok(app.includes(`"data-apna-src": "src/App.tsx:${line}:${col}"`), app.slice(0, 2000));
  });
}
