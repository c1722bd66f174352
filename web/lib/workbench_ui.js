// AudioX for ComfyUI: the canvas components of the audio workbench (DOM + canvas only, nothing of
// ComfyUI here; web/audiox.js puts them on nodes).  Everything is drawn by this code.
import * as L from "./audio_logic.js";

const COLORS = {
  bg: "#1b1d21",
  grid: "#2c3038",
  wave: "#8fb8ff",
  waveDim: "#56627a",
  range: "rgba(255, 170, 60, 0.28)",
  rangeEdge: "#ffaa3c",
  selected: "rgba(255, 120, 60, 0.45)",
  keep: "rgba(90, 200, 120, 0.20)",
  keepEdge: "#5ac878",
  regen: "rgba(255, 110, 90, 0.25)",
  regenEdge: "#ff6e5a",
  playhead: "#ffffff",
  text: "#c8ccd4",
  curve: "#8fb8ff",
  curveSmooth: "#ffaa3c",
};

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  if (props.style) Object.assign(e.style, props.style);
  for (const c of children) e.append(c);
  return e;
}

function button(label, title, onClick) {
  const b = el("button", { textContent: label, title, type: "button" });
  Object.assign(b.style, {
    font: "11px sans-serif", padding: "1px 6px", margin: "0 4px 0 0", cursor: "pointer",
    background: "#2c3038", color: COLORS.text, border: "1px solid #444", borderRadius: "3px",
  });
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    onClick(e);
  });
  return b;
}

/** Size a canvas to its CSS box at the device pixel ratio; returns [ctx, cssWidth, cssHeight]. */
/** Redraw ``view`` (its ``_draw()``) once on the next animation frame, however often asked. */
function drawOnNextFrame(view) {
  if (view._raf) return;
  view._raf = requestAnimationFrame(() => {
    view._raf = null;
    view._draw();
  });
}

/** The canvas sized to its box and filled with the background: ``[ctx, width, height]``. */
function clearedCanvas(canvas) {
  const [ctx, w, h] = fitCanvas(canvas);
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(0, 0, w, h);
  return [ctx, w, h];
}

function fitCanvas(canvas) {
  const r = window.devicePixelRatio || 1;
  const w = Math.max(10, canvas.clientWidth || canvas.parentElement?.clientWidth || 300);
  const h = Math.max(10, canvas.clientHeight || 100);
  if (canvas.width !== Math.round(w * r) || canvas.height !== Math.round(h * r)) {
    canvas.width = Math.round(w * r);
    canvas.height = Math.round(h * r);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  return [ctx, w, h];
}

/** Viridis-like colour for v in [0, 1] (own 5-stop ramp). */
function heat(v) {
  const stops = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [252, 253, 191]];
  const x = L.clamp(v, 0, 1) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}

/** Decode an audio file at `url` into {samples: mono Float32Array, sampleRate, duration}. */
export async function loadAudio(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`could not load ${url}: HTTP ${resp.status}`);
  const buf = await resp.arrayBuffer();
  const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  // decode WAV at its own rate (no resampling: the spectrogram then spans the file's band)
  const rate = L.wavSampleRate(new Uint8Array(buf, 0, Math.min(buf.byteLength, 64))) || 44100;
  const decoded = await new Ctx(1, 1, L.clamp(rate, 3000, 768000)).decodeAudioData(buf);
  const channels = [];
  for (let c = 0; c < decoded.numberOfChannels; c++) channels.push(decoded.getChannelData(c));
  return { samples: L.mixToMono(channels), sampleRate: decoded.sampleRate, duration: decoded.duration };
}

// ============================================================================================
/** Waveform / spectrogram view with a player, optional range editing.
 *  mode: "inpaint" (editable ranges), "complete" (editable keep edge), "preview" (read-only marks). */
