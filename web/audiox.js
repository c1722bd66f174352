// AudioX for ComfyUI: the audio workbench in the graph.
//  * AudioX Inpaint Mask / Completion Mask: waveform (or spectrogram) of the connected audio with the
//    ranges / kept part drawn over it; drag to add a range, drag edges to resize, select + Delete to
//    remove, 10 ms snapping; the `ranges` / `keep_seconds` widgets follow both ways.  Before a run the
//    connected Load Audio's file is read through /view; after a run, the audio the node received.
//  * AudioX VAE Decode: waveform / spectrogram / player of every clip of the batch after a run, the
//    regenerated parts marked; an A/B switch to another decoded result keeps the play position.
//  * AudioX Train LoRA / Distill: the live loss curve, steps/s, ETA, lr and the last checkpoint from
//    the 'audiox.training' websocket messages the nodes send while they train.
//  * AudioX MAF Fusion / Modality Drop: the learned gates as one bar per modality.
//  * Every AudioX node: its text report in a fixed-height box that scrolls.
// Plain ES modules, no build step, nothing fetched but this server's /view files.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import * as L from "./lib/audio_logic.js";
import { TEMPLATE_INFO } from "./lib/templates.js";
import { CurveView, GateBars, WaveView, button, loadAudio, reportBox } from "./lib/workbench_ui.js";

// heights (CSS px) of the fixed-size widgets; tests/build_workflows.py reserves the same space
export const HEIGHTS = { editor: 190, preview: 190, training: 200, gates: 74, report: 96 };
const TRAINING_EVENT = "audiox.training";
const LOG = "[AudioX]";

const isAudioX = (nodeData) => String(nodeData?.category ?? "").startsWith("audio/AudioX");
const widgetOf = (node, name) => node.widgets?.find((w) => w.name === name);

function viewURL(ref) {
  const q = new URLSearchParams({ filename: ref.filename, type: ref.type || "output", subfolder: ref.subfolder || "" });
  return api.apiURL(`/view?${q}`);
}

/** A fixed-height DOM widget (not serialized: it adds nothing to widgets_values). */
function addPanel(node, name, element, height) {
  const w = node.addDOMWidget(name, "audiox_panel", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => height,
    getMaxHeight: () => height,
    getHeight: () => height,
  });
  w.serialize = false;
  element.style.height = `${height}px`;
  element.style.overflow = "hidden";
  return w;
}

function fitNode(node) {
  const s = node.computeSize?.();
  if (!s) return;
  node.setSize([Math.max(node.size[0], s[0]), Math.max(node.size[1], s[1])]);
  app.graph?.setDirtyCanvas?.(true, true);
}

const audioCache = new Map(); // url -> Promise<{samples, sampleRate, duration}>
function decode(url) {
  if (!audioCache.has(url)) {
    const p = loadAudio(url);
    p.catch(() => audioCache.delete(url));
    audioCache.set(url, p);
  }
  return audioCache.get(url);
}

async function show(view, url, what) {
  try {
    const audio = await decode(url);
    view.setError("");
    view.setAudio({ ...audio, url });
  } catch (e) {
    console.warn(LOG, `could not load ${what}:`, e);
    view.setError(`could not load ${what}`);
  }
}

// ------------------------------------------------------------------ range editor (masks)
/** URL of the file behind the node's `audio` input before any run: a Load Audio's chosen file. */
function upstreamAudioURL(node) {
  const slot = node.inputs?.findIndex((i) => i.name === "audio") ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const src = node.getInputNode?.(slot);
  const file = src ? widgetOf(src, "audio")?.value : null;
  if (typeof file !== "string" || !file) return null;
  const clean = file.replace(/\s*\[(input|output|temp)\]\s*$/, "");
  const type = /\[(output|temp)\]\s*$/.exec(file)?.[1] ?? "input";
  const cut = clean.lastIndexOf("/");
  return viewURL({ filename: clean.slice(cut + 1), subfolder: cut >= 0 ? clean.slice(0, cut) : "", type });
}

