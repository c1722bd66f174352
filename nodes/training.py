"""What the training nodes share: paths, progress, checks, and the run wrapper.

The nodes are declared in datasets.py, lora.py and distill.py; what a run does (examples,
autograd preparation, resume, publish) lives in :mod:`audiox_core.training.session`.

* AudioX Dataset — a folder of audio files (captions from sidecar ``.txt`` files, a CSV/JSONL
  manifest such as the official ``train_manifest``, or the file names; same-stem videos) whose
  frozen-encoder outputs (VAE latents, T5 tokens, video features) are computed once and cached on
  disk under keys of (file content, encoder weights, parameters): epochs and later runs read them.
* AudioX Train LoRA — LoRA fine-tuning with the model's own objective, the paper's input masking
  and CFG dropout (:class:`audiox_core.training.Trainer`); saves ``models/loras/<name>.safetensors``.
* AudioX LoRA Loader — applies LoRAs (files of models/loras or one trained in the graph) with a
  strength, chainable, optionally merged into the weights while the model runs.
* AudioX Distill — the AudioX-Turbo DMD + GAN recipe (:class:`audiox_core.training.Distiller`);
  saves a student into ``models/audiox`` that AudioX Turbo Sampler runs.

Shared-model rule.  ComfyUI caches node outputs, so the model object a loader returned is used by
other nodes before and after a training node runs.  Training never changes what that model
computes: the LoRA adapters live outside its weights (forward hooks, attached only while training
and detached in ``finally``); module modes, ``requires_grad`` flags and gradient checkpointing are
restored; a model with LoRAs applied (:meth:`ModelBundle.with_loras`) attaches them only inside
the block where a node runs it.  The one in-place change: tensors that a loader created under
ComfyUI's ``torch.inference_mode`` are swapped for identical normal tensors (autograd cannot save
inference tensors), which leaves every output bit-identical.

Progress: the bar shows step / total, the node shows a live line with the current loss
(``PromptServer.send_progress_text``) and, inside ComfyUI, the live view of web/audiox.js draws the
loss curve, steps/s, ETA, lr and the last checkpoint from ``audiox.training`` websocket messages;
the final report (node text, ``report`` output) repeats it.  Cancel saves a checkpoint of the last
completed step and publishes the LoRA / student of that step only as ``<name>.partial.safetensors``,
marked "partial, step k of n" in its metadata (the loaders show it), never under the final name;
the run that finishes replaces it with ``<name>.safetensors``.  One run at a time may write an
output name (a second is refused).  Then Cancel re-raises ComfyUI's interrupt so the UI
shows "interrupted"; with ``resume`` on, the next run continues from there.  For a fixed seed the
results are deterministic (every random draw is seeded per step; the global RNG is restored after).
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..audiox_core import conditions
from ..audiox_core.errors import AudioXError, FieldError, Interrupted
from ..audiox_core.fileio import WriterLock, resolve_inside
from ..audiox_core.training import session
from ..audiox_core.training.session import partial_file, publish, train_and_publish  # noqa: F401  (re-exported)
from . import comfy_compat
from .preview import audio_preview, ui_event
from .common import (CATEGORY, DatasetBundle, ModelBundle, NodeError, about_input, check_widgets, expect,
                     node_error)

log = logging.getLogger(__name__)

comfy_compat.register_model_folder("loras", "loras", [".safetensors"])

HIDDEN = {"unique_id": "UNIQUE_ID"}
TRAIN_CATEGORY = f"{CATEGORY}/training"
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
PRECISION_TOOLTIP = ("Autocast precision of the forward/backward pass (trained weights stay fp32). auto: bf16 on a "
                     "GPU that supports it (else fp16), fp32 on the CPU.")
CAPTION_SOURCES = list(session.CAPTION_SOURCES)
MISSING_POLICIES = list(session.MISSING_POLICIES)
TARGETS = ["all", "attention", "feed-forward"]
NONE = "none"
TRAIN_MEMORY = int(1e20)  # as ComfyUI's own trainer: free the GPU of every other model before training
STATE_DIR = "audiox_training"
_NAME_RX = re.compile(r"[A-Za-z0-9_.\- ]+(/[A-Za-z0-9_.\- ]+)*")


# ============================================================================================
# helpers
# ============================================================================================
def input_roots() -> list[str]:
    """Where training data may come from: ComfyUI's input directory."""
    return [comfy_compat.get_input_directory()]


