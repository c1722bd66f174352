"""The core side of the encoder, mask and fusion nodes: graph inputs checked and prepared in
audiox_core (visual source, sync choice, audio-prompt masking, condition checks, fusion report),
errors naming the field (the node's input) at fault."""
from __future__ import annotations

import math

import pytest
import torch

from audiox_core import conditions
from audiox_core.errors import FieldError
from audiox_core.task import check_mask_fits_audio
from audiox_core.tiny import make_tiny_model


@pytest.fixture(scope="module")
def turbo():
    return make_tiny_model("audiox_turbo", seed=3)


@pytest.fixture(scope="module")
def plain():
    return make_tiny_model("audiox", seed=3)


def field_of(call) -> str:
    with pytest.raises(FieldError) as e:
        call()
    return e.value.field


def cond(model, modality: str, batch: int = 1) -> conditions.Condition:
    tokens = torch.randn(batch, 3, 32)
    return conditions.Condition(modality, tokens, (True,) * batch, conditions.model_fingerprint(model))


# ------------------------------------------------------------------ video inputs
def test_exactly_one_visual_input_is_accepted():
    frames = torch.rand(2, 8, 8, 3)
    assert conditions.connected_visual_input(None, frames) == "images"
    assert conditions.connected_visual_input(object(), None) == "video"
    assert field_of(lambda: conditions.connected_visual_input(object(), frames)) == "images"
    assert field_of(lambda: conditions.connected_visual_input(None, None)) == "video"


def test_frames_are_checked_and_a_still_keeps_only_its_first_frame():
    frames = torch.rand(4, 8, 8, 3)
    visual = conditions.visual_from_frames(frames, 12.0)
    assert visual.fps == 12.0 and visual.frames.shape[0] == 4 and not visual.still
    assert field_of(lambda: conditions.visual_from_frames(frames, 0.0)) == "fps"
    assert field_of(lambda: conditions.visual_from_frames(torch.rand(0, 8, 8, 3), 12.0, field="video")) == "video"
    assert field_of(lambda: conditions.visual_from_frames(torch.rand(8, 8), 12.0)) == "images"
    still = conditions.visual_from_frames(frames, 0.0, field="image", still=True)
    assert still.still and still.fps is None and torch.equal(still.frames, frames[:1])
    single = conditions.visual_from_frames(frames[0], 0.0, field="image", still=True)  # one [H, W, 3] image
    assert torch.equal(single.frames, frames[:1])


def test_sync_choice(turbo, plain):
    vc = turbo.video_conditioner
    features = torch.randn(1, vc.sync_tokens, vc.dim)
    synchformer = object()
    assert conditions.resolve_sync(turbo, "synchformer", features, synchformer)[0] is features  # precomputed win
    assert conditions.resolve_sync(turbo, "zeros", None, synchformer) == (False, None)
    assert conditions.resolve_sync(turbo, "synchformer", None, synchformer) == (None, synchformer)
    assert field_of(lambda: conditions.resolve_sync(turbo, "synchformer")) == "synchformer"
    assert field_of(lambda: conditions.resolve_sync(turbo, "zeros", features[:, 1:])) == "sync_features"
    assert field_of(lambda: conditions.resolve_sync(turbo, "random")) == "sync"
    # no sync branch: whatever is connected is ignored
    assert conditions.resolve_sync(plain, "synchformer", features, synchformer) == (None, None)


def test_long_form_source_is_kept_unless_sync_was_precomputed(turbo):
    visual = conditions.visual_from_frames(torch.rand(3, 8, 8, 3), 5.0)
    for sync in (None, False):
        c = conditions.keep_long_form_source(cond(turbo, "video"), visual, start=1.5, resize="stretch", sync=sync)
        assert c.extra["long_form"]["sync_zeros"] is (sync is False) and c.extra["long_form"]["start"] == 1.5
    c = conditions.keep_long_form_source(cond(turbo, "video"), visual, start=0.0, resize="stretch",
                                         sync=torch.zeros(1, 4, 32))
    assert "long_form" not in c.extra


