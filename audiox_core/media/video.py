"""Video input: probing and timestamp-based frame sampling (PyAV), from files or in-memory frames.

Sampling rule (both :func:`sample_frames` and :func:`frames_from_images`)
------------------------------------------------------------------------
Target times are ``t_k = start + k / fps`` for ``k = 0 … T-1`` (``T = round(duration · fps)``).
Source frame ``i`` is *shown* during ``[p_i, p_{i+1})`` where ``p_i`` is its presentation time
(real PTS from the container, relative to the stream's start, so 29.97 fps and variable frame
rate are exact; for in-memory frames ``p_i = i / src_fps``).  Target ``t_k`` takes the frame whose
interval contains it: the last frame with ``p_i ≤ t_k + 1 µs``.  For constant-rate sources that
is frame ``floor(t_k · src_fps + ε)``.  Targets after the end of the video (``p_last`` plus the
last frame's duration) repeat the last frame; the report says how many and for how long.  A
single-frame source (a still image) is held for the whole duration and that is not "padding".

Official behaviour (``read_video`` in ``audiox/data/utils.py``) and why we differ
--------------------------------------------------------------------------------
The official reader takes every ``ceil(src_fps / fps)``-th frame starting at
``int(start · src_fps)``, so the effective rate is ``src_fps / ceil(src_fps / fps)``: a 24 fps
source sampled "at 5 fps" really gives 4.8 fps (50 frames span 10.4 s), a 30 fps source "at
25 fps" gives 15 fps (150 real frames + 100 copies of the last).  Frames then no longer line up
with the audio the model generates.  We sample at the requested rate by timestamp instead.  The
official path also treats still images as float [0,1] and divides by 255 again in the CLIP
conditioner (near-black input); here images go through the same uint8 path as video frames.

Resizing (per selected frame, while decoding; memory ∝ output)
--------------------------------------------------------------
``resize_mode="stretch"``: straight to ``size × size`` ignoring aspect (official
``Resize((224, 224))``).  ``"center_crop"``: scale so the frame covers the target (short side =
size), then crop the centre.  Both use bilinear interpolation with antialiasing on uint8, the
same operation torchvision's ``Resize`` performs on uint8 tensors (values may differ by 1 grey
level from torchvision's older float path).  Rotation metadata (phone videos) is not applied, as
in the official decord reader.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch

from ..errors import InputError, MediaError
from ..progress import ProgressCallback, report as _progress
from ._io import TIME_EPS, MediaSource, as_fraction, fmt_fps, fmt_s, open_media, source_name
from .frames import (RESIZE_MODES, FrameSample, SizeArg, check_sample_args, frame_to_chw, is_image_container,
                     resize_frame)
from .official import sample_frames_official

log = logging.getLogger(__name__)

__all__ = ["VideoInfo", "FrameSample", "probe_video", "sample_frames", "sample_frames_detailed",
           "frames_from_images", "resize_frame", "RESIZE_MODES"]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds without decoding.

    ``fps`` is the stream's average rate (exact ``Fraction``, 0 if unknown or no video);
    ``duration_s`` the video stream's duration (else the container's); ``n_frames`` the frame
    count from the container, or ``round(duration · fps)`` when the container does not store it
    (then ``n_frames_estimated`` is True).
    """

    fps: Fraction
    duration_s: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    has_video: bool
    n_frames_estimated: bool = False
    codec: str = ""
    is_image: bool = False


def probe_video(source: MediaSource, *, count_frames: bool = False) -> VideoInfo:
    """Stream facts of a media file without decoding.

    Audio-only files give ``has_video=False`` (fps 0, size 0).  Still images (PNG/JPEG/…) give
    ``is_image=True``, ``n_frames=1``.  When the container does not store the frame count it is
    estimated as ``round(duration · fps)``; ``count_frames=True`` counts the video packets
    instead (exact, reads the whole file but decodes nothing).
    """
    with open_media(source) as c:
        has_audio = bool(c.streams.audio)
        cdur = float(c.duration) / 1_000_000 if c.duration else 0.0
        if not c.streams.video:
            a = c.streams.audio[0] if has_audio else None
            adur = float(a.duration * a.time_base) if (a is not None and a.duration and a.time_base) else cdur
            return VideoInfo(Fraction(0), adur, 0, 0, 0, has_audio, False)
        vs = c.streams.video[0]
        codec_context = vs.codec_context
        if is_image_container(c):
            return VideoInfo(Fraction(0), 0.0, 1, int(codec_context.width), int(codec_context.height), False, True,
                             False, codec_context.name or "", is_image=True)
        fps = Fraction(vs.average_rate or vs.guessed_rate or vs.base_rate or 0)
        dur = float(vs.duration * vs.time_base) if (vs.duration and vs.time_base) else cdur
        n = int(vs.frames or 0)
        est = n <= 0
        if count_frames:
            n = sum(1 for p in c.demux(vs) if p.size > 0)
            est = False
        elif est:
            n = int(round(dur * float(fps))) if fps else 0
        return VideoInfo(fps, dur, n, int(codec_context.width), int(codec_context.height), has_audio, True, est,
                         codec_context.name or "")


