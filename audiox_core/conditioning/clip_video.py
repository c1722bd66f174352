"""CLIP video conditioners: types ``clip`` (AudioX) and ``clip-with-sync-w-empty-feat`` (MAF models).

Official sources: ``CLIPConditioner`` / ``CLIPWithSyncWithEmptyFeatureConditioner`` in
``audiox/models/conditioners.py`` and the Turbo copy in ``audiox_turbo/models/conditioners.py``
(same keys and, with the released config values, the same function).

Pipeline for a batch of clips ``frames [B, T, 3, H, W]`` with pixel values 0..255::

    is_zero[b] = every value of clip b is exactly 0                         (on the raw input)
    x   = Normalize(CLIP mean/std)(frames / 255)
    h   = CLIPVisionModelWithProjection(x).last_hidden_state    [B·T, q, D]  (encoder output,
          NOT post-layernormed; the visual projection is unused), frozen, under no_grad
    h   = regroup (b t) q d -> (b q) t d;  h += Temp_pos_embedding [1, T, D]
    h   = Temp_transformer(h)                                   (temporal self-attention)
    h   = regroup (b q) t d -> b (t q) d                        token index n = t·q + qi
    v   = RAW-RESHAPE projection of h with ``proj`` Linear(T·q → 128)   -> [B, 128, D]
    (sync) v = v + sync_weight · RAW-RESHAPE projection of sync [B, 240, D] with ``proj_sync``
    out = empty_visual_feat [1, 128, D] where is_zero else v

**Raw-reshape projection** (official quirk, must be reproduced): each item's contiguous
``[N, D]`` buffer is read row-major as ``D`` consecutive chunks of ``N`` values (NOT the
columns), each chunk goes through ``Linear(N → 128)``, and the ``[D, 128]`` result buffer is
reinterpreted row-major as ``[128, D]``.  This is ``x.view(B·D, N) → linear → view(B, 128, D)``.

With no sync features the official feeds zeros, so ``proj_sync`` still contributes its bias
(``sync_weight · bias[j mod 128]`` per output channel j); that is reproduced.

Full-size constants (ViT-B/32 @ 224, 10 s at 5 fps): T = 50 frames, q = 50 tokens per frame
(7×7 patches + CLS), ``proj`` 2500 → 128, ``proj_sync`` 240 → 128, temporal transformer 4
layers, 16 heads × 64, MLP 3072, D = 768.  ``clip_config`` overrides them for tiny test/demo
models (see :data:`CLIP_CONFIG_KEYS`).

Key layout relative to ``conditioner.conditioners.video_prompt.`` (manifest order):
``empty_visual_feat, [sync_weight], Temp_pos_embedding, visual_encoder_model.*, proj.*,
[proj_sync.*], Temp_transformer.*``.

Checkpoint compatibility:

* An older ``visual_encoder_model.vision_model.embeddings.position_ids`` key (saved by some
  transformers versions) is accepted and ignored: a ``load_state_dict`` pre-hook drops it, and
  loaders that compare keys themselves can use :func:`is_ignored_checkpoint_key`.
* ``position_ids`` is not kept as a registered buffer at all (it is ``arange(q)``): a forward
  pre-hook on the embeddings creates it on the weights' device, so a model built on the meta
  device and loaded with ``assign=True`` never carries a meta buffer.
* Checkpoints without the tower: :func:`load_clip_vision` fills it from a separate CLIP
  ViT-B/32 vision file.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError
from ..weights import folder_weights
from .temporal_transformer import TemporalTransformer

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: openai/clip-vit-base-patch32 vision tower (what every released AudioX model stores).
VIT_B32: dict = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     image_size=224, patch_size=32, projection_dim=512, hidden_act="quick_gelu",
                     layer_norm_eps=1e-5, num_channels=3)

#: Conditioner constants that are hard-coded in the official code (overridable via clip_config).
CONDITIONER_DEFAULTS: dict = dict(duration=10, temporal_depth=4, temporal_heads=16, temporal_dim_head=64,
                                  temporal_mlp_dim=None,  # None → 4 × hidden_size (3072)
                                  sync_tokens=240)

#: Keys accepted in ``clip_config``: the tower's size and the conditioner constants.
CLIP_CONFIG_KEYS = frozenset(VIT_B32) | frozenset(CONDITIONER_DEFAULTS)

#: Config keys of the official conditioners that are understood here.
_SPEC_KEYS = {"clip_model_name", "video_fps", "out_features", "in_features", "enable_grad", "project_out",
              "mask_ratio", "mask_type", "sync_type", "temporal_transformer", "clip_config", "output_dim"}

_LEGACY_SUFFIX = "vision_model.embeddings.position_ids"


def is_ignored_checkpoint_key(key: str) -> bool:
    """True for checkpoint keys this module accepts and drops (the legacy ``position_ids``)."""
    return key.endswith(_LEGACY_SUFFIX)


def clip_vision_config(overrides: Optional[Mapping[str, Any]] = None):
    """``CLIPVisionConfig`` for ViT-B/32, with tower-size ``overrides`` (built locally, no download)."""
    from transformers import CLIPVisionConfig

    kw = dict(VIT_B32)
    for k, v in (overrides or {}).items():
        if k in VIT_B32:
            kw[k] = v
    return CLIPVisionConfig(**kw)


def _position_ids_hook(module: nn.Module, args) -> None:
    """Forward pre-hook of ``CLIPVisionEmbeddings``: a real ``position_ids`` on the weights' device."""
    w = module.position_embedding.weight
    pid = module.__dict__.get("position_ids")
    if pid is None or pid.device != w.device:
        module.__dict__["position_ids"] = torch.arange(module.num_positions, device=w.device).unsqueeze(0)


