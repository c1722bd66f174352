"""Stand-ins for ComfyUI inside pytest (helper module, not a test file).

* :class:`FakeComfy` installs ``sys.modules`` stubs for ``comfy``, ``comfy.utils``,
  ``comfy.model_management``, ``comfy.model_patcher`` and ``folder_paths`` that behave like
  ComfyUI's (same function names and semantics, CPU only, directories under a temp folder) and
  record what the pack does with them (progress updates, model loads/unloads).
* ``CORE_NODES``: the stand-ins of the core nodes our example graphs use (runner/standins.py, same
  INPUT_TYPES / RETURN_TYPES as ComfyUI 0.3.64, checked against a live server by the integration
  test).  While a FakeComfy is active their sinks capture what they receive in
  ``FakeComfy.captures`` instead of writing files.
* ``write_test_*``: deterministic test media (PyAV), created on demand for the file names a
  workflow references.
"""
from __future__ import annotations

import math
import os
import sys
import types
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from audiox_core import partial_loading

SUPPORTED_PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
CORE_MODEL_FOLDERS = ("checkpoints", "vae", "text_encoders", "clip_vision", "loras", "diffusion_models",
                      "audio_encoders", "embeddings")
LEGACY_FOLDERS = {"clip": "text_encoders", "unet": "diffusion_models"}

AUDIO_EXTS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
VIDEO_EXTS = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}

_ROOT = Path(__file__).resolve().parents[1]


_CURRENT: Optional["FakeComfy"] = None
# folder name -> (paths relative to a FakeComfy models dir, the folder's extension set)
_REGISTERED: dict[str, tuple[list[str], set[str]]] = {}


def _remember(env: "FakeComfy", name: str, full_path: str) -> None:
    try:
        rel = os.path.relpath(full_path, env.models_dir)
    except ValueError:
        return
    if rel.startswith(".."):
        return
    if name not in env.folder_names_and_paths:
        env.folder_names_and_paths[name] = ([], set())
    rels, _ = _REGISTERED.setdefault(name, ([], env.folder_names_and_paths[name][1]))
    if rel not in rels:
        rels.append(rel)


def current() -> "FakeComfy":
    if _CURRENT is None:
        raise RuntimeError("no FakeComfy environment is active (use `with FakeComfy(tmp_path):`)")
    return _CURRENT


class InterruptProcessingException(Exception):
    """Same name and role as ComfyUI's (comfy.model_management)."""


@dataclass
class Capture:
    node_id: str
    class_type: str
    kind: str  # "audio" | "video" | "image" | "lora" | "loss"
    value: Any


@dataclass
class _Loaded:
    """Mirror of comfy.model_management.LoadedModel: what is resident on the device."""
    model: Any
    unloads: list = field(default_factory=list)

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.model.to(self.model.offload_device)
        self.model.model.device = self.model.offload_device
        self.unloads.append(self.model)
        return True


