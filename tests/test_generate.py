"""End-to-end generation on tiny random models: plumbing, call counts, masks, long-form, errors.

Random weights: these tests prove wiring and numerics against formulas, not audio quality.
"""
from __future__ import annotations

import math

import pytest
import torch

from audiox_core import conditions as C
from audiox_core import generate as G
from audiox_core.task import GenerationRequest, crossfade_join, generate
from audiox_core.errors import Interrupted, InputError
from audiox_core.tiny import make_tiny_model, save_tiny_t5, tiny_synchformer

VARIANTS = ["audiox", "audiox_maf", "audiox_maf_mmdit", "audiox_turbo"]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    from audiox_core.conditioning.t5 import T5TextEncoder
    return T5TextEncoder.from_local(save_tiny_t5(tmp_path_factory.mktemp("t5")), expected_dim=32)


@pytest.fixture(scope="module")
def models(t5):
    out = {}
    sf = tiny_synchformer()
    for v in VARIANTS:
        m = make_tiny_model(v, seed=1)
        m.set_text_encoder(t5)
        m.set_synchformer(sf)
        out[v] = m
    return out


class Counter:
    """Counts backbone forward calls and the batch of each."""

    def __init__(self, model):
        self.batches = []
        self.h = model.backbone.register_forward_hook(lambda mod, args, kw_out: self.batches.append(args[0].shape[0]))

    def close(self):
        self.h.remove()


def _settings(m, **kw):
    return G.SamplerSettings.for_model(m, **kw)


@pytest.mark.parametrize("variant", VARIANTS)
def test_text_to_audio_shapes_seeds_batch(models, variant):
    m = models[variant]
    s = _settings(m, steps=3, seed=5)
    r1 = generate(m, GenerationRequest(prompt="two high beeps", settings=s, batch=2))
    cfg = m.config
    assert r1.sample_rate == cfg.sample_rate
    assert r1.audio.shape == (2, cfg.audio_channels, cfg.latent_length * cfg.vae.downsampling_ratio)
    assert torch.isfinite(r1.audio).all()
    r2 = generate(m, GenerationRequest(prompt="two high beeps", settings=s, batch=2))
    assert torch.equal(r1.audio, r2.audio)
    r3 = generate(m, GenerationRequest(prompt="two high beeps", settings=_settings(m, steps=3, seed=6), batch=2))
    assert not torch.allclose(r1.audio, r3.audio)
    assert not torch.allclose(r1.audio[0], r1.audio[1])  # batch items get their own noise


def test_turbo_calls_network_exactly_steps_times(models):
    m = models["audiox_turbo"]
    c = Counter(m)
    try:
        generate(m, GenerationRequest(prompt="x", settings=_settings(m, mode="turbo", steps=4)))
    finally:
        c.close()
    assert c.batches == [1, 1, 1, 1]


@pytest.mark.parametrize("variant", ["audiox", "audiox_maf_mmdit", "audiox_turbo"])
def test_base_cfg_makes_n_batched_calls(models, variant):
    m = models[variant]
    sampler = "euler"
    c = Counter(m)
    try:
        generate(m, GenerationRequest(prompt="x",
                                      settings=_settings(m, mode="base", steps=5, sampler=sampler, cfg_scale=3.0),
                                      batch=2))
    finally:
        c.close()
    assert c.batches == [4] * 5  # cond + uncond batched: 2 × batch per call, one call per step


@pytest.mark.parametrize("variant", ["audiox_maf", "audiox_turbo"])
def test_cfg_scale_one_equals_no_guidance(models, variant):
    m = models[variant]
    ctx = C.fuse(m, C.Conditions(text=C.encode_text(m, "a bell")))
    s1 = _settings(m, mode="base", steps=3, sampler="euler", cfg_scale=1.0, seed=2)
    c = Counter(m)
    try:
        a = G.sample(m, ctx, s1)
    finally:
        c.close()
    assert c.batches == [1, 1, 1]
    # no guidance at all: the plain network in the same sampler
    from audiox_core.sampling import sample_rectified_flow, sample_v_objective
    noise = torch.randn((1, m.config.io_channels, m.latent_length), generator=torch.Generator().manual_seed(2))
    vel = lambda x, t: m.backbone(x, t, ctx)  # noqa: E731
    if m.objective == "rectified_flow":
        b = sample_rectified_flow(vel, noise, steps=3, sampler="euler")
    else:
        b = sample_v_objective(vel, noise, steps=3, sampler="euler")
    assert torch.equal(a, b)


def test_negative_prompt_changes_uncond_only(models):
    m = models["audiox_maf_mmdit"]
    s = _settings(m, steps=2, sampler="euler", cfg_scale=4.0)
    a = generate(m, GenerationRequest(prompt="bell", settings=s))
    b = generate(m, GenerationRequest(prompt="bell", negative_prompt="noise", settings=s))
    assert not torch.allclose(a.audio, b.audio)
    s1 = _settings(m, steps=2, sampler="euler", cfg_scale=1.0)
    c = generate(m, GenerationRequest(prompt="bell", settings=s1))
    d = generate(m, GenerationRequest(prompt="bell", negative_prompt="noise", settings=s1))
    assert torch.equal(c.audio, d.audio)  # scale 1: the negative is never evaluated


