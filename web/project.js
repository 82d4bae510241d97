// The project view: chat with streamed run progress, live preview, file tree
// with a code viewer, and versions with diffs and restore. On wide screens the
// chat sits beside a tabbed workspace; on narrow ones every pane is a tab.

import { api, followRun, getToken, downloadWithToken, screenshotUrl, imageUrl } from './api.js';
import { attachmentTray } from './attachments.js';
import { selectBridge } from './select.js';
import { h, mount, toast, showError, relativeTime, compactNumber, formatCost, totalTokens, badge, sleepBadge, renderMarkdown } from './dom.js';
import { renderCode, renderDiff } from './highlight.js';

const PHASES = {
  sandbox: 'Setting up the sandbox…',
  agent: 'Writing code…',
  verify: 'Checking the build…',
  smoke: 'Opening the app in a browser…',
  finalize: 'Saving a version…',
};

const TABS = [
  ['chat', 'Chat'],
  ['preview', 'Preview'],
  ['files', 'Files'],
  ['versions', 'Versions'],
];

/** Renders project `id` into `el`; returns a cleanup function. */
export function projectView(el, id, { onUnauthorized }) {
  const s = {
    project: null,
    runs: new Map(),
    stopFollow: null,
    live: null, // { runId, box, bubble, usage, cost, phase, status }
    timers: new Set(),
    disposed: false,
    tab: 'chat',
    ws: 'preview',
    previewSrc: '',
    // Multi-user mode: previews are private unless shared (set from preview-access).
    multiUser: false,
    filesLoaded: false,
    versionsLoaded: false,
    selectedFile: null,
    selectedVersion: null,
    confirmRestore: null,
    site: null,
    publishOpen: false,
    // The element picked in the preview with Select: { source, tag, classes, text }.
    selection: null,
  };
  const later = (fn, ms) => {
    const t = setTimeout(() => {
      s.timers.delete(t);
      if (!s.disposed) fn();
    }, ms);
    s.timers.add(t);
  };
  const fail = (context) => (e) => {
    if (s.disposed) return;
    showError(e, context);
    onUnauthorized(e);
  };

  // ------------------------------------------------------------ skeleton
  const title = h('h1', { class: 'project-title' }, 'Loading…');
  const statusSlot = h('span', { class: 'status-slot' });
  const download = h(
    'a',
    { class: 'btn btn-small btn-ghost', href: api.downloadUrl(id), download: `apna-${id}.zip`, 'aria-label': 'Download the source as a zip file' },
    '⤓ ',
    h('span', { class: 'label-long' }, 'Download '),
    'zip',
  );
  download.addEventListener('click', (e) => {
    if (!getToken()) return;
    e.preventDefault();
    downloadWithToken(api.downloadUrl(id), `apna-${id}.zip`).catch(fail('Download failed'));
  });

  // Publish: a button in the header opens a panel with the site's address,
  // the live version and the publish in progress.
  const publishBtn = h(
    'button',
    { class: 'btn btn-small btn-primary publish-toggle', type: 'button', 'aria-label': 'Publish this app', 'aria-expanded': 'false', 'aria-controls': 'publish-panel', onclick: () => togglePublish() },
    'Publish',
  );
  const publishPanel = h('section', { class: 'publish-panel', id: 'publish-panel', hidden: true, 'aria-label': 'Published site' });
  const bundle = h(
    'a',
    { class: 'btn btn-small btn-ghost label-long-only', href: api.bundleUrl(id), download: `apna-${id}.bundle`, 'aria-label': 'Download the history as a Git bundle' },
    '⤓ git',
  );
  bundle.addEventListener('click', (e) => {
    if (!getToken()) return;
    e.preventDefault();
    downloadWithToken(api.bundleUrl(id), `apna-${id}.bundle`).catch(fail('Download failed'));
  });

  const tabButtons = TABS.map(([key, label]) =>
    h(
      'button',
      {
        class: `tab tab-${key}`,
        type: 'button',
        role: 'tab',
        id: `tab-${key}`,
        'aria-controls': `pane-${key}`,
        dataset: { tab: key },
        onclick: () => selectTab(key),
      },
      label,
    ),
  );
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Project panes' }, tabButtons);
  tablist.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const shown = tabButtons.filter((b) => b.offsetParent !== null);
    const i = shown.indexOf(document.activeElement);
    if (i < 0) return;
    const next = shown[(i + (e.key === 'ArrowRight' ? 1 : shown.length - 1)) % shown.length];
    next.focus();
    selectTab(next.dataset.tab);
  });

  // Chat pane
  const messages = h('div', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const runbar = h('div', { class: 'runbar', 'aria-live': 'polite' });
  const input = h('textarea', {
    id: 'chat-input',
    rows: '2',
    placeholder: 'Ask for a change…',
    'aria-describedby': 'chat-hint',
  });
  const sendBtn = h('button', { class: 'btn btn-primary', type: 'submit', 'aria-label': 'Send message' }, 'Send');
  const chipSlot = h('div', { class: 'selection-slot' });
  const composer = h(
    'form',
    { class: 'composer', 'aria-label': 'Send a message' },
    chipSlot,
    h('label', { for: 'chat-input', class: 'sr-only' }, 'Message to Apna'),
    input,
  );
  const attach = attachmentTray(input, { label: 'Attach images to the message' });
  composer.append(
    attach.tray,
    h('div', { class: 'composer-actions' }, attach.button, h('span', { id: 'chat-hint', class: 'hint' }, 'Enter to send · Shift+Enter for a new line'), sendBtn),
  );
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });

  // Preview pane
  // No sandbox attribute: the preview runs on its own origin ({id}.host), which
  // already isolates it, and generated apps need storage, forms and dialogs.
  const iframe = h('iframe', {
    class: 'preview-frame',
    title: 'App preview',
    allow: 'clipboard-write',
  });
  const previewUrl = h('span', { class: 'preview-url' }, '');
  const openLink = h('a', { class: 'btn btn-small btn-ghost', target: '_blank', rel: 'noopener', 'aria-label': 'Open the preview in a new tab' }, '↗ Open');
  const overlay = h('div', { class: 'preview-overlay', hidden: true, role: 'status' });
  const reloadBtn = h('button', { class: 'btn btn-small btn-ghost', type: 'button', 'aria-label': 'Reload the preview', onclick: () => reloadPreview() }, '↻ Reload');
  const shareBtn = h('button', { class: 'btn btn-small btn-ghost share-btn', type: 'button', hidden: true, 'aria-pressed': 'false', onclick: () => toggleShare() }, 'Share');
  const selectBtn = h(
    'button',
    { class: 'btn btn-small btn-ghost select-btn', type: 'button', 'aria-pressed': 'false', title: 'Click an element in the preview to talk about it', onclick: () => bridge.toggle() },
    '◎ Select',
  );
  const bridge = selectBridge(iframe, {
    onModeChange: (on) => {
      selectBtn.setAttribute('aria-pressed', String(on));
      selectBtn.classList.toggle('active', on);
    },
    onSelected: (sel) => {
      s.selection = sel;
      renderChip();
      if (!isWide()) selectTab('chat');
      input.focus();
    },
  });
  openLink.addEventListener('click', (e) => {
    // A private preview opens through a fresh sign-in link (the token in it lives minutes).
    if (!s.multiUser || (s.project && s.project.preview_public)) return;
    e.preventDefault();
    api.previewAccess(id).then((a) => window.open(a.url, '_blank', 'noopener'), fail('Could not open the preview'));
  });

  // Files pane
  const tree = h('nav', { class: 'file-tree', 'aria-label': 'Project files' });
  const viewer = h('div', { class: 'code-viewer', role: 'region', 'aria-label': 'File contents', tabindex: '0' }, h('p', { class: 'muted empty' }, 'Select a file to view it.'));

  // Versions pane
  const versionList = h('ol', { class: 'version-list', 'aria-label': 'Versions' });
  const diffView = h('div', { class: 'diff-view', role: 'region', 'aria-label': 'Version changes', tabindex: '0' }, h('p', { class: 'muted empty' }, 'Select a version to see what changed.'));

  const root = h(
    'div',
    { class: 'project', dataset: { tab: s.tab, ws: s.ws } },
    h(
      'header',
      { class: 'project-head' },
      h('a', { href: '#/', class: 'back', 'aria-label': 'Back to projects' }, '←'),
      h('div', { class: 'project-head-main' }, title, statusSlot),
      h('div', { class: 'project-actions' }, publishBtn, download, bundle),
    ),
    publishPanel,
    tablist,
    h(
      'section',
      { class: 'pane pane-chat', id: 'pane-chat', role: 'tabpanel', 'aria-labelledby': 'tab-chat' },
      messages,
      runbar,
      composer,
    ),
    h(
      'section',
      { class: 'pane pane-preview', id: 'pane-preview', role: 'tabpanel', 'aria-labelledby': 'tab-preview' },
      h('div', { class: 'toolbar' }, previewUrl, h('div', { class: 'toolbar-actions' }, selectBtn, shareBtn, reloadBtn, openLink)),
      h('div', { class: 'frame-wrap' }, iframe, overlay),
    ),
    h(
      'section',
      { class: 'pane pane-files', id: 'pane-files', role: 'tabpanel', 'aria-labelledby': 'tab-files' },
      h(
        'div',
        { class: 'toolbar' },
        h('span', { class: 'toolbar-title' }, 'Files'),
        h('div', { class: 'toolbar-actions' }, h('button', { class: 'btn btn-small btn-ghost', type: 'button', 'aria-label': 'Refresh the file list', onclick: () => loadFiles() }, '↻ Refresh')),
      ),
      h('div', { class: 'files-body' }, tree, viewer),
    ),
    h(
      'section',
      { class: 'pane pane-versions', id: 'pane-versions', role: 'tabpanel', 'aria-labelledby': 'tab-versions' },
      h('div', { class: 'toolbar' }, h('span', { class: 'toolbar-title' }, 'Versions'), h('span', { class: 'muted small' }, 'Every finished change is saved. Restoring creates a new version.')),
      h('div', { class: 'versions-body' }, versionList, diffView),
    ),
  );
  mount(el, root);

  function selectTab(key) {
    s.tab = key;
    if (key !== 'chat') s.ws = key;
    root.dataset.tab = s.tab;
    root.dataset.ws = s.ws;
    for (const b of tabButtons) {
      const selected = b.dataset.tab === s.tab;
      b.setAttribute('aria-selected', String(selected));
      b.tabIndex = selected ? 0 : -1;
    }
    if (key === 'files' && !s.filesLoaded) loadFiles();
    if (key === 'versions' && !s.versionsLoaded) loadVersions();
  }
  const isWide = () => window.matchMedia('(min-width: 900px)').matches;
  // Wide screens start on the preview (the chat is always visible there).
  selectTab(isWide() ? 'preview' : 'chat');

  // ------------------------------------------------------------ project + status
  function renderHead() {
    const p = s.project;
    if (!p) return;
    title.textContent = p.name || 'Untitled project';
    document.title = `${p.name || 'Project'} — Apna`;
    mount(statusSlot, badge(p.status), sleepBadge(p), p.last_active ? h('span', { class: 'muted small' }, `active ${relativeTime(p.last_active)}`) : null);
    if (p.status === 'failed' && p.error && !s.live) {
      statusSlot.append(h('span', { class: 'error-text small', title: p.error }, p.error));
    }
    renderShare();
  }

  async function loadProject() {
    try {
      const p = await api.project(id);
      if (s.disposed) return;
      const before = s.project ? s.project.status : null;
      s.project = p;
      renderHead();
      syncPreview(before);
      return p;
    } catch (e) {
      if (s.disposed) return;
      if (e.status === 404) {
        mount(el, h('div', { class: 'not-found' }, h('h1', {}, 'Project not found'), h('p', { class: 'muted' }, e.message), h('a', { href: '#/', class: 'btn' }, 'Back to projects')));
        s.disposed = true;
        return;
      }
      fail('Could not load the project')(e);
    }
  }

  // ------------------------------------------------------------ preview
  // Whether the sandbox (and so the dev server) is up. The preview proxy answers
  // 503 "starting…" before that, which browsers log as a console error, so the
  // frame is only loaded once a run is past its sandbox phase or the project
  // is ready.
  function sandboxUp() {
    const p = s.project;
    if (!p) return false;
    if (p.status === 'ready' || p.status === 'failed') return true;
    if (p.status !== 'creating' && p.status !== 'building') return false;
    const livePast = s.live && s.live.phase && s.live.phase !== 'sandbox';
    return Boolean(livePast || (p.status === 'building' && p.latest_version != null));
  }

  function showOverlay(...children) {
    mount(overlay, ...children);
    overlay.hidden = false;
  }

  function syncPreview(before) {
    const p = s.project;
    if (!p) return;
    if (p.preview_url) {
      previewUrl.textContent = p.preview_url;
      openLink.href = p.preview_url;
    }
    if (p.status === 'hibernated') {
      showOverlay(h('div', { class: 'spinner', 'aria-hidden': 'true' }), h('p', {}, 'Waking up your project…'), h('p', { class: 'muted small' }, 'Restoring it from its last snapshot. This takes a few seconds.'));
      later(loadProject, 1500);
      return;
    }
    if (p.status === 'deleted') {
      showOverlay(h('p', {}, 'This project was deleted.'));
      return;
    }
    if (!sandboxUp()) {
      showOverlay(h('div', { class: 'spinner', 'aria-hidden': 'true' }), h('p', {}, 'Setting up your sandbox…'), h('p', { class: 'muted small' }, 'The preview appears as soon as the dev server is running.'));
      // Without a live stream nothing else would notice the change.
      if (!s.live) later(loadProject, 2000);
      return;
    }
    overlay.hidden = true;
    if (p.preview_url && (!s.previewSrc || before === 'hibernated')) loadPreview();
    // Opening the preview wakes a sleeping dev server: show it awake once it is.
    if (p.sandbox_state === 'stopped') later(loadProject, 3000);
  }

  // data-state (loading|loaded) lets tests wait for the frame to settle.
  // In multi-user mode a private preview is opened through its sign-in link
  // (a short-lived token the preview host swaps for a cookie), fetched anew
  // for every load.
  async function loadPreview() {
    let url = s.project && s.project.preview_url;
    s.previewSrc = url || s.previewSrc;
    s.previewLoadedAt = Date.now();
    iframe.dataset.state = 'loading';
    try {
      const access = await api.previewAccess(id);
      url = access.url;
      s.multiUser = Boolean(access.token) || access.public;
      renderShare();
    } catch (e) {
      if (s.disposed) return;
      if (e.status === 401) return fail('Could not open the preview')(e);
      // A server without the preview-access endpoint: the plain URL works there.
    }
    if (s.disposed || !url) return;
    // Assigning src (even the same URL) reloads a cross-origin frame.
    bridge.setUrl(url);
    iframe.src = url;
  }

  function renderShare() {
    const p = s.project;
    shareBtn.hidden = !s.multiUser || !p;
    if (!p) return;
    const shared = Boolean(p.preview_public);
    shareBtn.textContent = shared ? '✓ Shared' : 'Share';
    shareBtn.setAttribute('aria-pressed', String(shared));
    shareBtn.title = shared
      ? 'Anyone with the preview link can open it. Click to make it private.'
      : 'Only you can open the preview. Click to let anyone with the link open it.';
    shareBtn.setAttribute('aria-label', shareBtn.title);
  }

  async function toggleShare() {
    if (!s.project) return;
    const next = !s.project.preview_public;
    shareBtn.disabled = true;
    try {
      s.project = await api.share(id, next);
      renderShare();
      toast(next ? `Anyone with the link can open the preview: ${s.project.preview_url}` : 'The preview is private again.', 'info');
    } catch (e) {
      fail('Could not change sharing')(e);
    } finally {
      shareBtn.disabled = false;
    }
  }
  iframe.addEventListener('load', () => {
    if (iframe.dataset.state === 'loading') iframe.dataset.state = 'loaded';
  });

  function reloadPreview() {
    if (s.previewSrc) loadPreview();
  }

  // ------------------------------------------------------------ chat history
  function clearEmptyState() {
    const empty = messages.querySelector('.chat-empty');
    if (empty) empty.remove();
  }

  function scrollChat() {
    const nearBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 160;
    if (nearBottom) messages.scrollTop = messages.scrollHeight;
  }

  function toolLine(summary, isError) {
    return h(
      'div',
      { class: `tool-line${isError ? ' tool-error' : ''}` },
      h('span', { class: 'tool-icon', 'aria-hidden': 'true' }, isError ? '!' : '›'),
      h('span', { class: 'tool-text' }, summary),
    );
  }

  // A version's screenshot as a small picture that opens the full one. The
  // image loads after the element is placed (it needs the bearer token).
  // `link: false` inside a button (a link may not nest there).
  function shot(v, viewport = 'desktop', cls = 'shot-thumb', { link = true } = {}) {
    const all = (v && v.screenshots) || [];
    const pick = all.find((x) => x.viewport === viewport);
    if (!pick) return null;
    const img = h('img', { class: cls, alt: `Screenshot of version ${v.number} (${pick.viewport}, ${pick.width}×${pick.height})`, width: pick.width, height: pick.height, dataset: { sha256: pick.sha256 } });
    const outer = link ? h('a', { class: 'shot-link', target: '_blank', rel: 'noopener', title: `Open the ${pick.viewport} screenshot of v${v.number}` }, img) : img;
    screenshotUrl(id, pick.sha256)
      .then((url) => {
        img.src = url;
        if (link) outer.href = url;
      })
      .catch(() => outer.remove());
    return outer;
  }

  function runEnd(status, { summary, error, version, usage, cost } = {}) {
    const icon = status === 'succeeded' ? '✓' : status === 'cancelled' ? '■' : '✕';
    const number = version && typeof version === 'object' ? version.number : version;
    let text =
      status === 'succeeded'
        ? number
          ? `Saved as version ${number}`
          : 'Done'
        : status === 'cancelled'
          ? 'Stopped'
          : `Failed${error ? `: ${error}` : ''}`;
    const meta = [];
    if (usage && totalTokens(usage)) meta.push(`${compactNumber(totalTokens(usage))} tokens`);
    if (cost) meta.push(formatCost(cost));
    return h(
      'div',
      { class: `run-end run-${status}` },
      h('span', { class: 'run-end-icon', 'aria-hidden': 'true' }, icon),
      h('span', { class: 'run-end-label' }, text),
      meta.length ? h('span', { class: 'muted' }, ` · ${meta.join(' · ')}`) : null,
      summary && status !== 'succeeded' ? h('p', { class: 'run-summary' }, summary) : null,
      version && typeof version === 'object' ? shot(version) : null,
    );
  }

  function restoreLine(v) {
    return h(
      'div',
      { class: 'run-end run-restore' },
      h('span', { class: 'run-end-icon', 'aria-hidden': 'true' }, '↺'),
      h('span', {}, `${v.summary || 'Restored an earlier version'} · saved as v${v.number}`),
    );
  }

  // ------------------------------------------------------------ selection chip
  function selectionChip(sel, actions) {
    const label = `<${sel.tag}>${sel.text ? ` “${sel.text.length > 40 ? `${sel.text.slice(0, 40)}…` : sel.text}”` : ''}`;
    return h('div', { class: 'selection-chip', title: sel.classes ? `class="${sel.classes}"` : '' }, h('span', { class: 'chip-tag' }, label), h('code', { class: 'chip-src' }, sel.source), actions || null);
  }

  function renderChip() {
    const sel = s.selection;
    if (!sel) return mount(chipSlot);
    const remove = h('button', { type: 'button', class: 'chip-remove', 'aria-label': 'Remove the selection', onclick: () => { s.selection = null; renderChip(); } }, '×');
    const edit = sel.text ? h('button', { type: 'button', class: 'btn btn-small btn-ghost chip-edit', onclick: () => editText(sel) }, '✎ Edit text') : null;
    mount(chipSlot, selectionChip(sel, [edit, remove]));
  }

  // Changes the element's literal text in its file without the model.
  function editText(sel) {
    const field = h('input', { type: 'text', class: 'edit-text-input', value: sel.text, 'aria-label': `New text for the <${sel.tag}>` });
    const save = h('button', { type: 'submit', class: 'btn btn-small btn-primary' }, 'Save');
    const cancel = h('button', { type: 'button', class: 'btn btn-small btn-ghost', onclick: () => renderChip() }, 'Cancel');
    const form = h('form', { class: 'edit-text' }, field, save, cancel);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const next = field.value.trim();
      if (!next || next === sel.text) return renderChip();
      save.disabled = true;
      try {
        const res = await api.textEdit(id, { source: sel.source, old_text: sel.text, new_text: next });
        s.selection = null;
        renderChip();
        clearEmptyState();
        messages.append(restoreLine(res.version));
        scrollChat();
        toast(`Changed the text without the model · saved as v${res.version.number}`, 'info');
        s.versionsLoaded = false;
      } catch (err) {
        save.disabled = false;
        fail('Could not change the text')(err);
      }
    });
    mount(chipSlot, selectionChip(sel), form);
    field.focus();
    field.select();
  }

  function userBubble(text, { images = [], selection = null } = {}) {
    const pics = images.length
      ? h(
          'div',
          { class: 'bubble-images' },
          images.map((src, i) => {
            const img = h('img', { alt: `attached image ${i + 1}`, loading: 'lazy' });
            Promise.resolve(src).then((u) => { img.src = u; }, () => { img.alt = 'image unavailable'; });
            return img;
          }),
        )
      : null;
    return h('div', { class: 'msg msg-user' }, h('div', { class: 'bubble' }, selection ? selectionChip(selection) : null, pics, text));
  }

  async function loadHistory(activeRunId) {
    try {
      const [msgRes, runRes, verRes] = await Promise.all([api.messages(id), api.runs(id), api.versions(id)]);
      if (s.disposed) return;
      s.runs = new Map((runRes.runs || []).map((r) => [r.id, r]));
      s.versionByRun = versionsByRun(verRes.versions || []);
      const restores = (verRes.versions || []).filter((v) => !v.run_id);
      renderHistory(msgRes.messages || [], activeRunId, restores);
    } catch (e) {
      fail('Could not load the conversation')(e);
    }
  }

  function renderHistory(list, activeRunId, restores) {
    const sorted = list
      .map((m) => ({ ...m, content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content || [] }))
      .sort((a, b) => a.seq - b.seq);
    const pendingRestores = [...restores].sort((a, b) => a.number - b.number);
    const flushRestores = (until) => {
      while (pendingRestores.length && (until === null || pendingRestores[0].created_at < until)) out.push(restoreLine(pendingRestores.shift()));
    };
    const errors = new Set();
    const summaries = new Map();
    for (const m of sorted) {
      for (const b of m.content || []) if (b.type === 'tool_result' && b.is_error) errors.add(b.tool_use_id);
      for (const c of m.tool_calls || []) if (c && c.id && c.summary) summaries.set(c.id, c.summary);
    }
    const out = [];
    const seenRuns = new Set();
    let group = null;
    const closeRun = (runId) => {
      const r = runId && s.runs.get(runId);
      if (r && r.id !== activeRunId && ['succeeded', 'failed', 'cancelled'].includes(r.status)) {
        out.push(runEnd(r.status, { error: r.error, usage: r.usage, cost: r.cost_usd, version: versionOfRun(r) }));
      }
    };
    let currentRun;
    for (const [i, m] of sorted.entries()) {
      if (m.run_id !== currentRun) {
        if (currentRun !== undefined) closeRun(currentRun);
        currentRun = m.run_id;
        group = null;
        flushRestores(m.created_at);
      }
      // A run still in progress is drawn from its event stream instead.
      const firstOfRun = m.role === 'user' && m.run_id && !seenRuns.has(m.run_id);
      if (m.run_id) seenRuns.add(m.run_id);
      if (m.run_id && m.run_id === activeRunId && !firstOfRun) continue;
      const texts = (m.content || []).filter((b) => b.type === 'text' && b.text && b.text.trim()).map((b) => b.text);
      if (m.role === 'user') {
        if (firstOfRun || !m.run_id) {
          const images = (m.content || [])
            .filter((b) => b.type === 'image' && b.source && b.source.type === 'stored')
            .map((b) => imageUrl(id, b.source.id));
          const sel = (m.content || []).find((b) => b.type === 'selection');
          if (texts.length || images.length) out.push(userBubble(texts.join('\n\n'), { images, selection: sel ? sel.selection : null }));
        } else if (texts.length) {
          out.push(h('details', { class: 'note' }, h('summary', {}, 'Apna sent build feedback to the model'), h('pre', {}, texts.join('\n\n'))));
        }
        group = null;
        continue;
      }
      if (!group) {
        group = h('div', { class: 'msg msg-assistant' });
        out.push(group);
      }
      const diffs = [...(m.file_diffs || []), ...((sorted[i + 1] && sorted[i + 1].file_diffs) || [])];
      for (const b of m.content || []) {
        if (b.type === 'text' && b.text && b.text.trim()) group.append(h('div', { class: 'bubble md' }, renderMarkdown(b.text)));
        else if (b.type === 'tool_use') group.append(toolLine(summaries.get(b.id) || toolSummary(b.name, b.input || {}, diffs), errors.has(b.id)));
      }
    }
    if (currentRun !== undefined) closeRun(currentRun);
    flushRestores(null);
    mount(messages, out.length ? out : h('div', { class: 'chat-empty muted' }, 'No messages yet.'));
    messages.scrollTop = messages.scrollHeight;
  }

  function versionOfRun(r) {
    return s.versionByRun ? s.versionByRun.get(r.id) : undefined;
  }

  // ------------------------------------------------------------ live run
  function renderRunbar() {
    const l = s.live;
    if (l) {
      const tokens = totalTokens(l.usage);
      const label = l.status === 'queued' ? 'Queued…' : l.message ? `${l.message}…` : PHASES[l.phase] || 'Working…';
      mount(
        runbar,
        h('span', { class: 'spinner small', 'aria-hidden': 'true' }),
        h('span', { class: 'run-phase' }, label),
        h(
          'span',
          { class: 'run-usage muted', title: usageTitle(l.usage) },
          tokens ? `${compactNumber(tokens)} tokens · ${formatCost(l.cost)}` : '',
        ),
        h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: stop, 'aria-label': 'Stop the run' }, '■ Stop'),
      );
      runbar.className = 'runbar runbar-active';
    } else {
      const last = [...s.runs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0];
      if (last) {
        mount(
          runbar,
          h('span', { class: 'muted small' }, `Last run ${last.status} · ${compactNumber(totalTokens(last.usage))} tokens · ${formatCost(last.cost_usd)}`),
        );
        runbar.className = 'runbar';
      } else {
        mount(runbar);
        runbar.className = 'runbar runbar-empty';
      }
    }
    sendBtn.disabled = Boolean(l);
    input.placeholder = l ? 'Apna is working — you can stop it, or type your next request…' : 'Ask for a change…';
  }

  function usageTitle(u) {
    if (!u) return '';
    return `input ${u.input_tokens || 0} · output ${u.output_tokens || 0} · cache read ${u.cache_read_tokens || 0} · cache write ${u.cache_write_tokens || 0}`;
  }

  function setStreamText(st, text) {
    st.raw = text;
    mount(st.bubble, renderMarkdown(text));
  }

  function newStream(l, text, final) {
    const bubble = h('div', { class: 'bubble md' });
    l.box.append(bubble);
    l.stream = { bubble, raw: '', got: final ? '' : text, final, expect: final ? text : null };
    setStreamText(l.stream, text);
  }

  // Appends streamed text. After a step's full text has arrived, a late delta
  // that is still a prefix of it is the tail of that step (deltas are flushed
  // in batches) and is dropped; anything else starts the next bubble.
  function streamDelta(l, t) {
    const st = l.stream;
    if (st && st.final) {
      const next = st.got + t;
      if (st.expect.startsWith(next)) {
        st.got = next;
        return;
      }
      l.stream = null;
    }
    if (!l.stream) {
      newStream(l, t, false);
      return;
    }
    l.stream.got += t;
    setStreamText(l.stream, l.stream.raw + t);
  }

  function streamFinal(l, text) {
    const st = l.stream;
    if (st && !st.final) {
      st.final = true;
      st.expect = text;
      setStreamText(st, text);
    } else if (text) {
      newStream(l, text, true);
    }
  }

  function startLive(runId, after = 0) {
    if (s.stopFollow) s.stopFollow();
    clearEmptyState();
    const box = h('div', { class: 'msg msg-assistant live', 'aria-busy': 'true' });
    messages.append(box);
    s.live = { runId, box, stream: null, end: null, usage: null, cost: 0, phase: null, status: 'queued', startedAt: Date.now() };
    renderRunbar();
    scrollChat();
    s.stopFollow = followRun(runId, {
      after,
      onEvent: (ev) => onRunEvent(ev),
      onEnd: () => finishLive(),
      onError: fail('Lost the connection to the run'),
    });
  }

  function onRunEvent(ev) {
    const l = s.live;
    if (!l) return;
    const d = ev.data || {};
    switch (ev.kind) {
      case 'status':
        l.status = d.status || l.status;
        if (d.phase && d.phase !== l.phase) later(loadProject, 0);
        if (d.phase) l.phase = d.phase;
        // The phase message belongs in the run bar, not the conversation.
        l.message = d.message || null;
        renderRunbar();
        if (!s.previewSrc) syncPreview(null);
        break;
      case 'delta':
        if (d.restart) {
          // The model call is being retried: drop what it streamed so far.
          if (l.stream && !l.stream.final) setStreamText(l.stream, '');
        } else {
          streamDelta(l, d.text || '');
        }
        break;
      case 'text':
        // `{step, text}` is a step's whole text (deltas came before it);
        // without `step` it is itself a delta.
        if (typeof d.step === 'number') streamFinal(l, d.text || '');
        else streamDelta(l, d.text || '');
        break;
      case 'tool':
        if (l.stream && !l.stream.final) l.stream = null;
        l.box.append(toolLine(d.summary || d.name || 'tool call', d.is_error));
        break;
      case 'diagnostics': {
        l.stream = null;
        const items = d.items || [];
        const browser = d.check === 'browser';
        if (browser && d.smoke === 'skipped') {
          l.box.append(h('div', { class: 'tool-line muted' }, h('span', { class: 'tool-icon', 'aria-hidden': 'true' }, '–'), h('span', { class: 'tool-text' }, `Browser check skipped${d.note ? `: ${d.note}` : ''}`)));
        } else if (d.ok) {
          const text = browser ? 'Opened in a browser: no errors' : 'Type check and build passed';
          l.box.append(h('div', { class: 'tool-line tool-ok' }, h('span', { class: 'tool-icon', 'aria-hidden': 'true' }, '✓'), h('span', { class: 'tool-text' }, text)));
        } else {
          l.box.append(
            h(
              'details',
              { class: 'tool-line tool-error diag' },
              h('summary', {}, `${browser ? 'The app in a browser showed' : 'Found'} ${items.length} problem${items.length === 1 ? '' : 's'} — fixing`),
              h('ul', {}, items.map((it) => h('li', {}, `${it.file || ''}${it.line ? `:${it.line}` : ''}${it.column ? `:${it.column}` : ''} ${it.message || ''}`))),
            ),
          );
        }
        break;
      }
      case 'usage':
        // Prefer the run's running totals; `usage` alone is taken as the total.
        l.usage = d.run_usage || d.usage || l.usage;
        if (typeof d.run_cost_usd === 'number') l.cost = d.run_cost_usd;
        else if (typeof d.cost_usd === 'number') l.cost = d.cost_usd;
        renderRunbar();
        break;
      case 'done':
        l.stream = null;
        l.status = d.status;
        // A page that loaded while this run was writing files can miss a hot
        // update (one made before its HMR socket connected): reload it once.
        if (s.previewSrc && s.previewLoadedAt >= l.startedAt) reloadPreview();
        l.end = runEnd(d.status, { summary: d.summary, error: d.error, version: d.version, usage: l.usage, cost: l.cost });
        l.box.append(l.end);
        break;
      default:
        break;
    }
    scrollChat();
  }

  async function finishLive() {
    const l = s.live;
    if (l) l.box.removeAttribute('aria-busy');
    s.live = null;
    s.stopFollow = null;
    try {
      const [r, v] = await Promise.all([api.runs(id), api.versions(id)]);
      if (!s.disposed) {
        s.runs = new Map((r.runs || []).map((x) => [x.id, x]));
        s.versionByRun = versionsByRun(v.versions || []);
        const saved = l && s.versionByRun.get(l.runId);
        const label = l && l.end && l.end.querySelector('.run-end-label');
        if (saved && label && l.status === 'succeeded') label.textContent = `Saved as version ${saved.number}`;
        const thumb = saved && l.end && !l.end.querySelector('.shot-link') ? shot(saved) : null;
        if (thumb) l.end.append(thumb);
      }
    } catch (e) {
      fail('Could not refresh runs')(e);
    }
    if (s.disposed) return;
    renderRunbar();
    await loadProject();
    s.versionsLoaded = false;
    s.filesLoaded = false;
    if (s.tab === 'versions') loadVersions();
    if (s.tab === 'files') loadFiles();
  }

  async function send() {
    const text = input.value.trim();
    if (!text || s.sending) return;
    if (s.live) {
      toast('Apna is still working on the last request. Stop it or wait for it to finish.', 'info');
      return;
    }
    sendBtn.disabled = true;
    s.sending = true;
    try {
      const selection = s.selection;
      const res = await api.chat(id, text, { images: await attach.images(), selection });
      const images = attach.previews();
      attach.clear();
      s.selection = null;
      renderChip();
      input.value = '';
      clearEmptyState();
      messages.append(userBubble(text, { images, selection }));
      messages.scrollTop = messages.scrollHeight;
      startLive(res.run_id);
    } catch (e) {
      fail('Could not send the message')(e);
      sendBtn.disabled = false;
    } finally {
      s.sending = false;
    }
  }

  async function stop() {
    const l = s.live;
    if (!l) return;
    try {
      await api.cancel(l.runId);
      toast('Stopping the run…', 'info');
    } catch (e) {
      fail('Could not stop the run')(e);
    }
  }

  // ------------------------------------------------------------ files
  async function loadFiles() {
    s.filesLoaded = true;
    mount(tree, h('p', { class: 'muted small pad' }, 'Loading files…'));
    try {
      const res = await api.files(id);
      if (s.disposed) return;
      renderTree(res.files || []);
      if (s.selectedFile && (res.files || []).some((f) => f.path === s.selectedFile)) openFile(s.selectedFile);
    } catch (e) {
      s.filesLoaded = false;
      mount(tree, h('p', { class: 'error-text small pad' }, `Could not list files: ${e.message}`));
      fail('Could not list files')(e);
    }
  }

  function renderTree(files) {
    const rootNode = { dirs: new Map(), files: [] };
    for (const f of files) {
      const parts = f.path.split('/');
      let node = rootNode;
      for (const dir of parts.slice(0, -1)) {
        if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
        node = node.dirs.get(dir);
      }
      node.files.push({ name: parts[parts.length - 1], path: f.path, size: f.size });
    }
    const build = (node, depth) =>
      h(
        'ul',
        {},
        [...node.dirs.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([name, child]) =>
            h('li', {}, h('details', { open: depth < 2 || null }, h('summary', { class: 'dir' }, name), build(child, depth + 1))),
          ),
        node.files
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((f) =>
            h(
              'li',
              {},
              h(
                'button',
                {
                  class: `file${s.selectedFile === f.path ? ' selected' : ''}`,
                  type: 'button',
                  title: `${f.path} (${f.size} bytes)`,
                  dataset: { path: f.path },
                  onclick: () => openFile(f.path),
                },
                f.name,
              ),
            ),
          ),
      );
    mount(tree, files.length ? build(rootNode, 0) : h('p', { class: 'muted small pad' }, 'No files yet.'));
  }

  async function openFile(path) {
    s.selectedFile = path;
    for (const b of tree.querySelectorAll('button.file')) b.classList.toggle('selected', b.dataset.path === path);
    mount(viewer, h('p', { class: 'muted small pad' }, `Loading ${path}…`));
    try {
      const f = await api.file(id, path);
      if (s.disposed || s.selectedFile !== path) return;
      mount(viewer, h('div', { class: 'viewer-head' }, h('span', { class: 'mono' }, f.path), h('span', { class: 'muted small' }, `${f.size} bytes · read-only`)), renderCode(f.content || '', f.path));
    } catch (e) {
      mount(viewer, h('p', { class: 'error-text small pad' }, `Could not open ${path}: ${e.message}`));
      fail(`Could not open ${path}`)(e);
    }
  }

  // ------------------------------------------------------------ versions
  async function loadVersions() {
    s.versionsLoaded = true;
    try {
      const res = await api.versions(id);
      if (s.disposed) return;
      const versions = res.versions || [];
      s.versionByRun = versionsByRun(versions);
      s.versions = versions;
      renderVersions(versions);
    } catch (e) {
      s.versionsLoaded = false;
      mount(versionList, h('li', { class: 'error-text small pad' }, `Could not load versions: ${e.message}`));
      fail('Could not load versions')(e);
    }
  }

  function renderVersions(versions) {
    const latest = versions.length ? versions[versions.length - 1].number : null;
    mount(
      versionList,
      versions.length
        ? [...versions].reverse().map((v) => {
            const added = (v.file_diffs || []).reduce((n, f) => n + (f.added || 0), 0);
            const removed = (v.file_diffs || []).reduce((n, f) => n + (f.removed || 0), 0);
            const confirming = s.confirmRestore === v.number;
            return h(
              'li',
              { class: `version${s.selectedVersion === v.number ? ' selected' : ''}`, dataset: { number: v.number } },
              h(
                'button',
                { class: 'version-main', type: 'button', 'aria-label': `Show changes in version ${v.number}`, onclick: () => showDiff(v.number) },
                h('span', { class: 'version-num' }, `v${v.number}`),
                shot(v, 'desktop', 'version-thumb', { link: false }),
                h('span', { class: 'version-summary' }, v.summary || 'No summary'),
                h(
                  'span',
                  { class: 'version-meta' },
                  h('span', { class: 'muted' }, relativeTime(v.created_at)),
                  h('span', { class: 'plus' }, `+${added}`),
                  h('span', { class: 'minus' }, `−${removed}`),
                  v.number === latest ? h('span', { class: 'badge badge-current' }, 'current') : null,
                  s.site && s.site.status === 'published' && s.site.version === v.number ? h('span', { class: 'badge badge-live' }, 'live') : null,
                ),
              ),
              h('button', { class: 'btn btn-small btn-ghost version-publish', type: 'button', 'aria-label': `Publish version ${v.number}`, onclick: () => publish({ version: v.number }) }, 'Publish'),
              v.number === latest
                ? null
                : confirming
                  ? h(
                      'div',
                      { class: 'version-confirm' },
                      h('span', { class: 'small' }, `Restore v${v.number}? This saves a new version.`),
                      h('button', { class: 'btn btn-small btn-primary', type: 'button', onclick: () => restore(v.number), 'aria-label': `Confirm restoring version ${v.number}` }, 'Restore'),
                      h('button', { class: 'btn btn-small btn-ghost', type: 'button', onclick: () => { s.confirmRestore = null; renderVersions(versions); } }, 'Cancel'),
                    )
                  : h('button', { class: 'btn btn-small btn-ghost version-restore', type: 'button', 'aria-label': `Restore version ${v.number}`, onclick: () => { s.confirmRestore = v.number; renderVersions(versions); } }, 'Restore…'),
            );
          })
        : h('li', { class: 'muted small pad' }, 'No versions yet. One is saved after each finished change.'),
    );
  }

  async function showDiff(n) {
    s.selectedVersion = n;
    for (const li of versionList.querySelectorAll('li.version')) li.classList.toggle('selected', Number(li.dataset.number) === n);
    mount(diffView, h('p', { class: 'muted small pad' }, `Loading version ${n}…`));
    try {
      const d = await api.versionDiff(id, n);
      if (s.disposed || s.selectedVersion !== n) return;
      const v = (s.versions || []).find((x) => x.number === n);
      const shots = v && (v.screenshots || []).length
        ? h('div', { class: 'version-shots', 'aria-label': `Screenshots of v${n}` }, shot(v, 'desktop', 'version-shot'), shot(v, 'phone', 'version-shot version-shot-phone'))
        : null;
      mount(diffView, h('div', { class: 'viewer-head' }, h('span', {}, `Changes in v${n}`)), shots, renderDiff(d.diff || ''));
    } catch (e) {
      mount(diffView, h('p', { class: 'error-text small pad' }, `Could not load the diff: ${e.message}`));
      fail('Could not load the diff')(e);
    }
  }

  async function restore(n) {
    s.confirmRestore = null;
    try {
      const res = await api.restore(id, n);
      toast(`Restored version ${n}${res && res.version ? ` as v${res.version.number}` : ''}.`, 'info');
      if (res && res.version) {
        clearEmptyState();
        messages.append(restoreLine({ ...res.version, summary: res.version.summary || `Restored version ${n}` }));
        messages.scrollTop = messages.scrollHeight;
      }
    } catch (e) {
      fail(`Could not restore version ${n}`)(e);
    }
    await loadVersions();
    s.filesLoaded = false;
    await loadProject();
  }

  // ------------------------------------------------------------ publish
  function togglePublish(open = !s.publishOpen) {
    s.publishOpen = open;
    publishPanel.hidden = !open;
    publishBtn.setAttribute('aria-expanded', String(open));
    if (open) loadSite();
  }

  async function loadSite() {
    try {
      const site = await api.site(id);
      if (s.disposed) return;
      s.site = site;
      renderPublish();
      if (s.versionsLoaded) loadVersions();
      if (site.publishing) later(loadSite, 1000);
    } catch (e) {
      fail('Could not load the published site')(e);
    }
  }

  async function publish(body) {
    try {
      s.site = await api.publish(id, body);
      toast(`Publishing version ${s.site.pending_version}…`, 'info');
      togglePublish(true);
    } catch (e) {
      fail('Could not publish')(e);
    }
  }

  async function unpublish() {
    try {
      s.site = await api.unpublish(id);
      toast('The site is no longer published.', 'info');
      renderPublish();
      if (s.versionsLoaded) loadVersions();
    } catch (e) {
      fail('Could not unpublish')(e);
    }
  }

  function renderPublish() {
    const site = s.site;
    if (!site) return;
    const slugInput = h('input', {
      class: 'slug-input',
      type: 'text',
      id: 'site-slug',
      value: site.slug || '',
      placeholder: 'made from the name',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    const status = site.publishing
      ? h('p', { class: 'publish-status', role: 'status' }, h('span', { class: 'spinner small', 'aria-hidden': 'true' }), ` Publishing version ${site.pending_version}…`)
      : site.status === 'published'
        ? h(
            'p',
            { class: 'publish-status', role: 'status' },
            'Live: ',
            h('a', { class: 'site-url', href: site.url, target: '_blank', rel: 'noopener' }, site.url),
            h('span', { class: 'muted' }, ` · v${site.version} · published ${relativeTime(site.published_at)}`),
          )
        : h('p', { class: 'publish-status muted', role: 'status' }, 'Not published yet: publishing builds the app and puts it online at its own address.');
    mount(
      publishPanel,
      status,
      site.error ? h('p', { class: 'error-text small' }, `The last publish failed, the site is unchanged: ${site.error}`) : null,
      h(
        'form',
        {
          class: 'publish-form',
          onsubmit: (e) => {
            e.preventDefault();
            const slug = slugInput.value.trim();
            publish(slug && slug !== site.slug ? { slug } : {});
          },
        },
        h('label', { for: 'site-slug', class: 'small' }, 'Site address'),
        slugInput,
        h('button', { class: 'btn btn-small btn-primary', type: 'submit', disabled: site.publishing }, 'Publish latest version'),
        site.status === 'published'
          ? h('button', { class: 'btn btn-small btn-ghost', type: 'button', disabled: site.publishing, onclick: () => unpublish() }, 'Unpublish')
          : null,
      ),
    );
  }

  // ------------------------------------------------------------ start
  renderRunbar();
  (async () => {
    const p = await loadProject();
    if (!p || s.disposed) return;
    // A run started from the home screen may not show as active yet.
    const pending = sessionStorage.getItem(`apna.run.${id}`);
    sessionStorage.removeItem(`apna.run.${id}`);
    const active = p.active_run_id || pending || null;
    await loadHistory(active);
    if (s.disposed) return;
    renderRunbar();
    if (active) {
      let finished = false;
      if (!p.active_run_id) {
        try {
          const r = await api.run(active);
          finished = ['succeeded', 'failed', 'cancelled'].includes(r.status);
        } catch (e) {
          fail('Could not load the run')(e);
        }
      }
      if (!finished && !s.disposed) startLive(active);
    }
    if (!s.live && !messages.children.length) mount(messages, h('div', { class: 'chat-empty muted' }, 'No messages yet.'));
    // On phones focusing would pop the keyboard over the conversation.
    if (isWide()) input.focus();
  })();

  return () => {
    s.disposed = true;
    bridge.dispose();
    if (s.stopFollow) s.stopFollow();
    for (const t of s.timers) clearTimeout(t);
    s.timers.clear();
  };
}

function versionsByRun(versions) {
  return new Map(versions.filter((v) => v.run_id).map((v) => [v.run_id, v]));
}

/** The compact one-line description of a stored tool call. */
export function toolSummary(name, input, diffs) {
  const path = input.path || input.file || '';
  const d = (diffs || []).find((f) => f.path === path);
  const stat = d ? ` (+${d.added || 0} −${d.removed || 0})` : '';
  switch (name) {
    case 'write_file':
      return `${d && d.action === 'create' ? 'created' : 'wrote'} ${path}${stat}`;
    case 'edit_file':
      return `edited ${path}${stat}`;
    case 'delete_file':
      return `deleted ${path}`;
    case 'read_file':
      return `read ${path}`;
    case 'list_files':
      return `listed ${path || 'files'}`;
    case 'search_files':
      return `searched for “${input.query || input.pattern || ''}”`;
    case 'check_logs':
      return 'checked the dev server log';
    case 'run_command':
      return `ran ${input.command || ''}`.trim();
    default:
      return name;
  }
}
