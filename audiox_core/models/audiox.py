"""The whole AudioX model: backbone, conditioners, VAE and (for MAF models) the MAF block.

The module tree mirrors the official ``ConditionedDiffusionModelWrapper`` so that
``AudioXModel.state_dict()`` has exactly the official checkpoint keys, in the official order::

    model.model.*                          diffusion backbone (DiT or MMDiT)
    conditioner.conditioners.video_prompt.*  CLIP video conditioner (+ sync branch)
    conditioner.conditioners.audio_prompt.*  audio-prompt conditioner (with its own VAE copy)
    pretransform.model.{encoder,decoder}.*   Oobleck VAE
    maf_block.*                            MAF fusion (MAF models only)

T5 is not part of the checkpoint (the official keeps it out of the module tree): it is attached
with :meth:`AudioXModel.set_text_encoder`.  The Synchformer is a separate file as well.

One class per released variant (:class:`AudioX`, :class:`AudioXMAF`, :class:`AudioXMAFMMDiT`,
:class:`AudioXTurbo`); they share all code and differ in defaults (sampler, steps).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..config import AudioXConfig, ConditionerSpec
from ..errors import ConfigError, InputError


class DiffusionWrapper(nn.Module):
    """Official ``DiTWrapper``/``MMDiTWrapper``: only holds the backbone as ``.model``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.model = backbone

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


class MultiConditioner(nn.Module):
    """Holds the conditioners that have weights, under ``conditioners.<id>`` in config order."""

    def __init__(self, cfg: AudioXConfig):
        super().__init__()
        self.conditioners = nn.ModuleDict()
        for spec in cfg.conditioners:
            mod = build_conditioner(spec, cfg.cond_dim)
            if mod is not None:
                self.conditioners[spec.id] = mod


def build_conditioner(spec: ConditionerSpec, cond_dim: int) -> Optional[nn.Module]:
    kind = spec.kind
    if kind == "t5":
        return None  # external, not in the checkpoint
    if kind in ("clip", "clip-with-sync-w-empty-feat"):
        from ..conditioning.clip_video import CLIPVideoConditioner
        return CLIPVideoConditioner(spec.config, output_dim=cond_dim, with_sync=(kind != "clip"),
                                    clip_config=spec.config.get("clip_config"))
    from ..conditioning.audio_prompt import AUDIO_PROMPT_CONDITIONERS
    if kind in AUDIO_PROMPT_CONDITIONERS:
        return AUDIO_PROMPT_CONDITIONERS[kind](spec.config, output_dim=cond_dim)
    raise ConfigError(f"conditioner {spec.id!r}: type {spec.type!r} is not used by any released AudioX model "
                      f"and is not supported")


def build_backbone(cfg: AudioXConfig) -> nn.Module:
    if cfg.backbone.type == "dit":
        from .dit import DiT
        return DiT(cfg.backbone)
    from .mmdit import MMDiT
    return MMDiT(cfg.backbone)