export class WaveView {
  constructor({ mode = "preview", height = 120, label = "" } = {}) {
    this.mode = mode;
    this.audio = null; // {samples, sampleRate, duration, url}
    this.ranges = [];
    this.ramp = 0;
    this.keepSeconds = 0;
    this.marks = []; // preview: regenerated ranges
    this.markKind = null;
    this.selected = -1;
    this.showSpec = false;
    this.drag = null;
    this.playEnd = null;
    this.error = "";
    this.label = label;
    this.onRangesChange = null;
    this.onKeepChange = null;
    this._spec = null;
    this._peaks = null;

    this.canvas = el("canvas", { style: { width: "100%", height: `${height}px`, display: "block", cursor: "crosshair",
      borderRadius: "3px", touchAction: "none" } });
    this.canvas.dataset.audioxCanvas = mode;
    this.player = el("audio", { preload: "auto" });
    this.status = el("div", { style: { font: "11px sans-serif", color: COLORS.text, whiteSpace: "nowrap",
      overflow: "hidden", textOverflow: "ellipsis", marginTop: "2px" } });
    this.status.dataset.audioxStatus = mode;
    this.specButton = button("Spectrogram", "Switch between waveform and spectrogram", () => this.toggleSpec());
    const bar = el("div", { style: { display: "flex", alignItems: "center", marginBottom: "3px" } }, [
      button("▶ Clip", "Play the whole clip", () => this.play(0, null)),
      ...(mode === "preview" ? [] : [button("▶ Selection", "Play the selected range (or the kept part)", () =>
        this.playSelection())]),
      button("■", "Stop", () => this.stop()),
      this.specButton,
    ]);
    this.toolbar = bar;
    this.element = el("div", { tabIndex: 0, style: { outline: "none", width: "100%" } },
      [bar, this.canvas, this.status]);
    this.element.dataset.audioxView = mode;
    this._bindPointer();
    this.element.addEventListener("keydown", (e) => this._onKey(e));
    this.player.addEventListener("play", () => this._tick());
    this._observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => this.draw()) : null;
    this._observer?.observe(this.canvas);
    this.draw();
  }

  // ------------------------------------------------------------------ data
  setAudio(audio) {
    this.audio = audio;
    this._peaks = null;
    this._spec = null;
    if (audio?.url && this.player.src !== audio.url) this.player.src = audio.url;
    this.draw();
  }

  setRanges(ranges, ramp = this.ramp) {
    this.ranges = ranges.map(([a, b]) => [a, b]);
    this.ramp = ramp;
    if (this.selected >= this.ranges.length) this.selected = -1;
    this.draw();
  }

  setKeep(seconds) {
    this.keepSeconds = seconds;
    this.draw();
  }

  setMarks(ranges, kind) {
    this.marks = ranges || [];
    this.markKind = kind;
    this.draw();
  }

  setError(text) {
    this.error = text || "";
    this.draw();
  }

  get duration() {
    return this.audio?.duration || 0;
  }

  toggleSpec(on = !this.showSpec) {
    this.showSpec = on;
    this.specButton.textContent = on ? "Waveform" : "Spectrogram";
    this.draw();
  }

  // ------------------------------------------------------------------ playback
  play(from = 0, to = null) {
    if (!this.audio?.url) return;
    this.playEnd = to;
    this.player.currentTime = from;
    const p = this.player.play();
    p?.catch?.(() => {});
  }

  playSelection() {
    if (this.mode === "complete") return this.play(0, this.keepSeconds);
    const r = this.ranges[this.selected] ?? this.ranges[0];
    if (r) this.play(r[0], r[1]);
  }

  stop() {
    this.player.pause();
    this.playEnd = null;
    this.draw();
  }

  _tick() {
    if (this.player.paused) return this.draw();
    if (this.playEnd != null && this.player.currentTime >= this.playEnd) return this.stop();
    this.draw();
    requestAnimationFrame(() => this._tick());
  }

  // ------------------------------------------------------------------ editing
  _scale() {
    const w = this.canvas.clientWidth || 300;
    return this.duration > 0 ? L.makeTimeScale(this.duration, w) : null;
  }

  _x(e) {
    const r = this.canvas.getBoundingClientRect();
    // the node may be zoomed: map client pixels to CSS pixels of the canvas
    return ((e.clientX - r.left) / (r.width || 1)) * (this.canvas.clientWidth || r.width);
  }

  _bindPointer() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.stopPropagation();
      this.element.focus({ preventScroll: true });
      const sc = this._scale();
      if (!sc || this.mode === "preview") {
        if (sc) this.play(sc.toSeconds(this._x(e)), null);
        return;
      }
      c.setPointerCapture?.(e.pointerId);
      const x = this._x(e);
      const t = sc.toSeconds(x);
      if (this.mode === "complete") {
        this.drag = { kind: "keep" };
        this._dragTo(t);
        return;
      }
      const hit = L.hitTest(this.ranges, sc, x);
      if (hit?.kind === "edge") {
        this.selected = hit.index;
        this.drag = { kind: "edge", index: hit.index, side: hit.side };
      } else if (hit?.kind === "inside") {
        this.selected = hit.index;
        this.drag = null;
      } else {
        this.selected = -1;
        this.drag = { kind: "new", t0: t, t1: t };
      }
      this.draw();
    });
    c.addEventListener("pointermove", (e) => {
      const sc = this._scale();
      if (!sc) return;
      if (!this.drag) {
        if (this.mode === "inpaint") {
          const hit = L.hitTest(this.ranges, sc, this._x(e));
          c.style.cursor = hit?.kind === "edge" ? "ew-resize" : hit?.kind === "inside" ? "pointer" : "crosshair";
        }
        return;
      }
      e.stopPropagation();
      this._dragTo(sc.toSeconds(this._x(e)));
    });
    const end = (e) => {
      if (!this.drag) return;
      e.stopPropagation();
      const d = this.drag;
      this.drag = null;
      if (d.kind === "new") {
        const r = L.rangeFromDrag(d.t0, d.t1, this.duration);
        if (r) {
          const merged = L.mergeRanges([...this.ranges, r]);
          this.selected = merged.findIndex(([a, b]) => a <= r[0] && b >= r[1]);
          this._commitRanges(merged);
        }
      } else if (d.kind === "edge") {
        this._commitRanges(this.ranges);
      } else if (d.kind === "keep") {
        this.onKeepChange?.(this.keepSeconds);
      }
      this.draw();
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
  }

  _dragTo(t) {
    const d = this.drag;
    if (d.kind === "new") d.t1 = t;
    else if (d.kind === "edge") {
      const before = this.ranges[d.index];
      this.ranges = L.moveEdge(this.ranges, d.index, d.side, t, this.duration);
      // after a merge the dragged range may have a new index: follow the edge being dragged
      const idx = this.ranges.findIndex(([a, b]) => (d.side === 0 ? b >= before[1] - 1e-9 && a <= before[1] :
        a <= before[0] + 1e-9 && b >= before[0]));
      if (idx >= 0) d.index = this.selected = idx;
    } else if (d.kind === "keep") {
      this.keepSeconds = Math.max(L.SNAP_SECONDS, L.snap(L.clamp(t, 0, this.duration)));
    }
    this.draw();
  }

  _commitRanges(ranges) {
    this.ranges = L.mergeRanges(ranges);
    this.onRangesChange?.(this.ranges);
  }

  _onKey(e) {
    if ((e.key === "Delete" || e.key === "Backspace") && this.mode === "inpaint" && this.selected >= 0) {
      e.preventDefault();
      e.stopPropagation();
      const left = L.removeRange(this.ranges, this.selected);
      this.selected = -1;
      this._commitRanges(left);
      this.draw();
    } else if (e.key === " ") {
      e.preventDefault();
      e.stopPropagation();
      if (this.player.paused) this.play(this.player.currentTime || 0, null);
      else this.stop();
    }
  }

  // ------------------------------------------------------------------ drawing
  draw() {
    drawOnNextFrame(this);
  }

  _draw() {
    const [ctx, w, h] = clearedCanvas(this.canvas);
    const a = this.audio;
    if (!a || !(a.duration > 0)) {
      ctx.fillStyle = COLORS.text;
      ctx.font = "11px sans-serif";
      ctx.fillText(this.error || "no audio yet: connect one (e.g. Load Audio) or run the graph", 8, h / 2);
      this.status.textContent = this.label;
      return;
    }
    const sc = L.makeTimeScale(a.duration, w);
    if (this.showSpec) this._drawSpec(ctx, w, h);
    else this._drawWave(ctx, w, h);
    this._drawGrid(ctx, sc, w, h);
    this._drawOverlay(ctx, sc, w, h);
    if (!this.player.paused || this.player.currentTime > 0) {
      const x = sc.toX(this.player.currentTime);
      ctx.fillStyle = COLORS.playhead;
      ctx.fillRect(Math.round(x), 0, 1, h);
    }
    this.status.textContent = this._statusText();
    this.canvas.dataset.ranges = L.formatRanges(this.ranges);
  }

  _drawWave(ctx, w, h) {
    const cols = Math.max(1, Math.round(w));
    if (!this._peaks || this._peaks.min.length !== cols) this._peaks = L.computePeaks(this.audio.samples, cols);
    const { min, max } = this._peaks;
    const mid = h / 2;
    let m = 1e-6;
    for (let i = 0; i < cols; i++) m = Math.max(m, Math.abs(min[i]), Math.abs(max[i]));
    const k = (h / 2 - 2) / Math.max(m, 0.05);
    const marked = this.mode === "preview" && this.marks.length;
    for (let i = 0; i < cols; i++) {
      const t = ((i + 0.5) / cols) * this.audio.duration;
      const regen = marked && this.marks.some(([a, b]) => t >= a && t <= b);
      ctx.fillStyle = marked && !regen ? COLORS.waveDim : COLORS.wave;
      const y0 = mid - max[i] * k;
      const y1 = mid - min[i] * k;
      ctx.fillRect(i, y0, 1, Math.max(1, y1 - y0));
    }
  }

  _drawSpec(ctx, w, h) {
    const frames = Math.max(16, Math.min(512, Math.round(w)));
    if (!this._spec || this._spec.frames !== frames) {
      this._spec = L.spectrogram(this.audio.samples, { fft: 512, frames });
      const { data, bins } = this._spec;
      const img = new ImageData(frames, bins);
      for (let f = 0; f < frames; f++) {
        for (let b = 0; b < bins; b++) {
          const [r, g, bl] = heat(data[f * bins + b]);
          const o = ((bins - 1 - b) * frames + f) * 4;
          img.data[o] = r;
          img.data[o + 1] = g;
          img.data[o + 2] = bl;
          img.data[o + 3] = 255;
        }
      }
      const off = document.createElement("canvas");
      off.width = frames;
      off.height = bins;
      off.getContext("2d").putImageData(img, 0, 0);
      this._spec.image = off;
    }
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this._spec.image, 0, 0, w, h);
  }

  _drawGrid(ctx, sc, w, h) {
    const d = sc.duration;
    const step = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60].find((s) => (s / d) * w >= 50) || 60;
    ctx.fillStyle = COLORS.text;
    ctx.font = "9px sans-serif";
    for (let t = step; t < d; t += step) {
      const x = Math.round(sc.toX(t));
      ctx.fillStyle = COLORS.grid;
      ctx.fillRect(x, h - 6, 1, 6);
      ctx.fillStyle = COLORS.text;
      ctx.fillText(`${Number(t.toFixed(2))}s`, x + 2, h - 2);
    }
  }

  _drawOverlay(ctx, sc, w, h) {
    const band = (a, b, fill, edge) => {
      const x0 = sc.toX(a);
      const x1 = sc.toX(b);
      ctx.fillStyle = fill;
      ctx.fillRect(x0, 0, x1 - x0, h);
      ctx.fillStyle = edge;
      ctx.fillRect(Math.round(x0), 0, 1, h);
      ctx.fillRect(Math.round(x1) - 1, 0, 1, h);
    };
    if (this.mode === "inpaint") {
      const shown = this.drag?.kind === "new" ? L.rangeFromDrag(this.drag.t0, this.drag.t1, sc.duration) : null;
      this.ranges.forEach(([a, b], i) => band(a, b, i === this.selected ? COLORS.selected : COLORS.range,
        COLORS.rangeEdge));
      if (shown) band(shown[0], shown[1], COLORS.selected, COLORS.rangeEdge);
      if (this.ramp > 0 && this.ranges.length) {
        // the Hann ramps: regenerate weight 0..1 drawn as a line
        ctx.strokeStyle = COLORS.rangeEdge;
        ctx.lineWidth = 1;
        ctx.beginPath();
        for (let x = 0; x <= w; x++) {
          const y = h - 3 - L.inpaintWeight(this.ranges, this.ramp, sc.toSeconds(x)) * (h - 16);
          if (x === 0) ctx.moveTo(x, y);
          else ctx.lineTo(x, y);
        }
        ctx.stroke();
      }
    } else if (this.mode === "complete") {
      const k = L.clamp(this.keepSeconds, 0, sc.duration);
      band(0, k, COLORS.keep, COLORS.keepEdge);
      ctx.fillStyle = COLORS.keepEdge;
      ctx.font = "10px sans-serif";
      ctx.fillText("kept", 4, 12);
      if (k < sc.duration) {
        ctx.fillStyle = COLORS.rangeEdge;
        ctx.fillText("generated →", sc.toX(k) + 4, 12);
      }
    } else if (this.marks.length) {
      for (const [a, b] of this.marks) band(a, b, COLORS.regen, COLORS.regenEdge);
      ctx.fillStyle = COLORS.regenEdge;
      ctx.font = "10px sans-serif";
      ctx.fillText("regenerated", sc.toX(this.marks[0][0]) + 3, 12);
    }
  }

  _statusText() {
    const d = this.duration.toFixed(2);
    if (this.error) return `⚠ ${this.error}`;
    if (this.mode === "inpaint") {
      const sel = this.ranges[this.selected];
      return `${d} s · regenerate ${L.formatRanges(this.ranges) || "–"}` +
        (sel ? ` · selected ${L.formatRanges([sel])} (Delete removes)` : " · drag to add, drag edges to resize");
    }
    if (this.mode === "complete") return `${d} s · keep 0–${L.formatSeconds(this.keepSeconds)} s, generate the rest`;
    const marks = this.marks.length ? ` · ${this.markKind || "regenerated"}: ${L.formatRanges(this.marks)} regenerated` :
      "";
    return `${this.label}${this.label ? " · " : ""}${d} s${marks}`;
  }
}

