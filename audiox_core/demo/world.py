"""A procedural audio-visual world with known ground truth.

Two kinds of scene, both described completely by a :class:`SceneSpec`:

``event`` scenes
    1-4 sound events, each of one *type* = (category, pitch class).  Categories
    (:data:`CATEGORIES`):

    * ``beep`` (pitched): sine tone, 5 ms attack / 20 ms release, 0.15-0.30 s
    * ``buzz`` (pitched): band-limited square wave (odd harmonics, amplitude 1/k), 0.15-0.30 s
    * ``chirp_up`` (pitched): exponential sine sweep f/sqrt2 -> f*sqrt2 (one octave), 0.15-0.30 s
    * ``chirp_down`` (pitched): the same sweep downwards
    * ``noise`` (unpitched): white-noise burst, 0.10-0.25 s
    * ``click`` (unpitched): 10 ms of white noise with a 2 ms exponential decay
    * ``drum`` (pitched): sine with exponential decay (tau 70 ms) whose pitch falls 1.6 f -> f
      (tau 20 ms), plus a noise transient (tau 4 ms), 0.30 s
    * ``bell`` (pitched): inharmonic partials f * (1, 2.76, 5.40, 8.93), amplitudes
      (1, .55, .35, .2), exponential decay tau 0.10-0.14 s (higher partials faster), 0.45 s

    Every event is peak-normalised to its ``amp`` (0.5-1.0).

    Pitch classes ``low``/``mid``/``high`` are octave-spaced families centred on 220/440/880 Hz
    (:attr:`WorldConfig.pitch_centers`); the actual frequency is the centre times
    ``2**u``, ``u ~ U(-0.12, 0.12)`` octaves (about +-8.7 %), so bands never touch: the class
    boundaries are the geometric midpoints 311 Hz and 622 Hz.  For a chirp the pitch is the
    geometric centre of its sweep.  ``noise`` and ``click`` have no pitch.

    Onsets are at least ``min_spacing`` (0.5 s) apart and every event is shorter than that,
    so events never overlap.  A clip uses at most ``max_types`` (2) distinct types; the events
    are listed in time order, so a caption can always say them unambiguously as runs:
    "two high beeps, then a low bell, then a high beep".

``music`` scenes
    One note per beat of a monophonic instrument (:data:`INSTRUMENTS`: ``sine``, ``square``,
    ``pluck``, ``organ``), tempo class ``slow`` 70-85 / ``medium`` 100-120 / ``fast`` 140-170
    BPM, key tonic in C D E F G A (octave 4), mode major/minor and a pattern:
    ``ascending`` arpeggio (degrees 1 3 5 8 repeated), ``descending`` arpeggio (8 5 3 1
    repeated) or ``melody`` (a scale walk that starts and ends on the tonic, contains the third
    and at least one non-chord tone, so it is never mistaken for an arpeggio and its key is
    unambiguous).  Each note sounds for ``note_fill`` (80 %) of the beat.

Optional background noise (white, ``noise_db`` in -45..-35 dB RMS relative to the foreground
peak, in 30 % of the scenes by default) can be added to either kind.  Audio is normalised to ``peak`` (0.9).

Video (:func:`render_video`): one shape and colour per category (:data:`SHAPES`,
:data:`COLORS`), vertical position by pitch (high = top); the shape is fully lit exactly at frame
``round(onset * fps)`` (``floor(x + 0.5)``), dark before and fading by 0.6 per frame after.
Music videos show one bar per note (slot = note index mod 8, height by pitch, colour by
instrument) lit at the note's onset frame and fading while the note sounds.

Held-out split (:func:`is_heldout`): a scene's *combination key* (:func:`combo_key`: the runs of
(count, category, pitch) for events; instrument/tempo/key/mode/pattern for music) is hashed with
SHA-1; combinations whose hash is 0 modulo ``heldout_mod`` (10) belong only to ``test``.
``train`` and ``val`` draw from the other combinations with disjoint random streams, so the test
set consists only of attribute combinations never seen in training.

Everything is deterministic: sampling uses the generator passed in, rendering uses only the spec
(noise is drawn from ``np.random.default_rng([spec.seed, ...])``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError

CATEGORIES: tuple[str, ...] = ("beep", "buzz", "chirp_up", "chirp_down", "noise", "click", "drum", "bell")
UNPITCHED: frozenset[str] = frozenset({"noise", "click"})
PITCHES: tuple[str, ...] = ("low", "mid", "high")
INSTRUMENTS: tuple[str, ...] = ("sine", "square", "pluck", "organ")
TEMPOS: tuple[str, ...] = ("slow", "medium", "fast")
KEYS: tuple[str, ...] = ("C", "D", "E", "F", "G", "A")
MODES: tuple[str, ...] = ("major", "minor")
PATTERNS: tuple[str, ...] = ("ascending", "descending", "melody")

NOTE_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: MIDI number of each tonic (octave 4).
TONIC_MIDI: dict[str, int] = {"C": 60, "D": 62, "E": 64, "F": 65, "G": 67, "A": 69, "B": 71}
#: Semitone offsets of scale degrees 1..8 (index 0..7).
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11, 12),
    "minor": (0, 2, 3, 5, 7, 8, 10, 12),  # natural minor
}
#: Scale-step indices of the arpeggio patterns (1 3 5 8).
ARPEGGIO_STEPS: dict[str, tuple[int, ...]] = {"ascending": (0, 2, 4, 7), "descending": (7, 4, 2, 0)}

#: (min, max) rendered duration in seconds per category.
EVENT_DURATIONS: dict[str, tuple[float, float]] = {
    "beep": (0.15, 0.30), "buzz": (0.15, 0.30), "chirp_up": (0.15, 0.30), "chirp_down": (0.15, 0.30),
    "noise": (0.10, 0.25), "click": (0.01, 0.01), "drum": (0.30, 0.30), "bell": (0.45, 0.45),
}
BELL_RATIOS: tuple[float, ...] = (1.0, 2.76, 5.40, 8.93)
BELL_AMPS: tuple[float, ...] = (1.0, 0.55, 0.35, 0.2)

#: Video shape and RGB colour of every category, and colour of every instrument.
SHAPES: dict[str, str] = {
    "beep": "circle", "buzz": "square", "chirp_up": "triangle_up", "chirp_down": "triangle_down",
    "noise": "cross", "click": "diamond", "drum": "ring", "bell": "star",
}
COLORS: dict[str, tuple[int, int, int]] = {
    "beep": (255, 70, 70), "buzz": (60, 120, 255), "chirp_up": (90, 230, 90),
    "chirp_down": (250, 210, 40), "noise": (150, 150, 150), "click": (255, 255, 255),
    "drum": (180, 90, 255), "bell": (255, 120, 220),
}
INSTRUMENT_COLORS: dict[str, tuple[int, int, int]] = {
    "sine": (255, 90, 90), "square": (70, 140, 255), "pluck": (100, 230, 120), "organ": (250, 200, 60),
}
BACKGROUND_RGB: tuple[int, int, int] = (16, 16, 24)
FLASH_DECAY: float = 0.6  # per-frame brightness factor after an onset


@dataclass(frozen=True)
class WorldConfig:
    """Every tunable parameter of the world (defaults sized for a tiny CPU-trained model)."""

    sample_rate: int = 16000
    duration: float = 4.0
    fps: float = 25.0
    size: int = 64
    channels: int = 1  # 1 = mono, 2 = stereo (events panned by SoundEvent.pan)
    peak: float = 0.9
    # events
    categories: tuple[str, ...] = CATEGORIES
    pitch_centers: tuple[tuple[str, float], ...] = (("low", 220.0), ("mid", 440.0), ("high", 880.0))
    pitch_jitter_octaves: float = 0.12
    min_events: int = 1
    max_events: int = 4
    max_types: int = 2
    min_spacing: float = 0.5
    first_onset: float = 0.1  # earliest onset (s)
    tail: float = 0.5  # last onset <= duration - tail
    amp_range: tuple[float, float] = (0.5, 1.0)
    stereo_pan: bool = False  # sample random pans (else centred)
    # background
    noise_prob: float = 0.3
    noise_db_range: tuple[float, float] = (-45.0, -35.0)
    # music
    instruments: tuple[str, ...] = INSTRUMENTS
    tempo_ranges: tuple[tuple[str, float, float], ...] = (("slow", 70.0, 85.0), ("medium", 100.0, 120.0), ("fast", 140.0, 170.0))
    keys: tuple[str, ...] = KEYS
    modes: tuple[str, ...] = MODES
    patterns: tuple[str, ...] = PATTERNS
    note_fill: float = 0.8
    velocity_range: tuple[float, float] = (0.75, 1.0)
    # dataset
    event_fraction: float = 0.5
    heldout_mod: int = 10

    def pitch_center(self, pitch: str) -> float:
        for name, hz in self.pitch_centers:
            if name == pitch:
                return hz
        raise InputError(f"unknown pitch class {pitch!r}; expected one of {[n for n, _ in self.pitch_centers]}")

    def tempo_range(self, tempo: str) -> tuple[float, float]:
        for name, lo, hi in self.tempo_ranges:
            if name == tempo:
                return lo, hi
        raise InputError(f"unknown tempo class {tempo!r}; expected one of {[n for n, _, _ in self.tempo_ranges]}")


DEFAULT_CONFIG = WorldConfig()


@dataclass(frozen=True)
class SoundEvent:
    """One sound event.  ``freq`` is the pitch in Hz (sweep centre for chirps, None if unpitched)."""

    category: str
    pitch: str | None
    freq: float | None
    onset: float
    dur: float
    amp: float
    pan: float = 0.0  # -1 left .. +1 right (stereo only)

    @property
    def type(self) -> tuple[str, str | None]:
        return (self.category, self.pitch)


@dataclass(frozen=True)
class Note:
    midi: int
    onset: float
    dur: float
    amp: float


@dataclass(frozen=True)
class MusicSpec:
    instrument: str
    tempo: str
    bpm: float
    key: str
    mode: str
    pattern: str
    notes: tuple[Note, ...]

    @property
    def steps(self) -> tuple[int, ...]:
        """Scale-step index (0 = tonic .. 7 = octave) of every note."""
        scale = SCALES[self.mode]
        tonic = TONIC_MIDI[self.key]
        return tuple(scale.index(n.midi - tonic) for n in self.notes)


@dataclass(frozen=True)
class SceneSpec:
    """Complete description of one clip.  ``noise_db``: background RMS relative to the
    foreground peak in dB (None = no background).  ``seed`` drives the rendered noise only."""

    kind: str
    duration: float
    events: tuple[SoundEvent, ...] = ()
    music: MusicSpec | None = None
    noise_db: float | None = None
    seed: int = 0

    @property
    def onsets(self) -> tuple[float, ...]:
        if self.kind == "music":
            return tuple(n.onset for n in self.music.notes)
        return tuple(e.onset for e in self.events)

    @property
    def runs(self) -> tuple[tuple[int, str, str | None], ...]:
        """Consecutive events of the same type grouped: ((count, category, pitch), ...)."""
        out: list[list] = []
        for e in self.events:
            if out and (out[-1][1], out[-1][2]) == e.type:
                out[-1][0] += 1
            else:
                out.append([1, e.category, e.pitch])
        return tuple(tuple(r) for r in out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SceneSpec":
        music = d.get("music")
        if music is not None:
            music = MusicSpec(**{**music, "notes": tuple(Note(**n) for n in music["notes"])})
        return SceneSpec(kind=d["kind"], duration=float(d["duration"]),
                         events=tuple(SoundEvent(**e) for e in d.get("events", ())),
                         music=music, noise_db=d.get("noise_db"), seed=int(d.get("seed", 0)))


def pitch_class_of(freq: float, cfg: WorldConfig = DEFAULT_CONFIG) -> str:
    """The pitch class whose centre is nearest to ``freq`` on a log-frequency axis."""
    names = [n for n, _ in cfg.pitch_centers]
    d = [abs(math.log2(freq / hz)) for _, hz in cfg.pitch_centers]
    return names[int(np.argmin(d))]


def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def tempo_class_of(bpm: float, cfg: WorldConfig = DEFAULT_CONFIG) -> str:
    """Tempo class with the nearest range (boundaries halfway between ranges)."""
    best, dist = None, float("inf")
    for name, lo, hi in cfg.tempo_ranges:
        d = 0.0 if lo <= bpm <= hi else min(abs(bpm - lo), abs(bpm - hi))
        if d < dist:
            best, dist = name, d
    return best


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
def _choice(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _sample_onsets(rng: np.random.Generator, n: int, cfg: WorldConfig, duration: float) -> list[float]:
    lo, hi = cfg.first_onset, duration - cfg.tail
    slack = (hi - lo) - (n - 1) * cfg.min_spacing
    if slack < 0:
        raise InputError(f"{n} events with min_spacing={cfg.min_spacing}s do not fit in a {duration}s clip")
    u = np.sort(rng.uniform(0.0, slack, size=n))
    return [round(float(lo + u[i] + i * cfg.min_spacing), 4) for i in range(n)]


def _sample_type_sequence(rng: np.random.Generator, n: int, n_types: int) -> list[int]:
    """A sequence of n type indices that uses each of the n_types at least once."""
    while True:
        seq = [int(rng.integers(n_types)) for _ in range(n)]
        if len(set(seq)) == n_types:
            return seq


def _make_event(rng: np.random.Generator, category: str, pitch: str | None, onset: float,
                cfg: WorldConfig) -> SoundEvent:
    lo, hi = EVENT_DURATIONS[category]
    dur = round(float(rng.uniform(lo, hi)), 4)
    freq = None
    if pitch is not None:
        j = rng.uniform(-cfg.pitch_jitter_octaves, cfg.pitch_jitter_octaves)
        freq = round(cfg.pitch_center(pitch) * 2.0 ** j, 2)
    amp = round(float(rng.uniform(*cfg.amp_range)), 3)
    pan = round(float(rng.uniform(-0.8, 0.8)), 3) if cfg.stereo_pan else 0.0
    return SoundEvent(category, pitch, freq, onset, dur, amp, pan)


def sample_event_scene(rng: np.random.Generator, cfg: WorldConfig = DEFAULT_CONFIG, *,
                       duration: float | None = None, count: int | None = None,
                       n_types: int | None = None, types: Sequence[tuple[str, str | None]] | None = None,
                       categories: Sequence[str] | None = None, pitch: str | None = None,
                       noise: bool | None = None, seed: int | None = None) -> SceneSpec:
    """Sample an event scene; keyword arguments pin attributes.

    ``types``: the distinct (category, pitch) types to use (each used at least once);
    ``categories``: allowed categories; ``pitch``: force this pitch class on pitched types.
    """
    duration = cfg.duration if duration is None else float(duration)
    count = int(rng.integers(cfg.min_events, cfg.max_events + 1)) if count is None else int(count)
    if count < 1:
        raise InputError(f"count must be >= 1, got {count}")
    if types is None:
        cats = list(categories) if categories is not None else list(cfg.categories)
        for c in cats:
            if c not in CATEGORIES:
                raise InputError(f"unknown category {c!r}; expected one of {CATEGORIES}")
        if n_types is None:
            n_types = int(rng.integers(1, min(count, cfg.max_types) + 1))
        if n_types > count:
            raise InputError(f"n_types={n_types} exceeds count={count}")
        chosen: list[tuple[str, str | None]] = []
        for _ in range(1000):
            if len(chosen) == n_types:
                break
            c = _choice(rng, cats)
            p = None if c in UNPITCHED else (pitch if pitch is not None else _choice(rng, [n for n, _ in cfg.pitch_centers]))
            if (c, p) not in chosen:
                chosen.append((c, p))
        if len(chosen) < n_types:
            raise InputError(f"cannot find {n_types} distinct event types among categories {cats}")
        types = chosen
    types = [tuple(t) for t in types]
    if len(types) > count:
        raise InputError(f"{len(types)} types cannot all appear in {count} events")
    seq = _sample_type_sequence(rng, count, len(types))
    onsets = _sample_onsets(rng, count, cfg, duration)
    events = tuple(_make_event(rng, types[k][0], types[k][1], t, cfg) for k, t in zip(seq, onsets))
    noise_db = _sample_noise(rng, cfg, noise)
    seed = int(rng.integers(2**31)) if seed is None else int(seed)
    return SceneSpec("event", duration, events=events, noise_db=noise_db, seed=seed)


def _sample_noise(rng: np.random.Generator, cfg: WorldConfig, noise: bool | None) -> float | None:
    use = (rng.uniform() < cfg.noise_prob) if noise is None else bool(noise)
    return round(float(rng.uniform(*cfg.noise_db_range)), 2) if use else None


def _melody_steps(rng: np.random.Generator, n: int) -> list[int]:
    """Scale walk over steps 0..7 starting on 0 and ending on 0 or 7, containing the third (2)
    and a non-chord tone (1, 3, 5 or 6)."""
    if n < 4:
        raise InputError(f"a melody needs at least 4 notes, got {n} (lengthen the clip or raise the tempo)")
    moves = (-2, -1, -1, 1, 1, 2)
    for _ in range(10000):
        s = [0]
        for _ in range(n - 2):
            s.append(min(7, max(0, s[-1] + _choice(rng, moves))))
        end = 0 if abs(s[-1] - 0) <= abs(s[-1] - 7) else 7
        if abs(s[-1] - end) > 2:
            continue
        s.append(end)
        if 2 in s and any(x in (1, 3, 5, 6) for x in s):
            return s
    raise InputError("could not sample a melody")  # pragma: no cover


def sample_music_scene(rng: np.random.Generator, cfg: WorldConfig = DEFAULT_CONFIG, *,
                       duration: float | None = None, instrument: str | None = None,
                       tempo: str | None = None, key: str | None = None, mode: str | None = None,
                       pattern: str | None = None, noise: bool | None = None,
                       seed: int | None = None) -> SceneSpec:
    """Sample a music scene; keyword arguments pin attributes."""
    duration = cfg.duration if duration is None else float(duration)
    instrument = _choice(rng, cfg.instruments) if instrument is None else instrument
    tempo = _choice(rng, [t for t, _, _ in cfg.tempo_ranges]) if tempo is None else tempo
    key = _choice(rng, cfg.keys) if key is None else key
    mode = _choice(rng, cfg.modes) if mode is None else mode
    pattern = _choice(rng, cfg.patterns) if pattern is None else pattern
    for name, val, allowed in (("instrument", instrument, INSTRUMENTS), ("key", key, tuple(TONIC_MIDI)),
                               ("mode", mode, MODES), ("pattern", pattern, PATTERNS)):
        if val not in allowed:
            raise InputError(f"unknown {name} {val!r}; expected one of {allowed}")
    lo, hi = cfg.tempo_range(tempo)
    bpm = round(float(rng.uniform(lo, hi)), 2)
    ioi = 60.0 / bpm
    t0 = round(float(rng.uniform(cfg.first_onset, cfg.first_onset + 0.15)), 4)
    note_dur = round(cfg.note_fill * ioi, 4)
    n = int(math.floor((duration - 0.05 - note_dur - t0) / ioi)) + 1
    if n < 2:
        raise InputError(f"a {duration}s clip holds fewer than 2 notes at {bpm} BPM")
    if pattern == "melody":
        steps = _melody_steps(rng, n)
    else:
        cyc = ARPEGGIO_STEPS[pattern]
        steps = [cyc[i % len(cyc)] for i in range(n)]
    tonic, scale = TONIC_MIDI[key], SCALES[mode]
    notes = tuple(Note(tonic + scale[s], round(t0 + i * ioi, 4), note_dur,
                       round(float(rng.uniform(*cfg.velocity_range)), 3)) for i, s in enumerate(steps))
    music = MusicSpec(instrument, tempo, bpm, key, mode, pattern, notes)
    noise_db = _sample_noise(rng, cfg, noise)
    seed = int(rng.integers(2**31)) if seed is None else int(seed)
    return SceneSpec("music", duration, music=music, noise_db=noise_db, seed=seed)


def sample_scene(rng: np.random.Generator, kind: str = "event", cfg: WorldConfig = DEFAULT_CONFIG,
                 **constraints) -> SceneSpec:
    """Sample an ``"event"`` or ``"music"`` scene (see the two specialised samplers for the
    constraint keywords)."""
    if kind == "event":
        return sample_event_scene(rng, cfg, **constraints)
    if kind == "music":
        return sample_music_scene(rng, cfg, **constraints)
    raise InputError(f"kind must be 'event' or 'music', got {kind!r}")


# ----------------------------------------------------------------------------------------------
# Splits and datasets
# ----------------------------------------------------------------------------------------------
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


def combo_key(spec: SceneSpec) -> str:
    """The attribute combination a caption can express (background noise excluded)."""
    if spec.kind == "music":
        m = spec.music
        return f"music|{m.instrument}|{m.tempo}|{m.key}|{m.mode}|{m.pattern}"
    return "event|" + ";".join(f"{c}x{cat}:{p}" for c, cat, p in spec.runs)


def is_heldout(spec: SceneSpec, cfg: WorldConfig = DEFAULT_CONFIG) -> bool:
    """True when the scene's combination belongs to the held-out (test) split."""
    h = int(hashlib.sha1(combo_key(spec).encode("ascii")).hexdigest(), 16)
    return h % cfg.heldout_mod == 0


