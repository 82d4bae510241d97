// Apna's browser UI: the router (#/ and #/p/{id}), the top bar, the config
// banner and the home screen (prompt box, starter cards, project list). The
// project view lives in project.js.

import { api, apiUrl, getToken, setToken, ApiError } from './api.js';
import { beginSignIn, completeSignIn, currentToken, signOut } from './auth.js';
import { h, mount, toast, showError, relativeTime, badge, sleepBadge } from './dom.js';
import { projectView } from './project.js';
import { attachmentTray } from './attachments.js';

const EXAMPLES = [
  'A habit tracker with daily streaks and a weekly chart',
  'A recipe box where I can save recipes and filter by ingredient',
  'A pomodoro timer with a task list and session history',
  'A landing page for a neighbourhood coffee shop with a menu and opening hours',
];

const app = {
  config: null,
  cleanup: null,
};

const root = () => document.getElementById('app');

async function loadConfig() {
  try {
    app.config = await api.config();
  } catch (e) {
    app.config = null;
    showError(e, 'Could not load the server configuration');
  }
  renderChrome();
}

// The top bar's token control and the setup banner depend on /api/config.
function renderChrome() {
  const cfg = app.config;
  const banner = document.getElementById('banner');
  if (cfg && cfg.model_configured === false) {
    mount(
      banner,
      h(
        'div',
        { class: 'banner banner-warn', role: 'alert' },
        h('strong', {}, 'No model is configured. '),
        h('span', { class: 'banner-text' }, cfg.setup_hint || 'Set ANTHROPIC_API_KEY and restart Apna.'),
      ),
    );
  } else {
    mount(banner);
  }
  const slot = document.getElementById('auth-slot');
  if (cfg && cfg.auth === 'oidc') {
    mount(slot, signInControl(cfg.oidc));
  } else if (cfg && cfg.auth === 'jwt') {
    mount(slot, tokenControl());
  } else {
    mount(slot, cfg && cfg.model ? h('span', { class: 'model-chip', title: 'Model in use' }, cfg.model) : null);
  }
}

function tokenControl() {
  const has = Boolean(getToken());
  const input = h('input', {
    id: 'token-input',
    type: 'password',
    autocomplete: 'off',
    placeholder: has ? 'Token saved' : 'Paste your access token',
    'aria-label': 'Access token',
  });
  const form = h(
    'form',
    { class: 'token-form' },
    h('label', { for: 'token-input', class: 'sr-only' }, 'Access token'),
    input,
    h('button', { class: 'btn btn-small', type: 'submit' }, has && !input.value ? 'Update' : 'Save'),
    has
      ? h(
          'button',
          {
            class: 'btn btn-small btn-ghost',
            type: 'button',
            onclick: () => {
              setToken('');
              toast('Token removed.', 'info');
              renderChrome();
              route();
            },
          },
          'Sign out',
        )
      : null,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value);
    toast(input.value.trim() ? 'Token saved.' : 'Token removed.', 'info');
    renderChrome();
    route();
  });
  return form;
}

// With an OpenID Connect provider: a Sign in / Sign out button, no token field.
function signInControl(oidc) {
  if (!getToken()) {
    return h(
      'button',
      { id: 'sign-in', class: 'btn btn-small btn-primary', type: 'button', onclick: () => signIn(oidc) },
      'Sign in',
    );
  }
  return h(
    'button',
    {
      id: 'sign-out',
      class: 'btn btn-small btn-ghost',
      type: 'button',
      onclick: async () => {
        await signOut(oidc);
        renderChrome();
        route();
      },
    },
    'Sign out',
  );
}

function signIn(oidc) {
  beginSignIn(oidc).catch((e) => showError(e, 'Could not start signing in'));
}

/** After a 401: focuses the token field, or offers to sign in again. */
export function onUnauthorized(err) {
  if (err instanceof ApiError && err.status === 401) {
    if (app.config && app.config.auth === 'oidc') {
      setToken('');
      renderChrome();
      route();
      return;
    }
    const input = document.getElementById('token-input');
    if (input) input.focus();
  }
}

