"""Reliability and safety (issue 12): one test (or more) per class of failure.

1. paths stay inside their folders (symlinks resolved) and saved files get normal permissions;
2. memory follows the work, not the input (only the needed span of a long file is decoded);
3. every argument is checked before any model work (CLI and nodes);
4. raw library exceptions become errors that name the file (int tensors, bad UTF-8, full disk);
5. nothing half-finished is published as finished (Cancel → ``.partial``, one writer per name,
   non-finite weights refused at load);
6. error messages name the real culprit (CLIP width, config vs checkpoint, broken config.json).
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from audiox_core import tiny
from audiox_core.errors import (AudioXError, CheckpointError, ConfigError, ConfigMismatchError, InputError,
                                OutputBusyError, PathError, SaveError)
from audiox_core.weights import PARTIAL_KEY, SafetensorsFile, copy_safetensors, save_safetensors
from comfy_harness import comfy_env  # noqa: F401  (fixture)
from comfy_harness import call_node as call

ROOT = Path(__file__).resolve().parents[1]
TINY = {"audiox/turbo.safetensors": "tiny_turbo", "audiox/vae.safetensors": "tiny_vae",
        "audiox/sf.pth": "tiny_synchformer_pth", "text_encoders/t5": "tiny_t5"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, TINY)
    return comfy_env


def node_error(fn, *args, **kwargs) -> str:
    with pytest.raises(AudioXError) as ei:
        fn(*args, **kwargs)
    return str(ei.value)


def umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def stray_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name or p.name.endswith(".lock"))


# ================================================================== 1. paths
def test_resolve_inside_refuses_every_way_out(tmp_path):
    from audiox_core.fileio import resolve_inside
    root = tmp_path / "models"
    (root / "sub").mkdir(parents=True)
    (root / "ok.safetensors").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "link_out").symlink_to(secret)
    (root / "dir_out").symlink_to(tmp_path)
    (root / "link_in").symlink_to(root / "ok.safetensors")

    assert resolve_inside("ok.safetensors", [root], what="w") == (root / "ok.safetensors").resolve()
    assert resolve_inside(str(root / "ok.safetensors"), [root], what="w") == (root / "ok.safetensors").resolve()
    assert resolve_inside("link_in", [root], what="w") == (root / "ok.safetensors").resolve()
    assert resolve_inside("missing.safetensors", [root], what="w") is None
    assert resolve_inside("sub/new.safetensors", [root], what="w", must_exist=False) == root.resolve() / "sub" / \
        "new.safetensors"
    for bad in ("../secret.txt", "sub/../../secret.txt", str(secret), "/etc/passwd", "link_out",
                "dir_out/secret.txt", "dir_out/new.bin", "", "a\x00b"):
        with pytest.raises(PathError) as ei:
            resolve_inside(bad, [root], what="ckpt_name", must_exist=False)
        assert "ckpt_name" in str(ei.value)


def test_loader_nodes_refuse_names_outside_their_folders(env, tmp_path, monkeypatch):
    secret = tmp_path / "outside.safetensors"
    (env.models_dir / "audiox" / "turbo.safetensors").rename(secret)
    (env.models_dir / "audiox" / "turbo.safetensors").symlink_to(secret)   # a symlink out of the folder
    opened = []
    real_open = open

    def spy(file, *a, **k):
        opened.append(str(file))
        return real_open(file, *a, **k)
    monkeypatch.setattr("builtins.open", spy)
    cases = [("AudioXModelLoader", "ckpt_name", dict(dtype="fp32", keep_on_gpu=True)),
             ("AudioXVAELoader", "vae_name", dict(sample_rate=44100, keep_on_gpu=True)),
             ("AudioXSynchformerLoader", "synchformer_name", dict(dtype="fp32", keep_on_gpu=True)),
             ("AudioXT5Loader", "t5_name", dict(dtype="fp32", keep_on_gpu=True)),
             ("AudioXCLIPVisionLoader", "clip_name", {})]
    for node_id, inp, kw in cases:
        for bad in ("../../../../../../etc/passwd", "/etc/passwd", f"../{secret.name}", str(secret),
                    "turbo.safetensors"):
            if bad == "turbo.safetensors" and node_id != "AudioXModelLoader":
                continue
            msg = node_error(call, env, node_id, **{inp: bad}, **kw)
            display = env.classes[node_id].DISPLAY_NAME
            assert msg.startswith(f"{display}: input '{inp}'") and "outside" in msg, msg
    lora_msg = node_error(call, env, "AudioXLoRALoader", model=None, lora_name="../../etc/passwd")
    assert "AudioX LoRA Loader" in lora_msg
    assert not [f for f in opened if f in ("/etc/passwd", str(secret))]


def test_lora_loader_refuses_paths_outside_models_loras(env):
    (model, _, _) = call(env, "AudioXModelLoader", ckpt_name="turbo.safetensors", dtype="fp32", keep_on_gpu=True)
    for bad in ("../../etc/passwd", "/etc/passwd", "../audiox/turbo.safetensors"):
        msg = node_error(call, env, "AudioXLoRALoader", model=model, lora_name=bad, strength=1.0, merge=False,
                         allow_other_weights=False)
        assert msg.startswith("AudioX LoRA Loader: input 'lora_name'") and "outside" in msg, msg


def test_dataset_folder_and_output_names_stay_in_their_folders(env, tmp_path):
    cls = env.classes["AudioXDataset"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.wav").write_bytes(b"RIFF")
    (env.input_dir / "linked").symlink_to(elsewhere)
    for bad in (str(elsewhere), "../elsewhere", "linked", "/etc"):
        msg = cls.VALIDATE_INPUTS(folder=bad, manifest="")
        assert isinstance(msg, str) and "input 'folder'" in msg and "outside" in msg, (bad, msg)
    (env.input_dir / "clips").mkdir()
    (env.input_dir / "clips" / "a.wav").write_bytes(b"RIFF")
    msg = cls.VALIDATE_INPUTS(folder="clips", manifest="/etc/passwd")
    assert "input 'manifest'" in msg and "outside" in msg, msg

    # a manifest row pointing out of the input folder is refused (core, with allowed roots)
    from audiox_core.training.data import read_manifest
    man = env.input_dir / "clips" / "metadata.jsonl"
    man.write_text(json.dumps({"path": str(elsewhere / "a.wav"), "caption": "x"}) + "\n")
    with pytest.raises(PathError, match="row 1"):
        read_manifest(man, allowed_roots=[env.input_dir])

    # output names: a sub-folder of models/loras that is a symlink elsewhere is refused
    training = env.pack.nodes.training
    (env.models_dir / "loras").mkdir(exist_ok=True)
    (env.models_dir / "loras" / "evil").symlink_to(elsewhere)
    msg = node_error(training.output_file, "AudioX Train LoRA", "loras", "evil/x")
    assert "input 'output_name'" in msg and "outside" in msg
    assert training.output_file("N", "loras", "good/x") == (env.models_dir / "loras").resolve() / "good" / \
        "x.safetensors"


def test_saved_files_get_normal_permissions(tmp_path):
    from audiox_core.media import save_wav
    want = 0o666 & ~umask()
    save_safetensors({"a": torch.zeros(3)}, tmp_path / "w.safetensors")
    save_wav(tmp_path / "a.wav", torch.zeros(1, 100), 8000)
    copy_safetensors(tmp_path / "w.safetensors", tmp_path / "c.safetensors", {"k": "v"})
    for name in ("w.safetensors", "a.wav", "c.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name
    assert SafetensorsFile(tmp_path / "c.safetensors").metadata == {"k": "v"}


# ================================================================== 4. raw exceptions → named errors
def test_integer_tensor_where_a_float_is_expected_names_the_file_and_key(tmp_path):
    from audiox_core.checkpoint import load_model
    m = tiny.make_tiny_model("audiox_turbo", seed=1)
    sd = dict(m.state_dict())
    key = next(k for k, v in sd.items() if v.is_floating_point() and k.startswith("model."))
    sd[key] = torch.zeros(sd[key].shape, dtype=torch.int32)
    p = tmp_path / "ints.safetensors"
    save_safetensors(sd, p, {"audiox_config": json.dumps(m.config.to_dict())})
    with pytest.raises(CheckpointError) as ei:
        load_model(p)
    assert str(p) in str(ei.value) and key in str(ei.value) and "floating-point" in str(ei.value)


def test_invalid_utf8_caption_and_manifest_name_the_file(tmp_path):
    from audiox_core.media import save_wav
    from audiox_core.training.data import FolderDataset, read_manifest
    save_wav(tmp_path / "a.wav", torch.zeros(1, 800), 8000)
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 \xff\xfe")
    with pytest.raises(InputError) as ei:
        FolderDataset(tmp_path)
    assert "a.txt" in str(ei.value) and "UTF-8" in str(ei.value)
    (tmp_path / "a.txt").unlink()
    (tmp_path / "m.jsonl").write_bytes(b'{"path": "a.wav", "caption": "\xff"}\n')
    with pytest.raises(InputError, match=r"m\.jsonl.*UTF-8"):
        read_manifest(tmp_path / "m.jsonl")


def _disk_full(monkeypatch, after_bytes: int = 16):
    """Make writes through audiox_core.fileio fail with ENOSPC after ``after_bytes`` bytes."""
    import audiox_core.fileio as fio
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, b):
            self.n += len(b)
            if self.n > after_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(b)

        def __getattr__(self, k):
            return getattr(self.fh, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(fio.os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))


def test_full_disk_while_saving_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    from audiox_core.media import save_wav
    from audiox_core.training import create_lora
    save_safetensors({"a": torch.ones(100)}, tmp_path / "src.safetensors")
    _disk_full(monkeypatch)
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    lora = create_lora(m, rank=2)
    for what, fn, target in (
            ("LoRA", lambda: lora.save(tmp_path / "out" / "my_lora.safetensors", steps=1), "my_lora.safetensors"),
            ("weights", lambda: save_safetensors({"a": torch.ones(100)}, tmp_path / "w.safetensors"), "w.safetensors"),
            ("wav", lambda: save_wav(tmp_path / "a.wav", torch.zeros(1, 1000), 8000), "a.wav"),
            ("copy", lambda: copy_safetensors(tmp_path / "src.safetensors", tmp_path / "c.safetensors"),
             "c.safetensors")):
        with pytest.raises(SaveError) as ei:
            fn()
        assert target in str(ei.value) and "disk is full" in str(ei.value), what
        assert not (tmp_path / target).exists() and not (tmp_path / "out" / target).exists()
        assert stray_files(tmp_path) == [], what


def test_publish_failure_leaves_the_old_file_and_no_temp(env, monkeypatch, tmp_path):
    from audiox_core.training.session import publish
    src = tmp_path / "src.safetensors"
    save_safetensors({"a": torch.ones(1000)}, src)
    dst = env.models_dir / "loras" / "x.safetensors"
    save_safetensors({"a": torch.zeros(4)}, dst)
    before = dst.read_bytes()
    _disk_full(monkeypatch, after_bytes=100)
    msg = node_error(publish, src, dst)
    assert "x.safetensors" in msg and "disk is full" in msg
    assert dst.read_bytes() == before and stray_files(dst.parent) == []


# ================================================================== 5. half-finished results
def test_partial_results_are_marked_and_the_loader_says_so(env):
    src = env.models_dir / "audiox" / "turbo.safetensors"
    copy_safetensors(src, env.models_dir / "audiox" / "student.partial.safetensors", {PARTIAL_KEY: "step 3 of 10"})
    assert "student.partial.safetensors" in env.pack.nodes.loaders.list_audiox_files()
    _, _, info = call(env, "AudioXModelLoader", ckpt_name="student.partial.safetensors", dtype="fp32",
                      keep_on_gpu=True)
    assert "PARTIAL" in info and "step 3 of 10" in info
    # publishing the finished file drops the marker
    copy_safetensors(env.models_dir / "audiox" / "student.partial.safetensors",
                     env.models_dir / "audiox" / "done.safetensors", drop=(PARTIAL_KEY,))
    assert PARTIAL_KEY not in SafetensorsFile(env.models_dir / "audiox" / "done.safetensors").metadata


def test_one_writer_per_output_name(tmp_path):
    from audiox_core.fileio import WriterLock
    target, lock = tmp_path / "out.safetensors", tmp_path / "state" / ".writer.lock"
    with WriterLock(target, lock):
        with pytest.raises(OutputBusyError, match="out.safetensors"):
            WriterLock(target, lock).acquire()
        # another process is refused too (OS lock), and may write once we are done
        code = textwrap.dedent(f"""
            import sys; sys.path.insert(0, {str(ROOT)!r})
            from audiox_core.fileio import WriterLock
            from audiox_core.errors import OutputBusyError
            try:
                WriterLock({str(target)!r}, {str(lock)!r}).acquire()
                print("acquired")
            except OutputBusyError:
                print("busy")
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "busy", out.stderr
    assert not lock.exists()
    with WriterLock(target, lock):
        pass


