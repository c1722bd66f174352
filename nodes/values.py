"""The values on the pack's sockets (see the table in :mod:`.common`) and how their networks move
between devices: a model's parts, a VAE, T5, Synchformer, fused conditions, masks, datasets, LoRAs.

A model with LoRAs is a :class:`ModelBundle` that shares the loaded model object and lists its
LoRAs: they are attached to the model only inside :meth:`ModelBundle.on_device` (the block in
which a node runs it) and detached after.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from . import comfy_compat


@dataclass(repr=False)
class ModelBundle:
    """An AudioX model and one memory-managed handle per part.

    Parts: ``backbone`` (``model.model``), ``maf`` (``model.maf_block``, MAF models), ``conditioner``
    (video/audio-prompt conditioners), ``vae`` (``model.pretransform``).  Each node loads only the
    parts it runs (:meth:`on_device`).  ``offload_after``: None = leave it to ComfyUI's memory
    manager (keep on the GPU until something else needs it); True = move back right after use.
    """

    model: Any
    parts: dict
    offload_after: Optional[bool]
    name: str = ""
    loras: tuple = ()           # ((audiox_core.training.LoRA, strength), ...) applied while running
    merge_loras: bool = False   # bake them into the weights while running (restored bit-exactly after)
    compile_mode: Optional[str] = None  # torch.compile the backbone while this bundle samples (None: eager)

    @property
    def config(self):
        return self.model.config

    @property
    def variant(self) -> str:
        return self.model.config.variant

    @property
    def role(self) -> str:
        return getattr(self.model, "info", {}).get("role", "")

    @property
    def is_turbo_student(self) -> bool:
        return self.model.objective == "rectified_flow" and self.role != "base"

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sample_rate)

    @property
    def window_seconds(self) -> float:
        c = self.model.config
        return c.latent_length * c.vae.downsampling_ratio / c.sample_rate

    def on_device(self, *parts: str, memory_required: int = 0):
        """Load ``parts`` for the block; with LoRAs, also attach (and optionally merge) them for it."""
        handles = [self.parts[p] for p in parts if self.parts.get(p) is not None]
        ctx = comfy_compat.models_on_device(*handles, memory_required=memory_required, offload_after=self.offload_after)
        if self.compile_mode is not None and "backbone" in parts:
            ctx = _compiled_backbone(self, ctx)
        return _with_loras(self, ctx) if self.loras else ctx

    def with_compile(self, mode: Optional[str], name: str) -> "ModelBundle":
        """A bundle of the same model whose backbone runs ``torch.compile``d (``mode``; None: eager)."""
        from dataclasses import replace
        return replace(self, compile_mode=mode, name=name)

    def with_loras(self, loras: tuple, merge: bool, name: str) -> "ModelBundle":
        """A bundle of the same model (same weights, same device handles) with ``loras`` applied."""
        from dataclasses import replace
        return replace(self, loras=tuple(loras), merge_loras=bool(merge), name=name)

    def describe(self) -> str:
        from ..audiox_core.config import VARIANT_LABELS
        c = self.model.config
        info = getattr(self.model, "info", {})
        role = {"student": "Turbo student (few-step)", "base": "base/teacher (multi-step)"}.get(self.role, "")
        lines = [f"{self.name}: {VARIANT_LABELS.get(c.variant, c.variant)}" + (f", {role}" if role else ""),
                 f"objective {c.objective}; {c.sample_rate} Hz, {c.audio_channels} ch; window "
                 f"{self.window_seconds:.2f} s ({c.latent_length} latents"
                 + (", fixed length" if self.model.fixed_length else "") + ")",
                 "conditions: " + ", ".join(s.id for s in c.conditioners)
                 + ("; video needs Synchformer sync features" if self.needs_sync else ""),
                 f"weights {info.get('dtype', '?')}; config from {info.get('config_from', '?')}"]
        lines += [f"note: {n}" for n in info.get("notes", [])]
        return "\n".join(lines)

    @property
    def needs_sync(self) -> bool:
        vc = self.model.video_conditioner
        return bool(vc is not None and getattr(vc, "with_sync", False))


@contextlib.contextmanager
def _compiled_backbone(bundle: "ModelBundle", device_ctx):
    """The shared model's backbone runs compiled for the block (graphs cached per shape on the
    backbone, so the next run reuses them) and eager again afterwards (other bundles of the same
    model are not affected)."""
    from ..audiox_core.acceleration import compile_backbone
    with device_ctx:
        compile_backbone(bundle.model, mode=None if bundle.compile_mode == "default" else bundle.compile_mode)
        try:
            yield
        finally:
            compile_backbone(bundle.model, False)


_APPLIED = "_audiox_applied_loras"  # model.__dict__ entry while a bundle's LoRAs are attached: [bundle, depth]


@contextlib.contextmanager
def _with_loras(bundle: "ModelBundle", device_ctx):
    """Attach ``bundle.loras`` (with their strengths) to the shared model for one block, merge them
    if asked, and undo everything afterwards (unmerge restores the weights bit for bit).  Each
    adapter is put on the device of the module it hooks (parts of a model may sit on different
    devices) and sent back to the offload device when the block ends.  Re-entrant for the same
    bundle; another bundle's LoRAs on the same model at the same time are refused."""
    from ..audiox_core.errors import InputError
    from ..audiox_core.training.lora import merge, unmerge
    model = bundle.model
    with device_ctx:
        state = model.__dict__.get(_APPLIED)
        if state is not None:
            if state[0] is not bundle:
                raise InputError("this model is already running with other LoRAs applied")
            state[1] += 1
            try:
                yield
            finally:
                state[1] -= 1
            return
        attached, merged = [], False
        model.__dict__[_APPLIED] = [bundle, 1]
        try:
            for lora, strength in bundle.loras:
                lora.attach(model, float(strength), check=False)
                attached.append(lora)
                for path, adapter in lora.items():
                    w = model.get_submodule(path).weight
                    adapter.to(w.device)
            if bundle.merge_loras:
                merge(model)
                merged = True
            yield
        finally:
            if merged:
                unmerge(model)
            for lora in reversed(attached):
                lora.detach()
                lora.to(comfy_compat.unet_offload_device())
            model.__dict__.pop(_APPLIED, None)


