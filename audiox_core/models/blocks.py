"""Pieces shared by the two diffusion backbones (:mod:`.dit` and :mod:`.mmdit`).

Everything here is written for two constraints at once:

* **Key compatibility** with the official checkpoints: module names and registration order follow
  ``audiox/models/dit.py`` (``DiffusionTransformer`` / ``MMDiffusionTransformer``), so that
  ``state_dict()`` equals the manifests key by key, in order.
* **CPU speed without changing the math**: projections stay ``nn.Linear`` / ``nn.Conv1d``
  modules that ``forward`` calls (LoRA can wrap them), but the kernel-3 convolutions run as one
  GEMM over an im2col matrix (:class:`ChannelLastConv1d`), tables (RoPE, …) are built once per
  device/length and kept in fp32, and nothing is cast back and forth needlessly.

Numerics that matter (the official DiT and MMDiT blocks compute exactly this):

* :class:`FourierFeatures`: ``f = (2π·t) @ Wᵀ`` then ``[cos f, sin f]``, in fp32.
* NeoX partial rotary (DiT): ``x·cos + rotate_half(x)·sin`` on the first ``rot_dim`` channels of
  each head, ``rotate_half(x) = (−x[d/2:], x[:d/2])``; tables from ``cat(θ, θ)``.
* GPT-J rotary (MMDiT): adjacent pairs ``(x[2f], x[2f+1])`` rotated by ``pos·ω_f``,
  ``ω_f = 10000^(−2f/d)``, over the full head dim.
* Weightless RMSNorm (MMDiT q/k): ``x · rsqrt(mean(x²) + eps)``.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneConfig
from ..errors import ConfigError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "tune_cpu_allocator",
    "FourierFeatures", "LayerNorm", "ChannelLastConv1d", "mlp2", "rms_norm", "fp32_contiguous",
    "rotary_inv_freq", "neox_rotary_table", "apply_neox_rotary", "gptj_rope_table", "apply_gptj_rope",
    "TableCache", "BackboneBase", "autocast_off",
]


_ALLOCATOR_TUNED: Optional[bool] = None


def tune_cpu_allocator() -> bool:
    """Stop glibc from handing freed activation buffers back to the kernel between layers.

    With default settings every NFE re-faults hundreds of MB of freshly ``mmap``-ed or re-grown
    heap pages (≈150 k page faults per MMDiT step, a large share of the step time on a small CPU).
    This sets ``M_MMAP_THRESHOLD`` = 32 MiB (buffers below come from the heap) and
    ``M_TRIM_THRESHOLD`` = 1 GiB (the heap top is kept), once per process.  Effect: freed memory
    is reused instead of re-faulted; the process may keep up to ~1 GiB of freed heap.  Linux/glibc
    only; elsewhere, or with ``AUDIOX_MALLOC_TUNING=0`` in the environment, nothing is changed.
    The backbones call this on their first CPU forward.  Returns whether the tuning is active.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get("AUDIOX_MALLOC_TUNING", "1").strip() in ("0", "false", "no") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _ALLOCATOR_TUNED = bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 32 << 20))
    log.info("glibc allocator tuned for CPU inference (mmap threshold 32 MiB, trim threshold 1 GiB): %s",
             _ALLOCATOR_TUNED)
    return _ALLOCATOR_TUNED


def autocast_off(device_type: str):
    """Context manager disabling autocast for ``device_type`` (fp32 islands such as time features)."""
    return torch.autocast(device_type=device_type, enabled=False)


