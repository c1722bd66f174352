"""audiox_core.generate.keep_original_audio / check_encode_length / checked_latents: the VAE nodes'
decisions."""
from __future__ import annotations

import re

import pytest
import torch

from audiox_core.checkpoint import load_error_source
from audiox_core.errors import CheckpointError, FieldError, InputError
from audiox_core.generate import (MAX_SECONDS, VAEOnly, check_encode_length, checked_latents, keep_original_audio,
                                  waveform_keep)
from audiox_core.media import resample
from audiox_core.tiny import make_tiny_model


def test_keep_original_audio_restores_kept_samples_and_blends_the_rest():
    torch.manual_seed(0)
    decoded = torch.randn(2, 2, 400)
    decoded_before = decoded.clone()
    original = torch.randn(1, 1, 380)  # mono, shorter than the decode
    keep = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])  # 5 latent frames of 80 samples
    out = keep_original_audio(decoded, 8000, original, 8000, keep, 400)
    weights = waveform_keep(keep, 400)
    kept = weights == 1.0
    kept[380:] = False
    assert torch.equal(out[..., kept], original.expand(2, 2, -1)[..., kept[:380]])
    assert torch.equal(out[..., weights == 0.0], decoded[..., weights == 0.0])
    assert torch.equal(out[..., 380:], decoded[..., 380:])  # past the original: the decode as is
    assert torch.equal(decoded, decoded_before)  # the input is not written


def test_keep_original_audio_resamples_the_original():
    decoded = torch.zeros(1, 1, 320)
    original = torch.randn(1, 1, 640)
    out = keep_original_audio(decoded, 8000, original, 16000, torch.ones(4), 320)
    assert torch.equal(out, resample(original, 16000, 8000)[..., :320])


def test_check_encode_length_refuses_too_long_and_too_short_audio():
    vae = VAEOnly(make_tiny_model("audiox_turbo").pretransform, 8000)
    ratio = vae.config.vae.downsampling_ratio
    check_encode_length(vae, ratio, 8000)  # one latent frame: fine
    with pytest.raises(FieldError, match="shorter than one latent frame") as err:
        check_encode_length(vae, ratio - 1, 8000, field="clip")
    assert err.value.field == "clip"
    with pytest.raises(FieldError, match=f"is 301.0 s long; my node takes at most {MAX_SECONDS:g} s"):
        check_encode_length(vae, 301 * 100, 100, user="my node")


def test_load_error_source_names_the_file_at_fault():
    blamed = CheckpointError("does not fit")
    blamed.culprit = "vae"
    assert load_error_source(blamed) == "vae"
    assert load_error_source(CheckpointError("x: This checkpoint has no VAE weights: pass ...")) == "missing_vae"
    assert load_error_source(CheckpointError("x: This checkpoint has no CLIP vision tower")) == "missing_clip_vision"
    assert load_error_source(InputError("no VAE weights")) == "checkpoint"  # only load_model's CheckpointError
    assert load_error_source(CheckpointError("truncated")) == "checkpoint"


def test_checked_latents_refuses_what_the_vae_cannot_decode():
    latents = torch.zeros(2, 4, 7)
    assert checked_latents({"samples": latents}, 4) is latents
    for value, words in (([latents], "needs a LATENT, got list"), ({"samples": torch.zeros(4, 7)}, "[B, C, L]"),
                         ({"samples": latents}, "has 4 channels but this VAE decodes 8")):
        with pytest.raises(FieldError, match=re.escape(words)) as info:
            checked_latents(value, 8, field="latent")
        assert info.value.field == "latent"
