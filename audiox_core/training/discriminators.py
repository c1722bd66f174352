"""A multi-resolution complex-STFT discriminator and the GAN losses of the VAE trainer.

Training-only (:mod:`audiox_core.training.vae` uses it when ``VAETrainConfig.adv_weight`` or
``fm_weight`` is positive); nothing here is part of an exported model.

The design follows the MS-STFT discriminator of EnCodec (Défossez et al. 2022), which
Stable Audio's Oobleck VAEs are trained against, sized down for 16 kHz audio and a 2-core CPU:

* one sub-discriminator per FFT size (default 1024 / 512 / 256 at 16 kHz, i.e. the usual
  2048 / 1024 / 512 at 44.1 kHz halved); Hann window = FFT size, hop = FFT size / 4, centred
  frames, spectrum normalised by the window's L2 norm;
* its input is ``[real, imag]`` of every audio channel stacked as 2-D image channels,
  laid out ``[B, 2·C, T (frames), F (bins)]``;
* a small conv stack (``filters`` channels, default 8): four (3, 9) convs (time × frequency)
  that each halve the frequency axis (stride (1, 2); EnCodec's first conv keeps it, halving it
  here cuts the cost by about half), the last three with time dilations 1, 2, 4, then a (3, 3)
  conv, each followed by LeakyReLU(0.2), and a (3, 3) conv to one logit channel.  Frames keep
  their count.  Convs run in ``channels_last`` layout (about 2× faster on CPU here).  Every activation (after each LeakyReLU) is a
  feature map for the feature-matching loss.

Losses (averaged over the sub-discriminators ``k``; ``r_k`` / ``f_k`` the logits of real and
reconstructed audio, ``R_kl`` / ``F_kl`` the feature maps of layer ``l``)::

    L_disc = mean_k [ mean relu(1 − r_k) + mean relu(1 + f_k) ]         (hinge, discriminator)
    L_adv  = mean_k [ − mean f_k ]                                       (hinge, generator)
    L_fm   = mean_{k,l} [ mean |R_kl − F_kl| / (mean |R_kl| + 1e-8) ]     (per-layer normalised L1)
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputError

__all__ = ["STFTSubDiscriminator", "MultiResolutionSTFTDiscriminator", "hinge_discriminator_loss",
           "hinge_generator_loss", "feature_matching_loss"]

Features = List[Tensor]


class STFTSubDiscriminator(nn.Module):
    """One resolution: ``forward(x [B, C, N]) -> (logits [B, 1, T, F'], [feature maps])``."""

    def __init__(self, n_fft: int, audio_channels: int = 2, filters: int = 8, dilations: Sequence[int] = (1, 2, 4)):
        super().__init__()
        if n_fft < 8 or n_fft % 4:
            raise ConfigError(f"STFT discriminator: FFT size must be a multiple of 4 and ≥ 8, got {n_fft}")
        if audio_channels < 1 or filters < 1:
            raise ConfigError(f"STFT discriminator: audio_channels and filters must be ≥ 1, got "
                              f"{audio_channels}, {filters}")
        self.n_fft, self.hop = int(n_fft), int(n_fft) // 4
        self.audio_channels = int(audio_channels)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        layers = [nn.Conv2d(2 * audio_channels, filters, (3, 9), stride=(1, 2), padding=(1, 4))]
        for d in dilations:
            layers.append(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(int(d), 1),
                                    padding=(int(d), 4)))
        layers.append(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(layers)
        self.out = nn.Conv2d(filters, 1, (3, 3), padding=(1, 1))
        self.to(memory_format=torch.channels_last)

    def spectrum(self, x: Tensor) -> Tensor:
        """``[B, 2·C, T, F]``: real and imaginary parts of each channel's normalised STFT."""
        b, c, n = x.shape
        if c != self.audio_channels:
            raise InputError(f"STFT discriminator: expected {self.audio_channels} audio channels, got {c}")
        if n <= self.n_fft // 2:
            raise InputError(f"STFT discriminator: {n} samples are too short for FFT size {self.n_fft} "
                             f"(need more than {self.n_fft // 2})")
        spec = torch.stft(x.reshape(b * c, n).float(), self.n_fft, self.hop, window=self.window, center=True,
                          normalized=True, return_complex=True)  # [B·C, F, T]
        spec = torch.view_as_real(spec)  # [B·C, F, T, 2]
        f, t = spec.shape[1], spec.shape[2]
        spec = spec.reshape(b, c, f, t, 2).permute(0, 1, 4, 3, 2).reshape(b, 2 * c, t, f)
        return spec.contiguous(memory_format=torch.channels_last)  # CPU convs: ~2× faster than NCHW here

    def forward(self, x: Tensor) -> Tuple[Tensor, Features]:
        h = self.spectrum(x)
        feats: Features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    """Sub-discriminators over several FFT sizes (module docstring).

    ``forward(x [B, C, N]) -> (logits per size, feature maps per size)``."""

    def __init__(self, sizes: Sequence[int] = (1024, 512, 256), audio_channels: int = 2, filters: int = 8):
        super().__init__()
        if not sizes:
            raise ConfigError("STFT discriminator: no FFT sizes given")
        self.sizes = tuple(int(s) for s in sizes)
        self.discriminators = nn.ModuleList(STFTSubDiscriminator(n, audio_channels, filters) for n in self.sizes)

    def forward(self, x: Tensor) -> Tuple[List[Tensor], List[Features]]:
        logits, feats = [], []
        for d in self.discriminators:
            lg, ft = d(x)
            logits.append(lg)
            feats.append(ft)
        return logits, feats


def hinge_discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """``mean_k [mean relu(1 − real_k) + mean relu(1 + fake_k)]``."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return torch.stack(terms).mean()


def hinge_generator_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """``mean_k [−mean fake_k]``."""
    return torch.stack([-f.mean() for f in fake_logits]).mean()


def feature_matching_loss(real_feats: Sequence[Features], fake_feats: Sequence[Features]) -> Tensor:
    """Mean over sub-discriminators and layers of ``mean|real − fake| / (mean|real| + 1e-8)``.

    ``real_feats`` are targets: pass them detached (or computed under ``no_grad``)."""
    terms = [(r - f).abs().mean() / (r.abs().mean() + 1e-8)
             for rs, fs in zip(real_feats, fake_feats) for r, f in zip(rs, fs)]
    if not terms:
        raise InputError("feature_matching_loss: no feature maps given")
    return torch.stack(terms).mean()

