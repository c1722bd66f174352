"""Load time and peak memory of the full-size AudioX-Turbo model (issue 2 benchmark).

    python bench/load_model.py --make /path/turbo_bf16.safetensors     # write random weights once (~5.4 GB)
    python bench/load_model.py /path/turbo_bf16.safetensors [--dtype bf16] [--vae-dtype fp32]

Each measurement runs in a fresh subprocess; peak RSS is the kernel's high-water mark (VmHWM).
The official loader reads the whole pickle with torch.load and copies it (~22 GB for fp32 weights,
measured for the project's CPU baseline); the target here is peak RSS ≤ 1.2 × the weights' size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _turbo_config():
    from audiox_core.config import AudioXConfig
    p = ROOT / "tests" / "data" / "reference" / "configs" / "audiox_turbo_infer_4step.json"
    if not p.is_file():
        sys.exit(f"need {p} (the official Turbo config) to build the full-size model")
    return AudioXConfig.from_json(p)


def make(path: str, dtype: str) -> None:
    import torch

    from audiox_core.checkpoint import CONFIG_METADATA_KEY, ROLE_METADATA_KEY, expected_keys, parse_dtype
    from audiox_core.weights import save_safetensors
    cfg = _turbo_config()
    shapes = expected_keys(cfg)
    dt = parse_dtype(dtype)
    g = torch.Generator().manual_seed(0)

    class Lazy(Mapping):
        def __iter__(self):
            return iter(shapes)

        def __len__(self):
            return len(shapes)

        def __getitem__(self, k):
            return (torch.randn(shapes[k], generator=g) * 0.02).to(dt)

    t = time.time()
    save_safetensors(Lazy(), path, {CONFIG_METADATA_KEY: json.dumps(cfg.to_dict()), ROLE_METADATA_KEY: "student"})
    print(f"wrote {path}: {os.path.getsize(path) / 2**30:.2f} GiB in {time.time() - t:.0f} s")


def _child(path: str, dtype: str, vae_dtype: str) -> None:
    import torch
    torch.set_num_threads(2)
    from audiox_core.checkpoint import load_model
    t = time.time()
    m = load_model(path, dtype=dtype, vae_dtype=vae_dtype)
    dt = time.time() - t
    n = sum(p.numel() * p.element_size() for p in m.parameters()) + sum(
        b.numel() * b.element_size() for b in m.buffers())
    hwm = rss = 0
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    print(json.dumps(dict(seconds=dt, model_bytes=n, peak_rss=hwm, rss=rss)))


def measure(path: str, dtype: str, vae_dtype: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", path, "--dtype", dtype, "--vae-dtype", vae_dtype],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--make", action="store_true", help="write a random-weight file at PATH first")
    ap.add_argument("--make-dtype", default="bf16")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--vae-dtype", default=None, help="default: fp32 and bf16, both measured")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return _child(a.path, a.dtype, a.vae_dtype)
    if a.make:
        make(a.path, a.make_dtype)
    size = os.path.getsize(a.path)
    print(f"file: {size / 2**30:.2f} GiB ({a.path})")
    print("| dtype | VAE dtype | load s (median) | peak RSS GiB | peak / file size | model tensors GiB |")
    print("|---|---|---|---|---|---|")
    for vdt in ([a.vae_dtype] if a.vae_dtype else ["fp32", "bf16"]):
        runs = [measure(a.path, a.dtype, vdt) for _ in range(a.repeat)]
        secs = sorted(r["seconds"] for r in runs)[len(runs) // 2]
        peak = max(r["peak_rss"] for r in runs)
        mb = runs[0]["model_bytes"]
        print(f"| {a.dtype} | {vdt} | {secs:.1f} | {peak / 2**30:.2f} | {peak / size:.2f} | {mb / 2**30:.2f} |")


if __name__ == "__main__":
    main()
