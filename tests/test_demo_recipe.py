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
