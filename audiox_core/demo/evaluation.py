"""Measure audio against the demo world's ground truth with the signal detectors.

* :func:`detector_rates` — run :func:`~.detectors.evaluate_event_clip` /
  :func:`~.detectors.evaluate_music_clip` on ``(audio, spec)`` pairs and average every metric.
* :func:`vae_roundtrip_report` — the same on clean renders and on their VAE round trips
  (held-out ``test`` scenes), plus SNR / log-spectral distance / multi-resolution STFT distance:
  a VAE is good enough when the round trips keep the detector accuracy of the clean renders.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from . import detectors
from .world import DEFAULT_CONFIG, SceneSpec, WorldConfig, make_dataset, render_audio
from .validation import EVENT_METRICS, MUSIC_METRICS

__all__ = ["detector_rates", "vae_roundtrip_report", "heldout_specs"]


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
