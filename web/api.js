// The HTTP client for Apna's API (see the contract in the repository's API notes):
// base URL, bearer token, readable errors, and run-event streaming with a
// polling fallback.

const TOKEN_KEY = 'apna.token';

/** The API base URL: window.APNA_API_BASE, else <meta name="apna-api-base">, else same origin. */
export function apiBase() {
  const fromWindow = typeof window.APNA_API_BASE === 'string' ? window.APNA_API_BASE : '';
  const meta = document.querySelector('meta[name="apna-api-base"]');
  const base = fromWindow || (meta && meta.content) || '';
  return base.replace(/\/+$/, '');
}

/** The bearer token kept in localStorage (empty when none). */
export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

/** Stores (or clears, when empty) the bearer token. */
export function setToken(token) {
  const t = token.trim();
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An API failure carrying the server's error code and human-readable message. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.requestId = requestId || null;
  }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** Builds an absolute API URL from a path such as `/api/projects`. */
export function apiUrl(path) {
  return apiBase() + path;
}

async function errorFrom(res) {
  const requestId = res.headers.get('x-request-id');
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText || 'error'}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy page, say): keep the status line as the message.
  }
  return new ApiError(res.status, code, message, requestId);
}

/** Sends a request and returns the parsed JSON body; throws ApiError on failure. */
export async function request(method, path, body, { signal } = {}) {
  let res;
  try {
    // State changes carry a header a cross-site form cannot send (the server
    // refuses body-less POSTs without it: CSRF).
    const extra = method === 'GET' ? {} : { 'X-Apna-Request': '1' };
    if (body !== undefined) extra['Content-Type'] = 'application/json';
    res = await fetch(apiUrl(path), {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `Cannot reach the Apna server (${e.message || e}).`);
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  return res.json();
}

const enc = encodeURIComponent;

const screenshotUrls = new Map();

/**
 * An object URL for a version's screenshot (PNG). Fetched with the bearer
 * token, so it works where an <img src> to the API could not authenticate;
 * cached for the page's life (a screenshot's name is its content hash).
 */
export function screenshotUrl(projectId, sha256) {
  const key = `${projectId}/${sha256}`;
  if (!screenshotUrls.has(key)) {
    const p = fetch(apiUrl(`/api/projects/${enc(projectId)}/screenshots/${enc(sha256)}`), { headers: headers({ Accept: 'image/png' }) })
      .then(async (res) => {
        if (!res.ok) throw await errorFrom(res);
        return URL.createObjectURL(await res.blob());
      })
      .catch((e) => {
        screenshotUrls.delete(key);
        throw e;
      });
    screenshotUrls.set(key, p);
  }
  return screenshotUrls.get(key);
}

/** The typed endpoints the UI uses. */
export const api = {
  config: () => request('GET', '/api/config'),
  listProjects: (limit = 50, offset = 0) => request('GET', `/api/projects?limit=${limit}&offset=${offset}`),
  templates: () => request('GET', '/api/templates'),
  createProject: (prompt, template, images = []) =>
    request('POST', '/api/projects', {
      prompt,
      ...(template ? { template } : {}),
      ...(images.length ? { images } : {}),
    }),
  project: (id) => request('GET', `/api/projects/${enc(id)}`),
  deleteProject: (id) => request('DELETE', `/api/projects/${enc(id)}`),
  chat: (id, message, { images = [], selection = null } = {}) =>
    request('POST', `/api/projects/${enc(id)}/chat`, {
      message,
      ...(images.length ? { images } : {}),
      ...(selection ? { selection } : {}),
    }),
  textEdit: (id, body) => request('POST', `/api/projects/${enc(id)}/text-edit`, body),
  messages: (id, limit = 200, offset = 0) =>
    request('GET', `/api/projects/${enc(id)}/messages?limit=${limit}&offset=${offset}`),
  runs: (id) => request('GET', `/api/projects/${enc(id)}/runs`),
  files: (id) => request('GET', `/api/projects/${enc(id)}/files`),
  file: (id, path) =>
    request('GET', `/api/projects/${enc(id)}/files/${path.split('/').map(enc).join('/')}`),
  versions: (id) => request('GET', `/api/projects/${enc(id)}/versions`),
  versionDiff: (id, n) => request('GET', `/api/projects/${enc(id)}/versions/${n}/diff`),
  restore: (id, n) => request('POST', `/api/projects/${enc(id)}/versions/${n}/restore`),
  run: (runId) => request('GET', `/api/runs/${enc(runId)}`),
  cancel: (runId) => request('POST', `/api/runs/${enc(runId)}/cancel`),
  pollEvents: (runId, after, wait, signal) =>
    request('GET', `/api/runs/${enc(runId)}/events?after=${after}&wait=${wait}`, undefined, { signal }),
  downloadUrl: (id) => apiUrl(`/api/projects/${enc(id)}/download`),
  site: (id) => request('GET', `/api/projects/${enc(id)}/publish`),
  publish: (id, body) => request('POST', `/api/projects/${enc(id)}/publish`, body),
  unpublish: (id) => request('DELETE', `/api/projects/${enc(id)}/publish`),
  bundleUrl: (id) => apiUrl(`/api/projects/${enc(id)}/git`),
  previewAccess: (id) => request('GET', `/api/projects/${enc(id)}/preview-access`),
  share: (id, isPublic) => request('PUT', `/api/projects/${enc(id)}/share`, { public: isPublic }),
};

const imageUrls = new Map();

/** An object URL for one of a project's message images (fetched with the token, cached). */
export function imageUrl(projectId, imageId) {
  const key = `${projectId}/${imageId}`;
  if (!imageUrls.has(key)) {
    imageUrls.set(
      key,
      fetch(apiUrl(`/api/projects/${enc(projectId)}/images/${enc(imageId)}`), { headers: headers({ Accept: 'image/*' }) }).then(async (res) => {
        if (!res.ok) throw await errorFrom(res);
        return URL.createObjectURL(await res.blob());
      }),
    );
  }
  return imageUrls.get(key);
}

/**
 * Downloads a URL with the bearer token (a plain link cannot send headers).
 * A large archive comes back as a JSON link to storage (no token needed),
 * which the browser then downloads directly.
 */
export async function downloadWithToken(url, filename) {
  const res = await fetch(url, { headers: headers({ Accept: 'application/zip, application/json' }) });
  if (!res.ok) throw await errorFrom(res);
  if ((res.headers.get('content-type') || '').startsWith('application/json')) {
    const link = await res.json();
    if (link && typeof link.url === 'string') {
      location.assign(link.url);
      return;
    }
  }
  const blob = await res.blob();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

const EVENT_KINDS = ['status', 'text', 'tool', 'diagnostics', 'usage', 'done'];

/**
 * Follows a run's events from seq `after`: Server-Sent Events first (EventSource,
 * or a fetch stream when a bearer token must be sent), long-polling `?after=N`
 * if the stream fails. Calls onEvent(RunEvent) once per seq, in order, and
 * onEnd() after "done". Returns a function that stops following.
 */
export function followRun(runId, { after = 0, onEvent, onEnd, onError }) {
  let last = after;
  let stopped = false;
  let finished = false;
  let source = null;
  const aborter = new AbortController();

  const deliver = (ev) => {
    if (stopped || finished || !ev || typeof ev.seq !== 'number' || ev.seq <= last) return;
    last = ev.seq;
    onEvent(ev);
    if (ev.kind === 'done') finish();
  };
  const finish = () => {
    if (finished) return;
    finished = true;
    closeStream();
    if (!stopped && onEnd) onEnd();
  };
  const closeStream = () => {
    if (source) {
      source.close();
      source = null;
    }
  };

  const poll = async () => {
    let failures = 0;
    while (!stopped && !finished) {
      try {
        const res = await api.pollEvents(runId, last, 20, aborter.signal);
        failures = 0;
        const batch = res.events || [];
        for (const ev of batch) deliver(ev);
        // `done` with a non-empty batch may mean more events are still queued
        // (batches are capped); stop only once a poll comes back empty.
        if (res.done && !batch.length) finish();
      } catch (e) {
        if (stopped || (e && e.name === 'AbortError')) return;
        failures += 1;
        if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
          // 401/404: retrying cannot help; report and stop.
          if (onError) onError(e);
          return;
        }
        if (failures === 3 && onError) onError(e);
        await new Promise((r) => setTimeout(r, Math.min(1000 * failures, 5000)));
      }
    }
  };

  const parseData = (raw) => {
    try {
      return JSON.parse(raw);
    } catch {
      return null;
    }
  };

  // The stream replays from the start; seqs at or below `after` are dropped above.
  const url = apiUrl(`/api/runs/${enc(runId)}/events`);
  if (!getToken() && typeof EventSource === 'function') {
    source = new EventSource(url);
    const handler = (msg) => deliver(parseData(msg.data));
    for (const kind of EVENT_KINDS) source.addEventListener(kind, handler);
    source.onmessage = handler;
    source.onerror = () => {
      // A dropped stream (or one the browser cannot parse) continues by polling.
      closeStream();
      if (!stopped && !finished) poll();
    };
  } else {
    streamWithFetch(url, after, deliver, aborter.signal).then(
      () => {
        if (!stopped && !finished) poll();
      },
      (e) => {
        if (!stopped && !(e && e.name === 'AbortError') && !finished) poll();
      },
    );
  }

  return () => {
    stopped = true;
    closeStream();
    aborter.abort();
  };
}

// Reads an SSE response with fetch so the Authorization header can be sent.
async function streamWithFetch(url, after, deliver, signal) {
  const extra = { Accept: 'text/event-stream' };
  if (after > 0) extra['Last-Event-ID'] = String(after);
  const res = await fetch(url, { headers: headers(extra), signal });
  if (!res.ok || !res.body) throw await errorFrom(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data) {
        try {
          deliver(JSON.parse(data));
        } catch {
          // A malformed event is skipped; the seq check keeps order.
        }
      }
    }
  }
}
