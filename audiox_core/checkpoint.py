"""Find out what a weights file is, build the matching model on the meta device, load it strictly.

Typical use::

    from audiox_core.checkpoint import load_model
    model = load_model("AudioX-MAF/model.ckpt", dtype=torch.bfloat16)       # config.json beside it is used
    model = load_model("audiox_turbo.ckpt", vae="vae.ckpt")                  # config inferred from keys

The config comes from, in order: the ``config=`` argument, the ``audiox_config`` metadata of our
own ``.safetensors`` files, a ``config.json``/``model_config.json`` next to the file, and finally
the keys and shapes themselves (:func:`infer_config`).  What cannot be read from shapes (MMDiT and
MAF head counts, sample_size of DiT models, the Turbo objective) takes the released models' values.

Command line (``python -m audiox_core.checkpoint``)::

    keys CONFIG.json        every key<TAB>shape the loader expects for that config
    keys synchformer        the same for synchformer_state_dict.pth
    convert IN OUT.safetensors [--dtype bf16] [--part student]
    inspect FILE            detected kind, variant and hyper-parameters
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

import torch

from .config import VARIANT_LABELS, AudioXConfig, VAEConfig
from .errors import AudioXError, CheckpointError, ConfigError, ConfigMismatchError
from .weights import (PARTIAL_KEY, KeyReport, WeightSource, compare_keys, expected_tensors, load_into,
                      save_safetensors, shape_str)

if TYPE_CHECKING:  # the return annotation of load_model only (models import this module's neighbours)
    from .models.audiox import AudioXModel

log = logging.getLogger(__name__)

CONFIG_METADATA_KEY = "audiox_config"
ROLE_METADATA_KEY = "audiox_role"
FORMAT_METADATA_KEY = "format"

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}

# Lightning DMD training checkpoints hold several models side by side.
TRAINING_PARTS = ("student.", "teacher.", "fake.")
TRAINING_EXTRA_PREFIXES = ("discriminator_head.", "discriminator_heads.")


def parse_dtype(d) -> torch.dtype:
    if isinstance(d, torch.dtype):
        return d
    try:
        return DTYPES[str(d).lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {d!r} (use fp32, fp16 or bf16)") from None


# ----------------------------------------------------------------------------------------------
# What kind of file is this?
# ----------------------------------------------------------------------------------------------
@dataclass
class FileKind:
    kind: str  # audiox | audiox_training | vae | synchformer | t5 | clip_vision | lora | stable_audio | unknown
    description: str
    parts: tuple = ()  # for training checkpoints: available model prefixes


def classify_keys(keys) -> FileKind:
    keys = list(keys)
    ks = set(keys)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    parts = tuple(p for p in TRAINING_PARTS if has(p + "model.model."))
    if parts:
        return FileKind("audiox_training", "an AudioX-Turbo DMD training checkpoint with "
                        + ", ".join(p.rstrip(".") for p in parts) + " models", parts)
    if has("conditioner.conditioners.seconds_start.") or has("conditioner.conditioners.seconds_total."):
        return FileKind("stable_audio", "a Stable Audio Open checkpoint (seconds_start/seconds_total "
                        "conditioners), not AudioX")
    if has("model.model.") and (has("model.model.transformer.")):
        return FileKind("audiox", "an AudioX model checkpoint")
    if has("vfeat_extractor."):
        return FileKind("synchformer", "a Synchformer video feature extractor (synchformer_state_dict.pth)")
    if has("encoder.layers.") and has("decoder.layers.") and not has("model."):
        return FileKind("vae", "an Oobleck VAE (VAE.ckpt / vae.ckpt)")
    if has("pretransform.model.encoder.") and not has("model.model."):
        return FileKind("vae", "an Oobleck VAE inside a pretransform wrapper")
    if has("encoder.block.") and ("shared.weight" in ks or has("encoder.embed_tokens")):
        return FileKind("t5", "a T5 text encoder")
    if has("vision_model.") or has("visual.transformer.") or has("visual_encoder_model.vision_model."):
        return FileKind("clip_vision", "a CLIP vision encoder")
    if any(".lora_A" in k or ".lora_down" in k for k in keys):
        return FileKind("lora", "a LoRA adapter")
    return FileKind("unknown", "an unrecognised weights file (first keys: " + ", ".join(keys[:4]) + ")")


_KIND_CACHE: dict = {}


def classify_file(path) -> FileKind:
    """What a weights file is (:func:`classify_keys` on its keys), cached per file version.

    The cache key is the resolved path with its size and modification time, so a replaced file is
    classified again.  Reading keys is cheap for safetensors (the header) and costs one
    memory-mapped ``torch.load`` for pickles.  Unreadable files raise :class:`CheckpointError`
    (not cached, so a fixed file is seen at once)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    kind = _KIND_CACHE.get(key)
    if kind is None:
        kind = classify_keys(WeightSource(p).keys())
        _KIND_CACHE[key] = kind
    return kind


