"""Fusion nodes: combine the per-modality conditions into the sampler's context.

* AudioX MAF Fusion — video + text + audio conditions → context.  For MAF models it runs the
  learned Multimodal Adaptive Fusion block and reports its per-modality gates; per-modality
  scales multiply those gates (0 switches a modality off inside MAF).  For AudioX (no MAF) the
  context is the concatenation and the scales multiply the tokens.  A condition that is not
  connected takes the official "absent" value (learned empty video feature, encoded silence or
  learned empty audio feature); text, however, is T5 of the empty string and needs an AudioX Text
  Encoder (with an empty prompt) when the text input is left open.
* AudioX Modality Drop — replace chosen modalities of a context by their "absent" value (the
  paper's multimodal input masking), e.g. to hear what the video alone contributes.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..audiox_core import conditions
from .common import (CATEGORY, COND, CONTEXT, MODEL, T5, Context, ModelBundle, T5Bundle, about_input, expect,
                     node_error, node_function)

log = logging.getLogger(__name__)

SCALE = {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.05}


def gate_report(m: ModelBundle, scale: tuple, conds: conditions.Conditions) -> tuple[str, object]:
    gates = m.model.maf_gates()
    lines = []
    if gates is not None:
        g = gates.float().mean(0).tolist()
        lines.append("MAF gates (learned, mean over batch): video {:.3f}, text {:.3f}, audio {:.3f}".format(*g))
        if tuple(scale) != (1.0, 1.0, 1.0):
            lines.append("scaled by video {:g}, text {:g}, audio {:g}".format(*scale)
                         + " (0 = left out of MAF's expert attention)")
    else:
        lines.append(f"{m.variant} has no MAF block: conditions are concatenated"
                     + ("; tokens scaled by video {:g}, text {:g}, audio {:g}".format(*scale)
                        if tuple(scale) != (1.0, 1.0, 1.0) else ""))
    lines.append(conds.summary())
    return "\n".join(lines), (gates.float().cpu() if gates is not None else None)


def gates_ui(ctx: Context) -> list:
    """The frontend's gate bars (web/audiox.js): the learned gates (mean over the batch) and the
    scales, one entry; empty for models without MAF."""
    if ctx.gates is None:
        return []
    g = [float(v) for v in ctx.gates.float().reshape(-1, 3).mean(0).tolist()]
    scale = [float(v) for v in (ctx.modality_scale or (1.0, 1.0, 1.0))]
    return [{"modalities": ["video", "text", "audio"], "gates": g, "scale": scale}]


def fuse_context(node: str, m: ModelBundle, conds: conditions.Conditions, scale: tuple, seed: int,
                 dropped: tuple = ()) -> Context:
    """Complete ``conds`` with the absent conventions, fuse, and package a :class:`Context`.

    ``seed``: the randomness of absent conditions (v2 audio: a sample of the VAE posterior of
    silence), so a graph gives the same context every run.
    """
    batch = max([c.batch for c in (conds.video, conds.text, conds.audio) if c is not None] or [1])
    if all(s == 0 for s in scale):
        raise node_error(node, "text_scale", "all three scales are 0: keep at least one modality above 0")
    gen = torch.Generator().manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    with m.on_device("conditioner", "maf"):
        with about_input(node, "model"):
            full = conditions.complete(m.model, conds, batch, generator=gen)
            tokens = conditions.fuse(m.model, full, batch=batch, modality_scale=scale)
    report, gates = gate_report(m, scale, full)
    return Context(tokens.detach().cpu(), full, conditions.model_fingerprint(m.model), tuple(scale), gates, report,
                   tuple(dropped), int(seed))


class AudioXMAFFusion:
    DISPLAY_NAME = "AudioX MAF Fusion"
    DESCRIPTION = ("Combines the video, text and audio conditions into the sampler's context. MAF models run the "
                   "learned fusion and report its modality gates; the scales strengthen, weaken or switch off a "
                   "modality (0 = off). Unconnected video/audio take the official 'absent' value; text needs an "
                   "AudioX Text Encoder (an empty prompt is fine).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (CONTEXT, "STRING")
    RETURN_NAMES = ("context", "gates")
    OUTPUT_TOOLTIPS = ("Fused context for AudioX Sampler / AudioX Turbo Sampler.",
                       "The learned MAF gates per modality and what each condition holds.")
    FUNCTION = "fuse"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model the conditions were encoded for."}),
                "video_scale": ("FLOAT", dict(SCALE, tooltip="Multiplies MAF's learned video gate (0 = off, "
                                                             "1 = official). Without MAF: scales the tokens.")),
                "text_scale": ("FLOAT", dict(SCALE, tooltip="Multiplies MAF's learned text gate (0 = off, "
                                                            "1 = official). Without MAF: scales the tokens.")),
                "audio_scale": ("FLOAT", dict(SCALE, tooltip="Multiplies MAF's learned audio gate (0 = off, "
                                                             "1 = official). Without MAF: scales the tokens.")),
                "cond_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                      "tooltip": "Seed of the random parts of absent conditions (the 'no audio' "
                                                 "value of MAF-MMDiT/Turbo is a VAE posterior sample of "
                                                 "silence), so the same graph gives the same context."}),
            },
            "optional": {
                "text": (COND, {"tooltip": "Text condition (AudioX Text Encoder)."}),
                "video": (COND, {"tooltip": "Video condition (AudioX Video Encoder or AudioX Image Encoder). "
                                            "Open: the learned 'no video' feature."}),
                "audio": (COND, {"tooltip": "Audio condition (AudioX Audio Prompt Encoder). Open: the official "
                                            "'no audio' value."}),
            },
        }

    @node_function
    def fuse(self, model, video_scale=1.0, text_scale=1.0, audio_scale=1.0, cond_seed=0, text=None, video=None,
             audio=None):
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL")
        conds = conditions.Conditions()
        fp = conditions.model_fingerprint(m.model)
        for name, cond in (("text", text), ("video", video), ("audio", audio)):
            if cond is None:
                continue
            expect(cond, conditions.Condition, node, name, "an AUDIOX_COND")
            if cond.modality != name:
                raise node_error(node, name, f"got a {cond.modality} condition; connect it to '{cond.modality}'")
            if cond.source and cond.source != fp:
                raise node_error(node, name, "was encoded for another model; encode it with the model connected "
                                 "here")
            setattr(conds, name, cond)
        if conds.text is None and m.model.text_spec is not None and m.model.text_encoder is None:
            raise node_error(node, "text", f"is not connected, but {m.variant} conditions on text and 'no text' is "
                             "T5 of the empty string: connect an AudioX Text Encoder (the prompt may be empty)")
        batches = {c.batch for c in (conds.text, conds.video, conds.audio) if c is not None} - {1}
        if len(batches) > 1:
            raise node_error(node, "audio", f"the conditions have different batch sizes {sorted(batches)}")
        ctx = fuse_context(node, m, conds, (float(video_scale), float(text_scale), float(audio_scale)), cond_seed)
        return {"ui": {"text": [ctx.report], "audiox_gates": gates_ui(ctx)}, "result": (ctx, ctx.report)}


class AudioXModalityDrop:
    DISPLAY_NAME = "AudioX Modality Drop"
    DESCRIPTION = ("Replaces chosen modalities of a context by their official 'absent' value (learned empty "
                   "video/audio features, T5 of the empty string) and fuses again — the multimodal input masking "
                   "of the AudioX paper. Useful to hear what each input contributes.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES = (CONTEXT, "STRING")
    RETURN_NAMES = ("context", "gates")
    OUTPUT_TOOLTIPS = ("The context without the dropped modalities.", "Gate report after dropping.")
    FUNCTION = "drop"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model the context was made for."}),
                "context": (CONTEXT, {"tooltip": "Context from AudioX MAF Fusion."}),
                "drop_video": ("BOOLEAN", {"default": False, "tooltip": "Use 'no video' instead of the video."}),
                "drop_text": ("BOOLEAN", {"default": False, "tooltip": "Use the empty prompt instead of the text "
                                                                      "(needs the T5 input)."}),
                "drop_audio": ("BOOLEAN", {"default": False, "tooltip": "Use 'no audio' instead of the audio "
                                                                       "prompt."}),
            },
            "optional": {"t5": (T5, {"tooltip": "T5 (AudioX T5 Loader), only needed to drop the text."})},
        }

    @node_function
    def drop(self, model, context, drop_video=False, drop_text=False, drop_audio=False, t5=None):
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL")
        expect(context, Context, node, "context", "an AUDIOX_CONTEXT from AudioX MAF Fusion")
        if context.source != conditions.model_fingerprint(m.model):
            raise node_error(node, "context", "was made for another model")
        conds = conditions.Conditions(video=context.conds.video, text=context.conds.text, audio=context.conds.audio)
        batch = max(c.batch for c in (conds.video, conds.text, conds.audio) if c is not None)
        dropped = []
        if drop_video:
            conds.video = None
            dropped.append("video")
        if drop_audio:
            conds.audio = None
            dropped.append("audio")
        if drop_text:
            if t5 is None:
                raise node_error(node, "t5", "is not connected: dropping the text needs T5 (the 'no text' "
                                 "condition is T5 of the empty string)")
            expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5")
            with t5.on_device(), about_input(node, "t5"):
                conds.text = conditions.encode_text(m.model, "", batch=batch, encoder=t5.encoder)
            dropped.append("text")
        ctx = fuse_context(node, m, conds, context.modality_scale or (1.0, 1.0, 1.0), context.seed, tuple(dropped))
        ctx = replace(ctx, report=(f"dropped: {', '.join(dropped)}\n" if dropped else "") + ctx.report)
        return {"ui": {"text": [ctx.report], "audiox_gates": gates_ui(ctx)}, "result": (ctx, ctx.report)}


NODE_CLASS_MAPPINGS = {"AudioXMAFFusion": AudioXMAFFusion, "AudioXModalityDrop": AudioXModalityDrop}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