def make_dataset(n: int, seed: int, split: str = "train", cfg: WorldConfig = DEFAULT_CONFIG,
                 kind: str = "mixed", **constraints) -> list[SceneSpec]:
    """``n`` scenes of ``split``: ``train``/``val`` only non-held-out combinations (disjoint
    random streams), ``test`` only held-out ones.  ``kind``: ``event``, ``music`` or ``mixed``
    (event with probability ``cfg.event_fraction``)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    if kind not in ("event", "music", "mixed"):
        raise InputError(f"kind must be 'event', 'music' or 'mixed', got {kind!r}")
    rng = np.random.default_rng([int(seed), SPLITS[split], 0x5CE7E])
    want_heldout = split == "test"
    out: list[SceneSpec] = []
    for _ in range(n):
        # the kind is drawn first so every split keeps cfg.event_fraction
        k = kind if kind != "mixed" else ("event" if rng.uniform() < cfg.event_fraction else "music")
        for _ in range(2000):
            spec = sample_scene(rng, k, cfg, **constraints)
            if is_heldout(spec, cfg) == want_heldout:
                out.append(spec)
                break
        else:
            raise InputError(f"could not sample a {k} scene of split {split!r} with constraints {constraints}")
    return out


# ----------------------------------------------------------------------------------------------
# Benchmark tasks
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float


def _spans(spec: SceneSpec) -> list[tuple[float, float]]:
    if spec.kind == "music":
        return [(n.onset, n.onset + n.dur) for n in spec.music.notes]
    return [(e.onset, e.onset + e.dur) for e in spec.events]


def sample_inpaint_range(spec: SceneSpec, rng: np.random.Generator, mode: str = "event",
                         min_len: float = 0.4, max_len: float = 1.2) -> TimeRange:
    """A time range to regenerate.  ``mode="event"``: exactly one whole event/note with 0.1 s
    margins (clipped so it does not cut into its neighbours); ``"random"``: a random range of
    ``min_len..max_len`` seconds inside the clip."""
    if mode == "random":
        length = float(rng.uniform(min_len, max_len))
        start = float(rng.uniform(0.0, max(0.0, spec.duration - length)))
        return TimeRange(round(start, 4), round(min(spec.duration, start + length), 4))
    if mode != "event":
        raise InputError(f"inpaint mode must be 'event' or 'random', got {mode!r}")
    spans = _spans(spec)
    i = int(rng.integers(len(spans)))
    start = spans[i][0] - 0.1
    end = spans[i][1] + 0.1
    if i > 0:
        start = max(start, (spans[i - 1][1] + spans[i][0]) / 2)
    if i + 1 < len(spans):
        end = min(end, (spans[i][1] + spans[i + 1][0]) / 2)
    return TimeRange(round(max(0.0, start), 4), round(min(spec.duration, end), 4))


def completion_keep(spec: SceneSpec, keep_seconds: float | None = None) -> float:
    """Seconds kept at the start for a completion task (default: half the clip)."""
    keep = spec.duration / 2 if keep_seconds is None else float(keep_seconds)
    if not 0.0 < keep < spec.duration:
        raise InputError(f"keep_seconds must lie inside (0, {spec.duration}), got {keep}")
    return keep


def time_mask(n_samples: int, sr: int, ranges: Iterable[TimeRange]) -> np.ndarray:
    """Boolean [n_samples] mask, True inside any of the ranges (the part to generate)."""
    m = np.zeros(int(n_samples), dtype=bool)
    for r in ranges:
        a = max(0, int(round(r.start * sr)))
        b = min(int(n_samples), int(round(r.end * sr)))
        m[a:b] = True
    return m


def events_in_range(spec: SceneSpec, start: float, end: float) -> tuple:
    """Events (or notes) whose onset lies in [start, end)."""
    items = spec.music.notes if spec.kind == "music" else spec.events
    return tuple(x for x in items if start <= x.onset < end)


def restrict_spec(spec: SceneSpec, start: float, end: float) -> SceneSpec:
    """The spec of the events/notes whose onset lies in [start, end) (times unchanged)."""
    if spec.kind == "music":
        return replace(spec, music=replace(spec.music, notes=events_in_range(spec, start, end)))
    return replace(spec, events=events_in_range(spec, start, end))


# ----------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------
def _ar_env(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear attack, flat, linear release, all inside n samples."""
    env = np.ones(n)
    a = min(n, max(1, int(round(attack * sr))))
    r = min(n - a, max(1, int(round(release * sr)))) if n > a else 0
    env[:a] = np.arange(1, a + 1) / a
    if r > 0:
        env[n - r:] = np.arange(r, 0, -1) / (r + 1)
    return env


