"""One training run around a Trainer / Distiller: the examples of a folder, the model made ready
for autograd and restored afterwards, resume or start over, and the result published.

What the training nodes (and any other caller) share:

* :func:`collect_examples` — the :class:`~.data.Example` list of a dataset folder, captions from
  sidecar ``.txt`` files, a manifest or the file names (``CAPTION_SOURCES``), and a policy for files
  without one (``MISSING_POLICIES``);
* :func:`autograd_ready`, :func:`preserved_state`, :func:`training_context` — the shared-model
  rule: training never changes what the model computes for anyone else;
* :func:`start_or_resume`, :func:`publish`, :func:`train_and_publish` — a run continues from its
  newest checkpoint (or clears them), and its result file is copied atomically to its final name;
  after Cancel the last completed step goes to ``<name>.partial.safetensors`` marked "partial,
  step k of n" (never under the final name).

Shared-model rule.  A front end such as ComfyUI caches the model object a loader returned, so other
nodes use it before and after a run.  Training never changes what that model computes: LoRA
adapters live outside its weights (forward hooks, attached only while training and detached in
``finally``); module modes, ``requires_grad`` flags and gradient checkpointing are restored.  The
one in-place change: tensors made under ``torch.inference_mode`` are swapped for identical normal
tensors (autograd cannot save inference tensors), which leaves every output bit-identical.  For a
fixed seed a run is deterministic (every random draw is seeded per step; the global RNG is
restored after).

Input errors are :class:`~audiox_core.errors.FieldError` naming the setting (``captions``,
``missing_captions``, ``manifest``, ``folder``, ``resume``, ``output_name``, ``model``, ``dataset``,
``targets``, ``include_maf``, ``mode``, ``videos``, ``synchformer``).
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..errors import CheckpointError, FieldError, InputError, Interrupted
from ..fileio import resolve_inside
from ..weights import PARTIAL_KEY
from .data import FolderDataset, default_manifest, name_caption, read_manifest

CAPTION_SOURCES = ("auto", "sidecar .txt", "manifest", "file name")
MISSING_POLICIES = ("error", "use file name", "empty caption", "skip file")
PARTIAL_SUFFIX = ".partial.safetensors"


# ----------------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------------
def find_manifest(root: Path, manifest: str, allowed_roots: Sequence) -> Optional[Path]:
    """The manifest file: a name relative to the dataset folder (or an absolute path), which must lie
    inside ``allowed_roots``; else the folder's default manifest (:func:`~.data.default_manifest`)."""
    if str(manifest).strip():
        given = Path(str(manifest).strip())
        return resolve_inside(given if given.is_absolute() else root / given, allowed_roots,
                              what=f"manifest '{manifest}' (a file in the input directory)", must_exist=False)
    return default_manifest(root)


def collect_examples(root: Path, source: str, missing: str, manifest: str, use_videos: bool,
                     allowed_roots: Sequence) -> tuple[list, list]:
    """The examples of folder ``root`` with captions from ``source`` and the ``missing`` policy;
    returns ``(examples, origins)`` (where each caption came from)."""
    if source not in CAPTION_SOURCES:
        raise FieldError("captions", f"must be one of {list(CAPTION_SOURCES)}, got {source!r}")
    if missing not in MISSING_POLICIES:
        raise FieldError("missing_captions", f"must be one of {list(MISSING_POLICIES)}, got {missing!r}")
    where = "manifest" if str(manifest).strip() else "folder"
    try:
        manifest_path = find_manifest(root, manifest, allowed_roots)
        dataset = FolderDataset(root, manifest_path, allowed_roots=allowed_roots)
        listed = ({Path(ex.audio).resolve(): ex for ex in read_manifest(manifest_path, allowed_roots=allowed_roots)}
                  if manifest_path is not None else {})
    except InputError as e:
        raise FieldError(where, str(e)) from e
    if source == "manifest" and manifest_path is None:
        raise FieldError("captions", f"is 'manifest' but {root} has no metadata.jsonl / metadata.csv / "
                         "train_manifest*.jsonl: name the manifest in 'manifest' or choose another source")
    examples, origins, lacking = [], [], []
    for example in dataset.examples:
        origin = _caption_origin(example, source, listed)
        if origin is None:
            lacking.append(Path(example.audio).name)
            origin = _apply_missing_policy(example, missing)
            if origin == "skip":
                continue
        if not use_videos:
            example.video = None
        examples.append(example)
        origins.append(origin or "?")
    if lacking and missing == "error":
        where = "a sidecar .txt" if source == "sidecar .txt" else f"an entry in {manifest_path.name}"
        raise FieldError("missing_captions", f"is 'error' and {len(lacking)} of {len(dataset.examples)} files have "
                         f"no caption ({where}): {', '.join(lacking[:5])}{' …' if len(lacking) > 5 else ''} — add "
                         "them, or choose 'use file name', 'empty caption' or 'skip file'")
    if not examples:
        raise FieldError("missing_captions", f"skipped every file of {root}: none has a caption from '{source}'")
    return examples, origins


