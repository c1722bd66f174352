"""The one place where the node pack touches ComfyUI.

Every ``comfy``, ``comfy.utils``, ``comfy.model_management``, ``comfy.model_patcher``,
``folder_paths`` and ``comfy_api`` import of the pack lives here, and each is made lazily, at the
first call that needs it.  When ComfyUI is not importable (unit tests, the CLI, a notebook) every
helper has a plain fallback:

* devices, model folders, directories, model handles and the interrupt flag:
  :mod:`audiox_core.standalone` (``$AUDIOX_DEVICE``, ``$AUDIOX_MODELS_DIR`` or ``./models`` with
  ComfyUI's folder names, :class:`LocalModelHandle`);
* progress: a :class:`ProgressBar` that draws nothing but still checks the local interrupt flag,
  raising :class:`audiox_core.errors.Interrupted`;
* VIDEO values: :mod:`audiox_core.media.video_value` (``VideoFromFile`` / ``VideoFromComponents``,
  the methods of ComfyUI's ``VideoInput``).

"ComfyUI is present" means: ``import comfy.model_management`` (etc.) succeeds.  A missing module
selects the fallback; any *other* import error (a broken ComfyUI install) propagates, so a broken
environment is never mistaken for "no ComfyUI".  Detection is per call and cheap (``sys.modules``
first), so tests can install and remove stub modules freely; :func:`reset_import_cache` forgets
remembered misses.

Model memory management: loader nodes wrap each network with :func:`wrap_model` (a real
``ModelPatcher`` inside ComfyUI, so its memory manager sees our weights) and nodes run them inside
:func:`models_on_device` (``load_models_gpu(..., force_full_load=True)``: our plain ``nn`` layers
cannot be partially loaded).  docs/MODEL_MEMORY.md gives the reasons and the LoRA / ``ModuleHolder``
details.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

from ..audiox_core import standalone
from ..audiox_core.errors import InputError, Interrupted
from ..audiox_core.standalone import LocalModelHandle, module_bytes
from ..audiox_core.media.video_value import VideoComponents, VideoFromComponents, VideoFromFile

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict], Any]

# --------------------------------------------------------------------------------------------
# lazy, fallible imports
# --------------------------------------------------------------------------------------------
_MISSING: set[str] = set()


def _optional(name: str):
    """The module ``name`` if it can be imported, else None (only for a *missing* module)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    if name in _MISSING:
        return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            _MISSING.add(name)
            log.debug("ComfyUI module %s is not available; using the local fallback", name)
            return None
        raise


def reset_import_cache() -> None:
    """Forget which ComfyUI modules were found missing (for tests that install stubs)."""
    _MISSING.clear()


def _mm():
    return _optional("comfy.model_management")


def _utils():
    return _optional("comfy.utils")


def _folder_paths():
    return _optional("folder_paths")


def comfy_available() -> bool:
    """True when ComfyUI's ``comfy.model_management`` can be imported."""
    return _mm() is not None


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def get_torch_device() -> torch.device:
    """The compute device: ComfyUI's choice, else ``cpu`` (or ``$AUDIOX_DEVICE``)."""
    mm = _mm()
    return mm.get_torch_device() if mm is not None else standalone.compute_device()


