"""MAF — the multimodal adaptive fusion block of AudioX-MAF / -MAF-MMDiT / -Turbo.

Official source: ``audiox/models/MAF.py`` (``MAF_Block``), built in ``audiox/models/diffusion.py``
and called from ``ConditionedDiffusionModelWrapper.get_conditioning_inputs``.  State-dict keys
(relative to ``maf_block.``) are exactly the official ones, in the official order::

    unified_experts [3E, D]   bypass_gate_{v,t,a} []   gating_network.{0,2}.*   cross_attn.*
    norm1.*   fusion_transformer.layers.N.*   norm_{v,t,a}2.*

Math (MAF's own slot names V, T, A; D = 768, E experts per modality)::

    w_v, w_t, w_a = sigmoid(L2(gelu(L1(cat[mean_n V, mean_n T, mean_n A]))))      (per item)
    ctx      = cat[V·w_v, T·w_t, A·w_a]                      (along the token axis)
    u        = LayerNorm(experts + MHA(q=experts, k=ctx, v=ctx))     experts = unified_experts
    fused    = TransformerEncoder(u)        L_f pre-norm layers, FF 4D, exact GELU, dropout 0.1
    r_V, r_T, r_A = mean over each third of the 3E fused experts
    out_V    = V + sigmoid(bypass_gate_v) · LayerNorm_v2(r_V)            (broadcast over tokens)

The outputs add the refinement to the **ungated** inputs; the gates only shape what the experts
attend to.  The means include zero-padded T5 rows, and no attention mask is used anywhere
(as in the official code).

.. warning:: **The official caller swaps the first two arguments.**
   ``get_conditioning_inputs`` calls ``maf_block(text, video, audio)`` while the signature is
   ``(video_tokens, text_tokens, audio_tokens)``.  So MAF's "video" slot (``w_v``,
   ``bypass_gate_v``, ``norm_v2``, experts ``0..E-1``) processes the **T5 text tokens** and its
   "text" slot processes the **CLIP video tokens**; the context handed to the backbone is
   ``cat[out_V, out_T, out_A] = [MAF(T5) | MAF(CLIP) | MAF(audio)]``.  The released weights were
   trained with this wiring, so the CALLER must reproduce it (``AudioXModel.fuse`` does).  This
   module keeps the official parameter naming and does no swapping itself.

Differences from ``MAF_Block`` (none changes the numbers):

* The attention modules are written out here with the exact key names of
  ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` and the op order of PyTorch's
  reference ("slow") path, so the output projections and feed-forward layers are ordinary
  ``nn.Linear`` modules that ``forward`` calls (LoRA can wrap them) and nothing depends on
  PyTorch's fused inference fast path (which the official may or may not hit depending on
  grad mode; it agrees to ~1e-6).  ``in_proj_weight`` / ``in_proj_bias`` stay raw parameters
  because the checkpoint layout packs q, k, v into one tensor.
* ``forward`` returns a tuple ``(out_v, out_t, out_a)`` instead of a dict, records the learned
  gates of the last call in ``last_gates`` and accepts an optional ``modality_scale``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MAFConfig
from ..errors import ConfigError, InputError


class PackedMultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters and reference op order.

    Keys: ``in_proj_weight [3D, D]`` (rows q | k | v), ``in_proj_bias [3D]``, ``out_proj.*``.
    Inputs and outputs are batch-first ``[B, N, D]``.  ``need_weights=True`` follows PyTorch's
    explicit path (``q·D_h^-1/2`` then ``bmm``, softmax, ``bmm``) — that is what the official
    cross-attention call runs; ``need_weights=False`` uses ``scaled_dot_product_attention`` as
    ``nn.TransformerEncoderLayer`` does.  The attention weights themselves are never returned.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"MAF: dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.MultiheadAttention's init, with the official MAF zero-init of out_proj.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor, n: int, b: int) -> torch.Tensor:
        # [N, B, D] -> [B·H, N, D_h]  (PyTorch's layout)
        return x.view(n, b * self.num_heads, self.head_dim).transpose(0, 1)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, *, need_weights: bool = False) -> torch.Tensor:
        d = self.dim
        b, nq, _ = query.shape
        nk = key_value.shape[1]
        q_in = query.transpose(0, 1)  # sequence-first, as nn.MultiheadAttention(batch_first=True) does
        if key_value is query:
            proj = F.linear(q_in, self.in_proj_weight, self.in_proj_bias)
            proj = proj.unflatten(-1, (3, d)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
            q, k, v = proj[0], proj[1], proj[2]
        else:
            kv_in = key_value.transpose(0, 1)
            w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
            b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
            q = F.linear(q_in, w_q, b_q)
            kv = F.linear(kv_in, w_kv, b_kv)
            kv = kv.unflatten(-1, (2, d)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
            k, v = kv[0], kv[1]
        q, k, v = self._heads(q, nq, b), self._heads(k, nk, b), self._heads(v, nk, b)
        p = self.dropout if self.training else 0.0
        if need_weights:
            attn = torch.bmm(q * math.sqrt(1.0 / float(self.head_dim)), k.transpose(-2, -1))
            attn = torch.softmax(attn, dim=-1)
            if p > 0.0:
                attn = F.dropout(attn, p=p)
            out = torch.bmm(attn, v)  # [B·H, Nq, D_h]
            out = out.transpose(0, 1).contiguous().view(nq * b, d)
        else:
            q = q.view(b, self.num_heads, nq, self.head_dim)
            k = k.view(b, self.num_heads, nk, self.head_dim)
            v = v.view(b, self.num_heads, nk, self.head_dim)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            out = out.permute(2, 0, 1, 3).contiguous().view(b * nq, d)
        out = self.out_proj(out).view(nq, b, d)
        return out.transpose(0, 1)


class FusionLayer(nn.Module):
    """``nn.TransformerEncoderLayer(D, h, 4D, dropout=0.1, activation=gelu, norm_first=True,
    batch_first=True)`` with the same keys: ``self_attn.*``, ``linear1``, ``linear2``, ``norm1``,
    ``norm2``.  ``x += drop1(SA(norm1 x)); x += drop2(linear2(drop(gelu(linear1(norm2 x)))))``;
    the attention probabilities get dropout 0.1 as well (train mode only).
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.self_attn = PackedMultiheadAttention(dim, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.dropout1(self.self_attn(h, h, need_weights=False))
        h = self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(x)))))
        return x + self.dropout2(h)


