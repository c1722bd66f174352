"""DPM-Solver (Lu et al. 2022) with fixed and adaptive step sizes: official ``k-dpm-fast`` and
``k-dpm-adaptive``, over ``denoiser(x, sigma) -> x0_hat``.

Both integrate the probability-flow ODE in ``t = -log(sigma)`` with the noise prediction
``eps(x, t) = (x - D(x, sigma)) / sigma``, from ``sigma_max`` down to ``sigma_min`` -- and stop
there: unlike the grid samplers there is no final jump to sigma = 0, so the result keeps noise of
level ``sigma_min`` (k-diffusion's behaviour, which the official ``sample_k`` inherits).

Steps from ``t`` to ``t_next`` (``h = t_next - t``, ``sigma(t) = e^{-t}``)::

    order 1:  x <- x - sigma(t_next) expm1(h) eps(x, t)                       (= DDIM)
    order 2:  u1 = x - sigma(s1) expm1(r1 h) eps,  s1 = t + r1 h
              x <- x - sigma(t_next) expm1(h) eps - sigma(t_next)/(2 r1) expm1(h) (eps(u1, s1) - eps)
    order 3:  s1 = t + r1 h, s2 = t + r2 h (r1 = 1/3, r2 = 2/3)
              u1 = x - sigma(s1) expm1(r1 h) eps
              u2 = x - sigma(s2) expm1(r2 h) eps - sigma(s2) (r2/r1) (expm1(r2 h)/(r2 h) - 1) (eps(u1, s1) - eps)
              x <- x - sigma(t_next) expm1(h) eps - sigma(t_next)/r2 (expm1(h)/h - 1) (eps(u2, s2) - eps)

* :func:`sample_dpm_fast` -- ``n`` model evaluations in total: ``m = floor(n/3) + 1`` equal steps
  in t, all third order except the last one or two (orders ``[3]*(m-2) + [2, 1]`` when 3 divides
  ``n``, else ``[3]*(m-1) + [n mod 3]``).  The official app passes its ``steps`` as ``n``.
* :func:`sample_dpm_adaptive` -- embedded pairs (order 3: second order with r1 = 1/3 against
  third order, 3 evaluations per attempt; order 2: first against second, 2 evaluations), error
  ``||(x_low - x_high) / max(atol, rtol max(|x_low|, |x_prev|))||_2 / sqrt(numel)``, step size from
  k-diffusion's PID controller (``factor = 1 + atan(e0^b1 e1^b2 e2^b3 - 1)`` with
  ``e = 1/(error + 1e-8)``, accept iff ``factor >= accept_safety``; ``h <- h factor`` either way).
  Official call: ``rtol = atol = 0.01``, other arguments at k-diffusion's defaults (order 3,
  h_init 0.05, pcoeff 0, icoeff 1, dcoeff 0, accept_safety 0.81, eta 0).

The operation order follows k-diffusion 0.1.1 (``DPMSolver``), so results match it to float
rounding.  ``callback(step, total, info)`` is called once per step (adaptive: per accepted step,
``total`` = accepted steps so far + the remaining t-distance over the current step size, an
estimate that reaches ``step`` at the end); ``after_step(x, sigma, i)`` after each (accepted) step.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from ._common import StepHook, ancestral_step, check_state, notify
from .noise import GaussianNoiseSampler, NoiseSampler

__all__ = ["sample_dpm_fast", "sample_dpm_adaptive", "dpm_fast_orders", "PIDStepSizeController",
           "ADAPTIVE_OFFICIAL", "DPM_SOLVER_K_SAMPLERS"]

DenoiserFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: the samplers here: they take ``(denoiser, x, sigma_min, sigma_max[, n])`` instead of a grid.
DPM_SOLVER_K_SAMPLERS = ("k-dpm-fast", "k-dpm-adaptive")

#: the official ``sample_k`` call of ``k-dpm-adaptive`` (the rest are k-diffusion's defaults).
ADAPTIVE_OFFICIAL = dict(order=3, rtol=0.01, atol=0.01, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0,
                         accept_safety=0.81, eta=0.0, s_noise=1.0)


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return -sigma.log()


class _Eps:
    """``eps(x, t)`` with k-diffusion's per-step cache and an evaluation counter."""

    def __init__(self, denoiser: DenoiserFn, x: torch.Tensor):
        self.denoiser, self.nfe = denoiser, 0
        self.ones = x.new_ones([x.shape[0]])

    def __call__(self, cache: dict, key: str, x: torch.Tensor, t: torch.Tensor):
        if key in cache:
            return cache[key], cache
        sigma = _sigma(t) * self.ones
        eps = (x - self.denoiser(x, sigma)) / _sigma(t)
        self.nfe += 1
        return eps, {key: eps, **cache}