def _caption_origin(example, source: str, listed: dict) -> Optional[str]:
    """Set ``example.caption`` from ``source``; where it came from, or None when it has none."""
    audio = Path(example.audio)
    sidecar = audio.with_suffix(".txt")
    entry = listed.get(audio.resolve())
    if source == "auto":
        return "sidecar" if sidecar.is_file() else ("manifest" if entry is not None else "file name")
    if source == "file name":
        example.caption = name_caption(audio.stem)
        return "file name"
    if source == "sidecar .txt":
        return "sidecar" if sidecar.is_file() else None  # FolderDataset already read the .txt
    if entry is not None:
        example.caption = entry.caption
        return "manifest"
    return None


def _apply_missing_policy(example, missing: str) -> Optional[str]:
    """A file without a caption: its caption origin under the policy ("skip": leave it out)."""
    if missing == "use file name":
        example.caption = name_caption(Path(example.audio).stem)
        return "file name"
    if missing == "empty caption":
        example.caption = ""
        return "no caption"
    if missing == "skip file":
        return "skip"
    return None


# ----------------------------------------------------------------------------------------------
# The shared-model rule
# ----------------------------------------------------------------------------------------------
def autograd_ready(*modules: torch.nn.Module) -> int:
    """Swap inference tensors (made by loaders under ``torch.inference_mode``, as ComfyUI runs
    them) for identical normal tensors, and drop lazily built tables (RoPE) that may be inference
    tensors, so autograd can save them for backward.  Values are unchanged; shared tensors stay
    shared.  Returns how many tensors were swapped."""
    from ..models.blocks import TableCache
    done: dict[int, torch.Tensor] = {}
    with torch.inference_mode(False), torch.no_grad():
        for root in modules:
            if root is None:
                continue
            for module in root.modules():
                _swap_inference_tensors(module, done)
                for value in vars(module).values():
                    if isinstance(value, TableCache):
                        value._d.clear()  # rebuilt lazily (and then as normal tensors)
    return len(done)


def _swap_inference_tensors(module: torch.nn.Module, done: dict) -> None:
    for name, param in list(module._parameters.items()):
        if param is not None and param.is_inference():
            if id(param) not in done:
                done[id(param)] = torch.nn.Parameter(param.clone(), requires_grad=param.requires_grad)
            module._parameters[name] = done[id(param)]
    for name, buffer in list(module._buffers.items()):
        if buffer is not None and buffer.is_inference():
            if id(buffer) not in done:
                done[id(buffer)] = buffer.clone()
            module._buffers[name] = done[id(buffer)]


@contextlib.contextmanager
def preserved_state(model):
    """Restore module modes, ``requires_grad`` flags, gradient checkpointing and the attached
    T5 / Synchformer of ``model`` when the block ends (the trainers change them)."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    checkpointing = [(m, m.gradient_checkpointing) for m in model.modules()
                     if isinstance(getattr(m, "gradient_checkpointing", None), bool)]
    attached = (model.__dict__.get("text_encoder"), model.__dict__.get("synchformer"))
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in grads:
            param.requires_grad_(requires_grad)
        for module, enabled in checkpointing:
            module.gradient_checkpointing = enabled
        model.set_text_encoder(attached[0])
        model.set_synchformer(attached[1])


@contextlib.contextmanager
def training_context(device: torch.device):
    """Autograd on (ComfyUI runs nodes under inference mode) and the global RNG restored afterwards
    (the trainers seed it per step)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=devices):
        yield


# ----------------------------------------------------------------------------------------------
# Resume and publish
# ----------------------------------------------------------------------------------------------
def partial_file(dst: Path) -> Path:
    """``<name>.partial.safetensors`` beside ``<name>.safetensors``."""
    return dst.with_name(dst.name[: -len(".safetensors")] + PARTIAL_SUFFIX)


