// A minimal OpenID Connect provider on loopback, for the sign-in e2e
// (oidc.test.mjs): discovery, an authorization endpoint that signs "the
// person" in at once and sends the browser back with a code, and a token
// endpoint that checks the PKCE verifier against the challenge (S256) and the
// redirect URI before answering, refreshes tokens, and counts what it did.
//
// Its ID tokens are signed HS256 with APNA_JWT_SECRET, so `apna serve` (which
// verifies HS256 tokens with that secret) accepts them as API tokens; on AWS
// the API Gateway JWT authorizer verifies the provider's tokens instead. They
// carry sub, iss, nonce, iat and exp, and no `aud` (apna serve's HS256
// validation does not expect one).
//
//   APNA_JWT_SECRET=… node tests/e2e/mock_oidc.mjs   # prints "mock-oidc listening on http://127.0.0.1:PORT"

import http from 'node:http';
import crypto from 'node:crypto';

const secret = process.env.APNA_JWT_SECRET;
if (!secret) {
  console.error('mock-oidc: APNA_JWT_SECRET is required');
  process.exit(2);
}
// Short-lived tokens make the UI's renewal observable.
const ttl = Number(process.env.MOCK_OIDC_TOKEN_TTL_S || 3600);
const codes = new Map(); // code -> { challenge, redirect, nonce, client }
const refreshes = new Map(); // refresh token -> sub
const stats = { authorize: 0, code_exchanges: 0, pkce_failures: 0, refreshes: 0 };

const b64url = (buf) => Buffer.from(buf).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

function idToken(issuer, sub, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { sub, iss: issuer, iat: now, exp: now + ttl, email: `${sub}@example.com` };
  if (nonce) claims.nonce = nonce;
  const body = b64url(JSON.stringify(claims));
  const sig = b64url(crypto.createHmac('sha256', secret).update(`${header}.${body}`).digest());
  return `${header}.${body}.${sig}`;
}

function json(res, status, body) {
  res.writeHead(status, {
    'content-type': 'application/json',
    'access-control-allow-origin': '*',
    'access-control-allow-headers': 'content-type',
    'cache-control': 'no-store',
  });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const issuer = `http://${req.headers.host}`;
  const url = new URL(req.url, issuer);
  if (req.method === 'OPTIONS') return json(res, 204, {});
  if (url.pathname === '/.well-known/openid-configuration') {
    return json(res, 200, {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
    });
  }
  if (url.pathname === '/stats') return json(res, 200, stats);
  if (url.pathname === '/authorize') {
    stats.authorize += 1;
    const q = url.searchParams;
    if (q.get('response_type') !== 'code' || q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
      return json(res, 400, { error: 'invalid_request', error_description: 'code flow with S256 PKCE only' });
    }
    const code = b64url(crypto.randomBytes(16));
    codes.set(code, {
      challenge: q.get('code_challenge'),
      redirect: q.get('redirect_uri'),
      nonce: q.get('nonce'),
      client: q.get('client_id'),
    });
    const back = new URL(q.get('redirect_uri'));
    back.searchParams.set('code', code);
    back.searchParams.set('state', q.get('state') || '');
    res.writeHead(302, { location: back.toString() });
    return res.end();
  }
  if (url.pathname === '/token' && req.method === 'POST') {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const form = new URLSearchParams(raw);
      if (form.get('grant_type') === 'refresh_token') {
        const sub = refreshes.get(form.get('refresh_token'));
        if (!sub) return json(res, 400, { error: 'invalid_grant' });
        stats.refreshes += 1;
        return json(res, 200, { id_token: idToken(issuer, sub), token_type: 'Bearer', expires_in: ttl });
      }
      const entry = codes.get(form.get('code'));
      codes.delete(form.get('code'));
      if (!entry) return json(res, 400, { error: 'invalid_grant', error_description: 'unknown or used code' });
      const challenge = b64url(crypto.createHash('sha256').update(form.get('code_verifier') || '').digest());
      if (challenge !== entry.challenge || form.get('redirect_uri') !== entry.redirect || form.get('client_id') !== entry.client) {
        stats.pkce_failures += 1;
        return json(res, 400, { error: 'invalid_grant', error_description: 'PKCE verifier, redirect URI or client does not match' });
      }
      stats.code_exchanges += 1;
      const refresh = b64url(crypto.randomBytes(16));
      refreshes.set(refresh, 'oidc-person');
      return json(res, 200, {
        id_token: idToken(issuer, 'oidc-person', entry.nonce),
        access_token: 'opaque',
        refresh_token: refresh,
        token_type: 'Bearer',
        expires_in: ttl,
      });
    });
    return undefined;
  }
  return json(res, 404, { error: 'not_found' });
});

server.listen(Number(process.env.MOCK_OIDC_PORT || 0), '127.0.0.1', () => {
  console.log(`mock-oidc listening on http://127.0.0.1:${server.address().port}`);
});
