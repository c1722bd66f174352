"""Generation quality of a demo model, measured by the world's signal detectors.

The benchmark behind ``bench/quality.py`` (issue 6) and ``tests/test_demo_quality.py``.  Every
prompt, video and image comes from the world's held-out ``test`` split (:func:`world.is_heldout`:
attribute combinations the training split never draws), checked against the training set the
recipe renders (:func:`heldout_report`).  Each task is first scored on the ground-truth renders of
the same scenes (the detector validation, target >= 98 %), then on what each sampler
configuration generates from the scene's conditions.  What "held out" means: the scene's
combination (the runs of (count, category, pitch) of an event scene; instrument, tempo, key, mode
and pattern of a music scene) never occurs in training, so its caption and video never do
either; the single event types and notes it is made of do (an image shows one type, which the
training set necessarily contains in other combinations).

Tasks (the conditions a model gets) and metrics (1/0 per clip, averaged, unless a unit says
otherwise; "detected" = :func:`detectors.analyse_events` / :func:`detectors.analyse_music`):

``t2a``  text -> events.  Prompt: the canonical caption (no video, no audio prompt).
    ``category``: set of detected categories == set of specified ones (count- and time-free);
    ``count``: number of detected events == specified; ``order``: the time-ordered detected
    (category, pitch) sequence == the caption's (implies count, category and pitch).  Captions
    carry no times, so onsets are scored in ``tv2a``.
``tv2a`` text + video -> events.  The same metrics plus ``onset``: every specified event has a
    distinct detection within 50 ms (:func:`detectors.evaluate_event_clip` ``onset_ok``) and
    ``onset_events``: share of all specified events detected within 50 ms.
``v2a``  video only (text absent = the empty string, as in training) -> events.  ``category``,
    ``count``, ``order``, ``onset_events`` (share of events within 50 ms, one-to-one matching)
    and ``onset_median_ms``: median over all specified events of the distance to the nearest
    detected onset (ms; every event counts, a missed one with its real distance).
``i2a``  still image -> events (text absent).  ``category``: the most frequent detected
    category is the one shown (no detection = wrong); ``pitch``: among the detected events of that
    category the most frequent pitch class is the one shown (pitched categories only).
``t2m``  text -> music.  Caption: canonical.  ``tempo``, ``key``, ``mode``, ``instrument``,
    ``pattern`` (detector classes == the caption's) and ``in_key``: share of detected notes whose
    pitch class lies in the caption's scale (mean over clips).
``inpaint`` events, one whole event regenerated (:func:`world.sample_inpaint_range`, ``event``
    mode), prompt = caption, audio prompt = the clip with the gap zeroed (no random span
    masking), the rest kept by the sampler.  ``inside_category`` / ``inside_count``: the events
    detected with onsets in the gap vs the specified ones (multiset / number);
    ``seam_score``: :func:`detectors.seam_quality` (largest band-level jump within 20 ms of a seam
    over the clip's own 95th-percentile change + 1 dB; <= 1: no sharper than the content; median
    over clips) and ``seam_ok`` (share with seam_score <= max(1, the original's score at the same
    boundaries)); ``click_ratio``: waveform second-difference at the seams over its surroundings
    (median; >> 1 = a click); ``kept_snr_db``: SNR of the kept part of the output vs the
    original where the keep-mask is 1 (the pasted original: should be very high);
    ``latent_kept_db``: SNR of the kept part of the decoded latents *before* pasting minus the SNR
    of the VAE round trip of the original (~0 dB: the sampler held the known latents, the output
    equals the clip within VAE error).
``complete_m`` music, the first half kept (:func:`world.completion_keep`), prompt = caption,
    audio prompt = the kept half.  Onsets and note pitches come from one analysis of the whole
    output (a note a few ms after the join is found there, not in a fragment cut at the join).
    ``same_tempo``: at least one note after the join and every inter-onset interval from the last
    kept onset on within 8 % of the kept part's median interval; ``in_key``: >= 90 % of the
    continuation's notes in the caption's scale (the kept half alone often cannot tell major from
    minor); ``same_instrument``: the timbre classifier's majority after the join equals the one
    before (:func:`detectors.completion_continuity`); ``onset``: every note of the spec after the
    join has a distinct detected onset within 50 ms (the tempo and phase are fixed by the kept
    half, so the beat grid must continue); ``note_pitch``: share of those notes matched with the
    right MIDI note (the notes of a ``melody`` are not fixed by the caption: < 100 % is
    expected); ``seam_score`` at the join; ``latent_kept_db`` as for inpainting.
``complete_e`` events, the first half kept.  ``after_category`` / ``after_count``: the events
    detected (whole clip) with onsets after the join vs the spec's events after it (set of
    categories / number; the caption says which events follow), ``seam_score``,
    ``latent_kept_db``.

Besides the ground truth (the detector validation), :func:`vae_rows` scores the ground truth
passed through the model's VAE: the ceiling any generation decoded by that VAE can reach.

``wall_s``: seconds per clip of :func:`audiox_core.task.generate` (conditions, sampling,
decoding; not the detectors), per task and overall.

Configurations (:data:`CONFIGS`): ``base50`` = Base model, rectified-flow Euler, 50 steps, CFG at
the model's default scale (:meth:`SamplerSettings.for_model`: 6); ``base4`` = the same with 4
steps; ``turbo4`` = the distilled student with its 4-step Turbo sampler.  Every configuration
gets the same per-clip noise seed.  The demo model has no Synchformer: video and image conditions
are encoded with zero sync features (``sync=False``), as the recipe trained them
(``CachePlan(sync="zeros")``).
"""
from __future__ import annotations

