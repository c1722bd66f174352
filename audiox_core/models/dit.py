"""DiT backbone of AudioX and AudioX-MAF (official ``DiffusionTransformer`` + ``ContinuousTransformer``).

Keys relative to ``model.model.`` equal ``manifests/audiox.tsv`` / ``audiox_maf.tsv`` in order.

Forward (the official ``DiffusionTransformer`` + ``ContinuousTransformer``), for ``x [B, 64, L]`` (already scaled by c_in), network time ``t [B]``
and the fused context ``C [B, N, 768]``:

1. ``C' = to_cond_embed(C)`` (Linear–SiLU–Linear, no bias).
2. ``e = to_timestep_embed([cos f, sin f])``, ``f = 2π·t·wᵀ``.  Prepend token ``p = e`` — or, if a
   global condition ``g`` is given, ``p = to_global_embed(g) + e``: one token, the **OLD**
   (first-release) semantics.  The newer official code adds ``e.unsqueeze(1)`` to a ``[B, D]``
   global embedding, which broadcasts to ``[B, B, D]`` (B prepend tokens) — a bug that released
   configs never trigger (``global_cond_ids`` is empty); we do not reproduce it.
3. ``x = preprocess_conv(x) + x`` → ``[B, L, 64]`` → ``project_in`` → ``cat[p, x]`` ``[B, 1+L, D]``.
4. ``depth`` × block: ``x += SelfAttn(LN(x))``; ``x += CrossAttn(LN(x), C')``; ``x += FF(LN(x))``.
   LN = ``gamma`` + zero ``beta`` buffer, eps 1e-5.  Self-attention: fused ``to_qkv`` split in
   contiguous thirds, heads ``H = D / (D / num_heads)`` of dim ``d = D / num_heads``, NeoX
   rotary on the first ``max(d/2, 32)`` channels of every head over the full sequence (prepend
   token at position 0), tables in fp32.  Cross-attention: ``to_q`` on x, ``to_kv`` on ``C'``
   split in halves with ``768 / d = 12`` KV heads; query head ``h`` uses KV head ``h // (H / 12)``
   (``repeat_interleave``, as flash-attn GQA).  FF = SwiGLU (``proj`` → ``a·SiLU(gate)`` → Linear).
   No attention masks anywhere (the official code discards them).
5. ``project_out`` on every position, drop the prepend position, ``postprocess_conv(y) + y``.

Speed: :meth:`DiT.prepare` computes ``C'`` and every layer's cross-attention K/V once per
generation (they depend only on the context).  Rows whose context is all zeros (the CFG
unconditional branch) give exactly zero cross-attention (no biases: ``to_cond_embed(0) = 0`` ⇒
``k = v = 0`` ⇒ the softmax-weighted mean of zero values is 0 ⇒ ``to_out(0) = 0``), so those rows
skip the cross-attention entirely — bit-identical for finite weights, ~7 % less work under CFG.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneConfig
from ..errors import ConfigError, InputError
from .blocks import BackboneBase, LayerNorm, apply_neox_rotary, neox_rotary_table, rotary_inv_freq

__all__ = ["DiT", "DiTCondCache"]


@dataclass
class DiTCondCache:
    """Per-generation cache of the DiT cross-attention inputs (see :meth:`DiT.prepare`).

    ``kv[i] = (k, v)`` for layer ``i``, each ``[B_active, H, N, d]`` already expanded to the query
    heads; ``active`` = indices of the batch rows whose context is not all zeros (``None`` = all
    rows); ``batch_size`` = the batch the cache was built for.
    """

    kv: list
    active: Optional[torch.Tensor]
    batch_size: int


class RotaryEmbedding(nn.Module):
    """Holds the persistent ``inv_freq`` buffer of the checkpoint (``transformer.rotary_pos_emb``).

    The tables used in forward are recomputed from the same formula in fp32, so a model cast to
    bf16/fp16 (which would round this buffer) keeps the exact fp32 angles of the official fp32 run.
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", rotary_inv_freq(dim, base))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q·kᵀ/√d)·v`` over ``[B, H, N, d]`` tensors, no mask.

    On CPU in bf16/fp16 this is the official CPU code path (``use_pt_flash`` is CUDA-only there):
    scores in the working dtype, softmax in fp32, probabilities cast back, then ``·v`` — which is
    also ~2× faster here than the fused SDPA kernel for head dim 64.  Elsewhere: fused SDPA.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
    return F.scaled_dot_product_attention(q, k, v)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, dim_heads: int):
        super().__init__()
        self.dim, self.dim_heads, self.num_heads = dim, dim_heads, dim // dim_heads
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.to_qkv(x).view(b, n, 3, self.num_heads, self.dim_heads)  # contiguous thirds
        qk = apply_neox_rotary(qkv[:, :, :2].permute(2, 0, 3, 1, 4), cos, sin)  # [2, B, H, N, d]
        v = qkv[:, :, 2].transpose(1, 2)
        out = attention(qk[0], qk[1], v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.dim))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, dim_heads: int, dim_context: int):
        super().__init__()
        if dim_context % dim_heads:
            raise ConfigError(f"DiT cross-attention: context dim {dim_context} is not a multiple of the "
                              f"head dim {dim_heads}")
        self.dim, self.dim_heads = dim, dim_heads
        self.num_heads, self.kv_heads = dim // dim_heads, dim_context // dim_heads
        if self.num_heads % self.kv_heads:
            raise ConfigError(f"DiT cross-attention: {self.num_heads} query heads cannot share "
                              f"{self.kv_heads} KV heads")
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim_context, dim_context * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def project_context(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``to_kv(C')`` → ``(k, v)`` each ``[B, H_kv, N, d]`` (not repeated per query head)."""
        b, n, _ = c.shape
        k, v = self.to_kv(c).chunk(2, dim=-1)

        def heads(t):
            return t.reshape(b, n, self.kv_heads, self.dim_heads).transpose(1, 2).contiguous()
        return heads(k), heads(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """KV head ``j`` serves query heads ``j·g … j·g+g−1`` (``g = H / H_kv``, the official
        ``repeat_interleave``).  Instead of repeating k and v g times, the g query heads of a KV
        head are stacked along the sequence axis — ``[B, H_kv, g·n, d]`` — which is the same
        attention (softmax rows are independent) with k/v read once."""
        b, n, _ = x.shape
        g = self.num_heads // self.kv_heads
        q = self.to_q(x).view(b, n, self.kv_heads, g, self.dim_heads).permute(0, 2, 3, 1, 4)
        q = q.reshape(b, self.kv_heads, g * n, self.dim_heads)  # [B, H_kv, (g, n), d]
        if k.dtype != q.dtype:  # autocast: cached k/v may come from another precision
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = attention(q, k, v).view(b, self.kv_heads, g, n, self.dim_heads)
        return self.to_out(out.permute(0, 3, 1, 2, 4).reshape(b, n, self.dim))


class GLU(nn.Module):
    """SwiGLU input layer: ``a, gate = proj(x).chunk(2)`` → ``a · SiLU(gate)``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.silu(gate)


class FeedForward(nn.Module):
    """``ff = Sequential(GLU, Identity, Linear, Identity)`` — the official key layout ``ff.ff.0.proj``,
    ``ff.ff.2``."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.ff = nn.Sequential(GLU(dim, inner), nn.Identity(), nn.Linear(inner, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, dim_heads: int, dim_context: int):
        super().__init__()
        self.pre_norm = LayerNorm(dim)
        self.self_attn = SelfAttention(dim, dim_heads)
        self.cross_attend = dim_context > 0
        if self.cross_attend:
            self.cross_attend_norm = LayerNorm(dim)
            self.cross_attn = CrossAttention(dim, dim_heads, dim_context)
        self.ff_norm = LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, cos, sin, k=None, v=None, active=None):
        x = x + self.self_attn(self.pre_norm(x), cos, sin)
        if k is not None:
            if active is None:
                x = x + self.cross_attn(self.cross_attend_norm(x), k, v)
            elif active.numel():
                xa = x.index_select(0, active)
                y = self.cross_attn(self.cross_attend_norm(xa), k, v)
                x = x.index_add(0, active, y.to(x.dtype))
        return x + self.ff(self.ff_norm(x))


class DiTTransformer(nn.Module):
    """Container with the official ``ContinuousTransformer`` key layout (``layers`` registered first)."""

    def __init__(self, cfg: BackboneConfig, dim_context: int):
        super().__init__()
        d = cfg.embed_dim
        if d % cfg.num_heads:
            raise ConfigError(f"DiT: embed_dim {d} is not a multiple of num_heads {cfg.num_heads}")
        self.dim_heads = d // cfg.num_heads
        self.rot_dim = max(self.dim_heads // 2, 32)
        if self.rot_dim > self.dim_heads:
            raise ConfigError(f"DiT: head dim {self.dim_heads} (embed_dim / num_heads) is below the rotary "
                              f"dim {self.rot_dim}; the official code cannot run this config either")
        self.layers = nn.ModuleList()
        dim_in = cfg.io_channels * cfg.patch_size
        self.project_in = nn.Linear(dim_in, d, bias=False)
        self.project_out = nn.Linear(d, dim_in, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(self.rot_dim)
        for _ in range(cfg.depth):
            self.layers.append(DiTBlock(d, self.dim_heads, dim_context))


class DiT(BackboneBase):
    """The AudioX / AudioX-MAF diffusion transformer (see the module docstring for the math)."""

    transformer: DiTTransformer

    def _build_transformer(self, cfg: BackboneConfig) -> nn.Module:
        if cfg.type != "dit":
            raise ConfigError(f"DiT built from a {cfg.type!r} backbone config")
        return DiTTransformer(cfg, self.cond_embed_dim)

    # ------------------------------------------------------------------ conditioning cache
    @torch.no_grad()
    def _zero_rows(self, context: torch.Tensor) -> torch.Tensor:
        return (context == 0).flatten(1).all(dim=1)

    def prepare(self, context: torch.Tensor, *, skip_zero_rows: bool = True) -> DiTCondCache:
        """Everything of a step that depends only on the context: ``C' = to_cond_embed(C)`` and
        each layer's ``(k, v)``.  Build once per generation (for CFG, with the batched
        ``[cond; uncond]`` context) and pass as ``forward(..., cond_cache=...)`` every step.

        ``skip_zero_rows``: rows whose context is exactly zero skip the cross-attention (its
        output is exactly 0 there, see the module docstring).
        """
        if not hasattr(self, "to_cond_embed"):
            raise InputError("DiT: this backbone has no cross-attention (cond_token_dim = 0); "
                             "do not pass a context")
        self._check_context(context, context.shape[0] if torch.is_tensor(context) else -1,
                            self.cfg.cond_token_dim)
        c = self.to_cond_embed(self._cast_in(context))
        active = None
        if skip_zero_rows:
            zero = self._zero_rows(context)
            if bool(zero.any()):
                active = (~zero).nonzero().flatten()
        kv = []
        for layer in self.transformer.layers:
            k, v = layer.cross_attn.project_context(c)
            if active is not None:
                k, v = k.index_select(0, active), v.index_select(0, active)
            kv.append((k, v))
        return DiTCondCache(kv=kv, active=active, batch_size=context.shape[0])

    # ------------------------------------------------------------------ forward
    def rotary_tables(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.transformer.rot_dim
        return self.table(("neox", str(device), seq_len, r),
                          lambda: neox_rotary_table(seq_len, rotary_inv_freq(r, device=device)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: Optional[torch.Tensor] = None,
                global_cond: Optional[torch.Tensor] = None, *,
                cond_cache: Optional[DiTCondCache] = None) -> torch.Tensor:
        """``x [B, io, L]``, ``t [B]`` (network time), ``context [B, N, cond_token_dim]`` →
        ``[B, io, L]`` in the dtype of ``x``.  With ``cond_cache`` (from :meth:`prepare`) the
        context argument is not used.  ``global_cond [B, global_cond_dim]`` is optional."""
        self._check_x(x)
        b, in_dtype = x.shape[0], x.dtype
        cache = cond_cache
        if cache is None and context is not None:
            self._check_context(context, b, self.cfg.cond_token_dim)
            cache = self.prepare(context)
        if cache is not None and cache.batch_size != b:
            raise InputError(f"DiT: cond_cache was built for batch {cache.batch_size}, latents have batch {b}")

        prepend = self.timestep_embed(t, b)
        if global_cond is not None:
            if not hasattr(self, "to_global_embed"):
                raise InputError("DiT: global_cond given but this backbone has no to_global_embed "
                                 "(global_cond_dim = 0)")
            if global_cond.shape != (b, self.cfg.global_cond_dim):
                raise InputError(f"DiT: global_cond must be [{b}, {self.cfg.global_cond_dim}], "
                                 f"got {tuple(global_cond.shape)}")
            prepend = self.to_global_embed(self._cast_in(global_cond)) + prepend

        tr = self.transformer
        h = tr.project_in(self.embed_input(self._cast_in(x)))
        h = torch.cat([prepend.unsqueeze(1).to(h.dtype), h], dim=1)
        cos, sin = self.rotary_tables(h.shape[1], h.device)
        for i, layer in enumerate(tr.layers):
            if cache is not None:
                k, v = cache.kv[i]
                h = self.run_block(layer, h, cos, sin, k, v, cache.active)
            else:
                h = self.run_block(layer, h, cos, sin)
        h = tr.project_out(h)[:, 1:]
        return self.unembed_output(h).to(in_dtype)
