"""The released AudioX files: where each goes under ComfyUI's ``models/`` folder and what loads it.

One table for the loaders' "file not found" errors, the example graphs and the README.  Parameter
counts are those of the official state dicts (key-for-key manifests of the released checkpoints,
see the README); sizes are estimated at 4 bytes per parameter (fp32), not measured on the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["OfficialFile", "OFFICIAL_FILES", "official_file", "missing_file_hint"]


@dataclass(frozen=True)
class OfficialFile:
    path: str          # relative to ComfyUI/models (a folder ends with "/")
    release: str       # where it is published
    what: str
    loader: str
    params: Optional[int] = None

    @property
    def folder(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The name a loader lists it under (the path inside its folder)."""
        return self.path.split("/", 1)[1].rstrip("/")

    def size_gb(self) -> Optional[float]:
        return None if self.params is None else self.params * 4 / 1e9


OFFICIAL_FILES = (
    OfficialFile("audiox/AudioX/model.ckpt", "Hugging Face HKUSTAudio/AudioX (model.ckpt + config.json)",
                 "AudioX (DiT)", "AudioX Model Loader", 1_489_174_804),
    OfficialFile("audiox/AudioX-MAF/model.ckpt", "Hugging Face HKUSTAudio/AudioX-MAF (model.ckpt + config.json)",
                 "AudioX-MAF", "AudioX Model Loader", 1_392_887_321),
    OfficialFile("audiox/AudioX-MAF-MMDiT/model.ckpt",
                 "Hugging Face HKUSTAudio/AudioX-MAF-MMDiT (model.ckpt + config.json)", "AudioX-MAF-MMDiT",
                 "AudioX Model Loader", 2_710_744_568),
    OfficialFile("audiox/AudioX-Turbo/audiox_turbo.ckpt", "AudioX-Turbo release (audiox_turbo.ckpt + config)",
                 "AudioX-Turbo distilled student (no VAE inside)",
                 "AudioX Model Loader + AudioX VAE Loader", 2_554_629_238),
    OfficialFile("audiox/vae.ckpt", "AudioX-Turbo release (vae.ckpt); the same VAE as VAE.ckpt of AudioX-MAF-MMDiT",
                 "Oobleck VAE", "AudioX VAE Loader", 156_112_514),
    OfficialFile("audiox/synchformer_state_dict.pth",
                 "Hugging Face HKUSTAudio/AudioX-MAF or AudioX-MAF-MMDiT (the file MMAudio uses too)",
                 "Synchformer video-sync encoder", "AudioX Synchformer Loader", 122_440_704),
    OfficialFile("text_encoders/t5-base/", "Hugging Face google-t5/t5-base (config.json, model.safetensors, "
                 "tokenizer.json or spiece.model)", "T5-base text encoder", "AudioX T5 Loader", 109_628_544),
)


def official_file(folder: str, name: str) -> Optional[OfficialFile]:
    """The released file that ``name`` in ``folder`` stands for, matched by its path or its last two
    path parts (``AudioX-MAF/model.ckpt``) or, for unique names, its file name."""
    n = name.replace("\\", "/").strip("/").lower()
    for f in OFFICIAL_FILES:
        if f.folder != folder:
            continue
        target = f.name.lower()
        if n == target or n.endswith("/" + target):
            return f
    base = n.rsplit("/", 1)[-1]
    hits = [f for f in OFFICIAL_FILES if f.folder == folder and f.name.lower().rsplit("/", 1)[-1] == base]
    return hits[0] if len(hits) == 1 else None


def missing_file_hint(folder: str, name: str) -> str:
    """What a missing file is and where to put it ('' when it is not a released file)."""
    f = official_file(folder, name)
    if f is None:
        return ""
    size = f" (~{f.size_gb():.1f} GB)" if f.params and f.params > 5e8 else ""
    return (f"it is the {f.what} file from {f.release}{size}; put it at ComfyUI/models/{f.path}"
            + (" with its config.json beside it" if f.path.endswith("model.ckpt") else ""))