import logging
import math
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import AudioXError, CheckpointError, InputError
from . import captions
from . import detectors
from .world import (
    DEFAULT_CONFIG, NOTE_NAMES, SCALES, SceneSpec, SoundEvent, WorldConfig, combo_key, completion_keep,
    is_heldout, make_dataset, render_audio, render_image, render_video, sample_inpaint_range)

log = logging.getLogger(__name__)

__all__ = ["CONFIGS", "TASKS", "METRICS", "QualityItems", "quality_items", "heldout_report", "score", "score_caption",
           "ground_truth_rows", "vae_rows", "validation_failures", "run_model", "run_quality", "format_table",
           "check_targets", "load_demo_models", "VALIDATION_TARGET"]

#: name -> (model file key of SHIPPED_LAYOUT, SamplerSettings overrides)
CONFIGS: Dict[str, Tuple[str, dict]] = {
    "base50": ("base", {"mode": "base", "steps": 50}),
    "base4": ("base", {"mode": "base", "steps": 4}),
    "turbo4": ("turbo", {"mode": "turbo", "steps": 4}),
}
TASKS: Tuple[str, ...] = ("t2a", "tv2a", "v2a", "i2a", "t2m", "inpaint", "complete_m", "complete_e")
#: task -> ((metric, unit, gated by the detector validation), ...); unit "%" = share of clips.
METRICS: Dict[str, Tuple[Tuple[str, str, bool], ...]] = {
    "t2a": (("category", "%", True), ("count", "%", True), ("order", "%", True)),
    "tv2a": (("category", "%", True), ("count", "%", True), ("order", "%", True), ("onset", "%", True),
             ("onset_events", "%", True)),
    "v2a": (("category", "%", True), ("count", "%", True), ("order", "%", True), ("onset_events", "%", True),
            ("onset_median_ms", "ms", False)),
    "i2a": (("category", "%", True), ("pitch", "%", True)),
    "t2m": (("tempo", "%", True), ("key", "%", True), ("mode", "%", True), ("instrument", "%", True),
            ("pattern", "%", True), ("in_key", "%", True)),
    "inpaint": (("inside_category", "%", True), ("inside_count", "%", True), ("seam_score", "x", False),
                ("seam_ok", "%", False), ("click_ratio", "x", False), ("kept_snr_db", "dB", False),
                ("latent_kept_db", "dB", False)),
    "complete_m": (("same_tempo", "%", True), ("in_key", "%", True), ("same_instrument", "%", True),
                   ("onset", "%", True), ("note_pitch", "%", True), ("seam_score", "x", False),
                   ("latent_kept_db", "dB", False)),
    "complete_e": (("after_category", "%", True), ("after_count", "%", True), ("seam_score", "x", False),
                   ("latent_kept_db", "dB", False)),
}
#: metrics aggregated by the median (robust to a few wild clips); the rest by the mean
MEDIAN_METRICS = frozenset({"onset_median_ms", "seam_score", "seam_orig", "click_ratio", "kept_snr_db", "latent_kept_db"})
VALIDATION_TARGET = 0.98
TASK_TITLES = {"t2a": "text→audio (events)", "tv2a": "text+video→audio", "v2a": "video→audio",
               "i2a": "image→audio", "t2m": "text→music", "inpaint": "inpainting (events)",
               "complete_m": "completion (music)", "complete_e": "completion (events)"}


# ----------------------------------------------------------------------------------------------
# Held-out items
# ----------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One evaluation clip: its scene, the task's extra inputs and the ground-truth render."""

    task: str
    index: int
    spec: SceneSpec
    caption: str
    audio: np.ndarray  # float32 [1, N] ground truth at the world's rate
    video: Optional[np.ndarray] = None  # uint8 [T, H, W, 3] (v2a / tv2a) or [H, W, 3] (i2a)
    gap: Optional[Tuple[float, float]] = None  # inpaint range (s)
    keep: Optional[float] = None  # completion: seconds kept


@dataclass
class QualityItems:
    """The held-out items of every task and the world they come from."""

    items: Dict[str, List[Item]]
    world: WorldConfig
    seed: int

    def specs(self) -> List[SceneSpec]:
        return [it.spec for its in self.items.values() for it in its]