// ============================================================================================
/** Live training view: loss curve (raw + smoothed) and a status line. */
export class CurveView {
  constructor({ height = 150 } = {}) {
    this.history = [];
    this.keys = ["loss"];
    this.info = null;
    this.updates = 0;
    this.canvas = el("canvas", { style: { width: "100%", height: `${height}px`, display: "block",
      borderRadius: "3px" } });
    this.status = el("div", { style: { font: "11px sans-serif", color: COLORS.text, marginTop: "2px",
      whiteSpace: "pre-wrap" } });
    this.preview = el("audio", { controls: true, preload: "auto", style: { height: "22px", flex: "1" } });
    this.previewLabel = el("span", { style: { font: "11px sans-serif", color: COLORS.text, marginRight: "6px" } });
    this.previewRow = el("div", { style: { display: "none", alignItems: "center", marginTop: "2px" } },
      [this.previewLabel, this.preview]);
    this.previewRow.dataset.audioxPreview = "";
    this.element = el("div", { style: { width: "100%" } }, [this.canvas, this.status, this.previewRow]);
    this.element.dataset.audioxView = "training";
    this._observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => this.draw()) : null;
    this._observer?.observe(this.canvas);
    this.draw();
  }

  /** Show the preview generation of training step `step` (url of its WAV), or why it failed. */
  setPreview(step, url, error = null) {
    this.previewRow.style.display = "flex";
    this.previewLabel.textContent = error ? `preview at step ${step} failed: ${error}` : `step ${step}:`;
    this.preview.style.display = error ? "none" : "";
    if (url) this.preview.src = url;
    this.previewRow.dataset.audioxPreview = String(step);
  }

  /** Apply one 'audiox.training' websocket message. */
  update(msg) {
    if (msg.reset) this.history = [];
    this.keys = msg.keys?.length ? msg.keys : this.keys;
    this.history.push(...(msg.entries || []));
    this.info = msg;
    this.updates += 1;
    this.element.dataset.updates = String(this.updates);
    this.element.dataset.points = String(this.history.length);
    this.draw();
  }

  draw() {
    drawOnNextFrame(this);
  }

  _draw() {
    const [ctx, w, h] = clearedCanvas(this.canvas);
    const pad = 6;
    const key = this.keys[0];
    const c = L.curvePoints(this.history, w - 2 * pad, h - 2 * pad - 10, key);
    ctx.font = "10px sans-serif";
    if (!c.points.length) {
      ctx.fillStyle = COLORS.text;
      ctx.fillText("the loss curve appears here while the node trains", 8, h / 2);
      this.status.textContent = "";
      return;
    }
    const line = (pts, color, width) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(pad + x, pad + 10 + y) : ctx.moveTo(pad + x, pad + 10 + y)));
      if (pts.length === 1) ctx.lineTo(pad + pts[0][0] + 2, pad + 10 + pts[0][1]);
      ctx.stroke();
    };
    line(c.points, COLORS.curve, 1);
    // exponential smoothing for the trend
    let s = null;
    const smooth = c.points.map(([x, y]) => [x, (s = s == null ? y : 0.9 * s + 0.1 * y)]);
    line(smooth, COLORS.curveSmooth, 2);
    ctx.fillStyle = COLORS.text;
    ctx.fillText(`${key} ${c.yMax.toPrecision(3)}${c.log ? " (log)" : ""}`, pad, 10);
    ctx.fillText(`${c.yMin.toPrecision(3)}`, pad, h - 2);
    const i = this.info;
    const last = this.history[this.history.length - 1];
    const parts = [
      `${i.label} step ${i.step}/${i.total}`,
      last && Number.isFinite(last[key]) ? `${key} ${last[key].toPrecision(4)}` : null,
      Number.isFinite(i.steps_per_second) ? `${i.steps_per_second.toPrecision(3)} steps/s` : null,
      Number.isFinite(i.eta_seconds) ? `ETA ${L.formatDuration(i.eta_seconds)}` : null,
      Number.isFinite(i.lr) ? `lr ${i.lr.toPrecision(2)}` : null,
    ].filter(Boolean);
    this.status.textContent = parts.join(" · ") +
      `\nlast checkpoint: ${i.checkpoint ? i.checkpoint.split(/[\\/]/).pop() : "none yet"}`;
    this.status.title = i.checkpoint || "";
  }
}

