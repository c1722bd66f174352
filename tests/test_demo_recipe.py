"""The demo recipe end to end at smoke-test size (plumbing only: the weights are useless)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from audiox_core.demo.model_config import SHIPPED_LAYOUT, SIZE_LIMIT_BYTES


@pytest.mark.slow
def test_quick_recipe_runs_every_stage_and_resumes(tmp_path):
    from audiox_core.checkpoint import detect
    from audiox_core.demo.recipe import STAGES, main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--quick"]) == 0
    summary = json.loads((out / "recipe.json").read_text())
    assert list(summary) == list(STAGES)
    for st in STAGES:
        assert (out / st / "done.json").is_file() and summary[st]["wall_s"] >= 0
    vae = json.loads((out / "vae" / "report.json").read_text())
    assert vae["steps"] == 6 and vae["latent_scale"] > 0 and "event/onset_ok" in vae["roundtrip"]["clean"]
    probe = vae["latent_probe"]
    assert probe["n_per_class"] == 6 and all(0 <= probe[p]["latent"]["test"] <= 1 for p in ("beep/buzz", "bell/drum"))
    exp = out / "export"
    base = detect(exp / SHIPPED_LAYOUT["base"])
    turbo = detect(exp / SHIPPED_LAYOUT["turbo"])
    assert base.variant == turbo.variant == "audiox_turbo"
    assert (base.role, turbo.role) == ("base", "student")
    assert base.config.vae.scale == pytest.approx(vae["latent_scale"])
    t5 = exp / SHIPPED_LAYOUT["t5"]
    assert {p.name for p in t5.iterdir()} == {"config.json", "model.safetensors", "byte_tokenizer.json"}
    rep = json.loads((exp / "export.json").read_text())
    assert rep["missing"] == [] and rep["budget"]["written_bytes"] <= SIZE_LIMIT_BYTES
    # a rerun skips every finished stage
    mtime = (exp / SHIPPED_LAYOUT["base"]).stat().st_mtime
    assert main(["--out", str(out), "--quick"]) == 0
    assert (exp / SHIPPED_LAYOUT["base"]).stat().st_mtime == mtime


def test_vae_stage_passes_the_adversarial_settings(tmp_path, monkeypatch):
    """The recipe's vae_adv_weight / vae_fm_weight / vae_disc_start reach the VAE trainer (off by default)."""
    import audiox_core.training.vae as vae_mod
    from audiox_core.demo.recipe import Recipe, RecipeConfig

    seen = []

    class Stop(Exception):
        pass

    class Spy(vae_mod.VAETrainer):
        def __init__(self, vae_config, train_config, source, **kw):
            seen.append(train_config)
            raise Stop

    monkeypatch.setattr(vae_mod, "VAETrainer", Spy)
    for cfg, expect in ((RecipeConfig.quick(), (0.0, 0.0, 0, False)),
                        (dataclasses.replace(RecipeConfig.quick(), vae_adv_weight=0.1, vae_fm_weight=5.0,
                                             vae_disc_start=3), (0.1, 5.0, 3, True))):
        with pytest.raises(Stop):
            Recipe(tmp_path / f"run{len(seen)}", cfg).stage_vae()
        tc = seen[-1]
        assert (tc.adv_weight, tc.fm_weight, tc.disc_start, tc.adversarial) == expect


