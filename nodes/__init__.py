"""ComfyUI node classes of the pack, collected from the modules listed in NODE_MODULES.

Each listed module (``nodes/<name>.py``, imported relatively: ComfyUI owns the top-level name
``nodes``) must define ``NODE_CLASS_MAPPINGS``; ``NODE_DISPLAY_NAME_MAPPINGS`` defaults to the DISPLAY_NAMEs.
A module that fails to import is NOT skipped: the exception propagates, ComfyUI logs the
traceback and reports the pack as "IMPORT FAILED" instead of silently offering half the nodes.
Duplicate node ids across modules are an error too.

How to write a node module: docs/ARCHITECTURE.md ("Writing a node module").
"""
from __future__ import annotations

import importlib

NODE_MODULES: list[str] = ["loaders", "encoders", "fusion", "masks", "samplers", "vae", "output", "datasets", "lora",
                           "distill"]

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}


def _collect(module_names: list[str]) -> None:
    for name in module_names:
        module = importlib.import_module(f".{name}", __name__)
        classes = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if not isinstance(classes, dict):
            raise ImportError(f"AudioX node module nodes/{name}.py defines no NODE_CLASS_MAPPINGS dict")
        for node_id, cls in classes.items():
            if node_id in NODE_CLASS_MAPPINGS and NODE_CLASS_MAPPINGS[node_id] is not cls:
                raise ImportError(f"AudioX node id '{node_id}' is defined twice (second time in nodes/{name}.py)")
            NODE_CLASS_MAPPINGS[node_id] = cls
        labels = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None)
        for node_id, label in (labels or {k: c.DISPLAY_NAME for k, c in classes.items()}).items():
            if node_id not in classes:
                raise ImportError(f"nodes/{name}.py names a display name for unknown node id '{node_id}'")
            NODE_DISPLAY_NAME_MAPPINGS[node_id] = label


_collect(NODE_MODULES)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "NODE_MODULES"]
