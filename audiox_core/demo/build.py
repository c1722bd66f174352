"""Build, save and load the parts of the demo model (see :mod:`.model_config`).

* :func:`build_demo_model` — the AudioX-Turbo model of a :class:`~.model_config.DemoConfig` on the
  CPU with freshly initialised weights (deterministic from ``seed``; each module's own
  initialisation, as a training run starts) and, optionally, the trained VAE in both of its
  copies (``pretransform`` and the audio-prompt conditioner's).
* :func:`new_demo_t5` / :func:`save_t5_folder` / :func:`load_demo_t5` — the byte-level T5 text
  encoder as a Hugging Face folder (``config.json``, ``model.safetensors``, ``byte_tokenizer.json``)
  that :meth:`audiox_core.conditioning.t5.T5TextEncoder.from_local` loads like any T5.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import CheckpointError
from .model_config import DemoConfig

__all__ = ["build_demo_model", "load_vae_into", "new_demo_t5", "save_t5_folder", "load_demo_t5"]


def load_vae_into(model, vae_path: Union[str, Path]) -> None:
    """Load a bare VAE file (``encoder.*`` / ``decoder.*``) into every VAE copy of ``model``."""
    from ..weights import WeightSource

    src = WeightSource(Path(vae_path))
    keys = src.keys()
    if not any(k.startswith("encoder.layers.") for k in keys):
        raise CheckpointError(f"{vae_path}: not a bare VAE file (no encoder.layers.* keys)")
    targets = [model.pretransform.model]
    ac = model.audio_conditioner
    if ac is not None and hasattr(ac, "pretransform"):
        targets.append(ac.pretransform.model)
    for t in targets:
        dev, dt = t.decoder.layers[0].weight_v.device, t.decoder.layers[0].weight_v.dtype
        t.load_state_dict({k: src.read(k).to(device=dev, dtype=dt) for k in keys}, strict=True)
    if ac is not None and hasattr(ac, "clear_cache"):
        ac.clear_cache()


def build_demo_model(cfg: DemoConfig, *, vae_path: Optional[Union[str, Path]] = None, seed: int = 0):
    """The demo model (fp32, CPU, train mode off) with fresh weights; the VAE from ``vae_path``."""
    from ..models.audiox import build_model

    torch.manual_seed(int(seed))
    model = build_model(cfg.audiox, device="cpu")
    if vae_path is not None:
        load_vae_into(model, vae_path)
    return model.eval()


def new_demo_t5(cfg: DemoConfig, *, seed: int = 0):
    """A freshly initialised ``transformers.T5EncoderModel`` of the demo size (fp32)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(int(seed))
    return T5EncoderModel(T5Config(**cfg.t5)).eval()


def save_t5_folder(t5_model, folder: Union[str, Path], *, dtype: Optional[torch.dtype] = torch.float16) -> Path:
    """Write ``config.json``, ``model.safetensors`` (``dtype``; the tied ``encoder.embed_tokens``
    copy of ``shared.weight`` is not stored) and the byte-tokenizer marker into ``folder``."""
    from ..conditioning.tokenizers import ByteTokenizer
    from ..weights import save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t5_model.config.save_pretrained(folder)
    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
          for k, v in t5_model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_safetensors(sd, folder / "model.safetensors", {"format": "pt"})
    ByteTokenizer().save(folder)
    return folder


def load_demo_t5(folder: Union[str, Path], cfg: DemoConfig, *, dtype: torch.dtype = torch.float32,
                 device="cpu"):
    """The demo T5 as a :class:`~audiox_core.conditioning.t5.T5TextEncoder` (d_model checked)."""
    from ..conditioning.t5 import T5TextEncoder

    return T5TextEncoder.from_local(folder, dtype=dtype, device=device, expected_dim=cfg.audiox.cond_dim)


def read_vae_metadata(vae_path: Union[str, Path]) -> dict:
    """The metadata the VAE trainer wrote (``vae_config`` as a dict, ``latent_scale`` as float)."""
    from ..weights import WeightSource

    md = dict(WeightSource(Path(vae_path)).metadata)
    out = dict(md)
    if "vae_config" in md:
        out["vae_config"] = json.loads(md["vae_config"])
    if "latent_scale" in md:
        out["latent_scale"] = float(md["latent_scale"])
    return out
