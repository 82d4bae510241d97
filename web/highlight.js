// Small regex tokenizers for the code viewer (ts/tsx/js/css/html/json) and a
// unified-diff renderer. Output is DOM nodes, never HTML strings, so file
// contents (untrusted, written by a model) cannot inject markup.

const JS_KEYWORDS =
  'abstract|as|async|await|break|case|catch|class|const|continue|debugger|declare|default|delete|do|else|enum|export|extends|false|finally|for|from|function|get|if|implements|import|in|instanceof|interface|keyof|let|namespace|new|null|of|private|protected|public|readonly|return|satisfies|set|static|super|switch|this|throw|true|try|type|typeof|undefined|var|void|while|with|yield';

// Each language is an ordered list of [class, sticky regex]; the first match wins.
const RULES = {
  js: [
    ['com', /\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$)/y],
    ['str', /`(?:\\[\s\S]|\$\{[^}]*\}|[^`\\])*`?|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?/y],
    ['tag', /<\/?[A-Za-z][\w.:-]*|\/?>/y],
    ['kw', new RegExp(`\\b(?:${JS_KEYWORDS})\\b`, 'y')],
    ['num', /\b(?:0[xX][\da-fA-F_]+|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?n?)\b/y],
    ['type', /\b[A-Z][\w]*\b/y],
    ['fn', /\b[a-zA-Z_$][\w$]*(?=\s*\()/y],
    ['attr', /\b[a-zA-Z_$][\w$-]*(?==[{"'])/y],
    ['id', /[a-zA-Z_$][\w$]*/y],
    ['punct', /[{}()[\];,.=<>!+\-*/%&|^~?:]+/y],
  ],
  css: [
    ['com', /\/\*[\s\S]*?(?:\*\/|$)/y],
    ['str', /"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?/y],
    ['kw', /@[\w-]+/y],
    ['attr', /[\w-]+(?=\s*:[^:{;]*[;}])/y],
    ['num', /#[\da-fA-F]{3,8}\b|-?\d*\.?\d+(?:%|[a-z]+)?/y],
    ['type', /[.#]?[a-zA-Z_][\w-]*/y],
    ['punct', /[{}();:,>+~*[\]=]+/y],
  ],
  html: [
    ['com', /<!--[\s\S]*?(?:-->|$)/y],
    ['tag', /<\/?[A-Za-z][\w:-]*|\/?>|<!DOCTYPE[^>]*>/iy],
    ['attr', /\b[a-zA-Z_:][\w:.-]*(?==)/y],
    ['str', /"[^"]*"?|'[^']*'?/y],
    ['text', /[^<"'=\w]+|\w+/y],
  ],
  json: [
    ['attr', /"(?:\\.|[^"\\\n])*"(?=\s*:)/y],
    ['str', /"(?:\\.|[^"\\\n])*"?/y],
    ['num', /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y],
    ['kw', /\b(?:true|false|null)\b/y],
    ['punct', /[{}[\]:,]/y],
  ],
};

/** The tokenizer name for a file path ('' when plain text). */
export function languageOf(path) {
  const ext = (path.match(/\.([a-z0-9]+)$/i) || [])[1] || '';
  switch (ext.toLowerCase()) {
    case 'ts':
    case 'tsx':
    case 'js':
    case 'jsx':
    case 'mjs':
    case 'cjs':
      return 'js';
    case 'css':
      return 'css';
    case 'html':
    case 'htm':
    case 'svg':
      return 'html';
    case 'json':
      return 'json';
    default:
      return '';
  }
}

/** Splits `code` into [class, text] tokens for `lang` (one plain token when unknown). */
export function tokenize(code, lang) {
  const rules = RULES[lang];
  if (!rules) return [['', code]];
  const out = [];
  let i = 0;
  let plainFrom = 0;
  const flushPlain = (to) => {
    if (to > plainFrom) out.push(['', code.slice(plainFrom, to)]);
  };
  while (i < code.length) {
    const ch = code[i];
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      i += 1;
      continue;
    }
    let matched = false;
    for (const [cls, re] of rules) {
      re.lastIndex = i;
      const m = re.exec(code);
      if (m && m[0].length > 0) {
        flushPlain(i);
        out.push([cls === 'id' || cls === 'text' ? '' : cls, m[0]]);
        i += m[0].length;
        plainFrom = i;
        matched = true;
        break;
      }
    }
    if (!matched) i += 1;
  }
  flushPlain(code.length);
  return out;
}

/** Renders highlighted code as a table-free list of numbered lines. */
export function renderCode(code, path) {
  const lang = languageOf(path);
  const pre = document.createElement('pre');
  pre.className = 'code';
  const codeEl = document.createElement('code');
  let line = document.createElement('span');
  line.className = 'line';
  const lines = [line];
  for (const [cls, text] of tokenize(code, lang)) {
    const parts = text.split('\n');
    parts.forEach((part, idx) => {
      if (idx > 0) {
        line = document.createElement('span');
        line.className = 'line';
        lines.push(line);
      }
      if (!part) return;
      if (cls) {
        const span = document.createElement('span');
        span.className = `tok-${cls}`;
        span.textContent = part;
        line.append(span);
      } else {
        line.append(part);
      }
    });
  }
  if (lines.length > 1 && lines[lines.length - 1].childNodes.length === 0) lines.pop();
  // Lines are blocks, so no newline text between them (it would double the spacing).
  codeEl.append(...lines);
  pre.append(codeEl);
  return pre;
}

/** Parses unified diff text into files of hunks of lines. */
export function parseDiff(text) {
  const files = [];
  let file = null;
  let oldNo = 0;
  let newNo = 0;
  const startFile = (name) => {
    file = { name, lines: [], added: 0, removed: 0 };
    files.push(file);
  };
  for (const raw of (text || '').split('\n')) {
    if (raw.startsWith('diff --git ')) {
      const m = raw.match(/ b\/(.+)$/);
      startFile(m ? m[1] : raw.slice(11));
      continue;
    }
    if (raw.startsWith('--- ')) {
      if (!file || file.lines.length) startFile(raw.slice(4).replace(/^a\//, ''));
      continue;
    }
    if (raw.startsWith('+++ ')) {
      const name = raw.slice(4).replace(/^b\//, '');
      if (file && name !== '/dev/null') file.name = name;
      continue;
    }
    if (!file) {
      if (!raw.startsWith('@@')) continue;
      startFile('changes');
    }
    if (raw.startsWith('@@')) {
      const m = raw.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/);
      if (m) {
        oldNo = Number(m[1]);
        newNo = Number(m[2]);
      }
      file.lines.push({ kind: 'hunk', text: raw });
    } else if (raw.startsWith('+')) {
      file.lines.push({ kind: 'add', text: raw.slice(1), newNo: newNo++ });
      file.added += 1;
    } else if (raw.startsWith('-')) {
      file.lines.push({ kind: 'del', text: raw.slice(1), oldNo: oldNo++ });
      file.removed += 1;
    } else if (raw.startsWith(' ')) {
      file.lines.push({ kind: 'ctx', text: raw.slice(1), oldNo: oldNo++, newNo: newNo++ });
    } else if (raw.startsWith('\\')) {
      file.lines.push({ kind: 'meta', text: raw });
    }
  }
  return files;
}

/** Renders a unified diff with +/− colouring and old/new line numbers. */
export function renderDiff(text) {
  const wrap = document.createElement('div');
  wrap.className = 'diff';
  const files = parseDiff(text);
  if (!files.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'No changes in this version.';
    wrap.append(p);
    return wrap;
  }
  for (const f of files) {
    const section = document.createElement('section');
    section.className = 'diff-file';
    const head = document.createElement('header');
    const name = document.createElement('span');
    name.className = 'diff-name';
    name.textContent = f.name;
    const stats = document.createElement('span');
    stats.className = 'diff-stats';
    const a = document.createElement('span');
    a.className = 'plus';
    a.textContent = `+${f.added}`;
    const r = document.createElement('span');
    r.className = 'minus';
    r.textContent = `−${f.removed}`;
    stats.append(a, ' ', r);
    head.append(name, stats);
    section.append(head);
    const body = document.createElement('div');
    body.className = 'diff-body';
    for (const l of f.lines) {
      const row = document.createElement('div');
      row.className = `dl dl-${l.kind}`;
      const o = document.createElement('span');
      o.className = 'ln';
      o.textContent = l.oldNo ?? '';
      const n = document.createElement('span');
      n.className = 'ln';
      n.textContent = l.newNo ?? '';
      const sign = document.createElement('span');
      sign.className = 'sign';
      sign.textContent = l.kind === 'add' ? '+' : l.kind === 'del' ? '−' : ' ';
      const t = document.createElement('span');
      t.className = 'dt';
      t.textContent = l.text;
      if (l.kind === 'hunk' || l.kind === 'meta') row.append(t);
      else row.append(o, n, sign, t);
      body.append(row);
    }
    section.append(body);
    wrap.append(section);
  }
  return wrap;
}
