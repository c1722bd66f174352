"""Per-modality conditions: encode text, video (+ sync) and audio prompts, then fuse them.

A :class:`Condition` is one modality's conditioner output ``[B, N, D]`` plus what produced it.
Conditions are computed once and can be cached, swapped and reused between generations (the
ComfyUI encoder nodes output them).  :func:`fuse` turns the three into the backbone's context.

Missing modalities follow the official conventions exactly (the conditioners of
``audiox/models/conditioners.py`` and ``audiox_turbo/models/conditioners.py``):

=========  ===================================================================================
video      the learned ``empty_visual_feat`` (what the official code produces for all-zero frames)
text       T5 of the empty string ("" → one EOS token, the rest zero rows)
audio      v1: the learned ``empty_audio_feat``; v2 (MMDiT/Turbo): the VAE encoding of silence;
           mel (AudioX-MAF): the log-mel of 10 s of silence
=========  ===================================================================================

Absent inputs never run the big encoders (CLIP, VAE encoder): the conditioners return the same
tensors without that work, which removes the official code's fixed cost for T2A.

Where this sits: the networks themselves live in :mod:`audiox_core.conditioning` (no decisions);
this module is the inference side (user inputs → conditions → fused context); the training side
(prepared batch tensors → conditions with gradients, input masking, CFG dropout) is
:mod:`audiox_core.training.conditions`.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence, Union

import torch

from .errors import FieldError, InputError

log = logging.getLogger(__name__)

MODALITIES = ("video", "text", "audio")
_COND_ID = {"video": "video_prompt", "text": "text_prompt", "audio": "audio_prompt"}

#: Official task sentences used when a video is given without a prompt (AudioX README).
DEFAULT_PROMPTS = {"audio": "Generate general audio for the video", "music": "Generate music for the video"}


def model_fingerprint(model) -> str:
    """Short id of a model's conditioning interface: conditions from different models don't mix."""
    fp = getattr(model, "_cond_fingerprint", None)
    if fp is None:
        c = model.config
        desc = f"{c.variant}|{c.cond_dim}|{[(s.id, s.kind) for s in c.conditioners]}|{c.sample_rate}|{id(model)}"
        fp = hashlib.sha1(desc.encode()).hexdigest()[:12]
        model.__dict__["_cond_fingerprint"] = fp
    return fp


@dataclass
class Condition:
    """One modality's conditioner output.

    ``tokens``: ``[B, N, D]`` (float32 on the CPU unless moved); ``present``: per item, whether a
    real input was encoded (False = the absent convention); ``source``: :func:`model_fingerprint`
    of the model that made it; ``report``: what was done to the input (crop, pad, resample ...).
    """

    modality: str
    tokens: torch.Tensor
    present: tuple = ()
    source: str = ""
    report: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.tokens.shape[0])

    def repeat_to(self, batch: int) -> "Condition":
        """Broadcast a batch-1 condition to ``batch`` items (other sizes must already match)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise InputError(f"the {self.modality} condition has batch {self.batch}, cannot use it for batch {batch}")
        return replace(self, tokens=self.tokens.expand(batch, -1, -1), present=tuple(self.present) * batch)

    def scaled(self, s: float) -> "Condition":
        return replace(self, tokens=self.tokens * float(s))


@dataclass
class Conditions:
    video: Optional[Condition] = None
    text: Optional[Condition] = None
    audio: Optional[Condition] = None

    def get(self, m: str) -> Optional[Condition]:
        return getattr(self, m)

    def summary(self) -> str:
        parts = []
        for m in MODALITIES:
            c = self.get(m)
            if c is None:
                parts.append(f"{m}: absent")
            else:
                state = "given" if all(c.present) else ("absent" if not any(c.present) else "mixed")
                parts.append(f"{m}: {state}" + (f" ({c.report})" if c.report else ""))
        return "; ".join(parts)


def _param(module: torch.nn.Module) -> torch.Tensor:
    return next(module.parameters())


_CONDITIONER = {"video": "video_conditioner", "text": "text_spec", "audio": "audio_conditioner"}


def require_condition(model, modality: str, *, field: str = "model") -> None:
    """A :class:`FieldError` about ``field`` unless ``model`` has a ``modality`` ("video", "text" or
    "audio") condition."""
    if getattr(model, _CONDITIONER[modality]) is None:
        raise FieldError(field, f"{model.config.variant} has no {modality} condition")


