"""Inference speed and memory options that do not change what a model computes (beyond rounding).

* :func:`compile_backbone` — ``torch.compile`` of the diffusion backbone's forward (opt-in).
  Compiled graphs are specialised per input shape (``dynamic=False``) and cached on the backbone,
  so the first generation at a new batch / length pays the compile and later ones reuse it;
  switching compile off and on again reuses the cache as well.
* :func:`store_weights_fp8` — keep the weights of the big linear layers as ``float8_e4m3fn``
  (1 byte per weight, half of bf16) and cast them per layer to the compute dtype in forward
  (weight-only fp8 storage, as ComfyUI's ``fp8_e4m3fn`` weight dtype does).
* :func:`on_device` — run a block with a module moved to a device and moved back afterwards (the
  low-VRAM pattern: encoders, backbone and VAE each on the GPU only while they run).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FieldError, InputError

log = logging.getLogger(__name__)

__all__ = ["weight_dtype", "t5_weight_dtype", "model_weight_dtype", "compile_backbone", "backbone_compiled",
           "set_static_turbo_loop", "static_turbo_loop", "store_weights_fp8", "backbone_weights_fp8", "FP8Linear",
           "has_fp8_weights", "refuse_fp8", "fp8_available", "on_device"]

_CACHE_ATTR = "_audiox_compiled_forwards"
FP8 = "fp8_e4m3fn"  # the model loader's choice of fp8 backbone weights


def weight_dtype(choice: str, device: torch.device) -> torch.dtype:
    """The weight dtype for a precision choice ``fp32`` / ``fp16`` / ``bf16``; any other choice
    (``auto``) picks by ``device``: bf16 on a CUDA GPU that supports it (else fp16), fp16 on MPS /
    XPU, fp32 on the CPU."""
    named = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if choice in named:
        return named[choice]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type in ("mps", "xpu"):
        return torch.float16
    return torch.float32


def t5_weight_dtype(choice: str, device: torch.device) -> torch.dtype:
    """T5's weight dtype: ``auto`` is fp16 on an accelerator (as the official code), fp32 on the CPU;
    other choices as :func:`weight_dtype`."""
    if choice == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    return weight_dtype(choice, device)


def model_weight_dtype(choice: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """``(dtype to load the model in, whether to store its backbone weights in fp8)`` for a precision
    choice of :func:`weight_dtype` or :data:`FP8` (loaded in the ``auto`` dtype, which is then its
    compute dtype; a :class:`FieldError` about ``dtype`` without float8 support in this PyTorch)."""
    if choice != FP8:
        return weight_dtype(choice, device), False
    if not fp8_available():
        raise FieldError("dtype", f"{FP8} needs a PyTorch with float8 types (≥ 2.1)")
    return weight_dtype("auto", device), True


# ----------------------------------------------------------------------------------------------
# torch.compile of the backbone
# ----------------------------------------------------------------------------------------------
def backbone_compiled(model) -> bool:
    """Whether ``model.backbone`` currently runs a compiled forward."""
    return "forward" in vars(model.backbone)


def compile_backbone(model, enabled: bool = True, *, backend: Union[str, object] = "inductor",
                     mode: Optional[str] = None):
    """Switch ``torch.compile`` of ``model.backbone``'s forward on (or off, ``enabled=False``).

    ``backend`` / ``mode`` are passed to ``torch.compile`` (e.g. ``mode="max-autotune"`` on CUDA;
    ``"reduce-overhead"`` adds CUDA graphs).  Inference only: training code paths leave it off.
    Returns ``model``."""
    bb = model.backbone
    if not enabled:
        vars(bb).pop("forward", None)
        return model
    if not hasattr(torch, "compile"):
        raise InputError("compile_backbone: this PyTorch has no torch.compile (needs PyTorch ≥ 2.0)")
    cache = vars(bb).setdefault(_CACHE_ATTR, {})
    key = (backend if isinstance(backend, str) else id(backend), mode)
    if key not in cache:
        plain = type(bb).forward.__get__(bb, type(bb))
        cache[key] = torch.compile(plain, backend=backend, mode=mode, dynamic=False)
        log.info("backbone: torch.compile (backend %s, mode %s); graphs are compiled per input shape", backend, mode)
    bb.forward = cache[key]
    return model


_STATIC_TURBO_ATTR = "_audiox_static_turbo_loop"


def set_static_turbo_loop(model, enabled: bool = True, *, backend: Union[str, object] = "inductor",
                          mode: Optional[str] = None):
    """Run a Turbo student's whole sampling loop as one ``torch.compile``d graph (or not,
    ``enabled=False``): :func:`~audiox_core.sampling.turbo.sample_turbo_static` through the backbone,
    noise drawn up front, fixed shapes, ``fullgraph``.  With ``mode="reduce-overhead"`` on CUDA that
    is one CUDA-graph replay per generation.  Used by :func:`audiox_core.generate.sample` for Turbo
    sampling without inpainting; per-step progress is then reported when the loop returns.
    Returns ``model``."""
    bb = model.backbone
    if not enabled:
        vars(bb).pop(_STATIC_TURBO_ATTR, None)
        return model
    if not hasattr(torch, "compile"):
        raise InputError("the static Turbo loop needs torch.compile (PyTorch ≥ 2.0)")
    vars(bb)[_STATIC_TURBO_ATTR] = (backend, mode)
    return model


def static_turbo_loop(model, steps: int):
    """The compiled ``loop(noise, fresh, context) -> x0 estimates [steps, B, C, L]`` of ``model``
    when :func:`set_static_turbo_loop` is on, else None.  Compiled once per (steps, backend, mode)
    and then per input shape, cached on the backbone."""
    from .models.blocks import tune_cpu_allocator
    from .sampling.turbo import sample_turbo_static
    bb = model.backbone
    setting = vars(bb).get(_STATIC_TURBO_ATTR)
    if setting is None:
        return None
    backend, mode = setting
    cache = vars(bb).setdefault(_CACHE_ATTR, {})
    key = ("turbo_loop", steps, backend if isinstance(backend, str) else id(backend), mode)
    if key not in cache:
        def loop(noise: torch.Tensor, fresh: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            conditioning = bb.prepare(context)
            return sample_turbo_static(lambda x, t: bb(x, t, cond_cache=conditioning), noise, fresh, steps)

        compiled = torch.compile(loop, backend=backend, mode=mode, dynamic=False, fullgraph=True)

        def run(noise: torch.Tensor, fresh: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            if noise.device.type == "cpu":
                tune_cpu_allocator()  # what the eager backbone does at its first CPU call (host-side)
            bb.build_tables(noise)  # cached tables built outside the graph: no recompile once they exist
            return compiled(noise, fresh, context)

        cache[key] = run
        log.info("Turbo: the %d-step loop is compiled as one graph (backend %s, mode %s)", steps, backend, mode)
    return cache[key]


# ----------------------------------------------------------------------------------------------
# fp8 (e4m3) weight storage
# ----------------------------------------------------------------------------------------------
def fp8_available() -> bool:
    return hasattr(torch, "float8_e4m3fn")


def has_fp8_weights(module: nn.Module) -> bool:
    """Whether ``module`` (e.g. a whole model) holds fp8-stored layers (:func:`store_weights_fp8`)."""
    return any(isinstance(m, FP8Linear) for m in module.modules())


def refuse_fp8(module: nn.Module, what: str) -> None:
    """Raise a clear error when ``what`` (training, a LoRA, ...) is asked of an fp8-stored model."""
    if has_fp8_weights(module):
        raise InputError(f"{what} needs the model's weights in fp32, fp16 or bf16; this model stores its "
                         "transformer weights in fp8 (e4m3) — load it with another dtype")


class FP8Linear(nn.Module):
    """A linear layer whose weight is stored as ``float8_e4m3fn`` with one fp32 scale per output
    row; forward casts the weight to the input's dtype (the compute dtype) and runs ``F.linear``.
    Keeps ``nn.Linear``'s attribute names (``weight``, ``bias``, ``in_features``, ``out_features``)."""

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype):
        super().__init__()
        w = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        # per-output-row scale so each row uses e4m3's range (max 448) fully
        amax = w.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        scale = amax / torch.finfo(torch.float8_e4m3fn).max
        self.register_buffer("weight_scale", scale)
        self.weight = nn.Parameter((w.float() / scale).to(torch.float8_e4m3fn), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(compute_dtype),
                                                                  requires_grad=False)

    def dequantized_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        dtype = dtype or self.compute_dtype
        return (self.weight.to(torch.float32) * self.weight_scale).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"{self.in_features}→{self.out_features}, fp8 e4m3 storage, compute {self.compute_dtype}"


