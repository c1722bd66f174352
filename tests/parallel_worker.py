"""Worker of tests/test_parallel.py: a few LoRA fine-tuning steps and a few DMD distillation
steps on a tiny model, run either as one process (``python tests/parallel_worker.py``) or under
``accelerate launch --num_processes N``.  The main process writes the trained tensors and the
per-step losses to ``OUT.safetensors`` / ``OUT.json``.

    python tests/parallel_worker.py T5_DIR OUT --batch 4
    accelerate launch --multi_gpu --num_processes 2 tests/parallel_worker.py T5_DIR OUT --batch 2

Dropout is switched off (dropout masks are the one draw made per process, parallel.py), so N
processes with batch b must end where one process with batch N·b ends.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiox_core.conditioning.t5 import T5TextEncoder  # noqa: E402
from audiox_core.models.maf import PackedMultiheadAttention  # noqa: E402
from audiox_core.tiny import make_tiny_model  # noqa: E402
from audiox_core.training.conditions import Masking  # noqa: E402
from audiox_core.training.data import Example, prepare_dataset  # noqa: E402
from audiox_core.training.distill import DistillConfig, Distiller  # noqa: E402
from audiox_core.training.parallel import setup_parallel  # noqa: E402
from audiox_core.training.trainer import TrainConfig, Trainer  # noqa: E402
from audiox_core.weights import save_safetensors  # noqa: E402

LAT = 16


def examples(n: int):
    g = torch.Generator().manual_seed(4)
    return [Example(latents=torch.randn(8, LAT, generator=g), caption=("up", "down", "hum")[i % 3], name=f"e{i}")
            for i in range(n)]


def no_dropout(model) -> None:
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if isinstance(mod, PackedMultiheadAttention):
            mod.dropout = 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("t5")
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, required=True, help="per-process batch size")
    a = ap.parse_args()
    torch.set_num_threads(1)
    par = setup_parallel("auto")
    model = make_tiny_model("audiox_turbo", seed=1, latents=LAT)
    model.set_text_encoder(T5TextEncoder.from_local(a.t5, expected_dim=model.config.cond_dim))
    no_dropout(model)
    data = prepare_dataset(examples(12), model)
    out, losses = {}, {}

    # LoRA fine-tuning: 2 micro-batches per step (no_sync on the first), random condition masks
    cfg = TrainConfig(steps=3, batch_size=a.batch, grad_accum=2, lr=5e-3, lora_rank=2, precision="fp32",
                      masking=Masking(0.3, 0.3, 0.3, 0.2), gradient_checkpointing=True, seed=5)
    tr = Trainer(model, data, cfg, parallel=par)
    tr.run()
    out.update({f"lora/{n}": p.detach().clone() for n, p in tr.named_params})
    losses["lora"] = [h["loss"] for h in tr.history]
    tr.lora.detach()

    # DMD + GAN distillation (LoRA roles): student steps and a critic step (update_ratio 1)
    model.requires_grad_(False)
    dcfg = DistillConfig(steps=3, batch_size=a.batch, lr=1e-3, lora_rank=2, gan_blocks=2, precision="fp32",
                         update_ratio=1, schedule="constant", seed=2)
    d = Distiller(model, data, dcfg, parallel=par)
    d.run()
    out.update({f"distill/{n}": p.detach().clone() for n, p in d.named_params})
    losses["distill"] = [{k: v for k, v in h.items() if k.startswith(("loss", "score"))} for h in d.history]
    d.close()

    if par.is_main:
        save_safetensors(out, Path(a.out).with_suffix(".safetensors"), {"format": "pt"})
        Path(a.out).with_suffix(".json").write_text(json.dumps({"world": par.world, "losses": losses}))
    par.barrier()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