class _OneHandle:
    """``on_device()`` for a bundle of one network registered with ComfyUI (``handle``)."""

    def on_device(self):
        return comfy_compat.models_on_device(self.handle, offload_after=self.offload_after)


@dataclass(repr=False)
class VAEBundle(_OneHandle):
    """An Oobleck VAE plus the sample rate it works at (a VAE file does not store it)."""

    pretransform: Any
    handle: Any
    sample_rate: int
    offload_after: Optional[bool] = None
    name: str = ""
    path: str = ""  # the file, for VAEs loaded on their own (the model loader's ``vae`` input needs it)

    def view(self):
        from ..audiox_core.generate import VAEOnly
        return VAEOnly(self.pretransform, self.sample_rate)


@dataclass(repr=False)
class T5Bundle(_OneHandle):
    encoder: Any  # audiox_core.conditioning.t5.T5TextEncoder
    handle: Any
    offload_after: Optional[bool] = None
    name: str = ""


@dataclass(repr=False)
class SynchformerBundle(_OneHandle):
    module: Any  # audiox_core.conditioning.synchformer.Synchformer
    handle: Any
    offload_after: Optional[bool] = None
    name: str = ""


@dataclass
class ClipVisionFile:
    path: str
    description: str = ""


@dataclass(repr=False)
class SyncFeatures:
    """Synchformer features ``[1, tokens, D]`` (float32, CPU) of ``duration`` seconds from ``start``."""

    tokens: torch.Tensor
    start: float
    duration: float
    report: str = ""


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


@dataclass(repr=False)
class LoRAValue:
    """A LoRA on a socket: the adapters, the file they are saved in, and a one-line description."""

    lora: Any  # audiox_core.training.LoRA (detached)
    path: str
    name: str
    report: str = ""


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


# Short reprs: ComfyUI prints a failing node's inputs in its error report.
ModelBundle.__repr__ = lambda self: (  # type: ignore[method-assign]
    f"ModelBundle({self.name!r}, {self.variant}{', ' + self.role if self.role else ''}"
    f"{f', {len(self.loras)} LoRA(s)' if self.loras else ''})")
DatasetBundle.__repr__ = lambda self: (  # type: ignore[method-assign]
    f"DatasetBundle({len(self.data)} items from {self.folder!r}, {self.variant})")
LoRAValue.__repr__ = lambda self: f"LoRAValue({self.name!r})"  # type: ignore[method-assign]
VAEBundle.__repr__ = lambda self: f"VAEBundle({self.name!r}, {self.sample_rate} Hz)"  # type: ignore[method-assign]
T5Bundle.__repr__ = lambda self: f"T5Bundle({self.name!r})"  # type: ignore[method-assign]
SynchformerBundle.__repr__ = lambda self: f"SynchformerBundle({self.name!r})"  # type: ignore[method-assign]
SyncFeatures.__repr__ = lambda self: (  # type: ignore[method-assign]
    f"SyncFeatures({tuple(self.tokens.shape)}, {self.start:g}+{self.duration:g} s)")
Context.__repr__ = lambda self: f"Context(tokens {tuple(self.tokens.shape)}, source {self.source})"  # type: ignore[method-assign]

