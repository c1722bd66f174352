"""``torchvision.transforms`` of the test-only shim: importable, every attribute raises."""


def __getattr__(name: str):
    raise AttributeError(
        f"torchvision.transforms.{name} is not available: this is the test-only torchvision shim "
        "from tests/integration/shims"
    )