class FusionTransformer(nn.Module):
    """``nn.TransformerEncoder`` without a final norm: keys ``layers.N.*``."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, num_layers: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(dim, num_heads, ff_dim, dropout) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MAF(nn.Module):
    """The MAF block (see the module docstring for the math and the caller's argument swap).

    ``cfg.dim`` is 768 in every released model; tiny test/demo models may use less.
    ``num_heads`` cannot be read from the checkpoint (it does not change any shape) and must
    come from the config: the released MAF models use 24 [M] (code default 12).
    """

    def __init__(self, cfg: MAFConfig, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        d, e = int(cfg.dim), int(cfg.num_experts_per_modality)
        if d <= 0 or e <= 0 or cfg.num_fusion_layers < 0:
            raise ConfigError(f"MAF: invalid sizes dim={d}, experts={e}, layers={cfg.num_fusion_layers}")
        if d % cfg.num_heads:
            raise ConfigError(f"MAF: dim {d} is not divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.dim = d
        self.num_experts_per_modality = e
        # Own parameters first (their state-dict position), in the official order.
        self.unified_experts = nn.Parameter(torch.randn(3 * e, d))
        self.bypass_gate_v = nn.Parameter(torch.tensor(-10.0))
        self.bypass_gate_t = nn.Parameter(torch.tensor(-10.0))
        self.bypass_gate_a = nn.Parameter(torch.tensor(-10.0))
        self.gating_network = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, 3), nn.Sigmoid())
        self.cross_attn = PackedMultiheadAttention(d, cfg.num_heads, dropout=0.0)
        self.norm1 = nn.LayerNorm(d)
        self.fusion_transformer = FusionTransformer(d, cfg.num_heads, int(d * mlp_ratio), cfg.num_fusion_layers,
                                                    dropout=dropout)
        self.norm_v2 = nn.LayerNorm(d)
        self.norm_t2 = nn.LayerNorm(d)
        self.norm_a2 = nn.LayerNorm(d)
        #: learned gates ``[B, 3]`` (MAF slot order v, t, a — i.e. T5, CLIP, audio under the
        #: official swap) of the last forward call, detached; ``None`` before the first call.
        self.last_gates: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------------------------------
    def _check(self, name: str, x: torch.Tensor, batch: Optional[int]) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"MAF: {name} must be a [B, N, {self.dim}] tensor, got {got}")
        if x.shape[1] == 0:
            raise InputError(f"MAF: {name} has no tokens (shape {tuple(x.shape)})")
        if batch is not None and x.shape[0] != batch:
            raise InputError(f"MAF: batch sizes differ ({name} has {x.shape[0]}, expected {batch})")

    @staticmethod
    def _scales(modality_scale: Optional[Sequence[float]]) -> Optional[tuple[float, float, float]]:
        if modality_scale is None:
            return None
        try:
            s = tuple(float(v) for v in modality_scale)
        except (TypeError, ValueError):
            raise InputError(f"MAF: modality_scale must be three numbers, got {modality_scale!r}") from None
        if len(s) != 3:
            raise InputError(f"MAF: modality_scale must have 3 entries (video, text, audio slots), got {len(s)}")
        if any(not math.isfinite(v) or v < 0 for v in s):
            raise InputError(f"MAF: modality_scale entries must be finite and >= 0, got {s}")
        if all(v == 0 for v in s):
            raise InputError("MAF: modality_scale switches off all three modalities; keep at least one above 0")
        return s

    def forward(self, video_tokens: torch.Tensor, text_tokens: torch.Tensor, audio_tokens: torch.Tensor, *,
                modality_scale: Optional[Sequence[float]] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fuse the three token sets; returns ``(out_v, out_t, out_a)`` with the input shapes.

        Parameter names are MAF's own slots; remember the official caller passes
        ``(text, video, audio)`` (module docstring).

        ``modality_scale = (s_v, s_t, s_a)`` (slot order, each ≥ 0) multiplies the learned gates
        ``w`` before the expert cross-attention.  ``None`` or all ones gives exactly the official
        result.  A scale of exactly 0 leaves that modality's tokens out of the expert attention
        altogether (zeroed tokens would still be attended to through the key/value biases).  The
        scale does not touch the bypass path: every output is still its own input plus the
        refinement.  Inputs are cast to the block's parameter dtype.
        """
        self._check("video_tokens", video_tokens, None)
        bsz = video_tokens.shape[0]
        self._check("text_tokens", text_tokens, bsz)
        self._check("audio_tokens", audio_tokens, bsz)
        scales = self._scales(modality_scale)
        dt = self.unified_experts.dtype
        v, t, a = (x.to(dt) for x in (video_tokens, text_tokens, audio_tokens))

        gates = self.gating_network(torch.cat([v.mean(dim=1), t.mean(dim=1), a.mean(dim=1)], dim=1))
        self.last_gates = gates.detach()
        w = gates.chunk(3, dim=-1)  # each [B, 1]

        parts = []
        for i, x in enumerate((v, t, a)):
            wi = w[i]
            if scales is not None:
                if scales[i] == 0.0:
                    continue
                if scales[i] != 1.0:
                    wi = wi * scales[i]
            parts.append(x * wi.unsqueeze(-1))
        context = torch.cat(parts, dim=1)

        experts = self.unified_experts.unsqueeze(0).expand(bsz, -1, -1)
        info = self.cross_attn(experts, context)  # fused SDPA (the official materialises the weights)
        fused = self.fusion_transformer(self.norm1(experts + info))

        r_v, r_t, r_a = (g.mean(dim=1) for g in fused.chunk(3, dim=1))
        out_v = v + torch.sigmoid(self.bypass_gate_v) * self.norm_v2(r_v).unsqueeze(1)
        out_t = t + torch.sigmoid(self.bypass_gate_t) * self.norm_t2(r_t).unsqueeze(1)
        out_a = a + torch.sigmoid(self.bypass_gate_a) * self.norm_a2(r_a).unsqueeze(1)
        return out_v, out_t, out_a
