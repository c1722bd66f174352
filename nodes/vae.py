"""VAE nodes: audio ⇄ core ``LATENT`` dicts ``{"samples": [B, C, L], "type": "audio"}`` with the Oobleck
VAE (chunked for long audio).  Decode trims to the sampler's duration (the LATENT's ``"audiox"`` entry),
then keeps the original audio outside the regenerated ranges, or peak-normalises (official post-processing).
"""
from __future__ import annotations

import torch

from ..audiox_core import generate as generation
from ..audiox_core import media
from . import comfy_compat
from .common import (CATEGORY, HIDDEN, MAX_SEED, VAE, VAEBundle, about_input, audio_output, bool_input,
                     check_audio_input, choice_input, expect, int_input, node_error, node_function, outputs,
                     socket_input)

CHUNK = ["auto", "on", "off"]
CHUNKED = {"auto": None, "on": True, "off": False}
CHUNK_TOOLTIP = ("Process long audio in overlapping chunks with an exact receptive-field overlap (same result, "
                 "bounded memory). auto: chunk above ~47 s.")
VAE_TOOLTIP = "The VAE (the 'vae' output of AudioX Model Loader, or AudioX VAE Loader)."
NORMALIZE_TOOLTIP = ("Scale each clip so its peak is 1 (the official output post-processing). Skipped when "
                     "original_audio is connected, so the kept audio keeps its level.")
ORIGINAL_TOOLTIP = ("The audio that was inpainted/completed: outside the regenerated ranges the output is this audio "
                    "exactly, blended across the seams.")


class AudioXVAEEncode:
    DISPLAY_NAME = "AudioX VAE Encode"
    DESCRIPTION = ("Audio → latents with the AudioX (Oobleck) VAE. Any sample rate and channel count is resampled "
                   "and mixed to the VAE's. Use for inpainting, completion and variations.")
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("LATENT", "latent", "Audio latents [B, C, L] (type 'audio')."))
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": socket_input(VAE, VAE_TOOLTIP),
            "audio": socket_input("AUDIO", "Audio to encode (core Load Audio or any AUDIO)."),
            "sample_posterior": bool_input(True, "On: draw the latents from the VAE posterior as the official code "
                                                 "does. Off: use its mean (deterministic)."),
            "posterior_seed": int_input(0, 0, MAX_SEED, "Seed of the posterior sample."),
            "chunked": choice_input(CHUNK, "auto", CHUNK_TOOLTIP),
        }, "hidden": dict(HIDDEN)}

    @node_function
    def encode(self, vae, audio, sample_posterior=True, posterior_seed=0, chunked="auto", unique_id=None):
        node = self.DISPLAY_NAME
        v = expect(vae, VAEBundle, node, "vae", "an AUDIOX_VAE")
        wave, sr = check_audio_input(audio, node, "audio")
        generation.check_encode_length(v.view(), wave.shape[-1], sr, user=node)
        generator = torch.Generator().manual_seed(int(posterior_seed) & MAX_SEED)
        progress = comfy_compat.make_progress_callback(None, unique_id)
        with v.on_device(), about_input(node, "audio"):
            latents, report = generation.encode(v.view(), wave, sr, generator=generator, sample=bool(sample_posterior),
                                                chunked=CHUNKED[chunked], callback=progress)
        meta = {"sample_rate": v.sample_rate, "seconds": wave.shape[-1] / sr, "keep": None, "report": report}
        return ({"samples": latents, "type": "audio", "audiox": meta},)


class AudioXVAEDecode:
    DISPLAY_NAME = "AudioX VAE Decode"
    DESCRIPTION = ("Latents → audio with the AudioX (Oobleck) VAE, in fp32 as the official. Output works with core "
                   "Preview Audio / Save Audio. Connect the original audio for inpainting/completion to keep it "
                   "exactly outside the regenerated ranges.")
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("AUDIO", "audio", "Audio [B, C, T] at the VAE's sample rate."))
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": socket_input(VAE, VAE_TOOLTIP),
            "samples": socket_input("LATENT", "Latents from an AudioX sampler or AudioX VAE Encode."),
            "normalize": bool_input(True, NORMALIZE_TOOLTIP, label_on="peak-normalise", label_off="as decoded"),
            "chunked": choice_input(CHUNK, "auto", CHUNK_TOOLTIP),
        }, "optional": {"original_audio": socket_input("AUDIO", ORIGINAL_TOOLTIP)}, "hidden": dict(HIDDEN)}

    @node_function
    def decode(self, vae, samples, normalize=True, chunked="auto", original_audio=None, unique_id=None):
        node = self.DISPLAY_NAME
        v = expect(vae, VAEBundle, node, "vae", "an AUDIOX_VAE")
        latents = generation.checked_latents(samples, v.pretransform.latent_dim)
        meta = dict(samples.get("audiox") or {})
        keep, sr, ratio = meta.get("keep"), v.sample_rate, v.pretransform.downsampling_ratio
        if original_audio is not None and keep is None:
            raise node_error(node, "original_audio", "is connected, but the latents come from a sampler run "
                             "without a mask: there is nothing to keep")
        progress = comfy_compat.make_progress_callback(None, unique_id)
        with v.on_device(), about_input(node, "samples"):
            audio = generation.decode(v.view(), latents.float(), chunked=CHUNKED[chunked], callback=progress)
        if meta.get("seconds"):
            audio = audio[..., : max(1, int(round(float(meta["seconds"]) * sr)))]
        if original_audio is not None:
            wave, original_rate = check_audio_input(original_audio, node, "original_audio")
            with about_input(node, "original_audio"):
                audio = generation.keep_original_audio(audio, sr, wave, original_rate, keep,
                                                       latents.shape[-1] * ratio)
        elif normalize:
            audio = media.peak_normalize(audio, per_item=True)
        seconds = audio.shape[-1] / sr
        preview = {"audio": comfy_compat.audio_preview(audio, sr, "decode"), "sample_rate": sr, "seconds": seconds,
                   "mask": meta.get("mask_kind") if keep is not None else None,
                   "regenerated": generation.regenerated_seconds(keep, ratio / sr, seconds)}
        return {"ui": {"audiox_preview": [preview]}, "result": (audio_output(audio, sr),)}


NODE_CLASS_MAPPINGS = {"AudioXVAEEncode": AudioXVAEEncode, "AudioXVAEDecode": AudioXVAEDecode}
