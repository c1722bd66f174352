"""DMD + GAN distillation of a rectified-flow teacher into a 4-step student (the AudioX-Turbo recipe).

This follows the official Turbo recipe (the official ``DiffusionDMDTrainingWrapperAblation`` that
``train_audiox_turbo.py`` runs) step by step:

**Models.**  The teacher is frozen (eval mode).  Student and "fake" (the critic that tracks the
student's distribution) start as the teacher.  ``parameterization="full"``: they are copies of the
backbone + MAF (the conditioners, VAE and T5 are shared and frozen — the official ones run under
``no_grad`` too).  ``parameterization="lora"`` (default; fits a consumer GPU): ONE frozen base with
two LoRAs, student = base + LoRA_s, fake = base + LoRA_f, teacher = base with adapters off.
Student and fake run in train mode (MAF dropout 0.1 active, as the official), the teacher in eval.

**Rollout** (``iterative_dmd_forward``).  Grid ``linspace(1, 0, steps + 1)`` = 1, .75, .5, .25;
``k ~ Categorical(timestep_probs)`` (official default uniform); from ``z = ε``, for i = 0 … k:
``x0 = z − t_i·v_s(z, t_i)``; for i < k, without grad: ``z = t_{i+1}·ε_i + (1 − t_{i+1})·x0``
with fresh noise; only step k keeps its graph → ``x0_s``.

**Update alternation.**  Cycle ``update_ratio + 1`` = 6: step s (1-based, official
``global_step = s − 1``) is a student update iff ``(s − 1) % 6 < 5``, else a fake + discriminator
update.  ``fake_updates`` > 1 (not official) gives the fake that many updates per cycle (DMD2's
usual schedule is ``update_ratio`` 1, ``fake_updates`` 5): on the small demo model the official
5 : 1 leaves the fake unable to track the student (docs/TRAINING.md).  One AdamW (lr 1e-5, betas (0.9, 0.999), wd 1e-3) over student + fake + heads with the
official InverseLR (inv_gamma 1e6, power 0.5, warm-up 0.99); only the side that received
gradients moves (AdamW skips parameters without a gradient).

**Student step.**  ``τ`` from a scrambled Sobol sequence (full [0, 1)), ``z = τ·ε + (1 − τ)·x0_s``;
without grad: ``v_T`` = teacher with CFG (scale 6, uncond = all-zero fused context, batched,
no rescale), ``v_F`` = fake (scale 1); ``x0_T = z − τ·v_T``, ``x0_F = z − τ·v_F``;
``p_real = z − x0_T``, ``p_fake = z − x0_F``, ``norm = mean_{C,L}|p_real| + 1e-8`` per item,
``g = nan_to_num((p_real − p_fake) / norm)``;
``loss_dmd = 0.5·mean((x0_s − stopgrad(x0_s − g))²)·w_dmd``  (the official normalisation by the
noisy ``|τ·v_T|``, not DMD2's ``|x0_s − x0_T|``).  GAN generator term (heads frozen, gradient
through the frozen teacher into ``x0_s``): ``−mean(D(x0_s))·w_gan``.

**Fake + discriminator step.**  ``x0 = stopgrad(x0_s)``; ``loss_fake = mean((v_F(z, τ) − (ε − x0))²)``
with ``z = τ·ε + (1 − τ)·x0``; hinge loss ``mean(relu(1 − D(real))) + mean(relu(1 + D(x0)))`` with
the real latents of the batch.

**Paired regression (optional, not in the official recipe; ``regression_weight`` > 0).**  DMD v1's
regression term: a bank of ``regression_pairs`` pairs (dataset items in a seeded order, their
teacher-side condition tokens, unit noise ``ε``, and the teacher's sample ``x0_T(ε)`` from that noise:
``regression_teacher_steps`` Euler steps on ``linspace(1, 0)`` with CFG ``guidance``), built once at
the first student step; every student step adds ``w_reg·mean((x̂0_s(ε) − x0_T(ε))²)`` on a batch
of pairs, with ``x̂0_s(ε) = ε − v_s(ε, 1)`` the student's first-step prediction.  It ties the
student's noise → sample map to the teacher's (mode coverage) where DMD only matches distributions.

**Discriminator.**  ``D(x)``: noise ``x`` at ``t_d ~ U(0, 0.2)`` (fresh ε), run the teacher
truncated to its first n blocks (then its own ``project_out``, drop the time token,
``postprocess_conv``: a velocity-shaped feature ``[B, C, L]``), apply the official
:class:`DiscriminatorHead` conv stack → patch logits; losses average all logits.
``gan_mode="all_blocks"`` (official shell default): one head per depth k = 1 … n
(``gan_blocks``, default 6), the k-th head on the teacher truncated to k blocks, the logit maps
averaged; ``"last_block"``: one head on the teacher truncated to n blocks.

Deviations (none changes the math of an update):

* no DeepSpeed / Lightning; plain AdamW skips parameters without gradient (the official DeepSpeed
  ZeRO path may still move them by momentum / weight decay);
* ``all_blocks`` computes the n truncated teacher outputs in ONE pass (the output after block k of
  a truncated forward is the same tensor whatever comes after), instead of n forwards;
* only the n used heads are built (the official builds one per block and never uses the rest);
* the student's fused context (its MAF) is computed once per step and reused by the rollout
  steps (the official recomputes it per call — only the MAF dropout mask differs);
* on fake steps the rollout runs without grad (the official builds a graph it never uses);
* conditions come from the prepared data (:mod:`.data`); student and teacher get independent
  draws of the random parts (audio-prompt masks, VAE noise) as the official separate calls do;
* randomness is seeded per step (reproducible, resumable), the Sobol engine is seeded.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..progress import ProgressCallback
from ..sampling.rf import rf_euler
from .conditions import ConditionEncoder, Masking
from .data import PreparedDataset
from .discriminators import hinge_discriminator_loss, hinge_generator_loss
from .lora import create_lora, lora_scope, merged_state_dict
from .loop import TrainingLoop, grad_norm
from .objectives import LRSchedule, TimeSampler
from .parallel import Parallel
from .trainer import autocast_for, sample_indices, step_seed

log = logging.getLogger(__name__)

__all__ = ["DistillConfig", "DistillResult", "Distiller", "DiscriminatorHead", "truncated_layers", "block_outputs",
           "dmd_gradient", "rollout"]


@dataclass
class DistillConfig:
    """Hyper-parameters of :class:`Distiller`; defaults are the official Turbo recipe."""

    steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-5
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-3
    eps: float = 1e-8
    schedule: str = "inverse"
    inv_gamma: float = 1e6
    inv_power: float = 0.5
    exp_warmup: float = 0.99
    warmup_steps: int = 0
    max_grad_norm: Optional[float] = None      # the official trainer does not clip
    student_steps: int = 4
    timestep_probs: Tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    guidance: float = 6.0
    dmd_weight: float = 1.0
    fake_weight: float = 1.0
    gan: bool = True
    gan_weight: float = 1.0
    gan_mode: str = "all_blocks"               # "all_blocks" | "last_block"
    gan_blocks: int = 6                        # ≤ 0: all blocks
    gan_t_max: float = 0.2
    disc_hidden: int = 128
    update_ratio: int = 5                      # student updates per cycle (official 5)
    fake_updates: int = 1                      # fake + discriminator updates per cycle (official 1; DMD2: 5)
    regression_weight: float = 0.0             # DMD (v1) paired regression; 0 = off, as the official recipe
    regression_pairs: int = 256                # noise → teacher-sample pairs in the regression bank
    regression_teacher_steps: int = 25         # Euler steps of the teacher (with CFG ``guidance``) per pair
    parameterization: str = "lora"             # "lora" | "full"
    lora_rank: int = 64
    lora_alpha: Optional[float] = None
    lora_targets: Union[str, Tuple[str, ...]] = "all"
    lora_include_maf: bool = True
    precision: str = "bf16"
    gradient_checkpointing: bool = True
    masking: Masking = field(default_factory=lambda: Masking(0.0, 0.0, 0.0, 0.0))  # the official DMD run masks nothing
    t_sampler: str = "sobol"
    seed: int = 0
    save_every: int = 0
    keep_checkpoints: int = 2
    name: str = "audiox_turbo_student"

    def __post_init__(self):
        if isinstance(self.masking, dict):
            self.masking = Masking(**self.masking)
        if self.parameterization not in ("lora", "full"):
            raise InputError(f"parameterization must be 'lora' or 'full', got {self.parameterization!r}")
        if self.gan_mode not in ("all_blocks", "last_block"):
            raise InputError(f"gan_mode must be 'all_blocks' or 'last_block', got {self.gan_mode!r}")
        self.timestep_probs = tuple(float(p) for p in self.timestep_probs)
        if len(self.timestep_probs) != self.student_steps:
            raise InputError(f"timestep_probs has {len(self.timestep_probs)} entries for {self.student_steps} "
                             "student steps")
        if any(p < 0 for p in self.timestep_probs) or sum(self.timestep_probs) <= 0:
            raise InputError("timestep_probs must be non-negative with a positive sum")
        if self.update_ratio < 1:
            raise InputError(f"update_ratio must be ≥ 1, got {self.update_ratio}")
        if self.fake_updates < 1:
            raise InputError(f"fake_updates must be ≥ 1, got {self.fake_updates}")
        if not (math.isfinite(float(self.regression_weight)) and self.regression_weight >= 0):
            raise InputError(f"regression_weight must be a finite number ≥ 0, got {self.regression_weight}")
        if self.regression_weight and (self.regression_pairs < 1 or self.regression_teacher_steps < 1):
            raise InputError("regression_pairs and regression_teacher_steps must be ≥ 1")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if not 0 < self.gan_t_max <= 1:
            raise InputError(f"gan_t_max must be in (0, 1], got {self.gan_t_max}")
        for k in ("lr", "guidance"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"{'learning rate' if k == 'lr' else k} must be a finite number > 0, got {v}")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["masking"] = dataclasses.asdict(self.masking)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def is_student_step(self, step: int) -> bool:
        """Alternation for 1-based ``step``: ``(step − 1) % (ratio + fake_updates) < ratio`` (official:
        5 student updates, then 1 fake + discriminator update)."""
        return (step - 1) % (self.update_ratio + self.fake_updates) < self.update_ratio


@dataclass
class DistillResult:
    step: int
    history: List[dict]
    student_path: Optional[Path] = None
    student_lora_path: Optional[Path] = None
    checkpoint: Optional[Path] = None


# ----------------------------------------------------------------------------------------------
# Building blocks (backbone level; usable without the data pipeline, e.g. in benchmarks)
# ----------------------------------------------------------------------------------------------
class DiscriminatorHead(nn.Module):
    """Official ``DiscriminatorHead``: Conv1d(C→h, 3, p1) → LReLU(0.2) → Conv1d(h→2h, 4, s2, p1) → LReLU
    → Conv1d(2h→4h, 4, s2, p1) → LReLU → Conv1d(4h→1, 3, p1); keys ``net.{0,2,4,6}``.
    ``[B, C, L]`` → patch logits ``[B, 1, ~L/4]``."""

    def __init__(self, input_channels: int, hidden_dim: int = 128):
        super().__init__()
        h = hidden_dim
        self.net = nn.Sequential(
            nn.Conv1d(input_channels, h, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(h, 2 * h, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(2 * h, 4 * h, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(4 * h, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@contextmanager
def truncated_layers(backbone: nn.Module, n: int) -> Iterator[None]:
    """Temporarily keep only the first ``n`` transformer blocks (the official ``active_num_layers``):
    ``prepare`` and ``forward`` then run blocks 1 … n followed by the usual output layers."""
    tr = backbone.transformer
    full = tr._modules["layers"]
    if not 1 <= n <= len(full):
        raise InputError(f"cannot truncate a {len(full)}-block backbone to {n} blocks")
    tr._modules["layers"] = nn.ModuleList(list(full)[:n])
    try:
        yield
    finally:
        tr._modules["layers"] = full


def block_outputs(backbone: nn.Module, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, n: int,
                  every: bool = True) -> List[torch.Tensor]:
    """Velocity-shaped outputs of the backbone truncated to 1 … n blocks (``every``) or to n only.

    One forward through n blocks; the hidden state after block k goes through ``project_out``,
    drops the time token and through ``postprocess_conv`` — exactly what a forward truncated to k
    blocks returns.
    """
    layers = list(backbone.transformer.layers)[:n]
    captured: List[torch.Tensor] = []
    hooks = []
    if every:
        for layer in layers[:-1]:
            hooks.append(layer.register_forward_hook(lambda m, a, o: captured.append(o)))
    try:
        with truncated_layers(backbone, n):
            last = backbone(x, t, context)
    finally:
        for h in hooks:
            h.remove()
    tr = backbone.transformer
    outs = [backbone.unembed_output(tr.project_out(h)[:, 1:]).to(x.dtype) for h in captured]
    return outs + [last]


def rollout(velocity, noise: torch.Tensor, k: int, ts: torch.Tensor, g: torch.Generator, *,
            grad: bool = True, randn=None) -> torch.Tensor:
    """Student backward simulation to grid index ``k`` (module docstring); only step k keeps its graph.
    ``randn(shape, generator=g)`` draws the fresh noise (default ``torch.randn``)."""
    randn = randn or torch.randn
    z = noise
    b = noise.shape[0]
    x0 = None
    for i in range(k + 1):
        t = ts[i].expand(b).to(noise.device)
        last = i == k
        with torch.set_grad_enabled(grad and last):
            v = velocity(z, t)
            x0 = z - t.view(-1, 1, 1).to(v.dtype) * v
        if not last:
            x0 = x0.detach()
            tn = ts[i + 1].to(noise.device)
            eps = randn(noise.shape, generator=g).to(noise.device)
            z = tn * eps + (1 - tn) * x0
    return x0


def dmd_gradient(z: torch.Tensor, x0_teacher: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """Official normalised DMD direction ``nan_to_num((p_real − p_fake) / (mean|p_real| + 1e-8))``
    with ``p = z − x0`` (mean over all but the batch axis)."""
    p_real, p_fake = z - x0_teacher, z - x0_fake
    norm = p_real.abs().mean(dim=tuple(range(1, z.dim())), keepdim=True) + 1e-8
    return torch.nan_to_num((p_real - p_fake) / norm)


def _cfg(velocity, x, t, ctx, scale: float) -> torch.Tensor:
    """Batched CFG with an all-zero uncond context: ``u + s·(c − u)`` (official, no rescale)."""
    if scale == 1.0:
        return velocity(x, t, ctx)
    out = velocity(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, torch.zeros_like(ctx)]))
    c, u = out.chunk(2)
    return u + (c - u) * scale


@contextmanager
def _frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        yield
    finally:
        for p, r in saved:
            p.requires_grad_(r)


# ----------------------------------------------------------------------------------------------
# Who is who: full copies or LoRAs on a shared base
# ----------------------------------------------------------------------------------------------
class _Roles:
    """Calls the student / fake / teacher networks (velocity and MAF fusion) in the right state."""

    def __init__(self, teacher, cfg: DistillConfig):
        self.teacher, self.cfg = teacher, cfg
        self.lora_s = self.lora_f = None
        if cfg.parameterization == "full":
            memo = {id(teacher.conditioner): teacher.conditioner, id(teacher.pretransform): teacher.pretransform}
            for ext in (teacher.text_encoder, teacher.synchformer):
                if ext is not None:
                    memo[id(ext)] = ext
            self.student = copy.deepcopy(teacher, dict(memo))
            self.fake = copy.deepcopy(teacher, dict(memo))
        else:
            self.student = self.fake = teacher
            kw = dict(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets,
                      include_maf=cfg.lora_include_maf)
            self.lora_s = create_lora(teacher, seed=cfg.seed, **kw).attach(teacher, check=False)
            self.lora_f = create_lora(teacher, seed=cfg.seed + 1, **kw).attach(teacher, check=False)
            # A fresh LoRA (B = 0) is exact: student = fake = teacher at start.  Outside the role
            # scopes both adapters are disabled, so the model object keeps behaving as the teacher.
            self.lora_s.enabled = self.lora_f.enabled = False

    @property
    def full(self) -> bool:
        return self.cfg.parameterization == "full"

    def model(self, who: str):
        return {"student": self.student, "fake": self.fake, "teacher": self.teacher}[who]

    @contextmanager
    def as_(self, who: str) -> Iterator[None]:
        """Enable ``who``'s adapters (LoRA mode) and its train/eval mode for the duration."""
        m = self.model(who)
        training = who != "teacher"
        was = m.training
        if self.full:
            m.train(training)
            try:
                yield
            finally:
                m.train(was)
            return
        active = {"student": [self.lora_s], "fake": [self.lora_f], "teacher": []}[who]
        with lora_scope(self.teacher, active):
            m.train(training)
            m.pretransform.eval()
            try:
                yield
            finally:
                m.train(was)

    def fuse(self, who: str, tokens: tuple) -> torch.Tensor:
        with self.as_(who):
            return self.model(who).fuse(*tokens)

    def velocity(self, who: str, x, t, ctx) -> torch.Tensor:
        with self.as_(who):
            return self.model(who).velocity(x, t, ctx)

    def trained(self) -> List[Tuple[str, nn.Module]]:
        if self.full:
            out = [("student.model.model", self.student.backbone), ("fake.model.model", self.fake.backbone)]
            if self.student.maf_block is not None:
                out += [("student.maf_block", self.student.maf_block), ("fake.maf_block", self.fake.maf_block)]
            return out
        return [("lora_s", self.lora_s), ("lora_f", self.lora_f)]


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
class Distiller(TrainingLoop):
    """Distils the rectified-flow ``teacher`` on prepared ``data`` (module docstring).

    After :meth:`run`, ``out_dir`` holds ``<name>.safetensors`` — a full model file with
    ``audiox_role = "student"`` that :func:`audiox_core.checkpoint.load_model` loads and the Turbo
    sampler runs — (LoRA mode) ``<name>_lora.safetensors`` (student LoRA for the teacher), and
    ``checkpoints/`` for resuming.  :meth:`student_model` returns the student as a model object.

    LoRA mode attaches two (disabled outside the role scopes) LoRAs to ``teacher``; the teacher's
    weights are never written and it keeps computing the teacher; :meth:`close` detaches them.
    """

    kind = "distill"

    def __init__(self, teacher, data: PreparedDataset, config: Optional[DistillConfig] = None, *,
                 out_dir: Optional[Union[str, Path]] = None, device=None, parallel: Optional[Parallel] = None):
        super().__init__(out_dir, parallel)
        self.config = cfg = config or DistillConfig()
        if teacher.objective != "rectified_flow":
            raise ConfigError(f"DMD distillation needs a rectified-flow teacher (AudioX-Turbo's teacher); "
                              f"{teacher.config.variant} uses the {teacher.objective!r} objective")
        from ..acceleration import refuse_fp8
        refuse_fp8(teacher, "distillation")
        from .lora import attached_loras
        if attached_loras(teacher):
            raise InputError("detach the LoRAs from the teacher before distilling (merge them into a copy if "
                             "the teacher should include them)")
        self.teacher = teacher
        self.data = data
        self.device = torch.device(device) if device is not None else next(teacher.backbone.parameters()).device
        teacher.requires_grad_(False)
        teacher.eval()
        self.roles = _Roles(teacher, cfg)
        depth = len(teacher.backbone.transformer.layers)
        self.gan_blocks = depth if cfg.gan_blocks <= 0 else min(int(cfg.gan_blocks), depth)
        n_heads = self.gan_blocks if cfg.gan_mode == "all_blocks" else 1
        with torch.random.fork_rng(devices=[]):  # deterministic default init, global RNG untouched
            torch.manual_seed(cfg.seed)
            self.heads = nn.ModuleList(DiscriminatorHead(teacher.config.io_channels, cfg.disc_hidden)
                                       for _ in range(n_heads if cfg.gan else 0)).to(self.device)
        named: List[Tuple[str, nn.Parameter]] = []
        for prefix, mod in self.roles.trained():
            for n, p in mod.named_parameters():
                if p.dtype != torch.float32:
                    p.data = p.data.float()
                p.requires_grad_(True)
                named.append((f"{prefix}.{n}", p))
        for n, p in self.heads.named_parameters():
            named.append((f"disc.{n}", p))
        self.named_params = named
        self.params = [p for _, p in named]
        self.optimizer = self.parallel.prepare(self.params, torch.optim.AdamW(
            self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, eps=cfg.eps))
        self.schedule = LRSchedule(cfg.schedule, cfg.warmup_steps, cfg.inv_gamma, cfg.inv_power, cfg.exp_warmup)
        # The same sampler on every process: it draws the global batch's times (parallel.py).
        self.sampler = TimeSampler(cfg.t_sampler, cfg.seed)
        self.samplers = {"t": self.sampler}
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.cond = ConditionEncoder(teacher, data)
        self.ts = torch.linspace(1.0, 0.0, cfg.student_steps + 1)
        self.probs = torch.tensor(cfg.timestep_probs, dtype=torch.float32)
        self._perms: Dict[int, List[int]] = {}
        self._bank: Optional[Tuple[tuple, torch.Tensor, torch.Tensor]] = None  # regression pairs, built lazily
        log.info("Distiller (%s): %d trained parameters, GAN %s over %d block(s)", cfg.parameterization,
                 self.num_trainable(), cfg.gan_mode if cfg.gan else "off", self.gan_blocks)

    # ------------------------------------------------------------------ pieces
    def _set_modes(self, training: bool) -> None:
        self.teacher.eval()
        for m in {id(self.roles.student): self.roles.student, id(self.roles.fake): self.roles.fake}.values():
            m.backbone.gradient_checkpointing = bool(training and self.config.gradient_checkpointing)
            if m is not self.teacher:
                m.eval()
        self.heads.train(training)
        for lo in (self.roles.lora_s, self.roles.lora_f):
            if lo is not None:
                lo.train(training)

    def discriminate(self, x: torch.Tensor, ctx_t: torch.Tensor, g: torch.Generator, *,
                     grad_input: bool) -> torch.Tensor:
        """Patch logits of the diffusion discriminator for clean latents ``x`` (module docstring)."""
        cfg = self.config
        b = x.shape[0]
        t_d = (self.parallel.draw(torch.rand, (b,), g) * cfg.gan_t_max).to(x.device)
        eps = self.parallel.draw(torch.randn, x.shape, g).to(x.device)
        xin = x if grad_input else x.detach()
        z = t_d.view(-1, 1, 1) * eps + (1 - t_d.view(-1, 1, 1)) * xin
        every = cfg.gan_mode == "all_blocks"
        with self.roles.as_("teacher"), torch.set_grad_enabled(grad_input):
            feats = block_outputs(self.teacher.backbone, z, t_d, ctx_t, self.gan_blocks, every=every)
        if every:
            return torch.stack([head(f) for head, f in zip(self.heads, feats)]).mean(0)
        return self.heads[0](feats[-1])

    def _batch(self, s: int, g: torch.Generator):
        """The global batch of step ``s`` (``batch_size`` per process, all processes together)."""
        cfg = self.config
        idx = sample_indices(self.data, self._perms, cfg.seed, cfg.batch_size * self.parallel.world, s - 1)
        return self.data.batch(idx, g, self.device)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        cfg, dev, par = self.config, self.device, self.parallel
        s = self.step + 1
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(cfg.seed, s, 97, par.rank))  # dropout masks (per process)
        # Everything else is drawn for the global batch (same seed on every process), each process
        # keeps its slice: N processes × batch b = one process × batch N·b (parallel.py).
        g = torch.Generator().manual_seed(step_seed(cfg.seed, s, 0))
        batch = self._batch(s, g)
        student_step = cfg.is_student_step(s)
        if student_step and cfg.regression_weight:
            self.regression_bank()  # built once, before the autocast region of the forward pass
        with torch.no_grad(), autocast_for(dev, cfg.precision):
            tok_s = tuple(par.shard(x) for x in self.cond.tokens(batch, cfg.masking, g))
            tok_t = tuple(par.shard(x) for x in self.cond.tokens(batch, cfg.masking, g))
        x_real = par.shard(batch.x0)
        k = int(torch.multinomial(self.probs, 1, generator=g))
        noise = par.draw(torch.randn, x_real.shape, g).to(dev)
        tau = par.shard(self.sampler.draw(batch.size, g)).to(dev)
        eps = par.draw(torch.randn, x_real.shape, g).to(dev)
        entry = {"step": s, "mode": "student" if student_step else "fake", "k": k}
        self.optimizer.zero_grad(set_to_none=True)
        who = "student" if student_step else "fake"
        # The forward pass runs inside the DDP wrapper (several processes) so that DDP sees which
        # side's parameters this step uses; its backward all-reduces exactly those gradients.
        total, losses = par.forward(self._losses, student_step, g, tok_s, tok_t, x_real, k, noise, tau, eps)
        if not torch.isfinite(total):
            raise InputError(f"distillation diverged at step {s} (loss {float(total)}); lower the learning rate")
        with self.roles.as_(who):  # recomputed (checkpointed) blocks must see the same adapters in backward
            par.backward(self.scaler.scale(total) if self.scaler is not None else total)
        losses["loss"] = float(total.detach())
        entry.update(par.mean(losses))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        entry["grad_norm"] = grad_norm(self.params)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        lr = cfg.lr * self.schedule(s - 1)
        entry.update(lr=lr, seconds=time.perf_counter() - t0)
        return self._optimizer_update(s, lr, entry)

    def _losses(self, student_step: bool, g: torch.Generator, tok_s: tuple, tok_t: tuple, x_real: torch.Tensor,
                k: int, noise: torch.Tensor, tau: torch.Tensor, eps: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        """The forward pass of one update: ``(total loss, {name: value})`` (module docstring)."""
        cfg, dev, roles = self.config, self.device, self.roles
        randn = lambda shape, generator: self.parallel.draw(torch.randn, shape, generator)  # noqa: E731
        entry: dict = {}
        with autocast_for(dev, cfg.precision):
            if student_step:
                ctx_s = roles.fuse("student", tok_s)
                x0_s = rollout(lambda z, t: roles.velocity("student", z, t, ctx_s), noise, k, self.ts, g,
                               randn=randn)
                z = tau.view(-1, 1, 1) * eps + (1 - tau.view(-1, 1, 1)) * x0_s
                with torch.no_grad():
                    ctx_t = roles.fuse("teacher", tok_t)
                    zd = z.detach()
                    with roles.as_("teacher"):
                        v_t = _cfg(self.teacher.velocity, zd, tau, ctx_t, cfg.guidance)
                    ctx_f = roles.fuse("fake", tok_s)
                    v_f = roles.velocity("fake", zd, tau, ctx_f)
                    tt = tau.view(-1, 1, 1)
                    grad = dmd_gradient(zd.float(), (zd - tt * v_t).float(), (zd - tt * v_f).float())
                x0f = x0_s.float()
                loss_dmd = 0.5 * F.mse_loss(x0f, (x0f - grad).detach()) * cfg.dmd_weight
                total = loss_dmd
                entry["loss_dmd"] = float(loss_dmd.detach())
                if cfg.gan:
                    with _frozen([self.heads]):
                        logits = self.discriminate(x0_s, ctx_t, g, grad_input=True)
                    loss_g = hinge_generator_loss([logits.float()]) * cfg.gan_weight
                    total = total + loss_g
                    entry["loss_gan_g"] = float(loss_g.detach())
                if cfg.regression_weight:
                    loss_reg = self._regression_loss(g) * cfg.regression_weight
                    total = total + loss_reg
                    entry["loss_reg"] = float(loss_reg.detach())
            else:
                with torch.no_grad():
                    ctx_s = roles.fuse("student", tok_s)
                    x0 = rollout(lambda z, t: roles.velocity("student", z, t, ctx_s), noise, k, self.ts, g, grad=False,
                             randn=randn)
                tt = tau.view(-1, 1, 1)
                z = tt * eps + (1 - tt) * x0
                target = eps - x0
                ctx_f = roles.fuse("fake", tok_s)
                v_f = roles.velocity("fake", z, tau, ctx_f)
                loss_fake = F.mse_loss(v_f.float(), target.float()) * cfg.fake_weight
                total = loss_fake
                entry["loss_fake"] = float(loss_fake.detach())
                if cfg.gan:
                    with torch.no_grad():
                        ctx_t = roles.fuse("teacher", tok_t)
                    lr_ = self.discriminate(x_real, ctx_t, g, grad_input=False).float()
                    lf_ = self.discriminate(x0, ctx_t, g, grad_input=False).float()
                    loss_d = hinge_discriminator_loss([lr_], [lf_]) * cfg.gan_weight
                    total = total + loss_d
                    entry.update(loss_d=float(loss_d.detach()), score_real=float(lr_.detach().mean()),
                                 score_fake=float(lf_.detach().mean()))
        return total, entry

    # ------------------------------------------------------------------ paired regression (DMD v1)
    def regression_bank(self) -> Tuple[tuple, torch.Tensor, torch.Tensor]:
        """``(tokens, noise, teacher samples)`` of ``regression_pairs`` pairs, the same on every
        process and after a resume (seeded by ``seed``): dataset items in a seeded order, their
        teacher-side condition tokens, unit noise, and the teacher's sample from that noise
        (``regression_teacher_steps`` Euler steps on ``linspace(1, 0)`` with CFG ``guidance``)."""
        if self._bank is not None:
            return self._bank
        cfg, dev = self.config, self.device
        g = torch.Generator().manual_seed(step_seed(cfg.seed, 0, 131))
        order = torch.randperm(len(self.data), generator=g).tolist()
        idx = [order[i % len(order)] for i in range(cfg.regression_pairs)]
        ts = torch.linspace(1.0, 0.0, cfg.regression_teacher_steps + 1)
        teacher = lambda ctx: lambda x, t: _cfg(self.teacher.velocity, x, t, ctx, cfg.guidance).float()  # noqa: E731
        toks, noises, samples = [], [], []
        for start in range(0, len(idx), 16):
            batch = self.data.batch(idx[start:start + 16], g, dev)
            with torch.no_grad(), autocast_for(dev, cfg.precision):
                tok = self.cond.tokens(batch, cfg.masking, g)
                ctx = self.roles.fuse("teacher", tok)
                noise = torch.randn(batch.x0.shape, generator=g).to(dev)
                with self.roles.as_("teacher"):
                    z = rf_euler(teacher(ctx), noise, ts)
            toks.append(tok)
            noises.append(noise)
            samples.append(z.float())
        tokens = tuple(torch.cat([t[j] for t in toks]) for j in range(len(toks[0])))
        self._bank = (tokens, torch.cat(noises), torch.cat(samples))
        return self._bank

    def _regression_loss(self, g: torch.Generator) -> torch.Tensor:
        """``mean((x̂0_s(ε) − x0_T(ε))²)``: the student's first-step prediction from pure noise
        (t = 1) against the teacher's sample from the same noise, on a batch of bank pairs."""
        tokens, noise, target = self.regression_bank()
        par = self.parallel
        pick = torch.randint(0, noise.shape[0], (self.config.batch_size * par.world,), generator=g)
        tok = tuple(par.shard(t[pick]) for t in tokens)
        z, y = par.shard(noise[pick]), par.shard(target[pick])
        ctx = self.roles.fuse("student", tok)
        t = torch.ones(z.shape[0], device=z.device)
        x0 = z - self.roles.velocity("student", z, t, ctx)
        return F.mse_loss(x0.float(), y)

    def close(self) -> None:
        """Detach the student / fake LoRAs from the shared base (LoRA mode); the Distiller is
        unusable afterwards.  Export first (:meth:`export`, :meth:`student_model`)."""
        for lo in (self.roles.lora_s, self.roles.lora_f):
            if lo is not None and lo.attached:
                lo.detach()

    # ------------------------------------------------------------------ results
    def run(self, steps: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> DistillResult:
        out = super().run(steps, callback)
        return DistillResult(out["step"], out["history"], out.get("student"), out.get("student_lora"),
                             out.get("checkpoint"))

    @torch.no_grad()
    def preview(self, item: int = 0, seed: int = 0) -> torch.Tensor:
        """The student's own few-step generation (the rollout over its grid ``ts``, as AudioX Turbo
        Sampler runs it) for dataset item ``item`` with its conditions unmasked, from noise of
        ``seed``; decoded audio ``[1, C, N]``.  Draws only from its own generator and restores the
        training modes, so the training continues exactly as without it."""
        from ..generate import decode
        from .conditions import NO_MASKING
        g = torch.Generator().manual_seed(seed)
        batch = self.data.batch([item], g, self.device, random_crop=False, sample_posterior=False)
        self._set_modes(False)
        try:
            with autocast_for(self.device, self.config.precision):
                ctx = self.roles.fuse("student", self.cond.tokens(batch, NO_MASKING, g))
                noise = torch.randn(batch.x0.shape, generator=g).to(self.device)
                x0 = rollout(lambda z, t: self.roles.velocity("student", z, t, ctx), noise,
                             self.config.student_steps - 1, self.ts, g, grad=False)
        finally:
            self._set_modes(True)
        return decode(self.teacher, x0.float())

    def student_state_dict(self) -> "Dict[str, torch.Tensor]":
        """Full-model state dict of the student (LoRA mode: the student LoRA merged into a copy)."""
        if self.roles.full:
            return self.roles.student.state_dict()
        with lora_scope(self.teacher, [self.roles.lora_s]):
            return merged_state_dict(self.teacher)

    def student_model(self):
        """The student as a standalone model object (a copy in LoRA mode)."""
        if self.roles.full:
            return self.roles.student
        from ..models.audiox import build_model
        m = build_model(self.teacher.config, device="meta")
        m.load_state_dict(self.student_state_dict(), assign=True)
        m.set_text_encoder(self.teacher.text_encoder)
        m.set_synchformer(self.teacher.synchformer)
        m.info = dict(self.teacher.info, role="student")
        return m.eval().requires_grad_(False)

    def export(self, folder: Optional[Union[str, Path]] = None, *, partial: bool = False) -> Dict[str, Path]:
        """The student (``<name>.safetensors``) and, for LoRA roles, its LoRA; ``partial`` (Cancel):
        under ``<name>.partial.safetensors`` names."""
        from ..checkpoint import CONFIG_METADATA_KEY, FORMAT_METADATA_KEY, ROLE_METADATA_KEY
        from ..weights import save_safetensors
        from .loop import partial_name
        name = (lambda p: partial_name(p)) if partial else (lambda p: p)  # noqa: E731
        folder = Path(folder) if folder is not None else self.out_dir
        if folder is None:
            raise InputError("export: no folder")
        out = {}
        md = {FORMAT_METADATA_KEY: "pt", CONFIG_METADATA_KEY: json.dumps(self.teacher.config.to_dict()),
              ROLE_METADATA_KEY: "student", "audiox_distill_steps": str(self.step)}
        path = name(folder / f"{self.config.name}.safetensors")
        save_safetensors(self.student_state_dict(), path, md)
        out["student"] = path
        if self.roles.lora_s is not None:
            out["student_lora"] = self.roles.lora_s.save(name(folder / f"{self.config.name}_lora.safetensors"),
                                                         steps=self.step, dataset_hash=self.data.dataset_hash,
                                                         role="student")
        return out

    def extra_state(self) -> dict:
        from .lora import base_fingerprint
        return {"variant": self.teacher.config.variant, "teacher_fingerprint": base_fingerprint(self.teacher)["id"],
                "dataset_hash": self.data.dataset_hash}

    def check_state(self, info: dict, path) -> None:
        from ..errors import CheckpointError
        if info.get("variant") != self.teacher.config.variant:
            raise CheckpointError(f"{path}: made for {info.get('variant')}, the teacher is "
                                  f"{self.teacher.config.variant}")
        saved = info.get("teacher_fingerprint")
        if saved is not None:
            from .lora import base_fingerprint
            now = base_fingerprint(self.teacher)["id"]
            if saved != now:
                raise CheckpointError(f"{path}: made while distilling another teacher (weights fingerprint {saved}, "
                                      f"this teacher {now}); its student and critic do not belong to this teacher — "
                                      "remove that checkpoint folder or write to another output")
