"""VAE nodes: audio ⇄ latents with the Oobleck VAE (chunked for long audio).

Latents are core ``LATENT`` dicts ``{"samples": [B, C, L], "type": "audio"}``.  Encode resamples
and up/down-mixes any AUDIO to the VAE's rate and channels.  Decode returns AUDIO at the VAE's
rate on the intermediate device, trimmed to the sampler's duration, optionally peak-normalised
(the official post-processing) and, for inpainting/completion, with the original audio pasted
back outside the regenerated ranges.
"""
from __future__ import annotations

import torch

from ..audiox_core import generate as generation
from ..audiox_core import media
from . import comfy_compat
from .common import (CATEGORY, MAX_SECONDS, VAE, VAEBundle, about_input, audio_output, check_audio_input, expect,
                     node_error, node_function)
from .preview import audio_preview, regenerated_seconds

HIDDEN = {"unique_id": "UNIQUE_ID"}
CHUNK = ["auto", "on", "off"]
CHUNK_TOOLTIP = ("Process long audio in overlapping chunks with an exact receptive-field overlap (same result, "
                 "bounded memory). auto: chunk above ~47 s.")


def _chunked(choice: str):
    return {"auto": None, "on": True, "off": False}[choice]


class AudioXVAEEncode:
    DISPLAY_NAME = "AudioX VAE Encode"
    DESCRIPTION = ("Audio → latents with the AudioX (Oobleck) VAE. Any sample rate and channel count is resampled "
                   "and mixed to the VAE's. Use for inpainting, completion and variations.")
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Audio latents [B, C, L] (type 'audio').",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE, {"tooltip": "The VAE (the 'vae' output of AudioX Model Loader, or AudioX VAE Loader)."}),
                "audio": ("AUDIO", {"tooltip": "Audio to encode (core Load Audio or any AUDIO)."}),
                "sample_posterior": ("BOOLEAN", {"default": True,
                                                 "tooltip": "On: draw the latents from the VAE posterior as the "
                                                            "official code does. Off: use its mean (deterministic)."}),
                "posterior_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                           "tooltip": "Seed of the posterior sample."}),
                "chunked": (CHUNK, {"default": "auto", "tooltip": CHUNK_TOOLTIP}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def encode(self, vae, audio, sample_posterior=True, posterior_seed=0, chunked="auto", unique_id=None):
        node = self.DISPLAY_NAME
        v = expect(vae, VAEBundle, node, "vae", "an AUDIOX_VAE")
        wave, sr = check_audio_input(audio, node, "audio")
        if wave.shape[-1] / sr > MAX_SECONDS:
            raise node_error(node, "audio", f"is {wave.shape[-1] / sr:.1f} s long; AudioX VAE Encode takes at most "
                             f"{MAX_SECONDS:g} s (the longest clip AudioX generates) — trim it first")
        if wave.shape[-1] * v.sample_rate / sr < v.pretransform.downsampling_ratio:
            raise node_error(node, "audio", f"is shorter than one latent frame ({v.pretransform.downsampling_ratio} "
                             f"samples at {v.sample_rate} Hz)")
        gen = torch.Generator().manual_seed(int(posterior_seed) & 0xFFFF_FFFF_FFFF_FFFF)
        cb = comfy_compat.make_progress_callback(None, unique_id)
        with v.on_device(), about_input(node, "audio"):
            z, report = generation.encode(v.view(), wave, sr, generator=gen, sample=bool(sample_posterior),
                                 chunked=_chunked(chunked), callback=cb)
        meta = {"sample_rate": v.sample_rate, "seconds": wave.shape[-1] / sr, "keep": None, "report": report}
        return ({"samples": z, "type": "audio", "audiox": meta},)


class AudioXVAEDecode:
    DISPLAY_NAME = "AudioX VAE Decode"
    DESCRIPTION = ("Latents → audio with the AudioX (Oobleck) VAE, in fp32 as the official. Output works with core "
                   "Preview Audio / Save Audio. Connect the original audio for inpainting/completion to keep it "
                   "exactly outside the regenerated ranges.")
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("Audio [B, C, T] at the VAE's sample rate.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE, {"tooltip": "The VAE (the 'vae' output of AudioX Model Loader, or AudioX VAE Loader)."}),
                "samples": ("LATENT", {"tooltip": "Latents from an AudioX sampler or AudioX VAE Encode."}),
                "normalize": ("BOOLEAN", {"default": True, "label_on": "peak-normalise", "label_off": "as decoded",
                                          "tooltip": "Scale each clip so its peak is 1 (the official output "
                                                     "post-processing). Skipped when original_audio is "
                                                     "connected, so the kept audio keeps its level."}),
                "chunked": (CHUNK, {"default": "auto", "tooltip": CHUNK_TOOLTIP}),
            },
            "optional": {
                "original_audio": ("AUDIO", {"tooltip": "The audio that was inpainted/completed: outside the "
                                                        "regenerated ranges the output is this audio exactly, "
                                                        "blended across the seams."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def decode(self, vae, samples, normalize=True, chunked="auto", original_audio=None, unique_id=None):
        node = self.DISPLAY_NAME
        v = expect(vae, VAEBundle, node, "vae", "an AUDIOX_VAE")
        if not isinstance(samples, dict) or not torch.is_tensor(samples.get("samples")):
            raise node_error(node, "samples", f"needs a LATENT, got {type(samples).__name__}")
        z = samples["samples"]
        if z.dim() != 3:
            raise node_error(node, "samples", f"has shape {tuple(z.shape)}; audio latents are [B, C, L]")
        if z.shape[1] != v.pretransform.latent_dim:
            raise node_error(node, "samples", f"has {z.shape[1]} channels but this VAE decodes "
                             f"{v.pretransform.latent_dim}: use the VAE of the model that made them")
        meta = dict(samples.get("audiox") or {})
        cb = comfy_compat.make_progress_callback(None, unique_id)
        with v.on_device(), about_input(node, "samples"):
            audio = generation.decode(v.view(), z.float(), chunked=_chunked(chunked), callback=cb)
        sr = v.sample_rate
        if meta.get("seconds"):
            audio = audio[..., : max(1, int(round(float(meta["seconds"]) * sr)))]
        if original_audio is not None:
            keep = meta.get("keep")
            if keep is None:
                raise node_error(node, "original_audio", "is connected, but the latents come from a sampler run "
                                 "without a mask: there is nothing to keep")
            wave, osr = check_audio_input(original_audio, node, "original_audio")
            with about_input(node, "original_audio"):
                orig = _conform(wave, osr, sr, audio.shape[1])
            n = min(audio.shape[-1], orig.shape[-1])
            full = generation.waveform_keep(keep, z.shape[-1] * v.pretransform.downsampling_ratio)[:n]
            audio = audio.clone()
            audio[..., :n] = full * orig[..., :n].expand(audio.shape[0], -1, -1) + (1 - full) * audio[..., :n]
        elif normalize:
            audio = media.peak_normalize(audio, per_item=True)
        seconds = audio.shape[-1] / sr
        keep = meta.get("keep")
        preview = {"audio": audio_preview(audio, sr, "decode"), "sample_rate": sr, "seconds": seconds,
                   "mask": meta.get("mask_kind") if keep is not None else None,
                   "regenerated": regenerated_seconds(keep, v.pretransform.downsampling_ratio / sr, seconds)}
        return {"ui": {"audiox_preview": [preview]}, "result": (audio_output(audio, sr),)}


def _conform(wave: torch.Tensor, sr: int, target_sr: int, channels: int) -> torch.Tensor:
    x = wave.float()
    if sr != target_sr:
        x = media.resample(x, sr, target_sr)
    if x.shape[1] != channels:
        x = media.to_channels(x, channels)
    return x


NODE_CLASS_MAPPINGS = {"AudioXVAEEncode": AudioXVAEEncode, "AudioXVAEDecode": AudioXVAEDecode}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
