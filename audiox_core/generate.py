"""Generation's building blocks: sample latents from a fused context, encode and decode audio.

Each is usable on its own; the tasks built on them (every request of the API, the CLI and the
sampler nodes) are planned and run by :mod:`audiox_core.task`.

* :func:`sample` — latents from a context with the Base sampler (v-objective k-diffusion
  samplers or rectified-flow Euler/Heun, CFG with the official zero-context unconditional branch,
  cfg rescale, negative conditioning) or the Turbo sampler (denoise/renoise, no CFG); masked
  sampling for inpainting/completion, variation from an init latent with a strength.
* :func:`decode` / :func:`encode` — the VAE, chunked for long audio; :func:`keep_original_audio`
  restores the kept audio after an inpainting / completion decode.
* :func:`keep_mask_from_ranges` / :func:`waveform_keep` — which latent frames (samples) to keep.

Reproducibility: by default (``SamplerSettings.noise = "cpu"``) all randomness comes from
``torch.Generator``s on the CPU seeded with ``seed`` (sampling) and ``seed + 1`` (conditioners);
noise is drawn on the CPU then moved, so a seed gives the same result on any device.
``noise = "official"`` instead follows the official app's random streams (see :class:`OfficialRNG`),
so the same seed, inputs and sampler give the official ``generate_diffusion_cond`` /
``generate_diffusion_cond_dmd`` output on the same device.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from . import conditions
from .acceleration import static_turbo_loop
from .errors import FieldError, InputError

log = logging.getLogger(__name__)

#: v-objective samplers: the official ``sample_k`` names first (same defaults), then our extras.
BASE_SAMPLERS_V = ("dpmpp-3m-sde", "dpmpp-2m-sde", "k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2",
                   "k-dpm-fast", "k-dpm-adaptive", "dpmpp-2m", "euler")
BASE_SAMPLERS_RF = ("euler", "heun")
#: ``SamplerSettings.noise``: "cpu" = device-independent CPU generators (default); "official" = the
#: official app's generators and draw order (device-dependent, like the official).
NOISE_MODES = ("cpu", "official")
MAX_SECONDS = 300.0


class OfficialRNG:
    """The random streams of the official app for one seed, as explicit generators.

    The official ``generate_diffusion_cond`` (and Turbo's ``generate_diffusion_cond_dmd``) calls
    ``torch.manual_seed(seed)`` -- which seeds the CPU generator and every accelerator's -- and then
    draws, in this order:

    1. the initial noise ``torch.randn([B, 64, L], device=device)`` (float32, the device's generator),
    2. the conditioners' draws (audio prompt: span-mask ``rand``/``randint``, VAE posterior ``randn``;
       also for an absent prompt, which the app encodes as silence) on the device's generator,
    3. the sampler's draws: the DPM++ SDE samplers' Brownian tree takes its entropy from
       ``torch.randint(0, 2**63 - 1, [])`` on the **CPU** generator (k-diffusion's
       ``BatchedBrownianTree(seed=None)``), the ancestral sampler draws ``randn_like(x)`` per step and
       the Turbo sampler one ``randn_like`` per re-noise, both on the device's generator.

    On a CPU device the two are the same generator (one stream, as the official).  ``torch.
    Generator(device).manual_seed(seed)`` produces the same numbers as the global generator after
    ``torch.manual_seed(seed)``, without touching global state.
    """

    def __init__(self, seed: int, device):
        seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        device = torch.device(device)
        self.seed, self.device = seed, device
        self.cpu = torch.Generator(device="cpu").manual_seed(seed)
        self.on_device = self.cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)

    def initial_noise(self, shape) -> torch.Tensor:
        """Step 1: ``randn(shape)`` in float32 on the device."""
        return torch.randn(tuple(shape), generator=self.on_device, device=self.device, dtype=torch.float32)

    def tree_seed(self) -> int:
        """Step 3 of the DPM++ SDE samplers: the Brownian tree's entropy from the CPU generator."""
        from .sampling import draw_tree_seed
        return draw_tree_seed(self.cpu)


@dataclass
class SamplerSettings:
    """How to sample.  ``mode``: "base" (multi-step, CFG) or "turbo" (distilled student)."""

    mode: str = "base"
    steps: int = 100
    sampler: str = "auto"  # v: BASE_SAMPLERS_V; rf: euler/heun; "auto" = the model's official default
    cfg_scale: float = 7.0
    cfg_rescale: float = 0.0
    sigma_min: float = 0.3
    sigma_max: float = 500.0
    seed: int = 0
    sde_noise: str = "brownian"
    batched_cfg: bool = True
    noise: str = "cpu"  # "cpu" (device-independent) or "official" (the official app's streams)

    @classmethod
    def for_model(cls, model, mode: Optional[str] = None, **kw) -> "SamplerSettings":
        """Official defaults for ``model``: Turbo students 4 steps; v models DPM++ 3M SDE 100 steps
        (gradio) at CFG 7 and σ 0.3–500 (README); rectified-flow base models Euler 100 steps CFG 6."""
        role = getattr(model, "info", {}).get("role", "")
        if mode is None:
            mode = "turbo" if (model.objective == "rectified_flow" and role != "base") else "base"
        if mode == "turbo":
            d = dict(mode="turbo", steps=4, cfg_scale=1.0)
        elif model.objective == "rectified_flow":
            d = dict(mode="base", steps=100, sampler="euler", cfg_scale=6.0)
        else:
            d = dict(mode="base", steps=100, sampler="dpmpp-3m-sde", cfg_scale=7.0)
        d.update(kw)
        return cls(**d)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def _validate(model, s: SamplerSettings) -> str:
    if s.mode not in ("base", "turbo"):
        raise FieldError("mode", f"sampler mode must be 'base' or 'turbo', got {s.mode!r}")
    if s.noise not in NOISE_MODES:
        raise FieldError("noise", f"noise must be one of {NOISE_MODES}, got {s.noise!r}")
    if s.noise == "official" and s.sde_noise != "brownian":
        raise FieldError("noise", "official noise uses the official Brownian-tree noise of the SDE samplers; "
                         f"sde_noise must be 'brownian', got {s.sde_noise!r}")
    if s.mode == "turbo":
        if model.objective != "rectified_flow":
            raise FieldError("mode", f"the Turbo sampler needs a rectified-flow (AudioX-Turbo) model; this is "
                             f"{model.config.variant} (v-objective): use the Base sampler")
        if not 1 <= int(s.steps) <= 8:
            raise FieldError("steps", f"Turbo steps must be 1..8 (4 is what the student was trained for), got "
                             f"{s.steps}")
        return "turbo"
    if int(s.steps) < 1 or int(s.steps) > 1000:
        raise FieldError("steps", f"steps must be 1..1000, got {s.steps}")
    if s.cfg_scale < 0 or s.cfg_scale > 50:
        raise FieldError("cfg_scale", f"cfg must be in 0..50, got {s.cfg_scale}")
    name = s.sampler
    if model.objective == "rectified_flow":
        name = "euler" if name == "auto" else name
        if name not in BASE_SAMPLERS_RF:
            raise FieldError("sampler", f"sampler {name!r} does not apply to rectified-flow models; choose "
                             f"{BASE_SAMPLERS_RF}")
    else:
        name = "dpmpp-3m-sde" if name == "auto" else name
        if name not in BASE_SAMPLERS_V:
            raise FieldError("sampler", f"sampler {name!r} does not apply to v-objective models; choose "
                             f"{BASE_SAMPLERS_V}")
    return name


def check_settings(model, settings: SamplerSettings) -> str:
    """Raise :class:`~.errors.FieldError` (``field``: the setting) if ``settings`` do not fit ``model``;
    returns the sampler name used."""
    return _validate(model, settings)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
@dataclass
class Known:
    """Latents to keep while sampling: ``latents [B|1, C, L]`` and a keep-mask ``[L]`` in 0..1
    (1 = keep the known latents, 0 = generate; soft values blend at seams)."""

    latents: torch.Tensor
    keep: torch.Tensor


def official_conditioner_draws(model, batch: int, generator: torch.Generator) -> None:
    """Make the random draws the official conditioner makes for ``batch`` items (audio-prompt span
    masking and VAE posterior sampling; text and video draw nothing), discarding the result.

    The sampler node uses this in official noise mode: there the conditions were encoded earlier,
    in their own nodes, so the device stream is advanced here to where the official sampler finds
    it.  The number of draws does not depend on the prompt audio (it is fitted to the
    conditioner's window), so an absent prompt stands in for any."""
    if model.config.conditioner("audio_prompt") is not None:
        conditions.encode_audio_prompt(model, None, batch=batch, generator=generator)


def official_start(model, settings: SamplerSettings, shape, conds: Optional["conditions.Conditions"] = None, *,
                   modality_scale=None, device=None):
    """Official noise for sampling from conditions encoded earlier (the node graph):
    ``(rng, initial noise, context or None)``.

    The official app draws the initial noise first and then runs every conditioner.  Text and
    video draw nothing; the audio prompt draws, also when absent (the app encodes silence).  So
    when ``conds`` (the fused context's conditions) has no audio prompt -- none, or only silence --
    the context is fused again here, after the noise, with the absent prompt drawn from the
    official stream: exactly the app's context and draws.  With an audio prompt (encoded elsewhere
    with its own seed) its draws are replayed (:func:`official_conditioner_draws`) so the sampler's
    own draws stay in step, and None is returned: keep the given context."""
    if device is None:
        device = next(model.backbone.parameters()).device
    rng = OfficialRNG(settings.seed, device)
    noise = rng.initial_noise(shape)
    audio = conds.get("audio") if conds is not None else None
    if conds is not None and (audio is None or not any(audio.present)):
        absent_audio = conditions.Conditions(text=conds.get("text"), video=conds.get("video"))
        ctx = conditions.fuse(model, absent_audio, batch=shape[0], modality_scale=modality_scale,
                              generator=rng.on_device)
        return rng, noise, ctx
    official_conditioner_draws(model, shape[0], rng.on_device)
    return rng, noise, None


def check_official(settings: SamplerSettings, **refused) -> None:
    """Raise :class:`InputError` naming the first ``refused`` task that is given (truthy) when
    ``settings`` ask for official noise: the official app only generates from noise."""
    if settings.noise != "official":
        return
    for what, given in refused.items():
        if given:
            raise InputError(f"official noise reproduces the official app's generation from noise, which has no "
                             f"{what.replace('_', ' ')}; use noise 'cpu' for it")


def _static_turbo(loop, noise: torch.Tensor, context: torch.Tensor, steps: int, generator, callback) -> torch.Tensor:
    """The Turbo sampler as one compiled loop: the re-noise draws made up front (the same numbers),
    progress reported for every step once the loop has returned."""
    from .sampling import turbo_noises, turbo_timesteps
    from .sampling._common import notify
    estimates = loop(noise, turbo_noises(noise, steps, generator), context)
    ts = turbo_timesteps(steps)
    for i in range(steps):
        notify(callback, i + 1, steps, {"stage": "sampling", "t": float(ts[i]), "t_next": float(ts[i + 1]),
                                        "denoised": estimates[i], "x": estimates[i]})
    return estimates[-1].float().cpu()


def sample(model, context: torch.Tensor, settings: SamplerSettings, *, batch: Optional[int] = None,
           length: Optional[int] = None, negative: Optional[torch.Tensor] = None,
           init: Optional[torch.Tensor] = None, strength: float = 1.0, known: Optional[Known] = None,
           callback=None, noise: Optional[torch.Tensor] = None, rng: Optional[OfficialRNG] = None,
           replay_conditioner_draws: bool = False) -> torch.Tensor:
    """Latents ``[B, C, L]`` (float32, CPU) from a fused ``context`` ``[B, N, D]``.

    ``negative``: the unconditional context for CFG (default: zeros, the official); ``init`` +
    ``strength``: variation; ``known``: keep latents (inpainting/completion); ``noise``: inject the
    initial noise (else drawn from ``settings.seed``).

    Official noise (``settings.noise == "official"``): ``rng`` carries the streams when the caller
    already drew the initial noise and ran the conditioners from them (:func:`generate` does);
    without it they start here from ``settings.seed``: the initial noise is drawn first, then, with
    ``replay_conditioner_draws``, the conditioners' draws are replayed
    (:func:`official_conditioner_draws`), then the sampler draws.
    """
    from .sampling import (STOCHASTIC_K_SAMPLERS, ClassifierFreeGuidance, LatentInpainter, sample_rectified_flow,
                           sample_turbo, sample_v_objective)

    name = _validate(model, settings)
    check_official(settings, variation_start=init is not None and strength < 1,
                    inpainting_or_completion=known is not None, negative_prompt=negative is not None)
    bb = model.backbone
    p = next(bb.parameters())
    dev = p.device
    b = batch or context.shape[0]
    if context.shape[0] != b:
        if context.shape[0] != 1:
            raise InputError(f"context batch {context.shape[0]} does not match batch {b}")
        context = context.expand(b, -1, -1)
    L = length or model.latent_length
    if model.fixed_length and L != model.latent_length:
        raise InputError(f"{model.config.variant} generates exactly {model.latent_length} latent frames "
                         f"({model.latent_length / frames_per_second(model):.2f} s); "
                         f"got a request for {L}")
    shape = (b, model.config.io_channels, L)
    if noise is not None and tuple(noise.shape) != shape:
        raise InputError(f"noise must be {shape}, got {tuple(noise.shape)}")
    if settings.noise == "official":
        if rng is None:
            rng = OfficialRNG(settings.seed, dev)
            noise = rng.initial_noise(shape) if noise is None else noise
            if replay_conditioner_draws:
                official_conditioner_draws(model, b, rng.on_device)
        elif noise is None:
            raise InputError("official noise with a given rng needs the initial noise drawn from it first")
        gen = rng.on_device
    else:
        gen = _generator(settings.seed)
        if noise is None:
            noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    noise = noise.to(dev)
    context = context.to(dev)

    def model_fn(x, t, cache):
        return bb(x, t, cond_cache=cache)

    inpainter = None
    if known is not None:
        keep = known.keep.to(dev, torch.float32).reshape(1, 1, -1)
        if keep.shape[-1] != L:
            raise InputError(f"keep mask has {keep.shape[-1]} frames, latents have {L}")
        lat = known.latents.to(dev, torch.float32)
        if lat.shape[-1] != L:
            raise InputError(f"known latents have {lat.shape[-1]} frames, expected {L}")
        objective = "rf" if model.objective == "rectified_flow" else "v"
        inpainter = LatentInpainter(lat.expand(b, -1, -1), keep, objective, noise=noise)
    if init is not None:
        init = init.to(dev, torch.float32).expand(b, -1, -1)

    if name == "turbo":
        vel = ClassifierFreeGuidance(model_fn, context, None, scale=1.0, prepare=bb.prepare)
        if init is not None and strength < 1:
            raise InputError("the Turbo sampler has no variation start; use the Base sampler for variations")
        loop = static_turbo_loop(model, int(settings.steps)) if inpainter is None else None
        if loop is not None:  # one compiled graph for all steps (acceleration.set_static_turbo_loop)
            return _static_turbo(loop, noise, context, int(settings.steps), gen, callback)
        out = sample_turbo(vel, noise, steps=int(settings.steps), generator=gen, callback=callback,
                           after_step=inpainter)
        if inpainter is not None:
            out = inpainter.paste(out)
        return out.float().cpu()

    uncond = torch.zeros_like(context) if negative is None else negative.to(dev, context.dtype).expand_as(context)
    vel = ClassifierFreeGuidance(model_fn, context, uncond, scale=float(settings.cfg_scale),
                                 rescale_phi=float(settings.cfg_rescale), batched=settings.batched_cfg,
                                 prepare=bb.prepare)
    if model.objective == "rectified_flow":
        out = sample_rectified_flow(vel, noise, steps=int(settings.steps), sampler=name, init=init,
                                    strength=strength, inpainter=inpainter, callback=callback)
    else:
        tree_seed = rng.tree_seed() if rng is not None and name in STOCHASTIC_K_SAMPLERS else None
        out = sample_v_objective(vel, noise, steps=int(settings.steps), sampler=name,
                                 sigma_min=settings.sigma_min, sigma_max=settings.sigma_max,
                                 sde_noise=settings.sde_noise, generator=gen, brownian_seed=tree_seed, init=init,
                                 strength=strength, inpainter=inpainter, callback=callback)
    return out.float().cpu()


# ----------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------
CHUNK_THRESHOLD = 1024  # latent frames (~47 s at 44.1 kHz) above which decoding is chunked


def decode(model, latents: torch.Tensor, *, chunked: Optional[bool] = None, callback=None) -> torch.Tensor:
    """Audio ``[B, C, L·ratio]`` (float32, CPU) from latents; chunked automatically when long."""
    pt = model.pretransform
    p = next(pt.parameters())
    if chunked is None:
        chunked = latents.shape[-1] > CHUNK_THRESHOLD
    with torch.no_grad():
        out = pt.decode(latents.to(p.device, p.dtype), chunked=chunked, callback=callback)
    return out.float().cpu()


def encode(model, audio: torch.Tensor, sample_rate: int, *, generator=None, sample: bool = True,
           chunked: Optional[bool] = None, callback=None) -> tuple[torch.Tensor, str]:
    """Latents of any audio (resampled and channel-matched to the model first)."""
    x, report = conditions.prepare_audio(model, audio, sample_rate)
    pt = model.pretransform
    p = next(pt.parameters())
    ratio = model.config.vae.downsampling_ratio
    if x.shape[-1] < ratio:
        raise InputError(f"audio is shorter than one latent frame ({ratio} samples)")
    if chunked is None:
        chunked = x.shape[-1] // ratio > CHUNK_THRESHOLD
    with torch.no_grad():
        z = pt.encode(x.to(p.device, p.dtype), sample=sample, generator=generator, chunked=chunked,
                      callback=callback)
    return z.float().cpu(), report


def check_encode_length(model, n_samples: int, sample_rate: int, *, field: str = "audio",
                        user: str = "encoding") -> None:
    """Refuse (:class:`FieldError` about ``field``) audio of ``n_samples`` at ``sample_rate`` that
    :func:`encode` should not take: longer than :data:`MAX_SECONDS`, or shorter than one latent
    frame at the model's rate.  ``user`` names what takes the audio in the message."""
    seconds = n_samples / sample_rate
    if seconds > MAX_SECONDS:
        raise FieldError(field, f"is {seconds:.1f} s long; {user} takes at most {MAX_SECONDS:g} s (the longest "
                                "clip AudioX generates) — trim it first")
    rate, ratio = model.config.sample_rate, model.config.vae.downsampling_ratio
    if n_samples * rate / sample_rate < ratio:
        raise FieldError(field, f"is shorter than one latent frame ({ratio} samples at {rate} Hz)")


def checked_latents(value, latent_dim: int, *, field: str = "samples") -> torch.Tensor:
    """The ``[B, C, L]`` latents of a LATENT value (``{"samples": tensor, ...}``) with the ``latent_dim``
    channels a VAE decodes, else a :class:`FieldError` about ``field``."""
    if not isinstance(value, dict) or not torch.is_tensor(value.get("samples")):
        raise FieldError(field, f"needs a LATENT, got {type(value).__name__}")
    latents = value["samples"]
    if latents.dim() != 3:
        raise FieldError(field, f"has shape {tuple(latents.shape)}; audio latents are [B, C, L]")
    if latents.shape[1] != latent_dim:
        raise FieldError(field, f"has {latents.shape[1]} channels but this VAE decodes {latent_dim}: use the VAE "
                                "of the model that made them")
    return latents


def keep_original_audio(audio: torch.Tensor, sample_rate: int, original: torch.Tensor, original_rate: int,
                        keep: torch.Tensor, latent_samples: int) -> torch.Tensor:
    """Decoded ``audio`` ``[B, C, T]`` with the ``original`` restored where the latent keep-mask
    ``keep`` keeps it (inpainting / completion): the original is resampled and channel-matched to
    ``audio``, the mask stretched to ``latent_samples`` audio samples (latent frames × the VAE's
    ratio), and the two blended across the seams; past the shorter of the two, ``audio`` as is."""
    from .media import conform_audio
    original, _ = conform_audio(original.float(), original_rate, target_sr=sample_rate, channels=audio.shape[1])
    n = min(audio.shape[-1], original.shape[-1])
    keep_samples = waveform_keep(keep, latent_samples)[:n]
    out = audio.clone()
    out[..., :n] = (keep_samples * original[..., :n].expand(audio.shape[0], -1, -1)
                    + (1 - keep_samples) * audio[..., :n])
    return out


class VAEOnly:
    """A standalone VAE seen through the model interface :func:`encode` / :func:`decode` use.

    ``VAEOnly(pretransform, sample_rate)`` (e.g. from :func:`audiox_core.checkpoint.load_vae`)
    exposes ``.pretransform`` and a ``.config`` with ``sample_rate``, ``audio_channels`` and
    ``vae.downsampling_ratio``, so a VAE file can encode/decode without a diffusion model.  The
    Oobleck files do not store their sample rate: it is given here (44100 for the released VAEs).
    """

    def __init__(self, pretransform, sample_rate: int):
        from types import SimpleNamespace
        if int(sample_rate) <= 0:
            raise InputError(f"sample_rate must be positive, got {sample_rate}")
        self.pretransform = pretransform
        self.config = SimpleNamespace(sample_rate=int(sample_rate), audio_channels=int(pretransform.io_channels),
                                      vae=SimpleNamespace(downsampling_ratio=int(pretransform.downsampling_ratio)))


# ----------------------------------------------------------------------------------------------
# Masks in time
# ----------------------------------------------------------------------------------------------
def frames_per_second(model) -> float:
    return model.config.sample_rate / model.config.vae.downsampling_ratio


def keep_mask_from_ranges(model, length: int, regenerate: Sequence[Sequence[float]], *,
                          ramp_seconds: float = 0.1) -> torch.Tensor:
    """Latent keep-mask ``[L]``: 0 inside each regenerate range (seconds), 1 outside, Hann ramps
    of ``ramp_seconds`` inside the ranges' edges so the seams blend."""
    from .sampling import regenerate_mask
    fps = frames_per_second(model)
    total = length / fps
    frames = []
    for r in regenerate:
        if len(r) != 2:
            raise InputError(f"a time range needs (start, end) seconds, got {r!r}")
        a, b = float(r[0]), float(r[1])
        if not (0 <= a < b) or a >= total:
            raise InputError(f"range {a:g}–{b:g} s is empty or outside the clip (0–{total:.2f} s)")
        b = min(b, total)
        frames.append((int(math.floor(a * fps)), int(math.ceil(b * fps))))
    ramp = max(0, int(round(ramp_seconds * fps)))
    m = regenerate_mask(length, frames, ramp_left=ramp, ramp_right=ramp)
    return m.reshape(-1).float()


def waveform_keep(keep: torch.Tensor, n: int) -> torch.Tensor:
    """A latent keep-mask ``[L]`` stretched to ``n`` audio samples (linear interpolation)."""
    k = keep.reshape(1, 1, -1).float()
    return torch.nn.functional.interpolate(k, size=n, mode="linear", align_corners=False).reshape(-1)


def regenerated_seconds(keep: Optional[torch.Tensor], seconds_per_frame: float, seconds: float) -> list[list[float]]:
    """The inverse of :func:`keep_mask_from_ranges` for display: ranges ``[[a, b], ...]`` (seconds,
    rounded to 0.1 ms, clipped to the clip's ``seconds``) where the latent keep-mask ``keep`` (1 keep …
    0 regenerate per latent frame) is below 1, adjacent frames merged; [] without a mask."""
    if keep is None:
        return []
    ranges: list[list[float]] = []
    for index, value in enumerate(keep.detach().float().reshape(-1).tolist()):
        if value >= 1.0 - 1e-6:
            continue
        start, end = index * seconds_per_frame, min((index + 1) * seconds_per_frame, seconds)
        if start >= seconds:
            break
        if ranges and abs(ranges[-1][1] - start) < 1e-9:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
    return [[round(start, 4), round(end, 4)] for start, end in ranges]
