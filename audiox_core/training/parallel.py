"""Data-parallel training through Hugging Face ``accelerate`` (several GPUs, several machines).

``accelerate launch -m audiox_core.training lora ...`` starts one process per GPU (see
docs/TRAINING.md for several machines).  Every process builds the same model; then

* the trained parameters and the optimizer go through ``Accelerator.prepare``: the parameters are
  held by a small container module that accelerate wraps in ``DistributedDataParallel`` (DDP), so
  gradients are averaged over processes by DDP's bucketed all-reduce during ``backward``
  (``accelerator.backward``; micro-batches before the last one of a step run under ``no_sync``).
  The forward pass of a step runs *through* that wrapper (:meth:`Parallel.forward`), which is what
  lets DDP find the parameters a step did not use (``find_unused_parameters``): their gradients
  stay ``None`` on every process and AdamW keeps skipping them (the distiller's alternating
  student / critic updates rely on that: the official Turbo trainer steps the student only every
  few critic updates, and parameters outside a step's graph must not move).
* every random draw of a step is made for the *global* batch (``world × batch_size`` items, the
  same generator seed on every process) and each process keeps its own slice
  (:meth:`Parallel.shard`): data order, noise, timesteps and condition masks of N processes with
  batch b are those of one process with batch N·b, so both reach the same weights up to float
  reduction order.  Only dropout masks are drawn per process.
* the per-step metrics in the history (losses, scores) are averaged over processes
  (:meth:`Parallel.mean`); checkpoints, exports and progress callbacks come from the main process
  only.

With one process (CPU or one GPU) nothing here imports ``accelerate`` and every method is the
identity, so single-process training is exactly what it was.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Parallel", "setup_parallel"]


class _TrainedParameters(nn.Module):
    """Holds the trained parameters (shared with the model, not copied) so that DDP can hook them;
    ``forward(fn, *args)`` runs ``fn(*args)`` — a step's loss computation — inside DDP's forward."""

    def __init__(self, params: Iterable[nn.Parameter]):
        super().__init__()
        self.trained = nn.ParameterList(list(params))

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(*args, **kwargs)


class Parallel:
    """Process rank / count and the data-parallel plumbing (module docstring); the identity for one process."""

    def __init__(self, rank: int = 0, world: int = 1, device: Optional[torch.device] = None, accelerator=None):
        self.rank, self.world, self.device, self.accelerator = int(rank), int(world), device, accelerator
        self.wrapped = None  # the DDP-wrapped parameter container after prepare()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1 and self.accelerator is not None

    # ------------------------------------------------------------------ set-up
    def prepare(self, params: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """``Accelerator.prepare`` the trained parameters (DDP) and their optimizer; returns the optimizer
        to use (the same object for one process)."""
        if not self.distributed:
            return optimizer
        container = _TrainedParameters(params)
        # The model already sits on this process's device (the CLI puts it there); accelerate must
        # not move the shared parameters away from the frozen weights around them.
        self.wrapped, optimizer = self.accelerator.prepare(container, optimizer, device_placement=[False, False])
        return optimizer

    @contextlib.contextmanager
    def main_process_first(self):
        """Run the block on the main process first, then on the others (e.g. filling a shared cache)."""
        if not self.distributed:
            yield
            return
        with self.accelerator.main_process_first():
            yield

    # ------------------------------------------------------------------ one step
    def forward(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` (a step's loss computation) run inside the DDP wrapper."""
        if self.wrapped is None:
            return fn(*args, **kwargs)
        return self.wrapped(fn, *args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        if self.distributed:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def sync(self, sync: bool):
        """Context for one micro-batch: gradients are all-reduced only when ``sync`` (the last one)."""
        if self.wrapped is None or sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.wrapped)

    def shard(self, x):
        """This process's slice of a global-batch tensor (``None`` stays ``None``)."""
        if x is None or self.world <= 1:
            return x
        if x.shape[0] % self.world:
            raise InputError(f"a global batch of {x.shape[0]} does not split over {self.world} processes")
        n = x.shape[0] // self.world
        return x.narrow(0, self.rank * n, n)

    def draw(self, fn: Callable, shape, generator: torch.Generator) -> torch.Tensor:
        """``fn(shape, generator=…)`` (``torch.randn`` / ``torch.rand``) drawn for the global batch,
        this process's slice returned: every process draws the same numbers as one process with
        the whole batch would."""
        shape = tuple(shape)
        if self.world <= 1:
            return fn(shape, generator=generator)
        return self.shard(fn((shape[0] * self.world,) + shape[1:], generator=generator))

    def mean(self, values: Dict[str, float]) -> Dict[str, float]:
        """Per-step metrics averaged over processes (same keys on every process)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        dev = self.accelerator.device
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=dev)
        t = self.accelerator.reduce(t, reduction="mean")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()


def setup_parallel(mode: str = "auto", device: Optional[str] = None) -> Parallel:
    """``mode``: ``"off"`` (single process), ``"auto"`` (accelerate when launched with several
    processes) or ``"accelerate"`` (require it).  ``device="cpu"`` (or a machine without CUDA)
    makes the processes train on the CPU (gloo)."""
    if mode not in ("off", "auto", "accelerate"):
        raise InputError(f"parallel mode must be 'off', 'auto' or 'accelerate', got {mode!r}")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if mode == "off" or (mode == "auto" and world <= 1):
        return Parallel()
    try:
        from accelerate import Accelerator  # optional dependency
        from accelerate.utils import DistributedDataParallelKwargs
    except ImportError:
        raise InputError("multi-process training needs the 'accelerate' package (pip install accelerate)") from None
    # find_unused_parameters: a distillation step trains either the student or the critic side, a
    # LoRA step may skip conditioner parts absent from a batch; DDP then leaves those gradients None.
    # gradient_as_bucket_view: the gradients live in DDP's all-reduce buckets instead of beside
    # them (one fp32 copy of the trained weights less — 8.5 GiB for a full-weight distillation).
    cpu = (device is not None and torch.device(device).type == "cpu") or not torch.cuda.is_available()
    acc = Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True,
                                                                                  gradient_as_bucket_view=True)])
    if world > 1 and acc.num_processes != world:
        raise InputError(f"launched as {world} processes but accelerate set up {acc.num_processes} "
                         f"({acc.distributed_type}); check the accelerate launch flags / config")
    log.info("accelerate: process %d of %d on %s", acc.process_index, acc.num_processes, acc.device)
    return Parallel(acc.process_index, acc.num_processes, acc.device, acc)
