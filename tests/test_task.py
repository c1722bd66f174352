"""The task layer (audiox_core.task): a request is planned -- every decision made and checked --
before any work, and bad inputs are refused naming the request field."""
from __future__ import annotations

import pytest
import torch

from audiox_core import conditions
from audiox_core import generate as generation
from audiox_core.errors import InputError
from audiox_core.task import FusedContext, GenerationRequest, RequestError, generate, parse_ranges
from audiox_core.tiny import make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("audiox_turbo", seed=0)


@pytest.fixture
def no_work(monkeypatch):
    """Sampling, VAE and text encoding fail the test: plan() must decide without them."""
    def boom(*a, **k):
        raise AssertionError("work started while planning")
    for name in ("sample", "encode", "decode"):
        monkeypatch.setattr(generation, name, boom)
    monkeypatch.setattr(conditions, "encode_text", boom)


def _clip(seconds: float, sr: int = 8000) -> tuple:
    return torch.zeros(1, int(seconds * sr)), sr


@pytest.mark.parametrize("request_kw, field", [
    (dict(inpaint=[(0.0, 0.1)]), "init_audio"),
    (dict(keep_seconds=0.1), "init_audio"),
    (dict(init_audio=_clip(0.2), inpaint=[(0.0, 0.1)], keep_seconds=0.1), "inpaint"),
    (dict(init_audio=_clip(0.2), inpaint=[(0.15, 0.5)]), "inpaint"),
    (dict(duration=float("nan")), "duration"),
    (dict(duration=1.0, window_overlap=0.9), "window_overlap"),
    (dict(batch=0), "batch"),
    (dict(strength=1.5), "strength"),
])
def test_bad_requests_are_refused_naming_the_field_before_any_work(model, no_work, request_kw, field):
    with pytest.raises(RequestError) as caught:
        GenerationRequest(prompt="x", **request_kw).plan(model)
    assert caught.value.field == field, str(caught.value)


def test_official_noise_refusals_name_the_noise_setting(model, no_work):
    settings = generation.SamplerSettings.for_model(model, "turbo", steps=1, noise="official")
    for kw in (dict(negative_prompt="y"), dict(duration=1.0), dict(init_audio=_clip(0.2), strength=0.5)):
        with pytest.raises(RequestError) as caught:
            GenerationRequest(prompt="x", settings=settings, **kw).plan(model)
        assert caught.value.field == "settings.noise"


def test_plan_decides_duration_and_long_form(model, no_work):
    window = model.latent_length * model.config.vae.downsampling_ratio / model.config.sample_rate
    assert GenerationRequest(prompt="x").plan(model).duration == pytest.approx(window)
    assert not GenerationRequest(prompt="x").plan(model).long_form
    long_plan = GenerationRequest(prompt="x", duration=3 * window).plan(model)
    assert long_plan.long_form and long_plan.duration == pytest.approx(3 * window)
    # the init audio's length sets the duration; completion keeps at least the window
    assert GenerationRequest(init_audio=_clip(0.2)).plan(model).duration == pytest.approx(0.2)
    assert GenerationRequest(init_audio=_clip(0.2), keep_seconds=0.1).plan(model).duration == pytest.approx(window)


def test_encoded_request_plans_the_kept_frames(model, no_work):
    tokens = torch.zeros(1, 4, model.config.cond_dim)
    context = FusedContext(tokens, conditions.Conditions(), None, conditions.model_fingerprint(model))
    latents = torch.zeros(1, model.config.io_channels, model.latent_length)
    plan = GenerationRequest(context=context, init_latents=latents, keep_seconds=0.064).plan(model)
    fps = model.config.sample_rate / model.config.vae.downsampling_ratio
    assert plan.keep is not None and int(plan.keep.sum()) == round(0.064 * fps) and plan.keep[0] == 1.0
    with pytest.raises(RequestError) as caught:  # keeps the whole window: nothing to generate
        GenerationRequest(context=context, init_latents=latents, keep_seconds=10.0).plan(model)
    assert caught.value.field == "keep_seconds"
    with pytest.raises(RequestError) as caught:  # a mask without latents
        GenerationRequest(context=context, inpaint=[(0.0, 0.1)]).plan(model)
    assert caught.value.field == "init_latents"
    other = FusedContext(tokens, conditions.Conditions(), None, "another model")
    with pytest.raises(RequestError) as caught:
        GenerationRequest(context=other).plan(model)
    assert caught.value.field == "context"


def test_generate_takes_one_request(model):
    with pytest.raises(InputError, match="GenerationRequest"):
        generate(model, {"prompt": "x"})


def test_one_time_range_grammar():
    assert parse_ranges("3-4, 1:2; 1.5 to 2.5") == [(1.0, 2.5), (3.0, 4.0)]
    for bad in ("", "2-1", "abc", "1-"):
        with pytest.raises(InputError):
            parse_ranges(bad)