// Signed out with an OpenID Connect provider: nothing to show but the way in.
function signedOutView(el, oidc) {
  mount(
    el,
    h(
      'section',
      { class: 'signed-out', 'aria-labelledby': 'signed-out-title' },
      h('h1', { id: 'signed-out-title' }, 'Sign in to build apps'),
      h('p', { class: 'muted' }, 'Apna keeps your projects under your account.'),
      h('button', { id: 'sign-in-main', class: 'btn btn-primary', type: 'button', onclick: () => signIn(oidc) }, 'Sign in'),
    ),
  );
  document.title = 'Apna — sign in';
  return () => {};
}

// ---------------------------------------------------------------- home

function homeView(el) {
  let timer = null;
  let stopped = false;
  const textarea = h('textarea', {
    id: 'prompt',
    name: 'prompt',
    rows: '3',
    placeholder: 'Describe your app — who it is for and what it should do…',
    'aria-describedby': 'prompt-hint',
  });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Build it');
  const form = h(
    'form',
    { class: 'prompt-box', 'aria-label': 'New project' },
    h('label', { for: 'prompt', class: 'sr-only' }, 'What do you want to build?'),
    textarea,
  );
  const attach = attachmentTray(textarea, { label: 'Attach images to the prompt' });
  form.append(
    attach.tray,
    h(
      'div',
      { class: 'prompt-actions' },
      attach.button,
      h('span', { id: 'prompt-hint', class: 'hint' }, 'Enter to build · Shift+Enter for a new line · paste or drop a screenshot'),
      submit,
    ),
  );
  let creating = false;
  // The starter the project begins from; null until /api/templates answers
  // (the server's default then).
  let starter = null;
  const create = async () => {
    if (creating) return;
    const prompt = textarea.value.trim();
    if (!prompt) {
      textarea.focus();
      toast('Describe what you want to build first.', 'info');
      return;
    }
    creating = true;
    submit.disabled = true;
    submit.textContent = 'Starting…';
    try {
      const res = await api.createProject(prompt, starter, await attach.images());
      attach.clear();
      sessionStorage.setItem(`apna.run.${res.project.id}`, res.run_id);
      location.hash = `#/p/${res.project.id}`;
    } catch (e) {
      showError(e, 'Could not start the project');
      onUnauthorized(e);
      creating = false;
      submit.disabled = false;
      submit.textContent = 'Build it';
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    create();
  });
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      create();
    }
  });

  const examples = h('ul', { class: 'examples', 'aria-label': 'Example prompts' });
  const showExamples = (texts) =>
    mount(
      examples,
      texts.map((text) =>
        h(
          'li',
          {},
          h(
            'button',
            {
              class: 'chip',
              type: 'button',
              onclick: () => {
                textarea.value = text;
                textarea.focus();
              },
            },
            text,
          ),
        ),
      ),
    );
  showExamples(EXAMPLES);

  // Starter cards: a radio group, so arrow keys move between them.
  const starters = h('fieldset', { class: 'starters', hidden: true }, h('legend', { class: 'examples-label muted' }, 'Start from'));
  const loadStarters = async () => {
    let list;
    try {
      list = (await api.templates()).templates || [];
    } catch {
      return; // An older server: it has one template, and the form still works.
    }
    if (stopped || !list.length) return;
    const pick = (t) => {
      starter = t.name;
      // A class, not :has(:checked): Chromium does not always restyle the
      // card whose radio another one unchecked.
      for (const card of starters.querySelectorAll('.starter-card')) {
        card.classList.toggle('selected', card.dataset.starter === t.name);
      }
      showExamples(t.prompt_hints && t.prompt_hints.length ? t.prompt_hints : EXAMPLES);
    };
    const cards = list.map((t) => {
      const radio = h('input', {
        type: 'radio',
        name: 'starter',
        value: t.name,
        class: 'sr-only',
        checked: Boolean(t.default),
        onchange: () => pick(t),
      });
      return h(
        'label',
        { class: 'starter-card', dataset: { starter: t.name } },
        radio,
        h('img', { src: apiUrl(t.preview_url), alt: '', loading: 'lazy', width: '320', height: '200' }),
        h('span', { class: 'starter-title' }, t.title),
        h('span', { class: 'starter-desc' }, t.description),
      );
    });
    mount(starters, h('legend', { class: 'examples-label muted' }, 'Start from'), h('div', { class: 'starter-grid' }, cards));
    starters.hidden = false;
    const first = list.find((t) => t.default) || list[0];
    if (first) pick(first);
  };

  const list = h('ul', { class: 'project-list', 'aria-label': 'Projects', 'aria-busy': 'true' });
  const listStatus = h('p', { class: 'muted list-status' }, 'Loading projects…');

  const loadProjects = async () => {
    try {
      const res = await api.listProjects();
      if (stopped) return;
      renderProjects(res.projects || []);
      const busy = (res.projects || []).some((p) => p.status === 'creating' || p.status === 'building');
      clearTimeout(timer);
      if (busy) timer = setTimeout(loadProjects, 4000);
    } catch (e) {
      if (stopped) return;
      list.removeAttribute('aria-busy');
      listStatus.textContent = `Could not load projects: ${e.message}`;
      listStatus.className = 'error-text list-status';
      onUnauthorized(e);
    }
  };

  const renderProjects = (projects) => {
    list.removeAttribute('aria-busy');
    const visible = projects.filter((p) => p.status !== 'deleted');
    listStatus.textContent = visible.length ? '' : 'No projects yet. Describe one above to get started.';
    listStatus.className = 'muted list-status';
    mount(
      list,
      visible.map((p) =>
        h(
          'li',
          { class: 'project-card' },
          h(
            'a',
            { href: `#/p/${p.id}`, class: 'project-link' },
            h('span', { class: 'project-name' }, p.name || p.prompt || 'Untitled'),
            h('span', { class: 'project-prompt' }, p.prompt || ''),
            h(
              'span',
              { class: 'project-meta' },
              badge(p.status),
              sleepBadge(p),
              h('span', { class: 'muted' }, `Active ${relativeTime(p.last_active || p.updated_at)}`),
            ),
          ),
          h(
            'button',
            {
              class: 'icon-btn card-delete',
              type: 'button',
              'aria-label': `Delete ${p.name || 'project'}`,
              title: 'Delete project',
              onclick: async () => {
                if (!window.confirm(`Delete “${p.name || 'this project'}”? This cannot be undone.`)) return;
                try {
                  await api.deleteProject(p.id);
                  toast('Project deleted.', 'info');
                  loadProjects();
                } catch (e) {
                  showError(e, 'Could not delete the project');
                }
              },
            },
            '×',
          ),
        ),
      ),
    );
  };

  mount(
    el,
    h(
      'div',
      { class: 'home' },
      h(
        'section',
        { class: 'hero' },
        h('h1', {}, 'What do you want to build?'),
        h('p', { class: 'lede' }, 'Describe an app. Apna writes it in React and you watch it come alive, then keep chatting to change it.'),
        form,
        starters,
        h('p', { class: 'examples-label muted' }, 'Try an example'),
        examples,
      ),
      h('section', { class: 'projects', 'aria-labelledby': 'projects-title' }, h('h2', { id: 'projects-title' }, 'Your projects'), listStatus, list),
    ),
  );
  document.title = 'Apna — build an app by describing it';
  loadProjects();
  loadStarters();
  setTimeout(() => textarea.focus(), 0);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------- router

