"""Time-mask nodes: which seconds a sampler regenerates (inpainting) or keeps (completion).

The mask is in seconds; the samplers turn it into a latent keep-mask for their model
(:func:`audiox_core.generate.keep_mask_from_ranges`), check it against the clip, and the Audio
Prompt Encoder uses it to blank the regenerated parts of the prompt (the official setup).
"""
from __future__ import annotations

from ..audiox_core.task import check_mask_fits_audio, parse_ranges  # the one time-range grammar (also the CLI's)
from . import comfy_compat
from .common import (CATEGORY, MASK, MAX_SECONDS, TimeMask, about_input, check_audio_input, float_input, node_function,
                     outputs, socket_input, string_input)

AUDIO_INPUT_TOOLTIP = ("Optional: the audio being edited (e.g. the same Load Audio that feeds the encoder). The node "
                       "then draws its waveform with the mask for editing by mouse, and the mask is checked "
                       "against its length. The mask itself does not depend on it.")


def _mask_result(node: str, mask: TimeMask, audio) -> dict:
    """The mask, checked against the connected audio's length, and for the range editor
    (web/audiox.js) that audio's first clip."""
    ui = {}
    if audio is not None:
        wave, sr = check_audio_input(audio, node, "audio")
        check_mask_fits_audio(wave.shape[-1] / sr, ranges=mask.ranges,
                              keep_seconds=mask.keep_seconds if mask.kind == "complete" else None)
        ui["audiox_audio"] = [{"audio": comfy_compat.audio_preview(wave[:1], sr, "mask_input"), "sample_rate": sr,
                               "seconds": wave.shape[-1] / sr}]
    return {"ui": ui, "result": (mask,)}


class AudioXInpaintMask:
    DISPLAY_NAME = "AudioX Inpaint Mask"
    DESCRIPTION = ("Audio inpainting: the time ranges (seconds) to regenerate; everything else is kept from the "
                   "input audio. Connect to the sampler's mask (with the audio's latents) and to AudioX Audio "
                   "Prompt Encoder.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((MASK, "mask", "Time mask: the ranges to regenerate."))
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ranges": string_input("1.0-2.0", "Seconds to regenerate, e.g. '2.0-3.5' or '1-2, 6-7.5'. They must lie "
                                   "inside the clip the sampler generates.", multiline=False),
            "ramp_seconds": float_input(0.1, 0.0, 2.0, 0.01, "Soft edge inside each range so the seams blend (Hann "
                                        "ramp)."),
        }, "optional": {"audio": socket_input("AUDIO", AUDIO_INPUT_TOOLTIP)}}

    @classmethod
    def VALIDATE_INPUTS(cls, ranges):
        try:
            parse_ranges(ranges)
        except ValueError as e:
            return f"{cls.DISPLAY_NAME}: input 'ranges': {e}"
        return True

    @node_function
    def make(self, ranges, ramp_seconds=0.1, audio=None):
        with about_input(self.DISPLAY_NAME, "ranges"):
            parsed = parse_ranges(ranges)
        return _mask_result(self.DISPLAY_NAME, TimeMask("inpaint", ranges=parsed, ramp_seconds=float(ramp_seconds)),
                            audio)


class AudioXCompletionMask:
    DISPLAY_NAME = "AudioX Completion Mask"
    DESCRIPTION = ("Music/audio completion: keep the first N seconds of the input audio and generate what follows. "
                   "Connect to the sampler's mask (with the audio's latents) and to AudioX Audio Prompt Encoder.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((MASK, "mask", "Time mask: the seconds to keep."))
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "keep_seconds": float_input(2.0, 0.01, MAX_SECONDS, 0.01, "How much of the input audio to keep; the rest "
                                        "of the window is generated as its continuation."),
        }, "optional": {"audio": socket_input("AUDIO", AUDIO_INPUT_TOOLTIP)}}

    @node_function
    def make(self, keep_seconds=2.0, audio=None):
        return _mask_result(self.DISPLAY_NAME, TimeMask("complete", keep_seconds=float(keep_seconds)), audio)


NODE_CLASS_MAPPINGS = {"AudioXInpaintMask": AudioXInpaintMask, "AudioXCompletionMask": AudioXCompletionMask}