# ----------------------------------------------------------------------------------------------
# Infer an official-schema config from keys and shapes
# ----------------------------------------------------------------------------------------------
def _count(keys, prefix) -> int:
    idx = set()
    for k in keys:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                idx.add(int(head))
    return (max(idx) + 1) if idx else 0


def infer_vae(shapes: Mapping[str, tuple], prefix: str) -> VAEConfig:
    """Oobleck hyper-parameters from ``<prefix>encoder.layers.*`` / ``decoder.layers.*`` shapes."""
    enc = prefix + "encoder.layers."
    dec = prefix + "decoder.layers."
    try:
        first = shapes[enc + "0.weight_v"]  # [channels, in_channels, 7]
    except KeyError:
        raise CheckpointError(f"no VAE encoder weights under {prefix!r}") from None
    channels, in_ch = first[0], first[1]
    n_blocks = _count(shapes, enc) - 3  # conv, blocks..., snake, conv
    c_mults, strides = [], []
    for i in range(1, n_blocks + 1):
        w = shapes[f"{enc}{i}.layers.4.weight_v"]  # [out, in, 2*stride]
        strides.append(w[2] // 2)
        c_mults.append(w[0] // channels)
    enc_latent = shapes[f"{enc}{n_blocks + 2}.weight_v"][0]
    dec_first = shapes[dec + "0.weight_v"]  # [C·c_mults[-1], latent_dim, 7]
    # decoder widths (may differ from the encoder's): block inputs C·c_mults[-1] … C·c_mults[0], output C
    dec_in = [shapes[f"{dec}{i}.layers.1.weight_v"][0] for i in range(1, n_blocks + 1)]  # ConvTranspose [in, out, k]
    dec_channels = shapes[f"{dec}{n_blocks}.layers.1.weight_v"][1]
    if any(w % dec_channels for w in dec_in):
        raise CheckpointError(f"VAE decoder widths {dec_in + [dec_channels]} under {prefix!r} are not multiples of "
                              f"its last width {dec_channels} (not an Oobleck decoder)")
    ratio = 1
    for s in strides:
        ratio *= s
    return VAEConfig(in_channels=in_ch, channels=channels, c_mults=tuple(c_mults), strides=tuple(strides),
                     encoder_latent_dim=enc_latent, latent_dim=dec_first[1], downsampling_ratio=ratio,
                     decoder_channels=dec_channels, decoder_c_mults=tuple(w // dec_channels for w in reversed(dec_in)))


def infer_config(shapes: Mapping[str, tuple], *, notes: Optional[list] = None) -> AudioXConfig:
    """Official-schema config from the keys and shapes of a flat AudioX state dict.

    Values that shapes do not determine take the released models' values, and each such guess
    is appended to ``notes``.
    """
    notes = notes if notes is not None else []
    keys = list(shapes)
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    mm = "model.model."
    if mm + "transformer.proj_mm_seq_len.weight" in shapes:
        btype = "mmdit"
    elif mm + "transformer.layers.0.self_attn.to_qkv.weight" in shapes:
        btype = "dit"
    else:
        raise CheckpointError("no AudioX backbone found (neither DiT nor MMDiT keys under model.model.transformer.)")
    embed_dim = shapes[mm + "to_timestep_embed.0.weight"][0]
    depth = _count(keys, mm + "transformer.layers.")
    io_channels = shapes[mm + "preprocess_conv.weight"][0]
    cond_token_dim = shapes[mm + "to_cond_embed.0.weight"][1]
    global_cond_dim = shapes.get(mm + "to_global_embed.0.weight", (0, 0))[1]
    bcfg = dict(io_channels=io_channels, embed_dim=embed_dim, depth=depth, cond_token_dim=cond_token_dim,
                global_cond_dim=global_cond_dim, project_cond_tokens=False,
                transformer_type="continuous_transformer")
    if btype == "dit":
        rot = 2 * shapes[mm + "transformer.rotary_pos_emb.inv_freq"][0]
        dim_heads = 64 if rot <= 32 else 2 * rot
        if rot <= 32:
            notes.append("DiT head width taken as 64 (rotary width 32 allows any head width ≤ 64)")
        bcfg["num_heads"] = max(1, embed_dim // dim_heads)
    else:
        lx = shapes[mm + "transformer.proj_mm_seq_len.weight"][0]
        bcfg["_latent_seq_len"] = lx
        bcfg["num_heads"] = 24
        notes.append("MMDiT num_heads = 24 assumed (the released value; it cannot be read from shapes, and "
                     "the official code uses embed_dim // num_heads heads of width num_heads)")
    maf = has("maf_block.")
    gate = {}
    if maf:
        experts, maf_dim = shapes["maf_block.unified_experts"]
        layers = _count(keys, "maf_block.fusion_transformer.layers.")
        gcfg = dict(num_experts_per_modality=experts // 3, num_heads=24, num_fusion_layers=layers)
        if maf_dim != 768:
            gcfg["dim"] = maf_dim
        gate = dict(gate=True, gate_type="MAF", gate_type_config=gcfg)
        notes.append("MAF num_heads = 24 assumed (not readable from shapes)")

    vae = infer_vae(shapes, "pretransform.model.")
    pre = vae.to_pretransform()
    conds = []
    vp = "conditioner.conditioners.video_prompt."
    if has(vp):
        ctype = "clip-with-sync-w-empty-feat" if vp + "proj_sync.weight" in shapes else "clip"
        vcfg = {"clip_model_name": "clip-vit-base-patch32"}
        clip = _infer_clip_tower(shapes, vp + "visual_encoder_model.")
        if clip is not None and clip != _OFFICIAL_CLIP:
            vcfg["clip_config"] = clip
        frames = shapes[vp + "Temp_pos_embedding"][1]
        if frames != 50:
            vcfg["clip_config"] = dict(vcfg.get("clip_config", {}), frames=frames)
        out_tokens = shapes[vp + "proj.weight"][0]
        if out_tokens != 128:
            vcfg["out_features"] = out_tokens
        conds.append({"id": "video_prompt", "type": ctype, "config": vcfg})
    conds.append({"id": "text_prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 128}})
    ap = "conditioner.conditioners.audio_prompt."
    objective = "v"
    sample_size = 441000
    if ap + "empty_audio_feat" in shapes:
        acfg = {"sample_rate": 44100, "pretransform_config": infer_vae(shapes, ap + "pretransform.model.").to_pretransform()}
        conds.append({"id": "audio_prompt", "type": "audio_autoencoder", "config": acfg})
    elif ap + "proj_features_128.weight" in shapes:
        lsl = shapes[ap + "proj_features_128.weight"][1]
        acfg = {"sample_rate": 44100, "latent_seq_len": lsl,
                "pretransform_config": infer_vae(shapes, ap + "pretransform.model.").to_pretransform()}
        if btype == "mmdit" and lsl == 215:
            # Turbo: its config names this conditioner "audio_autoencoder" and enables masking.
            acfg.update(mask_ratio_start=0.25, mask_ratio_end=0.75)
            conds.append({"id": "audio_prompt", "type": "audio_autoencoder", "config": acfg})
            objective = "rectified_flow"
            notes.append("rectified-flow objective (AudioX-Turbo) inferred from the 215-frame audio prompt")
        else:
            conds.append({"id": "audio_prompt", "type": "audio_autoencoder_v2", "config": acfg})
    elif ap + "proj_features.weight" in shapes:
        n_mels = shapes[ap + "proj_features.weight"][1]
        conds.append({"id": "audio_prompt", "type": "mel_spec",
                      "config": {"mel_spec_type": "mel_features", "n_mel_channels": n_mels, "target_sample_rate": 24000,
                                 "n_fft": 1024, "hop_length": 256, "win_length": 1024}})
        notes.append("mel audio prompt: masking ratios not stored; the code defaults (0.7–1.0) apply")
    if btype == "mmdit":
        sample_size = 485100 if bcfg["_latent_seq_len"] == 237 else (bcfg["_latent_seq_len"] - 1) * vae.downsampling_ratio
    elif maf:
        sample_size = 485100
        notes.append("sample_size 485100 (11 s) assumed for a DiT-MAF model")
    d = {
        "model_type": "diffusion_cond", "sample_size": sample_size, "sample_rate": 44100, "video_fps": 5,
        "audio_channels": vae.in_channels,
        "model": {
            "io_channels": io_channels, "pretransform": pre,
            "conditioning": {"cond_dim": cond_token_dim, "configs": conds},
            "diffusion": {"type": btype, "diffusion_objective": objective,
                          "cross_attention_cond_ids": [c["id"] for c in conds], "global_cond_ids": [],
                          "config": bcfg, **gate},
        },
    }
    return AudioXConfig.from_dict(d)


_OFFICIAL_CLIP = dict(hidden_size=768, num_hidden_layers=12, patch_size=32, image_size=224, projection_dim=512)


def _infer_clip_tower(shapes, p) -> Optional[dict]:
    k = p + "vision_model.embeddings.patch_embedding.weight"
    if k not in shapes:
        return None
    hidden, _, patch, _ = shapes[k]
    n_pos = shapes[p + "vision_model.embeddings.position_embedding.weight"][0]
    grid = int(round((n_pos - 1) ** 0.5))
    return dict(hidden_size=hidden, num_hidden_layers=_count(shapes, p + "vision_model.encoder.layers."),
                patch_size=patch, image_size=grid * patch,
                projection_dim=shapes[p + "visual_projection.weight"][0])


# ----------------------------------------------------------------------------------------------
# Open a file as an AudioX model source
# ----------------------------------------------------------------------------------------------
@dataclass
class Detected:
    path: Path
    kind: FileKind
    source: Optional[WeightSource]  # positioned at the chosen model's keys
    config: Optional[AudioXConfig]
    config_from: str = ""
    role: str = ""  # "student" | "base" for Turbo; "" otherwise
    notes: list = field(default_factory=list)

    @property
    def variant(self) -> Optional[str]:
        return self.config.variant if self.config is not None else None


def _sibling_config(path: Path) -> Optional[Path]:
    for name in ("config.json", "model_config.json", path.stem + ".json"):
        p = path.parent / name
        if p.is_file():
            return p
    return None


def detect(path, *, config=None, part: Optional[str] = None) -> Detected:
    """Open ``path`` and work out what it is.  Never loads more than the header/pickle index."""
    path = Path(path)
    src = WeightSource(path)
    kind = classify_keys(src.keys())
    notes: list = []
    role = ""
    if kind.kind == "audiox_training":
        choice = (part or "student").rstrip(".") + "."
        if choice not in kind.parts:
            raise CheckpointError(f"{path}: this training checkpoint holds {', '.join(kind.parts)} — not {choice!r}")
        src = src.sub(choice)
        role = "student" if choice == "student." else "base"
        notes.append(f"using the {choice.rstrip('.')} model of a DMD training checkpoint")
    elif kind.kind != "audiox":
        return Detected(path, kind, src, None, notes=notes)
    cfg, cfg_from = None, ""
    if config is not None:
        cfg = config if isinstance(config, AudioXConfig) else AudioXConfig.from_json(config)
        cfg_from = "argument" if isinstance(config, AudioXConfig) else str(config)
    elif CONFIG_METADATA_KEY in src.metadata:
        try:
            cfg = AudioXConfig.from_dict(json.loads(src.metadata[CONFIG_METADATA_KEY]))
        except (json.JSONDecodeError, ConfigError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: the config stored in the file's metadata is damaged ({e}); pass a "
                                  "config.json for it") from None
        cfg_from = "file metadata"
    else:
        sib = _sibling_config(path)
        if sib is not None:
            try:
                cfg, cfg_from = AudioXConfig.from_json(sib), str(sib)
            except ConfigError as e:
                raise ConfigError(f"{sib}: this config file beside {path.name} cannot be used ({e}); fix it, or "
                                  f"move it away so the config is inferred from the weights") from None
    if cfg is None:
        cfg = infer_config(src.shapes(), notes=notes)
        cfg_from = "inferred from keys and shapes"
    if src.metadata.get(PARTIAL_KEY):
        notes.insert(0, f"PARTIAL result: training was stopped at {src.metadata[PARTIAL_KEY]} — not a finished model")
    if not role and cfg.variant == "audiox_turbo":
        role = src.metadata.get(ROLE_METADATA_KEY, "")
        if not role:
            # The released student (audiox_turbo.ckpt) is a flat dict; the teacher/base
            # (pretrained_ckpt.ckpt) a Lightning checkpoint with a "state_dict" wrapper.
            role = "base" if src.container else "student"
            notes.append(f"Turbo role '{role}' inferred from the file layout")
    return Detected(path, kind, src, cfg, cfg_from, role, notes)


# ----------------------------------------------------------------------------------------------
# Load
# ----------------------------------------------------------------------------------------------
def _vae_source(vae) -> WeightSource:
    src = vae if isinstance(vae, WeightSource) else WeightSource(vae)
    kind = classify_keys(src.keys())
    if kind.kind != "vae":
        raise CheckpointError(f"{src.path}: expected a VAE file, found {kind.description}")
    for p in ("pretransform.model.", "model."):
        if any(k.startswith(p + "encoder.") for k in src.keys()):
            return src.sub(p)
    return src


def load_model(path, *, config=None, dtype=torch.float32, device="cpu", vae=None,
               vae_dtype=torch.float32, part: Optional[str] = None, clip_vision=None) -> "AudioXModel":
    """Build the model ``path`` holds on the meta device and load its weights strictly.

    ``dtype``: backbone, MAF and conditioners; ``vae_dtype``: the VAE copies (fp32 by default, as
    the official decodes in fp32).  ``vae``: a separate VAE file (VAE.ckpt / vae.ckpt) used for every
    VAE whose weights the checkpoint lacks, and overriding the main VAE when given (as the official
    Turbo loader does).  ``part``: ``student``/``teacher``/``fake`` for DMD training checkpoints.
    ``clip_vision``: a CLIP ViT-B/32 vision file for checkpoints saved without the CLIP tower.
    """
    from .models.audiox import build_model

    dtype, vae_dtype = parse_dtype(dtype), parse_dtype(vae_dtype)
    det = detect(path, config=config, part=part)
    if det.config is None:
        raise CheckpointError(f"{det.path}: this is {det.kind.description}, not an AudioX model checkpoint")
    cfg, src = det.config, det.source
    model = build_model(cfg, device="meta", dtype=dtype)
    _set_vae_dtypes(model, vae_dtype)

    expected = expected_tensors(model)
    found = src.shapes()
    with _blame("vae"):
        vae_src = _vae_source(vae) if vae is not None else None

    def is_vae_key(k):
        return k.startswith("pretransform.model.") or ".pretransform.model." in k

    def is_clip_key(k):
        return ".visual_encoder_model." in k

    ignore = lambda k: k.endswith("embeddings.position_ids")  # noqa: E731  legacy transformers buffer
    report = compare_keys(expected, found, ignore)
    missing_vae = [k for k in report.missing if is_vae_key(k)]
    missing_clip = [k for k in report.missing if is_clip_key(k)]
    others = [k for k in report.missing if not is_vae_key(k) and not is_clip_key(k)]
    problems = KeyReport(list(others), report.unexpected, report.mismatched)
    if missing_vae and vae_src is None:
        problems.missing += missing_vae
    if missing_clip and clip_vision is None:
        problems.missing += missing_clip
    if not problems.ok:
        # Name the real culprit: the file lacks a whole VAE / CLIP tower only when nothing else is
        # wrong and it has no key of that part at all; otherwise the config does not fit the weights.
        only_parts = not (others or report.unexpected or report.mismatched)
        # a part is "absent" when the file has no key at all under the prefix of its missing keys
        vae_prefixes = {k[: k.index("pretransform.model.") + len("pretransform.model.")] for k in missing_vae}
        clip_prefixes = {k[: k.index(".visual_encoder_model.") + len(".visual_encoder_model.")] for k in missing_clip}
        has_vae = any(k.startswith(tuple(vae_prefixes)) for k in found) if vae_prefixes else False
        has_clip = any(k.startswith(tuple(clip_prefixes)) for k in found) if clip_prefixes else False
        hint = ""
        if only_parts and missing_vae and vae_src is None and not has_vae:
            hint += "\n  This checkpoint has no VAE weights: pass the VAE file (VAE.ckpt / vae.ckpt)."
        if only_parts and missing_clip and clip_vision is None and not has_clip:
            hint += "\n  This checkpoint has no CLIP vision tower: pass a CLIP ViT-B/32 vision file."
        if not hint:
            culprit = ("the config " + det.config_from if det.config_from not in ("", "inferred from keys and shapes")
                       else "the architecture inferred from its keys")
            hint = (f"\n  The weights do not fit {culprit}"
                    + (": use the config.json that came with this checkpoint, or remove the config so it is "
                       "inferred from the weights." if culprit.startswith("the config") else
                       ": the file is damaged or not an AudioX checkpoint this version supports."))
            err = ConfigMismatchError if culprit.startswith("the config") else CheckpointError
        else:
            err = CheckpointError
        raise err(
            f"{det.path}: does not match the {VARIANT_LABELS[cfg.variant]} model built from the config "
            f"({det.config_from}):\n  {problems.summary()}{hint}")

    load_into(model, src, device=device, ignore_unexpected=ignore,
              allow_missing=lambda k: (k in missing_vae) or (k in missing_clip), what=VARIANT_LABELS[cfg.variant])
    if vae_src is not None:
        for prefix, mod in _vae_modules(model):
            if mod is model.pretransform.model or any(k.startswith(prefix) for k in missing_vae):
                with _blame("vae"):
                    load_into(mod, vae_src, device=device, what="VAE")
    if clip_vision is not None and missing_clip:
        from .conditioning.clip_video import load_clip_vision_into
        with _blame("clip_vision"):
            load_clip_vision_into(model.video_conditioner, clip_vision, device=device)
    _check_materialised(model, det.path)
    model.eval().requires_grad_(False)
    model.info = dict(file=str(det.path), variant=cfg.variant, role=det.role, config_from=det.config_from,
                      dtype=str(dtype).replace("torch.", ""), notes=list(det.notes))
    for n in det.notes:
        log.info("%s: %s", det.path.name, n)
    return model


@contextlib.contextmanager
def _blame(culprit: str):
    """Errors raised in the block are about the separate ``culprit`` file (``vae`` / ``clip_vision``),
    not the checkpoint: they carry ``culprit`` so callers (the loader node) name the right input."""
    try:
        yield
    except AudioXError as e:
        e.culprit = culprit
        raise


def _vae_modules(model):
    out = [("pretransform.model.", model.pretransform.model)]
    ac = model.audio_conditioner
    if ac is not None and hasattr(ac, "pretransform"):
        out.append(("conditioner.conditioners.audio_prompt.pretransform.model.", ac.pretransform.model))
    return out


def _set_vae_dtypes(model, vae_dtype):
    for _, mod in _vae_modules(model):
        mod.to(vae_dtype)


def _check_materialised(model, path):
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.device.type == "meta"]
    if left:
        raise CheckpointError(f"{path}: internal error: {len(left)} tensors were never loaded (e.g. {left[0]})")


def load_vae(path, *, dtype=torch.float32, device="cpu", config: Optional[VAEConfig] = None):
    """Load a standalone VAE file into a :class:`~audiox_core.models.vae.Pretransform`."""
    from .models.vae import Pretransform
    src = _vae_source(path)
    cfg = config or infer_vae(src.shapes(), "")
    with torch.device("meta"):
        pt = Pretransform(cfg)
    pt.to(dtype)
    load_into(pt.model, src, device=device, what="Oobleck VAE")
    return pt.eval().requires_grad_(False)


def load_error_source(error: AudioXError) -> str:
    """Which file a :func:`load_model` error is about, for a caller that names its own inputs:
    ``"vae"`` / ``"clip_vision"`` (that separate file failed or does not fit), ``"missing_vae"`` /
    ``"missing_clip_vision"`` (the checkpoint lacks that part and no file for it was given), or
    ``"checkpoint"``."""
    culprit = getattr(error, "culprit", None)
    if culprit in ("vae", "clip_vision"):
        return culprit
    if isinstance(error, CheckpointError) and "no VAE weights" in str(error):
        return "missing_vae"
    if isinstance(error, CheckpointError) and "no CLIP vision tower" in str(error):
        return "missing_clip_vision"
    return "checkpoint"


def save_model(model, path, *, dtype: Optional[torch.dtype] = None, role: str = "", extra_metadata=None) -> None:
    """Save as ``.safetensors`` with the config (and Turbo role) in the metadata; atomic."""
    sd = model.state_dict()
    if dtype is not None:
        sd = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items())
    md = {FORMAT_METADATA_KEY: "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())}
    role = role or getattr(model, "info", {}).get("role", "")
    if role:
        md[ROLE_METADATA_KEY] = role
    md.update(extra_metadata or {})
    save_safetensors(sd, path, md)


def expected_keys(cfg: AudioXConfig) -> "OrderedDict[str, tuple]":
    from .models.audiox import build_model
    return expected_tensors(build_model(cfg, device="meta"))


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _cmd_keys(args) -> int:
    if args.target == "synchformer":
        from .conditioning.synchformer import Synchformer
        with torch.device("meta"):
            m = Synchformer()
        rows = expected_tensors(m)
    else:
        rows = expected_keys(AudioXConfig.from_json(args.target))
    out = sys.stdout
    for k, s in rows.items():
        out.write(f"{k}\t{shape_str(s)}\n")
    return 0


def _cmd_convert(args) -> int:
    src_path = Path(args.input)
    src = WeightSource(src_path)
    kind = classify_keys(src.keys())
    md = {FORMAT_METADATA_KEY: "pt"}
    if kind.kind == "audiox_training":
        det = detect(src_path, part=args.part)
        src = det.source
        md[CONFIG_METADATA_KEY] = json.dumps(det.config.to_dict())
        md[ROLE_METADATA_KEY] = det.role
    elif kind.kind == "audiox":
        det = detect(src_path, config=args.config)
        md[CONFIG_METADATA_KEY] = json.dumps(det.config.to_dict())
        if det.role:
            md[ROLE_METADATA_KEY] = det.role
    dt = parse_dtype(args.dtype) if args.dtype else None

    class _Lazy(Mapping):  # stream tensors into the writer one at a time
        def __init__(self):
            self._k = [k for k in src.keys() if not k.endswith("embeddings.position_ids")]

        def __iter__(self):
            return iter(self._k)

        def __len__(self):
            return len(self._k)

        def __getitem__(self, k):
            t = src.read(k)
            return t.to(dt) if (dt is not None and t.is_floating_point()) else t

    save_safetensors(_Lazy(), args.output, md)
    print(f"wrote {args.output}: {kind.description}, {len(src.keys())} tensors")
    return 0


def _cmd_inspect(args) -> int:
    det = detect(args.file, config=args.config, part=args.part)
    print(f"file:    {det.path}")
    print(f"kind:    {det.kind.description}")
    if det.config is not None:
        c = det.config
        b = c.backbone
        print(f"variant: {c.variant} — {VARIANT_LABELS[c.variant]}" + (f" ({det.role})" if det.role else ""))
        print(f"config:  {det.config_from}")
        print(f"objective: {c.objective}; sample_rate {c.sample_rate}; sample_size {c.sample_size} "
              f"({c.seconds:.2f} s, {c.latent_length} latents)")
        heads = (f"{b.embed_dim // b.num_heads} heads × {b.num_heads}" if b.type == "mmdit"
                 else f"{b.num_heads} heads × {b.embed_dim // b.num_heads}")
        print(f"backbone: {b.type} embed {b.embed_dim}, depth {b.depth}, {heads}, cond {b.cond_token_dim}"
              + (f", latent_seq_len {b.latent_seq_len}" if b.type == "mmdit" else ""))
        if c.maf:
            print(f"MAF: {c.maf.num_experts_per_modality} experts/modality, {c.maf.num_heads} heads, "
                  f"{c.maf.num_fusion_layers} fusion layers")
        for s in c.conditioners:
            print(f"conditioner {s.id}: {s.type} ({s.kind})")
        v = c.vae
        dec = "" if v.decoder_channels is None and v.decoder_c_mults is None else \
            f" (decoder: channels {v.dec_channels}, c_mults {list(v.dec_c_mults)})"
        print(f"VAE: {v.in_channels} ch, channels {v.channels}, c_mults {list(v.c_mults)}, strides {list(v.strides)}"
              f"{dec}, latent {v.latent_dim}, ÷{v.downsampling_ratio}")
    n = det.source.nbytes() if det.source is not None else 0
    print(f"tensors: {len(det.source.keys()) if det.source else 0}, {n / 2**30:.2f} GiB")
    for note in det.notes:
        print(f"note:    {note}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m audiox_core.checkpoint", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys", help="print every key<TAB>shape expected for a config (or 'synchformer')")
    k.add_argument("target")
    c = sub.add_parser("convert", help="rewrite a pickle checkpoint as .safetensors (streamed)")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    c.add_argument("--part", default=None, help="student/teacher/fake for DMD training checkpoints")
    c.add_argument("--config", default=None)
    i = sub.add_parser("inspect", help="print the detected variant and hyper-parameters")
    i.add_argument("file")
    i.add_argument("--config", default=None)
    i.add_argument("--part", default=None)
    args = ap.parse_args(argv)
    try:
        return {"keys": _cmd_keys, "convert": _cmd_convert, "inspect": _cmd_inspect}[args.cmd](args)
    except (CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
