"""Synchformer visual features (MotionFormer, divided space-time ViT-B/16) for AudioX-MAF.

AudioX-MAF, AudioX-MAF-MMDiT and AudioX-Turbo condition on "sync" features: 8 tokens x 768 per
16-frame window of a 25 fps, 224x224 video, taken from the visual branch (``vfeat_extractor``) of
Synchformer (Iashin et al. 2024).  The weights are the official ``synchformer_state_dict.pth`` (the
file MMAudio ships), loaded unchanged; only its ``vfeat_extractor.*`` entries are used.

Pipeline (official ``encode_video_with_synchformer`` + ``FeaturesUtils.encode_video_with_sync``):

1. :func:`preprocess`: frames -> 224x224 in ``[-1, 1]`` (``(x/255 - 0.5) / 0.5``).
2. :meth:`Synchformer.encode`: windows of ``segment = 16`` frames every ``step = 8`` frames,
   ``S = (T - 16) // 8 + 1`` windows (T = 250 -> S = 30), each window -> ``[8, 768]``, output
   ``[B, S * 8, 768]`` segment-major (T = 250 -> 240 tokens).
3. Per window (:class:`MotionFormer`), with ``t = 16 / 2 = 8`` temporal and ``N = 14 * 14 = 196``
   spatial patches, ``D = 768``:

   * ``patch_embed_3d``: Conv3d(3 -> D, kernel = stride = (2, 16, 16)) -> ``t * N`` tokens, order
     (frame, row, col);
   * prepend ``cls_token``; add positions: CLS gets ``pos_embed[0]``, the patch at (f, n) gets
     ``pos_embed[1 + n] + temp_embed[f]`` (the official "separate" embedding: spatial table tiled
     over frames plus the temporal table repeat-interleaved over patches);
   * 12 :class:`DividedSpaceTimeBlock`: ``x += TimeAttn(norm3(x))``; ``x += SpaceAttn(norm1(x))``;
     ``x += MLP(norm2(x))`` (LayerNorm eps 1e-6, 12 heads, qkv bias, exact GELU);
   * final ``norm`` on the patch tokens (the CLS token is dropped);
   * ``spatial_attn_agg``: a pre-norm ``nn.TransformerEncoderLayer(D, 12 heads, ff 4D, GELU,
     eps 1e-6)`` run on each frame's N tokens with a learned CLS prepended; its CLS output is the
     frame's feature -> ``[t, D]``.  The temporal aggregator is Identity.

The unused 2-D ``patch_embed.proj`` (Conv2d 3 -> D, 16x16) is kept so that the state dict matches
the official one key for key.

Checked against the official module (``audiox/models/synchformer``) on identical random weights:
max-abs difference 3e-8 on a tiny config and 9e-7 (output max 1.6, i.e. ~5e-7 relative) at full size
over two windows, fp32.  bf16 weights run ~2-3x faster on CPUs with native bf16 dot products, at
~0.7 % relative L2 error.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from ..media.frames import center_crop_offsets, resize_short_side
from ..progress import ProgressCallback, report

logger = logging.getLogger(__name__)

PREFIX = "vfeat_extractor."
RESIZE_MODES = ("crop", "squash")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynchformerConfig:
    """Sizes of the visual extractor; the defaults are the official ``divided_224_16x4.yaml``."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: int = 4
    patch_size: int = 16  # spatial patch (VIT.PATCH_SIZE)
    tubelet: int = 2  # frames per 3-D patch (VIT.PATCH_SIZE_TEMP)
    image_size: int = 224  # DATA.TRAIN_CROP_SIZE
    segment_frames: int = 16  # frames per window (DATA.NUM_FRAMES)
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.segment_frames % self.tubelet:
            raise ValueError(f"segment_frames {self.segment_frames} is not a multiple of tubelet {self.tubelet}")

    @property
    def frames_out(self) -> int:
        """Temporal tokens per window (VIT.TEMPORAL_RESOLUTION): 8."""
        return self.segment_frames // self.tubelet

    @property
    def grid(self) -> int:
        """Patches per image side: 14."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Spatial patches per frame: 196."""
        return self.grid * self.grid


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------
class PatchEmbed2D(nn.Module):
    """The official 2-D ViT patch embedding.  Never called: its weights only exist in the file."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)


class PatchEmbed3D(nn.Module):
    """Tubelet embedding: Conv3d with kernel = stride = (tubelet, patch, patch).

    ``[N, 3, T, H, W] -> [N, (T/2)*(H/16)*(W/16), D]`` with tokens ordered (frame, row, col).
    """

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        k = (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(scale * q k^T) v`` over the last two dims (fused kernel; scores never materialised).

    The official code multiplies ``q`` by ``scale`` before the product; folding the scale into the
    kernel changes results by rounding only (~1e-7 relative in fp32) and saves a pass over ``q``.
    """
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