def test_training_node_refuses_a_second_writer_of_the_same_name(env):
    from audiox_core.fileio import WriterLock
    training = env.pack.nodes.training
    dst = training.output_file("N", "loras", "busy_lora")
    run_dir = training.state_dir("lora", "busy_lora")
    with WriterLock(dst, run_dir / ".writer.lock"):
        msg = node_error(training.run_training, "AudioX Train LoRA", None, None, run_dir=run_dir, resume=False,
                         src=run_dir / "x.safetensors", dst=dst, progress=None)
    assert "input 'output_name'" in msg and "busy_lora.safetensors" in msg and "another run" in msg


def test_non_finite_weights_are_refused_at_load_naming_the_file(tmp_path):
    from audiox_core.checkpoint import load_model
    from audiox_core.training import create_lora, load_lora
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    lora = create_lora(m, rank=2)
    with torch.no_grad():
        next(p for n, p in lora.named_parameters() if n.endswith("lora_B")).fill_(float("nan"))
    lora.save(tmp_path / "nan_lora.safetensors", steps=1)
    with pytest.raises(CheckpointError, match=r"nan_lora\.safetensors.*NaN/infinite"):
        load_lora(tmp_path / "nan_lora.safetensors", m, attach=False)
    sd = dict(m.state_dict())
    key = next(k for k, v in sd.items() if v.is_floating_point() and k.startswith("model."))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("inf")
    save_safetensors(sd, tmp_path / "inf.safetensors", {"audiox_config": json.dumps(m.config.to_dict())})
    with pytest.raises(CheckpointError) as ei:
        load_model(tmp_path / "inf.safetensors")
    assert "inf.safetensors" in str(ei.value) and key in str(ei.value)


