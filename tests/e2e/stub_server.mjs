// A development stand-in for `apna serve`: serves web/ and fakes the HTTP API
// (notes/API.md) in memory, "running" a scripted conversation fixture (the
// same format as tests/src/mock_anthropic.rs) with timed SSE events, plus
// host-based previews at http://{id}.localhost:{port}/ that live-update like
// Vite HMR. It exists so the UI can be developed and smoke-tested without the
// Rust server; it is not a reference implementation of the API.
//
//   node tests/e2e/stub_server.mjs [--port 4100] [--script tests/fixtures/conversations/ui_e2e.json]
//
// Test hooks (not part of the API): POST /__stub/config {model_configured, auth},
// (and {sse: false}), POST /__stub/hibernate/{id}, GET /__stub/preview-state/{id} (used by the preview page).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

const startersDir = path.join(repo, 'images', 'preview', 'templates');

/** The starters as `GET /api/templates` lists them (the default, `app`, first). */
function starters() {
  return fs
    .readdirSync(startersDir)
    .filter((name) => fs.existsSync(path.join(startersDir, name, 'template.json')))
    .sort((a, b) => (a === 'app' ? -1 : b === 'app' ? 1 : a.localeCompare(b)))
    .map((name) => ({ name, ...JSON.parse(fs.readFileSync(path.join(startersDir, name, 'template.json'), 'utf8')) }));
}

/** A starter's source files: its base's, then its own. */
function templateFiles(name = 'app') {
  const meta = starters().find((s) => s.name === name);
  const files = new Map();
  const walk = (dir, rel) => {
    for (const ent of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (['node_modules', 'dist', '.vite', 'package-lock.json', 'template.json', 'prompt.md', 'preview.png'].includes(ent.name)) continue;
      if (ent.isDirectory()) walk(dir, r);
      else files.set(r, fs.readFileSync(path.join(dir, r), 'utf8'));
    }
  };
  if (meta.base) walk(path.join(startersDir, meta.base), '');
  walk(path.join(startersDir, name), '');
  return files;
}

// ------------------------------------------------------------------ diffs

/** Line diff (LCS) → { added, removed, hunks text } for small files. */
export function unifiedDiff(pathName, before, after) {
  const a = before === null ? [] : before.split('\n');
  const b = after === null ? [] : after.split('\n');
  const n = a.length;
  const m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push([' ', a[i++], i, ++j]);
    else if (i < n && (j >= m || dp[i + 1][j] >= dp[i][j + 1])) ops.push(['-', a[i++], i, j]);
    else ops.push(['+', b[j++], i, j]);
  }
  const added = ops.filter((o) => o[0] === '+').length;
  const removed = ops.filter((o) => o[0] === '-').length;
  if (!added && !removed) return { added, removed, diff: '' };
  // Group changes with 3 lines of context.
  const changed = ops.map((o, k) => (o[0] !== ' ' ? k : -1)).filter((k) => k >= 0);
  const hunks = [];
  for (const k of changed) {
    const lo = Math.max(0, k - 3);
    const hi = Math.min(ops.length - 1, k + 3);
    const last = hunks[hunks.length - 1];
    if (last && lo <= last[1] + 1) last[1] = hi;
    else hunks.push([lo, hi]);
  }
  let out = `diff --git a/${pathName} b/${pathName}\n--- ${before === null ? '/dev/null' : `a/${pathName}`}\n+++ ${after === null ? '/dev/null' : `b/${pathName}`}\n`;
  for (const [lo, hi] of hunks) {
    const slice = ops.slice(lo, hi + 1);
    let oldStart = 0;
    let newStart = 0;
    // Line numbers before the hunk's first op.
    for (const o of ops.slice(0, lo)) {
      if (o[0] !== '+') oldStart++;
      if (o[0] !== '-') newStart++;
    }
    const oldLen = slice.filter((o) => o[0] !== '+').length;
    const newLen = slice.filter((o) => o[0] !== '-').length;
    out += `@@ -${oldLen ? oldStart + 1 : oldStart},${oldLen} +${newLen ? newStart + 1 : newStart},${newLen} @@\n`;
    for (const o of slice) out += `${o[0]}${o[1]}\n`;
  }
  return { added, removed, diff: out };
}

