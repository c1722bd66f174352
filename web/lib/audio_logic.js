// AudioX for ComfyUI: pure logic of the audio workbench (no DOM, no ComfyUI): waveform peaks, the
// pixel <-> seconds mapping, the `ranges` text of AudioX Inpaint Mask (same grammar as
// audiox_core/task.py parse_ranges), merging and 10 ms snapping, a small spectrogram and the loss-curve
// scaling.  Unit-tested with `node --test web/tests/`.

export const SNAP_SECONDS = 0.01;
export const MAX_SECONDS = 300; // nodes/common.py MAX_SECONDS

// ------------------------------------------------------------------ peaks
/** Min/max per pixel column of a mono signal (Float32Array or array).
 *  Returns {min: Float32Array(columns), max: Float32Array(columns)}; a column that covers no sample
 *  (more columns than samples) repeats the sample under it, so the drawing has no gaps. */
export function computePeaks(samples, columns) {
  const n = samples.length;
  const cols = Math.max(0, Math.floor(columns));
  const min = new Float32Array(cols);
  const max = new Float32Array(cols);
  if (n === 0 || cols === 0) return { min, max };
  for (let c = 0; c < cols; c++) {
    let a = Math.floor((c * n) / cols);
    let b = Math.floor(((c + 1) * n) / cols);
    if (b <= a) b = Math.min(n, a + 1);
    if (a >= n) a = n - 1;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = a; i < b; i++) {
      const v = samples[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    min[c] = lo;
    max[c] = hi;
  }
  return { min, max };
}

/** Average the channels of [channel][sample] arrays into one Float32Array. */
export function mixToMono(channels) {
  if (!channels.length) return new Float32Array(0);
  const n = channels[0].length;
  const out = new Float32Array(n);
  for (const ch of channels) for (let i = 0; i < n; i++) out[i] += ch[i];
  if (channels.length > 1) for (let i = 0; i < n; i++) out[i] /= channels.length;
  return out;
}

/** The sample rate in a RIFF/WAVE header (first bytes of the file), or null for other files. */
export function wavSampleRate(bytes) {
  const tag = (o) => String.fromCharCode(...bytes.slice(o, o + 4));
  if (bytes.length < 28 || tag(0) !== "RIFF" || tag(8) !== "WAVE" || tag(12) !== "fmt ") return null;
  const rate = bytes[24] | (bytes[25] << 8) | (bytes[26] << 16) | (bytes[27] << 24);
  return rate > 0 ? rate >>> 0 : null;
}

// ------------------------------------------------------------------ pixel <-> seconds
/** The mapping of a view that shows `duration` seconds over `width` pixels starting at `x0`. */
export function makeTimeScale(duration, width, x0 = 0) {
  if (!(duration > 0)) throw new RangeError(`duration must be > 0 seconds, got ${duration}`);
  if (!(width > 0)) throw new RangeError(`width must be > 0 pixels, got ${width}`);
  return {
    duration,
    width,
    x0,
    toX: (seconds) => x0 + (seconds / duration) * width,
    /** Seconds under pixel x, clamped to [0, duration]. */
    toSeconds: (x) => clamp(((x - x0) / width) * duration, 0, duration),
  };
}

export function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

/** Round to the 10 ms grid (and drop float noise, so 1.2300000001 prints as 1.23). */
export function snap(seconds, step = SNAP_SECONDS) {
  const k = Math.round(seconds / step);
  return Number((k * step).toFixed(6));
}

// ------------------------------------------------------------------ ranges text
const SPLIT = /[,;\n]+/;
const RANGE = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:-|–|:|to)\s*(\d+(?:\.\d*)?|\.\d+)\s*$/;

/** `"2-3.5, 6:7"` -> [[2, 3.5], [6, 7]], sorted and merged; throws Error with a readable message
 *  (the same grammar and checks as audiox_core/task.py parse_ranges). */