def publish(src: Path, dst: Path, *, partial: Optional[str] = None) -> Path:
    """Copy ``src`` to ``dst`` atomically (temporary file in the same folder + rename; removed on any
    failure, which raises :class:`SaveError` naming ``dst``).  ``partial`` ("step k of n"): the copy
    is marked unfinished in its metadata (the loaders show it)."""
    from ..weights import copy_safetensors
    copy_safetensors(src, dst, {PARTIAL_KEY: partial} if partial else None, drop=() if partial else (PARTIAL_KEY,))
    return dst


def clear_checkpoints(folder: Path) -> int:
    """Delete the ``step_*.safetensors`` checkpoints of a run (``resume`` off: start over)."""
    removed = 0
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        for path in checkpoints.glob("step_*.safetensors"):
            path.unlink()
            removed += 1
    return removed


def start_or_resume(runner, run_dir: Path, resume: bool) -> int:
    """The step a run starts from: 0 after clearing ``run_dir``'s checkpoints (``resume`` off), else
    the newest checkpoint's step (one of another setup is refused, naming ``resume``)."""
    if not resume:
        clear_checkpoints(run_dir)
        return 0
    try:
        runner.resume()
    except CheckpointError as e:
        raise FieldError("resume", f"the saved state in {run_dir} belongs to another setup ({e}); turn 'resume' "
                         "off to start over, or choose another output_name") from e
    return runner.step


def train_and_publish(model, make: Callable[[], object], *, run_dir: Path, resume: bool, src: Path, dst: Path,
                      progress: Callable[[object], Callable]):
    """Build a Trainer / Distiller with ``make()`` and run it under the shared-model rule (``model``
    autograd-ready, its state restored afterwards, the global RNG forked), from
    :func:`start_or_resume`; its result file ``src`` is published to ``dst`` when a step was trained,
    also on Cancel (as the partial file; the :class:`Interrupted` then propagates);
    ``runner.close()`` (releasing its adapters from the shared model) runs in every case.  Returns
    ``(runner, start step)``.  The caller puts the model on its devices and holds the output's
    writer lock."""
    autograd_ready(model)
    with preserved_state(model), training_context(next(model.backbone.parameters()).device):
        runner = make()
        try:
            start = start_or_resume(runner, run_dir, resume)
            try:
                runner.run(callback=progress(runner))
            except Interrupted:
                _publish_partial(runner, src, dst)
                raise
            _publish_result(runner, src, dst)
        finally:
            runner.close()
    return runner, start


def _publish_result(runner, src: Path, dst: Path) -> None:
    """The finished result goes to ``dst``; a partial file of an earlier Cancel is removed."""
    if runner.step > 0 and src.is_file():
        publish(src, dst)
        with contextlib.suppress(FileNotFoundError):
            partial_file(dst).unlink()


def _publish_partial(runner, src: Path, dst: Path) -> None:
    """After Cancel: the result of the last completed step is published beside ``dst`` as
    ``<name>.partial.safetensors`` marked "partial, step k of n" (``dst`` itself, e.g. a finished
    result of an earlier run, is left alone)."""
    unfinished = partial_file(src)  # the runner exported its unfinished result there (TrainingLoop.run)
    if runner.step > 0 and unfinished.is_file():
        publish(unfinished, partial_file(dst), partial=f"step {runner.step} of {runner.config.steps}")


# ----------------------------------------------------------------------------------------------
# Run setup: names, precision, the inputs a run is refused for
# ----------------------------------------------------------------------------------------------
_OUTPUT_NAME = re.compile(r"[A-Za-z0-9_.\- ]+(/[A-Za-z0-9_.\- ]+)*")
LORA_TARGETS = ("all", "attention", "feed-forward")
DISTILL_MODES = ("lora", "full")
#: Update schedules of a distillation, by name: student updates per cycle (``update_ratio``),
#: fake + discriminator updates per cycle (``fake_updates``) and the GAN term's weight.
#: ``official``: the AudioX-Turbo trainer.  ``critic-heavy``: the demo recipe's (docs/TRAINING.md,
#: "Why the demo's Turbo student falls behind its teacher": with 5 : 1 the fake cannot track the
#: student of a small model in a short run, and a GAN at weight 1 is too weak to keep its events).
DISTILL_SCHEDULES = {
    "official": {"update_ratio": 5, "fake_updates": 1, "gan_weight": 1.0},
    "critic-heavy": {"update_ratio": 1, "fake_updates": 5, "gan_weight": 10.0},
}


