"""Pre-training of the demo's byte-level T5 on world captions (recipe stage ``text``).

Why this stage exists
---------------------
The released AudioX models read text through a *pretrained, frozen* t5-base.  The demo's T5 is
byte-level and starts from random weights; trained only through the diffusion loss (recipe of
the first shipped demo model) it learnt to tell captions apart far too slowly: after 6000 base
steps the flow loss with the right caption was only 1.8 % below the loss with another scene's
caption (video absent; ``bench/condition_gap.py``), and text→audio category accuracy stayed at
chance.  So, as a real T5 arrives pre-trained on language, the demo
T5 is pre-trained on the world's language: linear heads read the attributes a caption expresses
(:func:`caption_labels`) from **every non-padding token** of the T5 output.  Per-token heads force
each token to carry the whole caption, which is what the MMDiT needs: it reads the context
through a fixed linear mix over token positions (``proj_mm_seq_len``), not by attention, so
information sitting in one word at a varying position is hard for it to use.  The heads are
discarded; the base stage then keeps this T5 frozen (as the official keeps t5-base frozen).

Only ``train``-split scenes are used (:func:`audiox_core.demo.world.make_dataset`), so the
held-out attribute combinations of ``bench/quality.py`` are never seen; :func:`evaluate` reports
the heads' accuracy on ``test``-split captions (combinations never seen here).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .world import DEFAULT_CONFIG, SceneSpec, WorldConfig, make_dataset
from .dataset import caption_variants

__all__ = ["TextPretrainConfig", "HEADS", "caption_labels", "pretrain_t5", "evaluate"]

IGNORE = -100
MAX_RUNS = 4  # max_events 4 → at most 4 runs of equal events


def _heads(cfg: WorldConfig = DEFAULT_CONFIG) -> Dict[str, int]:
    h = {"kind": 2, "noise": 2, "n_runs": MAX_RUNS + 1}
    for i in range(MAX_RUNS):
        h[f"run{i}_count"] = 5            # 0 = no such run, 1..4
        h[f"run{i}_category"] = len(cfg.categories) + 1   # 0 = no such run
        h[f"run{i}_pitch"] = len(cfg.pitch_centers) + 1   # 0 = unpitched or no such run
    h.update(instrument=len(cfg.instruments), tempo=len(cfg.tempo_ranges), key=len(cfg.keys),
             mode=len(cfg.modes), pattern=len(cfg.patterns))
    return h


#: Head name → number of classes (default world).
HEADS = _heads()


def caption_labels(spec: SceneSpec, cfg: WorldConfig = DEFAULT_CONFIG) -> Dict[str, int]:
    """The class index of every head for the attributes ``spec``'s captions express
    (``IGNORE`` where a head does not apply: music heads on event scenes and vice versa)."""
    out = {k: IGNORE for k in _heads(cfg)}
    out["kind"] = int(spec.kind == "music")
    out["noise"] = int(spec.noise_db is not None)
    if spec.kind == "music":
        m = spec.music
        out.update(instrument=cfg.instruments.index(m.instrument),
                   tempo=[t[0] for t in cfg.tempo_ranges].index(m.tempo),
                   key=cfg.keys.index(m.key), mode=cfg.modes.index(m.mode), pattern=cfg.patterns.index(m.pattern))
        return out
    runs = spec.runs
    out["n_runs"] = len(runs)
    pitches = [p[0] for p in cfg.pitch_centers]
    for i in range(MAX_RUNS):
        if i < len(runs):
            count, cat, pitch = runs[i]
            out[f"run{i}_count"] = int(count)
            out[f"run{i}_category"] = cfg.categories.index(cat) + 1
            out[f"run{i}_pitch"] = 0 if pitch is None else pitches.index(pitch) + 1
        else:
            out[f"run{i}_count"] = out[f"run{i}_category"] = out[f"run{i}_pitch"] = 0
    return out


@dataclass
class TextPretrainConfig:
    steps: int = 600
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 30
    weight_decay: float = 0.01
    n_scenes: int = 20000        # train-split scenes the captions are drawn from
    seed: int = 0
    eval_scenes: int = 400       # test-split scenes for :func:`evaluate`


class _Heads(nn.Module):
    def __init__(self, dim: int, heads: Dict[str, int]):
        super().__init__()
        self.names = list(heads)
        self.lin = nn.ModuleDict({k: nn.Linear(dim, n) for k, n in heads.items()})

    def forward(self, h: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {k: self.lin[k](h) for k in self.names}


def _encode(t5_model, tokenizer, captions: Sequence[str], max_length: int = 128):
    """T5 hidden states [B, N, D] (padded to the longest caption; T5 masks padded keys, so the
    non-padding rows equal those of the official 128-token padding) and the mask [B, N]."""
    enc = tokenizer(list(captions), truncation=True, max_length=max_length, padding="max_length")
    mask = enc["attention_mask"]
    n = int(mask.sum(1).max())
    ids, mask = enc["input_ids"][:, :n], mask[:, :n]
    h = t5_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    return h, mask.bool()


def _batch_labels(specs, heads, world: WorldConfig) -> Dict[str, torch.Tensor]:
    labs = [caption_labels(s, world) for s in specs]
    return {k: torch.tensor([l[k] for l in labs], dtype=torch.long) for k in heads}


def _token_loss(logits: Dict[str, torch.Tensor], labels: Dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every head at every non-padding token (mean over heads that apply)."""
    total, n = 0.0, 0
    for k, lg in logits.items():
        y = labels[k][:, None].expand(mask.shape)
        y = torch.where(mask, y, torch.full_like(y, IGNORE))
        if bool((y != IGNORE).any()):
            total = total + F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
            n += 1
    return total / max(1, n)