def _drop_legacy_keys(module, state_dict, prefix, *args) -> None:
    for k in [k for k in state_dict if k.startswith(prefix) and is_ignored_checkpoint_key(k)]:
        state_dict.pop(k)


def build_clip_tower(overrides: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """A frozen ``CLIPVisionModelWithProjection`` built from a config (random init, never downloaded).

    ``position_ids`` is turned into a lazily created plain attribute (see the module docstring).
    """
    from transformers import CLIPVisionModelWithProjection

    tower = CLIPVisionModelWithProjection(clip_vision_config(overrides))
    emb = tower.vision_model.embeddings
    emb._buffers.pop("position_ids", None)
    emb.__dict__["position_ids"] = None
    emb.register_forward_pre_hook(_position_ids_hook)
    tower.requires_grad_(False)
    tower.eval()
    return tower


def raw_reshape_project(linear: nn.Module, x: torch.Tensor, out_tokens: int) -> torch.Tensor:
    """The official projection ``linear(x.view(-1, N)).view(B, out_tokens, -1)`` for ``x [B, N, D]``.

    The flat buffer of each item is cut into D rows of N consecutive values (not a transpose).
    """
    b, n, d = x.shape
    y = linear(x.contiguous().view(b * d, n))
    return y.view(b, out_tokens, d)


class CLIPVideoConditioner(nn.Module):
    """Video conditioner of every AudioX model (module docstring has the math).

    Args:
        spec_config: the conditioner's ``config`` block from config.json (``clip_model_name``,
            ``video_fps`` (5), ``out_features`` (128), Turbo's ``mask_ratio`` / ``mask_type`` /
            ``sync_type`` / ``temporal_transformer``; an optional ``clip_config`` is used when the
            ``clip_config`` argument is None).
        output_dim: the model's ``cond_dim``; must equal the tower width (768).
        with_sync: True for ``clip-with-sync-w-empty-feat`` (adds ``proj_sync`` and ``sync_weight``).
        clip_config: size overrides for tiny models (:data:`CLIP_CONFIG_KEYS`).

    Attributes: ``frames_per_clip`` (T), ``tokens_per_frame`` (q), ``image_size``, ``fps``,
    ``in_features`` (T·q), ``out_features`` (128), ``sync_tokens`` (240), ``dim`` (768),
    ``chunk_frames`` (frames per CLIP call; lower it to save memory).
    """

    def __init__(self, spec_config: Optional[Mapping[str, Any]] = None, output_dim: int = 768,
                 with_sync: bool = False, clip_config: Optional[Mapping[str, Any]] = None):
        super().__init__()
        spec = dict(spec_config or {})
        if clip_config is None:
            clip_config = spec.get("clip_config")
        clip_settings = dict(clip_config or {})
        unknown = set(clip_settings) - CLIP_CONFIG_KEYS
        if unknown:
            raise ConfigError(f"video conditioner: unknown clip_config keys {sorted(unknown)} "
                              f"(accepted: {sorted(CLIP_CONFIG_KEYS)})")
        self._check_spec(spec, with_sync)
        tower_cfg = {k: clip_settings.get(k, v) for k, v in VIT_B32.items()}
        const = {k: clip_settings.get(k, v) for k, v in CONDITIONER_DEFAULTS.items()}

        dim = int(tower_cfg["hidden_size"])
        if int(output_dim) != dim:
            raise ConfigError(f"video conditioner: output_dim (cond_dim) {output_dim} must equal the CLIP width {dim}; "
                              "the official conditioner has no output projection")
        image, patch = int(tower_cfg["image_size"]), int(tower_cfg["patch_size"])
        if image % patch:
            raise ConfigError(f"video conditioner: image_size {image} is not a multiple of patch_size {patch}")
        self.fps = int(spec.get("video_fps", 5))
        self.duration = int(const["duration"])
        self.with_sync = bool(with_sync)
        self.dim = dim
        self.image_size = image
        self.frames_per_clip = self.fps * self.duration
        self.tokens_per_frame = (image // patch) ** 2 + 1
        self.in_features = self.frames_per_clip * self.tokens_per_frame
        # The plain ``clip`` type forces 128; the sync type reads it from the config.
        self.out_features = 128 if not with_sync else int(spec.get("out_features", 128))
        self.sync_tokens = int(const["sync_tokens"])
        self.chunk_frames = 128
        if self.frames_per_clip <= 0:
            raise ConfigError(f"video conditioner: video_fps {self.fps} × duration {self.duration} gives no frames")
        if self.out_features <= 0:
            raise ConfigError(f"video conditioner: out_features {self.out_features} is invalid")
        mlp = const["temporal_mlp_dim"] or 4 * dim

        # Registration order = official state-dict order (own parameters first, then children).
        self.empty_visual_feat = nn.Parameter(torch.zeros(1, self.out_features, dim))
        if with_sync:
            self.sync_weight = nn.Parameter(torch.tensor(0.0))
        self.Temp_pos_embedding = nn.Parameter(torch.randn(1, self.frames_per_clip, dim))
        self.visual_encoder_model = build_clip_tower(tower_cfg)
        self.proj = nn.Linear(self.in_features, self.out_features)
        if with_sync:
            self.proj_sync = nn.Linear(self.sync_tokens, self.out_features)
        self.Temp_transformer = TemporalTransformer(dim, int(const["temporal_depth"]), int(const["temporal_heads"]),
                                                    int(const["temporal_dim_head"]), int(mlp))
        self._norm_cache: dict = {}  # device -> (mean, std); plain attribute, not a (meta) buffer
        self.register_load_state_dict_pre_hook(_drop_legacy_keys)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_spec(spec: dict, with_sync: bool) -> None:
        name = spec.get("clip_model_name", "clip-vit-base-patch32")
        if name != "clip-vit-base-patch32":
            raise ConfigError(f"video conditioner: clip_model_name {name!r} is not supported "
                              "(the official code accepts only 'clip-vit-base-patch32')")
        if spec.get("project_out", False):
            raise ConfigError("video conditioner: project_out=true is not supported (no released model uses it)")
        if float(spec.get("mask_ratio", 0.0) or 0.0) != 0.0:
            raise ConfigError(f"video conditioner: mask_ratio {spec['mask_ratio']} > 0 (training-time video token "
                              "masking) is not supported; released configs use 0")
        if spec.get("sync_type", "add") != "add":
            raise ConfigError(f"video conditioner: sync_type {spec['sync_type']!r} is not supported (only 'add')")
        if not spec.get("temporal_transformer", True):
            raise ConfigError("video conditioner: temporal_transformer=false is not supported")
        extra = set(spec) - _SPEC_KEYS
        if extra:
            log.warning("video conditioner: ignoring unknown config keys %s", sorted(extra))

    @property
    def expected_frames_shape(self) -> tuple:
        """``(T, 3, H, W)`` one clip must have."""
        return (self.frames_per_clip, 3, self.image_size, self.image_size)

    def _norm_consts(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._norm_cache:
            self._norm_cache[key] = (torch.tensor(CLIP_MEAN, device=device).view(3, 1, 1),
                                     torch.tensor(CLIP_STD, device=device).view(3, 1, 1))
        return self._norm_cache[key]

    def _validate_sync(self, sync: torch.Tensor, batch: Optional[int]) -> None:
        want = (self.sync_tokens, self.dim)
        if not isinstance(sync, torch.Tensor) or sync.dim() != 3 or tuple(sync.shape[1:]) != want:
            got = tuple(sync.shape) if isinstance(sync, torch.Tensor) else type(sync).__name__
            raise InputError(f"video conditioner: sync features must be [B, {want[0]}, {want[1]}] (Synchformer "
                             f"output for {self.duration} s), got {got}")
        if batch is not None and sync.shape[0] != batch:
            raise InputError(f"video conditioner: sync features have batch {sync.shape[0]}, video has {batch}")

    def _validate_frames(self, frames: torch.Tensor) -> None:
        if not isinstance(frames, torch.Tensor):
            raise InputError(f"video conditioner: frames must be a tensor, got {type(frames).__name__}")
        want = self.expected_frames_shape
        if frames.dim() != 5 or tuple(frames.shape[1:]) != want:
            raise InputError(
                f"video conditioner: frames must be [B, {want[0]}, {want[1]}, {want[2]}, {want[3]}] "
                f"({self.duration} s at {self.fps} fps, {want[2]}×{want[3]} RGB, values 0..255), "
                f"got {tuple(frames.shape)}")
        if not (frames.dtype == torch.uint8 or frames.is_floating_point()):
            raise InputError(f"video conditioner: frames must be uint8 or float (0..255), got {frames.dtype}")

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """CLIP ``last_hidden_state`` for frames ``[N, 3, H, W]`` (0..255) → ``[N, q, D]``.

        Runs the frozen tower in chunks of ``chunk_frames`` frames under no_grad; the input is
        converted chunk by chunk (``/255`` then CLIP normalisation in fp32, then the tower's dtype).
        """
        tower = self.visual_encoder_model
        dev = tower.vision_model.embeddings.patch_embedding.weight.device
        mean, std = self._norm_consts(dev)
        outs = []
        step = max(1, int(self.chunk_frames))
        for i in range(0, frames.shape[0], step):
            x = frames[i:i + step].to(dev)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32) / 255.0
            x = (x - mean) / std
            outs.append(tower(pixel_values=x).last_hidden_state)
        return torch.cat(outs, dim=0)

    def temporal(self, hidden: torch.Tensor, batch: int) -> torch.Tensor:
        """``[B·T, q, D]`` CLIP tokens → temporal transformer → ``[B, T·q, D]`` (index t·q + qi)."""
        t, q, d = self.frames_per_clip, self.tokens_per_frame, self.dim
        h = hidden.view(batch, t, q, d).permute(0, 2, 1, 3).reshape(batch * q, t, d)
        h = h + self.Temp_pos_embedding
        h = self.Temp_transformer(h)
        return h.view(batch, q, t, d).permute(0, 2, 1, 3).reshape(batch, t * q, d)

    def sync_part(self, sync: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """``sync_weight · raw-reshape proj_sync(sync)`` (zeros in → the bias pattern out)."""
        w = self.proj_sync.weight
        if sync is None:
            sync = torch.zeros(batch, self.sync_tokens, self.dim, device=w.device, dtype=w.dtype)
        s = raw_reshape_project(self.proj_sync, sync.to(device=w.device, dtype=w.dtype), self.out_features)
        return self.sync_weight * s

    def forward(self, frames: Optional[torch.Tensor], sync: Optional[torch.Tensor] = None, *,
                batch_size: Optional[int] = None) -> torch.Tensor:
        """Video (+ sync) condition tokens ``[B, 128, D]`` in the conditioner's parameter dtype.

        ``frames``: ``[B, T, 3, H, W]`` uint8 or float with values 0..255 (ComfyUI IMAGE frames
        are 0..1: multiply by 255 first), or None for "no video".  Items whose frames are all
        exactly 0 get the learned ``empty_visual_feat`` (sync is then irrelevant, as in the
        official); CLIP runs only on the other items.  ``frames=None`` returns the empty feature
        for ``batch_size`` items (default: the sync batch, else 1) without running CLIP — the
        same result as all-zero frames.
        ``sync``: Synchformer features ``[B, 240, D]`` (sync conditioner only); None = zeros,
        as the official does for plain-tensor inputs.
        """
        if sync is not None and not self.with_sync:
            raise InputError("video conditioner: this model's video conditioner (type 'clip') has no sync branch; "
                             "do not pass Synchformer features")
        dt = self.proj.weight.dtype
        if frames is None:
            b = int(batch_size) if batch_size is not None else (sync.shape[0] if sync is not None else 1)
            if sync is not None:
                self._validate_sync(sync, b)
            return self.empty_visual_feat.to(dt).expand(b, -1, -1).contiguous()
        self._validate_frames(frames)
        b = frames.shape[0]
        if batch_size is not None and int(batch_size) != b:
            raise InputError(f"video conditioner: batch_size {batch_size} but frames have batch {b}")
        if sync is not None:
            self._validate_sync(sync, b)

        is_zero = (frames == 0).flatten(1).all(dim=1).to(self.proj.weight.device)
        out = self.empty_visual_feat.to(dt).expand(b, -1, -1)
        keep = (~is_zero).nonzero().flatten()
        if keep.numel() == 0:
            return out.contiguous()
        sel = frames[keep.to(frames.device)]
        n = sel.shape[0]
        hidden = self.encode_frames(sel.reshape(n * self.frames_per_clip, *sel.shape[2:])).to(dt)
        video = raw_reshape_project(self.proj, self.temporal(hidden, n), self.out_features)
        if self.with_sync:
            video = video + self.sync_part(sync[keep.to(sync.device)] if sync is not None else None, n)
        if n == b:
            return video
        return out.contiguous().index_copy(0, keep, video.to(dt))


# ----------------------------------------------------------------------------------------------
# Loading a separate CLIP ViT-B/32 vision checkpoint into the tower
# ----------------------------------------------------------------------------------------------
_OPENAI_LAYER_MAP = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                     "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_OPENAI_TOP_MAP = {"class_embedding": "vision_model.embeddings.class_embedding",
                   "positional_embedding": "vision_model.embeddings.position_embedding.weight",
                   "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
                   "ln_pre.weight": "vision_model.pre_layrnorm.weight", "ln_pre.bias": "vision_model.pre_layrnorm.bias",
                   "ln_post.weight": "vision_model.post_layernorm.weight",
                   "ln_post.bias": "vision_model.post_layernorm.bias"}

ACCEPTED_CLIP_LAYOUTS = (
    "Hugging Face folder (config.json + model.safetensors / pytorch_model.bin) of "
    "openai/clip-vit-base-patch32 (CLIPModel or CLIPVisionModelWithProjection)",
    "single file with Hugging Face keys 'vision_model.*' (+ 'visual_projection.weight'), with or without "
    "a prefix (e.g. ComfyUI models/clip_vision/clip_vision_vit_b32.safetensors, or an AudioX checkpoint's "
    "'conditioner.conditioners.video_prompt.visual_encoder_model.' subtree); text-tower keys are ignored",
    "single file in the original OpenAI CLIP layout ('visual.conv1.weight', "
    "'visual.transformer.resblocks.N.*', 'visual.proj', ...), converted on load",
)


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.bin", "model.pt", "model.pth")


def _weight_file(path: Path) -> tuple[Path, Optional[dict]]:
    """Resolve a folder to its weights file (+ parsed config.json)."""
    if not path.is_dir():
        return path, None
    found, cfg = folder_weights(path, _WEIGHT_FILES)
    if found is not None:
        return found, cfg
    raise CheckpointError(f"{path}: no weights file found (expected model.safetensors or pytorch_model.bin)")


def _check_clip_config(cfg: dict, where: Path, tower_cfg) -> None:
    vc = cfg.get("vision_config", cfg) if cfg.get("model_type") == "clip" else cfg
    mt = cfg.get("model_type")
    if mt not in (None, "clip", "clip_vision_model"):
        raise CheckpointError(f"{where}: config.json says model_type {mt!r}, expected a CLIP model "
                              "('clip' or 'clip_vision_model')")
    act = vc.get("hidden_act", "quick_gelu")
    if act != tower_cfg.hidden_act:
        raise CheckpointError(f"{where}: this CLIP uses hidden_act {act!r}, AudioX's tower uses "
                              f"{tower_cfg.hidden_act!r} (openai/clip-vit-base-patch32); it is a different model")


def convert_openai_clip_vision(sd: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict:
    """Original OpenAI CLIP visual keys → Hugging Face ``CLIPVisionModelWithProjection`` keys."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        r = k[len(prefix):]
        if r in _OPENAI_TOP_MAP:
            out[_OPENAI_TOP_MAP[r]] = v
        elif r == "proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif r.startswith("transformer.resblocks."):
            parts = r.split(".")
            i, rest = parts[2], ".".join(parts[3:])
            base = f"vision_model.encoder.layers.{i}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}.{kind}"] = chunk.contiguous()
                continue
            mod, _, leaf = rest.rpartition(".")
            if mod not in _OPENAI_LAYER_MAP:
                raise CheckpointError(f"unexpected OpenAI CLIP key {k!r}")
            out[f"{base}{_OPENAI_LAYER_MAP[mod]}.{leaf}"] = v
    return out


def _tower_of(target: nn.Module) -> nn.Module:
    if isinstance(target, CLIPVideoConditioner):
        return target.visual_encoder_model
    if hasattr(target, "vision_model") and hasattr(target, "visual_projection"):
        return target
    raise TypeError(f"load_clip_vision: expected a CLIPVideoConditioner or a CLIPVisionModelWithProjection, "
                    f"got {type(target).__name__}")


def _describe(shapes: Mapping[str, tuple]) -> str:
    try:
        w = shapes["vision_model.embeddings.patch_embedding.weight"]
        n_pos = shapes["vision_model.embeddings.position_embedding.weight"][0]
        layers = len({k.split(".")[3] for k in shapes if k.startswith("vision_model.encoder.layers.")})
        grid = int(round(math.sqrt(n_pos - 1)))
        return f"width {w[0]}, patch {w[2]}, {layers} layers, image {grid * w[2]}"
    except (KeyError, IndexError, ValueError):
        return "unrecognised sizes"


def load_clip_vision(target: nn.Module, path: Union[str, Path], *, device: Union[str, torch.device, None] = None,
                     dtype: Optional[torch.dtype] = None) -> dict:
    """Load a separate CLIP ViT-B/32 vision checkpoint into the conditioner's tower (or a tower).

    Accepted layouts: :data:`ACCEPTED_CLIP_LAYOUTS`.  Every tower tensor must be present with the
    exact shape (a ViT-L/14 or ViT-B/16 file → :class:`CheckpointError` with the found vs the
    expected sizes); ``visual_projection.weight`` (never used by AudioX) may be absent and is
    then zero-filled.  Tensors land in ``dtype`` (default: the tower's current dtype) on
    ``device`` (default: the tower's device, or CPU for a meta-built tower).  The tower stays
    frozen.  Returns ``{"file", "layout", "ignored_keys"}``.
    """
    from ..weights import WeightSource, compare_keys, expected_tensors

    tower = _tower_of(target)
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: CLIP vision checkpoint not found")
    file, cfg = _weight_file(path)
    if cfg is not None:
        _check_clip_config(cfg, path, tower.config)
    src = WeightSource(file)
    keys = src.keys()
    anchor = "vision_model.embeddings.class_embedding"
    hits = [k for k in keys if k.endswith(anchor)]
    if hits:
        layout = "huggingface"
        prefix = min(hits, key=len)[: -len(anchor)]
        sub = src.sub(prefix)
        wanted = [k for k in sub.keys() if k.startswith(("vision_model.", "visual_projection."))]
        ignored = len(keys) - len(wanted)
        sd = {k: sub.read(k) for k in wanted if not is_ignored_checkpoint_key(k)}
    else:
        if "visual.conv1.weight" in keys:
            prefix = "visual."
        elif "conv1.weight" in keys and "transformer.resblocks.0.attn.in_proj_weight" in keys:
            prefix = ""
        else:
            raise CheckpointError(f"{file}: not a CLIP vision checkpoint (no 'vision_model.*' or OpenAI 'visual.*' "
                                  "keys). Accepted layouts:\n  - " + "\n  - ".join(ACCEPTED_CLIP_LAYOUTS))
        layout = "openai"
        raw = {k: src.read(k) for k in keys if k.startswith(prefix)}
        ignored = len(keys) - len(raw)
        sd = convert_openai_clip_vision(raw, prefix)

    expected = expected_tensors(tower)
    report = compare_keys(expected, {k: tuple(v.shape) for k, v in sd.items()})
    report.missing = [k for k in report.missing if k != "visual_projection.weight"]
    if not report.ok:
        found = {k: tuple(v.shape) for k, v in sd.items()}
        raise CheckpointError(
            f"{file}: this CLIP vision model does not fit the AudioX video tower.\n"
            f"  found: {_describe(found)}; expected: {_describe(expected)} (openai/clip-vit-base-patch32)\n"
            f"  {report.summary()}")

    ref = tower.vision_model.embeddings.patch_embedding.weight
    tdt = dtype or ref.dtype
    tdev = torch.device(device) if device is not None else (torch.device("cpu") if ref.is_meta else ref.device)
    state = {k: v.to(device=tdev, dtype=tdt if v.is_floating_point() else v.dtype) for k, v in sd.items()}
    if "visual_projection.weight" not in state:
        log.info("%s: no visual_projection.weight (unused by AudioX); filled with zeros", file)
        state["visual_projection.weight"] = torch.zeros(expected["visual_projection.weight"], device=tdev, dtype=tdt)
    tower.load_state_dict(state, strict=True, assign=True)
    tower.requires_grad_(False)
    log.info("loaded CLIP vision tower from %s (%s layout, %d other keys ignored)", file, layout, ignored)
    return {"file": str(file), "layout": layout, "ignored_keys": ignored}


#: Alias used by :mod:`audiox_core.checkpoint`.
load_clip_vision_into = load_clip_vision

__all__ = ["CLIPVideoConditioner", "TemporalTransformer", "load_clip_vision", "load_clip_vision_into",
           "convert_openai_clip_vision",
           "raw_reshape_project", "is_ignored_checkpoint_key", "build_clip_tower", "clip_vision_config",
           "CLIP_MEAN", "CLIP_STD", "VIT_B32", "ACCEPTED_CLIP_LAYOUTS"]