def check_output_name(value) -> str:
    """A safe relative file name (sub-folders allowed, no ``..``), without ``.safetensors``;
    anything else raises :class:`FieldError` naming ``output_name``."""
    name = str(value).strip()
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    if not name or not _OUTPUT_NAME.fullmatch(name) or any(part.strip() in ("", ".", "..") for part in name.split("/")):
        raise FieldError("output_name", f"must be a file name (letters, digits, '_', '-', '.', spaces; "
                         f"sub-folders with '/'), got {value!r}")
    return name


def autocast_precision(choice: str, device: torch.device) -> str:
    """The autocast precision of a run: ``choice``, or for ``auto`` bf16 on a GPU that supports it
    (else fp16) and fp32 elsewhere."""
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def check_trainable(model, applied_loras: int, dataset_fingerprint: str, dataset_variant: str) -> None:
    """A run trains the plain loaded model on a dataset prepared for it; else :class:`FieldError`
    naming ``model`` or ``dataset``."""
    from ..conditions import model_fingerprint
    if applied_loras:
        raise FieldError("model", f"already has {applied_loras} LoRA(s) applied (AudioX LoRA Loader); connect the "
                         "model straight from AudioX Model Loader")
    if dataset_fingerprint != model_fingerprint(model):
        raise FieldError("dataset", f"was prepared with another model ({dataset_variant}): connect the model you "
                         "train to the 'model' input of AudioX Dataset as well")


def check_lora_targets(model, variant: str, targets: str, include_maf: bool) -> None:
    """``targets`` is a preset of :data:`LORA_TARGETS`; ``include_maf`` needs a MAF block."""
    if targets not in LORA_TARGETS:
        raise FieldError("targets", f"must be one of {list(LORA_TARGETS)}, got {targets!r}")
    if include_maf and model.maf_block is None:
        raise FieldError("include_maf", f"is on but {variant} has no MAF block")


def check_teacher(model, variant: str, mode: str) -> None:
    """A distillation teacher has the rectified-flow objective; ``mode`` is one of :data:`DISTILL_MODES`."""
    if model.objective != "rectified_flow":
        raise FieldError("model", f"is {variant} with the {model.objective!r} objective: DMD distillation (the "
                         "AudioX-Turbo recipe) needs a rectified-flow teacher such as the AudioX-Turbo base model")
    if mode not in DISTILL_MODES:
        raise FieldError("mode", f"must be 'lora' or 'full', got {mode!r}")


def lora_config(name: str, *, steps: int, learning_rate: float, rank: int, alpha: float, dropout: float, targets: str,
                include_maf: bool, batch_size: int, grad_accum: int, warmup_steps: int, precision: str,
                gradient_checkpointing: bool, ema: bool, mask_video: float, mask_text: float, mask_audio: float,
                cfg_dropout: float, seed: int, save_every: int):
    """The :class:`~.trainer.TrainConfig` of a LoRA run from a front end's settings: ``alpha`` 0
    means alpha = rank, the seed is folded into 62 bits, the run's files are named after the last
    part of ``name``; unusable masking probabilities raise :class:`FieldError` naming ``mask_video``."""
    from .conditions import Masking
    from .trainer import TrainConfig
    try:
        masking = Masking(float(mask_video), float(mask_text), float(mask_audio), float(cfg_dropout))
    except InputError as e:
        raise FieldError("mask_video", str(e)) from e
    return TrainConfig(steps=int(steps), batch_size=int(batch_size), grad_accum=int(grad_accum),
                       lr=float(learning_rate), warmup_steps=int(warmup_steps), precision=precision,
                       gradient_checkpointing=bool(gradient_checkpointing), ema=bool(ema), train=("lora",),
                       lora_rank=int(rank), lora_alpha=float(alpha) if float(alpha) > 0 else None,
                       lora_dropout=float(dropout), lora_targets=targets, lora_include_maf=bool(include_maf),
                       masking=masking, seed=int(seed) % (2 ** 62), save_every=int(save_every), name=Path(name).name)


