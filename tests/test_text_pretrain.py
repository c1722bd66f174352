"""T5 pre-training on world captions (recipe stage ``text``): labels against the scene specs, and a
tiny encoder that learns the labels of captions whose attribute combinations it never saw.

The tiny run proves the plumbing (labels → per-token heads → gradients reach T5 → held-out
accuracy is measured on the test split); the demo T5's real numbers are in the recipe report."""
import pytest
import torch

from audiox_core.demo import world as W
from audiox_core.demo.text_pretrain import HEADS, IGNORE, TextPretrainConfig, caption_labels, pretrain_t5


def _event(cat, pitch, onset):
    return W.SoundEvent(category=cat, pitch=pitch, freq=None if pitch is None else 440.0, onset=onset, dur=0.2, amp=0.8)


def test_labels_follow_the_runs_of_an_event_scene():
    spec = W.SceneSpec(kind="event", duration=4.0, events=(_event("beep", "high", 0.2), _event("beep", "high", 0.9),
                                                           _event("drum", None, 1.8)), noise_db=-40.0)
    lab = caption_labels(spec)
    cats = W.DEFAULT_CONFIG.categories
    assert lab["kind"] == 0 and lab["noise"] == 1 and lab["n_runs"] == 2
    assert (lab["run0_count"], lab["run0_category"], lab["run0_pitch"]) == (2, cats.index("beep") + 1, 3)
    assert (lab["run1_count"], lab["run1_category"], lab["run1_pitch"]) == (1, cats.index("drum") + 1, 0)
    assert (lab["run2_count"], lab["run2_category"], lab["run3_pitch"]) == (0, 0, 0)
    assert all(lab[k] == IGNORE for k in ("instrument", "tempo", "key", "mode", "pattern"))
    assert set(lab) == set(HEADS)


def test_labels_of_a_music_scene():
    spec = W.make_dataset(1, 3, "train", kind="music")[0]
    lab = caption_labels(spec)
    m, cfg = spec.music, W.DEFAULT_CONFIG
    assert lab["kind"] == 1 and lab["n_runs"] == IGNORE and lab["run0_category"] == IGNORE
    assert cfg.instruments[lab["instrument"]] == m.instrument and cfg.keys[lab["key"]] == m.key
    assert cfg.modes[lab["mode"]] == m.mode and cfg.patterns[lab["pattern"]] == m.pattern
    assert cfg.tempo_ranges[lab["tempo"]][0] == m.tempo


def test_tiny_t5_learns_caption_attributes_on_unseen_combinations():
    from transformers import T5Config, T5EncoderModel

    from audiox_core.conditioning.tokenizers import ByteTokenizer

    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=259, d_model=48, d_kv=12, d_ff=96, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=16, feed_forward_proj="relu", dropout_rate=0.0))
    before = {k: v.clone() for k, v in t5.state_dict().items()}
    seen = []
    res = pretrain_t5(t5, ByteTokenizer(), TextPretrainConfig(steps=150, batch=32, lr=3e-3, warmup=10, n_scenes=400,
                                                              eval_scenes=200),
                      callback=lambda s, n, info: seen.append(info["loss"]))
    assert res["steps"] == 150 and len(seen) == 150
    assert sum(seen[-20:]) / 20 < 0.6 * sum(seen[:5]) / 5
    held = res["heldout"]
    # event vs music (chance 0.5) and the major/minor word (chance 0.5) from captions never trained on
    assert held["kind"] > 0.85 and held["mode"] > 0.75
    assert not t5.training and not any(p.requires_grad for p in t5.parameters())
    assert any(not torch.equal(before[k], v) for k, v in t5.state_dict().items())