# ================================================================== 6. misleading hints
def test_config_that_does_not_match_blames_the_config_not_the_vae(tmp_path):
    from audiox_core.checkpoint import load_model
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    p = tmp_path / "model.safetensors"
    save_safetensors(dict(m.state_dict()), p)
    other = tiny.tiny_config("audiox_maf")
    (tmp_path / "config.json").write_text(json.dumps(other.to_dict()))
    with pytest.raises(ConfigMismatchError) as ei:
        load_model(p)
    msg = str(ei.value)
    assert "config.json" in msg and "VAE" not in msg.split("\n")[-1] and "pass the VAE" not in msg
    # a config.json that does not parse is an error naming it, not silently ignored
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json"):
        load_model(p)
    # a checkpoint truly without its VAE still says so
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("pretransform.")}
    (tmp_path / "config.json").unlink()
    save_safetensors(sd, tmp_path / "novae.safetensors", {"audiox_config": json.dumps(m.config.to_dict())})
    with pytest.raises(CheckpointError, match="no VAE weights"):
        load_model(tmp_path / "novae.safetensors")


def test_clip_of_another_width_blames_clip_vision(env):
    from audiox_core.conditioning.clip_video import CLIPVideoConditioner
    m = tiny.make_tiny_model("audiox", seed=0)
    sd = {k: v for k, v in m.state_dict().items() if ".visual_encoder_model." not in k}
    save_safetensors(sd, env.models_dir / "audiox" / "noclip.safetensors",
                     {"audiox_config": json.dumps(m.config.to_dict())})
    clip_cfg = dict(tiny.TINY_CLIP, hidden_size=48, intermediate_size=96)
    other = CLIPVideoConditioner({"video_fps": 2}, 48, clip_config=clip_cfg)
    (env.models_dir / "clip_vision").mkdir(exist_ok=True)
    save_safetensors(dict(other.visual_encoder_model.state_dict()), env.models_dir / "clip_vision" / "wide.safetensors")
    (clip,) = call(env, "AudioXCLIPVisionLoader", clip_name="wide.safetensors")
    msg = node_error(call, env, "AudioXModelLoader", ckpt_name="noclip.safetensors", dtype="fp32", keep_on_gpu=True,
                     clip_vision=clip)
    assert msg.startswith("AudioX Model Loader: input 'clip_vision'") and "wide.safetensors" in msg, msg


