"""Every example graph in workflows/*.json: static validation, then a headless run.

Each graph is converted from the UI format with the INPUT_TYPES of our node classes plus fakes
of the core nodes it uses (tests/comfy_fakes.py), checked like ComfyUI's /prompt validation
(strict widget counts, link types, ranges, combos), and executed in-process against stubbed
ComfyUI modules.  Input media named by LoadAudio/LoadVideo/LoadImage are synthesised; tiny
weights and cheaper settings come from the graph's optional ``extra.audiox_test`` block (see
``comfy_harness.workflow_test_settings``).  Every captured AUDIO must satisfy the AUDIO contract
and every saved VIDEO must carry audio (unless the block says otherwise).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import comfy_harness as H

WORKFLOWS = H.iter_workflow_files()

# tests/workflow_models.py (optional) registers tiny-weight factories with @comfy_harness.model_factory
if importlib.util.find_spec("workflow_models") is not None:
    importlib.import_module("workflow_models")

PARAMS = [pytest.param(p, id=p.stem) for p in WORKFLOWS] or [
    pytest.param(None, id="no-workflows", marks=pytest.mark.skip(reason="workflows/ has no example graphs yet"))]


@pytest.mark.parametrize("path", PARAMS)
def test_workflow(path, tmp_path):
    wf = H.load_workflow(path)
    run = H.run_workflow(wf, tmp_path)
    sinks = [nid for nid, e in run.api.items() if H.comfy_fakes.CORE_NODES.get(e["class_type"]) is not None
             and getattr(H.comfy_fakes.CORE_NODES[e["class_type"]], "OUTPUT_NODE", False)]
    assert sinks, f"{path.name}: no core output node (SaveAudio/PreviewAudio/SaveVideo/...) to check"
    captured = {c.node_id for c in run.env.captures}
    assert set(sinks) <= captured, f"{path.name}: output nodes {sorted(set(sinks) - captured)} received nothing"
    H.check_expectations(run)


TITLE_HEIGHT = 30  # LiteGraph draws a node's title bar above its pos


def _boxes(wf: dict) -> list[tuple[str, float, float, float, float]]:
    out = []
    for n in wf["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        out.append((f"{n.get('title') or n['type']} #{n['id']}", x, y - TITLE_HEIGHT, x + w, y + h))
    return out


def overlaps(wf: dict) -> list[str]:
    boxes = _boxes(wf)
    return [f"{a[0]} and {b[0]}" for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


@pytest.mark.parametrize("path", PARAMS)
def test_no_two_nodes_overlap(path):
    """Nodes (with their title bars) keep apart in the example graphs, so nothing hides a widget."""
    wf = H.load_workflow(path)
    hits = overlaps(wf)
    assert not hits, f"{path.name}: overlapping nodes: {'; '.join(hits)}"
    assert all(x0 >= 0 and y0 >= 0 for _, x0, y0, _, _ in _boxes(wf)), f"{path.name}: a node is off the canvas"


def test_overlap_check_sees_title_bars_and_accepts_neighbours():
    def wf(y2):
        return {"nodes": [{"id": 1, "type": "A", "pos": [0, 30], "size": [100, 100]},
                          {"id": 2, "type": "B", "pos": [50, y2], "size": [100, 100]}]}
    assert overlaps(wf(150)) == ["A #1 and B #2"]  # B's title bar (120..150) enters A (0..130)
    assert overlaps(wf(160)) == []


def test_every_graph_has_a_template_thumbnail_title_and_description():
    """The Templates browser asks for workflows/<name>.jpg; web/lib/templates.js gives each card a
    readable title and one line (both written by tests/build_workflows.py)."""
    import json
    import re

    from PIL import Image
    assert WORKFLOWS
    for p in WORKFLOWS:
        thumb = p.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.name} is missing: run python tests/build_workflows.py"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.size == (320, 320)
            assert len(set(im.convert("L").resize((32, 32)).tobytes())) > 8, f"{thumb.name} is blank"
    js = (H.ROOT / "web" / "lib" / "templates.js").read_text(encoding="utf-8")
    info = json.loads(re.search(r"TEMPLATE_INFO = (\{.*\});", js, re.S).group(1))
    assert sorted(info) == sorted(p.stem for p in WORKFLOWS)
    for name, entry in info.items():
        assert entry["title"] and entry["title"] != name and "\n" not in entry["description"]
        assert 10 < len(entry["description"]) <= 90, name


def test_build_workflows_script_runs_from_a_shell_and_matches_the_files():
    """``python tests/build_workflows.py --check`` (as the README and contributors run it, not
    imported): every graph, thumbnail and the web template list are what the builder writes."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "tests" / "build_workflows.py"), "--check"],
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
