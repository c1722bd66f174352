"""Typed view of an AudioX ``config.json``.

The official code builds its modules from a nested JSON dictionary (``model_type``,
``model.pretransform``, ``model.conditioning``, ``model.diffusion`` ...).  This module parses
that dictionary once into small dataclasses so the rest of the library never digs through raw
dicts.  ``AudioXConfig.from_dict(d).to_dict()`` keeps every field the official schema defines,
so a config can be written back for the official code.

Variant names used everywhere in the library:

=====================  ==========================================================
``audiox``             DiT backbone, no MAF (HKUSTAudio/AudioX)
``audiox_maf``         DiT backbone + MAF (HKUSTAudio/AudioX-MAF)
``audiox_maf_mmdit``   MMDiT backbone + MAF, v-objective (HKUSTAudio/AudioX-MAF-MMDiT)
``audiox_turbo``       MMDiT backbone + MAF, rectified flow (HKUSTAudio/AudioX-Turbo,
                       both the 4-step student and its multi-step teacher)
=====================  ==========================================================
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Optional

from .errors import ConfigError

VARIANTS = ("audiox", "audiox_maf", "audiox_maf_mmdit", "audiox_turbo")

VARIANT_LABELS = {
    "audiox": "AudioX (DiT)",
    "audiox_maf": "AudioX-MAF (DiT + MAF)",
    "audiox_maf_mmdit": "AudioX-MAF-MMDiT",
    "audiox_turbo": "AudioX-Turbo (rectified-flow MMDiT)",
}


# ----------------------------------------------------------------------------------------------
# VAE (Oobleck autoencoder, the "pretransform")
# ----------------------------------------------------------------------------------------------
@dataclass
class VAEConfig:
    """Oobleck VAE hyper-parameters (Stable Audio Open VAE by default)."""

    in_channels: int = 2  # audio channels in and out
    channels: int = 128
    c_mults: tuple = (1, 2, 4, 8, 16)
    strides: tuple = (2, 4, 4, 8, 8)
    encoder_latent_dim: int = 128  # encoder output = mean (64) || scale (64)
    latent_dim: int = 64
    use_snake: bool = True
    final_tanh: bool = False
    downsampling_ratio: int = 2048
    scale: float = 1.0
    bottleneck: str = "vae"
    # the decoder's own widths (Oobleck configs give encoder and decoder each their ``channels`` /
    # ``c_mults``); None: the encoder's (every released VAE).  The strides are always shared.
    decoder_channels: Optional[int] = None
    decoder_c_mults: Optional[tuple] = None

    def __post_init__(self):
        self.c_mults = tuple(self.c_mults)
        self.strides = tuple(self.strides)
        if self.decoder_c_mults is not None:
            self.decoder_c_mults = tuple(self.decoder_c_mults)
            if len(self.decoder_c_mults) != len(self.strides):
                raise ConfigError(f"VAE decoder c_mults {list(self.decoder_c_mults)} need one entry per stride "
                                  f"{list(self.strides)}")
        if self.decoder_channels == self.channels:
            self.decoder_channels = None
        if self.decoder_c_mults == self.c_mults:
            self.decoder_c_mults = None

    @property
    def dec_channels(self) -> int:
        """The decoder's ``channels`` (the encoder's unless set)."""
        return self.channels if self.decoder_channels is None else self.decoder_channels

    @property
    def dec_c_mults(self) -> tuple:
        """The decoder's ``c_mults`` (the encoder's unless set)."""
        return self.c_mults if self.decoder_c_mults is None else self.decoder_c_mults

    @classmethod
    def from_pretransform(cls, d: dict) -> "VAEConfig":
        """Parse a ``{"type": "autoencoder", "config": {...}, "scale": ...}`` block."""
        if d.get("type", "autoencoder") != "autoencoder":
            raise ConfigError(f"pretransform type {d.get('type')!r} is not supported (only 'autoencoder')")
        c = d.get("config", {})
        enc = c.get("encoder", {}).get("config", {})
        dec = c.get("decoder", {}).get("config", {})
        for part, name in ((c.get("encoder", {}), "encoder"), (c.get("decoder", {}), "decoder")):
            if part.get("type", "oobleck") != "oobleck":
                raise ConfigError(f"VAE {name} type {part.get('type')!r} is not supported (only 'oobleck')")
        bottleneck = c.get("bottleneck", {}).get("type", "vae")
        if bottleneck != "vae":
            raise ConfigError(f"VAE bottleneck {bottleneck!r} is not supported (only 'vae')")
        strides = tuple(enc.get("strides", cls.strides))
        ratio = 1
        for s in strides:
            ratio *= s
        channels, c_mults = int(enc.get("channels", 128)), tuple(enc.get("c_mults", cls.c_mults))
        if tuple(dec.get("strides", strides)) != strides:
            raise ConfigError(f"VAE decoder strides {list(dec['strides'])} differ from the encoder's {list(strides)} "
                              "(not supported)")
        return cls(
            in_channels=int(enc.get("in_channels", c.get("io_channels", 2))),
            channels=channels,
            c_mults=c_mults,
            decoder_channels=int(dec.get("channels", channels)),
            decoder_c_mults=tuple(dec.get("c_mults", c_mults)),
            strides=strides,
            encoder_latent_dim=int(enc.get("latent_dim", 128)),
            latent_dim=int(dec.get("latent_dim", c.get("latent_dim", 64))),
            use_snake=bool(enc.get("use_snake", True)),
            final_tanh=bool(dec.get("final_tanh", False)),
            downsampling_ratio=int(c.get("downsampling_ratio", ratio)),
            scale=float(d.get("scale", 1.0)),
            bottleneck=bottleneck,
        )

    def to_pretransform(self) -> dict:
        common = dict(strides=list(self.strides), use_snake=self.use_snake)
        return {
            "type": "autoencoder",
            "iterate_batch": True,
            "config": {
                "encoder": {"type": "oobleck", "requires_grad": False,
                            "config": dict(in_channels=self.in_channels, latent_dim=self.encoder_latent_dim,
                                           channels=self.channels, c_mults=list(self.c_mults), **common)},
                "decoder": {"type": "oobleck",
                            "config": dict(out_channels=self.in_channels, latent_dim=self.latent_dim,
                                           final_tanh=self.final_tanh, channels=self.dec_channels,
                                           c_mults=list(self.dec_c_mults), **common)},
                "bottleneck": {"type": self.bottleneck},
                "latent_dim": self.latent_dim,
                "downsampling_ratio": self.downsampling_ratio,
                "io_channels": self.in_channels,
            },
            **({"scale": self.scale} if self.scale != 1.0 else {}),
        }


# ----------------------------------------------------------------------------------------------
# Conditioners, backbone, MAF
# ----------------------------------------------------------------------------------------------
@dataclass
class ConditionerSpec:
    """One entry of ``model.conditioning.configs``: ``{"id", "type", "config"}``.

    ``kind`` is the normalised implementation name used by this library, which resolves the
    one naming clash between the two official code bases: type ``audio_autoencoder`` means the
    AudioX v1 conditioner (learned empty feature, 215 tokens) in AudioX, but the v2 conditioner
    (``proj_features_128``, no empty feature) in AudioX-Turbo.  The Turbo form is recognised by
    its ``latent_seq_len`` / ``pretransform_ckpt_path`` / mask-ratio keys.
    """

    id: str
    type: str
    config: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        t = self.type
        if t == "audio_autoencoder":
            turbo_keys = {"latent_seq_len", "pretransform_ckpt_path", "mask_ratio_start", "mask_ratio_end"}
            return "audio_autoencoder_v2" if turbo_keys & set(self.config) else "audio_autoencoder_v1"
        return t

    def vae(self) -> Optional[VAEConfig]:
        pc = self.config.get("pretransform_config")
        return VAEConfig.from_pretransform(pc) if pc else None


@dataclass
class BackboneConfig:
    type: str = "dit"  # "dit" | "mmdit"
    io_channels: int = 64
    embed_dim: int = 1536
    depth: int = 24
    num_heads: int = 24
    cond_token_dim: int = 768
    global_cond_dim: int = 0
    project_cond_tokens: bool = False
    patch_size: int = 1
    # MMDiT only
    latent_seq_len: int = 237  # 1 prepend (time) token + latent frames
    mlp_ratio: float = 4.0
    kernel_size: int = 3
    extra: dict = field(default_factory=dict)  # keys we carry but do not interpret

    _KNOWN = {"io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim", "global_cond_dim",
              "project_cond_tokens", "patch_size", "_latent_seq_len", "mlp_ratio", "kernel_size"}

    @classmethod
    def from_dict(cls, typ: str, c: dict) -> "BackboneConfig":
        if typ not in ("dit", "mmdit"):
            raise ConfigError(f"diffusion type {typ!r} is not an AudioX backbone (expected 'dit' or 'mmdit')")
        tt = c.get("transformer_type", "continuous_transformer")
        if tt != "continuous_transformer":
            raise ConfigError(f"transformer_type {tt!r} is not supported (released AudioX models use "
                              "'continuous_transformer')")
        return cls(
            type=typ,
            io_channels=int(c.get("io_channels", 64)),
            embed_dim=int(c.get("embed_dim", 1536)),
            depth=int(c.get("depth", 24)),
            num_heads=int(c.get("num_heads", 24)),
            cond_token_dim=int(c.get("cond_token_dim", 768)),
            global_cond_dim=int(c.get("global_cond_dim", 0) or 0),
            project_cond_tokens=bool(c.get("project_cond_tokens", False)),
            patch_size=int(c.get("patch_size", 1)),
            latent_seq_len=int(c.get("_latent_seq_len", 237)),
            mlp_ratio=float(c.get("mlp_ratio", 4.0)),
            kernel_size=int(c.get("kernel_size", 3)),
            extra={k: v for k, v in c.items() if k not in cls._KNOWN},
        )

    def to_dict(self) -> dict:
        d = dict(io_channels=self.io_channels, embed_dim=self.embed_dim, depth=self.depth,
                 num_heads=self.num_heads, cond_token_dim=self.cond_token_dim,
                 global_cond_dim=self.global_cond_dim, project_cond_tokens=self.project_cond_tokens,
                 transformer_type="continuous_transformer")
        if self.patch_size != 1:
            d["patch_size"] = self.patch_size
        if self.type == "mmdit":
            d.update(_latent_seq_len=self.latent_seq_len, mlp_ratio=self.mlp_ratio, kernel_size=self.kernel_size)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d


@dataclass
class MAFConfig:
    dim: int = 768  # hard-coded in the official code
    num_experts_per_modality: int = 64
    num_heads: int = 12
    num_fusion_layers: int = 4

    @classmethod
    def from_dict(cls, c: dict) -> "MAFConfig":
        return cls(dim=int(c.get("dim", 768)),
                   num_experts_per_modality=int(c.get("num_experts_per_modality", 64)),
                   num_heads=int(c.get("num_heads", 12)), num_fusion_layers=int(c.get("num_fusion_layers", 4)))

    def to_dict(self) -> dict:
        d = dict(num_experts_per_modality=self.num_experts_per_modality, num_heads=self.num_heads,
                 num_fusion_layers=self.num_fusion_layers)
        if self.dim != 768:  # our extension for small models; the official width is fixed at 768
            d["dim"] = self.dim
        return d


# ----------------------------------------------------------------------------------------------
# Whole model
# ----------------------------------------------------------------------------------------------
@dataclass
class AudioXConfig:
    sample_rate: int = 44100
    sample_size: int = 441000
    video_fps: int = 5
    audio_channels: int = 2
    io_channels: int = 64
    vae: VAEConfig = field(default_factory=VAEConfig)
    cond_dim: int = 768
    conditioners: list = field(default_factory=list)  # list[ConditionerSpec]
    cross_attention_cond_ids: tuple = ("video_prompt", "text_prompt", "audio_prompt")
    global_cond_ids: tuple = ()
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    maf: Optional[MAFConfig] = None
    objective: str = "v"  # "v" | "rectified_flow"
    model_type: str = "diffusion_cond"
    raw: dict = field(default_factory=dict, repr=False)  # the dict this was parsed from

    # -------------------------------------------------------------------- derived values
    @property
    def variant(self) -> str:
        if self.backbone.type == "dit":
            return "audiox_maf" if self.maf is not None else "audiox"
        if self.maf is None:
            raise ConfigError("an MMDiT AudioX model without MAF is not a released variant")
        return "audiox_turbo" if self.objective == "rectified_flow" else "audiox_maf_mmdit"

    @property
    def latent_length(self) -> int:
        """Number of latent frames the model generates (``sample_size // 2048``)."""
        return self.sample_size // self.vae.downsampling_ratio

    @property
    def seconds(self) -> float:
        return self.sample_size / self.sample_rate

    def conditioner(self, cid: str) -> Optional[ConditionerSpec]:
        for c in self.conditioners:
            if c.id == cid:
                return c
        return None

    # -------------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, d: dict) -> "AudioXConfig":
        if not isinstance(d, dict) or "model" not in d:
            raise ConfigError("not an AudioX config: the top-level 'model' block is missing")
        mt = d.get("model_type", "diffusion_cond")
        if mt not in ("diffusion_cond", "diffusion_cond_inpaint", "diffusion_dmd"):
            raise ConfigError(f"model_type {mt!r} is not an AudioX diffusion model")
        m = d["model"]
        try:
            diff = m["diffusion"]
            cond = m.get("conditioning", {})
        except KeyError as e:  # pragma: no cover - defensive
            raise ConfigError(f"config is missing model.{e.args[0]}") from None
        objective = diff.get("diffusion_objective", "v")
        if objective not in ("v", "rectified_flow"):
            raise ConfigError(f"diffusion_objective {objective!r} is not supported (expected 'v' or 'rectified_flow')")
        maf = None
        if diff.get("gate", False):
            gt = diff.get("gate_type", "sparse_gated")
            if gt != "MAF":
                raise ConfigError(f"gate_type {gt!r} is not implemented by the official code (only 'MAF')")
            maf = MAFConfig.from_dict(diff.get("gate_type_config", {}))
        if "pretransform" not in m:
            raise ConfigError("config has no model.pretransform (the VAE) block")
        return cls(
            sample_rate=int(d.get("sample_rate", 44100)),
            sample_size=int(d.get("sample_size", 441000)),
            video_fps=int(d.get("video_fps", diff.get("config", {}).get("video_fps", 5))),
            audio_channels=int(d.get("audio_channels", 2)),
            io_channels=int(m.get("io_channels", 64)),
            vae=VAEConfig.from_pretransform(m["pretransform"]),
            cond_dim=int(cond.get("cond_dim", 768)),
            conditioners=[ConditionerSpec(c["id"], c["type"], dict(c.get("config", {})))
                          for c in cond.get("configs", [])],
            cross_attention_cond_ids=tuple(diff.get("cross_attention_cond_ids", ())),
            global_cond_ids=tuple(diff.get("global_cond_ids", ())),
            backbone=BackboneConfig.from_dict(diff.get("type", "dit"), diff.get("config", {})),
            maf=maf,
            objective=objective,
            model_type=mt,
            raw=copy.deepcopy(d),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "AudioXConfig":
        try:
            with open(path, "r", encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_dict(self) -> dict:
        """Official-schema dict.  Unknown keys of the source dict are preserved."""
        d = copy.deepcopy(self.raw) if self.raw else {}
        d.update(model_type=self.model_type, sample_size=self.sample_size, sample_rate=self.sample_rate,
                 video_fps=self.video_fps, audio_channels=self.audio_channels)
        m = d.setdefault("model", {})
        m["io_channels"] = self.io_channels
        m["pretransform"] = self.vae.to_pretransform()
        m["conditioning"] = {"cond_dim": self.cond_dim,
                             "configs": [{"id": c.id, "type": c.type, "config": copy.deepcopy(c.config)}
                                         for c in self.conditioners]}
        diff = m.setdefault("diffusion", {})
        diff.update(type=self.backbone.type, diffusion_objective=self.objective,
                    cross_attention_cond_ids=list(self.cross_attention_cond_ids),
                    global_cond_ids=list(self.global_cond_ids), config=self.backbone.to_dict())
        if self.maf is not None:
            diff.update(gate=True, gate_type="MAF", gate_type_config=self.maf.to_dict())
        else:
            diff.pop("gate", None)
            diff.pop("gate_type", None)
            diff.pop("gate_type_config", None)
        return d

    def replace(self, **kw) -> "AudioXConfig":
        """A copy with some top-level fields changed (``raw`` follows via ``to_dict``)."""
        new = copy.deepcopy(self)
        for k, v in kw.items():
            if not hasattr(new, k):
                raise AttributeError(k)
            setattr(new, k, v)
        new.raw = new.to_dict()
        return new