class DividedAttention(nn.Module):
    """Multi-head attention along one axis (time or space) of a ``[CLS] + t x N`` token grid.

    Official ``vit_helper.DividedAttention`` semantics, per head, with ``q`` scaled by
    ``head_dim ** -0.5`` right after the projection:

    * the CLS query attends to ALL ``1 + t*N`` keys (CLS included);
    * ``axis="time"``: the patch at (f, n) attends to the CLS key plus the ``t`` patches at the same
      spatial position n (keys ordered CLS, frame 0..t-1);
    * ``axis="space"``: the patch at (f, n) attends to the CLS key plus the ``N`` patches of frame f;
    * outputs (CLS first) go through ``proj``.

    The official implementation gathers heads and groups with einops and materialises the scores;
    here the groups become batch dimensions of one ``scaled_dot_product_attention`` call, which is
    the same arithmetic.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, axis: str, frames: int, patches: int) -> torch.Tensor:
        B, L, D = x.shape
        H, dh, t, n = self.num_heads, self.head_dim, frames, patches
        if L != 1 + t * n:
            raise ValueError(f"DividedAttention got {L} tokens, expected 1 + {t}*{n}")
        q, k, v = self.qkv(x).view(B, L, 3, H, dh).unbind(2)  # each [B, L, H, dh]
        out = torch.empty(B, L, H, dh, dtype=x.dtype, device=x.device)

        # CLS query over every token (a contiguous single query is the fast case of the kernel).
        out[:, :1] = _attend(q[:, :1].transpose(1, 2).contiguous(), k.transpose(1, 2), v.transpose(1, 2),
                             self.scale).transpose(1, 2)

        if axis == "space":  # groups = frames, sequence = patches of that frame
            order, groups, seq = (0, 1, 3, 2, 4), t, n
        elif axis == "time":  # groups = spatial positions, sequence = frames
            order, groups, seq = (0, 2, 3, 1, 4), n, t
        else:
            raise ValueError(f"axis must be 'time' or 'space', got {axis!r}")

        def grid(z: torch.Tensor) -> torch.Tensor:  # [B, L, H, dh] -> [B, groups, H, seq, dh]
            return z[:, 1:].reshape(B, t, n, H, dh).permute(order)

        def with_cls(z: torch.Tensor) -> torch.Tensor:  # prepend the CLS key/value to every group
            cls = z[:, :1].transpose(1, 2).unsqueeze(1).expand(B, groups, H, 1, dh)
            return torch.cat((cls, grid(z)), dim=3).reshape(B * groups, H, 1 + seq, dh)

        o = _attend(grid(q).reshape(B * groups, H, seq, dh), with_cls(k), with_cls(v), self.scale)
        # [B*groups, H, seq, dh] -> [B, groups, H, seq, dh] -> the token grid [B, t, n, H, dh]
        out[:, 1:].view(B, t, n, H, dh).copy_(o.view(B, groups, H, seq, dh).permute(*_inverse(order)))
        return self.proj(out.view(B, L, D))


def _inverse(perm: tuple) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


class DividedSpaceTimeBlock(nn.Module):
    """``x += timeattn(norm3(x)); x += attn(norm1(x)); x += mlp(norm2(x))`` (official order).

    Registration order (norm1, attn, timeattn, norm2, mlp, norm3) follows the official state dict.
    """

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        D, eps = cfg.embed_dim, cfg.norm_eps
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.attn = DividedAttention(D, cfg.num_heads)
        self.timeattn = DividedAttention(D, cfg.num_heads)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.mlp = Mlp(D, D * cfg.mlp_ratio)
        self.norm3 = nn.LayerNorm(D, eps=eps)

    def forward(self, x: torch.Tensor, frames: int, patches: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), "time", frames, patches)
        x = x + self.attn(self.norm1(x), "space", frames, patches)
        return x + self.mlp(self.norm2(x))


class PackedSelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameter layout (``in_proj_weight`` = [Wq; Wk; Wv]) for self-attention.

    ``query_tokens`` limits the queries to the first tokens of the sequence (their outputs equal
    the full computation's first rows: every query attends to all keys).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, query_tokens: Optional[int] = None) -> torch.Tensor:
        B, L, D = x.shape
        H = self.num_heads
        w, b = self.in_proj_weight, self.in_proj_bias
        if query_tokens is None:
            q, k, v = F.linear(x, w, b).view(B, L, 3, H, D // H).unbind(2)
        else:
            q = F.linear(x[:, :query_tokens], w[:D], b[:D]).view(B, query_tokens, H, D // H)
            k, v = F.linear(x, w[D:], b[D:]).view(B, L, 2, H, D // H).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out_proj(out.transpose(1, 2).reshape(B, -1, D))


class SpatialAttentionPool(nn.Module):
    """Official ``SpatialTransformerEncoderLayer``: one frame's N tokens -> one vector.

    A learned ``cls_token`` is prepended and a pre-norm ``nn.TransformerEncoderLayer`` (GELU,
    ff = 4D, eps 1e-6, no dropout at inference) is applied; the CLS row is returned:
    ``c = cls + SA(norm1([cls; x]))[0]; c = c + linear2(GELU(linear1(norm2(c))))``.
    Only the CLS row is computed (the other rows of the layer's output are discarded by the
    official code and do not influence the CLS row), saving the queries, out-projection and FFN
    of the 196 patch rows.
    """

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        D, eps = cfg.embed_dim, cfg.norm_eps
        self.cls_token = nn.Parameter(torch.empty(1, 1, D))
        self.self_attn = PackedSelfAttention(D, cfg.num_heads)
        self.linear1 = nn.Linear(D, D * cfg.mlp_ratio)
        self.linear2 = nn.Linear(D * cfg.mlp_ratio, D)
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, N, D] -> [M, D]``."""
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        c = x[:, :1] + self.self_attn(self.norm1(x), query_tokens=1)
        c = c + self.linear2(self.activation(self.linear1(self.norm2(c))))
        return c[:, 0]