def quality_items(*, n_text: int = 50, n_video: int = 50, n_music: int = 30, n_image: int = 30,
                  n_inpaint: int = 30, n_completion: int = 20, seed: int = 2024,
                  world: WorldConfig = DEFAULT_CONFIG, tasks: Sequence[str] = TASKS) -> QualityItems:
    """Held-out (``test`` split) scenes of ``seed`` for each task, rendered.

    Event scenes (one list, :func:`world.make_dataset` ``kind="event"``) serve ``t2a``/``tv2a``
    (the first ``n_text``) and ``v2a`` (the first ``n_video``); ``i2a`` uses single-type event
    scenes (``n_types=1``: an image shows one type), ``inpaint`` and ``complete_e`` further event
    scenes, ``t2m``/``complete_m`` music scenes (separate draws of the same split)."""
    for t in tasks:
        if t not in TASKS:
            raise InputError(f"unknown task {t!r}; tasks are {', '.join(TASKS)}")
    fps, size = world.fps, world.size
    n_ev = max(n_text if {"t2a", "tv2a"} & set(tasks) else 0, n_video if "v2a" in tasks else 0)
    events = make_dataset(n_ev, seed, "test", world, kind="event") if n_ev else []
    music = make_dataset(n_music, seed, "test", world, kind="music") if "t2m" in tasks and n_music else []
    single = (make_dataset(n_image, seed + 1, "test", world, kind="event", n_types=1)
              if "i2a" in tasks and n_image else [])
    inp = make_dataset(n_inpaint, seed + 2, "test", world, kind="event") if "inpaint" in tasks and n_inpaint else []
    comp_m = (make_dataset(n_completion, seed + 3, "test", world, kind="music")
              if "complete_m" in tasks and n_completion else [])
    comp_e = (make_dataset(n_completion, seed + 3, "test", world, kind="event")
              if "complete_e" in tasks and n_completion else [])

    def item(task, i, spec, **kw):
        return Item(task, i, spec, captions.caption_canonical(spec), render_audio(spec, cfg=world), **kw)

    out: Dict[str, List[Item]] = {t: [] for t in tasks}
    for i, sp in enumerate(events):
        if "t2a" in tasks and i < n_text:
            out["t2a"].append(item("t2a", i, sp))
        if ("tv2a" in tasks and i < n_text) or ("v2a" in tasks and i < n_video):
            v = render_video(sp, fps=fps, size=size, cfg=world)
            if "tv2a" in tasks and i < n_text:
                out["tv2a"].append(item("tv2a", i, sp, video=v))
            if "v2a" in tasks and i < n_video:
                out["v2a"].append(item("v2a", i, sp, video=v))
    for i, sp in enumerate(single):
        out["i2a"].append(item("i2a", i, sp, video=render_image(sp, size=size, cfg=world)))
    for i, sp in enumerate(music):
        out["t2m"].append(item("t2m", i, sp))
    for i, sp in enumerate(inp):
        r = sample_inpaint_range(sp, np.random.default_rng([seed, 0x1A, i]), mode="event")
        out["inpaint"].append(item("inpaint", i, sp, gap=(r.start, r.end)))
    for i, sp in enumerate(comp_m):
        out["complete_m"].append(item("complete_m", i, sp, keep=completion_keep(sp)))
    for i, sp in enumerate(comp_e):
        out["complete_e"].append(item("complete_e", i, sp, keep=completion_keep(sp)))
    return QualityItems(out, world, int(seed))


def heldout_report(q: QualityItems, *, train_n: Optional[int] = None, train_seed: Optional[int] = None,
                   train_captions: Optional[int] = None) -> Dict[str, Any]:
    """Check that no evaluation scene could have been trained on; raises :class:`AudioXError` if one could.

    Checks (1) every scene is held out (:func:`world.is_heldout`), (2) its attribute combination
    (:func:`world.combo_key`) and (3) its canonical caption occur nowhere in the training set the
    recipe renders (``RecipeConfig`` ``n_clips`` scenes of ``seed``'s ``train`` split, each with
    its caption variants, re-derived exactly as :func:`dataset.world_examples` draws them) and
    (4) no scene equals a training scene.  Defaults: the recipe's."""
    from .dataset import DataSpec, caption_variants
    from .recipe import RecipeConfig

    rc = RecipeConfig()
    n = rc.n_clips if train_n is None else int(train_n)
    s = rc.seed if train_seed is None else int(train_seed)
    k = rc.caption_variants if train_captions is None else int(train_captions)
    ds = DataSpec(n=n, seed=s, captions=k)
    train = make_dataset(n, s, "train", q.world)
    train_keys = {combo_key(sp) for sp in train}
    train_caps = set()
    for i, sp in enumerate(train):
        train_caps.update(caption_variants(sp, np.random.default_rng([s, i, 0xDA7A]), k, ds.max_caption_bytes))
    train_specs = {repr(sp.to_dict()) for sp in train}
    specs = q.specs()
    uniq = {repr(sp.to_dict()): sp for sp in specs}
    bad_heldout = [combo_key(sp) for sp in uniq.values() if not is_heldout(sp, q.world)]
    bad_combo = sorted({combo_key(sp) for sp in uniq.values()} & train_keys)
    bad_caption = sorted({captions.caption_canonical(sp) for sp in uniq.values()} & train_caps)
    bad_spec = [k_ for k_ in uniq if k_ in train_specs]
    rep = {"eval_scenes": len(uniq), "eval_combinations": len({combo_key(sp) for sp in uniq.values()}),
           "train_scenes": n, "train_seed": s, "train_combinations": len(train_keys),
           "train_captions": len(train_caps), "not_heldout": bad_heldout, "combination_overlap": bad_combo,
           "caption_overlap": bad_caption, "scene_overlap": len(bad_spec)}
    rep["disjoint"] = not (bad_heldout or bad_combo or bad_caption or bad_spec)
    if not rep["disjoint"]:
        raise AudioXError(f"evaluation scenes overlap the training set: {rep}")
    return rep


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def _mono(audio) -> np.ndarray:
    """float64 [N] mix-down of ``[N]``, ``[C, N]`` or ``[1, C, N]`` (numpy or torch), unnormalised."""
    if torch.is_tensor(audio):
        audio = audio.detach().float().cpu().numpy()
    x = np.asarray(audio, dtype=np.float64)
    while x.ndim > 1:
        x = x.mean(axis=0) if x.ndim == 2 else x[0]
    return x


