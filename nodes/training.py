"""Training nodes: dataset, LoRA fine-tuning, LoRA loader, AudioX-Turbo distillation.

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

import contextlib
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..audiox_core import conditions as C
from ..audiox_core.errors import AudioXError, CheckpointError, FieldError, Interrupted
from ..audiox_core.fileio import WriterLock, resolve_inside
from ..audiox_core.training import session
from ..audiox_core.training.session import partial_file, publish, train_and_publish  # noqa: F401  (re-exported)
from . import comfy_compat as cc
from .preview import audio_preview, ui_event
from .common import (CATEGORY, DATASET, LORA, MODEL, SYNCHFORMER, T5, DatasetBundle, LoRAValue, ModelBundle,
                     NodeError, SynchformerBundle, T5Bundle, about_input, check_widgets, expect, node_error,
                     node_function)

log = logging.getLogger(__name__)

cc.register_model_folder("loras", "loras", [".safetensors"])

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
    return [cc.get_input_directory()]


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
    from .loaders import DEMO_DIR
    for p in cc.get_folder_paths(name):
        if Path(p).resolve() != DEMO_DIR.resolve():
            return Path(p)
    raise NodeError(f"model folder '{name}' has no writable directory")


def state_dir(kind: str, name: str) -> Path:
    """Resumable training state of run ``name``: ``<ComfyUI output>/audiox_training/<kind>/<name>``
    (refused if a symlink on the way leads outside the output directory)."""
    return resolve_inside(f"{STATE_DIR}/{kind}/{name}", [cc.get_output_directory()],
                          what="training state folder in ComfyUI's output directory", must_exist=False)


def cache_dir() -> Path:
    """The shared encoder-output cache (entries are keyed by content + encoder weights + parameters)."""
    return Path(cc.get_output_directory()) / STATE_DIR / "cache"


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
    node, and inside ComfyUI the live-view messages (:meth:`live`, at most every ``live_seconds``).  A ComfyUI interrupt becomes :class:`Interrupted` (with the original as
    ``__cause__``) so the training loop saves a checkpoint before stopping."""

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
            ck = _rel(found[-1]) if found else None
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
        cc.send_progress_text(self.last_text, self.node_id)
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
            self.bar = cc.ProgressBar(total, node_id=self.node_id)
        try:
            self.bar.update_absolute(step, total)
        except cc.interrupt_exceptions() as e:
            if isinstance(e, Interrupted):
                raise
            raise Interrupted("cancelled") from e


PREVIEW_STEPS = 8


def lora_preview(trainer, step: int) -> dict:
    """A short generation with the LoRA as trained up to ``step``: the conditions of the dataset's
    first item (no masking), the model's own sampler with :data:`PREVIEW_STEPS` steps and seed 0,
    one window; written as a temp WAV, returns its ``/view`` reference.  Runs in eval mode and
    draws only from its own generators, so the training continues exactly as without it."""
    from ..audiox_core import generate as G
    from ..audiox_core.training.conditions import NO_MASKING
    model = trainer.model
    g = torch.Generator().manual_seed(0)
    batch = trainer.data.batch([0], g, trainer.device, random_crop=False, sample_posterior=False)
    trainer._set_modes(False)
    try:
        with torch.no_grad():
            ctx = trainer.cond.context(batch, NO_MASKING, g).float()
            settings = G.SamplerSettings.for_model(model, steps=PREVIEW_STEPS, seed=0)
            lat = G.sample(model, ctx, settings, batch=1, length=batch.x0.shape[-1])
            audio = G.decode(model, lat)
    finally:
        trainer._set_modes(True)
    return audio_preview(audio, int(model.config.sample_rate), f"lora_preview_step{step}")[0]


def reraise_cancel(e: Interrupted):
    """Re-raise the exception that ComfyUI raised for Cancel (so it reports "interrupted")."""
    cause = e.__cause__
    if cause is not None and isinstance(cause, cc.interrupt_exceptions()) and not isinstance(cause, Interrupted):
        raise cause
    raise e


def check_dataset(node: str, m: ModelBundle, dataset) -> DatasetBundle:
    ds = expect(dataset, DatasetBundle, node, "dataset", "an AUDIOX_DATASET from AudioX Dataset")
    if ds.source != C.model_fingerprint(m.model):
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
    return torch.cat(imgs, dim=1).to(cc.intermediate_device())