# ------------------------------------------------------------------------------------------
# Timestamp-based selection, shared by the file and in-memory paths
# ------------------------------------------------------------------------------------------

class _Selector:
    """Assigns target times to source frames arriving in presentation order.

    ``push(t, payload)`` for each source frame; ``finish(end_time)`` at end of stream.  The frame
    kept in ``prev`` is the candidate for targets in ``[p_prev, p_next)``; ``convert(payload)``
    is called once per distinct selected frame (cached while consecutive targets share it).
    """

    def __init__(self, start: Fraction, fps: Fraction, n_targets: Optional[int],
                 convert: Callable[[Any], torch.Tensor], callback: Optional[ProgressCallback]):
        self.start, self.fps, self.n = start, fps, n_targets
        self.convert, self.callback = convert, callback
        self.k = 0
        self.prev: Optional[Tuple[Fraction, Any]] = None
        self.first_t: Optional[Fraction] = None
        self.n_source = 0
        self.frames: List[torch.Tensor] = []
        self.src_times: List[float] = []
        self._cache: Tuple[Any, Optional[torch.Tensor]] = (None, None)
        self.n_padded = 0
        self.n_before_first = 0

    def target(self, k: int) -> Fraction:
        return self.start + Fraction(k) / self.fps

    @property
    def done(self) -> bool:
        return self.n is not None and self.k >= self.n

    def _emit(self, frame: Tuple[Fraction, Any]) -> None:
        t, payload = frame
        if self._cache[0] is not payload:
            self._cache = (payload, self.convert(payload))
        self.frames.append(self._cache[1])
        self.src_times.append(float(t))
        self.k += 1
        if self.callback is not None and self.n:
            _progress(self.callback, self.k, self.n, stage="video frames")

    def push(self, t: Fraction, payload: Any) -> bool:
        """Feed one source frame; returns True once every target is filled."""
        self.n_source += 1
        if self.first_t is None:
            self.first_t = t
        if self.prev is not None:
            # targets strictly before this frame (with tolerance) belong to the previous frame
            while not self.done and self.target(self.k) + TIME_EPS < t:
                if self.target(self.k) + TIME_EPS < self.prev[0]:
                    self.n_before_first += 1  # before the very first frame: hold it backwards
                self._emit(self.prev)
        self.prev = (t, payload)
        return self.done

    def finish(self, end_time: Optional[Fraction], still: bool) -> None:
        if self.prev is None:
            return
        if still:
            end_time = None if self.n is not None else self.target(1)
        while not self.done:
            tk = self.target(self.k)
            if end_time is not None and tk + TIME_EPS >= end_time:
                if self.n is None:
                    break
                self.n_padded += 1
            elif tk + TIME_EPS < self.prev[0]:
                self.n_before_first += 1
            self._emit(self.prev)


def _assemble(sel: _Selector, out: str, fps: Fraction, start: Fraction, name: str,
              end_time: Optional[Fraction], still: bool, src_desc: str) -> FrameSample:
    if not sel.frames:
        raise InputError(f"{name}: start {fmt_s(start)} is at or past the end of the video"
                         + (f" ({fmt_s(end_time)})" if end_time is not None else ""))
    frames = torch.stack(sel.frames)
    if out == "float":
        frames = frames.to(torch.float32) / 255.0
    T = frames.shape[0]
    ts = torch.tensor([float(sel.target(k)) for k in range(T)], dtype=torch.float64)
    src = torch.tensor(sel.src_times, dtype=torch.float64)
    span = f"{fmt_s(start)} to {fmt_s(sel.target(T))}"
    if still:
        msg = f"{name}: single still image held for {T} frames at {fmt_fps(fps)} ({span})"
    else:
        msg = f"{name}: sampled {T} frames at {fmt_fps(fps)} from {span} ({src_desc})"
        if sel.n_padded:
            msg += (f"; the video ends at {fmt_s(end_time)}, so the last {sel.n_padded} frames "
                    f"({fmt_s(sel.n_padded / fps)}) repeat its last frame")
        if sel.n_before_first:
            msg += f"; the first {sel.n_before_first} targets precede the first frame and repeat it"
    return FrameSample(frames, ts, src, sel.n_padded, msg)