def _step1(E: _Eps, x, t, t_next, cache):
    h = t_next - t
    eps, cache = E(cache, "eps", x, t)
    return x - _sigma(t_next) * h.expm1() * eps, cache


def _step2(E: _Eps, x, t, t_next, cache, r1=1 / 2):
    h = t_next - t
    eps, cache = E(cache, "eps", x, t)
    s1 = t + r1 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
    eps_r1, cache = E(cache, "eps_r1", u1, s1)
    x_2 = x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
    return x_2, cache


def _step3(E: _Eps, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
    h = t_next - t
    eps, cache = E(cache, "eps", x, t)
    s1 = t + r1 * h
    s2 = t + r2 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
    eps_r1, cache = E(cache, "eps_r1", u1, s1)
    u2 = (x - _sigma(s2) * (r2 * h).expm1() * eps
          - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
    eps_r2, cache = E(cache, "eps_r2", u2, s2)
    x_3 = x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
    return x_3, cache


def _check_range(sigma_min: float, sigma_max: float) -> tuple:
    smin, smax = float(sigma_min), float(sigma_max)
    if not (math.isfinite(smin) and math.isfinite(smax)) or not 0 < smin < smax:
        raise InputError(f"the DPM-Solver samplers need 0 < sigma_min < sigma_max, got {smin} and {smax}")
    return smin, smax


def dpm_fast_orders(n: int) -> list:
    """Solver orders of the ``m = floor(n/3) + 1`` steps of DPM-Solver-fast with ``n`` evaluations."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"DPM-Solver-fast needs n >= 1 model evaluations, got {n!r}")
    m = n // 3 + 1
    return [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]


@torch.no_grad()
def sample_dpm_fast(denoiser: DenoiserFn, x: torch.Tensor, sigma_min: float, sigma_max: float, n: int, *,
                    eta: float = 0.0,
                    s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None,
                    generator: Optional[torch.Generator] = None,
                    callback: Optional[ProgressCallback] = None,
                    after_step: Optional[StepHook] = None) -> torch.Tensor:
    """DPM-Solver-fast (official ``k-dpm-fast``: ``n`` = the app's steps) from ``sigma_max`` to
    ``sigma_min`` with ``n`` model evaluations; see the module doc.  ``x`` is the state at
    ``sigma_max``.  ``eta > 0`` adds ancestral noise (official: 0)."""
    check_state(x)
    smin, smax = _check_range(sigma_min, sigma_max)
    if noise_sampler is None:
        noise_sampler = GaussianNoiseSampler(x, generator)
    E = _Eps(denoiser, x)
    t_start, t_end = _t(torch.tensor(smax)), _t(torch.tensor(smin))
    orders = dpm_fast_orders(n)  # validates n
    ts = torch.linspace(t_start, t_end, len(orders) + 1, device=x.device)
    total = len(orders)
    for i, order in enumerate(orders):
        cache = {}
        t, t_next = ts[i], ts[i + 1]
        if eta:
            sd, su = ancestral_step(_sigma(t), _sigma(t_next), eta)
            t_next_ = torch.minimum(t_end.to(t.device), _t(sd))
            su = (_sigma(t_next) ** 2 - _sigma(t_next_) ** 2) ** 0.5
        else:
            t_next_, su = t_next, 0.0
        eps, cache = E(cache, "eps", x, t)
        denoised = x - _sigma(t) * eps
        step = (_step1, _step2, _step3)[order - 1]
        x, cache = step(E, x, t, t_next_, cache)
        x = x + su * s_noise * noise_sampler(_sigma(t), _sigma(t_next))
        if after_step is not None:
            x = after_step(x, _sigma(t_next), i)
        notify(callback, i + 1, total, {"stage": "sampling", "sigma": float(_sigma(t)),
                                        "sigma_next": float(_sigma(t_next)), "denoised": denoised, "x": x})
    return x


class PIDStepSizeController:
    """k-diffusion's PID step-size controller (``h`` in t = -log sigma)::

        b1 = (p + i + d) / order,  b2 = -(p + 2 d) / order,  b3 = d / order
        factor = 1 + atan(e0^b1 e1^b2 e2^b3 - 1),  e_k = 1 / (error_k + eps)
        accept iff factor >= accept_safety;  h <- h factor (accepted or not)
    """

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float = 1,
                 accept_safety: float = 0.81, eps: float = 1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs = []

    @staticmethod
    def limiter(x: float) -> float:
        return 1 + math.atan(x - 1)

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = self.limiter(factor)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(denoiser: DenoiserFn, x: torch.Tensor, sigma_min: float, sigma_max: float, *,
                        order: int = 3, rtol: float = 0.01, atol: float = 0.01, h_init: float = 0.05,
                        pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                        accept_safety: float = 0.81, eta: float = 0.0, s_noise: float = 1.0,
                        noise_sampler: Optional[NoiseSampler] = None,
                        generator: Optional[torch.Generator] = None,
                        callback: Optional[ProgressCallback] = None,
                        after_step: Optional[StepHook] = None, return_info: bool = False):
    """Adaptive DPM-Solver-12/23 (official ``k-dpm-adaptive``: rtol = atol = 0.01, the rest at the
    defaults shown) from ``sigma_max`` to ``sigma_min``; see the module doc.  The number of steps
    is chosen by the controller.

    ``return_info=True`` returns ``(x, info)`` with ``steps`` (attempts), ``nfe``, ``n_accept`` and
    ``n_reject``.
    """
    if order not in (2, 3):
        raise InputError(f"the adaptive DPM-Solver order must be 2 or 3, got {order!r}")
    if not (rtol > 0 or atol > 0) or rtol < 0 or atol < 0:
        raise InputError(f"need rtol >= 0 and atol >= 0, not both 0; got rtol={rtol}, atol={atol}")
    if not h_init > 0:
        raise InputError(f"h_init must be > 0, got {h_init}")
    check_state(x)
    smin, smax = _check_range(sigma_min, sigma_max)
    if noise_sampler is None:
        noise_sampler = GaussianNoiseSampler(x, generator)
    E = _Eps(denoiser, x)
    t_start, t_end = _t(torch.tensor(smax)), _t(torch.tensor(smin))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    s = t_start
    x_prev = x
    pid = PIDStepSizeController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
    while s < t_end - 1e-5:
        cache = {}
        t = torch.minimum(t_end, s + pid.h)
        if eta:
            sd, su = ancestral_step(_sigma(s), _sigma(t), eta)
            t_ = torch.minimum(t_end, _t(sd))
            su = (_sigma(t) ** 2 - _sigma(t_) ** 2) ** 0.5
        else:
            t_, su = t, 0.0
        eps, cache = E(cache, "eps", x, s)
        denoised = x - _sigma(s) * eps
        if order == 2:
            x_low, cache = _step1(E, x, s, t_, cache)
            x_high, cache = _step2(E, x, s, t_, cache)
        else:
            x_low, cache = _step2(E, x, s, t_, cache, r1=1 / 3)
            x_high, cache = _step3(E, x, s, t_, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        accept = pid.propose_step(error)
        if accept:
            x_prev = x_low
            x = x_high + su * s_noise * noise_sampler(_sigma(s), _sigma(t))
            sigma_from = _sigma(s)
            s = t
            info["n_accept"] += 1
            if after_step is not None:
                x = after_step(x, _sigma(s), info["n_accept"] - 1)
            remaining = max(0, math.ceil(float(t_end - s) / max(pid.h, 1e-12) - 1e-9))
            notify(callback, info["n_accept"], info["n_accept"] + remaining,
                   {"stage": "sampling", "sigma": float(sigma_from), "sigma_next": float(_sigma(s)),
                    "denoised": denoised, "x": x, "error": float(error), "h": pid.h})
        else:
            info["n_reject"] += 1
        info["nfe"] += order
        info["steps"] += 1
    return (x, info) if return_info else x