def test_interrupt_stops_within_one_step(models):
    m = models["audiox_turbo"]
    c = Counter(m)
    calls = []

    def cb(step, total, info):
        calls.append(info.get("stage"))
        if info.get("stage") == "sample" and sum(1 for x in calls if x == "sample") == 2:
            raise Interrupted("user cancelled")
    try:
        with pytest.raises(Interrupted):
            settings = _settings(m, mode="base", steps=20, sampler="euler", cfg_scale=1)
            generate(m, GenerationRequest(prompt="x", settings=settings), callback=cb)
    finally:
        c.close()
    assert len(c.batches) == 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_inpainting_keeps_known_audio_and_completion_starts_with_clip(models, variant):
    m = models[variant]
    sr = m.config.sample_rate
    n = m.config.sample_size
    g = torch.Generator().manual_seed(0)
    wav = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(n) / sr).repeat(2, 1) + 0.01 * torch.randn(2, n, generator=g)
    s = _settings(m, steps=2)
    r = generate(m, GenerationRequest(init_audio=(wav, sr), inpaint=[(0.08, 0.16)], settings=s))
    keep = torch.ones(n, dtype=torch.bool)
    keep[int(0.08 * sr) - 64: int(0.16 * sr) + 64] = False
    out = r.audio[0]
    assert torch.allclose(out[:, keep], wav[:, keep], atol=1e-6)
    assert not torch.allclose(out[:, ~keep], wav[:, ~keep], atol=1e-3)
    r = generate(m, GenerationRequest(init_audio={"waveform": wav[None], "sample_rate": sr}, keep_seconds=0.1,
                                      settings=s))
    k = int(0.1 * sr) - 64
    assert torch.allclose(r.audio[0, :, :k], wav[:, :k], atol=1e-6)


def test_inpainting_latents_kept_within_vae_roundtrip(models):
    """Without the waveform paste the kept region is the VAE round trip of the input."""
    m = models["audiox_maf_mmdit"]
    sr, n = m.config.sample_rate, m.config.sample_size
    wav = 0.2 * torch.randn(1, 2, n, generator=torch.Generator().manual_seed(1))
    lat, _ = G.encode(m, wav, sr, generator=torch.Generator().manual_seed(0))
    keep = G.keep_mask_from_ranges(m, lat.shape[-1], [(0.1, 0.2)], ramp_seconds=0.0)
    ctx = C.fuse(m, C.Conditions(text=C.encode_text(m, "")))
    out = G.sample(m, ctx, _settings(m, steps=3, sampler="euler"), known=G.Known(lat, keep))
    kept = keep > 0.999
    assert torch.equal(out[..., kept], lat[..., kept])


def test_keep_mask_from_ranges_and_errors(models):
    m = models["audiox_turbo"]
    fps = G.frames_per_second(m)
    keep = G.keep_mask_from_ranges(m, 32, [(0.0625, 0.125)], ramp_seconds=0.0)
    a, b = int(0.0625 * fps), int(math.ceil(0.125 * fps))
    assert keep[:a].eq(1).all() and keep[a:b].eq(0).all() and keep[b:].eq(1).all()
    with pytest.raises(InputError, match="outside the clip"):
        G.keep_mask_from_ranges(m, 32, [(5.0, 6.0)])
    with pytest.raises(InputError, match="empty"):
        G.keep_mask_from_ranges(m, 32, [(0.2, 0.1)])


@pytest.mark.parametrize("variant", ["audiox", "audiox_turbo"])
def test_long_form_length_and_continuous_joins(models, variant):
    m = models[variant]
    sr = m.config.sample_rate
    dur = 3.3 * m.config.sample_size / sr
    r = generate(m, GenerationRequest(prompt="a melody", duration=dur, settings=_settings(m, steps=2)))
    n = int(round(dur * sr))
    assert r.audio.shape[-1] == n
    assert torch.isfinite(r.audio).all()
    assert "long-form" in r.report[0]


def test_crossfade_join_has_no_click():
    sr = 8000
    t = torch.arange(4000) / sr
    a = torch.sin(2 * math.pi * 220 * t)[None, None]
    b = torch.sin(2 * math.pi * 220 * (t + (4000 - 800) / sr))[None, None]  # continues a with 800 overlap
    j = crossfade_join(a, b, 800)
    assert j.shape[-1] == 4000 + 4000 - 800
    d = j.diff(dim=-1).abs()
    ref = torch.sin(2 * math.pi * 220 * torch.arange(j.shape[-1]) / sr)
    assert torch.allclose(j[0, 0], ref, atol=2e-3)  # identical overlap → seamless (float32 phase error)
    assert d.max() <= 2 * math.pi * 220 / sr * 1.01


