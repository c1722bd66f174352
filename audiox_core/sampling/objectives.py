"""Diffusion objectives: the v-objective (AudioX, AudioX-MAF, AudioX-MAF-MMDiT) and rectified flow
(AudioX-Turbo and its teacher).

v-objective (continuous t in [0, 1], AudioX / AudioX-MAF / AudioX-MAF-MMDiT)::

    alpha = cos(pi t / 2),  sigma_t = sin(pi t / 2)
    x_t   = alpha * x0 + sigma_t * eps
    v     = alpha * eps - sigma_t * x0          (the network's target)

For sampling, the official code wraps the network in k-diffusion's ``VDenoiser`` (sigma_data = 1),
which works in the "variance-exploding" coordinates ``x = x0 + sigma * eps`` with
``sigma = tan(pi t / 2)`` (so ``x = x_t / alpha``)::

    c_skip = 1 / (sigma^2 + 1),  c_out = -sigma / sqrt(sigma^2 + 1),  c_in = 1 / sqrt(sigma^2 + 1)
    t      = atan(sigma) * 2 / pi
    x0_hat = v(x * c_in, t) * c_out + x * c_skip

Rectified flow (AudioX-Turbo's student and teacher)::

    z_t = (1 - t) * x0 + t * eps,   v = eps - x0,   x0_hat = z_t - t * v

The functions here follow the official operation order (it matters for fp16 bit-closeness).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._common import append_dims, check_state

__all__ = [
    "VelocityFn",
    "DenoiserFn",
    "v_scalings",
    "sigma_to_t",
    "t_to_sigma",
    "v_alpha_sigma",
    "v_noised",
    "v_target",
    "VDenoiser",
    "rf_noised",
    "rf_target",
    "rf_x0",
]

#: ``velocity_fn(x, t) -> v``: the network with its conditioning bound; ``t`` is a [B] tensor.
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``denoiser(x, sigma) -> x0_hat``: k-diffusion convention; ``sigma`` is a [B] tensor.
DenoiserFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# v-objective
# ----------------------------------------------------------------------------------------------
def v_scalings(sigma: torch.Tensor, sigma_data: float = 1.0):
    """``(c_skip, c_out, c_in)`` of k-diffusion's VDenoiser (same op order)."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = -sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    c_in = 1 / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out, c_in


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """t = atan(sigma) * 2 / pi (computed as ``atan(sigma) / pi * 2`` like k-diffusion)."""
    return sigma.atan() / math.pi * 2


def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """sigma = tan(pi t / 2); t = 1 maps to a huge (not infinite) float."""
    return (t * math.pi / 2).tan()


def v_alpha_sigma(t: torch.Tensor):
    """``(alpha, sigma_t) = (cos(pi t/2), sin(pi t/2))`` of the v-objective."""
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def v_noised(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = alpha x0 + sigma_t eps`` for a [B] tensor ``t`` (training / tests)."""
    alpha, sigma = (append_dims(a, x0.ndim) for a in v_alpha_sigma(t))
    return x0 * alpha + noise * sigma


def v_target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``v = alpha eps - sigma_t x0`` for a [B] tensor ``t`` (training / tests)."""
    alpha, sigma = (append_dims(a, x0.ndim) for a in v_alpha_sigma(t))
    return noise * alpha - x0 * sigma


class VDenoiser:
    """Turn a v-predicting ``velocity_fn(x_scaled, t) -> v`` into ``denoiser(x, sigma) -> x0_hat``.

    Exactly k-diffusion's ``external.VDenoiser`` with sigma_data = 1::

        x0_hat = velocity_fn(x * c_in, atan(sigma) * 2 / pi) * c_out + x * c_skip

    ``sigma`` may be a [B] tensor (what the samplers pass: ``sigmas[i] * x.new_ones([B])``, so it
    has the latents' dtype) or a scalar / 0-dim tensor, which is broadcast to [B] in ``x.dtype``.
    Extra keyword arguments are handed to ``velocity_fn`` unchanged.
    """

    def __init__(self, velocity_fn: VelocityFn):
        if not callable(velocity_fn):
            raise TypeError("VDenoiser needs a callable velocity_fn(x, t) -> v")
        self.velocity_fn = velocity_fn

    def __call__(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        check_state(x)
        if not isinstance(sigma, torch.Tensor) or sigma.ndim == 0:
            sigma = torch.as_tensor(sigma, device=x.device) * x.new_ones([x.shape[0]])
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in v_scalings(sigma))
        return self.velocity_fn(x * c_in, sigma_to_t(sigma), **kwargs) * c_out + x * c_skip


# ----------------------------------------------------------------------------------------------
# rectified flow
# ----------------------------------------------------------------------------------------------
def _level(t, like: torch.Tensor) -> torch.Tensor:
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return append_dims(t, like.ndim)
    return t


def rf_noised(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """``z_t = (1 - t) x0 + t eps``; ``t`` is a float, a 0-dim tensor or a [B] tensor."""
    t = _level(t, x0)
    return (1 - t) * x0 + t * noise


def rf_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Rectified-flow velocity target ``v = eps - x0``."""
    return noise - x0


def rf_x0(z: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
    """Clean-latent estimate ``x0_hat = z_t - t v``."""
    return z - _level(t, z) * v
