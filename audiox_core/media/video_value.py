"""VIDEO values without ComfyUI: the ``VideoInput`` surface ComfyUI's nodes exchange.

ComfyUI passes videos between nodes as ``comfy_api`` objects (``VideoFromFile`` from Load Video,
``VideoFromComponents`` from Create Video).  Where ``comfy_api`` is absent (the graph runner, the
tests, a notebook) the node pack and the runner's stand-in core nodes use these classes instead:
same class names, same methods (``get_components()`` → an object with ``images`` [N, H, W, 3]
float 0..1, ``frame_rate`` (a Fraction), ``audio`` (an AUDIO dict or None), ``metadata``;
``get_dimensions()`` → (width, height); ``get_duration()`` → seconds; ``get_stream_source()`` for
file-backed videos).  Decoding is PyAV's, every frame at the stream's own rate, as ComfyUI's
``VideoFromFile.get_components`` does.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from ..errors import InputError


def check_video_parts(images: torch.Tensor, fps, audio=None) -> Fraction:
    """Check the parts of an in-memory VIDEO (IMAGE frames ``[N, H, W, 3]``, fps > 0, an AUDIO dict or
    None) and return the frame rate as a Fraction (floats rounded to a denominator ≤ 1001)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"video frames must be an IMAGE tensor [N, H, W, 3], got shape {tuple(images.shape)}")
    if audio is not None and (not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio):
        raise InputError("video audio must be an AUDIO dict {'waveform': [B, C, T], 'sample_rate': int}")
    rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise InputError(f"video fps must be positive, got {fps}")
    return rate


def decode_audio(path: str) -> tuple[torch.Tensor, int]:
    """``([C, T] float32, sample_rate)`` of the first audio stream (stereo when it has ≥ 2 channels)."""
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in {path}")
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        resampler = av.AudioResampler(format="fltp", layout="stereo" if channels >= 2 else "mono", rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for resampled in resampler.resample(frame):
                chunks.append(resampled.to_ndarray())
        for resampled in resampler.resample(None):
            chunks.append(resampled.to_ndarray())
    return torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32)), rate


def decode_frames(path: str) -> tuple[torch.Tensor, Fraction]:
    """``([N, H, W, 3] float32 0..1, frame_rate)`` of the first video stream (all frames)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    return torch.stack(frames).to(torch.float32) / 255.0, rate


class VideoComponents:
    """Frames, frame rate, optional AUDIO and metadata of a video (ComfyUI's ``VideoComponents``)."""

    def __init__(self, images, frame_rate, audio=None, metadata=None):
        self.images, self.frame_rate, self.audio, self.metadata = images, frame_rate, audio, metadata


class VideoFromFile:
    """A video file on disk (ComfyUI's ``VideoFromFile``, what core Load Video outputs)."""

    def __init__(self, path: str):
        self.path = str(path)

    def get_stream_source(self) -> str:
        return self.path

    def get_components(self) -> VideoComponents:
        import av

        images, rate = decode_frames(self.path)
        with av.open(self.path) as container:
            has_audio = bool(container.streams.audio)
        audio = None
        if has_audio:
            waveform, sample_rate = decode_audio(self.path)
            audio = {"waveform": waveform.unsqueeze(0), "sample_rate": sample_rate}
        return VideoComponents(images, rate, audio)

    def get_dimensions(self) -> tuple[int, int]:
        import av

        with av.open(self.path) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height

    def get_duration(self) -> float:
        import av

        with av.open(self.path) as container:
            return float(container.duration / av.time_base) if container.duration else 0.0

    def get_container_format(self) -> str:
        import av

        with av.open(self.path) as container:
            return container.format.name


class VideoFromComponents:
    """A video held as frames in memory (ComfyUI's ``VideoFromComponents``, what Create Video outputs)."""

    def __init__(self, components: VideoComponents):
        self._components = components

    def get_components(self) -> VideoComponents:
        c = self._components
        return VideoComponents(c.images, c.frame_rate, c.audio)

    def get_dimensions(self) -> tuple[int, int]:
        return int(self._components.images.shape[2]), int(self._components.images.shape[1])

    def get_duration(self) -> float:
        return float(self._components.images.shape[0] / self._components.frame_rate)
