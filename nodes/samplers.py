"""Sampler nodes: AudioX Sampler (Base: multi-step with CFG) and AudioX Turbo Sampler (1–8 steps).

Both turn a fused context into audio latents (core ``LATENT`` ``{"samples": [B, C, L], "type":
"audio"}``), optionally

* keeping parts of given latents (``latent`` + ``mask``: inpainting or completion),
* starting from given latents (Base only: ``latent`` + ``denoise`` < 1, a variation), or
* generating longer than the model's window (``duration`` > window: overlapping windows, each
  conditioned on the previous one; text, and video re-encoded window by window).

The LATENT carries an extra ``"audiox"`` entry (sample rate, seconds, keep-mask) that AudioX VAE
Decode uses to trim to the requested duration and to paste the original audio back outside the
regenerated ranges.  Progress and Cancel work through ComfyUI's progress bar.
"""
from __future__ import annotations

import contextlib

import logging
import math
from typing import Optional

import torch

from ..audiox_core import conditions as C
from ..audiox_core import generate as G
from . import comfy_compat as cc
from .common import (CATEGORY, COND, CONTEXT, MASK, MAX_SECONDS, MODEL, Context, ModelBundle, TimeMask,
                     about_input, expect, node_error, node_function)

log = logging.getLogger(__name__)

HIDDEN = {"unique_id": "UNIQUE_ID"}
SAMPLERS = ["auto", *G.BASE_SAMPLERS_V, *[s for s in G.BASE_SAMPLERS_RF if s not in G.BASE_SAMPLERS_V]]


def _common_required() -> dict:
    return {
        "model": (MODEL, {"tooltip": "The AudioX model (AudioX Model Loader)."}),
        "context": (CONTEXT, {"tooltip": "Fused conditions (AudioX MAF Fusion) made for this model."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                         "tooltip": "Noise seed; the same seed gives the same audio on any device."}),
    }


def _tail_required() -> dict:
    return {
        "batch_size": ("INT", {"default": 1, "min": 1, "max": 16, "step": 1,
                               "tooltip": "How many different clips to generate at once (one seed, different noise)."}),
        "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_SECONDS, "step": 0.1,
                               "tooltip": "Seconds of audio. 0 = the model's window (10 s for the released models, "
                                          "4 s for the demo), or the input latent's length. Longer than the window "
                                          "= long-form: overlapping windows, each continuing the previous one "
                                          "(text, and video: each window encodes its own part of the video)."}),
    }


NOISE_TOOLTIP = ("cpu: the same seed gives the same audio on any device. official: the official app's random "
                 "streams (initial noise first on the model's device, then the conditioners' draws — an absent "
                 "audio prompt is re-drawn from that stream —, Brownian-tree seed from the CPU generator, per-step "
                 "noise on the device), so seed, inputs and sampler give the official app's output. Generation "
                 "from noise only (no mask, variation, negative or long-form).")


def _optional_inputs(with_variation: bool) -> dict:
    d = {
        "latent": ("LATENT", {"tooltip": "Latents of existing audio (AudioX VAE Encode): kept where the mask says "
                                         + ("so, or the start of a variation with denoise < 1." if with_variation
                                            else "so (inpainting / completion).")}),
        "mask": (MASK, {"tooltip": "AudioX Inpaint Mask or AudioX Completion Mask (needs 'latent')."}),
    }
    return d


def _latent_info(latent, node: str) -> tuple[torch.Tensor, dict]:
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise node_error(node, "latent", f"needs a LATENT, got {type(latent).__name__}")
    z = latent["samples"]
    if z.dim() != 3:
        raise node_error(node, "latent", f"has samples of shape {tuple(z.shape)}; audio latents are [B, C, L]")
    return z.float(), dict(latent.get("audiox") or {})


