"""AudioX-Turbo's few-step DMD sampler (the official ``generate_diffusion_cond_dmd`` / ``sample_dmd``).

The student is a rectified-flow velocity model (``z_t = (1-t) x0 + t eps``, ``v = eps - x0``).
On the grid ``linspace(1, 0, steps + 1)`` (steps = 4: t = 1, .75, .5, .25; t = 0 never
evaluated)::

    v      = velocity(z_t, t)            # t: [B] tensor
    x0_hat = z_t - t v
    not last step:  z_next = t_next * eps_fresh + (1 - t_next) * x0_hat      (fresh randn)
    last step:      return x0_hat

``noise`` is z at t = 1 (unit noise, not scaled).  No CFG (the student always ran at scale 1).

RNG order (as the official code consumes it): the caller draws ``noise``; the conditioners run; then this sampler draws
``steps - 1`` fresh noises, one per re-noise, in step order.  With ``generator=None`` they come
from ``torch.randn_like`` on the global RNG exactly as the official ``sample_dmd`` (seed-exact on
the same device); with a generator they are drawn in float32 on the generator's device and cast.

Official dtype bug, fixed here: ``sample_dmd`` passes t as a float32 [B] tensor whatever the model
dtype, so with an fp16 model ``z_t - t v`` is promoted to float32 and the next step feeds float32
latents into an fp16 model.  Here t is cast to the latents' dtype (``noise.dtype``, which the
caller sets to the model dtype) before the call and before ``x0 = z - t v``; in fp32 (the
official setting) the numbers are identical.  Only the 4-step schedule is in distribution; 1-8
steps are accepted.

Static form (:func:`sample_turbo_static`): the same loop with the re-noise draws made up front
(:func:`turbo_noises`, the same numbers in the same order) and no per-step callback, so that the
whole loop is tensor code of fixed shapes with no host synchronisation: ``torch.compile`` can
trace it as one graph and, with ``mode="reduce-overhead"``, CUDA graphs replay all steps at once.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from ._common import StepHook, check_state, notify
from .noise import randn_from

__all__ = ["sample_turbo", "sample_turbo_static", "turbo_noises", "turbo_timesteps", "TURBO_DEFAULT_STEPS",
           "TURBO_MAX_STEPS"]

TURBO_DEFAULT_STEPS = 4
TURBO_MAX_STEPS = 8

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def turbo_timesteps(steps: int = TURBO_DEFAULT_STEPS, device: Optional[torch.device] = None) -> torch.Tensor:
    """``linspace(1, 0, steps + 1)`` in float32 (steps 1..8)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= TURBO_MAX_STEPS:
        raise InputError(f"Turbo steps must be an integer from 1 to {TURBO_MAX_STEPS} (4 is what the "
                         f"student was distilled for), got {steps!r}")
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


@torch.no_grad()
def sample_turbo(velocity: VelocityFn, noise: torch.Tensor, steps: int = TURBO_DEFAULT_STEPS,
                 generator: Optional[torch.Generator] = None,
                 callback: Optional[ProgressCallback] = None, *,
                 after_step: Optional[StepHook] = None) -> torch.Tensor:
    """Run the Turbo student for ``steps`` evaluations from unit ``noise`` [B, C, L]; returns x0.

    ``after_step(z, t_next, i)`` sees each re-noised state (and, at the end, ``x0_hat`` with
    t_next = 0); ``callback(i + 1, steps, info)`` follows every evaluation (``info["denoised"]`` is
    ``x0_hat`` of that step).
    """
    check_state(noise, "noise")
    ts = turbo_timesteps(steps, device=noise.device)
    batch = noise.shape[0]
    z = noise
    out = noise
    for i in range(steps):
        t = ts[i].expand(batch).to(z.dtype)
        v = velocity(z, t)
        x0 = z - t.view(-1, *([1] * (z.ndim - 1))) * v
        if i < steps - 1:
            t_next = ts[i + 1].expand(batch).to(z.dtype).view(-1, *([1] * (z.ndim - 1)))
            fresh = randn_from(x0, generator)
            z = t_next * fresh + (1 - t_next) * x0
            if after_step is not None:
                z = after_step(z, ts[i + 1], i)
        else:
            out = x0
            if after_step is not None:
                out = after_step(out, ts[i + 1], i)
        notify(callback, i + 1, steps, {"stage": "sampling", "t": float(ts[i]), "t_next": float(ts[i + 1]),
                                        "denoised": x0, "x": z if i < steps - 1 else out})
    return out


def turbo_noises(noise: torch.Tensor, steps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The ``steps - 1`` re-noise draws of :func:`sample_turbo`, made up front: ``[steps - 1, *noise.shape]``
    (the same numbers, in step order, as the loop draws them from ``generator``, or from the global
    RNG when it is None and nothing else draws in between)."""
    turbo_timesteps(steps)  # validates steps
    if steps == 1:
        return noise.new_zeros((0, *noise.shape))
    return torch.stack([randn_from(noise, generator) for _ in range(steps - 1)])


def sample_turbo_static(velocity: VelocityFn, noise: torch.Tensor, fresh: torch.Tensor, steps: int) -> torch.Tensor:
    """:func:`sample_turbo` with the re-noise draws given (``fresh`` from :func:`turbo_noises`) and
    no hooks: fixed shapes, no host synchronisation (capturable as one graph).  Returns the
    ``x0_hat`` of every step ``[steps, *noise.shape]``; the last one is the sample."""
    ts = turbo_timesteps(steps, device=noise.device).to(noise.dtype)
    batch = noise.shape[0]
    shape = (-1, *([1] * (noise.ndim - 1)))
    z, estimates = noise, []
    for i in range(steps):
        t = ts[i].expand(batch)
        x0 = z - t.view(shape) * velocity(z, t)
        estimates.append(x0)
        if i < steps - 1:
            t_next = ts[i + 1].expand(batch).view(shape)
            z = t_next * fresh[i] + (1 - t_next) * x0
    return torch.stack(estimates)