def resolve_folder(folder: str, *, input_name: str = "folder") -> Path:
    """``folder`` inside ComfyUI's input directory (a name relative to it, or an absolute path that
    lies inside it; symlinks resolved).  Anything else raises :class:`PathError`."""
    p = resolve_inside(folder, input_roots(), what=f"'{folder}' (a folder in ComfyUI's input directory)",
                       must_exist=False)
    return p


def output_file(node: str, folder_name: str, name: str) -> Path:
    """``<models/folder_name>/<name>.safetensors`` for writing, refused if it (or a symlink on the
    way) leads outside that folder."""
    with about_input(node, "output_name"):
        return resolve_inside(f"{name}.safetensors", [model_folder(folder_name)],
                              what=f"output file in models/{folder_name}", must_exist=False)


def output_name(node: str, input_name: str, value: str) -> str:
    """A safe relative file name (sub-folders allowed, no ``..``), without ``.safetensors``."""
    name = str(value).strip()
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    if not name or not _NAME_RX.fullmatch(name) or any(part.strip() in ("", ".", "..") for part in name.split("/")):
        raise node_error(node, input_name, f"must be a file name (letters, digits, '_', '-', '.', spaces; "
                         f"sub-folders with '/'), got {value!r}")
    return name


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


def resolve_precision(choice: str, device: torch.device) -> str:
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