def pretrain_t5(t5_model, tokenizer, cfg: Optional[TextPretrainConfig] = None, *,
                world: WorldConfig = DEFAULT_CONFIG,
                callback: Optional[Callable[[int, int, dict], None]] = None) -> dict:
    """Train ``t5_model`` (a ``transformers.T5EncoderModel``, in place) with per-token attribute
    heads on captions of train-split scenes; returns ``{"steps", "seconds", "loss_last_50",
    "heldout": evaluate(...)}``.  ``callback(step, steps, {"loss", "lr"})`` after every step;
    raising from it stops the run (the model keeps the last completed step)."""
    cfg = cfg or TextPretrainConfig()
    heads = _heads(world)
    torch.manual_seed(cfg.seed)
    head = _Heads(t5_model.config.d_model, heads)
    t5_model.train().requires_grad_(True)
    params = list(t5_model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scenes = make_dataset(cfg.n_scenes, cfg.seed + 4242, "train", world)
    rng = np.random.default_rng([cfg.seed, 0x7E47])
    losses: List[float] = []
    t0 = time.perf_counter()
    try:
        for step in range(cfg.steps):
            p = step / max(1, cfg.steps)
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup)) * 0.5 * (1 + math.cos(math.pi * p))
            for g in opt.param_groups:
                g["lr"] = lr
            specs = [scenes[int(i)] for i in rng.integers(len(scenes), size=cfg.batch)]
            caps = [_random_caption(s, rng) for s in specs]
            h, mask = _encode(t5_model, tokenizer, caps)
            loss = _token_loss(head(h), _batch_labels(specs, heads, world), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if callback is not None:
                callback(step + 1, cfg.steps, {"loss": losses[-1], "lr": lr})
    finally:
        t5_model.eval().requires_grad_(False)
    secs = time.perf_counter() - t0
    return {"steps": len(losses), "seconds": round(secs, 1),
            "loss_last_50": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "heldout": evaluate(t5_model, tokenizer, head, n=cfg.eval_scenes, seed=cfg.seed, world=world)}


def _random_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    caps = caption_variants(spec, rng, 2)   # canonical + one varied wording
    return caps[int(rng.integers(len(caps)))]


@torch.no_grad()
def evaluate(t5_model, tokenizer, head: "_Heads", *, n: int = 400, seed: int = 0,
             world: WorldConfig = DEFAULT_CONFIG, batch: int = 100) -> Dict[str, float]:
    """Per-head accuracy on captions of ``n`` test-split scenes (combinations never used for
    training), predicted from the mean of the per-token logits; ``all_event_runs``: every run's
    count, category and pitch right; ``all_music``: every music attribute right."""
    scenes = make_dataset(n, seed + 9191, "test", world)
    rng = np.random.default_rng([seed, 0xE7A1])
    heads = head.names
    right = {k: 0 for k in heads}
    seen = {k: 0 for k in heads}
    ev_ok = ev_n = mu_ok = mu_n = 0
    for s in range(0, n, batch):
        specs = scenes[s:s + batch]
        h, mask = _encode(t5_model, tokenizer, [_random_caption(sp, rng) for sp in specs])
        logits = head(h)
        m = mask[..., None].float()
        labels = _batch_labels(specs, heads, world)
        ok_all = torch.ones(len(specs), dtype=torch.bool)
        for k in heads:
            pred = ((logits[k] * m).sum(1) / m.sum(1)).argmax(-1)
            y = labels[k]
            valid = y != IGNORE
            right[k] += int((pred == y)[valid].sum())
            seen[k] += int(valid.sum())
            ok_all &= (pred == y) | ~valid
        is_music = labels["kind"] == 1
        ev_ok += int((ok_all & ~is_music).sum())
        ev_n += int((~is_music).sum())
        mu_ok += int((ok_all & is_music).sum())
        mu_n += int(is_music.sum())
    out = {k: right[k] / seen[k] for k in heads if seen[k]}
    out["all_event_runs"] = ev_ok / max(1, ev_n)
    out["all_music"] = mu_ok / max(1, mu_n)
    out["n"] = n
    return out
