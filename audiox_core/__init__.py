"""audiox_core: a pure-PyTorch implementation of the AudioX model family.

AudioX, AudioX-MAF, AudioX-MAF-MMDiT and AudioX-Turbo, loading the official checkpoints
unchanged.  This package never imports ComfyUI.
"""
__version__ = "0.1.0"

from .errors import AudioXError, CheckpointError, ConfigError, InputError, Interrupted, MediaError  # noqa: F401
