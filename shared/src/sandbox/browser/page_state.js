// Evaluated in the checked page once it has settled: Vite's error overlay
// (its shadow DOM holds the message and the file) and whether the root
// element shows anything at all.
(() => {
  const overlay = document.querySelector('vite-error-overlay');
  let ov = null;
  if (overlay) {
    const q = (s) => ((overlay.shadowRoot && overlay.shadowRoot.querySelector(s)) || {}).textContent || '';
    ov = { message: (q('.message-body') || q('.message')).trim(), file: q('.file').trim() };
  }
  const root = document.getElementById('root') || document.body;
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return false;
    const s = getComputedStyle(el);
    return s.visibility !== 'hidden' && s.display !== 'none' && Number(s.opacity) > 0;
  };
  let visible = (root.innerText || '').trim().length > 0;
  if (!visible) {
    const media = 'img,svg,canvas,video,iframe,input,textarea,select,button,picture,object,embed';
    visible = [...root.querySelectorAll(media)].some(shown);
  }
  if (!visible) {
    visible = [...root.querySelectorAll('*')].some((el) => {
      if (!shown(el)) return false;
      const s = getComputedStyle(el);
      const bg = s.backgroundColor;
      return (s.backgroundImage && s.backgroundImage !== 'none') ||
        (bg && bg !== 'transparent' && !/^rgba\(.*,\s*0\)$/.test(bg)) ||
        parseFloat(s.borderTopWidth) > 0 || parseFloat(s.borderLeftWidth) > 0;
    });
  }
  const brokenImages = [...document.images]
    .filter((i) => i.complete && i.naturalWidth === 0 && i.currentSrc)
    .map((i) => i.currentSrc);
  return { overlay: ov, blank: !visible, root: root.id ? `#${root.id}` : 'body', broken_images: brokenImages };
})()