def unet_offload_device() -> torch.device:
    """Where idle model weights live: ComfyUI's offload device, else the CPU."""
    mm = _mm()
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (AUDIO waveforms, IMAGE frames) should live: CPU unless --gpu-only."""
    mm = _mm()
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def soft_empty_cache() -> None:
    """Release cached accelerator memory (ComfyUI's helper, else ``torch.cuda.empty_cache``)."""
    mm = _mm()
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# interruption and progress
# --------------------------------------------------------------------------------------------
def interrupt_processing(value: bool = True) -> None:
    """Request (or clear) an interrupt: ComfyUI's global flag, else a local one."""
    mm = _mm()
    if mm is not None:
        mm.interrupt_current_processing(value)
    else:
        standalone.request_interrupt(value)


def throw_exception_if_processing_interrupted() -> None:
    """Raise if an interrupt was requested, and clear the request.

    Inside ComfyUI this raises ComfyUI's ``InterruptProcessingException`` (so the run is reported
    as *interrupted*, not as an error); outside it raises :class:`Interrupted`.
    """
    mm = _mm()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
        return
    standalone.raise_if_interrupted()


def interrupt_exceptions() -> tuple:
    """The exception types that mean "the user pressed Cancel": :class:`Interrupted` and, inside
    ComfyUI, ``comfy.model_management.InterruptProcessingException``.  Long work that must save
    something before stopping (training) catches these, saves, and re-raises the original."""
    mm = _mm()
    extra = getattr(mm, "InterruptProcessingException", None) if mm is not None else None
    return (Interrupted,) + ((extra,) if isinstance(extra, type) else ())


def send_progress_text(text: str, node_id: Optional[str]) -> bool:
    """Show ``text`` on node ``node_id`` while it runs (ComfyUI's ``PromptServer.send_progress_text``,
    the live text line API nodes use).  A no-op returning False outside a running ComfyUI server
    or on a ComfyUI without that method; never raises."""
    server = sys.modules.get("server")  # ComfyUI's server module, imported by main.py before any pack
    ps = getattr(getattr(server, "PromptServer", None), "instance", None) if server is not None else None
    fn = getattr(ps, "send_progress_text", None)
    if fn is None or node_id is None:
        return False
    try:
        fn(str(text), str(node_id))
        return True
    except Exception as e:  # noqa: BLE001 - a UI nicety must never break the work
        log.debug("send_progress_text failed: %s", e)
        return False


class ProgressBar:
    """ComfyUI's ``comfy.utils.ProgressBar`` when available, else a silent counter.

    Both check for interruption on every update (ComfyUI's own bar does so only when the server
    installed its hook), so a loop that updates the bar each step is always interruptible.
    """

    def __init__(self, total: int, node_id: Optional[str] = None):
        self.total = int(total)
        self.current = 0
        self.node_id = node_id
        utils = _utils()
        self._bar = utils.ProgressBar(self.total, node_id=node_id) if utils is not None else None

    def update_absolute(self, value: int, total: Optional[int] = None, preview: Any = None) -> None:
        if total is not None:
            self.total = int(total)
        self.current = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.current, self.total, preview)
        throw_exception_if_processing_interrupted()

    def update(self, value: int = 1) -> None:
        self.update_absolute(self.current + int(value))


def make_progress_callback(total: Optional[int] = None, node_id: Optional[str] = None) -> ProgressCallback:
    """An ``audiox_core`` progress callback ``callback(step, total, info)`` driving a ProgressBar.

    ``total`` fixes the bar length; ``None`` takes it from the first call (and follows later
    changes).  The callback raises on interrupt (see
    :func:`throw_exception_if_processing_interrupted`), which stops the core loop cleanly.
    ``node_id`` is the node's hidden ``UNIQUE_ID`` so ComfyUI draws the bar on the right node.
    """
    state: dict[str, ProgressBar] = {}

    def callback(step: int, step_total: int, info: Optional[dict] = None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = ProgressBar(total if total is not None else step_total, node_id=node_id)
        if info:
            log.debug("progress %s/%s %s", step, step_total, info)
        if total is not None:
            # core reports in its own units; rescale onto the fixed bar
            value = round(step * total / max(int(step_total), 1))
            bar.update_absolute(value, total)
        else:
            bar.update_absolute(step, step_total)

    return callback


# --------------------------------------------------------------------------------------------
# model folders
# --------------------------------------------------------------------------------------------
def register_model_folder(name: str, default_subdir: str, extensions: Iterable[str]) -> None:
    """Make ``name`` a model folder (default ``<models>/<default_subdir>``) listing ``extensions``.

    Inside ComfyUI: ``folder_paths.add_model_folder_path`` (de-duplicating; paths users declared
    in extra_model_paths.yaml are kept) and the extensions are added to the folder's set.  For a
    core folder (``loras``, ``text_encoders``, ...) this only adds our default path if missing.
    """
    exts = {e if e.startswith(".") else "." + e for e in extensions}
    fp = _folder_paths()
    if fp is not None:
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, default_subdir))
        key = fp.map_legacy(name) if hasattr(fp, "map_legacy") else name
        fp.folder_names_and_paths[key][1].update(exts)
        return
    standalone.register_folder(name, default_subdir, exts)