class TrainProgress:
    """Training callback: the progress bar (step / total), a live text line with the loss on the
    node, and inside ComfyUI the live-view messages (:meth:`live`, at most every ``live_seconds``).
    A ComfyUI interrupt becomes :class:`Interrupted` (with the original as ``__cause__``) so the
    training loop saves a checkpoint before stopping."""

    LIVE_EVENT = "audiox.training"  # the websocket message web/audiox.js draws the live curve from
    LIVE_SECONDS = 0.25  # at most this often (the last step is always sent)

    def __init__(self, node_id: Optional[str], label: str, history: list, keys=("loss",),
                 checkpoint_dir: Optional[Callable[[], Optional[Path]]] = None,
                 live_seconds: Optional[float] = None, preview_every: int = 0,
                 preview: Optional[Callable[[int], dict]] = None):
        self.node_id, self.label, self.history, self.keys = node_id, label, history, tuple(keys)
        self.checkpoint_dir = checkpoint_dir
        self.preview_every, self.preview_fn = int(preview_every or 0), preview
        self.live_seconds = self.LIVE_SECONDS if live_seconds is None else live_seconds
        self.bar = None
        self.t0 = time.perf_counter()
        self.first_step: Optional[int] = None
        self.last_text = ""
        self._last_live = -1e9
        self._sent = None  # history entries already sent (None: nothing yet, the first message resets)

    def live(self, step: int, total: int, info: dict, force: bool = False) -> Optional[dict]:
        """The live-view message (steps/s, ETA, lr, the new history entries, the newest checkpoint),
        at most every ``live_seconds`` unless ``force`` (the last step); None when skipped."""
        now = time.perf_counter()
        if not force and now - self._last_live < self.live_seconds:
            return None
        self._last_live = now
        start = self._sent or 0
        entries = [{k: h[k] for k in ("step",) + self.keys + ("lr",) if isinstance(h.get(k), (int, float))}
                   for h in self.history[start:]]
        done = step - (self.first_step or step) + 1
        el = now - self.t0
        rate = done / el if el > 0 else None
        ck = None
        folder = self.checkpoint_dir() if self.checkpoint_dir is not None else None
        if folder is not None and Path(folder).is_dir():
            found = sorted(Path(folder).glob("step_*.safetensors"))
            ck = display_path(found[-1]) if found else None
        msg = {"node": self.node_id, "label": self.label, "keys": list(self.keys), "step": step, "total": total,
               "reset": self._sent is None, "entries": entries,
               "lr": info.get("lr") if isinstance(info.get("lr"), (int, float)) else None,
               "steps_per_second": rate, "eta_seconds": (total - step) / rate if rate else None,
               "checkpoint": ck}
        self._sent = len(self.history)
        return msg

    def text(self, step: int, total: int, info: dict) -> str:
        parts = [f"{self.label} step {step}/{total}"]
        for k in self.keys:
            if isinstance(info.get(k), (int, float)):
                parts.append(f"{k.replace('_', ' ')} {info[k]:.4g}")
        recent = [h.get("loss") for h in self.history[-20:] if isinstance(h.get("loss"), (int, float))]
        if len(recent) > 1:
            parts.append(f"avg(20) {sum(recent) / len(recent):.4g}")
        if isinstance(info.get("lr"), float):
            parts.append(f"lr {info['lr']:.2g}")
        done = step - (self.first_step or step) + 1
        el = time.perf_counter() - self.t0
        if done > 0 and el > 0:
            per = el / done
            parts.append(f"{per:.2f} s/step, ~{per * (total - step) / 60:.1f} min left")
        return " · ".join(parts)

    def __call__(self, step: int, total: int, info: Optional[dict] = None) -> None:
        info = info or {}
        if self.first_step is None:
            self.first_step = step
        self.last_text = self.text(step, total, info)
        comfy_compat.send_progress_text(self.last_text, self.node_id)
        if self.node_id is not None:
            clip = None
            if self.preview_fn is not None and self.preview_every > 0 and step % self.preview_every == 0:
                try:
                    clip = {"step": step, "audio": self.preview_fn(step)}
                except (AudioXError, RuntimeError, ValueError) as e:  # shown on the node; training goes on
                    log.warning("%s: preview generation at step %d failed: %s", self.label, step, e)
                    clip = {"step": step, "error": str(e)}
            msg = self.live(step, total, info, force=step >= total or clip is not None)
            if msg is not None:
                if clip is not None:
                    msg["preview"] = clip
                ui_event(self.LIVE_EVENT, msg)
        if self.bar is None:
            self.bar = comfy_compat.ProgressBar(total, node_id=self.node_id)
        try:
            self.bar.update_absolute(step, total)
        except comfy_compat.interrupt_exceptions() as e:
            if isinstance(e, Interrupted):
                raise
            raise Interrupted("cancelled") from e


PREVIEW_STEPS = 8


def lora_preview(trainer, step: int) -> dict:
    """A short generation with the LoRA as trained up to ``step``: the conditions of the dataset's
    first item (no masking), the model's own sampler with :data:`PREVIEW_STEPS` steps and seed 0,
    one window; written as a temp WAV, returns its ``/view`` reference.  Runs in eval mode and
    draws only from its own generators, so the training continues exactly as without it."""
    from ..audiox_core import generate as generation
    from ..audiox_core.training.conditions import NO_MASKING
    model = trainer.model
    g = torch.Generator().manual_seed(0)
    batch = trainer.data.batch([0], g, trainer.device, random_crop=False, sample_posterior=False)
    trainer._set_modes(False)
    try:
        with torch.no_grad():
            ctx = trainer.cond.context(batch, NO_MASKING, g).float()
            settings = generation.SamplerSettings.for_model(model, steps=PREVIEW_STEPS, seed=0)
            lat = generation.sample(model, ctx, settings, batch=1, length=batch.x0.shape[-1])
            audio = generation.decode(model, lat)
    finally:
        trainer._set_modes(True)
    return audio_preview(audio, int(model.config.sample_rate), f"lora_preview_step{step}")[0]


