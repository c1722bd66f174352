"""The values on the pack's sockets (see the table in :mod:`.common`): plain ones from
:mod:`audiox_core.values`, and bundles of networks with ComfyUI's memory-managed handles.  A model
with LoRAs is a :class:`ModelBundle` sharing the loaded model object, so the model other nodes hold
(and ComfyUI caches) stays the base: inside ComfyUI its LoRAs are weight patches on clones of the
handles, elsewhere hooks attached only inside :meth:`ModelBundle.on_device`."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..audiox_core.loaded_model import (ModelInUse, backbone_compiled_during, loras_applied, encoder_parts,
                                         part_modules)
from ..audiox_core.values import (ClipVisionFile, Context, DatasetBundle, LoRAValue,  # noqa: F401 (re-exported)
                                  SyncFeatures, TimeMask)
from . import comfy_compat


@dataclass(repr=False)
class ModelBundle(ModelInUse):
    """An AudioX model and one memory-managed handle per part (:func:`model_parts`); each node loads
    only the parts it runs (:meth:`on_device`).  ``offload_after``: None = leave it to ComfyUI's
    memory manager (keep on the GPU until something else needs it); True = move back right after use.
    The encoder part always leaves right after encoding (:func:`~audiox_core.loaded_model.encoder_parts`).
    """

    model: Any
    parts: dict
    offload_after: Optional[bool]
    name: str = ""
    loras: tuple = ()           # ((audiox_core.training.LoRA, strength), ...) applied while running
    merge_loras: bool = False   # bake them into the weights while running (restored bit-exactly after)
    compile_mode: Optional[str] = None  # torch.compile the backbone while this bundle samples (None: eager)
    compile_turbo_loop: bool = False    # ... or, for a Turbo student, its whole sampling loop as one graph
    plain_parts: Optional[dict] = None  # inside ComfyUI with LoRAs: the handles without them (parts: patched clones)

    def with_loras(self, loras: tuple, merge: bool, name: str):
        """A copy with ``loras``: inside ComfyUI as weight patches on clones of the handles
        (:func:`comfy_compat.lora_patched_handles`), else attached by hooks while a node runs."""
        plain = self.plain_parts or self.parts
        bundle = dataclasses.replace(super().with_loras(loras, merge, name), parts=plain, plain_parts=None)
        patched = comfy_compat.lora_patched_handles(plain, bundle.loras) if bundle.loras else None
        if patched is None:
            return bundle
        return dataclasses.replace(bundle, parts={**plain, **patched}, plain_parts=plain)

    @contextlib.contextmanager
    def on_device(self, *parts: str, memory_required: int = 0):
        """Load ``parts`` for the block; with hooked LoRAs, also attach (and optionally merge) them for it."""
        handles = [self.parts[p] for p in parts if self.parts.get(p) is not None]
        encoders = [self.parts[p] for p in encoder_parts(parts) if self.parts.get(p) is not None]
        compile_mode = self.compile_mode if "backbone" in parts else None
        hooked = () if self.plain_parts is not None else self.loras  # patched clones carry their LoRAs
        with comfy_compat.models_on_device(*handles, memory_required=memory_required,
                                           offload_after=self.offload_after, offload_now=encoders), \
                backbone_compiled_during(self.model, compile_mode, self.compile_turbo_loop and self.is_turbo_student), \
                loras_applied(self.model, self, hooked, self.merge_loras, comfy_compat.unet_offload_device()):
            yield


def model_parts(model) -> dict:
    """One ComfyUI model handle per part of an AudioX model: ``backbone`` (``model.model``), ``conditioner``,
    ``vae`` (``model.pretransform``) and, for MAF models, ``maf``."""
    return {part: comfy_compat.wrap_model(module) for part, module in part_modules(model).items()}


class _OneHandle:
    """``on_device()`` for a bundle of one network registered with ComfyUI (``handle``)."""

    def on_device(self):
        return comfy_compat.models_on_device(self.handle, offload_after=self.offload_after)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


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

    def __repr__(self) -> str:
        return f"VAEBundle({self.name!r}, {self.sample_rate} Hz)"


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
