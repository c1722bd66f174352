"""Readers of the committed reference data (tests/data/reference): the official key/shape manifests."""
from __future__ import annotations

from pathlib import Path


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
