"""Oobleck VAE: the AudioX "pretransform" (the Stable Audio Open autoencoder).

Stereo 44.1 kHz audio ``[B, 2, N]`` <-> latents ``[B, 64, N // 2048]``.  Key layout (relative to
:class:`Pretransform`, which the full model registers as ``pretransform`` and the v1/v2 audio-prompt
conditioners register under their own ``pretransform``)::

    model.encoder.layers.0               WNConv1d(2 -> 128, k7, p3)
    model.encoder.layers.{1..5}          EncoderBlock(128->128 s2, 128->256 s4, 256->512 s4,
                                                      512->1024 s8, 1024->2048 s8)
    model.encoder.layers.6               SnakeBeta(2048)
    model.encoder.layers.7               WNConv1d(2048 -> 128, k3, p1)   (mean || scale)
    model.decoder.layers.0               WNConv1d(64 -> 2048, k7, p3)
    model.decoder.layers.{1..5}          DecoderBlock(2048->1024 s8, ..., 128->128 s2)
    model.decoder.layers.6               SnakeBeta(128)
    model.decoder.layers.7               WNConv1d(128 -> 2, k7, p3, no bias)
    model.decoder.layers.8               Identity (Tanh if final_tanh)

Math (official ``audiox/models/{autoencoders,blocks,bottleneck,pretransforms}.py``):

* weight norm (old-style ``torch.nn.utils.weight_norm``, dim 0): ``w = v * (g / ||v||)`` with the
  norm over every dim but 0 (for a transposed conv dim 0 is the *input* channel);
* SnakeBeta (log-scale): ``y = x + 1 / (exp(beta) + 1e-9) * sin(exp(alpha) * x) ** 2``;
* ResidualUnit(C, d): ``x + conv1x1(snake(conv7_d(snake(x))))`` (padding 3d);
* VAE bottleneck: ``mean, scale = h.chunk(2, dim=1)``, ``std = softplus(scale) + 1e-4``,
  ``z = randn * std + mean`` -- sampled at inference too (the official code always samples);
* pretransform: ``encode = z / scale``, ``decode = decoder(z * scale)`` (``scale`` is 1.0 for every
  released model).

Speed.  The official modules recompute every weight norm on every call, run ``conv1d`` on
channels-first tensors (which oneDNN reorders around every layer) and allocate a fresh full-length
activation for every op (on CPU each fresh 225 MB buffer costs ~0.1 s of page faults).  Here,
whenever no gradient is needed:

* the fused weight ``g * v / ||v||`` is cached per conv as a 4-D channels-last tensor
  (invalidated when a parameter is replaced, modified in place, loaded or moved; ``cache_weight``
  turns it off, trading speed for one weight copy of memory);
* activations are kept as ``[B, C, 1, N]`` channels-last (memory ``[B, N, C]``), the layout
  oneDNN's direct convolutions use natively (1.7-2.2x faster per conv on AVX-512 CPUs);
* residual units, SnakeBeta and residual adds run in place, block by block along time (blocks of
  ~16 MB on CPU, each conv block reading a halo of ``3 * dilation`` steps), so their temporaries are
  small and cache-resident and a residual unit allocates no full-length buffer.  Results equal the
  out-of-place formula up to conv rounding.

Measured (``bench/vae_speed.py``, 2 threads, fp32, full-size VAE, 10 s stereo; the 2-vCPU dev
machine was shared with other jobs, so these are minimums of a few runs): decode 215 latents
3.8 s and encode 441000 samples 3.7 s, versus 17.6 s / 11.1 s for the same weights evaluated the
official way in the same process, and 12.75 s / 11.2 s for the official code on the reference
2-vCPU Xeon (AVX-512/AMX-bf16, torch 2.13.0+cpu, 2 threads, measured 2026-11-22).  Single-thread CPU time at 64 latents: 2.35 s vs 5.4 s for
the official modules.  torch.compile is not used.

Numerics versus the official fp32 modules (weights copied, same posterior noise): identical
formulas and op order; only the convolution algorithm's rounding differs: max-abs 3e-7 on the
decoded audio (peak 0.13) and 5e-7 on the latents for the full-size VAE with random weights,
<= 1e-6 on small configs.  With gradients enabled every op is the plain out-of-place autograd
formula (training works; the blocked in-place path is only taken without gradients).

Long inputs: ``encode``/``decode`` accept ``chunked=True`` (chunks of ``chunk_size`` latents,
consecutive chunks overlapping by ``overlap`` latents, ``overlap // 2`` trimmed on each side of a
seam, callback after each chunk).  :func:`receptive_field` computes the exact one-sided receptive
field through the conv stack: 8 latents for the encoder, 10 for the decoder (an impulse test on
the full-size decoder shows a reach of 9.27 frames and nothing beyond).  The default overlap is
twice the larger one (20), the smallest with exact seams: chunked == unchunked up to rounding.
Measured on the full-size VAE (random weights, 10 s of tones + noise, chunk 128): decode max-abs
2.2e-7 (1.7e-6 of the peak), encode 2.4e-7 (1.8e-6); with overlap 16 (trim 8 < 10) decode is off
by 5.5e-5.  Memory grows with ``chunk_size``, not with the input length (besides the input and
output tensors).  Differences from the official chunking (chunk 128, overlap 32): the posterior
noise is drawn once for the whole latent sequence (the official samples each chunk separately),
the last encoder chunk is aligned to the 2048-sample grid (the official is misaligned when ``N``
is not a multiple of 2048), and batches are processed item by item (official ``iterate_batch``).
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import VAEConfig
from ..errors import ConfigError, InputError
from ..progress import ProgressCallback, report

logger = logging.getLogger(__name__)

__all__ = [
    "WNConv1d", "WNConvTranspose1d", "SnakeBeta", "ResidualUnit", "EncoderBlock", "DecoderBlock",
    "OobleckEncoder", "OobleckDecoder", "VAEBottleneck", "AudioAutoencoder", "Pretransform",
    "receptive_field",
]

_CL = torch.channels_last
_BLOCK_ELEMS = 1 << 22  # elements per time block of the in-place kernels on CPU (~16 MB fp32); 4 MB
# blocks are ~2 % faster on an idle machine, but 4x more (small) parallel regions stall badly when
# the cores are shared with other processes
_BLOCK_ELEMS_ACCEL = 1 << 24  # on GPUs: no page-fault cost to avoid, fewer kernel launches matter more


def _to_internal(x: Tensor) -> Tensor:
    """``[B, C, N]`` -> ``[B, C, 1, N]`` channels-last (memory ``[B, N, C]``)."""
    return x.unsqueeze(2).contiguous(memory_format=_CL)


def _from_internal(x: Tensor) -> Tensor:
    """``[B, C, 1, N]`` (any layout) -> contiguous ``[B, C, N]``."""
    return x.squeeze(2).contiguous()


def _fast(x: Tensor, *modules: nn.Module) -> bool:
    """True when no autograd graph is needed: in-place kernels and cached weights are safe."""
    if not torch.is_grad_enabled():
        return True
    if x.requires_grad:
        return False
    return not any(p.requires_grad for m in modules for p in m.parameters(recurse=False))


# ----------------------------------------------------------------------------------------------
# Weight-normalised convolutions (old-style parameters weight_g / weight_v)
# ----------------------------------------------------------------------------------------------
class _WNConvBase(nn.Module):
    """Shared logic of :class:`WNConv1d` / :class:`WNConvTranspose1d`.

    Parameters, in the official registration order: ``bias`` (absent when ``bias=False``),
    ``weight_g`` ``[W0, 1, 1]``, ``weight_v`` ``[W0, W1, k]`` where ``(W0, W1)`` is ``(out, in)``
    for a conv and ``(in, out)`` for a transposed conv.  The effective weight is
    ``v * (g / ||v||)`` with the norm over dims 1 and 2.

    ``forward`` accepts ``[B, C, N]`` or the internal channels-last ``[B, C, 1, N]`` layout and
    returns the same rank.  ``cache_weight`` (default True) keeps the fused weight between calls
    whenever no gradient is needed; set it to False to trade speed for one weight copy of memory.
    """

    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding, self.dilation = int(padding), int(dilation)
        w0, w1 = (self.in_channels, self.out_channels) if self.transposed else (self.out_channels, self.in_channels)
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels))
        else:
            self.register_parameter("bias", None)
        self.weight_g = nn.Parameter(torch.empty(w0, 1, 1))
        self.weight_v = nn.Parameter(torch.empty(w0, w1, self.kernel_size))
        self.cache_weight = True
        self._cache: Optional[tuple] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv1d's default init followed by weight_norm's ``g = ||v||`` (as the official)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
            if self.weight_v.device.type != "meta":
                self.weight_g.copy_(torch.linalg.vector_norm(self.weight_v, dim=(1, 2), keepdim=True))
            if self.bias is not None:
                fan_in = self.weight_v.shape[1] * self.kernel_size
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(self.bias, -bound, bound)
        self._cache = None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s

    # -------------------------------------------------------------- fused weight
    def fused_weight(self) -> Tensor:
        """``g * v / ||v||`` in the shape of ``weight_v`` (differentiable, never cached)."""
        v = self.weight_v
        return v * (self.weight_g / torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True))

    def _weight4d(self) -> Tensor:
        """Fused weight as ``[W0, W1, 1, k]`` channels-last, cached when no gradient is needed."""
        g, v = self.weight_g, self.weight_v
        need_grad = torch.is_grad_enabled() and (g.requires_grad or v.requires_grad)
        if need_grad or not self.cache_weight or v.device.type == "meta":
            return self.fused_weight().unsqueeze(2).contiguous(memory_format=_CL)
        try:
            key = (v.data_ptr(), g.data_ptr(), v._version, g._version, v.dtype, v.device,
                   torch.is_inference_mode_enabled())
        except RuntimeError:  # inference tensors carry no version counter: do not cache
            with torch.no_grad():
                return self.fused_weight().unsqueeze(2).contiguous(memory_format=_CL)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                w = self.fused_weight().unsqueeze(2).contiguous(memory_format=_CL)
            self._cache = (key, w)
        return self._cache[1]

    def clear_weight_cache(self) -> None:
        self._cache = None

    def _apply(self, fn, recurse=True):  # .to() / .half() / .cuda(): drop the stale cache
        self._cache = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None
        return super()._load_from_state_dict(*args, **kwargs)

    # -------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        w = self._weight4d()
        if x.dim() == 4:
            return self._conv2d(x, w)
        if x.dim() == 3:
            return self._conv1d(x, w.squeeze(2))
        raise InputError(f"{type(self).__name__} expects [B, C, N] or [B, C, 1, N], got {tuple(x.shape)}")


class WNConv1d(_WNConvBase):
    """``weight_norm(nn.Conv1d(...))`` with the official parameter names (see :class:`_WNConvBase`)."""

    def _conv1d(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv1d(x, w, self.bias, self.stride, self.padding, self.dilation)

    def _conv2d(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x, w, self.bias, (1, self.stride), (0, self.padding), (1, self.dilation))


class WNConvTranspose1d(_WNConvBase):
    """``weight_norm(nn.ConvTranspose1d(...))``; ``weight_g`` is ``[in, 1, 1]`` (norm over out, k)."""

    transposed = True

    def _conv1d(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv_transpose1d(x, w, self.bias, self.stride, self.padding, 0, 1, self.dilation)

    def _conv2d(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv_transpose2d(x, w, self.bias, (1, self.stride), (0, self.padding), 0, 1, (1, self.dilation))


# ----------------------------------------------------------------------------------------------
# Activation and blocks
# ----------------------------------------------------------------------------------------------
def _block_rows(x: Tensor, halo: int = 0) -> int:
    """Time steps per block for the blocked in-place kernels.  On CPU ~16 MB fp32 temporaries: small
    enough for glibc to recycle them without page faults (a fresh 225 MB activation costs ~0.1 s of
    page faults) and to stay mostly cache-resident."""
    elems = _BLOCK_ELEMS if x.device.type == "cpu" else _BLOCK_ELEMS_ACCEL
    return max(2 * halo + 1, elems // max(int(x.shape[1]), 1))


class SnakeBeta(nn.Module):
    """Log-scale SnakeBeta: ``x + 1 / (exp(beta) + 1e-9) * sin(exp(alpha) * x) ** 2`` per channel.

    Channel axis is dim 1, time is the last dim (works on ``[B, C, N]`` and ``[B, C, 1, N]``).
    Without gradients the same formula runs with in-place kernels (bit-identical result);
    ``forward(x, inplace=True)`` overwrites ``x`` block by block along time (only for callers that
    own ``x``).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)
        self.alpha = nn.Parameter(torch.zeros(self.channels))
        self.beta = nn.Parameter(torch.zeros(self.channels))

    def extra_repr(self) -> str:
        return str(self.channels)

    def _coeffs(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        alpha = torch.exp(self.alpha).view(shape)
        inv_beta = 1.0 / (torch.exp(self.beta).view(shape) + 1e-9)
        return alpha, inv_beta

    @staticmethod
    def _term(x: Tensor, alpha: Tensor, inv_beta: Tensor) -> Tensor:
        """``inv_beta * sin(alpha * x)^2`` in one new tensor."""
        t = torch.mul(x, alpha)
        t.sin_()
        t.square_()
        return t.mul_(inv_beta)

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        alpha, inv_beta = self._coeffs(x)
        if not _fast(x, self):
            return x + inv_beta * torch.sin(x * alpha).pow(2)
        if not inplace:
            return self._term(x, alpha, inv_beta).add_(x)  # == x + term (addition commutes exactly)
        n, rows = x.shape[-1], _block_rows(x)
        for s in range(0, n, rows):
            xs = x[..., s:s + rows]
            xs.add_(self._term(xs, alpha, inv_beta))
        return x


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv7(snake(x), dilation d, padding 3d)))``; keys ``layers.{0,1,2,3}``.

    Fast path (no gradients): the unit runs block by block along time, each block reading a halo
    of ``3d`` steps on both sides, so every temporary is block-sized.  With ``inplace=True`` the
    result overwrites ``x`` (each block is written back one block late, after the next block has
    read its halo), so the unit allocates no full-size buffer at all.
    """

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.dilation = int(dilation)
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels),
            WNConv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        if not _fast(x, *self.modules()):
            return self.layers(x) + x
        act1, conv7, act2, conv1 = self.layers
        out = x if inplace else torch.empty_like(x)
        n, halo = x.shape[-1], conv7.padding
        rows = _block_rows(x, halo)
        pending = None
        for s in range(0, n, rows):
            e = min(s + rows, n)
            lo, hi = max(s - halo, 0), min(e + halo, n)
            y = conv7(act1(x[..., lo:hi]))[..., s - lo:e - lo]  # interior outputs see real neighbours
            y = conv1(act2(y, inplace=True))
            y.add_(x[..., s:e])  # official: layers(x) + x (same value; addition commutes exactly)
            if not inplace:
                out[..., s:e].copy_(y)
                continue
            if pending is not None:  # safe now: block s has read its left halo
                out[..., pending[0]:pending[1]].copy_(pending[2])
            pending = (s, e, y)
        if pending is not None:
            out[..., pending[0]:pending[1]].copy_(pending[2])
        return out


class EncoderBlock(nn.Module):
    """3 residual units (dilation 1, 3, 9), SnakeBeta, WNConv1d(k=2s, stride s, pad ceil(s/2))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            ResidualUnit(in_channels, 1),
            ResidualUnit(in_channels, 3),
            ResidualUnit(in_channels, 9),
            SnakeBeta(in_channels),
            WNConv1d(in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor, _owned: bool = False) -> Tensor:
        if not _fast(x, *self.modules()):
            return self.layers(x)
        r1, r2, r3, act, conv = self.layers
        x = r1(x, inplace=_owned)  # from here on x is ours
        x = r3(r2(x, inplace=True), inplace=True)
        return conv(act(x, inplace=True))


