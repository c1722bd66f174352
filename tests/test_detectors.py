"""Detectors and metrics of the demo world, validated on ground-truth renders."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from audiox_core.demo import degrade as G
from audiox_core.demo import detectors as D
from audiox_core.demo import world as W
from audiox_core.demo.classifier import SoftmaxClassifier
from audiox_core.demo.validation import EVENT_METRICS, MUSIC_METRICS, validation_specs
from audiox_core.errors import InputError

SR = 16000


def _tone(f, dur, sr=SR, amp=0.5):
    t = np.arange(int(dur * sr)) / sr
    env = np.minimum(1.0, np.minimum(t / 0.005, (dur - t) / 0.02))
    return amp * np.sin(2 * np.pi * f * t) * env


def _place(parts, total=3.0, sr=SR):
    x = np.zeros(int(total * sr))
    for onset, y in parts:
        a = int(round(onset * sr))
        x[a:a + len(y)] += y
    return x


# ------------------------------------------------------------------------------------------
# reduced validation (the full one is bench/validate_detectors.py)
# ------------------------------------------------------------------------------------------
def test_reduced_validation_reaches_98_percent():
    ev, mu = validation_specs(60, 40, seed=2024)
    degr = G.degradations(SR)
    names = list(degr)
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {}
    t_det = 0.0
    for i, spec in enumerate(ev + mu):
        x = degr[names[i % len(names)]](W.render_audio(spec, SR)[0], rng)
        t0 = time.perf_counter()
        if spec.kind == "event":
            r = D.evaluate_event_clip(x, SR, spec)
            items = [("event/" + k, r[k]) for k in EVENT_METRICS]
        else:
            r = D.evaluate_music_clip(x, SR, spec)
            items = [("music/" + k, r[k]) for k in MUSIC_METRICS]
        t_det += time.perf_counter() - t0
        for k, v in items:
            rows.setdefault(k, []).append(float(v))
    acc = {k: float(np.mean(v)) for k, v in rows.items()}
    low = {k: v for k, v in acc.items() if v < 0.98}
    assert not low, f"detector accuracy below 98 %: {low}"
    assert t_det / len(ev + mu) < 0.5  # well under 1 s per clip


def test_onset_errors_are_small_on_clean_renders():
    ev, _ = validation_specs(30, 0, seed=7)
    errs = []
    for s in ev:
        r = D.evaluate_event_clip(W.render_audio(s)[0], SR, s)
        errs += [e for e in r["onset_errors_ms"] if e is not None]
    assert len(errs) >= 30 and max(errs) < 15.0 and np.median(errs) < 6.0


# ------------------------------------------------------------------------------------------
# onsets, pitch, key, pattern on hand-made signals (independent of the world's synthesis)
# ------------------------------------------------------------------------------------------
def test_onsets_of_handmade_tone_bursts():
    times = [0.3, 1.05, 1.9, 2.4]
    x = _place([(t, _tone(f, 0.2)) for t, f in zip(times, (300, 700, 1500, 500))])
    det = D.detect_onsets(x, SR)
    assert len(det) == len(times)
    assert np.max(np.abs(det - np.asarray(times))) < 0.012


def test_no_onsets_in_silence_steady_tone_or_steady_noise():
    assert len(D.detect_onsets(np.zeros(SR), SR)) == 0
    t = np.arange(2 * SR) / SR
    assert len(D.detect_onsets(np.sin(2 * np.pi * 440 * t), SR)) == 0
    noise = np.random.default_rng(0).standard_normal(2 * SR) * 0.1
    assert len(D.detect_onsets(noise, SR)) == 0


def test_rates_channels_and_torch_input():
    x = _place([(0.5, _tone(440, 0.3)), (1.5, _tone(880, 0.3))], total=2.5, sr=44100)
    stereo = torch.from_numpy(np.stack([x, 0.5 * x])[None]).float()  # [1, 2, N]
    det = D.detect_onsets(stereo, 44100)
    assert np.allclose(det, [0.5, 1.5], atol=0.012)
    with pytest.raises(InputError):
        D.detect_onsets(np.zeros((2, 2, 2, 10)), SR)
    with pytest.raises(InputError):
        D.detect_onsets(np.full(1000, np.nan), SR)


@pytest.mark.parametrize("f,cls", [(205.0, "low"), (238.0, "low"), (410.0, "mid"), (470.0, "mid"),
                                   (820.0, "high"), (950.0, "high")])
def test_pitch_class_from_a_tone(f, cls):
    x = _place([(0.5, _tone(f, 0.25))], total=1.5)
    seg = D.analyse_segment(D.prepare(x, SR), 0.495, 1.0)
    assert abs(seg.f0 - f) < 2.0
    assert D.estimate_pitch(seg, "beep")[0] == cls


def test_chirp_direction_feature_on_a_handmade_sweep():
    t = np.arange(int(0.25 * SR)) / SR
    for f0, f1, sign in ((300.0, 600.0, 1), (900.0, 450.0, -1)):
        k = math.log(f1 / f0) / 0.25
        y = 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
        seg = D.analyse_segment(D.prepare(_place([(0.5, y)], total=1.2), SR), 0.495, 1.0)
        assert sign * seg.features["sweep"] > 0.5
        assert abs(math.log2(seg.track_center / math.sqrt(f0 * f1))) < 0.1


def test_key_and_pattern_estimates():
    assert D.estimate_key([60, 64, 67, 72, 60, 64, 67, 72]) == ("C", "major")
    assert D.estimate_key([69, 72, 76, 81]) == ("A", "minor")
    # A minor melody: A B C B A G A
    assert D.estimate_key([69, 71, 72, 71, 69, 67, 69]) == ("A", "minor")
    assert D.estimate_key([60, 62, 64, 65, 64, 62, 60]) == ("C", "major")
    assert D.estimate_pattern([60, 64, 67, 72, 60, 64, 67, 72], "C", "major") == "ascending"
    assert D.estimate_pattern([72, 67, 63, 60, 72, 67], "C", "minor") == "descending"
    assert D.estimate_pattern([60, 62, 64, 62, 60], "C", "major") == "melody"
    # a scale run up the octave matches the arpeggio contour 4/5 but is a melody
    assert D.estimate_pattern([62, 64, 65, 67, 70, 74], "D", "minor") == "melody"


# ------------------------------------------------------------------------------------------
# classifier
# ------------------------------------------------------------------------------------------
def test_softmax_classifier_fits_and_round_trips():
    rng = np.random.default_rng(0)
    centres = {"a": (0, 0), "b": (4, 0), "c": (0, 4)}
    feats, labels = [], []
    for lab, (cx, cy) in centres.items():
        for _ in range(50):
            feats.append({"x": cx + rng.standard_normal(), "y": cy + rng.standard_normal()})
            labels.append(lab)
    clf = SoftmaxClassifier(("a", "b", "c"), ("x", "y")).fit(feats, labels)
    assert clf.accuracy(feats, labels) > 0.95
    clf2 = SoftmaxClassifier.from_dict(clf.to_dict())
    assert clf2.predict(feats) == clf.predict(feats)
    with pytest.raises(InputError):
        clf.predict([{"x": 1.0}])


def test_shipped_classifiers_match_the_world():
    ev, mu = D.event_classifier(), D.timbre_classifier()
    assert ev.classes == W.CATEGORIES and ev.feature_names == D.EVENT_FEATURES
    assert mu.classes == W.INSTRUMENTS and mu.feature_names == D.TIMBRE_FEATURES


@pytest.mark.slow
def test_refit_reproduces_shipped_classifiers():
    fresh = D.fit_classifiers()
    for kind in ("event", "music"):
        feats, labels = D.training_segments(kind, 60, D.FIT_SEED + 17)
        shipped = D.load_classifiers()[kind]
        agree = np.mean([a == b for a, b in zip(shipped.predict(feats), fresh[kind].predict(feats))])
        assert agree > 0.99


# ------------------------------------------------------------------------------------------
# seams, completion, inpainting
# ------------------------------------------------------------------------------------------
def test_seam_quality_flags_a_hard_splice_not_a_clean_clip():
    s = W.sample_scene(np.random.default_rng(1), "music", instrument="organ", tempo="medium", noise=False)
    x = W.render_audio(s)[0].astype(np.float64)
    b = 2.013
    clean = D.seam_quality(x, SR, [b])
    spliced = x.copy()
    spliced[int(b * SR):] = 0.6 * np.random.default_rng(0).standard_normal(len(x) - int(b * SR)).clip(-1, 1)
    bad = D.seam_quality(spliced, SR, [b])
    assert bad["spectral_rank"][0] >= 99.0 and bad["seam_score"] > 2 * clean["seam_score"]
    # a polarity flip at a waveform peak of a sine note is a discontinuity: a click
    sine = W.render_audio(W.sample_scene(np.random.default_rng(1), "music", instrument="sine", noise=False))[0]
    a = int(1.0 * SR)
    k = a + int(np.argmax(np.abs(sine[a:a + 200])))
    flip = sine.astype(np.float64).copy()
    flip[k:] *= -1
    assert D.seam_quality(flip, SR, [k / SR])["click_ratio"][0] > 5.0
    assert D.seam_quality(sine, SR, [k / SR])["click_ratio"][0] < 2.0
    # a cut that is a zero-crossing-free step in a sustained note
    step = x.copy()
    note = s.music.notes[2]
    mid = note.onset + note.dur / 2
    step[int(mid * SR):] *= 0.2
    st = D.seam_quality(step, SR, [mid])
    assert st["level_jump_db"][0] > 10.0 and D.seam_quality(x, SR, [mid])["level_jump_db"][0] < 3.0


def test_completion_continuity_same_clip_vs_foreign_continuation():
    rng = np.random.default_rng(2)
    a = W.sample_scene(rng, "music", instrument="square", tempo="fast", key="C", mode="major", noise=False)
    b = W.sample_scene(rng, "music", instrument="pluck", tempo="slow", key="F", mode="minor", noise=False)
    xa, xb = W.render_audio(a)[0], W.render_audio(b)[0]
    good = D.completion_continuity(xa, SR, 2.0, spec=a)
    assert good["same_tempo"] and good["same_key"] and good["same_instrument"]
    assert good["after_vs_spec"]["instrument_ok"] and good["after_vs_spec"]["onset_ok"]
    mixed = np.concatenate([xa[:2 * SR], xb[2 * SR:]])
    badr = D.completion_continuity(mixed, SR, 2.0, spec=a)
    assert not badr["same_instrument"] and not badr["same_tempo"]
    assert not badr["after_vs_spec"]["instrument_ok"]


def test_completion_continuity_events():
    s = W.sample_scene(np.random.default_rng(3), "event", count=4, types=[("bell", "high")], noise=False)
    x = W.render_audio(s)[0]
    join = (s.events[1].onset + s.events[1].dur + s.events[2].onset) / 2
    r = D.completion_continuity(x, SR, join, spec=s)
    assert r["types_before"] == {("bell", "high")} and r["same_types"]
    assert r["after_vs_spec"]["order_ok"] and abs(r["level_diff_db"]) < 6.0


def test_evaluate_inpaint_on_truth_and_on_a_blanked_region():
    rng = np.random.default_rng(4)
    s = W.sample_scene(rng, "event", count=3, noise=False)
    x = W.render_audio(s)[0]
    r = W.sample_inpaint_range(s, rng, mode="event")
    ok = D.evaluate_inpaint(x, SR, s, r.start, r.end, reference=x)
    assert ok["inside"]["order_ok"] and ok["outside_snr_db"] == float("inf")
    blank = x.copy()
    blank[W.time_mask(len(x), SR, [r])] = 0
    bad = D.evaluate_inpaint(blank, SR, s, r.start, r.end, reference=x)
    assert not bad["inside"]["count_ok"] and bad["outside_snr_db"] == float("inf")
    m = W.sample_scene(rng, "music", noise=False)
    xm = W.render_audio(m)[0]
    rm = W.sample_inpaint_range(m, rng, mode="event")
    res = D.evaluate_inpaint(xm, SR, m, rm.start, rm.end)
    assert res["inside"]["count_ok"] and res["inside"]["note_pitch_acc"] == 1.0


def test_wrong_kind_is_refused():
    ev = W.make_dataset(1, 0, "train", kind="event")[0]
    mu = W.make_dataset(1, 0, "train", kind="music")[0]
    with pytest.raises(InputError):
        D.evaluate_music_clip(W.render_audio(ev)[0], SR, ev)
    with pytest.raises(InputError):
        D.evaluate_event_clip(W.render_audio(mu)[0], SR, mu)


# ------------------------------------------------------------------------------------------
# degradations
# ------------------------------------------------------------------------------------------
def test_degradations_do_what_they_say():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    x = 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    y = G.lowpass(x, SR, 4000.0)
    assert abs(np.std(y) - 0.5 / math.sqrt(2)) < 0.01
    n = G.add_noise(x, 20.0, rng) - x
    assert abs(10 * math.log10(np.mean(x ** 2) / np.mean(n ** 2)) - 20.0) < 0.3
    assert np.max(np.abs(G.mulaw(x) - x)) < 0.02
    r = G.resample(x, SR, 44100)
    assert len(r) == 44100
    rt = G.resample(r, 44100, SR)
    # torchaudio's windowed sinc (width 6, rolloff 0.99): the 6 kHz tone at 3/4 of the 8 kHz Nyquist
    # loses ~3 % of its amplitude in the round trip, the 1 kHz tone is kept to 1e-3
    np.testing.assert_allclose(rt[200:-200], x[200:-200], atol=0.015)
    low = 0.5 * np.sin(2 * np.pi * 1000 * t)
    np.testing.assert_allclose(G.resample(G.resample(low, SR, 44100), 44100, SR)[200:-200], low[200:-200], atol=1e-3)
    down = G.resample_roundtrip(x, SR, 8000)
    assert abs(np.std(down) - 0.5 / math.sqrt(2)) < 0.01  # the 6 kHz part is gone
    assert G.gain(x, -6.0206).max() == pytest.approx(x.max() / 2, rel=1e-4)


# ------------------------------------------------------------------------------------------
# the metrics can fail: wrong audio, silence
# ------------------------------------------------------------------------------------------
def test_metrics_reject_audio_of_another_scene():
    ev, mu = validation_specs(20, 12, seed=31)
    wrong_ev = [D.evaluate_event_clip(W.render_audio(a)[0], SR, b)["order_ok"] for a, b in zip(ev, ev[1:])]
    assert np.mean(wrong_ev) < 0.2
    wrong_mu = []
    for a, b in zip(mu, mu[1:]):
        r = D.evaluate_music_clip(W.render_audio(a)[0], SR, b)
        wrong_mu.append(r["key_ok"] and r["mode_ok"] and r["instrument_ok"] and r["pattern_ok"] and r["tempo_ok"])
    assert np.mean(wrong_mu) < 0.2


def test_silence_and_tiny_clips():
    ev = W.make_dataset(1, 0, "train", kind="event")[0]
    r = D.evaluate_event_clip(np.zeros(4 * SR), SR, ev)
    assert r["n_detected"] == 0 and not r["count_ok"] and not r["onset_ok"]
    assert len(D.detect_onsets(np.ones(50), SR)) == 0
    mu = W.make_dataset(1, 0, "train", kind="music")[0]
    m = D.evaluate_music_clip(np.zeros(4 * SR), SR, mu)
    assert not m["count_ok"] and m["analysis"].bpm is None
