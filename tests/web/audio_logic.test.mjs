// Unit tests of web/lib/audio_logic.js (run: node --test tests/web/).  Kept outside web/ because
// ComfyUI imports every .js file under web/ into the browser as an extension.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as L from "../../web/lib/audio_logic.js";

const CASES = JSON.parse(readFileSync(new URL("./ranges_cases.json", import.meta.url), "utf8"));

test("peaks: min/max per column over exactly the samples of that column", () => {
  const s = Float32Array.from([0, 1, -1, 0.5, 0.25, -0.5, 0, 0.75]);
  const p = L.computePeaks(s, 4);
  assert.deepEqual(Array.from(p.max), [1, 0.5, 0.25, 0.75]);
  assert.deepEqual(Array.from(p.min), [0, -1, -0.5, 0]);
  const one = L.computePeaks(s, 1);
  assert.equal(one.max[0], 1);
  assert.equal(one.min[0], -1);
});

test("peaks: more columns than samples repeat the sample under each column", () => {
  const p = L.computePeaks([0.5, -0.25], 4);
  assert.deepEqual(Array.from(p.max), [0.5, 0.5, -0.25, -0.25]);
  assert.deepEqual(Array.from(p.min), [0.5, 0.5, -0.25, -0.25]);
  assert.equal(L.computePeaks([], 3).max.length, 3);
});

test("peaks of a long sine stay within its amplitude and reach it in every column", () => {
  const n = 44100;
  const s = new Float32Array(n).map((_, i) => 0.8 * Math.sin((2 * Math.PI * 441 * i) / n));
  const p = L.computePeaks(s, 100);
  for (let c = 0; c < 100; c++) {
    assert.ok(p.max[c] <= 0.8 + 1e-6 && p.max[c] > 0.79, `column ${c} max ${p.max[c]}`);
    assert.ok(p.min[c] >= -0.8 - 1e-6 && p.min[c] < -0.79);
  }
});

test("mixToMono averages channels", () => {
  assert.deepEqual(Array.from(L.mixToMono([Float32Array.from([1, 0]), Float32Array.from([0, 1])])), [0.5, 0.5]);
});

test("time scale: pixels and seconds map both ways, clamped to the clip", () => {
  const sc = L.makeTimeScale(10, 500, 20);
  assert.equal(sc.toX(0), 20);
  assert.equal(sc.toX(10), 520);
  assert.equal(sc.toX(2.5), 145);
  assert.equal(sc.toSeconds(145), 2.5);
  assert.equal(sc.toSeconds(0), 0);
  assert.equal(sc.toSeconds(10000), 10);
  for (const t of [0.01, 1.23, 7.77]) assert.ok(Math.abs(sc.toSeconds(sc.toX(t)) - t) < 1e-9);
  assert.throws(() => L.makeTimeScale(0, 100), /duration/);
  assert.throws(() => L.makeTimeScale(1, 0), /width/);
});

test("snap rounds to the 10 ms grid without float noise", () => {
  assert.equal(L.snap(1.234), 1.23);
  assert.equal(L.snap(1.235001), 1.24);
  assert.equal(L.snap(0.1 + 0.2), 0.3);
  assert.equal(L.snap(-0.004), 0);
  assert.equal(String(L.snap(2.675)), "2.68");
});

test("ranges: the shared grammar cases (same as audiox_core/task.py parse_ranges)", () => {
  for (const [text, expected] of CASES.valid) assert.deepEqual(L.parseRanges(text), expected, JSON.stringify(text));
  for (const text of CASES.invalid) assert.throws(() => L.parseRanges(text), Error, JSON.stringify(text));
});

test("ranges: error messages name the bad part", () => {
  assert.throws(() => L.parseRanges("1-2, x"), /'x' is not a range/);
  assert.throws(() => L.parseRanges("3-2"), /'3-2': the end must be after the start/);
  assert.deepEqual(L.tryParseRanges("oops"), { ranges: [], error: "'oops' is not a range in seconds like '2.0-3.5'" });
  assert.equal(L.tryParseRanges("1-2").error, null);
});

test("ranges: format round-trips through parse", () => {
  assert.equal(L.formatRanges([[2, 3.5], [6, 7]]), "2.0-3.5, 6.0-7.0");
  assert.equal(L.formatRanges([[0.004, 1.236]]), "0.0-1.24");
  for (const rs of [[[0.5, 1.25]], [[1, 2], [3.33, 4.01]]]) assert.deepEqual(L.parseRanges(L.formatRanges(rs)), rs);
});

test("ranges: merge sorts, joins overlapping and touching ranges, drops empty ones", () => {
  assert.deepEqual(L.mergeRanges([[5, 6], [1, 2], [1.5, 3], [3, 4], [7, 7]]), [[1, 4], [5, 6]]);
  const input = [[1, 2]];
  const out = L.mergeRanges(input);
  out[0][0] = 9;
  assert.equal(input[0][0], 1, "merge copies");
});

