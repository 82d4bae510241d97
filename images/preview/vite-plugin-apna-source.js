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
//   label: `{id}.localhost:3000` → `localhost:3000`) and the parent window,
//   and posts only to that origin.
//
// `apply: "serve"`: none of this is in a production build (`vite build`).
// One shared file: Apna's template loader puts it into every project next to
// the starter's vite.config, which imports it.
import { parseSync } from "vite";
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
const SELECT_SCRIPT = `(() => {
  if (window.top === window) return;
  const host = location.host;
  const parent = host.split(".").slice(1).join(".");
  if (!parent) return;
  const trusted = [location.protocol + "//" + parent];
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

/** The plugin: source tags and the select script, in `vite` (dev) only. */
export default function apnaSource() {
  let root = process.cwd();
  return {
    name: "apna-source",
    apply: "serve",
    enforce: "pre",
    configResolved(config) {
      root = config.root;
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
      return [{ tag: "script", children: SELECT_SCRIPT, injectTo: "head" }];
    },
  };
}
