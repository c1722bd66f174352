"""Closed-form toy models for the sampler tests (written independently of audiox_core.sampling).

Data x0 ~ N(mu, s^2 I) per coordinate (s = 0: a point mass at mu).  Everything below follows from
Gaussian conditioning, so the exact denoiser / velocity and the probability-flow ODE solutions
are known analytically.
"""
from __future__ import annotations

import math

import torch


class CountingModel:
    """Wrap a function and count its calls (and the batch sizes it saw)."""

    def __init__(self, fn):
        self.fn, self.calls, self.batches = fn, 0, []

    def __call__(self, x, t, *args, **kwargs):
        self.calls += 1
        self.batches.append(x.shape[0])
        return self.fn(x, t, *args, **kwargs)


def ve_denoiser(mu, s: float):
    """E[x0 | x] for x = x0 + sigma * eps:  mu + s^2 / (s^2 + sigma^2) * (x - mu)."""

    def D(x, sigma):
        sig = sigma.view(-1, *([1] * (x.ndim - 1)))
        return mu + (s * s) / (s * s + sig * sig) * (x - mu)

    return D


def vp_velocity(mu, s: float):
    """Exact v-prediction for x_t = a x0 + b eps (a = cos(pi t/2), b = sin(pi t/2)), v = a eps - b x0.

    Var(x_t) = a^2 s^2 + b^2;  E[x0|x_t] = mu + a s^2 (x_t - a mu) / Var;
    E[eps|x_t] = b (x_t - a mu) / Var.
    """

    def v(x_t, t):
        tt = t.view(-1, *([1] * (x_t.ndim - 1)))
        a, b = torch.cos(tt * (math.pi / 2)), torch.sin(tt * (math.pi / 2))
        var = a * a * s * s + b * b
        resid = x_t - a * mu
        e_x0 = mu + a * s * s * resid / var
        e_eps = b * resid / var
        return a * e_eps - b * e_x0

    return v


def rf_velocity(mu, s: float):
    """Exact rectified-flow velocity for z = (1-t) x0 + t eps, v = eps - x0.

    Var(z) = (1-t)^2 s^2 + t^2; E[x0|z] = mu + (1-t) s^2 (z - (1-t) mu) / Var;
    E[eps|z] = t (z - (1-t) mu) / Var.  For s = 0 this is (z - mu) / t.
    """

    def v(z, t):
        tt = t.view(-1, *([1] * (z.ndim - 1)))
        resid = z - (1 - tt) * mu
        var = (1 - tt) ** 2 * s * s + tt * tt
        return tt * resid / var - (mu + (1 - tt) * s * s * resid / var)

    return v


def ve_ode_solution(x_start, mu, s: float, sigma_start: float, sigma_end: float):
    """Probability-flow ODE dx/dsigma = (x - D)/sigma for Gaussian data: (x - mu)/sqrt(s^2 + sigma^2)
    is constant along the flow."""
    return mu + (x_start - mu) * math.sqrt(s * s + sigma_end**2) / math.sqrt(s * s + sigma_start**2)