export function parseRanges(text) {
  const parts = String(text ?? "").split(SPLIT).filter((p) => p.trim());
  if (!parts.length) throw new Error("no time range given; write e.g. '2.0-3.5' or '1-2, 6-7' (seconds)");
  const out = [];
  for (const p of parts) {
    const m = RANGE.exec(p);
    if (!m) throw new Error(`'${p.trim()}' is not a range in seconds like '2.0-3.5'`);
    const a = parseFloat(m[1]);
    const b = parseFloat(m[2]);
    if (!(b > a)) throw new Error(`'${p.trim()}': the end must be after the start`);
    if (a >= MAX_SECONDS) throw new Error(`'${p.trim()}': starts after ${MAX_SECONDS} s`);
    out.push([a, b]);
  }
  return mergeRanges(out);
}

/** Like parseRanges but returns {ranges, error} instead of throwing (error: null when valid). */
export function tryParseRanges(text) {
  try {
    return { ranges: parseRanges(text), error: null };
  } catch (e) {
    return { ranges: [], error: e.message };
  }
}

/** Sort by start and merge overlapping or touching ranges (copies; drops empty ones). */
export function mergeRanges(ranges) {
  const sorted = ranges.filter(([a, b]) => b > a).map(([a, b]) => [a, b]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const merged = [];
  for (const [a, b] of sorted) {
    const last = merged[merged.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  return merged;
}

/** One number as the widget shows it: at most 2 decimals (the 10 ms grid), no trailing zeros but
 *  at least one decimal ("2.0", "3.25"). */
export function formatSeconds(v) {
  const s = snap(v).toFixed(2).replace(/0+$/, "");
  return s.endsWith(".") ? s + "0" : s;
}

/** [[2, 3.5], [6, 7]] -> "2.0-3.5, 6.0-7.0" (what parseRanges reads back). */
export function formatRanges(ranges) {
  return ranges.map(([a, b]) => `${formatSeconds(a)}-${formatSeconds(b)}`).join(", ");
}

// ------------------------------------------------------------------ editing
/** What is under pixel x: {kind: "edge", index, side: 0|1} within `tolerancePx` of an edge,
 *  {kind: "inside", index}, or null. */
export function hitTest(ranges, scale, x, tolerancePx = 5) {
  let best = null;
  let bestD = Infinity;
  ranges.forEach(([a, b], index) => {
    for (const [side, t] of [[0, a], [1, b]]) {
      const d = Math.abs(scale.toX(t) - x);
      if (d <= tolerancePx && d < bestD) {
        best = { kind: "edge", index, side };
        bestD = d;
      }
    }
  });
  if (best) return best;
  const t = scale.toSeconds(x);
  const index = ranges.findIndex(([a, b]) => t >= a && t <= b);
  return index >= 0 ? { kind: "inside", index } : null;
}

/** Range from two drag positions (seconds, any order), snapped and clamped to [0, duration];
 *  null when shorter than one snap step. */
export function rangeFromDrag(t0, t1, duration) {
  const a = snap(clamp(Math.min(t0, t1), 0, duration));
  const b = snap(clamp(Math.max(t0, t1), 0, duration));
  return b - a >= SNAP_SECONDS - 1e-9 ? [a, b] : null;
}

/** Move edge `side` (0 start, 1 end) of range `index` to `t` (snapped, kept ≥ 10 ms long and
 *  inside [0, duration]); returns a new merged list. */
export function moveEdge(ranges, index, side, t, duration) {
  const out = ranges.map(([a, b]) => [a, b]);
  const r = out[index];
  const v = snap(clamp(t, 0, duration));
  if (side === 0) r[0] = Math.min(v, snap(r[1] - SNAP_SECONDS));
  else r[1] = Math.max(v, snap(r[0] + SNAP_SECONDS));
  return mergeRanges(out);
}

export function removeRange(ranges, index) {
  return ranges.filter((_, i) => i !== index).map(([a, b]) => [a, b]);
}

// ------------------------------------------------------------------ inpaint ramps (drawing)
/** Regenerate-weight (0 keep .. 1 regenerate) at time t for inpaint ranges with a Hann ramp of
 *  `ramp` seconds inside each range edge (as audiox_core.generate.keep_mask_from_ranges). */
export function inpaintWeight(ranges, ramp, t) {
  let w = 0;
  for (const [a, b] of ranges) {
    if (t < a || t > b) continue;
    const r = Math.min(ramp, (b - a) / 2);
    let v = 1;
    if (r > 0) {
      const d = Math.min(t - a, b - t);
      if (d < r) v = 0.5 - 0.5 * Math.cos((Math.PI * d) / r);
    }
    w = Math.max(w, v);
  }
  return w;
}

// ------------------------------------------------------------------ spectrogram
/** Log-magnitude spectrogram of a mono signal: `frames` columns x `bins` rows (bins = fft/2),
 *  values in [0, 1] (dB scaled over `rangeDb`), as a Float32Array row-major [frame][bin].
 *  Radix-2 FFT with a Hann window; `fft` must be a power of two. */
export function spectrogram(samples, { fft = 512, frames = 256, rangeDb = 80 } = {}) {
  if (fft & (fft - 1)) throw new RangeError(`fft size must be a power of two, got ${fft}`);
  const bins = fft / 2;
  const out = new Float32Array(frames * bins);
  const n = samples.length;
  const win = new Float32Array(fft);
  for (let i = 0; i < fft; i++) win[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / fft);
  const re = new Float32Array(fft);
  const im = new Float32Array(fft);
  let peak = 1e-12;
  for (let f = 0; f < frames; f++) {
    const center = frames > 1 ? Math.round((f * (n - 1)) / (frames - 1)) : 0;
    const start = center - fft / 2;
    for (let i = 0; i < fft; i++) {
      const j = start + i;
      re[i] = j >= 0 && j < n ? samples[j] * win[i] : 0;
      im[i] = 0;
    }
    fftInPlace(re, im);
    for (let k = 0; k < bins; k++) {
      const p = re[k] * re[k] + im[k] * im[k];
      out[f * bins + k] = p;
      if (p > peak) peak = p;
    }
  }
  const floor = -rangeDb;
  for (let i = 0; i < out.length; i++) {
    const db = 10 * Math.log10(out[i] / peak + 1e-20);
    out[i] = clamp((db - floor) / -floor, 0, 1);
  }
  return { data: out, frames, bins };
}

export function fftInPlace(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const ar = re[i + k + len / 2] * cr - im[i + k + len / 2] * ci;
        const ai = re[i + k + len / 2] * ci + im[i + k + len / 2] * cr;
        re[i + k + len / 2] = re[i + k] - ar;
        im[i + k + len / 2] = im[i + k] - ai;
        re[i + k] += ar;
        im[i + k] += ai;
        const t = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = t;
      }
    }
  }
}