def add_model_path(name: str, path: str | os.PathLike) -> None:
    """Also search ``path`` (any directory, e.g. the pack's own ``models/demo``) for folder ``name``.

    The folder must be registered first (:func:`register_model_folder`, or a core folder such as
    ``text_encoders``).  Inside ComfyUI this appends to ``folder_paths`` (after the user's paths,
    so a user file of the same name wins); outside, to the local folder list.
    """
    path = str(Path(path).resolve())
    fp = _folder_paths()
    if fp is not None:
        if not _comfy_folder_known(fp, name):
            raise _unregistered(name)
        fp.add_model_folder_path(name, path)
        return
    if not standalone.add_folder_path(name, path):
        raise _unregistered(name)


def comfy_t5_tokenizer_dir() -> Optional[Path]:
    """ComfyUI's bundled t5-base SentencePiece tokenizer folder (``comfy/text_encoders/t5_tokenizer``),
    or None outside ComfyUI / when this ComfyUI has none."""
    comfy = sys.modules.get("comfy") or _optional("comfy")
    files = getattr(comfy, "__file__", None) if comfy is not None else None
    if not files:
        return None
    d = Path(files).resolve().parent / "text_encoders" / "t5_tokenizer"
    return d if d.is_dir() else None


def _comfy_folder_known(fp, name: str) -> bool:
    key = fp.map_legacy(name) if hasattr(fp, "map_legacy") else name
    return key in fp.folder_names_and_paths


def _unregistered(name: str) -> InputError:
    return InputError(f"model folder '{name}' is not registered (call register_model_folder first)")


def get_folder_paths(name: str) -> list[str]:
    """The directories searched for model folder ``name`` (it must be registered)."""
    fp = _folder_paths()
    if fp is not None:
        if not _comfy_folder_known(fp, name):
            raise _unregistered(name)
        return list(fp.get_folder_paths(name))
    paths = standalone.folder_paths(name)
    if paths is None:
        raise _unregistered(name)
    return paths


def get_filename_list(name: str) -> list[str]:
    """Sorted relative paths (``/``-separated) of the files in model folder ``name``."""
    fp = _folder_paths()
    if fp is not None:
        if not _comfy_folder_known(fp, name):
            raise _unregistered(name)
        return list(fp.get_filename_list(name))
    files = standalone.folder_files(name)
    if files is None:
        raise _unregistered(name)
    return files


def find_model_file(name: str, filename, *, what: str = "", kind: str = "any") -> Optional[Path]:
    """The file (or folder) ``filename`` of model folder ``name``, symlinks resolved, or None.

    Every file name a node takes goes through :func:`audiox_core.fileio.resolve_inside`: a name
    that leads outside the folder's directories (``..``, an absolute path elsewhere, a symlink
    pointing elsewhere) raises :class:`PathError` naming ``what`` and the directories."""
    from ..audiox_core.fileio import resolve_inside
    return resolve_inside(filename, get_folder_paths(name), what=what or f"model folder '{name}'", kind=kind)