# ================================================================== 3. validate before working
DEMO = ROOT / "models" / "demo" / "audiox_demo_turbo.safetensors"


def _wav(path: Path, seconds: float, sr: int = 8000) -> Path:
    from audiox_core.media import save_wav
    g = torch.Generator().manual_seed(0)
    save_wav(path, 0.1 * torch.randn(1, int(seconds * sr), generator=g), sr)
    return path


@pytest.fixture
def no_model_work(monkeypatch):
    """Any model loading or sampling fails the test: the CLI must refuse before it."""
    import audiox_core.api
    import audiox_core.generate as G

    def boom(*a, **k):
        raise AssertionError("model work started before the arguments were checked")
    monkeypatch.setattr(audiox_core.api, "load", boom)
    monkeypatch.setattr(G, "sample", boom)


@pytest.mark.parametrize("extra, expect", [
    (["--out", "{tmp}/missing/o.wav"], "does not exist"),
    (["--out", "{tmp}/o.wav", "--mp4", "{tmp}/o.mp4"], "--mp4 needs --video"),
    (["--out", "{tmp}/o.wav", "--init-audio", "{tmp}/clip.wav", "--inpaint", "3.5-4"], "starts after the end"),
    (["--out", "{tmp}/o.wav", "--init-audio", "{tmp}/clip.wav", "--inpaint", "2-3.5"], "goes past the end"),
    (["--out", "{tmp}/o.wav", "--inpaint", "1-2"], "needs --init-audio"),
    (["--out", "{tmp}/o.wav", "--strength", "nan"], "--strength"),
    (["--out", "{tmp}/o.wav", "--duration", "inf"], "--duration"),
    (["--out", "{tmp}/o.wav", "--video", "{tmp}/nope.mp4"], "not found"),
    (["--out", "{tmp}/o.txt"], "must end in .wav"),
    (["--out", "{tmp}/o.wav", "--init-audio", "{tmp}/one.wav", "--inpaint", "0-0.0001"], "latent frame"),
])
def test_cli_refuses_bad_arguments_before_loading_the_model(tmp_path, capsys, no_model_work, extra, expect):
    from audiox_core.__main__ import main
    _wav(tmp_path / "clip.wav", 3.0)
    _wav(tmp_path / "one.wav", 1 / 8000)
    args = ["generate", "--model", str(DEMO), "--prompt", "beeps"] + [e.format(tmp=tmp_path) for e in extra]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and expect in err, err
    assert not list(tmp_path.glob("o.*"))


