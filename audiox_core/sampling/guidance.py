"""Classifier-free guidance over a conditioned model function (the official backbone forward's CFG;
AudioX-Turbo runs at scale 1, no CFG).

Model function contract
-----------------------
``model_fn(x, t, cond) -> out`` where ``x`` is [B, C, L], ``t`` a [B] tensor and ``cond`` an
opaque conditioning object for the same B items; ``out`` has ``x``'s shape (the v-prediction in
the official code, or a velocity for rectified flow).  ``cond`` may be anything the network
understands (the fused cross-attention context, an MMDiT condition cache, ...).  Batched CFG
needs to concatenate a positive and a negative ``cond`` along the batch; :func:`batch_concat`
does that for

* tensors (``torch.cat(dim=0)``; all other dims must match),
* ``None`` with ``None``,
* objects with a ``cat(other)`` method (use this for custom caches: return the [2B] object,
  positive items first),
* dataclasses (field by field), dicts (same keys), lists/tuples (same length), recursively,
* equal non-tensor leaves (ints, strings, ...), which are kept as they are.

Anything else cannot be batched: use ``batched=False`` (two calls per evaluation).

Per-generation caches: pass ``prepare=fn`` and ``fn`` is applied ONCE to the conditioning the
network will see -- the batched ``[cond; uncond]`` object (batched CFG), ``cond`` and ``uncond``
separately (``batched=False``) or ``cond`` alone (scale 1) -- and its result is what
``model_fn`` receives at every step.  E.g. ``prepare=backbone.prepare`` with
``model_fn = lambda x, t, cache: backbone(x, t, cond_cache=cache)`` builds the DiT / MMDiT
condition cache for the doubled batch once, as those backbones expect.

Guidance (the official op order)::

    c, u = model_fn([x; x], [t; t], [cond; uncond]).chunk(2)     # cond first
    out  = u + (c - u) * scale
    if phi != 0:  out = phi * (out * (std(c) / std(out))) + (1 - phi) * out

with ``std`` the unbiased standard deviation over dim 1 (the 64 latent channels) per batch item
and time step.  The official code guides the *v-prediction* inside the network; wrap this object
in ``VDenoiser`` for the k-diffusion samplers (plain CFG commutes with the denoiser's affine map,
the rescale does not).  ``scale == 1`` makes no unconditional call at all and returns exactly
``model_fn(x, t, cond)``, as the official ``cfg_scale != 1`` test.

The official unconditional branch is an all-zero context of the same shape (built by the
pipeline, not here).  A negative prompt is simply a different ``uncond``; the official code
crashes on negative conditioning (its negative mask has the wrong shape), this supports it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import torch

from ..errors import InputError

__all__ = ["ConditionedModelFn", "batch_concat", "cfg_combine", "ClassifierFreeGuidance"]

ConditionedModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def batch_concat(a: Any, b: Any, _path: str = "cond") -> Any:
    """Concatenate two conditioning objects along the batch (``a`` first); see module doc."""
    if a is None and b is None:
        return None
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.ndim == 0 or a.ndim != b.ndim or a.shape[1:] != b.shape[1:]:
            raise InputError(f"cannot batch {_path} for guidance: conditional shape {tuple(a.shape)} vs "
                             f"unconditional shape {tuple(b.shape)} (all but the batch dim must agree)")
        return torch.cat([a, b.to(device=a.device, dtype=a.dtype)], dim=0)
    if hasattr(a, "cat") and callable(getattr(a, "cat")) and type(a) is type(b):
        return a.cat(b)
    if dataclasses.is_dataclass(a) and not isinstance(a, type) and type(a) is type(b):
        values = {f.name: batch_concat(getattr(a, f.name), getattr(b, f.name), f"{_path}.{f.name}")
                  for f in dataclasses.fields(a) if f.init}
        return dataclasses.replace(a, **values)
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            raise InputError(f"cannot batch {_path} for guidance: keys differ ({sorted(set(a) ^ set(b))})")
        return type(a)((k, batch_concat(a[k], b[k], f"{_path}[{k!r}]")) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            raise InputError(f"cannot batch {_path} for guidance: lengths {len(a)} and {len(b)} differ")
        items = [batch_concat(x, y, f"{_path}[{i}]") for i, (x, y) in enumerate(zip(a, b))]
        return type(a)(*items) if hasattr(a, "_fields") else type(a)(items)
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and type(a) is type(b):
        try:
            if a == b:
                return a
        except Exception:  # noqa: BLE001 - incomparable objects fall through to the error
            pass
    raise InputError(
        f"cannot batch {_path} for guidance ({type(a).__name__} with {type(b).__name__}); give the "
        f"conditioning a cat(other) method or use unbatched guidance (batched=False)")


def cfg_combine(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale: float,
                rescale_phi: float = 0.0) -> torch.Tensor:
    """``u + (c - u) * scale``, then the official std-ratio rescale over dim 1 when phi != 0."""
    out = uncond_out + (cond_out - uncond_out) * scale
    if rescale_phi != 0.0:
        cond_std = cond_out.std(dim=1, keepdim=True)
        out_std = out.std(dim=1, keepdim=True)
        out = rescale_phi * (out * (cond_std / out_std)) + (1 - rescale_phi) * out
    return out


class ClassifierFreeGuidance:
    """``velocity(x, t)`` with guidance applied: ``ClassifierFreeGuidance(model_fn, cond, uncond, 7.0)``.

    Args:
        model_fn: ``model_fn(x, t, cond) -> out`` (see module doc).
        cond: positive conditioning for the B items.
        uncond: the unconditional / negative conditioning (required unless ``scale == 1``).
        scale: guidance scale; 1 => a single conditional call, bit-identical to no guidance.
        rescale_phi: the official ``scale_phi`` (0 = off).
        batched: one call on the [2B] batch (default, official) or two calls of B.
        prepare: optional ``prepare(conditioning) -> object passed to model_fn``, applied once
            (lazily, at the first call) to the conditioning actually used (see module doc).
    """

    def __init__(self, model_fn: ConditionedModelFn, cond: Any, uncond: Any = None, scale: float = 1.0,
                 rescale_phi: float = 0.0, batched: bool = True,
                 prepare: Optional[Callable[[Any], Any]] = None):
        if not callable(model_fn):
            raise TypeError("model_fn must be callable as model_fn(x, t, cond)")
        scale, rescale_phi = float(scale), float(rescale_phi)
        if scale != 1.0 and uncond is None:
            raise InputError(f"cfg scale {scale} needs an unconditional (or negative) conditioning; "
                             "pass uncond (the official one is an all-zero context) or use scale 1")
        if not 0.0 <= rescale_phi <= 1.0:
            raise InputError(f"cfg rescale phi must be in [0, 1], got {rescale_phi}")
        self.model_fn, self.cond, self.uncond = model_fn, cond, uncond
        self.scale, self.rescale_phi, self.batched = scale, rescale_phi, bool(batched)
        self.prepare = prepare
        self._prepared: Optional[tuple] = None

    def _conditioning(self) -> tuple:
        """What model_fn receives: (cond,) at scale 1, ([cond; uncond],) batched, else (cond, uncond)."""
        if self._prepared is None:
            if not self.active:
                parts = (self.cond,)
            elif self.batched:
                parts = (batch_concat(self.cond, self.uncond),)
            else:
                parts = (self.cond, self.uncond)
            if self.prepare is not None:
                parts = tuple(self.prepare(p) for p in parts)
            self._prepared = parts
        return self._prepared

    def reset(self) -> None:
        """Forget the prepared conditioning (e.g. after changing ``cond``/``uncond``)."""
        self._prepared = None

    @property
    def active(self) -> bool:
        """Whether an unconditional evaluation is made (scale != 1)."""
        return self.scale != 1.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        conditioning = self._conditioning()
        if not self.active:
            return self.model_fn(x, t, conditioning[0])
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if self.batched:
            out = self.model_fn(torch.cat([x, x], dim=0), torch.cat([t, t], dim=0), conditioning[0])
            cond_out, uncond_out = torch.chunk(out, 2, dim=0)
        else:
            cond_out = self.model_fn(x, t, conditioning[0])
            uncond_out = self.model_fn(x, t, conditioning[1])
        return cfg_combine(cond_out, uncond_out, self.scale, self.rescale_phi)
