"""Rules every node class of the pack follows (checked for each entry of NODE_CLASS_MAPPINGS)."""
from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import pytest

import comfy_fakes
import comfy_harness as H


def _mappings():
    with tempfile.TemporaryDirectory() as tmp, comfy_fakes.FakeComfy(Path(tmp)):
        pack = H.load_pack()
        return pack, dict(pack.NODE_CLASS_MAPPINGS)


PACK, MAPPINGS = _mappings()
PARAMS = [pytest.param(k, id=k) for k in sorted(MAPPINGS)] or [
    pytest.param(None, id="no-nodes", marks=pytest.mark.skip(reason="the pack has no node modules yet"))]


@pytest.mark.parametrize("node_id", PARAMS)
def test_node_contract(node_id, tmp_path):
    cls = MAPPINGS[node_id]
    assert node_id.startswith("AudioX"), "node ids carry the AudioX prefix (core/other packs must not clash)"
    assert node_id not in comfy_fakes.CORE_NODES
    assert PACK.NODE_DISPLAY_NAME_MAPPINGS.get(node_id), "every node has a display name"
    assert "AudioX" in getattr(cls, "CATEGORY", ""), "CATEGORY places the node under AudioX"
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    names = getattr(cls, "RETURN_NAMES", None)
    assert names is None or len(names) == len(cls.RETURN_TYPES)
    assert cls.RETURN_TYPES or getattr(cls, "OUTPUT_NODE", False), "a node without outputs must be an OUTPUT_NODE"
    fn = getattr(cls, cls.FUNCTION)
    with comfy_fakes.FakeComfy(tmp_path):
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}
        d = H.NodeDef.from_class(node_id, cls)
    params = inspect.signature(fn).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for inp in d.inputs:
        assert takes_kwargs or inp.name in params, f"{cls.FUNCTION}() does not accept input '{inp.name}'"
        if inp.category == "optional" and inp.name in params:
            assert params[inp.name].default is not inspect.Parameter.empty, \
                f"optional input '{inp.name}' needs a default (unconnected optionals are not passed)"
        if inp.is_widget and inp.type_name != "COMBO":
            assert "default" in inp.options, f"widget '{inp.name}' has no default"
            problem = H._check_value(inp, inp.options["default"])
            assert problem is None, f"default of '{inp.name}': {problem}"
    for key in d.hidden:
        assert takes_kwargs or key in params, f"{cls.FUNCTION}() does not accept hidden input '{key}'"