function setupMaskEditor(node, kind) {
  const view = new WaveView({ mode: kind, height: 130 });
  node.audioxEditor = view;
  addPanel(node, "audiox_editor", view.element, HEIGHTS.editor);
  const state = { text: null, ramp: null, keep: null, url: null, ranUrl: null };
  const setWidget = (name, value) => {
    const w = widgetOf(node, name);
    if (!w) return;
    w.value = value;
    w.callback?.(value, app.canvas, node);
    node.setDirtyCanvas?.(true, true);
    app.graph?.change?.();
  };
  if (kind === "inpaint") {
    view.onRangesChange = (ranges) => {
      const text = L.formatRanges(ranges);
      state.text = text;
      setWidget("ranges", text);
      view.setError(ranges.length ? "" : "no range left: drag on the waveform to add one");
    };
  } else {
    view.onKeepChange = (seconds) => {
      state.keep = seconds;
      setWidget("keep_seconds", seconds);
    };
  }
  // widget -> view: checked on every frame the node is drawn (typing, undo, loading a workflow)
  node.audioxSync = () => {
    if (kind === "inpaint") {
      const text = String(widgetOf(node, "ranges")?.value ?? "");
      const ramp = Number(widgetOf(node, "ramp_seconds")?.value ?? 0);
      if (text !== state.text || ramp !== state.ramp) {
        state.text = text;
        state.ramp = ramp;
        const { ranges, error } = L.tryParseRanges(text);
        view.setRanges(ranges, ramp);
        view.setError(error);
      }
    } else {
      const keep = Number(widgetOf(node, "keep_seconds")?.value ?? 0);
      if (keep !== state.keep) {
        state.keep = keep;
        view.setKeep(keep);
      }
    }
    // the connected Load Audio's file; a new choice there replaces the audio of the last run
    const url = upstreamAudioURL(node);
    if (url !== state.url) {
      state.url = url;
      state.ranUrl = null;
      if (url) show(view, url, "the connected audio");
      else view.setAudio(null);
    }
  };
  node.audioxShowRun = (url) => {
    state.ranUrl = url;
    show(view, url, "the audio of the last run");
  };
}

// ------------------------------------------------------------------ output preview (VAE Decode)
const previews = new Map(); // node id -> {node, items: [{url, label}]}

function setupPreview(node) {
  const box = document.createElement("div");
  box.style.overflowY = "auto";
  box.dataset.audioxView = "preview-box";
  box.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
  node.audioxPreviewBox = box;
  addPanel(node, "audiox_preview", box, HEIGHTS.preview);
  const hint = document.createElement("div");
  hint.textContent = "the decoded audio appears here after a run";
  Object.assign(hint.style, { font: "11px sans-serif", color: "#888", padding: "6px" });
  box.append(hint);
}

function showPreview(node, entries) {
  const box = node.audioxPreviewBox;
  if (!box) return;
  const items = [];
  for (const e of entries) {
    (e.audio || []).forEach((ref) => items.push({ url: viewURL(ref), marks: e.regenerated || [], mask: e.mask }));
  }
  previews.set(String(node.id), { node, items });
  box.replaceChildren();
  const many = items.length > 1;
  node.audioxViews = items.map((it, i) => {
    const view = new WaveView({ mode: "preview", height: many ? 60 : 120,
      label: many ? `item ${i + 1}/${items.length}` : "" });
    view.setMarks(it.marks, it.mask === "complete" ? "completion" : it.mask === "inpaint" ? "inpainting" : null);
    view.toolbar.append(button("A/B", "Switch to the same item of another AudioX VAE Decode result (keeps the play " +
      "position)", () => abSwitch(node, view, i)));
    view.element.style.marginBottom = "6px";
    box.append(view.element);
    show(view, it.url, "the decoded audio");
    view.abIndex = -1; // -1: this node's own result
    return view;
  });
}

/** A/B: cycle this view between its own result and the same item of the other decoders' results,
 *  keeping the play position (and playing on if it was playing). */
async function abSwitch(node, view, item) {
  const own = previews.get(String(node.id));
  const others = [...previews.values()].filter((p) => p.node !== node && p.node.graph && p.items.length);
  if (!others.length) {
    view.setError("A/B: run a graph with a second AudioX VAE Decode to compare");
    setTimeout(() => view.setError(""), 2500);
    return;
  }
  view.abIndex = view.abIndex + 1 >= others.length ? -1 : view.abIndex + 1;
  const src = view.abIndex < 0 ? own : others[view.abIndex];
  const it = src.items[Math.min(item, src.items.length - 1)];
  const t = view.player.currentTime;
  const playing = !view.player.paused;
  view.player.pause();
  try {
    const audio = await decode(it.url);
    view.label = view.abIndex < 0 ? "A (this node)" : `B: ${src.node.title} #${src.node.id}`;
    view.setMarks(it.marks, view.markKind);
    view.setAudio({ ...audio, url: it.url });
    const resume = () => {
      view.player.currentTime = Math.min(t, audio.duration);
      if (playing) view.play(view.player.currentTime, null);
      else view.draw();
    };
    if (view.player.readyState >= 1) resume();
    else view.player.addEventListener("loadedmetadata", resume, { once: true });
  } catch (e) {
    console.warn(LOG, "A/B: could not load the other result:", e);
  }
}

