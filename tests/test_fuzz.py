"""Property-based fuzzing (hypothesis) of the loaders and the node inputs, on a bounded budget.

Loaders get malformed files made from valid ones: truncation at a random offset, bit flips in the
header, another dtype written into the header, huge declared sizes (header length, shapes,
offsets), and ``.ckpt`` zips with missing, renamed, extra or hostile members.  Nodes get arbitrary
widget values, range strings and file names.  Every case must end in success or in an
``AudioXError`` subclass from our code (for ``VALIDATE_INPUTS``: ``True`` or a message string,
which is how ComfyUI's validation reports), and leave no stray file behind.

Budget: a fixed seed (``derandomize``), a few dozen examples per property, no deadline, no example
database (nothing is written into the repository); the whole file runs in well under a minute.
"""
from __future__ import annotations

import io
import json
import math
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps caches in ./.hypothesis by default: keep the repository clean
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "audiox_hypothesis"))

import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from audiox_core import tiny
from audiox_core.errors import AudioXError
from comfy_harness import comfy_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = dict(deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _files(folder: Path) -> set:
    return {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")}


# ------------------------------------------------------------------ valid seeds to break
def _st_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    buf = io.BytesIO()
    from audiox_core.weights import save_safetensors
    with tempfile.TemporaryDirectory() as d:
        save_safetensors(tensors, Path(d) / "x.safetensors", metadata)
        buf.write((Path(d) / "x.safetensors").read_bytes())
    return buf.getvalue()


def _lora_bytes() -> bytes:
    from audiox_core.training import create_lora
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    lora = create_lora(m, rank=2, targets="attention")
    with tempfile.TemporaryDirectory() as d:
        lora.save(Path(d) / "l.safetensors", steps=1)
        return (Path(d) / "l.safetensors").read_bytes()


def _model_bytes() -> bytes:
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    return _st_bytes(dict(m.state_dict()), {"audiox_config": json.dumps(m.config.to_dict())})


def _ckpt_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"a.weight": torch.randn(4, 4), "a.bias": torch.zeros(4)}, "epoch": 3}, buf)
    return buf.getvalue()


def _factory_bytes(factory: str, suffix: str):
    def make() -> bytes:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"f{suffix}"
            H.MODEL_FACTORIES[factory](p)
            return p.read_bytes()
    return make


SEEDS = {}
MAKERS = {"lora": _lora_bytes, "model": _model_bytes, "ckpt": _ckpt_bytes,
          "vae": _factory_bytes("tiny_vae", ".safetensors"), "synchformer": _factory_bytes("tiny_synchformer",
                                                                                          ".safetensors")}


def seed(name: str) -> bytes:
    if name not in SEEDS:
        SEEDS[name] = MAKERS[name]()
    return SEEDS[name]


# ------------------------------------------------------------------ mutations
def _header(data: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n])


def _with_header(data: bytes, header: dict) -> bytes:
    n, _ = _header(data)
    hb = json.dumps(header).encode()
    return struct.pack("<Q", len(hb)) + hb + data[8 + n:]


DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "Q4", 7, None]


@st.composite
def broken_safetensors(draw, base: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip_header", "dtype", "huge_header", "huge_shape",
                                 "huge_offsets", "bad_entry", "flip_anywhere"]))
    n, header = _header(base)
    keys = [k for k in header if k != "__metadata__"]
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flip_header":
        b = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, 8 + n - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "flip_anywhere":
        b = bytearray(base)
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "huge_header":
        return struct.pack("<Q", draw(st.sampled_from([2 ** 63, 2 ** 40, len(base) + 1, 0, 1]))) + base[8:]
    key = draw(st.sampled_from(keys))
    entry = dict(header[key])
    if kind == "dtype":
        entry["dtype"] = draw(st.sampled_from(DTYPES))
    elif kind == "huge_shape":
        entry["shape"] = draw(st.sampled_from([[2 ** 62], [2 ** 31, 2 ** 31], [-1, 4], [1.5], "x", [10 ** 30]]))
    elif kind == "huge_offsets":
        entry["data_offsets"] = draw(st.sampled_from([[0, 2 ** 62], [2 ** 62, 2 ** 62 + 8], [8, 0], [-8, 0], [0],
                                                      "a", [0.5, 4]]))
    else:
        entry = draw(st.sampled_from([None, [], "x", {"dtype": "F32"}, 3]))
    header = dict(header)
    header[key] = entry
    return _with_header(base, header)


