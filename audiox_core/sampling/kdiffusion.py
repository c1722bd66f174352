"""k-diffusion style samplers for the v-objective models, over ``denoiser(x, sigma) -> x0_hat``.

They know nothing about the network: wrap a velocity function with
:class:`~audiox_core.sampling.objectives.VDenoiser` (and CFG with
:class:`~audiox_core.sampling.guidance.ClassifierFreeGuidance` *inside* it, as the official code
guides the v-prediction).  ``x`` is the starting state at ``sigmas[0]`` -- for plain sampling
``noise * sigmas[0]`` (the official ``sample_k`` scales the unit noise by sigma_max).

The update rules are those of k-diffusion 0.1.1 (``sample_euler``, ``sample_heun`` and
``sample_dpm_2`` without churn, ``sample_lms``, ``sample_dpmpp_2s_ancestral``, ``sample_dpmpp_2m``,
``sample_dpmpp_2m_sde``, ``sample_dpmpp_3m_sde``; DPM-Solver fast/adaptive in ``dpm_solver``)
with the same operation order, so results match the official sampler to float rounding (bit-exact in fp32 on CPU in our
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

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..progress import ProgressCallback
from ._common import StepHook, ancestral_step, append_dims, check_levels, check_state, notify
from .dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from .noise import BrownianTreeNoiseSampler, GaussianNoiseSampler, NoiseSampler

__all__ = [
    "sample_euler",
    "sample_heun",
    "sample_dpm_2",
    "sample_lms",
    "lms_coefficients",
    "sample_dpmpp_2s_ancestral",
    "ancestral_step",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "K_SAMPLERS",
    "STOCHASTIC_K_SAMPLERS",
    "ANCESTRAL_K_SAMPLERS",
    "OFFICIAL_K_SAMPLERS",
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


def _to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative ``dx/dsigma = (x - D) / sigma``."""
    return (x - denoised) / append_dims(sigma, x.ndim)