// ------------------------------------------------------------------ Templates browser cards
/** Frontend 1.27.10 titles custom-node template cards with the file name: show the readable title
 *  and one-line description of web/lib/templates.js on the cards of this pack's graphs. */
function labelTemplateCards() {
  for (const card of document.querySelectorAll('[data-testid^="template-workflow-"]')) {
    const name = card.dataset.testid.slice("template-workflow-".length);
    const info = TEMPLATE_INFO[name];
    if (!info) continue;
    const title = card.querySelector("h3");
    const desc = card.querySelector("p");
    // a custom-node card (described by its name with spaces) or one labelled already; core
    // templates have their own descriptions and no name of ours
    const fallback = name.replace(/[-_]/g, " ").trim();
    if (![fallback, info.description].includes(desc?.textContent?.trim())) continue;
    if (title && title.textContent !== info.title) {
      title.textContent = info.title;
      title.title = info.title;
    }
    if (desc && desc.textContent !== info.description) {
      desc.textContent = info.description;
      desc.title = info.description;
    }
  }
}

function watchTemplateCards() {
  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      labelTemplateCards();
    });
  }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["src"] });
}

// ------------------------------------------------------------------ registration
app.registerExtension({
  name: "audiox.workbench",

  setup() {
    watchTemplateCards();
    api.addEventListener(TRAINING_EVENT, ({ detail }) => {
      const node = app.graph?.getNodeById?.(Number(detail?.node)) ?? app.graph?.getNodeById?.(detail?.node);
      node?.audioxCurve?.update(detail);
      const clip = detail?.preview;
      if (clip && node?.audioxCurve) {
        node.audioxCurve.setPreview(clip.step, clip.audio ? viewURL(clip.audio) : null, clip.error ?? null);
      }
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isAudioX(nodeData)) return;
    const name = nodeData.name;
    const proto = nodeType.prototype;

    const created = proto.onNodeCreated;
    proto.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      try {
        if (name === "AudioXInpaintMask") setupMaskEditor(this, "inpaint");
        else if (name === "AudioXCompletionMask") setupMaskEditor(this, "complete");
        else if (name === "AudioXVAEDecode") setupPreview(this);
        else if (name === "AudioXTrainLoRA" || name === "AudioXDistill") {
          this.audioxCurve = new CurveView({ height: 128 });
          addPanel(this, "audiox_training", this.audioxCurve.element, HEIGHTS.training);
        }
        if (this.widgets?.some((w) => w.name?.startsWith("audiox_"))) fitNode(this);
      } catch (e) {
        console.error(LOG, `could not set up ${name}:`, e);
      }
      return r;
    };

    const draw = proto.onDrawForeground;
    proto.onDrawForeground = function () {
      const r = draw?.apply(this, arguments);
      this.audioxSync?.();
      return r;
    };

    const executed = proto.onExecuted;
    proto.onExecuted = function (message) {
      executed?.apply(this, arguments);
      try {
        onExecuted(this, message);
      } catch (e) {
        console.error(LOG, `could not show the result of ${name}:`, e);
      }
    };
  },
});

function onExecuted(node, message) {
  const ran = message?.audiox_audio?.[0]?.audio?.[0];
  if (ran && node.audioxShowRun) node.audioxShowRun(viewURL(ran));
  if (message?.audiox_preview?.length) showPreview(node, message.audiox_preview);
  const gates = message?.audiox_gates?.[0];
  if (gates) {
    if (!node.audioxGates) {
      node.audioxGates = new GateBars();
      addPanel(node, "audiox_gates", node.audioxGates.element, HEIGHTS.gates);
      fitNode(node);
    }
    node.audioxGates.set(gates);
  }
  const text = message?.text;
  if (text && !(Array.isArray(text) && text.length === 0)) {
    if (!node.audioxReport) {
      node.audioxReport = reportBox(HEIGHTS.report - 6);
      addPanel(node, "audiox_report", node.audioxReport, HEIGHTS.report);
      fitNode(node);
    }
    node.audioxReport.textContent = Array.isArray(text) ? text.join("\n") : String(text);
  }
}