def run(node: str, mode: str, model, context, seed: int, steps: int, batch: int, duration: float, *,
        cfg: float = 1.0, sampler: str = "auto", cfg_rescale: float = 0.0, negative=None, latent=None,
        mask=None, denoise: float = 1.0, sigma_min: float = 0.3, sigma_max: float = 500.0, noise: str = "cpu",
        unique_id=None) -> dict:
    m: ModelBundle = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
    ctx: Context = expect(context, Context, node, "context", "an AUDIOX_CONTEXT from AudioX MAF Fusion")
    mdl = m.model
    if ctx.source != C.model_fingerprint(mdl):
        raise node_error(node, "context", "was made for another model: encode and fuse the conditions with the "
                         "model connected to this sampler")
    notes = []
    if mode == "turbo":
        if mdl.objective != "rectified_flow":
            raise node_error(node, "model", f"is {m.variant} (v-objective): the Turbo sampler needs an AudioX-Turbo "
                             "model; use AudioX Sampler for this one")
        if m.role == "base":
            notes.append("warning: this is a Turbo base/teacher model, not the distilled student; a few Turbo steps "
                         "give rough audio — AudioX Sampler with ~50–100 steps suits it")
    elif m.is_turbo_student:
        notes.append("warning: this is the distilled Turbo student; it was trained for the 4-step AudioX Turbo "
                     "Sampler (CFG and many steps are not what it learned)")
    for n in notes:
        log.warning("%s: %s", node, n)
    if ctx.tokens.shape[0] not in (1, batch):
        raise node_error(node, "batch_size", f"is {batch} but the context has batch {ctx.tokens.shape[0]}")
    cfgm = mdl.config
    ratio = cfgm.vae.downsampling_ratio
    fps = cfgm.sample_rate / ratio
    window = m.window_seconds
    z = info = None
    if latent is not None:
        z, info = _latent_info(latent, node)
        if z.shape[1] != cfgm.io_channels:
            raise node_error(node, "latent", f"has {z.shape[1]} channels but {m.variant} uses {cfgm.io_channels}: "
                             "encode the audio with this model's VAE")
        if z.shape[0] not in (1, batch):
            raise node_error(node, "latent", f"has batch {z.shape[0]}, the sampler makes {batch}")
    if mask is not None:
        expect(mask, TimeMask, node, "mask", "an AUDIOX_MASK")
        if z is None:
            raise node_error(node, "latent", "is not connected, but a mask is: inpainting/completion keeps parts of "
                             "existing audio — connect its latents (AudioX VAE Encode)")
    duration = float(duration)
    if duration <= 0:  # the input audio's length for inpainting/variations, else the whole window
        keep_len = z is not None and not (mask is not None and mask.kind == "complete")
        duration = min(window, float(info.get("seconds") or z.shape[-1] / fps)) if keep_len else window
    if duration > MAX_SECONDS:
        raise node_error(node, "duration", f"must be at most {MAX_SECONDS:g} s, got {duration:g}")
    try:
        settings = G.SamplerSettings.for_model(mdl, mode, seed=int(seed), steps=int(steps), noise=noise,
                                               **({} if mode == "turbo" else dict(
                                                   cfg_scale=float(cfg), sampler=sampler,
                                                   cfg_rescale=float(cfg_rescale), sigma_min=float(sigma_min),
                                                   sigma_max=float(sigma_max))))
        resolved = G.check_settings(mdl, settings)
        if mode != "turbo":
            settings.sampler = resolved
        G.check_official(settings, inpainting_or_completion=mask is not None,
                         variation_start=z is not None and mask is None and float(denoise) < 1.0,
                         negative_prompt=negative is not None, audio_longer_than_the_window=duration > window + 1e-6)
    except Exception as e:  # noqa: BLE001 - InputError from core; name the input
        msg = str(e)
        name = next((n for key, n in (("official noise", "noise"), ("noise", "noise"), ("sigma", "sigma_min"),
                                      ("sampler", "sampler_name"), ("steps", "steps")) if key in msg), "cfg")
        raise node_error(node, name, msg) from e
    cb = cc.make_progress_callback(None, unique_id)

    if duration > window + 1e-6:
        return _long_form(node, m, ctx, settings, batch, duration, negative, z, mask, cb, notes)

    L = mdl.latent_length if mdl.fixed_length else max(1, int(math.ceil(duration * fps)))
    neg_ctx = None
    if negative is not None:
        expect(negative, C.Condition, node, "negative", "an AUDIOX_COND from AudioX Text Encoder")
        if negative.modality != "text":
            raise node_error(node, "negative", f"must be a text condition, got {negative.modality}")
        if negative.source and negative.source != ctx.source:
            raise node_error(node, "negative", "was encoded for another model")
        neg = C.Conditions(text=negative, video=ctx.conds.video, audio=ctx.conds.audio)
        with m.on_device("conditioner", "maf"), about_input(node, "negative"):
            neg_ctx = C.fuse(mdl, neg, batch=ctx.tokens.shape[0], modality_scale=ctx.modality_scale).cpu()
    known = init = None
    keep = None
    src_seconds = None
    if z is not None:
        src_seconds = float(info.get("seconds") or z.shape[-1] / fps)
        zz = z[..., :L]
        if zz.shape[-1] < L:
            zz = torch.nn.functional.pad(zz, (0, L - zz.shape[-1]))
        if mask is not None:
            clip = min(L / fps, src_seconds)
            if mask.kind == "inpaint":
                for a, b in mask.ranges:
                    if a >= clip:
                        raise node_error(node, "mask", f"range {a:g}–{b:g} s lies outside the clip (0–{clip:.2f} s)")
                with about_input(node, "mask"):
                    keep = G.keep_mask_from_ranges(mdl, L, [(a, min(b, clip)) for a, b in mask.ranges],
                                                   ramp_seconds=mask.ramp_seconds)
            else:
                kf = int(round(min(mask.keep_seconds, src_seconds) * fps))
                if kf >= L:
                    raise node_error(node, "mask", f"keeps {mask.keep_seconds:g} s, which covers the whole "
                                     f"{L / fps:.2f} s window: nothing is left to generate")
                if kf < 1:
                    raise node_error(node, "mask", "keeps less than one latent frame")
                keep = torch.zeros(L)
                keep[:kf] = 1.0
            known = G.Known(zz, keep)
        elif mode == "turbo":
            raise node_error(node, "mask", "is not connected: the Turbo sampler uses 'latent' only with a mask "
                             "(it has no variation start)")
        elif float(denoise) < 1.0:
            init = zz
        else:
            notes.append("latent ignored: without a mask, a latent is only used for variations (denoise < 1)")
    official = settings.noise == "official"
    with m.on_device(*(("backbone", "conditioner", "maf") if official else ("backbone",))), \
            about_input(node, "context"):
        tokens, rng, noise0 = ctx.tokens, None, None
        if official:  # noise first, then the conditioners' draws (the core decides how)
            rng, noise0, refused = G.official_start(mdl, settings, (batch, cfgm.io_channels, L), ctx.conds,
                                                    modality_scale=ctx.modality_scale)
            tokens = refused if refused is not None else tokens
        lat = G.sample(mdl, tokens, settings, batch=batch, length=L, negative=neg_ctx, init=init,
                       strength=float(denoise), known=known, callback=cb, noise=noise0, rng=rng)
    meta = {"sample_rate": int(cfgm.sample_rate), "seconds": min(duration, L / fps),
            "keep": keep.clone() if keep is not None else None, "mode": mode,
            "mask_kind": getattr(mask, "kind", None)}
    report = _report(m, settings, lat, duration, notes, mask)
    return {"ui": {"text": [report]}, "result": ({"samples": lat, "type": "audio", "audiox": meta}, report)}


