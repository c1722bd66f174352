"""Do a VAE's latents keep event categories apart? (issue 14: the VAE ceiling)

    python bench/vae_probe.py [FILE ...] [--n 450] [--json OUT]

FILE: a VAE file (``vae.safetensors`` of the recipe) or a model checkpoint (its VAE is used);
default: the shipped demo model.  For each pair of ``audiox_core.demo.evaluation.PROBE_PAIRS``
(beep/buzz, bell/drum: the demo VAE's two big round-trip confusions) it encodes ``--n`` isolated
events per category and trains a small convolutional probe on the latent frames around each onset
(every third event held out), and the same probe on a log spectrogram pooled to as many bands at
the latent frame rate (the reference).  Test accuracy 50 % is chance: at chance, the latents do not
hold the difference, and no decoder can render it.  ≈ 1.5 min per file on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from _common import ROOT

from audiox_core.checkpoint import classify_file, load_vae  # noqa: E402
from audiox_core.demo.evaluation import latent_probe_report  # noqa: E402


def _pretransform(path: str):
    if classify_file(path).kind == "vae":
        return load_vae(path)
    from audiox_core.api import load
    return load(path).pretransform


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(ROOT / "models/demo/audiox_demo_base.safetensors")])
    ap.add_argument("--n", type=int, default=450, help="events per category")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    rows = {}
    print("| file | pair | latent train | latent test | spectrum test |")
    print("|---|---|---:|---:|---:|")
    for f in args.files:
        t0 = time.perf_counter()
        rep = latent_probe_report(_pretransform(f), n_per_class=args.n)
        rows[f] = rep
        for pair, r in rep.items():
            if isinstance(r, dict):
                print(f"| {f} | {pair} | {100 * r['latent']['train']:.1f} | {100 * r['latent']['test']:.1f} | "
                      f"{100 * r['spectrum']['test']:.1f} |", flush=True)
        print(f"<!-- {f}: {time.perf_counter() - t0:.0f} s -->", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
