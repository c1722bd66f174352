"""Which files of the model folders a loader lists, whatever host provides the folders.

A host (ComfyUI's ``folder_paths``, or :mod:`audiox_core.standalone`) gives the names in a folder
and the file each leads to; the functions here decide what is offered: weights files of the wanted
kinds (detected from their keys and shapes, :func:`audiox_core.checkpoint.classify_file`, never
from the name), Hugging Face text-encoder folders by folder name, and what to say when a chosen
file is missing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional

from .errors import AudioXError, FieldError

log = logging.getLogger(__name__)

#: files that make a folder with a config.json a Hugging Face text-encoder folder
TOKENIZER_FILES = ("byte_tokenizer.json", "tokenizer.json", "spiece.model", "tokenizer_config.json")

NamedPaths = Iterable[tuple[str, Optional[Path]]]  # (listed name, its file or None when unusable)


def has_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds one of :data:`TOKENIZER_FILES`."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def is_hf_text_folder(folder: Path) -> bool:
    """A Hugging Face-style T5 folder: config.json plus a tokenizer file."""
    return (folder / "config.json").is_file() and has_tokenizer(folder)


def needs_outside_tokenizer(path: Path) -> bool:
    """A single weights file with no tokenizer beside it (the host's own tokenizer is needed)."""
    return path.is_file() and not has_tokenizer(path.parent)


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is ``folder`` or inside it."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def weights_files(named_paths: NamedPaths) -> list[tuple[str, Path]]:
    """The usable ``(name, path)`` pairs, without the insides of Hugging Face text folders."""
    return [(name, path) for name, path in named_paths
            if path is not None and not ("/" in name and is_hf_text_folder(path.parent))]


def files_of_kind(named_paths: NamedPaths, kinds: tuple[str, ...]) -> list[str]:
    """The names whose weights make them one of ``kinds`` (classification cached per file version).
    A file that cannot be read is listed too, so that choosing it shows its error instead of the
    file vanishing."""
    from .checkpoint import classify_file
    out = []
    for name, path in weights_files(named_paths):
        try:
            kind = classify_file(path).kind
        except (AudioXError, OSError) as e:
            log.warning("AudioX: %s could not be classified (%s); listed so that its error can be seen", path, e)
            out.append(name)
            continue
        if kind in kinds:
            out.append(name)
    return out


def text_encoder_choices(named_paths: NamedPaths, skip_folder: Path) -> list[str]:
    """T5 choices: Hugging Face folders (listed by folder name) and single weights files, except
    the files inside ``skip_folder`` (a folder of other models that also holds a T5 folder)."""
    out: list[str] = []
    for name, path in named_paths:
        if path is None:
            continue
        if "/" in name and is_hf_text_folder(path.parent):
            folder = name.rsplit("/", 1)[0]
            if folder not in out:
                out.append(folder)
        elif not is_inside(path, skip_folder):
            out.append(name)
    return out


def weights_file_kind(path: Path, name: str, kinds: tuple[str, ...], what: str, hints: Optional[dict] = None, *,
                      field: str = "file"):
    """What weights file ``path`` (chosen as ``name``) is (:class:`~audiox_core.checkpoint.FileKind`,
    from its keys); a :class:`FieldError` about ``field`` unless one of ``kinds``: "'name' is <what
    it is>, not <what>" plus ``hints[kind]`` (e.g. which loader takes such a file)."""
    from .checkpoint import classify_keys
    from .weights import WeightSource
    kind = classify_keys(WeightSource(path).keys())
    if kind.kind not in kinds:
        raise FieldError(field, f"'{name}' is {kind.description}, not {what}" + (hints or {}).get(kind.kind, ""))
    return kind


def missing_file_message(folder: str, name, searched: Iterable[str]) -> str:
    """'not found' with the directories searched and, for a released file, what it is and where it goes."""
    from .official_files import missing_file_hint
    hint = missing_file_hint(folder, str(name or ""))
    return (f"'{name}' was not found in models/{folder} (searched: {', '.join(searched)})"
            + (f" — {hint}" if hint else ""))
