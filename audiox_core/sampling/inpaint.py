"""Masked sampling (latent inpainting / outpainting) and audio-to-audio variation.

Conventions
-----------
``known`` are the VAE latents of the reference audio, [B or 1, C, L].  ``mask`` is a KEEP mask
[B or 1, 1, L] (or [L]) with values in [0, 1]: 1 = keep the known latents, 0 = generate, values in
between blend (for seams).  NOTE: the official ``build_mask`` has the opposite meaning (there
1 = regenerate); :func:`regenerate_mask` converts ranges to our keep mask.

:class:`LatentInpainter` is a step hook (``after_step`` of every sampler): after each step it
replaces the kept region of the state by the known latents noised to the state's new level::

    v path (k-diffusion coordinates):  x_known_noised = known + sigma * eps
    rectified flow / Turbo:            x_known_noised = (1 - t) * known + t * eps
    x <- m * x_known_noised + (1 - m) * x

and :meth:`LatentInpainter.paste` does the same at level 0, i.e. the final exact paste
``m * known + (1 - m) * x`` (the samplers' last step ends at level 0, so the hook already does
it; calling ``paste`` again is harmless).

``eps``: by default the FIXED unit noise the sampling started from (pass it as ``noise``), so a
kept region follows exactly the trajectory a perfect model would take for it (for the
deterministic samplers) and the result does not depend on the RNG.  ``fresh_noise=True`` draws a
new ``eps`` at every step from ``generator`` (the official behaviour, which uses
``randn_like`` on the global RNG).

Differences from the official stable-audio-tools inpainting (a hidden gradio tab, not exposed by
AudioX): the official code re-noises the init latents at the CURRENT sigma right after each model
call (inside k-diffusion's callback, before the update) and uses a shrinking binary mask
``b_i = (m_official <= (i + 1) / steps)`` instead of blending soft values; its final output is the
sampler's last denoised estimate with no paste.  Here the replacement happens after the update at
the NEW level, soft values blend, and the kept region is pasted exactly at the end.

Variation (:func:`variation_start`): start from the encoded input at an intermediate level of
the schedule.  ``strength`` in [0, 1] is the fraction of the schedule's steps that are run:
``n = round(strength * steps)`` final steps are kept (v path: the sigma schedule is truncated;
rf path: the t grid, so the start is t = n / steps ~= strength).  strength 0 returns the input
unchanged (no model call); strength 1 is plain sampling from the same noise.  The official
``init_noise_level`` variation (rebuilding the whole schedule with sigma_max = that level)
is obtained by building the schedule yourself and passing ``strength=1.0`` with
:func:`noised_start`.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple

import torch

from ..errors import InputError
from .noise import randn_from

__all__ = [
    "OBJECTIVES",
    "LatentInpainter",
    "noised_known",
    "regenerate_mask",
    "regenerate_mask_seconds",
    "seconds_to_latent_frames",
    "variation_start",
    "noised_start",
]

OBJECTIVES = ("v", "rf")


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be 'v' (v-diffusion / k-diffusion sigmas) or 'rf' "
                         f"(rectified flow, Turbo), got {objective!r}")


def _level_view(level, like: torch.Tensor) -> torch.Tensor:
    level = torch.as_tensor(level, device=like.device)
    if level.ndim == 1:
        level = level.view(-1, *([1] * (like.ndim - 1)))
    return level.to(like.dtype)


def noised_known(known: torch.Tensor, eps: torch.Tensor, level, objective: str) -> torch.Tensor:
    """``known + sigma eps`` (v) or ``(1 - t) known + t eps`` (rf).  Level 0 gives ``known`` exactly."""
    _check_objective(objective)
    lv = _level_view(level, known)
    if objective == "v":
        return known + lv * eps
    return (1 - lv) * known + lv * eps


class LatentInpainter:
    """Step hook that keeps the masked region on the known latents (see module doc).

    Args:
        known: [B or 1, C, L] latents of the reference.
        mask: keep mask [B or 1, 1, L] (or [L]) in [0, 1].
        objective: "v" for the k-diffusion samplers (levels are sigmas), "rf" for rectified flow
            and Turbo (levels are t).
        noise: the fixed unit noise eps [B, C, L] (normally the sampler's starting unit noise).
            Required unless ``fresh_noise``.
        fresh_noise: draw a new eps at every step from ``generator`` instead.
        generator: RNG for ``fresh_noise`` (None = global RNG, like the official code).
    """

    def __init__(self, known: torch.Tensor, mask: torch.Tensor, objective: str, *,
                 noise: Optional[torch.Tensor] = None, fresh_noise: bool = False,
                 generator: Optional[torch.Generator] = None):
        _check_objective(objective)
        if not isinstance(known, torch.Tensor) or known.ndim != 3:
            raise InputError(f"known latents must be a tensor [B, C, L], got "
                             f"{tuple(known.shape) if isinstance(known, torch.Tensor) else type(known).__name__}")
        mask = torch.as_tensor(mask)
        if mask.ndim == 1:
            mask = mask.view(1, 1, -1)
        if mask.ndim != 3 or mask.shape[1] != 1 or mask.shape[2] != known.shape[2]:
            raise InputError(f"inpainting mask must be [B or 1, 1, L] with L = {known.shape[2]} latent frames "
                             f"(the known latents' length), got {tuple(mask.shape)}")
        if mask.shape[0] not in (1, known.shape[0]) and known.shape[0] != 1:
            raise InputError(f"mask batch {mask.shape[0]} does not fit known latents batch {known.shape[0]}")
        if not mask.is_floating_point():
            mask = mask.float()
        if bool((mask < 0).any()) or bool((mask > 1).any()) or not bool(torch.isfinite(mask).all()):
            raise InputError("inpainting mask values must lie in [0, 1] (1 = keep, 0 = generate)")
        if not fresh_noise and noise is None:
            raise InputError("LatentInpainter needs the fixed noise (noise=...) or fresh_noise=True")
        if noise is not None and noise.shape[1:] != known.shape[1:]:
            raise InputError(f"noise shape {tuple(noise.shape)} does not fit known latents {tuple(known.shape)}")
        self.known, self.mask, self.objective = known, mask, objective
        self.noise, self.fresh_noise, self.generator = noise, bool(fresh_noise), generator

    def _eps(self, x: torch.Tensor) -> torch.Tensor:
        if self.fresh_noise:
            return randn_from(x, self.generator)
        return self.noise.to(device=x.device, dtype=x.dtype)

    def _blend(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(device=x.device, dtype=x.dtype)
        return m * target + (1 - m) * x

    def __call__(self, x: torch.Tensor, level, step_index: Optional[int] = None) -> torch.Tensor:
        """Overwrite the kept region of ``x`` (whose noise level is ``level``)."""
        if x.shape[1:] != self.known.shape[1:] or self.known.shape[0] not in (1, x.shape[0]):
            raise InputError(f"latents {tuple(x.shape)} do not fit the known latents {tuple(self.known.shape)}")
        known = self.known.to(device=x.device, dtype=x.dtype)
        if float(torch.as_tensor(level).max()) == 0.0:
            return self._blend(x, known.expand_as(x))
        return self._blend(x, noised_known(known, self._eps(x), level, self.objective))

    def start(self, x: torch.Tensor, level) -> torch.Tensor:
        """The starting state: the sampler's start with the kept region at ``level``."""
        return self(x, level)

    def paste(self, x: torch.Tensor) -> torch.Tensor:
        """Final exact paste: ``m * known + (1 - m) * x``."""
        return self(x, 0.0)


# ----------------------------------------------------------------------------------------------
# masks from time ranges
# ----------------------------------------------------------------------------------------------
def seconds_to_latent_frames(seconds: float, sample_rate: int = 44100, downsampling_ratio: int = 2048,
                             rounding: str = "floor") -> int:
    """Latent frame index of a time: ``seconds * sample_rate / downsampling_ratio`` rounded."""
    pos = seconds * sample_rate / downsampling_ratio
    if rounding == "floor":
        return int(math.floor(pos + 1e-9))
    if rounding == "ceil":
        return int(math.ceil(pos - 1e-9))
    if rounding == "round":
        return int(math.floor(pos + 0.5))
    raise InputError(f"rounding must be 'floor', 'ceil' or 'round', got {rounding!r}")


def _hann_rise(n: int) -> torch.Tensor:
    # first half of a symmetric Hann window of length 2n (0 -> ~1), as the official build_mask
    return torch.hann_window(2 * n, periodic=False, dtype=torch.float64)[:n]


def regenerate_mask(length: int, ranges: Iterable[Tuple[int, int]], ramp_left: int = 0,
                    ramp_right: int = 0) -> torch.Tensor:
    """Keep mask [1, 1, length] (float32) that is 0 on each ``[start, end)`` range to regenerate.

    Like the official ``build_mask`` the soft edges lie INSIDE each range: over its first
    ``ramp_left`` frames the regenerate weight rises along a half Hann window (0 -> ~1), over its
    last ``ramp_right`` frames it falls back; the keep mask is 1 minus that.  Ramps longer than a
    range are cut to it; overlapping ranges combine by taking the stronger regeneration.
    ``1 - regenerate_mask(...)`` keeps only the given ranges instead.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InputError(f"mask length must be a positive number of latent frames, got {length!r}")
    if ramp_left < 0 or ramp_right < 0:
        raise InputError(f"ramp lengths must be >= 0 frames, got {ramp_left}, {ramp_right}")
    regen = torch.zeros(length, dtype=torch.float64)
    for start, end in ranges:
        start, end = int(start), int(end)
        if not 0 <= start < end <= length:
            raise InputError(f"regenerate range [{start}, {end}) must satisfy 0 <= start < end <= {length} "
                             f"(latent frames)")
        w = torch.ones(end - start, dtype=torch.float64)
        nl, nr = min(int(ramp_left), end - start), min(int(ramp_right), end - start)
        if nl:
            w[:nl] = torch.minimum(w[:nl], _hann_rise(nl))
        if nr:
            w[end - start - nr:] = torch.minimum(w[end - start - nr:], _hann_rise(nr).flip(0))
        regen[start:end] = torch.maximum(regen[start:end], w)
    return (1 - regen).to(torch.float32).view(1, 1, length)


def regenerate_mask_seconds(length: int, ranges_s: Iterable[Tuple[float, float]], ramp_s: float = 0.0,
                            sample_rate: int = 44100, downsampling_ratio: int = 2048) -> torch.Tensor:
    """:func:`regenerate_mask` with ranges and ramp given in seconds (start floored, end ceiled,
    clipped to the latent length)."""
    frames = []
    for a, b in ranges_s:
        if not b > a >= 0:
            raise InputError(f"time range ({a}, {b}) s must satisfy 0 <= start < end")
        s = seconds_to_latent_frames(a, sample_rate, downsampling_ratio, "floor")
        e = min(seconds_to_latent_frames(b, sample_rate, downsampling_ratio, "ceil"), length)
        if s >= length:
            raise InputError(f"time range ({a}, {b}) s starts after the end of the {length}-frame latents")
        frames.append((s, e))
    ramp = seconds_to_latent_frames(ramp_s, sample_rate, downsampling_ratio, "round")
    return regenerate_mask(length, frames, ramp, ramp)


# ----------------------------------------------------------------------------------------------
# variation (audio-to-audio)
# ----------------------------------------------------------------------------------------------
def noised_start(init: torch.Tensor, noise: torch.Tensor, level, objective: str) -> torch.Tensor:
    """Start state at ``level`` from latents ``init`` and unit ``noise``: ``init + sigma noise``
    (v, the official variation start) or ``(1 - t) init + t noise`` (rf, official ``sample_rf``)."""
    return noised_known(init, noise, level, objective)


def variation_start(init: torch.Tensor, noise: torch.Tensor, levels: torch.Tensor, strength: float,
                    objective: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x_start, levels_to_run)`` for an audio-to-audio variation (see module doc).

    ``levels``: the full schedule (``sigmas`` ending in 0 for "v", ``ts`` from 1 to 0 for "rf").
    ``init`` [B or 1, C, L] are the encoded input latents, ``noise`` [B, C, L] unit noise.
    """
    _check_objective(objective)
    if not (isinstance(strength, (int, float)) and 0.0 <= float(strength) <= 1.0):
        raise InputError(f"variation strength must be a number in [0, 1], got {strength!r}")
    if init.shape[1:] != noise.shape[1:] or init.shape[0] not in (1, noise.shape[0]):
        raise InputError(f"init latents {tuple(init.shape)} do not fit the noise {tuple(noise.shape)}")
    total = len(levels) - 1
    n_run = int(math.floor(float(strength) * total + 0.5))
    start = total - n_run
    run = levels[start:]
    if n_run == 0:
        return init.expand_as(noise).clone(), run
    if start == 0:
        # the whole schedule: plain sampling from the same noise (init is dropped at the top level)
        x = noise * levels[0] if objective == "v" else noise.clone()
        return x, run
    return noised_start(init.expand_as(noise), noise, levels[start], objective), run
