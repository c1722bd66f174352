"""``torchvision.transforms.functional`` of the test-only shim: every function raises when used."""


def _unavailable(name: str):
    def fn(*args, **kwargs):
        raise RuntimeError(f"torchvision.transforms.functional.{name} is not available: this is the test-only "
                           "torchvision shim from tests/integration/shims")
    fn.__name__ = name
    return fn


pil_to_tensor = _unavailable("pil_to_tensor")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable(name)
