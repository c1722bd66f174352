"""Seconds per training step and peak RSS on the FULL-size MMDiT backbone (this machine).

Model: the AudioX-MAF-MMDiT / Turbo backbone (embed 1536, depth 24, 64 heads × 24, Lx = 237 =
1 + 236 latents ≈ 10.96 s, context 384 × 768), random weights, batch 1, bf16 autocast, gradient
checkpointing.  MAF, conditioners and VAE are not part of the measurement (the context is a
random post-MAF tensor); the frozen base weights are bf16 by default (``--weights fp32`` keeps
fp32 weights under autocast).

Steps measured (each in its own subprocess, so the peak RSS is that configuration's own):

* ``lora``    — rank-16 LoRA on every attention / feed-forward / modulation projection
  (``training.lora`` preset "all"), rectified-flow loss, backward, AdamW step.
* ``student`` — one DMD student update of the distillation recipe with the LoRA-on-shared-base
  parameterisation (student LoRA, fake LoRA, rank ``--distill-rank``): rollout to grid index
  ``k`` (``--k``, 3 = the most expensive: 3 no-grad student forwards + 1 with grad), teacher CFG
  (batched B = 2) and fake velocities, DMD loss, GAN generator loss through the teacher
  truncated to 6 blocks (all_blocks heads, one pass), backward, AdamW step.
* ``fake``    — one fake + discriminator update: no-grad rollout, fake flow-matching loss,
  discriminator hinge loss on real and generated latents (2 truncated teacher passes).

Every update uses the building blocks of :mod:`audiox_core.training.distill` on a bare backbone
(the :class:`~audiox_core.training.distill.Distiller` adds the conditioning pipeline on top).
Median of ``--reps`` after one warm-up step.

    python bench/train_step.py                         # lora, student, fake (tens of minutes on 2 cores)
    python bench/train_step.py --what lora --reps 2
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

from _common import load_average, peak_rss_gib, wait_idle  # also puts the repo root on sys.path


def build_backbone(dtype, smoke: bool = False):
    import torch
    from audiox_core.config import BackboneConfig
    from audiox_core.models.mmdit import MMDiT
    embed, depth = (96, 6) if smoke else (1536, 24)  # --smoke: a small model to check the script itself
    cfg = BackboneConfig(type="mmdit", embed_dim=embed, depth=depth, num_heads=24 if not smoke else 4,
                         cond_token_dim=768, global_cond_dim=768, latent_seq_len=237)
    with torch.device("meta"):
        model = MMDiT(cfg)
    model = model.to(dtype).to_empty(device="cpu").requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() >= 2:
                bound = 1.0 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=gen)
            else:
                p.uniform_(-0.02, 0.02, generator=gen)
    return model


def run_one(what: str, weights: str, reps: int, threads: int, rank: int, distill_rank: int, k: int,
            gc: bool, smoke: bool = False) -> dict:
    import torch
    import torch.nn.functional as F
    from audiox_core.training.distill import DiscriminatorHead, block_outputs, dmd_gradient, rollout
    from audiox_core.training.lora import create_lora, lora_scope

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    t0 = time.perf_counter()
    bb = build_backbone(dtype, smoke)
    build_s = time.perf_counter() - t0
    bb.gradient_checkpointing = gc
    g = torch.Generator().manual_seed(1)
    x_real = torch.randn(1, 64, 236, generator=g)
    ctx = torch.randn(1, 384, 768, generator=g) * 0.5
    ac = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    res = {"what": what, "weights": weights, "threads": threads, "gradient_checkpointing": gc,
           "backbone_params": sum(p.numel() for p in bb.parameters()), "build_s": round(build_s, 1)}

    def mode(training):
        bb.train(training)

    if what == "lora":
        lo = create_lora(bb, rank=rank, targets="all").attach(bb, check=False)
        opt = torch.optim.AdamW(lo.parameters(), lr=1e-4)
        res["trained_params"] = lo.num_parameters()

        def step():
            mode(True)
            t = torch.rand(1, generator=g)
            eps = torch.randn(x_real.shape, generator=g)
            z = (1 - t.view(-1, 1, 1)) * x_real + t.view(-1, 1, 1) * eps
            with ac():
                v = bb(z, t, ctx)
            loss = F.mse_loss(v.float(), eps - x_real)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)
    else:
        lo_s = create_lora(bb, rank=distill_rank, targets="all", seed=0).attach(bb, check=False)
        lo_f = create_lora(bb, rank=distill_rank, targets="all", seed=1).attach(bb, check=False)
        heads = torch.nn.ModuleList(DiscriminatorHead(64) for _ in range(6))
        params = list(lo_s.parameters()) + list(lo_f.parameters()) + list(heads.parameters())
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-3)
        res["trained_params"] = sum(p.numel() for p in params)
        ts = torch.linspace(1, 0, 5)
        res["k"] = k

        def vel(who, z, t, c):
            with lora_scope(bb, {"student": [lo_s], "fake": [lo_f], "teacher": []}[who]):
                mode(who != "teacher")
                return bb(z, t, c)

        def disc(x, grad_input):
            t_d = torch.rand(1, generator=g) * 0.2
            e = torch.randn(x.shape, generator=g)
            z = t_d.view(-1, 1, 1) * e + (1 - t_d.view(-1, 1, 1)) * (x if grad_input else x.detach())
            with lora_scope(bb, []), torch.set_grad_enabled(grad_input):
                mode(False)
                feats = block_outputs(bb, z, t_d, ctx, 6, every=True)
            return torch.stack([h(f) for h, f in zip(heads, feats)]).mean(0)

        def step():
            noise = torch.randn(x_real.shape, generator=g)
            tau = torch.rand(1, generator=g)
            eps = torch.randn(x_real.shape, generator=g)
            tt = tau.view(-1, 1, 1)
            with ac():
                if what == "student":
                    x0 = rollout(lambda z, t: vel("student", z, t, ctx), noise, k, ts, g)
                    z = tt * eps + (1 - tt) * x0
                    with torch.no_grad():
                        zd = z.detach()
                        out = vel("teacher", torch.cat([zd, zd]), torch.cat([tau, tau]),
                                  torch.cat([ctx, torch.zeros_like(ctx)]))
                        c, u = out.chunk(2)
                        v_t = u + 6.0 * (c - u)
                        v_f = vel("fake", zd, tau, ctx)
                        grad = dmd_gradient(zd.float(), (zd - tt * v_t).float(), (zd - tt * v_f).float())
                    loss = 0.5 * F.mse_loss(x0.float(), (x0.float() - grad).detach())
                    for p in heads.parameters():
                        p.requires_grad_(False)
                    loss = loss - disc(x0, True).float().mean()
                    for p in heads.parameters():
                        p.requires_grad_(True)
                    who = [lo_s]
                else:
                    with torch.no_grad():
                        x0 = rollout(lambda z, t: vel("student", z, t, ctx), noise, k, ts, g, grad=False)
                    z = tt * eps + (1 - tt) * x0
                    loss = F.mse_loss(vel("fake", z, tau, ctx).float(), (eps - x0).float())
                    lr_, lf_ = disc(x_real, False).float(), disc(x0, False).float()
                    loss = loss + F.relu(1 - lr_).mean() + F.relu(1 + lf_).mean()
                    who = [lo_f]
            with lora_scope(bb, who):
                mode(True)
                loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)

    step()  # warm-up
    times = []
    for _ in range(reps):
        ts0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - ts0)
        if not math.isfinite(loss):
            raise RuntimeError(f"{what}: non-finite loss")
    res["step_s"] = round(statistics.median(times), 2)
    res["all_s"] = [round(v, 2) for v in times]
    res["peak_rss_gib"] = peak_rss_gib()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", nargs="+", default=["lora", "student", "fake"], choices=["lora", "student", "fake"])
    ap.add_argument("--weights", default="bf16", choices=["bf16", "fp32"], help="dtype of the frozen base weights")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank of the fine-tuning step")
    ap.add_argument("--distill-rank", type=int, default=64, help="LoRA rank of student and fake (recipe default)")
    ap.add_argument("--k", type=int, default=3, help="rollout index of the distillation steps (0..3)")
    ap.add_argument("--no-gc", action="store_true")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS")
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true", help="tiny backbone (checks the script, not a measurement)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.weights, a.reps, a.threads, a.rank, a.distill_rank, a.k, not a.no_gc,
                                 a.smoke)))
        return
    rows = []
    for w in a.what:
        idle = wait_idle(a.wait_idle, threshold=0.85, poll_s=5) if a.wait_idle > 0 else None
        load = load_average()
        cmd = [sys.executable, __file__, "--one", w, "--weights", a.weights, "--reps", str(a.reps), "--threads",
               str(a.threads), "--rank", str(a.rank), "--distill-rank", str(a.distill_rank), "--k", str(a.k)]
        if a.no_gc:
            cmd.append("--no-gc")
        if a.smoke:
            cmd.append("--smoke")
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
        if p.returncode != 0:
            print(f"{w}: FAILED\n{p.stderr[-3000:]}", file=sys.stderr)
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(load_before=load, load_after=load_average(), started_idle=idle)
        rows.append(r)
        print(f"  done {w}: {r['step_s']} s/step, peak RSS {r['peak_rss_gib']} GiB", file=sys.stderr, flush=True)
    print("| step | trained params | s/step (median) | all reps | peak RSS GiB | load avg before → after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        name = {"lora": f"LoRA r{a.rank} fine-tune", "student": f"distill student (k={r.get('k')})",
                "fake": f"distill fake+D (k={r.get('k')})"}[r["what"]]
        print(f"| {name} | {r['trained_params'] / 1e6:.1f} M | {r['step_s']:.1f} | {r['all_s']} | "
              f"{r['peak_rss_gib']:.1f} | {r['load_before']} → {r['load_after']} |")
    import torch
    print(f"\nMMDiT 1536×24 (2.2 B params, {a.weights} base weights), batch 1, 236 latents, bf16 autocast, "
          f"gradient checkpointing {'off' if a.no_gc else 'on'}, {a.threads} threads, torch {torch.__version__}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