def loss_summary(history: list, key: str = "loss") -> str:
    vals = [h[key] for h in history if isinstance(h.get(key), (int, float))]
    if not vals:
        return f"{key}: no steps"
    tail = vals[-10:]
    return (f"{key}: first {vals[0]:.4g}, last {vals[-1]:.4g}, mean of the last {len(tail)} "
            f"{sum(tail) / len(tail):.4g}")


def _rel(p: Path) -> str:
    """A path as the user knows it: relative to ComfyUI's models/output folder when inside one."""
    for base in (Path(cc.get_output_directory()).parent, Path.cwd()):
        try:
            return str(Path(p).resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(p)


def _file_stamp(p: Path) -> str:
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


# ============================================================================================
class AudioXDataset:
    DISPLAY_NAME = "AudioX Dataset"
    DESCRIPTION = ("A folder of audio files for training, with captions from sidecar .txt files, a CSV/JSONL "
                   "manifest (the official train_manifest format works) or the file names, and optional "
                   "same-stem videos. The model's frozen encoders (VAE, T5, video) run once per file; their "
                   "outputs are cached on disk (keyed by file content and encoder weights), so epochs and later "
                   "runs are cheap.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (DATASET, "STRING")
    RETURN_NAMES = ("dataset", "report")
    OUTPUT_TOOLTIPS = ("The prepared items, for AudioX Train LoRA / AudioX Distill with the same model.",
                       "How many items, where the captions came from, what was cached.")
    FUNCTION = "prepare"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model you will train: its VAE, video and audio conditioners "
                                             "encode the items (the dataset belongs to this model)."}),
                "t5": (T5, {"tooltip": "The model's T5 text encoder (AudioX T5 Loader), for the captions."}),
                "folder": ("STRING", {"default": "audiox_example_dataset",
                                      "tooltip": "Folder of audio files (.wav .flac .mp3 .ogg ...; sub-folders "
                                                 "included) inside ComfyUI's input folder: its name there (or "
                                                 "an absolute path inside it). Paths elsewhere are refused."}),
                "captions": (CAPTION_SOURCES, {"default": "auto",
                                               "tooltip": "Where captions come from. auto: <name>.txt beside the "
                                                          "file, else its manifest entry, else the file name. The "
                                                          "other choices use only that source."}),
                "missing_captions": (MISSING_POLICIES, {"default": "error",
                                                        "tooltip": "What to do with files the chosen source has "
                                                                   "no caption for (not used with auto / file "
                                                                   "name): stop with a list of them, caption them "
                                                                   "with their file name, train them without text "
                                                                   "(empty caption), or leave them out."}),
                "manifest": ("STRING", {"default": "",
                                        "tooltip": "A CSV or JSONL manifest inside the folder (or another "
                                                   "path inside ComfyUI's input folder; the files it lists must "
                                                   "be there too). Empty: metadata.jsonl, metadata.csv or "
                                                   "train_manifest*.jsonl if the folder has one."}),
                "videos": (["use", "ignore"], {"default": "use",
                                               "tooltip": "use: a video with the same name as an audio file "
                                                          "(.mp4 .mov .mkv .webm .avi) is its video condition. "
                                                          "ignore: train on audio and text only."}),
                "sync": (["zeros", "synchformer"], {"default": "zeros",
                                                    "tooltip": "Sync features of videos for MAF / Turbo models: "
                                                               "zeros (as the official Turbo training and the demo "
                                                               "model) or computed with the connected "
                                                               "Synchformer. Ignored by models without a sync "
                                                               "branch."}),
            },
            "optional": {
                "synchformer": (SYNCHFORMER, {"tooltip": "Synchformer (AudioX Synchformer Loader), when sync is "
                                                         "'synchformer'."}),
            },
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, folder=None, manifest=None):
        node = cls.DISPLAY_NAME
        if folder is None:  # linked from another node: checked when the node runs
            return True
        manifest = manifest or ""
        if not str(folder).strip():
            return f"{node}: input 'folder' is empty: give a folder of audio files"
        try:
            root = resolve_folder(folder)
        except AudioXError as e:
            return f"{node}: input 'folder': {e}"
        if not root.is_dir():
            return f"{node}: input 'folder': '{folder}' is not a folder (looked for {root})"
        from ..audiox_core.training.data import AUDIO_EXTS
        if not any(p.is_file() and p.suffix.lower() in AUDIO_EXTS for p in root.rglob("*")):
            return f"{node}: input 'folder': '{folder}' has no audio files ({' '.join(AUDIO_EXTS)})"
        if str(manifest).strip():
            try:
                mp = session.find_manifest(root, manifest, input_roots())
            except AudioXError as e:
                return f"{node}: input 'manifest': {e}"
            if not mp.is_file():
                return f"{node}: input 'manifest': '{manifest}' not found (looked for {mp})"
        return True

    @classmethod
    def IS_CHANGED(cls, folder="", manifest="", **_):
        """Re-run when a file of the folder changes (name, size or time), not only the widgets."""
        try:
            root = resolve_folder(folder)
        except AudioXError:
            return f"refused:{folder}"
        h = hashlib.sha256()
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    h.update(_file_stamp(p).encode())
        h.update(str(manifest).encode())
        return h.hexdigest()

    @node_function
    def prepare(self, model, t5, folder="audiox_example_dataset", captions="auto", missing_captions="error",
                manifest="", videos="use", sync="zeros", synchformer=None, unique_id=None):
        from ..audiox_core.training.data import CachePlan, prepare_dataset
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        t5b = expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5 from AudioX T5 Loader")
        problem = self.VALIDATE_INPUTS(folder=folder, manifest=manifest)
        if problem is not True:
            raise NodeError(problem)
        root = resolve_folder(folder)
        try:
            examples, origins = session.collect_examples(root, captions, missing_captions, manifest, videos == "use",
                                                         input_roots())
        except FieldError as e:
            raise node_error(node, e.field, str(e)) from e
        sf = None
        with_video = sum(1 for ex in examples if ex.video is not None)
        if with_video and m.model.video_conditioner is None:
            raise node_error(node, "videos", f"{with_video} file(s) have a video but {m.variant} has no video "
                             "condition: set 'videos' to 'ignore'")
        if with_video and m.needs_sync and sync == "synchformer":
            if synchformer is None:
                raise node_error(node, "synchformer", f"is not connected: {m.variant} conditions videos on "
                                 "Synchformer sync features — connect AudioX Synchformer Loader, or set 'sync' to "
                                 "'zeros'")
            sf = expect(synchformer, SynchformerBundle, node, "synchformer", "an AUDIOX_SYNCHFORMER")
        cdir = cache_dir()
        before = {p.name for p in cdir.glob("*.safetensors")} if cdir.is_dir() else set()
        cb = cc.make_progress_callback(None, unique_id)
        t0 = time.perf_counter()
        sf_ctx = sf.on_device() if sf is not None else contextlib.nullcontext()
        with m.on_device("conditioner", "vae"), t5b.on_device(), sf_ctx, session.preserved_state(m.model), \
                torch.inference_mode(False), torch.no_grad():
            with about_input(node, "t5"):
                C.encode_text(m.model, "", encoder=t5b.encoder)  # the T5 belongs to this model (width check)
            m.model.set_text_encoder(t5b.encoder)
            if sf is not None:
                m.model.set_synchformer(sf.module)
            with about_input(node, "folder"):
                data = prepare_dataset(examples, m.model, plan=CachePlan(sync=sync), cache_dir=cdir, callback=cb)
        keys = {k for it in data.items for k in it.keys}
        reused = sum(1 for k in keys if f"{k}.safetensors" in before)
        counts = {o: origins.count(o) for o in dict.fromkeys(origins)}
        lines = [f"{len(data)} items from {root} for {m.name} ({m.variant}); dataset hash {data.dataset_hash}",
                 "captions: " + ", ".join(f"{n} {o}" for o, n in counts.items())
                 + (f"; {with_video} with video (sync {sync if m.needs_sync else 'n/a'})" if with_video else ""),
                 f"encoder cache: {reused} of {len(keys)} entries reused, {len(keys) - reused} computed in "
                 f"{time.perf_counter() - t0:.1f} s ({_rel(cdir)})"]
        report = "\n".join(lines)
        bundle = DatasetBundle(data, C.model_fingerprint(m.model), m.variant, str(root), report)
        return {"ui": {"text": [report]}, "result": (bundle, report)}


