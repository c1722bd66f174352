"""Noise-level grids.

v path (step 4 of the official ``generate_diffusion_cond``): it calls k-diffusion's
``get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho=1)``::

    ramp   = linspace(1, 0, steps) ** rho
    sigmas = exp(ramp * (ln sigma_max - ln sigma_min) + ln sigma_min)   then append 0

i.e. ``steps`` log-linearly spaced sigmas from sigma_max down to sigma_min followed by a 0, so
``steps`` model evaluations, the last one a jump from sigma_min straight to the clean estimate.
Defaults: the README script uses sigma_min 0.3, sigma_max 500; the gradio UI used 0.03 / 500.

Rectified flow (the official ``sample_rf`` → ``sample_discrete_euler`` grid, also Turbo's): ``linspace(t_max, 0, steps + 1)`` with the official clip of
``t_max`` (called sigma_max there) to 1; ``steps`` model evaluations, t = 0 never evaluated.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_STEPS",
    "DEFAULT_CFG_SCALE",
    "DEFAULT_SIGMA_MIN",
    "DEFAULT_SIGMA_MAX",
    "GRADIO_SIGMA_MIN",
    "polyexponential_sigmas",
    "loglinear_sigmas",
    "karras_sigmas",
    "make_sigmas",
    "rf_timesteps",
]

#: README script defaults (all three v-objective models): 250 steps, cfg 7, sigma 0.3 .. 500.
DEFAULT_STEPS = 250
DEFAULT_CFG_SCALE = 7.0
DEFAULT_SIGMA_MIN = 0.3
DEFAULT_SIGMA_MAX = 500.0
#: The gradio UI used sigma_min 0.03 (and 100 steps).
GRADIO_SIGMA_MIN = 0.03


def _check(steps: int, sigma_min: float, sigma_max: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)) or sigma_min <= 0 or sigma_max < sigma_min:
        raise InputError(
            f"need 0 < sigma_min <= sigma_max (finite), got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def _append_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, s.new_zeros([1])])


def polyexponential_sigmas(
    steps: int,
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    rho: float = 1.0,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """k-diffusion's polyexponential schedule (float32, ``steps + 1`` entries, last = 0)."""
    _check(steps, sigma_min, sigma_max)
    if rho <= 0:
        raise InputError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(1, 0, steps, device=device) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return _append_zero(sigmas)


def loglinear_sigmas(steps: int, sigma_min: float = DEFAULT_SIGMA_MIN, sigma_max: float = DEFAULT_SIGMA_MAX,
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """The official AudioX schedule: polyexponential with rho = 1 (log-linear in sigma)."""
    return polyexponential_sigmas(steps, sigma_min, sigma_max, 1.0, device)


def karras_sigmas(steps: int, sigma_min: float = DEFAULT_SIGMA_MIN, sigma_max: float = DEFAULT_SIGMA_MAX,
                  rho: float = 7.0, device: Optional[torch.device] = None) -> torch.Tensor:
    """Karras et al. (2022): ``(max^(1/rho) + ramp (min^(1/rho) - max^(1/rho)))^rho``, then 0.

    Not used by the official AudioX code; offered as an option.
    """
    _check(steps, sigma_min, sigma_max)
    if rho <= 0:
        raise InputError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return _append_zero(sigmas).to(device)


def make_sigmas(kind: str, steps: int, sigma_min: float = DEFAULT_SIGMA_MIN,
                sigma_max: float = DEFAULT_SIGMA_MAX, rho: Optional[float] = None,
                device: Optional[torch.device] = None) -> torch.Tensor:
    """``kind`` = "polyexponential" (official; rho default 1), "loglinear" or "karras" (rho 7)."""
    if kind in ("polyexponential", "loglinear", "exponential"):
        return polyexponential_sigmas(steps, sigma_min, sigma_max, 1.0 if rho is None else rho, device)
    if kind == "karras":
        return karras_sigmas(steps, sigma_min, sigma_max, 7.0 if rho is None else rho, device)
    raise InputError(f"unknown sigma schedule {kind!r}; expected 'polyexponential', 'loglinear' or 'karras'")


def rf_timesteps(steps: int, t_max: float = 1.0, device: Optional[torch.device] = None) -> torch.Tensor:
    """``linspace(t_max, 0, steps + 1)`` (float32).  ``t_max > 1`` is clipped to 1 like the official
    ``sample_rf`` (which clips its ``sigma_max``); ``t_max`` must be >= 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if not math.isfinite(t_max) or t_max < 0:
        raise InputError(f"t_max must be a finite number >= 0, got {t_max}")
    if t_max > 1:
        logger.debug("rectified flow: t_max %s clipped to 1 (as the official sample_rf)", t_max)
        t_max = 1.0
    return torch.linspace(t_max, 0, steps + 1, device=device)
