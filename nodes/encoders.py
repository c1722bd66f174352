"""Encoder nodes: one per modality, so each condition can be swapped, cached and reused.

Each outputs an ``AUDIOX_COND`` (:class:`audiox_core.conditions.Condition`: the conditioner's
tokens ``[B, N, D]`` plus a report) tied to the model it was encoded for.  ComfyUI caches node
outputs, so changing the prompt re-runs only the text encoder, changing the video only the video
encoder.  Sync features (Synchformer) have their own node as well.
"""
from __future__ import annotations

import contextlib

import torch

from ..audiox_core import conditions
from ..audiox_core.media import RESIZE_MODES
from . import comfy_compat
from .common import (CATEGORY, COND, HIDDEN, MASK, MAX_SEED, MODEL, SYNC, SYNCHFORMER, T5, ModelBundle, SyncFeatures,
                     SynchformerBundle, T5Bundle, TimeMask, about_input, check_audio_input, choice_input, expect,
                     float_input, int_input, node_error, node_function, outputs, socket_input, string_input)

MODEL_TOOLTIP = "The AudioX model the condition is for (conditions are tied to the model that encoded them)."
SYNC_TOOLTIP = ("How MAF/Turbo models get their Synchformer sync features. synchformer: computed from the same "
                "video (connect AudioX Synchformer Loader, or precomputed features from AudioX Sync Encoder). "
                "zeros: no sync information, as the official gradio demo and the shipped demo model do. Models "
                "without a sync branch (AudioX) ignore this.")


def _model(node: str, model, condition: "str | None" = None) -> ModelBundle:
    """The ``model`` input; with ``condition`` ("video", "text", "audio") it must have that condition."""
    m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
    if condition is not None:
        conditions.require_condition(m.model, condition)
    return m


class _ConditionEncoder:
    """What the encoder nodes have in common."""
    CATEGORY = f"{CATEGORY}/conditioning"
    FUNCTION = "encode"


def visual_input(node: str, video=None, images=None, fps: float = 0.0, *,
                 still: bool = False) -> conditions.VisualInput:
    """A :class:`~audiox_core.conditions.VisualInput` from a VIDEO or IMAGE frames (+ fps)."""
    name = conditions.connected_visual_input(video, images)
    if name == "video":
        with about_input(node, "video"):
            kind, images, fps = comfy_compat.video_source(video)
        if kind == "stream":
            return conditions.VisualInput(source=images, still=still)
    return conditions.visual_from_frames(images, fps, field=name, still=still)


def encode_visual(node: str, m: ModelBundle, visual: conditions.VisualInput, start: float, sync_mode: str,
                  resize: str, synchformer, sync_features, unique_id) -> conditions.Condition:
    """Shared by the video and image encoders: sync handling, device placement, progress."""
    sync_features = expect(sync_features, SyncFeatures, node, "sync_features", "AUDIOX_SYNC from AudioX Sync Encoder",
                           optional=True)
    sync, synchformer = conditions.resolve_sync(m.model, sync_mode, getattr(sync_features, "tokens", None), synchformer)
    synchformer = expect(synchformer, SynchformerBundle, node, "synchformer",
                         "AUDIOX_SYNCHFORMER from AudioX Synchformer Loader", optional=True)
    with m.on_device("conditioner"), synchformer.on_device() if synchformer else contextlib.nullcontext(), \
            about_input(node, "video"):
        cond = conditions.encode_video(m.model, visual, start=start, sync=sync, resize_mode=resize,
                                       synchformer=synchformer.module if synchformer is not None else None,
                                       callback=comfy_compat.make_progress_callback(None, unique_id))
    return conditions.keep_long_form_source(cond, visual, start=start, resize=resize, sync=sync,
                                            synchformer=synchformer)


class AudioXTextEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Text Encoder"
    DESCRIPTION = ("Encodes a text prompt with T5 for one AudioX model. An empty prompt gives the official 'no text' "
                   "condition. Use a second one for a negative prompt.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (COND, "text", "Text condition (T5 tokens), for AudioX MAF Fusion or a sampler's negative input."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, MODEL_TOOLTIP),
            "t5": socket_input(T5, "T5 text encoder from AudioX T5 Loader (t5-base for the released models)."),
            "prompt": string_input("", "What to hear, e.g. 'a dog barking in the rain' or 'calm piano music'. Up to "
                                   "128 T5 tokens are used.", multiline=True)}}

    @node_function
    def encode(self, model, t5, prompt=""):
        node = self.DISPLAY_NAME
        m = _model(node, model, "text")
        expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5 from AudioX T5 Loader")
        with t5.on_device(), about_input(node, "t5"):
            return (conditions.encode_text(m.model, str(prompt), encoder=t5.encoder),)


class AudioXVideoEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Video Encoder"
    DESCRIPTION = ("Encodes the model's window of a video (CLIP frames at the model's fps, plus Synchformer sync "
                   "features for MAF/Turbo models). Takes core VIDEO (Load Video) or IMAGE frames + fps "
                   "(VideoHelperSuite). Frames are picked by timestamp, whatever the source frame rate.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((COND, "video", "Video condition, for AudioX MAF Fusion."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, MODEL_TOOLTIP),
            "start_seconds": float_input(0.0, 0.0, 86400.0, 0.1, "Where the model's window starts in the video."),
            "fps": float_input(25.0, 0.0, 240.0, 0.001, "Frame rate of the 'images' frames (ignored for a VIDEO, "
                               "which carries its own)."),
            "sync": choice_input(conditions.SYNC_MODES, "synchformer", SYNC_TOOLTIP),
            "resize": choice_input(RESIZE_MODES, "stretch", "How frames become square for CLIP: stretch (official) "
                                   "or center_crop."),
        }, "optional": {
            "video": socket_input("VIDEO", "A video (core Load Video). Only the window is decoded."),
            "images": socket_input("IMAGE", "Video frames as an IMAGE batch (VideoHelperSuite Load Video); set "
                                   "'fps' to their frame rate."),
            "synchformer": socket_input(SYNCHFORMER, "Synchformer (AudioX Synchformer Loader), for MAF / Turbo "
                                        "models when sync is 'synchformer'."),
            "sync_features": socket_input(SYNC, "Precomputed sync features (AudioX Sync Encoder); used instead of "
                                          "running the Synchformer here."),
        }, "hidden": dict(HIDDEN)}

    @node_function
    def encode(self, model, start_seconds=0.0, fps=25.0, sync="synchformer", resize="stretch", video=None,
               images=None, synchformer=None, sync_features=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "video")
        return (encode_visual(node, m, visual_input(node, video, images, fps), float(start_seconds), sync, resize,
                              synchformer, sync_features, unique_id),)


class AudioXImageEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Image Encoder"
    DESCRIPTION = ("Image-to-audio: encodes a still image as a video that holds it for the model's whole window "
                   "(the official way AudioX conditions on images).")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (COND, "video", "Video condition of the still image, for AudioX MAF Fusion."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, MODEL_TOOLTIP),
            "image": socket_input("IMAGE", "The image (core Load Image). Of a batch, the first image is used."),
            "sync": choice_input(conditions.SYNC_MODES, "zeros", SYNC_TOOLTIP),
            "resize": choice_input(RESIZE_MODES, "stretch", "How the image becomes square for CLIP: stretch "
                                   "(official) or center_crop."),
        }, "optional": {
            "synchformer": socket_input(SYNCHFORMER, "Synchformer, when sync is 'synchformer' (a still image has no "
                                        "motion; 'zeros' is the usual choice)."),
        }, "hidden": dict(HIDDEN)}

    @node_function
    def encode(self, model, image, sync="zeros", resize="stretch", synchformer=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "video")
        visual = conditions.visual_from_frames(image, 0.0, field="image", still=True)
        return (encode_visual(node, m, visual, 0.0, sync, resize, synchformer, None, unique_id),)


class AudioXAudioPromptEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Audio Prompt Encoder"
    DESCRIPTION = ("Encodes audio as the model's audio condition (audio-to-audio, continuation, and the official "
                   "setup for inpainting/completion where the input audio is also the prompt). Any sample rate and "
                   "channel count; it is resampled and cropped or padded to the model's window.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((COND, "audio", "Audio condition, for AudioX MAF Fusion."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, MODEL_TOOLTIP),
            "audio": socket_input("AUDIO", "Audio (core Load Audio, or any AUDIO output)."),
            "masking": choice_input(["off", "official random spans"], "off", "official random spans: blank random "
                                    "parts as the model's training did (Turbo, MAF). off: use the audio as given. "
                                    "With a mask connected, the mask decides."),
            "mask_seed": int_input(0, 0, MAX_SEED, "Seed of the random span masking and of the VAE posterior sample "
                                   "inside the audio conditioner."),
        }, "optional": {
            "mask": socket_input(MASK, "Inpainting/completion mask: the parts to regenerate are blanked (or "
                                 "everything after the kept seconds is left out), as the official inpainting and "
                                 "completion did."),
        }, "hidden": dict(HIDDEN)}

    @node_function
    def encode(self, model, audio, masking="off", mask_seed=0, mask=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model, "audio")
        wave, sr = check_audio_input(audio, node, "audio")
        expect(mask, TimeMask, node, "mask", "an AUDIOX_MASK from AudioX Inpaint Mask / Completion Mask", optional=True)
        inpaint = mask.ranges if mask is not None and mask.kind == "inpaint" else None
        keep_seconds = mask.keep_seconds if mask is not None and mask.kind == "complete" else None
        wave = conditions.audio_prompt_waveform(m.model, wave, sr, inpaint=inpaint, keep_seconds=keep_seconds)
        random_spans = None if masking == "official random spans" and mask is None else False
        generator = torch.Generator().manual_seed(int(mask_seed) & MAX_SEED)
        with m.on_device("conditioner"), about_input(node, "audio"):
            return (conditions.encode_audio_prompt(m.model, wave, sample_rate=sr, batch=wave.shape[0],
                                                   generator=generator, mask=random_spans,
                                                   callback=comfy_compat.make_progress_callback(None, unique_id)),)


class AudioXSyncEncoder(_ConditionEncoder):
    DISPLAY_NAME = "AudioX Sync Encoder"
    DESCRIPTION = ("Runs the Synchformer on the model's window of a video (25 fps, 224×224) and outputs the sync "
                   "features, so they can be computed once and reused (AudioX Video Encoder's sync_features).")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (SYNC, "sync_features", "Synchformer features of the window."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": socket_input(MODEL, "The model whose window length and sync size to use."),
            "synchformer": socket_input(SYNCHFORMER, "AudioX Synchformer Loader."),
            "start_seconds": float_input(0.0, 0.0, 86400.0, 0.1, "Where the window starts in the video."),
            "fps": float_input(25.0, 0.0, 240.0, 0.001, "Frame rate of the 'images' frames (ignored for a VIDEO)."),
        }, "optional": {
            "video": socket_input("VIDEO", "A video (core Load Video)."),
            "images": socket_input("IMAGE", "Video frames (IMAGE batch) with their 'fps'."),
        }, "hidden": dict(HIDDEN)}

    @node_function
    def encode(self, model, synchformer, start_seconds=0.0, fps=25.0, video=None, images=None, unique_id=None):
        node = self.DISPLAY_NAME
        m = _model(node, model)
        sf = expect(synchformer, SynchformerBundle, node, "synchformer", "AUDIOX_SYNCHFORMER")
        if not m.needs_sync:
            raise node_error(node, "model", f"{m.variant} does not condition on sync features")
        vc = m.model.video_conditioner
        visual = visual_input(node, video, images, fps)
        with sf.on_device(), about_input(node, "video"):
            feats, rep = conditions.encode_sync(sf.module, visual, start=float(start_seconds), duration=vc.duration,
                                                tokens=vc.sync_tokens,
                                                callback=comfy_compat.make_progress_callback(None, unique_id))
        return (SyncFeatures(feats, float(start_seconds), float(vc.duration), rep),)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (AudioXTextEncoder, AudioXVideoEncoder, AudioXImageEncoder,
                                                      AudioXAudioPromptEncoder, AudioXSyncEncoder)}
