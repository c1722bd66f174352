"""What every training loop here shares: the step loop with progress and cancel, checkpoints, resume.

Subclasses (:class:`~.trainer.Trainer`, :class:`~.distill.Distiller`) provide ``train_step()``
(one optimizer step, returning its history entry), ``export()`` and the named list of trained
parameters; this base class does the rest:

* ``run(steps, callback)``: steps until ``steps`` are done in total, calling
  ``callback(step, total, entry)`` after each (``entry`` has ``loss``, ``lr`` …); checkpoints every
  ``config.save_every`` steps and at the end; ``Interrupted`` / ``KeyboardInterrupt`` (from the
  callback or anywhere in a step) → checkpoint of the last completed step + export under
  ``<name>.partial.safetensors`` names stamped "step k of n" (:func:`partial_name`), re-raised; a
  finished run exports under the final names and removes those partial files.
* ``save_checkpoint`` / ``load_checkpoint`` / ``resume`` (:mod:`.state`): parameters, EMA,
  optimizer, samplers, step, history, RNG — a resumed run continues exactly as an uninterrupted
  one (every random draw of a step is seeded from ``(seed, step, micro-batch)``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..errors import CheckpointError, InputError, Interrupted
from ..progress import ProgressCallback
from . import state as st
from .parallel import Parallel

log = logging.getLogger(__name__)

__all__ = ["TrainingLoop", "grad_norm", "partial_name", "mark_partial"]


def grad_norm(params) -> float:
    sq = 0.0
    for p in params:
        if p.grad is not None:
            sq += float(p.grad.detach().float().pow(2).sum())
    return sq ** 0.5


PARTIAL_SUFFIX = ".partial"


def partial_name(path: Path) -> Path:
    """``x.safetensors`` → ``x.partial.safetensors`` (``t5`` → ``t5.partial``): where an unfinished
    run's result goes, so it is never mistaken for the finished one."""
    path = Path(path)
    return path.with_name(path.stem + PARTIAL_SUFFIX + path.suffix) if path.suffix else \
        path.with_name(path.name + PARTIAL_SUFFIX)


def mark_partial(files: dict, note: str) -> None:
    """Stamp each exported ``.safetensors`` file of ``files`` with ``audiox_partial = note``."""
    from ..weights import PARTIAL_KEY, copy_safetensors
    for p in files.values():
        p = Path(p)
        if p.is_file() and p.suffix == ".safetensors":
            copy_safetensors(p, p, {PARTIAL_KEY: note})


