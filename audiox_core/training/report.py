"""What a training run tells its user: the live progress line and live-view message while it runs
(with the runner's preview clips), and the final report of a LoRA run, a distillation and a prepared dataset.

Pure text and numbers (no UI): a front end (the ComfyUI nodes, a CLI) shows them.  Paths in the
reports are given already formatted (``dst`` / ``run_dir`` / ``cache`` strings), as the front end
shows them to its user; :func:`display_path` makes them relative to known folders.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from ..errors import AudioXError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Live progress
# ----------------------------------------------------------------------------------------------
class LiveProgress:
    """The progress of one run from the ``(step, total, info)`` callbacks of a Trainer / Distiller:
    :meth:`text` (the one-line status with the loss, its recent mean, lr, s/step and time left) and
    :meth:`live` (the live-view message, at most every ``live_seconds``)."""

    LIVE_SECONDS = 0.25  # at most this often (the last step is always sent)

    def __init__(self, label: str, history: list, keys: Sequence[str] = ("loss",),
                 live_seconds: Optional[float] = None, preview_every: int = 0,
                 preview: Optional[Callable[[int], dict]] = None):
        self.label, self.history, self.keys = label, history, tuple(keys)
        self.live_seconds = self.LIVE_SECONDS if live_seconds is None else live_seconds
        self.preview_every, self.preview_fn = int(preview_every or 0), preview
        self.t0 = time.perf_counter()
        self.first_step: Optional[int] = None
        self._last_live = -1e9
        self._sent = None  # history entries already sent (None: nothing yet, the first message resets)

    def steps_done(self, step: int) -> int:
        """Steps run since this object saw its first step (a resumed run starts late)."""
        if self.first_step is None:
            self.first_step = step
        return step - (self.first_step or step) + 1

    def preview_clip(self, step: int) -> Optional[dict]:
        """Every ``preview_every`` steps ``{"step", "audio": preview(step)}`` (what ``preview`` makes
        of a clip, e.g. a playable file reference), or ``{"step", "error"}`` when that failed: the
        failure is shown and the training goes on.  None on the other steps."""
        if self.preview_fn is None or self.preview_every <= 0 or step % self.preview_every:
            return None
        try:
            return {"step": step, "audio": self.preview_fn(step)}
        except (AudioXError, RuntimeError, ValueError) as e:
            log.warning("%s: preview generation at step %d failed: %s", self.label, step, e)
            return {"step": step, "error": str(e)}

    def live(self, step: int, total: int, info: dict, force: bool = False,
             checkpoint: Union[str, Callable[[], Optional[str]], None] = None) -> Optional[dict]:
        """The live-view message (steps/s, ETA, lr, the new history entries, the newest checkpoint:
        a text, or a function giving it, called only when a message is sent), at most every
        ``live_seconds`` unless ``force`` (the last step); None when skipped."""
        now = time.perf_counter()
        if not force and now - self._last_live < self.live_seconds:
            return None
        self._last_live = now
        checkpoint = checkpoint() if callable(checkpoint) else checkpoint
        entries = [{k: h[k] for k in ("step",) + self.keys + ("lr",) if isinstance(h.get(k), (int, float))}
                   for h in self.history[self._sent or 0:]]
        elapsed = now - self.t0
        rate = self.steps_done(step) / elapsed if elapsed > 0 else None
        message = {"label": self.label, "keys": list(self.keys), "step": step, "total": total,
                   "reset": self._sent is None, "entries": entries,
                   "lr": info.get("lr") if isinstance(info.get("lr"), (int, float)) else None,
                   "steps_per_second": rate, "eta_seconds": (total - step) / rate if rate else None,
                   "checkpoint": checkpoint}
        self._sent = len(self.history)
        return message

    def text(self, step: int, total: int, info: dict) -> str:
        """``"<label> step k/n · loss … · avg(20) … · lr … · s/step, ~min left"``."""
        parts = [f"{self.label} step {step}/{total}"]
        for k in self.keys:
            if isinstance(info.get(k), (int, float)):
                parts.append(f"{k.replace('_', ' ')} {info[k]:.4g}")
        recent = [h.get("loss") for h in self.history[-20:] if isinstance(h.get("loss"), (int, float))]
        if len(recent) > 1:
            parts.append(f"avg(20) {sum(recent) / len(recent):.4g}")
        if isinstance(info.get("lr"), float):
            parts.append(f"lr {info['lr']:.2g}")
        done = self.steps_done(step)
        elapsed = time.perf_counter() - self.t0
        if done > 0 and elapsed > 0:
            per = elapsed / done
            parts.append(f"{per:.2f} s/step, ~{per * (total - step) / 60:.1f} min left")
        return " · ".join(parts)


def newest_checkpoint(folder: Optional[Path]) -> Optional[Path]:
    """The newest ``step_*.safetensors`` of a run's checkpoint folder, or None."""
    if folder is None or not Path(folder).is_dir():
        return None
    found = sorted(Path(folder).glob("step_*.safetensors"))
    return found[-1] if found else None


