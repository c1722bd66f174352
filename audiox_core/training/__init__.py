"""In-graph training for AudioX models: LoRA fine-tuning (or named parts, from scratch) with the
model's own objective, and the AudioX-Turbo DMD + GAN distillation.

Modules (each documents its math and the official facts it follows):

* :mod:`.lora`        — LoRA adapters (Linear + channel-last Conv1d), strengths, merge/unmerge, files.
* :mod:`.data`        — folder / manifest / in-memory datasets, one-time encoder cache, batches.
* :mod:`.conditions`  — training-time conditions: input masking, absent conventions, CFG dropout.
* :mod:`.objectives`  — v / rectified-flow targets, t samplers, EMA, LR schedules.
* :mod:`.trainer`     — :class:`Trainer` (fine-tuning) and :func:`evaluate_loss`.
* :mod:`.distill`     — :class:`Distiller` (DMD + diffusion-discriminator GAN).
* :mod:`.loop`, :mod:`.state` — shared loop, atomic resumable checkpoints.
* :mod:`.session`     — one run around a trainer: a folder's examples and captions, the
  shared-model rule (autograd-ready, state restored), resume, atomic publish (+ partial on Cancel).
* :mod:`.report`      — what a run tells its user: live progress text / live-view messages, preview
  clips, the final reports of a LoRA run, a distillation and a prepared dataset.
* :mod:`.plot`        — loss curves as PNG / IMAGE without matplotlib.
* :mod:`.cli`         — ``python -m audiox_core.training {lora,distill}``.

Node-friendly API: every long call takes ``callback(step, total, info)`` (``info["loss"]``,
``info["lr"]`` …; raise :class:`~audiox_core.errors.Interrupted` to stop — a consistent checkpoint
is saved first), ``history`` is a list of dicts for :func:`loss_curve_png` / :func:`loss_curve_image`.
"""
from .conditions import Masking, NO_MASKING
from .data import (CachePlan, Example, FolderDataset, InMemoryDataset, PreparedDataset, plan_for, prepare_dataset,
                   read_manifest)
from .distill import DiscriminatorHead, DistillConfig, Distiller, DistillResult
from .lora import (LoRA, attached_loras, base_fingerprint, create_lora, load_lora, lora_scope, merge,
                   merged_state_dict, resolve_targets, unmerge)
from .objectives import EMA, LRSchedule, TimeSampler, noised_and_target
from .plot import loss_curve_image, loss_curve_png
from .trainer import PARTS, TrainConfig, Trainer, TrainResult, evaluate_loss

__all__ = [
    "Masking", "NO_MASKING",
    "CachePlan", "Example", "FolderDataset", "InMemoryDataset", "PreparedDataset", "plan_for", "prepare_dataset",
    "read_manifest",
    "DiscriminatorHead", "DistillConfig", "Distiller", "DistillResult",
    "LoRA", "attached_loras", "base_fingerprint", "create_lora", "load_lora", "lora_scope", "merge",
    "merged_state_dict", "resolve_targets", "unmerge",
    "EMA", "LRSchedule", "TimeSampler", "noised_and_target",
    "loss_curve_image", "loss_curve_png",
    "PARTS", "TrainConfig", "Trainer", "TrainResult", "evaluate_loss",
]