class FakeComfy:
    """``with FakeComfy(tmp_path) as env:`` — ComfyUI's Python modules, faked, for one test.

    Attributes: ``models_dir``, ``input_dir``, ``output_dir``, ``temp_dir`` (created),
    ``captures`` (sink nodes), ``progress`` ((node_id, value, total) per bar update),
    ``load_calls`` (``{models, memory_required, force_full_load}`` per ``load_models_gpu`` call), ``current_loaded_models``,
    ``vram_budget`` (set it to load models partially, as ComfyUI does on a small card).
    """

    MODULES = ("comfy", "comfy.utils", "comfy.model_management", "comfy.model_patcher", "folder_paths")

    def __init__(self, root: Path):
        root = Path(root)
        self.models_dir = root / "models"
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.temp_dir = root / "temp"
        for d in (self.models_dir, self.input_dir, self.output_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.captures: list[Capture] = []
        self.progress: list[tuple] = []
        self.load_calls: list[list] = []
        self.current_loaded_models: list[_Loaded] = []
        self.interrupt_flag = False
        self.vram_budget: Optional[int] = None  # bytes per model ComfyUI may load; None: all of it
        self.folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {
            name: ([str(self.models_dir / name)], set(SUPPORTED_PT_EXTENSIONS)) for name in CORE_MODEL_FOLDERS
        }
        # folders a pack registered in an earlier FakeComfy (at its import) exist here too,
        # under this models dir: ComfyUI imports a pack once per process, tests many times
        for name, (rels, exts) in _REGISTERED.items():
            paths, known = self.folder_names_and_paths.setdefault(name, ([], exts))
            for rel in rels:
                full = str(self.models_dir / rel)
                if full not in paths:
                    paths.append(full)
        self._saved: dict[str, Any] = {}
        self._previous: Optional[FakeComfy] = None

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> "FakeComfy":
        global _CURRENT
        for name in self.MODULES:
            self._saved[name] = sys.modules.get(name)
        modules = self._build_modules()
        sys.modules.update(modules)
        self._previous, _CURRENT = _CURRENT, self
        self._previous_env = standins.set_env(standins.Env(
            self.input_dir, self.output_dir, self.temp_dir, write_files=False,
            on_output=lambda nid, cls, kind, value: self.captures.append(Capture(nid, cls, kind, value))))
        return self

    def __exit__(self, *exc) -> None:
        global _CURRENT
        for name, mod in self._saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
        _CURRENT = self._previous
        standins.set_env(self._previous_env)

    def captured(self, kind: str) -> list[Capture]:
        return [c for c in self.captures if c.kind == kind]

    # ------------------------------------------------------------------ the stub modules
    def _build_modules(self) -> dict[str, types.ModuleType]:
        env = self
        comfy = types.ModuleType("comfy")
        comfy.__path__ = []  # a package, so "comfy.x" names resolve to the stubs below
        comfy.__audiox_fake__ = True

        # ---- comfy.model_management
        mm = types.ModuleType("comfy.model_management")
        mm.InterruptProcessingException = InterruptProcessingException
        cpu = torch.device("cpu")
        for fn in ("get_torch_device", "unet_offload_device", "intermediate_device", "vae_device",
                   "vae_offload_device", "text_encoder_device", "text_encoder_offload_device"):
            setattr(mm, fn, lambda: cpu)
        mm.current_loaded_models = env.current_loaded_models

        def load_models_gpu(models, memory_required=0, force_patch_weights=False,
                            minimum_memory_required=None, force_full_load=False):
            env.load_calls.append({"models": list(models), "memory_required": memory_required,
                                   "force_full_load": force_full_load})
            for m in models:
                if env.vram_budget is not None and not force_full_load:  # a card too small for the model
                    partial_loading.load_partially(m.model, m.load_device, env.vram_budget)
                else:
                    m.model.to(m.load_device)
                m.model.device = m.load_device  # as ModelPatcher.load does (fails on read-only properties)
                if not any(e.model is m for e in env.current_loaded_models):
                    env.current_loaded_models.insert(0, _Loaded(m))

        def throw_exception_if_processing_interrupted():
            if env.interrupt_flag:
                env.interrupt_flag = False
                raise InterruptProcessingException()

        def interrupt_current_processing(value=True):
            env.interrupt_flag = bool(value)

        mm.load_models_gpu = load_models_gpu
        mm.load_model_gpu = lambda m: load_models_gpu([m])
        mm.soft_empty_cache = lambda force=False: None
        mm.unload_all_models = lambda: env.current_loaded_models.clear()
        mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        mm.interrupt_current_processing = interrupt_current_processing
        mm.processing_interrupted = lambda: env.interrupt_flag
        mm.module_size = lambda module: sum(t.nelement() * t.element_size() for t in module.state_dict().values())
        mm.get_free_memory = lambda dev=None, torch_free_too=False: (1 << 40, 1 << 40) if torch_free_too else 1 << 40

        # ---- comfy.model_patcher
        mp = types.ModuleType("comfy.model_patcher")

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
                self.model, self.load_device, self.offload_device = model, load_device, offload_device
                self.size = size
                self.patches: dict = {}
                if getattr(model, "device", None) is None:
                    model.device = offload_device  # as the real ModelPatcher does

            def model_size(self):
                return self.size or mm.module_size(self.model)

            def clone(self):
                n = ModelPatcher(self.model, self.load_device, self.offload_device, self.size)
                n.patches = {k: list(v) for k, v in self.patches.items()}
                return n

            def is_clone(self, other):
                return getattr(other, "model", None) is self.model

            def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
                keys = set(self.model.state_dict())
                applied = [k for k in patches if k in keys]
                for k in applied:
                    self.patches.setdefault(k, []).append((strength_patch, patches[k], strength_model))
                return applied

        mp.ModelPatcher = ModelPatcher

        # ---- comfy.utils
        cu = types.ModuleType("comfy.utils")
        cu.PROGRESS_BAR_HOOK = None

        def set_progress_bar_global_hook(function):
            cu.PROGRESS_BAR_HOOK = function

        def hook(value, total, preview, prompt_id=None, node_id=None):
            # what ComfyUI's server hook does: report, and honour interrupts
            throw_exception_if_processing_interrupted()
            env.progress.append((node_id, value, total))

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total, self.current, self.node_id = total, 0, node_id
                self.hook = cu.PROGRESS_BAR_HOOK

            def update_absolute(self, value, total=None, preview=None):
                if total is not None:
                    self.total = total
                self.current = min(value, self.total)
                if self.hook is not None:
                    self.hook(self.current, self.total, preview, node_id=self.node_id)

            def update(self, value):
                self.update_absolute(self.current + value)

        cu.ProgressBar = ProgressBar
        cu.set_progress_bar_global_hook = set_progress_bar_global_hook
        set_progress_bar_global_hook(hook)

        # ---- folder_paths
        fp = types.ModuleType("folder_paths")
        fp.models_dir = str(env.models_dir)
        fp.supported_pt_extensions = set(SUPPORTED_PT_EXTENSIONS)
        fp.folder_names_and_paths = env.folder_names_and_paths
        fp.map_legacy = lambda name: LEGACY_FOLDERS.get(name, name)

        def add_model_folder_path(folder_name, full_folder_path, is_default=False):
            folder_name = fp.map_legacy(folder_name)
            _remember(env, folder_name, full_folder_path)
            if folder_name in env.folder_names_and_paths:
                paths = env.folder_names_and_paths[folder_name][0]
                if full_folder_path not in paths:
                    paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)
            else:
                env.folder_names_and_paths[folder_name] = ([full_folder_path], set())

        def get_folder_paths(folder_name):
            return env.folder_names_and_paths[fp.map_legacy(folder_name)][0][:]

        def get_filename_list(folder_name):
            paths, exts = env.folder_names_and_paths[fp.map_legacy(folder_name)]
            out = set()
            for root in paths:
                if not os.path.isdir(root):
                    continue
                for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                    dirnames[:] = [d for d in dirnames if d != ".git"]
                    for f in filenames:
                        rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                        if not exts or os.path.splitext(f)[1].lower() in exts:
                            out.add(rel)
            return sorted(out)

        def get_full_path(folder_name, filename):
            folder_name = fp.map_legacy(folder_name)
            if folder_name not in env.folder_names_and_paths:
                return None
            rel = os.path.relpath(os.path.join(os.sep, filename), os.sep)
            for root in env.folder_names_and_paths[folder_name][0]:
                full = os.path.join(root, rel)
                if os.path.isfile(full):
                    return full
            return None

        def get_full_path_or_raise(folder_name, filename):
            full = get_full_path(folder_name, filename)
            if full is None:
                raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
            return full

        def get_annotated_filepath(name, default_dir=None):
            for suffix, d in ((" [output]", env.output_dir), (" [input]", env.input_dir), (" [temp]", env.temp_dir)):
                if name.endswith(suffix):
                    return str(Path(d) / name[: -len(suffix)])
            return str(Path(default_dir or env.input_dir) / name)

        def filter_files_content_types(files, content_types):
            keep = []
            for f in files:
                ext = os.path.splitext(f)[1].lower()
                kind = "audio" if ext in AUDIO_EXTS else "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None
                if kind in content_types:
                    keep.append(f)
            return keep

        fp.add_model_folder_path = add_model_folder_path
        fp.get_folder_paths = get_folder_paths
        fp.get_filename_list = get_filename_list
        fp.get_full_path = get_full_path
        fp.get_full_path_or_raise = get_full_path_or_raise
        fp.get_annotated_filepath = get_annotated_filepath
        fp.exists_annotated_filepath = lambda name: os.path.exists(get_annotated_filepath(name))
        fp.filter_files_content_types = filter_files_content_types
        fp.get_input_directory = lambda: str(env.input_dir)
        fp.get_output_directory = lambda: str(env.output_dir)
        fp.get_temp_directory = lambda: str(env.temp_dir)

        comfy.utils, comfy.model_management, comfy.model_patcher = cu, mm, mp
        return {"comfy": comfy, "comfy.utils": cu, "comfy.model_management": mm,
                "comfy.model_patcher": mp, "folder_paths": fp}


