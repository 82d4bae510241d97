// Unit tests of the code viewer's tokenizer and the diff parser (web/highlight.js);
// both are pure functions, so they run in Node without a browser.
//
//   cd tests && node --test e2e/highlight.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenize, languageOf, parseDiff } from '../../web/highlight.js';

const classesOf = (tokens, text) => tokens.filter(([, t]) => t === text).map(([c]) => c);

test('language is chosen by extension', () => {
  assert.equal(languageOf('src/App.tsx'), 'js');
  assert.equal(languageOf('vite.config.ts'), 'js');
  assert.equal(languageOf('src/index.css'), 'css');
  assert.equal(languageOf('index.html'), 'html');
  assert.equal(languageOf('package.json'), 'json');
  assert.equal(languageOf('README.md'), '');
});

test('tokens cover the input exactly (nothing lost or duplicated)', () => {
  const samples = {
    'a.tsx': 'import { useState } from "react";\n// note\nexport default function App() {\n  const [n, setN] = useState<number>(0x1F);\n  return <h1 className="t">Hi {n}</h1>;\n}\n/* unterminated',
    'a.css': '@import "tailwindcss";\n.card:hover { color: #fff; margin: 0 4px; }\n/* c */',
    'a.html': '<!doctype html>\n<div id="root" class=\'x\'>text & more</div><!-- c -->',
    'a.json': '{"name": "x", "n": -1.5e3, "ok": true, "v": null}',
    'a.txt': 'plain `text`',
  };
  for (const [path, code] of Object.entries(samples)) {
    const tokens = tokenize(code, languageOf(path));
    assert.equal(tokens.map(([, t]) => t).join(''), code, path);
  }
});

test('TSX keywords, strings, comments, numbers, tags and types are classed', () => {
  const t = tokenize('// hi\nexport const x: Habit = { n: 42, s: "str" }; <h1 className="a">', 'js');
  assert.deepEqual(classesOf(t, '// hi'), ['com']);
  assert.deepEqual(classesOf(t, 'export'), ['kw']);
  assert.deepEqual(classesOf(t, 'const'), ['kw']);
  assert.deepEqual(classesOf(t, 'Habit'), ['type']);
  assert.deepEqual(classesOf(t, '42'), ['num']);
  assert.deepEqual(classesOf(t, '"str"'), ['str']);
  assert.deepEqual(classesOf(t, '<h1'), ['tag']);
  assert.deepEqual(classesOf(t, 'className'), ['attr']);
});

test('JSON keys differ from string values', () => {
  const t = tokenize('{"name": "apna", "private": true}', 'json');
  assert.deepEqual(classesOf(t, '"name"'), ['attr']);
  assert.deepEqual(classesOf(t, '"apna"'), ['str']);
  assert.deepEqual(classesOf(t, 'true'), ['kw']);
});

test('unified diffs parse into files, hunks and numbered lines', () => {
  const diff = [
    'diff --git a/src/App.tsx b/src/App.tsx',
    '--- a/src/App.tsx',
    '+++ b/src/App.tsx',
    '@@ -2,3 +2,3 @@',
    ' <main>',
    '-  <h1>Old</h1>',
    '+  <h1>New</h1>',
    ' </main>',
    'diff --git a/src/new.ts b/src/new.ts',
    '--- /dev/null',
    '+++ b/src/new.ts',
    '@@ -0,0 +1,2 @@',
    '+export const a = 1;',
    '+export const b = 2;',
    '\\ No newline at end of file',
  ].join('\n');
  const files = parseDiff(diff);
  assert.deepEqual(files.map((f) => [f.name, f.added, f.removed]), [['src/App.tsx', 1, 1], ['src/new.ts', 2, 0]]);
  const [app] = files;
  assert.deepEqual(app.lines.map((l) => [l.kind, l.oldNo, l.newNo]), [
    ['hunk', undefined, undefined],
    ['ctx', 2, 2],
    ['del', 3, undefined],
    ['add', undefined, 3],
    ['ctx', 4, 4],
  ]);
  assert.equal(files[1].lines.at(-1).kind, 'meta');
  assert.deepEqual(parseDiff(''), []);
});
