"""Model files: which files of ComfyUI's model folders (and this pack's ``models/demo``) the loader
nodes list, and the one place that resolves a chosen name to a file (or says what is missing).

What is listed is decided in :mod:`audiox_core.model_folders` (from the files' keys and shapes,
never from their names); this module registers the folders and hands it ComfyUI's file lists.
"""
from __future__ import annotations

from pathlib import Path

from ..audiox_core.errors import AudioXError, FieldError
from ..audiox_core.model_folders import files_of_kind, missing_file_message, text_encoder_choices, weights_file_kind
from . import comfy_compat
from .common import about_input, node_error

DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "demo"
WEIGHT_EXTS = [".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".sft"]
MODEL_KINDS = ("audiox", "audiox_training")

comfy_compat.register_model_folder("audiox", "audiox", WEIGHT_EXTS)
comfy_compat.register_model_folder("text_encoders", "text_encoders", [".safetensors", ".bin", ".pt", ".sft"])
comfy_compat.register_model_folder("clip_vision", "clip_vision", [".safetensors", ".bin", ".pt", ".pth"])
comfy_compat.add_model_path("audiox", DEMO_DIR)
comfy_compat.add_model_path("text_encoders", DEMO_DIR)


def _full(folder: str, name: str) -> Path | None:
    """A listed name's path (None if absent or if it leads outside the folder, e.g. a symlink)."""
    try:
        return comfy_compat.find_model_file(folder, name)
    except AudioXError:
        return None


def _named_paths(folder: str) -> list[tuple[str, Path | None]]:
    return [(name, _full(folder, name)) for name in comfy_compat.get_filename_list(folder)]


def list_files_of_kind(folder: str, kinds: tuple[str, ...]) -> list[str]:
    """The files of ``folder`` whose weights make them one of ``kinds``."""
    return files_of_kind(_named_paths(folder), kinds)


def list_audiox_files() -> list[str]:
    """AudioX model checkpoints of ``models/audiox`` (+ demo): not VAE, Synchformer or other files."""
    return list_files_of_kind("audiox", MODEL_KINDS)


def list_text_encoders() -> list[str]:
    """T5 choices: Hugging Face folders and single weights files (the demo folder's model files are
    AudioX checkpoints, not T5)."""
    return text_encoder_choices(_named_paths("text_encoders"), DEMO_DIR)


def pick_file(node: str, input_name: str, folder: str, name: str) -> Path:
    """The file of input ``input_name``: inside models/<folder> (symlinks resolved) or refused."""
    with about_input(node, input_name):
        p = comfy_compat.find_model_file(folder, name, what=f"a name in models/{folder}")
    if p is None:
        raise node_error(node, input_name, missing_file_message(folder, name, comfy_compat.get_folder_paths(folder)))
    return p


def pick_weights_file(node: str, input_name: str, folder: str, name: str, kinds: tuple, what: str,
                      hints: dict | None = None):
    """``(path, kind)`` of input ``input_name`` (:func:`pick_file`), refused unless one of ``kinds``."""
    path = pick_file(node, input_name, folder, name)
    with about_input(node, input_name):
        try:
            return path, weights_file_kind(path, name, kinds, what, hints, field=input_name)
        except FieldError as e:
            raise node_error(node, e.field, str(e)) from e


def file_present(folder: str, name) -> bool | str:
    """``VALIDATE_INPUTS`` of a file widget: True, or the not-found message (so a graph naming an
    absent released file says which file it expects and where to put it, instead of ComfyUI's
    "value not in list")."""
    if isinstance(name, str) and name and _full(folder, name) is not None:
        return True
    return missing_file_message(folder, name, comfy_compat.get_folder_paths(folder))
