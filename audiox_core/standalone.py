"""What the node pack uses where ComfyUI is absent (the graph runner, unit tests, a notebook).

``nodes/comfy_compat.py`` asks ComfyUI first and falls back to these (:class:`ModelManagement`
and :data:`FOLDER_PATHS` stand in for ``comfy.model_management`` and ``folder_paths``):

* devices: ``$AUDIOX_DEVICE`` (e.g. ``cuda``) or the CPU (:func:`compute_device`);
* model folders: a registry of folder name → (directories, file extensions), the default
  directories under ``$AUDIOX_MODELS_DIR`` or ``./models`` (:data:`FOLDERS`, :func:`folder_files`);
* the input / output / temp directories: ``$AUDIOX_INPUT_DIR`` / ``$AUDIOX_OUTPUT_DIR`` (default
  ``./input`` / ``./output``) and ``<system temp>/audiox``;
* model handles: :class:`LocalModelHandle` (a module and its load / offload devices, the surface of
  ComfyUI's ``ModelPatcher`` the nodes use) and :class:`ModuleHolder` (for modules ``ModelPatcher``
  could not set its attributes on);
* interruption: a process-wide flag (:func:`request_interrupt`, :func:`raise_if_interrupted`).
"""
from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .errors import Interrupted

# ------------------------------------------------------------------------------------ devices


def compute_device() -> torch.device:
    """``$AUDIOX_DEVICE`` or the CPU."""
    return torch.device(os.environ.get("AUDIOX_DEVICE", "cpu"))


# ------------------------------------------------------------------------------ model folders
#: folder name -> (directories searched in order, file extensions listed)
FOLDERS: dict[str, tuple[list[str], set[str]]] = {}


def models_dir() -> Path:
    """``$AUDIOX_MODELS_DIR`` or ``./models`` (absolute), the models root."""
    return Path(os.environ.get("AUDIOX_MODELS_DIR", "models")).resolve()


def folder_files(name: str) -> Optional[list[str]]:
    """Sorted ``/``-separated relative paths of the files of folder ``name`` with its extensions
    (``.git`` folders skipped), or None when it is not registered."""
    if name not in FOLDERS:
        return None
    paths, extensions = FOLDERS[name]
    found: set[str] = set()
    for root in paths:
        base = Path(root)
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            if ".git" in p.relative_to(base).parts or not p.is_file():
                continue
            if not extensions or p.suffix.lower() in extensions:
                found.add(p.relative_to(base).as_posix())
    return sorted(found)


def output_directory() -> str:
    return str(Path(os.environ.get("AUDIOX_OUTPUT_DIR", "output")).resolve())


def input_directory() -> str:
    return str(Path(os.environ.get("AUDIOX_INPUT_DIR", "input")).resolve())


def temp_directory() -> str:
    return os.path.join(tempfile.gettempdir(), "audiox")


# ------------------------------------------------------------------------------ model handles
def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``module``'s state dict (parameters and buffers)."""
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class LocalModelHandle:
    """A module plus its two devices (the ``ModelPatcher`` surface the nodes use)."""

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device):
        self.model = model
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload_device)
        self._size = 0

    def model_size(self) -> int:
        if not self._size:
            self._size = module_bytes(self.model)
        return self._size

    def current_loaded_device(self) -> Optional[torch.device]:
        for t in self.model.parameters():
            return t.device
        for t in self.model.buffers():
            return t.device
        return None

    def __repr__(self) -> str:
        return f"LocalModelHandle({type(self.model).__name__}, load={self.load_device}, offload={self.offload_device})"


#: attributes ComfyUI's ``ModelPatcher`` sets on the module it wraps
_PATCHER_ATTRS = ("device", "model_loaded_weight_memory", "lowvram_patch_counter", "model_lowvram",
                  "current_weight_patches_uuid")


