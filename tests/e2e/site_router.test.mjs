// The CloudFront Function that serves published sites (infra/site-router.js),
// run with node against the cases `apna serve` is also checked against
// (tests/fixtures/site_routes.json), plus the request rewrite itself.
//
//   node --test tests/e2e/site_router.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = fs.readFileSync(path.join(root, 'infra/site-router.js'), 'utf8');
const cases = JSON.parse(fs.readFileSync(path.join(root, 'tests/fixtures/site_routes.json'), 'utf8'));

/** The function as CloudFront runs it, with the template's substitutions. */
function load(values) {
  let code = source;
  for (const [k, v] of Object.entries(values)) code = code.split('${' + k + '}').join(v);
  assert.ok(!code.includes('${'), 'every placeholder is substituted');
  return new Function(`${code}\nreturn { handler, route, slugForHost };`)();
}

const fn = load({ AppsDomain: 'apps.example.com', SiteSlug: '', SiteHosts: 'shop.example.com=my-shop' });

test('paths map to the same files as in apna serve', () => {
  for (const c of cases.routes) assert.equal(fn.route(c.uri), c.file, c.uri);
});

test('hosts map to the same slugs as in apna serve', () => {
  for (const c of cases.hosts) assert.equal(fn.slugForHost(c.host), c.slug, c.host);
});

const request = (host, uri) => ({
  request: { uri, method: 'GET', querystring: { v: { value: '1' } }, headers: host ? { host: { value: host } } : {} },
});

test('the request is rewritten to the site object', () => {
  const out = fn.handler(request('my-app.apps.example.com', '/users/42'));
  assert.equal(out.uri, '/sites/my-app/index.html');
  assert.deepEqual(out.querystring, {});
  assert.equal(fn.handler(request('my-app.apps.example.com', '/_apna/v1-ab/assets/a.js')).uri,
    '/sites/my-app/_apna/v1-ab/assets/a.js');
  assert.equal(fn.handler(request('my-app.apps.example.com', '/my%20file.txt')).uri, '/sites/my-app/my%20file.txt');
  assert.equal(fn.handler(request('shop.example.com', '/')).uri, '/sites/my-shop/index.html');
});

test('bad hosts and paths never reach the bucket', () => {
  assert.equal(fn.handler(request('a.b.apps.example.com', '/')).statusCode, 400);
  assert.equal(fn.handler(request('', '/')).statusCode, 400);
  assert.equal(fn.handler(request('my-app.apps.example.com', '/../projects/p/latest')).statusCode, 404);
  assert.equal(fn.handler(request('my-app.apps.example.com', '/%2e%2e/x.json')).statusCode, 404);
});

test('a custom-domain distribution serves its one slug whatever the host', () => {
  const custom = load({ AppsDomain: 'apps.example.com', SiteSlug: 'my-shop', SiteHosts: '' });
  assert.equal(custom.handler(request('www.shop.example', '/cart')).uri, '/sites/my-shop/index.html');
});
