"""Optional data-parallel training through Hugging Face ``accelerate`` (multi-GPU).

``accelerate launch -m audiox_core.training lora ...`` starts one process per GPU.  Each process
builds the same model, draws its own share of every step's samples (the sample counter is
interleaved by rank) and, after the backward pass, the gradients of the trained parameters are
averaged over all processes (``all_reduce``), so every process applies the same update.  Only
rank 0 writes checkpoints, exports and reports progress.

``accelerate`` is imported only when a multi-process launch is detected (``WORLD_SIZE > 1``) or
requested; single-process training (CPU or one GPU) never needs it.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Optional

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Parallel", "setup_parallel"]


class Parallel:
    """Rank/world bookkeeping and gradient averaging (a no-op for one process)."""

    def __init__(self, rank: int = 0, world: int = 1, device: Optional[torch.device] = None, accelerator=None):
        self.rank, self.world, self.device, self.accelerator = int(rank), int(world), device, accelerator

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        if self.world <= 1:
            return
        import torch.distributed as dist
        for p in params:
            # Parameters without a gradient stay without one on every process (the step type is
            # the same on all ranks), so AdamW keeps skipping them — no zero-filled gradients
            # that would let momentum / weight decay move an idle side (TURBO_SPEC §3.4).
            if p.grad is None:
                continue
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()


def setup_parallel(mode: str = "auto") -> Parallel:
    """``mode``: ``"off"`` (single process), ``"auto"`` (accelerate when launched with several
    processes) or ``"accelerate"`` (require it)."""
    if mode not in ("off", "auto", "accelerate"):
        raise InputError(f"parallel mode must be 'off', 'auto' or 'accelerate', got {mode!r}")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if mode == "off" or (mode == "auto" and world <= 1):
        return Parallel()
    try:
        from accelerate import Accelerator  # optional dependency
    except ImportError:
        raise InputError("multi-process training needs the 'accelerate' package (pip install accelerate)") from None
    acc = Accelerator()
    log.info("accelerate: process %d of %d on %s", acc.process_index, acc.num_processes, acc.device)
    return Parallel(acc.process_index, acc.num_processes, acc.device, acc)
