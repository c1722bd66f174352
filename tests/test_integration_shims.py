"""The test-only torchaudio/torchvision shims of tests/integration (used by the ComfyUI test server)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "integration" / "shims"

PROBE = r"""
import math, torch, torchaudio, torchvision, torchvision.transforms
assert "shim" in torchaudio.__version__
x = torch.sin(2 * math.pi * 440 * torch.arange(44100) / 44100).reshape(1, 1, -1).repeat(1, 2, 1)
y = torchaudio.functional.resample(x, 44100, 16000)
assert y.shape == (1, 2, 16000), y.shape
ref = torch.sin(2 * math.pi * 440 * torch.arange(16000, dtype=torch.float64) / 16000)
err = (y[0, 0, 200:-200].double() - ref[200:-200]).abs().max().item()
assert err < 1e-2, err
try:
    torchvision.models
except AttributeError as e:
    assert "test-only torchvision shim" in str(e)
else:
    raise AssertionError("torchvision shim exposed .models")
# transformers takes the shim for torchvision: its model classes must still import (the pack builds
# T5 and CLIP from them inside the test server)
from transformers import CLIPVisionModelWithProjection, T5EncoderModel  # noqa: F401
print("ok")
"""


def test_shims_in_a_server_like_process():
    env = dict(os.environ, PYTHONPATH=str(SHIMS))
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(SHIMS.parent))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
