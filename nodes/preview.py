"""What the frontend's audio workbench (web/audiox.js) gets from a node after it runs: WAV previews
in ComfyUI's temp folder (:func:`audio_preview`), the regenerated time ranges of a sampler's keep-mask
(:func:`regenerated_seconds`) and websocket messages (:func:`ui_event`, a no-op outside ComfyUI)."""
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
    """Write ``waveform [B, C, T]`` as B 16-bit WAV files in the temp folder (sub-folder ``audiox``);
    their ``/view`` references, as core nodes give them (``{"filename", "subfolder", "type": "temp"}``)."""
    folder = os.path.join(comfy_compat.get_temp_directory(), PREVIEW_SUBFOLDER)
    names = save_wav_clips(folder, f"{prefix}_{uuid.uuid4().hex[:10]}", waveform, sample_rate)
    return [{"filename": name, "subfolder": PREVIEW_SUBFOLDER, "type": "temp"} for name in names]
