"""End-to-end cost of a 10 s clip with the full-size AudioX-Turbo / MAF-MMDiT model on this CPU.

Times every part of a text-to-audio generation once (random weights; cost does not depend on
them) and states how the totals follow, then runs one real Turbo-4 generation as a check:

    fixed  = T5 + video condition + audio-prompt condition + MAF + VAE decode
    Turbo-4           = fixed + 4 × NFE(B=1)
    Base-50 with CFG  = fixed + prepare(B=2) + 50 × NFE(B=2)   (cond and uncond batched)

    python bench/end_to_end.py --weights /path/turbo_bf16.safetensors [--dtypes bf16 fp32]

(``--weights``: the random-weight file ``bench/load_model.py --make`` writes; without it the model
is materialised with random weights in memory.)  The official code on this machine class:
Turbo 43–54 s, Base-50 CFG 484 s, ~28 s of fixed cost (the project's CPU baseline).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cfg():
    from audiox_core.config import AudioXConfig
    return AudioXConfig.from_json(ROOT / "tests" / "data" / "reference" / "configs" / "audiox_turbo_infer_4step.json")


def _timeit(fn, reps=3, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _random_t5(dtype):
    """A t5-base-sized encoder with random weights and the byte tokenizer (tokenising is ~free)."""
    import torch
    from transformers import T5Config, T5EncoderModel

    from audiox_core.conditioning.t5 import T5TextEncoder
    from audiox_core.conditioning.tokenizers import ByteTokenizer
    cfg = T5Config(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, vocab_size=32128,
                   is_encoder_decoder=False, use_cache=False)
    torch.manual_seed(0)
    enc = T5EncoderModel(cfg).to(dtype).eval().requires_grad_(False)
    return T5TextEncoder(enc, ByteTokenizer(), source="random t5-base (benchmark)")


def child(weights, dtype_name, reps):
    import torch
    torch.set_num_threads(2)
    from audiox_core import conditions
    from audiox_core import generate as generation
    from audiox_core.task import GenerationRequest, generate
    from audiox_core.checkpoint import load_model, parse_dtype
    from audiox_core.models.audiox import build_model
    from audiox_core.tiny import init_random_

    dt = parse_dtype(dtype_name)
    if weights:
        model = load_model(weights, dtype=dt, vae_dtype="fp32")
    else:
        model = build_model(_cfg(), device="cpu")
        init_random_(model, std=0.02)
        model = model.to(dt)
        for _, mod in [("p", model.pretransform), ("a", model.audio_conditioner.pretransform)]:
            mod.float()
        model.eval().requires_grad_(False)
    model.info["role"] = "student"
    model.set_text_encoder(_random_t5(torch.float32))
    r = {"dtype": dtype_name}
    prompt = "rain on a tin roof with distant thunder"
    r["t5"] = _timeit(lambda: (model.text_encoder.clear_cache(), conditions.encode_text(model, prompt)), reps)
    r["video_absent"] = _timeit(lambda: conditions.encode_video(model, None), reps)
    t = time.perf_counter()
    conditions.encode_audio_prompt(model, None, generator=torch.Generator().manual_seed(0))
    r["audio_absent_first"] = time.perf_counter() - t
    r["audio_absent"] = _timeit(lambda: conditions.encode_audio_prompt(model, None, generator=torch.Generator().manual_seed(0)),
                                reps)
    conds = conditions.Conditions(text=conditions.encode_text(model, prompt))
    r["maf"] = _timeit(lambda: conditions.fuse(model, conds), reps)
    ctx = conditions.fuse(model, conds)
    bb = model.backbone
    L = model.latent_length
    x1 = torch.randn(1, 64, L)
    t1 = torch.full((1,), 0.5)
    with torch.no_grad():
        cache1 = bb.prepare(ctx.to(dt))
        ctx2 = torch.cat([ctx, torch.zeros_like(ctx)]).to(dt)
        r["prepare_b2"] = _timeit(lambda: bb.prepare(ctx2), reps)
        cache2 = bb.prepare(ctx2)
        r["nfe_b1"] = _timeit(lambda: bb(x1, t1, cond_cache=cache1), reps)
        x2, t2 = torch.cat([x1, x1]), torch.cat([t1, t1])
        r["nfe_b2"] = _timeit(lambda: bb(x2, t2, cond_cache=cache2), reps)
    lat = torch.randn(1, 64, L)
    r["vae_decode"] = _timeit(lambda: generation.decode(model, lat), max(1, reps - 1))
    fixed = r["t5"] + r["video_absent"] + r["audio_absent"] + r["maf"] + r["vae_decode"]
    r["fixed"] = fixed
    r["turbo4_total"] = fixed + 4 * r["nfe_b1"]
    r["base50_cfg_total"] = fixed + r["prepare_b2"] + 50 * r["nfe_b2"]
    model.text_encoder.clear_cache()
    t = time.perf_counter()
    generate(model, GenerationRequest(prompt=prompt, settings=generation.SamplerSettings.for_model(model, "turbo", seed=1)))
    r["turbo4_measured"] = time.perf_counter() - t
    print(json.dumps(r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.weights, a.child, a.reps)
    rows = []
    for d in a.dtypes:
        cmd = [sys.executable, __file__, "--child", d, "--reps", str(a.reps)]
        if a.weights and d == "bf16":
            cmd += ["--weights", a.weights]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:])
            raise SystemExit(out.returncode)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ["t5", "video_absent", "audio_absent_first", "audio_absent", "maf", "vae_decode", "fixed", "prepare_b2",
            "nfe_b1", "nfe_b2", "turbo4_total", "turbo4_measured", "base50_cfg_total"]
    print("| part (s) | " + " | ".join(r["dtype"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k]:.2f}" for r in rows) + " |")
    for r in rows:
        bb4 = 4 * r["nfe_b1"]
        print(f"{r['dtype']}: Turbo-4 {r['turbo4_total']:.1f} s (backbone {100 * bb4 / r['turbo4_total']:.0f} %, "
              f"VAE {100 * r['vae_decode'] / r['turbo4_total']:.0f} %, encoders+MAF "
              f"{100 * (r['t5'] + r['maf'] + r['audio_absent'] + r['video_absent']) / r['turbo4_total']:.0f} %); "
              f"Base-50 CFG {r['base50_cfg_total']:.1f} s; ratio {r['base50_cfg_total'] / r['turbo4_total']:.1f}×")


if __name__ == "__main__":
    main()
