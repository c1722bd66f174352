"""Video output: encode frames (+ audio) and put generated audio onto a source video (PyAV).

Video encoder choice
--------------------
H.264 is preferred.  PyAV wheels normally ship ``libx264``; some builds have only
``libopenh264`` or neither.  :func:`pick_video_encoder` tries ``libx264`` → ``libopenh264`` →
``mpeg4`` (MPEG-4 part 2, plays everywhere that matters) and logs a warning naming the fallback.
Audio is AAC (FFmpeg's native encoder, always built).  Containers: ``.mp4 .m4v .mov .mkv``.

Official ``merge_video_audio`` (``audiox/data/utils.py``): ``ffmpeg -ss start -t duration -i video -i wav
-c:v copy -c:a aac -shortest``.  :func:`mux_audio_into_video` does the same without an ffmpeg
binary; it copies the video packets when that gives an exact cut (the cut starts on a keyframe
and the kept packets are contiguous in decode order), otherwise it re-encodes just the segment —
``-c copy`` with a mid-GOP ``-ss`` would start on the previous keyframe and shift the picture
against the audio.
"""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Dict, Optional, Tuple

import av
import numpy as np
import torch

from ..errors import FieldError, InputError, MediaError
from ..finite import all_finite
from ..fileio import atomic_path
from ._io import TIME_EPS, MediaSource, as_fraction, fmt_s, open_media, source_name
from .audio import resample, to_channels

log = logging.getLogger(__name__)

__all__ = ["write_video", "mux_audio_into_video", "pick_video_encoder", "VIDEO_ENCODER_PREFERENCE"]

VIDEO_ENCODER_PREFERENCE = ("libx264", "libopenh264", "mpeg4")
_CONTAINERS = {".mp4", ".m4v", ".mov", ".mkv"}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_encoder_ok: Dict[str, bool] = {}


def _encoder_works(name: str) -> bool:
    """Whether this FFmpeg build has encoder ``name`` and it opens for a small yuv420p frame."""
    if name not in _encoder_ok:
        try:
            encoder = av.CodecContext.create(name, "w")
            encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, 25), Fraction(25)
            encoder.open()
            _encoder_ok[name] = True
        except Exception as e:  # UnknownCodecError, or the encoder refuses to open
            log.debug("video encoder %s unusable: %s", name, e)
            _encoder_ok[name] = False
    return _encoder_ok[name]


def pick_video_encoder(preferred: Optional[str] = None) -> str:
    """First usable encoder of ``preferred`` then :data:`VIDEO_ENCODER_PREFERENCE`.

    Logs a warning when the result is not the first choice; raises MediaError when none works.
    """
    order = ([preferred] if preferred else []) + [c for c in VIDEO_ENCODER_PREFERENCE if c != preferred]
    for i, name in enumerate(order):
        if _encoder_works(name):
            if i > 0:
                log.warning("video encoder %s is not available in this PyAV/FFmpeg build; using %s instead",
                            order[0], name)
            return name
    raise MediaError(f"none of the video encoders {', '.join(order)} is available in this PyAV/FFmpeg build")


def _encoder_options(name: str, crf: int) -> Dict[str, str]:
    if name == "libx264":
        return {"crf": str(int(crf)), "preset": "medium"}
    if name == "mpeg4":  # fixed quantiser ≈ `-q:v 3` (global_quality = q · FF_QP2LAMBDA)
        return {"flags": "+qscale", "global_quality": str(3 * 118)}
    return {}


