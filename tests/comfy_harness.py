"""Run ComfyUI workflows without ComfyUI (helper module for the tests, not a test file).

Pieces, usable on their own:

* :class:`NodeDef`, :func:`ui_to_api`, :func:`validate_ui` / :func:`validate_api` and
  :func:`execute` live in ``runner/graph.py`` (shared with the graph runner; its module
  docstring describes them) and are re-exported here.
* :func:`load_pack` — ``runner/pack.py``: imports the repository as a custom-node package (like
  ComfyUI does, so the pack's relative imports work) while keeping ``<pack>.audiox_core``
  identical to the top-level ``audiox_core`` the unit tests import.
* :func:`run_workflow` — all of it on a workflow file, with :class:`comfy_fakes.FakeComfy` stubs,
  fake core nodes and synthesised input media.
* ``comfy_env`` — a pytest fixture for node unit tests: stubs installed, pack loaded.

Node code runs under ``torch.inference_mode()`` here as in ComfyUI: a training node must open
``torch.inference_mode(False)`` and ``torch.enable_grad()`` itself.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import comfy_fakes  # noqa: E402  (tests/ is on sys.path under pytest)


# The converter, validator and executor live in runner/graph.py (the graph runner uses them too);
# every name, private helpers included, is re-exported here for the tests.
from runner import graph  # noqa: E402
from runner.pack import PACK_NAME, load_pack  # noqa: E402,F401  (loading the pack like ComfyUI does)

globals().update({k: v for k, v in vars(graph).items() if not k.startswith("__")})
from runner.graph import (BYPASSED, MUTED, ExecutionResult, WorkflowError, defs_from_classes,  # noqa: E402
                          execute, ui_to_api, validate_api, validate_ui)

# =============================================================================================
# whole workflows
# =============================================================================================
MODEL_FACTORIES: dict[str, Callable[[Path], None]] = {}


def model_factory(name: str):
    """Register ``fn(path)`` that writes a (tiny) weights file, for ``extra.audiox_test.models``."""
    def deco(fn):
        MODEL_FACTORIES[name] = fn
        return fn
    return deco


INPUT_FACTORIES: dict[str, Callable[[Path], None]] = {}


def input_factory(name: str):
    """Register ``fn(path)`` that writes an input file or folder, for ``extra.audiox_test.inputs``."""
    def deco(fn):
        INPUT_FACTORIES[name] = fn
        return fn
    return deco


def load_workflow(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def workflow_test_settings(workflow: Mapping) -> dict:
    """``workflow["extra"]["audiox_test"]``: optional test-only settings of an example graph.

    ``models``: ``{"<folder>/<file>": "<factory name>"}`` weights files to create;
    ``inputs``: ``{"<name in the input directory>": "<input factory name>"}`` files or folders to
    create (e.g. a training folder for AudioX Dataset);
    ``overrides``: ``{"<node id>": {"<input>": value}}`` applied to the API graph (e.g. fewer steps);
    ``expect``: ``{"sample_rate": int, "channels": int, "min_seconds": float, "max_seconds": float,
    "video_has_audio": bool}`` checked on every captured AUDIO / VIDEO.
    """
    return dict(((workflow.get("extra") or {}).get("audiox_test")) or {})


def media_references(workflow: Mapping) -> list[str]:
    """Input-file names that LoadAudio/LoadVideo/LoadImage nodes of ``workflow`` refer to."""
    names = []
    for n in workflow.get("nodes") or []:
        if n.get("type") in comfy_fakes.MEDIA_INPUTS and n.get("mode", 0) not in (MUTED, BYPASSED):
            wv = n.get("widgets_values")
            value = wv.get(comfy_fakes.MEDIA_INPUTS[n["type"]]) if isinstance(wv, dict) else (wv or [None])[0]
            if isinstance(value, str) and value:
                names.append(value.split(" [")[0])
    return names


@dataclass
class WorkflowRun:
    workflow: dict
    api: dict
    result: ExecutionResult
    env: "comfy_fakes.FakeComfy"
    pack: Any
    settings: dict = field(default_factory=dict)


def prepare_environment(env: "comfy_fakes.FakeComfy", workflow: Mapping) -> None:
    """Create the media files and model files ``workflow`` refers to inside ``env``."""
    for name in media_references(workflow):
        path = env.input_dir / name
        if not path.exists():
            comfy_fakes.write_test_media(path)
    for rel, factory in (workflow_test_settings(workflow).get("inputs") or {}).items():
        if factory not in INPUT_FACTORIES:
            raise WorkflowError(f"extra.audiox_test.inputs names unknown factory '{factory}' for {rel} "
                                f"(known: {sorted(INPUT_FACTORIES)})")
        path = env.input_dir / rel
        if not path.exists():
            INPUT_FACTORIES[factory](path)
    for rel, factory in (workflow_test_settings(workflow).get("models") or {}).items():
        if factory not in MODEL_FACTORIES:
            raise WorkflowError(f"extra.audiox_test.models names unknown factory '{factory}' for {rel} "
                                f"(known: {sorted(MODEL_FACTORIES)})")
        path = env.models_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        MODEL_FACTORIES[factory](path)


def all_classes(pack) -> dict[str, type]:
    """Our nodes plus the fake core nodes (ours win on a name clash, which a test forbids)."""
    return {**comfy_fakes.CORE_NODES, **pack.NODE_CLASS_MAPPINGS}


def run_workflow(workflow: Mapping | Path, tmp_path: Path, *, strict: bool = True,
                 classes_extra: Optional[Mapping[str, type]] = None) -> WorkflowRun:
    """Validate, convert and execute a UI-format workflow with fakes; returns the run.

    Must be entered with no FakeComfy active; creates one under ``tmp_path`` and leaves it
    installed only for the duration of the call (captures stay readable on ``run.env``).
    """
    if not isinstance(workflow, Mapping):
        workflow = load_workflow(Path(workflow))
    settings = workflow_test_settings(workflow)
    with comfy_fakes.FakeComfy(tmp_path) as env:
        prepare_environment(env, workflow)
        pack = load_pack()
        classes = {**all_classes(pack), **(classes_extra or {})}
        defs = defs_from_classes(classes)
        problems = validate_ui(workflow, defs, strict=strict)
        if problems:
            raise WorkflowError("workflow is invalid:\n  " + "\n  ".join(problems))
        api = ui_to_api(workflow, defs)
        for nid, values in (settings.get("overrides") or {}).items():
            if str(nid) not in api:
                raise WorkflowError(f"extra.audiox_test.overrides names node {nid}, which is not in the graph")
            api[str(nid)]["inputs"].update(values)
        problems = validate_api(api, defs)
        if problems:
            raise WorkflowError("API graph is invalid:\n  " + "\n  ".join(problems))
        result = execute(api, classes, extra_pnginfo={"workflow": dict(workflow)})
    return WorkflowRun(dict(workflow), api, result, env, pack, settings)


def check_expectations(run: WorkflowRun) -> None:
    """Assert ``extra.audiox_test.expect`` on every captured AUDIO and VIDEO of ``run``."""
    expect = run.settings.get("expect") or {}
    audios = [c.value for c in run.env.captured("audio")]
    videos = [c.value for c in run.env.captured("video")]
    for v in videos:
        if expect.get("video_has_audio", True):
            assert v.audio is not None, "a saved VIDEO carries no audio track"
        if v.audio is not None:
            audios.append(v.audio)
    for a in audios:
        w, sr = a["waveform"], a["sample_rate"]
        if "sample_rate" in expect:
            assert sr == expect["sample_rate"], f"sample_rate {sr} != expected {expect['sample_rate']}"
        if "channels" in expect:
            assert w.shape[1] == expect["channels"], f"{w.shape[1]} channels != expected {expect['channels']}"
        seconds = w.shape[-1] / sr
        if "min_seconds" in expect:
            assert seconds >= expect["min_seconds"], f"{seconds:.3f} s < {expect['min_seconds']} s"
        if "max_seconds" in expect:
            assert seconds <= expect["max_seconds"], f"{seconds:.3f} s > {expect['max_seconds']} s"


@pytest.fixture
def comfy_env(tmp_path):
    """Fixture for node tests (``from comfy_harness import comfy_env``): stubbed ComfyUI with the
    pack freshly loaded as ``env.pack`` and ``env.classes`` (ours + fake core nodes)."""
    with comfy_fakes.FakeComfy(tmp_path) as env:
        env.pack = load_pack()
        env.classes = all_classes(env.pack)
        yield env


def install_models(models_dir: Path, files: Mapping[str, str]) -> None:
    """Write tiny model files: ``files`` maps a path below ``models_dir`` to a MODEL_FACTORIES name."""
    for rel, factory in files.items():
        p = Path(models_dir) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        MODEL_FACTORIES[factory](p)


def call_node(env, node_id: str, unique_id: str = "7", **kwargs):
    """Run one node of ``env.classes`` like ComfyUI does (inference mode, hidden unique_id);
    returns the result tuple."""
    cls = env.classes[node_id]
    if "unique_id" in (cls.INPUT_TYPES().get("hidden") or {}):
        kwargs["unique_id"] = unique_id
    with torch.inference_mode():
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out["result"] if isinstance(out, dict) else out


def iter_workflow_files(root: Path = ROOT) -> list[Path]:
    return sorted((Path(root) / "workflows").glob("*.json"))

