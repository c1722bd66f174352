"""The README as a newcomer reads it: its first code block is exactly two commands that exist and
set themselves up, the main job's prompt is the graph's, and the node table names what the UI shows."""
import importlib.metadata as md
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))
import ensure_deps  # noqa: E402


def _commands(block: str):
    """Shell commands of a code block: non-empty lines without comments, continuations joined."""
    cmds, cur = [], ""
    for line in block.splitlines():
        line = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        line = line.strip()
        if not line:
            continue
        cur += line
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        cmds.append(cur)
        cur = ""
    return cmds


def first_code_block() -> str:
    m = re.search(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M)
    assert m, "README has no code block"
    return m.group(1)


def test_first_code_block_is_exactly_two_commands_that_exist():
    cmds = _commands(first_code_block())
    assert len(cmds) == 2, cmds
    for cmd in cmds:
        prog = shlex.split(cmd)[0]
        assert prog.startswith("./"), f"{cmd!r}: a script at the root, runnable as it is"
        path = ROOT / prog
        assert path.is_file() and os.access(path, os.X_OK), f"{prog} is missing or not executable"


def test_the_scripts_set_up_before_they_run():
    demo = (ROOT / "demo").read_text()
    test = (ROOT / "test").read_text()
    assert demo.index("ensure_deps.py demo") < demo.rindex("-m runner")
    assert test.index("ensure_deps.py test") < test.rindex("-m pytest")
    assert "./test" in (ROOT / ".ci" / "run").read_text(), "CI runs the README's test command"


def test_readme_prompt_is_the_graphs_prompt():
    graph = json.loads((ROOT / "workflows" / "text_to_audio.json").read_text())
    prompts = [n["widgets_values"][0] for n in graph["nodes"] if n["type"] == "AudioXTextEncoder"]
    assert len(prompts) == 1
    section = README[README.index("## The two commands"):README.index("## Install into ComfyUI")]
    quoted = re.findall(r'the prompt \*"([^"]+)"\*', section)
    assert quoted == prompts


def test_node_table_names_what_the_ui_shows():
    from comfy_harness import load_pack
    pack = load_pack()
    rows = dict(re.findall(r"^\| `(AudioX\w+)` \| ([^|]+?) \|", README, re.M))
    assert set(rows) == set(pack.NODE_CLASS_MAPPINGS)
    for node_id, label in rows.items():
        assert label == pack.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id), node_id


# ---------------------------------------------------------------- scripts/ensure_deps.py


def test_ensure_deps_finds_missing_and_unsatisfied():
    have = {"numpy": "2.4.6", "av": "11.0", "safetensors": "0.4.5"}

    def installed(name):
        try:
            return have[name]
        except KeyError:
            raise md.PackageNotFoundError(name)

    reqs = ["numpy", "av>=12", "safetensors>=0.4", "transformers>=4.40", "torch==2.13.0"]
    got = ensure_deps.unmet(reqs, installed=installed)
    assert got == [("av>=12", "have 11.0"), ("transformers>=4.40", "missing"),
                   ("torch==2.13.0", "missing")]


@pytest.mark.parametrize("version,spec,ok", [
    ("2.13.0+cpu", "==2.13.0", True), ("2.13.1", "==2.13.0", False), ("4.40.0", ">=4.40", True),
    ("4.39.9", ">=4.40", False), ("1.2", ">=1,<2", True), ("2.0", ">=1,<2", False),
])
def test_ensure_deps_version_ranges(version, spec, ok):
    assert ensure_deps._satisfies(version, spec) is ok


def test_ensure_deps_reads_the_repositorys_files():
    reqs = ensure_deps.read_requirements([ROOT / "requirements.txt", ROOT / "requirements-test.txt"])
    assert "pytest>=8" in reqs and "av>=12" in reqs
    assert not any(r.split("=")[0].split(">")[0].strip() == "torch" for r in reqs), \
        "torch is installed separately, only where none is present"


def test_ensure_deps_installs_nothing_when_all_present():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_deps.py"), "test"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "left as it is" in out.stdout and "nothing to install" in out.stdout
    assert "+ " not in out.stdout
