"""Load everything a generation needs in one call, and the shipped demo model.

>>> from audiox_core.api import load
>>> model = load("models/audiox/AudioX-MAF/model.ckpt", t5="models/text_encoders/t5-base",
...              synchformer="models/audiox/synchformer_state_dict.pth", dtype="bf16")
>>> from audiox_core.task import GenerationRequest, generate
>>> result = generate(model, GenerationRequest(prompt="rain on a tin roof"))
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from .checkpoint import load_model, parse_dtype
from .errors import CheckpointError

log = logging.getLogger(__name__)

#: Where the repository's own demo model lives (see audiox_core/demo/ and the README).
DEMO_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"


def load(model_path, *, config=None, vae=None, t5=None, synchformer=None, clip_vision=None,
         dtype="fp32", vae_dtype="fp32", device="cpu", part: Optional[str] = None):
    """Load an AudioX checkpoint and attach its external parts.

    ``t5``: a T5 folder or file; when omitted, a ``t5/`` or ``*_t5/`` folder beside the checkpoint
    is used if present (the demo model ships that way).  ``synchformer``: the Synchformer file;
    when omitted, ``synchformer_state_dict.pth`` beside the checkpoint is used if present.
    """
    model = load_model(model_path, config=config, dtype=dtype, device=device, vae=vae, vae_dtype=vae_dtype,
                       part=part, clip_vision=clip_vision)
    folder = Path(model_path).parent
    if t5 is None:
        cands = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p.name == "t5" or p.name.endswith("_t5"))]
        t5 = cands[0] if cands else None
    if t5 is not None:
        from .conditioning.t5 import T5TextEncoder
        model.set_text_encoder(T5TextEncoder.from_local(t5, device=device, expected_dim=model.config.cond_dim))
    if synchformer is None and (folder / "synchformer_state_dict.pth").is_file():
        synchformer = folder / "synchformer_state_dict.pth"
    if synchformer is not None:
        from .conditioning.synchformer import Synchformer
        sf = synchformer if isinstance(synchformer, torch.nn.Module) else \
            Synchformer.from_file(synchformer, dtype=parse_dtype(dtype), device=device)
        model.set_synchformer(sf)
    return model


def demo_files(kind: str = "turbo") -> Path:
    """Path of the shipped demo checkpoint (``kind``: "turbo" student or "base" teacher)."""
    p = DEMO_DIR / f"audiox_demo_{kind}.safetensors"
    if not p.is_file():
        raise CheckpointError(f"the demo model is not in this checkout ({p}); see the README to rebuild it")
    return p
