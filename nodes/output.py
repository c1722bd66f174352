"""Output helpers: put generated audio onto the input video, and draw a spectrogram.

* AudioX Video With Audio — a core VIDEO (for core Save Video) whose sound track is the generated
  audio, starting at the window's start in the source video.  A file-backed video (core Load
  Video) is remuxed without re-encoding when the cut is exact (else the segment is re-encoded);
  IMAGE frames + fps are cut to the audio's length.
* AudioX Spectrogram — an IMAGE of the audio (mel-scaled frequency, dB colour), for core Preview
  Image / Save Image.
"""
from __future__ import annotations

import os
import uuid

import torch

from ..audiox_core import media
from ..audiox_core.media.spectrogram import spectrogram_image
from . import comfy_compat
from .common import CATEGORY, about_input, check_audio_input, node_error, node_function


class AudioXVideoWithAudio:
    DISPLAY_NAME = "AudioX Video With Audio"
    DESCRIPTION = ("Puts generated audio onto the video it was made for (replacing its sound), from "
                   "start_seconds for the audio's length. Outputs a core VIDEO for Save Video. Takes core VIDEO or "
                   "IMAGE frames + fps.")
    CATEGORY = f"{CATEGORY}/output"
    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("The video segment with the new sound track.",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The generated audio (AudioX VAE Decode)."}),
                "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                            "tooltip": "Where the audio starts in the video (the Video Encoder's "
                                                       "start_seconds)."}),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 63, "step": 1,
                                        "tooltip": "Which clip of a batch to use."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.0, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the 'images' frames (ignored for a VIDEO)."}),
            },
            "optional": {
                "video": ("VIDEO", {"tooltip": "The source video (core Load Video)."}),
                "images": ("IMAGE", {"tooltip": "Source frames (IMAGE batch) at 'fps'."}),
            },
        }

    @node_function
    def combine(self, audio, start_seconds=0.0, batch_index=0, fps=25.0, video=None, images=None):
        node = self.DISPLAY_NAME
        wave, sr = check_audio_input(audio, node, "audio")
        if batch_index >= wave.shape[0]:
            raise node_error(node, "batch_index", f"is {batch_index} but the audio has {wave.shape[0]} clip(s)")
        clip = wave[batch_index].float().cpu()
        seconds = clip.shape[-1] / sr
        if (video is None) == (images is None):
            raise node_error(node, "video", "connect either a VIDEO to 'video' or IMAGE frames to 'images' "
                             "(exactly one)")
        start = float(start_seconds)
        frames, rate = images, float(fps)
        if video is not None:
            with about_input(node, "video"):
                kind, src, vrate = comfy_compat.video_source(video)
            if kind == "stream":
                out = os.path.join(comfy_compat.get_temp_directory(), "audiox",
                                   f"video_with_audio_{uuid.uuid4().hex[:12]}.mp4")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with about_input(node, "video"):
                    media.mux_audio_into_video(src, clip, sr, out, start=start, duration=seconds)
                return (comfy_compat.video_from_file(out),)
            frames, rate = src, float(vrate)
            name = "video"
        else:
            name = "images"
        if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[0] == 0:
            raise node_error(node, name, "has no frames")
        if not rate > 0:
            raise node_error(node, "fps", "must be > 0")
        n = frames.shape[0]
        first = int(round(start * rate))
        if first >= n:
            raise node_error(node, "start_seconds", f"{start:g} s is past the end of the {n / rate:.2f} s video")
        last = min(n, first + max(1, int(round(seconds * rate))))
        seg = frames[first:last]
        seg_seconds = seg.shape[0] / rate
        clip = clip[..., : int(round(min(seconds, seg_seconds) * sr))]
        with about_input(node, name):
            return (comfy_compat.make_video(seg, rate, {"waveform": clip.unsqueeze(0), "sample_rate": sr}),)


class AudioXSpectrogram:
    DISPLAY_NAME = "AudioX Spectrogram"
    DESCRIPTION = "Draws a spectrogram of audio (time → right, mel frequency ↑, level in dB as colour) as an IMAGE."
    CATEGORY = f"{CATEGORY}/output"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The spectrogram; each clip of a batch is one band, top to bottom.",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "Audio to draw."}),
            "width": ("INT", {"default": 768, "min": 64, "max": 4096, "step": 8, "tooltip": "Picture width (pixels)."}),
            "height": ("INT", {"default": 256, "min": 32, "max": 2048, "step": 8,
                               "tooltip": "Height per clip (pixels)."}),
            "db_range": ("FLOAT", {"default": 80.0, "min": 10.0, "max": 160.0, "step": 1.0,
                                   "tooltip": "Levels shown below the loudest point (dB)."}),
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
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
