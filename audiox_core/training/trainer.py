"""Fine-tuning with the model's own objective: LoRA (default) or named parts, from scratch if wanted.

Typical use (what the ComfyUI training node wraps)::

    data = prepare_dataset(FolderDataset("my_sounds"), model, cache_dir="cache",
                           plan=plan_for(cfg.train))
    trainer = Trainer(model, data, TrainConfig(steps=2000, lr=1e-4, lora_rank=16), out_dir="runs/dogs")
    trainer.resume()                      # continue from the newest checkpoint, if any
    result = trainer.run(callback=cb)     # cb(step, total, {"loss", "lr", ...}); raise Interrupted to stop
    result.lora_path, trainer.history, loss_curve_png(trainer.history)

One optimizer step (``step`` s = 1, 2, …; every random draw comes from generators seeded by
``(seed, s, micro-batch)``, and the global torch RNG — dropout masks — is re-seeded from
``(seed, s)``, so a resumed run repeats exactly what an uninterrupted one does):

1. for each of ``grad_accum`` micro-batches: draw ``batch_size`` items (epoch-wise permutation),
   a random crop and a posterior sample per item (:meth:`~.data.PreparedDataset.batch`);
   conditions with input masking → fused context (MAF) → CFG dropout (:mod:`.conditions`);
   ``t`` from the time sampler, ``ε ~ N(0, I)``; loss = MSE of the network output against the
   objective's target (:mod:`.objectives`), under bf16/fp16 autocast if asked; backward;
2. average gradients over processes (multi-GPU), clip the global norm, set the LR (warm-up ×
   constant / InverseLR), AdamW step, EMA update — as one update that Ctrl-C cannot split;
3. append ``{"step", "loss", "lr", "grad_norm", "seconds"}`` to :attr:`Trainer.history`, call
   ``callback(step, total, that dict)``, checkpoint every ``save_every`` steps.

Cancelling (``Interrupted`` from the callback, or ``KeyboardInterrupt``) saves a checkpoint of the
last completed step (and the exported LoRA / model), then re-raises.

What is trained (``TrainConfig.train``, any combination of :data:`PARTS`):

* ``"lora"`` — a LoRA on the backbone layers (``lora_targets``, ``lora_include_maf``); default.
* ``"backbone"`` — the whole DiT/MMDiT; ``"maf"`` — the MAF block;
* ``"projections"`` — the conditioners' own layers (video: temporal transformer, ``proj``,
  ``proj_sync``, ``sync_weight``, ``empty_visual_feat``; audio prompt: ``proj_out``,
  ``proj_features[_128]``, ``empty_audio_feat``);
* ``"clip"`` — the CLIP vision tower; ``"t5"`` — the T5 encoder (the data must then be prepared
  with :func:`~.data.plan_for` so frames / token ids are cached instead of their outputs).

The VAE is never trained (its latents are the regression target).  Trained parameters are kept in
fp32 (master weights) whatever the model's dtype; frozen parts may stay bf16/fp16.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, InputError
from ..progress import ProgressCallback
from .conditions import ConditionEncoder, Masking, NO_MASKING
from .data import PreparedDataset
from .lora import LoRA, create_lora, lora_scope
from .objectives import EMA, LRSchedule, TimeSampler, noised_and_target
from .loop import TrainingLoop, grad_norm
from .parallel import Parallel

log = logging.getLogger(__name__)

PREVIEW_STEPS = 8  # sampling steps of a preview clip

__all__ = ["PARTS", "PRECISIONS", "TrainConfig", "TrainResult", "Trainer", "trainable_parameters",
           "evaluate_loss", "autocast_for", "step_seed", "sample_indices", "export_t5"]

PARTS = ("lora", "backbone", "maf", "projections", "clip", "t5")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Hyper-parameters of :class:`Trainer` (defaults: rank-16 LoRA fine-tuning)."""

    steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-3
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "constant"            # "constant" | "inverse" (official InverseLR)
    inv_gamma: float = 1e6
    inv_power: float = 0.5
    exp_warmup: float = 0.0               # InverseLR's exponential warm-up factor (official 0.99)
    max_grad_norm: Optional[float] = 1.0  # None / 0: no clipping (the official trainer does not clip)
    precision: str = "bf16"
    gradient_checkpointing: bool = True
    ema: bool = False
    ema_beta: float = 0.9999
    ema_power: float = 0.75
    train: Tuple[str, ...] = ("lora",)
    lora_rank: int = 16
    lora_alpha: Optional[float] = None
    lora_dropout: float = 0.0
    lora_targets: Union[str, Tuple[str, ...]] = "all"
    lora_include_maf: bool = False
    t_sampler: str = "sobol"
    masking: Masking = field(default_factory=Masking)
    seed: int = 0
    save_every: int = 0                   # steps between checkpoints (0: only at the end / on cancel)
    keep_checkpoints: int = 2
    name: str = "audiox_lora"

    def __post_init__(self):
        if isinstance(self.masking, dict):
            self.masking = Masking(**self.masking)
        self.train = tuple(self.train)
        bad = [p for p in self.train if p not in PARTS]
        if bad or not self.train:
            raise InputError(f"TrainConfig.train: unknown part(s) {bad}; choose from {PARTS}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for k in ("steps", "batch_size", "grad_accum"):
            if int(getattr(self, k)) < 1:
                raise InputError(f"TrainConfig.{k} must be ≥ 1, got {getattr(self, k)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"learning rate must be a finite number > 0, got {self.lr}")
        self.betas = tuple(self.betas)
        if isinstance(self.lora_targets, list):
            self.lora_targets = tuple(self.lora_targets)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["masking"] = dataclasses.asdict(self.masking)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainResult:
    step: int
    history: List[dict]
    lora_path: Optional[Path] = None
    model_path: Optional[Path] = None
    checkpoint: Optional[Path] = None
    lora: Optional[LoRA] = None


def step_seed(seed: int, step: int, micro: int = 0, rank: int = 0) -> int:
    """Seed of the generator used for one micro-batch (a fixed function of the coordinates)."""
    return (int(seed) * 1_000_003 + int(step) * 7_919 + int(micro) * 104_729 + int(rank) * 15_485_863) % (2 ** 62)


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _named_part(model, part: str) -> List[Tuple[str, torch.nn.Module]]:
    if part == "backbone":
        return [("model.model", model.backbone)]
    if part == "maf":
        if model.maf_block is None:
            raise InputError(f"{model.config.variant} has no MAF block to train")
        return [("maf_block", model.maf_block)]
    if part == "projections":
        out = []
        vc, ac = model.video_conditioner, model.audio_conditioner
        for cid, mod, skip in (("video_prompt", vc, "visual_encoder_model"), ("audio_prompt", ac, "pretransform")):
            if mod is None:
                continue
            for n, child in mod.named_children():
                if n != skip:
                    out.append((f"conditioner.conditioners.{cid}.{n}", child))
            out.append((f"conditioner.conditioners.{cid}.<own>", mod))  # its own parameters (empty feats …)
        return out
    if part == "clip":
        vc = model.video_conditioner
        if vc is None:
            raise InputError(f"{model.config.variant} has no CLIP video conditioner to train")
        return [("conditioner.conditioners.video_prompt.visual_encoder_model", vc.visual_encoder_model)]
    if part == "t5":
        if model.text_encoder is None:
            raise InputError("cannot train T5: no text encoder is attached to the model")
        return [("t5", model.text_encoder.model)]
    raise InputError(f"unknown part {part!r}")


def trainable_parameters(model, parts: Sequence[str],
                         lora: Optional[LoRA] = None) -> List[Tuple[str, torch.nn.Parameter]]:
    """Stable ``(name, parameter)`` list of what ``parts`` trains (LoRA parameters as ``lora.*``)."""
    seen, out = set(), []

    def add(name, p):
        if id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    for part in parts:
        if part == "lora":
            if lora is None:
                raise InputError("'lora' is trained but no LoRA was given or created")
            for n, p in lora.named_parameters():
                add(f"lora.{n}", p)
            continue
        for prefix, mod in _named_part(model, part):
            if prefix.endswith(".<own>"):
                for n, p in mod.named_parameters(recurse=False):
                    add(f"{prefix[:-6]}.{n}", p)
            else:
                for n, p in mod.named_parameters():
                    add(f"{prefix}.{n}", p)
    return out


@torch.no_grad()
def evaluate_loss(model, data: PreparedDataset, *, ts: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 1234,
                  batch_size: int = 8, precision: str = "fp32", device=None) -> float:
    """Mean objective loss over every item × every ``t`` in ``ts`` with FIXED noise (a fair
    before/after comparison): crop offset 0, posterior mean, no input masking, no CFG dropout,
    model in eval mode (MAF dropout off).  Audio-prompt span masking, if configured, is drawn
    from a fixed generator too."""
    was = model.training
    model.eval()
    dev = torch.device(device) if device is not None else next(model.backbone.parameters()).device
    enc = ConditionEncoder(model, data)
    total, count = 0.0, 0
    try:
        for start in range(0, len(data), batch_size):
            idx = list(range(start, min(start + batch_size, len(data))))
            g = torch.Generator().manual_seed(seed + start)
            batch = data.batch(idx, g, dev, random_crop=False, sample_posterior=False)
            with autocast_for(dev, precision):
                ctx = enc.context(batch, NO_MASKING, g)
            for t in ts:
                gt = torch.Generator().manual_seed(seed * 31 + start * 7 + int(round(t * 1e4)))
                noise = torch.randn(batch.x0.shape, generator=gt).to(dev)
                tt = torch.full((batch.size,), float(t), device=dev)
                x_in, target = noised_and_target(model.objective, batch.x0, noise, tt)
                with autocast_for(dev, precision):
                    out = model.velocity(x_in, tt, ctx)
                total += float(F.mse_loss(out.float(), target, reduction="sum"))
                count += target.numel()
    finally:
        model.train(was)
    return total / count


class Trainer(TrainingLoop):
    """Trains ``model`` on prepared ``data`` (module docstring).

    Args:
        model: an :class:`~audiox_core.models.audiox.AudioXModel` (T5 attached when it has text).
        data: :class:`~.data.PreparedDataset` from :func:`~.data.prepare_dataset`.
        config: :class:`TrainConfig`.
        out_dir: where ``checkpoints/`` and the exported LoRA / model go (None: nothing is written).
        lora: an existing LoRA to continue training (else one is created when ``"lora"`` is trained).
        device: defaults to the device of the backbone's weights.
        parallel: a :class:`~.parallel.Parallel` (multi-GPU); default single process.

    Attributes: ``step`` (completed steps), ``history`` (list of dicts), ``lora``, ``params``.

    The model is trained in place: trained parameters become fp32 and keep their new values, and
    a LoRA stays attached after :meth:`run` (the model then includes it; ``trainer.lora.detach()``
    removes it).
    """

    kind = "finetune"

    def __init__(self, model, data: PreparedDataset, config: Optional[TrainConfig] = None, *,
                 out_dir: Optional[Union[str, Path]] = None, lora: Optional[LoRA] = None,
                 device=None, parallel: Optional[Parallel] = None):
        super().__init__(out_dir, parallel)
        self.model = model
        self.data = data
        self.config = cfg = config or TrainConfig()
        self.device = torch.device(device) if device is not None else next(model.backbone.parameters()).device
        if getattr(model, "objective", None) not in ("v", "rectified_flow"):
            raise InputError("Trainer: the model has no known diffusion objective")
        from ..acceleration import refuse_fp8
        refuse_fp8(model, "training")
        if "t5" in cfg.train and data.plan.text != "ids":
            raise InputError("training T5 needs data prepared with token ids: "
                             "prepare_dataset(..., plan=plan_for(train))")
        if "clip" in cfg.train and data.plan.video != "frames":
            raise InputError("training CLIP needs data prepared with frames: "
                             "prepare_dataset(..., plan=plan_for(train))")
        if "projections" in cfg.train and data.plan.video == "output" and model.video_conditioner is not None and \
                any(it.has_video for it in data.items):
            raise InputError("training the conditioner projections needs data prepared with CLIP hidden states "
                             "(plan_for(train))")
        self.lora = lora
        if "lora" in cfg.train and self.lora is None:
            self.lora = create_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets,
                                    include_maf=cfg.lora_include_maf, dropout=cfg.lora_dropout, seed=cfg.seed)
        if self.lora is not None and not self.lora.attached:
            self.lora.attach(model)
        model.requires_grad_(False)
        if model.text_encoder is not None:
            model.text_encoder.model.requires_grad_(False)
        self.named_params = trainable_parameters(model, cfg.train, self.lora)
        if not self.named_params:
            raise InputError(f"nothing to train for parts {cfg.train}")
        with torch.no_grad():
            for _, p in self.named_params:
                if p.dtype != torch.float32:
                    p.data = p.data.float()  # fp32 master weights for what is trained
                p.requires_grad_(True)
        if "t5" in cfg.train:
            model.text_encoder.clear_cache()
        self.params = [p for _, p in self.named_params]
        self.optimizer = self.parallel.prepare(self.params, torch.optim.AdamW(
            self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, eps=cfg.eps))
        self.schedule = LRSchedule(cfg.schedule, cfg.warmup_steps, cfg.inv_gamma, cfg.inv_power, cfg.exp_warmup)
        self.ema = EMA(self.params, cfg.ema_beta, cfg.ema_power) if cfg.ema else None
        # The same sampler on every process: it draws the global batch's times (parallel.py).
        self.sampler = TimeSampler(cfg.t_sampler, cfg.seed)
        self.samplers = {"t": self.sampler}
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.cond = ConditionEncoder(model, data)
        self._perms: Dict[int, List[int]] = {}
        log.info("Trainer: %d tensors / %d parameters trained (%s)", len(self.params),
                 sum(p.numel() for p in self.params), ", ".join(cfg.train))

    # ------------------------------------------------------------------ bookkeeping
    def _indices(self, step: int, micro: int) -> List[int]:
        """Items of the global micro-batch (``batch_size`` per process, all processes together)."""
        cfg = self.config
        return sample_indices(self.data, self._perms, cfg.seed, cfg.batch_size * self.parallel.world,
                              (step - 1) * cfg.grad_accum + micro)

    def preview(self) -> torch.Tensor:
        """A short generation with the model as trained so far: the conditions of the dataset's first
        item (no masking), the model's own sampler with :data:`PREVIEW_STEPS` steps and seed 0, one
        window; decoded audio ``[1, C, T]``.  Runs in eval mode and draws only from its own
        generators, so the training continues exactly as without it."""
        from .. import generate as generation
        g = torch.Generator().manual_seed(0)
        batch = self.data.batch([0], g, self.device, random_crop=False, sample_posterior=False)
        self._set_modes(False)
        try:
            with torch.no_grad():
                ctx = self.cond.context(batch, NO_MASKING, g).float()
                settings = generation.SamplerSettings.for_model(self.model, steps=PREVIEW_STEPS, seed=0)
                latents = generation.sample(self.model, ctx, settings, batch=1, length=batch.x0.shape[-1])
                return generation.decode(self.model, latents)
        finally:
            self._set_modes(True)

    def close(self) -> None:
        """Release the LoRA adapters from the shared model after the run (attached ones only)."""
        if self.lora is not None and self.lora.attached:
            self.lora.detach()

    def _set_modes(self, training: bool) -> None:
        m, cfg = self.model, self.config
        m.train(training)
        m.pretransform.eval()
        ac = m.audio_conditioner
        if ac is not None and hasattr(ac, "pretransform"):
            ac.pretransform.eval()
        vc = m.video_conditioner
        if vc is not None:
            vc.visual_encoder_model.train(training and "clip" in cfg.train)
        if m.text_encoder is not None:
            m.text_encoder.model.train(training and "t5" in cfg.train)
        m.backbone.gradient_checkpointing = bool(training and cfg.gradient_checkpointing)
        if self.lora is not None:
            self.lora.train(training)
        if not training and "t5" in cfg.train and m.text_encoder is not None:
            m.text_encoder.clear_cache()  # cached T5 outputs are stale once T5 has been trained

    # ------------------------------------------------------------------ one step
    def micro_loss(self, step: int, micro: int) -> torch.Tensor:
        """Loss of micro-batch ``micro`` of step ``step`` (a function of those numbers and the seed).

        Several processes: batch, times, noise and context are drawn for the global micro-batch
        (same seed everywhere) and this process runs the backbone on its slice (parallel.py)."""
        cfg, dev, sh = self.config, self.device, self.parallel.shard
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, micro))
        batch = self.data.batch(self._indices(step, micro), g, dev)
        t = self.sampler.draw(batch.size, g).to(dev)
        noise = torch.randn(batch.x0.shape, generator=g).to(dev)
        with autocast_for(dev, cfg.precision):
            ctx = self.cond.context(batch, cfg.masking, g)
            x_in, target = noised_and_target(self.model.objective, batch.x0, noise, t)
            out = self.model.velocity(sh(x_in), sh(t), sh(ctx))
        return F.mse_loss(out.float(), sh(target).float())

    def train_step(self) -> dict:
        """Run optimizer step ``self.step + 1``; returns its history entry."""
        cfg = self.config
        s = self.step + 1
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(cfg.seed, s, 97, self.parallel.rank))  # dropout masks
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        par = self.parallel
        for j in range(cfg.grad_accum):
            with par.sync(j == cfg.grad_accum - 1):  # DDP all-reduces the gradients in the last backward
                loss = par.forward(self.micro_loss, s, j)
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged: loss is {float(loss)} at step {s} (lower the learning rate)")
                scaled = loss / cfg.grad_accum
                par.backward(self.scaler.scale(scaled) if self.scaler is not None else scaled)
            losses.append(float(loss.detach()))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        gn = grad_norm(self.params)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        lr = cfg.lr * self.schedule(s - 1)
        entry = {"step": s, "loss": par.mean({"loss": sum(losses) / len(losses)})["loss"], "lr": lr, "grad_norm": gn,
                 "seconds": time.perf_counter() - t0}
        return self._optimizer_update(s, lr, entry)

    def run(self, steps: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> TrainResult:
        """Train until ``steps`` (default ``config.steps``) optimizer steps are done in total."""
        out = super().run(steps, callback)
        return TrainResult(out["step"], out["history"], out.get("lora"), out.get("model"), out.get("checkpoint"),
                           self.lora)

    def evaluate(self, data: Optional[PreparedDataset] = None, **kw) -> float:
        """:func:`evaluate_loss` of the current weights (EMA weights if EMA is on)."""
        if self.ema is not None:
            self.ema.swap()
        try:
            return evaluate_loss(self.model, data or self.data, device=self.device, **kw)
        finally:
            if self.ema is not None:
                self.ema.swap()

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> dict:
        from .lora import base_fingerprint
        return {"dataset_hash": self.data.dataset_hash, "variant": self.model.config.variant,
                "base_fingerprint": base_fingerprint(self.model)["id"],
                "lora": None if self.lora is None else {"paths": self.lora.paths, "rank": self.lora.rank,
                                                        "alpha": self.lora.alpha}}

    def check_state(self, info: dict, path) -> None:
        if info.get("variant") != self.model.config.variant:
            raise CheckpointError(f"{path}: made for {info.get('variant')}, the model is {self.model.config.variant}")

    def on_resumed(self, info: dict) -> None:
        if self.lora is not None:
            self.lora.meta["steps"] = self.step

    # ------------------------------------------------------------------ export
    def export(self, folder: Optional[Union[str, Path]] = None, *, partial: bool = False) -> Dict[str, Path]:
        """Write the user-facing result: ``<name>.safetensors`` (LoRA) and/or ``model.safetensors``
        (+ ``t5/`` when T5 was trained).  EMA weights are exported when EMA is on (as the official
        ``export_model``).  ``partial`` (Cancel): under ``<name>.partial.safetensors`` names."""
        from .loop import partial_name
        name = (lambda p: partial_name(p)) if partial else (lambda p: p)  # noqa: E731
        folder = Path(folder) if folder is not None else self.out_dir
        if folder is None:
            raise InputError("export: no folder")
        out: Dict[str, Path] = {}
        if self.ema is not None:
            self.ema.swap()
        try:
            if self.lora is not None:
                out["lora"] = self.lora.save(name(folder / f"{self.config.name}.safetensors"), steps=self.step,
                                             dataset_hash=self.data.dataset_hash)
            if any(p != "lora" for p in self.config.train):
                from ..checkpoint import save_model
                with lora_scope(self.model, ()):
                    save_model(self.model, name(folder / "model.safetensors"),
                               extra_metadata={"audiox_training_steps": str(self.step)})
                out["model"] = name(folder / "model.safetensors")
                if "t5" in self.config.train:
                    out["t5"] = export_t5(self.model.text_encoder, name(folder / "t5"))
        finally:
            if self.ema is not None:
                self.ema.swap()
        return out


def sample_indices(data: PreparedDataset, perms: Dict[int, List[int]], seed: int, batch_size: int,
                   slot: int) -> List[int]:
    """Items of the ``slot``-th micro-batch: consecutive positions of per-epoch permutations
    (each epoch visits every item once; the order depends only on ``seed`` and the epoch)."""
    n = len(data)
    out = []
    for c in range(slot * batch_size, (slot + 1) * batch_size):
        epoch = c // n
        if epoch not in perms:
            if len(perms) > 4:
                perms.clear()
            perms[epoch] = data.epoch_order(epoch, seed)
        out.append(perms[epoch][c % n])
    return out


def export_t5(enc, folder: Union[str, Path]) -> Path:
    """Save a (trained) T5 encoder as a local folder :meth:`T5TextEncoder.from_local` reads:
    ``config.json``, ``model.safetensors`` and the tokenizer files found next to the source."""
    import shutil
    from ..weights import save_safetensors
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    enc.model.config.save_pretrained(folder)
    sd = {k: v.detach().contiguous() for k, v in enc.model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_safetensors(sd, folder / "model.safetensors", {"format": "pt"})
    from ..conditioning.tokenizers import MARKER_FILE
    src = Path(enc.source) if enc.source else None
    if src is not None:
        src_dir = src if src.is_dir() else src.parent
        names = {"spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", MARKER_FILE}
        for f in src_dir.iterdir():
            if f.is_file() and f.name in names:
                shutil.copy2(f, folder / f.name)
    return folder