function diffFiles(before, after) {
  const paths = [...new Set([...before.keys(), ...after.keys()])].sort();
  const fileDiffs = [];
  let text = '';
  for (const p of paths) {
    const x = before.has(p) ? before.get(p) : null;
    const y = after.has(p) ? after.get(p) : null;
    if (x === y) continue;
    const d = unifiedDiff(p, x, y);
    text += d.diff;
    fileDiffs.push({ path: p, action: x === null ? 'create' : y === null ? 'delete' : 'update', size: y === null ? 0 : Buffer.byteLength(y), added: d.added, removed: d.removed, diff: d.diff });
  }
  return { fileDiffs, text };
}

// ------------------------------------------------------------------ zip (stored)

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function zip(files) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [name, content] of files) {
    const data = Buffer.from(content);
    const nameBuf = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    parts.push(local, nameBuf, data);
    const cen = Buffer.alloc(46);
    cen.writeUInt32LE(0x02014b50, 0);
    cen.writeUInt16LE(20, 4);
    cen.writeUInt16LE(20, 6);
    cen.writeUInt32LE(crc, 16);
    cen.writeUInt32LE(data.length, 20);
    cen.writeUInt32LE(data.length, 24);
    cen.writeUInt16LE(nameBuf.length, 28);
    cen.writeUInt32LE(offset, 42);
    central.push(cen, nameBuf);
    offset += 30 + nameBuf.length + data.length;
  }
  const cenBuf = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.size, 8);
  end.writeUInt16LE(files.size, 10);
  end.writeUInt32LE(cenBuf.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cenBuf, end]);
}

// ------------------------------------------------------------------ screenshots

/** A one-colour RGB PNG, as the browser check's screenshots are PNGs. */
function solidPng(width, height, [r, g, b]) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** What the browser check stores for a version: desktop and phone screenshots, by SHA-256. */
const SHOTS = [
  ['desktop', 1280, 800],
  ['phone', 390, 844],
].map(([viewport, width, height]) => {
  const png = solidPng(width, height, [0x0f, 0x76, 0x6e]);
  return { viewport, width, height, sha256: crypto.createHash('sha256').update(png).digest('hex'), bytes: png.length, png };
});

// ------------------------------------------------------------------ server

