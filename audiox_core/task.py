"""The task layer: one request for every generation task, planned before any work, then run.

A :class:`GenerationRequest` holds what a caller wants: the task's inputs (prompt, video or
image, audio prompt, existing audio or its latents, inpaint ranges or seconds to keep), the
duration, the sampler settings and the noise mode.  :meth:`GenerationRequest.plan` makes every
decision -- duration defaults, which latent frames to keep, completion frames, the negative
prompt's fusion, long-form windows, the official-noise checks -- and validates every input
before a file is decoded or a network runs; a bad input raises :class:`RequestError`, which
names the request field.  :meth:`Plan.run` then does the work.

The Python API, the command line and every sampler node call this layer: :func:`generate`
(``generate(model, request)``) is the one entry point.

Two kinds of input reach it:

* raw inputs (the API and the CLI): text, a video/image, audio files or waveforms.  The run
  encodes the conditions, samples, decodes the audio and pastes the given audio back outside
  the regenerated parts;
* conditions fused earlier (the node graph: ``context`` a :class:`FusedContext`, ``init_latents``
  from a VAE encoder).  The run samples only and returns latents (``Result.audio`` is None).
  Long-form generation re-encodes its conditions window by window, so a fused context is turned
  back into raw inputs for it (the text condition and the video it was made from).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence, Union

import torch

from . import conditions
from . import generate as generation
from .errors import FieldError, InputError
from .generate import (MAX_SECONDS, Known, OfficialRNG, SamplerSettings, check_official, check_settings,
                       frames_per_second, keep_mask_from_ranges, official_start, waveform_keep)
from .progress import Stages

#: the node graph's long-form video needs this resize mode (the official's)
LONG_FORM_RESIZE = "stretch"
#: seed offset between long-form windows (each window draws its own noise)
WINDOW_SEED_STEP = 7919


class RequestError(FieldError):
    """An input of a :class:`GenerationRequest` is unusable; ``field`` names it (e.g. "inpaint",
    "init_latents", "settings.steps"), so a caller can name its own input."""


@dataclass
class FusedContext:
    """Conditions encoded and fused earlier (the node graph): the backbone context ``tokens``
    ``[B, N, D]``, the per-modality ``conds`` it was made from, the ``modality_scale`` applied and
    the ``source`` model's fingerprint."""

    tokens: torch.Tensor
    conds: conditions.Conditions
    modality_scale: Optional[tuple] = None
    source: str = ""


@dataclass
class Result:
    audio: Optional[torch.Tensor]  # [B, C, N] float32; None when the request asked for latents only
    sample_rate: int
    latents: Optional[torch.Tensor] = None
    report: list = field(default_factory=list)
    seconds: Optional[float] = None  # seconds of audio the latents stand for
    keep: Optional[torch.Tensor] = None  # latent keep-mask [L] of inpainting/completion (latent requests)


