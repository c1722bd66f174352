"""Stand-ins for the ComfyUI core nodes the example graphs use, for running graphs without ComfyUI.

Same node ids, INPUT_TYPES and RETURN_TYPES as ComfyUI 0.3.64 (the integration test compares them
with a live server), small PyAV/numpy implementations.  They read inputs from and write outputs to
the directories of the active :class:`Env` (``set_env``): the headless runner
(runner/headless.py) writes WAV / MP4 / PNG files there; the tests install an Env that records
what the sinks receive instead.  The sinks check what they receive (a valid AUDIO dict on the CPU,
IMAGE in 0..1, ...) and raise ``ValueError`` with the node named otherwise.

This module imports nothing of ComfyUI or of the node pack, only ``audiox_core``.  The VIDEO values
(``VideoFromFile``, ``VideoFromComponents``) are :mod:`audiox_core.media.video_value`'s, shared with
the node pack's fallbacks.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from audiox_core import fileio, media
from audiox_core.media import spectrogram
from audiox_core.media.video_value import (VideoComponents, VideoFromComponents, VideoFromFile, decode_audio,
                                           decode_frames)

AUDIO_EXTS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
VIDEO_EXTS = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# input widgets whose file names refer to files in the input directory
MEDIA_INPUTS = {"LoadAudio": "audio", "LoadVideo": "file", "LoadImage": "image"}


# =============================================================================================
# environment
# =============================================================================================
@dataclass
class Env:
    """Directories and the output hook of the stand-ins.

    ``on_output(node_id, class_type, kind, value)`` is called by every sink (kind ``audio`` /
    ``video`` / ``image`` / ``lora`` / ``loss``); with ``write_files`` the sinks also write their
    files under ``output_dir`` (``temp_dir`` for previews) and list them in ``written``.
    """

    input_dir: Path
    output_dir: Path
    temp_dir: Optional[Path] = None
    write_files: bool = True
    on_output: Optional[Callable[[str, str, str, Any], None]] = None
    written: list = field(default_factory=list)

    def list_inputs(self, kinds: list[str]) -> list[str]:
        d = Path(self.input_dir)
        if not d.is_dir():
            return []
        return sorted(f for f in os.listdir(d) if media_kind(f) in kinds)

    def input_path(self, name: str) -> Path:
        """The input file ``name`` (``… [output]`` / ``[temp]`` pick those folders, as ComfyUI does),
        refused when it leads outside its folder (symlinks resolved)."""
        inside = fileio.resolve_inside
        for suffix, d in ((" [output]", self.output_dir), (" [input]", self.input_dir),
                          (" [temp]", self.temp_dir or self.output_dir)):
            if name.endswith(suffix):
                return inside(name[: -len(suffix)], [d], what=f"input file {name!r}", must_exist=False)
        return inside(name, [self.input_dir], what=f"input file {name!r}", must_exist=False)

    def out_path(self, prefix: str, unique_id, ext: str, temp: bool = False) -> Path:
        """Where a sink writes: inside the output (or temp) folder, or refused."""
        base = Path(self.temp_dir or self.output_dir) if temp else Path(self.output_dir)
        stem = f"{prefix}_{unique_id}" if unique_id is not None else prefix
        p = fileio.resolve_inside(f"{stem}{ext}", [base], what=f"filename_prefix {prefix!r}",
                                           must_exist=False)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def emit(self, unique_id, class_type: str, kind: str, value: Any) -> None:
        if self.on_output is not None:
            self.on_output(str(unique_id), class_type, kind, value)


_ENV: Optional[Env] = None


def set_env(env: Optional[Env]) -> Optional[Env]:
    """Install ``env`` for the stand-ins; returns the previous one."""
    global _ENV
    prev, _ENV = _ENV, env
    return prev


def current_env() -> Env:
    if _ENV is None:
        raise RuntimeError("no stand-in environment is active (runner.standins.set_env)")
    return _ENV


def media_kind(name: str) -> Optional[str]:
    ext = os.path.splitext(name)[1].lower()
    return "audio" if ext in AUDIO_EXTS else "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None


# =============================================================================================
# contract checks applied by the sinks
# =============================================================================================
def check_audio(audio: Any, where: str) -> None:
    """Raise ValueError unless ``audio`` is a valid ComfyUI AUDIO dict."""
    def need(ok, msg):
        if not ok:
            raise ValueError(f"{where}: {msg}")
    need(isinstance(audio, dict), f"AUDIO must be a dict, got {type(audio).__name__}")
    need(set(audio) >= {"waveform", "sample_rate"}, f"AUDIO keys {sorted(audio)}")
    w, sr = audio["waveform"], audio["sample_rate"]
    need(isinstance(w, torch.Tensor) and w.ndim == 3, f"waveform must be a [B, C, T] tensor, got {getattr(w, 'shape', w)}")
    need(w.is_floating_point(), f"waveform must be float, got {w.dtype}")
    need(w.shape[0] >= 1 and w.shape[1] in (1, 2) and w.shape[2] > 0, f"waveform shape {tuple(w.shape)}")
    need(w.device.type == "cpu", f"AUDIO waveform must be on the CPU (intermediate device), got {w.device}")
    need(isinstance(sr, int) and not isinstance(sr, bool) and sr > 0, f"sample_rate must be a positive int, got {sr!r}")
    need(bool(torch.isfinite(w).all()), "waveform has NaN/inf")


def check_image(images: Any, where: str) -> None:
    if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[-1] == 3):
        raise ValueError(f"{where}: IMAGE must be [N, H, W, 3], got {getattr(images, 'shape', images)}")
    if not (images.is_floating_point() and float(images.min()) >= 0.0 and float(images.max()) <= 1.0):
        raise ValueError(f"{where}: IMAGE values must be floats in 0..1")


# =============================================================================================
# the stand-in nodes (signatures of ComfyUI 0.3.64)
# =============================================================================================
_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}


def _input_files(kinds: list[str]) -> list[str]:
    return current_env().list_inputs(kinds) if _ENV is not None else []


def _require_input(name: str, what: str):
    if not current_env().input_path(name).is_file():
        return f"Invalid {what} file: {name}"
    return True


class LoadAudio:
    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": (_input_files(["audio", "video"]), {"audio_upload": True})}}

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        return _require_input(audio, "audio")

    def load(self, audio):
        wav, sr = decode_audio(str(current_env().input_path(audio)))
        return ({"waveform": wav.unsqueeze(0), "sample_rate": sr},)


class _AudioSink:
    CATEGORY = "audio"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    TEMP = False

    def save(self, audio, filename_prefix="audio/ComfyUI", prompt=None, extra_pnginfo=None, unique_id=None):
        name = type(self).__name__
        check_audio(audio, f"{name} (node {unique_id})")
        env = current_env()
        env.emit(unique_id, name, "audio", audio)
        items = []
        if env.write_files:
            w, sr = audio["waveform"], audio["sample_rate"]
            for b in range(w.shape[0]):
                suffix = f"_{b}" if w.shape[0] > 1 else ""
                p = env.out_path(f"{filename_prefix}{suffix}", unique_id, ".wav", temp=self.TEMP)
                media.save_wav(p, w[b], sr)
                env.written.append(p)
                items.append({"filename": p.name, "subfolder": "", "type": "temp" if self.TEMP else "output"})
        else:
            items.append({"filename": f"{filename_prefix}_{unique_id}.flac", "subfolder": "", "type": "output"})
        return {"ui": {"audio": items}}


class SaveAudio(_AudioSink):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "filename_prefix": ("STRING", {"default": "audio/ComfyUI"})},
                "hidden": dict(_HIDDEN)}


class PreviewAudio(_AudioSink):
    TEMP = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",)}, "hidden": dict(_HIDDEN)}

    def save(self, audio, prompt=None, extra_pnginfo=None, unique_id=None):
        return super().save(audio, "preview", prompt, extra_pnginfo, unique_id)


class LoadVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": ("COMBO", {"multiselect": False, "options": _input_files(["video"]),
                                                "video_upload": True})}}

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        return _require_input(file, "video")

    def execute(self, file):
        return (VideoFromFile(str(current_env().input_path(file))),)


class CreateVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                "optional": {"audio": ("AUDIO",)}}

    def execute(self, images, fps, audio=None):
        check_image(images, "CreateVideo")
        if audio is not None:
            check_audio(audio, "CreateVideo")
        return (VideoFromComponents(VideoComponents(images, Fraction(fps), audio)),)


class GetVideoComponents:
    CATEGORY = "image/video"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",)}}

    def execute(self, video):
        c = video.get_components()
        return (c.images, c.audio, float(c.frame_rate))


class SaveVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",), "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                             "format": ("COMBO", {"default": "auto", "options": ["auto", "mp4"]}),
                             "codec": ("COMBO", {"default": "auto", "options": ["auto", "h264"]})},
                "hidden": dict(_HIDDEN)}

    def execute(self, video, filename_prefix, format, codec, prompt=None, extra_pnginfo=None, unique_id=None):
        c = video.get_components()
        check_image(c.images, f"SaveVideo (node {unique_id})")
        if c.audio is not None:
            check_audio(c.audio, f"SaveVideo (node {unique_id}) audio")
        env = current_env()
        env.emit(unique_id, "SaveVideo", "video", c)
        name = f"{filename_prefix}_{unique_id}.mp4"
        if env.write_files:
            p = env.out_path(filename_prefix, unique_id, ".mp4")
            a = c.audio
            media.write_video(c.images, c.frame_rate, p, audio=None if a is None else a["waveform"][0],
                                 sr=None if a is None else a["sample_rate"])
            env.written.append(p)
            name = p.name
        return {"ui": {"images": [{"filename": name, "subfolder": "", "type": "output"}], "animated": (True,)}}


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_files(["image"]), {"image_upload": True})}}

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return _require_input(image, "image")

    def load_image(self, image):
        frames, _ = decode_frames(str(current_env().input_path(image)))
        img = frames[:1]
        return (img, torch.zeros(1, img.shape[1], img.shape[2]))


class _ImageSink:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    TEMP = False

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None, unique_id=None):
        name = type(self).__name__
        check_image(images, f"{name} (node {unique_id})")
        env = current_env()
        env.emit(unique_id, name, "image", images)
        items = []
        if env.write_files:
            for b in range(images.shape[0]):
                suffix = f"_{b}" if images.shape[0] > 1 else ""
                p = env.out_path(f"{filename_prefix}{suffix}", unique_id, ".png", temp=self.TEMP)
                spectrogram.write_png(p, images[b].detach().cpu().numpy())
                env.written.append(p)
                items.append({"filename": p.name, "subfolder": "", "type": "temp" if self.TEMP else "output"})
        else:
            items.append({"filename": f"{filename_prefix}_{unique_id}.png", "subfolder": "", "type": "output"})
        return {"ui": {"images": items}}


class SaveImage(_ImageSink):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": dict(_HIDDEN)}


class PreviewImage(_ImageSink):
    TEMP = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": dict(_HIDDEN)}

    def save_images(self, images, prompt=None, extra_pnginfo=None, unique_id=None):
        return super().save_images(images, "preview", prompt, extra_pnginfo, unique_id)


class SaveLoRANode:
    CATEGORY = "loaders"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora": ("LORA_MODEL",), "prefix": ("STRING", {"default": "loras/ComfyUI_trained_lora"})},
                "optional": {"steps": ("INT", {"forceInput": True})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def save(self, lora, prefix, steps=None, unique_id=None):
        if not (isinstance(lora, dict) and lora and all(isinstance(v, torch.Tensor) for v in lora.values())):
            raise ValueError("SaveLoRANode: LORA_MODEL must be a non-empty dict of tensors")
        env = current_env()
        env.emit(unique_id, "SaveLoRANode", "lora", {"lora": lora, "steps": steps})
        if env.write_files:
            from safetensors.torch import save_file
            p = env.out_path(f"{prefix}_{steps or 0}_steps", unique_id, ".safetensors")
            save_file({k: v.detach().contiguous().cpu() for k, v in lora.items()}, str(p))
            env.written.append(p)
        return {}


class LossGraphNode:
    CATEGORY = "training"
    RETURN_TYPES = ()
    FUNCTION = "plot_loss"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"loss": ("LOSS_MAP", {"default": {}}), "filename_prefix": ("STRING", {"default": "loss_graph"})},
                "hidden": dict(_HIDDEN)}

    def plot_loss(self, loss, filename_prefix, prompt=None, extra_pnginfo=None, unique_id=None):
        values = loss.get("loss") if isinstance(loss, dict) else None
        if not (isinstance(values, list) and values and all(math.isfinite(float(v)) for v in values)):
            raise ValueError("LossGraphNode: LOSS_MAP must be {'loss': [finite floats]}")
        current_env().emit(unique_id, "LossGraphNode", "loss", values)
        return {"ui": {"images": []}}


def _primitive(type_name: str, options: dict):
    class Primitive:
        CATEGORY = "utils/primitive"
        RETURN_TYPES = (type_name,)
        FUNCTION = "execute"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": (type_name, dict(options))}}

        def execute(self, value):
            return (value,)

    return Primitive


_BIG = 9223372036854775807
CORE_NODES: dict[str, type] = {
    "LoadAudio": LoadAudio, "SaveAudio": SaveAudio, "PreviewAudio": PreviewAudio,
    "LoadVideo": LoadVideo, "CreateVideo": CreateVideo, "GetVideoComponents": GetVideoComponents,
    "SaveVideo": SaveVideo, "LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage,
    "SaveLoRANode": SaveLoRANode, "LossGraphNode": LossGraphNode,
    "PrimitiveInt": _primitive("INT", {"min": -_BIG, "max": _BIG, "control_after_generate": True}),
    "PrimitiveFloat": _primitive("FLOAT", {"min": -_BIG, "max": _BIG}),
    "PrimitiveString": _primitive("STRING", {"multiline": False}),
    "PrimitiveStringMultiline": _primitive("STRING", {"multiline": True}),
    "PrimitiveBoolean": _primitive("BOOLEAN", {}),
}