def _check_source(model, cond: Condition) -> None:
    if cond.source and cond.source != model_fingerprint(model):
        raise InputError(f"the {cond.modality} condition was encoded for another model; re-encode it with "
                         f"the model you sample with")


# ----------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------
def encode_text(model, prompts: Union[str, Sequence[str]], *, batch: Optional[int] = None,
                encoder=None) -> Condition:
    """T5 tokens of ``prompts`` (a string for all items, or one per item), zero rows past the end.

    ``encoder``: a :class:`~audiox_core.conditioning.t5.T5TextEncoder` to use instead of the one
    attached to ``model`` (the ComfyUI text-encoder node passes its own T5 this way).
    """
    spec = model.text_spec
    if spec is None:
        raise InputError(f"{model.config.variant} has no text conditioner")
    enc = encoder if encoder is not None else model.text_encoder
    if enc is None:
        raise InputError("this model needs a T5 text encoder (t5-base) and none is attached: load one from "
                         "models/text_encoders and connect it")
    if isinstance(prompts, str):
        prompts = [prompts] * (batch or 1)
    prompts = [("" if p is None else str(p)) for p in prompts]
    if batch is not None and len(prompts) != batch:
        raise InputError(f"got {len(prompts)} prompts for a batch of {batch}")
    max_len = int(spec.config.get("max_length", 128))
    tokens, mask = enc.encode(prompts, max_length=max_len)
    if tokens.shape[-1] != model.config.cond_dim:
        raise InputError(f"the text encoder outputs {tokens.shape[-1]}-d tokens but the model conditions on "
                         f"{model.config.cond_dim}-d: load the T5 that belongs to this model")
    present = tuple(bool(p.strip()) for p in prompts)
    report = f"{int(mask.sum(1).max())} of {max_len} tokens used" if any(present) else "empty prompt"
    return Condition("text", tokens.float().cpu(), present, model_fingerprint(model), report)


# ----------------------------------------------------------------------------------------------
# video
# ----------------------------------------------------------------------------------------------
@dataclass
class VisualInput:
    """A video or still image from a file, or frames in memory (ComfyUI IMAGE ``[N,H,W,3]`` 0..1 + fps).

    ``still``: an image held for the whole window (image-to-audio).
    """

    source: object = None  # path / bytes / file object
    frames: Optional[torch.Tensor] = None  # [N, H, W, 3], float 0..1 or uint8
    fps: Optional[float] = None
    still: bool = False

    def __post_init__(self):
        if (self.source is None) == (self.frames is None):
            raise InputError("give either a video/image file or frames, not both or neither")
        if self.frames is not None:
            f = self.frames
            if not torch.is_tensor(f) or f.dim() not in (3, 4) or f.shape[-1] not in (3, 4):
                raise InputError(f"frames must be an IMAGE tensor [N, H, W, 3], got "
                                 f"{tuple(f.shape) if torch.is_tensor(f) else type(f).__name__}")
            if f.dim() == 4 and f.shape[0] == 0:
                raise InputError("the video has no frames")
            if f.dim() == 3 or f.shape[0] == 1:
                self.still = True
            if not self.still and (self.fps is None or not float(self.fps) > 0):
                raise InputError("frames given without a frame rate: connect the video's fps")

    def sample(self, *, fps: float, start: float, duration: float, size: int, resize_mode: str = "stretch",
               callback=None) -> tuple[torch.Tensor, str]:
        """Frames ``uint8 [T, 3, size, size]`` at ``fps`` covering ``[start, start+duration)``."""
        from . import media
        if self.frames is not None:
            f = self.frames if self.frames.dim() == 4 else self.frames[None]
            src_fps = self.fps if self.fps else fps
            frames, _, report = media.frames_from_images(f[..., :3], src_fps, fps=fps, start=start,
                                                         duration=duration, size=size, resize_mode=resize_mode)
        else:
            frames, _, report = media.sample_frames(self.source, fps=fps, start=start, duration=duration,
                                                    size=size, resize_mode=resize_mode, callback=callback)
        if self.still and frames.shape[0] > 1:
            frames = frames[:1].expand(frames.shape[0], -1, -1, -1)
        return frames, report


