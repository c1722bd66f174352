"""The demo recipe end to end at smoke-test size (plumbing only: the weights are useless)."""
from __future__ import annotations

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
