"""ASCII captions of world scenes: varied (:func:`caption`) and canonical (:func:`caption_canonical`).

What a caption expresses -- and so what a model can be asked for and measured on:

* event scenes: the events in time order, grouped into runs of the same (category, pitch), each
  run as count + pitch + category ("two high beeps, then a low bell"), plus background noise when
  present.  Onset times are not captioned (the video carries them).
* music scenes: tempo class, pattern, instrument, key and mode (sometimes also the BPM, rounded).

Varied captions draw synonyms, number words or digits, run connectors ("then", "followed by",
"and then") and sentence templates from the generator passed in; every wording maps back to the
same attributes.  Only ASCII is produced (a byte-level tokenizer reads the captions).

:func:`render_example` bundles a scene's audio, video and both captions (one training item).
This module builds on :mod:`.world` (scenes and their rendering); the world knows nothing of
captions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .world import DEFAULT_CONFIG, SceneSpec, WorldConfig, render_audio, render_video

COUNT_WORDS: dict[int, tuple[str, ...]] = {
    1: ("a", "one", "a single", "1"),
    2: ("two", "2", "a pair of"),
    3: ("three", "3"),
    4: ("four", "4"),
}
PITCH_WORDS: dict[str, tuple[str, ...]] = {
    "low": ("low", "low-pitched", "deep"),
    "mid": ("mid", "mid-pitched", "medium-pitched"),
    "high": ("high", "high-pitched"),
}
#: (singular, plural) nouns of every category; the first is canonical.
CATEGORY_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "beep": (("beep", "beeps"), ("sine beep", "sine beeps"), ("tone", "tones"), ("bleep", "bleeps")),
    "buzz": (("buzz", "buzzes"), ("square buzz", "square buzzes"), ("buzzer", "buzzers")),
    "chirp_up": (("rising chirp", "rising chirps"), ("upward chirp", "upward chirps"), ("rising sweep", "rising sweeps")),
    "chirp_down": (("falling chirp", "falling chirps"), ("downward chirp", "downward chirps"), ("falling sweep", "falling sweeps")),
    "noise": (("noise burst", "noise bursts"), ("burst of noise", "bursts of noise"), ("static burst", "static bursts")),
    "click": (("click", "clicks"), ("tick", "ticks")),
    "drum": (("drum hit", "drum hits"), ("drum strike", "drum strikes"), ("drum", "drums")),
    "bell": (("bell", "bells"), ("bell ding", "bell dings"), ("chime", "chimes")),
}
CONNECTORS: tuple[str, ...] = (", then ", " then ", ", followed by ", " followed by ", ", and then ", ". Then ")
EVENT_TEMPLATES: tuple[str, ...] = ("{x}", "{X}.", "The sound of {x}.", "A clip with {x}.", "Sound effects: {x}.",
                                    "You hear {x}.", "Audio of {x}")
BACKGROUND_PHRASES: tuple[str, ...] = (" with background noise", " with faint background noise", " over a quiet hiss",
                                       " with low background hiss")

TEMPO_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "leisurely", "unhurried"),
    "medium": ("medium-tempo", "moderate", "mid-tempo"),
    "fast": ("fast", "quick", "brisk", "upbeat"),
}
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "ascending": ("ascending arpeggio", "rising arpeggio", "upward arpeggio"),
    "descending": ("descending arpeggio", "falling arpeggio", "downward arpeggio"),
    "melody": ("melody", "simple melody", "little tune", "short tune"),
}
INSTRUMENT_WORDS: dict[str, tuple[str, ...]] = {
    "sine": ("sine wave", "pure sine tone", "sine synth"),
    "square": ("square wave", "square synth", "chiptune square wave"),
    "pluck": ("plucked string", "pluck synth", "plucked synth string"),
    "organ": ("organ", "electric organ", "organ sound"),
}
MUSIC_TEMPLATES: tuple[str, ...] = (
    "{a_tempo} {pattern} on {a_inst} in {key}",
    "{Tempo} {inst} {pattern} in {key}.",
    "{Pattern} played on {a_inst}, {tempo}, {key}.",
    "Music: {a_tempo} {pattern} in {key}, {inst} timbre.",
    "{Key} {pattern}, {tempo}, played on {a_inst}",
    "A {tempo} {pattern} in the key of {key}, played on {a_inst}.",
)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _run_phrase(count: int, category: str, pitch: str | None, rng: np.random.Generator | None) -> str:
    choose = (lambda seq: seq[0]) if rng is None else (lambda seq: _pick(rng, seq))
    sing, plur = choose(CATEGORY_NOUNS[category])
    noun = sing if count == 1 else plur
    if pitch is not None:
        noun = f"{choose(PITCH_WORDS[pitch])} {noun}"
    if count > 4:
        return f"{count} {noun}"
    cw = choose(COUNT_WORDS[count])
    if cw == "a":
        return _article(noun)
    if cw == "a single":
        return f"a single {noun}"
    return f"{cw} {noun}"


def caption_canonical(spec: SceneSpec) -> str:
    """One fixed caption per scene, e.g. ``two high beeps, then a low bell`` or
    ``a fast ascending arpeggio on a square wave in D minor``."""
    if spec.kind == "music":
        m = spec.music
        s = (f"{_article(TEMPO_WORDS[m.tempo][0])} {PATTERN_WORDS[m.pattern][0]} on "
             f"{_article(INSTRUMENT_WORDS[m.instrument][0])} in {m.key} {m.mode}")
    else:
        s = ", then ".join(_run_phrase(c, cat, p, None) for c, cat, p in spec.runs)
    if spec.noise_db is not None:
        s += " with background noise"
    return s


def events_for_caption(text: str, cfg: WorldConfig = DEFAULT_CONFIG) -> list[tuple[str, str | None]]:
    """The ``(category, pitch)`` sequence, in time order, of the event scene whose canonical caption
    (:func:`caption_canonical`, no background noise) is exactly ``text``: each ``", then "`` part
    must be the canonical phrase of one run (1–4 events of one type, a type other than its
    neighbour's).  Raises :class:`InputError` when no scene reads that way."""
    from ..errors import InputError
    from .world import CATEGORIES, UNPITCHED

    pitches = [n for n, _ in cfg.pitch_centers]
    runs = {_run_phrase(k, c, p, None): (k, (c, p))
            for c in CATEGORIES for p in ([None] if c in UNPITCHED else pitches) for k in range(1, 5)}
    parsed = [runs.get(part) for part in text.split(", then ")]
    types = [r[1] for r in parsed if r is not None]
    if None in parsed or any(a == b for a, b in zip(types, types[1:])):
        raise InputError(f"no demo-world event scene has the canonical caption {text!r}")
    return [t for k, t in parsed for _ in range(k)]


def caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    """A randomly worded caption expressing the same attributes as the canonical one."""
    if spec.kind == "music":
        s = _music_caption(spec, rng)
    else:
        runs = spec.runs
        parts = [_run_phrase(c, cat, p, rng) for c, cat, p in runs]
        x = parts[0]
        for part in parts[1:]:
            conn = _pick(rng, CONNECTORS)
            x += conn + (_cap(part) if conn.startswith(".") else part)
        if spec.noise_db is not None:
            x += _pick(rng, BACKGROUND_PHRASES)
        tpl = _pick(rng, EVENT_TEMPLATES)
        s = tpl.replace("{X}", _cap(x)).replace("{x}", x)
        return _cap(s) if rng.uniform() < 0.5 else s
    if spec.noise_db is not None:
        s = s.rstrip(".") + _pick(rng, BACKGROUND_PHRASES)
    return s


def _music_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    m = spec.music
    tempo = _pick(rng, TEMPO_WORDS[m.tempo])
    pattern = _pick(rng, PATTERN_WORDS[m.pattern])
    inst = _pick(rng, INSTRUMENT_WORDS[m.instrument])
    key = f"{m.key} {m.mode}"
    if rng.uniform() < 0.25:
        tempo_bpm = f"{tempo} ({int(round(m.bpm))} BPM)"
    else:
        tempo_bpm = tempo
    tpl = _pick(rng, MUSIC_TEMPLATES)
    s = tpl.format(a_tempo=_article(tempo_bpm), Tempo=_cap(tempo_bpm), tempo=tempo_bpm, pattern=pattern,
                   Pattern=_cap(pattern), inst=inst, a_inst=_article(inst), key=key, Key=key)
    return _cap(s) if rng.uniform() < 0.5 else s


def render_example(spec: SceneSpec, rng: np.random.Generator, cfg: WorldConfig = DEFAULT_CONFIG,
                   video: bool = True) -> dict[str, Any]:
    """Everything a training step needs for one scene: ``audio`` float32 [C, N] at
    ``cfg.sample_rate``, ``video`` uint8 [T, H, W, 3] at ``cfg.fps`` / ``cfg.size`` (None when
    ``video=False``), ``caption`` (varied, drawn from ``rng``), ``caption_canonical`` and
    ``spec``."""
    return {
        "audio": render_audio(spec, cfg.sample_rate, spec.duration, cfg.channels, cfg.peak, cfg),
        "video": render_video(spec, cfg.fps, spec.duration, cfg.size, cfg) if video else None,
        "caption": caption(spec, rng),
        "caption_canonical": caption_canonical(spec),
        "spec": spec,
    }
