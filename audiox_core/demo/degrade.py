"""Mild degradations used to check that the detectors survive what a VAE or a generator does.

All functions take and return float mono or multi-channel numpy arrays ``[..., N]`` and are
numpy (FFT-domain filtering; resampling through the library's resampler, no scipy).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..media.audio import resample as media_resample


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (float64): the library's one resampler,
    :func:`audiox_core.media.audio.resample` (torchaudio's windowed sinc), on numpy arrays.
    Output length is ``ceil(N * sr_out / sr_in)``."""
    x = np.asarray(x, dtype=np.float64)
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return x.copy()
    return media_resample(torch.from_numpy(x), int(sr_in), int(sr_out)).numpy()


def lowpass(x: np.ndarray, sr: int, cutoff: float = 4000.0, width: float = 0.15) -> np.ndarray:
    """Zero-phase low-pass: unity below ``cutoff*(1-width)``, raised-cosine to zero at ``cutoff``."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    spec = np.fft.rfft(x, axis=-1)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    lo = cutoff * (1 - width)
    g = np.where(f <= lo, 1.0, np.where(f >= cutoff, 0.0, 0.5 * (1 + np.cos(np.pi * (f - lo) / max(cutoff - lo, 1e-9)))))
    return np.fft.irfft(spec * g, n=n, axis=-1)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the mean power of the whole signal."""
    x = np.asarray(x, dtype=np.float64)
    p = float(np.mean(x * x))
    if p == 0:
        return x.copy()
    return x + rng.standard_normal(x.shape) * math.sqrt(p / 10 ** (snr_db / 10))


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) * 10 ** (db / 20)


def mulaw(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """Round-trip through ``bits``-bit mu-law (input clipped to [-1, 1])."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    levels = 2 ** bits
    q = np.round((y + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu


def resample_roundtrip(x: np.ndarray, sr: int, mid_sr: int = 8000) -> np.ndarray:
    y = resample(resample(x, sr, mid_sr), mid_sr, sr)
    n = np.asarray(x).shape[-1]
    if y.shape[-1] < n:
        y = np.concatenate([y, np.zeros(y.shape[:-1] + (n - y.shape[-1],))], axis=-1)
    return y[..., :n]


def degradations(sr: int) -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """The named degradations of the detector validation (each ``f(x, rng) -> y``)."""
    return {
        "clean": lambda x, rng: np.asarray(x, dtype=np.float64),
        "lowpass4k": lambda x, rng: lowpass(x, sr, 4000.0),
        "noise20dB": lambda x, rng: add_noise(x, 20.0, rng),
        "gain": lambda x, rng: gain(x, float(rng.uniform(-12.0, 3.0))),
        "mulaw8": lambda x, rng: mulaw(x, 8),
        "resample8k": lambda x, rng: resample_roundtrip(x, sr, 8000),
        "combo": lambda x, rng: mulaw(add_noise(lowpass(x, sr, 6000.0), 30.0, rng), 8),
    }


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 0.3, wet: float = 0.3) -> np.ndarray:
    """Add a diffuse tail: convolution with exponentially decaying noise (-60 dB after
    ``rt60`` s), mixed at ``wet`` of the dry signal's energy scale (output keeps the length)."""
    x = np.asarray(x, dtype=np.float64)
    n_ir = int(rt60 * sr)
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * 10 ** (-3 * t / rt60)
    ir /= np.sqrt(np.sum(ir ** 2))
    n = x.shape[-1]
    m = 1 << int(math.ceil(math.log2(n + n_ir)))
    tail = np.fft.irfft(np.fft.rfft(x, m, axis=-1) * np.fft.rfft(ir, m), m, axis=-1)[..., :n]
    return x + wet * tail


def phase_jitter(x: np.ndarray, rng: np.random.Generator, amount: float = 0.5, win: int = 512) -> np.ndarray:
    """STFT round trip (Hann, 75 % overlap) with each bin's phase perturbed uniformly by
    +-``amount`` radians: vocoder-like smearing."""
    x = np.asarray(x, dtype=np.float64)
    hop = win // 4
    w = np.hanning(win + 2)[1:-1]
    n = x.shape[-1]
    pad = np.concatenate([np.zeros(win), x, np.zeros(win)])
    starts = np.arange(0, len(pad) - win + 1, hop)
    spec = np.fft.rfft(pad[starts[:, None] + np.arange(win)[None, :]] * w, axis=1)
    spec *= np.exp(1j * rng.uniform(-amount, amount, size=spec.shape))
    frames = np.fft.irfft(spec, win, axis=1) * w
    out = np.zeros(len(pad))
    norm = np.zeros(len(pad))
    for s, f in zip(starts, frames):
        out[s:s + win] += f
        norm[s:s + win] += w * w
    return (out / np.maximum(norm, 1e-8))[win:win + n]


def stress_degradations(sr: int) -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """Harsher conditions than :func:`degradations`, for reporting margins (no accuracy target)."""
    return {
        "reverb0.3s": lambda x, rng: reverb(x, sr, rng, 0.3, 0.3),
        "noise10dB": lambda x, rng: add_noise(x, 10.0, rng),
        "lowpass2k": lambda x, rng: lowpass(x, sr, 2000.0),
        "phase0.5": lambda x, rng: phase_jitter(x, rng, 0.5),
        "mulaw6": lambda x, rng: mulaw(x, 6),
    }


def training_augmentations(sr: int) -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """What the detector classifiers are fitted on: the mild degradations plus randomised
    reverb (RT60 0.1-0.5 s, wet 0.1-0.4) and low-pass (2.5-6 kHz), so that features of smeared
    or band-limited generations stay in the range the classifier saw."""
    return {
        **degradations(sr),
        "reverb_rand": lambda x, rng: reverb(x, sr, rng, float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.1, 0.4))),
        "lowpass_rand": lambda x, rng: lowpass(x, sr, float(rng.uniform(2500.0, 6000.0))),
    }