# ============================================================================================
class AudioXTrainLoRA(OutputNameCheck):
    DISPLAY_NAME = "AudioX Train LoRA"
    DESCRIPTION = ("Fine-tunes a LoRA on a prepared dataset with the model's own objective (v or rectified flow), "
                   "the paper's input masking and CFG dropout; AdamW with warm-up, gradient accumulation, "
                   "autocast, gradient checkpointing and optional EMA. Saves models/loras/<output_name>.safetensors "
                   "(with its base model's fingerprint) and resumable checkpoints; Cancel saves the last completed "
                   "step. The loaded model is not changed: the output model applies the LoRA on top of it.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (MODEL, LORA, "IMAGE", "STRING")
    RETURN_NAMES = ("model", "lora", "loss", "report")
    OUTPUT_TOOLTIPS = ("The same model with the trained LoRA applied (for the encoders, fusion and samplers).",
                       "The trained LoRA, e.g. for AudioX LoRA Loader's 'lora' input (another strength, merged).",
                       "The loss curve (raw and smoothed).",
                       "What was trained, the loss, where the files are.")
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model to fine-tune (AudioX Model Loader). It is not changed."}),
                "dataset": (DATASET, {"tooltip": "Items prepared for this model (AudioX Dataset)."}),
                "output_name": ("STRING", {"default": "audiox_lora",
                                           "tooltip": "File name in models/loras (without .safetensors; sub-folders "
                                                      "with '/'). An existing file of that name is replaced."}),
                "steps": ("INT", {"default": 1000, "min": 1, "max": 1_000_000, "step": 1,
                                  "tooltip": "Optimizer steps in total (a resumed run continues up to this)."}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-7,
                                            "tooltip": "AdamW learning rate (1e-4 is a good start for LoRAs)."}),
                "rank": ("INT", {"default": 16, "min": 1, "max": 512, "step": 1,
                                 "tooltip": "LoRA rank r: capacity of each adapter (4–64 is typical)."}),
                "alpha": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4096.0, "step": 0.5,
                                    "tooltip": "LoRA alpha; the update is scaled by alpha / rank. 0 = rank "
                                               "(scale 1)."}),
                "dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.9, "step": 0.01,
                                      "tooltip": "Dropout on the adapters' input during training."}),
                "targets": (TARGETS, {"default": "all",
                                      "tooltip": "Which projections get adapters: attention (q/k/v/out), "
                                                 "feed-forward, or all (+ the MMDiT's modulation)."}),
                "include_maf": ("BOOLEAN", {"default": False,
                                            "tooltip": "Also put adapters on the MAF fusion block (MAF models)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "step": 1,
                                       "tooltip": "Items per micro-batch (each a random crop of one window)."}),
                "grad_accum": ("INT", {"default": 1, "min": 1, "max": 256, "step": 1,
                                       "tooltip": "Micro-batches per optimizer step (effective batch = batch_size "
                                                  "× grad_accum)."}),
                "warmup_steps": ("INT", {"default": 0, "min": 0, "max": 100_000, "step": 1,
                                         "tooltip": "Linear learning-rate warm-up over this many steps."}),
                "precision": (PRECISIONS, {"default": "auto", "tooltip": PRECISION_TOOLTIP}),
                "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                                       "tooltip": "Recompute activations in the backward pass: "
                                                                  "much less memory, ~30% slower."}),
                "ema": ("BOOLEAN", {"default": False,
                                    "tooltip": "Keep an exponential moving average of the LoRA weights and save "
                                               "that (smoother results for long runs)."}),
                "mask_video": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05,
                                         "tooltip": "Probability of hiding an item's video (paper: 0.6)."}),
                "mask_text": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.05,
                                        "tooltip": "Probability of hiding an item's caption (paper: 0.2)."}),
                "mask_audio": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05,
                                         "tooltip": "Probability of hiding an item's audio prompt (paper: 0.6)."}),
                "cfg_dropout": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Probability of training an item unconditionally (all-zero "
                                                     "context, what CFG's unconditional branch sees; official "
                                                     "0.1)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": False,
                                 "tooltip": "Seed of the adapter init, item order, crops, noise and masking: the same "
                                            "seed gives the same LoRA."}),
                "resume": ("BOOLEAN", {"default": True,
                                       "tooltip": "On: continue from the newest checkpoint of this output_name (after "
                                                  "Cancel, or to train further by raising steps). Off: start over."}),
                "save_every": ("INT", {"default": 250, "min": 0, "max": 1_000_000, "step": 1,
                                       "tooltip": "Write a resumable checkpoint every this many steps (0: only at the "
                                                  "end and on Cancel)."}),
            },
            "optional": {
                "preview_every": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1,
                                          "tooltip": "Every this many steps, generate one short clip with the LoRA "
                                                     "so far (the first item's conditions, 8 steps, seed 0) and "
                                                     "play it in the node's live view. 0: off."}),
            },
            "hidden": dict(HIDDEN),
        }

    @node_function
    def train(self, model, dataset, output_name="audiox_lora", steps=1000, learning_rate=1e-4, rank=16, alpha=0.0,
              dropout=0.0, targets="all", include_maf=False, batch_size=1, grad_accum=1, warmup_steps=0,
              precision="auto", gradient_checkpointing=True, ema=False, mask_video=0.6, mask_text=0.2,
              mask_audio=0.6, cfg_dropout=0.1, seed=0, resume=True, save_every=250, preview_every=0,
              unique_id=None):
        from ..audiox_core.training import Masking, TrainConfig, Trainer, load_lora
        node = self.DISPLAY_NAME
        self._check_inputs(output_name=output_name, learning_rate=learning_rate)
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        check_plain_model(node, m)
        ds = check_dataset(node, m, dataset)
        name = output_name_ok(node, output_name)
        if targets not in TARGETS:
            raise node_error(node, "targets", f"must be one of {TARGETS}, got {targets!r}")
        if include_maf and m.model.maf_block is None:
            raise node_error(node, "include_maf", f"is on but {m.variant} has no MAF block")
        with about_input(node, "output_name"):
            run_dir = state_dir("lora", name)
        dst = output_file(node, "loras", name)
        device = cc.get_torch_device()
        prec = resolve_precision(precision, device)
        with about_input(node, "mask_video"):
            masking = Masking(float(mask_video), float(mask_text), float(mask_audio), float(cfg_dropout))
        cfg = TrainConfig(steps=int(steps), batch_size=int(batch_size), grad_accum=int(grad_accum),
                          lr=float(learning_rate), warmup_steps=int(warmup_steps), precision=prec,
                          gradient_checkpointing=bool(gradient_checkpointing), ema=bool(ema), train=("lora",),
                          lora_rank=int(rank), lora_alpha=float(alpha) if float(alpha) > 0 else None,
                          lora_dropout=float(dropout), lora_targets=targets, lora_include_maf=bool(include_maf),
                          masking=masking, seed=int(seed) % (2 ** 62), save_every=int(save_every),
                          name=Path(name).name)
        def release(trainer):
            if trainer.lora is not None and trainer.lora.attached:
                trainer.lora.detach()

        trainer, start, seconds = run_training(
            node, m, lambda: Trainer(m.model, ds.data, cfg, out_dir=run_dir), release, run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=lambda t: TrainProgress(unique_id, "LoRA", t.history,
                                             checkpoint_dir=lambda: t.checkpoint_dir,
                                             preview_every=int(preview_every),
                                             preview=lambda step: lora_preview(t, step)))
        with about_input(node, "output_name"):
            lora = load_lora(dst, m.model, attach=False, device=cc.unet_offload_device())
        history = list(trainer.history)
        report = "\n".join([
            f"LoRA '{name}': rank {lora.rank}, alpha {lora.alpha:g}, targets {targets}"
            + (" + MAF" if include_maf else "") + f" ({len(lora.paths)} modules, {lora.num_parameters():,} "
            f"parameters) on {m.name} ({m.variant})",
            (f"steps {start + 1}–{trainer.step} of {cfg.steps}" if trainer.step > start else
             f"already trained to step {trainer.step}") + f" on {len(ds.data)} items (batch {cfg.batch_size} × "
            f"{cfg.grad_accum}), {prec}, lr {cfg.lr:g}, seed {seed}; {seconds:.1f} s"
            + (f", resumed from step {start}" if start else ""),
            loss_summary(history),
            f"saved {_rel(dst)}; resumable state in {_rel(run_dir)}"])
        value = LoRAValue(lora, str(dst), name, report.split("\n")[0])
        out_model = m.with_loras(((lora, 1.0),), False, f"{m.name} + {name}")
        image = loss_image(history, [("loss", f"LoRA '{name}' loss")])
        return {"ui": {"text": [report]}, "result": (out_model, value, image, report)}


