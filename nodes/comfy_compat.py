"""The one place where the node pack touches ComfyUI.

Every ``comfy``, ``folder_paths``, ``comfy_api`` and ``server`` import of the pack lives here, made
lazily at the first call that needs it.  "ComfyUI is present" means the import succeeds; a *missing*
module selects the fallback, any other import error (a broken install) propagates.  Detection is per
call and cheap (``sys.modules`` first, so tests can install and remove stub modules).  Fallbacks:
:mod:`audiox_core.standalone` (devices, model folders, directories, :class:`LocalModelHandle`, the
interrupt flag) and :mod:`audiox_core.media.video_value` (VIDEO values).

Model memory: loaders wrap each network with :func:`wrap_model` (a ``ModelPatcher`` inside ComfyUI, so
its memory manager sees our weights and may load them partially: :mod:`audiox_core.partial_loading`);
nodes run them inside :func:`models_on_device`.  docs/MODEL_MEMORY.md.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

from ..audiox_core import progress, standalone
from ..audiox_core.errors import InputError, Interrupted
from ..audiox_core.fileio import resolve_inside
from ..audiox_core.partial_loading import complete_partial_load, is_castable
from ..audiox_core.training.lora import weight_patches
from ..audiox_core.media.wav import save_wav_clips
from ..audiox_core.standalone import LocalModelHandle, ModuleHolder, module_bytes
from ..audiox_core.media.video_value import VideoComponents, VideoFromComponents, VideoFromFile, check_video_parts

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict], Any]

# ---------- lazy, fallible imports ----------------------------------------------------------
_MISSING: set[str] = set()


def _optional(name: str):
    """The module ``name``, or None when it is *missing* (a broken import raises)."""
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


def _mm():
    return _optional("comfy.model_management") or standalone.ModelManagement


def _folder_paths():
    return _optional("folder_paths") or standalone.FOLDER_PATHS


def comfy_available() -> bool:
    return _optional("comfy.model_management") is not None


# ---------- devices -------------------------------------------------------------------------
def get_torch_device() -> torch.device:
    """The compute device: ComfyUI's choice, else ``cpu`` (or ``$AUDIOX_DEVICE``)."""
    return _mm().get_torch_device()


def unet_offload_device() -> torch.device:
    """Where idle model weights live."""
    return _mm().unet_offload_device()


def intermediate_device() -> torch.device:
    """Where node outputs (AUDIO waveforms, IMAGE frames) live: CPU unless --gpu-only."""
    return _mm().intermediate_device()


def soft_empty_cache() -> None:
    _mm().soft_empty_cache()


# ---------- interruption, progress and UI messages ------------------------------------------
def interrupt_processing(value: bool = True) -> None:
    _mm().interrupt_current_processing(value)


def throw_exception_if_processing_interrupted() -> None:
    """Raise (and clear) a requested interrupt: ComfyUI's ``InterruptProcessingException``, else
    :class:`Interrupted`."""
    _mm().throw_exception_if_processing_interrupted()


def interrupt_exceptions() -> tuple:
    """The exception types that mean "Cancel" (training catches them, saves, and re-raises)."""
    extra = getattr(_mm(), "InterruptProcessingException", None)
    return (Interrupted,) + ((extra,) if isinstance(extra, type) else ())


def _prompt_server():
    """The running ``PromptServer`` (``server`` is imported before any pack), or None."""
    return getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)


def _call_prompt_server(method: str, *args) -> bool:
    """``PromptServer.instance.<method>(*args)``; False when there is none or it fails (a UI nicety)."""
    fn = getattr(_prompt_server(), method, None)
    if fn is None:
        return False
    try:
        fn(*args)
        return True
    except Exception as e:  # noqa: BLE001
        log.debug("PromptServer.%s failed: %s", method, e)
        return False


def send_progress_text(text: str, node_id: Optional[str]) -> bool:
    """Show ``text`` on node ``node_id`` while it runs."""
    return node_id is not None and _call_prompt_server("send_progress_text", str(text), str(node_id))


def ui_event(event: str, data: dict) -> bool:
    """Send ``{"type": event, "data": data}`` to the browsers (``PromptServer.send_sync``)."""
    return _call_prompt_server("send_sync", event, data, getattr(_prompt_server(), "client_id", None))


class ProgressBar:
    """ComfyUI's ``comfy.utils.ProgressBar``, else a silent counter; checks for interruption on every
    update (ComfyUI's own bar only does with the server's hook installed)."""

    def __init__(self, total: int, node_id: Optional[str] = None):
        self.total = int(total)
        self.current = 0
        utils = _optional("comfy.utils")
        self._bar = utils.ProgressBar(self.total, node_id=node_id) if utils is not None else None

    def update_absolute(self, value: int, total: Optional[int] = None, preview: Any = None) -> None:
        if total is not None:
            self.total = int(total)
        self.current = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.current, self.total, preview)
        throw_exception_if_processing_interrupted()


