"""Frame helpers shared by the timestamp reader (:mod:`.video`) and the official reader (:mod:`.official`).

:class:`FrameSample` (what both return), the argument checks, PyAV frame → uint8 ``[3, H, W]``,
and :func:`resize_frame`: ``"stretch"`` resizes straight to the target (bilinear, antialiased);
``"center_crop"`` scales so the target is covered (:func:`cover_size`, torchvision's
``Resize`` rule), then crops the centre (:func:`center_crop_offsets`).  The torchvision rules the conditioners need live
here too: :func:`resize_short_side` (``Resize(int)``) and :func:`center_crop_offsets`
(``CenterCrop``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import InputError
from ._io import as_fraction

RESIZE_MODES = ("stretch", "center_crop")
SizeArg = Union[int, Tuple[int, int]]


@dataclass
class FrameSample:
    """Full result of frame sampling.

    frames: uint8 ``[T, 3, H, W]`` (or float32 in [0, 1] for ``out="float"``);
    timestamps_s: float64 ``[T]`` target times ``t_k`` (seconds from the video's start);
    source_times_s: float64 ``[T]`` presentation time of the frame used for each target;
    n_padded: how many trailing targets lie after the end and repeat the last frame;
    report: one line for people.
    """

    frames: torch.Tensor
    timestamps_s: torch.Tensor
    source_times_s: torch.Tensor
    n_padded: int
    report: str


def is_image_container(container) -> bool:
    """True for a still image opened by PyAV (``image2`` or an ``*_pipe`` demuxer)."""
    fmt = container.format.name or ""
    return fmt == "image2" or fmt.endswith("_pipe")


def size_hw(size: SizeArg) -> Tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"size must be positive, got {size!r}")
    return h, w


def resize_frame(chw: torch.Tensor, size: SizeArg, resize_mode: str = "stretch") -> torch.Tensor:
    """Resize one uint8 frame ``[3, H, W]`` to ``[3, h, w]`` (see module docstring)."""
    th, tw = size_hw(size)
    h, w = chw.shape[-2:]
    x = chw[None]
    if resize_mode == "stretch":
        if (h, w) != (th, tw):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        return x[0]
    if resize_mode != "center_crop":
        raise InputError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    rh, rw = cover_size(h, w, th, tw)
    if (rh, rw) != (h, w):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    top, left = center_crop_offsets(rh, rw, th, tw)
    return x[0, :, top:top + th, left:left + tw]


def cover_size(h: int, w: int, th: int, tw: int) -> Tuple[int, int]:
    """The smallest aspect-keeping size of an ``h × w`` picture that covers ``th × tw``, by
    torchvision's rule: the limiting side becomes its target exactly, the other side
    ``int(target · other / side)`` (truncated).  For a square target this is ``Resize(int)``."""
    if th * w >= tw * h:  # th / h >= tw / w: the height limits
        return th, max(tw, int(th * w / h))
    return max(th, int(tw * h / w)), tw


def resize_short_side(h: int, w: int, short: int) -> Tuple[int, int]:
    """torchvision ``Resize(short)``: the short side becomes ``short``, the long side
    ``int(short · long / short_in)`` (truncated)."""
    return cover_size(h, w, short, short)


def center_crop_offsets(h: int, w: int, th: int, tw: int) -> Tuple[int, int]:
    """``(top, left)`` of torchvision's ``CenterCrop((th, tw))`` on an ``h × w`` picture:
    ``int(round((h - th) / 2))``, ``int(round((w - tw) / 2))``."""
    return int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))


def check_sample_args(fps, start, duration, out, resize_mode, size, name):
    fps_f = as_fraction(fps, f"{name}: fps")
    start_f = as_fraction(start, f"{name}: start", allow_zero=True)
    n = None
    if duration is not None:
        dur_f = as_fraction(duration, f"{name}: duration")
        n = math.floor(dur_f * fps_f + Fraction(1, 2))  # round half up
        if n < 1:
            raise InputError(f"{name}: duration {float(dur_f)} s at {float(fps_f)} fps gives no frames")
    if out not in ("uint8", "float"):
        raise InputError(f"out must be 'uint8' or 'float', got {out!r}")
    if resize_mode not in RESIZE_MODES:
        raise InputError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    size_hw(size)
    return fps_f, start_f, n


def frame_to_chw(frame) -> torch.Tensor:
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
