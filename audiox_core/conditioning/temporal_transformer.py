"""The temporal self-attention transformer of the CLIP video conditioners.

Official source: ``SA_Transformer`` in ``audiox/models/temptransformer.py`` (AudioX) and
``audiox_turbo/models/conditioners.py`` (Turbo; same keys).  Keys relative to
``Temp_transformer.``::

    layers.N.0.norm.{weight,bias}            pre-norm of the attention
    layers.N.0.fn.to_qkv.weight   [3·h·d, D] no bias
    layers.N.0.fn.to_out.0.{weight,bias}     [D, h·d]
    layers.N.1.norm.{weight,bias}            pre-norm of the feed-forward
    layers.N.1.fn.net.0.{weight,bias}        [mlp, D]
    layers.N.1.fn.net.3.{weight,bias}        [D, mlp]
    norm.{weight,bias}                       final LayerNorm

Per layer ``x = x + Attn(LN x); x = x + FF(LN x)``; finally ``LN x``.  Attention: q, k, v =
chunks of ``to_qkv(x)``, ``softmax((q·kᵀ)·d^-1/2)·v`` per head (the official forms the product
first, then scales; here one fused ``scaled_dot_product_attention`` — the same math, rounding
differs at float precision).  FF: Linear → exact GELU → Linear.  LayerNorm eps 1e-5.
Dropout is 0 in the released models (the official Dropout modules are kept as index
placeholders so the key numbers ``net.0`` / ``net.3`` / ``to_out.0`` stay the same).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        # The official builds to_out only when not (heads == 1 and dim_head == dim); every
        # configuration used here projects, so to_out is always present.
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, self.dim_head).transpose(1, 2)
                   for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # fused: scores never materialised
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head)
        return self.to_out(out)


class TemporalFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalTransformer(nn.Module):
    """``SA_Transformer(dim, depth, heads, dim_head, mlp_dim)`` over ``[batch, frames, dim]``."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        # ``layers`` is registered before ``norm`` (official order → layers.* keys come first).
        self.layers = nn.ModuleList(
            nn.ModuleList([_PreNorm(dim, TemporalAttention(dim, heads, dim_head)),
                           _PreNorm(dim, TemporalFeedForward(dim, mlp_dim))])
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


__all__ = ["TemporalTransformer", "TemporalAttention", "TemporalFeedForward"]