# ----------------------------------------------------------------------------------------------
# Small modules
# ----------------------------------------------------------------------------------------------
class FourierFeatures(nn.Module):
    """Learned random Fourier features (official ``blocks.FourierFeatures``).

    ``weight`` is ``[out_features // 2, in_features]`` (randn at init, loaded from the checkpoint).
    ``forward(t)`` with ``t`` ``[B]`` or ``[B, in_features]`` returns fp32 ``[B, out_features]`` =
    ``[cos f, sin f]`` with ``f = (2π·t) @ Wᵀ``.  Always computed in fp32 with autocast off (the
    official code computes it in the input dtype; an fp32 ``t`` gives the official values).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        if out_features % 2:
            raise ConfigError(f"FourierFeatures: out_features must be even, got {out_features}")
        self.weight = nn.Parameter(torch.empty(out_features // 2, in_features).normal_())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 1:
            t = t[:, None]
        with autocast_off(t.device.type):
            f = (2 * math.pi * t.float()) @ self.weight.float().T
            return torch.cat([f.cos(), f.sin()], dim=-1)


class LayerNorm(nn.Module):
    """Bias-less LayerNorm of the DiT (official ``transformer.LayerNorm``).

    ``gamma`` is a parameter; ``beta`` is a persistent all-zero *buffer* (it is in the checkpoint),
    eps 1e-5: ``y = (x − mean) / sqrt(var + 1e-5) · gamma + beta``.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.gamma, self.beta
        if w.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            w, b = w.to(x.dtype), b.to(x.dtype)
        return F.layer_norm(x, x.shape[-1:], w, b, self.eps)