def _check_out_path(out_path) -> str:
    path = os.fspath(out_path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CONTAINERS:
        raise InputError(f"{path}: output must end in one of {', '.join(sorted(_CONTAINERS))}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{path}: output folder {parent} does not exist")
    return path


def _prepare_audio(audio, sr, what: str) -> Tuple[np.ndarray, int]:
    """Audio ``[C, N]`` (or ``[1, C, N]``) → float32 numpy ``[C', N']`` at an AAC-legal rate."""
    x = torch.as_tensor(audio).detach().to("cpu", torch.float32)
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[-1] == 0:
        raise InputError(f"{what}: expected audio [C, N] with N > 0, got shape {tuple(x.shape)}")
    if sr is None:
        raise InputError(f"{what}: audio given without its sample rate")
    sr = int(sr)
    if x.shape[0] > 2:
        log.info("%s: %d audio channels downmixed to stereo for AAC", what, x.shape[0])
        x = to_channels(x, 2)
    if sr not in _AAC_RATES:
        new = 48000 if sr > 44100 else 44100
        log.info("%s: AAC cannot store %d Hz; resampled to %d Hz", what, sr, new)
        x, sr = resample(x, sr, new), new
    if not all_finite(x):
        raise InputError(f"{what}: audio contains NaN or Inf")
    return np.ascontiguousarray(x.clamp(-1, 1).numpy()), sr


def _encode_audio_packets(container, audio: np.ndarray, sr: int):
    """Add an AAC stream and return its packets (muxed later in time order with the video)."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    stream = container.add_stream("aac", rate=sr, layout=layout)
    stream.bit_rate = 192_000 if layout == "stereo" else 128_000
    packets, hop = [], 1024 * 64
    for i in range(0, audio.shape[1], hop):
        fr = av.AudioFrame.from_ndarray(audio[:, i:i + hop], format="fltp", layout=layout)
        fr.sample_rate, fr.pts = sr, i
        packets.extend(stream.encode(fr))
    packets.extend(stream.encode(None))
    return stream, packets


class _Interleaver:
    """Mux video packets as they come and audio packets up to the current video time."""

    def __init__(self, container, audio_packets):
        self.c, self.audio = container, list(audio_packets)
        self.i = 0

    def video(self, packets):
        for p in packets:
            if p.pts is not None and p.time_base is not None:
                t = p.pts * p.time_base
                while self.i < len(self.audio) and self.audio[self.i].pts is not None and \
                        self.audio[self.i].pts * self.audio[self.i].time_base <= t:
                    self.c.mux(self.audio[self.i])
                    self.i += 1
            self.c.mux(p)

    def close(self):
        for p in self.audio[self.i:]:
            self.c.mux(p)
        self.i = len(self.audio)


def _even(n: int) -> int:
    return n + (n % 2)


def write_video(
    frames, fps, out_path, audio=None, sr: Optional[int] = None, *,
    codec: Optional[str] = None, crf: int = 18,
) -> str:
    """Encode frames produced in memory to a video file (H.264 + AAC when available).

    Args:
        frames: uint8 ``[T, H, W, 3]`` (float ``[0, 1]`` such as a ComfyUI IMAGE is accepted and
            rounded to uint8).  Odd sizes are padded by one edge pixel (yuv420p needs even sizes).
        fps: frame rate (int, float, Fraction, ``"30000/1001"``); frame ``i`` at ``i/fps``.
        out_path: ``.mp4``/``.m4v``/``.mov``/``.mkv``.
        audio, sr: optional ``[C, N]`` waveform and its rate; cut to the video's length, AAC.
        codec: force an encoder name; default :func:`pick_video_encoder`.
        crf: libx264 quality (lower is better; 18 ≈ visually lossless).
    Returns a one-line report (encoder, frames, duration).
    """
    path = _check_out_path(out_path)
    fps_f = as_fraction(fps, f"{path}: fps")
    x = torch.as_tensor(frames).detach().to("cpu")
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[-1] not in (3, 4) or x.shape[0] == 0:
        raise InputError(f"{path}: expected frames [T, H, W, 3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        x = (x.to(torch.float32) * 255).round().clamp(0, 255).to(torch.uint8)
    x = x[..., :3]
    T, H, W = x.shape[:3]
    if H % 2 or W % 2:
        log.info("%s: frame size %dx%d padded to %dx%d for yuv420p", path, W, H, _even(W), _even(H))
        x = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (0, W % 2, 0, H % 2), mode="replicate").permute(0, 2, 3, 1)
    name = pick_video_encoder(codec)
    apk = None
    try:
        with atomic_path(path, what="video") as tmp, av.open(str(tmp), mode="w") as c:
            vs = c.add_stream(name, rate=fps_f, options=_encoder_options(name, crf))
            vs.width, vs.height, vs.pix_fmt = x.shape[2], x.shape[1], "yuv420p"
            vs.time_base = 1 / fps_f
            if audio is not None:
                a, asr = _prepare_audio(audio, sr, path)
                a = a[:, : int(round(float(T / fps_f) * asr))]
                _, apk = _encode_audio_packets(c, a, asr)
            mux = _Interleaver(c, apk or [])
            for i in range(T):
                fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(x[i].numpy()), format="rgb24")
                fr.pts = i
                mux.video(vs.encode(fr))
            mux.video(vs.encode(None))
            mux.close()
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: writing the video failed ({e})") from e
    return (f"{path}: wrote {T} frames ({fmt_s(T / fps_f)}) with {name}"
            + (" + AAC audio" if apk is not None else ""))


def mux_audio_into_video(
    video_path: MediaSource, audio, sr: int, out_path, *, start: float = 0.0,
    duration: Optional[float] = None, reencode: Optional[bool] = None, codec: Optional[str] = None,
    crf: int = 18,
) -> str:
    """Put ``audio`` onto ``[start, start+duration)`` of a video; the source's own audio is replaced.

    The output starts at the video's ``start`` with the audio's first sample and lasts
    ``min(duration, video length − start, audio length)`` (official ``-ss start -t duration
    -shortest``).  ``reencode=None`` copies the video packets when the cut is exact (see module
    docstring) and re-encodes the segment with H.264 otherwise; ``True``/``False`` force it
    (``False`` raises when a copy cannot be exact).  Audio is AAC.

    Args:
        video_path: source video (path, bytes or file object).
        audio: ``[C, N]`` float waveform (``[1, C, N]`` accepted); sr: its sample rate.
        out_path: ``.mp4``/``.m4v``/``.mov``/``.mkv``.
    Returns a one-line report of what was done.
    """
    name = source_name(video_path)
    path = _check_out_path(out_path)
    start_f = as_fraction(start, f"{name}: start", allow_zero=True)
    a, asr = _prepare_audio(audio, sr, name)
    with open_media(video_path) as src:
        if not src.streams.video:
            raise MediaError(f"{name}: has no video stream to put the audio on"
                             + (" (it is audio-only)" if src.streams.audio else ""))
        vs = src.streams.video[0]
        tb = vs.time_base
        origin = vs.start_time or 0
        # pass 1: timestamps only (no packet data kept, so memory does not grow with the file)
        packets = [_PacketInfo(p) for p in src.demux(vs) if p.size > 0]
        if not packets:
            raise MediaError(f"{name}: the video stream contains no frames")
        times = [(Fraction(p.pts - origin) * tb) if p.pts is not None else None for p in packets]
        if any(t is None for t in times):
            if reencode is False:
                raise MediaError(f"{name}: video packets lack timestamps; cannot copy the stream")
            reencode = True
        ends = [t + (Fraction(p.duration) * tb if p.duration else 0) for t, p in zip(times, packets) if t is not None]
        video_end = max(ends) if ends else Fraction(0)
        if start_f + TIME_EPS >= video_end:
            raise InputError(f"{name}: start {fmt_s(start_f)} is at or past the end of the video ({fmt_s(video_end)})")
        seg = min(video_end - start_f, Fraction(a.shape[1], asr))
        if duration is not None:
            seg = min(seg, as_fraction(duration, f"{name}: duration"))
        seg_end = start_f + seg
        a = a[:, : int(round(float(seg) * asr))]

        why = None
        if reencode is not True:
            keep = [i for i, t in enumerate(times) if start_f - TIME_EPS <= t < seg_end - TIME_EPS]
            if not keep:
                why = "no frame falls inside the segment"
            elif not packets[keep[0]].is_keyframe or abs(times[keep[0]] - start_f) > TIME_EPS:
                why = f"the start {fmt_s(start_f)} is not on a keyframe"
            elif keep != list(range(keep[0], keep[-1] + 1)):
                why = "the cut splits a group of frames that reference each other"
            if why is None:
                try:
                    return _remux(path, src, vs, packets[keep[0]].pts, len(keep), a, asr, name, seg)
                except (av.error.FFmpegError, ValueError) as e:
                    why = f"the {vs.codec_context.name} stream cannot be copied into {os.path.splitext(path)[1]} ({e})"
            if reencode is False:
                raise MediaError(f"{name}: cannot copy the video stream exactly: {why}")
        del packets
        return _reencode(path, src, vs, origin, start_f, seg_end, a, asr, name, why, codec, crf)


class _PacketInfo:
    __slots__ = ("pts", "dts", "is_keyframe", "duration")

    def __init__(self, p):
        self.pts, self.dts, self.is_keyframe, self.duration = p.pts, p.dts, bool(p.is_keyframe), p.duration


def _remux(path, src, vs, first_pts: int, count: int, a, asr, name, seg) -> str:
    """Pass 2: copy ``count`` packets (decode order) starting at the keyframe ``first_pts``."""
    src.seek(first_pts, stream=vs, backward=True, any_frame=False)
    copied = 0
    with atomic_path(path, what="video") as tmp, av.open(str(tmp), mode="w") as out:
        ovs = out.add_stream_from_template(vs)
        _, apk = _encode_audio_packets(out, a, asr)
        mux = _Interleaver(out, apk)
        for p in src.demux(vs):
            if p.size == 0 or (copied == 0 and p.pts != first_pts):
                continue
            p.pts = p.pts - first_pts
            if p.dts is not None:
                p.dts = p.dts - first_pts
            p.stream = ovs
            mux.video([p])
            copied += 1
            if copied == count:
                break
        mux.close()
    if copied != count:
        raise ValueError(f"re-reading the stream gave {copied} of {count} packets")
    return (f"{path}: copied {copied} {vs.codec_context.name} frames from {name} without re-encoding "
            f"and added {fmt_s(a.shape[1] / asr)} of AAC audio ({fmt_s(seg)} in all)")


def _reencode(path, src, vs, origin, start_f, seg_end, a, asr, name, why, codec, crf) -> str:
    enc = pick_video_encoder(codec)
    tb = vs.time_base
    src.seek(origin + int(start_f / tb), stream=vs, backward=True, any_frame=False)
    rate = Fraction(vs.average_rate or vs.guessed_rate or 25)
    w, h = _even(vs.codec_context.width), _even(vs.codec_context.height)
    n = 0
    with atomic_path(path, what="video") as tmp, av.open(str(tmp), mode="w") as out:
        ovs = out.add_stream(enc, rate=rate, options=_encoder_options(enc, crf))
        ovs.width, ovs.height, ovs.pix_fmt = w, h, "yuv420p"
        ovs.time_base = tb
        _, apk = _encode_audio_packets(out, a, asr)
        mux = _Interleaver(out, apk)
        shift = origin + round(start_f / tb)
        for fr in src.decode(vs):
            if fr.pts is None:
                continue
            t = Fraction(fr.pts - origin) * tb
            if t < start_f - TIME_EPS:
                continue
            if t >= seg_end - TIME_EPS:
                break
            nf = fr.reformat(width=w, height=h, format="yuv420p")
            nf.pts, nf.time_base = max(0, fr.pts - shift), tb
            nf.pict_type = av.video.frame.PictureType.NONE
            mux.video(ovs.encode(nf))
            n += 1
        mux.video(ovs.encode(None))
        mux.close()
    if n == 0:
        raise MediaError(f"{name}: no video frames decoded between {fmt_s(start_f)} and {fmt_s(seg_end)}")
    reason = f" because {why}" if why else ""
    return (f"{path}: re-encoded {n} frames of {name} with {enc}{reason}, "
            f"and added {fmt_s(a.shape[1] / asr)} of AAC audio ({fmt_s(seg_end - start_f)} in all)")


def frames_under_audio(frames: torch.Tensor, fps: float, start: float, audio: torch.Tensor,
                       sample_rate: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The frames ``[N, H, W, 3]`` (at ``fps``) that play under ``audio [C, T]`` when it starts at
    ``start`` seconds -- at least one frame, at most to the video's end -- and the audio cut to that
    segment's length.  :class:`FieldError` names the bad one of ``frames`` (none), ``fps`` (not > 0)
    and ``start`` (past the video's end); its message follows the caller's input name."""
    if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[0] == 0:
        raise FieldError("frames", "has no frames")
    if not fps > 0:
        raise FieldError("fps", "must be > 0")
    count, seconds = frames.shape[0], audio.shape[-1] / sample_rate
    first = int(round(start * fps))
    if first >= count:
        raise FieldError("start", f"{start:g} s is past the end of the {count / fps:.2f} s video")
    segment = frames[first:min(count, first + max(1, int(round(seconds * fps))))]
    return segment, audio[..., : int(round(min(seconds, segment.shape[0] / fps) * sample_rate))]