def encode_video(model, visual: Optional[Union[VisualInput, torch.Tensor]] = None, *, start: float = 0.0,
                 sync: Optional[torch.Tensor] = None, synchformer=None, batch: int = 1,
                 resize_mode: str = "stretch", sync_resize_mode: str = "crop", callback=None) -> Condition:
    """CLIP video tokens (``+ sync`` features for MAF models) for the model's video window.

    ``visual``: a :class:`VisualInput` (sampled at the model's fps/size over ``[start,
    start + window)``), a ready ``uint8/float [B, T, 3, H, W]`` tensor in 0..255, or None (absent →
    the learned empty feature).  For sync-conditioned models the Synchformer features are computed
    from the same input at 25 fps unless ``sync`` is given; a missing Synchformer is an error, not a
    silent zero (pass ``sync=False`` to deliberately feed zeros, as the official gradio does).
    """
    vc = model.video_conditioner
    if vc is None:
        raise InputError(f"{model.config.variant} has no video conditioner")
    fp = model_fingerprint(model)
    if visual is None:
        tokens = vc(None, batch_size=batch).float().cpu()
        return Condition("video", tokens, (False,) * batch, fp, "no video: learned empty feature")
    reports = []
    if isinstance(visual, VisualInput):
        frames, rep = visual.sample(fps=vc.fps, start=start, duration=vc.duration, size=vc.image_size,
                                    resize_mode=resize_mode, callback=callback)
        reports.append(f"CLIP: {rep}")
        frames = frames.unsqueeze(0)
    else:
        frames = visual
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
    if getattr(vc, "with_sync", False):
        if sync is None:
            if not isinstance(visual, VisualInput):
                raise InputError("this model also needs Synchformer sync features: pass sync= or a VisualInput")
            if synchformer is None:
                synchformer = model.synchformer
            if synchformer is None:
                raise InputError(f"{model.config.variant} conditions on Synchformer sync features: load "
                                 "synchformer_state_dict.pth (Synchformer loader / --synchformer) and connect it, "
                                 "or deliberately feed zero sync features (sync zeros / --sync-zeros, as the "
                                 "official gradio app)")
            sync, rep = encode_sync(synchformer, visual, start=start, duration=vc.duration,
                                    tokens=vc.sync_tokens, resize_mode=sync_resize_mode, callback=callback)
            reports.append(f"sync: {rep}")
        elif sync is False:
            sync = None
            reports.append("sync: zeros (deliberately)")
        else:
            if sync.dim() == 2:
                sync = sync.unsqueeze(0)
    elif sync is not None and sync is not False:
        raise InputError(f"{model.config.variant} has no sync branch; do not pass sync features")
    p = _param(vc)
    with torch.no_grad():
        tokens = vc(frames.to(p.device), sync.to(p.device, p.dtype) if torch.is_tensor(sync) else None)
    tokens = tokens.float().cpu()
    if tokens.shape[0] == 1 and batch > 1:
        tokens = tokens.expand(batch, -1, -1)
    present = tuple(bool(frames[min(i, frames.shape[0] - 1)].any()) for i in range(tokens.shape[0]))
    return Condition("video", tokens, present, fp, "; ".join(reports))


SYNC_FPS = 25


def encode_sync(synchformer, visual: VisualInput, *, start: float, duration: float, tokens: int,
                resize_mode: str = "crop", callback=None) -> tuple[torch.Tensor, str]:
    """Synchformer features ``[1, tokens, D]`` of ``duration`` seconds at 25 fps from ``start``.

    ``tokens`` is what the video conditioner's ``proj_sync`` takes (240 = 30 windows × 8 for 10 s).
    """
    size = synchformer.cfg.image_size
    frames, rep = visual.sample(fps=SYNC_FPS, start=start, duration=duration, size=size, resize_mode="stretch"
                                if resize_mode == "squash" else "center_crop")
    feats = synchformer.encode_raw(frames.unsqueeze(0), resize_mode=resize_mode, callback=callback)
    if feats.shape[1] != tokens:
        raise InputError(f"Synchformer gave {feats.shape[1]} sync tokens for {duration} s but the video "
                         f"conditioner expects {tokens}")
    return feats.float().cpu(), rep