def test_generate_refuses_tiny_inputs_and_ranges_outside_the_clip(monkeypatch):
    import audiox_core.generate as G
    from audiox_core.task import GenerationRequest, generate
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    sr = m.config.sample_rate

    def boom(*a, **k):
        raise AssertionError("sampling started")
    monkeypatch.setattr(G, "sample", boom)
    monkeypatch.setattr(G.conditions, "encode_text", boom)
    with pytest.raises(InputError, match=r"1 sample\(s\).*latent frame"):
        generate(m, GenerationRequest(prompt="x", init_audio=(torch.zeros(1, 1), sr), inpaint=[(0.0, 0.01)]))
    clip = torch.zeros(1, sr)  # 1 s, shorter than the tiny window
    for rng, msg in (([(1.5, 1.8)], "starts after the end of the 1.00 s clip"), ([(0.5, 1.5)], "goes past the end"),
                     ([(0.5, float("nan"))], "finite"), ([(0.6, 0.2)], "empty")):
        with pytest.raises(InputError, match=msg):
            generate(m, GenerationRequest(prompt="x", init_audio=(clip, sr), inpaint=rng))
    with pytest.raises(InputError, match="strength"):
        generate(m, GenerationRequest(prompt="x", init_audio=(clip, sr), strength=float("nan")))


