// Apna's dev-only Vite plugin: lets a person point at an element in the
// preview ("Select") and tell the agent where it is written.
//
// * Every intrinsic JSX element (`<h1>`, `<button>`, not components) of the
//   app's own .jsx/.tsx files gets `data-apna-src="src/App.tsx:12:5"` (path
//   from the project root, 1-based line and column of its `<`).
// * index.html gets a small script that, while the Apna UI has Select on,
//   outlines the tagged element under the pointer and, on click, posts its
//   source, tag, classes and text to the UI with `postMessage`. It takes
//   commands only from the UI's origin (the preview host without its first
//   label: `{id}.localhost:3000` → `localhost:3000`, or one named by
//   `APNA_UI_ORIGINS` where the UI lives elsewhere) and the parent window,
//   and posts only to that origin.
//
// * `GET /@apna/fresh` makes the dev server forget what it built from files
//   changed since: Apna's browser check calls it before it opens the page,
//   because Vite learns of a write from its file watcher, which under load
//   can lag behind the write by seconds, and until then serves what it built
//   before (Tailwind's CSS without the classes just written). A module whose
//   file is newer than the moment it was read is invalidated; so is a
//   stylesheet when anything under src/ or index.html is newer than it
//   (Tailwind builds it from their class names).
//
// `apply: "serve"`: none of this is in a production build (`vite build`).
// One shared file: Apna's template loader puts it into every project next to
// the starter's vite.config, which imports it.
import { parseSync } from "vite";
import fs from "node:fs/promises";
import path from "node:path";

const SCRIPTABLE = /\.[jt]sx$/;

/** 1-based line and column of each offset, from a table of line starts. */
function locator(code) {
  const starts = [0];
  for (let i = 0; i < code.length; i++) if (code.charCodeAt(i) === 10) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return [lo + 1, offset - starts[lo] + 1];
  };
}

/** Calls `visit` on every node of an ESTree-shaped tree. */
function walk(node, visit) {
  if (!node || typeof node !== "object") return;
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit);
    return;
  }
  if (typeof node.type === "string") visit(node);
  for (const key in node) {
    if (key !== "parent") walk(node[key], visit);
  }
}

/** `code` with `data-apna-src` on each intrinsic element, or null when there is nothing to tag. */
export function tagSource(code, file) {
  const lang = file.endsWith(".tsx") ? "tsx" : "jsx";
  const { program, errors } = parseSync(file, code, { lang, sourceType: "module" });
  // A file that does not parse is left for the real compiler to report.
  if (errors && errors.length) return null;
  const at = locator(code);
  const inserts = [];
  walk(program, (n) => {
    if (n.type !== "JSXOpeningElement" || n.name.type !== "JSXIdentifier") return;
    if (!/^[a-z]/.test(n.name.name)) return;
    if (n.attributes.some((a) => a.type === "JSXAttribute" && a.name && a.name.name === "data-apna-src")) return;
    const [line, col] = at(n.start);
    inserts.push([n.name.end, ` data-apna-src="${file}:${line}:${col}"`]);
  });
  if (!inserts.length) return null;
  inserts.sort((a, b) => b[0] - a[0]);
  let out = code;
  for (const [pos, text] of inserts) out = out.slice(0, pos) + text + out.slice(pos);
  return out;
}

// Runs in the preview page. Kept small and dependency-free.
/**
 * The UI origins named by `APNA_UI_ORIGINS` (comma-separated; Apna passes its
 * CORS origins): where the UI is not on the preview domain's parent, as on
 * AWS (UI on CloudFront, previews under Caddy's domain). Anything that is not
 * exactly an origin is dropped.
 */
export function uiOrigins(value) {
  return String(value || "")
    .split(",")
    .map((v) => v.trim())
    .filter((v) => {
      try {
        const u = new URL(v);
        return (u.protocol === "https:" || u.protocol === "http:") && u.origin === v;
      } catch {
        return false;
      }
    });
}

