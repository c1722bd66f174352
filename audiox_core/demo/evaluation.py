"""Measure audio against the demo world's ground truth with the signal detectors.

* :func:`detector_rates` — run :func:`~.detectors.evaluate_event_clip` /
  :func:`~.detectors.evaluate_music_clip` on ``(audio, spec)`` pairs and average every metric.
* :func:`vae_roundtrip_report` — the same on clean renders and on their VAE round trips
  (held-out ``test`` scenes), plus SNR / log-spectral distance / multi-resolution STFT distance:
  a VAE is good enough when the round trips keep the detector accuracy of the clean renders.
* :func:`latent_probe_report` — whether a VAE's *latents* still tell apart two event categories
  (beep/buzz, bell/drum): a small convolutional probe trained on the latent frames of isolated
  events, tested on held-out ones; the same probe on a log spectrogram at the latent frame rate is
  the reference.  A probe at chance means no decoder can render the difference.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from . import detectors
from .world import DEFAULT_CONFIG, SceneSpec, WorldConfig, make_dataset, render_audio
from .validation import EVENT_METRICS, MUSIC_METRICS

__all__ = ["detector_rates", "vae_roundtrip_report", "heldout_specs", "latent_probe_report", "PROBE_PAIRS"]


def detector_rates(pairs: Iterable[tuple[Any, int, SceneSpec]], world: WorldConfig = DEFAULT_CONFIG
                   ) -> dict[str, float]:
    """``{"event/<metric>": rate, "music/<metric>": rate, "n_event", "n_music"}`` over
    ``(audio, sample_rate, spec)`` triples (metrics of :mod:`.validation`; ``note_pitch_acc`` is
    averaged, every other metric is a success rate)."""
    rows: dict[str, list[float]] = {}
    n = {"event": 0, "music": 0}
    for audio, sr, spec in pairs:
        if spec.kind == "event":
            r = detectors.evaluate_event_clip(audio, sr, spec, cfg=world)
            keys = EVENT_METRICS
        else:
            r = detectors.evaluate_music_clip(audio, sr, spec, cfg=world)
            keys = MUSIC_METRICS
        n[spec.kind] += 1
        for k in keys:
            rows.setdefault(f"{spec.kind}/{k}", []).append(float(r[k]))
    out = {k: float(np.mean(v)) for k, v in sorted(rows.items())}
    out.update(n_event=n["event"], n_music=n["music"])
    return out


def heldout_specs(n_event: int, n_music: int, seed: int, world: WorldConfig = DEFAULT_CONFIG
                  ) -> list[SceneSpec]:
    """Scenes of the held-out ``test`` split (attribute combinations never trained on)."""
    return (make_dataset(n_event, seed, "test", world, kind="event")
            + make_dataset(n_music, seed, "test", world, kind="music"))


@torch.no_grad()
def vae_roundtrip_report(pretransform, *, n_event: int = 40, n_music: int = 40, seed: int = 4242,
                         world: WorldConfig = DEFAULT_CONFIG, specs: Optional[Sequence[SceneSpec]] = None,
                         batch: int = 8) -> dict[str, Any]:
    """Detector accuracy on clean renders vs their VAE round trips (posterior mean decoded).

    Returns ``{"clean": rates, "vae": rates, "delta": vae − clean per metric, "snr_db",
    "lsd_db", "mrstft", "n", "seconds"}`` (signal metrics averaged over clips).
    """
    from ..training.vae import reconstruction_metrics

    t0 = time.perf_counter()
    specs = list(specs) if specs is not None else heldout_specs(n_event, n_music, seed, world)
    sr = world.sample_rate
    clean, recon, snr, lsd, mr = [], [], [], [], []
    ch = pretransform.io_channels
    for s in range(0, len(specs), batch):
        part = specs[s:s + batch]
        x = torch.stack([torch.from_numpy(render_audio(sp, cfg=world)).expand(ch, -1) for sp in part]).float()
        m = reconstruction_metrics(pretransform, x)
        for i, sp in enumerate(part):
            clean.append((x[i, 0].numpy(), sr, sp))
            recon.append((m["recon"][i].numpy(), sr, sp))
        snr += m["snr_db_items"]
        lsd.append(m["lsd_db"] * len(part))
        mr.append(m["mrstft"] * len(part))
    rc, rv = detector_rates(clean, world), detector_rates(recon, world)
    delta = {k: rv[k] - rc[k] for k in rc if not k.startswith("n_")}
    return {"clean": rc, "vae": rv, "delta": delta, "snr_db": float(np.mean(snr)), "lsd_db": sum(lsd) / len(specs),
            "mrstft": sum(mr) / len(specs), "n": len(specs), "seconds": time.perf_counter() - t0}


PROBE_PAIRS: tuple = (("beep", "buzz"), ("bell", "drum"))


def _probe_clips(pair: Sequence[str], n_per_class: int, seed: int, world: WorldConfig, length: int):
    """Isolated events of the two categories (pitch classes in turn, onset uniform in 0.3–1.2 s) in
    silent clips of ``length`` samples: ``(audio [2n, length] float32, labels [2n], onsets s)``."""
    from .world import _make_event, synth_event, UNPITCHED

    rng = np.random.default_rng([seed, 0x9B0E])
    sr = world.sample_rate
    clips, labels, onsets = [], [], []
    for ci, cat in enumerate(pair):
        for i in range(n_per_class):
            pitch = None if cat in UNPITCHED else ("low", "mid", "high")[i % 3]
            ev = _make_event(rng, cat, pitch, 0.0, world)
            on = float(rng.uniform(0.3, 1.2))
            y = synth_event(ev, sr, np.random.default_rng([seed, ci, i]))
            x = np.zeros(length)
            s = int(on * sr)
            x[s:s + len(y)] = y[: length - s]
            clips.append(x)
            labels.append(ci)
            onsets.append(on)
    return torch.tensor(np.stack(clips), dtype=torch.float32), torch.tensor(labels), onsets


def _probe_accuracy(feats: torch.Tensor, labels: torch.Tensor, steps: int, seed: int) -> tuple[float, float]:
    """Train accuracy and test accuracy (every third item held out) of a two-layer convolutional
    probe (width 64, max-pooled over time) on ``feats [n, channels, frames]``, normalised per channel."""
    x = (feats - feats.mean((0, 2), keepdim=True)) / (feats.std((0, 2), keepdim=True) + 1e-6)
    test = torch.arange(len(labels)) % 3 == 0
    train_idx = torch.nonzero(~test)[:, 0]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv1d(x.shape[1], 64, 3, padding=1), torch.nn.GELU(),
                                  torch.nn.Conv1d(64, 64, 3, padding=1), torch.nn.GELU(),
                                  torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-3)
    with torch.enable_grad():
        for _ in range(steps):
            idx = train_idx[torch.randint(0, len(train_idx), (64,), generator=gen)]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), labels[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = net(x).argmax(1)
    return float((pred[~test] == labels[~test]).float().mean()), float((pred[test] == labels[test]).float().mean())


@torch.no_grad()
def latent_probe_report(pretransform, *, pairs: Sequence[Sequence[str]] = PROBE_PAIRS, n_per_class: int = 450,
                        seed: int = 11, steps: int = 1500, world: WorldConfig = DEFAULT_CONFIG,
                        batch: int = 50) -> dict[str, Any]:
    """Can the latents of ``pretransform`` tell the categories of each pair apart?

    For each pair: ``n_per_class`` isolated events per category (:func:`_probe_clips`), encoded
    (posterior mean); the probe sees the latent frames from one before the onset to 0.48 s after
    it.  The same probe on a log-magnitude spectrogram pooled to ``latent_dim`` bands at the latent
    frame rate is the reference (it separates every pair).  Returns ``{"<a>/<b>": {"latent": {"train",
    "test"}, "spectrum": {"train", "test"}}, "frame_rate", "n_per_class", "seconds"}``; test accuracy
    0.5 is chance.
    """
    t0 = time.perf_counter()
    ratio = int(pretransform.downsampling_ratio)
    sr = world.sample_rate
    fr = sr / ratio
    length = ratio * int(math.ceil(2.0 * sr / ratio))
    span = (1, max(2, int(math.ceil(0.48 * fr))))
    n_bands = int(pretransform.latent_dim)
    window = torch.hann_window(2 * ratio)
    out: dict[str, Any] = {}
    for pair in pairs:
        audio, labels, onsets = _probe_clips(pair, n_per_class, seed, world, length)
        lat, spec = [], []
        for s in range(0, len(labels), batch):
            a = audio[s:s + batch]
            z = pretransform.encode(a[:, None].expand(-1, pretransform.io_channels, -1), sample=False).float()
            mag = torch.stft(a, 2 * ratio, ratio, window=window, return_complex=True).abs()
            logmag = torch.log(mag + 1e-5)  # [b, bins, frames (+1)]
            bands = torch.nn.functional.adaptive_avg_pool1d(logmag.transpose(1, 2), n_bands).transpose(1, 2)
            for j in range(a.shape[0]):
                f0 = int(onsets[s + j] * fr)
                lat.append(z[j, :, f0 - span[0]:f0 + span[1]])
                spec.append(bands[j, :, f0 - span[0]:f0 + span[1]])
        row = {}
        for name, feats in (("latent", lat), ("spectrum", spec)):
            tr, te = _probe_accuracy(torch.stack(feats), labels, steps, seed)
            row[name] = {"train": tr, "test": te}
        out["/".join(pair)] = row
    out.update(frame_rate=fr, n_per_class=n_per_class, seconds=time.perf_counter() - t0)
    return out
