"""Does the example LoRA do something measurable? (issue 14: "LoRA does something measurable")

    python bench/lora_effect.py [--out DIR] [--n 24] [--steps 50] [--json OUT] [--lora FILE]

1. Trains the LoRA exactly as ``workflows/lora_training.json`` does, by running that graph with
   the graph runner (``python -m runner``) into ``DIR`` (default: a temporary folder): the example
   folder ``audiox_example_dataset`` (six bell-and-drum clips with captions), the demo base model,
   the graph's own settings.  ``--lora FILE`` skips this and measures an existing LoRA.
2. Generates ``--n`` held-out text→audio prompts of the world (the quality benchmark's ``t2a``
   items; every event category appears in them), or ``--prompt`` for every seed (``''``: no text),
   each with the same seed, with and without the LoRA (Base, ``--steps`` steps, CFG 6 as in the
   graph), and detects the events of each clip.
3. Prints the share of detected events that are bells or drums, with and without the LoRA, and
   the difference in points (target: ≥ 30).  ``--json`` writes every clip's detections.

The held-out prompts mostly ask for other sounds, so a LoRA that moves generations toward its
folder raises the bell/drum share; the prompts and seeds are identical in both columns.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LORA_NAME = "audiox_demo_lora.safetensors"
TARGET_POINTS = 30.0
FOLDER_CATEGORIES = ("bell", "drum")


def train_lora(out: Path, threads: int) -> tuple[Path, float]:
    """Run workflows/lora_training.json with the graph runner; the LoRA file it saved and the wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", str(ROOT / "workflows" / "lora_training.json"),
                    "--out", str(out / "graph"), "--models", str(out / "models")], cwd=ROOT, env=env, check=True)
    wall = time.perf_counter() - t0
    hits = sorted((out / "models").rglob(LORA_NAME))
    if not hits:
        raise SystemExit(f"the graph ran but wrote no {LORA_NAME} under {out / 'models'}")
    return hits[0], wall


def folder_share(events: list[list[str]]) -> float:
    """Percentage of all detected events (over every clip) that are bells or drums."""
    flat = [c for clip in events for c in clip]
    return 100.0 * sum(c in FOLDER_CATEGORIES for c in flat) / max(1, len(flat))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--lora", default=None, help="measure this LoRA file instead of training one")
    ap.add_argument("--n", type=int, default=24, help="held-out text→audio prompts")
    ap.add_argument("--steps", type=int, default=50, help="sampler steps (the graph uses 50)")
    ap.add_argument("--prompt", default=None,
                    help="one prompt for every seed instead of the held-out prompts (e.g. '' for no text)")
    ap.add_argument("--cfg", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    from audiox_core.demo import detectors
    from audiox_core.demo.model_config import SHIPPED_LAYOUT
    from audiox_core.demo.quality import load_demo_models, quality_items
    from audiox_core.generate import SamplerSettings
    from audiox_core.task import GenerationRequest, generate
    from audiox_core.training.lora import load_lora, lora_scope

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="audiox_lora_effect_"))
    work.mkdir(parents=True, exist_ok=True)
    train_wall = None
    if args.lora:
        lora_path = Path(args.lora)
    else:
        print(f"training the LoRA with workflows/lora_training.json into {work} ...", flush=True)
        lora_path, train_wall = train_lora(work, args.threads)
        print(f"LoRA: {lora_path} ({train_wall:.0f} s for the whole graph)", flush=True)

    model = load_demo_models(ROOT / SHIPPED_LAYOUT["folder"], which=("base",))["base"]
    model.eval()
    lora = load_lora(lora_path, model)
    items = quality_items(n_text=args.n, n_video=0, n_music=0, n_image=0, n_inpaint=0, n_completion=0,
                          seed=args.seed, tasks=("t2a",)).items["t2a"]
    sr = model.config.sample_rate
    rows = []
    t0 = time.perf_counter()
    for i, it in enumerate(items):
        prompt = it.caption if args.prompt is None else args.prompt
        settings = SamplerSettings.for_model(model, "base", steps=args.steps, cfg_scale=args.cfg, seed=args.seed + i)
        got = {}
        for name, active in (("base", ()), ("lora", (lora,))):
            with lora_scope(model, active), torch.no_grad():
                audio = generate(model, GenerationRequest(prompt=prompt, settings=settings)).audio
            got[name] = [e.category for e in detectors.analyse_events(audio[0, 0].float().numpy(), sr)]
        rows.append({"prompt": prompt, "seed": settings.seed, **got})
        print(f"{i + 1}/{len(items)} {prompt!r}: base {got['base']} | lora {got['lora']}", flush=True)
    base, with_lora = folder_share([r["base"] for r in rows]), folder_share([r["lora"] for r in rows])
    delta = with_lora - base
    print()
    print("| | bell/drum share of detected events | events detected |")
    print("|---|---|---|")
    print(f"| without LoRA | {base:.1f} % | {sum(len(r['base']) for r in rows)} |")
    print(f"| with LoRA | {with_lora:.1f} % | {sum(len(r['lora']) for r in rows)} |")
    print(f"\ndifference: {delta:+.1f} points (target ≥ {TARGET_POINTS:.0f}): {'met' if delta >= TARGET_POINTS else 'MISSED'}"
          f"; {len(rows)} prompts × 2, {args.steps} steps, CFG {args.cfg:g}, "
          f"{(time.perf_counter() - t0) / max(1, 2 * len(rows)):.2f} s per clip")
    if args.json:
        Path(args.json).write_text(json.dumps({"lora": str(lora_path), "train_graph_wall_s": train_wall,
                                               "share_base": base, "share_lora": with_lora, "delta_points": delta,
                                               "target_points": TARGET_POINTS, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