def _long_form(node, m: ModelBundle, ctx: Context, settings, batch, duration, negative, z, mask, cb, notes):
    if mask is not None:
        raise node_error(node, "mask", f"inpainting/completion works within one {m.window_seconds:.2f} s window; "
                         f"set duration to 0 (or at most the window) — long-form continues from its own windows")
    if z is not None:
        raise node_error(node, "latent", "long-form generation (duration longer than the window) starts from "
                         "scratch; disconnect the latent or set duration to the window")
    a = ctx.conds.get("audio")
    if a is not None and any(a.present):
        raise node_error(node, "context", f"has an audio condition, but long-form generation (duration {duration:g} s "
                         f"> window {m.window_seconds:.2f} s) conditions each window on the previous one's audio; "
                         "use duration 0 for one window, or leave the audio prompt out")
    video_kw, sf = {}, None
    v = ctx.conds.get("video")
    if v is not None and any(v.present):  # each window gets its own part of the video
        src = v.extra.get("long_form")
        if src is None:
            raise node_error(node, "context", f"has a video condition made from precomputed sync features, which "
                             f"cover one {m.window_seconds:.2f} s window; for long-form generation connect the "
                             "video and the Synchformer (or sync 'zeros') to AudioX Video Encoder instead")
        if src["resize"] != "stretch":
            raise node_error(node, "context", f"long-form video-to-audio encodes each window with resize "
                             f"'stretch' (the official); the video condition used '{src['resize']}'")
        video_kw = dict(video=src["visual"], start=src["start"], sync_features=not src["sync_zeros"])
        sf = src["synchformer"]
    if negative is not None:
        expect(negative, C.Condition, node, "negative", "an AUDIOX_COND from AudioX Text Encoder")
    sf_ctx = sf.on_device() if sf is not None else contextlib.nullcontext()
    previous_sf = m.model.synchformer
    with m.on_device("backbone", "maf", "conditioner", "vae"), sf_ctx, about_input(node, "duration"):
        try:
            if sf is not None:
                m.model.set_synchformer(sf.module)
            res = G.generate(m.model, prompt=ctx.conds.text, negative_prompt=negative, duration=duration,
                             settings=settings, batch=batch, modality_scale=ctx.modality_scale, callback=cb,
                             **video_kw)
        finally:
            if sf is not None:
                m.model.set_synchformer(previous_sf)
    lat = res.latents
    meta = {"sample_rate": int(res.sample_rate), "seconds": duration, "keep": None, "mode": settings.mode}
    report = _report(m, settings, lat, duration, notes + res.report[:1], None)
    return {"ui": {"text": [report]}, "result": ({"samples": lat, "type": "audio", "audiox": meta}, report)}


