"""The procedural demo world: specs, renders, captions, splits, video, tasks."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audiox_core.demo import captions as C
from audiox_core.demo import world as W
from audiox_core.errors import InputError

SR = 16000


def _ev(cat, pitch, freq, onset, dur=0.25, amp=0.8):
    return W.SoundEvent(cat, pitch, freq, onset, dur, amp)


def _spec(*events, noise_db=None, duration=4.0):
    return W.SceneSpec("event", duration, events=tuple(events), noise_db=noise_db, seed=3)


def _peak_hz(x, sr=SR, lo=50.0, hi=4000.0):
    """Frequency of the largest |DFT| bin (8x zero padding), computed independently."""
    n = 8 * len(x)
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    f = np.arange(len(mag)) * sr / n
    m = (f >= lo) & (f <= hi)
    return f[m][np.argmax(mag[m])]


def _level_db(x, f, sr=SR):
    """Amplitude (dB) of the component at f by correlation with a complex exponential."""
    t = np.arange(len(x)) / sr
    return 20 * np.log10(2 * abs(np.sum(x * np.exp(-2j * np.pi * f * t))) / len(x) + 1e-12)


# ------------------------------------------------------------------------------------------
# determinism, shapes, normalisation
# ------------------------------------------------------------------------------------------
def test_sampling_and_rendering_are_deterministic():
    a = W.make_dataset(12, 7, "train")
    b = W.make_dataset(12, 7, "train")
    assert a == b
    assert W.make_dataset(12, 8, "train") != a
    for s in a[:4]:
        np.testing.assert_array_equal(W.render_audio(s), W.render_audio(s))
        np.testing.assert_array_equal(W.render_video(s), W.render_video(s))


def test_render_audio_shape_dtype_peak_and_stereo():
    spec = W.make_dataset(1, 1, "train", kind="event")[0]
    x = W.render_audio(spec)
    assert x.dtype == np.float32 and x.shape == (1, 64000)
    assert abs(float(np.max(np.abs(x))) - 0.9) < 1e-6
    st = W.render_audio(spec, sr=22050, duration=2.0, channels=2, peak=0.5)
    assert st.shape == (2, 44100) and abs(float(np.max(np.abs(st))) - 0.5) < 1e-6
    # centred pan: both channels equal
    np.testing.assert_allclose(st[0], st[1], atol=1e-6)
    with pytest.raises(InputError):
        W.render_audio(spec, channels=3)


def test_stereo_pan_moves_energy():
    spec = _spec(W.SoundEvent("beep", "mid", 440.0, 0.5, 0.3, 0.8, pan=-0.8))
    st = W.render_audio(spec, channels=2)
    assert np.sum(st[0] ** 2) > 10 * np.sum(st[1] ** 2)


def test_event_starts_exactly_at_onset_sample():
    for cat in W.CATEGORIES:
        pitch = None if cat in W.UNPITCHED else "mid"
        spec = _spec(_ev(cat, pitch, None if pitch is None else 440.0, 1.23456, W.EVENT_DURATIONS[cat][0]))
        x = W.render_audio(spec)[0]
        a = round(1.23456 * SR)
        assert np.all(x[:a] == 0), cat
        assert np.any(x[a:a + 3] != 0), cat
        end = a + round(W.EVENT_DURATIONS[cat][0] * SR)
        assert np.all(x[end:] == 0), cat


# ------------------------------------------------------------------------------------------
# the sounds themselves (checked with independent DFT computations)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cat", ["beep", "buzz", "bell", "drum"])
def test_pitched_event_fundamental(cat):
    f0 = 452.3
    spec = _spec(_ev(cat, "mid", f0, 0.5, W.EVENT_DURATIONS[cat][1]))
    x = W.render_audio(spec)[0]
    seg = x[round(0.5 * SR) + (int(0.05 * SR) if cat == "drum" else 0): round(0.5 * SR) + int(0.25 * SR)]
    assert abs(_peak_hz(seg) - f0) < 3.0


def test_buzz_is_odd_harmonic_square_and_bell_is_inharmonic():
    f0 = 300.0
    buzz = W.render_audio(_spec(_ev("buzz", "low", f0, 0.5, 0.3)))[0][8000 + 400:8000 + 4400]
    l1, l2, l3 = (_level_db(buzz, k * f0) for k in (1, 2, 3))
    assert abs((l3 - l1) - 20 * math.log10(1 / 3)) < 0.5  # 1/k amplitudes
    assert l2 - l1 < -40
    bell = W.render_audio(_spec(_ev("bell", "low", f0, 0.5, 0.45)))[0][8000:8000 + 3200]
    assert _level_db(bell, 2.76 * f0) - _level_db(bell, f0) > -15
    assert _level_db(bell, 2.0 * f0) - _level_db(bell, f0) < -30


@pytest.mark.parametrize("cat,sign", [("chirp_up", 1), ("chirp_down", -1)])
def test_chirp_sweeps_one_octave_around_its_pitch(cat, sign):
    f = 440.0
    x = W.render_audio(_spec(_ev(cat, "mid", f, 0.5, 0.3)))[0]
    a = round(0.5 * SR)
    w = int(0.03 * SR)
    f_start = _peak_hz(x[a + 80:a + 80 + w])  # 5-35 ms: 1/10 into the sweep
    f_end = _peak_hz(x[a + int(0.3 * SR) - 80 - w:a + int(0.3 * SR) - 80])
    assert sign * math.log2(f_end / f_start) > 0.7
    assert abs(math.log2(math.sqrt(f_start * f_end) / f)) < 0.05


def test_click_and_noise_are_broadband_and_short():
    click = W.render_audio(_spec(_ev("click", None, None, 0.5, 0.01)))[0]
    nz = np.flatnonzero(click)
    assert (nz[-1] - nz[0]) / SR <= 0.0101
    burst = W.render_audio(_spec(_ev("noise", None, None, 0.5, 0.2)))[0][8000:8000 + 3200]
    p = np.abs(np.fft.rfft(burst)) ** 2
    lo, hi = p[: len(p) // 2].sum(), p[len(p) // 2:].sum()
    assert 0.7 < lo / hi < 1.4  # white


def test_background_noise_level_is_relative_to_foreground_peak():
    spec = _spec(_ev("beep", "mid", 440.0, 1.0, 0.3), noise_db=-40.0)
    x = W.render_audio(spec, peak=1.0)[0]
    quiet = x[: SR // 2]
    assert abs(20 * np.log10(np.sqrt(np.mean(quiet ** 2))) - (-40.0)) < 1.0


# ------------------------------------------------------------------------------------------
# sampling rules
# ------------------------------------------------------------------------------------------
def test_sampled_event_scenes_respect_the_rules():
    cfg = W.DEFAULT_CONFIG
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = W.sample_scene(rng, "event")
        on = [e.onset for e in s.events]
        assert 1 <= len(on) <= cfg.max_events
        assert on == sorted(on) and on[0] >= cfg.first_onset and on[-1] <= s.duration - cfg.tail
        assert all(b - a >= cfg.min_spacing - 1e-9 for a, b in zip(on, on[1:]))
        assert all(e.onset + e.dur < n.onset for e, n in zip(s.events, s.events[1:]))
        assert len({e.type for e in s.events}) <= cfg.max_types
        for e in s.events:
            if e.category in W.UNPITCHED:
                assert e.pitch is None and e.freq is None
            else:
                centre = cfg.pitch_center(e.pitch)
                assert abs(math.log2(e.freq / centre)) <= cfg.pitch_jitter_octaves + 1e-6
                assert W.pitch_class_of(e.freq) == e.pitch


def test_runs_group_consecutive_types():
    s = _spec(_ev("beep", "high", 880, 0.2), _ev("beep", "high", 890, 0.8), _ev("bell", "low", 220, 1.4),
              _ev("beep", "high", 870, 2.0))
    assert s.runs == ((2, "beep", "high"), (1, "bell", "low"), (1, "beep", "high"))


def test_constraints_and_errors():
    rng = np.random.default_rng(1)
    s = W.sample_scene(rng, "event", count=3, types=[("bell", "low")])
    assert [e.type for e in s.events] == [("bell", "low")] * 3
    s = W.sample_scene(rng, "event", count=4, n_types=2, categories=["click", "drum"])
    assert {e.category for e in s.events} <= {"click", "drum"} and len({e.type for e in s.events}) == 2
    m = W.sample_scene(rng, "music", instrument="organ", tempo="fast", key="D", mode="minor", pattern="descending")
    assert (m.music.instrument, m.music.tempo, m.music.key, m.music.mode, m.music.pattern) == \
        ("organ", "fast", "D", "minor", "descending")
    with pytest.raises(InputError):
        W.sample_scene(rng, "event", categories=["whistle"])
    with pytest.raises(InputError):
        W.sample_scene(rng, "event", count=9)  # cannot fit with 0.5 s spacing
    with pytest.raises(InputError):
        W.sample_scene(rng, "speech")
    with pytest.raises(InputError):
        W.make_dataset(2, 0, "dev")


def test_music_scenes_follow_tempo_key_and_pattern():
    rng = np.random.default_rng(2)
    cfg = W.DEFAULT_CONFIG
    for _ in range(200):
        s = W.sample_scene(rng, "music")
        m = s.music
        lo, hi = cfg.tempo_range(m.tempo)
        assert lo <= m.bpm <= hi and W.tempo_class_of(m.bpm) == m.tempo
        ioi = np.diff([n.onset for n in m.notes])
        assert np.allclose(ioi, 60.0 / m.bpm, atol=2e-4)
        assert m.notes[-1].onset + m.notes[-1].dur <= s.duration
        scale = W.SCALES[m.mode]
        rel = [n.midi - W.TONIC_MIDI[m.key] for n in m.notes]
        assert all(r in scale for r in rel)
        steps = m.steps
        if m.pattern == "ascending":
            assert list(steps) == [(0, 2, 4, 7)[i % 4] for i in range(len(steps))]
        elif m.pattern == "descending":
            assert list(steps) == [(7, 4, 2, 0)[i % 4] for i in range(len(steps))]
        else:
            assert steps[0] == 0 and steps[-1] in (0, 7) and 2 in steps
            assert any(t in (1, 3, 5, 6) for t in steps)
            assert all(abs(b - a) <= 2 for a, b in zip(steps, steps[1:]))


def test_music_note_pitches_in_audio():
    s = W.sample_scene(np.random.default_rng(3), "music", instrument="sine", tempo="slow")
    x = W.render_audio(s)[0]
    for n in s.music.notes:
        a = round(n.onset * SR) + 400
        seg = x[a:a + int(0.4 * SR)]
        assert abs(12 * math.log2(_peak_hz(seg) / W.midi_to_hz(n.midi))) < 0.2


# ------------------------------------------------------------------------------------------
# captions
# ------------------------------------------------------------------------------------------
def test_canonical_captions():
    s = _spec(_ev("beep", "high", 880, 0.2), _ev("beep", "high", 890, 0.8), _ev("bell", "low", 220, 1.4))
    assert C.caption_canonical(s) == "two high beeps, then a low bell"
    s2 = _spec(_ev("click", None, None, 0.3, 0.01), _ev("chirp_up", "mid", 440, 1.0), noise_db=-40.0)
    assert C.caption_canonical(s2) == "a click, then a mid rising chirp with background noise"
    m = W.sample_scene(np.random.default_rng(0), "music", instrument="square", tempo="fast", key="D",
                       mode="minor", pattern="ascending", noise=False)
    assert C.caption_canonical(m) == "a fast ascending arpeggio on a square wave in D minor"
    u = W.sample_scene(np.random.default_rng(0), "music", instrument="organ", tempo="medium", key="A",
                       mode="major", pattern="melody", noise=False)
    assert C.caption_canonical(u) == "a medium-tempo melody on an organ in A major"


def test_varied_captions_are_ascii_varied_and_faithful():
    s = _spec(_ev("beep", "high", 880, 0.2), _ev("beep", "high", 890, 0.8), _ev("bell", "low", 220, 1.4))
    rng = np.random.default_rng(0)
    caps = [C.caption(s, rng) for _ in range(200)]
    assert len(set(caps)) > 50
    beep_words = [w for pair in C.CATEGORY_NOUNS["beep"] for w in pair]
    bell_words = [w for pair in C.CATEGORY_NOUNS["bell"] for w in pair]
    for c in caps:
        assert c.isascii()
        low = c.lower()
        i_beep = min(low.find(w) for w in beep_words if w in low)
        i_bell = min(low.find(w) for w in bell_words if w in low)
        assert i_beep < i_bell, c  # order preserved
        assert any(w in low for w in ("two ", "2 ", "pair")), c
        assert "low" in low or "deep" in low
        assert "high" in low
    assert any("followed by" in c for c in caps) and any("then" in c for c in caps)
    assert any("2 " in c for c in caps) and any("two " in c.lower() for c in caps)


def test_music_captions_mention_every_attribute():
    rng = np.random.default_rng(5)
    for _ in range(100):
        m = W.sample_scene(rng, "music")
        c = C.caption(m, rng)
        assert c.isascii()
        mm = m.music
        assert f"{mm.key} {mm.mode}" in c
        assert any(w in c.lower() for w in C.TEMPO_WORDS[mm.tempo])
        assert any(w in c.lower() for w in C.PATTERN_WORDS[mm.pattern])
        assert any(w in c.lower() for w in C.INSTRUMENT_WORDS[mm.instrument])


# ------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------
def test_heldout_split_is_disjoint_and_stable():
    train = W.make_dataset(400, 11, "train")
    val = W.make_dataset(100, 11, "val")
    test = W.make_dataset(100, 11, "test")
    assert not any(W.is_heldout(s) for s in train + val)
    assert all(W.is_heldout(s) for s in test)
    assert {W.combo_key(s) for s in test}.isdisjoint({W.combo_key(s) for s in train + val})
    assert {s.kind for s in test} == {"event", "music"}
    # the rule is a fixed hash: pin two combinations so a change of rule is noticed
    import hashlib
    for key in ("event|1xbeep:low", "music|sine|slow|C|major|ascending"):
        expected = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10 == 0
        assert W.combo_key(_key_spec(key)) == key
        assert W.is_heldout(_key_spec(key)) == expected


def _key_spec(key):
    if key.startswith("event"):
        return _spec(_ev("beep", "low", 220.0, 0.5))
    return W.sample_scene(np.random.default_rng(0), "music", instrument="sine", tempo="slow", key="C",
                          mode="major", pattern="ascending")


def test_spec_json_round_trip():
    for s in W.make_dataset(6, 3, "train"):
        d = json.loads(json.dumps(s.to_dict()))
        assert W.SceneSpec.from_dict(d) == s


# ------------------------------------------------------------------------------------------
# video and images
# ------------------------------------------------------------------------------------------
def test_video_flashes_exactly_at_onset_frames():
    fps = 25.0
    evs = (_ev("beep", "high", 880, 0.61), _ev("bell", "low", 220, 1.5, 0.45), _ev("click", None, None, 2.47, 0.01))
    s = _spec(*evs)
    v = W.render_video(s, fps=fps)
    assert v.shape == (100, 64, 64, 3) and v.dtype == np.uint8
    bg = np.asarray(W.BACKGROUND_RGB)
    ys = []
    for e in evs:
        cx, cy = W._event_center(e.pitch, 64)
        mask = W.shape_mask(W.SHAPES[e.category], 64, cx, cy, 0.14 * 64)
        k = int(math.floor(e.onset * fps + 0.5))
        assert k == round(e.onset * fps)
        np.testing.assert_array_equal(v[k][mask], np.broadcast_to(W.COLORS[e.category], (mask.sum(), 3)))
        np.testing.assert_array_equal(v[k - 1][mask], np.broadcast_to(bg, (mask.sum(), 3)))
        bright = [v[k + j][mask].astype(float).mean() for j in range(4)]
        assert bright == sorted(bright, reverse=True) and bright[0] > bright[3]
        ys.append(np.mean(np.nonzero(mask)[0]))
    assert ys[0] < ys[2] < ys[1]  # high on top, unpitched in the middle, low at the bottom
    assert np.all(v[0] == bg)


def test_every_category_has_its_own_shape_and_colour():
    assert len(set(W.SHAPES.values())) == len(W.CATEGORIES)
    assert len(set(W.COLORS.values())) == len(W.CATEGORIES)
    masks = [W.shape_mask(W.SHAPES[c], 64, 32, 32, 9) for c in W.CATEGORIES]
    for i in range(len(masks)):
        assert masks[i].sum() > 20
        for j in range(i):
            assert np.any(masks[i] != masks[j])


def test_music_video_bars_light_at_note_onsets():
    s = W.sample_scene(np.random.default_rng(4), "music", tempo="medium")
    v = W.render_video(s)
    lit = v.reshape(len(v), -1).astype(int).sum(axis=1)
    for n in s.music.notes:
        k = round(n.onset * 25)
        assert lit[k] > lit[k - 1]


def test_render_image_single_type_only():
    s = _spec(_ev("drum", "low", 200, 0.5), _ev("drum", "low", 210, 1.5))
    img = W.render_image(s, size=48)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    cx, cy = W._event_center("low", 48)
    mask = W.shape_mask("ring", 48, cx, cy, 0.14 * 48)
    assert np.all(img[mask] == np.asarray(W.COLORS["drum"]))
    assert np.all(img[~mask] == np.asarray(W.BACKGROUND_RGB))
    with pytest.raises(InputError):
        W.render_image(_spec(_ev("drum", "low", 200, 0.5), _ev("bell", "low", 210, 1.5)))
    with pytest.raises(InputError):
        W.render_image(W.make_dataset(1, 0, "train", kind="music")[0])


# ------------------------------------------------------------------------------------------
# tasks and configuration
# ------------------------------------------------------------------------------------------
def test_inpaint_ranges_and_masks():
    rng = np.random.default_rng(0)
    for s in W.make_dataset(50, 2, "train"):
        r = W.sample_inpaint_range(s, rng, mode="event")
        inside = W.events_in_range(s, r.start, r.end)
        assert len(inside) == 1
        item = inside[0]
        assert r.start < item.onset and item.onset + item.dur <= r.end + 1e-9
        rr = W.sample_inpaint_range(s, rng, mode="random")
        assert 0 <= rr.start < rr.end <= s.duration
    m = W.time_mask(16000, 16000, [W.TimeRange(0.25, 0.5)])
    assert m.sum() == 4000 and m[4000] and not m[3999] and not m[8000]
    s = W.make_dataset(1, 5, "train", kind="music")[0]
    keep = W.completion_keep(s)
    assert keep == 2.0
    sub = W.restrict_spec(s, keep, s.duration)
    assert all(n.onset >= keep for n in sub.music.notes) and len(sub.music.notes) < len(s.music.notes)
    with pytest.raises(InputError):
        W.completion_keep(s, 5.0)


def test_world_is_configurable():
    cfg = W.WorldConfig(sample_rate=8000, duration=2.5, fps=10, size=32, channels=2, max_events=2,
                        pitch_centers=(("low", 300.0), ("mid", 600.0), ("high", 1200.0)))
    s = W.sample_scene(np.random.default_rng(0), "event", cfg)
    assert s.duration == 2.5 and len(s.events) <= 2
    assert W.render_audio(s, cfg=cfg).shape == (2, 20000)
    assert W.render_video(s, cfg=cfg).shape == (25, 32, 32, 3)
    for e in s.events:
        if e.freq is not None:
            assert W.pitch_class_of(e.freq, cfg) == e.pitch


def test_render_example_bundles_one_training_item():
    cfg = W.WorldConfig(duration=2.0, max_events=2, channels=2)
    s = W.sample_scene(np.random.default_rng(0), "event", cfg)
    ex = C.render_example(s, np.random.default_rng(1), cfg)
    assert ex["audio"].shape == (2, 32000) and ex["video"].shape == (50, 64, 64, 3)
    assert ex["caption_canonical"] == C.caption_canonical(s) and ex["caption"].isascii() and ex["spec"] is s
    assert C.render_example(s, np.random.default_rng(1), cfg, video=False)["video"] is None


def test_splits_keep_the_event_fraction():
    for split in ("train", "test"):
        ds = W.make_dataset(400, 9, split)
        frac = np.mean([s.kind == "event" for s in ds])
        assert 0.42 < frac < 0.58, (split, frac)
