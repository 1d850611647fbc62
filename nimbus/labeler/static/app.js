// Nimbus labeller: the page. No build step, no dependencies.
// The label being edited is a Uint8Array (one class value per pixel, 255 = no data) at the sample's
// full resolution; everything else (image, overlays, selection) is drawn around it. Stage
// coordinates are the sample's pixels; the context (the area around the sample, when the samples
// folder stores one) is drawn dimmed under it at its offset, so it may start at negative x, y.
// Class names and colours come from the server (/api/info: the legend of nimbus.legend): none here.
"use strict";

(function () {
  const NODATA = 255;
  const params = new URLSearchParams(location.search);
  const AUTOSAVE_MS = params.has("autosave") ? Number(params.get("autosave")) : 2000;
  const UNDO_LIMIT = 100;
  const $ = (id) => document.getElementById(id);

  const S = {
    info: null,
    samples: [],
    index: -1,
    sample: null, // manifest entry of the open sample
    w: 0,
    h: 0,
    label: null, // Uint8Array w*h
    revision: 0,
    dirty: false,
    saving: null, // promise of the save in flight
    conflict: false,
    undo: [],
    redo: [],
    selection: null, // Uint8Array w*h (1 = selected) or null
    poly: [], // polygon / lasso vertices in progress [[x, y], ...]
    cls: 1,
    tool: "brush",
    base: "truecolor",
    src: {}, // base layer name -> Uint8ClampedArray RGBA (as served)
    ctx: null, // {x, y, w, h}: the context window relative to the sample (x, y <= 0), or null
    ctxsrc: {}, // base layer name -> context RGBA
    view: { s: 1, tx: 0, ty: 0 },
    loaded: false,
    colors: {},
    manifest: [], // the samples in manifest order
    source: "", // where the open label came from (hand, auto, prediction, empty)
    sort: "score-desc",
    names: {}, // id -> the distinguishing part of its name
    prefix: "", // what every name shares
  };
  window.nimbus = S; // handle for debugging and for the browser test

  // ---------- helpers ----------
  function b64encode(bytes) {
    let out = "";
    const step = 0x8000;
    for (let i = 0; i < bytes.length; i += step) out += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
    return btoa(out);
  }
  function b64decode(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function sameBytes(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function message(text, kind, actions) {
    const el = $("message");
    el.textContent = text || "";
    el.className = text ? "show " + (kind || "") : "";
    for (const [label, fn] of actions || []) {
      const b = document.createElement("button");
      b.textContent = label;
      b.onclick = fn;
      el.appendChild(b);
    }
  }
  function setSaveState(text, cls) {
    const el = $("save-state");
    el.textContent = text;
    el.className = cls || "";
  }
  function backupKey(id) {
    return "nimbus-label:" + (S.info ? S.info.root : "") + ":" + id;
  }
  async function api(method, url, body) {
    const opt = { method, headers: {} };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const resp = await fetch(url, opt);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data };
  }
  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("cannot load " + url));
      img.src = url;
    });
  }
  function sid() { return S.sample ? S.sample.id : null; }
  function enc(id) { return encodeURIComponent(id); }

  // ---------- sample list ----------
  // The selection method a sample's score is in (std, entropy, mutual_information): scores of
  // different methods are on different scales, so they are labelled and never sorted together.
  function methodOf(s) {
    return (s.extra && s.extra.method) || (S.info && S.info.selection && S.info.selection.method) || "score";
  }
  const METHOD_SHORT = { std: "std", entropy: "entropy", mutual_information: "MI" };
  // Names without what they all share: "<product>__r<row>_c<col>" ids keep the product tokens that
  // differ between products (none when there is one product) and the window, shown as "r2000 c1000".
  function splitTokens(text) { return text.split(/(?<=[_.-])/); }
  function shortNames(samples) {
    const parts = samples.map((s) => {
      const m = /^(.*)__r0*(\d+)_c0*(\d+)$/.exec(s.id);
      return m ? { product: m[1], win: `r${m[2]} c${m[3]}` } : { product: s.id, win: "" };
    });
    const products = [...new Set(parts.map((p) => p.product))];
    const tok = products.map(splitTokens);
    const same = (k) => tok.every((t) => t.length === tok[0].length && t[k] === tok[0][k]);
    const keep = {};
    const shared = [];
    if (products.length > 1) {
      if (tok.every((t) => t.length === tok[0].length)) {
        // The fewest differing token positions that tell the products apart: most distinct values
        // first, then the longest token (the sensing time of a Sentinel-2 id before "S2A"/"S2B").
        const distinct = (k) => new Set(tok.map((t) => t[k])).size;
        const cand = tok[0].map((_, k) => k).filter((k) => !same(k));
        cand.sort((a, b) => distinct(b) - distinct(a) || tok[0][b].length - tok[0][a].length || a - b);
        const chosen = [];
        for (const k of cand) {
          chosen.push(k);
          if (new Set(tok.map((t) => chosen.map((j) => t[j]).join("|"))).size === products.length) break;
        }
        chosen.sort((a, b) => a - b);
        const show = (t, trim) => { const v = t.replace(/[_.-]+$/, ""); return trim ? v.replace(/^(\d{8})T\d{6}$/, "$1") : v; };
        // a date-time token ("20230704T102559") shows its date alone when the dates suffice
        const trimmed = tok.map((t) => chosen.map((k) => show(t[k], true)).join(" "));
        const trim = new Set(trimmed).size === products.length;
        for (const [i, p] of products.entries()) keep[p] = chosen.map((k) => show(tok[i][k], trim)).join(" ");
        tok[0].forEach((t, k) => { if (same(k)) shared.push(t); });
      } else {
        let n = 0; // the longest shared token prefix
        while (tok.every((t) => n < t.length - 1 && t[n] === tok[0][n])) n++;
        for (const [i, p] of products.entries()) keep[p] = tok[i].slice(n).join("");
        shared.push(...tok[0].slice(0, n));
      }
    } else if (products.length === 1) {
      keep[products[0]] = "";
      shared.push(products[0]);
    }
    const out = {};
    samples.forEach((s, i) => {
      const p = parts[i];
      out[s.id] = [keep[p.product], p.win].filter(Boolean).join(" ") || s.id;
    });
    return { names: out, prefix: shared.join("").replace(/[_.-]+$/, "") };
  }
  function sortSamples() {
    const key = S.sort;
    const byName = (a, b) => (S.names[a.id] < S.names[b.id] ? -1 : S.names[a.id] > S.names[b.id] ? 1 : 0);
    const score = (s) => (s.score == null ? -Infinity : Number(s.score));
    const order = new Map(S.manifest.map((s, i) => [s.id, i]));
    const list = S.manifest.slice();
    if (key === "score-desc" || key === "score-asc") {
      const sign = key === "score-desc" ? -1 : 1;
      list.sort((a, b) => {
        const ma = methodOf(a), mb = methodOf(b);
        if (ma !== mb) return ma < mb ? -1 : 1; // one method's scores together, never interleaved
        const d = sign * (score(a) - score(b));
        return d || order.get(a.id) - order.get(b.id);
      });
    } else if (key === "name") list.sort(byName);
    else if (key === "status") list.sort((a, b) => (a.status === b.status ? order.get(a.id) - order.get(b.id) : a.status === "todo" ? -1 : 1));
    const current = sid();
    S.samples = list;
    S.index = current ? S.samples.findIndex((s) => s.id === current) : -1;
  }
  async function loadList() {
    const r = await api("GET", "/api/samples");
    if (!r.ok) { message("cannot list samples: " + (r.data && r.data.error), "error"); return; }
    S.manifest = r.data.samples;
    const short = shortNames(S.manifest);
    S.names = short.names;
    S.prefix = short.prefix;
    sortSamples();
    renderList();
  }
  function setSort(key) {
    S.sort = key;
    $("sort").value = key;
    try { localStorage.setItem("nimbus-label-sort", key); } catch (e) { /* private mode */ }
    sortSamples();
    renderList();
  }
  function scoreText(s) {
    if (s.score == null) return "";
    const m = methodOf(s);
    return `${METHOD_SHORT[m] || m} ${Number(s.score).toFixed(3)}`;
  }
  function renderList() {
    const ul = $("samples");
    ul.innerHTML = "";
    let done = 0;
    const methods = new Set(S.samples.map(methodOf));
    const grouped = S.sort.startsWith("score") && methods.size > 1;
    let group = null;
    S.samples.forEach((s, i) => {
      if (s.status === "done") done++;
      if (grouped && methodOf(s) !== group) {
        group = methodOf(s);
        const head = document.createElement("li");
        head.className = "group";
        head.dataset.method = group;
        head.textContent = `${group} scores`;
        head.title = "scores of one selection method; other methods are listed apart (different scales)";
        ul.appendChild(head);
      }
      const li = document.createElement("li");
      li.className = "sample " + s.status + (i === S.index ? " current" : "");
      li.dataset.id = s.id;
      li.dataset.method = methodOf(s);
      li.title = `${s.id}\n${s.product_id}\n${s.date}\nwindow ${s.window.join(", ")}\n${methodOf(s)} score ${s.score}`;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = s.status === "done" ? "✓" : "○";
      badge.title = s.status === "done" ? "done" : "to do";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = S.names[s.id] || s.id;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = scoreText(s);
      li.append(badge, name, score);
      li.onclick = () => openIndex(i);
      ul.appendChild(li);
    });
    $("progress").textContent = `${done} of ${S.samples.length} done`;
    $("list-prefix").textContent = S.prefix;
    $("list-prefix").title = S.prefix ? "every sample name starts with " + S.prefix : "";
  }
  function renderInfo(source) {
    if (!S.sample) return;
    const s = S.sample;
    if (source) S.source = source;
    $("revision").textContent = `revision ${S.revision}`;
    $("revision").title = `label from ${S.source}; the number of saves of this sample's label`;
    $("sample-info").textContent = `${S.names[s.id] || s.id} · ${s.date} · window ${s.window.join(",")} · ${S.w}×${S.h}` +
      ` · label from ${S.source}`;
    $("sample-info").title = `${s.product_id}\n${s.id}`;
  }

  // ---------- opening a sample ----------
  async function openIndex(i) {
    if (i < 0 || i >= S.samples.length) return;
    await flush();
    await openSample(S.samples[i].id);
  }
  async function openSample(id) {
    S.loaded = false;
    message("");
    const meta = await api("GET", "/api/samples/" + enc(id));
    if (!meta.ok) { message(meta.data ? meta.data.error : "cannot open " + id, "error"); return; }
    const lab = await api("GET", "/api/samples/" + enc(id) + "/label");
    if (!lab.ok) { message(lab.data ? lab.data.error : "cannot read the label of " + id, "error"); return; }
    S.sample = meta.data.sample;
    S.index = S.samples.findIndex((s) => s.id === id);
    S.w = lab.data.width;
    S.h = lab.data.height;
    S.label = b64decode(lab.data.data);
    S.revision = lab.data.revision;
    S.undo = [];
    S.redo = [];
    S.selection = null;
    S.poly = [];
    S.dirty = false;
    S.conflict = false;
    S.src = {};
    const layers = meta.data.layers;
    for (const c of ["base", "labelcanvas", "selcanvas"]) { $(c).width = S.w; $(c).height = S.h; }
    const readPixels = async (layer, w, h) => {
      const img = await loadImage(`/api/samples/${enc(id)}/layers/${layer}.png?r=${Date.now()}`);
      const cv = document.createElement("canvas");
      cv.width = w; cv.height = h;
      const ctx = cv.getContext("2d");
      ctx.drawImage(img, 0, 0);
      return ctx.getImageData(0, 0, w, h).data;
    };
    for (const name of ["truecolor", "falsecolor"]) {
      if (layers.includes(name)) S.src[name] = await readPixels(name, S.w, S.h);
    }
    // The context: where the sample sits in it, and its colour composites.
    const c = S.sample.context;
    S.ctx = c ? { x: c[0] - S.sample.window[0], y: c[1] - S.sample.window[1], w: c[2], h: c[3] } : null;
    S.ctxsrc = {};
    if (S.ctx) {
      for (const name of ["truecolor", "falsecolor"]) {
        if (layers.includes("context_" + name)) S.ctxsrc[name] = await readPixels("context_" + name, S.ctx.w, S.ctx.h);
      }
      if (!Object.keys(S.ctxsrc).length) S.ctx = null;
    }
    const cc = $("ctxcanvas");
    cc.width = S.ctx ? S.ctx.w : 1; cc.height = S.ctx ? S.ctx.h : 1;
    cc.style.left = (S.ctx ? S.ctx.x : 0) + "px";
    cc.style.top = (S.ctx ? S.ctx.y : 0) + "px";
    $("show-context").disabled = !S.ctx;
    for (const name of ["auto_label", "prediction", "uncertainty"]) {
      const img = $("ov-" + name);
      img.width = S.w; img.height = S.h;
      if (layers.includes(name)) img.src = `/api/samples/${enc(id)}/layers/${name}.png?r=${Date.now()}`;
      else img.removeAttribute("src");
      $("show-" + name).disabled = !layers.includes(name);
    }
    if (!S.src[S.base]) S.base = S.src.truecolor ? "truecolor" : "falsecolor";
    history.replaceState(null, "", "#sample=" + enc(id));
    renderBase();
    renderLabel();
    renderSelection();
    applyOverlays();
    fit();
    renderList();
    renderInfo(lab.data.source);
    setSaveState(lab.data.source === "hand" ? "saved" : "not saved yet", lab.data.source === "hand" ? "saved" : "");
    checkBackup(lab.data.revision);
    S.loaded = true;
  }

  // Unsaved edits survive a reload or a crash: every edit is mirrored to localStorage.
  function writeBackup() {
    try {
      localStorage.setItem(backupKey(sid()), JSON.stringify({ revision: S.revision, time: Date.now(), data: b64encode(S.label) }));
    } catch (e) {
      setSaveState("local backup failed: " + e.message, "dirty");
    }
  }
  function clearBackup(id) { localStorage.removeItem(backupKey(id || sid())); }
  function checkBackup(serverRevision) {
    const raw = localStorage.getItem(backupKey(sid()));
    if (!raw) return;
    let b;
    try { b = JSON.parse(raw); } catch (e) { clearBackup(); return; }
    const data = b64decode(b.data);
    if (data.length !== S.label.length || sameBytes(data, S.label)) { clearBackup(); return; }
    const restore = () => {
      pushUndo();
      S.label = data;
      renderLabel();
      markDirty(false);
      message("");
    };
    if (b.revision === serverRevision) {
      restore();
      message("restored unsaved edits from this browser's backup (" + new Date(b.time).toLocaleString() + ")");
    } else {
      message(
        `this browser holds unsaved edits made on revision ${b.revision}, but the sample was saved since (revision ${serverRevision}).`,
        "error",
        [["restore my edits", () => { restore(); }], ["discard them", () => { clearBackup(); message(""); }]],
      );
    }
  }

  // ---------- rendering ----------
  function lut() {
    const br = Number($("brightness").value), g = Number($("gamma").value);
    const t = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) t[v] = 255 * Math.pow(Math.min(1, (br * v) / 255), 1 / g);
    return t;
  }
  function paint(canvas, src, w, h, t) {
    const ctx = canvas.getContext("2d");
    if (!src) { ctx.clearRect(0, 0, w, h); return; }
    const img = ctx.createImageData(w, h);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = t[src[i]]; d[i + 1] = t[src[i + 1]]; d[i + 2] = t[src[i + 2]]; d[i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function renderBase() {
    const t = lut();
    paint($("base"), S.src[S.base], S.w, S.h, t);
    if (S.ctx) paint($("ctxcanvas"), S.ctxsrc[S.base] || S.ctxsrc.truecolor || S.ctxsrc.falsecolor, S.ctx.w, S.ctx.h, t);
  }
  function renderLabel() {
    const ctx = $("labelcanvas").getContext("2d");
    const img = ctx.createImageData(S.w, S.h);
    const d = img.data;
    const pal = [];
    for (let v = 0; v < 256; v++) pal.push(S.colors[v] || null);
    for (let p = 0, i = 0; p < S.label.length; p++, i += 4) {
      const c = pal[S.label[p]];
      if (c) { d[i] = c[0]; d[i + 1] = c[1]; d[i + 2] = c[2]; d[i + 3] = 255; }
    }
    ctx.putImageData(img, 0, 0);
    $("labelcanvas").style.opacity = $("show-label").checked ? $("op-label").value : 0;
  }
  function renderSelection() {
    const cv = $("selcanvas");
    const ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, S.w, S.h);
    if (S.selection) {
      const img = ctx.createImageData(S.w, S.h);
      const d = img.data;
      for (let p = 0, i = 0; p < S.selection.length; p++, i += 4) {
        if (!S.selection[p]) continue;
        const x = p % S.w, y = (p / S.w) | 0;
        const edge = x === 0 || y === 0 || x === S.w - 1 || y === S.h - 1 ||
          !S.selection[p - 1] || !S.selection[p + 1] || !S.selection[p - S.w] || !S.selection[p + S.w];
        if (edge) { d[i] = 255; d[i + 1] = 220; d[i + 2] = 0; d[i + 3] = 255; }
        else if (((x + y) & 7) === 0) { d[i] = 255; d[i + 1] = 220; d[i + 2] = 0; d[i + 3] = 120; }
      }
      ctx.putImageData(img, 0, 0);
    }
    if (S.poly.length) {
      ctx.strokeStyle = "#ffdc00";
      ctx.lineWidth = Math.max(1, 1.5 / S.view.s);
      ctx.beginPath();
      S.poly.forEach(([x, y], k) => (k ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
      ctx.stroke();
    }
  }
  function applyOverlays() {
    for (const name of ["auto_label", "prediction", "uncertainty"]) {
      const img = $("ov-" + name);
      const on = $("show-" + name).checked && img.getAttribute("src");
      img.style.display = on ? "block" : "none";
      img.style.opacity = $("op-" + name).value;
    }
    $("labelcanvas").style.opacity = $("show-label").checked ? $("op-label").value : 0;
    const cc = $("ctxcanvas");
    cc.style.display = S.ctx && $("show-context").checked ? "block" : "none";
    cc.style.filter = `brightness(${$("op-context").value})`;
  }

  // ---------- view: zoom and pan ----------
  function applyView() {
    const v = S.view;
    $("stage").style.transform = `translate(${v.tx}px, ${v.ty}px) scale(${v.s})`;
    $("stage").style.width = S.w + "px";
    $("stage").style.height = S.h + "px";
    // The editable area's frame, in screen pixels (a border inside the scaled stage would scale too).
    const f = $("frame");
    f.style.left = v.tx - 1 + "px";
    f.style.top = v.ty - 1 + "px";
    f.style.width = S.w * v.s + 2 + "px";
    f.style.height = S.h * v.s + 2 + "px";
  }
  // Fit: the sample as large as it goes while a band of its context stays visible around it (the
  // sample takes about 70 % of the viewport's shorter side, or all of the context fits if that is larger).
  function fit() {
    const r = $("viewport").getBoundingClientRect();
    const sample = Math.min(r.width / S.w, r.height / S.h);
    let s = sample * 0.98;
    if (S.ctx && $("show-context").checked) s = Math.max(Math.min(r.width / S.ctx.w, r.height / S.ctx.h) * 0.98, sample * 0.7);
    s = Math.max(0.05, s);
    S.view = { s, tx: (r.width - S.w * s) / 2, ty: (r.height - S.h * s) / 2 };
    applyView();
  }
  function zoomAt(cx, cy, factor) {
    const v = S.view;
    const s = Math.min(64, Math.max(0.05, v.s * factor));
    v.tx = cx - ((cx - v.tx) * s) / v.s;
    v.ty = cy - ((cy - v.ty) * s) / v.s;
    v.s = s;
    applyView();
    renderSelection();
  }
  function toPixel(ev) {
    const r = $("viewport").getBoundingClientRect();
    return [Math.floor((ev.clientX - r.left - S.view.tx) / S.view.s), Math.floor((ev.clientY - r.top - S.view.ty) / S.view.s)];
  }
  // Client coordinates of the centre of pixel (x, y): lets scripts (and the browser test) aim.
  S.toClient = function (x, y) {
    const r = $("viewport").getBoundingClientRect();
    return { x: r.left + S.view.tx + (x + 0.5) * S.view.s, y: r.top + S.view.ty + (y + 0.5) * S.view.s };
  };

  // ---------- editing ----------
  function pushUndo() {
    S.undo.push(S.label.slice());
    if (S.undo.length > UNDO_LIMIT) S.undo.shift();
    S.redo = [];
  }
  function undo() {
    if (!S.undo.length) return;
    S.redo.push(S.label);
    S.label = S.undo.pop();
    renderLabel();
    markDirty(true);
  }
  function redo() {
    if (!S.redo.length) return;
    S.undo.push(S.label);
    S.label = S.redo.pop();
    renderLabel();
    markDirty(true);
  }
  let autosaveTimer = null;
  function markDirty(render) {
    if (render) renderLabel();
    S.dirty = true;
    setSaveState("unsaved changes", "dirty");
    writeBackup();
    if (autosaveTimer) clearTimeout(autosaveTimer);
    if (AUTOSAVE_MS > 0) autosaveTimer = setTimeout(() => save(null), AUTOSAVE_MS);
  }
  function dab(cx, cy, r) {
    const v = S.cls;
    const r2 = r * r;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(S.w - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(S.h - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++)
      for (let x = x0; x <= x1; x++) {
        const dx = x - cx, dy = y - cy;
        if (dx * dx + dy * dy <= r2) S.label[y * S.w + x] = v;
      }
  }
  function strokeTo(x0, y0, x1, y1) {
    const size = Math.max(1, Number($("brush-size").value) || 1);
    const r = size <= 1 ? 0 : (size - 1) / 2;
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) dab(x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n, r);
  }
  function floodFill(x, y) {
    if (x < 0 || y < 0 || x >= S.w || y >= S.h) return false;
    const tol = Math.max(0, Number($("tolerance").value) || 0);
    const byImage = $("fill-mode").value === "image" && S.src[S.base];
    const src = S.src[S.base];
    const p0 = y * S.w + x;
    const seed = byImage ? [src[4 * p0], src[4 * p0 + 1], src[4 * p0 + 2]] : S.label[p0];
    const similar = byImage
      ? (p) => Math.abs(src[4 * p] - seed[0]) <= tol && Math.abs(src[4 * p + 1] - seed[1]) <= tol && Math.abs(src[4 * p + 2] - seed[2]) <= tol
      : (p) => S.label[p] === seed;
    const seen = new Uint8Array(S.w * S.h);
    const stack = [p0];
    seen[p0] = 1;
    const v = S.cls;
    while (stack.length) {
      const p = stack.pop();
      S.label[p] = v;
      const px = p % S.w;
      const nb = [px > 0 ? p - 1 : -1, px < S.w - 1 ? p + 1 : -1, p >= S.w ? p - S.w : -1, p + S.w < S.label.length ? p + S.w : -1];
      for (const q of nb) if (q >= 0 && !seen[q] && similar(q)) { seen[q] = 1; stack.push(q); }
    }
    return true;
  }
  function closePolygon() {
    if (S.poly.length < 3) { S.poly = []; renderSelection(); return; }
    const cv = document.createElement("canvas");
    cv.width = S.w; cv.height = S.h;
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    S.poly.forEach(([x, y], k) => (k ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
    ctx.closePath();
    ctx.fill();
    const d = ctx.getImageData(0, 0, S.w, S.h).data;
    const sel = new Uint8Array(S.w * S.h);
    for (let p = 0; p < sel.length; p++) sel[p] = d[4 * p + 3] >= 128 ? 1 : 0;
    S.selection = sel;
    S.poly = [];
    renderSelection();
  }
  function fillSelection() {
    if (!S.selection) { message("no selection: draw one with the polygon (p) or lasso (l) tool"); return; }
    pushUndo();
    for (let p = 0; p < S.label.length; p++) if (S.selection[p]) S.label[p] = S.cls;
    markDirty(true);
  }
  function relabel() {
    const a = Number($("relabel-from").value), b = Number($("relabel-to").value);
    if (!S.selection) { message("no selection: draw one with the polygon (p) or lasso (l) tool, then relabel"); return; }
    pushUndo();
    let n = 0;
    for (let p = 0; p < S.label.length; p++) if (S.selection[p] && S.label[p] === a) { S.label[p] = b; n++; }
    markDirty(true);
    message(`relabelled ${n} pixels from ${a} to ${b}`);
  }

  // ---------- saving ----------
  async function save(status) {
    if (!S.sample || S.conflict) return false;
    if (S.saving) await S.saving;
    if (!S.dirty && status == null) return true;
    if (autosaveTimer) { clearTimeout(autosaveTimer); autosaveTimer = null; }
    const id = sid();
    const label = S.label.slice();
    const body = { revision: S.revision, width: S.w, height: S.h, data: b64encode(label) };
    if (status) body.status = status;
    setSaveState("saving…", "dirty");
    const run = (async () => {
      let r;
      try { r = await api("PUT", "/api/samples/" + enc(id) + "/label", body); }
      catch (e) { setSaveState("save failed (kept in this browser): " + e.message, "dirty"); return false; }
      if (id !== sid()) return r.ok;
      if (r.ok) {
        S.revision = r.data.sample.revision;
        S.sample = r.data.sample;
        const i = S.samples.findIndex((s) => s.id === id);
        if (i >= 0) S.samples[i] = r.data.sample;
        if (sameBytes(label, S.label)) { S.dirty = false; clearBackup(id); setSaveState(`saved (revision ${S.revision})`, "saved"); }
        else { writeBackup(); }
        const j = S.manifest.findIndex((s) => s.id === id);
        if (j >= 0) S.manifest[j] = r.data.sample;
        renderInfo("hand");
        renderList();
        return true;
      }
      if (r.status === 409) {
        S.conflict = true;
        setSaveState("not saved: conflict", "dirty");
        message((r.data && r.data.error) || "someone else saved this sample first", "error", [
          ["reload the sample (your edits stay in this browser's backup)", () => openSample(id)],
        ]);
        return false;
      }
      setSaveState("not saved", "dirty");
      message("save refused: " + ((r.data && r.data.error) || r.status), "error");
      return false;
    })();
    S.saving = run;
    try { return await run; } finally { S.saving = null; }
  }
  async function flush() {
    if (S.dirty && !S.conflict) await save(null);
    else if (S.saving) await S.saving;
  }

  // ---------- input ----------
  let drag = null; // {mode: "paint"|"pan"|"lasso", last: [x, y], cx, cy}
  let spaceDown = false;
  function setupInput() {
    const vp = $("viewport");
    vp.addEventListener("contextmenu", (e) => e.preventDefault());
    vp.addEventListener("pointerdown", (e) => {
      if (!S.loaded) return;
      vp.setPointerCapture(e.pointerId);
      const [x, y] = toPixel(e);
      if (e.button === 1 || e.button === 2 || spaceDown) {
        drag = { mode: "pan", cx: e.clientX, cy: e.clientY };
        return;
      }
      if (e.button !== 0) return;
      if (S.tool === "brush") {
        pushUndo();
        strokeTo(x, y, x, y);
        renderLabel();
        drag = { mode: "paint", last: [x, y] };
      } else if (S.tool === "fill") {
        pushUndo();
        if (floodFill(x, y)) markDirty(true);
        else S.undo.pop();
      } else if (S.tool === "lasso") {
        S.selection = null;
        S.poly = [[x, y]];
        drag = { mode: "lasso" };
        renderSelection();
      } else if (S.tool === "polygon") {
        if (!S.poly.length) S.selection = null;
        S.poly.push([x, y]);
        renderSelection();
      }
    });
    vp.addEventListener("pointermove", (e) => {
      if (!S.loaded) return;
      const [x, y] = toPixel(e);
      if (x >= 0 && y >= 0 && x < S.w && y < S.h) $("cursor-info").textContent = `x ${x} y ${y} · class ${S.label[y * S.w + x]}`;
      if (!drag) return;
      if (drag.mode === "pan") {
        S.view.tx += e.clientX - drag.cx;
        S.view.ty += e.clientY - drag.cy;
        drag.cx = e.clientX; drag.cy = e.clientY;
        applyView();
      } else if (drag.mode === "paint") {
        strokeTo(drag.last[0], drag.last[1], x, y);
        drag.last = [x, y];
        renderLabel();
      } else if (drag.mode === "lasso") {
        const last = S.poly[S.poly.length - 1];
        if (last[0] !== x || last[1] !== y) { S.poly.push([x, y]); renderSelection(); }
      }
    });
    const end = () => {
      if (!drag) return;
      if (drag.mode === "paint") markDirty(true);
      else if (drag.mode === "lasso") closePolygon();
      drag = null;
    };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", end);
    vp.addEventListener("dblclick", () => { if (S.tool === "polygon") { S.poly.pop(); closePolygon(); } });
    vp.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = vp.getBoundingClientRect();
      zoomAt(e.clientX - r.left, e.clientY - r.top, e.deltaY < 0 ? 1.25 : 0.8);
    }, { passive: false });

    document.addEventListener("keydown", (e) => {
      const tag = (e.target && e.target.tagName) || "";
      if ((tag === "INPUT" && e.target.type !== "range" && e.target.type !== "radio" && e.target.type !== "checkbox") || tag === "SELECT") return;
      const k = e.key;
      const ctrl = e.ctrlKey || e.metaKey;
      if (ctrl && (k === "z" || k === "Z")) { e.preventDefault(); e.shiftKey ? redo() : undo(); return; }
      if (ctrl && (k === "y" || k === "Y")) { e.preventDefault(); redo(); return; }
      if (ctrl && (k === "s" || k === "S")) { e.preventDefault(); save("done"); return; }
      if (ctrl || e.altKey) return;
      if (k >= "0" && k <= "3") setClass(Number(k));
      else if (k === "x" || k === "X") setClass(NODATA);
      else if (k === "b") setTool("brush");
      else if (k === "f") setTool("fill");
      else if (k === "p") setTool("polygon");
      else if (k === "l") setTool("lasso");
      else if (k === "[") $("brush-size").value = Math.max(1, Number($("brush-size").value) - 1);
      else if (k === "]") $("brush-size").value = Number($("brush-size").value) + 1;
      else if (k === "Enter") closePolygon();
      else if (k === "Escape") { S.poly = []; S.selection = null; renderSelection(); }
      else if (k === "g") fillSelection();
      else if (k === "r") relabel();
      else if (k === "t") setBase(S.base === "truecolor" ? "falsecolor" : "truecolor");
      else if (k === "c") { $("show-context").checked = !$("show-context").checked; applyOverlays(); }
      else if (k === "." || k === "PageDown") openIndex(S.index + 1);
      else if (k === "," || k === "PageUp") openIndex(S.index - 1);
      else if (k === "+" || k === "=") { const r = $("viewport").getBoundingClientRect(); zoomAt(r.width / 2, r.height / 2, 1.25); }
      else if (k === "-") { const r = $("viewport").getBoundingClientRect(); zoomAt(r.width / 2, r.height / 2, 0.8); }
      else if (k === " ") { spaceDown = true; e.preventDefault(); }
      else return;
    });
    document.addEventListener("keyup", (e) => { if (e.key === " ") spaceDown = false; });

    for (const r of document.querySelectorAll("input[name=tool]")) r.onchange = () => setTool(r.value);
    for (const r of document.querySelectorAll("input[name=base]")) r.onchange = () => setBase(r.value);
    $("brightness").oninput = renderBase;
    $("gamma").oninput = renderBase;
    for (const name of ["label", "auto_label", "prediction", "uncertainty", "context"]) {
      $("show-" + name).onchange = applyOverlays;
      $("op-" + name).oninput = applyOverlays;
    }
    $("sort").onchange = () => setSort($("sort").value);
    $("undo").onclick = undo;
    $("redo").onclick = redo;
    $("save").onclick = () => save("done");
    $("mark-todo").onclick = () => save("todo");
    $("fit").onclick = fit;
    $("zoom1").onclick = () => { const r = $("viewport").getBoundingClientRect(); zoomAt(r.width / 2, r.height / 2, 1 / S.view.s); };
    $("next").onclick = () => openIndex(S.index + 1);
    $("prev").onclick = () => openIndex(S.index - 1);
    $("fill-selection").onclick = fillSelection;
    $("relabel").onclick = relabel;
    $("clear-selection").onclick = () => { S.poly = []; S.selection = null; renderSelection(); };
    window.addEventListener("resize", () => S.loaded && applyView());
    document.addEventListener("visibilitychange", () => { if (document.hidden && AUTOSAVE_MS > 0) flush(); });
    window.addEventListener("beforeunload", () => { if (S.dirty) writeBackup(); });
  }
  function setClass(v) {
    S.cls = v;
    for (const b of document.querySelectorAll(".classbtn")) b.classList.toggle("active", Number(b.dataset.value) === v);
  }
  function setTool(t) {
    S.tool = t;
    S.poly = [];
    for (const r of document.querySelectorAll("input[name=tool]")) r.checked = r.value === t;
    renderSelection();
  }
  function setBase(b) {
    if (!S.src[b]) return;
    S.base = b;
    for (const r of document.querySelectorAll("input[name=base]")) r.checked = r.value === b;
    renderBase();
  }

  // ---------- start ----------
  async function start() {
    const r = await api("GET", "/api/info");
    if (!r.ok) { message("cannot reach the server", "error"); return; }
    S.info = r.data;
    const box = $("classes");
    for (const c of S.info.classes) {
      if (c.value !== NODATA) S.colors[c.value] = c.color;
      const b = document.createElement("button");
      b.className = "classbtn";
      b.dataset.value = c.value;
      b.title = `${c.name} (key ${c.value === NODATA ? "x" : c.value})`;
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = c.value === NODATA ? "transparent" : `rgb(${c.color.join(",")})`;
      b.append(sw, document.createTextNode(`${c.value === NODATA ? "x" : c.value} ${c.name}`));
      b.onclick = () => setClass(c.value);
      box.appendChild(b);
      for (const sel of [$("relabel-from"), $("relabel-to")]) {
        const o = document.createElement("option");
        o.value = c.value;
        o.textContent = `${c.value} ${c.name}`;
        sel.appendChild(o);
      }
    }
    $("relabel-to").value = "1";
    setClass(1);
    setupInput();
    let sort = params.get("sort");
    try { sort = sort || localStorage.getItem("nimbus-label-sort"); } catch (e) { /* private mode */ }
    if (sort && [...$("sort").options].some((o) => o.value === sort)) S.sort = sort;
    $("sort").value = S.sort;
    await loadList();
    if (!S.samples.length) { message("this samples folder holds no samples"); return; }
    const m = /sample=([^&]+)/.exec(location.hash);
    const want = m ? decodeURIComponent(m[1]) : null;
    const i = Math.max(0, S.samples.findIndex((s) => s.id === want));
    await openIndex(want && S.samples.some((s) => s.id === want) ? i : Math.max(0, S.samples.findIndex((s) => s.status !== "done")));
  }
  start();
})();
