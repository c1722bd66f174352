"""The shared ComfyUI server of the integration tests (tests/integration/comfy_server.py)."""
import os

import pytest


@pytest.fixture(scope="session")
def server():
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("COMFYUI_DIR is not set (see tests/integration/README.md)")
    from comfy_server import ServerFailed, running_server
    try:
        with running_server() as srv:
            yield srv
    except ServerFailed as e:
        pytest.fail(str(e))
