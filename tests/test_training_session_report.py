"""What the training nodes ask the core to decide (audiox_core.training.session / report / lora / plot),
checked without ComfyUI: output names, run configs from node settings, the inputs a run is refused
for (each error naming its field), dataset folder checks and stamps, the live progress text and
messages, preview clips, reports and the loader's LoRA checks."""
from __future__ import annotations

import types

import pytest
import torch

from audiox_core import tiny
from audiox_core.errors import CheckpointError, FieldError
from audiox_core.training import create_lora, report, session
from audiox_core.training import lora as lora_files
from audiox_core.training.plot import loss_panels_image


def field_of(fn, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(FieldError) as ei:
        fn(*args, **kwargs)
    return ei.value.field, str(ei.value)


# ------------------------------------------------------------------ names, precision, configs
@pytest.mark.parametrize("value, name", [("my_lora", "my_lora"), (" sub/x y.safetensors ", "sub/x y"),
                                         ("a.b-c", "a.b-c")])
def test_output_names_are_kept_without_the_suffix(value, name):
    assert session.check_output_name(value) == name


@pytest.mark.parametrize("value", ["", ".safetensors", "../x", "a//b", "a/./b", "x?", "/abs"])
def test_bad_output_names_name_the_field(value):
    field, message = field_of(session.check_output_name, value)
    assert field == "output_name" and repr(value) in message


def test_autocast_precision_keeps_a_choice_and_uses_fp32_on_the_cpu():
    assert session.autocast_precision("bf16", torch.device("cpu")) == "bf16"
    assert session.autocast_precision("auto", torch.device("cpu")) == "fp32"


LORA_SETTINGS = dict(steps=10, learning_rate=1e-4, rank=4, alpha=0.0, dropout=0.0, targets="all", include_maf=False,
                     batch_size=2, grad_accum=3, warmup_steps=1, precision="fp32", gradient_checkpointing=False,
                     ema=True, mask_video=0.6, mask_text=0.2, mask_audio=0.6, cfg_dropout=0.1, seed=2 ** 64 - 1,
                     save_every=5)


def test_lora_config_from_node_settings():
    cfg = session.lora_config("sub/run", **LORA_SETTINGS)
    assert cfg.name == "run" and cfg.lora_alpha is None and cfg.seed == (2 ** 64 - 1) % 2 ** 62
    assert (cfg.batch_size, cfg.grad_accum, cfg.ema, cfg.train) == (2, 3, True, ("lora",))
    assert session.lora_config("x", **{**LORA_SETTINGS, "alpha": 8.0}).lora_alpha == 8.0
    field, message = field_of(session.lora_config, "x", **{**LORA_SETTINGS, "mask_text": 1.5})
    assert field == "mask_video" and "1.5" in message


def test_distill_config_draws_the_student_steps_uniformly():
    cfg = session.distill_config("a/b", steps=3, learning_rate=1e-5, student_steps=4, guidance=6.0, gan=False,
                                 mode="lora", lora_rank=8, precision="fp32", gradient_checkpointing=False, seed=7,
                                 save_every=0)
    assert cfg.name == "b" and cfg.timestep_probs == (0.25, 0.25, 0.25, 0.25) and cfg.student_steps == 4


def test_distill_config_schedules():
    """The named update schedules reach the DistillConfig (official by default: 5 student updates
    per critic update, GAN weight 1); an unknown name is refused naming ``schedule``."""
    kw = dict(steps=12, learning_rate=1e-5, student_steps=4, guidance=6.0, gan=True, mode="full", lora_rank=8,
              precision="fp32", gradient_checkpointing=False, seed=0, save_every=0)
    official = session.distill_config("a", **kw)
    heavy = session.distill_config("a", **kw, schedule="critic-heavy")
    assert (official.update_ratio, official.fake_updates, official.gan_weight) == (5, 1, 1.0)
    assert (heavy.update_ratio, heavy.fake_updates, heavy.gan_weight) == (1, 5, 10.0)
    # 12 steps: 10 student updates of 12 with 5 : 1, 2 with 1 : 5
    assert sum(official.is_student_step(s) for s in range(1, 13)) == 10
    assert sum(heavy.is_student_step(s) for s in range(1, 13)) == 2
    field, message = field_of(session.distill_config, "a", **kw, schedule="fast")
    assert field == "schedule" and "official" in message and "critic-heavy" in message


# ------------------------------------------------------------------ inputs a run is refused for
def test_run_input_checks_name_their_field():
    turbo, v_model = tiny.make_tiny_model("audiox_turbo", seed=0), tiny.make_tiny_model("audiox", seed=0)
    from audiox_core.conditions import model_fingerprint
    assert field_of(session.check_trainable, turbo, 1, model_fingerprint(turbo), "v")[0] == "model"
    assert field_of(session.check_trainable, turbo, 0, model_fingerprint(v_model), "audiox")[0] == "dataset"
    session.check_trainable(turbo, 0, model_fingerprint(turbo), "audiox_turbo")
    assert field_of(session.check_lora_targets, turbo, "t", "everything", False)[0] == "targets"
    assert field_of(session.check_teacher, v_model, "audiox", "lora")[0] == "model"
    assert field_of(session.check_teacher, turbo, "audiox_turbo", "half")[0] == "mode"
    session.check_teacher(turbo, "audiox_turbo", "full")


def test_video_conditions_need_a_video_branch_and_a_connected_synchformer():
    without = types.SimpleNamespace(video_conditioner=None)
    with_video = types.SimpleNamespace(video_conditioner=object())
    assert field_of(session.check_video_conditions, without, "m", 2, False, "zeros", False)[0] == "videos"
    assert field_of(session.check_video_conditions, with_video, "m", 2, True, "synchformer", False)[0] == "synchformer"
    assert session.check_video_conditions(with_video, "m", 2, True, "synchformer", True) is True
    assert session.check_video_conditions(with_video, "m", 2, True, "zeros", False) is False
    assert session.check_video_conditions(without, "m", 0, False, "synchformer", False) is False


# ------------------------------------------------------------------ dataset folders
def test_dataset_folder_checks_name_folder_or_manifest(tmp_path):
    roots = [tmp_path]
    (tmp_path / "empty").mkdir()
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").write_bytes(b"RIFF")
    assert field_of(session.dataset_folder, " ", "", roots)[0] == "folder"
    assert field_of(session.dataset_folder, "missing", "", roots)[0] == "folder"
    field, message = field_of(session.dataset_folder, "empty", "", roots)
    assert field == "folder" and "no audio files" in message
    assert field_of(session.dataset_folder, "../elsewhere", "", roots)[0] == "folder"
    assert session.dataset_folder("clips", "", roots) == (tmp_path / "clips").resolve()
    field, message = field_of(session.dataset_folder, "clips", "meta.jsonl", roots)
    assert field == "manifest" and "not found" in message


def test_folder_stamp_changes_with_a_file_of_the_folder(tmp_path):
    (tmp_path / "clips").mkdir()
    wav = tmp_path / "clips" / "a.wav"
    wav.write_bytes(b"1234")
    first = session.folder_stamp("clips", "", [tmp_path])
    assert session.folder_stamp("clips", "", [tmp_path]) == first
    assert session.folder_stamp("clips", "m.csv", [tmp_path]) != first
    wav.write_bytes(b"123456")
    assert session.folder_stamp("clips", "", [tmp_path]) != first
    assert session.folder_stamp("../x", "", [tmp_path]) == "refused:../x"


# ------------------------------------------------------------------ live progress and reports
def test_live_progress_text_and_throttled_messages():
    history = [{"step": 1, "loss": 0.5, "lr": 1e-4}]
    progress = report.LiveProgress("LoRA", history, live_seconds=3600.0)
    text = progress.text(1, 10, {"loss": 0.5, "lr": 1e-4})
    assert text.startswith("LoRA step 1/10") and "loss 0.5" in text and "lr 0.0001" in text
    first = progress.live(1, 10, {"lr": 1e-4}, checkpoint="ck/step_1.safetensors")
    assert first["reset"] and first["entries"] == [{"step": 1, "loss": 0.5, "lr": 1e-4}]
    assert first["checkpoint"] == "ck/step_1.safetensors"
    history.append({"step": 2, "loss": 0.25})
    assert progress.live(2, 10, {}) is None  # within live_seconds
    forced = progress.live(2, 10, {}, force=True)
    assert not forced["reset"] and forced["entries"] == [{"step": 2, "loss": 0.25}]


def test_preview_clips_every_n_steps_and_failures_are_reported():
    def preview(step):
        if step == 4:
            raise RuntimeError("out of memory")
        return {"file": f"clip{step}"}
    progress = report.LiveProgress("distill", [], preview_every=2, preview=preview)
    assert progress.preview_clip(1) is None
    assert progress.preview_clip(2) == {"step": 2, "audio": {"file": "clip2"}}
    assert progress.preview_clip(4) == {"step": 4, "error": "out of memory"}


def test_newest_checkpoint_and_loss_summary(tmp_path):
    assert report.newest_checkpoint(tmp_path / "none") is None
    for step in (2, 10):
        (tmp_path / f"step_{step:08d}.safetensors").write_bytes(b"")
    assert report.newest_checkpoint(tmp_path).name == "step_00000010.safetensors"
    assert report.loss_summary([], "loss_dmd") == "loss_dmd: no steps"
    summary = report.loss_summary([{"loss": 4.0}, {"loss": 2.0}])
    assert summary == "loss: first 4, last 2, mean of the last 2 3"


def test_loss_panels_stack_only_the_keys_the_history_has():
    history = [{"step": i, "loss_dmd": 1.0 / i, "loss_fake": 0.5} for i in range(1, 6)]
    both = loss_panels_image(history, [("loss_dmd", "dmd"), ("loss_fake", "fake")], width=240, height=120)
    one = loss_panels_image(history, [("loss_dmd", "dmd"), ("missing", "x")], width=240, height=120)
    assert both.shape == (1, 240, 240, 3) and one.shape == (1, 120, 240, 3)


# ------------------------------------------------------------------ the LoRA loader's checks
def test_check_applicable_names_the_lora_and_the_model():
    turbo, other = tiny.make_tiny_model("audiox_turbo", seed=0), tiny.make_tiny_model("audiox", seed=0)
    lora = create_lora(turbo, rank=2)
    lora_files.check_applicable(lora, turbo, label="mine", model_name="turbo", variant="audiox_turbo",
                                allow_other_weights=False)
    with pytest.raises(CheckpointError, match="'mine' does not belong to this model \\(v, audiox\\)"):
        lora_files.check_applicable(lora, other, label="mine", model_name="v", variant="audiox",
                                    allow_other_weights=True)
    assert lora_files.stack_summary((), False) == ""
    info = lora_files.applied_info("mine", lora, 0.5, ((lora, 0.5),), True)
    assert "mine: rank 2" in info and "strength 0.5" in info and "merged into the weights" in info
