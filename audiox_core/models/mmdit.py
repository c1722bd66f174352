"""MMDiT backbone of AudioX-MAF-MMDiT and AudioX-Turbo (official ``MMDiffusionTransformer`` +
``ContinuousMMDiTTransformer`` + ``MMDitSingleBlock``).

Keys relative to ``model.model.`` equal ``manifests/audiox_maf_mmdit.tsv`` / ``audiox_turbo.tsv``
in order.  Despite its name this is a single-stream DiT: conditions enter only through a
**per-token** adaLN.  Every official quirk that the weights depend on is reproduced
(the official ``MMDiffusionTransformer`` / ``ContinuousMMDiTTransformer``, shared by AudioX-Turbo):

* **Head count bug**: the outer class passes ``embed_dim // num_heads`` as the *number* of heads,
  so a 1536/24 config has 64 heads of dim 24 (tiny 64/4: 16 heads of dim 4).
* ``to_cond_embed`` exists in the checkpoint but is **not applied**; global conditions are
  unsupported (the official code crashes) — passing one raises :class:`InputError`.
* Sequence: ``cat[t_emb, project_in(preprocess_conv(x) + x)]``, ``Lx = 1 + L`` must equal
  ``_latent_seq_len`` (RoPE table and ``proj_mm_seq_len`` are sized for it).
* Conditioning ``mm = proj_mm_seq_len(proj_mm_tokens(C)ᵀ)ᵀ`` ``[B, Lx, D]`` from exactly 384
  context tokens of width ``cond_token_dim`` (the official hard-codes 768, the value of every
  released config; small demo/test configs use a narrower context); per block ``(shift1, scale1, gate1, shift2, scale2, gate2) =
  chunk6(adaLN_modulation(mm))`` (SiLU → Linear), one modulation vector per sequence position.
* Self-attention: ``qkv`` split ``'b n (h d j)'`` with ``j`` innermost (element ``(h·d+i)·3+j``),
  weightless RMSNorm (eps 1e-6) on q and k, GPT-J rotary over the full head dim in fp32
  (positions 0…Lx−1, the time token at 0), SDPA with scale ``1/√d``, no mask.
* ``x += linear1(attn) · gate1``; ``linear1`` is a channel-last Conv1d(k=3, pad 1).
* "Cross-attention" to the single time token: the official code swaps K and V, so with one key
  the softmax weight is exactly 1 and the output is, at every position,
  ``concat_h RMSNorm(k_h)`` where ``k`` = the even (``j = 0``) channels of ``to_kv(t_emb)``.
  It is computed directly; ``to_q`` has no effect on the output (nor gradient) and is not
  called.  No gate, no output projection.
* ``x += ConvMLP(LN(x)·(1+scale2)+shift2) · gate2``, ``ConvMLP = w2(SiLU(w1 r) · w3 r)``, all three
  channel-last Conv1d(k=3), hidden ``256·ceil(int(2·int(D·mlp_ratio)/3)/256)``.
* LayerNorms are weightless, eps 1e-5.  ``project_out``, drop position 0, ``postprocess_conv``.

Speed: the adaLN modulation depends only on the context, so :meth:`MMDiT.prepare` computes all
layers' modulations once per generation (≈16 % of the FLOPs of a step) and
``forward(..., cond_cache=...)`` reuses them across steps — and across the two CFG branches when
they are batched.  The kernel-3 convolutions run as single GEMMs (:class:`ChannelLastConv1d`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneConfig
from ..errors import ConfigError, InputError
from .blocks import BackboneBase, ChannelLastConv1d, apply_gptj_rope, fp32_contiguous, gptj_rope_table, rms_norm

__all__ = ["MMDiT", "MMDiTCondCache", "CONTEXT_TOKENS", "CONTEXT_DIM"]

CONTEXT_TOKENS = 384  # hard-coded in the official proj_mm_seq_len (3 × 128 modality tokens)
CONTEXT_DIM = 768  # hard-coded in the official proj_mm_tokens (== cond_token_dim of every released config)


@dataclass
class MMDiTCondCache:
    """Per-generation adaLN modulation of every block (see :meth:`MMDiT.prepare`).

    ``modulation[i] = (shift1, 1+scale1, gate1, shift2, 1+scale2, gate2)``, each ``[B, Lx, D]``
    contiguous (``1 + scale`` is stored; the official computes the same sum every step).
    """

    modulation: list
    batch_size: int


def conv_mlp_hidden(dim: int, mlp_ratio: float, multiple_of: int = 256) -> int:
    """Hidden width of the official ConvMLP: ``int(2·int(dim·mlp_ratio)/3)`` rounded up to 256."""
    h = int(2 * int(dim * mlp_ratio) / 3)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, nheads: int):
        super().__init__()
        self.dim, self.nheads, self.head_dim = dim, nheads, dim // nheads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)

    def forward(self, x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, self.nheads, self.head_dim, 3)  # 'b n (h d j)', j innermost
        # q and k together as one fp32 [2, B, H, N, d] tensor: one gather+convert pass, then
        # RMSNorm and RoPE once for both (fp32, as the official apply_rope).
        qk = fp32_contiguous(qkv[..., :2].permute(4, 0, 2, 1, 3))
        qk = apply_gptj_rope(rms_norm(qk, 1e-6), rot).to(qkv.dtype)
        v = qkv[..., 2].transpose(1, 2).contiguous()  # SDPA's fused CPU kernel needs unit stride
        out = F.scaled_dot_product_attention(qk[0], qk[1], v)
        return out.transpose(1, 2).reshape(b, n, self.dim)


class CrossAttention(nn.Module):
    """Official ``CrossAttention`` weights; forward computes what the swapped-K/V code computes."""

    def __init__(self, dim: int, nheads: int):
        super().__init__()
        self.dim, self.nheads, self.head_dim = dim, nheads, dim // nheads
        self.to_q = nn.Linear(dim, dim, bias=False)  # no effect on the output (see module doc)
        self.to_kv = nn.Linear(dim, dim * 2, bias=False)

    def forward(self, time_token: torch.Tensor) -> torch.Tensor:
        """``time_token [B, 1, D]`` → the branch output ``[B, 1, D]`` (broadcast over positions):
        per head, weightless RMSNorm (eps 1e-6, input dtype) of the ``j = 0`` channels of
        ``to_kv`` (``'b n (h d j)'``, j = 2)."""
        b = time_token.shape[0]
        kv = self.to_kv(time_token).view(b, 1, self.nheads, self.head_dim, 2)
        k = rms_norm(kv[..., 0], 1e-6)
        return k.reshape(b, 1, self.dim)


def _is_plain_conv(m: nn.Module) -> bool:
    """True if calling ``m`` would run exactly :meth:`ChannelLastConv1d.forward`'s GEMM path
    (not a subclass, no hooks, no per-instance forward), so its im2col may be shared."""
    return (type(m) is ChannelLastConv1d and m._fast_ok() and m.kernel_size[0] > 1
            and not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__
            and not getattr(nn.modules.module, "_global_forward_hooks", None)
            and not getattr(nn.modules.module, "_global_forward_pre_hooks", None))


class ConvMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel_size: int, padding: int):
        super().__init__()
        self.w1 = ChannelLastConv1d(dim, hidden, kernel_size, padding=padding, bias=False)
        self.w2 = ChannelLastConv1d(hidden, dim, kernel_size, padding=padding, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, w3 = self.w1, self.w3
        if _is_plain_conv(w1) and _is_plain_conv(w3) and w1.kernel_size == w3.kernel_size:
            cols = w1.im2col(x)  # w1 and w3 read the same input: build its im2col matrix once
            a, b = w1.gemm(cols), w3.gemm(cols)
        else:  # wrapped/patched (e.g. LoRA): call the modules
            a, b = w1(x), w3(x)
        return self.w2(F.silu(a) * b)


class MMDiTBlock(nn.Module):
    """``MMDitSingleBlock`` with ``cross_attend=True``, ``pre_only=False``."""

    def __init__(self, dim: int, nheads: int, mlp_ratio: float, kernel_size: int):
        super().__init__()
        if kernel_size == 1:
            raise ConfigError("MMDiT kernel_size 1 (Linear/MLP variant) is not used by any released "
                              "model and is not supported")
        pad = (kernel_size - 1) // 2
        self.dim = dim
        self.attn = SelfAttention(dim, nheads)
        self.cross_attn = CrossAttention(dim, nheads)
        self.linear1 = ChannelLastConv1d(dim, dim, kernel_size, padding=pad)
        self.ffn = ConvMLP(dim, conv_mlp_hidden(dim, mlp_ratio), kernel_size, pad)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, bias=True))

    def modulation(self, mm: torch.Tensor) -> tuple:
        """``mm [B, Lx, D]`` → ``(shift1, 1+scale1, gate1, shift2, 1+scale2, gate2)``."""
        s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(mm).chunk(6, dim=-1)
        return (s1.contiguous(), 1 + c1, g1.contiguous(), s2.contiguous(), 1 + c2, g2.contiguous())

    def forward(self, x, mod, rot, time_token):
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        d = (self.dim,)
        h = F.layer_norm(x, d, eps=1e-5) * scale1 + shift1
        x = x + self.linear1(self.attn(h, rot)) * gate1
        x = x + self.cross_attn(time_token)
        r = F.layer_norm(x, d, eps=1e-5) * scale2 + shift2
        return x + self.ffn(r) * gate2


class MMDiTTransformer(nn.Module):
    """Container with the ``ContinuousMMDiTTransformer`` key layout (``layers`` registered first)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        d = cfg.embed_dim
        if d % cfg.num_heads or d % (d // cfg.num_heads):
            raise ConfigError(f"MMDiT: embed_dim {d} and num_heads {cfg.num_heads} give no whole head "
                              f"count/size")
        # The official head-count bug: embed_dim // num_heads is used as the NUMBER of heads.
        self.nheads = d // cfg.num_heads
        self.head_dim = d // self.nheads
        self.latent_seq_len = cfg.latent_seq_len
        self.layers = nn.ModuleList()
        dim_in = cfg.io_channels * cfg.patch_size
        self.project_in = nn.Linear(dim_in, d, bias=False)
        self.project_out = nn.Linear(d, dim_in, bias=False)
        for _ in range(cfg.depth):
            self.layers.append(MMDiTBlock(d, self.nheads, cfg.mlp_ratio, cfg.kernel_size))
        # The official hard-codes Linear(768, d); every released config has cond_token_dim 768, so
        # using cond_token_dim is the same model there and lets small demo/test models use a
        # narrower context (tiny.py, demo/model_config.py).
        self.context_dim = cfg.cond_token_dim
        self.proj_mm_tokens = (nn.Linear(self.context_dim, d) if d != self.context_dim else nn.Identity())
        self.proj_mm_seq_len = (nn.Linear(CONTEXT_TOKENS, cfg.latent_seq_len)
                                if cfg.latent_seq_len != CONTEXT_TOKENS else nn.Identity())


class MMDiT(BackboneBase):
    """The AudioX-MAF-MMDiT / AudioX-Turbo backbone (see the module docstring)."""

    transformer: MMDiTTransformer

    def _build_transformer(self, cfg: BackboneConfig) -> nn.Module:
        if cfg.type != "mmdit":
            raise ConfigError(f"MMDiT built from a {cfg.type!r} backbone config")
        return MMDiTTransformer(cfg)

    def _check_mm_context(self, context: torch.Tensor, batch: Optional[int]) -> None:
        if batch is None:
            batch = context.shape[0] if torch.is_tensor(context) else -1
        self._check_context(context, batch, self.transformer.context_dim)
        if context.shape[1] != CONTEXT_TOKENS:
            raise InputError(f"MMDiT: context must have exactly {CONTEXT_TOKENS} tokens (3 modalities × "
                             f"128), got {context.shape[1]}")

    def prepare(self, context: torch.Tensor) -> MMDiTCondCache:
        """Per-token adaLN modulation of every block from the fused context ``[B, 384, 768]``.

        Build once per generation (for CFG: with the batched ``[cond; uncond]`` context) and pass
        as ``forward(..., cond_cache=...)`` at every step; the result is bit-identical to the
        plain path, which calls this method itself.
        """
        self._check_mm_context(context, None)
        tr = self.transformer
        mm = tr.proj_mm_tokens(self._cast_in(context))
        mm = tr.proj_mm_seq_len(mm.transpose(1, 2)).transpose(1, 2).contiguous()  # [B, Lx, D]
        return MMDiTCondCache(modulation=[layer.modulation(mm) for layer in tr.layers],
                              batch_size=context.shape[0])

    def rope_table(self, seq_len: int, device: torch.device) -> torch.Tensor:
        hd = self.transformer.head_dim
        return self.table(("gptj", str(device), seq_len, hd),
                          lambda: gptj_rope_table(seq_len, hd, 10000.0, device=device))

    def build_tables(self, x: torch.Tensor) -> None:
        """The RoPE table of ``x``'s length (:meth:`BackboneBase.build_tables`)."""
        self.rope_table(1 + x.shape[2] // self.cfg.patch_size, x.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: Optional[torch.Tensor] = None,
                global_cond: Optional[torch.Tensor] = None, *,
                cond_cache: Optional[MMDiTCondCache] = None) -> torch.Tensor:
        """``x [B, io, L]`` with ``1 + L/patch == latent_seq_len``, ``t [B]``, ``context
        [B, 384, 768]`` → ``[B, io, L]`` in the dtype of ``x``.  With ``cond_cache`` (from
        :meth:`prepare`) the context argument is not used."""
        self._check_x(x)
        b, in_dtype = x.shape[0], x.dtype
        tr = self.transformer
        lx = 1 + x.shape[2] // self.cfg.patch_size
        if lx != tr.latent_seq_len:
            raise InputError(f"MMDiT: sequence length 1 + {x.shape[2] // self.cfg.patch_size} latents = {lx} "
                             f"does not equal the model's fixed latent_seq_len {tr.latent_seq_len} "
                             f"(this model only generates {tr.latent_seq_len - 1} latent frames)")
        if global_cond is not None:
            raise InputError("MMDiT: global conditioning is not supported by the MMDiT backbone "
                             "(the official code cannot run it either)")
        if cond_cache is None:
            if context is None:
                raise InputError("MMDiT: a context [B, 384, 768] (or a cond_cache) is required")
            self._check_mm_context(context, b)
            cond_cache = self.prepare(context)
        elif cond_cache.batch_size != b:
            raise InputError(f"MMDiT: cond_cache was built for batch {cond_cache.batch_size}, "
                             f"latents have batch {b}")

        temb = self.timestep_embed(t, b).unsqueeze(1)  # [B, 1, D], prepend token and time context
        h = tr.project_in(self.embed_input(self._cast_in(x)))
        h = torch.cat([temb.to(h.dtype), h], dim=1)
        rot = self.rope_table(lx, h.device)
        for layer, mod in zip(tr.layers, cond_cache.modulation):
            h = self.run_block(layer, h, mod, rot, temb)
        h = tr.project_out(h)[:, 1:]
        return self.unembed_output(h).to(in_dtype)
