"""The loader: manifests, variant detection, strict loading, readable failures, the CLI."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch

from audiox_core.checkpoint import (classify_keys, detect, expected_keys, infer_config, load_model, load_vae,
                                    main as ckpt_main, save_model)
from audiox_core.config import AudioXConfig
from audiox_core.errors import CheckpointError, ConfigError
from audiox_core.models.audiox import MODEL_CLASSES, AudioX, AudioXMAF, AudioXMAFMMDiT, AudioXTurbo
from audiox_core.tiny import make_tiny_model, tiny_config
from audiox_core.weights import save_safetensors, shape_str

from conftest import ROOT, read_manifest

CONFIGS = [("audiox_reconstructed", "audiox", AudioX), ("audiox_maf_reconstructed", "audiox_maf", AudioXMAF),
           ("audiox_maf_mmdit_reconstructed", "audiox_maf_mmdit", AudioXMAFMMDiT),
           ("audiox_turbo_infer_4step", "audiox_turbo", AudioXTurbo)]


def _shape(s: str) -> tuple:
    return () if s == "scalar" else tuple(int(x) for x in s.split("x"))


# ----------------------------------------------------------------------------------------------
# full-size manifests (tests/data/reference, copied from the official key lists)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name,manifest,cls", CONFIGS)
def test_meta_model_matches_manifest_exactly(reference_dir, cfg_name, manifest, cls):
    cfg = AudioXConfig.from_json(reference_dir / "configs" / f"{cfg_name}.json")
    rows = read_manifest(reference_dir / "manifests" / f"{manifest}.tsv")
    got = [(k, shape_str(s)) for k, s in expected_keys(cfg).items()]
    assert got == rows  # same keys, shapes and registration order
    assert MODEL_CLASSES[cfg.variant] is cls


def test_keys_cli_prints_the_manifest(reference_dir, capsys):
    assert ckpt_main(["keys", str(reference_dir / "configs" / "audiox_turbo_infer_4step.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    want = (reference_dir / "manifests" / "audiox_turbo.tsv").read_text().splitlines()[1:]
    assert out == want
    assert ckpt_main(["keys", "synchformer"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == (reference_dir / "manifests" / "synchformer.tsv").read_text().splitlines()[1:]


@pytest.mark.parametrize("cfg_name,manifest,cls", CONFIGS)
def test_config_inferred_from_manifest_shapes(reference_dir, cfg_name, manifest, cls):
    rows = read_manifest(reference_dir / "manifests" / f"{manifest}.tsv")
    shapes = {k: _shape(s) for k, s in rows}
    notes = []
    cfg = infer_config(shapes, notes=notes)
    assert MODEL_CLASSES[cfg.variant] is cls
    assert [(k, shape_str(s)) for k, s in expected_keys(cfg).items()] == rows
    ref = AudioXConfig.from_json(reference_dir / "configs" / f"{cfg_name}.json")
    assert cfg.objective == ref.objective and cfg.backbone.num_heads == ref.backbone.num_heads
    assert cfg.latent_length == ref.latent_length


def _sparse_safetensors(path, rows, metadata=None):
    """A real .safetensors file with the manifest's header and a sparse (all-zero) data section."""
    header, off = {}, 0
    for k, s in rows:
        shape = list(_shape(s))
        n = 4
        for d in shape:
            n *= d
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.truncate(8 + len(hb) + off)


@pytest.mark.parametrize("cfg_name,manifest,cls", CONFIGS)
def test_detect_full_size_file_without_config(reference_dir, tmp_path, cfg_name, manifest, cls):
    rows = read_manifest(reference_dir / "manifests" / f"{manifest}.tsv")
    p = tmp_path / "model.safetensors"
    _sparse_safetensors(p, rows)
    det = detect(p)
    assert det.kind.kind == "audiox"
    assert MODEL_CLASSES[det.variant] is cls
    assert det.config_from == "inferred from keys and shapes"
    if cls is AudioXTurbo:
        assert det.role == "student"


def test_detect_other_families_from_manifest(reference_dir, tmp_path):
    p = tmp_path / "sync.safetensors"
    _sparse_safetensors(p, read_manifest(reference_dir / "manifests" / "synchformer.tsv"))
    assert detect(p).kind.kind == "synchformer"
    with pytest.raises(CheckpointError, match="Synchformer"):
        load_model(p)


