"""Seconds per network evaluation (NFE) of the full-size backbones on this machine.

Builds the full-size MMDiT (AudioX-MAF-MMDiT / Turbo: embed 1536, depth 24, 64 heads × 24,
Lx = 237, context 384 × 768) and DiT (AudioX: embed 1536, depth 24, 24 heads × 64, 1 + 215
positions, context 471 × 768) with random weights (meta device, then materialised directly in the
target dtype), and times one NFE for B = 1 and for a CFG batch B = 2 ([cond; zeros]) in bf16
weights and fp32 weights.  Median of ``--reps`` after a warm-up, ``--threads`` intra-op threads.

On a shared machine, ``--wait-idle S`` starts every timed run only once the CPU has been idle
for 2 s (waiting at most S seconds); the JSON records how many runs started idle.

The per-generation conditioning caches (``prepare``) are built once outside the timed region,
as a sampler does; the time of one ``prepare`` is reported separately.  Each (model, dtype) runs
in its own subprocess, so the reported peak RSS is that configuration's own.

    python bench/backbone_nfe.py                      # everything (a few minutes on 2 cores)
    python bench/backbone_nfe.py --models mmdit --dtypes bf16
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import peak_rss_gib, wait_idle  # also puts the repo root on sys.path

DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


def build(kind: str, dtype):
    import torch
    from audiox_core.config import BackboneConfig

    if kind == "mmdit":
        from audiox_core.models.mmdit import MMDiT as cls
        cfg = BackboneConfig(type="mmdit", embed_dim=1536, depth=24, num_heads=24, cond_token_dim=768,
                             global_cond_dim=768, latent_seq_len=237)
    else:
        from audiox_core.models.dit import DiT as cls
        cfg = BackboneConfig(type="dit", embed_dim=1536, depth=24, num_heads=24, cond_token_dim=768,
                             global_cond_dim=1536)
    with torch.device("meta"):
        model = cls(cfg)
    model = model.to(dtype).to_empty(device="cpu").eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                bound = 1.0 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=gen)
            elif name.endswith("gamma"):
                p.fill_(1.0)
            else:
                p.uniform_(-0.02, 0.02, generator=gen)
        for name, b in model.named_buffers():
            if name.endswith("inv_freq"):
                from audiox_core.models.blocks import rotary_inv_freq
                b.copy_(rotary_inv_freq(2 * b.numel()))
            else:
                b.zero_()
    return model, cfg


def run_one(kind: str, dtype_name: str, reps: int, threads: int, wait_idle_s: float = 0.0) -> dict:
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, DTYPES[dtype_name])
    t0 = time.perf_counter()
    model, cfg = build(kind, dtype)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    length = cfg.latent_seq_len - 1 if kind == "mmdit" else 215
    n_ctx = 384 if kind == "mmdit" else 471
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, 64, length, generator=gen)
    ctx1 = torch.randn(1, n_ctx, 768, generator=gen) * 0.5
    res = {"model": kind, "dtype": dtype_name, "params": n_params, "build_s": round(build_s, 1),
           "threads": threads, "latent_len": length, "context_tokens": n_ctx}
    with torch.inference_mode():
        for b in (1, 2):
            x = x1.repeat(b, 1, 1)
            ctx = ctx1 if b == 1 else torch.cat([ctx1, torch.zeros_like(ctx1)])
            t = torch.full((b,), 0.7)
            tp = time.perf_counter()
            cache = model.prepare(ctx)
            prep_s = time.perf_counter() - tp
            model(x, t, None, cond_cache=cache)  # warm-up
            times, waited = [], []
            for _ in range(reps):
                if wait_idle_s > 0:
                    waited.append(wait_idle(wait_idle_s))
                ts = time.perf_counter()
                out = model(x, t, None, cond_cache=cache)
                times.append(time.perf_counter() - ts)
            if not torch.isfinite(out).all():
                raise RuntimeError(f"{kind} {dtype_name} B={b}: non-finite output")
            res[f"B{b}_s"] = round(statistics.median(times), 3)
            res[f"B{b}_all_s"] = [round(v, 3) for v in times]
            res[f"B{b}_prepare_s"] = round(prep_s, 3)
            if waited:
                res[f"B{b}_reps_started_idle"] = sum(waited)
            del cache
    res["peak_rss_gib"] = peak_rss_gib()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mmdit", "dit"], choices=["mmdit", "dit"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each timed run, wait up to this long for an idle CPU (shared machines)")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.reps, args.threads, args.wait_idle)))
        return
    rows = []
    for m in args.models:
        for d in args.dtypes:
            idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else None
            cmd = [sys.executable, __file__, "--one", m, d, "--reps", str(args.reps), "--threads", str(args.threads),
                   "--wait-idle", str(args.wait_idle)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                print(f"{m} {d}: FAILED\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["started_idle"] = idle
            rows.append(r)
            print(f"  done {m} {d}: B1 {r['B1_s']} s, B2 {r['B2_s']} s", file=sys.stderr, flush=True)
    print("| model | weights | B=1 s/NFE (min) | CFG B=2 s/NFE (min) | prepare B=1 / B=2 s | params | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        name = "MMDiT 1536×24, Lx 237, ctx 384" if r["model"] == "mmdit" else "DiT 1536×24, 1+215, ctx 471"
        print(f"| {name} | {r['dtype']} | {r['B1_s']:.2f} ({min(r['B1_all_s']):.2f}) | "
              f"{r['B2_s']:.2f} ({min(r['B2_all_s']):.2f}) | "
              f"{r['B1_prepare_s']:.2f} / {r['B2_prepare_s']:.2f} | {r['params'] / 1e9:.2f} B | {r['peak_rss_gib']:.1f} |")
    print(f"\n{rows[0]['threads'] if rows else args.threads} threads, median of {args.reps} after one warm-up; "
          f"torch {__import__('torch').__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