# ----------------------------------------------------------------------------------------------
# Time ranges
# ----------------------------------------------------------------------------------------------
_RANGE_SPLIT = re.compile(r"[,;\n]+")
_RANGE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:-|–|:|to)\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def parse_ranges(text: str) -> list[tuple[float, float]]:
    """``"2-3.5, 6:7"`` → ``[(2.0, 3.5), (6.0, 7.0)]`` seconds, sorted, overlapping ones merged.

    Separators: ``,`` ``;`` or new lines; a range is ``start-end`` (also ``–``, ``:``, ``to``).
    Raises :class:`InputError` saying which part is wrong."""
    parts = [p for p in _RANGE_SPLIT.split(str(text)) if p.strip()]
    if not parts:
        raise InputError("no time range given; write e.g. '2.0-3.5' or '1-2, 6-7' (seconds)")
    ranges = []
    for part in parts:
        match = _RANGE.match(part)
        if not match:
            raise InputError(f"'{part.strip()}' is not a range in seconds like '2.0-3.5'")
        start, end = float(match.group(1)), float(match.group(2))
        if not end > start:
            raise InputError(f"'{part.strip()}': the end must be after the start")
        if start >= MAX_SECONDS:
            raise InputError(f"'{part.strip()}': starts after {MAX_SECONDS:g} s")
        ranges.append((start, end))
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def finite_number(name: str, value, *, low: Optional[float] = None, high: Optional[float] = None,
                  low_open: bool = False) -> Optional[float]:
    """``value`` as a float inside the bounds (None passes through); else :class:`RequestError`."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RequestError(name, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or (low is not None and (x <= low if low_open else x < low)) or \
            (high is not None and x > high):
        bounds = (f"{'(' if low_open else '['}{low:g}, " if low is not None else "(-inf, ") + \
                 (f"{high:g}]" if high is not None else "inf)")
        raise RequestError(name, f"{name} must be a finite number in {bounds}, got {value}")
    return x


def check_ranges(ranges, clip_seconds: float) -> list[tuple[float, float]]:
    """Inpainting ranges as ``[(start, end), …]`` seconds, each inside the clip (``0 <= start < end
    <= clip_seconds``); anything else raises :class:`RequestError` (field "inpaint") saying which
    range and why."""
    out = []
    if ranges is None:
        return out
    if isinstance(ranges, (str, bytes)) or not hasattr(ranges, "__iter__"):
        raise RequestError("inpaint", f"inpaint ranges must be a list of (start, end) seconds, got {ranges!r}")
    ranges = list(ranges)
    if not ranges:
        raise RequestError("inpaint", "inpaint needs at least one (start, end) range")
    tolerance = 1e-3
    for r in ranges:
        if not hasattr(r, "__len__") or len(r) != 2:
            raise RequestError("inpaint", f"a time range needs (start, end) seconds, got {r!r}")
        start = finite_number("range start", r[0], low=0.0)
        end = finite_number("range end", r[1], low=0.0)
        if not start < end:
            raise RequestError("inpaint", f"range {start:g}–{end:g} s is empty: the end must come after the start")
        if start >= clip_seconds:
            raise RequestError("inpaint", f"range {start:g}–{end:g} s starts after the end of the "
                               f"{clip_seconds:.2f} s clip")
        if end > clip_seconds + tolerance:
            raise RequestError("inpaint", f"range {start:g}–{end:g} s goes past the end of the {clip_seconds:.2f} s "
                               f"clip; end it at {clip_seconds:.2f} s or earlier")
        out.append((start, min(end, clip_seconds)))
    return out


def check_mask_fits_audio(audio_seconds: float, *, ranges=None, keep_seconds: Optional[float] = None) -> None:
    """A time mask drawn for audio of ``audio_seconds``: every inpaint range must start inside it
    (:class:`FieldError` "ranges" naming the late ones) and completion must not keep more than it
    has (:class:`FieldError` "keep_seconds")."""
    late = [f"{start:g}-{end:g}" for start, end in (ranges or ()) if start >= audio_seconds]
    if late:
        raise FieldError("ranges", f"{', '.join(late)} start(s) after the end of the connected audio "
                         f"({audio_seconds:.2f} s)")
    if keep_seconds is not None and float(keep_seconds) > audio_seconds + 1e-6:
        raise FieldError("keep_seconds", f"is {float(keep_seconds):g} s but the connected audio is only "
                         f"{audio_seconds:.2f} s long")


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def is_file(audio) -> bool:
    return not isinstance(audio, (dict, tuple, list)) and audio is not None and not torch.is_tensor(audio)


def audio_input(audio, *, max_seconds: Optional[float] = None, what: str = "audio") -> Optional[tuple]:
    """``(waveform, sr)`` from a path, a ComfyUI AUDIO dict or a ``(tensor, sr)`` pair.  A file is
    decoded only up to ``max_seconds`` (streaming: the decoder stops there)."""
    if audio is None:
        return None
    if isinstance(audio, dict):
        if "waveform" not in audio or "sample_rate" not in audio:
            raise InputError(f"{what}: expected an AUDIO dict with 'waveform' and 'sample_rate'")
        wave, sr = audio["waveform"], audio["sample_rate"]
    elif isinstance(audio, (tuple, list)) and len(audio) == 2:
        wave, sr = audio
    elif torch.is_tensor(audio):
        raise InputError(f"{what}: a tensor needs its sample rate — pass (waveform, sample_rate)")
    else:
        from . import media
        return media.load_audio(audio, duration=max_seconds)
    if not torch.is_tensor(wave) or wave.dim() not in (2, 3) or wave.shape[-1] == 0:
        raise InputError(f"{what}: expected a non-empty waveform [C, N] or [B, C, N], got "
                         f"{tuple(wave.shape) if torch.is_tensor(wave) else type(wave).__name__}")
    try:
        sr = int(sr)
    except (TypeError, ValueError):
        raise InputError(f"{what}: bad sample rate {sr!r}") from None
    if sr <= 0:
        raise InputError(f"{what}: bad sample rate {sr}")
    return wave, sr


def visual_input(video, image, video_fps) -> Optional[conditions.VisualInput]:
    if video is not None and image is not None:
        raise RequestError("video", "give a video or an image, not both")
    if image is not None:
        if torch.is_tensor(image):
            return conditions.VisualInput(frames=image, still=True)
        return conditions.VisualInput(source=image, still=True)
    if video is None:
        return None
    if isinstance(video, conditions.VisualInput):
        return video
    if torch.is_tensor(video):
        return conditions.VisualInput(frames=video, fps=video_fps)
    return conditions.VisualInput(source=video)


# ----------------------------------------------------------------------------------------------
# The request
# ----------------------------------------------------------------------------------------------
@dataclass
class GenerationRequest:
    """Everything one generation needs besides the model.

    Tasks by inputs: ``prompt`` only → T2A/T2M; ``video`` (path, :class:`~.conditions.VisualInput`,
    or IMAGE frames + ``video_fps``) → V2A/V2M (+ ``prompt`` → TV2A/TV2M; without a prompt the
    official task sentence is used, ``music`` picks the music one); ``image`` → image-to-audio;
    ``init_audio`` + ``inpaint=[(start, end), …]`` → regenerate those seconds, keep the rest;
    ``init_audio`` + ``keep_seconds`` → completion (continue the given clip); ``init_audio`` +
    ``strength < 1`` → variation; ``duration`` longer than the model window → long-form
    (overlapping windows of ``window_overlap``, each conditioned on the previous one's audio).
    ``audio_prompt``: the audio conditioner's input (defaults to ``init_audio`` for inpainting and
    completion, as the official trained those tasks).  ``sync_features=False``: zero Synchformer
    features for sync-conditioned models (the official gradio app, the demo model's training).
    ``prompt``/``negative_prompt`` may be pre-encoded text conditions; ``video`` a pre-encoded
    video condition (one window only).

    Node graph inputs instead of raw ones: ``context`` (conditions fused earlier; ``prompt``,
    ``video``, ``image`` and ``audio_prompt`` stay empty) and ``init_latents`` [B, C, L] (+
    ``init_latents_seconds``, the audio they came from) for inpainting (``inpaint`` +
    ``inpaint_ramp_seconds``, clipped to the clip), completion (``keep_seconds``) and variation
    (``strength`` < 1).  Such a request returns latents, not audio.
    """

    prompt: Union[str, Sequence[str], conditions.Condition] = ""
    negative_prompt: Union[None, str, conditions.Condition] = None
    video: object = None
    video_fps: Optional[float] = None
    image: object = None
    start: float = 0.0
    music: bool = False
    audio_prompt: object = None
    audio_prompt_mask: Optional[bool] = None
    context: Optional[FusedContext] = None
    init_audio: object = None
    init_latents: Optional[torch.Tensor] = None
    init_latents_seconds: Optional[float] = None
    strength: float = 1.0
    inpaint: Optional[Sequence[Sequence[float]]] = None
    inpaint_ramp_seconds: float = 0.1
    keep_seconds: Optional[float] = None
    duration: Optional[float] = None
    settings: Optional[SamplerSettings] = None
    batch: int = 1
    modality_scale: Optional[Sequence[float]] = None
    window_overlap: float = 0.25
    sync_features: bool = True

    def plan(self, model) -> "Plan":
        """Every decision of this request for ``model``, validated; nothing is encoded or sampled."""
        if self.context is not None or self.init_latents is not None:
            return _plan_from_encoded(model, self)
        return _plan_from_inputs(model, self)

    def run(self, model, callback=None) -> Result:
        return self.plan(model).run(callback)


def generate(model, request: GenerationRequest, *, callback=None) -> Result:
    """Run one :class:`GenerationRequest` on ``model``: plan (validate) first, then work."""
    if not isinstance(request, GenerationRequest):
        raise InputError(f"generate() takes a GenerationRequest, got {type(request).__name__}")
    return request.run(model, callback)


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------
@dataclass
class Window:
    """One model window of a raw-input plan: where it starts, what it keeps and continues."""

    start: float
    duration: float
    settings: SamplerSettings
    init: Optional[tuple] = None  # (waveform, sr) of the given audio
    strength: float = 1.0
    inpaint: Optional[list] = None
    keep_seconds: Optional[float] = None
    audio_prompt: object = None
    audio_prompt_mask: Optional[bool] = None
    previous_latents: Optional[torch.Tensor] = None
    previous_keep_frames: int = 0


@dataclass
class Plan:
    """The decisions of one request.  ``parts``: the model parts the run needs on its device."""

    model: object
    request: GenerationRequest
    settings: SamplerSettings
    duration: float
    window_seconds: float
    long_form: bool
    parts: tuple = ("backbone",)
    visual: object = None
    init: Optional[tuple] = None
    length: int = 0  # latent frames of one window
    keep: Optional[torch.Tensor] = None
    known_latents: Optional[torch.Tensor] = None
    variation_latents: Optional[torch.Tensor] = None
    notes: list = field(default_factory=list)
    synchformer: object = None  # long-form video from a fused context: the Synchformer it was made with

    def run(self, callback=None) -> Result:
        if self.request.context is not None and not self.long_form:
            return _run_encoded(self, callback)
        stages = Stages(callback, encode=1, sample=8, decode=2)
        if self.long_form:
            return _run_long(self, stages)
        r = self.request
        first = Window(start=r.start, duration=self.duration, settings=self.settings, init=self.init,
                       strength=r.strength, inpaint=r.inpaint, keep_seconds=r.keep_seconds,
                       audio_prompt=r.audio_prompt, audio_prompt_mask=r.audio_prompt_mask)
        return _run_window(self, first, stages)


def _check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) and not (isinstance(batch, float) and batch.is_integer()) \
            or not 1 <= batch <= 64:
        raise RequestError("batch", f"batch must be 1..64, got {batch}")
    return int(batch)


def _checked_settings(model, settings: Optional[SamplerSettings]) -> SamplerSettings:
    settings = settings or SamplerSettings.for_model(model)
    try:
        check_settings(model, settings)
    except FieldError as e:
        raise RequestError(f"settings.{e.field}", str(e)) from e
    return settings


def _window_seconds(model) -> float:
    cfg = model.config
    return cfg.latent_length * cfg.vae.downsampling_ratio / cfg.sample_rate


def _plan_from_inputs(model, r: GenerationRequest) -> Plan:
    """Raw inputs (API, CLI): every number is checked before any file is decoded or network runs."""
    settings = _checked_settings(model, r.settings)
    batch = _check_batch(r.batch)
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    window_s = _window_seconds(model)
    frame_s = ratio / cfg.sample_rate
    duration = finite_number("duration", r.duration, low=0.0, high=MAX_SECONDS, low_open=True)
    keep_seconds = finite_number("keep_seconds", r.keep_seconds, low=0.0, low_open=True)
    strength = finite_number("strength", r.strength, low=0.0, high=1.0, low_open=True)
    start = finite_number("start", r.start, low=0.0)
    inpaint = r.inpaint
    if inpaint is not None and r.init_audio is None:
        raise RequestError("init_audio", "inpainting needs the audio to inpaint (init_audio)")
    if keep_seconds is not None and r.init_audio is None:
        raise RequestError("init_audio", "completion needs the clip to continue (init_audio)")
    if inpaint is not None and keep_seconds is not None:
        raise RequestError("inpaint", "give either inpaint ranges or keep_seconds (completion), not both")
    if duration is not None and duration < frame_s:
        raise RequestError("duration", f"duration {duration:g} s is shorter than one latent frame ({frame_s:.4f} s)")
    _check_official(settings, inpainting=inpaint is not None, completion=keep_seconds is not None,
                    negative_prompt=r.negative_prompt is not None,
                    audio_longer_than_the_window=duration is not None and float(duration) > window_s + 1e-6,
                    init_audio_variation=r.init_audio is not None)
    visual = r.video if isinstance(r.video, conditions.Condition) else visual_input(r.video, r.image, r.video_fps)
    prompt = r.prompt
    # the official app encodes an empty prompt as given; we otherwise use the task sentence
    if isinstance(prompt, str) and not prompt.strip() and visual is not None and settings.noise != "official":
        prompt = conditions.DEFAULT_PROMPTS["music" if r.music else "audio"]
    init, init_s = _load_init_audio(model, r.init_audio, duration, keep_seconds, inpaint is not None, window_s)
    if duration is None:
        duration = window_s if init is None or keep_seconds is not None else init_s
        if keep_seconds is not None:
            duration = max(window_s, keep_seconds)
    duration = float(duration)
    if not 0 < duration <= MAX_SECONDS:
        raise RequestError("duration", f"duration must be in (0, {MAX_SECONDS:.0f}] seconds, got {duration}")
    if inpaint is not None:
        # ranges are checked against the audio that exists (the clip, cut to the output), not the window
        inpaint = check_ranges(inpaint, min(init_s, duration, window_s) if duration <= window_s + 1e-6
                               else min(init_s, duration))
    long_form = duration > window_s + 1e-6
    if long_form:
        if isinstance(visual, conditions.Condition):
            raise RequestError("video", f"a pre-encoded video condition covers one {window_s:.2f} s window; for "
                               f"{duration:.2f} s pass the video itself so each window sees its part")
        if inpaint is not None:
            raise RequestError("inpaint", f"inpainting works within one {window_s:.2f} s window; the audio is "
                               f"{duration:.2f} s")
        if not 0.05 <= r.window_overlap <= 0.75:
            raise RequestError("window_overlap", f"window overlap must be 0.05..0.75 of the window, got "
                               f"{r.window_overlap}")
    request = replace(r, prompt=prompt, inpaint=inpaint, keep_seconds=keep_seconds, strength=strength, start=start,
                      batch=batch)
    return Plan(model, request, settings, duration, window_s, long_form, visual=visual, init=init,
                parts=("backbone", "maf", "conditioner", "vae"))


def _check_official(settings: SamplerSettings, **refused) -> None:
    try:
        check_official(settings, **refused)
    except InputError as e:
        raise RequestError("settings.noise", str(e)) from e


def _load_init_audio(model, init_audio, duration, keep_seconds, inpainting: bool, window_s: float):
    """``((waveform, sr), seconds)`` of the init audio, or ``(None, None)``.  A file is decoded only
    as far as a window needs (every task uses at most the first window of it); when its own length
    sets the duration, the header gives that length."""
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    frame_s = ratio / cfg.sample_rate
    if is_file(init_audio):
        from . import media
        file_s = media.audio_duration(init_audio) if duration is None and keep_seconds is None else None
        if file_s is not None and inpainting and file_s > window_s + 1e-6:
            raise RequestError("init_audio", f"inpainting works within one {window_s:.2f} s window; the audio is "
                               f"{file_s:.2f} s — give a duration of at most {window_s:.2f} s to inpaint its "
                               "beginning, or trim it")
        if file_s is not None and file_s > MAX_SECONDS + 1e-6:
            raise RequestError("init_audio", f"the init audio is {file_s:.1f} s long; at most {MAX_SECONDS:.0f} s "
                               "can be generated — give a duration (only that much of the file is read) or trim "
                               "the file")
        need = window_s + 0.5 if (duration is not None or keep_seconds is not None or file_s is not None) \
            else MAX_SECONDS + 1.0
        init = audio_input(init_audio, max_seconds=need, what="init audio")
        if file_s is None and duration is None and keep_seconds is None and need > MAX_SECONDS:
            got = init[0].shape[-1] / init[1]
            if got > MAX_SECONDS + 1e-6:
                raise RequestError("init_audio", f"the init audio is longer than {MAX_SECONDS:.0f} s — give a "
                                   "duration or trim it")
        else:
            got = file_s
    else:
        init = audio_input(init_audio, what="init audio")
        got = None
    if init is None:
        return None, None
    init_s = init[0].shape[-1] / init[1] if got is None else got
    if init[0].shape[-1] * cfg.sample_rate / init[1] < ratio:
        raise RequestError("init_audio", f"the init audio is {init[0].shape[-1]} sample(s) ({init_s:.4f} s) long; "
                           f"it needs at least one latent frame ({frame_s:.4f} s)")
    return init, init_s


def _plan_from_encoded(model, r: GenerationRequest) -> Plan:
    """Conditions fused earlier and latents of given audio (the node graph)."""
    ctx = r.context
    if ctx is None:
        raise RequestError("context", "latents of given audio need the fused conditions (context) as well")
    if ctx.source != conditions.model_fingerprint(model):
        raise RequestError("context", "was made for another model: encode and fuse the conditions with the model "
                           "that samples")
    batch = _check_batch(r.batch)
    if ctx.tokens.shape[0] not in (1, batch):
        raise RequestError("batch", f"is {batch} but the context has batch {ctx.tokens.shape[0]}")
    fps = frames_per_second(model)
    window_s = _window_seconds(model)
    settings = _checked_settings(model, r.settings)
    if settings.mode != "turbo":  # the report names the sampler that runs
        settings = replace(settings, sampler=check_settings(model, settings))
    latents = _checked_latents(model, r.init_latents, batch)
    masked = r.inpaint is not None or r.keep_seconds is not None
    if masked and latents is None:
        raise RequestError("init_latents", "is not connected, but a mask is: inpainting/completion keeps parts of "
                           "existing audio — connect its latents (AudioX VAE Encode)")
    duration = float(r.duration or 0.0)
    source_s = None if latents is None else float(r.init_latents_seconds or latents.shape[-1] / fps)
    if duration <= 0:  # the input audio's length for inpainting/variations, else the whole window
        keep_length = latents is not None and r.keep_seconds is None
        duration = min(window_s, source_s) if keep_length else window_s
    if duration > MAX_SECONDS:
        raise RequestError("duration", f"must be at most {MAX_SECONDS:g} s, got {duration:g}")
    long_form = duration > window_s + 1e-6
    _check_official(settings, inpainting_or_completion=masked,
                    variation_start=latents is not None and not masked and float(r.strength) < 1.0,
                    negative_prompt=r.negative_prompt is not None, audio_longer_than_the_window=long_form)
    if long_form:
        return _plan_long_form_from_context(model, r, settings, duration, window_s, latents)
    plan = Plan(model, replace(r, batch=batch), settings, duration, window_s, False)
    plan.length = model.latent_length if model.fixed_length else max(1, int(math.ceil(duration * fps)))
    _check_negative(r.negative_prompt, ctx)
    if latents is not None:
        _plan_kept_latents(plan, latents, source_s)
    official = settings.noise == "official"
    plan.parts = ("backbone", "conditioner", "maf") if official or r.negative_prompt is not None else ("backbone",)
    return plan


def _checked_latents(model, latents, batch: int) -> Optional[torch.Tensor]:
    if latents is None:
        return None
    if not torch.is_tensor(latents) or latents.dim() != 3:
        shape = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
        raise RequestError("init_latents", f"has samples of shape {shape}; audio latents are [B, C, L]")
    channels = model.config.io_channels
    if latents.shape[1] != channels:
        raise RequestError("init_latents", f"has {latents.shape[1]} channels but {model.config.variant} uses "
                           f"{channels}: encode the audio with this model's VAE")
    if latents.shape[0] not in (1, batch):
        raise RequestError("init_latents", f"has batch {latents.shape[0]}, the sampler makes {batch}")
    return latents.float()


def _check_negative(negative, ctx: FusedContext) -> None:
    if negative is None:
        return
    if not isinstance(negative, conditions.Condition):
        raise RequestError("negative_prompt", f"expected a text condition, got {type(negative).__name__}")
    if negative.modality != "text":
        raise RequestError("negative_prompt", f"must be a text condition, got {negative.modality}")
    if negative.source and negative.source != ctx.source:
        raise RequestError("negative_prompt", "was encoded for another model")


def _plan_kept_latents(plan: Plan, latents: torch.Tensor, source_s: float) -> None:
    """Inpainting / completion keep-mask, or the variation start, from the given latents."""
    r, model, length = plan.request, plan.model, plan.length
    fps = frames_per_second(model)
    fitted = latents[..., :length]
    if fitted.shape[-1] < length:
        fitted = torch.nn.functional.pad(fitted, (0, length - fitted.shape[-1]))
    if r.inpaint is not None:
        clip = min(length / fps, source_s)
        for start, end in r.inpaint:
            if start >= clip:
                raise RequestError("inpaint", f"range {start:g}–{end:g} s lies outside the clip (0–{clip:.2f} s)")
        try:
            plan.keep = keep_mask_from_ranges(model, length, [(a, min(b, clip)) for a, b in r.inpaint],
                                              ramp_seconds=r.inpaint_ramp_seconds)
        except InputError as e:
            raise RequestError("inpaint", str(e)) from e
        plan.known_latents = fitted
    elif r.keep_seconds is not None:
        keep_frames = int(round(min(r.keep_seconds, source_s) * fps))
        if keep_frames >= length:
            raise RequestError("keep_seconds", f"keeps {r.keep_seconds:g} s, which covers the whole "
                               f"{length / fps:.2f} s window: nothing is left to generate")
        if keep_frames < 1:
            raise RequestError("keep_seconds", "keeps less than one latent frame")
        plan.keep = torch.zeros(length)
        plan.keep[:keep_frames] = 1.0
        plan.known_latents = fitted
    elif plan.settings.mode == "turbo":
        raise RequestError("inpaint", "is not connected: the Turbo sampler uses 'latent' only with a mask "
                           "(it has no variation start)")
    elif float(r.strength) < 1.0:
        plan.variation_latents = fitted
    else:
        plan.notes.append("latent ignored: without a mask, a latent is only used for variations (denoise < 1)")


def _plan_long_form_from_context(model, r: GenerationRequest, settings, duration, window_s, latents) -> Plan:
    """A fused context asked for more than one window: the windows re-encode their conditions, so
    the request becomes a raw one (the text condition, and the video the context was made from)."""
    if r.inpaint is not None or r.keep_seconds is not None:
        raise RequestError("inpaint", f"inpainting/completion works within one {window_s:.2f} s window; set "
                           "duration to 0 (or at most the window) — long-form continues from its own windows")
    if latents is not None:
        raise RequestError("init_latents", "long-form generation (duration longer than the window) starts from "
                           "scratch; disconnect the latent or set duration to the window")
    conds = r.context.conds
    audio = conds.get("audio")
    if audio is not None and any(audio.present):
        raise RequestError("context", f"has an audio condition, but long-form generation (duration {duration:g} s "
                           f"> window {window_s:.2f} s) conditions each window on the previous one's audio; use "
                           "duration 0 for one window, or leave the audio prompt out")
    video, synchformer = _long_form_video(conds.get("video"), window_s)
    if r.negative_prompt is not None and not isinstance(r.negative_prompt, conditions.Condition):
        raise RequestError("negative_prompt", f"expected a text condition, got {type(r.negative_prompt).__name__}")
    raw = GenerationRequest(prompt=conds.text, negative_prompt=r.negative_prompt, duration=duration,
                            settings=settings, batch=r.batch, modality_scale=r.context.modality_scale, **video)
    plan = _plan_from_inputs(model, raw)
    plan.synchformer = synchformer
    return plan


def _long_form_video(video: Optional[conditions.Condition], window_s: float) -> tuple[dict, object]:
    """The raw video of a fused video condition (each window encodes its own part of it)."""
    if video is None or not any(video.present):
        return {}, None
    source = video.extra.get("long_form")
    if source is None:
        raise RequestError("context", f"has a video condition made from precomputed sync features, which cover "
                           f"one {window_s:.2f} s window; for long-form generation connect the video and the "
                           "Synchformer (or sync 'zeros') to AudioX Video Encoder instead")
    if source["resize"] != LONG_FORM_RESIZE:
        raise RequestError("context", f"long-form video-to-audio encodes each window with resize "
                           f"'{LONG_FORM_RESIZE}' (the official); the video condition used '{source['resize']}'")
    raw = dict(video=source["visual"], start=source["start"], sync_features=not source["sync_zeros"])
    return raw, source["synchformer"]


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def _run_encoded(plan: Plan, callback) -> Result:
    """Sample one window from a fused context; latents only."""
    r, model, length = plan.request, plan.model, plan.length
    ctx, settings, batch = r.context, plan.settings, r.batch
    negative = None
    if r.negative_prompt is not None:
        conds = conditions.Conditions(text=r.negative_prompt, video=ctx.conds.video, audio=ctx.conds.audio)
        negative = conditions.fuse(model, conds, batch=ctx.tokens.shape[0], modality_scale=ctx.modality_scale).cpu()
    known = Known(plan.known_latents, plan.keep) if plan.known_latents is not None else None
    tokens, rng, noise = ctx.tokens, None, None
    if settings.noise == "official":  # noise first, then the conditioners' draws (the core decides how)
        rng, noise, refused = official_start(model, settings, (batch, model.config.io_channels, length), ctx.conds,
                                             modality_scale=ctx.modality_scale)
        tokens = refused if refused is not None else tokens
    latents = generation.sample(model, tokens, settings, batch=batch, length=length, negative=negative,
                     init=plan.variation_latents, strength=float(r.strength), known=known, callback=callback,
                     noise=noise, rng=rng)
    fps = frames_per_second(model)
    keep = plan.keep.clone() if plan.keep is not None else None
    return Result(None, int(model.config.sample_rate), latents, list(plan.notes),
                  seconds=min(plan.duration, length / fps), keep=keep)


def _window_latents(model, duration: float) -> int:
    if model.fixed_length:
        return model.latent_length
    return max(1, int(math.ceil(duration * frames_per_second(model))))


def _encode_conditions(plan: Plan, window: Window, generator, callback, report: list) -> conditions.Conditions:
    r, model, batch = plan.request, plan.model, plan.request.batch
    conds = conditions.Conditions()
    if isinstance(r.prompt, conditions.Condition):
        conds.text = r.prompt
    elif model.config.conditioner("text_prompt") is not None:
        conds.text = conditions.encode_text(model, r.prompt, batch=batch)
    if isinstance(plan.visual, conditions.Condition):
        conds.video = plan.visual
    elif plan.visual is not None:
        conds.video = conditions.encode_video(model, plan.visual, start=window.start, batch=batch, callback=callback,
                                     sync=None if r.sync_features else False)
        report.append(conds.video.report)
    return conds


def _run_window(plan: Plan, window: Window, stages: Stages) -> Result:
    """One model window from raw inputs: encode, sample, decode, paste the kept audio back."""
    r, model, batch, settings = plan.request, plan.model, plan.request.batch, window.settings
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    length = _window_latents(model, window.duration)
    n_out = min(int(round(window.duration * cfg.sample_rate)), length * ratio)
    report = []
    rng = noise = None
    if settings.noise == "official":  # the official order: initial noise, then the conditioners' draws
        rng = OfficialRNG(settings.seed, next(model.backbone.parameters()).device)
        noise = rng.initial_noise((batch, cfg.io_channels, length))
        generator = rng.on_device
    else:
        generator = torch.Generator(device="cpu").manual_seed(int(settings.seed + 1) & 0xFFFF_FFFF_FFFF_FFFF)
    conds = _encode_conditions(plan, window, generator, stages.sub("encode"), report)
    # audio prompt: explicit, else the init audio for inpainting / completion (official training)
    used = conditions.audio_prompt_seconds(model)  # a file is decoded only as far as the conditioner looks
    prompt_audio = audio_input(window.audio_prompt, max_seconds=used + 0.5 if used else None, what="audio prompt")
    known = init_latents = original = None
    if window.init is not None:
        original, init_latents, known, prompt_audio = _encode_init(plan, window, length, generator, prompt_audio,
                                                                   report)
    if window.previous_latents is not None and window.previous_keep_frames > 0:
        kept = window.previous_keep_frames
        keep = torch.zeros(length)
        keep[:kept] = 1.0
        latents = torch.zeros(window.previous_latents.shape[0], window.previous_latents.shape[1], length)
        latents[..., :kept] = window.previous_latents[..., -kept:]
        known = Known(latents, keep)
    if cfg.conditioner("audio_prompt") is not None and prompt_audio is not None:
        conds.audio = conditions.encode_audio_prompt(model, prompt_audio[0], sample_rate=prompt_audio[1], batch=batch,
                                            generator=generator, mask=window.audio_prompt_mask)
        report.append(f"audio prompt: {conds.audio.report or 'given'}")
    context = conditions.fuse(model, conds, batch=batch, modality_scale=r.modality_scale, generator=generator)
    negative = None
    if isinstance(r.negative_prompt, conditions.Condition) or r.negative_prompt:
        text = (r.negative_prompt if isinstance(r.negative_prompt, conditions.Condition)
                else conditions.encode_text(model, r.negative_prompt, batch=batch))
        negative_conds = conditions.Conditions(text=text, video=conds.video, audio=conds.audio)
        negative = conditions.fuse(model, negative_conds, batch=batch, modality_scale=r.modality_scale,
                                   generator=generator)
    report.append(conds.summary())
    variation = window.init is not None and window.inpaint is None and window.keep_seconds is None \
        and window.strength < 1
    latents = generation.sample(model, context, settings, batch=batch, length=length, negative=negative,
                     init=init_latents if variation else None, strength=window.strength, known=known,
                     callback=stages.sub("sample"), noise=noise, rng=rng)
    audio = generation.decode(model, latents, callback=stages.sub("decode"))
    if original is not None and known is not None and (window.inpaint is not None or window.keep_seconds is not None):
        # keep the given audio exactly outside the regenerated parts, blending across the seams
        n = min(audio.shape[-1], original.shape[-1])
        kept = waveform_keep(known.keep, audio.shape[-1])[:n]
        audio[..., :n] = kept * original[..., :n].expand(audio.shape[0], -1, -1) + (1 - kept) * audio[..., :n]
    return Result(audio[..., :n_out].contiguous(), cfg.sample_rate, latents, [line for line in report if line],
                  seconds=n_out / cfg.sample_rate)


def _encode_init(plan: Plan, window: Window, length: int, generator, prompt_audio, report: list):
    """The given audio of a window: ``(original waveform, its latents, Known or None, audio prompt)``."""
    model = plan.model
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    wave, sr = window.init
    prepared, note = conditions.prepare_audio(model, wave, sr, max_seconds=length * ratio / cfg.sample_rate)
    if note:
        report.append(f"init audio: {note}")
    original = prepared[..., : length * ratio]
    padded = torch.nn.functional.pad(original, (0, max(0, length * ratio - original.shape[-1])))
    init_latents, _ = generation.encode(model, padded, cfg.sample_rate, generator=generator)
    known = None
    if window.inpaint is not None:
        keep = keep_mask_from_ranges(model, length, window.inpaint)
        known = Known(init_latents, keep)
        if prompt_audio is None:
            kept = waveform_keep((keep > 0.999).float(), padded.shape[-1])
            prompt_audio = (padded.clone() * kept, cfg.sample_rate)
        report.append("inpainting " + ", ".join(f"{a:g}–{b:g} s" for a, b in window.inpaint))
    elif window.keep_seconds is not None:
        fps = frames_per_second(model)
        keep_frames = min(int(round(min(window.keep_seconds, original.shape[-1] / cfg.sample_rate) * fps)), length)
        if keep_frames >= length:
            raise RequestError("keep_seconds", f"keep_seconds {window.keep_seconds:g} covers the whole "
                               f"{length * ratio / cfg.sample_rate:.2f} s window: nothing to complete")
        keep = torch.zeros(length)
        keep[:keep_frames] = 1.0
        known = Known(init_latents, keep)
        if prompt_audio is None:
            prompt_audio = (original[..., : keep_frames * ratio], cfg.sample_rate)
        report.append(f"completion after {keep_frames / fps:.2f} s")
    return original, init_latents, known, prompt_audio


def _run_long(plan: Plan, stages: Stages) -> Result:
    """Overlapping windows, each conditioned on the previous one's audio (the official music
    continuation setup: audio prompt = the previous window) with its overlap latents kept, then
    joined with an equal-gain crossfade over the overlap."""
    r, model, settings = plan.request, plan.model, plan.settings
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    length = model.latent_length if model.fixed_length else _window_latents(model, cfg.sample_size / cfg.sample_rate)
    window_s = length * ratio / cfg.sample_rate
    overlap = max(1, int(round(length * r.window_overlap)))
    hop = length - overlap
    n_total = int(round(plan.duration * cfg.sample_rate))
    n_windows = 1 + max(0, math.ceil((math.ceil(n_total / ratio) - length) / hop))
    report = [f"long-form: {n_windows} windows of {window_s:.2f} s, overlap {overlap * ratio / cfg.sample_rate:.2f} s"]
    audio = joined = previous = None  # joined: window 0's latents, then each later window minus its kept overlap
    total_callback = stages.callback
    for index in range(n_windows):
        sub = Stages((lambda s, t, i, w=index: total_callback(w * 1000 + s, n_windows * 1000, i))
                     if total_callback else None, encode=1, sample=8, decode=2)
        window_settings = replace(settings, seed=settings.seed + WINDOW_SEED_STEP * index)
        window = Window(start=r.start + index * hop * ratio / cfg.sample_rate, duration=window_s,
                        settings=window_settings)
        if index == 0:
            window.init, window.keep_seconds = plan.init, r.keep_seconds
            window.audio_prompt, window.audio_prompt_mask = r.audio_prompt, r.audio_prompt_mask
        else:
            # the previous window as audio prompt, clamped to [-1, 1] like any audio file input
            if cfg.conditioner("audio_prompt") is not None:
                window.audio_prompt = (previous.audio.clamp(-1, 1), cfg.sample_rate)
            window.audio_prompt_mask = False
            window.previous_latents, window.previous_keep_frames = previous.latents, overlap
        res = _run_window(plan, window, sub)
        wave = res.audio
        if wave.shape[-1] < length * ratio:
            wave = torch.nn.functional.pad(wave, (0, length * ratio - wave.shape[-1]))
        audio = wave if audio is None else crossfade_join(audio, wave, overlap * ratio)
        joined = res.latents if joined is None else torch.cat([joined, res.latents[..., overlap:]], dim=-1)
        previous = Result(wave, res.sample_rate, res.latents)
        report += [f"window {index + 1}: " + "; ".join(res.report[-1:])]
    # ``latents``: the windows joined in latent space (each later window's first ``overlap`` frames were
    # kept equal to the previous window's last ones); decoding them gives the clip without crossfades
    n_latents = int(math.ceil(n_total / ratio))
    return Result(audio[..., :n_total].contiguous(), cfg.sample_rate, joined[..., :n_latents].contiguous(), report,
                  seconds=plan.duration)


def crossfade_join(a: torch.Tensor, b: torch.Tensor, overlap: int) -> torch.Tensor:
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
# Sampler checks and reports (the node graph's two samplers)
# ----------------------------------------------------------------------------------------------
def sampler_model_notes(model, mode: str) -> list[str]:
    """Whether ``model`` suits the sampler ``mode`` ("base" or "turbo"): a v-objective model cannot
    run the few-step Turbo sampler (:class:`RequestError` on ``settings.mode``, phrased to follow
    the name of the caller's model input); a Turbo base/teacher model in the Turbo sampler, or the
    distilled Turbo student in the Base sampler, runs with a warning (returned as notes)."""
    role = getattr(model, "info", {}).get("role", "")
    if mode == "turbo":
        if model.objective != "rectified_flow":
            raise RequestError("settings.mode", f"is {model.config.variant} (v-objective): the Turbo sampler needs "
                               "an AudioX-Turbo model; use AudioX Sampler for this one")
        if role == "base":
            return ["warning: this is a Turbo base/teacher model, not the distilled student; a few Turbo steps "
                    "give rough audio — AudioX Sampler with ~50–100 steps suits it"]
    elif model.objective == "rectified_flow" and role != "base":
        return ["warning: this is the distilled Turbo student; it was trained for the 4-step AudioX Turbo "
                "Sampler (CFG and many steps are not what it learned)"]
    return []


def sampling_report(plan: Plan, result: Result, model_name: str, notes: Sequence[str] = (),
                    mask_description: Optional[str] = None) -> str:
    """The text a sampler shows after a latent request: settings, clip count × seconds and model,
    then the mask (one window only), the notes and the run's report (long-form: its first line)."""
    s, latents = plan.settings, result.latents
    what = (f"{s.mode} sampler: {s.steps} steps" + ("" if s.mode == "turbo" else f", {s.sampler}, cfg {s.cfg_scale:g}")
            + f", seed {s.seed}" + (" (official noise)" if s.noise == "official" else "")
            + f"; {latents.shape[0]} × {plan.duration:.2f} s ({latents.shape[-1]} latents) on {model_name}")
    mask_lines = [mask_description] if mask_description is not None and not plan.long_form else []
    return "\n".join([what] + mask_lines + list(notes) + (result.report[:1] if plan.long_form else result.report))