def make_progress_callback(total: Optional[int] = None, node_id: Optional[str] = None) -> ProgressCallback:
    """A core progress callback ``(step, total, info)`` driving a ProgressBar on node ``node_id`` (hidden
    ``UNIQUE_ID``) and raising on interrupt; ``total`` fixes the bar length, ``None`` follows the core's."""
    return progress.bar_callback(lambda n: ProgressBar(n, node_id=node_id), total)


# ---------- model folders -------------------------------------------------------------------
def _folder_key(fp, name: str) -> str:
    """``name`` as ``folder_paths`` keys it (legacy names mapped), or InputError."""
    key = fp.map_legacy(name) if hasattr(fp, "map_legacy") else name
    if key not in fp.folder_names_and_paths:
        raise InputError(f"model folder '{name}' is not registered (call register_model_folder first)")
    return key


def register_model_folder(name: str, default_subdir: str, extensions: Iterable[str]) -> None:
    """Make ``name`` a model folder (default ``<models>/<default_subdir>``) listing ``extensions``; the
    user's paths (extra_model_paths.yaml) stay, for a core folder (``loras``) only our path is added."""
    fp = _folder_paths()
    fp.add_model_folder_path(name, os.path.join(fp.models_dir, default_subdir))
    fp.folder_names_and_paths[_folder_key(fp, name)][1].update(e if e.startswith(".") else "." + e for e in extensions)


def add_model_path(name: str, path: str | os.PathLike) -> None:
    """Also search ``path`` for the registered folder ``name``, after the user's paths (theirs win)."""
    fp = _folder_paths()
    fp.add_model_folder_path(_folder_key(fp, name), str(Path(path).resolve()))


def comfy_t5_tokenizer_dir() -> Optional[Path]:
    """ComfyUI's bundled t5-base SentencePiece tokenizer folder, or None."""
    files = getattr(_optional("comfy"), "__file__", None)
    if not files:
        return None
    folder = Path(files).resolve().parent / "text_encoders" / "t5_tokenizer"
    return folder if folder.is_dir() else None


def get_folder_paths(name: str) -> list[str]:
    fp = _folder_paths()
    return list(fp.get_folder_paths(_folder_key(fp, name)))


def get_filename_list(name: str) -> list[str]:
    """Sorted relative paths (``/``-separated) of the files in model folder ``name``."""
    fp = _folder_paths()
    return list(fp.get_filename_list(_folder_key(fp, name)))


def find_model_file(name: str, filename, *, what: str = "", kind: str = "any") -> Optional[Path]:
    """``filename`` (file or folder) in model folder ``name``, symlinks resolved, or None; PathError
    for a name leading outside the folder."""
    return resolve_inside(filename, get_folder_paths(name), what=what or f"model folder '{name}'", kind=kind)


def get_full_path(name: str, filename: str) -> str:
    """Absolute path of ``filename`` in folder ``name``; InputError when absent, PathError outside it."""
    full = find_model_file(name, filename, kind="file")
    if full is None:
        searched = ", ".join(get_folder_paths(name)) or "no directories"
        raise InputError(f"model file '{filename}' was not found in model folder '{name}' (searched: {searched})")
    return str(full)


def get_output_directory() -> str:  # outside ComfyUI: $AUDIOX_OUTPUT_DIR or ./output
    return _folder_paths().get_output_directory()


def get_input_directory() -> str:  # outside ComfyUI: $AUDIOX_INPUT_DIR or ./input
    return _folder_paths().get_input_directory()


def get_temp_directory() -> str:  # outside ComfyUI: <system temp>/audiox
    return _folder_paths().get_temp_directory()


# ---------- model memory management ---------------------------------------------------------
def wrap_model(module: torch.nn.Module, load_device: Optional[torch.device] = None,
               offload_device: Optional[torch.device] = None):
    """Wrap ``module`` (already on ``offload_device``) in a ``ModelPatcher`` (else a :class:`LocalModelHandle`),
    as :func:`audiox_core.standalone.patcher_module` prepares it."""
    load_device = load_device if load_device is not None else get_torch_device()
    offload_device = offload_device if offload_device is not None else unet_offload_device()
    patcher = _optional("comfy.model_patcher")
    module = standalone.patcher_module(module, partial_loading=patcher is not None)
    if patcher is None:
        return LocalModelHandle(module, load_device, offload_device)
    return patcher.ModelPatcher(module, load_device=load_device, offload_device=offload_device,
                                size=module_bytes(module))


def _manager_of(handles: Sequence[Any]):
    """The stand-in model management for :class:`LocalModelHandle`s only, else ComfyUI's."""
    local = all(isinstance(h, LocalModelHandle) for h in handles)
    return standalone.ModelManagement if local else _mm()


def load_models_gpu(handles: Sequence[Any], memory_required: int = 0) -> None:
    """ComfyUI may load castable models (:func:`wrap_model`) partially; the tensors it skips are moved here."""
    handles = [h for h in handles if h is not None]
    castable = [h for h in handles if is_castable(h.model)]
    _manager_of(handles).load_models_gpu(handles, memory_required=memory_required,
                                         force_full_load=len(castable) < len(handles))
    for h in castable:
        complete_partial_load(h.model, h.load_device)