def distill_config(name: str, *, steps: int, learning_rate: float, student_steps: int, guidance: float, gan: bool,
                   mode: str, lora_rank: int, precision: str, gradient_checkpointing: bool, seed: int, save_every: int,
                   schedule: str = "official"):
    """The :class:`~.distill.DistillConfig` of a distillation from a front end's settings: each of
    the ``student_steps`` timesteps drawn equally often (official), the update schedule of
    :data:`DISTILL_SCHEDULES` named ``schedule`` (else :class:`FieldError` naming it), the seed
    folded into 62 bits, the run's files named after the last part of ``name``."""
    from .distill import DistillConfig
    if schedule not in DISTILL_SCHEDULES:
        raise FieldError("schedule", f"must be one of {', '.join(DISTILL_SCHEDULES)}, got {schedule!r}")
    n = int(student_steps)
    return DistillConfig(steps=int(steps), lr=float(learning_rate), student_steps=n, **DISTILL_SCHEDULES[schedule],
                         timestep_probs=tuple([1.0 / n] * n), guidance=float(guidance), gan=bool(gan),
                         parameterization=mode, lora_rank=int(lora_rank),
                         precision=precision, gradient_checkpointing=bool(gradient_checkpointing),
                         seed=int(seed) % (2 ** 62), save_every=int(save_every), name=Path(name).name)


# ----------------------------------------------------------------------------------------------
# Dataset folders
# ----------------------------------------------------------------------------------------------
def dataset_folder(folder: str, manifest: str, allowed_roots: Sequence) -> Path:
    """The dataset folder ``folder`` (inside ``allowed_roots``, holding audio files) with its
    ``manifest`` (if named) checked; else :class:`FieldError` naming ``folder`` or ``manifest``."""
    from .data import AUDIO_EXTS
    if not str(folder).strip():
        raise FieldError("folder", "is empty: give a folder of audio files")
    try:
        root = resolve_inside(folder, allowed_roots, what=f"'{folder}' (a folder in ComfyUI's input directory)",
                              must_exist=False)
    except InputError as e:
        raise FieldError("folder", str(e)) from e
    if not root.is_dir():
        raise FieldError("folder", f"'{folder}' is not a folder (looked for {root})")
    if not any(p.is_file() and p.suffix.lower() in AUDIO_EXTS for p in root.rglob("*")):
        raise FieldError("folder", f"'{folder}' has no audio files ({' '.join(AUDIO_EXTS)})")
    if str(manifest or "").strip():
        try:
            found = find_manifest(root, manifest, allowed_roots)
        except InputError as e:
            raise FieldError("manifest", str(e)) from e
        if not found.is_file():
            raise FieldError("manifest", f"'{manifest}' not found (looked for {found})")
    return root


def file_stamp(path: Path) -> str:
    """``"<path>:<size>:<mtime ns>"`` (``"<path>:missing"``): changes when the file is rewritten."""
    try:
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{path}:missing"


def folder_stamp(folder: str, manifest: str, allowed_roots: Sequence) -> str:
    """A hash of the names, sizes and times of every file under ``folder`` (and of ``manifest``):
    changes when a file of the dataset does.  A folder outside ``allowed_roots``: ``refused:<folder>``."""
    import hashlib
    try:
        root = resolve_inside(folder, allowed_roots, what=f"'{folder}' (a folder in ComfyUI's input directory)",
                              must_exist=False)
    except InputError:
        return f"refused:{folder}"
    digest = hashlib.sha256()
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                digest.update(file_stamp(path).encode())
    digest.update(str(manifest).encode())
    return digest.hexdigest()


def check_video_conditions(model, variant: str, with_video: int, needs_sync: bool, sync: str,
                           synchformer_connected: bool) -> bool:
    """Whether the videos need the Synchformer (sync 'synchformer' on a sync-conditioned model);
    :class:`FieldError` when the model has no video condition (``videos``) or the Synchformer is
    needed but not given (``synchformer``)."""
    if with_video and model.video_conditioner is None:
        raise FieldError("videos", f"{with_video} file(s) have a video but {variant} has no video condition: set "
                         "'videos' to 'ignore'")
    needed = bool(with_video and needs_sync and sync == "synchformer")
    if needed and not synchformer_connected:
        raise FieldError("synchformer", f"is not connected: {variant} conditions videos on Synchformer sync features "
                         "— connect AudioX Synchformer Loader, or set 'sync' to 'zeros'")
    return needed
