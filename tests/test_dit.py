"""DiT backbone: manifest keys, numerics against hand computations (float64, explicit per-head
loops), GQA mapping, global-cond semantics, caches (incl. the zero-context skip), dtypes, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiox_core.config import AudioXConfig, BackboneConfig
from audiox_core.errors import InputError
from audiox_core.models.blocks import FourierFeatures, apply_neox_rotary, neox_rotary_table, rotary_inv_freq
from audiox_core.models.dit import DiT

from conftest import checkpointing_grads, half_precision_outputs, read_manifest, shape_str


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(embed=256, heads=4, cond=128, depth=2, gdim=16) -> BackboneConfig:
    # head dim 64 → rotary on 32 of 64 channels; 4 query heads share 2 KV heads (as 24 ↔ 12)
    return BackboneConfig(type="dit", embed_dim=embed, depth=depth, num_heads=heads, cond_token_dim=cond,
                          global_cond_dim=gdim)


def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            else:  # LayerNorm gammas around 1, biases small
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("gamma") else 0.0))
    return model


@pytest.fixture(scope="module")
def tiny():
    return randomize(DiT(tiny_cfg())).eval()


def inputs(b=2, length=10, n_ctx=7, cond=128, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 64, length, generator=g), torch.rand(b, generator=g),
            torch.randn(b, n_ctx, cond, generator=g))


# ------------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,config,gdim", [("audiox", "audiox_reconstructed.json", 1536),
                                                 ("audiox_maf", "audiox_maf_reconstructed.json", 768)])
def test_full_size_keys_match_manifest(reference_dir, variant, config, gdim):
    cfg = AudioXConfig.from_json(reference_dir / "configs" / config).backbone
    assert cfg.global_cond_dim == gdim
    with torch.device("meta"):
        m = DiT(cfg)
    prefix = "model.model."
    want = [(k[len(prefix):], s) for k, s in read_manifest(reference_dir / "manifests" / f"{variant}.tsv")
            if k.startswith(prefix)]
    got = [(k, shape_str(v.shape)) for k, v in m.state_dict().items()]
    assert got == want


def test_buffers_persistent_and_exact():
    m = DiT(tiny_cfg())
    sd = m.state_dict()
    assert torch.equal(sd["transformer.layers.0.pre_norm.beta"], torch.zeros(256))
    want = np.array([1.0 / 10000 ** (i / 32) for i in range(0, 32, 2)], dtype=np.float32)
    np.testing.assert_allclose(sd["transformer.rotary_pos_emb.inv_freq"].numpy(), want, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Hand computations
# ------------------------------------------------------------------------------------------------
def test_fourier_features_numpy():
    ff = FourierFeatures(1, 256)
    t = torch.tensor([0.0, 0.3, 0.999])
    w = ff.weight.detach().double().numpy()[:, 0]
    f = 2 * np.pi * t.double().numpy()[:, None] * w[None]
    want = np.concatenate([np.cos(f), np.sin(f)], axis=1)
    np.testing.assert_allclose(ff(t).detach().numpy(), want, atol=2e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ff(t).dtype == torch.float32


def test_neox_partial_rotary_explicit_loop():
    n, d, r = 6, 64, 32
    x = torch.randn(3, n, d, dtype=torch.float64)
    cos, sin = neox_rotary_table(n, rotary_inv_freq(r))
    got = apply_neox_rotary(x.float(), cos, sin).double()
    want = x.clone()
    for pos in range(n):
        for i in range(r // 2):
            a = pos * 10000.0 ** (-2 * i / r)
            x1, x2 = x[:, pos, i], x[:, pos, i + r // 2]
            want[:, pos, i] = x1 * math.cos(a) - x2 * math.sin(a)
            want[:, pos, i + r // 2] = x2 * math.cos(a) + x1 * math.sin(a)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[..., r:], x.float().double()[..., r:])  # channels r… pass through


def _rotate(t, pos, r):
    t = t.clone()
    for i in range(r // 2):
        a = pos * 10000.0 ** (-2 * i / r)
        x1, x2 = t[:, i].clone(), t[:, i + r // 2].clone()
        t[:, i] = x1 * torch.cos(a) - x2 * torch.sin(a)
        t[:, i + r // 2] = x2 * torch.cos(a) + x1 * torch.sin(a)
    return t


def ref_self_attention(x, w_qkv, w_out, nheads):
    x = x.double()
    n, dim = x.shape
    d = dim // nheads
    q, k, v = (x @ w_qkv.double().T).split(dim, dim=-1)  # contiguous thirds
    pos = torch.arange(n, dtype=torch.float64)
    out = torch.zeros(n, dim, dtype=torch.float64)
    for h in range(nheads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh = _rotate(q[:, sl], pos, max(d // 2, 32)), _rotate(k[:, sl], pos, max(d // 2, 32))
        out[:, sl] = torch.softmax(qh @ kh.T / math.sqrt(d), -1) @ v[:, sl]
    return out @ w_out.double().T


def ref_cross_attention(x, c, w_q, w_kv, w_out, nheads, d, mapping="official"):
    """Query head h reads KV head h // (H / H_kv) of the k | v halves of to_kv (``mapping="modulo"``:
    the other plausible mapping, h % H_kv)."""
    x, c = x.double(), c.double()
    q = x @ w_q.double().T
    k, v = (c @ w_kv.double().T).chunk(2, dim=-1)
    kv_heads = k.shape[-1] // d
    out = torch.zeros_like(q)
    for h in range(nheads):
        j = h // (nheads // kv_heads) if mapping == "official" else h % kv_heads
        qh, kh, vh = q[:, h * d:(h + 1) * d], k[:, j * d:(j + 1) * d], v[:, j * d:(j + 1) * d]
        out[:, h * d:(h + 1) * d] = torch.softmax(qh @ kh.T / math.sqrt(d), -1) @ vh
    return out @ w_out.double().T


def test_gqa_mapping(tiny):
    ca = tiny.transformer.layers[0].cross_attn
    assert (ca.num_heads, ca.kv_heads) == (4, 2)
    x, c = torch.randn(1, 5, 256), torch.randn(1, 7, 128)
    k, v = ca.project_context(c)
    assert k.shape == v.shape == (1, 2, 7, 64)  # k/v are kept per KV head, never repeated
    got = ca(x, k, v)[0].double()
    want = ref_cross_attention(x[0], c[0], ca.to_q.weight, ca.to_kv.weight, ca.to_out.weight, 4, 64)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the other plausible mapping (h % H_kv) must NOT match — the test can tell them apart
    other = ref_cross_attention(x[0], c[0], ca.to_q.weight, ca.to_kv.weight, ca.to_out.weight, 4, 64, "modulo")
    assert not torch.allclose(got, other, atol=1e-3)


def test_self_attention_reference(tiny):
    sa = tiny.transformer.layers[1].self_attn
    x = torch.randn(1, 11, 256)
    cos, sin = tiny.rotary_tables(11, x.device)
    torch.testing.assert_close(sa(x, cos, sin)[0].double(),
                               ref_self_attention(x[0], sa.to_qkv.weight, sa.to_out.weight, 4), atol=1e-5, rtol=1e-5)


def ref_forward(m: DiT, x, t, ctx, g=None):
    dd = {k: v.double() for k, v in m.state_dict().items()}
    x, t, ctx = x.double(), t.double(), ctx.double()
    H = m.cfg.num_heads
    f = 2 * math.pi * t[:, None] * dd["timestep_features.weight"][:, 0][None]
    e = torch.cat([torch.cos(f), torch.sin(f)], -1)
    e = F.silu(e @ dd["to_timestep_embed.0.weight"].T + dd["to_timestep_embed.0.bias"])
    e = e @ dd["to_timestep_embed.2.weight"].T + dd["to_timestep_embed.2.bias"]
    if g is not None:
        e = F.silu(g.double() @ dd["to_global_embed.0.weight"].T) @ dd["to_global_embed.2.weight"].T + e
    c = F.silu(ctx @ dd["to_cond_embed.0.weight"].T) @ dd["to_cond_embed.2.weight"].T
    x = x + torch.einsum("oc,bcl->bol", dd["preprocess_conv.weight"][:, :, 0], x)
    h = torch.cat([e[:, None], x.transpose(1, 2) @ dd["transformer.project_in.weight"].T], 1)

    def ln(v, p):
        mu = v.mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(((v - mu) ** 2).mean(-1, keepdim=True) + 1e-5) * dd[p + ".gamma"] + dd[p + ".beta"]

    for i in range(m.cfg.depth):
        p = f"transformer.layers.{i}."
        rows = []
        for b in range(h.shape[0]):
            y = h[b] + ref_self_attention(ln(h[b], p + "pre_norm"), dd[p + "self_attn.to_qkv.weight"],
                                          dd[p + "self_attn.to_out.weight"], H)
            y = y + ref_cross_attention(ln(y, p + "cross_attend_norm"), c[b], dd[p + "cross_attn.to_q.weight"],
                                        dd[p + "cross_attn.to_kv.weight"], dd[p + "cross_attn.to_out.weight"],
                                        H, m.cfg.embed_dim // H)
            a, gate = (ln(y, p + "ff_norm") @ dd[p + "ff.ff.0.proj.weight"].T + dd[p + "ff.ff.0.proj.bias"]).chunk(2, -1)
            rows.append(y + (a * F.silu(gate)) @ dd[p + "ff.ff.2.weight"].T + dd[p + "ff.ff.2.bias"])
        h = torch.stack(rows)
    out = (h @ dd["transformer.project_out.weight"].T)[:, 1:].transpose(1, 2)
    return out + torch.einsum("oc,bcl->bol", dd["postprocess_conv.weight"][:, :, 0], out)


def test_forward_matches_reference(tiny):
    x, t, ctx = inputs()
    with torch.no_grad():
        got = tiny(x, t, ctx)
    torch.testing.assert_close(got.double(), ref_forward(tiny, x, t, ctx), atol=1e-4, rtol=1e-4)
    assert got.shape == x.shape


def test_global_cond_old_semantics_one_token(tiny):
    x, t, ctx = inputs()
    g = torch.randn(2, 16)
    with torch.no_grad():
        both = tiny(x, t, ctx, global_cond=g)
        singles = torch.cat([tiny(x[i:i + 1], t[i:i + 1], ctx[i:i + 1], global_cond=g[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, singles, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.double(), ref_forward(tiny, x, t, ctx, g), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# Caches
# ------------------------------------------------------------------------------------------------
def test_prepare_cache_equals_plain_path(tiny):
    x, t, ctx = inputs()
    with torch.no_grad():
        cache = tiny.prepare(ctx)
        assert cache.active is None
        assert torch.equal(tiny(x, t, ctx), tiny(x, t, None, cond_cache=cache))
        assert torch.equal(tiny(x, t * 0.3, ctx), tiny(x, t * 0.3, None, cond_cache=cache))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_context_rows_skip_is_bit_identical(tiny, dtype):
    m = DiT(tiny_cfg()).to(dtype)
    m.load_state_dict(tiny.state_dict())
    m.eval()
    x, t, ctx = inputs(b=3, length=40, n_ctx=20)
    ctx[1] = 0  # the CFG "uncond" row
    with torch.no_grad():
        skip = m.prepare(ctx)
        full = m.prepare(ctx, skip_zero_rows=False)
        assert skip.active.tolist() == [0, 2] and full.active is None
        a = m(x, t, None, cond_cache=skip)
        b = m(x, t, None, cond_cache=full)
        assert torch.equal(a, b)
        allzero = m.prepare(torch.zeros_like(ctx))
        assert allzero.active.numel() == 0
        assert torch.equal(m(x, t, None, cond_cache=allzero), m(x, t, torch.zeros_like(ctx)))


# ------------------------------------------------------------------------------------------------
# Dtypes, errors, training
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_weights_and_autocast_close_to_fp32(tiny, dtype):
    ref, out16, outac = half_precision_outputs(tiny, lambda: DiT(tiny_cfg()), dtype, *inputs())
    scale = ref.abs().max()
    assert out16.dtype == torch.float32
    assert (out16 - ref).abs().max() < 0.05 * scale
    assert (outac - ref).abs().max() < 0.05 * scale


def test_errors(tiny):
    x, t, ctx = inputs()
    with pytest.raises(InputError, match="64"):
        tiny(torch.randn(2, 32, 10), t, ctx)
    with pytest.raises(InputError, match="128"):
        tiny(x, t, torch.randn(2, 7, 64))
    with pytest.raises(InputError, match="batch"):
        tiny(x, t, ctx[:1])
    with pytest.raises(InputError, match="global_cond"):
        tiny(x, t, ctx, global_cond=torch.randn(2, 5))
    no_g = DiT(tiny_cfg(gdim=0))
    with pytest.raises(InputError, match="global"):
        no_g(x, t, ctx, global_cond=torch.randn(2, 16))


def test_backward_and_gradient_checkpointing(tiny):
    x, t, ctx = inputs()
    g_plain, g_ckpt = checkpointing_grads(DiT(tiny_cfg()), tiny, x, t, ctx)
    assert g_plain.keys() == g_ckpt.keys()
    assert "transformer.layers.0.cross_attn.to_kv.weight" in g_plain and "to_cond_embed.0.weight" in g_plain
    for n in g_plain:
        assert torch.isfinite(g_plain[n]).all()
        torch.testing.assert_close(g_ckpt[n], g_plain[n], atol=1e-6, rtol=1e-5)
