"""``torchvision.transforms`` of the test-only shim: importable, every attribute raises.

Exceptions, for ``transformers`` (which takes any importable ``torchvision`` as present and, at
import of ``transformers.image_utils`` — reached from every model class via ``modeling_utils`` —
builds a table from ``transforms.InterpolationMode`` and imports
``transforms.functional.pil_to_tensor``): ``InterpolationMode`` is a plain enum with torchvision's
member names, and ``functional`` is a submodule whose functions raise when called.
"""
import enum

from . import functional  # noqa: F401


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def __getattr__(name: str):
    raise AttributeError(
        f"torchvision.transforms.{name} is not available: this is the test-only torchvision shim "
        "from tests/integration/shims"
    )