def store_weights_fp8(module: nn.Module, compute_dtype: torch.dtype = torch.bfloat16, *,
                      min_features: int = 256) -> int:
    """Replace every ``nn.Linear`` of ``module`` with at least ``min_features`` inputs and outputs by
    an :class:`FP8Linear` (fp8 e4m3 storage, per-row scale, cast to ``compute_dtype`` per layer).
    Small layers stay as they are.  In place; returns the number of layers converted.  Inference
    only (the fp8 weights are not trainable).  For a whole model use :func:`backbone_weights_fp8`
    (the transformer blocks: where the weights are)."""
    if not fp8_available():
        raise InputError("fp8 weight storage needs a PyTorch with torch.float8_e4m3fn (≥ 2.1)")
    if compute_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise InputError(f"fp8 weights need a float compute dtype, got {compute_dtype}")
    targets = [(name, mod) for name, mod in module.named_modules()
               if type(mod) is nn.Linear and min(mod.in_features, mod.out_features) >= min_features]
    for name, lin in targets:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, FP8Linear(lin, compute_dtype).to(lin.weight.device))
    return len(targets)


def backbone_weights_fp8(model, compute_dtype: Optional[torch.dtype] = None, *, min_features: int = 1) -> int:
    """:func:`store_weights_fp8` on the transformer blocks of ``model.backbone`` (≈ 99 % of its
    weights; the input / output projections, whose dtype sets the backbone's working dtype, stay).
    ``compute_dtype`` defaults to the backbone's current weight dtype.  Returns the layer count."""
    bb = model.backbone
    dt = compute_dtype or bb.weight_dtype
    return store_weights_fp8(bb.transformer.layers, dt, min_features=min_features)


def loaded_backbone_fp8(model, compute_dtype: torch.dtype) -> int:
    """:func:`backbone_weights_fp8` on a freshly loaded model, recorded in ``model.info["dtype"]``
    (the weights line of its description).  Returns the layer count."""
    layers = backbone_weights_fp8(model, compute_dtype)
    compute = str(compute_dtype).replace("torch.", "")
    model.info["dtype"] = f"fp8_e4m3fn storage ({layers} layers), {compute} compute"
    return layers


# ----------------------------------------------------------------------------------------------
# low-VRAM placement
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def on_device(module: Optional[nn.Module], device: Union[str, torch.device], *,
              offload: Union[str, torch.device, None] = None) -> Iterator[None]:
    """Move ``module`` to ``device`` for the block and to ``offload`` (default: where it was)
    afterwards.  ``None`` modules are ignored."""
    if module is None:
        yield
        return
    p = next(module.parameters(), None)
    home = torch.device(offload) if offload is not None else (p.device if p is not None else torch.device("cpu"))
    module.to(device)
    try:
        yield
    finally:
        module.to(home)
