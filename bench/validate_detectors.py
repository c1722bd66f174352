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
    ap.add_argument("--refit", action="store_true",
                    help=f"refit the classifiers on seed {D.FIT_SEED} and rewrite {D.PARAMS_FILE.name} first")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.refit:
        D.save_classifiers(D.fit_classifiers())
    D.use_classifiers(D.load_classifiers())
    fit_s = time.perf_counter() - t0
    rep = V.validate(args.n_event, args.n_music, args.seed, args.degradations)
    cols = [("event/" + m) for m in V.EVENT_METRICS] + [("music/" + m) for m in V.MUSIC_METRICS]
    short = {c: c.split("/")[0][0] + ":" + c.split("/")[1].replace("_ok", "").replace("_acc", "") for c in cols}
    print(f"clips: {args.n_event} event + {args.n_music} music per degradation, seed {args.seed}; "
          f"classifiers {'fitted and ' if args.refit else ''}loaded in {fit_s:.1f} s")
    header = f"{'degradation':<12}" + "".join(f"{short[c]:>12}" for c in cols) + f"{'s/clip':>9}"
    print(header)
    print("-" * len(header))
    worst = {c: 1.0 for c in cols}
    for nm, row in rep.items():
        print(f"{nm:<12}" + "".join(f"{100 * row[c]:>11.1f}%" for c in cols) + f"{row['sec_per_clip']:>9.3f}")
        for c in cols:
            worst[c] = min(worst[c], row[c])
    print("-" * len(header))
    print(f"{'worst':<12}" + "".join(f"{100 * worst[c]:>11.1f}%" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
