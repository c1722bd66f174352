"""What the frontend's audio workbench (web/audiox.js) gets from a node after it runs.

* :func:`audio_preview` writes each clip of an AUDIO batch as a 16-bit WAV into ComfyUI's temp
  folder (sub-folder ``audiox``) and returns the ``/view`` references the UI loads, in the same
  form core nodes use (``{"filename", "subfolder", "type": "temp"}``).
* :func:`regenerated_seconds` turns a sampler's latent keep-mask into the time ranges that were
  (partly) regenerated, so the preview can mark them.
* :func:`ui_event` sends a websocket message to the browser (``PromptServer.send_sync``), a no-op
  outside a running ComfyUI.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from typing import Optional

import torch

from ..audiox_core import media
from . import comfy_compat as cc

log = logging.getLogger(__name__)

PREVIEW_SUBFOLDER = "audiox"


def audio_preview(waveform: torch.Tensor, sample_rate: int, prefix: str) -> list[dict]:
    """Write ``waveform [B, C, T]`` as B WAV files in the temp folder; their ``/view`` references."""
    folder = os.path.join(cc.get_temp_directory(), PREVIEW_SUBFOLDER)
    os.makedirs(folder, exist_ok=True)
    stem = f"{prefix}_{uuid.uuid4().hex[:10]}"
    out = []
    w = waveform.detach().float().cpu()
    if w.dim() == 2:
        w = w.unsqueeze(0)
    for i in range(w.shape[0]):
        name = f"{stem}_{i}.wav"
        media.save_wav(os.path.join(folder, name), w[i].clamp(-1.0, 1.0), int(sample_rate))
        out.append({"filename": name, "subfolder": PREVIEW_SUBFOLDER, "type": "temp"})
    return out


def regenerated_seconds(keep: Optional[torch.Tensor], seconds_per_frame: float, seconds: float) -> list[list[float]]:
    """Ranges ``[[a, b], ...]`` (seconds, clipped to the clip) where the latent keep-mask ``keep``
    (1 keep … 0 regenerate per latent frame) is below 1, merged; [] without a mask."""
    if keep is None:
        return []
    k = keep.detach().float().reshape(-1).tolist()
    out: list[list[float]] = []
    for i, v in enumerate(k):
        if v >= 1.0 - 1e-6:
            continue
        a, b = i * seconds_per_frame, min((i + 1) * seconds_per_frame, seconds)
        if a >= seconds:
            break
        if out and abs(out[-1][1] - a) < 1e-9:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [[round(a, 4), round(b, 4)] for a, b in out]


def ui_event(event: str, data: dict) -> bool:
    """Send ``{"type": event, "data": data}`` to the browsers connected to ComfyUI
    (``PromptServer.instance.send_sync``).  False (and nothing sent) outside a running ComfyUI
    server; never raises."""
    server = sys.modules.get("server")  # ComfyUI's server module, imported by main.py before any pack
    ps = getattr(getattr(server, "PromptServer", None), "instance", None) if server is not None else None
    fn = getattr(ps, "send_sync", None)
    if fn is None:
        return False
    try:
        fn(event, data, getattr(ps, "client_id", None))
        return True
    except Exception as e:  # noqa: BLE001 - a UI nicety must never break the work
        log.debug("ui_event %s failed: %s", event, e)
        return False