# ----------------------------------------------------------------------------------------------
# The extractor
# ----------------------------------------------------------------------------------------------
class MotionFormer(nn.Module):
    """The ``vfeat_extractor``: one window ``[M, 3, 16, 224, 224]`` -> ``[M, 8, 768]``."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.empty(1, 1, D))
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.num_patches + 1, D))
        self.temp_embed = nn.Parameter(torch.empty(1, cfg.frames_out, D))
        self.patch_embed = PatchEmbed2D(cfg)
        self.patch_embed_3d = PatchEmbed3D(cfg)
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.spatial_attn_agg = SpatialAttentionPool(cfg)
        self.patch_embed.requires_grad_(False)
        self.reset_parameters()  # a no-op on the meta device

    def reset_parameters(self, std: float = 0.02) -> None:
        """Random init close to the official one (truncated normal 0.02, zero biases, unit norms)."""
        for p in (self.cls_token, self.pos_embed, self.temp_embed, self.spatial_attn_agg.cls_token):
            nn.init.trunc_normal_(p, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.reset_parameters()
        self.spatial_attn_agg.self_attn.reset_parameters()

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``[M, 3, T, H, W]`` and add CLS + positions -> ``[M, 1 + t*N, D]``."""
        M = x.shape[0]
        x = self.patch_embed_3d(x)
        x = torch.cat((self.cls_token.expand(M, -1, -1), x), dim=1)
        t = self.cfg.frames_out
        # separate embedding: pos_embed[1:] tiled over frames + temp_embed repeat-interleaved.
        pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temp_embed.repeat_interleave(self.cfg.num_patches, 1)
        pos = torch.cat((self.pos_embed[:, :1], pos), dim=1)
        return x + pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, T=16, H, W]`` (normalised) -> ``[M, T/2, D]``."""
        cfg = self.cfg
        M, C, T, Hh, Ww = x.shape
        if (C, T, Hh, Ww) != (3, cfg.segment_frames, cfg.image_size, cfg.image_size):
            raise InputError(
                f"Synchformer window must be [M, 3, {cfg.segment_frames}, {cfg.image_size}, "
                f"{cfg.image_size}], got {list(x.shape)}")
        t, n, D = cfg.frames_out, cfg.num_patches, cfg.embed_dim
        x = self.tokens(x)
        for blk in self.blocks:
            x = blk(x, t, n)
        x = self.norm(x[:, 1:])  # drop CLS, final LayerNorm
        x = self.spatial_attn_agg(x.reshape(M * t, n, D))  # each frame's N tokens -> one vector
        return x.view(M, t, D)


class Synchformer(nn.Module):
    """Holder matching the official ``Synchformer`` module tree (only ``vfeat_extractor``).

    ``forward(vis [B, S, 16, 3, H, W]) -> [B, S, 8, D]`` like the official; prefer :meth:`encode`.
    Weights load with :meth:`from_file`.  Build tiny versions with ``Synchformer(SynchformerConfig(...))``.
    """

    def __init__(self, cfg: Optional[SynchformerConfig] = None):
        super().__init__()
        self.cfg = cfg or SynchformerConfig()
        self.vfeat_extractor = MotionFormer(self.cfg)

    # -- inference ------------------------------------------------------------------------------
    def forward(self, vis: torch.Tensor) -> torch.Tensor:
        B, S, T, C, H, W = vis.shape
        x = vis.reshape(B * S, T, C, H, W).permute(0, 2, 1, 3, 4)
        return self.vfeat_extractor(x).view(B, S, self.cfg.frames_out, self.cfg.embed_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.vfeat_extractor.cls_token.dtype

    @property
    def device(self) -> torch.device:
        return self.vfeat_extractor.cls_token.device

    def num_segments(self, frames: int, segment: Optional[int] = None, step: Optional[int] = None) -> int:
        segment, step = self._window(segment, step)
        return segment_starts(frames, segment, step).numel()

    def _window(self, segment: Optional[int], step: Optional[int]) -> tuple[int, int]:
        seg = self.cfg.segment_frames if segment is None else int(segment)
        if seg != self.cfg.segment_frames:
            raise InputError(
                f"segment={seg}: this Synchformer has a temporal embedding for exactly "
                f"{self.cfg.segment_frames}-frame windows")
        st = seg // 2 if step is None else int(step)
        if st < 1:
            raise InputError(f"step must be >= 1, got {step}")
        return seg, st

    def encode(self, frames: torch.Tensor, *, segment: Optional[int] = None, step: Optional[int] = None,
               batch_segments: int = 2, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """Sync features of preprocessed frames.

        ``frames``: ``[B, T, 3, 224, 224]`` (or ``[T, 3, 224, 224]`` for B = 1), float, already
        normalised to [-1, 1] by :func:`preprocess`.  Windows of ``segment`` (16) frames start every
        ``step`` (8) frames: ``S = (T - 16) // 8 + 1``; trailing frames that do not fill a window
        are ignored (as in the official code).  Returns ``[B, S * 8, D]`` (segment-major) in the
        model's dtype, on the model's device.  Windows are run ``batch_segments`` at a time (this
        bounds memory: about 0.1 GB of activations per window in fp32; batching more windows does not run faster on CPU) and ``callback(done, S*B,
        {"stage": "synchformer"})`` is called after each batch; T is unbounded.
        """
        return self._encode(frames, None, segment, step, batch_segments, callback)

    def encode_raw(self, frames: torch.Tensor, *, resize_mode: str = "crop", segment: Optional[int] = None,
                   step: Optional[int] = None, batch_segments: int = 2,
                   callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """:func:`preprocess` + :meth:`encode`, preprocessing window batch by window batch.

        Accepts what :func:`preprocess` accepts (any size, uint8 or float 0..1) and never holds the
        whole preprocessed float video in memory: use this for long videos.
        """
        if resize_mode not in RESIZE_MODES:
            raise InputError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        return self._encode(frames, resize_mode, segment, step, batch_segments, callback)

    @torch.no_grad()
    def _encode(self, frames, resize_mode, segment, step, batch_segments, callback):
        segment, step = self._window(segment, step)
        if not isinstance(frames, torch.Tensor):
            raise InputError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise InputError(f"frames must be [B, T, 3, H, W] (or [T, 3, H, W]), got {list(frames.shape)}")
        size = self.cfg.image_size
        if resize_mode is None:
            if not frames.is_floating_point():
                raise InputError(f"encode() needs float frames normalised by preprocess(); got {frames.dtype} "
                                 "(use encode_raw() for raw uint8 frames)")
            if tuple(frames.shape[-2:]) != (size, size):
                raise InputError(f"encode() needs {size}x{size} frames, got {tuple(frames.shape[-2:])} "
                                 "(use preprocess() or encode_raw())")
        B, T = frames.shape[:2]
        starts = segment_starts(T, segment, step)
        S = starts.numel()
        if batch_segments < 1:
            raise InputError(f"batch_segments must be >= 1, got {batch_segments}")
        dtype, device = self.dtype, self.device
        t, D = self.cfg.frames_out, self.cfg.embed_dim
        out = torch.empty(B, S, t, D, dtype=dtype, device=device)
        total, done = B * S, 0
        for b in range(B):
            for i in range(0, S, batch_segments):
                idx = starts[i:i + batch_segments]
                lo, hi = int(idx[0]), int(idx[-1]) + segment
                clip = frames[b, lo:hi]
                if resize_mode is not None:
                    clip = preprocess(clip, size=size, resize_mode=resize_mode)
                clip = clip.to(device=device, dtype=dtype)
                win = torch.stack([clip[s - lo:s - lo + segment] for s in idx.tolist()])  # [m, 16, 3, H, W]
                out[b, i:i + len(idx)] = self.vfeat_extractor(win.permute(0, 2, 1, 3, 4))
                done += len(idx)
                report(callback, done, total, stage="synchformer")
        return out.view(B, S * t, D)

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", cfg: Optional[SynchformerConfig] = None) -> "Synchformer":
        """Load ``synchformer_state_dict.pth`` (or a ``.safetensors`` with the same keys), strictly.

        ``.pth`` files are read only with ``torch.load(weights_only=True)``: a file that needs
        arbitrary code to unpickle is refused.  Keys outside ``vfeat_extractor.*`` are ignored (the
        official file also holds the audio branch and the sync transformer).  Any missing,
        unexpected or mis-shaped ``vfeat_extractor`` key raises :class:`CheckpointError`.
        ``cfg=None``: the official sizes, unless the file states its own: a ``.safetensors`` with a
        ``synchformer_config`` metadata entry (:func:`save_synchformer`) or a ``.pth`` dict with a
        ``synchformer_config`` dict entry (e.g. the tiny test extractors).
        """
        sd = _read_state_dict(path)
        if cfg is None:
            cfg = config_from_metadata(path)
        if cfg is None and isinstance(sd.get(CONFIG_METADATA_KEY), Mapping):
            try:  # a .pth of ours carrying its sizes as a plain dict entry (tiny test extractors)
                cfg = SynchformerConfig(**sd[CONFIG_METADATA_KEY])
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{os.fspath(path)}: bad '{CONFIG_METADATA_KEY}' entry: {e}") from None
        vkeys = [k for k in sd if isinstance(k, str) and k.startswith(PREFIX)]
        if not vkeys:
            raise CheckpointError(f"{os.fspath(path)} is not a Synchformer checkpoint: it has no "
                                  f"'{PREFIX}*' weights; {describe_state_dict(sd)}")
        with torch.device("meta"):
            model = cls(cfg)
        expected = model.state_dict()
        _check_keys(path, {k: sd[k] for k in vkeys}, expected)
        weights = {k: sd[k].to(device=device, dtype=dtype) for k in expected}
        model.load_state_dict(weights, strict=True, assign=True)
        model.requires_grad_(False)
        return model.eval()


# ----------------------------------------------------------------------------------------------
# Windows and preprocessing
# ----------------------------------------------------------------------------------------------
def segment_starts(frames: int, segment: int = 16, step: int = 8) -> torch.Tensor:
    """First frame of each window: ``0, step, ..., (S-1)*step`` with ``S = (T - segment)//step + 1``."""
    if frames < segment:
        raise InputError(f"Synchformer needs at least {segment} frames (one {segment}-frame window, "
                         f"0.64 s at 25 fps); got {frames}")
    return torch.arange(0, frames - segment + 1, step)


