"""Sampler nodes: AudioX Sampler (Base: multi-step with CFG), AudioX Turbo Sampler (1–8 steps) and
AudioX Compile Backbone.  The samplers map their inputs to one :class:`audiox_core.task.GenerationRequest`
(inpainting/completion, variation, long-form: see the node descriptions); the core plans and runs it.

The output LATENT (``{"samples": [B, C, L], "type": "audio"}``) carries an extra ``"audiox"`` entry
(sample rate, seconds, keep-mask) that AudioX VAE Decode uses to trim to the requested duration and
to paste the original audio back outside the regenerated ranges.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from ..audiox_core import generate as generation
from ..audiox_core import task
from ..audiox_core.loaded_model import synchformer_attached
from . import comfy_compat
from .common import (CATEGORY, COND, CONTEXT, HIDDEN, MASK, MAX_SECONDS, MAX_SEED, MODEL, Context, ModelBundle,
                     TimeMask, about_input, bool_input, choice_input, expect, float_input, int_input, node_error,
                     node_function, outputs, socket_input)

log = logging.getLogger(__name__)

SAMPLERS = ["auto", *generation.BASE_SAMPLERS_V,
            *[name for name in generation.BASE_SAMPLERS_RF if name not in generation.BASE_SAMPLERS_V]]

DURATION_TOOLTIP = ("Seconds of audio. 0 = the model's window (10 s for the released models, 4 s for the demo), or "
                    "the input latent's length. Longer than the window = long-form: overlapping windows, each "
                    "continuing the previous one (text, and video: each window encodes its own part of the video).")
NOISE_TOOLTIP = ("cpu: the same seed gives the same audio on any device. official: the official app's random "
                 "streams (initial noise first on the model's device, then the conditioners' draws — an absent "
                 "audio prompt is re-drawn from that stream —, Brownian-tree seed from the CPU generator, per-step "
                 "noise on the device), so seed, inputs and sampler give the official app's output. Generation "
                 "from noise only (no mask, variation, negative or long-form).")
LATENT_TOOLTIP = "Latents of existing audio (AudioX VAE Encode): kept where the mask says so"
SAMPLER_TOOLTIP = ("auto = the model's official sampler (DPM++ 3M SDE for v-objective models, Euler for rectified "
                   "flow). dpmpp-*, k-* (the official names and defaults) and euler apply to v models; euler/heun "
                   "to rectified flow. k-dpm-fast and k-dpm-adaptive stop at sigma_min, as the official.")


def _model_seed_context() -> dict:
    return {"model": socket_input(MODEL, "The AudioX model (AudioX Model Loader)."),
            "context": socket_input(CONTEXT, "Fused conditions (AudioX MAF Fusion) made for this model."),
            "seed": int_input(0, 0, MAX_SEED, "Noise seed; the same seed gives the same audio on any device.",
                              control_after_generate=True)}


def _batch_and_duration() -> dict:
    return {"batch_size": int_input(1, 1, 16, "How many different clips to generate at once (one seed, different "
                                    "noise).", step=1),
            "duration": float_input(0.0, 0.0, MAX_SECONDS, 0.1, DURATION_TOOLTIP)}


def _latent_and_mask(latent_use: str) -> dict:
    return {"latent": socket_input("LATENT", f"{LATENT_TOOLTIP}{latent_use}"),
            "mask": socket_input(MASK, "AudioX Inpaint Mask or AudioX Completion Mask (needs 'latent').")}


#: request fields (audiox_core.task.GenerationRequest) -> the sampler input that feeds them
INPUT_OF_FIELD = {"context": "context", "batch": "batch_size", "init_latents": "latent", "inpaint": "mask",
                  "keep_seconds": "mask", "duration": "duration", "negative_prompt": "negative",
                  "settings.noise": "noise", "settings.sampler": "sampler_name", "settings.steps": "steps",
                  "settings.cfg_scale": "cfg", "settings.mode": "model"}


def _request(node: str, mode: str, bundle: ModelBundle, context: Context, inputs: dict) -> task.GenerationRequest:
    """The sampler's inputs as one generation request (the core plans and checks it)."""
    base_only = {} if mode == "turbo" else dict(
        cfg_scale=float(inputs["cfg"]), sampler=inputs["sampler"], cfg_rescale=float(inputs["cfg_rescale"]),
        sigma_min=float(inputs["sigma_min"]), sigma_max=float(inputs["sigma_max"]))
    settings = generation.SamplerSettings.for_model(bundle.model, mode, seed=int(inputs["seed"]),
                                                    steps=int(inputs["steps"]), noise=inputs["noise"], **base_only)
    latent, mask = inputs["latent"], inputs["mask"]
    if latent is not None and (not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples"))):
        raise node_error(node, "latent", f"needs a LATENT, got {type(latent).__name__}")
    expect(mask, TimeMask, node, "mask", "an AUDIOX_MASK", optional=True)
    return task.GenerationRequest(
        context=task.FusedContext(context.tokens, context.conds, context.modality_scale, context.source),
        negative_prompt=inputs["negative"], init_latents=None if latent is None else latent["samples"],
        init_latents_seconds=None if latent is None else (latent.get("audiox") or {}).get("seconds"),
        inpaint=mask.ranges if mask is not None and mask.kind == "inpaint" else None,
        inpaint_ramp_seconds=mask.ramp_seconds if mask is not None else 0.1,
        keep_seconds=mask.keep_seconds if mask is not None and mask.kind == "complete" else None,
        strength=float(inputs["denoise"]), duration=float(inputs["duration"]), settings=settings,
        batch=int(inputs["batch"]))


def run(node: str, mode: str, model, context, inputs: dict, unique_id=None) -> dict:
    """Map a sampler node's inputs to a request, plan it (every check), run it once."""
    bundle: ModelBundle = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
    fused: Context = expect(context, Context, node, "context", "an AUDIOX_CONTEXT from AudioX MAF Fusion")
    try:
        notes = task.sampler_model_notes(bundle.model, mode)
        for note in notes:
            log.warning("%s: %s", node, note)
        plan = _request(node, mode, bundle, fused, inputs).plan(bundle.model)
    except task.RequestError as e:
        raise node_error(node, INPUT_OF_FIELD.get(e.field, "context"), str(e)) from e
    synchformer = plan.synchformer  # long-form video from a fused context: the Synchformer it was encoded with
    with bundle.on_device(*plan.parts), synchformer.on_device() if synchformer else contextlib.nullcontext(), \
            synchformer_attached(bundle.model, getattr(synchformer, "module", None)), \
            about_input(node, "duration" if plan.long_form else "context"):
        result = plan.run(comfy_compat.make_progress_callback(None, unique_id))
    mask = inputs["mask"]
    meta = {"sample_rate": int(result.sample_rate), "seconds": result.seconds, "keep": result.keep,
            "mode": plan.settings.mode, "mask_kind": getattr(mask, "kind", None)}
    report = task.sampling_report(plan, result, bundle.name, notes, mask.describe() if mask is not None else None)
    return {"ui": {"text": [report]}, "result": ({"samples": result.latents, "type": "audio", "audiox": meta}, report)}


class _SamplerNode:
    """What the Base and the Turbo sampler node have in common: their outputs."""
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("LATENT", "latent", "Audio latents; decode with AudioX VAE Decode."),
        ("STRING", "report", "What was sampled."))
    FUNCTION = "sample"


