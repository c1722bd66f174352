"""What the frontend's audio workbench (web/audiox.js) gets from a node after it runs.

* :func:`audio_preview` writes each clip of an AUDIO batch as a 16-bit WAV into ComfyUI's temp
  folder (sub-folder ``audiox``) and returns the ``/view`` references the UI loads, in the same
  form core nodes use (``{"filename", "subfolder", "type": "temp"}``).
* :func:`regenerated_seconds` (``audiox_core.generate``) turns a sampler's latent keep-mask into
  the time ranges that were (partly) regenerated, so the preview can mark them.
* :func:`ui_event` (``comfy_compat``) sends a websocket message to the browser, a no-op outside a
  running ComfyUI.
"""
from __future__ import annotations

import os
import uuid

import torch

from ..audiox_core.generate import regenerated_seconds  # noqa: F401 (re-exported for the nodes)
from ..audiox_core.media.wav import save_wav_clips
from . import comfy_compat
from .comfy_compat import ui_event  # noqa: F401 (re-exported for the nodes)

PREVIEW_SUBFOLDER = "audiox"


def audio_preview(waveform: torch.Tensor, sample_rate: int, prefix: str) -> list[dict]:
    """Write ``waveform [B, C, T]`` as B WAV files in the temp folder; their ``/view`` references."""
    folder = os.path.join(comfy_compat.get_temp_directory(), PREVIEW_SUBFOLDER)
    names = save_wav_clips(folder, f"{prefix}_{uuid.uuid4().hex[:10]}", waveform, sample_rate)
    return [{"filename": name, "subfolder": PREVIEW_SUBFOLDER, "type": "temp"} for name in names]
