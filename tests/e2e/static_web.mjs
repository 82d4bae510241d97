// Serves web/ the way S3/CloudFront would — static files on their own origin —
// with <meta name="apna-api-base"> pointing at a separate API, to check the
// UI's cross-origin mode (CORS, absolute API URLs, EventSource across origins).
//
//   node tests/e2e/static_web.mjs PORT API_BASE     e.g. 4913 http://localhost:4912

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** Starts the server; resolves to { url, close() }. */
export function serveWeb(port, apiBase) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const file = path.join(web, p === '/' ? 'index.html' : p.slice(1));
    if (!file.startsWith(web + path.sep) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    let body = fs.readFileSync(file);
    if (file.endsWith('index.html')) {
      const attr = apiBase.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);
      body = body.toString().replace(/<meta name="apna-api-base" content="[^"]*">/, `<meta name="apna-api-base" content="${attr}">`);
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    res.end(body);
  });
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({ url: `http://localhost:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) }),
    ),
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [port, api] = process.argv.slice(2);
  if (!api) {
    console.error('usage: node static_web.mjs PORT API_BASE');
    process.exit(2);
  }
  const s = await serveWeb(Number(port), api);
  console.log(s.url);
}