def _report(m: ModelBundle, s, lat, duration, notes, mask: Optional[TimeMask]) -> str:
    what = (f"{s.mode} sampler: {s.steps} steps" + ("" if s.mode == "turbo" else f", {s.sampler}, cfg {s.cfg_scale:g}")
            + f", seed {s.seed}" + (" (official noise)" if s.noise == "official" else "")
            + f"; {lat.shape[0]} × {duration:.2f} s ({lat.shape[-1]} latents) on {m.name}")
    return "\n".join([what] + ([mask.describe()] if mask is not None else []) + list(notes))


class _SamplerNode:
    """What the Base and the Turbo sampler node have in common: their outputs."""
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = ("LATENT", "STRING")
    RETURN_NAMES = ("latent", "report")
    OUTPUT_TOOLTIPS = ("Audio latents; decode with AudioX VAE Decode.", "What was sampled.")
    FUNCTION = "sample"


class AudioXSampler(_SamplerNode):
    DISPLAY_NAME = "AudioX Sampler"
    DESCRIPTION = ("The Base sampler: multi-step sampling with classifier-free guidance for AudioX, AudioX-MAF, "
                   "AudioX-MAF-MMDiT and Turbo base models (v-objective: DPM++ 3M SDE by default, 100 steps, "
                   "cfg 7 as the official; rectified flow: Euler). Handles inpainting/completion (latent + mask), "
                   "variations (latent + denoise) and long-form generation (duration > window).")

    @classmethod
    def INPUT_TYPES(cls):
        req = _common_required()
        req.update({
            "steps": ("INT", {"default": 100, "min": 1, "max": 1000, "step": 1,
                              "tooltip": "Sampling steps (official: 100 in the gradio app, 250 in the README)."}),
            "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 50.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale (official: 7 for AudioX/MAF, 6 for the "
                                         "Turbo base model; 1 = no guidance)."}),
            "sampler_name": (SAMPLERS, {"default": "auto",
                                        "tooltip": "auto = the model's official sampler (DPM++ 3M SDE for "
                                                   "v-objective models, Euler for rectified flow). dpmpp-*, k-* "
                                                   "(the official names and defaults) and euler apply to v "
                                                   "models; euler/heun to rectified flow. k-dpm-fast and "
                                                   "k-dpm-adaptive stop at sigma_min, as the official."}),
        })
        req.update(_tail_required())
        opt = {"negative": (COND, {"tooltip": "Negative prompt (AudioX Text Encoder): the CFG 'unconditional' "
                                              "branch becomes this prompt with the same video/audio, instead of the "
                                              "official all-zero context."})}
        opt.update(_optional_inputs(True))
        opt["denoise"] = ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                    "tooltip": "With a latent and no mask: how much to change it (1 = ignore it, "
                                               "lower = closer to the input audio)."})
        opt["cfg_rescale"] = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                        "tooltip": "CFG rescale φ (official option, 0 = off): pulls the guided "
                                                   "output's spread back towards the conditional one."})
        opt["sigma_min"] = ("FLOAT", {"default": 0.3, "min": 0.001, "max": 10.0, "step": 0.01, "round": 0.0001,
                                      "tooltip": "Lowest noise level of the v-objective schedule (official: 0.3 in "
                                                 "the README script, 0.03 in the gradio app). k-dpm-fast/adaptive "
                                                 "stop here. Rectified flow and Turbo ignore it."})
        opt["sigma_max"] = ("FLOAT", {"default": 500.0, "min": 0.01, "max": 1000.0, "step": 0.1,
                                      "tooltip": "Highest noise level of the v-objective schedule (official: 500). "
                                                 "Rectified flow and Turbo ignore it."})
        opt["noise"] = (list(G.NOISE_MODES), {"default": "cpu", "tooltip": NOISE_TOOLTIP})
        return {"required": req, "optional": opt, "hidden": dict(HIDDEN)}

    @node_function
    def sample(self, model, context, seed=0, steps=100, cfg=7.0, sampler_name="auto", batch_size=1, duration=0.0,
               negative=None, latent=None, mask=None, denoise=1.0, cfg_rescale=0.0, sigma_min=0.3, sigma_max=500.0,
               noise="cpu", unique_id=None):
        return run(self.DISPLAY_NAME, "base", model, context, seed, steps, batch_size, duration, cfg=cfg,
                   sampler=sampler_name, cfg_rescale=cfg_rescale, negative=negative, latent=latent, mask=mask,
                   denoise=denoise, sigma_min=sigma_min, sigma_max=sigma_max, noise=noise, unique_id=unique_id)


