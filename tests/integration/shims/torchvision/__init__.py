"""TEST-ONLY stand-in for ``torchvision`` — never install or ship this.

ComfyUI 0.3.64 imports ``torchvision`` at module import in ``comfy/ldm/cascade/*`` (reached from
``comfy.sd``, i.e. from ``nodes.py``: the server cannot start without it) and
``torchvision.transforms`` in the Cosmos and ACE model files, but uses them only when one of those
models is built.  The real torchvision wheel must stay out of the environment: its compiled ops do
not match the CPU torch build here and ``transformers`` then fails to import.  So
``tests/integration/test_comfyui_server.py`` puts the parent folder of this package on the test
server's ``PYTHONPATH`` (and nowhere else).  See ``tests/integration/README.md``.

Every attribute other than the ``transforms`` and ``io`` submodules raises, naming this shim, at
use time (and those submodules' own attributes do the same, except what ``transformers`` needs at
import time: see transforms/__init__.py).
"""
from . import io, transforms  # noqa: F401  (transformers imports both at import time)


def __getattr__(name: str):
    raise AttributeError(
        f"torchvision.{name} is not available: this is the test-only torchvision shim from "
        "tests/integration/shims (a ComfyUI model that needs torchvision cannot run in this test server)"
    )
