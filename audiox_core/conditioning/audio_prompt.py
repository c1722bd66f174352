"""Audio-prompt conditioners: the ``audio_prompt`` entry of ``model.conditioning``.

Three official variants (``ConditionerSpec.kind`` -> class, see :data:`AUDIO_PROMPT_CONDITIONERS`):

===========================  ==================================================  ==================
kind                         official class / config type                        used by
===========================  ==================================================  ==================
``audio_autoencoder_v1``     ``AudioAutoencoderConditioner``, AudioX type        AudioX
                             ``audio_autoencoder``
``audio_autoencoder_v2``     ``AudioAutoencoderConditionerv2`` (AudioX type      AudioX-MAF-MMDiT,
                             ``audio_autoencoder_v2``) == Turbo's                AudioX-Turbo
                             ``AudioAutoencoderConditioner`` (Turbo type
                             ``audio_autoencoder``)
``mel_spec``                 ``AudioMelConditioner``                             AudioX-MAF
===========================  ==================================================  ==================

Common call convention (all three)::

    tokens = cond(audio, *, batch_size=None, generator=None, mask=None, callback=None)
    # -> [B, N_tokens, 768]: v1 215 tokens, v2 128, mel N // hop + 1 (1723 for 10 s)

* ``audio``: float ``[B, C, N]`` at the model's sample rate (44.1 kHz), any channel count, or
  ``None`` for "no audio prompt" (then ``batch_size``, default 1, gives B).  NaN/inf, a wrong rank,
  an empty batch or too few samples raise :class:`~audiox_core.errors.InputError`.
* ``generator``: every random draw (span masking, VAE posterior noise) comes from it, on the
  generator's device (global RNG of the parameters' device when ``None``), in the official
  order: masking ``rand(B)``, then one ``randint`` per item, then the VAE's ``randn``.  The draws
  happen even where they cannot change the result (masking silence, skipping the VAE for an
  empty v1 prompt), so a shared generator stays in step with the official RNG stream.
* ``mask``: ``None`` = official behaviour (span masking when the config's
  ``mask_ratio_start < mask_ratio_end``, also at inference); ``False`` = never mask (a user
  option the official code does not have); ``True`` = mask (requires a masking config).
* ``callback(step, total, info)``: progress of the VAE encode (v1/v2; ignored by mel).
* Output dtype/device: those of the projection weights.  The conditioner's own VAE
  (``pretransform``) may be kept in fp32 while the projections are bf16.

The official code passes a list of ``[1, C, N]`` tensors; here a batch tensor is given directly.
Prompt length: the official pipelines cut/left-pad the prompt to 10 s (``load_and_process_audio``)
before the conditioner; callers wanting bit parity should do the same (left padding included).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from ..config import VAEConfig
from ..errors import ConfigError, InputError
from ..finite import all_finite
from ..media.spectrogram import hz_to_mel, mel_to_hz
from ..models.vae import Pretransform
from ..progress import ProgressCallback

logger = logging.getLogger(__name__)

__all__ = ["AudioPromptV1", "AudioPromptV2", "AudioPromptMel", "AUDIO_PROMPT_CONDITIONERS",
           "draw_spans", "span_mask_", "log_mel_spectrogram", "htk_mel_filterbank"]

PROMPT_SECONDS = 10  # every official pipeline feeds a 10 s prompt (zeros when there is none)


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def _draw_device(generator: Optional[torch.Generator], fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def draw_spans(batch: int, n: int, ratio_start: float, ratio_end: float, *,
               generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None) -> list:
    """Random spans of the official ``mask_audio`` / ``mask_mel_spectrogram``, as ``[(begin, length)]``.

    ``r = rand(B) * (end - start) + start`` (float32), ``length_i = int(n * r_i)`` (product in float32,
    as the official), ``begin_i = randint(0, n - length_i + 1)``; drawn in that order (all B ratios,
    then one randint per item) on ``device`` (default: the generator's, else CPU).
    """
    dev = device if device is not None else _draw_device(generator, torch.device("cpu"))
    ratios = torch.rand(batch, generator=generator, device=dev) * (ratio_end - ratio_start) + ratio_start
    spans = []
    for i in range(batch):
        length = int(n * ratios[i])
        begin = int(torch.randint(0, n - length + 1, (1,), generator=generator, device=dev))
        spans.append((begin, length))
    return spans


def span_mask_(x: Tensor, spans: list) -> Tensor:
    """Zero ``x[i, ..., begin:begin + length]`` for each item's span, in place."""
    for i, (begin, length) in enumerate(spans):
        if length > 0:
            x[i, ..., begin:begin + length] = 0
    return x


def _validate(audio: Tensor, who: str) -> Tensor:
    if not isinstance(audio, Tensor):
        raise InputError(f"{who}: audio must be a tensor [B, C, N] or None, got {type(audio).__name__}")
    if audio.dim() != 3:
        raise InputError(f"{who}: audio must be [B, C, N] (batch, channels, samples), got shape {tuple(audio.shape)}"
                         + (" (add a batch axis with .unsqueeze(0))" if audio.dim() == 2 else ""))
    if audio.shape[0] == 0 or audio.shape[1] == 0 or audio.shape[2] == 0:
        raise InputError(f"{who}: audio has an empty axis, shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise InputError(f"{who}: audio must be floating point (-1..1), got {audio.dtype}")
    if not all_finite(audio):
        raise InputError(f"{who}: audio contains NaN or infinite samples")
    return audio


def _batch(audio: Optional[Tensor], batch_size: Optional[int], who: str) -> int:
    if audio is None:
        b = 1 if batch_size is None else int(batch_size)
        if b < 1:
            raise InputError(f"{who}: batch_size must be >= 1, got {batch_size}")
        return b
    if batch_size is not None and int(batch_size) != audio.shape[0]:
        raise InputError(f"{who}: batch_size={batch_size} but the audio batch has {audio.shape[0]} items")
    return audio.shape[0]


def _to_stereo(x: Tensor) -> Tensor:
    """Official ``set_audio_channels(x, 2)``: mono is duplicated, >2 channels keep the first two."""
    if x.shape[1] == 1:
        return x.repeat(1, 2, 1)
    if x.shape[1] > 2:
        logger.info("audio prompt has %d channels: using the first two (official behaviour)", x.shape[1])
        return x[:, :2]
    return x


def _mask_flag(mask: Optional[bool], start: float, end: float, who: str) -> bool:
    configured = start < end
    if mask is None:
        return configured
    if mask and not configured:
        raise InputError(f"{who}: mask=True but this model's config has no span masking "
                         f"(mask_ratio_start={start}, mask_ratio_end={end})")
    return bool(mask)


def _canonical_samples(sample_rate: int, latents: int, ratio: int) -> int:
    """Prompt length fed when the input length does not give ``latents`` frames: the official
    10 s (441000 samples at 44.1 kHz) when that yields ``latents`` frames, else ``latents * ratio``."""
    n10 = int(sample_rate) * PROMPT_SECONDS
    return n10 if n10 // ratio == latents else latents * ratio


def _fit_length(x: Tensor, latents: int, ratio: int, target: int, who: str) -> Tensor:
    """Keep ``x`` if it encodes to exactly ``latents`` frames; else crop / right-pad to ``target``."""
    n = x.shape[-1]
    if n // ratio == latents:
        return x
    if n > target:
        logger.info("%s: prompt of %d samples cropped to the first %d", who, n, target)
        return x[..., :target]
    logger.info("%s: prompt of %d samples right-padded with silence to %d", who, n, target)
    return torch.nn.functional.pad(x, (0, target - n))


def _vae_config(spec_config: dict, who: str) -> VAEConfig:
    pc = spec_config.get("pretransform_config")
    if not pc:
        raise ConfigError(f"{who}: the conditioner config has no 'pretransform_config' (its own VAE)")
    return VAEConfig.from_pretransform(pc)


# ----------------------------------------------------------------------------------------------
# v1: VAE latents + learned empty feature (AudioX)
# ----------------------------------------------------------------------------------------------
class AudioPromptV1(nn.Module):
    """AudioX ``audio_autoencoder``: 215 VAE latents projected to 768, learned empty feature.

    ``tokens = proj_out(VAE.encode(stereo(audio)).permute(0, 2, 1))`` -> ``[B, 215, 768]``; items whose
    raw input is all zeros (checked before any channel/length change) are replaced by
    ``empty_audio_feat`` ``[1, 215, 768]``.  The VAE samples its posterior (stochastic).
    Prompt length: inputs of 440320..442367 samples (215 frames) are used as given; anything else
    is cropped / right-padded to 441000 (10 s).  ``audio=None`` (or an all-zero batch) gives the
    empty feature without running the VAE; the posterior noise is still drawn.

    Keys: ``empty_audio_feat``, ``proj_out.{weight,bias}``, ``pretransform.model.{encoder,decoder}.*``.
    """

    kind = "audio_autoencoder_v1"
    num_latents = 215  # hard-coded in the official class (the empty feature's length)

    def __init__(self, spec_config: dict, output_dim: int = 768):
        super().__init__()
        vcfg = _vae_config(spec_config, "audio_prompt (audio_autoencoder)")
        self.sample_rate = int(spec_config.get("sample_rate", 44100))
        self.empty_audio_feat = nn.Parameter(torch.zeros(1, self.num_latents, output_dim))
        self.proj_out = nn.Linear(vcfg.latent_dim, output_dim)
        self.pretransform = Pretransform(vcfg)
        self.output_dim = int(output_dim)
        self.prompt_samples = _canonical_samples(self.sample_rate, self.num_latents, vcfg.downsampling_ratio)

    def num_tokens(self, num_samples: Optional[int] = None) -> int:
        return self.num_latents

    def forward(self, audio: Optional[Tensor], *, batch_size: Optional[int] = None,
                generator: Optional[torch.Generator] = None, mask: Optional[bool] = None,
                callback: Optional[ProgressCallback] = None) -> Tensor:
        who = "audio_prompt (AudioX v1)"
        if mask:
            raise InputError(f"{who}: this conditioner has no span masking")
        b = _batch(audio, batch_size, who)
        pt, dtype, dev = self.pretransform, self.proj_out.weight.dtype, self.proj_out.weight.device
        empty = self.empty_audio_feat.to(dtype).expand(b, -1, -1)
        lat_shape = (b, pt.latent_dim, self.num_latents)
        if audio is None:
            is_zero = None
        else:
            x = _validate(audio, who)
            is_zero = (x == 0).flatten(1).all(dim=1)
            if bool(is_zero.all()):
                is_zero = None
        if is_zero is None:  # nothing to encode: same result as the official, without the VAE
            torch.randn(lat_shape, generator=generator, device=_draw_device(generator, pt.param_device),
                        dtype=pt.param_dtype)
            return empty.clone()
        x = _fit_length(_to_stereo(x), self.num_latents, pt.downsampling_ratio, self.prompt_samples, who)
        z = pt.encode(x, generator=generator, callback=callback)
        tokens = self.proj_out(z.to(device=dev, dtype=dtype).permute(0, 2, 1))
        return torch.where(is_zero.to(dev).view(b, 1, 1), empty, tokens)


# ----------------------------------------------------------------------------------------------
# v2: VAE latents, time projection to 128 tokens (AudioX-MAF-MMDiT, AudioX-Turbo)
# ----------------------------------------------------------------------------------------------
class AudioPromptV2(nn.Module):
    """AudioX ``audio_autoencoder_v2`` == Turbo ``audio_autoencoder``: 128 tokens of 768.

    ``stereo -> [span masking] -> VAE.encode (sampled) [B, 64, L] -> proj_features_128 (Linear L->128
    over time) -> permute [B, 128, 64] -> proj_out (Linear 64->768)``.  ``L = latent_seq_len`` from the
    config (Turbo 215, MAF-MMDiT 237 by the manifest).  No empty feature: a missing prompt is
    10 s of silence encoded by the VAE (the official gradio/README feed zeros).

    Masking (config ``mask_ratio_start/end``, Turbo 0.25/0.75, default 0/0 = off): one random span
    of ``int(N * U(start, end))`` waveform samples per item is zeroed before encoding (also at
    inference in the official code).

    Prompt length: inputs giving exactly L frames are used as given (e.g. 441000 samples for
    L=215, as the official feeds); anything else is cropped / right-padded to 441000 if that gives
    L frames, else to ``L * 2048`` (485376 for L=237; the official code fails there).

    Silence cache: the VAE moments (mean, std) of silence are cached per (device, dtype, length,
    VAE weights), so repeated prompt-less calls skip the VAE encoder; the posterior noise is still
    drawn and applied, so the result equals the uncached path bit for bit.  Disable with
    ``use_silence_cache = False``.

    Keys: ``proj_out.{weight,bias}``, ``pretransform.model.{encoder,decoder}.*``,
    ``proj_features_128.{weight,bias}``.  ``pretransform_ckpt_path`` is not read here: the loader
    fills ``pretransform`` from the checkpoint (or the separate VAE file).
    """

    kind = "audio_autoencoder_v2"

    def __init__(self, spec_config: dict, output_dim: int = 768):
        super().__init__()
        who = "audio_prompt (audio_autoencoder_v2)"
        vcfg = _vae_config(spec_config, who)
        self.sample_rate = int(spec_config.get("sample_rate", 44100))
        self.latent_seq_len = int(spec_config.get("latent_seq_len", 237))
        self.mask_ratio_start = float(spec_config.get("mask_ratio_start", 0.0))
        self.mask_ratio_end = float(spec_config.get("mask_ratio_end", 0.0))
        self.proj_out = nn.Linear(vcfg.latent_dim, output_dim)
        self.pretransform = Pretransform(vcfg)
        self.proj_features_128 = nn.Linear(self.latent_seq_len, 128)
        self.output_dim = int(output_dim)
        self.prompt_samples = _canonical_samples(self.sample_rate, self.latent_seq_len, vcfg.downsampling_ratio)
        self.use_silence_cache = True
        self._silence: Dict[tuple, Tuple[Tensor, Tensor]] = {}

    def num_tokens(self, num_samples: Optional[int] = None) -> int:
        return 128

    def clear_cache(self) -> None:
        self._silence.clear()

    def _apply(self, fn, recurse=True):
        self._silence.clear()
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._silence.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def _silence_moments(self, n: int) -> Tuple[Tensor, Tensor]:
        """VAE posterior (mean, std) ``[1, 64, L]`` of ``n`` samples of stereo silence (cached)."""
        pt = self.pretransform
        try:
            token = tuple((p.data_ptr(), p._version) for p in pt.model.encoder.parameters())
        except RuntimeError:  # inference tensors have no version counter: do not cache
            token = None
        key = (pt.param_device, pt.param_dtype, n, token)
        if token is not None and self.use_silence_cache and key in self._silence:
            return self._silence[key]
        with torch.no_grad():
            silence = torch.zeros(1, pt.io_channels, n, device=pt.param_device, dtype=pt.param_dtype)
            mean, std = pt.encode_moments(silence)
        if token is not None and self.use_silence_cache:
            self._silence.clear()  # one entry is all a generation needs
            self._silence[key] = (mean, std)
        return mean, std

    def forward(self, audio: Optional[Tensor], *, batch_size: Optional[int] = None,
                generator: Optional[torch.Generator] = None, mask: Optional[bool] = None,
                callback: Optional[ProgressCallback] = None) -> Tensor:
        who = "audio_prompt (v2)"
        b = _batch(audio, batch_size, who)
        pt, dtype, dev = self.pretransform, self.proj_out.weight.dtype, self.proj_out.weight.device
        do_mask = _mask_flag(mask, self.mask_ratio_start, self.mask_ratio_end, who)
        draw_dev = _draw_device(generator, pt.param_device)
        if audio is None:
            x, silent = None, True
            n = self.prompt_samples
        else:
            x = _validate(audio, who)
            x = _fit_length(_to_stereo(x), self.latent_seq_len, pt.downsampling_ratio, self.prompt_samples, who)
            x = x.to(device=pt.param_device, dtype=pt.param_dtype)
            n, silent = x.shape[-1], not bool(x.any())
        if silent:
            if do_mask:  # masking silence changes nothing, but the draws keep the RNG in step
                draw_spans(b, n, self.mask_ratio_start, self.mask_ratio_end, generator=generator, device=draw_dev)
            mean, std = self._silence_moments(n)
            mean, std = mean.expand(b, -1, -1), std.expand(b, -1, -1)
            z = pt.sample_latents(mean, std, generator=generator)
        else:
            if do_mask:
                spans = draw_spans(b, n, self.mask_ratio_start, self.mask_ratio_end, generator=generator,
                                   device=draw_dev)
                x = span_mask_(x.clone(), spans)
            z = pt.encode(x, generator=generator, callback=callback)
        if z.shape[-1] != self.latent_seq_len:  # cannot happen after _fit_length; guards config edits
            raise InputError(f"{who}: the prompt encodes to {z.shape[-1]} latent frames, the model needs "
                             f"{self.latent_seq_len}")
        h = self.proj_features_128(z.to(device=dev, dtype=dtype))  # [B, 64, 128]
        return self.proj_out(h.permute(0, 2, 1))


# ----------------------------------------------------------------------------------------------
# mel: log-mel frames projected to 768 (AudioX-MAF)
# ----------------------------------------------------------------------------------------------
def htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                       f_max: Optional[float] = None) -> Tensor:
    """Triangular HTK-mel filterbank ``[n_freqs, n_mels]`` without area normalisation, float32.

    Same float32 op sequence as torchaudio ``melscale_fbanks(norm=None, mel_scale="htk")``:
    ``mel(f) = 2595 log10(1 + f / 700)`` (:func:`audiox_core.media.spectrogram.hz_to_mel`); ``n_mels + 2`` points equally spaced in mel between
    ``f_min`` and ``f_max`` (default ``sample_rate // 2``); filter ``m`` rises linearly from point
    ``m`` to ``m+1`` and falls to ``m+2``; STFT bins at ``linspace(0, sample_rate // 2, n_freqs)``.
    """
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(hz_to_mel(float(f_min)), hz_to_mel(f_max), n_mels + 2)
    f_pts = mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


def log_mel_spectrogram(wave: Tensor, fbank: Tensor, window: Tensor, n_fft: int, hop_length: int,
                        win_length: int) -> Tensor:
    """``log(clamp(|STFT| @ fbank, 1e-5))`` of ``wave`` ``[B, N]`` -> ``[B, n_mels, N // hop + 1]``.

    Magnitude (power 1) STFT with ``center=True`` (reflect padding of ``n_fft // 2``), periodic Hann
    window of ``win_length``, no normalisation: torchaudio ``MelSpectrogram(power=1, norm=None,
    mel_scale="htk")`` followed by the official ``clamp(min=1e-5).log()``.
    """
    spec = torch.stft(wave, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=True,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True).abs()
    mel = torch.matmul(spec.transpose(-1, -2), fbank).transpose(-1, -2)
    return mel.clamp(min=1e-5).log()


class AudioPromptMel(nn.Module):
    """AudioX-MAF ``mel_spec``: log-mel frames -> ``proj_features`` (Linear n_mels->D) -> ``[B, F, D]``.

    ``D = output_dim``: the official class hard-codes 768, which is the ``cond_dim`` of every
    released model; tiny test models use their own ``cond_dim``.

    ``wave = mean over all channels`` (float32, NO resampling: the official code feeds 44.1 kHz
    audio to a mel front end configured for ``target_sample_rate`` 24 kHz, and the weights were
    trained that way); ``mel = log(clamp(MelSpectrogram(...), 1e-5))`` ``[B, n_mels, F]`` with
    ``F = N // hop + 1`` (1723 for 441000 samples); random span masking of ``int(F * U(start, end))``
    frames set to 0.0 (config defaults 0.7/1.0: on, also at inference); transpose; proj_features.
    The official ``proj_out`` is never applied (Identity for the released config).

    Any prompt length of at least ``n_fft // 2 + 1`` samples works (the token count follows it);
    ``audio=None`` means 10 s of silence (441000 samples, as the official gradio feeds), computed
    without an STFT.  Keys: ``proj_features.{weight,bias}`` only.
    """

    kind = "mel_spec"

    def __init__(self, spec_config: dict, output_dim: int = 768):
        super().__init__()
        who = "audio_prompt (mel_spec)"
        c = spec_config
        mel_type = c.get("mel_spec_type", "mel_features")
        if mel_type != "mel_features":
            raise ConfigError(f"{who}: mel_spec_type {mel_type!r} is not supported (the official code only "
                              "implements 'mel_features')")
        if c.get("project_out", False):
            raise ConfigError(f"{who}: project_out is not supported (the official mel conditioner's proj_out "
                              "is never applied)")
        self.n_fft = int(c.get("n_fft", 1024))
        self.hop_length = int(c.get("hop_length", 256))
        self.win_length = int(c.get("win_length", 1024))
        self.n_mel_channels = int(c.get("n_mel_channels", 100))
        self.target_sample_rate = int(c.get("target_sample_rate", 24000))
        self.mask_ratio_start = float(c.get("mask_ratio_start", 0.7))
        self.mask_ratio_end = float(c.get("mask_ratio_end", 1.0))
        self.sample_rate = int(c.get("sample_rate", 44100))
        self.prompt_samples = self.sample_rate * PROMPT_SECONDS
        # The official width is 768 (= cond_dim of every released model); small models use cond_dim.
        self.output_dim = int(output_dim)
        self.proj_features = nn.Linear(self.n_mel_channels, self.output_dim)
        self._consts: Dict[torch.device, Tuple[Tensor, Tensor]] = {}

    def num_tokens(self, num_samples: Optional[int] = None) -> int:
        n = self.prompt_samples if num_samples is None else int(num_samples)
        return n // self.hop_length + 1

    def _apply(self, fn, recurse=True):
        self._consts.clear()
        return super()._apply(fn, recurse)

    def _constants(self, device: torch.device) -> Tuple[Tensor, Tensor]:
        if device not in self._consts:
            fb = htk_mel_filterbank(self.n_fft // 2 + 1, self.n_mel_channels, self.target_sample_rate)
            win = torch.hann_window(self.win_length, periodic=True)
            self._consts[device] = (fb.to(device), win.to(device))
        return self._consts[device]

    def mel(self, audio: Tensor) -> Tensor:
        """Log-mel ``[B, n_mels, F]`` (float32) of ``[B, C, N]`` audio, before masking."""
        x = _validate(audio, "audio_prompt (mel_spec)")
        if x.shape[-1] <= self.n_fft // 2:
            raise InputError(f"audio_prompt (mel_spec): the prompt has {x.shape[-1]} samples; at least "
                             f"{self.n_fft // 2 + 1} are needed")
        wave = x.to(torch.float32).mean(dim=1)  # official: .float(), then mean over channels
        fb, win = self._constants(wave.device)
        return log_mel_spectrogram(wave, fb, win, self.n_fft, self.hop_length, self.win_length)

    def forward(self, audio: Optional[Tensor], *, batch_size: Optional[int] = None,
                generator: Optional[torch.Generator] = None, mask: Optional[bool] = None,
                callback: Optional[ProgressCallback] = None) -> Tensor:
        who = "audio_prompt (mel_spec)"
        b = _batch(audio, batch_size, who)
        dtype, dev = self.proj_features.weight.dtype, self.proj_features.weight.device
        if audio is None:  # |STFT(0)| = 0 exactly -> log(1e-5) everywhere (same memory layout as mel())
            mels = torch.full((b, self.num_tokens(), self.n_mel_channels), 1e-5, device=dev).log().transpose(1, 2)
        else:
            mels = self.mel(_validate(audio, who).to(dev))
        if _mask_flag(mask, self.mask_ratio_start, self.mask_ratio_end, who):
            spans = draw_spans(b, mels.shape[-1], self.mask_ratio_start, self.mask_ratio_end, generator=generator,
                               device=_draw_device(generator, dev))
            span_mask_(mels, spans)
        return self.proj_features(mels.transpose(1, 2).to(dtype))


AUDIO_PROMPT_CONDITIONERS: Dict[str, Type[nn.Module]] = {
    AudioPromptV1.kind: AudioPromptV1,
    AudioPromptV2.kind: AudioPromptV2,
    AudioPromptMel.kind: AudioPromptMel,
}
