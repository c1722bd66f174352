"""Install what a command of this repository needs into the running Python, and only that.

Standard library only (it runs before anything is installed)::

    python scripts/ensure_deps.py demo     # torch (CPU build, only where no torch is present) + requirements.txt
    python scripts/ensure_deps.py test     # the same + requirements-test.txt

Rules:

* An installed torch is never touched (ComfyUI users have their own CUDA build). Where no torch is
  importable, ``torch==2.13.0`` is installed first (``AUDIOX_TORCH`` overrides the requirement,
  ``AUDIOX_TORCH_PIP_ARGS`` adds pip arguments such as an index URL), so that the unpinned
  ``torch`` requirement of ``torchsde`` is already satisfied and never pulls another build.
* Every other requirement is checked against the installed distributions (name and version
  range); only the missing or unsatisfied ones are installed, and each is printed first.
* Nothing installed is printed as "nothing to install".
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TORCH = "torch==2.13.0"
FILES = {"demo": ["requirements.txt"], "test": ["requirements.txt", "requirements-test.txt"]}

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def read_requirements(paths: Iterable[Path]) -> List[str]:
    """Requirement lines of ``paths`` in order, without comments, blanks and duplicates."""
    out: List[str] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and line not in out:
                out.append(line)
    return out


def _satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies a specifier list such as ``>=4.40,<5`` (pip's own ``packaging``:
    this script installs with pip, so it is there whenever the script can do anything)."""
    from pip._vendor.packaging.specifiers import SpecifierSet
    return SpecifierSet(spec).contains(version, prereleases=True)


def unmet(requirements: Iterable[str], installed=md.version) -> List[Tuple[str, str]]:
    """The requirements not satisfied by the installed distributions, each with the reason
    ("missing" or "have X")."""
    out = []
    for req in requirements:
        m = _REQ.match(req)
        if not m:
            raise SystemExit(f"ensure_deps: cannot read the requirement {req!r}")
        name, spec = m.group(1), m.group(3)
        try:
            version = installed(name)
        except md.PackageNotFoundError:
            out.append((req, "missing"))
            continue
        if not _satisfies(version, spec):
            out.append((req, f"have {version}"))
    return out


def torch_present() -> bool:
    return importlib.util.find_spec("torch") is not None


def pip_install(reqs: List[str], extra: Optional[List[str]] = None) -> None:
    cmd = [sys.executable, "-m", "pip", "install", *(extra or []), *reqs]
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure(kind: str) -> int:
    if kind not in FILES:
        raise SystemExit(f"ensure_deps: unknown set {kind!r}; choose one of {sorted(FILES)}")
    env = dict(os.environ)
    print(f"[setup] Python {sys.version.split()[0]} at {sys.executable}", flush=True)
    if torch_present():
        print(f"[setup] torch {md.version('torch')} is installed: left as it is", flush=True)
    else:
        torch_req = env.get("AUDIOX_TORCH", DEFAULT_TORCH)
        print(f"[setup] no torch found: installing {torch_req} (CPU build where this index has one)",
              flush=True)
        pip_install([torch_req], shlex.split(env.get("AUDIOX_TORCH_PIP_ARGS", "")))
    reqs = read_requirements(ROOT / f for f in FILES[kind])
    todo = unmet(reqs)
    if not todo:
        print(f"[setup] {kind}: every requirement is installed, nothing to install", flush=True)
        return 0
    for req, why in todo:
        print(f"[setup] {kind}: installing {req} ({why})", flush=True)
    pip_install([req for req, _ in todo])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/ensure_deps.py demo|test")
    sys.exit(ensure(sys.argv[1]))
