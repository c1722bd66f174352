"""Rectified-flow samplers over ``velocity(x, t) -> v`` (``z_t = (1-t) x0 + t eps``, ``v = eps - x0``).

``ts`` is a non-increasing grid from the start level to 0 (``schedules.rf_timesteps``:
``linspace(1, 0, steps + 1)``); ``steps = len(ts) - 1`` intervals.  For plain sampling the start
state is the unit noise itself (the official ``sample_rf`` does not scale it, unlike the
k-diffusion samplers).

* :func:`rf_euler` -- the official ``sample_discrete_euler``: ``x <- x + (t_next - t) v(x, t)``,
  one evaluation per step, t = 0 never evaluated, no final x0 jump.  Same op order: t is passed
  as ``t * ones([B], dtype=x.dtype)`` and ``dt`` is a 0-dim float32 tensor.
* :func:`rf_heun` -- Heun's second-order method on the same grid (2 evaluations per step, the step
  into t = 0 is an Euler step because v(x, 0) is singular for sharp data; 2*steps - 1 evaluations).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..progress import ProgressCallback
from ._common import StepHook, check_levels, check_state, notify

__all__ = ["rf_euler", "rf_heun", "RF_SAMPLERS"]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _prepare(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    check_state(x)
    return check_levels(ts, "ts", max_level=1.0)


def _t_batch(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # official: t_curr * torch.ones((B,), dtype=x.dtype, device=x.device)
    return t * torch.ones((x.shape[0],), dtype=x.dtype, device=x.device)


def _step_done(x, ts, i, v, after_step, callback, total):
    if after_step is not None:
        x = after_step(x, ts[i + 1], i)
    notify(callback, i + 1, total, {"stage": "sampling", "t": float(ts[i]), "t_next": float(ts[i + 1]),
                                    "velocity": v, "x": x})
    return x


@torch.no_grad()
def rf_euler(velocity: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
             callback: Optional[ProgressCallback] = None,
             after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Euler ODE integration from ``ts[0]`` to ``ts[-1]`` (official ``sample_discrete_euler``)."""
    ts = _prepare(x, ts)
    total = len(ts) - 1
    for i in range(total):
        t_curr, t_next = ts[i], ts[i + 1]
        dt = t_next - t_curr
        v = velocity(x, _t_batch(t_curr, x))
        x = x + dt * v
        x = _step_done(x, ts, i, v, after_step, callback, total)
    return x


@torch.no_grad()
def rf_heun(velocity: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
            callback: Optional[ProgressCallback] = None,
            after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Heun (explicit trapezoid): ``x' = x + dt v(x, t)``; ``x <- x + dt (v(x,t) + v(x', t_next)) / 2``.

    The final step into ``t = 0`` stays an Euler step.
    """
    ts = _prepare(x, ts)
    total = len(ts) - 1
    for i in range(total):
        t_curr, t_next = ts[i], ts[i + 1]
        dt = t_next - t_curr
        v = velocity(x, _t_batch(t_curr, x))
        x_euler = x + dt * v
        if float(t_next) > 0:
            v2 = velocity(x_euler, _t_batch(t_next, x))
            x = x + dt * ((v + v2) * 0.5)
        else:
            x = x_euler
        x = _step_done(x, ts, i, v, after_step, callback, total)
    return x


RF_SAMPLERS = {"euler": rf_euler, "heun": rf_heun}
