"""Tests for audiox_core.media: decoding, resampling, timestamp-based frame sampling, writing.

All media is generated on the fly with PyAV.  Video frames encode their index as a 10-bit
pattern of black/white 16×16 blocks, which survives H.264 and resizing; expected frame indices
are computed independently as ``floor(t · src_fps + ε)`` with exact fractions.
"""
from __future__ import annotations

import io
import math
import wave
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from audiox_core.errors import InputError, MediaError
from audiox_core.media import (
    conform_audio, fit_length, frames_from_images, frames_from_images_detailed, load_audio, load_video_audio,
    mux_audio_into_video, peak_normalize, pick_video_encoder, probe_video, resample,
    resampled_length, sample_frames, sample_frames_detailed, save_wav, stereo_downmix_matrix,
    to_channels, write_video,
)

# ------------------------------------------------------------------------------------------
# Test media helpers
# ------------------------------------------------------------------------------------------

BITS = 10  # frame index up to 1023
SIDE = 64  # source frames are 64×64: a 4×4 grid of 16×16 cells, the first 10 carry the bits


def index_image(i: int, side: int = SIDE) -> np.ndarray:
    img = np.zeros((side, side, 3), np.uint8)
    cell = side // 4
    for b in range(BITS):
        r, c = divmod(b, 4)
        if (i >> b) & 1:
            img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = 255
    img[2 * cell + cell // 2:, 3 * cell:] = 128  # an untouched grey corner (not read back)
    return img


def read_index(chw: torch.Tensor) -> int:
    """Inverse of index_image for a [3, h, w] uint8 frame of any size (reads cell centres)."""
    h, w = chw.shape[-2:]
    i = 0
    for b in range(BITS):
        r, c = divmod(b, 4)
        y, x = int((r + 0.5) * h / 4), int((c + 0.5) * w / 4)
        if chw[:, y, x].float().mean() > 127:
            i |= 1 << b
    return i


def make_video(path, fps: Fraction, n: int, *, pts=None, time_base=None, audio_sr=None, codec="libx264",
               options=None):
    """n frames of index_image; optional explicit pts (VFR) and a sine audio track."""
    with av.open(str(path), "w") as c:
        opts = dict({"crf": "12"} if codec == "libx264" else {}, **(options or {}))
        vs = c.add_stream(codec, rate=fps, options=opts)
        vs.width = vs.height = SIDE
        vs.pix_fmt = "yuv420p"
        if time_base is not None:
            vs.time_base = time_base
            vs.codec_context.time_base = time_base
        aps = []
        if audio_sr:
            as_ = c.add_stream("aac", rate=audio_sr, layout="stereo")
            t = np.arange(int(n / fps * audio_sr)) / audio_sr
            a = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fr = av.AudioFrame.from_ndarray(np.stack([a, a]), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts = audio_sr, 0
            aps = list(as_.encode(fr)) + list(as_.encode(None))
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(index_image(i), format="rgb24")
            if pts is not None:
                fr.pts, fr.time_base = pts[i], time_base
            else:
                fr.pts = i
            for p in vs.encode(fr):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        for p in aps:
            c.mux(p)
    return path


def write_audio(path, data: np.ndarray, sr: int, codec: str, fmt: str, layout: str, container=None):
    """Encode float/int samples [C, N] with PyAV (one big frame; PyAV re-chunks for the encoder)."""
    with av.open(str(path), "w", format=container) as c:
        s = c.add_stream(codec, rate=sr, layout=layout)
        planar = fmt.endswith("p")
        arr = data if planar else data.T.reshape(1, -1)
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
        fr.sample_rate, fr.pts = sr, 0
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def count_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def expected_index(t: Fraction, src_fps: Fraction, n: int) -> int:
    return min(math.floor(t * src_fps + Fraction(1, 10**9)), n - 1)


RATES = [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    out = {}
    for fps in RATES:
        n = math.ceil(10 * fps)  # ≥ 10 s
        out[fps] = (make_video(d / f"v_{fps.numerator}_{fps.denominator}.mp4", fps, n), n)
    return out


# ------------------------------------------------------------------------------------------
# Frame sampling
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src_fps", RATES, ids=lambda f: f"src{float(f):.3f}")
@pytest.mark.parametrize("fps", [5, 25])
def test_sample_frames_picks_frame_by_timestamp(videos, src_fps, fps):
    path, n = videos[src_fps]
    frames, ts, rep = sample_frames(path, fps=fps, duration=10, size=32)
    assert frames.shape == (10 * fps, 3, 32, 32) and frames.dtype == torch.uint8
    assert ts.dtype == torch.float64
    got = [read_index(f) for f in frames]
    want = [expected_index(Fraction(k, fps), src_fps, n) for k in range(10 * fps)]
    assert got == want
    assert np.allclose(ts.numpy(), np.arange(10 * fps) / fps)
    assert "repeat" not in rep


@pytest.mark.parametrize("src_fps", [Fraction(24), Fraction(30000, 1001)], ids=["24", "29.97"])
def test_sample_frames_start_offset(videos, src_fps):
    path, n = videos[src_fps]
    start = Fraction(37, 10)  # mid-GOP: exercises seek-to-keyframe then decode forward
    frames, ts, _ = sample_frames(path, fps=25, start=3.7, duration=2, size=(24, 40))
    assert frames.shape == (50, 3, 24, 40)
    want = [expected_index(start + Fraction(k, 25), src_fps, n) for k in range(50)]
    assert [read_index(f) for f in frames] == want
    assert abs(float(ts[0]) - 3.7) < 1e-9


def test_sample_frames_from_file_like_and_bytes(videos):
    path, _ = videos[Fraction(25)]
    a, ta, _ = sample_frames(path, fps=5, start=2, duration=1, size=16)
    b, tb, rep = sample_frames(io.BytesIO(path.read_bytes()), fps=5, start=2, duration=1, size=16)
    c, _, _ = sample_frames(path.read_bytes(), fps=5, start=2, duration=1, size=16)
    assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(ta, tb)
    assert "in-memory" in rep


def test_sample_frames_pads_past_the_end_and_reports(videos):
    fps_src = Fraction(24)
    path, n = videos[fps_src]  # 240 frames = 10 s
    r = sample_frames_detailed(path, fps=5, start=8, duration=4)
    assert r.frames.shape[0] == 20
    end = Fraction(n) / fps_src
    want_pad = sum(1 for k in range(20) if 8 + Fraction(k, 5) >= end)
    assert r.n_padded == want_pad == 10
    assert [read_index(f) for f in r.frames[-want_pad:]] == [n - 1] * want_pad
    assert "repeat its last frame" in r.report and "10 frames" in r.report and "2.00 s" in r.report


def test_sample_frames_open_ended_duration(videos):
    path, n = videos[Fraction(25)]
    frames, ts, rep = sample_frames(path, fps=5, start=9, size=16)
    assert frames.shape[0] == 5  # targets 9.0 … 9.8 lie before the 10 s end
    assert [read_index(f) for f in frames] == [225, 230, 235, 240, 245]


def test_official_integer_stride_quirk_is_fixed(videos):
    """Official: stride ceil(24/5)=5 → frame 5k (4.8 fps).  Ours: frame floor(k·24/5)."""
    path, n = videos[Fraction(24)]
    frames, _, _ = sample_frames(path, fps=5, duration=10, size=16)
    got = [read_index(f) for f in frames]
    official = [5 * k for k in range(50)]
    assert got[49] == 235 and official[49] == 245
    assert got != official


@pytest.mark.parametrize("src_fps,fps", [(Fraction(24), 5), (Fraction(30), 25), (Fraction(25), 25)])
def test_official_stride_mode_reproduces_read_video(videos, src_fps, fps):
    """sampling="official" follows read_video's index rule, re-derived here by hand."""
    path, n = videos[src_fps]
    r = sample_frames_detailed(path, fps=fps, start=1.5, duration=10, size=16, sampling="official")
    interval = -(-src_fps.numerator // (fps * src_fps.denominator))  # ceil(src/target)
    seek = int(1.5 * float(src_fps))
    ids = [i for i in range(seek, seek + 10 * fps * interval, interval) if i < n]
    ids = (ids + [ids[-1]] * (10 * fps))[: 10 * fps]
    assert [read_index(f) for f in r.frames] == ids
    assert r.n_padded == max(0, 10 * fps - len(range(seek, min(seek + 10 * fps * interval, n), interval)))
    assert f"one frame in every {interval}" in r.report
    if src_fps == 30 and fps == 25:  # the documented quirk: 15 fps, then copies of the last frame
        assert r.n_padded > 0 and ids[1] - ids[0] == 2


def test_sample_frames_vfr(tmp_path):
    durs = [40, 80, 20, 60, 10, 90]
    pts = np.concatenate([[0], np.cumsum([durs[i % len(durs)] for i in range(59)])]).tolist()
    path = make_video(tmp_path / "vfr.mkv", Fraction(25), 60, pts=pts, time_base=Fraction(1, 1000))
    assert probe_video(path, count_frames=True).n_frames == 60
    r = sample_frames_detailed(path, fps=25, start=0.5, duration=2, size=32)
    for k, f in enumerate(r.frames):
        t_ms = 500 + 40 * k
        want = max(i for i, p in enumerate(pts) if p <= t_ms)
        assert read_index(f) == want, (k, t_ms)
        assert abs(float(r.source_times_s[k]) * 1000 - pts[want]) < 1e-6


def test_sample_frames_center_crop_keeps_aspect(tmp_path):
    # 128×64 source: left half white, right half black, with a grey bar in the middle quarter
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :64] = 255
    img[:, 48:80] = 128
    with av.open(str(tmp_path / "wide.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=10, options={"crf": "10"})
        s.width, s.height, s.pix_fmt = 128, 64, "yuv420p"
        for i in range(5):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = i
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    crop, _, _ = sample_frames(tmp_path / "wide.mp4", fps=10, duration=0.2, size=32, resize_mode="center_crop")
    stretch, _, _ = sample_frames(tmp_path / "wide.mp4", fps=10, duration=0.2, size=32)
    # centre crop of the 64×128 → 32×64 resize keeps source columns 32..96: white 32..48 | grey 48..80 | black
    row = crop[0, 0, 16].int()
    assert abs(row[2] - 255) < 12 and abs(row[16] - 128) < 12 and row[29] < 12
    srow = stretch[0, 0, 16].int()
    assert abs(srow[4] - 255) < 12 and abs(srow[16] - 128) < 12 and srow[28] < 12


def test_still_image_is_held(tmp_path):
    path = tmp_path / "still.png"
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 48, 40, "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(index_image(77, 48)[:40], format="rgb24")):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    r = sample_frames_detailed(path, fps=5, duration=10, size=24)
    assert r.frames.shape == (50, 3, 24, 24)
    assert r.n_padded == 0 and "still image" in r.report
    info = probe_video(path)
    assert info.is_image and info.n_frames == 1 and (info.width, info.height) == (48, 40)
    assert torch.equal(r.frames[0], r.frames[-1])
    fl, _, _ = sample_frames(path, fps=5, duration=1, size=24, out="float")
    assert fl.dtype == torch.float32 and 0.0 <= fl.min() and fl.max() <= 1.0 and fl.max() > 0.9


def test_frames_from_images_matches_timestamp_rule():
    src = Fraction(30000, 1001)
    n = 100
    imgs = torch.stack([torch.from_numpy(index_image(i)).float() / 255 for i in range(n)])
    r = frames_from_images_detailed(imgs, 29.97002997, fps=5, start=0.4, duration=4, size=32)
    want = [expected_index(Fraction(2, 5) + Fraction(k, 5), src, n) for k in range(20)]
    got = [read_index(f) for f in r.frames]
    end = Fraction(n) / src
    n_pad = sum(1 for k in range(20) if Fraction(2, 5) + Fraction(k, 5) >= end)
    assert got == want and r.n_padded == n_pad > 0
    # still image held
    frames, ts, rep = frames_from_images(imgs[:1], None, fps=25, duration=2, size=16)
    assert frames.shape == (50, 3, 16, 16) and "still" in rep
    assert all(read_index(f) == 0 for f in frames)


def test_frames_from_images_errors():
    with pytest.raises(InputError, match="frame rate"):
        frames_from_images(torch.rand(3, 8, 8, 3), None, fps=5, duration=1)
    with pytest.raises(InputError, match=r"\[N, H, W, 3\]"):
        frames_from_images(torch.rand(3, 3, 8, 8), 25, fps=5, duration=1)
    with pytest.raises(InputError, match="past the end"):
        frames_from_images(torch.rand(10, 8, 8, 3), 25, fps=5, start=2, duration=1)


def test_probe_video(videos, tmp_path):
    path, n = videos[Fraction(30000, 1001)]
    info = probe_video(path)
    assert info.fps == Fraction(30000, 1001) and info.n_frames == n
    assert (info.width, info.height, info.has_video, info.has_audio) == (SIDE, SIDE, True, False)
    assert abs(info.duration_s - n * 1001 / 30000) < 1e-3


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

def test_error_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    for fn in (lambda: sample_frames(p, fps=5), lambda: load_audio(p), lambda: probe_video(p)):
        with pytest.raises(MediaError, match="nope.mp4: file not found"):
            fn()


def test_error_garbage_bytes(tmp_path):
    p = tmp_path / "garbage.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="garbage.mp4: not a readable audio/video file"):
        sample_frames(p, fps=5, duration=1)
    with pytest.raises(MediaError, match="garbage.mp4"):
        load_audio(p)
    with pytest.raises(MediaError, match="in memory"):
        load_audio(p.read_bytes())


def test_error_zero_frame_video(tmp_path):
    # a container whose video stream has no frames at all (FFmpeg drops the empty track)
    p = tmp_path / "zero.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        c.start_encoding()
    with pytest.raises(MediaError, match="zero.mp4: .*(zero-frame|no audio or video)"):
        sample_frames(p, fps=5, duration=1)
    # a video stream with no frames next to an audio stream that has samples
    p2 = tmp_path / "zero_v.mkv"
    with av.open(str(p2), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=44100, layout="stereo")
        fr = av.AudioFrame.from_ndarray(np.zeros((2, 44100), np.float32), format="fltp", layout="stereo")
        fr.sample_rate, fr.pts = 44100, 0
        for pk in list(a.encode(fr)) + list(a.encode(None)):
            c.mux(pk)
    with pytest.raises(MediaError, match="zero_v.mkv: the video stream contains no decodable frames"):
        sample_frames(p2, fps=5, duration=1)


def test_error_audio_only_as_video_and_silent_video_as_audio(tmp_path, videos):
    a = write_audio(tmp_path / "a.wav", np.zeros((1, 1000), np.int16), 16000, "pcm_s16le", "s16", "mono")
    with pytest.raises(MediaError, match="a.wav: has no video stream \\(it is audio-only\\)"):
        sample_frames(a, fps=5, duration=1)
    v, _ = videos[Fraction(25)]
    with pytest.raises(MediaError, match="has no audio stream \\(a video without sound\\)"):
        load_audio(v)
    assert load_video_audio(v) is None


def test_error_start_past_end(videos):
    path, _ = videos[Fraction(25)]
    with pytest.raises(InputError, match="past the end"):
        sample_frames(path, fps=5, start=30, duration=1)


# ------------------------------------------------------------------------------------------
# Audio decoding
# ------------------------------------------------------------------------------------------

def _int16_channels(c: int, n: int) -> np.ndarray:
    """Distinct content per channel so de-interleaving mistakes show; includes ±full scale."""
    rng = np.random.default_rng(c)
    x = rng.integers(-20000, 20000, size=(c, n)).astype(np.int16)
    x[:, 0] = -32768
    x[:, 1] = 32767
    x[:, 2] = np.arange(c) * 1000
    return x


@pytest.mark.parametrize("channels,layout", [(1, "mono"), (2, "stereo"), (6, "5.1")])
@pytest.mark.parametrize("codec,ext", [("pcm_s16le", "wav"), ("flac", "flac")])
def test_load_audio_lossless_int16_exact(tmp_path, channels, layout, codec, ext):
    x = _int16_channels(channels, 3000)
    p = write_audio(tmp_path / f"a.{ext}", x, 22050, codec, "s16", layout)
    w, sr = load_audio(p)
    assert sr == 22050 and w.dtype == torch.float32 and w.shape == (channels, 3000)
    assert torch.equal(w, torch.from_numpy(x.astype(np.float32) / 32768.0))
    assert w[0, 0] == -1.0 and abs(float(w[0, 1]) - 32767 / 32768) < 1e-7


@pytest.mark.parametrize("codec,fmt,scale", [
    ("pcm_u8", "u8", None), ("pcm_s32le", "s32", 2.0**31), ("pcm_f32le", "flt", 1.0), ("pcm_f64le", "dbl", 1.0)])
def test_load_audio_sample_formats(tmp_path, codec, fmt, scale):
    rng = np.random.default_rng(1)
    f = rng.uniform(-0.9, 0.9, size=(2, 500))
    if fmt == "u8":
        data = np.round(f * 127 + 128).astype(np.uint8)
        want = (data.astype(np.float64) - 128) / 128
    elif fmt == "s32":
        data = np.round(f * 2**31).astype(np.int32)
        want = data / scale
    else:
        data = f.astype(np.float32 if fmt == "flt" else np.float64)
        want = data
    p = write_audio(tmp_path / "x.wav", data, 8000, codec, fmt, "stereo")
    w, sr = load_audio(p)
    assert sr == 8000 and w.shape == (2, 500)
    np.testing.assert_allclose(w.numpy(), want, atol=1e-7)


@pytest.mark.parametrize("codec,ext,sr,fmt", [("libmp3lame", "mp3", 44100, "fltp"), ("libopus", "ogg", 48000, "flt"),
                                               ("aac", "m4a", 44100, "fltp")])
@pytest.mark.parametrize("channels", [1, 2])
def test_load_audio_lossy(tmp_path, codec, ext, sr, fmt, channels):
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"{codec} encoder not in this PyAV build")
    t = np.arange(sr) / sr
    freqs = [440.0, 1000.0][:channels]
    x = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
    p = write_audio(tmp_path / f"a.{ext}", x, sr, codec, fmt, "mono" if channels == 1 else "stereo")
    w, got_sr = load_audio(p)
    assert got_sr == sr and w.shape[0] == channels and abs(w.shape[1] - sr) < 3000
    for c, f in enumerate(freqs):
        spec = np.abs(np.fft.rfft(w[c, 4000:4000 + sr // 2].numpy()))
        assert abs(np.argmax(spec) * 2 - f) <= 2  # bin width 2 Hz
        rms = float(w[c, 4000:4000 + sr // 2].pow(2).mean().sqrt())
        assert abs(rms - 0.5 / math.sqrt(2)) < 0.03, rms


def test_load_audio_start_duration_and_filelike(tmp_path):
    x = _int16_channels(2, 48000)
    p = write_audio(tmp_path / "a.flac", x, 16000, "flac", "s16", "stereo")
    w, sr = load_audio(p, start=1.25, duration=0.5)
    assert w.shape == (2, 8000)
    assert torch.equal(w, torch.from_numpy(x[:, 20000:28000].astype(np.float32) / 32768))
    w2, _ = load_audio(io.BytesIO(p.read_bytes()), start=1.25, duration=0.5)
    assert torch.equal(w, w2)
    w3, _ = load_audio(p, start=2.5)  # 0.5 s left
    assert w3.shape == (2, 8000)
    with pytest.raises(InputError, match="past the end"):
        load_audio(p, start=5)


def test_load_video_audio(tmp_path):
    p = make_video(tmp_path / "av.mp4", Fraction(25), 25, audio_sr=44100)
    w, sr = load_video_audio(p)
    assert sr == 44100 and w.shape[0] == 2 and abs(w.shape[1] - 44100) <= 2048
    assert 0.25 < float(w.abs().max()) < 0.35


# ------------------------------------------------------------------------------------------
# Resampling
# ------------------------------------------------------------------------------------------

def _tone(f, sr, seconds=1.0, amp=0.5):
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * f * t)).to(torch.float32)


@pytest.mark.parametrize("orig", [48000, 22050, 16000])
def test_resample_keeps_tone_frequency_and_amplitude(orig):
    x = _tone(1000, orig)[None].repeat(2, 1)
    y = resample(x, orig, 44100)
    assert y.shape == (2, resampled_length(x.shape[-1], orig, 44100)) and y.dtype == torch.float32
    mid = y[0, 4410:-4410].double().numpy()
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    peak_hz = np.argmax(spec) * 44100 / len(mid)
    assert abs(peak_hz - 1000) < 2
    rms_in = 0.5 / math.sqrt(2)
    db = 20 * math.log10(np.sqrt(np.mean(mid**2)) / rms_in)
    assert abs(db) < 0.1, db


@pytest.mark.parametrize("orig,new,f", [(48000, 22050, 15000), (44100, 16000, 10000), (48000, 32000, 21000)])
def test_resample_removes_content_above_new_nyquist(orig, new, f):
    """Tones ≥ 1.25× the new Nyquist lose ≥ 40 dB (the width-6 Hann filter's transition band
    spans roughly 0.9–1.25× Nyquist, as torchaudio's does)."""
    x = _tone(f, orig)
    y = resample(x, orig, new)
    mid = y[new // 10:-new // 10].double()
    ratio_db = 20 * math.log10(float(mid.pow(2).mean().sqrt()) / (0.5 / math.sqrt(2)))
    assert ratio_db <= -40, ratio_db


def test_resample_length_rule():
    for n in (1, 7, 160, 161, 1000, 44100, 48001):
        for o, nw in ((48000, 44100), (16000, 44100), (44100, 48000), (22050, 44100), (44100, 8000)):
            want = math.ceil(Fraction(n * nw, o))
            assert resampled_length(n, o, nw) == want
            assert resample(torch.zeros(n), o, nw).shape[-1] == want


def _reference_resample(x: np.ndarray, orig: int, new: int, lpw=6, rolloff=0.99) -> np.ndarray:
    """Direct sum y[j] = Σ_i x[i]·h(base·(i/O − j/N)), written as explicit loops (float64)."""
    g = math.gcd(orig, new)
    O, N = orig // g, new // g
    base = min(O, N) * rolloff
    out = np.zeros(math.ceil(len(x) * N / O))
    for j in range(len(out)):
        centre = j * O / N
        lo, hi = int(math.floor(centre - lpw * O / base)) - 1, int(math.ceil(centre + lpw * O / base)) + 1
        acc = 0.0
        for i in range(max(lo, 0), min(hi, len(x) - 1) + 1):
            u = base * (i / O - j / N)
            if abs(u) >= lpw:
                continue
            s = 1.0 if u == 0 else math.sin(math.pi * u) / (math.pi * u)
            acc += x[i] * s * math.cos(math.pi * u / (2 * lpw)) ** 2 * base / O
        out[j] = acc
    return out


@pytest.mark.parametrize("orig,new", [(48000, 44100), (16000, 44100), (44100, 32000), (3, 2)])
def test_resample_matches_direct_formula(orig, new):
    x = np.random.default_rng(0).standard_normal(400)
    y = resample(torch.from_numpy(x), orig, new).numpy()
    ref = _reference_resample(x, orig, new)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-9)


def test_resample_phase_chunking_is_exact():
    x = torch.randn(2, 3, 3000, dtype=torch.float64)
    a = resample(x, 1001, 1500)  # gcd 1: 1500 phases × 1015 taps
    b = resample(x, 1001, 1500, max_kernel_elements=100_000)  # 98 phases per chunk
    assert a.shape == (2, 3, resampled_length(3000, 1001, 1500))
    assert torch.allclose(a, b, atol=1e-12)


def test_resample_against_torchaudio_if_available():
    ta = pytest.importorskip("torchaudio")
    x = torch.randn(2, 5000)
    for o, n in ((48000, 44100), (16000, 44100), (44100, 22050)):
        torch.testing.assert_close(resample(x, o, n), ta.functional.resample(x, o, n), atol=1e-5, rtol=0)


def test_resample_input_checks():
    with pytest.raises(InputError):
        resample(torch.zeros(10), 44100.5, 48000)
    with pytest.raises(InputError):
        resample(torch.zeros(10, dtype=torch.int16), 44100, 48000)
    x = torch.randn(100)
    assert resample(x, 44100, 44100) is x
    assert resample(x.half(), 48000, 44100).dtype == torch.float16


# ------------------------------------------------------------------------------------------
# Channels, length, normalisation, WAV
# ------------------------------------------------------------------------------------------

def test_to_channels_rules():
    mono = torch.randn(1, 50)
    st = to_channels(mono, 2)
    assert torch.equal(st[0], mono[0]) and torch.equal(st[1], mono[0])
    x = torch.randn(3, 2, 50)
    assert torch.allclose(to_channels(x, 1)[:, 0], (x[:, 0] + x[:, 1]) / 2)
    # 5.1 = FL FR FC LFE BL BR, by hand
    s = torch.randn(6, 40, dtype=torch.float64)
    g = 1 / math.sqrt(2)
    L = (s[0] + g * s[2] + g * s[4]) / (1 + 2 * g)
    R = (s[1] + g * s[2] + g * s[5]) / (1 + 2 * g)
    out = to_channels(s, 2)
    assert torch.allclose(out[0], L) and torch.allclose(out[1], R)
    assert torch.equal(to_channels(s, 2, rule="first_two"), s[:2])
    assert torch.allclose(stereo_downmix_matrix(12).sum(1), torch.ones(2, dtype=torch.float64))
    ones = torch.ones(8, 10)
    assert float(to_channels(ones, 2).abs().max()) <= 1.0 + 1e-6  # full scale cannot clip
    with pytest.raises(InputError):
        to_channels(torch.randn(2, 10), 6)


def test_fit_length_modes_and_reports():
    sr = 10
    x = torch.arange(1, 9, dtype=torch.float32)[None]  # 0.8 s
    y, r = fit_length(x, 10, mode="right_pad", sample_rate=sr)
    assert y[0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 0] and r.startswith("padded 0.20 s of silence at the end")
    y, r = fit_length(x, 10, mode="left_pad", sample_rate=sr)
    assert y[0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8] and "at the start" in r
    y, r = fit_length(x, 11, mode="crop_center")
    assert y[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0] and "samples" in r
    y, r = fit_length(x, 5, mode="right_pad", sample_rate=sr)
    assert y[0].tolist() == [1, 2, 3, 4, 5] and r.startswith("cropped to the first 0.50 s")
    y, r = fit_length(x, 4, mode="crop_center", sample_rate=sr)
    assert y[0].tolist() == [3, 4, 5, 6] and "middle" in r
    y, r = fit_length(x, 20, mode="loop")
    assert y[0].tolist() == list(range(1, 9)) * 2 + [1, 2, 3, 4] and "looped" in r
    y, r = fit_length(x, 8)
    assert y is x and "unchanged" in r
    with pytest.raises(InputError):
        fit_length(x, 10, mode="stretch")


def test_conform_audio_pipeline_and_report():
    x = _tone(1000, 48000, seconds=0.5)[None]  # mono, 0.5 s at 48 kHz
    y, rep = conform_audio(x[None], 48000, target_sr=44100, channels=2, n_samples=44100, mode="left_pad")
    assert y.shape == (1, 2, 44100)
    manual = resample(x, 48000, 44100)
    assert torch.equal(y[0, 0, 44100 - manual.shape[-1]:], manual[0]) and torch.equal(y[0, 0], y[0, 1])
    assert float(y[0, :, :22050].abs().max()) == 0.0
    assert rep.startswith("resampled 48000 → 44100 Hz; mono → 2 channels; padded 0.50 s of silence at the start")
    same, rep2 = conform_audio(manual, 44100, target_sr=44100, channels=1)
    assert same is manual and rep2 == "unchanged"


def test_peak_normalize_official():
    x = torch.tensor([[0.1, -0.4], [0.2, 0.05]])
    assert torch.allclose(peak_normalize(x), x / 0.4)
    assert torch.equal(peak_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))
    b = torch.stack([x, 2 * x])
    assert torch.allclose(peak_normalize(b, per_item=True)[0], x / 0.4)
    assert torch.allclose(peak_normalize(b)[0], x / 0.8)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_save_wav_roundtrip(tmp_path, subtype):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.uniform(-1, 1, size=(2, 1000)).astype(np.float32))
    x[0, 0], x[1, 0] = -1.0, 1.0
    p = tmp_path / f"o_{subtype}.wav"
    save_wav(p, x, 32000, subtype=subtype)
    w, sr = load_audio(p)
    assert sr == 32000 and w.shape == (2, 1000)
    bits = {"PCM_16": 16, "PCM_24": 24}.get(subtype)
    if bits is None:
        assert torch.equal(w, x)
    else:
        q = np.clip(np.round(x.double().numpy() * 2 ** (bits - 1)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        np.testing.assert_array_equal(w.double().numpy(), q / 2 ** (bits - 1))
        with wave.open(str(p)) as wf:
            assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (2, bits // 8, 32000)
        save_wav(tmp_path / "again.wav", w, sr, subtype=subtype)  # int → float → int is lossless
        assert torch.equal(load_audio(tmp_path / "again.wav")[0], w)
    with pytest.raises(InputError, match="NaN"):
        save_wav(tmp_path / "bad.wav", torch.full((1, 4), float("nan")), 8000)


# ------------------------------------------------------------------------------------------
# Writing and muxing
# ------------------------------------------------------------------------------------------

def test_write_video_roundtrip(tmp_path):
    frames = torch.stack([torch.from_numpy(index_image(i)) for i in range(30)])
    audio = _tone(440, 44100, seconds=2.0)[None].repeat(2, 1)
    rep = write_video(frames, 25, tmp_path / "w.mp4", audio=audio, sr=44100)
    assert pick_video_encoder() in rep
    info = probe_video(tmp_path / "w.mp4")
    assert info.has_audio and info.has_video and info.fps == 25 and count_frames(tmp_path / "w.mp4") == 30
    got, _, _ = sample_frames(tmp_path / "w.mp4", fps=25, duration=1.2, size=32)
    assert [read_index(f) for f in got] == list(range(30))
    w, sr = load_video_audio(tmp_path / "w.mp4")
    assert abs(w.shape[1] / sr - 1.2) < 0.05  # audio cut to the 1.2 s of video
    # odd size and float input
    write_video(torch.rand(3, 31, 45, 3), 10, tmp_path / "odd.mkv")
    assert probe_video(tmp_path / "odd.mkv").width == 46


def test_mux_copy_keeps_every_frame(tmp_path):
    src = make_video(tmp_path / "src.mp4", Fraction(25), 50, audio_sr=48000)  # 2 s, own audio replaced
    audio = _tone(1000, 44100, seconds=3.0)[None].repeat(2, 1)
    rep = mux_audio_into_video(src, audio, 44100, tmp_path / "out.mp4")
    assert "without re-encoding" in rep
    info = probe_video(tmp_path / "out.mp4")
    assert info.has_audio and info.has_video
    assert count_frames(tmp_path / "out.mp4") == 50
    w, sr = load_video_audio(tmp_path / "out.mp4")
    assert sr == 44100 and abs(w.shape[1] / sr - 2.0) < 0.05  # cut to the shorter (video, 2 s)
    spec = np.abs(np.fft.rfft(w[0, 4410:4410 + 22050].numpy()))
    assert abs(np.argmax(spec) * 2 - 1000) <= 2  # it is our tone, not the source's 440 Hz


def test_mux_copy_from_a_later_keyframe(tmp_path):
    # keyframe every 25 frames, no B-frames: a cut [1 s, 2 s) is exact as a packet copy
    src = make_video(tmp_path / "src.mp4", Fraction(25), 75, options={"g": "25", "bf": "0"})
    audio = _tone(1000, 44100, seconds=5.0)[None].repeat(2, 1)
    rep = mux_audio_into_video(src, audio, 44100, tmp_path / "k.mp4", start=1.0, duration=1.0)
    assert "copied 25 h264 frames" in rep
    got, _, _ = sample_frames(tmp_path / "k.mp4", fps=25, duration=1.0, size=32)
    assert [read_index(f) for f in got] == list(range(25, 50))
    with pytest.raises(MediaError, match="not on a keyframe"):
        mux_audio_into_video(src, audio, 44100, tmp_path / "k2.mp4", start=1.2, reencode=False)


def test_pick_video_encoder_falls_back_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        name = pick_video_encoder("no_such_encoder_xyz")
    assert name in ("libx264", "libopenh264", "mpeg4")
    assert "no_such_encoder_xyz is not available" in caplog.text and name in caplog.text


def test_mux_cut_and_offset_reencodes_exactly(tmp_path):
    src = make_video(tmp_path / "src.mp4", Fraction(25), 75)  # 3 s
    audio = _tone(1000, 44100, seconds=1.0)[None]
    rep = mux_audio_into_video(src, audio, 44100, tmp_path / "cut.mp4", start=0.52, duration=2.0)
    assert "re-encoded 25 frames" in rep and "keyframe" in rep
    assert count_frames(tmp_path / "cut.mp4") == 25  # 1.0 s of audio at 25 fps
    got, _, _ = sample_frames(tmp_path / "cut.mp4", fps=25, duration=1.0, size=32)
    assert [read_index(f) for f in got] == list(range(13, 38))  # frame 13 is shown at 0.52 s
    w, sr = load_video_audio(tmp_path / "cut.mp4")
    assert w.shape[0] == 1 and abs(w.shape[1] / sr - 1.0) < 0.05


def test_mux_errors(tmp_path):
    a = write_audio(tmp_path / "a.wav", np.zeros((1, 1000), np.int16), 16000, "pcm_s16le", "s16", "mono")
    with pytest.raises(MediaError, match="a.wav: has no video stream"):
        mux_audio_into_video(a, torch.zeros(1, 100), 16000, tmp_path / "o.mp4")
    src = make_video(tmp_path / "s.mp4", Fraction(25), 10)
    with pytest.raises(InputError, match="output must end in"):
        mux_audio_into_video(src, torch.zeros(1, 100), 16000, tmp_path / "o.avi")
    with pytest.raises(InputError, match="past the end"):
        mux_audio_into_video(src, torch.zeros(1, 100), 16000, tmp_path / "o.mp4", start=5)


def test_cover_size_is_torchvision_resize_rule_and_covers_the_target():
    """One size rule for center_crop and the Synchformer's Resize(int): the limiting side gets its
    target exactly, the other int(target · other / side) — torchvision's truncation.  The old
    center_crop rule int(other · (target / side)) gave one pixel less for e.g. 5×330 → 224."""
    from audiox_core.media.frames import cover_size, resize_short_side
    assert cover_size(480, 854, 224, 224) == (224, 398)
    assert resize_short_side(333, 500, 224) == (224, 336)
    assert cover_size(5, 330, 224, 224) == (224, 14784) != (224, int(330 * (224 / 5)))
    for h in range(1, 300, 7):
        for w in range(1, 300, 11):
            for th, tw in ((224, 224), (32, 48), (50, 20)):
                rh, rw = cover_size(h, w, th, tw)
                assert rh >= th and rw >= tw
                assert rh == th or rw == tw  # one side is exact
                if th == tw:
                    short = min(h, w)
                    assert (rh, rw) == ((th, int(th * w / h)) if h == short else (int(tw * h / w), tw))
