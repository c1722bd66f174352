"""What the training nodes share: paths, progress, input checks, and the run wrapper.

The nodes are declared in datasets.py (AudioX Dataset), lora.py (AudioX Train LoRA, AudioX LoRA
Loader) and distill.py (AudioX Distill).  What a run does lives in :mod:`audiox_core.training`:
examples, input checks, the shared-model rule (training never changes what the loaded model
computes for other nodes), resume and publish in ``session``; progress text and reports in ``report``.

Progress: the bar shows step / total, the node a live line with the current loss and, inside
ComfyUI, the live view of web/audiox.js draws the loss curve, steps/s, ETA, lr and the last
checkpoint from ``audiox.training`` websocket messages.  Cancel saves a checkpoint of the last
completed step, publishes its result only as ``<name>.partial.safetensors`` (marked "partial, step
k of n") and re-raises ComfyUI's interrupt so the UI shows "interrupted"; with ``resume`` on, the
next run continues from there.  One run at a time may write an output name.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..audiox_core.errors import FieldError, Interrupted
from ..audiox_core.fileio import WriterLock, resolve_inside
from ..audiox_core.training import report, session
from ..audiox_core.training.plot import loss_panels_image
from . import comfy_compat
from .common import CATEGORY, DatasetBundle, ModelBundle, NodeError, about_input, check_widgets, expect, node_error

comfy_compat.register_model_folder("loras", "loras", [".safetensors"])

TRAIN_CATEGORY = f"{CATEGORY}/training"
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
PRECISION_TOOLTIP = ("Autocast precision of the forward/backward pass (trained weights stay fp32). auto: bf16 on a "
                     "GPU that supports it (else fp16), fp32 on the CPU.")
SAVE_EVERY_TOOLTIP = "Write a resumable checkpoint every this many steps (0: only at the end and on Cancel)."
TRAIN_MEMORY = int(1e20)  # as ComfyUI's own trainer: free the GPU of every other model before training
STATE_DIR = "audiox_training"


def input_roots() -> list[str]:
    """Where training data may come from: ComfyUI's input directory."""
    return [comfy_compat.get_input_directory()]


def output_file(node: str, folder_name: str, name: str) -> Path:
    """``<models/folder_name>/<name>.safetensors`` for writing, refused if it (or a symlink on the
    way) leads outside that folder."""
    with about_input(node, "output_name"):
        return resolve_inside(f"{name}.safetensors", [model_folder(folder_name)],
                              what=f"output file in models/{folder_name}", must_exist=False)


def model_folder(name: str) -> Path:
    """Where files of model folder ``name`` are written: its first directory (ComfyUI's default
    ``models/<name>``), never the pack's own ``models/demo``."""
    from .model_files import DEMO_DIR
    for p in comfy_compat.get_folder_paths(name):
        if Path(p).resolve() != DEMO_DIR.resolve():
            return Path(p)
    raise NodeError(f"model folder '{name}' has no writable directory")


def state_dir(kind: str, name: str) -> Path:
    """Resumable training state of run ``name``: ``<ComfyUI output>/audiox_training/<kind>/<name>``
    (refused if a symlink on the way leads outside the output directory)."""
    return resolve_inside(f"{STATE_DIR}/{kind}/{name}", [comfy_compat.get_output_directory()],
                          what="training state folder in ComfyUI's output directory", must_exist=False)


def cache_dir() -> Path:
    """The shared encoder-output cache (entries are keyed by content + encoder weights + parameters)."""
    return Path(comfy_compat.get_output_directory()) / STATE_DIR / "cache"


def display_path(p: Optional[Path]) -> Optional[str]:
    """A path as the user knows it: relative to ComfyUI's models/output folder when inside one (None: None)."""
    return None if p is None else report.display_path(p, [Path(comfy_compat.get_output_directory()).parent, Path.cwd()])


def run_precision(choice: str) -> str:
    """The autocast precision of a run on ComfyUI's compute device."""
    return session.autocast_precision(choice, comfy_compat.get_torch_device())


def loss_image(history: list, panels: list[tuple[str, str]]) -> torch.Tensor:
    """The loss curve(s) as a ComfyUI IMAGE; several panels are stacked top to bottom."""
    return loss_panels_image(history, panels).to(comfy_compat.intermediate_device())