class AudioXTurboSampler(_SamplerNode):
    DISPLAY_NAME = "AudioX Turbo Sampler"
    DESCRIPTION = ("The AudioX-Turbo sampler: the distilled student in 1–8 steps (4 as trained), no CFG. Handles "
                   "inpainting/completion (latent + mask) and long-form generation (duration > window).")

    @classmethod
    def INPUT_TYPES(cls):
        req = _common_required()
        req["steps"] = ("INT", {"default": 4, "min": 1, "max": 8, "step": 1,
                                "tooltip": "Student steps (the official Turbo uses 4)."})
        req.update(_tail_required())
        opt = _optional_inputs(False)
        opt["noise"] = (list(G.NOISE_MODES), {"default": "cpu", "tooltip": NOISE_TOOLTIP})
        return {"required": req, "optional": opt, "hidden": dict(HIDDEN)}

    @node_function
    def sample(self, model, context, seed=0, steps=4, batch_size=1, duration=0.0, latent=None, mask=None,
               noise="cpu", unique_id=None):
        return run(self.DISPLAY_NAME, "turbo", model, context, seed, steps, batch_size, duration, latent=latent,
                   mask=mask, noise=noise, unique_id=unique_id)


class AudioXCompileBackbone:
    DISPLAY_NAME = "AudioX Compile Backbone"
    DESCRIPTION = ("torch.compile for the diffusion backbone of the model that passes through: the samplers run "
                   "the compiled backbone (faster steps on a GPU). The first run at a new batch size / length "
                   "compiles (can take a minute); later runs reuse the compiled graphs. The loaded model itself "
                   "stays uncompiled for other branches.")
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same model; samplers fed from here run its backbone compiled.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "The AudioX model (AudioX Model Loader or AudioX LoRA Loader)."}),
            "compile": ("BOOLEAN", {"default": True, "tooltip": "Off: pass the model through uncompiled."}),
            "mode": (["default", "reduce-overhead", "max-autotune"],
                     {"default": "default", "tooltip": "torch.compile mode: reduce-overhead adds CUDA graphs, "
                                                       "max-autotune searches faster kernels (long first run)."}),
        }}

    @node_function
    def apply(self, model, compile=True, mode="default"):
        m: ModelBundle = expect(model, ModelBundle, self.DISPLAY_NAME, "model", "an AUDIOX_MODEL")
        if not compile:
            return (m.with_compile(None, m.name),)
        if not hasattr(torch, "compile"):
            raise node_error(self.DISPLAY_NAME, "compile", "this PyTorch has no torch.compile (needs ≥ 2.0)")
        return (m.with_compile(str(mode), f"{m.name} (compiled)"),)


NODE_CLASS_MAPPINGS = {"AudioXSampler": AudioXSampler, "AudioXTurboSampler": AudioXTurboSampler,
                       "AudioXCompileBackbone": AudioXCompileBackbone}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