class TrainingLoop:
    """Base class (module docstring).  Subclasses set ``kind``, ``config``, ``named_params``,
    ``params``, ``optimizer``, ``ema`` (or None), ``samplers`` (name → object with
    ``state_dict``/``load_state_dict``), ``out_dir``, ``parallel``; and implement
    ``train_step``, ``export``, ``_set_modes``."""

    kind = "base"
    config = None
    named_params: List[Tuple[str, torch.nn.Parameter]]
    params: List[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema = None
    scaler = None

    def __init__(self, out_dir: Optional[Union[str, Path]] = None, parallel: Optional[Parallel] = None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.parallel = parallel or Parallel()
        self.step = 0
        self.history: List[dict] = []
        self.callback: Optional[ProgressCallback] = None
        self.samplers: Dict[str, object] = {}

    # ------------------------------------------------------------------ to implement
    def train_step(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def export(self, folder=None, *, partial: bool = False) -> Dict[str, Path]:  # pragma: no cover - abstract
        """Write the user-facing result files; ``partial`` (Cancel): under :func:`partial_name` names."""
        raise NotImplementedError

    def _set_modes(self, training: bool) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def check_state(self, info: dict, path) -> None:
        """Raise if a checkpoint's ``info`` does not belong to this run."""

    # ------------------------------------------------------------------ loop
    @property
    def checkpoint_dir(self) -> Optional[Path]:
        return self.out_dir / "checkpoints" if self.out_dir is not None else None

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    def run(self, steps: Optional[int] = None, callback: Optional[ProgressCallback] = None):
        """Train until ``steps`` (default ``config.steps``) steps are done in total; returns the
        subclass's result object.  See the module docstring for cancel semantics."""
        total = int(steps or self.config.steps)
        cb = callback or self.callback
        lock = None
        if self.out_dir is not None and self.parallel.is_main:  # one run per output folder at a time
            from ..fileio import WriterLock
            lock = WriterLock(self.out_dir / "checkpoints", self.out_dir / ".run.lock",
                              what="training output folder").acquire()
        try:
            self._set_modes(True)
            try:
                while self.step < total:
                    entry = self.train_step()
                    if self.parallel.is_main and cb is not None:
                        cb(self.step, total, dict(entry, stage="train"))
                    se = int(self.config.save_every or 0)
                    if se and self.step % se == 0 and self.step < total and self.out_dir is not None \
                            and self.parallel.is_main:
                        self.save_checkpoint()
            except (Interrupted, KeyboardInterrupt):
                self.optimizer.zero_grad(set_to_none=True)
                self._set_modes(False)
                if self.out_dir is not None and self.parallel.is_main and self.step > 0:
                    ck = self.save_checkpoint()
                    # the result of an unfinished run never takes the finished name: <name>.partial.*
                    mark_partial(self.export(partial=True), f"step {self.step} of {total}")
                    log.info("training cancelled after step %d; saved %s", self.step, ck)
                raise
            finally:
                self._set_modes(False)
            return self._finish()
        finally:
            if lock is not None:
                lock.release()

    def _finish(self):
        out = {"step": self.step, "history": self.history}
        if self.out_dir is not None and self.parallel.is_main:
            out["checkpoint"] = self.save_checkpoint()
            files = self.export()
            out.update(files)
            for p in files.values():  # a partial result of an earlier Cancel is superseded
                q = partial_name(Path(p))
                if q.is_file():
                    q.unlink()
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_info(self) -> dict:
        info = {"kind": self.kind, "step": self.step, "config": self.config.to_dict(),
                "params": [[n, list(p.shape)] for n, p in self.named_params],
                "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "history": self.history}
        info.update(self.extra_state())
        return info

    def save_checkpoint(self, path: Optional[Union[str, Path]] = None) -> Path:
        """Atomically write the resumable state of the last completed step."""
        if path is None:
            if self.checkpoint_dir is None:
                raise InputError("save_checkpoint: no out_dir was given")
            path = self.checkpoint_dir / f"step_{self.step:08d}.safetensors"
        tensors = {f"p/{n}": p.detach().float() for n, p in self.named_params}
        if self.ema is not None:
            tensors.update({f"ema/{n}": s for (n, _), s in zip(self.named_params, self.ema.shadow)})
        opt_t, opt_info = st.optimizer_tensors(self.optimizer)
        tensors.update(opt_t)
        info = self.state_info()
        info["optimizer"] = opt_info
        if self.scaler is not None:
            info["scaler"] = self.scaler.state_dict()
        path = st.save_state(path, tensors, info)
        if self.checkpoint_dir is not None and Path(path).parent == self.checkpoint_dir:
            st.prune_checkpoints(self.checkpoint_dir, int(self.config.keep_checkpoints))
        return Path(path)

    def load_checkpoint(self, path: Union[str, Path]) -> None:
        """Restore parameters, EMA, optimizer, samplers, step, history and RNG from ``path``."""
        tensors, info = st.load_state(path)
        if info.get("kind") != self.kind:
            raise CheckpointError(f"{path}: a {info.get('kind')!r} checkpoint, not a {self.kind!r} one")
        names = [n for n, _ in self.named_params]
        saved = [n for n, _ in info["params"]]
        if saved != names:
            diff = next(((a, b) for a, b in zip(saved + [None], names + [None]) if a != b), None)
            raise CheckpointError(f"{path}: it trains other parameters than this run ({len(saved)} vs "
                                  f"{len(names)} tensors; first difference {diff})")
        self.check_state(info, path)
        with torch.no_grad():
            for n, p in self.named_params:
                t = tensors[f"p/{n}"]
                if tuple(t.shape) != tuple(p.shape):
                    raise CheckpointError(f"{path}: {n} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
                p.copy_(t.to(p.dtype))
            if self.ema is not None:
                for (n, _), s in zip(self.named_params, self.ema.shadow):
                    s.copy_(tensors.get(f"ema/{n}", tensors[f"p/{n}"]))
                self.ema.updates = int(info.get("ema_updates", 0))
        st.restore_optimizer(self.optimizer, tensors, info["optimizer"])
        if self.scaler is not None and info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        for k, s in self.samplers.items():
            if k in info.get("samplers", {}):
                s.load_state_dict(info["samplers"][k])
        self.step = int(info["step"])
        self.history = list(info.get("history", []))
        st.restore_rng(tensors, info)
        self.on_resumed(info)
        log.info("resumed from %s (step %d)", path, self.step)

    def on_resumed(self, info: dict) -> None:
        pass

    def resume(self, path: Optional[Union[str, Path]] = None) -> bool:
        """Load ``path`` or the newest checkpoint under ``out_dir``; False if there is none."""
        if path is None:
            if self.checkpoint_dir is None:
                return False
            path = st.latest_checkpoint(self.checkpoint_dir)
            if path is None:
                return False
        self.load_checkpoint(path)
        return True

    # ------------------------------------------------------------------ helpers for subclasses
    def _optimizer_update(self, s: int, lr: float, entry: dict) -> dict:
        """LR, (scaler) optimizer step, EMA, step counter and history as one uninterruptible update."""
        for grp in self.optimizer.param_groups:
            grp["lr"] = lr
        with st.defer_sigint():
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update()
            self.step = s
            self.history.append(entry)
        self.optimizer.zero_grad(set_to_none=True)
        return entry