// ------------------------------------------------------------------ training curve
/** Mapping of a loss history [{step, loss}] into a w x h box (log-y when all positive and the
 *  spread is over 10x): returns {points: [[x, y]...], yMin, yMax, log}. */
export function curvePoints(history, w, h, key = "loss") {
  const pts = history.filter((e) => Number.isFinite(e?.[key]) && Number.isFinite(e?.step));
  if (!pts.length) return { points: [], yMin: 0, yMax: 0, log: false };
  let lo = Math.min(...pts.map((e) => e[key]));
  let hi = Math.max(...pts.map((e) => e[key]));
  const log = lo > 0 && hi / lo > 10;
  const f = log ? Math.log10 : (v) => v;
  let fl = f(lo);
  let fh = f(hi);
  if (fh === fl) {
    fh += 0.5;
    fl -= 0.5;
  }
  const s0 = pts[0].step;
  const s1 = pts[pts.length - 1].step;
  const span = s1 > s0 ? s1 - s0 : 1;
  const points = pts.map((e) => [((e.step - s0) / span) * w, h - ((f(e[key]) - fl) / (fh - fl)) * h]);
  return { points, yMin: lo, yMax: hi, log };
}

/** "1 h 02 min", "3 min 05 s", "12 s" for an ETA in seconds. */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}