# ----------------------------------------------------------------------------------------------
# video inputs of a node graph: which source, which sync features
# ----------------------------------------------------------------------------------------------
#: How sync-conditioned (MAF/Turbo) models get their Synchformer features: computed from the same
#: video, or zeros (no sync information, as the official gradio demo and the shipped demo model do).
SYNC_MODES = ("synchformer", "zeros")


def connected_visual_input(video, images) -> str:
    """Which of the two visual inputs (a ``video`` or ``images`` frames) is given: ``"video"`` or
    ``"images"``; :class:`FieldError` when both or neither are."""
    if video is not None and images is not None:
        raise FieldError("images", "and input 'video' are both connected; connect one of them")
    if video is None and images is None:
        raise FieldError("video", "is not connected: connect a VIDEO (Load Video) to 'video' or IMAGE frames "
                         "(+ their fps) to 'images'")
    return "video" if video is not None else "images"


def visual_from_frames(frames, fps: float, *, field: str = "images", still: bool = False) -> VisualInput:
    """A :class:`VisualInput` from IMAGE frames ``[N, H, W, 3]`` and their frame rate (``fps`` <= 0:
    none; fine for one frame).  ``still``: only the first frame (one image ``[H, W, 3]`` is fine too),
    held for the whole window.  :class:`FieldError` names ``field`` (or ``"fps"``) when the frames are
    unusable."""
    if still and torch.is_tensor(frames) and frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[-1] not in (3, 4):
        raise FieldError(field, "must be IMAGE frames [N, H, W, 3], got "
                         f"{tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__}")
    if frames.shape[0] == 0:
        raise FieldError(field, "has no frames")
    if still:
        if frames.shape[0] > 1:
            log.info("%s: using the first of %d images", field, frames.shape[0])
        frames = frames[:1]
    elif frames.shape[0] > 1 and not float(fps) > 0:
        raise FieldError("fps", f"must be > 0 for {frames.shape[0]} frames (the frames' own frame rate)")
    return VisualInput(frames=frames, fps=float(fps) if float(fps) > 0 else None, still=still)


def resolve_sync(model, mode: str, features: Optional[torch.Tensor] = None, synchformer=None) -> tuple:
    """``(sync, synchformer)`` for :func:`encode_video` from a graph's sync choice: precomputed
    ``features`` ``[B, tokens, dim]`` win, then ``mode`` "zeros" (``sync=False``), else the
    ``synchformer`` given (an error naming "synchformer" when there is none).  Models without a sync
    branch get ``(None, None)``; inputs given to them are ignored with a warning."""
    if mode not in SYNC_MODES:
        raise FieldError("sync", f"must be one of {list(SYNC_MODES)}, got {mode!r}")
    vc = model.video_conditioner
    if not getattr(vc, "with_sync", False):
        if synchformer is not None or features is not None:
            log.warning("%s has no sync branch; the Synchformer input is ignored", model.config.variant)
        return None, None
    if features is not None:
        if tuple(features.shape[1:]) != (vc.sync_tokens, vc.dim):
            raise FieldError("sync_features", f"has {tuple(features.shape[1:])} tokens but this model takes "
                             f"({vc.sync_tokens}, {vc.dim})")
        return features, None
    if mode == "zeros":
        return False, None
    if synchformer is None:
        raise FieldError("synchformer", f"is not connected: {model.config.variant} conditions on Synchformer sync "
                         "features — load synchformer_state_dict.pth with 'AudioX Synchformer Loader' and connect "
                         "it, or set 'sync' to 'zeros'")
    return None, synchformer


def keep_long_form_source(cond: Condition, visual: VisualInput, *, start: float, resize: str, sync,
                          synchformer=None) -> Condition:
    """Record on a video condition what a long-form generation needs to encode its later windows
    itself (the visual source, ``start``, ``resize``, zero sync or the ``synchformer`` given;
    read by :mod:`audiox_core.task`).  A condition made from precomputed sync features (``sync`` a
    tensor) covers one window only and records nothing."""
    if sync is None or sync is False:
        cond.extra["long_form"] = {"visual": visual, "start": float(start), "resize": resize,
                                   "sync_zeros": sync is False, "synchformer": synchformer}
    return cond