def offload_models(handles: Sequence[Any]) -> None:
    """Move the handles' models to their offload devices now and free cached memory."""
    handles = [h for h in handles if h is not None]
    manager = _manager_of(handles)
    if manager is standalone.ModelManagement:
        return manager.offload_models(handles)
    loaded = getattr(manager, "current_loaded_models", [])
    for i in range(len(loaded) - 1, -1, -1):
        if any(loaded[i].model is h for h in handles):
            loaded.pop(i).model_unload()
    manager.soft_empty_cache()


@contextlib.contextmanager
def models_on_device(*handles: Any, memory_required: int = 0, offload_after: Optional[bool] = None,
                     offload_now: Sequence[Any] = ()) -> Iterator[None]:
    """Load the models for the block; ``offload_after=None``: inside ComfyUI its memory manager decides,
    outside it they are offloaded after.  ``offload_now``: those of ``handles`` offloaded after in any case."""
    load_models_gpu(handles, memory_required=memory_required)
    try:
        yield
    finally:
        if offload_after if offload_after is not None else not comfy_available():
            offload_models(handles)
        elif offload_now:
            offload_models(offload_now)


def lora_patched_handles(handles: dict, loras: tuple) -> Optional[dict]:
    """Clones of the part handles that ``loras`` adapt (``audiox_core.training.lora.weight_patches``)
    carrying them as ComfyUI weight patches (``ModelPatcher.clone`` + ``add_patches`` of
    ``comfy.weight_adapter`` LoRA adapters): ComfyUI patches the weights when it loads a clone and
    restores them when another clone of the same model is loaded, so a plain and a LoRA branch share
    one copy of the weights.  None when the handles are not ComfyUI's (then the LoRAs are applied by
    hooks while a node runs, :func:`audiox_core.loaded_model.loras_applied`)."""
    adapters = _optional("comfy.weight_adapter.lora")
    if adapters is None or any(isinstance(handle, LocalModelHandle) for handle in handles.values()):
        return None  # checked before the patches are computed: outside ComfyUI they are not needed
    clones = {}
    for part, keyed in weight_patches(loras).items():
        if handles.get(part) is None:
            raise InputError(f"these LoRAs adapt the model's {part}, which this model does not have")
        clone = handles[part].clone()
        prefix = "inner." if isinstance(handles[part].model, ModuleHolder) else ""
        for key, entries in keyed.items():
            for up, down, alpha, strength in entries:
                adapter = adapters.LoRAAdapter(set(), (up, down, alpha, None, None, None))
                if not clone.add_patches({prefix + key: adapter}, strength):
                    raise InputError(f"LoRA weight '{key}' is not a weight of the model's {part}")
        clones[part] = clone
        log.info("AudioX: %d LoRA weight patches on a clone of the model's %s", len(keyed), part)
    return clones


def audio_preview(waveform: torch.Tensor, sample_rate: int, prefix: str) -> list[dict]:
    """Write ``waveform [B, C, T]`` as B 16-bit WAV files in the temp folder's ``audiox`` (what the audio
    workbench of web/audiox.js plays); their ``/view`` references, as core nodes give them."""
    folder = os.path.join(get_temp_directory(), "audiox")
    names = save_wav_clips(folder, f"{prefix}_{uuid.uuid4().hex[:10]}", waveform, sample_rate)
    return [{"filename": name, "subfolder": "audiox", "type": "temp"} for name in names]


# ---------- VIDEO values --------------------------------------------------------------------
def make_video(images: torch.Tensor, fps: float | Fraction, audio: Optional[dict] = None):
    """A VIDEO from IMAGE frames ``[N, H, W, 3]`` (0..1), an fps and an optional AUDIO."""
    rate = check_video_parts(images, fps, audio)
    impl, util = _optional("comfy_api.input_impl"), _optional("comfy_api.util")
    if impl is not None and util is not None:
        return impl.VideoFromComponents(util.VideoComponents(images=images, frame_rate=rate, audio=audio))
    return VideoFromComponents(VideoComponents(images, rate, audio))


def video_from_file(path: str | os.PathLike):
    """A VIDEO for a file on disk."""
    impl = _optional("comfy_api.input_impl")
    return impl.VideoFromFile(str(path)) if impl is not None else VideoFromFile(path)


def video_source(video: Any) -> tuple[str, Any, Any]:
    """How to read a VIDEO without decoding more than needed: ``("stream", source, None)`` for
    file-backed videos (PyAV samples frames while decoding) or ``("frames", images [N, H, W, 3],
    fps)`` for videos held in memory (e.g. CreateVideo's)."""
    impl = _optional("comfy_api.input_impl")
    if impl is not None and isinstance(video, impl.VideoFromFile):
        return "stream", video.get_stream_source(), None
    if impl is None and hasattr(video, "get_stream_source") and not isinstance(video, VideoFromComponents):
        return "stream", video.get_stream_source(), None
    if not hasattr(video, "get_components"):
        raise InputError(f"expected a VIDEO, got {type(video).__name__}")
    components = video.get_components()
    return "frames", components.images, components.frame_rate
