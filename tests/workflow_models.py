"""Tiny-weight factories for ``extra.audiox_test.models`` of the example graphs (helper, not a test).

Each factory writes a weights file (or folder) of the same architecture as the file a graph names,
at toy size with deterministic random weights (audiox_core.tiny), so every graph can run on the
CPU in seconds.  Registered with :func:`comfy_harness.model_factory`; imported by
tests/test_workflows.py and the integration test.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

import comfy_harness as H
from audiox_core import tiny
from audiox_core.checkpoint import save_model
from audiox_core.weights import save_safetensors


def _save(variant: str, path: Path, role: str = "", seed: int = 0) -> None:
    m = tiny.make_tiny_model(variant, seed=seed)
    if role:
        m.info = {"role": role}
    save_model(m, path, role=role)


@H.model_factory("tiny_turbo")
def tiny_turbo(path: Path) -> None:
    """Tiny AudioX-Turbo distilled student (role 'student')."""
    _save("audiox_turbo", path, "student", seed=1)


@H.model_factory("tiny_turbo_base")
def tiny_turbo_base(path: Path) -> None:
    """Tiny AudioX-Turbo base/teacher (rectified flow, role 'base')."""
    _save("audiox_turbo", path, "base", seed=2)


@H.model_factory("tiny_audiox")
def tiny_audiox(path: Path) -> None:
    _save("audiox", path, seed=3)


@H.model_factory("tiny_maf")
def tiny_maf(path: Path) -> None:
    _save("audiox_maf", path, seed=4)


@H.model_factory("tiny_maf_mmdit")
def tiny_maf_mmdit(path: Path) -> None:
    _save("audiox_maf_mmdit", path, seed=5)


@H.model_factory("tiny_maf_official_ckpt")
def tiny_maf_official_ckpt(path: Path) -> None:
    """Tiny AudioX-MAF in the official layout: a Lightning-style ``.ckpt`` (``state_dict``) with a
    ``config.json`` beside it."""
    m = tiny.make_tiny_model("audiox_maf", seed=6)
    torch.save({"state_dict": {k: v.contiguous() for k, v in m.state_dict().items()}}, path)
    (Path(path).parent / "config.json").write_text(json.dumps(m.config.to_dict()))


def _official_ckpt(variant: str, path: Path, seed: int) -> None:
    m = tiny.make_tiny_model(variant, seed=seed)
    torch.save({"state_dict": {k: v.contiguous() for k, v in m.state_dict().items()}}, path)
    (Path(path).parent / "config.json").write_text(json.dumps(m.config.to_dict()))


@H.model_factory("tiny_audiox_official_ckpt")
def tiny_audiox_official_ckpt(path: Path) -> None:
    """Tiny AudioX (DiT) in the official layout (``model.ckpt`` with ``state_dict``, config.json beside)."""
    _official_ckpt("audiox", path, 9)


@H.model_factory("tiny_maf_mmdit_official_ckpt")
def tiny_maf_mmdit_official_ckpt(path: Path) -> None:
    """Tiny AudioX-MAF-MMDiT in the official layout (``model.ckpt`` with ``state_dict``, config.json beside)."""
    _official_ckpt("audiox_maf_mmdit", path, 10)


@H.model_factory("tiny_t5")
def tiny_t5(path: Path) -> None:
    """A tiny T5 as a Hugging Face folder (config.json, model.safetensors, byte tokenizer)."""
    tiny.save_tiny_t5(path)


@H.model_factory("tiny_synchformer")
def tiny_synchformer(path: Path) -> None:
    from audiox_core.conditioning.synchformer import save_synchformer
    save_synchformer(tiny.tiny_synchformer(), path)


@H.model_factory("tiny_vae")
def tiny_vae(path: Path) -> None:
    """A standalone tiny Oobleck VAE file (``encoder.*`` / ``decoder.*`` keys, like VAE.ckpt)."""
    m = tiny.make_tiny_model("audiox_turbo", seed=7)
    sd = {k[len("pretransform.model."):]: v.contiguous() for k, v in m.state_dict().items()
          if k.startswith("pretransform.model.")}
    save_safetensors(sd, path, {"format": "pt"})


@H.model_factory("tiny_vae_ckpt")
def tiny_vae_ckpt(path: Path) -> None:
    """The tiny VAE as a pickle ``.ckpt`` with a ``state_dict`` wrapper (like the released VAE files)."""
    m = tiny.make_tiny_model("audiox_turbo", seed=7)
    sd = {k[len("pretransform.model."):]: v.contiguous() for k, v in m.state_dict().items()
          if k.startswith("pretransform.model.")}
    torch.save({"state_dict": sd}, path)


@H.model_factory("tiny_turbo_official_ckpt")
def tiny_turbo_official_ckpt(path: Path) -> None:
    """Tiny AudioX-Turbo student in the official release layout: a flat ``.ckpt`` state dict without
    any VAE weights (those come from vae.ckpt) and the model's config.json beside it."""
    m = tiny.make_tiny_model("audiox_turbo", seed=8)
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if "pretransform.model." not in k}
    torch.save(sd, path)
    (Path(path).parent / "config.json").write_text(json.dumps(m.config.to_dict()))


@H.model_factory("tiny_synchformer_pth")
def tiny_synchformer_pth(path: Path) -> None:
    """The tiny Synchformer as a ``.pth`` dict (like synchformer_state_dict.pth) that also carries its
    sizes under ``synchformer_config`` (the official file has the official sizes and no such entry)."""
    from dataclasses import asdict
    m = tiny.tiny_synchformer()
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    sd["synchformer_config"] = asdict(m.cfg)
    torch.save(sd, path)


# ------------------------------------------------------------------ training graphs
from runner import headless  # noqa: E402
#: the first clips of the example training folder (one of them with a video)
TINY_DATASET_CLIPS = list(headless.EXAMPLE_DATASET_CLIPS)[:3]


@H.input_factory("tiny_example_dataset")
def tiny_example_dataset(path: Path) -> None:
    """The example training folder (runner/headless.py) cut down to three 1-second clips at 8 kHz,
    captions in sidecar .txt files, the first clip with a video."""
    headless.make_example_dataset(path, TINY_DATASET_CLIPS, sample_rate=8000, seconds=1.0)


def tiny_lora_for(variant: str, seed: int, path: Path, *, rank: int = 4, lora_seed: int = 0) -> None:
    """A LoRA (non-zero update) for the tiny model ``make_tiny_model(variant, seed=seed)``."""
    from audiox_core.training import create_lora
    m = tiny.make_tiny_model(variant, seed=seed)
    lora = create_lora(m, rank=rank, targets="all", seed=lora_seed)
    g = torch.Generator().manual_seed(lora_seed + 1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    lora.save(path, steps=1, notes="tiny test LoRA")


@H.model_factory("tiny_turbo_base_lora")
def tiny_turbo_base_lora(path: Path) -> None:
    """A LoRA of the tiny Turbo base model (tiny_turbo_base)."""
    tiny_lora_for("audiox_turbo", 2, path)
