"""One-call sampling procedures that tie schedule, start state, sampler, variation and inpainting.

* :func:`sample_v_objective` -- the official ``sample_k`` path of AudioX / AudioX-MAF /
  AudioX-MAF-MMDiT: polyexponential sigmas (rho 1), ``x = noise * sigma_max``, ``VDenoiser``,
  DPM++ 3M SDE with Brownian-tree noise by default.
* :func:`sample_rectified_flow` -- the official ``sample_rf`` path (Euler on linspace(1, 0)).
* Turbo: :func:`~audiox_core.sampling.turbo.sample_turbo` directly.

``velocity_fn(x, t) -> v`` is the network with its conditioning (and CFG) bound, e.g. a
:class:`~audiox_core.sampling.guidance.ClassifierFreeGuidance`.  Mixed precision / autocast is
the caller's business (the official sampler runs under CUDA fp16 autocast).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from ._common import check_state
from .inpaint import LatentInpainter, variation_start
from .dpm_solver import DPM_SOLVER_K_SAMPLERS
from .kdiffusion import ANCESTRAL_K_SAMPLERS, K_SAMPLERS, STOCHASTIC_K_SAMPLERS
from .noise import BrownianTreeNoiseSampler, GaussianNoiseSampler, NoiseSampler
from .objectives import VDenoiser
from .rf import RF_SAMPLERS
from .schedules import DEFAULT_SIGMA_MAX, DEFAULT_SIGMA_MIN, make_sigmas, rf_timesteps

__all__ = ["sample_v_objective", "sample_rectified_flow"]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_inpainter(inpainter, objective: str) -> None:
    if inpainter is not None:
        if not isinstance(inpainter, LatentInpainter):
            raise InputError("inpainter must be a LatentInpainter")
        if inpainter.objective != objective:
            raise InputError(f"the inpainter was built for objective {inpainter.objective!r}, "
                             f"this sampler needs {objective!r}")


def _needs_noise(sigmas: torch.Tensor) -> bool:
    return bool((sigmas[1:] > 0).any())


@torch.no_grad()
def sample_v_objective(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int = 250,
    sampler: str = "dpmpp-3m-sde",
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    schedule: str = "polyexponential",
    rho: Optional[float] = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    sde_noise: Union[str, NoiseSampler] = "brownian",
    generator: Optional[torch.Generator] = None,
    brownian_seed=None,
    init: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    inpainter: Optional[LatentInpainter] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Sample latents with a v-objective network.

    Args:
        noise: unit Gaussian noise [B, C, L] in the model dtype (drawn by the caller; the
            official code draws it right after ``torch.manual_seed(seed)``).
        sampler: a name of ``K_SAMPLERS``: "dpmpp-3m-sde" (official default), "dpmpp-2m-sde",
            "k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2", "k-dpm-fast", "k-dpm-adaptive"
            (the official names and defaults) or the extras "dpmpp-2m" and "euler".  k-dpm-fast
            and k-dpm-adaptive run from ``sigma_max`` to ``sigma_min`` and stop there (official).
        eta, s_noise: of the DPM++ SDE samplers and k-dpmpp-2s-ancestral (official: 1, 1).
        sde_noise: noise of the DPM++ SDE samplers: "brownian" (official; torchsde), "gaussian"
            (per-step randn from ``generator``) or a ``noise_sampler(sigma, sigma_next)`` (a callable
            is also used by k-dpmpp-2s-ancestral, whose default is per-step randn from ``generator``,
            the official ``randn_like``).
        generator: seeds the Brownian tree (one ``randint`` draw) or the Gaussian noise; None uses
            the global CPU RNG exactly like the official code.
        brownian_seed: fix the tree entropy outright (an int or one int per batch item).
        init, strength: audio-to-audio variation from encoded latents ``init`` (see
            ``inpaint.variation_start``); strength 1 (default) ignores ``init``.
        inpainter: a :class:`LatentInpainter` with objective "v".
    """
    check_state(noise, "noise")
    if sampler not in K_SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose one of {sorted(K_SAMPLERS)}")
    _check_inpainter(inpainter, "v")
    sigmas = make_sigmas(schedule, steps, sigma_min, sigma_max, rho, device=noise.device)
    if init is not None:
        x, sigmas = variation_start(init, noise, sigmas, strength, "v")
    else:
        x = noise * sigmas[0]
    if inpainter is not None:
        x = inpainter.start(x, sigmas[0])
    kwargs = {}
    if sampler in STOCHASTIC_K_SAMPLERS:
        if callable(sde_noise):
            noise_sampler = sde_noise
        elif sde_noise == "brownian":
            noise_sampler = (BrownianTreeNoiseSampler.for_sigmas(x, sigmas, seed=brownian_seed, generator=generator)
                             if eta and _needs_noise(sigmas) else None)
        elif sde_noise == "gaussian":
            noise_sampler = GaussianNoiseSampler(x, generator)
        else:
            raise InputError(f"sde_noise must be 'brownian', 'gaussian' or a callable, got {sde_noise!r}")
        kwargs = dict(eta=eta, s_noise=s_noise, noise_sampler=noise_sampler, generator=generator)
    elif sampler in ANCESTRAL_K_SAMPLERS:
        # fresh Gaussian noise per step, as the official default_noise_sampler (randn_like)
        kwargs = dict(eta=eta, s_noise=s_noise, noise_sampler=sde_noise if callable(sde_noise) else None,
                      generator=generator)
    if sampler in DPM_SOLVER_K_SAMPLERS:
        # official: sample_dpm_fast(denoiser, x, sigma_min, sigma_max, steps) / sample_dpm_adaptive(
        # denoiser, x, sigma_min, sigma_max, rtol=0.01, atol=0.01); a variation starts lower
        start = float(sigma_max) if init is None else float(sigmas[0])
        if start <= sigma_min:
            raise InputError(f"{sampler} needs a start level above sigma_min {sigma_min}; got {start}")
        args = (sigma_min, start) + ((len(sigmas) - 1,) if sampler == "k-dpm-fast" else ())
        out = K_SAMPLERS[sampler](VDenoiser(velocity_fn), x, *args, callback=callback, after_step=inpainter)
    else:
        out = K_SAMPLERS[sampler](VDenoiser(velocity_fn), x, sigmas, callback=callback,
                                  after_step=inpainter, **kwargs)
    return inpainter.paste(out) if inpainter is not None else out


@torch.no_grad()
def sample_rectified_flow(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int = 100,
    sampler: str = "euler",
    init: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    inpainter: Optional[LatentInpainter] = None,
    callback: Optional[ProgressCallback] = None,
) -> torch.Tensor:
    """Sample latents with a rectified-flow network (official ``sample_rf``: Euler, 1 -> 0).

    ``sampler`` is "euler" (official) or "heun"; ``init``/``strength`` as in
    :func:`sample_v_objective` (start at t ~= strength); ``inpainter`` with objective "rf".
    """
    check_state(noise, "noise")
    if sampler not in RF_SAMPLERS:
        raise InputError(f"unknown rectified-flow sampler {sampler!r}; choose one of {sorted(RF_SAMPLERS)}")
    _check_inpainter(inpainter, "rf")
    ts = rf_timesteps(steps, 1.0, device=noise.device)
    if init is not None:
        x, ts = variation_start(init, noise, ts, strength, "rf")
    else:
        x = noise
    if inpainter is not None:
        x = inpainter.start(x, ts[0])
    out = RF_SAMPLERS[sampler](velocity_fn, x, ts, callback=callback, after_step=inpainter)
    return inpainter.paste(out) if inpainter is not None else out
