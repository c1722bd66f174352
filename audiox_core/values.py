"""Plain values that steps of a generation or training graph pass to each other: fused conditions,
Synchformer features, time masks, prepared datasets, LoRAs and CLIP vision files.

Their ``repr`` is short on purpose: a host (e.g. ComfyUI) prints a failing step's inputs in its
error report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass
class ClipVisionFile:
    """A CLIP ViT-B/32 vision weights file (for a checkpoint saved without its CLIP tower)."""

    path: str
    description: str = ""


@dataclass(repr=False)
class SyncFeatures:
    """Synchformer features ``[1, tokens, D]`` (float32, CPU) of ``duration`` seconds from ``start``."""

    tokens: torch.Tensor
    start: float
    duration: float
    report: str = ""

    def __repr__(self) -> str:
        return f"SyncFeatures({tuple(self.tokens.shape)}, {self.start:g}+{self.duration:g} s)"


@dataclass(repr=False)
class Context:
    """Fused conditions ready for a sampler.

    ``tokens``: the backbone's context ``[B, N, D]`` (CPU); ``conds``: the per-modality
    conditions it was made from (the sampler re-fuses them with a negative prompt, and long-form
    generation re-encodes per window); ``modality_scale``: (video, text, audio) as applied;
    ``gates``: MAF's learned gates ``[B, 3]`` or None; ``report``: one line per modality.
    """

    tokens: torch.Tensor
    conds: Any  # audiox_core.conditions.Conditions
    source: str
    modality_scale: Optional[tuple] = None
    gates: Optional[torch.Tensor] = None
    report: str = ""
    dropped: tuple = ()
    seed: int = 0

    def __repr__(self) -> str:
        return f"Context(tokens {tuple(self.tokens.shape)}, source {self.source})"


@dataclass(repr=False)
class DatasetBundle:
    """Training items prepared for one model (:class:`audiox_core.training.PreparedDataset`).

    ``source``: :func:`audiox_core.conditions.model_fingerprint` of the model whose encoders made
    the cached latents / tokens (training on another model is refused); ``folder``: where the
    files came from; ``report``: what was found and cached.
    """

    data: Any
    source: str
    variant: str
    folder: str
    report: str = ""

    def __repr__(self) -> str:
        return f"DatasetBundle({len(self.data)} items from {self.folder!r}, {self.variant})"


@dataclass(repr=False)
class LoRAValue:
    """A LoRA: the adapters, the file they are saved in, and a one-line description."""

    lora: Any  # audiox_core.training.LoRA (detached)
    path: str
    name: str
    report: str = ""

    def __repr__(self) -> str:
        return f"LoRAValue({self.name!r})"


@dataclass
class TimeMask:
    """Seconds to regenerate (``inpaint``: ``ranges``) or to keep (``complete``: ``keep_seconds``)."""

    kind: str  # "inpaint" | "complete"
    ranges: list = field(default_factory=list)
    keep_seconds: float = 0.0
    ramp_seconds: float = 0.1

    def describe(self) -> str:
        if self.kind == "inpaint":
            return "regenerate " + ", ".join(f"{a:g}–{b:g} s" for a, b in self.ranges)
        return f"keep the first {self.keep_seconds:g} s, generate the rest"