def get_full_path(name: str, filename: str) -> str:
    """Absolute path of ``filename`` (as listed by :func:`get_filename_list`) in folder ``name``.

    Raises :class:`InputError` naming the folder and the searched directories when absent, and
    :class:`PathError` when the name leads outside them (:func:`find_model_file`).
    """
    full = find_model_file(name, filename, kind="file")
    if full is None:
        searched = get_folder_paths(name)
        raise InputError(
            f"model file '{filename}' was not found in model folder '{name}' "
            f"(searched: {', '.join(searched) or 'no directories'})"
        )
    return str(full)


def get_output_directory() -> str:
    """ComfyUI's output directory, else ``$AUDIOX_OUTPUT_DIR`` or ``./output``."""
    fp = _folder_paths()
    if fp is not None:
        return fp.get_output_directory()
    return standalone.output_directory()


def get_input_directory() -> str:
    """ComfyUI's input directory, else ``$AUDIOX_INPUT_DIR`` or ``./input``."""
    fp = _folder_paths()
    if fp is not None:
        return fp.get_input_directory()
    return standalone.input_directory()


def get_temp_directory() -> str:
    """ComfyUI's temp directory, else ``<system temp>/audiox``."""
    fp = _folder_paths()
    if fp is not None:
        return fp.get_temp_directory()
    return standalone.temp_directory()


# --------------------------------------------------------------------------------------------
# model memory management
# --------------------------------------------------------------------------------------------
_PATCHER_ATTRS = ("device", "model_loaded_weight_memory", "lowvram_patch_counter", "model_lowvram",
                  "current_weight_patches_uuid")


class ModuleHolder(torch.nn.Module):
    """Holds a module whose class has read-only properties that ``ModelPatcher`` assigns (e.g.
    ``device`` of ``transformers`` models and of the Synchformer).  ``.to`` moves the held module
    in place, so references to it stay valid; its state-dict keys gain the prefix ``inner.``."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def _has_readonly_patcher_attr(module: torch.nn.Module) -> bool:
    import inspect
    for name in _PATCHER_ATTRS:
        attr = inspect.getattr_static(module, name, None)
        if isinstance(attr, property) and attr.fset is None:
            return True
    return False


def wrap_model(
    module: torch.nn.Module,
    load_device: Optional[torch.device] = None,
    offload_device: Optional[torch.device] = None,
):
    """Wrap ``module`` for device management: a ``ModelPatcher`` in ComfyUI, else a handle.

    The module should already be on ``offload_device`` (default :func:`unet_offload_device`).
    Use ``handle.model`` to reach the module; call :func:`load_models_gpu` before using it.
    A module whose class defines ``device`` (or another attribute ``ModelPatcher`` sets) as a
    read-only property is wrapped in a :class:`ModuleHolder` first (``handle.model.inner``); it is
    moved in place, so keep using the module itself.
    """
    if _has_readonly_patcher_attr(module):
        module = ModuleHolder(module)
    load_device = load_device if load_device is not None else get_torch_device()
    offload_device = offload_device if offload_device is not None else unet_offload_device()
    mp = _optional("comfy.model_patcher")
    if mp is not None:
        return mp.ModelPatcher(module, load_device=load_device, offload_device=offload_device,
                               size=module_bytes(module))
    return LocalModelHandle(module, load_device, offload_device)


def load_models_gpu(handles: Sequence[Any], memory_required: int = 0) -> None:
    """Put every handle's model fully on its load device, evicting other models if needed."""
    handles = [h for h in handles if h is not None]
    mm = _mm()
    if mm is not None and not all(isinstance(h, LocalModelHandle) for h in handles):
        mm.load_models_gpu(handles, memory_required=memory_required, force_full_load=True)
        return
    for h in handles:
        h.model.to(h.load_device)


