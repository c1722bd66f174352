"""How much a trained demo model uses each condition: flow loss with the right, another scene's and no condition.

    python bench/condition_gap.py --run DIR [--model FILE] [--t5 FOLDER] [--n 96] [--threads 2]

``DIR`` is a recipe run (``python -m audiox_core.demo.recipe --out DIR``): its prepared training
cache is reused.  Default model: ``DIR/base/model.safetensors`` with the recipe's T5.  On ``n``
event clips without an audio prompt it prints the held-fixed-noise flow loss
(``training.evaluate_loss``: t ∈ {0.1 … 0.9}, posterior means) with

* the clip's own caption / another clip's caption / the empty caption — video present and absent;
* the caption gap ``(other − right) / right``: how much the caption specific to the clip helps.

A model that ignores its text shows a gap near 0 (the first shipped demo base model: 1.8 %
without video).  These clips were seen in training, so the numbers measure use of the
condition, not generalisation (``bench/quality.py`` does that on held-out scenes).
"""
from __future__ import annotations

import argparse
import copy
import time

from _common import ROOT  # noqa: F401  (puts the repository root on sys.path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="recipe output folder (its data stage must have run)")
    ap.add_argument("--model", default=None, help="model file (default: RUN/base/model.safetensors)")
    ap.add_argument("--t5", default=None, help="T5 folder (default: the recipe's newest)")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from audiox_core.checkpoint import load_model
    from audiox_core.demo.build import load_demo_t5
    from audiox_core.demo.recipe import Recipe
    from audiox_core.training import evaluate_loss

    r = Recipe(args.run)
    cfg = r.demo_config()
    model = load_model(args.model or (r.stage_dir("base") / "model.safetensors"), dtype=torch.float32)
    model.set_text_encoder(load_demo_t5(args.t5 or r.t5_dir(), cfg))
    data = r.prepared(model)
    idx = [i for i, rec in enumerate(data.records) if not rec["type"] and rec["spec"]["kind"] == "event"][:args.n]
    base_items = [data.items[i] for i in idx]

    def subset(items):
        d = copy.copy(data)
        d.items, d.records = items, [data.records[i] for i in idx]
        return d

    def variant(caption: str, video: bool):
        out = []
        for k, it in enumerate(base_items):
            c = copy.copy(it)
            if caption == "other":
                o = base_items[(k + 1) % len(base_items)]
                c.captions, c.text = o.captions, o.text
            elif caption == "empty":
                c.captions = ""
            if not video:
                c.windows = [copy.copy(w) for w in it.windows]
                for w in c.windows:
                    w.video = None
            out.append(c)
        return subset(out)

    t0 = time.perf_counter()
    print(f"{len(base_items)} event clips without audio prompt; loss × 100 (lower is better)")
    print("| video | right caption | other caption | empty caption | caption gap |")
    print("|---|---:|---:|---:|---:|")
    for video in (True, False):
        right, other, empty = (evaluate_loss(model, variant(c, video), batch_size=16, precision="bf16")
                               for c in ("right", "other", "empty"))
        print(f"| {'present' if video else 'absent'} | {100 * right:.2f} | {100 * other:.2f} | {100 * empty:.2f} "
              f"| {100 * (other - right) / right:+.1f} % |")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