# ------------------------------------------------------------------------------------------
# From files
# ------------------------------------------------------------------------------------------

def sample_frames_detailed(
    source: MediaSource, *, fps, start: float = 0.0, duration: Optional[float] = None,
    size: SizeArg = 224, resize_mode: str = "stretch", out: str = "uint8",
    callback: Optional[ProgressCallback] = None, sampling: str = "timestamp",
) -> FrameSample:
    """:func:`sample_frames` returning a :class:`FrameSample` (adds source times, padding count)."""
    if sampling == "official":
        return sample_frames_official(source, fps=fps, start=start, duration=duration, size=size,
                                      resize_mode=resize_mode, out=out, callback=callback)
    if sampling != "timestamp":
        raise InputError(f"sampling must be 'timestamp' or 'official', got {sampling!r}")
    name = source_name(source)
    fps_f, start_f, n = check_sample_args(fps, start, duration, out, resize_mode, size, name)

    def convert(frame) -> torch.Tensor:
        return resize_frame(frame_to_chw(frame), size, resize_mode).contiguous()

    with open_media(source) as c:
        if not c.streams.video:
            raise MediaError(f"{name}: has no video stream (it is audio-only); expected a video or an image")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base or Fraction(1, 90000)
        nominal = Fraction(vs.average_rate or vs.guessed_rate or 0)
        origin = vs.start_time if vs.start_time is not None else None
        src_desc = f"source {fmt_fps(nominal)}" if nominal else "source rate unknown"

        def frames_from(seek: bool):
            if seek:
                c.seek((origin or 0) + int(start_f / tb), stream=vs, backward=True, any_frame=False)
            last_pts = None
            for fr in c.decode(vs):
                pts = fr.pts
                if pts is None:  # no timestamp: continue from the previous one at the nominal rate
                    step = int(round(1 / (nominal * tb))) if nominal else 1
                    pts = (last_pts + step) if last_pts is not None else (origin or 0)
                last_pts = pts
                yield pts, fr

        seek = start_f > 0 and origin is not None
        while True:
            sel = _Selector(start_f, fps_f, n, convert, callback)
            base = origin
            last, last_dur, restarted = None, None, False
            for pts, fr in frames_from(seek):
                if base is None:
                    base = pts
                t = Fraction(pts - base) * tb
                if seek and sel.n_source == 0 and t > start_f + TIME_EPS:
                    restarted = True  # seek landed after `start`: decode from the beginning
                    break
                last, last_dur = t, (Fraction(fr.duration) * tb if fr.duration else None)
                if sel.push(t, fr):
                    break
            if restarted:
                seek = False
                c.seek(origin or 0, stream=vs, backward=True, any_frame=False)
                continue
            break
        if sel.n_source == 0:
            raise MediaError(f"{name}: the video stream contains no decodable frames")
        still = sel.n_source == 1 and sel.first_t is not None and sel.first_t <= TIME_EPS and not sel.done
        end_time = None
        if last is not None:
            if last_dur is None or last_dur <= 0:
                last_dur = (1 / nominal) if nominal else Fraction(0)
            end_time = last + last_dur
        if not still and not sel.done and end_time is not None and start_f + TIME_EPS >= end_time:
            raise InputError(f"{name}: start {fmt_s(start_f)} is at or past the end of the video ({fmt_s(end_time)})")
        sel.finish(end_time, still)
        return _assemble(sel, out, fps_f, start_f, name, end_time, still, src_desc)


def sample_frames(
    source: MediaSource, *, fps, start: float = 0.0, duration: Optional[float] = None,
    size: SizeArg = 224, resize_mode: str = "stretch", out: str = "uint8",
    callback: Optional[ProgressCallback] = None, sampling: str = "timestamp",
) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """Frames of a video file sampled at ``fps`` by timestamp (module docstring has the rule).

    Args:
        source: path, bytes or binary file object (video, or an image file FFmpeg can read).
        fps: target rate (int, float, ``Fraction`` or ``"30000/1001"``).
        start: seconds from the start of the video stream.
        duration: seconds; gives exactly ``T = round(duration · fps)`` frames, padding past the
            end by repeating the last frame.  ``None``: every target before the end of the video.
        size: output side (int) or ``(height, width)``.
        resize_mode: ``"stretch"`` (official) or ``"center_crop"``.
        out: ``"uint8"`` (0..255, official CLIP/Synchformer input) or ``"float"`` (0..1).
        callback: progress ``callback(k, T, info)`` per target frame (only when T is known).
        sampling: ``"timestamp"`` (default, exact) or ``"official"``: the official reader's
            integer-stride index rule, for parity with official outputs (:mod:`.official`).

    Returns:
        ``(frames [T, 3, H, W], timestamps_s float64 [T], report str)``.

    Decoding seeks to the keyframe before ``start`` and decodes forward, stopping once the last
    target is filled; only selected frames are converted to RGB and resized.

    Raises:
        MediaError: missing/corrupt file, no video stream (audio-only), no decodable frames.
        InputError: bad arguments, ``start`` past the end.
    """
    r = sample_frames_detailed(source, fps=fps, start=start, duration=duration, size=size,
                               resize_mode=resize_mode, out=out, callback=callback, sampling=sampling)
    return r.frames, r.timestamps_s, r.report


