"""Output nodes: AudioX Video With Audio (a core VIDEO whose sound track is the generated audio; a
file-backed video is remuxed without re-encoding when the cut is exact, else the segment is re-encoded;
IMAGE frames + fps are cut to the audio's length) and AudioX Spectrogram (an IMAGE of the audio).
"""
from __future__ import annotations

import os
import uuid

import torch

from ..audiox_core import media
from ..audiox_core.errors import FieldError
from ..audiox_core.media.spectrogram import spectrogram_image
from . import comfy_compat
from .common import (CATEGORY, about_input, check_audio_input, float_input, int_input, node_error, node_function,
                     outputs, socket_input)


class AudioXVideoWithAudio:
    DISPLAY_NAME = "AudioX Video With Audio"
    DESCRIPTION = ("Puts generated audio onto the video it was made for (replacing its sound), from "
                   "start_seconds for the audio's length. Outputs a core VIDEO for Save Video. Takes core VIDEO or "
                   "IMAGE frames + fps.")
    CATEGORY = f"{CATEGORY}/output"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("VIDEO", "video", "The video segment with the new sound track."))
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": socket_input("AUDIO", "The generated audio (AudioX VAE Decode)."),
                             "start_seconds": float_input(0.0, 0.0, 86400.0, 0.1, "Where the audio starts in the "
                                                          "video (the Video Encoder's start_seconds)."),
                             "batch_index": int_input(0, 0, 63, "Which clip of a batch to use.", step=1),
                             "fps": float_input(25.0, 0.0, 240.0, 0.001, "Frame rate of the 'images' frames "
                                                "(ignored for a VIDEO).")},
                "optional": {"video": socket_input("VIDEO", "The source video (core Load Video)."),
                             "images": socket_input("IMAGE", "Source frames (IMAGE batch) at 'fps'.")}}

    @node_function
    def combine(self, audio, start_seconds=0.0, batch_index=0, fps=25.0, video=None, images=None):
        node = self.DISPLAY_NAME
        wave, sr = check_audio_input(audio, node, "audio")
        if batch_index >= wave.shape[0]:
            raise node_error(node, "batch_index", f"is {batch_index} but the audio has {wave.shape[0]} clip(s)")
        clip = wave[batch_index].float().cpu()
        if (video is None) == (images is None):
            raise node_error(node, "video", "connect either a VIDEO to 'video' or IMAGE frames to 'images' "
                             "(exactly one)")
        frames, rate, frames_input = images, float(fps), "images"
        if video is not None:
            with about_input(node, "video"):
                kind, source, video_rate = comfy_compat.video_source(video)
            if kind == "stream":
                return (self._remux(source, clip, sr, float(start_seconds)),)
            frames, rate, frames_input = source, float(video_rate), "video"
        try:
            segment, clip = media.frames_under_audio(frames, rate, float(start_seconds), clip, sr)
        except FieldError as e:  # the core's names of the frames and the start
            raise node_error(node, {"frames": frames_input, "start": "start_seconds"}.get(e.field, e.field), str(e))
        with about_input(node, frames_input):
            return (comfy_compat.make_video(segment, rate, {"waveform": clip.unsqueeze(0), "sample_rate": sr}),)

    def _remux(self, source, clip: torch.Tensor, sample_rate: int, start: float):
        out = os.path.join(comfy_compat.get_temp_directory(), "audiox", f"video_with_audio_{uuid.uuid4().hex[:12]}.mp4")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        seconds = clip.shape[-1] / sample_rate
        with about_input(self.DISPLAY_NAME, "video"):
            media.mux_audio_into_video(source, clip, sample_rate, out, start=start, duration=seconds)
        return comfy_compat.video_from_file(out)


class AudioXSpectrogram:
    DISPLAY_NAME = "AudioX Spectrogram"
    DESCRIPTION = "Draws a spectrogram of audio (time → right, mel frequency ↑, level in dB as colour) as an IMAGE."
    CATEGORY = f"{CATEGORY}/output"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("IMAGE", "image", "The spectrogram; each clip of a batch is one band, top to bottom."))
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": socket_input("AUDIO", "Audio to draw."),
            "width": int_input(768, 64, 4096, "Picture width (pixels).", step=8),
            "height": int_input(256, 32, 2048, "Height per clip (pixels).", step=8),
            "db_range": float_input(80.0, 10.0, 160.0, 1.0, "Levels shown below the loudest point (dB)."),
        }}

    @node_function
    def draw(self, audio, width=768, height=256, db_range=80.0):
        node = self.DISPLAY_NAME
        wave, sr = check_audio_input(audio, node, "audio")
        with about_input(node, "audio"):
            img = spectrogram_image(wave, sr, width=int(width), height=int(height), db_range=float(db_range))
        t = torch.from_numpy(img).float().div(255.0).unsqueeze(0)
        return (t.to(comfy_compat.intermediate_device()),)


NODE_CLASS_MAPPINGS = {"AudioXVideoWithAudio": AudioXVideoWithAudio, "AudioXSpectrogram": AudioXSpectrogram}
