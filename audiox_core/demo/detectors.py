"""Detectors and metrics for world clips, computed from the signal only.

Analysis runs on a mono mix-down resampled to 16 kHz (:func:`prepare`) and peak-normalised, so
gain does not matter.

Onsets (:func:`detect_onsets`)
    Power STFT (20 ms Hann window, 5 ms hop, only frames wholly inside the clip so an abrupt
    clip edge cannot look like an onset) summed into 11 bands (:data:`ONSET_BANDS`,
    60 Hz-8 kHz), in dB, floored 70 dB under the clip maximum.  Per band b and frame t::

        fut_b(t)  = min(E_b(t), E_b(t+1))                     (level held for 10 ms)
        hist_b(t) = dB(mean power of E_b(t-4 .. t-1))          (the 20 ms before)
        ref_b(t)  = max(hist_{b-1}, hist_b, hist_{b+1})(t)     (neighbour bands, SuperFlux idea)
        rise_b(t) = min(fut_b(t) - ref_b(t), fut_b(t) - floor_b),  floor_b = 10th percentile of E_b

    The neighbours' history keeps a chirp sliding into the next band from looking like a new
    onset; the floor term keeps fluctuations of background noise out.  The onset function is
    ``max(max_b rise_b, 2 * median_b rise_b)`` (the median term catches broadband clicks only
    ~12 dB above noise).  Peaks >= ``threshold_db`` (10 dB), within 55 dB of the loudest frame
    and >= ``min_gap`` (0.1 s; 0.15 s for music) apart are onsets; the time is the first frame of
    the rising edge (first frame reaching half the peak) plus :data:`ONSET_OFFSET` (4 ms,
    calibrated on clean renders: mean error then ~0, all errors < 10 ms).

Segment features (:func:`analyse_segment`)
    Each onset opens a segment that ends 10 ms before the next onset (at most 0.5 s for events,
    1 s for notes).  The *run* is the stretch around the envelope peak (10 ms RMS, 5 ms hop)
    above ``max(peak - 20 dB, clip floor + 8 dB)``; the clip floor (:func:`clip_floor_db`) makes
    durations independent of background noise.  Features:

    ``log_dur``      log10 of the run length (click ~15 ms, noise/beep 0.1-0.3 s, bell longest)
    ``early_frac``   share of the run's energy (above the floor) in its first 30 ms (click ~1)
    ``mid_level``    envelope half-way from the peak to the run's end, dB re peak: ~0 for
                     sustained sounds, ~-10 for exponential decays (drum, bell, pluck)
    ``decay_fast``   curvature of the decay (late minus early slope)
    ``flatness``     mean spectral flatness (dB) of the run's frames (64 ms windows) over
                     100 Hz .. clip(clip bandwidth, 1, 3.5 kHz): ~-2.5 for noise and clicks,
                     far lower for tones
    ``sweep``        log2 ratio of the per-frame peak frequency in the last and first thirds of
                     the run (+-0.7 for chirps, ~0 otherwise), clipped to +-1 and faded to 0 as
                     the flatness rises from -20 to -10 dB (the "track" of noise is random)
    ``h2 .. h6, h276``  level of the run's mean spectrum at k*f0 (and 2.76 f0), dB re the f0
                     peak, clipped to [-40, 5] (square: h3 ~ -9.5; bell: h276 ~ -8; organ: h2)

Classifiers (:class:`~.classifier.SoftmaxClassifier`)
    Event category from (log_dur, early_frac, mid_level, flatness, sweep, h2, h3, h276,
    decay_fast); instrument from (h2..h6, mid_level, flatness) with a majority vote over the
    notes.  Multinomial logistic regressions fitted by :func:`fit_classifiers` ONLY on renders of
    :data:`FIT_SEED`'s train split (clips cycling through the mild degradations plus random
    reverb and low-pass, :func:`degrade.training_augmentations`; labels from the
    detected onsets matched to the truth), never on the validation seeds.  The fitted parameters
    ship in ``detector_params.json`` so the measuring instrument does not move when the world's
    sampling code changes; ``bench/validate_detectors.py --refit`` rewrites them, and
    :func:`use_classifiers` installs classifiers refitted for another :class:`WorldConfig`.

Pitch (:func:`estimate_pitch`)
    Strongest peak (parabolically interpolated) of the run's mean power spectrum in
    100-2000 Hz, replaced by a local peak at 1/3 or 1/2 of its frequency when that is at most
    10 dB weaker (octave guard); for chirps the median per-frame peak (the sweep's geometric centre).  The class
    is the nearest band centre in log frequency (:func:`world.pitch_class_of`).

Music (:func:`analyse_music`)
    Tempo = 60 / median inter-onset interval, class = nearest range; note pitch = strongest
    peak rounded to a MIDI note; key and mode by template matching of the note chroma (each note
    counts 1, the first and last 3 -- the world's patterns start on the tonic) against 24
    templates (tonic 1.0, third 0.8, fifth 0.6, other scale degrees 0.3, non-scale -0.5);
    pattern (:func:`estimate_pattern`) from the interval contour plus the share of tonic-triad
    notes.

Metrics: :func:`evaluate_event_clip`, :func:`evaluate_music_clip`, :func:`seam_quality`,
:func:`completion_continuity`, :func:`evaluate_inpaint`.  Validation: :mod:`.validation` and
``bench/validate_detectors.py``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from . import world
from .classifier import SoftmaxClassifier
from .degrade import resample, training_augmentations

log = logging.getLogger(__name__)

ANALYSIS_SR = 16000
HOP = 80  # 5 ms
ONSET_WIN = 320  # 20 ms
ONSET_BANDS: tuple[float, ...] = (60, 280, 400, 560, 800, 1130, 1600, 2260, 3200, 4500, 6400, 8000)
ONSET_OFFSET = 0.004  # seconds added to the rising-edge frame time (calibrated on clean renders)
FIT_SEED = 918_273
FEAT_NFFT = 1024
FEAT_HOP = 160  # 10 ms

EVENT_FEATURES: tuple[str, ...] = ("log_dur", "early_frac", "mid_level", "flatness", "sweep", "h2", "h3", "h276",
                                    "decay_fast")
TIMBRE_FEATURES: tuple[str, ...] = ("h2", "h3", "h4", "h5", "h6", "mid_level", "flatness")


# ----------------------------------------------------------------------------------------------
# Input handling and spectra
# ----------------------------------------------------------------------------------------------
def prepare(audio: Any, sr: int) -> np.ndarray:
    """Mono float64 at ANALYSIS_SR, peak 1 (all-zero stays zero).  Accepts numpy or torch,
    shaped [N], [C, N] or [1, C, N]."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().float().numpy()
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise InputError(f"audio must be shaped [N], [C, N] or [1, C, N], got {tuple(np.shape(audio))}")
    if not np.all(np.isfinite(x)):
        raise InputError("audio contains NaN or infinite samples")
    if int(sr) != ANALYSIS_SR:
        x = resample(x, int(sr), ANALYSIS_SR)
    p = float(np.max(np.abs(x))) if x.size else 0.0
    return x / p if p > 0 else x


