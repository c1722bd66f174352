"""Write workflows/*.json (UI format) from the graph descriptions below (dev tool, not a test).

    python tests/build_workflows.py            # rewrite every example graph
    python tests/build_workflows.py --check    # exit 1 if a file differs from what would be written

Each graph names the demo model files (models/demo) so it runs out of the box, and carries an
``extra.audiox_test`` block: tiny weights of the same architecture under the same file names,
cheaper settings and what the outputs must look like (see comfy_harness.workflow_test_settings).
Widget values are laid out with the same rules the converter reads them back with
(``NodeDef.widget_slots``), so the files stay consistent with the nodes' INPUT_TYPES.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root: audiox_core, runner

import comfy_fakes  # noqa: E402
import comfy_harness as H  # noqa: E402

ROOT = HERE.parent
OUT = ROOT / "workflows"
WEB_TEMPLATES = ROOT / "web" / "lib" / "templates.js"

DEMO_TURBO = "audiox_demo_turbo.safetensors"
DEMO_BASE = "audiox_demo_base.safetensors"
DEMO_T5 = "demo_t5"
DEMO_MODELS = {f"audiox/{DEMO_TURBO}": "tiny_turbo", f"audiox/{DEMO_BASE}": "tiny_turbo_base",
               f"text_encoders/{DEMO_T5}": "tiny_t5"}
EXPECT = {"sample_rate": 8000, "channels": 2}  # the tiny models' output (the demo model: 16000 Hz)

# the example media's canonical captions (runner/headless.py renders those files from the demo world)
EVENTS_CAPTION = "two high bells, then a noise burst"
MUSIC_CAPTION = "a slow melody on a plucked string in C major"
IMAGE_CAPTION = "two high rising chirps"
DATASET_CAPTION = "two mid drum hits, then a mid bell"  # a caption of the example training folder
DEMO_LORA = "audiox_demo_lora"
DEMO_STUDENT = "audiox_demo_student"
TASK_AUDIO = "Generate general audio for the video"
TASK_MUSIC = "Generate music for the video"


# the fixed-height panels web/audiox.js adds to a node (HEIGHTS there), reserved here so that a node
# does not grow over its neighbour when the panel appears (reports and gates appear after a run)
PANEL_HEIGHTS = {"editor": 190, "preview": 190, "training": 200, "gates": 74, "report": 96,
                 "progress_text": 66}  # the core frontend's live text line (send_progress_text) of training nodes
PANELS = {"AudioXInpaintMask": ("editor",), "AudioXCompletionMask": ("editor",), "AudioXVAEDecode": ("preview",),
          "AudioXTrainLoRA": ("training", "progress_text", "report"),
          "AudioXDistill": ("training", "progress_text", "report"),
          "AudioXMAFFusion": ("gates", "report"), "AudioXModalityDrop": ("gates", "report"),
          "AudioXModelLoader": ("report",), "AudioXSampler": ("report",), "AudioXTurboSampler": ("report",),
          "AudioXDataset": ("report",), "AudioXLoRALoader": ("report",)}
TITLE_HEIGHT = 30  # LiteGraph draws the title bar above a node's pos
NODE_WIDTH = 380
COLUMN = NODE_WIDTH + 60
GAP = TITLE_HEIGHT + 30


@dataclass
class Node:
    id: int
    type: str
    widgets: dict
    title: Optional[str] = None
    inputs: list = field(default_factory=list)  # [name, type, link id]
    outputs: list = field(default_factory=list)  # [name, type, [link ids]]
    depth: int = 0


class Graph:
    def __init__(self, defs: dict, name: str, note: str):
        self.defs, self.name, self.note = defs, name, note
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.test: dict = {"models": dict(DEMO_MODELS), "overrides": {}, "expect": dict(EXPECT)}

    def add(self, type_: str, title: Optional[str] = None, **widgets) -> Node:
        d = self.defs[type_]
        unknown = set(widgets) - {i.name for i in d.inputs if i.is_widget}
        if unknown:
            raise ValueError(f"{type_}: no widget(s) {sorted(unknown)}")
        n = Node(len(self.nodes) + 2, type_, widgets, title)  # id 1 is the note
        n.inputs = [[i.name, i.type_name, None] for i in d.inputs if not i.is_widget]
        names = getattr(d.cls, "RETURN_NAMES", None) or d.outputs
        n.outputs = [[nm, t, []] for nm, t in zip(names, d.outputs)]
        self.nodes.append(n)
        return n

    def link(self, src: Node, out: Any, dst: Node, inp: str) -> None:
        slot = out if isinstance(out, int) else [o[0] for o in src.outputs].index(out)
        dslot = [i[0] for i in dst.inputs].index(inp)
        lid = len(self.links) + 1
        t = src.outputs[slot][1]
        self.links.append([lid, src.id, slot, dst.id, dslot, t])
        src.outputs[slot][2].append(lid)
        dst.inputs[dslot][2] = lid
        dst.depth = max(dst.depth, src.depth + 1)
        self._relax()

    def _relax(self):
        by_id = {n.id: n for n in self.nodes}
        for _ in range(len(self.nodes)):
            changed = False
            for _, s, _, d, _, _ in self.links:
                if by_id[d].depth < by_id[s].depth + 1:
                    by_id[d].depth = by_id[s].depth + 1
                    changed = True
            if not changed:
                break

    def _widgets_values(self, n: Node) -> list:
        d = self.defs[n.type]
        vals = []
        for slot in d.widget_slots():
            if slot.kind == "value":
                vals.append(n.widgets.get(slot.name, slot.input.default()))
            elif slot.kind == "control":
                vals.append("fixed")
            else:  # upload button
                vals.append("image" if n.type in ("LoadImage", "LoadVideo") else None)
        if n.type == "LoadAudio":
            vals.append(None)  # the frontend's audio player widget
        return vals

    @staticmethod
    def _height(d, n: Node) -> int:
        slots = d.widget_slots()
        h = 30 + 22 * max(len(n.inputs), len(n.outputs), 1) + 26 * len(slots)
        h += sum(70 for s in slots if s.kind == "value" and s.input.options.get("multiline"))
        if n.type in ("LoadAudio", "SaveAudio", "PreviewAudio"):
            h += 60
        if n.type in ("SaveVideo", "PreviewImage", "SaveImage", "LoadImage", "LoadVideo"):
            h += 220
        return h + sum(PANEL_HEIGHTS[p] + 4 for p in PANELS.get(n.type, ()))

    def to_json(self) -> dict:
        cols: dict[int, int] = {}
        nodes = [{"id": 1, "type": "Note", "pos": [20, 20 + TITLE_HEIGHT], "size": [NODE_WIDTH, 220], "flags": {},
                  "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                  "widgets_values": [self.note], "title": f"About: {self.name}"}]
        for order, n in enumerate(sorted(self.nodes, key=lambda x: (x.depth, x.id)), start=1):
            d = self.defs[n.type]
            x = 20 + COLUMN * n.depth
            y = cols.get(n.depth, 20 + TITLE_HEIGHT + 220 + GAP if n.depth == 0 else 20 + TITLE_HEIGHT)
            h = self._height(d, n)
            cols[n.depth] = y + h + GAP
            entry = {"id": n.id, "type": n.type, "pos": [x, y], "size": [NODE_WIDTH, h], "flags": {}, "order": order,
                     "mode": 0,
                     "inputs": [{"name": nm, "type": t, "link": lid} for nm, t, lid in n.inputs],
                     "outputs": [{"name": nm, "type": t, "links": links or None, "slot_index": i}
                                 for i, (nm, t, links) in enumerate(n.outputs)],
                     "properties": {"Node name for S&R": n.type},
                     "widgets_values": self._widgets_values(n)}
            if n.title:
                entry["title"] = n.title
            nodes.append(entry)
        nodes.sort(key=lambda e: e["id"])
        test = {k: v for k, v in self.test.items() if v}
        return {"last_node_id": max(e["id"] for e in nodes), "last_link_id": len(self.links), "nodes": nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}, "audiox_test": test}, "version": 0.4}

    def override(self, n: Node, **values) -> None:
        self.test["overrides"].setdefault(str(n.id), {}).update(values)


# ============================================================================================
# building blocks
# ============================================================================================
def loaders(g: Graph, ckpt: str = DEMO_TURBO, t5: str = DEMO_T5):
    model = g.add("AudioXModelLoader", ckpt_name=ckpt, dtype="auto", keep_on_gpu=True)
    t5n = g.add("AudioXT5Loader", t5_name=t5, dtype="auto")
    return model, t5n


def text(g: Graph, model: Node, t5: Node, prompt: str, title: Optional[str] = None) -> Node:
    n = g.add("AudioXTextEncoder", title=title, prompt=prompt)
    g.link(model, "model", n, "model")
    g.link(t5, "t5", n, "t5")
    return n


def fusion(g: Graph, model: Node, text_n: Optional[Node] = None, video: Optional[Node] = None,
           audio: Optional[Node] = None, **scales) -> Node:
    n = g.add("AudioXMAFFusion", **scales)
    g.link(model, "model", n, "model")
    for name, src in (("text", text_n), ("video", video), ("audio", audio)):
        if src is not None:
            g.link(src, 0, n, name)
    return n


def turbo(g: Graph, model: Node, ctx: Node, seed: int = 42, **kw) -> Node:
    n = g.add("AudioXTurboSampler", seed=seed, steps=4, **kw)
    g.link(model, "model", n, "model")
    g.link(ctx, "context", n, "context")
    return n


def decode(g: Graph, model: Node, sampler: Node, original: Optional[Node] = None) -> Node:
    n = g.add("AudioXVAEDecode", normalize=True, chunked="auto")
    g.link(model, "vae", n, "vae")
    g.link(sampler, "latent", n, "samples")
    if original is not None:
        g.link(original, 0, n, "original_audio")
    return n


def save_audio(g: Graph, audio: Node, prefix: str) -> Node:
    n = g.add("SaveAudio", filename_prefix=f"audio/{prefix}")
    g.link(audio, 0, n, "audio")
    return n


def spectrogram(g: Graph, audio: Node, prefix: str) -> Node:
    s = g.add("AudioXSpectrogram", width=768, height=256, db_range=80.0)
    g.link(audio, 0, s, "audio")
    n = g.add("SaveImage", filename_prefix=f"spectrogram/{prefix}")
    g.link(s, "image", n, "images")
    return n


def video_out(g: Graph, audio: Node, video: Node, prefix: str, start: float = 0.0) -> Node:
    v = g.add("AudioXVideoWithAudio", start_seconds=start, batch_index=0, fps=25.0)
    g.link(audio, 0, v, "audio")
    g.link(video, 0, v, "video")
    n = g.add("SaveVideo", filename_prefix=f"video/{prefix}", format="auto", codec="auto")
    g.link(v, "video", n, "video")
    return n


# ============================================================================================
# the graphs
# ============================================================================================
def text_to(g: Graph, prompt: str, prefix: str) -> None:
    model, t5 = loaders(g)
    t = text(g, model, t5, prompt)
    ctx = fusion(g, model, t)
    a = decode(g, model, turbo(g, model, ctx))
    save_audio(g, a, prefix)
    spectrogram(g, a, prefix)


def video_to(g: Graph, prompt: str, prefix: str, video_file: str) -> None:
    model, t5 = loaders(g)
    lv = g.add("LoadVideo", file=video_file)
    venc = g.add("AudioXVideoEncoder", start_seconds=0.0, fps=25.0, sync="zeros", resize="stretch")
    g.link(model, "model", venc, "model")
    g.link(lv, 0, venc, "video")
    t = text(g, model, t5, prompt)
    ctx = fusion(g, model, t, venc)
    a = decode(g, model, turbo(g, model, ctx))
    save_audio(g, a, prefix)
    video_out(g, a, lv, prefix)


GRAPHS = {}


def graph(name: str, note: str):
    def deco(fn):
        GRAPHS[name] = (note, fn)
        return fn
    return deco


@graph("text_to_audio", "Text-to-audio (T2A) with the AudioX-Turbo demo model: T5 encodes the prompt, MAF fuses it "
       "with the 'absent' video and audio, the Turbo sampler generates in 4 steps, the VAE decodes. Save Audio "
       "writes the sound, the spectrogram shows it. For the official AudioX models, pick their checkpoint in the "
       "model loader and t5-base in the T5 loader (use AudioX Sampler for non-Turbo models).")
def _t2a(g):
    text_to(g, "two high bells, then a low beep", "t2a")


@graph("text_to_music", "Text-to-music (T2M): the same graph as text-to-audio with a music prompt.")
def _t2m(g):
    text_to(g, MUSIC_CAPTION, "t2m")


@graph("video_to_audio", "Video-to-audio (V2A): the video encoder samples the model's window (4 s at 25 fps for "
       "the demo, 10 s at 5 fps for the official models) by timestamp; without a prompt of your own the official "
       "task sentence is used. sync=zeros because the demo model has no Synchformer; for AudioX-MAF / Turbo "
       "connect AudioX Synchformer Loader and set sync=synchformer. The result is also put onto the video.")
def _v2a(g):
    video_to(g, TASK_AUDIO, "v2a", "audiox_example_events.mp4")


@graph("video_to_music", "Video-to-music (V2M): music for a video, with the official music task sentence.")
def _v2m(g):
    video_to(g, TASK_MUSIC, "v2m", "audiox_example_music.mp4")


@graph("text_video_to_audio", "Text+video-to-audio (TV2A): the prompt says what to hear, the video when.")
def _tv2a(g):
    video_to(g, EVENTS_CAPTION, "tv2a", "audiox_example_events.mp4")


@graph("text_video_to_music", "Text+video-to-music (TV2M): a music prompt plus the video.")
def _tv2m(g):
    video_to(g, MUSIC_CAPTION, "tv2m", "audiox_example_music.mp4")


@graph("image_to_audio", "Image-to-audio: the image is held still for the whole window (how AudioX conditions on "
       "images) and fused with a text prompt.")
def _i2a(g):
    model, t5 = loaders(g)
    li = g.add("LoadImage", image="audiox_example_image.png")
    ienc = g.add("AudioXImageEncoder", sync="zeros", resize="stretch")
    g.link(model, "model", ienc, "model")
    g.link(li, 0, ienc, "image")
    t = text(g, model, t5, IMAGE_CAPTION)
    ctx = fusion(g, model, t, ienc)
    a = decode(g, model, turbo(g, model, ctx))
    save_audio(g, a, "i2a")
    spectrogram(g, a, "i2a")


def masked_regeneration(g: Graph, audio_file: str, mask_type: str, mask_widgets: dict, prompt: str,
                        prefix: str) -> Node:
    """Inpainting / completion: the audio is VAE-encoded for the sampler and, masked, also the audio
    prompt; VAE Decode pastes the original back outside the mask.  Returns the mask node."""
    model, t5 = loaders(g)
    la = g.add("LoadAudio", audio=audio_file)
    enc = g.add("AudioXVAEEncode", sample_posterior=True, posterior_seed=0, chunked="auto")
    g.link(model, "vae", enc, "vae")
    g.link(la, 0, enc, "audio")
    mask = g.add(mask_type, **mask_widgets)
    g.link(la, 0, mask, "audio")  # the range editor draws this audio (web/audiox.js)
    ap = g.add("AudioXAudioPromptEncoder", masking="off", mask_seed=0)
    g.link(model, "model", ap, "model")
    g.link(la, 0, ap, "audio")
    g.link(mask, "mask", ap, "mask")
    t = text(g, model, t5, prompt)
    ctx = fusion(g, model, t, None, ap)
    s = turbo(g, model, ctx)
    g.link(enc, "latent", s, "latent")
    g.link(mask, "mask", s, "mask")
    a = decode(g, model, s, la)
    save_audio(g, a, prefix)
    spectrogram(g, a, prefix)
    return mask


@graph("audio_inpainting", "Audio inpainting: regenerate the seconds given in the Inpaint Mask and keep the rest. "
       "The audio is encoded by the VAE (its latents are kept outside the mask) and is also the audio prompt with "
       "the masked part blanked (the official setup); VAE Decode pastes the original back outside the mask.")
def _inpaint(g):
    mask = masked_regeneration(g, "audiox_example_events.wav", "AudioXInpaintMask",
                               {"ranges": "1.0-2.2", "ramp_seconds": 0.1}, EVENTS_CAPTION, "inpainting")
    g.override(mask, ranges="0.05-0.15")


@graph("music_completion", "Music completion: keep the first seconds of a piece and let the model continue it "
       "(the kept part is also the audio prompt, as in the official music tasks).")
def _complete(g):
    mask = masked_regeneration(g, "audiox_example_music.wav", "AudioXCompletionMask", {"keep_seconds": 2.0},
                               MUSIC_CAPTION, "completion")
    g.override(mask, keep_seconds=0.1)


@graph("long_form_music", "Long-form music: a duration longer than the model's window generates overlapping "
       "windows, each continuing the previous one (audio prompt = the previous window, its overlap kept), joined "
       "in latent space and decoded in chunks.")
def _long(g):
    model, t5 = loaders(g)
    t = text(g, model, t5, MUSIC_CAPTION)
    ctx = fusion(g, model, t)
    s = turbo(g, model, ctx, duration=12.0)
    a = decode(g, model, s)
    save_audio(g, a, "long_form")
    spectrogram(g, a, "long_form")
    g.override(s, duration=0.6)
    g.test["expect"].update(min_seconds=0.59, max_seconds=0.61)


@graph("turbo_vs_base", "Turbo vs Base, side by side: the same prompt and seed through the distilled 4-step "
       "Turbo student and through its multi-step base model with classifier-free guidance. Conditions are "
       "encoded per model (they are tied to the model that made them); T5 is shared.")
def _vs(g):
    tmodel, t5 = loaders(g, DEMO_TURBO)
    bmodel = g.add("AudioXModelLoader", ckpt_name=DEMO_BASE, dtype="auto", keep_on_gpu=False)
    prompt = "two high bells, then a low beep"
    tt = text(g, tmodel, t5, prompt, title="Text (Turbo)")
    bt = text(g, bmodel, t5, prompt, title="Text (Base)")
    ts = turbo(g, tmodel, fusion(g, tmodel, tt))
    bs = g.add("AudioXSampler", seed=42, steps=50, cfg=6.0, sampler_name="euler")
    g.link(bmodel, "model", bs, "model")
    g.link(fusion(g, bmodel, bt), "context", bs, "context")
    ta, ba = decode(g, tmodel, ts), decode(g, bmodel, bs)
    save_audio(g, ta, "turbo")
    save_audio(g, ba, "base")
    spectrogram(g, ta, "turbo")
    spectrogram(g, ba, "base")
    g.override(bs, steps=2)


@graph("video_to_audio_official_turbo", "Official AudioX-Turbo (not the demo): put audiox_turbo.ckpt + its "
       "config.json, vae.ckpt and synchformer_state_dict.pth in models/audiox, and t5-base (Hugging Face folder: "
       "config.json, model.safetensors, tokenizer.json) in models/text_encoders. The student checkpoint has no "
       "VAE, so AudioX VAE Loader feeds the model loader; the video is conditioned on CLIP and Synchformer sync "
       "features.")
def _official(g):
    vae = g.add("AudioXVAELoader", vae_name="vae.ckpt", sample_rate=44100, keep_on_gpu=True)
    model = g.add("AudioXModelLoader", ckpt_name="AudioX-Turbo/audiox_turbo.ckpt", dtype="auto", keep_on_gpu=True)
    g.link(vae, "vae", model, "vae")
    t5 = g.add("AudioXT5Loader", t5_name="t5-base", dtype="auto")
    sf = g.add("AudioXSynchformerLoader", synchformer_name="synchformer_state_dict.pth", dtype="auto")
    lv = g.add("LoadVideo", file="audiox_example_events.mp4")
    venc = g.add("AudioXVideoEncoder", start_seconds=0.0, fps=25.0, sync="synchformer", resize="stretch")
    g.link(model, "model", venc, "model")
    g.link(lv, 0, venc, "video")
    g.link(sf, "synchformer", venc, "synchformer")
    t = text(g, model, t5, TASK_AUDIO)
    ctx = fusion(g, model, t, venc)
    a = decode(g, model, turbo(g, model, ctx))
    save_audio(g, a, "official_turbo")
    video_out(g, a, lv, "official_turbo")
    g.test["models"] = {"audiox/vae.ckpt": "tiny_vae_ckpt",
                        "audiox/AudioX-Turbo/audiox_turbo.ckpt": "tiny_turbo_official_ckpt",
                        "audiox/synchformer_state_dict.pth": "tiny_synchformer_pth",
                        "text_encoders/t5-base": "tiny_t5"}


# the official gradio app's example settings (steps 100, cfg 7, dpmpp-3m-sde, sigma 0.03-500, the example's
# seed) with official noise, so the same seed gives the app's output
GRADIO = dict(steps=100, cfg=7.0, sampler_name="dpmpp-3m-sde", sigma_min=0.03, sigma_max=500.0, noise="official")


def official_base(g: Graph, ckpt: str, prompt: str, seed: int, video_file: Optional[str] = None):
    """A released v-objective model (checkpoint ``ckpt`` in models/audiox with its config.json) with
    t5-base, optionally a video through the Synchformer, the Base sampler at the gradio settings."""
    model, t5 = loaders(g, ckpt, "t5-base")
    venc = lv = None
    if video_file is not None:
        sf = g.add("AudioXSynchformerLoader", synchformer_name="synchformer_state_dict.pth", dtype="auto")
        lv = g.add("LoadVideo", file=video_file)
        venc = g.add("AudioXVideoEncoder", start_seconds=0.0, fps=25.0, sync="synchformer", resize="stretch")
        g.link(model, "model", venc, "model")
        g.link(lv, 0, venc, "video")
        g.link(sf, "synchformer", venc, "synchformer")
    ctx = fusion(g, model, text(g, model, t5, prompt), venc)
    s = g.add("AudioXSampler", seed=seed, **GRADIO)
    g.link(model, "model", s, "model")
    g.link(ctx, "context", s, "context")
    g.override(s, steps=2)
    tiny = {"AudioX": "tiny_audiox_official_ckpt", "AudioX-MAF": "tiny_maf_official_ckpt",
            "AudioX-MAF-MMDiT": "tiny_maf_mmdit_official_ckpt"}[ckpt.split("/")[0]]
    g.test["models"] = {f"audiox/{ckpt}": tiny, "text_encoders/t5-base": "tiny_t5"}
    if video_file is not None:
        g.test["models"]["audiox/synchformer_state_dict.pth"] = "tiny_synchformer_pth"
    return model, decode(g, model, s), lv


@graph("text_to_audio_official_audiox", "Official AudioX (DiT) on text-to-audio: put model.ckpt and its config.json "
       "(Hugging Face HKUSTAudio/AudioX) in models/audiox/AudioX/ and t5-base (config.json, model.safetensors, "
       "tokenizer.json) in models/text_encoders/. The sampler uses the official gradio example (\"Typing on a "
       "keyboard\", seed 1225575558, 100 steps, cfg 7, DPM++ 3M SDE, sigma 0.03-500) with official noise.")
def _official_audiox(g):
    _, a, _ = official_base(g, "AudioX/model.ckpt", "Typing on a keyboard", 1225575558)
    save_audio(g, a, "official_audiox")
    spectrogram(g, a, "official_audiox")


@graph("video_to_audio_official_maf", "Official AudioX-MAF on video-to-audio: put model.ckpt and its config.json "
       "(Hugging Face HKUSTAudio/AudioX-MAF) in models/audiox/AudioX-MAF/, synchformer_state_dict.pth in "
       "models/audiox/ and t5-base in models/text_encoders/. The official V2A task sentence and gradio settings "
       "(100 steps, cfg 7, DPM++ 3M SDE, sigma 0.03-500, official noise); the sound is put onto the video.")
def _official_maf(g):
    _, a, lv = official_base(g, "AudioX-MAF/model.ckpt", TASK_AUDIO, 3737819478, "audiox_example_events.mp4")
    save_audio(g, a, "official_maf")
    video_out(g, a, lv, "official_maf")


@graph("video_to_music_official_maf_mmdit", "Official AudioX-MAF-MMDiT on video-to-music: put model.ckpt and its "
       "config.json (Hugging Face HKUSTAudio/AudioX-MAF-MMDiT) in models/audiox/AudioX-MAF-MMDiT/ (its VAE.ckpt is "
       "not needed: model.ckpt holds the VAE), synchformer_state_dict.pth in models/audiox/ and t5-base in "
       "models/text_encoders/. The official V2M task sentence and gradio settings with official noise.")
def _official_mmdit(g):
    _, a, lv = official_base(g, "AudioX-MAF-MMDiT/model.ckpt", TASK_MUSIC, 3498087420, "audiox_example_music.mp4")
    save_audio(g, a, "official_maf_mmdit")
    video_out(g, a, lv, "official_maf_mmdit")


def dataset(g: Graph, model: Node, t5: Node) -> Node:
    ds = g.add("AudioXDataset", folder="audiox_example_dataset", captions="auto", missing_captions="error",
               manifest="", videos="use", sync="zeros")
    g.link(model, "model", ds, "model")
    g.link(t5, "t5", ds, "t5")
    g.test["inputs"] = {"audiox_example_dataset": "tiny_example_dataset"}
    return ds


def training(g: Graph, type_: str, model: Node, ds: Node, **widgets) -> Node:
    """A training node on ``model`` and the dataset ``ds``, its loss curve shown by a Preview Image."""
    n = g.add(type_, **widgets)
    g.link(model, "model", n, "model")
    g.link(ds, "dataset", n, "dataset")
    pv = g.add("PreviewImage")
    g.link(n, "loss", pv, "images")
    return n


def base_sampler(g: Graph, model: Node, ctx: Node, model_out: Any = "model", seed: int = 42) -> Node:
    s = g.add("AudioXSampler", seed=seed, steps=50, cfg=6.0, sampler_name="euler")
    g.link(model, model_out, s, "model")
    g.link(ctx, "context", s, "context")
    g.override(s, steps=2)
    return s


def text_fused(g: Graph, model: Node, t5: Node, prompt: str, title: str, model_out: Any = "model") -> Node:
    """Text Encoder + MAF Fusion for ``model`` (whose model output is ``model_out``)."""
    t = g.add("AudioXTextEncoder", title=title, prompt=prompt)
    g.link(model, model_out, t, "model")
    g.link(t5, "t5", t, "t5")
    f = g.add("AudioXMAFFusion")
    g.link(model, model_out, f, "model")
    g.link(t, "text", f, "text")
    return f


@graph("lora_training", "LoRA training in the graph: AudioX Dataset encodes a folder of clips once (captions from "
       "sidecar .txt files; the example folder audiox_example_dataset holds bell and drum clips, two with videos) "
       "and caches the encoder outputs; AudioX Train LoRA fine-tunes a LoRA on the demo base model with its own "
       "objective and the paper's input masking, shows the loss while it runs (Cancel saves a checkpoint; with "
       "resume on, queue again to continue) and saves models/loras/audiox_demo_lora.safetensors. The loss curve is "
       "previewed, and the same prompt and seed are generated with and without the LoRA. The loaded model is not "
       "changed by training.")
def _lora_training(g):
    model, t5 = loaders(g, DEMO_BASE)
    ds = dataset(g, model, t5)
    tr = training(g, "AudioXTrainLoRA", model, ds, output_name=DEMO_LORA, steps=500, learning_rate=1e-4, rank=16,
                  alpha=0.0, dropout=0.0, targets="all", include_maf=False, batch_size=2, grad_accum=1,
                  warmup_steps=20, precision="auto", gradient_checkpointing=True, ema=False, mask_video=0.6,
                  mask_text=0.2, mask_audio=0.6, cfg_dropout=0.1, seed=0, resume=True, save_every=100,
                  preview_every=100)
    lora_s = base_sampler(g, tr, text_fused(g, tr, t5, DATASET_CAPTION, "Text (with the LoRA)"))
    base_s = base_sampler(g, model, text_fused(g, model, t5, DATASET_CAPTION, "Text (base)"))
    save_audio(g, decode(g, model, lora_s), "lora_training/with_lora")
    save_audio(g, decode(g, model, base_s), "lora_training/base")
    g.override(tr, steps=3, save_every=2, warmup_steps=1)


@graph("generate_with_lora", "Generate with a LoRA: AudioX LoRA Loader applies models/loras/audiox_demo_lora.safetensors "
       "(made by the lora_training graph — run that first, or pick your own LoRA) to the demo base model at a "
       "strength; chain loaders for several LoRAs, turn on merge to bake them into the weights while sampling. A "
       "LoRA made for another model is refused. Encode the conditions with the LoRA model's output.")
def _generate_with_lora(g):
    model, t5 = loaders(g, DEMO_BASE)
    ll = g.add("AudioXLoRALoader", lora_name=f"{DEMO_LORA}.safetensors", strength=1.0, merge=False,
               allow_other_weights=False)
    g.link(model, "model", ll, "model")
    s = base_sampler(g, ll, text_fused(g, ll, t5, DATASET_CAPTION, "Text (with the LoRA)"))
    a = decode(g, model, s)
    save_audio(g, a, "with_lora")
    spectrogram(g, a, "with_lora")
    g.test["models"][f"loras/{DEMO_LORA}.safetensors"] = "tiny_turbo_base_lora"


@graph("distillation", "AudioX-Turbo distillation in the graph: the demo base model (a rectified-flow teacher) is "
       "distilled into a 4-step student with the official recipe (DMD loss with the teacher's CFG, a fake critic, "
       "a diffusion-discriminator GAN); mode lora keeps one frozen teacher with two LoRAs, full trains copies. The "
       "student is saved to models/audiox/audiox_demo_student.safetensors (load it later with AudioX Model "
       "Loader) and goes straight to AudioX Turbo Sampler; the teacher renders the same prompt with AudioX "
       "Sampler for comparison. The defaults (1000 updates, no gradient checkpointing: the demo model is small) "
       "take about five minutes on two CPU cores; the node shows steps/s and the time left from the first update "
       "on. With resume on, raising steps and queueing again continues from the last checkpoint; Cancel saves one. "
       "schedule critic-heavy (1 student : 5 critic updates, GAN weight 10) is the schedule the demo's own "
       "student was distilled with (docs/TRAINING.md).")
def _distillation(g):
    model, t5 = loaders(g, DEMO_BASE)
    ds = dataset(g, model, t5)
    dn = training(g, "AudioXDistill", model, ds, output_name=DEMO_STUDENT, steps=1000, mode="lora", lora_rank=32,
                  learning_rate=1e-4, guidance=6.0, student_steps=4, gan=True, precision="auto",
                  gradient_checkpointing=False, seed=0, resume=True, save_every=250)
    ts = g.add("AudioXTurboSampler", seed=42, steps=4)
    g.link(dn, "student", ts, "model")
    g.link(text_fused(g, dn, t5, DATASET_CAPTION, "Text (student)", model_out="student"), "context", ts, "context")
    bs = base_sampler(g, model, text_fused(g, model, t5, DATASET_CAPTION, "Text (teacher)"))
    save_audio(g, decode(g, model, ts), "distillation/student_4_steps")
    save_audio(g, decode(g, model, bs), "distillation/teacher")
    g.override(dn, steps=6, save_every=0, lora_rank=4)


# ============================================================================================
# the Templates browser: a readable title and one line per graph (web/lib/templates.js, applied
# to the cards by web/audiox.js: frontend 1.27.10 shows custom-node templates by file name) and a
# thumbnail <name>.jpg next to <name>.json (the file name the browser asks for)
# ============================================================================================
TEMPLATE_INFO = {
    "text_to_audio": ("Text to Audio", "Sound effects from a prompt with the 4-step Turbo demo model."),
    "text_to_music": ("Text to Music", "Music from a prompt: the text-to-audio graph with a music caption."),
    "video_to_audio": ("Video to Audio", "Sound for a silent video, timed to its frames, put back onto it."),
    "video_to_music": ("Video to Music", "A music track for a video with the official music task sentence."),
    "text_video_to_audio": ("Text + Video to Audio", "The prompt says what to hear, the video says when."),
    "text_video_to_music": ("Text + Video to Music", "A music prompt and a video condition one track."),
    "image_to_audio": ("Image to Audio", "A still image held for the whole clip, fused with a prompt."),
    "audio_inpainting": ("Audio Inpainting", "Regenerate the seconds you mark on the waveform, keep the rest."),
    "music_completion": ("Music Completion", "Keep the start of a piece and let the model continue it."),
    "long_form_music": ("Long-form Music", "Longer than one window: overlapping windows joined seamlessly."),
    "turbo_vs_base": ("Turbo vs Base", "The same prompt through the 4-step student and its base model."),
    "video_to_audio_official_turbo": ("Official AudioX-Turbo (V2A)",
                                      "Video to audio with the released AudioX-Turbo weights."),
    "text_to_audio_official_audiox": ("Official AudioX (T2A)",
                                      "Text to audio with the released AudioX (DiT) weights, seed for seed."),
    "video_to_audio_official_maf": ("Official AudioX-MAF (V2A)",
                                    "Video to audio with the released AudioX-MAF weights and Synchformer."),
    "video_to_music_official_maf_mmdit": ("Official AudioX-MAF-MMDiT (V2M)",
                                          "Music for a video with the released AudioX-MAF-MMDiT weights."),
    "lora_training": ("Train a LoRA", "Fine-tune on a folder of clips and watch the loss live."),
    "generate_with_lora": ("Generate with a LoRA", "Apply a trained LoRA to the base model at a strength."),
    "distillation": ("Distill a Turbo Model", "Distil the base model into a 4-step student in the graph."),
}
THUMB_SIZE = 320
_KIND_COLORS = [("Loader", (70, 110, 190)), ("Load", (70, 110, 190)), ("Encode", (60, 150, 100)),
                ("Fusion", (60, 150, 100)), ("Sampler", (210, 130, 50)), ("Train", (200, 80, 80)),
                ("Distill", (200, 80, 80)), ("Dataset", (200, 80, 80)), ("VAE", (140, 90, 180)),
                ("Mask", (220, 170, 60)), ("Save", (120, 120, 130)), ("Preview", (120, 120, 130))]


def _node_color(type_: str) -> tuple:
    for key, color in _KIND_COLORS:
        if key in type_:
            return color
    return (100, 100, 110)


def render_thumbnail(wf: dict, title: str) -> bytes:
    """A JPEG of the graph's layout (nodes as boxes coloured by kind, links as lines) with its
    title; drawn by PIL, deterministic for the same graph."""
    import io

    from PIL import Image, ImageDraw, ImageFont
    size = THUMB_SIZE
    img = Image.new("RGB", (size, size), (27, 29, 33))
    d = ImageDraw.Draw(img)
    boxes = {n["id"]: (n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in wf["nodes"] if n["type"] != "Note"}
    x0 = min(b[0] for b in boxes.values())
    y0 = min(b[1] for b in boxes.values())
    x1 = max(b[2] for b in boxes.values())
    y1 = max(b[3] for b in boxes.values())
    band = 74
    pad = 14
    k = min((size - 2 * pad) / (x1 - x0), (size - band - 2 * pad) / (y1 - y0))
    ox = (size - (x1 - x0) * k) / 2
    oy = pad + (size - band - 2 * pad - (y1 - y0) * k) / 2

    def tr(x, y):
        return ox + (x - x0) * k, oy + (y - y0) * k
    for _, src, _, dst, _, _ in wf["links"]:
        if src in boxes and dst in boxes:
            a, b = boxes[src], boxes[dst]
            d.line([tr(a[2], (a[1] + a[3]) / 2), tr(b[0], (b[1] + b[3]) / 2)], fill=(90, 96, 110), width=1)
    types = {n["id"]: n["type"] for n in wf["nodes"]}
    for nid, (a, b, c, e) in boxes.items():
        col = _node_color(types[nid])
        p0, p1 = tr(a, b), tr(c, e)
        d.rectangle([p0, p1], fill=(44, 48, 56), outline=col, width=2)
        d.rectangle([p0, (p1[0], p0[1] + max(3, 30 * k))], fill=col)
    d.rectangle([0, size - band, size, size], fill=(20, 22, 26))
    font_size = 26
    while font_size > 12 and d.textlength(title, font=ImageFont.load_default(size=font_size)) > size - 28:
        font_size -= 1
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=14)
    d.text((14, size - band + 10), title, fill=(235, 238, 245), font=font)
    d.text((14, size - band + 46), "AudioX for ComfyUI", fill=(255, 170, 60), font=small)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85, optimize=False, progressive=False)
    return buf.getvalue()


def templates_js() -> str:
    info = {name: {"title": t, "description": desc} for name, (t, desc) in TEMPLATE_INFO.items()}
    return ("// Generated by tests/build_workflows.py (do not edit): readable titles and one-line descriptions of\n"
            "// the example graphs in workflows/, shown on their Templates-browser cards by web/audiox.js.\n"
            f"export const TEMPLATE_INFO = {json.dumps(info, indent=2, ensure_ascii=False)};\n")


def build_all() -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp, comfy_fakes.FakeComfy(Path(tmp)):
        pack = H.load_pack()
        defs = H.defs_from_classes(H.all_classes(pack))
        out = {}
        for name, (note, fn) in GRAPHS.items():
            g = Graph(defs, name, note)
            fn(g)
            out[name] = g.to_json()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    graphs = build_all()
    missing = sorted(set(graphs) ^ set(TEMPLATE_INFO))
    if missing:
        print(f"TEMPLATE_INFO and the graphs differ: {missing}")
        return 1
    OUT.mkdir(exist_ok=True)
    bad = []
    files = {OUT / f"{name}.json": (json.dumps(wf, indent=1, ensure_ascii=False) + "\n").encode()
             for name, wf in graphs.items()}
    files.update({OUT / f"{name}.jpg": render_thumbnail(wf, TEMPLATE_INFO[name][0]) for name, wf in graphs.items()})
    files[WEB_TEMPLATES] = templates_js().encode()
    for p, data in files.items():
        if args.check:
            # thumbnails: JPEG bytes depend on the Pillow build, so only their presence is checked
            if not p.exists() or (p.suffix != ".jpg" and p.read_bytes() != data):
                bad.append(p.name)
        else:
            p.write_bytes(data)
            print(f"wrote {p}")
    if bad:
        print("out of date: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
