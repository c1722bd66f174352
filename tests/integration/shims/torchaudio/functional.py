"""``resample`` for the test-only torchaudio shim (see the package docstring).

Polyphase resampling with scipy's ``resample_poly`` (a Kaiser-windowed FIR low-pass), along the
last axis.  It is not bit-identical to torchaudio's sinc-interpolation kernel; that is fine for a
test server, which only needs rates and lengths right and the signal band-limited.
"""
from __future__ import annotations

from math import gcd

import torch


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, **_ignored) -> torch.Tensor:
    """Resample ``waveform`` ``[..., T]`` from ``orig_freq`` to ``new_freq`` Hz.

    The output has ``ceil(T * new_freq / orig_freq)`` samples, like torchaudio's.
    """
    from scipy.signal import resample_poly

    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return waveform
    g = gcd(orig_freq, new_freq)
    up, down = new_freq // g, orig_freq // g
    data = waveform.detach().to("cpu", torch.float64).numpy()
    out = resample_poly(data, up, down, axis=-1)
    return torch.from_numpy(out.copy()).to(device=waveform.device, dtype=waveform.dtype)