def _harmonics(t: np.ndarray, f: float, sr: int, amps: Sequence[tuple[int, float]]) -> np.ndarray:
    y = np.zeros_like(t)
    for k, a in amps:
        if k * f < 0.45 * sr:
            y += a * np.sin(2 * np.pi * k * f * t)
    return y


def _square(t: np.ndarray, f: float, sr: int) -> np.ndarray:
    """Band-limited square: (4/pi) sum over odd k of sin(2 pi k f t)/k, k f < 0.45 sr."""
    kmax = int(0.45 * sr / f)
    return _harmonics(t, f, sr, [(k, 4 / np.pi / k) for k in range(1, kmax + 1, 2)])


def _peak_to(y: np.ndarray, amp: float) -> np.ndarray:
    p = np.max(np.abs(y))
    return y * (amp / p) if p > 0 else y


def synth_event(ev: SoundEvent, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono waveform of one event (length round(dur*sr)), peak = ev.amp."""
    n = max(1, int(round(ev.dur * sr)))
    t = np.arange(n) / sr
    c, f = ev.category, ev.freq
    if c == "beep":
        y = np.sin(2 * np.pi * f * t) * _ar_env(n, sr, 0.005, 0.02)
    elif c == "buzz":
        y = _square(t, f, sr) * _ar_env(n, sr, 0.005, 0.02)
    elif c in ("chirp_up", "chirp_down"):
        f0, f1 = (f / math.sqrt(2), f * math.sqrt(2)) if c == "chirp_up" else (f * math.sqrt(2), f / math.sqrt(2))
        r = f1 / f0
        phase = 2 * np.pi * f0 * ev.dur / math.log(r) * (r ** (t / ev.dur) - 1.0)
        y = np.sin(phase) * _ar_env(n, sr, 0.005, 0.02)
    elif c == "noise":
        y = rng.standard_normal(n) * _ar_env(n, sr, 0.005, 0.03)
    elif c == "click":
        y = rng.standard_normal(n) * np.exp(-t / 0.002)
    elif c == "drum":
        tau_f = 0.02
        phase = 2 * np.pi * f * (t + 0.6 * tau_f * (1 - np.exp(-t / tau_f)))
        body = np.sin(phase) * np.exp(-t / 0.07)
        hit = 0.5 * rng.standard_normal(n) * np.exp(-t / 0.004)
        y = (body + hit) * _ar_env(n, sr, 0.001, 0.02)
    elif c == "bell":
        tau = 0.10 + 0.04 * rng.uniform()
        y = np.zeros(n)
        for i, (ratio, a) in enumerate(zip(BELL_RATIOS, BELL_AMPS)):
            if ratio * f < 0.45 * sr:
                y += a * np.sin(2 * np.pi * ratio * f * t) * np.exp(-t / (tau / (1 + 0.6 * i)))
        y *= _ar_env(n, sr, 0.002, 0.03)
    else:
        raise InputError(f"unknown event category {c!r}; expected one of {CATEGORIES}")
    return _peak_to(y, ev.amp)


def synth_note(note: Note, instrument: str, sr: int) -> np.ndarray:
    """Mono waveform of one note (length round(dur*sr)), peak = note.amp."""
    n = max(1, int(round(note.dur * sr)))
    t = np.arange(n) / sr
    f = midi_to_hz(note.midi)
    if instrument == "sine":
        y = np.sin(2 * np.pi * f * t) * _ar_env(n, sr, 0.01, 0.03)
    elif instrument == "square":
        y = _square(t, f, sr) * _ar_env(n, sr, 0.01, 0.03)
    elif instrument == "pluck":
        y = np.zeros(n)
        for k in range(1, 9):
            if k * f < 0.45 * sr:
                y += (1.0 / k) * np.sin(2 * np.pi * k * f * t) * np.exp(-t * k ** 0.8 / 0.25)
        y *= _ar_env(n, sr, 0.003, 0.03)
    elif instrument == "organ":
        y = _harmonics(t, f, sr, [(1, 1.0), (2, 0.8), (3, 0.5), (4, 0.45), (6, 0.25), (8, 0.2)])
        y *= _ar_env(n, sr, 0.015, 0.04)
    else:
        raise InputError(f"unknown instrument {instrument!r}; expected one of {INSTRUMENTS}")
    return _peak_to(y, note.amp)


def render_audio(spec: SceneSpec, sr: int | None = None, duration: float | None = None,
                 channels: int | None = None, peak: float | None = None,
                 cfg: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """float32 [channels, round(duration*sr)] waveform, peak-normalised to ``peak``.

    Events/notes start at sample ``round(onset*sr)`` exactly; parts beyond ``duration`` are cut.
    Stereo uses constant-power panning by ``SoundEvent.pan`` (notes are centred).
    """
    sr = cfg.sample_rate if sr is None else int(sr)
    duration = spec.duration if duration is None else float(duration)
    channels = cfg.channels if channels is None else int(channels)
    peak = cfg.peak if peak is None else float(peak)
    if channels not in (1, 2):
        raise InputError(f"channels must be 1 or 2, got {channels}")
    n_total = int(round(duration * sr))
    out = np.zeros((channels, n_total))
    items: list[tuple[np.ndarray, float, float]] = []
    if spec.kind == "music":
        for note in spec.music.notes:
            items.append((synth_note(note, spec.music.instrument, sr), note.onset, 0.0))
    elif spec.kind == "event":
        for i, ev in enumerate(spec.events):
            rng = np.random.default_rng([spec.seed, 1, i])
            items.append((synth_event(ev, sr, rng), ev.onset, ev.pan))
    else:
        raise InputError(f"spec.kind must be 'event' or 'music', got {spec.kind!r}")
    for y, onset, pan in items:
        a = int(round(onset * sr))
        if a >= n_total:
            continue
        y = y[: n_total - a]
        if channels == 1:
            out[0, a:a + len(y)] += y
        else:
            th = (pan + 1) * np.pi / 4
            out[0, a:a + len(y)] += math.cos(th) * math.sqrt(2) * y
            out[1, a:a + len(y)] += math.sin(th) * math.sqrt(2) * y
    fg_peak = float(np.max(np.abs(out))) if out.size else 0.0
    if spec.noise_db is not None and n_total > 0:
        rms = 10.0 ** (spec.noise_db / 20.0) * (fg_peak if fg_peak > 0 else 1.0)
        noise = np.random.default_rng([spec.seed, 2]).standard_normal(n_total) * rms
        out += noise[None, :]
    p = float(np.max(np.abs(out))) if out.size else 0.0
    if p > 0:
        out *= peak / p
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Video and images
# ----------------------------------------------------------------------------------------------
def onset_frame(onset: float, fps: float) -> int:
    """Frame index at which an onset is shown: round(onset*fps), halves rounded up."""
    return int(math.floor(onset * fps + 0.5))


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean [size, size] mask of a shape of 'radius' r centred at (cx, cy) (pixels)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape in ("triangle_up", "triangle_down"):
        v = (dy + r) / (2 * r) if shape == "triangle_up" else (r - dy) / (2 * r)  # 0 at apex, 1 at base
        return (v >= 0) & (v <= 1) & (np.abs(dx) <= v * r)
    if shape == "cross":
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        return inside & ((np.abs(dx) <= r / 3) | (np.abs(dy) <= r / 3))
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "star":
        rad = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dy, dx) + np.pi / 2
        return rad <= r * (0.6 + 0.4 * np.cos(5 * theta))
    raise InputError(f"unknown shape {shape!r}")


def _event_center(ev_pitch: str | None, size: int) -> tuple[float, float]:
    frac = {"high": 0.25, "mid": 0.5, "low": 0.75, None: 0.5}[ev_pitch]
    return size / 2, size * frac


def _blend(frame: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float) -> None:
    bg = np.asarray(BACKGROUND_RGB, dtype=np.float64)
    col = bg + alpha * (np.asarray(color, dtype=np.float64) - bg)
    frame[mask] = np.maximum(frame[mask], col)


def render_video(spec: SceneSpec, fps: float | None = None, duration: float | None = None,
                 size: int | None = None, cfg: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """uint8 [T, size, size, 3] with T = round(duration*fps); frame k shows time k/fps."""
    fps = cfg.fps if fps is None else float(fps)
    duration = spec.duration if duration is None else float(duration)
    size = cfg.size if size is None else int(size)
    n_frames = int(round(duration * fps))
    frames = np.empty((n_frames, size, size, 3), dtype=np.float64)
    frames[:] = np.asarray(BACKGROUND_RGB, dtype=np.float64)
    if spec.kind == "event":
        r = 0.14 * size
        for ev in spec.events:
            cx, cy = _event_center(ev.pitch, size)
            mask = shape_mask(SHAPES[ev.category], size, cx, cy, r)
            f0 = onset_frame(ev.onset, fps)
            for k in range(max(0, f0), n_frames):
                a = FLASH_DECAY ** (k - f0)
                if a < 0.02:
                    break
                _blend(frames[k], mask, COLORS[ev.category], a)
    elif spec.kind == "music":
        m = spec.music
        slot_w = size / 8
        color = INSTRUMENT_COLORS[m.instrument]
        yy, xx = np.mgrid[0:size, 0:size]
        for i, note in enumerate(m.notes):
            slot = i % 8
            h = float(np.clip((note.midi - 55) / (86 - 55), 0.1, 1.0)) * 0.9 * size
            mask = (xx >= slot * slot_w + 1) & (xx < (slot + 1) * slot_w - 1) & (yy >= size - h)
            f0 = onset_frame(note.onset, fps)
            f1 = onset_frame(note.onset + note.dur, fps)
            for k in range(max(0, f0), min(n_frames, max(f1, f0 + 1))):
                _blend(frames[k], mask, color, 0.85 ** (k - f0))
    else:
        raise InputError(f"spec.kind must be 'event' or 'music', got {spec.kind!r}")
    if spec.noise_db is not None:
        static = np.random.default_rng([spec.seed, 3]).integers(-6, 7, size=frames.shape[:3])
        frames += static[..., None]
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_image(spec: SceneSpec, size: int | None = None, cfg: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """uint8 [size, size, 3] still image of the (single) event type of an event scene: its
    category's shape and colour at its pitch position, fully lit."""
    size = cfg.size if size is None else int(size)
    if spec.kind != "event" or not spec.events:
        raise InputError("render_image needs an event scene (image-to-audio shows one event type)")
    types = {e.type for e in spec.events}
    if len(types) != 1:
        raise InputError(f"render_image needs a scene with exactly one event type, got {sorted(types, key=str)}")
    cat, pitch = next(iter(types))
    img = np.empty((size, size, 3), dtype=np.float64)
    img[:] = np.asarray(BACKGROUND_RGB, dtype=np.float64)
    cx, cy = _event_center(pitch, size)
    _blend(img, shape_mask(SHAPES[cat], size, cx, cy, 0.14 * size), COLORS[cat], 1.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