// ============================================================================================
/** MAF gates as one horizontal bar per modality. */
export class GateBars {
  constructor() {
    this.canvas = el("canvas", { style: { width: "100%", height: "66px", display: "block", borderRadius: "3px" } });
    this.element = el("div", { style: { width: "100%" } }, [this.canvas]);
    this.element.dataset.audioxView = "gates";
    this.data = null;
  }

  set(data) {
    this.data = data;
    this.element.dataset.gates = JSON.stringify(data?.gates ?? []);
    drawOnNextFrame(this);
  }

  _draw() {
    const [ctx, w, h] = clearedCanvas(this.canvas);
    const d = this.data;
    if (!d) return;
    const n = d.gates.length;
    const rowH = h / n;
    const top = Math.max(1, ...d.gates.map((g, i) => Math.abs(g * (d.scale?.[i] ?? 1))), ...d.gates.map(Math.abs));
    const x0 = 48;
    const barW = w - x0 - 90;
    ctx.font = "11px sans-serif";
    d.gates.forEach((g, i) => {
      const y = i * rowH;
      const s = d.scale?.[i] ?? 1;
      ctx.fillStyle = COLORS.text;
      ctx.fillText(d.modalities[i], 4, y + rowH / 2 + 4);
      ctx.fillStyle = COLORS.grid;
      ctx.fillRect(x0, y + 4, barW, rowH - 8);
      ctx.fillStyle = COLORS.wave;
      ctx.fillRect(x0, y + 4, (Math.abs(g) / top) * barW, rowH - 8);
      if (s !== 1) {
        ctx.fillStyle = COLORS.rangeEdge;
        ctx.fillRect(x0 + (Math.abs(g * s) / top) * barW - 1, y + 2, 2, rowH - 4);
      }
      ctx.fillStyle = COLORS.text;
      ctx.fillText(`${g.toFixed(3)}${s !== 1 ? ` ×${s}` : ""}`, x0 + barW + 6, y + rowH / 2 + 4);
    });
  }
}

// ============================================================================================
/** A read-only text box of fixed height that scrolls (node reports). */
export function reportBox(height = 90) {
  const pre = el("pre", { style: { height: `${height}px`, maxHeight: `${height}px`, overflow: "auto", margin: "0",
    padding: "4px", font: "11px monospace", color: COLORS.text, background: COLORS.bg, whiteSpace: "pre-wrap",
    borderRadius: "3px", boxSizing: "border-box", width: "100%" } });
  pre.dataset.audioxView = "report";
  pre.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
  return pre;
}

export { el, button };
