"""TEST-ONLY stand-in for ``spandrel`` — never install or ship this.

``comfy_extras/nodes_upscale_model.py`` imports ``ModelLoader`` and ``ImageModelDescriptor`` from
spandrel at module import; the real package depends on torchvision, which must stay out of this
environment (see ../torchvision).  Without the import the core Upscale Model Loader is missing,
and frontend 1.27.10 then fails to build *any* model-name combo whose input is called
``ckpt_name`` etc. (its model-to-node registry dereferences the missing node definition), which
breaks AudioX Model Loader in the browser tests.  Importable names only; using them raises.
"""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("spandrel is not available: this is the test-only shim from tests/integration/shims")


class ModelLoader(_Unavailable):
    pass


class ImageModelDescriptor(_Unavailable):
    pass


MAIN_REGISTRY = None