test("editing: drag creates a snapped range; a click (too short) creates none", () => {
  assert.deepEqual(L.rangeFromDrag(3.456, 1.2345, 10), [1.23, 3.46]);
  assert.deepEqual(L.rangeFromDrag(9, 12, 10), [9, 10]);
  assert.equal(L.rangeFromDrag(2.001, 2.003, 10), null);
});

test("editing: hit test finds edges first, then insides", () => {
  const sc = L.makeTimeScale(10, 1000);
  const rs = [[1, 2], [2.04, 3]];
  assert.deepEqual(L.hitTest(rs, sc, 101), { kind: "edge", index: 0, side: 0 });
  assert.deepEqual(L.hitTest(rs, sc, 203), { kind: "edge", index: 1, side: 0 }, "nearest edge wins");
  assert.deepEqual(L.hitTest(rs, sc, 150), { kind: "inside", index: 0 });
  assert.equal(L.hitTest(rs, sc, 500), null);
});

test("editing: moving an edge snaps, keeps 10 ms minimum and merges", () => {
  assert.deepEqual(L.moveEdge([[1, 2]], 0, 1, 2.504, 10), [[1, 2.5]]);
  assert.deepEqual(L.moveEdge([[1, 2]], 0, 0, 5, 10), [[1.99, 2]]);
  assert.deepEqual(L.moveEdge([[1, 2], [3, 4]], 0, 1, 3.5, 10), [[1, 4]]);
  assert.deepEqual(L.moveEdge([[1, 2]], 0, 0, -3, 10), [[0, 2]]);
  assert.deepEqual(L.removeRange([[1, 2], [3, 4]], 0), [[3, 4]]);
});

test("inpaint weight: 1 inside, 0 outside, Hann ramp at the edges", () => {
  const rs = [[1, 2]];
  assert.equal(L.inpaintWeight(rs, 0.1, 0.5), 0);
  assert.equal(L.inpaintWeight(rs, 0.1, 1.5), 1);
  assert.ok(Math.abs(L.inpaintWeight(rs, 0.1, 1.05) - 0.5) < 1e-9);
  assert.equal(L.inpaintWeight(rs, 0, 1.0), 1);
});

test("spectrogram: a sine's energy sits in its FFT bin", () => {
  const sr = 8000;
  const fft = 256;
  const bin = 32; // 32 * 8000 / 256 = 1000 Hz
  const s = new Float32Array(sr).map((_, i) => Math.sin((2 * Math.PI * 1000 * i) / sr));
  const { data, frames, bins } = L.spectrogram(s, { fft, frames: 8 });
  assert.equal(bins, 128);
  for (let f = 1; f < frames - 1; f++) {
    const row = data.subarray(f * bins, (f + 1) * bins);
    const argmax = row.indexOf(Math.max(...row));
    assert.equal(argmax, bin, `frame ${f}`);
    assert.ok(row[100] < 0.5, "far bins are quiet");
  }
  assert.throws(() => L.spectrogram(s, { fft: 300 }), /power of two/);
});

test("curve points: x follows steps, y is flipped and log-scaled over a wide spread", () => {
  const h = [{ step: 1, loss: 1 }, { step: 3, loss: 0.01 }, { step: 5, loss: 0.1 }, { step: 6, loss: NaN }];
  const c = L.curvePoints(h, 100, 50);
  assert.equal(c.log, true);
  assert.deepEqual(c.points.map((p) => p[0]), [0, 50, 100]);
  assert.equal(c.points[0][1], 0);
  assert.equal(c.points[1][1], 50);
  assert.ok(Math.abs(c.points[2][1] - 25) < 1e-9);
  assert.equal(L.curvePoints([{ step: 1, loss: 2 }, { step: 2, loss: 3 }], 10, 10).log, false);
  assert.deepEqual(L.curvePoints([], 10, 10).points, []);
});

test("durations print for the ETA", () => {
  assert.equal(L.formatDuration(12.4), "12 s");
  assert.equal(L.formatDuration(185), "3 min 05 s");
  assert.equal(L.formatDuration(3720), "1 h 02 min");
  assert.equal(L.formatDuration(NaN), "–");
});

test("WAV header sample rate (the rate the browser decodes at)", () => {
  const head = new Uint8Array(44);
  const put = (o, t) => [...t].forEach((c, i) => (head[o + i] = c.charCodeAt(0)));
  put(0, "RIFF");
  put(8, "WAVE");
  put(12, "fmt ");
  new DataView(head.buffer).setUint32(24, 16000, true);
  assert.equal(L.wavSampleRate(head), 16000);
  new DataView(head.buffer).setUint32(24, 44100, true);
  assert.equal(L.wavSampleRate(head), 44100);
  put(0, "fLaC");
  assert.equal(L.wavSampleRate(head), null);
  assert.equal(L.wavSampleRate(head.slice(0, 10)), null);
});