@pytest.mark.parametrize("variant", ["audiox", "audiox_maf"])
def test_video_image_and_task_sentence(models, variant):
    m = models[variant]
    frames = torch.rand(30, 24, 40, 3)
    r = generate(m, GenerationRequest(video=frames, video_fps=12, settings=_settings(m, steps=2)))
    assert any("CLIP" in x for x in r.report)
    assert "text: given" in r.report[-1]  # the official task sentence fills the empty prompt
    r = generate(m, GenerationRequest(image=frames[0], settings=_settings(m, steps=2)))
    assert torch.isfinite(r.audio).all()
    # the held still equals a video of identical frames
    still = C.encode_video(m, C.VisualInput(frames=frames[:1]), batch=1, sync=False)
    same = C.encode_video(m, C.VisualInput(frames=frames[:1].repeat(15, 1, 1, 1), fps=5), batch=1, sync=False)
    assert torch.allclose(still.tokens, same.tokens)


def test_sync_features_off_feeds_zeros_and_missing_synchformer_is_named(models):
    """sync_features=False: a MAF model runs without a Synchformer, on zero sync features (the
    official gradio convention); with it on and no Synchformer the error names both ways out."""
    m = models["audiox_maf"]
    frames = torch.rand(30, 24, 40, 3)
    s = _settings(m, steps=2, seed=3)
    sf = m.synchformer
    try:
        m.set_synchformer(None)
        with pytest.raises(InputError, match="--sync-zeros"):
            generate(m, GenerationRequest(video=frames, video_fps=12, settings=s))
        r = generate(m, GenerationRequest(video=frames, video_fps=12, settings=s, sync_features=False))
        assert any("sync: zeros" in x for x in r.report)
    finally:
        m.set_synchformer(sf)
    zeros = C.encode_video(m, C.VisualInput(frames=frames, fps=12), batch=1, sync=False)
    real = C.encode_video(m, C.VisualInput(frames=frames, fps=12), batch=1)
    assert not torch.allclose(zeros.tokens, real.tokens)  # the Synchformer path really differs
    r2 = generate(m, GenerationRequest(video=frames, video_fps=12, settings=s, sync_features=False))
    assert torch.equal(r.audio, r2.audio)  # zeros do not depend on whether a Synchformer is attached


def test_absent_modalities_follow_official_conventions(models):
    m = models["audiox"]  # v1 audio conditioner has a learned empty feature
    conds = C.complete(m, C.Conditions(), batch=2)
    vc, ac = m.video_conditioner, m.audio_conditioner
    assert torch.equal(conds.video.tokens, vc.empty_visual_feat.expand(2, -1, -1).float())
    assert torch.equal(conds.audio.tokens, ac.empty_audio_feat.expand(2, -1, -1).float())
    t5_empty, _ = m.text_encoder.encode(["", ""])
    assert torch.equal(conds.text.tokens, t5_empty)
    assert conds.text.tokens[:, 1:].abs().sum() == 0 and conds.text.tokens[:, 0].abs().sum() > 0
    # zero frames take the same path as "no video"
    zero = C.encode_video(m, torch.zeros(1, vc.frames_per_clip, 3, vc.image_size, vc.image_size))
    assert torch.equal(zero.tokens, conds.video.tokens[:1])


def test_missing_parts_and_bad_inputs_are_named(models, t5):
    m = models["audiox_maf_mmdit"]
    with pytest.raises(InputError, match="Turbo sampler needs a rectified-flow"):
        generate(m, GenerationRequest(prompt="x", settings=G.SamplerSettings(mode="turbo", steps=4)))
    with pytest.raises(InputError, match="Turbo steps must be 1..8"):
        generate(models["audiox_turbo"], GenerationRequest(prompt="x",
                                                           settings=G.SamplerSettings(mode="turbo", steps=9)))
    with pytest.raises(InputError, match="duration"):
        generate(m, GenerationRequest(prompt="x", duration=1000))
    with pytest.raises(InputError, match="batch"):
        generate(m, GenerationRequest(prompt="x", batch=0))
    with pytest.raises(InputError, match="no frames"):
        C.VisualInput(frames=torch.zeros(0, 8, 8, 3))
    with pytest.raises(InputError, match="frame rate"):
        C.VisualInput(frames=torch.zeros(4, 8, 8, 3))
    synch = m.synchformer
    m.set_synchformer(None)
    try:
        with pytest.raises(InputError, match="Synchformer"):
            C.encode_video(m, C.VisualInput(frames=torch.rand(10, 8, 8, 3), fps=5))
    finally:
        m.set_synchformer(synch)
    enc = m.text_encoder
    m.set_text_encoder(None)
    try:
        with pytest.raises(InputError, match="T5 text encoder"):
            C.encode_text(m, "x")
    finally:
        m.set_text_encoder(enc)
    other = models["audiox_turbo"]
    cond = C.encode_text(other, "x")
    with pytest.raises(InputError, match="another model"):
        C.fuse(m, C.Conditions(text=cond))


def test_audio_prompt_any_rate_and_channels(models):
    m = models["audiox_turbo"]
    wav = torch.randn(6, 12000) * 0.1  # 6 channels at 12 kHz
    c = C.encode_audio_prompt(m, wav, sample_rate=12000, mask=False, generator=torch.Generator().manual_seed(0))
    assert c.tokens.shape == (1, 128, 32)
    assert "resampled 12000 → 8000 Hz" in c.report and "6 → 2 channels" in c.report