def preprocess(frames: torch.Tensor, *, size: int = 224, resize_mode: str = "crop",
               out_dtype: torch.dtype = torch.float32, chunk: int = 32) -> torch.Tensor:
    """Frames -> Synchformer input ``[..., T, 3, size, size]`` normalised to [-1, 1].

    ``frames``: ``[T, 3, H, W]`` or ``[B, T, 3, H, W]``.  The value range is taken from the dtype,
    never from the values: ``uint8`` means 0..255, any float dtype means 0..1 (ComfyUI IMAGE).  Both
    are converted to float 0..1 first, so the same picture gives the same tensor either way.

    ``resize_mode``:

    * ``"crop"`` (default): resize the short side to ``size`` (bicubic, antialiased, the long side
      truncated to an integer as torchvision does), clamp to [0, 1], centre-crop ``size x size``
      (torchvision's rounding of the offsets).  This is the official transform
      (``v2.Resize(224, BICUBIC) + v2.CenterCrop(224)``) applied to frames at their own aspect
      ratio, as MMAudio (same network, same weights) does and as Synchformer was trained.
    * ``"squash"``: stretch to ``size x size`` (bilinear, antialiased) ignoring the aspect ratio.
      This is what the AudioX inference path computes, because its ``read_video`` squashes every
      frame to 224x224 before the (then no-op) resize/crop.  Use it to reproduce the official AudioX
      inference input (up to the uint8 rounding noted below).

    We default to ``"crop"``: squashing a 16:9 video distorts every object by 1.8x horizontally,
    which the Synchformer never saw in training; the squash is a side effect of AudioX reusing its
    CLIP frame reader, not a property the weights depend on.  For square input both modes are the
    identity.  The official path resizes uint8 pictures and rounds back to uint8; we resize in float
    (differences of at most half a uint8 step before normalisation).
    Normalisation: ``(x - 0.5) / 0.5``.
    """
    if resize_mode not in RESIZE_MODES:
        raise InputError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if not isinstance(frames, torch.Tensor) or frames.dim() not in (4, 5) or frames.shape[-3] != 3:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"frames must be a [T, 3, H, W] or [B, T, 3, H, W] RGB tensor, got {shape}")
    if frames.dtype == torch.uint8:
        scale = 1.0 / 255.0
    elif frames.is_floating_point():
        scale = None
    else:
        raise InputError(f"frames must be uint8 (0..255) or float (0..1), got {frames.dtype}")
    lead = frames.shape[:-3]
    H, W = frames.shape[-2:]
    flat = frames.reshape(-1, 3, H, W)
    out = torch.empty(flat.shape[0], 3, size, size, dtype=out_dtype, device=frames.device)
    for i in range(0, flat.shape[0], chunk):
        x = flat[i:i + chunk].float()
        if scale is not None:
            x = x * scale
        if (H, W) != (size, size):
            if resize_mode == "squash":
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            else:
                nh, nw = resize_short_side(H, W, size)
                x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
                top, left = center_crop_offsets(nh, nw, size, size)
                x = x[:, :, top:top + size, left:left + size]
            x = x.clamp_(0.0, 1.0)
        out[i:i + chunk] = (x - 0.5) / 0.5
    return out.view(*lead, 3, size, size)