def test_training_nodes_refuse_a_nan_learning_rate_at_validation(env):
    for node_id in ("AudioXTrainLoRA", "AudioXDistill"):
        cls = env.classes[node_id]
        for bad in (float("nan"), float("inf"), -1.0):
            msg = cls.VALIDATE_INPUTS(output_name="x", learning_rate=bad)
            assert isinstance(msg, str) and "learning_rate" in msg, msg
        assert cls.VALIDATE_INPUTS(output_name="x", learning_rate=1e-4) is True
        assert isinstance(cls.VALIDATE_INPUTS(output_name="../x", learning_rate=1e-4), str)
    msg = env.classes["AudioXDistill"].VALIDATE_INPUTS(output_name="x", learning_rate=1e-4, guidance=float("nan"))
    assert isinstance(msg, str) and "guidance" in msg
    # and any node refuses a NaN number when called directly (API / other packs skip validation)
    msg = node_error(call, env, "AudioXInpaintMask", ranges="1-2", ramp_seconds=float("nan"))
    assert msg.startswith("AudioX Inpaint Mask: input 'ramp_seconds'") and "finite" in msg


# ================================================================== 2. memory follows the work
def test_only_the_needed_span_of_a_long_file_is_decoded(tmp_path, monkeypatch):
    import audiox_core.generate as G
    from audiox_core.task import GenerationRequest, generate
    import audiox_core.media.audio as A
    from audiox_core.conditioning.t5 import T5TextEncoder
    long = _wav(tmp_path / "long.wav", 120.0, sr=8000)
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    m.set_text_encoder(T5TextEncoder.from_local(tiny.save_tiny_t5(tmp_path / "t5"), expected_dim=32))
    window = m.config.latent_length * m.config.vae.downsampling_ratio / m.config.sample_rate
    decoded = []
    real = A._decode_audio

    def spy(container, stream, name, start, duration):
        w, sr = real(container, stream, name, start, duration)
        decoded.append(w.shape[-1] / sr)
        return w, sr
    monkeypatch.setattr(A, "_decode_audio", spy)
    res = generate(m, GenerationRequest(prompt="x", init_audio=str(long), inpaint=[(0.05, 0.15)], duration=window,
                                        settings=G.SamplerSettings.for_model(m, steps=1)))
    assert decoded and max(decoded) <= window + 0.6, decoded
    assert abs(res.audio.shape[-1] / res.sample_rate - window) < 0.01
    # without a duration the file's header says it is too long for inpainting: nothing is decoded
    decoded.clear()
    with pytest.raises(InputError, match="within one"):
        generate(m, GenerationRequest(prompt="x", init_audio=str(long), inpaint=[(0.05, 0.15)]))
    assert decoded == []


