"""Demo-world training data: VAE audio source, examples, prepared (cached) dataset."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from audiox_core.demo import captions as C
from audiox_core.demo import world as W
from audiox_core.demo.dataset import (DataSpec, WorldAudioSource, caption_variants, prepare_world_data,
                                      sample_train_scene, world_examples)


def test_audio_source_is_deterministic_and_stereo():
    src = WorldAudioSource(seed=3, segment=4000)
    a, b, c = src(5, 3), src(5, 3), src(6, 3)
    assert a.shape == (3, 2, 4000) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, 0], a[:, 1])
    assert float(a.abs().max()) <= 0.9 + 1e-6
    assert float(a.abs().amax(dim=-1).min()) > 1e-3  # p_active: crops centred on sound
    with pytest.raises(Exception):
        WorldAudioSource(segment=10 ** 6)


def test_train_scenes_are_never_held_out():
    rng = np.random.default_rng(0)
    specs = [sample_train_scene(rng) for _ in range(200)]
    assert not any(W.is_heldout(s) for s in specs)
    assert {s.kind for s in specs} == {"event", "music"}


def test_caption_variants():
    rng = np.random.default_rng(1)
    for spec in W.make_dataset(30, 2, "train"):
        caps = caption_variants(spec, rng, 4)
        assert caps[0] == C.caption_canonical(spec)
        assert 1 <= len(caps) <= 4 and len(set(caps)) == len(caps)
        assert all(len(c.encode()) <= 127 for c in caps)


def test_world_examples_slices_and_frame_alignment():
    from audiox_core.media import frames_from_images

    spec = DataSpec(n=4, seed=1, captions=2, prompt_fraction=0.5, image_fraction=1.0)
    ex, rec = world_examples(spec, fps=25, size=64)
    ex2, rec2 = world_examples(spec, fps=25, size=64, start=2, stop=4)
    assert len(ex) == 4 and rec[2:] == rec2
    assert torch.equal(ex[3].audio, ex2[1].audio) and ex[3].caption == ex2[1].caption
    for e, r in zip(ex, rec):
        assert e.audio.shape == (1, 64000) and e.sample_rate == 16000
        assert list(e.caption.values()) == r["captions"] and e.type in ("", "audio_condition-audio")
        if r["visual"] == "video":
            assert e.video.shape == (100, 64, 64, 3) and e.video.dtype == torch.uint8 and e.video_fps == 25
            # the training pipeline's timestamp resampling must leave the frames untouched
            frames, ts, _ = frames_from_images(e.video, 25, fps=25, start=0, duration=4, size=64)
            assert torch.equal(frames, e.video.permute(0, 3, 1, 2))
        else:
            assert e.video.shape == (1, 64, 64, 3)
            sc = W.SceneSpec.from_dict(r["spec"])
            assert sc.kind == "event" and len({x.type for x in sc.events}) == 1


def test_prepare_world_data_caches_and_batches(tmp_path, caplog):
    from audiox_core.demo.build import build_demo_model, load_demo_t5, new_demo_t5, save_t5_folder
    from audiox_core.demo.model_config import demo_config

    cfg = demo_config()
    model = build_demo_model(cfg, seed=0)
    model.set_text_encoder(load_demo_t5(save_t5_folder(new_demo_t5(cfg), tmp_path / "t5"), cfg))
    spec = DataSpec(n=3, seed=0, captions=2, prompt_fraction=1.0, image_fraction=0.0)
    ds = prepare_world_data(model, spec, tmp_path / "cache", chunk=2)
    assert len(ds) == 3 and ds.cache_dir.parent == tmp_path / "cache"
    assert (ds.cache_dir / "scenes.jsonl").is_file() and (ds.cache_dir / "data.json").is_file()
    g = torch.Generator().manual_seed(0)
    b = ds.batch([0, 1, 2], g)
    assert b.x0.shape == (3, 32, 100)
    assert b.text.shape == (3, 128) and b.text.dtype == torch.long and b.text_present.all()
    assert b.video.shape == (3, 100, 17, 128) and b.video_present.all()  # CLIP hidden states per frame
    assert b.prompt is not None and b.prompt[0].shape == (3, 32, 100) and b.prompt_present.all()
    # each draw picks one of the caption variants of the item
    seen = set()
    for _ in range(12):
        seen.add(tuple(ds.batch([0], g).text[0, :20].tolist()))
    assert len(seen) == len(ds.records[0]["captions"]) == 2
    assert isinstance(ds.items[0].captions, dict)  # restored after each draw
    # second call: everything comes from the cache
    with caplog.at_level(logging.INFO, logger="audiox_core.training.data"):
        again = prepare_world_data(model, spec, tmp_path / "cache", chunk=2)
    assert again.cache_dir == ds.cache_dir
    assert any("0 computed" in r.getMessage() for r in caplog.records)
    assert torch.equal(again.items[1].mean, ds.items[1].mean)
