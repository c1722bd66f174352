"""CI version of ``bench/quality.py``: the shipped demo model follows held-out prompts.

Held-out prompts only (the world's ``test`` split, seed 2024: attribute combinations the training
set never contains, checked by :func:`audiox_core.demo.quality.heldout_report`): eight text→audio
event prompts and twelve text→music prompts, generated with Base at 50 steps with CFG (the model's
default scale) and Turbo at 4 steps, scored by the signal detectors.

Margins (chance = what a model that ignores the prompt gets by emitting one random class):

* the detectors are right on the ground-truth renders of the same scenes (>= 98 %, i.e. all);
* text→music, Base-50: tempo class >= chance (1/3) + 30 points, key >= chance (1/6) + 25 points
  (measured on the shipped model: 11/12 and 7/12);
* text→audio events: category (the set of detected event categories equals the caption's)
  >= chance (1/8) + 30 points, for Base-50 and Turbo-4; text→music the same margins for Turbo-4.

KNOWN SHORTFALLS (measured, see README "Demo model quality"): the event-category tests, the
Turbo-4 music test and the main-job test are ``xfail(strict=True)``.  Event categories: the demo
VAE keeps every event category of only 50 % of clips through a round trip (34 % before its new
decoder), and generations stay near chance (bench/quality.py, 50 held-out prompts: Base-50 10 %,
Turbo-4 10 %).  Turbo-4 music: the student follows text→music prompts less than its teacher
(30 prompts: key 33.3 % vs Base-50 56.7 %; the key margin needs 41.7 %).  The main job
(workflows/text_to_audio.json, bench/main_job.py) is not heard as its prompt.  Strict xfail: the
day a retrained model passes, they XPASS and fail, so the marker must be removed then.
Everything else below is asserted as is.

The full benchmark (every task, Base-4, wall times, the issue's targets) is ``bench/quality.py``.

The model files are the shipped ``models/demo`` (``AUDIOX_DEMO_DIR`` points elsewhere, e.g. a
recipe's ``export/models/demo``); they are part of the repository, so their absence is a failure
(``AUDIOX_ALLOW_NO_DEMO=1`` turns it into a skip, for trimmed checkouts).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_PROMPTS = 8
N_MUSIC = 12
MARGIN = 0.30
MUSIC_MARGINS = {"tempo": 0.30, "key": 0.25}


def _models_dir() -> Path:
    from audiox_core.demo.model_config import SHIPPED_LAYOUT
    env = os.environ.get("AUDIOX_DEMO_DIR")
    return Path(env) if env else ROOT / SHIPPED_LAYOUT["folder"]


def _missing(folder: Path) -> list:
    from audiox_core.demo.model_config import SHIPPED_LAYOUT
    need = [folder / Path(SHIPPED_LAYOUT[k]).name for k in ("base", "turbo")]
    need.append(folder / Path(SHIPPED_LAYOUT["t5"]).name / "model.safetensors")
    return [str(p) for p in need if not p.is_file()]


@pytest.fixture(scope="module")
def report():
    folder = _models_dir()
    missing = _missing(folder)
    if missing:
        msg = f"demo model files not present: {', '.join(missing)} (run the demo recipe and ship its export)"
        if os.environ.get("AUDIOX_ALLOW_NO_DEMO") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    import torch
    from audiox_core.demo import quality as Q

    torch.set_num_threads(min(2, torch.get_num_threads()))
    models = Q.load_demo_models(folder)
    q = Q.quality_items(n_text=N_PROMPTS, n_music=N_MUSIC, seed=2024, tasks=("t2a", "t2m"))
    return Q.run_quality(models, q, configs=("base50", "turbo4"), vae_column=False)


def test_prompts_are_held_out(report):
    h = report["heldout"]
    assert h["disjoint"] and h["eval_scenes"] == N_PROMPTS + N_MUSIC
    assert not h["combination_overlap"] and not h["caption_overlap"] and h["scene_overlap"] == 0


def test_detectors_right_on_ground_truth(report):
    gt = report["ground_truth"]["t2a"]
    assert gt["n"] == N_PROMPTS
    for m in ("category", "count", "order"):
        assert gt[m] >= 0.98, (m, gt[m])
    gt = report["ground_truth"]["t2m"]
    assert gt["n"] == N_MUSIC
    for m in MUSIC_MARGINS:
        assert gt[m] >= 0.98, (m, gt[m])


def test_every_prompt_gives_sane_audio(report):
    """Plumbing on the real shipped weights: every clip is finite, audible and of the model's length."""
    for config in ("base50", "turbo4"):
        for task, n in (("t2a", N_PROMPTS), ("t2m", N_MUSIC)):
            stats = report["results"][config]["audio_stats"][task]
            assert len(stats) == n
            for st in stats:
                assert st["finite"] and st["seconds"] == pytest.approx(4.0, abs=0.01) and st["rms"] > 1e-3, \
                    (config, task, st)


