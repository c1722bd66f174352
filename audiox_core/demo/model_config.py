"""The demo model: a small AudioX-Turbo (MMDiT + MAF, rectified flow) sized for the demo world.

No official AudioX weights can be downloaded where the demo runs, so the README's main command
uses a model of the same architecture that we train ourselves on the procedural world of
:mod:`audiox_core.demo.world` (16 kHz, 4 s clips, 25 fps, 64×64 frames).  Everything here is an
ordinary official-schema config (:class:`~audiox_core.config.AudioXConfig`): the loaders, samplers
and nodes treat the demo model exactly like the released ones.

:func:`demo_config` returns a :class:`DemoConfig` ``(audiox, t5)``: the model config (variant
``audiox_turbo``; the base/teacher and the distilled 4-step student share it, they differ by the
file's ``audiox_role``) and the keyword arguments of the byte-level T5 encoder's
``transformers.T5Config``.

Design (the numbers are :data:`DEMO_SIZES`; :func:`size_report` recomputes the budget)
------------------------------------------------------------------------------------------
* **VAE** (Oobleck, the official classes): 2 channels (the audio-prompt conditioner forces stereo;
  the world is mono, both channels carry the same signal), 16 kHz, strides (4, 4, 4, 10) →
  downsampling ratio **640**: 25 latent frames per second, the same rate as the video, so a
  4 s clip is exactly **100 latents** (``sample_size`` 64000) and an MMDiT sequence of
  ``_latent_seq_len`` = 101 (time token + 100 latents).  32 latent channels (20× fewer values
  than mono samples), ``channels`` 8, ``c_mults`` (2, 4, 8, 16): widths 8 @ 16 kHz, 16 @ 4 kHz,
  32 @ 1 kHz, 64 @ 250 Hz, 128 @ 25 Hz.  The full-rate level is kept narrow because it sets the
  training cost: a step on 8 × 1 s crops takes ~0.5 s of this 2-core CPU with width 8, ~2.3 s
  with width 16 (``c_mults`` (1, 2, 4, 8), strides (2, 4, 8, 10)); elementwise SnakeBeta work at
  16 kHz dominates.  Odd strides are refused (Oobleck's padding only keeps lengths for even
  strides).  ``scale`` (the official pretransform field) is set by the recipe to the latents' std.
  The **decoder** has widths of its own (``vae_decoder_channels`` 32, ``vae_decoder_c_mults``
  (1, 1, 2, 4): 128 @ 25 Hz, 64 @ 250 Hz, 32 @ 1 kHz, 32 @ 4 kHz, 32 @ 16 kHz; +54 k parameters):
  the width-8 full-rate decoder lost the band above 3 kHz and distorted pure tones.  The recipe
  trains it in a second phase on the frozen encoder, so the wider full-rate level costs
  decoder-only steps (docs/TRAINING.md, "The demo VAE's decoder").
* **Conditioning width** ``cond_dim`` = 128 for every modality: CLIP width, T5 ``d_model``, MAF
  ``dim``, audio-prompt output and ``cond_token_dim`` of the backbone (the MMDiT context width
  follows ``cond_token_dim``; it is 768 in every released config).
* **Video**: ``clip-with-sync-w-empty-feat`` with a ``clip_config`` override: a 1-layer ViT on
  64×64 frames, patch 16 (16 patches + CLS = 17 tokens per frame), ``video_fps`` 25 and
  ``duration`` 4 → 100 frames per clip (40 ms per frame: an onset is shown within ±20 ms),
  ``proj`` Linear(100·17 → 128); 1-layer temporal transformer (4 heads × 32, MLP 256);
  ``sync_tokens`` 8 (the demo has no Synchformer; as in the official Turbo training the sync
  input is zeros, so only ``proj_sync``'s bias pattern reaches the model).
* **Text**: byte-level T5 (:class:`~audiox_core.conditioning.tokenizers.ByteTokenizer`, vocab
  259), ``d_model`` 128, 3 layers, 4 heads × 32, ``d_ff`` 384, relu; ``max_length`` 128 as the
  official (every world caption fits in 127 bytes).
* **Audio prompt**: v2 (Turbo ``audio_autoencoder``) with its own VAE copy, ``latent_seq_len``
  100, random span masking **0.25–0.75 kept as in the official Turbo config**.  Why: (1) the
  demo is then the Turbo architecture with the Turbo semantics, no special case anywhere;
  (2) training with the target's own audio as prompt is only useful when part of it is blanked
  (otherwise the model learns to copy the prompt), and the conditioner's own masking does that;
  (3) for inpainting / completion at inference the caller zeroes the region to regenerate itself
  and passes ``mask=False`` (an option of :class:`~audiox_core.conditioning.audio_prompt.AudioPromptV2`)
  so the gap is exactly the user's; a gap of 25–75 % of the clip (1–3 s) is what training saw.
* **MAF**: dim 128, 16 experts per modality, 4 heads, 1 fusion layer.
* **Backbone**: MMDiT, ``embed_dim`` 256, depth 4, ``num_heads`` 64 (the official head-count
  quirk makes that 4 heads of width 64), ``mlp_ratio`` 1.5 (ConvMLP hidden 256), kernel 3:
  1.64 M parameters per block.

Size budget
-----------
Each model file holds the whole model (backbone, MAF, video and audio-prompt conditioners, and
the VAE twice: ``pretransform`` and the audio prompt's copy).  Shipped as fp16:
``2 files × params × 2 bytes + T5 bytes ≤ 40 MB`` (:func:`size_report`; checked by
``tests/test_demo_config.py``)::

    backbone 6 556 517 · MAF 321 158 · CLIP tower 235 648 · temporal transformer + proj 380 417
    VAE 693 274 × 2 · audio-prompt projections 17 152          = 8 897 440 params = 17.79 MB / file
    T5 525 696 params = 1.05 MB
    2 × 17.79 + 1.05 = 36.64 MB (+ ~0.2 MB of headers/config)  ≤ 40 MB

Measured throughput (2-core Xeon, torch 2.13 CPU, 2 threads; the machine was shared with other
jobs at load 3–5, so "free" = process CPU time / 2, an estimate of an idle machine)
-------------------------------------------------------------------------------------------
Backbone + MAF, forward + backward + AdamW, ``_latent_seq_len`` 101, bf16 autocast:

==========================  ======  =====  ==========  ==============
backbone                    params  batch  s / step    samples / s
==========================  ======  =====  ==========  ==============
256 × 3 blocks, mlp 2        6.75 M   16   0.40        40
same, fp32 (no autocast)     6.75 M   16   0.92        17
256 × 3 blocks, mlp 2        6.75 M   32   0.82        39
256 × 3 blocks, mlp 2        6.75 M   64   3.2         20 (cache-bound)
**256 × 4 blocks, mlp 1.5**  6.56 M   32   0.82        39
192 × 6 blocks, mlp 2        6.18 M   32   1.48        22
256 × 3, VAE ÷512 (L 125)    6.76 M   32   0.94        34
256 × 3, VAE ÷256 (L 250)    6.81 M   32   2.69        12
==========================  ======  =====  ==========  ==============

So: bf16 autocast (2.2× over fp32), batch 16–32, the ÷640 VAE (a 250-latent sequence costs 3.3×),
and few wide blocks (depth costs more than width at this size).  A whole training step (T5
forward+backward on 128 byte tokens, temporal transformer + ``proj`` on cached CLIP hidden
states, audio-prompt projections, MAF, backbone, AdamW over all of it) at batch 16: 1.0 s
(16 samples/s; 2.1 s wall at load 4.9).  The frozen CLIP tower on 16 × 100 frames: 0.28 s
(cached once by the data stage).  VAE training step (8 × 1 s crops): 0.5 s with ``channels`` 8,
2.3 s with ``channels`` 16.  The recipe's time budget is in :mod:`audiox_core.demo.recipe`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple, Optional

from ..config import AudioXConfig, VAEConfig
from ..errors import ConfigError
from .world import DEFAULT_CONFIG as WORLD_DEFAULT, WorldConfig

__all__ = ["DemoSizes", "DEMO_SIZES", "DemoConfig", "demo_config", "demo_vae_config", "t5_config_kwargs",
           "size_report", "SIZE_LIMIT_BYTES", "SHIPPED_LAYOUT", "BYTE_VOCAB"]

#: Total size the shipped demo weights may take (base + Turbo student + T5), bytes.
SIZE_LIMIT_BYTES = 40_000_000
#: Byte tokenizer vocabulary: 256 bytes + <pad>, </s>, <unk>.
BYTE_VOCAB = 259

#: Where the demo weights live inside the repository (relative to the repo root).  The node layer
#: registers ``models/demo`` as an extra path of the ``audiox`` and ``text_encoders`` folders, so
#: the files are listed like any user model; the loaders read the config from the safetensors
#: metadata (``audiox_config``) and the Turbo role from ``audiox_role``.
SHIPPED_LAYOUT = {
    "folder": "models/demo",
    "base": "models/demo/audiox_demo_base.safetensors",     # rectified-flow teacher, role "base"
    "turbo": "models/demo/audiox_demo_turbo.safetensors",   # 4-step DMD student, role "student"
    "t5": "models/demo/demo_t5",                            # config.json, model.safetensors, byte_tokenizer.json
}


@dataclass(frozen=True)
class DemoSizes:
    """Every size knob of the demo model (defaults: :data:`DEMO_SIZES`)."""

    # VAE
    vae_channels: int = 8
    vae_c_mults: tuple = (2, 4, 8, 16)
    vae_strides: tuple = (4, 4, 4, 10)
    latent_dim: int = 32
    # the decoder's own widths (None: the encoder's); the recipe trains the encoder with an
    # encoder-shaped decoder first, then this decoder on the frozen encoder (RecipeConfig.vae_decoder_*)
    vae_decoder_channels: Optional[int] = 32
    vae_decoder_c_mults: Optional[tuple] = (1, 1, 2, 4)
    # shared conditioning width
    cond_dim: int = 128
    # video conditioner (CLIP tower + temporal transformer)
    clip_layers: int = 1
    clip_heads: int = 4
    clip_mlp: int = 256
    clip_image: int = 64
    clip_patch: int = 16
    clip_projection_dim: int = 16  # visual_projection exists in the tower but AudioX never uses it
    temporal_depth: int = 1
    temporal_heads: int = 4
    temporal_dim_head: int = 32
    temporal_mlp: int = 256
    sync_tokens: int = 8
    # text encoder (byte-level T5)
    t5_layers: int = 3
    t5_heads: int = 4
    t5_d_kv: int = 32
    t5_d_ff: int = 384
    t5_buckets: int = 32
    t5_max_distance: int = 128
    text_max_length: int = 128
    # audio prompt
    mask_ratio_start: float = 0.25
    mask_ratio_end: float = 0.75
    # MAF
    maf_experts: int = 16
    maf_heads: int = 4
    maf_layers: int = 1
    # backbone (MMDiT)
    embed_dim: int = 256
    depth: int = 4
    head_width: int = 64  # the config's num_heads; the official quirk makes it the head WIDTH
    mlp_ratio: float = 1.5

    def with_(self, **kw) -> "DemoSizes":
        return replace(self, **kw)


DEMO_SIZES = DemoSizes()


class DemoConfig(NamedTuple):
    """``audiox``: the official-schema model config; ``t5``: ``T5Config`` keyword arguments."""

    audiox: AudioXConfig
    t5: dict


def demo_vae_config(sizes: DemoSizes = DEMO_SIZES, scale: float = 1.0, *, own_decoder: bool = True) -> VAEConfig:
    """The demo Oobleck VAE (stereo in/out, ``latent_dim`` channels, ratio = product of strides).

    ``scale``: the pretransform's latent scale (``encode`` returns ``z / scale``); the recipe sets
    it to the standard deviation of the trained VAE's latents so the diffusion model sees
    unit-variance data.  ``own_decoder`` False: the decoder gets the encoder's widths even when
    ``sizes`` gives it its own (the recipe's first VAE phase)."""
    ratio = math.prod(sizes.vae_strides)
    if any(s % 2 for s in sizes.vae_strides):
        raise ConfigError(f"demo VAE: strides {list(sizes.vae_strides)} must be even (the Oobleck padding "
                          "ceil(s/2) only preserves lengths for even strides)")
    return VAEConfig(in_channels=2, channels=sizes.vae_channels, c_mults=tuple(sizes.vae_c_mults),
                     strides=tuple(sizes.vae_strides), encoder_latent_dim=2 * sizes.latent_dim,
                     latent_dim=sizes.latent_dim, downsampling_ratio=ratio, scale=float(scale),
                     decoder_channels=sizes.vae_decoder_channels if own_decoder else None,
                     decoder_c_mults=sizes.vae_decoder_c_mults if own_decoder else None)


def t5_config_kwargs(sizes: DemoSizes = DEMO_SIZES) -> dict:
    """Keyword arguments of ``transformers.T5Config`` for the byte-level demo T5 encoder."""
    return dict(vocab_size=BYTE_VOCAB, d_model=sizes.cond_dim, d_kv=sizes.t5_d_kv, d_ff=sizes.t5_d_ff,
                num_layers=sizes.t5_layers, num_heads=sizes.t5_heads,
                relative_attention_num_buckets=sizes.t5_buckets,
                relative_attention_max_distance=sizes.t5_max_distance, feed_forward_proj="relu",
                dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1)


def demo_config(sizes: DemoSizes = DEMO_SIZES, world: WorldConfig = WORLD_DEFAULT, *,
                vae_scale: float = 1.0) -> DemoConfig:
    """The demo model's config (variant ``audiox_turbo``) and its T5 config.

    The clip length, sample rate and video rate come from ``world``; ``sizes`` sets the rest;
    ``vae_scale`` is the latent scale of both VAE copies (:func:`demo_vae_config`).
    Raises :class:`ConfigError` when the world's clip does not map onto whole latents / frames.
    """
    sr = int(world.sample_rate)
    n = int(round(world.duration * sr))
    vae = demo_vae_config(sizes, vae_scale)
    ratio = vae.downsampling_ratio
    if n % ratio:
        raise ConfigError(f"demo config: a {world.duration} s clip at {sr} Hz ({n} samples) is not a whole "
                          f"number of latents of {ratio} samples")
    latents = n // ratio
    fps = float(world.fps)
    if fps != int(fps) or world.duration != int(world.duration):
        raise ConfigError(f"demo config: the video conditioner needs an integer fps and duration, got "
                          f"{world.fps} fps and {world.duration} s")
    if sizes.cond_dim % sizes.clip_heads or sizes.clip_image % sizes.clip_patch:
        raise ConfigError("demo config: CLIP width/heads or image/patch sizes do not divide")
    d = sizes.cond_dim
    pre = vae.to_pretransform()
    clip_config = dict(hidden_size=d, intermediate_size=sizes.clip_mlp, num_hidden_layers=sizes.clip_layers,
                       num_attention_heads=sizes.clip_heads, image_size=sizes.clip_image,
                       patch_size=sizes.clip_patch, projection_dim=sizes.clip_projection_dim,
                       duration=int(world.duration), temporal_depth=sizes.temporal_depth,
                       temporal_heads=sizes.temporal_heads, temporal_dim_head=sizes.temporal_dim_head,
                       temporal_mlp_dim=sizes.temporal_mlp, sync_tokens=sizes.sync_tokens)
    video = {"id": "video_prompt", "type": "clip-with-sync-w-empty-feat",
             "config": {"clip_model_name": "clip-vit-base-patch32", "video_fps": int(fps), "out_features": 128,
                        "mask_ratio": 0, "mask_type": "input", "sync_type": "add", "clip_config": clip_config}}
    text = {"id": "text_prompt", "type": "t5",
            "config": {"t5_model_name": "t5-base", "max_length": sizes.text_max_length}}
    audio = {"id": "audio_prompt", "type": "audio_autoencoder",
             "config": {"sample_rate": sr, "latent_seq_len": latents, "pretransform_config": copy.deepcopy(pre),
                        "mask_ratio_start": sizes.mask_ratio_start, "mask_ratio_end": sizes.mask_ratio_end}}
    if sizes.embed_dim % sizes.head_width:
        raise ConfigError(f"demo config: embed_dim {sizes.embed_dim} is not a multiple of the head width "
                          f"{sizes.head_width}")
    bcfg = {"io_channels": vae.latent_dim, "embed_dim": sizes.embed_dim, "depth": sizes.depth,
            "num_heads": sizes.head_width, "cond_token_dim": d, "global_cond_dim": 0,
            "project_cond_tokens": False, "transformer_type": "continuous_transformer",
            "_latent_seq_len": latents + 1, "mlp_ratio": sizes.mlp_ratio, "kernel_size": 3}
    diffusion = {"type": "mmdit", "diffusion_objective": "rectified_flow",
                 "cross_attention_cond_ids": ["video_prompt", "text_prompt", "audio_prompt"],
                 "global_cond_ids": [], "config": bcfg, "gate": True, "gate_type": "MAF",
                 "gate_type_config": {"dim": d, "num_experts_per_modality": sizes.maf_experts,
                                      "num_heads": sizes.maf_heads, "num_fusion_layers": sizes.maf_layers}}
    cfg = AudioXConfig.from_dict({
        "model_type": "diffusion_cond", "sample_rate": sr, "sample_size": n, "video_fps": int(fps),
        "audio_channels": 2,
        "model": {"io_channels": vae.latent_dim, "pretransform": pre,
                  "conditioning": {"cond_dim": d, "configs": [video, text, audio]}, "diffusion": diffusion},
        "demo": {"world": _world_summary(world), "sizes": _sizes_dict(sizes)},
    })
    return DemoConfig(cfg, t5_config_kwargs(sizes))


def _sizes_dict(sizes: DemoSizes) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(sizes).items()}


