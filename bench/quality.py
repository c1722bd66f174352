"""Generation quality of the demo model on held-out prompts, videos and images (issue 6).

    python bench/quality.py [--models DIR] [--n-text 50] [--n-video 50] [--n-music 30]
                            [--n-image 30] [--n-inpaint 30] [--n-completion 20]
                            [--configs base50,base4,turbo4] [--tasks t2a,tv2a,...] [--cfg S]
                            [--json OUT] [--seed 2024] [--threads 2] [--force] [--check]

``--models``: a folder with ``audiox_demo_base.safetensors``, ``audiox_demo_turbo.safetensors`` and
``demo_t5/`` (default: the shipped ``models/demo``; e.g. ``DIR/export/models/demo`` of a recipe run).

1. Draws held-out scenes (the world's ``test`` split: attribute combinations never in training)
   and checks that none of their combinations, captions or specs occur in the training set the
   recipe renders.
2. Scores the ground-truth renders of those scenes with the same detectors (the detector
   validation, target >= 98 % on every starred metric; below it the run stops unless ``--force``).
3. Scores the same ground truth passed through the model's VAE (posterior mean, decoded): the
   ceiling any generation can reach through that decoder ("GT via VAE" column).
4. Generates every clip with Base at 50 steps with CFG, Base at 4 steps and Turbo at 4 steps, and
   scores them; prints a markdown table (``*`` = metric gated by the validation) with seconds per
   clip, and the issue's targets.  ``--json`` writes everything; ``--check`` exits 1 when a target
   is missed.  Metric definitions: ``audiox_core/demo/quality.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="folder of the demo model files (default: the shipped models/demo)")
    ap.add_argument("--n-text", type=int, default=50, help="event scenes for text→audio and text+video→audio")
    ap.add_argument("--n-video", type=int, default=50, help="event scenes for video→audio")
    ap.add_argument("--n-music", type=int, default=30, help="music scenes for text→music")
    ap.add_argument("--n-image", type=int, default=30, help="single-type event scenes for image→audio")
    ap.add_argument("--n-inpaint", type=int, default=30, help="event scenes for inpainting")
    ap.add_argument("--n-completion", type=int, default=20, help="music and event scenes (each) for completion")
    ap.add_argument("--configs", default="base50,base4,turbo4")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all)")
    ap.add_argument("--cfg", type=float, default=None, help="Base CFG scale (default: the model's, 6)")
    ap.add_argument("--json", default=None, help="write the full report here")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="go on even when the detector validation fails")
    ap.add_argument("--check", action="store_true", help="exit 1 when one of the issue's targets is missed")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    from audiox_core.demo import quality as Q
    from audiox_core.demo.model_config import SHIPPED_LAYOUT
    from audiox_core.errors import AudioXError

    models_dir = Path(args.models) if args.models else ROOT / SHIPPED_LAYOUT["folder"]
    configs = [c for c in args.configs.split(",") if c]
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else list(Q.TASKS)
    echo = lambda s: print(time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    try:
        needed = sorted({Q.CONFIGS[c][0] for c in configs if c in Q.CONFIGS})
        models = Q.load_demo_models(models_dir, needed)
        echo(f"loaded {', '.join(needed)} from {models_dir}")
        q = Q.quality_items(n_text=args.n_text, n_video=args.n_video, n_music=args.n_music, n_image=args.n_image,
                            n_inpaint=args.n_inpaint, n_completion=args.n_completion, seed=args.seed, tasks=tasks)
        rep = Q.run_quality(models, q, configs=configs, cfg_scale=args.cfg, force=args.force, echo=echo)
    except AudioXError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    h = rep["heldout"]
    print()
    print(f"held-out: {h['eval_scenes']} scenes ({h['eval_combinations']} attribute combinations) from the test split "
          f"of seed {args.seed}; disjoint from the {h['train_scenes']} training scenes of seed {h['train_seed']} "
          f"({h['train_combinations']} combinations, {h['train_captions']} captions): no shared combination, "
          f"caption or scene")
    print("settings: " + "; ".join(f"{c}: " + ", ".join(f"{k} {v}" for k, v in s.items())
                                   for c, s in rep["settings"].items()))
    if rep["validation_failures"]:
        print("!" * 100)
        print("WARNING: the detectors are below 98 % on the ground truth of: " + ", ".join(rep["validation_failures"]))
        print("         (--force); the generated-audio numbers of those metrics are not trustworthy")
        print("!" * 100)
    print()
    print(Q.format_table(rep))
    print()
    print("targets (issue 6):")
    targets = Q.check_targets(rep)
    for t in targets:
        v = t["value"]
        vs = "not measured" if v is None else f"{100 * v:+.1f} points" if t["unit"] == "points" else f"{100 * v:.1f} %"
        print(f"  [{'PASS' if t['ok'] else 'FAIL' if t['ok'] is False else ' -- '}] {t['target']}: {vs}")
    rep["targets"] = targets
    rep["total_seconds"] = time.perf_counter() - t0
    print(f"\ntotal {rep['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1, default=str), encoding="utf-8")
        print(f"wrote {args.json}")
    if args.check and any(t["ok"] is False for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
