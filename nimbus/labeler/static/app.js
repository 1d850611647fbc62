// Nimbus labeller: the page. No build step, no dependencies.
// The label being edited is a Uint8Array (one class value per pixel, 255 = no data) at the sample's
// full resolution; everything else (image, overlays, selection) is drawn around it.
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
    view: { s: 1, tx: 0, ty: 0 },
    loaded: false,
    colors: {},
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
  async function loadList() {
    const r = await api("GET", "/api/samples");
    if (!r.ok) { message("cannot list samples: " + (r.data && r.data.error), "error"); return; }
    S.samples = r.data.samples;
    renderList();
  }
  function renderList() {
    const ul = $("samples");
    ul.innerHTML = "";
    let done = 0;
    S.samples.forEach((s, i) => {
      if (s.status === "done") done++;
      const li = document.createElement("li");
      li.className = s.status + (i === S.index ? " current" : "");
      li.dataset.id = s.id;
      li.title = `${s.product_id}\n${s.date}\nwindow ${s.window.join(", ")}\nscore ${s.score}`;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = s.status === "done" ? "✓ done" : "○ to do";
      const name = document.createElement("span");
      name.textContent = s.id;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = s.score == null ? "" : Number(s.score).toFixed(3);
      li.append(badge, name, score);
      li.onclick = () => openIndex(i);
      ul.appendChild(li);
    });
    $("progress").textContent = `${done} of ${S.samples.length} done`;
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
    for (const name of ["truecolor", "falsecolor"]) {
      if (!layers.includes(name)) continue;
      const img = await loadImage(`/api/samples/${enc(id)}/layers/${name}.png?r=${Date.now()}`);
      const cv = document.createElement("canvas");
      cv.width = S.w; cv.height = S.h;
      const ctx = cv.getContext("2d");
      ctx.drawImage(img, 0, 0);
      S.src[name] = ctx.getImageData(0, 0, S.w, S.h).data;
    }
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
    $("sample-info").textContent = `${S.sample.product_id} · ${S.sample.date} · window ${S.sample.window.join(",")} · ${S.w}×${S.h} · label from ${lab.data.source} · revision ${S.revision}`;
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
  function renderBase() {
    const src = S.src[S.base];
    const ctx = $("base").getContext("2d");
    if (!src) { ctx.clearRect(0, 0, S.w, S.h); return; }
    const t = lut();
    const img = ctx.createImageData(S.w, S.h);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = t[src[i]]; d[i + 1] = t[src[i + 1]]; d[i + 2] = t[src[i + 2]]; d[i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
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
  }

  // ---------- view: zoom and pan ----------
  function applyView() {
    const v = S.view;
    $("stage").style.transform = `translate(${v.tx}px, ${v.ty}px) scale(${v.s})`;
    $("stage").style.width = S.w + "px";
    $("stage").style.height = S.h + "px";
  }
  function fit() {
    const r = $("viewport").getBoundingClientRect();
    const s = Math.max(0.05, Math.min(r.width / S.w, r.height / S.h) * 0.98);
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
    for (const name of ["label", "auto_label", "prediction", "uncertainty"]) {
      $("show-" + name).onchange = applyOverlays;
      $("op-" + name).oninput = applyOverlays;
    }
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
    await loadList();
    if (!S.samples.length) { message("this samples folder holds no samples"); return; }
    const m = /sample=([^&]+)/.exec(location.hash);
    const want = m ? decodeURIComponent(m[1]) : null;
    const i = Math.max(0, S.samples.findIndex((s) => s.id === want));
    await openIndex(want && S.samples.some((s) => s.id === want) ? i : Math.max(0, S.samples.findIndex((s) => s.status !== "done")));
  }
  start();
})();
