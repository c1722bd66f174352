"""Spectrogram pictures of audio (numpy/torch only: no matplotlib, no PIL).

:func:`spectrogram_image` turns a waveform into an RGB picture: time left to right, frequency
bottom to top on the mel scale, level in dB mapped through a dark-to-bright colour ramp.
:func:`write_png` writes any ``uint8 [H, W, 3]`` picture as a PNG file with ``zlib`` only.

The picture (for ``B`` items, stacked top to bottom with a 2-pixel gap)::

    S[f, t]  = |STFT(mean over channels of x)|            Hann window n_fft, hop = N / width
    dB       = 20·log10(max(S, 1e-5)), clipped to [max(dB) - db_range, max(dB)]
    row y    ← the STFT bin at mel⁻¹(mel(sr/2)·(1 - y/(H-1))), linear interpolation between bins
    colour   = ramp((dB - lo) / db_range)
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np
import torch

from ..errors import InputError

# anchor colours of the ramp (position, R, G, B): black, deep blue-violet, crimson, orange, pale yellow
_RAMP = np.array([
    (0.00, 0, 0, 4),
    (0.25, 60, 15, 110),
    (0.50, 165, 40, 90),
    (0.75, 245, 120, 30),
    (1.00, 252, 250, 190),
], dtype=np.float64)


def _ramp(v: np.ndarray) -> np.ndarray:
    """``v`` in 0..1 (any shape) → uint8 RGB (shape + (3,)) by piecewise-linear interpolation."""
    v = np.clip(v, 0.0, 1.0)
    out = np.empty(v.shape + (3,), dtype=np.float64)
    for c in range(3):
        out[..., c] = np.interp(v, _RAMP[:, 0], _RAMP[:, c + 1])
    return np.round(out).astype(np.uint8)


def hz_to_mel(f):
    """The HTK mel scale, ``2595 log10(1 + f / 700)``: a Python float gives a float (``math.log10``),
    anything else a float64 numpy array (``np.log10``).  The one mel scale of the package (the
    spectrogram's rows, the audio-prompt filterbank)."""
    if isinstance(f, (int, float)) and not isinstance(f, np.generic):
        return 2595.0 * math.log10(1.0 + f / 700.0)
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`, ``700 (10^(m / 2595) - 1)``, computed in ``m``'s own type (a
    float, a numpy array or a torch tensor keep their dtype); lists become float64 arrays."""
    if isinstance(m, (list, tuple)):
        m = np.asarray(m, dtype=np.float64)
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _one(x: torch.Tensor, sr: int, width: int, height: int, db_range: float) -> np.ndarray:
    mono = x.to(torch.float32).mean(dim=0)
    n = mono.shape[-1]
    n_fft = max(64, 2 ** int(round(math.log2(max(sr * 0.046, 64)))))  # ~46 ms
    hop = max(1, n // width)
    if n < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - n))
    spec = torch.stft(mono, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      return_complex=True).abs().numpy()  # [F, T]
    db = 20.0 * np.log10(np.maximum(spec, 1e-5))
    hi = float(db.max())
    lo = hi - db_range
    # frequency axis: mel rows, top row = Nyquist
    mel_top = hz_to_mel(np.asarray(sr / 2.0, dtype=np.float64))
    row_hz = mel_to_hz(mel_top * (1.0 - np.arange(height) / max(height - 1, 1)))
    rows = _lerp_rows(db, row_hz / (sr / 2.0) * (spec.shape[0] - 1))  # [H, T]
    # time axis: resample columns to the width
    pic = _lerp_rows(rows.T, np.linspace(0, rows.shape[1] - 1, width)).T  # [H, W]
    return _ramp((pic - lo) / max(db_range, 1e-6))


def _lerp_rows(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Rows of ``a`` at fractional row positions ``pos`` (linear interpolation, clamped)."""
    pos = np.clip(pos, 0, a.shape[0] - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, a.shape[0] - 1)
    w = (pos - i0)[:, None]
    return a[i0] * (1.0 - w) + a[i1] * w


def spectrogram_image(waveform: torch.Tensor, sample_rate: int, *, width: int = 768, height: int = 256,
                      db_range: float = 80.0) -> np.ndarray:
    """``uint8 [H_total, width, 3]`` picture of ``waveform`` (``[N]``, ``[C, N]`` or ``[B, C, N]``).

    Each batch item gets ``height`` rows; items are stacked with a 2-pixel black gap.
    """
    if not torch.is_tensor(waveform) or waveform.dim() not in (1, 2, 3) or waveform.shape[-1] == 0:
        raise InputError(f"spectrogram: expected a non-empty [N], [C, N] or [B, C, N] waveform, got "
                         f"{tuple(waveform.shape) if torch.is_tensor(waveform) else type(waveform).__name__}")
    if int(sample_rate) <= 0:
        raise InputError(f"spectrogram: sample_rate must be positive, got {sample_rate}")
    if not (16 <= int(width) <= 8192 and 16 <= int(height) <= 4096):
        raise InputError(f"spectrogram: size {width}x{height} is outside 16..8192 x 16..4096")
    if not db_range > 0:
        raise InputError(f"spectrogram: db_range must be > 0, got {db_range}")
    x = waveform.detach().cpu()
    if x.dim() == 1:
        x = x[None, None]
    elif x.dim() == 2:
        x = x[None]
    x = torch.nan_to_num(x)
    parts = []
    for b in range(x.shape[0]):
        if b:
            parts.append(np.zeros((2, int(width), 3), dtype=np.uint8))
        parts.append(_one(x[b], int(sample_rate), int(width), int(height), float(db_range)))
    return np.concatenate(parts, axis=0)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: Union[str, Path], image: np.ndarray) -> Path:
    """Write ``uint8 [H, W, 3]`` (or a float array in 0..1) as an 8-bit RGB PNG."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"write_png: expected an [H, W, 3] image, got shape {img.shape}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))  # filter type 0 per row
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
