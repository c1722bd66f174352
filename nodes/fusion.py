"""Fusion nodes: AudioX MAF Fusion (the per-modality conditions → the sampler's context) and AudioX
Modality Drop (fuse again with chosen modalities "absent").  Checks, fusion and the gate report are
:mod:`audiox_core.conditions`'; MAF's learned gates also go to the frontend's gate bars (web/audiox.js).
"""
from __future__ import annotations

import contextlib

from ..audiox_core import conditions
from .common import (CATEGORY, COND, CONTEXT, MAX_SEED, MODEL, T5, Context, ModelBundle, T5Bundle, about_input,
                     bool_input, expect, float_input, int_input, node_error, node_function, outputs, socket_input)

SCALE_TOOLTIP = "Multiplies MAF's learned {} gate (0 = off, 1 = official). Without MAF: scales the tokens."


def fuse_context(node: str, m: ModelBundle, conds: conditions.Conditions, scale: tuple, seed: int,
                 dropped: tuple = ()) -> dict:
    """The node output: ``conds`` completed with the absent conventions (``seed``: their randomness)
    and fused into a :class:`Context`, with its report and the gate bars."""
    with m.on_device("conditioner", "maf"), about_input(node, "model"):
        full, tokens, report, gates = conditions.fuse_with_report(m.model, conds, scale, seed)
    report = (f"dropped: {', '.join(dropped)}\n" if dropped else "") + report
    ctx = Context(tokens, full, conditions.model_fingerprint(m.model), tuple(scale), gates, report, tuple(dropped),
                  int(seed))
    bars = conditions.gate_bars(gates, ctx.modality_scale)
    return {"ui": {"text": [ctx.report], "audiox_gates": bars}, "result": (ctx, ctx.report)}


class AudioXMAFFusion:
    DISPLAY_NAME = "AudioX MAF Fusion"
    DESCRIPTION = ("Combines the video, text and audio conditions into the sampler's context. MAF models run the "
                   "learned fusion and report its modality gates; the scales strengthen, weaken or switch off a "
                   "modality (0 = off). Unconnected video/audio take the official 'absent' value; text needs an "
                   "AudioX Text Encoder (an empty prompt is fine).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (CONTEXT, "context", "Fused context for AudioX Sampler / AudioX Turbo Sampler."),
        ("STRING", "gates", "The learned MAF gates per modality and what each condition holds."))
    FUNCTION = "fuse"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, "The model the conditions were encoded for."),
            "video_scale": float_input(1.0, 0.0, 4.0, 0.05, SCALE_TOOLTIP.format("video")),
            "text_scale": float_input(1.0, 0.0, 4.0, 0.05, SCALE_TOOLTIP.format("text")),
            "audio_scale": float_input(1.0, 0.0, 4.0, 0.05, SCALE_TOOLTIP.format("audio")),
            "cond_seed": int_input(0, 0, MAX_SEED, "Seed of the random parts of absent conditions (the 'no audio' "
                                   "value of MAF-MMDiT/Turbo is a VAE posterior sample of silence), so the same graph "
                                   "gives the same context."),
        }, "optional": {
            "text": socket_input(COND, "Text condition (AudioX Text Encoder)."),
            "video": socket_input(COND, "Video condition (AudioX Video Encoder or AudioX Image Encoder). Open: the "
                                  "learned 'no video' feature."),
            "audio": socket_input(COND, "Audio condition (AudioX Audio Prompt Encoder). Open: official 'no audio'."),
        }}

    @node_function
    def fuse(self, model, video_scale=1.0, text_scale=1.0, audio_scale=1.0, cond_seed=0, text=None, video=None,
             audio=None):
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL")
        given = {name: expect(cond, conditions.Condition, node, name, "an AUDIOX_COND")
                 for name, cond in (("text", text), ("video", video), ("audio", audio)) if cond is not None}
        conds = conditions.checked_conditions(m.model, **given)
        scale = conditions.checked_modality_scale((video_scale, text_scale, audio_scale))
        return fuse_context(node, m, conds, scale, cond_seed)


class AudioXModalityDrop:
    DISPLAY_NAME = "AudioX Modality Drop"
    DESCRIPTION = ("Replaces chosen modalities of a context by their official 'absent' value (learned empty "
                   "video/audio features, T5 of the empty string) and fuses again — the multimodal input masking "
                   "of the AudioX paper. Useful to hear what each input contributes.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (CONTEXT, "context", "The context without the dropped modalities."),
        ("STRING", "gates", "Gate report after dropping."))
    FUNCTION = "drop"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, "The model the context was made for."),
            "context": socket_input(CONTEXT, "Context from AudioX MAF Fusion."),
            "drop_video": bool_input(False, "Use 'no video' instead of the video."),
            "drop_text": bool_input(False, "Use the empty prompt instead of the text (needs the T5 input)."),
            "drop_audio": bool_input(False, "Use 'no audio' instead of the audio prompt."),
        }, "optional": {"t5": socket_input(T5, "T5 (AudioX T5 Loader), only needed to drop the text.")}}

    @node_function
    def drop(self, model, context, drop_video=False, drop_text=False, drop_audio=False, t5=None):
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL")
        expect(context, Context, node, "context", "an AUDIOX_CONTEXT from AudioX MAF Fusion")
        if context.source != conditions.model_fingerprint(m.model):
            raise node_error(node, "context", "was made for another model")
        t5 = expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5") if t5 is not None and drop_text else None
        with t5.on_device() if t5 is not None else contextlib.nullcontext():
            conds, dropped = conditions.drop_modalities(m.model, context.conds, video=drop_video, text=drop_text,
                                                        audio=drop_audio, text_encoder=t5.encoder if t5 else None)
        return fuse_context(node, m, conds, context.modality_scale or (1.0, 1.0, 1.0), context.seed, dropped)


NODE_CLASS_MAPPINGS = {"AudioXMAFFusion": AudioXMAFFusion, "AudioXModalityDrop": AudioXModalityDrop}
