"""Generation: sample latents from a fused context, decode them, and every task built on that.

Layers (each usable on its own, the ComfyUI nodes call them one by one):

* :func:`sample` — latents from a context with the Base sampler (v-objective k-diffusion
  samplers or rectified-flow Euler/Heun, CFG with the official zero-context unconditional branch,
  cfg rescale, negative conditioning) or the Turbo sampler (denoise/renoise, no CFG); masked
  sampling for inpainting/completion, variation from an init latent with a strength.
* :func:`decode` / :func:`encode` — the VAE, chunked for long audio.
* :func:`generate` — one call for every task: T2A/T2M, V2A/V2M, TV2A/TV2M, image-to-audio,
  audio inpainting, music completion, audio-to-audio variation, and audio longer than the model
  window (overlapping windows conditioned on the previous audio, crossfaded).

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
import random
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch

from . import conditions as C
from .errors import InputError
from .progress import Stages

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
        raise InputError(f"sampler mode must be 'base' or 'turbo', got {s.mode!r}")
    if s.noise not in NOISE_MODES:
        raise InputError(f"noise must be one of {NOISE_MODES}, got {s.noise!r}")
    if s.noise == "official" and s.sde_noise != "brownian":
        raise InputError("official noise uses the official Brownian-tree noise of the SDE samplers; "
                         f"sde_noise must be 'brownian', got {s.sde_noise!r}")
    if s.mode == "turbo":
        if model.objective != "rectified_flow":
            raise InputError(f"the Turbo sampler needs a rectified-flow (AudioX-Turbo) model; this is "
                             f"{model.config.variant} (v-objective): use the Base sampler")
        if not 1 <= int(s.steps) <= 8:
            raise InputError(f"Turbo steps must be 1..8 (4 is what the student was trained for), got {s.steps}")
        return "turbo"
    if int(s.steps) < 1 or int(s.steps) > 1000:
        raise InputError(f"steps must be 1..1000, got {s.steps}")
    if s.cfg_scale < 0 or s.cfg_scale > 50:
        raise InputError(f"cfg must be in 0..50, got {s.cfg_scale}")
    name = s.sampler
    if model.objective == "rectified_flow":
        name = "euler" if name == "auto" else name
        if name not in BASE_SAMPLERS_RF:
            raise InputError(f"sampler {name!r} does not apply to rectified-flow models; choose {BASE_SAMPLERS_RF}")
    else:
        name = "dpmpp-3m-sde" if name == "auto" else name
        if name not in BASE_SAMPLERS_V:
            raise InputError(f"sampler {name!r} does not apply to v-objective models; choose {BASE_SAMPLERS_V}")
    return name


def check_settings(model, settings: SamplerSettings) -> str:
    """Raise :class:`InputError` if ``settings`` do not fit ``model``; returns the sampler name used."""
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
        C.encode_audio_prompt(model, None, batch=batch, generator=generator)


def official_start(model, settings: SamplerSettings, shape, conds: Optional["C.Conditions"] = None, *,
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
        absent_audio = C.Conditions(text=conds.get("text"), video=conds.get("video"))
        ctx = C.fuse(model, absent_audio, batch=shape[0], modality_scale=modality_scale, generator=rng.on_device)
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
                         f"({model.latent_length * model.config.vae.downsampling_ratio / model.config.sample_rate:.2f} s); "
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
    x, report = C.prepare_audio(model, audio, sample_rate)
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


def _waveform_keep(keep: torch.Tensor, n: int) -> torch.Tensor:
    """Latent keep-mask → per-sample mask by linear interpolation."""
    k = keep.reshape(1, 1, -1).float()
    return torch.nn.functional.interpolate(k, size=n, mode="linear", align_corners=False).reshape(-1)


def waveform_keep(keep: torch.Tensor, n: int) -> torch.Tensor:
    """A latent keep-mask ``[L]`` stretched to ``n`` audio samples (linear interpolation)."""
    return _waveform_keep(keep, n)


def _crossfade_join(a: torch.Tensor, b: torch.Tensor, overlap: int) -> torch.Tensor:
    """Concatenate ``a`` and ``b`` (``[B, C, N]``) overlapping ``overlap`` samples.

    Raised-cosine equal-GAIN fade (gains sum to 1): the overlapping parts decode the same kept
    latents, so they are correlated and an equal-power fade would bulge by up to 3 dB."""
    if overlap <= 0:
        return torch.cat([a, b], dim=-1)
    t = torch.linspace(0, 1, overlap, dtype=a.dtype)
    fade_in = 0.5 - 0.5 * torch.cos(t * math.pi)
    fade_out = 1.0 - fade_in
    mid = a[..., -overlap:] * fade_out + b[..., :overlap] * fade_in
    return torch.cat([a[..., :-overlap], mid, b[..., overlap:]], dim=-1)


# ----------------------------------------------------------------------------------------------
# High level
# ----------------------------------------------------------------------------------------------
@dataclass
class Result:
    audio: torch.Tensor  # [B, C, N] float32
    sample_rate: int
    latents: Optional[torch.Tensor] = None
    report: list = field(default_factory=list)


def _is_file(audio) -> bool:
    return not isinstance(audio, (dict, tuple, list)) and audio is not None and not torch.is_tensor(audio)


def _audio_input(audio, *, max_seconds: Optional[float] = None, what: str = "audio") -> tuple[torch.Tensor, int]:
    """``(waveform, sr)`` from a path, a ComfyUI AUDIO dict or a ``(tensor, sr)`` pair.  A file is
    decoded only up to ``max_seconds`` (streaming: the decoder stops there)."""
    if audio is None:
        return None
    if isinstance(audio, dict):
        if "waveform" not in audio or "sample_rate" not in audio:
            raise InputError(f"{what}: expected an AUDIO dict with 'waveform' and 'sample_rate'")
        w, sr = audio["waveform"], audio["sample_rate"]
    elif isinstance(audio, (tuple, list)) and len(audio) == 2:
        w, sr = audio
    elif torch.is_tensor(audio):
        raise InputError(f"{what}: a tensor needs its sample rate — pass (waveform, sample_rate)")
    else:
        from . import media
        return media.load_audio(audio, duration=max_seconds)
    if not torch.is_tensor(w) or w.dim() not in (2, 3) or w.shape[-1] == 0:
        raise InputError(f"{what}: expected a non-empty waveform [C, N] or [B, C, N], got "
                         f"{tuple(w.shape) if torch.is_tensor(w) else type(w).__name__}")
    try:
        sr = int(sr)
    except (TypeError, ValueError):
        raise InputError(f"{what}: bad sample rate {sr!r}") from None
    if sr <= 0:
        raise InputError(f"{what}: bad sample rate {sr}")
    return w, sr


def _finite(name: str, v, *, low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False):
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(x) or (low is not None and (x <= low if low_open else x < low)) or \
            (high is not None and x > high):
        rng = (f"{'(' if low_open else '['}{low:g}, " if low is not None else "(-inf, ") + \
              (f"{high:g}]" if high is not None else "inf)")
        raise InputError(f"{name} must be a finite number in {rng}, got {v}")
    return x


def check_ranges(ranges, clip_seconds: float) -> list[tuple[float, float]]:
    """Inpainting ranges as ``[(start, end), …]`` seconds, each inside the clip (``0 <= start < end
    <= clip_seconds``); anything else raises :class:`InputError` saying which range and why."""
    out = []
    if ranges is None:
        return out
    if isinstance(ranges, (str, bytes)) or not hasattr(ranges, "__iter__"):
        raise InputError(f"inpaint ranges must be a list of (start, end) seconds, got {ranges!r}")
    ranges = list(ranges)
    if not ranges:
        raise InputError("inpaint needs at least one (start, end) range")
    tol = 1e-3
    for r in ranges:
        if not hasattr(r, "__len__") or len(r) != 2:
            raise InputError(f"a time range needs (start, end) seconds, got {r!r}")
        a = _finite("range start", r[0], low=0.0)
        b = _finite("range end", r[1], low=0.0)
        if not a < b:
            raise InputError(f"range {a:g}–{b:g} s is empty: the end must come after the start")
        if a >= clip_seconds:
            raise InputError(f"range {a:g}–{b:g} s starts after the end of the {clip_seconds:.2f} s clip")
        if b > clip_seconds + tol:
            raise InputError(f"range {a:g}–{b:g} s goes past the end of the {clip_seconds:.2f} s clip; end it at "
                             f"{clip_seconds:.2f} s or earlier")
        out.append((a, min(b, clip_seconds)))
    return out


def _visual_input(video, image, video_fps) -> Optional[C.VisualInput]:
    if video is not None and image is not None:
        raise InputError("give a video or an image, not both")
    if image is not None:
        if torch.is_tensor(image):
            return C.VisualInput(frames=image, still=True)
        return C.VisualInput(source=image, still=True)
    if video is None:
        return None
    if isinstance(video, C.VisualInput):
        return video
    if torch.is_tensor(video):
        return C.VisualInput(frames=video, fps=video_fps)
    return C.VisualInput(source=video)


def generate(model, *, prompt: Union[str, Sequence[str]] = "", negative_prompt: Optional[str] = None,
             video=None, video_fps: Optional[float] = None, image=None, start: float = 0.0,
             audio_prompt=None, audio_prompt_mask: Optional[bool] = None,
             init_audio=None, strength: float = 1.0, inpaint: Optional[Sequence[Sequence[float]]] = None,
             keep_seconds: Optional[float] = None, music: bool = False,
             duration: Optional[float] = None, settings: Optional[SamplerSettings] = None, batch: int = 1,
             modality_scale: Optional[Sequence[float]] = None, window_overlap: float = 0.25,
             sync_features: bool = True, callback=None) -> Result:
    """Generate audio for any AudioX task.  Returns audio at the model's rate.

    ``prompt``/``negative_prompt`` may be strings or pre-encoded text :class:`~.conditions.Condition`;
    ``video`` may be a pre-encoded video Condition (one window only).

    Tasks by inputs: ``prompt`` only → T2A/T2M; ``video`` (path, or IMAGE frames + ``video_fps``)
    → V2A/V2M (+ ``prompt`` → TV2A/TV2M; without a prompt the official task sentence is used,
    ``music`` picks the music one); ``image`` → image-to-audio (held still); ``init_audio`` +
    ``inpaint=[(start, end), …]`` → regenerate those seconds, keep the rest; ``init_audio`` +
    ``keep_seconds`` → music/audio completion (continue the given clip); ``init_audio`` +
    ``strength < 1`` → variation; ``duration`` longer than the model window → long-form.
    ``audio_prompt``: the audio conditioner's input (defaults to ``init_audio`` for inpainting and
    completion, as the official trained those tasks).  ``sync_features=False``: feed zero
    Synchformer features to a sync-conditioned (MAF / Turbo) model instead of computing them with
    the attached Synchformer (what the official gradio app and the demo model's training do).
    """
    settings = settings or SamplerSettings.for_model(model)
    if isinstance(batch, bool) or not isinstance(batch, int) and not (isinstance(batch, float) and batch.is_integer()) \
            or not 1 <= batch <= 64:
        raise InputError(f"batch must be 1..64, got {batch}")
    batch = int(batch)
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    window_s = cfg.latent_length * ratio / cfg.sample_rate
    frame_s = ratio / cfg.sample_rate
    # every number is checked before any file is decoded or any network runs
    duration = _finite("duration", duration, low=0.0, high=MAX_SECONDS, low_open=True)
    keep_seconds = _finite("keep_seconds", keep_seconds, low=0.0, low_open=True)
    strength = _finite("strength", strength, low=0.0, high=1.0, low_open=True)
    start = _finite("start", start, low=0.0)
    if inpaint is not None and init_audio is None:
        raise InputError("inpainting needs the audio to inpaint (init_audio)")
    if keep_seconds is not None and init_audio is None:
        raise InputError("completion needs the clip to continue (init_audio)")
    if inpaint is not None and keep_seconds is not None:
        raise InputError("give either inpaint ranges or keep_seconds (completion), not both")
    if duration is not None and duration < frame_s:
        raise InputError(f"duration {duration:g} s is shorter than one latent frame ({frame_s:.4f} s)")
    check_official(settings, inpainting=inpaint is not None, completion=keep_seconds is not None,
                    negative_prompt=negative_prompt is not None,
                    audio_longer_than_the_window=duration is not None and float(duration) > window_s + 1e-6,
                    init_audio_variation=init_audio is not None)
    visual = video if isinstance(video, C.Condition) else _visual_input(video, image, video_fps)
    # the official app encodes an empty prompt as given; we otherwise use the task sentence
    if (isinstance(prompt, str) and not prompt.strip() and visual is not None
            and settings.noise != "official"):
        prompt = C.DEFAULT_PROMPTS["music" if music else "audio"]
    # init audio: a file is decoded only as far as a window needs (every task uses at most the
    # first window of it); when its own length sets the duration, the header gives that length
    if _is_file(init_audio):
        from . import media
        file_s = media.audio_duration(init_audio) if duration is None and keep_seconds is None else None
        if file_s is not None and inpaint is not None and file_s > window_s + 1e-6:
            raise InputError(f"inpainting works within one {window_s:.2f} s window; the audio is {file_s:.2f} s — "
                             f"give a duration of at most {window_s:.2f} s to inpaint its beginning, or trim it")
        if file_s is not None and file_s > MAX_SECONDS + 1e-6:
            raise InputError(f"the init audio is {file_s:.1f} s long; at most {MAX_SECONDS:.0f} s can be generated "
                             "— give a duration (only that much of the file is read) or trim the file")
        need = window_s + 0.5 if (duration is not None or keep_seconds is not None or file_s is not None) \
            else MAX_SECONDS + 1.0
        init = _audio_input(init_audio, max_seconds=need, what="init audio")
        if file_s is None and duration is None and keep_seconds is None and need > MAX_SECONDS:
            got = init[0].shape[-1] / init[1]
            if got > MAX_SECONDS + 1e-6:
                raise InputError(f"the init audio is longer than {MAX_SECONDS:.0f} s — give a duration or trim it")
        else:
            got = file_s
    else:
        init = _audio_input(init_audio, what="init audio")
        got = None
    if init is not None:
        init_s = init[0].shape[-1] / init[1] if got is None else got
        if init[0].shape[-1] * cfg.sample_rate / init[1] < ratio:
            raise InputError(f"the init audio is {init[0].shape[-1]} sample(s) ({init_s:.4f} s) long; it needs at "
                             f"least one latent frame ({frame_s:.4f} s)")
    if duration is None:
        duration = window_s if init is None or keep_seconds is not None else init_s
        if keep_seconds is not None:
            duration = max(window_s, keep_seconds)
    duration = float(duration)
    if not 0 < duration <= MAX_SECONDS:
        raise InputError(f"duration must be in (0, {MAX_SECONDS:.0f}] seconds, got {duration}")
    if inpaint is not None:
        # ranges are checked against the audio that exists (the clip, cut to the output), not the window
        inpaint = check_ranges(inpaint, min(init_s, duration, window_s) if duration <= window_s + 1e-6
                               else min(init_s, duration))
    stages = Stages(callback, encode=1, sample=8, decode=2)
    long_form = duration > window_s + 1e-6
    if long_form:
        if isinstance(visual, C.Condition):
            raise InputError(f"a pre-encoded video condition covers one {window_s:.2f} s window; for "
                             f"{duration:.2f} s pass the video itself so each window sees its part")
        if inpaint is not None:
            raise InputError(f"inpainting works within one {window_s:.2f} s window; the audio is {duration:.2f} s")
        return _generate_long(model, prompt=prompt, negative_prompt=negative_prompt, visual=visual, start=start,
                              init=init, keep_seconds=keep_seconds, duration=duration, settings=settings,
                              batch=batch, modality_scale=modality_scale, overlap=window_overlap,
                              audio_prompt=audio_prompt, audio_prompt_mask=audio_prompt_mask, stages=stages,
                            sync_features=sync_features)
    return _generate_window(model, prompt=prompt, negative_prompt=negative_prompt, visual=visual, start=start,
                            init=init, strength=strength, inpaint=inpaint, keep_seconds=keep_seconds,
                            duration=duration, settings=settings, batch=batch, modality_scale=modality_scale,
                            audio_prompt=audio_prompt, audio_prompt_mask=audio_prompt_mask, stages=stages,
                            sync_features=sync_features)


def _window_latents(model, duration: float) -> int:
    if model.fixed_length:
        return model.latent_length
    fps = frames_per_second(model)
    return max(1, int(math.ceil(duration * fps)))


def _generate_window(model, *, prompt, negative_prompt, visual, start, init, strength, inpaint, keep_seconds,
                     duration, settings, batch, modality_scale, audio_prompt, audio_prompt_mask, stages,
                     sync_features: bool = True, prev_latents: Optional[torch.Tensor] = None,
                     prev_keep_frames: int = 0) -> Result:
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    L = _window_latents(model, duration)
    n_out = min(int(round(duration * cfg.sample_rate)), L * ratio)
    report = []
    rng = noise = None
    if settings.noise == "official":  # the official order: initial noise, then the conditioners' draws
        rng = OfficialRNG(settings.seed, next(model.backbone.parameters()).device)
        noise = rng.initial_noise((batch, cfg.io_channels, L))
        gen = rng.on_device
    else:
        gen = _generator(settings.seed + 1)  # conditioner randomness, separate from the sampling noise
    enc_cb = stages.sub("encode")

    conds = C.Conditions()
    if isinstance(prompt, C.Condition):
        conds.text = prompt
    elif cfg.conditioner("text_prompt") is not None:
        conds.text = C.encode_text(model, prompt, batch=batch)
    if isinstance(visual, C.Condition):
        conds.video = visual
    elif visual is not None:
        conds.video = C.encode_video(model, visual, start=start, batch=batch, callback=enc_cb,
                                     sync=None if sync_features else False)
        report.append(conds.video.report)
    # audio prompt: explicit, else the init audio for inpainting / completion (official training)
    used = C.audio_prompt_seconds(model)  # a file is decoded only as far as the conditioner looks
    ap = _audio_input(audio_prompt, max_seconds=used + 0.5 if used else None, what="audio prompt")
    known = None
    init_lat = None
    orig = None
    if init is not None:
        wav, sr = init
        x, rep = C.prepare_audio(model, wav, sr, max_seconds=L * ratio / cfg.sample_rate)
        if rep:
            report.append(f"init audio: {rep}")
        orig = x[..., : L * ratio]
        pad = L * ratio - orig.shape[-1]
        orig_full = torch.nn.functional.pad(orig, (0, max(0, pad)))
        init_lat, _ = encode(model, orig_full, cfg.sample_rate, generator=gen)
        if inpaint is not None:
            keep = keep_mask_from_ranges(model, L, inpaint)
            known = Known(init_lat, keep)
            if ap is None:
                blank = orig_full.clone()
                wk = _waveform_keep((keep > 0.999).float(), blank.shape[-1])
                ap = (blank * wk, cfg.sample_rate)
            report.append("inpainting " + ", ".join(f"{a:g}–{b:g} s" for a, b in inpaint))
        elif keep_seconds is not None:
            kf = int(round(min(keep_seconds, orig.shape[-1] / cfg.sample_rate) * frames_per_second(model)))
            kf = min(kf, L)
            if kf >= L:
                raise InputError(f"keep_seconds {keep_seconds:g} covers the whole {L * ratio / cfg.sample_rate:.2f} s "
                                 "window: nothing to complete")
            keep = torch.zeros(L)
            keep[:kf] = 1.0
            known = Known(init_lat, keep)
            if ap is None:
                ap = (orig[..., : kf * ratio], cfg.sample_rate)
            report.append(f"completion after {kf / frames_per_second(model):.2f} s")
    if prev_latents is not None and prev_keep_frames > 0:
        keep = torch.zeros(L)
        keep[:prev_keep_frames] = 1.0
        lat = torch.zeros(prev_latents.shape[0], prev_latents.shape[1], L)
        lat[..., :prev_keep_frames] = prev_latents[..., -prev_keep_frames:]
        known = Known(lat, keep)
    if cfg.conditioner("audio_prompt") is not None:
        if ap is not None:
            conds.audio = C.encode_audio_prompt(model, ap[0], sample_rate=ap[1], batch=batch, generator=gen,
                                                mask=audio_prompt_mask)
            report.append(f"audio prompt: {conds.audio.report or 'given'}")
    context = C.fuse(model, conds, batch=batch, modality_scale=modality_scale, generator=gen)
    negative = None
    if isinstance(negative_prompt, C.Condition) or negative_prompt:
        ntext = (negative_prompt if isinstance(negative_prompt, C.Condition)
                 else C.encode_text(model, negative_prompt, batch=batch))
        neg = C.Conditions(text=ntext, video=conds.video, audio=conds.audio)
        negative = C.fuse(model, neg, batch=batch, modality_scale=modality_scale, generator=gen)
    report.append(conds.summary())
    lat = sample(model, context, settings, batch=batch, length=L, negative=negative,
                 init=init_lat if (init is not None and inpaint is None and keep_seconds is None and strength < 1)
                 else None, strength=strength, known=known, callback=stages.sub("sample"), noise=noise, rng=rng)
    audio = decode(model, lat, callback=stages.sub("decode"))
    if orig is not None and known is not None and (inpaint is not None or keep_seconds is not None):
        # keep the given audio exactly outside the regenerated parts, blending across the seams
        n = min(audio.shape[-1], orig.shape[-1])
        wk = _waveform_keep(known.keep, audio.shape[-1])[:n]
        audio[..., :n] = wk * orig[..., :n].expand(audio.shape[0], -1, -1) + (1 - wk) * audio[..., :n]
    return Result(audio[..., :n_out].contiguous(), cfg.sample_rate, lat, [r for r in report if r])


def _generate_long(model, *, prompt, negative_prompt, visual, start, init, keep_seconds, duration, settings,
                   batch, modality_scale, overlap, audio_prompt, audio_prompt_mask, stages,
                   sync_features: bool = True) -> Result:
    """Overlapping windows, each conditioned on the previous one's audio (the official music
    continuation setup: audio prompt = the previous window) with its overlap latents kept, then
    joined with an equal-power crossfade over the overlap."""
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    L = model.latent_length if model.fixed_length else _window_latents(model, cfg.sample_size / cfg.sample_rate)
    window_s = L * ratio / cfg.sample_rate
    if not 0.05 <= overlap <= 0.75:
        raise InputError(f"window overlap must be 0.05..0.75 of the window, got {overlap}")
    ov = max(1, int(round(L * overlap)))
    hop = L - ov
    n_total = int(round(duration * cfg.sample_rate))
    n_windows = 1 + max(0, math.ceil((math.ceil(n_total / ratio) - L) / hop))
    report = [f"long-form: {n_windows} windows of {window_s:.2f} s, overlap {ov * ratio / cfg.sample_rate:.2f} s"]
    out = None
    joined = None  # latents of the whole clip: window 0, then each later window minus its kept overlap
    prev_lat = None
    prev_audio = None
    total_cb = stages.callback
    for w in range(n_windows):
        sub = Stages((lambda s, t, i, w=w: total_cb(w * 1000 + s, n_windows * 1000, i)) if total_cb else None,
                     encode=1, sample=8, decode=2)
        win_start = start + w * hop * ratio / cfg.sample_rate
        s = SamplerSettings(**{**settings.__dict__, "seed": settings.seed + 7919 * w})
        if w == 0:
            res = _generate_window(model, prompt=prompt, negative_prompt=negative_prompt, visual=visual,
                                   start=win_start, init=init, strength=1.0, inpaint=None,
                                   keep_seconds=keep_seconds, duration=window_s, settings=s, batch=batch,
                                   modality_scale=modality_scale, audio_prompt=audio_prompt,
                                   audio_prompt_mask=audio_prompt_mask, stages=sub, sync_features=sync_features)
        else:
            # the previous window as audio prompt, clamped to [-1, 1] like any audio file input
            ap = ((prev_audio.clamp(-1, 1), cfg.sample_rate) if cfg.conditioner("audio_prompt") is not None
                  else None)
            res = _generate_window(model, prompt=prompt, negative_prompt=negative_prompt, visual=visual,
                                   start=win_start, init=None, strength=1.0, inpaint=None, keep_seconds=None,
                                   duration=window_s, settings=s, batch=batch, modality_scale=modality_scale,
                                   audio_prompt=ap, audio_prompt_mask=False, stages=sub,
                                   sync_features=sync_features, prev_latents=prev_lat, prev_keep_frames=ov)
        a = res.audio
        if a.shape[-1] < L * ratio:
            a = torch.nn.functional.pad(a, (0, L * ratio - a.shape[-1]))
        out = a if out is None else _crossfade_join(out, a, ov * ratio)
        joined = res.latents if joined is None else torch.cat([joined, res.latents[..., ov:]], dim=-1)
        prev_lat, prev_audio = res.latents, a
        report += [f"window {w + 1}: " + "; ".join(res.report[-1:])]
    # ``latents``: the windows joined in latent space (each later window's first ``ov`` frames were
    # kept equal to the previous window's last ones); decoding them gives the clip without crossfades
    n_lat = int(math.ceil(n_total / ratio))
    return Result(out[..., :n_total].contiguous(), cfg.sample_rate, joined[..., :n_lat].contiguous(), report)
