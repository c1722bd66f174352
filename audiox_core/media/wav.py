"""WAV writing without soundfile/torchaudio (stdlib ``wave`` for PCM, a hand-written header for float)."""
from __future__ import annotations

import os
import struct
import wave
from typing import Union

import numpy as np
import torch

from ..errors import InputError
from ..finite import all_finite
from ..fileio import atomic_write
from .audio import _as_rate

__all__ = ["save_wav"]

_WAVE_FORMAT_IEEE_FLOAT = 3


def _as_cn(waveform, what: str) -> torch.Tensor:
    x = torch.as_tensor(waveform)
    if x.dim() == 1:
        x = x[None]
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(f"{what}: expected a waveform [C, N] (or [1, C, N]), got shape {tuple(x.shape)}")
    if x.shape[0] > 64:
        raise InputError(f"{what}: {x.shape[0]} channels; did you pass [N, C] instead of [C, N]?")
    return x


def save_wav(
    path: Union[str, "os.PathLike[str]"], waveform: torch.Tensor, sample_rate: int, *, subtype: str = "PCM_16"
) -> None:
    """Write ``waveform [C, N]`` (float, nominally [-1, 1]) as a RIFF/WAVE file.

    ``subtype``:
        ``"PCM_16"``/``"PCM_24"``: integers ``round(x · 2^(b-1))`` clipped to the type's range
        (so what :func:`load_audio` read from int PCM is written back bit-exactly), via the
        stdlib ``wave`` module;
        ``"FLOAT"``: 32-bit IEEE float (format tag 3, with a ``fact`` chunk), values unclipped —
        what the official ``torchaudio.save`` of a float tensor produces.
    Non-finite samples are refused.  The file is written atomically (complete or absent) into an
    existing folder; a write failure raises :class:`~audiox_core.errors.SaveError` naming it.
    """
    name = os.fspath(path)
    x = _as_cn(waveform, name).detach().to("cpu", torch.float64)
    sr = _as_rate(sample_rate, "sample_rate")
    if not all_finite(x):
        raise InputError(f"{name}: waveform contains NaN or Inf samples; refusing to write it")
    c, n = x.shape
    inter = x.T.contiguous().numpy()  # [N, C] interleaved
    if subtype in ("PCM_16", "PCM_24"):
        bits = 16 if subtype == "PCM_16" else 24
        full = 2 ** (bits - 1)
        q = np.clip(np.round(inter * full), -full, full - 1).astype("<i4")
        if bits == 16:
            data = q.astype("<i2").tobytes()
        else:
            data = q.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        with atomic_write(name, what="WAV file", make_dirs=False) as fh, wave.open(fh, "wb") as w:
            w.setnchannels(c)
            w.setsampwidth(bits // 8)
            w.setframerate(sr)
            w.writeframes(data)
        return
    if subtype != "FLOAT":
        raise InputError(f"subtype must be 'PCM_16', 'PCM_24' or 'FLOAT', got {subtype!r}")
    data = inter.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_IEEE_FLOAT, c, sr, sr * c * 4, c * 4, 32, 0)
    fact = struct.pack("<I", n)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
    body += b"data" + struct.pack("<I", len(data)) + data
    with atomic_write(name, what="WAV file", make_dirs=False) as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def save_wav_clips(folder: Union[str, "os.PathLike[str]"], stem: str, waveform: torch.Tensor,
                   sample_rate: int) -> list[str]:
    """Write each clip of ``waveform [B, C, N]`` (or one ``[C, N]``), clamped to [-1, 1], as 16-bit
    ``<folder>/<stem>_<i>.wav`` (the folder is created); the file names, in batch order."""
    os.makedirs(folder, exist_ok=True)
    clips = waveform.detach().float().cpu()
    clips = clips.unsqueeze(0) if clips.dim() == 2 else clips
    names = []
    for index in range(clips.shape[0]):
        names.append(f"{stem}_{index}.wav")
        save_wav(os.path.join(folder, names[-1]), clips[index].clamp(-1.0, 1.0), int(sample_rate))
    return names
