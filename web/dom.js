// Tiny DOM helpers shared by the views: an element builder, toasts and time
// formatting. Text always goes in through textContent, so API data can never
// become markup.

/**
 * Creates an element: h('button', { class: 'btn', onclick }, 'Label', child).
 * Props starting with "on" become listeners; `null`/`false` props and children
 * are skipped; other props become attributes (booleans as empty attributes).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value') {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Shows a message in the toast area (errors stay until dismissed). */
export function toast(message, kind = 'error') {
  const area = document.getElementById('toasts');
  if (!area) return;
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss message' }, '×');
  const item = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('span', {}, message), close);
  close.addEventListener('click', () => item.remove());
  area.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 4000);
  // Keep the pile short.
  while (area.children.length > 4) area.firstElementChild.remove();
}

/** Shows an API (or any) error as readable text; the one place errors surface. */
export function showError(err, context) {
  if (err && err.name === 'AbortError') return;
  const msg = (err && err.message) || String(err);
  toast(context ? `${context}: ${msg}` : msg, 'error');
}

/** "just now", "5 min ago", "3 h ago", "2 days ago", or a date. */
export function relativeTime(iso) {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 86400 * 7) {
    const d = Math.round(s / 86400);
    return `${d} day${d === 1 ? '' : 's'} ago`;
  }
  return new Date(t).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** 1234 → "1.2k". */
export function compactNumber(n) {
  const v = Number(n) || 0;
  if (v < 1000) return String(v);
  if (v < 1_000_000) return `${(v / 1000).toFixed(v < 10_000 ? 1 : 0)}k`;
  return `${(v / 1_000_000).toFixed(1)}M`;
}

/** A cost in dollars with sensible precision. */
export function formatCost(usd) {
  const v = Number(usd) || 0;
  if (v === 0) return '$0.00';
  if (v < 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toFixed(2)}`;
}

/** The total of a usage object's token counts. */
export function totalTokens(usage) {
  if (!usage) return 0;
  return (
    (usage.input_tokens || 0) +
    (usage.output_tokens || 0) +
    (usage.cache_read_tokens || 0) +
    (usage.cache_write_tokens || 0)
  );
}

/** A status badge for a project or run status. */
export function badge(status) {
  return h('span', { class: `badge badge-${status}`, title: `Status: ${status}` }, status);
}

/**
 * "asleep" for a project whose dev server was stopped after its preview sat
 * unused (light sleep: files kept, opening the preview starts it again);
 * null otherwise. `p` is a project as the API returns it.
 */
export function sleepBadge(p) {
  const asleep = (p.status === 'ready' || p.status === 'failed') && p.sandbox_state === 'stopped';
  if (!asleep) return null;
  return h(
    'span',
    { class: 'badge badge-asleep', title: 'Nobody was viewing the preview, so its dev server was stopped to save memory. Its files are kept; opening the preview starts it again.' },
    'asleep',
  );
}

/**
 * Renders the small Markdown subset models use in chat (paragraphs, `-`/`*`/`1.`
 * lists, fenced code, `code`, **bold**) as DOM nodes; anything else stays text.
 */
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let para = [];
  let list = null;
  const flushPara = () => {
    if (para.length) frag.append(h('p', {}, inline(para.join('\n'))));
    para = [];
  };
  const flushList = () => {
    if (list) frag.append(list);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*```(\w*)\s*$/);
    if (fence) {
      flushPara();
      flushList();
      const body = [];
      for (i += 1; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
      frag.append(h('pre', { class: 'md-code' }, h('code', {}, body.join('\n'))));
      continue;
    }
    const item = line.match(/^\s*(?:[-*•]|\d+[.)])\s+(.*)$/);
    if (item) {
      flushPara();
      const ordered = /^\s*\d/.test(line);
      if (!list || (list.tagName === 'OL') !== ordered) {
        flushList();
        list = h(ordered ? 'ol' : 'ul', {});
      }
      list.append(h('li', {}, inline(item[1])));
      continue;
    }
    if (!line.trim()) {
      flushPara();
      flushList();
      continue;
    }
    flushList();
    const heading = line.match(/^#{1,6}\s+(.*)$/);
    if (heading) {
      flushPara();
      frag.append(h('p', { class: 'md-heading' }, inline(heading[1])));
      continue;
    }
    para.push(line);
  }
  flushPara();
  flushList();
  return frag;
}

function inline(text) {
  const out = [];
  const re = /`([^`\n]+)`|\*\*([^*\n]+)\*\*/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(m[1] !== undefined ? h('code', {}, m[1]) : h('strong', {}, m[2]));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
