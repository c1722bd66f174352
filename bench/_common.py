"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py`` from the repo root:
the script's folder is then on ``sys.path``, so they ``from _common import ...``).

Importing this module also puts the repository root on ``sys.path`` (for ``audiox_core``)."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_average() -> str:
    """The 1/5/15-minute load averages from /proc/loadavg (Linux); "n/a" where unavailable."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_idle_fraction(window_s: float = 2.0) -> float:
    """Machine-wide idle share over ``window_s`` from /proc/stat (Linux); 1.0 where unavailable."""
    def read():
        with open("/proc/stat") as f:
            v = [int(u) for u in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    try:
        i0, t0 = read()
        time.sleep(window_s)
        i1, t1 = read()
    except OSError:
        return 1.0
    return (i1 - i0) / max(1, t1 - t0)


def wait_idle(max_wait_s: float, threshold: float = 0.9, poll_s: float = 3.0) -> bool:
    """Block until the CPU is ≥ ``threshold`` idle (shared machines), at most ``max_wait_s``,
    checking every ``poll_s`` seconds (plus the 2 s measuring window); False on time-out."""
    deadline = time.time() + max_wait_s
    while time.time() < deadline:
        if cpu_idle_fraction() >= threshold:
            return True
        time.sleep(poll_s)
    return False


def peak_rss_gib() -> float:
    """This process's peak resident set size in GiB (two decimals; Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
