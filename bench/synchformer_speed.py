"""Seconds to extract Synchformer sync features for a 10 s clip (250 frames at 25 fps).

Builds the full-size visual extractor (ViT-B/16 divided space-time, 122 M parameters) with random
weights, materialised directly in the target dtype, and times ``Synchformer.encode`` on 250
preprocessed 224x224 frames (30 windows of 16 frames, 1569 tokens each -> [1, 240, 768]) with
``--threads`` intra-op threads.  Reports wall time, process CPU time, seconds per window, peak
RSS, and for bf16 the relative error against the fp32 result on the same weights and frames.
The load average is printed first: on a shared machine the wall time is only meaningful when the
load is below the thread count.

    python bench/synchformer_speed.py                     # fp32 and bf16, 250 frames (~2 min on 2 cores)
    python bench/synchformer_speed.py --frames 24 --dtypes bf16   # 2 windows, a quick look

Work per window: 12 blocks x 1569 tokens x (2 qkv + 2 proj + MLP) = 9.4 M MAC per token per block
= 0.36 TFLOP, + attention 0.01 TFLOP; 30 windows = 10.7 TFLOP (each frame is in two windows).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
FLOP_PER_WINDOW = 2 * (12 * 1569 * 9_437_184 + 1568 * 768 * 1536) + 12 * 2 * 2 * 768 * (8 * 196 * 197 + 196 * 8 * 9)


def build(dtype):
    import torch
    from audiox_core.conditioning.synchformer import Synchformer

    with torch.device("meta"):
        model = Synchformer()
    model = model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.vfeat_extractor.reset_parameters()
    return model.to(dtype).eval().requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    ap.add_argument("--batch-segments", type=int, default=2)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.2f}")
    torch.manual_seed(1)
    frames = torch.rand(1, args.frames, 3, 224, 224) * 2 - 1
    results = {}
    for name in args.dtypes:
        dtype = getattr(torch, DTYPES[name])
        model = build(dtype)
        S = model.num_segments(args.frames)
        model.encode(frames[:, :16])  # warm-up (one window)
        done = []
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.encode(frames, batch_segments=args.batch_segments,
                           callback=lambda s, t, i: done.append(time.perf_counter()))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        results[name] = out.float()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        line = (f"{name}: {args.frames} frames -> {tuple(out.shape)}  wall {wall:.1f} s  cpu {cpu:.1f} s  "
                f"{wall / S:.2f} s/window  {FLOP_PER_WINDOW * S / wall / 1e9:.0f} GFLOP/s  "
                f"peak RSS {rss:.0f} MiB  load {os.getloadavg()[0]:.2f}")
        if name != "fp32" and "fp32" in results:
            ref = results["fp32"]
            rel = ((results[name] - ref).norm() / ref.norm()).item()
            line += f"  rel. L2 err vs fp32 {rel:.2e}"
        print(line, flush=True)
        del model


if __name__ == "__main__":
    main()