def display_path(path: Path, bases: Sequence[Path]) -> str:
    """``path`` relative to the first of ``bases`` that holds it (resolved), else as given."""
    for base in bases:
        try:
            return str(Path(path).resolve().relative_to(Path(base).resolve()))
        except ValueError:
            continue
    return str(path)


# ----------------------------------------------------------------------------------------------
# Final reports
# ----------------------------------------------------------------------------------------------
def loss_summary(history: list, key: str = "loss") -> str:
    """``"<key>: first …, last …, mean of the last 10 …"`` (or that no step was run)."""
    values = [h[key] for h in history if isinstance(h.get(key), (int, float))]
    if not values:
        return f"{key}: no steps"
    tail = values[-10:]
    return (f"{key}: first {values[0]:.4g}, last {values[-1]:.4g}, mean of the last {len(tail)} "
            f"{sum(tail) / len(tail):.4g}")


def _steps_line(runner, start: int, config, items: int, seed: int, seconds: float, batch: str = "") -> str:
    trained = (f"steps {start + 1}–{runner.step} of {config.steps}" if runner.step > start
               else f"already trained to step {runner.step}")
    return (f"{trained} on {items} items{batch}, {config.precision}, lr {config.lr:g}, seed {seed}; {seconds:.1f} s"
            + (f", resumed from step {start}" if start else ""))


def lora_report(name: str, lora, targets: str, include_maf: bool, model_label: str, trainer, start: int, config,
                items: int, seed: int, seconds: float, saved: str, state: str) -> str:
    """The report of a LoRA run (``model_label``: ``"<model name> (<variant>)"``)."""
    return "\n".join([
        f"LoRA '{name}': rank {lora.rank}, alpha {lora.alpha:g}, targets {targets}" + (" + MAF" if include_maf else "")
        + f" ({len(lora.paths)} modules, {lora.num_parameters():,} parameters) on {model_label}",
        _steps_line(trainer, start, config, items, seed, seconds,
                    batch=f" (batch {config.batch_size} × {config.grad_accum})"),
        loss_summary(list(trainer.history)),
        f"saved {saved}; resumable state in {state}"])


def distill_report(name: str, model_label: str, distiller, start: int, config, items: int, seed: int,
                   seconds: float, saved: str, state: str, notes: Sequence[str] = ()) -> str:
    """The report of a distillation (``model_label``: ``"<teacher name> (<variant>)"``)."""
    history = list(distiller.history)
    mode = config.parameterization
    return "\n".join([
        f"student '{name}' of {model_label}: {mode} ({distiller.num_trainable():,} trained parameters"
        + (f", LoRA rank {config.lora_rank}" if mode == "lora" else "")
        + f"), {config.student_steps} student steps, guidance {config.guidance:g}, GAN "
        + (f"on (weight {config.gan_weight:g})" if config.gan else "off")
        + f"; {config.update_ratio} student : {config.fake_updates} critic updates per cycle",
        _steps_line(distiller, start, config, items, seed, seconds),
        loss_summary(history, "loss_dmd"), loss_summary(history, "loss_fake"),
        f"saved {saved} (role student: run it with AudioX Turbo Sampler, {config.student_steps} steps); "
        f"resumable state in {state}", *notes])


def dataset_report(data, root: Path, model_label: str, origins: list, with_video: int, sync: Optional[str],
                   cached_before: set, cache: str, seconds: float) -> str:
    """The report of a prepared dataset: items, caption origins, videos (``sync``: the sync
    features' source, None for a model without a sync branch) and the encoder cache reuse
    (``cached_before``: the cache's file names before preparing)."""
    keys = {k for item in data.items for k in item.keys}
    reused = sum(1 for k in keys if f"{k}.safetensors" in cached_before)
    counts = {o: origins.count(o) for o in dict.fromkeys(origins)}
    return "\n".join([
        f"{len(data)} items from {root} for {model_label}; dataset hash {data.dataset_hash}",
        "captions: " + ", ".join(f"{n} {o}" for o, n in counts.items())
        + (f"; {with_video} with video (sync {sync or 'n/a'})" if with_video else ""),
        f"encoder cache: {reused} of {len(keys)} entries reused, {len(keys) - reused} computed in "
        f"{seconds:.1f} s ({cache})"])
