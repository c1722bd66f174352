"""Oobleck VAE: manifest keys, formulas against explicit numpy loops (weight norm, SnakeBeta,
bottleneck), lengths, receptive field, chunking error bounds, fast (in-place, blocked, cached) path
== autograd path, dtype handling, training, save/load."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import audiox_core.models.vae as vae_mod
from audiox_core.config import VAEConfig
from audiox_core.errors import InputError, Interrupted
from audiox_core.models.vae import (Pretransform, SnakeBeta, VAEBottleneck, WNConv1d, WNConvTranspose1d,
                                    receptive_field)

from conftest import read_manifest, shape_str

MANIFESTS = ["audiox", "audiox_maf", "audiox_maf_mmdit", "audiox_turbo"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**kw) -> VAEConfig:
    d = dict(channels=4, c_mults=(1, 2), strides=(2, 2), encoder_latent_dim=8, latent_dim=4, downsampling_ratio=4)
    d.update(kw)
    return VAEConfig(**d)


def randomize(module, seed=0):
    """Random weights at a realistic scale (g around ||v||, snake alpha/beta around 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("weight_v"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module


@pytest.fixture(scope="module")
def tiny():
    return randomize(Pretransform(tiny_cfg())).eval()


def audio(b=1, n=400, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 50.0
    base = 0.4 * torch.sin(2 * math.pi * t) + 0.2 * torch.sin(2 * math.pi * 7.3 * t)
    return (base + 0.1 * torch.randn(b, 2, n, generator=g)).float()


# ------------------------------------------------------------------------------------------------
# Manifests (full size, meta device)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MANIFESTS)
def test_full_size_keys_match_manifest(reference_dir, name):
    rows = [(k[len("pretransform."):], s) for k, s in read_manifest(reference_dir / "manifests" / f"{name}.tsv")
            if k.startswith("pretransform.model.")]
    assert len(rows) == 365
    with torch.device("meta"):
        pt = Pretransform(VAEConfig())
    got = [(k, shape_str(v.shape)) for k, v in pt.state_dict().items()]
    assert got == rows
    assert sum(v.numel() for v in pt.parameters()) == 156_112_514


def test_config_block_builds_same_layout(reference_dir):
    cfg = json.loads((reference_dir / "configs" / "audiox_turbo_infer_4step.json").read_text())
    vcfg = VAEConfig.from_pretransform(cfg["model"]["pretransform"])
    with torch.device("meta"):
        a, b = Pretransform(vcfg), Pretransform(VAEConfig())
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    assert receptive_field(vcfg.strides) == (8, 10)


# ------------------------------------------------------------------------------------------------
# Formulas against explicit loops
# ------------------------------------------------------------------------------------------------
def _np_weight(g, v):
    w = np.empty_like(v)
    for o in range(v.shape[0]):
        w[o] = g[o, 0, 0] * v[o] / math.sqrt(float((v[o].astype(np.float64) ** 2).sum()))
    return w


def test_wnconv1d_formula_and_conv():
    torch.manual_seed(0)
    conv = WNConv1d(3, 5, 4, stride=2, padding=2, dilation=1)
    randomize(conv)
    g, v, b = (p.detach().numpy().astype(np.float64) for p in (conv.weight_g, conv.weight_v, conv.bias))
    w = _np_weight(g, v)
    x = torch.randn(2, 3, 11)
    xp = np.pad(x.numpy().astype(np.float64), ((0, 0), (0, 0), (2, 2)))
    n_out = (11 + 4 - 4) // 2 + 1
    ref = np.zeros((2, 5, n_out))
    for bi in range(2):
        for o in range(5):
            for j in range(n_out):
                ref[bi, o, j] = b[o] + sum(w[o, i, k] * xp[bi, i, j * 2 + k] for i in range(3) for k in range(4))
    with torch.no_grad():
        np.testing.assert_allclose(conv.fused_weight().numpy(), w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(conv(x).numpy(), ref, rtol=1e-4, atol=1e-5)
        # internal channels-last [B, C, 1, N] layout gives the same numbers
        x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        np.testing.assert_allclose(conv(x4).squeeze(2).numpy(), ref, rtol=1e-4, atol=1e-5)
    assert [k for k, _ in conv.named_parameters()] == ["bias", "weight_g", "weight_v"]


def test_wnconvtranspose_formula_and_conv():
    conv = randomize(WNConvTranspose1d(3, 2, 4, stride=2, padding=1), seed=3)
    assert tuple(conv.weight_g.shape) == (3, 1, 1) and tuple(conv.weight_v.shape) == (3, 2, 4)
    g, v, b = (p.detach().numpy().astype(np.float64) for p in (conv.weight_g, conv.weight_v, conv.bias))
    w = _np_weight(g, v)  # norm over (out, k) per input channel
    x = torch.randn(1, 3, 6)
    full = np.zeros((1, 2, (6 - 1) * 2 + 4))
    for i in range(3):
        for n in range(6):
            for o in range(2):
                for k in range(4):
                    full[0, o, n * 2 + k] += x[0, i, n].item() * w[i, o, k]
    ref = full[:, :, 1:1 + 12] + b[None, :, None]
    with torch.no_grad():
        np.testing.assert_allclose(conv(x).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_weight_cache_is_invalidated_and_training_gets_gradients():
    conv = randomize(WNConv1d(3, 4, 3, padding=1))
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        y0 = conv(x)
        assert conv._cache is not None
        cached = conv._cache[1]
        conv.weight_g.mul_(2.0)  # in-place change bumps the version -> recomputed
        y1 = conv(x)
        assert conv._cache[1] is not cached
        torch.testing.assert_close(y1 - conv.bias.view(1, -1, 1), 2 * (y0 - conv.bias.view(1, -1, 1)))
        sd = {k: v.clone() for k, v in conv.state_dict().items()}
        sd["weight_v"] = torch.randn_like(sd["weight_v"])
        conv.load_state_dict(sd)
        assert conv._cache is None
        torch.testing.assert_close(conv(x), F.conv1d(x, conv.fused_weight(), conv.bias, padding=1))
    conv.train()
    y = conv(x)
    y.square().sum().backward()
    assert conv.weight_g.grad is not None and conv.weight_v.grad.abs().sum() > 0


def test_snakebeta_formula_fast_and_inplace():
    act = randomize(SnakeBeta(3))
    x = torch.randn(2, 3, 7)
    a, b = act.alpha.detach().double().numpy(), act.beta.detach().double().numpy()
    xn = x.double().numpy()
    ref = np.empty_like(xn)
    for c in range(3):
        ref[:, c] = xn[:, c] + 1.0 / (math.exp(b[c]) + 1e-9) * np.sin(math.exp(a[c]) * xn[:, c]) ** 2
    slow = act(x)  # parameters require grad -> autograd formula
    with torch.no_grad():
        fast = act(x)
        xi = x.clone()
        out = act(xi, inplace=True)
    assert out.data_ptr() == xi.data_ptr()
    np.testing.assert_allclose(slow.detach().double().numpy(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(fast, slow.detach()) and torch.equal(xi, fast)


def test_bottleneck_formula_given_noise(tiny):
    x = audio(2, 64)
    noise = torch.randn(2, 4, 16)
    with torch.no_grad():
        h = tiny.encode_features(x).double().numpy()
        z = tiny.encode(x, noise=noise).double().numpy()
        zmean = tiny.encode(x, sample=False).double().numpy()
    mean, scale = h[:, :4], h[:, 4:]
    std = np.log1p(np.exp(scale)) + 1e-4
    np.testing.assert_allclose(z, noise.double().numpy() * std + mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zmean, mean, rtol=1e-6, atol=1e-7)
    # the generator path draws exactly one randn of the latent shape
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    with torch.no_grad():
        za = tiny.encode(x, generator=g1)
        zb = tiny.encode(x, noise=torch.randn(2, 4, 16, generator=g2))
    assert torch.equal(za, zb) and torch.equal(g1.get_state(), g2.get_state())
    m, s = VAEBottleneck.moments(torch.tensor([[[0.5], [-30.0]]]))
    assert s.item() == pytest.approx(1e-4, rel=1e-3) and m.item() == 0.5


def test_scale_divides_encode_and_multiplies_decode():
    a = randomize(Pretransform(tiny_cfg()))
    b = Pretransform(tiny_cfg(scale=2.0))
    b.load_state_dict(a.state_dict())
    x, z = audio(1, 64), torch.randn(1, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(b.encode(x, sample=False), a.encode(x, sample=False) / 2)
        torch.testing.assert_close(b.decode(z), a.decode(2 * z))


# ------------------------------------------------------------------------------------------------
# Shapes, receptive field, chunking
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 7, 64, 66, 401])
def test_encode_length_is_floor_n_over_ratio(tiny, n):
    with torch.no_grad():
        assert tuple(tiny.encode(audio(2, n)).shape) == (2, 4, n // 4)


@pytest.mark.parametrize("length", [1, 3, 50])
def test_decode_length_is_l_times_ratio(tiny, length):
    with torch.no_grad():
        assert tuple(tiny.decode(torch.randn(2, 4, length)).shape) == (2, 2, length * 4)


def test_full_size_lengths_on_meta():
    with torch.device("meta"):
        pt = Pretransform(VAEConfig())
        assert tuple(pt.model.encoder(torch.empty(1, 2, 441000)).shape) == (1, 128, 215)
        assert tuple(pt.model.decoder(torch.empty(1, 64, 236)).shape) == (1, 2, 236 * 2048)


def test_receptive_field_is_exact_impulse(tiny):
    r_enc, r_dec = tiny.receptive_field()
    assert (r_enc, r_dec) == receptive_field((2, 2)) == (32, 34)
    z = torch.randn(1, 4, 120)
    with torch.no_grad():
        y0 = tiny.decode(z)
        z2 = z.clone()
        z2[..., 60] += 1.0
        changed = ((tiny.decode(z2) - y0).abs().amax(1)[0] > 0).nonzero().flatten()
    frames = changed // 4
    assert frames.min().item() >= 60 - r_dec and frames.max().item() <= 60 + r_dec
    assert frames.min().item() == 60 - r_dec or frames.max().item() == 60 + r_dec  # the bound is reached
    x = audio(1, 480)
    with torch.no_grad():
        h0 = tiny.encode_features(x)
        x2 = x.clone()
        x2[..., 60 * 4 + 1] += 0.5
        lat = ((tiny.encode_features(x2) - h0).abs().amax(1)[0] > 0).nonzero().flatten()
    assert lat.min().item() >= 60 - r_enc and lat.max().item() <= 60 + r_enc
    assert lat.min().item() == 60 - r_enc or lat.max().item() == 60 + r_enc


def test_chunked_matches_unchunked(tiny):
    """Default overlap = 2 x receptive field -> seams are exact up to float rounding.

    Measured on the full-size VAE (random weights, 10 s of tones + noise, chunk 128 latents):
    decode max-abs 2.2e-7 (1.7e-6 of the peak) and encode 2.4e-7 (1.8e-6) with overlap 20 or 32;
    overlap 16 (trim 8 < 10) gives 5.5e-5 on decode.  Asserted here on the tiny VAE: <= 1e-5 x peak.
    """
    z = torch.randn(2, 4, 330)
    x = audio(2, 330 * 4 + 3)
    steps = []
    with torch.no_grad():
        y0 = tiny.decode(z)
        y1 = tiny.decode(z, chunked=True, chunk_size=100, callback=lambda s, t, i: steps.append((s, t)))
        m0, s0 = tiny.encode_moments(x)
        m1, s1 = tiny.encode_moments(x, chunked=True, chunk_size=100)
        y_bad = tiny.decode(z, chunked=True, chunk_size=100, overlap=4)
    assert tiny.default_overlap == 68
    assert y1.shape == y0.shape and m1.shape == m0.shape
    assert (y1 - y0).abs().max().item() <= 1e-5 * y0.abs().max().item()
    assert (m1 - m0).abs().max().item() <= 1e-5 * m0.abs().max().item()
    assert (s1 - s0).abs().max().item() <= 1e-5 * s0.abs().max().item()
    assert (y_bad - y0).abs().max().item() > 1e-3 * y0.abs().max().item()  # seams do matter
    n_chunks = len(list(Pretransform._chunks(330, 100, 68)))
    assert n_chunks == 9 and steps == [(i, 2 * n_chunks) for i in range(1, 2 * n_chunks + 1)]


def test_chunk_plan_covers_every_frame_once():
    for total, size, ov in [(10, 4, 2), (330, 100, 68), (129, 128, 20), (1000, 128, 20), (50, 128, 20)]:
        plan = list(Pretransform._chunks(total, size, ov))
        cover = [f for s, lo, hi in plan for f in range(lo, hi)]
        assert cover == list(range(total))
        for s, lo, hi in plan:
            first, last = lo == 0, hi == total
            assert s <= lo and hi <= s + size
            assert first or lo - s >= ov // 2
            assert last or s + size - hi >= ov // 2
    with pytest.raises(InputError):
        list(Pretransform._chunks(100, 10, 10))


def test_callback_can_interrupt(tiny):
    def stop(step, total, info):
        raise Interrupted("stop")
    with torch.no_grad(), pytest.raises(Interrupted):
        tiny.decode(torch.randn(1, 4, 300), chunked=True, chunk_size=100, callback=stop)


@pytest.mark.slow
def test_full_size_chunked_decode_error():
    torch.manual_seed(0)
    pt = Pretransform(VAEConfig()).eval()
    z = torch.randn(1, 64, 215)
    with torch.no_grad():
        y0 = pt.decode(z)
        y1 = pt.decode(z, chunked=True, chunk_size=128)
    assert (y1 - y0).abs().max().item() <= 1e-5 * y0.abs().max().item()


# ------------------------------------------------------------------------------------------------
# Fast path == autograd path; dtype; training; save/load
# ------------------------------------------------------------------------------------------------
def test_blocked_inplace_path_equals_autograd_path(tiny, monkeypatch):
    monkeypatch.setattr(vae_mod, "_BLOCK_ELEMS", 40)  # blocks of 10 steps at 4 channels
    x = audio(1, 256)
    z = torch.randn(1, 4, 30)
    with torch.no_grad():
        fast_e, fast_d = tiny.encode_features(x), tiny.decode(z)
    xg = x.clone().requires_grad_(True)
    zg = z.clone().requires_grad_(True)
    slow_e, slow_d = tiny.encode_features(xg), tiny.decode(zg)
    assert slow_e.requires_grad and slow_d.requires_grad  # the autograd formula really ran
    torch.testing.assert_close(fast_e, slow_e.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_d, slow_d.detach(), rtol=1e-5, atol=1e-6)
    assert x.requires_grad is False and torch.equal(x, audio(1, 256))  # input untouched


def test_input_is_never_modified(tiny):
    x, z = audio(2, 64), torch.randn(2, 4, 9)
    xc, zc = x.clone(), z.clone()
    with torch.no_grad():
        tiny.encode(x)
        tiny.decode(z)
        tiny.model.decoder.layers[1](torch.randn(1, 8, 1, 5).contiguous(memory_format=torch.channels_last))
    assert torch.equal(x, xc) and torch.equal(z, zc)


def test_fp32_vae_inside_bf16_model(tiny):
    z = torch.randn(1, 4, 12)
    with torch.no_grad():
        ref = tiny.decode(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny.decode(z.to(torch.bfloat16))
        enc = tiny.encode(audio(1, 48).to(torch.bfloat16), sample=False)
    assert out.dtype == torch.float32 and enc.dtype == torch.float32
    torch.testing.assert_close(out, tiny.decode(z.to(torch.bfloat16).float()))
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()  # only the bf16 rounding of the input


def test_forward_backward_tiny():
    pt = randomize(Pretransform(tiny_cfg())).train()
    assert not any(p.requires_grad for p in pt.parameters())  # frozen by default, as the official
    pt.requires_grad_(True)
    x = audio(2, 64).requires_grad_(True)
    z = pt.encode(x, generator=torch.Generator().manual_seed(0))
    y = pt.decode(z)
    loss = (y - x.detach()).square().mean() + VAEBottleneck.kl(*pt.encode_moments(x)) * 1e-3
    loss.backward()
    grads = {k: p.grad for k, p in pt.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["model.encoder.layers.0.weight_v"].abs().sum() > 0
    assert grads["model.decoder.layers.1.layers.0.alpha"].abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_save_load_bit_exact(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    save_file(tiny.state_dict(), str(tmp_path / "vae.safetensors"))
    fresh = Pretransform(tiny_cfg())
    fresh.load_state_dict(load_file(str(tmp_path / "vae.safetensors")))
    buf = io.BytesIO()
    torch.save({"state_dict": {k[len("model."):]: v for k, v in tiny.state_dict().items()}}, buf)
    buf.seek(0)
    bare = Pretransform(tiny_cfg())
    bare.load_state_dict(torch.load(buf, weights_only=True)["state_dict"])  # VAE.ckpt layout
    z, x = torch.randn(1, 4, 20), audio(1, 80)
    with torch.no_grad():
        for m in (fresh, bare):
            assert torch.equal(m.decode(z), tiny.decode(z))
            assert torch.equal(m.encode(x, sample=False), tiny.encode(x, sample=False))


def test_meta_then_assign_load(tiny):
    with torch.device("meta"):
        pt = Pretransform(tiny_cfg())
    pt.load_state_dict({k: v.clone() for k, v in tiny.state_dict().items()}, assign=True)
    z = torch.randn(1, 4, 6)
    with torch.no_grad():
        assert torch.equal(pt.decode(z), tiny.decode(z))


def test_bad_inputs(tiny):
    with pytest.raises(InputError, match="channels"):
        tiny.encode(torch.zeros(1, 3, 64))
    with pytest.raises(InputError, match="NaN"):
        tiny.decode(torch.full((1, 4, 3), float("nan")))
    with pytest.raises(InputError, match="at least 4"):
        tiny.encode(torch.zeros(1, 2, 3))
    with pytest.raises(InputError, match=r"\[B, 4, T\]"):
        tiny.decode(torch.zeros(4, 3))
    with pytest.raises(InputError, match="noise"):
        tiny.encode(audio(1, 64), noise=torch.zeros(1, 4, 3))


def test_bad_configs():
    from audiox_core.errors import ConfigError
    with pytest.raises(ConfigError, match="downsampling_ratio"):
        Pretransform(tiny_cfg(downsampling_ratio=8))
    with pytest.raises(ConfigError, match="2 x latent_dim"):
        Pretransform(tiny_cfg(encoder_latent_dim=6))
    with pytest.raises(ConfigError, match="equally long"):
        Pretransform(tiny_cfg(c_mults=(1, 2, 4)))