# ----------------------------------------------------------------------------------------------
# audio prompt
# ----------------------------------------------------------------------------------------------
def prepare_audio(model, waveform: torch.Tensor, sample_rate: int, *,
                  max_seconds: Optional[float] = None) -> tuple[torch.Tensor, str]:
    """Any-rate, any-channel audio ``[C, N]`` or ``[B, C, N]`` → the model's rate and channels.

    ``max_seconds``: only the first seconds are needed — the input is cut (with a margin for the
    resampling filter, so the kept samples are exactly what resampling the whole input gives) before
    it is resampled, so the work and memory follow the span used, not the length of the input."""
    from . import media
    if not torch.is_tensor(waveform) or waveform.dim() not in (2, 3):
        raise InputError(f"audio must be a [C, N] or [B, C, N] tensor, got "
                         f"{tuple(waveform.shape) if torch.is_tensor(waveform) else type(waveform).__name__}")
    if waveform.shape[-1] == 0:
        raise InputError("the audio input is empty (0 samples)")
    x = waveform if waveform.dim() == 3 else waveform.unsqueeze(0)
    cfg = model.config
    notes = []
    keep_out = None
    if max_seconds is not None:
        sr_in = int(sample_rate)
        keep_out = int(math.ceil(max_seconds * cfg.sample_rate))
        margin = 16 * int(math.ceil(max(1.0, sr_in / cfg.sample_rate))) + 256  # > the sinc filter's reach
        need_in = int(math.ceil(max_seconds * sr_in)) + margin
        if x.shape[-1] > need_in:
            x = x[..., :need_in]
    from .finite import all_finite
    if not all_finite(x):  # only the part that is used (a slice-wise check: bounded memory)
        raise InputError("the audio input contains NaN or infinite values")
    if int(sample_rate) != cfg.sample_rate:
        x = media.resample(x.float(), int(sample_rate), cfg.sample_rate)
        notes.append(f"resampled {sample_rate} → {cfg.sample_rate} Hz")
    if keep_out is not None and x.shape[-1] > keep_out:
        x = x[..., :keep_out]
    if x.shape[1] != cfg.audio_channels:
        notes.append(f"{x.shape[1]} → {cfg.audio_channels} channels")
        x = media.to_channels(x.float(), cfg.audio_channels)
    return x.float(), ", ".join(notes)


def audio_prompt_seconds(model) -> Optional[float]:
    """How many seconds of an audio prompt the model's audio conditioner uses (the first ones; the
    rest is cropped), or None for a model without one."""
    ac = model.audio_conditioner
    if ac is None:
        return None
    window = max(int(getattr(ac, "prompt_samples", 0) or 0),
                 int(getattr(ac, "num_latents", 0) or getattr(ac, "latent_seq_len", 0) or 0)
                 * int(model.config.vae.downsampling_ratio))
    return window / model.config.sample_rate if window else None


def audio_prompt_waveform(model, waveform: torch.Tensor, sample_rate: int, *, inpaint: Optional[Sequence] = None,
                          keep_seconds: Optional[float] = None) -> torch.Tensor:
    """The part of ``waveform`` the model's audio conditioner uses (its prompt window, the first
    seconds, with a half-second margin for resampling; cut first, so nothing copies the rest) and,
    as the official code trained inpainting and completion, with the ``inpaint`` ranges (seconds)
    blanked or only the first ``keep_seconds`` kept.  The input is not changed.
    :class:`FieldError` ("mask") for a range that starts after the end of the audio."""
    used = audio_prompt_seconds(model)
    if used is not None:
        waveform = waveform[..., : int(math.ceil((used + 0.5) * sample_rate))]
    total = waveform.shape[-1] / sample_rate
    if inpaint is not None:
        waveform = waveform.clone()
        for start, end in inpaint:
            if start >= total:
                raise FieldError("mask", f"range {start:g}–{end:g} s starts after the end of the {total:.2f} s audio")
            waveform[..., int(round(start * sample_rate)):int(round(min(end, total) * sample_rate))] = 0
    elif keep_seconds is not None:
        if keep_seconds >= total:
            log.info("keep %.2f s covers the whole %.2f s audio prompt", keep_seconds, total)
        waveform = waveform[..., : max(1, int(round(min(keep_seconds, total) * sample_rate)))]
    return waveform


