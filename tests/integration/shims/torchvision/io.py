"""``torchvision.io`` of the test-only shim (``transformers.video_utils`` imports it at import time):
importable, every attribute raises."""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"torchvision.io.{name} is not available: this is the test-only torchvision shim "
                         "from tests/integration/shims")
