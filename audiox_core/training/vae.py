"""A compact trainer for the Oobleck VAE (the "pretransform") of our own small models.

Used by the demo recipe (:mod:`audiox_core.demo.recipe`) to train the demo model's VAE from
scratch on rendered audio; nothing here is needed to run the released AudioX models.

Objective, per batch ``x [B, C, N]`` (fp32, peak ≤ 1)::

    mean, std = moments(encoder(x))           std = softplus(scale) + 1e-4 (the official bottleneck)
    z         = mean + std · ε                ε ~ N(0, 1) from a per-step generator
    y         = decoder(z)
    loss      = w_stft · MRSTFT(y, x) + w_l1 · mean|y − x| + w_kl(step) · KL(mean, std)
              [ + w_adv · L_adv(D(y)) + w_fm · L_fm(D(x), D(y))     adversarial runs, step ≥ disc_start ]

* ``MRSTFT`` (:class:`MultiResolutionSTFTLoss`) averages, over the resolutions (Hann window =
  FFT size, hop = FFT size / 4), spectral convergence plus a log-power L1 whose floor is
  relative to each clip's loudest bin (-40 dB; see the class for why an absolute floor stalls
  training on the world's digital silence).
* ``KL`` is the official ``(mean² + var − log var − 1).sum(channels).mean()``
  (:meth:`~audiox_core.models.vae.VAEBottleneck.kl`) with a small weight (1e-5) that is off for
  the first quarter of the run and ramps up over the second (``kl_warmup``).  Why: early on the
  decoder barely uses the latent, so the reconstruction gradient on the posterior std is weak and
  Adam follows the (tiny but consistent) KL gradient: with the KL on from step 0 the demo VAE's
  posterior std rose from 0.02 to ~0.15 within 250 steps (KL 225 → 120; with weight 1e-4 down to
  19), burying the latent in sampling noise.  Once the decoder relies on the latent the KL only
  bounds its scale.
* ``w_l1`` is small (0.1): a waveform L1 rewards phase-exact output, which an untrained decoder
  can only approach by staying quiet — it fights the (phase-free) spectral term early on.
* Initialisation (``init="unit_gain"``, :func:`unit_gain_init_`): variance-preserving weight-norm
  gains and zero biases, so the latent reaches the output at init (with PyTorch's default init
  the demo decoder ignored its latent for hundreds of steps and the loss plateaued); and the
  bias of the encoder's scale channels
  (``scale_bias_init``, -4): the posterior then starts with std ≈ 0.018 instead of
  softplus(0) ≈ 0.69.  With the default, the sampling noise swamps the still-small means, the
  decoder learns to ignore the latent and the KL term pulls the posterior onto the prior
  (posterior collapse within ~100 steps); a short CPU budget cannot wait for it to recover.
* The adversarial terms are off by default (``adv_weight = fm_weight = 0``); see below.

Adversarial terms (optional; issue 14: round trips with the objective above turn chirps into
noise and blur tonal events)

* ``D`` is a :class:`~audiox_core.training.discriminators.MultiResolutionSTFTDiscriminator`:
  one small 2-D conv stack per FFT size (``disc_sizes``, default 1024 / 512 / 256 at 16 kHz)
  over the ``[real, imag]`` STFT of every channel, ``disc_filters`` (8) channels; 20 k
  parameters.  It returns logits and feature maps per size; losses (averaged over sizes and,
  for ``L_fm``, layers; see that module)::

      L_disc = mean relu(1 − D(x)) + mean relu(1 + D(y))                 hinge, trains D
      L_adv  = − mean D(y)                                               hinge, trains the VAE
      L_fm   = mean_layers mean|D_l(x) − D_l(y)| / mean|D_l(x)|          trains the VAE

* It is used when ``adv_weight > 0`` or ``fm_weight > 0``; it is created after the VAE (so an
  adversarial run starts from the same VAE weights) and has its own Adam (``disc_lr``, constant;
  ``disc_betas``) and the same gradient clipping.
* When: before ``disc_start`` neither the discriminator nor the adversarial terms are used (the
  step is the plain one; ``adv`` / ``fm`` / ``disc`` read 0).  From ``disc_start`` on, every step
  does both updates from the same forward pass: the VAE's loss (with ``L_adv`` and ``L_fm``;
  ``D`` frozen, real features under ``no_grad``) and ``L_disc`` on the real batch and the
  detached reconstruction, computed with the weights ``D`` had during the VAE's pass; then
  both optimizers step.  ``L_disc`` never reaches the VAE, ``L_adv``/``L_fm`` never reach ``D``.
* Cost, default demo VAE (batch 8 × 16000 samples, 2 threads, ``train_step`` on one fixed batch,
  plain and adversarial trainers interleaved in one process, minimum over 6 steps each, two runs
  on the 2-core dev machine while it was nearly idle): plain 0.341 s/step (2.93 steps/s);
  adversarial with ``disc_filters`` 8 (default) 0.580–0.596 s/step (1.68–1.72 steps/s, ×1.70–1.75);
  with ``disc_filters`` 16, 0.79 s/step (×2.3).  Under heavy sharing (load 4–5) the ratio
  measured ×1.6 (5.45 → 8.58 s/step).  Counted convolution FLOPs (``torch.utils.flop_counter``):
  plain 11.2 GFLOP/step, adversarial 27.4 (×2.4; 66.3 with 16 filters).  The convs run in
  ``channels_last`` layout (about twice as fast on CPU as NCHW for these shapes), and the first
  conv already halves the frequency axis.
* Not yet tuned or shown to help: no round-trip quality has been measured with it.  A first
  100-step run of the demo VAE from step 0 (``adv_weight`` 0.1, ``fm_weight`` 5, the Stable
  Audio weights) stayed finite, but the discriminator's hinge loss stayed ≈ 2 (it hardly
  separates real from reconstructed yet) and the STFT term was noisier than in the plain run
  (single steps up to 5.8 vs ≤ 2.2).  Start it late (``disc_start`` ≈ half the run, after the
  reconstruction objective has done its work), as Stable Audio's trainer does after a warm-up.

Mechanics

* bf16 autocast on CPU is optional (``bf16``); on the 2-core dev machine the small VAE's convs
  are memory-bound and bf16 autocast was not faster, so the default is fp32.
* Deterministic: the model init uses ``seed``; each step's batch comes from
  ``source(step, batch_size)`` (a pure function of the step, see :class:`AudioSource`) and the
  posterior noise from ``Generator().manual_seed(seed · 1_000_003 + step)``; so a resumed run
  computes bit for bit what an uninterrupted one does.
* Learning rate: linear warm-up, then cosine decay to ``lr · lr_final``; Adam(β 0.8, 0.99);
  gradients clipped to ``grad_clip``.
* Checkpoints (``checkpoint_path``): model, optimizer (and, in adversarial runs, the
  discriminator and its optimizer), step and the loss history in one file
  written atomically (temporary file + ``os.replace``), every ``checkpoint_every`` steps, at the
  end, and when the progress callback interrupts the run (the state after the last completed
  step, so nothing partial is ever saved).  :meth:`VAETrainer.resume` continues from it.
* ``callback(step, total, info)`` after every step with ``info = {"loss", "stft", "l1", "kl",
  "lr"}`` (plus ``"align"`` with spectral alignment and ``"adv", "fm", "disc"`` when a discriminator
  is used); raising :class:`~audiox_core.errors.Interrupted` (or anything) stops after saving.

Decoder-only training (the demo recipe's second VAE phase)

* ``train_encoder = False`` freezes the encoder: the optimizer gets the decoder's parameters
  only, so every latent (and the latent scale fixed from them) stays bit for bit what it was.
* :meth:`VAETrainer.init_from` starts from another VAE's weights before the first step: every
  tensor with the same name and shape is copied (a decoder with wider full-rate levels keeps the
  low-rate blocks it shares with the narrower one); the encoder must fit whole.
* ``latent_noise`` > 0 adds, per item, Gaussian noise of a level drawn in ``[0, latent_noise]``
  times the batch's latent std to the decoder's input: a decoder trained on encoder latents
  only never sees latents off that manifold, which is what a generator produces.

Spectral alignment (``spectral_align_weight`` > 0; off by default)

* Measured on the demo VAE (``bench/vae_probe.py``): its latents do not tell a beep from a buzz or
  a bell from a drum — a convolutional probe on the latent frames around an isolated event scores
  chance (49 / 54 % held out), while the same probe on a log spectrogram at the latent frame rate
  scores 100 %.  A randomly initialised encoder scores chance too, a four-times-wider full-rate
  encoder as well after 1500 steps: the reconstruction losses do not make the encoder keep it.
* The term (in the spirit of VA-VAE's alignment of latents with fixed features): a 1×1 linear
  head maps the posterior *mean* to ``spectral_align_bands`` bands of the input's log power
  spectrum at the latent frame rate (:func:`spectral_targets`), and ``weight × MSE`` joins the
  loss.  The latent must then hold the spectral envelope linearly, harmonics included.  The head
  belongs to the trainer (in its checkpoint, optimised with the VAE, clipped with it); the
  exported file is the plain Oobleck VAE.
* Measured (docs/TRAINING.md, 2026-12-08): the demo recipe's phase 1 with weight 10 (2000 steps)
  gives latents that tell beeps from buzzes in 80 % of held-out events (48.7 % without) and a round
  trip that keeps every event category of 60 % of clips (42.5 % without; bell/drum unchanged).
  800-step runs showed nothing: the term learns late, as the learning rate decays.

Export: :meth:`VAETrainer.export` writes the bare autoencoder (never the discriminator) (keys ``encoder.*`` / ``decoder.*``,
the layout of the released ``VAE.ckpt``) as ``.safetensors`` with the :class:`VAEConfig` in the
metadata; :func:`audiox_core.checkpoint.load_vae` reads it.  :func:`reconstruction_metrics`
measures a trained VAE (SNR, log-spectral distance, MRSTFT distance).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import VAEConfig
from ..errors import CheckpointError, ConfigError, InputError
from ..models.vae import AudioAutoencoder, Pretransform, VAEBottleneck
from ..progress import ProgressCallback
from .discriminators import (MultiResolutionSTFTDiscriminator, feature_matching_loss, hinge_discriminator_loss,
                             hinge_generator_loss)

log = logging.getLogger(__name__)

__all__ = ["VAETrainConfig", "MultiResolutionSTFTLoss", "spectral_targets", "AudioSource", "VAETrainer",
           "reconstruction_metrics", "unit_gain_init_",
           "vae_config_to_dict", "vae_config_from_dict"]

CHECKPOINT_FORMAT = "audiox_vae_trainer/1"


@dataclass
class VAETrainConfig:
    """Hyper-parameters of :class:`VAETrainer` (defaults: the demo VAE's recipe)."""

    steps: int = 2000
    batch_size: int = 8
    segment: int = 16000  # samples per training crop; a multiple of the downsampling ratio
    lr: float = 1.5e-3
    lr_final: float = 0.1  # final lr as a fraction of lr (cosine)
    warmup: int = 50
    betas: Tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0
    stft_sizes: Tuple[int, ...] = (1024, 512, 256, 128, 64)
    stft_weight: float = 1.0
    stft_floor: float = 1e-4  # log-power floor relative to each clip's loudest bin (-40 dB)
    l1_weight: float = 0.1
    kl_weight: float = 1e-5
    kl_warmup: Tuple[float, float] = (0.25, 0.5)  # KL weight 0 until this fraction of steps, linear ramp to the next
    scale_bias_init: Optional[float] = -4.0  # initial pre-softplus scale bias: std ≈ softplus(-4) ≈ 0.018
    init: str = "unit_gain"  # "unit_gain" (variance-preserving weight_g, zero biases) | "default"
    residual_gain: float = 0.1  # unit_gain: gain of each residual unit's last 1×1 conv
    bf16: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    # adversarial training (off by default; module docstring "Adversarial terms")
    adv_weight: float = 0.0  # weight of the generator's hinge loss
    fm_weight: float = 0.0  # weight of the discriminator feature-matching loss
    disc_start: int = 0  # step from which the discriminator trains and the generator gets adv / fm terms
    disc_lr: float = 2e-4  # discriminator Adam learning rate (constant)
    disc_betas: Tuple[float, float] = (0.8, 0.99)
    disc_sizes: Tuple[int, ...] = (1024, 512, 256)  # FFT sizes of the STFT sub-discriminators
    disc_filters: int = 8  # conv channels of each sub-discriminator (16: ~6× the FLOPs of a plain step)
    train_encoder: bool = True  # False: the encoder is frozen (its latents stay exactly as they are), decoder only
    latent_noise: float = 0.0  # > 0: the decoder also sees latents off the encoder's manifold, as generated ones are
    # > 0: the latent mean must also predict, through a 1×1 linear head, the input's log spectrum at the latent
    # frame rate (module docstring "Spectral alignment"); the head is the trainer's, never exported
    spectral_align_weight: float = 0.0
    spectral_align_bands: int = 64

    @property
    def adversarial(self) -> bool:
        """Whether a discriminator is trained (either GAN weight positive)."""
        return self.adv_weight > 0 or self.fm_weight > 0

    def __post_init__(self):
        if self.init not in ("unit_gain", "default"):
            raise ConfigError(f"VAETrainConfig.init must be 'unit_gain' or 'default', got {self.init!r}")
        if self.steps < 0 or self.batch_size < 1 or self.segment < 1:
            raise ConfigError(f"VAETrainConfig: steps/batch_size/segment must be positive, got {self.steps}, "
                              f"{self.batch_size}, {self.segment}")
        if not self.stft_sizes:
            raise ConfigError("VAETrainConfig: stft_sizes is empty")
        self.betas = tuple(self.betas)
        self.stft_sizes = tuple(int(s) for s in self.stft_sizes)
        for name in ("adv_weight", "fm_weight", "latent_noise", "spectral_align_weight"):
            _check_field(name, getattr(self, name), lambda v: _finite(v) and v >= 0, "a finite number ≥ 0")
        _check_field("spectral_align_bands", self.spectral_align_bands,
                     lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer ≥ 1")
        if self.spectral_align_weight > 0 and not self.train_encoder:
            raise ConfigError("VAETrainConfig: spectral_align_weight > 0 trains the encoder's latents, but "
                              "train_encoder is False (a frozen encoder cannot learn it)")
        _check_field("disc_start", self.disc_start, lambda v: isinstance(v, int) and v >= 0, "an integer step ≥ 0")
        _check_field("disc_lr", self.disc_lr, lambda v: _finite(v) and v > 0, "a finite number > 0")
        betas = tuple(self.disc_betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"VAETrainConfig.disc_betas must be two numbers in [0, 1), got {self.disc_betas!r}")
        self.disc_betas = betas
        sizes = tuple(self.disc_sizes)
        if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 8 and n % 4 == 0
                                for n in sizes):
            raise ConfigError(f"VAETrainConfig.disc_sizes must be FFT sizes that are multiples of 4 and ≥ 8, "
                              f"got {self.disc_sizes!r}")
        self.disc_sizes = sizes
        if self.adversarial and max(sizes) // 2 >= self.segment:
            raise ConfigError(f"VAETrainConfig.disc_sizes: FFT size {max(sizes)} needs a segment longer than "
                              f"{max(sizes) // 2} samples, got segment {self.segment}")
        _check_field("disc_filters", self.disc_filters, lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _check_field(name: str, value, ok, what: str) -> None:
    """:class:`ConfigError` naming ``VAETrainConfig.<name>`` unless ``value`` is no bool and ``ok(value)``."""
    if isinstance(value, bool) or not ok(value):
        raise ConfigError(f"VAETrainConfig.{name} must be {what}, got {value!r}")


def vae_config_to_dict(cfg: VAEConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["c_mults"], d["strides"] = list(cfg.c_mults), list(cfg.strides)
    if cfg.decoder_c_mults is not None:
        d["decoder_c_mults"] = list(cfg.decoder_c_mults)
    return d


def vae_config_from_dict(d: dict) -> VAEConfig:
    d = dict(d)
    d["c_mults"], d["strides"] = tuple(d["c_mults"]), tuple(d["strides"])
    return VAEConfig(**d)


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------
class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-power L1 with a relative floor, averaged over FFT sizes.

    Per FFT size ``n`` (Hann window ``n``, hop ``n/4``, centred frames), with power spectra
    ``P_y``, ``P_x`` of each row (any leading dims; every row is one signal)::

        SC   = ‖√P_y − √P_x‖_F / ‖√P_x‖_F                          (over the whole batch)
        f    = floor · max_{k,t} P_x[row] + 1e-10                    (per row)
        LM   = mean |log(P_y + f) − log(P_x + f)| / 2
        loss = mean over n of (SC + LM)

    The floor is relative to each reference row's loudest bin (``floor`` 1e-4 = -40 dB): the
    world's clips have exact digital silence between events, and with an absolute floor any
    faint output there costs as much as getting the sound itself wrong (measured: output
    silence scored 2.30, the input plus noise 40 dB down 1.00) — the decoder then learns to
    stay silent.  With the relative floor: silence 1.21, -40 dB noise 0.16.  Computed in fp32;
    windows are created lazily per device.
    """

    def __init__(self, sizes: Sequence[int] = (1024, 512, 256, 128, 64), floor: float = 1e-4):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.floor = float(floor)
        self._windows: Dict[tuple, Tensor] = {}

    def _window(self, n: int, device) -> Tensor:
        key = (n, str(device))
        if key not in self._windows:
            self._windows[key] = torch.hann_window(n, device=device)
        return self._windows[key]

    def power(self, x: Tensor, n_fft: int) -> Tensor:
        """``[R, n_fft/2 + 1, T]`` power spectra of the rows of ``x``."""
        flat = x.reshape(-1, x.shape[-1]).float()
        spec = torch.stft(flat, n_fft, n_fft // 4, window=self._window(n_fft, flat.device), center=True,
                          return_complex=True)
        return spec.real.square() + spec.imag.square()

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        total = y.new_zeros((), dtype=torch.float32)
        for n in self.sizes:
            py, px = self.power(y, n), self.power(x, n)
            sc = torch.linalg.vector_norm((py + 1e-12).sqrt() - (px + 1e-12).sqrt()) / \
                torch.linalg.vector_norm(px.sqrt()).clamp_min(1e-8)
            f = self.floor * px.flatten(1).amax(dim=1).view(-1, 1, 1) + 1e-10
            lm = (torch.log(py + f) - torch.log(px + f)).abs().mean() * 0.5
            total = total + sc + lm
        return total / len(self.sizes)


def spectral_targets(x: Tensor, ratio: int, bands: int, floor: float = 1e-4) -> Tensor:
    """``[B, bands, N // ratio]`` targets of the spectral alignment term for audio ``x [B, C, N]``.

    The channel mean's power spectrum with a Hann window of ``2·ratio`` and hop ``ratio``, framed so
    that frame ``t`` is centred on latent frame ``t``'s span ``[t·ratio, (t+1)·ratio)`` (reflect
    padding of ``ratio/2`` at both ends); in dB relative to the item's loudest bin with the
    relative floor of :class:`MultiResolutionSTFTLoss` (``floor`` 1e-4: −40 dB): the power is averaged
    into ``bands`` equal-width frequency bands, then taken in dB relative to the item's loudest band
    and frame, floored, and mapped to [0, 1] (1 = that loudest band, 0 = the floor)."""
    mono = x.float().mean(dim=1)
    n = mono.shape[-1]
    frames = n // ratio
    pad = ratio // 2
    padded = F.pad(mono[:, None], (pad, pad + 2 * ratio), mode="reflect")[:, 0]
    spec = torch.stft(padded, 2 * ratio, ratio, window=torch.hann_window(2 * ratio, device=x.device),
                      center=False, return_complex=True)[..., :frames]
    power = spec.real.square() + spec.imag.square()
    bands_power = F.adaptive_avg_pool1d(power.transpose(1, 2), bands).transpose(1, 2)  # [B, bands, frames]
    peak = bands_power.flatten(1).amax(dim=1).view(-1, 1, 1)
    f = floor * peak + 1e-10
    return ((torch.log(bands_power + f) - torch.log(peak + f)) / -math.log(floor) + 1.0).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def unit_gain_init_(model: nn.Module, residual_gain: float = 0.1) -> nn.Module:
    """Variance-preserving weight-norm gains and zero biases for every Oobleck convolution.

    PyTorch's default conv init gives every row of the effective weight a norm of ≈ 1/√3, so each
    conv scales the signal by ≈ 0.58 and each transposed conv by ≈ √(in / (3·out·stride)); through
    the demo VAE the latent → audio path is attenuated ~170× and the encoder's path ~30×, while
    the biases inject constants late in the stack.  The decoder's output then hardly depends on
    the latent (measured: ``|y(z) − y(0)| ≈ 0.05·|y(0)|`` after 500 steps), and it takes a very
    long run to recover.  Here, with ``w = g · v / ‖v‖``:

    * ``WNConv1d``: ``g = 1`` (an output channel's weight has unit norm: unit gain for
      uncorrelated inputs), except the last 1×1 conv of each residual unit: ``g = residual_gain``
      (the unit starts close to the identity, so the residual stack does not blow up variance);
    * ``WNConvTranspose1d`` (``g`` per input channel, norm over (out, k)): each output sample sums
      ``in · k / stride`` taps, so ``g = √(out · stride / in)`` gives unit gain;
    * every bias is zero; SnakeBeta parameters keep their zero (α = β = 1) start.
    """
    from ..models.vae import ResidualUnit, WNConv1d, WNConvTranspose1d

    last_of_unit = {id(m.layers[3]) for m in model.modules() if isinstance(m, ResidualUnit)}
    for m in model.modules():
        if isinstance(m, WNConvTranspose1d):
            m.weight_g.fill_(math.sqrt(m.out_channels * m.stride / m.in_channels))
        elif isinstance(m, WNConv1d):
            m.weight_g.fill_(residual_gain if id(m) in last_of_unit else 1.0)
        else:
            continue
        if m.bias is not None:
            m.bias.zero_()
        m.clear_weight_cache()
    return model


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
class AudioSource:
    """Interface of a training-audio source: ``source(step, batch_size) -> [B, C, N]`` float tensor.

    Must be a pure function of ``step`` (deterministic resume).  Any callable with that signature
    works; subclassing is optional.  The demo world's source is
    :class:`audiox_core.demo.dataset.WorldAudioSource`.
    """

    def __call__(self, step: int, batch_size: int) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------
def _atomic_torch_save(obj, path: Path) -> None:
    from ..fileio import atomic_write
    with atomic_write(path, what="VAE training checkpoint") as fh:
        torch.save(obj, fh)


class VAETrainer:
    """Trains an :class:`~audiox_core.models.vae.AudioAutoencoder` (module docstring).

    Args:
        vae_config: the architecture.
        train_config: :class:`VAETrainConfig`.
        source: ``source(step, batch_size) -> [B, vae_config.in_channels, segment]``.
        checkpoint_path: where to save / resume (None: no checkpoints).
    """

    def __init__(self, vae_config: VAEConfig, train_config: VAETrainConfig, source: Callable[[int, int], Tensor],
                 *, checkpoint_path: Optional[Union[str, Path]] = None):
        if train_config.segment % vae_config.downsampling_ratio:
            raise ConfigError(f"VAE training: segment {train_config.segment} is not a multiple of the "
                              f"downsampling ratio {vae_config.downsampling_ratio}")
        self.vae_config = vae_config
        self.cfg = train_config
        self.source = source
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        torch.manual_seed(train_config.seed)
        self.model = AudioAutoencoder(vae_config)
        if train_config.init == "unit_gain":
            unit_gain_init_(self.model, train_config.residual_gain)
        if train_config.scale_bias_init is not None:
            last = self.model.encoder.layers[-1]  # WNConv1d(…, 2 · latent_dim): mean || scale
            with torch.no_grad():
                last.bias[vae_config.latent_dim:].fill_(float(train_config.scale_bias_init))
        self.model.train()
        if not train_config.train_encoder:
            self.model.encoder.requires_grad_(False)
        self._trained = [p for p in self.model.parameters() if p.requires_grad]  # fixed for the run
        self.loss_fn = MultiResolutionSTFTLoss(train_config.stft_sizes, floor=train_config.stft_floor)
        self.opt = torch.optim.Adam(self._trained, lr=train_config.lr, betas=train_config.betas)
        self.disc: Optional[MultiResolutionSTFTDiscriminator] = None
        self.disc_opt: Optional[torch.optim.Optimizer] = None
        if train_config.adversarial:  # created after the VAE: an adv-off run draws exactly the same init
            self.disc = MultiResolutionSTFTDiscriminator(train_config.disc_sizes, vae_config.in_channels,
                                                         train_config.disc_filters).train()
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=train_config.disc_lr,
                                             betas=train_config.disc_betas)
        self.align_head: Optional[nn.Conv1d] = None
        if train_config.spectral_align_weight > 0:  # own RNG: the VAE's and the discriminator's init stay as without it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(train_config.seed + 0x5A)
                self.align_head = nn.Conv1d(vae_config.latent_dim, train_config.spectral_align_bands, 1)
            self.opt.add_param_group({"params": list(self.align_head.parameters())})
        self._clipped = self._trained + (list(self.align_head.parameters()) if self.align_head is not None else [])
        self.step = 0
        self.history: List[dict] = []
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ schedule
    def trained_parameters(self) -> List[nn.Parameter]:
        """The parameters the optimizer updates (the decoder's only when ``train_encoder`` is off)."""
        return list(self._trained)

    def init_from(self, state_dict: Mapping[str, Tensor]) -> List[str]:
        """Start from another VAE's weights: every tensor of ``state_dict`` whose name and shape this
        model has is copied (e.g. a VAE trained with a narrower decoder: its encoder, its decoder's
        low-rate blocks).  The encoder must be copied whole.  Only before the first step (the
        optimizer state is fresh).  Returns the names that kept their initial values."""
        if self.step:
            raise ConfigError(f"VAE training: init_from after {self.step} steps (only before the first)")
        own = self.model.state_dict()
        fits = {k: v for k, v in state_dict.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        missing_enc = sorted(k for k in own if k.startswith("encoder.") and k not in fits)
        if missing_enc:
            raise CheckpointError(f"VAE training: the given weights do not fit this encoder ({len(missing_enc)} "
                                  f"tensors differ or are missing, e.g. {missing_enc[0]})")
        with torch.no_grad():
            for k, v in fits.items():
                own[k].copy_(v)
        return sorted(k for k in own if k not in fits)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup:
            return c.lr * (step + 1) / max(1, c.warmup)
        span = max(1, c.steps - c.warmup)
        p = min(1.0, (step - c.warmup) / span)
        return c.lr * (c.lr_final + (1 - c.lr_final) * 0.5 * (1 + math.cos(math.pi * p)))

    def kl_weight_at(self, step: int) -> float:
        """``kl_weight`` × a ramp: 0 before ``kl_warmup[0]·steps``, 1 after ``kl_warmup[1]·steps``."""
        a, b = (float(v) * self.cfg.steps for v in self.cfg.kl_warmup)
        if step < a:
            return 0.0
        return self.cfg.kl_weight * (1.0 if step >= b or b <= a else (step - a) / (b - a))

    # ------------------------------------------------------------------ one step
    def adversarial_at(self, step: int) -> bool:
        """Whether step ``step`` (0-based) trains the discriminator and adds adv / fm terms."""
        return self.disc is not None and step >= self.cfg.disc_start

    def losses(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """The generator's loss terms for a batch ``x [B, C, N]`` (differentiable; the discriminator,
        when used, is frozen here: these terms give it no gradient)."""
        return self._generator_losses(x, generator)[0]

    def _generator_losses(self, x: Tensor, generator: Optional[torch.Generator]) -> Tuple[Dict[str, Tensor], Tensor]:
        c = self.cfg
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.bf16 and x.device.type == "cpu"):
            h = self.model.encoder(x)
            mean, std = VAEBottleneck.moments(h.float())
            eps = torch.randn(mean.shape, generator=generator, device=mean.device) if generator is not None \
                else torch.randn_like(mean)
            z = mean + std * eps
            if c.latent_noise > 0:  # per item: noise of a random level up to latent_noise × the batch's latent std
                level = torch.rand(z.shape[0], 1, 1, generator=generator, device=z.device) * c.latent_noise
                z = z + level * mean.detach().std() * torch.randn(z.shape, generator=generator, device=z.device)
            y = self.model.decoder(z)
        y = y.float()
        if y.shape != x.shape:
            raise InputError(f"VAE training: the decoder returned {tuple(y.shape)} for input {tuple(x.shape)} "
                             "(use even strides and a segment that is a multiple of the ratio)")
        stft = self.loss_fn(y, x)
        l1 = (y - x).abs().mean()
        kl = VAEBottleneck.kl(mean, std)
        loss = c.stft_weight * stft + c.l1_weight * l1 + self.kl_weight_at(self.step) * kl
        parts = {"loss": loss, "stft": stft, "l1": l1, "kl": kl, "latent_std": mean.detach().std()}
        if self.align_head is not None:
            target = spectral_targets(x, self.vae_config.downsampling_ratio, c.spectral_align_bands, c.stft_floor)
            align = F.mse_loss(self.align_head(mean), target)
            parts["align"] = align
            parts["loss"] = loss = loss + c.spectral_align_weight * align
        if self.disc is not None:
            adv = fm = loss.new_zeros(())
            if self.adversarial_at(self.step):
                self.disc.requires_grad_(False)
                try:
                    with torch.no_grad():
                        _, real_feats = self.disc(x)
                    fake_logits, fake_feats = self.disc(y)
                finally:
                    self.disc.requires_grad_(True)
                adv = hinge_generator_loss(fake_logits)
                fm = feature_matching_loss(real_feats, fake_feats)
                parts["loss"] = loss + c.adv_weight * adv + c.fm_weight * fm
            parts["adv"], parts["fm"] = adv, fm
        return parts, y

    def discriminator_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The discriminator's hinge loss on real ``x`` and reconstructed ``y`` (``y`` is detached:
        no gradient reaches the VAE)."""
        if self.disc is None:
            raise ConfigError("VAE training: no discriminator (adv_weight and fm_weight are 0)")
        logits, _ = self.disc(torch.cat([x, y.detach()], dim=0))
        b = x.shape[0]
        return hinge_discriminator_loss([lg[:b] for lg in logits], [lg[b:] for lg in logits])

    def train_step(self) -> dict:
        c = self.cfg
        t0 = time.perf_counter()  # data + step
        x = self.source(self.step, c.batch_size)
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[1] != self.vae_config.in_channels \
                or x.shape[-1] != c.segment:
            raise InputError(f"VAE training: the audio source returned "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}, expected "
                             f"[{c.batch_size}, {self.vae_config.in_channels}, {c.segment}]")
        lr = self.lr_at(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step)
        x = x.float()
        parts, y = self._generator_losses(x, gen)
        if not bool(torch.isfinite(parts["loss"])):  # before the update: the state stays the last good one
            raise InputError(f"VAE training diverged at step {self.step + 1} (loss {float(parts['loss'].detach())})")
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        disc_loss = None
        if self.adversarial_at(self.step):  # the discriminator's loss, before any update changes y or D
            disc_loss = self.discriminator_loss(x, y)
            if not bool(torch.isfinite(disc_loss)):
                raise InputError(f"VAE training: the discriminator diverged at step {self.step + 1} "
                                 f"(loss {float(disc_loss.detach())})")
            self.disc_opt.zero_grad(set_to_none=True)
            disc_loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self._clipped, c.grad_clip) if c.grad_clip > 0 else None
        self.opt.step()
        if disc_loss is not None:
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), c.grad_clip)
            self.disc_opt.step()
        if self.disc is not None:
            parts["disc"] = disc_loss if disc_loss is not None else y.new_zeros(())
        self.step += 1
        sec = time.perf_counter() - t0
        self.train_seconds += sec
        rec = {k: float(v.detach()) for k, v in parts.items()}
        rec.update(step=self.step, lr=lr, grad_norm=float(gn) if gn is not None else None, sec=sec)
        self.history.append(rec)
        return rec

    def info_keys(self) -> Tuple[str, ...]:
        """The keys of the progress callback's ``info`` (adv / fm / disc only with a discriminator)."""
        return (("loss", "stft", "l1", "kl") + (("align",) if self.align_head is not None else ())
                + (("adv", "fm", "disc") if self.disc is not None else ()) + ("lr",))

    def train(self, steps: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> List[dict]:
        """Run until ``steps`` (default ``train_config.steps``) steps are done in total.

        Checkpoints every ``checkpoint_every`` steps and whenever the run ends, also by an
        exception (an interrupting callback): the saved state is always that after the last
        completed step."""
        total = self.cfg.steps if steps is None else int(steps)
        try:
            while self.step < total:
                rec = self.train_step()
                if self.checkpoint_path is not None and self.cfg.checkpoint_every > 0 \
                        and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint(self.checkpoint_path)
                if callback is not None:
                    callback(self.step, total, {k: rec[k] for k in self.info_keys()})
        finally:
            if self.checkpoint_path is not None:
                self.save_checkpoint(self.checkpoint_path)
        return self.history

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "vae_config": json.dumps(vae_config_to_dict(self.vae_config)),
                "train_config": json.dumps(dataclasses.asdict(self.cfg)), "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "history": json.dumps(self.history), "train_seconds": self.train_seconds,
                **({"discriminator": self.disc.state_dict(), "disc_optimizer": self.disc_opt.state_dict()}
                   if self.disc is not None else {}),
                **({"align_head": self.align_head.state_dict()} if self.align_head is not None else {})}

    def save_checkpoint(self, path: Union[str, Path]) -> Path:
        """Atomic save of everything needed to resume."""
        path = Path(path)
        _atomic_torch_save(self.state(), path)
        return path

    @classmethod
    def resume(cls, path: Union[str, Path], source: Callable[[int, int], Tensor], *,
               train_config: Optional[VAETrainConfig] = None,
               checkpoint_path: Optional[Union[str, Path]] = None) -> "VAETrainer":
        """A trainer restored from ``path``.  ``train_config`` may change ``steps`` (to train longer);
        by default the saved config is used.  Checkpoints keep going to ``path`` unless
        ``checkpoint_path`` is given."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"VAE trainer checkpoint not found: {path}")
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many kinds on a broken file
            raise CheckpointError(f"{path}: not a readable VAE trainer checkpoint ({e})") from None
        if not isinstance(st, dict) or st.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a VAE trainer checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
        saved = VAETrainConfig(**json.loads(st["train_config"]))
        tc = train_config or saved
        vc = vae_config_from_dict(json.loads(st["vae_config"]))
        tr = cls(vc, tc, source, checkpoint_path=checkpoint_path or path)
        if (tr.align_head is not None) != ("align_head" in st):
            raise CheckpointError(f"{path}: " + ("has no spectral alignment head, but the train config's "
                                  f"spectral_align_weight is {tc.spectral_align_weight} (it cannot start mid-run)"
                                  if tr.align_head is not None else "was trained with a spectral alignment head; "
                                  "the train config's spectral_align_weight 0 cannot drop it mid-run"))
        tr.model.load_state_dict(st["model"])
        if tr.align_head is not None:
            tr.align_head.load_state_dict(st["align_head"])
        tr.opt.load_state_dict(st["optimizer"])
        if tr.disc is not None and "discriminator" in st:
            try:
                tr.disc.load_state_dict(st["discriminator"])
                tr.disc_opt.load_state_dict(st["disc_optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise CheckpointError(f"{path}: its discriminator does not fit the train config's "
                                      f"(disc_sizes {list(tc.disc_sizes)}, disc_filters {tc.disc_filters}): {e}") from None
        elif tr.disc is not None:
            log.info("VAE trainer: %s has no discriminator; adversarial training starts with a fresh one", path)
        tr.step = int(st["step"])
        tr.history = json.loads(st["history"])
        tr.train_seconds = float(st.get("train_seconds", 0.0))
        return tr

    def pretransform(self) -> Pretransform:
        """A detached eval-mode copy of the VAE as a :class:`Pretransform` (fp32)."""
        pt = Pretransform(self.vae_config)
        pt.model.load_state_dict(self.model.state_dict())
        return pt.eval().requires_grad_(False)

    def export(self, path: Union[str, Path], *, dtype: torch.dtype = torch.float32,
               extra_metadata: Optional[dict] = None) -> Path:
        """Write the autoencoder as ``.safetensors`` (keys ``encoder.*`` / ``decoder.*``), atomically."""
        from ..weights import save_safetensors
        sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in self.model.state_dict().items()}
        md = {"format": "pt", "vae_config": json.dumps(vae_config_to_dict(self.vae_config)),
              "trained_steps": str(self.step)}
        md.update({k: str(v) for k, v in (extra_metadata or {}).items()})
        save_safetensors(sd, Path(path), md)
        return Path(path)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def _lsd_db(y: Tensor, x: Tensor, n_fft: int = 512) -> float:
    """Log-spectral distance (dB) over frames where the reference has energy."""
    n_fft = min(n_fft, max(2, x.shape[-1] // 2))
    w = torch.hann_window(n_fft)
    X = torch.stft(x.reshape(-1, x.shape[-1]).double(), n_fft, n_fft // 4, window=w.double(), return_complex=True)
    Y = torch.stft(y.reshape(-1, y.shape[-1]).double(), n_fft, n_fft // 4, window=w.double(), return_complex=True)
    px, py = X.abs().square() + 1e-10, Y.abs().square() + 1e-10
    d = 10 * torch.log10(px) - 10 * torch.log10(py)
    frame_e = px.sum(dim=1)  # [R, T]
    active = frame_e > frame_e.amax(dim=1, keepdim=True) * 1e-4
    per_frame = d.square().mean(dim=1).sqrt()  # [R, T]
    return float(per_frame[active].mean()) if bool(active.any()) else 0.0


@torch.no_grad()
def reconstruction_metrics(pretransform: Pretransform, audio: Tensor, *, sample: bool = False,
                           generator: Optional[torch.Generator] = None,
                           stft_sizes: Sequence[int] = (1024, 512, 256, 128, 64)) -> dict:
    """Round-trip ``audio [B, C, N]`` through the VAE and measure it.

    Returns ``{"recon": [B, C, N'] tensor, "snr_db": mean over items of 10·log10(Σx² / Σ(x−y)²),
    "snr_db_items": list, "lsd_db": log-spectral distance, "mrstft": the training loss' spectral
    term (over the ``stft_sizes`` that fit in half the clip)}``.  ``N'`` = N rounded down to whole latents (the reference is cut the same way).
    ``sample=False`` decodes the posterior mean (deterministic).
    """
    ratio = pretransform.downsampling_ratio
    n = (audio.shape[-1] // ratio) * ratio
    if n == 0:
        raise InputError(f"reconstruction_metrics: audio shorter than one latent ({ratio} samples)")
    x = audio[..., :n].float()
    z = pretransform.encode(x, sample=sample, generator=generator)
    y = pretransform.decode(z).float()
    err = (x - y).flatten(1).square().sum(1)
    sig = x.flatten(1).square().sum(1)
    snr = (10 * torch.log10(sig.clamp_min(1e-12) / err.clamp_min(1e-12))).tolist()
    sizes = [s for s in stft_sizes if s <= n // 2] or [max(2, n // 2)]  # short clips: only FFTs that fit
    mr = float(MultiResolutionSTFTLoss(sizes)(y, x))
    return {"recon": y, "snr_db": float(sum(snr) / len(snr)), "snr_db_items": snr, "lsd_db": _lsd_db(y, x),
            "mrstft": mr}
