// Images attached to a prompt or chat message: an attach button, paste from
// the clipboard and drag-and-drop onto the text box, thumbnails with remove,
// and a clear line for files that cannot go (wrong type, too large, too many).
//
// The server checks every image again from its bytes; the checks here only
// spare a round trip. Images larger than the model takes are scaled down
// here too, so a message with screenshots stays a small request.

import { h, mount } from './dom.js';

export const MAX_IMAGES = 5;
export const MAX_BYTES = 5 * 1024 * 1024;
const TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];
// What the model takes (as the server scales): long edge 1568 px, 1092² pixels.
const MAX_EDGE = 1568;
const MAX_PIXELS = 1092 * 1092;

function mb(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

/** The data URL of a blob. */
function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

/** The file scaled to what the model takes, or the file itself when it fits. */
async function fitted(file) {
  if (file.type === 'image/gif') return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return file; // the server says what is wrong with it
  }
  const { width, height } = bitmap;
  const scale = Math.min(MAX_EDGE / Math.max(width, height), Math.sqrt(MAX_PIXELS / (width * height)));
  if (scale >= 1) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.floor(width * scale));
  canvas.height = Math.max(1, Math.floor(height * scale));
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const type = file.type === 'image/jpeg' ? 'image/jpeg' : 'image/png';
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, 0.9));
  return blob || file;
}

/**
 * An attachment tray for `textarea`: returns { tray, button, images(), clear(), count() }.
 * `tray` holds thumbnails and errors; `button` opens the file picker.
 */
export function attachmentTray(textarea, { label = 'Attach images' } = {}) {
  const items = []; // { file, url, name }
  const thumbs = h('ul', { class: 'attach-thumbs', 'aria-label': 'Attached images' });
  const error = h('p', { class: 'attach-error', role: 'alert', hidden: true });
  const tray = h('div', { class: 'attach-tray', hidden: true }, thumbs, error);
  const picker = h('input', { type: 'file', accept: TYPES.join(','), multiple: true, hidden: true, 'data-attach-input': '' });
  const button = h(
    'button',
    { class: 'btn btn-small btn-ghost attach-btn', type: 'button', 'aria-label': label, title: `${label} (or paste / drop them): PNG, JPEG, WebP or GIF, up to ${MAX_IMAGES}, 5 MB each` },
    '+ Image',
    picker,
  );
  button.addEventListener('click', (e) => {
    if (e.target === picker) return;
    picker.click();
  });
  picker.addEventListener('change', () => {
    add([...picker.files]);
    picker.value = '';
  });

  function showError(messages) {
    error.hidden = !messages.length;
    error.textContent = messages.join(' ');
    render();
  }

  function render() {
    tray.hidden = !items.length && error.hidden;
    mount(
      thumbs,
      items.map((it, i) =>
        h(
          'li',
          { class: 'attach-thumb' },
          h('img', { src: it.url, alt: it.name || `image ${i + 1}` }),
          h('button', { type: 'button', class: 'attach-remove', 'aria-label': `Remove ${it.name || `image ${i + 1}`}`, onclick: () => remove(i) }, '×'),
        ),
      ),
    );
  }

  function remove(i) {
    const [it] = items.splice(i, 1);
    if (it) URL.revokeObjectURL(it.url);
    showError([]);
  }

  /** Adds files, refusing (with a reason) what cannot go. */
  function add(files) {
    const problems = [];
    for (const f of files) {
      const name = f.name || 'pasted image';
      if (!TYPES.includes(f.type)) {
        problems.push(`${name}: only PNG, JPEG, WebP or GIF images can be attached.`);
      } else if (f.size > MAX_BYTES) {
        problems.push(`${name} is ${mb(f.size)}; an image can be at most 5 MB.`);
      } else if (items.length >= MAX_IMAGES) {
        problems.push(`At most ${MAX_IMAGES} images per message.`);
        break;
      } else {
        items.push({ file: f, url: URL.createObjectURL(f), name: f.name || '' });
      }
    }
    showError(problems);
  }

  textarea.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (!files.length) return;
    e.preventDefault();
    add(files);
  });
  const target = textarea.closest('form') || textarea;
  target.addEventListener('dragover', (e) => {
    if (![...(e.dataTransfer ? e.dataTransfer.types : [])].includes('Files')) return;
    e.preventDefault();
    target.classList.add('drop-target');
  });
  target.addEventListener('dragleave', () => target.classList.remove('drop-target'));
  target.addEventListener('drop', (e) => {
    target.classList.remove('drop-target');
    const files = [...(e.dataTransfer ? e.dataTransfer.files : [])];
    if (!files.length) return;
    e.preventDefault();
    add(files);
  });

  return {
    tray,
    button,
    count: () => items.length,
    /** The images as the API takes them: [{ data, name }]. */
    async images() {
      return Promise.all(items.map(async (it) => ({ data: await dataUrl(await fitted(it.file)), name: it.name || undefined })));
    },
    /** Object URLs of the attached images (for showing the sent message). */
    previews: () => items.map((it) => URL.createObjectURL(it.file)),
    clear() {
      items.splice(0).forEach((it) => URL.revokeObjectURL(it.url));
      showError([]);
    },
  };
}