# =============================================================================================
# test media
# =============================================================================================
def tone_signal(seconds: float = 2.0, sample_rate: int = 44100, channels: int = 2) -> torch.Tensor:
    """``[channels, T]`` float32: channel k is a sine at 220*(k+2) Hz, amplitude 0.5."""
    t = torch.arange(int(round(seconds * sample_rate)), dtype=torch.float64) / sample_rate
    rows = [0.5 * torch.sin(2 * math.pi * 220.0 * (k + 2) * t) for k in range(channels)]
    return torch.stack(rows).to(torch.float32)


def write_test_wav(path: Path, seconds: float = 2.0, sample_rate: int = 44100, channels: int = 2) -> Path:
    """16-bit PCM WAV of :func:`tone_signal` (stdlib ``wave``)."""
    pcm = (tone_signal(seconds, sample_rate, channels).T.numpy() * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def gradient_frames(n: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """``[n, H, W, 3]`` in 0..1: a horizontal gradient that scrolls, so every frame differs."""
    x = torch.linspace(0, 1, width).expand(height, width)
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    frames = [torch.stack([(x + i / max(n, 1)) % 1.0, y, torch.full_like(x, i / max(n, 1))], -1) for i in range(n)]
    return torch.stack(frames).to(torch.float32)


def _video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_test_video(path: Path, seconds: float = 2.0, fps: int = 25, size: tuple[int, int] = (64, 48),
                     audio: bool = True, sample_rate: int = 44100) -> Path:
    """An MP4 (h264 or mpeg4 + AAC stereo) of :func:`gradient_frames` and :func:`tone_signal` (PyAV)."""
    import av

    width, height = size
    n = int(round(seconds * fps))
    frames = (gradient_frames(n, height, width) * 255).round().to(torch.uint8).numpy()
    with av.open(str(path), "w") as out:
        vs = out.add_stream(_video_codec(), rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        as_ = None
        if audio:
            as_ = out.add_stream("aac", rate=sample_rate)
            as_.layout = "stereo"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if as_ is not None:
            tone = tone_signal(seconds, sample_rate, 2).numpy()
            step = 1024
            for s in range(0, tone.shape[1], step):
                chunk = np.ascontiguousarray(tone[:, s:s + step])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate, af.pts = sample_rate, s
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode(None):
                out.mux(p)
    return Path(path)


def write_test_image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A PNG of the first :func:`gradient_frames` frame (PyAV's png encoder)."""
    import av

    width, height = size
    img = (gradient_frames(1, height, width)[0] * 255).round().to(torch.uint8).numpy()
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream("png")
        s.width, s.height, s.pix_fmt = width, height, "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return Path(path)


def write_test_media(path: Path) -> Path:
    """Create a test file whose kind follows the extension of ``path``."""
    path = Path(path)
    ext = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".wav":
        return write_test_wav(path)
    if ext in AUDIO_EXTS:
        import av

        tone = tone_signal().numpy()
        codec = {".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libvorbis", ".opus": "libopus"}.get(ext, "aac")
        with av.open(str(path), "w") as out:
            st = out.add_stream(codec, rate=44100)
            st.layout = "stereo"
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 44100, 0
            for p in st.encode(af):
                out.mux(p)
            for p in st.encode(None):
                out.mux(p)
        return path
    if ext in VIDEO_EXTS:
        return write_test_video(path)
    if ext in IMAGE_EXTS:
        return write_test_image(path)
    raise ValueError(f"cannot synthesise test media for '{path.name}' (unknown extension)")


# =============================================================================================
# core nodes: the stand-ins of runner/standins.py (shared with the graph runner)
# =============================================================================================
# While a FakeComfy is active the
# stand-ins read inputs from its input directory and report what their sinks receive as Captures
# (no files are written).
from runner import standins  # noqa: E402
CORE_NODES: dict[str, type] = standins.CORE_NODES
MEDIA_INPUTS = standins.MEDIA_INPUTS
decode_audio, decode_frames = standins.decode_audio, standins.decode_frames
check_audio, check_image = standins.check_audio, standins.check_image
FakeVideoComponents = standins.VideoComponents
FakeVideoFromFile = standins.VideoFromFile
FakeVideoFromComponents = standins.VideoFromComponents
