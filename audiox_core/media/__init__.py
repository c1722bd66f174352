"""Media input/output for AudioX, built on PyAV and torch only (no torchaudio/torchvision).

Audio (:mod:`.audio`)
    ``load_audio(src, *, start, duration) -> (float32 [C, N], sr)``,
    ``load_video_audio(src, ...) -> (float32 [C, N], sr) | None``,
    ``resample(x [..., N], orig_sr, new_sr) -> [..., ceil(N·new/orig)]`` (torchaudio's
    sinc_interp_hann), ``to_channels(x, channels, *, rule)``,
    ``fit_length(x, n, *, mode, sample_rate) -> (x [..., n], report)``,
    ``peak_normalize(x)``, ``conform_audio(x, sr, *, target_sr, channels, n_samples, mode)
    -> (x, report)``; ``save_wav(path, x [C, N], sr, *, subtype)`` (:mod:`.wav`).
Video (:mod:`.video`)
    ``probe_video(src) -> VideoInfo``,
    ``sample_frames(src, *, fps, start, duration, size, resize_mode, out)
    -> (uint8 [T, 3, H, W], float64 timestamps [T], report)``,
    ``frames_from_images(images [N, H, W, 3], src_fps, *, fps, ...) -> same``.
Writing (:mod:`.write`)
    ``write_video(frames uint8 [T, H, W, 3], fps, out_path, audio=None, sr=None) -> report``,
    ``mux_audio_into_video(video, audio [C, N], sr, out_path, *, start, duration) -> report``.

Every failure on bad input raises :class:`audiox_core.errors.MediaError` (unreadable or missing
file, missing stream, no frames) or :class:`~audiox_core.errors.InputError` (bad argument), with
the file named in the message.
"""
from ._io import MediaSource, as_fraction
from .audio import (
    FIT_MODES, audio_duration, conform_audio, fit_length, load_audio, load_video_audio, peak_normalize, resample,
    resampled_length, stereo_downmix_matrix, to_channels,
)
from .wav import save_wav
from .video import (
    RESIZE_MODES, FrameSample, VideoInfo, frames_from_images, frames_from_images_detailed, probe_video,
    resize_frame, sample_frames, sample_frames_detailed,
)
from .official import official_frame_indices, sample_frames_official
from .write import VIDEO_ENCODER_PREFERENCE, frames_under_audio, mux_audio_into_video, pick_video_encoder, write_video

__all__ = [
    "MediaSource", "as_fraction",
    "load_audio", "audio_duration", "load_video_audio", "resample", "resampled_length", "to_channels", "stereo_downmix_matrix",
    "fit_length", "FIT_MODES", "peak_normalize", "conform_audio", "save_wav",
    "VideoInfo", "FrameSample", "probe_video", "sample_frames", "sample_frames_detailed", "frames_from_images",
    "frames_from_images_detailed", "resize_frame", "RESIZE_MODES", "official_frame_indices",
    "sample_frames_official",
    "write_video", "mux_audio_into_video", "frames_under_audio", "pick_video_encoder", "VIDEO_ENCODER_PREFERENCE",
]
