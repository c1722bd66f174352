"""Peak memory of a short inpainting given a long input file: does it follow the work or the file?

Writes a long WAV (default 20 minutes, 16 kHz mono) and a short one (4 s) and runs the same CLI
inpainting on each in a fresh process (demo Turbo model, ``--duration 4 --inpaint 1-2``),
reporting each process's peak RSS.  With the span-only decoding the two peaks are about equal;
decoding the whole file would add its decoded size (here 20 min × 16 kHz × 4 bytes ≈ 73 MiB, plus
the copies a whole-file decode and resample make).

    python bench/long_input_memory.py [--minutes 20] [--rate 16000] [--code-root DIR]

``--code-root``: run the CLI of another checkout of this repository (e.g. an export of an older
commit) to compare; the model and inputs stay the same.  ``--audio-prompt``: the node path instead
(an in-memory AUDIO given to the audio-prompt encoder), only its window resampled vs the whole.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT

MODEL = ROOT / "models" / "demo" / "audiox_demo_turbo.safetensors"
RUNNER = """
import resource, runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = ["audiox_core"] + sys.argv[2:]
try:
    runpy.run_module("audiox_core", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "EXIT", code, file=sys.stderr)
"""


def write_wav(path: Path, seconds: float, rate: int) -> None:
    """A quiet noise WAV written in blocks (the writer itself stays small)."""
    import wave

    import numpy as np
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        left = int(seconds * rate)
        while left:
            n = min(left, rate * 60)
            w.writeframes((rng.standard_normal(n) * 1000).astype("<i2").tobytes())
            left -= n


def run(code_root: Path, wav: Path, out: Path) -> dict:
    args = [sys.executable, "-c", RUNNER, str(code_root), "generate", "--model", str(MODEL), "--prompt", "a knock",
            "--init-audio", str(wav), "--duration", "4", "--inpaint", "1-2", "--out", str(out)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    line = [s for s in p.stderr.splitlines() if s.startswith("PEAK_RSS_KIB")]
    if not line:
        raise SystemExit(f"the CLI did not finish:\n{p.stderr[-2000:]}")
    parts = line[-1].split()
    return {"peak_rss_mib": round(int(parts[1]) / 1024, 1), "exit": parts[3], "wrote": out.is_file()}


TENSOR_RUNNER = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import torch
from audiox_core import conditions
from audiox_core.api import load
torch.set_num_threads(1)
minutes, rate, whole = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "whole"
model = load(sys.argv[5])
if whole:  # what the code did before: the whole input resampled
    conditions.audio_prompt_seconds = lambda m: None
g = torch.Generator().manual_seed(0)
wave = torch.empty(1, 2, int(minutes * 60 * rate)).normal_(0, 0.1, generator=g)  # an AUDIO as Load Audio gives
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
conditions.encode_audio_prompt(model, wave, sample_rate=rate, mask=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("EXTRA_KIB", peak - base, file=sys.stderr)
"""


def audio_prompt_tensor(minutes: float, rate: int, whole: bool) -> float:
    """Extra peak RSS (MiB) of encoding an in-memory AUDIO (stereo) as the audio prompt (node path)."""
    p = subprocess.run([sys.executable, "-c", TENSOR_RUNNER, str(ROOT), str(minutes), str(rate),
                        "whole" if whole else "span", str(MODEL)], capture_output=True, text=True, timeout=900)
    line = [s for s in p.stderr.splitlines() if s.startswith("EXTRA_KIB")]
    if not line:
        raise SystemExit(f"the audio-prompt run did not finish:\n{p.stderr[-2000:]}")
    return round(int(line[-1].split()[1]) / 1024, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--code-root", type=Path, default=ROOT)
    ap.add_argument("--audio-prompt", action="store_true",
                    help="instead: the node path, an in-memory stereo AUDIO of --minutes given to the audio-prompt "
                         "encoder; extra peak RSS now vs with the whole input resampled (the code before)")
    a = ap.parse_args(argv)
    if a.audio_prompt:
        out = {"audio_prompt_input": f"{a.minutes:g} min, {a.rate} Hz stereo tensor",
               "extra_peak_rss_mib_span": audio_prompt_tensor(a.minutes, a.rate, whole=False),
               "extra_peak_rss_mib_whole": audio_prompt_tensor(a.minutes, a.rate, whole=True)}
        print(json.dumps(out, indent=1))
        return 0
    with tempfile.TemporaryDirectory(prefix="audiox_longmem_") as d:
        d = Path(d)
        write_wav(d / "long.wav", a.minutes * 60, a.rate)
        write_wav(d / "short.wav", 4.0, a.rate)
        short = run(a.code_root, d / "short.wav", d / "short_out.wav")
        long = run(a.code_root, d / "long.wav", d / "long_out.wav")
    out = {"code": str(a.code_root), "long_input": f"{a.minutes:g} min, {a.rate} Hz mono",
           "short_input": "4 s", "short": short, "long": long,
           "extra_peak_rss_mib": round(long["peak_rss_mib"] - short["peak_rss_mib"], 1)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
