"""The node package stays a thin declaration layer: small files, short functions, a bounded total.

Nodes map their inputs to the core (audiox_core) and call it; when a file or a method here grows,
logic is leaking out of the core.  Measured with ``ast`` (a function's lines: ``def`` to its last
line, docstring included).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

NODES = Path(__file__).resolve().parents[1] / "nodes"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 40
MAX_TOTAL_LINES = 2500


def _line_count(text: str) -> int:
    return len(text.splitlines())


def _node_files() -> list:
    return [pytest.param(path, id=path.name) for path in sorted(NODES.glob("*.py"))]


@pytest.mark.parametrize("path", _node_files())
def test_no_node_file_is_over_400_lines(path):
    lines = _line_count(path.read_text(encoding="utf-8"))
    assert lines <= MAX_FILE_LINES, f"{path.name} has {lines} lines (at most {MAX_FILE_LINES})"


@pytest.mark.parametrize("path", _node_files())
def test_no_function_in_nodes_is_over_40_lines(path):
    too_long = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                too_long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_nodes_total_is_at_most_2500_lines():
    total = sum(_line_count(p.read_text(encoding="utf-8")) for p in NODES.glob("*.py"))
    assert total <= MAX_TOTAL_LINES, f"nodes/ has {total} lines"