def offload_models(handles: Sequence[Any]) -> None:
    """Move the handles' models back to their offload devices now and free cached memory."""
    handles = [h for h in handles if h is not None]
    mm = _mm()
    if mm is not None and not all(isinstance(h, LocalModelHandle) for h in handles):
        loaded = getattr(mm, "current_loaded_models", [])
        for i in range(len(loaded) - 1, -1, -1):
            if any(loaded[i].model is h for h in handles):
                entry = loaded.pop(i)
                entry.model_unload()
        mm.soft_empty_cache()
        return
    for h in handles:
        h.model.to(h.offload_device)
    soft_empty_cache()


@contextlib.contextmanager
def models_on_device(*handles: Any, memory_required: int = 0, offload_after: Optional[bool] = None) -> Iterator[None]:
    """``with models_on_device(dit, vae): ...`` loads the models for the block.

    ``offload_after=None`` means: inside ComfyUI leave it to ComfyUI's memory manager, outside
    ComfyUI offload when the block ends (there is nobody else to do it).
    """
    load_models_gpu(handles, memory_required=memory_required)
    try:
        yield
    finally:
        if offload_after if offload_after is not None else not comfy_available():
            offload_models(handles)


# --------------------------------------------------------------------------------------------
# VIDEO outputs
# --------------------------------------------------------------------------------------------
def make_video(images: torch.Tensor, fps: float | Fraction, audio: Optional[dict] = None):
    """A ComfyUI VIDEO from IMAGE frames ``[N, H, W, 3]`` (0..1), an fps and an optional AUDIO.

    Inside ComfyUI: ``VideoFromComponents(VideoComponents(images, Fraction(fps), audio))``, which
    core SaveVideo muxes (h264 + aac).  Otherwise the same, from :mod:`audiox_core.media.video_value`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"video frames must be an IMAGE tensor [N, H, W, 3], got shape {tuple(images.shape)}")
    if audio is not None and (not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio):
        raise InputError("video audio must be an AUDIO dict {'waveform': [B, C, T], 'sample_rate': int}")
    rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise InputError(f"video fps must be positive, got {fps}")
    impl = _optional("comfy_api.input_impl")
    util = _optional("comfy_api.util")
    if impl is not None and util is not None:
        return impl.VideoFromComponents(util.VideoComponents(images=images, frame_rate=rate, audio=audio))
    return VideoFromComponents(VideoComponents(images, rate, audio))


def video_with_audio(video: Any, audio: dict):
    """The frames and frame rate of ``video`` (a VIDEO) with ``audio`` as its sound track.

    This decodes every frame of ``video`` (``get_components``), so use it for clips of the
    length AudioX generates, not for long high-resolution sources.
    """
    comps = video.get_components()
    return make_video(comps.images, comps.frame_rate, audio)


def video_from_file(path: str | os.PathLike):
    """A ComfyUI VIDEO for a file on disk (``VideoFromFile`` of ComfyUI, else of :mod:`audiox_core.media.video_value`)."""
    impl = _optional("comfy_api.input_impl")
    if impl is not None:
        return impl.VideoFromFile(str(path))
    return VideoFromFile(path)


def video_source(video: Any) -> tuple[str, Any, Any]:
    """How to read a VIDEO value without decoding more than needed.

    Returns ``("stream", source, None)`` for file-backed videos (a path or BytesIO that PyAV can
    seek in: frames are then sampled at the model's rate while decoding) or ``("frames", images
    [N, H, W, 3], fps)`` for videos that only exist as frames in memory (e.g. CreateVideo's).
    """
    impl = _optional("comfy_api.input_impl")
    if impl is not None and isinstance(video, impl.VideoFromFile):
        return "stream", video.get_stream_source(), None
    in_memory = isinstance(video, VideoFromComponents) or (impl is not None and isinstance(video, impl.VideoFromComponents))
    if not in_memory and hasattr(video, "get_stream_source") and impl is None:
        return "stream", video.get_stream_source(), None
    if not hasattr(video, "get_components"):
        raise InputError(f"expected a VIDEO, got {type(video).__name__}")
    comps = video.get_components()
    return "frames", comps.images, comps.frame_rate