class AudioXSampler(_SamplerNode):
    DISPLAY_NAME = "AudioX Sampler"
    DESCRIPTION = ("The Base sampler: multi-step sampling with classifier-free guidance for AudioX, AudioX-MAF, "
                   "AudioX-MAF-MMDiT and Turbo base models (v-objective: DPM++ 3M SDE by default, 100 steps, "
                   "cfg 7 as the official; rectified flow: Euler). Handles inpainting/completion (latent + mask), "
                   "variations (latent + denoise) and long-form generation (duration > window).")

    @classmethod
    def INPUT_TYPES(cls):
        required = {**_model_seed_context(),
                    "steps": int_input(100, 1, 1000, "Sampling steps (official: 100 in the gradio app, 250 in the "
                                       "README).", step=1),
                    "cfg": float_input(7.0, 0.0, 50.0, 0.1, "Classifier-free guidance scale (official: 7 for "
                                       "AudioX/MAF, 6 for the Turbo base model; 1 = no guidance).", round=0.01),
                    "sampler_name": choice_input(SAMPLERS, "auto", SAMPLER_TOOLTIP),
                    **_batch_and_duration()}
        optional = {
            "negative": socket_input(COND, "Negative prompt (AudioX Text Encoder): the CFG 'unconditional' branch "
                                     "becomes this prompt with the same video/audio, instead of the official "
                                     "all-zero context."),
            **_latent_and_mask(", or the start of a variation with denoise < 1."),
            "denoise": float_input(1.0, 0.01, 1.0, 0.01, "With a latent and no mask: how much to change it (1 = "
                                   "ignore it, lower = closer to the input audio)."),
            "cfg_rescale": float_input(0.0, 0.0, 1.0, 0.05, "CFG rescale φ (official option, 0 = off): pulls the "
                                       "guided output's spread back towards the conditional one."),
            "sigma_min": float_input(0.3, 0.001, 10.0, 0.01, "Lowest noise level of the v-objective schedule "
                                     "(official: 0.3 in the README script, 0.03 in the gradio app). k-dpm-fast/"
                                     "adaptive stop here. Rectified flow and Turbo ignore it.", round=0.0001),
            "sigma_max": float_input(500.0, 0.01, 1000.0, 0.1, "Highest noise level of the v-objective schedule "
                                     "(official: 500). Rectified flow and Turbo ignore it."),
            "noise": choice_input(generation.NOISE_MODES, "cpu", NOISE_TOOLTIP)}
        return {"required": required, "optional": optional, "hidden": dict(HIDDEN)}

    @node_function
    def sample(self, model, context, seed=0, steps=100, cfg=7.0, sampler_name="auto", batch_size=1, duration=0.0,
               negative=None, latent=None, mask=None, denoise=1.0, cfg_rescale=0.0, sigma_min=0.3, sigma_max=500.0,
               noise="cpu", unique_id=None):
        inputs = dict(seed=seed, steps=steps, cfg=cfg, sampler=sampler_name, batch=batch_size, duration=duration,
                      negative=negative, latent=latent, mask=mask, denoise=denoise, cfg_rescale=cfg_rescale,
                      sigma_min=sigma_min, sigma_max=sigma_max, noise=noise)
        return run(self.DISPLAY_NAME, "base", model, context, inputs, unique_id)


