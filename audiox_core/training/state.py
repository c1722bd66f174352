"""Resumable training state: one atomic ``.safetensors`` file per checkpoint.

A checkpoint ``<out>/checkpoints/step_00000120.safetensors`` holds

* ``p/<name>``: every trained parameter (fp32), ``ema/<name>``: their EMA,
* ``opt/<group>/<index>/<key>``: the optimizer's per-parameter state tensors (``exp_avg``,
  ``exp_avg_sq``, ``step`` …) keyed by the parameter's position in the trained list,
* ``rng/torch``: the CPU RNG state,

and a JSON metadata entry ``audiox_train_state`` with the step, config, parameter names/shapes,
optimizer hyper-parameters, sampler position, loss history, Python RNG state, fingerprints.

Writes are atomic: the file is written to a temporary name in the same folder, flushed and
fsync'ed, renamed over the final name (``os.replace``) and the folder is fsync'ed; a crash at
any point leaves either the previous checkpoints or the complete new one — never a half file.
:func:`latest_checkpoint` picks the newest file that parses (temporary files are ignored).
"""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["STATE_KEY", "save_state", "load_state", "latest_checkpoint", "list_checkpoints", "prune_checkpoints",
           "optimizer_tensors", "restore_optimizer", "defer_sigint", "fsync_dir"]

STATE_KEY = "audiox_train_state"
STATE_VERSION = 1


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort; not every OS allows fsync on a folder)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def optimizer_tensors(opt: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Flatten ``opt.state_dict()`` into tensors ``opt/<i>/<key>`` and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt/{idx}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"groups": groups, "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor], info: dict) -> None:
    state: Dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    groups = []
    for g in info["groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(path: Union[str, Path], tensors: Dict[str, torch.Tensor], info: dict) -> Path:
    """Atomically write one checkpoint (module docstring)."""
    from ..weights import save_safetensors
    path = Path(path)
    info = dict(info, version=STATE_VERSION, python_rng=_py_rng())
    tensors = dict(tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path,
                     {"format": "pt", STATE_KEY: json.dumps(info)})
    fsync_dir(path.parent)
    return path


def load_state(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], dict]:
    """``(tensors, info)`` of a checkpoint; raises :class:`CheckpointError` if it is not one."""
    from ..weights import SafetensorsFile
    f = SafetensorsFile(path)
    if STATE_KEY not in f.metadata:
        raise CheckpointError(f"{path}: not an AudioX training-state file (no {STATE_KEY} metadata)")
    info = json.loads(f.metadata[STATE_KEY])
    if int(info.get("version", 0)) > STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {info.get('version')} is newer than this library")
    return {k: f.read(k) for k in f.keys()}, info


def restore_rng(tensors: Dict[str, torch.Tensor], info: dict) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"].to(torch.uint8))
    st = info.get("python_rng")
    if st:
        random.setstate((st[0], tuple(st[1]), st[2]))


def _py_rng() -> list:
    a, b, c = random.getstate()
    return [a, list(b), c]


def list_checkpoints(folder: Union[str, Path]) -> List[Path]:
    """``step_*.safetensors`` files of ``folder``, oldest first (by step)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("step_*.safetensors") if p.is_file()]

    def step(p: Path) -> int:
        try:
            return int(p.stem.split("_", 1)[1])
        except (IndexError, ValueError):
            return -1
    return sorted((p for p in files if step(p) >= 0), key=step)


def latest_checkpoint(folder: Union[str, Path]) -> Optional[Path]:
    """The newest checkpoint in ``folder`` that opens as a training state (None if there is none)."""
    for p in reversed(list_checkpoints(folder)):
        try:
            load_state_header(p)
            return p
        except CheckpointError as e:
            log.warning("skipping unreadable checkpoint %s: %s", p.name, e)
    return None


def load_state_header(path: Union[str, Path]) -> dict:
    from ..weights import SafetensorsFile
    f = SafetensorsFile(path)
    if STATE_KEY not in f.metadata:
        raise CheckpointError(f"{path}: not an AudioX training-state file")
    return json.loads(f.metadata[STATE_KEY])


def prune_checkpoints(folder: Union[str, Path], keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps everything)."""
    if keep <= 0:
        return
    for p in list_checkpoints(folder)[:-keep]:
        try:
            p.unlink()
        except OSError as e:  # pragma: no cover - best effort
            log.warning("could not delete old checkpoint %s: %s", p, e)


@contextmanager
def defer_sigint() -> Iterator[None]:
    """Hold back Ctrl-C while the parameters are being updated (optimizer + EMA + step counter),
    so a KeyboardInterrupt never leaves a half-applied update; it is re-raised right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []
    try:
        old = signal.signal(signal.SIGINT, lambda *a: hit.append(a))
    except (ValueError, OSError):  # pragma: no cover - not allowed here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if hit:
            raise KeyboardInterrupt