class ModuleHolder(torch.nn.Module):
    """Holds a module with a read-only property ``ModelPatcher`` assigns (``device`` of ``transformers``
    models, the Synchformer); moved in place, its state-dict keys gain the prefix ``inner.``."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def patcher_module(module: torch.nn.Module, *, partial_loading: bool) -> torch.nn.Module:
    """``module`` ready for a model handle: inside a :class:`ModuleHolder` when it has a read-only
    attribute ComfyUI's ``ModelPatcher`` sets; ``partial_loading`` (for ComfyUI's patcher): with the
    cast-weights protocol, so that ComfyUI may load it partially (:mod:`audiox_core.partial_loading`)."""
    from .partial_loading import make_castable
    if has_readonly_patcher_attr(module):
        module = ModuleHolder(module)
    if partial_loading:
        make_castable(module)
    return module


def has_readonly_patcher_attr(module: torch.nn.Module) -> bool:
    """True when ``module``'s class makes an attribute ComfyUI's ``ModelPatcher`` sets read-only."""
    for name in _PATCHER_ATTRS:
        attr = inspect.getattr_static(module, name, None)
        if isinstance(attr, property) and attr.fset is None:
            return True
    return False


# ------------------------------------------------------------------------------- interruption
INTERRUPT_REQUESTED = False


def request_interrupt(value: bool = True) -> None:
    """Request (or clear) an interrupt of the running work."""
    global INTERRUPT_REQUESTED
    INTERRUPT_REQUESTED = bool(value)


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if an interrupt was requested, and clear the request."""
    global INTERRUPT_REQUESTED
    if INTERRUPT_REQUESTED:
        INTERRUPT_REQUESTED = False
        raise Interrupted("processing was interrupted")


# ------------------------------------------------------------------- stand-ins for ComfyUI modules
class ModelManagement:
    """What ``nodes/comfy_compat.py`` calls on ``comfy.model_management``, for when ComfyUI is absent:
    the compute device of :func:`compute_device`, the CPU for idle weights and node outputs, the
    interrupt flag, and models moved whole to their load device (:class:`LocalModelHandle`)."""

    get_torch_device = staticmethod(compute_device)
    interrupt_current_processing = staticmethod(request_interrupt)
    throw_exception_if_processing_interrupted = staticmethod(raise_if_interrupted)

    @staticmethod
    def unet_offload_device() -> torch.device:
        return torch.device("cpu")

    @staticmethod
    def intermediate_device() -> torch.device:
        return torch.device("cpu")

    @staticmethod
    def soft_empty_cache() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @staticmethod
    def load_models_gpu(handles, memory_required: int = 0, force_full_load: bool = True) -> None:
        for handle in handles:
            handle.model.to(handle.load_device)

    @staticmethod
    def offload_models(handles) -> None:
        """Move the handles' models to their offload devices and free cached memory."""
        for handle in handles:
            handle.model.to(handle.offload_device)
        ModelManagement.soft_empty_cache()


class FolderPaths:
    """What ``nodes/comfy_compat.py`` calls on ComfyUI's ``folder_paths``, for when ComfyUI is absent:
    the registry :data:`FOLDERS` (same shape as ``folder_names_and_paths``: name -> (directories,
    extensions)) and the input / output / temp directories."""

    get_output_directory = staticmethod(output_directory)
    get_input_directory = staticmethod(input_directory)
    get_temp_directory = staticmethod(temp_directory)

    @property
    def models_dir(self) -> str:
        return str(models_dir())

    @property
    def folder_names_and_paths(self) -> dict[str, tuple[list[str], set[str]]]:
        return FOLDERS

    @staticmethod
    def add_model_folder_path(name: str, path: str) -> None:
        paths, _extensions = FOLDERS.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    @staticmethod
    def get_folder_paths(name: str) -> list[str]:
        return list(FOLDERS[name][0])

    @staticmethod
    def get_filename_list(name: str) -> list[str]:
        return folder_files(name)


#: the stand-in ``folder_paths`` (an instance: ``models_dir`` follows ``$AUDIOX_MODELS_DIR``)
FOLDER_PATHS = FolderPaths()