def reraise_cancel(e: Interrupted):
    """Re-raise the exception that ComfyUI raised for Cancel (so it reports "interrupted")."""
    cause = e.__cause__
    interrupts = comfy_compat.interrupt_exceptions()
    if cause is not None and isinstance(cause, interrupts) and not isinstance(cause, Interrupted):
        raise cause
    raise e


def check_dataset(node: str, m: ModelBundle, dataset) -> DatasetBundle:
    ds = expect(dataset, DatasetBundle, node, "dataset", "an AUDIOX_DATASET from AudioX Dataset")
    if ds.source != conditions.model_fingerprint(m.model):
        raise node_error(node, "dataset", f"was prepared with another model ({ds.variant}): connect the model "
                         "you train to the 'model' input of AudioX Dataset as well")
    return ds


def check_plain_model(node: str, m: ModelBundle) -> None:
    if m.loras:
        raise node_error(node, "model", f"already has {len(m.loras)} LoRA(s) applied (AudioX LoRA Loader); "
                         "connect the model straight from AudioX Model Loader")


def loss_image(history: list, panels: list[tuple[str, str]]) -> torch.Tensor:
    """The loss curve(s) as a ComfyUI IMAGE; several panels are stacked top to bottom."""
    from ..audiox_core.training.plot import loss_curve_image
    imgs = [loss_curve_image(history, key=k, title=t, width=640, height=320) for k, t in panels
            if any(isinstance(h.get(k), (int, float)) for h in history)] or \
        [loss_curve_image(history, key=panels[0][0], title=panels[0][1], width=640, height=320)]
    return torch.cat(imgs, dim=1).to(comfy_compat.intermediate_device())


def loss_summary(history: list, key: str = "loss") -> str:
    vals = [h[key] for h in history if isinstance(h.get(key), (int, float))]
    if not vals:
        return f"{key}: no steps"
    tail = vals[-10:]
    return (f"{key}: first {vals[0]:.4g}, last {vals[-1]:.4g}, mean of the last {len(tail)} "
            f"{sum(tail) / len(tail):.4g}")


def display_path(p: Path) -> str:
    """A path as the user knows it: relative to ComfyUI's models/output folder when inside one."""
    for base in (Path(comfy_compat.get_output_directory()).parent, Path.cwd()):
        try:
            return str(Path(p).resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(p)


def file_stamp(p: Path) -> str:
    try:
        st = p.stat()
        return f"{p}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{p}:missing"


def output_name_ok(node: str, value: str) -> str:
    return output_name(node, "output_name", value)


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
        if problem is not True:
            return problem
        if output_name is None:  # linked: checked when the node runs
            return True
        try:
            output_name_ok(cls.DISPLAY_NAME, output_name)
        except NodeError as e:
            return str(e)
        return True

    def _check_inputs(self, **values) -> None:
        problem = self._validate(**values)
        if problem is not True:
            raise NodeError(problem)


def run_training(node: str, m: ModelBundle, make: Callable[[], object], release: Callable[[object], None], *,
                 run_dir: Path, resume: bool, src: Path, dst: Path, progress: Callable[[object], TrainProgress]):
    """:func:`audiox_core.training.session.train_and_publish` with the model on its devices and the
    output's writer lock held; Cancel re-raises ComfyUI's interrupt.  Returns ``(runner, start
    step, seconds)``."""
    started = time.perf_counter()
    with about_input(node, "output_name"):
        lock = WriterLock(dst, run_dir / ".writer.lock", what="output").acquire()
    try:
        with m.on_device("backbone", "maf", "conditioner", memory_required=TRAIN_MEMORY):
            try:
                runner, start = train_and_publish(m.model, make, release, run_dir=run_dir, resume=resume, src=src,
                                                  dst=dst, progress=progress)
            except FieldError as e:
                raise node_error(node, e.field, str(e)) from e
            except Interrupted as e:
                reraise_cancel(e)
    finally:
        lock.release()
    return runner, start, time.perf_counter() - started


NODE_CLASS_MAPPINGS: dict = {}  # the nodes: datasets.py, lora.py, distill.py
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
