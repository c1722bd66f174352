"""pytest only: collect the repository root as a plain directory, not as a Python package.

The root ``__init__.py`` is ComfyUI's entry point to the pack and uses relative imports.  As the
root holds an ``__init__.py``, pytest would make it a "package" and import it while setting up
(under a name taken from the checkout folder, which fails for names like ``comfyui-audiox`` and
otherwise imports the whole pack a second time).  The tests load the pack themselves
(tests/comfy_harness.py ``load_pack``).  pytest asks the *parent* folder's plugins how to
collect the root, so this conftest registers a small plugin instead of implementing the hook.
"""
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent


class _RootIsAPlainDirectory:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if Path(path).resolve() == _ROOT:
            return pytest.Dir.from_parent(parent, path=Path(path))
        return None


def pytest_configure(config):
    config.pluginmanager.register(_RootIsAPlainDirectory(), "audiox-root-is-a-plain-directory")
