"""Soak test: many consecutive generations in one process with the shipped demo model.

Runs N generations (default 200) cycling through the tasks — text→audio (Turbo and Base), video→
audio from an .mp4 file, image→audio, audio prompt, inpainting and completion of a WAV file,
variation, long-form (two windows) — and writes each result as a WAV, like the CLI does.  After a
warm-up it samples the resident set size (VmRSS) and the number of open file descriptors, and
reports their growth from the end of the warm-up to the end:

    python bench/soak.py [--n 200] [--warmup 20] [--threads 1] [--json out.json]

Pass criteria (issue 12): RSS growth ≤ 2 % after warm-up, no file-handle growth.  Exit code 1
when either is missed.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, load_average

DEMO = ROOT / "models" / "demo"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: the peak is the best we have
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def make_media(folder: Path):
    """A 4 s WAV and a 4 s 64×64 video with sound, written once (the inputs the tasks read)."""
    import torch

    from audiox_core import media
    g = torch.Generator().manual_seed(0)
    sr = 16000
    t = torch.arange(4 * sr) / sr
    wav = (0.3 * torch.sin(2 * torch.pi * 440 * t) * (t % 1 < 0.3)).reshape(1, -1)
    media.save_wav(folder / "clip.wav", wav, sr)
    frames = (torch.rand(32, 64, 64, 3, generator=g) * 255).to(torch.uint8)
    media.write_video(frames, 8, folder / "clip.mp4", audio=wav, sr=sr)
    image = torch.rand(1, 64, 64, 3, generator=g)
    return folder / "clip.wav", folder / "clip.mp4", image


def tasks(turbo, base, wav: Path, mp4: Path, image):
    """(name, model, generate kwargs) in the order they cycle."""
    from audiox_core.generate import SamplerSettings
    ts = lambda seed: SamplerSettings.for_model(turbo, seed=seed)  # noqa: E731
    bs = lambda seed: SamplerSettings.for_model(base, "base", seed=seed, steps=8)  # noqa: E731
    return [
        ("text→audio turbo", turbo, lambda s: dict(prompt="two high beeps then a low bell", settings=ts(s))),
        ("text→music base", base, lambda s: dict(prompt="calm piano at 90 bpm", music=True, settings=bs(s))),
        ("video→audio file", turbo, lambda s: dict(video=str(mp4), sync_features=False, settings=ts(s))),
        ("image→audio", turbo, lambda s: dict(image=image, sync_features=False, settings=ts(s))),
        ("audio prompt file", turbo, lambda s: dict(prompt="a bell", audio_prompt=str(wav), settings=ts(s))),
        ("inpaint file", turbo, lambda s: dict(prompt="a knock", init_audio=str(wav), inpaint=[(1.0, 2.0)],
                                               settings=ts(s))),
        ("completion file", base, lambda s: dict(init_audio=str(wav), keep_seconds=2.0, settings=bs(s))),
        ("variation", base, lambda s: dict(prompt="beeps", init_audio=str(wav), strength=0.6, settings=bs(s))),
        ("long-form 8 s", turbo, lambda s: dict(prompt="rain and thunder", duration=8.0, settings=ts(s))),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="generations in total")
    ap.add_argument("--warmup", type=int, default=20, help="generations before the baseline sample")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args(argv)
    if a.n <= a.warmup:
        ap.error("--n must be larger than --warmup")
    import torch

    from audiox_core import media
    from audiox_core.api import load
    from audiox_core.task import GenerationRequest, generate
    torch.set_num_threads(a.threads)
    t0 = time.time()
    turbo = load(DEMO / "audiox_demo_turbo.safetensors")
    base = load(DEMO / "audiox_demo_base.safetensors")
    print(f"loaded the demo Turbo + Base models in {time.time() - t0:.1f} s; load {load_average()}", file=sys.stderr)
    samples = []  # (i, rss MiB, fds)
    per_task: dict = {}
    with tempfile.TemporaryDirectory(prefix="audiox_soak_") as d:
        folder = Path(d)
        wav, mp4, image = make_media(folder)
        todo = tasks(turbo, base, wav, mp4, image)
        t_start = time.time()
        for i in range(a.n):
            name, model, kw = todo[i % len(todo)]
            t = time.perf_counter()
            res = generate(model, GenerationRequest(**kw(i)))
            media.save_wav(folder / "out.wav", media.peak_normalize(res.audio[0]), res.sample_rate)
            per_task.setdefault(name, []).append(time.perf_counter() - t)
            del res
            if i + 1 >= a.warmup and ((i + 1 - a.warmup) % len(todo) == 0 or i + 1 == a.n):
                gc.collect()
                samples.append((i + 1, rss_mib(), open_fds()))
                print(f"  {i + 1:4d}/{a.n}: RSS {samples[-1][1]:.1f} MiB, {samples[-1][2]} open files "
                      f"({time.time() - t_start:.0f} s)", file=sys.stderr)
    first, last = samples[0], samples[-1]
    peak = max(s[1] for s in samples)
    growth = 100.0 * (last[1] - first[1]) / first[1]
    peak_growth = 100.0 * (peak - first[1]) / first[1]
    fd_growth = last[2] - first[2]
    out = {"generations": a.n, "warmup": a.warmup, "threads": a.threads,
           "rss_after_warmup_mib": round(first[1], 1), "rss_end_mib": round(last[1], 1),
           "rss_peak_after_warmup_mib": round(peak, 1), "rss_growth_pct": round(growth, 2),
           "rss_peak_growth_pct": round(peak_growth, 2), "open_files_after_warmup": first[2],
           "open_files_end": last[2], "open_files_growth": fd_growth,
           "seconds_per_task": {k: round(sum(v) / len(v), 3) for k, v in per_task.items()},
           "samples": [{"after": i, "rss_mib": round(r, 1), "open_files": f} for i, r, f in samples],
           "load_average": load_average()}
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    ok = growth <= 2.0 and fd_growth <= 0
    print(f"{'PASS' if ok else 'FAIL'}: RSS growth after warm-up {growth:+.2f} % (peak {peak_growth:+.2f} %, "
          f"limit 2 %), open files {first[2]} → {last[2]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