def _chance(attr: str) -> float:
    from audiox_core.demo.world import DEFAULT_CONFIG as W
    return 1.0 / len({"tempo": W.tempo_ranges, "key": W.keys}[attr])


_TURBO_SHORTFALL = pytest.mark.xfail(strict=True, reason="known shortfall (module docstring): the 4-step student "
                                     "follows music prompts less than its teacher (key 33.3 % on 30 prompts, "
                                     "needs chance 16.7 % + 25 points)")


@pytest.mark.parametrize("config", ["base50", pytest.param("turbo4", marks=_TURBO_SHORTFALL)])
def test_music_attributes_beat_chance(report, config):
    row = report["results"][config]["rows"]["t2m"]
    assert row["n"] == N_MUSIC
    for attr, margin in MUSIC_MARGINS.items():
        chance = _chance(attr)
        assert row[attr] >= chance + margin, \
            f"{config}: text→music {attr} accuracy {row[attr]:.1%} < chance {chance:.1%} + {margin:.0%}"


@pytest.mark.xfail(strict=True, reason="known shortfall of the current demo model (module docstring): text "
                   "event category near chance level (50 prompts: Base-50 10 %, Turbo-4 10 %; needs 42.5 %)")
@pytest.mark.parametrize("config", ["base50", "turbo4"])
def test_category_beats_chance(report, config):
    from audiox_core.demo.world import CATEGORIES
    chance = 1.0 / len(CATEGORIES)
    acc = report["results"][config]["rows"]["t2a"]["category"]
    assert acc >= chance + MARGIN, f"{config}: text category accuracy {acc:.1%} < chance {chance:.1%} + {MARGIN:.0%}"


# ----------------------------------------------------------------------------------------------
# The scoring itself (no model needed)
# ----------------------------------------------------------------------------------------------
def _items(**kw):
    from audiox_core.demo import quality as Q
    base = dict(n_text=0, n_video=0, n_music=0, n_image=0, n_inpaint=0, n_completion=0, seed=77)
    base.update(kw)
    return Q.quality_items(**base)


def test_event_scores_fail_on_wrong_audio():
    import numpy as np
    from audiox_core.demo import quality as Q
    q = _items(n_text=6, tasks=("t2a",))
    items = q.items["t2a"]
    sr = q.world.sample_rate
    for it in items:
        r = Q.score(it, it.audio, sr)
        assert (r["category"], r["count"], r["order"]) == (1.0, 1.0, 1.0)
        silent = Q.score(it, np.zeros_like(it.audio), sr)
        assert silent["category"] == 0.0 and silent["count"] == 0.0
    # another scene's audio: wrong whenever the category sets differ
    a, b = next((x, y) for x in items for y in items
                if {e.category for e in x.spec.events} != {e.category for e in y.spec.events})
    assert Q.score(a, b.audio, sr)["category"] == 0.0


def test_v2a_onset_metrics_follow_a_shift():
    import numpy as np
    from audiox_core.demo import quality as Q
    q = _items(n_video=3, tasks=("v2a",))
    sr = q.world.sample_rate
    for it in q.items["v2a"]:
        assert Q.score(it, it.audio, sr)["onset_events"] == 1.0
        shift = int(0.08 * sr)  # 80 ms late: every onset misses the 50 ms window
        late = np.concatenate([np.zeros((1, shift), np.float32), it.audio[:, :-shift]], axis=1)
        r = Q.score(it, late, sr)
        assert r["onset_events"] == 0.0 and 60 <= r["onset_median_ms"] <= 100


