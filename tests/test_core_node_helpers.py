"""Core functions the sampler / output / preview nodes delegate to (audiox_core, no ComfyUI)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from audiox_core import task
from audiox_core.acceleration import weight_dtype
from audiox_core.errors import FieldError, InputError
from audiox_core.generate import regenerated_seconds
from audiox_core.media.audio import checked_audio_value
from audiox_core.media.wav import save_wav_clips
from audiox_core.media import frames_under_audio, load_audio


def fake_model(objective: str, role: str = "", variant: str = "audiox"):
    return SimpleNamespace(objective=objective, info={"role": role}, config=SimpleNamespace(variant=variant))


def test_sampler_model_notes_refuse_v_models_in_turbo_and_warn_on_mismatch():
    with pytest.raises(task.RequestError, match="is audiox_maf \\(v-objective\\)") as caught:
        task.sampler_model_notes(fake_model("v", variant="audiox_maf"), "turbo")
    assert caught.value.field == "settings.mode"
    assert task.sampler_model_notes(fake_model("rectified_flow", "student"), "turbo") == []
    assert "Turbo base/teacher" in task.sampler_model_notes(fake_model("rectified_flow", "base"), "turbo")[0]
    assert "distilled Turbo student" in task.sampler_model_notes(fake_model("rectified_flow"), "base")[0]
    assert task.sampler_model_notes(fake_model("rectified_flow", "base"), "base") == []
    assert task.sampler_model_notes(fake_model("v"), "base") == []


def test_weight_dtype_names_and_auto_by_device():
    assert weight_dtype("fp16", torch.device("cpu")) is torch.float16
    assert weight_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert weight_dtype("auto", torch.device("cpu")) is torch.float32
    assert weight_dtype("auto", torch.device("mps")) is torch.float16
    assert weight_dtype("fp32", torch.device("mps")) is torch.float32


@pytest.mark.parametrize("audio, message", [
    ([1, 2], "needs an AUDIO"),
    ({"waveform": torch.zeros(4), "sample_rate": 8}, "expected \\[B, C, T\\]"),
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 8}, "0 samples"),
    ({"waveform": torch.tensor([[[0.0, float("nan")]]]), "sample_rate": 8}, "NaN"),
    ({"waveform": torch.zeros(1, 1, 4), "sample_rate": "x"}, "bad sample_rate 'x'"),
    ({"waveform": torch.zeros(1, 1, 4), "sample_rate": 0}, "bad sample_rate 0"),
])
def test_checked_audio_value_refuses(audio, message):
    with pytest.raises(InputError, match=message):
        checked_audio_value(audio)


def test_checked_audio_value_adds_the_batch_axis_and_floats():
    wave, sr = checked_audio_value({"waveform": torch.ones(2, 5, dtype=torch.float64), "sample_rate": 8.0})
    assert wave.shape == (1, 2, 5) and wave.dtype is torch.float32 and sr == 8 and isinstance(sr, int)


def test_regenerated_seconds_inverts_a_keep_mask():
    keep = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.0])
    assert regenerated_seconds(keep, 0.5, 2.8) == [[0.5, 1.5], [2.0, 2.8]]
    assert regenerated_seconds(None, 0.5, 3.0) == []
    assert regenerated_seconds(torch.ones(4), 0.5, 2.0) == []


def test_save_wav_clips_writes_one_clamped_file_per_clip(tmp_path):
    wave = torch.stack([torch.full((1, 80), 0.25), torch.full((1, 80), 3.0)])
    names = save_wav_clips(tmp_path / "sub", "clip", wave, 8000)
    assert names == ["clip_0.wav", "clip_1.wav"]
    loud, sr = load_audio(str(tmp_path / "sub" / "clip_1.wav"))
    assert sr == 8000 and loud.shape[-1] == 80 and float(loud.max()) == pytest.approx(1.0, abs=1e-4)


def test_frames_under_audio_cuts_frames_and_audio():
    frames = torch.rand(10, 2, 2, 3)  # 1 s at 10 fps
    segment, audio = frames_under_audio(frames, 10.0, 0.4, torch.ones(1, 100), 100)  # 1 s audio from 0.4 s
    assert torch.equal(segment, frames[4:]) and audio.shape[-1] == 60
    segment, audio = frames_under_audio(frames, 10.0, 0.0, torch.ones(1, 1), 100)  # shorter than a frame
    assert segment.shape[0] == 1 and audio.shape[-1] == 1
    bad = [((frames[:0], 10.0, 0.0), "frames"), ((frames, 0.0, 0.0), "fps"), ((frames, 10.0, 1.0), "start")]
    for args, field in bad:
        with pytest.raises(FieldError) as caught:
            frames_under_audio(*args, torch.ones(1, 10), 100)
        assert caught.value.field == field
