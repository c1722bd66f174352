"""The frontend's range parser (web/lib/audio_logic.js, tested by `node --test tests/web/`) and
audiox_core/task.py parse_ranges read the `ranges` text the same way: both are checked against the
shared cases in tests/web/ranges_cases.json (this file: the Python side)."""
import json
from pathlib import Path

import pytest

import comfy_harness as H

parse_ranges = H.load_pack(fresh=False).nodes.masks.parse_ranges
CASES = json.loads((Path(__file__).parent / "web" / "ranges_cases.json").read_text())


@pytest.mark.parametrize("text,expected", CASES["valid"])
def test_valid_ranges_parse_as_the_frontend_does(text, expected):
    assert [list(r) for r in parse_ranges(text)] == expected


@pytest.mark.parametrize("text", CASES["invalid"])
def test_invalid_ranges_are_refused_as_the_frontend_does(text):
    with pytest.raises(ValueError):
        parse_ranges(text)
