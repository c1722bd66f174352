"""Text-to-audio latency table: Turbo-4 and Base-50 (CFG) for one clip, per precision mode.

The paper's protocol: batch 1, ``--warmup`` (5) untimed generations, then mean ± std over
``--runs`` (20) timed ones.  One generation = T5 (cache cleared) + absent video / audio-prompt
conditions + MAF fusion ("encoders"), the sampling loop ("backbone"; Turbo: 4 student steps,
Base: 50 Euler steps with batched CFG 6), VAE decode ("VAE"), each timed with device
synchronisation.  Random weights (cost does not depend on them).  Columns: latency, real-time
factor (latency / clip seconds; < 1 is faster than real time), peak memory — VRAM
(``torch.cuda.max_memory_allocated``) on CUDA, the process's peak RSS on CPU — and the split.

Rows (``--rows``; each in its own process so every row's peak memory is its own):

* ``fp16`` / ``bf16``: the model in that dtype (VAE fp32, T5 bf16 — fp32 in the fp16 row, T5
  overflows in fp16), all of it on the device;
* ``bf16+compile``: bf16 with :func:`audiox_core.acceleration.compile_backbone` (compile time
  is spent in the warm-up and printed below the table);
* ``lowvram``: bf16, every part kept on the CPU and moved to the device only while it runs
  (encoders leave the device after encoding);
* ``partial``: bf16, the backbone loaded *partially* within ``--budget-gib`` (default: half of the
  backbone's bytes), the rest of its layers copied to the device per call — ComfyUI's low-VRAM
  loading (:mod:`audiox_core.partial_loading`); encoders and VAE as in ``lowvram``;
* ``bf16+loop``: bf16 with the Turbo sampler's whole loop compiled as one graph
  (:func:`audiox_core.acceleration.set_static_turbo_loop`; ``mode="reduce-overhead"`` on CUDA: one
  CUDA-graph replay per generation); its Base-50 column runs eager;
* ``bf16+fp8``: bf16 compute, transformer-block weights stored as fp8 e4m3 (not a default row).

    python bench/gpu.py                                  # full-size AudioX-Turbo, CUDA if present
    python bench/gpu.py --device cpu --warmup 1 --runs 3 # same table on the CPU (slow at full size)
    python bench/gpu.py --tiny --warmup 1 --runs 2       # tiny random model: checks the script (CI)
    python bench/gpu.py --rows bf16 partial --vram-limit-gib 8   # an 8 GB card, simulated on a bigger one

The full-size config is the repository copy ``tests/data/reference/configs/audiox_turbo_infer_4step.json`` (as bench/end_to_end.py uses)
or ``--config``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import peak_rss_gib  # also puts the repo root on sys.path

ROWS = ("fp16", "bf16", "bf16+compile", "bf16+loop", "lowvram", "partial", "bf16+fp8")
DEFAULT_ROWS = ("fp16", "bf16", "bf16+compile", "lowvram")
PROMPT = "rain on a tin roof with distant thunder"


# ----------------------------------------------------------------------------------------------
# child: one row
# ----------------------------------------------------------------------------------------------
def _build(tiny: bool, config, row: str, device, compile_backend: str = "inductor", budget_gib: float = 0.0):
    """``(model, partial-load summary or None)`` for ``row``."""
    import torch

    from audiox_core.checkpoint import parse_dtype
    from audiox_core.tiny import init_random_, make_tiny_model, save_tiny_t5
    from audiox_core.conditioning.t5 import T5TextEncoder
    dt = parse_dtype("fp16" if row == "fp16" else "bf16")
    t5_dt = torch.float32 if row == "fp16" else torch.bfloat16
    if tiny:
        model = make_tiny_model("audiox_turbo", seed=0)
        folder = save_tiny_t5(Path(tempfile.mkdtemp(prefix="audiox_bench_t5_")) / "t5")
        t5 = T5TextEncoder.from_local(folder, expected_dim=model.config.cond_dim)
    else:
        from end_to_end import _cfg, _random_t5
        from audiox_core.config import AudioXConfig
        from audiox_core.models.audiox import build_model
        cfg = AudioXConfig.from_json(config) if config else _cfg()
        model = build_model(cfg, device="cpu")
        init_random_(model, std=0.02)
        t5 = _random_t5(torch.float32)
    model = model.to(dt)
    model.pretransform.float()
    ac = model.audio_conditioner
    if ac is not None and hasattr(ac, "pretransform"):
        ac.pretransform.float()
    t5.model.to(t5_dt)
    model.set_text_encoder(t5)
    model.eval().requires_grad_(False)
    model.info["role"] = "student"
    if row == "bf16+fp8":
        from audiox_core.acceleration import backbone_weights_fp8
        backbone_weights_fp8(model, dt)
    if row == "partial":
        from audiox_core.partial_loading import load_partially, make_castable
        from audiox_core.standalone import module_bytes
        make_castable(model.backbone)
        budget = int(budget_gib * 2 ** 30) if budget_gib else module_bytes(model.backbone) // 2
        return model, load_partially(model.backbone, device, budget)
    if row != "lowvram":  # lowvram: everything stays on the CPU until it runs
        model.to(device)
        t5.model.to(device)
    if row == "bf16+compile":
        from audiox_core.acceleration import compile_backbone
        compile_backbone(model, backend=compile_backend)
    if row == "bf16+loop":
        from audiox_core.acceleration import set_static_turbo_loop
        set_static_turbo_loop(model, backend=compile_backend,
                              mode="reduce-overhead" if torch.device(device).type == "cuda" else None)
    return model, None


def _generate(model, mode: str, device, row: str, sync) -> dict:
    import torch

    from audiox_core import conditions
    from audiox_core import generate as generation
    from audiox_core.acceleration import on_device

    def place(*mods):
        import contextlib
        stack = contextlib.ExitStack()
        if row == "lowvram" or (row == "partial" and model.backbone not in mods):
            for mod in mods:
                stack.enter_context(on_device(mod, device))
        return stack

    parts = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        with place(model.text_encoder.model, model.conditioner, model.maf_block):
            model.text_encoder.clear_cache()
            conds = conditions.Conditions(text=conditions.encode_text(model, PROMPT))
            ctx = conditions.fuse(model, conds, generator=torch.Generator().manual_seed(0))
            sync()
        t1 = time.perf_counter()
        settings = (generation.SamplerSettings.for_model(model, "turbo", seed=1) if mode == "turbo" else
                    generation.SamplerSettings.for_model(model, "base", steps=50, seed=1))
        with place(model.backbone):
            lat = generation.sample(model, ctx, settings)
            sync()
        t2 = time.perf_counter()
        with place(model.pretransform):
            generation.decode(model, lat)
            sync()
        t3 = time.perf_counter()
    parts.update(encoders=t1 - t0, backbone=t2 - t1, vae=t3 - t2, total=t3 - t0)
    return parts


def child(a) -> None:
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda and a.vram_limit_gib:  # simulate a smaller card: the allocator refuses to go past the limit
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, a.vram_limit_gib * 2 ** 30 / total), device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model, partial = _build(a.tiny, a.config, a.child, device, a.compile_backend, a.budget_gib)
    sr = model.config.sample_rate
    seconds = model.latent_length * model.config.vae.downsampling_ratio / sr
    out = {"row": a.child, "device": torch.cuda.get_device_name(device) if cuda else "CPU",
           "seconds": seconds, "warmup": a.warmup, "runs": a.runs, "compile_backend": a.compile_backend,
           "partial_load": partial}
    for mode in ("turbo", "base"):
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        w0 = time.perf_counter()
        for _ in range(a.warmup):
            _generate(model, mode, device, a.child, sync)
        out[f"{mode}_warmup_s"] = time.perf_counter() - w0
        runs = [_generate(model, mode, device, a.child, sync) for _ in range(a.runs)]
        tot = [r["total"] for r in runs]
        out[mode] = {"mean": statistics.fmean(tot), "std": statistics.stdev(tot) if len(tot) > 1 else 0.0,
                     **{k: statistics.fmean(r[k] for r in runs) for k in ("encoders", "backbone", "vae")}}
        out[mode]["rtf"] = out[mode]["mean"] / seconds
        out[mode]["peak_gib"] = (round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if cuda
                                 else peak_rss_gib())
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------------------
# parent: the table
# ----------------------------------------------------------------------------------------------
def table(results) -> str:
    if not results:
        return ""
    r0 = results[0]
    mem = "peak VRAM (GiB)" if r0["device"] != "CPU" else "peak RSS (GiB)"
    lines = [f"T2A, {r0['seconds']:.2f} s clip, batch 1, mean ± std over {r0['runs']} runs after "
             f"{r0['warmup']} warm-ups — {r0['device']}",
             "",
             f"| row | Turbo-4 (s) | Turbo RTF | Base-50 CFG (s) | Base RTF | Turbo {mem} | Base {mem} "
             f"| Turbo split enc / backbone / VAE (s) | Base split enc / backbone / VAE (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, b = r["turbo"], r["base"]
        lines.append(f"| {r['row']} | {t['mean']:.4f} ± {t['std']:.4f} | {t['rtf']:.4f} "
                     f"| {b['mean']:.4f} ± {b['std']:.4f} | {b['rtf']:.4f} "
                     f"| {t['peak_gib']:.2f} | {b['peak_gib']:.2f} "
                     f"| {t['encoders']:.4f} / {t['backbone']:.4f} / {t['vae']:.4f} "
                     f"| {b['encoders']:.4f} / {b['backbone']:.4f} / {b['vae']:.4f} |")
    for r in results:
        if r.get("partial_load"):
            p = r["partial_load"]
            lines.append("")
            lines.append(f"partial: {p['loaded_bytes'] / 2 ** 30:.2f} GiB of the backbone on the device "
                         f"({p['layers_on_device']} layers), {p['layers_cast']} layers copied per call")
    comp = [r for r in results if r["row"] in ("bf16+compile", "bf16+loop")]
    for r in comp:
        lines.append("")
        lines.append(f"{r['row']} ({r['compile_backend']}): warm-up incl. compilation "
                     f"{r['turbo_warmup_s']:.1f} s (Turbo), "
                     f"{r['base_warmup_s']:.1f} s (Base)")
        if r["row"] == "bf16+loop":
            lines.append("bf16+loop: the whole-loop graph is Turbo's only; its Base-50 columns are plain bf16 (eager)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (CUDA when available)")
    ap.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=ROWS)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tiny", action="store_true", help="a tiny random model (checks the script in seconds)")
    ap.add_argument("--config", help="config JSON of the full-size model (default: the reference config in tests/data/reference/configs)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of the bf16+compile row (aot_eager: no code generation, for CI)")
    ap.add_argument("--budget-gib", type=float, default=0.0,
                    help="backbone bytes the partial row may keep on the device (0: half of the backbone)")
    ap.add_argument("--vram-limit-gib", type=float, default=0.0,
                    help="CUDA: cap this process's GPU memory (torch.cuda.set_per_process_memory_fraction)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.runs < 1 or a.warmup < 0:
        ap.error("--runs must be ≥ 1 and --warmup ≥ 0")
    if a.device == "auto":
        import torch
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.child:
        child(a)
        return 0
    results = []
    for row in a.rows:
        cmd = [sys.executable, __file__, "--child", row, "--device", a.device, "--warmup", str(a.warmup),
               "--runs", str(a.runs), "--threads", str(a.threads), "--compile-backend", a.compile_backend,
               "--budget-gib", str(a.budget_gib), "--vram-limit-gib", str(a.vram_limit_gib)]
        cmd += (["--tiny"] if a.tiny else []) + (["--config", a.config] if a.config else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode or line is None:
            print(f"row {row} failed (exit {p.returncode}):\n{p.stderr[-4000:]}", file=sys.stderr)
            return p.returncode or 1
        results.append(json.loads(line[len("RESULT "):]))
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
