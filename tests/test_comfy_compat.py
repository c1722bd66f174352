"""nodes/comfy_compat.py with and without (stubbed) ComfyUI, and the pack's registration."""
from __future__ import annotations

import importlib
import sys
from fractions import Fraction

import pytest
import torch

import comfy_fakes
import comfy_harness as H
from audiox_core.errors import InputError, Interrupted


@pytest.fixture(scope="module")
def pack():
    pack = H.load_pack()
    importlib.import_module(f"{pack.__name__}.nodes.comfy_compat")
    return pack


@pytest.fixture
def compat(pack, monkeypatch):
    c = pack.nodes.comfy_compat
    for name in comfy_fakes.FakeComfy.MODULES:
        assert name not in sys.modules or not getattr(sys.modules[name], "__audiox_fake__", False)
    monkeypatch.setattr(c.standalone, "FOLDERS", {})
    monkeypatch.setattr(c.standalone, "INTERRUPT_REQUESTED", False)
    return c


class Recorder(torch.nn.Module):
    """A module that records .to() calls instead of moving (no second device needed)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.moves: list = []

    def to(self, *args, **kwargs):
        self.moves.append(torch.device(args[0]) if args else kwargs.get("device"))
        return self


# ------------------------------------------------------------------ the pack
def test_pack_exports_registration(pack):
    assert isinstance(pack.NODE_CLASS_MAPPINGS, dict) and isinstance(pack.NODE_DISPLAY_NAME_MAPPINGS, dict)
    assert pack.WEB_DIRECTORY == "./web"
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.nodes.NODE_CLASS_MAPPINGS)
    # the pack's audiox_core is the same module the unit tests import
    import audiox_core.errors

    assert pack.nodes.comfy_compat.Interrupted is audiox_core.errors.Interrupted


def test_a_broken_node_module_fails_loudly(pack, tmp_path, monkeypatch):
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "no_maps_mod.py").write_text("X = 1\n")
    monkeypatch.setattr(pack.nodes, "__path__", [*pack.nodes.__path__, str(tmp_path)])
    with pytest.raises(RuntimeError, match="boom at import"):
        pack.nodes._collect(["broken_mod"])
    with pytest.raises(ImportError, match="defines no NODE_CLASS_MAPPINGS"):
        pack.nodes._collect(["no_maps_mod"])
    for m in ("broken_mod", "no_maps_mod"):
        sys.modules.pop(f"{pack.__name__}.nodes.{m}", None)


# ------------------------------------------------------------------ fallbacks (no ComfyUI)
def test_fallback_devices(compat, monkeypatch):
    assert not compat.comfy_available()
    assert compat.get_torch_device() == torch.device("cpu")
    assert compat.unet_offload_device() == torch.device("cpu") == compat.intermediate_device()
    monkeypatch.setenv("AUDIOX_DEVICE", "meta")
    assert compat.get_torch_device() == torch.device("meta")


def test_fallback_progress_checks_the_interrupt_flag(compat):
    bar = compat.ProgressBar(10)
    bar.update_absolute(3)
    bar.update_absolute(23)
    assert bar.current == 10  # clamped like ComfyUI's
    compat.interrupt_processing()
    with pytest.raises(Interrupted):
        bar.update_absolute(4)
    bar.update_absolute(5)  # the flag was consumed


def test_progress_callback_rescales_and_interrupts(compat):
    cb = compat.make_progress_callback(100)
    cb(1, 4, {"stage": "sampling"})
    cb(4, 4, {})
    compat.interrupt_processing()
    with pytest.raises(Interrupted):
        cb(2, 4, {})
    free = compat.make_progress_callback(None)
    free(3, 7, {})
    compat.interrupt_processing()
    with pytest.raises(Interrupted):
        free(4, 7, {})


def test_fallback_model_folders(compat, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOX_MODELS_DIR", str(tmp_path))
    compat.register_model_folder("audiox", "audiox", [".safetensors", "ckpt"])
    (tmp_path / "audiox" / "sub").mkdir(parents=True)
    (tmp_path / "audiox" / "b.safetensors").write_bytes(b"x")
    (tmp_path / "audiox" / "sub" / "a.ckpt").write_bytes(b"x")
    (tmp_path / "audiox" / "notes.txt").write_text("ignored")
    assert compat.get_filename_list("audiox") == ["b.safetensors", "sub/a.ckpt"]
    assert compat.get_full_path("audiox", "sub/a.ckpt") == str(tmp_path / "audiox" / "sub" / "a.ckpt")
    with pytest.raises(InputError, match=r"'missing.safetensors' was not found in model folder 'audiox'.*audiox"):
        compat.get_full_path("audiox", "missing.safetensors")
    with pytest.raises(InputError, match="not registered"):
        compat.get_filename_list("nope")


def test_fallback_model_handles_move_only_while_used(compat):
    m = Recorder()
    h = compat.wrap_model(m, load_device=torch.device("meta"), offload_device=torch.device("cpu"))
    assert isinstance(h, compat.LocalModelHandle) and h.model is m and h.model_size() == 6 * 4
    with compat.models_on_device(h):
        assert m.moves == [torch.device("meta")]
    assert m.moves == [torch.device("meta"), torch.device("cpu")]
    with compat.models_on_device(h, offload_after=False):
        pass
    assert m.moves[-1] == torch.device("meta")


def test_make_video_fallback(compat):
    frames = torch.rand(5, 8, 12, 3)
    audio = {"waveform": torch.zeros(1, 2, 100), "sample_rate": 50}
    v = compat.make_video(frames, 29.97, audio)
    c = v.get_components()
    assert c.images is frames and c.audio is audio and c.frame_rate == Fraction(2997, 100)
    assert v.get_dimensions() == (12, 8) and abs(v.get_duration() - 5 / 29.97) < 1e-9
    with pytest.raises(InputError, match=r"\[N, H, W, 3\]"):
        compat.make_video(torch.rand(5, 3, 8, 12), 25)
    with pytest.raises(InputError, match="fps must be positive"):
        compat.make_video(frames, 0)


# ------------------------------------------------------------------ inside (stubbed) ComfyUI
def test_comfy_path_progress_interrupt_and_devices(compat, tmp_path):
    with comfy_fakes.FakeComfy(tmp_path) as env:
        assert compat.comfy_available()
        cb = compat.make_progress_callback(None, node_id="17")
        cb(1, 3, {})
        cb(2, 3, {})
        assert env.progress == [("17", 1, 3), ("17", 2, 3)]
        compat.interrupt_processing()
        with pytest.raises(comfy_fakes.InterruptProcessingException):
            cb(3, 3, {})
        assert compat.get_output_directory() == str(env.output_dir)
    assert not compat.comfy_available()  # detection is per call: stubs gone, fallback again


def test_comfy_path_model_folders(compat, tmp_path):
    with comfy_fakes.FakeComfy(tmp_path) as env:
        compat.register_model_folder("audiox", "audiox", [".safetensors"])
        compat.register_model_folder("audiox", "audiox", [".ckpt"])  # idempotent path, more extensions
        compat.register_model_folder("clip", "text_encoders", [".safetensors"])  # legacy alias
        paths, exts = env.folder_names_and_paths["audiox"]
        assert paths == [str(env.models_dir / "audiox")] and {".safetensors", ".ckpt"} <= exts
        assert env.folder_names_and_paths["text_encoders"][0] == [str(env.models_dir / "text_encoders")]
        (env.models_dir / "audiox").mkdir()
        (env.models_dir / "audiox" / "m.safetensors").write_bytes(b"x")
        (env.models_dir / "audiox" / "m.txt").write_bytes(b"x")
        assert compat.get_filename_list("audiox") == ["m.safetensors"]
        assert compat.get_full_path("audiox", "m.safetensors").endswith("m.safetensors")
        with pytest.raises(InputError, match="not found in model folder 'audiox'"):
            compat.get_full_path("audiox", "other.safetensors")
        with pytest.raises(InputError, match="'nope' is not registered"):
            compat.get_filename_list("nope")
        assert compat.get_folder_paths("clip") == [str(env.models_dir / "text_encoders")]


def test_comfy_path_model_patcher_and_loading(compat, tmp_path):
    with comfy_fakes.FakeComfy(tmp_path) as env:
        m = Recorder()
        h = compat.wrap_model(m)
        assert type(h).__name__ == "ModelPatcher" and h.model is m
        assert h.load_device == torch.device("cpu") and h.size == 6 * 4
        with compat.models_on_device(h, memory_required=123):
            pass
        # its layers can run from the offload device, so ComfyUI may load it partially
        assert env.load_calls == [{"models": [h], "memory_required": 123, "force_full_load": False}]
        assert [e.model for e in env.current_loaded_models] == [h]  # ComfyUI keeps it resident
        compat.offload_models([h])
        assert env.current_loaded_models == [] and m.moves[-1] == torch.device("cpu")


def test_comfy_path_video_falls_back_without_comfy_api(compat, tmp_path):
    with comfy_fakes.FakeComfy(tmp_path):
        v = compat.make_video(torch.rand(2, 4, 4, 3), Fraction(25))
        assert isinstance(v, compat.VideoFromComponents)


def test_registrations_survive_into_later_fake_environments(compat, tmp_path):
    with comfy_fakes.FakeComfy(tmp_path / "a"):
        compat.register_model_folder("audiox_replay_probe", "probe", [".bin"])
    with comfy_fakes.FakeComfy(tmp_path / "b") as env:
        (env.models_dir / "probe").mkdir()
        (env.models_dir / "probe" / "w.bin").write_bytes(b"x")
        assert compat.get_filename_list("audiox_replay_probe") == ["w.bin"]
