"""Shared pytest fixtures.

``reference_dir`` is ``tests/data/reference``: the official models' key/shape manifests and
configs (facts about the released checkpoints, committed so that the tests stand alone in a plain
clone).  ``$AUDIOX_REFERENCE`` points the tests at another copy of the same layout.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REFERENCE = Path(os.environ.get("AUDIOX_REFERENCE", ROOT / "tests" / "data" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    assert (REFERENCE / "configs").is_dir() and (REFERENCE / "manifests").is_dir(), REFERENCE
    return REFERENCE


def read_manifest(path: Path) -> list[tuple[str, str]]:
    """Rows of a manifest TSV as (key, shape) pairs, header skipped."""
    rows = []
    for line in path.read_text().splitlines()[1:]:
        if line.strip():
            k, s = line.split("\t")
            rows.append((k, s))
    return rows


def shape_str(shape) -> str:
    """The manifest spelling of a shape: ``1536x256``, ``scalar`` for 0-d."""
    return "x".join(str(int(s)) for s in shape) if len(shape) else "scalar"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip on machines without a CUDA GPU."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    import torch
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a whole test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny tensors, and one thread avoids OpenMP wake-up stalls on a shared 2-core machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def param_grads(m, x, t, ctx) -> dict:
    """Gradients of ``mean(m(x, t, ctx)²)`` by parameter name (parameters that get one)."""
    m.zero_grad(set_to_none=True)
    m(x, t, ctx).square().mean().backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def checkpointing_grads(fresh, trained, x, t, ctx) -> tuple[dict, dict]:
    """:func:`param_grads` of ``fresh`` (a new model of ``trained``'s config) holding ``trained``'s
    weights in train mode, without and with gradient checkpointing."""
    fresh.load_state_dict(trained.state_dict())
    fresh.train()
    plain = param_grads(fresh, x, t, ctx)
    fresh.gradient_checkpointing = True
    return plain, param_grads(fresh, x, t, ctx)


def half_precision_outputs(trained, make_fresh, dtype, x, t, ctx):
    """``trained``'s fp32 output, the output of a new model (``make_fresh()``) holding its weights
    in ``dtype``, and ``trained``'s output under bf16 autocast."""
    import torch
    with torch.no_grad():
        ref = trained(x, t, ctx)
        m16 = make_fresh().to(dtype)
        m16.load_state_dict(trained.state_dict())
        out16 = m16.eval()(x, t, ctx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outac = trained(x, t, ctx)
    return ref, out16, outac


@pytest.fixture(scope="session")
def server():
    """The shared real ComfyUI server of the integration tests (tests/integration/comfy_server.py),
    one per session.  Defined here rather than in a tests/integration/conftest.py, whose module name
    would shadow this conftest for the tests that import helpers from it."""
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("COMFYUI_DIR is not set (see tests/integration/README.md)")
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from comfy_server import ServerFailed, running_server
    try:
        with running_server() as srv:
            yield srv
    except ServerFailed as e:
        pytest.fail(str(e))
