"""What the node modules share: socket types, the values on them, input declarations, and errors
that name node and input (e.g. ``AudioX Video Encoder: input 'video' has no frames``).

Socket types are custom, all-caps and prefixed so they never clash with core or other packs; each
constant below names the value class that travels on it (:mod:`.values`).
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Optional

import torch

from ..audiox_core.acceleration import weight_dtype
from ..audiox_core.errors import AudioXError, FieldError, InputError, Interrupted
from ..audiox_core.media.audio import checked_audio_value
from . import comfy_compat
from .values import (ClipVisionFile, Context, DatasetBundle, LoRAValue, ModelBundle,  # noqa: F401 (re-exported)
                     SyncFeatures, SynchformerBundle, T5Bundle, TimeMask, VAEBundle)

CATEGORY = "audio/AudioX"

MODEL = "AUDIOX_MODEL"  # ModelBundle: an AudioX model (+ how its parts move between devices)
VAE = "AUDIOX_VAE"  # VAEBundle: an Oobleck VAE (the model's own, or a separate file)
T5 = "AUDIOX_T5"  # T5Bundle: a T5 text encoder
CLIP_VISION = "AUDIOX_CLIP_VISION"  # ClipVisionFile: a CLIP ViT-B/32 vision file (given to the model loader)
SYNCHFORMER = "AUDIOX_SYNCHFORMER"  # SynchformerBundle: the Synchformer visual extractor
COND = "AUDIOX_COND"  # audiox_core.conditions.Condition: one modality's tokens (cacheable)
SYNC = "AUDIOX_SYNC"  # SyncFeatures: Synchformer features of one video window
CONTEXT = "AUDIOX_CONTEXT"  # Context: fused conditions + the MAF gate report
MASK = "AUDIOX_MASK"  # TimeMask: which seconds to regenerate / keep
DATASET = "AUDIOX_DATASET"  # DatasetBundle: training items with their encoder outputs (prepared once)
LORA = "AUDIOX_LORA"  # LoRAValue: a LoRA (trained in the graph or read from models/loras)

DTYPE_OPTIONS = ["auto", "fp32", "fp16", "bf16"]
DTYPE_TOOLTIP = ("Weight precision. auto: bf16 on a GPU that supports it (else fp16), fp32 on the CPU. "
                 "fp16/bf16 halve the memory; the VAE always decodes in fp32 as the official code does.")
MAX_SECONDS = 300.0
MAX_SEED = 0xFFFFFFFFFFFFFFFF
HIDDEN = {"unique_id": "UNIQUE_ID"}  # the node id, for progress bars (make_progress_callback)


# ---------- input declarations: one line per input ----------------------------------------------------
def socket_input(type_name: str, tooltip: str, **options) -> tuple:
    return (type_name, {"tooltip": tooltip, **options})


def float_input(default: float, min: float, max: float, step: float, tooltip: str, **options) -> tuple:
    return ("FLOAT", {"default": default, "min": min, "max": max, "step": step, "tooltip": tooltip, **options})


def int_input(default: int, min: int, max: int, tooltip: str, **options) -> tuple:
    return ("INT", {"default": default, "min": min, "max": max, "tooltip": tooltip, **options})


def string_input(default: str, tooltip: str, **options) -> tuple:
    return ("STRING", {"default": default, "tooltip": tooltip, **options})


def bool_input(default: bool, tooltip: str, **options) -> tuple:
    return ("BOOLEAN", {"default": default, "tooltip": tooltip, **options})


def choice_input(options: "list | tuple", default: str, tooltip: str, **extra) -> tuple:
    return (list(options), {"default": default, "tooltip": tooltip, **extra})


def outputs(*declared: tuple) -> tuple:
    """``RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((type, name, tooltip), ...)``: one line per output."""
    return tuple(zip(*declared))


# ---------- errors ------------------------------------------------------------------------------------
class NodeError(AudioXError, ValueError):
    """A user-caused failure of one node; the message names the node and (usually) the input."""


def node_error(node: str, input_name: Optional[str], message: str) -> NodeError:
    """``NodeError("<node>: input '<input>' <message>")`` (or without the input part)."""
    where = f"input '{input_name}' " if input_name else ""
    return NodeError(f"{node}: {where}{message}")


@contextlib.contextmanager
def about_input(node: str, input_name: str):
    """Re-raise core errors inside the block as errors of ``input_name`` of ``node``; a :class:`FieldError`
    about another field goes on to :func:`node_function`, which names that input."""
    try:
        yield
    except (NodeError, Interrupted):
        raise
    except AudioXError as e:
        if isinstance(e, FieldError) and e.field != input_name:
            raise
        raise NodeError(f"{node}: input '{input_name}': {e}") from e


def declared_inputs(cls) -> set:
    """The names of every input (required, optional, hidden) that node class ``cls`` declares."""
    return {name for section in cls.INPUT_TYPES().values() for name in section}


def node_function(fn):
    """Decorator for a node's FUNCTION: a NaN / infinite number in any input is refused before the node
    does anything (ComfyUI's min/max checks let NaN through; nodes are also called from the API and from
    other packs); core errors get the node's display name in front, a :class:`FieldError` about one of
    the node's inputs also that input's name."""
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        node = type(self).DISPLAY_NAME
        for k, v in kwargs.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise node_error(node, k, f"must be a finite number, got {v}")
        try:
            return fn(self, *args, **kwargs)
        except (NodeError, Interrupted):
            raise
        except AudioXError as e:
            is_input = isinstance(e, FieldError) and e.field in declared_inputs(type(self))
            raise node_error(node, e.field if is_input else None, str(e)) from e
    return run


def check_widgets(cls, values: dict) -> "str | bool":
    """For ``VALIDATE_INPUTS`` (ComfyUI then skips its own min/max checks of the inputs it takes):
    ``True``, or a message naming the first widget value of ``values`` (``None``, a link, is skipped)
    that is not finite, is outside min..max, or is a choice not in the list."""
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


def expect(value: Any, cls: type, node: str, input_name: str, what: str, *, optional: bool = False) -> Any:
    """``value`` if it is a ``cls`` (or None for an ``optional`` input), else a NodeError saying what the
    input needs."""
    if not isinstance(value, cls) and not (optional and value is None):
        raise node_error(node, input_name, f"needs {what}, got {type(value).__name__}")
    return value


# ---------- dtype / AUDIO values ----------------------------------------------------------------------
def resolve_dtype(choice: str, device: Optional[torch.device] = None) -> torch.dtype:
    """The torch dtype for a DTYPE_OPTIONS choice on the compute device."""
    return weight_dtype(choice, device or comfy_compat.get_torch_device())


def audio_output(waveform: torch.Tensor, sample_rate: int) -> dict:
    """A ComfyUI AUDIO dict on the intermediate device (float32 ``[B, C, T]``)."""
    return {"waveform": waveform.detach().to(comfy_compat.intermediate_device(), torch.float32).contiguous(),
            "sample_rate": int(sample_rate)}


def check_audio_input(audio: Any, node: str, input_name: str) -> tuple[torch.Tensor, int]:
    """``(waveform [B, C, T], sample_rate)`` of a ComfyUI AUDIO, or a NodeError naming the input."""
    try:
        return checked_audio_value(audio)
    except InputError as e:
        raise node_error(node, input_name, str(e)) from None