@torch.no_grad()
def sample_heun(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                callback: Optional[ProgressCallback] = None,
                after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Heun's method on the probability-flow ODE (official ``k-heun``; Karras et al. 2022, Alg. 2
    without churn)::

        d  = (x - D(x, sigma)) / sigma,   x' = x + (sigma_next - sigma) d
        d' = (x' - D(x', sigma_next)) / sigma_next
        x <- x + (sigma_next - sigma) (d + d') / 2          (Euler on the last step to 0)

    Two evaluations per step, one on the last.  (k-diffusion also draws an unused
    ``randn_like`` per step for the churn it does not apply; we do not.)
    """
    sigmas, s_in = _prepare(x, sigmas)
    total = len(sigmas) - 1
    for i in range(total):
        sigma_hat = sigmas[i] * 1.0
        denoised = denoiser(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = denoiser(x_2, sigmas[i + 1] * s_in)
            d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
            d_prime = (d + d_2) / 2
            x = x + d_prime * dt
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


@torch.no_grad()
def sample_dpm_2(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                 callback: Optional[ProgressCallback] = None,
                 after_step: Optional[StepHook] = None) -> torch.Tensor:
    """DPM-Solver-2 style midpoint steps (official ``k-dpm-2``, k-diffusion ``sample_dpm_2``)::

        sigma_mid = sqrt(sigma sigma_next)                      (midpoint in log sigma)
        x' = x + (sigma_mid - sigma) d,      d = (x - D(x, sigma)) / sigma
        x <- x + (sigma_next - sigma) (x' - D(x', sigma_mid)) / sigma_mid
                                                                (Euler on the last step to 0)
    """
    sigmas, s_in = _prepare(x, sigmas)
    total = len(sigmas) - 1
    for i in range(total):
        sigma_hat = sigmas[i] * 1.0
        denoised = denoiser(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            dt = sigmas[i + 1] - sigma_hat
            x = x + d * dt
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            dt_1 = sigma_mid - sigma_hat
            dt_2 = sigmas[i + 1] - sigma_hat
            x_2 = x + d * dt_1
            denoised_2 = denoiser(x_2, sigma_mid * s_in)
            d_2 = _to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * dt_2
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


def lms_coefficients(sigmas: Sequence[float], i: int, order: int) -> list:
    """Adams-Bashforth weights of the linear multistep step ``sigmas[i] -> sigmas[i + 1]``.

    ``c_j = integral_{sigmas[i]}^{sigmas[i+1]} l_j(s) ds`` with the Lagrange basis polynomial
    ``l_j(s) = prod_{k != j} (s - sigmas[i-k]) / (sigmas[i-j] - sigmas[i-k])`` over the last
    ``order`` nodes (``j = 0`` is the newest).  k-diffusion integrates the same polynomials with
    ``scipy.integrate.quad``; here they are integrated exactly (float64), which agrees with quad to
    float rounding since a Gauss-Kronrod rule is exact for these low degrees.
    """
    if order - 1 > i:
        raise InputError(f"LMS order {order} is too high for step {i}")
    nodes = [float(sigmas[i - k]) for k in range(order)]
    a, b = float(sigmas[i]), float(sigmas[i + 1])
    out = []
    for j in range(order):
        poly = np.poly1d([1.0])
        for k in range(order):
            if k != j:
                poly = poly * np.poly1d([1.0, -nodes[k]]) / (nodes[j] - nodes[k])
        prim = poly.integ()
        out.append(float(prim(b) - prim(a)))
    return out


@torch.no_grad()
def sample_lms(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *, order: int = 4,
               callback: Optional[ProgressCallback] = None,
               after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma; official ``k-lms``, order 4)::

        d_i = (x_i - D(x_i, sigma_i)) / sigma_i
        x_{i+1} = x_i + sum_j c_j d_{i-j},   j < min(i + 1, order)

    with the weights of :func:`lms_coefficients`.  One evaluation per step.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InputError(f"LMS order must be an integer >= 1, got {order!r}")
    sigmas, s_in = _prepare(x, sigmas)
    sigmas_cpu = sigmas.detach().cpu().double().tolist()
    total = len(sigmas) - 1
    ds = []
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * s_in)
        ds.append(_to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        cur_order = min(i + 1, order)
        coeffs = lms_coefficients(sigmas_cpu, i, cur_order)
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
        x = _finish_step(x, sigmas, i, denoised, after_step, callback, total)
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(denoiser: DenoiserFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                              eta: float = 1.0, s_noise: float = 1.0,
                              noise_sampler: Optional[NoiseSampler] = None,
                              generator: Optional[torch.Generator] = None,
                              callback: Optional[ProgressCallback] = None,
                              after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Ancestral DPM-Solver++(2S) (official ``k-dpmpp-2s-ancestral``: eta 1, s_noise 1).

    With ``(sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, eta)``, ``lambda = -log sigma``,
    ``h = lambda(sigma_down) - lambda(sigma)`` and the midpoint ``s = lambda + h/2``::

        x' = (sigma_s / sigma) x - expm1(-h/2) D(x, sigma)
        x  <- (sigma_down / sigma) x - expm1(-h) D(x', sigma_s)
        x  <- x + s_noise sigma_up eps              (not on the last step to 0)

    and an Euler step when ``sigma_down = 0``.  Noise: ``noise_sampler`` or, by default, fresh
    i.i.d. Gaussian noise per step from ``generator`` (None: ``randn_like`` on the global RNG, the
    official ``default_noise_sampler``).  Two evaluations per step, one on the last.
    """
    sigmas, s_in = _prepare(x, sigmas)
    if noise_sampler is None:
        noise_sampler = GaussianNoiseSampler(x, generator)
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if sigma_down == 0:
            d = _to_d(x, sigmas[i], denoised)
            dt = sigma_down - sigmas[i]
            x = x + d * dt
        else:
            t, t_next = sigmas[i].log().neg(), torch.as_tensor(sigma_down).log().neg()
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (s.neg().exp() / t.neg().exp()) * x - (-h * r).expm1() * denoised
            denoised_2 = denoiser(x_2, s.neg().exp() * s_in)
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
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


#: name -> sampler.  ``dpmpp-3m-sde``, ``dpmpp-2m-sde`` and the ``k-*`` names are the official
#: ``sampler_type`` values of ``sample_k`` (same defaults); ``euler`` and ``dpmpp-2m`` are extras.
#: ``k-dpm-fast`` and ``k-dpm-adaptive`` live in :mod:`.dpm_solver`; they take
#: ``(denoiser, x, sigma_min, sigma_max[, n])`` instead of a grid (``DPM_SOLVER_K_SAMPLERS``).
K_SAMPLERS = {
    "dpmpp-3m-sde": sample_dpmpp_3m_sde,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "k-heun": sample_heun,
    "k-lms": sample_lms,
    "k-dpmpp-2s-ancestral": sample_dpmpp_2s_ancestral,
    "k-dpm-2": sample_dpm_2,
    "k-dpm-fast": sample_dpm_fast,
    "k-dpm-adaptive": sample_dpm_adaptive,
    "dpmpp-2m": sample_dpmpp_2m,
    "euler": sample_euler,
}
#: the names the official ``sample_k`` accepts (its gradio dropdown lists all but ``k-dpm-adaptive``).
OFFICIAL_K_SAMPLERS = ("dpmpp-3m-sde", "dpmpp-2m-sde", "k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2",
                       "k-dpm-fast", "k-dpm-adaptive")
#: the samplers that take ``eta``, ``s_noise``, ``noise_sampler`` and ``generator`` (Brownian-tree SDEs).
STOCHASTIC_K_SAMPLERS = ("dpmpp-2m-sde", "dpmpp-3m-sde")
#: the samplers that add fresh Gaussian noise per step (``randn_like`` in the official code).
ANCESTRAL_K_SAMPLERS = ("k-dpmpp-2s-ancestral",)