def test_prepare_audio_cut_before_resampling_matches_the_whole(monkeypatch):
    from audiox_core.conditions import prepare_audio
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 48000 * 3, generator=g)
    whole, _ = prepare_audio(m, x, 48000)
    cut, _ = prepare_audio(m, x, 48000, max_seconds=0.5)
    n = int(0.5 * m.config.sample_rate)
    assert cut.shape[-1] <= whole.shape[-1] and torch.equal(cut[..., :n], whole[..., :n])


def test_vae_encode_node_states_its_limit_before_resampling(env):
    (_, vae, _) = call(env, "AudioXModelLoader", ckpt_name="turbo.safetensors", dtype="fp32", keep_on_gpu=True)
    long = {"waveform": torch.zeros(1, 1, 100 * 301), "sample_rate": 100}
    msg = node_error(call, env, "AudioXVAEEncode", vae=vae, audio=long, sample_posterior=False, posterior_seed=0,
                     chunked="auto")
    assert msg.startswith("AudioX VAE Encode: input 'audio'") and "at most 300" in msg


def test_audio_prompt_resamples_only_the_window_it_uses(monkeypatch):
    from audiox_core import conditions as C
    from audiox_core import media
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    window = C.audio_prompt_seconds(m)
    assert window is not None
    seen = []
    real = media.resample

    def spy(x, a, b, **k):
        seen.append(x.shape[-1])
        return real(x, a, b, **k)
    monkeypatch.setattr(media, "resample", spy)
    C.encode_audio_prompt(m, torch.randn(1, 2, 48000 * 60), sample_rate=48000, mask=False)
    assert seen and max(seen) <= (window + 0.1) * 48000, (seen, window)


def test_an_audio_prompt_file_is_decoded_only_as_far_as_it_is_used(tmp_path, monkeypatch):
    import audiox_core.generate as G
    from audiox_core.task import GenerationRequest, generate
    import audiox_core.media.audio as A
    from audiox_core.conditioning.t5 import T5TextEncoder
    long = _wav(tmp_path / "long.wav", 60.0, sr=8000)
    m = tiny.make_tiny_model("audiox_turbo", seed=0)
    m.set_text_encoder(T5TextEncoder.from_local(tiny.save_tiny_t5(tmp_path / "t5"), expected_dim=32))
    decoded = []
    real = A._decode_audio

    def spy(container, stream, name, start, duration):
        w, sr = real(container, stream, name, start, duration)
        decoded.append(w.shape[-1] / sr)
        return w, sr
    monkeypatch.setattr(A, "_decode_audio", spy)
    generate(m, GenerationRequest(prompt="x", audio_prompt=str(long), settings=G.SamplerSettings.for_model(m, steps=1)))
    assert decoded and max(decoded) <= G.conditions.audio_prompt_seconds(m) + 0.6, decoded


def test_a_training_file_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import audiox_core.media.audio as A
    from audiox_core.training import data as D
    monkeypatch.setattr(D, "MAX_FILE_SECONDS", 5.0)
    _wav(tmp_path / "long.wav", 8.0, sr=8000)
    m = tiny.make_tiny_model("audiox_turbo", seed=0)

    def boom(*a, **k):
        raise AssertionError("decoded")
    monkeypatch.setattr(A, "_decode_audio", boom)
    with pytest.raises(InputError, match=r"long\.wav.*8 s long.*at most 5 s"):
        D._model_audio(m, D.Example(audio=tmp_path / "long.wav", caption=""))


def test_finite_checks_are_slice_wise_and_exact():
    from audiox_core.finite import all_finite, count_nonfinite
    x = torch.zeros(3, 1000)
    assert all_finite(x, chunk=64) and count_nonfinite(x, chunk=64) == 0
    x[2, 999] = float("nan")
    x[0, 5] = float("-inf")
    assert not all_finite(x, chunk=64) and count_nonfinite(x, chunk=64) == 2
    assert not all_finite(x.t(), chunk=64) and count_nonfinite(x.t(), chunk=7) == 2  # non-contiguous
    assert all_finite(torch.arange(10))