def _frames(x: np.ndarray, win: int, hop: int, pad: bool = True) -> np.ndarray:
    """Hann-windowed frames [T, win].  ``pad=True``: frame i centred at sample i*hop (zero
    padding); ``pad=False``: only frames that lie wholly inside x, frame i centred at
    i*hop + win//2 (no artificial edge at the clip boundaries)."""
    if pad:
        xp = np.concatenate([np.zeros(win // 2), x, np.zeros(win)])
        n_frames = 1 + len(x) // hop
    else:
        xp = x
        n_frames = 1 + (len(x) - win) // hop if len(x) >= win else 0
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    return xp[idx] * np.hanning(win + 2)[1:-1][None, :]


def power_spectrogram(x: np.ndarray, win: int, hop: int, n_fft: int, pad: bool = True) -> np.ndarray:
    """|STFT|^2, [T, n_fft//2+1] (framing as in :func:`_frames`)."""
    return np.abs(np.fft.rfft(_frames(x, win, hop, pad), n=n_fft, axis=1)) ** 2


def _db(p: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, 1e-20))


# ----------------------------------------------------------------------------------------------
# Onsets
# ----------------------------------------------------------------------------------------------
def onset_function(x: np.ndarray, sr: int = ANALYSIS_SR) -> tuple[np.ndarray, np.ndarray]:
    """(band-wise sustained rise maximum per frame in dB, band levels [T, B] in dB); frame i is
    centred at sample i*HOP + ONSET_WIN//2 (only frames wholly inside the clip)."""
    if len(x) < ONSET_WIN + 8 * HOP:
        return np.zeros(0), np.zeros((0, len(ONSET_BANDS) - 1))
    p = power_spectrogram(x, ONSET_WIN, HOP, 512, pad=False)
    f = np.fft.rfftfreq(512, 1.0 / sr)
    bands = np.stack([p[:, (f >= lo) & (f < hi)].sum(axis=1) for lo, hi in zip(ONSET_BANDS[:-1], ONSET_BANDS[1:])], axis=1)
    e = _db(bands)
    e = np.maximum(e, e.max() - 70.0)
    t_len, n_b = e.shape
    padded = np.concatenate([np.repeat(e[:1], 4, axis=0), e, np.repeat(e[-1:], 2, axis=0)], axis=0)
    hist = _db(np.mean(np.stack([10 ** (padded[k:k + t_len] / 10) for k in range(4)]), axis=0))  # t-4..t-1
    fut = np.min(np.stack([padded[4 + k:4 + k + t_len] for k in range(2)]), axis=0)  # t..t+1
    hist_n = hist.copy()
    hist_n[:, 1:] = np.maximum(hist_n[:, 1:], hist[:, :-1])
    hist_n[:, :-1] = np.maximum(hist_n[:, :-1], hist[:, 1:])
    floor = np.percentile(e, 10, axis=0)[None, :]
    rise = np.minimum(fut - hist_n, fut - floor)
    return np.maximum(rise.max(axis=1), 2.0 * np.median(rise, axis=1)), e


def detect_onsets(audio: Any, sr: int, threshold_db: float = 10.0, min_gap: float = 0.1,
                  range_db: float = 55.0, prepared: bool = False) -> np.ndarray:
    """Onset times in seconds (see the module docstring for the method)."""
    x = audio if prepared else prepare(audio, sr)
    odf, e = onset_function(x)
    if not np.any(x) or len(odf) == 0:
        return np.zeros(0)
    level = _db(np.sum(10 ** (e / 10), axis=1))
    loud = level >= level.max() - range_db
    gap = max(1, int(round(min_gap * ANALYSIS_SR / HOP)))
    cand = [t for t in range(len(odf)) if odf[t] >= threshold_db and loud[min(len(odf) - 1, t + 2)]]
    # local maxima within +-gap, strongest first
    picked: list[int] = []
    for t in sorted(cand, key=lambda t: -odf[t]):
        if all(abs(t - u) >= gap for u in picked):
            picked.append(t)
    picked.sort()
    times = []
    for t in picked:
        # first frame of the rising edge: walk back while the rise stays above half the peak
        s = t
        while s > 0 and odf[s - 1] >= 0.5 * odf[t] and t - s < gap:
            s -= 1
        times.append((s * HOP + ONSET_WIN // 2) / ANALYSIS_SR + ONSET_OFFSET)
    return np.asarray(times)


# ----------------------------------------------------------------------------------------------
# Segment features
# ----------------------------------------------------------------------------------------------
def _envelope_db(x: np.ndarray, hop: int = 80, win: int = 160) -> np.ndarray:
    """RMS envelope in dB, 10 ms windows every 5 ms, frame i centred at i*hop."""
    pad = np.concatenate([np.zeros(win // 2), x, np.zeros(win)])
    n = 1 + len(x) // hop
    c = np.concatenate([[0.0], np.cumsum(pad * pad)])
    s = c[np.arange(n) * hop + win] - c[np.arange(n) * hop]
    return _db(s / win)


def _peak_interp(spec_db: np.ndarray, k: int) -> float:
    if 0 < k < len(spec_db) - 1:
        a, b, c = spec_db[k - 1], spec_db[k], spec_db[k + 1]
        den = a - 2 * b + c
        return k + (0.5 * (a - c) / den if den != 0 else 0.0)
    return float(k)


def _level_at(spec_db: np.ndarray, freqs: np.ndarray, f: float, rel: float = 0.03) -> float:
    m = (freqs >= f * (1 - rel)) & (freqs <= f * (1 + rel))
    return float(spec_db[m].max()) if np.any(m) else -200.0


@dataclass
class Segment:
    """Analysis of one event/note segment."""

    start: float
    end: float
    features: dict[str, float]
    f0: float  # Hz, strongest peak of the mean spectrum
    track_center: float  # Hz, median of per-frame peaks (chirp centre)


def clip_floor_db(x: np.ndarray) -> float:
    """Background level of a clip: 10th percentile of the 10 ms envelope (dB), at least 80 dB
    under its peak."""
    env = _envelope_db(x)
    return float(max(np.percentile(env, 10), env.max() - 80.0)) if len(env) else -200.0


def clip_bandwidth_hz(x: np.ndarray) -> float:
    """Frequency under which 99.5 % of the clip's energy lies."""
    if len(x) < FEAT_NFFT:
        return ANALYSIS_SR / 2
    p = power_spectrogram(x, FEAT_NFFT, 4 * FEAT_HOP, FEAT_NFFT, pad=False).sum(axis=0)
    c = np.cumsum(p)
    if c[-1] <= 0:
        return ANALYSIS_SR / 2
    return float(np.fft.rfftfreq(FEAT_NFFT, 1.0 / ANALYSIS_SR)[int(np.searchsorted(c, 0.995 * c[-1]))])


def analyse_segment(x: np.ndarray, start: float, end: float, floor_db: float = -200.0,
                    bandwidth_hz: float = 8000.0) -> Segment:
    """Features of x[start:end] (seconds, analysis rate).  ``floor_db``: the clip's background
    level (:func:`clip_floor_db`), so durations are measured above the background;
    ``bandwidth_hz`` (:func:`clip_bandwidth_hz`): the flatness band's top is
    ``clip(bandwidth, 1000, 3500)`` Hz so that band-limiting does not make noise look tonal."""
    sr = ANALYSIS_SR
    a = max(0, int(round(start * sr)))
    b = min(len(x), max(a + 1, int(round(end * sr))))
    seg = x[a:b]
    env = _envelope_db(seg)
    pk = int(np.argmax(env))
    pk_db = env[pk]
    thr = max(pk_db - 20.0, floor_db + 8.0) if pk_db > floor_db + 14.0 else pk_db - 6.0
    # the contiguous run above thr containing the peak: [q, r]
    r = pk
    while r + 1 < len(env) and env[r + 1] >= thr:
        r += 1
    q = pk
    while q > 0 and env[q - 1] >= thr:
        q -= 1
    dur = max(0.005, (r - q + 1) * 0.005)
    mid = min(len(env) - 1, pk + int(round((r - pk) / 2)))
    mid_level = float(env[mid] - pk_db)
    q1 = min(len(env) - 1, pk + int(round((r - pk) / 4)))
    q3 = min(len(env) - 1, pk + int(round(3 * (r - pk) / 4)))
    decay_fast = float((env[q3] - env[mid]) - (env[q1] - pk_db))
    pw = np.maximum(10 ** (env[q:r + 1] / 10) - 10 ** (floor_db / 10), 0.0)
    early_frac = float(pw[:6].sum() / max(pw.sum(), 1e-30))  # first 30 ms of the run

    p = power_spectrogram(seg, FEAT_NFFT, FEAT_HOP, FEAT_NFFT)
    freqs = np.fft.rfftfreq(FEAT_NFFT, 1.0 / sr)
    centres = np.arange(len(p)) * FEAT_HOP / sr
    active = (centres >= q * 0.005 - 0.003) & (centres <= r * 0.005 + 0.003)
    if not np.any(active):
        active[int(np.argmin(np.abs(centres - pk * 0.005)))] = True
    pa = p[active]
    band = (freqs >= 100) & (freqs <= float(np.clip(bandwidth_hz, 1000.0, 3500.0)))
    pb = pa[:, band] + 1e-20
    flat = np.mean(_db(np.exp(np.mean(np.log(pb), axis=1)) / np.mean(pb, axis=1)))
    # per-frame peak track (100-2500 Hz)
    tb = (freqs >= 100) & (freqs <= 2500)
    idx0 = np.flatnonzero(tb)[0]
    track = []
    for row in _db(pa[:, tb]):
        k = int(np.argmax(row))
        track.append((idx0 + _peak_interp(row, k)) * sr / FEAT_NFFT)
    track = np.log2(np.maximum(np.asarray(track), 1.0))
    nt = len(track)
    third = max(1, nt // 3)
    sweep = float(np.median(track[-third:]) - np.median(track[:third])) if nt >= 3 else 0.0
    track_center = float(2 ** np.median(track))
    mean_db = _db(pa.mean(axis=0))
    pr = (freqs >= 100) & (freqs <= 2000)
    i0 = np.flatnonzero(pr)[0]
    k = int(np.argmax(mean_db[pr])) + i0
    # octave guard: a local peak at 1/2 or 1/3 of the strongest one, at most 10 dB weaker, is
    # the fundamental (a reverberant room can make an organ's 2nd harmonic the strongest)
    for div in (3, 2):
        c = int(round(k / div))
        lo_i, hi_i = max(i0, c - 2), c + 3
        if hi_i - lo_i >= 1 and c >= i0:
            j = lo_i + int(np.argmax(mean_db[lo_i:hi_i]))
            is_peak = 0 < j < len(mean_db) - 1 and mean_db[j] >= mean_db[j - 1] and mean_db[j] >= mean_db[j + 1]
            if is_peak and mean_db[j] >= mean_db[k] - 10.0:
                k = j
                break
    f0 = _peak_interp(mean_db, k) * sr / FEAT_NFFT
    ref = mean_db[k]

    def h(ratio: float) -> float:
        return float(np.clip(_level_at(mean_db, freqs, ratio * f0) - ref, -40.0, 5.0)) if ratio * f0 < 0.45 * sr else -40.0

    feats = {
        "log_dur": math.log10(dur), "early_frac": early_frac, "mid_level": max(mid_level, -30.0), "flatness": max(float(flat), -60.0),
        "sweep": float(np.clip(sweep, -1.0, 1.0)) * float(np.clip((-flat - 10.0) / 10.0, 0.0, 1.0)), "h2": h(2.0), "h3": h(3.0), "h276": h(2.76), "h4": h(4.0), "h5": h(5.0), "h6": h(6.0),
        "decay_fast": float(np.clip(decay_fast, -30, 30)),
    }
    return Segment(start, end, feats, float(f0), track_center)


def segments_from_onsets(onsets: Sequence[float], total: float, max_len: float = 0.5) -> list[tuple[float, float]]:
    out = []
    for i, t in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else total
        out.append((max(0.0, t - 0.005), min(nxt - 0.01, t + max_len, total)))
    return out


def match_onsets(true_onsets: Sequence[float], det_onsets: Sequence[float], tol: float) -> list[int | None]:
    """For every true onset the index of a distinct detected onset within ``tol`` seconds
    (pairs taken greedily by increasing distance), or None."""
    pairs = sorted((abs(t - d), i, j) for i, t in enumerate(true_onsets)
                   for j, d in enumerate(det_onsets) if abs(t - d) <= tol)
    out: list[int | None] = [None] * len(true_onsets)
    used = set()
    for _, i, j in pairs:
        if out[i] is None and j not in used:
            out[i] = j
            used.add(j)
    return out


# ----------------------------------------------------------------------------------------------
# Classifiers: fitted on FIT_SEED renders only, shipped as detector_params.json
# ----------------------------------------------------------------------------------------------
PARAMS_FILE = Path(__file__).with_name("detector_params.json")
_CLASSIFIERS: dict[str, SoftmaxClassifier] = {}
MUSIC_MIN_GAP = 0.15
EVENT_SEGMENT = 0.5  # longest analysed event segment (s)
NOTE_SEGMENT = 1.0


def training_segments(kind: str, n_clips: int, seed: int, cfg: world.WorldConfig = world.DEFAULT_CONFIG
                      ) -> tuple[list[dict[str, float]], list[str]]:
    """(features, labels) of the detected segments of ``n_clips`` renders of ``seed``'s train
    split, the clips cycling through :func:`degrade.training_augmentations`; labels are event categories
    (``kind="event"``) or instruments (``"music"``)."""
    specs = world.make_dataset(n_clips, seed, "train", cfg, kind=kind)
    degr = training_augmentations(ANALYSIS_SR)
    names = list(degr)
    rng = np.random.default_rng([seed, 7])
    feats, labels = [], []
    for i, spec in enumerate(specs):
        x = prepare(degr[names[i % len(names)]](world.render_audio(spec, ANALYSIS_SR, cfg=cfg)[0], rng), ANALYSIS_SR)
        floor, bw = clip_floor_db(x), clip_bandwidth_hz(x)
        music = kind == "music"
        items = spec.music.notes if music else spec.events
        det = detect_onsets(x, ANALYSIS_SR, min_gap=MUSIC_MIN_GAP if music else 0.1, prepared=True)
        segs = segments_from_onsets(list(det), len(x) / ANALYSIS_SR, NOTE_SEGMENT if music else EVENT_SEGMENT)
        for item, j in zip(items, match_onsets(spec.onsets, list(det), 0.05)):
            if j is not None:
                feats.append(analyse_segment(x, *segs[j], floor_db=floor, bandwidth_hz=bw).features)
                labels.append(spec.music.instrument if music else item.category)
    return feats, labels


def fit_classifiers(seed: int = FIT_SEED, n_event: int = 420, n_music: int = 140,
                    cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, SoftmaxClassifier]:
    """Fit the event-category and instrument classifiers on renders of ``seed`` (a few
    seconds).  Use :func:`use_classifiers` to make them current, :func:`save_classifiers` to
    store them."""
    fe, le = training_segments("event", n_event, seed, cfg)
    fm, lm = training_segments("music", n_music, seed + 1, cfg)
    return {"event": SoftmaxClassifier(world.CATEGORIES, EVENT_FEATURES).fit(fe, le),
            "music": SoftmaxClassifier(world.INSTRUMENTS, TIMBRE_FEATURES).fit(fm, lm)}


def save_classifiers(classifiers: dict[str, SoftmaxClassifier], path: str | Path = PARAMS_FILE) -> None:
    data = {"fit_seed": FIT_SEED, **{k: c.to_dict() for k, c in classifiers.items()}}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def load_classifiers(path: str | Path = PARAMS_FILE) -> dict[str, SoftmaxClassifier]:
    try:
        data = json.loads(Path(path).read_text())
        return {k: SoftmaxClassifier.from_dict(data[k]) for k in ("event", "music")}
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot read detector parameters from {path}: {e}") from None


def use_classifiers(classifiers: dict[str, SoftmaxClassifier]) -> None:
    """Make these classifiers the ones the detectors use (e.g. refitted for another WorldConfig)."""
    _CLASSIFIERS.update(classifiers)


def _classifier(kind: str) -> SoftmaxClassifier:
    if kind not in _CLASSIFIERS:
        if PARAMS_FILE.is_file():
            _CLASSIFIERS.update(load_classifiers(PARAMS_FILE))
        else:
            log.warning("%s missing; fitting the detector classifiers now", PARAMS_FILE.name)
            _CLASSIFIERS.update(fit_classifiers())
    return _CLASSIFIERS[kind]


def event_classifier() -> SoftmaxClassifier:
    """The event-category classifier in use (shipped parameters unless replaced)."""
    return _classifier("event")


def timbre_classifier() -> SoftmaxClassifier:
    """The instrument classifier in use (shipped parameters unless replaced)."""
    return _classifier("music")


# ----------------------------------------------------------------------------------------------
# Event analysis and metrics
# ----------------------------------------------------------------------------------------------
@dataclass
class DetectedEvent:
    onset: float
    category: str
    pitch: str | None
    freq: float | None


def estimate_pitch(seg: Segment, category: str,
                   cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> tuple[str | None, float | None]:
    if category in world.UNPITCHED:
        return None, None
    f = seg.track_center if category in ("chirp_up", "chirp_down") else seg.f0
    return world.pitch_class_of(f, cfg), f


def analyse_events(audio: Any, sr: int, cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> list[DetectedEvent]:
    """Detected events in time order: onset, category, pitch class, frequency."""
    x = prepare(audio, sr)
    onsets = detect_onsets(x, ANALYSIS_SR, prepared=True)
    floor, bw = clip_floor_db(x), clip_bandwidth_hz(x)
    segs = [analyse_segment(x, a, b, floor, bw)
            for a, b in segments_from_onsets(list(onsets), len(x) / ANALYSIS_SR, EVENT_SEGMENT)]
    cats = event_classifier().predict([s.features for s in segs])
    out = []
    for t, s, c in zip(onsets, segs, cats):
        p, f = estimate_pitch(s, c, cfg)
        out.append(DetectedEvent(float(t), c, p, f))
    return out


def compare_events(det: Sequence[DetectedEvent], true: Sequence[world.SoundEvent],
                   tol_ms: float = 50.0) -> dict[str, Any]:
    """Detected vs specified events (both in time order); see :func:`evaluate_event_clip`."""
    match = match_onsets([e.onset for e in true], [d.onset for d in det], 2 * tol_ms / 1000)
    errs = [None if j is None else 1000 * abs(det[j].onset - e.onset) for e, j in zip(true, match)]
    cat_matched = [j is not None and det[j].category == e.category for e, j in zip(true, match)]
    return {
        "count_ok": len(det) == len(true),
        "category_ok": sorted(d.category for d in det) == sorted(e.category for e in true),
        "pitch_ok": all(j is not None and det[j].pitch == e.pitch for e, j in zip(true, match)),
        "order_ok": [(d.category, d.pitch) for d in det] == [e.type for e in true],
        "onset_errors_ms": errs,
        "onset_ok": all(e is not None and e <= tol_ms for e in errs),
        "event_category_acc": float(np.mean(cat_matched)) if len(true) else 1.0,
        "n_detected": len(det),
        "detected": list(det),
    }


def evaluate_event_clip(audio: Any, sr: int, spec: world.SceneSpec, tol_ms: float = 50.0,
                        cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, Any]:
    """Compare a clip with what its event spec asked for.

    * ``count_ok``: as many detected events as specified;
    * ``category_ok``: the multiset of detected categories equals the specified one;
    * ``pitch_ok``: every specified event has a detected event within 2*``tol_ms`` with the same
      pitch class (None for unpitched);
    * ``order_ok``: the time-ordered sequence of detected (category, pitch) equals the spec's
      (implies count, category and pitch);
    * ``onset_errors_ms``: per specified event, |error| to the matched detection (None if none
      within 2*tol_ms); ``onset_ok``: all matched and within ``tol_ms``;
    * ``event_category_acc``: fraction of specified events matched with the right category;
    * ``n_detected``, ``detected``: the detected events.
    """
    if spec.kind != "event":
        raise InputError(f"evaluate_event_clip needs an event spec, got kind={spec.kind!r}")
    return compare_events(analyse_events(audio, sr, cfg), spec.events, tol_ms)


# ----------------------------------------------------------------------------------------------
# Music analysis and metrics
# ----------------------------------------------------------------------------------------------
def _key_templates() -> list[tuple[str, str, np.ndarray]]:
    out = []
    for mode, third in (("major", 4), ("minor", 3)):
        scale = world.SCALES[mode][:7]
        for tonic in range(12):
            t = np.full(12, -0.5)
            for s in scale:
                t[(tonic + s) % 12] = 0.3
            t[tonic % 12] = 1.0
            t[(tonic + third) % 12] = 0.8
            t[(tonic + 7) % 12] = 0.6
            out.append((world.NOTE_NAMES[tonic], mode, t))
    return out


KEY_TEMPLATES = _key_templates()


def estimate_key(midis: Sequence[int]) -> tuple[str | None, str | None]:
    """(tonic name, mode) by chroma template matching (first and last note weigh 3, others 1)."""
    if not midis:
        return None, None
    chroma = np.zeros(12)
    for i, m in enumerate(midis):
        chroma[int(m) % 12] += 3.0 if i in (0, len(midis) - 1) else 1.0
    scores = [float(chroma @ t) for _, _, t in KEY_TEMPLATES]
    k = int(np.argmax(scores))
    return KEY_TEMPLATES[k][0], KEY_TEMPLATES[k][1]


def estimate_pattern(midis: Sequence[int], key: str | None = None, mode: str | None = None) -> str:
    """``ascending``/``descending`` when the interval contour follows the arpeggio cycle (up, up,
    up, octave down / the mirror) for at least 80 % of the intervals AND at least 80 % of the
    notes are tones of the tonic triad of (key, mode) (when given); else ``melody``.  The triad
    test matters: a scale run up the octave matches the ascending contour 4 times out of 5."""
    if len(midis) < 2:
        return "melody"
    if key is not None and mode is not None:
        tonic = world.NOTE_NAMES.index(key)
        triad = {tonic % 12, (tonic + (4 if mode == "major" else 3)) % 12, (tonic + 7) % 12}
        if np.mean([int(m) % 12 in triad for m in midis]) < 0.8:
            return "melody"
    d = np.diff(np.asarray(midis, dtype=int))

    def sym(v: int) -> str:
        if v >= 7:
            return "UO"
        if v <= -7:
            return "DO"
        return "U" if v > 0 else ("D" if v < 0 else "S")

    s = [sym(int(v)) for v in d]
    for name, cyc in (("ascending", ("U", "U", "U", "DO")), ("descending", ("D", "D", "D", "UO"))):
        if np.mean([a == cyc[i % 4] for i, a in enumerate(s)]) >= 0.8:
            return name
    return "melody"


@dataclass
class MusicAnalysis:
    onsets: np.ndarray
    midis: list[int]
    bpm: float | None
    tempo: str | None
    key: str | None
    mode: str | None
    instrument: str | None
    pattern: str


def analyse_music(audio: Any, sr: int, cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> MusicAnalysis:
    x = prepare(audio, sr)
    onsets = detect_onsets(x, ANALYSIS_SR, min_gap=MUSIC_MIN_GAP, prepared=True)
    floor, bw = clip_floor_db(x), clip_bandwidth_hz(x)
    segs = [analyse_segment(x, a, b, floor, bw)
            for a, b in segments_from_onsets(list(onsets), len(x) / ANALYSIS_SR, NOTE_SEGMENT)]
    midis = [int(round(69 + 12 * math.log2(max(s.f0, 1.0) / 440.0))) for s in segs]
    bpm = float(60.0 / np.median(np.diff(onsets))) if len(onsets) >= 2 else None
    tempo = world.tempo_class_of(bpm, cfg) if bpm else None
    key, mode = estimate_key(midis)
    inst = None
    if segs:
        preds = timbre_classifier().predict([s.features for s in segs])
        vals, counts = np.unique(preds, return_counts=True)
        inst = str(vals[int(np.argmax(counts))])
    return MusicAnalysis(onsets, midis, bpm, tempo, key, mode, inst, estimate_pattern(midis, key, mode))


def evaluate_music_clip(audio: Any, sr: int, spec: world.SceneSpec, tol_ms: float = 50.0,
                        cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, Any]:
    """Compare a music clip with its spec: ``tempo_ok`` (class), ``bpm_error_pct``, ``key_ok``
    (tonic), ``mode_ok``, ``instrument_ok``, ``pattern_ok``, ``count_ok`` (number of notes),
    ``note_pitch_acc`` (fraction of notes matched within ``tol_ms`` with the right MIDI note),
    ``onset_errors_ms`` / ``onset_ok`` and the raw ``analysis``."""
    if spec.kind != "music":
        raise InputError(f"evaluate_music_clip needs a music spec, got kind={spec.kind!r}")
    m = spec.music
    a = analyse_music(audio, sr, cfg)
    true_on = [n.onset for n in m.notes]
    match = match_onsets(true_on, list(a.onsets), 2 * tol_ms / 1000)
    errs = [None if j is None else 1000 * abs(a.onsets[j] - t) for t, j in zip(true_on, match)]
    pitch_hits = [j is not None and a.midis[j] == n.midi for n, j in zip(m.notes, match)]
    return {
        "tempo_ok": a.tempo == m.tempo,
        "bpm_error_pct": None if a.bpm is None else 100 * abs(a.bpm - m.bpm) / m.bpm,
        "key_ok": a.key == m.key,
        "mode_ok": a.mode == m.mode,
        "instrument_ok": a.instrument == m.instrument,
        "pattern_ok": a.pattern == m.pattern,
        "count_ok": len(a.onsets) == len(m.notes),
        "note_pitch_acc": float(np.mean(pitch_hits)) if pitch_hits else 1.0,
        "onset_errors_ms": errs,
        "onset_ok": all(e is not None and e <= tol_ms for e in errs),
        "analysis": a,
    }


# ----------------------------------------------------------------------------------------------
# Inpainting seams and completion continuity
# ----------------------------------------------------------------------------------------------
def _band_levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times [T], band levels [T, B] dB) with the onset analysis' bands."""
    _, e = onset_function(x)
    times = (np.arange(len(e)) * HOP + ONSET_WIN // 2) / ANALYSIS_SR
    return times, e


def seam_quality(audio: Any, sr: int, boundaries: Sequence[float], guard: float = 0.02,
                 exclude: float = 0.1) -> dict[str, Any]:
    """How much the signal jumps at ``boundaries`` (seconds) compared with elsewhere.

    With band levels E_b(t) (dB, 20 ms windows every 5 ms):

    * spectral change ``S(t) = mean_b |E_b(t + 10 ms) - E_b(t - 10 ms)|`` and level change
      ``L(t) = |level(t + 10 ms) - level(t - 10 ms)|``; at each boundary the maximum within
      +-``guard`` is its ``spectral_jump_db`` / ``level_jump_db``;
    * the interior is every frame farther than ``exclude`` from all boundaries; its S values
      give ``interior_spectral_p50/p95_db`` and each boundary's ``spectral_rank`` (percent of
      interior frames with a smaller change: ~100 means the seam is the sharpest change in the
      clip);
    * ``click_ratio``: largest |second difference| of the waveform within 1 ms of the boundary
      over its 99th percentile 2-50 ms around it (a waveform discontinuity gives >> 1);
    * ``seam_score``: max over boundaries of spectral_jump / (interior p95 + 1 dB); around 1 or
      below means the seams are no sharper than the clip's own content.
    """
    x = prepare(audio, sr)
    bnd = [float(b) for b in boundaries]
    times, e = _band_levels(x)
    if len(times) < 5:
        raise InputError("audio is too short for seam analysis (needs > 60 ms)")
    level = _db(np.sum(10 ** (e / 10), axis=1))
    k = 2
    s_chg = np.zeros(len(times))
    l_chg = np.zeros(len(times))
    s_chg[k:-k] = np.mean(np.abs(e[2 * k:] - e[:-2 * k]), axis=1)
    l_chg[k:-k] = np.abs(level[2 * k:] - level[:-2 * k])
    dist = np.min(np.abs(times[:, None] - np.asarray(bnd)[None, :]), axis=1) if bnd else np.full(len(times), np.inf)
    interior = s_chg[(dist > exclude) & (np.arange(len(times)) >= k) & (np.arange(len(times)) < len(times) - k)]
    if len(interior) == 0:
        interior = s_chg
    d2 = np.zeros_like(x)
    d2[1:-1] = np.abs(x[2:] - 2 * x[1:-1] + x[:-2])
    sj, lj, ranks, clicks = [], [], [], []
    for b in bnd:
        near = np.abs(times - b) <= guard
        sj.append(float(s_chg[near].max()) if np.any(near) else 0.0)
        lj.append(float(l_chg[near].max()) if np.any(near) else 0.0)
        ranks.append(float(100.0 * np.mean(interior < sj[-1])))
        c = int(round(b * ANALYSIS_SR))
        near_idx = np.arange(max(0, c - 16), min(len(x), c + 17))  # +-1 ms
        ctx = np.r_[max(0, c - 800):max(0, c - 32), min(len(x), c + 32):min(len(x), c + 800)]  # 2-50 ms away
        ref = float(np.percentile(d2[ctx], 99)) if len(ctx) else 0.0
        clicks.append(float(d2[near_idx].max() / max(ref, 1e-9)) if len(near_idx) else 0.0)
    p50, p95 = float(np.percentile(interior, 50)), float(np.percentile(interior, 95))
    return {
        "boundaries": bnd,
        "spectral_jump_db": sj,
        "level_jump_db": lj,
        "spectral_rank": ranks,
        "click_ratio": clicks,
        "interior_spectral_p50_db": p50,
        "interior_spectral_p95_db": p95,
        "seam_score": max((v / (p95 + 1.0) for v in sj), default=0.0),
    }


def _active_stats(x: np.ndarray) -> tuple[float, float]:
    """(RMS level dB of frames within 30 dB of the loudest, their power-weighted mean log2
    frequency) -- loudness and brightness of the sounding parts."""
    p = power_spectrogram(x, 1024, FEAT_HOP, 1024, pad=False) if len(x) >= 1024 else np.zeros((0, 513))
    if len(p) == 0 or not np.any(p):
        return -200.0, 0.0
    fr = _db(p.sum(axis=1))
    act = fr >= fr.max() - 30.0
    freqs = np.fft.rfftfreq(1024, 1.0 / ANALYSIS_SR)
    pa = p[act][:, 1:]
    centroid = float(np.sum(pa * np.log2(freqs[1:])[None, :]) / max(pa.sum(), 1e-30))
    return float(_db(np.mean(pa.sum(axis=1)))), centroid


def _in_scale_fraction(midis: Sequence[int], key: str | None, mode: str | None) -> float:
    """Fraction of notes whose pitch class belongs to the scale of (key, mode)."""
    if not midis or key is None or mode is None:
        return 0.0
    tonic = world.NOTE_NAMES.index(key)
    scale = {(tonic + s) % 12 for s in world.SCALES[mode]}
    return float(np.mean([int(m) % 12 in scale for m in midis]))


def _shift_events(det: Sequence[DetectedEvent], dt: float) -> list[DetectedEvent]:
    return [DetectedEvent(d.onset + dt, d.category, d.pitch, d.freq) for d in det]


def completion_continuity(audio: Any, sr: int, join: float, spec: world.SceneSpec | None = None,
                          kind: str | None = None, tol_ms: float = 50.0,
                          cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, Any]:
    """Does the part after ``join`` (seconds) continue the part before it?

    Both parts are analysed separately with the same detectors.  Always: ``level_diff_db``
    (loudness of the sounding parts, after minus before), ``centroid_diff_oct`` (brightness),
    ``seam`` (:func:`seam_quality` at the join).  Music: ``bpm_before/after``, ``same_tempo``
    (within 8 %), ``key_before`` (estimated on the first part, which starts on the tonic),
    ``in_key_after`` (fraction of the continuation's notes in that key's scale -- the key of a
    fragment that does not start on the tonic cannot be estimated reliably, so the continuation
    is checked for staying in key instead), ``same_key`` (``in_key_after >= 0.9``),
    ``same_instrument``.  Events:
    ``types_before/after`` (sets of (category, pitch)), ``same_types`` (the continuation uses
    only types heard before).  With ``spec``: ``after_vs_spec`` compares the continuation with
    the spec's events/notes whose onset is after the join (event metrics of
    :func:`compare_events`; for music ``tempo_ok``, ``in_key_frac`` (spec's scale),
    ``instrument_ok``, ``note_pitch_acc``, ``onset_errors_ms``, ``onset_ok``).
    """
    kind = spec.kind if spec is not None else kind
    if kind not in ("event", "music"):
        raise InputError(f"kind must be 'event' or 'music' (or pass a spec), got {kind!r}")
    x = prepare(audio, sr)
    j = int(round(join * ANALYSIS_SR))
    if not 0 < j < len(x):
        raise InputError(f"join={join}s lies outside the {len(x) / ANALYSIS_SR:.3f}s clip")
    pre, post = x[:j], x[j:]
    lv0, c0 = _active_stats(pre)
    lv1, c1 = _active_stats(post)
    out: dict[str, Any] = {"level_diff_db": lv1 - lv0, "centroid_diff_oct": c1 - c0,
                           "seam": seam_quality(x, ANALYSIS_SR, [join])}
    if kind == "music":
        a0, a1 = analyse_music(pre, ANALYSIS_SR, cfg), analyse_music(post, ANALYSIS_SR, cfg)
        in_key = _in_scale_fraction(a1.midis, a0.key, a0.mode)
        out.update(bpm_before=a0.bpm, bpm_after=a1.bpm,
                   same_tempo=bool(a0.bpm and a1.bpm and abs(math.log(a1.bpm / a0.bpm)) < math.log(1.08)),
                   key_before=(a0.key, a0.mode), in_key_after=in_key, same_key=in_key >= 0.9,
                   same_instrument=a0.instrument == a1.instrument, before=a0, after=a1)
        if spec is not None:
            m = spec.music
            notes = [n for n in m.notes if n.onset >= join]
            on1 = list(np.asarray(a1.onsets) + join)
            match = match_onsets([n.onset for n in notes], on1, 2 * tol_ms / 1000)
            errs = [None if q is None else 1000 * abs(on1[q] - n.onset) for n, q in zip(notes, match)]
            out["after_vs_spec"] = {
                "tempo_ok": a1.tempo == m.tempo, "in_key_frac": _in_scale_fraction(a1.midis, m.key, m.mode),
                "instrument_ok": a1.instrument == m.instrument,
                "note_pitch_acc": float(np.mean([q is not None and a1.midis[q] == n.midi for n, q in zip(notes, match)]))
                if notes else 1.0,
                "onset_errors_ms": errs, "onset_ok": all(e is not None and e <= tol_ms for e in errs),
            }
    else:
        d0 = analyse_events(pre, ANALYSIS_SR, cfg)
        d1 = _shift_events(analyse_events(post, ANALYSIS_SR, cfg), join)
        t0, t1 = {(d.category, d.pitch) for d in d0}, {(d.category, d.pitch) for d in d1}
        out.update(types_before=t0, types_after=t1, same_types=bool(t1) and t1 <= t0, before=d0, after=d1)
        if spec is not None:
            out["after_vs_spec"] = compare_events(d1, [e for e in spec.events if e.onset >= join], tol_ms)
    return out


def evaluate_inpaint(audio: Any, sr: int, spec: world.SceneSpec, start: float, end: float,
                     reference: Any | None = None, tol_ms: float = 50.0,
                     cfg: world.WorldConfig = world.DEFAULT_CONFIG) -> dict[str, Any]:
    """Metrics of an inpainted clip whose range [start, end) was regenerated.

    ``inside``: the events (or notes) detected with onsets in the range against the spec's
    (event metrics of :func:`compare_events`; for music ``count_ok``, ``note_pitch_acc``,
    ``onset_ok``); ``seam``: :func:`seam_quality` at start and end (boundaries at the clip
    edges are skipped); with ``reference`` (the original clip, same rate and length):
    ``outside_snr_db``, how well the kept part was preserved.
    """
    x = prepare(audio, sr)
    dur = len(x) / ANALYSIS_SR
    out: dict[str, Any] = {}
    if spec.kind == "event":
        det = [d for d in analyse_events(x, ANALYSIS_SR, cfg) if start <= d.onset < end]
        out["inside"] = compare_events(det, [e for e in spec.events if start <= e.onset < end], tol_ms)
    else:
        a = analyse_music(x, ANALYSIS_SR, cfg)
        idx = [i for i, t in enumerate(a.onsets) if start <= t < end]
        notes = [n for n in spec.music.notes if start <= n.onset < end]
        on = [float(a.onsets[i]) for i in idx]
        match = match_onsets([n.onset for n in notes], on, 2 * tol_ms / 1000)
        errs = [None if q is None else 1000 * abs(on[q] - n.onset) for n, q in zip(notes, match)]
        out["inside"] = {
            "count_ok": len(idx) == len(notes),
            "note_pitch_acc": float(np.mean([q is not None and a.midis[idx[q]] == n.midi for n, q in zip(notes, match)]))
            if notes else 1.0,
            "onset_errors_ms": errs, "onset_ok": all(e is not None and e <= tol_ms for e in errs),
        }
    bnd = [b for b in (start, end) if 0.03 < b < dur - 0.03]
    out["seam"] = seam_quality(x, ANALYSIS_SR, bnd)
    if reference is not None:
        # compare on the caller's scale: both at the analysis rate, without peak normalisation
        y = np.asarray(audio.detach().cpu().numpy() if hasattr(audio, "detach") else audio, dtype=np.float64)
        r = np.asarray(reference.detach().cpu().numpy() if hasattr(reference, "detach") else reference, dtype=np.float64)
        if y.shape != r.shape:
            raise InputError(f"reference shape {r.shape} differs from audio shape {y.shape}")
        keep = ~world.time_mask(y.shape[-1], sr, [world.TimeRange(start, end)])
        err = float(np.sum((y - r)[..., keep] ** 2))
        sig = float(np.sum(r[..., keep] ** 2))
        out["outside_snr_db"] = float("inf") if err == 0 else 10 * math.log10(max(sig, 1e-30) / err)
    return out