@st.composite
def broken_ckpt(draw) -> bytes:
    base = seed("ckpt")
    kind = draw(st.sampled_from(["truncate", "drop_member", "rename_member", "extra_member", "evil_pickle",
                                 "junk_pickle", "flip"]))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flip":
        b = bytearray(base)
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    zin = zipfile.ZipFile(io.BytesIO(base))
    names = zin.namelist()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        victim = draw(st.sampled_from(names))
        for name in names:
            data = zin.read(name)
            if kind == "drop_member" and name == victim:
                continue
            if kind == "rename_member" and name == victim:
                name = name + ".renamed"
            if name.endswith("data.pkl") and kind == "evil_pickle":
                data = b"cos\nsystem\n(S'echo fuzz'\ntR."
            if name.endswith("data.pkl") and kind == "junk_pickle":
                data = pickle.dumps(draw(st.sampled_from([None, 3, "x", [1, 2], {"a": 1}])), protocol=2)
            zout.writestr(name, data)
        if kind == "extra_member":
            zout.writestr(names[0].split("/")[0] + "/data/999", b"\x00" * draw(st.integers(0, 64)))
    return out.getvalue()


def _expect_clean(fn, folder: Path, before: set) -> None:
    """``fn()`` either works or raises an AudioXError; no other exception, no new file."""
    try:
        fn()
    except AudioXError:
        pass
    assert _files(folder) == before


# ------------------------------------------------------------------ loaders
@settings(max_examples=60, **BUDGET)
@given(data=st.data())
def test_weight_source_survives_malformed_safetensors(data):
    from audiox_core.weights import WeightSource
    blob = data.draw(broken_safetensors(seed("lora")))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.safetensors"
        p.write_bytes(blob)
        before = _files(Path(d))

        def run():
            src = WeightSource(p)
            for k in src.keys():
                src.read(k)
        _expect_clean(run, Path(d), before)


@settings(max_examples=40, **BUDGET)
@given(data=st.data())
def test_lora_loader_survives_malformed_files(data):
    from audiox_core.training import load_lora
    blob = data.draw(broken_safetensors(seed("lora")))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "l.safetensors"
        p.write_bytes(blob)
        before = _files(Path(d))
        _expect_clean(lambda: load_lora(p, None, attach=False), Path(d), before)


@settings(max_examples=25, **BUDGET)
@given(data=st.data())
def test_model_loader_survives_malformed_checkpoints(data):
    from audiox_core.checkpoint import load_model
    blob = data.draw(broken_safetensors(seed("model")))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.safetensors"
        p.write_bytes(blob)
        before = _files(Path(d))
        _expect_clean(lambda: load_model(p), Path(d), before)


@settings(max_examples=20, **BUDGET)
@given(data=st.data(), which=st.sampled_from(["vae", "synchformer"]))
def test_vae_and_synchformer_loaders_survive_malformed_files(data, which):
    from audiox_core.checkpoint import load_vae
    from audiox_core.conditioning.synchformer import Synchformer
    blob = data.draw(broken_safetensors(seed(which)))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.safetensors"
        p.write_bytes(blob)
        before = _files(Path(d))
        _expect_clean((lambda: load_vae(p)) if which == "vae" else (lambda: Synchformer.from_file(p)), Path(d),
                      before)


@settings(max_examples=40, **BUDGET)
@given(blob=broken_ckpt())
def test_ckpt_loader_survives_wrong_zip_members(blob):
    from audiox_core.weights import WeightSource
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.ckpt"
        p.write_bytes(blob)
        before = _files(Path(d))

        def run():
            src = WeightSource(p)
            for k in src.keys():
                src.read(k)
        _expect_clean(run, Path(d), before)


