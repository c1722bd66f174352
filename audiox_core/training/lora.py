"""LoRA adapters for the AudioX backbones (DiT, MMDiT) and, optionally, the MAF block.

What a LoRA is here
-------------------
For a target projection with weight ``W`` the adapted module computes

    y = base(x) + strength · (alpha / r) · B(A(dropout(x)))

* ``nn.Linear`` (``in → out``): ``A [r, in]``, ``B [out, r]``, ``ΔW = B·A``.
* the MMDiT's channel-last ``Conv1d(k=3, "same")`` modules (``linear1``, ``ffn.w1/w2/w3``,
  :class:`~audiox_core.models.blocks.ChannelLastConv1d`): ``A [r, in, k]`` is a k-tap convolution
  into the rank space, ``B [out, r, 1]`` a 1×1 convolution back, so ``ΔW[o, i, j] = Σ_r B[o, r]·A[r, i, j]``
  — the exact low-rank update of the conv weight ``[out, in, k]`` (what ComfyUI computes as
  ``(B.flatten(1) @ A.flatten(1)).reshape(W.shape)``).

``A`` is initialised like PEFT (Kaiming-uniform, a = √5), ``B`` with zeros: a fresh LoRA is an
exact no-op.  The number of parameters per target is ``r·(in·k + out)`` (``k = 1`` for Linear).

How it is attached
------------------
Adapters are **not** inserted into the model's module tree: a forward hook on each target adds
the low-rank term to the module's output.  So while a LoRA is applied

* the base weights are never written (``state_dict()`` of the model is unchanged, bit for bit),
* ``save_model`` / the loaders keep working on the base model,
* several LoRAs can be attached at once, each with its own ``strength`` (a float on the
  :class:`LoRA` object; strength 0 or ``enabled = False`` skips the adapter entirely: the output is
  then exactly the base output),
* the MMDiT's fused ``w1``/``w3`` im2col fast path (:class:`~audiox_core.models.mmdit.ConvMLP`)
  sees the hooks and falls back to calling the modules, which gives the same numbers.

:func:`merge` bakes the attached LoRAs into the weights (fp32 arithmetic, cast back) for speed; the
original tensors are kept and :func:`unmerge` restores them bit for bit.  :func:`merged_state_dict`
returns merged weights without touching the model (to save a baked checkpoint).

Targets
-------
``targets`` is ``"attention"``, ``"feed-forward"``, ``"all"`` or a regular expression matched
(``re.search``) against the module's full key path (e.g. ``model.model.transformer.layers.3.attn.qkv``):

========================  ============================================  ===============================
role                      DiT (AudioX, AudioX-MAF)                      MMDiT (MAF-MMDiT, Turbo)
========================  ============================================  ===============================
attention                 ``self_attn.to_qkv/to_out``,                  ``attn.qkv``, ``linear1`` (the
                          ``cross_attn.to_q/to_kv/to_out``              attention output conv),
                                                                        ``cross_attn.to_kv``
feed-forward              ``ff.ff.0.proj``, ``ff.ff.2``                 ``ffn.w1/w2/w3``
all                       attention + feed-forward                      + ``adaLN_modulation.1``
========================  ============================================  ===============================

With ``include_maf`` the MAF block is targeted too (attention: ``cross_attn.out_proj`` and the
fusion layers' ``self_attn.out_proj``; feed-forward: fusion ``linear1/linear2``; all: + the
``gating_network`` linears).  MAF's packed ``in_proj_weight`` is a raw parameter, not a module,
and cannot carry a LoRA.  The MMDiT's ``cross_attn.to_q`` is never called by the forward (see
:mod:`audiox_core.models.mmdit`) and is never targeted; a regex that selects it is an error.

File format (``.safetensors``, written atomically)
---------------------------------------------------
Keys follow the ComfyUI / PEFT ("diffusers2") convention under the model's own module paths::

    model.model.transformer.layers.0.attn.qkv.lora_A.weight    [r, in]  or [r, in, k]
    model.model.transformer.layers.0.attn.qkv.lora_B.weight    [out, r] or [out, r, 1]
    model.model.transformer.layers.0.attn.qkv.alpha            scalar (scale = alpha / r)

Metadata: ``audiox_lora_format`` (:data:`LORA_FORMAT_VERSION`) and ``audiox_lora`` (JSON: base
``variant``, ``base_fingerprint`` / ``base_shapes`` / ``base_probe`` of the base weights, ``rank``,
``alpha``, ``dropout``, ``targets``, ``include_maf``, ``steps``, ``dataset_hash``, free ``notes``),
plus kohya-style ``ss_network_dim`` / ``ss_network_alpha`` for generic tools.  Loading checks the
variant, that every target exists with the stored shape (clear :class:`CheckpointError` otherwise)
and that the base fingerprint matches (error unless ``allow_other_base=True``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from ..models.blocks import BackboneBase, ChannelLastConv1d

log = logging.getLogger(__name__)

__all__ = [
    "LORA_FORMAT_VERSION", "PRESETS", "LoRAAdapter", "LoRA", "create_lora", "load_lora", "resolve_targets",
    "attached_loras", "merge", "unmerge", "merged_state_dict", "merged_copy", "base_fingerprint", "lora_scope",
]

LORA_FORMAT_VERSION = 1
PRESETS = ("attention", "feed-forward", "all")
BACKBONE_PREFIX = "model.model."
MAF_PREFIX = "maf_block."
_SLOTS = "_audiox_lora_slots"  # module.__dict__ entry: list of (weakref LoRA, adapter)
_HOOK = "_audiox_lora_hook"
_BACKUP = "_audiox_lora_backup"

# Role of each projection, by its path relative to one backbone layer / the MAF block.
_DIT_ROLES = [(r"self_attn\.(to_qkv|to_out)$", "attention"), (r"cross_attn\.(to_q|to_kv|to_out)$", "attention"),
              (r"ff\.ff\.(0\.proj|2)$", "feed-forward")]
_MMDIT_ROLES = [(r"attn\.qkv$", "attention"), (r"linear1$", "attention"), (r"cross_attn\.to_kv$", "attention"),
                (r"cross_attn\.to_q$", "unused"), (r"ffn\.w[123]$", "feed-forward"),
                (r"adaLN_modulation\.1$", "modulation")]
_MAF_ROLES = [(r"(^|\.)out_proj$", "attention"), (r"fusion_transformer\.layers\.\d+\.linear[12]$", "feed-forward"),
              (r"gating_network\.[02]$", "gating")]
_PRESET_ROLES = {"attention": {"attention"}, "feed-forward": {"feed-forward"},
                 "all": {"attention", "feed-forward", "modulation", "gating", "other"}}


# ----------------------------------------------------------------------------------------------
# Finding the parts of a model
# ----------------------------------------------------------------------------------------------
def _parts(root: nn.Module) -> tuple[nn.Module, str, Optional[nn.Module]]:
    """``(backbone, how the backbone's keys are prefixed in root, maf or None)``.

    ``root`` is an :class:`~audiox_core.models.audiox.AudioXModel` (keys ``model.model.*``,
    ``maf_block.*``) or a bare DiT/MMDiT backbone (keys relative to it).
    """
    if isinstance(root, BackboneBase):
        return root, "", None
    bb = getattr(root, "backbone", None)
    if isinstance(bb, BackboneBase):
        return bb, BACKBONE_PREFIX, getattr(root, "maf_block", None)
    raise InputError(f"LoRA: expected an AudioX model or a DiT/MMDiT backbone, got {type(root).__name__}")


def _is_target_type(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, ChannelLastConv1d) and m._fast_ok())


def _role(rel: str, rules) -> str:
    for pat, role in rules:
        if re.search(pat, rel):
            return role
    return "other"


def candidate_modules(root: nn.Module, include_maf: bool = True) -> "OrderedDict[str, tuple[nn.Module, str]]":
    """Every LoRA-able projection: canonical key path → ``(module, role)``.

    Canonical paths are AudioXModel paths (``model.model.transformer.layers.N.…``, ``maf_block.…``)
    even when ``root`` is a bare backbone.
    """
    bb, _, maf = _parts(root)
    rules = _MMDIT_ROLES if type(bb).__name__ == "MMDiT" else _DIT_ROLES
    out: "OrderedDict[str, tuple[nn.Module, str]]" = OrderedDict()
    for i, layer in enumerate(bb.transformer.layers):
        for rel, m in layer.named_modules():
            if rel and _is_target_type(m):
                out[f"{BACKBONE_PREFIX}transformer.layers.{i}.{rel}"] = (m, _role(rel, rules))
    if include_maf and maf is not None:
        for rel, m in maf.named_modules():
            if rel and _is_target_type(m):
                out[MAF_PREFIX + rel] = (m, _role(rel, _MAF_ROLES))
    return out


def resolve_targets(root: nn.Module, targets: Union[str, Sequence[str]] = "all",
                    include_maf: bool = False) -> list[str]:
    """Canonical key paths selected by ``targets`` (a preset, a regex, or an explicit list of paths)."""
    if isinstance(targets, (list, tuple)):
        cands = candidate_modules(root, include_maf=True)
        missing = [t for t in targets if t not in cands]
        if missing:
            raise InputError(f"LoRA targets not found among the model's LoRA-able modules: {missing[:4]}")
        unused = [t for t in targets if cands[t][1] == "unused"]
        if unused:
            raise InputError(f"LoRA target {unused[0]!r} is never called by the forward pass; "
                             "a LoRA there has no effect")
        return list(targets)
    if not isinstance(targets, str) or not targets:
        raise InputError(f"LoRA targets must be one of {PRESETS}, a regular expression or a list, got {targets!r}")
    if targets in PRESETS:
        roles = _PRESET_ROLES[targets]
        sel = [p for p, (_, r) in candidate_modules(root, include_maf).items() if r in roles]
    else:
        try:
            rx = re.compile(targets)
        except re.error as e:
            raise InputError(f"LoRA targets {targets!r} is neither a preset {PRESETS} nor a valid regex: {e}") from None
        cands = candidate_modules(root, include_maf=True)
        sel = [p for p, (_, r) in cands.items() if rx.search(p)]
        bad = [p for p in sel if cands[p][1] == "unused"]
        if bad:
            raise InputError(f"LoRA targets {targets!r} select {bad[0]!r}, which the forward pass never calls "
                             f"(a LoRA there has no effect); narrow the expression")
    if not sel:
        raise InputError(f"LoRA targets {targets!r} select no module of this model")
    return sel


def _module_at(root: nn.Module, path: str) -> nn.Module:
    bb, prefix, maf = _parts(root)
    if path.startswith(BACKBONE_PREFIX):
        base, rel = bb, path[len(BACKBONE_PREFIX):]
    elif path.startswith(MAF_PREFIX):
        if maf is None:
            raise CheckpointError(f"LoRA targets {path!r} but this model has no MAF block")
        base, rel = maf, path[len(MAF_PREFIX):]
    else:
        raise CheckpointError(f"LoRA key path {path!r} is neither under {BACKBONE_PREFIX!r} nor {MAF_PREFIX!r}")
    try:
        return base.get_submodule(rel)
    except AttributeError:
        raise CheckpointError(f"LoRA targets {path!r}, which this model does not have") from None


def _geometry(m: nn.Module) -> tuple[str, int, int, int]:
    """``(kind, in, out, k)`` of a target module."""
    if isinstance(m, nn.Linear):
        return "linear", m.in_features, m.out_features, 1
    if isinstance(m, ChannelLastConv1d):
        return "conv", m.in_channels, m.out_channels, m.kernel_size[0]
    raise InputError(f"LoRA: {type(m).__name__} modules cannot carry a LoRA (only Linear and channel-last Conv1d)")


# ----------------------------------------------------------------------------------------------
# Base-weight fingerprint
# ----------------------------------------------------------------------------------------------
def _base_tensors(root: nn.Module) -> list[tuple[str, torch.Tensor]]:
    bb, _, maf = _parts(root)
    items = [(BACKBONE_PREFIX + k, v) for k, v in bb.state_dict(keep_vars=True).items()]
    if maf is not None:
        items += [(MAF_PREFIX + k, v) for k, v in maf.state_dict(keep_vars=True).items()]
    return items


def base_fingerprint(root: nn.Module, probes: int = 16) -> dict:
    """Identify the base weights cheaply and dtype-robustly.

    ``shapes``: sha256 of every backbone/MAF ``key:shape`` line (architecture identity);
    ``probe``: 4 values at fixed positions from ``probes`` evenly chosen weight tensors (fp32);
    ``id``: a short hash of both (probe values rounded to bf16), for display.
    """
    items = _base_tensors(root)
    h = hashlib.sha256()
    for k, v in items:
        h.update(f"{k}:{tuple(v.shape)}\n".encode())
    shapes = h.hexdigest()[:20]
    weights = sorted((k, v) for k, v in items if v.is_floating_point() and v.numel() >= 4 and v.dim() >= 2)
    if weights:
        idx = sorted({round(i * (len(weights) - 1) / max(probes - 1, 1)) for i in range(min(probes, len(weights)))})
        chosen = [weights[i] for i in idx]
    else:
        chosen = []
    probe = []
    with torch.no_grad():
        for _, v in chosen:
            flat = v.detach().reshape(-1)
            n = flat.numel()
            for j in range(4):
                probe.append(float(flat[int(n * (j + 0.5) / 4)].float()))
    q = torch.tensor(probe, dtype=torch.float32).to(torch.bfloat16).view(torch.int16).tolist() if probe else []
    fid = hashlib.sha256(f"{shapes}|{q}".encode()).hexdigest()[:16]
    return {"id": fid, "shapes": shapes, "probe": [float(f"{p:.6g}") for p in probe]}


def _probe_matches(a: Sequence[float], b: Sequence[float]) -> bool:
    if len(a) != len(b):
        return False
    return all(abs(x - y) <= 1e-2 * max(1e-3, abs(x), abs(y)) for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------
# One adapter
# ----------------------------------------------------------------------------------------------
class LoRAAdapter(nn.Module):
    """The low-rank pair of one target: ``delta(x) = (alpha / r) · B(A(dropout(x)))``.

    ``kind`` "linear": ``lora_A [r, in]``, ``lora_B [out, r]``, input ``[..., in]``.
    ``kind`` "conv": ``lora_A [r, in, k]``, ``lora_B [out, r, 1]``, channel-last input
    ``[B, L, in]`` with "same" zero padding ``(k − 1) / 2``.
    """

    def __init__(self, kind: str, in_features: int, out_features: int, rank: int, alpha: float,
                 kernel_size: int = 1, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise InputError(f"LoRA rank must be ≥ 1, got {rank}")
        if kind == "conv" and kernel_size % 2 == 0:
            raise InputError(f"LoRA conv adapters need an odd kernel size, got {kernel_size}")
        self.kind, self.rank, self.alpha = kind, int(rank), float(alpha)
        self.in_features, self.out_features, self.kernel_size = int(in_features), int(out_features), int(kernel_size)
        if kind == "linear":
            self.lora_A = nn.Parameter(torch.empty(rank, in_features))
            self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        elif kind == "conv":
            self.lora_A = nn.Parameter(torch.empty(rank, in_features, kernel_size))
            self.lora_B = nn.Parameter(torch.zeros(out_features, rank, 1))
        else:
            raise InputError(f"LoRA adapter kind must be 'linear' or 'conv', got {kind!r}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if not self.lora_A.is_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lora_A, self.lora_B
        if not torch.is_autocast_enabled(x.device.type) and x.dtype != a.dtype:
            x = x.to(a.dtype)
        x = self.dropout(x)
        if self.kind == "linear":
            h = F.linear(x, a)
        else:
            h = F.conv1d(x.transpose(1, 2), a, padding=(self.kernel_size - 1) // 2).transpose(1, 2)
        return F.linear(h, b.reshape(self.out_features, self.rank)) * self.scale

    forward = delta

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / r) · ΔW`` in fp32 with the base weight's shape (``[out, in]`` / ``[out, in, k]``)."""
        b = self.lora_B.detach().float().reshape(self.out_features, self.rank)
        a = self.lora_A.detach().float().reshape(self.rank, -1)
        w = (b @ a) * self.scale
        return w if self.kind == "linear" else w.view(self.out_features, self.in_features, self.kernel_size)

    def extra_repr(self) -> str:
        k = f", k={self.kernel_size}" if self.kind == "conv" else ""
        return f"{self.kind}, {self.in_features}→{self.out_features}, r={self.rank}, alpha={self.alpha:g}{k}"


def _mkey(path: str) -> str:
    return path.replace(".", "-")


# ----------------------------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------------------------
def _lora_hook(module: nn.Module, args, output):
    if _BACKUP in module.__dict__:  # merged: the weight already holds the update
        return None
    x = args[0]
    out = None
    for ref, adapter in module.__dict__.get(_SLOTS, ()):
        lora = ref()
        if lora is None or not lora.enabled or lora.strength == 0:
            continue
        d = adapter.delta(x)
        s = float(lora.strength)
        d = d if s == 1.0 else d * s
        out = (output if out is None else out) + d.to(output.dtype)
    return out


def _install(module: nn.Module, lora: "LoRA", adapter: LoRAAdapter) -> None:
    slots = module.__dict__.setdefault(_SLOTS, [])
    slots.append((weakref.ref(lora), adapter))
    if _HOOK not in module.__dict__:
        module.__dict__[_HOOK] = module.register_forward_hook(_lora_hook)


def _uninstall(module: nn.Module, lora: "LoRA") -> None:
    slots = [s for s in module.__dict__.get(_SLOTS, []) if s[0]() is not None and s[0]() is not lora]
    module.__dict__[_SLOTS] = slots
    if not slots:
        handle = module.__dict__.pop(_HOOK, None)
        if handle is not None:
            handle.remove()
        module.__dict__.pop(_SLOTS, None)


def _hosted(root: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in root.named_modules():
        if m.__dict__.get(_SLOTS):
            yield name, m


def attached_loras(root: nn.Module) -> list["LoRA"]:
    """The LoRA objects currently attached anywhere in ``root`` (in attachment order)."""
    seen: "OrderedDict[int, LoRA]" = OrderedDict()
    for _, m in _hosted(root):
        for ref, _ in m.__dict__[_SLOTS]:
            lora = ref()
            if lora is not None:
                seen.setdefault(id(lora), lora)
    return list(seen.values())


# ----------------------------------------------------------------------------------------------
# A whole LoRA
# ----------------------------------------------------------------------------------------------
class LoRA(nn.Module):
    """A set of adapters for one base model (see the module docstring).

    Attributes: ``paths`` (canonical target key paths), ``rank``, ``alpha``, ``dropout``,
    ``strength`` (float, default 1), ``enabled`` (bool), ``meta`` (dict written to the file:
    variant, base fingerprint, targets, steps, dataset_hash …).  Parameters are the adapters'
    ``lora_A``/``lora_B`` (an ordinary ``nn.Module``: ``.parameters()``, ``.to()``, ``.train()``).
    """

    def __init__(self, geometry: Mapping[str, tuple], rank: int, alpha: float, dropout: float = 0.0,
                 meta: Optional[dict] = None, ranks: Optional[Mapping[str, int]] = None,
                 alphas: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.paths = list(geometry)
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        self.adapters = nn.ModuleDict()
        for p, (kind, fin, fout, k) in geometry.items():
            r = int((ranks or {}).get(p, rank))
            a = float((alphas or {}).get(p, alpha))
            self.adapters[_mkey(p)] = LoRAAdapter(kind, fin, fout, r, a, k, dropout)
        self.meta = dict(meta or {})
        self.strength = 1.0
        self.enabled = True
        self._root: Optional[weakref.ref] = None

    # ------------------------------------------------------------------ access
    def adapter(self, path: str) -> LoRAAdapter:
        return self.adapters[_mkey(path)]

    def items(self) -> Iterator[tuple[str, LoRAAdapter]]:
        for p in self.paths:
            yield p, self.adapters[_mkey(p)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def attached(self) -> bool:
        return self._root is not None and self._root() is not None

    # ------------------------------------------------------------------ attach
    def check_compatible(self, root: nn.Module, *, allow_other_base: bool = False) -> None:
        """Raise :class:`CheckpointError` if this LoRA does not fit ``root`` (variant, shapes, base weights)."""
        variant = getattr(getattr(root, "config", None), "variant", None)
        want = self.meta.get("variant")
        if want and variant and want != variant:
            raise CheckpointError(f"this LoRA was trained for {want}, the model is {variant}")
        for p, ad in self.items():
            m = _module_at(root, p)
            if not _is_target_type(m):
                raise CheckpointError(f"LoRA targets {p!r}, which is a {type(m).__name__} here (not Linear/Conv1d)")
            kind, fin, fout, k = _geometry(m)
            if (kind, fin, fout, k) != (ad.kind, ad.in_features, ad.out_features, ad.kernel_size):
                shape = f"[{fout}, {fin}" + (f", {k}]" if kind == "conv" else "]")
                mine = f"[{ad.out_features}, {ad.in_features}" + (f", {ad.kernel_size}]" if ad.kind == "conv" else "]")
                raise CheckpointError(f"LoRA for another model: {p!r} is {mine} in the LoRA but {shape} in this model")
        fp = self.meta.get("base_fingerprint")
        if fp:
            mine = base_fingerprint(root)
            if self.meta.get("base_shapes") and self.meta["base_shapes"] != mine["shapes"]:
                raise CheckpointError(f"LoRA for another model: it was trained on a base with a different "
                                      f"architecture (base {fp}, this model {mine['id']})")
            probe = self.meta.get("base_probe")
            if probe is not None and not _probe_matches(probe, mine["probe"]):
                msg = (f"this LoRA was trained on other base weights (fingerprint {fp}); this model's weights "
                       f"are {mine['id']}")
                if not allow_other_base:
                    raise CheckpointError(msg + " — pass allow_other_base=True to apply it anyway")
                log.warning("%s; applying anyway", msg)

    def attach(self, root: nn.Module, strength: Optional[float] = None, *, allow_other_base: bool = False,
               check: bool = True) -> "LoRA":
        """Hook the adapters into ``root`` (an AudioX model or its bare backbone).  Returns self."""
        from ..acceleration import refuse_fp8
        refuse_fp8(root, "a LoRA")
        if self.attached:
            if self._root() is root:
                if strength is not None:
                    self.strength = float(strength)
                return self
            raise InputError("this LoRA is attached to another model; detach it first")
        if check:
            self.check_compatible(root, allow_other_base=allow_other_base)
        if any(_BACKUP in m.__dict__ for _, m in _hosted(root)):
            raise InputError("cannot attach a LoRA while others are merged into the weights: unmerge first")
        ref = next((p for p in root.parameters()), None)
        if ref is not None and not ref.is_meta:
            if any(p.device != ref.device for p in self.parameters()):
                self.to(ref.device)
        for p, ad in self.items():
            _install(_module_at(root, p), self, ad)
        self._root = weakref.ref(root)
        if strength is not None:
            self.strength = float(strength)
        return self

    def detach(self) -> None:
        """Remove the hooks (a merged model must be unmerged first)."""
        root = self._root() if self._root is not None else None
        if root is None:
            self._root = None
            return
        for p, _ in self.items():
            m = _module_at(root, p)
            if _BACKUP in m.__dict__:
                raise InputError("unmerge the model before detaching a merged LoRA")
            _uninstall(m, self)
        self._root = None

    # ------------------------------------------------------------------ weights
    def comfy_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """``{path}.lora_A.weight`` / ``.lora_B.weight`` / ``.alpha`` (see the module docstring)."""
        sd: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for p, ad in self.items():
            sd[f"{p}.lora_A.weight"] = ad.lora_A.detach().contiguous()
            sd[f"{p}.lora_B.weight"] = ad.lora_B.detach().contiguous()
            sd[f"{p}.alpha"] = torch.tensor(ad.alpha, dtype=torch.float32)
        return sd

    def save(self, path: Union[str, Path], *, dtype: Optional[torch.dtype] = None, **meta) -> Path:
        """Write the LoRA (atomic).  ``meta`` entries (``steps``, ``dataset_hash``, …) update ``self.meta``."""
        from ..weights import save_safetensors
        self.meta.update({k: v for k, v in meta.items() if v is not None})
        sd = self.comfy_state_dict()
        if dtype is not None:
            sd = OrderedDict((k, v.to(dtype) if not k.endswith(".alpha") else v) for k, v in sd.items())
        info = dict(self.meta, rank=self.rank, alpha=self.alpha, dropout=self.dropout, modules=len(self.paths))
        md = {"format": "pt", "audiox_lora_format": str(LORA_FORMAT_VERSION),
              "audiox_lora": json.dumps(info, sort_keys=True),
              "ss_network_dim": str(self.rank), "ss_network_alpha": f"{self.alpha:g}",
              "ss_network_module": "audiox_core.training.lora"}
        path = Path(path)
        save_safetensors(sd, path, md)
        return path

    def load_weights_(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Copy ``comfy_state_dict``-style tensors into the adapters (shapes must match)."""
        with torch.no_grad():
            for p, ad in self.items():
                for name, param in (("lora_A", ad.lora_A), ("lora_B", ad.lora_B)):
                    t = sd[f"{p}.{name}.weight"]
                    if tuple(t.shape) != tuple(param.shape):
                        raise CheckpointError(f"LoRA tensor {p}.{name} has shape {tuple(t.shape)}, "
                                              f"expected {tuple(param.shape)}")
                    param.copy_(t.to(param.dtype))

    def extra_repr(self) -> str:
        return (f"{len(self.paths)} targets, rank {self.rank}, alpha {self.alpha:g}, strength {self.strength:g}"
                f"{'' if self.enabled else ', disabled'}")


def create_lora(root: nn.Module, *, rank: int = 16, alpha: Optional[float] = None,
                targets: Union[str, Sequence[str]] = "all", include_maf: bool = False, dropout: float = 0.0,
                seed: Optional[int] = 0, dtype: torch.dtype = torch.float32, attach: bool = False) -> LoRA:
    """A new (no-op) LoRA for ``root``; ``alpha`` defaults to ``rank`` (scale 1).

    Parameters live on the device of the model, in ``dtype`` (fp32 by default: train adapters
    in fp32 even on a bf16 base).  ``seed`` makes the ``A`` initialisation reproducible.
    """
    rank = int(rank)
    alpha = float(rank if alpha is None else alpha)
    if not alpha > 0:
        raise InputError(f"LoRA alpha must be > 0, got {alpha}")
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"LoRA dropout must be in [0, 1), got {dropout}")
    paths = resolve_targets(root, targets, include_maf)
    geometry = OrderedDict((p, _geometry(_module_at(root, p))) for p in paths)
    variant = getattr(getattr(root, "config", None), "variant", None)
    fp = base_fingerprint(root)
    meta = {"variant": variant, "base_fingerprint": fp["id"], "base_shapes": fp["shapes"], "base_probe": fp["probe"],
            "targets": targets if isinstance(targets, str) else list(targets), "include_maf": bool(include_maf),
            "steps": 0}
    dev = next(root.parameters()).device
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            lora = LoRA(geometry, rank, alpha, dropout, meta)
    else:
        lora = LoRA(geometry, rank, alpha, dropout, meta)
    lora.to(device=dev, dtype=dtype)
    if attach:
        lora.attach(root, check=False)
    return lora


def _read_lora(f, path: Path, device, dtype) -> "LoRA":
    """The LoRA of an opened file (:func:`load_lora`), every tensor checked to be finite."""
    from ..weights import PARTIAL_KEY, check_finite
    md = f.metadata or {}
    info = {}
    if "audiox_lora" in md:
        try:
            info = json.loads(md["audiox_lora"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: corrupt audiox_lora metadata") from None
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: corrupt audiox_lora metadata (not a JSON object)")
        ver = int(md.get("audiox_lora_format", "0") or 0)
        if ver > LORA_FORMAT_VERSION:
            raise CheckpointError(f"{path}: LoRA format version {ver} is newer than this library supports "
                                  f"({LORA_FORMAT_VERSION}); update the node pack")
    keys = f.keys()
    paths = [k[: -len(".lora_A.weight")] for k in keys if k.endswith(".lora_A.weight")]
    if not paths:
        raise CheckpointError(f"{path}: not a LoRA file (no '*.lora_A.weight' keys)")
    shapes = f.shapes()
    geometry, ranks, alphas = OrderedDict(), {}, {}
    for p in paths:
        kb = f"{p}.lora_B.weight"
        if kb not in shapes:
            raise CheckpointError(f"{path}: {p}.lora_A has no matching lora_B")
        sa, sb = shapes[f"{p}.lora_A.weight"], shapes[kb]
        r = sa[0]
        if len(sa) == 2:
            geometry[p] = ("linear", sa[1], sb[0], 1)
        elif len(sa) == 3:
            geometry[p] = ("conv", sa[1], sb[0], sa[2])
        else:
            raise CheckpointError(f"{path}: {p}.lora_A has unsupported shape {sa}")
        if sb[1] != r:
            raise CheckpointError(f"{path}: {p} lora_A rank {r} and lora_B rank {sb[1]} differ")
        ranks[p] = r
        alphas[p] = float(f.read(f"{p}.alpha")) if f"{p}.alpha" in shapes else float(r)
        if not math.isfinite(alphas[p]):
            raise CheckpointError(f"{path}: {p}.alpha is {alphas[p]}, not a finite number")
    rank = int(info.get("rank", next(iter(ranks.values()))))
    alpha = float(info.get("alpha", next(iter(alphas.values()))))
    with torch.device("meta"):
        lora = LoRA(geometry, rank, alpha, float(info.get("dropout", 0.0)), info, ranks=ranks, alphas=alphas)
    lora.to_empty(device=device or "cpu")
    lora.to(dtype)
    tensors = {k: f.read(k) for k in keys if not k.endswith(".alpha")}
    for k, t in tensors.items():
        check_finite(t, path, k)
    lora.load_weights_(tensors)
    if md.get(PARTIAL_KEY):
        lora.meta["partial"] = md[PARTIAL_KEY]
    return lora


def load_lora(path: Union[str, Path], root: Optional[nn.Module] = None, *, strength: float = 1.0,
              attach: bool = True, allow_other_base: bool = False, device=None,
              dtype: torch.dtype = torch.float32) -> LoRA:
    """Read a LoRA file; with ``root`` validate it against that model and (by default) attach it.

    Raises :class:`CheckpointError` for a non-LoRA file, a LoRA made for another model (variant,
    missing target, shape) or other base weights (unless ``allow_other_base``).
    """
    from ..weights import SafetensorsFile
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"LoRA file not found: {path}")
    try:
        f = SafetensorsFile(path)
    except CheckpointError:
        raise
    except Exception as e:  # pragma: no cover - defensive
        raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None
    try:
        lora = _read_lora(f, path, device, dtype)
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"{path}: not a valid LoRA file ({type(e).__name__}: {str(e)[:200]})") from None
    lora.meta.setdefault("file", str(path))
    if root is not None:
        lora.check_compatible(root, allow_other_base=allow_other_base)
        if device is None:
            lora.to(next(root.parameters()).device)
        if attach:
            lora.attach(root, strength, check=False)
    lora.strength = float(strength)
    return lora


# ----------------------------------------------------------------------------------------------
# Merging
# ----------------------------------------------------------------------------------------------
def _active_delta(m: nn.Module) -> Optional[torch.Tensor]:
    total = None
    for ref, ad in m.__dict__.get(_SLOTS, ()):
        lora = ref()
        if lora is None or not lora.enabled or lora.strength == 0:
            continue
        d = ad.delta_weight().to(m.weight.device) * float(lora.strength)
        total = d if total is None else total + d
    return total


#: the model parts (``audiox_core.loaded_model.part_modules``) that LoRAs adapt: part -> key prefix in the model
PATCHED_PARTS = {"backbone": "model.", "maf": MAF_PREFIX}


def weight_patches(loras) -> dict:
    """``loras`` (``((LoRA, strength), ...)``) as weight patches per model part, for a host that patches
    weights when it loads a model (ComfyUI's ``ModelPatcher``)::

        {"backbone" | "maf": {weight key relative to that part's module: [(up, down, alpha, strength), ...]}}

    ``up`` = ``lora_B`` ``[out, r]``, ``down`` = ``lora_A`` ``[r, in]`` (``[r, in, k]`` for conv
    adapters), detached fp32 copies on the CPU; the patched weight is
    ``W + Σ strength · (alpha / r) · up @ down`` (reshaped to ``W``), what the hooks compute."""
    out: dict = {}
    for lora, strength in loras:
        for path, adapter in lora.items():
            for part, prefix in PATCHED_PARTS.items():
                if path.startswith(prefix):
                    key = path[len(prefix):] + ".weight"
                    break
            else:
                raise InputError(f"LoRA target {path!r} is in no model part that takes weight patches")
            up = adapter.lora_B.detach().float().reshape(adapter.out_features, adapter.rank).cpu()
            down = adapter.lora_A.detach().float().cpu()
            out.setdefault(part, {}).setdefault(key, []).append((up, down, adapter.alpha, float(strength)))
    return out


@torch.no_grad()
def merge(root: nn.Module) -> int:
    """Bake every attached, enabled LoRA (× strength) into the weights; returns how many modules changed.

    The original weights are kept, so :func:`unmerge` restores them exactly.  While merged the
    hooks add nothing; do not train or change strengths until unmerged.
    """
    n = 0
    for _, m in _hosted(root):
        if _BACKUP in m.__dict__:
            continue
        d = _active_delta(m)
        if d is None:
            continue
        w = m.weight
        m.__dict__[_BACKUP] = w.detach().clone()
        w.copy_((w.float() + d).to(w.dtype))
        n += 1
    return n


@torch.no_grad()
def unmerge(root: nn.Module) -> int:
    """Restore the weights saved by :func:`merge` (bit-exact); returns how many modules were restored."""
    n = 0
    for _, m in root.named_modules():
        backup = m.__dict__.pop(_BACKUP, None)
        if backup is not None:
            m.weight.copy_(backup)
            n += 1
    return n


@torch.no_grad()
def merged_state_dict(root: nn.Module, dtype: Optional[torch.dtype] = None) -> "OrderedDict[str, torch.Tensor]":
    """``root.state_dict()`` with every attached LoRA baked in; the model itself is not changed."""
    deltas = {}
    for name, m in _hosted(root):
        if _BACKUP in m.__dict__:
            continue  # already merged into the live weights
        d = _active_delta(m)
        if d is not None:
            deltas[(name + "." if name else "") + "weight"] = d
    sd = OrderedDict()
    for k, v in root.state_dict().items():
        if k in deltas:
            v = (v.float() + deltas[k]).to(v.dtype)
        else:
            v = v.clone()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[k] = v
    return sd


def merged_copy(model):
    """A new AudioX model object with the attached LoRAs baked in; ``model`` is not changed.

    The copy shares nothing with ``model`` except its external T5 / Synchformer (attached, not
    copied) and carries no hooks.
    """
    from ..models.audiox import AudioXModel, build_model
    if not isinstance(model, AudioXModel):
        raise InputError("merged_copy needs an AudioX model (use merged_state_dict for a bare backbone)")
    sd = merged_state_dict(model)
    out = build_model(model.config, device="meta")
    out.load_state_dict(sd, assign=True)
    out.set_text_encoder(model.text_encoder)
    out.set_synchformer(model.synchformer)
    out.info = dict(getattr(model, "info", {}), merged_loras=[x.meta.get("file", "") for x in attached_loras(model)])
    return out.eval().requires_grad_(False)


@contextmanager
def lora_scope(root: nn.Module, active: Iterable[LoRA] = ()) -> Iterator[None]:
    """Temporarily enable only the LoRAs in ``active`` among those attached to ``root``.

    Used by the distiller to run teacher (none), student (LoRA_s) and fake (LoRA_f) on one
    shared base.
    """
    act = {id(x) for x in active}
    loras = attached_loras(root)
    saved = [(x, x.enabled) for x in loras]
    try:
        for x in loras:
            x.enabled = id(x) in act
        yield
    finally:
        for x, e in saved:
            x.enabled = e


# ----------------------------------------------------------------------------------------------
# Applying LoRAs to a loaded model (what a loader checks and reports)
# ----------------------------------------------------------------------------------------------
def check_applicable(lora: LoRA, model: nn.Module, *, label: str, model_name: str, variant: str,
                     allow_other_weights: bool) -> None:
    """:class:`CheckpointError` (naming ``label``, the LoRA's file or name) when ``lora`` does not
    fit ``model`` (called ``model_name``, of ``variant``), or was trained on other weights of the
    same architecture and ``allow_other_weights`` is off."""
    try:
        lora.check_compatible(model, allow_other_base=True)
    except CheckpointError as e:
        raise CheckpointError(f"'{label}' does not belong to this model ({model_name}, {variant}): {e}") from e
    if not allow_other_weights:
        try:
            lora.check_compatible(model, allow_other_base=False)
        except CheckpointError as e:
            raise CheckpointError(f"'{label}' was trained on other weights of this architecture (base "
                                  f"{lora.meta.get('base_fingerprint', '?')}), not on {model_name}; "
                                  "turn on 'allow_other_weights' to apply it anyway") from e


def stack_summary(stack: Sequence[tuple], merge: bool) -> str:
    """``"\\napplied: a × 1, b × 0.5[; merged …]"`` for ``(LoRA, strength)`` pairs; "" for none."""
    if not stack:
        return ""
    names = [Path(lora.meta.get("file", "") or "in-graph").stem + f" × {strength:g}" for lora, strength in stack]
    return f"\napplied: {', '.join(names)}" + ("; merged into the weights while running" if merge else "")


def applied_info(label: str, lora: LoRA, strength: float, stack: Sequence[tuple], merge: bool) -> str:
    """What a loader applied: the LoRA's rank, modules, training steps and variant, its strength, a
    PARTIAL note for an unfinished training, and the whole stack (:func:`stack_summary`)."""
    meta = lora.meta
    partial = f"\nPARTIAL: its training was stopped at {meta['partial']} (not finished)" if meta.get("partial") else ""
    return (f"{label}: rank {lora.rank}, {len(lora.paths)} modules, trained {meta.get('steps', '?')} steps "
            f"for {meta.get('variant', '?')}; strength {float(strength):g}"
            + partial + stack_summary(stack, merge))