class ChannelLastConv1d(nn.Conv1d):
    """``nn.Conv1d`` applied to channel-last input ``[B, L, C_in] → [B, L, C_out]``.

    Same parameters and the same result as the official ``mm_blocks.ChannelLastConv1d``
    (permute → conv → permute), computed differently: for the stride-1, dilation-1, groups-1,
    "same"-padded case it is a single GEMM

        y[t] = b + Σ_k W[:, :, k] · x[t + k − p]   ==   F.linear(X_col, W.view(C_out, C_in·K), b)

    where ``X_col[t] = (x[t−p], …, x[t+p])`` interleaved channel-major (``[C_in, K]`` flattened,
    matching the row-major layout of ``weight [C_out, C_in, K]`` so the weight is used as a *view*:
    no copy, no per-call reorder).  Zero padding at both ends.  Other configurations fall back to
    the cuDNN/oneDNN convolution.  Autograd flows through the view, so training works unchanged.
    """

    def _fast_ok(self) -> bool:
        k = self.kernel_size[0]
        return (self.stride == (1,) and self.dilation == (1,) and self.groups == 1
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and self.padding[0] == (k - 1) // 2 and k % 2 == 1)

    def im2col(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, C_in]`` → ``[B, L, C_in·K]`` with ``cols[b, t, c·K + j] = x[b, t + j − p, c]``
        (zero outside), written in one pass per tap (no padded intermediate)."""
        k = self.kernel_size[0]
        p = (k - 1) // 2
        b, n, c = x.shape
        cols = x.new_empty(b, n, c, k)
        for j in range(k):
            s = j - p
            m = max(n - abs(s), 0)
            if s <= 0:
                cols[:, n - m:, :, j] = x[:, :m]
                cols[:, :n - m, :, j] = 0
            else:
                cols[:, :m, :, j] = x[:, s:]
                cols[:, m:, :, j] = 0
        return cols.view(b, n, c * k)

    def gemm(self, cols: torch.Tensor) -> torch.Tensor:
        """The convolution on an :meth:`im2col` matrix: ``cols @ W.view(C_out, C_in·K)ᵀ + b``."""
        return F.linear(cols, self.weight.reshape(self.out_channels, -1), self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, L, C_in]
        if not self._fast_ok():
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        if self.kernel_size[0] == 1:
            return self.gemm(x)
        return self.gemm(self.im2col(x))


def mlp2(dim_in: int, dim_hidden: int, dim_out: int, bias: bool) -> nn.Sequential:
    """``Sequential(Linear, SiLU, Linear)`` — keys ``0.*`` and ``2.*`` as in the official code."""
    return nn.Sequential(nn.Linear(dim_in, dim_hidden, bias=bias), nn.SiLU(),
                         nn.Linear(dim_hidden, dim_out, bias=bias))


def fp32_contiguous(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a contiguous fp32 tensor in one pass (``Tensor.to`` ignores ``memory_format`` when
    the dtype already matches)."""
    if x.dtype == torch.float32:
        return x.contiguous()
    return x.to(torch.float32, memory_format=torch.contiguous_format)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weightless RMSNorm over the last dim: ``x · rsqrt(mean(x²) + eps)`` (official op order)."""
    return x * torch.rsqrt(torch.mean(x ** 2, dim=-1, keepdim=True) + eps)


# ----------------------------------------------------------------------------------------------
# Rotary tables (fp32, cached per device/length)
# ----------------------------------------------------------------------------------------------
def rotary_inv_freq(dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """``1 / base^((0, 2, …, dim−2) / dim)`` in fp32 (official ``RotaryEmbedding.inv_freq``)."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, device=device).float() / dim))


def neox_rotary_table(seq_len: int, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NeoX tables ``(cos, sin)``, each ``[seq_len, 2·len(inv_freq)]`` fp32, from ``cat(θ, θ)``,
    ``θ[n, f] = n · inv_freq[f]`` with ``n = 0 … seq_len−1``."""
    pos = torch.arange(seq_len, device=inv_freq.device).float()
    ang = torch.einsum("i,j->ij", pos, inv_freq.float())
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_neox_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Partial NeoX rotary of the official DiT, in fp32, result in ``x.dtype``.

    ``x`` ``[..., N, d]``; ``cos``/``sin`` ``[N, r]`` with ``r ≤ d``.  Channels ``r…d−1`` pass through.
    ``y[:r] = x[:r]·cos + rotate_half(x[:r])·sin``, ``rotate_half(u) = cat(−u[r/2:], u[:r/2])``.
    """
    r = cos.shape[-1]
    xf = fp32_contiguous(x)
    xr, xp = xf[..., :r], xf[..., r:]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    out = xr * cos + rot * sin
    return torch.cat([out, xp], dim=-1).to(x.dtype)


def gptj_rope_table(seq_len: int, dim: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """Complex GPT-J rotation table ``[seq_len, dim/2]`` (complex64) for :func:`apply_gptj_rope`.

    ``ω_f = 1 / theta^(2f/dim)`` in fp32 (official ``compute_rope_rotations``), ``a = pos·ω_f``,
    entry ``cos a + i·sin a`` with cos/sin evaluated in fp32.
    """
    if dim % 2:
        raise ConfigError(f"GPT-J rotary needs an even head dim, got {dim}")
    pos = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    ang = torch.einsum("n,f->nf", pos, freqs)
    return torch.complex(ang.cos(), ang.sin())


def apply_gptj_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """GPT-J (interleaved-pair) rotary on an fp32 tensor ``x`` ``[..., N, d]``; returns fp32.

    ``rot`` is the complex table of :func:`gptj_rope_table` ``[N, d/2]`` = ``cos a + i·sin a``.
    Each pair ``(x[2f], x[2f+1])`` is read as ``x[2f] + i·x[2f+1]`` and multiplied by ``rot``:
    ``(x0·cos − x1·sin, x0·sin + x1·cos)`` — the official ``apply_rope`` as one complex product.
    """
    xc = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * rot).flatten(-2)


class TableCache:
    """Tiny cache for derived tensors (RoPE tables) keyed by (name, device, args).

    Deliberately not a buffer: tables are never in the state dict, survive meta-device
    construction, and are rebuilt lazily on the device the activations live on.
    """

    def __init__(self, max_entries: int = 8):
        self._d: dict = {}
        self._max = max_entries

    def get(self, key, build):
        v = self._d.get(key)
        if v is None:
            if len(self._d) >= self._max:
                self._d.pop(next(iter(self._d)))
            v = build()
            self._d[key] = v
        return v


# ----------------------------------------------------------------------------------------------
# The outer wrapper shared by DiT and MMDiT (official DiffusionTransformer / MMDiffusionTransformer)
# ----------------------------------------------------------------------------------------------
class BackboneBase(nn.Module):
    """Outer layer common to both backbones: time embedding, optional condition/global MLPs,
    the 1×1 pre/post convolutions with residuals, patching, and the dtype policy.

    Registration order (= state-dict order of the official code): ``timestep_features``,
    ``to_timestep_embed``, ``to_cond_embed``, ``to_global_embed``, ``transformer``,
    ``preprocess_conv``, ``postprocess_conv``.

    Dtype policy: inputs are cast to the weight dtype (unless autocast is active, in which case
    they are left to autocast); the output is returned in the dtype ``x`` came in.
    """

    timestep_features_dim = 256

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        if cfg.patch_size < 1:
            raise ConfigError(f"patch_size must be ≥ 1, got {cfg.patch_size}")
        self.timestep_features = FourierFeatures(1, self.timestep_features_dim)
        self.to_timestep_embed = mlp2(self.timestep_features_dim, d, d, bias=True)
        self.cond_embed_dim = 0
        if cfg.cond_token_dim > 0:
            self.cond_embed_dim = d if cfg.project_cond_tokens else cfg.cond_token_dim
            self.to_cond_embed = mlp2(cfg.cond_token_dim, self.cond_embed_dim, self.cond_embed_dim, bias=False)
        if cfg.global_cond_dim > 0:  # project_global_cond is always True in AudioX configs
            self.to_global_embed = mlp2(cfg.global_cond_dim, d, d, bias=False)
        self.transformer = self._build_transformer(cfg)
        c = cfg.io_channels
        self.preprocess_conv = nn.Conv1d(c, c, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(c, c, 1, bias=False)
        #: Recompute each block in backward (saves activation memory when training).
        self.gradient_checkpointing: bool = False
        self._tables = TableCache()

    def _build_transformer(self, cfg: BackboneConfig) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def weight_dtype(self) -> torch.dtype:
        return self.transformer.project_in.weight.dtype

    def _cast_in(self, t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() and not torch.is_autocast_enabled(t.device.type) and t.dtype != self.weight_dtype:
            return t.to(self.weight_dtype)
        return t

    def _check_x(self, x: torch.Tensor) -> None:
        c, p = self.cfg.io_channels, self.cfg.patch_size
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[1] != c:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(f"{type(self).__name__}: latents x must be [B, {c}, L], got {shape}")
        if x.shape[2] % p:
            raise InputError(f"{type(self).__name__}: latent length {x.shape[2]} is not a multiple of "
                             f"patch_size {p}")

    def _check_context(self, context: torch.Tensor, batch: int, dim: int) -> None:
        if not torch.is_tensor(context) or context.dim() != 3 or context.shape[-1] != dim:
            shape = tuple(context.shape) if torch.is_tensor(context) else type(context).__name__
            raise InputError(f"{type(self).__name__}: context must be [B, N, {dim}], got {shape}")
        if context.shape[0] != batch:
            raise InputError(f"{type(self).__name__}: context batch {context.shape[0]} does not match "
                             f"latent batch {batch}")

    def timestep_embed(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """``to_timestep_embed(FourierFeatures(t))`` → ``[B, D]``; ``t`` may be a scalar or ``[1]``."""
        if not torch.is_tensor(t):
            t = torch.tensor(float(t))
        t = t.reshape(-1)
        if t.numel() == 1 and batch != 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise InputError(f"{type(self).__name__}: t must have one value per batch item ({batch}), "
                             f"got {t.numel()}")
        feats = self.timestep_features(t)
        return self.to_timestep_embed(self._cast_in(feats))

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, L]`` → ``preprocess_conv(x) + x`` → ``[B, L/p, C·p]`` (channel-last)."""
        if x.device.type == "cpu" and _ALLOCATOR_TUNED is None and not torch.compiler.is_compiling():
            tune_cpu_allocator()  # host-side, once per process (a compiled caller does it before tracing)
        x = self.preprocess_conv(x) + x
        x = x.transpose(1, 2)
        p = self.cfg.patch_size
        if p > 1:  # 'b (t p) c -> b t (c p)'
            b, n, c = x.shape
            x = x.reshape(b, n // p, p, c).transpose(2, 3).reshape(b, n // p, c * p)
        return x

    def unembed_output(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, L/p, C·p]`` → ``[B, C, L]`` → ``postprocess_conv(out) + out``."""
        p = self.cfg.patch_size
        out = h.transpose(1, 2)  # b c t
        if p > 1:  # 'b (c p) t -> b c (t p)'
            b, cp, n = out.shape
            out = out.reshape(b, cp // p, p, n).transpose(2, 3).reshape(b, cp // p, n * p)
        out = out.contiguous()
        return self.postprocess_conv(out) + out

    def run_block(self, block: nn.Module, *args):
        """Call ``block(*args)``, through activation checkpointing when enabled and training."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def table(self, key, build):
        return self._tables.get(key, build)

    def build_tables(self, x: torch.Tensor) -> None:
        """Build the cached tables a forward on ``x`` uses ahead of it (a caller that compiles a
        graph around the backbone does this first, so the graph finds them built); none here."""

