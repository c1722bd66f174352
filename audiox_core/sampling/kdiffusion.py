"""k-diffusion style samplers for the v-objective models, over ``denoiser(x, sigma) -> x0_hat``.

They know nothing about the network: wrap a velocity function with
:class:`~audiox_core.sampling.objectives.VDenoiser` (and CFG with
:class:`~audiox_core.sampling.guidance.ClassifierFreeGuidance` *inside* it, as the official code
guides the v-prediction).  ``x`` is the starting state at ``sigmas[0]`` -- for plain sampling
``noise * sigmas[0]`` (the official ``sample_k`` scales the unit noise by sigma_max).

The update rules are those of k-diffusion 0.1.1 (``sample_euler`` without churn,
``sample_dpmpp_2m``, ``sample_dpmpp_2m_sde``, ``sample_dpmpp_3m_sde``) with the same operation
order, so results match the official sampler to float rounding (bit-exact in fp32 on CPU in our
cross-check).  ``sample_dpmpp_3m_sde`` with eta = 1, s_noise = 1 and Brownian-tree noise is the
official AudioX default (``dpmpp-3m-sde``).  Differences from k-diffusion, none of which change
the numbers:

* progress goes through ``callback(step, total, info)`` (called once per step, after the update;
  ``info`` has ``sigma``, ``sigma_next``, ``denoised`` and ``x``); raising ``Interrupted`` from it
  stops sampling before the next model evaluation;
* ``after_step(x, sigma_next, i) -> x`` lets inpainting overwrite the state after each step (the
  official inpainting mutates ``x`` from inside k-diffusion's callback instead, see ``inpaint``);
* the Brownian tree is only built when a noisy step is actually taken, and its seed can be given
  (``noise_sampler`` / ``generator``); steps = 1 works (k-diffusion's 3M SDE raises there).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from ._common import StepHook, append_dims, check_levels, check_state, notify
from .noise import BrownianTreeNoiseSampler, NoiseSampler

__all__ = [
    "sample_euler",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "K_SAMPLERS",
    "STOCHASTIC_K_SAMPLERS",
]

DenoiserFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _prepare(x: torch.Tensor, sigmas: torch.Tensor):
    check_state(x)
    sigmas = check_levels(sigmas, "sigmas").to(x.device)
    return sigmas, x.new_ones([x.shape[0]])


def _info(sigmas: torch.Tensor, i: int, denoised: torch.Tensor, x: torch.Tensor) -> dict:
    return {"stage": "sampling", "sigma": float(sigmas[i]), "sigma_next": float(sigmas[i + 1]),
            "denoised": denoised, "x": x}


def _finish_step(x, sigmas, i, denoised, after_step, callback, total):
    if after_step is not None:
        x = after_step(x, sigmas[i + 1], i)
    notify(callback, i + 1, total, _info(sigmas, i, denoised, x))
    return x


class _LazyNoise:
    """Build the default Brownian tree only when a noisy step needs it (official: always built)."""

    def __init__(self, noise_sampler: Optional[NoiseSampler], x: torch.Tensor, sigmas: torch.Tensor,
                 generator: Optional[torch.Generator]):
        self.sampler, self.x, self.sigmas, self.generator = noise_sampler, x, sigmas, generator

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        if self.sampler is None:
            self.sampler = BrownianTreeNoiseSampler.for_sigmas(self.x, self.sigmas, generator=self.generator)
        return self.sampler(sigma, sigma_next)


@torch.no_grad()
def sample_euler(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                 callback: Optional[ProgressCallback] = None,
                 after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    One evaluation per step: ``x <- x + (sigma_next - sigma) * (x - D) / sigma``.
    """
    sigmas, s_in = _prepare(x, sigmas)
    total = len(sigmas) - 1
    for i in range(total):
        sigma_hat = sigmas[i] * 1.0
        denoised = denoiser(x, sigma_hat * s_in)
        d = (x - denoised) / append_dims(sigma_hat, x.ndim)
        dt = sigmas[i + 1] - sigma_hat
        x = x + d * dt
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                    callback: Optional[ProgressCallback] = None,
                    after_step: Optional[StepHook] = None) -> torch.Tensor:
    """DPM-Solver++(2M), deterministic, in lambda = -log(sigma)::

        first / last step:  x <- (sigma_next / sigma) x - expm1(-h) D
        otherwise:          D' = (1 + 1/(2r)) D - D_prev / (2r),  r = h_prev / h
    """
    sigmas, s_in = _prepare(x, sigmas)
    total = len(sigmas) - 1
    old_denoised = None
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * s_in)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        ratio = t_next.neg().exp() / t.neg().exp()
        if old_denoised is None or sigmas[i + 1] == 0:
            x = ratio * x - (-h).expm1() * denoised
        else:
            h_last = t - sigmas[i - 1].log().neg()
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = ratio * x - (-h).expm1() * denoised_d
        old_denoised = denoised
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                        eta: float = 1.0, s_noise: float = 1.0,
                        noise_sampler: Optional[NoiseSampler] = None,
                        generator: Optional[torch.Generator] = None,
                        solver_type: str = "midpoint",
                        callback: Optional[ProgressCallback] = None,
                        after_step: Optional[StepHook] = None) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (the official ``sample_k`` default sampler ``dpmpp-2m-sde``).

    With ``h = log(sigma / sigma_next)``::

        x <- (sigma_next / sigma) e^{-eta h} x + (1 - e^{-(1+eta) h}) D
             + [midpoint] 0.5 (1 - e^{-(1+eta) h}) (D - D_prev) / r
             + sigma_next sqrt(1 - e^{-2 eta h}) s_noise eps

    and ``x <- D`` on the final step to sigma = 0.  ``noise_sampler=None`` => Brownian tree over
    the schedule, seeded from ``generator`` (None: global CPU RNG -- the official behaviour).
    """
    if solver_type not in ("heun", "midpoint"):
        raise InputError(f"solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    sigmas, s_in = _prepare(x, sigmas)
    noise = _LazyNoise(noise_sampler, x, sigmas, generator)
    total = len(sigmas) - 1
    old_denoised, h_last = None, None
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * s_in)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    coeff = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                    x = x + coeff * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                scale = (-2 * eta_h).expm1().neg().sqrt()
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * scale * s_noise
            h_last = h
        old_denoised = denoised
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                        eta: float = 1.0, s_noise: float = 1.0,
                        noise_sampler: Optional[NoiseSampler] = None,
                        generator: Optional[torch.Generator] = None,
                        callback: Optional[ProgressCallback] = None,
                        after_step: Optional[StepHook] = None) -> torch.Tensor:
    """DPM-Solver++(3M) SDE -- the official AudioX sampler (``dpmpp-3m-sde``, eta 1, s_noise 1).

    With ``h = log(sigma / sigma_next)``, ``he = (1 + eta) h``, ``phi2 = (1 - e^{-he})/he ... ``::

        x <- e^{-he} x + (1 - e^{-he}) D                                  (first order)
        2nd step:   + phi2 d,            d = (D - D1) / r,  r = h1 / h
        later:      + phi2 d1 - phi3 d2  (finite differences of D, D1, D2 with r0 = h1/h, r1 = h2/h)
        noise:      + sigma_next sqrt(1 - e^{-2 eta h}) s_noise eps

    where ``phi2 = expm1(-he)/he + 1`` and ``phi3 = phi2/he - 1/2``; the last step to sigma = 0 is
    ``x <- D``.  eta = 0 gives the deterministic DPM-Solver++(3M).
    ``noise_sampler=None`` => Brownian tree over the schedule seeded from ``generator``
    (None: global CPU RNG -- the official behaviour; see ``noise`` for seed reproduction).
    """
    sigmas, s_in = _prepare(x, sigmas)
    noise = _LazyNoise(noise_sampler, x, sigmas, generator)
    total = len(sigmas) - 1
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * s_in)
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                scale = (-2 * h * eta).expm1().neg().sqrt()
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * scale * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


#: name -> sampler, names as in the official ``sampler_type`` (without the ``k-`` prefix).
K_SAMPLERS = {
    "euler": sample_euler,
    "dpmpp-2m": sample_dpmpp_2m,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "dpmpp-3m-sde": sample_dpmpp_3m_sde,
}
#: the samplers that take ``eta``, ``s_noise``, ``noise_sampler`` and ``generator``.
STOCHASTIC_K_SAMPLERS = ("dpmpp-2m-sde", "dpmpp-3m-sde")
