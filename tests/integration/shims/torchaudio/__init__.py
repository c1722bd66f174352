"""TEST-ONLY stand-in for ``torchaudio`` — never install or ship this.

It exists only so that a ComfyUI test server can import ``comfy_extras/nodes_audio.py`` (core
LoadAudio / SaveAudio / PreviewAudio), which imports ``torchaudio`` at module import although it
only ever calls ``torchaudio.functional.resample``.  Installing the real torchaudio wheel would
drag in a torch build of its own (and torchvision must stay out: it breaks ``transformers``), so
``tests/integration/test_comfyui_server.py`` puts the parent folder of this package on the
server's ``PYTHONPATH`` and nowhere else.  See ``tests/integration/README.md``.

Only :func:`torchaudio.functional.resample` is provided.  Anything else raises AttributeError at
use time, which is what a ComfyUI node needing more of torchaudio should do in a test run.
"""
from . import functional  # noqa: F401

__version__ = "0.0.0+audiox-test-shim"
