// Sign-in with an OpenID Connect provider (Cognito, or any issuer the
// deployment names): the authorization-code flow with PKCE, as a public
// client in the browser. No token is ever pasted: the provider's sign-in page
// sends the person back here with a one-time code, which is exchanged (with
// the verifier only this tab knows) for tokens. The ID token is sent to the
// API as the bearer token (its `aud` is this client, which is what the API
// Gateway JWT authorizer checks); the refresh token renews it.
//
// /api/config says whether to use this: `auth: "oidc"` with `oidc.issuer`,
// `oidc.client_id` and `oidc.scopes`.

import { getToken, setToken } from './api.js';

const PENDING_KEY = 'apna.oidc.pending'; // sessionStorage: state, verifier, nonce, return hash
const SESSION_KEY = 'apna.oidc.session'; // localStorage: refresh token and expiry
const RENEW_MARGIN_S = 60;

let discovered = null;

/** The provider's endpoints, from its discovery document. */
async function discovery(oidc) {
  if (discovered && discovered.issuer === oidc.issuer) return discovered.doc;
  const url = `${oidc.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!res.ok) throw new Error(`The sign-in provider did not answer (${res.status} from ${url}).`);
  const doc = await res.json();
  if (!doc.authorization_endpoint || !doc.token_endpoint) {
    throw new Error('The sign-in provider does not offer the authorization-code flow.');
  }
  discovered = { issuer: oidc.issuer, doc };
  return doc;
}

function base64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(digest);
}

/** Where the provider sends the person back: this page, without query or hash. */
function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

/** The claims of a JWT, unverified (the API verifies it; this only reads `exp`). */
function claimsOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

/** Sends the browser to the provider's sign-in page. */
export async function beginSignIn(oidc) {
  const doc = await discovery(oidc);
  const pending = {
    state: randomString(),
    verifier: randomString(48),
    nonce: randomString(),
    hash: location.hash || '#/',
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: oidc.client_id,
    redirect_uri: redirectUri(),
    scope: oidc.scopes || 'openid',
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await challengeOf(pending.verifier),
    code_challenge_method: 'S256',
  });
  location.assign(`${doc.authorization_endpoint}?${q}`);
}

async function tokenRequest(oidc, params) {
  const doc = await discovery(oidc);
  const res = await fetch(doc.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams({ client_id: oidc.client_id, ...params }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.id_token) {
    throw new Error(`Sign-in failed: ${body.error_description || body.error || res.status}.`);
  }
  return body;
}

function keep(tokens, refreshToken) {
  setToken(tokens.id_token);
  const exp = claimsOf(tokens.id_token).exp || Math.floor(Date.now() / 1000) + (tokens.expires_in || 3600);
  localStorage.setItem(
    SESSION_KEY,
    JSON.stringify({ refresh_token: tokens.refresh_token || refreshToken || null, exp }),
  );
}

/**
 * Finishes a sign-in when the provider has just sent the person back (a `code`
 * and `state` in the query): checks the state, exchanges the code with the
 * PKCE verifier, keeps the tokens and puts the address back as it was.
 * Returns true when it signed someone in.
 */
export async function completeSignIn(oidc) {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  const error = params.get('error');
  if (!code && !error) return false;
  const pending = readJson(sessionStorage, PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  const back = (pending && pending.hash) || '#/';
  history.replaceState(null, '', `${location.pathname}${back}`);
  if (error) throw new Error(`Sign-in was not completed: ${params.get('error_description') || error}.`);
  if (!pending || params.get('state') !== pending.state) {
    throw new Error('Sign-in was not completed: the answer did not match this tab. Please sign in again.');
  }
  const tokens = await tokenRequest(oidc, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  if (claimsOf(tokens.id_token).nonce !== pending.nonce) {
    throw new Error('Sign-in was not completed: the token was not issued for this sign-in.');
  }
  keep(tokens);
  return true;
}

/**
 * A usable ID token: the kept one while it is valid, else a renewed one when
 * a refresh token is kept, else '' (signed out).
 */
export async function currentToken(oidc) {
  const token = getToken();
  const session = readJson(localStorage, SESSION_KEY);
  const now = Math.floor(Date.now() / 1000);
  if (token && (!session || session.exp - RENEW_MARGIN_S > now)) return token;
  if (session && session.refresh_token) {
    try {
      const tokens = await tokenRequest(oidc, {
        grant_type: 'refresh_token',
        refresh_token: session.refresh_token,
      });
      keep(tokens, session.refresh_token);
      return tokens.id_token;
    } catch {
      // The refresh token expired or was revoked: sign in again.
    }
  }
  signOutLocally();
  return '';
}

/** Forgets the tokens in this browser. */
export function signOutLocally() {
  setToken('');
  localStorage.removeItem(SESSION_KEY);
}

/** Signs out here, then at the provider when it offers that. */
export async function signOut(oidc) {
  signOutLocally();
  let doc = null;
  try {
    doc = await discovery(oidc);
  } catch {
    // Signed out here; the provider's session ends on its own.
  }
  if (doc && doc.end_session_endpoint) {
    const q = new URLSearchParams({ client_id: oidc.client_id, post_logout_redirect_uri: redirectUri() });
    location.assign(`${doc.end_session_endpoint}?${q}`);
  }
}
