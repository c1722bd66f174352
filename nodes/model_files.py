"""Model files: which files of ComfyUI's model folders (and this pack's ``models/demo``) the loader
nodes list, and the one place that resolves a chosen name to a file (or says what is missing).

What a file is comes from its keys and shapes (:func:`audiox_core.checkpoint.classify_keys`),
never from its name.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..audiox_core.errors import AudioXError
from . import comfy_compat
from .common import about_input, node_error

log = logging.getLogger(__name__)

PACK_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = PACK_ROOT / "models" / "demo"
WEIGHT_EXTS = [".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".sft"]

comfy_compat.register_model_folder("audiox", "audiox", WEIGHT_EXTS)
comfy_compat.register_model_folder("text_encoders", "text_encoders", [".safetensors", ".bin", ".pt", ".sft"])
comfy_compat.register_model_folder("clip_vision", "clip_vision", [".safetensors", ".bin", ".pt", ".pth"])
comfy_compat.add_model_path("audiox", DEMO_DIR)
comfy_compat.add_model_path("text_encoders", DEMO_DIR)

TOKENIZER_FILES = ("byte_tokenizer.json", "tokenizer.json", "spiece.model", "tokenizer_config.json")


def _is_hf_text_folder(folder: Path) -> bool:
    """A Hugging Face-style T5 folder: config.json plus a tokenizer file."""
    return (folder / "config.json").is_file() and any((folder / n).is_file() for n in TOKENIZER_FILES)


def _full(folder: str, name: str) -> Path | None:
    """A listed name's path (None if absent or if it leads outside the folder, e.g. a symlink)."""
    try:
        return comfy_compat.find_model_file(folder, name)
    except AudioXError:
        return None


def _in_demo_dir(p: Path) -> bool:
    try:
        p.resolve().relative_to(DEMO_DIR.resolve())
        return True
    except ValueError:
        return False


def _weights_files(folder: str) -> list[tuple[str, Path]]:
    """Weights files of a model folder (+ demo), without the insides of Hugging Face text folders."""
    out = []
    for name in comfy_compat.get_filename_list(folder):
        p = _full(folder, name)
        if p is None or ("/" in name and _is_hf_text_folder(p.parent)):
            continue
        out.append((name, p))
    return out


def list_files_of_kind(folder: str, kinds: tuple[str, ...]) -> list[str]:
    """The files of ``folder`` whose weights make them one of ``kinds`` (detected from the keys,
    :func:`audiox_core.checkpoint.classify_file`, cached per file version).  A file that cannot be
    read is listed too, so that choosing it shows its error instead of the file vanishing."""
    from ..audiox_core.checkpoint import classify_file
    out = []
    for name, path in _weights_files(folder):
        try:
            kind = classify_file(path).kind
        except (AudioXError, OSError) as e:
            log.warning("AudioX: %s could not be classified (%s); listed so that its error can be seen", path, e)
            out.append(name)
            continue
        if kind in kinds:
            out.append(name)
    return out


MODEL_KINDS = ("audiox", "audiox_training")


def list_audiox_files() -> list[str]:
    """AudioX model checkpoints of ``models/audiox`` (+ demo): not VAE, Synchformer or other files."""
    return list_files_of_kind("audiox", MODEL_KINDS)


def list_text_encoders() -> list[str]:
    """T5 choices: Hugging Face folders (listed by folder name) and single weights files."""
    out: list[str] = []
    for name in comfy_compat.get_filename_list("text_encoders"):
        p = _full("text_encoders", name)
        if p is None:
            continue
        if "/" in name and _is_hf_text_folder(p.parent):
            folder = name.rsplit("/", 1)[0]
            if folder not in out:
                out.append(folder)
        elif not _in_demo_dir(p):  # the demo folder's model files are AudioX checkpoints, not T5
            out.append(name)
    return out


def _missing(folder: str, name: str) -> str:
    """'not found' with, for a released file, what it is and where it goes."""
    from ..audiox_core.official_files import missing_file_hint
    searched = ", ".join(comfy_compat.get_folder_paths(folder))
    hint = missing_file_hint(folder, str(name or ""))
    return f"'{name}' was not found in models/{folder} (searched: {searched})" + (f" — {hint}" if hint else "")


def pick_file(node: str, input_name: str, folder: str, name: str) -> Path:
    """The file of input ``input_name``: inside models/<folder> (symlinks resolved) or refused."""
    with about_input(node, input_name):
        p = comfy_compat.find_model_file(folder, name, what=f"a name in models/{folder}")
    if p is None:
        raise node_error(node, input_name, _missing(folder, name))
    return p


def file_present(folder: str, name) -> bool | str:
    """``VALIDATE_INPUTS`` of a file widget: True, or the not-found message (so a graph naming an
    absent released file says which file it expects and where to put it, instead of ComfyUI's
    "value not in list")."""
    if isinstance(name, str) and name and _full(folder, name) is not None:
        return True
    return _missing(folder, name)
