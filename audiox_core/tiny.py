"""Tiny configs of every variant: the same architecture and code paths, a few thousand times smaller.

Used by the tests (plumbing and numerics against formulas — they prove nothing about quality) and
by anyone who wants to exercise a graph without real weights.  ``tiny_config(variant)`` returns an
official-schema :class:`AudioXConfig`; :func:`make_tiny_model` builds it with random weights;
:func:`save_tiny_t5` / :func:`tiny_synchformer` make matching T5 and Synchformer parts.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .config import AudioXConfig, VAEConfig

#: A small Oobleck VAE: 8 kHz, ÷64, 8 latent channels.
TINY_VAE = VAEConfig(in_channels=2, channels=4, c_mults=(1, 2, 2), strides=(4, 4, 4), encoder_latent_dim=16,
                     latent_dim=8, downsampling_ratio=64)
TINY_COND_DIM = 32
TINY_SAMPLE_RATE = 8000
#: A tiny CLIP ViT + temporal transformer: 32×32 frames, 2 s at 5 fps; 40 sync tokens (2 s at 25 fps).
TINY_CLIP = dict(hidden_size=TINY_COND_DIM, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 image_size=32, patch_size=16, projection_dim=16, duration=2, temporal_depth=1, temporal_heads=2,
                 temporal_dim_head=16, sync_tokens=40)
TINY_T5 = dict(d_model=TINY_COND_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=259,
               relative_attention_num_buckets=8, relative_attention_max_distance=32)


def tiny_config(variant: str = "audiox_turbo", *, latents: int = 32, vae: VAEConfig = TINY_VAE,
                sample_rate: int = TINY_SAMPLE_RATE, embed_dim: int = 64, depth: int = 2) -> AudioXConfig:
    """Official-schema config of ``variant`` at toy size.

    ``latents`` is the generated length in VAE frames (MMDiT models are fixed to it).
    """
    d = TINY_COND_DIM
    pre = vae.to_pretransform()
    video = {"id": "video_prompt", "type": "clip" if variant == "audiox" else "clip-with-sync-w-empty-feat",
             "config": {"clip_model_name": "clip-vit-base-patch32", "clip_config": dict(TINY_CLIP)}}
    text = {"id": "text_prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 128}}
    if variant == "audiox":
        audio = {"id": "audio_prompt", "type": "audio_autoencoder",
                 "config": {"sample_rate": sample_rate, "pretransform_config": copy.deepcopy(pre)}}
    elif variant == "audiox_maf":
        audio = {"id": "audio_prompt", "type": "mel_spec",
                 "config": {"mel_spec_type": "mel_features", "n_mel_channels": 16, "target_sample_rate": sample_rate,
                            "n_fft": 256, "hop_length": 64, "win_length": 256,
                            "mask_ratio_start": 0.7, "mask_ratio_end": 1.0}}
    else:
        acfg = {"sample_rate": sample_rate, "latent_seq_len": latents, "pretransform_config": copy.deepcopy(pre)}
        if variant == "audiox_turbo":
            acfg.update(mask_ratio_start=0.25, mask_ratio_end=0.75)
        audio = {"id": "audio_prompt", "type": "audio_autoencoder" if variant == "audiox_turbo"
                 else "audio_autoencoder_v2", "config": acfg}
    mmdit = variant in ("audiox_maf_mmdit", "audiox_turbo")
    bcfg = {"io_channels": vae.latent_dim, "embed_dim": embed_dim, "depth": depth,
            "num_heads": 8 if mmdit else 2, "cond_token_dim": d, "global_cond_dim": 0 if mmdit else embed_dim,
            "project_cond_tokens": False, "transformer_type": "continuous_transformer"}
    if mmdit:
        bcfg["_latent_seq_len"] = latents + 1
    diffusion = {"type": "mmdit" if mmdit else "dit",
                 "diffusion_objective": "rectified_flow" if variant == "audiox_turbo" else "v",
                 "cross_attention_cond_ids": ["video_prompt", "text_prompt", "audio_prompt"],
                 "global_cond_ids": [], "config": bcfg}
    if variant != "audiox":
        diffusion.update(gate=True, gate_type="MAF",
                         gate_type_config={"dim": d, "num_experts_per_modality": 4, "num_heads": 2,
                                           "num_fusion_layers": 1})
    return AudioXConfig.from_dict({
        "model_type": "diffusion_cond", "sample_rate": sample_rate,
        "sample_size": latents * vae.downsampling_ratio, "video_fps": 5, "audio_channels": vae.in_channels,
        "model": {"io_channels": vae.latent_dim, "pretransform": pre,
                  "conditioning": {"cond_dim": d, "configs": [video, text, audio]}, "diffusion": diffusion},
    })


def init_random_(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Deterministic random weights for every floating tensor (zero buffers stay zero).

    Normal(0, std) for matrices, 1 ± small for norm gains, and gates around 0 so MAF's bypass
    and the sync branch are active (the official inits would make them near no-ops).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point():
                continue
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("gamma",) or (leaf == "weight" and p.dim() == 1):
                v = 1.0 + 0.1 * r
            elif leaf == "weight_g":
                v = 1.0 + 0.1 * r.abs()
            elif leaf.startswith("bypass_gate"):
                v = 0.5 * r
            else:
                v = std * r
            p.copy_(v.to(p.dtype))
    return model


def make_tiny_model(variant: str = "audiox_turbo", *, seed: int = 0, dtype=torch.float32, **kw):
    """A tiny model of ``variant`` with deterministic random weights, on the CPU, in eval mode."""
    from .models.audiox import build_model
    cfg = tiny_config(variant, **kw)
    m = build_model(cfg, device="cpu")
    init_random_(m, seed)
    return m.to(dtype).eval().requires_grad_(False)


def save_tiny_t5(folder, *, seed: int = 0, d_model: int = TINY_COND_DIM) -> Path:
    """A random tiny T5 encoder as a Hugging Face folder with the byte-level tokenizer marker."""
    from transformers import T5Config, T5EncoderModel

    from .conditioning.tokenizers import MARKER_FILE
    from .weights import save_safetensors
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = T5Config(**dict(TINY_T5, d_model=d_model), is_encoder_decoder=False, use_cache=False)
    torch.manual_seed(seed)
    m = T5EncoderModel(cfg)
    cfg.save_pretrained(folder)
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_safetensors(sd, folder / "model.safetensors", {"format": "pt"})
    (folder / MARKER_FILE).write_text(json.dumps({"type": "byte", "note": "ByT5-style byte-level tokenizer"}))
    return folder


def tiny_synchformer(seed: int = 0, embed_dim: int = TINY_COND_DIM):
    """A random tiny Synchformer whose features match the tiny configs' sync branch."""
    from .conditioning.synchformer import Synchformer, SynchformerConfig
    torch.manual_seed(seed)
    cfg = SynchformerConfig(embed_dim=embed_dim, depth=1, num_heads=2, mlp_ratio=2, patch_size=16,
                            image_size=32)
    return Synchformer(cfg).eval().requires_grad_(False)