# ------------------------------------------------------------------ audio prompt
def test_audio_prompt_is_cropped_to_the_window_and_masked(turbo):
    sr = 1000
    used = conditions.audio_prompt_seconds(turbo)
    wave = torch.rand(1, 2, int((used + 3) * sr)) + 0.5  # no zero samples
    cropped = conditions.audio_prompt_waveform(turbo, wave, sr)
    assert cropped.shape[-1] == math.ceil((used + 0.5) * sr) and torch.equal(cropped, wave[..., :cropped.shape[-1]])
    blanked = conditions.audio_prompt_waveform(turbo, wave, sr, inpaint=[(0.5, 1.0)])
    assert torch.all(blanked[..., 500:1000] == 0) and torch.equal(blanked[..., :500], wave[..., :500])
    assert torch.equal(blanked[..., 1000:], wave[..., 1000:blanked.shape[-1]])
    assert torch.all(wave > 0)  # the input is not changed
    kept = conditions.audio_prompt_waveform(turbo, wave, sr, keep_seconds=0.25)
    assert torch.equal(kept, wave[..., :250])
    late = used + 1.0
    assert field_of(lambda: conditions.audio_prompt_waveform(turbo, wave, sr, inpaint=[(late, late + 1)])) == "mask"


def test_mask_is_checked_against_the_connected_audio():
    check_mask_fits_audio(1.0, ranges=[(0.2, 1.5)])  # only the start must lie inside
    check_mask_fits_audio(1.0, keep_seconds=1.0)
    with pytest.raises(FieldError, match="1.5-2 start") as e:
        check_mask_fits_audio(1.0, ranges=[(0.2, 0.5), (1.5, 2.0)])
    assert e.value.field == "ranges"
    assert field_of(lambda: check_mask_fits_audio(1.0, keep_seconds=1.5)) == "keep_seconds"


# ------------------------------------------------------------------ fusion
def test_connected_conditions_are_checked(turbo, plain):
    given = conditions.checked_conditions(turbo, text=cond(turbo, "text"), video=cond(turbo, "video", 2))
    assert given.text is not None and given.video.batch == 2 and given.audio is None
    assert field_of(lambda: conditions.checked_conditions(turbo, video=cond(turbo, "text"))) == "video"
    assert field_of(lambda: conditions.checked_conditions(turbo, text=cond(plain, "text"))) == "text"
    assert field_of(lambda: conditions.checked_conditions(turbo, video=cond(turbo, "video"))) == "text"  # no T5 here
    assert field_of(lambda: conditions.checked_conditions(turbo, text=cond(turbo, "text", 2),
                                                          audio=cond(turbo, "audio", 3))) == "audio"
    assert field_of(lambda: conditions.checked_modality_scale((0, 0.0, 0))) == "text_scale"
    assert conditions.checked_modality_scale((0, 1, 0.5)) == (0.0, 1.0, 0.5)


def test_fusion_report_and_gate_bars(turbo, plain):
    text = cond(turbo, "text")
    full, tokens, report, gates = conditions.fuse_with_report(turbo, conditions.Conditions(text=text), (1, 0.5, 1), 0)
    assert full.video is not None and full.audio is not None and tokens.device.type == "cpu"
    assert gates.shape == (1, 3) and "MAF gates" in report and "text 0.5" in report
    again = conditions.fuse_with_report(turbo, conditions.Conditions(text=text), (1, 0.5, 1), 0)[1]
    assert torch.equal(tokens, again)  # the seed fixes the absent audio's posterior sample
    bars = conditions.gate_bars(torch.tensor([[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]]), (1.0, 0.5, 2.0))
    assert bars == [{"modalities": ["video", "text", "audio"], "gates": pytest.approx([0.3, 0.5, 0.7]),
                     "scale": [1.0, 0.5, 2.0]}]
    assert conditions.gate_bars(None, None) == []
    report = conditions.fuse_with_report(plain, conditions.Conditions(text=cond(plain, "text")), (2, 1, 1), 0)[2]
    assert "no MAF block" in report and "video 2" in report


def test_dropping_modalities(turbo):
    given = conditions.Conditions(video=cond(turbo, "video", 2), text=cond(turbo, "text", 2),
                                  audio=cond(turbo, "audio"))
    kept, dropped = conditions.drop_modalities(turbo, given, video=True, audio=True)
    assert kept.video is None and kept.audio is None and kept.text is given.text and dropped == ("video", "audio")
    assert given.video is not None  # the input is not changed
    assert field_of(lambda: conditions.drop_modalities(turbo, given, text=True)) == "t5"


def test_require_condition_names_the_model_without_that_condition(turbo):
    for modality in conditions.MODALITIES:
        conditions.require_condition(turbo, modality)  # Turbo has all three
    from types import SimpleNamespace
    no_audio = SimpleNamespace(config=SimpleNamespace(variant="V"), video_conditioner=object(), text_spec=object(),
                               audio_conditioner=None)
    conditions.require_condition(no_audio, "text")
    with pytest.raises(FieldError, match="^V has no audio condition$") as e:
        conditions.require_condition(no_audio, "audio", field="m")
    assert e.value.field == "m"