def _world_summary(world: WorldConfig) -> dict:
    return {"sample_rate": world.sample_rate, "duration": world.duration, "fps": world.fps, "size": world.size}


# ----------------------------------------------------------------------------------------------
# Size budget
# ----------------------------------------------------------------------------------------------
def _count(module) -> int:
    return sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())


def t5_param_count(t5: dict) -> int:
    """Parameters of the T5 encoder file (``shared.weight`` stored once; the tied
    ``encoder.embed_tokens.weight`` is not written)."""
    from transformers import T5Config, T5EncoderModel
    import torch

    with torch.device("meta"):
        m = T5EncoderModel(T5Config(**t5))
    return sum(v.numel() for k, v in m.state_dict().items() if k != "encoder.embed_tokens.weight")


def size_report(cfg: Optional[DemoConfig] = None, bytes_per_param: int = 2) -> dict[str, Any]:
    """Parameter counts per part and the shipped byte budget.

    Returns ``{"parts": {name: params}, "model_params", "t5_params", "model_file_bytes",
    "t5_bytes", "total_bytes", "limit_bytes", "fits"}``; ``total = 2 × model file + T5`` at
    ``bytes_per_param`` (2 = fp16/bf16), headers ignored (a few tens of kB).
    """
    from ..models.audiox import build_model

    cfg = cfg or demo_config()
    m = build_model(cfg.audiox, device="meta")
    vc, ac = m.video_conditioner, m.audio_conditioner
    parts = {
        "backbone": _count(m.model),
        "maf": _count(m.maf_block),
        "video_clip_tower": _count(vc.visual_encoder_model),
        "video_temporal_and_proj": _count(vc) - _count(vc.visual_encoder_model),
        "audio_prompt_vae": _count(ac.pretransform),
        "audio_prompt_proj": _count(ac) - _count(ac.pretransform),
        "vae": _count(m.pretransform),
    }
    total = _count(m)
    if sum(parts.values()) != total:  # pragma: no cover - guards a new submodule
        parts["other"] = total - sum(parts.values())
    t5 = t5_param_count(cfg.t5)
    fb, tb = total * bytes_per_param, t5 * bytes_per_param
    return {"parts": parts, "model_params": total, "t5_params": t5, "model_file_bytes": fb, "t5_bytes": tb,
            "total_bytes": 2 * fb + tb, "limit_bytes": SIZE_LIMIT_BYTES, "fits": 2 * fb + tb <= SIZE_LIMIT_BYTES}