def _snr_db(y: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.sum((y - ref) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0:
        return 200.0
    return 10.0 * math.log10(max(sig, 1e-30) / err)


def _majority(values: Sequence) -> Any:
    if not values:
        return None
    c = Counter(values)
    best = max(c.values())
    return next(v for v in values if c[v] == best)  # earliest of the most frequent


def _event_scores(det: Sequence[detectors.DetectedEvent], spec: SceneSpec, tol_ms: float = 50.0) -> Dict[str, float]:
    r = detectors.compare_events(det, spec.events, tol_ms)
    errs = r["onset_errors_ms"]
    on = [d.onset for d in det]
    nearest = [1000.0 * min(abs(t - e.onset) for t in on) if on else 1000.0 * spec.duration for e in spec.events]
    return {
        "category": float({d.category for d in det} == {e.category for e in spec.events}),
        "count": float(r["count_ok"]),
        "order": float(r["order_ok"]),
        "onset": float(r["onset_ok"]),
        "onset_events": float(np.mean([e is not None and e <= tol_ms for e in errs])) if errs else 1.0,
        "onset_median_ms": float(np.median(nearest)) if nearest else 0.0,
        "category_multiset": float(r["category_ok"]),
        "pitch": float(r["pitch_ok"]),
        "event_category_acc": float(r["event_category_acc"]),
        "n_detected": float(len(det)),
    }


def _scale_share(midis: Sequence[int], key: str, mode: str) -> float:
    if not midis:
        return 0.0
    tonic = NOTE_NAMES.index(key)
    scale = {(tonic + s) % 12 for s in SCALES[mode]}
    return float(np.mean([int(m) % 12 in scale for m in midis]))


def _latent_kept_db(raw: Optional[np.ndarray], vae_ref: Optional[np.ndarray], gt: np.ndarray,
                    keep: np.ndarray) -> Optional[float]:
    if raw is None or vae_ref is None or not keep.any():
        return None
    return _snr_db(raw[keep], gt[keep]) - _snr_db(vae_ref[keep], gt[keep])


def _music_completion_scores(audio, sr: int, spec: SceneSpec, join: float, world: WorldConfig,
                             tol_ms: float = 50.0) -> Dict[str, float]:
    """Continuation metrics of a music clip whose first ``join`` seconds were given.

    Onsets and note pitches come from one analysis of the WHOLE clip (a note starting a few ms
    after the join is found there, not in a fragment cut at the join); the instrument from the
    two halves (:func:`detectors.completion_continuity`)."""
    a = detectors.analyse_music(audio, sr, world)
    on = np.asarray(a.onsets, dtype=np.float64)
    pre, post = on[on < join], on[on >= join]
    # tempo: every interval from the last kept onset through the continuation within 8 % of the
    # kept part's median inter-onset interval (works with a single continuation note)
    same_tempo = False
    if len(pre) >= 2 and len(post) >= 1:
        ioi = float(np.median(np.diff(pre)))
        chain = np.diff(np.concatenate([pre[-1:], post]))
        same_tempo = bool(np.all(np.abs(np.log(chain / ioi)) < math.log(1.08)))
    # key: the caption states it (the kept half alone often cannot tell major from minor: a
    # melody's first bars may lack the third)
    post_midis = [m for t, m in zip(on, a.midis) if t >= join]
    in_key = _scale_share(post_midis, spec.music.key, spec.music.mode)
    notes = [n for n in spec.music.notes if n.onset >= join]
    match = detectors.match_onsets([n.onset for n in notes], list(on), 2 * tol_ms / 1000)
    onset_ok = all(q is not None and abs(on[q] - n.onset) * 1000 <= tol_ms for n, q in zip(notes, match))
    pitch = [q is not None and a.midis[q] == n.midi for n, q in zip(notes, match)]
    continuity = detectors.completion_continuity(audio, sr, join, kind="music", cfg=world)
    return {"same_tempo": float(same_tempo), "in_key": float(in_key >= 0.9), "in_key_share": in_key,
            "same_instrument": float(continuity["same_instrument"]), "onset": float(onset_ok),
            "note_pitch": float(np.mean(pitch)) if pitch else 1.0,
            "instrument_vs_spec": float(continuity["after"].instrument == spec.music.instrument)}


def _event_completion_scores(audio, sr: int, spec: SceneSpec, join: float, world: WorldConfig
                             ) -> Dict[str, float]:
    """The events detected (in the whole clip) with onsets after ``join`` vs the spec's events
    after it: same set of categories, same number; ``same_types``: the continuation's types were
    all heard before the join (informative only: the world may introduce a new type later)."""
    det = detectors.analyse_events(audio, sr, world)
    after = [d for d in det if d.onset >= join]
    before = {(d.category, d.pitch) for d in det if d.onset < join}
    true = [e for e in spec.events if e.onset >= join]
    return {"after_category": float({d.category for d in after} == {e.category for e in true}),
            "after_count": float(len(after) == len(true)),
            "same_types": float(bool(after) and {(d.category, d.pitch) for d in after} <= before)}


def score_caption(audio, sr: int, text: str, world: WorldConfig = DEFAULT_CONFIG) -> Dict[str, Any]:
    """A clip against a free-standing event prompt (no scene behind it, e.g. the main job's): the
    scene is the one whose canonical caption is ``text`` (:func:`captions.events_for_caption`);
    ``category`` / ``count`` / ``order`` of :func:`score` (onsets are not part of a caption),
    plus the ``expected`` and ``detected`` (category, pitch) sequences."""
    expected = captions.events_for_caption(text, world)
    spec = SceneSpec("event", world.duration, tuple(SoundEvent(c, p, None, 0.0, 0.0, 0.0, 0.0) for c, p in expected))
    det = detectors.analyse_events(audio, sr, world)
    s = _event_scores(det, spec)
    return {"category": s["category"], "count": s["count"], "order": s["order"], "expected": expected,
            "detected": [(d.category, d.pitch) for d in det]}


def score(item: Item, audio, sr: int, *, raw=None, vae_ref=None, keep_mask: Optional[np.ndarray] = None,
          world: WorldConfig = DEFAULT_CONFIG) -> Dict[str, float]:
    """The metrics of :data:`METRICS` (plus a few extra diagnostics) for one clip of ``item``'s task.

    ``audio``: the clip to score (generated, or the ground truth for the validation);
    inpainting/completion extras: ``raw`` (the decoded latents before pasting), ``vae_ref`` (the
    VAE round trip of the ground truth) and ``keep_mask`` (bool per sample, True where the output
    must equal the given audio), all at ``sr``."""
    spec, task = item.spec, item.task
    if task in ("t2a", "tv2a", "v2a"):
        return _event_scores(detectors.analyse_events(audio, sr, world), spec)
    if task == "i2a":
        det = detectors.analyse_events(audio, sr, world)
        cat, pitch = spec.events[0].type
        major = _majority([d.category for d in det])
        out = {"category": float(major == cat), "n_detected": float(len(det))}
        if pitch is not None:
            out["pitch"] = float(_majority([d.pitch for d in det if d.category == cat]) == pitch)
        return out
    if task == "t2m":
        m = spec.music
        r = detectors.evaluate_music_clip(audio, sr, spec, cfg=world)
        a = r["analysis"]
        return {"tempo": float(r["tempo_ok"]), "key": float(r["key_ok"]), "mode": float(r["mode_ok"]),
                "instrument": float(r["instrument_ok"]), "pattern": float(r["pattern_ok"]),
                "in_key": _scale_share(a.midis, m.key, m.mode), "count": float(r["count_ok"]),
                "onset": float(r["onset_ok"]), "note_pitch": float(r["note_pitch_acc"])}
    gt = _mono(item.audio)
    y = _mono(audio)
    keep = keep_mask if keep_mask is not None else np.zeros(len(y), dtype=bool)
    if task == "inpaint":
        a, b = item.gap
        r = detectors.evaluate_inpaint(audio, sr, spec, a, b, cfg=world)
        orig_seam = detectors.seam_quality(item.audio, sr, r["seam"]["boundaries"])["seam_score"]
        seam = r["seam"]["seam_score"]
        out = {"inside_category": float(r["inside"]["category_ok"]), "inside_count": float(r["inside"]["count_ok"]),
               "seam_score": seam, "seam_orig": orig_seam, "seam_ok": float(seam <= max(1.0, orig_seam)),
               "click_ratio": max(r["seam"]["click_ratio"], default=0.0),
               "inside_onset": float(r["inside"]["onset_ok"])}
        return _with_kept_scores(out, y, gt, keep, raw, vae_ref)
    if task in ("complete_m", "complete_e"):
        j = float(item.keep)
        if task == "complete_m":
            out = _music_completion_scores(audio, sr, spec, j, world)
        else:
            out = _event_completion_scores(audio, sr, spec, j, world)
        out["seam_score"] = detectors.seam_quality(audio, sr, [j])["seam_score"]
        return _with_kept_scores(out, y, gt, keep, raw, vae_ref)
    raise InputError(f"unknown task {task!r}")


def _with_kept_scores(out: Dict[str, float], y, gt, keep, raw, vae_ref) -> Dict[str, float]:
    """Add the kept-region metrics (inpainting / completion): ``kept_snr_db`` of the output against
    the original, and ``latent_kept_db`` when the decoded latents and a VAE round trip are given."""
    if keep.any():
        out["kept_snr_db"] = _snr_db(y[keep], gt[keep])
    lk = _latent_kept_db(None if raw is None else _mono(raw), None if vae_ref is None else _mono(vae_ref), gt, keep)
    if lk is not None:
        out["latent_kept_db"] = lk
    return out


def _aggregate(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = sorted({k for r in rows for k in r})
    out: Dict[str, float] = {}
    for k in keys:
        v = [r[k] for r in rows if k in r and r[k] is not None]
        if v:
            out[k] = float(np.median(v)) if k in MEDIAN_METRICS else float(np.mean(v))
    return out


def ground_truth_rows(q: QualityItems) -> Dict[str, Dict[str, float]]:
    """Every task's metrics on the ground-truth renders (the detector validation): ``{task: {metric:
    value, "n": clips}}``.  The inpainting/completion scores are computed on the original clip (its
    "seam" is the original signal at the same boundaries)."""
    sr = q.world.sample_rate
    out = {}
    for task, items in q.items.items():
        if not items:
            continue
        rows = [score(it, it.audio, sr, world=q.world) for it in items]
        out[task] = {**_aggregate(rows), "n": len(items)}
    return out


def vae_rows(model, q: QualityItems) -> Dict[str, Dict[str, float]]:
    """Every task's metrics on the ground truth passed through ``model``'s VAE (posterior mean,
    decoded): the best any generation can score through that decoder."""
    sr = model.config.sample_rate
    out = {}
    for task, items in q.items.items():
        if items:
            rows = [score(it, _vae_roundtrip(model, it.audio)[..., :it.audio.shape[-1]], sr, world=q.world)
                    for it in items]
            out[task] = {**_aggregate(rows), "n": len(items)}
    return out


def validation_failures(gt: Dict[str, Dict[str, float]], target: float = VALIDATION_TARGET) -> List[str]:
    """``"task/metric value"`` of every gated metric (:data:`METRICS`) below ``target`` on the ground truth."""
    bad = []
    for task, row in gt.items():
        for name, unit, gated in METRICS[task]:
            if gated and name in row and row[name] < target:
                bad.append(f"{task}/{name} {100 * row[name]:.1f}%")
    return bad


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------
def load_demo_models(models_dir, which: Sequence[str] = ("base", "turbo"), dtype: str = "fp32") -> Dict[str, Any]:
    """``{"base": model, "turbo": model}`` from a folder laid out like ``SHIPPED_LAYOUT``
    (``audiox_demo_base.safetensors``, ``audiox_demo_turbo.safetensors``, ``demo_t5/``)."""
    from ..api import load
    from .model_config import SHIPPED_LAYOUT

    folder = Path(models_dir)
    out = {}
    for key in which:
        p = folder / Path(SHIPPED_LAYOUT[key]).name
        if not p.is_file():
            raise CheckpointError(f"demo model file missing: {p} (expected the shipped layout of "
                                  f"{SHIPPED_LAYOUT['folder']})")
        out[key] = load(p, dtype=dtype)
    return out


def _item_seed(seed: int, task: str, index: int) -> int:
    return zlib.crc32(f"{seed}/{task}/{index}".encode()) & 0x7FFF_FFFF


@torch.no_grad()
def _generate_item(model, item: Item, settings, cache: dict) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(output audio ``[1, C, N]``, sampled latents for inpainting/completion else None) of one item."""
    from .. import conditions
    from ..task import GenerationRequest, generate

    sr = model.config.sample_rate
    t = item.task
    gt = torch.from_numpy(item.audio)
    if t in ("v2a", "tv2a", "i2a"):
        frames = torch.from_numpy(item.video)
        vis = (conditions.VisualInput(frames=frames[None], still=True) if t == "i2a"
               else conditions.VisualInput(frames=frames, fps=float(model.video_conditioner.fps)))
        video = conditions.encode_video(model, vis, sync=False)  # no Synchformer: zero sync, as trained
        if t == "tv2a":
            prompt = item.caption
        else:  # text absent = the empty string, the training convention (not the official task sentence)
            if ("empty", id(model)) not in cache:
                cache[("empty", id(model))] = conditions.encode_text(model, "")
            prompt = cache[("empty", id(model))]
        return generate(model, GenerationRequest(prompt=prompt, video=video, settings=settings)).audio, None
    if t in ("t2a", "t2m"):
        return generate(model, GenerationRequest(prompt=item.caption, settings=settings)).audio, None
    if t == "inpaint":
        res = generate(model, GenerationRequest(prompt=item.caption, init_audio=(gt, sr), inpaint=[item.gap],
                                                settings=settings, audio_prompt_mask=False))
    else:
        n_keep = int(round(item.keep * sr))
        res = generate(model, GenerationRequest(prompt=item.caption, init_audio=(gt[..., :n_keep], sr),
                                                keep_seconds=item.keep, settings=settings, audio_prompt_mask=False))
    return res.audio, res.latents


def _keep_mask(model, item: Item, n: int) -> np.ndarray:
    """Samples where generate() must return the given audio unchanged (the latent keep-mask at 1)."""
    from ..generate import keep_mask_from_ranges, waveform_keep

    L = model.latent_length
    if item.task == "inpaint":
        k = keep_mask_from_ranges(model, L, [item.gap])
    else:
        fps = model.config.sample_rate / model.config.vae.downsampling_ratio
        k = torch.zeros(L)
        k[: int(round(item.keep * fps))] = 1.0
    return (waveform_keep(k, n) >= 0.999).numpy()


@torch.no_grad()
def _vae_roundtrip(model, audio: np.ndarray) -> torch.Tensor:
    from ..generate import decode, encode
    z, _ = encode(model, torch.from_numpy(audio), model.config.sample_rate, sample=False)
    return decode(model, z)


def run_model(model, settings, q: QualityItems, *, name: str = "", echo: Callable[[str], None] = lambda s: None
              ) -> Dict[str, Any]:
    """Generate every item with ``model`` / ``settings`` (per-item seeds from ``q.seed``) and score it.

    Returns ``{"rows": {task: {metric: value, "n", "wall_s"}}, "wall_s": seconds per clip overall,
    "clips": n, "audio_stats": {task: [{"finite", "seconds", "rms"} per clip]}}``."""
    from dataclasses import replace

    from ..generate import decode

    sr = model.config.sample_rate
    rows: Dict[str, Dict[str, float]] = {}
    cache: dict = {}
    total_wall, total_n = 0.0, 0
    stats: Dict[str, list] = {}
    for task, items in q.items.items():
        if not items:
            continue
        per, walls = [], []
        stats[task] = []
        for it in items:
            s = replace(settings, seed=_item_seed(q.seed, task, it.index))
            t0 = time.perf_counter()
            audio, lat = _generate_item(model, it, s, cache)
            walls.append(time.perf_counter() - t0)
            a = torch.as_tensor(audio).float()
            stats[task].append({"finite": bool(torch.isfinite(a).all()), "seconds": a.shape[-1] / sr,
                                "rms": float(a.pow(2).mean().sqrt())})
            kw = {}
            if lat is not None:  # outside the timing: the decoded latents before the original is pasted
                raw = decode(model, lat)
                n = audio.shape[-1]
                kw = dict(raw=raw[..., :n], vae_ref=_vae_roundtrip(model, it.audio)[..., :n],
                          keep_mask=_keep_mask(model, it, n))
            per.append(score(it, audio, sr, world=q.world, **kw))
        rows[task] = {**_aggregate(per), "n": len(items), "wall_s": float(np.mean(walls))}
        total_wall += float(np.sum(walls))
        total_n += len(items)
        echo(f"[{name}] {task}: {len(items)} clips, {np.mean(walls):.2f} s/clip")
    return {"rows": rows, "wall_s": total_wall / max(1, total_n), "clips": total_n, "audio_stats": stats}


def run_quality(models: Dict[str, Any], q: QualityItems, *, configs: Sequence[str] = tuple(CONFIGS),
                cfg_scale: Optional[float] = None, force: bool = False, check_heldout: bool = True,
                vae_column: bool = True, echo: Callable[[str], None] = lambda s: None) -> Dict[str, Any]:
    """The whole benchmark: held-out check, detector validation on the ground truth, then every
    configuration.  ``models``: ``{"base": .., "turbo": ..}`` (:func:`load_demo_models`);
    ``cfg_scale``: override the Base CFG scale; ``vae_column``: also score the ground truth through
    the (base) model's VAE (:func:`vae_rows`).  Raises :class:`AudioXError` when the ground-truth
    accuracy of a gated metric is below 98 % unless ``force`` (then ``"validation_failures"`` lists
    them and the run goes on).  Returns a JSON-able dict."""
    from ..generate import SamplerSettings

    for c in configs:
        if c not in CONFIGS:
            raise InputError(f"unknown configuration {c!r}; choose from {', '.join(CONFIGS)}")
    report: Dict[str, Any] = {"seed": q.seed, "configs": list(configs),
                              "n": {t: len(v) for t, v in q.items.items()}}
    if check_heldout:
        t0 = time.perf_counter()
        report["heldout"] = heldout_report(q)
        echo(f"held-out check: {report['heldout']['eval_scenes']} evaluation scenes, none in the "
             f"{report['heldout']['train_scenes']} training scenes ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    gt = ground_truth_rows(q)
    report["ground_truth"] = gt
    bad = validation_failures(gt)
    report["validation_failures"] = bad
    report["detectors_valid"] = not bad
    echo(f"detector validation on the ground truth: {'OK' if not bad else 'FAILED ' + ', '.join(bad)} "
         f"({time.perf_counter() - t0:.1f} s)")
    if bad and not force:
        raise AudioXError("the detectors score below 98 % on the ground-truth renders of these scenes ("
                          + ", ".join(bad) + "): their verdicts on generated audio would not be trustworthy")
    if vae_column:
        t0 = time.perf_counter()
        m = models.get("base", next(iter(models.values())))
        report["vae"] = vae_rows(m, q)
        echo(f"ground truth through the VAE scored ({time.perf_counter() - t0:.1f} s)")
    report["results"] = {}
    report["settings"] = {}
    for c in configs:
        key, over = CONFIGS[c]
        if key not in models:
            raise InputError(f"configuration {c} needs the {key} model")
        m = models[key]
        kw = dict(over)
        if cfg_scale is not None and kw["mode"] == "base":
            kw["cfg_scale"] = float(cfg_scale)
        s = SamplerSettings.for_model(m, **kw)
        report["settings"][c] = {k: v for k, v in s.__dict__.items() if k in ("mode", "steps", "sampler", "cfg_scale")}
        report["results"][c] = run_model(m, s, q, name=c, echo=echo)
    return report


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _fmt(v: Optional[float], unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit == "%":
        return f"{100 * v:.1f}"
    if unit == "ms":
        return f"{v:.0f}"
    if unit == "dB":
        return f"{v:+.1f}" if abs(v) < 150 else "exact"
    return f"{v:.2f}"


def format_table(report: Dict[str, Any]) -> str:
    """Markdown table: one row per task/metric (``*``: gated by the detector validation), columns
    ground truth (the detector validation), ground truth through the VAE (when measured) and each
    configuration; a wall-time row per task and overall (seconds per clip)."""
    configs = report["configs"]
    gt = report["ground_truth"]
    res = report.get("results", {})
    vae = report.get("vae")
    head = ["task", "metric", "unit", "n", "ground truth"] + (["GT via VAE"] if vae else []) + configs
    pad = ["–"] if vae else []
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for task in TASKS:
        if task not in gt:
            continue
        for name, unit, gated in METRICS[task]:
            cells = [TASK_TITLES[task], name + (" *" if gated else ""), unit, str(gt[task]["n"]),
                     _fmt(gt[task].get(name), unit)] + ([_fmt(vae.get(task, {}).get(name), unit)] if vae else [])
            cells += [_fmt(res[c]["rows"].get(task, {}).get(name), unit) if c in res else "–" for c in configs]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("| " + " | ".join([TASK_TITLES[task], "wall", "s/clip", str(gt[task]["n"]), "–"] + pad
                                       + [_fmt(res[c]["rows"].get(task, {}).get("wall_s"), "s") if c in res else "–"
                                          for c in configs]) + " |")
    lines.append("| " + " | ".join(["all", "wall", "s/clip", "", "–"] + pad
                                   + [_fmt(res[c]["wall_s"], "s") if c in res else "–" for c in configs]) + " |")
    return "\n".join(lines)


def check_targets(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The issue's targets, each ``{"target", "value", "unit", "ok"}`` (``ok`` None when not measured):

    * Base-50 >= 90 % on text category and count (``t2a``);
    * Turbo-4 within 5 points of Base-50 on text category and count;
    * Base-4 clearly worse than Base-50: at least 10 points lower on the mean of text category and
      count (the paper's Table II pattern);
    * V2A onsets within 50 ms for >= 90 % of events (Base-50 and Turbo-4)."""
    res = report.get("results", {})

    def get(c, task, m):
        return res.get(c, {}).get("rows", {}).get(task, {}).get(m)

    out = []
    for m in ("category", "count"):
        v = get("base50", "t2a", m)
        out.append({"target": f"Base-50 text {m} >= 90 %", "value": v, "unit": "%", "ok": None if v is None else v >= 0.9})
        b, t = get("base50", "t2a", m), get("turbo4", "t2a", m)
        d = None if b is None or t is None else t - b
        out.append({"target": f"Turbo-4 text {m} within 5 points of Base-50 (Turbo - Base)", "value": d, "unit": "points",
                    "ok": None if d is None else d >= -0.05})
    b = [get("base50", "t2a", m) for m in ("category", "count")]
    f = [get("base4", "t2a", m) for m in ("category", "count")]
    d = None if None in b + f else float(np.mean(b) - np.mean(f))
    out.append({"target": "Base-4 text category+count >= 10 points below Base-50 (Base-50 - Base-4)", "value": d,
                "unit": "points",
                "ok": None if d is None else d >= 0.10})
    for c in ("base50", "turbo4"):
        v = get(c, "v2a", "onset_events")
        out.append({"target": f"{c} V2A onsets within 50 ms for >= 90 % of events", "value": v, "unit": "%",
                    "ok": None if v is None else v >= 0.9})
    return out
