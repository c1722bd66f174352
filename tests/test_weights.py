"""Low-level weight I/O: streaming safetensors, weights_only pickles, readable failures."""
from __future__ import annotations

import io
import os
import struct

import pytest
import torch

from audiox_core.errors import CheckpointError
from audiox_core.weights import (SafetensorsFile, WeightSource, compare_keys, load_into, load_pickle,
                                 save_safetensors, shape_str, unwrap_state_dict)


def _net():
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3, bias=False))


def test_safetensors_roundtrip_bit_exact_and_readable_by_reference_lib(tmp_path):
    from safetensors.torch import load_file
    sd = {"a": torch.randn(3, 4), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(2).bfloat16(),
          "s": torch.tensor(1.5), "e": torch.zeros(0, 3)}
    p = tmp_path / "x.safetensors"
    save_safetensors(sd, p, {"k": "v"})
    ref = load_file(str(p))
    for k, v in sd.items():
        assert ref[k].dtype == v.dtype and torch.equal(ref[k], v)
    f = SafetensorsFile(p)
    assert f.metadata == {"k": "v"}
    assert f.keys() == list(sd)
    for k, v in sd.items():
        assert torch.equal(f.read(k), v)
    assert f.read("a", dtype=torch.bfloat16).dtype == torch.bfloat16
    assert shape_str(f.tensors["s"].shape) == "scalar"


def test_load_into_meta_model_converts_dtype_without_fp32_copy(tmp_path):
    net = _net()
    p = tmp_path / "m.safetensors"
    save_safetensors(net.state_dict(), p)
    with torch.device("meta"):
        m = _net()
    m.to(torch.bfloat16)
    load_into(m, WeightSource(p))
    for (k, a), b in zip(m.state_dict().items(), net.state_dict().values()):
        assert a.device.type == "cpu" and a.dtype == torch.bfloat16
        assert torch.equal(a, b.to(torch.bfloat16)), k


def test_load_into_reports_missing_unexpected_and_shape(tmp_path):
    sd = _net().state_dict()
    sd.pop("2.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["0.bias"] = torch.zeros(9)
    p = tmp_path / "bad.safetensors"
    save_safetensors(sd, p)
    with torch.device("meta"):
        m = _net()
    with pytest.raises(CheckpointError) as e:
        load_into(m, WeightSource(p), what="toy")
    msg = str(e.value)
    assert "bad.safetensors" in msg and "toy" in msg
    assert "1 missing key(s): 2.weight" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "0.bias (model 4, file 9)" in msg


def test_compare_keys_groups_many_keys():
    exp = {f"model.layers.{i}.w": (2,) for i in range(30)}
    r = compare_keys(exp, {})
    assert len(r.missing) == 30
    assert "model.layers.N.w (30)" in r.summary()


def test_pickle_weights_only_and_unwrap(tmp_path):
    net = _net()
    p = tmp_path / "m.ckpt"
    torch.save({"state_dict": net.state_dict(), "global_step": 10, "epoch": 1}, p)
    src = WeightSource(p)
    assert src.container == {"global_step": 10, "epoch": 1}
    assert src.keys() == list(net.state_dict())
    flat, rest = unwrap_state_dict({"student": net.state_dict()}, "x")
    assert all(k.startswith("student.") for k in flat)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / "pwned"
    p = tmp_path / "evil.ckpt"
    torch.save({"w": torch.zeros(2), "payload": _Evil(str(target))}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_pickle(p)
    assert not target.exists()


def test_empty_truncated_and_garbage_files(tmp_path):
    e = tmp_path / "empty.safetensors"
    e.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        WeightSource(e)
    ok = tmp_path / "ok.safetensors"
    save_safetensors({"a": torch.randn(1000)}, ok)
    t = tmp_path / "trunc.safetensors"
    t.write_bytes(ok.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated"):
        WeightSource(t)
    ck = tmp_path / "ok.ckpt"
    torch.save({"a": torch.randn(1000)}, ck)
    tc = tmp_path / "trunc.ckpt"
    tc.write_bytes(ck.read_bytes()[: len(ck.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        WeightSource(tc)
    g = tmp_path / "garbage.safetensors"
    g.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        WeightSource(g)
    with pytest.raises(CheckpointError, match="not found"):
        WeightSource(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="unknown weights format"):
        (tmp_path / "x.onnx").write_bytes(b"1")
        WeightSource(tmp_path / "x.onnx")


def test_single_tensor_file_is_named(tmp_path):
    p = tmp_path / "sync.pth"
    torch.save(torch.zeros(1, 240, 768), p)
    with pytest.raises(CheckpointError, match="single tensor"):
        WeightSource(p)
