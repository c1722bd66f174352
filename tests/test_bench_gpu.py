"""bench/gpu.py in tiny mode on the CPU: one command prints the latency table (Turbo-4 and
Base-50 CFG, mean ± std, RTF, peak memory, encoder / backbone / VAE split) for the requested rows."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUM = r"([0-9.]+)"


@pytest.mark.usefixtures("one_thread")
def test_bench_gpu_tiny_table(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--device", "cpu", "--warmup", "1", "--runs", "2",
           "--threads", "1", "--rows", "bf16", "bf16+compile", "bf16+loop", "lowvram", "partial", "--compile-backend", "aot_eager",
           "--json", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout
    assert "mean ± std over 2 runs after 1 warm-ups — CPU" in text
    results = {r["row"]: r for r in json.loads(out.read_text())}
    rows = {}
    for line in text.splitlines():
        m = re.match(rf"\| (\S+) \| {NUM} ± {NUM} \| {NUM} \| {NUM} ± {NUM} \| {NUM} \| {NUM} \| {NUM} "
                     rf"\| {NUM} / {NUM} / {NUM} \| {NUM} / {NUM} / {NUM} \|$", line)
        if m:
            rows[m.group(1)] = [float(x) for x in m.groups()[1:]]
    assert list(rows) == ["bf16", "bf16+compile", "bf16+loop", "lowvram", "partial"]
    for name, v in rows.items():
        t_mean, t_std, t_rtf, b_mean, b_std, b_rtf, t_mem, b_mem = v[:8]
        t_split, b_split = v[8:11], v[11:14]
        r = results[name]
        assert t_mean > 0 and b_mean > 0 and t_std >= 0 and b_std >= 0
        for mode, mean, rtf in (("turbo", t_mean, t_rtf), ("base", b_mean, b_rtf)):
            assert mean == pytest.approx(r[mode]["mean"], abs=6e-5) and rtf == pytest.approx(r[mode]["rtf"], abs=6e-5)
            assert r[mode]["rtf"] == pytest.approx(r[mode]["mean"] / r["seconds"], rel=1e-9)  # RTF = latency / clip
        assert t_mean == pytest.approx(sum(t_split), rel=1e-2, abs=1e-3)  # the split adds up to the latency
        assert b_mean == pytest.approx(sum(b_split), rel=1e-2, abs=1e-3)
        assert b_split[1] > t_split[1]          # 50 CFG steps cost more backbone time than 4 steps
        assert 0.05 < t_mem <= b_mem < 64       # CPU: peak RSS of the row's own process, in GiB
    assert "bf16+compile (aot_eager): warm-up incl. compilation" in text
    assert "bf16+loop (aot_eager): warm-up incl. compilation" in text
    assert "its Base-50 columns are plain bf16 (eager)" in text
    p = results["partial"]["partial_load"]  # half of the backbone by default: some layers on, some copied
    assert p["layers_on_device"] > 0 and p["layers_cast"] > 0
    assert re.search(rf"partial: {NUM} GiB of the backbone on the device \({p['layers_on_device']} layers\), "
                     rf"{p['layers_cast']} layers copied per call", text)