function route() {
  if (app.cleanup) {
    app.cleanup();
    app.cleanup = null;
  }
  const hash = location.hash || '#/';
  const m = hash.match(/^#\/p\/([a-z0-9-]+)/i);
  const el = root();
  const cfg = app.config;
  if (cfg && cfg.auth === 'oidc' && !getToken()) {
    app.cleanup = signedOutView(el, cfg.oidc);
  } else if (m) {
    app.cleanup = projectView(el, m[1].toLowerCase(), { onUnauthorized });
  } else {
    app.cleanup = homeView(el);
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => {
  // Last line of defence: never let a failure vanish silently.
  showError(e.reason);
  e.preventDefault();
});
// The config says how people sign in; with an OpenID Connect provider a
// sign-in that has just come back is finished (and an expired token renewed)
// before any API call.
async function start() {
  await loadConfig();
  const cfg = app.config;
  if (cfg && cfg.auth === 'oidc') {
    try {
      await completeSignIn(cfg.oidc);
    } catch (e) {
      showError(e, 'Sign-in failed');
    }
    await currentToken(cfg.oidc);
    renderChrome();
    // ID tokens last about an hour: renew ahead of expiry while the page is open.
    setInterval(() => currentToken(cfg.oidc).then(() => renderChrome()), 5 * 60 * 1000);
  }
  route();
}

start();
