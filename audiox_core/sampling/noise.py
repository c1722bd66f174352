"""Noise samplers for the stochastic (SDE) samplers: ``noise_sampler(sigma, sigma_next) -> eps``.

Each call returns unit-variance noise shaped like the latents for the step sigma -> sigma_next.

* :class:`GaussianNoiseSampler` -- independent ``randn`` per step from an explicit
  ``torch.Generator`` (reproducible, no extra dependency).  With ``generator=None`` it calls
  ``torch.randn_like`` on the global RNG (k-diffusion's ``default_noise_sampler``).
* :class:`BrownianTreeNoiseSampler` -- what the official AudioX sampler uses (k-diffusion 0.1.1's
  ``BrownianTreeNoiseSampler`` over ``torchsde.BrownianTree``): the noise of a step is the Brownian
  increment ``W(sigma_next) - W(sigma)`` divided by ``sqrt(|sigma_next - sigma|)``, so it is
  consistent across step counts.  Needs the small ``torchsde`` package.

How the official code seeds the Brownian tree (for seed-exact reproduction)
---------------------------------------------------------------------------
``generate_diffusion_cond`` does ``torch.manual_seed(seed)``, draws the initial noise
``randn([B, 64, L], device=device)``, runs the conditioners (some consume RNG: VAE posterior
sampling in the audio conditioners, mel/v2 prompt masking), then ``sample_dpmpp_3m_sde`` builds ``BrownianTreeNoiseSampler(x, sigma_min, sigma_max)`` with
``seed=None``, so the tree's entropy is ``torch.randint(0, 2**63 - 1, []).item()`` drawn from the
**global CPU generator** at that moment (even when sampling on CUDA), with
``sigma_min = min(sigmas > 0)``, ``sigma_max = max(sigmas)`` and ``w0 = zeros_like(x)``.
With ``device="cuda"`` the noise comes from the CUDA generator, so, unless a conditioner drew from
the CPU generator, the tree seed is simply the first ``randint`` after ``manual_seed(seed)``::

    g = torch.Generator().manual_seed(seed)
    tree_seed = torch.randint(0, 2**63 - 1, [], generator=g).item()

Passing ``seed=None, generator=None`` here reproduces the official behaviour exactly (it draws
from the global CPU RNG); ``generator=g`` draws the tree seed from ``g`` instead, and
``seed=<int>`` (or one int per batch item) fixes it outright.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import AudioXError, InputError

__all__ = ["NoiseSampler", "GaussianNoiseSampler", "BrownianTreeNoiseSampler", "randn_from",
           "draw_tree_seed"]

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def randn_from(like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like ``like``.

    ``generator=None``: ``torch.randn_like(like)`` on the global RNG (the official behaviour).
    Otherwise the noise is drawn in float32 on the generator's device (CPU generator => identical
    numbers whatever device the latents live on) and then moved/cast to ``like``.
    """
    if generator is None:
        return torch.randn_like(like)
    eps = torch.randn(like.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return eps.to(device=like.device, dtype=like.dtype)


class GaussianNoiseSampler:
    """Fresh i.i.d. N(0, 1) noise at every call, from ``generator`` (see :func:`randn_from`)."""

    def __init__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        self.shape, self.device, self.dtype = tuple(x.shape), x.device, x.dtype
        self.generator = generator

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        if self.generator is None:
            return torch.randn(self.shape, device=self.device, dtype=self.dtype)
        eps = torch.randn(self.shape, generator=self.generator, device=self.generator.device,
                          dtype=torch.float32)
        return eps.to(device=self.device, dtype=self.dtype)


def _import_torchsde():
    try:
        import torchsde  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise AudioXError(
            "the Brownian-tree noise of the official DPM++ SDE samplers needs the 'torchsde' package "
            "(pip install torchsde); alternatively choose Gaussian noise (noise='gaussian')"
        ) from e
    return torchsde


def draw_tree_seed(generator: Optional[torch.Generator] = None) -> int:
    """The official tree seed draw: ``torch.randint(0, 2**63 - 1, [])`` (global CPU RNG if no
    generator is given)."""
    if generator is None:
        return int(torch.randint(0, 2**63 - 1, []).item())
    return int(torch.randint(0, 2**63 - 1, [], generator=generator, device=generator.device).item())


class BrownianTreeNoiseSampler:
    """Brownian-tree noise, numerically identical to k-diffusion 0.1.1's sampler of the same name.

    Args:
        x: latents whose shape/dtype/device the noise takes (the tree starts at ``zeros_like(x)``).
        sigma_min, sigma_max: the interval the tree covers; use :meth:`for_sigmas` to take them
            from a schedule as the official sampler does (smallest positive sigma, largest sigma).
        seed: entropy of the tree; an int, or one int per batch item (then every item has its own
            tree and does not depend on the rest of the batch), or None to draw one int with
            :func:`draw_tree_seed` from ``generator`` (None => global CPU RNG, the official way).
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: Union[int, Sequence[int], None] = None,
                 generator: Optional[torch.Generator] = None):
        torchsde = _import_torchsde()
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        if not float(t0) < float(t1):
            raise InputError(f"Brownian tree needs sigma_min < sigma_max, got {float(t0)} and {float(t1)}")
        self.t0, self.t1 = t0, t1
        w0 = torch.zeros_like(x)
        if seed is None:
            seed = draw_tree_seed(generator)
        if isinstance(seed, (list, tuple)):
            if len(seed) != x.shape[0]:
                raise InputError(f"got {len(seed)} Brownian-tree seeds for a batch of {x.shape[0]}")
            seeds, self.batched, w0 = [int(s) for s in seed], True, w0[0]
        else:
            seeds, self.batched = [int(seed)], False
        self.seeds = seeds
        self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds]

    @classmethod
    def for_sigmas(cls, x: torch.Tensor, sigmas: torch.Tensor, seed=None,
                   generator: Optional[torch.Generator] = None) -> "BrownianTreeNoiseSampler":
        """Tree over ``[min(sigmas > 0), max(sigmas)]`` (what ``sample_dpmpp_*_sde`` builds)."""
        return cls(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, generator=generator)

    def _w(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # increment W(b) - W(a) for a < b, per tree
        w = torch.stack([tree(a, b) for tree in self.trees])
        return w if self.batched else w[0]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        with warnings.catch_warnings():
            # torchsde warns when a float32 query lies a rounding error outside [t0, t1] (it does at
            # the schedule ends in the official sampler too); the result is unaffected.
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            if a < b:
                inc = self._w(a, b)
            else:
                inc = -self._w(b, a)
        return inc / (b - a).abs().sqrt()
