"""Opening media with PyAV and turning its failures into :class:`MediaError` messages.

A *source* is a filesystem path (``str`` / ``os.PathLike``), ``bytes``, or a binary file-like
object with ``read``/``seek`` (e.g. ``io.BytesIO`` or what ComfyUI's ``VideoInput.get_stream_source()``
returns).  File-like objects are rewound to their start before every open, so one object can be
read several times (probe, then decode).
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from fractions import Fraction
from typing import IO, Iterator, Union

import av

from ..errors import InputError, MediaError

MediaSource = Union[str, "os.PathLike[str]", bytes, bytearray, IO[bytes]]

#: Tolerance used when comparing timestamps (1 microsecond).  Container time bases are exact
#: rationals and all comparisons are done with :class:`fractions.Fraction`; the tolerance only
#: absorbs float inputs such as ``start=0.1``.
TIME_EPS = Fraction(1, 1_000_000)


def source_name(source: MediaSource) -> str:
    """A short human-readable name for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes in memory>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) and name else "<in-memory file>"


def _prepare(source: MediaSource):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise MediaError(f"{path}: file not found")
        if os.path.isdir(path):
            raise MediaError(f"{path}: is a directory, expected an audio/video file")
        if os.path.getsize(path) == 0:
            raise MediaError(f"{path}: file is empty (0 bytes)")
        return path
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaError("<0 bytes in memory>: empty buffer, expected an audio/video file")
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except (OSError, ValueError):
                pass
        return source
    raise InputError(
        f"expected a file path, bytes or a binary file object for media input, got {type(source).__name__}"
    )


@contextmanager
def open_media(source: MediaSource) -> Iterator["av.container.InputContainer"]:
    """Open ``source`` for reading; any PyAV/FFmpeg failure becomes a :class:`MediaError`."""
    name = source_name(source)
    target = _prepare(source)
    try:
        container = av.open(target, mode="r")
    except (av.error.EOFError, EOFError) as e:
        raise MediaError(
            f"{name}: the file ends before any media data (empty, truncated, or a video with zero frames)"
        ) from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{name}: not a readable audio/video file ({_ffmsg(e)})") from e
    if not container.streams.audio and not container.streams.video:
        container.close()
        raise MediaError(f"{name}: contains no audio or video streams (an empty or zero-frame file?)")
    try:
        yield container
    except av.error.FFmpegError as e:
        raise MediaError(f"{name}: decoding failed, the file is corrupt or truncated ({_ffmsg(e)})") from e
    finally:
        container.close()


def _ffmsg(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).strip() or type(e).__name__


def as_fraction(x, what: str, *, positive: bool = True, allow_zero: bool = False) -> Fraction:
    """Exact rational for a rate/time given as int, float, str ("30000/1001") or Fraction.

    Floats are snapped to the nearest fraction with denominator ≤ 100100, so ``29.97002997``
    becomes ``30000/1001`` and ``0.1`` becomes ``1/10``.
    """
    try:
        if isinstance(x, Fraction):
            f = x
        elif isinstance(x, int):
            f = Fraction(x)
        elif isinstance(x, str):
            f = Fraction(x.strip())
        else:
            xf = float(x)
            if xf != xf or xf in (float("inf"), float("-inf")):
                raise ValueError
            f = Fraction(xf).limit_denominator(100100)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"{what} must be a finite number, got {x!r}") from None
    if positive and (f < 0 or (f == 0 and not allow_zero)):
        raise InputError(f"{what} must be {'≥' if allow_zero else '>'} 0, got {x!r}")
    return f


def fmt_s(seconds: float) -> str:
    """Seconds for reports: ``1.20 s``."""
    return f"{float(seconds):.2f} s"


def fmt_fps(fps: Fraction) -> str:
    if fps.denominator == 1:
        return f"{fps.numerator} fps"
    return f"{float(fps):.3f} fps ({fps.numerator}/{fps.denominator})"