class OutputNameCheck:
    """``VALIDATE_INPUTS`` of the training nodes: the ``output_name`` and the numbers ComfyUI's own
    checks let through (a NaN learning rate passes its min/max test).  Linked values (None here) are
    checked when the node runs, which calls this again with the actual values."""

    @classmethod
    def VALIDATE_INPUTS(cls, output_name=None, learning_rate=None):
        return cls._validate(output_name=output_name, learning_rate=learning_rate)

    @classmethod
    def _validate(cls, output_name=None, **numbers):
        problem = check_widgets(cls, numbers)
        if problem is not True or output_name is None:  # linked: checked when the node runs
            return problem
        try:
            session.check_output_name(output_name)
        except FieldError as e:
            return str(node_error(cls.DISPLAY_NAME, e.field, str(e)))
        return True

    def _checked(self, model, dataset, **values) -> tuple:
        """``(output name, model, dataset)``: the widget values checked, the plain loaded model and a
        dataset prepared for it."""
        problem = self._validate(**values)
        if problem is not True:
            raise NodeError(problem)
        m = expect(model, ModelBundle, self.DISPLAY_NAME, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        ds = expect(dataset, DatasetBundle, self.DISPLAY_NAME, "dataset", "an AUDIOX_DATASET from AudioX Dataset")
        session.check_trainable(m.model, len(m.loras), ds.source, ds.variant)
        return session.check_output_name(values["output_name"]), m, ds


class TrainProgress(report.LiveProgress):
    """Training callback: the progress bar (step / total), a live text line with the loss on the
    node, and inside ComfyUI the live-view messages (``audiox.training``, at most every
    ``live_seconds``, with a preview clip every ``preview_every`` steps).  A ComfyUI interrupt
    becomes :class:`Interrupted` (with the original as ``__cause__``) so the training loop saves a
    checkpoint before stopping."""

    LIVE_EVENT = "audiox.training"  # the websocket message web/audiox.js draws the live curve from

    def __init__(self, node_id: Optional[str], label: str, history: list, keys=("loss",),
                 checkpoint_dir: Optional[Callable[[], Optional[Path]]] = None, **live_options):
        """``live_options``: ``live_seconds``, ``preview_every``, ``preview`` of :class:`LiveProgress`."""
        super().__init__(label, history, keys, **live_options)
        self.node_id, self.checkpoint_dir, self.bar, self.last_text = node_id, checkpoint_dir, None, ""

    def _send_live(self, step: int, total: int, info: dict) -> None:
        clip = self.preview_clip(step)
        folder = self.checkpoint_dir() if self.checkpoint_dir is not None else None
        msg = self.live(step, total, info, force=step >= total or clip is not None,  # listed only when sent
                        checkpoint=lambda: display_path(report.newest_checkpoint(folder)))
        if msg is not None:
            comfy_compat.ui_event(self.LIVE_EVENT, {"node": self.node_id, **msg, **({"preview": clip} if clip else {})})

    def __call__(self, step: int, total: int, info: Optional[dict] = None) -> None:
        info = info or {}
        self.last_text = self.text(step, total, info)
        comfy_compat.send_progress_text(self.last_text, self.node_id)
        if self.node_id is not None:
            self._send_live(step, total, info)
        if self.bar is None:
            self.bar = comfy_compat.ProgressBar(total, node_id=self.node_id)
        try:
            self.bar.update_absolute(step, total)
        except comfy_compat.interrupt_exceptions() as e:
            if isinstance(e, Interrupted):
                raise
            raise Interrupted("cancelled") from e


def live_view(unique_id, label: str, sample_rate: int, preview_every: int,
              keys=("loss",)) -> Callable[[object], TrainProgress]:
    """``progress`` of :func:`run_training`: the run's :class:`TrainProgress`, with every ``preview_every``
    steps the clip ``runner.preview()`` as a playable temp WAV (``<label>_preview_step<k>``)."""
    def progress(runner) -> TrainProgress:
        def preview(step: int) -> dict:
            name = f"{label.lower()}_preview_step{step}"
            return comfy_compat.audio_preview(runner.preview(), sample_rate, name)[0]
        return TrainProgress(unique_id, label, runner.history, keys, checkpoint_dir=lambda: runner.checkpoint_dir,
                             preview_every=preview_every, preview=preview)
    return progress


def reraise_cancel(e: Interrupted):
    """Re-raise the exception that ComfyUI raised for Cancel (so it reports "interrupted")."""
    cause = e.__cause__
    if isinstance(cause, comfy_compat.interrupt_exceptions()) and not isinstance(cause, Interrupted):
        raise cause
    raise e


def run_training(node: str, m: ModelBundle, make: Callable[[], object], *, run_dir: Path, resume: bool, src: Path,
                 dst: Path, progress: Callable[[object], TrainProgress]):
    """:func:`audiox_core.training.session.train_and_publish` with the model on its devices and the
    output's writer lock held; Cancel re-raises ComfyUI's interrupt.  Returns ``(runner, start
    step, seconds)``."""
    started = time.perf_counter()
    with about_input(node, "output_name"):
        lock = WriterLock(dst, run_dir / ".writer.lock", what="output").acquire()
    try:
        with m.on_device("backbone", "maf", "conditioner", memory_required=TRAIN_MEMORY):
            try:
                runner, start = session.train_and_publish(m.model, make, run_dir=run_dir, resume=resume,
                                                          src=src, dst=dst, progress=progress)
            except Interrupted as e:
                reraise_cancel(e)
    finally:
        lock.release()
    return runner, start, time.perf_counter() - started


NODE_CLASS_MAPPINGS: dict = {}  # the nodes: datasets.py, lora.py, distill.py