class DecoderBlock(nn.Module):
    """SnakeBeta, WNConvTranspose1d(k=2s, stride s, pad ceil(s/2)), 3 residual units (1, 3, 9)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(in_channels),
            WNConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride,
                              padding=math.ceil(stride / 2)),
            ResidualUnit(out_channels, 1),
            ResidualUnit(out_channels, 3),
            ResidualUnit(out_channels, 9),
        )

    def forward(self, x: Tensor, _owned: bool = False) -> Tensor:
        if not _fast(x, *self.modules()):
            return self.layers(x)
        act, up, r1, r2, r3 = self.layers
        x = up(act(x, inplace=_owned))
        for r in (r1, r2, r3):
            x = r(x, inplace=True)
        return x


def _check_stack(c_mults: Sequence[int], strides: Sequence[int]) -> None:
    if len(c_mults) != len(strides) or not c_mults:
        raise ConfigError(f"c_mults {list(c_mults)} and strides {list(strides)} must be non-empty and equally long")


class OobleckEncoder(nn.Module):
    """``[B, in_channels, N]`` -> ``[B, latent_dim, N // prod(strides)]`` (latent_dim = 2 x 64 for the VAE)."""

    def __init__(self, in_channels: int = 2, channels: int = 128, latent_dim: int = 128,
                 c_mults: Sequence[int] = (1, 2, 4, 8, 16), strides: Sequence[int] = (2, 4, 4, 8, 8)):
        super().__init__()
        _check_stack(c_mults, strides)
        cm = [1] + list(c_mults)
        layers = [WNConv1d(in_channels, cm[0] * channels, 7, padding=3)]
        for i in range(len(cm) - 1):
            layers.append(EncoderBlock(cm[i] * channels, cm[i + 1] * channels, strides[i]))
        layers += [SnakeBeta(cm[-1] * channels), WNConv1d(cm[-1] * channels, latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)
        self.strides = tuple(int(s) for s in strides)

    def forward(self, x: Tensor) -> Tensor:
        h = _to_internal(x)
        if not _fast(h, *self.modules()):
            return _from_internal(self.layers(h))
        first, *blocks, act, last = self.layers
        h = first(h)
        for blk in blocks:
            h = blk(h, _owned=True)
        return _from_internal(last(act(h, inplace=True)))


class OobleckDecoder(nn.Module):
    """``[B, latent_dim, L]`` -> ``[B, out_channels, L * prod(strides)]``."""

    def __init__(self, out_channels: int = 2, channels: int = 128, latent_dim: int = 64,
                 c_mults: Sequence[int] = (1, 2, 4, 8, 16), strides: Sequence[int] = (2, 4, 4, 8, 8),
                 final_tanh: bool = False):
        super().__init__()
        _check_stack(c_mults, strides)
        cm = [1] + list(c_mults)
        layers = [WNConv1d(latent_dim, cm[-1] * channels, 7, padding=3)]
        for i in range(len(cm) - 1, 0, -1):
            layers.append(DecoderBlock(cm[i] * channels, cm[i - 1] * channels, strides[i - 1]))
        layers += [SnakeBeta(cm[0] * channels), WNConv1d(cm[0] * channels, out_channels, 7, padding=3, bias=False),
                   nn.Tanh() if final_tanh else nn.Identity()]
        self.layers = nn.Sequential(*layers)
        self.strides = tuple(int(s) for s in strides)

    def forward(self, z: Tensor) -> Tensor:
        h = _to_internal(z)
        if not _fast(h, *self.modules()):
            return _from_internal(self.layers(h))
        first, *blocks, act, last, final = self.layers
        h = first(h)
        for blk in blocks:
            h = blk(h, _owned=True)
        return _from_internal(final(last(act(h, inplace=True))))


def _stack_layout(strides: Sequence[int], decoder: bool):
    """The conv stack as ``(transposed, kernel, stride, padding, dilation)`` tuples in forward order."""
    res = [t for d in (1, 3, 9) for t in ((False, 7, 1, 3 * d, d), (False, 1, 1, 0, 1))]
    if not decoder:
        layers = [(False, 7, 1, 3, 1)]
        for s in strides:
            layers += res + [(False, 2 * s, s, math.ceil(s / 2), 1)]
        return layers + [(False, 3, 1, 1, 1)]
    layers = [(False, 7, 1, 3, 1)]
    for s in reversed(strides):
        layers += [(True, 2 * s, s, math.ceil(s / 2), 1)] + res
    return layers + [(False, 7, 1, 3, 1)]


def receptive_field(strides: Sequence[int]) -> Tuple[int, int]:
    """Exact one-sided receptive field, in latent frames, of (encoder, decoder).

    Index arithmetic through every conv of the stack (zero padding aside): the encoder's latent
    ``j`` depends only on audio frames ``j - r .. j + r`` and the decoder's audio frame ``j`` only on
    latents ``j - r .. j + r``.  For the released VAE (strides 2, 4, 4, 8, 8) this is ``(8, 10)``
    (confirmed by an impulse test on the full-size decoder: one latent moves the output over
    +-9.27 frames and not one sample further).  A chunk seam trimmed by ``r`` frames per side
    therefore reproduces the unchunked result up to float rounding.
    """
    ratio = math.prod(strides)
    out = []
    for decoder in (False, True):
        lo, hi = 0, ratio - 1 if decoder else 0  # one output frame (decoder: its `ratio` samples)
        for tr, k, s, p, d in reversed(_stack_layout(strides, decoder)):
            if tr:  # y[n] += x[i] w[n - i*s + p]  ->  i in [ceil((n + p - k + 1) / s), floor((n + p) / s)]
                lo, hi = -((-(lo + p - k + 1)) // s), (hi + p) // s
            else:   # y[j] = sum_t x[j*s - p + t*d]
                lo, hi = lo * s - p, hi * s - p + d * (k - 1)
        if decoder:  # input interval is in latents, output frame 0
            out.append(max(-lo, hi))
        else:        # input interval is in samples, output latent 0 covers samples [0, ratio)
            out.append(max(-(lo // ratio), (hi - ratio) // ratio + 1 if hi >= ratio else 0))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# Bottleneck, autoencoder, pretransform
# ----------------------------------------------------------------------------------------------
class VAEBottleneck(nn.Module):
    """Diagonal-Gaussian bottleneck (no parameters).

    ``mean, scale = h.chunk(2, dim=1)``; ``std = softplus(scale) + 1e-4``; ``z = noise * std + mean``
    (official ``vae_sample``: ``torch.randn_like(mean) * stdev + mean``).  ``decode`` is identity.
    """

    @staticmethod
    def moments(h: Tensor) -> Tuple[Tensor, Tensor]:
        mean, scale = h.chunk(2, dim=1)
        return mean, F.softplus(scale) + 1e-4

    @staticmethod
    def sample(mean: Tensor, std: Tensor, noise: Tensor) -> Tensor:
        return noise * std + mean

    @staticmethod
    def kl(mean: Tensor, std: Tensor) -> Tensor:
        """Official KL term: ``(mean^2 + var - log var - 1).sum(1).mean()``."""
        var = std * std
        return (mean * mean + var - torch.log(var) - 1).sum(1).mean()


class AudioAutoencoder(nn.Module):
    """Encoder + VAE bottleneck + decoder built from a :class:`VAEConfig` (keys ``encoder.*``, ``decoder.*``)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        if cfg.encoder_latent_dim != 2 * cfg.latent_dim:
            raise ConfigError(f"VAE encoder latent_dim {cfg.encoder_latent_dim} must be 2 x latent_dim {cfg.latent_dim}")
        if math.prod(cfg.strides) != cfg.downsampling_ratio:
            raise ConfigError(f"VAE strides {list(cfg.strides)} do not multiply to downsampling_ratio "
                              f"{cfg.downsampling_ratio}")
        if not cfg.use_snake:
            raise ConfigError("only the SnakeBeta Oobleck VAE (use_snake=true) is implemented")
        self.cfg = cfg
        self.bottleneck = VAEBottleneck()
        self.encoder = OobleckEncoder(cfg.in_channels, cfg.channels, cfg.encoder_latent_dim, cfg.c_mults, cfg.strides)
        self.decoder = OobleckDecoder(cfg.in_channels, cfg.dec_channels, cfg.latent_dim, cfg.dec_c_mults, cfg.strides,
                                      final_tanh=cfg.final_tanh)
        self.downsampling_ratio = cfg.downsampling_ratio
        self.latent_dim = cfg.latent_dim
        self.io_channels = cfg.in_channels


class Pretransform(nn.Module):
    """The VAE as the diffusion model sees it: ``encode`` audio -> latents, ``decode`` latents -> audio.

    Runs in its own parameter dtype with autocast disabled (official generation decodes in fp32),
    so it can stay fp32 inside a bf16 model: inputs are cast to the parameter dtype and moved to
    the parameter device; outputs come back in that dtype/device.  Batches are processed one item
    at a time (official ``iterate_batch``), so peak memory is that of one item.

    Shapes: ``encode``: ``[B, io_channels, N]`` -> ``[B, latent_dim, N // downsampling_ratio]``;
    ``decode``: ``[B, latent_dim, L]`` -> ``[B, io_channels, L * downsampling_ratio]``.
    ``load_state_dict`` also accepts a bare autoencoder state dict (``encoder.*``/``decoder.*``,
    as in the released ``VAE.ckpt``/``vae.ckpt``) and adds the ``model.`` prefix.

    API (``chunk_size``/``overlap`` in latent frames; ``overlap=None`` = :attr:`default_overlap`)::

        encode(audio, *, sample=True, generator=None, noise=None, chunked=False, chunk_size=128,
               overlap=None, callback=None)                       -> [B, 64, N // 2048]
        encode_moments(audio, *, chunked, chunk_size, overlap, callback) -> (mean, std)
        sample_latents(mean, std, *, sample=True, generator=None, noise=None) -> latents
        decode(latents, *, chunked=False, chunk_size=128, overlap=None, callback=None)
                                                                  -> [B, 2, L * 2048]

    The VAE is frozen at construction (``requires_grad_(False)``, as the official); call
    ``requires_grad_(True)`` to train it.  ``encode = sample_latents(*encode_moments(audio))``: the posterior noise is one
    ``torch.randn(mean.shape)`` from ``generator`` (global RNG if None), or ``noise`` when given.
    Bad inputs (wrong rank/channels, NaN/inf, fewer than 2048 samples) raise ``InputError``;
    ``callback`` may raise ``Interrupted`` to stop.
    """

    def __init__(self, cfg: Optional[VAEConfig] = None):
        super().__init__()
        cfg = cfg or VAEConfig()
        self.model = AudioAutoencoder(cfg)
        self.model.requires_grad_(False)  # frozen, as the official AutoencoderPretransform
        self.cfg = cfg
        self.scale = float(cfg.scale)
        self.downsampling_ratio = cfg.downsampling_ratio
        self.latent_dim = cfg.latent_dim
        self.io_channels = cfg.in_channels

    # -------------------------------------------------------------- helpers
    @property
    def param_dtype(self) -> torch.dtype:
        return self.model.decoder.layers[0].weight_v.dtype

    @property
    def param_device(self) -> torch.device:
        return self.model.decoder.layers[0].weight_v.device

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        keys = list(state_dict.keys())
        if keys and all(k.startswith(("encoder.", "decoder.")) for k in keys):
            state_dict = {"model." + k: v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def receptive_field(self) -> Tuple[int, int]:
        """Exact one-sided receptive field in latents of (encoder, decoder); see :func:`receptive_field`."""
        return receptive_field(self.cfg.strides)

    @property
    def default_overlap(self) -> int:
        """Chunk overlap used when ``overlap=None``: twice the larger receptive field (20 for the
        released VAE), i.e. the smallest overlap whose seams are exact."""
        return 2 * max(self.receptive_field())

    def _prepare(self, x: Tensor, what: str, channels: int) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise InputError(f"VAE {what}: expected a [B, {channels}, T] tensor, got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if x.shape[1] != channels:
            raise InputError(f"VAE {what}: expected {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if x.shape[0] == 0:
            raise InputError(f"VAE {what}: empty batch")
        if not x.is_floating_point():
            raise InputError(f"VAE {what}: expected a floating-point tensor, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"VAE {what}: input contains NaN or infinite values")
        return x.to(device=self.param_device, dtype=self.param_dtype)

    @staticmethod
    def _chunks(total: int, chunk_size: int, overlap: int):
        """Yield ``(start, keep_lo, keep_hi)`` in latent frames covering ``[0, total)`` exactly once."""
        if chunk_size < 1 or not (0 <= overlap < chunk_size):
            raise InputError(f"VAE chunking: need chunk_size >= 1 and 0 <= overlap < chunk_size, "
                             f"got chunk_size={chunk_size}, overlap={overlap}")
        if total <= chunk_size:
            yield 0, 0, total
            return
        hop, trim = chunk_size - overlap, overlap // 2
        starts = list(range(0, total - chunk_size, hop)) + [total - chunk_size]
        written = 0
        for i, s in enumerate(starts):
            last = i == len(starts) - 1
            lo = written
            hi = total if last else s + chunk_size - trim
            if hi > lo:
                yield s, lo, hi
                written = hi

    def _overlap(self, overlap: Optional[int], which: int) -> int:
        if overlap is None:
            return self.default_overlap
        rf = self.receptive_field()[which]
        if overlap // 2 < rf:
            logger.warning("VAE chunk overlap %d (trim %d per side) is below the %s receptive field "
                           "(%d latents): expect seams", overlap, overlap // 2, ("encoder", "decoder")[which], rf)
        return int(overlap)

    def _run_in_chunks(self, net: nn.Module, x: Tensor, total: int, out_channels: int, *, in_per_latent: int,
                       out_per_latent: int, chunked: bool, chunk_size: int, overlap: Optional[int], which: int,
                       stage: str, callback: Optional[ProgressCallback]) -> Tensor:
        """Run ``net`` (the encoder, ``which=0``, or the decoder, ``which=1``) on each batch item of ``x``:
        whole, or over the chunk plan of :meth:`_chunks` (``total`` latent frames; ``in_per_latent`` /
        ``out_per_latent`` samples per latent frame on the input / output side; the last chunk also
        takes the input's remainder).  The callback follows each item or chunk."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            if not chunked:
                outs = []
                for b in range(x.shape[0]):
                    outs.append(net(x[b:b + 1]))
                    report(callback, b + 1, x.shape[0], stage=stage)
                return torch.cat(outs, 0) if len(outs) > 1 else outs[0]
            overlap = self._overlap(overlap, which)
            plan = list(self._chunks(total, chunk_size, overlap))
            out = torch.empty(x.shape[0], out_channels, total * out_per_latent, dtype=x.dtype, device=x.device)
            n, step, steps = x.shape[-1], 0, x.shape[0] * len(plan)
            for b in range(x.shape[0]):
                for s, lo, hi in plan:
                    end = n if s + chunk_size >= total else (s + chunk_size) * in_per_latent
                    y = net(x[b:b + 1, :, s * in_per_latent: end])
                    out[b:b + 1, :, lo * out_per_latent: hi * out_per_latent] = \
                        y[..., (lo - s) * out_per_latent: (hi - s) * out_per_latent]
                    step += 1
                    report(callback, step, steps, stage=stage)
            return out

    # -------------------------------------------------------------- encode
    def encode_features(self, audio: Tensor, *, chunked: bool = False, chunk_size: int = 128,
                        overlap: Optional[int] = None,
                        callback: Optional[ProgressCallback] = None) -> Tensor:
        """Raw encoder output ``[B, 2 * latent_dim, L]`` (mean || pre-softplus scale), L = N // ratio."""
        x = self._prepare(audio, "encode", self.io_channels)
        ratio, n = self.downsampling_ratio, x.shape[-1]
        total = n // ratio
        if total < 1:
            raise InputError(f"VAE encode: audio has {n} samples; at least {ratio} are needed for one latent")
        return self._run_in_chunks(self.model.encoder, x, total, 2 * self.latent_dim, in_per_latent=ratio,
                                   out_per_latent=1, chunked=chunked, chunk_size=chunk_size, overlap=overlap,
                                   which=0, stage="vae_encode", callback=callback)

    def encode_moments(self, audio: Tensor, **kw) -> Tuple[Tensor, Tensor]:
        """Posterior ``(mean, std)``, each ``[B, latent_dim, N // ratio]``, before dividing by ``scale``.

        Keyword arguments as :meth:`encode_features` (``chunked``, ``chunk_size``, ``overlap``, ``callback``).
        """
        return VAEBottleneck.moments(self.encode_features(audio, **kw))

    def sample_latents(self, mean: Tensor, std: Tensor, *, sample: bool = True,
                       generator: Optional[torch.Generator] = None, noise: Optional[Tensor] = None) -> Tensor:
        """``(noise * std + mean) / scale`` with ``noise ~ N(0, 1)`` drawn by ``torch.randn`` (one draw of
        shape ``mean.shape`` on the generator's device, or on ``mean.device`` from the global RNG when
        ``generator`` is None, as the official ``randn_like``), or ``mean / scale``
        when ``sample=False``.  ``noise`` overrides the draw (parity tests, reproducible pipelines)."""
        if sample:
            if noise is None:
                dev = generator.device if generator is not None else mean.device
                noise = torch.randn(mean.shape, generator=generator, device=dev, dtype=mean.dtype).to(mean.device)
            elif tuple(noise.shape) != tuple(mean.shape):
                raise InputError(f"VAE encode: noise has shape {tuple(noise.shape)}, expected {tuple(mean.shape)}")
            else:
                noise = noise.to(device=mean.device, dtype=mean.dtype)
            z = VAEBottleneck.sample(mean, std, noise)
        else:
            z = mean
        return z / self.scale if self.scale != 1.0 else z  # official divides by 1.0 (a no-op)

    def encode(self, audio: Tensor, *, sample: bool = True, generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None, chunked: bool = False, chunk_size: int = 128,
               overlap: Optional[int] = None,
               callback: Optional[ProgressCallback] = None) -> Tensor:
        """Audio ``[B, io_channels, N]`` -> latents ``[B, latent_dim, N // ratio]`` (stochastic by default,
        as the official).  ``chunk_size``/``overlap`` are in latent frames; ``callback(step, total, info)``
        is called after each batch item (unchunked) or chunk (chunked)."""
        mean, std = self.encode_moments(audio, chunked=chunked, chunk_size=chunk_size, overlap=overlap,
                                        callback=callback)
        return self.sample_latents(mean, std, sample=sample, generator=generator, noise=noise)

    # -------------------------------------------------------------- decode
    def decode(self, latents: Tensor, *, chunked: bool = False, chunk_size: int = 128, overlap: Optional[int] = None,
               callback: Optional[ProgressCallback] = None) -> Tensor:
        """Latents ``[B, latent_dim, L]`` -> audio ``[B, io_channels, L * ratio]`` (fp32 if the VAE is fp32)."""
        z = self._prepare(latents, "decode", self.latent_dim)
        if self.scale != 1.0:
            z = z * self.scale
        return self._run_in_chunks(self.model.decoder, z, z.shape[-1], self.io_channels, in_per_latent=1,
                                   out_per_latent=self.downsampling_ratio, chunked=chunked, chunk_size=chunk_size,
                                   overlap=overlap, which=1, stage="vae_decode", callback=callback)
