"""The official AudioX frame reader's index rule, for parity checks against official outputs.

``audiox/data/utils.py::read_video`` (decord) picks frames by index, not by time::

    fps      = average frame rate of the file (float)
    seek     = int(seek_time · fps)
    n        = int(target_fps · duration)
    interval = ceil(fps / target_fps)
    ids      = range(seek, min(seek + n·interval, total_frames), interval)   # duration > 0
    ids      = range(0, total_frames, interval)                              # duration ≤ 0 / None

then stretches each frame to 224×224 and pads (repeating the last frame) or truncates to ``n``.
The effective rate is ``fps / interval`` (24 fps "at 5 fps" → 4.8 fps), so the frames drift
against the audio.  The library's default is timestamp sampling
(:func:`audiox_core.media.sample_frames`); this module exists so tests and users can reproduce
what the official code feeds the model.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import List, Optional

import torch

from ..errors import InputError, MediaError
from ..progress import ProgressCallback, report as _progress
from ._io import MediaSource, fmt_s, open_media, source_name
from .frames import FrameSample, check_sample_args, frame_to_chw, is_image_container, resize_frame

__all__ = ["official_frame_indices", "sample_frames_official"]


def official_frame_indices(src_fps: float, total_frames: int, seek_time: float, duration: Optional[float],
                           target_fps: float) -> List[int]:
    """Frame indices ``read_video`` decodes (before padding/truncation to ``int(target_fps·duration)``)."""
    interval = int(math.ceil(src_fps / target_fps))
    if duration is not None and duration > 0:
        seek = int(seek_time * src_fps)
        n = int(target_fps * duration)
        return list(range(seek, min(seek + n * interval, total_frames), interval))
    return list(range(0, total_frames, interval))


def sample_frames_official(
    source: MediaSource, *, fps, start: float = 0.0, duration: Optional[float] = None,
    size=224, resize_mode: str = "stretch", out: str = "uint8", callback: Optional[ProgressCallback] = None,
):
    """Frames chosen by :func:`official_frame_indices`, decoded with PyAV; returns a ``FrameSample``.

    Decodes from the first frame and counts (decord indexes frames in presentation order), so the
    indices are exact even for files whose timestamps do not start at zero.  ``timestamps_s``
    holds the nominal targets ``start + k/fps``; ``source_times_s`` the real times of the frames
    used, which shows the drift.
    """
    name = source_name(source)
    fps_f, start_f, n = check_sample_args(fps, start, duration, out, resize_mode, size, name)
    target = float(fps_f)
    with open_media(source) as c:
        if not c.streams.video:
            raise MediaError(f"{name}: has no video stream (it is audio-only); expected a video or an image")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        src_fps = float(vs.average_rate or vs.guessed_rate or 0)
        if src_fps <= 0:
            raise MediaError(f"{name}: the video stream has no frame rate; the official index rule needs one")
        interval = int(math.ceil(src_fps / target))
        if duration is not None:
            first = 0 if is_image_container(c) else int(float(start_f) * src_fps)
            want = int(target * float(duration))
            stop = first + want * interval
        else:
            first, want, stop = 0, None, None
        origin = vs.start_time
        frames, times = [], []
        for i, fr in enumerate(c.decode(vs)):
            if stop is not None and i >= stop:
                break
            if i >= first and (i - first) % interval == 0:
                frames.append(resize_frame(frame_to_chw(fr), size, resize_mode).contiguous())
                base = origin if origin is not None else 0
                times.append(float((fr.pts - base) * vs.time_base) if fr.pts is not None else float("nan"))
                if want:
                    _progress(callback, len(frames), want, stage="video frames")
    if not frames:
        if duration is not None and first > 0:
            raise InputError(f"{name}: start {fmt_s(start_f)} is at or past the end of the video")
        raise MediaError(f"{name}: the video stream contains no decodable frames")
    n_real = len(frames)
    n_out = want if want is not None else n_real
    n_pad = max(0, n_out - n_real)
    frames = (frames + [frames[-1]] * n_pad)[:n_out]
    times = (times + [times[-1]] * n_pad)[:n_out]
    x = torch.stack(frames)
    if out == "float":
        x = x.to(torch.float32) / 255.0
    ts = torch.tensor([float(start_f + Fraction(k) / fps_f) for k in range(n_out)], dtype=torch.float64)
    eff = src_fps / interval
    msg = (f"{name}: official stride sampling: one frame in every {interval} from frame {first} "
           f"(effective {eff:.3f} fps instead of {target:g}); {min(n_real, n_out)} real frames")
    if n_pad:
        msg += f" + {n_pad} copies of the last"
    return FrameSample(x, ts, torch.tensor(times, dtype=torch.float64), n_pad, msg)