# ============================================================================================
class AudioXLoRALoader:
    DISPLAY_NAME = "AudioX LoRA Loader"
    DESCRIPTION = ("Applies a LoRA (a file of models/loras, or one trained in the graph) to an AudioX model with a "
                   "strength. Chain several loaders for several LoRAs. The loaded model itself is not changed: the "
                   "adapters are attached only while a node runs the output model (merge: baked into the weights "
                   "for that time and restored exactly). A LoRA made for another model is refused.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (MODEL, "STRING")
    RETURN_NAMES = ("model", "info")
    OUTPUT_TOOLTIPS = ("The model with the LoRA(s) applied.", "Which LoRAs are applied, at which strengths.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        files = [f for f in cc.get_filename_list("loras") if f.lower().endswith(".safetensors")]
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The AudioX model (AudioX Model Loader or another LoRA loader)."}),
                "lora_name": (files + [NONE], {"tooltip": "LoRA file in models/loras (AudioX Train LoRA saves "
                                                          "there). 'none': use the 'lora' input, or pass the model "
                                                          "through."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.01,
                                       "tooltip": "Multiplier of the LoRA's update (0 = the base model exactly, "
                                                  "1 = as trained)."}),
                "merge": ("BOOLEAN", {"default": False,
                                      "tooltip": "Bake all LoRAs of the chain into the weights while the model runs "
                                                 "(slightly faster sampling; the weights are restored bit-exactly "
                                                 "afterwards). The last loader of a chain decides."}),
                "allow_other_weights": ("BOOLEAN", {"default": False,
                                                    "tooltip": "Apply a LoRA trained on other weights of the same "
                                                               "architecture (e.g. a LoRA of the Turbo base on the "
                                                               "Turbo student). Off: refused with an error."}),
            },
            "optional": {
                "lora": (LORA, {"tooltip": "A LoRA from AudioX Train LoRA; used instead of lora_name."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, lora_name=NONE, **_):
        """Re-read a LoRA file that was re-trained under the same name."""
        if lora_name == NONE:
            return NONE
        try:
            return _file_stamp(Path(cc.get_full_path("loras", lora_name)))
        except AudioXError:
            return lora_name

    @node_function
    def apply(self, model, lora_name=NONE, strength=1.0, merge=False, allow_other_weights=False, lora=None):
        from ..audiox_core.training import load_lora
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        from ..audiox_core.acceleration import has_fp8_weights
        if has_fp8_weights(m.model):
            raise node_error(node, "model", "is loaded with fp8_e4m3fn weights; LoRAs need the model in fp32, fp16 "
                             "or bf16 (AudioX Model Loader dtype)")
        if lora is not None:
            value = expect(lora, LoRAValue, node, "lora", "an AUDIOX_LORA from AudioX Train LoRA")
            obj, label, where = value.lora, value.name, "lora"
            self._check(node, where, label, obj, m, allow_other_weights)
        elif lora_name == NONE:
            info = "no LoRA chosen: the model passes through" + self._stack(m.loras, m.merge_loras)
            return {"ui": {"text": [info]}, "result": (m, info)}
        else:
            where, label = "lora_name", lora_name
            with about_input(node, "lora_name"):
                path = Path(cc.get_full_path("loras", lora_name))
                obj = load_lora(path, None, attach=False, device=cc.unet_offload_device())
            self._check(node, where, label, obj, m, allow_other_weights)
        stack = tuple(m.loras) + ((obj, float(strength)),)
        out = m.with_loras(stack, bool(merge), f"{m.name} + {Path(label).stem}")
        meta = obj.meta
        info = (f"{label}: rank {obj.rank}, {len(obj.paths)} modules, trained {meta.get('steps', '?')} steps "
                f"for {meta.get('variant', '?')}; strength {float(strength):g}"
                + (f"\nPARTIAL: its training was stopped at {meta['partial']} (not finished)"
                   if meta.get("partial") else "") + self._stack(stack, merge))
        return {"ui": {"text": [info]}, "result": (out, info)}

    @staticmethod
    def _check(node: str, where: str, label: str, obj, m: ModelBundle, allow_other: bool) -> None:
        try:
            obj.check_compatible(m.model, allow_other_base=True)
        except CheckpointError as e:
            raise node_error(node, where, f"'{label}' does not belong to this model ({m.name}, {m.variant}): {e}") \
                from e
        if not allow_other:
            try:
                obj.check_compatible(m.model, allow_other_base=False)
            except CheckpointError as e:
                raise node_error(node, where, f"'{label}' was trained on other weights of this architecture "
                                 f"(base {obj.meta.get('base_fingerprint', '?')}), not on {m.name}; turn on "
                                 "'allow_other_weights' to apply it anyway") from e

    @staticmethod
    def _stack(stack, merge: bool) -> str:
        if not stack:
            return ""
        names = [Path(lo.meta.get("file", "") or "in-graph").stem + f" × {s:g}" for lo, s in stack]
        return f"\napplied: {', '.join(names)}" + ("; merged into the weights while running" if merge else "")


# ============================================================================================
class AudioXDistill(OutputNameCheck):
    DISPLAY_NAME = "AudioX Distill"
    DESCRIPTION = ("Distils a rectified-flow teacher (the AudioX-Turbo base model) into a few-step student with the "
                   "official AudioX-Turbo recipe: DMD loss with the teacher's CFG, a 'fake' critic and a "
                   "diffusion-discriminator GAN on the teacher's first blocks. Student and fake are LoRAs on the "
                   "shared teacher (lora, fits a consumer GPU) or full copies (full). Saves "
                   "models/audiox/<output_name>.safetensors, which AudioX Turbo Sampler runs. The teacher is not "
                   "changed.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (MODEL, "IMAGE", "STRING")
    RETURN_NAMES = ("student", "loss", "report")
    OUTPUT_TOOLTIPS = ("The distilled student (role 'student'), for AudioX Turbo Sampler. Encode its conditions "
                       "with the student itself.",
                       "Loss curves: the student's DMD loss and the fake critic's flow-matching loss.",
                       "What was trained, the losses, where the files are.")
    FUNCTION = "distill"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The teacher: a rectified-flow model such as the AudioX-Turbo base "
                                             "(v-objective AudioX / MAF models cannot be distilled this way). It is "
                                             "not changed."}),
                "dataset": (DATASET, {"tooltip": "Items prepared for the teacher (AudioX Dataset)."}),
                "output_name": ("STRING", {"default": "audiox_turbo_student",
                                           "tooltip": "File name of the student in models/audiox (without "
                                                      ".safetensors). An existing file of that name is replaced."}),
                "steps": ("INT", {"default": 2000, "min": 1, "max": 1_000_000, "step": 1,
                                  "tooltip": "Updates in total (5 student updates per fake + discriminator update, "
                                             "as the official)."}),
                "mode": (["lora", "full"], {"default": "lora",
                                            "tooltip": "lora: student and fake are LoRAs on the shared, frozen "
                                                       "teacher (one model in memory). full: trainable copies of the "
                                                       "backbone and MAF (3× the memory)."}),
                "lora_rank": ("INT", {"default": 64, "min": 1, "max": 512, "step": 1,
                                      "tooltip": "Rank of the student / fake LoRAs (mode lora)."}),
                "learning_rate": ("FLOAT", {"default": 1e-5, "min": 1e-8, "max": 1.0, "step": 1e-8,
                                            "tooltip": "AdamW learning rate (official 1e-5 with InverseLR; LoRAs "
                                                       "often like 1e-4)."}),
                "guidance": ("FLOAT", {"default": 6.0, "min": 1.0, "max": 20.0, "step": 0.1,
                                       "tooltip": "The teacher's CFG scale inside the DMD loss (official 6)."}),
                "student_steps": ("INT", {"default": 4, "min": 1, "max": 8, "step": 1,
                                          "tooltip": "Sampling steps the student is trained for (official 4; use the "
                                                     "same in AudioX Turbo Sampler)."}),
                "gan": ("BOOLEAN", {"default": True,
                                    "tooltip": "Add the diffusion-discriminator GAN loss (official)."}),
                "precision": (PRECISIONS, {"default": "auto", "tooltip": PRECISION_TOOLTIP}),
                "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                                       "tooltip": "Recompute activations in the backward pass (less "
                                                                  "memory, slower)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": False,
                                 "tooltip": "Seed of every random draw: the same seed gives the same student."}),
                "resume": ("BOOLEAN", {"default": True,
                                       "tooltip": "On: continue from the newest checkpoint of this output_name. Off: "
                                                  "start over."}),
                "save_every": ("INT", {"default": 250, "min": 0, "max": 1_000_000, "step": 1,
                                       "tooltip": "Write a resumable checkpoint every this many steps (0: only at the "
                                                  "end and on Cancel)."}),
            },
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, output_name=None, learning_rate=None, guidance=None):
        return cls._validate(output_name=output_name, learning_rate=learning_rate, guidance=guidance)

    @node_function
    def distill(self, model, dataset, output_name="audiox_turbo_student", steps=2000, mode="lora", lora_rank=64,
                learning_rate=1e-5, guidance=6.0, student_steps=4, gan=True, precision="auto",
                gradient_checkpointing=True, seed=0, resume=True, save_every=250, unique_id=None):
        from ..audiox_core.checkpoint import load_model
        from ..audiox_core.training import DistillConfig, Distiller
        node = self.DISPLAY_NAME
        self._check_inputs(output_name=output_name, learning_rate=learning_rate, guidance=guidance)
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        if m.model.objective != "rectified_flow":
            raise node_error(node, "model", f"is {m.variant} with the {m.model.objective!r} objective: DMD "
                             "distillation (the AudioX-Turbo recipe) needs a rectified-flow teacher such as the "
                             "AudioX-Turbo base model")
        check_plain_model(node, m)
        ds = check_dataset(node, m, dataset)
        name = output_name_ok(node, output_name)
        if mode not in ("lora", "full"):
            raise node_error(node, "mode", f"must be 'lora' or 'full', got {mode!r}")
        notes = []
        if m.is_turbo_student:
            notes.append("note: the teacher is itself a distilled student; distilling it again is unusual")
        with about_input(node, "output_name"):
            run_dir = state_dir("distill", name)
        dst = output_file(node, "audiox", name)
        prec = resolve_precision(precision, cc.get_torch_device())
        n = int(student_steps)
        with about_input(node, "steps"):
            cfg = DistillConfig(steps=int(steps), lr=float(learning_rate), student_steps=n,
                                timestep_probs=tuple([1.0 / n] * n), guidance=float(guidance), gan=bool(gan),
                                parameterization=mode, lora_rank=int(lora_rank), precision=prec,
                                gradient_checkpointing=bool(gradient_checkpointing), seed=int(seed) % (2 ** 62),
                                save_every=int(save_every), name=Path(name).name)
        wdtype = next(m.model.backbone.parameters()).dtype
        d, start, seconds = run_training(
            node, m, lambda: Distiller(m.model, ds.data, cfg, out_dir=run_dir), lambda d: d.close(), run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=lambda d: TrainProgress(unique_id, "distill", d.history, keys=("loss", "loss_dmd", "loss_fake"),
                                             checkpoint_dir=lambda: d.checkpoint_dir))
        trained = d.num_trainable()  # a fixed parameter list: the same before and after the run
        with about_input(node, "output_name"):
            student = load_model(dst, dtype=wdtype, device=cc.unet_offload_device())
        parts = {"backbone": cc.wrap_model(student.model), "conditioner": cc.wrap_model(student.conditioner),
                 "vae": cc.wrap_model(student.pretransform)}
        if student.maf_block is not None:
            parts["maf"] = cc.wrap_model(student.maf_block)
        bundle = ModelBundle(student, parts, m.offload_after, name=dst.name)
        history = list(d.history)
        report = "\n".join([
            f"student '{name}' of {m.name} ({m.variant}): {mode} ({trained:,} trained parameters"
            + (f", LoRA rank {cfg.lora_rank}" if mode == "lora" else "") + f"), {n} student steps, guidance "
            f"{cfg.guidance:g}, GAN {'on' if cfg.gan else 'off'}",
            (f"steps {start + 1}–{d.step} of {cfg.steps}" if d.step > start else f"already trained to step {d.step}")
            + f" on {len(ds.data)} items, {prec}, lr {cfg.lr:g}, seed {seed}; {seconds:.1f} s"
            + (f", resumed from step {start}" if start else ""),
            loss_summary(history, "loss_dmd"), loss_summary(history, "loss_fake"),
            f"saved {_rel(dst)} (role student: run it with AudioX Turbo Sampler, {n} steps); resumable state in "
            f"{_rel(run_dir)}", *notes])
        image = loss_image(history, [("loss_dmd", f"'{name}' student DMD loss"),
                                     ("loss_fake", "fake critic flow-matching loss")])
        return {"ui": {"text": [report]}, "result": (bundle, image, report)}


NODE_CLASS_MAPPINGS = {
    "AudioXDataset": AudioXDataset,
    "AudioXTrainLoRA": AudioXTrainLoRA,
    "AudioXLoRALoader": AudioXLoRALoader,
    "AudioXDistill": AudioXDistill,
}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
