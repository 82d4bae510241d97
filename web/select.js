// The UI side of "Select": talks to the script the dev server injects into
// the preview (images/preview/vite-plugin-apna-source.js) over postMessage.
// Messages are taken only from the preview frame's window at the preview's
// origin, and sent only to that origin: the preview is another origin (its
// own host), and anything else on the page may post messages too.

/**
 * A bridge to `iframe`'s preview. `onSelected({source, tag, classes, text})`
 * runs when the person clicks an element; `onModeChange(on)` when Select
 * turns on or off (the preview turns it off after a click or Escape).
 */
export function selectBridge(iframe, { onSelected, onModeChange, onReady }) {
  let origin = null;
  let on = false;

  function setMode(next) {
    on = next;
    onModeChange(on);
  }

  function listener(e) {
    if (!origin || e.origin !== origin || e.source !== iframe.contentWindow) return;
    const d = e.data;
    if (!d || typeof d !== 'object') return;
    if (d.type === 'apna:ready') {
      if (onReady) onReady();
      // A reload (HMR full reload, navigation) resets the page: re-send the mode.
      if (on) send({ type: 'apna:select', on: true });
    } else if (d.type === 'apna:selected') {
      const text = (v, max) => (typeof v === 'string' ? v.slice(0, max) : '');
      if (typeof d.source !== 'string' || typeof d.tag !== 'string') return;
      setMode(false);
      onSelected({ source: text(d.source, 300), tag: text(d.tag, 40), classes: text(d.classes, 1000), text: text(d.text, 1000) });
    } else if (d.type === 'apna:select-cancelled') {
      setMode(false);
    }
  }
  window.addEventListener('message', listener);

  function send(msg) {
    if (origin && iframe.contentWindow) iframe.contentWindow.postMessage(msg, origin);
  }

  return {
    /** The preview's URL changed (a new project, a sign-in link). */
    setUrl(url) {
      try {
        origin = new URL(url, location.href).origin;
      } catch {
        origin = null;
      }
    },
    toggle(next = !on) {
      setMode(next);
      send({ type: 'apna:select', on: next });
    },
    isOn: () => on,
    dispose() {
      window.removeEventListener('message', listener);
    },
  };
}
