"""Audio-prompt conditioners (v1, v2, mel): manifest keys, log-mel against an independent numpy
implementation, span masking positions and RNG order, v1 empty feature, v2 silence cache, channel
and length handling, dtypes, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiox_core.config import ConditionerSpec, VAEConfig
from audiox_core.conditioning.audio_prompt import (AUDIO_PROMPT_CONDITIONERS, AudioPromptMel, AudioPromptV1,
                                                   AudioPromptV2, htk_mel_filterbank)
from audiox_core.errors import ConfigError, InputError

from conftest import read_manifest, shape_str

PREFIX = "conditioner.conditioners.audio_prompt."


pytestmark = pytest.mark.usefixtures("one_thread")


TINY_VAE = VAEConfig(channels=4, c_mults=(1, 2), strides=(2, 2), encoder_latent_dim=8, latent_dim=4,
                     downsampling_ratio=4).to_pretransform()


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def v1(**kw):
    return randomize(AudioPromptV1({"sample_rate": 86, "pretransform_config": TINY_VAE, **kw}, output_dim=16))


def v2(**kw):
    cfg = {"sample_rate": 8, "pretransform_config": TINY_VAE, "latent_seq_len": 16, **kw}
    return randomize(AudioPromptV2(cfg, output_dim=16))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def wave(b=2, c=2, n=64, seed=1):
    return torch.randn(b, c, n, generator=gen(seed)) * 0.3


def _project_v2(c, z):
    return c.proj_out(c.proj_features_128(z).permute(0, 2, 1))


# ------------------------------------------------------------------------------------------------
# Manifests (full size, meta device)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("manifest,config,cls", [
    ("audiox", "audiox_reconstructed.json", AudioPromptV1),
    ("audiox_maf", "audiox_maf_reconstructed.json", AudioPromptMel),
    ("audiox_maf_mmdit", "audiox_maf_mmdit_reconstructed.json", AudioPromptV2),
    ("audiox_turbo", "audiox_turbo_infer_4step.json", AudioPromptV2),
])
def test_keys_match_manifest(reference_dir, manifest, config, cls):
    d = json.loads((reference_dir / "configs" / config).read_text())
    spec = next(ConditionerSpec(c["id"], c["type"], c.get("config", {}))
                for c in d["model"]["conditioning"]["configs"] if c["id"] == "audio_prompt")
    assert AUDIO_PROMPT_CONDITIONERS[spec.kind] is cls
    rows = [(k[len(PREFIX):], s) for k, s in read_manifest(reference_dir / "manifests" / f"{manifest}.tsv")
            if k.startswith(PREFIX)]
    with torch.device("meta"):
        mod = cls(spec.config, output_dim=d["model"]["conditioning"]["cond_dim"])
    assert [(k, shape_str(v.shape)) for k, v in mod.state_dict().items()] == rows


def test_registry_and_kinds():
    assert set(AUDIO_PROMPT_CONDITIONERS) == {"audio_autoencoder_v1", "audio_autoencoder_v2", "mel_spec"}
    turbo = ConditionerSpec("audio_prompt", "audio_autoencoder", {"latent_seq_len": 215})
    assert turbo.kind == "audio_autoencoder_v2"
    with pytest.raises(ConfigError):
        AudioPromptV2({"latent_seq_len": 4})  # no pretransform_config
    with pytest.raises(ConfigError):
        AudioPromptMel({"mel_spec_type": "vocos"})


# ------------------------------------------------------------------------------------------------
# Mel front end against numpy (float64, explicit framing)
# ------------------------------------------------------------------------------------------------
def np_filterbank(n_freqs, n_mels, sr):
    hz2mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    f_pts = 700.0 * (10.0 ** (np.linspace(hz2mel(0.0), hz2mel(sr // 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, sr // 2, n_freqs)
    fb = np.zeros((n_freqs, n_mels))
    for k in range(n_freqs):
        for m in range(n_mels):
            rise = (freqs[k] - f_pts[m]) / (f_pts[m + 1] - f_pts[m])
            fall = (f_pts[m + 2] - freqs[k]) / (f_pts[m + 2] - f_pts[m + 1])
            fb[k, m] = max(0.0, min(rise, fall))
    return fb


def np_log_mel(x, n_fft, hop, n_mels, sr):
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([xp[i * hop:i * hop + n_fft] * window for i in range(1 + (len(xp) - n_fft) // hop)])
    spec = np.abs(np.fft.rfft(frames, axis=1))
    mel = spec @ np_filterbank(n_fft // 2 + 1, n_mels, sr)
    return np.log(np.maximum(mel, 1e-5)).T


def test_filterbank_against_numpy():
    fb = htk_mel_filterbank(513, 256, 24000).double().numpy()
    ref = np_filterbank(513, 256, 24000)
    np.testing.assert_allclose(fb, ref, atol=5e-5)  # float32 mel points (as torchaudio)
    assert (ref.max(0) == 0).sum() > 0 and ((fb.max(0) == 0) == (ref.max(0) == 0)).all()  # empty filters too


def test_log_mel_against_numpy():
    c = AudioPromptMel({"n_mel_channels": 40, "n_fft": 256, "hop_length": 64, "win_length": 256})
    x = wave(2, 2, 3000, seed=3)
    mel = c.mel(x).double().numpy()
    assert mel.shape == (2, 40, 3000 // 64 + 1)
    for b in range(2):
        ref = np_log_mel(x[b].double().numpy().mean(0), 256, 64, 40, 24000)
        np.testing.assert_allclose(mel[b], ref, atol=2e-4)


# ------------------------------------------------------------------------------------------------
# Span masking
# ------------------------------------------------------------------------------------------------
def expected_spans(g, b, n, lo, hi):
    r = torch.rand(b, generator=g) * (hi - lo) + lo
    out = []
    for i in range(b):
        length = int(n * r[i])
        out.append((int(torch.randint(0, n - length + 1, (1,), generator=g)), length))
    return out


def test_mel_masking_span_and_rng_order():
    c = AudioPromptMel({"n_mel_channels": 8, "n_fft": 64, "hop_length": 16, "win_length": 64})
    with torch.no_grad():  # identity projection: output[..., :8] is the (masked) log-mel
        c.proj_features.weight.zero_()
        c.proj_features.weight[:8].copy_(torch.eye(8))
        c.proj_features.bias.zero_()
    x = wave(3, 1, 1000, seed=2)
    clean = c(x, mask=False)[..., :8]
    out = c(x, generator=gen(9))[..., :8]
    n = 1000 // 16 + 1
    g2 = gen(9)
    spans = expected_spans(g2, 3, n, 0.7, 1.0)
    for i, (begin, length) in enumerate(spans):
        assert 0.7 * n - 1 <= length <= n
        keep = torch.ones(n, dtype=torch.bool)
        keep[begin:begin + length] = False
        assert torch.equal(out[i, ~keep], torch.zeros_like(out[i, ~keep]))
        assert torch.equal(out[i, keep], clean[i, keep])
    g3 = gen(9)
    c(x, generator=g3)
    assert torch.equal(g3.get_state(), g2.get_state())  # exactly rand(B) + B randints consumed
    assert torch.equal(c(x, mask=False), c(x, generator=gen(1), mask=False))


def test_v2_masks_the_waveform_before_the_vae(monkeypatch):
    c = v2(mask_ratio_start=0.25, mask_ratio_end=0.75)
    x = wave(2, 2, 64, seed=4) + 1.0  # no exact zeros in the input
    seen = {}
    orig = c.pretransform.encode

    def spy(a, **kw):
        seen["audio"] = a.clone()
        return orig(a, **kw)
    monkeypatch.setattr(c.pretransform, "encode", spy)
    g = gen(5)
    out = c(x, generator=g)
    g2 = gen(5)
    spans = expected_spans(g2, 2, 64, 0.25, 0.75)
    z = orig(seen["audio"], noise=torch.randn(2, 4, 16, generator=g2))
    assert torch.equal(g.get_state(), g2.get_state())  # order: rand, randint x B, then VAE randn
    torch.testing.assert_close(out, _project_v2(c, z), rtol=0, atol=0)
    for i, (begin, length) in enumerate(spans):
        keep = torch.ones(64, dtype=torch.bool)
        keep[begin:begin + length] = False
        assert (seen["audio"][i][:, ~keep] == 0).all() and torch.equal(seen["audio"][i][:, keep], x[i][:, keep])
    assert x.min() > 0  # caller's tensor untouched
    with pytest.raises(InputError, match="no span masking"):
        v2()(x, mask=True)


# ------------------------------------------------------------------------------------------------
# v1: empty feature
# ------------------------------------------------------------------------------------------------
def test_v1_empty_feature_replacement():
    c = v1()
    with torch.no_grad():
        c.empty_audio_feat.normal_()
    x = wave(3, 2, 860, seed=6)
    x[1] = 0
    out = c(x, generator=gen(2))
    assert out.shape == (3, 215, 16)
    assert torch.equal(out[1], c.empty_audio_feat[0])
    z = c.pretransform.encode(x, generator=gen(2))
    ref = c.proj_out(z.permute(0, 2, 1))
    assert torch.equal(out[0], ref[0]) and torch.equal(out[2], ref[2])
    g = gen(3)
    none = c(None, batch_size=2, generator=g)
    assert torch.equal(none, c.empty_audio_feat.expand(2, -1, -1))
    g2 = gen(3)
    torch.randn(2, 4, 215, generator=g2)
    assert torch.equal(g.get_state(), g2.get_state())  # the skipped VAE's noise is still drawn
    assert torch.equal(c(torch.zeros(2, 1, 860), generator=gen(3)), none)


def test_v1_channels_and_length():
    c = v1()
    mono = wave(1, 1, 860, seed=7)
    a = c(mono, generator=gen(1))
    assert torch.equal(a, c(mono.repeat(1, 2, 1), generator=gen(1)))
    five = torch.cat([mono.repeat(1, 2, 1), wave(1, 3, 860, seed=8)], 1)
    assert torch.equal(a, c(five, generator=gen(1)))  # >2 channels: first two (official)
    assert c.prompt_samples == 860
    long = torch.cat([mono, wave(1, 1, 500, seed=9)], -1)
    assert torch.equal(c(long, generator=gen(1)), a)  # cropped to the first 860 samples
    with pytest.raises(InputError):
        c(mono, mask=True)


# ------------------------------------------------------------------------------------------------
# v2: silence cache, lengths
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("masking", [(0.0, 0.0), (0.25, 0.75)])
def test_v2_silence_cache_equals_uncached_path(masking):
    c = v2(mask_ratio_start=masking[0], mask_ratio_end=masking[1])
    calls = []
    c.pretransform.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    # reference: the official path, written out (masking draws, then a batch VAE encode of zeros)
    g = gen(11)
    if masking[1] > masking[0]:
        expected_spans(g, 2, 64, *masking)
    ref = _project_v2(c, c.pretransform.encode(torch.zeros(2, 2, 64), generator=g))
    calls.clear()
    outs = [c(None, batch_size=2, generator=gen(11)) for _ in range(3)]
    assert len(calls) == 1  # encoder ran once, then the cached moments were reused
    outs.append(c(torch.zeros(2, 1, 64), generator=gen(11)))
    c.use_silence_cache = False
    outs.append(c(None, batch_size=2, generator=gen(11)))
    for o in outs:
        assert torch.equal(o, ref)
    c.use_silence_cache = True
    with torch.no_grad():  # new VAE weights invalidate the cache
        c.pretransform.model.encoder.layers[0].bias.add_(0.1)
    calls.clear()
    assert not torch.equal(c(None, batch_size=2, generator=gen(11)), ref) and len(calls) == 1


def test_v2_lengths_and_channels(monkeypatch):
    c = v2()
    assert c.prompt_samples == 64 and c.num_tokens() == 128
    x = wave(1, 2, 100, seed=12)
    out = c(x, generator=gen(1))
    assert out.shape == (1, 128, 16)
    assert torch.equal(out, c(x[..., :64], generator=gen(1)))
    short = wave(1, 1, 40, seed=13)
    assert torch.equal(c(short, generator=gen(1)), c(F.pad(short, (0, 24)).repeat(1, 2, 1), generator=gen(1)))
    lengths = []
    orig = c.pretransform.encode
    monkeypatch.setattr(c.pretransform, "encode", lambda a, **kw: (lengths.append(a.shape[-1]), orig(a, **kw))[1])
    c(wave(1, 2, 67, seed=14), generator=gen(1))  # 67 // 4 == 16 frames: used as given (official)
    assert lengths == [67]
    with torch.device("meta"):
        turbo = AudioPromptV2({"pretransform_config": VAEConfig().to_pretransform(), "latent_seq_len": 215}, 768)
        mmdit = AudioPromptV2({"pretransform_config": VAEConfig().to_pretransform(), "latent_seq_len": 237}, 768)
    assert turbo.prompt_samples == 441000 and mmdit.prompt_samples == 237 * 2048


def test_bf16_projections_with_fp32_vae():
    c = v2(mask_ratio_start=0.25, mask_ratio_end=0.75)
    ref = c(wave(2, 2, 64), generator=gen(3))
    c.proj_out.to(torch.bfloat16)
    c.proj_features_128.to(torch.bfloat16)
    out = c(wave(2, 2, 64).to(torch.bfloat16).float(), generator=gen(3))
    assert out.dtype == torch.bfloat16 and c.pretransform.param_dtype == torch.float32
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05


def test_training_gradients_reach_projections():
    c = v1()
    c.train()
    x = wave(2, 2, 860)
    x[0] = 0
    c(x, generator=gen(0)).square().mean().backward()
    assert c.empty_audio_feat.grad.abs().sum() > 0 and c.proj_out.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Errors and shapes
# ------------------------------------------------------------------------------------------------
def test_bad_inputs():
    c2, cm = v2(), AudioPromptMel({"n_mel_channels": 8})
    with pytest.raises(InputError, match="NaN"):
        c2(torch.full((1, 2, 64), float("nan")))
    with pytest.raises(InputError, match=r"\[B, C, N\]"):
        c2(torch.zeros(2, 64))
    with pytest.raises(InputError, match="batch_size"):
        c2(wave(2, 2, 64), batch_size=3)
    with pytest.raises(InputError, match="empty"):
        c2(torch.zeros(1, 2, 0))
    with pytest.raises(InputError, match="at least 513"):
        cm(torch.zeros(1, 2, 500))
    with pytest.raises(InputError, match="floating"):
        cm(torch.zeros(1, 2, 600, dtype=torch.int16))


def test_mel_shapes_and_silence():
    c = AudioPromptMel({"n_mel_channels": 8})
    assert c(None, batch_size=2, mask=False).shape == (2, 441000 // 256 + 1, 768)
    assert c(wave(1, 2, 5000), mask=False).shape == (1, 5000 // 256 + 1, 768)
    silence = c(torch.zeros(1, 1, 441000), generator=gen(4))
    assert torch.equal(c(None, generator=gen(4)), silence)
    assert math.isclose(c.mel(torch.zeros(1, 2, 1000))[0, 0, 0].item(), math.log(1e-5), rel_tol=1e-6)
