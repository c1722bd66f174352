"""Small helpers shared by the samplers (validation, broadcasting, progress, step hooks)."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback

#: ``after_step(x, level, step_index) -> x``: called by every sampler right after a step has
#: produced the new state ``x``, whose noise level is ``level`` (a 0-dim tensor: sigma for the
#: v path, t for rectified flow, 0 for the final output).  Whatever it returns becomes the new
#: state.  Inpainting uses it to overwrite the kept region (see ``inpaint.LatentInpainter``).
StepHook = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]

__all__ = ["StepHook", "ProgressCallback", "append_dims", "check_state", "check_levels", "notify"]


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """View ``v`` with trailing singleton dims so it broadcasts against an ``ndim``-d tensor."""
    if v.ndim > ndim:
        raise InputError(f"cannot broadcast a {v.ndim}-d tensor against {ndim}-d latents")
    return v[(...,) + (None,) * (ndim - v.ndim)]


def check_state(x: torch.Tensor, name: str = "x") -> None:
    """Latents must be a floating tensor [B, ...] with B >= 1."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of latents [B, C, L], got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise InputError(f"{name} must have a batch dimension, e.g. [B, C, L]; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_levels(levels: torch.Tensor, name: str, *, max_level: Optional[float] = None) -> torch.Tensor:
    """A noise-level grid: 1-D, at least one entry, finite, >= 0, non-increasing."""
    if not isinstance(levels, torch.Tensor):
        levels = torch.as_tensor(levels, dtype=torch.float32)
    if levels.ndim != 1 or levels.numel() < 1:
        raise InputError(f"{name} must be a 1-D tensor with at least one entry, got shape {tuple(levels.shape)}")
    if not bool(torch.isfinite(levels).all()) or bool((levels < 0).any()):
        raise InputError(f"{name} must be finite and >= 0, got {levels.tolist()[:8]}...")
    if levels.numel() > 1 and bool((levels[1:] > levels[:-1]).any()):
        raise InputError(f"{name} must be non-increasing (high noise first), got {levels.tolist()[:8]}...")
    if max_level is not None and float(levels[0]) > max_level:
        raise InputError(f"{name} must not exceed {max_level}, got {float(levels[0])}")
    return levels


def notify(callback: Optional[ProgressCallback], step: int, total: int, info: dict) -> None:
    """Report one finished step (``step`` counts from 1).  Exceptions (Interrupted) propagate."""
    if callback is not None:
        callback(step, total, info)


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """``(sigma_down, sigma_up)`` of an ancestral step (k-diffusion ``get_ancestral_step``)::

        sigma_up   = min(sigma_to, eta sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2))
        sigma_down = sqrt(sigma_to^2 - sigma_up^2)

    Deterministic move to ``sigma_down``, then fresh noise of std ``sigma_up`` brings the state back
    to ``sigma_to`` (sigma_down^2 + sigma_up^2 = sigma_to^2).  eta = 0: ``(sigma_to, 0)``.
    """
    if not eta:
        return sigma_to, 0.0
    sigma_from, sigma_to = torch.as_tensor(sigma_from), torch.as_tensor(sigma_to)
    sigma_up = torch.minimum(sigma_to,
                             eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up
