"""Training data from the demo world: VAE audio batches and diffusion-training examples.

* :class:`WorldAudioSource` — audio for the VAE trainer
  (:class:`audiox_core.training.vae.VAETrainer`): every step renders fresh train-split scenes
  (events and music, held-out combinations rejected) and cuts random crops.
* :func:`world_examples` — :class:`audiox_core.training.data.Example` objects of rendered
  train-split scenes (audio, caption variants, video frames at the model's fps and size, or a
  still image) for :func:`audiox_core.training.data.prepare_dataset`.
* :func:`prepare_world_data` — renders, VAE-encodes and caches them once under
  ``cache_root/<config hash>/`` and returns a :class:`WorldPreparedDataset` (a
  ``PreparedDataset`` that draws one of the caption variants per item and draw).

Everything is deterministic from the seeds.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import InputError
from ..progress import ProgressCallback, report
from .world import (
    DEFAULT_CONFIG, SceneSpec, WorldConfig, is_heldout, make_dataset, render_audio, render_image,
    render_video, sample_scene)
from .captions import caption, caption_canonical

log = logging.getLogger(__name__)

__all__ = ["WorldAudioSource", "sample_train_scene", "world_examples", "caption_variants", "DataSpec",
           "prepare_world_data", "WorldPreparedDataset", "data_hash"]


def sample_train_scene(rng: np.random.Generator, world: WorldConfig = DEFAULT_CONFIG,
                       kind: Optional[str] = None) -> SceneSpec:
    """One scene of a non-held-out combination (``kind`` None: event with ``world.event_fraction``)."""
    k = kind or ("event" if rng.uniform() < world.event_fraction else "music")
    for _ in range(2000):
        spec = sample_scene(rng, k, world)
        if not is_heldout(spec, world):
            return spec
    raise InputError(f"could not sample a non-held-out {k} scene")  # pragma: no cover


class WorldAudioSource:
    """``source(step, batch_size) -> [B, channels, segment]``: random crops of fresh renders.

    Each step draws ``ceil(B / crops_per_clip)`` train-split scenes from
    ``np.random.default_rng([seed, step, 0xA0D10])``, renders them at the world's rate (mono),
    cuts ``crops_per_clip`` crops of ``segment`` samples from each, applies a random gain
    (uniform in ``gain_db`` dB) and a random polarity flip, and copies mono to ``channels``.
    A crop is centred on a random sounding sample (``|x| > 1e-3``) with probability
    ``p_active``, else placed uniformly: event clips are mostly silence, and all-silent crops
    teach a VAE nothing.  A pure function of ``step`` (deterministic resume).
    """

    def __init__(self, world: WorldConfig = DEFAULT_CONFIG, *, seed: int = 0, segment: int = 16000,
                 channels: int = 2, crops_per_clip: int = 2, gain_db: tuple = (-12.0, 0.0), flip: bool = True,
                 p_active: float = 0.8):
        n = int(round(world.duration * world.sample_rate))
        if not 0 < segment <= n:
            raise InputError(f"WorldAudioSource: segment {segment} must be in 1..{n} (one clip)")
        self.world, self.seed, self.segment, self.channels = world, int(seed), int(segment), int(channels)
        self.crops_per_clip, self.gain_db, self.flip = max(1, int(crops_per_clip)), tuple(gain_db), bool(flip)
        self.p_active = float(p_active)

    def _start(self, wav: np.ndarray, rng: np.random.Generator) -> int:
        hi = len(wav) - self.segment
        if rng.uniform() < self.p_active:
            active = np.flatnonzero(np.abs(wav) > 1e-3)
            if active.size:
                c = int(active[int(rng.integers(active.size))])
                return int(np.clip(c - int(rng.integers(0, self.segment)), 0, hi))
        return int(rng.integers(0, hi + 1))

    def __call__(self, step: int, batch_size: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, int(step), 0xA0D10])
        out = np.empty((batch_size, self.channels, self.segment), dtype=np.float32)
        i = 0
        while i < batch_size:
            spec = sample_train_scene(rng, self.world)
            wav = render_audio(spec, cfg=self.world)[0]
            for _ in range(self.crops_per_clip):
                if i >= batch_size:
                    break
                a = self._start(wav, rng)
                g = 10.0 ** (rng.uniform(*self.gain_db) / 20.0)
                if self.flip and rng.uniform() < 0.5:
                    g = -g
                out[i, :] = wav[a:a + self.segment] * g
                i += 1
        return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Diffusion-training examples
# ----------------------------------------------------------------------------------------------
def caption_variants(spec: SceneSpec, rng: np.random.Generator, k: int, max_bytes: int = 127) -> List[str]:
    """Up to ``k`` distinct captions of ``spec``, each at most ``max_bytes`` UTF-8 bytes (what a
    byte-level T5 with ``max_length`` 128 reads whole): the canonical caption first, then varied
    wordings drawn from ``rng`` (over-long drawings are redrawn, at most 8·k draws)."""
    out: List[str] = []
    canon = caption_canonical(spec)
    if len(canon.encode("utf-8")) <= max_bytes:
        out.append(canon)
    tries = 0
    while len(out) < k and tries < 8 * k:
        tries += 1
        c = caption(spec, rng)
        if len(c.encode("utf-8")) <= max_bytes and c not in out:
            out.append(c)
    if not out:  # every wording too long: keep the canonical one (the tokenizer truncates it)
        log.warning("scene %s: no caption fits in %d bytes; using the canonical one truncated", spec.seed, max_bytes)
        out.append(canon)
    return out


@dataclass(frozen=True)
class DataSpec:
    """What :func:`world_examples` renders (part of the cache key).

    ``n`` scenes of the ``train`` split of ``seed`` (:func:`world.make_dataset`, events with the
    world's ``event_fraction``); ``captions`` variants each; a fraction ``prompt_fraction`` typed
    ``audio_condition-audio`` (the audio prompt is the clip itself, span-masked at training
    time, the official ``-audio`` pairing), the rest text/video only; single-type event scenes
    get a still image instead of the video with probability ``image_fraction``.
    """

    n: int = 2000
    seed: int = 0
    captions: int = 4
    prompt_fraction: float = 0.5
    image_fraction: float = 0.1
    max_caption_bytes: int = 127


def world_examples(spec: DataSpec, *, fps: int, size: int, world: WorldConfig = DEFAULT_CONFIG,
                   start: int = 0, stop: Optional[int] = None) -> tuple[list, list]:
    """``(examples, records)`` for scenes ``start:stop`` of ``spec`` (all by default).

    ``examples``: :class:`audiox_core.training.data.Example` with ``audio`` float ``[1, N]`` at the
    world's rate, ``caption`` ``{"v0": canonical, "v1": ..., ...}``, ``video`` uint8 ``[T, size,
    size, 3]`` at ``fps`` (or a still ``[1, size, size, 3]``), ``type``.  ``records``: one JSON-able
    dict per example (scene spec, captions, type, ``visual``: ``"video"``/``"image"``).
    Per-scene randomness comes from ``np.random.default_rng([spec.seed, index, 0xDA7A])``, so
    any slice renders exactly what the whole list would.
    """
    from ..training.data import Example

    scenes = make_dataset(spec.n, spec.seed, "train", world)
    stop = spec.n if stop is None else min(int(stop), spec.n)
    examples, records = [], []
    for i in range(int(start), stop):
        sc = scenes[i]
        rng = np.random.default_rng([spec.seed, i, 0xDA7A])
        caps = caption_variants(sc, rng, spec.captions, spec.max_caption_bytes)
        typ = "audio_condition-audio" if rng.uniform() < spec.prompt_fraction else ""
        single = sc.kind == "event" and len({e.type for e in sc.events}) == 1
        use_image = single and rng.uniform() < spec.image_fraction
        audio = torch.from_numpy(render_audio(sc, cfg=world))
        if use_image:
            video = torch.from_numpy(render_image(sc, size=size, cfg=world))[None]
            vfps = None
        else:
            video = torch.from_numpy(render_video(sc, fps=fps, size=size, cfg=world))
            vfps = float(fps)
        name = f"world{spec.seed}-{i:05d}"
        examples.append(Example(audio=audio, sample_rate=world.sample_rate,
                                caption={f"v{j}": c for j, c in enumerate(caps)}, video=video, video_fps=vfps,
                                type=typ, name=name))
        records.append({"name": name, "index": i, "spec": sc.to_dict(), "captions": caps, "type": typ,
                        "visual": "image" if use_image else "video"})
    return examples, records


def data_hash(spec: DataSpec, model, world: WorldConfig, plan) -> str:
    """Key of a prepared world dataset: the data spec, the world, the model config, the VAE
    weights' fingerprint and the cache plan."""
    from ..training.data import CACHE_VERSION, module_fingerprint

    blob = json.dumps({"spec": asdict(spec), "world": asdict(world), "model": model.config.to_dict(),
                       "vae": module_fingerprint(model.pretransform), "plan": asdict(plan),
                       "cache_version": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prepared_base():
    from ..training.data import PreparedDataset
    return PreparedDataset


class WorldPreparedDataset(_prepared_base()):
    """A ``PreparedDataset`` whose items carry several caption variants (``{"v0": ..}``): each
    :meth:`batch` draws one variant per item from the batch generator (then assembles the batch
    exactly as the base class).  ``records``: the scene records of :func:`world_examples`;
    ``cache_dir``: where it is cached."""

    records: list
    cache_dir: Optional[Path]

    @classmethod
    def from_prepared(cls, base, records: list, cache_dir: Optional[Path]) -> "WorldPreparedDataset":
        obj = cls.__new__(cls)
        obj.__dict__.update(base.__dict__)
        obj.records, obj.cache_dir = list(records), cache_dir
        return obj

    def batch(self, indices: Sequence[int], generator: torch.Generator, device=None, **kw):
        swapped = []
        for i in indices:
            it = self.items[i]
            caps = it.captions
            if isinstance(caps, dict) and len(caps) > 1:
                keys = list(caps)
                k = keys[int(torch.randint(len(keys), (1,), generator=generator))]
                swapped.append((it, caps))
                it.captions = caps[k]
        try:
            return super().batch(indices, generator, device, **kw)
        finally:
            for it, caps in reversed(swapped):
                it.captions = caps


def prepare_world_data(model, spec: DataSpec, cache_root: Union[str, Path], *, plan=None,
                       world: WorldConfig = DEFAULT_CONFIG, chunk: int = 200,
                       callback: Optional[ProgressCallback] = None) -> WorldPreparedDataset:
    """Render ``spec``'s scenes, run the frozen encoders once and cache everything.

    ``model``: the demo model with its trained VAE loaded (``pretransform`` and the audio
    prompt's copy) and a T5 attached (``model.set_text_encoder``; with ``plan.text == "ids"``
    only its tokenizer is used).  ``plan``: :class:`audiox_core.training.data.CachePlan`
    (default: ids, CLIP hidden states, zero sync — T5 and projections trained, CLIP tower
    frozen).  Cached under ``cache_root/world-<data_hash>/``: ``scenes.jsonl`` (the records),
    ``data.json`` (spec, counts) and the content-keyed ``.safetensors`` entries of
    :func:`~audiox_core.training.data.prepare_dataset`; a second call with the same inputs
    only reads them.  Rendering happens ``chunk`` scenes at a time (bounded memory).
    ``callback(i, n, info)`` per scene.
    """
    from ..training.data import CachePlan, PreparedDataset, prepare_dataset

    plan = plan or CachePlan(text="ids", video="hidden", sync="zeros")
    vc = model.video_conditioner
    if vc is None:
        raise InputError("prepare_world_data: the model has no video conditioner")
    if float(vc.duration) != float(world.duration):
        raise InputError(f"prepare_world_data: the model's video window is {vc.duration} s, the world's clips "
                         f"are {world.duration} s")
    root = Path(cache_root) / f"world-{data_hash(spec, model, world, plan)}"
    root.mkdir(parents=True, exist_ok=True)
    items, keys, records, shared = [], [], [], None
    for s in range(0, spec.n, max(1, int(chunk))):
        ex, rec = world_examples(spec, fps=vc.fps, size=vc.image_size, world=world, start=s, stop=s + chunk)

        def sub(i, n, info, _s=s):
            report(callback, _s + i, spec.n, **info)

        part = prepare_dataset(ex, model, plan=plan, cache_dir=root, callback=sub)
        items += part.items
        records += rec
        keys += list(getattr(part, "_keys", []))
        shared = part.shared if shared is None else shared
        del ex
    base = PreparedDataset(items, plan, shared, latent_length=model.config.latent_length,
                           ratio=model.config.vae.downsampling_ratio, sample_rate=model.config.sample_rate,
                           keys=[k for it in items for k in it.keys])
    (root / "scenes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (root / "data.json").write_text(json.dumps({"spec": asdict(spec), "items": len(items),
                                                "dataset_hash": base.dataset_hash}, indent=1), encoding="utf-8")
    return WorldPreparedDataset.from_prepared(base, records, root)
