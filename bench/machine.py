"""Name the machine a benchmark ran on, exactly enough to reproduce it, and measure its GEMM rate.

    python bench/machine.py [--threads 2] [--json FILE]

Prints the CPU as ``lscpu`` gives it (model name, family/model/stepping, cores, caches, the
vector/matrix extensions that matter for torch's kernels), torch's version and thread count, the
load average, and the dense GEMM rate in fp32 and bf16 for the shape of the full-size MMDiT's
feed-forward at a 10 s clip (tokens × 1536 → 6144).  A benchmark figure only means something
next to these lines: the same code runs 2–3× apart on CPUs that ``lscpu`` calls alike.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

from _common import load_average

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def lscpu() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def gemm_tflops(dtype, m=472, k=1536, n=6144, seconds=3.0) -> float:
    """Sustained rate of ``[m,k] @ [k,n]`` (m = 2 × 236 tokens: a CFG batch of a 10 s clip)."""
    import torch
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    dt = time.perf_counter() - t0
    return 2 * m * k * n * reps / dt / 1e12


def describe(threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    cpu = lscpu()
    flags = set(cpu.get("Flags", "").split())
    return {
        "cpu": cpu.get("Model name", platform.processor() or "unknown"),
        "vendor": cpu.get("Vendor ID", ""),
        "family_model_stepping": f"{cpu.get('CPU family', '?')}/{cpu.get('Model', '?')}/{cpu.get('Stepping', '?')}",
        "cpus": cpu.get("CPU(s)", "?"),
        "hypervisor": cpu.get("Hypervisor vendor", "none"),
        "l2_l3": f"{cpu.get('L2 cache', '?')} / {cpu.get('L3 cache', '?')}",
        "flags": [f for f in FLAGS if f in flags],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
        "gemm_fp32_tflops": round(gemm_tflops(torch.float32), 3),
        "gemm_bf16_tflops": round(gemm_tflops(torch.bfloat16), 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    d = describe(a.threads)
    print(f"CPU: {d['vendor']} {d['cpu']} (family/model/stepping {d['family_model_stepping']}), "
          f"{d['cpus']} vCPUs, hypervisor {d['hypervisor']}, L2/L3 {d['l2_l3']}")
    print(f"extensions: {' '.join(d['flags']) or 'none of ' + ' '.join(FLAGS)}")
    print(f"torch {d['torch']}, {d['threads']} threads, load average {d['load_average']}")
    print(f"GEMM 472×1536 @ 1536×6144: fp32 {d['gemm_fp32_tflops']:.3f} TFLOP/s, "
          f"bf16 {d['gemm_bf16_tflops']:.3f} TFLOP/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(d, f, indent=1)


if __name__ == "__main__":
    main()