# ------------------------------------------------------------------ node inputs
names = st.one_of(st.text(max_size=40), st.sampled_from(["../../../../etc/passwd", "/etc/passwd", "..", ".", "",
                                                         "a/../../b", "~/x", "turbo.safetensors/..", "\x00",
                                                         "sub//x", "C:\\Windows\\win.ini"]))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 20, 10 ** 20))


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, {"audiox/turbo.safetensors": "tiny_turbo"})
    return comfy_env


def _env_files(env) -> set:
    return set().union(*({f"{d.name}/{f}" for f in _files(d)} for d in (env.models_dir, env.input_dir,
                                                                          env.output_dir)))


@settings(max_examples=60, **BUDGET)
@given(ranges=st.one_of(st.text(max_size=30), st.from_regex(r"\s*-?[0-9.e+inf]{0,8}\s*[-:]\s*[0-9.e+inf]{0,8}"
                                                            r"(,\s*[0-9.]{0,5}-[0-9.]{0,5})?", fullmatch=True)),
       ramp=numbers)
def test_inpaint_mask_ranges_and_numbers(env, ranges, ramp):
    cls = env.classes["AudioXInpaintMask"]
    ok = cls.VALIDATE_INPUTS(ranges=ranges)
    assert ok is True or isinstance(ok, str)
    try:
        (mask,) = cls().make(ranges=ranges, ramp_seconds=ramp)
    except AudioXError:
        return
    assert ok is True and math.isfinite(float(ramp))
    assert all(0 <= a < b and math.isfinite(b) for a, b in mask.ranges)


@settings(max_examples=40, **BUDGET)
@given(name=names, node=st.sampled_from([("AudioXModelLoader", "ckpt_name", dict(dtype="fp32", keep_on_gpu=True)),
                                         ("AudioXVAELoader", "vae_name", dict(sample_rate=44100, keep_on_gpu=True)),
                                         ("AudioXT5Loader", "t5_name", dict(dtype="fp32", keep_on_gpu=True)),
                                         ("AudioXCLIPVisionLoader", "clip_name", {}),
                                         ("AudioXSynchformerLoader", "synchformer_name",
                                          dict(dtype="fp32", keep_on_gpu=True))]))
def test_loader_file_names(env, name, node):
    node_id, inp, kw = node
    before = _env_files(env)
    cls = env.classes[node_id]
    try:
        with torch.inference_mode():
            getattr(cls(), cls.FUNCTION)(**{inp: name}, **kw)
    except AudioXError as e:
        assert str(e).startswith(cls.DISPLAY_NAME)
    assert _env_files(env) == before


@settings(max_examples=60, **BUDGET)
@given(output_name=st.one_of(names, st.none()), lr=st.one_of(numbers, st.none()), guidance=st.one_of(numbers,
                                                                                                    st.none()))
def test_training_validation(env, output_name, lr, guidance):
    for node_id in ("AudioXTrainLoRA", "AudioXDistill"):
        cls = env.classes[node_id]
        ok = cls.VALIDATE_INPUTS(output_name=output_name, learning_rate=lr)
        assert ok is True or isinstance(ok, str)
        if ok is True and lr is not None:
            assert math.isfinite(float(lr)) and float(lr) > 0
        if ok is True and output_name is not None:
            assert ".." not in Path(output_name).parts and not Path(str(output_name).strip()).is_absolute()


@settings(max_examples=50, **BUDGET)
@given(folder=names, manifest=st.one_of(names, st.just("")))
def test_dataset_validation(env, folder, manifest):
    before = _env_files(env)
    cls = env.classes["AudioXDataset"]
    ok = cls.VALIDATE_INPUTS(folder=folder, manifest=manifest)
    assert ok is True or isinstance(ok, str)
    cls.IS_CHANGED(folder=folder, manifest=manifest)
    assert _env_files(env) == before


@settings(max_examples=30, **BUDGET)
@given(name=names, strength=numbers)
def test_lora_loader_names_and_strength(env, name, strength):
    cls = env.classes["AudioXLoRALoader"]
    before = _env_files(env)
    try:
        cls().apply(model=None, lora_name=name, strength=strength, merge=False, allow_other_weights=False)
    except AudioXError as e:
        assert str(e).startswith(cls.DISPLAY_NAME)
    assert _env_files(env) == before
