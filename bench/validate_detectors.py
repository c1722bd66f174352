"""Validate the demo-world detectors on ground-truth renders, clean and degraded.

Usage: python bench/validate_detectors.py [--n-event 300] [--n-music 200] [--seed 4242]

Renders clips from the world's ``val`` and ``test`` splits of a seed that the detectors were
never fitted on, applies every degradation of ``audiox_core.demo.degrade.degradations`` and
prints per-degradation accuracies (target: >= 98 % for event category, count, pitch, order and
onsets within 50 ms).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiox_core.demo import detectors as D  # noqa: E402
from audiox_core.demo import validation as V  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-event", type=int, default=300)
    ap.add_argument("--n-music", type=int, default=200)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--degradations", nargs="*", default=None)
    ap.add_argument("--stress", action="store_true", help="also run the harsher stress degradations")
    ap.add_argument("--refit", action="store_true",
                    help=f"refit the classifiers on seed {D.FIT_SEED} and rewrite {D.PARAMS_FILE.name} first")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.refit:
        D.save_classifiers(D.fit_classifiers())
    D.use_classifiers(D.load_classifiers())
    fit_s = time.perf_counter() - t0
    from audiox_core.demo.degrade import degradations, stress_degradations
    mild = list(degradations(16000))
    names = args.degradations or mild
    if args.stress:
        names = names + list(stress_degradations(16000))
    rep = V.validate(args.n_event, args.n_music, args.seed, names)
    cols = [("event/" + m) for m in V.EVENT_METRICS] + [("music/" + m) for m in V.MUSIC_METRICS]
    short = dict(zip(cols, ["e:categ", "e:count", "e:pitch", "e:order", "e:onset", "m:count", "m:onset", "m:tempo",
                            "m:key", "m:mode", "m:instr", "m:pattrn", "m:notes"]))
    print(f"clips: {args.n_event} event + {args.n_music} music per degradation, seed {args.seed}; "
          f"classifiers {'fitted and ' if args.refit else ''}loaded in {fit_s:.1f} s")
    print("e:* event clips (clip-level: all events right; onset = every onset within 50 ms), "
          "m:* music clips (m:notes = fraction of notes with the right MIDI pitch)")
    header = f"{'degradation':<12}" + "".join(f"{short[c]:>9}" for c in cols) + f"{'ms/clip':>9}"
    print(header)
    print("-" * len(header))
    worst = {c: 1.0 for c in cols}
    stress_started = False
    for nm, row in rep.items():
        if nm not in mild and not stress_started:
            print("-- stress conditions (reported, no target):")
            stress_started = True
        print(f"{nm:<12}" + "".join(f"{100 * row[c]:>8.1f}%" for c in cols) + f"{1000 * row['sec_per_clip']:>9.1f}")
        if nm in mild:
            for c in cols:
                worst[c] = min(worst[c], row[c])
    print("-" * len(header))
    print(f"{'worst mild':<12}" + "".join(f"{100 * worst[c]:>8.1f}%" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