def test_vae_stage_second_phase_and_export_swap(tmp_path):
    """Phase 2 of the vae stage trains a wider decoder on the frozen phase-1 encoder: the final
    VAE has the decoder's own widths and phase 1's encoder and latent scale, bit for bit; a rerun
    trains nothing; export puts the final VAE into a model trained with the phase-1 VAE (every
    other tensor kept) and refuses a model whose encoder differs."""
    import torch
    from audiox_core.checkpoint import load_vae
    from audiox_core.demo.build import build_demo_model, read_vae_metadata
    from audiox_core.demo.model_config import DEMO_SIZES, demo_config
    from audiox_core.demo.recipe import Recipe, RecipeConfig
    from audiox_core.errors import CheckpointError
    from audiox_core.weights import WeightSource

    sizes = DEMO_SIZES.with_(vae_decoder_channels=16, vae_decoder_c_mults=(1, 2, 4, 8))
    cfg = dataclasses.replace(RecipeConfig.quick(), sizes=sizes, vae_decoder_steps=3, vae_decoder_plain_steps=1)
    r = Recipe(tmp_path / "run", cfg)
    r.run(("vae",))
    d = tmp_path / "run" / "vae"
    rep = json.loads((d / "report.json").read_text())
    assert rep["steps"] == 6 and rep["decoder"]["steps"] == 3 and rep["decoder"]["fresh_tensors"] > 0
    assert rep["decoder_from"] == "phase 2"
    final, first = load_vae(d / "vae.safetensors"), load_vae(d / "vae_phase1.safetensors")
    assert (final.model.cfg.dec_channels, final.model.cfg.dec_c_mults) == (16, (1, 2, 4, 8))
    assert first.model.cfg.dec_channels == 8
    assert read_vae_metadata(d / "vae.safetensors")["latent_scale"] == rep["latent_scale"] \
        == read_vae_metadata(d / "vae_phase1.safetensors")["latent_scale"]
    fe, pe = final.model.encoder.state_dict(), first.model.encoder.state_dict()
    assert all(torch.equal(fe[k], pe[k]) for k in pe)
    before = WeightSource(d / "vae.safetensors").read("decoder.layers.0.weight_v")
    r.run(("vae",), force=("vae",))  # both phases finished: nothing is trained again
    assert torch.equal(WeightSource(d / "vae.safetensors").read("decoder.layers.0.weight_v"), before)

    scale = rep["latent_scale"]
    phase1_sizes = DEMO_SIZES.with_(vae_decoder_channels=None, vae_decoder_c_mults=None)
    narrow = build_demo_model(demo_config(phase1_sizes, vae_scale=scale), vae_path=d / "vae_phase1.safetensors",
                              seed=5)
    swapped = r.with_stage_vae(narrow)
    sd, nd = swapped.state_dict(), narrow.state_dict()
    assert swapped.config.vae.dec_channels == 16
    for prefix in ("pretransform.model.", "conditioner.conditioners.audio_prompt.pretransform.model."):
        dec = {k[len(prefix) + 8:]: v for k, v in sd.items() if k.startswith(prefix + "decoder.")}
        assert dec.keys() == final.model.decoder.state_dict().keys()
        assert all(torch.equal(v, final.model.decoder.state_dict()[k]) for k, v in dec.items())
    kept = [k for k in nd if ".decoder." not in k]
    assert kept and all(torch.equal(sd[k], nd[k]) for k in kept)
    with torch.no_grad():
        narrow.pretransform.model.encoder.layers[0].bias.add_(1e-3)
    with pytest.raises(CheckpointError, match="encoder is not the one"):
        r.with_stage_vae(narrow)
    # a decoder of its own needs the decoder phase
    from audiox_core.errors import ConfigError
    with pytest.raises(ConfigError, match="vae_decoder_steps is 0"):
        Recipe(tmp_path / "run2", dataclasses.replace(cfg, vae_decoder_steps=0)).stage_vae()


def test_vae_stage_spectral_alignment_reaches_phase_1_only(tmp_path):
    import torch
    from audiox_core.demo.recipe import Recipe, RecipeConfig

    r = Recipe(tmp_path / "run", dataclasses.replace(RecipeConfig.quick(), vae_spectral_align_weight=2.0))
    r.run(("vae",))
    d = tmp_path / "run" / "vae"
    rep = json.loads((d / "report.json").read_text())
    assert all(row["align"] > 0 for row in rep["curve"]) and "align" not in rep["decoder"]["curve"][0]
    assert "align_head" in torch.load(d / "trainer.pt", weights_only=True)
    assert "align_head" not in torch.load(d / "decoder_trainer.pt", weights_only=True)


def test_vae_stage_phase1_with_the_decoder_of_its_own(tmp_path):
    """vae_phase1_own_decoder: phase 1 trains the whole VAE with the decoder widths of ``sizes``
    (the encoder learns its latents against that decoder); with the decoder phase off, the final
    VAE is phase 1's file, bit for bit, with those widths."""
    import torch
    from audiox_core.checkpoint import load_vae
    from audiox_core.demo.model_config import DEMO_SIZES
    from audiox_core.demo.recipe import Recipe, RecipeConfig
    from audiox_core.weights import WeightSource

    sizes = DEMO_SIZES.with_(vae_decoder_channels=16, vae_decoder_c_mults=(1, 2, 4, 8))
    cfg = dataclasses.replace(RecipeConfig.quick(), sizes=sizes, vae_decoder_steps=0, vae_phase1_own_decoder=True)
    Recipe(tmp_path / "run", cfg).run(("vae",))
    d = tmp_path / "run" / "vae"
    rep = json.loads((d / "report.json").read_text())
    assert rep["steps"] == 6 and "decoder" not in rep and rep["decoder_from"] == "phase 1"
    final = load_vae(d / "vae.safetensors")
    assert (final.model.cfg.dec_channels, final.model.cfg.dec_c_mults) == (16, (1, 2, 4, 8))
    assert (final.model.cfg.channels, final.model.cfg.c_mults) == (DEMO_SIZES.vae_channels, DEMO_SIZES.vae_c_mults)
    a, b = WeightSource(d / "vae.safetensors"), WeightSource(d / "vae_phase1.safetensors")
    assert set(a.keys()) == set(b.keys()) and all(torch.equal(a.read(k), b.read(k)) for k in a.keys())