def encode_audio_prompt(model, audio: Optional[torch.Tensor] = None, *, sample_rate: Optional[int] = None,
                        batch: int = 1, generator: Optional[torch.Generator] = None,
                        mask: Optional[bool] = None, callback=None) -> Condition:
    """Audio-prompt tokens.  ``audio``: ``[C, N]``/``[B, C, N]`` at ``sample_rate`` (any), or None
    (absent → the model's empty audio).  ``mask``: None = the model config's random span masking
    (official), False = off.  The prompt is cropped / right-padded to the conditioner's window."""
    ac = model.audio_conditioner
    if ac is None:
        raise InputError(f"{model.config.variant} has no audio-prompt conditioner")
    fp = model_fingerprint(model)
    report = ""
    if audio is not None:
        # the conditioner keeps at most its prompt window (the first samples): resample only that
        audio, report = prepare_audio(model, audio, sample_rate or model.config.sample_rate,
                                      max_seconds=audio_prompt_seconds(model))
        if audio.shape[0] == 1 and batch > 1:
            audio = audio.expand(batch, -1, -1)
        batch = audio.shape[0]
    with torch.no_grad():
        tokens = ac(audio, batch_size=batch, generator=generator, mask=mask, callback=callback)
    present = (False,) * batch if audio is None else tuple(bool(a.any()) for a in audio)
    if audio is None:
        report = "no audio prompt: " + ("learned empty feature" if hasattr(ac, "empty_audio_feat")
                                        else "encoded silence (official convention)")
    return Condition("audio", tokens.float().cpu(), present, fp, report)


# ----------------------------------------------------------------------------------------------
# fusion
# ----------------------------------------------------------------------------------------------
def complete(model, conds: Conditions, batch: int, *, generator=None) -> Conditions:
    """Fill every missing modality with the official absent convention and match the batch."""
    out = {}
    for m in MODALITIES:
        c = conds.get(m)
        if c is None:
            if m == "text":
                c = encode_text(model, "", batch=batch)
            elif m == "video":
                c = encode_video(model, None, batch=batch)
            else:
                c = encode_audio_prompt(model, None, batch=batch, generator=generator)
        _check_source(model, c)
        out[m] = c.repeat_to(batch)
    return Conditions(**out)


def fuse(model, conds: Conditions, *, batch: int = 1, modality_scale: Optional[Sequence[float]] = None,
         generator=None) -> torch.Tensor:
    """The backbone's cross-attention context ``[B, N, D]`` in the backbone's input dtype.

    Computed on the MAF block's device (MAF models) or the tokens' device (others), so only the
    parts that run here need to be on the accelerator; :func:`~audiox_core.generate.sample`
    moves the context to the backbone's device.
    """
    full = complete(model, conds, batch, generator=generator)
    if model.maf_block is not None:
        mp = _param(model.maf_block)
        dev, dt = mp.device, mp.dtype
    else:
        dev, dt = full.text.tokens.device, _param(model.backbone).dtype
    args = [full.get(m).tokens.to(dev, dt) for m in MODALITIES]
    if modality_scale is not None and model.maf_block is None:
        args = [a * float(s) for a, s in zip(args, modality_scale)]
        modality_scale = None
    with torch.no_grad():
        return model.fuse(*args, modality_scale=modality_scale)


# ----------------------------------------------------------------------------------------------
# fusion in a node graph: conditions encoded earlier, checked, fused and reported
# ----------------------------------------------------------------------------------------------
def checked_conditions(model, **given: Condition) -> Conditions:
    """The conditions connected for ``model`` (keywords ``video``, ``text``, ``audio``), checked:
    each on its own modality, encoded for this model, one batch size; and text present where
    'no text' would need the T5 encoder.  :class:`FieldError` names the modality at fault."""
    fingerprint = model_fingerprint(model)
    for name, cond in given.items():
        if cond.modality != name:
            raise FieldError(name, f"got a {cond.modality} condition; connect it to '{cond.modality}'")
        if cond.source and cond.source != fingerprint:
            raise FieldError(name, "was encoded for another model; encode it with the model connected here")
    if given.get("text") is None and model.text_spec is not None and model.text_encoder is None:
        raise FieldError("text", f"is not connected, but {model.config.variant} conditions on text and 'no text' "
                         "is T5 of the empty string: connect an AudioX Text Encoder (the prompt may be empty)")
    batches = {c.batch for c in given.values()} - {1}
    if len(batches) > 1:
        raise FieldError("audio", f"the conditions have different batch sizes {sorted(batches)}")
    return Conditions(**given)