class AudioXTurboSampler(_SamplerNode):
    DISPLAY_NAME = "AudioX Turbo Sampler"
    DESCRIPTION = ("The AudioX-Turbo sampler: the distilled student in 1–8 steps (4 as trained), no CFG. Handles "
                   "inpainting/completion (latent + mask) and long-form generation (duration > window).")

    @classmethod
    def INPUT_TYPES(cls):
        required = {**_model_seed_context(),
                    "steps": int_input(4, 1, 8, "Student steps (the official Turbo uses 4).", step=1),
                    **_batch_and_duration()}
        optional = {**_latent_and_mask(" (inpainting / completion)."),
                    "noise": choice_input(generation.NOISE_MODES, "cpu", NOISE_TOOLTIP)}
        return {"required": required, "optional": optional, "hidden": dict(HIDDEN)}

    @node_function
    def sample(self, model, context, seed=0, steps=4, batch_size=1, duration=0.0, latent=None, mask=None,
               noise="cpu", unique_id=None):
        inputs = dict(seed=seed, steps=steps, batch=batch_size, duration=duration, negative=None, latent=latent,
                      mask=mask, denoise=1.0, noise=noise)
        return run(self.DISPLAY_NAME, "turbo", model, context, inputs, unique_id)


class AudioXCompileBackbone:
    DISPLAY_NAME = "AudioX Compile Backbone"
    DESCRIPTION = ("torch.compile for the diffusion backbone of the model that passes through: the samplers run "
                   "the compiled backbone (faster steps on a GPU). The first run at a new batch size / length "
                   "compiles (can take a minute); later runs reuse the compiled graphs. The loaded model itself "
                   "stays uncompiled for other branches.")
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL, "model", "The same model; samplers fed from here run its backbone compiled."))
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, "The AudioX model (AudioX Model Loader or AudioX LoRA Loader)."),
            "compile": bool_input(True, "Off: pass the model through uncompiled."),
            "mode": choice_input(["default", "reduce-overhead", "max-autotune"], "default", "torch.compile mode: "
                                 "reduce-overhead adds CUDA graphs, max-autotune searches faster kernels (long "
                                 "first run)."),
            "whole_turbo_loop": bool_input(False, "Turbo students: compile the Turbo sampler's whole loop as one graph "
                                           "(with reduce-overhead one CUDA graph; other samplers run eager)."),
        }}

    @node_function
    def apply(self, model, compile=True, mode="default", whole_turbo_loop=False):
        m: ModelBundle = expect(model, ModelBundle, self.DISPLAY_NAME, "model", "an AUDIOX_MODEL")
        if not compile:
            return (m.with_compile(None, m.name),)
        if not hasattr(torch, "compile"):
            raise node_error(self.DISPLAY_NAME, "compile", "this PyTorch has no torch.compile (needs ≥ 2.0)")
        return (m.with_compile(str(mode), f"{m.name} (compiled)", bool(whole_turbo_loop)),)


NODE_CLASS_MAPPINGS = {"AudioXSampler": AudioXSampler, "AudioXTurboSampler": AudioXTurboSampler,
                       "AudioXCompileBackbone": AudioXCompileBackbone}