const selectScript = (configured) => `(() => {
  if (window.top === window) return;
  const host = location.host;
  const parent = host.split(".").slice(1).join(".");
  const trusted = ${JSON.stringify(configured)};
  if (parent) trusted.push(location.protocol + "//" + parent);
  if (!trusted.length) return;
  const port = parent.includes(":") ? parent.slice(parent.lastIndexOf(":")) : "";
  if (parent.startsWith("localhost")) {
    trusted.push(location.protocol + "//127.0.0.1" + port, location.protocol + "//[::1]" + port);
  }
  let ui = null;
  let on = false;
  let box = null;
  const post = (msg) => { if (ui) window.parent.postMessage(msg, ui); };
  const tagged = (el) => (el && el.closest ? el.closest("[data-apna-src]") : null);
  function outline(el) {
    if (!box) {
      box = document.createElement("div");
      box.setAttribute("data-apna-overlay", "");
      box.style.cssText = "position:fixed;z-index:2147483647;pointer-events:none;border:2px solid #6366f1;background:rgba(99,102,241,.12);border-radius:3px;transition:all 40ms;";
      document.documentElement.appendChild(box);
    }
    if (!el) { box.style.display = "none"; return; }
    const r = el.getBoundingClientRect();
    Object.assign(box.style, { display: "block", left: r.left + "px", top: r.top + "px", width: r.width + "px", height: r.height + "px" });
  }
  function setMode(next) {
    on = next;
    document.documentElement.style.cursor = on ? "crosshair" : "";
    if (!on) outline(null);
  }
  function onMove(e) { if (on) outline(tagged(e.target)); }
  function onClick(e) {
    if (!on) return;
    const el = tagged(e.target);
    if (!el) return;
    e.preventDefault();
    e.stopPropagation();
    setMode(false);
    const text = (el.innerText || el.textContent || "").replace(/\\s+/g, " ").trim();
    post({
      type: "apna:selected",
      source: el.getAttribute("data-apna-src"),
      tag: el.tagName.toLowerCase(),
      classes: (el.getAttribute("class") || "").slice(0, 500),
      text: text.slice(0, 300),
    });
  }
  addEventListener("mousemove", onMove, true);
  addEventListener("click", onClick, true);
  addEventListener("keydown", (e) => {
    if (on && e.key === "Escape") { setMode(false); post({ type: "apna:select-cancelled" }); }
  }, true);
  addEventListener("message", (e) => {
    if (e.source !== window.parent || !trusted.includes(e.origin)) return;
    const d = e.data;
    if (!d || typeof d !== "object") return;
    ui = e.origin;
    if (d.type === "apna:select") setMode(!!d.on);
    if (d.type === "apna:hello") post({ type: "apna:ready" });
  });
  for (const origin of trusted) window.parent.postMessage({ type: "apna:ready" }, origin);
})();`;

/** Milliseconds a file's time may lag the clock (the kernel stamps files from a coarse clock). */
const MTIME_SLACK_MS = 20;
/** Entries looked at under src/ at most, so a huge tree cannot stall a check. */
const MAX_SCANNED = 5000;

/** The newest modification time (ms) of the files under `dir`, and of `extra`. */
async function newestUnder(dir, extra) {
  let newest = 0;
  let seen = 0;
  const stack = [dir];
  while (stack.length && seen < MAX_SCANNED) {
    const d = stack.pop();
    let entries = [];
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      seen++;
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && !e.name.startsWith(".")) stack.push(p);
      } else {
        newest = Math.max(newest, await mtimeOf(p, 0));
      }
    }
  }
  for (const f of extra) newest = Math.max(newest, await mtimeOf(f, 0));
  return newest;
}

async function mtimeOf(file, missing) {
  try {
    return (await fs.stat(file)).mtimeMs;
  } catch {
    return missing;
  }
}

const STYLESHEET = /\.(css|scss|sass|less|styl|stylus|pcss|postcss)$|[?&]lang\.css/;

/** Invalidates what the dev server built from files changed since; returns their ids. */
async function forgetChanged(server, root, loadedAt) {
  const env = server.environments && server.environments.client;
  const graph = (env && env.moduleGraph) || server.moduleGraph;
  let sources = null;
  const stale = [];
  for (const mod of graph.idToModuleMap.values()) {
    const at = loadedAt.get(mod.id);
    if (!mod.transformResult || !mod.file || at === undefined) continue;
    // Only the project's own files: not packages, not virtual modules (`/@react-refresh`).
    if (!mod.file.startsWith(root + path.sep) || mod.file.includes("/node_modules/")) continue;
    let changed = await mtimeOf(mod.file, Infinity);
    if (STYLESHEET.test(mod.id)) {
      if (sources === null) sources = await newestUnder(path.join(root, "src"), [path.join(root, "index.html")]);
      changed = Math.max(changed, sources);
    }
    if (changed > at - MTIME_SLACK_MS) {
      graph.invalidateModule(mod);
      loadedAt.delete(mod.id);
      stale.push(mod.id);
    }
  }
  return stale;
}

/** The plugin: source tags and the select script, in `vite` (dev) only. */
export default function apnaSource() {
  let root = process.cwd();
  // Module id → when its file was read (ms): `load` runs first, before any
  // plugin transforms what was read.
  const loadedAt = new Map();
  const script = selectScript(uiOrigins(process.env.APNA_UI_ORIGINS));
  return {
    name: "apna-source",
    apply: "serve",
    enforce: "pre",
    configResolved(config) {
      root = config.root;
    },
    configureServer(server) {
      server.middlewares.use("/@apna/fresh", (req, res) => {
        forgetChanged(server, root, loadedAt).then(
          (stale) => {
            res.setHeader("content-type", "application/json");
            res.setHeader("cache-control", "no-store");
            res.end(JSON.stringify({ invalidated: stale.map((id) => path.relative(root, id.split("?")[0])) }));
          },
          (err) => {
            res.statusCode = 500;
            res.end(String(err && err.message ? err.message : err));
          },
        );
      });
    },
    load(id) {
      loadedAt.set(id, Date.now());
      return null;
    },
    transform(code, id) {
      const file = id.split("?")[0];
      if (!SCRIPTABLE.test(file) || file.includes("/node_modules/")) return null;
      const rel = path.relative(root, file).split(path.sep).join("/");
      if (rel.startsWith("..")) return null;
      const out = tagSource(code, rel);
      // Attributes are added inside lines, so line numbers stay right.
      return out === null ? null : { code: out, map: null };
    },
    transformIndexHtml() {
      return [{ tag: "script", children: script, injectTo: "head" }];
    },
  };
}