class AudioXModel(nn.Module):
    """Base class of the four variants; construct through :func:`model_class_for`."""

    variant = "audiox"

    def __init__(self, cfg: AudioXConfig):
        super().__init__()
        if cfg.variant != self.variant:
            raise ConfigError(f"{type(self).__name__} built from a {cfg.variant} config")
        self.config = cfg
        self.model = DiffusionWrapper(build_backbone(cfg))
        self.conditioner = MultiConditioner(cfg)
        from .vae import Pretransform
        self.pretransform = Pretransform(cfg.vae)
        if cfg.maf is not None:
            from .maf import MAF
            self.maf_block = MAF(cfg.maf)
        else:
            self.maf_block = None
        # External parts, deliberately not registered as submodules (not in the checkpoint).
        self.__dict__["text_encoder"] = None
        self.__dict__["synchformer"] = None
        self.info: dict = {}  # loader facts: file, role, dtype, notes

    # ------------------------------------------------------------------ parts
    @property
    def backbone(self) -> nn.Module:
        return self.model.model

    @property
    def objective(self) -> str:
        return self.config.objective

    def conditioner_for(self, cid: str) -> Optional[nn.Module]:
        return self.conditioner.conditioners[cid] if cid in self.conditioner.conditioners else None

    @property
    def video_conditioner(self):
        return self.conditioner_for("video_prompt")

    @property
    def audio_conditioner(self):
        return self.conditioner_for("audio_prompt")

    @property
    def text_spec(self) -> Optional[ConditionerSpec]:
        return self.config.conditioner("text_prompt")

    def set_text_encoder(self, encoder) -> None:
        self.__dict__["text_encoder"] = encoder

    def set_synchformer(self, synchformer) -> None:
        self.__dict__["synchformer"] = synchformer

    @property
    def modalities(self) -> tuple:
        """Ids of the cross-attention conditions, in the order the official code concatenates them."""
        return tuple(self.config.cross_attention_cond_ids)

    @property
    def latent_length(self) -> int:
        return self.config.latent_length

    @property
    def fixed_length(self) -> bool:
        """MMDiT models generate exactly ``latent_length`` frames (RoPE table, proj_mm_seq_len)."""
        return self.config.backbone.type == "mmdit"

    # ------------------------------------------------------------------ fusion
    def fuse(self, video: torch.Tensor, text: torch.Tensor, audio: torch.Tensor,
             modality_scale: Optional[Sequence[float]] = None) -> torch.Tensor:
        """Per-modality tokens → the cross-attention context the backbone consumes.

        ``video``, ``text``, ``audio``: ``[B, N_m, cond_dim]`` conditioner outputs.
        ``modality_scale``: optional ``(video, text, audio)`` multipliers on MAF's learned
        modality gates (1 = official; 0 = the modality is left out of MAF's expert attention).

        Without MAF the context is ``cat[video, text, audio]`` (the order of
        ``cross_attention_cond_ids``).  With MAF the official code calls
        ``maf_block(text, video, audio)`` although MAF's signature is ``(video, text, audio)``:
        the T5 tokens run through MAF's "video" branch and the CLIP tokens through its "text"
        branch, and the result is concatenated in MAF's output order, giving
        ``[MAF(T5) | MAF(CLIP) | MAF(audio)]``.  The weights were trained that way, so this swap is
        reproduced here on purpose.
        """
        by_id = {"video_prompt": video, "text_prompt": text, "audio_prompt": audio}
        for k, v in by_id.items():
            if v is None or v.dim() != 3:
                raise InputError(f"fuse: the {k} condition must be a [B, N, {self.config.cond_dim}] tensor")
        if self.maf_block is None:
            return torch.cat([by_id[i] for i in self.modalities], dim=1)
        scale = None
        if modality_scale is not None:
            sv, st, sa = (float(s) for s in modality_scale)
            scale = (st, sv, sa)  # MAF's (video, text, audio) slots hold (text, video, audio)
        out_a, out_b, out_c = self.maf_block(text, video, audio, modality_scale=scale)
        return torch.cat([out_a, out_b, out_c], dim=1)

    def maf_gates(self) -> Optional[torch.Tensor]:
        """Learned gates of the last :meth:`fuse` call as ``[B, 3]`` in (video, text, audio) order."""
        if self.maf_block is None or getattr(self.maf_block, "last_gates", None) is None:
            return None
        g = self.maf_block.last_gates
        return g[:, [1, 0, 2]]

    # ------------------------------------------------------------------ network call
    def velocity(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, **kw) -> torch.Tensor:
        """Backbone output for latents ``x`` ``[B, C, L]`` at network time ``t`` ``[B]``."""
        return self.backbone(x, t, context, **kw)


class AudioX(AudioXModel):
    variant = "audiox"


class AudioXMAF(AudioXModel):
    variant = "audiox_maf"


class AudioXMAFMMDiT(AudioXModel):
    variant = "audiox_maf_mmdit"


class AudioXTurbo(AudioXModel):
    variant = "audiox_turbo"


MODEL_CLASSES = {c.variant: c for c in (AudioX, AudioXMAF, AudioXMAFMMDiT, AudioXTurbo)}


def model_class_for(cfg: AudioXConfig) -> type:
    return MODEL_CLASSES[cfg.variant]


def build_model(cfg: AudioXConfig, *, device="meta", dtype: Optional[torch.dtype] = None) -> AudioXModel:
    """Construct the model for ``cfg`` (on the meta device by default: no memory, no init cost)."""
    with torch.device(device):
        m = model_class_for(cfg)(cfg)
    if dtype is not None:
        m.to(dtype)
    return m
