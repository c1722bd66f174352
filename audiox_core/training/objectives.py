"""The diffusion training objective of each model, the time samplers, EMA and LR schedules.

Objectives (the official training wrappers: ``v`` for AudioX and MAF, ``rectified_flow`` for Turbo) for clean latents ``x0``, noise ``ε`` and
``t ∈ [0, 1)`` — the network is called with the noised latents and the same ``t``::

    v (AudioX, AudioX-MAF, AudioX-MAF-MMDiT):  α = cos(πt/2), σ = sin(πt/2)
        x_t = α·x0 + σ·ε            target = α·ε − σ·x0
    rectified_flow (AudioX-Turbo and its teacher):
        z_t = (1 − t)·x0 + t·ε      target = ε − x0

    loss = mean((f(x_t, t) − target)²)

Time samplers (:class:`TimeSampler`):

* ``"sobol"`` (default, official "uniform"): one scrambled 1-D Sobol sequence for the whole run
  (``torch.quasirandom.SobolEngine(1, scramble=True, seed=seed)``), B points per micro-batch.  The
  official engine is unseeded; ours is seeded and its position is part of the training state, so a
  resumed run draws exactly the values an uninterrupted one would.
* ``"uniform"``: i.i.d. U(0, 1) from the step's generator.
* ``"stratified"``: ``(i + u_i) / B`` for item i (one point per stratum).
* ``"logit_normal"``: ``sigmoid(N(0, 1))`` (official option).

EMA (:class:`EMA`): the ``ema_pytorch`` rule the official trainer uses (beta 0.9999, power 3/4,
update every step, copy for the first step): ``decay = clamp(1 − (1 + n)^−power, 0, beta)`` with
``n`` the number of averaging updates so far.

Schedules (:class:`LRSchedule`): linear warm-up over ``warmup_steps`` times either a constant or
the official ``InverseLR`` multiplier ``(1 − w^(s+1)) · max(final, (1 + s/inv_gamma)^−power)``
(stable-audio-tools; Turbo config: inv_gamma 1e6, power 0.5, w 0.99).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from ..errors import InputError

__all__ = ["OBJECTIVES", "T_SAMPLERS", "noised_and_target", "x0_from_velocity", "TimeSampler", "EMA",
           "LRSchedule"]

OBJECTIVES = ("v", "rectified_flow")
T_SAMPLERS = ("sobol", "uniform", "stratified", "logit_normal")


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def noised_and_target(objective: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """``(network input, regression target)`` for the model's own objective (module docstring)."""
    tt = _col(t, x0)
    if objective == "v":
        alpha, sigma = torch.cos(tt * math.pi / 2), torch.sin(tt * math.pi / 2)
        return x0 * alpha + noise * sigma, noise * alpha - x0 * sigma
    if objective == "rectified_flow":
        return (1 - tt) * x0 + tt * noise, noise - x0
    raise InputError(f"unknown diffusion objective {objective!r} (expected one of {OBJECTIVES})")


def x0_from_velocity(objective: str, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Clean estimate: rf ``x_t − t·v``; v-objective ``α·x_t − σ·v``."""
    tt = _col(t, x_t)
    if objective == "rectified_flow":
        return x_t - tt * v
    if objective == "v":
        return torch.cos(tt * math.pi / 2) * x_t - torch.sin(tt * math.pi / 2) * v
    raise InputError(f"unknown diffusion objective {objective!r}")


class TimeSampler:
    """Draws training times ``t ∈ [0, 1)`` (module docstring).  ``state_dict`` holds the Sobol position."""

    def __init__(self, kind: str = "sobol", seed: int = 0):
        if kind not in T_SAMPLERS:
            raise InputError(f"t sampler must be one of {T_SAMPLERS}, got {kind!r}")
        self.kind, self.seed = kind, int(seed)
        self.drawn = 0
        self._engine = None

    def _sobol(self):
        if self._engine is None:
            self._engine = torch.quasirandom.SobolEngine(1, scramble=True, seed=self.seed)
            if self.drawn:
                self._engine.fast_forward(self.drawn)
        return self._engine

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "sobol":
            t = self._sobol().draw(n)[:, 0].float()
        elif self.kind == "uniform":
            t = torch.rand(n, generator=generator)
        elif self.kind == "stratified":
            t = (torch.arange(n) + torch.rand(n, generator=generator)) / n
        else:
            t = torch.sigmoid(torch.randn(n, generator=generator))
        self.drawn += n
        return t

    def state_dict(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "drawn": self.drawn}

    def load_state_dict(self, d: dict) -> None:
        self.kind, self.seed, self.drawn = d["kind"], int(d["seed"]), int(d["drawn"])
        self._engine = None


class EMA:
    """Exponential moving average of a list of parameters (ema_pytorch rule, module docstring)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], beta: float = 0.9999, power: float = 0.75):
        self.params = list(params)
        self.beta, self.power = float(beta), float(power)
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.updates = 0

    def decay(self) -> float:
        n = self.updates - 1
        if n <= 0:
            return 0.0
        return min(self.beta, max(0.0, 1 - (1 + n) ** -self.power))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = self.decay()
        for s, p in zip(self.shadow, self.params):
            if d == 0.0:
                s.copy_(p.detach().float())
            else:
                s.lerp_(p.detach().float(), 1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the live parameters and the averages (call twice to restore)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().float().clone()
            p.copy_(s.to(p.dtype))
            s.copy_(tmp)


class LRSchedule:
    """LR multiplier for optimizer step ``s`` (0-based): linear warm-up × constant / InverseLR."""

    def __init__(self, kind: str = "constant", warmup_steps: int = 0, inv_gamma: float = 1e6, power: float = 0.5,
                 exp_warmup: float = 0.0, final_lr_ratio: float = 0.0):
        if kind not in ("constant", "inverse"):
            raise InputError(f"LR schedule must be 'constant' or 'inverse', got {kind!r}")
        if not 0.0 <= exp_warmup < 1.0:
            raise InputError(f"exp_warmup must be in [0, 1), got {exp_warmup}")
        self.kind, self.warmup_steps = kind, int(warmup_steps)
        self.inv_gamma, self.power, self.exp_warmup, self.final = float(inv_gamma), float(power), float(exp_warmup), \
            float(final_lr_ratio)

    def __call__(self, s: int) -> float:
        m = 1.0
        if self.warmup_steps > 0:
            m *= min(1.0, (s + 1) / self.warmup_steps)
        if self.kind == "inverse":
            m *= (1 - self.exp_warmup ** (s + 1)) * max(self.final, (1 + s / self.inv_gamma) ** -self.power)
        return m
