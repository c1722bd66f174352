"""Command line: ``python -m audiox_core.training {lora,distill} ...``.

Examples::

    # rank-16 LoRA on a folder of sounds (captions from sidecar .txt / manifest / file names)
    python -m audiox_core.training lora --model AudioX-MAF-MMDiT/model.ckpt --t5 t5-base/ \\
        --data my_sounds/ --out runs/my_lora --steps 2000 --rank 16 --lr 1e-4

    # the AudioX-Turbo recipe: DMD + GAN distillation of a rectified-flow teacher (LoRA on a shared base)
    python -m audiox_core.training distill --teacher pretrained_ckpt.ckpt --vae vae.ckpt --t5 t5-base/ \\
        --data data/ --out runs/turbo --steps 20000

    # several GPUs / machines (needs the optional 'accelerate' package; docs/TRAINING.md)
    accelerate launch --multi_gpu --num_processes 8 -m audiox_core.training lora --model M --data D --out O \\
        --device cuda

Re-running the same command continues from the newest checkpoint in ``--out`` (``--no-resume``
starts over).  Ctrl-C saves a checkpoint of the last completed step.  Preprocessed encoder
outputs are cached in ``--cache`` (default ``<out>/cache``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..errors import AudioXError

__all__ = ["main", "build_parser"]


def _common(p: argparse.ArgumentParser, model_flag: str) -> None:
    m = p.add_argument_group("model")
    m.add_argument(model_flag, required=True, dest="model", help="AudioX checkpoint (.safetensors/.ckpt)")
    m.add_argument("--config", help="config.json (default: beside the checkpoint, or inferred)")
    m.add_argument("--vae", help="separate VAE file (VAE.ckpt / vae.ckpt)")
    m.add_argument("--t5", help="T5 folder or file (default: a t5/ folder beside the model)")
    m.add_argument("--synchformer", help="synchformer_state_dict.pth (sync-conditioned models with videos)")
    m.add_argument("--clip-vision", help="CLIP ViT-B/32 vision file, for checkpoints without the tower")
    m.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="weights of the frozen parts")
    m.add_argument("--device", default="cpu")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="folder of audio files (+ .txt captions, same-stem videos)")
    d.add_argument("--manifest", help="CSV / JSONL manifest (official train_manifest format accepted)")
    d.add_argument("--cache", help="encoder-output cache folder (default <out>/cache)")
    d.add_argument("--sync", default="synchformer", choices=["synchformer", "zeros"],
                   help="sync features for videos: computed, or zeros as the official Turbo training")
    d.add_argument("--type", default="", help="default task type for files without a manifest entry")
    o = p.add_argument_group("optimisation")
    o.add_argument("--out", required=True, help="output folder (checkpoints, exported files)")
    o.add_argument("--steps", type=int, default=1000)
    o.add_argument("--batch-size", type=int, default=1)
    o.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    o.add_argument("--no-gc", action="store_true", help="disable gradient checkpointing")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--save-every", type=int, default=500)
    o.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    o.add_argument("--t-sampler", default="sobol", choices=["sobol", "uniform", "stratified", "logit_normal"])
    o.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --out")
    o.add_argument("--parallel", default="auto", choices=["auto", "off", "accelerate"])
    o.add_argument("--name", help="file name of the exported LoRA / student (without extension)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m audiox_core.training", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    lo = sub.add_parser("lora", help="fine-tune with the model's own objective (LoRA or named parts)")
    _common(lo, "--model")
    g = lo.add_argument_group("training")
    g.add_argument("--train", default="lora", help="comma list of: lora, backbone, maf, projections, clip, t5")
    g.add_argument("--rank", type=int, default=16)
    g.add_argument("--alpha", type=float)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--targets", default="all", help="attention | feed-forward | all | a regex on module paths")
    g.add_argument("--include-maf", action="store_true")
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--weight-decay", type=float, default=1e-3)
    g.add_argument("--warmup", type=int, default=0)
    g.add_argument("--schedule", default="constant", choices=["constant", "inverse"])
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--clip-grad", type=float, default=1.0, help="0 disables")
    g.add_argument("--ema", action="store_true")
    g.add_argument("--mask-video", type=float, default=0.6)
    g.add_argument("--mask-text", type=float, default=0.2)
    g.add_argument("--mask-audio", type=float, default=0.6)
    g.add_argument("--cfg-dropout", type=float, default=0.1)

    di = sub.add_parser("distill", help="DMD + GAN distillation of a rectified-flow teacher (AudioX-Turbo recipe)")
    _common(di, "--teacher")
    g = di.add_argument_group("distillation")
    g.add_argument("--mode", default="lora", choices=["lora", "full"], help="student/fake parameterisation")
    g.add_argument("--rank", type=int, default=64)
    g.add_argument("--alpha", type=float)
    g.add_argument("--lr", type=float, default=1e-5)
    g.add_argument("--guidance", type=float, default=6.0)
    g.add_argument("--student-steps", type=int, default=4)
    g.add_argument("--timestep-probs", default="0.25,0.25,0.25,0.25")
    g.add_argument("--update-ratio", type=int, default=5, help="student updates per cycle (official 5)")
    g.add_argument("--fake-updates", type=int, default=1,
                   help="fake + discriminator updates per cycle (official 1; DMD2 and the demo recipe: 5 with ratio 1)")
    g.add_argument("--no-gan", action="store_true")
    g.add_argument("--gan-weight", type=float, default=1.0)
    g.add_argument("--regression-weight", type=float, default=0.0,
                   help="DMD v1 paired regression onto teacher samples (0: off, as the official recipe)")
    g.add_argument("--regression-pairs", type=int, default=256)
    g.add_argument("--regression-teacher-steps", type=int, default=25)
    g.add_argument("--gan-mode", default="all_blocks", choices=["all_blocks", "last_block"])
    g.add_argument("--gan-blocks", type=int, default=6)
    g.add_argument("--schedule", default="inverse", choices=["constant", "inverse"])
    return ap


def _load(a):
    from ..api import load
    from ..checkpoint import parse_dtype
    model = load(a.model, config=a.config, vae=a.vae, t5=a.t5, synchformer=a.synchformer,
                 clip_vision=a.clip_vision, dtype=a.dtype, device=a.device)
    return model, parse_dtype(a.dtype)


def _progress(prefix: str):
    start = time.perf_counter()

    def cb(step, total, info):
        if step == 1 or step == total or step % 10 == 0:
            el = time.perf_counter() - start
            extra = " ".join(f"{k}={v:.4g}" for k, v in info.items()
                             if k.startswith(("loss", "score")) and isinstance(v, float))
            print(f"[{prefix}] step {step}/{total}  {extra}  lr={info.get('lr', 0):.3g}  {el:.0f}s", flush=True)
    return cb


def _data(a, model, plan, par):
    from .data import FolderDataset, prepare_dataset
    ds = FolderDataset(a.data, a.manifest, default_type=a.type)
    cache = a.cache or str(Path(a.out) / "cache")
    print(f"preparing {len(ds)} items (cache: {cache}) ...", flush=True)
    with par.main_process_first():  # the main process fills the cache, the others then read it
        return prepare_dataset(ds, model, plan=plan, cache_dir=cache, callback=None)


def _cmd_lora(a) -> int:
    from .conditions import Masking
    from .data import plan_for
    from .parallel import setup_parallel
    from .trainer import TrainConfig, Trainer
    par = setup_parallel(a.parallel, a.device)
    if par.device is not None:
        a.device = str(par.device)
    model, _ = _load(a)
    train = tuple(p.strip() for p in a.train.split(",") if p.strip())
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, grad_accum=a.grad_accum, lr=a.lr,
                      weight_decay=a.weight_decay, warmup_steps=a.warmup, schedule=a.schedule,
                      max_grad_norm=a.clip_grad or None, precision=a.precision, gradient_checkpointing=not a.no_gc,
                      ema=a.ema, train=train, lora_rank=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout,
                      lora_targets=a.targets, lora_include_maf=a.include_maf, t_sampler=a.t_sampler,
                      masking=Masking(a.mask_video, a.mask_text, a.mask_audio, a.cfg_dropout), seed=a.seed,
                      save_every=a.save_every, keep_checkpoints=a.keep, name=a.name or "audiox_lora")
    data = _data(a, model, plan_for(train, sync=a.sync), par)
    tr = Trainer(model, data, cfg, out_dir=a.out, parallel=par)
    if not a.no_resume and tr.resume():
        print(f"resumed at step {tr.step}", flush=True)
    print(f"training {tr.num_trainable():,} parameters ({', '.join(train)}) for {cfg.steps} steps", flush=True)
    res = tr.run(callback=_progress("lora"))
    for k, v in (("LoRA", res.lora_path), ("model", res.model_path), ("checkpoint", res.checkpoint)):
        if v is not None:
            print(f"{k}: {v}")
    return 0


def _cmd_distill(a) -> int:
    from .data import CachePlan
    from .distill import DistillConfig, Distiller
    from .parallel import setup_parallel
    par = setup_parallel(a.parallel, a.device)
    if par.device is not None:
        a.device = str(par.device)
    model, _ = _load(a)
    probs = tuple(float(x) for x in a.timestep_probs.split(","))
    cfg = DistillConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, schedule=a.schedule,
                        student_steps=a.student_steps, timestep_probs=probs, guidance=a.guidance,
                        gan=not a.no_gan, gan_mode=a.gan_mode, gan_blocks=a.gan_blocks, update_ratio=a.update_ratio,
                        fake_updates=a.fake_updates, gan_weight=a.gan_weight, regression_weight=a.regression_weight,
                        regression_pairs=a.regression_pairs, regression_teacher_steps=a.regression_teacher_steps,
                        parameterization=a.mode, lora_rank=a.rank, lora_alpha=a.alpha, precision=a.precision,
                        gradient_checkpointing=not a.no_gc, t_sampler=a.t_sampler, seed=a.seed,
                        save_every=a.save_every, keep_checkpoints=a.keep, name=a.name or "audiox_turbo_student")
    data = _data(a, model, CachePlan(sync=a.sync), par)
    d = Distiller(model, data, cfg, out_dir=a.out, parallel=par)
    if not a.no_resume and d.resume():
        print(f"resumed at step {d.step}", flush=True)
    print(f"distilling: {d.num_trainable():,} trained parameters, {cfg.steps} steps", flush=True)
    res = d.run(callback=_progress("distill"))
    for k, v in (("student", res.student_path), ("student LoRA", res.student_lora_path),
                 ("checkpoint", res.checkpoint)):
        if v is not None:
            print(f"{k}: {v}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"lora": _cmd_lora, "distill": _cmd_distill}[a.cmd](a)
    except AudioXError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last completed step was saved in --out; re-run to continue", file=sys.stderr)
        return 130
