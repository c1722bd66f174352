"""Validation of the demo-world detectors on ground-truth renders (clean and degraded)."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..errors import InputError
from . import detectors
from . import world
from .degrade import degradations, stress_degradations

EVENT_METRICS: tuple[str, ...] = ("category_ok", "count_ok", "pitch_ok", "order_ok", "onset_ok")
MUSIC_METRICS: tuple[str, ...] = ("count_ok", "onset_ok", "tempo_ok", "key_ok", "mode_ok", "instrument_ok",
                                  "pattern_ok", "note_pitch_acc")


def validation_specs(n_event: int, n_music: int, seed: int, cfg: world.WorldConfig = world.DEFAULT_CONFIG
                     ) -> tuple[list[world.SceneSpec], list[world.SceneSpec]]:
    """Event and music specs of ``seed``'s ``val`` split (first half) and held-out ``test``
    split (second half)."""
    ev = world.make_dataset(n_event - n_event // 2, seed, "val", cfg, kind="event") + \
        world.make_dataset(n_event // 2, seed, "test", cfg, kind="event")
    mu = world.make_dataset(n_music - n_music // 2, seed, "val", cfg, kind="music") + \
        world.make_dataset(n_music // 2, seed, "test", cfg, kind="music")
    return ev, mu


def validate(n_event: int, n_music: int, seed: int, degradation_names: Sequence[str] | None = None,
             cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, dict[str, float]]:
    """Detector accuracy for every named degradation (default: all of
    :func:`degrade.degradations`; names of :func:`degrade.stress_degradations` are accepted
    too): ``{degradation: {"event/<metric>": rate,
    "music/<metric>": rate, "sec_per_clip": seconds}}``."""
    degr = {**degradations(detectors.ANALYSIS_SR), **stress_degradations(detectors.ANALYSIS_SR)}
    names = list(degradations(detectors.ANALYSIS_SR)) if degradation_names is None else list(degradation_names)
    for nm in names:
        if nm not in degr:
            raise InputError(f"unknown degradation {nm!r}; expected one of {list(degr)}")
    ev, mu = validation_specs(n_event, n_music, seed, cfg)
    detectors.event_classifier(), detectors.timbre_classifier()  # load outside the timing
    report: dict[str, dict[str, float]] = {}
    for i, nm in enumerate(names):
        rng = np.random.default_rng([seed, 99, i])
        rows: dict[str, list[float]] = {}
        t_det = 0.0
        for spec in ev + mu:
            x = degr[nm](world.render_audio(spec, detectors.ANALYSIS_SR, cfg=cfg)[0], rng)
            t0 = time.perf_counter()
            if spec.kind == "event":
                r = detectors.evaluate_event_clip(x, detectors.ANALYSIS_SR, spec, cfg=cfg)
                keys = [("event/" + k, r[k]) for k in EVENT_METRICS]
            else:
                r = detectors.evaluate_music_clip(x, detectors.ANALYSIS_SR, spec, cfg=cfg)
                keys = [("music/" + k, r[k]) for k in MUSIC_METRICS]
            t_det += time.perf_counter() - t0
            for k, v in keys:
                rows.setdefault(k, []).append(float(v))
        report[nm] = {k: float(np.mean(v)) for k, v in rows.items()}
        report[nm]["sec_per_clip"] = t_det / max(1, len(ev) + len(mu))
    return report