# ------------------------------------------------------------------------------------------
# From in-memory frames (ComfyUI IMAGE batches)
# ------------------------------------------------------------------------------------------

def _image_to_chw_uint8(img: torch.Tensor) -> torch.Tensor:
    img = img.cpu()
    if img.dtype == torch.uint8:
        x = img
    else:
        x = (img.to(torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return x.permute(2, 0, 1)


def frames_from_images_detailed(
    images: torch.Tensor, src_fps, *, fps, start: float = 0.0, duration: Optional[float] = None,
    size: SizeArg = 224, resize_mode: str = "stretch", out: str = "uint8",
    callback: Optional[ProgressCallback] = None,
) -> FrameSample:
    """:func:`frames_from_images` returning a :class:`FrameSample`."""
    name = "IMAGE input"
    if not torch.is_tensor(images):
        images = torch.as_tensor(np.asarray(images))
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[-1] not in (3, 4):
        raise InputError(f"{name}: expected images [N, H, W, 3] (ComfyUI IMAGE), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise InputError(f"{name}: the image batch is empty")
    images = images[..., :3]
    fps_f, start_f, n = check_sample_args(fps, start, duration, out, resize_mode, size, name)
    N = images.shape[0]
    if N == 1:
        src = Fraction(1)  # irrelevant for a still
    else:
        if src_fps is None or (not isinstance(src_fps, Fraction) and float(src_fps) <= 0):
            raise InputError(f"{name}: {N} frames need their frame rate (src_fps > 0), got {src_fps!r}")
        src = as_fraction(src_fps, f"{name}: src_fps")

    def convert(i: int) -> torch.Tensor:
        return resize_frame(_image_to_chw_uint8(images[i]), size, resize_mode).contiguous()

    sel = _Selector(start_f, fps_f, n, convert, callback)
    # first frame shown at or before start: i0 = floor(start·src + ε); earlier frames never win
    i0 = 0 if N == 1 else min(N - 1, int((start_f + TIME_EPS) * src))
    for i in range(i0, N):
        if sel.push(Fraction(i) / src, i):
            break
    still = N == 1
    end_time = Fraction(N) / src
    if not still and start_f + TIME_EPS >= end_time:
        raise InputError(f"{name}: start {fmt_s(start_f)} is at or past the end of the {N} frames ({fmt_s(end_time)})")
    sel.finish(end_time, still)
    return _assemble(sel, out, fps_f, start_f, name, end_time, still, f"{N} frames at {fmt_fps(src)}")


def frames_from_images(
    images: torch.Tensor, src_fps, *, fps, start: float = 0.0, duration: Optional[float] = None,
    size: SizeArg = 224, resize_mode: str = "stretch", out: str = "uint8",
    callback: Optional[ProgressCallback] = None,
) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """Timestamp-based sampling of an in-memory frame sequence (ComfyUI IMAGE + fps).

    Args:
        images: ``[N, H, W, 3]`` float in [0, 1] (ComfyUI IMAGE; uint8 also accepted; an alpha
            channel is dropped).  ``N == 1`` (a still image) is held for the whole duration.
        src_fps: rate of ``images`` (frame ``i`` is shown during ``[i/src_fps, (i+1)/src_fps)``);
            may be ``None`` for a single image.
        fps, start, duration, size, resize_mode, out, callback: as :func:`sample_frames`.

    Returns ``(frames [T, 3, H, W], timestamps_s float64 [T], report)``; frames are quantised
    to uint8 first (``round(x·255)``), then resized like decoded video frames.
    """
    r = frames_from_images_detailed(images, src_fps, fps=fps, start=start, duration=duration, size=size,
                                    resize_mode=resize_mode, out=out, callback=callback)
    return r.frames, r.timestamps_s, r.report