def test_inpaint_and_completion_scores():
    from audiox_core.demo import quality as Q
    from audiox_core.demo import world as W
    q = _items(n_inpaint=3, n_completion=3, tasks=("inpaint", "complete_m", "complete_e"))
    sr = q.world.sample_rate
    for it in q.items["inpaint"]:
        keep = ~W.time_mask(it.audio.shape[-1], sr, [W.TimeRange(*it.gap)])
        r = Q.score(it, it.audio, sr, raw=it.audio, vae_ref=it.audio, keep_mask=keep)
        assert r["inside_category"] == 1.0 and r["kept_snr_db"] >= 150 and abs(r["latent_kept_db"]) < 1e-6
        hole = it.audio * keep[None, :]  # the gap left silent
        assert Q.score(it, hole, sr)["inside_count"] == 0.0
    for it in q.items["complete_m"] + q.items["complete_e"]:
        r = Q.score(it, it.audio, sr)
        names = ("same_tempo", "onset", "in_key") if it.task == "complete_m" else ("after_category", "after_count")
        assert all(r[n] == 1.0 for n in names), r
        if it.task == "complete_m":  # the continuation removed: no note after the join
            cut = it.audio.copy()
            cut[:, int(it.keep * sr):] = 0
            assert Q.score(it, cut, sr)["onset"] == 0.0


def test_heldout_report_catches_a_training_scene():
    from audiox_core.demo import captions as C
    from audiox_core.demo import quality as Q
    from audiox_core.demo import world as W
    from audiox_core.errors import AudioXError
    q = _items(n_text=4, tasks=("t2a",))
    rep = Q.heldout_report(q, train_n=200)
    assert rep["disjoint"] and rep["eval_scenes"] == 4
    train = W.make_dataset(1, 0, "train", q.world)[0]
    it = q.items["t2a"][0]
    q.items["t2a"].append(Q.Item("t2a", 99, train, C.caption_canonical(train), it.audio))
    with pytest.raises(AudioXError, match="overlap"):
        Q.heldout_report(q, train_n=200)


# ----------------------------------------------------------------------------------------------
# The main job (what ./demo plays first): workflows/text_to_audio.json, scored like bench/main_job.py
# ----------------------------------------------------------------------------------------------
def _main_job_prompt() -> str:
    import json
    wf = json.loads((ROOT / "workflows" / "text_to_audio.json").read_text(encoding="utf-8"))
    return next(n["widgets_values"][0] for n in wf["nodes"] if n["type"] == "AudioXTextEncoder")


def test_caption_scoring_on_renders():
    """score_caption finds the prompt's scene and passes a render of it, fails a render of another."""
    from audiox_core.demo import quality as Q
    from audiox_core.demo import world
    from audiox_core.demo.captions import events_for_caption

    prompt = _main_job_prompt()
    seq = events_for_caption(prompt)
    assert seq == [("bell", "high"), ("bell", "high"), ("beep", "low")]
    spec = world.SceneSpec("event", world.DEFAULT_CONFIG.duration, tuple(
        world.SoundEvent(c, p, world.DEFAULT_CONFIG.pitch_center(p), 0.3 + 1.0 * i, 0.25, 0.8, 0.0)
        for i, (c, p) in enumerate(seq)))
    audio = world.render_audio(spec)[0]
    good = Q.score_caption(audio, world.DEFAULT_CONFIG.sample_rate, prompt)
    assert (good["category"], good["count"], good["order"]) == (1.0, 1.0, 1.0)
    other = Q.score_caption(audio, world.DEFAULT_CONFIG.sample_rate, "three low beeps")
    assert (other["category"], other["count"], other["order"]) == (0.0, 1.0, 0.0)


@pytest.mark.xfail(strict=True, reason="known shortfall (bench/main_job.py, 2026-12-07): the graph's clip (seed 42) "
                   "is detected as a high chirp and two noise bursts, not two high bells and a low beep; over 21 "
                   "seeds category 0 %, count 43 %, order 0 % (the demo VAE turns bells into drum-like sounds)")
def test_main_job_sounds_like_its_prompt(tmp_path):
    if _missing(_models_dir()):
        pytest.skip("demo model files not present")
    from audiox_core import media
    from audiox_core.demo import quality as Q
    from runner.headless import run_workflow_file

    run = run_workflow_file(ROOT / "workflows" / "text_to_audio.json", tmp_path)
    wav = next(p for p in run.written if str(p).endswith(".wav"))
    audio, sr = media.load_audio(str(wav))
    s = Q.score_caption(audio.mean(dim=0).numpy(), sr, _main_job_prompt())
    assert (s["category"], s["count"], s["order"]) == (1.0, 1.0, 1.0), s
