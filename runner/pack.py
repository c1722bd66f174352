"""Load the repository as a ComfyUI custom-node package, the way ComfyUI does.

ComfyUI imports a node pack from its folder's ``__init__.py`` under a package name, so the pack's
relative imports (``from ..audiox_core import ...``) resolve inside it.  :func:`load_pack` does the
same under ``name`` (default ``audiox_pack``), with one addition: ``<name>.audiox_core[.x]`` *is*
the top-level ``audiox_core[.x]`` the runner and the tests import, so the core (its error classes,
its VIDEO values) exists once in the process.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "audiox_pack"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: str):
        self.real = real
        self._spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.real)
        self._spec = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module):
        if self._spec is not None:
            module.__spec__ = self._spec  # importlib overwrote it with the alias spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """``<pack>.audiox_core[.x]`` resolves to the already importable ``audiox_core[.x]``."""

    def __init__(self, prefix: str, target: str):
        self.prefix, self.target = prefix, target

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.prefix or fullname.startswith(self.prefix + "."):
            real = self.target + fullname[len(self.prefix):]
            return importlib.util.spec_from_loader(fullname, _AliasLoader(real))
        return None


def load_pack(root: Path = ROOT, name: str = PACK_NAME, fresh: bool = True):
    """Import the repository at ``root`` as the custom-node package ``name`` and return it.

    ``fresh`` drops an earlier import first (so INPUT_TYPES and folder registrations see the
    current environment); ``audiox_core`` itself is kept.
    """
    if str(Path(root).resolve()) not in map(str, (Path(p).resolve() for p in sys.path if p)):
        sys.path.insert(0, str(Path(root).resolve()))
    if not any(isinstance(f, _AliasFinder) and f.prefix == f"{name}.audiox_core" for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder(f"{name}.audiox_core", "audiox_core"))
    if fresh:
        for key in [k for k in sys.modules if (k == name or k.startswith(name + "."))
                    and not k.startswith(f"{name}.audiox_core")]:
            del sys.modules[key]
    elif name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(root) / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