# ----------------------------------------------------------------------------------------------
# Checkpoint reading
# ----------------------------------------------------------------------------------------------
CONFIG_METADATA_KEY = "synchformer_config"


def save_synchformer(model: "Synchformer", path: str | os.PathLike) -> None:
    """Save ``model`` as ``.safetensors`` with its :class:`SynchformerConfig` in the metadata."""
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, os.fspath(path), metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(asdict(model.cfg))})


def config_from_metadata(path: str | os.PathLike) -> Optional[SynchformerConfig]:
    """The config stored by :func:`save_synchformer`, or None (official sizes) for other files."""
    p = os.fspath(path)
    if not p.lower().endswith(".safetensors") or not os.path.isfile(p):
        return None
    import json

    from safetensors import safe_open
    try:
        with safe_open(p, framework="pt") as f:
            raw = (f.metadata() or {}).get(CONFIG_METADATA_KEY)
    except Exception:  # unreadable files are reported by _read_state_dict with a better message
        return None
    if raw is None:
        return None
    try:
        return SynchformerConfig(**json.loads(raw))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{p}: bad '{CONFIG_METADATA_KEY}' metadata: {e}") from None


def _read_state_dict(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"Synchformer checkpoint {p} does not exist")
    if os.path.getsize(p) == 0:
        raise CheckpointError(f"Synchformer checkpoint {p} is empty (0 bytes); re-download synchformer_state_dict.pth")
    if p.lower().endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
            return load_file(p, device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"Synchformer checkpoint {p} is not a readable .safetensors file "
                                  f"(truncated or corrupt?): {e}") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \S+", str(e))
        first = m.group(0) if m else type(e).__name__
        raise CheckpointError(
            f"refused to load {p}: it contains Python objects that torch.load(weights_only=True) will not "
            f"unpickle (this loader never executes code from weight files). Expected a plain dict of "
            f"tensors such as the official synchformer_state_dict.pth. Detail: {first}") from None
    except Exception as e:
        raise CheckpointError(f"Synchformer checkpoint {p} could not be read (truncated or corrupt download?): "
                              f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    if isinstance(obj, Mapping) and "vfeat_extractor.cls_token" not in obj:
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and any(isinstance(k, str) and k.startswith(PREFIX) for k in inner):
                obj = inner  # a training checkpoint saved with weights only
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a state dict (dict of tensors)")
    return obj


def describe_state_dict(sd: Mapping) -> str:
    """One line saying what a state dict looks like (for error messages)."""
    keys = [k for k in sd if isinstance(k, str)]
    if not keys:
        return "it holds no string-keyed weights"
    nested = [k for k in keys if isinstance(sd[k], Mapping)]
    if len(nested) == 1 and nested[0] in ("state_dict", "model", "module"):
        return f"inside '{nested[0]}': " + describe_state_dict(sd[nested[0]])
    if nested:
        return f"it is a dict of {len(keys)} entries with nested dicts {nested[:4]} (not a flat state dict)"
    guess = _guess_family(keys)
    tops = Counter(k.split(".")[0] for k in keys).most_common(6)
    top_s = ", ".join(f"{name}.* ({n})" for name, n in tops)
    return f"{guess}it has {len(keys)} keys, top-level prefixes: {top_s}"


def _guess_family(keys: list[str]) -> str:
    ks = set(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("model.model.") or has("conditioner.conditioners."):
        return "it looks like an AudioX model checkpoint (diffusion backbone + conditioners); "
    if has("encoder.layers.") and has("decoder.layers."):
        return "it looks like an AudioX/Stable Audio VAE (Oobleck autoencoder); "
    if has("vision_model.") or has("text_model."):
        return "it looks like a CLIP model; "
    if has("encoder.block.") or "shared.weight" in ks:
        return "it looks like a T5 text encoder; "
    if has("afeat_extractor.") or has("module.v_encoder.") or has("v_encoder."):
        return "it looks like another Synchformer/AVCLIP checkpoint layout; "
    if "cls_token" in ks and has("blocks.") and ("patch_embed_3d.proj.weight" in ks or "head.weight" in ks):
        return "it looks like a bare MotionFormer/ViT without the 'vfeat_extractor.' prefix (not the Synchformer weights); "
    return ""


def _summary(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"{len(names)} ({shown}{', ...' if len(names) > limit else ''})"


def _check_keys(path, got: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    not_tensor = [k for k in got if not isinstance(got[k], torch.Tensor)]
    shaped = [f"{k} {list(got[k].shape)} != {list(expected[k].shape)}"
              for k in expected if k in got and k not in not_tensor
              and tuple(got[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shaped or not_tensor):
        return
    parts = []
    if missing:
        parts.append(f"missing keys: {_summary(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_summary(unexpected)}")
    if shaped:
        parts.append(f"mis-shaped keys: {_summary(shaped, 3)}")
    if not_tensor:
        parts.append(f"non-tensor entries: {_summary(not_tensor)}")
    raise CheckpointError(f"{os.fspath(path)} does not match the Synchformer visual extractor "
                          f"({len(expected)} '{PREFIX}*' tensors expected): " + "; ".join(parts))
