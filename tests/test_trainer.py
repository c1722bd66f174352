"""Fine-tuning: objectives and schedules against hand formulas, absent conventions, the encoder
cache (epochs after the first never touch an encoder), held-out loss going down, cancel/crash/
resume equivalence, encoders trained from raw inputs, loss-curve PNG, CLI."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from audiox_core.conditioning.t5 import T5TextEncoder
from audiox_core.errors import Interrupted
from audiox_core.tiny import make_tiny_model, save_tiny_t5
from audiox_core.training import state as st
from audiox_core.training.conditions import ConditionEncoder, Masking, NO_MASKING
from audiox_core.training.data import (Example, FolderDataset, caption_for, plan_for, prepare_dataset,
                                       read_manifest)
from audiox_core.training.objectives import EMA, LRSchedule, TimeSampler, noised_and_target, x0_from_velocity
from audiox_core.training.plot import loss_curve_image, loss_curve_png
from audiox_core.training.trainer import TrainConfig, Trainer, evaluate_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5") / "t5")


def with_t5(model, t5_dir):
    model.set_text_encoder(T5TextEncoder.from_local(t5_dir, expected_dim=model.config.cond_dim))
    return model


def pattern(channels, length, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.functional.avg_pool1d(torch.randn(1, channels, length, generator=g), 5, 1, 2)[0]
    return p / p.pow(2).mean().sqrt()


def latent_set(n, seed, channels=8, length=40, classes=("low hum", "bright chirp", "soft noise")):
    """Class-conditional latents: class pattern × random gain + small noise (longer than the window)."""
    g = torch.Generator().manual_seed(seed)
    pats = [pattern(channels, length, 100 + i) for i in range(len(classes))]
    out = []
    for i in range(n):
        c = i % len(classes)
        x = (0.7 + 0.6 * torch.rand(1, generator=g)) * pats[c] + 0.1 * torch.randn(channels, length, generator=g)
        out.append(Example(latents=x, caption=classes[c], name=f"s{seed}_{i}"))
    return out


# ------------------------------------------------------------------------------------------------
# formulas
# ------------------------------------------------------------------------------------------------
def test_objectives_match_hand_formulas():
    g = torch.Generator().manual_seed(0)
    x0, eps, t = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g), torch.rand(3, generator=g)
    xv, tv = noised_and_target("v", x0, eps, t)
    xr, tr = noised_and_target("rectified_flow", x0, eps, t)
    X, E, T = x0.double().numpy(), eps.double().numpy(), t.double().numpy()
    for b in range(3):
        a, s = math.cos(math.pi * T[b] / 2), math.sin(math.pi * T[b] / 2)
        assert np.allclose(xv[b].numpy(), a * X[b] + s * E[b], atol=1e-6)
        assert np.allclose(tv[b].numpy(), a * E[b] - s * X[b], atol=1e-6)
        assert np.allclose(xr[b].numpy(), (1 - T[b]) * X[b] + T[b] * E[b], atol=1e-6)
        assert np.allclose(tr[b].numpy(), E[b] - X[b], atol=1e-6)
    # the exact target recovers x0
    assert torch.allclose(x0_from_velocity("v", xv, tv, t), x0, atol=1e-5)
    assert torch.allclose(x0_from_velocity("rectified_flow", xr, tr, t), x0, atol=1e-5)


def test_time_samplers_and_resume():
    g = torch.Generator().manual_seed(0)
    a = TimeSampler("sobol", seed=3)
    first = torch.cat([a.draw(4, g) for _ in range(3)])
    b = TimeSampler("sobol", seed=3)
    b.draw(4, g)
    c = TimeSampler("sobol", seed=0)
    c.load_state_dict(b.state_dict())
    assert torch.equal(torch.cat([c.draw(4, g), c.draw(4, g)]), first[4:])
    assert ((first >= 0) & (first < 1)).all()
    s = TimeSampler("stratified").draw(8, g)
    assert torch.equal((s * 8).floor(), torch.arange(8.0))
    ln = TimeSampler("logit_normal").draw(1000, g)
    assert (ln > 0).all() and (ln < 1).all() and abs(float(ln.mean()) - 0.5) < 0.05


def test_lr_schedule_and_ema_rules():
    inv = LRSchedule("inverse", inv_gamma=1e6, power=0.5, exp_warmup=0.99)
    for s in (0, 1, 10, 500):  # stable-audio-tools InverseLR closed form
        assert inv(s) == pytest.approx((1 - 0.99 ** (s + 1)) * (1 + s / 1e6) ** -0.5)
    lin = LRSchedule("constant", warmup_steps=4)
    assert [lin(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    p = torch.nn.Parameter(torch.zeros(1))
    ema = EMA([p], beta=0.9999, power=0.75)
    want, val = [], 0.0
    for n in range(1, 8):
        with torch.no_grad():
            p.fill_(float(n))
        ema.update()
        k = n - 1  # ema_pytorch: copy on the first update, then decay 1 - (1 + k)^-power
        d = 0.0 if k <= 0 else min(0.9999, 1 - (1 + k) ** -0.75)
        val = float(n) if d == 0 else d * val + (1 - d) * n
        want.append(val)
        assert float(ema.shadow[0]) == pytest.approx(val, rel=1e-6)


def test_caption_and_manifest(tmp_path):
    cap = {"audio_caption": {"0-10": "first", "10-20": "second"}}
    assert caption_for(cap, 0.0) == "first" and caption_for(cap, 12.5) == "second" and caption_for(cap, 40) == "first"
    from audiox_core.media import save_wav
    sr = 8000
    for name in ("a", "b"):
        save_wav(tmp_path / f"{name}.wav", 0.1 * torch.randn(1, sr // 2), sr)
    (tmp_path / "b.txt").write_text("a sidecar caption\n")
    rows = [{"path": "a.wav", "video_path": "missing.mp4", "caption": cap, "type": "audio_condition-music",
             "duration": 10, "sample_rate": 8000},
            {"path": "notes.pdf", "caption": "skipped like the official loader"}]
    (tmp_path / "train_manifest_2.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    exs = read_manifest(tmp_path / "train_manifest_2.jsonl")
    assert len(exs) == 1 and exs[0].type == "audio_condition-music" and exs[0].caption == cap
    ds = FolderDataset(tmp_path)
    by = {e.name: e for e in ds}
    assert by["a"].caption == cap and by["b"].caption == "a sidecar caption"


# ------------------------------------------------------------------------------------------------
# conditions
# ------------------------------------------------------------------------------------------------
def test_absent_conventions(t5_dir):
    for variant in ("audiox_turbo", "audiox", "audiox_maf"):
        m = with_t5(make_tiny_model(variant), t5_dir)
        data = prepare_dataset([Example(latents=torch.randn(8, 40), caption="something")], m)
        b = data.batch([0], torch.Generator().manual_seed(0))
        enc = ConditionEncoder(m, data)
        drop_all = Masking(1.0, 1.0, 1.0, 0.0, prompt_spans=False)
        with torch.no_grad():
            v, t, a = enc.tokens(b, drop_all, torch.Generator().manual_seed(1))
            assert torch.equal(v, m.video_conditioner(None, batch_size=1))          # learned empty_visual_feat
            tok, _ = m.text_encoder.encode([""], max_length=128)
            assert torch.allclose(t, tok, atol=1e-3)                                 # T5 of "" (cached in fp16)
            ac = m.audio_conditioner
            if ac.kind == "audio_autoencoder_v1":
                assert torch.equal(a, ac.empty_audio_feat.expand(1, -1, -1))
            elif ac.kind == "mel_spec":
                assert torch.allclose(a, ac(None, batch_size=1, mask=False), atol=1e-6)
            else:  # v2: VAE encoding of silence; compare at the posterior mean
                mean, std = data.shared["silence"]
                data.shared["silence"] = (mean, torch.zeros_like(std))
                _, _, a0 = enc.tokens(b, drop_all, torch.Generator().manual_seed(1))
                p = ac.pretransform
                mu, _ = p.encode_moments(torch.zeros(1, p.io_channels, ac.prompt_samples))
                want = ac.proj_out(ac.proj_features_128(mu).transpose(1, 2))
                assert torch.allclose(a0, want, atol=1e-5)
            ctx = enc.context(b, Masking(0, 0, 0, 1.0), torch.Generator().manual_seed(2))
            assert torch.equal(ctx, torch.zeros_like(ctx))                           # CFG dropout: all zeros
            kept = enc.context(b, NO_MASKING, torch.Generator().manual_seed(2))
            assert kept.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# cache: epochs after the first never touch an encoder
# ------------------------------------------------------------------------------------------------
def test_cache_and_no_encoder_after_prepare(tmp_path, t5_dir, monkeypatch):
    m = with_t5(make_tiny_model("audiox_turbo"), t5_dir)
    sr = 8000
    g = torch.Generator().manual_seed(0)
    exs = [Example(audio=0.3 * torch.randn(2, int(sr * (0.4 + 0.1 * i)), generator=g), sample_rate=sr,
                   caption=f"noise {i}", name=f"n{i}") for i in range(3)]
    exs.append(Example(audio=0.3 * torch.randn(1, sr, generator=g), sample_rate=sr, caption="prompted",
                       type="audio_condition-audio", name="p"))
    cache = tmp_path / "cache"
    data = prepare_dataset(exs, m, cache_dir=cache)
    n_files = len(list(cache.glob("*.safetensors")))
    assert n_files >= 8
    assert data.items[3].windows and data.items[3].windows[0].prompt is not None

    def boom(*a, **k):
        raise AssertionError("an encoder ran after preprocessing")
    monkeypatch.setattr(type(m.pretransform), "encode_moments", boom)
    monkeypatch.setattr(m.text_encoder, "encode", boom)
    monkeypatch.setattr(m.text_encoder.model, "forward", boom)
    again = prepare_dataset(exs, m, cache_dir=cache)  # all from the cache
    assert again.dataset_hash == data.dataset_hash and len(list(cache.glob("*.safetensors"))) == n_files
    assert torch.equal(again.items[0].mean, data.items[0].mean)
    tr = Trainer(m, again, TrainConfig(steps=4, batch_size=2, lr=1e-3, lora_rank=2, precision="bf16"))
    tr.run()  # two epochs over the four items, bf16 autocast on the CPU
    assert tr.step == 4 and all(math.isfinite(h["loss"]) for h in tr.history)
    # another preprocessing parameter (a different file) makes a new key
    exs[0] = Example(audio=exs[0].audio * 0.5, sample_rate=sr, caption="noise 0", name="n0")
    monkeypatch.undo()
    changed = prepare_dataset(exs, m, cache_dir=cache)
    assert changed.dataset_hash != data.dataset_hash


# ------------------------------------------------------------------------------------------------
# fine-tuning lowers the held-out loss
# ------------------------------------------------------------------------------------------------
def test_lora_finetune_lowers_heldout_loss(t5_dir):
    """Tiny AudioX (DiT, v-objective, random weights), rank-16 LoRA on every attention/FF projection,
    3 caption-conditioned classes of synthetic latents; the held-out set has other gains and noise.
    Loss measured at fixed t ∈ {.1, .3, .5, .7, .9} with fixed noise (``evaluate_loss``).
    Stated margin: after 280 steps the held-out loss is ≤ 0.7 × its value before (measured 0.63×)."""
    torch.manual_seed(0)
    m = with_t5(make_tiny_model("audiox", seed=1), t5_dir)
    train = prepare_dataset(latent_set(24, seed=1, length=32), m)
    held = prepare_dataset(latent_set(12, seed=2, length=32), m)
    before = evaluate_loss(m, held)
    cfg = TrainConfig(steps=280, batch_size=8, lr=5e-3, lora_rank=16, precision="fp32", gradient_checkpointing=True,
                      masking=Masking(0.0, 0.2, 0.0, 0.1), seed=0)
    tr = Trainer(m, train, cfg)
    tr.run()
    after = evaluate_loss(m, held)
    assert after <= 0.7 * before, (before, after)
    first = np.mean([h["loss"] for h in tr.history[:20]])
    last = np.mean([h["loss"] for h in tr.history[-20:]])
    assert last < first
    tr.lora.detach()


# ------------------------------------------------------------------------------------------------
# cancel, crash during save, resume
# ------------------------------------------------------------------------------------------------
def _run_cfg(**kw):
    base = dict(steps=6, batch_size=4, lr=2e-3, lora_rank=4, precision="fp32", ema=True, save_every=3,
                keep_checkpoints=5, masking=Masking(0.6, 0.2, 0.6, 0.1), seed=3, gradient_checkpointing=True)
    base.update(kw)
    return TrainConfig(**base)


def test_cancel_crash_and_resume(tmp_path, t5_dir, monkeypatch):
    exs = latent_set(8, seed=5, length=32)

    def fresh():
        m = with_t5(make_tiny_model("audiox_turbo", seed=2), t5_dir)
        return m, prepare_dataset(exs, m)

    # reference: uninterrupted
    ma, da = fresh()
    ref = Trainer(ma, da, _run_cfg(), out_dir=tmp_path / "a")
    snap = {}

    def keep_state(step, total, info):
        if step == 4:
            snap.update({i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
                         for i, s in ref.optimizer.state_dict()["state"].items()})
    ref.run(callback=keep_state)
    ref_losses = [h["loss"] for h in ref.history]

    # cancelled from the callback after step 4
    mb, db = fresh()
    tb = Trainer(mb, db, _run_cfg(), out_dir=tmp_path / "b")

    def cancel(step, total, info):
        assert "loss" in info and "lr" in info
        if step == 4:
            raise Interrupted("user pressed cancel")
    with pytest.raises(Interrupted):
        tb.run(callback=cancel)
    ck = st.latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert ck is not None and ck.name == "step_00000004.safetensors"
    # the unfinished LoRA is exported only under a partial name, stamped with its step
    from audiox_core.weights import PARTIAL_KEY, SafetensorsFile
    assert not (tmp_path / "b" / "audiox_lora.safetensors").exists()
    part = tmp_path / "b" / "audiox_lora.partial.safetensors"
    assert SafetensorsFile(part).metadata[PARTIAL_KEY] == "step 4 of 6"

    # a crash while writing the next checkpoint leaves the previous one intact
    real_replace = os.replace

    def crash(src, dst):
        raise OSError("disk died during rename")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        tb.save_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000005.safetensors")
    monkeypatch.setattr(os, "replace", real_replace)
    assert st.latest_checkpoint(tmp_path / "b" / "checkpoints") == ck
    assert not [p for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name.endswith(".tmp")]

    # resume in a fresh process-like setup: same optimizer state, same next losses
    mc, dc = fresh()
    tc = Trainer(mc, dc, _run_cfg(), out_dir=tmp_path / "b")
    assert tc.resume() and tc.step == 4
    # the optimizer state equals the uninterrupted run's state after step 4
    sd = tc.optimizer.state_dict()["state"]
    assert sd.keys() == snap.keys()
    for i, s in sd.items():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s[k].cpu(), snap[i][k]), (i, k)
    tc.run()
    assert tc.step == 6
    assert (tmp_path / "b" / "audiox_lora.safetensors").is_file() and not part.exists()
    got = [h["loss"] for h in tc.history]
    assert got[:4] == ref_losses[:4]
    assert np.allclose(got[4:], ref_losses[4:], rtol=1e-5, atol=1e-7), (got, ref_losses)
    # the resumed parameters end where the uninterrupted run ended
    for (n, p), (_, q) in zip(tc.named_params, ref.named_params):
        assert torch.allclose(p, q, atol=1e-6), n
    # and the step-3 checkpoints of both runs agree exactly (same optimizer state)
    a3, _ = st.load_state(tmp_path / "a" / "checkpoints" / "step_00000003.safetensors")
    b3, _ = st.load_state(tmp_path / "b" / "checkpoints" / "step_00000003.safetensors")
    assert a3.keys() == b3.keys() and all(torch.equal(a3[k], b3[k]) for k in a3 if not k.startswith("rng/"))


# ------------------------------------------------------------------------------------------------
# encoders trained end to end from raw inputs (the demo-from-scratch path)
# ------------------------------------------------------------------------------------------------
def test_train_everything_from_raw_inputs(tmp_path, t5_dir):
    from audiox_core.checkpoint import load_model
    m = with_t5(make_tiny_model("audiox_turbo", seed=4), t5_dir)
    vc = m.video_conditioner
    sr, g = 8000, torch.Generator().manual_seed(0)
    exs = []
    for i in range(2):
        frames = torch.rand(12, 40, 40, 3, generator=g)  # 2.4 s at 5 fps
        exs.append(Example(audio=0.2 * torch.randn(2, int(sr * 2.2), generator=g), sample_rate=sr,
                           caption=f"scene {i}", video=frames, video_fps=5.0, name=f"v{i}"))
    parts = ("backbone", "maf", "projections", "clip", "t5")
    data = prepare_dataset(exs, m, plan=plan_for(parts, sync="zeros"))
    assert data.items[0].windows[0].video.dtype == torch.uint8
    assert data.items[0].text["scene 0"].dtype == torch.int64
    watch = {"clip": next(vc.visual_encoder_model.parameters()), "t5": next(m.text_encoder.model.parameters()),
             "proj": vc.proj.weight, "vae": next(m.pretransform.parameters())}
    before = {k: v.detach().clone() for k, v in watch.items()}
    tr = Trainer(m, data, TrainConfig(steps=2, batch_size=2, lr=1e-3, train=parts, precision="fp32",
                                      masking=Masking(0, 0, 0, 0)), out_dir=tmp_path / "run")
    res = tr.run()
    for k in ("clip", "t5", "proj"):
        assert not torch.equal(before[k], watch[k].detach()), k
    assert torch.equal(before["vae"], watch["vae"].detach())
    assert res.model_path.is_file() and (tmp_path / "run" / "t5" / "model.safetensors").is_file()
    back = load_model(res.model_path)
    assert torch.equal(back.video_conditioner.proj.weight, vc.proj.weight.detach())
    t5b = T5TextEncoder.from_local(tmp_path / "run" / "t5", expected_dim=32)
    assert torch.equal(next(t5b.model.parameters()), next(m.text_encoder.model.parameters()).detach())


# ------------------------------------------------------------------------------------------------
# loss curve, CLI
# ------------------------------------------------------------------------------------------------
def test_loss_curve_png():
    hist = [{"step": i + 1, "loss": 2.0 * math.exp(-i / 20) + 0.05 * math.sin(i)} for i in range(100)]
    png = loss_curve_png(hist)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = loss_curve_image(hist, width=320, height=200)
    assert img.shape == (1, 200, 320, 3) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert float(img.std()) > 0.01
    assert loss_curve_png([])[:4] == b"\x89PNG"


def test_cli_lora(tmp_path, t5_dir, capsys):
    from audiox_core.checkpoint import save_model
    from audiox_core.media import save_wav
    from audiox_core.training.cli import main
    m = make_tiny_model("audiox_turbo")
    mdir = tmp_path / "model"
    mdir.mkdir()
    save_model(m, mdir / "tiny.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        save_wav(data / f"clip_{i}.wav", 0.1 * torch.randn(2, 4000), 8000)
    (data / "clip_0.txt").write_text("a quiet hiss")
    out = tmp_path / "out"
    args = ["lora", "--model", str(mdir / "tiny.safetensors"), "--t5", str(t5_dir), "--data", str(data),
            "--out", str(out), "--rank", "2", "--precision", "fp32", "--save-every", "1"]
    assert main(args + ["--steps", "2"]) == 0
    assert (out / "audiox_lora.safetensors").is_file() and "step 2/2" in capsys.readouterr().out
    assert main(args + ["--steps", "3"]) == 0
    assert "resumed at step 2" in capsys.readouterr().out
    assert main(["lora", "--model", str(tmp_path / "missing.safetensors"), "--data", str(data), "--out",
                 str(out)]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_fp16_accumulation_and_ctrl_c(tmp_path, t5_dir):
    m = with_t5(make_tiny_model("audiox_turbo"), t5_dir)
    data = prepare_dataset(latent_set(6, seed=7, length=32), m)
    tr = Trainer(m, data, TrainConfig(steps=2, batch_size=2, grad_accum=2, lr=1e-3, lora_rank=2, precision="fp16"),
                 out_dir=tmp_path)
    tr.run()
    assert tr.step == 2 and tr.scaler is not None and all(math.isfinite(h["loss"]) for h in tr.history)
    # the four micro-batches of a step draw four different items slots (epoch permutation)
    assert len({i for j in range(2) for i in tr._indices(1, j)}) == 4

    def ctrl_c(step, total, info):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tr.run(steps=4, callback=ctrl_c)
    assert st.latest_checkpoint(tmp_path / "checkpoints").name == "step_00000003.safetensors"
    tr.lora.detach()


def test_video_cache_levels_agree(t5_dir):
    """The three video cache levels (conditioner output / CLIP hidden states / raw frames) must give
    the same tokens as the conditioner itself, with real Synchformer features."""
    from audiox_core.tiny import tiny_synchformer
    m = with_t5(make_tiny_model("audiox_turbo", seed=6), t5_dir)
    m.set_synchformer(tiny_synchformer())
    vc = m.video_conditioner
    g = torch.Generator().manual_seed(3)
    ex = Example(audio=0.1 * torch.randn(2, 8000 * 2, generator=g), sample_rate=8000, caption="a scene",
                 video=torch.rand(10, 36, 36, 3, generator=g), video_fps=5.0, name="v")
    tokens = {}
    for parts in ((), ("projections",), ("clip",)):
        data = prepare_dataset([ex], m, plan=plan_for(parts))
        b = data.batch([0], torch.Generator().manual_seed(0), random_crop=False)
        with torch.no_grad():
            tokens[parts] = ConditionEncoder(m, data).video_tokens(b, torch.tensor([True]))
    win = prepare_dataset([ex], m, plan=plan_for(("clip",))).items[0].windows[0]
    sync = prepare_dataset([ex], m, plan=plan_for(("projections",))).items[0].windows[0].sync
    assert sync is not None and sync.abs().sum() > 0
    with torch.no_grad():
        want = vc(win.video[None], sync[None])
    for parts, tok in tokens.items():  # hidden states are cached in fp16: ~1e-4 differences
        assert torch.allclose(tok, want, atol=2e-3 if parts == ("projections",) else 1e-5), parts
    assert (tokens[("projections",)] - want).abs().max() > 0  # (the fp16 cache is really used)
