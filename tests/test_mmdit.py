"""MMDiT backbone: manifest keys, every official quirk against hand computations, caches, dtypes,
training paths.  Tiny configs; the reference computations are written independently of the
implementation (explicit per-head loops, float64, F.conv1d, explicit pairs)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audiox_core.config import AudioXConfig, BackboneConfig
from audiox_core.errors import InputError
from audiox_core.models.blocks import ChannelLastConv1d, gptj_rope_table, apply_gptj_rope
from audiox_core.models.mmdit import MMDiT, conv_mlp_hidden

from conftest import checkpointing_grads, half_precision_outputs, read_manifest, shape_str

LX = 9  # tiny latent_seq_len: 1 time token + 8 latents


def tiny_cfg(embed=64, heads=4, depth=2, lx=LX) -> BackboneConfig:
    return BackboneConfig(type="mmdit", embed_dim=embed, depth=depth, num_heads=heads, cond_token_dim=768,
                          global_cond_dim=16, latent_seq_len=lx)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan = p[0].numel() if p.dim() > 1 else 25
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan))
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize(MMDiT(tiny_cfg())).eval()


def inputs(b=2, lx=LX, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 64, lx - 1, generator=g), torch.rand(b, generator=g),
            torch.randn(b, 384, 768, generator=g))


# ------------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,config", [("audiox_maf_mmdit", "audiox_maf_mmdit_reconstructed.json"),
                                            ("audiox_turbo", "audiox_turbo_infer_4step.json")])
def test_full_size_keys_match_manifest(reference_dir, variant, config):
    cfg = AudioXConfig.from_json(reference_dir / "configs" / config).backbone
    with torch.device("meta"):
        m = MMDiT(cfg)
    prefix = "model.model."
    want = [(k[len(prefix):], s) for k, s in read_manifest(reference_dir / "manifests" / f"{variant}.tsv")
            if k.startswith(prefix)]
    got = [(k, shape_str(v.shape)) for k, v in m.state_dict().items()]
    assert got == want
    assert m.transformer.nheads == 64 and m.transformer.head_dim == 24


# ------------------------------------------------------------------------------------------------
# Hand computations
# ------------------------------------------------------------------------------------------------
def test_head_count_quirk():
    m = MMDiT(tiny_cfg(embed=64, heads=4))
    assert (m.transformer.nheads, m.transformer.head_dim) == (16, 4)
    assert m.transformer.layers[0].attn.nheads == 16
    assert conv_mlp_hidden(1536, 4.0) == 4096 and conv_mlp_hidden(64, 4.0) == 256
    assert m.transformer.layers[0].ffn.w1.weight.shape == (256, 64, 3)


def test_gptj_rope_explicit_pairs():
    n, d = 7, 6
    x = torch.randn(2, n, d, dtype=torch.float64)
    got = apply_gptj_rope(x.float(), gptj_rope_table(n, d)).double()
    want = x.clone()
    for pos in range(n):
        for f in range(d // 2):
            a = pos * 10000.0 ** (-2 * f / d)
            x0, x1 = x[:, pos, 2 * f], x[:, pos, 2 * f + 1]
            want[:, pos, 2 * f] = x0 * math.cos(a) - x1 * math.sin(a)
            want[:, pos, 2 * f + 1] = x0 * math.sin(a) + x1 * math.cos(a)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _rms(v):
    return v / torch.sqrt((v * v).mean(-1, keepdim=True) + 1e-6)


def ref_self_attention(x, w, b, nheads):
    """Per-head loop with the interleaved (h d j) channel index (h·d + i)·3 + j."""
    x, w, b = x.double(), w.double(), b.double()
    n, dim = x.shape
    d = dim // nheads
    qkv = x @ w.T + b
    out = torch.zeros(n, dim, dtype=torch.float64)
    pos = torch.arange(n, dtype=torch.float64)
    for h in range(nheads):
        q, k, v = (qkv[:, [(h * d + i) * 3 + j for i in range(d)]] for j in range(3))
        q, k = _rms(q), _rms(k)
        for t in (q, k):
            for f in range(d // 2):
                a = pos * 10000.0 ** (-2 * f / d)
                e, o = t[:, 2 * f].clone(), t[:, 2 * f + 1].clone()
                t[:, 2 * f] = e * torch.cos(a) - o * torch.sin(a)
                t[:, 2 * f + 1] = e * torch.sin(a) + o * torch.cos(a)
        att = torch.softmax(q @ k.T / math.sqrt(d), dim=-1)
        out[:, h * d:(h + 1) * d] = att @ v
    return out


def test_self_attention_interleaved_split_rms_rope(tiny):
    attn = tiny.transformer.layers[0].attn
    x = torch.randn(1, LX, 64)
    got = attn(x, tiny.rope_table(LX, x.device))[0].double()
    want = ref_self_attention(x[0], attn.qkv.weight, attn.qkv.bias, nheads=16)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_cross_attention_is_broadcast_rmsnorm_of_k_half(tiny):
    """Compute the official swapped-K/V attention with a real softmax and compare."""
    ca = tiny.transformer.layers[0].cross_attn
    h, d = ca.nheads, ca.head_dim
    x = torch.randn(1, LX, 64, dtype=torch.float64)
    tok = torch.randn(1, 1, 64)
    kv = tok[0].double() @ ca.to_kv.weight.double().T  # [1, 2D]
    q_all = x[0] @ ca.to_q.weight.double().T
    want = torch.zeros(LX, 64, dtype=torch.float64)
    for head in range(h):
        k = kv[:, [(head * d + i) * 2 + 0 for i in range(d)]]
        v = kv[:, [(head * d + i) * 2 + 1 for i in range(d)]]
        q = _rms(q_all[:, head * d:(head + 1) * d])
        keys, values = v, _rms(k)  # the official unpacks (q, v, k): raw v are the keys
        att = torch.softmax(q @ keys.T / math.sqrt(d), dim=-1)  # one key → weights exactly 1
        want[:, head * d:(head + 1) * d] = att @ values
    got = ca(tok).double().expand(1, LX, 64)[0]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k,c_in,c_out,bias", [(3, 16, 24, True), (3, 8, 8, False), (5, 6, 4, True), (1, 8, 5, True)])
def test_conv_as_gemm_equals_conv1d(k, c_in, c_out, bias):
    conv = ChannelLastConv1d(c_in, c_out, k, padding=(k - 1) // 2, bias=bias)
    x = torch.randn(3, 11, c_in)
    want = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=(k - 1) // 2).transpose(1, 2)
    torch.testing.assert_close(conv(x), want, atol=1e-5, rtol=1e-5)


def test_im2col_layout_and_short_sequences():
    conv = ChannelLastConv1d(2, 3, 5, padding=2)
    x = torch.arange(1, 7, dtype=torch.float32).view(1, 3, 2)  # L=3 < K=5
    cols = conv.im2col(x).view(3, 2, 5)
    for t in range(3):
        for c in range(2):
            for j in range(5):
                src = t + j - 2
                assert cols[t, c, j] == (x[0, src, c] if 0 <= src < 3 else 0)
    want = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=2).transpose(1, 2)
    torch.testing.assert_close(conv(x), want)


def test_conv_mlp_shared_im2col_respects_wrapping(tiny):
    """The w1/w3 shared-im2col shortcut must give way to hooks/wrappers (LoRA)."""
    ffn = tiny.transformer.layers[0].ffn
    x = torch.randn(2, LX, 64)
    with torch.no_grad():
        plain = ffn(x)
        ref = ffn.w2(F.silu(ffn.w1(x)) * ffn.w3(x))
        torch.testing.assert_close(plain, ref, atol=1e-6, rtol=1e-6)
        h = ffn.w3.register_forward_hook(lambda mod, inp, out: out * 2)
        try:
            hooked = ffn(x)
        finally:
            h.remove()
        torch.testing.assert_close(hooked, ffn.w2(F.silu(ffn.w1(x)) * ffn.w3(x) * 2), atol=1e-6, rtol=1e-6)


def test_conv_fallback_other_configs():
    conv = ChannelLastConv1d(4, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 9, 4)
    want = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, stride=2, padding=1).transpose(1, 2)
    torch.testing.assert_close(conv(x), want)


def ref_forward(m: MMDiT, x, t, ctx):
    """Whole backbone, float64, written from the spec with explicit ops."""
    dd = {k: v.double() for k, v in m.state_dict().items()}
    tr = "transformer."
    x, t, ctx = x.double(), t.double(), ctx.double()
    dim, nheads = m.cfg.embed_dim, m.transformer.nheads
    f = 2 * math.pi * t[:, None] * dd["timestep_features.weight"][:, 0][None]
    e = torch.cat([torch.cos(f), torch.sin(f)], -1)
    e = F.silu(e @ dd["to_timestep_embed.0.weight"].T + dd["to_timestep_embed.0.bias"])
    e = e @ dd["to_timestep_embed.2.weight"].T + dd["to_timestep_embed.2.bias"]  # [B, D]
    x = x + torch.einsum("oc,bcl->bol", dd["preprocess_conv.weight"][:, :, 0], x)
    h = torch.cat([e[:, None], x.transpose(1, 2) @ dd[tr + "project_in.weight"].T], 1)
    mm = ctx @ dd[tr + "proj_mm_tokens.weight"].T + dd[tr + "proj_mm_tokens.bias"]  # [B, 384, D]
    mm = torch.einsum("bsd,ls->bld", mm, dd[tr + "proj_mm_seq_len.weight"]) + dd[tr + "proj_mm_seq_len.bias"][None, :, None]

    def ln(v):
        mu = v.mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(((v - mu) ** 2).mean(-1, keepdim=True) + 1e-5)

    def conv(v, w, b=None):  # channel-last conv, k=3, pad 1, via F.conv1d
        return F.conv1d(v.transpose(1, 2), w, b, padding=1).transpose(1, 2)

    for i in range(m.cfg.depth):
        p = f"{tr}layers.{i}."
        mod = F.silu(mm) @ dd[p + "adaLN_modulation.1.weight"].T + dd[p + "adaLN_modulation.1.bias"]
        s1, c1, g1, s2, c2, g2 = mod.chunk(6, -1)
        a = ln(h) * (1 + c1) + s1
        att = torch.stack([ref_self_attention(a[b], dd[p + "attn.qkv.weight"], dd[p + "attn.qkv.bias"], nheads)
                           for b in range(a.shape[0])])
        h = h + conv(att, dd[p + "linear1.weight"], dd[p + "linear1.bias"]) * g1
        kv = e @ dd[p + "cross_attn.to_kv.weight"].T  # [B, 2D]
        k = kv.view(kv.shape[0], nheads, dim // nheads, 2)[..., 0]
        h = h + _rms(k).reshape(-1, 1, dim)
        r = ln(h) * (1 + c2) + s2
        y = conv(F.silu(conv(r, dd[p + "ffn.w1.weight"])) * conv(r, dd[p + "ffn.w3.weight"]), dd[p + "ffn.w2.weight"])
        h = h + y * g2
    out = (h @ dd[tr + "project_out.weight"].T)[:, 1:].transpose(1, 2)
    return out + torch.einsum("oc,bcl->bol", dd["postprocess_conv.weight"][:, :, 0], out)


def test_forward_matches_reference(tiny):
    x, t, ctx = inputs()
    with torch.no_grad():
        got = tiny(x, t, ctx)
    torch.testing.assert_close(got.double(), ref_forward(tiny, x, t, ctx), atol=1e-4, rtol=1e-4)
    assert got.shape == x.shape and got.dtype == x.dtype


def test_to_cond_embed_not_applied(tiny):
    x, t, ctx = inputs()
    m = MMDiT(tiny_cfg())
    m.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        m.to_cond_embed[0].weight.mul_(3.0)
        torch.testing.assert_close(m(x, t, ctx), tiny(x, t, ctx), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------
# Caches, dtypes, errors
# ------------------------------------------------------------------------------------------------
def test_prepare_cache_equals_plain_path(tiny):
    x, t, ctx = inputs()
    ctx = torch.cat([ctx[:1], torch.zeros_like(ctx[:1])])  # a CFG batch
    with torch.no_grad():
        cache = tiny.prepare(ctx)
        a = tiny(x, t, ctx)
        b = tiny(x, t, None, cond_cache=cache)
        c = tiny(x, t * 0.5, None, cond_cache=cache)  # the cache does not depend on t
        d = tiny(x, t * 0.5, ctx)
    assert torch.equal(a, b) and torch.equal(c, d)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_weights_and_autocast_close_to_fp32(tiny, dtype):
    ref, out16, outac = half_precision_outputs(tiny, lambda: MMDiT(tiny_cfg()), dtype, *inputs())
    assert out16.dtype == torch.float32 and outac.dtype == torch.float32
    scale = ref.abs().max()
    assert (out16 - ref).abs().max() < 0.05 * scale
    assert (outac - ref).abs().max() < 0.05 * scale


def test_errors(tiny):
    x, t, ctx = inputs()
    with pytest.raises(InputError, match=r"10.*9|9.*10"):
        tiny(torch.randn(2, 64, 9), t, ctx)
    with pytest.raises(InputError, match="384"):
        tiny(x, t, ctx[:, :100])
    with pytest.raises(InputError, match="global"):
        tiny(x, t, ctx, global_cond=torch.randn(2, 16))
    with pytest.raises(InputError, match="batch"):
        tiny(x, t, None, cond_cache=tiny.prepare(ctx[:1]))


def test_meta_construction_has_no_data():
    with torch.device("meta"):
        m = MMDiT(tiny_cfg())
    assert all(p.is_meta for p in m.parameters())


# ------------------------------------------------------------------------------------------------
# Training paths
# ------------------------------------------------------------------------------------------------
def test_backward_and_gradient_checkpointing(tiny):
    x, t, ctx = inputs()
    g_plain, g_ckpt = checkpointing_grads(MMDiT(tiny_cfg()), tiny, x, t, ctx)
    assert g_plain.keys() == g_ckpt.keys()
    for n in g_plain:
        assert torch.isfinite(g_plain[n]).all()
        torch.testing.assert_close(g_ckpt[n], g_plain[n], atol=1e-6, rtol=1e-5)
    # to_q never influences the output (softmax over one key); to_cond_embed is unused
    assert not any(".cross_attn.to_q." in n or n.startswith("to_cond_embed") for n in g_plain)
    assert "transformer.layers.0.ffn.w2.weight" in g_plain and "transformer.proj_mm_seq_len.weight" in g_plain
