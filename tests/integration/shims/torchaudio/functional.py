"""``resample`` for the test-only torchaudio shim (see the package docstring).

It delegates to this repository's ``audiox_core.media.resample`` (torchaudio's windowed-sinc
kernel), loaded from the checkout under a private module name so the test server gets no
importable top-level ``audiox_core`` it would not have in a real install.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch

_REPO = Path(__file__).resolve().parents[4]
_PRIVATE = "_audiox_core_for_torchaudio_shim"


def _core_resample():
    if _PRIVATE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _PRIVATE, _REPO / "audiox_core" / "__init__.py",
            submodule_search_locations=[str(_REPO / "audiox_core")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[_PRIVATE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{_PRIVATE}.media.audio").resample


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99, resampling_method: str = "sinc_interp_hann", beta=None) -> torch.Tensor:
    """``torchaudio.functional.resample`` (Hann-windowed sinc only) over the last axis."""
    if resampling_method != "sinc_interp_hann":
        raise NotImplementedError(f"torchaudio test shim: resampling_method={resampling_method!r} is not provided")
    return _core_resample()(waveform, int(orig_freq), int(new_freq),
                            lowpass_filter_width=lowpass_filter_width, rolloff=rolloff)
