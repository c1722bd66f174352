"""Data-parallel training through accelerate: ``accelerate launch --num_processes 2`` on the CPU
(gloo) with batch b per process ends with the weights and per-step losses of one process with
batch 2b — LoRA fine-tuning (gradient accumulation, random condition masks, gradient
checkpointing) and DMD distillation (student and critic steps) — while one process with batch b
(half the data) ends somewhere else.  The worker is tests/parallel_worker.py."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")

from safetensors.torch import load_file  # noqa: E402

from audiox_core.tiny import save_tiny_t5  # noqa: E402

WORKER = Path(__file__).with_name("parallel_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, timeout=240):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"


def _single(t5, out, batch):
    _run([sys.executable, str(WORKER), str(t5), str(out), "--batch", str(batch)])
    return load_file(out.with_suffix(".safetensors")), json.loads(out.with_suffix(".json").read_text())


def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    t5 = save_tiny_t5(tmp_path / "t5")
    two = tmp_path / "two"
    # --multi_gpu with no GPU visible: accelerate starts torch.distributed on the CPU (gloo)
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", str(_free_port()), str(WORKER), str(t5), str(two), "--batch", "2"])
    w2, info2 = load_file(two.with_suffix(".safetensors")), json.loads(two.with_suffix(".json").read_text())
    assert info2["world"] == 2
    w1, info1 = _single(t5, tmp_path / "one", 4)
    assert info1["world"] == 1
    assert w1.keys() == w2.keys()
    assert any(k.startswith("lora/") for k in w1) and any(k.startswith("distill/") for k in w1)

    # the same weights (up to float reduction order, amplified a little by Adam's normalisation)
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=0, atol=5e-4), (k, float((w1[k] - w2[k]).abs().max()))
    # the per-step losses of the history are the global-batch means (gathered over processes)
    assert info1["losses"]["lora"] == pytest.approx(info2["losses"]["lora"], rel=1e-5)
    for e1, e2 in zip(info1["losses"]["distill"], info2["losses"]["distill"], strict=True):
        assert e1.keys() == e2.keys() and "loss" in e1
        for key in e1:
            assert e1[key] == pytest.approx(e2[key], rel=1e-4, abs=1e-6), key

    # ... and the comparison can fail: one process with batch b (half the data) lands elsewhere
    wh, _ = _single(t5, tmp_path / "half", 2)
    for pre in ("lora/", "distill/"):
        worst = max(float((w1[k] - wh[k]).abs().max()) for k in w1 if k.startswith(pre))
        assert worst > 2e-3, (pre, worst)