def gate_report(model, modality_scale: Sequence[float], conds: Conditions) -> tuple[str, Optional[torch.Tensor]]:
    """What a fusion did, as text (MAF's learned gates or the concatenation, the scales, what each
    condition holds), and MAF's last gates ``[B, 3]`` (video, text, audio) on the CPU or None."""
    gates = model.maf_gates()
    scaled = tuple(modality_scale) != (1.0, 1.0, 1.0)
    if gates is not None:
        lines = ["MAF gates (learned, mean over batch): video {:.3f}, text {:.3f}, audio {:.3f}".format(
            *gates.float().mean(0).tolist())]
        if scaled:
            lines.append("scaled by video {:g}, text {:g}, audio {:g}".format(*modality_scale)
                         + " (0 = left out of MAF's expert attention)")
    else:
        lines = [f"{model.config.variant} has no MAF block: conditions are concatenated"
                 + ("; tokens scaled by video {:g}, text {:g}, audio {:g}".format(*modality_scale) if scaled else "")]
    lines.append(conds.summary())
    return "\n".join(lines), (gates.float().cpu() if gates is not None else None)


def checked_modality_scale(modality_scale: Sequence[float]) -> tuple:
    """``(video, text, audio)`` scales as floats; all three 0 is refused (:class:`FieldError`)."""
    if all(float(s) == 0 for s in modality_scale):
        raise FieldError("text_scale", "all three scales are 0: keep at least one modality above 0")
    return tuple(float(s) for s in modality_scale)


def gate_bars(gates: Optional[torch.Tensor], modality_scale: Optional[Sequence[float]]) -> list:
    """MAF's learned gates ``[B, 3]`` (mean over the batch) and the scales, as one bar chart entry
    (the frontend's gate bars, web/audiox.js); empty for models without MAF (``gates`` None)."""
    if gates is None:
        return []
    mean = [float(v) for v in gates.float().reshape(-1, 3).mean(0).tolist()]
    scale = [float(v) for v in (modality_scale or (1.0, 1.0, 1.0))]
    return [{"modalities": list(MODALITIES), "gates": mean, "scale": scale}]


def fuse_with_report(model, conds: Conditions, modality_scale: Sequence[float], seed: int) -> tuple:
    """``(complete conditions, context [B, N, D] on the CPU, report, gates)``: ``conds`` completed
    with the absent conventions and fused.  ``seed`` drives the random parts of absent conditions
    (v2 audio: a VAE posterior sample of silence), so the same inputs give the same context."""
    modality_scale = checked_modality_scale(modality_scale)
    batch = max([c.batch for c in (conds.video, conds.text, conds.audio) if c is not None] or [1])
    generator = torch.Generator().manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    full = complete(model, conds, batch, generator=generator)
    tokens = fuse(model, full, batch=batch, modality_scale=modality_scale)
    report, gates = gate_report(model, modality_scale, full)
    return full, tokens.detach().cpu(), report, gates


def drop_modalities(model, conds: Conditions, *, video: bool = False, text: bool = False, audio: bool = False,
                    text_encoder=None) -> tuple[Conditions, tuple]:
    """``conds`` with the chosen modalities replaced by their absent value (the AudioX paper's
    multimodal input masking) and the names dropped.  Video and audio are simply left out (fusion
    fills them in); 'no text' is T5 of the empty string, so dropping text needs ``text_encoder``
    (:class:`FieldError` "t5" without one)."""
    kept = Conditions(video=None if video else conds.video, text=conds.text, audio=None if audio else conds.audio)
    if text:
        if text_encoder is None:
            raise FieldError("t5", "is not connected: dropping the text needs T5 (the 'no text' condition is T5 of "
                             "the empty string)")
        batch = max(c.batch for c in (conds.video, conds.text, conds.audio) if c is not None)
        kept.text = encode_text(model, "", batch=batch, encoder=text_encoder)
    dropped = tuple(name for name, drop in (("video", video), ("audio", audio), ("text", text)) if drop)
    return kept, dropped