/** Starts the stub; resolves to { url, port, close() }. */
export async function startStub({ port = 0, script = path.join(repo, 'tests/fixtures/conversations/ui_e2e.json'), pace = 1 } = {}) {
  const fixture = JSON.parse(fs.readFileSync(script, 'utf8'));
  const turns = Array.isArray(fixture) ? fixture : fixture.turns;
  const webDir = path.join(repo, 'web');
  // `sse: false` makes the stream endpoint fail so clients must fall back to polling.
  const cfg = { auth: 'single_user', model_configured: true, model: 'claude-sonnet-4-5 (stub)', sse: true };
  const projects = new Map();
  const runs = new Map();
  const sockets = new Set();
  let actualPort = 0;
  const now = () => new Date().toISOString();
  const wait = (ms) => new Promise((r) => setTimeout(r, ms * pace));

  // Like the mock model, but each project gets its own copy of the script.
  const pickTurn = (p, text) => {
    const t = text.toLowerCase();
    const i = turns.findIndex((turn, k) => !p.usedTurns[k] && (!turn.match || t.includes(turn.match.toLowerCase())));
    if (i < 0) return { content: [{ type: 'text', text: 'Done.' }] };
    p.usedTurns[i] = true;
    return turns[i];
  };

  const publicProject = (p) => {
    const { files, versions, messages, sandboxReady, usedTurns, waking, ...rest } = p;
    return rest;
  };
  const publicRun = (r) => {
    const { events, listeners, cancelRequested, ...rest } = r;
    return rest;
  };

  function emit(run, kind, data) {
    const ev = { run_id: run.id, seq: run.events.length + 1, kind, data, created_at: now() };
    run.events.push(ev);
    for (const l of run.listeners) l(ev);
  }

  function addMessage(p, role, content, runId, fileDiffs = []) {
    const m = { id: crypto.randomUUID(), project_id: p.id, run_id: runId, seq: p.messages.length + 1, role, content, tool_calls: content.filter((b) => b.type === 'tool_use'), file_diffs: fileDiffs, created_at: now() };
    p.messages.push(m);
    return m;
  }

  function addVersion(p, runId, summary, before) {
    const { fileDiffs } = diffFiles(before, p.files);
    // A run's version has the browser check's screenshots; a restore has none.
    const screenshots = runId ? SHOTS.map(({ png, ...meta }) => meta) : [];
    const v = { project_id: p.id, number: p.versions.length + 1, run_id: runId, snapshot_key: `snapshots/${p.id}/${p.versions.length + 1}.tar.zst`, summary, file_diffs: fileDiffs, screenshots, created_at: now(), files: new Map(p.files), before };
    p.versions.push(v);
    p.latest_version = v.number;
    return v;
  }
  const publicVersion = (v) => {
    const { files, before, ...rest } = v;
    return rest;
  };

  function applyTool(p, block) {
    const input = block.input || {};
    const fp = input.path;
    const before = p.files.has(fp) ? p.files.get(fp) : null;
    switch (block.name) {
      case 'write_file': {
        p.files.set(fp, input.content);
        const d = unifiedDiff(fp, before, input.content);
        return { ok: true, result: `wrote ${fp}`, summary: `${before === null ? 'created' : 'wrote'} ${fp} (+${d.added} −${d.removed})`, diff: { path: fp, action: before === null ? 'create' : 'update', size: Buffer.byteLength(input.content), added: d.added, removed: d.removed, diff: d.diff } };
      }
      case 'edit_file': {
        const count = before === null ? 0 : before.split(input.old_string).length - 1;
        if (count !== 1) return { ok: false, result: `old_string matched ${count} times in ${fp}`, summary: `edit of ${fp} failed` };
        const after = before.replace(input.old_string, input.new_string);
        p.files.set(fp, after);
        const d = unifiedDiff(fp, before, after);
        return { ok: true, result: `edited ${fp}`, summary: `edited ${fp} (+${d.added} −${d.removed})`, diff: { path: fp, action: 'update', size: Buffer.byteLength(after), added: d.added, removed: d.removed, diff: d.diff } };
      }
      case 'run_command':
        return { ok: true, result: 'ok', summary: `ran ${input.command}` };
      default:
        return { ok: true, result: 'ok', summary: block.name };
    }
  }

  async function execute(p, run) {
    const before = new Map(p.files);
    const usage = { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0 };
    let cost = 0;
    const cancelled = () => run.cancelRequested;
    const finish = (status, extra = {}) => {
      run.status = status;
      run.finished_at = now();
      run.updated_at = now();
      p.active_run_id = null;
      p.status = status === 'failed' ? 'failed' : 'ready';
      p.updated_at = now();
      emit(run, 'done', { status, ...extra });
    };
    run.status = 'running';
    p.status = 'building';
    emit(run, 'status', { status: 'running', phase: 'sandbox' });
    await wait(300);
    p.sandboxReady = true;
    emit(run, 'status', { status: 'running', phase: 'agent' });
    let text = run.message;
    let lastText = '';
    for (let step = 1; step <= 8; step++) {
      if (cancelled()) return finish('cancelled');
      run.step = step;
      const turn = pickTurn(p, text);
      const blocks = turn.content;
      const toolResults = [];
      const diffs = [];
      // Like apna serve: batched `delta` events while the model streams, the
      // step's whole text as a `text` event, then tool events; the last delta
      // batch may be flushed after all of those.
      const stepText = blocks.filter((b) => b.type === 'text').map((b) => b.text).join('');
      const chunks = stepText.match(/.{1,12}/gs) || [];
      const tail = chunks.length > 1 ? chunks.pop() : null;
      for (const chunk of chunks) {
        if (cancelled()) return finish('cancelled');
        emit(run, 'delta', { text: chunk });
        await wait(25);
      }
      if (stepText) {
        lastText = stepText;
        emit(run, 'text', { step, text: stepText });
      }
      for (const b of blocks) {
        if (cancelled()) return finish('cancelled');
        if (b.type === 'tool_use') {
          await wait(150);
          const r = applyTool(p, b);
          if (r.diff) diffs.push(r.diff);
          toolResults.push({ type: 'tool_result', tool_use_id: b.id, content: r.result, is_error: !r.ok });
          emit(run, 'tool', { name: b.name, summary: r.summary, path: b.input && b.input.path, is_error: !r.ok });
        }
      }
      if (tail) emit(run, 'delta', { text: tail });
      addMessage(p, 'assistant', blocks, run.id, diffs);
      const u = turn.usage || { input_tokens: 500, output_tokens: 100 };
      usage.input_tokens += u.input_tokens || 0;
      usage.output_tokens += u.output_tokens || 0;
      usage.cache_read_tokens += u.cache_read_input_tokens || 0;
      usage.cache_write_tokens += u.cache_creation_input_tokens || 0;
      cost = (usage.input_tokens * 3 + usage.output_tokens * 15 + usage.cache_read_tokens * 0.3 + usage.cache_write_tokens * 3.75) / 1e6;
      run.usage = { ...usage };
      run.cost_usd = cost;
      emit(run, 'usage', { step, usage: u, cost_usd: 0, run_usage: { ...usage }, run_cost_usd: cost });
      if (!toolResults.length) break;
      addMessage(p, 'user', toolResults, run.id);
      text = '';
      await wait(100);
    }
    if (cancelled()) return finish('cancelled');
    emit(run, 'status', { status: 'running', phase: 'verify' });
    await wait(250);
    emit(run, 'diagnostics', { ok: true, items: [] });
    emit(run, 'status', { status: 'running', phase: 'smoke' });
    await wait(100);
    emit(run, 'diagnostics', { check: 'browser', ok: true, smoke: 'passed', items: [], screenshots: SHOTS.map(({ png, ...meta }) => meta) });
    emit(run, 'status', { status: 'running', phase: 'finalize' });
    await wait(150);
    addVersion(p, run.id, lastText || run.message, before);
    run.summary = lastText;
    finish('succeeded', { summary: lastText, error: null });
  }

  function startRun(p, message) {
    const run = { id: crypto.randomUUID(), project_id: p.id, owner: 'local', message, status: 'queued', step: 0, attempts: 0, usage: { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0 }, cost_usd: 0, stop_reason: null, error: null, summary: null, created_at: now(), updated_at: now(), finished_at: null, events: [], listeners: new Set(), cancelRequested: false };
    runs.set(run.id, run);
    p.active_run_id = run.id;
    p.last_active = now();
    addMessage(p, 'user', [{ type: 'text', text: message }], run.id);
    emit(run, 'status', { status: 'queued' });
    setTimeout(() => execute(p, run).catch((e) => console.error('stub run failed', e)), 50);
    return run;
  }

  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': crypto.randomUUID() });
    res.end(JSON.stringify(body));
  };
  const err = (res, status, code, message) => json(res, status, { error: { code, message } });
  const readBody = (req) =>
    new Promise((resolve) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        try {
          resolve(data ? JSON.parse(data) : {});
        } catch {
          resolve(null);
        }
      });
    });

  function previewPage(res, p) {
    // Mimics apna serve's "starting…" page (503 + meta refresh) until the sandbox is up.
    if (!p.sandboxReady || p.status === 'hibernated') {
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><meta http-equiv="refresh" content="1"><title>Starting…</title><p style="font-family:system-ui;color:#667085;text-align:center;margin-top:30vh">Starting the preview…</p>');
      return;
    }
    const heading = (p.files.get('src/App.tsx') || '').match(/<h1[^>]*>([^<]*)<\/h1>/);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Preview</title>
<link rel="icon" href="data:,">
<style>body{font-family:system-ui;margin:0;min-height:100vh;display:grid;place-items:center;background:linear-gradient(135deg,#f8fafc,#e0e7ff);color:#1e293b}main{text-align:center}h1{font-size:2rem;letter-spacing:-.02em}</style></head>
<body><main><h1 id="h">${escapeHtml(heading ? heading[1] : 'Your app is on its way')}</h1><p>Stub preview (live-updating like HMR)</p></main>
<script>
// Stands in for Vite HMR: patches the heading in place, keeping window state.
setInterval(async () => {
  try {
    const r = await fetch('/__stub/preview-state/${p.id}');
    if (r.ok) { const s = await r.json(); const h = document.getElementById('h'); if (h.textContent !== s.heading) h.textContent = s.heading; }
  } catch (e) {}
}, 300);
</script></body></html>`);
  }

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://stub');
      const host = (req.headers.host || '').split(':')[0];
      const sub = host.match(/^([a-z0-9-]{1,63})\.localhost$/);
      if (sub) {
        const p = projects.get(sub[1]);
        if (!p) return err(res, 404, 'not_found', 'no such project');
        if (url.pathname.startsWith('/__stub/preview-state/')) {
          const heading = (p.files.get('src/App.tsx') || '').match(/<h1[^>]*>([^<]*)<\/h1>/);
          return json(res, 200, { heading: heading ? heading[1] : 'Your app is on its way' });
        }
        if (url.pathname === '/favicon.ico') {
          res.writeHead(204);
          return res.end();
        }
        return previewPage(res, p);
      }
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (parts[0] === '__stub') {
        if (parts[1] === 'config' && req.method === 'POST') {
          Object.assign(cfg, await readBody(req));
          return json(res, 200, cfg);
        }
        if (parts[1] === 'hibernate' && req.method === 'POST') {
          const p = projects.get(parts[2]);
          if (!p) return err(res, 404, 'not_found', 'no such project');
          p.status = 'hibernated';
          p.sandboxReady = false;
          return json(res, 200, publicProject(p));
        }
        return err(res, 404, 'not_found', 'unknown stub hook');
      }
      if (parts[0] !== 'api') {
        if (url.pathname === '/healthz') return json(res, 200, { ok: true });
        const rel = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
        const file = path.join(webDir, rel);
        if (!file.startsWith(webDir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
          res.writeHead(404, { 'content-type': 'text/plain' });
          return res.end('not found');
        }
        res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' });
        return res.end(fs.readFileSync(file));
      }
      const m = req.method;
      const [, a, id, b, ...rest] = parts;
      if (a === 'templates' && m === 'GET') {
        const list = starters();
        if (!id) {
          return json(res, 200, {
            templates: list.map((s) => ({ name: s.name, title: s.title, description: s.description, prompt_hints: s.prompt_hints || [], preview_url: `/api/templates/${s.name}/preview.png`, default: s.name === 'app' })),
          });
        }
        const s = list.find((t) => t.name === id);
        if (!s || b !== 'preview.png') return err(res, 404, 'not_found', `no template called ${id}`);
        res.writeHead(200, { 'content-type': 'image/png' });
        return res.end(fs.readFileSync(path.join(startersDir, s.name, s.preview)));
      }
      if (a === 'config' && m === 'GET') {
        return json(res, 200, { auth: cfg.auth, model_configured: cfg.model_configured, model: cfg.model, setup_hint: cfg.model_configured ? null : 'No model key is set. Export ANTHROPIC_API_KEY=sk-ant-… (or set ANTHROPIC_BASE_URL for a compatible server) and restart `apna serve`.', preview_base: `localhost:${actualPort}` });
      }
      if (cfg.auth === 'jwt' && req.headers.authorization !== 'Bearer stub-token') {
        return err(res, 401, 'unauthorized', 'A valid bearer token is required.');
      }
      if (a === 'projects' && !id && m === 'GET') {
        const list = [...projects.values()].filter((p) => p.status !== 'deleted').sort((x, y) => (x.last_active < y.last_active ? 1 : -1));
        return json(res, 200, { projects: list.map(publicProject), next_offset: null });
      }
      if (a === 'projects' && (!id || id === 'create') && m === 'POST') {
        const body = await readBody(req);
        if (!body || typeof body.prompt !== 'string' || !body.prompt.trim()) return err(res, 400, 'invalid_input', 'prompt must be a non-empty string');
        const template = body.template || 'app';
        if (!starters().some((s) => s.name === template)) return err(res, 400, 'invalid_input', `unknown template ${JSON.stringify(template)}; available: ${starters().map((s) => s.name).join(', ')}`);
        const pid = crypto.randomUUID();
        const words = body.prompt.trim().replace(/^(build|make|create)\s+(me\s+)?(an?\s+)?/i, '').split(/\s+/).slice(0, 4).join(' ');
        const p = { id: pid, owner: 'local', name: words.charAt(0).toUpperCase() + words.slice(1), prompt: body.prompt, template, status: 'creating', error: null, created_at: now(), updated_at: now(), last_active: now(), deleted_at: null, preview_url: `http://${pid}.localhost:${actualPort}/`, active_run_id: null, latest_version: null, files: templateFiles(template), versions: [], messages: [], sandboxReady: false, usedTurns: new Array(turns.length).fill(false) };
        projects.set(pid, p);
        const run = startRun(p, body.prompt);
        return json(res, 202, { project: publicProject(p), run_id: run.id });
      }
      if (a === 'projects' && id) {
        const p = projects.get(id);
        if (!p || (p.status === 'deleted' && !(m === 'DELETE'))) return err(res, 404, 'not_found', `project ${id} not found`);
        if (!b && m === 'GET') {
          p.last_active = now();
          if (p.status === 'hibernated' && !p.waking) {
            p.waking = true;
            setTimeout(() => {
              p.status = 'ready';
              p.waking = false;
              p.sandboxReady = true;
            }, 1500 * pace);
          }
          return json(res, 200, publicProject(p));
        }
        if (b === 'preview-access' && m === 'GET') {
          // Single-user previews are open: no token, the plain URL.
          return json(res, 200, { url: p.preview_url, preview_url: p.preview_url, token: null, expires_at: null, public: false });
        }
        if (!b && m === 'DELETE') {
          p.status = 'deleted';
          p.deleted_at = now();
          return json(res, 200, { deleted: true });
        }
        if (b === 'chat' && m === 'POST') {
          const body = await readBody(req);
          if (!body || typeof body.message !== 'string' || !body.message.trim()) return err(res, 400, 'invalid_input', 'message must be a non-empty string');
          if (p.active_run_id) return err(res, 409, 'conflict', 'A run is already active for this project.');
          const run = startRun(p, body.message);
          return json(res, 202, { run_id: run.id });
        }
        if (b === 'messages' && m === 'GET') return json(res, 200, { messages: p.messages, next_offset: null });
        if (b === 'runs' && m === 'GET') return json(res, 200, { runs: [...runs.values()].filter((r) => r.project_id === id).reverse().map(publicRun) });
        if (b === 'files' && m === 'GET') {
          if (!rest.length) return json(res, 200, { files: [...p.files.entries()].sort().map(([fp, c]) => ({ path: fp, size: Buffer.byteLength(c) })) });
          const fp = rest.join('/');
          if (!p.files.has(fp)) return err(res, 404, 'not_found', `file ${fp} not found`);
          return json(res, 200, { path: fp, content: p.files.get(fp), size: Buffer.byteLength(p.files.get(fp)) });
        }
        if (b === 'versions' && !rest.length && m === 'GET') return json(res, 200, { versions: p.versions.map(publicVersion) });
        if (b === 'versions' && rest.length === 2) {
          const v = p.versions.find((x) => x.number === Number(rest[0]));
          if (!v) return err(res, 404, 'not_found', `version ${rest[0]} not found`);
          if (rest[1] === 'diff' && m === 'GET') {
            const { fileDiffs, text } = diffFiles(v.before, v.files);
            return json(res, 200, { number: v.number, diff: text, file_diffs: fileDiffs });
          }
          if (rest[1] === 'restore' && m === 'POST') {
            if (p.active_run_id) return err(res, 409, 'conflict', 'A run is active; stop it before restoring.');
            const before = new Map(p.files);
            p.files = new Map(v.files);
            const nv = addVersion(p, null, `Restored version ${v.number}`, before);
            return json(res, 202, { version: publicVersion(nv) });
          }
        }
        if (b === 'screenshots' && rest.length === 1 && m === 'GET') {
          const shot = SHOTS.find((x) => x.sha256 === rest[0]);
          if (!shot || !p.versions.some((v) => v.screenshots.some((x) => x.sha256 === rest[0]))) return err(res, 404, 'not_found', 'no such screenshot');
          res.writeHead(200, { 'content-type': 'image/png', 'cache-control': 'private, max-age=31536000, immutable' });
          return res.end(shot.png);
        }
        if (b === 'download' && m === 'GET') {
          res.writeHead(200, { 'content-type': 'application/zip', 'content-disposition': `attachment; filename="apna-${id}.zip"` });
          return res.end(zip(p.files));
        }
      }
      if (a === 'runs' && id) {
        const run = runs.get(id);
        if (!run) return err(res, 404, 'not_found', `run ${id} not found`);
        if (!b && m === 'GET') return json(res, 200, { ...publicRun(run), history: [] });
        if (b === 'cancel' && m === 'POST') {
          if (!['succeeded', 'failed', 'cancelled'].includes(run.status)) run.cancelRequested = true;
          return json(res, 200, { run: publicRun(run) });
        }
        if (b === 'events' && m === 'GET') {
          const done = () => run.events.some((e) => e.kind === 'done');
          if (url.searchParams.has('after')) {
            const after = Number(url.searchParams.get('after')) || 0;
            const waitS = Math.min(Number(url.searchParams.get('wait')) || 0, 30);
            const ready = () => run.events.filter((e) => e.seq > after);
            if (!ready().length && !done() && waitS > 0) {
              await new Promise((resolve) => {
                const l = () => {
                  run.listeners.delete(l);
                  resolve();
                };
                run.listeners.add(l);
                setTimeout(l, waitS * 1000);
              });
            }
            return json(res, 200, { events: ready(), done: done() });
          }
          if (!cfg.sse) return err(res, 503, 'not_ready', 'event streaming is switched off in this stub');
          const from = Number(req.headers['last-event-id']) || 0;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': crypto.randomUUID() });
          const send = (ev) => {
            res.write(`id: ${ev.seq}\nevent: ${ev.kind}\ndata: ${JSON.stringify(ev)}\n\n`);
            if (ev.kind === 'done') {
              run.listeners.delete(send);
              res.end();
            }
          };
          for (const ev of run.events) if (ev.seq > from) send(ev);
          if (!done()) {
            run.listeners.add(send);
            req.on('close', () => run.listeners.delete(send));
          }
          return;
        }
      }
      return err(res, 404, 'not_found', `no route for ${m} ${url.pathname}`);
    } catch (e) {
      console.error('stub error', e);
      if (!res.headersSent) err(res, 500, 'internal', String(e.message || e));
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  actualPort = server.address().port;
  return {
    url: `http://localhost:${actualPort}/`,
    port: actualPort,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const stub = await startStub({ port: Number(opt('--port', 4100)), script: opt('--script', undefined) });
  console.log(stub.url);
}
