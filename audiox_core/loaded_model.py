"""A loaded AudioX model in use: its parts, what it is, and what is applied to it for one block.

:class:`ModelInUse` gives a holder of a model (``.model``, ``.name``, its LoRAs and compile mode)
the facts callers ask about it (variant, role, window, whether video needs sync features), a
description and copies with other LoRAs or compile mode.
:func:`part_modules` names the networks a memory manager moves separately.  For one block only,
:func:`backbone_compiled_during` runs the backbone ``torch.compile``d, :func:`loras_applied`
attaches (and optionally merges) LoRAs and :func:`synchformer_attached` gives the model a
Synchformer; each undoes everything after the block, so every other holder of the same model
object keeps computing the base model.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Optional

from .errors import InputError

#: ``model.__dict__`` entry while an owner's LoRAs are attached: ``[owner, depth]``
APPLIED_LORAS_KEY = "_audiox_applied_loras"
#: the parts of a model that only encode conditions: they run once per prompt / video / audio prompt
ENCODER_PARTS = frozenset({"conditioner"})


def encoder_parts(parts) -> tuple:
    """The parts among ``parts`` that go back to the offload device right after the block that ran
    them, whatever the keep-on-GPU setting: the encoders (they run once per condition; while the
    backbone samples, their VRAM is the backbone's).  Other parts follow the user's setting."""
    return tuple(p for p in parts if p in ENCODER_PARTS)


ROLE_LABELS = {"student": "Turbo student (few-step)", "base": "base/teacher (multi-step)"}


def part_modules(model) -> dict:
    """The networks of an AudioX model that move between devices on their own, by part name:
    ``backbone`` (``model.model``), ``conditioner``, ``vae`` (``model.pretransform``) and, for MAF
    models, ``maf``."""
    parts = {"backbone": model.model, "conditioner": model.conditioner, "vae": model.pretransform}
    if model.maf_block is not None:
        parts["maf"] = model.maf_block
    return parts


class ModelInUse:
    """Base of a dataclass that holds a loaded AudioX model (``model``, ``name``) with the settings
    it runs with (``loras``: ``((LoRA, strength), ...)``, ``merge_loras``, ``compile_mode``): facts
    about the model, a description, and copies of the holder with other settings (same model
    object, nothing loaded again)."""

    model: Any
    name: str
    loras: tuple
    merge_loras: bool
    compile_mode: Optional[str]
    compile_turbo_loop: bool

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

    @property
    def needs_sync(self) -> bool:
        video_conditioner = self.model.video_conditioner
        return bool(video_conditioner is not None and getattr(video_conditioner, "with_sync", False))

    def describe(self) -> str:
        """A few lines: variant and role, rate and window, conditions, weights and notes."""
        from .config import VARIANT_LABELS
        c = self.model.config
        info = getattr(self.model, "info", {})
        role = ROLE_LABELS.get(self.role, "")
        lines = [f"{self.name}: {VARIANT_LABELS.get(c.variant, c.variant)}" + (f", {role}" if role else ""),
                 f"objective {c.objective}; {c.sample_rate} Hz, {c.audio_channels} ch; window "
                 f"{self.window_seconds:.2f} s ({c.latent_length} latents"
                 + (", fixed length" if self.model.fixed_length else "") + ")",
                 "conditions: " + ", ".join(s.id for s in c.conditioners)
                 + ("; video needs Synchformer sync features" if self.needs_sync else ""),
                 f"weights {info.get('dtype', '?')}; config from {info.get('config_from', '?')}"]
        lines += [f"note: {n}" for n in info.get("notes", [])]
        return "\n".join(lines)

    def with_compile(self, mode: Optional[str], name: str, turbo_loop: bool = False):
        """A copy whose backbone runs ``torch.compile``d (``mode``; None: eager); ``turbo_loop``: a Turbo
        student's whole sampling loop is compiled as one graph instead
        (:func:`audiox_core.acceleration.set_static_turbo_loop`)."""
        return dataclasses.replace(self, compile_mode=mode, compile_turbo_loop=bool(turbo_loop and mode), name=name)

    def with_loras(self, loras: tuple, merge: bool, name: str):
        """A copy (same weights, same device handles) with ``loras`` applied."""
        return dataclasses.replace(self, loras=tuple(loras), merge_loras=bool(merge), name=name)

    def __repr__(self) -> str:  # short: hosts print a failing step's inputs in their error reports
        return (f"{type(self).__name__}({self.name!r}, {self.variant}{', ' + self.role if self.role else ''}"
                f"{f', {len(self.loras)} LoRA(s)' if self.loras else ''})")


@contextlib.contextmanager
def backbone_compiled_during(model, mode: Optional[str], turbo_loop: bool = False):
    """The model's backbone runs ``torch.compile``d (``mode``; ``"default"``: torch's default mode)
    for the block and eager again afterwards; graphs stay cached per shape on the backbone, so the
    next block reuses them.  ``turbo_loop`` (for a Turbo student): the Turbo sampler's whole loop
    is compiled as one graph instead, and the backbone itself stays eager.  ``mode=None``: nothing
    changes."""
    if mode is None:
        yield
        return
    from .acceleration import compile_backbone, set_static_turbo_loop
    switch = set_static_turbo_loop if turbo_loop else compile_backbone
    switch(model, mode=None if mode == "default" else mode)
    try:
        yield
    finally:
        switch(model, False)


@contextlib.contextmanager
def synchformer_attached(model, synchformer):
    """The model runs ``synchformer`` (a Synchformer module) for the block, e.g. long-form video from a
    fused context re-encoded with the Synchformer it was encoded with; its own one again afterwards.
    ``synchformer=None``: nothing changes."""
    if synchformer is None:
        yield
        return
    previous = model.synchformer
    model.set_synchformer(synchformer)
    try:
        yield
    finally:
        model.set_synchformer(previous)


@contextlib.contextmanager
def loras_applied(model, owner: object, loras: tuple, merge: bool, offload_device):
    """Attach ``loras`` (``((LoRA, strength), ...)``) to ``model`` for the block, merge them if
    ``merge``, and undo everything afterwards (unmerging restores the weights bit for bit).  Each
    adapter is put on the device of the module it hooks (parts of a model may sit on different
    devices) and sent to ``offload_device`` when the block ends.  Re-entrant for the same ``owner``;
    another owner's LoRAs on the same model at the same time are refused.  No LoRAs: nothing changes."""
    if not loras:
        yield
        return
    state = model.__dict__.get(APPLIED_LORAS_KEY)
    if state is not None:
        if state[0] is not owner:
            raise InputError("this model is already running with other LoRAs applied")
        state[1] += 1
        try:
            yield
        finally:
            state[1] -= 1
        return
    with _attached(model, owner, loras, merge, offload_device):
        yield


@contextlib.contextmanager
def _attached(model, owner, loras, merge, offload_device):
    from .training.lora import merge as merge_into_weights, unmerge
    attached, merged = [], False
    model.__dict__[APPLIED_LORAS_KEY] = [owner, 1]
    try:
        for lora, strength in loras:
            lora.attach(model, float(strength), check=False)
            attached.append(lora)
            for path, adapter in lora.items():
                adapter.to(model.get_submodule(path).weight.device)
        if merge:
            merge_into_weights(model)
            merged = True
        yield
    finally:
        if merged:
            unmerge(model)
        for lora in reversed(attached):
            lora.detach()
            lora.to(offload_device)
        model.__dict__.pop(APPLIED_LORAS_KEY, None)