# ----------------------------------------------------------------------------------------------
# tiny models
# ----------------------------------------------------------------------------------------------
VARIANTS = ["audiox", "audiox_maf", "audiox_maf_mmdit", "audiox_turbo"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_bit_exact_and_class(tmp_path, variant):
    m = make_tiny_model(variant, seed=3)
    p = tmp_path / "m.safetensors"
    save_model(m, p)
    m2 = load_model(p)
    assert type(m2) is type(m) and m2.config.variant == variant
    a, b = m.state_dict(), m2.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # pickle with a Lightning-style wrapper + config.json beside it
    d = tmp_path / "hf"
    d.mkdir()
    torch.save({"state_dict": m.state_dict(), "global_step": 5}, d / "model.ckpt")
    (d / "config.json").write_text(json.dumps(m.config.to_dict()))
    m3 = load_model(d / "model.ckpt")
    assert all(torch.equal(a[k], m3.state_dict()[k]) for k in a)
    assert m3.info["config_from"].endswith("config.json")


def test_dtype_policy_bf16_backbone_fp32_vae(tmp_path):
    m = make_tiny_model("audiox_turbo")
    p = tmp_path / "m.safetensors"
    save_model(m, p)
    m2 = load_model(p, dtype="bf16")
    assert m2.backbone.transformer.project_in.weight.dtype == torch.bfloat16
    assert m2.maf_block.unified_experts.dtype == torch.bfloat16
    assert next(m2.pretransform.parameters()).dtype == torch.float32
    assert next(m2.audio_conditioner.pretransform.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in m2.parameters())


def test_training_checkpoint_parts(tmp_path):
    student = make_tiny_model("audiox_turbo", seed=1)
    teacher = make_tiny_model("audiox_turbo", seed=2)
    sd = {f"student.{k}": v for k, v in student.state_dict().items()}
    sd.update({f"teacher.{k}": v for k, v in teacher.state_dict().items()})
    sd["discriminator_heads.0.net.0.weight"] = torch.zeros(3, 8, 3)
    p = tmp_path / "train.ckpt"
    torch.save({"state_dict": sd, "model_config": student.config.to_dict()}, p)
    (tmp_path / "config.json").write_text(json.dumps(student.config.to_dict()))
    assert classify_keys(sd).kind == "audiox_training"
    s = load_model(p)
    assert s.info["role"] == "student"
    assert torch.equal(s.backbone.transformer.project_in.weight, student.backbone.transformer.project_in.weight)
    t = load_model(p, part="teacher")
    assert t.info["role"] == "base"
    assert torch.equal(t.backbone.transformer.project_in.weight, teacher.backbone.transformer.project_in.weight)
    with pytest.raises(CheckpointError, match="not 'fake.'"):
        load_model(p, part="fake")


def test_missing_vae_needs_vae_file_then_loads_it(tmp_path):
    m = make_tiny_model("audiox_maf_mmdit", seed=4)
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("pretransform.")}
    p = tmp_path / "novae.safetensors"
    save_safetensors(sd, p, {"audiox_config": json.dumps(m.config.to_dict())})
    with pytest.raises(CheckpointError, match="no VAE weights"):
        load_model(p)
    vae = tmp_path / "VAE.ckpt"
    torch.save({"state_dict": m.pretransform.model.state_dict()}, vae)
    m2 = load_model(p, vae=vae)
    assert all(torch.equal(a, b) for a, b in zip(m.pretransform.state_dict().values(),
                                                 m2.pretransform.state_dict().values()))
    pt = load_vae(vae)
    assert pt.model.encoder.layers[0].weight_v.shape == m.pretransform.model.encoder.layers[0].weight_v.shape


def test_config_checkpoint_mismatch_is_summarised(tmp_path):
    m = make_tiny_model("audiox_turbo")
    p = tmp_path / "m.safetensors"
    save_safetensors(m.state_dict(), p)
    other = tiny_config("audiox_turbo", embed_dim=96)
    with pytest.raises(CheckpointError) as e:
        load_model(p, config=other)
    msg = str(e.value)
    assert "m.safetensors" in msg and "another shape" in msg and "model.model." in msg
    assert msg.count("\n") < 12  # a summary, not hundreds of lines


def test_bad_files_give_one_clear_error(tmp_path):
    m = make_tiny_model("audiox")
    good = tmp_path / "good.safetensors"
    save_model(m, good)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(trunc)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)
    # another family: a VAE-only file, Stable Audio Open keys
    vae = tmp_path / "vae.safetensors"
    save_safetensors(m.pretransform.model.state_dict(), vae)
    with pytest.raises(CheckpointError, match="VAE"):
        load_model(vae)
    sao = dict(m.state_dict())
    sao["conditioner.conditioners.seconds_start.embedder.embedding.0.weights"] = torch.zeros(4)
    p = tmp_path / "sao.safetensors"
    save_safetensors(sao, p)
    with pytest.raises(CheckpointError, match="Stable Audio"):
        load_model(p)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_code_running_pickle_is_refused(tmp_path):
    target = tmp_path / "owned"
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": make_tiny_model("audiox").state_dict(), "x": _Payload(str(target))}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(p)
    assert not target.exists()


def test_convert_and_inspect_cli(tmp_path, capsys):
    m = make_tiny_model("audiox_maf")
    ck = tmp_path / "m.ckpt"
    torch.save({"state_dict": m.state_dict()}, ck)
    (tmp_path / "config.json").write_text(json.dumps(m.config.to_dict()))
    out = tmp_path / "m.safetensors"
    assert ckpt_main(["convert", str(ck), str(out), "--dtype", "bf16"]) == 0
    m2 = load_model(out)
    assert m2.config.variant == "audiox_maf"
    assert m2.info["config_from"] == "file metadata"
    w = m.backbone.transformer.project_in.weight
    assert torch.equal(m2.backbone.transformer.project_in.weight, w.to(torch.bfloat16).float())
    capsys.readouterr()
    assert ckpt_main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "audiox_maf" in text and "MAF:" in text and "mel_spec" in text
    assert ckpt_main(["inspect", str(tmp_path / "missing.ckpt")]) == 2


def test_module_cli_runs_as_subprocess(tmp_path):
    m = make_tiny_model("audiox_turbo")
    p = tmp_path / "m.safetensors"
    save_model(m, p, role="student")
    r = subprocess.run([sys.executable, "-m", "audiox_core.checkpoint", "inspect", str(p)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "audiox_turbo" in r.stdout and "(student)" in r.stdout
