"""Encoder nodes: one per modality, so each condition can be swapped, cached and reused.

Each outputs an ``AUDIOX_COND`` (:class:`audiox_core.conditions.Condition`: the conditioner's
tokens ``[B, N, D]`` plus a report) tied to the model it was encoded for.  ComfyUI caches node
outputs, so changing the prompt re-runs only the text encoder, changing the video only the video
encoder.  Sync features (Synchformer) have their own node as well.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Optional

import torch

from ..audiox_core import conditions
from ..audiox_core.media import RESIZE_MODES
from . import comfy_compat
from .common import (CATEGORY, COND, MASK, MODEL, SYNC, SYNCHFORMER, T5, ModelBundle, SyncFeatures,
                     SynchformerBundle, T5Bundle, TimeMask, about_input, check_audio_input, expect, node_error,
                     node_function)

log = logging.getLogger(__name__)

MODEL_TOOLTIP = "The AudioX model the condition is for (conditions are tied to the model that encoded them)."
HIDDEN = {"unique_id": "UNIQUE_ID"}
SYNC_MODES = ["synchformer", "zeros"]
SYNC_TOOLTIP = ("How MAF/Turbo models get their Synchformer sync features. synchformer: computed from the same "
                "video (connect AudioX Synchformer Loader, or precomputed features from AudioX Sync Encoder). "
                "zeros: no sync information, as the official gradio demo and the shipped demo model do. Models "
                "without a sync branch (AudioX) ignore this.")


# the model part that is None when a model has no condition of that kind
_CONDITION_PARTS = {"video": "video_conditioner", "audio": "audio_conditioner"}


def _model(node: str, model, condition: Optional[str] = None) -> ModelBundle:
    """The ``model`` input as a :class:`ModelBundle`; with ``condition`` ("video", "audio") a model
    without that condition is refused."""
    m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
    if condition is not None and getattr(m.model, _CONDITION_PARTS[condition]) is None:
        raise node_error(node, "model", f"{m.variant} has no {condition} condition")
    return m


class _ConditionEncoder:
    """What the encoder nodes that output one ``AUDIOX_COND`` have in common."""
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (COND,)
    FUNCTION = "encode"


def visual_input(node: str, video=None, images=None, fps: float = 0.0, *,
                 still: bool = False) -> conditions.VisualInput:
    """A :class:`~audiox_core.conditions.VisualInput` from a VIDEO or IMAGE frames (+ fps)."""
    if video is not None and images is not None:
        raise node_error(node, "images", "and input 'video' are both connected; connect one of them")
    if video is None and images is None:
        raise node_error(node, "video", "is not connected: connect a VIDEO (Load Video) to 'video' or IMAGE frames "
                         "(+ their fps) to 'images'")
    if video is not None:
        with about_input(node, "video"):
            kind, src, rate = comfy_compat.video_source(video)
        if kind == "stream":
            return conditions.VisualInput(source=src, still=still)
        images, fps, name = src, rate, "video"
    else:
        name = "images"
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[-1] not in (3, 4):
        raise node_error(node, name, f"must be IMAGE frames [N, H, W, 3], got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    if images.shape[0] == 0:
        raise node_error(node, name, "has no frames")
    if still:
        images = images[:1]
    elif images.shape[0] > 1 and not float(fps) > 0:
        raise node_error(node, "fps", f"must be > 0 for {images.shape[0]} frames (the frames' own frame rate)")
    with about_input(node, name):
        return conditions.VisualInput(frames=images, fps=float(fps) if float(fps) > 0 else None, still=still)


# ============================================================================================
class AudioXTextEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Text Encoder"
    DESCRIPTION = ("Encodes a text prompt with T5 for one AudioX model. An empty prompt gives the official 'no text' "
                   "condition. Use a second one for a negative prompt.")
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("Text condition (T5 tokens), for AudioX MAF Fusion or a sampler's negative input.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": MODEL_TOOLTIP}),
            "t5": (T5, {"tooltip": "T5 text encoder from AudioX T5 Loader (t5-base for the released models)."}),
            "prompt": ("STRING", {"default": "", "multiline": True,
                                  "tooltip": "What to hear, e.g. 'a dog barking in the rain' or 'calm piano "
                                             "music'. Up to 128 T5 tokens are used."}),
        }}

    @node_function
    def encode(self, model, t5, prompt=""):
        node = self.DISPLAY_NAME
        m = _model(node, model)
        expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5 from AudioX T5 Loader")
        if m.model.text_spec is None:
            raise node_error(node, "model", f"{m.variant} has no text condition")
        with t5.on_device(), about_input(node, "t5"):
            cond = conditions.encode_text(m.model, str(prompt), encoder=t5.encoder)
        return (cond,)


# ============================================================================================
class AudioXVideoEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Video Encoder"
    DESCRIPTION = ("Encodes the model's window of a video (CLIP frames at the model's fps, plus Synchformer sync "
                   "features for MAF/Turbo models). Takes core VIDEO (Load Video) or IMAGE frames + fps "
                   "(VideoHelperSuite). Frames are picked by timestamp, whatever the source frame rate.")
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("Video condition, for AudioX MAF Fusion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": MODEL_TOOLTIP}),
                "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                            "tooltip": "Where the model's window starts in the video."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.0, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the 'images' frames (ignored for a VIDEO, which "
                                             "carries its own)."}),
                "sync": (SYNC_MODES, {"default": "synchformer", "tooltip": SYNC_TOOLTIP}),
                "resize": (list(RESIZE_MODES), {"default": "stretch",
                                                "tooltip": "How frames become square for CLIP: stretch (official) "
                                                           "or center_crop."}),
            },
            "optional": {
                "video": ("VIDEO", {"tooltip": "A video (core Load Video). Only the window is decoded."}),
                "images": ("IMAGE", {"tooltip": "Video frames as an IMAGE batch (VideoHelperSuite Load Video); set "
                                                "'fps' to their frame rate."}),
                "synchformer": (SYNCHFORMER, {"tooltip": "Synchformer (AudioX Synchformer Loader), for MAF / Turbo "
                                                         "models when sync is 'synchformer'."}),
                "sync_features": (SYNC, {"tooltip": "Precomputed sync features (AudioX Sync Encoder); used instead "
                                                    "of running the Synchformer here."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def encode(self, model, start_seconds=0.0, fps=25.0, sync="synchformer", resize="stretch", video=None,
               images=None, synchformer=None, sync_features=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "video")
        visual = visual_input(node, video, images, fps)
        return (encode_visual(node, m, visual, float(start_seconds), sync, resize, synchformer, sync_features,
                              unique_id),)


def encode_visual(node: str, m: ModelBundle, visual: conditions.VisualInput, start: float, sync_mode: str, resize: str,
                  synchformer, sync_features, unique_id) -> conditions.Condition:
    """Shared by the video and image encoders: sync handling, device placement, progress."""
    vc = m.model.video_conditioner
    if sync_mode not in SYNC_MODES:
        raise node_error(node, "sync", f"must be one of {SYNC_MODES}, got {sync_mode!r}")
    sync_arg, sf_module, sf_bundle = None, None, None
    if m.needs_sync:
        if sync_features is not None:
            expect(sync_features, SyncFeatures, node, "sync_features", "AUDIOX_SYNC from AudioX Sync Encoder")
            if tuple(sync_features.tokens.shape[1:]) != (vc.sync_tokens, vc.dim):
                raise node_error(node, "sync_features", f"has {tuple(sync_features.tokens.shape[1:])} tokens but "
                                 f"this model takes ({vc.sync_tokens}, {vc.dim})")
            sync_arg = sync_features.tokens
        elif sync_mode == "zeros":
            sync_arg = False
        elif synchformer is None:
            raise node_error(node, "synchformer", f"is not connected: {m.variant} conditions on Synchformer sync "
                             "features — load synchformer_state_dict.pth with 'AudioX Synchformer Loader' and "
                             "connect it, or set 'sync' to 'zeros'")
        else:
            sf_bundle = expect(synchformer, SynchformerBundle, node, "synchformer",
                               "AUDIOX_SYNCHFORMER from AudioX Synchformer Loader")
            sf_module = sf_bundle.module
    elif synchformer is not None or sync_features is not None:
        log.warning("%s: %s has no sync branch; the Synchformer input is ignored", node, m.variant)
    cb = comfy_compat.make_progress_callback(None, unique_id)
    with m.on_device("conditioner"):
        ctx = sf_bundle.on_device() if sf_bundle is not None else contextlib.nullcontext()
        with ctx, about_input(node, "video"):
            cond = conditions.encode_video(m.model, visual, start=start, sync=sync_arg, synchformer=sf_module,
                                  resize_mode=resize, callback=cb)
    # what a sampler needs to encode the later windows of a long-form generation itself
    if sync_arg is None or sync_arg is False:
        cond.extra["long_form"] = {"visual": visual, "start": float(start), "resize": resize,
                                   "sync_zeros": sync_arg is False, "synchformer": sf_bundle}
    return cond



# ============================================================================================
class AudioXImageEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Image Encoder"
    DESCRIPTION = ("Image-to-audio: encodes a still image as a video that holds it for the model's whole window "
                   "(the official way AudioX conditions on images).")
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("Video condition of the still image, for AudioX MAF Fusion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": MODEL_TOOLTIP}),
                "image": ("IMAGE", {"tooltip": "The image (core Load Image). Of a batch, the first image is used."}),
                "sync": (SYNC_MODES, {"default": "zeros", "tooltip": SYNC_TOOLTIP}),
                "resize": (list(RESIZE_MODES), {"default": "stretch",
                                                "tooltip": "How the image becomes square for CLIP: stretch "
                                                           "(official) or center_crop."}),
            },
            "optional": {
                "synchformer": (SYNCHFORMER, {"tooltip": "Synchformer, when sync is 'synchformer' (a still image "
                                                         "has no motion; 'zeros' is the usual choice)."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def encode(self, model, image, sync="zeros", resize="stretch", synchformer=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "video")
        if torch.is_tensor(image) and image.dim() == 4 and image.shape[0] > 1:
            log.info("%s: using the first of %d images", node, image.shape[0])
        if torch.is_tensor(image) and image.dim() == 3:
            image = image.unsqueeze(0)
        visual = visual_input(node, None, image, 0.0, still=True) if torch.is_tensor(image) else None
        if visual is None:
            raise node_error(node, "image", f"needs an IMAGE, got {type(image).__name__}")
        return (encode_visual(node, m, visual, 0.0, sync, resize, synchformer, None, unique_id),)


# ============================================================================================
class AudioXAudioPromptEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Audio Prompt Encoder"
    DESCRIPTION = ("Encodes audio as the model's audio condition (audio-to-audio, continuation, and the official "
                   "setup for inpainting/completion where the input audio is also the prompt). Any sample rate and "
                   "channel count; it is resampled and cropped or padded to the model's window.")
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("Audio condition, for AudioX MAF Fusion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": MODEL_TOOLTIP}),
                "audio": ("AUDIO", {"tooltip": "Audio (core Load Audio, or any AUDIO output)."}),
                "masking": (["off", "official random spans"], {
                    "default": "off",
                    "tooltip": "official random spans: blank random parts as the model's training did (Turbo, "
                               "MAF). off: use the audio as given. With a mask connected, the mask decides."}),
                "mask_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                      "tooltip": "Seed of the random span masking and of the VAE posterior "
                                                 "sample inside the audio conditioner."}),
            },
            "optional": {
                "mask": (MASK, {"tooltip": "Inpainting/completion mask: the parts to regenerate are blanked (or "
                                           "everything after the kept seconds is left out), as the official "
                                           "inpainting and completion did."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def encode(self, model, audio, masking="off", mask_seed=0, mask=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "audio")
        wave, sr = check_audio_input(audio, node, "audio")
        # only the conditioner's prompt window (the first seconds) is used: drop the rest before any copy
        used = conditions.audio_prompt_seconds(m.model)
        if used is not None:
            wave = wave[..., : int(math.ceil((used + 0.5) * sr))]
        use_mask = None if masking == "official random spans" else False
        if mask is not None:
            expect(mask, TimeMask, node, "mask", "an AUDIOX_MASK from AudioX Inpaint Mask / Completion Mask")
            total = wave.shape[-1] / sr
            if mask.kind == "inpaint":
                wave = wave.clone()
                for a, b in mask.ranges:
                    if a >= total:
                        raise node_error(node, "mask", f"range {a:g}–{b:g} s starts after the end of the "
                                         f"{total:.2f} s audio")
                    wave[..., int(round(a * sr)):int(round(min(b, total) * sr))] = 0
            else:
                if mask.keep_seconds >= total:
                    log.info("%s: keep %.2f s covers the whole %.2f s audio", node, mask.keep_seconds, total)
                wave = wave[..., : max(1, int(round(min(mask.keep_seconds, total) * sr)))]
            use_mask = False
        gen = torch.Generator().manual_seed(int(mask_seed) & 0xFFFF_FFFF_FFFF_FFFF)
        cb = comfy_compat.make_progress_callback(None, unique_id)
        with m.on_device("conditioner"), about_input(node, "audio"):
            cond = conditions.encode_audio_prompt(m.model, wave, sample_rate=sr, batch=wave.shape[0], generator=gen,
                                         mask=use_mask, callback=cb)
        return (cond,)


# ============================================================================================
class AudioXSyncEncoder:
    DISPLAY_NAME = "AudioX Sync Encoder"
    DESCRIPTION = ("Runs the Synchformer on the model's window of a video (25 fps, 224×224) and outputs the sync "
                   "features, so they can be computed once and reused (AudioX Video Encoder's sync_features).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (SYNC,)
    RETURN_NAMES = ("sync_features",)
    OUTPUT_TOOLTIPS = ("Synchformer features of the window.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model whose window length and sync size to use."}),
                "synchformer": (SYNCHFORMER, {"tooltip": "AudioX Synchformer Loader."}),
                "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                            "tooltip": "Where the window starts in the video."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.0, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the 'images' frames (ignored for a VIDEO)."}),
            },
            "optional": {
                "video": ("VIDEO", {"tooltip": "A video (core Load Video)."}),
                "images": ("IMAGE", {"tooltip": "Video frames (IMAGE batch) with their 'fps'."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def encode(self, model, synchformer, start_seconds=0.0, fps=25.0, video=None, images=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model)
        sf = expect(synchformer, SynchformerBundle, node, "synchformer", "AUDIOX_SYNCHFORMER")
        if not m.needs_sync:
            raise node_error(node, "model", f"{m.variant} does not condition on sync features")
        vc = m.model.video_conditioner
        visual = visual_input(node, video, images, fps)
        cb = comfy_compat.make_progress_callback(None, unique_id)
        with sf.on_device(), about_input(node, "video"):
            feats, rep = conditions.encode_sync(sf.module, visual, start=float(start_seconds), duration=vc.duration,
                                       tokens=vc.sync_tokens, callback=cb)
        return (SyncFeatures(feats, float(start_seconds), float(vc.duration), rep),)


NODE_CLASS_MAPPINGS = {
    "AudioXTextEncoder": AudioXTextEncoder,
    "AudioXVideoEncoder": AudioXVideoEncoder,
    "AudioXImageEncoder": AudioXImageEncoder,
    "AudioXAudioPromptEncoder": AudioXAudioPromptEncoder,
    "AudioXSyncEncoder": AudioXSyncEncoder,
}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
