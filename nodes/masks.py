"""Time-mask nodes: which seconds a sampler regenerates (inpainting) or keeps (completion).

The mask is in seconds; the samplers turn it into a latent keep-mask for their model
(:func:`audiox_core.generate.keep_mask_from_ranges`), check it against the clip, and the Audio
Prompt Encoder uses it to blank the regenerated parts of the prompt (the official setup).
"""
from __future__ import annotations

from ..audiox_core.task import parse_ranges  # the one time-range grammar (also the CLI's --inpaint)
from .common import CATEGORY, MASK, MAX_SECONDS, TimeMask, check_audio_input, node_error, node_function
from .preview import audio_preview


AUDIO_INPUT_TOOLTIP = ("Optional: the audio being edited (e.g. the same Load Audio that feeds the encoder). The node "
                       "then draws its waveform with the mask for editing by mouse, and the mask is checked "
                       "against its length. The mask itself does not depend on it.")


def _audio_seconds(node: str, audio) -> float:
    wave, sr = check_audio_input(audio, node, "audio")
    return wave.shape[-1] / sr


def _result(mask: TimeMask, audio) -> dict:
    """The mask, and for the range editor (web/audiox.js) the connected audio's first clip."""
    ui = {}
    if audio is not None:
        wave, sr = check_audio_input(audio, "", "audio")
        ui["audiox_audio"] = [{"audio": audio_preview(wave[:1], sr, "mask_input"), "sample_rate": sr,
                               "seconds": wave.shape[-1] / sr}]
    return {"ui": ui, "result": (mask,)}



class AudioXInpaintMask:
    DISPLAY_NAME = "AudioX Inpaint Mask"
    DESCRIPTION = ("Audio inpainting: the time ranges (seconds) to regenerate; everything else is kept from the "
                   "input audio. Connect to the sampler's mask (with the audio's latents) and to AudioX Audio "
                   "Prompt Encoder.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES = (MASK,)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("Time mask: the ranges to regenerate.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ranges": ("STRING", {"default": "1.0-2.0", "multiline": False,
                                  "tooltip": "Seconds to regenerate, e.g. '2.0-3.5' or '1-2, 6-7.5'. They must lie "
                                             "inside the clip the sampler generates."}),
            "ramp_seconds": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 2.0, "step": 0.01,
                                       "tooltip": "Soft edge inside each range so the seams blend (Hann ramp)."}),
        }, "optional": {"audio": ("AUDIO", {"tooltip": AUDIO_INPUT_TOOLTIP})}}

    @classmethod
    def VALIDATE_INPUTS(cls, ranges):
        try:
            parse_ranges(ranges)
        except ValueError as e:
            return f"{cls.DISPLAY_NAME}: input 'ranges': {e}"
        return True

    @node_function
    def make(self, ranges, ramp_seconds=0.1, audio=None):
        try:
            parsed = parse_ranges(ranges)
        except ValueError as e:
            raise node_error(self.DISPLAY_NAME, "ranges", str(e)) from None
        if audio is not None:
            seconds = _audio_seconds(self.DISPLAY_NAME, audio)
            late = [f"{a:g}-{b:g}" for a, b in parsed if a >= seconds]
            if late:
                raise node_error(self.DISPLAY_NAME, "ranges", f"{', '.join(late)} start(s) after the end of the "
                                 f"connected audio ({seconds:.2f} s)")
        return _result(TimeMask("inpaint", ranges=parsed, ramp_seconds=float(ramp_seconds)), audio)


class AudioXCompletionMask:
    DISPLAY_NAME = "AudioX Completion Mask"
    DESCRIPTION = ("Music/audio completion: keep the first N seconds of the input audio and generate what follows. "
                   "Connect to the sampler's mask (with the audio's latents) and to AudioX Audio Prompt Encoder.")
    CATEGORY = f"{CATEGORY}/masks"
    RETURN_TYPES = (MASK,)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("Time mask: the seconds to keep.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "keep_seconds": ("FLOAT", {"default": 2.0, "min": 0.01, "max": MAX_SECONDS, "step": 0.01,
                                       "tooltip": "How much of the input audio to keep; the rest of the window is "
                                                  "generated as its continuation."}),
        }, "optional": {"audio": ("AUDIO", {"tooltip": AUDIO_INPUT_TOOLTIP})}}

    @node_function
    def make(self, keep_seconds=2.0, audio=None):
        if audio is not None:
            seconds = _audio_seconds(self.DISPLAY_NAME, audio)
            if float(keep_seconds) > seconds + 1e-6:
                raise node_error(self.DISPLAY_NAME, "keep_seconds", f"is {float(keep_seconds):g} s but the connected "
                                 f"audio is only {seconds:.2f} s long")
        return _result(TimeMask("complete", keep_seconds=float(keep_seconds)), audio)


NODE_CLASS_MAPPINGS = {"AudioXInpaintMask": AudioXInpaintMask, "AudioXCompletionMask": AudioXCompletionMask}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
