"""What the node modules share: socket types, the values on them, and errors that name node and input.

Socket types (custom, all-caps, prefixed so they never clash with core or other packs)::

    AUDIOX_MODEL         ModelBundle      an AudioX model (+ how its parts move between devices)
    AUDIOX_VAE           VAEBundle        an Oobleck VAE (the model's own, or a separate file)
    AUDIOX_T5            T5Bundle         a T5 text encoder
    AUDIOX_CLIP_VISION   ClipVisionFile   a CLIP ViT-B/32 vision file (given to the model loader)
    AUDIOX_SYNCHFORMER   SynchformerBundle  the Synchformer visual extractor
    AUDIOX_COND          audiox_core.conditions.Condition   one modality's tokens (cacheable)
    AUDIOX_SYNC          SyncFeatures     Synchformer features of one video window
    AUDIOX_CONTEXT       Context          fused conditions + the MAF gate report
    AUDIOX_MASK          TimeMask         which seconds to regenerate / keep
    AUDIOX_DATASET       DatasetBundle    training items with their encoder outputs (prepared once)
    AUDIOX_LORA          LoRAValue        a LoRA (trained in the graph or read from models/loras)

A model with LoRAs (AudioX LoRA Loader, AudioX Train LoRA) is a :class:`ModelBundle` that shares
the loaded model object and lists its LoRAs: they are attached to the model only inside
:meth:`ModelBundle.on_device` (the block in which a node runs it) and detached after, so the
model that other nodes hold — and ComfyUI caches — keeps computing the base model.

Errors: every failure a user can cause is raised as :class:`NodeError` whose message starts with
the node's display name and names the input, e.g. ``AudioX Video Encoder: input 'video' has no
frames``.  :func:`node_function` wraps a node's FUNCTION so that errors raised by ``audiox_core``
(which name the problem but not the node) get the node's name in front.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..audiox_core.errors import AudioXError, Interrupted
from . import comfy_compat as cc

log = logging.getLogger(__name__)

CATEGORY = "audio/AudioX"

MODEL = "AUDIOX_MODEL"
VAE = "AUDIOX_VAE"
T5 = "AUDIOX_T5"
CLIP_VISION = "AUDIOX_CLIP_VISION"
SYNCHFORMER = "AUDIOX_SYNCHFORMER"
COND = "AUDIOX_COND"
SYNC = "AUDIOX_SYNC"
CONTEXT = "AUDIOX_CONTEXT"
MASK = "AUDIOX_MASK"
DATASET = "AUDIOX_DATASET"
LORA = "AUDIOX_LORA"

DTYPE_OPTIONS = ["auto", "fp32", "fp16", "bf16"]
DTYPE_TOOLTIP = ("Weight precision. auto: bf16 on a GPU that supports it (else fp16), fp32 on the CPU. "
                 "fp16/bf16 halve the memory; the VAE always decodes in fp32 as the official code does.")
MAX_SECONDS = 300.0


# ============================================================================================
# errors
# ============================================================================================
class NodeError(AudioXError, ValueError):
    """A user-caused failure of one node; the message names the node and (usually) the input."""


def node_error(node: str, input_name: Optional[str], message: str) -> NodeError:
    """``NodeError("<node>: input '<input>' <message>")`` (or without the input part)."""
    where = f"input '{input_name}' " if input_name else ""
    return NodeError(f"{node}: {where}{message}")


@contextlib.contextmanager
def about_input(node: str, input_name: str):
    """Re-raise core errors inside the block as errors of ``input_name`` of ``node``."""
    try:
        yield
    except (NodeError, Interrupted):
        raise
    except AudioXError as e:
        raise NodeError(f"{node}: input '{input_name}': {e}") from e


def node_function(fn):
    """Decorator for a node's FUNCTION: core errors get the node's display name in front, and a
    NaN / infinite number in any input is refused before the node does anything (ComfyUI's min/max
    checks let NaN through, and nodes are also called from the API and from other packs)."""
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        for k, v in kwargs.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise node_error(type(self).DISPLAY_NAME, k, f"must be a finite number, got {v}")
        try:
            return fn(self, *args, **kwargs)
        except (NodeError, Interrupted):
            raise
        except AudioXError as e:
            raise NodeError(f"{type(self).DISPLAY_NAME}: {e}") from e
    return run


def check_widgets(cls, values: dict) -> "str | bool":
    """``True``, or a message naming the first widget value of ``values`` that breaks its own
    INPUT_TYPES declaration: NaN / infinite numbers, numbers outside min..max, a choice not in
    the list.  For ``VALIDATE_INPUTS``: ComfyUI skips its own min/max checks for every input a
    node's ``VALIDATE_INPUTS`` takes, so this redoes them (and adds the finite check they lack).
    ``None`` values (linked inputs, checked when the node runs) are skipped."""
    spec = cls.INPUT_TYPES()
    decl = {**spec.get("required", {}), **spec.get("optional", {})}
    node = cls.DISPLAY_NAME
    for name, v in values.items():
        if v is None or name not in decl:
            continue
        typ = decl[name][0]
        opts = decl[name][1] if len(decl[name]) > 1 else {}
        if typ in ("FLOAT", "INT"):
            try:
                x = float(v)
            except (TypeError, ValueError):
                return f"{node}: input '{name}' must be a number, got {v!r}"
            if not math.isfinite(x):
                return f"{node}: input '{name}' must be a finite number, got {v}"
            if "min" in opts and x < opts["min"]:
                return f"{node}: input '{name}' is {v}, below its minimum {opts['min']}"
            if "max" in opts and x > opts["max"]:
                return f"{node}: input '{name}' is {v}, above its maximum {opts['max']}"
        elif isinstance(typ, (list, tuple)) and v not in typ:
            return f"{node}: input '{name}' is {v!r}, not one of {list(typ)[:20]}"
    return True


def expect(value: Any, cls: type, node: str, input_name: str, what: str) -> Any:
    """``value`` if it is a ``cls``, else a NodeError saying what the input needs."""
    if not isinstance(value, cls):
        raise node_error(node, input_name, f"needs {what}, got {type(value).__name__}")
    return value


# ============================================================================================
# dtype / devices
# ============================================================================================
def resolve_dtype(choice: str, device: Optional[torch.device] = None) -> torch.dtype:
    """The torch dtype for a DTYPE_OPTIONS choice (``auto`` depends on the compute device)."""
    if choice == "fp32":
        return torch.float32
    if choice == "fp16":
        return torch.float16
    if choice == "bf16":
        return torch.bfloat16
    device = device or cc.get_torch_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type in ("mps", "xpu"):
        return torch.float16
    return torch.float32


def _handle_device(handle) -> Optional[torch.device]:
    for t in handle.model.parameters():
        return t.device
    return None


# ============================================================================================
# values on the sockets
# ============================================================================================
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
        ctx = cc.models_on_device(*handles, memory_required=memory_required, offload_after=self.offload_after)
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
                lora.to(cc.unet_offload_device())
            model.__dict__.pop(_APPLIED, None)


class _OneHandle:
    """``on_device()`` for a bundle of one network registered with ComfyUI (``handle``)."""

    def on_device(self):
        return cc.models_on_device(self.handle, offload_after=self.offload_after)


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


def audio_output(waveform: torch.Tensor, sample_rate: int) -> dict:
    """A ComfyUI AUDIO dict on the intermediate device (float32 ``[B, C, T]``)."""
    return {"waveform": waveform.detach().to(cc.intermediate_device(), torch.float32).contiguous(),
            "sample_rate": int(sample_rate)}


def check_audio_input(audio: Any, node: str, input_name: str) -> tuple[torch.Tensor, int]:
    """``(waveform [B, C, T], sample_rate)`` of a ComfyUI AUDIO, or a NodeError naming the input."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise node_error(node, input_name, f"needs an AUDIO (e.g. from Load Audio), got {type(audio).__name__}")
    w, sr = audio["waveform"], audio["sample_rate"]
    if not torch.is_tensor(w) or w.dim() not in (2, 3):
        raise node_error(node, input_name, f"has a waveform of shape {getattr(w, 'shape', None)}; expected [B, C, T]")
    if w.dim() == 2:
        w = w.unsqueeze(0)
    if w.shape[-1] == 0:
        raise node_error(node, input_name, "is empty (0 samples)")
    from ..audiox_core.finite import all_finite
    if not all_finite(w):  # slice-wise: a long AUDIO is not copied several times over
        raise node_error(node, input_name, "contains NaN or infinite samples")
    try:
        sr = int(sr)
    except (TypeError, ValueError):
        raise node_error(node, input_name, f"has a bad sample_rate {sr!r}") from None
    if sr <= 0:
        raise node_error(node, input_name, f"has a bad sample_rate {sr}")
    return w.float(), sr


def device_of(handle) -> Optional[torch.device]:
    return _handle_device(handle)
